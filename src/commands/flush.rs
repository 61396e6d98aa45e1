//! `flush`: every route we own, or one jail's holds.

use super::output::count;
use super::privilege::require_net_admin;
use super::{report_flushed, report_removed, Ctx};
use crate::cli::FlushArgs;
use crate::error::Result;
use crate::kernel::Kernel;

pub async fn run(ctx: &mut Ctx, args: &FlushArgs) -> Result<()> {
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let bans = ctx.bans(&kernel);
    match &args.jail {
        Some(jail) => {
            let out = bans.flush_jail(jail).await?;
            let summary = report_flushed(&mut ctx.out, jail, &out);
            ctx.out.summary(&summary);
            out.routes.into_result()?;
        }
        None => {
            let out = bans.flush_all().await?;
            report_removed(&mut ctx.out, &out, " (flush)");
            ctx.out
                .summary(&format!("flushed {}", count(out.removed.len(), "route")));
            out.into_result()?;
        }
    }
    Ok(())
}
