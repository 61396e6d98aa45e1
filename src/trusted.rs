//! Opening paths as root without trusting what another user could change.
//!
//! f2b-route runs as root on every ban, so a link another user planted must
//! never redirect what it reads, writes or deletes. The rules, as sshd's
//! `StrictModes` has them:
//!
//! - every directory on the way, from `/` down, is owned by root or the
//!   effective uid and not writable by group or others unless sticky (as
//!   `/tmp` is);
//! - the target (the state dir, the config file) is owned by root or the
//!   effective uid and not writable by group or others at all;
//! - a symbolic link is followed only where it lies in a directory that
//!   passed these checks (only root could have made it, like Debian's
//!   `/var/run -> /run`); a link anywhere else is an error.
//!
//! Inside a trusted directory, [`Dir`] does everything relative to its file
//! descriptor with `*at` calls and `O_NOFOLLOW`: no path is resolved twice,
//! and a symbolic link found inside is an error, never followed.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};

/// Why a path cannot be trusted or used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path:?}: {reason}")]
    Untrusted { path: PathBuf, reason: String },
    #[error("{path:?}: a symbolic link where none may be (f2b-route never follows links it cannot trust)")]
    Symlink { path: PathBuf },
    #[error("{path:?}: does not exist")]
    NotFound { path: PathBuf },
    #[error("{path:?}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl TrustError {
    fn io(path: &Path, errno: Errno) -> TrustError {
        match errno {
            Errno::ENOENT => TrustError::NotFound {
                path: path.to_path_buf(),
            },
            Errno::ELOOP => TrustError::Symlink {
                path: path.to_path_buf(),
            },
            e => TrustError::Io {
                path: path.to_path_buf(),
                source: e.into(),
            },
        }
    }
}

/// What a [`Dir`] operation found where a file or directory of ours should
/// be: a link, a file of another kind, another owner, other names. Carried
/// inside an `io::Error`; [`unsafe_reason`] finds it again.
#[derive(Debug)]
pub struct Unsafe(pub String);

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsafe {}

fn unsafe_io(reason: impl Into<String>) -> io::Error {
    io::Error::other(Unsafe(reason.into()))
}

/// The reason, when `e` is a [`Dir`] operation's refusal of what it found
/// (a symbolic link met with `O_NOFOLLOW` included).
pub fn unsafe_reason(e: &io::Error) -> Option<String> {
    if let Some(u) = e.get_ref().and_then(|inner| inner.downcast_ref::<Unsafe>()) {
        return Some(u.0.clone());
    }
    match e.raw_os_error() {
        Some(nix::libc::ELOOP) => Some("a symbolic link (never followed)".into()),
        _ => None,
    }
}

/// How many names a file of ours may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Exactly one: a second name could be a link to a file elsewhere.
    One,
    /// Any (an anchor, which every hold of its second links to).
    Many,
}

/// Symbolic links followed on one walk before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;

/// What the walk ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Dir {
        create: bool,
    },
    File,
    /// A directory to write output into, which may be another user's.
    Output,
}

/// Open the directory `path` after checking it and every directory above it.
/// With `create`, missing directories are made (the last 0700, others 0755).
pub fn open_dir(path: &Path, create: bool) -> Result<Dir, TrustError> {
    let fd = walk(path, Target::Dir { create })?;
    Ok(Dir {
        fd,
        path: path.to_path_buf(),
    })
}

/// Open the directory `path` to write output into (node_exporter's textfile
/// directory, a package build's): every directory above it is checked as
/// always, but it may belong to another user (the reader of what is written
/// there), because nothing in it is followed or trusted: [`Dir::replace`]
/// writes under a fresh name and renames into place.
pub fn open_output_dir(path: &Path) -> Result<Dir, TrustError> {
    let fd = walk(path, Target::Output)?;
    Ok(Dir {
        fd,
        path: path.to_path_buf(),
    })
}

/// Open the regular file `path` for reading after the same checks.
pub fn open_file(path: &Path) -> Result<File, TrustError> {
    walk(path, Target::File).map(File::from)
}

