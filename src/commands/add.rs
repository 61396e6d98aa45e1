//! `add`: validate everything, refuse what the guard or a foreign route
//! forbids, then create the routes and record the holds.

use std::net::IpAddr;

use anyhow::Result;

use super::{addresses, count, kernel_failure, require_net_admin, Ctx};
use crate::cli::AddArgs;
use crate::error::Error;
use crate::guard::Guard;
use crate::kernel::{Added, Kernel};
use crate::ledger::{self, Access, Ledger};
use crate::route::Lookup;

/// From this many addresses on, holds are written on a second thread.
const PARALLEL_FROM: usize = 512;

pub async fn run(ctx: &mut Ctx, args: &AddArgs) -> Result<()> {
    let addrs = addresses(&args.ips)?;
    let jail = args.jail.as_deref().unwrap_or(ledger::MANUAL);
    let kind = args.kind.unwrap_or(ctx.config.route_type);

    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let (local, lookups) = futures::try_join!(kernel.local_addresses(), kernel.lookup(&addrs))?;

    let guard = Guard::new(&ctx.config, local);
    let refused: Vec<_> = addrs
        .iter()
        .filter_map(|ip| guard.check(*ip).err().map(|rule| (*ip, rule)))
        .collect();
    for (ip, rule) in &refused {
        ctx.out
            .refusal(format_args!("refused {ip} for {jail}: {rule}"));
    }
    if let Some((addr, rule)) = refused.first() {
        return Err(Error::Refused {
            addr: *addr,
            rule: rule.clone(),
            more: refused.len() - 1,
        }
        .into());
    }

    let conflicts: Vec<(IpAddr, &String)> = addrs
        .iter()
        .zip(&lookups)
        .filter_map(|(ip, l)| match l {
            Lookup::ForeignHost(route) => Some((*ip, route)),
            _ => None,
        })
        .collect();
    for (ip, route) in &conflicts {
        ctx.out.refusal(format_args!(
            "refused {ip} for {jail}: someone else's unicast route {route}"
        ));
    }
    if let Some((addr, route)) = conflicts.first() {
        return Err(Error::Conflict {
            addr: *addr,
            route: (*route).clone(),
            more: conflicts.len() - 1,
        }
        .into());
    }

    // Everything is valid: from here on we change things. The holds are
    // written on a second thread while this one adds the routes: for
    // 100,000 addresses each takes about as long as the other. A crash in
    // between leaves holds without routes, which fail2ban's retry or
    // `check` repairs; a hold whose route could not be added is taken back.
    let ledger = Ledger::open(&ctx.state_dir, Access::Write)?;
    let since = ledger::now();
    let write_holds = {
        let (jail, addrs) = (jail.to_owned(), addrs.clone());
        move || {
            let mut ledger = ledger;
            let mut taken = Vec::with_capacity(addrs.len());
            let mut failed = None;
            for ip in &addrs {
                match ledger.hold(&jail, *ip, since) {
                    Ok(new) => taken.push(new),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            (ledger, taken, failed)
        }
    };
    let (outcomes, (mut ledger, taken, failed)) = if addrs.len() < PARALLEL_FROM {
        // A thread costs more than a few links: fail2ban's single ban stays
        // on one thread, and a hold that cannot be taken stops it before
        // any route is added.
        let held = write_holds();
        if held.2.is_some() {
            (Ok(Vec::new()), held)
        } else {
            (kernel.add(&addrs, kind, ctx.marker).await, held)
        }
    } else {
        let writer = std::thread::spawn(write_holds);
        let outcomes = kernel.add(&addrs, kind, ctx.marker).await;
        let held = writer
            .join()
            .map_err(|_| anyhow::anyhow!("ledger writer panicked"))?;
        (outcomes, held)
    };
    // Either half failed as a whole: take the other half back, so that a
    // failed add leaves nothing behind.
    let outcomes = match (outcomes, failed) {
        (Ok(outcomes), None) => outcomes,
        (Ok(outcomes), Some(hold_failed)) => {
            let created: Vec<IpAddr> = addrs
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, Ok(Added::Created)))
                .map(|(ip, _)| *ip)
                .collect();
            kernel.del(&created, ctx.marker).await?;
            release_new(&mut ledger, jail, &addrs, &taken)?;
            return Err(hold_failed.into());
        }
        (Err(kernel_failed), _) => {
            release_new(&mut ledger, jail, &addrs, &taken)?;
            return Err(kernel_failed.into());
        }
    };
    let (mut created, mut present) = (0usize, 0usize);
    let mut failures = Vec::new();
    for (((ip, lookup), outcome), new_hold) in addrs.iter().zip(&lookups).zip(outcomes).zip(taken) {
        match outcome {
            Ok(Added::Created) => {
                created += 1;
                let also = if *lookup == Lookup::Dropped {
                    " (another route already dropped it)"
                } else {
                    ""
                };
                ctx.out
                    .change(format_args!("added {kind} {ip} for {jail}{also}"));
            }
            Ok(Added::Present) => {
                present += 1;
                let (also, by) = if new_hold {
                    ("; now also held by ", jail)
                } else {
                    ("", "")
                };
                ctx.out.detail(format_args!(
                    "{ip}: already dropped by a route with the same metric{also}{by}"
                ));
            }
            Err(e) => {
                if new_hold {
                    ledger.release(jail, *ip)?;
                }
                failures.push((*ip, e));
            }
        }
    }
    ledger.finish()?;
    let mut summary = format!("added {}", count(created, "route"));
    if present > 0 {
        summary.push_str(&format!(", {present} already present"));
    }
    if !failures.is_empty() {
        summary.push_str(&format!(", {} failed", failures.len()));
    }
    ctx.out.summary(&summary);
    kernel_failure("add", failures)?;
    Ok(())
}

/// Take back the holds this run took (`taken[i]`: the hold on `addrs[i]` is new).
fn release_new(
    ledger: &mut Ledger,
    jail: &str,
    addrs: &[IpAddr],
    taken: &[bool],
) -> Result<(), Error> {
    for (ip, new) in addrs.iter().zip(taken) {
        if *new {
            ledger.release(jail, *ip)?;
        }
    }
    Ok(())
}
