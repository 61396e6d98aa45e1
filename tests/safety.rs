//! The safety net, tried as a hostile local user would and as fail2ban
//! does: each test here failed on the build before its fix (run them
//! against another build with `F2B_ROUTE_UNDER_TEST=/path/to/f2b-route`).
//! Root only, each in a network namespace of its own (see `common`).

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every path under `dir` with its content (files) or link target, sorted:
/// what "changed nothing" is checked against.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            let body = if t.is_dir() {
                todo.push(p.clone());
                b"<dir>".to_vec()
            } else if t.is_symlink() {
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                fs::read(&p).unwrap()
            };
            out.push((p, body));
        }
    }
    out.sort();
    out
}

#[test]
fn the_state_dir_is_made_0700() {
    let ns = Netns::new();
    fs::remove_dir(ns.state_dir()).unwrap();
    ns.f2b(&["add", "198.51.100.7"]).ok();
    assert_eq!(mode(&ns.state_dir()), 0o700);
}

/// `holds/<jail>` replaced by a link to a home directory: `flush --jail`
/// used to delete the home's files named like addresses and its dot-files.
#[test]
fn a_planted_jail_link_deletes_nothing() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7"]).ok();
    let home = ns.dir.join("home");
    fs::create_dir(&home).unwrap();
    fs::write(home.join(".bashrc"), "keep").unwrap();
    fs::write(home.join("198.51.100.9"), "keep").unwrap();
    let jail = ns.state_dir().join("holds/sshd");
    fs::remove_dir_all(&jail).unwrap();
    symlink(&home, &jail).unwrap();
    let before = ns.routes();
    for args in [
        vec!["flush", "--jail", "sshd"],
        vec!["add", "--jail", "sshd", "198.51.100.8"],
        vec!["del", "--jail", "sshd", "198.51.100.9"],
        vec!["check", "--repair"],
        vec!["flush"],
    ] {
        let r = ns.f2b(&args).code(EXIT_PERMISSION);
        assert!(
            r.stderr.contains("holds/sshd"),
            "the error names the link\n{r}"
        );
        assert_eq!(r.stderr_lines().len(), 1, "one line\n{r}");
        ns.assert_unchanged(&before, &r);
        assert!(
            home.join(".bashrc").exists() && home.join("198.51.100.9").exists(),
            "{r}"
        );
    }
}

/// `holds/<jail>/.journal.new` -> another file: the journal rebuild used to
/// overwrite it.
#[test]
fn a_planted_journal_link_is_not_written() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7"]).ok();
    let victim = ns.dir.join("victim");
    fs::write(&victim, "keep").unwrap();
    symlink(&victim, ns.state_dir().join("holds/sshd/.journal.new")).unwrap();
    ns.f2b(&["check"]).ok();
    ns.f2b(&["check", "--repair"]).ok();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    let listed = ns.list_json();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["jails"], serde_json::json!(["sshd"]));
}

/// `lock`, `journal.dirty` or an anchor `.t<now>` -> a path that does not
/// exist: root used to create it.
#[test]
fn planted_lock_dirty_and_anchor_links_create_nothing() {
    for name in ["lock", "journal.dirty", "anchor"] {
        let ns = Netns::new();
        let target = ns.dir.join(format!("made-by-root-{name}"));
        let planted: Vec<PathBuf> = match name {
            "lock" => vec![ns.state_dir().join("lock")],
            "journal.dirty" => {
                ns.f2b(&["add", "198.51.100.7"]).ok();
                vec![ns.state_dir().join("journal.dirty")]
            }
            _ => {
                // A jail's directory whose anchors of the next seconds are links.
                ns.f2b(&["add", "--jail", "other", "198.51.100.7"]).ok();
                fs::create_dir(ns.state_dir().join("holds/sshd")).unwrap();
                chmod(&ns.state_dir().join("holds/sshd"), 0o700);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                (now..now + 5)
                    .map(|t| ns.state_dir().join(format!("holds/sshd/.t{t}")))
                    .filter(|p| !p.exists())
                    .collect()
            }
        };
        for p in &planted {
            symlink(&target, p).unwrap();
        }
        let before = ns.routes();
        let r = ns
            .f2b(&["add", "--jail", "sshd", "198.51.100.8"])
            .code(EXIT_PERMISSION);
        ns.assert_unchanged(&before, &r);
        assert!(
            !target.exists(),
            "{name}: root created the link's target\n{r}"
        );
    }
}

