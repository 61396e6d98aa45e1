//! The ban service: the one place that puts the guard, the kernel and the
//! ledger together. A ban, an unban, a jail's flush, a full flush, a repair,
//! a preflight, a listing and a reconcile with fail2ban, each returning what it did as a typed
//! outcome; the commands (and the resident modes to come) only parse, call
//! and report.
//!
//! The kernel is reached through [`Routes`], which the real [`Kernel`]
//! implements and the unit tests fake.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::guard::{Guard, Rule};
use crate::kernel::{Added, Deleted, Kernel, KernelError};
use crate::ledger::{self, Access, Counter, Counts, Holders, Holds, Ledger, LedgerError};
use crate::model::{LocalAddr, Lookup, Marker, OwnedRoute, RouteDesc, RouteKind};

/// From this many addresses on, a ban writes its holds on a second thread
/// while this one adds the routes (for 100,000 each takes about as long as
/// the other); below, a thread costs more than it saves.
const PARALLEL_FROM: usize = 512;

/// How long counting a refusal or a failure waits for the lock: counting
/// is worth little delay.
const COUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The kernel's routing table as the service needs it.
// The runtime is single-threaded: no future needs to be Send.
#[allow(async_fn_in_trait)]
pub trait Routes {
    async fn local_addresses(&self) -> Result<Vec<LocalAddr>, KernelError>;
    async fn lookup(&self, addrs: &[IpAddr]) -> Result<Vec<Lookup>, KernelError>;
    async fn add(
        &self,
        addrs: &[IpAddr],
        kind: RouteKind,
        marker: Marker,
    ) -> Result<Vec<Result<Added, io::Error>>, KernelError>;
    async fn del(
        &self,
        addrs: &[IpAddr],
        first: RouteKind,
        marker: Marker,
    ) -> Result<Vec<Result<Deleted, io::Error>>, KernelError>;
    async fn del_listed(
        &self,
        routes: &[OwnedRoute],
        marker: Marker,
    ) -> Result<Vec<Result<Deleted, io::Error>>, KernelError>;
    async fn owned_each(
        &self,
        marker: Marker,
        each: impl FnMut(OwnedRoute),
    ) -> Result<(), KernelError>;
    /// An interface's name, for a refusal's message.
    fn interface_name(&self, index: u32) -> String;
}

impl Routes for Kernel {
    async fn local_addresses(&self) -> Result<Vec<LocalAddr>, KernelError> {
        Kernel::local_addresses(self).await
    }
    async fn lookup(&self, addrs: &[IpAddr]) -> Result<Vec<Lookup>, KernelError> {
        Kernel::lookup(self, addrs).await
    }
    async fn add(
        &self,
        addrs: &[IpAddr],
        kind: RouteKind,
        marker: Marker,
    ) -> Result<Vec<Result<Added, io::Error>>, KernelError> {
        Kernel::add(self, addrs, kind, marker).await
    }
    async fn del(
        &self,
        addrs: &[IpAddr],
        first: RouteKind,
        marker: Marker,
    ) -> Result<Vec<Result<Deleted, io::Error>>, KernelError> {
        Kernel::del(self, addrs, first, marker).await
    }
    async fn del_listed(
        &self,
        routes: &[OwnedRoute],
        marker: Marker,
    ) -> Result<Vec<Result<Deleted, io::Error>>, KernelError> {
        Kernel::del_listed(self, routes, marker).await
    }
    async fn owned_each(
        &self,
        marker: Marker,
        each: impl FnMut(OwnedRoute),
    ) -> Result<(), KernelError> {
        Kernel::owned_each(self, marker, each).await
    }
    fn interface_name(&self, index: u32) -> String {
        crate::kernel::interface_name(index)
    }
}

