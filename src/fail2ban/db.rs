//! fail2ban's sqlite database, read-only: the `bips` table of schema
//! version 4 (fail2ban 0.11.1 to 1.1), one row per jail and address with
//! the time of the ban and its length.
//!
//! A ban is active as fail2ban's `_getCurrentBans` (database.py) selects
//! it: `timeofban + bantime > now`, or `bantime <= -1` (-1 is a permanent
//! ban; -2, "unknown", is what an upgrade from an older schema leaves, and
//! fail2ban then applies the jail's current bantime, which the database
//! does not hold: such a ban counts as active).
//!
//! Only the bans of the jails fail2ban runs count: its `jails` table says
//! `enabled = 1` from the moment fail2ban adds a jail (before the jail's
//! actionstart) until it deletes it (`enabled = 0`: the jail was stopped
//! or removed, at a graceful stop all of them, whose bans were withdrawn).
//! A `kill -9` leaves them enabled: what fail2ban will restore. So a stale
//! or wrong database, or one fail2ban stopped cleanly, asks for no ban.
//!
//! The file is opened like every file f2b-route trusts (src/trusted.rs: no
//! link followed, root's, writable by nobody else, nor any directory above
//! it), and sqlite reads that very file through `/proc/self/fd`, read-only.

use std::os::fd::AsRawFd;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{Active, Error, Origin};
use crate::trusted::{self, TrustError};

/// The one schema version read.
pub const VERSION: i64 = 4;

/// How long a read waits for fail2ban's write lock on the database.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether fail2ban's `dbfile` value means "no database".
pub fn no_database(dbfile: &str) -> Option<&'static str> {
    if dbfile == ":memory:" {
        Some("dbfile = :memory: (fail2ban keeps its bans in memory only)")
    } else if dbfile.eq_ignore_ascii_case("none") {
        Some("dbfile = None (fail2ban keeps no database)")
    } else {
        None
    }
}

