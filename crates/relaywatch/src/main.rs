//! relaywatch: the Tor-aware monitoring sidecar for gethrelay pods.

use std::process::ExitCode;

use clap::Parser;

use relaywatch::cli::{self, Cli, Command, ExporterArgs};
use relaywatch::{exporter, http, log};

fn main() -> ExitCode {
    exporter::process_start_time();
    let cli = Cli::parse();
    match cli.command {
        Command::Exporter(args) => run_exporter(args),
    }
}

fn run_exporter(args: ExporterArgs) -> ExitCode {
    if let Err(error) = cli::check_admin_url(&args.relay_admin_url) {
        eprintln!("relaywatch: error: {error}");
        return ExitCode::from(2);
    }
    let tor_control = match args.tor_control() {
        Ok(tor_control) => tor_control,
        Err(error) => {
            eprintln!("relaywatch: error: {error}");
            return ExitCode::from(2);
        }
    };
    log::init(args.log_level, args.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("relaywatch: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match runtime.block_on(tokio::net::TcpListener::bind(args.listen)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "relaywatch: error: cannot listen on {} ({error}); choose another address with --listen",
                args.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let exporter = exporter::Exporter::new(&args, tor_control);
    exporter.start();
    tracing::info!(
        "relaywatch {} exporter: mode {:?}{}, serving http://{}/metrics",
        env!("CARGO_PKG_VERSION"),
        args.mode,
        if args.enforce { ", enforcing" } else { "" },
        args.listen
    );
    runtime.block_on(async move {
        let server = axum::serve(listener, http::router(exporter));
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            result = server => if let Err(error) = result { tracing::warn!("http server stopped: {error}") },
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match terminate.as_mut() { Some(signal) => { signal.recv().await; } None => std::future::pending().await } } => {},
        }
    });
    tracing::info!("stopping");
    ExitCode::SUCCESS
}
