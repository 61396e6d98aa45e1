//! The one configuration file both ends agree on: route marker, route type,
//! and the addresses that must never be blackholed.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::model::{Marker, RouteKind};
use crate::trusted::{self, TrustError};

pub const DEFAULT_PATH: &str = "/etc/f2b-route/f2b-route.toml";
pub const DEFAULT_STATE_DIR: &str = "/run/f2b-route";
pub const DEFAULT_PROTOCOL: u8 = 252;
pub const DEFAULT_METRIC: u32 = 666;
pub const TABLE_MAIN: u32 = 254;
const TABLE_LOCAL: u32 = 255;
/// A config larger than this is not one of ours.
const MAX_BYTES: u64 = 1 << 20;

/// Why the config cannot be used; it always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path:?}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// The file, or a directory on its way, could be changed by another
    /// user than root: such a user could empty `protect` or move the marker.
    #[error("config refused")]
    Untrusted(#[source] TrustError),
    #[error("config {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Route protocol number: the marker of every route we own.
    pub protocol: u8,
    /// Routing table id (254 = main).
    pub table: u32,
    /// Type of the routes `add` creates unless `--type` says otherwise.
    pub route_type: RouteKind,
    /// Route metric (priority): part of the marker, and what FRR matches on.
    pub metric: u32,
    /// Prefixes never to blackhole.
    pub protect: Vec<IpNet>,
    /// BGP peers, never to blackhole.
    pub peers: Vec<IpAddr>,
    /// Where the ledger of holds lives.
    pub state_dir: PathBuf,
    /// The firewall side: which routes `mirror` copies into nftables.
    pub mirror: MirrorConfig,
}

/// `[mirror]`: the routes a Linux firewall's BGP daemon installs from the
/// log host, which `f2b-route mirror` copies into its nftables sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorConfig {
    /// The kernel table the BGP daemon installs them in.
    pub table: u32,
    /// Their protocol number (BIRD: 12, FRR's bgpd: 186).
    pub protocol: u8,
}

