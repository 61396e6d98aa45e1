//! The only module that talks to the kernel: one rtnetlink connection per
//! run, requests pipelined in batches so that 100,000 routes cost a few
//! thousand system calls instead of hundreds of thousands.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::stream::{self, StreamExt, TryStreamExt};
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::proto::{self, ConnectionHandle, ReplyExpectation};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, AsyncSocket, SocketAddr};

use crate::config::RouteKind;
use crate::error::Error;
use crate::guard::LocalAddr;
use crate::route::{self, Lookup, Marker, OwnedRoute, Request};

/// Extra delete passes for one address (routes appended beside ours).
const MAX_ALIASES: usize = 8;
/// Messages per datagram, with a forced receive buffer and without one (the
/// default buffer, about 200 KB, holds the replies of a few dozen lookups).
const BATCH_BIG: usize = 256;
const BATCH_SMALL: usize = 16;
/// Receive buffer we ask for (needs CAP_NET_ADMIN, which we need anyway).
const RCVBUF: usize = 32 << 20;
/// Datagrams in flight with a forced receive buffer, and without one.
const WINDOW_BIG: usize = 16;
const WINDOW_SMALL: usize = 1;
/// A reply that never comes means the kernel dropped it (receive buffer
/// overrun); fail instead of hanging fail2ban.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Kernel {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    /// Replies to messages that asked for none: the kernel's errors.
    unsolicited: RefCell<UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>>,
    window: usize,
    batch: usize,
}

/// The kernel's final word on one message of a batch.
type Answer = Result<Option<RouteMessage>, i32>;

/// How an add went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Created,
    /// A route with the same prefix and metric exists (ours, from an earlier add).
    Present,
}

impl Kernel {
    /// Open the connection and spawn it on the current runtime.
    pub fn connect() -> Result<Kernel, Error> {
        let (mut conn, handle, unsolicited) =
            proto::new_connection::<RouteNetlinkMessage>(NETLINK_ROUTE)
                .map_err(Error::NetlinkUnavailable)?;
        // The end of a dump carries its error code: we want to see it.
        conn.set_forward_done(true);
        let socket = conn.socket_mut().socket_mut();
        socket
            .set_netlink_get_strict_chk(true)
            .map_err(Error::NetlinkUnavailable)?;
        let (window, batch) = if force_rcvbuf(socket.as_raw_fd(), RCVBUF).is_ok() {
            (WINDOW_BIG, BATCH_BIG)
        } else {
            (WINDOW_SMALL, BATCH_SMALL)
        };
        tokio::spawn(conn);
        Ok(Kernel {
            handle,
            unsolicited: RefCell::new(unsolicited),
            window,
            batch,
        })
    }

    /// Send one batch as one datagram and collect the replies it expects.
    async fn send_batch(
        &self,
        messages: impl IntoIterator<Item = (Request, ReplyExpectation)>,
    ) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>, Error> {
        let replies = self
            .handle
            .request_batch_with_expectation(messages, SocketAddr::new(0, 0))
            .map_err(|e| Error::Netlink(format!("request not sent: {e}")))?;
        tokio::time::timeout(REPLY_TIMEOUT, replies.collect::<Vec<_>>())
            .await
            .map_err(|_| {
                Error::Netlink("no reply from the kernel (receive buffer overrun?)".into())
            })
    }

