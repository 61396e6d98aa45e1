//! `del`: release holds, then remove the routes nobody holds any more.

use anyhow::Result;

use super::{addresses, count, kernel_failure, Ctx};
use crate::cli::DelArgs;
use crate::kernel::Kernel;
use crate::ledger::{Access, Ledger};

pub async fn run(ctx: &mut Ctx, args: &DelArgs) -> Result<()> {
    let addrs = addresses(&args.ips)?;
    let kernel = Kernel::connect()?;
    let mut ledger = Ledger::open(&ctx.state_dir, Access::Write)?;

    // Holds first, routes second: a crash in between leaves a route without
    // hold, which keeps dropping (the safe side) until `check` removes it.
    let mut unheld = Vec::with_capacity(addrs.len());
    let mut kept = 0usize;
    for ip in &addrs {
        match &args.jail {
            Some(jail) => {
                ledger.release(jail, *ip)?;
                if ledger.is_held(*ip)? {
                    kept += 1;
                    ctx.out
                        .detail(&format!("kept {ip}: still held by another jail"));
                } else {
                    unheld.push(*ip);
                }
            }
            None => {
                ledger.release_all(*ip)?;
                unheld.push(*ip);
            }
        }
    }

    ledger.finish()?;
    let outcomes = kernel.del(&unheld, ctx.marker).await?;
    let (mut removed, mut absent) = (0usize, 0usize);
    let mut failures = Vec::new();
    for (ip, outcome) in unheld.iter().zip(outcomes) {
        match outcome {
            Ok(true) => {
                removed += 1;
                let by = args
                    .jail
                    .as_deref()
                    .map(|j| format!(" for {j}"))
                    .unwrap_or_default();
                ctx.out.change(&format!("removed {ip}{by}"));
            }
            Ok(false) => {
                absent += 1;
                ctx.out
                    .detail(&format!("{ip}: no route of ours (already gone)"));
            }
            Err(e) => failures.push((*ip, e)),
        }
    }
    let mut summary = format!("removed {}", count(removed, "route"));
    if kept > 0 {
        summary.push_str(&format!(", {kept} kept for other jails"));
    }
    if absent > 0 {
        summary.push_str(&format!(", {absent} already gone"));
    }
    if !failures.is_empty() {
        summary.push_str(&format!(", {} failed", failures.len()));
    }
    ctx.out.summary(&summary);
    kernel_failure("delete", failures)?;
    Ok(())
}
