//! The lab's peer wire protocol: length-prefixed frames (hello, traffic, disconnect).
//!
//! This is deliberately not RLPx: no observer of gethrelay (admin API, kernel socket counters,
//! Tor) can see inside the encrypted stream, so a simple framing reproduces everything they
//! can see. Every byte crossing a socket is counted here, which is the ground truth that the
//! exporter's kernel counters are checked against.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload a frame may carry; larger frames are a protocol error.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// How long the hello exchange may take (geth's handshakeTimeout is 5 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

const KIND_HELLO: u8 = 0;
const KIND_TRAFFIC: u8 = 1;
const KIND_DISCONNECT: u8 = 2;

/// The first frame on every connection, both directions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// Uncompressed public key, 128 hex characters (the enode id).
    pub public_key: String,
    pub name: String,
    pub caps: Vec<String>,
}

/// Why a peer is being dropped; the numbers are geth's DiscReason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscReason {
    Requested = 0x00,
    TooManyPeers = 0x04,
    AlreadyConnected = 0x05,
    UnexpectedIdentity = 0x09,
    SelfConnection = 0x0a,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    Traffic(usize),
    Disconnect(u8),
}

/// Byte counters of one socket, shared between its reader and writer.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl Counters {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Writes `bytes` fully and counts them as sent.
pub async fn write_counted<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    counters: &Counters,
) -> std::io::Result<()> {
    // write_all may have written part of the buffer before failing; count per write call.
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = writer.write(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        rest = &rest[n..];
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes and counts them as received.
pub async fn read_counted<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
    counters: &Counters,
) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        counters.received.fetch_add(n as u64, Ordering::Relaxed);
        filled += n;
    }
    Ok(())
}

fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(payload);
    frame
}

pub fn encode_hello(hello: &Hello) -> Vec<u8> {
    encode(
        KIND_HELLO,
        &serde_json::to_vec(hello).expect("hello serializes"),
    )
}

pub fn encode_traffic(size: usize) -> Vec<u8> {
    encode(KIND_TRAFFIC, &vec![0x5a; size])
}

pub fn encode_disconnect(reason: DiscReason) -> Vec<u8> {
    encode(KIND_DISCONNECT, &[reason as u8])
}

/// Reads one frame; malformed frames are errors that end the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    counters: &Counters,
) -> std::io::Result<Frame> {
    let mut header = [0u8; 5];
    read_counted(reader, &mut header, counters).await?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(invalid(format!("frame of {len} bytes exceeds the limit")));
    }
    let mut payload = vec![0u8; len];
    read_counted(reader, &mut payload, counters).await?;
    match header[4] {
        KIND_HELLO => serde_json::from_slice(&payload)
            .map(Frame::Hello)
            .map_err(|e| invalid(format!("bad hello: {e}"))),
        KIND_TRAFFIC => Ok(Frame::Traffic(len)),
        KIND_DISCONNECT => Ok(Frame::Disconnect(payload.first().copied().unwrap_or(0x10))),
        other => Err(invalid(format!("unknown frame kind {other}"))),
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bytes_are_counted() {
        let hello = Hello {
            public_key: "ab".repeat(64),
            name: "labrelay/x".into(),
            caps: vec!["eth/68".into()],
        };
        let mut wire = Vec::new();
        let sent = Counters::default();
        write_counted(&mut wire, &encode_hello(&hello), &sent)
            .await
            .unwrap();
        write_counted(&mut wire, &encode_traffic(100), &sent)
            .await
            .unwrap();
        write_counted(
            &mut wire,
            &encode_disconnect(DiscReason::TooManyPeers),
            &sent,
        )
        .await
        .unwrap();
        assert_eq!(sent.sent(), wire.len() as u64);

        let received = Counters::default();
        let mut reader = &wire[..];
        assert_eq!(
            read_frame(&mut reader, &received).await.unwrap(),
            Frame::Hello(hello)
        );
        assert_eq!(
            read_frame(&mut reader, &received).await.unwrap(),
            Frame::Traffic(100)
        );
        assert_eq!(
            read_frame(&mut reader, &received).await.unwrap(),
            Frame::Disconnect(4)
        );
        assert_eq!(received.received(), wire.len() as u64);
        let eof = read_frame(&mut reader, &received).await.unwrap_err();
        assert_eq!(eof.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn oversized_and_unknown_frames_are_rejected() {
        let counters = Counters::default();
        let mut huge = &[0xff, 0xff, 0xff, 0xff, 1][..];
        assert!(read_frame(&mut huge, &counters).await.is_err());
        let mut unknown = &[0, 0, 0, 0, 9][..];
        let error = read_frame(&mut unknown, &counters).await.unwrap_err();
        assert!(error.to_string().contains("unknown frame kind 9"));
    }
}
