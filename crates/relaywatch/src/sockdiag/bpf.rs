//! A classic BPF socket filter that keeps only the destroy events a [`PortFilter`] selects; pure.
//!
//! The kernel runs it on each destroy-event datagram before queueing it (`sk_filter` in
//! `do_one_broadcast`), so events of other sockets neither wake us nor take room in the receive
//! buffer, whose overflow (ENOBUFS) loses events of every socket. Attaching needs no privilege.
//!
//! The program sees the datagram from its `nlmsghdr`. It keeps what it cannot judge: a datagram
//! too short to hold the ports, one whose first message does not span it (several messages,
//! which the kernel does not send for destroy events, or a malformed length), a message of
//! another type, an address family other than IPv4 and IPv6. Then it keeps the event when the
//! local port (`idiag_sport`, offset 20) or the remote port (`idiag_dport`, offset 22) is selected.
//! The ports are big-endian in the message and BPF loads are big-endian, so they compare as
//! they are; the netlink header is native-endian, so its fields are loaded byte by byte or
//! compared with byte-swapped constants.

use super::filter::{ranges, shrink, PortFilter, PortRange};
use super::wire::SOCK_DIAG_BY_FAMILY;

/// `struct sock_filter` of linux/filter.h.
pub type Instruction = libc::sock_filter;

// Opcodes from linux/bpf_common.h and linux/filter.h.
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
const OR: u16 = 0x40;
const LSH: u16 = 0x60;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const K: u16 = 0x00;
const X: u16 = 0x08;
const TAX: u16 = 0x00;

/// `BPF_MAXINSNS`: the kernel refuses longer classic programs.
pub const MAX_INSTRUCTIONS: usize = 4096;
/// Keep the whole datagram; a smaller return value would cut it.
const KEEP: u32 = u32::MAX;
const DROP: u32 = 0;
/// Ranges tested one after another at the bottom of the search tree; keeps every conditional
/// jump (8 bits) short.
const LEAF_RANGES: usize = 8;
/// `nlmsghdr` (16 bytes), then `inet_diag_msg`: family at 16, the ports at 20 and 22.
const FAMILY_AT: u32 = 16;
const LOCAL_PORT_AT: u32 = 20;
const REMOTE_PORT_AT: u32 = 22;
const PORTS_END: u32 = 24;

#[derive(Debug, Clone, Copy)]
enum Target {
    Label(usize),
    Next,
}

#[derive(Debug)]
enum Op {
    Plain(u16, u32),
    /// A conditional jump; the kernel's offsets are 8 bits, so targets must be near.
    Jump(u16, u32, Target, Target),
    /// An unconditional jump, 32-bit offset.
    Always(usize),
    Label(usize),
}

/// Compiles the filter for `ports`, at most `max_instructions` long (at least 64): larger port
/// sets are widened to fewer ranges (a superset; more events, never fewer).
pub fn compile(ports: &PortFilter, max_instructions: usize) -> Vec<Instruction> {
    let max_instructions = max_instructions.clamp(64, MAX_INSTRUCTIONS);
    let mut max_ranges = usize::MAX;
    loop {
        let local = ranges(&ports.local, max_ranges);
        let remote = ranges(&ports.remote, max_ranges);
        let program = assemble(&program_ops(&local, &remote));
        let widest = local.len().max(remote.len());
        if program.len() <= max_instructions || widest <= 2 {
            // Two ranges per side take a few dozen instructions, so this always fits.
            return program;
        }
        max_ranges = shrink(widest, program.len(), max_instructions);
    }
}

/// The program that keeps everything: what a socket without a usable filter gets.
pub fn keep_all() -> Vec<Instruction> {
    vec![instruction(RET | K, KEEP, 0, 0)]
}

