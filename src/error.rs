//! The top-level error of a run, for `commands` and `main` only: it wraps
//! each layer's error and maps it to its exit code, in one place.

use std::io;

use crate::addr::Invalid;
use crate::config::ConfigError;
use crate::exit::Exit;
use crate::kernel::KernelError;
use crate::ledger::LedgerError;
use crate::render::RenderError;
use crate::service;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad address {input} ({place}): {reason}{}", more_suffix(*more))]
    BadAddress {
        /// The input, quoted and cut to a readable length.
        input: String,
        place: String,
        reason: Invalid,
        more: usize,
    },
    #[error("stdin (\"-\") given more than once")]
    StdinTwice,
    #[error("reading stdin")]
    Stdin(#[source] io::Error),
    #[error("writing the output")]
    Output(#[source] io::Error),
    #[error("no permission: {0}")]
    NoPermission(&'static str),
    #[error("{0}")]
    Usage(String),
    #[error("{what}")]
    OutputDir {
        what: &'static str,
        #[source]
        source: crate::trusted::TrustError,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Service(#[from] service::Error),
    #[error("mirror")]
    Mirror(#[from] crate::mirror::Error),
    #[error("cannot start the runtime")]
    Runtime(#[source] io::Error),
}

impl From<KernelError> for Error {
    fn from(e: KernelError) -> Self {
        Error::Service(e.into())
    }
}

impl From<LedgerError> for Error {
    fn from(e: LedgerError) -> Self {
        Error::Service(e.into())
    }
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
            Error::BadAddress { .. } | Error::StdinTwice | Error::Render(_) | Error::Usage(_) => {
                Exit::Usage
            }
            Error::Config(_) => Exit::Config,
            Error::NoPermission(_) | Error::OutputDir { .. } => Exit::NoPermission,
            Error::Stdin(_) | Error::Output(_) | Error::Runtime(_) => Exit::Failure,
            Error::Service(e) => service_exit(e),
            Error::Mirror(crate::mirror::Error::Kernel(k)) => kernel_exit(k),
            Error::Mirror(crate::mirror::Error::Nft(_)) => Exit::Failure,
        }
    }
}

fn service_exit(e: &service::Error) -> Exit {
    use service::Error as S;
    match e {
        S::Refused(_) => Exit::Refused,
        S::Conflict(_) | S::Shared(_) => Exit::Conflict,
        S::Kernel(k) => kernel_exit(k),
        S::Ledger(LedgerError::Untrusted(_) | LedgerError::Unsafe { .. }) => Exit::NoPermission,
        S::Ledger(l) => permission_or_failure(l.io_error().and_then(io::Error::raw_os_error)),
        S::Change { source, .. } => permission_or_failure(source.raw_os_error()),
        S::Fail2ban(f) if f.is_schema() => Exit::Schema,
        S::Fail2ban(_) => Exit::Fail2ban,
        S::Panicked => Exit::Failure,
    }
}

fn kernel_exit(k: &KernelError) -> Exit {
    match k {
        KernelError::Unavailable(_) => Exit::NoPermission,
        k => permission_or_failure(k.errno()),
    }
}

/// "Not allowed to change this" rather than "broke": no privilege, or a
/// state dir on a read-only file system.
fn permission_or_failure(errno: Option<i32>) -> Exit {
    match errno {
        Some(nix::libc::EPERM | nix::libc::EACCES | nix::libc::EROFS) => Exit::NoPermission,
        _ => Exit::Failure,
    }
}

/// An error and its causes on one line: "outer: inner: innermost" (what
/// the CLI prints on stderr, and `serve` in an `err` answer).
pub struct Chain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
