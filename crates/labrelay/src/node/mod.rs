//! The p2p server: the peer set and static-node dialing; the sessions themselves are in `session.rs`.
//!
//! Limits follow geth's p2p.Server: at most `maxpeers` peers, a third of them dialed
//! (`maxpeers / 3`), the rest inbound; static nodes are re-dialed no sooner than the redial
//! delay after the previous attempt started (geth's dial history, 35 s).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::cli::Config;
use crate::dialer::{self, Plan, Transport};
use crate::identity::{NodeKey, NodeRecord, PublicId};
use crate::log::{debug, info, warn};
use crate::metrics::{Meters, PeerGauges};
use crate::wire::{self, Counters, DiscReason, Frame, Hello};

mod session;

pub type NodeId = [u8; 32];

/// One TCP connection, kept after it closes: the ground truth that tests compare against.
#[derive(Debug)]
pub struct Connection {
    pub id: u64,
    pub inbound: bool,
    /// How an outbound connection was made; `None` for inbound (the relay cannot know).
    pub transport: Option<Transport>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub counters: Arc<Counters>,
    pub opened_unix_ms: u64,
    state: Mutex<ConnState>,
}

#[derive(Debug, Default, Clone)]
struct ConnState {
    peer_id: Option<String>,
    became_peer: bool,
    closed_unix_ms: Option<u64>,
    end_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Inbound,
    Outbound { is_static: bool },
}

struct PeerEntry {
    info: Value,
    conn_id: u64,
    inbound: bool,
    disconnect: watch::Sender<Option<DiscReason>>,
}

struct StaticEntry {
    url: String,
    task: JoinHandle<()>,
}

