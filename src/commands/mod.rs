//! One module per subcommand, each parse → call the ban service → report;
//! this one builds what they share and runs one.

mod add;
mod check;
mod del;
mod flush;
mod generate;
mod input;
mod list;
mod metrics;
mod mirror;
mod output;
mod privilege;
mod reconcile;
mod render;
mod serve;
mod stats;

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::model::RouteKind;
use crate::service::{self, Banned, Bans, Removed, Unbanned};
use crate::syslog::Syslog;
use output::{count, Report, Verbosity};

/// Everything a command needs from the command line and the config.
pub struct Ctx {
    pub config: Config,
    pub config_origin: String,
    pub state_dir: PathBuf,
    pub out: Report,
}

impl Ctx {
    /// The ban service over `kernel` for this run.
    fn bans<'a>(&'a self, kernel: &'a Kernel) -> Bans<'a, Kernel> {
        Bans::new(kernel, &self.config, &self.state_dir)
    }
}

/// Run the parsed command line on a current-thread runtime.
pub fn run(cli: Cli) -> Result<()> {
    if let Command::Generate(args) = &cli.command {
        // A packaging step: it needs no config.
        return generate::run(args);
    }
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
        Command::Add(_)
        | Command::Del(_)
        | Command::Flush(_)
        | Command::Check(_)
        | Command::Reconcile(_)
        | Command::Serve(_) => Syslog::open(),
        Command::Mirror(_) => Syslog::open(),
        Command::List(_)
        | Command::Render(_)
        | Command::Stats(_)
        | Command::Metrics(_)
        | Command::Generate(_) => Syslog::disabled(),
    };
    let mut ctx = Ctx {
        config,
        config_origin,
        state_dir,
        out: Report::new(verbosity, syslog),
    };
    if let Command::Render(args) = &cli.command {
        return render::run(&ctx, args);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async {
        match &cli.command {
            Command::Add(args) => add::run(&mut ctx, args).await,
            Command::Del(args) => del::run(&mut ctx, args).await,
            Command::List(args) => list::run(&ctx, args).await,
            Command::Flush(args) => flush::run(&mut ctx, args).await,
            Command::Check(args) => check::run(&mut ctx, args).await,
            Command::Stats(args) => stats::run(&ctx, args).await,
            Command::Metrics(args) => metrics::run(&ctx, args).await,
            Command::Mirror(args) => mirror::run(&mut ctx, args).await,
            Command::Reconcile(args) => reconcile::run(&mut ctx, args).await,
            Command::Serve(args) => serve::run(&mut ctx, args).await,
            Command::Render(_) | Command::Generate(_) => unreachable!("run above"),
        }
    })
}

/// Report a refused ban (to syslog; the error itself is the caller's).
fn report_refused(out: &mut Report, jail: &str, e: &service::Error) {
    match e {
        service::Error::Refused(list) => {
            for (ip, rule) in list {
                out.refusal(format_args!("refused {ip} for {jail}: {rule}"));
            }
        }
        service::Error::Conflict(list) => {
            for (ip, route) in list {
                out.refusal(format_args!(
                    "refused {ip} for {jail}: someone else's unicast route {route}"
                ));
            }
        }
        _ => {}
    }
}

/// Report what a ban did, line by line; returns its summary.
fn report_banned(out: &mut Report, jail: &str, kind: RouteKind, banned: &Banned) -> String {
    for (ip, also) in &banned.created {
        let also = if *also {
            " (another route already dropped it)"
        } else {
            ""
        };
        out.change(format_args!("added {kind} {ip} for {jail}{also}"));
    }
    for (ip, new_hold) in &banned.present {
        let (also, by) = if *new_hold {
            ("; now also held by ", jail)
        } else {
            ("", "")
        };
        out.detail(format_args!(
            "{ip}: already dropped by a route with the same metric{also}{by}"
        ));
    }
    let mut summary = format!("added {}", count(banned.created.len(), "route"));
    if !banned.present.is_empty() {
        summary.push_str(&format!(", {} already present", banned.present.len()));
    }
    if !banned.failures.is_empty() {
        summary.push_str(&format!(", {} failed", banned.failures.len()));
    }
    summary
}

/// Report what an unban did (`jail`'s holds, or everyone's); returns its summary.
fn report_unbanned(out: &mut Report, jail: Option<&str>, unbanned: &Unbanned) -> String {
    for ip in &unbanned.kept {
        out.detail(format_args!("kept {ip}: still held by another jail"));
    }
    let why = jail.map(|j| format!(" for {j}")).unwrap_or_default();
    let routes = &unbanned.routes;
    report_removed(out, routes, &why);
    let mut summary = format!("removed {}", count(routes.removed.len(), "route"));
    if !unbanned.kept.is_empty() {
        summary.push_str(&format!(", {} kept for other jails", unbanned.kept.len()));
    }
    if !routes.absent.is_empty() {
        summary.push_str(&format!(", {} already gone", routes.absent.len()));
    }
    if !routes.failures.is_empty() {
        summary.push_str(&format!(", {} failed", routes.failures.len()));
    }
    summary
}

/// Report what a jail's flush did; returns its summary.
fn report_flushed(out: &mut Report, jail: &str, unbanned: &Unbanned) -> String {
    report_removed(out, &unbanned.routes, &format!(" for {jail} (flush)"));
    format!(
        "released {} of {jail}, removed {}",
        count(unbanned.released, "hold"),
        count(unbanned.routes.removed.len(), "route")
    )
}

/// Report each removal as "removed {ip}{why}", and each address that had
/// no route of ours any more.
fn report_removed(out: &mut Report, routes: &Removed, why: &str) {
    for ip in &routes.removed {
        out.change(format_args!("removed {ip}{why}"));
    }
    for ip in &routes.absent {
        out.detail(format_args!("{ip}: no route of ours (already gone)"));
    }
    for (ip, route) in &routes.shared {
        out.refusal(format_args!(
            "left {ip}{why}: {route} carries f2b-route's marker there too"
        ));
    }
}
