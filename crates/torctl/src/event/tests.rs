//! Event parser tests: one or more literal lines per event kind, from control-spec §4.1
//! and from tor 0.4.9 output (sockdiag-and-tor-events.md §B and tests/fixtures).

use super::*;
use crate::framing::LineBuffer;

/// Frames `text` (lines without CRLF) and parses its single event. The message is leaked so
/// the event, which borrows from it, can be returned.
fn event(text: &str) -> Event<'static> {
    let mut buffer = LineBuffer::new();
    buffer.push(text.replace('\n', "\r\n").as_bytes());
    buffer.push(b"\r\n");
    let message = buffer.next_message().expect("a message");
    assert!(buffer.next_message().is_none());
    parse_event(Box::leak(Box::new(message))).expect("an event")
}

fn stream(text: &str) -> StreamEvent<'static> {
    match event(text) {
        Event::Stream(stream) => stream,
        other => panic!("not a STREAM: {other:?}"),
    }
}

fn circ(text: &str) -> CircEvent<'static> {
    match event(text) {
        Event::Circ(circ) => circ,
        other => panic!("not a CIRC: {other:?}"),
    }
}

#[test]
fn stream_new_of_a_user_dial() {
    let s = stream("650 STREAM 42 NEW 0 abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion:30303 SOURCE_ADDR=127.0.0.1:41234 PURPOSE=USER CLIENT_PROTOCOL=SOCKS5");
    assert_eq!(s.id, "42");
    assert_eq!(s.status, StreamStatus::New);
    assert_eq!(s.circuit, "0");
    assert_eq!(s.target.port, Some(30303));
    assert_eq!(
        s.target.onion_address().as_deref(),
        Some("abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx")
    );
    assert_eq!(s.source_addr.as_deref(), Some("127.0.0.1:41234"));
    assert_eq!(s.purpose, Some(StreamPurpose::User));
    assert_eq!(s.client_protocol.as_deref(), Some("SOCKS5"));
    assert_eq!(s.reason, None);
}

#[test]
fn stream_failed_with_reasons() {
    let s = stream("650 STREAM 3 FAILED 75 x.onion:81 REASON=END REMOTE_REASON=DONE");
    assert_eq!(s.status, StreamStatus::Failed);
    assert_eq!(s.circuit, "75");
    assert_eq!(s.reason, Some(StreamReason::End));
    assert_eq!(s.remote_reason, Some(StreamReason::Done));
    // Unknown values are kept, not errors (§1.1).
    let s = stream("650 STREAM 3 XOFF_LATER 0 x.onion:81 REASON=NEWREASON FUTURE=1");
    assert_eq!(s.status, StreamStatus::Other("XOFF_LATER".into()));
    assert_eq!(s.reason.as_ref().map(|r| r.label()), Some("other"));
}

#[test]
fn stream_targets() {
    // tor's own directory stream, an IPv6 target, an internal one (§4.1.2).
    let s = stream(
        "650 STREAM 9 NEW 0 127.0.0.1.$ABCD.exit:5000 PURPOSE=DIR_FETCH CLIENT_PROTOCOL=UNKNOWN",
    );
    assert_eq!(s.purpose, Some(StreamPurpose::DirFetch));
    assert_eq!(s.target.onion_address(), None);
    let s = stream("650 STREAM 10 NEW 0 [2001:db8::1]:443");
    assert_eq!(s.target.host, "[2001:db8::1]");
    assert_eq!(s.target.port, Some(443));
    let s = stream("650 STREAM 11 NEW 0 (Tor_internal):0");
    assert_eq!(s.target.port, Some(0));
    let s = stream("650 STREAM 12 NEW 0 WWW.Sub.ABC.onion:80");
    assert_eq!(s.target.onion_address().as_deref(), Some("abc"));
    let s = stream("650 STREAM 13 NEW 0 noport.onion");
    assert_eq!(s.target.port, None);
    assert_eq!(s.target.onion_address().as_deref(), Some("noport"));
}

