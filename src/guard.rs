//! The guard: addresses that must never become a blackhole, whatever
//! fail2ban asks. Pure: the caller supplies the host's own addresses and
//! what the kernel's route lookup found for each address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::config::Config;
use crate::model::{LocalAddr, Lookup, RouteDesc};

/// Which rule refused an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Unspecified,
    ThisNetwork,
    /// `::a.b.c.d`, deprecated since RFC 4291: an IPv4 host in IPv6 clothes.
    V4Compatible,
    Loopback,
    Multicast,
    Broadcast,
    LinkLocal,
    /// Configured on one of this host's interfaces: its index, and its name
    /// once the caller has looked it up for the message.
    Local {
        index: u32,
        name: Option<String>,
    },
    /// Inside a route that delivers to this host (local, broadcast,
    /// anycast), such as an AnyIP `local 198.51.100.128/26 dev lo`.
    LocalRoute(RouteDesc),
    /// A configured BGP peer.
    Peer,
    /// Inside a configured `protect` prefix.
    Protected(IpNet),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Unspecified => f.write_str("unspecified address"),
            Rule::ThisNetwork => f.write_str("\"this network\" address (0.0.0.0/8)"),
            Rule::V4Compatible => f.write_str(
                "IPv4-compatible IPv6 address (::a.b.c.d, deprecated; ban the IPv4 address)",
            ),
            Rule::Loopback => f.write_str("loopback address"),
            Rule::Multicast => f.write_str("multicast address"),
            Rule::Broadcast => f.write_str("broadcast address"),
            Rule::LinkLocal => f.write_str("link-local address"),
            Rule::Local { index, name } => match name {
                Some(name) => write!(f, "configured on this host's interface {name}"),
                None => write!(f, "configured on this host's interface #{index}"),
            },
            Rule::LocalRoute(route) => write!(
                f,
                "the kernel delivers it to this host ({} route: {route})",
                route.kind
            ),
            Rule::Peer => f.write_str("a BGP peer (config `peers`)"),
            Rule::Protected(net) => write!(f, "inside protected prefix {net} (config `protect`)"),
        }
    }
}

pub struct Guard<'a> {
    config: &'a Config,
    local: Vec<LocalAddr>,
}

impl<'a> Guard<'a> {
    pub fn new(config: &'a Config, mut local: Vec<LocalAddr>) -> Self {
        local.sort_by_key(|l| l.addr);
        Guard { config, local }
    }

    /// `Ok` when the address may be blackholed, else the first rule that
    /// refuses it. `found` is the kernel's route lookup for the address.
    pub fn check(&self, ip: IpAddr, found: &Lookup) -> Result<(), Rule> {
        special(ip)?;
        if let Ok(i) = self.local.binary_search_by_key(&ip, |l| l.addr) {
            return Err(Rule::Local {
                index: self.local[i].ifindex,
                name: None,
            });
        }
        if let Lookup::Local(route) = found {
            return Err(Rule::LocalRoute(route.clone()));
        }
        if self.config.peers.contains(&ip) {
            return Err(Rule::Peer);
        }
        if let Some(net) = self.config.protect.iter().find(|n| n.contains(&ip)) {
            return Err(Rule::Protected(*net));
        }
        Ok(())
    }
}