    /// Questions (route lookups) that each get exactly one reply, a route or
    /// an error: one answer per address of `addrs`, in order. Batches of
    /// `batch`, `window` of them in flight, each built only when it is sent.
    async fn exchange_replies(
        &self,
        addrs: &[IpAddr],
        request: impl Fn(IpAddr) -> Request,
    ) -> Result<Vec<Answer>, Error> {
        let answers: Vec<Vec<Answer>> = stream::iter(addrs.chunks(self.batch))
            .map(|batch| async {
                let messages = batch
                    .iter()
                    .map(|ip| (request(*ip), ReplyExpectation::Expected));
                let replies = self.send_batch(messages).await?;
                // The protocol numbers a batch's messages consecutively, so
                // sequence order is batch order.
                let mut finals: Vec<(u32, Answer)> = replies
                    .into_iter()
                    .filter_map(|msg| {
                        let seq = msg.header.sequence_number;
                        match msg.payload {
                            NetlinkPayload::Error(e) if e.raw_code() == 0 => Some((seq, Ok(None))),
                            NetlinkPayload::Error(e) => Some((seq, Err(e.raw_code()))),
                            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                                Some((seq, Ok(Some(r))))
                            }
                            _ => None,
                        }
                    })
                    .collect();
                if finals.len() != batch.len() {
                    return Err(Error::Netlink(format!(
                        "{} replies to {} requests",
                        finals.len(),
                        batch.len()
                    )));
                }
                finals.sort_by_key(|(seq, _)| *seq);
                Ok(finals.into_iter().map(|(_, a)| a).collect())
            })
            .buffered(self.window)
            .try_collect()
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// Changes (add, del), one per address of `addrs`: the answer is `Ok`
    /// or the negative errno. Only the last message of a batch asks for an
    /// acknowledgement; the kernel processes a datagram in order and answers
    /// the others only when they fail, so one reply closes a batch of 256
    /// instead of 256 replies. Those failures arrive on the connection's
    /// unsolicited stream, before the batch's acknowledgement, each carrying
    /// the request it answers.
    /// Each batch's messages are built (`request`) only when it is sent.
    async fn exchange_changes(
        &self,
        addrs: &[IpAddr],
        request: impl Fn(IpAddr) -> Request,
    ) -> Result<Vec<Result<(), i32>>, Error> {
        let mut errors: HashMap<IpAddr, i32> = HashMap::new();
        let mut note = |replies: Vec<NetlinkMessage<RouteNetlinkMessage>>| -> Result<(), Error> {
            for msg in replies {
                if let NetlinkPayload::Error(e) = msg.payload {
                    if e.raw_code() != 0 {
                        let ip = route::failed_destination(&e.header).ok_or_else(|| {
                            Error::Netlink(format!("unattributable error: {}", e.to_io()))
                        })?;
                        errors.insert(ip, e.raw_code());
                    }
                }
            }
            Ok(())
        };
        let replies: Vec<Vec<_>> = stream::iter(addrs.chunks(self.batch))
            .map(|batch| async {
                let last = batch.len() - 1;
                let messages = batch.iter().enumerate().map(|(i, ip)| {
                    let mut msg = request(*ip);
                    if i == last {
                        msg.header.flags |= NLM_F_ACK;
                        (msg, ReplyExpectation::Expected)
                    } else {
                        msg.header.flags &= !NLM_F_ACK;
                        (msg, ReplyExpectation::NotExpected)
                    }
                });
                self.send_batch(messages).await
            })
            .buffered(self.window)
            .try_collect()
            .await?;
        for batch in replies {
            note(batch)?;
        }
        let mut unsolicited = self.unsolicited.borrow_mut();
        while let Ok((msg, _)) = unsolicited.try_recv() {
            if matches!(msg.payload, NetlinkPayload::Overrun(_)) {
                return Err(Error::Netlink(
                    "receive buffer overrun: replies were lost".into(),
                ));
            }
            note(vec![msg])?;
        }
        Ok(addrs
            .iter()
            .map(|ip| errors.get(ip).map_or(Ok(()), |code| Err(*code)))
            .collect())
    }

