//! What the benchmarks read from /proc and the kernel: CPU time per process and per thread,
//! memory, load, sockets in the namespace, and the descriptor limit.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

/// CPU seconds (user + system) a whole process has used, dead threads included, from
/// /proc/<pid>/stat. Resolution is one clock tick (10 ms), so compare over many polls.
pub fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = process_stat(pid)?;
    Ok(stat.user_seconds + stat.system_seconds)
}

/// What /proc/<pid>/stat says of a whole process's work.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStat {
    pub user_seconds: f64,
    pub system_seconds: f64,
    /// Minor page faults: first touches of fresh memory, each one a page the kernel zeroes.
    pub minor_faults: f64,
}

pub fn process_stat(pid: u32) -> Result<ProcessStat> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| -> Result<f64> {
        fields
            .get(index)
            .with_context(|| format!("{path}: short"))?
            .parse::<f64>()
            .with_context(|| format!("{path}: field {index} is not a number"))
    };
    // minflt, utime and stime are fields 10, 14 and 15 of stat; 0-based after the name: 7, 11, 12.
    Ok(ProcessStat {
        user_seconds: field(11)? / clock_ticks_per_second(),
        system_seconds: field(12)? / clock_ticks_per_second(),
        minor_faults: field(7)?,
    })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU seconds per thread name (threads of one name summed), in nanosecond resolution from
/// /proc/<pid>/task/<tid>/schedstat. Threads that have exited are not included: use this for
/// the exporter's long-lived workers (`poller`, `destroy-listener`, the HTTP runtime).
pub fn thread_cpu_seconds(pid: u32) -> Result<BTreeMap<String, f64>> {
    let dir = format!("/proc/{pid}/task");
    let mut by_name = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let task = entry.with_context(|| format!("reading {dir}"))?.path();
        // A thread may exit between read_dir and these reads; skip it.
        let (Ok(name), Ok(schedstat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("schedstat")),
        ) else {
            continue;
        };
        let Some(nanos) = schedstat
            .split_whitespace()
            .next()
            .and_then(|field| field.parse::<f64>().ok())
        else {
            continue;
        };
        *by_name.entry(name.trim().to_string()).or_insert(0.0) += nanos / 1e9;
    }
    Ok(by_name)
}

/// A field of /proc/<pid>/status in bytes (`VmRSS`, `VmHWM`); 0 when missing.
pub fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| {
                line.strip_prefix(field)
                    .is_some_and(|rest| rest.starts_with(':'))
            })?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// Resident memory of a process in bytes (0 when the process is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS")
}

/// CPU seconds every CPU of the machine has been busy (all but idle and iowait), summed,
/// from the first line of /proc/stat.
pub fn machine_busy_seconds() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .next()
        .filter(|line| line.starts_with("cpu "))
        .context("/proc/stat: no cpu line")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse::<f64>().context("/proc/stat: not a number"))
        .collect::<Result<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let busy: f64 = ticks.iter().take(8).sum::<f64>()
        - ticks.get(3).copied().unwrap_or(0.0)
        - ticks.get(4).copied().unwrap_or(0.0);
    Ok(busy / clock_ticks_per_second())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Result<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || -> Result<f64> {
        fields
            .next()
            .context("/proc/loadavg: short")?
            .context("/proc/loadavg: not a number")
    };
    Ok([next()?, next()?, next()?])
}

/// CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// TCP sockets (IPv4 and IPv6, every state) in this network namespace, as the exporter's
/// unfiltered dump sees them: one line each in /proc/net/tcp and /proc/net/tcp6.
pub fn namespace_tcp_sockets() -> Result<usize> {
    let mut total = 0;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        total += text.lines().skip(1).count();
    }
    Ok(total)
}

/// Raises this process's open-file soft limit to at least `needed` (up to the hard limit).
/// Returns the limit now in force.
pub fn raise_nofile(needed: u64) -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if limit.rlim_cur >= needed {
        return Ok(limit.rlim_cur);
    }
    if limit.rlim_max < needed {
        bail!(
            "the bench needs {needed} open files but the hard limit is {} (raise it with `ulimit -Hn` or fewer peers/sockets)",
            limit.rlim_max
        );
    }
    limit.rlim_cur = needed;
    // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard limit
    // needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setrlimit(RLIMIT_NOFILE, {needed})"));
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(process_cpu_seconds(pid).unwrap() >= 0.0);
        assert!(rss_bytes(pid) > 0);
        assert!(status_bytes(pid, "VmHWM") >= rss_bytes(pid) / 2);
        // This test's own thread is in the list, under some name.
        assert!(!thread_cpu_seconds(pid).unwrap().is_empty());
        assert!(load_average().unwrap()[0] >= 0.0);
        assert!(machine_busy_seconds().unwrap() > 0.0);
    }

    #[test]
    fn missing_process_is_an_error_or_zero() {
        // Pid 0 never has a /proc entry.
        assert!(process_cpu_seconds(0).is_err());
        assert_eq!(rss_bytes(0), 0);
    }
}
