//! `add`: blackhole addresses for a jail.

use super::input::addresses;
use super::privilege::require_net_admin;
use super::{report_banned, report_refused, Ctx};
use crate::cli::AddArgs;
use crate::error::Result;
use crate::kernel::Kernel;
use crate::ledger;

pub async fn run(ctx: &mut Ctx, args: &AddArgs) -> Result<()> {
    let addrs = addresses(&args.ips, &args.literal)?;
    let jail = args.jail.as_deref().unwrap_or(ledger::MANUAL);
    let kind = args.kind.unwrap_or(ctx.config.route_type);
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let banned = match ctx.bans(&kernel).ban(jail, &addrs, kind).await {
        Ok(b) => b,
        Err(e) => {
            report_refused(&mut ctx.out, jail, &e);
            return Err(e.into());
        }
    };
    let summary = report_banned(&mut ctx.out, jail, kind, &banned);
    ctx.out.summary(&summary);
    banned.failures.into_result("add")?;
    Ok(())
}
