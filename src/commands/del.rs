//! `del`: release holds, then remove the routes nobody holds any more.

use super::input::addresses;
use super::privilege::require_net_admin;
use super::{report_unbanned, Ctx};
use crate::cli::DelArgs;
use crate::error::Result;
use crate::kernel::Kernel;

pub async fn run(ctx: &mut Ctx, args: &DelArgs) -> Result<()> {
    let addrs = addresses(&args.ips, &args.literal)?;
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let jail = args.jail.as_deref();
    let out = ctx.bans(&kernel).unban(jail, &addrs).await?;
    let summary = report_unbanned(&mut ctx.out, jail, &out);
    ctx.out.summary(&summary);
    out.routes.into_result()?;
    Ok(())
}
