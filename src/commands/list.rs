//! `list`: the kernel's routes with our marker, joined with the ledger.

use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};

use serde::ser::{Serialize, SerializeSeq, Serializer};

use super::Ctx;
use crate::addr::{family, host_len};
use crate::cli::ListArgs;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::ledger::{Holders, Holds};
use crate::model::{Marker, OwnedRoute};
use crate::service::Listing;

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
    let out = Lines::new(
        BufWriter::with_capacity(1 << 16, io::stdout()),
        args.json,
        ctx.config.marker(),
    );
    match ctx.bans(&kernel).list(out).await? {
        // `f2b-route list | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Output(e)),
        Ok(()) => Ok(()),
    }
}

impl<W: Write + Send + 'static> Listing for Lines<W> {
    type Error = io::Error;

    fn route(&mut self, route: &OwnedRoute, h: Option<&Holders>, holds: &Holds) -> io::Result<()> {
        Lines::route(self, route, h, holds)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The output of `list`, one route at a time.
struct Lines<W: Write> {
    out: W,
    json: bool,
    marker: Marker,
    address: String,
    prefix: String,
    /// Bans come in bursts: consecutive routes mostly share their time.
    stamp: (u64, String),
}

impl<W: Write> Lines<W> {
    fn new(out: W, json: bool, marker: Marker) -> Self {
        Lines {
            out,
            json,
            marker,
            address: String::with_capacity(40),
            prefix: String::with_capacity(44),
            stamp: (u64::MAX, String::new()),
        }
    }

    fn route(&mut self, route: &OwnedRoute, h: Option<&Holders>, holds: &Holds) -> io::Result<()> {
        use std::fmt::Write as _;
        self.address.clear();
        match route.addr {
            IpAddr::V4(v4) => dotted_quad(&mut self.address, v4),
            IpAddr::V6(v6) => {
                let _ = write!(self.address, "{v6}");
            }
        }
        let since = h.map(|h| h.since);
        let out = &mut self.out;
        if self.json {
            self.prefix.clear();
            self.prefix.push_str(&self.address);
            self.prefix.push_str(if host_len(route.addr) == 32 {
                "/32"
            } else {
                "/128"
            });
            let entry = Entry {
                address: &self.address,
                prefix: &self.prefix,
                family: family(route.addr),
                kind: route.kind.as_str(),
                protocol: self.marker.protocol,
                metric: self.marker.metric,
                table: self.marker.table,
                jails: Jails(holds, h),
                since,
            };
            serde_json::to_writer(&mut *out, &entry)?;
            return out.write_all(b"\n");
        }
        column(out, &self.address, 40)?;
        column(out, route.kind.as_str(), 12)?;
        let mut width = 0;
        match h {
            Some(h) => {
                for (i, name) in holds.names(h).enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(name.as_bytes())?;
                    width += name.len() + usize::from(i > 0);
                }
            }
            None => {
                out.write_all(b"-")?;
                width = 1;
            }
        }
        out.write_all(&SPACES[..25usize.saturating_sub(width).max(1)])?;
        match since {
            Some(t) => {
                if self.stamp.0 != t {
                    self.stamp = (t, rfc3339(t));
                }
                out.write_all(self.stamp.1.as_bytes())?;
            }
            None => out.write_all(b"-")?,
        }
        out.write_all(b"\n")
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
