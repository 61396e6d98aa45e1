//! The command line, as clap sees it. The man page and completions are
//! generated from this same definition.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::Exit;
use crate::model::RouteKind;
use crate::render::Target;

#[derive(Debug, Parser)]
#[command(
    name = "f2b-route",
    version,
    about = "Blackhole host routes for fail2ban bans, for BGP to carry to a firewall",
    long_about = "Adds and removes blackhole host routes (/32, /128) for the addresses \
        fail2ban bans, through rtnetlink. Every route carries a marker (protocol, metric, \
        table) so that f2b-route only ever touches its own routes, and FRR can redistribute \
        exactly those to the firewall over BGP.",
    after_help = Exit::help()
)]
pub struct Cli {
    /// Configuration file [default: /etc/f2b-route/f2b-route.toml, built-in defaults if absent]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory of the ledger of holds, absolute (overrides the config's state_dir)
    #[arg(long, value_name = "DIR", value_parser = parse_absolute)]
    pub state_dir: Option<PathBuf>,
    /// Print nothing but errors
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print one line per address
    #[arg(short, long)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Blackhole addresses (idempotent: an existing route of ours is success)
    Add(AddArgs),
    /// Release holds and remove routes no jail holds any more (a missing route is success)
    Del(DelArgs),
    /// List every route f2b-route owns: address, type, jails holding it, since when
    List(ListArgs),
    /// Without --jail: remove every route f2b-route owns; with: release that jail's holds
    Flush(FlushArgs),
    /// Preflight: config, privilege, netlink, state dir; changes nothing (with --repair: mends leftovers)
    Check(CheckArgs),
    /// Print a config for FRR, OpenBGPD, pf or fail2ban filled in from this config
    Render(RenderArgs),
    /// Counts of routes and holds, and whether the ledger and the kernel agree (read-only)
    Stats(StatsArgs),
    /// The same as Prometheus text, on stdout or into node_exporter's textfile directory
    Metrics(MetricsArgs),
    /// Make the routes and holds equal to fail2ban's active bans (its socket, or its database when it is not running)
    Reconcile(ReconcileArgs),
    /// Resident mode for fail2ban's Python action: one request a line on stdin (add IP, del IP, flush, ping), one answer a line on stdout
    Serve(ServeArgs),
    /// Firewall side: keep an nftables table's sets equal to the host routes the BGP daemon installed
    Mirror(MirrorArgs),
    /// Write the man pages or the shell completions into DIR (for packaging)
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Kernel table the BGP daemon installs the routes in ("main" or a
    /// number) [default: the config's [mirror] table, 252, as `render bird` sets up]
    #[arg(long, value_name = "TABLE", value_parser = parse_table_arg)]
    pub table: Option<u32>,
    /// Protocol number of those routes [default: the config's [mirror]
    /// protocol, 12 (BIRD); FRR's bgpd: 186]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    pub protocol: Option<u8>,
    /// One resync, then exit (for tests and cron)
    #[arg(long)]
    pub once: bool,
    /// Empty the sets when stopped (default: leave them, so that a restart
    /// of the mirror is no unban)
    #[arg(long)]
    pub flush_on_exit: bool,
    /// Log each dropped packet with this prefix (nft `log prefix`)
    #[arg(long, value_name = "PREFIX")]
    pub log_prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Only this jail's holds change (fail2ban's actionstart) [default:
    /// f2b-route's jails, those the ledger knows, and routes of ours that
    /// nobody holds go]
    #[arg(long, value_name = "NAME", value_parser = parse_jail)]
    pub jail: Option<String>,
    /// Print what would change, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// JSON Lines: one object per change (change, jail, address, reason)
    #[arg(long)]
    pub json: bool,
    /// Ask the running fail2ban through this socket, and nothing else
    /// [default: /var/run/fail2ban/fail2ban.sock, then, if fail2ban is not
    /// running, /var/lib/fail2ban/fail2ban.sqlite3]
    #[arg(long, value_name = "PATH", value_parser = parse_absolute, conflicts_with = "db")]
    pub socket: Option<PathBuf>,
    /// Read this fail2ban database (its dbfile), read-only, and nothing
    /// else; ":memory:" and "None" mean fail2ban keeps none
    #[arg(long, value_name = "PATH", value_parser = parse_dbfile)]
    pub db: Option<PathBuf>,
    /// Type of the routes added [default: the config's `type`, blackhole]
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<RouteKind>,
    /// With --jail and --db: where the database cannot say what fail2ban
    /// will restore (it keeps none, no such file, the jail not running
    /// there, another schema, a file not to be trusted), release the jail's
    /// holds as `flush --jail` does instead of failing, and say so
    /// (actionstart)
    #[arg(long, requires_all = ["jail", "db"])]
    pub or_flush: bool,
    /// With --db: only bans with at least this long left count
    /// (actionstart: 60; fail2ban's restore drops a ban that has expired by
    /// the time it gets to it, without an unban, and its hold would stay)
    #[arg(long, value_name = "SECONDS", requires = "db", default_value_t = 0)]
    pub min_left: u64,
    /// Take the jail's active bans from stdin, one address a line, then a
    /// line `end`, instead of asking fail2ban (the plugin's start passes
    /// what fail2ban's restore will restore)
    #[arg(long, requires = "jail", conflicts_with_all = ["socket", "db", "or_flush"])]
    pub stdin: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write DIR/f2b-route.prom atomically (node_exporter's --collector.textfile.directory)
    #[arg(long, value_name = "DIR", value_parser = parse_absolute)]
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generated {
    /// f2b-route.8 and a page per command (f2b-route-add.8, ...)
    Man,
    /// bash (f2b-route.bash), zsh (_f2b-route) and fish (f2b-route.fish)
    Completions,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    pub what: Generated,
    /// Where to write the files (absolute)
    #[arg(value_name = "DIR", value_parser = parse_absolute)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The jail that holds the route (default: a manual hold, "@manual")
    #[arg(long, value_name = "NAME", value_parser = parse_jail)]
    pub jail: Option<String>,
    /// Route type [default: the config's `type`, blackhole]
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<RouteKind>,
    /// Host addresses, IPv4 or IPv6; "-" reads one address a line from stdin
    #[arg(
        value_name = "IP",
        required_unless_present = "literal",
        allow_hyphen_values = true
    )]
    pub ips: Vec<String>,
    /// Addresses after `--`, taken as they are ("-" is no stdin there): how
    /// fail2ban's action passes its `<ip>`
    #[arg(last = true, value_name = "IP")]
    pub literal: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    /// Release only this jail's hold; the route goes when no jail holds it
    /// (default: remove the route whoever holds it)
    #[arg(long, value_name = "NAME", value_parser = parse_jail)]
    pub jail: Option<String>,
    /// Host addresses; "-" reads one address a line from stdin
    #[arg(
        value_name = "IP",
        required_unless_present = "literal",
        allow_hyphen_values = true
    )]
    pub ips: Vec<String>,
    /// Addresses after `--`, taken as they are ("-" is no stdin there)
    #[arg(last = true, value_name = "IP")]
    pub literal: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The jail whose holds this process takes and releases
    #[arg(long, value_name = "NAME", value_parser = parse_jail)]
    pub jail: String,
    /// Route type of its adds [default: the config's `type`, blackhole]
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<RouteKind>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// JSON Lines: one object per route (address, prefix, family, type, protocol, metric, table, jails, since)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FlushArgs {
    /// Release this jail's holds only
    #[arg(long, value_name = "NAME", value_parser = parse_jail)]
    pub jail: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also mend what an interrupted run left: drop holds whose route has
    /// gone, remove routes of ours no jail holds (never when the ledger
    /// looks lost), rebuild the journals. For fail2ban's actionstart.
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// What to render
    #[arg(value_enum)]
    pub target: Target,
    /// Our AS number
    #[arg(long, value_name = "N")]
    pub local_as: Option<u32>,
    /// BGP peer address (repeatable) [default: the config's peers]
    #[arg(long = "peer", value_name = "IP")]
    pub peers: Vec<IpAddr>,
    /// The peers' AS number
    #[arg(long, value_name = "N")]
    pub peer_as: Option<u32>,
    /// BGP router id
    #[arg(long, value_name = "IP")]
    pub router_id: Option<Ipv4Addr>,
    /// Interface the block rule applies to (pf)
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
    /// Leave out `set pftable` (OpenBGPD portable on Linux rejects it)
    #[arg(long)]
    pub no_pftable: bool,
    /// Discard next hop (frr-firewall; one per family, IPv4 required)
    /// [default IPv6: 100::1]
    #[arg(long, value_name = "IP")]
    pub discard: Vec<IpAddr>,
}

