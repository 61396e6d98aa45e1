//! Integration tests of `f2b-route serve`: the real binary, as root, each
//! test in its own network namespace (see `common`), the routes checked with
//! `ip -j route` as the witness, the holds with `list --json`.
//!
//! Run: `cargo test --locked --features root-tests --test serve` (as root).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::*;

/// One `serve` process in a namespace, spoken to request by request.
struct Session {
    desc: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    /// `f2b-route --config C --state-dir S serve ARGS` in `ns`, under timeout(1).
    fn start(ns: &Netns, args: &[&str]) -> Session {
        let mut all: Vec<String> = vec![
            "--kill-after=5".into(),
            "120".into(),
            "ip".into(),
            "netns".into(),
            "exec".into(),
            ns.name.clone(),
            bin(),
            "--config".into(),
            Netns::path_str(&ns.config_path()),
            "--state-dir".into(),
            Netns::path_str(&ns.state_dir()),
            "serve".into(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let desc = format!("timeout {}", all.join(" "));
        let mut child = Command::new("timeout")
            .args(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {desc}: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout pipe"));
        Session {
            desc,
            child,
            stdin,
            stdout,
        }
    }

    /// The next line it writes (without its LF); panics, with its stderr,
    /// if it ends instead.
    #[track_caller]
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading from {}: {e}", self.desc));
        if n == 0 {
            let mut err = String::new();
            if let Some(e) = self.child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            let status = self.child.wait();
            panic!(
                "{} ended instead of answering ({status:?})\n--- stderr ---\n{err}",
                self.desc
            );
        }
        assert!(line.ends_with('\n'), "an answer ends in LF: {line:?}");
        line.pop();
        line
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing to {}: {e}", self.desc));
    }

    /// Sends one request line, returns the answer line.
    #[track_caller]
    fn ask(&mut self, request: &str) -> String {
        self.send(format!("{request}\n").as_bytes());
        self.line()
    }

    /// Asks and asserts the answer starts with `want`.
    #[track_caller]
    fn expect(&mut self, request: &str, want: &str) -> String {
        let answer = self.ask(request);
        assert!(
            answer.starts_with(want),
            "request {request:?}: expected an answer starting with {want:?}, got {answer:?}\n({})",
            self.desc
        );
        answer
    }

    /// Closes stdin and waits: (exit code, stdout left, stderr).
    fn finish(mut self) -> (i32, String, String) {
        drop(self.stdin.take());
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let mut err = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut err);
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.desc));
        (status.code().unwrap_or(-1), rest, err)
    }
}

/// The prefixes of the routes with the default marker, of type `kind`.
fn owned_of(ns: &Netns, kind: u8) -> BTreeSet<String> {
    ns.owned()
        .into_iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.prefix)
        .collect()
}

fn set(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|a| host(a)).collect()
}

/// The jails holding `addr`, from `list --json`.
fn holders(ns: &Netns, addr: &str) -> Vec<String> {
    ns.list_json()
        .iter()
        .filter(|r| r["address"] == addr)
        .flat_map(|r| r["jails"].as_array().cloned().unwrap_or_default())
        .map(|j| j.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn greets_then_adds_and_deletes_one_request_at_a_time() {
    let ns = Netns::new();
    let mut s = Session::start(&ns, &["--jail", "sshd"]);
    assert_eq!(s.line(), "f2b-route serve 1 jail=sshd type=blackhole");
    s.expect("add 198.51.100.7", "ok added 1 route");
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), set(&["198.51.100.7"]));
    // Idempotent, as the CLI.
    s.expect("add 198.51.100.7", "ok added 0 routes, 1 already present");
    s.expect("add 2001:db8::7", "ok added 1 route");
    assert_eq!(
        owned_of(&ns, RTN_BLACKHOLE),
        set(&["198.51.100.7", "2001:db8::7"])
    );
    assert_eq!(holders(&ns, "198.51.100.7"), vec!["sshd"]);
    s.expect("del 198.51.100.7", "ok removed 1 route");
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), set(&["2001:db8::7"]));
    s.expect("del 198.51.100.7", "ok removed 0 routes, 1 already gone");
    // CRLF is a line end too.
    assert!(s.ask("ping\r").starts_with("ok pong"));
    s.expect("flush", "ok released 1 hold of sshd, removed 1 route");
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), BTreeSet::new());
    let (code, rest, err) = s.finish();
    assert_eq!(code, EXIT_OK, "EOF ends serve with 0; stderr: {err}");
    assert_eq!(rest, "", "nothing after the last answer");
}

#[test]
fn the_route_type_is_the_flag_or_the_config() {
    let ns = Netns::new();
    ns.write_config("type = \"prohibit\"\n");
    let mut s = Session::start(&ns, &["--jail", "a"]);
    assert_eq!(s.line(), "f2b-route serve 1 jail=a type=prohibit");
    s.expect("add 203.0.113.9", "ok added 1 route");
    assert_eq!(owned_of(&ns, RTN_PROHIBIT), set(&["203.0.113.9"]));
    let mut u = Session::start(&ns, &["--jail", "b", "--type", "unreachable"]);
    assert_eq!(u.line(), "f2b-route serve 1 jail=b type=unreachable");
    u.expect("add 203.0.113.10", "ok added 1 route");
    assert_eq!(owned_of(&ns, RTN_UNREACHABLE), set(&["203.0.113.10"]));
    assert_eq!(s.finish().0, EXIT_OK);
    assert_eq!(u.finish().0, EXIT_OK);
}

