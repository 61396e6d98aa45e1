//! `check`: the preflight fail2ban runs after every failed action; it
//! changes nothing. `check --repair` (fail2ban's actionstart) also mends
//! what an interrupted run left.

use super::output::count;
use super::privilege::require_net_admin;
use super::{report_removed, Ctx};
use crate::cli::CheckArgs;
use crate::error::Result;
use crate::kernel::Kernel;

pub async fn run(ctx: &mut Ctx, args: &CheckArgs) -> Result<()> {
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let bans = ctx.bans(&kernel);
    // The repair (which makes the state dir) first, so that the preflight
    // then speaks of what is there now.
    let repaired = if args.repair {
        Some(bans.repair().await?)
    } else {
        None
    };
    let preflight = bans.preflight().await?;
    let c = &ctx.config;
    let mut summary = format!(
        "ok: config {}, marker protocol {} metric {} table {}, state {} ({preflight})",
        ctx.config_origin,
        c.protocol,
        c.metric,
        c.table_name(),
        ctx.state_dir.display(),
    );
    let Some(out) = repaired else {
        ctx.out.summary(&summary);
        return Ok(());
    };
    for ip in &out.stale {
        ctx.out
            .change(format_args!("dropped the holds on {ip}: its route is gone"));
    }
    report_removed(&mut ctx.out, &out.orphans, ": no jail held it");
    if out.lost > 0 {
        ctx.out.warning(&format!(
            "left {} that no jail holds: they were there when this ledger was made (the \
             old one looks lost: state dir wiped or moved?); a jail that bans them again \
             holds them, `f2b-route flush` removes them",
            count(out.lost, "route")
        ));
    }
    summary.push_str(&format!(", {} held", count(out.held, "route")));
    if !out.orphans.removed.is_empty() || !out.stale.is_empty() {
        summary.push_str(&format!(
            "; repaired {} and {}",
            count(out.orphans.removed.len(), "unheld route"),
            count(out.stale.len(), "stale hold")
        ));
    }
    // A route of another type carrying the marker beside an unheld one of
    // ours: each logged by report_removed, no reason to fail the start.
    if !out.orphans.shared.is_empty() {
        summary.push_str(&format!(
            "; left {} where a route of another type carries f2b-route's marker too \
             (remove it by hand)",
            count(out.orphans.shared.len(), "address")
        ));
    }
    ctx.out.summary(&summary);
    out.orphans.failures.into_result("delete")?;
    Ok(())
}
