//! Unit tests of the framing, with reply shapes from control-spec §2.3, §3.9 and §4.1.

use super::*;

fn frame(buffer: &mut LineBuffer, bytes: &[u8]) -> Vec<Message> {
    buffer.push(bytes);
    std::iter::from_fn(|| buffer.next_message()).collect()
}

fn all(bytes: &[u8]) -> Vec<Message> {
    frame(&mut LineBuffer::new(), bytes)
}

fn line(text: &str) -> ReplyLine {
    ReplyLine {
        text: text.into(),
        data: None,
    }
}

#[test]
fn single_line_reply_and_event() {
    let messages = all(b"250 OK\r\n650 NETWORK_LIVENESS UP\r\n");
    assert_eq!(
        messages,
        [
            Message {
                status: 250,
                lines: vec![line("OK")]
            },
            Message {
                status: 650,
                lines: vec![line("NETWORK_LIVENESS UP")]
            },
        ]
    );
    assert!(messages[0].is_ok() && !messages[0].is_event());
    assert!(messages[1].is_event());
}

#[test]
fn multi_line_reply() {
    let messages = all(b"250-version=0.4.9.11\r\n250-network-liveness=up\r\n250 OK\r\n");
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].lines,
        [
            line("version=0.4.9.11"),
            line("network-liveness=up"),
            line("OK")
        ]
    );
}

#[test]
fn data_block_with_dot_unstuffing() {
    // §2.4 CmdData: a leading "." is doubled; a lone "." ends the block.
    let messages = all(b"250+config-text=\r\nSocksPort 9050\r\n..hidden\r\n\r\n.\r\n250 OK\r\n");
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].lines[0],
        ReplyLine {
            text: "config-text=".into(),
            data: Some(vec!["SocksPort 9050".into(), ".hidden".into(), "".into()]),
        }
    );
    assert_eq!(messages[0].lines[1], line("OK"));
}

#[test]
fn event_with_extra_lines_and_data() {
    // §4.1: clients must tolerate more lines than expected.
    let messages = all(
        b"650-CIRC 1000 EXTENDED moria1,moria2 0xBEEF\r\n650-EXTRAMAGIC=99\r\n650 ANONYMITY=high\r\n\
          650+HS_DESC_CONTENT abc descid $FP~n\r\nhs-descriptor 3\r\n.\r\n650 OK\r\n",
    );
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].lines.len(), 3);
    assert_eq!(
        messages[0].first_text(),
        "CIRC 1000 EXTENDED moria1,moria2 0xBEEF"
    );
    assert_eq!(
        messages[1].lines[0].data.as_deref(),
        Some(&["hs-descriptor 3".to_string()][..])
    );
}

#[test]
fn events_between_command_and_reply() {
    let messages =
        all(b"650 CIRC 1000 EXTENDED moria1,moria2\r\n250-SOCKSPORT=9050\r\n250 ORPORT=0\r\n");
    assert_eq!(
        messages.iter().map(|m| m.status).collect::<Vec<_>>(),
        [650, 250]
    );
}

#[test]
fn any_chunking_gives_the_same_messages() {
    let bytes: &[u8] =
        b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/x\"\r\n\
        250 OK\r\n650 STREAM 1 NEW 0 a.onion:1 PURPOSE=USER\r\n650+X\r\n..\r\n.\r\n650 OK\r\n";
    let whole = all(bytes);
    for size in 1..bytes.len() {
        let mut buffer = LineBuffer::new();
        let mut messages = Vec::new();
        for chunk in bytes.chunks(size) {
            messages.extend(frame(&mut buffer, chunk));
        }
        assert_eq!(messages, whole, "chunk size {size}");
    }
}

#[test]
fn bare_lf_and_bare_code_are_accepted() {
    assert_eq!(all(b"250 OK\n250\n").len(), 2);
}

#[test]
fn oversized_line_is_skipped_and_counted() {
    let mut buffer = LineBuffer::with_limits(32, 1024);
    let long = format!("650 STREAM {}\r\n", "x".repeat(100));
    let mut bytes = long.into_bytes();
    bytes.extend_from_slice(b"650 NETWORK_LIVENESS UP\r\n");
    let messages = frame(&mut buffer, &bytes);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].first_text(), "NETWORK_LIVENESS UP");
    let stats = buffer.stats();
    assert_eq!(stats.oversized_lines, 1);
    assert_eq!(stats.dropped_messages, 1);
    assert_eq!(stats.messages, 1);
}

