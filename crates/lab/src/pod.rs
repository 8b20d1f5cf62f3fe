//! What a relay pod runs, per mode: gethrelay's flags and the relaywatch sidecar's arguments and
//! environment, as `deploy/kustomize` renders them, with the pod's addresses as roles the lab fills in.
//!
//! This is the lab's one copy of the bundle's pod configuration. `relays.rs` starts labrelay and
//! `exporters.rs` the exporter from it; `xtask/src/deploy_checks/fleet.rs` renders the bundle and
//! fails when this table and the rendered StatefulSets drift apart.
//!
//! In a pod, gethrelay, tor and relaywatch share one network namespace, so the bundle writes
//! fixed loopback addresses (`127.0.0.1:9050`) and all-interface binds (`0.0.0.0:6060`). The lab
//! runs every pod in one namespace, so those values become *roles* ([`Role`]), filled per relay:
//! its own loopback IP, its own tor's SOCKS and control ports and cookie. Everything else (bare
//! flags, ports that each relay can keep because it has its own IP, `RELAYWATCH_ENFORCE`) is
//! copied verbatim.

use crate::relays::{Mode, RelaySpec, ADMIN_PORT};

/// relaywatch's default port, which the deploy bundle names `relaywatch`.
pub const EXPORTER_PORT: u16 = 9476;

/// `gethrelay:low_peer_threshold` of `deploy/rules/gethrelay.rules.yaml`: `GethRelayLowPeerCount`
/// fires below it. The drift test in `xtask/src/deploy_checks/fleet.rs` keeps the two equal.
pub fn low_peer_threshold(mode: Mode) -> usize {
    match mode {
        Mode::Clearnet | Mode::PreferTor => 10,
        Mode::OnlyOnion => 3,
    }
}

/// How many peers above its threshold the lab gives each relay when nothing is wrong, so that a
/// relay that loses one or two peers (a restart elsewhere) still does not fire the alert.
pub const PEER_MARGIN: usize = 2;

/// A value that depends on where the pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The pod tor's SOCKS port (pod: `127.0.0.1:9050`).
    TorSocks,
    /// Where gethrelay's metrics listen (pod: `0.0.0.0`, every interface).
    PprofAddr,
    /// gethrelay's admin API as a URL (pod: gethrelay's default `127.0.0.1:8546`).
    AdminUrl,
    /// Where the exporter listens (pod: `0.0.0.0:9476`).
    ExporterListen,
    /// The pod tor's control port (pod: `127.0.0.1:9051`), `off` for a lab relay without tor.
    TorControl,
    /// The pod tor's control cookie (pod: on the shared tor volume); absent without tor.
    TorCookie,
    /// The pod's `relaywatch.io/mode` label (pod: the downward API).
    Mode,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::TorSocks,
        Role::PprofAddr,
        Role::AdminUrl,
        Role::ExporterListen,
        Role::TorControl,
        Role::TorCookie,
        Role::Mode,
    ];

    /// The placeholder a role is written as when values are compared, not run: `<tor-socks>`.
    pub fn placeholder(self) -> &'static str {
        match self {
            Role::TorSocks => "<tor-socks>",
            Role::PprofAddr => "<pprof-addr>",
            Role::AdminUrl => "<admin-url>",
            Role::ExporterListen => "<exporter-listen>",
            Role::TorControl => "<tor-control>",
            Role::TorCookie => "<tor-cookie>",
            Role::Mode => "<mode>",
        }
    }

    /// The role's value for one lab relay; `None` leaves the setting out.
    pub fn lab_value(self, spec: &RelaySpec) -> Option<String> {
        Some(match self {
            Role::TorSocks => spec.socks.to_string(),
            Role::PprofAddr => spec.ip.to_string(),
            Role::AdminUrl => format!("http://{}", spec.admin_addr()),
            Role::ExporterListen => format!("{}:{EXPORTER_PORT}", spec.ip),
            Role::TorControl => match &spec.tor_control {
                Some((control, _)) => control.to_string(),
                None => "off".to_string(),
            },
            Role::TorCookie => spec.tor_control.as_ref()?.1.display().to_string(),
            Role::Mode => spec.mode.as_str().to_string(),
        })
    }
}

/// The value of one flag or environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A bare flag (`--admin`) or a word (the `exporter` subcommand).
    None,
    /// Copied as the bundle writes it.
    Fixed(&'static str),
    /// Filled per relay.
    Role(Role),
}

/// One command-line argument (`--name`, `--name=value`, or a word) or environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub value: Value,
}

const fn bare(name: &'static str) -> Setting {
    Setting {
        name,
        value: Value::None,
    }
}

const fn fixed(name: &'static str, value: &'static str) -> Setting {
    Setting {
        name,
        value: Value::Fixed(value),
    }
}

const fn role(name: &'static str, role: Role) -> Setting {
    Setting {
        name,
        value: Value::Role(role),
    }
}

/// gethrelay's arguments in every pod (`deploy/kustomize/relay/statefulset.yaml`).
const GETHRELAY: &[Setting] = &[
    fixed("--port", "30303"),
    bare("--pprof"),
    role("--pprof.addr", Role::PprofAddr),
    fixed("--pprof.port", "6060"),
    bare("--admin"),
    role("--tor-proxy", Role::TorSocks),
];

