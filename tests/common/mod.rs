//! Test harness for the root integration tests.
//!
//! Every test builds a [`Netns`]: a private network namespace (removed on drop,
//! even when the test panics), a temp directory with its own config file and
//! state directory, and helpers to run the real `f2b-route` binary inside the
//! namespace. Results are checked against an independent witness: the kernel's
//! routing tables as printed by `ip -N -j route show table all`.
//!
//! Only documentation addresses are used: 198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32 and 198.18.0.0/15. Never 192.0.2.0/24 (the host's uplink).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use ipnet::IpNet;

use f2b_route::exit::Exit;

/// The binary under test: cargo's, or `F2B_ROUTE_UNDER_TEST` (to show that
/// a regression test fails on an older build).
pub fn bin() -> String {
    std::env::var("F2B_ROUTE_UNDER_TEST")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_f2b-route").to_string())
}

/// Exit codes from the contract (the one `Exit` definition).
pub const EXIT_OK: i32 = Exit::Ok as i32;
pub const EXIT_FAILURE: i32 = Exit::Failure as i32;
pub const EXIT_USAGE: i32 = Exit::Usage as i32;
pub const EXIT_GUARD: i32 = Exit::Refused as i32;
pub const EXIT_PERMISSION: i32 = Exit::NoPermission as i32;
pub const EXIT_CONFLICT: i32 = Exit::Conflict as i32;
pub const EXIT_CONFIG: i32 = Exit::Config as i32;

/// Route types (rtm_type) as printed by `ip -N`.
pub const RTN_UNICAST: u8 = 1;
pub const RTN_LOCAL: u8 = 2;
pub const RTN_BLACKHOLE: u8 = 6;
pub const RTN_UNREACHABLE: u8 = 7;
pub const RTN_PROHIBIT: u8 = 8;

/// The default marker.
pub const PROTO: u8 = 252;
pub const METRIC: u32 = 666;
pub const TABLE_MAIN: u32 = 254;

/// Seconds a single command may run before the test calls it hung.
const COMMAND_TIMEOUT: &str = "180";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Panics (the test fails, loudly) unless we run as root.
pub fn require_root() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!(
            "these integration tests must run as root (they create network namespaces \
             and add routes inside them); refusing to skip. Run: sudo -E cargo test --test cli"
        );
    }
}

pub fn rtn_type(name: &str) -> u8 {
    match name {
        "blackhole" => RTN_BLACKHOLE,
        "unreachable" => RTN_UNREACHABLE,
        "prohibit" => RTN_PROHIBIT,
        other => panic!("unknown route type {other}"),
    }
}

/// Host prefix (/32 or /128) of an address, as a normalised string.
pub fn host(addr: &str) -> String {
    let ip: IpAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("test bug: {addr:?} is not an address: {e}"));
    IpNet::from(ip).to_string()
}

/// The result of one command, with enough context to explain a failure.
pub struct Run {
    pub cmd: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.cmd,
            self.code,
            truncate(&self.stdout),
            truncate(&self.stderr)
        )
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 4000;
    if s.len() <= MAX {
        s.to_string()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}\n... ({} more bytes)", &s[..end], s.len() - end)
    }
}

impl Run {
    fn from_output(cmd: String, out: Output) -> Run {
        use std::os::unix::process::ExitStatusExt;
        let code = match out.status.code() {
            Some(c) => c,
            None => 128 + out.status.signal().unwrap_or(0),
        };
        if code == 124 {
            eprintln!("warning: exit code 124 is timeout(1)'s: the command hung");
        }
        Run {
            cmd,
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code; on mismatch panics with command, code, stdout, stderr.
    #[track_caller]
    pub fn code(self, expected: i32) -> Run {
        if self.code != expected {
            panic!("expected exit code {expected}, got {}\n{self}", self.code);
        }
        self
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        self.code(EXIT_OK)
    }

    /// Non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Parses stdout as JSON Lines.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON: {e}\n{self}"))
            })
            .collect()
    }
}

/// One route from the kernel, as the witness sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub prefix: String,
    pub kind: u8,
    pub table: u32,
    pub protocol: u8,
    pub metric: u32,
    pub dev: Option<String>,
}

impl Route {
    pub fn is_v6(&self) -> bool {
        self.prefix.contains(':')
    }

    /// Carries the default marker (protocol 252, metric 666, table main).
    pub fn has_default_marker(&self) -> bool {
        self.protocol == PROTO && self.metric == METRIC && self.table == TABLE_MAIN
    }
}

