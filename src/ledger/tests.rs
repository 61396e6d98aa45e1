use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn tmp(name: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("f2b-route-ledger-{}", std::process::id()));
    let _ = fs::create_dir(&base);
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    let d = base.join(name);
    let _ = fs::remove_dir_all(&d);
    d
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn jail_names() {
    for good in [
        "sshd",
        "recidive",
        "triton",
        "nginx-http-auth",
        "a.b_c-1",
        "9x",
    ] {
        assert!(valid_jail(good), "{good}");
    }
    for bad in [
        "",
        "@manual",
        ".hidden",
        "-x",
        "a/b",
        "..",
        "a b",
        &"x".repeat(65),
    ] {
        assert!(!valid_jail(bad), "{bad:?}");
    }
}

#[test]
fn holds_and_releases() {
    let dir = tmp("holds");
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "the state dir is made 0700");
    let a = ip("198.51.100.7");
    let b = ip("2001:db8::7");
    assert!(l.hold("sshd", a, 100).unwrap());
    assert!(!l.hold("sshd", a, 200).unwrap());
    assert!(l.hold("recidive", a, 50).unwrap());
    assert!(l.hold(MANUAL, b, 300).unwrap());
    l.finish().unwrap();
    let all = l.all().unwrap();
    let names = |ip: IpAddr| all.names(all.get(&ip).unwrap()).collect::<Vec<_>>();
    assert_eq!(names(a), vec!["recidive", "sshd"]);
    assert_eq!(all.get(&a).unwrap().since, 50);
    assert_eq!(names(b), vec![MANUAL]);
    assert!(l.release("sshd", a).unwrap());
    assert!(!l.release("sshd", a).unwrap());
    assert!(!l.release("nobody", a).unwrap());
    assert!(l.is_held(a).unwrap());
    assert_eq!(l.held_by("recidive").unwrap(), vec![a]);
    l.release_all(a).unwrap();
    assert!(!l.is_held(a).unwrap());
    drop(l);
    // A fresh open sees what the last one left.
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    assert!(l.is_held(b).unwrap());
    let old = l.clear().unwrap().unwrap();
    let old_path = old.path();
    assert!(old_path.exists());
    assert!(l.all().unwrap().is_empty());
    drop(old);
    drop(l);
    // The leftover of an interrupted flush is swept by the next flush or repair.
    let l = Ledger::open(&dir, Access::Write).unwrap();
    assert!(old_path.exists());
    l.sweep().unwrap();
    assert!(!old_path.exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn times_come_from_journals_or_anchors() {
    let dir = tmp("since");
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    let a = ip("198.51.100.7");
    let b = ip("198.51.100.8");
    l.hold("sshd", a, 100).unwrap();
    l.finish().unwrap();
    // A run that dies between its changes and its journal lines: the
    // marker stays, readers walk the directory, the next writer rebuilds.
    l.hold("sshd", b, 200).unwrap();
    l.pending.clear();
    l.marked = false;
    drop(l);
    assert!(dir.join(DIRTY).exists());
    let mut r = Ledger::open(&dir, Access::Read).unwrap();
    assert_eq!(r.all().unwrap().get(&b).unwrap().since, 200);
    drop(r);
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    assert!(!dir.join(DIRTY).exists());
    let journal = fs::read_to_string(dir.join("holds/sshd/.journal")).unwrap();
    assert!(journal.contains("+198.51.100.8 200"), "{journal}");
    // Released and held again: the newer line wins.
    l.release("sshd", a).unwrap();
    l.hold("sshd", a, 300).unwrap();
    l.finish().unwrap();
    let all = l.all().unwrap();
    assert_eq!(all.get(&a).unwrap().since, 300);
    assert_eq!(all.get(&b).unwrap().since, 200);
    l.compact_all().unwrap();
    let text = fs::read_to_string(dir.join("holds/sshd/.journal")).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert_eq!(l.all().unwrap().get(&a).unwrap().since, 300);
    l.release("sshd", a).unwrap();
    l.release("sshd", b).unwrap();
    l.forget_jail_if_empty("sshd").unwrap();
    assert!(!dir.join("holds/sshd").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_journal_is_rebuilt_from_the_directory() {
    let dir = tmp("damaged");
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    l.hold("sshd", ip("198.51.100.7"), 100).unwrap();
    l.hold("sshd", ip("2001:db8::7"), 100).unwrap();
    l.finish().unwrap();
    drop(l);
    let journal = dir.join("holds/sshd/.journal");
    let mut bytes = fs::read(&journal).unwrap();
    bytes[3] = 0xff; // one invalid UTF-8 byte
    fs::write(&journal, &bytes).unwrap();
    // Readers walk the directory (they used to fail on every run) ...
    let mut r = Ledger::open(&dir, Access::Read).unwrap();
    assert_eq!(r.all().unwrap().len(), 2);
    drop(r);
    // ... and a writer rebuilds the journal.
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    assert_eq!(l.all().unwrap().len(), 2);
    let text = fs::read_to_string(&journal).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_anchor_of_the_same_second_gives_the_same_time() {
    let dir = tmp("anchors");
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    l.hold("sshd", ip("198.51.100.7"), 100).unwrap();
    // As after EMLINK: the next anchor of that second.
    l.next_anchor(0, 100).unwrap();
    l.hold("sshd", ip("198.51.100.8"), 100).unwrap();
    assert!(dir.join("holds/sshd/.t100.1").exists());
    let walked = walk(&l.jails[0].1).unwrap();
    assert_eq!(walked.len(), 2);
    assert!(walked.iter().all(|(_, t)| *t == 100), "{walked:?}");
    drop(l);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reading_a_ledger_that_never_existed() {
    let dir = tmp("never");
    let mut l = Ledger::open(&dir, Access::Read).unwrap();
    assert!(l.all().unwrap().is_empty());
    assert!(!dir.exists());
    assert!(!inspect(&dir).unwrap(), "inspect creates nothing");
    assert!(!dir.exists());
}

/// Links planted in the state dir: each is refused, and what it points to
/// is neither created, written nor deleted.
#[test]
fn planted_links_are_never_followed() {
    let base = tmp("planted");
    fs::create_dir(&base).unwrap();
    let victim_dir = base.join("home");
    fs::create_dir(&victim_dir).unwrap();
    fs::write(victim_dir.join("precious"), "keep").unwrap();
    let state = base.join("state");
    let mut l = Ledger::open(&state, Access::Write).unwrap();
    l.hold("sshd", ip("198.51.100.7"), 100).unwrap();
    l.finish().unwrap();
    drop(l);

    // holds/<jail> -> a home directory: no run deletes its files.
    fs::rename(state.join("holds/sshd"), base.join("sshd.real")).unwrap();
    std::os::unix::fs::symlink(&victim_dir, state.join("holds/sshd")).unwrap();
    let mut l = Ledger::open(&state, Access::Write).unwrap();
    let err = l.hold("sshd", ip("198.51.100.8"), 101).unwrap_err();
    assert!(matches!(err, LedgerError::Unsafe { .. }), "{err}");
    assert!(err.to_string().contains("holds/sshd"), "{err}");
    assert!(matches!(l.all(), Err(LedgerError::Unsafe { .. })));
    assert!(matches!(l.held_by("sshd"), Err(LedgerError::Unsafe { .. })));
    drop(l);
    assert!(victim_dir.join("precious").exists());
    fs::remove_file(state.join("holds/sshd")).unwrap();
    fs::rename(base.join("sshd.real"), state.join("holds/sshd")).unwrap();

    // lock, journal.dirty, an anchor -> a file that does not exist: root
    // creates nothing.
    for planted in ["lock", "journal.dirty"] {
        let target = base.join(format!("created-{planted}"));
        let saved = state.join(format!("{planted}.saved"));
        let had = state.join(planted).exists();
        if had {
            fs::rename(state.join(planted), &saved).unwrap();
        }
        std::os::unix::fs::symlink(&target, state.join(planted)).unwrap();
        let outcome = Ledger::open(&state, Access::Write).and_then(|mut l| {
            l.hold("sshd", ip("198.51.100.9"), 101)?;
            l.finish()
        });
        assert!(
            matches!(outcome, Err(LedgerError::Unsafe { .. })),
            "{planted}: {:?}",
            outcome.err()
        );
        assert!(!target.exists(), "{planted}: the link's target was created");
        fs::remove_file(state.join(planted)).unwrap();
        if had {
            fs::rename(&saved, state.join(planted)).unwrap();
        }
    }
    let anchor_target = base.join("created-anchor");
    let t = now();
    std::os::unix::fs::symlink(&anchor_target, state.join(format!("holds/sshd/.t{t}"))).unwrap();
    let mut l = Ledger::open(&state, Access::Write).unwrap();
    let err = l.hold("sshd", ip("198.51.100.10"), t).unwrap_err();
    assert!(matches!(err, LedgerError::Unsafe { .. }), "{err}");
    assert!(!anchor_target.exists());
    drop(l);
    fs::remove_file(state.join(format!("holds/sshd/.t{t}"))).unwrap();

    // holds/<jail>/.journal.new -> another file: a rebuild does not write it.
    fs::write(base.join("other"), "keep").unwrap();
    std::os::unix::fs::symlink(base.join("other"), state.join("holds/sshd/.journal.new")).unwrap();
    let mut l = Ledger::open(&state, Access::Write).unwrap();
    l.compact_all().unwrap();
    assert_eq!(fs::read_to_string(base.join("other")).unwrap(), "keep");
    assert!(fs::read_to_string(state.join("holds/sshd/.journal"))
        .unwrap()
        .contains("198.51.100.7"));
    drop(l);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_state_dir_others_can_write_is_refused() {
    let base = tmp("open");
    fs::create_dir(&base).unwrap();
    let state = base.join("state");
    Ledger::open(&state, Access::Write).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o770)).unwrap();
    for access in [Access::Read, Access::Write] {
        let err = Ledger::open(&state, access).err().expect("refused");
        assert!(matches!(err, LedgerError::Untrusted(_)), "{err}");
    }
    assert!(inspect(&state).is_err());
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).unwrap();
    let err = Ledger::open(&state, Access::Write).err().expect("refused");
    assert!(
        err.source_text().contains("not sticky"),
        "{}",
        err.source_text()
    );
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn the_lock_wait_ends() {
    let dir = tmp("lockwait");
    let held = Ledger::open(&dir, Access::Write).unwrap();
    // A reader waits for the writer, then gives up with its own error.
    let start = Instant::now();
    let file = File::open(dir.join(LOCK)).unwrap();
    let pause = std::thread::spawn(move || lock(file, Access::Read, Path::new("x"), LOCK_WAIT));
    let outcome = pause.join().unwrap();
    assert!(matches!(outcome, Err(LedgerError::LockTimeout { .. })));
    assert!(start.elapsed() >= LOCK_WAIT);
    drop(held);
    fs::remove_dir_all(&dir).unwrap();
}

trait SourceText {
    fn source_text(&self) -> String;
}

impl SourceText for LedgerError {
    fn source_text(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}

#[test]
fn the_last_release_of_a_second_removes_its_anchor() {
    let dir = tmp("anchor-gc");
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    let (a, b, c) = (ip("198.51.100.1"), ip("198.51.100.2"), ip("2001:db8::3"));
    l.hold("sshd", a, 100).unwrap();
    l.hold("sshd", b, 100).unwrap();
    l.hold("sshd", c, 200).unwrap();
    let anchor = |t: u64| dir.join(format!("holds/sshd/.t{t}"));
    assert!(anchor(100).exists() && anchor(200).exists());
    l.release("sshd", a).unwrap();
    assert!(anchor(100).exists(), "b still holds since 100");
    l.release("sshd", b).unwrap();
    l.release("sshd", c).unwrap();
    assert!(!anchor(100).exists() && !anchor(200).exists());
    // The same second again in the same run: its anchor is made anew.
    assert!(l.hold("sshd", a, 100).unwrap());
    l.finish().unwrap();
    assert_eq!(l.all().unwrap().get(&a).unwrap().since, 100);
    drop(l);
    fs::remove_dir_all(&dir).unwrap();
}

/// Second review: a journal handle kept open across a compaction wrote to
/// the replaced file, and the journal lost the holds taken after it.
#[test]
fn holds_after_a_compaction_reach_the_journal() {
    let dir = tmp("compact-handle");
    let (a, b) = (ip("198.51.100.1"), ip("198.51.100.2"));
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    l.hold("sshd", a, 100).unwrap();
    l.finish().unwrap();
    drop(l);
    let mut l = Ledger::open(&dir, Access::Write).unwrap();
    assert!(!l.hold("sshd", a, 100).unwrap());
    l.compact_all().unwrap();
    l.hold("sshd", b, 101).unwrap();
    l.finish().unwrap();
    drop(l);
    let mut r = Ledger::open(&dir, Access::Read).unwrap();
    assert_eq!(r.all().unwrap().len(), 2);
    let journal = fs::read_to_string(dir.join("holds/sshd/.journal")).unwrap();
    assert!(journal.contains("+198.51.100.2 101"), "{journal}");
    fs::remove_dir_all(&dir).unwrap();
}
