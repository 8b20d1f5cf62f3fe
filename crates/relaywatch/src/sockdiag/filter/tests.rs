//! The bytecode compiler against a port of the kernel's audit and interpreter, then against the kernel.

use std::collections::{BTreeSet, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};

use super::kernel::{audit, run};
use super::*;
use crate::sockdiag::testing::spread;
use crate::sockdiag::SockDiag;

fn filter(local: &[u16], remote: &[u16]) -> PortFilter {
    PortFilter {
        local: local.iter().copied().collect(),
        remote: remote.iter().copied().collect(),
    }
}

/// Runs the program for every local port (remote fixed) and every remote port (local fixed).
fn check_exact(filter: &PortFilter, program: &[u8]) {
    audit(program).unwrap_or_else(|rule| panic!("audit: {rule} for {filter:?}"));
    for port in 0..=u16::MAX {
        for (local, remote) in [(port, 1), (1, port)] {
            assert_eq!(
                run(program, local, remote),
                Some(filter.matches(local, remote)),
                "local {local} remote {remote} for {filter:?}"
            );
        }
    }
}

#[test]
fn ranges_merge_neighbours_and_coarsen_across_the_smallest_gaps() {
    let ports: BTreeSet<u16> = [1, 2, 3, 10, 12, 100, 65535].into_iter().collect();
    assert_eq!(
        ranges(&ports, 100),
        [(1, 3), (10, 10), (12, 12), (100, 100), (65535, 65535)]
    );
    assert_eq!(ranges(&ports, 3), [(1, 12), (100, 100), (65535, 65535)]);
    assert_eq!(ranges(&ports, 0), [(1, 65535)]);
    assert_eq!(ranges(&BTreeSet::new(), 5), []);
    let all: BTreeSet<u16> = (0..=u16::MAX).collect();
    assert_eq!(ranges(&all, 1), [(0, 65535)]);
}

#[test]
fn small_filters_select_exactly_their_ports() {
    for (local, remote) in [
        (&[][..], &[][..]),
        (&[30303], &[]),
        (&[], &[9050]),
        (&[30303], &[9050]),
        (&[0, 65535], &[0, 65535]),
        (&[1, 2, 3, 4, 5, 7, 9, 11, 13, 15, 200, 201], &[9050, 9051]),
    ] {
        let filter = filter(local, remote);
        check_exact(&filter, &compile_bytecode(&filter));
    }
}

#[test]
fn an_empty_filter_is_a_valid_program_that_selects_nothing() {
    let program = compile_bytecode(&PortFilter::default());
    assert_eq!(program.len(), 4);
    audit(&program).unwrap();
    assert_eq!(run(&program, 30303, 9050), Some(false));
}

#[test]
fn scattered_ports_up_to_the_size_limit_are_exact() {
    let filter = filter(&spread(250, 7), &spread(20, 9));
    let program = compile_bytecode(&filter);
    eprintln!(
        "{} local + {} remote ports: {} bytes of bytecode",
        filter.local.len(),
        filter.remote.len(),
        program.len()
    );
    assert!(is_exact(&filter), "premise: fits unwidened");
    check_exact(&filter, &program);
}

#[test]
fn filters_too_big_for_one_attribute_are_widened_not_cut() {
    for (local, remote) in [
        (spread(20_000, 3), spread(20_000, 5)),
        ((0..=u16::MAX).step_by(2).collect(), vec![]),
        ((0..=u16::MAX).collect(), (0..=u16::MAX).collect()),
    ] {
        let filter = filter(&local, &remote);
        let program = compile_bytecode(&filter);
        assert!(program.len() <= MAX_BYTECODE, "{} bytes", program.len());
        audit(&program).unwrap();
        for port in 0..=u16::MAX {
            if filter.matches(port, 1) {
                assert_eq!(run(&program, port, 1), Some(true), "local {port} dropped");
            }
            if filter.matches(1, port) {
                assert_eq!(run(&program, 1, port), Some(true), "remote {port} dropped");
            }
        }
    }
}

