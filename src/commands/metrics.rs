//! `metrics`: the stats in Prometheus' text format, for node_exporter's
//! textfile collector. No address ever appears in a label.

use std::fmt::Write as _;
use std::io::Write as _;

use super::Ctx;
use crate::cli::MetricsArgs;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::ledger::{self, Counter};
use crate::service::Stats;
use crate::trusted;

/// The file written into the textfile directory.
pub const TEXTFILE: &str = "f2b-route.prom";

pub async fn run(ctx: &Ctx, args: &MetricsArgs) -> Result<()> {
    // The directory first: a wrong one is found before any work.
    let dir = match &args.textfile {
        Some(path) => Some(
            trusted::open_output_dir(path).map_err(|source| Error::OutputDir {
                what: "metrics --textfile",
                source,
            })?,
        ),
        None => None,
    };
    let kernel = Kernel::connect()?;
    let stats = ctx.bans(&kernel).stats().await?;
    let text = render(&stats, ledger::now());
    match dir {
        Some(dir) => dir
            .replace(TEXTFILE, text.as_bytes(), 0o644)
            .map_err(Error::Output),
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.map_err(Error::Output),
            }
        }
    }
}

/// A label value, escaped as the text format wants.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics; `now` dates the age of the oldest hold.
pub fn render(s: &Stats, now: u64) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP f2b_route_{name} {help}");
        let _ = writeln!(out, "# TYPE f2b_route_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "f2b_route_{name}{labels} {value}");
        }
    };
    let routes: Vec<(String, u64)> = s
        .routes
        .iter()
        .map(|(f, k, n)| (format!("{{family=\"{f}\",type=\"{k}\"}}"), *n as u64))
        .collect();
    family(
        "routes",
        "gauge",
        "Routes f2b-route owns in the kernel, by address family and route type.",
        &routes,
    );
    let jails: Vec<(String, u64)> = s
        .jails
        .iter()
        .map(|(j, n)| (format!("{{jail=\"{}\"}}", label(j)), *n as u64))
        .collect();
    family("holds", "gauge", "Addresses each jail holds.", &jails);
    family(
        "held_addresses",
        "gauge",
        "Addresses held by at least one jail.",
        &[(String::new(), s.held as u64)],
    );
    family(
        "oldest_hold_age_seconds",
        "gauge",
        "Age of the oldest hold (0 when nothing is held).",
        &[(
            String::new(),
            s.oldest_hold.map_or(0, |t| now.saturating_sub(t)),
        )],
    );
    family(
        "routes_without_holds",
        "gauge",
        "Routes of f2b-route's that no jail holds (check --repair removes them).",
        &[(String::new(), s.routes_without_holds as u64)],
    );
    family(
        "holds_without_routes",
        "gauge",
        "Holds whose route is gone (check --repair drops them).",
        &[(String::new(), s.holds_without_routes as u64)],
    );
    let c = &s.counters;
    for (counter, name, help) in [
        (Counter::Bans, "bans_total", "Routes f2b-route added."),
        (Counter::Unbans, "unbans_total", "Routes f2b-route removed."),
        (
            Counter::Refusals,
            "guard_refusals_total",
            "Addresses the guard refused.",
        ),
        (
            Counter::Conflicts,
            "conflicts_total",
            "Addresses refused for someone else's unicast host route, or left because a route of another type carries the marker.",
        ),
        (
            Counter::Failures,
            "failures_total",
            "Route changes the kernel refused, and runs that failed.",
        ),
    ] {
        let help = format!("{help} Counted since the state dir was made.");
        family(name, "counter", &help, &[(String::new(), c.get(counter))]);
    }
    family(
        "counters_since_timestamp_seconds",
        "gauge",
        "When the counters began (the state dir was made), unix seconds.",
        &[(String::new(), c.since)],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Counts;
    use crate::model::RouteKind;

    #[test]
    fn the_text_format() {
        let mut counters = Counts::starting(1000);
        counters.add(Counter::Bans, 7);
        let stats = Stats {
            routes: vec![
                ("inet", RouteKind::Blackhole, 3),
                ("inet6", RouteKind::Prohibit, 0),
            ],
            jails: vec![("sshd".into(), 2), ("@manual".into(), 1)],
            held: 3,
            oldest_hold: Some(1500),
            counters,
            ..Stats::default()
        };
        let text = render(&stats, 2000);
        for line in [
            "# TYPE f2b_route_routes gauge",
            "f2b_route_routes{family=\"inet\",type=\"blackhole\"} 3",
            "f2b_route_routes{family=\"inet6\",type=\"prohibit\"} 0",
            "f2b_route_holds{jail=\"@manual\"} 1",
            "f2b_route_oldest_hold_age_seconds 500",
            "# TYPE f2b_route_bans_total counter",
            "f2b_route_bans_total 7",
            "f2b_route_failures_total 0",
            "f2b_route_counters_since_timestamp_seconds 1000",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
