//! `flush`: every route we own, or one jail's holds.

use anyhow::Result;

use super::{count, release, remove_routes, require_net_admin, Ctx, Source};
use crate::cli::FlushArgs;
use crate::kernel::Kernel;
use crate::ledger::{Access, Ledger};

pub async fn run(ctx: &mut Ctx, args: &FlushArgs) -> Result<()> {
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let mut ledger = Ledger::open(&ctx.state_dir, Access::Write)?;
    ledger.sweep();
    match &args.jail {
        Some(jail) => {
            let held = ledger.held_by(jail)?;
            let (unheld, _) = release(ctx, &mut ledger, jail, &held)?;
            ledger.forget_jail_if_empty(jail);
            ledger.finish()?;
            let removal = remove_routes(
                ctx,
                &kernel,
                &unheld,
                Source::Addresses,
                &format!(" for {jail} (flush)"),
            )
            .await?;
            ctx.out.summary(&format!(
                "released {} of {jail}, removed {}",
                count(held.len(), "hold"),
                count(removal.removed, "route")
            ));
            removal.result()?;
        }
        None => {
            // Empty the ledger in one rename; remove its old tree on a second
            // thread while this one deletes the routes.
            let old = ledger.clear()?;
            let sweeper = old.map(|dir| std::thread::spawn(move || std::fs::remove_dir_all(dir)));
            let routes = kernel.owned(ctx.marker).await?;
            let addrs: Vec<_> = routes.iter().map(|r| r.addr).collect();
            let removal = remove_routes(ctx, &kernel, &addrs, Source::Dump, " (flush)").await?;
            if let Some(sweeper) = sweeper {
                // A leftover tree is swept by the next flush or check; not
                // worth failing for.
                let _ = sweeper.join();
            }
            ctx.out
                .summary(&format!("flushed {}", count(removal.removed, "route")));
            removal.result()?;
        }
    }
    Ok(())
}
