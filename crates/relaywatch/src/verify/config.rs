//! `relaywatch verify --config FILE`: the YAML file naming Prometheus, Alertmanager and every relay. Pure.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::classify::TorEndpoints;
use crate::cli::{self, Mode};

/// A checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Base URL of Prometheus's HTTP API, without a trailing `/`.
    pub prometheus: String,
    /// Base URL of Alertmanager's HTTP API, without a trailing `/`.
    pub alertmanager: String,
    pub relays: Vec<Relay>,
}

/// One gethrelay pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub namespace: String,
    pub pod: String,
    pub mode: Mode,
    /// That pod's admin API (a port-forward in a cluster).
    pub admin: String,
    /// The same meaning as the exporter's `--tor-proxy` and `--tor-source-addr`.
    pub tor: TorEndpoints,
}

impl Relay {
    /// `namespace/pod`, the name every line of the report uses.
    pub fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.pod)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    prometheus: String,
    alertmanager: String,
    relays: Vec<RawRelay>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    namespace: String,
    pod: String,
    mode: String,
    admin: String,
    tor_proxy: Option<String>,
    tor_source_addrs: Option<Vec<String>>,
}

const EXAMPLE: &str = "see the README's \"Verifying a cluster\" section for an example";

/// Parses and checks the configuration; the error names the field and the fix.
pub fn parse(text: &str) -> Result<Config, String> {
    let raw: RawConfig = serde_norway::from_str(text).map_err(|error| {
        format!("{error}; the file needs prometheus, alertmanager and relays ({EXAMPLE})")
    })?;
    let prometheus = base_url("prometheus", &raw.prometheus)?;
    let alertmanager = base_url("alertmanager", &raw.alertmanager)?;
    if raw.relays.is_empty() {
        return Err(format!(
            "relays: empty; list one entry per gethrelay pod ({EXAMPLE})"
        ));
    }
    let mut relays: Vec<Relay> = Vec::new();
    for (index, raw) in raw.relays.into_iter().enumerate() {
        let relay = relay(index, raw)?;
        if relays
            .iter()
            .any(|other| other.namespace == relay.namespace && other.pod == relay.pod)
        {
            return Err(format!(
                "relays[{index}]: {} is listed twice; list each pod once",
                relay.name()
            ));
        }
        relays.push(relay);
    }
    Ok(Config {
        prometheus,
        alertmanager,
        relays,
    })
}

