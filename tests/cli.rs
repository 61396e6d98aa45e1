//! Integration tests: the real `f2b-route` binary, as root, each test in its own
//! network namespace, results checked against `ip -j route` (see `common`).
//!
//! Run: `cargo test --locked --test cli -- --test-threads=2` (as root).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;

/// Asserts that exactly these (address, type) routes carry the default marker.
#[track_caller]
fn assert_owned(ns: &Netns, expected: &[(&str, u8)], context: &Run) {
    let want: BTreeSet<(String, u8)> = expected.iter().map(|(a, k)| (host(a), *k)).collect();
    let got: BTreeSet<(String, u8)> = ns.owned().into_iter().map(|r| (r.prefix, r.kind)).collect();
    if want != got {
        panic!(
            "kernel routes with protocol 252 metric 666 table main differ from what we expect\n\
             expected (prefix, rtm_type): {want:?}\n\
             kernel:                      {got:?}\n\
             all routes: {:#?}\nlast command:\n{context}",
            ns.routes()
        );
    }
}

/// The routes of `all` that are not ours (not protocol 252 + metric 666 + table main).
fn foreign(all: &[Route]) -> Vec<Route> {
    all.iter()
        .filter(|r| !r.has_default_marker())
        .cloned()
        .collect()
}

#[track_caller]
fn assert_foreign_unchanged(ns: &Netns, before: &[Route], context: &Run) {
    let after = foreign(&ns.routes());
    let before = foreign(before);
    if after != before {
        panic!(
            "foreign routes changed\nbefore: {before:#?}\nafter: {after:#?}\nlast command:\n{context}"
        );
    }
}

#[test]
fn runs_as_root() {
    // Fails loudly (never skips) when not root.
    require_root();
}

#[test]
fn add_del_idempotent_ipv4() {
    let ns = Netns::new();
    let a = "198.51.100.7";
    ns.f2b(&["add", a]).ok();
    let r = ns.f2b(&["add", a]).ok();
    assert_owned(&ns, &[(a, RTN_BLACKHOLE)], &r);
    let routes = ns.owned();
    assert_eq!(routes.len(), 1, "one route expected: {routes:?}\n{r}");
    ns.f2b(&["del", a]).ok();
    let r = ns.f2b(&["del", a]).ok();
    assert_owned(&ns, &[], &r);
    // del of an address never added
    let r = ns.f2b(&["del", "198.51.100.8"]).ok();
    assert_owned(&ns, &[], &r);
}

#[test]
fn add_del_idempotent_ipv6() {
    let ns = Netns::new();
    let a = "2001:db8::7";
    ns.f2b(&["add", a]).ok();
    let r = ns.f2b(&["add", a]).ok();
    assert_owned(&ns, &[(a, RTN_BLACKHOLE)], &r);
    // the same address spelt in capitals is the same route
    let r = ns.f2b(&["add", "2001:DB8::7"]).ok();
    assert_owned(&ns, &[(a, RTN_BLACKHOLE)], &r);
    ns.f2b(&["del", a]).ok();
    let r = ns.f2b(&["del", a]).ok();
    assert_owned(&ns, &[], &r);
}

#[test]
fn add_many_in_one_call_mixed_families() {
    let ns = Netns::new();
    let r = ns
        .f2b(&[
            "add",
            "198.51.100.7",
            "2001:db8::7",
            "203.0.113.99",
            "198.51.100.7",
        ])
        .ok();
    assert_owned(
        &ns,
        &[
            ("198.51.100.7", RTN_BLACKHOLE),
            ("2001:db8::7", RTN_BLACKHOLE),
            ("203.0.113.99", RTN_BLACKHOLE),
        ],
        &r,
    );
    let r = ns.f2b(&["del", "198.51.100.7", "2001:db8::7"]).ok();
    assert_owned(&ns, &[("203.0.113.99", RTN_BLACKHOLE)], &r);
}

#[test]
fn v4_mapped_v6_is_the_v4_route() {
    let ns = Netns::new();
    let r = ns.f2b(&["add", "::ffff:198.51.100.9"]).ok();
    assert_owned(&ns, &[("198.51.100.9", RTN_BLACKHOLE)], &r);
    let v6: Vec<_> = ns
        .proto_routes(PROTO)
        .into_iter()
        .filter(|r| r.is_v6())
        .collect();
    assert!(v6.is_empty(), "no IPv6 route expected, got {v6:?}\n{r}");
    // same route whichever spelling
    let r = ns.f2b(&["add", "198.51.100.9"]).ok();
    assert_owned(&ns, &[("198.51.100.9", RTN_BLACKHOLE)], &r);
    let r = ns.f2b(&["del", "::ffff:198.51.100.9"]).ok();
    assert_owned(&ns, &[], &r);
    ns.f2b(&["add", "198.51.100.9"]).ok();
    let r = ns.f2b(&["del", "::FFFF:198.51.100.9"]).ok();
    assert_owned(&ns, &[], &r);
}

