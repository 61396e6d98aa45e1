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
//! The state dir is opened through [`trusted`]: it and every directory above
//! it must be root's and writable by nobody else, and everything inside is
//! opened relative to a directory descriptor without following links. A link
//! found inside is an error.
//!
//! One hold is one directory entry, so taking or releasing a hold is one
//! `linkat` or `unlinkat` (O(1) on tmpfs and ext4), and "does anyone else
//! hold this address" is one lookup per jail. A hard link is created whole or
//! not at all, so a crash never leaves a half-written hold; and a hard link,
//! unlike a symlink, costs no inode of its own. Its inode number, which
//! readdir returns, says which anchor, so which second, it belongs to. The
//! lock serialises concurrent runs, and the kernel drops the lock of a run
//! that dies. What a crash can leave (a route without hold, a hold without
//! route) is repaired by `check --repair` and `flush`.
//!
//! The directory entries are the truth. The journal repeats them so that
//! reading the whole ledger (`list` of 100,000 holds) is one sequential read
//! per jail instead of a directory walk. A run writes `journal.dirty` before
//! its first change and removes it after appending to the journals; a reader
//! that finds it (a writer died in between), or a journal it cannot read
//! (a damaged byte), walks the directory instead, and the next writer
//! rebuilds the journal from it.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::trusted::{self, Dir, Names, TrustError};

pub mod counters;
pub use counters::{Counter, Counts};

/// The hold taken by `add` and `del` without `--jail`.
pub const MANUAL: &str = "@manual";

/// How long a run waits for the lock before it gives up: well under
/// fail2ban's 60 s action timeout, so that f2b-route reports, not fail2ban.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Is `name` usable as a jail name (and so as a directory name)?
pub fn valid_jail(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// What went wrong with the state dir.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("state dir refused")]
    Untrusted(#[source] TrustError),
    /// Not what f2b-route keeps there: a link, another kind of file, another
    /// owner, a second name. Never followed or used.
    #[error("state dir refused: {path:?}: {reason}")]
    Unsafe { path: PathBuf, reason: String },
    #[error("state dir {path:?}: another f2b-route run held the lock for more than {} s", LOCK_WAIT.as_secs())]
    LockTimeout { path: PathBuf },
    #[error("state dir {path:?}: more than 65,536 jails")]
    TooManyJails { path: PathBuf },
    #[error("state dir {path:?}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LedgerError {
    fn at(path: PathBuf) -> impl FnOnce(io::Error) -> LedgerError {
        move |source| match source.raw_os_error() {
            _ if trusted::unsafe_reason(&source).is_some() => LedgerError::Unsafe {
                reason: trusted::unsafe_reason(&source).unwrap_or_default(),
                path,
            },
            _ => LedgerError::Io { path, source },
        }
    }

    /// The errno behind the error, where there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            LedgerError::Io { source, .. } => Some(source),
            LedgerError::Untrusted(TrustError::Io { source, .. }) => Some(source),
            _ => None,
        }
    }
}

impl From<TrustError> for LedgerError {
    fn from(e: TrustError) -> Self {
        match e {
            TrustError::Io { path, source } => LedgerError::at(path)(source),
            TrustError::Symlink { path } => LedgerError::Unsafe {
                path,
                reason: "a symbolic link (never followed)".into(),
            },
            other => LedgerError::Untrusted(other),
        }
    }
}

type Result<T, E = LedgerError> = std::result::Result<T, E>;

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

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.by_addr.keys().copied()
    }

    /// Every jail the ledger knows: each one that holds or held something
    /// (its directory stays after its last release).
    pub fn jail_names(&self) -> impl Iterator<Item = &str> {
        self.jails.iter().map(String::as_str)
    }

    /// How many addresses each jail holds, by jail name.
    pub fn per_jail(&self) -> Vec<(&str, usize)> {
        let mut counts = vec![0usize; self.jails.len()];
        for h in self.by_addr.values() {
            counts[usize::from(h.first)] += 1;
            for i in &h.rest {
                counts[usize::from(*i)] += 1;
            }
        }
        self.jails
            .iter()
            .map(String::as_str)
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// When the oldest hold was taken (unix seconds).
    pub fn oldest(&self) -> Option<u64> {
        self.by_addr.values().map(|h| h.since).min()
    }

    /// The names of the jails holding `h`, sorted.
    pub fn names<'a>(&'a self, h: &'a Holders) -> impl Iterator<Item = &'a str> + Clone + 'a {
        std::iter::once(h.first)
            .chain(h.rest.iter().copied())
            .map(|i| self.jails[usize::from(i)].as_str())
    }
}

