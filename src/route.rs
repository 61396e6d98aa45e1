//! Pure translation between bans and rtnetlink route messages: what we ask
//! the kernel, and how we read its answers. No I/O here.

use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::RouteMessageBuilder;

use crate::addr::host_len;
use crate::config::{Config, RouteKind};

/// What makes a route ours: protocol, metric and table, all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub protocol: u8,
    pub metric: u32,
    pub table: u32,
}

impl Marker {
    pub fn of(config: &Config) -> Self {
        Marker {
            protocol: config.protocol,
            metric: config.metric,
            table: config.table,
        }
    }
}

pub type Request = NetlinkMessage<RouteNetlinkMessage>;

fn route_type(kind: RouteKind) -> RouteType {
    match kind {
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
    }
}

fn kind_of(t: RouteType) -> Option<RouteKind> {
    match t {
        RouteType::BlackHole => Some(RouteKind::Blackhole),
        RouteType::Unreachable => Some(RouteKind::Unreachable),
        RouteType::Prohibit => Some(RouteKind::Prohibit),
        _ => None,
    }
}

fn host_route(ip: IpAddr) -> RouteMessageBuilder<IpAddr> {
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(ip, host_len(ip))
        .expect("a host length always fits its family")
}

/// iproute2's convention: a table id above 255 lives only in RTA_TABLE.
fn in_table(builder: RouteMessageBuilder<IpAddr>, table: u32) -> RouteMessage {
    let mut msg = builder.table_id(table).build();
    if table > 255 {
        msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    }
    msg
}

fn request(message: RouteNetlinkMessage, flags: u16) -> Request {
    let mut req = NetlinkMessage::from(message);
    req.header.flags = flags;
    req
}

