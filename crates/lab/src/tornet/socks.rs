//! A raw SOCKS5 CONNECT that keeps tor's reply code (ExtendedErrors: 0xF0-0xF7).
//!
//! Tests need the exact code (e.g. 0xF0 "descriptor not found"), which SOCKS libraries hide.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Why a SOCKS5 CONNECT did not give a connected stream.
#[derive(Debug)]
pub enum SocksError {
    /// The proxy answered with this non-zero reply code.
    Reply(u8),
    /// No reply within the timeout (tor keeps trying for up to `SocksTimeout`, 120 s by default).
    Timeout,
    /// The proxy spoke something else than SOCKS5.
    Protocol(String),
    Io(io::Error),
}

impl SocksError {
    pub fn reply_code(&self) -> Option<u8> {
        match self {
            SocksError::Reply(code) => Some(*code),
            _ => None,
        }
    }
}

/// The meaning of a SOCKS5 reply code, including tor's onion extensions (socks-extensions.txt).
pub fn reply_meaning(code: u8) -> &'static str {
    match code {
        0x00 => "succeeded",
        0x01 => "general failure",
        0x02 => "not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired (tor: timed out)",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        0xF0 => "onion service descriptor can not be found",
        0xF1 => "onion service descriptor is invalid",
        0xF2 => "onion service introduction failed",
        0xF3 => "onion service rendezvous failed",
        0xF4 => "onion service missing client authorization",
        0xF5 => "onion service wrong client authorization",
        0xF6 => "onion service invalid address",
        0xF7 => "onion service introduction timed out",
        _ => "unknown reply code",
    }
}

impl fmt::Display for SocksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocksError::Reply(code) => {
                write!(f, "SOCKS reply 0x{code:02X} ({})", reply_meaning(*code))
            }
            SocksError::Timeout => write!(f, "no SOCKS reply before the timeout"),
            SocksError::Protocol(what) => write!(f, "SOCKS protocol error: {what}"),
            SocksError::Io(error) => write!(f, "SOCKS connection failed: {error}"),
        }
    }
}

impl std::error::Error for SocksError {}

impl From<io::Error> for SocksError {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => SocksError::Timeout,
            _ => SocksError::Io(error),
        }
    }
}

/// CONNECTs to `host:port` through the SOCKS5 proxy at `socks`, without authentication,
/// with the hostname sent to the proxy (so tor resolves `.onion` itself).
///
/// `timeout` bounds the whole handshake; the returned stream has no timeouts set.
pub fn socks5_connect(
    socks: SocketAddr,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, SocksError> {
    let host_len = u8::try_from(host.len())
        .map_err(|_| SocksError::Protocol(format!("hostname longer than 255 bytes: {host}")))?;
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&socks, timeout)?;
    let set_timeouts = |stream: &TcpStream| -> Result<(), SocksError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(SocksError::Timeout);
        }
        stream.set_read_timeout(Some(remaining))?;
        stream.set_write_timeout(Some(remaining))?;
        Ok(())
    };

    set_timeouts(&stream)?;
    stream.write_all(&[0x05, 0x01, 0x00])?;
    let mut method = [0u8; 2];
    read_exact(&mut stream, &mut method)?;
    if method != [0x05, 0x00] {
        return Err(SocksError::Protocol(format!(
            "proxy refused the no-auth method: {method:02X?}"
        )));
    }

    let mut request = vec![0x05, 0x01, 0x00, 0x03, host_len];
    request.extend_from_slice(host.as_bytes());
    request.extend_from_slice(&port.to_be_bytes());
    set_timeouts(&stream)?;
    stream.write_all(&request)?;

    let mut header = [0u8; 4];
    set_timeouts(&stream)?;
    read_exact(&mut stream, &mut header)?;
    if header[0] != 0x05 {
        return Err(SocksError::Protocol(format!(
            "reply version {:#04x}",
            header[0]
        )));
    }
    if header[1] != 0x00 {
        return Err(SocksError::Reply(header[1]));
    }
    // Skip the bound address, whose length depends on its type.
    let address_len = match header[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => {
            let mut len = [0u8; 1];
            read_exact(&mut stream, &mut len)?;
            usize::from(len[0])
        }
        other => {
            return Err(SocksError::Protocol(format!(
                "unknown address type {other:#04x}"
            )))
        }
    };
    let mut bound = vec![0u8; address_len + 2];
    read_exact(&mut stream, &mut bound)?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    Ok(stream)
}

/// Like `read_exact`, but an early EOF is a protocol error rather than an IO error.
fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), SocksError> {
    match stream.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => Err(SocksError::Protocol(
            "the proxy closed the connection during the handshake".into(),
        )),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot fake proxy that checks the request and answers with `reply`.
    fn fake_proxy(reply: Vec<u8>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut greeting = [0u8; 3];
            conn.read_exact(&mut greeting).unwrap();
            assert_eq!(greeting, [5, 1, 0]);
            conn.write_all(&[5, 0]).unwrap();
            let mut head = [0u8; 5];
            conn.read_exact(&mut head).unwrap();
            assert_eq!(&head[..4], &[5, 1, 0, 3]);
            let mut rest = vec![0u8; usize::from(head[4]) + 2];
            conn.read_exact(&mut rest).unwrap();
            assert_eq!(&rest[..head[4] as usize], b"example.onion");
            assert_eq!(&rest[head[4] as usize..], &80u16.to_be_bytes());
            conn.write_all(&reply).unwrap();
            let mut buf = [0u8; 4];
            if conn.read_exact(&mut buf).is_ok() {
                conn.write_all(&buf).unwrap();
            }
        });
        addr
    }

    #[test]
    fn success_then_data() {
        let proxy = fake_proxy(vec![5, 0, 0, 1, 127, 0, 0, 1, 0, 80]);
        let mut stream =
            socks5_connect(proxy, "example.onion", 80, Duration::from_secs(5)).unwrap();
        stream.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[test]
    fn extended_error_code_is_kept() {
        let proxy = fake_proxy(vec![5, 0xF0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let error = socks5_connect(proxy, "example.onion", 80, Duration::from_secs(5)).unwrap_err();
        assert_eq!(error.reply_code(), Some(0xF0));
        assert_eq!(
            error.to_string(),
            "SOCKS reply 0xF0 (onion service descriptor can not be found)"
        );
    }

    #[test]
    fn silence_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let error =
            socks5_connect(addr, "example.onion", 80, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(error, SocksError::Timeout), "{error:?}");
        drop(listener);
    }
}
