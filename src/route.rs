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

use ipnet::IpNet;

use crate::addr::host_len;
use crate::model::{Lookup, Marker, OwnedRoute, RouteDesc, RouteKind};

/// The loopback interface's index, in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

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

/// Delete our route of type `kind` for `ip`. The kernel matches protocol,
/// metric and table, so a route of anyone else is never hit (it answers
/// ESRCH instead); and only a dropping route is: IPv4 matches the type,
/// IPv6 ignores it but matches the device, which is `lo` for every
/// blackhole, unreachable and prohibit route and for no forwarding one.
pub fn del(ip: IpAddr, kind: RouteKind, marker: Marker) -> Request {
    let mut builder = host_route(ip)
        .kind(route_type(kind))
        .protocol(RouteProtocol::from(marker.protocol))
        .scope(RouteScope::NoWhere)
        .priority(marker.metric);
    if ip.is_ipv6() {
        builder = builder.output_interface(LOOPBACK_IFINDEX);
    }
    let msg = in_table(builder, marker.table);
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
    dump_of(family, marker.protocol, marker.table)
}

/// Dump one family's routes of `protocol` in `table` (strict checking
/// filters in the kernel).
pub fn dump_of(family: AddressFamily, protocol: u8, table: u32) -> Request {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.protocol = RouteProtocol::from(protocol);
    if table > 255 {
        msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
        msg.attributes.push(RouteAttribute::Table(table));
    } else {
        msg.header.table = table as u8;
    }
    request(
        RouteNetlinkMessage::GetRoute(msg),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
}

/// A host route with the mirror's protocol in its table (a firewall's BGP
/// daemon's, whatever its metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRoute {
    pub addr: IpAddr,
    /// Of a dropping type: the mirror copies it. One that forwards (FRR's
    /// route whose discard next hop resolved elsewhere) it only reports.
    pub drops: bool,
}

/// The host route of `protocol` in `table` that `msg` is, if it is one.
pub fn mirrored(msg: &RouteMessage, protocol: u8, table: u32) -> Option<HostRoute> {
    let addr = destination(msg)?;
    let host = u8::from(msg.header.protocol) == protocol
        && self::table(msg) == table
        && msg.header.tos == 0
        && msg.header.destination_prefix_length == host_len(addr);
    host.then(|| HostRoute {
        addr,
        drops: kind_of(msg.header.kind).is_some(),
    })
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
    Some(OwnedRoute {
        addr: carrying(msg, marker)?,
        kind: kind_of(msg.header.kind)?,
    })
}

/// The address of a host route carrying `marker`, whatever its type. A TOS
/// route is not one we make, nor one our deletes (TOS 0) could remove.
fn carrying(msg: &RouteMessage, marker: Marker) -> Option<IpAddr> {
    let addr = destination(msg)?;
    let carries = u8::from(msg.header.protocol) == marker.protocol
        && msg.header.tos == 0
        && metric(msg) == marker.metric
        && table(msg) == marker.table
        && msg.header.destination_prefix_length == host_len(addr);
    carries.then_some(addr)
}

/// A host route carrying our marker, whatever its type: its address, its
/// kind if it is a dropping one (`None`: someone else's, of another type),
/// and its description.
pub fn marked(
    msg: &RouteMessage,
    marker: Marker,
) -> Option<(IpAddr, Option<RouteKind>, RouteDesc)> {
    let addr = carrying(msg, marker)?;
    Some((addr, kind_of(msg.header.kind), describe(msg, addr)))
}

/// iproute2's name of a route type.
fn type_name(t: RouteType) -> &'static str {
    match t {
        RouteType::Unicast => "unicast",
        RouteType::Local => "local",
        RouteType::Broadcast => "broadcast",
        RouteType::Anycast => "anycast",
        RouteType::Multicast => "multicast",
        RouteType::BlackHole => "blackhole",
        RouteType::Unreachable => "unreachable",
        RouteType::Prohibit => "prohibit",
        RouteType::Throw => "throw",
        RouteType::Nat => "nat",
        RouteType::ExternalResolve => "xresolve",
        _ => "unspec",
    }
}

fn describe(msg: &RouteMessage, addr: IpAddr) -> RouteDesc {
    let len = msg.header.destination_prefix_length;
    RouteDesc {
        kind: type_name(msg.header.kind),
        prefix: IpNet::new(addr, len).unwrap_or_else(|_| IpNet::from(addr)),
        protocol: u8::from(msg.header.protocol),
        metric: metric(msg),
        table: table(msg),
    }
}

