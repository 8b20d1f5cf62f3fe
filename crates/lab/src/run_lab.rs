//! `relaywatch-lab` without a subcommand: the whole system with a live summary until Ctrl-C.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lab::stack::{Stack, StackSpec};
use lab::summary;

use super::Options;

/// How often the summary is redrawn on a terminal, and printed as plain lines otherwise.
const REFRESH_TTY: Duration = Duration::from_secs(3);
const REFRESH_PLAIN: Duration = Duration::from_secs(15);

pub fn run_lab(options: Options) -> anyhow::Result<()> {
    let interrupted = lab::signals::install_interrupt_flag()?;
    let spec = options.spec;
    let modes: Vec<String> = spec
        .relays
        .iter()
        .map(|(mode, n)| format!("{} ×{n}", mode.as_str()))
        .collect();
    eprintln!(
        "lab: starting a private Tor network, relays ({}), exporters, Prometheus and Alertmanager",
        modes.join(", ")
    );
    let stack = Stack::start(
        StackSpec {
            lab: spec,
            time_scale: options.time_scale,
            relaywatch_binary: None,
        },
        false,
    )?;
    let ready = stack.started.elapsed().as_secs_f64();
    eprintln!(
        "lab: ready after {ready:.1} s; {} processes use {} MB RSS; files in {}",
        stack.process_count(),
        stack.rss_bytes() / 1_000_000,
        stack.dir.display()
    );
    eprintln!("lab: what differs from a cluster:");
    for change in &stack.changes {
        eprintln!("  - {change}");
    }
    eprintln!(
        "\n{}",
        summary::graph_links(&format!("http://{}", stack.file.prometheus))
    );
    let dir = stack.dir.display();
    let bin = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.display().to_string()))
        .unwrap_or_else(|| "target/debug".into());
    eprintln!(
        "next, in another terminal:\n  {bin}/relaywatch verify --config {dir}/verify.yaml\n  {bin}/relaywatch-lab drill all --dir {dir}\n  (or one drill: clearnet-leak, relay-down, exporter-down, tor-down, no-tor-peers, tor-dial-failures, low-peers)\n"
    );
    if options.once {
        println!("{}", summary::screen(&stack)?);
        return Ok(());
    }
    let tty = std::io::stdout().is_terminal();
    let refresh = if tty { REFRESH_TTY } else { REFRESH_PLAIN };
    eprintln!("lab: running; Ctrl-C stops every process");
    let mut last = None::<Instant>;
    while !interrupted.load(Ordering::Relaxed) {
        if last.is_none_or(|at| at.elapsed() >= refresh) {
            let screen = summary::screen(&stack)?;
            if tty {
                // Home and clear, then the screen: a redraw, not a scroll.
                print!("\x1b[H\x1b[2J{screen}");
            } else {
                println!("{screen}");
            }
            last = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("lab: stopping");
    Ok(())
}
