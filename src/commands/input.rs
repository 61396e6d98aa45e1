//! The addresses of a command line, with "-" read from stdin: every one is
//! validated before anything changes.

use std::collections::HashSet;
use std::io::Read;
use std::net::IpAddr;

use crate::addr::parse_host;
use crate::error::Error;

/// Characters of a bad input quoted in its error: a line of a megabyte
/// must not land whole in fail2ban's log.
const QUOTE_MAX: usize = 64;

/// The addresses of `args`, "-" standing for stdin's lines, then those of
/// `literal` (the arguments after `--`, where "-" is no stdin but bad
/// input). Duplicates are dropped. An empty stdin is no address at all,
/// which is nothing to do, not an error. A line may end in CRLF.
pub fn addresses(args: &[String], literal: &[String]) -> Result<Vec<IpAddr>, Error> {
    if args.iter().filter(|a| *a == "-").count() > 1 {
        return Err(Error::StdinTwice);
    }
    let mut stdin_bytes = Vec::new();
    if args.iter().any(|a| a == "-") {
        std::io::stdin()
            .read_to_end(&mut stdin_bytes)
            .map_err(Error::Stdin)?;
    }
    // Invalid UTF-8 becomes U+FFFD, which no address contains: that line is
    // then reported as bad input like any other garbage.
    let stdin_text = String::from_utf8_lossy(&stdin_bytes);
    // (text, from stdin?, 1-based position); the place is only spelled out for an error.
    let mut inputs: Vec<(&str, bool, usize)> = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if arg == "-" {
            if !stdin_text.is_empty() {
                let body = stdin_text.strip_suffix('\n').unwrap_or(&stdin_text);
                for (n, line) in body.split('\n').enumerate() {
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    inputs.push((line, true, n + 1));
                }
            }
        } else {
            inputs.push((arg.as_str(), false, i + 1));
        }
    }
    for (i, arg) in literal.iter().enumerate() {
        inputs.push((arg.as_str(), false, args.len() + i + 1));
    }
    let mut seen = HashSet::with_capacity(inputs.len());
    let mut out = Vec::with_capacity(inputs.len());
    let mut bad: Option<Error> = None;
    let mut bad_count = 0usize;
    for (input, from_stdin, n) in inputs {
        match parse_host(input) {
            Ok(ip) => {
                if seen.insert(ip) {
                    out.push(ip);
                }
            }
            Err(reason) => {
                bad_count += 1;
                if bad.is_none() {
                    bad = Some(Error::BadAddress {
                        input: quote(input),
                        place: if from_stdin {
                            format!("stdin line {n}")
                        } else {
                            format!("argument {n}")
                        },
                        reason,
                        more: 0,
                    });
                }
            }
        }
    }
    match bad {
        Some(Error::BadAddress {
            input,
            place,
            reason,
            ..
        }) => Err(Error::BadAddress {
            input,
            place,
            reason,
            more: bad_count - 1,
        }),
        _ => Ok(out),
    }
}

/// `input` quoted with escapes (one line whatever it holds), cut after
/// [`QUOTE_MAX`] characters with the length it had.
pub(super) fn quote(input: &str) -> String {
    let chars = input.chars().count();
    if chars <= QUOTE_MAX {
        return format!("{input:?}");
    }
    let head: String = input.chars().take(QUOTE_MAX).collect();
    format!("{head:?}... ({} bytes)", input.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_inputs_are_cut() {
        let long = "x".repeat(1 << 20);
        let q = quote(&long);
        assert!(q.len() < 100, "{q}");
        assert!(q.ends_with(&format!("... ({} bytes)", 1 << 20)), "{q}");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
    }
}