fn relay(index: usize, raw: RawRelay) -> Result<Relay, String> {
    let field = |name: &str| format!("relays[{index}].{name}");
    for (name, value) in [("namespace", &raw.namespace), ("pod", &raw.pod)] {
        if !is_dns_name(value) {
            return Err(format!(
                "{} {value:?}: not a Kubernetes name; use lowercase letters, digits, `-` and `.` as `kubectl get pods -A` prints them",
                field(name)
            ));
        }
    }
    let mode = match raw.mode.as_str() {
        "clearnet" => Mode::Clearnet,
        "prefer-tor" => Mode::PreferTor,
        "only-onion" => Mode::OnlyOnion,
        other => {
            return Err(format!(
                "{} {other:?}: unknown mode; use clearnet, prefer-tor or only-onion (the pod's relaywatch.io/mode label)",
                field("mode")
            ))
        }
    };
    // The exporter's own check: refuses the RPC proxy port 8545 and URLs without a host.
    cli::check_admin_url(&raw.admin).map_err(|error| {
        format!(
            "{}: {}",
            field("admin"),
            error.replace("--relay-admin-url ", "")
        )
    })?;
    let socks_proxy = match raw.tor_proxy {
        None => SocketAddr::from(([127, 0, 0, 1], 9050)),
        Some(text) => text.parse().map_err(|_| {
            format!(
                "{} {text:?}: expected ip:port, the relay's --tor-proxy (default 127.0.0.1:9050)",
                field("tor_proxy")
            )
        })?,
    };
    let daemon_sources = match raw.tor_source_addrs {
        None => vec![
            IpAddr::from([127, 0, 0, 1]),
            "::1".parse().expect("literal"),
        ],
        Some(list) if list.is_empty() => {
            return Err(format!(
                "{}: empty; list the Tor daemon's source addresses (default [127.0.0.1, \"::1\"])",
                field("tor_source_addrs")
            ))
        }
        Some(list) => list
            .iter()
            .map(|text| {
                text.parse().map_err(|_| {
                    format!(
                        "{} {text:?}: not an IP address (default [127.0.0.1, \"::1\"])",
                        field("tor_source_addrs")
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Relay {
        namespace: raw.namespace,
        pod: raw.pod,
        mode,
        admin: raw.admin,
        tor: TorEndpoints {
            socks_proxy,
            daemon_sources,
        },
    })
}

/// An `http://host:port` base URL; a trailing `/` is dropped.
fn base_url(field: &str, url: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("{field} {url:?}: {why}; write the base URL, e.g. http://127.0.0.1:9090 (a kubectl port-forward)")
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("not an http:// or https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
        return Err(bad("no usable host"));
    }
    if let Some((host, port)) = authority.rsplit_once(':') {
        let has_port = !authority.starts_with('[') || host.ends_with(']');
        if has_port && (host.is_empty() || port.parse::<u16>().ok().filter(|p| *p != 0).is_none()) {
            return Err(bad("bad host or port"));
        }
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// RFC 1123 names, as Kubernetes allows for namespaces and pods.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "prometheus: http://127.0.0.1:9090\nalertmanager: http://127.0.0.1:9093/\nrelays:\n  - namespace: gethrelay\n    pod: gethrelay-only-onion-0\n    mode: only-onion\n    admin: http://127.0.0.1:18546\n  - namespace: gethrelay\n    pod: gethrelay-clearnet-0\n    mode: clearnet\n    admin: http://127.0.0.1:18547\n    tor_proxy: 127.0.0.1:19050\n    tor_source_addrs: [127.0.0.2]\n";

    #[test]
    fn a_good_file_with_defaults_and_overrides() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.alertmanager, "http://127.0.0.1:9093");
        assert_eq!(config.relays[0].mode, Mode::OnlyOnion);
        assert_eq!(
            config.relays[0].tor.socks_proxy.to_string(),
            "127.0.0.1:9050"
        );
        assert_eq!(config.relays[0].tor.daemon_sources.len(), 2);
        assert_eq!(
            config.relays[1].tor.socks_proxy.to_string(),
            "127.0.0.1:19050"
        );
        assert_eq!(
            config.relays[1].tor.daemon_sources,
            vec![IpAddr::from([127, 0, 0, 2])]
        );
        assert_eq!(config.relays[1].name(), "gethrelay/gethrelay-clearnet-0");
        for url in [
            "http://[::1]:9090",
            "http://[::1]",
            "https://prometheus.example:443/",
        ] {
            assert!(base_url("prometheus", url).is_ok(), "{url}");
        }
        for url in ["http://:9090", "http://a:0", "http://[::1]:x", "ftp://a"] {
            assert!(base_url("prometheus", url).is_err(), "{url}");
        }
    }

    /// Each bad file, and words its error must contain (the field and the fix).
    #[test]
    fn bad_files_name_the_field_and_the_fix() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "unknown key",
                "    admin: http://127.0.0.1:18546\n",
                &["unknown field `adminn`", "admin"],
            ),
            (
                "missing field",
                "    admin: http://127.0.0.1:18546\n",
                &["missing field `admin`"],
            ),
            (
                "bad mode",
                "    mode: only-onion\n",
                &["relays[0].mode", "\"onion\"", "only-onion"],
            ),
            (
                "rpc proxy",
                "    admin: http://127.0.0.1:18546\n",
                &["relays[0].admin", "8545", "8546"],
            ),
            (
                "not http",
                "    admin: http://127.0.0.1:18546\n",
                &["relays[0].admin", "http://"],
            ),
            (
                "bad pod",
                "    pod: gethrelay-only-onion-0\n",
                &["relays[0].pod", "Kubernetes name"],
            ),
            (
                "bad proxy",
                "    mode: only-onion\n",
                &["relays[0].tor_proxy", "ip:port"],
            ),
            (
                "bad source",
                "    mode: only-onion\n",
                &["relays[0].tor_source_addrs", "not an IP"],
            ),
            (
                "bad prometheus",
                "prometheus: http://127.0.0.1:9090\n",
                &["prometheus", "base URL"],
            ),
            ("duplicate", "", &["listed twice"]),
            ("empty", "", &["relays: empty"]),
            ("not yaml", "", &["prometheus, alertmanager and relays"]),
        ];
        for (case, line, want) in cases {
            let text = match *case {
                "unknown key" => GOOD.replacen(line, "    adminn: http://127.0.0.1:18546\n", 1),
                "missing field" => GOOD.replacen(line, "", 1),
                "bad mode" => GOOD.replacen(line, "    mode: onion\n", 1),
                "rpc proxy" => GOOD.replacen(line, "    admin: http://127.0.0.1:8545\n", 1),
                "not http" => GOOD.replacen(line, "    admin: 127.0.0.1:18546\n", 1),
                "bad pod" => GOOD.replacen(line, "    pod: Gethrelay_0\n", 1),
                "bad proxy" => {
                    GOOD.replacen(line, "    mode: only-onion\n    tor_proxy: localhost\n", 1)
                }
                "bad source" => GOOD.replacen(
                    line,
                    "    mode: only-onion\n    tor_source_addrs: [tor]\n",
                    1,
                ),
                "bad prometheus" => GOOD.replacen(line, "prometheus: 127.0.0.1:9090\n", 1),
                "duplicate" => GOOD.replace("gethrelay-clearnet-0", "gethrelay-only-onion-0"),
                "empty" => "prometheus: http://a:1\nalertmanager: http://a:2\nrelays: []\n".into(),
                _ => "{[".into(),
            };
            let error = parse(&text).expect_err(case);
            for word in *want {
                assert!(error.contains(word), "{case}: {error:?} lacks {word:?}");
            }
        }
    }
}
