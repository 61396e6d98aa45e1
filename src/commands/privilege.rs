//! Changing routes needs CAP_NET_ADMIN. Asked before anything changes, so
//! that a run without it changes nothing (not even the ledger) and says so.

use crate::error::Error;

pub fn require_net_admin() -> Result<(), Error> {
    if has_net_admin() {
        Ok(())
    } else {
        Err(Error::NoPermission(
            "CAP_NET_ADMIN is missing: run as root (fail2ban does)",
        ))
    }
}

/// Whether CAP_NET_ADMIN is in this process's effective set: one
/// capget(2), or, where that fails, whether we are root.
fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget reads the header and writes two data structs, the
    // layout _LINUX_CAPABILITY_VERSION_3 defines; both live across the call.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    if rc == 0 {
        data[(CAP_NET_ADMIN / 32) as usize].effective & (1 << (CAP_NET_ADMIN % 32)) != 0
    } else {
        nix::unistd::geteuid().is_root()
    }
}