const LOCK: &str = "lock";
const HOLDS: &str = "holds";
/// The per-jail journal of holds taken and released.
const JOURNAL: &str = ".journal";
/// A journal this large is rewritten from the directory when a run appends
/// to it (churn of hundreds of thousands of bans).
const JOURNAL_COMPACT_BYTES: u64 = 32 << 20;
/// Present while a run changes holds; left behind by a run that died.
const DIRTY: &str = "journal.dirty";
/// Routes of ours that existed when the ledger was made, one address a line.
const FOUND: &str = "found";
/// Exists from a new ledger's making until its `found` is written.
const NEW: &str = "new";
/// What a full flush renames `holds` to before removing it.
const OLD_PREFIX: &str = "holds.old.";
/// Anchors are named `.t<unix time>`.
const ANCHOR: &str = ".t";

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Check that the ledger in `dir` can be used, changing nothing: the state
/// dir (if it exists, else its parents) is trusted, and `lock` and `holds`
/// are what they should be. Returns whether the state dir exists.
pub fn inspect(dir: &Path) -> Result<bool> {
    let state = match trusted::open_dir(dir, false) {
        Ok(d) => d,
        Err(TrustError::NotFound { .. }) => {
            // It will be made by the first change: the nearest directory on
            // its way that exists must be fit, and one that the first change
            // may make directories in (not one others can write).
            let mut up = dir.parent();
            while let Some(parent) = up {
                match trusted::open_dir(parent, false) {
                    Ok(d) => {
                        if d.open_to_others()
                            .map_err(LedgerError::at(parent.to_path_buf()))?
                        {
                            return Err(LedgerError::Untrusted(TrustError::Untrusted {
                                path: dir.to_path_buf(),
                                reason: format!(
                                    "missing, and not made inside {parent:?}, which others can write"
                                ),
                            }));
                        }
                        break;
                    }
                    Err(TrustError::NotFound { .. }) => up = parent.parent(),
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    // What a run opens, opened (not changed) as it does, without the lock.
    for name in [LOCK, DIRTY, FOUND, NEW, counters::FILE] {
        if state
            .stat(os(name))
            .map_err(LedgerError::at(state.show(name)))?
            .is_some()
        {
            state
                .open(os(name), OFlag::O_RDONLY, 0, Names::One)
                .map_err(LedgerError::at(state.show(name)))?;
        }
    }
    let holds = match state.open_dir(os(HOLDS)) {
        Ok(h) => h,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(LedgerError::at(state.show(HOLDS))(e)),
    };
    for entry in holds.entries().map_err(LedgerError::at(holds.show("")))? {
        let Some(name) = entry.name.to_str() else {
            continue;
        };
        if valid_jail(name) || name == MANUAL {
            let jail = holds
                .open_dir(&entry.name)
                .map_err(LedgerError::at(holds.show(name)))?;
            if jail
                .stat(os(JOURNAL))
                .map_err(LedgerError::at(jail.show(JOURNAL)))?
                .is_some()
            {
                jail.open(os(JOURNAL), OFlag::O_RDONLY, 0, Names::One)
                    .map_err(LedgerError::at(jail.show(JOURNAL)))?;
            }
        }
    }
    Ok(true)
}

pub struct Ledger {
    /// None only for a read of a ledger that was never written.
    state: Option<Dir>,
    /// `holds/`; None when it does not exist (reads only).
    holds: Option<Dir>,
    /// The jails' directories, sorted by name.
    jails: Vec<(String, Dir)>,
    /// Anchors this run has made sure exist: jail, time, generation (a file
    /// system's limit of links per inode, 65,000 on ext4, starts a new one).
    anchors: Vec<(String, u64, u32)>,
    /// Journal lines of this run's changes, per jail, appended by `finish`.
    pending: BTreeMap<String, String>,
    /// The journals this run appends to, opened before its first change.
    journals: HashMap<String, File>,
    /// Whether every jail's directory is open (else only those used).
    listed: bool,
    /// The counters, opened with the first change.
    counters: Option<File>,
    /// Whether this run wrote the dirty marker.
    marked: bool,
    /// Whether the journals can be trusted (no run died since they were written).
    journals_trusted: bool,
    /// What this run counted, added to `counters` by `finish`.
    counted: Counts,
    access: Access,
    /// Whether this run made the ledger (it did not exist, or was lost).
    fresh: bool,
    /// Where the state dir is, for messages.
    path: PathBuf,
    _lock: Option<Flock<File>>,
}

impl Ledger {
    /// Open (creating it if needed, for writes) and lock the ledger in `dir`,
    /// waiting at most [`LOCK_WAIT`] for the lock.
    pub fn open(dir: &Path, access: Access) -> Result<Ledger> {
        Ledger::open_waiting(dir, access, LOCK_WAIT)
    }

    /// The same, waiting at most `wait` for the lock.
    pub fn open_waiting(dir: &Path, access: Access, wait: Duration) -> Result<Ledger> {
        let state = match trusted::open_dir(dir, access == Access::Write) {
            Ok(d) => d,
            // Nothing was ever held: read an empty ledger.
            Err(TrustError::NotFound { .. }) if access == Access::Read => {
                return Ok(Ledger::empty(dir))
            }
            Err(e) => return Err(e.into()),
        };
        let flags = match access {
            Access::Read => OFlag::O_RDONLY,
            Access::Write => OFlag::O_RDWR | OFlag::O_CREAT,
        };
        let file = match state.open(os(LOCK), flags, 0o600, Names::One) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && access == Access::Read => {
                return Ok(Ledger::empty(dir));
            }
            Err(e) => return Err(LedgerError::at(state.show(LOCK))(e)),
        };
        let lock = lock(file, access, &state.show(LOCK), wait)?;
        // `holds/` is made under the lock, or a run could make it between a
        // flush's rename and its mkdir; the run that makes it makes a new
        // ledger.
        //
        // That the ledger is new must outlive a run that dies before it
        // recorded the routes already there (`found`): the `new` file is
        // made before `holds/` and removed only once `found` is written.
        let fresh = if access == Access::Write {
            if state
                .stat(os(HOLDS))
                .map_err(LedgerError::at(state.show(HOLDS)))?
                .is_none()
            {
                state
                    .open(os(NEW), OFlag::O_WRONLY | OFlag::O_CREAT, 0o600, Names::One)
                    .map_err(LedgerError::at(state.show(NEW)))?;
                state
                    .mkdir(os(HOLDS), 0o700)
                    .map_err(LedgerError::at(state.show(HOLDS)))?;
            }
            state
                .stat(os(NEW))
                .map_err(LedgerError::at(state.show(NEW)))?
                .is_some()
        } else {
            false
        };
        let holds = match state.open_dir(os(HOLDS)) {
            Ok(d) => Some(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound && access == Access::Read => None,
            Err(e) => return Err(LedgerError::at(state.show(HOLDS))(e)),
        };
        let dirty = match state
            .stat(os(DIRTY))
            .map_err(LedgerError::at(state.show(DIRTY)))?
        {
            None => false,
            Some(st) if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG => true,
            Some(_) => {
                return Err(LedgerError::Unsafe {
                    path: state.show(DIRTY),
                    reason: "not a regular file".into(),
                })
            }
        };
        let mut ledger = Ledger {
            path: dir.to_path_buf(),
            state: Some(state),
            holds,
            jails: Vec::new(),
            anchors: Vec::new(),
            pending: BTreeMap::new(),
            journals: HashMap::new(),
            listed: false,
            counters: None,
            marked: false,
            journals_trusted: !dirty,
            counted: Counts::default(),
            access,
            fresh,
            _lock: Some(lock),
        };
        // A ban opens only its jail's directory; the rest list them all.
        if access == Access::Read || dirty {
            ledger.list_jails()?;
        }
        if access == Access::Write && dirty {
            // A run died between its changes and its journal lines.
            for i in 0..ledger.jails.len() {
                ledger.compact_at(i)?;
            }
            let state = ledger.state.as_ref().expect("opened above");
            state
                .unlink(os(DIRTY))
                .map_err(LedgerError::at(state.show(DIRTY)))?;
            ledger.journals_trusted = true;
        }
        Ok(ledger)
    }

    fn empty(dir: &Path) -> Ledger {
        Ledger {
            path: dir.to_path_buf(),
            state: None,
            holds: None,
            jails: Vec::new(),
            anchors: Vec::new(),
            pending: BTreeMap::new(),
            journals: HashMap::new(),
            listed: true,
            counters: None,
            marked: false,
            journals_trusted: true,
            counted: Counts::default(),
            access: Access::Read,
            fresh: false,
            _lock: None,
        }
    }

    /// Where the ledger lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> &Dir {
        self.state
            .as_ref()
            .expect("a writable ledger has its state dir")
    }

    fn holds(&self) -> &Dir {
        self.holds.as_ref().expect("a writable ledger has holds/")
    }

    /// Open every jail's directory (once per run): what is there that is
    /// not a directory of ours is an error now.
    pub fn list_jails(&mut self) -> Result<()> {
        if self.listed {
            return Ok(());
        }
        let mut found = Vec::new();
        if let Some(holds) = &self.holds {
            for entry in holds.entries().map_err(LedgerError::at(holds.show("")))? {
                let Some(name) = entry.name.to_str() else {
                    continue;
                };
                if (valid_jail(name) || name == MANUAL) && self.find(name).is_none() {
                    let dir = holds
                        .open_dir(&entry.name)
                        .map_err(LedgerError::at(holds.show(name)))?;
                    found.push((name.to_owned(), dir));
                }
            }
        }
        for (name, dir) in found {
            self.insert_jail(&name, dir);
        }
        self.listed = true;
        Ok(())
    }

    fn insert_jail(&mut self, name: &str, dir: Dir) -> usize {
        let at = self
            .jails
            .binary_search_by(|(j, _)| j.as_str().cmp(name))
            .unwrap_or_else(|at| at);
        self.jails.insert(at, (name.to_owned(), dir));
        at
    }

    fn find(&self, jail: &str) -> Option<usize> {
        self.jails
            .binary_search_by(|(j, _)| j.as_str().cmp(jail))
            .ok()
    }

    /// The index of `jail`'s directory, opened (and with `create`, made)
    /// if this run has not yet; `None` when it has none.
    fn jail(&mut self, jail: &str, create: bool) -> Result<Option<usize>> {
        if let Some(i) = self.find(jail) {
            return Ok(Some(i));
        }
        if self.listed && !create {
            return Ok(None);
        }
        let Some(holds) = &self.holds else {
            return Ok(None);
        };
        if create {
            holds
                .mkdir(os(jail), 0o700)
                .map_err(LedgerError::at(holds.show(jail)))?;
        }
        match holds.open_dir(os(jail)) {
            Ok(dir) => Ok(Some(self.insert_jail(jail, dir))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LedgerError::at(holds.show(jail))(e)),
        }
    }

    /// Mark the journals untrusted until `finish`; once per run.
    fn mark(&mut self) -> Result<()> {
        if !self.marked {
            let state = self.state();
            // The counters too are opened before the first change: a bad
            // file stops the run while nothing has changed yet.
            if self.counters.is_none() {
                let file =
                    counters::open(state).map_err(LedgerError::at(state.show(counters::FILE)))?;
                self.counters = Some(file);
            }
            let state = self.state();
            state
                .open(
                    os(DIRTY),
                    OFlag::O_WRONLY | OFlag::O_CREAT,
                    0o600,
                    Names::One,
                )
                .map_err(LedgerError::at(state.show(DIRTY)))?;
            self.marked = true;
        }
        Ok(())
    }

    fn journal(&mut self, jail: &str, line: std::fmt::Arguments<'_>) {
        use std::fmt::Write;
        let lines = self.pending.entry(jail.to_owned()).or_default();
        let _ = lines.write_fmt(line);
    }

    /// Remove what an interrupted full `flush` left behind (`flush` and
    /// `check --repair` call this; a ban does not pay for it).
    pub fn sweep(&self) -> Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        for entry in state.entries().map_err(LedgerError::at(state.show("")))? {
            if entry.name.to_string_lossy().starts_with(OLD_PREFIX) {
                state
                    .remove_tree(&entry.name)
                    .map_err(LedgerError::at(state.show(&entry.name)))?;
            }
        }
        Ok(())
    }

    /// Record that `jail` holds `ip`; `false` when it already did.
    pub fn hold(&mut self, jail: &str, ip: IpAddr, since: u64) -> Result<bool> {
        let i = self
            .jail(jail, true)?
            .expect("a writable ledger makes the jail's directory");
        self.open_journal(i)?;
        self.mark()?;
        let name = OsString::from(ip.to_string());
        loop {
            let anchor = self.anchor(i, since)?;
            let dir = &self.jails[i].1;
            match dir.link(&anchor, &name) {
                Ok(()) => {
                    self.journal(jail, format_args!("+{ip} {since}\n"));
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) if e.raw_os_error() == Some(nix::libc::EMLINK) => {
                    self.next_anchor(i, since)?
                }
                Err(e) => return Err(LedgerError::at(dir.show(&name))(e)),
            }
        }
    }

    /// The anchor of `since` in jail `i`'s directory, made if needed:
    /// `.t<since>`, then `.t<since>.<n>` once its links run out.
    fn anchor(&mut self, i: usize, since: u64) -> Result<OsString> {
        let jail = self.jails[i].0.clone();
        let known = self
            .anchors
            .iter()
            .find(|(j, t, _)| *j == jail && *t == since)
            .map(|(_, _, g)| *g);
        let name = anchor_name(since, known.unwrap_or(0));
        if known.is_none() {
            self.make_anchor(i, &name, since)?;
            self.anchors.push((jail, since, 0));
        }
        Ok(name)
    }

    /// Make sure the anchor `name` of `since` exists, its mtime `since`
    /// (which names it again when its last hold is released).
    fn make_anchor(&self, i: usize, name: &OsStr, since: u64) -> Result<()> {
        let dir = &self.jails[i].1;
        let file = dir
            .open(name, OFlag::O_WRONLY | OFlag::O_CREAT, 0o600, Names::Many)
            .map_err(LedgerError::at(dir.show(name)))?;
        let t = nix::sys::time::TimeSpec::new(i64::try_from(since).unwrap_or(i64::MAX), 0);
        nix::sys::stat::futimens(&file, &t, &t)
            .map_err(|e| LedgerError::at(dir.show(name))(e.into()))
    }

    /// The current anchor of `since` is full: make the next one.
    fn next_anchor(&mut self, i: usize, since: u64) -> Result<()> {
        let jail = self.jails[i].0.clone();
        let Some(a) = self
            .anchors
            .iter_mut()
            .find(|(j, t, _)| *j == jail && *t == since)
        else {
            return Ok(());
        };
        a.2 += 1;
        let name = anchor_name(since, a.2);
        self.make_anchor(i, &name, since)
    }

    /// Drop `jail`'s hold on `ip`; `false` when it had none.
    pub fn release(&mut self, jail: &str, ip: IpAddr) -> Result<bool> {
        let Some(i) = self.jail(jail, false)? else {
            return Ok(false);
        };
        let name = OsString::from(ip.to_string());
        // Releasing nothing is common (idempotent unbans): only mark when
        // there is something to release.
        let dir = &self.jails[i].1;
        let hold = match dir.stat(&name) {
            Ok(Some(st)) => st,
            Ok(None) => return Ok(false),
            Err(e) => return Err(LedgerError::at(dir.show(&name))(e)),
        };
        self.open_journal(i)?;
        self.mark()?;
        let dir = &self.jails[i].1;
        match dir.unlink(&name) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(LedgerError::at(dir.show(&name))(e)),
        }
        self.journal(jail, format_args!("-{ip}\n"));
        if hold.st_nlink == 2 {
            // This was the last hold of its second: its anchor goes too, or
            // a slow brute force would leave an inode per second it banned.
            self.drop_anchor(i, hold.st_ino, hold.st_mtime);
        }
        Ok(true)
    }

    /// Remove the anchor with inode `ino` (named after `since`, its mtime)
    /// in jail `i` once no hold links to it.
    fn drop_anchor(&mut self, i: usize, ino: u64, since: i64) {
        let Ok(since) = u64::try_from(since) else {
            return;
        };
        let dir = &self.jails[i].1;
        for generation in 0.. {
            let name = anchor_name(since, generation);
            match dir.stat(&name) {
                Ok(Some(st)) if st.st_ino == ino => {
                    if st.st_nlink == 1 && dir.unlink(&name).is_ok() {
                        let jail = &self.jails[i].0;
                        self.anchors.retain(|(j, t, _)| !(j == jail && *t == since));
                    }
                    return;
                }
                Ok(Some(_)) => {}
                _ => return,
            }
        }
    }

    /// Drop every hold on `ip`.
    pub fn release_all(&mut self, ip: IpAddr) -> Result<()> {
        self.list_jails()?;
        let names: Vec<String> = self.jails.iter().map(|(j, _)| j.clone()).collect();
        for jail in names {
            self.release(&jail, ip)?;
        }
        Ok(())
    }

    /// Does any jail hold `ip`? One lookup per jail.
    pub fn is_held(&mut self, ip: IpAddr) -> Result<bool> {
        self.list_jails()?;
        let name = OsString::from(ip.to_string());
        for (_, dir) in &self.jails {
            match dir.stat(&name) {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => {}
                Err(e) => return Err(LedgerError::at(dir.show(&name))(e)),
            }
        }
        Ok(false)
    }

    /// The addresses `jail` holds.
    pub fn held_by(&mut self, jail: &str) -> Result<Vec<IpAddr>> {
        let Some(i) = self.jail(jail, false)? else {
            return Ok(Vec::new());
        };
        let dir = &self.jails[i].1;
        let entries = dir.entries().map_err(LedgerError::at(dir.show("")))?;
        Ok(entries
            .iter()
            .filter_map(|e| e.name.to_str().and_then(|n| n.parse().ok()))
            .collect())
    }

    /// The jails that hold (or held) something.
    pub fn jails(&mut self) -> Result<impl Iterator<Item = &str>> {
        self.list_jails()?;
        Ok(self.jails_listed())
    }

    fn jails_listed(&self) -> impl Iterator<Item = &str> {
        self.jails.iter().map(|(j, _)| j.as_str())
    }

    /// Whether this run made the ledger: there was none (first use, or the
    /// state dir was wiped or moved). Routes of ours that exist then were
    /// not made under this ledger: see [`Ledger::remember_found`].
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Record the routes of ours that existed when this ledger was made: no
    /// hold says who banned them, so a repair must not take them for the
    /// leftovers of a crash.
    pub fn remember_found(&mut self, addrs: &[IpAddr]) -> Result<()> {
        let state = self.state();
        if addrs.is_empty() {
            state
                .unlink(os(FOUND))
                .map_err(LedgerError::at(state.show(FOUND)))?;
        } else {
            let mut text = String::with_capacity(addrs.len() * 16);
            for ip in addrs {
                use std::fmt::Write as _;
                let _ = writeln!(text, "{ip}");
            }
            state
                .replace(FOUND, text.as_bytes(), 0o600)
                .map_err(LedgerError::at(state.show(FOUND)))?;
        }
        // Recorded: the ledger is no longer new.
        state
            .unlink(os(NEW))
            .map_err(LedgerError::at(state.show(NEW)))?;
        self.fresh = false;
        Ok(())
    }

    /// The routes recorded by [`Ledger::remember_found`] and not yet
    /// settled (held again, or gone).
    pub fn found(&self) -> Result<std::collections::HashSet<IpAddr>> {
        let Some(state) = &self.state else {
            return Ok(Default::default());
        };
        let mut text = String::new();
        match state.open(os(FOUND), OFlag::O_RDONLY, 0, Names::One) {
            Ok(mut f) => f
                .read_to_string(&mut text)
                .map_err(LedgerError::at(state.show(FOUND)))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(LedgerError::at(state.show(FOUND))(e)),
        };
        Ok(text.lines().filter_map(|l| l.parse().ok()).collect())
    }

    /// Open jail `i`'s journal for this run's appends, before its first
    /// change: a journal that is not what it should be (a link, a second
    /// name of a file elsewhere) stops the run before anything changed.
    fn open_journal(&mut self, i: usize) -> Result<()> {
        let (jail, dir) = &self.jails[i];
        if !self.journals.contains_key(jail) {
            let file = dir
                .open(
                    os(JOURNAL),
                    OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
                    0o600,
                    Names::One,
                )
                .map_err(LedgerError::at(dir.show(JOURNAL)))?;
            self.journals.insert(jail.clone(), file);
        }
        Ok(())
    }

    /// Count `n` more of `what`; written by `finish`.
    pub fn count(&mut self, what: Counter, n: usize) {
        self.counted.add(what, n as u64);
    }

    /// The counters since the state dir was made.
    pub fn counters(&self) -> Result<Counts> {
        match &self.state {
            None => Ok(Counts::starting(now())),
            Some(state) => {
                counters::read(state, now()).map_err(LedgerError::at(state.show(counters::FILE)))
            }
        }
    }

    /// Append this run's changes to the journals (one write per jail),
    /// compact a journal that churn made large, clear the dirty mark, and
    /// add what this run counted to the counters.
    pub fn finish(&mut self) -> Result<()> {
        for (jail, lines) in std::mem::take(&mut self.pending) {
            // The jail's directory went with its last hold.
            let Some(i) = self.find(&jail) else {
                continue;
            };
            self.open_journal(i)?;
            let dir = &self.jails[i].1;
            let mut file = self.journals.remove(&jail).expect("opened just above");
            file.write_all(lines.as_bytes())
                .map_err(LedgerError::at(dir.show(JOURNAL)))?;
            let size = file
                .metadata()
                .map_err(LedgerError::at(dir.show(JOURNAL)))?
                .len();
            if size > JOURNAL_COMPACT_BYTES {
                self.compact_at(i)?;
            }
        }
        if self.marked {
            let state = self.state();
            state
                .unlink(os(DIRTY))
                .map_err(LedgerError::at(state.show(DIRTY)))?;
            self.marked = false;
        }
        if !self.counted.is_zero() && self.access == Access::Write {
            let counted = std::mem::take(&mut self.counted);
            let opened = self.counters.take();
            let state = self.state();
            let path = state.show(counters::FILE);
            let file = match opened {
                Some(f) => f,
                None => counters::open(state).map_err(LedgerError::at(path.clone()))?,
            };
            counters::add(&file, &counted, now()).map_err(LedgerError::at(path))?;
        }
        Ok(())
    }

    /// Rewrite every journal from its directory.
    pub fn compact_all(&mut self) -> Result<()> {
        self.list_jails()?;
        for i in 0..self.jails.len() {
            self.compact_at(i)?;
        }
        Ok(())
    }

    /// Rewrite jail `i`'s journal from its directory, and remove the anchors
    /// no hold links to any more.
    fn compact_at(&mut self, i: usize) -> Result<()> {
        // A handle open for appends would write to the journal this
        // replaces, unseen: drop it (the next change opens the new one).
        let jail = self.jails[i].0.clone();
        self.journals.remove(&jail);
        let dir = &self.jails[i].1;
        let mut text = String::new();
        for (ip, since) in walk(dir)? {
            use std::fmt::Write as _;
            let _ = writeln!(text, "+{ip} {since}");
        }
        // Under a fresh name, then renamed over the old journal; a link in
        // the way is replaced, never followed.
        dir.replace(JOURNAL, text.as_bytes(), 0o600)
            .map_err(LedgerError::at(dir.show(JOURNAL)))?;
        for entry in dir.entries().map_err(LedgerError::at(dir.show("")))? {
            let is_anchor = entry.name.to_string_lossy().starts_with(ANCHOR);
            if is_anchor {
                let unused = dir
                    .stat(&entry.name)
                    .ok()
                    .flatten()
                    .is_some_and(|st| st.st_nlink == 1);
                if unused {
                    let _ = dir.unlink(&entry.name);
                }
            }
        }
        Ok(())
    }

    /// Remove `jail`'s directory once it holds nothing (only its journal
    /// and anchors are left: names starting with a dot).
    pub fn forget_jail_if_empty(&mut self, jail: &str) -> Result<()> {
        let Some(i) = self.jail(jail, false)? else {
            return Ok(());
        };
        let dir = &self.jails[i].1;
        let entries = dir.entries().map_err(LedgerError::at(dir.show("")))?;
        if entries
            .iter()
            .all(|e| e.name.to_string_lossy().starts_with('.'))
        {
            for e in &entries {
                dir.unlink(&e.name)
                    .map_err(LedgerError::at(dir.show(&e.name)))?;
            }
            let holds = self.holds();
            holds
                .rmdir(os(jail))
                .map_err(LedgerError::at(holds.show(jail)))?;
            self.jails.remove(i);
            self.pending.remove(jail);
            self.journals.remove(jail);
            self.anchors.retain(|(j, _, _)| j != jail);
        }
        Ok(())
    }

    /// Jail `i`'s holds with their times: a replay of its journal when it
    /// can be trusted and read, else a walk of its directory (and, for a
    /// writer, a journal rebuilt from it).
    fn read_jail(&mut self, i: usize) -> Result<Vec<(IpAddr, u64)>> {
        let dir = &self.jails[i].1;
        if !self.journals_trusted || !self.pending.is_empty() {
            return walk(dir);
        }
        let mut bytes = Vec::new();
        match dir.open(os(JOURNAL), OFlag::O_RDONLY, 0, Names::One) {
            Ok(mut f) => f
                .read_to_end(&mut bytes)
                .map_err(LedgerError::at(dir.show(JOURNAL)))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return walk(dir),
            Err(e) => return Err(LedgerError::at(dir.show(JOURNAL))(e)),
        };
        match replay(&bytes) {
            Some(holds) => Ok(holds),
            None => {
                if self.access == Access::Write {
                    self.compact_at(i)?;
                }
                walk(&self.jails[i].1)
            }
        }
    }

    /// Everything, for `list` and repair.
    pub fn all(&mut self) -> Result<Holds> {
        self.list_jails()?;
        let mut holds = Holds {
            jails: self.jails.iter().map(|(j, _)| j.clone()).collect(),
            by_addr: HashMap::new(),
        };
        for i in 0..self.jails.len() {
            let index = u16::try_from(i).map_err(|_| LedgerError::TooManyJails {
                path: self.path.clone(),
            })?;
            for (ip, since) in self.read_jail(i)? {
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
    /// flush or repair sweeps. Returns the renamed tree, for the caller to
    /// remove, possibly on another thread.
    pub fn clear(&mut self) -> Result<Option<OldHolds>> {
        let state = self.state();
        let old = OsString::from(format!("{OLD_PREFIX}{}", std::process::id()));
        match state.rename(os(HOLDS), &old) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LedgerError::at(state.show(HOLDS))(e)),
        }
        state
            .mkdir(os(HOLDS), 0o700)
            .map_err(LedgerError::at(state.show(HOLDS)))?;
        // Every route goes with every hold: none is left to remember.
        state
            .unlink(os(FOUND))
            .map_err(LedgerError::at(state.show(FOUND)))?;
        let holds = state
            .open_dir(os(HOLDS))
            .map_err(LedgerError::at(state.show(HOLDS)))?;
        let state = state
            .open_dir(os("."))
            .map_err(LedgerError::at(state.path().to_path_buf()))?;
        self.holds = Some(holds);
        self.jails.clear();
        self.listed = true;
        self.pending.clear();
        self.journals.clear();
        self.anchors.clear();
        Ok(Some(OldHolds { state, name: old }))
    }
}

/// The holds a full flush renamed away, to be removed.
pub struct OldHolds {
    state: Dir,
    name: OsString,
}

impl OldHolds {
    pub fn remove(self) -> io::Result<()> {
        self.state.remove_tree(&self.name)
    }

    #[cfg(test)]
    fn path(&self) -> PathBuf {
        self.state.show(&self.name)
    }
}

impl Drop for Ledger {
    /// A run that stops on an error still journals the changes it made.
    fn drop(&mut self) {
        if self.state.is_some() {
            let _ = self.finish();
        }
    }
}

fn anchor_name(since: u64, generation: u32) -> OsString {
    OsString::from(match generation {
        0 => format!("{ANCHOR}{since}"),
        g => format!("{ANCHOR}{since}.{g}"),
    })
}

/// Wait for the lock, at most `wait`.
fn lock(file: File, access: Access, path: &Path, wait: Duration) -> Result<Flock<File>> {
    let mode = match access {
        Access::Read => FlockArg::LockSharedNonblock,
        Access::Write => FlockArg::LockExclusiveNonblock,
    };
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    let mut file = file;
    loop {
        match Flock::lock(file, mode) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EWOULDBLOCK)) if start.elapsed() < wait => {
                file = f;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(LedgerError::LockTimeout {
                    path: path.to_path_buf(),
                })
            }
            Err((_, e)) => return Err(LedgerError::at(path.to_path_buf())(e.into())),
        }
    }
}

