//! `check`: fail2ban's actionstart. Says what is wrong, or repairs what an
//! interrupted run left and says all is well.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::Result;

use super::{count, remove_routes, require_net_admin, Ctx, Source};
use crate::kernel::Kernel;
use crate::ledger::{Access, Ledger};

pub async fn run(ctx: &mut Ctx) -> Result<()> {
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    kernel.local_addresses().await?;
    let mut ledger = Ledger::open(&ctx.state_dir, Access::Write)?;
    ledger.sweep();

    // Repair: a route without a hold is the leftover of an interrupted
    // del/add; a hold without a route means the route went behind our back.
    let routes = kernel.owned(ctx.marker).await?;
    let holds = ledger.all()?;
    let routed: BTreeSet<IpAddr> = routes.iter().map(|r| r.addr).collect();
    // From the set: IPv4 can hold several routes of ours for one address.
    let orphans: Vec<IpAddr> = routed
        .iter()
        .copied()
        .filter(|ip| holds.get(ip).is_none())
        .collect();
    let stale: Vec<IpAddr> = holds
        .addresses()
        .filter(|ip| !routed.contains(ip))
        .collect();
    for ip in &stale {
        ledger.release_all(*ip)?;
        ctx.out
            .change(format_args!("dropped the holds on {ip}: its route is gone"));
    }
    ledger.finish()?;
    for jail in ledger.jails() {
        ledger.compact(jail)?;
    }
    let removal = remove_routes(
        ctx,
        &kernel,
        &orphans,
        Source::Addresses,
        ": no jail held it",
    )
    .await?;
    let c = &ctx.config;
    let mut summary = format!(
        "ok: config {}, marker protocol {} metric {} table {}, state {}, {} held",
        ctx.config_origin,
        c.protocol,
        c.metric,
        c.table_name(),
        ctx.state_dir.display(),
        count(routed.len() - orphans.len(), "route"),
    );
    if !orphans.is_empty() || !stale.is_empty() {
        summary.push_str(&format!(
            "; repaired {} and {}",
            count(orphans.len(), "unheld route"),
            count(stale.len(), "stale hold")
        ));
    }
    ctx.out.summary(&summary);
    removal.result()?;
    Ok(())
}
