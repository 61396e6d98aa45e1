//! `f2b-route mirror` against the real kernel and the real nft, as root, in
//! network namespaces of its own: the sets follow the routes a BGP daemon
//! would install (here put there with `ip route`), and only those.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The elements of both sets, read with `nft -j` (the witness).
#[track_caller]
fn set(ns: &Netns) -> BTreeSet<String> {
    try_set(ns).unwrap_or_else(|e| panic!("{e}"))
}

/// The same, or why not (the table may not be made yet).
fn try_set(ns: &Netns) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for name in ["ban4", "ban6"] {
        let r = nft_out(ns, &["-j", "list", "set", "inet", "f2b-route", name]);
        if !r.status.success() {
            return Err(format!(
                "nft list set {name}: {}",
                String::from_utf8_lossy(&r.stderr)
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("nft JSON");
        for item in v["nftables"].as_array().unwrap() {
            if let Some(elems) = item["set"]["elem"].as_array() {
                out.extend(elems.iter().map(|e| e.as_str().unwrap().to_string()));
            }
        }
    }
    Ok(out)
}

fn nft(ns: &Netns, script: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f: {script}");
}

fn rules(ns: &Netns) -> String {
    let r = nft_out(ns, &["list", "chain", "inet", "f2b-route", "pre"]);
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// `nft ARGS` in the namespace.
fn nft_out(ns: &Netns, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft"])
        .args(args)
        .output()
        .expect("nft")
}

fn addrs(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Waits up to `secs` for the sets to be `want`.
#[track_caller]
fn wait_for_set(ns: &Netns, want: &BTreeSet<String>, secs: u64) -> Duration {
    let start = Instant::now();
    loop {
        let got = try_set(ns).unwrap_or_default();
        if &got == want {
            return start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(secs) {
            panic!(
                "sets are not what the routes say after {secs} s: {} elements, want {} (e.g. missing {:?}, extra {:?})",
                got.len(),
                want.len(),
                want.difference(&got).take(3).collect::<Vec<_>>(),
                got.difference(want).take(3).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `f2b-route mirror`, stopped (SIGKILL) on drop.
struct Running(Child);

impl Running {
    fn start(ns: &Netns, extra: &[&str]) -> Running {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name])
            .arg(bin())
            .args(["--config", &ns.config_path().display().to_string()])
            .args(["--state-dir", &ns.state_dir().display().to_string()])
            .arg("mirror")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Running(cmd.spawn().expect("mirror"))
    }

    fn signal(&mut self, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
        self.send(sig);
        self.0.wait().unwrap()
    }

    fn send(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Stops it (SIGTERM) and returns what it said on stderr.
    fn stop(&mut self) -> String {
        use std::io::Read;
        assert!(self.signal(nix::sys::signal::Signal::SIGTERM).success());
        let mut err = String::new();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        err
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn once_copies_exactly_the_bgp_daemons_host_routes() {
    let ns = Netns::with_veth();
    // What BIRD exports (render bird): blackholes, protocol 12, table 252.
    ns.ipl("route add blackhole 198.51.100.7 table 252 proto 12 metric 32");
    ns.ipl("route add unreachable 198.51.100.8 table 252 proto 12 metric 32");
    ns.ipl("-6 route add blackhole 2001:db8::7 table 252 proto 12 metric 32");
    // Not copied: another protocol, another table, a prefix, a forwarding route.
    ns.ipl("route add blackhole 198.51.100.9 table 252 proto 13");
    ns.ipl("route add blackhole 198.51.100.10 proto 12");
    ns.ipl("route add blackhole 198.51.100.0/25 table 252 proto 12");
    ns.ipl("route add 203.0.113.50 dev v0 table 252 proto 12");
    let want = addrs(&["198.51.100.7", "198.51.100.8", "2001:db8::7"]);
    ns.f2b(&["mirror", "--once"]).ok();
    assert_eq!(set(&ns), want);
    let r = rules(&ns);
    assert_eq!(r.matches("drop").count(), 2, "{r}");
    // Again: nothing to change, the rules not doubled.
    let r = ns.f2b(&["mirror", "--once"]).ok();
    assert!(!r.stderr.contains("added"), "{r}");
    assert_eq!(set(&ns), want);
    assert_eq!(rules(&ns).matches("drop").count(), 2);
    // The FRR firewall's routes: main table, protocol 186, by flag.
    ns.ipl("route add blackhole 203.0.113.77 proto 186 metric 20");
    ns.f2b(&["mirror", "--once", "--table", "main", "--protocol", "186"])
        .ok();
    assert_eq!(set(&ns), addrs(&["203.0.113.77"]));
    // And by config.
    ns.write_config("[mirror]\ntable = \"main\"\nprotocol = 186\n");
    ns.ipl("route del blackhole 203.0.113.77 proto 186 metric 20");
    ns.f2b(&["mirror", "--once"]).ok();
    assert!(set(&ns).is_empty());
}

#[test]
fn an_existing_table_is_adopted() {
    let ns = Netns::new();
    nft(
        &ns,
        "table inet f2b-route {\n set ban4 { type ipv4_addr; elements = { 198.51.100.99 } }\n\
         chain pre { type filter hook prerouting priority raw; policy accept; ip saddr @ban4 counter drop; ip saddr @ban4 counter drop; }\n}\n",
    );
    ns.ipl("route add blackhole 198.51.100.7 table 252 proto 12");
    ns.f2b(&["mirror", "--once"]).ok();
    assert_eq!(set(&ns), addrs(&["198.51.100.7"]));
    assert_eq!(rules(&ns).matches("drop").count(), 2, "{}", rules(&ns));
}

#[test]
fn following_routes_restarts_and_kill_9() {
    let ns = Netns::new();
    ns.ipl("route add blackhole 198.51.100.7 table 252 proto 12");
    let mut m = Running::start(&ns, &[]);
    wait_for_set(&ns, &addrs(&["198.51.100.7"]), 10);
    ns.ipl("route add blackhole 198.51.100.8 table 252 proto 12");
    ns.ipl("-6 route add blackhole 2001:db8::8 table 252 proto 12");
    ns.ipl("route del blackhole 198.51.100.7 table 252 proto 12");
    let took = wait_for_set(&ns, &addrs(&["198.51.100.8", "2001:db8::8"]), 10);
    eprintln!("a route change reached the set in {took:?}");
    // Killed: the sets stay as they are (no unban) ...
    m.signal(nix::sys::signal::Signal::SIGKILL);
    let before = set(&ns);
    ns.ipl("route del blackhole 198.51.100.8 table 252 proto 12");
    assert_eq!(set(&ns), before);
    // ... and the next start resyncs.
    let mut m = Running::start(&ns, &[]);
    wait_for_set(&ns, &addrs(&["2001:db8::8"]), 10);
    // Stopped: the default leaves the sets; --flush-on-exit empties them.
    assert!(m.signal(nix::sys::signal::Signal::SIGTERM).success());
    assert_eq!(set(&ns), addrs(&["2001:db8::8"]));
    let mut m = Running::start(&ns, &["--flush-on-exit"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(m.signal(nix::sys::signal::Signal::SIGTERM).success());
    assert!(set(&ns).is_empty());
}

#[test]
fn a_ban_that_turns_into_a_forwarding_route_leaves_the_set() {
    // FRR on the firewall whose discard route went: zebra replaces each
    // blackhole by a route that forwards, announced as a new route only.
    let ns = Netns::with_veth();
    ns.ipl("route add blackhole 203.0.113.77 proto 186 metric 20");
    ns.ipl("route add blackhole 203.0.113.78 proto 186 metric 20");
    let mut m = Running::start(&ns, &["--table", "main", "--protocol", "186"]);
    wait_for_set(&ns, &addrs(&["203.0.113.77", "203.0.113.78"]), 10);
    ns.ipl("route replace 203.0.113.77 dev v0 proto 186 metric 20");
    wait_for_set(&ns, &addrs(&["203.0.113.78"]), 10);
    // Its deletion changes nothing; a blackhole again is a ban again.
    ns.ipl("route del 203.0.113.77 dev v0 proto 186 metric 20");
    ns.ipl("route add blackhole 203.0.113.77 proto 186 metric 20");
    wait_for_set(&ns, &addrs(&["203.0.113.77", "203.0.113.78"]), 10);
    let err = m.stop();
    assert!(
        err.contains("1 banned address's route of protocol 186 in table 254 now forward"),
        "{err}"
    );
}

#[test]
fn sighup_adopts_the_table_again_after_nftables_reloaded() {
    let ns = Netns::new();
    ns.ipl("route add blackhole 198.51.100.7 table 252 proto 12");
    let mut m = Running::start(&ns, &[]);
    wait_for_set(&ns, &addrs(&["198.51.100.7"]), 10);
    // nftables.service's reload: `flush ruleset`, then its own rules.
    nft(&ns, "flush ruleset\n");
    assert!(try_set(&ns).is_err());
    m.send(nix::sys::signal::Signal::SIGHUP);
    wait_for_set(&ns, &addrs(&["198.51.100.7"]), 10);
    assert_eq!(rules(&ns).matches("drop").count(), 2, "{}", rules(&ns));
    // And it still follows the routes.
    ns.ipl("route add blackhole 198.51.100.8 table 252 proto 12");
    wait_for_set(&ns, &addrs(&["198.51.100.7", "198.51.100.8"]), 10);
    let err = m.stop();
    assert!(err.contains("table adopted again (SIGHUP)"), "{err}");
}

#[test]
fn a_hundred_thousand_routes_at_once_lose_nothing() {
    let ns = Netns::new();
    let _m = Running::start(&ns, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let list = bench_range(0, 100_000);
    let batch: String = list
        .iter()
        .map(|a| format!("route add blackhole {a} table 252 proto 12\n"))
        .collect();
    let file = ns.dir.join("batch");
    std::fs::write(&file, batch).unwrap();
    ns.ip(&["-batch", &file.display().to_string()]);
    let want: BTreeSet<String> = list.into_iter().collect();
    let took = wait_for_set(&ns, &want, 60);
    eprintln!("100,000 routes reached the set in {took:?}");
    let dels: String = want
        .iter()
        .map(|a| format!("route del blackhole {a} table 252 proto 12\n"))
        .collect();
    std::fs::write(&file, dels).unwrap();
    ns.ip(&["-batch", &file.display().to_string()]);
    wait_for_set(&ns, &BTreeSet::new(), 60);
}

/// `render nftables` and `render bird`, fed to the real checkers.
#[test]
fn rendered_firewall_configs_pass_the_real_checkers() {
    let ns = Netns::new();
    ns.write_config(
        "protect = [\"198.51.100.0/24\", \"2001:db8:1::/48\"]\n[mirror]\ntable = 300\n",
    );
    let r = ns.f2b(&["render", "nftables"]).ok();
    let file = ns.dir.join("f2b-route.nft");
    std::fs::write(&file, &r.stdout).unwrap();
    let check = Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft", "-c", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nft -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // What nft loads is what mirror keeps: mirror adopts it unchanged.
    nft(&ns, &r.stdout);
    ns.f2b(&["mirror", "--once"]).ok();
    assert_eq!(rules(&ns).matches("drop").count(), 2);

    let r = ns
        .f2b(&[
            "render",
            "bird",
            "--local-as",
            "64501",
            "--peer-as",
            "64500",
            "--peer",
            "198.51.100.6",
        ])
        .ok();
    for line in [
        "kernel table 300;",
        "if net ~ [ 198.51.100.0/24+ ] then reject;",
        "if net ~ [ 2001:db8:1::/48+ ] then reject;",
        "neighbor 198.51.100.6 as 64500;",
        "dest = RTD_BLACKHOLE;",
    ] {
        assert!(r.stdout.contains(line), "missing {line:?}\n{}", r.stdout);
    }
    let file = ns.dir.join("bird.conf");
    std::fs::write(&file, &r.stdout).unwrap();
    let check = Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&file)
        .output()
        .expect("bird");
    assert!(
        check.status.success(),
        "bird -p: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // Without what BIRD needs, a one-line usage error.
    let r = ns
        .f2b(&["render", "bird", "--local-as", "64501"])
        .code(EXIT_USAGE);
    assert_eq!(r.stderr_lines().len(), 1, "{r}");
}