    /// Run a dump, handing each message to `each` as it arrives (a dump of
    /// 100,000 routes is never held in memory whole).
    async fn dump(
        &self,
        request: Request,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), Error> {
        let mut replies = self
            .handle
            .request(request, SocketAddr::new(0, 0))
            .map_err(|e| Error::Netlink(format!("request not sent: {e}")))?;
        while let Some(msg) = replies.next().await {
            if msg.header.flags & NLM_F_DUMP_INTR != 0 {
                // The table changed while it was being read: what we have
                // may miss routes or show some twice. Acting on it (check's
                // repairs, flush) could be wrong, so say so instead.
                return Err(Error::Netlink(
                    "the dump was interrupted by a concurrent change; run again".into(),
                ));
            }
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => each(m),
                NetlinkPayload::Error(e) if e.raw_code() != 0 => {
                    return Err(Error::Netlink(format!("dump failed: {}", e.to_io())))
                }
                // A table that does not exist yet holds no routes of ours.
                NetlinkPayload::Done(d) if d.code < 0 && -d.code != nix::libc::ENOENT => {
                    return Err(Error::Netlink(format!(
                        "dump failed: {}",
                        io::Error::from_raw_os_error(-d.code)
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every address configured on this host's interfaces.
    pub async fn local_addresses(&self) -> Result<Vec<LocalAddr>, Error> {
        let mut req =
            NetlinkMessage::from(RouteNetlinkMessage::GetAddress(AddressMessage::default()));
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut out = Vec::new();
        self.dump(req, |m| {
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
                        ifindex: a.header.index,
                    });
                }
            }
        })
        .await?;
        Ok(out)
    }

    /// The kernel's preferred route for each address.
    pub async fn lookup(&self, addrs: &[IpAddr]) -> Result<Vec<Lookup>, Error> {
        let answers = self.exchange_replies(addrs, route::lookup).await?;
        Ok(answers
            .iter()
            .map(|a| match a {
                Ok(Some(msg)) => route::lookup_verdict(Ok(msg)),
                Ok(None) => Lookup::Clear,
                Err(code) => route::lookup_verdict(Err(*code)),
            })
            .collect())
    }

    /// Add our route for each address.
    pub async fn add(
        &self,
        addrs: &[IpAddr],
        kind: RouteKind,
        marker: Marker,
    ) -> Result<Vec<Result<Added, io::Error>>, Error> {
        let answers = self
            .exchange_changes(addrs, |ip| route::add(ip, kind, marker))
            .await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Ok(_) => Ok(Added::Created),
                Err(code) if -code == nix::libc::EEXIST => Ok(Added::Present),
                Err(code) => Err(io::Error::from_raw_os_error(-code)),
            })
            .collect())
    }

    /// Delete our route for each address; `Ok(false)` when it was not there.
    /// The kernel removes one route per request, and IPv4 may hold several
    /// with our marker for one address (`ip route append`), so an address
    /// whose delete succeeded is deleted again until none is left.
    pub async fn del(
        &self,
        addrs: &[IpAddr],
        marker: Marker,
    ) -> Result<Vec<Result<bool, io::Error>>, Error> {
        let mut outcomes = self.del_once(addrs, marker).await?;
        let mut again: Vec<usize> = (0..addrs.len())
            .filter(|i| matches!(outcomes[*i], Ok(true)))
            .collect();
        for _ in 0..MAX_ALIASES {
            if again.is_empty() {
                break;
            }
            let batch: Vec<IpAddr> = again.iter().map(|i| addrs[*i]).collect();
            let more = self.del_once(&batch, marker).await?;
            let mut next = Vec::new();
            for (i, outcome) in again.into_iter().zip(more) {
                match outcome {
                    Ok(true) => next.push(i),
                    Ok(false) => {}
                    Err(e) => outcomes[i] = Err(e),
                }
            }
            again = next;
        }
        Ok(outcomes)
    }

    /// Delete every route of `routes`, one request each (a dump lists each
    /// of several routes to one address, so no repetition is needed).
    pub async fn del_listed(
        &self,
        routes: &[IpAddr],
        marker: Marker,
    ) -> Result<Vec<Result<bool, io::Error>>, Error> {
        self.del_once(routes, marker).await
    }

    async fn del_once(
        &self,
        addrs: &[IpAddr],
        marker: Marker,
    ) -> Result<Vec<Result<bool, io::Error>>, Error> {
        let answers = self
            .exchange_changes(addrs, |ip| route::del(ip, marker))
            .await?;
        Ok(answers
            .into_iter()
            .map(|a| match a {
                Ok(_) => Ok(true),
                Err(code) if -code == nix::libc::ESRCH || -code == nix::libc::ENOENT => Ok(false),
                Err(code) => Err(io::Error::from_raw_os_error(-code)),
            })
            .collect())
    }

    /// Every route carrying our marker, IPv4 then IPv6.
    pub async fn owned(&self, marker: Marker) -> Result<Vec<OwnedRoute>, Error> {
        let mut out = Vec::new();
        self.owned_each(marker, |r| out.push(r)).await?;
        Ok(out)
    }

    /// Every route carrying our marker, IPv4 then IPv6, each handed to
    /// `each` as the dump delivers it.
    pub async fn owned_each(
        &self,
        marker: Marker,
        mut each: impl FnMut(OwnedRoute),
    ) -> Result<(), Error> {
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            self.dump(route::dump(family, marker), |m| {
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
pub fn ifname(index: u32) -> String {
    nix::net::if_::if_indextoname(index)
        .ok()
        .and_then(|c| c.into_string().ok())
        .unwrap_or_else(|| format!("#{index}"))
}

/// SO_RCVBUFFORCE: room for the answers of a whole window of batches.
fn force_rcvbuf(fd: std::os::fd::RawFd, size: usize) -> io::Result<()> {
    let size = size as nix::libc::c_int;
    // SAFETY: fd is the open netlink socket; the option value is a c_int
    // that lives across the call.
    let rc = unsafe {
        nix::libc::setsockopt(
            fd,
            nix::libc::SOL_SOCKET,
            nix::libc::SO_RCVBUFFORCE,
            (&size as *const nix::libc::c_int).cast(),
            std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
