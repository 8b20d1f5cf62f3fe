//! A peer's session: accepting inbound connections, the hello handshake and admission into the
//! peer set, the traffic frames, and the orderly close that keeps the kernel's byte counts
//! equal to ours.

use super::*;

impl Node {
    /// Accepts inbound connections until the listener fails.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    Meters::mark(&self.meters.serves);
                    tokio::spawn(Arc::clone(&self).run_connection(
                        stream,
                        Direction::Inbound,
                        None,
                        None,
                        Arc::new(Counters::default()),
                    ));
                }
                Err(error) => {
                    warn!("Accept error", "err" => error);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            public_key: self.local_record.id.to_hex(),
            name: self.config.name.clone(),
            caps: vec!["eth/68".into(), "eth/69".into()],
        }
    }

    /// Handshake, admission checks, session; records the connection from open to close.
    pub(super) async fn run_connection(
        self: Arc<Self>,
        stream: TcpStream,
        direction: Direction,
        transport: Option<Transport>,
        dialed: Option<NodeRecord>,
        counters: Arc<Counters>,
    ) {
        let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Connection {
            id: self.next_conn_id.fetch_add(1, Ordering::Relaxed),
            inbound: direction == Direction::Inbound,
            transport,
            local,
            remote,
            counters,
            opened_unix_ms: unix_ms(),
            state: Mutex::new(ConnState::default()),
        });
        self.ledger.lock().unwrap().push(Arc::clone(&conn));
        let (mut reader, mut writer) = stream.into_split();
        let end_reason = match self
            .handshake_and_admit(&conn, &mut reader, &mut writer, direction, dialed)
            .await
        {
            Err(reason) => reason,
            Ok((id, disconnect)) => {
                let reason = session(
                    &mut reader,
                    &mut writer,
                    &conn.counters,
                    disconnect,
                    self.config.msg_interval,
                    self.config.msg_size,
                    &self.traffic_paused,
                )
                .await;
                self.drop_peer(id, &conn);
                reason
            }
        };
        drain(&mut reader, &mut writer, &conn.counters).await;
        drop((reader, writer));
        let mut state = conn.state.lock().unwrap();
        state.closed_unix_ms = Some(unix_ms());
        state.end_reason = Some(end_reason);
    }

    async fn handshake_and_admit(
        &self,
        conn: &Connection,
        reader: &mut tokio::net::tcp::OwnedReadHalf,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        direction: Direction,
        dialed: Option<NodeRecord>,
    ) -> Result<(NodeId, watch::Receiver<Option<DiscReason>>), String> {
        let exchange = async {
            wire::write_counted(writer, &wire::encode_hello(&self.hello()), &conn.counters).await?;
            wire::read_frame(reader, &conn.counters).await
        };
        let hello = match tokio::time::timeout(wire::HANDSHAKE_TIMEOUT, exchange).await {
            Err(_) => return Err("handshake timeout".into()),
            Ok(Err(error)) => return Err(format!("handshake failed: {error}")),
            Ok(Ok(Frame::Hello(hello))) => hello,
            Ok(Ok(Frame::Disconnect(reason))) => {
                return Err(format!(
                    "remote disconnected during handshake: reason {reason}"
                ))
            }
            Ok(Ok(Frame::Traffic(_))) => return Err("traffic before hello".into()),
        };
        let remote_key = PublicId::from_hex(&hello.public_key)
            .map_err(|error| format!("bad remote key: {error}"))?;
        let id = remote_key.node_id();
        let reject = |reason: DiscReason| async move {
            let _ =
                wire::write_counted(writer, &wire::encode_disconnect(reason), &conn.counters).await;
            Err(format!("rejected: {reason:?}"))
        };
        if let Some(record) = &dialed {
            if record.id.node_id() != id {
                return reject(DiscReason::UnexpectedIdentity).await;
            }
        }
        let (disconnect_tx, disconnect_rx) = watch::channel(None);
        let admitted = {
            let mut peers = self.peers.lock().unwrap();
            let trusted = self.trusted.lock().unwrap().contains(&id);
            let inbound_count = peers.values().filter(|peer| peer.inbound).count();
            // geth's postHandshakeChecks: trusted peers bypass both limits.
            let full = peers.len() >= self.config.max_peers
                || (direction == Direction::Inbound && inbound_count >= self.max_inbound());
            let verdict = if id == self.local_id {
                Err(DiscReason::SelfConnection)
            } else if !trusted && full {
                Err(DiscReason::TooManyPeers)
            } else if peers.contains_key(&id) {
                Err(DiscReason::AlreadyConnected)
            } else {
                Ok(())
            };
            verdict.map(|()| {
                let info = self.peer_info(conn, &hello, &remote_key, direction, dialed.as_ref());
                peers.insert(
                    id,
                    PeerEntry {
                        info,
                        conn_id: conn.id,
                        inbound: direction == Direction::Inbound,
                        disconnect: disconnect_tx,
                    },
                );
            })
        };
        if let Err(reason) = admitted {
            return reject(reason).await;
        }
        {
            let mut state = conn.state.lock().unwrap();
            state.peer_id = Some(hex::encode(id));
            state.became_peer = true;
        }
        if direction == Direction::Inbound {
            Meters::mark(&self.meters.serves_success);
        } else {
            Meters::mark(&self.meters.dials_success);
        }
        info!("Adding p2p peer", "peercount" => self.peers.lock().unwrap().len(), "id" => hex::encode(&id[..8]),
              "conn" => if direction == Direction::Inbound { "inbound" } else { "dyndial" }, "addr" => conn.remote, "name" => hello.name);
        Ok((id, disconnect_rx))
    }

    fn drop_peer(&self, id: NodeId, conn: &Connection) {
        let removed = {
            let mut peers = self.peers.lock().unwrap();
            match peers.get(&id) {
                Some(peer) if peer.conn_id == conn.id => peers.remove(&id),
                _ => None,
            }
        };
        if let Some(peer) = removed {
            let lifetime_ms = unix_ms().saturating_sub(conn.opened_unix_ms);
            if lifetime_ms >= 60_000 {
                Meters::mark(if peer.inbound {
                    &self.meters.serves_success_1min
                } else {
                    &self.meters.dials_success_1min
                });
            }
            info!("Removing p2p peer", "id" => hex::encode(&id[..8]), "duration_ms" => lifetime_ms);
            self.peer_removed.notify_waiters();
        }
    }
}

