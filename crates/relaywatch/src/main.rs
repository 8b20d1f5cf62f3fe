//! relaywatch: the Tor-aware monitoring sidecar for gethrelay pods (subcommands arrive with later issues).

use clap::Parser;

/// Tor-aware monitoring for gethrelay: peers, traffic and Tor dials, measured from outside the relay.
#[derive(Debug, Parser)]
#[command(name = "relaywatch", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("relaywatch: no subcommand yet; see `relaywatch --help`");
    std::process::exit(2);
}
