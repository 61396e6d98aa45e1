//! The kernel's routing table, through rtnetlink: the only code that talks
//! to the kernel. `transport` moves messages in pipelined batches; this
//! module turns route operations into messages (from `route`) and the
//! kernel's answers into outcomes.

mod transport;
mod watch;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::model::{LocalAddr, Lookup, Marker, OwnedRoute, RouteDesc, RouteKind};
use crate::route;
pub use transport::REPLY_TIMEOUT;
use transport::{Answer, Connection};
pub use watch::{Event, Watch};

/// Extra delete rounds for one address (routes appended beside ours).
const MAX_ALIASES: usize = 8;

/// What went wrong talking to the kernel. Errors about one address of a
/// batch are not here: they come back per address, as `io::Error`s.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("netlink unavailable")]
    Unavailable(#[source] io::Error),
    #[error("the netlink connection closed")]
    Closed,
    #[error("no reply from the kernel within {0:?} (receive buffer overrun?)")]
    Timeout(Duration),
    #[error("receive buffer overrun: replies were lost")]
    Overrun,
    #[error("{got} replies to {sent} requests")]
    Replies { got: usize, sent: usize },
    #[error("an error from the kernel that answers no request of ours")]
    Unattributable(#[source] io::Error),
    #[error("the dump was interrupted by a concurrent change; run again")]
    DumpInterrupted,
    #[error("dump failed")]
    Dump(#[source] io::Error),
    #[error("the kernel's route lookup for {addr} gave an answer f2b-route does not understand")]
    Lookup {
        addr: IpAddr,
        #[source]
        source: io::Error,
    },
}

impl KernelError {
    /// The errno behind the error, where there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Unavailable(e)
            | KernelError::Unattributable(e)
            | KernelError::Dump(e)
            | KernelError::Lookup { source: e, .. } => e.raw_os_error(),
            _ => None,
        }
    }
}

/// How a delete went, for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Removed,
    /// No route of ours was there.
    Absent,
    /// A route of another type carries our marker at this IPv6 address:
    /// nothing was deleted there, for the kernel cannot be told which.
    Shared(Box<RouteDesc>),
}

/// How an add went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Created,
    /// A route with the same prefix and metric exists (ours, from an earlier add).
    Present,
}

pub struct Kernel {
    conn: Connection,
}

impl Kernel {
    /// Open the connection and spawn it on the current runtime.
    pub fn connect() -> Result<Kernel, KernelError> {
        Ok(Kernel {
            conn: Connection::open()?,
        })
    }

    /// Every address configured on this host's interfaces, with the
    /// interface's index.
    pub async fn local_addresses(&self) -> Result<Vec<LocalAddr>, KernelError> {
        let mut req =
            NetlinkMessage::from(RouteNetlinkMessage::GetAddress(AddressMessage::default()));
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut out = Vec::new();
        self.conn
            .dump(req, |m| {
                if let RouteNetlinkMessage::NewAddress(a) = m {
                    let local = a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let addr = local.or_else(|| {
                        a.attributes.iter().find_map(|x| match x {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        })
                    });
                    if let Some(addr) = addr {
                        out.push(LocalAddr {
                            addr: addr.to_canonical(),
                            ifindex: a.header.index,
                        });
                    }
                }
            })
            .await?;
        Ok(out)
    }

    /// What the kernel's route lookup finds for each address. An answer it
    /// cannot read is an error for the whole run, never "no route".
    pub async fn lookup(&self, addrs: &[IpAddr]) -> Result<Vec<Lookup>, KernelError> {
        let answers = self.conn.ask(addrs, route::lookup).await?;
        addrs
            .iter()
            .zip(answers)
            .map(|(ip, answer): (&IpAddr, Answer)| {
                route::lookup_verdict(*ip, answer.as_ref().map(Option::as_ref).map_err(|r| *r))
                    .map_err(|errno| KernelError::Lookup {
                        addr: *ip,
                        source: io::Error::from_raw_os_error(errno),
                    })
            })
            .collect()
    }

