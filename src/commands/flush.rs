//! `flush`: every route we own, or one jail's holds.

use super::output::count;
use super::privilege::require_net_admin;
use super::{report_removed, Ctx};
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
            report_removed(ctx, &out.routes, &format!(" for {jail} (flush)"));
            ctx.out.summary(&format!(
                "released {} of {jail}, removed {}",
                count(out.released, "hold"),
                count(out.routes.removed.len(), "route")
            ));
            out.routes.into_result()?;
        }
        None => {
            let out = bans.flush_all().await?;
            report_removed(ctx, &out, " (flush)");
            ctx.out
                .summary(&format!("flushed {}", count(out.removed.len(), "route")));
            out.into_result()?;
        }
    }
    Ok(())
}