#[test]
fn oversized_mid_line_drops_its_message_only() {
    let mut buffer = LineBuffer::with_limits(32, 1024);
    let bytes = format!(
        "250-a=1\r\n250-b={}\r\n250 OK\r\n250 OK\r\n",
        "y".repeat(64)
    );
    let messages = frame(&mut buffer, bytes.as_bytes());
    assert_eq!(
        messages,
        [Message {
            status: 250,
            lines: vec![line("OK")]
        }]
    );
    assert_eq!(buffer.stats().dropped_messages, 1);
}

#[test]
fn oversized_data_opener_still_steers_the_data_block() {
    // The kept prefix "250+" tells the framing a data block follows, so its lines are not
    // misread as replies.
    let mut buffer = LineBuffer::with_limits(16, 1024);
    let bytes = format!(
        "250+{}=\r\n650 looks like an event\r\n.\r\n250 OK\r\n250 OK\r\n",
        "k".repeat(40)
    );
    let messages = frame(&mut buffer, bytes.as_bytes());
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(buffer.stats().malformed_lines, 0);
    assert_eq!(buffer.stats().dropped_messages, 1);
}

#[test]
fn message_size_limit() {
    let mut buffer = LineBuffer::with_limits(64, 100);
    let mut bytes = Vec::new();
    for _ in 0..10 {
        bytes.extend_from_slice(b"250-0123456789abcdef\r\n");
    }
    bytes.extend_from_slice(b"250 OK\r\n650 NETWORK_LIVENESS DOWN\r\n");
    let messages = frame(&mut buffer, &bytes);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].is_event());
    assert_eq!(buffer.stats().dropped_messages, 1);
}

#[test]
fn malformed_lines_are_counted_not_fatal() {
    let mut buffer = LineBuffer::new();
    let messages = frame(
        &mut buffer,
        b"hello\r\n25\r\n2x0 OK\r\n250_OK\r\n250-a\r\n650 EVENT\r\n\xff\xfe\r\n250 OK\r\n",
    );
    // "250-a" was interrupted by a 650 line: dropped. The 650 and the last 250 survive.
    assert_eq!(
        messages.iter().map(|m| m.status).collect::<Vec<_>>(),
        [650, 250]
    );
    let stats = buffer.stats();
    assert_eq!(stats.malformed_lines, 6);
    assert_eq!(stats.dropped_messages, 1);
}

#[test]
fn reset_forgets_partial_state() {
    let mut buffer = LineBuffer::new();
    assert!(frame(&mut buffer, b"250-a=1\r\n250-b").is_empty());
    buffer.reset();
    let messages = frame(&mut buffer, b"650 NETWORK_LIVENESS UP\r\n");
    assert_eq!(messages.len(), 1);
    assert_eq!(buffer.stats().dropped_messages, 1);
}

#[test]
fn non_utf8_is_replaced_not_rejected() {
    let messages = all(b"650 STATUS_CLIENT NOTICE X A=\"\xff\"\r\n");
    assert_eq!(messages.len(), 1);
    assert!(messages[0].first_text().contains('\u{fffd}'));
}

/// Found by tests/fuzz.rs: an oversized line whose 4th byte is CR ("650\r…") kept "650\r" as
/// its prefix when pushed whole, and the CR was then stripped as if it ended the line, which
/// made "650" a (lenient) end line and counted a dropped message; pushed byte by byte, the
/// prefix kept more bytes and was no reply line. Framing must not depend on chunking.
#[test]
fn oversized_line_with_cr_in_its_prefix_frames_the_same_in_any_chunking() {
    let mut bytes = b"650\r650 STREAM ".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 300));
    bytes.extend_from_slice(b"\n650 NETWORK_LIVENESS UP\r\n");
    let mut whole = LineBuffer::with_limits(256, 2048);
    let whole_messages = frame(&mut whole, &bytes);
    let mut chunked = LineBuffer::with_limits(256, 2048);
    let chunked_messages: Vec<Message> = bytes
        .iter()
        .flat_map(|byte| frame(&mut chunked, std::slice::from_ref(byte)))
        .collect();
    assert_eq!(whole_messages, chunked_messages);
    assert_eq!(whole_messages.len(), 1);
    assert_eq!(whole.stats(), chunked.stats());
    assert_eq!(whole.stats().oversized_lines, 1);
    assert_eq!(whole.stats().dropped_messages, 0, "no message was begun");
}