/// What `render bird` makes BIRD do: export into table 252 (no policy rule
/// consults it, so forwarding stays untouched), as protocol 12 (bird).
pub const MIRROR_TABLE: u32 = 252;
pub const MIRROR_PROTOCOL: u8 = 12;

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            table: MIRROR_TABLE,
            protocol: MIRROR_PROTOCOL,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocol: DEFAULT_PROTOCOL,
            table: TABLE_MAIN,
            route_type: RouteKind::Blackhole,
            metric: DEFAULT_METRIC,
            protect: Vec::new(),
            peers: Vec::new(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            mirror: MirrorConfig::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    protocol: Option<u16>,
    table: Option<RawTable>,
    #[serde(rename = "type")]
    route_type: Option<RouteKind>,
    metric: Option<u32>,
    protect: Option<Vec<String>>,
    peers: Option<Vec<String>>,
    state_dir: Option<PathBuf>,
    mirror: Option<RawMirror>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    table: Option<RawTable>,
    protocol: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawTable {
    Name(String),
    Id(i64),
}

/// Why a protocol number cannot be the marker: the kernel reserves 0-4,
/// and FRR's zebra (`is_selfroute`, FRR 8.4 and later) treats a kernel route
/// carrying one of its daemons' numbers as its own: it ignores it, or adopts
/// and then deletes it, instead of redistributing it.
pub fn protocol_reserved(p: u8) -> Option<String> {
    let kernel = ["unspec", "redirect", "kernel", "boot", "static"];
    let frr = match p {
        0..=4 => {
            return Some(format!(
                "{p} is the kernel's \"{}\" (0-4 are reserved)",
                kernel[usize::from(p)]
            ))
        }
        11 => "zebra",
        42 => "babeld",
        186 => "bgpd",
        187 => "isisd",
        188 => "ospfd",
        189 => "ripd",
        190 => "ripngd",
        191 => "nhrpd",
        192 => "eigrpd",
        193 => "ldpd",
        194 => "sharpd",
        195 => "pbrd",
        196 => "staticd",
        197 => "fabricd",
        198 => "pathd (SR-TE)",
        _ => return None,
    };
    Some(format!(
        "FRR's zebra treats routes of protocol {p} as its own ({frr}'s) and would not redistribute them"
    ))
}

impl Config {
    /// The marker of every route this config makes.
    pub fn marker(&self) -> Marker {
        Marker {
            protocol: self.protocol,
            metric: self.metric,
            table: self.table,
        }
    }

    /// Parse a TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let bad = |reason: String| ConfigError::Invalid {
            path: origin.to_path_buf(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| bad(one_line(&e.to_string())))?;
        let mut config = Config::default();
        if let Some(p) = raw.protocol {
            let p = u8::try_from(p).map_err(|_| bad(format!("protocol {p}: must be 5-255")))?;
            if let Some(why) = protocol_reserved(p) {
                return Err(bad(format!("protocol {p}: {why}")));
            }
            config.protocol = p;
        }
        if let Some(t) = raw.table {
            config.table = parse_table(&t).map_err(bad)?;
        }
        if let Some(k) = raw.route_type {
            config.route_type = k;
        }
        if let Some(m) = raw.metric {
            if m == 0 {
                // A delete with metric 0 matches any metric, and the kernel
                // gives IPv6 routes of metric 0 the metric 1024.
                return Err(bad(
                    "metric 0: must be 1-4294967295 (0 matches any metric when deleting)".into(),
                ));
            }
            config.metric = m;
        }
        if let Some(list) = raw.protect {
            for s in list {
                let net = parse_net(&s).map_err(|e| bad(format!("protect {s:?}: {e}")))?;
                config.protect.push(net);
            }
        }
        if let Some(list) = raw.peers {
            for s in list {
                let ip =
                    crate::addr::parse_host(&s).map_err(|e| bad(format!("peers {s:?}: {e}")))?;
                config.peers.push(ip);
            }
        }
        if let Some(dir) = raw.state_dir {
            if !dir.is_absolute() {
                return Err(bad(format!(
                    "state_dir {}: must be absolute",
                    dir.display()
                )));
            }
            config.state_dir = dir;
        }
        if let Some(m) = raw.mirror {
            if let Some(t) = m.table {
                config.mirror.table = parse_table(&t).map_err(|e| bad(format!("[mirror] {e}")))?;
            }
            if let Some(p) = m.protocol {
                config.mirror.protocol = u8::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad(format!("[mirror] protocol {p}: must be 1-255")))?;
            }
        }
        Ok(config)
    }

    /// Load the named file (must exist), or the default path (a missing
    /// default file means built-in defaults). The file and every directory
    /// on its way must be root's (or the effective uid's) and writable by
    /// nobody else, as sshd's `StrictModes` demands: see [`trusted`].
    pub fn load(named: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, must_exist) = match named {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let absolute = std::path::absolute(path).map_err(read_err)?;
        let file = match trusted::open_file(&absolute) {
            Ok(f) => f,
            Err(TrustError::NotFound { .. }) if !must_exist => return Ok(Config::default()),
            Err(TrustError::NotFound { .. }) => {
                return Err(read_err(std::io::ErrorKind::NotFound.into()))
            }
            Err(TrustError::Io { source, .. }) => return Err(read_err(source)),
            Err(e) => return Err(ConfigError::Untrusted(e)),
        };
        // One byte more than allowed tells a file that is too large: cutting
        // it would drop what follows (a `protect` list, say) unseen.
        let mut text = String::new();
        file.take(MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_BYTES {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                reason: format!("larger than {} bytes", MAX_BYTES),
            });
        }
        Config::parse(&text, path)
    }

    /// The table as iproute2 would print it.
    pub fn table_name(&self) -> String {
        if self.table == TABLE_MAIN {
            "main".into()
        } else {
            self.table.to_string()
        }
    }
}

fn parse_table(t: &RawTable) -> Result<u32, String> {
    let id = match t {
        RawTable::Name(n) if n == "main" => return Ok(TABLE_MAIN),
        RawTable::Name(n) => n
            .parse::<i64>()
            .map_err(|_| format!("table {n:?}: use \"main\" or a number"))?,
        RawTable::Id(i) => *i,
    };
    match u32::try_from(id) {
        Ok(0) | Err(_) => Err(format!("table {id}: must be 1-4294967295")),
        Ok(TABLE_LOCAL) => Err("table 255 is the kernel's local table".into()),
        Ok(id) => Ok(id),
    }
}

