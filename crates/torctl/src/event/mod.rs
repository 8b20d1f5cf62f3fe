//! Typed asynchronous events (control-spec §4.1) from framed `650` messages.
//!
//! Only the events the exporter uses get a type: STREAM, CIRC, HS_DESC, ORCONN,
//! NETWORK_LIVENESS and the STATUS_* family. Everything else is [`Event::Other`]. An event of
//! a known kind that lacks a field the grammar requires (e.g. a STREAM without a target) is
//! [`Event::Malformed`], to be counted; unknown keywords and values are kept, never errors.
//!
//! Events borrow their words from the [`Message`] they were parsed from (a `String` per
//! field was most of the parser's allocations); call `.to_string()` on what must outlive it.

use std::borrow::Cow;

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
pub enum Event<'a> {
    Stream(StreamEvent<'a>),
    Circ(CircEvent<'a>),
    HsDesc(HsDescEvent<'a>),
    OrConn(OrConnEvent<'a>),
    NetworkLiveness(Liveness),
    Status(StatusEvent<'a>),
    /// An event kind this crate does not type (e.g. `STREAM_BW`, `NOTICE`, `GUARD`).
    Other {
        keyword: &'a str,
    },
    /// A known kind with a required field missing or unreadable.
    Malformed {
        keyword: &'a str,
    },
}

impl Event<'_> {
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
pub struct Target<'a> {
    pub host: Cow<'a, str>,
    pub port: Option<u16>,
}

impl<'a> Target<'a> {
    fn parse(word: Cow<'a, str>) -> Target<'a> {
        let split = word
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.len(), port.parse().ok()?)));
        match split {
            Some((host_len, port)) => Target {
                host: match word {
                    Cow::Borrowed(word) => Cow::Borrowed(&word[..host_len]),
                    Cow::Owned(mut word) => {
                        word.truncate(host_len);
                        Cow::Owned(word)
                    }
                },
                port: Some(port),
            },
            None => Target {
                host: word,
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
    // Compared in place: lower-casing the whole host first cost an allocation per event.
    let suffix = host.len().checked_sub(".onion".len())?;
    if !host.as_bytes()[suffix..].eq_ignore_ascii_case(b".onion") {
        return None;
    }
    // The suffix is ASCII, so `suffix` is a char boundary.
    onion_label(&host[..suffix])
}

/// The last DNS label of `name`, lower case; `None` when empty.
pub(crate) fn onion_label(name: &str) -> Option<String> {
    let address = name.rsplit('.').next().unwrap_or(name);
    (!address.is_empty()).then(|| address.to_ascii_lowercase())
}

/// `650 STREAM StreamID StreamStatus CircuitID Target [KEYWORD=value…]` (§4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent<'a> {
    pub id: Cow<'a, str>,
    pub status: StreamStatus,
    /// The circuit the stream is attached to; `"0"` when unattached.
    pub circuit: Cow<'a, str>,
    pub target: Target<'a>,
    pub reason: Option<StreamReason>,
    pub remote_reason: Option<StreamReason>,
    pub source: Option<Cow<'a, str>>,
    pub source_addr: Option<Cow<'a, str>>,
    pub purpose: Option<StreamPurpose>,
    pub client_protocol: Option<Cow<'a, str>>,
    pub socks_username: Option<Cow<'a, str>>,
}

/// `650 CIRC CircuitID CircStatus [Path] [KEYWORD=value…]` (§4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircEvent<'a> {
    pub id: Cow<'a, str>,
    pub status: CircStatus,
    /// The path as tor wrote it (`$FP~nick,…`); absent before the first hop.
    pub path: Option<Cow<'a, str>>,
    pub build_flags: Vec<Cow<'a, str>>,
    pub purpose: Option<CircPurpose>,
    pub hs_state: Option<Cow<'a, str>>,
    /// The onion address this HS circuit serves, without `.onion`.
    pub rend_query: Option<Cow<'a, str>>,
    pub time_created: Option<Cow<'a, str>>,
    pub reason: Option<CircReason>,
    pub remote_reason: Option<CircReason>,
    pub socks_username: Option<Cow<'a, str>>,
}

/// `650 HS_DESC Action HSAddress AuthType HsDir [DescriptorID] [KEYWORD=value…]` (§4.1.25).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsDescEvent<'a> {
    pub action: HsDescAction,
    /// Without `.onion`; `UNKNOWN` when tor does not know it.
    pub address: Cow<'a, str>,
    pub auth: Cow<'a, str>,
    pub hsdir: Cow<'a, str>,
    pub descriptor_id: Option<Cow<'a, str>>,
    pub reason: Option<HsDescReason>,
    pub replica: Option<Cow<'a, str>>,
    pub hsdir_index: Option<Cow<'a, str>>,
}

/// `650 ORCONN (LongName / Target) ORStatus [REASON=] [NCIRCS=] [ID=]` (§4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrConnEvent<'a> {
    pub target: Cow<'a, str>,
    pub status: OrConnStatus,
    pub reason: Option<OrConnReason>,
    pub ncircs: Option<u32>,
    pub id: Option<Cow<'a, str>>,
}

