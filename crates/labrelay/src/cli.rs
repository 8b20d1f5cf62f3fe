//! Command-line flags: gethrelay's own names (and `GETHRELAY_*` env vars), plus `--lab.*` extras.
//!
//! Only flags that change what an observer of gethrelay can see are reproduced; the chain
//! flags are accepted so that real gethrelay command lines start unchanged.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;

use crate::identity::NodeRecord;

/// Test double of gethrelay: its flags, admin API, metrics text and Tor dialing, without Ethereum.
#[derive(Debug, Clone, Parser)]
#[command(name = "labrelay", version, about, long_about = None)]
pub struct Cli {
    /// Custom node name (gethrelay: UserIdent).
    #[arg(long, env = "GETHRELAY_IDENTITY", default_value = "")]
    pub identity: String,

    /// Comma separated enode or enr URLs of peers to keep connected.
    #[arg(long, env = "GETHRELAY_STATICNODES", default_value = "")]
    pub staticnodes: String,

    /// Comma separated bootnode URLs (accepted and validated; the lab has no discovery).
    #[arg(long, env = "GETHRELAY_BOOTNODES", default_value = "")]
    pub bootnodes: String,

    /// TCP listening port for P2P connections.
    #[arg(long, env = "GETHRELAY_PORT", default_value_t = 30303)]
    pub port: u16,

    /// Maximum number of peers; a third of it may be dialed, the rest is inbound.
    #[arg(long, env = "GETHRELAY_MAXPEERS", default_value_t = 200)]
    pub maxpeers: usize,

    /// Disables discovery (the lab never discovers; accepted for command-line compatibility).
    #[arg(long, env = "GETHRELAY_NODISCOVER")]
    pub nodiscover: bool,

    /// Enables discovery v4 (accepted, no effect in the lab).
    #[arg(long, env = "GETHRELAY_V4DISC")]
    pub v4disc: bool,

    /// Enables discovery v5 (accepted, no effect in the lab).
    #[arg(long, env = "GETHRELAY_V5DISC")]
    pub v5disc: bool,

    /// Ethereum chain preset (accepted, no effect in the lab).
    #[arg(long, env = "GETHRELAY_CHAIN", default_value = "mainnet")]
    pub chain: String,

    /// Network id (accepted, no effect in the lab).
    #[arg(long, env = "GETHRELAY_NETWORKID", default_value_t = 1)]
    pub networkid: u64,

    /// SOCKS5 proxy address (host:port) for Tor; enables the TorDialer.
    #[arg(long = "tor-proxy", env = "GETHRELAY_TOR_PROXY", default_value = "")]
    pub tor_proxy: String,

    /// Dial peers over Tor whenever they have an onion address, even if they also have clearnet.
    #[arg(long = "prefer-tor", env = "GETHRELAY_PREFER_TOR")]
    pub prefer_tor: bool,

    /// Dial only peers with an onion address, never fall back to clearnet (inbound is not filtered).
    #[arg(long = "only-onion", env = "GETHRELAY_ONLY_ONION")]
    pub only_onion: bool,

    /// Enables the admin JSON-RPC API over HTTP.
    #[arg(long, env = "GETHRELAY_ADMIN")]
    pub admin: bool,