#[test]
fn circ_from_the_spec_and_tor() {
    let c = circ("650 CIRC 1000 EXTENDED moria1,moria2");
    assert_eq!(c.id, "1000");
    assert_eq!(c.status, CircStatus::Extended);
    assert_eq!(c.path.as_deref(), Some("moria1,moria2"));
    let c = circ("650 CIRC 12 LAUNCHED BUILD_FLAGS=IS_INTERNAL,NEED_CAPACITY PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_CONNECTING REND_QUERY=abc TIME_CREATED=2026-11-26T10:00:00.123456");
    assert_eq!(c.path, None);
    assert_eq!(c.build_flags, ["IS_INTERNAL", "NEED_CAPACITY"]);
    assert_eq!(c.purpose, Some(CircPurpose::HsClientIntro));
    assert_eq!(c.hs_state.as_deref(), Some("HSCI_CONNECTING"));
    assert_eq!(c.rend_query.as_deref(), Some("abc"));
    assert_eq!(
        c.time_created.as_deref(),
        Some("2026-11-26T10:00:00.123456")
    );
    let c = circ("650 CIRC 75 CLOSED $AAAA~relay00,$BBBB~relay01 BUILD_FLAGS=IS_INTERNAL PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY=abc TIME_CREATED=2026-11-26T10:00:00.1 REASON=DESTROYED REMOTE_REASON=DESTROYED");
    assert_eq!(c.reason, Some(CircReason::Destroyed));
    assert_eq!(c.remote_reason, Some(CircReason::Destroyed));
    assert_eq!(c.purpose, Some(CircPurpose::HsClientRend));
    let c = circ("650 CIRC 5 FAILED PURPOSE=GENERAL REASON=NOPATH SOCKS_USERNAME=\"a b\"");
    assert_eq!(c.reason, Some(CircReason::NoPath));
    assert_eq!(c.socks_username.as_deref(), Some("a b"));
}

#[test]
fn circ_with_extra_lines() {
    // §4.1: "650-CIRC 1000 EXTENDED moria1,moria2 0xBEEF / 650-EXTRAMAGIC=99 / 650 ANONYMITY=high"
    let c =
        circ("650-CIRC 1000 EXTENDED moria1,moria2 0xBEEF\n650-EXTRAMAGIC=99\n650 ANONYMITY=high");
    assert_eq!(c.id, "1000");
    assert_eq!(c.path.as_deref(), Some("moria1,moria2"));
}

#[test]
fn hs_desc_actions() {
    // Measured (§B row 2): one FAILED per HSDir, the address without ".onion".
    let Event::HsDesc(d) = event("650 HS_DESC FAILED abc NO_AUTH $0123456789ABCDEF0123456789ABCDEF01234567~relay02 Rm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo REASON=NOT_FOUND") else {
        panic!()
    };
    assert_eq!(d.action, HsDescAction::Failed);
    assert_eq!(d.address, "abc");
    assert_eq!(d.auth, "NO_AUTH");
    assert!(d.hsdir.starts_with("$0123"));
    assert!(d.descriptor_id.is_some());
    assert_eq!(d.reason, Some(HsDescReason::NotFound));
    // From the spec: the other reasons and actions.
    for (line, reason) in [
        (
            "650 HS_DESC FAILED abc NO_AUTH $FP~n descid REASON=BAD_DESC",
            HsDescReason::BadDesc,
        ),
        (
            "650 HS_DESC FAILED abc NO_AUTH UNKNOWN REASON=QUERY_NO_HSDIR",
            HsDescReason::QueryNoHsdir,
        ),
        (
            "650 HS_DESC FAILED abc NO_AUTH UNKNOWN REASON=QUERY_RATE_LIMITED",
            HsDescReason::QueryRateLimited,
        ),
    ] {
        let Event::HsDesc(d) = event(line) else {
            panic!()
        };
        assert_eq!(d.reason, Some(reason), "{line}");
    }
    let Event::HsDesc(d) = event("650 HS_DESC UPLOAD abc UNKNOWN $FP~n descid HSDIR_INDEX=0011")
    else {
        panic!()
    };
    assert_eq!(d.action, HsDescAction::Upload);
    assert_eq!(d.hsdir_index.as_deref(), Some("0011"));
    let Event::HsDesc(d) = event("650 HS_DESC CREATED abc UNKNOWN UNKNOWN descid REPLICA=0") else {
        panic!()
    };
    assert_eq!(d.replica.as_deref(), Some("0"));
}

