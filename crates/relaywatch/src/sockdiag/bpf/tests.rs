//! The socket filter run by a model of the kernel's classic BPF on hand-made destroy events.

use std::collections::BTreeSet;

use super::vm::{check, run};
use super::*;
use crate::sockdiag::testing::spread;
use crate::sockdiag::wire::build;

fn filter(local: &[u16], remote: &[u16]) -> PortFilter {
    PortFilter {
        local: local.iter().copied().collect(),
        remote: remote.iter().copied().collect(),
    }
}

/// A destroy event as the kernel sends it, with these ports.
fn event(v6: bool, local_port: u16, remote_port: u16) -> Vec<u8> {
    let mut message = build::socket_message(0, v6, 232, [1, 2, 3, 4]);
    message[20..22].copy_from_slice(&local_port.to_be_bytes());
    message[22..24].copy_from_slice(&remote_port.to_be_bytes());
    message
}

fn kept(program: &[Instruction], packet: &[u8]) -> bool {
    match run(program, packet) {
        0 => false,
        KEEP => true,
        other => panic!("would cut the datagram to {other} bytes"),
    }
}

/// Every local port (remote fixed) and every remote port (local fixed), IPv4 and IPv6.
fn check_exact(ports: &PortFilter, program: &[Instruction]) {
    check(program).unwrap_or_else(|rule| panic!("checker: {rule} for {ports:?}"));
    for port in 0..=u16::MAX {
        for (local, remote) in [(port, 1), (1, port)] {
            for v6 in [false, true] {
                assert_eq!(
                    kept(program, &event(v6, local, remote)),
                    ports.matches(local, remote),
                    "local {local} remote {remote} v6 {v6} for {ports:?}"
                );
            }
        }
    }
}

#[test]
fn events_are_kept_exactly_for_the_selected_ports() {
    for (local, remote) in [
        (&[][..], &[][..]),
        (&[30303], &[]),
        (&[], &[9050]),
        (&[30303, 30304, 30305, 40000], &[9050]),
        (&[0, 65535], &[0, 65535]),
        (
            &[1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610],
            &[9050, 9051, 9052],
        ),
    ] {
        let ports = filter(local, remote);
        check_exact(&ports, &compile(&ports, MAX_INSTRUCTIONS));
    }
}

#[test]
fn a_thousand_scattered_ports_fit_and_are_exact() {
    let ports = filter(&spread(1000, 7), &spread(20, 9));
    let program = compile(&ports, MAX_INSTRUCTIONS);
    eprintln!(
        "{} local + {} remote ports: {} instructions",
        ports.local.len(),
        ports.remote.len(),
        program.len()
    );
    check_exact(&ports, &program);
}

#[test]
fn too_many_ports_are_widened_within_the_budget_never_dropped() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    for (ports, budget) in [
        (
            filter(&spread(30_000, 3), &spread(30_000, 5)),
            MAX_INSTRUCTIONS,
        ),
        (filter(&spread(1000, 7), &[9050]), 64),
        (filter(&all, &all), 64),
    ] {
        let program = compile(&ports, budget);
        assert!(program.len() <= budget, "{} > {budget}", program.len());
        check(&program).unwrap();
        for port in 0..=u16::MAX {
            if ports.matches(port, 1) {
                assert!(kept(&program, &event(false, port, 1)), "local {port}");
            }
            if ports.matches(1, port) {
                assert!(kept(&program, &event(true, 1, port)), "remote {port}");
            }
        }
    }
}

#[test]
fn what_the_filter_cannot_judge_is_kept() {
    let program = compile(&filter(&[30303], &[9050]), MAX_INSTRUCTIONS);
    let unrelated = event(false, 1000, 2000);
    assert!(
        !kept(&program, &unrelated),
        "premise: an unrelated event is dropped"
    );

    // Too short to hold the ports, or cut anywhere.
    for cut in 0..unrelated.len() {
        assert!(kept(&program, &unrelated[..cut]), "cut at {cut}");
    }
    // Several messages in one datagram: the kernel sends one per event, but if not, keep all.
    let mut two = unrelated.clone();
    two.extend(event(false, 1001, 2001));
    assert!(kept(&program, &two));
    // A length field that disagrees with the datagram.
    let mut bad_length = unrelated.clone();
    bad_length[0..4].copy_from_slice(&(unrelated.len() as u32 - 4).to_ne_bytes());
    assert!(kept(&program, &bad_length));
    // Other message types: errors, the end of a dump.
    assert!(kept(&program, &build::error(0, libc::ENOBUFS)));
    let mut done = build::done(0, 0);
    done.resize(24, 0);
    done[0..4].copy_from_slice(&24u32.to_ne_bytes());
    assert!(kept(&program, &done));
    // An address family the ports may not mean the same in.
    let mut family = unrelated.clone();
    family[16] = libc::AF_UNIX as u8;
    assert!(kept(&program, &family));
}

#[test]
fn unjudgeable_datagrams_are_kept_even_by_an_empty_filter() {
    let program = compile(&PortFilter::default(), MAX_INSTRUCTIONS);
    assert!(!kept(&program, &event(false, 30303, 9050)));
    assert!(kept(&program, &event(false, 30303, 9050)[..23]));
    assert_eq!(keep_all().len(), 1);
    assert!(kept(&keep_all(), &event(true, 1, 2)));
}

#[test]
fn ports_in_ranges_and_neighbours() {
    let local: BTreeSet<u16> = (30000..30100).chain([30200]).collect();
    let ports = PortFilter {
        local,
        remote: BTreeSet::new(),
    };
    let program = compile(&ports, MAX_INSTRUCTIONS);
    assert!(
        program.len() < 64,
        "one range and one port: {}",
        program.len()
    );
    check_exact(&ports, &program);
}
