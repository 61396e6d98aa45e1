//! f2b-route: blackhole host routes for fail2ban bans, owned and marked so
//! that FRR can carry exactly them to a firewall over BGP.
//!
//! The layers, bottom-up; each module imports only from below:
//!
//! - pure: `exit`, `addr`, `model` (route kinds, the marker, lookups),
//!   `config`, `guard`, `route` (rtnetlink messages), `render`, `nft`
//!   (the firewall's nftables table and scripts), `plan` (what a
//!   reconcile changes);
//! - I/O: `trusted` (opening paths as root), `kernel` (rtnetlink),
//!   `ledger` (holds on disk), `firewall` (the nft program), `syslog`,
//!   `fail2ban` (its bans, from its socket or its database);
//! - services: `service` (ban, unban, flush, repair, preflight, list,
//!   reconcile),
//!   `mirror` (the firewall's sets equal to its BGP daemon's routes);
//! - `error`, `cli`, `commands`, then `main`.

pub mod addr;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod exit;
pub mod fail2ban;
pub mod firewall;
pub mod guard;
pub mod kernel;
pub mod ledger;
pub mod mirror;
pub mod model;
pub mod nft;
pub mod plan;
pub mod render;
pub mod route;
pub mod service;
pub mod syslog;
pub mod trusted;