#[test]
fn route_types_via_flag() {
    let ns = Netns::new();
    let cases = [
        ("blackhole", "198.51.100.11", "2001:db8::11"),
        ("unreachable", "198.51.100.12", "2001:db8::12"),
        ("prohibit", "198.51.100.13", "2001:db8::13"),
    ];
    let mut expected = Vec::new();
    let mut last = None;
    for (t, v4, v6) in cases {
        last = Some(ns.f2b(&["add", "--type", t, v4, v6]).ok());
        expected.push((v4, rtn_type(t)));
        expected.push((v6, rtn_type(t)));
    }
    assert_owned(&ns, &expected, &last.unwrap());
    // del needs no --type
    let r = ns
        .f2b(&["del", "198.51.100.12", "2001:db8::12", "198.51.100.13"])
        .ok();
    assert_owned(
        &ns,
        &[
            ("198.51.100.11", RTN_BLACKHOLE),
            ("2001:db8::11", RTN_BLACKHOLE),
            ("2001:db8::13", RTN_PROHIBIT),
        ],
        &r,
    );
    let r = ns.f2b(&["flush"]).ok();
    assert_owned(&ns, &[], &r);
    // an unknown type is a usage error
    let before = ns.routes();
    let r = ns
        .f2b(&["add", "--type", "drop", "198.51.100.14"])
        .code(EXIT_USAGE);
    ns.assert_unchanged(&before, &r);
}

#[test]
fn route_types_via_config() {
    for t in ["blackhole", "unreachable", "prohibit"] {
        let ns = Netns::new();
        ns.write_config(&format!("type = \"{t}\"\n"));
        let r = ns.f2b(&["add", "198.51.100.20", "2001:db8::20"]).ok();
        assert_owned(
            &ns,
            &[
                ("198.51.100.20", rtn_type(t)),
                ("2001:db8::20", rtn_type(t)),
            ],
            &r,
        );
        // --type wins over the config
        let r = ns.f2b(&["add", "--type", "prohibit", "198.51.100.21"]).ok();
        assert_owned(
            &ns,
            &[
                ("198.51.100.20", rtn_type(t)),
                ("2001:db8::20", rtn_type(t)),
                ("198.51.100.21", RTN_PROHIBIT),
            ],
            &r,
        );
        let r = ns.f2b(&["flush"]).ok();
        assert_owned(&ns, &[], &r);
    }
}

