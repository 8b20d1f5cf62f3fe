//! labrelay: gethrelay's observable surface for tests and the lab (see the crate's README section).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use labrelay::cli::Cli;
use labrelay::identity::{local_record, NodeKey};
use labrelay::node::Node;
use labrelay::{http, log};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("Fatal: {error}");
            return ExitCode::from(2);
        }
    };
    log::set_verbosity(config.verbosity);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Fatal: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Fatal: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen for {what} on {addr}: {error}"))
}

async fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    if let Err(error) = axum::serve(listener, router).await {
        eprintln!("http server stopped: {error}");
    }
}

async fn run(config: labrelay::cli::Config) -> anyhow::Result<()> {
    let key = match &config.nodekey_hex {
        Some(hex) => NodeKey::from_hex(hex)
            .map_err(|error| anyhow::anyhow!("invalid --lab.nodekeyhex: {error}"))?,
        None => NodeKey::generate(),
    };
    let p2p = bind("P2P connections (--port)", config.listen).await?;
    let port = p2p.local_addr()?.port();
    let advertised_ip = config
        .dial_source
        .or(Some(std::net::Ipv4Addr::LOCALHOST.into()));
    let record = local_record(
        &key,
        1,
        advertised_ip,
        Some(port),
        Some(port),
        config.onion.as_deref(),
    )
    .map_err(|error| anyhow::anyhow!("cannot build the node record: {error}"))?;
    let rpc_proxy = bind("the RPC proxy (--http.addr/--http.port)", config.rpc_proxy).await?;
    let admin = match config.admin {
        Some(addr) => Some(bind("the admin API (--admin.addr/--admin.port)", addr).await?),
        None => None,
    };
    let pprof = match config.pprof {
        Some(addr) => Some(bind("pprof (--pprof.addr/--pprof.port)", addr).await?),
        None => None,
    };
    let node = Node::new(config, &key, record);
    log::emit(
        3,
        "Started P2P networking",
        &[("self", &node.local_record().url_v4())],
    );
    tokio::spawn(serve(rpc_proxy, http::proxy_router(Arc::clone(&node))));
    if let Some(listener) = admin {
        let addr = listener.local_addr()?;
        log::emit(
            3,
            "HTTP server started",
            &[("endpoint", &addr), ("modules", &"admin")],
        );
        tokio::spawn(serve(listener, http::admin_router(Arc::clone(&node))));
    }
    if let Some(listener) = pprof {
        let addr = listener.local_addr()?;
        log::emit(
            3,
            "Starting pprof server",
            &[("addr", &format!("http://{addr}/debug/pprof"))],
        );
        tokio::spawn(serve(listener, http::pprof_router(Arc::clone(&node))));
    }
    tokio::spawn(Arc::clone(&node).accept_loop(p2p));
    node.start_static_dials();

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    log::emit(3, "Got interrupt, shutting down...", &[]);
    Ok(())
}