/// The special-purpose ranges no ban may cover.
fn special(ip: IpAddr) -> Result<(), Rule> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() {
                Err(Rule::Unspecified)
            } else if v4.octets()[0] == 0 {
                Err(Rule::ThisNetwork)
            } else if v4.is_loopback() {
                Err(Rule::Loopback)
            } else if v4.is_multicast() {
                Err(Rule::Multicast)
            } else if v4 == Ipv4Addr::BROADCAST {
                Err(Rule::Broadcast)
            } else if v4.is_link_local() {
                Err(Rule::LinkLocal)
            } else {
                Ok(())
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Err(Rule::Unspecified)
            } else if v6.is_loopback() {
                Err(Rule::Loopback)
            } else if v6.is_multicast() {
                Err(Rule::Multicast)
            } else if v6.is_unicast_link_local() {
                Err(Rule::LinkLocal)
            } else if v6.segments()[..6] == [0; 6] {
                Err(Rule::V4Compatible)
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_ranges() {
        let config = Config::default();
        let guard = Guard::new(&config, Vec::new());
        let cases = [
            ("0.0.0.0", Rule::Unspecified),
            ("0.1.2.3", Rule::ThisNetwork),
            ("127.0.0.1", Rule::Loopback),
            ("127.255.0.9", Rule::Loopback),
            ("224.0.0.1", Rule::Multicast),
            ("239.1.2.3", Rule::Multicast),
            ("255.255.255.255", Rule::Broadcast),
            ("169.254.1.1", Rule::LinkLocal),
            ("::", Rule::Unspecified),
            ("::1", Rule::Loopback),
            ("ff02::1", Rule::Multicast),
            ("fe80::1", Rule::LinkLocal),
            ("febf::1", Rule::LinkLocal),
            ("::127.0.0.1", Rule::V4Compatible),
            ("::198.51.100.7", Rule::V4Compatible),
        ];
        for (s, rule) in cases {
            assert_eq!(guard.check(ip(s), &Lookup::Clear), Err(rule), "{s}");
        }
        for s in ["198.51.100.7", "203.0.113.9", "2001:db8::7", "198.18.0.1"] {
            assert_eq!(guard.check(ip(s), &Lookup::Clear), Ok(()), "{s}");
        }
    }

    #[test]
    fn local_peers_and_protected() {
        let config = Config {
            peers: vec![ip("198.51.100.2"), ip("2001:db8::2")],
            protect: vec![
                "203.0.113.0/24".parse().unwrap(),
                "2001:db8:1::/48".parse().unwrap(),
            ],
            ..Config::default()
        };
        let local = vec![LocalAddr {
            addr: ip("198.51.100.1"),
            ifindex: 7,
        }];
        let guard = Guard::new(&config, local);
        let clear = &Lookup::Clear;
        assert_eq!(
            guard.check(ip("198.51.100.1"), clear),
            Err(Rule::Local {
                index: 7,
                name: None
            })
        );
        assert_eq!(guard.check(ip("198.51.100.2"), clear), Err(Rule::Peer));
        assert_eq!(guard.check(ip("2001:db8::2"), clear), Err(Rule::Peer));
        assert_eq!(
            guard.check(ip("203.0.113.77"), clear),
            Err(Rule::Protected("203.0.113.0/24".parse().unwrap()))
        );
        assert_eq!(
            guard.check(ip("2001:db8:1:ffff::1"), clear),
            Err(Rule::Protected("2001:db8:1::/48".parse().unwrap()))
        );
        assert_eq!(guard.check(ip("198.51.100.3"), clear), Ok(()));
        assert_eq!(guard.check(ip("2001:db8:2::1"), clear), Ok(()));
        assert!(Rule::Protected("203.0.113.0/24".parse().unwrap())
            .to_string()
            .contains("203.0.113.0/24"));
    }

    #[test]
    fn routes_to_this_host_are_refused_whatever_their_length() {
        let config = Config::default();
        let guard = Guard::new(&config, Vec::new());
        for (kind, prefix, addr) in [
            ("local", "198.51.100.128/26", "198.51.100.130"),
            ("local", "2001:db8:5::/64", "2001:db8:5::9"),
            ("broadcast", "198.51.100.255/32", "198.51.100.255"),
            ("anycast", "2001:db8:6::/128", "2001:db8:6::"),
        ] {
            let route = RouteDesc {
                kind,
                prefix: prefix.parse().unwrap(),
                protocol: 2,
                metric: 0,
                table: 255,
            };
            let found = Lookup::Local(route.clone());
            let refused = guard.check(ip(addr), &found).unwrap_err();
            assert_eq!(refused, Rule::LocalRoute(route));
            let text = refused.to_string();
            assert!(text.contains(kind) && text.contains(prefix), "{text}");
        }
        // A dropping route or a foreign host route is not the guard's business.
        assert_eq!(guard.check(ip("198.51.100.7"), &Lookup::Dropped), Ok(()));
    }
}