#[test]
fn marker_from_config() {
    let ns = Netns::new();
    ns.write_config("protocol = 250\ntable = 100\nmetric = 777\n");
    // a route with the default marker belongs to someone else under this config
    ns.ipl("route add blackhole 198.51.100.30 proto 252 metric 666");
    let r = ns
        .f2b(&["add", "198.51.100.30", "198.51.100.31", "2001:db8::31"])
        .ok();
    let got: BTreeSet<(String, u8, u32, u32)> = ns
        .proto_routes(250)
        .into_iter()
        .map(|r| (r.prefix, r.kind, r.table, r.metric))
        .collect();
    let want: BTreeSet<(String, u8, u32, u32)> = ["198.51.100.30", "198.51.100.31", "2001:db8::31"]
        .iter()
        .map(|a| (host(a), RTN_BLACKHOLE, 100, 777))
        .collect();
    assert_eq!(got, want, "routes with protocol 250\n{r}");
    let listed: BTreeSet<String> = ns
        .list_json()
        .iter()
        .map(|o| o["prefix"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(
        listed,
        want.iter().map(|w| w.0.clone()).collect(),
        "list --json must show only routes with the configured marker"
    );
    let r = ns.f2b(&["flush"]).ok();
    assert!(ns.proto_routes(250).is_empty(), "flush left routes\n{r}");
    assert_owned(&ns, &[("198.51.100.30", RTN_BLACKHOLE)], &r);
}

/// Sets up routes that look like ours but are not, at the same prefixes.
fn add_foreign_lookalikes(ns: &Netns) {
    for [same, other] in [
        ["198.51.100.7", "198.51.100.8"],
        ["2001:db8::7", "2001:db8::8"],
    ] {
        // same prefix, another protocol (needs another metric: protocol is not part of the key)
        ns.ipl(&format!("route add blackhole {same} proto 253 metric 667"));
        // same prefix, same protocol and metric, another table
        ns.ipl(&format!(
            "route add blackhole {same} proto 252 metric 666 table 100"
        ));
        // same prefix, same protocol, another metric
        ns.ipl(&format!(
            "route add unreachable {same} proto 252 metric 100"
        ));
        // other prefix, same table and metric, another protocol
        ns.ipl(&format!("route add blackhole {other} proto 253 metric 666"));
    }
    // a foreign unicast host route
    ns.ipl("route add 198.51.100.50 dev v0");
    ns.ipl("-6 route add 2001:db8::50 dev v0");
}

#[test]
fn marker_isolation_del_and_flush() {
    let ns = Netns::with_veth();
    // ours first: whether `add` also installs our route next to a foreign dropping
    // route at the same prefix is not what this test is about
    let r = ns.f2b(&["add", "198.51.100.7", "2001:db8::7"]).ok();
    assert_owned(
        &ns,
        &[
            ("198.51.100.7", RTN_BLACKHOLE),
            ("2001:db8::7", RTN_BLACKHOLE),
        ],
        &r,
    );
    add_foreign_lookalikes(&ns);
    let before = ns.routes();
    // list shows only ours
    let listed: BTreeSet<String> = ns
        .list_json()
        .iter()
        .map(|o| o["prefix"].as_str().unwrap_or("?").to_string())
        .collect();
    let want: BTreeSet<String> = [host("198.51.100.7"), host("2001:db8::7")].into();
    assert_eq!(listed, want, "list --json must show only our routes");
    // del of ours leaves the lookalikes
    let r = ns.f2b(&["del", "198.51.100.7", "2001:db8::7"]).ok();
    assert_owned(&ns, &[], &r);
    assert_foreign_unchanged(&ns, &before, &r);
    let before = ns.routes();
    // del of addresses that only have foreign routes touches nothing
    let r = ns
        .f2b(&[
            "del",
            "198.51.100.7",
            "198.51.100.8",
            "198.51.100.50",
            "2001:db8::8",
            "2001:db8::50",
        ])
        .ok();
    ns.assert_unchanged(&before, &r);
    // flush with nothing of ours
    let r = ns.f2b(&["flush"]).ok();
    ns.assert_unchanged(&before, &r);
    // flush with ours present
    ns.f2b(&[
        "add",
        "--jail",
        "sshd",
        "198.51.100.7",
        "2001:db8::7",
        "198.51.100.9",
    ])
    .ok();
    assert!(ns.owned_prefixes().contains(&host("198.51.100.9")));
    let r = ns.f2b(&["flush"]).ok();
    assert_owned(&ns, &[], &r);
    ns.assert_unchanged(&before, &r);
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7", "2001:db8::7"])
        .ok();
    let r = ns.f2b(&["flush", "--jail", "sshd"]).ok();
    ns.assert_unchanged(&before, &r);
}

#[test]
fn foreign_unicast_host_route_conflicts() {
    let ns = Netns::with_veth();
    ns.ipl("route add 198.51.100.50 dev v0");
    ns.ipl("-6 route add 2001:db8::50 dev v0");
    let before = ns.routes();
    for a in ["198.51.100.50", "2001:db8::50", "::ffff:198.51.100.50"] {
        let r = ns.f2b(&["add", a]).code(EXIT_CONFLICT);
        ns.assert_unchanged(&before, &r);
        let r = ns.f2b(&["add", "--jail", "sshd", a]).code(EXIT_CONFLICT);
        ns.assert_unchanged(&before, &r);
    }
    assert!(
        ns.list_json().is_empty(),
        "list must be empty after refused adds"
    );
    // an address merely inside a connected subnet has no host route: allowed
    let r = ns.f2b(&["add", "203.0.113.77"]).ok();
    assert_owned(&ns, &[("203.0.113.77", RTN_BLACKHOLE)], &r);
}

#[test]
fn foreign_dropping_route_is_accepted_and_kept() {
    let ns = Netns::with_veth();
    // a stock `ip route add blackhole X` (proto boot, metric 0)
    ns.ipl("route add blackhole 198.51.100.60");
    ns.ipl("-6 route add blackhole 2001:db8::60");
    // fail2ban's stock route action: unreachable
    ns.ipl("route add unreachable 198.51.100.61");
    // another tool's route with our table and metric but another protocol (same kernel key)
    ns.ipl("route add prohibit 198.51.100.62 proto 253 metric 666");
    ns.ipl("-6 route add blackhole 2001:db8::62 proto 253 metric 666");
    let before = ns.routes();
    let addrs = [
        "198.51.100.60",
        "2001:db8::60",
        "198.51.100.61",
        "198.51.100.62",
        "2001:db8::62",
    ];
    for a in addrs {
        let r = ns.f2b(&["add", a]).ok();
        assert_foreign_unchanged(&ns, &before, &r);
        let r = ns.f2b(&["add", "--jail", "sshd", a]).ok();
        assert_foreign_unchanged(&ns, &before, &r);
    }
    let mut args = vec!["del"];
    args.extend(addrs);
    let r = ns.f2b(&args).ok();
    assert_foreign_unchanged(&ns, &before, &r);
    assert_owned(&ns, &[], &r);
    for a in addrs {
        ns.f2b(&["add", "--jail", "recidive", a]).ok();
    }
    let r = ns.f2b(&["flush"]).ok();
    assert_foreign_unchanged(&ns, &before, &r);
    assert_owned(&ns, &[], &r);
}

#[test]
fn jail_holds() {
    let ns = Netns::new();
    let x = "198.51.100.7";
    ns.f2b(&["add", "--jail", "sshd", x]).ok();
    let r = ns.f2b(&["add", "--jail", "recidive", x]).ok();
    assert_owned(&ns, &[(x, RTN_BLACKHOLE)], &r);
    let r = ns.f2b(&["del", "--jail", "sshd", x]).ok();
    assert_owned(&ns, &[(x, RTN_BLACKHOLE)], &r);
    // releasing sshd twice changes nothing
    let r = ns.f2b(&["del", "--jail", "sshd", x]).ok();
    assert_owned(&ns, &[(x, RTN_BLACKHOLE)], &r);
    let r = ns.f2b(&["del", "--jail", "recidive", x]).ok();
    assert_owned(&ns, &[], &r);

    // del without --jail removes whatever holds it
    ns.f2b(&["add", "--jail", "sshd", x]).ok();
    ns.f2b(&["add", "--jail", "recidive", x]).ok();
    let r = ns.f2b(&["del", x]).ok();
    assert_owned(&ns, &[], &r);

    // the anonymous hold counts as a hold
    ns.f2b(&["add", x]).ok();
    ns.f2b(&["add", "--jail", "sshd", x]).ok();
    let r = ns.f2b(&["del", "--jail", "sshd", x]).ok();
    assert_owned(&ns, &[(x, RTN_BLACKHOLE)], &r);
    let r = ns.f2b(&["del", x]).ok();
    assert_owned(&ns, &[], &r);

    // flush --jail releases that jail's holds only
    let (a, b, c, d) = (
        "198.51.100.1",
        "198.51.100.2",
        "2001:db8::3",
        "198.51.100.4",
    );
    ns.f2b(&["add", "--jail", "sshd", a, b, c]).ok();
    ns.f2b(&["add", "--jail", "recidive", b, c, d]).ok();
    let r = ns.f2b(&["flush", "--jail", "sshd"]).ok();
    assert_owned(
        &ns,
        &[(b, RTN_BLACKHOLE), (c, RTN_BLACKHOLE), (d, RTN_BLACKHOLE)],
        &r,
    );
    for o in ns.list_json() {
        assert_eq!(
            o["jails"],
            serde_json::json!(["recidive"]),
            "after flush --jail sshd only recidive holds remain: {o}"
        );
    }
    // flush of a jail that holds nothing
    let r = ns.f2b(&["flush", "--jail", "nosuchjail"]).ok();
    assert_owned(
        &ns,
        &[(b, RTN_BLACKHOLE), (c, RTN_BLACKHOLE), (d, RTN_BLACKHOLE)],
        &r,
    );
    let r = ns.f2b(&["flush", "--jail", "recidive"]).ok();
    assert_owned(&ns, &[], &r);
    assert!(ns.list_json().is_empty());

    // plain flush removes everything owned, whoever holds it
    ns.f2b(&["add", "--jail", "sshd", a]).ok();
    ns.f2b(&["add", "--jail", "recidive", b]).ok();
    ns.f2b(&["add", c]).ok();
    let r = ns.f2b(&["flush"]).ok();
    assert_owned(&ns, &[], &r);
    assert!(ns.list_json().is_empty());
    // and forgets the holds: a later add + one del removes the route
    ns.f2b(&["add", "--jail", "recidive", b]).ok();
    let r = ns.f2b(&["del", "--jail", "recidive", b]).ok();
    assert_owned(&ns, &[], &r);
}

#[test]
fn bad_jail_names_are_usage_errors() {
    let ns = Netns::new();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7"]).ok();
    let before = ns.routes();
    let long = "a".repeat(65);
    let max = "b".repeat(64);
    for jail in [
        "",
        "bad name",
        "a/b",
        ".hidden",
        "_x",
        "@manual",
        "ssh:d",
        long.as_str(),
    ] {
        for cmd in ["add", "del"] {
            let r = ns
                .f2b(&[cmd, "--jail", jail, "198.51.100.7", "198.51.100.8"])
                .code(EXIT_USAGE);
            ns.assert_unchanged(&before, &r);
        }
        let r = ns.f2b(&["flush", "--jail", jail]).code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
    }
    // the longest valid name and the allowed punctuation
    for jail in [max.as_str(), "a.b-c_d", "0x"] {
        let r = ns.f2b(&["add", "--jail", jail, "198.51.100.9"]).ok();
        assert_owned(
            &ns,
            &[
                ("198.51.100.7", RTN_BLACKHOLE),
                ("198.51.100.9", RTN_BLACKHOLE),
            ],
            &r,
        );
    }
}

#[test]
fn guard_refuses_and_changes_nothing() {
    let ns = Netns::with_veth();
    ns.write_config(
        "peers = [\"203.0.113.9\", \"2001:db8:1::9\"]\n\
         protect = [\"198.51.100.128/25\", \"2001:db8:ffff::/48\"]\n",
    );
    ns.f2b(&["add", "198.51.100.5"]).ok();
    let before = ns.routes();
    let refused = [
        "203.0.113.1",        // on v0
        "2001:db8:1::1",      // on v0
        "203.0.113.9",        // peer
        "2001:db8:1::9",      // peer
        "198.51.100.200",     // protect
        "198.51.100.128",     // protect, first address
        "2001:db8:ffff::1",   // protect
        "0.0.0.0",            // unspecified
        "0.1.2.3",            // 0.0.0.0/8
        "127.0.0.1",          // loopback
        "127.1.2.3",          // loopback
        "224.0.0.1",          // multicast
        "239.1.2.3",          // multicast
        "255.255.255.255",    // broadcast
        "169.254.1.1",        // link-local
        "::",                 // unspecified
        "::1",                // loopback
        "ff02::1",            // multicast
        "fe80::1",            // link-local
        "::ffff:127.0.0.1",   // mapped loopback
        "::ffff:203.0.113.1", // mapped local address
    ];
    for a in refused {
        let r = ns.f2b(&["add", a]).code(EXIT_GUARD);
        ns.assert_unchanged(&before, &r);
        let r = ns
            .f2b(&["add", "--jail", "sshd", "--type", "prohibit", a])
            .code(EXIT_GUARD);
        ns.assert_unchanged(&before, &r);
        // among valid addresses: nothing is added
        let r = ns
            .f2b(&["add", "--jail", "sshd", "198.51.100.6", a, "2001:db8::6"])
            .code(EXIT_GUARD);
        ns.assert_unchanged(&before, &r);
        let r = ns
            .f2b_stdin(
                &["add", "--jail", "sshd", "-"],
                Some(&format!("198.51.100.6\n{a}\n2001:db8::6\n")),
            )
            .code(EXIT_GUARD);
        ns.assert_unchanged(&before, &r);
    }
    // just outside the protected prefix is fine
    let r = ns.f2b(&["add", "198.51.100.127"]).ok();
    assert_owned(
        &ns,
        &[
            ("198.51.100.5", RTN_BLACKHOLE),
            ("198.51.100.127", RTN_BLACKHOLE),
        ],
        &r,
    );
}

const BAD_INPUTS: &[&str] = &[
    "host.example",
    "198.51.100.7/32",
    "2001:db8::7/128",
    "fe80::1%eth0",
    "010.1.1.1",
    "198.051.100.7",
    " 198.51.100.7",
    "198.51.100.7 ",
    "",
    "garbage",
    "1.2.3",
    "256.1.1.1",
    "2001:db8::g",
    "198.51.100.7:22",
    "[2001:db8::7]",
];

#[test]
fn bad_inputs_are_rejected_before_any_change() {
    let ns = Netns::new();
    ns.f2b(&["add", "198.51.100.1"]).ok();
    let before = ns.routes();
    for bad in BAD_INPUTS {
        let r = ns.f2b(&["add", bad]).code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
        let r = ns.f2b(&["add", "--jail", "sshd", bad]).code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
        // one bad address among valid ones: nothing added
        let r = ns
            .f2b(&["add", "198.51.100.2", "2001:db8::2", bad, "198.51.100.3"])
            .code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
        // del: nothing removed either
        let r = ns.f2b(&["del", "198.51.100.1", bad]).code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
        let r = ns.f2b(&["del", bad, "198.51.100.1"]).code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
    }
    assert_owned(
        &ns,
        &[("198.51.100.1", RTN_BLACKHOLE)],
        &Run {
            cmd: "(after the bad inputs)".into(),
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
        },
    );
}

#[test]
fn bad_inputs_via_stdin_are_rejected_before_any_change() {
    let ns = Netns::new();
    ns.f2b(&["add", "198.51.100.1"]).ok();
    let before = ns.routes();
    // An empty line in the middle of the input is an empty string: bad.
    for bad in BAD_INPUTS {
        let input = format!("198.51.100.2\n2001:db8::2\n{bad}\n198.51.100.3\n");
        let r = ns
            .f2b_stdin(&["add", "--jail", "sshd", "-"], Some(&input))
            .code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
        let input = format!("{bad}\n");
        let r = ns.f2b_stdin(&["add", "-"], Some(&input)).code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
        let input = format!("198.51.100.1\n{bad}\n");
        let r = ns.f2b_stdin(&["del", "-"], Some(&input)).code(EXIT_USAGE);
        ns.assert_unchanged(&before, &r);
    }
    // a bad address late in a long input: still nothing added
    let mut addrs = bench_range(1, 1500);
    addrs.push("garbage".into());
    let r = ns
        .f2b_stdin(&["add", "--jail", "sshd", "-"], Some(&lines(&addrs)))
        .code(EXIT_USAGE);
    ns.assert_unchanged(&before, &r);
}

#[test]
fn error_output_is_one_line() {
    let ns = Netns::with_veth();
    ns.ipl("route add 198.51.100.50 dev v0");
    for (args, code) in [
        (vec!["add", "garbage"], EXIT_USAGE),
        (vec!["add", "127.0.0.1"], EXIT_GUARD),
        (vec!["add", "198.51.100.50"], EXIT_CONFLICT),
    ] {
        for quiet in [true, false] {
            let mut a = vec![];
            if quiet {
                a.push("-q");
            }
            a.extend(&args);
            let r = ns.f2b(&a).code(code);
            let lines = r.stderr_lines();
            let errors: Vec<_> = lines
                .iter()
                .filter(|l| l.starts_with("f2b-route: "))
                .collect();
            assert!(
                !errors.is_empty(),
                "expected an error line starting with `f2b-route: `\n{r}"
            );
            if quiet {
                assert_eq!(lines.len(), 1, "-q: exactly one error line expected\n{r}");
            }
            assert!(
                r.stdout.is_empty(),
                "errors go to stderr, stdout must be empty\n{r}"
            );
        }
    }
}

#[test]
fn verbosity_of_mutating_commands() {
    let ns = Netns::new();
    let addrs = ["198.51.100.1", "198.51.100.2", "2001:db8::3"];
    let mut args = vec!["add"];
    args.extend(addrs);
    let r = ns.f2b(&args).ok();
    assert_eq!(
        r.stderr_lines().len(),
        1,
        "default: one summary line on stderr\n{r}"
    );
    assert!(r.stdout.is_empty(), "human messages go to stderr\n{r}");
    let mut args = vec!["-v", "add", "--jail", "sshd"];
    args.extend(addrs);
    let r = ns.f2b(&args).ok();
    assert!(
        r.stderr_lines().len() >= addrs.len(),
        "-v: one line per address\n{r}"
    );
    let mut args = vec!["-q", "del"];
    args.extend(addrs);
    let r = ns.f2b(&args).ok();
    assert!(r.stderr.is_empty(), "-q: nothing but errors\n{r}");
    assert!(r.stdout.is_empty(), "-q: nothing but errors\n{r}");
    assert_owned(&ns, &[], &r);
    let r = ns.f2b(&["-q", "flush"]).ok();
    assert!(r.stderr.is_empty() && r.stdout.is_empty(), "-q flush\n{r}");
}

#[test]
fn bulk_via_stdin() {
    let ns = Netns::new();
    let addrs = bench_range(1, 2000);
    // with duplicates and IPv6 mixed in
    let mut input = addrs.clone();
    input.extend(addrs[..100].iter().cloned());
    input.push("2001:db8::1:1".into());
    let r = ns
        .f2b_stdin(&["add", "--jail", "sshd", "-"], Some(&lines(&input)))
        .ok();
    let mut want: BTreeSet<String> = addrs.iter().map(|a| host(a)).collect();
    want.insert(host("2001:db8::1:1"));
    let got = ns.owned_prefixes();
    assert_eq!(got.len(), want.len(), "route count\n{r}");
    assert!(got == want, "kernel routes differ from the input\n{r}");
    let listed = ns.list_json();
    assert_eq!(listed.len(), want.len(), "list --json line count");
    let listed: BTreeSet<String> = listed
        .iter()
        .map(|o| o["prefix"].as_str().unwrap_or("?").to_string())
        .collect();
    assert!(listed == want, "list --json disagrees with the kernel");

    // a broken pipe exits quietly
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ip netns exec {} {} --config {} --state-dir {} list --json | head -n 1 >/dev/null",
            ns.name,
            bin(),
            ns.config_path().display(),
            ns.state_dir().display()
        ))
        .output()
        .expect("sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "`list --json | head -n 1` must exit quietly, stderr: {stderr}"
    );

    let r = ns
        .f2b_stdin(&["del", "--jail", "sshd", "-"], Some(&lines(&input)))
        .ok();
    assert!(ns.owned().is_empty(), "del - left routes\n{r}");
    assert!(ns.list_json().is_empty());
    // an empty stdin is nothing to do: success, nothing changed
    let r = ns.f2b_stdin(&["add", "-"], Some(""));
    assert_eq!(r.code, EXIT_OK, "{r}");
    assert!(ns.owned().is_empty(), "{r}");
    // but an empty line is an empty address: bad input
    let r = ns.f2b_stdin(&["add", "-"], Some("\n"));
    assert_eq!(r.code, EXIT_USAGE, "{r}");
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[test]
fn list_json_schema() {
    let ns = Netns::new();
    let t0 = now();
    ns.f2b(&["add", "--jail", "sshd", "198.51.100.7"]).ok();
    ns.f2b(&["add", "--jail", "recidive", "198.51.100.7"]).ok();
    ns.f2b(&["add", "--jail", "sshd", "--type", "prohibit", "2001:db8::7"])
        .ok();
    ns.f2b(&["add", "--type", "unreachable", "203.0.113.7"])
        .ok();
    // our marker, but not made by us: owned, with no hold
    ns.ipl("route add blackhole 198.51.100.99 proto 252 metric 666");
    let t1 = now();
    let r = ns.f2b(&["list", "--json"]).ok();
    let objs = r.json_lines();
    let keys: BTreeSet<&str> = [
        "address", "prefix", "family", "type", "protocol", "metric", "table", "jails", "since",
    ]
    .into();
    let mut by_addr = BTreeMap::new();
    for o in &objs {
        let obj = o
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {o}\n{r}"));
        let got: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(got, keys, "keys of {o}\n{r}");
        assert!(o["address"].is_string() && o["prefix"].is_string(), "{o}");
        assert!(o["family"] == "inet" || o["family"] == "inet6", "{o}");
        assert!(o["type"].is_string(), "{o}");
        assert_eq!(o["protocol"], 252, "{o}");
        assert_eq!(o["metric"], 666, "{o}");
        assert_eq!(o["table"], 254, "{o}");
        let jails = o["jails"]
            .as_array()
            .unwrap_or_else(|| panic!("jails: {o}"));
        assert!(jails.iter().all(|j| j.is_string()), "{o}");
        let mut sorted: Vec<&str> = jails.iter().filter_map(|j| j.as_str()).collect();
        sorted.sort();
        let as_listed: Vec<&str> = jails.iter().filter_map(|j| j.as_str()).collect();
        assert_eq!(sorted, as_listed, "jails must be sorted: {o}");
        assert!(
            o["since"].is_null() || o["since"].is_i64() || o["since"].is_u64(),
            "{o}"
        );
        if let Some(s) = o["since"].as_i64() {
            assert!(
                s >= t0 - 1 && s <= t1 + 1,
                "since {s} not within [{t0}, {t1}]: {o}"
            );
        }
        by_addr.insert(o["address"].as_str().unwrap().to_string(), o.clone());
    }
    assert_eq!(objs.len(), 4, "four owned routes expected\n{r}");
    let v4 = &by_addr["198.51.100.7"];
    assert_eq!(v4["prefix"], "198.51.100.7/32");
    assert_eq!(v4["family"], "inet");
    assert_eq!(v4["type"], "blackhole");
    assert_eq!(v4["jails"], serde_json::json!(["recidive", "sshd"]));
    assert!(v4["since"].is_number(), "{v4}");
    let v6 = &by_addr["2001:db8::7"];
    assert_eq!(v6["prefix"], "2001:db8::7/128");
    assert_eq!(v6["family"], "inet6");
    assert_eq!(v6["type"], "prohibit");
    assert_eq!(v6["jails"], serde_json::json!(["sshd"]));
    let un = &by_addr["203.0.113.7"];
    assert_eq!(un["type"], "unreachable");
    assert!(un["since"].is_number(), "a manual add is a hold: {un}");
    let stray = &by_addr["198.51.100.99"];
    assert_eq!(stray["jails"], serde_json::json!([]), "{stray}");
    assert!(
        stray["since"].is_null(),
        "no hold: since must be null: {stray}"
    );
    // the plain listing works too and mentions every route
    let r = ns.f2b(&["list"]).ok();
    for a in [
        "198.51.100.7",
        "2001:db8::7",
        "203.0.113.7",
        "198.51.100.99",
    ] {
        assert!(r.stdout.contains(a), "`list` must mention {a}\n{r}");
    }
    // a stray route with our marker is removed by flush
    let r = ns.f2b(&["flush"]).ok();
    assert_owned(&ns, &[], &r);
}

#[test]
fn check_valid_config() {
    let ns = Netns::with_veth();
    ns.write_config(
        "protocol = 252\ntable = \"main\"\ntype = \"blackhole\"\nmetric = 666\n\
         protect = [\"203.0.113.0/24\", \"2001:db8:1::/48\"]\npeers = [\"203.0.113.9\"]\n\
         state_dir = \"/nonexistent/overridden\"\n",
    );
    let before = ns.routes();
    let r = ns.f2b(&["check"]).ok();
    ns.assert_unchanged(&before, &r);
    // numeric table
    ns.write_config("table = 100\n");
    ns.f2b(&["check"]).ok();
}

#[test]
fn check_without_permission_fails() {
    // The capability is asked for before anything else is touched.
    let ns = Netns::new();
    let r = ns.f2b_as_nobody(&["check"]).code(EXIT_PERMISSION);
    assert!(r.stderr.contains("CAP_NET_ADMIN"), "{r}");
    let before = ns.routes();
    let r = ns
        .f2b_as_nobody(&["add", "198.51.100.7"])
        .code(EXIT_PERMISSION);
    ns.assert_unchanged(&before, &r);
}

#[test]
fn missing_named_config_is_exit_6() {
    let ns = Netns::new();
    std::fs::remove_file(ns.config_path()).unwrap();
    let before = ns.routes();
    for args in [
        vec!["check"],
        vec!["add", "198.51.100.7"],
        vec!["del", "198.51.100.7"],
        vec!["list"],
        vec!["flush"],
    ] {
        let r = ns.f2b(&args).code(EXIT_CONFIG);
        ns.assert_unchanged(&before, &r);
    }
}

#[test]
fn invalid_configs_are_exit_6() {
    let ns = Netns::new();
    ns.ipl("route add blackhole 198.51.100.9 proto 252 metric 666");
    let before = ns.routes();
    let bad = [
        "protocol = \n",
        "this is not toml\n",
        "[unclosed\n",
        "protocol = 186\n",
        "protocol = 0\n",
        "protocol = 2\n",
        "protocol = 11\n",
        "protocol = 198\n",
        "protocol = 256\n",
        "protocol = \"252\"\n",
        "table = 255\n",
        "table = 0\n",
        "table = \"local\"\n",
        "table = 4294967296\n",
        "type = \"drop\"\n",
        "type = \"unicast\"\n",
        "metric = -1\n",
        "protect = [\"not-a-cidr\"]\n",
        "protect = \"203.0.113.0/24\"\n",
        "peers = [\"host.example\"]\n",
    ];
    for text in bad {
        ns.write_config(text);
        for args in [vec!["check"], vec!["add", "198.51.100.7"], vec!["flush"]] {
            let r = ns.f2b(&args);
            if r.code != EXIT_CONFIG {
                panic!("config {text:?}: expected exit 6, got {}\n{r}", r.code);
            }
            ns.assert_unchanged(&before, &r);
        }
    }
}

#[test]
fn concurrent_jails_add_then_flush() {
    let ns = Netns::new();
    const JAILS: u32 = 8;
    const PER_JAIL: u32 = 500;
    const STEP: u32 = 250; // jail N holds [N*250+1, N*250+500]: neighbours overlap by 250
    let mut inputs = Vec::new();
    let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for n in 0..JAILS {
        let jail = format!("j{n}");
        let addrs = bench_range(1 + n * STEP, PER_JAIL);
        for a in &addrs {
            holders.entry(host(a)).or_default().insert(jail.clone());
        }
        inputs.push((jail, lines(&addrs)));
    }
    let pending: Vec<_> = inputs
        .iter()
        .map(|(jail, input)| ns.spawn_f2b(&["add", "--jail", jail, "-"], Some(input)))
        .collect();
    let runs: Vec<Run> = pending.into_iter().map(Pending::wait).collect();
    for r in runs {
        r.ok();
    }
    let union: BTreeSet<String> = holders.keys().cloned().collect();
    let got = ns.owned_prefixes();
    if got != union {
        let missing: Vec<_> = union.difference(&got).take(10).collect();
        let extra: Vec<_> = got.difference(&union).take(10).collect();
        panic!(
            "kernel has {} routes, expected the union of {} (missing e.g. {missing:?}, extra e.g. {extra:?})",
            got.len(),
            union.len()
        );
    }
    // list --json agrees with the kernel and knows every hold
    let listed = ns.list_json();
    assert_eq!(listed.len(), union.len(), "list --json line count");
    for o in &listed {
        let prefix = o["prefix"].as_str().unwrap_or("?").to_string();
        let want = holders
            .get(&prefix)
            .unwrap_or_else(|| panic!("list shows {prefix}, not in the kernel's union"));
        let jails: BTreeSet<String> = o["jails"]
            .as_array()
            .unwrap_or_else(|| panic!("jails: {o}"))
            .iter()
            .filter_map(|j| j.as_str().map(str::to_string))
            .collect();
        assert_eq!(
            &jails, want,
            "holds of {prefix} (lost in a concurrent update?): {o}"
        );
    }
    // release half of the jails concurrently: routes held by the others stay
    let half: Vec<_> = (0..JAILS)
        .step_by(2)
        .map(|n| ns.spawn_f2b(&["flush", "--jail", &format!("j{n}")], None))
        .collect();
    for p in half {
        p.wait().ok();
    }
    let remaining: BTreeSet<String> = holders
        .iter()
        .filter(|(_, js)| js.iter().any(|j| j[1..].parse::<u32>().unwrap() % 2 == 1))
        .map(|(p, _)| p.clone())
        .collect();
    let got = ns.owned_prefixes();
    assert!(
        got == remaining,
        "after flushing even jails: kernel has {}, expected {}",
        got.len(),
        remaining.len()
    );
    // then all of them at once
    let all: Vec<_> = (0..JAILS)
        .map(|n| ns.spawn_f2b(&["flush", "--jail", &format!("j{n}")], None))
        .collect();
    for p in all {
        p.wait().ok();
    }
    let left = ns.proto_routes(PROTO);
    assert!(
        left.is_empty(),
        "{} routes left, e.g. {:?}",
        left.len(),
        left.first()
    );
    assert!(
        ns.list_json().is_empty(),
        "list --json not empty after flushes"
    );
}

#[test]
fn concurrent_add_del_same_address_keeps_holds_consistent() {
    // Two jails add and release the same addresses at once; in the end the kernel
    // and the ledger must agree.
    let ns = Netns::new();
    let addrs = bench_range(10_000, 300);
    let input = lines(&addrs);
    let p: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|j| ns.spawn_f2b(&["add", "--jail", j, "-"], Some(&input)))
        .collect();
    for x in p {
        x.wait().ok();
    }
    let p: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|j| ns.spawn_f2b(&["del", "--jail", j, "-"], Some(&input)))
        .collect();
    for x in p {
        x.wait().ok();
    }
    let want: BTreeSet<String> = addrs.iter().map(|a| host(a)).collect();
    assert!(
        ns.owned_prefixes() == want,
        "jail d still holds every address"
    );
    for o in ns.list_json() {
        assert_eq!(o["jails"], serde_json::json!(["d"]), "{o}");
    }
    ns.f2b_stdin(&["del", "--jail", "d", "-"], Some(&input))
        .ok();
    assert!(ns.owned().is_empty());
}

