//! `serve`: f2b-route resident for one jail, for fail2ban's Python action
//! (`action.d/f2b-route.py`), so that a ban costs no process start. One
//! request a line on stdin, one answer a line on stdout, in order, over one
//! netlink connection and through the same ban service as the CLI: the same
//! guard, marker and holds, and each request takes the ledger's lock as one
//! CLI run does, so that other `serve` processes (one per jail) and CLI runs
//! work beside it.
//!
//! Protocol, version [`PROTOCOL`]:
//!
//! - at start, once, the greeting `f2b-route serve 1 jail=NAME type=TYPE`
//!   (after the same checks as `check`: a setup that cannot work exits with
//!   the CLI's error line and code instead, before any greeting);
//! - requests: `add IP`, `del IP` (this jail's hold; the route goes when no
//!   jail holds it), `flush` (this jail's holds), `ping` (the preflight);
//! - answers: `ok SUMMARY` (the CLI's summary line) or `err CODE MESSAGE`,
//!   CODE being the exit code the CLI would have ended with (src/exit.rs).
//!   A malformed request is `err 2 ...` and changes nothing; serving goes on.
//!
//! The end of stdin ends the process (exit 0); the routes stay, as after a
//! CLI run: fail2ban's `flush` at a jail's stop is what withdraws them.

use std::io::{BufRead, Read, Write};
use std::net::IpAddr;

use super::input::quote;
use super::privilege::require_net_admin;
use super::{report_banned, report_flushed, report_refused, report_unbanned, Ctx};
use crate::addr::parse_host;
use crate::cli::ServeArgs;
use crate::error::{Chain, Error, Result};
use crate::kernel::Kernel;
use crate::model::RouteKind;
use crate::service::Bans;

/// The version in the greeting: a client that does not know it must stop.
pub const PROTOCOL: u32 = 1;

/// The longest request read whole; a longer line is bad input, skipped.
const LINE_MAX: usize = 1024;

/// One request, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Add(IpAddr),
    Del(IpAddr),
    Flush,
    Ping,
}

pub async fn run(ctx: &mut Ctx, args: &ServeArgs) -> Result<()> {
    require_net_admin()?;
    let kernel = Kernel::connect()?;
    let jail = args.jail.as_str();
    let kind = args.kind.unwrap_or(ctx.config.route_type);
    let bans = Bans::new(&kernel, &ctx.config, &ctx.state_dir);
    bans.preflight().await?;
    let out = &mut ctx.out;
    let mut stdout = std::io::stdout().lock();
    let mut answer = |line: &str| -> Result<()> {
        stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush())
            .map_err(Error::Output)
    };
    answer(&format!(
        "f2b-route serve {PROTOCOL} jail={jail} type={kind}"
    ))?;
    // stdin is read blocking, on the runtime's only thread: between two
    // requests nothing of ours is pending on the runtime (each request is
    // awaited to its end before the next line is read), so the netlink
    // connection's task has nothing to do meanwhile.
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::with_capacity(LINE_MAX);
    loop {
        line.clear();
        let read = (&mut stdin)
            .take(LINE_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(Error::Stdin)?;
        if read == 0 {
            return Ok(());
        }
        let request = if line.len() > LINE_MAX && !line.ends_with(b"\n") {
            skip_line(&mut stdin)?;
            Err(Error::Usage(format!(
                "request longer than {LINE_MAX} bytes; nothing changed"
            )))
        } else if !line.ends_with(b"\n") {
            // The end of stdin in the middle of a line: the request may be
            // cut short (`add 198.51.100.12` of `add 198.51.100.123`).
            Err(Error::Usage(
                "request without its line end (stdin ended): not carried out; nothing changed"
                    .into(),
            ))
        } else {
            parse(&String::from_utf8_lossy(&line))
        };
        let result = match request {
            Ok(request) => handle(&bans, out, jail, kind, request).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(summary) => {
                out.answered(&summary);
                answer(&format!("ok {summary}"))?;
            }
            Err(e) => {
                let line = err_line(&e);
                out.answered(&line);
                answer(&line)?;
            }
        }
    }
}

