//! What `reconcile` has to change, worked out from three sets and nothing
//! else: the bans fail2ban has (jail -> addresses), the holds of the ledger
//! (jail -> addresses) and the addresses that have a route of ours. Pure:
//! the ban service reads the sets and applies the plan.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

/// Which jails a reconcile is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One jail: only its holds change, and only routes that then nobody
    /// holds go.
    Jail(&'a str),
    /// Every jail the ledger knows (one that holds or held something;
    /// never the manual holds of `f2b-route add` without `--jail`), with
    /// fail2ban's bans there: routes of ours that nobody holds or wants go
    /// too. Jails of fail2ban's that never used f2b-route are left alone.
    All,
}

/// The changes, each list sorted and without duplicates.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Holds to take, per jail: fail2ban bans the address there and the
    /// jail holds nothing for it.
    pub take: BTreeMap<String, Vec<IpAddr>>,
    /// Addresses fail2ban bans (in a jail in scope) that have no route of
    /// ours: the route is to be added (held or not).
    pub route: Vec<IpAddr>,
    /// Holds to release, per jail: fail2ban has no such ban (any more).
    pub release: BTreeMap<String, Vec<IpAddr>>,
    /// Routes of ours to remove: after the releases no jail holds them and
    /// no jail in scope wants them.
    pub remove: Vec<IpAddr>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.take.is_empty()
            && self.route.is_empty()
            && self.release.is_empty()
            && self.remove.is_empty()
    }

    /// Every address something is to be added for (a hold or a route):
    /// what the guard must look at.
    pub fn additions(&self) -> Vec<IpAddr> {
        let mut all: BTreeSet<IpAddr> = self.route.iter().copied().collect();
        for addrs in self.take.values() {
            all.extend(addrs);
        }
        all.into_iter().collect()
    }

    /// Leave out additions of these addresses (the guard refused them, or
    /// someone else's route is in the way).
    pub fn drop_additions(&mut self, skip: &HashSet<IpAddr>) {
        self.route.retain(|ip| !skip.contains(ip));
        for addrs in self.take.values_mut() {
            addrs.retain(|ip| !skip.contains(ip));
        }
        self.take.retain(|_, addrs| !addrs.is_empty());
    }
}

