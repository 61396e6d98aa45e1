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
    /// drop (a resync counts them all, a batch those it brought): their
    /// addresses are not in the sets. With FRR, a discard next hop that no
    /// longer resolves to a blackhole.
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

    /// Make or adopt the table, then make its sets equal to the routes.
    pub async fn resync(&mut self) -> Result<Changed, Error> {
        self.nft.run(&nft::create_script(&self.rules))?;
        let mut current = self.nft.list_set(nft::SET4)?;
        current.extend(self.nft.list_set(nft::SET6)?);
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

    /// Apply route notifications, in the order they came: the last word on
    /// an address wins. `Err` leaves the sets as they were; resync then.
    /// A host route that forwards is not applied but counted: it may have
    /// replaced a dropping one, which the kernel does not announce as
    /// deleted, so the caller resyncs.
    pub fn apply(&mut self, events: &[Event]) -> Result<Changed, Error> {
        let mut last: HashMap<IpAddr, bool> = HashMap::new();
        let mut forwarding = 0;
        for e in events {
            let (msg, present) = match e {
                Event::New(m) => (m, true),
                Event::Del(m) => (m, false),
                Event::Overrun => continue,
            };
            match route::mirrored(msg, self.protocol, self.table) {
                Some(host) if host.drops => {
                    last.insert(host.addr, present);
                }
                Some(_) if present => forwarding += 1,
                _ => {}
            }
        }
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
