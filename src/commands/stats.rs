//! `stats`: what f2b-route owns and holds, read-only.

use std::io::Write;

use super::list::rfc3339;
use super::output::count;
use super::Ctx;
use crate::cli::StatsArgs;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::ledger::{self, Counter};
use crate::service::Stats;

pub async fn run(ctx: &Ctx, args: &StatsArgs) -> Result<()> {
    let kernel = Kernel::connect()?;
    let stats = ctx.bans(&kernel).stats().await?;
    let now = ledger::now();
    let text = if args.json {
        json(&stats, now) + "\n"
    } else {
        human(&stats, now)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Error::Output),
    }
}

/// The stable JSON form: one object.
pub fn json(s: &Stats, now: u64) -> String {
    let routes: Vec<serde_json::Value> = s
        .routes
        .iter()
        .map(|(family, kind, n)| serde_json::json!({"family": family, "type": kind.as_str(), "count": n}))
        .collect();
    let jails: serde_json::Map<String, serde_json::Value> = s
        .jails
        .iter()
        .map(|(j, n)| (j.clone(), serde_json::json!(n)))
        .collect();
    let counters: serde_json::Map<String, serde_json::Value> = Counter::ALL
        .iter()
        .map(|c| (c.name().to_owned(), serde_json::json!(s.counters.get(*c))))
        .chain([("since".to_owned(), serde_json::json!(s.counters.since))])
        .collect();
    serde_json::json!({
        "routes": routes,
        "routes_total": s.routes.iter().map(|r| r.2).sum::<usize>(),
        "held": s.held,
        "jails": jails,
        "oldest_hold": s.oldest_hold,
        "oldest_hold_age_seconds": s.oldest_hold.map(|t| now.saturating_sub(t)),
        "routes_without_holds": s.routes_without_holds,
        "holds_without_routes": s.holds_without_routes,
        "agree": s.routes_without_holds == 0 && s.holds_without_routes == 0,
        "counters": counters,
    })
    .to_string()
}

fn human(s: &Stats, now: u64) -> String {
    let total: usize = s.routes.iter().map(|r| r.2).sum();
    let kinds: Vec<String> = s
        .routes
        .iter()
        .filter(|r| r.2 > 0)
        .map(|(f, k, n)| format!("{f} {k} {n}"))
        .collect();
    let mut text = format!("routes: {total}");
    if !kinds.is_empty() {
        text.push_str(&format!(" ({})", kinds.join(", ")));
    }
    let jails: Vec<String> = s.jails.iter().map(|(j, n)| format!("{j} {n}")).collect();
    text.push_str(&format!(
        "\nheld: {}{}\n",
        count(s.held, "address"),
        if jails.is_empty() {
            String::new()
        } else {
            format!(" ({})", jails.join(", "))
        }
    ));
    if let Some(t) = s.oldest_hold {
        text.push_str(&format!(
            "oldest hold: {} ({} s ago)\n",
            rfc3339(t),
            now.saturating_sub(t)
        ));
    }
    if s.routes_without_holds == 0 && s.holds_without_routes == 0 {
        text.push_str("ledger and kernel agree\n");
    } else {
        text.push_str(&format!(
            "ledger and kernel disagree: {} without holds, {} without routes (`f2b-route check --repair` mends)\n",
            count(s.routes_without_holds, "route"),
            count(s.holds_without_routes, "hold")
        ));
    }
    let c = &s.counters;
    text.push_str(&format!(
        "since {}: {} added, {} removed, {}, {}, {}\n",
        rfc3339(c.since),
        count(c.get(Counter::Bans) as usize, "route"),
        count(c.get(Counter::Unbans) as usize, "route"),
        count(c.get(Counter::Refusals) as usize, "refusal"),
        count(c.get(Counter::Conflicts) as usize, "conflict"),
        count(c.get(Counter::Failures) as usize, "failure"),
    ));
    text
}