/// The plan that makes the holds of the jails in `scope` equal to `wanted`
/// (fail2ban's bans), given the ledger's `held` and the addresses `routed`
/// with a route of ours. `in_scope(jail)` says which jails a full
/// reconcile is about: those of f2b-route's (the ledger knows them), never
/// the manual holds, which are nobody's in fail2ban.
pub fn plan(
    scope: Scope<'_>,
    wanted: &BTreeMap<String, BTreeSet<IpAddr>>,
    held: &HashMap<String, HashSet<IpAddr>>,
    routed: &HashSet<IpAddr>,
    in_scope: impl Fn(&str) -> bool,
) -> Plan {
    let empty_w = BTreeSet::new();
    let empty_h = HashSet::new();
    let jails: BTreeSet<&str> = match scope {
        Scope::Jail(j) => std::iter::once(j).collect(),
        Scope::All => wanted
            .keys()
            .map(String::as_str)
            .chain(held.keys().map(String::as_str))
            .filter(|j| in_scope(j))
            .collect(),
    };
    let mut plan = Plan::default();
    let mut route = BTreeSet::new();
    let mut wanted_any: HashSet<IpAddr> = HashSet::new();
    let mut released: BTreeSet<IpAddr> = BTreeSet::new();
    for jail in &jails {
        let want = wanted.get(*jail).unwrap_or(&empty_w);
        let have = held.get(*jail).unwrap_or(&empty_h);
        let take: Vec<IpAddr> = want
            .iter()
            .filter(|ip| !have.contains(ip))
            .copied()
            .collect();
        if !take.is_empty() {
            plan.take.insert((*jail).to_owned(), take);
        }
        route.extend(want.iter().filter(|ip| !routed.contains(ip)));
        wanted_any.extend(want);
        let mut release: Vec<IpAddr> = have
            .iter()
            .filter(|ip| !want.contains(ip))
            .copied()
            .collect();
        if !release.is_empty() {
            release.sort();
            released.extend(&release);
            plan.release.insert((*jail).to_owned(), release);
        }
    }
    plan.route = route.into_iter().collect();
    // Who still holds an address once the releases are done.
    let still_held = |ip: &IpAddr| {
        held.iter().any(|(jail, addrs)| {
            addrs.contains(ip)
                && plan
                    .release
                    .get(jail)
                    .is_none_or(|r| r.binary_search(ip).is_err())
        })
    };
    let mut remove: BTreeSet<IpAddr> = released
        .iter()
        .filter(|ip| routed.contains(ip) && !wanted_any.contains(ip) && !still_held(ip))
        .copied()
        .collect();
    if scope == Scope::All {
        // Routes of ours that no jail holds and fail2ban does not ban:
        // leftovers of a crash, or of a ledger that was lost.
        remove.extend(
            routed
                .iter()
                .filter(|ip| !wanted_any.contains(ip) && !held.values().any(|h| h.contains(ip))),
        );
    }
    plan.remove = remove.into_iter().collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn jails(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<IpAddr>> {
        list.iter()
            .map(|(j, a)| (j.to_string(), a.iter().map(|s| ip(s)).collect()))
            .collect()
    }

    fn holds(list: &[(&str, &[&str])]) -> HashMap<String, HashSet<IpAddr>> {
        list.iter()
            .map(|(j, a)| (j.to_string(), a.iter().map(|s| ip(s)).collect()))
            .collect()
    }

    fn set(a: &[&str]) -> HashSet<IpAddr> {
        a.iter().map(|s| ip(s)).collect()
    }

    fn ips(a: &[&str]) -> Vec<IpAddr> {
        a.iter().map(|s| ip(s)).collect()
    }

    fn fail2ban_jail(j: &str) -> bool {
        !j.starts_with('@')
    }

    #[test]
    fn nothing_to_do_when_equal() {
        let w = jails(&[("sshd", &["198.51.100.1", "2001:db8::1"])]);
        let h = holds(&[("sshd", &["198.51.100.1", "2001:db8::1"])]);
        let r = set(&["198.51.100.1", "2001:db8::1"]);
        for scope in [Scope::All, Scope::Jail("sshd")] {
            let p = plan(scope, &w, &h, &r, fail2ban_jail);
            assert!(p.is_empty(), "{scope:?}: {p:?}");
        }
    }

    #[test]
    fn missing_routes_and_holds_are_added() {
        // .1 held but its route deleted behind our back; .2 not held at all.
        let w = jails(&[("sshd", &["198.51.100.1", "198.51.100.2"])]);
        let h = holds(&[("sshd", &["198.51.100.1"])]);
        let p = plan(Scope::Jail("sshd"), &w, &h, &set(&[]), fail2ban_jail);
        assert_eq!(p.route, ips(&["198.51.100.1", "198.51.100.2"]));
        assert_eq!(p.take["sshd"], ips(&["198.51.100.2"]));
        assert!(p.release.is_empty() && p.remove.is_empty());
        assert_eq!(p.additions(), ips(&["198.51.100.1", "198.51.100.2"]));
    }

    #[test]
    fn a_route_another_jail_made_gets_a_hold_only() {
        let w = jails(&[("sshd", &["198.51.100.1"])]);
        let h = holds(&[("recidive", &["198.51.100.1"])]);
        let r = set(&["198.51.100.1"]);
        let p = plan(Scope::Jail("sshd"), &w, &h, &r, fail2ban_jail);
        assert_eq!(p.take["sshd"], ips(&["198.51.100.1"]));
        assert!(p.route.is_empty() && p.release.is_empty() && p.remove.is_empty());
    }

    #[test]
    fn released_routes_go_unless_another_jail_holds_or_wants_them() {
        let w = jails(&[("sshd", &[]), ("recidive", &["198.51.100.3"])]);
        let h = holds(&[
            ("sshd", &["198.51.100.1", "198.51.100.2", "198.51.100.3"]),
            ("other", &["198.51.100.2"]),
        ]);
        let r = set(&["198.51.100.1", "198.51.100.2", "198.51.100.3"]);
        let p = plan(Scope::Jail("sshd"), &w, &h, &r, fail2ban_jail);
        assert_eq!(
            p.release["sshd"],
            ips(&["198.51.100.1", "198.51.100.2", "198.51.100.3"])
        );
        // .2: "other" still holds it. .3: out of scope, recidive's want
        // does not count, and nobody holds it any more: it goes (the
        // recidive reconcile adds it back).
        assert_eq!(p.remove, ips(&["198.51.100.1", "198.51.100.3"]));
        assert!(p.take.is_empty());

        // All jails: recidive takes .3, so its route stays; "other" is not
        // in fail2ban, so its hold on .2 goes and with it the route.
        let p = plan(Scope::All, &w, &h, &r, fail2ban_jail);
        assert_eq!(p.take["recidive"], ips(&["198.51.100.3"]));
        assert_eq!(p.release["other"], ips(&["198.51.100.2"]));
        assert_eq!(p.remove, ips(&["198.51.100.1", "198.51.100.2"]));
        assert!(p.route.is_empty());
    }

    #[test]
    fn orphan_routes_go_in_a_full_reconcile_only() {
        let w = jails(&[("sshd", &["198.51.100.1"])]);
        let h = holds(&[("sshd", &["198.51.100.1"])]);
        let r = set(&["198.51.100.1", "198.51.100.9"]);
        assert!(plan(Scope::Jail("sshd"), &w, &h, &r, fail2ban_jail).is_empty());
        let p = plan(Scope::All, &w, &h, &r, fail2ban_jail);
        assert_eq!(p.remove, ips(&["198.51.100.9"]));
        assert!(p.take.is_empty() && p.release.is_empty() && p.route.is_empty());
    }

    #[test]
    fn manual_holds_are_nobodys_business() {
        let w = jails(&[("sshd", &[])]);
        let h = holds(&[("@manual", &["198.51.100.5"])]);
        let r = set(&["198.51.100.5"]);
        for scope in [Scope::All, Scope::Jail("sshd")] {
            assert!(plan(scope, &w, &h, &r, fail2ban_jail).is_empty());
        }
    }

    #[test]
    fn holds_without_routes_that_fail2ban_dropped_are_released_not_removed() {
        let w = jails(&[("sshd", &[])]);
        let h = holds(&[("sshd", &["198.51.100.1"])]);
        let p = plan(Scope::Jail("sshd"), &w, &h, &set(&[]), fail2ban_jail);
        assert_eq!(p.release["sshd"], ips(&["198.51.100.1"]));
        assert!(p.remove.is_empty());
    }

    #[test]
    fn dropped_additions_leave_the_rest() {
        let w = jails(&[("sshd", &["198.51.100.1", "198.51.100.2"])]);
        let mut p = plan(Scope::All, &w, &holds(&[]), &set(&[]), fail2ban_jail);
        p.drop_additions(&set(&["198.51.100.1"]));
        assert_eq!(p.route, ips(&["198.51.100.2"]));
        assert_eq!(p.take["sshd"], ips(&["198.51.100.2"]));
        p.drop_additions(&set(&["198.51.100.2"]));
        assert!(p.is_empty());
    }

    #[test]
    fn large_sets_with_nothing_to_do_are_cheap() {
        let addrs: BTreeSet<IpAddr> = (0..100_000u32)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 + i)))
            .collect();
        let w: BTreeMap<String, BTreeSet<IpAddr>> = [("sshd".to_string(), addrs.clone())].into();
        let h: HashMap<String, HashSet<IpAddr>> =
            [("sshd".to_string(), addrs.iter().copied().collect())].into();
        let r: HashSet<IpAddr> = addrs.iter().copied().collect();
        assert!(plan(Scope::All, &w, &h, &r, fail2ban_jail).is_empty());
    }
}