fn walk(path: &Path, target: Target) -> Result<OwnedFd, TrustError> {
    if !path.is_absolute() {
        return Err(TrustError::Untrusted {
            path: path.to_path_buf(),
            reason: "must be an absolute path".into(),
        });
    }
    let euid = euid();
    let mut todo: VecDeque<OsString> = names(path);
    // The directories walked so far, `/` first, each with its owner and
    // mode; the last is where we are.
    let mut stack: Vec<(OwnedFd, FileStat)> = vec![open_root(path)?];
    let mut shown = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
                shown.pop();
            }
            continue;
        }
        let last = todo.is_empty();
        let (here, here_st) = stack.last().expect("the root is never popped");
        // A sticky directory that others can write (as /tmp): anyone may
        // put an entry there, so one that is not ours or root's is not
        // trusted, and nothing is made there for someone else to make first.
        let open_to_others = here_st.st_mode & 0o022 != 0;
        let at = shown.join(&name);
        let st = match fstatat(here, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) if matches!(target, Target::Dir { create: true }) => {
                if open_to_others {
                    return Err(TrustError::Untrusted {
                        path: at,
                        reason: format!(
                            "missing, and not made inside {:?}, which others can write \
                             (another user could make it first)",
                            shown
                        ),
                    });
                }
                let mode = if last { 0o700 } else { 0o755 };
                match mkdirat(here, name.as_os_str(), Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(TrustError::io(&at, e)),
                }
                // Look again: what is there now is checked like anything else.
                todo.push_front(name);
                continue;
            }
            Err(e) => return Err(TrustError::io(&at, e)),
        };
        if kind(&st) == SFlag::S_IFLNK {
            // `here` passed the checks, so only root or we could have put
            // the link there, and it is followed; in a sticky directory
            // others can write, only a link of root's, ours or the
            // directory owner's is (the kernel's protected_symlinks rule).
            // On the way to an output directory, whose parents may be
            // another user's (node_exporter's /var/lib/prometheus is
            // prometheus'), a link is followed only in a directory of root's
            // or ours that nobody else can write.
            let untrusted_here = target == Target::Output
                && (![0, euid].contains(&here_st.st_uid) || open_to_others);
            if untrusted_here {
                return Err(TrustError::Untrusted {
                    path: at,
                    reason: "a symbolic link in a directory another user could change".into(),
                });
            }
            if open_to_others && ![0, euid, here_st.st_uid].contains(&st.st_uid) {
                return Err(TrustError::Untrusted {
                    path: at,
                    reason: format!(
                        "a symbolic link of uid {} in a directory others can write",
                        st.st_uid
                    ),
                });
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(TrustError::io(&at, Errno::ELOOP));
            }
            let dest = nix::fcntl::readlinkat(here, name.as_os_str())
                .map_err(|e| TrustError::io(&at, e))?;
            let dest = PathBuf::from(dest);
            for n in names(&dest).into_iter().rev() {
                todo.push_front(n);
            }
            if dest.is_absolute() {
                stack.truncate(1);
                shown = PathBuf::from("/");
            }
            continue;
        }
        let file = last && target == Target::File;
        let want = if file { SFlag::S_IFREG } else { SFlag::S_IFDIR };
        if kind(&st) != want {
            // Never opened: a FIFO or a device must not even be touched.
            return Err(TrustError::Untrusted {
                path: at,
                reason: if file {
                    "not a regular file".into()
                } else {
                    "not a directory".into()
                },
            });
        }
        let flags = if file {
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY
        } else {
            OFlag::O_RDONLY | OFlag::O_DIRECTORY
        };
        let fd = openat(
            here,
            name.as_os_str(),
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TrustError::io(&at, e))?;
        let st = fstat(&fd).map_err(|e| TrustError::io(&at, e))?;
        let role = if last { Role::Target } else { Role::Parent };
        check(&at, &st, euid, role, target)?;
        if file {
            return Ok(fd);
        }
        stack.push((fd, st));
        shown = at;
    }
    if target == Target::File {
        return Err(TrustError::Untrusted {
            path: path.to_path_buf(),
            reason: "is a directory, not a file".into(),
        });
    }
    // Where the walk ended is the target, however it was reached (a path
    // ending in `..` ends in a directory checked only as a parent so far).
    let (fd, st) = stack.pop().expect("the root is never popped");
    check(path, &st, euid, Role::Target, target)?;
    Ok(fd)
}

