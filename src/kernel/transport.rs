//! The rtnetlink transport: one connection per run, requests pipelined in
//! batches so that 100,000 routes cost a few thousand system calls instead
//! of hundreds of thousands. Knows messages and replies, not routes.

use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::stream::{self, StreamExt, TryStreamExt};
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_DUMP_INTR,
};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::proto::{self, ConnectionHandle, ReplyExpectation};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, AsyncSocket, SocketAddr};

use super::KernelError;
use crate::route::{Refusal, Request};

/// Messages per datagram, with a forced receive buffer and without one (the
/// default buffer, about 200 KB, holds the replies of a few dozen lookups).
const BATCH_BIG: usize = 256;
const BATCH_SMALL: usize = 16;
/// Receive buffer we ask for (needs CAP_NET_ADMIN, which we need anyway).
pub(super) const RCVBUF: usize = 32 << 20;
/// Datagrams in flight with a forced receive buffer, and without one.
const WINDOW_BIG: usize = 16;
const WINDOW_SMALL: usize = 1;
/// A reply that never comes means the kernel dropped it (receive buffer
/// overrun). fail2ban kills an action after 60 s (`timeout`): give up well
/// before, so that it is f2b-route that reports, not fail2ban's kill.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The kernel's final word on one question: a route, an acknowledgement, or
/// a refusal.
pub type Answer = Result<Option<RouteMessage>, Refusal>;

pub struct Connection {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    /// Replies to messages that asked for none: the kernel's errors.
    unsolicited: RefCell<UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>>,
    window: usize,
    batch: usize,
}

