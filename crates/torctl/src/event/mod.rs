//! Typed asynchronous events (control-spec §4.1) from framed `650` messages.
//!
//! Only the events the exporter uses get a type: STREAM, CIRC, HS_DESC, ORCONN,
//! NETWORK_LIVENESS and the STATUS_* family. Everything else is [`Event::Other`]. An event of
//! a known kind that lacks a field the grammar requires (e.g. a STREAM without a target) is
//! [`Event::Malformed`], to be counted; unknown keywords and values are kept, never errors.

use crate::args::Args;
use crate::framing::Message;
use crate::vocab::{
    CircPurpose, CircReason, CircStatus, HsDescAction, HsDescReason, Liveness, OrConnReason,
    OrConnStatus, Severity, StatusKind, StreamPurpose, StreamReason, StreamStatus,
};

#[cfg(test)]
mod tests;

/// Longest event keyword kept in `Other`/`Malformed` (they are tor's words, but the line
/// could be anything).
const MAX_KEYWORD: usize = 40;

/// One asynchronous event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stream(StreamEvent),
    Circ(CircEvent),
    HsDesc(HsDescEvent),
    OrConn(OrConnEvent),
    NetworkLiveness(Liveness),
    Status(StatusEvent),
    /// An event kind this crate does not type (e.g. `STREAM_BW`, `NOTICE`, `GUARD`).
    Other {
        keyword: String,
    },
    /// A known kind with a required field missing or unreadable.
    Malformed {
        keyword: String,
    },
}

impl Event {
    /// The event keyword (`STREAM`, `CIRC`, …, or the `Other`/`Malformed` keyword).
    pub fn keyword(&self) -> &str {
        match self {
            Event::Stream(_) => "STREAM",
            Event::Circ(_) => "CIRC",
            Event::HsDesc(_) => "HS_DESC",
            Event::OrConn(_) => "ORCONN",
            Event::NetworkLiveness(_) => "NETWORK_LIVENESS",
            Event::Status(status) => status.kind.as_str(),
            Event::Other { keyword } | Event::Malformed { keyword } => keyword,
        }
    }
}

/// `host:port` of a STREAM; the port is `None` when the target has no readable port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: Option<u16>,
}

impl Target {
    fn parse(word: &str) -> Target {
        match word.rsplit_once(':') {
            Some((host, port)) => match port.parse() {
                Ok(port) => Target {
                    host: host.to_string(),
                    port: Some(port),
                },
                Err(_) => Target {
                    host: word.to_string(),
                    port: None,
                },
            },
            None => Target {
                host: word.to_string(),
                port: None,
            },
        }
    }

    /// The v3/v2 onion service address (lower case, without `.onion` and without any
    /// subdomain) when the host is an onion name.
    pub fn onion_address(&self) -> Option<String> {
        onion_address(&self.host)
    }
}

/// `xyz.onion`, `www.xyz.onion` or `xyz` (as HS_DESC and REND_QUERY write it) → `xyz`.
pub fn onion_address(host: &str) -> Option<String> {
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix(".onion")?;
    let address = name.rsplit('.').next().unwrap_or(name);
    (!address.is_empty()).then(|| address.to_string())
}

/// `650 STREAM StreamID StreamStatus CircuitID Target [KEYWORD=value…]` (§4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub id: String,
    pub status: StreamStatus,
    /// The circuit the stream is attached to; `"0"` when unattached.
    pub circuit: String,
    pub target: Target,
    pub reason: Option<StreamReason>,
    pub remote_reason: Option<StreamReason>,
    pub source: Option<String>,
    pub source_addr: Option<String>,
    pub purpose: Option<StreamPurpose>,
    pub client_protocol: Option<String>,
    pub socks_username: Option<String>,
}

/// `650 CIRC CircuitID CircStatus [Path] [KEYWORD=value…]` (§4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircEvent {
    pub id: String,
    pub status: CircStatus,
    /// The path as tor wrote it (`$FP~nick,…`); absent before the first hop.
    pub path: Option<String>,
    pub build_flags: Vec<String>,
    pub purpose: Option<CircPurpose>,
    pub hs_state: Option<String>,
    /// The onion address this HS circuit serves, without `.onion`.
    pub rend_query: Option<String>,
    pub time_created: Option<String>,
    pub reason: Option<CircReason>,
    pub remote_reason: Option<CircReason>,
    pub socks_username: Option<String>,
}

/// `650 HS_DESC Action HSAddress AuthType HsDir [DescriptorID] [KEYWORD=value…]` (§4.1.25).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsDescEvent {
    pub action: HsDescAction,
    /// Without `.onion`; `UNKNOWN` when tor does not know it.
    pub address: String,
    pub auth: String,
    pub hsdir: String,
    pub descriptor_id: Option<String>,
    pub reason: Option<HsDescReason>,
    pub replica: Option<String>,
    pub hsdir_index: Option<String>,
}

/// `650 ORCONN (LongName / Target) ORStatus [REASON=] [NCIRCS=] [ID=]` (§4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrConnEvent {
    pub target: String,
    pub status: OrConnStatus,
    pub reason: Option<OrConnReason>,
    pub ncircs: Option<u32>,
    pub id: Option<String>,
}

