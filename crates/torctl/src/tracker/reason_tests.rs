//! One event sequence per row of the reason table (crate README): lines as tor 0.4.9 wrote
//! them where the private network produces the case, and written from control-spec §4.1 and
//! tor's hs_client.c where it cannot (descriptor_invalid, rendezvous_failed, intro_timeout,
//! client_auth).

use std::time::Duration;

use super::tests::{dial_failing, failed, Feed, NEW};
use super::DialError;

#[test]
fn descriptor_not_found_f0() {
    // Measured (§B row 2): HS_DESC FAILED NOT_FOUND per HSDir, then RESOLVEFAILED.
    let desc = "650 HS_DESC FAILED {o} NO_AUTH {fp} descid REASON=NOT_FOUND";
    let reason = dial_failing(
        &["650 HS_DESC REQUESTED {o} NO_AUTH {fp} descid", desc, desc],
        "REASON=RESOLVEFAILED",
    );
    assert_eq!(reason, DialError::DescriptorNotFound);
}

#[test]
fn descriptor_invalid_f1() {
    // Spec §4.1.25 BAD_DESC: "descriptor was retrieved, but found to be unparsable".
    let reason = dial_failing(
        &["650 HS_DESC FAILED {o} NO_AUTH {fp} descid REASON=BAD_DESC"],
        "REASON=RESOLVEFAILED",
    );
    assert_eq!(reason, DialError::DescriptorInvalid);
    // A 404 elsewhere makes tor answer 0xF0, so NOT_FOUND wins.
    let reason = dial_failing(
        &[
            "650 HS_DESC FAILED {o} NO_AUTH {fp} descid REASON=BAD_DESC",
            "650 HS_DESC FAILED {o} NO_AUTH {fp} descid REASON=NOT_FOUND",
        ],
        "REASON=RESOLVEFAILED",
    );
    assert_eq!(reason, DialError::DescriptorNotFound);
    // Any other fetch failure: the descriptor was not obtained.
    let reason = dial_failing(
        &["650 HS_DESC FAILED {o} NO_AUTH UNKNOWN REASON=QUERY_NO_HSDIR"],
        "REASON=RESOLVEFAILED",
    );
    assert_eq!(reason, DialError::DescriptorNotFound);
}

#[test]
fn intro_failed_f2() {
    // Measured (§B row 5b): descriptor received, intro circuits destroyed, RESOLVEFAILED.
    let reason = dial_failing(
        &[
            "650 HS_DESC RECEIVED {o} NO_AUTH {fp} descid",
            "650 CIRC 80 FAILED {fp} BUILD_FLAGS=IS_INTERNAL,NEED_CAPACITY PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_CONNECTING REND_QUERY={o} REASON=DESTROYED REMOTE_REASON=DESTROYED",
            "650 CIRC 81 FAILED {fp} PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_CONNECTING REND_QUERY={o} REASON=TIMEOUT",
        ],
        "REASON=RESOLVEFAILED",
    );
    assert_eq!(reason, DialError::IntroFailed);
    // Descriptor received, tor remembers failed intro points from earlier: no CIRC events.
    let reason = dial_failing(
        &["650 HS_DESC RECEIVED {o} NO_AUTH {fp} descid"],
        "REASON=RESOLVEFAILED",
    );
    assert_eq!(reason, DialError::IntroFailed);
}

#[test]
fn intro_timeout_f7() {
    let reason = dial_failing(
        &[
            "650 CIRC 80 FAILED {fp} PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_CONNECTING REND_QUERY={o} REASON=TIMEOUT",
            "650 CIRC 81 CLOSED {fp} PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_INTRO_SENT REND_QUERY={o} REASON=TIMEOUT",
        ],
        "REASON=RESOLVEFAILED",
    );
    assert_eq!(reason, DialError::IntroTimeout);
}

#[test]
fn benign_circuit_closes_are_no_hints() {
    // An intro circuit that finished its job (HSCI_DONE → FINISHED) or became redundant.
    let reason = dial_failing(
        &[
            "650 CIRC 80 CLOSED {fp} PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_DONE REND_QUERY={o} REASON=FINISHED",
            "650 CIRC 81 CLOSED {fp} PURPOSE=HS_CLIENT_INTRO REND_QUERY={o} REASON=IP_NOW_REDUNDANT",
        ],
        "REASON=RESOLVEFAILED",
    );
    // No failure hint: the no-hint rule (a cached descriptor, introduction failed) applies.
    assert_eq!(reason, DialError::IntroFailed);
}

#[test]
fn rendezvous_failed_f3() {
    // hs_client.c: a rendezvous circuit that times out marks its streams 0xF3.
    let reason = dial_failing(
        &[
            "650 HS_DESC RECEIVED {o} NO_AUTH {fp} descid",
            "650 CIRC 90 CLOSED {fp} PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_ESTABLISHED_WAITING REND_QUERY={o} REASON=TIMEOUT",
        ],
        "REASON=TIMEOUT",
    );
    assert_eq!(reason, DialError::RendezvousFailed);
    // A destroyed (not timed-out) rendezvous circuit is "destroyed" (§B row 5: SOCKS 0x01).
    let reason = dial_failing(
        &["650 CIRC 75 CLOSED {fp} PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY={o} REASON=DESTROYED REMOTE_REASON=DESTROYED"],
        "REASON=DESTROY",
    );
    assert_eq!(reason, DialError::Destroyed);
}

