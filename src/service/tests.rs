//! The service against a fake kernel and a real ledger in a temp dir.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

#[derive(Default)]
struct Fake {
    /// Our routes, as the kernel holds them.
    routes: RefCell<BTreeMap<IpAddr, RouteKind>>,
    /// What lookups find for addresses without a route of ours.
    found: HashMap<IpAddr, Lookup>,
    local: Vec<LocalAddr>,
    /// Adds the kernel refuses (EPERM).
    refuse_add: HashSet<IpAddr>,
}

impl Routes for Fake {
    async fn local_addresses(&self) -> Result<Vec<LocalAddr>, KernelError> {
        Ok(self.local.clone())
    }
    async fn lookup(&self, addrs: &[IpAddr]) -> Result<Vec<Lookup>, KernelError> {
        let routes = self.routes.borrow();
        Ok(addrs
            .iter()
            .map(|ip| match routes.get(ip) {
                Some(_) => Lookup::Dropped,
                None => self.found.get(ip).cloned().unwrap_or(Lookup::Clear),
            })
            .collect())
    }
    async fn add(
        &self,
        addrs: &[IpAddr],
        kind: RouteKind,
        _: Marker,
    ) -> Result<Vec<Result<Added, io::Error>>, KernelError> {
        let mut routes = self.routes.borrow_mut();
        Ok(addrs
            .iter()
            .map(|ip| {
                if self.refuse_add.contains(ip) {
                    Err(io::Error::from_raw_os_error(nix::libc::EPERM))
                } else if routes.insert(*ip, kind).is_some() {
                    Ok(Added::Present)
                } else {
                    Ok(Added::Created)
                }
            })
            .collect())
    }
    async fn del(
        &self,
        addrs: &[IpAddr],
        _: RouteKind,
        _: Marker,
    ) -> Result<Vec<Result<Deleted, io::Error>>, KernelError> {
        let mut routes = self.routes.borrow_mut();
        Ok(addrs
            .iter()
            .map(|ip| Ok(gone(routes.remove(ip).is_some())))
            .collect())
    }
    async fn del_listed(
        &self,
        listed: &[OwnedRoute],
        _: Marker,
    ) -> Result<Vec<Result<Deleted, io::Error>>, KernelError> {
        let mut routes = self.routes.borrow_mut();
        Ok(listed
            .iter()
            .map(|r| Ok(gone(routes.remove(&r.addr).is_some())))
            .collect())
    }
    fn interface_name(&self, index: u32) -> String {
        format!("eth{index}")
    }
    async fn owned_each(
        &self,
        _: Marker,
        mut each: impl FnMut(OwnedRoute),
    ) -> Result<(), KernelError> {
        for (addr, kind) in self.routes.borrow().iter() {
            each(OwnedRoute {
                addr: *addr,
                kind: *kind,
            });
        }
        Ok(())
    }
}

fn gone(removed: bool) -> Deleted {
    if removed {
        Deleted::Removed
    } else {
        Deleted::Absent
    }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn state(name: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("f2b-route-service-{}", std::process::id()));
    let _ = fs::create_dir(&base);
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    let d = base.join(name);
    let _ = fs::remove_dir_all(&d);
    d
}

fn addrs(n: u32) -> Vec<IpAddr> {
    (0..n)
        .map(|i| {
            IpAddr::V4(std::net::Ipv4Addr::from(
                u32::from(std::net::Ipv4Addr::new(198, 18, 0, 1)) + i,
            ))
        })
        .collect()
}

fn holders(dir: &Path, ip: IpAddr) -> Vec<String> {
    let mut l = Ledger::open(dir, Access::Read).unwrap();
    let all = l.all().unwrap();
    all.get(&ip)
        .map(|h| all.names(h).map(str::to_owned).collect())
        .unwrap_or_default()
}

const NOW: u64 = 1_000_000;

