//! Authentication values: PROTOCOLINFO (§3.21), AUTHCHALLENGE (§3.24), SAFECOOKIE hashes
//! and the AUTHENTICATE command lines (§3.5). Computes and formats only; reading the cookie
//! file and talking to tor is the caller's job.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::args::{quote, Args};
use crate::framing::Message;
use crate::vocab::AuthMethod;

type HmacSha256 = Hmac<Sha256>;

/// §3.24: key of the hash tor sends to prove it knows the cookie.
pub const SERVER_TO_CONTROLLER_KEY: &[u8] =
    b"Tor safe cookie authentication server-to-controller hash";
/// §3.24: key of the hash the controller sends in AUTHENTICATE.
pub const CONTROLLER_TO_SERVER_KEY: &[u8] =
    b"Tor safe cookie authentication controller-to-server hash";
/// §3.21: "All authentication cookies are 32 bytes long."
pub const COOKIE_LEN: usize = 32;
/// §3.24: "ServerNonce MUST be 32 bytes long."
pub const NONCE_LEN: usize = 32;

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Tor answered with an error status (e.g. `515 Authentication failed`).
    Refused { status: u16, text: String },
    /// The reply lacks a field or has one of the wrong shape.
    BadReply(String),
    /// A cookie file that is not exactly 32 bytes must not be used (§3.21).
    CookieLength(usize),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Refused { status, text } => write!(f, "tor answered {status} {text}"),
            AuthError::BadReply(what) => write!(f, "unreadable reply: {what}"),
            AuthError::CookieLength(len) => write!(
                f,
                "the cookie file holds {len} bytes, but tor's cookies are {COOKIE_LEN} bytes"
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// What PROTOCOLINFO says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolInfo {
    pub protocol_version: Option<String>,
    pub auth_methods: Vec<AuthMethod>,
    /// Present iff COOKIE or SAFECOOKIE is offered.
    pub cookie_file: Option<String>,
    pub tor_version: Option<String>,
}

impl ProtocolInfo {
    pub fn offers(&self, method: &AuthMethod) -> bool {
        self.auth_methods.contains(method)
    }
}

fn refused(message: &Message) -> Result<(), AuthError> {
    if message.is_ok() {
        return Ok(());
    }
    Err(AuthError::Refused {
        status: message.status,
        text: message.first_text().chars().take(200).collect(),
    })
}

/// Reads the reply to `PROTOCOLINFO 1`; InfoLines with unknown keywords are ignored.
pub fn parse_protocolinfo(message: &Message) -> Result<ProtocolInfo, AuthError> {
    refused(message)?;
    let mut info = ProtocolInfo {
        protocol_version: None,
        auth_methods: Vec::new(),
        cookie_file: None,
        tor_version: None,
    };
    let mut saw_auth = false;
    for line in &message.lines {
        let (keyword, rest) = line.text.split_once(' ').unwrap_or((&line.text, ""));
        let args = Args::parse(rest);
        match keyword {
            "PROTOCOLINFO" => info.protocol_version = args.pos(0).map(str::to_string),
            "AUTH" => {
                saw_auth = true;
                if let Some(methods) = args.get("METHODS") {
                    info.auth_methods = methods
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(AuthMethod::parse)
                        .collect();
                }
                info.cookie_file = args.get("COOKIEFILE").map(str::to_string);
            }
            "VERSION" => info.tor_version = args.get("Tor").map(str::to_string),
            _ => {}
        }
    }
    if !saw_auth {
        return Err(AuthError::BadReply(
            "PROTOCOLINFO reply has no AUTH line".into(),
        ));
    }
    Ok(info)
}

/// What AUTHCHALLENGE answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChallenge {
    pub server_hash: [u8; 32],
    pub server_nonce: [u8; NONCE_LEN],
}