/// A CIDR, or a bare address meaning its host prefix. The prefix must be
/// the network address (203.0.113.0/24, not 203.0.113.7/24): a typo there
/// would otherwise protect something other than meant.
fn parse_net(s: &str) -> Result<IpNet, String> {
    if !s.contains('/') {
        let ip = crate::addr::parse_host(s).map_err(|e| e.to_string())?;
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = s.parse().map_err(|_| "not a CIDR prefix".to_string())?;
    if net.trunc() != net {
        return Err(format!("host bits set; did you mean {}?", net.trunc()));
    }
    Ok(v4_mapped_as_v4(net))
}

/// `::ffff:a.b.c.d/len` (len >= 96) is the IPv4 prefix a.b.c.d/(len - 96):
/// addresses arrive as IPv4 (see `addr::parse_host`), so only the IPv4 form
/// can ever contain them.
fn v4_mapped_as_v4(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        let d = Config::default();
        assert_eq!((d.protocol, d.table, d.metric), (252, 254, 666));
        assert_eq!(d.route_type, RouteKind::Blackhole);
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"
            protocol = 250
            table = 100
            type = "unreachable"
            metric = 4242
            protect = ["203.0.113.0/24", "2001:db8:1::/48", "198.51.100.1"]
            peers = ["198.51.100.2", "2001:db8::2"]
            state_dir = "/var/lib/f2b-route"
            "#,
        )
        .unwrap();
        assert_eq!(c.protocol, 250);
        assert_eq!(c.table, 100);
        assert_eq!(c.route_type, RouteKind::Unreachable);
        assert_eq!(c.metric, 4242);
        assert_eq!(c.protect.len(), 3);
        assert_eq!(c.protect[2].to_string(), "198.51.100.1/32");
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/f2b-route"));
        assert_eq!(parse("table = \"main\"").unwrap().table, 254);
        // IPv4-mapped prefixes protect the IPv4 addresses they map.
        let c = parse("protect = [\"::ffff:198.51.100.0/120\", \"::ffff:203.0.113.9\"]").unwrap();
        assert_eq!(c.protect[0].to_string(), "198.51.100.0/24");
        assert_eq!(c.protect[1].to_string(), "203.0.113.9/32");
        assert_eq!(parse("table = \"200\"").unwrap().table, 200);
    }

    #[test]
    fn rejects_bad_values() {
        for text in [
            "protocol = 186",
            "protocol = 2",
            "protocol = 11",
            "protocol = 42",
            "protocol = 198",
            "protocol = 300",
            "table = 255",
            "table = 0",
            "table = \"local\"",
            "type = \"unicast\"",
            "protect = [\"203.0.113.7/24\"]",
            "protect = [\"nonsense\"]",
            "peers = [\"peer.example\"]",
            "peers = [\"198.51.100.0/24\"]",
            "state_dir = \"relative\"",
            "colour = \"blue\"",
            "protocol = ",
            "metric = 0",
        ] {
            let err = parse(text).expect_err(text);
            assert!(matches!(err, ConfigError::Invalid { .. }), "{text}: {err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    /// The shipped file: valid, the defaults, and each commented key, once
    /// uncommented, the default it claims to be.
    #[test]
    fn the_shipped_file_says_the_defaults() {
        let shipped = include_str!("../etc/f2b-route/f2b-route.toml");
        assert_eq!(parse(shipped).unwrap(), Config::default());
        let keys: Vec<&str> = shipped
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.contains(" = "))
            .collect();
        for key in [
            "protocol",
            "metric",
            "table",
            "type",
            "protect",
            "peers",
            "state_dir",
        ] {
            let line = keys
                .iter()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{key} is not in the shipped file"));
            assert_eq!(parse(line).unwrap(), Config::default(), "{line}");
        }
        // The [mirror] section, uncommented: the defaults; and FRR's values
        // as its comment gives them.
        let section: String = shipped
            .lines()
            .skip_while(|l| *l != "#[mirror]")
            .map(|l| format!("{}\n", l.trim_start_matches('#')))
            .collect();
        assert!(section.starts_with("[mirror]\ntable = 252\nprotocol = 12\n"));
        assert_eq!(parse(&section).unwrap(), Config::default());
        let frr = parse("[mirror]\ntable = \"main\"\nprotocol = 186\n").unwrap();
        assert_eq!((frr.mirror.table, frr.mirror.protocol), (254, 186));
    }

    #[test]
    fn named_missing_file_is_an_error_default_is_not() {
        assert!(Config::load(Some(Path::new("/nonexistent/f2b-route.toml"))).is_err());
    }
}
