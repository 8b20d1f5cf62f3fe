//! The kernel's checks and interpreter of inet_diag bytecode (net/ipv4/inet_diag.c, Linux 6.x), for tests.
//!
//! Ported op for op for the codes our compiler emits, so that unit and property tests can run
//! programs without a kernel; the real-kernel tests keep the port honest.

use super::{BC_D_EQ, BC_D_GE, BC_D_LE, BC_JMP, BC_S_EQ, BC_S_GE, BC_S_LE};

const BC_NOP: u8 = 0;

/// `struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }` at `at`, if it is all there.
fn op(program: &[u8], at: usize) -> Option<(u8, i64, i64)> {
    let bytes = program.get(at..at.checked_add(4)?)?;
    Some((
        bytes[0],
        i64::from(bytes[1]),
        i64::from(u16::from_ne_bytes([bytes[2], bytes[3]])),
    ))
}

/// The port of a comparison: the `no` field of the op that follows it.
fn port(program: &[u8], at: usize) -> Option<u16> {
    op(program, at + 4).map(|(_, _, no)| no as u16)
}

/// `valid_cc`: whether `cc` bytes before the end is an op start on the chain of `yes` jumps.
fn valid_cc(program: &[u8], cc: i64) -> bool {
    let mut len = program.len() as i64;
    let mut at = 0usize;
    while len >= 0 {
        if cc > len {
            return false;
        }
        if cc == len {
            return true;
        }
        let Some((_, yes, _)) = op(program, at) else {
            return false;
        };
        if yes < 4 || yes & 3 != 0 {
            return false;
        }
        len -= yes;
        at += yes as usize;
    }
    false
}

/// `inet_diag_bc_audit` for the unprivileged port and jump ops; `Err` names the rule broken.
pub fn audit(program: &[u8]) -> Result<(), String> {
    if program.len() < 4 || program.len() > super::MAX_BYTECODE {
        return Err(format!("length {}", program.len()));
    }
    let mut len = program.len() as i64;
    let mut at = 0usize;
    while len > 0 {
        let (code, yes, no) = op(program, at).ok_or(format!("op cut at {at}"))?;
        let min_len = match code {
            BC_S_GE | BC_S_LE | BC_D_GE | BC_D_LE | BC_S_EQ | BC_D_EQ => {
                if len < 8 {
                    return Err(format!("comparison cut at {at}"));
                }
                8
            }
            BC_JMP | BC_NOP => 4,
            other => return Err(format!("code {other} at {at}")),
        };
        if code != BC_NOP {
            if no < min_len || no > len + 4 || no & 3 != 0 {
                return Err(format!("no {no} at {at} (len {len})"));
            }
            if no < len && !valid_cc(program, len - no) {
                return Err(format!("no {no} at {at} lands off the op chain"));
            }
        }
        if yes < min_len || yes > len + 4 || yes & 3 != 0 {
            return Err(format!("yes {yes} at {at}"));
        }
        at += yes as usize;
        len -= yes;
    }
    if len == 0 {
        Ok(())
    } else {
        Err(format!("ends {len} bytes off"))
    }
}

/// `inet_diag_bc_run` for a socket with these ports; `None` if the program reads past its end
/// (which the audit rules out).
pub fn run(program: &[u8], local_port: u16, remote_port: u16) -> Option<bool> {
    let mut len = program.len() as i64;
    let mut at = 0i64;
    while len > 0 {
        let (code, yes, no) = op(program, usize::try_from(at).ok()?)?;
        let here = at as usize;
        let taken = match code {
            BC_NOP => true,
            BC_JMP => false,
            BC_S_GE => local_port >= port(program, here)?,
            BC_S_LE => local_port <= port(program, here)?,
            BC_S_EQ => local_port == port(program, here)?,
            BC_D_GE => remote_port >= port(program, here)?,
            BC_D_LE => remote_port <= port(program, here)?,
            BC_D_EQ => remote_port == port(program, here)?,
            _ => return None,
        };
        let step = if taken { yes } else { no };
        if step <= 0 {
            return None; // the kernel would spin; the audit refuses such programs
        }
        len -= step;
        at += step;
    }
    Some(len == 0)
}
