//! The nftables side of `mirror`, pure: the table f2b-route owns on a
//! Linux firewall, and the scripts that make it and change its sets. The
//! `firewall` module runs them through `nft -f -`.
//!
//! The table is pf's `<blackhole>` for Linux: two plain sets of addresses
//! (not `flags interval`: deleting from an interval set grows as n²) and one
//! rule per family that drops by source in `prerouting` at raw priority,
//! before connection tracking, and leaves forwarding alone.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;

/// The table's family and name, and its sets' and chain's names.
pub const FAMILY: &str = "inet";
pub const TABLE: &str = "f2b-route";
pub const SET4: &str = "ban4";
pub const SET6: &str = "ban6";
pub const CHAIN: &str = "pre";

/// Options of the table's drop rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Log dropped packets with this prefix (nft `log prefix`).
    pub log_prefix: Option<String>,
}

/// The table as a file for `nft -f` (what `render nftables` prints, for an
/// nftables.conf that loads it itself).
pub fn table_file(rules: &Rules) -> String {
    let log = log_statement(rules);
    format!(
        "table {FAMILY} {TABLE} {{\n\
         \tset {SET4} {{\n\t\ttype ipv4_addr\n\t}}\n\
         \tset {SET6} {{\n\t\ttype ipv6_addr\n\t}}\n\
         \tchain {CHAIN} {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tip saddr @{SET4} counter{log} drop\n\
         \t\tip6 saddr @{SET6} counter{log} drop\n\
         \t}}\n}}\n"
    )
}

fn log_statement(rules: &Rules) -> String {
    match &rules.log_prefix {
        Some(prefix) => format!(" log prefix \"{}\"", prefix.replace(['"', '\\'], "")),
        None => String::new(),
    }
}

/// Make the table, or adopt the one that is there: its sets are kept with
/// their elements, its chain's rules replaced by ours in the same
/// transaction (never a moment without them).
pub fn create_script(rules: &Rules) -> String {
    let log = log_statement(rules);
    format!(
        "add table {FAMILY} {TABLE}\n\
         add set {FAMILY} {TABLE} {SET4} {{ type ipv4_addr; }}\n\
         add set {FAMILY} {TABLE} {SET6} {{ type ipv6_addr; }}\n\
         add chain {FAMILY} {TABLE} {CHAIN} {{ type filter hook prerouting priority raw; policy accept; }}\n\
         flush chain {FAMILY} {TABLE} {CHAIN}\n\
         add rule {FAMILY} {TABLE} {CHAIN} ip saddr @{SET4} counter{log} drop\n\
         add rule {FAMILY} {TABLE} {CHAIN} ip6 saddr @{SET6} counter{log} drop\n"
    )
}

/// Empty both sets.
pub fn flush_script() -> String {
    format!("flush set {FAMILY} {TABLE} {SET4}\nflush set {FAMILY} {TABLE} {SET6}\n")
}

/// Add `add` to the sets and delete `del` from them, one transaction. The
/// caller deletes only what is there (nft refuses the whole transaction
/// otherwise); adding what is there is no error.
pub fn update_script(add: &[IpAddr], del: &[IpAddr]) -> String {
    let mut out = String::new();
    for (verb, list) in [("delete", del), ("add", add)] {
        for (set, v6) in [(SET4, false), (SET6, true)] {
            let mut first = true;
            for ip in list.iter().filter(|ip| ip.is_ipv6() == v6) {
                if first {
                    let _ = write!(out, "{verb} element {FAMILY} {TABLE} {set} {{ {ip}");
                    first = false;
                } else {
                    let _ = write!(out, ", {ip}");
                }
            }
            if !first {
                out.push_str(" }\n");
            }
        }
    }
    out
}

/// The elements of a set, from `nft -j list set ...`.
pub fn parse_set(json: &str) -> Result<HashSet<IpAddr>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("nft printed no JSON: {e}"))?;
    let items = value["nftables"]
        .as_array()
        .ok_or("nft's JSON has no \"nftables\" list")?;
    let mut out = HashSet::new();
    for item in items {
        let Some(elems) = item.get("set").and_then(|s| s.get("elem")) else {
            continue;
        };
        for e in elems.as_array().ok_or("a set's \"elem\" is not a list")? {
            let text = e
                .as_str()
                .ok_or_else(|| format!("a set element that is no address: {e}"))?;
            let ip = text
                .parse()
                .map_err(|_| format!("a set element that is no address: {text}"))?;
            out.insert(ip);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn scripts() {
        let s = update_script(
            &[ip("198.51.100.7"), ip("2001:db8::7"), ip("198.51.100.8")],
            &[ip("203.0.113.9")],
        );
        assert_eq!(
            s,
            "delete element inet f2b-route ban4 { 203.0.113.9 }\n\
             add element inet f2b-route ban4 { 198.51.100.7, 198.51.100.8 }\n\
             add element inet f2b-route ban6 { 2001:db8::7 }\n"
        );
        assert_eq!(update_script(&[], &[]), "");
        let c = create_script(&Rules {
            log_prefix: Some("f2b \"x".into()),
        });
        assert!(c.contains("flush chain inet f2b-route pre\n"));
        assert!(c.contains("ip saddr @ban4 counter log prefix \"f2b x\" drop"));
        assert!(table_file(&Rules::default()).contains("ip6 saddr @ban6 counter drop"));
    }

    #[test]
    fn sets_from_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "ban4", "table": "f2b-route", "type": "ipv4_addr", "handle": 2, "elem": ["198.51.100.7", "198.51.100.8"]}}]}"#;
        let set = parse_set(json).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&ip("198.51.100.8")));
        let empty = r#"{"nftables": [{"metainfo": {}}, {"set": {"name": "ban6"}}]}"#;
        assert!(parse_set(empty).unwrap().is_empty());
        assert!(parse_set("nonsense").is_err());
    }
}