#[test]
fn malformed_requests_change_nothing_and_serving_goes_on() {
    let ns = Netns::with_veth();
    let mut s = Session::start(&ns, &["--jail", "sshd"]);
    s.line();
    s.expect("add 203.0.113.20", "ok added 1 route");
    let before = ns.routes();
    let long = format!("add {}", "1".repeat(5000));
    let bad: Vec<&[u8]> = vec![
        b"\n",
        b"add\n",
        b"add \n",
        b"add 203.0.113.21 203.0.113.22\n",
        b"add  203.0.113.21\n",
        b"add 203.0.113.0/24\n",
        b"add -- 203.0.113.21\n",
        b"add example.org\n",
        b"del 203.0.113.20/32\n",
        b"ADD 203.0.113.21\n",
        b"flush now\n",
        b"ping 1\n",
        b"list\n",
        b"add \xff\xfe\n",
        b"add 203.0.113.21\0\n",
        long.as_bytes(),
    ];
    for request in bad {
        s.send(request);
        if request == long.as_bytes() {
            s.send(b"\n");
        }
        let answer = s.line();
        assert!(
            answer.starts_with("err 2 "),
            "request {:?}: expected err 2, got {answer:?}",
            String::from_utf8_lossy(&request[..request.len().min(40)])
        );
        assert!(
            answer.len() < 300,
            "a bad request is quoted short: {answer}"
        );
    }
    ns.assert_unchanged(
        &before,
        &Run {
            cmd: "the malformed requests above".into(),
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
        },
    );
    assert_eq!(holders(&ns, "203.0.113.20"), vec!["sshd"]);
    // Still serving.
    s.expect("add 203.0.113.21", "ok added 1 route");
    assert_eq!(
        owned_of(&ns, RTN_BLACKHOLE),
        set(&["203.0.113.20", "203.0.113.21"])
    );
    assert_eq!(s.finish().0, EXIT_OK);
}

#[test]
fn refusals_answer_the_cli_exit_codes_and_change_nothing() {
    let ns = Netns::with_veth();
    ns.write_config("protect = [\"198.51.100.0/24\"]\npeers = [\"203.0.113.254\"]\n");
    // Someone else's unicast host route.
    ns.ipl("route add 203.0.113.50/32 dev v0");
    let before = ns.routes();
    let mut s = Session::start(&ns, &["--jail", "sshd"]);
    s.line();
    for (request, code, cli) in [
        ("add 198.51.100.9", EXIT_GUARD, "198.51.100.9"),
        ("add 203.0.113.254", EXIT_GUARD, "203.0.113.254"),
        ("add 203.0.113.1", EXIT_GUARD, "203.0.113.1"),
        ("add 127.0.0.1", EXIT_GUARD, "127.0.0.1"),
        ("add 203.0.113.50", EXIT_CONFLICT, "203.0.113.50"),
    ] {
        let answer = s.ask(request);
        assert!(
            answer.starts_with(&format!("err {code} refused ")),
            "{request}: {answer}"
        );
        // The CLI ends with the same code for the same address.
        let run = ns.f2b(&["add", "--jail", "sshd", cli]).code(code);
        let cli_line = run.stderr_lines().last().copied().unwrap_or_default();
        assert_eq!(
            cli_line.trim_start_matches("f2b-route: "),
            answer.splitn(3, ' ').nth(2).unwrap(),
            "the answer's message is the CLI's error line"
        );
    }
    ns.assert_unchanged(
        &before,
        &Run {
            cmd: "the refused requests above".into(),
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
        },
    );
    assert!(ns.list_json().is_empty(), "no hold taken");
    // Nothing else broke.
    s.expect("add 203.0.113.60", "ok added 1 route");
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), set(&["203.0.113.60"]));
    assert_eq!(s.finish().0, EXIT_OK);
}

#[test]
fn two_jails_hold_one_address() {
    let ns = Netns::new();
    let mut sshd = Session::start(&ns, &["--jail", "sshd"]);
    let mut recidive = Session::start(&ns, &["--jail", "recidive"]);
    sshd.line();
    recidive.line();
    let a = "203.0.113.7";
    sshd.expect(&format!("add {a}"), "ok added 1 route");
    recidive.expect(&format!("add {a}"), "ok added 0 routes, 1 already present");
    assert_eq!(holders(&ns, a), vec!["recidive", "sshd"]);
    sshd.expect(
        &format!("del {a}"),
        "ok removed 0 routes, 1 kept for other jails",
    );
    assert_eq!(
        owned_of(&ns, RTN_BLACKHOLE),
        set(&[a]),
        "recidive still holds it"
    );
    // A jail's flush releases only its own holds.
    sshd.expect("add 203.0.113.8", "ok added 1 route");
    sshd.expect("flush", "ok released 1 hold of sshd, removed 1 route");
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), set(&[a]));
    recidive.expect(&format!("del {a}"), "ok removed 1 route");
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), BTreeSet::new());
    assert_eq!(sshd.finish().0, EXIT_OK);
    assert_eq!(recidive.finish().0, EXIT_OK);
}

