//! Properties of the two filter compilers: the kernel would accept every program, and no
//! selected socket is ever left out (exactly the selected ones while the program fits).

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::cases;
use crate::sockdiag::bpf::{self, vm};
use crate::sockdiag::filter::{compile_bytecode, is_exact, kernel, PortFilter, MAX_BYTECODE};

/// Port sets: empty, a few, or many; scattered or in runs (ranges). Big sets come from a seed:
/// proptest's own collections keep a shrinkable tree per element, far too slow for thousands.
fn ports(max: usize) -> impl Strategy<Value = BTreeSet<u16>> {
    let few = prop::collection::btree_set(any::<u16>(), 0..max.min(64));
    let scattered = (any::<u64>(), 0..max).prop_map(|(seed, n)| {
        crate::sockdiag::testing::spread(n, seed)
            .into_iter()
            .collect()
    });
    let runs = prop::collection::vec((any::<u16>(), 1u16..200), 0..max.min(50)).prop_map(|runs| {
        runs.into_iter()
            .flat_map(|(start, len)| (start..=start.saturating_add(len)).collect::<Vec<_>>())
            .collect()
    });
    prop_oneof![few, scattered, runs]
}

fn filter(max: usize) -> impl Strategy<Value = PortFilter> {
    (ports(max), ports(max)).prop_map(|(local, remote)| PortFilter { local, remote })
}

/// Ports worth probing: every selected one, its neighbours, and a few others.
fn probes(filter: &PortFilter, others: &[u16]) -> Vec<u16> {
    let mut probes: Vec<u16> = others.to_vec();
    for &port in filter.local.iter().chain(&filter.remote) {
        probes.extend([port, port.wrapping_sub(1), port.wrapping_add(1)]);
    }
    probes
}

/// A destroy event (nlmsghdr, inet_diag_msg) with these ports, for the BPF program.
fn event(family: u8, local: u16, remote: u16) -> Vec<u8> {
    let mut message = vec![0u8; 16 + 72];
    let len = message.len() as u32;
    message[0..4].copy_from_slice(&len.to_ne_bytes());
    message[4..6].copy_from_slice(&20u16.to_ne_bytes());
    message[16] = family;
    message[20..22].copy_from_slice(&local.to_be_bytes());
    message[22..24].copy_from_slice(&remote.to_be_bytes());
    message
}

/// Whether the BPF program may judge this datagram at all (see bpf.rs); else it must keep it.
fn judgeable(datagram: &[u8]) -> bool {
    datagram.len() >= 24
        && u32::from_ne_bytes(datagram[0..4].try_into().unwrap()) as usize == datagram.len()
        && u16::from_ne_bytes([datagram[4], datagram[5]]) == 20
        && [libc::AF_INET as u8, libc::AF_INET6 as u8].contains(&datagram[16])
}

/// Every selected port of a big set is too slow to run in a model; a spread of them.
fn sample(ports: &BTreeSet<u16>) -> impl Iterator<Item = &u16> {
    ports.iter().step_by((ports.len() / 256).max(1))
}

/// Each case compiles and runs programs of thousands of ports in a model: an eighth of the cases.
fn heavy_cases() -> u32 {
    (cases() / 8).max(16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(heavy_cases()))]

    #[test]
    fn bytecode_passes_the_audit_and_selects_exactly_or_more(filter in filter(400), others in prop::collection::vec(any::<u16>(), 16)) {
        let program = compile_bytecode(&filter);
        prop_assert!(kernel::audit(&program).is_ok(), "{:?}", kernel::audit(&program));
        // Exact while it fits; widened (more, never fewer) beyond.
        let exact = is_exact(&filter);
        for port in probes(&filter, &others) {
            for (local, remote) in [(port, others[0]), (others[1], port)] {
                let selected = kernel::run(&program, local, remote);
                if exact || filter.matches(local, remote) {
                    prop_assert_eq!(selected, Some(filter.matches(local, remote)));
                } else {
                    prop_assert!(selected.is_some());
                }
            }
        }
    }

    #[test]
    fn oversized_bytecode_is_widened_never_cut(filter in filter(20_000)) {
        let program = compile_bytecode(&filter);
        prop_assert!(program.len() <= MAX_BYTECODE);
        prop_assert!(kernel::audit(&program).is_ok());
        for &port in sample(&filter.local) {
            prop_assert_eq!(kernel::run(&program, port, 0), Some(true));
        }
        for &port in sample(&filter.remote) {
            prop_assert_eq!(kernel::run(&program, 0, port), Some(true));
        }
    }

    #[test]
    fn bpf_passes_the_checker_and_keeps_exactly(filter in filter(400), others in prop::collection::vec(any::<u16>(), 16), v6 in any::<bool>()) {
        let program = bpf::compile(&filter, bpf::MAX_INSTRUCTIONS);
        prop_assert!(vm::check(&program).is_ok());
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
        for port in probes(&filter, &others) {
            for (local, remote) in [(port, others[0]), (others[1], port)] {
                let want = if filter.matches(local, remote) { u32::MAX } else { 0 };
                prop_assert_eq!(vm::run(&program, &event(family, local, remote)), want);
            }
        }
    }

    #[test]
    fn bpf_within_any_budget_never_drops_a_selected_event(filter in filter(5000), budget in 0usize..5000) {
        let program = bpf::compile(&filter, budget);
        prop_assert!(program.len() <= budget.clamp(64, bpf::MAX_INSTRUCTIONS));
        prop_assert!(vm::check(&program).is_ok());
        for &port in sample(&filter.local) {
            prop_assert_eq!(vm::run(&program, &event(libc::AF_INET as u8, port, 0)), u32::MAX);
        }
        for &port in sample(&filter.remote) {
            prop_assert_eq!(vm::run(&program, &event(libc::AF_INET6 as u8, 0, port)), u32::MAX);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Any datagram: whole or nothing, and kept unless it is a destroy event it can judge.
    #[test]
    fn bpf_keeps_what_it_cannot_judge(filter in filter(50), datagram in prop::collection::vec(any::<u8>(), 0..120), fix_header in any::<bool>()) {
        let mut datagram = datagram;
        if fix_header && datagram.len() >= 24 {
            // Often a plausible header, so that the port tests are reached too.
            let len = datagram.len() as u32;
            datagram[0..4].copy_from_slice(&len.to_ne_bytes());
            datagram[4..6].copy_from_slice(&20u16.to_ne_bytes());
            datagram[16] = if datagram[17] & 1 == 0 { libc::AF_INET } else { libc::AF_INET6 } as u8;
        }
        let program = bpf::compile(&filter, bpf::MAX_INSTRUCTIONS);
        let verdict = vm::run(&program, &datagram);
        let want = if !judgeable(&datagram) {
            u32::MAX
        } else {
            let local = u16::from_be_bytes([datagram[20], datagram[21]]);
            let remote = u16::from_be_bytes([datagram[22], datagram[23]]);
            if filter.matches(local, remote) { u32::MAX } else { 0 }
        };
        prop_assert_eq!(verdict, want);
    }
}
