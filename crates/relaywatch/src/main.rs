//! relaywatch: the Tor-aware monitoring sidecar for gethrelay pods.

use std::process::ExitCode;

use clap::Parser;

use relaywatch::cli::{self, Cli, Command, ExporterArgs, Mode};
use relaywatch::{exporter, http, log};

fn main() -> ExitCode {
    exporter::process_start_time();
    let cli = Cli::parse();
    match cli.command {
        Command::Exporter(args) => run_exporter(args),
        Command::Verify(args) => ExitCode::from(relaywatch::verify::main(&args.config)),
    }
}

/// Usage errors: printed plainly (logging is not set up yet) with exit code 2.
fn usage_error(error: &str) -> ExitCode {
    use std::io::Write;
    // A closed stderr must not turn a usage error into a panic.
    let _ = writeln!(std::io::stderr(), "relaywatch: error: {error}");
    ExitCode::from(2)
}

fn run_exporter(args: ExporterArgs) -> ExitCode {
    let admin_host = match cli::check_admin_url(&args.relay_admin_url) {
        Ok(host) => host,
        Err(error) => return usage_error(&error),
    };
    let tor_control = match args.tor_control() {
        Ok(tor_control) => tor_control,
        Err(error) => return usage_error(&error),
    };
    log::init(args.log_level, args.log_format);
    warn_about_configuration(&args, &admin_host, tor_control.as_ref());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Signals first: until a handler is installed, SIGHUP's default action kills the process.
    let signals = runtime.block_on(async { Signals::install() });
    let mut signals = match signals {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!("cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match runtime.block_on(tokio::net::TcpListener::bind(args.listen)) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(
                "cannot listen on {} ({error}); choose another address with --listen",
                args.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let serving = listener.local_addr().unwrap_or(args.listen);
    let exporter = exporter::Exporter::new(&args, tor_control);
    if let Err(error) = exporter.start() {
        tracing::error!("cannot start a worker thread: {error}");
        return ExitCode::FAILURE;
    }
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    let workers = exporter.workers();
    // A plain thread, not spawn_blocking: the runtime must not wait for it at exit.
    let _ = std::thread::Builder::new()
        .name("supervisor".into())
        .spawn(move || {
            let _ = stopped_tx.send(workers.wait_for_a_stop());
        });
    tracing::info!(
        "relaywatch {} exporter: mode {}, leak guard {}, serving http://{}/metrics",
        env!("CARGO_PKG_VERSION"),
        mode_name(args.mode),
        guard_description(&args),
        serving
    );
    let code = runtime.block_on(async move {
        let server = http::serve(listener, http::router(exporter), http::Limits::default());
        tokio::select! {
            _ = server => ExitCode::FAILURE,
            stopped = stopped_rx => {
                let name = stopped.unwrap_or("supervisor");
                tracing::error!("worker {name} stopped; exiting so that the container is restarted");
                ExitCode::FAILURE
            }
            _ = signals.terminate() => {
                tracing::info!("stopping");
                ExitCode::SUCCESS
            }
        }
    });
    // Worker threads block in IO; they end with the process.
    runtime.shutdown_background();
    code
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Clearnet => "clearnet",
        Mode::PreferTor => "prefer-tor",
        Mode::OnlyOnion => "only-onion",
    }
}

fn guard_description(args: &ExporterArgs) -> &'static str {
    match (args.mode, args.enforce) {
        (Mode::OnlyOnion, true) => "enforcing (leaks counted and removed)",
        (Mode::OnlyOnion, false) => "counting only (no --enforce)",
        _ => "off (only only-onion relays can leak)",
    }
}

/// Says what an operator probably did not mean, without refusing to run.
fn warn_about_configuration(
    args: &ExporterArgs,
    admin_host: &str,
    tor_control: Option<&relaywatch::sources::tor::TorControlConfig>,
) {
    if args.enforce && args.mode != Mode::OnlyOnion {
        tracing::warn!(
            "--enforce has no effect in mode {}: only only-onion relays have leaks to remove",
            mode_name(args.mode)
        );
    }
    if !cli::is_loopback_host(admin_host) {
        tracing::warn!(
            "--relay-admin-url is not a loopback address: admin_peers (peer addresses) and admin_removePeer would cross the network in clear; run relaywatch in the relay's pod and use 127.0.0.1"
        );
    }
    if let Some(config) = tor_control {
        if !config.address.ip().to_canonical().is_loopback() {
            tracing::warn!(
                "--tor-control is not a loopback address: control-port authentication and Tor events would cross the network; use the pod's 127.0.0.1"
            );
        }
    }
}

/// SIGTERM and Ctrl-C stop the exporter; SIGHUP is logged and ignored (there is no
/// configuration to reload, and a sidecar must not die because a terminal closed).
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns at SIGTERM or SIGINT.
    async fn terminate(&mut self) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP ignored: relaywatch has no configuration to reload");
                }
            }
        }
    }
}
