//! The ledger of holds: which jails hold which address, and since when.
//!
//! Layout under the state dir:
//!
//! ```text
//! lock                         flock(2): exclusive for changes, shared for reads
//! holds/<jail>/<address>       a symlink whose target is the unix time of the hold
//!
//! holds/<jail>/.since         "<address> <unix time>" lines, appended once per run
//! ```
//!
//! One hold is one directory entry, so taking or releasing a hold is one
//! `symlinkat` or `unlinkat` (O(1) on tmpfs and ext4), and "does anyone else
//! hold this address" is one lookup per jail. A symlink is created whole or
//! not at all, so a crash never leaves a half-written hold; the lock
//! serialises concurrent runs, and the kernel drops the lock of a run that
//! dies. What a crash can leave (a route without hold, a hold without route)
//! is repaired by `check` and `flush`.
//!
//! `.since` only makes reading the whole ledger fast (`list` of 100,000 holds
//! reads one file per jail instead of 100,000 symlinks). The directory entries
//! say which holds exist; a line for an address that is not held is ignored,
//! the last line for an address wins, and a hold without a line falls back to
//! its symlink. `check` rewrites the file from the live holds.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use crate::error::Error;

/// The hold taken by `add` and `del` without `--jail`.
pub const MANUAL: &str = "@manual";

