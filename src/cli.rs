//! The command line: global options and one-word verbs, like pfctl's.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG;
use crate::name::Secs;

fn secs(s: &str) -> Result<Secs, String> {
    s.parse()
}

/// Port knocking done by the firewall itself (pf, or nftables on Linux).
#[derive(Parser, Debug)]
#[command(name = "pfknock", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE",
          default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// The running daemon's control socket (`run` listens on it; the
    /// commands that change the firewall go through it)
    #[arg(short = 'S', long = "socket", global = true, value_name = "FILE",
          default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and check the config, render it, and have the firewall parse
    /// it (pfctl -n, nft -c) where it exists; change nothing
    Check,
    /// Print the rules the config renders to: the nftables table on Linux,
    /// the pf anchor elsewhere
    Render {
        /// The nftables table (what Linux loads)
        #[arg(long, conflicts_with = "pf")]
        nft: bool,
        /// The pf anchor (what FreeBSD and OpenBSD load)
        #[arg(long)]
        pf: bool,
    },
    /// Load the rendered rules atomically (pfctl -a ANCHOR -f -, nft -f),
    /// through the running daemon where one runs
    Load,
    /// Take the knock rules away: flush the anchor (pf), or leave the
    /// nftables table closed, the protected ports open to the allow list only
    Unload {
        /// nftables: delete the table, leaving the protected ports to the
        /// rest of the ruleset (open, if nothing else closes them)
        #[arg(long)]
        open: bool,
    },
    /// List authorized hosts: address, service, table, age, time left, and
    /// packets and bytes where the table counts them
    Show {
        /// Only this service
        service: Option<String>,
        /// Also the stage, renewal and allow tables
        #[arg(short = 'a', long)]
        all: bool,
        /// JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Expire entries past their ttl now (as `pfctl -T expire` does)
    Expire {
        /// Only this service's tables
        #[arg(conflicts_with = "table")]
        service: Option<String>,
        /// Only this table (a table the config names)
        #[arg(short = 't', long, value_name = "TABLE")]
        table: Option<String>,
        /// The table's anchor (default: the one the config gives it)
        #[arg(short = 'A', long, value_name = "ANCHOR", requires = "table")]
        anchor: Option<String>,
        /// Expire entries older than this instead of the configured ttl
        #[arg(short = 'o', long, value_name = "DURATION", value_parser = secs)]
        older_than: Option<Secs>,
        /// Show what would expire; change nothing
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Authorize an address for a service now, as a knock would
    Allow {
        /// Address or network
        address: String,
        /// Service (needed when the config has several)
        service: Option<String>,
        /// Allow a network that covers every address of its family
        #[arg(long)]
        force: bool,
    },
    /// Remove an address from a service's tables (every service's if none
    /// is named)
    Revoke {
        /// Address or network
        address: String,
        service: Option<String>,
        /// Also cut the host's open connections (pf: pfctl -k; nftables:
        /// conntrack, to the protected ports)
        #[arg(short = 'k', long)]
        kill_states: bool,
    },
    /// Empty a service's tables (every service's if none is named)
    Flush { service: Option<String> },
    /// Knock: N full TCP connections to each knock port in order, the way
    /// pf counts knocks
    Knock(KnockArgs),
    /// Write a new secret for rotating knocks into FILE (mode 0600), never
    /// over an existing file
    Keygen {
        file: PathBuf,
        /// A key pair for signed knocks instead: the private key in FILE,
        /// the public one in FILE.pub (for the server's spa.keys)
        #[arg(long)]
        spa: bool,
    },
    /// Print the knock ports of a rotating service for a step
    Ports {
        service: String,
        /// The step this time falls in (seconds since 1970; default: now)
        #[arg(long, value_name = "UNIX_TIME", allow_negative_numbers = false)]
        at: Option<i64>,
    },
    /// The signed-knock listener that `pfknock run` starts; not for
    /// people
    #[command(name = "spa-listen", hide = true)]
    SpaListen(SpaListenArgs),
    /// The daemon: load the rules, expire entries on their deadlines,
    /// renew, log, reload on SIGHUP
    Run {
        /// Stay in the foreground (log to stderr too when it is a terminal)
        #[arg(short = 'f', long)]
        foreground: bool,
        /// Write the daemon's pid to FILE, locked against a second instance
        #[arg(short = 'p', long, value_name = "FILE")]
        pidfile: Option<PathBuf>,
        /// Check the config (and that root alone can write it), then exit
        #[arg(short = 'n', long = "check")]
        check_only: bool,
    },
}

/// `spa-listen`'s arguments: what `pfknock run` hands its listener.
#[derive(clap::Args, Debug)]
pub struct SpaListenArgs {
    #[arg(long)]
    pub chan: i32,
    /// PORT:DESCRIPTOR of each UDP socket
    #[arg(long)]
    pub udp: Vec<String>,
    #[arg(long)]
    pub user: String,
    #[arg(long)]
    pub root: PathBuf,
}

/// `knock`'s arguments.
#[derive(clap::Args, Debug)]
pub struct KnockArgs {
    /// Host to knock
    pub host: String,
    /// Knock ports, in order (default: the service's, with --service)
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// Take ports, hits and family from this service of the config
    #[arg(short = 's', long)]
    pub service: Option<String>,
    /// Knock the service's close port instead (with --spa: send a signed
    /// close): the host leaves the authorized hosts
    #[arg(
        long,
        requires = "service",
        conflicts_with_all = ["secret", "verify", "proxy"]
    )]
    pub close: bool,
    /// Signed knock: one UDP datagram signed with the private key in KEY
    /// (pfknock keygen --spa), to the service's spa.port, or to the one
    /// port given; the service is the config's one with spa unless -s
    /// names it
    #[arg(
        long,
        value_name = "KEY",
        conflicts_with_all = ["secret", "range", "hits", "delay"]
    )]
    pub spa: Option<PathBuf>,
    /// With --spa: ask for the address the datagram arrives from, not
    /// this host's own (behind NAT; the service must set spa.nat)
    #[arg(long, requires = "spa")]
    pub nat: bool,
    /// Rotating knock: derive this step's ports from the secret in FILE
    /// (the service's rotate.secret by default)
    #[arg(
        long,
        value_name = "FILE",
        requires = "service",
        conflicts_with = "ports"
    )]
    pub secret: Option<PathBuf>,
    /// With --secret and no config: the rotate range, LO-HI
    #[arg(long, value_name = "LO-HI", requires = "secret")]
    pub range: Option<String>,
    /// With --secret and no config: the rotate step (default 30s)
    #[arg(long, value_name = "DURATION", requires = "range", value_parser = secs)]
    pub step: Option<Secs>,
    /// With --secret and no config: how many knock ports (default 1)
    #[arg(long, value_name = "N", requires = "range",
          value_parser = clap::value_parser!(u32).range(1..=8))]
    pub count: Option<u32>,
    /// Connections per knock port (default: the service's rate + 1, or 6)
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub hits: Option<u32>,
    /// Pause after each connection, in milliseconds
    #[arg(short = 'd', long, value_name = "MS", default_value_t = 0)]
    pub delay: u64,
    /// Pause between knock ports, in milliseconds
    #[arg(short = 'g', long, value_name = "MS", default_value_t = 250)]
    pub gap: u64,
    /// Limit of each connection attempt, in milliseconds
    #[arg(short = 't', long, value_name = "MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// IPv4 only
    #[arg(short = '4', conflicts_with = "inet6")]
    pub inet: bool,
    /// IPv6 only
    #[arg(short = '6')]
    pub inet6: bool,
    /// After knocking, check that PORT opens, knocking again with
    /// back-off while it does not
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub verify: Option<u16>,
    /// ssh ProxyCommand mode: knock, connect to PORT, relay stdin and
    /// stdout
    #[arg(long, value_name = "PORT", conflicts_with = "verify",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub proxy: Option<u16>,
    /// With --proxy: give up after this many seconds without a byte
    /// either way (0: never)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 7200,
        requires = "proxy"
    )]
    pub idle: u64,
    /// Print nothing on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
}
