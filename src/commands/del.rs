//! `del`: release holds, then remove the routes nobody holds any more.

use anyhow::Result;

use super::{addresses, count, release, remove_routes, require_net_admin, Ctx, Source};
use crate::cli::DelArgs;
use crate::kernel::Kernel;
use crate::ledger::{Access, Ledger};

pub async fn run(ctx: &mut Ctx, args: &DelArgs) -> Result<()> {
    let addrs = addresses(&args.ips)?;
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let mut ledger = Ledger::open(&ctx.state_dir, Access::Write)?;

    // Holds first, routes second: a crash in between leaves a route without
    // hold, which keeps dropping (the safe side) until `check` removes it.
    let (unheld, kept) = match &args.jail {
        Some(jail) => release(ctx, &mut ledger, jail, &addrs)?,
        None => {
            for ip in &addrs {
                ledger.release_all(*ip)?;
            }
            (addrs, 0)
        }
    };
    ledger.finish()?;

    let why = args
        .jail
        .as_deref()
        .map(|j| format!(" for {j}"))
        .unwrap_or_default();
    let removal = remove_routes(ctx, &kernel, &unheld, Source::Addresses, &why).await?;
    let mut summary = format!("removed {}", count(removal.removed, "route"));
    if kept > 0 {
        summary.push_str(&format!(", {kept} kept for other jails"));
    }
    if removal.absent > 0 {
        summary.push_str(&format!(", {} already gone", removal.absent));
    }
    if removal.failed() > 0 {
        summary.push_str(&format!(", {} failed", removal.failed()));
    }
    ctx.out.summary(&summary);
    removal.result()?;
    Ok(())
}
