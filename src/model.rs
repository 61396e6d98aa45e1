//! The words of the domain, shared by every layer: route types we make, the
//! marker that makes a route ours, what the kernel holds and what its route
//! lookup found. Pure data; no I/O.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

/// The route types that drop traffic; the only ones f2b-route creates or
/// ever removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    #[default]
    Blackhole,
    Unreachable,
    Prohibit,
}

impl RouteKind {
    pub const ALL: [RouteKind; 3] = [
        RouteKind::Blackhole,
        RouteKind::Unreachable,
        RouteKind::Prohibit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Blackhole => "blackhole",
            RouteKind::Unreachable => "unreachable",
            RouteKind::Prohibit => "prohibit",
        }
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for RouteKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RouteKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown route type {s:?}: use blackhole, unreachable or prohibit")
            })
    }
}

/// What makes a route ours: protocol, metric and table, all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub protocol: u8,
    pub metric: u32,
    pub table: u32,
}

/// One of our routes as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedRoute {
    pub addr: IpAddr,
    pub kind: RouteKind,
}

/// An address configured on one of this host's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    pub addr: IpAddr,
    /// The interface's index (its name is looked up only for a message).
    pub ifindex: u32,
}

/// A route of the kernel's, described for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDesc {
    /// The route type as iproute2 names it: unicast, local, broadcast, ...
    pub kind: &'static str,
    pub prefix: IpNet,
    pub protocol: u8,
    pub metric: u32,
    pub table: u32,
}

impl fmt::Display for RouteDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = match self.table {
            254 => "main".to_string(),
            255 => "local".to_string(),
            t => t.to_string(),
        };
        write!(
            f,
            "{} {} proto {} metric {} table {table}",
            self.kind, self.prefix, self.protocol, self.metric
        )
    }
}

/// What the kernel's route lookup for an address found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The preferred route drops the address (blackhole, unreachable, prohibit).
    Dropped,
    /// A route that delivers to this host (local, broadcast, anycast), of
    /// any prefix length: blackholing inside it would cut the host off.
    Local(RouteDesc),
    /// A host route of someone else forwards the address: we must not shadow it.
    ForeignHost(RouteDesc),
    /// Nothing specific to this host (a covering prefix, or no route at all).
    Clear,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for k in RouteKind::ALL {
            assert_eq!(k.as_str().parse::<RouteKind>(), Ok(k));
        }
        assert!("unicast".parse::<RouteKind>().is_err());
    }

    #[test]
    fn route_descriptions_read_like_iproute2() {
        let d = RouteDesc {
            kind: "local",
            prefix: "198.51.100.128/26".parse().unwrap(),
            protocol: 2,
            metric: 0,
            table: 255,
        };
        assert_eq!(
            d.to_string(),
            "local 198.51.100.128/26 proto 2 metric 0 table local"
        );
    }
}
