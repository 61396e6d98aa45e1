//! `flush`: every route we own, or one jail's holds.

use anyhow::Result;

use super::{count, kernel_failure, Ctx};
use crate::cli::FlushArgs;
use crate::kernel::Kernel;
use crate::ledger::{Access, Ledger};

pub async fn run(ctx: &mut Ctx, args: &FlushArgs) -> Result<()> {
    let kernel = Kernel::connect()?;
    let mut ledger = Ledger::open(&ctx.state_dir, Access::Write)?;
    ledger.sweep();
    match &args.jail {
        Some(jail) => {
            let held = ledger.held_by(jail)?;
            let mut unheld = Vec::with_capacity(held.len());
            for ip in &held {
                ledger.release(jail, *ip)?;
                if !ledger.is_held(*ip)? {
                    unheld.push(*ip);
                }
            }
            ledger.forget_jail_if_empty(jail);
            ledger.finish()?;
            let outcomes = kernel.del(&unheld, ctx.marker).await?;
            let mut removed = 0usize;
            let mut failures = Vec::new();
            for (ip, outcome) in unheld.iter().zip(outcomes) {
                match outcome {
                    Ok(true) => {
                        removed += 1;
                        ctx.out.change(&format!("removed {ip} for {jail} (flush)"));
                    }
                    Ok(false) => {}
                    Err(e) => failures.push((*ip, e)),
                }
            }
            ctx.out.summary(&format!(
                "released {} of {jail}, removed {}",
                count(held.len(), "hold"),
                count(removed, "route")
            ));
            kernel_failure("delete", failures)?;
        }
        None => {
            // Empty the ledger in one rename; remove its old tree on a second
            // thread while this one deletes the routes.
            let old = ledger.clear()?;
            let sweeper = old.map(|dir| std::thread::spawn(move || std::fs::remove_dir_all(dir)));
            let routes = kernel.owned(ctx.marker).await?;
            let addrs: Vec<_> = routes.iter().map(|r| r.addr).collect();
            let outcomes = kernel.del(&addrs, ctx.marker).await?;
            let mut removed = 0usize;
            let mut failures = Vec::new();
            for (ip, outcome) in addrs.iter().zip(outcomes) {
                match outcome {
                    Ok(true) => {
                        removed += 1;
                        ctx.out.change(&format!("removed {ip} (flush)"));
                    }
                    Ok(false) => {}
                    Err(e) => failures.push((*ip, e)),
                }
            }
            if let Some(sweeper) = sweeper {
                // A leftover tree is swept by the next writer; not worth failing for.
                let _ = sweeper.join();
            }
            ctx.out
                .summary(&format!("flushed {}", count(removed, "route")));
            kernel_failure("delete", failures)?;
        }
    }
    Ok(())
}