#[test]
fn a_state_dir_others_could_change_is_refused() {
    let ns = Netns::new();
    // A state dir of its own one level down, so that spoiling its parent
    // leaves the config's directory alone.
    let parent = ns.dir.join("parent");
    fs::create_dir(&parent).unwrap();
    let state = parent.join("state");
    let config = ns.config_path().display().to_string();
    let state_arg = state.display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec![
            "--config",
            config.as_str(),
            "--state-dir",
            state_arg.as_str(),
        ];
        all.extend_from_slice(args);
        ns.f2b_bare(&all)
    };
    run(&["add", "198.51.100.7"]).ok();
    let cases: [(&Path, u32, Option<u32>, &str); 4] = [
        (&state, 0o770, None, "writable by group"),
        (&state, 0o1777, None, "writable by group and others"),
        (&parent, 0o777, None, "not sticky"),
        (&state, 0o700, Some(65534), "owned by uid 65534"),
    ];
    for (path, spoilt_mode, owner, why) in cases {
        let saved = mode(path);
        chmod(path, spoilt_mode);
        if let Some(uid) = owner {
            chown(path, uid);
        }
        let before = ns.routes();
        for args in [
            vec!["add", "198.51.100.8"],
            vec!["del", "198.51.100.7"],
            vec!["check"],
        ] {
            let r = run(&args).code(EXIT_PERMISSION);
            assert!(r.stderr.contains(why), "{why}\n{r}");
            assert_eq!(r.stderr_lines().len(), 1, "{r}");
            ns.assert_unchanged(&before, &r);
        }
        chmod(path, saved);
        chown(path, 0);
    }
    // A sticky parent (as /tmp) is fine.
    chmod(&parent, 0o1777);
    run(&["add", "198.51.100.8"]).ok();
}

/// A config another user could write used to be loaded: such a user could
/// empty `protect`.
#[test]
fn a_config_others_could_change_is_refused() {
    let ns = Netns::new();
    ns.write_config("protect = [\"198.51.100.0/24\"]\n");
    let config = ns.config_path();
    let run = |path: &Path| {
        ns.f2b_bare(&[
            "--config",
            &path.display().to_string(),
            "--state-dir",
            &ns.state_dir().display().to_string(),
            "add",
            "198.51.100.7",
        ])
    };
    run(&config).code(EXIT_GUARD);
    let before = ns.routes();
    chmod(&config, 0o666);
    let r = run(&config).code(EXIT_CONFIG);
    assert!(r.stderr.contains("writable by group and others"), "{r}");
    ns.assert_unchanged(&before, &r);
    chmod(&config, 0o644);
    chown(&config, 65534);
    let r = run(&config).code(EXIT_CONFIG);
    assert!(r.stderr.contains("owned by uid 65534"), "{r}");
    chown(&config, 0);
    // A link in a directory only root can write is followed ...
    let link = ns.dir.join("link.toml");
    symlink(&config, &link).unwrap();
    run(&link).code(EXIT_GUARD);
    // ... one in a directory anyone can write is not.
    let open = ns.dir.join("open");
    fs::create_dir(&open).unwrap();
    symlink(&config, open.join("f2b-route.toml")).unwrap();
    chmod(&open, 0o777);
    let r = run(&open.join("f2b-route.toml")).code(EXIT_CONFIG);
    ns.assert_unchanged(&before, &r);
}

/// AnyIP: a local route of a whole prefix on lo. Blackholing an address
/// inside it used to succeed.
#[test]
fn local_routes_of_any_length_are_guarded() {
    let ns = Netns::with_veth();
    ns.ipl("route add local 198.51.100.128/26 dev lo table local");
    ns.ipl("-6 route add local 2001:db8:5::/64 dev lo table local");
    let before = ns.routes();
    for (addr, kind, route) in [
        ("198.51.100.130", "local", "198.51.100.128/26"),
        ("2001:db8:5::9", "local", "2001:db8:5::/64"),
        ("203.0.113.255", "broadcast", "203.0.113.255/32"),
    ] {
        let r = ns.f2b(&["add", addr]).code(EXIT_GUARD);
        assert!(
            r.stderr.contains(&format!("{kind} route: {kind} {route}")),
            "the refusal names the route and its real type\n{r}"
        );
        ns.assert_unchanged(&before, &r);
    }
}