fn parse_routes(json: &str, v6: bool) -> Vec<Route> {
    let value: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("`ip -j route` printed invalid JSON ({e}): {json}"));
    let arr = value
        .as_array()
        .unwrap_or_else(|| panic!("`ip -j route` did not print an array: {json}"));
    arr.iter()
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let num = |k: &str| -> Option<u64> {
                match r.get(k)? {
                    serde_json::Value::Number(n) => n.as_u64(),
                    serde_json::Value::String(s) => s.parse().ok(),
                    _ => None,
                }
            };
            let dst = s("dst").unwrap_or_else(|| panic!("route without dst: {r}"));
            let dst = if dst == "default" {
                if v6 { "::/0" } else { "0.0.0.0/0" }.to_string()
            } else {
                dst
            };
            let prefix: IpNet = match dst.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => IpNet::from(
                    dst.parse::<IpAddr>()
                        .unwrap_or_else(|e| panic!("unparsable dst {dst:?} ({e}) in {r}")),
                ),
            };
            Route {
                prefix: prefix.to_string(),
                kind: num("type").map(|t| t as u8).unwrap_or(RTN_UNICAST),
                table: num("table").map(|t| t as u32).unwrap_or(TABLE_MAIN),
                protocol: num("protocol").map(|p| p as u8).unwrap_or(0),
                metric: num("metric").map(|m| m as u32).unwrap_or(0),
                dev: s("dev"),
            }
        })
        .collect()
}

/// A private network namespace with its own config and state directory.
pub struct Netns {
    pub name: String,
    pub dir: PathBuf,
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic here: we may already be unwinding.
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: removing {}: {e}", self.dir.display());
        }
    }
}

impl Netns {
    /// A new namespace with `lo` up and a config with the built-in defaults.
    pub fn new() -> Netns {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("f2bt-{}-{}", std::process::id(), n);
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state"))
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("running ip netns add");
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "ip netns add {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // From here on Drop cleans up.
        let ns = Netns { name, dir };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.write_config("# test config: the built-in defaults\n");
        ns
    }