/// `650 STATUS_* Severity Action [KEYWORD=value…]` (§4.1.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub kind: StatusKind,
    pub severity: Severity,
    /// E.g. `BOOTSTRAP`, `CIRCUIT_ESTABLISHED`, `SOCKS_BAD_HOSTNAME`.
    pub action: String,
    pub args: Vec<(String, String)>,
}

impl StatusEvent {
    /// The value of argument `key`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Types a framed message; `None` when it is a reply, not an event (status other than 650).
pub fn parse_event(message: &Message) -> Option<Event> {
    if !message.is_event() {
        return None;
    }
    let first = message.first_text();
    let (keyword, rest) = first.split_once(' ').unwrap_or((first, ""));
    let mut args = Args::parse(rest);
    // Extra lines carry more keyword arguments (§4.1). Data blocks are not arguments, and
    // the closing "OK" of a data event is not one either.
    for line in message.lines.iter().skip(1) {
        if line.data.is_none() && line.text != "OK" {
            args.extend(&line.text);
        }
    }
    let parsed = match keyword {
        "STREAM" => stream(&args).map(Event::Stream),
        "CIRC" => circ(&args).map(Event::Circ),
        "HS_DESC" => hs_desc(&args).map(Event::HsDesc),
        "ORCONN" => orconn(&args).map(Event::OrConn),
        "NETWORK_LIVENESS" => args
            .pos(0)
            .map(|w| Event::NetworkLiveness(Liveness::parse(w))),
        // "STATUS_SEVER" is the misspelling of tor < 0.2.0.22 (§4.1.10).
        "STATUS_GENERAL" | "STATUS_CLIENT" | "STATUS_SERVER" | "STATUS_SEVER" => {
            let kind = if keyword == "STATUS_SEVER" {
                StatusKind::Server
            } else {
                StatusKind::parse(keyword)
            };
            status(kind, args).map(Event::Status)
        }
        _ => {
            return Some(Event::Other {
                keyword: truncate(keyword),
            })
        }
    };
    Some(parsed.unwrap_or_else(|| Event::Malformed {
        keyword: truncate(keyword),
    }))
}

fn truncate(keyword: &str) -> String {
    let mut end = keyword.len().min(MAX_KEYWORD);
    while !keyword.is_char_boundary(end) {
        end -= 1;
    }
    keyword[..end].to_string()
}

fn owned(value: Option<&str>) -> Option<String> {
    value.map(str::to_string)
}

fn stream(args: &Args) -> Option<StreamEvent> {
    Some(StreamEvent {
        id: args.pos(0)?.to_string(),
        status: StreamStatus::parse(args.pos(1)?),
        circuit: args.pos(2)?.to_string(),
        target: Target::parse(args.pos(3)?),
        reason: args.get("REASON").map(StreamReason::parse),
        remote_reason: args.get("REMOTE_REASON").map(StreamReason::parse),
        source: owned(args.get("SOURCE")),
        source_addr: owned(args.get("SOURCE_ADDR")),
        purpose: args.get("PURPOSE").map(StreamPurpose::parse),
        client_protocol: owned(args.get("CLIENT_PROTOCOL")),
        socks_username: owned(args.get("SOCKS_USERNAME")),
    })
}

fn circ(args: &Args) -> Option<CircEvent> {
    Some(CircEvent {
        id: args.pos(0)?.to_string(),
        status: CircStatus::parse(args.pos(1)?),
        path: owned(args.pos(2)),
        build_flags: args
            .get("BUILD_FLAGS")
            .map(|flags| flags.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        purpose: args.get("PURPOSE").map(CircPurpose::parse),
        hs_state: owned(args.get("HS_STATE")),
        rend_query: owned(args.get("REND_QUERY")),
        time_created: owned(args.get("TIME_CREATED")),
        reason: args.get("REASON").map(CircReason::parse),
        remote_reason: args.get("REMOTE_REASON").map(CircReason::parse),
        socks_username: owned(args.get("SOCKS_USERNAME")),
    })
}

fn hs_desc(args: &Args) -> Option<HsDescEvent> {
    Some(HsDescEvent {
        action: HsDescAction::parse(args.pos(0)?),
        address: args.pos(1)?.to_string(),
        auth: args.pos(2)?.to_string(),
        hsdir: args.pos(3)?.to_string(),
        descriptor_id: owned(args.pos(4)),
        reason: args.get("REASON").map(HsDescReason::parse),
        replica: owned(args.get("REPLICA")),
        hsdir_index: owned(args.get("HSDIR_INDEX")),
    })
}

fn orconn(args: &Args) -> Option<OrConnEvent> {
    Some(OrConnEvent {
        target: args.pos(0)?.to_string(),
        status: OrConnStatus::parse(args.pos(1)?),
        reason: args.get("REASON").map(OrConnReason::parse),
        ncircs: args.get("NCIRCS").and_then(|n| n.parse().ok()),
        id: owned(args.get("ID")),
    })
}

fn status(kind: StatusKind, args: Args) -> Option<StatusEvent> {
    Some(StatusEvent {
        kind,
        severity: Severity::parse(args.pos(0)?),
        action: args.pos(1)?.to_string(),
        args: args
            .keywords
            .into_iter()
            .map(|(key, value)| (key.to_string(), value.into_owned()))
            .collect(),
    })
}