const PREFER_TOR: &[Setting] = &[bare("--prefer-tor")];
// --prefer-tor too: without it gethrelay dials dual-stack peers on clearnet even in only-onion
// mode. --nodiscover: discovery is clearnet UDP.
const ONLY_ONION: &[Setting] = &[
    bare("--only-onion"),
    bare("--prefer-tor"),
    bare("--nodiscover"),
];

/// What `deploy/kustomize/modes/<mode>/` adds to gethrelay's arguments.
fn gethrelay_mode_flags(mode: Mode) -> &'static [Setting] {
    match mode {
        Mode::Clearnet => &[],
        Mode::PreferTor => PREFER_TOR,
        Mode::OnlyOnion => ONLY_ONION,
    }
}

/// The relaywatch container's arguments.
const EXPORTER_ARGS: &[Setting] = &[
    bare("exporter"),
    role("--relay-admin-url", Role::AdminUrl),
    role("--tor-proxy", Role::TorSocks),
    role("--listen", Role::ExporterListen),
];

/// The relaywatch container's environment; only-onion pods enforce (remove leaking peers).
fn exporter_env(mode: Mode) -> [Setting; 4] {
    [
        role("RELAYWATCH_MODE", Role::Mode),
        fixed(
            "RELAYWATCH_ENFORCE",
            if mode == Mode::OnlyOnion {
                "true"
            } else {
                "false"
            },
        ),
        role("RELAYWATCH_TOR_CONTROL", Role::TorControl),
        role("RELAYWATCH_TOR_COOKIE", Role::TorCookie),
    ]
}

/// One mode's pod: the table entry.
#[derive(Debug, Clone)]
pub struct Pod {
    pub gethrelay: Vec<Setting>,
    pub exporter_args: Vec<Setting>,
    pub exporter_env: Vec<Setting>,
}

/// The pod of `mode`, as the bundle configures it.
pub fn pod(mode: Mode) -> Pod {
    Pod {
        gethrelay: GETHRELAY
            .iter()
            .chain(gethrelay_mode_flags(mode))
            .copied()
            .collect(),
        exporter_args: EXPORTER_ARGS.to_vec(),
        exporter_env: exporter_env(mode).to_vec(),
    }
}

/// An argument as the bundle writes it: `--name`, `--name=value`, or a word.
fn render_arg(setting: &Setting, value: Option<String>) -> String {
    match value {
        Some(value) => format!("{}={value}", setting.name),
        None => setting.name.to_string(),
    }
}

/// The value of `setting` for a lab relay: `Some(None)` for a bare flag, `None` to leave it out.
fn lab_value(setting: &Setting, spec: &RelaySpec) -> Option<Option<String>> {
    match setting.value {
        Value::None => Some(None),
        Value::Fixed(value) => Some(Some(value.to_string())),
        Value::Role(role) => role.lab_value(spec).map(Some),
    }
}

fn symbolic_value(setting: &Setting) -> Option<String> {
    match setting.value {
        Value::None => None,
        Value::Fixed(value) => Some(value.to_string()),
        Value::Role(role) => Some(role.placeholder().to_string()),
    }
}

/// gethrelay's arguments for this lab relay, from the table.
pub fn gethrelay_args(spec: &RelaySpec) -> Vec<String> {
    pod(spec.mode)
        .gethrelay
        .iter()
        .filter_map(|setting| Some(render_arg(setting, lab_value(setting, spec)?)))
        .collect()
}

/// Flags the lab adds to every labrelay because many pods share one machine; none of them is a
/// flag the bundle sets, so none changes what the relay does:
/// - `--identity`: the pod's name, so that logs and `admin_peers` names say which relay is which;
/// - `--admin.addr`/`--admin.port`: the admin API on the relay's own IP (in a pod it keeps
///   gethrelay's default `127.0.0.1:8546`, which ten relays on one machine cannot share);
/// - `--http.addr`/`--http.port`: the RPC proxy, always on in gethrelay, for the same reason;
/// - `--lab.ip`: the relay's own loopback IP for its listener and clearnet dials (a pod's IP);
/// - `--lab.onion`: the onion its tor publishes, advertised in the ENR (see the labrelay README).
pub fn lab_wiring_args(spec: &RelaySpec) -> Vec<String> {
    let ip = spec.ip.to_string();
    let mut args: Vec<String> = [
        "--identity",
        &spec.name,
        "--admin.addr",
        &ip,
        "--admin.port",
        &ADMIN_PORT.to_string(),
        "--http.addr",
        &ip,
        "--http.port",
        &crate::relays::RPC_PROXY_PORT.to_string(),
        "--lab.ip",
        &ip,
    ]
    .map(String::from)
    .to_vec();
    if let Some(onion) = &spec.onion {
        args.extend(["--lab.onion".to_string(), onion.clone()]);
    }
    args
}

