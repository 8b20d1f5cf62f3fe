//! Which sockets to look at, by port, and the inet_diag bytecode that selects them in the kernel; pure.
//!
//! The dump and the destroy events would otherwise carry every TCP socket of the network
//! namespace. [`PortFilter`] says which ones we want; [`compile_bytecode`] turns it into an
//! `INET_DIAG_REQ_BYTECODE` program for dumps, `super::bpf` into a socket filter for events.
//! Both compilers may widen a filter that does not fit their size limit (a superset: more
//! sockets, never fewer), because a socket left out would lose bytes and one too many costs
//! only a little CPU.

use std::collections::BTreeSet;

/// Sockets whose local port is in `local` or whose remote port is in `remote`. Ports are the
/// kernel's: host order, as `SocketAddr::port` gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortFilter {
    pub local: BTreeSet<u16>,
    pub remote: BTreeSet<u16>,
}

impl PortFilter {
    /// Whether a socket with these ports is one we asked for.
    pub fn matches(&self, local_port: u16, remote_port: u16) -> bool {
        self.local.contains(&local_port) || self.remote.contains(&remote_port)
    }
}

/// An inclusive range of ports.
pub(super) type PortRange = (u16, u16);

/// Sorted, disjoint ranges covering `ports`; where there would be more than `max` (at least 1),
/// the ranges across the smallest gaps are merged, so the result covers a superset.
pub(super) fn ranges(ports: &BTreeSet<u16>, max: usize) -> Vec<PortRange> {
    let mut out: Vec<PortRange> = Vec::new();
    for &port in ports {
        match out.last_mut() {
            Some(last) if u32::from(last.1) + 1 == u32::from(port) => last.1 = port,
            _ => out.push((port, port)),
        }
    }
    let max = max.max(1);
    if out.len() <= max {
        return out;
    }
    // Merge across the (len - max) smallest gaps; ties go to the lower ports, deterministically.
    let mut gaps: Vec<(u16, usize)> = out
        .windows(2)
        .enumerate()
        .map(|(index, pair)| (pair[1].0 - pair[0].1, index))
        .collect();
    gaps.sort_unstable();
    let mut merge_after = vec![false; out.len()];
    for &(_, index) in &gaps[..out.len() - max] {
        merge_after[index] = true;
    }
    let mut merged: Vec<PortRange> = Vec::with_capacity(max);
    for (index, range) in out.iter().enumerate() {
        match merged.last_mut() {
            Some(last) if index > 0 && merge_after[index - 1] => last.1 = range.1,
            _ => merged.push(*range),
        }
    }
    merged
}

// Operation codes from linux/inet_diag.h (`enum { INET_DIAG_BC_NOP, ... }`).
const BC_JMP: u8 = 1;
const BC_S_GE: u8 = 2;
const BC_S_LE: u8 = 3;
const BC_D_GE: u8 = 4;
const BC_D_LE: u8 = 5;
/// Port equality exists since Linux 4.16; older kernels reject the program (EINVAL).
const BC_S_EQ: u8 = 11;
const BC_D_EQ: u8 = 12;

/// Longer programs are widened. The kernel audits a program on every dump in time quadratic
/// in its length (`valid_cc` walks from the start for each inner jump); measured per dump, on
/// top of 2.4 ms for the dump itself: +0.4 ms at 4.4 KB, +4 ms at 14 KB, +70 ms at 61 KB
/// (`tests::dump_cost_by_program_size`). The attribute itself could hold 64 KB.
pub const MAX_BYTECODE: usize = 4096;
/// Ranges tested one after another at the bottom of the search tree.
const LEAF_RANGES: usize = 4;

/// Where a jump goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    Label(usize),
    /// The end of the program: the socket is selected.
    Accept,
    /// Four bytes past the end: the kernel's loop ends with len != 0, the socket is skipped.
    Reject,
}

#[derive(Debug)]
enum Op {
    /// A port comparison (8 bytes: the op and a second op holding the port); true falls through.
    Compare {
        code: u8,
        port: u16,
        no: Target,
    },
    /// An unconditional jump (4 bytes).
    Jump(Target),
    Label(usize),
}

/// The comparison codes of one side of the socket.
struct Side {
    ge: u8,
    le: u8,
    eq: u8,
}
const LOCAL: Side = Side {
    ge: BC_S_GE,
    le: BC_S_LE,
    eq: BC_S_EQ,
};
const REMOTE: Side = Side {
    ge: BC_D_GE,
    le: BC_D_LE,
    eq: BC_D_EQ,
};

