//! The kernel's classic BPF checker and interpreter (net/core/filter.c), for the opcodes we emit; for tests.

use super::*;

/// `bpf_check_classic` for our opcodes: length, known opcodes, jumps inside, a return at the end,
/// scratch memory written before it is read on the (straight-line) path.
pub fn check(program: &[Instruction]) -> Result<(), String> {
    if program.is_empty() || program.len() > MAX_INSTRUCTIONS {
        return Err(format!("{} instructions", program.len()));
    }
    for (pc, insn) in program.iter().enumerate() {
        let after = |offset: usize| pc + 1 + offset < program.len();
        let ok = match insn.code {
            c if c == LD | W | LEN || c == LD | B | ABS || c == LD | H | ABS => true,
            c if c == ST || c == LDX | W | MEM => insn.k < 16,
            c if c == ALU | LSH | K || c == ALU | OR | X || c == MISC | TAX => true,
            c if c == RET | K => true,
            c if c == JMP | JA => after(insn.k as usize),
            c if c == JMP | JEQ | K
                || c == JMP | JGE | K
                || c == JMP | JGT | K
                || c == JMP | JEQ | X =>
            {
                after(insn.jt.into()) && after(insn.jf.into())
            }
            _ => false,
        };
        if !ok {
            return Err(format!("instruction {pc}: {insn:?}"));
        }
    }
    match program.last() {
        Some(last) if last.code == RET | K => Ok(()),
        _ => Err("does not end with a return".into()),
    }
}

/// Runs `program` on `packet`; a load past the end returns 0 (drop), as in the kernel.
pub fn run(program: &[Instruction], packet: &[u8]) -> u32 {
    let (mut a, mut x, mut memory) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    let load = |at: u32, size: usize| -> Option<u32> {
        let at = at as usize;
        let bytes = packet.get(at..at + size)?;
        Some(
            bytes
                .iter()
                .fold(0u32, |value, &byte| value << 8 | u32::from(byte)),
        )
    };
    while let Some(insn) = program.get(pc) {
        pc += 1;
        let k = insn.k;
        let jump = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
        match insn.code {
            c if c == LD | W | LEN => a = packet.len() as u32,
            c if c == LD | B | ABS => match load(k, 1) {
                Some(value) => a = value,
                None => return 0,
            },
            c if c == LD | H | ABS => match load(k, 2) {
                Some(value) => a = value,
                None => return 0,
            },
            c if c == ST => memory[k as usize] = a,
            c if c == LDX | W | MEM => x = memory[k as usize],
            c if c == ALU | LSH | K => a <<= k,
            c if c == ALU | OR | X => a |= x,
            c if c == MISC | TAX => x = a,
            c if c == RET | K => return k,
            c if c == JMP | JA => pc += k as usize,
            c if c == JMP | JEQ | K => pc += jump(a == k),
            c if c == JMP | JGE | K => pc += jump(a >= k),
            c if c == JMP | JGT | K => pc += jump(a > k),
            c if c == JMP | JEQ | X => pc += jump(a == x),
            other => panic!("opcode {other:#x} not modelled"),
        }
    }
    panic!("ran off the end")
}