#[test]
fn client_auth_f4_f5() {
    // hs_client.c client_dir_fetch_200: the descriptor is stored (HS_DESC RECEIVED) but
    // cannot be decrypted; the streams close with END_STREAM_REASON_MISC.
    let reason = dial_failing(
        &[
            "650 HS_DESC REQUESTED {o} NO_AUTH {fp} descid",
            "650 HS_DESC RECEIVED {o} NO_AUTH {fp} descid",
        ],
        "REASON=MISC",
    );
    assert_eq!(reason, DialError::ClientAuth);
    // MISC without a received descriptor says nothing.
    assert_eq!(dial_failing(&[], "REASON=MISC"), DialError::Other);
}

#[test]
fn bad_onion_address_f6() {
    // Measured (§B row 3).
    let reason = dial_failing(
        &["650 STATUS_CLIENT WARN SOCKS_BAD_HOSTNAME HOSTNAME=\"{o}.onion\""],
        "REASON=TORPROTOCOL",
    );
    assert_eq!(reason, DialError::BadOnionAddress);
}

#[test]
fn refused_0x05() {
    // Measured (§B row 4): unmapped port.
    assert_eq!(
        dial_failing(&[], "REASON=END REMOTE_REASON=DONE"),
        DialError::Refused
    );
    // The service's backend refused; END wins over earlier onion hints.
    assert_eq!(
        dial_failing(
            &["650 CIRC 80 FAILED {fp} PURPOSE=HS_CLIENT_INTRO REND_QUERY={o} REASON=TIMEOUT"],
            "REASON=END REMOTE_REASON=CONNECTREFUSED"
        ),
        DialError::Refused
    );
    assert_eq!(
        dial_failing(&[], "REASON=CONNECTREFUSED"),
        DialError::Refused
    );
}

#[test]
fn timeout_destroyed_other() {
    // Measured (§B rows 5 and 7).
    assert_eq!(dial_failing(&[], "REASON=TIMEOUT"), DialError::Timeout);
    assert_eq!(dial_failing(&[], "REASON=DESTROY"), DialError::Destroyed);
    // No HS_DESC fetch during the dial: tor used a cached descriptor, so introduction failed.
    assert_eq!(
        dial_failing(&[], "REASON=RESOLVEFAILED"),
        DialError::IntroFailed
    );
    assert_eq!(dial_failing(&[], "REASON=SOMETHING_NEW"), DialError::Other);
    assert_eq!(dial_failing(&[], ""), DialError::Other);
}

#[test]
fn the_most_recent_onion_failure_decides() {
    // Descriptor refetch failed after intro failures: the descriptor failure is newer.
    let reason = dial_failing(
        &[
            "650 CIRC 80 FAILED {fp} PURPOSE=HS_CLIENT_INTRO REND_QUERY={o} REASON=DESTROYED",
            "650 HS_DESC FAILED {o} NO_AUTH {fp} descid REASON=NOT_FOUND",
        ],
        "REASON=RESOLVEFAILED",
    );
    assert_eq!(reason, DialError::DescriptorNotFound);
    // A received descriptor clears descriptor failures.
    let reason = dial_failing(
        &[
            "650 HS_DESC FAILED {o} NO_AUTH {fp} descid REASON=NOT_FOUND",
            "650 HS_DESC RECEIVED {o} NO_AUTH {fp} descid",
        ],
        "REASON=RESOLVEFAILED",
    );
    assert_eq!(reason, DialError::IntroFailed);
}

#[test]
fn hints_expire() {
    let mut feed = Feed::new();
    feed.lines(&[
        NEW,
        "650 HS_DESC FAILED {o} NO_AUTH {fp} descid REASON=NOT_FOUND",
    ]);
    feed.wait(Duration::from_secs(300));
    feed.lines(&[&failed("REASON=RESOLVEFAILED")]);
    // The expired NOT_FOUND no longer decides; without hints the no-hint rule applies.
    assert_eq!(feed.only_error(), DialError::IntroFailed);
    assert_eq!(feed.tracker.tracked().1, 0, "expired hints are swept");
}

#[test]
fn hints_are_per_onion() {
    let mut feed = Feed::new();
    feed.lines(&[
        NEW,
        "650 HS_DESC FAILED someoneelse NO_AUTH {fp} descid REASON=NOT_FOUND",
        &failed("REASON=RESOLVEFAILED"),
    ]);
    // Another onion's NOT_FOUND is no hint for this one.
    assert_ne!(feed.only_error(), DialError::DescriptorNotFound);
}