/// Compiles `filter` to an inet_diag bytecode program that selects the sockets it matches, or a
/// superset when the exact program would exceed [`MAX_BYTECODE`].
///
/// Shape: a binary search over the sorted local-port ranges (`S_GE` of the middle range's first
/// port: true falls into the upper half, false jumps to the lower), leaves of a few ranges
/// (`S_EQ`, or `S_GE` + `S_LE`, then `JMP` to the end); a miss goes on to the same over the
/// remote ports, whose miss jumps past the end. The kernel's audit (`inet_diag_bc_audit`) holds
/// because every op's `yes` is its own length, so every op start lies on the chain that
/// `valid_cc` walks, and every `no` jumps forward to an op start, the end, or 4 bytes past it.
pub fn compile_bytecode(filter: &PortFilter) -> Vec<u8> {
    let mut max_ranges = usize::MAX;
    loop {
        let (local, remote) = (
            ranges(&filter.local, max_ranges),
            ranges(&filter.remote, max_ranges),
        );
        let program = compile_ranges(&local, &remote);
        let widest = local.len().max(remote.len());
        // 2 ranges a side fit easily, so this ends.
        if program.len() <= MAX_BYTECODE || widest <= 2 {
            return program;
        }
        max_ranges = shrink(widest, program.len(), MAX_BYTECODE);
    }
}

/// Fewer ranges a side for a program of `len` that should fit in `budget`: in proportion to
/// the overshoot with a margin, at least one fewer, at least 2.
pub(super) fn shrink(ranges: usize, len: usize, budget: usize) -> usize {
    let scaled = ranges.saturating_mul(budget) / len.max(1) * 9 / 10;
    scaled.min(ranges - 1).max(2)
}

pub(super) fn compile_ranges(local: &[PortRange], remote: &[PortRange]) -> Vec<u8> {
    let mut ops = Vec::new();
    let mut labels = 0;
    let remote_start = Target::Label(labels);
    labels += 1;
    if !local.is_empty() {
        let miss = if remote.is_empty() {
            Target::Reject
        } else {
            remote_start
        };
        emit_tree(&LOCAL, local, miss, &mut ops, &mut labels);
    }
    ops.push(Op::Label(0));
    if !remote.is_empty() {
        emit_tree(&REMOTE, remote, Target::Reject, &mut ops, &mut labels);
    }
    if local.is_empty() && remote.is_empty() {
        ops.push(Op::Jump(Target::Reject));
    }
    assemble(&ops, labels)
}

fn emit_tree(
    side: &Side,
    ranges: &[PortRange],
    miss: Target,
    ops: &mut Vec<Op>,
    labels: &mut usize,
) {
    if ranges.len() <= LEAF_RANGES {
        for (index, &(first, last)) in ranges.iter().enumerate() {
            let next = if index + 1 == ranges.len() {
                miss
            } else {
                *labels += 1;
                Target::Label(*labels - 1)
            };
            if first == last {
                ops.push(Op::Compare {
                    code: side.eq,
                    port: first,
                    no: next,
                });
            } else {
                ops.push(Op::Compare {
                    code: side.ge,
                    port: first,
                    no: next,
                });
                ops.push(Op::Compare {
                    code: side.le,
                    port: last,
                    no: next,
                });
            }
            ops.push(Op::Jump(Target::Accept));
            if let Target::Label(label) = next {
                ops.push(Op::Label(label));
            }
        }
        return;
    }
    let middle = ranges.len() / 2;
    let lower = *labels;
    *labels += 1;
    ops.push(Op::Compare {
        code: side.ge,
        port: ranges[middle].0,
        no: Target::Label(lower),
    });
    emit_tree(side, &ranges[middle..], miss, ops, labels);
    ops.push(Op::Label(lower));
    emit_tree(side, &ranges[..middle], miss, ops, labels);
}

/// Lays the ops out as `struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }` (native endian).
fn assemble(ops: &[Op], labels: usize) -> Vec<u8> {
    let mut at = vec![0usize; labels];
    let mut len = 0;
    for op in ops {
        match op {
            Op::Compare { .. } => len += 8,
            Op::Jump(_) => len += 4,
            Op::Label(label) => at[*label] = len,
        }
    }
    let offset = |target: Target, from: usize| -> u16 {
        let to = match target {
            Target::Label(label) => at[label],
            Target::Accept => len,
            Target::Reject => len + 4,
        };
        // Forward and within MAX_BYTECODE by construction. Were it not, the misaligned u16::MAX
        // makes the kernel refuse the program (EINVAL) rather than run a wrong one.
        to.checked_sub(from)
            .and_then(|distance| u16::try_from(distance).ok())
            .unwrap_or(u16::MAX)
    };
    let mut out = Vec::with_capacity(len);
    for op in ops {
        let from = out.len();
        match *op {
            Op::Compare { code, port, no } => {
                out.extend_from_slice(&[code, 8]);
                out.extend_from_slice(&offset(no, from).to_ne_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&port.to_ne_bytes());
            }
            Op::Jump(to) => {
                out.extend_from_slice(&[BC_JMP, 4]);
                out.extend_from_slice(&offset(to, from).to_ne_bytes());
            }
            Op::Label(_) => {}
        }
    }
    out
}

#[cfg(test)]
pub(super) mod kernel;

#[cfg(test)]
mod tests;

/// Whether [`compile_bytecode`] selects exactly `filter`'s sockets (it was not widened).
#[cfg(test)]
pub(super) fn is_exact(filter: &PortFilter) -> bool {
    let all = usize::MAX;
    compile_ranges(&ranges(&filter.local, all), &ranges(&filter.remote, all)).len() <= MAX_BYTECODE
}