impl Connection {
    /// Open the connection and spawn it on the current runtime.
    pub fn open() -> Result<Connection, KernelError> {
        let (mut conn, handle, unsolicited) =
            proto::new_connection::<RouteNetlinkMessage>(NETLINK_ROUTE)
                .map_err(KernelError::Unavailable)?;
        // The end of a dump carries its error code, and a batch's
        // acknowledgement the sequence number its errors are counted from:
        // we want to see both.
        conn.set_forward_done(true);
        conn.set_forward_ack(true);
        let socket = conn.socket_mut().socket_mut();
        socket
            .set_netlink_get_strict_chk(true)
            .map_err(KernelError::Unavailable)?;
        // Errors explain a request the kernel could not parse; a lookup
        // that ended in a blackhole (the same EINVAL) carries no explanation.
        socket.set_ext_ack(true).map_err(KernelError::Unavailable)?;
        let (window, batch) = if force_rcvbuf(socket.as_raw_fd(), RCVBUF).is_ok() {
            (WINDOW_BIG, BATCH_BIG)
        } else {
            (WINDOW_SMALL, BATCH_SMALL)
        };
        tokio::spawn(conn);
        Ok(Connection {
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
    ) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>, KernelError> {
        let replies = self
            .handle
            .request_batch_with_expectation(messages, SocketAddr::new(0, 0))
            .map_err(|_| KernelError::Closed)?;
        tokio::time::timeout(REPLY_TIMEOUT, replies.collect::<Vec<_>>())
            .await
            .map_err(|_| KernelError::Timeout(REPLY_TIMEOUT))
    }

    /// Questions (route lookups) that each get exactly one reply, a route or
    /// an error: one answer per address of `addrs`, in order. Batches of
    /// `batch`, `window` of them in flight, each built only when it is sent.
    pub async fn ask(
        &self,
        addrs: &[IpAddr],
        request: impl Fn(IpAddr) -> Request,
    ) -> Result<Vec<Answer>, KernelError> {
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
                        let explained = msg.header.flags & NLM_F_ACK_TLVS != 0;
                        match msg.payload {
                            NetlinkPayload::Error(e) if e.raw_code() == 0 => Some((seq, Ok(None))),
                            NetlinkPayload::Error(e) => Some((
                                seq,
                                Err(Refusal {
                                    errno: -e.raw_code(),
                                    explained,
                                }),
                            )),
                            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                                Some((seq, Ok(Some(r))))
                            }
                            _ => None,
                        }
                    })
                    .collect();
                if finals.len() != batch.len() {
                    return Err(KernelError::Replies {
                        got: finals.len(),
                        sent: batch.len(),
                    });
                }
                finals.sort_by_key(|(seq, _)| *seq);
                Ok(finals.into_iter().map(|(_, a)| a).collect())
            })
            .buffered(self.window)
            .try_collect()
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// Changes (add, del), one message per item of `items`: the answer is
    /// `Ok` or the errno, in order. Only the last message of a batch asks
    /// for an acknowledgement; the kernel processes a datagram in order and
    /// answers the others only when they fail, so one reply closes a batch
    /// of 256 instead of 256 replies. Those failures arrive on the
    /// connection's unsolicited stream before the batch's acknowledgement,
    /// each with the sequence number of the request it answers; the
    /// protocol numbers a batch's messages consecutively, and the
    /// acknowledgement carries the last one's, so each failure finds its
    /// item (several may be about one address). Each batch's messages are
    /// built (`request`) only when it is sent.
    pub async fn change<T>(
        &self,
        items: &[T],
        request: impl Fn(&T) -> Request,
    ) -> Result<Vec<Result<(), i32>>, KernelError> {
        let mut answers: Vec<Result<(), i32>> = items.iter().map(|_| Ok(())).collect();
        // Per batch: the index of its first item, its length, and the
        // replies it expected (the last message's answer).
        let replies: Vec<(usize, usize, Vec<NetlinkMessage<RouteNetlinkMessage>>)> =
            stream::iter(items.chunks(self.batch).enumerate())
                .map(|(n, batch)| {
                    let request = &request;
                    async move {
                        let last = batch.len() - 1;
                        let messages = batch.iter().enumerate().map(|(i, item)| {
                            let mut msg = request(item);
                            if i == last {
                                msg.header.flags |= NLM_F_ACK;
                                (msg, ReplyExpectation::Expected)
                            } else {
                                msg.header.flags &= !NLM_F_ACK;
                                (msg, ReplyExpectation::NotExpected)
                            }
                        });
                        let replies = self.send_batch(messages).await?;
                        Ok::<_, KernelError>((n * self.batch, batch.len(), replies))
                    }
                })
                .buffered(self.window)
                .try_collect()
                .await?;
        // Sequence number of each batch's first message -> its first item.
        let mut firsts: Vec<(u32, usize, usize)> = Vec::with_capacity(replies.len());
        for (start, len, msgs) in replies {
            let last = msgs
                .iter()
                .find_map(|m| match &m.payload {
                    NetlinkPayload::Error(_) => Some(m.header.sequence_number),
                    _ => None,
                })
                .ok_or(KernelError::Replies { got: 0, sent: 1 })?;
            let first = last.wrapping_sub(len as u32 - 1);
            firsts.push((first, start, len));
            for msg in msgs {
                if let NetlinkPayload::Error(e) = &msg.payload {
                    if e.raw_code() != 0 {
                        answers[start + len - 1] = Err(-e.raw_code());
                    }
                }
            }
        }
        let mut unsolicited = self.unsolicited.borrow_mut();
        while let Ok((msg, _)) = unsolicited.try_recv() {
            let NetlinkPayload::Error(e) = &msg.payload else {
                if matches!(msg.payload, NetlinkPayload::Overrun(_)) {
                    return Err(KernelError::Overrun);
                }
                continue;
            };
            if e.raw_code() == 0 {
                continue;
            }
            let seq = msg.header.sequence_number;
            let item = firsts.iter().find_map(|&(first, start, len)| {
                let offset = seq.wrapping_sub(first) as usize;
                (offset < len).then_some(start + offset)
            });
            match item {
                Some(i) => answers[i] = Err(-e.raw_code()),
                None => return Err(KernelError::Unattributable(e.to_io())),
            }
        }
        Ok(answers)
    }

    /// Run a dump, handing each message to `each` as it arrives (a dump of
    /// 100,000 routes is never held in memory whole).
    pub async fn dump(
        &self,
        request: Request,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), KernelError> {
        let mut replies = self
            .handle
            .request(request, SocketAddr::new(0, 0))
            .map_err(|_| KernelError::Closed)?;
        loop {
            let next = tokio::time::timeout(REPLY_TIMEOUT, replies.next())
                .await
                .map_err(|_| KernelError::Timeout(REPLY_TIMEOUT))?;
            let Some(msg) = next else {
                return Ok(());
            };
            if msg.header.flags & NLM_F_DUMP_INTR != 0 {
                // The table changed while it was being read: what we have
                // may miss routes or show some twice. Acting on it (repair,
                // flush) could be wrong, so say so instead.
                return Err(KernelError::DumpInterrupted);
            }
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => each(m),
                NetlinkPayload::Error(e) if e.raw_code() != 0 => {
                    return Err(KernelError::Dump(e.to_io()))
                }
                // A table that does not exist yet holds no routes of ours.
                NetlinkPayload::Done(d) if d.code < 0 && -d.code != nix::libc::ENOENT => {
                    return Err(KernelError::Dump(io::Error::from_raw_os_error(-d.code)))
                }
                _ => {}
            }
        }
    }
}

/// SO_RCVBUFFORCE: room for the answers of a whole window of batches.
pub(super) fn force_rcvbuf(fd: std::os::fd::RawFd, size: usize) -> io::Result<()> {
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