fn open_root(path: &Path) -> Result<(OwnedFd, FileStat), TrustError> {
    let root = Path::new("/");
    let fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| TrustError::io(root, e))?;
    let st = fstat(&fd).map_err(|e| TrustError::io(root, e))?;
    let euid = euid();
    check(root, &st, euid, Role::Parent, Target::Dir { create: false }).map_err(|e| match e {
        TrustError::Untrusted { reason, .. } => TrustError::Untrusted {
            path: path.to_path_buf(),
            reason: format!("/ {reason}"),
        },
        other => other,
    })?;
    Ok((fd, st))
}

/// The names of `path`'s components, without the root and `.`.
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Parent,
    Target,
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn check(
    path: &Path,
    st: &FileStat,
    euid: u32,
    role: Role,
    target: Target,
) -> Result<(), TrustError> {
    let untrusted = |reason: String| {
        Err(TrustError::Untrusted {
            path: path.to_path_buf(),
            reason,
        })
    };
    let want = match (role, target) {
        (Role::Target, Target::File) => SFlag::S_IFREG,
        _ => SFlag::S_IFDIR,
    };
    // An output directory and its parents may be another user's: nothing
    // in them is followed, and files are only made there under a fresh name.
    if target == Target::Output {
        return if kind(st) == want {
            Ok(())
        } else {
            untrusted("not a directory".into())
        };
    }
    if kind(st) != want {
        return untrusted(if want == SFlag::S_IFREG {
            "not a regular file".into()
        } else {
            "not a directory".into()
        });
    }
    if st.st_uid != 0 && st.st_uid != euid {
        return untrusted(format!(
            "owned by uid {}, not by root{}",
            st.st_uid,
            if euid == 0 {
                String::new()
            } else {
                format!(" or uid {euid}")
            }
        ));
    }
    let writable = st.st_mode & 0o022;
    let sticky = st.st_mode & 0o1000 != 0;
    if writable != 0 && (role == Role::Target || !sticky) {
        return untrusted(format!(
            "mode {:04o}: writable by {}{}",
            st.st_mode & 0o7777,
            if writable & 0o020 != 0 && writable & 0o002 != 0 {
                "group and others"
            } else if writable & 0o020 != 0 {
                "group"
            } else {
                "others"
            },
            if role == Role::Target {
                ""
            } else {
                " and not sticky"
            }
        ));
    }
    Ok(())
}

/// A trusted directory: every operation is relative to its descriptor and
/// never follows a symbolic link.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// For messages only; never opened again.
    path: PathBuf,
}

/// One directory entry: its name and inode number.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: OsString,
    pub ino: u64,
}