#[test]
fn serve_processes_and_cli_runs_work_at_once() {
    let ns = Netns::new();
    let a = bench_range(0, 300);
    let b = bench_range(1000, 300);
    let c = bench_range(2000, 2000);
    let shared = "203.0.113.77";
    let mut first = Session::start(&ns, &["--jail", "one"]);
    let mut second = Session::start(&ns, &["--jail", "two"]);
    first.line();
    second.line();
    // A CLI bulk add runs meanwhile, under the same lock.
    let cli = ns.spawn_f2b(&["add", "--jail", "cli", "-"], Some(&lines(&c)));
    let one = std::thread::spawn({
        let a = a.clone();
        move || {
            for ip in &a {
                first.expect(&format!("add {ip}"), "ok added 1 route");
            }
            first.expect(&format!("add {shared}"), "ok added");
            first
        }
    });
    for ip in &b {
        second.expect(&format!("add {ip}"), "ok added 1 route");
    }
    second.expect(&format!("add {shared}"), "ok added");
    let mut first = one.join().expect("the first session's thread");
    cli.wait().ok();
    let mut want: BTreeSet<String> = a.iter().chain(&b).chain(&c).map(|ip| host(ip)).collect();
    want.insert(host(shared));
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), want);
    assert_eq!(holders(&ns, shared), vec!["one", "two"]);
    let stats = ns.f2b(&["stats", "--json"]).ok();
    let stats: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(stats["agree"], true, "{stats}");
    // Both flush at once: each releases its own; the shared route goes
    // with whichever flush comes second.
    first.send(b"flush\n");
    second.send(b"flush\n");
    let answers = [first.line(), second.line()];
    let removed: usize = answers
        .iter()
        .zip(["one", "two"])
        .map(|(answer, jail)| {
            let head = format!("ok released 301 holds of {jail}, removed ");
            let n = answer
                .strip_prefix(&head)
                .and_then(|r| r.strip_suffix(" routes"));
            n.unwrap_or_else(|| panic!("{answer}"))
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(removed, 601, "{answers:?}");
    let want: BTreeSet<String> = c.iter().map(|ip| host(ip)).collect();
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), want);
    assert_eq!(first.finish().0, EXIT_OK);
    assert_eq!(second.finish().0, EXIT_OK);
}

#[test]
fn eof_leaves_the_routes_and_the_holds() {
    let ns = Netns::new();
    let mut s = Session::start(&ns, &["--jail", "sshd"]);
    s.line();
    s.expect("add 198.51.100.30", "ok added 1 route");
    // A last request without its LF may be cut short (its writer died
    // mid-line: `add 198.51.100.31` of `add 198.51.100.31x`): refused, not
    // carried out; then EOF ends it.
    s.send(b"add 198.51.100.31");
    drop(s.stdin.take());
    let refused = s.line();
    assert!(
        refused.starts_with("err 2 request without its line end"),
        "{refused}"
    );
    let (code, _, err) = s.finish();
    assert_eq!(code, EXIT_OK, "{err}");
    let want = set(&["198.51.100.30"]);
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), want, "routes stay after EOF");
    assert_eq!(holders(&ns, "198.51.100.30"), vec!["sshd"]);
    // A process killed under its client is the same.
    let mut s = Session::start(&ns, &["--jail", "sshd"]);
    s.line();
    s.expect("add 198.51.100.32", "ok added 1 route");
    s.child.kill().expect("kill");
    let _ = s.child.wait();
    let mut s = Session::start(&ns, &["--jail", "sshd"]);
    s.line();
    s.expect("flush", "ok released 2 holds of sshd, removed 2 routes");
    assert_eq!(owned_of(&ns, RTN_BLACKHOLE), BTreeSet::new());
    assert_eq!(s.finish().0, EXIT_OK);
}

#[test]
fn a_setup_that_cannot_work_exits_before_the_greeting() {
    let ns = Netns::new();
    // No CAP_NET_ADMIN: the CLI's exit code and error line, no greeting.
    let run = ns.f2b_as_nobody(&["serve", "--jail", "sshd"]);
    let run = run.code(EXIT_PERMISSION);
    assert_eq!(run.stdout, "", "no greeting: {run}");
    assert!(run.stderr.contains("CAP_NET_ADMIN"), "{run}");
    // No jail, or a bad one: usage.
    ns.f2b(&["serve"]).code(EXIT_USAGE);
    ns.f2b(&["serve", "--jail", "../x"]).code(EXIT_USAGE);
    // A bad config: the config's code.
    ns.write_config("protect = [\"not a prefix\"]\n");
    let run = ns.f2b_stdin(&["serve", "--jail", "sshd"], Some("add 198.51.100.1\n"));
    let run = run.code(EXIT_CONFIG);
    assert_eq!(run.stdout, "", "{run}");
    assert!(ns.owned().is_empty());
}