/// The running relay.
pub struct Node {
    config: Config,
    local_record: NodeRecord,
    local_id: NodeId,
    pub meters: Meters,
    peers: Mutex<HashMap<NodeId, PeerEntry>>,
    statics: Mutex<HashMap<NodeId, StaticEntry>>,
    trusted: Mutex<HashSet<NodeId>>,
    peer_removed: Notify,
    ledger: Mutex<Vec<Arc<Connection>>>,
    next_conn_id: AtomicU64,
    started: Instant,
    /// Lab control: while set, sessions send no traffic frames (tests compare totals at rest).
    traffic_paused: Arc<std::sync::atomic::AtomicBool>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl Node {
    pub fn new(config: Config, key: &NodeKey, local_record: NodeRecord) -> Arc<Node> {
        let local_id = key.public_id().node_id();
        Arc::new(Node {
            config,
            local_record,
            local_id,
            meters: Meters::default(),
            peers: Mutex::new(HashMap::new()),
            statics: Mutex::new(HashMap::new()),
            trusted: Mutex::new(HashSet::new()),
            peer_removed: Notify::new(),
            ledger: Mutex::new(Vec::new()),
            next_conn_id: AtomicU64::new(1),
            started: Instant::now(),
            traffic_paused: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn local_record(&self) -> &NodeRecord {
        &self.local_record
    }

    fn max_dialed(&self) -> usize {
        self.config.max_peers / 3
    }

    fn max_inbound(&self) -> usize {
        self.config.max_peers - self.max_dialed()
    }

    pub fn peer_gauges(&self) -> PeerGauges {
        let peers = self.peers.lock().unwrap();
        let inbound = peers.values().filter(|peer| peer.inbound).count() as u64;
        PeerGauges {
            total: peers.len() as u64,
            inbound,
            outbound: peers.len() as u64 - inbound,
        }
    }

    /// `admin_peers`: geth's []PeerInfo, ordered by node id as geth's PeersInfo sorts them.
    pub fn peers_info(&self) -> Vec<Value> {
        let peers = self.peers.lock().unwrap();
        let trusted = self.trusted.lock().unwrap();
        let mut ids: Vec<&NodeId> = peers.keys().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let mut info = peers[id].info.clone();
                info["network"]["trusted"] = json!(trusted.contains(id));
                info
            })
            .collect()
    }

    /// Starts dialing every static node from the command line.
    pub fn start_static_dials(self: &Arc<Self>) {
        for record in self.config.static_nodes.clone() {
            self.add_static(record);
        }
    }

    /// `admin_addPeer`: keep this node connected (a no-op if it is already static).
    pub fn add_static(self: &Arc<Self>, record: NodeRecord) {
        let id = record.id.node_id();
        if id == self.local_id {
            return;
        }
        let mut statics = self.statics.lock().unwrap();
        if statics.contains_key(&id) {
            return;
        }
        let node = Arc::clone(self);
        let url = record.url_v4();
        let task = tokio::spawn(async move { node.static_dial_loop(record).await });
        statics.insert(id, StaticEntry { url, task });
    }

    /// `admin_removePeer`: forget the static node and drop the peer if connected.
    pub fn remove_peer(&self, id: NodeId) {
        if let Some(entry) = self.statics.lock().unwrap().remove(&id) {
            debug!("Removed static node", "url" => entry.url);
            entry.task.abort();
        }
        if let Some(peer) = self.peers.lock().unwrap().get(&id) {
            let _ = peer.disconnect.send(Some(DiscReason::Requested));
        }
    }

    pub fn add_trusted(&self, id: NodeId) {
        self.trusted.lock().unwrap().insert(id);
    }

    pub fn remove_trusted(&self, id: NodeId) {
        self.trusted.lock().unwrap().remove(&id);
    }

    fn is_connected(&self, id: &NodeId) -> bool {
        self.peers.lock().unwrap().contains_key(id)
    }

    fn outbound_count(&self) -> usize {
        self.peers
            .lock()
            .unwrap()
            .values()
            .filter(|peer| !peer.inbound)
            .count()
    }

    async fn static_dial_loop(self: Arc<Self>, record: NodeRecord) {
        let id = record.id.node_id();
        let mut last_attempt: Option<Instant> = None;
        loop {
            // Wait while connected; a removal wakes every waiter and each one re-checks.
            loop {
                let removed = self.peer_removed.notified();
                tokio::pin!(removed);
                removed.as_mut().enable();
                if !self.is_connected(&id) {
                    break;
                }
                removed.await;
            }
            if let Some(last) = last_attempt {
                tokio::time::sleep_until((last + self.config.redial).into()).await;
            }
            if self.is_connected(&id) {
                continue;
            }
            if self.outbound_count() >= self.max_dialed() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            last_attempt = Some(Instant::now());
            Arc::clone(&self).dial(&record).await;
        }
    }

    /// One dial task: TorDialer decision, transport, then the session in its own task.
    async fn dial(self: Arc<Self>, record: &NodeRecord) {
        Meters::mark(&self.meters.dials);
        let dest = hex::encode(record.id.node_id());
        let counters = Arc::new(Counters::default());
        let result: std::io::Result<(TcpStream, Transport)> = match dialer::plan(
            self.config.dial_mode,
            record,
        ) {
            Plan::Reject(text) => {
                if text.starts_with("only-onion") {
                    info!("TorDialer rejecting clearnet-only peer in only-onion mode", "id" => dest);
                }
                Err(std::io::Error::other(text))
            }
            Plan::Clearnet(endpoint) => dialer::dial_tcp(endpoint, self.config.dial_source)
                .await
                .map(|stream| (stream, Transport::Clearnet)),
            Plan::Tor {
                proxy,
                onion,
                port,
                fallback,
                only_onion,
            } => {
                info!("TorDialer attempting Tor connection", "id" => dest, "onion" => onion);
                match dialer::dial_socks5(proxy, &onion, port, &counters).await {
                    Ok(stream) => {
                        info!("TorDialer Tor connection successful", "id" => dest);
                        Ok((stream, Transport::Tor))
                    }
                    Err(error) => {
                        info!("TorDialer SOCKS5 dial failed", "id" => dest, "error" => error);
                        match fallback {
                            Some(endpoint) => {
                                info!("TorDialer falling back to clearnet", "id" => dest, "addr" => endpoint);
                                // The failed proxy socket's bytes belong to a closed socket.
                                counters.sent.store(0, Ordering::Relaxed);
                                counters.received.store(0, Ordering::Relaxed);
                                dialer::dial_tcp(endpoint, self.config.dial_source)
                                    .await
                                    .map(|stream| (stream, Transport::Clearnet))
                            }
                            None if only_onion => Err(std::io::Error::other(format!(
                                "failed to connect via Tor in only-onion mode: {error}"
                            ))),
                            None => Err(std::io::Error::other(format!(
                                "Tor connection failed and no clearnet fallback available: {error}"
                            ))),
                        }
                    }
                }
            }
        };
        match result {
            Ok((stream, transport)) => {
                let is_static = self
                    .statics
                    .lock()
                    .unwrap()
                    .contains_key(&record.id.node_id());
                tokio::spawn(Arc::clone(&self).run_connection(
                    stream,
                    Direction::Outbound { is_static },
                    Some(transport),
                    Some(record.clone()),
                    counters,
                ));
            }
            Err(error) => {
                Meters::mark(&self.meters.dials_error_connection);
                debug!("Dial error", "id" => dest, "err" => error);
            }
        }
    }

    /// geth's PeerInfo; an inbound peer's enode is built from the connection (nodeFromConn).
    fn peer_info(
        &self,
        conn: &Connection,
        hello: &Hello,
        remote_key: &PublicId,
        direction: Direction,
        dialed: Option<&NodeRecord>,
    ) -> Value {
        let record = match dialed {
            Some(record) => record.clone(),
            // geth's nodeFromConn: the connection's remote IP and port, seq 0, no ENR.
            None => NodeRecord {
                id: *remote_key,
                ip: Some(conn.remote.ip()),
                tcp: Some(conn.remote.port()),
                udp: Some(conn.remote.port()),
                onion3: None,
                enr: None,
                seq: 0,
            },
        };
        let mut info = json!({
            "enode": record.url_v4(),
            "id": hex::encode(remote_key.node_id()),
            "name": hello.name,
            "caps": hello.caps,
            "network": {
                "localAddress": conn.local.to_string(),
                "remoteAddress": conn.remote.to_string(),
                "inbound": direction == Direction::Inbound,
                "trusted": false,
                "static": matches!(direction, Direction::Outbound { is_static: true }),
            },
            "protocols": { "eth": { "network": 1, "relay": true } },
        });
        if record.seq > 0 {
            if let Some(enr) = &record.enr {
                info["enr"] = json!(enr);
            }
        }
        info
    }

    /// `labrelay_connections`: every connection since start with its exact byte counts.
    pub fn connections(&self) -> Vec<ConnectionReport> {
        self.ledger
            .lock()
            .unwrap()
            .iter()
            .map(|conn| {
                let state = conn.state.lock().unwrap().clone();
                ConnectionReport {
                    id: conn.id,
                    inbound: conn.inbound,
                    transport: conn.transport,
                    local_address: conn.local.to_string(),
                    remote_address: conn.remote.to_string(),
                    peer_id: state.peer_id,
                    became_peer: state.became_peer,
                    open: state.closed_unix_ms.is_none(),
                    opened_unix_ms: conn.opened_unix_ms,
                    closed_unix_ms: state.closed_unix_ms,
                    end_reason: state.end_reason,
                    bytes_sent: conn.counters.sent(),
                    bytes_received: conn.counters.received(),
                }
            })
            .collect()
    }

    /// `labrelay_setTraffic`: pause or resume the traffic frames of every session.
    pub fn set_traffic(&self, enabled: bool) {
        self.traffic_paused.store(!enabled, Ordering::Relaxed);
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Ground truth about one connection (lab extension, not part of gethrelay's API).
#[derive(Debug, Serialize)]
pub struct ConnectionReport {
    pub id: u64,
    pub inbound: bool,
    pub transport: Option<Transport>,
    pub local_address: String,
    pub remote_address: String,
    pub peer_id: Option<String>,
    pub became_peer: bool,
    pub open: bool,
    pub opened_unix_ms: u64,
    pub closed_unix_ms: Option<u64>,
    pub end_reason: Option<String>,
    /// Every byte written to the socket, SOCKS negotiation included.
    pub bytes_sent: u64,
    /// Every byte read from the socket, SOCKS replies included.
    pub bytes_received: u64,
}
