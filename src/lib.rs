//! f2b-route: blackhole host routes for fail2ban bans, owned and marked so
//! that FRR can carry exactly them to a firewall over BGP.

pub mod addr;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod exit;
pub mod guard;
pub mod kernel;
pub mod ledger;
pub mod render;
pub mod route;
pub mod syslog;
