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
mod stats;

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::service::Bans;
use crate::syslog::Syslog;
use output::{Report, Verbosity};

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
        | Command::Reconcile(_) => Syslog::open(),
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
            Command::Render(_) | Command::Generate(_) => unreachable!("run above"),
        }
    })
}

/// Report each removal as "removed {ip}{why}", and each address that had
/// no route of ours any more.
fn report_removed(ctx: &mut Ctx, routes: &crate::service::Removed, why: &str) {
    for ip in &routes.removed {
        ctx.out.change(format_args!("removed {ip}{why}"));
    }
    for ip in &routes.absent {
        ctx.out
            .detail(format_args!("{ip}: no route of ours (already gone)"));
    }
    for (ip, route) in &routes.shared {
        ctx.out.refusal(format_args!(
            "left {ip}{why}: {route} carries f2b-route's marker there too"
        ));
    }
}
