//! One module per subcommand; this one holds what they share.

mod add;
mod check;
mod del;
mod flush;
mod list;
mod render;

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;

use crate::addr::parse_host;
use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::Error;
use crate::kernel::Kernel;
use crate::ledger::Ledger;
use crate::route::Marker;
use crate::syslog::{Severity, Syslog};

/// Everything a command needs from the command line and the config.
pub struct Ctx {
    pub config: Config,
    pub config_origin: String,
    pub state_dir: PathBuf,
    pub marker: Marker,
    pub out: Report,
}

/// Run the parsed command line on a current-thread runtime.
pub fn run(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    let config_origin = match &cli.config {
        Some(p) => p.display().to_string(),
        None => format!("{} (or built-in defaults)", crate::config::DEFAULT_PATH),
    };
    let state_dir = cli
        .state_dir
        .clone()
        .unwrap_or_else(|| config.state_dir.clone());
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let syslog = match cli.command {
        Command::Add(_) | Command::Del(_) | Command::Flush(_) | Command::Check => Syslog::open(),
        Command::List(_) | Command::Render(_) => Syslog::disabled(),
    };
    let mut ctx = Ctx {
        marker: Marker::of(&config),
        config,
        config_origin,
        state_dir,
        out: Report { verbosity, syslog },
    };
    if let Command::Render(args) = &cli.command {
        return render::run(&ctx, args);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        match &cli.command {
            Command::Add(args) => add::run(&mut ctx, args).await,
            Command::Del(args) => del::run(&mut ctx, args).await,
            Command::List(args) => list::run(&ctx, args).await,
            Command::Flush(args) => flush::run(&mut ctx, args).await,
            Command::Check => check::run(&mut ctx).await,
            Command::Render(_) => unreachable!("rendered above"),
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Human messages: stderr by verbosity, and syslog for changes and refusals.
pub struct Report {
    verbosity: Verbosity,
    syslog: Syslog,
}

impl Report {
    /// A change made to the kernel: syslog always, stderr with -v.
    pub fn change(&mut self, message: fmt::Arguments<'_>) {
        if self.verbosity == Verbosity::Verbose {
            let text = message.to_string();
            self.syslog.log(Severity::Notice, format_args!("{text}"));
            say(&text);
        } else {
            self.syslog.log(Severity::Notice, message);
        }
    }

    /// A refusal: syslog always (the error line itself goes to stderr).
    pub fn refusal(&mut self, message: fmt::Arguments<'_>) {
        self.syslog.log(Severity::Warning, message);
    }

    /// Something worth knowing that changed nothing: stderr with -v.
    pub fn detail(&mut self, message: fmt::Arguments<'_>) {
        if self.verbosity == Verbosity::Verbose {
            say(&message.to_string());
        }
    }

    /// The one line a run prints by default.
    pub fn summary(&mut self, message: &str) {
        self.syslog.finish(message);
        if self.verbosity != Verbosity::Quiet {
            say(message);
        }
    }
}

/// One line on stderr in one write (stderr is unbuffered).
fn say(message: &str) {
    use std::io::Write;
    let line = format!("f2b-route: {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The addresses of the command line, with "-" read from stdin; every one
/// is validated before the caller changes anything. Duplicates are dropped.
/// An empty stdin is no address at all, which is nothing to do, not an error.
pub fn addresses(args: &[String]) -> Result<Vec<IpAddr>, Error> {
    if args.iter().filter(|a| *a == "-").count() > 1 {
        return Err(Error::StdinTwice);
    }
    let mut stdin_bytes = Vec::new();
    if args.iter().any(|a| a == "-") {
        std::io::stdin()
            .read_to_end(&mut stdin_bytes)
            .map_err(Error::Stdin)?;
    }
    // Invalid UTF-8 becomes U+FFFD, which no address contains: that line is
    // then reported as bad input like any other garbage.
    let stdin_text = String::from_utf8_lossy(&stdin_bytes);
    // (text, from stdin?, 1-based position); the place is only spelled out for an error.
    let mut inputs: Vec<(&str, bool, usize)> = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if arg == "-" {
            if !stdin_text.is_empty() {
                let body = stdin_text.strip_suffix('\n').unwrap_or(&stdin_text);
                for (n, line) in body.split('\n').enumerate() {
                    inputs.push((line, true, n + 1));
                }
            }
        } else {
            inputs.push((arg.as_str(), false, i + 1));
        }
    }
    let mut seen = HashSet::with_capacity(inputs.len());
    let mut out = Vec::with_capacity(inputs.len());
    let mut bad: Option<Error> = None;
    let mut bad_count = 0usize;
    for (input, from_stdin, n) in inputs {
        match parse_host(input) {
            Ok(ip) => {
                if seen.insert(ip) {
                    out.push(ip);
                }
            }
            Err(reason) => {
                bad_count += 1;
                if bad.is_none() {
                    bad = Some(Error::BadAddress {
                        input: input.to_owned(),
                        place: if from_stdin {
                            format!("stdin line {n}")
                        } else {
                            format!("argument {n}")
                        },
                        reason,
                        more: 0,
                    });
                }
            }
        }
    }
    if let Some(Error::BadAddress {
        input,
        place,
        reason,
        ..
    }) = bad
    {
        return Err(Error::BadAddress {
            input,
            place,
            reason,
            more: bad_count - 1,
        });
    }
    Ok(out)
}

/// Changing routes needs CAP_NET_ADMIN. Asked before anything changes, so
/// that a run without it changes nothing (not even the ledger) and says so.
pub fn require_net_admin() -> Result<(), Error> {
    const CAP_NET_ADMIN: u32 = 12;
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        });
    let allowed = match effective {
        Some(bits) => bits & (1 << CAP_NET_ADMIN) != 0,
        None => nix::unistd::geteuid().is_root(),
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::NoPermission(
            "CAP_NET_ADMIN is missing: run as root (fail2ban does)".into(),
        ))
    }
}

/// "1 address" / "3 addresses".
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else if what.ends_with('s') {
        format!("{n} {what}es")
    } else {
        format!("{n} {what}s")
    }
}