/// A unicast route that happens to carry the marker: `del` used to remove
/// it, though f2b-route makes and removes only dropping routes.
#[test]
fn only_dropping_routes_are_ever_removed() {
    let ns = Netns::with_veth();
    ns.ipl("route add 198.51.100.9/32 dev v0 proto 252 metric 666");
    ns.ipl("-6 route add 2001:db8:1::9/128 dev v0 proto 252 metric 666");
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7", "2001:db8::7"])
        .ok();
    let unicast = ns.routes();
    for args in [
        vec!["del", "--jail", "sshd", "198.51.100.9", "2001:db8:1::9"],
        vec!["del", "198.51.100.9", "2001:db8:1::9"],
        vec!["check", "--repair"],
        vec!["flush", "--jail", "sshd"],
        vec!["flush"],
    ] {
        let r = ns.f2b(&args).ok();
        let after = ns.routes();
        for kept in unicast
            .iter()
            .filter(|r| r.kind == RTN_UNICAST && r.protocol == PROTO)
        {
            assert!(after.contains(kept), "{kept:?} was removed\n{r}");
        }
    }
    assert!(
        ns.owned().iter().all(|r| r.kind == RTN_UNICAST),
        "our blackholes went"
    );
}

/// fail2ban runs actioncheck after every failed ban: it used to delete
/// routes and rewrite the journals.
#[test]
fn check_changes_nothing_and_repair_mends() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7", "198.51.100.8"])
        .ok();
    ns.ipl("route del blackhole 198.51.100.8 proto 252 metric 666");
    ns.ipl("route add blackhole 198.51.100.9 proto 252 metric 666");
    let routes = ns.routes();
    let state = tree(&ns.state_dir());
    for _ in 0..2 {
        let r = ns.f2b(&["check"]).ok();
        ns.assert_unchanged(&routes, &r);
        assert!(
            tree(&ns.state_dir()) == state,
            "check changed the state dir\n{r}"
        );
    }
    let r = ns.f2b(&["check", "--repair"]).ok();
    assert!(
        r.stderr
            .contains("repaired 1 unheld route and 1 stale hold"),
        "{r}"
    );
    assert_eq!(ns.owned_prefixes(), [host("198.51.100.7")].into());
    let listed = ns.list_json();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["jails"], serde_json::json!(["sshd"]));
}

/// The state dir wiped or moved while routes stay: repair used to delete
/// every active ban (fail-open).
#[test]
fn repair_leaves_the_routes_of_a_lost_ledger() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7", "2001:db8::7"])
        .ok();
    ns.f2b(&["add", "--jail", "recidive", "198.51.100.8"]).ok();
    fs::remove_dir_all(ns.state_dir()).unwrap();
    let before = ns.routes();
    let r = ns.f2b(&["check", "--repair"]).ok();
    ns.assert_unchanged(&before, &r);
    assert!(
        r.stderr.contains("looks lost"),
        "says why it left them\n{r}"
    );
    assert_eq!(ns.owned().len(), 3);
    // Removing them stays possible, on purpose.
    ns.f2b(&["flush"]).ok();
    assert!(ns.owned().is_empty());
}

/// Protocol numbers zebra claims as its own: 42 (babel) used to be accepted.
#[test]
fn protocols_zebra_claims_are_refused_naming_the_daemon() {
    let ns = Netns::new();
    for (p, daemon) in [
        (42, "babeld"),
        (11, "zebra"),
        (186, "bgpd"),
        (196, "staticd"),
        (198, "pathd"),
    ] {
        ns.write_config(&format!("protocol = {p}\n"));
        let r = ns.f2b(&["check"]).code(EXIT_CONFIG);
        assert!(
            r.stderr.contains(daemon),
            "protocol {p} names {daemon}\n{r}"
        );
    }
}

