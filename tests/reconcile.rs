//! `reconcile` against the real kernel, each test in a network namespace of
//! its own, with fail2ban's database made here as fail2ban 1.0 makes it
//! (schema version 4). tests/reconcile.sh runs it against a real fail2ban
//! (its socket, and the database it wrote).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use f2b_route::exit::Exit;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// fail2ban's database with `bans`: (jail, ip, seconds since the ban, bantime).
fn database(ns: &Netns, version: i64, bans: &[(&str, &str, i64, i64)]) -> PathBuf {
    let path = ns.dir.join("fail2ban.sqlite3");
    let _ = std::fs::remove_file(&path);
    let db = rusqlite::Connection::open(&path).unwrap();
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
    let t = now();
    for (jail, ip, ago, bantime) in bans {
        db.execute("INSERT OR IGNORE INTO jails(name) VALUES(?1)", [jail])
            .unwrap();
        db.execute(
            "INSERT INTO bips(ip, jail, timeofban, bantime) VALUES(?1, ?2, ?3, ?4)",
            rusqlite::params![ip, jail, t - ago, bantime],
        )
        .unwrap();
    }
    path
}

/// Makes JAIL one the ledger knows (it held something once), as every
/// jail using f2b-route is: a full reconcile is about those only.
fn used_once(ns: &Netns, jail: &str) {
    ns.f2b(&["add", "--jail", jail, "203.0.113.250"]).ok();
    ns.f2b(&["del", "--jail", jail, "203.0.113.250"]).ok();
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The holds, from `list --json`: address -> jails.
fn holds(ns: &Netns) -> BTreeMap<String, Vec<String>> {
    ns.list_json()
        .into_iter()
        .map(|o| {
            let jails = o["jails"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j.as_str().unwrap().to_string())
                .collect();
            (o["address"].as_str().unwrap().to_string(), jails)
        })
        .collect()
}

/// Both families' routes of every table, as `ip -j` prints them: byte for byte.
fn kernel_bytes(ns: &Netns) -> String {
    let v4 = ns.ip(&["-j", "route", "show", "table", "all"]).ok();
    let v6 = ns.ip(&["-j", "-6", "route", "show", "table", "all"]).ok();
    format!("{}\n{}", v4.stdout, v6.stdout)
}

/// Every entry of the state dir: path, kind, mode, size, mtime and contents.
fn state_snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.push(format!(
                "{} {:o} {} {}.{} {:?}",
                p.display(),
                m.mode(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                content
            ));
            if m.is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn from_the_database_everything_made_equal_and_foreign_routes_untouched() {
    let ns = Netns::with_veth();
    // What f2b-route holds before: sshd .1 (its route then deleted behind
    // our back) and .3 (expired in fail2ban), a jail fail2ban does not have
    // (.5), a manual hold (.8), and an orphan route with our marker (.6).
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.1", "198.51.100.3"])
        .ok();
    ns.f2b(&["add", "--jail", "gone", "198.51.100.5"]).ok();
    ns.f2b(&["add", "198.51.100.8"]).ok();
    // recidive used f2b-route once (the ledger knows it, holding nothing
    // now); "mailonly" is a jail of fail2ban's that never did.
    used_once(&ns, "recidive");
    ns.ipl("route del blackhole 198.51.100.1 proto 252 metric 666");
    ns.ipl("route add blackhole 198.51.100.6 proto 252 metric 666");
    // Foreign routes with the prefixes of a ban and of a released hold.
    ns.ipl("route add blackhole 198.51.100.2 proto 252 metric 5");
    ns.ipl("route add unreachable 198.51.100.3 metric 10");
    ns.ipl("-6 route add blackhole 2001:db8::4 metric 7");
    let foreign_before: Vec<Route> = ns
        .routes()
        .into_iter()
        .filter(|r| !r.has_default_marker())
        .collect();
    let db = database(
        &ns,
        4,
        &[
            ("sshd", "198.51.100.1", 60, 600),
            ("sshd", "198.51.100.2", 60, 600),
            ("sshd", "198.51.100.3", 700, 600), // expired
            ("recidive", "2001:db8::4", 86_400, -1),
            ("recidive", "198.51.100.9", 60, -2), // unknown length: active
            ("mailonly", "198.51.100.10", 60, 600), // not f2b-route's jail
        ],
    );
    let r = ns.f2b(&["reconcile", "--db", path_str(&db)]).ok();
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "hold 198.51.100.2 sshd",
            "hold 198.51.100.9 recidive",
            "hold 2001:db8::4 recidive",
            "release 198.51.100.3 sshd",
            "release 198.51.100.5 gone",
            "remove 198.51.100.3",
            "remove 198.51.100.5",
            "remove 198.51.100.6",
            "route 198.51.100.1",
            "route 198.51.100.2",
            "route 198.51.100.9",
            "route 2001:db8::4",
        ],
        "{r}"
    );
    assert_eq!(
        ns.owned_prefixes(),
        [
            "198.51.100.1/32",
            "198.51.100.2/32",
            "198.51.100.8/32",
            "198.51.100.9/32",
            "2001:db8::4/128"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        "{r}"
    );
    let h = holds(&ns);
    assert_eq!(h["198.51.100.1"], ["sshd"]);
    assert_eq!(h["198.51.100.8"], ["@manual"]);
    assert_eq!(h["2001:db8::4"], ["recidive"]);
    let foreign_after: Vec<Route> = ns
        .routes()
        .into_iter()
        .filter(|r| !r.has_default_marker())
        .collect();
    assert_eq!(foreign_before, foreign_after, "foreign routes changed: {r}");
    // Nothing left to do: nothing printed, nothing changed.
    let kernel = kernel_bytes(&ns);
    let r = ns.f2b(&["reconcile", "--db", path_str(&db)]).ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""), "{r}");
    assert_eq!(kernel_bytes(&ns), kernel);
}