    /// Admin API listening address.
    #[arg(
        long = "admin.addr",
        env = "GETHRELAY_ADMIN_ADDR",
        default_value = "127.0.0.1"
    )]
    pub admin_addr: IpAddr,

    /// Admin API listening port.
    #[arg(
        long = "admin.port",
        env = "GETHRELAY_ADMIN_PORT",
        default_value_t = 8546
    )]
    pub admin_port: u16,

    /// RPC proxy listening address (gethrelay forwards it to --rpc.upstream; always on).
    #[arg(
        long = "http.addr",
        env = "GETHRELAY_HTTP_ADDR",
        default_value = "127.0.0.1"
    )]
    pub http_addr: IpAddr,

    /// RPC proxy listening port.
    #[arg(
        long = "http.port",
        env = "GETHRELAY_HTTP_PORT",
        default_value_t = 8545
    )]
    pub http_port: u16,

    /// Upstream of the RPC proxy (never contacted by the lab relay).
    #[arg(
        long = "rpc.upstream",
        env = "GETHRELAY_RPC_UPSTREAM",
        default_value = "https://ethereum-rpc.publicnode.com"
    )]
    pub rpc_upstream: String,

    /// Enables the pprof HTTP server, which also serves /debug/metrics/prometheus.
    #[arg(long, env = "GETHRELAY_PPROF")]
    pub pprof: bool,

    /// pprof HTTP server listening address.
    #[arg(
        long = "pprof.addr",
        env = "GETHRELAY_PPROF_ADDR",
        default_value = "127.0.0.1"
    )]
    pub pprof_addr: IpAddr,

    /// pprof HTTP server listening port.
    #[arg(
        long = "pprof.port",
        env = "GETHRELAY_PPROF_PORT",
        default_value_t = 6060
    )]
    pub pprof_port: u16,

    /// Log verbosity 0-5 (3 = info).
    #[arg(long, env = "GETHRELAY_VERBOSITY", default_value_t = 3)]
    pub verbosity: u8,

    /// LAB ONLY: this relay's own IP (e.g. 127.0.1.N): P2P listener and source of clearnet dials.
    ///
    /// On one machine every socket is loopback; giving each relay its own loopback address
    /// keeps clearnet peers (127.0.1.N) apart from Tor's connections (127.0.0.1), as in a pod.
    #[arg(long = "lab.ip")]
    pub lab_ip: Option<IpAddr>,

    /// LAB ONLY: the onion address of this relay's hidden service, advertised as ENR `onion3`.
    #[arg(long = "lab.onion")]
    pub lab_onion: Option<String>,

    /// LAB ONLY: node key as 64 hex characters (default: a fresh key, as gethrelay without a datadir).
    #[arg(long = "lab.nodekeyhex")]
    pub lab_nodekeyhex: Option<String>,

    /// LAB ONLY: interval between traffic messages sent to each peer, in milliseconds (0 = none).
    #[arg(long = "lab.msg-interval-ms", default_value_t = 200)]
    pub lab_msg_interval_ms: u64,

    /// LAB ONLY: payload size of each traffic message, in bytes.
    #[arg(long = "lab.msg-size", default_value_t = 512)]
    pub lab_msg_size: usize,

    /// LAB ONLY: delay before a static node is dialed again (geth: 35 s).
    #[arg(long = "lab.redial-ms", default_value_t = 35_000)]
    pub lab_redial_ms: u64,
}

/// How the relay dials, derived from the Tor flags exactly as gethrelay's p2p.Config does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialMode {
    /// No `--tor-proxy`: plain TCP dialer.
    Plain,
    /// `--tor-proxy` set: TorDialer with these switches.
    Tor {
        proxy: SocketAddr,
        prefer_tor: bool,
        only_onion: bool,
    },
}

/// Validated settings; every field is a decision already made.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub listen: SocketAddr,
    pub dial_source: Option<IpAddr>,
    pub static_nodes: Vec<NodeRecord>,
    pub max_peers: usize,
    pub dial_mode: DialMode,
    pub admin: Option<SocketAddr>,
    pub rpc_proxy: SocketAddr,
    pub pprof: Option<SocketAddr>,
    pub onion: Option<String>,
    pub nodekey_hex: Option<String>,
    pub msg_interval: Option<Duration>,
    pub msg_size: usize,
    pub redial: Duration,
    pub verbosity: u8,
}

/// Parses a comma separated list of node URLs; the error names the offending entry.
pub fn parse_node_list(flag: &str, list: &str) -> Result<Vec<NodeRecord>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            NodeRecord::parse(entry).map_err(|error| format!("invalid --{flag} entry: {error}"))
        })
        .collect()
}

