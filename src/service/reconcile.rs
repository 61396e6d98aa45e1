//! The ban service's reconcile: the holds and routes made equal to
//! fail2ban's bans, under one lock of the ledger, which is taken before
//! fail2ban's state is read. A ban fail2ban makes meanwhile is in its list
//! before its action runs, and that action waits for the lock: so no hold
//! is released that fail2ban has just taken, and none is taken that it has
//! just released.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::{removed, tally, Bans, Error, Failures, Removed, Routes};
use crate::fail2ban::{self, Active, Origin};
use crate::guard::{Guard, Rule};
use crate::kernel::Added;
use crate::ledger::{valid_jail, Access, Counter, MANUAL};
use crate::model::{Lookup, RouteDesc, RouteKind};
use crate::plan::{self, Plan, Scope};

/// What a reconcile did, or with `dry_run` would do.
#[derive(Debug, Default)]
pub struct Reconciled {
    pub dry_run: bool,
    /// Where fail2ban's bans were read.
    pub origin: Option<Origin>,
    /// fail2ban's bans (host addresses) over the jails read, and the jails.
    pub bans: usize,
    pub jails: usize,
    /// Routes added (they were missing).
    pub added: Vec<IpAddr>,
    /// Holds taken: (jail, address).
    pub taken: Vec<(String, IpAddr)>,
    /// Holds released: (jail, address).
    pub released: Vec<(String, IpAddr)>,
    /// Routes removed once no jail held them; `removed.shared` were left.
    pub removed: Removed,
    /// Addresses fail2ban bans that the guard refuses: no hold, no route.
    pub refused: Vec<(IpAddr, Rule)>,
    /// Addresses fail2ban bans where someone else's unicast host route is.
    pub conflicts: Vec<(IpAddr, RouteDesc)>,
    /// Routes the kernel would not add.
    pub failures: Failures,
    /// fail2ban's jails whose names f2b-route cannot keep holds for.
    pub skipped_jails: Vec<String>,
    /// fail2ban's bans that are no host address: (jail, what it is).
    pub not_addresses: Vec<(String, String)>,
    /// Why the bans were not read from the first source tried.
    pub fell_back: Option<String>,
}

impl Reconciled {
    /// Whether anything changed (or would).
    pub fn changed(&self) -> bool {
        !(self.added.is_empty()
            && self.taken.is_empty()
            && self.released.is_empty()
            && self.removed.removed.is_empty())
    }
}

