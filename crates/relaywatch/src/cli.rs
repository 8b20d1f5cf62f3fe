//! Command line and environment: every flag is defined here once, with its `RELAYWATCH_*` variable.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::classify::TorEndpoints;

/// Tor-aware monitoring for gethrelay: peers, traffic and Tor dials, measured from outside the relay.
#[derive(Debug, Parser)]
#[command(name = "relaywatch", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar exporter next to one gethrelay (same pod, same network namespace).
    Exporter(ExporterArgs),
    /// Check the PRD's success criteria against a running fleet (Prometheus, Alertmanager and
    /// each relay's admin API, e.g. through kubectl port-forward); exit 0 only if all pass.
    Verify(VerifyArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The YAML file naming Prometheus, Alertmanager and every relay (see the README,
    /// "Verifying a cluster").
    #[arg(long)]
    pub config: std::path::PathBuf,
}

/// The relay's deployment mode, as the pod label `relaywatch.io/mode` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Clearnet,
    PreferTor,
    OnlyOnion,
}

/// Log verbosity; only `debug` prints peer addresses (leak audit lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExporterArgs {
    /// The relay's deployment mode; in only-onion mode every clearnet peer is a leak.
    #[arg(long, env = "RELAYWATCH_MODE", value_enum)]
    pub mode: Mode,

    /// Remove leaking clearnet peers with admin_removePeer (only-onion mode).
    #[arg(long, env = "RELAYWATCH_ENFORCE")]
    pub enforce: bool,

    /// The relay's admin API (gethrelay `--admin`), never its RPC proxy on 8545.
    #[arg(
        long,
        env = "RELAYWATCH_RELAY_ADMIN_URL",
        default_value = "http://127.0.0.1:8546"
    )]
    pub relay_admin_url: String,

    /// The relay's `--tor-proxy` address: outbound peers with this remote address came through Tor.
    #[arg(long, env = "RELAYWATCH_TOR_PROXY", default_value = "127.0.0.1:9050")]
    pub tor_proxy: SocketAddr,

    /// Source addresses of the Tor daemon's connections: inbound peers from them came through the onion service.
    #[arg(
        long,
        env = "RELAYWATCH_TOR_SOURCE_ADDRS",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    pub tor_source_addr: Vec<IpAddr>,

    /// The pod tor's control port, or `off` for a pod without tor.
    #[arg(long, env = "RELAYWATCH_TOR_CONTROL", default_value = "127.0.0.1:9051")]
    pub tor_control: String,

    /// tor's control cookie (CookieAuthentication); default: the file PROTOCOLINFO names.
    #[arg(long, env = "RELAYWATCH_TOR_COOKIE")]
    pub tor_cookie: Option<std::path::PathBuf>,

    /// A file holding the control-port password (HashedControlPassword); never pass it as a flag.
    #[arg(long, env = "RELAYWATCH_TOR_PASSWORD_FILE")]
    pub tor_password_file: Option<std::path::PathBuf>,

    /// DANGEROUS: when tor offers no SAFECOOKIE, send the --tor-cookie file in clear (plain COOKIE).
    #[arg(long, env = "RELAYWATCH_TOR_ALLOW_PLAIN_COOKIE")]
    pub tor_allow_plain_cookie: bool,

    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "RELAYWATCH_LISTEN", default_value = "0.0.0.0:9476")]
    pub listen: SocketAddr,

    /// How often admin_peers is polled (peer gauges, leak guard), e.g. `500ms`, `2s` (100ms to 1h).
    #[arg(long, env = "RELAYWATCH_POLL_INTERVAL", default_value = "1s", value_parser = parse_poll_interval)]
    pub poll_interval: Duration,

    /// How often the kernel's socket counters are read (byte counters), at the first poll after
    /// this long; at most every poll. Closed sockets are counted from their destroy events
    /// whenever they close. 5s is the bundle's scrape interval: fresher bytes are never seen.
    #[arg(long, env = "RELAYWATCH_SOCKETS_INTERVAL", default_value = "5s", value_parser = parse_poll_interval)]
    pub sockets_interval: Duration,

    /// Log level; peer addresses appear only at `debug`.
    #[arg(long, env = "RELAYWATCH_LOG_LEVEL", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Log line format: `text`, or `json` for log collectors.
    #[arg(
        long,
        env = "RELAYWATCH_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// Parses `250ms`, `2s`, `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 2s or 1m"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" | "" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; use ms, s or m")),
    };
    if duration.is_zero() || duration > Duration::from_secs(3600) {
        return Err(format!(
            "{text:?}: the poll interval must be between 1ms and 1h"
        ));
    }
    Ok(duration)
}

/// The shortest poll interval: admin_peers at 1,000 peers is half a megabyte of JSON, and
/// nothing a dashboard shows changes faster.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A duration (see [`parse_duration`]) of at least [`MIN_POLL_INTERVAL`].
pub fn parse_poll_interval(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < MIN_POLL_INTERVAL {
        return Err(format!(
            "{text:?}: polls faster than every 100ms would load the relay for nothing; use 100ms or more (default 1s)"
        ));
    }
    Ok(duration)
}

