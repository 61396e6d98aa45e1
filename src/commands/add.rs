//! `add`: blackhole addresses for a jail.

use super::input::addresses;
use super::output::count;
use super::privilege::require_net_admin;
use super::Ctx;
use crate::cli::AddArgs;
use crate::error::Result;
use crate::kernel::Kernel;
use crate::ledger;
use crate::service;

pub async fn run(ctx: &mut Ctx, args: &AddArgs) -> Result<()> {
    let addrs = addresses(&args.ips, &args.literal)?;
    let jail = args.jail.as_deref().unwrap_or(ledger::MANUAL);
    let kind = args.kind.unwrap_or(ctx.config.route_type);
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let banned = match ctx.bans(&kernel).ban(jail, &addrs, kind).await {
        Ok(b) => b,
        Err(e) => {
            match &e {
                service::Error::Refused(list) => {
                    for (ip, rule) in list {
                        ctx.out
                            .refusal(format_args!("refused {ip} for {jail}: {rule}"));
                    }
                }
                service::Error::Conflict(list) => {
                    for (ip, route) in list {
                        ctx.out.refusal(format_args!(
                            "refused {ip} for {jail}: someone else's unicast route {route}"
                        ));
                    }
                }
                _ => {}
            }
            return Err(e.into());
        }
    };
    for (ip, also) in &banned.created {
        let also = if *also {
            " (another route already dropped it)"
        } else {
            ""
        };
        ctx.out
            .change(format_args!("added {kind} {ip} for {jail}{also}"));
    }
    for (ip, new_hold) in &banned.present {
        let (also, by) = if *new_hold {
            ("; now also held by ", jail)
        } else {
            ("", "")
        };
        ctx.out.detail(format_args!(
            "{ip}: already dropped by a route with the same metric{also}{by}"
        ));
    }
    let mut summary = format!("added {}", count(banned.created.len(), "route"));
    if !banned.present.is_empty() {
        summary.push_str(&format!(", {} already present", banned.present.len()));
    }
    if !banned.failures.is_empty() {
        summary.push_str(&format!(", {} failed", banned.failures.len()));
    }
    ctx.out.summary(&summary);
    banned.failures.into_result("add")?;
    Ok(())
}