/// Create our route for `ip`; the kernel answers EEXIST when a route with
/// the same prefix and metric is already there.
pub fn add(ip: IpAddr, kind: RouteKind, marker: Marker) -> Request {
    let msg = in_table(
        host_route(ip)
            .kind(route_type(kind))
            .protocol(RouteProtocol::from(marker.protocol))
            .scope(RouteScope::Universe)
            .priority(marker.metric),
        marker.table,
    );
    request(
        RouteNetlinkMessage::NewRoute(msg),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Delete our route for `ip`, whatever its type: the kernel matches
/// protocol, metric and table, so a route of anyone else is never hit
/// (it answers ESRCH instead).
pub fn del(ip: IpAddr, marker: Marker) -> Request {
    let mut msg = in_table(
        host_route(ip)
            .protocol(RouteProtocol::from(marker.protocol))
            .scope(RouteScope::NoWhere)
            .priority(marker.metric),
        marker.table,
    );
    msg.header.kind = RouteType::Unspec;
    request(
        RouteNetlinkMessage::DelRoute(msg),
        NLM_F_REQUEST | NLM_F_ACK,
    )
}

/// Ask which route the kernel would use for `ip` (`ip route get fibmatch`).
pub fn lookup(ip: IpAddr) -> Request {
    let mut msg = host_route(ip).build();
    msg.header.flags = RouteFlags::FibMatch;
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.header.protocol = RouteProtocol::Unspec;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unspec;
    request(RouteNetlinkMessage::GetRoute(msg), NLM_F_REQUEST)
}

/// Dump one family's routes carrying our protocol in our table. With
/// NETLINK_GET_STRICT_CHK the kernel filters by protocol and table itself.
pub fn dump(family: AddressFamily, marker: Marker) -> Request {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.protocol = RouteProtocol::from(marker.protocol);
    if marker.table > 255 {
        msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
        msg.attributes.push(RouteAttribute::Table(marker.table));
    } else {
        msg.header.table = marker.table as u8;
    }
    request(
        RouteNetlinkMessage::GetRoute(msg),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
}

/// One of our routes as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRoute {
    pub addr: IpAddr,
    pub kind: RouteKind,
}

fn destination(msg: &RouteMessage) -> Option<IpAddr> {
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

fn table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

fn metric(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

/// Our route, if the kernel's message describes one: a host route of a
/// dropping type with our protocol, metric and table.
pub fn owned(msg: &RouteMessage, marker: Marker) -> Option<OwnedRoute> {
    let addr = destination(msg)?;
    // A TOS route is not one we make, nor one our deletes (TOS 0) could remove.
    let ours = u8::from(msg.header.protocol) == marker.protocol
        && msg.header.tos == 0
        && metric(msg) == marker.metric
        && table(msg) == marker.table
        && msg.header.destination_prefix_length == host_len(addr);
    if !ours {
        return None;
    }
    Some(OwnedRoute {
        addr,
        kind: kind_of(msg.header.kind)?,
    })
}

/// The destination of the request a netlink error answers. Without
/// NETLINK_CAP_ACK the kernel returns the whole original message after the
/// error code, which is how an error in a batch finds its address.
pub fn failed_destination(original: &[u8]) -> Option<IpAddr> {
    use netlink_packet_core::Parseable;
    const NLMSG_HDRLEN: usize = 16;
    let len = u32::from_ne_bytes(original.get(0..4)?.try_into().ok()?) as usize;
    let payload = original.get(NLMSG_HDRLEN..len.min(original.len()))?;
    let msg = RouteMessage::parse(payload).ok()?;
    destination(&msg)
}

/// What the kernel's route lookup for an address found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The preferred route drops the address (blackhole, unreachable, prohibit).
    Dropped,
    /// A host route of someone else forwards the address: we must not shadow it.
    ForeignHost(String),
    /// Nothing specific to this host (a covering prefix, or no route at all).
    Clear,
}

/// Read the answer to [`lookup`]: a route message, or an errno (negative,
/// as netlink carries it).
pub fn lookup_verdict(answer: Result<&RouteMessage, i32>) -> Lookup {
    use nix::libc::{EACCES, EHOSTUNREACH, EINVAL};
    match answer {
        // fib lookups of blackhole, unreachable and prohibit routes fail
        // with the route type's own error.
        Err(code) if [EINVAL, EHOSTUNREACH, EACCES].contains(&-code) => Lookup::Dropped,
        Err(_) => Lookup::Clear,
        Ok(msg) => {
            let Some(addr) = destination(msg) else {
                return Lookup::Clear;
            };
            if msg.header.destination_prefix_length != host_len(addr) {
                return Lookup::Clear;
            }
            if kind_of(msg.header.kind).is_some() {
                return Lookup::Dropped;
            }
            Lookup::ForeignHost(format!(
                "{addr}/{} ({:?}, protocol {}, metric {}, table {})",
                host_len(addr),
                msg.header.kind,
                u8::from(msg.header.protocol),
                metric(msg),
                table(msg)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Marker = Marker {
        protocol: 252,
        metric: 666,
        table: 254,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn bytes(req: &Request) -> Vec<u8> {
        let mut req = req.clone();
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        buf
    }

    fn inner(req: &Request) -> RouteMessage {
        match &req.payload {
            netlink_packet_core::NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewRoute(m)
                | RouteNetlinkMessage::DelRoute(m)
                | RouteNetlinkMessage::GetRoute(m),
            ) => m.clone(),
            other => panic!("unexpected payload {other:?}"),
        }
    }

    #[test]
    fn add_v4_is_what_ip_route_sends() {
        // `ip route add blackhole 198.51.100.7/32 proto 252 metric 666` as
        // iproute2 6.1 sends it (strace -e sendmsg), sequence number aside.
        let ip_route: [u8; 44] = [
            44, 0, 0, 0, // nlmsg_len
            24, 0, // RTM_NEWROUTE
            0x05, 0x06, // REQUEST | ACK | EXCL | CREATE
            0, 0, 0, 0, // nlmsg_seq (ignored below)
            0, 0, 0, 0, // nlmsg_pid
            2, 32, 0, 0, // inet, /32, src len, tos
            254, 252, 0, 6, // main, proto 252, universe, blackhole
            0, 0, 0, 0, // rtm_flags
            8, 0, 1, 0, 198, 51, 100, 7, // RTA_DST
            8, 0, 6, 0, 0x9a, 0x02, 0, 0, // RTA_PRIORITY 666
        ];
        let mut ours = bytes(&add(ip("198.51.100.7"), RouteKind::Blackhole, M));
        ours[8..12].fill(0);
        assert_eq!(ours, ip_route);
    }

    #[test]
    fn add_v6_and_types() {
        let m = inner(&add(ip("2001:db8::7"), RouteKind::Prohibit, M));
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert_eq!(m.header.destination_prefix_length, 128);
        assert_eq!(m.header.kind, RouteType::Prohibit);
        let m = inner(&add(ip("198.51.100.7"), RouteKind::Unreachable, M));
        assert_eq!(m.header.kind, RouteType::Unreachable);
    }

    #[test]
    fn big_table_goes_into_an_attribute() {
        let marker = Marker { table: 1000, ..M };
        let m = inner(&del(ip("198.51.100.7"), marker));
        assert_eq!(m.header.table, 0);
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
        assert_eq!(m.header.scope, RouteScope::NoWhere);
        assert_eq!(m.header.kind, RouteType::Unspec);
    }

    #[test]
    fn roundtrip_and_ownership() {
        let req = add(ip("2001:db8::9"), RouteKind::Blackhole, M);
        let b = bytes(&req);
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b).unwrap();
        let m = inner(&req);
        assert_eq!(inner(&parsed), m, "our bytes parse back to the same route");
        assert_eq!(
            owned(&m, M),
            Some(OwnedRoute {
                addr: ip("2001:db8::9"),
                kind: RouteKind::Blackhole
            })
        );
        assert_eq!(owned(&m, Marker { metric: 1, ..M }), None);
        assert_eq!(owned(&m, Marker { protocol: 4, ..M }), None);
        assert_eq!(owned(&m, Marker { table: 100, ..M }), None);
        let mut tos = m.clone();
        tos.header.tos = 0x10;
        assert_eq!(owned(&tos, M), None);
    }

    #[test]
    fn errors_find_their_request() {
        for s in ["198.51.100.7", "2001:db8::7"] {
            let b = bytes(&del(ip(s), M));
            assert_eq!(failed_destination(&b), Some(ip(s)));
        }
        assert_eq!(failed_destination(&[1, 2, 3]), None);
        assert_eq!(
            failed_destination(&bytes(&add(ip("198.51.100.7"), RouteKind::Blackhole, M))[..20]),
            None
        );
    }

    #[test]
    fn lookup_answers() {
        use nix::libc::{EACCES, EHOSTUNREACH, EINVAL, ENETUNREACH};
        assert_eq!(lookup_verdict(Err(-EINVAL)), Lookup::Dropped);
        assert_eq!(lookup_verdict(Err(-EHOSTUNREACH)), Lookup::Dropped);
        assert_eq!(lookup_verdict(Err(-EACCES)), Lookup::Dropped);
        assert_eq!(lookup_verdict(Err(-ENETUNREACH)), Lookup::Clear);
        let mut unicast = inner(&add(ip("198.51.100.9"), RouteKind::Blackhole, M));
        unicast.header.kind = RouteType::Unicast;
        unicast.header.protocol = RouteProtocol::Boot;
        assert!(matches!(
            lookup_verdict(Ok(&unicast)),
            Lookup::ForeignHost(_)
        ));
        unicast.header.destination_prefix_length = 24;
        assert_eq!(lookup_verdict(Ok(&unicast)), Lookup::Clear);
        let m = inner(&lookup(ip("198.51.100.9")));
        assert!(m.header.flags.contains(RouteFlags::FibMatch));
    }
}