    /// Add our route for each address.
    pub async fn add(
        &self,
        addrs: &[IpAddr],
        kind: RouteKind,
        marker: Marker,
    ) -> Result<Vec<Result<Added, io::Error>>, KernelError> {
        let answers = self
            .conn
            .change(addrs, |ip| route::add(*ip, kind, marker))
            .await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Ok(()) => Ok(Added::Created),
                Err(nix::libc::EEXIST) => Ok(Added::Present),
                Err(errno) => Err(io::Error::from_raw_os_error(errno)),
            })
            .collect())
    }

    /// Delete our dropping routes for each address. `first` is the type
    /// tried first for IPv4 (the one `add` makes unless told otherwise).
    ///
    /// IPv4 deletes name the type, which the kernel matches: a delete of
    /// each dropping type, repeated while one succeeds (`ip route append`
    /// can put several routes with our marker on one address), removes
    /// exactly those. IPv6 deletes match prefix, metric, protocol and table
    /// but ignore the type, so what carries our marker at each address is
    /// dumped first: an address where a route of another type carries it
    /// too is left alone ([`Deleted::Shared`]), for the kernel might remove
    /// that one instead of ours.
    pub async fn del(
        &self,
        addrs: &[IpAddr],
        first: RouteKind,
        marker: Marker,
    ) -> Result<Vec<Result<Deleted, io::Error>>, KernelError> {
        let mut out: Vec<Result<Deleted, io::Error>> =
            addrs.iter().map(|_| Ok(Deleted::Absent)).collect();
        let v6: Vec<usize> = (0..addrs.len()).filter(|&i| addrs[i].is_ipv6()).collect();
        self.del_v6(addrs, &v6, marker, &mut out).await?;

        let others: Vec<RouteKind> = RouteKind::ALL.into_iter().filter(|k| *k != first).collect();
        // (index into addrs, the types to delete this round, rounds done)
        let mut pending: Vec<(usize, Vec<RouteKind>, usize)> = (0..addrs.len())
            .filter(|&i| addrs[i].is_ipv4())
            .map(|i| (i, vec![first], 0))
            .collect();
        while !pending.is_empty() {
            let requests: Vec<(IpAddr, RouteKind)> = pending
                .iter()
                .flat_map(|(i, kinds, _)| kinds.iter().map(|k| (addrs[*i], *k)))
                .collect();
            let mut answers = self.del_each(&requests, marker).await?.into_iter();
            let mut next = Vec::new();
            for (i, kinds, rounds) in pending {
                let mut removed = false;
                for _ in &kinds {
                    match answers.next().expect("an answer per request") {
                        Ok(true) => removed = true,
                        Ok(false) => {}
                        Err(e) => out[i] = Err(e),
                    }
                }
                if out[i].is_err() {
                    continue;
                }
                if removed {
                    out[i] = Ok(Deleted::Removed);
                    // One more round of every type: appended routes.
                    if rounds < MAX_ALIASES {
                        next.push((i, RouteKind::ALL.to_vec(), rounds + 1));
                    }
                } else if kinds.len() == 1 && rounds == 0 {
                    next.push((i, others.clone(), 1));
                }
            }
            pending = next;
        }
        Ok(out)
    }

    /// Delete each of `routes` as a dump listed it: IPv4 by its type, one
    /// request each (a dump lists each of several routes to one address);
    /// IPv6 as [`Kernel::del`] does.
    pub async fn del_listed(
        &self,
        routes: &[OwnedRoute],
        marker: Marker,
    ) -> Result<Vec<Result<Deleted, io::Error>>, KernelError> {
        let addrs: Vec<IpAddr> = routes.iter().map(|r| r.addr).collect();
        let mut out: Vec<Result<Deleted, io::Error>> =
            routes.iter().map(|_| Ok(Deleted::Absent)).collect();
        // One IPv6 route per address (the kernel allows no second with our
        // metric and protocol but a sibling, which del_v6 refuses anyway).
        let mut seen = std::collections::HashSet::new();
        let v6: Vec<usize> = (0..routes.len())
            .filter(|&i| addrs[i].is_ipv6() && seen.insert(addrs[i]))
            .collect();
        self.del_v6(&addrs, &v6, marker, &mut out).await?;
        let v4: Vec<usize> = (0..routes.len()).filter(|&i| addrs[i].is_ipv4()).collect();
        let requests: Vec<(IpAddr, RouteKind)> = v4
            .iter()
            .map(|&i| (routes[i].addr, routes[i].kind))
            .collect();
        for (i, answer) in v4.into_iter().zip(self.del_each(&requests, marker).await?) {
            out[i] = answer.map(|gone| {
                if gone {
                    Deleted::Removed
                } else {
                    Deleted::Absent
                }
            });
        }
        Ok(out)
    }

    /// The IPv6 half of a delete: the addresses `which` of `addrs`, checked
    /// against a dump of what carries our marker, then deleted.
    async fn del_v6(
        &self,
        addrs: &[IpAddr],
        which: &[usize],
        marker: Marker,
        out: &mut [Result<Deleted, io::Error>],
    ) -> Result<(), KernelError> {
        if which.is_empty() {
            return Ok(());
        }
        // Address -> (our dropping routes there, a route of another type).
        let mut there: HashMap<IpAddr, (usize, Option<RouteDesc>)> = HashMap::new();
        self.conn
            .dump(route::dump(AddressFamily::Inet6, marker), |m| {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    if let Some((addr, kind, desc)) = route::marked(&r, marker) {
                        let entry = there.entry(addr).or_default();
                        match kind {
                            Some(_) => entry.0 += 1,
                            None => entry.1 = Some(desc),
                        }
                    }
                }
            })
            .await?;
        let mut requests: Vec<(IpAddr, RouteKind)> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        for &i in which {
            match there.get(&addrs[i]) {
                // Nothing of ours there: nothing to delete, whatever else is.
                None | Some((0, _)) => {}
                Some((_, Some(desc))) => out[i] = Ok(Deleted::Shared(Box::new(desc.clone()))),
                Some((n, None)) => {
                    for _ in 0..*n {
                        requests.push((addrs[i], RouteKind::Blackhole));
                        owners.push(i);
                    }
                }
            }
        }
        for (i, answer) in owners
            .into_iter()
            .zip(self.del_each(&requests, marker).await?)
        {
            match answer {
                Ok(true) => out[i] = Ok(Deleted::Removed),
                // Gone meanwhile: as good.
                Ok(false) => {}
                Err(e) => out[i] = Err(e),
            }
        }
        Ok(())
    }

    /// One delete per `(address, type)`; `Ok(false)` where there was none.
    async fn del_each(
        &self,
        routes: &[(IpAddr, RouteKind)],
        marker: Marker,
    ) -> Result<Vec<Result<bool, io::Error>>, KernelError> {
        let answers = self
            .conn
            .change(routes, |&(ip, kind)| route::del(ip, kind, marker))
            .await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Ok(()) => Ok(true),
                Err(nix::libc::ESRCH | nix::libc::ENOENT) => Ok(false),
                Err(errno) => Err(io::Error::from_raw_os_error(errno)),
            })
            .collect())
    }

    /// The host routes with `protocol` in `table`, IPv4 then IPv6: those
    /// of a dropping type are what `mirror` copies.
    pub async fn mirrored_each(
        &self,
        protocol: u8,
        table: u32,
        mut each: impl FnMut(route::HostRoute),
    ) -> Result<(), KernelError> {
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            self.conn
                .dump(route::dump_of(family, protocol, table), |m| {
                    if let RouteNetlinkMessage::NewRoute(r) = m {
                        if let Some(host) = route::mirrored(&r, protocol, table) {
                            each(host);
                        }
                    }
                })
                .await?;
        }
        Ok(())
    }

    /// Every route carrying our marker, IPv4 then IPv6, each handed to
    /// `each` as the dump delivers it.
    pub async fn owned_each(
        &self,
        marker: Marker,
        mut each: impl FnMut(OwnedRoute),
    ) -> Result<(), KernelError> {
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            self.conn
                .dump(route::dump(family, marker), |m| {
                    if let RouteNetlinkMessage::NewRoute(r) = m {
                        if let Some(owned) = route::owned(&r, marker) {
                            each(owned);
                        }
                    }
                })
                .await?;
        }
        Ok(())
    }
}

/// An interface's name, for messages.
pub fn interface_name(index: u32) -> String {
    nix::net::if_::if_indextoname(index)
        .ok()
        .and_then(|c| c.into_string().ok())
        .unwrap_or_else(|| format!("#{index}"))
}