/// Reads `250 AUTHCHALLENGE SERVERHASH=<64 hex> SERVERNONCE=<64 hex>`.
pub fn parse_authchallenge(message: &Message) -> Result<AuthChallenge, AuthError> {
    refused(message)?;
    let text = message.first_text();
    let rest = text
        .strip_prefix("AUTHCHALLENGE")
        .ok_or_else(|| AuthError::BadReply("reply does not start with AUTHCHALLENGE".into()))?;
    let args = Args::parse(rest);
    let field = |key: &str| -> Result<[u8; 32], AuthError> {
        let value = args
            .get(key)
            .ok_or_else(|| AuthError::BadReply(format!("AUTHCHALLENGE reply lacks {key}")))?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(value, &mut out).map_err(|_| {
            AuthError::BadReply(format!("AUTHCHALLENGE {key} is not 64 hex digits"))
        })?;
        Ok(out)
    };
    Ok(AuthChallenge {
        server_hash: field("SERVERHASH")?,
        server_nonce: field("SERVERNONCE")?,
    })
}

fn hmac(key: &[u8], cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(cookie);
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac
}

/// Checks the cookie length (§3.21) before any hash is computed from it.
pub fn check_cookie(cookie: &[u8]) -> Result<(), AuthError> {
    if cookie.len() == COOKIE_LEN {
        Ok(())
    } else {
        Err(AuthError::CookieLength(cookie.len()))
    }
}