impl Dir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether users other than the owner can write this directory.
    pub fn open_to_others(&self) -> io::Result<bool> {
        Ok(fstat(&self.fd)?.st_mode & 0o022 != 0)
    }

    /// The path of `name` inside, for messages.
    pub fn show(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The directory's descriptor, to name an entry as
    /// `/proc/self/fd/N/NAME` where only a path will do (a Unix socket's
    /// connect): the checked directory, whatever its path now leads to.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// The subdirectory `name`, which must be what the state dir itself is:
    /// a directory of root's (or the effective uid's) that nobody else can
    /// write; a link is refused, never followed.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = openat(
            self.fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOTDIR => unsafe_io("not a directory"),
            e => io::Error::from(e),
        })?;
        let st = fstat(&fd)?;
        owned_by_us(&st)?;
        if st.st_mode & 0o022 != 0 {
            return Err(unsafe_io(format!(
                "mode {:04o}: writable by group or others",
                st.st_mode & 0o7777
            )));
        }
        Ok(Dir {
            fd,
            path: self.show(name),
        })
    }

    /// Make the subdirectory `name`; `false` when it exists.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<bool> {
        match mkdirat(self.fd(), name, Mode::from_bits_truncate(mode)) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Open the regular file `name` with `flags` (plus `O_NOFOLLOW`,
    /// `O_NONBLOCK`, `O_NOCTTY`, `O_CLOEXEC`); `mode` when it is created.
    /// What is there must be a regular file of root's (or the effective
    /// uid's) with `names` names: anything else (a link, a FIFO, a device,
    /// a second name of a file elsewhere) is refused before it is used.
    pub fn open(&self, name: &OsStr, flags: OFlag, mode: u32, names: Names) -> io::Result<File> {
        // No look before the open: only root can put anything into a
        // trusted directory, and O_NONBLOCK keeps a FIFO from blocking.
        let fd = openat(
            self.fd(),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| match e {
            // A FIFO without a reader, opened for writing.
            Errno::ENXIO => unsafe_io("not a regular file"),
            e => io::Error::from(e),
        })?;
        let st = fstat(&fd)?;
        if kind(&st) != SFlag::S_IFREG {
            return Err(unsafe_io("not a regular file"));
        }
        owned_by_us(&st)?;
        if names == Names::One && st.st_nlink != 1 {
            return Err(unsafe_io(format!(
                "has {} names (a hard link to a file elsewhere?)",
                st.st_nlink
            )));
        }
        Ok(File::from(fd))
    }

    /// `lstat` of `name`; `None` when there is no such entry.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        match fstatat(self.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A second name `to` for the file `from` (both inside); a link `from`
    /// is linked itself, never its target.
    pub fn link(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(linkat(self.fd(), from, self.fd(), to, AtFlags::empty())?)
    }

    /// Remove the entry `name` (a link is removed, not its target); `false`
    /// when there was none.
    pub fn unlink(&self, name: &OsStr) -> io::Result<bool> {
        match unlinkat(self.fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove the empty subdirectory `name`.
    pub fn rmdir(&self, name: &OsStr) -> io::Result<()> {
        Ok(unlinkat(self.fd(), name, UnlinkatFlags::RemoveDir)?)
    }

    /// Rename `from` to `to`, both inside.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(renameat(self.fd(), from, self.fd(), to)?)
    }

    /// Make `name` hold `content` (mode `mode`) at once: written to a fresh
    /// hidden name, then renamed over `name`, which is replaced, never
    /// followed. A reader sees the old content or the new, never a part.
    pub fn replace(&self, name: &str, content: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        let tmp = OsString::from(format!(".{name}.{}.tmp", std::process::id()));
        self.unlink(&tmp)?;
        let mut file = self.open(
            &tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            mode,
            Names::One,
        )?;
        let written = file
            .write_all(content)
            .and_then(|()| file.sync_all())
            .and_then(|()| self.rename(&tmp, OsStr::new(name)));
        if written.is_err() {
            let _ = self.unlink(&tmp);
        }
        written
    }

    /// Every entry but `.` and `..`.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let fd = openat(
            self.fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push(Entry {
                name: OsStr::from_bytes(name).to_os_string(),
                ino: entry.ino(),
            });
        }
        Ok(out)
    }

    /// Remove the subdirectory `name` and what it holds, two levels deep at
    /// most (the ledger's shape); links inside are removed, never followed.
    pub fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        let dir = match self.open_dir(name) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in dir.entries()? {
            match unlinkat(dir.fd(), entry.name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(Errno::EISDIR) => {
                    let sub = dir.open_dir(&entry.name)?;
                    for inner in sub.entries()? {
                        sub.unlink(&inner.name)?;
                    }
                    dir.rmdir(&entry.name)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.rmdir(name)
    }
}

/// The effective uid, asked once.
fn euid() -> u32 {
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| nix::unistd::geteuid().as_raw())
}