/// Real sockets: the kernel accepts the program and returns exactly the sockets it selects, with
/// one request for both families or one per family.
fn kernel_selects_exactly(n_connections: usize, extra_ports: usize, one_walk: bool) {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = match TcpListener::bind("[::1]:0") {
        Ok(listener) => Some(listener),
        Err(error) => {
            eprintln!("no IPv6 loopback ({error}): IPv4 only");
            None
        }
    };
    let mut ours: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    let mut streams = Vec::new();
    for index in 0..n_connections {
        let listener = match (&v6, index % 2) {
            (Some(v6), 1) => v6,
            _ => &v4,
        };
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        ours.push((client.local_addr().unwrap(), client.peer_addr().unwrap()));
        ours.push((server.local_addr().unwrap(), server.peer_addr().unwrap()));
        streams.push((client, server));
    }
    // Every third client's local port, ports nobody of ours uses, and the IPv6 listener's port
    // as a remote port (all IPv6 clients).
    let mut filter = PortFilter::default();
    filter
        .local
        .extend(ours.iter().step_by(6).map(|(local, _)| local.port()));
    filter.local.extend(
        spread(extra_ports, 13)
            .into_iter()
            .filter(|port| *port > 1024),
    );
    if let Some(v6) = &v6 {
        filter.remote.insert(v6.local_addr().unwrap().port());
    }
    let program = compile_bytecode(&filter);
    // What the program selects, by the model of the kernel: the filter's sockets, and more
    // where it had to be widened.
    let selects = |local: SocketAddr, remote: SocketAddr| {
        run(&program, local.port(), remote.port()).expect("a valid program")
    };
    let want: HashSet<_> = ours
        .iter()
        .filter(|(l, r)| selects(*l, *r))
        .copied()
        .collect();
    let unwanted: HashSet<_> = ours.iter().filter(|t| !want.contains(t)).copied().collect();
    assert!(
        ours.iter()
            .all(|(l, r)| !filter.matches(l.port(), r.port()) || want.contains(&(*l, *r))),
        "the program leaves out a selected socket"
    );

    let mut diag = SockDiag::open().unwrap();
    if !one_walk {
        diag.dump_per_family_only();
    }
    let dumped = diag.dump_filtered(&filter).expect("filtered dump");
    assert_eq!(
        diag.one_walk(),
        one_walk,
        "the kernel serves the one-walk request"
    );
    for socket in &dumped {
        assert!(
            selects(socket.local, socket.remote),
            "the kernel returned a socket the program does not select: {socket:?}"
        );
    }
    let got: HashSet<_> = dumped
        .iter()
        .map(|socket| (socket.local, socket.remote))
        .collect();
    let canonical = |(local, remote): (SocketAddr, SocketAddr)| {
        let c = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        (c(local), c(remote))
    };
    let missing: Vec<_> = want
        .iter()
        .filter(|t| !got.contains(&canonical(**t)))
        .collect();
    let extra: Vec<_> = unwanted
        .iter()
        .filter(|t| got.contains(&canonical(**t)))
        .collect();
    eprintln!(
        "{} of our {} sockets selected by {} local + {} remote ports ({} bytes, {}); the dump returned {} sockets",
        want.len(),
        ours.len(),
        filter.local.len(),
        filter.remote.len(),
        program.len(),
        if is_exact(&filter) { "exact" } else { "widened" },
        dumped.len()
    );
    assert!(missing.is_empty(), "selected but not dumped: {missing:?}");
    assert!(extra.is_empty(), "dumped but not selected: {extra:?}");
    // A widened program may cover all of ours, depending on where the kernel put the ports.
    assert!(
        !want.is_empty() && (!unwanted.is_empty() || !is_exact(&filter)),
        "premise: both kinds"
    );
    drop(streams);
}

#[test]
fn the_kernel_accepts_the_program_and_dumps_exactly_the_selected_sockets() {
    kernel_selects_exactly(40, 10, true);
}

#[test]
fn the_same_with_one_request_per_family() {
    kernel_selects_exactly(40, 10, false);
}