/// Is `name` usable as a jail name (and so as a directory name)?
pub fn valid_jail(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Who holds one address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holders {
    /// Sorted jail names.
    pub jails: Vec<String>,
    /// Unix time of the oldest hold.
    pub since: u64,
}

/// The per-jail file of hold times.
const SINCE: &str = ".since";
/// A `.since` file this large is rewritten from the live holds when a run
/// appends to it (churn of hundreds of thousands of bans).
const SINCE_COMPACT_BYTES: u64 = 32 << 20;

pub struct Ledger {
    holds: PathBuf,
    jails: Vec<String>,
    /// `.since` lines of this run's new holds, per jail, written by `finish`.
    pending: BTreeMap<String, String>,
    /// None only for a read of a ledger that was never written.
    _lock: Option<Flock<File>>,
}

fn state_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::State {
        path: path.to_path_buf(),
        source,
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ledger {
    /// Open (creating it if needed) and lock the ledger in `dir`.
    pub fn open(dir: &Path, access: Access) -> Result<Ledger, Error> {
        let holds = dir.join("holds");
        if access == Access::Write {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&holds)
                .map_err(state_err(&holds))?;
        }
        let lock_path = dir.join("lock");
        let file = match OpenOptions::new()
            .read(true)
            .write(access == Access::Write)
            .create(access == Access::Write)
            .mode(0o640)
            .open(&lock_path)
        {
            Ok(f) => f,
            // Nothing was ever held: read an empty ledger.
            Err(e) if e.kind() == io::ErrorKind::NotFound && access == Access::Read => {
                return Ok(Ledger::empty(holds));
            }
            Err(e) => return Err(state_err(&lock_path)(e)),
        };
        let mode = match access {
            Access::Read => FlockArg::LockShared,
            Access::Write => FlockArg::LockExclusive,
        };
        let lock = Flock::lock(file, mode).map_err(|(_, errno)| {
            state_err(&lock_path)(io::Error::from_raw_os_error(errno as i32))
        })?;
        let mut ledger = Ledger {
            holds,
            jails: Vec::new(),
            pending: BTreeMap::new(),
            _lock: Some(lock),
        };
        ledger.jails = ledger.read_jails().map_err(state_err(&ledger.holds))?;
        if access == Access::Write {
            ledger.sweep(dir);
        }
        Ok(ledger)
    }

    fn empty(holds: PathBuf) -> Ledger {
        Ledger {
            holds,
            jails: Vec::new(),
            pending: BTreeMap::new(),
            _lock: None,
        }
    }

    fn read_jails(&self) -> io::Result<Vec<String>> {
        let mut jails = Vec::new();
        let entries = match fs::read_dir(&self.holds) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(jails),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let name = entry?.file_name();
            if let Some(name) = name.to_str() {
                if valid_jail(name) || name == MANUAL {
                    jails.push(name.to_owned());
                }
            }
        }
        jails.sort();
        Ok(jails)
    }

    /// Remove what an interrupted `flush` left behind.
    fn sweep(&self, dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("holds.old.")
                {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    fn entry(&self, jail: &str, ip: IpAddr) -> PathBuf {
        let mut p = self.holds.join(jail);
        p.push(ip.to_string());
        p
    }

    /// Record that `jail` holds `ip`; `false` when it already did.
    pub fn hold(&mut self, jail: &str, ip: IpAddr, since: u64) -> Result<bool, Error> {
        if self
            .jails
            .binary_search_by(|j| j.as_str().cmp(jail))
            .is_err()
        {
            let dir = self.holds.join(jail);
            match fs::DirBuilder::new().mode(0o750).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(state_err(&dir)(e)),
            }
            self.jails.push(jail.to_owned());
            self.jails.sort();
        }
        let path = self.entry(jail, ip);
        match std::os::unix::fs::symlink(since.to_string(), &path) {
            Ok(()) => {
                use std::fmt::Write;
                let lines = self.pending.entry(jail.to_owned()).or_default();
                let _ = writeln!(lines, "{ip} {since}");
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(state_err(&path)(e)),
        }
    }

    /// Drop `jail`'s hold on `ip`; `false` when it had none.
    pub fn release(&self, jail: &str, ip: IpAddr) -> Result<bool, Error> {
        let path = self.entry(jail, ip);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(state_err(&path)(e)),
        }
    }

    /// Drop every hold on `ip`.
    pub fn release_all(&self, ip: IpAddr) -> Result<(), Error> {
        for jail in &self.jails {
            self.release(jail, ip)?;
        }
        Ok(())
    }

    /// Does any jail hold `ip`? One lookup per jail.
    pub fn is_held(&self, ip: IpAddr) -> Result<bool, Error> {
        for jail in &self.jails {
            let path = self.entry(jail, ip);
            match fs::symlink_metadata(&path) {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(state_err(&path)(e)),
            }
        }
        Ok(false)
    }

    /// The addresses `jail` holds.
    pub fn held_by(&self, jail: &str) -> Result<Vec<IpAddr>, Error> {
        let dir = self.holds.join(jail);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(state_err(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(state_err(&dir))?;
            if let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.push(ip);
            }
        }
        Ok(out)
    }

    /// The jails that hold (or held) something.
    pub fn jails(&self) -> &[String] {
        &self.jails
    }

    /// Append this run's hold times to the `.since` files (one write per
    /// jail), compacting a file that churn made large.
    pub fn finish(&mut self) -> Result<(), Error> {
        for (jail, lines) in std::mem::take(&mut self.pending) {
            let path = self.holds.join(&jail).join(SINCE);
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&path)
                .map_err(state_err(&path))?;
            io::Write::write_all(&mut file, lines.as_bytes()).map_err(state_err(&path))?;
            let size = file.metadata().map_err(state_err(&path))?.len();
            if size > SINCE_COMPACT_BYTES {
                self.compact(&jail)?;
            }
        }
        Ok(())
    }

    /// Rewrite `jail`'s `.since` from its live holds.
    pub fn compact(&self, jail: &str) -> Result<(), Error> {
        let dir = self.holds.join(jail);
        let mut text = String::new();
        for (ip, since) in self.read_jail(jail)? {
            use std::fmt::Write;
            let _ = writeln!(text, "{ip} {since}");
        }
        let tmp = dir.join(".since.new");
        fs::write(&tmp, text).map_err(state_err(&tmp))?;
        fs::rename(&tmp, dir.join(SINCE)).map_err(state_err(&dir))
    }

    /// Remove `jail`'s directory once it holds nothing.
    pub fn forget_jail_if_empty(&self, jail: &str) {
        let dir = self.holds.join(jail);
        let only_since = fs::read_dir(&dir)
            .map(|mut entries| entries.all(|e| e.is_ok_and(|e| e.file_name() == SINCE)))
            .unwrap_or(false);
        if only_since {
            let _ = fs::remove_file(dir.join(SINCE));
            let _ = fs::remove_dir(dir);
        }
    }

    /// `jail`'s holds (addresses as written, in canonical text form) with
    /// their times: the directory says which holds exist, `.since` (or,
    /// failing that, the symlink) since when. No address is parsed: this is
    /// the inner loop of `list`.
    fn read_jail(&self, jail: &str) -> Result<Vec<(String, u64)>, Error> {
        let dir = self.holds.join(jail);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(state_err(&dir)(e)),
        };
        let times = fs::read_to_string(dir.join(SINCE)).unwrap_or_default();
        let mut since: HashMap<&str, u64> = HashMap::new();
        for line in times.lines() {
            if let Some((ip, t)) = line.split_once(' ') {
                if let Ok(t) = t.parse() {
                    since.insert(ip, t);
                }
            }
        }
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(state_err(&dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let t = since.get(name.as_str()).copied().unwrap_or_else(|| {
                fs::read_link(entry.path())
                    .ok()
                    .and_then(|t| t.to_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0)
            });
            out.push((name, t));
        }
        Ok(out)
    }

    /// Everything: address (canonical text, as `IpAddr` displays it) -> holders.
    pub fn all(&self) -> Result<HashMap<String, Holders>, Error> {
        let mut out: HashMap<String, Holders> = HashMap::new();
        for jail in &self.jails {
            for (ip, since) in self.read_jail(jail)? {
                let h = out.entry(ip).or_insert(Holders {
                    jails: Vec::new(),
                    since,
                });
                h.jails.push(jail.clone());
                h.since = h.since.min(since);
            }
        }
        Ok(out)
    }

    /// Drop every hold. The tree is first renamed away (one atomic step), so
    /// an interruption leaves an empty ledger plus garbage that the next
    /// writer sweeps. Returns the renamed tree for the caller to remove,
    /// possibly on another thread.
    pub fn clear(&mut self) -> Result<Option<PathBuf>, Error> {
        let Some(parent) = self.holds.parent() else {
            return Ok(None);
        };
        let old = parent.join(format!("holds.old.{}", std::process::id()));
        match fs::rename(&self.holds, &old) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state_err(&self.holds)(e)),
        }
        fs::DirBuilder::new()
            .mode(0o750)
            .create(&self.holds)
            .map_err(state_err(&self.holds))?;
        self.jails.clear();
        Ok(Some(old))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("f2b-route-ledger-{}-{name}", std::process::id()));
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
        let a = ip("198.51.100.7");
        let b = ip("2001:db8::7");
        assert!(l.hold("sshd", a, 100).unwrap());
        assert!(!l.hold("sshd", a, 200).unwrap());
        assert!(l.hold("recidive", a, 50).unwrap());
        assert!(l.hold(MANUAL, b, 300).unwrap());
        l.finish().unwrap();
        let all = l.all().unwrap();
        assert_eq!(all["198.51.100.7"].jails, vec!["recidive", "sshd"]);
        assert_eq!(all["198.51.100.7"].since, 50);
        assert_eq!(all["2001:db8::7"].jails, vec![MANUAL]);
        assert!(l.release("sshd", a).unwrap());
        assert!(!l.release("sshd", a).unwrap());
        assert!(l.is_held(a).unwrap());
        assert_eq!(l.held_by("recidive").unwrap(), vec![a]);
        l.release_all(a).unwrap();
        assert!(!l.is_held(a).unwrap());
        drop(l);
        // A fresh open sees what the last one left.
        let mut l = Ledger::open(&dir, Access::Write).unwrap();
        assert!(l.is_held(b).unwrap());
        let old = l.clear().unwrap().unwrap();
        assert!(old.exists());
        assert!(l.all().unwrap().is_empty());
        drop(l);
        // The leftover of an interrupted flush is swept by the next writer.
        let _l = Ledger::open(&dir, Access::Write).unwrap();
        assert!(!old.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn times_come_from_since_files_or_symlinks() {
        let dir = tmp("since");
        let mut l = Ledger::open(&dir, Access::Write).unwrap();
        let a = ip("198.51.100.7");
        let b = ip("198.51.100.8");
        l.hold("sshd", a, 100).unwrap();
        l.finish().unwrap();
        // A hold without a line (a crash between symlink and append) still has its time.
        l.hold("sshd", b, 200).unwrap();
        l.pending.clear();
        // Released and held again: the newer line wins.
        l.release("sshd", a).unwrap();
        l.hold("sshd", a, 300).unwrap();
        l.finish().unwrap();
        let all = l.all().unwrap();
        assert_eq!(all["198.51.100.7"].since, 300);
        assert_eq!(all["198.51.100.8"].since, 200);
        l.compact("sshd").unwrap();
        let text = fs::read_to_string(dir.join("holds/sshd/.since")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(l.all().unwrap()["198.51.100.7"].since, 300);
        l.release("sshd", a).unwrap();
        l.release("sshd", b).unwrap();
        l.forget_jail_if_empty("sshd");
        assert!(!dir.join("holds/sshd").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reading_a_ledger_that_never_existed() {
        let dir = tmp("never");
        let l = Ledger::open(&dir, Access::Read).unwrap();
        assert!(l.all().unwrap().is_empty());
        assert!(!dir.exists());
    }
}
