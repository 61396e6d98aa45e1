//! The kernel's routing table, through rtnetlink: the only code that talks
//! to the kernel. `transport` moves messages in pipelined batches; this
//! module turns route operations into messages (from `route`) and the
//! kernel's answers into outcomes.

mod transport;

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::model::{LocalAddr, Lookup, Marker, OwnedRoute, RouteKind};
use crate::route;
pub use transport::REPLY_TIMEOUT;
use transport::{Answer, Connection};

/// Extra delete passes for one address (routes appended beside ours).
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
    /// interface's name.
    pub async fn local_addresses(&self) -> Result<Vec<LocalAddr>, KernelError> {
        let mut req =
            NetlinkMessage::from(RouteNetlinkMessage::GetAddress(AddressMessage::default()));
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut out = Vec::new();
        let mut names: std::collections::HashMap<u32, String> = std::collections::HashMap::new();
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
                            addr: canonical(addr),
                            interface: names
                                .entry(a.header.index)
                                .or_insert_with(|| ifname(a.header.index))
                                .clone(),
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
            .change(addrs, |ip| *ip, |ip| route::add(*ip, kind, marker))
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

    /// Delete our dropping routes for each address; `Ok(false)` when there
    /// was none. `first` is the type tried first (the one `add` makes
    /// unless told otherwise); the others follow for IPv4, whose deletes
    /// match the type. The kernel removes one route per request, and IPv4
    /// may hold several with our marker for one address (`ip route
    /// append`), so a delete that succeeded is repeated until none is left.
    pub async fn del(
        &self,
        addrs: &[IpAddr],
        first: RouteKind,
        marker: Marker,
    ) -> Result<Vec<Result<bool, io::Error>>, KernelError> {
        let order: Vec<RouteKind> = std::iter::once(first)
            .chain(RouteKind::ALL.into_iter().filter(|k| *k != first))
            .collect();
        let mut outcomes: Vec<Result<bool, io::Error>> = addrs.iter().map(|_| Ok(false)).collect();
        // (index into addrs, index into order, deletes done for it)
        let mut pending: Vec<(usize, usize, usize)> = (0..addrs.len()).map(|i| (i, 0, 0)).collect();
        while !pending.is_empty() {
            let batch: Vec<(IpAddr, RouteKind)> = pending
                .iter()
                .map(|&(i, k, _)| (addrs[i], order[k]))
                .collect();
            let answers = self.del_once(&batch, marker).await?;
            let mut next = Vec::new();
            for ((i, k, done), answer) in pending.into_iter().zip(answers) {
                match answer {
                    Ok(true) => {
                        outcomes[i] = Ok(true);
                        if done < MAX_ALIASES {
                            next.push((i, k, done + 1));
                        }
                    }
                    // None of this type: the next type (IPv6 ignores the type).
                    Ok(false) => {
                        if addrs[i].is_ipv4() && k + 1 < order.len() {
                            next.push((i, k + 1, done));
                        }
                    }
                    Err(e) => outcomes[i] = Err(e),
                }
            }
            pending = next;
        }
        Ok(outcomes)
    }

    /// Delete each of `routes` as a dump listed it, one request each (a
    /// dump lists each of several routes to one address).
    pub async fn del_listed(
        &self,
        routes: &[OwnedRoute],
        marker: Marker,
    ) -> Result<Vec<Result<bool, io::Error>>, KernelError> {
        let batch: Vec<(IpAddr, RouteKind)> = routes.iter().map(|r| (r.addr, r.kind)).collect();
        self.del_once(&batch, marker).await
    }

    async fn del_once(
        &self,
        routes: &[(IpAddr, RouteKind)],
        marker: Marker,
    ) -> Result<Vec<Result<bool, io::Error>>, KernelError> {
        let answers = self
            .conn
            .change(routes, |r| r.0, |&(ip, kind)| route::del(ip, kind, marker))
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

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An interface's name, for messages.
fn ifname(index: u32) -> String {
    nix::net::if_::if_indextoname(index)
        .ok()
        .and_then(|c| c.into_string().ok())
        .unwrap_or_else(|| format!("#{index}"))
}
