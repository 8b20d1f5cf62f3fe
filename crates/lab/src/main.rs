//! relaywatch-lab: starts the whole system on one machine (private Tor network, lab relays,
//! exporters, Prometheus, Alertmanager, sinks) with a live summary; `drill` runs faults against it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::net::SocketAddr;

use lab::bench::{ExporterBench, FloorKind};
use lab::lab::LabSpec;

mod run_drill;
mod run_lab;
use run_lab::run_lab;

const USAGE: &str = "\
usage: relaywatch-lab [--clearnet N] [--prefer-tor N] [--only-onion N] [--dir DIR]
                      [--time-scale F] [--once]
       relaywatch-lab drill SCENARIO --dir DIR
       relaywatch-lab --bench-exporter N [--unrelated-sockets M] [--churn R] [--poll-interval D]
                      [--polls-only-seconds S] [--scrape-seconds S] [--shared-netns]
                      [--relaywatch PATH]
       relaywatch-lab --bench-tor-events
       relaywatch-lab --serve-floor axum|std FILE ADDR

Starts a private Tor network on loopback, lab relays (the gethrelay stand-in) in the three
modes configured as deploy/kustomize configures the pods, lab nodes standing for the public
network, a relaywatch exporter beside every relay, a real Prometheus (scrape configuration
derived from deploy/kustomize/base/servicemonitor.yaml, rules from deploy/rules) and a real
Alertmanager (deploy/alertmanager/alertmanager.yaml) with local Slack and e-mail sinks; peers
the fleet, then shows a live summary until Ctrl-C (with --once: prints it once and stops).
When everything is up it writes DIR/verify.yaml and DIR/lab.json.

  --clearnet N     clearnet relays (default 3)
  --prefer-tor N   prefer-tor relays (default 4)
  --only-onion N   only-onion relays (default 3)
  --dir DIR        keep logs, torrcs and keys in DIR (default: a temporary directory)
  --time-scale F   divide every rule duration, window and Alertmanager timer by F
                   (a whole number, 1 to 30; default 20; 1 = production timing); relays
                   redial F times faster
  --once           print the summary once and stop

drill SCENARIO --dir DIR
                   against the lab running in DIR: inject a fault, wait for the
                   notifications its routing names, clear it, wait for the resolved ones.
                   SCENARIO: clearnet-leak, relay-down, exporter-down, tor-down,
                   no-tor-peers, tor-dial-failures, low-peers, or all (in sequence, with a
                   table at the end)
  --bench-exporter N
                   instead: measure the exporter's CPU per poll, RSS and /metrics latency
                   (beside two static floor servers) next to a synthetic relay with N real
                   loopback peer connections (no Tor), print the figures and stop; see
                   BENCHMARKS.md. With it:
    --unrelated-sockets M   M more TCP sockets in the namespace (default 0)
    --churn R               open and close R unrelated connections per second (default 0)
    --poll-interval D       the exporter's --poll-interval (default 1s)
    --polls-only-seconds S  first phase, no scrapes: CPU per poll (default 20)
    --scrape-seconds S      second phase: a scrape every ~100 ms (default 120)
    --relaywatch PATH       the exporter binary to measure (default: the one beside this one);
                            give it 2-4 times to run those exporters side by side in one run
    --shared-netns          measure in this machine's network namespace, beside every other
                            process's sockets (default: a fresh one, as a pod has; needs root)
  --bench-tor-events
                   instead: measure the exporter's CPU while its tor emits events as fast
                   as failing onion dials make it, print the figures and stop
  --serve-floor KIND FILE ADDR
                   internal, started by --bench-exporter: serve FILE's bytes on ADDR to
                   every request, on the exporter's HTTP stack (axum) or plain std threads
";

