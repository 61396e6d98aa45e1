//! fail2ban's own view of its bans, read from the running server through
//! its control socket ([`socket`]) or, when it is not running, from its
//! sqlite database ([`db`]), read-only. Nothing here changes fail2ban.

pub mod db;
pub mod socket;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::addr::parse_host;

/// fail2ban's default control socket (its `socket` option).
pub const DEFAULT_SOCKET: &str = "/var/run/fail2ban/fail2ban.sock";
/// fail2ban's default database (its `dbfile` option).
pub const DEFAULT_DB: &str = "/var/lib/fail2ban/fail2ban.sqlite3";

/// Where the bans were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Socket(PathBuf),
    Database(PathBuf),
    /// `reconcile --stdin`: fail2ban's plugin passed the jail's bans.
    Stdin,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Socket(p) => write!(f, "fail2ban's socket {}", p.display()),
            Origin::Database(p) => write!(f, "fail2ban's database {}", p.display()),
            Origin::Stdin => f.write_str("the bans given on stdin"),
        }
    }
}

/// fail2ban's active bans, per jail.
#[derive(Debug)]
pub struct Active {
    pub origin: Origin,
    /// Jail -> banned host addresses (a jail with no ban is there, empty,
    /// when the source lists its jails).
    pub jails: BTreeMap<String, BTreeSet<IpAddr>>,
    /// Bans that are no host address (a raw ID, a CIDR), per jail: no
    /// route can stand for them.
    pub not_addresses: Vec<(String, String)>,
    /// Why the source is not the first one tried (the default socket had
    /// nobody listening).
    pub fell_back: Option<String>,
}

impl Active {
    pub fn new(origin: Origin) -> Self {
        Active {
            origin,
            jails: BTreeMap::new(),
            not_addresses: Vec::new(),
            fell_back: None,
        }
    }

    /// Record that `jail` bans `id` (a host address, or something else).
    pub fn ban(&mut self, jail: &str, id: &str) {
        let set = match self.jails.get_mut(jail) {
            Some(set) => set,
            None => self.jails.entry(jail.to_owned()).or_default(),
        };
        match parse_host(id) {
            Ok(ip) => {
                set.insert(ip);
            }
            Err(_) => self.not_addresses.push((jail.to_owned(), cut(id))),
        }
    }

    /// The number of bans (host addresses) over all jails.
    pub fn count(&self) -> usize {
        self.jails.values().map(BTreeSet::len).sum()
    }
}

/// The most `read_given` reads: a million addresses and more.
const GIVEN_MAX: u64 = 64 << 20;

/// The line that ends a list given on stdin: without it, the list may have
/// been cut short (its writer killed), and a reconcile would release the
/// bans that did not arrive.
pub const GIVEN_END: &str = "end";

/// `jail`'s bans as fail2ban's plugin hands them over: one a line on
/// `input` (what fail2ban's restore will restore, as it reads them), each
/// line ended, the last one `end`.
pub fn read_given(jail: &str, input: impl std::io::Read) -> Result<Active, Error> {
    use std::io::BufRead;
    let mut active = Active::new(Origin::Stdin);
    active.jails.entry(jail.to_owned()).or_default();
    let mut input = std::io::BufReader::new(input.take(GIVEN_MAX + 1));
    let mut line = String::new();
    let mut read = 0u64;
    let mut ended = false;
    loop {
        line.clear();
        let n = input
            .read_line(&mut line)
            .map_err(|e| Error::Given(format!("cannot read them: {e}")))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > GIVEN_MAX {
            return Err(Error::Given(format!(
                "more than {} MiB: not a list of bans",
                GIVEN_MAX >> 20
            )));
        }
        if ended {
            return Err(Error::Given(format!("more after the `{GIVEN_END}` line")));
        }
        // A last line without its line end may be cut short
        // (198.51.100.12 of 198.51.100.123).
        let Some(id) = line.strip_suffix('\n') else {
            return Err(Error::Given(format!(
                "the last line has no line end: the list was cut short (it ends with a `{GIVEN_END}` line)"
            )));
        };
        let id = id.trim();
        if id == GIVEN_END {
            ended = true;
        } else if !id.is_empty() {
            active.ban(jail, id);
        }
    }
    if !ended {
        return Err(Error::Given(format!(
            "no `{GIVEN_END}` line: the list was cut short"
        )));
    }
    Ok(active)
}