/// Where [`Bans::list`] puts the routes, on a thread of its own.
pub trait Listing: Send + 'static {
    type Error: Send + 'static;
    fn route(
        &mut self,
        route: &OwnedRoute,
        holders: Option<&Holders>,
        holds: &Holds,
    ) -> Result<(), Self::Error>;
    /// After the last route.
    fn finish(&mut self) -> Result<(), Self::Error>;
}

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The guard refused these addresses (never empty); nothing changed.
    #[error("refused {}: {}{}; nothing changed", .0[0].0, .0[0].1, more(.0.len()))]
    Refused(Vec<(IpAddr, Rule)>),
    /// Someone else's unicast host routes exist for these (never empty).
    #[error("refused {}: someone else's unicast route {} exists; remove it first{}; nothing changed", .0[0].0, .0[0].1, more(.0.len()))]
    Conflict(Vec<(IpAddr, RouteDesc)>),
    /// Routes of another type carry our marker at these IPv6 addresses
    /// (never empty): ours there were left, for the kernel cannot be told
    /// which to delete.
    #[error("left {}: {} carries f2b-route's marker there too, and an IPv6 delete cannot tell the two apart; remove it, then unban again{}", .0[0].0, .0[0].1, more(.0.len()))]
    Shared(Vec<(IpAddr, RouteDesc)>),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The kernel refused the change of some addresses; the others went through.
    #[error("kernel refused to {what} {addr}{}", more(*count))]
    Change {
        what: &'static str,
        addr: IpAddr,
        count: usize,
        #[source]
        source: io::Error,
    },
    /// fail2ban's state could not be read (reconcile); nothing changed.
    #[error(transparent)]
    Fail2ban(#[from] crate::fail2ban::Error),
    #[error("a worker thread of this run panicked")]
    Panicked,
}

fn more(count: usize) -> String {
    if count > 1 {
        format!(" (and {} more)", count - 1)
    } else {
        String::new()
    }
}

/// Changes the kernel refused, one per address.
#[derive(Debug, Default)]
pub struct Failures(Vec<(IpAddr, io::Error)>);

impl Failures {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &io::Error)> {
        self.0.iter().map(|(ip, e)| (ip, e))
    }

    /// The first failure as the call's error, if any.
    pub fn into_result(self, what: &'static str) -> Result<(), Error> {
        let count = self.0.len();
        match self.0.into_iter().next() {
            None => Ok(()),
            Some((addr, source)) => Err(Error::Change {
                what,
                addr,
                count,
                source,
            }),
        }
    }
}

/// What a ban did.
#[derive(Debug, Default)]
pub struct Banned {
    /// Routes created; `true` where another route already dropped the address.
    pub created: Vec<(IpAddr, bool)>,
    /// Routes that were there already; `true` where this jail's hold is new.
    pub present: Vec<(IpAddr, bool)>,
    pub failures: Failures,
}

/// What deleting routes did.
#[derive(Debug, Default)]
pub struct Removed {
    pub removed: Vec<IpAddr>,
    /// Addresses with no route of ours (already gone).
    pub absent: Vec<IpAddr>,
    /// Addresses left alone: a route of another type carries our marker there.
    pub shared: Vec<(IpAddr, RouteDesc)>,
    pub failures: Failures,
}

impl Removed {
    /// The call's error, if any delete failed or was left alone.
    pub fn into_result(self) -> Result<(), Error> {
        if !self.shared.is_empty() {
            return Err(Error::Shared(self.shared));
        }
        self.failures.into_result("delete")
    }
}

/// What an unban or a jail's flush did.
#[derive(Debug, Default)]
pub struct Unbanned {
    /// Holds released.
    pub released: usize,
    /// Routes kept because another jail still holds them.
    pub kept: Vec<IpAddr>,
    pub routes: Removed,
}