#[test]
fn one_jail_only_touches_that_jails_holds() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.1"]).ok();
    ns.f2b(&["add", "--jail", "web", "198.51.100.2"]).ok();
    ns.ipl("route add blackhole 198.51.100.6 proto 252 metric 666"); // orphan
    let db = database(&ns, 4, &[("sshd", "198.51.100.3", 1, 600)]);
    let r = ns
        .f2b(&[
            "reconcile",
            "--jail",
            "sshd",
            "--db",
            path_str(&db),
            "--json",
        ])
        .ok();
    let got: Vec<serde_json::Value> = r.json_lines();
    let want: Vec<serde_json::Value> = [
        r#"{"change":"hold","jail":"sshd","address":"198.51.100.3","reason":null}"#,
        r#"{"change":"route","jail":null,"address":"198.51.100.3","reason":null}"#,
        r#"{"change":"release","jail":"sshd","address":"198.51.100.1","reason":null}"#,
        r#"{"change":"remove","jail":null,"address":"198.51.100.1","reason":null}"#,
    ]
    .iter()
    .map(|s| serde_json::from_str(s).unwrap())
    .collect();
    assert_eq!(got, want, "{r}");
    // web's hold and the orphan are not sshd's business.
    assert!(ns.owned_prefixes().contains("198.51.100.2/32"));
    assert!(ns.owned_prefixes().contains("198.51.100.6/32"));
}

#[test]
fn dry_run_changes_nothing_byte_for_byte() {
    let ns = Netns::with_veth();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.1", "2001:db8::1"])
        .ok();
    ns.ipl("route del blackhole 198.51.100.1 proto 252 metric 666");
    ns.ipl("route add blackhole 198.51.100.6 proto 252 metric 666");
    used_once(&ns, "web");
    let db = database(
        &ns,
        4,
        &[
            ("sshd", "198.51.100.1", 1, 600),
            ("web", "198.51.100.2", 1, 600),
        ],
    );
    ns.settle();
    let kernel = kernel_bytes(&ns);
    let state = state_snapshot(&ns.state_dir());
    let r = ns
        .f2b(&["reconcile", "--dry-run", "--db", path_str(&db)])
        .ok();
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "hold 198.51.100.2 web",
            "release 2001:db8::1 sshd",
            "remove 198.51.100.6",
            "remove 2001:db8::1",
            "route 198.51.100.1",
            "route 198.51.100.2",
        ],
        "{r}"
    );
    assert!(r.stderr.contains("dry run, nothing changed"), "{r}");
    assert_eq!(kernel_bytes(&ns), kernel, "the kernel changed: {r}");
    assert_eq!(
        state_snapshot(&ns.state_dir()),
        state,
        "the state dir changed: {r}"
    );
}