impl<K: Routes> Bans<'_, K> {
    /// Make the holds of the jails in `scope`, and the routes, equal to
    /// the bans `read` returns (fail2ban's, read under the ledger's lock):
    /// take the holds and add the routes that are missing, release the
    /// holds fail2ban no longer has, and remove the routes no jail then
    /// holds (with [`Scope::All`], also those no jail held at all). New
    /// routes are of type `kind`. The guard applies as to a ban; a refused
    /// address is reported and left out, the others go ahead. With
    /// `dry_run` nothing changes: the ledger is only read.
    pub async fn reconcile(
        &self,
        scope: Scope<'_>,
        kind: RouteKind,
        dry_run: bool,
        read: impl FnOnce() -> Result<Active, fail2ban::Error> + Send + 'static,
    ) -> Result<Reconciled, Error> {
        let result = self.reconcile_now(scope, kind, dry_run, read).await;
        if dry_run {
            result
        } else {
            self.counted(result).await
        }
    }

    async fn reconcile_now(
        &self,
        scope: Scope<'_>,
        kind: RouteKind,
        dry_run: bool,
        read: impl FnOnce() -> Result<Active, fail2ban::Error> + Send + 'static,
    ) -> Result<Reconciled, Error> {
        let mut ledger = if dry_run {
            self.ledger(Access::Read)?
        } else {
            let ledger = self.ledger_to_change().await?;
            ledger.sweep()?;
            ledger
        };
        // fail2ban is asked on a thread of its own while this one reads
        // the ledger and the kernel's routes (a thread left behind by an
        // error here ends with its own time limit).
        let reader = std::thread::spawn(read);
        let holds = ledger.all()?;
        let owned = self.owned().await?;
        let mut active = reader.join().map_err(|_| Error::Panicked)??;
        let mut out = Reconciled {
            dry_run,
            origin: Some(active.origin.clone()),
            not_addresses: std::mem::take(&mut active.not_addresses),
            fell_back: active.fell_back.take(),
            ..Reconciled::default()
        };
        active.jails.retain(|jail, _| {
            let ok = valid_jail(jail);
            if !ok {
                out.skipped_jails.push(jail.clone());
            }
            ok
        });
        out.jails = active.jails.len();
        out.bans = active.count();

        // The jails of f2b-route's: those the ledger knows. A jail of
        // fail2ban's whose action is not f2b-route never held anything here
        // and is none of a full reconcile's business.
        let known: HashSet<String> = holds
            .jail_names()
            .filter(|j| *j != MANUAL && valid_jail(j))
            .map(str::to_owned)
            .collect();
        let mut held: HashMap<String, HashSet<IpAddr>> = HashMap::new();
        for ip in holds.addresses() {
            if let Some(h) = holds.get(&ip) {
                for jail in holds.names(h) {
                    match held.get_mut(jail) {
                        Some(set) => set.insert(ip),
                        None => held.entry(jail.to_owned()).or_default().insert(ip),
                    };
                }
            }
        }
        drop(holds);
        let routed: HashSet<IpAddr> = owned.iter().map(|r| r.addr).collect();
        drop(owned);
        let mut plan = plan::plan(scope, &active.jails, &held, &routed, |j| known.contains(j));
        drop((held, routed, active, known));
        if plan.is_empty() {
            return Ok(out);
        }
        self.screen(&mut plan, &mut out).await?;
        if dry_run {
            out.added = plan.route;
            out.taken = flatten(plan.take);
            out.released = flatten(plan.release);
            out.removed.removed = plan.remove;
            return Ok(out);
        }

        // Holds first, routes second, as a ban does; then releases, then
        // the routes that nobody holds any more.
        let since = (self.now)();
        let mut new_holds: HashMap<IpAddr, Vec<String>> = HashMap::new();
        for (jail, addrs) in &plan.take {
            for ip in addrs {
                if ledger.hold(jail, *ip, since)? {
                    out.taken.push((jail.clone(), *ip));
                    new_holds.entry(*ip).or_default().push(jail.clone());
                }
            }
        }
        let outcomes = if plan.route.is_empty() {
            Vec::new()
        } else {
            match self.kernel.add(&plan.route, kind, self.marker).await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    for (jail, ip) in &out.taken {
                        if plan.route.binary_search(ip).is_ok() {
                            ledger.release(jail, *ip)?;
                        }
                    }
                    ledger.finish()?;
                    return Err(e.into());
                }
            }
        };
        for (ip, outcome) in plan.route.iter().zip(outcomes) {
            match outcome {
                Ok(Added::Created) => out.added.push(*ip),
                Ok(Added::Present) => {}
                Err(e) => {
                    // No route: the holds this run took on it go back.
                    for jail in new_holds.get(ip).into_iter().flatten() {
                        ledger.release(jail, *ip)?;
                    }
                    out.taken.retain(|(j, a)| {
                        a != ip || !new_holds.get(ip).is_some_and(|n| n.contains(j))
                    });
                    out.failures.0.push((*ip, e));
                }
            }
        }
        for (jail, addrs) in &plan.release {
            for ip in addrs {
                if ledger.release(jail, *ip)? {
                    out.released.push((jail.clone(), *ip));
                }
            }
            ledger.forget_jail_if_empty(jail)?;
        }
        ledger.count(Counter::Bans, out.added.len());
        ledger.count(Counter::Failures, out.failures.len());
        ledger.finish()?;
        if !plan.remove.is_empty() {
            let outcomes = self
                .kernel
                .del(&plan.remove, self.config.route_type, self.marker)
                .await?;
            out.removed = removed(plan.remove.iter().copied(), outcomes);
            tally(&mut ledger, &out.removed);
            ledger.finish()?;
        }
        Ok(out)
    }

    /// Leave out of `plan` what the guard refuses and where someone else's
    /// unicast host route is, noting them in `out`.
    async fn screen(&self, plan: &mut Plan, out: &mut Reconciled) -> Result<(), Error> {
        let additions = plan.additions();
        if additions.is_empty() {
            return Ok(());
        }
        let (local, lookups) = futures::try_join!(
            self.kernel.local_addresses(),
            self.kernel.lookup(&additions)
        )?;
        let guard = Guard::new(self.config, local);
        let mut skip = HashSet::new();
        for (ip, found) in additions.iter().zip(&lookups) {
            match guard.check(*ip, found) {
                Err(Rule::Local { index, .. }) => {
                    let name = Some(self.kernel.interface_name(index));
                    out.refused.push((*ip, Rule::Local { index, name }));
                    skip.insert(*ip);
                }
                Err(rule) => {
                    out.refused.push((*ip, rule));
                    skip.insert(*ip);
                }
                Ok(()) => {
                    if let Lookup::ForeignHost(route) = found {
                        out.conflicts.push((*ip, route.clone()));
                        skip.insert(*ip);
                    }
                }
            }
        }
        plan.drop_additions(&skip);
        Ok(())
    }
}

fn flatten(by_jail: std::collections::BTreeMap<String, Vec<IpAddr>>) -> Vec<(String, IpAddr)> {
    by_jail
        .into_iter()
        .flat_map(|(jail, addrs)| addrs.into_iter().map(move |ip| (jail.clone(), ip)))
        .collect()
}