/// What a repair did.
#[derive(Debug, Default)]
pub struct Repaired {
    /// Routes of ours with a hold.
    pub held: usize,
    /// Holds dropped because their route had gone.
    pub stale: Vec<IpAddr>,
    /// Routes of ours that no jail held, removed.
    pub orphans: Removed,
    /// Routes left in place because the ledger holds nothing at all while
    /// they exist: a lost ledger (state dir wiped or moved), not a crash.
    pub lost: usize,
}

/// Counts of what f2b-route owns and holds, and whether the ledger and the
/// kernel agree.
#[derive(Debug, Default)]
pub struct Stats {
    /// Routes of ours by family ("inet", "inet6") and type, every pair present.
    pub routes: Vec<(&'static str, RouteKind, usize)>,
    /// Addresses each jail holds (jails holding nothing left out).
    pub jails: Vec<(String, usize)>,
    /// Addresses held by at least one jail.
    pub held: usize,
    /// When the oldest hold was taken (unix seconds).
    pub oldest_hold: Option<u64>,
    pub routes_without_holds: usize,
    pub holds_without_routes: usize,
    pub counters: Counts,
}

/// What a preflight found.
#[derive(Debug)]
pub struct Preflight {
    /// Whether the state dir exists (else the first change makes it).
    pub state_exists: bool,
}

/// The ban service for one run.
pub struct Bans<'a, K> {
    kernel: &'a K,
    config: &'a Config,
    marker: Marker,
    state_dir: PathBuf,
    /// The clock that dates holds (unix seconds).
    pub now: fn() -> u64,
}

impl<'a, K: Routes> Bans<'a, K> {
    pub fn new(kernel: &'a K, config: &'a Config, state_dir: &Path) -> Self {
        Bans {
            kernel,
            config,
            marker: config.marker(),
            state_dir: state_dir.to_path_buf(),
            now: ledger::now,
        }
    }

    fn ledger(&self, access: Access) -> Result<Ledger, LedgerError> {
        Ledger::open(&self.state_dir, access)
    }

    /// The ledger, locked for a change. A ledger this run makes (there was
    /// none, or the state dir was wiped or moved) first records the routes
    /// of ours that exist already: nobody's holds, but bans all the same.
    async fn ledger_to_change(&self) -> Result<Ledger, Error> {
        let mut ledger = self.ledger(Access::Write)?;
        if ledger.is_fresh() {
            self.remember_found(&mut ledger).await?;
        }
        Ok(ledger)
    }

    /// Every route of ours.
    async fn owned(&self) -> Result<Vec<OwnedRoute>, Error> {
        let mut routes = Vec::new();
        self.kernel
            .owned_each(self.marker, |r| routes.push(r))
            .await?;
        Ok(routes)
    }

    /// Record in a new ledger the routes of ours that exist already.
    async fn remember_found(&self, ledger: &mut Ledger) -> Result<(), Error> {
        let mut found: Vec<IpAddr> = self.owned().await?.iter().map(|r| r.addr).collect();
        found.sort();
        found.dedup();
        Ok(ledger.remember_found(&found)?)
    }