/// Closes our side with a FIN and reads until the peer closes too (bounded), so that no byte
/// is left unread in the receive buffer: unread bytes would turn the close into an RST and
/// make the kernel's byte counts differ from ours.
async fn drain(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    counters: &Counters,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = writer.shutdown().await;
    let mut buf = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            counters.received.fetch_add(n as u64, Ordering::Relaxed);
        }
    })
    .await;
}

/// Exchanges traffic frames until either side ends; returns why it ended.
async fn session(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    counters: &Counters,
    mut disconnect: watch::Receiver<Option<DiscReason>>,
    interval: Option<Duration>,
    msg_size: usize,
    paused: &std::sync::atomic::AtomicBool,
) -> String {
    let read_side = async {
        loop {
            match wire::read_frame(reader, counters).await {
                Ok(Frame::Traffic(_)) => {}
                Ok(Frame::Disconnect(reason)) => {
                    return format!("remote disconnect: reason {reason}")
                }
                Ok(Frame::Hello(_)) => return "protocol error: second hello".to_string(),
                Err(error) => return format!("read: {error}"),
            }
        }
    };
    let write_side = async {
        let traffic = wire::encode_traffic(msg_size);
        let mut ticker = interval.map(tokio::time::interval);
        loop {
            let tick = async {
                match ticker.as_mut() {
                    Some(ticker) => {
                        ticker.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tick => {
                    if paused.load(Ordering::Relaxed) {
                        continue;
                    }
                    if let Err(error) = wire::write_counted(writer, &traffic, counters).await {
                        return format!("write: {error}");
                    }
                }
                changed = disconnect.changed() => {
                    let reason = changed.ok().and_then(|()| *disconnect.borrow()).unwrap_or(DiscReason::Requested);
                    let _ = wire::write_counted(writer, &wire::encode_disconnect(reason), counters).await;
                    return format!("local disconnect: {reason:?}");
                }
            }
        }
    };
    tokio::select! {
        reason = read_side => reason,
        reason = write_side => reason,
    }
}