    /// Like `new`, plus a veth pair v0/v1 with 203.0.113.1/24 and 2001:db8:1::1/64 on v0.
    pub fn with_veth() -> Netns {
        let ns = Netns::new();
        // No duplicate address detection: otherwise the kernel adds the local
        // routes of the link-local addresses a second or so later, in the
        // middle of a test that compares route tables before and after.
        for key in ["all", "default"] {
            let out = Command::new("ip")
                .args(["netns", "exec", &ns.name, "sysctl", "-q", "-w"])
                .arg(format!("net.ipv6.conf.{key}.accept_dad=0"))
                .output()
                .expect("running sysctl");
            assert!(
                out.status.success(),
                "sysctl accept_dad=0 in {}: {}",
                ns.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns.ipl("link add v0 type veth peer name v1");
        ns.ipl("link set v0 up");
        ns.ipl("link set v1 up");
        ns.ipl("addr add 203.0.113.1/24 dev v0");
        ns.ipl("-6 addr add 2001:db8:1::1/64 dev v0 nodad");
        ns.settle();
        ns
    }

    /// Waits until both veth ends are up with their link-local addresses, none
    /// tentative, and the route tables stop changing: from then on the kernel
    /// adds no routes of its own during a test.
    pub fn settle(&self) {
        let start = std::time::Instant::now();
        loop {
            let links = self.ipl("-j link show type veth");
            let up = links.stdout.matches("\"operstate\":\"UP\"").count() == 2;
            let tentative = self.ipl("-6 addr show tentative");
            let lladdrs = self.ipl("-6 -j addr show scope link");
            let ll = lladdrs.stdout.matches("\"local\":\"fe80").count();
            if up && tentative.stdout.trim().is_empty() && ll >= 2 {
                break;
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                panic!(
                    "namespace {} did not settle in 10 s\n{links}\n{tentative}\n{lladdrs}",
                    self.name
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut last = self.routes();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = self.routes();
            if now == last {
                break;
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                panic!("routes in {} keep changing: {now:#?}", self.name);
            }
            last = now;
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("f2b-route.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text)
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.config_path().display()));
    }

    /// Runs `ip ARGS` in the namespace and asserts success.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> Run {
        self.ip_raw(args).ok()
    }

    /// Runs `ip` in the namespace with a whitespace-separated command line, asserting success.
    #[track_caller]
    pub fn ipl(&self, line: &str) -> Run {
        let args: Vec<&str> = line.split_whitespace().collect();
        self.ip_raw(&args).ok()
    }

    /// Runs `ip ARGS` in the namespace, whatever the outcome.
    pub fn ip_raw(&self, args: &[&str]) -> Run {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        let out = Command::new("ip").args(&all).output().expect("running ip");
        Run::from_output(format!("ip {}", all.join(" ")), out)
    }

    /// Every route of every table, IPv4 and IPv6 (the independent witness).
    pub fn routes(&self) -> Vec<Route> {
        let v4 = self.ip(&["-N", "-j", "-4", "route", "show", "table", "all"]);
        let v6 = self.ip(&["-N", "-j", "-6", "route", "show", "table", "all"]);
        let mut all = parse_routes(&v4.stdout, false);
        all.extend(parse_routes(&v6.stdout, true));
        all.sort();
        all
    }

    /// Routes carrying the default marker (protocol 252, metric 666, table main).
    pub fn owned(&self) -> Vec<Route> {
        self.routes()
            .into_iter()
            .filter(Route::has_default_marker)
            .collect()
    }

    /// Prefixes of the routes carrying the default marker.
    pub fn owned_prefixes(&self) -> BTreeSet<String> {
        self.owned().into_iter().map(|r| r.prefix).collect()
    }

    /// Routes with protocol 252 in any table with any metric.
    pub fn proto_routes(&self, proto: u8) -> Vec<Route> {
        self.routes()
            .into_iter()
            .filter(|r| r.protocol == proto)
            .collect()
    }

    /// `timeout ... ip netns exec NS`, then `wrapper` (a command that runs
    /// the next one, or nothing), then the f2b-route binary.
    fn exec_args(&self, wrapper: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--kill-after=10".into(),
            COMMAND_TIMEOUT.into(),
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ];
        args.extend(wrapper.iter().map(|s| s.to_string()));
        args.push(bin());
        args
    }

    /// `exec_args(wrapper)` with this namespace's `--config` and `--state-dir`.
    fn base_args(&self, wrapper: &[&str]) -> Vec<String> {
        let mut args = self.exec_args(wrapper);
        args.extend([
            "--config".into(),
            self.config_path().display().to_string(),
            "--state-dir".into(),
            self.state_dir().display().to_string(),
        ]);
        args
    }

    fn describe(args: &[String], stdin: Option<&str>) -> String {
        let quoted: Vec<String> = args
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
                    format!("{a:?}")
                } else {
                    a.clone()
                }
            })
            .collect();
        let mut s = format!("timeout {}", quoted.join(" "));
        if let Some(input) = stdin {
            let lines = input.lines().count();
            let head: Vec<&str> = input.lines().take(5).collect();
            s.push_str(&format!("  <<< stdin ({lines} lines, first: {head:?})"));
        }
        s
    }

    /// Runs `f2b-route --config C --state-dir S ARGS` in the namespace.
    pub fn f2b(&self, args: &[&str]) -> Run {
        self.f2b_stdin(args, None)
    }

    /// Same, feeding `stdin` (or nothing: stdin is /dev/null).
    pub fn f2b_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.spawn_f2b(args, stdin).wait()
    }

    /// Starts `f2b-route ARGS` without waiting for it.
    pub fn spawn_f2b(&self, args: &[&str], stdin: Option<&str>) -> Pending {
        let mut all = self.base_args(&[]);
        all.extend(args.iter().map(|s| s.to_string()));
        self.spawn_raw("timeout", all, stdin)
    }

    /// Runs `f2b-route` with only the given global arguments (no --config/--state-dir).
    pub fn f2b_bare(&self, args: &[&str]) -> Run {
        let mut all = self.exec_args(&[]);
        all.extend(args.iter().map(|s| s.to_string()));
        self.spawn_raw("timeout", all, None).wait()
    }

    /// Runs `f2b-route ARGS` as user nobody (no capabilities) in the namespace.
    pub fn f2b_as_nobody(&self, args: &[&str]) -> Run {
        let mut all = self.base_args(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]);
        all.extend(args.iter().map(|s| s.to_string()));
        self.spawn_raw("timeout", all, None).wait()
    }

    fn spawn_raw(&self, prog: &str, args: Vec<String>, stdin: Option<&str>) -> Pending {
        let desc = Netns::describe(&args, stdin);
        let mut child = Command::new(prog)
            .args(&args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {desc}: {e}"));
        let writer = stdin.map(|input| {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            let input = input.to_string();
            std::thread::spawn(move || {
                // The program may exit early (bad input): ignore EPIPE.
                let _ = pipe.write_all(input.as_bytes());
            })
        });
        Pending {
            desc,
            child,
            writer,
        }
    }

    /// `list --json`, parsed, asserting exit 0.
    #[track_caller]
    pub fn list_json(&self) -> Vec<serde_json::Value> {
        self.f2b(&["list", "--json"]).ok().json_lines()
    }

    /// Asserts that a command changed nothing: same kernel routes as `before`.
    #[track_caller]
    pub fn assert_unchanged(&self, before: &[Route], run: &Run) {
        let after = self.routes();
        if after != before {
            let b: BTreeSet<_> = before.iter().collect();
            let a: BTreeSet<_> = after.iter().collect();
            let added: Vec<_> = a.difference(&b).collect();
            let removed: Vec<_> = b.difference(&a).collect();
            panic!(
                "the command changed the kernel's routes but must not have\nadded: {added:#?}\nremoved: {removed:#?}\n{run}"
            );
        }
    }

    pub fn path_str(p: &Path) -> String {
        p.display().to_string()
    }
}

/// A started command.
pub struct Pending {
    desc: String,
    child: Child,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Pending {
    pub fn wait(self) -> Run {
        let out = self
            .child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.desc));
        if let Some(w) = self.writer {
            let _ = w.join();
        }
        Run::from_output(self.desc, out)
    }
}

/// `count` consecutive IPv4 addresses from 198.18.0.0/15 starting at offset `start`.
pub fn bench_range(start: u32, count: u32) -> Vec<String> {
    let base = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0));
    assert!(start + count <= 1 << 17, "test bug: beyond 198.18.0.0/15");
    (start..start + count)
        .map(|i| std::net::Ipv4Addr::from(base + i).to_string())
        .collect()
}

/// Joins addresses one per line, with a trailing newline.
pub fn lines(addrs: &[String]) -> String {
    let mut s = addrs.join("\n");
    s.push('\n');
    s
}