fn parse_table_arg(s: &str) -> Result<u32, String> {
    match s {
        "main" => Ok(254),
        _ => match s.parse::<u32>() {
            Ok(0) | Err(_) => Err("use \"main\" or a number 1-4294967295".into()),
            Ok(255) => Err("255 is the kernel's local table".into()),
            Ok(n) => Ok(n),
        },
    }
}

/// fail2ban's dbfile: an absolute path, or ":memory:" or "None".
fn parse_dbfile(s: &str) -> Result<PathBuf, String> {
    if crate::fail2ban::db::no_database(s).is_some() {
        return Ok(PathBuf::from(s));
    }
    parse_absolute(s).map_err(|e| format!("{e} (or :memory: or None)"))
}

fn parse_absolute(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err("must be an absolute path".into())
    }
}

impl ValueEnum for RouteKind {
    fn value_variants<'a>() -> &'a [Self] {
        &RouteKind::ALL
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

impl ValueEnum for Target {
    fn value_variants<'a>() -> &'a [Self] {
        &Target::ALL
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).help(self.about()))
    }
}

fn parse_jail(s: &str) -> Result<String, String> {
    if crate::ledger::valid_jail(s) {
        Ok(s.to_owned())
    } else {
        Err("use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_interface_fail2ban_uses() {
        let cli = Cli::try_parse_from([
            "f2b-route",
            "-q",
            "add",
            "--jail",
            "sshd",
            "--type",
            "unreachable",
            "198.51.100.7",
        ])
        .unwrap();
        match cli.command {
            Command::Add(a) => {
                assert_eq!(a.jail.as_deref(), Some("sshd"));
                assert_eq!(a.kind, Some(RouteKind::Unreachable));
                assert_eq!(a.ips, vec!["198.51.100.7"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(cli.quiet);
        assert!(
            Cli::try_parse_from(["f2b-route", "add", "--jail", "a/b", "198.51.100.7"]).is_err()
        );
        assert!(Cli::try_parse_from(["f2b-route", "add"]).is_err());
        assert!(Cli::try_parse_from(["f2b-route", "-q", "-v", "check"]).is_err());
        assert!(
            Cli::try_parse_from(["f2b-route", "--state-dir", "relative", "check"]).is_err(),
            "a relative state dir is refused, as in the config"
        );
        let cli = Cli::try_parse_from(["f2b-route", "check", "--repair"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Check(CheckArgs { repair: true })
        ));
        let cli = Cli::try_parse_from(["f2b-route", "del", "-"]).unwrap();
        assert!(matches!(cli.command, Command::Del(d) if d.ips == vec!["-"]));
        // After `--`, as fail2ban's action passes `<ip>`, "-" is no stdin.
        let cli = Cli::try_parse_from(["f2b-route", "add", "--jail", "j", "--", "-"]).unwrap();
        assert!(
            matches!(cli.command, Command::Add(a) if a.ips.is_empty() && a.literal == vec!["-"])
        );
        assert!(Cli::try_parse_from(["f2b-route", "add", "--"]).is_err());
        let cli = Cli::try_parse_from(["f2b-route", "serve", "--jail", "sshd"]).unwrap();
        assert!(matches!(cli.command, Command::Serve(s) if s.jail == "sshd" && s.kind.is_none()));
        assert!(
            Cli::try_parse_from(["f2b-route", "serve"]).is_err(),
            "serve needs --jail"
        );
        assert!(Cli::try_parse_from(["f2b-route", "serve", "--jail", "a/b"]).is_err());
    }
}
