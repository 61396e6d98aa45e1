//! `list`: the kernel's routes with our marker, joined with the ledger.

use std::io::{self, BufWriter, Write};

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::addr::{family, host_len};
use crate::cli::ListArgs;
use crate::kernel::Kernel;
use crate::ledger::{Access, Holders, Ledger};

/// One line of `list --json`. The field set is a stable interface.
#[derive(Serialize)]
struct Entry<'a> {
    address: String,
    prefix: String,
    family: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    protocol: u8,
    metric: u32,
    table: u32,
    jails: &'a [String],
    since: Option<u64>,
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

    let none = Holders::default();
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let written: io::Result<()> = (|| {
        for route in &routes {
            let address = route.addr.to_string();
            let h = holds.get(&address).unwrap_or(&none);
            let since = (!h.jails.is_empty()).then_some(h.since);
            if args.json {
                let entry = Entry {
                    prefix: format!("{address}/{}", host_len(route.addr)),
                    address,
                    family: family(route.addr),
                    kind: route.kind.as_str(),
                    protocol: ctx.marker.protocol,
                    metric: ctx.marker.metric,
                    table: ctx.marker.table,
                    jails: &h.jails,
                    since,
                };
                serde_json::to_writer(&mut out, &entry)?;
                out.write_all(b"\n")?;
            } else {
                let jails = if h.jails.is_empty() {
                    "-".to_string()
                } else {
                    h.jails.join(",")
                };
                let since = since.map_or_else(|| "-".to_string(), rfc3339);
                writeln!(
                    out,
                    "{:<39} {:<11} {:<24} {}",
                    route.addr, route.kind, jails, since
                )?;
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
}