/// Release `jail`'s holds on `addrs`. Returns the addresses no jail holds
/// any more (their routes are to go) and how many another jail still holds.
pub fn release(
    ctx: &mut Ctx,
    ledger: &mut Ledger,
    jail: &str,
    addrs: &[IpAddr],
) -> Result<(Vec<IpAddr>, usize), Error> {
    let mut unheld = Vec::with_capacity(addrs.len());
    let mut kept = 0;
    for ip in addrs {
        ledger.release(jail, *ip)?;
        if ledger.is_held(*ip)? {
            kept += 1;
            ctx.out
                .detail(format_args!("kept {ip}: still held by another jail"));
        } else {
            unheld.push(*ip);
        }
    }
    Ok((unheld, kept))
}

/// What deleting routes did.
pub struct Removal {
    pub removed: usize,
    pub absent: usize,
    failures: Vec<(IpAddr, std::io::Error)>,
}

impl Removal {
    pub fn failed(&self) -> usize {
        self.failures.len()
    }

    /// The first failure as the run's error, if any.
    pub fn result(self) -> Result<(), Error> {
        kernel_failure("delete", self.failures)
    }
}

/// Where the addresses to delete come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Addresses (holds, the command line): delete until none of ours is left.
    Addresses,
    /// A dump of our routes: one delete per route listed.
    Dump,
}

/// Delete our routes for `addrs`; each removal is reported as
/// "removed {ip}{why}".
pub async fn remove_routes(
    ctx: &mut Ctx,
    kernel: &Kernel,
    addrs: &[IpAddr],
    source: Source,
    why: &str,
) -> Result<Removal, Error> {
    let outcomes = match source {
        Source::Addresses => kernel.del(addrs, ctx.marker).await?,
        Source::Dump => kernel.del_listed(addrs, ctx.marker).await?,
    };
    let mut removal = Removal {
        removed: 0,
        absent: 0,
        failures: Vec::new(),
    };
    for (ip, outcome) in addrs.iter().zip(outcomes) {
        match outcome {
            Ok(true) => {
                removal.removed += 1;
                ctx.out.change(format_args!("removed {ip}{why}"));
            }
            Ok(false) => {
                removal.absent += 1;
                ctx.out
                    .detail(format_args!("{ip}: no route of ours (already gone)"));
            }
            Err(e) => removal.failures.push((*ip, e)),
        }
    }
    Ok(removal)
}

/// The first kernel failure of a batch, and how many more there were.
pub fn kernel_failure(
    what: &'static str,
    failures: Vec<(IpAddr, std::io::Error)>,
) -> Result<(), Error> {
    let more = failures.len().saturating_sub(1);
    match failures.into_iter().next() {
        None => Ok(()),
        Some((addr, source)) => Err(Error::Kernel {
            what,
            addr,
            more,
            source,
        }),
    }
}