/// The bans still active at `now` (unix seconds), of `jail` or of every
/// jail, in the database at `path`.
pub fn read(path: &Path, jail: Option<&str>, now: u64) -> Result<Active, Error> {
    let shown = path.display().to_string();
    if let Some(why) = no_database(&shown) {
        return Err(Error::NoDatabase { path: shown, why });
    }
    let file = match trusted::open_file(path) {
        Ok(f) => f,
        Err(TrustError::NotFound { .. }) => {
            return Err(Error::NoDatabase {
                path: shown,
                why: "no such file (fail2ban makes it at its start unless its dbfile is :memory: or None)",
            })
        }
        Err(source) => {
            return Err(Error::Untrusted {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let fail = |what: &str| {
        let path = path.to_path_buf();
        let what = what.to_owned();
        move |source: rusqlite::Error| Error::Database {
            path,
            what,
            source: Some(source),
        }
    };
    let via = format!("/proc/self/fd/{}", file.as_raw_fd());
    let db = Connection::open_with_flags(
        &via,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail("cannot open it read-only"))?;
    db.busy_timeout(BUSY_WAIT)
        .map_err(fail("cannot set a busy timeout"))?;
    check_schema(&db, path)?;
    let mut active = Active::new(Origin::Database(path.to_path_buf()));
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    if let Some(j) = jail {
        let enabled: Option<i64> = db
            .query_row("SELECT enabled FROM jails WHERE name = ?1", [j], |r| {
                r.get(0)
            })
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(fail("cannot read its jails"))?;
        if enabled != Some(1) {
            return Err(Error::JailNotRunning {
                path: path.to_path_buf(),
                jail: j.to_owned(),
                why: if enabled.is_none() {
                    "fail2ban never ran it with this database (is dbfile right?)"
                } else {
                    "fail2ban stopped or removed it (its bans were withdrawn then)"
                },
            });
        }
    }
    let mut sql = String::from(
        "SELECT bips.jail, bips.ip FROM bips JOIN jails ON jails.name = bips.jail \
         WHERE jails.enabled = 1 AND (timeofban + bantime > ?1 OR bantime <= -1)",
    );
    if jail.is_some() {
        sql.push_str(" AND bips.jail = ?2");
    }
    let mut stmt = db.prepare(&sql).map_err(fail("cannot read its bans"))?;
    let mut rows = match jail {
        Some(j) => stmt.query(rusqlite::params![now, j]),
        None => stmt.query(rusqlite::params![now]),
    }
    .map_err(fail("cannot read its bans"))?;
    if let Some(j) = jail {
        active.jails.entry(j.to_owned()).or_default();
    }
    while let Some(row) = rows.next().map_err(fail("cannot read its bans"))? {
        let jail = row
            .get_ref(0)
            .and_then(|v| v.as_str().map_err(Into::into))
            .map_err(fail("a row of bips with a jail that is not text"))?;
        let ip = row
            .get_ref(1)
            .and_then(|v| v.as_str().map_err(Into::into))
            .map_err(fail("a row of bips with an ip that is not text"))?;
        active.ban(jail, ip);
    }
    Ok(active)
}

fn check_schema(db: &Connection, path: &Path) -> Result<(), Error> {
    let version: Result<i64, rusqlite::Error> =
        db.query_row("SELECT version FROM fail2banDb LIMIT 1", [], |r| r.get(0));
    let schema = |version: String, why| Error::Schema {
        path: path.to_path_buf(),
        version,
        why,
    };
    match version {
        Ok(VERSION) => Ok(()),
        Ok(v) if v < VERSION => Err(schema(
            v.to_string(),
            "older than version 4 (fail2ban before 0.11.1), which f2b-route does not read: \
             fail2ban 0.11.1 or later upgrades it when it starts",
        )),
        Ok(v) => Err(schema(
            v.to_string(),
            "newer than version 4 (fail2ban 0.11.1 to 1.1), which is all f2b-route reads",
        )),
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(schema(
            "(none)".into(),
            "its fail2banDb table is empty: not a database fail2ban finished making",
        )),
        Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => {
            Err(schema(
                "(none)".into(),
                "it has no fail2banDb table: not a fail2ban database",
            ))
        }
        Err(e) => Err(Error::Database {
            path: path.to_path_buf(),
            what: "cannot read its schema version (not an sqlite database?)".into(),
            source: Some(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A database made as fail2ban 1.0 makes it (database.py's scripts).
    fn make(dir: &Path, version: i64) -> std::path::PathBuf {
        let path = dir.join("fail2ban.sqlite3");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE fail2banDb(version INTEGER);
             CREATE TABLE jails(name TEXT NOT NULL UNIQUE, enabled INTEGER NOT NULL DEFAULT 1);
             CREATE TABLE bips(ip TEXT NOT NULL, jail TEXT NOT NULL, timeofban INTEGER NOT NULL,
               bantime INTEGER NOT NULL, bancount INTEGER NOT NULL default 1, data JSON,
               PRIMARY KEY(ip, jail), FOREIGN KEY(jail) REFERENCES jails(name));",
        )
        .unwrap();
        db.execute("INSERT INTO fail2banDb(version) VALUES(?1)", [version])
            .unwrap();
        db.execute_batch("INSERT INTO jails(name) VALUES('sshd'), ('recidive');")
            .unwrap();
        for (ip, jail, t, len) in [
            ("198.51.100.1", "sshd", 1000, 600), // ends 1600: active at 1500
            ("198.51.100.2", "sshd", 100, 600),  // ended 700
            ("2001:db8::3", "sshd", 100, -1),    // permanent
            ("198.51.100.4", "recidive", 1400, 60), // ended 1460
            ("198.51.100.5", "recidive", 1000, -2), // unknown: active
            ("not-an-ip", "recidive", 1000, -1),
        ] {
            db.execute(
                "INSERT INTO bips(ip, jail, timeofban, bantime) VALUES(?1, ?2, ?3, ?4)",
                rusqlite::params![ip, jail, t, len],
            )
            .unwrap();
        }
        path
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "f2b-route-db-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    fn ips(set: &std::collections::BTreeSet<IpAddr>) -> Vec<String> {
        set.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn active_bans_as_fail2ban_selects_them() {
        let dir = tempdir();
        let path = make(&dir, 4);
        // Run as another user than root, the trust check refuses a file of
        // that user's: then test the query alone.
        match read(&path, None, 1500) {
            Ok(a) => {
                assert_eq!(ips(&a.jails["sshd"]), ["198.51.100.1", "2001:db8::3"]);
                assert_eq!(ips(&a.jails["recidive"]), ["198.51.100.5"]);
                assert_eq!(a.not_addresses.len(), 1);
                let one = read(&path, Some("recidive"), 1500).unwrap();
                assert_eq!(one.jails.keys().collect::<Vec<_>>(), ["recidive"]);
                // A jail fail2ban does not run with this database.
                assert!(matches!(
                    read(&path, Some("nosuch"), 1500),
                    Err(Error::JailNotRunning { .. })
                ));
            }
            Err(Error::Untrusted { .. }) => assert!(!nix::unistd::Uid::effective().is_root()),
            Err(e) => panic!("{e}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_schemas_are_refused() {
        for version in [2, 3, 5] {
            let dir = tempdir();
            let path = make(&dir, version);
            match read(&path, None, 1500) {
                Err(e @ Error::Schema { .. }) => {
                    assert!(e.to_string().contains(&format!("version {version}")), "{e}")
                }
                Err(Error::Untrusted { .. }) => assert!(!nix::unistd::Uid::effective().is_root()),
                other => panic!("{other:?}"),
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn no_database_is_said() {
        for p in [":memory:", "None", "/nonexistent/fail2ban.sqlite3"] {
            match read(Path::new(p), None, 0) {
                Err(e @ Error::NoDatabase { .. }) => {
                    assert!(e.to_string().contains("nothing to read"), "{e}")
                }
                other => panic!("{p}: {other:?}"),
            }
        }
    }
}