/// A run that holds the lock for ever: a ban used to wait for it as long
/// as it took, and fail2ban killed it after 60 s without a word from it.
#[test]
fn a_held_lock_ends_the_wait_before_fail2ban_does() {
    let ns = Netns::new();
    ns.f2b(&["add", "198.51.100.7"]).ok();
    let lock = ns.state_dir().join("lock");
    let mut holder = std::process::Command::new("flock")
        .arg("--exclusive")
        .arg(&lock)
        .args(["sleep", "60"])
        .spawn()
        .expect("flock(1) from util-linux");
    // Wait until the holder has it.
    let start = Instant::now();
    loop {
        let free = std::process::Command::new("flock")
            .args(["--nonblock", "--shared"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        if !free.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = ns.routes();
    let start = Instant::now();
    let r = ns.f2b(&["add", "198.51.100.8"]);
    let waited = start.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    let r = r.code(EXIT_FAILURE);
    assert!(r.stderr.contains("held the lock"), "{r}");
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "waited {waited:?}\n{r}"
    );
    ns.assert_unchanged(&before, &r);
}

#[test]
fn small_defects_of_input_and_output() {
    let ns = Netns::new();
    let config = ns.config_path().display().to_string();
    // A relative --state-dir, as in the config, is bad input.
    let r = ns
        .f2b_bare(&[
            "--config",
            &config,
            "--state-dir",
            "relative",
            "add",
            "198.51.100.7",
        ])
        .code(EXIT_USAGE);
    assert_eq!(r.stderr_lines().len(), 1, "one line\n{r}");
    assert!(r.stderr.contains("absolute"), "{r}");
    // clap's usage errors are one line too.
    for args in [
        vec!["add", "--type", "bogus", "198.51.100.7"],
        vec!["frobnicate"],
        vec!["add"],
    ] {
        let r = ns.f2b(&args).code(EXIT_USAGE);
        assert_eq!(r.stderr_lines().len(), 1, "one line\n{r}");
    }
    // CRLF line endings from a Windows-made file.
    ns.f2b_stdin(&["add", "-"], Some("198.51.100.7\r\n2001:db8::7\r\n"))
        .ok();
    assert_eq!(ns.owned().len(), 2);
    // A megabyte of garbage on one line is not echoed whole.
    let garbage = format!("{}\n", "x".repeat(1 << 20));
    let r = ns.f2b_stdin(&["add", "-"], Some(&garbage)).code(EXIT_USAGE);
    assert!(r.stderr.len() < 300, "{} bytes on stderr", r.stderr.len());
    assert!(r.stderr.contains("1048576 bytes"), "{r}");
    // A journal with one damaged byte: list and check keep working.
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.9"]).ok();
    let journal = ns.state_dir().join("holds/sshd/.journal");
    let mut bytes = fs::read(&journal).unwrap();
    bytes[2] = 0xff;
    fs::write(&journal, bytes).unwrap();
    let listed = ns.list_json();
    assert!(
        listed
            .iter()
            .any(|o| o["address"] == "198.51.100.9" && o["jails"] == serde_json::json!(["sshd"])),
        "{listed:?}"
    );
    ns.f2b(&["check", "--repair"]).ok();
    assert!(
        std::str::from_utf8(&fs::read(&journal).unwrap()).is_ok(),
        "rebuilt"
    );
}

/// A link another user planted in a sticky directory anyone can write (as
/// /tmp) used to be followed; and a missing state dir was made there,
/// where another user could have made it first.
#[test]
fn sticky_directories_are_not_trusted_for_others_entries() {
    let ns = Netns::new();
    let sticky = ns.dir.join("sticky");
    fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    let victim = ns.dir.join("victim");
    fs::create_dir(&victim).unwrap();
    let link = sticky.join("state");
    symlink(&victim, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let config = ns.config_path().display().to_string();
    let before = ns.routes();
    for state in [link.clone(), sticky.join("missing")] {
        let r = ns
            .f2b_bare(&[
                "--config",
                &config,
                "--state-dir",
                &state.display().to_string(),
                "add",
                "198.51.100.7",
            ])
            .code(EXIT_PERMISSION);
        ns.assert_unchanged(&before, &r);
    }
    assert_eq!(
        fs::read_dir(&victim).unwrap().count(),
        0,
        "root wrote into the link's target"
    );
    assert!(!sticky.join("missing").exists());
}

/// fail2ban restarting after the state dir was wiped: each jail's start
/// repairs, then restores. A repair used to remove every ban of the jails
/// not restored yet as soon as one jail held something again.
#[test]
fn a_lost_ledgers_bans_survive_the_first_jails_restore() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "203.0.113.31", "203.0.113.32"])
        .ok();
    ns.f2b(&["add", "--jail", "recidive", "203.0.113.33", "2001:db8::34"])
        .ok();
    fs::remove_dir_all(ns.state_dir()).unwrap();
    let before = ns.routes();
    ns.f2b(&["check", "--repair"]).ok();
    ns.f2b(&["add", "--jail", "sshd", "203.0.113.31"]).ok();
    let r = ns.f2b(&["check", "--repair"]).ok();
    ns.assert_unchanged(&before, &r);
    assert!(r.stderr.contains("left 3 routes"), "{r}");
    // The bans fail2ban lifts are lifted all the same.
    ns.f2b(&["del", "--jail", "recidive", "203.0.113.33"]).ok();
    assert!(!ns.owned_prefixes().contains(&host("203.0.113.33")));
}

