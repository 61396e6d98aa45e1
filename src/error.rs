//! The crate's errors. Each kind knows its exit code; `main` prints the
//! whole chain on one line with `{:#}`.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::addr::Invalid;
use crate::exit::Exit;
use crate::guard::Rule;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad address {input:?} ({place}): {reason}{}", more_suffix(*more))]
    BadAddress {
        input: String,
        place: String,
        reason: Invalid,
        more: usize,
    },
    #[error("stdin (\"-\") given more than once")]
    StdinTwice,
    #[error("refused {addr}: {rule}{}; nothing changed", more_suffix(*more))]
    Refused {
        addr: IpAddr,
        rule: Rule,
        more: usize,
    },
    #[error("refused {addr}: someone else's unicast route {route} exists; remove it first{}; nothing changed", more_suffix(*more))]
    Conflict {
        addr: IpAddr,
        route: String,
        more: usize,
    },
    #[error("config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error("netlink unavailable")]
    NetlinkUnavailable(#[source] io::Error),
    #[error("no permission: {0}")]
    NoPermission(String),
    #[error("reading stdin")]
    Stdin(#[source] io::Error),
    #[error("writing the list")]
    Output(#[source] io::Error),
    #[error("kernel refused to {what} {addr}{}", more_suffix(*more))]
    Kernel {
        what: &'static str,
        addr: IpAddr,
        more: usize,
        #[source]
        source: io::Error,
    },
    #[error("netlink: {0}")]
    Netlink(String),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error("state dir {}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn more_suffix(more: usize) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(" (and {more} more)")
    }
}

impl Error {
    pub fn exit(&self) -> Exit {
        match self {
            Error::BadAddress { .. } | Error::StdinTwice | Error::Render(_) => Exit::Usage,
            Error::Refused { .. } => Exit::Refused,
            Error::Conflict { .. } => Exit::Conflict,
            Error::Config { .. } => Exit::Config,
            Error::NetlinkUnavailable(_) | Error::NoPermission(_) => Exit::NoPermission,
            Error::Kernel { source, .. } | Error::State { source, .. } => {
                if is_permission(source) {
                    Exit::NoPermission
                } else {
                    Exit::Failure
                }
            }
            Error::Netlink(_) | Error::Stdin(_) | Error::Output(_) => Exit::Failure,
        }
    }
}

/// Errors that mean "not allowed to change this" rather than "broke": no
/// privilege, or a state dir on a read-only file system.
pub fn is_permission(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(nix::libc::EPERM | nix::libc::EACCES | nix::libc::EROFS)
    ) || err.kind() == io::ErrorKind::PermissionDenied
}

/// Map any error chain to its exit code: the first crate error decides,
/// a permission error anywhere means `NoPermission`, anything else `Failure`.
pub fn exit_of(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<io::Error>() {
            if is_permission(e) {
                return Exit::NoPermission;
            }
        }
    }
    Exit::Failure
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
