//! `list`: the kernel's routes with our marker, joined with the ledger.

use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};

use anyhow::Result;
use serde::ser::{Serialize, SerializeSeq, Serializer};

use super::Ctx;
use crate::addr::{family, host_len};
use crate::cli::ListArgs;
use crate::kernel::Kernel;
use crate::ledger::{Access, Holders, Holds, Ledger};

/// One line of `list --json`. The field set is a stable interface.
#[derive(serde::Serialize)]
struct Entry<'a> {
    address: &'a str,
    prefix: &'a str,
    family: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    protocol: u8,
    metric: u32,
    table: u32,
    jails: Jails<'a>,
    since: Option<u64>,
}

/// The names of an address's jails, serialised without collecting them.
struct Jails<'a>(&'a Holds, Option<&'a Holders>);

impl Serialize for Jails<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        if let Some(h) = self.1 {
            for name in self.0.names(h) {
                seq.serialize_element(name)?;
            }
        }
        seq.end()
    }
}

pub async fn run(ctx: &Ctx, args: &ListArgs) -> Result<()> {
    let kernel = Kernel::connect()?;
    let ledger = Ledger::open(&ctx.state_dir, Access::Read)?;
    // Read the ledger on a second thread while this one dumps the kernel.
    let reader = std::thread::spawn(move || ledger.all());
    let routes = kernel.owned(ctx.marker).await?;
    let holds = reader
        .join()
        .map_err(|_| anyhow::anyhow!("ledger reader panicked"))??;

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut address = String::with_capacity(40);
    let mut prefix = String::with_capacity(44);
    // Bans come in bursts: consecutive routes mostly share their time.
    let mut stamp = (u64::MAX, String::new());
    let written: io::Result<()> = (|| {
        for route in &routes {
            use std::fmt::Write as _;
            address.clear();
            match route.addr {
                IpAddr::V4(v4) => dotted_quad(&mut address, v4),
                IpAddr::V6(v6) => {
                    let _ = write!(address, "{v6}");
                }
            }
            let h = holds.get(&route.addr);
            let since = h.map(|h| h.since);
            if args.json {
                prefix.clear();
                prefix.push_str(&address);
                prefix.push_str(if host_len(route.addr) == 32 {
                    "/32"
                } else {
                    "/128"
                });
                let entry = Entry {
                    address: &address,
                    prefix: &prefix,
                    family: family(route.addr),
                    kind: route.kind.as_str(),
                    protocol: ctx.marker.protocol,
                    metric: ctx.marker.metric,
                    table: ctx.marker.table,
                    jails: Jails(&holds, h),
                    since,
                };
                serde_json::to_writer(&mut out, &entry)?;
                out.write_all(b"\n")?;
            } else {
                column(&mut out, &address, 40)?;
                column(&mut out, route.kind.as_str(), 12)?;
                let mut jails = 0;
                match h {
                    Some(h) => {
                        for (i, name) in holds.names(h).enumerate() {
                            if i > 0 {
                                out.write_all(b",")?;
                            }
                            out.write_all(name.as_bytes())?;
                            jails += name.len() + usize::from(i > 0);
                        }
                    }
                    None => {
                        out.write_all(b"-")?;
                        jails = 1;
                    }
                }
                out.write_all(&SPACES[..25usize.saturating_sub(jails).max(1)])?;
                match since {
                    Some(t) => {
                        if stamp.0 != t {
                            stamp = (t, rfc3339(t));
                        }
                        out.write_all(stamp.1.as_bytes())?
                    }
                    None => out.write_all(b"-")?,
                }
                out.write_all(b"\n")?;
            }
        }
        out.flush()
    })();
    match written {
        // `f2b-route list | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

const SPACES: [u8; 40] = [b' '; 40];

/// `Ipv4Addr`'s Display without the formatting machinery (a third of `list`'s time).
fn dotted_quad(out: &mut String, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// `text` left-aligned in `width` columns, at least one space after it.
fn column(out: &mut impl Write, text: &str, width: usize) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.write_all(&SPACES[..width.saturating_sub(text.len()).clamp(1, SPACES.len())])
}

/// Unix seconds as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_588_496), "2026-11-25T06:34:56Z");
    }

    #[test]
    fn dotted_quads_match_display() {
        for ip in [
            "0.0.0.0",
            "198.51.100.7",
            "10.0.100.255",
            "1.20.3.199",
            "255.255.255.255",
        ] {
            let ip: Ipv4Addr = ip.parse().unwrap();
            let mut s = String::new();
            dotted_quad(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }

    #[test]
    fn columns() {
        let mut out = Vec::new();
        column(&mut out, "198.51.100.7", 16).unwrap();
        column(&mut out, "a-much-longer-text-than-the-column", 4).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "198.51.100.7    a-much-longer-text-than-the-column "
        );
    }
}