/// A crash between releasing holds and removing the routes, while the
/// ledger stays: the routes are leftovers, and a repair removes them (it
/// used to keep them whenever the ledger had become empty).
#[test]
fn crash_leftovers_go_even_when_no_hold_is_left() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7", "2001:db8::7"])
        .ok();
    // What `del` leaves when killed after its holds went: holds released
    // (journal untrusted), routes still there.
    let jail = ns.state_dir().join("holds/sshd");
    fs::remove_file(jail.join("198.51.100.7")).unwrap();
    fs::remove_file(jail.join("2001:db8::7")).unwrap();
    fs::write(ns.state_dir().join("journal.dirty"), "").unwrap();
    chmod(&ns.state_dir().join("journal.dirty"), 0o600);
    let r = ns.f2b(&["check", "--repair"]).ok();
    assert!(r.stderr.contains("repaired 2 unheld routes"), "{r}");
    assert!(ns.owned().is_empty(), "{r}");
}

/// IPv6 deletes ignore the route type: a route of another type with our
/// marker at the same address (a forwarding route through a nexthop
/// object, appended beside ours) used to be removed instead of ours, or
/// beside it.
#[test]
fn ipv6_routes_of_other_types_with_the_marker_are_left() {
    let ns = Netns::with_veth();
    ns.ipl("-6 nexthop add id 10 via 2001:db8:1::2 dev v0");
    ns.f2b(&["add", "--jail", "sshd", "2001:db8:5::7", "2001:db8::8"])
        .ok();
    ns.ipl("-6 route append 2001:db8:5::7/128 nhid 10 proto 252 metric 666");
    ns.ipl("-6 route add 2001:db8:5::8/128 nhid 10 proto 252 metric 666");
    ns.ipl("-6 route append blackhole 2001:db8:5::8/128 proto 252 metric 666");
    ns.ipl("-6 route add local 2001:db8:6::1/128 dev lo proto 252 metric 666 table main");
    let shared: Vec<Route> = ns
        .routes()
        .into_iter()
        .filter(|r| r.protocol == PROTO && r.prefix.starts_with("2001:db8:"))
        .filter(|r| !r.prefix.starts_with("2001:db8::8"))
        .collect();
    assert_eq!(shared.len(), 5, "{shared:#?}");
    for args in [
        vec![
            "del",
            "--jail",
            "sshd",
            "2001:db8:5::7",
            "2001:db8:5::8",
            "2001:db8:6::1",
        ],
        vec!["del", "2001:db8:5::7", "2001:db8:5::8"],
        vec!["flush"],
    ] {
        let r = ns.f2b(&args).code(EXIT_CONFLICT);
        assert!(r.stderr.contains("carries f2b-route's marker"), "{r}");
        let after = ns.routes();
        for kept in &shared {
            assert!(after.contains(kept), "{kept:?} was removed\n{r}");
        }
    }
    // Ours where nothing else carries the marker went with the flush.
    assert!(!ns.owned_prefixes().contains(&host("2001:db8::8")));
}