/// How the kernel answered a route lookup without a route: its errno, and
/// whether it attached extended-ack attributes (which it does for a request
/// it could not parse, never for a lookup that found a dropping route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub errno: i32,
    pub explained: bool,
}

/// Read the answer to [`lookup`] for `addr`: a route message, or a refusal.
/// An answer not understood is `Err` with its errno: never "clear".
pub fn lookup_verdict(
    addr: IpAddr,
    answer: Result<Option<&RouteMessage>, Refusal>,
) -> Result<Lookup, i32> {
    use nix::libc::{EACCES, EAGAIN, EHOSTUNREACH, EINVAL, ENETUNREACH};
    match answer {
        // A lookup that ends in a blackhole, unreachable or prohibit route
        // fails with that route type's own error (the kernel's fib_props).
        // EINVAL is also the answer to a malformed request: that one comes
        // with an explanation, the blackhole's never does.
        Err(Refusal {
            errno: EINVAL,
            explained: false,
        }) => Ok(Lookup::Dropped),
        Err(Refusal { errno, .. }) if errno == EHOSTUNREACH || errno == EACCES => {
            Ok(Lookup::Dropped)
        }
        // No route at all, or a throw route that ends the lookup.
        Err(Refusal { errno, .. }) if errno == ENETUNREACH || errno == EAGAIN => Ok(Lookup::Clear),
        Err(Refusal { errno, .. }) => Err(errno),
        // An acknowledgement where a route was asked for.
        Ok(None) => Err(nix::libc::EPROTO),
        Ok(Some(msg)) => {
            let found = destination(msg).unwrap_or(addr);
            let kind = msg.header.kind;
            if matches!(
                kind,
                RouteType::Local | RouteType::Broadcast | RouteType::Anycast
            ) {
                return Ok(Lookup::Local(describe(msg, found)));
            }
            if msg.header.destination_prefix_length != host_len(addr) || destination(msg).is_none()
            {
                return Ok(Lookup::Clear);
            }
            if kind_of(kind).is_some() {
                return Ok(Lookup::Dropped);
            }
            Ok(Lookup::ForeignHost(describe(msg, found)))
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
    fn the_mirror_sees_host_routes_of_its_protocol_and_table() {
        let route = |dst: &str, len: u8, proto: u8, table: u32, kind: RouteType| {
            let mut m = RouteMessage::default();
            let addr = ip(dst);
            m.header.address_family = if addr.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            m.header.destination_prefix_length = len;
            m.header.protocol = RouteProtocol::from(proto);
            m.header.kind = kind;
            m.header.table = RouteHeader::RT_TABLE_UNSPEC;
            m.attributes.push(RouteAttribute::Table(table));
            m.attributes.push(RouteAttribute::Destination(match addr {
                IpAddr::V4(a) => RouteAddress::Inet(a),
                IpAddr::V6(a) => RouteAddress::Inet6(a),
            }));
            m
        };
        let drops = |a: &str| {
            Some(HostRoute {
                addr: ip(a),
                drops: true,
            })
        };
        let bh = RouteType::BlackHole;
        assert_eq!(
            mirrored(&route("203.0.113.9", 32, 186, 254, bh), 186, 254),
            drops("203.0.113.9")
        );
        assert_eq!(
            mirrored(
                &route("2001:db8::9", 128, 12, 252, RouteType::Unreachable),
                12,
                252
            ),
            drops("2001:db8::9")
        );
        // FRR's route whose discard next hop resolved elsewhere: reported.
        assert_eq!(
            mirrored(
                &route("203.0.113.9", 32, 186, 254, RouteType::Unicast),
                186,
                254
            ),
            Some(HostRoute {
                addr: ip("203.0.113.9"),
                drops: false
            })
        );
        // Another protocol, table or length: not the mirror's.
        assert_eq!(
            mirrored(&route("203.0.113.9", 32, 12, 254, bh), 186, 254),
            None
        );
        assert_eq!(
            mirrored(&route("203.0.113.9", 32, 186, 252, bh), 186, 254),
            None
        );
        assert_eq!(
            mirrored(&route("203.0.113.0", 24, 186, 254, bh), 186, 254),
            None
        );
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
        let m = inner(&del(ip("198.51.100.7"), RouteKind::Blackhole, marker));
        assert_eq!(m.header.table, 0);
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
        assert_eq!(m.header.scope, RouteScope::NoWhere);
    }

    #[test]
    fn deletes_name_a_dropping_type() {
        // IPv4 matches the type; IPv6 ignores it and matches the device,
        // lo for every dropping route.
        for kind in RouteKind::ALL {
            let m = inner(&del(ip("198.51.100.7"), kind, M));
            assert_eq!(m.header.kind, route_type(kind));
            assert!(!m
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Oif(_))));
            let m = inner(&del(ip("2001:db8::7"), kind, M));
            assert!(m
                .attributes
                .contains(&RouteAttribute::Oif(LOOPBACK_IFINDEX)));
            assert_eq!(m.header.kind, route_type(kind));
        }
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
    fn marked_routes_of_any_type() {
        let mut m = inner(&add(ip("2001:db8::9"), RouteKind::Blackhole, M));
        assert_eq!(marked(&m, M).map(|x| x.1), Some(Some(RouteKind::Blackhole)));
        m.header.kind = RouteType::Unicast;
        let (addr, kind, desc) = marked(&m, M).unwrap();
        assert_eq!((addr, kind), (ip("2001:db8::9"), None));
        assert_eq!(desc.kind, "unicast");
        assert_eq!(marked(&m, Marker { metric: 1, ..M }), None);
    }

    #[test]
    fn lookup_answers() {
        use nix::libc::{EACCES, EAGAIN, EHOSTUNREACH, EINVAL, ENETUNREACH, ENOMEM, EPERM};
        let a = ip("198.51.100.9");
        let refusal = |errno, explained| Err(Refusal { errno, explained });
        assert_eq!(
            lookup_verdict(a, refusal(EINVAL, false)),
            Ok(Lookup::Dropped)
        );
        assert_eq!(
            lookup_verdict(a, refusal(EHOSTUNREACH, false)),
            Ok(Lookup::Dropped)
        );
        assert_eq!(
            lookup_verdict(a, refusal(EACCES, false)),
            Ok(Lookup::Dropped)
        );
        assert_eq!(
            lookup_verdict(a, refusal(ENETUNREACH, false)),
            Ok(Lookup::Clear)
        );
        assert_eq!(lookup_verdict(a, refusal(EAGAIN, false)), Ok(Lookup::Clear));
        // Answers not understood are errors, never "clear": a malformed
        // request (EINVAL with an explanation), or any other errno.
        assert_eq!(lookup_verdict(a, refusal(EINVAL, true)), Err(EINVAL));
        assert_eq!(lookup_verdict(a, refusal(ENOMEM, false)), Err(ENOMEM));
        assert_eq!(lookup_verdict(a, refusal(EPERM, false)), Err(EPERM));
        assert_eq!(lookup_verdict(a, Ok(None)), Err(nix::libc::EPROTO));
        let mut unicast = inner(&add(a, RouteKind::Blackhole, M));
        unicast.header.kind = RouteType::Unicast;
        unicast.header.protocol = RouteProtocol::Boot;
        match lookup_verdict(a, Ok(Some(&unicast))) {
            Ok(Lookup::ForeignHost(d)) => {
                assert_eq!(
                    d.to_string(),
                    "unicast 198.51.100.9/32 proto 3 metric 666 table main"
                )
            }
            other => panic!("{other:?}"),
        }
        unicast.header.destination_prefix_length = 24;
        assert_eq!(lookup_verdict(a, Ok(Some(&unicast))), Ok(Lookup::Clear));
        // A local route of any length delivers to this host.
        let mut local = unicast.clone();
        local.header.kind = RouteType::Local;
        local.header.destination_prefix_length = 26;
        local.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet(
            "198.51.100.128".parse().unwrap(),
        ))];
        match lookup_verdict(ip("198.51.100.130"), Ok(Some(&local))) {
            Ok(Lookup::Local(d)) => {
                assert_eq!(
                    (d.kind, d.prefix.to_string()),
                    ("local", "198.51.100.128/26".into())
                )
            }
            other => panic!("{other:?}"),
        }
        let m = inner(&lookup(a));
        assert!(m.header.flags.contains(RouteFlags::FibMatch));
    }
}
