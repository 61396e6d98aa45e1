//! The mirror service, for a Linux firewall: keep f2b-route's nftables sets
//! equal to the host routes the firewall's BGP daemon installed from the
//! log host (a dropping type, a configured protocol and table), so that
//! nftables drops their addresses by source, as pf's table does.
//!
//! A resync reads both sides whole (a dump of the routes, a listing of the
//! sets) and changes the sets by the difference; between resyncs, route
//! notifications are applied in batches, one nft transaction each.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::firewall::{Nft, NftError};
use crate::kernel::{Event, Kernel, KernelError};
use crate::nft::{self, Rules};
use crate::route;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Nft(#[from] NftError),
}

/// What a resync or a batch changed in the sets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub added: usize,
    pub removed: usize,
    /// Addresses in the sets afterwards.
    pub total: usize,
    /// Host routes of the protocol in the table that forward rather than
    /// drop, whose addresses are therefore not in the sets: a resync counts
    /// them all; a batch counts those that replaced a route the sets had
    /// (a ban that now fails open: with FRR, a discard next hop that no
    /// longer resolves to a blackhole).
    pub forwarding: usize,
}

pub struct Mirror<'a> {
    kernel: &'a Kernel,
    nft: &'a Nft,
    protocol: u8,
    table: u32,
    rules: Rules,
    /// What the sets hold, as far as this run knows.
    current: HashSet<IpAddr>,
}

impl<'a> Mirror<'a> {
    pub fn new(kernel: &'a Kernel, nft: &'a Nft, protocol: u8, table: u32, rules: Rules) -> Self {
        Mirror {
            kernel,
            nft,
            protocol,
            table,
            rules,
            current: HashSet::new(),
        }
    }

    /// Make or adopt the table (its rules replaced, so their counters
    /// start again), then make its sets equal to the routes. At start, and
    /// when nftables' rules were reloaded (SIGHUP).
    pub async fn adopt(&mut self) -> Result<Changed, Error> {
        self.nft.run(&nft::create_script(&self.rules))?;
        self.resync().await
    }

    /// Make the sets equal to the routes: read both whole, change the sets
    /// by the difference. The table is adopted again only if it is gone.
    pub async fn resync(&mut self) -> Result<Changed, Error> {
        let current = match self.listed() {
            Ok(current) => current,
            Err(_) => {
                self.nft.run(&nft::create_script(&self.rules))?;
                self.listed()?
            }
        };
        let mut desired = HashSet::new();
        let mut forwarding = 0;
        self.kernel
            .mirrored_each(self.protocol, self.table, |host| {
                if host.drops {
                    desired.insert(host.addr);
                } else {
                    forwarding += 1;
                }
            })
            .await?;
        let add: Vec<IpAddr> = desired.difference(&current).copied().collect();
        let del: Vec<IpAddr> = current.difference(&desired).copied().collect();
        self.nft.run(&nft::update_script(&add, &del))?;
        self.current = desired;
        Ok(Changed {
            added: add.len(),
            removed: del.len(),
            total: self.current.len(),
            forwarding,
        })
    }

    fn listed(&self) -> Result<HashSet<IpAddr>, Error> {
        let mut current = self.nft.list_set(nft::SET4)?;
        current.extend(self.nft.list_set(nft::SET6)?);
        Ok(current)
    }

    /// Apply route notifications, in the order they came: the last word on
    /// an address wins. `Err` leaves the sets as they were; resync then.
    /// A new host route that forwards takes its address out: a BGP daemon
    /// keeps one route per prefix, and replacing a blackhole by a route
    /// that forwards (FRR, when the discard next hop resolves elsewhere)
    /// is announced as a new route only, never as a deletion.
    pub fn apply(&mut self, events: &[Event]) -> Result<Changed, Error> {
        let mut last: HashMap<IpAddr, bool> = HashMap::new();
        for e in events {
            let (msg, present) = match e {
                Event::New(m) => (m, true),
                Event::Del(m) => (m, false),
                Event::Overrun => continue,
            };
            if let Some(host) = route::mirrored(msg, self.protocol, self.table) {
                // A forwarding route's deletion says nothing about a
                // dropping one.
                if host.drops || present {
                    last.insert(host.addr, host.drops && present);
                }
            }
        }
        // Bans that now forward: in the sets, and their last word a
        // forwarding route.
        let forwarding = events
            .iter()
            .filter_map(|e| match e {
                Event::New(m) => route::mirrored(m, self.protocol, self.table),
                _ => None,
            })
            .filter(|h| {
                !h.drops && last.get(&h.addr) == Some(&false) && self.current.contains(&h.addr)
            })
            .map(|h| h.addr)
            .collect::<HashSet<IpAddr>>()
            .len();
        let add: Vec<IpAddr> = last
            .iter()
            .filter(|(ip, present)| **present && !self.current.contains(ip))
            .map(|(ip, _)| *ip)
            .collect();
        let del: Vec<IpAddr> = last
            .iter()
            .filter(|(ip, present)| !**present && self.current.contains(ip))
            .map(|(ip, _)| *ip)
            .collect();
        self.nft.run(&nft::update_script(&add, &del))?;
        for ip in &add {
            self.current.insert(*ip);
        }
        for ip in &del {
            self.current.remove(ip);
        }
        Ok(Changed {
            added: add.len(),
            removed: del.len(),
            total: self.current.len(),
            forwarding,
        })
    }

    /// Empty the sets (`--flush-on-exit`).
    pub fn flush(&mut self) -> Result<(), Error> {
        self.nft.run(&nft::flush_script())?;
        self.current.clear();
        Ok(())
    }
}
