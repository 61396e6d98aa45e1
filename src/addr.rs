//! Strict parsing of the addresses fail2ban hands us.
//!
//! Only a bare host address is accepted: IPv4 in dotted quad without leading
//! zeros, IPv6 in any RFC 4291 text form without a zone id. `::ffff:a.b.c.d`
//! is the IPv4 host a.b.c.d. Nothing is ever resolved.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an input is not a host address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Empty,
    Whitespace,
    Prefix,
    ZoneId,
    LeadingZero,
    NotAnAddress,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invalid::Empty => "empty address",
            Invalid::Whitespace => "white space around or inside the address",
            Invalid::Prefix => "a prefix, not a host address (give the address without /len)",
            Invalid::ZoneId => "zone ids (%iface) are not accepted",
            Invalid::LeadingZero => "leading zeros are ambiguous (octal or decimal?)",
            Invalid::NotAnAddress => "not an IP address (host names are never resolved)",
        })
    }
}

/// Parse one host address; IPv4-mapped IPv6 addresses become IPv4.
pub fn parse_host(input: &str) -> Result<IpAddr, Invalid> {
    if input.is_empty() {
        return Err(Invalid::Empty);
    }
    if input.chars().any(char::is_whitespace) {
        return Err(Invalid::Whitespace);
    }
    if input.contains('/') {
        return Err(Invalid::Prefix);
    }
    if input.contains('%') {
        return Err(Invalid::ZoneId);
    }
    if input.contains(':') {
        let v6: Ipv6Addr = input.parse().map_err(|_| v4_tail_reason(input))?;
        return Ok(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        });
    }
    if has_leading_zero(input) {
        return Err(Invalid::LeadingZero);
    }
    input
        .parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| Invalid::NotAnAddress)
}

/// An IPv6 text that failed to parse: say "leading zeros" when its embedded
/// IPv4 tail is the reason.
fn v4_tail_reason(input: &str) -> Invalid {
    match input.rsplit_once(':') {
        Some((_, tail)) if tail.contains('.') && has_leading_zero(tail) => Invalid::LeadingZero,
        _ => Invalid::NotAnAddress,
    }
}

fn has_leading_zero(dotted: &str) -> bool {
    dotted.split('.').any(|octet| {
        octet.len() > 1 && octet.starts_with('0') && octet.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The host prefix length of an address: 32 or 128.
pub fn host_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// "inet" or "inet6", as iproute2 and fail2ban's `<family>` say it.
pub fn family(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "inet",
        IpAddr::V6(_) => "inet6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hosts_and_canonicalises() {
        assert_eq!(
            parse_host("198.51.100.7"),
            Ok("198.51.100.7".parse().unwrap())
        );
        assert_eq!(parse_host("0.0.0.0"), Ok("0.0.0.0".parse().unwrap()));
        assert_eq!(
            parse_host("2001:DB8::1").unwrap().to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            parse_host("2001:0db8:0000:0000:0000:0000:0000:0001")
                .unwrap()
                .to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            parse_host("::ffff:198.51.100.9"),
            Ok("198.51.100.9".parse().unwrap())
        );
        assert_eq!(
            parse_host("::ffff:c633:6409"),
            Ok("198.51.100.9".parse().unwrap())
        );
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        let cases = [
            ("", Invalid::Empty),
            (" 198.51.100.7", Invalid::Whitespace),
            ("198.51.100.7 ", Invalid::Whitespace),
            ("198.51.100.7\r", Invalid::Whitespace),
            ("198.51.100.7/32", Invalid::Prefix),
            ("2001:db8::/64", Invalid::Prefix),
            ("fe80::1%eth0", Invalid::ZoneId),
            ("010.1.1.1", Invalid::LeadingZero),
            ("1.1.1.01", Invalid::LeadingZero),
            ("::ffff:198.051.100.9", Invalid::LeadingZero),
            ("host.example", Invalid::NotAnAddress),
            ("localhost", Invalid::NotAnAddress),
            ("garbage", Invalid::NotAnAddress),
            ("1.2.3", Invalid::NotAnAddress),
            ("256.1.1.1", Invalid::NotAnAddress),
            ("1.2.3.4.5", Invalid::NotAnAddress),
            ("0x7f.0.0.1", Invalid::NotAnAddress),
            ("2001:db8::g", Invalid::NotAnAddress),
            ("2001:db8:::1", Invalid::NotAnAddress),
            ("[2001:db8::1]", Invalid::NotAnAddress),
            ("-", Invalid::NotAnAddress),
        ];
        for (input, want) in cases {
            assert_eq!(parse_host(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn host_lengths() {
        assert_eq!(host_len("198.51.100.1".parse().unwrap()), 32);
        assert_eq!(host_len("2001:db8::1".parse().unwrap()), 128);
    }
}