#[test]
fn a_guarded_address_is_reported_never_added() {
    let ns = Netns::new();
    ns.write_config("protect = [\"198.51.100.0/28\"]\n");
    used_once(&ns, "sshd");
    let db = database(
        &ns,
        4,
        &[
            ("sshd", "198.51.100.1", 1, 600),
            ("sshd", "198.51.100.20", 1, 600),
        ],
    );
    let r = ns.f2b(&["reconcile", "--db", path_str(&db)]).ok();
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("refused 198.51.100.1: ")),
        "{r}"
    );
    assert_eq!(
        ns.owned_prefixes(),
        ["198.51.100.20/32".to_string()].into_iter().collect(),
        "{r}"
    );
}

#[test]
fn schemas_other_than_4_are_refused_and_change_nothing() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.1"]).ok();
    let before = ns.routes();
    for version in [1, 2, 3, 5] {
        let db = database(&ns, version, &[]);
        let r = ns
            .f2b(&["reconcile", "--db", path_str(&db)])
            .code(Exit::Schema as i32);
        assert_eq!(r.stderr_lines().len(), 1, "{r}");
        assert!(
            r.stderr.contains(&format!("schema version {version}")),
            "{r}"
        );
        ns.assert_unchanged(&before, &r);
    }
    // Not a fail2ban database at all.
    let other = ns.dir.join("other.sqlite3");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t(x);")
        .unwrap();
    let r = ns
        .f2b(&["reconcile", "--db", path_str(&other)])
        .code(Exit::Schema as i32);
    ns.assert_unchanged(&before, &r);
    assert_eq!(holds(&ns)["198.51.100.1"], ["sshd"]);
}

#[test]
fn only_the_jails_fail2ban_runs_count_in_its_database() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.1"]).ok();
    ns.f2b(&["add", "--jail", "web", "198.51.100.2"]).ok();
    let db = database(
        &ns,
        4,
        &[
            ("sshd", "198.51.100.1", 60, 600),
            ("web", "198.51.100.2", 60, 600),
        ],
    );
    // fail2ban stopped web (or a graceful stop stopped all): its bans were
    // withdrawn then, its rows stay.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE jails SET enabled = 0 WHERE name = 'web'", [])
        .unwrap();
    let r = ns.f2b(&["reconcile", "--db", path_str(&db)]).ok();
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["release 198.51.100.2 web", "remove 198.51.100.2"],
        "{r}"
    );
    // A jail the database does not run (a stale or wrong dbfile): exit 7,
    // nothing changed; with --or-flush, actionstart's flush.
    ns.f2b(&["add", "--jail", "web", "198.51.100.2"]).ok();
    let before = ns.routes();
    for jail in ["web", "mail"] {
        let r = ns
            .f2b(&["reconcile", "--jail", jail, "--db", path_str(&db)])
            .code(Exit::Fail2ban as i32);
        assert!(
            r.stderr
                .contains(&format!("jail {jail} is not running there")),
            "{r}"
        );
        ns.assert_unchanged(&before, &r);
    }
    let r = ns
        .f2b(&[
            "reconcile",
            "--jail",
            "web",
            "--db",
            path_str(&db),
            "--or-flush",
        ])
        .ok();
    assert!(r.stderr.contains("releasing the holds of web"), "{r}");
    // A file sqlite finds no database (damaged by a kill -9 mid-write, say):
    // exit 7, or with --or-flush the flush.
    ns.f2b(&["add", "--jail", "web", "198.51.100.2"]).ok();
    let damaged = ns.dir.join("damaged.sqlite3");
    std::fs::write(&damaged, vec![0x5a; 8192]).unwrap();
    let before = ns.routes();
    let db_args = ["reconcile", "--jail", "web", "--db", path_str(&damaged)];
    let r = ns.f2b(&db_args).code(Exit::Fail2ban as i32);
    ns.assert_unchanged(&before, &r);
    let r = ns.f2b(&[&db_args[..], &["--or-flush"]].concat()).ok();
    assert!(r.stderr.contains("releasing the holds of web"), "{r}");
    assert_eq!(
        ns.owned_prefixes(),
        ["198.51.100.1/32".to_string()].into_iter().collect(),
        "{r}"
    );
}