struct Options {
    spec: LabSpec,
    time_scale: f64,
    once: bool,
    bench_exporter: Option<ExporterBench>,
    /// With --bench-exporter: stay in this machine's network namespace.
    shared_netns: bool,
    bench_tor_events: bool,
    serve_floor: Option<(FloorKind, PathBuf, SocketAddr)>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut spec = LabSpec::fleet();
    let mut once = false;
    let mut time_scale = 20.0;
    let mut bench_exporter = None;
    let mut bench = ExporterBench::new(0);
    let mut bench_flags = Vec::new();
    let mut shared_netns = false;
    let mut bench_tor_events = false;
    let mut serve_floor = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |flag: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let count = |flag: &str, text: String| {
            text.parse::<usize>()
                .map_err(|_| format!("{flag} expects a number, got {text:?}"))
        };
        match arg.as_str() {
            "--clearnet" => spec.relays[0].1 = count(arg, value(arg)?)?,
            "--prefer-tor" => spec.relays[1].1 = count(arg, value(arg)?)?,
            "--only-onion" => spec.relays[2].1 = count(arg, value(arg)?)?,
            "--dir" => spec.dir = Some(PathBuf::from(value(arg)?)),
            "--once" => once = true,
            "--time-scale" => {
                let text = value(arg)?;
                time_scale = text
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && (1.0..=lab::stack::MAX_TIME_SCALE).contains(f))
                    .ok_or_else(|| {
                        format!(
                            "--time-scale expects a whole number from 1 to {}, got {text:?}",
                            lab::stack::MAX_TIME_SCALE
                        )
                    })?;
            }
            "--bench-exporter" => bench_exporter = Some(count(arg, value(arg)?)?),
            "--unrelated-sockets" => {
                bench.unrelated_sockets = count(arg, value(arg)?)?;
                bench_flags.push(arg.clone());
            }
            "--churn" => {
                bench.churn_per_second = count(arg, value(arg)?)?;
                bench_flags.push(arg.clone());
            }
            "--poll-interval" => {
                bench.poll_interval = value(arg)?;
                bench_flags.push(arg.clone());
            }
            "--polls-only-seconds" => {
                bench.polls_only = Duration::from_secs(count(arg, value(arg)?)? as u64);
                bench_flags.push(arg.clone());
            }
            "--relaywatch" => {
                bench.relaywatch.push(PathBuf::from(value(arg)?));
                bench_flags.push(arg.clone());
            }
            "--shared-netns" => {
                shared_netns = true;
                bench_flags.push(arg.clone());
            }
            "--scrape-seconds" => {
                bench.scrapes_for = Duration::from_secs(count(arg, value(arg)?)?.max(1) as u64);
                bench_flags.push(arg.clone());
            }
            "--bench-tor-events" => bench_tor_events = true,
            "--serve-floor" => {
                let kind = value(arg)?;
                let kind = FloorKind::parse(&kind)
                    .ok_or_else(|| format!("--serve-floor: expected axum or std, got {kind:?}"))?;
                let file = PathBuf::from(value(arg)?);
                let addr = value(arg)?;
                let addr = addr
                    .parse()
                    .map_err(|_| format!("--serve-floor: expected ip:port, got {addr:?}"))?;
                serve_floor = Some((kind, file, addr));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if bench_exporter.is_none() && !bench_flags.is_empty() {
        return Err(format!("{} needs --bench-exporter", bench_flags.join(", ")));
    }
    let bench_exporter = bench_exporter.map(|peers| ExporterBench { peers, ..bench });
    let total: usize = spec.relays.iter().map(|(_, n)| n).sum();
    if total == 0 || total > 200 {
        return Err(format!("the lab needs 1 to 200 relays, got {total}"));
    }
    Ok(Options {
        spec,
        time_scale,
        once,
        bench_exporter,
        shared_netns,
        bench_tor_events,
        serve_floor,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("drill") {
        return run_drill::main(&args[1..]);
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(error) if error.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprint!("relaywatch-lab: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("relaywatch-lab: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> anyhow::Result<()> {
    if let Some((kind, file, addr)) = options.serve_floor {
        return lab::bench::serve_floor(kind, &file, addr);
    }
    if options.bench_tor_events {
        println!("{}", lab::bench::tor_events_bench(Duration::from_secs(30))?);
        return Ok(());
    }
    if let Some(mut bench) = options.bench_exporter {
        // Before any thread starts: threads started earlier would stay in the old namespace.
        bench.namespace = if options.shared_netns {
            "shared with the machine (--shared-netns)".into()
        } else {
            match lab::bench::netns::enter_own() {
                Ok(()) => "the bench's own (only its sockets, as in a pod)".into(),
                Err(error) => {
                    eprintln!("relaywatch-lab: cannot create a network namespace ({error:#}); measuring in the shared one");
                    format!("shared with the machine (no namespace of its own: {error:#})")
                }
            }
        };
        println!("{}", lab::bench::exporter_bench(&bench)?);
        return Ok(());
    }
    run_lab(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn bench_flags_fill_the_bench() {
        let options = parse(&args(
            "--bench-exporter 1000 --unrelated-sockets 5000 --churn 10 --poll-interval 2s --scrape-seconds 30 --relaywatch /x/relaywatch",
        ))
        .unwrap();
        let bench = options.bench_exporter.unwrap();
        assert_eq!(
            (bench.peers, bench.unrelated_sockets, bench.churn_per_second),
            (1000, 5000, 10)
        );
        assert_eq!(bench.poll_interval, "2s");
        assert_eq!(bench.scrapes_for, Duration::from_secs(30));
        assert_eq!(bench.relaywatch, vec![PathBuf::from("/x/relaywatch")]);
        assert!(!options.shared_netns);
    }

    #[test]
    fn bench_flags_need_the_bench() {
        let error = parse(&args("--unrelated-sockets 5000")).err().unwrap();
        assert!(error.contains("needs --bench-exporter"), "{error}");
    }
}