fn program_ops(local: &[PortRange], remote: &[PortRange]) -> Vec<Op> {
    let (skip, keep) = (Target::Label(0), Target::Next);
    let mut ops = vec![
        // M[0] = datagram length; too short for the ports: keep.
        Op::Plain(LD | W | LEN, 0),
        Op::Plain(ST, 0),
        Op::Jump(JMP | JGE | K, PORTS_END, Target::Label(1), keep),
        Op::Plain(RET | K, KEEP),
        Op::Label(1),
    ];
    // A = nlmsg_len, native endian, built from its bytes most significant first.
    let order: [u32; 4] = if cfg!(target_endian = "little") {
        [3, 2, 1, 0]
    } else {
        [0, 1, 2, 3]
    };
    ops.push(Op::Plain(LD | B | ABS, order[0]));
    for &at in &order[1..] {
        ops.push(Op::Plain(ALU | LSH | K, 8));
        ops.push(Op::Plain(MISC | TAX, 0));
        ops.push(Op::Plain(LD | B | ABS, at));
        ops.push(Op::Plain(ALU | OR | X, 0));
    }
    // One message spanning the datagram, of type SOCK_DIAG_BY_FAMILY, IPv4 or IPv6; else keep.
    let swapped_type = u16::from_be_bytes(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    ops.extend([
        Op::Plain(LDX | W | MEM, 0),
        Op::Jump(JMP | JEQ | X, 0, Target::Label(2), keep),
        Op::Plain(RET | K, KEEP),
        Op::Label(2),
        Op::Plain(LD | H | ABS, 4),
        Op::Jump(
            JMP | JEQ | K,
            u32::from(swapped_type),
            Target::Label(3),
            keep,
        ),
        Op::Plain(RET | K, KEEP),
        Op::Label(3),
        Op::Plain(LD | B | ABS, FAMILY_AT),
        Op::Jump(JMP | JEQ | K, libc::AF_INET as u32, skip, Target::Next),
        Op::Jump(JMP | JEQ | K, libc::AF_INET6 as u32, skip, keep),
        Op::Plain(RET | K, KEEP),
        Op::Label(0),
    ]);
    // Labels 0..=3 are taken above; the remote tree starts at 4, the final drop is 5.
    let mut labels = 6;
    let (remote_start, drop) = (4, 5);
    ops.push(Op::Plain(LD | H | ABS, LOCAL_PORT_AT));
    emit_tree(local, remote_start, &mut ops, &mut labels);
    ops.push(Op::Label(remote_start));
    ops.push(Op::Plain(LD | H | ABS, REMOTE_PORT_AT));
    emit_tree(remote, drop, &mut ops, &mut labels);
    ops.push(Op::Label(drop));
    ops.push(Op::Plain(RET | K, DROP));
    ops
}

/// A binary search of A over `ranges`: a match returns KEEP, a miss jumps to `miss`.
fn emit_tree(ranges: &[PortRange], miss: usize, ops: &mut Vec<Op>, labels: &mut usize) {
    if ranges.is_empty() {
        ops.push(Op::Always(miss));
        return;
    }
    if ranges.len() <= LEAF_RANGES {
        let keep = *labels;
        *labels += 1;
        for &(first, last) in ranges {
            if first == last {
                ops.push(Op::Jump(
                    JMP | JEQ | K,
                    first.into(),
                    Target::Label(keep),
                    Target::Next,
                ));
            } else {
                // first <= A <= last: keep. A < first skips the upper test.
                let next = *labels;
                *labels += 1;
                ops.push(Op::Jump(
                    JMP | JGE | K,
                    first.into(),
                    Target::Next,
                    Target::Label(next),
                ));
                ops.push(Op::Jump(
                    JMP | JGT | K,
                    last.into(),
                    Target::Label(next),
                    Target::Label(keep),
                ));
                ops.push(Op::Label(next));
            }
        }
        ops.push(Op::Always(miss));
        ops.push(Op::Label(keep));
        ops.push(Op::Plain(RET | K, KEEP));
        return;
    }
    let middle = ranges.len() / 2;
    let upper = *labels;
    *labels += 1;
    // A >= the upper half's first port: on to the upper half, else fall into the lower.
    ops.push(Op::Jump(
        JMP | JGE | K,
        ranges[middle].0.into(),
        Target::Next,
        Target::Label(*labels),
    ));
    ops.push(Op::Always(upper));
    ops.push(Op::Label(*labels));
    *labels += 1;
    emit_tree(&ranges[..middle], miss, ops, labels);
    ops.push(Op::Label(upper));
    emit_tree(&ranges[middle..], miss, ops, labels);
}

fn instruction(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

/// Resolves labels. A conditional target out of 8-bit reach cannot happen by construction; if
/// it did, the program keeps everything rather than jump somewhere wrong.
fn assemble(ops: &[Op]) -> Vec<Instruction> {
    let mut at = Vec::new();
    let mut count = 0usize;
    for op in ops {
        match op {
            Op::Label(label) => {
                if at.len() <= *label {
                    at.resize(label + 1, usize::MAX);
                }
                at[*label] = count;
            }
            _ => count += 1,
        }
    }
    let mut out = Vec::with_capacity(count);
    for op in ops {
        let pc = out.len();
        // Offsets count from the next instruction.
        let reach = |label: usize| {
            at.get(label)
                .filter(|&&to| to < count)
                .and_then(|to| to.checked_sub(pc + 1))
        };
        let short = |target: Target| match target {
            Target::Next => Some(0u8),
            Target::Label(label) => reach(label).and_then(|distance| u8::try_from(distance).ok()),
        };
        match *op {
            Op::Plain(code, k) => out.push(instruction(code, k, 0, 0)),
            Op::Jump(code, k, yes, no) => match (short(yes), short(no)) {
                (Some(jt), Some(jf)) => out.push(instruction(code, k, jt, jf)),
                _ => return keep_all(),
            },
            Op::Always(label) => match reach(label).and_then(|d| u32::try_from(d).ok()) {
                Some(distance) => out.push(instruction(JMP | JA, distance, 0, 0)),
                None => return keep_all(),
            },
            Op::Label(_) => {}
        }
    }
    out
}

#[cfg(test)]
pub(super) mod vm;

#[cfg(test)]
mod tests;
