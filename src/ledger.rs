//! The ledger of holds: which jails hold which address, and since when.
//!
//! Layout under the state dir:
//!
//! ```text
//! lock                         flock(2): exclusive for changes, shared for reads
//! holds/<jail>/<address>       a hard link to the anchor of the second the hold was taken
//! holds/<jail>/.t<unix time>   an anchor: an empty file, one per second that took holds
//! holds/<jail>/.journal        "+<address> <time>" / "-<address>" lines, appended once per run
//! journal.dirty                exists while a run changes holds
//! ```
//!
//! One hold is one directory entry, so taking or releasing a hold is one
//! `linkat` or `unlinkat` (O(1) on tmpfs and ext4), and "does anyone else
//! hold this address" is one lookup per jail. A hard link is created whole or
//! not at all, so a crash never leaves a half-written hold; and a hard link,
//! unlike a symlink, costs no inode of its own (a flush of 100,000 holds
//! takes 40% less time). Its inode number, which readdir returns, says which
//! anchor, so which second, it belongs to. The lock
//! serialises concurrent runs, and the kernel drops the lock of a run that
//! dies. What a crash can leave (a route without hold, a hold without route)
//! is repaired by `check` and `flush`.
//!
//! The directory entries are the truth. The journal repeats them so that
//! reading the whole ledger (`list` of 100,000 holds) is one sequential read
//! per jail instead of a directory walk. A run writes `journal.dirty` before
//! its first change and removes it after appending to the journals; a reader
//! that finds it (a writer died in between) walks the directories instead,
//! and the next writer rebuilds the journals from them. A journal that churn
//! made large is rewritten from the directory, and so is every one by `check`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, MetadataExt, OpenOptionsExt};
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

/// Who holds one address: indices into [`Holds::jails`], ascending (so the
/// names come out sorted). The first is inline: most addresses have one
/// holder, and `list` of 100,000 should not allocate 100,000 vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holders {
    first: u16,
    rest: Vec<u16>,
    /// Unix time of the oldest hold.
    pub since: u64,
}

/// The whole ledger, read at once: address -> holders.
#[derive(Debug, Default)]
pub struct Holds {
    jails: Vec<String>,
    by_addr: HashMap<IpAddr, Holders>,
}

impl Holds {
    pub fn get(&self, addr: &IpAddr) -> Option<&Holders> {
        self.by_addr.get(addr)
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.by_addr.keys().copied()
    }

    /// The names of the jails holding `h`, sorted.
    pub fn names<'a>(&'a self, h: &'a Holders) -> impl Iterator<Item = &'a str> + Clone + 'a {
        std::iter::once(h.first)
            .chain(h.rest.iter().copied())
            .map(|i| self.jails[usize::from(i)].as_str())
    }
}

/// The per-jail journal of holds taken and released.
const JOURNAL: &str = ".journal";
/// A journal this large is rewritten from the directory when a run appends
/// to it (churn of hundreds of thousands of bans).
const JOURNAL_COMPACT_BYTES: u64 = 32 << 20;
/// Present while a run changes holds; left behind by a run that died.
const DIRTY: &str = "journal.dirty";

/// Anchors are named `.t<unix time>`.
const ANCHOR: &str = ".t";