#[test]
fn min_left_leaves_bans_about_to_end_to_the_restore() {
    let ns = Netns::new();
    used_once(&ns, "sshd");
    let db = database(
        &ns,
        4,
        &[
            ("sshd", "198.51.100.1", 570, 600), // 30 s left
            ("sshd", "198.51.100.2", 60, 600),  // 540 s left
        ],
    );
    let args = ["reconcile", "--jail", "sshd", "--db", path_str(&db)];
    let r = ns
        .f2b(&[&args[..], &["--min-left", "60", "--dry-run"]].concat())
        .ok();
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["hold 198.51.100.2 sshd", "route 198.51.100.2"],
        "{r}"
    );
    let r = ns.f2b(&[&args[..], &["--dry-run"]].concat()).ok();
    assert_eq!(r.stdout.lines().count(), 4, "{r}");
    // Only with --db.
    ns.f2b(&["reconcile", "--min-left", "60"]).code(EXIT_USAGE);
}

#[test]
fn the_bans_to_restore_can_be_given_on_stdin() {
    // The plugin's start: fail2ban's restore list, as fail2ban reads it.
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.1", "198.51.100.2"])
        .ok();
    ns.f2b(&["add", "--jail", "web", "198.51.100.1"]).ok();
    let r = ns
        .f2b_stdin(
            &["reconcile", "--jail", "sshd", "--stdin"],
            Some("198.51.100.2\n2001:db8::3\n\nnot-an-ip\nend\n"),
        )
        .ok();
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "hold 2001:db8::3 sshd",
            "release 198.51.100.1 sshd",
            "route 2001:db8::3"
        ],
        "{r}"
    );
    assert_eq!(holds(&ns)["198.51.100.1"], ["web"], "{r}");
    assert_eq!(
        ns.owned_prefixes(),
        ["198.51.100.1/32", "198.51.100.2/32", "2001:db8::3/128"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "{r}"
    );
    // A list cut short (no `end`, or a last line without its line end, as
    // 198.51.100.1 of 198.51.100.123) changes nothing.
    let before = ns.routes();
    for cut in [
        "198.51.100.2\n",
        "198.51.100.2\n198.51.100.1",
        "end\n198.51.100.9\n",
    ] {
        let r = ns
            .f2b_stdin(&["reconcile", "--jail", "sshd", "--stdin"], Some(cut))
            .code(Exit::Fail2ban as i32);
        assert_eq!(r.stderr_lines().len(), 1, "{r}");
        ns.assert_unchanged(&before, &r);
    }
    // Only for one jail, and from no other source too.
    for args in [
        &["reconcile", "--stdin"][..],
        &[
            "reconcile",
            "--jail",
            "sshd",
            "--stdin",
            "--db",
            "/nonexistent",
        ][..],
    ] {
        let r = ns.f2b_stdin(args, Some("198.51.100.9\n")).code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
    }
}

#[test]
fn no_database_says_so_and_or_flush_falls_back_to_a_flush() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.1"]).ok();
    ns.f2b(&["add", "--jail", "web", "198.51.100.2"]).ok();
    let before = ns.routes();
    let missing = ns.dir.join("nonexistent.sqlite3");
    for db in [":memory:", "None", path_str(&missing)] {
        let r = ns
            .f2b(&["reconcile", "--db", db])
            .code(Exit::Fail2ban as i32);
        assert!(r.stderr.contains("nothing to read"), "{r}");
        assert_eq!(r.stderr_lines().len(), 1, "{r}");
        ns.assert_unchanged(&before, &r);
    }
    // A relative path is bad usage.
    ns.f2b(&["reconcile", "--db", "fail2ban.sqlite3"])
        .code(EXIT_USAGE);
    // --or-flush needs --jail and --db.
    ns.f2b(&["reconcile", "--or-flush", "--db", ":memory:"])
        .code(EXIT_USAGE);
    let r = ns
        .f2b(&[
            "reconcile",
            "--jail",
            "sshd",
            "--db",
            ":memory:",
            "--or-flush",
        ])
        .ok();
    assert!(r.stderr.contains("releasing the holds of sshd"), "{r}");
    assert_eq!(
        ns.owned_prefixes(),
        ["198.51.100.2/32".to_string()].into_iter().collect(),
        "{r}"
    );
}

#[test]
fn a_socket_nobody_listens_on_is_exit_7() {
    let ns = Netns::new();
    let sock = ns.dir.join("fail2ban.sock");
    let r = ns
        .f2b(&["reconcile", "--socket", path_str(&sock)])
        .code(Exit::Fail2ban as i32);
    assert!(r.stderr.contains("fail2ban is not running"), "{r}");
    ns.f2b(&["reconcile", "--socket", "/x", "--db", "/y"])
        .code(EXIT_USAGE);
}