/// The exporter's arguments and environment for this lab relay, from the table.
pub fn exporter_command(spec: &RelaySpec) -> (Vec<String>, Vec<(String, String)>) {
    let pod = pod(spec.mode);
    let args = pod
        .exporter_args
        .iter()
        .filter_map(|setting| Some(render_arg(setting, lab_value(setting, spec)?)))
        .collect();
    let env = pod
        .exporter_env
        .iter()
        .filter_map(|setting| {
            let value = lab_value(setting, spec)?.unwrap_or_default();
            Some((setting.name.to_string(), value))
        })
        .collect();
    (args, env)
}

/// One mode's pod with every role written as its placeholder, for comparing with the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolicPod {
    pub gethrelay: Vec<String>,
    pub exporter_args: Vec<String>,
    /// `NAME=value`.
    pub exporter_env: Vec<String>,
}

pub fn symbolic(mode: Mode) -> SymbolicPod {
    let pod = pod(mode);
    let args = |settings: &[Setting]| -> Vec<String> {
        settings
            .iter()
            .map(|setting| render_arg(setting, symbolic_value(setting)))
            .collect()
    };
    SymbolicPod {
        gethrelay: args(&pod.gethrelay),
        exporter_args: args(&pod.exporter_args),
        exporter_env: pod
            .exporter_env
            .iter()
            .map(|setting| {
                format!(
                    "{}={}",
                    setting.name,
                    symbolic_value(setting).unwrap_or_default()
                )
            })
            .collect(),
    }
}

/// The role a gethrelay flag, exporter flag or exporter variable of `mode` has in the table, if
/// its value is one: the drift test writes the bundle's value of exactly these as the placeholder.
pub fn role_of(mode: Mode, name: &str) -> Option<Role> {
    let pod = pod(mode);
    pod.gethrelay
        .iter()
        .chain(&pod.exporter_args)
        .chain(&pod.exporter_env)
        .find(|setting| setting.name == name)
        .and_then(|setting| match setting.value {
            Value::Role(role) => Some(role),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    fn spec(mode: Mode) -> RelaySpec {
        RelaySpec {
            name: format!("{}-1", mode.as_str()),
            mode,
            ip: Ipv4Addr::new(127, 9, 9, 4),
            socks: "127.0.0.1:19050".parse().unwrap(),
            onion: None,
            extra_args: vec![],
            tor_control: Some((
                "127.0.0.1:19051".parse().unwrap(),
                PathBuf::from("/lab/tor/x/control_auth_cookie"),
            )),
        }
    }

    #[test]
    fn only_onion_gethrelay_gets_the_bundles_flags_with_lab_addresses() {
        assert_eq!(
            gethrelay_args(&spec(Mode::OnlyOnion)),
            [
                "--port=30303",
                "--pprof",
                "--pprof.addr=127.9.9.4",
                "--pprof.port=6060",
                "--admin",
                "--tor-proxy=127.0.0.1:19050",
                "--only-onion",
                "--prefer-tor",
                "--nodiscover",
            ]
        );
        assert!(!gethrelay_args(&spec(Mode::Clearnet)).contains(&"--prefer-tor".to_string()));
    }

    #[test]
    fn exporter_is_wired_to_its_own_relay_and_tor() {
        let (args, env) = exporter_command(&spec(Mode::OnlyOnion));
        assert_eq!(
            args,
            [
                "exporter",
                "--relay-admin-url=http://127.9.9.4:8546",
                "--tor-proxy=127.0.0.1:19050",
                "--listen=127.9.9.4:9476",
            ]
        );
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            env,
            [
                "RELAYWATCH_MODE=only-onion",
                "RELAYWATCH_ENFORCE=true",
                "RELAYWATCH_TOR_CONTROL=127.0.0.1:19051",
                "RELAYWATCH_TOR_COOKIE=/lab/tor/x/control_auth_cookie",
            ]
        );
        let without_tor = RelaySpec {
            tor_control: None,
            ..spec(Mode::Clearnet)
        };
        let (_, env) = exporter_command(&without_tor);
        assert!(env.contains(&("RELAYWATCH_TOR_CONTROL".into(), "off".into())));
        assert!(env.contains(&("RELAYWATCH_ENFORCE".into(), "false".into())));
        assert!(!env.iter().any(|(k, _)| k == "RELAYWATCH_TOR_COOKIE"));
    }

    #[test]
    fn fixed_ports_are_the_labs_ports() {
        let args = gethrelay_args(&spec(Mode::Clearnet));
        assert!(args.contains(&format!("--port={}", crate::relays::P2P_PORT)));
        assert!(args.contains(&format!("--pprof.port={}", crate::relays::PPROF_PORT)));
    }

    #[test]
    fn symbolic_pods_name_roles_by_placeholder() {
        let pod = symbolic(Mode::PreferTor);
        assert!(pod
            .gethrelay
            .contains(&"--tor-proxy=<tor-socks>".to_string()));
        assert!(pod
            .exporter_env
            .contains(&"RELAYWATCH_ENFORCE=false".to_string()));
        assert_eq!(
            role_of(Mode::PreferTor, "--listen"),
            Some(Role::ExporterListen)
        );
        assert_eq!(role_of(Mode::PreferTor, "--port"), None);
    }
}