    /// Count what a failed call refused or failed (a call that succeeds
    /// counts under its own lock). Best effort: counting must not turn a
    /// refusal into another error.
    async fn counted<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        let (what, n) = match &result {
            Ok(_) => return result,
            // A lock held for ever would only be waited for once more.
            Err(Error::Ledger(LedgerError::LockTimeout { .. })) => return result,
            // Not a ban that failed: fail2ban could not be read.
            Err(Error::Fail2ban(_)) => return result,
            Err(Error::Refused(list)) => (Counter::Refusals, list.len()),
            Err(Error::Conflict(list)) => (Counter::Conflicts, list.len()),
            Err(_) => (Counter::Failures, 1),
        };
        if let Ok(mut ledger) = Ledger::open_waiting(&self.state_dir, Access::Write, COUNT_WAIT) {
            if !ledger.is_fresh() || self.remember_found(&mut ledger).await.is_ok() {
                ledger.count(what, n);
                let _ = ledger.finish();
            }
        }
        result
    }

    /// The counters since the state dir was made.
    pub fn counters(&self) -> Result<Counts, Error> {
        Ok(self.ledger(Access::Read)?.counters()?)
    }

    /// Blackhole `addrs` (valid, distinct host addresses) for `jail`: refuse
    /// the whole batch if the guard or a foreign route forbids one of them,
    /// else create the routes and record the holds.
    pub async fn ban(
        &self,
        jail: &str,
        addrs: &[IpAddr],
        kind: RouteKind,
    ) -> Result<Banned, Error> {
        let result = self.ban_now(jail, addrs, kind).await;
        self.counted(result).await
    }

    async fn ban_now(
        &self,
        jail: &str,
        addrs: &[IpAddr],
        kind: RouteKind,
    ) -> Result<Banned, Error> {
        let (local, lookups) =
            futures::try_join!(self.kernel.local_addresses(), self.kernel.lookup(addrs))?;
        let guard = Guard::new(self.config, local);
        let refused: Vec<(IpAddr, Rule)> = addrs
            .iter()
            .zip(&lookups)
            .filter_map(|(ip, found)| guard.check(*ip, found).err().map(|rule| (*ip, rule)))
            .map(|(ip, rule)| match rule {
                Rule::Local { index, .. } => (
                    ip,
                    Rule::Local {
                        index,
                        name: Some(self.kernel.interface_name(index)),
                    },
                ),
                other => (ip, other),
            })
            .collect();
        if !refused.is_empty() {
            return Err(Error::Refused(refused));
        }
        let conflicts: Vec<(IpAddr, RouteDesc)> = addrs
            .iter()
            .zip(&lookups)
            .filter_map(|(ip, found)| match found {
                Lookup::ForeignHost(route) => Some((*ip, route.clone())),
                _ => None,
            })
            .collect();
        if !conflicts.is_empty() {
            return Err(Error::Conflict(conflicts));
        }

        // Everything is valid: from here on we change things. A crash in
        // between leaves holds without routes, which fail2ban's retry or a
        // repair mends; a hold whose route could not be added is taken back.
        let ledger = self.ledger_to_change().await?;
        let since = (self.now)();
        let write_holds = {
            let (jail, addrs) = (jail.to_owned(), addrs.to_vec());
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
            // A hold that cannot be taken stops a small ban before any
            // route is added.
            let held = write_holds();
            if held.2.is_some() {
                (Ok(Vec::new()), held)
            } else {
                (self.kernel.add(addrs, kind, self.marker).await, held)
            }
        } else {
            let writer = std::thread::spawn(write_holds);
            let outcomes = self.kernel.add(addrs, kind, self.marker).await;
            let held = writer.join().map_err(|_| Error::Panicked)?;
            (outcomes, held)
        };
        let outcomes = match (outcomes, failed) {
            (Ok(outcomes), None) => outcomes,
            // Either half failed as a whole: take this run's part of the
            // other half back, so that a failed ban leaves nothing behind.
            (Ok(outcomes), Some(hold_failed)) => {
                release_new(&mut ledger, jail, addrs, &taken)?;
                let mut created = Vec::new();
                for (ip, outcome) in addrs.iter().zip(&outcomes) {
                    // A route another jail holds stays, even if this run
                    // made it (its own route had gone behind its back).
                    if matches!(outcome, Ok(Added::Created)) && !ledger.is_held(*ip)? {
                        created.push(*ip);
                    }
                }
                ledger.finish()?;
                self.kernel.del(&created, kind, self.marker).await?;
                return Err(hold_failed.into());
            }
            (Err(kernel_failed), _) => {
                release_new(&mut ledger, jail, addrs, &taken)?;
                return Err(kernel_failed.into());
            }
        };
        let mut banned = Banned::default();
        for (((ip, found), outcome), new_hold) in
            addrs.iter().zip(&lookups).zip(outcomes).zip(taken)
        {
            match outcome {
                Ok(Added::Created) => banned.created.push((*ip, *found == Lookup::Dropped)),
                Ok(Added::Present) => banned.present.push((*ip, new_hold)),
                Err(e) => {
                    if new_hold {
                        ledger.release(jail, *ip)?;
                    }
                    banned.failures.0.push((*ip, e));
                }
            }
        }
        ledger.count(Counter::Bans, banned.created.len());
        ledger.count(Counter::Failures, banned.failures.len());
        ledger.finish()?;
        Ok(banned)
    }

    /// Release holds on `addrs`: `jail`'s only (the route goes when no jail
    /// holds it any more), or every jail's. Holds first, routes second: a
    /// crash in between leaves a route without hold, which keeps dropping
    /// (the safe side) until a repair removes it.
    pub async fn unban(&self, jail: Option<&str>, addrs: &[IpAddr]) -> Result<Unbanned, Error> {
        let result = self.unban_now(jail, addrs).await;
        self.counted(result).await
    }

    async fn unban_now(&self, jail: Option<&str>, addrs: &[IpAddr]) -> Result<Unbanned, Error> {
        let mut ledger = self.ledger_to_change().await?;
        let mut out = Unbanned::default();
        let unheld = match jail {
            Some(jail) => release(&mut ledger, jail, addrs, &mut out)?,
            None => {
                for ip in addrs {
                    ledger.release_all(*ip)?;
                }
                addrs.to_vec()
            }
        };
        ledger.finish()?;
        out.routes = self.remove(&mut ledger, &unheld).await?;
        Ok(out)
    }

    /// Release every hold of `jail`; the routes only it held go.
    pub async fn flush_jail(&self, jail: &str) -> Result<Unbanned, Error> {
        let result = self.flush_jail_now(jail).await;
        self.counted(result).await
    }

    async fn flush_jail_now(&self, jail: &str) -> Result<Unbanned, Error> {
        let mut ledger = self.ledger_to_change().await?;
        ledger.sweep()?;
        let held = ledger.held_by(jail)?;
        let mut out = Unbanned::default();
        let unheld = release(&mut ledger, jail, &held, &mut out)?;
        ledger.forget_jail_if_empty(jail)?;
        ledger.finish()?;
        out.routes = self.remove(&mut ledger, &unheld).await?;
        Ok(out)
    }

    /// Remove every route of ours and every hold.
    pub async fn flush_all(&self) -> Result<Removed, Error> {
        let result = self.flush_all_now().await;
        self.counted(result).await
    }

    async fn flush_all_now(&self) -> Result<Removed, Error> {
        let mut ledger = self.ledger_to_change().await?;
        ledger.sweep()?;
        // What is in holds/ is checked before it is thrown away: a link
        // there is an error, as everywhere in the state dir.
        ledger.list_jails()?;
        // Empty the ledger in one rename; remove its old tree on a second
        // thread while this one deletes the routes.
        let old = ledger.clear()?;
        let sweeper = old.map(|old| std::thread::spawn(move || old.remove()));
        let routes = self.owned().await?;
        let outcomes = self.kernel.del_listed(&routes, self.marker).await?;
        if let Some(sweeper) = sweeper {
            // A leftover tree is swept by the next flush or repair; not
            // worth failing for.
            let _ = sweeper.join();
        }
        let out = removed(routes.iter().map(|r| r.addr), outcomes);
        tally(&mut ledger, &out);
        ledger.finish()?;
        Ok(out)
    }

    /// Mend what an interrupted run left: drop holds whose route has gone,
    /// remove routes of ours that no jail holds, and rebuild the journals.
    /// Routes that were there when the ledger was made (a lost ledger's
    /// bans, `found`) are no leftovers: they stay until a jail holds them
    /// again or they go (fail2ban's restore re-adds the bans, and `flush`
    /// removes the rest on purpose).
    pub async fn repair(&self) -> Result<Repaired, Error> {
        let result = self.repair_now().await;
        self.counted(result).await
    }

    async fn repair_now(&self) -> Result<Repaired, Error> {
        let mut ledger = self.ledger_to_change().await?;
        ledger.sweep()?;
        let routes = self.owned().await?;
        let holds = ledger.all()?;
        let routed: BTreeSet<IpAddr> = routes.iter().map(|r| r.addr).collect();
        let mut out = Repaired::default();
        for ip in holds.addresses().filter(|ip| !routed.contains(ip)) {
            ledger.release_all(ip)?;
            out.stale.push(ip);
        }
        ledger.finish()?;
        ledger.compact_all()?;
        // Routes no jail holds: the leftovers of an interrupted run go; those
        // found when the ledger was made (a lost ledger's bans) stay until a
        // jail holds them again or they go.
        let found = ledger.found()?;
        let (kept, orphans): (Vec<OwnedRoute>, Vec<OwnedRoute>) = routes
            .iter()
            .filter(|r| holds.get(&r.addr).is_none())
            .partition(|r| found.contains(&r.addr));
        out.held = routed.iter().filter(|ip| holds.get(ip).is_some()).count();
        let still: Vec<IpAddr> = kept
            .iter()
            .map(|r| r.addr)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        out.lost = still.len();
        ledger.remember_found(&still)?;
        let outcomes = self.kernel.del_listed(&orphans, self.marker).await?;
        out.orphans = removed(orphans.iter().map(|r| r.addr), outcomes);
        tally(&mut ledger, &out.orphans);
        ledger.finish()?;
        Ok(out)
    }

    /// Check, changing nothing, that a ban could work: netlink answers, and
    /// the state dir (or where it will be made) can be trusted.
    pub async fn preflight(&self) -> Result<Preflight, Error> {
        self.kernel.local_addresses().await?;
        let state_exists = ledger::inspect(&self.state_dir)?;
        Ok(Preflight { state_exists })
    }

    /// Count routes and holds, read-only: the routes are dumped on this
    /// thread while a second one reads the ledger.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let mut ledger = self.ledger(Access::Read)?;
        let reader = std::thread::spawn(move || -> Result<(Holds, Counts), LedgerError> {
            Ok((ledger.all()?, ledger.counters()?))
        });
        let mut by_kind = [[0usize; 3]; 2];
        let mut routed = std::collections::HashSet::new();
        let dumped = self
            .kernel
            .owned_each(self.marker, |r| {
                let kind = RouteKind::ALL
                    .iter()
                    .position(|k| *k == r.kind)
                    .unwrap_or(0);
                by_kind[usize::from(r.addr.is_ipv6())][kind] += 1;
                routed.insert(r.addr);
            })
            .await;
        let read = reader.join().map_err(|_| Error::Panicked)?;
        dumped?;
        let (holds, counters) = read?;
        let mut stats = Stats {
            held: holds.len(),
            oldest_hold: holds.oldest(),
            jails: holds
                .per_jail()
                .into_iter()
                .map(|(j, n)| (j.to_owned(), n))
                .collect(),
            routes_without_holds: routed.iter().filter(|ip| holds.get(ip).is_none()).count(),
            holds_without_routes: holds.addresses().filter(|ip| !routed.contains(ip)).count(),
            counters,
            routes: Vec::new(),
        };
        for (f, family) in ["inet", "inet6"].into_iter().enumerate() {
            for (k, kind) in RouteKind::ALL.into_iter().enumerate() {
                stats.routes.push((family, kind, by_kind[f][k]));
            }
        }
        Ok(stats)
    }

    /// Hand every route of ours, with its holders, to `sink`. The routes
    /// are dumped on this thread while a second one reads the ledger and
    /// then feeds the sink the routes as they arrive, in chunks.
    pub async fn list<S: Listing>(&self, sink: S) -> Result<Result<(), S::Error>, Error> {
        const CHUNK: usize = 1024;
        let mut ledger = self.ledger(Access::Read)?;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<OwnedRoute>>();
        let mut sink = sink;
        let writer = std::thread::spawn(move || -> Result<Result<(), S::Error>, LedgerError> {
            let holds = ledger.all()?;
            drop(ledger);
            for chunk in rx {
                for route in &chunk {
                    if let Err(e) = sink.route(route, holds.get(&route.addr), &holds) {
                        return Ok(Err(e));
                    }
                }
            }
            Ok(sink.finish())
        });
        let mut chunk = Vec::with_capacity(CHUNK);
        let dumped = self
            .kernel
            .owned_each(self.marker, |route| {
                chunk.push(route);
                if chunk.len() == CHUNK {
                    // A writer that stopped has its say below.
                    let _ = tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                }
            })
            .await;
        let _ = tx.send(chunk);
        drop(tx);
        let written = writer.join().map_err(|_| Error::Panicked)?;
        dumped?;
        Ok(written?)
    }

    /// Delete our routes for `addrs`, whatever dropping type they have,
    /// and count it in `ledger` (whose lock this run still holds).
    async fn remove(&self, ledger: &mut Ledger, addrs: &[IpAddr]) -> Result<Removed, Error> {
        let outcomes = self
            .kernel
            .del(addrs, self.config.route_type, self.marker)
            .await?;
        let out = removed(addrs.iter().copied(), outcomes);
        tally(ledger, &out);
        ledger.finish()?;
        Ok(out)
    }
}