impl Cli {
    /// Checks the flags the way gethrelay does; the error text is what gethrelay prints.
    pub fn into_config(self) -> Result<Config, String> {
        if self.only_onion && self.tor_proxy.is_empty() {
            return Err("--only-onion requires --tor-proxy to be set".into());
        }
        let dial_mode = if self.tor_proxy.is_empty() {
            DialMode::Plain
        } else {
            let proxy: SocketAddr = self.tor_proxy.parse().map_err(|_| {
                format!(
                    "invalid --tor-proxy {:?}: expected ip:port, e.g. 127.0.0.1:9050",
                    self.tor_proxy
                )
            })?;
            DialMode::Tor {
                proxy,
                prefer_tor: self.prefer_tor,
                only_onion: self.only_onion,
            }
        };
        let static_nodes = parse_node_list("staticnodes", &self.staticnodes)?;
        parse_node_list("bootnodes", &self.bootnodes)?;
        if let Some(onion) = &self.lab_onion {
            if crate::identity::enr::validate_onion3(onion).is_err() {
                return Err(format!(
                    "invalid --lab.onion {onion:?}: expected 56 characters of a-z2-7 followed by .onion"
                ));
            }
        }
        if self.lab_msg_size > crate::wire::MAX_PAYLOAD {
            return Err(format!(
                "--lab.msg-size {} is larger than the frame limit {}",
                self.lab_msg_size,
                crate::wire::MAX_PAYLOAD
            ));
        }
        let listen_ip = self
            .lab_ip
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Ok(Config {
            name: client_name(&self.identity),
            listen: SocketAddr::new(listen_ip, self.port),
            dial_source: self.lab_ip,
            static_nodes,
            max_peers: self.maxpeers,
            dial_mode,
            admin: self
                .admin
                .then(|| SocketAddr::new(self.admin_addr, self.admin_port)),
            rpc_proxy: SocketAddr::new(self.http_addr, self.http_port),
            pprof: self
                .pprof
                .then(|| SocketAddr::new(self.pprof_addr, self.pprof_port)),
            onion: self.lab_onion,
            nodekey_hex: self.lab_nodekeyhex,
            msg_interval: (self.lab_msg_interval_ms > 0)
                .then(|| Duration::from_millis(self.lab_msg_interval_ms)),
            msg_size: self.lab_msg_size,
            redial: Duration::from_millis(self.lab_redial_ms),
            verbosity: self.verbosity,
        })
    }
}

/// The client name peers see, shaped like geth's `Name/Identity/version/os-arch/runtime`.
fn client_name(identity: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    if identity.is_empty() {
        format!("labrelay/v{version}/linux-amd64/rust")
    } else {
        format!("labrelay/{identity}/v{version}/linux-amd64/rust")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("labrelay").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.into_config()
    }

    #[test]
    fn only_onion_requires_tor_proxy() {
        let error = parse(&["--only-onion"]).unwrap_err();
        assert_eq!(error, "--only-onion requires --tor-proxy to be set");
    }

    #[test]
    fn tor_flags_become_a_dial_mode() {
        let config = parse(&["--tor-proxy", "127.0.0.1:9050", "--prefer-tor"]).unwrap();
        assert_eq!(
            config.dial_mode,
            DialMode::Tor {
                proxy: "127.0.0.1:9050".parse().unwrap(),
                prefer_tor: true,
                only_onion: false
            }
        );
        assert_eq!(parse(&[]).unwrap().dial_mode, DialMode::Plain);
    }

    #[test]
    fn bad_proxy_and_bad_enode_are_named() {
        let error = parse(&["--tor-proxy", "localhost"]).unwrap_err();
        assert!(
            error.contains("invalid --tor-proxy \"localhost\""),
            "{error}"
        );
        let error = parse(&["--staticnodes", "enode://zz@1.2.3.4:1"]).unwrap_err();
        assert!(error.starts_with("invalid --staticnodes entry:"), "{error}");
    }

    #[test]
    fn admin_and_pprof_are_off_unless_asked() {
        let config = parse(&[]).unwrap();
        assert!(config.admin.is_none() && config.pprof.is_none());
        let config = parse(&[
            "--admin",
            "--admin.port=18546",
            "--pprof",
            "--pprof.addr",
            "0.0.0.0",
        ])
        .unwrap();
        assert_eq!(config.admin, Some("127.0.0.1:18546".parse().unwrap()));
        assert_eq!(config.pprof, Some("0.0.0.0:6060".parse().unwrap()));
    }
}