/// Checks the admin URL; refuses gethrelay's RPC proxy port and URLs without a host.
/// Returns the host, for the loopback warning.
pub fn check_admin_url(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("--relay-admin-url {url:?}: only http:// URLs are supported, e.g. http://127.0.0.1:8546")
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "--relay-admin-url {url:?}: credentials in the URL are not supported (gethrelay's admin API has none)"
        ));
    }
    // `[::1]:8546` has a port; `[::1]` and `host` alone mean HTTP's 80.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !authority.starts_with('[') || host.ends_with(']') => (host, port),
        _ => (authority, "80"),
    };
    if host.is_empty() || host == "[]" {
        return Err(format!(
            "--relay-admin-url {url:?}: no host; use gethrelay's admin address, e.g. http://127.0.0.1:8546"
        ));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("--relay-admin-url {url:?}: bad port {port:?}"))?;
    if port == 8545 {
        return Err(format!(
            "--relay-admin-url {url:?}: port 8545 is gethrelay's RPC proxy, which forwards every call \
             (admin_peers included) to a public upstream, so it would report somebody else's peers; \
             point relaywatch at gethrelay's admin API instead (`--admin`, default http://127.0.0.1:8546)"
        ));
    }
    Ok(host.to_string())
}

/// Whether a host (as written in a URL) is this machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .map(|ip| ip.to_canonical().is_loopback())
            .unwrap_or(false)
}

impl ExporterArgs {
    /// The control-port settings, `None` with `--tor-control off`.
    pub fn tor_control(&self) -> Result<Option<crate::sources::tor::TorControlConfig>, String> {
        if self.tor_control == "off" {
            return Ok(None);
        }
        let address = self.tor_control.parse().map_err(|_| {
            format!(
                "--tor-control {:?}: expected ip:port (e.g. 127.0.0.1:9051) or `off`",
                self.tor_control
            )
        })?;
        Ok(Some(crate::sources::tor::TorControlConfig {
            address,
            cookie_file: self.tor_cookie.clone(),
            password_file: self.tor_password_file.clone(),
            allow_plain_cookie: self.tor_allow_plain_cookie,
            poll_interval: self.poll_interval,
        }))
    }

    pub fn tor_endpoints(&self) -> TorEndpoints {
        TorEndpoints {
            socks_proxy: self.tor_proxy,
            daemon_sources: self.tor_source_addr.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ExporterArgs, String> {
        let cli = Cli::try_parse_from(
            ["relaywatch", "exporter"]
                .iter()
                .chain(args.iter())
                .copied(),
        )
        .map_err(|error| error.to_string())?;
        let Command::Exporter(args) = cli.command else {
            return Err("not the exporter".into());
        };
        Ok(args)
    }

    #[test]
    fn defaults_match_a_pod() {
        let args = parse(&["--mode", "only-onion"]).unwrap();
        assert_eq!(args.mode, Mode::OnlyOnion);
        assert!(!args.enforce);
        assert_eq!(args.relay_admin_url, "http://127.0.0.1:8546");
        assert_eq!(args.listen, "0.0.0.0:9476".parse().unwrap());
        assert_eq!(args.poll_interval, Duration::from_secs(1));
        assert_eq!(args.tor_source_addr.len(), 2);
    }

    #[test]
    fn unknown_mode_is_refused_with_the_choices() {
        let error = parse(&["--mode", "tor-only"]).unwrap_err();
        assert!(error.contains("invalid value 'tor-only'"), "{error}");
        assert!(error.contains("only-onion"), "{error}");
    }

    #[test]
    fn rpc_proxy_port_is_refused() {
        let error = check_admin_url("http://127.0.0.1:8545").unwrap_err();
        assert!(error.contains("RPC proxy"), "{error}");
        assert!(check_admin_url("http://127.0.0.1:8546").is_ok());
        assert!(check_admin_url("http://[::1]:8546/").is_ok());
        assert!(check_admin_url("http://[::1]").is_ok());
        assert!(check_admin_url("http://[::1]:8545").is_err());
        assert!(check_admin_url("https://x:1").is_err());
    }

    #[test]
    fn admin_urls_without_a_usable_host_or_port_are_refused() {
        for bad in [
            "http://",
            "http:///",
            "http://:8546",
            "http://[]:8546",
            "http://127.0.0.1:",
            "http://127.0.0.1:0",
            "http://127.0.0.1:99999",
            "http://user:pw@127.0.0.1:8546",
        ] {
            assert!(check_admin_url(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            check_admin_url("http://localhost:8546/").unwrap(),
            "localhost"
        );
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.3.4.5",
            "[::1]",
            "localhost",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["10.0.0.5", "[2001:db8::1]", "relay.example", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn poll_intervals_below_100ms_are_refused() {
        assert!(parse(&["--mode", "clearnet", "--poll-interval", "1ms"]).is_err());
        assert!(parse(&["--mode", "clearnet", "--poll-interval", "99ms"]).is_err());
        assert!(parse(&["--mode", "clearnet", "--poll-interval", "100ms"]).is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2000000000000000000s").is_err());
        assert!(parse_duration("300000000000000000m").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