fn owned_by_us(st: &FileStat) -> io::Result<()> {
    let euid = euid();
    if st.st_uid == 0 || st.st_uid == euid {
        Ok(())
    } else {
        Err(unsafe_io(format!(
            "owned by uid {}, not by root",
            st.st_uid
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("f2b-route-trusted-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn creates_the_target_0700_and_accepts_sticky_parents() {
        let base = tmp("create");
        let state = base.join("a/state");
        let dir = open_dir(&state, true).unwrap();
        assert_eq!(dir.path(), state);
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        chmod(&base.join("a"), 0o1777);
        open_dir(&state, false).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn refuses_writable_dirs_and_files() {
        let base = tmp("modes");
        let state = base.join("p/state");
        open_dir(&state, true).unwrap();
        chmod(&base.join("p"), 0o777);
        let err = open_dir(&state, false).unwrap_err();
        assert!(
            err.to_string()
                .contains("writable by group and others and not sticky"),
            "{err}"
        );
        chmod(&base.join("p"), 0o755);
        chmod(&state, 0o1770);
        let err = open_dir(&state, false).unwrap_err();
        assert!(err.to_string().contains("writable by group"), "{err}");
        chmod(&state, 0o700);
        let file = base.join("p/config.toml");
        std::fs::write(&file, "").unwrap();
        chmod(&file, 0o646);
        let err = open_file(&file).unwrap_err();
        assert!(err.to_string().contains("writable by others"), "{err}");
        chmod(&file, 0o644);
        open_file(&file).unwrap();
        assert!(matches!(
            open_file(&state),
            Err(TrustError::Untrusted { .. })
        ));
        assert!(matches!(
            open_dir(&file, false),
            Err(TrustError::Untrusted { .. })
        ));
        assert!(matches!(
            open_file(&base.join("p/missing")),
            Err(TrustError::NotFound { .. })
        ));
        assert!(open_dir(Path::new("relative"), false).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn follows_links_only_in_trusted_dirs() {
        let base = tmp("links");
        std::fs::create_dir(base.join("real")).unwrap();
        std::fs::write(base.join("real/c.toml"), "").unwrap();
        std::os::unix::fs::symlink("real", base.join("alias")).unwrap();
        std::os::unix::fs::symlink("alias/../real/c.toml", base.join("link.toml")).unwrap();
        open_file(&base.join("alias/c.toml")).unwrap();
        open_file(&base.join("link.toml")).unwrap();
        open_dir(&base.join("alias"), false).unwrap();
        // The same link in a directory others can write: refused before it is read.
        std::fs::create_dir(base.join("open")).unwrap();
        std::os::unix::fs::symlink("../real/c.toml", base.join("open/c.toml")).unwrap();
        chmod(&base.join("open"), 0o777);
        let err = open_file(&base.join("open/c.toml")).unwrap_err();
        assert!(matches!(err, TrustError::Untrusted { .. }), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn dir_operations_never_follow_links() {
        let base = tmp("ops");
        let dir = open_dir(&base.join("state"), true).unwrap();
        std::fs::write(base.join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink("../victim", base.join("state/lock")).unwrap();
        let err = dir
            .open(
                OsStr::new("lock"),
                OFlag::O_RDWR | OFlag::O_CREAT,
                0o600,
                Names::One,
            )
            .unwrap_err();
        assert!(unsafe_reason(&err).is_some(), "{err}");
        std::os::unix::fs::symlink("..", base.join("state/holds")).unwrap();
        let err = dir.open_dir(OsStr::new("holds")).unwrap_err();
        assert!(unsafe_reason(&err).is_some(), "{err}");
        assert!(dir.unlink(OsStr::new("lock")).unwrap());
        assert_eq!(
            std::fs::read_to_string(base.join("victim")).unwrap(),
            "keep"
        );
        dir.mkdir(OsStr::new("t"), 0o700).unwrap();
        let t = dir.open_dir(OsStr::new("t")).unwrap();
        t.mkdir(OsStr::new("j"), 0o700).unwrap();
        std::os::unix::fs::symlink("../../../victim", base.join("state/t/j/x")).unwrap();
        std::os::unix::fs::symlink("../../victim", base.join("state/t/y")).unwrap();
        dir.remove_tree(OsStr::new("t")).unwrap();
        assert!(!base.join("state/t").exists());
        assert_eq!(
            std::fs::read_to_string(base.join("victim")).unwrap(),
            "keep"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