/// Things that are not what f2b-route keeps, inside its state dir.
#[test]
fn fifos_hard_links_and_foreign_dirs_are_refused_quickly() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7"]).ok();
    let state = ns.state_dir();
    let before = ns.routes();
    let refused = |what: &str| {
        for args in [
            vec!["add", "--jail", "sshd", "198.51.100.8"],
            vec!["check"],
            vec!["list"],
        ] {
            let start = Instant::now();
            let r = ns.f2b(&args);
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{what}: hung\n{r}"
            );
            let r = r.code(EXIT_PERMISSION);
            ns.assert_unchanged(&before, &r);
        }
    };
    // A FIFO as the lock: runs used to wait on it for ever.
    fs::rename(state.join("lock"), state.join("lock.saved")).unwrap();
    nix::unistd::mkfifo(
        &state.join("lock"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    refused("fifo lock");
    fs::remove_file(state.join("lock")).unwrap();
    fs::rename(state.join("lock.saved"), state.join("lock")).unwrap();
    // A journal that is a second name of a file elsewhere: a ban used to
    // append to that file.
    let outside = ns.dir.join("outside");
    fs::write(&outside, "keep\n").unwrap();
    let journal = state.join("holds/sshd/.journal");
    fs::remove_file(&journal).unwrap();
    fs::hard_link(&outside, &journal).unwrap();
    let r = ns.f2b(&["add", "--jail", "sshd", "198.51.100.8"]);
    assert_eq!(fs::read_to_string(&outside).unwrap(), "keep\n", "{r}");
    assert_eq!(r.code, EXIT_PERMISSION, "{r}");
    ns.f2b(&["check"]).code(EXIT_PERMISSION);
    fs::remove_file(&journal).unwrap();
    ns.f2b(&["check"]).ok();
    // A jail directory of another user's.
    chown(&state.join("holds/sshd"), 65534);
    refused("foreign jail dir");
    chown(&state.join("holds/sshd"), 0);
    // A jail entry that is a link: check used to say all is well. Every
    // run that opens it refuses it (a ban of another jail never opens it).
    symlink(&ns.dir, state.join("holds/other")).unwrap();
    for args in [
        vec!["add", "--jail", "other", "198.51.100.8"],
        vec!["del", "198.51.100.7"],
        vec!["check"],
        vec!["check", "--repair"],
        vec!["list"],
        vec!["flush"],
    ] {
        let r = ns.f2b(&args).code(EXIT_PERMISSION);
        assert!(r.stderr.contains("holds/other"), "{r}");
        ns.assert_unchanged(&before, &r);
    }
    fs::remove_file(state.join("holds/other")).unwrap();
    ns.f2b(&["check"]).ok();
}

#[test]
fn a_config_too_large_is_refused_not_cut() {
    let ns = Netns::new();
    let mut text = String::new();
    while text.len() < (1 << 20) + 1000 {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    text.push_str("protect = [\"203.0.113.0/24\"]\n");
    ns.write_config(&text);
    let r = ns.f2b(&["add", "203.0.113.50"]).code(EXIT_CONFIG);
    assert!(r.stderr.contains("larger than"), "{r}");
    assert!(ns.owned().is_empty());
}

/// fail2ban hands a raw ID "-" over as `-- "-"`: it used to read stdin,
/// find nothing, and report success.
#[test]
fn a_dash_after_double_dash_is_no_stdin() {
    let ns = Netns::new();
    for cmd in ["add", "del"] {
        let r = ns.f2b_stdin(&[cmd, "--jail", "sshd", "--", "-"], Some("198.51.100.7\n"));
        r.code(EXIT_USAGE);
    }
    assert!(ns.owned().is_empty());
    ns.f2b(&["add", "--jail", "sshd", "--", "198.51.100.7"])
        .ok();
    assert_eq!(ns.owned().len(), 1);
}

/// Each second that took a hold left an anchor file behind for ever.
#[test]
fn released_holds_leave_no_anchor_behind() {
    let ns = Netns::new();
    for i in 0..3 {
        let ip = format!("198.51.100.{}", 10 + i);
        ns.f2b(&["add", "--jail", "sshd", &ip]).ok();
        ns.f2b(&["del", "--jail", "sshd", &ip]).ok();
        std::thread::sleep(Duration::from_millis(400));
    }
    let dir = ns.state_dir().join("holds/sshd");
    let anchors: Vec<_> = fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".t"))
                .collect()
        })
        .unwrap_or_default();
    assert!(anchors.is_empty(), "{anchors:?}");
}

/// Debian's node_exporter owns /var/lib/prometheus: the textfile directory
/// below it used to be refused, so the metrics timer failed every minute.
/// A link another user could have put on the way is still not followed.
#[test]
fn metrics_write_below_another_users_directory_but_follow_no_link_there() {
    let ns = Netns::new();
    ns.f2b(&["add", "198.51.100.7"]).ok();
    let parent = ns.dir.join("prometheus");
    let textfile = parent.join("node-exporter");
    fs::create_dir_all(&textfile).unwrap();
    chown(&parent, 65534);
    let arg = textfile.display().to_string();
    ns.f2b(&["metrics", "--textfile", &arg]).ok();
    let text = fs::read_to_string(textfile.join("f2b-route.prom")).unwrap();
    assert!(text.contains("f2b_route_bans_total 1"), "{text}");
    assert_eq!(
        fs::read_dir(&textfile).unwrap().count(),
        1,
        "no temp file left"
    );
    fs::rename(&textfile, parent.join("real")).unwrap();
    symlink(parent.join("real"), &textfile).unwrap();
    let r = ns
        .f2b(&["metrics", "--textfile", &arg])
        .code(EXIT_PERMISSION);
    assert!(r.stderr.contains("symbolic link"), "{r}");
}