#[test]
fn check_fails_on_an_unusable_state_dir() {
    let ns = Netns::new();
    let config = ns.config_path().display().to_string();
    // A regular file is no directory: both checks say so.
    let file = ns.dir.join("a-file").display().to_string();
    std::fs::write(&file, "").unwrap();
    for args in [vec!["check"], vec!["check", "--repair"]] {
        let mut all = vec!["--config", &config, "--state-dir", &file];
        all.extend(args);
        ns.f2b_bare(&all).code(EXIT_PERMISSION);
    }
    // Under /proc nothing can be made: the plain check cannot know without
    // trying (it changes nothing), the repair, which makes the dir, fails.
    let r = ns.f2b_bare(&[
        "--config",
        &config,
        "--state-dir",
        "/proc/f2b-route-cannot-exist",
        "check",
        "--repair",
    ]);
    assert_ne!(
        r.code, EXIT_OK,
        "check --repair must fail when the state dir cannot be made\n{r}"
    );
}

#[test]
fn survives_routes_changed_behind_its_back() {
    // fail2ban's restore re-runs the ban of an address whose route may be gone,
    // and unbans addresses whose route someone else removed: both must succeed.
    let ns = Netns::new();
    let x = "198.51.100.7";
    ns.f2b(&["add", "--jail", "sshd", x, "2001:db8::7"]).ok();
    ns.ipl("route del blackhole 198.51.100.7 proto 252 metric 666");
    ns.ipl("-6 route del blackhole 2001:db8::7 proto 252 metric 666");
    let r = ns.f2b(&["add", "--jail", "sshd", x, "2001:db8::7"]).ok();
    assert_owned(
        &ns,
        &[(x, RTN_BLACKHOLE), ("2001:db8::7", RTN_BLACKHOLE)],
        &r,
    );
    ns.ipl("route del blackhole 198.51.100.7 proto 252 metric 666");
    let r = ns.f2b(&["del", "--jail", "sshd", x, "2001:db8::7"]).ok();
    assert_owned(&ns, &[], &r);
    assert!(ns.list_json().is_empty(), "nothing left to list");
    // the ledger lost (state dir emptied) while the routes stay: still manageable
    ns.f2b(&["add", "--jail", "sshd", x]).ok();
    std::fs::remove_dir_all(ns.state_dir()).unwrap();
    std::fs::create_dir(ns.state_dir()).unwrap();
    let r = ns.f2b(&["add", "--jail", "sshd", x]).ok();
    assert_owned(&ns, &[(x, RTN_BLACKHOLE)], &r);
    let r = ns.f2b(&["flush"]).ok();
    assert_owned(&ns, &[], &r);
}