/// A jail's holds from its directory (the truth), with their times from
/// the anchors they link to.
fn walk(dir: &Dir) -> Result<Vec<(IpAddr, u64)>> {
    let entries = dir.entries().map_err(LedgerError::at(dir.show("")))?;
    let mut anchors: HashMap<u64, u64> = HashMap::new();
    let mut holds = Vec::new();
    for entry in entries {
        let Some(name) = entry.name.to_str() else {
            continue;
        };
        let time = name
            .strip_prefix(ANCHOR)
            .and_then(|t| t.split('.').next())
            .and_then(|t| t.parse().ok());
        if let Some(t) = time {
            anchors.insert(entry.ino, t);
        } else if let Ok(ip) = name.parse::<IpAddr>() {
            holds.push((ip, entry.ino));
        }
    }
    Ok(holds
        .into_iter()
        .map(|(ip, ino)| (ip, anchors.get(&ino).copied().unwrap_or(0)))
        .collect())
}

/// A journal's holds, or `None` when any line cannot be read (a damaged
/// byte, a truncated write): the directory then tells instead.
fn replay(bytes: &[u8]) -> Option<Vec<(IpAddr, u64)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut live: HashMap<IpAddr, u64> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('+') {
            let (ip, t) = rest.split_once(' ')?;
            live.insert(ip.parse().ok()?, t.parse().ok()?);
        } else {
            live.remove(&line.strip_prefix('-')?.parse().ok()?);
        }
    }
    Some(live.into_iter().collect())
}

#[cfg(test)]
mod tests;