/// fail2ban's bans from its default socket, or, when nobody listens
/// there (fail2ban is not running), from its default database.
pub fn read_default(jail: Option<&str>, now: u64) -> Result<Active, Error> {
    match socket::read(std::path::Path::new(DEFAULT_SOCKET), jail) {
        Err(e @ Error::NotRunning { .. }) => {
            let mut active = db::read(std::path::Path::new(DEFAULT_DB), jail, now)?;
            active.fell_back = Some(e.to_string());
            Ok(active)
        }
        other => other,
    }
}

/// At most 64 characters of what fail2ban said, for a message.
fn cut(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// Why fail2ban's state could not be read. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// fail2ban keeps no database there (`dbfile = :memory:` or `None`, or
    /// no such file): nothing to read.
    #[error("fail2ban's database {path}: {why}: there is nothing to read")]
    NoDatabase { path: String, why: &'static str },
    #[error("the bans given on stdin: {0}")]
    Given(String),
    /// The jail asked for is not one fail2ban runs with this database.
    #[error("fail2ban's database {path}: jail {jail} is not running there: {why}")]
    JailNotRunning {
        path: PathBuf,
        jail: String,
        why: &'static str,
    },
    #[error("fail2ban's database {path}: schema version {version}: {why}")]
    Schema {
        path: PathBuf,
        version: String,
        why: &'static str,
    },
    #[error("fail2ban's database {path}: {what}")]
    Database {
        path: PathBuf,
        what: String,
        #[source]
        source: Option<rusqlite::Error>,
    },
    #[error("fail2ban's database {path}")]
    Untrusted {
        path: PathBuf,
        #[source]
        source: crate::trusted::TrustError,
    },
    #[error("fail2ban's socket {path}")]
    UntrustedSocket {
        path: PathBuf,
        #[source]
        source: crate::trusted::TrustError,
    },
    /// The socket does not exist or nobody listens on it: fail2ban is not
    /// running (the database is the next source).
    #[error("fail2ban's socket {path}: fail2ban is not running ({source})")]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fail2ban's socket {path}: {what}")]
    Socket {
        path: PathBuf,
        what: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("fail2ban's socket {path}: {what}")]
    Answer { path: PathBuf, what: String },
}

impl Error {
    /// Whether the error is a schema f2b-route does not read.
    pub fn is_schema(&self) -> bool {
        matches!(self, Error::Schema { .. })
    }

    /// Whether the database cannot say what fail2ban will restore, and
    /// will not later either: none kept, the jail not run there, another
    /// schema, a file not to be trusted, or one sqlite finds damaged. Not a
    /// passing failure (busy, locked, an I/O error): asked again, it may
    /// answer.
    pub fn database_cannot_say(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            Error::NoDatabase { .. }
            | Error::JailNotRunning { .. }
            | Error::Schema { .. }
            | Error::Untrusted { .. } => true,
            Error::Database {
                source: Some(rusqlite::Error::SqliteFailure(f, _)),
                ..
            } => matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_that_are_no_host_address_are_set_apart() {
        let mut a = Active::new(Origin::Database("/x".into()));
        a.ban("sshd", "198.51.100.7");
        a.ban("sshd", "::ffff:198.51.100.8");
        a.ban("sshd", "198.51.100.0/24");
        a.ban("web", "some-raw-id");
        assert_eq!(a.count(), 2);
        assert_eq!(a.jails["web"].len(), 0);
        assert_eq!(
            a.not_addresses,
            vec![
                ("sshd".to_string(), "\"198.51.100.0/24\"".to_string()),
                ("web".to_string(), "\"some-raw-id\"".to_string())
            ]
        );
        assert!(a.jails["sshd"].contains(&"198.51.100.8".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn long_ids_are_cut() {
        let long = "x".repeat(100);
        assert_eq!(cut(&long).chars().count(), 64 + 3);
    }
}