#[test]
fn orconn() {
    let Event::OrConn(o) =
        event("650 ORCONN $AAAA~relay00 FAILED REASON=CONNECTREFUSED NCIRCS=2 ID=17")
    else {
        panic!()
    };
    assert_eq!(o.target, "$AAAA~relay00");
    assert_eq!(o.status, OrConnStatus::Failed);
    assert_eq!(o.reason, Some(OrConnReason::ConnectRefused));
    assert_eq!(o.ncircs, Some(2));
    assert_eq!(o.id.as_deref(), Some("17"));
    let Event::OrConn(o) = event("650 ORCONN 127.0.0.1:5000 NEW ID=3") else {
        panic!()
    };
    assert_eq!(o.status, OrConnStatus::New);
}

#[test]
fn network_liveness() {
    assert_eq!(
        event("650 NETWORK_LIVENESS UP"),
        Event::NetworkLiveness(Liveness::Up)
    );
    assert_eq!(
        event("650 NETWORK_LIVENESS DOWN"),
        Event::NetworkLiveness(Liveness::Down)
    );
    assert_eq!(
        event("650 NETWORK_LIVENESS WOBBLY"),
        Event::NetworkLiveness(Liveness::Other("WOBBLY".into()))
    );
}

#[test]
fn status_events() {
    let Event::Status(s) =
        event("650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"")
    else {
        panic!()
    };
    assert_eq!(s.kind, StatusKind::Client);
    assert_eq!(s.severity, Severity::Notice);
    assert_eq!(s.action, "BOOTSTRAP");
    assert_eq!(s.arg("PROGRESS"), Some("100"));
    assert_eq!(s.arg("SUMMARY"), Some("Done"));
    // Measured (§B row 3).
    let Event::Status(s) =
        event("650 STATUS_CLIENT WARN SOCKS_BAD_HOSTNAME HOSTNAME=\"aaaa.onion\"")
    else {
        panic!()
    };
    assert_eq!(s.severity, Severity::Warn);
    assert_eq!(s.arg("HOSTNAME"), Some("aaaa.onion"));
    let Event::Status(s) = event("650 STATUS_CLIENT NOTICE CIRCUIT_ESTABLISHED") else {
        panic!()
    };
    assert!(s.args.is_empty());
    let Event::Status(s) =
        event("650 STATUS_SEVER ERR BAD_SERVER_DESCRIPTOR DIRAUTH=1.2.3.4:80 REASON=\"x\"")
    else {
        panic!()
    };
    assert_eq!(s.kind, StatusKind::Server);
}

#[test]
fn other_and_malformed() {
    assert_eq!(
        event("650 STREAM_BW 124 72 2 2026-11-26T10:00:00.000000"),
        Event::Other {
            keyword: "STREAM_BW"
        }
    );
    assert_eq!(
        event("650 NOTICE Tried for 120 seconds to get a connection to x:80. Giving up."),
        Event::Other { keyword: "NOTICE" }
    );
    // HS_DESC_CONTENT is a data event ending in "650 OK" (§4.1.26).
    assert_eq!(
        event("650+HS_DESC_CONTENT abc descid $FP~n\nhs-descriptor 3\n.\n650 OK"),
        Event::Other {
            keyword: "HS_DESC_CONTENT"
        }
    );
    for (line, keyword) in [
        ("650 STREAM 1 NEW 0", "STREAM"),
        ("650 CIRC 1", "CIRC"),
        ("650 HS_DESC FAILED abc", "HS_DESC"),
        ("650 ORCONN $A", "ORCONN"),
        ("650 NETWORK_LIVENESS", "NETWORK_LIVENESS"),
        ("650 STATUS_CLIENT NOTICE", "STATUS_CLIENT"),
    ] {
        assert_eq!(event(line), Event::Malformed { keyword }, "{line}");
    }
    let long = format!("650 {} x", "K".repeat(100));
    assert_eq!(event(&long).keyword().len(), MAX_KEYWORD);
}

#[test]
fn replies_are_not_events() {
    let mut buffer = LineBuffer::new();
    buffer.push(b"250 OK\r\n");
    assert_eq!(parse_event(&buffer.next_message().unwrap()), None);
}

#[test]
fn onion_addresses_in_any_case_and_never_a_panic_on_non_ascii() {
    for (host, expected) in [
        ("ABC.ONION", Some("abc")),
        ("www.Abc.onion", Some("abc")),
        ("abc", None),
        (".onion", None),
        ("x..onion", None),
        ("é.onion", Some("é")),
        ("abc.onioné", None),
        ("éééé", None),
        ("", None),
    ] {
        assert_eq!(onion_address(host).as_deref(), expected, "{host:?}");
    }
}
