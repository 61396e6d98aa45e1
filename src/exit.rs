//! Exit codes: the one place they are defined. The README's table mirrors it.

/// What the process tells its caller (fail2ban, a shell script) on exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done; also for an add that was already there and a del already gone.
    Ok = 0,
    /// Netlink or file system failure; partial work is repaired by the next run.
    Failure = 1,
    /// Bad command line or bad address; nothing was changed.
    Usage = 2,
    /// The guard refused an address (own, peer, protected, special); nothing was changed.
    Refused = 3,
    /// No permission (CAP_NET_ADMIN, state dir) or netlink unavailable; nothing was changed.
    NoPermission = 4,
    /// Someone else's unicast host route exists for the address; nothing was changed.
    Conflict = 5,
    /// The configuration file is missing (when named) or invalid; nothing was changed.
    Config = 6,
}

impl Exit {
    pub const ALL: [Exit; 7] = [
        Exit::Ok,
        Exit::Failure,
        Exit::Usage,
        Exit::Refused,
        Exit::NoPermission,
        Exit::Conflict,
        Exit::Config,
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
        }
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
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6]);
        let names: std::collections::BTreeSet<_> = Exit::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), Exit::ALL.len());
    }

    #[test]
    fn usage_matches_clap() {
        // clap exits 2 on a usage error; our bad-input code is the same number.
        assert_eq!(Exit::Usage.code(), 2);
    }
}
