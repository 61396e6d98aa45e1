//! `del`: release holds, then remove the routes nobody holds any more.

use super::input::addresses;
use super::output::count;
use super::privilege::require_net_admin;
use super::{report_removed, Ctx};
use crate::cli::DelArgs;
use crate::error::Result;
use crate::kernel::Kernel;

pub async fn run(ctx: &mut Ctx, args: &DelArgs) -> Result<()> {
    let addrs = addresses(&args.ips, &args.literal)?;
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let out = ctx
        .bans(&kernel)
        .unban(args.jail.as_deref(), &addrs)
        .await?;
    for ip in &out.kept {
        ctx.out
            .detail(format_args!("kept {ip}: still held by another jail"));
    }
    let why = args
        .jail
        .as_deref()
        .map(|j| format!(" for {j}"))
        .unwrap_or_default();
    let routes = out.routes;
    report_removed(ctx, &routes, &why);
    let mut summary = format!("removed {}", count(routes.removed.len(), "route"));
    if !out.kept.is_empty() {
        summary.push_str(&format!(", {} kept for other jails", out.kept.len()));
    }
    if !routes.absent.is_empty() {
        summary.push_str(&format!(", {} already gone", routes.absent.len()));
    }
    if !routes.failures.is_empty() {
        summary.push_str(&format!(", {} failed", routes.failures.len()));
    }
    ctx.out.summary(&summary);
    routes.into_result()?;
    Ok(())
}
