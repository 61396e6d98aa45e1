//! Exit codes: the one place they are defined. The CLI's help is generated
//! from here, and a test checks the README's table against it.

/// What the process tells its caller (fail2ban, a shell script) on exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    Refused = 3,
    NoPermission = 4,
    Conflict = 5,
    Config = 6,
    Fail2ban = 7,
    Schema = 8,
}

impl Exit {
    pub const ALL: [Exit; 9] = [
        Exit::Ok,
        Exit::Failure,
        Exit::Usage,
        Exit::Refused,
        Exit::NoPermission,
        Exit::Conflict,
        Exit::Config,
        Exit::Fail2ban,
        Exit::Schema,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The short name used in the README and the man page.
    pub fn name(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::Failure => "failure",
            Exit::Usage => "usage",
            Exit::Refused => "refused",
            Exit::NoPermission => "no-permission",
            Exit::Conflict => "conflict",
            Exit::Config => "config",
            Exit::Fail2ban => "fail2ban",
            Exit::Schema => "schema",
        }
    }
}

impl Exit {
    /// What the code means, as the help and the README say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "done; also for an add that was already there and a del of what is gone",
            Exit::Failure => {
                "netlink or file system failure, or a kernel answer f2b-route does not understand \
                 (`check --repair` mends partial work)"
            }
            Exit::Usage => {
                "bad command line, bad address or jail name, bad `render` flags; nothing changed"
            }
            Exit::Refused => "the guard refused an address; nothing changed",
            Exit::NoPermission => {
                "no CAP_NET_ADMIN, netlink unavailable, or a state dir that is not writable or \
                 not safe (another user could change it, a link inside it); nothing changed"
            }
            Exit::Conflict => {
                "someone else's unicast host route exists for the address; nothing changed"
            }
            Exit::Config => {
                "the config file is missing (when named), invalid, or could be changed by \
                 another user than root; nothing changed"
            }
            Exit::Fail2ban => {
                "reconcile could not read fail2ban's bans: its socket did not answer as it \
                 should, or its database is unreadable, not trusted, or not there (dbfile \
                 :memory: or None); nothing changed"
            }
            Exit::Schema => {
                "reconcile: fail2ban's database has another schema than version 4 (fail2ban \
                 0.11.1 to 1.1), an older one included; nothing changed"
            }
        }
    }

    /// The exit status section of `--help`.
    pub fn help() -> String {
        let mut text = String::from("Exit status:\n");
        for e in Exit::ALL {
            text.push_str(&format!(
                "  {}  {:<13}  {}\n",
                e.code(),
                e.name(),
                e.meaning()
            ));
        }
        text.pop();
        text
    }

    /// The README's table row for this code.
    pub fn table_row(self) -> String {
        format!("| {} | {} | {} |", self.code(), self.name(), self.meaning())
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_distinct() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let names: std::collections::BTreeSet<_> = Exit::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), Exit::ALL.len());
    }

    #[test]
    fn the_readme_table_is_this_one() {
        let readme = include_str!("../README.md");
        for e in Exit::ALL {
            let row = e.table_row();
            assert!(readme.contains(&row), "README.md lacks the row\n{row}");
        }
    }

    #[test]
    fn usage_matches_clap() {
        // clap exits 2 on a usage error; our bad-input code is the same number.
        assert_eq!(Exit::Usage.code(), 2);
    }
}