/// Carry out one request; its summary, as the CLI's.
async fn handle(
    bans: &Bans<'_, Kernel>,
    out: &mut super::output::Report,
    jail: &str,
    kind: RouteKind,
    request: Request,
) -> Result<String> {
    match request {
        Request::Add(ip) => {
            let banned = match bans.ban(jail, &[ip], kind).await {
                Ok(b) => b,
                Err(e) => {
                    report_refused(out, jail, &e);
                    return Err(e.into());
                }
            };
            let summary = report_banned(out, jail, kind, &banned);
            banned.failures.into_result("add")?;
            Ok(summary)
        }
        Request::Del(ip) => {
            let unbanned = bans.unban(Some(jail), &[ip]).await?;
            let summary = report_unbanned(out, Some(jail), &unbanned);
            unbanned.routes.into_result()?;
            Ok(summary)
        }
        Request::Flush => {
            let flushed = bans.flush_jail(jail).await?;
            let summary = report_flushed(out, jail, &flushed);
            flushed.routes.into_result()?;
            Ok(summary)
        }
        Request::Ping => Ok(format!("pong: {}", bans.preflight().await?)),
    }
}

/// Read and drop the rest of an over-long line.
fn skip_line(stdin: &mut impl BufRead) -> Result<()> {
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let read = stdin
            .take(LINE_MAX as u64)
            .read_until(b'\n', &mut rest)
            .map_err(Error::Stdin)?;
        if read == 0 || rest.ends_with(b"\n") {
            return Ok(());
        }
    }
}

/// A request line (with or without its LF or CRLF).
fn parse(line: &str) -> Result<Request> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut words = line.split(' ');
    let verb = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    let usage = |what: String| Error::Usage(format!("{what}; nothing changed"));
    let address = |rest: &[&str]| -> Result<IpAddr> {
        match rest {
            [one] => parse_host(one).map_err(|reason| Error::BadAddress {
                input: quote(one),
                place: format!("request {verb}"),
                reason,
                more: 0,
            }),
            _ => Err(usage(format!(
                "{verb} takes one address, separated by one space (got {} words)",
                rest.len()
            ))),
        }
    };
    match verb {
        "add" => Ok(Request::Add(address(&rest)?)),
        "del" => Ok(Request::Del(address(&rest)?)),
        "flush" | "ping" if rest.is_empty() => Ok(if verb == "flush" {
            Request::Flush
        } else {
            Request::Ping
        }),
        "flush" | "ping" => Err(usage(format!("{verb} takes no argument"))),
        "" if rest.is_empty() => Err(usage("empty request".into())),
        other => Err(usage(format!(
            "unknown request {} (add IP, del IP, flush, ping)",
            quote(other)
        ))),
    }
}

/// `err CODE MESSAGE`, on one line whatever the message holds.
fn err_line(e: &Error) -> String {
    let message: String = Chain(e)
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("err {} {message}", e.exit().code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            parse("add 198.51.100.7\n").unwrap(),
            Request::Add(ip("198.51.100.7"))
        );
        assert_eq!(
            parse("del 2001:db8::7\r\n").unwrap(),
            Request::Del(ip("2001:db8::7"))
        );
        assert_eq!(parse("flush").unwrap(), Request::Flush);
        assert_eq!(parse("ping\n").unwrap(), Request::Ping);
    }

    #[test]
    fn malformed_requests_are_usage_errors() {
        for bad in [
            "",
            "\n",
            "add",
            "add \n",
            "add 198.51.100.7 198.51.100.8",
            "add  198.51.100.7",
            "add 198.51.100.0/24",
            "add -- 198.51.100.7",
            "ADD 198.51.100.7",
            "flush now",
            "ping pong",
            "list",
            " add 198.51.100.7",
            "add\t198.51.100.7",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.exit(), crate::exit::Exit::Usage, "{bad:?}: {e}");
            let line = err_line(&e);
            assert!(line.starts_with("err 2 "), "{line}");
            assert!(!line.contains('\n'), "{line:?}");
        }
    }

    #[test]
    fn an_answer_is_one_line() {
        let e = Error::Usage("a\nb\rc".into());
        assert_eq!(err_line(&e), "err 2 a b c");
    }
}