/// Release `jail`'s holds on `addrs`; returns the addresses no jail holds
/// any more (their routes are to go) and notes the others as kept.
fn release(
    ledger: &mut Ledger,
    jail: &str,
    addrs: &[IpAddr],
    out: &mut Unbanned,
) -> Result<Vec<IpAddr>, LedgerError> {
    let mut unheld = Vec::with_capacity(addrs.len());
    for ip in addrs {
        if ledger.release(jail, *ip)? {
            out.released += 1;
        }
        if ledger.is_held(*ip)? {
            out.kept.push(*ip);
        } else {
            unheld.push(*ip);
        }
    }
    Ok(unheld)
}

/// Take back the holds this run took (`taken[i]`: the hold on `addrs[i]` is new).
fn release_new(
    ledger: &mut Ledger,
    jail: &str,
    addrs: &[IpAddr],
    taken: &[bool],
) -> Result<(), LedgerError> {
    for (ip, new) in addrs.iter().zip(taken) {
        if *new {
            ledger.release(jail, *ip)?;
        }
    }
    Ok(())
}

/// Count a removal: routes removed are unbans, addresses left for a route
/// of another type conflicts, refused deletes failures.
fn tally(ledger: &mut Ledger, out: &Removed) {
    ledger.count(Counter::Unbans, out.removed.len());
    ledger.count(Counter::Conflicts, out.shared.len());
    ledger.count(Counter::Failures, out.failures.len());
}

fn removed(
    addrs: impl Iterator<Item = IpAddr>,
    outcomes: Vec<Result<Deleted, io::Error>>,
) -> Removed {
    let mut out = Removed::default();
    for (ip, outcome) in addrs.zip(outcomes) {
        match outcome {
            Ok(Deleted::Removed) => out.removed.push(ip),
            Ok(Deleted::Absent) => out.absent.push(ip),
            Ok(Deleted::Shared(desc)) => out.shared.push((ip, *desc)),
            Err(e) => out.failures.0.push((ip, e)),
        }
    }
    out
}

impl fmt::Display for Preflight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.state_exists {
            "state dir ready"
        } else {
            "state dir not made yet (the first change makes it)"
        })
    }
}

mod reconcile;
pub use reconcile::Reconciled;

#[cfg(test)]
mod tests;
