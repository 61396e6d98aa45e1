//! Fills in the shipped config templates (`frr/frr.conf`,
//! `frr/frr-firewall.conf`, `openbgpd/bgpd.conf`, `pf/pf.conf`,
//! `bird/bird.conf`, `jail.d/triton.conf`) from the
//! f2b-route config and a few flags, so that the log host and the firewall
//! agree on the marker and on what must never be dropped.
//!
//! Pure: the templates are compiled in, nothing is read or written.
//!
//! Template rules: lines starting with the template-note prefix (`!!` for
//! FRR, `##` for the others) document the template and are left out; a line
//! that is only a block placeholder (`@DENY_V4@`) becomes zero or more lines;
//! other placeholders are replaced inside their line, and a line whose
//! optional value is absent (`@ROUTER_ID@` without `--router-id`) is left out.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::config::Config;

const FRR: &str = include_str!("../frr/frr.conf");
const FRR_FIREWALL: &str = include_str!("../frr/frr-firewall.conf");
const OPENBGPD: &str = include_str!("../openbgpd/bgpd.conf");
const PF: &str = include_str!("../pf/pf.conf");
const JAIL: &str = include_str!("../jail.d/triton.conf");
const BIRD: &str = include_str!("../bird/bird.conf");

/// The IPv6 discard next hop `render frr-firewall` uses without
/// `--discard IPv6`: in 100::/64, the discard-only prefix (RFC 6666).
pub const DISCARD_V6: Ipv6Addr = Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 1);