/// 1,185 ports: widened to fit, so the kernel returns a superset, exactly the one the program
/// describes.
#[test]
fn the_kernel_dumps_exactly_the_selected_sockets_with_a_thousand_ports() {
    kernel_selects_exactly(1200, 800, true);
}

#[test]
fn the_kernel_accepts_the_largest_programs() {
    // Just under the limit without widening, and widened from far above it.
    for (filter, min_len) in [
        (filter(&spread(270, 3), &[]), 3 * 1024),
        (filter(&spread(30_000, 3), &spread(30_000, 5)), 3 * 1024),
    ] {
        let program = compile_bytecode(&filter);
        eprintln!(
            "{} + {} ports: {} bytes",
            filter.local.len(),
            filter.remote.len(),
            program.len()
        );
        assert!(program.len() >= min_len, "premise: a big program");
        SockDiag::open()
            .unwrap()
            .dump_filtered(&filter)
            .expect("the kernel's audit");
    }
}

/// The kernel and the port of its audit agree on broken programs: the model used by the unit
/// and property tests is the kernel's rule, not our guess of it.
#[test]
fn the_kernel_and_the_model_agree_on_mutated_programs() {
    let filter = filter(&[80, 443, 1000, 1001, 1002, 30303], &[9050, 9051]);
    let valid = compile_bytecode(&filter);
    let mut diag = SockDiag::open().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..400 {
        let mut program = valid.clone();
        for _ in 0..1 + next() % 3 {
            let op = (next() as usize % (program.len() / 4)) * 4;
            match next() % 4 {
                // yes: a small step, sometimes misaligned or zero.
                0 => program[op + 1] = (next() % 20) as u8,
                // no: anywhere up to past the end, sometimes misaligned.
                1 => {
                    let no = (next() % (program.len() as u64 + 12)) as u16;
                    program[op + 2..op + 4].copy_from_slice(&no.to_ne_bytes());
                }
                2 => program[op] = [0, BC_JMP, BC_S_GE, BC_S_EQ, BC_D_LE][next() as usize % 5],
                _ => program.truncate(op.max(4)),
            }
        }
        let model = audit(&program);
        let kernel = diag.dump_with(Some(&program));
        match (&model, &kernel) {
            (Ok(()), Ok(_)) => accepted += 1,
            (Err(_), Err(error)) if error.raw_os_error() == Some(libc::EINVAL) => refused += 1,
            _ => panic!("round {round}: model {model:?}, kernel {kernel:?}, program {program:?}"),
        }
    }
    eprintln!("{accepted} mutated programs accepted by both, {refused} refused by both");
    assert!(accepted > 0 && refused > 0, "premise: both verdicts seen");
}

/// Kernel CPU per dump by program length: the audit is quadratic (see MAX_BYTECODE). The
/// programs select nothing of ours, so what remains is the audit and the walk of the hash table.
/// Run: cargo test -p relaywatch --lib dump_cost_by_program_size -- --ignored --nocapture
#[test]
#[ignore = "measurement, prints a table"]
fn dump_cost_by_program_size() {
    fn kernel_cpu() -> std::time::Duration {
        // SAFETY: rusage is plain data; getrusage fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        std::time::Duration::from_secs(usage.ru_stime.tv_sec as u64)
            + std::time::Duration::from_micros(usage.ru_stime.tv_usec as u64)
    }
    let mut diag = SockDiag::open().unwrap();
    for n in [0u16, 10, 100, 300, 1000, 2000, 4300] {
        let filter = filter(&(1..=n).map(|p| p * 7).collect::<Vec<_>>(), &[]);
        let program = compile_ranges(&ranges(&filter.local, usize::MAX), &[]);
        let before = kernel_cpu();
        for _ in 0..20 {
            diag.dump_with(Some(&program)).unwrap();
        }
        println!(
            "{n:>5} ports, {:>6} bytes: {:?} kernel CPU per dump (IPv4 + IPv6)",
            program.len(),
            (kernel_cpu() - before) / 20
        );
    }
}