/// `650 STATUS_* Severity Action [KEYWORD=value…]` (§4.1.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent<'a> {
    pub kind: StatusKind,
    pub severity: Severity,
    /// E.g. `BOOTSTRAP`, `CIRCUIT_ESTABLISHED`, `SOCKS_BAD_HOSTNAME`.
    pub action: Cow<'a, str>,
    pub args: Vec<(&'a str, Cow<'a, str>)>,
}

impl StatusEvent<'_> {
    /// The value of argument `key`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// Types a framed message; `None` when it is a reply, not an event (status other than 650).
pub fn parse_event(message: &Message) -> Option<Event<'_>> {
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

fn truncate(keyword: &str) -> &str {
    let mut end = keyword.len().min(MAX_KEYWORD);
    while !keyword.is_char_boundary(end) {
        end -= 1;
    }
    &keyword[..end]
}

fn stream<'a>(args: &Args<'a>) -> Option<StreamEvent<'a>> {
    Some(StreamEvent {
        id: args.word(0)?,
        status: StreamStatus::parse(args.pos(1)?),
        circuit: args.word(2)?,
        target: Target::parse(args.word(3)?),
        reason: args.get("REASON").map(StreamReason::parse),
        remote_reason: args.get("REMOTE_REASON").map(StreamReason::parse),
        source: args.value("SOURCE"),
        source_addr: args.value("SOURCE_ADDR"),
        purpose: args.get("PURPOSE").map(StreamPurpose::parse),
        client_protocol: args.value("CLIENT_PROTOCOL"),
        socks_username: args.value("SOCKS_USERNAME"),
    })
}

fn circ<'a>(args: &Args<'a>) -> Option<CircEvent<'a>> {
    Some(CircEvent {
        id: args.word(0)?,
        status: CircStatus::parse(args.pos(1)?),
        path: args.word(2),
        build_flags: match args.value("BUILD_FLAGS") {
            Some(Cow::Borrowed(flags)) => flags.split(',').map(Cow::Borrowed).collect(),
            Some(Cow::Owned(flags)) => flags.split(',').map(|f| Cow::Owned(f.into())).collect(),
            None => Vec::new(),
        },
        purpose: args.get("PURPOSE").map(CircPurpose::parse),
        hs_state: args.value("HS_STATE"),
        rend_query: args.value("REND_QUERY"),
        time_created: args.value("TIME_CREATED"),
        reason: args.get("REASON").map(CircReason::parse),
        remote_reason: args.get("REMOTE_REASON").map(CircReason::parse),
        socks_username: args.value("SOCKS_USERNAME"),
    })
}

fn hs_desc<'a>(args: &Args<'a>) -> Option<HsDescEvent<'a>> {
    Some(HsDescEvent {
        action: HsDescAction::parse(args.pos(0)?),
        address: args.word(1)?,
        auth: args.word(2)?,
        hsdir: args.word(3)?,
        descriptor_id: args.word(4),
        reason: args.get("REASON").map(HsDescReason::parse),
        replica: args.value("REPLICA"),
        hsdir_index: args.value("HSDIR_INDEX"),
    })
}

fn orconn<'a>(args: &Args<'a>) -> Option<OrConnEvent<'a>> {
    Some(OrConnEvent {
        target: args.word(0)?,
        status: OrConnStatus::parse(args.pos(1)?),
        reason: args.get("REASON").map(OrConnReason::parse),
        ncircs: args.get("NCIRCS").and_then(|n| n.parse().ok()),
        id: args.value("ID"),
    })
}

fn status(kind: StatusKind, args: Args) -> Option<StatusEvent> {
    Some(StatusEvent {
        kind,
        severity: Severity::parse(args.pos(0)?),
        action: args.word(1)?,
        args: args.keywords,
    })
}
