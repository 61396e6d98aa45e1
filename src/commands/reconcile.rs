//! `reconcile`: the routes and holds made equal to fail2ban's active bans.
//! Prints one line per change on stdout (nothing when there is nothing to
//! do), and a summary on stderr when something changed.

use std::io::{self, BufWriter, Write};
use std::net::IpAddr;

use super::output::count;
use super::privilege::require_net_admin;
use super::{report_flushed, Ctx};
use crate::cli::ReconcileArgs;
use crate::error::{Error, Result};
use crate::fail2ban::{self, db, socket, Active};
use crate::kernel::Kernel;
use crate::ledger;
use crate::plan::Scope;
use crate::service::{self, Reconciled};

/// One line of `reconcile --json`. The field set is a stable interface.
#[derive(serde::Serialize)]
struct Line<'a> {
    change: &'static str,
    jail: Option<&'a str>,
    address: String,
    reason: Option<String>,
}

pub async fn run(ctx: &mut Ctx, args: &ReconcileArgs) -> Result<()> {
    if !args.dry_run {
        require_net_admin()?;
    }
    let kernel = Kernel::connect()?;
    // Not ctx.bans(): ctx.out is written while the service is in use.
    let bans = service::Bans::new(&kernel, &ctx.config, &ctx.state_dir);
    let jail = args.jail.as_deref();
    let scope = jail.map_or(Scope::All, Scope::Jail);
    let kind = args.kind.unwrap_or(ctx.config.route_type);
    let (socket, db, jail_owned) = (args.socket.clone(), args.db.clone(), args.jail.clone());
    let given = args.stdin;
    let min_left = args.min_left;
    let read = move || -> std::result::Result<Active, fail2ban::Error> {
        let now = ledger::now();
        let jail = jail_owned.as_deref();
        if let (true, Some(j)) = (given, jail) {
            return fail2ban::read_given(j, io::stdin().lock());
        }
        match (socket, db) {
            (Some(path), _) => socket::read(&path, jail),
            // A ban with less than min_left left counts as over already.
            (None, Some(path)) => db::read(&path, jail, now.saturating_add(min_left)),
            (None, None) => fail2ban::read_default(jail, now),
        }
    };
    let out = match bans.reconcile(scope, kind, args.dry_run, read).await {
        Ok(out) => out,
        // actionstart's fallback: where fail2ban's database cannot say what
        // it will restore (none kept, a stale path, a schema of another
        // version, a file not to be trusted or damaged), the jail's holds
        // are released as before. A passing failure (the database busy, an
        // I/O error) stays an error, and the routes stay.
        Err(service::Error::Fail2ban(e)) if args.or_flush && e.database_cannot_say() => {
            let jail = jail.unwrap_or_default();
            if args.dry_run {
                ctx.out.warning(&format!(
                    "{e}; without --dry-run the holds of {jail} would be released (flush --jail)"
                ));
                return Ok(());
            }
            ctx.out.warning(&format!(
                "{e}; releasing the holds of {jail} instead, as `flush --jail {jail}` does \
                 (fail2ban's restore adds its bans again, one by one)"
            ));
            let flushed = bans.flush_jail(jail).await?;
            let summary = report_flushed(&mut ctx.out, jail, &flushed);
            ctx.out.summary(&summary);
            flushed.routes.into_result()?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = &out.fell_back {
        ctx.out
            .detail(format_args!("{why}: read its database instead"));
    }
    report(ctx, &out, args.json)?;
    // A change the kernel refused fails the run (the others went through).
    out.failures.into_result("add")?;
    out.removed.failures.into_result("delete")?;
    Ok(())
}

fn report(ctx: &mut Ctx, out: &Reconciled, json: bool) -> Result<()> {
    let would = if out.dry_run { "would " } else { "" };
    let origin = out
        .origin
        .as_ref()
        .map_or_else(String::new, ToString::to_string);
    for jail in &out.skipped_jails {
        ctx.out.warning(&format!(
            "{origin}: jail {jail:?} left out: f2b-route keeps holds only for names of 1-64 \
             of A-Z a-z 0-9 . _ - starting with a letter or digit"
        ));
    }
    for (jail, what) in &out.not_addresses {
        ctx.out.detail(format_args!(
            "{jail} bans {what}: no host address, no route"
        ));
    }
    let mut lines: Vec<Line<'_>> = Vec::new();
    fn line<'a>(
        change: &'static str,
        jail: Option<&'a str>,
        ip: &IpAddr,
        reason: Option<String>,
    ) -> Line<'a> {
        Line {
            change,
            jail,
            address: ip.to_string(),
            reason,
        }
    }
    for (jail, ip) in &out.taken {
        lines.push(line("hold", Some(jail), ip, None));
    }
    for ip in &out.added {
        lines.push(line("route", None, ip, None));
    }
    for (jail, ip) in &out.released {
        lines.push(line("release", Some(jail), ip, None));
    }
    for ip in &out.removed.removed {
        lines.push(line("remove", None, ip, None));
    }
    for (ip, rule) in &out.refused {
        lines.push(line("refused", None, ip, Some(rule.to_string())));
    }
    for (ip, route) in &out.conflicts {
        lines.push(line(
            "conflict",
            None,
            ip,
            Some(format!("someone else's unicast route {route}")),
        ));
    }
    for (ip, route) in &out.removed.shared {
        lines.push(line(
            "left",
            None,
            ip,
            Some(format!("{route} carries f2b-route's marker there too")),
        ));
    }
    for (ip, e) in out.failures.iter().chain(out.removed.failures.iter()) {
        lines.push(line("failed", None, ip, Some(e.to_string())));
    }
    let mut stdout = BufWriter::new(io::stdout().lock());
    let written: io::Result<()> = lines.iter().try_for_each(|l| {
        if json {
            serde_json::to_writer(&mut stdout, l)?;
            stdout.write_all(b"\n")
        } else {
            let jail = l.jail.map(|j| format!(" {j}")).unwrap_or_default();
            let reason = l
                .reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            writeln!(stdout, "{} {}{jail}{reason}", l.change, l.address)
        }
    });
    match written.and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(Error::Output(e)),
        _ => {}
    }
    drop(stdout);
    if !out.dry_run {
        for l in &lines {
            let jail = l.jail.map(|j| format!(" for {j}")).unwrap_or_default();
            match l.change {
                "refused" | "conflict" | "left" | "failed" => ctx.out.refusal(format_args!(
                    "reconcile: {} {}{jail}: {}",
                    l.change,
                    l.address,
                    l.reason.as_deref().unwrap_or_default()
                )),
                change => ctx
                    .out
                    .change(format_args!("reconcile: {change} {}{jail}", l.address)),
            }
        }
    }
    if !out.changed() {
        return Ok(());
    }
    let verbs = if out.dry_run {
        ["add", "take", "release", "remove"]
    } else {
        ["added", "took", "released", "removed"]
    };
    let mut summary = format!(
        "{}reconciled with {origin} ({}, {}): {would}{} {}, {} {}, {} {}, {} {}",
        if out.dry_run {
            "dry run, nothing changed: "
        } else {
            ""
        },
        count(out.jails, "jail"),
        count(out.bans, "ban"),
        verbs[0],
        count(out.added.len(), "route"),
        verbs[1],
        count(out.taken.len(), "hold"),
        verbs[2],
        count(out.released.len(), "hold"),
        verbs[3],
        count(out.removed.removed.len(), "route"),
    );
    if !out.refused.is_empty() || !out.conflicts.is_empty() {
        summary.push_str(&format!(
            "; left out {} the guard refuses and {} where someone else's route is",
            count(out.refused.len(), "address"),
            count(out.conflicts.len(), "address")
        ));
    }
    ctx.out.summary(&summary);
    Ok(())
}
