use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::smtp::{Session, Step};
use super::*;

/// What Alertmanager 0.25 posts for the slack receiver of deploy/alertmanager/alertmanager.yaml.
const SLACK_FIRING: &str = r##"{"channel":"#gethrelay-alerts","username":"Alertmanager","attachments":[{"title":"[FIRING:2] GethRelayDown","title_link":"http://x/#/alerts?receiver=slack","text":"*critical* A gethrelay pod is down or missing.\nRelay gethrelay/gethrelay-clearnet-0 (mode clearnet) has been down for 2 minutes.\nRunbook: https://example/GethRelayDown.md\n*critical* A gethrelay pod is down or missing.\nRelay gethrelay/gethrelay-only-onion-1 (mode only-onion) has been down.\nRunbook: https://example/GethRelayDown.md\n","fallback":"x","color":"danger","mrkdwn_in":["fallback","pretext","text"]}]}"##;

#[test]
fn slack_payloads_give_status_alertnames_and_pods() {
    let firing = parse_slack(SLACK_FIRING.as_bytes(), 7).unwrap();
    assert_eq!(firing.sink, SinkKind::Slack);
    assert_eq!(firing.received_unix_ms, 7);
    assert_eq!(firing.status, Status::Firing);
    assert_eq!(firing.alertnames, ["GethRelayDown"]);
    assert_eq!(
        firing.pods,
        ["gethrelay-clearnet-0", "gethrelay-only-onion-1"]
    );
    assert!(firing.is("GethRelayDown", Status::Firing));

    let resolved = parse_slack(br#"{"attachments":[{"title":"[RESOLVED] GethRelayFleetBelowExpected","text":"StatefulSet gethrelay/gethrelay-clearnet has had 1 of its pods missing"}]}"#, 0).unwrap();
    assert_eq!(resolved.status, Status::Resolved);
    assert_eq!(resolved.alertnames, ["GethRelayFleetBelowExpected"]);
    assert!(resolved.pods.is_empty());

    let changed = parse_slack(br#"{"text":"something else entirely"}"#, 0).unwrap();
    assert_eq!(changed.status, Status::Unknown);
    assert!(changed.alertnames.is_empty());
}

/// Every rule description names its pod as `<namespace>/<pod>`, after varying words; the
/// exporter-down drill once missed its notification because only `Relay <ns>/<pod>` was read.
#[test]
fn pods_are_found_whatever_the_words_before_them() {
    let text = "*warning* A relaywatch sidecar does not answer its scrape.\nThe relaywatch sidecar of gethrelay/gethrelay-prefer-tor-0 (mode prefer-tor) has failed.\nRunbook: https://github.com/igor53627/relaywatch/blob/main/docs/runbooks/X.md";
    assert_eq!(find_pods(text), ["gethrelay-prefer-tor-0"]);
    assert_eq!(
        find_pods("Relay gethrelay/gethrelay-only-onion-0: leak."),
        ["gethrelay-only-onion-0"]
    );
    assert!(
        find_pods("StatefulSet gethrelay/gethrelay-clearnet has had 1 of its pods missing")
            .is_empty()
    );
    assert!(find_pods("a/B c/ /d https://x/y").is_empty());
}

#[test]
fn hostile_slack_payloads_are_errors_not_panics() {
    for body in [
        &b""[..],
        b"not json",
        b"[]",
        b"null",
        b"{}",
        br#"{"attachments":"x"}"#,
        br#"{"attachments":[1,2,null]}"#,
        b"\xff\xfe{",
        br#"{"attachments":[{"title":7}]}"#,
    ] {
        assert!(
            parse_slack(body, 0).is_err(),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // Odd but readable: kept, with whatever can be parsed.
    let odd = parse_slack(
        br#"{"attachments":[{"title":"[FIRING:1] ","text":"Relay /x Relay a/ Relay ns/pod-1"}]}"#,
        0,
    )
    .unwrap();
    assert!(odd.alertnames.is_empty());
    assert_eq!(odd.pods, ["pod-1"]);
}

#[test]
fn label_values_need_whole_words_and_plain_equals() {
    let text = "alertname = GethRelayDown\nsubpod = no\npod=gethrelay-0\npod =~ \"x\"\npod == 3\nnamespace = gethrelay";
    assert_eq!(label_values(text, "pod"), ["gethrelay-0"]);
    assert_eq!(label_values(text, "alertname"), ["GethRelayDown"]);
    assert!(label_values("", "pod").is_empty());
    assert!(label_values("pod", "pod").is_empty());
    assert!(label_values("pod =", "pod").is_empty());
}

/// The shape Alertmanager 0.25's email notifier sends: multipart/alternative with a
/// quoted-printable HTML part (its default template), a Q-encoded subject.
const EMAIL: &str = "Subject: =?UTF-8?q?[FIRING:1]_GethRelayClearnetLeak_gethrelay_(only-onion_gethrelay-only-onion-0?=\r\n =?UTF-8?q?_critical)?=\r\nFrom: alertmanager@example.com\r\nTo: gethrelay-oncall@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative;  boundary=b0a1\r\n\r\n--b0a1\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<html><head><style>body { color: red; }</style></head><body><table><tr><td>alertname =3D GethRelayClearnetLeak<br />mode =3D only-onion<br />namespace =3D gethrelay<br />pod =3D gethrelay-only-onion-0<br />severity =3D critical<br /></td></tr><tr><td>description =3D Relay gethrelay/gethrelay-only-onion-0 runs in mode only=\r\n-onion &amp; leaked.</td></tr></table></body></html>\r\n--b0a1--\r\n";

#[test]
fn alertmanager_mail_gives_subject_status_and_labels() {
    let notification = mail_notification(EMAIL.as_bytes(), 9);
    assert_eq!(notification.sink, SinkKind::Email);
    assert_eq!(
        notification.title,
        "[FIRING:1] GethRelayClearnetLeak gethrelay (only-onion gethrelay-only-onion-0 critical)"
    );
    assert_eq!(notification.status, Status::Firing);
    assert_eq!(notification.alertnames, ["GethRelayClearnetLeak"]);
    assert_eq!(notification.pods, ["gethrelay-only-onion-0"]);
    assert!(
        notification.text.contains("mode only-onion & leaked."),
        "{}",
        notification.text
    );
    assert!(
        !notification.text.contains("color: red"),
        "{}",
        notification.text
    );
}

#[test]
fn mail_parts_and_encodings() {
    let plain = parse_mail(b"Subject: =?utf-8?B?W1JFU09MVkVEXSBYeXo=?=\n\nhello =3D world\n");
    assert_eq!(plain.subject, "[RESOLVED] Xyz");
    // No Content-Transfer-Encoding: 7bit, kept as is.
    assert_eq!(plain.text, "hello =3D world\n");
    let both = parse_mail(
        b"Content-Type: multipart/alternative; boundary=\"q\"\n\n--q\nContent-Type: text/html\n\n<b>html</b>\n--q\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\ndGV4dA==\n--q--\n",
    );
    assert_eq!(both.text, "text");
    assert_eq!(mail::decode_quoted_printable("a=3Db=\nc=zz="), b"a=bc=zz=");
    assert_eq!(
        mail::decode_words("=?x?q?a?= =?x?q?b?= c =?bad"),
        "ab c =?bad"
    );
    assert_eq!(
        mail::html_to_text("a<br>b &lt;c&gt;<script>x</script><p"),
        "a\nb <c>"
    );
}

#[test]
fn hostile_mail_never_panics() {
    let nested = "Content-Type: multipart/mixed; boundary=a\n\n--a\n".repeat(50);
    for raw in [
        &b""[..],
        b"\n\n\n",
        b"Subject:",
        b"Subject: =?",
        b"Subject: =?utf-8?",
        b"Subject: =?utf-8?q?",
        b"Subject: =?utf-8?b?!!!?=",
        b"Subject: =?utf-8?q?=?=",
        b"Content-Type: multipart/alternative\n\nno boundary",
        b"Content-Type: multipart/alternative; boundary=\n\n--\n--",
        b"Content-Transfer-Encoding: base64\n\n@@@",
        b"Content-Transfer-Encoding: quoted-printable\n\n=\xff=\n=",
        b"\xff\xfe\x00: \xff\n\n\xff",
        nested.as_bytes(),
    ] {
        let _ = mail_notification(raw, 0);
    }
}

fn feed(session: &mut Session, line: &str) -> String {
    session.line(line.as_bytes()).reply.unwrap_or_default()
}

#[test]
fn smtp_conversation_as_alertmanager_has_it() {
    let mut session = Session::new();
    assert!(Session::greeting().starts_with("220 "));
    let ehlo = feed(&mut session, "EHLO localhost");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.ends_with("250 8BITMIME\r\n"), "{ehlo}");
    assert!(
        session
            .line(b"AUTH PLAIN AGFsZXJ0bWFuYWdlcgBwdw==")
            .authenticated
    );
    assert!(feed(&mut session, "DATA").starts_with("503"));
    assert!(feed(&mut session, "MAIL FROM:<alertmanager@example.com>").starts_with("250"));
    assert!(feed(&mut session, "RCPT TO:<oncall@example.com>").starts_with("250"));
    assert!(feed(&mut session, "DATA").starts_with("354"));
    for line in ["Subject: x", "", "..leading dot", "body"] {
        assert_eq!(session.line(line.as_bytes()), Step::default());
    }
    let end = session.line(b".");
    assert!(end.reply.unwrap().starts_with("250"));
    assert_eq!(
        end.message.unwrap(),
        b"Subject: x\r\n\r\n.leading dot\r\nbody\r\n"
    );
    let quit = session.line(b"QUIT");
    assert!(quit.close);
}

#[test]
fn smtp_auth_login_and_errors() {
    let mut session = Session::new();
    assert_eq!(feed(&mut session, "AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(feed(&mut session, "dXNlcg=="), "334 UGFzc3dvcmQ6\r\n");
    assert!(feed(&mut session, "cHc=").starts_with("235"));
    assert_eq!(feed(&mut session, "AUTH PLAIN"), "334 \r\n");
    assert!(feed(&mut session, "AGEAYg==").starts_with("235"));
    assert!(feed(&mut session, "AUTH CRAM-MD5").starts_with("504"));
    assert!(feed(&mut session, "RCPT TO:<x>").starts_with("503"));
    assert!(feed(&mut session, "MAIL to the moon").starts_with("501"));
    assert!(feed(&mut session, "STARTTLS").starts_with("454"));
    assert!(feed(&mut session, "\u{0}\u{7f}garbage").starts_with("502"));
    assert!(feed(&mut session, "").starts_with("502"));
    // A client that only sends junk is cut off.
    let mut last = Step::default();
    for _ in 0..30 {
        last = session.line(b"junk");
        if last.close {
            break;
        }
    }
    assert!(last.close && last.reply.unwrap().starts_with("421"));
}

#[test]
fn smtp_message_too_big_is_refused_after_its_end() {
    let mut session = Session::new();
    for line in ["HELO x", "MAIL FROM:<a>", "RCPT TO:<b>", "DATA"] {
        feed(&mut session, line);
    }
    let chunk = vec![b'x'; 1000];
    for _ in 0..(smtp::MAX_MESSAGE / 1000 + 10) {
        assert_eq!(session.line(&chunk), Step::default());
    }
    let end = session.line(b".");
    assert!(end.message.is_none());
    assert!(end.reply.unwrap().starts_with("552"));
    // The session goes on.
    assert!(feed(&mut session, "NOOP").starts_with("250"));
}

#[test]
fn http_heads_parse_and_hostile_ones_are_errors() {
    let head =
        parse_head(b"POST /slack HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close")
            .unwrap();
    assert_eq!(
        head,
        RequestHead {
            method: "POST".into(),
            path: "/slack".into(),
            content_length: 12,
            close: true
        }
    );
    for bad in [
        &b""[..],
        b"GET",
        b"GET / HTTP/1.1 extra",
        b"get / HTTP/1.1",
        b"GET nopath HTTP/1.1",
        b"GET / HTTP/2",
        b"GET / HTTP/1.1\r\nno colon",
        b"POST / HTTP/1.1\r\nContent-Length: -1",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2",
        b"POST / HTTP/1.1\r\nContent-Length: 2000000",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked",
        b"\xff / HTTP/1.1",
    ] {
        assert!(
            parse_head(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(parse_head(&vec![b'a'; http::MAX_HEAD + 1]).is_err());
}

#[test]
fn read_notifications_skips_a_half_written_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slack.jsonl");
    assert!(read_notifications(&path).unwrap().is_empty());
    let line = serde_json::to_string(&parse_slack(SLACK_FIRING.as_bytes(), 1).unwrap()).unwrap();
    std::fs::write(&path, format!("{line}\n{line}\n{}", &line[..20])).unwrap();
    assert_eq!(read_notifications(&path).unwrap().len(), 2);
    std::fs::write(&path, format!("{line}\n{{broken\n{line}\n")).unwrap();
    let error = format!("{:#}", read_notifications(&path).unwrap_err());
    assert!(error.contains("line 2"), "{error}");
}

fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn webhook_sink_survives_bad_clients_and_records_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(dir.path()).unwrap();
    let addr = sink.addr();
    assert_eq!(sink.url(), format!("http://{addr}/slack"));
    // Garbage, a head that never ends, a body shorter than announced, then hang-ups.
    for junk in [
        &b"\x00\x01\x02\r\n\r\n"[..],
        &[b'A'; 20_000],
        b"POST /slack HTTP/1.1\r\nContent-Length: 50\r\n\r\n{",
    ] {
        let mut stream = TcpStream::connect(addr).unwrap();
        let _ = stream.write_all(junk);
    }
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"POST /slack HTTP/1.1\r\nContent-Length: 3\r\n\r\nbad")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    // The same keep-alive connection takes a good payload next.
    let request = format!(
        "POST /slack HTTP/1.1\r\nContent-Length: {}\r\n\r\n{SLACK_FIRING}",
        SLACK_FIRING.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    wait_for("the payload", || sink.count() == 1);
    assert!(sink.is_healthy());
    let recorded = read_notifications(sink.journal_path()).unwrap();
    assert_eq!(recorded, sink.notifications());
    assert!(recorded[0].is("GethRelayDown", Status::Firing));
}

#[test]
fn smtp_sink_survives_bad_clients_and_records_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dir.path()).unwrap();
    let mut long = TcpStream::connect(sink.addr()).unwrap();
    let _ = long.write_all(&vec![b'x'; smtp::MAX_LINE + 10]);
    let mut answer = Vec::new();
    let _ = long.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).contains("500 5.5.6"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let mut stream = TcpStream::connect(sink.addr()).unwrap();
    let conversation = format!(
        "EHLO x\r\n\x00\x7f\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n{}\r\n.\r\nQUIT\r\n",
        EMAIL.trim_end()
    );
    stream.write_all(conversation.as_bytes()).unwrap();
    let mut transcript = String::new();
    stream.read_to_string(&mut transcript).unwrap();
    assert!(transcript.contains("250 2.0.0 OK: queued"), "{transcript}");
    assert!(transcript.ends_with("221 2.0.0 Bye\r\n"), "{transcript}");
    assert_eq!(sink.count(), 1);
    assert!(sink.is_healthy());
    let recorded = read_notifications(sink.journal_path()).unwrap();
    assert!(recorded[0].is("GethRelayClearnetLeak", Status::Firing));
}