/// A bulk ban whose holds cannot be written takes back the routes it made,
/// except one another jail holds (its route had gone behind its back, and
/// this run put it back).
#[test]
fn rollback_spares_routes_other_jails_hold() {
    let dir = state("rollback");
    let config = Config::default();
    let kernel = Fake::default();
    let mut bans = Bans::new(&kernel, &config, &dir);
    bans.now = || NOW;
    let all = addrs(600);
    let x = all[7];
    run(bans.ban("a", &[x], RouteKind::Blackhole)).unwrap();
    kernel.routes.borrow_mut().clear();
    // Jail b's anchor of this second is a directory: its first hold fails.
    fs::create_dir_all(dir.join(format!("holds/b/.t{NOW}"))).unwrap();
    let err = run(bans.ban("b", &all, RouteKind::Blackhole)).unwrap_err();
    assert!(matches!(err, Error::Ledger(_)), "{err}");
    let left: Vec<IpAddr> = kernel.routes.borrow().keys().copied().collect();
    assert_eq!(left, vec![x], "only the route jail a holds stays");
    assert_eq!(holders(&dir, x), vec!["a"]);
    assert!(holders(&dir, all[0]).is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_small_ban_whose_hold_fails_adds_nothing() {
    let dir = state("small");
    let config = Config::default();
    let kernel = Fake::default();
    let mut bans = Bans::new(&kernel, &config, &dir);
    bans.now = || NOW;
    fs::create_dir_all(dir.join(format!("holds/b/.t{NOW}"))).unwrap();
    assert!(run(bans.ban("b", &addrs(3), RouteKind::Blackhole)).is_err());
    assert!(kernel.routes.borrow().is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_refused_add_takes_its_hold_back() {
    let dir = state("refused-add");
    let config = Config::default();
    let a = addrs(3);
    let kernel = Fake {
        refuse_add: [a[1]].into(),
        ..Fake::default()
    };
    let bans = Bans::new(&kernel, &config, &dir);
    let banned = run(bans.ban("sshd", &a, RouteKind::Blackhole)).unwrap();
    assert_eq!(banned.created.len(), 2);
    assert_eq!(banned.failures.len(), 1);
    assert!(matches!(
        banned.failures.into_result("add"),
        Err(Error::Change { addr, count: 1, .. }) if addr == a[1]
    ));
    assert_eq!(holders(&dir, a[0]), vec!["sshd"]);
    assert!(holders(&dir, a[1]).is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn holds_keep_routes_until_the_last_jail_lets_go() {
    let dir = state("holds");
    let config = Config::default();
    let kernel = Fake::default();
    let bans = Bans::new(&kernel, &config, &dir);
    let a = addrs(2);
    run(bans.ban("sshd", &a, RouteKind::Blackhole)).unwrap();
    let again = run(bans.ban("recidive", &a[..1], RouteKind::Blackhole)).unwrap();
    assert_eq!(again.present, vec![(a[0], true)]);
    let out = run(bans.unban(Some("sshd"), &a)).unwrap();
    assert_eq!(out.kept, vec![a[0]]);
    assert_eq!(out.routes.removed, vec![a[1]]);
    let out = run(bans.flush_jail("recidive")).unwrap();
    assert_eq!(out.routes.removed, vec![a[0]]);
    assert!(kernel.routes.borrow().is_empty());
    assert!(!dir.join("holds/recidive").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_guard_refuses_before_anything_changes() {
    let dir = state("guard");
    let config = Config {
        protect: vec!["203.0.113.0/24".parse().unwrap()],
        ..Config::default()
    };
    let local_route = RouteDesc {
        kind: "local",
        prefix: "198.51.100.128/26".parse().unwrap(),
        protocol: 2,
        metric: 0,
        table: 255,
    };
    let anyip: IpAddr = "198.51.100.130".parse().unwrap();
    let kernel = Fake {
        found: [(anyip, Lookup::Local(local_route))].into(),
        ..Fake::default()
    };
    let bans = Bans::new(&kernel, &config, &dir);
    let ok: IpAddr = "198.51.100.7".parse().unwrap();
    let err = run(bans.ban(
        "sshd",
        &[ok, anyip, "203.0.113.5".parse().unwrap()],
        RouteKind::Blackhole,
    ))
    .unwrap_err();
    match &err {
        Error::Refused(list) => assert_eq!(list.len(), 2),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("local 198.51.100.128/26"), "{err}");
    assert!(err.to_string().contains("(and 1 more)"), "{err}");
    assert!(kernel.routes.borrow().is_empty());
    // Nothing held; the refusals are counted.
    assert!(Ledger::open(&dir, Access::Read)
        .unwrap()
        .all()
        .unwrap()
        .is_empty());
    let counts = bans.counters().unwrap();
    assert_eq!(counts.get(Counter::Refusals), 2);
    assert_eq!(counts.get(Counter::Bans), 0);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn counters_count_what_was_done() {
    let dir = state("counters");
    let config = Config::default();
    let a = addrs(3);
    let kernel = Fake {
        refuse_add: [a[2]].into(),
        ..Fake::default()
    };
    let bans = Bans::new(&kernel, &config, &dir);
    run(bans.ban("sshd", &a, RouteKind::Blackhole)).unwrap();
    run(bans.unban(Some("sshd"), &a[..1])).unwrap();
    run(bans.flush_all()).unwrap();
    let c = bans.counters().unwrap();
    let got: Vec<u64> = Counter::ALL.iter().map(|k| c.get(*k)).collect();
    // bans, unbans, refusals, conflicts, failures
    assert_eq!(got, vec![2, 2, 0, 0, 1]);
    assert!(c.since > 0);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn repair_mends_a_crash_but_not_a_lost_ledger() {
    let dir = state("repair");
    let config = Config::default();
    let kernel = Fake::default();
    let bans = Bans::new(&kernel, &config, &dir);
    let a = addrs(4);
    run(bans.ban("sshd", &a[..2], RouteKind::Blackhole)).unwrap();
    // A crash's leftovers: a route without hold, a hold without route.
    kernel
        .routes
        .borrow_mut()
        .insert(a[2], RouteKind::Blackhole);
    kernel.routes.borrow_mut().remove(&a[1]);
    let out = run(bans.repair()).unwrap();
    assert_eq!(out.stale, vec![a[1]]);
    assert_eq!(out.orphans.removed, vec![a[2]]);
    assert_eq!((out.held, out.lost), (1, 0));
    assert_eq!(
        kernel.routes.borrow().keys().copied().collect::<Vec<_>>(),
        vec![a[0]]
    );

    // The state dir wiped: the ledger holds nothing while routes exist.
    // Repair says so and leaves every route (fail-closed).
    fs::remove_dir_all(&dir).unwrap();
    kernel
        .routes
        .borrow_mut()
        .insert(a[3], RouteKind::Unreachable);
    let out = run(bans.repair()).unwrap();
    assert_eq!(out.lost, 2);
    assert!(out.orphans.removed.is_empty());
    assert_eq!(kernel.routes.borrow().len(), 2);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn preflight_changes_nothing() {
    let dir = state("preflight");
    let config = Config::default();
    let kernel = Fake::default();
    let bans = Bans::new(&kernel, &config, &dir);
    let p = run(bans.preflight()).unwrap();
    assert!(!p.state_exists);
    assert!(!dir.exists());
}

/// fail2ban restarting after the state dir was wiped: jail after jail
/// starts (each start repairs) and restores its bans. No repair may remove
/// a ban of a jail that has not restored yet; a crash's leftovers, later,
/// still go.
#[test]
fn a_lost_ledgers_bans_survive_jail_by_jail_restores() {
    let dir = state("lost-restore");
    let config = Config::default();
    let kernel = Fake::default();
    let bans = Bans::new(&kernel, &config, &dir);
    let a = addrs(4);
    run(bans.ban("sshd", &a[..2], RouteKind::Blackhole)).unwrap();
    run(bans.ban("recidive", &a[2..3], RouteKind::Blackhole)).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    // sshd starts first and restores one of its bans.
    let out = run(bans.repair()).unwrap();
    assert_eq!((out.lost, out.orphans.removed.len()), (3, 0));
    run(bans.ban("sshd", &a[..1], RouteKind::Blackhole)).unwrap();
    // recidive starts: its ban and sshd's other one stay.
    let out = run(bans.repair()).unwrap();
    assert_eq!((out.held, out.lost, out.orphans.removed.len()), (1, 2, 0));
    assert_eq!(kernel.routes.borrow().len(), 3);
    run(bans.ban("recidive", &a[2..3], RouteKind::Blackhole)).unwrap();
    // sshd unbans the one it never restored: the route goes.
    run(bans.unban(Some("sshd"), &a[1..2])).unwrap();
    let out = run(bans.repair()).unwrap();
    assert_eq!((out.held, out.lost), (2, 0));
    // Later a run dies between releasing holds and removing routes: the
    // next repair removes those routes.
    {
        let mut ledger = Ledger::open(&dir, Access::Write).unwrap();
        ledger.release("sshd", a[0]).unwrap();
        ledger.finish().unwrap();
    }
    let out = run(bans.repair()).unwrap();
    assert_eq!(out.orphans.removed, vec![a[0]]);
    assert_eq!(
        kernel.routes.borrow().keys().copied().collect::<Vec<_>>(),
        vec![a[2]]
    );
    fs::remove_dir_all(&dir).unwrap();
}

fn active(bans: &[(&str, &[IpAddr])]) -> crate::fail2ban::Active {
    let mut a = crate::fail2ban::Active::new(crate::fail2ban::Origin::Database("/test".into()));
    for (jail, addrs) in bans {
        a.jails.entry(jail.to_string()).or_default();
        for ip in *addrs {
            a.ban(jail, &ip.to_string());
        }
    }
    a
}

fn reconcile(
    bans: &Bans<'_, Fake>,
    scope: crate::plan::Scope<'_>,
    dry_run: bool,
    wanted: &[(&str, &[IpAddr])],
) -> Reconciled {
    let a = active(wanted);
    run(bans.reconcile(scope, RouteKind::Blackhole, dry_run, move || Ok(a))).unwrap()
}

/// Routes deleted behind fail2ban's back come back; holds fail2ban no
/// longer has go, with their routes; another jail's hold keeps a route;
/// a second run has nothing to do.
#[test]
fn reconcile_adds_what_is_missing_and_releases_the_rest() {
    use crate::plan::Scope;
    let dir = state("reconcile");
    let config = Config::default();
    let kernel = Fake::default();
    let bans = Bans::new(&kernel, &config, &dir);
    let a = addrs(5);
    run(bans.ban("sshd", &a[..3], RouteKind::Blackhole)).unwrap();
    run(bans.ban("recidive", &a[2..3], RouteKind::Blackhole)).unwrap();
    kernel.routes.borrow_mut().remove(&a[0]);
    // fail2ban: sshd bans a0 (route gone), a1 and a4 (never held), not a2.
    let wanted: &[(&str, &[IpAddr])] = &[("sshd", &[a[0], a[1], a[4]]), ("recidive", &[a[2]])];
    let out = reconcile(&bans, Scope::Jail("sshd"), false, wanted);
    assert_eq!(out.added, vec![a[0], a[4]]);
    assert_eq!(out.taken, vec![("sshd".to_string(), a[4])]);
    assert_eq!(out.released, vec![("sshd".to_string(), a[2])]);
    assert!(out.removed.removed.is_empty(), "recidive still holds a2");
    assert_eq!(holders(&dir, a[2]), vec!["recidive"]);
    assert_eq!(
        kernel.routes.borrow().keys().copied().collect::<Vec<_>>(),
        vec![a[0], a[1], a[2], a[4]]
    );
    assert!(!reconcile(&bans, Scope::All, false, wanted).changed());
    // fail2ban drops a2 from recidive: its route goes.
    let out = reconcile(&bans, Scope::All, false, &[("sshd", &[a[0], a[1], a[4]])]);
    assert_eq!(out.released, vec![("recidive".to_string(), a[2])]);
    assert_eq!(out.removed.removed, vec![a[2]]);
    fs::remove_dir_all(&dir).unwrap();
}

/// A dry run reports and changes nothing, in the kernel or the ledger.
#[test]
fn reconcile_dry_run_changes_nothing() {
    use crate::plan::Scope;
    let dir = state("reconcile-dry");
    let config = Config::default();
    let kernel = Fake::default();
    let bans = Bans::new(&kernel, &config, &dir);
    let a = addrs(4);
    run(bans.ban("sshd", &a[..2], RouteKind::Blackhole)).unwrap();
    // web used f2b-route once: a full reconcile is about it.
    run(bans.ban("web", &a[3..], RouteKind::Blackhole)).unwrap();
    run(bans.unban(Some("web"), &a[3..])).unwrap();
    kernel
        .routes
        .borrow_mut()
        .insert(a[2], RouteKind::Blackhole); // an orphan
    let before: Vec<_> = kernel.routes.borrow().keys().copied().collect();
    let out = reconcile(
        &bans,
        Scope::All,
        true,
        &[("sshd", &[a[1]]), ("web", &[a[0]])],
    );
    assert!(out.dry_run && out.changed());
    assert_eq!(out.taken, vec![("web".to_string(), a[0])]);
    assert_eq!(out.released, vec![("sshd".to_string(), a[0])]);
    assert_eq!(out.removed.removed, vec![a[2]]);
    assert_eq!(
        kernel.routes.borrow().keys().copied().collect::<Vec<_>>(),
        before
    );
    assert_eq!(holders(&dir, a[0]), vec!["sshd"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// A guarded address fail2ban bans gets no route and no hold; the rest
/// goes ahead.
#[test]
fn reconcile_never_adds_a_guarded_address() {
    use crate::plan::Scope;
    let dir = state("reconcile-guard");
    let config = Config {
        protect: vec!["198.18.0.1/32".parse().unwrap()],
        ..Config::default()
    };
    let kernel = Fake::default();
    let bans = Bans::new(&kernel, &config, &dir);
    let a = addrs(2);
    let out = reconcile(&bans, Scope::Jail("sshd"), false, &[("sshd", &a)]);
    assert_eq!(out.refused.len(), 1);
    assert_eq!(out.refused[0].0, a[0]);
    assert_eq!(out.added, vec![a[1]]);
    assert_eq!(
        kernel.routes.borrow().keys().copied().collect::<Vec<_>>(),
        vec![a[1]]
    );
    assert!(holders(&dir, a[0]).is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

/// fail2ban that cannot be read changes nothing.
#[test]
fn reconcile_without_a_source_changes_nothing() {
    use crate::plan::Scope;
    let dir = state("reconcile-nosource");
    let config = Config::default();
    let kernel = Fake::default();
    let bans = Bans::new(&kernel, &config, &dir);
    let a = addrs(1);
    run(bans.ban("sshd", &a, RouteKind::Blackhole)).unwrap();
    let err = run(bans.reconcile(Scope::All, RouteKind::Blackhole, false, || {
        crate::fail2ban::db::read(std::path::Path::new(":memory:"), None, 0)
    }))
    .unwrap_err();
    assert!(matches!(err, Error::Fail2ban(_)), "{err}");
    assert_eq!(holders(&dir, a[0]), vec!["sshd"]);
    assert_eq!(kernel.routes.borrow().len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}