/// HMAC-SHA256("…controller-to-server hash", cookie | client nonce | server nonce): the
/// value to send in AUTHENTICATE after AUTHCHALLENGE.
pub fn safecookie_client_hash(cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> [u8; 32] {
    hmac(CONTROLLER_TO_SERVER_KEY, cookie, client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// HMAC-SHA256("…server-to-controller hash", cookie | client nonce | server nonce): what
/// tor must send as SERVERHASH.
pub fn safecookie_server_hash(cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> [u8; 32] {
    hmac(SERVER_TO_CONTROLLER_KEY, cookie, client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether tor's SERVERHASH proves it knows the cookie (constant-time comparison). A
/// controller must not authenticate when this is false: it would be talking to something
/// that is not the tor owning the cookie.
pub fn verify_safecookie_server_hash(
    cookie: &[u8],
    client_nonce: &[u8],
    challenge: &AuthChallenge,
) -> bool {
    hmac(
        SERVER_TO_CONTROLLER_KEY,
        cookie,
        client_nonce,
        &challenge.server_nonce,
    )
    .verify_slice(&challenge.server_hash)
    .is_ok()
}

/// `AUTHCHALLENGE SAFECOOKIE <hex nonce>` (without CRLF). The nonce should be 32 random
/// bytes from the caller.
pub fn authchallenge_command(client_nonce: &[u8]) -> String {
    format!(
        "AUTHCHALLENGE SAFECOOKIE {}",
        hex::encode_upper(client_nonce)
    )
}

/// `AUTHENTICATE <hex>` for SAFECOOKIE (the client hash) or COOKIE (the cookie itself).
pub fn authenticate_hex_command(secret: &[u8]) -> String {
    format!("AUTHENTICATE {}", hex::encode_upper(secret))
}

/// `AUTHENTICATE "<password>"` for HASHEDPASSWORD (a QuotedString, §3.5).
pub fn authenticate_password_command(password: &str) -> String {
    format!("AUTHENTICATE {}", quote(password))
}

/// `AUTHENTICATE` for NULL.
pub const AUTHENTICATE_NULL: &str = "AUTHENTICATE";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::test_message as message;

    #[test]
    fn protocolinfo_from_the_spec() {
        // control-spec §3.21 / the stem tutorial transcript.
        let info = parse_protocolinfo(&message(
            b"250-PROTOCOLINFO 1\r\n\
              250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/home/user/.tor/control_auth_cookie\"\r\n\
              250-VERSION Tor=\"0.2.5.1-alpha-dev\"\r\n\
              250-FUTURELINE whatever=1\r\n\
              250 OK\r\n",
        ))
        .unwrap();
        assert_eq!(info.protocol_version.as_deref(), Some("1"));
        assert_eq!(
            info.auth_methods,
            [AuthMethod::Cookie, AuthMethod::SafeCookie]
        );
        assert!(info.offers(&AuthMethod::SafeCookie));
        assert!(!info.offers(&AuthMethod::Null));
        assert_eq!(
            info.cookie_file.as_deref(),
            Some("/home/user/.tor/control_auth_cookie")
        );
        assert_eq!(info.tor_version.as_deref(), Some("0.2.5.1-alpha-dev"));
    }

    #[test]
    fn protocolinfo_null_hashed_and_unknown_methods() {
        let info = parse_protocolinfo(&message(
            b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL,HASHEDPASSWORD,FUTURE\r\n250 OK\r\n",
        ))
        .unwrap();
        assert_eq!(
            info.auth_methods,
            [
                AuthMethod::Null,
                AuthMethod::HashedPassword,
                AuthMethod::Other("FUTURE".into())
            ]
        );
        assert_eq!(info.cookie_file, None);
        assert!(matches!(
            parse_protocolinfo(&message(b"250-PROTOCOLINFO 1\r\n250 OK\r\n")),
            Err(AuthError::BadReply(_))
        ));
        assert!(matches!(
            parse_protocolinfo(&message(b"514 Authentication required.\r\n")),
            Err(AuthError::Refused { status: 514, .. })
        ));
    }

    #[test]
    fn escaped_cookie_path() {
        let info = parse_protocolinfo(&message(
            b"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE COOKIEFILE=\"C:\\\\tor \\\"x\\\"\\\\cookie\"\r\n250 OK\r\n",
        ))
        .unwrap();
        assert_eq!(info.cookie_file.as_deref(), Some("C:\\tor \"x\"\\cookie"));
    }

    /// A vector computed independently with Python's hmac module:
    /// `hmac.new(key, bytes(range(32)) + bytes([0xAA]*32) + bytes([0x55]*32), sha256)`.
    #[test]
    fn safecookie_vector() {
        let cookie: Vec<u8> = (0u8..32).collect();
        let client_nonce = [0xAAu8; 32];
        let server_nonce = [0x55u8; 32];
        assert_eq!(
            hex::encode(safecookie_server_hash(
                &cookie,
                &client_nonce,
                &server_nonce
            )),
            SERVER_VECTOR
        );
        assert_eq!(
            hex::encode(safecookie_client_hash(
                &cookie,
                &client_nonce,
                &server_nonce
            )),
            CLIENT_VECTOR
        );
        let challenge = parse_authchallenge(&message(
            format!(
                "250 AUTHCHALLENGE SERVERHASH={} SERVERNONCE={}\r\n",
                SERVER_VECTOR.to_uppercase(),
                hex::encode_upper(server_nonce)
            )
            .as_bytes(),
        ))
        .unwrap();
        assert!(verify_safecookie_server_hash(
            &cookie,
            &client_nonce,
            &challenge
        ));
        let mut forged = challenge.clone();
        forged.server_hash[0] ^= 1;
        assert!(!verify_safecookie_server_hash(
            &cookie,
            &client_nonce,
            &forged
        ));
        assert!(!verify_safecookie_server_hash(
            &[0u8; 32],
            &client_nonce,
            &challenge
        ));
    }

    const SERVER_VECTOR: &str = "5f7cb5569957c99373e329258545940f029af175da225f4a3125eebf30c24bba";
    const CLIENT_VECTOR: &str = "9f99f2c4b75c91123ca5c6c6e3f76a9ef7fbd9471053cbe34454a4269cc39f7c";

    #[test]
    fn authchallenge_errors() {
        for bytes in [
            &b"250 AUTHCHALLENGE SERVERHASH=00\r\n"[..],
            b"250 OK\r\n",
            b"250 AUTHCHALLENGE SERVERNONCE=zz\r\n",
        ] {
            assert!(matches!(
                parse_authchallenge(&message(bytes)),
                Err(AuthError::BadReply(_))
            ));
        }
        assert!(matches!(
            parse_authchallenge(&message(b"513 Invalid base16 client nonce\r\n")),
            Err(AuthError::Refused { status: 513, .. })
        ));
    }

    #[test]
    fn commands() {
        assert_eq!(
            authchallenge_command(&[0xab, 0x01]),
            "AUTHCHALLENGE SAFECOOKIE AB01"
        );
        assert_eq!(authenticate_hex_command(&[0x0f]), "AUTHENTICATE 0F");
        assert_eq!(
            authenticate_password_command("pa\"ss"),
            "AUTHENTICATE \"pa\\\"ss\""
        );
        assert_eq!(check_cookie(&[0; 32]), Ok(()));
        assert_eq!(check_cookie(&[0; 31]), Err(AuthError::CookieLength(31)));
    }
}
