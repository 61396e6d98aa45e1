//! `mirror`: the firewall side. Adopt the table and resync, then follow
//! route notifications until stopped (SIGTERM, SIGINT); SIGHUP adopts the
//! table again (after nftables reloaded its rules); `--once` resyncs and
//! exits.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use super::output::{count, Report};
use super::privilege::require_net_admin;
use super::Ctx;
use crate::cli::MirrorArgs;
use crate::error::{Error, Result};
use crate::firewall::Nft;
use crate::kernel::{Event, Kernel, Watch};
use crate::mirror::{Changed, Mirror};
use crate::nft::Rules;

/// Notifications that arrive this soon after one are applied with it.
const GATHER: Duration = Duration::from_millis(2);
/// Notifications applied in one nft transaction at most.
const BATCH_MAX: usize = 200_000;

pub async fn run(ctx: &mut Ctx, args: &MirrorArgs) -> Result<()> {
    require_net_admin()?;
    let protocol = args.protocol.unwrap_or(ctx.config.mirror.protocol);
    let table = args.table.unwrap_or(ctx.config.mirror.table);
    let rules = Rules {
        log_prefix: args.log_prefix.clone(),
    };
    let nft = Nft::find();
    let kernel = Kernel::connect()?;
    // Join the route groups before the dump: nothing between is lost.
    let mut watch = if args.once {
        None
    } else {
        Some(Watch::open()?)
    };
    let mut mirror = Mirror::new(&kernel, &nft, protocol, table, rules);
    let first = mirror.adopt().await?;
    ctx.out.summary(&format!(
        "mirror of protocol {protocol} table {table}: {} in the sets{}",
        count(first.total, "address"),
        changes(first)
    ));
    warn_forwarding(&mut ctx.out, first, protocol, table);
    let Some(watch) = watch.as_mut() else {
        return Ok(());
    };
    let mut term = signal(SignalKind::terminate()).map_err(Error::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Runtime)?;
    let mut hup = signal(SignalKind::hangup()).map_err(Error::Runtime)?;
    loop {
        let first = tokio::select! {
            e = watch.next() => e,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                // nftables' rules were reloaded (`flush ruleset` and all):
                // the table made or adopted again, the sets refilled.
                let c = mirror.adopt().await?;
                ctx.out.summary(&format!(
                    "mirror: table adopted again (SIGHUP): {} in the sets{}",
                    count(c.total, "address"),
                    changes(c)
                ));
                warn_forwarding(&mut ctx.out, c, protocol, table);
                continue;
            }
        };
        let Some(first) = first else {
            break;
        };
        let mut events = vec![first];
        // What arrives together goes together: a BGP update of 100,000
        // routes is one transaction, a single ban one small one.
        loop {
            while events.len() < BATCH_MAX {
                match watch.queued() {
                    Some(e) => events.push(e),
                    None => break,
                }
            }
            if events.len() >= BATCH_MAX {
                break;
            }
            tokio::time::sleep(GATHER).await;
            match watch.queued() {
                Some(e) => events.push(e),
                None => break,
            }
        }
        let lost = events.iter().any(|e| matches!(e, Event::Overrun));
        let done = if lost {
            ctx.out
                .warning("route notifications were lost (receive buffer full): resyncing");
            mirror.resync().await
        } else {
            match mirror.apply(&events) {
                Ok(c) => {
                    if c.forwarding > 0 {
                        ctx.out.warning(&format!(
                            "{} of protocol {protocol} in table {table} now forward instead of dropping: \
                             their addresses left the sets (FRR: is the blackhole route to the discard next hop there?)",
                            count(c.forwarding, "banned address's route")
                        ));
                    }
                    Ok(c)
                }
                Err(e) => {
                    ctx.out.warning(&format!("{e}: resyncing"));
                    mirror.resync().await
                }
            }
        };
        match done {
            Ok(c) if c.added + c.removed > 0 => ctx.out.change(format_args!(
                "mirror: {} in the sets{}",
                count(c.total, "address"),
                changes(c)
            )),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if args.flush_on_exit {
        mirror.flush()?;
        ctx.out.summary("mirror stopped, sets emptied");
    } else {
        ctx.out.summary("mirror stopped, sets left as they are");
    }
    Ok(())
}

/// Host routes of the BGP daemon that forward: if they are bans, they fail
/// open.
fn warn_forwarding(out: &mut Report, c: Changed, protocol: u8, table: u32) {
    if c.forwarding > 0 {
        out.warning(&format!(
            "{} of protocol {protocol} in table {table} forward instead of dropping: \
             their addresses are not in the sets (if they are bans, with FRR: is the blackhole route to the discard next hop there?)",
            count(c.forwarding, "host route")
        ));
    }
}

fn changes(c: Changed) -> String {
    if c.added + c.removed == 0 {
        String::new()
    } else {
        format!(" (added {}, removed {})", c.added, c.removed)
    }
}