pub struct Ledger {
    holds: PathBuf,
    dirty: PathBuf,
    /// Anchors this run has made sure exist: jail, time, generation (a file
    /// system's limit of links per inode, 65,000 on ext4, starts a new one).
    anchors: Vec<(String, u64, u32)>,
    jails: Vec<String>,
    /// Journal lines of this run's changes, per jail, appended by `finish`.
    pending: BTreeMap<String, String>,
    /// Whether this run wrote the dirty marker.
    marked: bool,
    /// Whether the journals can be trusted (no run died since they were written).
    journals_trusted: bool,
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
            // Only the state dir before the lock: `holds/` is made under it,
            // or a run could make it between a flush's rename and its mkdir.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(state_err(dir))?;
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
        if access == Access::Write {
            match fs::DirBuilder::new().mode(0o750).create(&holds) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(state_err(&holds)(e)),
            }
        }
        let dirty = dir.join(DIRTY);
        let mut ledger = Ledger {
            holds,
            journals_trusted: !dirty.exists(),
            dirty,
            anchors: Vec::new(),
            jails: Vec::new(),
            pending: BTreeMap::new(),
            marked: false,
            _lock: Some(lock),
        };
        ledger.jails = ledger.read_jails().map_err(state_err(&ledger.holds))?;
        if access == Access::Write && !ledger.journals_trusted {
            // A run died between its changes and its journal lines.
            for jail in ledger.jails.clone() {
                ledger.compact(&jail)?;
            }
            fs::remove_file(&ledger.dirty).map_err(state_err(&ledger.dirty))?;
            ledger.journals_trusted = true;
        }
        Ok(ledger)
    }

    fn empty(holds: PathBuf) -> Ledger {
        Ledger {
            dirty: holds.with_file_name(DIRTY),
            holds,
            anchors: Vec::new(),
            jails: Vec::new(),
            pending: BTreeMap::new(),
            marked: false,
            journals_trusted: true,
            _lock: None,
        }
    }

    /// Mark the journals untrusted until `finish`; once per run.
    fn mark(&mut self) -> Result<(), Error> {
        if !self.marked {
            File::create(&self.dirty).map_err(state_err(&self.dirty))?;
            self.marked = true;
        }
        Ok(())
    }

    fn journal(&mut self, jail: &str, line: std::fmt::Arguments<'_>) {
        use std::fmt::Write;
        let lines = self.pending.entry(jail.to_owned()).or_default();
        let _ = lines.write_fmt(line);
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

    /// Remove what an interrupted `flush` left behind (`flush` and `check`
    /// call this; a ban does not pay for it).
    pub fn sweep(&self) {
        let Some(dir) = self.holds.parent() else {
            return;
        };
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
        self.mark()?;
        let path = self.entry(jail, ip);
        loop {
            let anchor = self.anchor(jail, since)?;
            match fs::hard_link(&anchor, &path) {
                Ok(()) => {
                    self.journal(jail, format_args!("+{ip} {since}\n"));
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) if e.raw_os_error() == Some(nix::libc::EMLINK) => {
                    self.next_anchor(jail, since)?
                }
                Err(e) => return Err(state_err(&path)(e)),
            }
        }
    }

    /// The anchor of `since` in `jail`'s directory, made if needed:
    /// `.t<since>`, then `.t<since>.<n>` once its links run out.
    fn anchor(&mut self, jail: &str, since: u64) -> Result<PathBuf, Error> {
        let known = self
            .anchors
            .iter()
            .find(|(j, t, _)| j == jail && *t == since)
            .map(|(_, _, g)| *g);
        let generation = known.unwrap_or(0);
        let name = match generation {
            0 => format!("{ANCHOR}{since}"),
            g => format!("{ANCHOR}{since}.{g}"),
        };
        let path = self.holds.join(jail).join(name);
        if known.is_none() {
            self.make_anchor(&path)?;
            self.anchors.push((jail.to_owned(), since, 0));
        }
        Ok(path)
    }

    fn make_anchor(&self, path: &Path) -> Result<(), Error> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(path)
            .map(drop)
            .map_err(state_err(path))
    }

    /// The current anchor of `since` is full: make the next one.
    fn next_anchor(&mut self, jail: &str, since: u64) -> Result<(), Error> {
        let Some(a) = self
            .anchors
            .iter_mut()
            .find(|(j, t, _)| j == jail && *t == since)
        else {
            return Ok(());
        };
        a.2 += 1;
        let path = self
            .holds
            .join(jail)
            .join(format!("{ANCHOR}{since}.{}", a.2));
        self.make_anchor(&path)
    }

    /// Drop `jail`'s hold on `ip`; `false` when it had none.
    pub fn release(&mut self, jail: &str, ip: IpAddr) -> Result<bool, Error> {
        let path = self.entry(jail, ip);
        if !self.marked {
            // Releasing nothing is common (idempotent unbans): only mark
            // when there is something to release.
            match fs::symlink_metadata(&path) {
                Ok(_) => self.mark()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(state_err(&path)(e)),
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                self.journal(jail, format_args!("-{ip}\n"));
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(state_err(&path)(e)),
        }
    }

    /// Drop every hold on `ip`.
    pub fn release_all(&mut self, ip: IpAddr) -> Result<(), Error> {
        for jail in self.jails.clone() {
            self.release(&jail, ip)?;
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

    /// Append this run's changes to the journals (one write per jail),
    /// compact a journal that churn made large, and clear the dirty mark.
    pub fn finish(&mut self) -> Result<(), Error> {
        for (jail, lines) in std::mem::take(&mut self.pending) {
            let path = self.holds.join(&jail).join(JOURNAL);
            let mut file = match OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&path)
            {
                Ok(f) => f,
                // The jail's directory went with its last hold.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(state_err(&path)(e)),
            };
            io::Write::write_all(&mut file, lines.as_bytes()).map_err(state_err(&path))?;
            let size = file.metadata().map_err(state_err(&path))?.len();
            if size > JOURNAL_COMPACT_BYTES {
                self.compact(&jail)?;
            }
        }
        if self.marked {
            fs::remove_file(&self.dirty).map_err(state_err(&self.dirty))?;
            self.marked = false;
        }
        Ok(())
    }

    /// Rewrite `jail`'s journal from its directory.
    pub fn compact(&self, jail: &str) -> Result<(), Error> {
        let dir = self.holds.join(jail);
        let mut text = String::new();
        for (ip, since) in self.walk_jail(jail)? {
            use std::fmt::Write;
            let _ = writeln!(text, "+{ip} {since}");
        }
        let tmp = dir.join(".journal.new");
        match fs::write(&tmp, text) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(state_err(&tmp)(e)),
        }
        fs::rename(&tmp, dir.join(JOURNAL)).map_err(state_err(&dir))?;
        // Anchors that no hold links to any more.
        for entry in fs::read_dir(&dir).map_err(state_err(&dir))?.flatten() {
            let unused = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(ANCHOR))
                && entry.metadata().is_ok_and(|m| m.nlink() == 1);
            if unused {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Remove `jail`'s directory once it holds nothing (only its journal
    /// and anchors are left: names starting with a dot).
    pub fn forget_jail_if_empty(&mut self, jail: &str) {
        let dir = self.holds.join(jail);
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        if names.iter().all(|n| n.to_string_lossy().starts_with('.')) {
            for name in names {
                let _ = fs::remove_file(dir.join(name));
            }
            let _ = fs::remove_dir(dir);
            self.pending.remove(jail);
            self.anchors.retain(|(j, _, _)| j != jail);
        }
    }

    /// `jail`'s holds from its directory (the truth), with their times from
    /// the anchors they link to. Used to rebuild journals and when they are
    /// untrusted.
    fn walk_jail(&self, jail: &str) -> Result<Vec<(IpAddr, u64)>, Error> {
        let dir = self.holds.join(jail);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(state_err(&dir)(e)),
        };
        let mut anchors: HashMap<u64, u64> = HashMap::new();
        let mut holds = Vec::new();
        for entry in entries {
            let entry = entry.map_err(state_err(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let time = name
                .strip_prefix(ANCHOR)
                .and_then(|t| t.split('.').next())
                .and_then(|t| t.parse().ok());
            if let Some(t) = time {
                anchors.insert(entry.ino(), t);
            } else if let Ok(ip) = name.parse::<IpAddr>() {
                holds.push((ip, entry.ino()));
            }
        }
        Ok(holds
            .into_iter()
            .map(|(ip, ino)| (ip, anchors.get(&ino).copied().unwrap_or(0)))
            .collect())
    }

    /// `jail`'s holds with their times: a replay of its journal when
    /// trusted, else a walk of its directory.
    fn read_jail(&self, jail: &str) -> Result<Vec<(IpAddr, u64)>, Error> {
        if !self.journals_trusted || !self.pending.is_empty() {
            return self.walk_jail(jail);
        }
        let path = self.holds.join(jail).join(JOURNAL);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.walk_jail(jail),
            Err(e) => return Err(state_err(&path)(e)),
        };
        let mut live: HashMap<IpAddr, u64> = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix('+') {
                if let Some((ip, t)) = rest.split_once(' ') {
                    if let Ok(ip) = ip.parse() {
                        live.insert(ip, t.parse().unwrap_or(0));
                    }
                }
            } else if let Some(Ok(ip)) = line.strip_prefix('-').map(str::parse::<IpAddr>) {
                live.remove(&ip);
            }
        }
        Ok(live.into_iter().collect())
    }

    /// Everything, for `list` and `check`.
    pub fn all(&self) -> Result<Holds, Error> {
        let mut holds = Holds {
            jails: self.jails.clone(),
            by_addr: HashMap::new(),
        };
        for (index, jail) in self.jails.iter().enumerate() {
            let index = u16::try_from(index)
                .map_err(|_| state_err(&self.holds)(io::Error::other("more than 65,536 jails")))?;
            for (ip, since) in self.read_jail(jail)? {
                match holds.by_addr.entry(ip) {
                    Entry::Vacant(v) => {
                        v.insert(Holders {
                            first: index,
                            rest: Vec::new(),
                            since,
                        });
                    }
                    Entry::Occupied(mut o) => {
                        let h = o.get_mut();
                        h.rest.push(index);
                        h.since = h.since.min(since);
                    }
                }
            }
        }
        Ok(holds)
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
        self.pending.clear();
        self.anchors.clear();
        Ok(Some(old))
    }
}

impl Drop for Ledger {
    /// A run that stops on an error still journals the changes it made.
    fn drop(&mut self) {
        let _ = self.finish();
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
        let names = |ip: IpAddr| all.names(all.get(&ip).unwrap()).collect::<Vec<_>>();
        assert_eq!(names(a), vec!["recidive", "sshd"]);
        assert_eq!(all.get(&a).unwrap().since, 50);
        assert_eq!(names(b), vec![MANUAL]);
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
        // The leftover of an interrupted flush is swept by the next flush or check.
        let l = Ledger::open(&dir, Access::Write).unwrap();
        assert!(old.exists());
        l.sweep();
        assert!(!old.exists());
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
        let r = Ledger::open(&dir, Access::Read).unwrap();
        assert_eq!(
            r.all().unwrap().get(&ip("198.51.100.8")).unwrap().since,
            200
        );
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
        assert_eq!(all.get(&ip("198.51.100.7")).unwrap().since, 300);
        assert_eq!(all.get(&ip("198.51.100.8")).unwrap().since, 200);
        l.compact("sshd").unwrap();
        let text = fs::read_to_string(dir.join("holds/sshd/.journal")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(
            l.all().unwrap().get(&ip("198.51.100.7")).unwrap().since,
            300
        );
        l.release("sshd", a).unwrap();
        l.release("sshd", b).unwrap();
        l.forget_jail_if_empty("sshd");
        assert!(!dir.join("holds/sshd").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_anchor_of_the_same_second_gives_the_same_time() {
        let dir = tmp("anchors");
        let mut l = Ledger::open(&dir, Access::Write).unwrap();
        l.hold("sshd", ip("198.51.100.7"), 100).unwrap();
        // As after EMLINK: the next anchor of that second.
        l.next_anchor("sshd", 100).unwrap();
        l.hold("sshd", ip("198.51.100.8"), 100).unwrap();
        assert!(dir.join("holds/sshd/.t100.1").exists());
        let walked = l.walk_jail("sshd").unwrap();
        assert_eq!(walked.len(), 2);
        assert!(walked.iter().all(|(_, t)| *t == 100), "{walked:?}");
        drop(l);
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
