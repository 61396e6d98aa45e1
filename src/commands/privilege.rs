//! Changing routes needs CAP_NET_ADMIN. Asked before anything changes, so
//! that a run without it changes nothing (not even the ledger) and says so.

use crate::error::Error;

pub fn require_net_admin() -> Result<(), Error> {
    const CAP_NET_ADMIN: u32 = 12;
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        });
    let allowed = match effective {
        Some(bits) => bits & (1 << CAP_NET_ADMIN) != 0,
        None => nix::unistd::geteuid().is_root(),
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::NoPermission(
            "CAP_NET_ADMIN is missing: run as root (fail2ban does)",
        ))
    }
}