/// The line of the jail template that `render jail` fills in.
const JAIL_IGNOREIP: &str = "#ignoreip = 127.0.0.1/8 ::1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Frr,
    FrrFirewall,
    Openbgpd,
    Pf,
    Jail,
    Bird,
    Nftables,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Frr,
        Target::FrrFirewall,
        Target::Openbgpd,
        Target::Pf,
        Target::Jail,
        Target::Bird,
        Target::Nftables,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Frr => "frr",
            Target::FrrFirewall => "frr-firewall",
            Target::Openbgpd => "openbgpd",
            Target::Pf => "pf",
            Target::Jail => "jail",
            Target::Bird => "bird",
            Target::Nftables => "nftables",
        }
    }

    /// One line on what the target is, for the help.
    pub fn about(self) -> &'static str {
        match self {
            Target::Frr => "FRR bgpd configuration for the log host",
            Target::FrrFirewall => {
                "FRR configuration for a Linux firewall (with `f2b-route mirror`)"
            }
            Target::Openbgpd => "OpenBGPD configuration for the firewall",
            Target::Pf => "pf rules for the firewall",
            Target::Jail => "fail2ban jail for the log host",
            Target::Bird => "BIRD 2 configuration for a Linux firewall (with `f2b-route mirror`)",
            Target::Nftables => "the nftables table `f2b-route mirror` keeps, for an nftables.conf",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The command-line flags of `f2b-route render`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// `--local-as`: the AS of the host the config is for.
    pub local_as: Option<u32>,
    /// `--peer`: the BGP neighbors; for FRR and the jail, the config's
    /// `peers` when empty.
    pub peers: Vec<IpAddr>,
    /// `--peer-as`: the neighbors' AS.
    pub peer_as: Option<u32>,
    /// `--router-id`.
    pub router_id: Option<Ipv4Addr>,
    /// `--interface`: where pf blocks.
    pub interface: Option<String>,
    /// `--no-pftable`: leave out `set pftable` (OpenBGPD portable).
    pub no_pftable: bool,
    /// `--discard`: the discard next hops of `frr-firewall`, at most one
    /// per family.
    pub discard: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("render {target} needs --local-as N ({what})")]
    MissingLocalAs { target: Target, what: &'static str },
    #[error("render openbgpd needs --peer-as N (the log host's AS number)")]
    MissingPeerAs,
    #[error(
        "render frr needs a BGP peer: --peer IP (a firewall, repeatable) or `peers` in the config"
    )]
    MissingPeersFrr,
    #[error("render openbgpd needs --peer IP (the log host's address; the config's `peers` are the firewalls)")]
    MissingPeersOpenbgpd,
    #[error("render {0} needs --peer-as N (the log host's AS number)")]
    MissingLogHostAs(Target),
    #[error("render {0} needs --peer IP (the log host's address; the config's `peers` are the firewalls)")]
    MissingLogHosts(Target),
    #[error("render frr-firewall needs --discard IPv4: an address of the firewall's own that nothing uses, the next hop its blackholes resolve through")]
    MissingDiscardV4,
    #[error("render frr-firewall takes one --discard per address family, got {0} and {1}")]
    DiscardTwice(IpAddr, IpAddr),
    #[error(
        "bad --discard {0}: use a global unicast address (not in 0/8, 127/8, 224/3, fe80::/10, nor IPv4-mapped) outside the protected prefixes and the peers"
    )]
    BadDiscard(IpAddr),
    #[error("render pf needs --interface IF (where attackers come in)")]
    MissingInterface,
    #[error("bad interface name {0:?}: use 1-15 of A-Z a-z 0-9 _ . -")]
    BadInterface(String),
    #[error("bad AS number 0 in {0}")]
    BadAs(&'static str),
    #[error("render {target} does not use {flag}")]
    UnusedFlag { target: Target, flag: &'static str },
}

/// Renders `target`'s template from `config` and `opts`.
pub fn render(
    target: Target,
    config: &Config,
    opts: &RenderOptions,
) -> Result<String, RenderError> {
    reject_unused(target, opts)?;
    match target {
        Target::Frr => render_frr(config, opts),
        Target::FrrFirewall => render_frr_firewall(config, opts),
        Target::Openbgpd => render_openbgpd(config, opts),
        Target::Pf => render_pf(opts),
        Target::Jail => Ok(render_jail(config, opts)),
        Target::Bird => render_bird(config, opts),
        Target::Nftables => {
            Ok(header('#', Target::Nftables)
                + &crate::nft::table_file(&crate::nft::Rules::default()))
        }
    }
}

fn reject_unused(target: Target, opts: &RenderOptions) -> Result<(), RenderError> {
    let given = [
        ("--local-as", opts.local_as.is_some()),
        ("--peer", !opts.peers.is_empty()),
        ("--peer-as", opts.peer_as.is_some()),
        ("--router-id", opts.router_id.is_some()),
        ("--interface", opts.interface.is_some()),
        ("--no-pftable", opts.no_pftable),
        ("--discard", !opts.discard.is_empty()),
    ];
    let used: &[&str] = match target {
        Target::Frr => &["--local-as", "--peer", "--peer-as", "--router-id"],
        Target::FrrFirewall => &[
            "--local-as",
            "--peer",
            "--peer-as",
            "--router-id",
            "--discard",
        ],
        Target::Openbgpd => &[
            "--local-as",
            "--peer",
            "--peer-as",
            "--router-id",
            "--no-pftable",
        ],
        Target::Pf => &["--interface"],
        Target::Jail => &["--peer"],
        Target::Bird => &["--local-as", "--peer", "--peer-as", "--router-id"],
        Target::Nftables => &[],
    };
    match given.iter().find(|(flag, on)| *on && !used.contains(flag)) {
        Some((flag, _)) => Err(RenderError::UnusedFlag { target, flag }),
        None => Ok(()),
    }
}

fn render_frr(config: &Config, opts: &RenderOptions) -> Result<String, RenderError> {
    let local_as = opts.local_as.ok_or(RenderError::MissingLocalAs {
        target: Target::Frr,
        what: "the log host's AS number",
    })?;
    nonzero(local_as, "--local-as")?;
    let peer_as = match opts.peer_as {
        Some(n) => nonzero(n, "--peer-as")?.to_string(),
        None => "external".to_owned(),
    };
    let peers = peers_or_config(config, opts);
    if peers.is_empty() {
        return Err(RenderError::MissingPeersFrr);
    }
    let mut keep = config.peers.clone();
    keep.extend(&peers);
    let never = never_dropped(config, &keep);
    let deny = |v6: bool| frr_denies(&never, "F2B-ROUTE", v6);
    let neighbors: Vec<String> = peers
        .iter()
        .map(|ip| format!(" neighbor {ip} peer-group FIREWALLS"))
        .collect();
    let text = fill(
        FRR,
        "!!",
        &[
            ("@LOCAL_AS@", Some(local_as.to_string())),
            ("@PEER_AS@", Some(peer_as)),
            ("@ROUTER_ID@", opts.router_id.map(|id| id.to_string())),
            ("@METRIC@", Some(config.metric.to_string())),
        ],
        &[
            ("@DENY_V4@", deny(false)),
            ("@DENY_V6@", deny(true)),
            ("@NEIGHBORS@", neighbors),
        ],
    );
    Ok(header('!', Target::Frr) + &text)
}

fn render_openbgpd(config: &Config, opts: &RenderOptions) -> Result<String, RenderError> {
    let local_as = opts.local_as.ok_or(RenderError::MissingLocalAs {
        target: Target::Openbgpd,
        what: "the firewall's AS number",
    })?;
    nonzero(local_as, "--local-as")?;
    let peer_as = nonzero(opts.peer_as.ok_or(RenderError::MissingPeerAs)?, "--peer-as")?;
    // The config is the log host's: its `peers` are the firewalls, never the
    // neighbor of a firewall. They still must never be dropped.
    let log_hosts = canonical_unique(&opts.peers);
    if log_hosts.is_empty() {
        return Err(RenderError::MissingPeersOpenbgpd);
    }
    let mut keep = config.peers.clone();
    keep.extend(&log_hosts);
    let never: Vec<String> = never_dropped(config, &keep)
        .iter()
        .map(|net| format!("\t{net}"))
        .collect();
    let neighbors: Vec<String> = log_hosts
        .iter()
        .map(|ip| format!("\tneighbor {ip} {{ descr \"f2b-route log host\" }}"))
        .collect();
    let mut text = fill(
        OPENBGPD,
        "##",
        &[
            ("@LOCAL_AS@", Some(local_as.to_string())),
            ("@PEER_AS@", Some(peer_as.to_string())),
            ("@ROUTER_ID@", opts.router_id.map(|id| id.to_string())),
        ],
        &[("@NEVER@", never), ("@NEIGHBORS@", neighbors)],
    );
    if opts.no_pftable {
        text = text
            .lines()
            .map(|line| {
                if is_pftable_rule(line) {
                    "# `set pftable` left out (--no-pftable): OpenBGPD portable has no pf."
                } else {
                    line
                }
            })
            .map(|line| format!("{line}\n"))
            .collect();
    }
    Ok(header('#', Target::Openbgpd) + &text)
}

/// FRR's deny entries for what must never be dropped, of one family: the
/// prefix-list `{name}-V4` or `{name}-V6`, sequence 5, 10, ...
fn frr_denies(never: &[IpNet], name: &str, v6: bool) -> Vec<String> {
    never
        .iter()
        .filter(|net| matches!(net, IpNet::V6(_)) == v6)
        .zip((5u32..).step_by(5))
        .map(|(net, seq)| match net {
            IpNet::V4(_) => format!("ip prefix-list {name}-V4 seq {seq} deny {net} le 32"),
            IpNet::V6(_) => format!("ipv6 prefix-list {name}-V6 seq {seq} deny {net} le 128"),
        })
        .collect()
}

/// What a Linux firewall's BGP daemon config is made of.
struct FirewallSide {
    local_as: u32,
    /// The log hosts' AS.
    peer_as: u32,
    /// `--peer`: the log hosts.
    log_hosts: Vec<IpAddr>,
    /// Never accepted: `protect`, the config's peers (the firewalls) and
    /// the log hosts.
    never: Vec<IpNet>,
}

fn firewall_side(
    target: Target,
    config: &Config,
    opts: &RenderOptions,
) -> Result<FirewallSide, RenderError> {
    let local_as = opts.local_as.ok_or(RenderError::MissingLocalAs {
        target,
        what: "the firewall's AS number",
    })?;
    nonzero(local_as, "--local-as")?;
    let peer_as = nonzero(
        opts.peer_as.ok_or(RenderError::MissingLogHostAs(target))?,
        "--peer-as",
    )?;
    let log_hosts = canonical_unique(&opts.peers);
    if log_hosts.is_empty() {
        return Err(RenderError::MissingLogHosts(target));
    }
    let mut keep = config.peers.clone();
    keep.extend(&log_hosts);
    let never = never_dropped(config, &keep);
    Ok(FirewallSide {
        local_as,
        peer_as,
        log_hosts,
        never,
    })
}

fn render_bird(config: &Config, opts: &RenderOptions) -> Result<String, RenderError> {
    let FirewallSide {
        local_as,
        peer_as,
        log_hosts,
        never,
    } = firewall_side(Target::Bird, config, opts)?;
    let deny = |v6: bool| -> Vec<String> {
        never
            .iter()
            .filter(|net| matches!(net, IpNet::V6(_)) == v6)
            .map(|net| format!("\tif net ~ [ {net}+ ] then reject;"))
            .collect()
    };
    let mut neighbors = Vec::new();
    for (n, ip) in log_hosts.iter().enumerate() {
        neighbors.push(format!(
            "protocol bgp f2b_route_log_host{n} {{\n\
             \tdescription \"f2b-route log host {ip}\";\n\
             \tlocal as {local_as};\n\
             \tneighbor {ip} as {peer_as};\n\
             \tipv4 {{ table f2b_route4; import filter f2b_route_in4; export none; }};\n\
             \tipv6 {{ table f2b_route6; import filter f2b_route_in6; export none; }};\n\
             }}"
        ));
    }
    let text = fill(
        BIRD,
        "##",
        &[
            ("@LOCAL_AS@", Some(local_as.to_string())),
            ("@PEER_AS@", Some(peer_as.to_string())),
            ("@ROUTER_ID@", opts.router_id.map(|id| id.to_string())),
            ("@TABLE@", Some(config.mirror.table.to_string())),
        ],
        &[
            ("@DENY_V4@", deny(false)),
            ("@DENY_V6@", deny(true)),
            ("@NEIGHBORS@", neighbors),
        ],
    );
    Ok(header('#', Target::Bird) + &text)
}

fn render_frr_firewall(config: &Config, opts: &RenderOptions) -> Result<String, RenderError> {
    let FirewallSide {
        local_as,
        peer_as,
        log_hosts,
        never,
    } = firewall_side(Target::FrrFirewall, config, opts)?;
    let (discard4, discard6) = discard_next_hops(&opts.discard, &never)?;
    let deny = |v6: bool| frr_denies(&never, "F2B-ROUTE-IN", v6);
    let neighbors: Vec<String> = log_hosts
        .iter()
        .map(|ip| format!(" neighbor {ip} peer-group LOG-HOSTS"))
        .collect();
    let text = fill(
        FRR_FIREWALL,
        "!!",
        &[
            ("@LOCAL_AS@", Some(local_as.to_string())),
            ("@PEER_AS@", Some(peer_as.to_string())),
            ("@ROUTER_ID@", opts.router_id.map(|id| id.to_string())),
            ("@DISCARD_V4@", Some(discard4.to_string())),
            ("@DISCARD_V6@", Some(discard6.to_string())),
        ],
        &[
            ("@DENY_V4@", deny(false)),
            ("@DENY_V6@", deny(true)),
            ("@NEIGHBORS@", neighbors),
        ],
    );
    Ok(header('!', Target::FrrFirewall) + &text)
}

/// The discard next hops of `render frr-firewall`: one IPv4 address (which
/// must be given) and one IPv6 address ([`DISCARD_V6`] unless given), each
/// a global unicast address FRR takes as a next hop, outside what must
/// never be dropped (a next hop there would blackhole the site's own
/// address). FRR 8.4 refuses `set ip next-hop` in 0/8 and 240/4 (which
/// holds the broadcast address) and `set ipv6 next-hop global` in fe80::/10;
/// booting with such a line it drops it and keeps the route-map, whose
/// routes then forward: fail open.
fn discard_next_hops(
    given: &[IpAddr],
    never: &[IpNet],
) -> Result<(Ipv4Addr, Ipv6Addr), RenderError> {
    let (mut v4, mut v6): (Option<Ipv4Addr>, Option<Ipv6Addr>) = (None, None);
    for &ip in given {
        let usable = match ip {
            IpAddr::V4(a) => {
                let first = a.octets()[0];
                first != 0 && first < 224 && !a.is_loopback()
            }
            // Not mapped or compatible IPv4 either: an IPv6 next hop was
            // meant, and FRR would not resolve it as one.
            IpAddr::V6(a) => {
                let s = a.segments();
                !a.is_unspecified()
                    && !a.is_loopback()
                    && !a.is_multicast()
                    && (s[0] & 0xffc0) != 0xfe80
                    && s[..5] != [0; 5]
            }
        };
        if !usable || never.iter().any(|net| net.contains(&ip)) {
            return Err(RenderError::BadDiscard(ip));
        }
        let first = match ip {
            IpAddr::V4(a) => v4.replace(a).map(IpAddr::V4),
            IpAddr::V6(a) => v6.replace(a).map(IpAddr::V6),
        };
        if let Some(first) = first {
            return Err(RenderError::DiscardTwice(first, ip));
        }
    }
    Ok((
        v4.ok_or(RenderError::MissingDiscardV4)?,
        v6.unwrap_or(DISCARD_V6),
    ))
}

fn is_pftable_rule(line: &str) -> bool {
    !line.trim_start().starts_with('#') && line.contains("set pftable")
}

fn render_pf(opts: &RenderOptions) -> Result<String, RenderError> {
    let interface = opts
        .interface
        .as_deref()
        .ok_or(RenderError::MissingInterface)?;
    let valid = (1..=15).contains(&interface.len())
        && interface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !valid {
        return Err(RenderError::BadInterface(interface.to_owned()));
    }
    let text = fill(
        PF,
        "##",
        &[("@INTERFACE@", Some(interface.to_owned()))],
        &[],
    );
    Ok(header('#', Target::Pf) + &text)
}

fn render_jail(config: &Config, opts: &RenderOptions) -> String {
    let mut keep = config.peers.clone();
    keep.extend(&opts.peers);
    let never = never_dropped(config, &keep);
    let text = if never.is_empty() {
        JAIL.to_owned()
    } else {
        let list: Vec<String> = never.iter().map(host_or_net).collect();
        let line = format!("ignoreip = 127.0.0.1/8 ::1 {}", list.join(" "));
        JAIL.lines()
            .map(|l| if l == JAIL_IGNOREIP { line.as_str() } else { l })
            .map(|l| format!("{l}\n"))
            .collect()
    };
    header('#', Target::Jail) + &text
}

fn header(comment: char, target: Target) -> String {
    format!(
        "{comment} Rendered by `f2b-route render {target}`: change the f2b-route config\n\
         {comment} or the flags and render again rather than editing this copy.\n"
    )
}

fn nonzero(n: u32, what: &'static str) -> Result<u32, RenderError> {
    if n == 0 {
        Err(RenderError::BadAs(what))
    } else {
        Ok(n)
    }
}

/// `--peer` when given, else the config's `peers`; canonical (an
/// IPv4-mapped IPv6 address is its IPv4 address), without repeats, in order.
fn peers_or_config(config: &Config, opts: &RenderOptions) -> Vec<IpAddr> {
    if opts.peers.is_empty() {
        canonical_unique(&config.peers)
    } else {
        canonical_unique(&opts.peers)
    }
}

fn canonical_unique(ips: &[IpAddr]) -> Vec<IpAddr> {
    let mut seen = BTreeSet::new();
    ips.iter()
        .map(|ip| ip.to_canonical())
        .filter(|ip| seen.insert(*ip))
        .collect()
}

/// What must never be dropped: the protected prefixes (host bits cleared,
/// IPv4-mapped ones as IPv4) and each peer as a host route; sorted, without
/// repeats, IPv4 first.
fn never_dropped(config: &Config, peers: &[IpAddr]) -> Vec<IpNet> {
    let protect = config.protect.iter().map(|net| canonical_net(*net).trunc());
    let hosts = peers.iter().map(|ip| IpNet::from(ip.to_canonical()));
    let set: BTreeSet<IpNet> = protect.chain(hosts).collect();
    set.into_iter().collect()
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// fail2ban's ignoreip form: a host without its prefix length.
fn host_or_net(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Applies the template rules (see the module documentation).
fn fill(
    template: &str,
    note: &str,
    inline: &[(&str, Option<String>)],
    blocks: &[(&str, Vec<String>)],
) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    'lines: for line in template.lines() {
        if line.starts_with(note) {
            continue;
        }
        if let Some((_, lines)) = blocks.iter().find(|(key, _)| line.trim() == *key) {
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
            continue;
        }
        let mut line = line.to_owned();
        for (key, value) in inline {
            if line.contains(key) {
                match value {
                    Some(value) => line = line.replace(key, value),
                    None => continue 'lines,
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            protect: vec![
                "203.0.113.0/24".parse().unwrap(),
                "2001:db8:1::/48".parse().unwrap(),
                "198.51.100.77/32".parse().unwrap(),
            ],
            peers: vec!["198.51.100.2".parse().unwrap()],
            ..Config::default()
        }
    }

    fn frr_opts() -> RenderOptions {
        RenderOptions {
            local_as: Some(64500),
            peer_as: Some(64501),
            router_id: Some("198.51.100.1".parse().unwrap()),
            ..RenderOptions::default()
        }
    }

    fn obgpd_opts() -> RenderOptions {
        RenderOptions {
            local_as: Some(64501),
            peer_as: Some(64500),
            peers: vec!["198.51.100.1".parse().unwrap()],
            router_id: Some("198.51.100.2".parse().unwrap()),
            ..RenderOptions::default()
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    fn assert_has(text: &str, line: &str) {
        assert!(
            lines(text).contains(&line),
            "missing line {line:?} in:\n{text}"
        );
    }

    /// No `@NAME@` placeholder and no template note is left.
    fn assert_filled(text: &str, note: &str) {
        for line in text.lines() {
            assert!(!line.starts_with(note), "template note left: {line:?}");
            let mut rest = line;
            while let Some(start) = rest.find('@') {
                let after = &rest[start + 1..];
                let word: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                assert!(
                    word.is_empty() || !after[word.len()..].starts_with('@'),
                    "placeholder left in {line:?}"
                );
                rest = after;
            }
        }
    }

    #[test]
    fn every_target_fills_every_placeholder() {
        let c = config();
        assert_filled(&render(Target::Frr, &c, &frr_opts()).unwrap(), "!!");
        assert_filled(&render(Target::Openbgpd, &c, &obgpd_opts()).unwrap(), "##");
        let pf = RenderOptions {
            interface: Some("em0".into()),
            ..RenderOptions::default()
        };
        assert_filled(&render(Target::Pf, &c, &pf).unwrap(), "##");
        assert_filled(
            &render(Target::Jail, &c, &RenderOptions::default()).unwrap(),
            "##",
        );
    }

    fn firewall_opts() -> RenderOptions {
        RenderOptions {
            discard: vec!["198.18.0.1".parse().unwrap()],
            ..obgpd_opts()
        }
    }

    #[test]
    fn frr_firewall_accepts_tagged_host_routes_and_resolves_them_to_a_blackhole() {
        let text = render(Target::FrrFirewall, &config(), &firewall_opts()).unwrap();
        assert_filled(&text, "!!");
        for line in [
            // Never the protected prefixes, the firewalls (config `peers`)
            // nor the log host; then every host route.
            "ip prefix-list F2B-ROUTE-IN-V4 seq 5 deny 198.51.100.1/32 le 32",
            "ip prefix-list F2B-ROUTE-IN-V4 seq 10 deny 198.51.100.2/32 le 32",
            "ip prefix-list F2B-ROUTE-IN-V4 seq 15 deny 198.51.100.77/32 le 32",
            "ip prefix-list F2B-ROUTE-IN-V4 seq 20 deny 203.0.113.0/24 le 32",
            "ip prefix-list F2B-ROUTE-IN-V4 seq 4294967000 permit 0.0.0.0/0 ge 32",
            "ipv6 prefix-list F2B-ROUTE-IN-V6 seq 5 deny 2001:db8:1::/48 le 128",
            " match community F2B-ROUTE-BLACKHOLE",
            " set ip next-hop 198.18.0.1",
            " set ipv6 next-hop global 100::1",
            "ip route 198.18.0.1/32 blackhole",
            "ipv6 route 100::1/128 blackhole",
            "router bgp 64501",
            " bgp router-id 198.51.100.2",
            " neighbor LOG-HOSTS remote-as 64500",
            " neighbor LOG-HOSTS disable-connected-check",
            " neighbor 198.51.100.1 peer-group LOG-HOSTS",
            "  neighbor LOG-HOSTS route-map F2B-ROUTE-IN-V6 in",
            "  neighbor LOG-HOSTS route-map F2B-ROUTE-OUT out",
        ] {
            assert_has(&text, line);
        }
        let v6 = RenderOptions {
            discard: vec![
                "198.18.0.1".parse().unwrap(),
                "2001:db8:ff::1".parse().unwrap(),
            ],
            ..obgpd_opts()
        };
        let text = render(Target::FrrFirewall, &config(), &v6).unwrap();
        assert_has(&text, "ipv6 route 2001:db8:ff::1/128 blackhole");
        assert_has(&text, " set ipv6 next-hop global 2001:db8:ff::1");
    }

    #[test]
    fn frr_firewall_needs_a_usable_discard_next_hop() {
        let with = |discard: &[&str]| RenderOptions {
            discard: discard.iter().map(|a| a.parse().unwrap()).collect(),
            ..obgpd_opts()
        };
        let c = config();
        let r = |o: &RenderOptions| render(Target::FrrFirewall, &c, o);
        assert_eq!(r(&with(&[])), Err(RenderError::MissingDiscardV4));
        assert_eq!(r(&with(&["100::2"])), Err(RenderError::MissingDiscardV4));
        assert_eq!(
            r(&with(&["198.18.0.1", "198.18.0.2"])),
            Err(RenderError::DiscardTwice(
                "198.18.0.1".parse().unwrap(),
                "198.18.0.2".parse().unwrap()
            ))
        );
        // Inside a protected prefix, a peer, or not unicast.
        for bad in [
            "203.0.113.9",
            "198.51.100.1",
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert_eq!(
                r(&with(&[bad])),
                Err(RenderError::BadDiscard(bad.parse().unwrap())),
                "{bad}"
            );
        }
        for bad in [
            "2001:db8:1::9",
            "fe80::1",
            "::ffff:198.18.0.2",
            "::198.18.0.2",
            "::1",
            "ff02::1",
        ] {
            assert_eq!(
                r(&with(&["198.18.0.1", bad])),
                Err(RenderError::BadDiscard(bad.parse().unwrap())),
                "{bad}"
            );
        }
        let no_peer_as = RenderOptions {
            peer_as: None,
            ..firewall_opts()
        };
        assert_eq!(
            r(&no_peer_as),
            Err(RenderError::MissingLogHostAs(Target::FrrFirewall))
        );
        let frr = RenderOptions {
            discard: vec!["198.18.0.1".parse().unwrap()],
            ..frr_opts()
        };
        assert_eq!(
            render(Target::Frr, &c, &frr),
            Err(RenderError::UnusedFlag {
                target: Target::Frr,
                flag: "--discard"
            })
        );
    }

    #[test]
    fn the_checker_sees_placeholders() {
        assert!(std::panic::catch_unwind(|| assert_filled("router bgp @LOCAL_AS@", "!!")).is_err());
        assert!(std::panic::catch_unwind(|| assert_filled("!! @X@", "!!")).is_err());
        assert_filled("contact: root@example.org, @ alone", "!!");
    }

    #[test]
    fn frr_denies_protected_prefixes_and_peers_in_both_families() {
        let text = render(Target::Frr, &config(), &frr_opts()).unwrap();
        assert_has(
            &text,
            "ip prefix-list F2B-ROUTE-V4 seq 5 deny 198.51.100.2/32 le 32",
        );
        assert_has(
            &text,
            "ip prefix-list F2B-ROUTE-V4 seq 10 deny 198.51.100.77/32 le 32",
        );
        assert_has(
            &text,
            "ip prefix-list F2B-ROUTE-V4 seq 15 deny 203.0.113.0/24 le 32",
        );
        assert_has(
            &text,
            "ipv6 prefix-list F2B-ROUTE-V6 seq 5 deny 2001:db8:1::/48 le 128",
        );
        assert_has(
            &text,
            "ip prefix-list F2B-ROUTE-V4 seq 4294967000 permit 0.0.0.0/0 ge 32",
        );
        assert_has(
            &text,
            "ipv6 prefix-list F2B-ROUTE-V6 seq 4294967000 permit ::/0 ge 128",
        );
        // The denies come before the permit, in the file as in sequence.
        let deny = text.find("deny 203.0.113.0/24").unwrap();
        let permit = text.find("permit 0.0.0.0/0 ge 32").unwrap();
        assert!(deny < permit);
    }

    #[test]
    fn frr_selects_by_metric_and_type_and_tags_on_the_way_out() {
        let c = Config {
            metric: 4242,
            ..config()
        };
        let text = render(Target::Frr, &c, &frr_opts()).unwrap();
        assert_eq!(text.matches("\n match metric 4242\n").count(), 4);
        assert_has(&text, " match ip next-hop type blackhole");
        assert_has(&text, " match ipv6 next-hop type blackhole");
        assert_eq!(
            text.matches("\n set community blackhole no-export\n")
                .count(),
            2
        );
        assert_has(&text, "router bgp 64500");
        assert_has(&text, " bgp router-id 198.51.100.1");
        assert_has(&text, " bgp ebgp-requires-policy");
        assert_has(&text, " neighbor FIREWALLS remote-as 64501");
        assert_has(&text, " neighbor 198.51.100.2 peer-group FIREWALLS");
        assert_has(&text, "  redistribute kernel route-map F2B-ROUTE-REDIST-V4");
        assert_has(&text, "  redistribute kernel route-map F2B-ROUTE-REDIST-V6");
        assert_has(&text, "  neighbor FIREWALLS route-map F2B-ROUTE-OUT-V4 out");
        assert_has(&text, "  neighbor FIREWALLS route-map F2B-ROUTE-OUT-V6 out");
        // The communities are never set at redistribution (nothing would be sent).
        let redist = &text[text.find("route-map F2B-ROUTE-REDIST-V4").unwrap()..];
        let redist = &redist[..redist.find("route-map F2B-ROUTE-OUT-V4").unwrap()];
        assert!(!redist.contains("set community"), "{redist}");
        assert!(text.starts_with("! Rendered by `f2b-route render frr`"));
    }

    #[test]
    fn frr_peers_from_flags_else_config_and_ipv6() {
        let opts = RenderOptions {
            peers: vec![
                "2001:db8::2".parse().unwrap(),
                "::ffff:198.51.100.3".parse().unwrap(),
                "198.51.100.3".parse().unwrap(),
            ],
            router_id: None,
            peer_as: None,
            ..frr_opts()
        };
        let text = render(Target::Frr, &config(), &opts).unwrap();
        assert_has(&text, " neighbor 2001:db8::2 peer-group FIREWALLS");
        assert_has(&text, " neighbor 198.51.100.3 peer-group FIREWALLS");
        assert_eq!(text.matches("peer-group FIREWALLS\n").count(), 2);
        // --peer replaces the config's peers as neighbors; both are denied.
        assert!(!text.contains("neighbor 198.51.100.2 "));
        assert_has(
            &text,
            "ip prefix-list F2B-ROUTE-V4 seq 5 deny 198.51.100.2/32 le 32",
        );
        assert_has(
            &text,
            "ip prefix-list F2B-ROUTE-V4 seq 10 deny 198.51.100.3/32 le 32",
        );
        assert_has(
            &text,
            "ipv6 prefix-list F2B-ROUTE-V6 seq 5 deny 2001:db8::2/128 le 128",
        );
        assert_has(&text, " neighbor FIREWALLS remote-as external");
        assert!(!text.contains("router-id"));
    }

    #[test]
    fn frr_needs_local_as_and_a_peer() {
        let c = config();
        let err = render(Target::Frr, &c, &RenderOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--local-as"), "{err}");
        let no_peers = Config {
            peers: vec![],
            ..config()
        };
        let err = render(Target::Frr, &no_peers, &frr_opts()).unwrap_err();
        assert_eq!(err, RenderError::MissingPeersFrr);
        assert!(err.to_string().contains("--peer"));
        let zero = RenderOptions {
            local_as: Some(0),
            ..frr_opts()
        };
        assert_eq!(
            render(Target::Frr, &c, &zero).unwrap_err(),
            RenderError::BadAs("--local-as")
        );
    }

    #[test]
    fn frr_without_protect_only_permits_host_routes() {
        let c = Config {
            protect: vec![],
            peers: vec!["198.51.100.2".parse().unwrap()],
            ..Config::default()
        };
        let text = render(Target::Frr, &c, &frr_opts()).unwrap();
        assert_eq!(text.matches("ipv6 prefix-list ").count(), 1);
        assert_eq!(text.matches("\nip prefix-list ").count(), 2);
    }

    #[test]
    fn protected_prefixes_are_normalised() {
        let c = Config {
            protect: vec![
                "203.0.113.9/24".parse().unwrap(),
                "::ffff:198.51.100.0/120".parse().unwrap(),
                "203.0.113.0/24".parse().unwrap(),
            ],
            peers: vec!["::ffff:198.51.100.2".parse().unwrap()],
            ..Config::default()
        };
        let text = render(Target::Frr, &c, &frr_opts()).unwrap();
        assert_has(
            &text,
            "ip prefix-list F2B-ROUTE-V4 seq 5 deny 198.51.100.0/24 le 32",
        );
        assert_has(
            &text,
            "ip prefix-list F2B-ROUTE-V4 seq 10 deny 198.51.100.2/32 le 32",
        );
        assert_has(
            &text,
            "ip prefix-list F2B-ROUTE-V4 seq 15 deny 203.0.113.0/24 le 32",
        );
        assert!(!text.contains("seq 20 deny"));
        assert!(!text.contains("::ffff:"));
        assert_has(&text, " neighbor 198.51.100.2 peer-group FIREWALLS");
    }

    #[test]
    fn openbgpd_accepts_host_routes_into_its_own_rib_with_pftable() {
        let text = render(Target::Openbgpd, &config(), &obgpd_opts()).unwrap();
        assert_has(&text, "AS 64501");
        assert_has(&text, "router-id 198.51.100.2");
        assert_has(&text, "\tremote-as 64500");
        assert_has(&text, "\tannounce IPv6 unicast");
        assert_has(
            &text,
            "\tneighbor 198.51.100.1 { descr \"f2b-route log host\" }",
        );
        assert_has(
            &text,
            "prefix-set f2b-route-hosts { 0.0.0.0/0 prefixlen = 32, ::/0 prefixlen = 128 }",
        );
        assert_has(&text, "rde rib \"blackhole\"");
        assert_has(
            &text,
            "match rib \"blackhole\" from group \"f2b-route\" prefix-set f2b-route-hosts set pftable \"blackhole\"",
        );
        // Never dropped: protect, the firewalls (config peers), the log host.
        for net in [
            "198.51.100.1/32",
            "198.51.100.2/32",
            "198.51.100.77/32",
            "203.0.113.0/24",
            "2001:db8:1::/48",
        ] {
            assert_has(&text, &format!("\t{net}"));
        }
        assert!(text.starts_with("# Rendered by `f2b-route render openbgpd`"));
    }

    #[test]
    fn openbgpd_no_pftable_drops_only_the_pftable_rule() {
        let with = render(Target::Openbgpd, &config(), &obgpd_opts()).unwrap();
        let opts = RenderOptions {
            no_pftable: true,
            ..obgpd_opts()
        };
        let without = render(Target::Openbgpd, &config(), &opts).unwrap();
        assert!(with.lines().any(is_pftable_rule));
        assert!(!without.lines().any(is_pftable_rule), "{without}");
        assert_eq!(with.lines().count(), without.lines().count());
        let differ: Vec<_> = with
            .lines()
            .zip(without.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(differ.len(), 1, "{differ:?}");
    }

    #[test]
    fn openbgpd_needs_its_flags_and_ignores_config_peers_as_neighbors() {
        let c = config();
        let need = |opts: RenderOptions| render(Target::Openbgpd, &c, &opts).unwrap_err();
        assert_eq!(
            need(RenderOptions {
                peers: vec![],
                ..obgpd_opts()
            }),
            RenderError::MissingPeersOpenbgpd
        );
        assert_eq!(
            need(RenderOptions {
                peer_as: None,
                ..obgpd_opts()
            }),
            RenderError::MissingPeerAs
        );
        assert!(need(RenderOptions {
            local_as: None,
            ..obgpd_opts()
        })
        .to_string()
        .contains("--local-as N (the firewall's AS number)"));
        let text = render(
            Target::Openbgpd,
            &c,
            &RenderOptions {
                router_id: None,
                ..obgpd_opts()
            },
        )
        .unwrap();
        assert!(!text.contains("router-id"));
        assert!(!text.contains("neighbor 198.51.100.2"));
    }

    #[test]
    fn pf_fills_the_interface() {
        let opts = RenderOptions {
            interface: Some("em0".into()),
            ..RenderOptions::default()
        };
        let text = render(Target::Pf, &config(), &opts).unwrap();
        assert_has(&text, "ext_if = \"em0\"");
        assert_has(&text, "table <blackhole> persist");
        assert_has(
            &text,
            "block in quick log on $ext_if from <blackhole> to any",
        );
        assert!(text
            .contains("# pass in quick log on $ext_if from <blackhole> to any route-to $honeypot"));
        assert_eq!(
            render(Target::Pf, &config(), &RenderOptions::default()).unwrap_err(),
            RenderError::MissingInterface
        );
        for bad in ["", "em0\"; pass all", "a23456789012345x", "em 0"] {
            let opts = RenderOptions {
                interface: Some(bad.into()),
                ..RenderOptions::default()
            };
            assert_eq!(
                render(Target::Pf, &config(), &opts).unwrap_err(),
                RenderError::BadInterface(bad.into())
            );
        }
    }

    #[test]
    fn jail_is_the_design_jail_verbatim() {
        let text = render(Target::Jail, &Config::default(), &RenderOptions::default()).unwrap();
        let jail = "[triton]\nport     = ssh,2222\nlogpath  = /var/log/remote/triton.log\n\
                    enabled  = true\nfilter   = sshd[mode=aggressive]\nbanaction = route\n";
        assert!(text.contains(jail), "{text}");
        assert_has(&text, JAIL_IGNOREIP);
        assert!(JAIL.lines().any(|l| l == JAIL_IGNOREIP));
    }

    #[test]
    fn jail_ignores_what_f2b_route_refuses() {
        let text = render(Target::Jail, &config(), &RenderOptions::default()).unwrap();
        assert_has(
            &text,
            "ignoreip = 127.0.0.1/8 ::1 198.51.100.2 198.51.100.77 203.0.113.0/24 2001:db8:1::/48",
        );
        assert!(!text.lines().any(|l| l == JAIL_IGNOREIP));
        // The ignoreip line belongs to [triton], not to a section of its own.
        let triton = text.find("[triton]").unwrap();
        let ignore = text.find("\nignoreip").unwrap();
        let recidive = text.find("#[recidive]").unwrap();
        assert!(triton < ignore && ignore < recidive);
    }

    #[test]
    fn flags_a_target_does_not_use_are_refused() {
        let c = config();
        let opts = RenderOptions {
            no_pftable: true,
            ..frr_opts()
        };
        assert_eq!(
            render(Target::Frr, &c, &opts).unwrap_err(),
            RenderError::UnusedFlag {
                target: Target::Frr,
                flag: "--no-pftable"
            }
        );
        let opts = RenderOptions {
            interface: Some("em0".into()),
            local_as: Some(1),
            ..RenderOptions::default()
        };
        assert!(render(Target::Pf, &c, &opts)
            .unwrap_err()
            .to_string()
            .contains("render pf does not use --local-as"));
    }
}