/// Second review: a run that died after making a new ledger but before
/// recording the routes already there left no trace that the ledger was
/// new, and the next repair removed those routes (unbans).
#[test]
fn a_new_ledger_stays_new_until_its_found_routes_are_recorded() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.41", "198.51.100.42"])
        .ok();
    let state = ns.state_dir();
    fs::remove_dir_all(&state).unwrap();
    // What such a run leaves: the state dir, `new`, `holds/`, no `found`.
    fs::create_dir(&state).unwrap();
    chmod(&state, 0o700);
    fs::write(state.join("new"), "").unwrap();
    chmod(&state.join("new"), 0o600);
    fs::create_dir(state.join("holds")).unwrap();
    chmod(&state.join("holds"), 0o700);
    let before = ns.routes();
    let r = ns.f2b(&["check", "--repair"]).ok();
    ns.assert_unchanged(&before, &r);
    assert!(r.stderr.contains("left 2 routes"), "{r}");
    assert!(!state.join("new").exists(), "recorded, no longer new");
}

/// Second review: the counters were first opened after the change, so a
/// bad counters file made a finished ban exit 4.
#[test]
fn a_bad_counters_file_stops_the_run_before_any_change() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "a", "198.51.100.20"]).ok();
    let counters = ns.state_dir().join("counters");
    fs::hard_link(&counters, ns.dir.join("counters.second-name")).unwrap();
    let before = ns.routes();
    let r = ns
        .f2b(&["add", "--jail", "a", "198.51.100.21"])
        .code(EXIT_PERMISSION);
    ns.assert_unchanged(&before, &r);
    assert!(r.stderr.contains("counters"), "{r}");
}

/// Second review: a state dir given as `.../x/..` ended in a directory
/// checked only as a parent (a sticky /tmp passed), and was used.
#[test]
fn a_state_dir_ending_in_dotdot_is_checked_as_the_state_dir() {
    let ns = Netns::new();
    let sticky = ns.dir.join("sticky");
    fs::create_dir_all(sticky.join("x")).unwrap();
    chmod(&sticky, 0o1777);
    let config = ns.config_path().display().to_string();
    let state = sticky.join("x/..").display().to_string();
    let before = ns.routes();
    let r = ns
        .f2b_bare(&[
            "--config",
            &config,
            "--state-dir",
            &state,
            "add",
            "198.51.100.9",
        ])
        .code(EXIT_PERMISSION);
    ns.assert_unchanged(&before, &r);
    assert!(!sticky.join("lock").exists());
    // And `check` says so for a state dir that would have to be made there.
    let missing = sticky.join("missing/state").display().to_string();
    ns.f2b_bare(&["--config", &config, "--state-dir", &missing, "check"])
        .code(EXIT_PERMISSION);
}

/// Second review: an unheld route of ours beside an IPv6 route of another
/// type with the marker made every repair (every jail's start) exit 5.
#[test]
fn repair_warns_about_a_shared_ipv6_address_and_goes_on() {
    let ns = Netns::with_veth();
    ns.ipl("-6 nexthop add id 10 via 2001:db8:1::2 dev v0");
    ns.f2b(&["add", "--jail", "sshd", "2001:db8:5::7"]).ok();
    ns.ipl("-6 route append 2001:db8:5::7/128 nhid 10 proto 252 metric 666");
    ns.f2b(&["del", "--jail", "sshd", "2001:db8:5::7"])
        .code(EXIT_CONFLICT);
    let r = ns.f2b(&["check", "--repair"]).ok();
    assert!(r.stderr.contains("carries f2b-route's marker"), "{r}");
}

#[test]
fn a_missing_argument_is_named() {
    let ns = Netns::new();
    let r = ns.f2b(&["del"]).code(EXIT_USAGE);
    assert!(r.stderr.contains("<IP>"), "{r}");
}
