//! Control-port authentication: which method to use (a pure decision, table-tested) and the
//! exchange itself.
//!
//! A cookie is only ever used through SAFECOOKIE, which proves knowledge of the cookie with
//! HMACs and only after tor has proven it knows the cookie too. Plain COOKIE sends the
//! cookie's bytes in clear to whatever answers on the control port, and that peer chooses
//! which file is "the cookie" (PROTOCOLINFO's COOKIEFILE): a fake control port once received
//! `db_password=…` that way. So plain COOKIE is refused unless the operator allows it with
//! `--tor-allow-plain-cookie`, and even then only the `--tor-cookie` file is ever sent.

use std::path::{Path, PathBuf};

use torctl::auth::{self, AuthChallenge, AuthError, ProtocolInfo};
use torctl::vocab::AuthMethod;
use torctl::Message;

use super::secret::{self, CookieOrigin};
use super::{Connection, SessionError, TorControlConfig};
use crate::log::excerpt;

/// How to authenticate, decided from PROTOCOLINFO and the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Method {
    HashedPassword(PathBuf),
    SafeCookie(PathBuf, CookieOrigin),
    /// Only with `--tor-allow-plain-cookie`, and only the `--tor-cookie` file.
    PlainCookie(PathBuf),
    Null,
}

/// Picks the method: a configured password, else SAFECOOKIE, else (if allowed) plain COOKIE
/// with the configured cookie, else NULL. The error names what is missing and the fix.
pub(super) fn choose(info: &ProtocolInfo, config: &TorControlConfig) -> Result<Method, String> {
    let offers = |method: AuthMethod| info.offers(&method);
    if let Some(path) = config.password_file.as_ref() {
        if offers(AuthMethod::HashedPassword) {
            return Ok(Method::HashedPassword(path.clone()));
        }
    }
    let cookie = match (&config.cookie_file, &info.cookie_file) {
        (Some(path), _) => Some((path.clone(), CookieOrigin::Configured)),
        (None, Some(path)) => Some((PathBuf::from(path), CookieOrigin::NamedByTor)),
        (None, None) => None,
    };
    if offers(AuthMethod::SafeCookie) {
        match cookie {
            Some((path, origin)) => return Ok(Method::SafeCookie(path, origin)),
            None if !offers(AuthMethod::Null) => {
                return Err("tor offers SAFECOOKIE but names no cookie file; set --tor-cookie to tor's CookieAuthFile".into())
            }
            None => {}
        }
    }
    let plain_only = offers(AuthMethod::Cookie) && !offers(AuthMethod::SafeCookie);
    if plain_only && config.allow_plain_cookie {
        if let Some(path) = &config.cookie_file {
            return Ok(Method::PlainCookie(path.clone()));
        }
    }
    if offers(AuthMethod::Null) {
        return Ok(Method::Null);
    }
    if plain_only && config.allow_plain_cookie {
        return Err("tor offers only plain COOKIE, and --tor-allow-plain-cookie sends only the file --tor-cookie names, never one tor names; set --tor-cookie".into());
    }
    if plain_only {
        return Err(
            "tor offers COOKIE but not SAFECOOKIE, and plain COOKIE would send the cookie file itself, in clear, to whatever answers on --tor-control; refused. \
             Every tor since 0.2.3.13 offers SAFECOOKIE, so check that --tor-control is the pod's tor; to take the risk anyway, set --tor-allow-plain-cookie with --tor-cookie"
                .into(),
        );
    }
    let offered: Vec<&str> = info.auth_methods.iter().map(AuthMethod::as_str).collect();
    Err(format!(
        "no usable authentication method: tor offers {} and none is configured (HASHEDPASSWORD needs --tor-password-file)",
        // Method names are tor's words, but an unknown one could be anything.
        excerpt(&offered.join(","))
    ))
}

/// An [`AuthError`] as a session error: tor's text only as the foreign part.
fn auth_error(what: &str, error: AuthError) -> SessionError {
    match error {
        AuthError::Refused { status, text } => {
            SessionError::refused(format!("{what}: tor answered {status}"), text)
        }
        other => SessionError::Auth(format!("{what}: {other}")),
    }
}

fn check_reply(method: &str, reply: &Message) -> Result<(), SessionError> {
    if reply.is_ok() {
        return Ok(());
    }
    Err(SessionError::refused(
        format!(
            "{method} authentication failed: tor answered {}",
            reply.status
        ),
        reply.first_text(),
    ))
}

fn read_cookie(path: &Path, origin: CookieOrigin) -> Result<[u8; auth::COOKIE_LEN], SessionError> {
    secret::read_cookie(path, origin).map_err(SessionError::Auth)
}

pub(super) fn authenticate(
    connection: &mut Connection,
    config: &TorControlConfig,
) -> Result<(), SessionError> {
    let info = auth::parse_protocolinfo(&connection.command("PROTOCOLINFO 1")?)
        .map_err(|error| auth_error("PROTOCOLINFO failed", error))?;
    match choose(&info, config).map_err(SessionError::Auth)? {
        Method::HashedPassword(path) => {
            let password = secret::read_password(&path).map_err(SessionError::Auth)?;
            let reply = connection.command(&auth::authenticate_password_command(&password))?;
            check_reply("HASHEDPASSWORD", &reply)
        }
        Method::SafeCookie(path, origin) => {
            let cookie = read_cookie(&path, origin)?;
            let what = "SAFECOOKIE authentication failed";
            let client_nonce = random_nonce()?;
            let reply = connection.command(&auth::authchallenge_command(&client_nonce))?;
            let challenge: AuthChallenge =
                auth::parse_authchallenge(&reply).map_err(|error| auth_error(what, error))?;
            if !auth::verify_safecookie_server_hash(&cookie, &client_nonce, &challenge) {
                return Err(SessionError::Auth(format!(
                    "{what}: tor's server hash does not match the cookie (wrong cookie file, or not the tor that wrote it?)"
                )));
            }
            let client_hash =
                auth::safecookie_client_hash(&cookie, &client_nonce, &challenge.server_nonce);
            let reply = connection.command(&auth::authenticate_hex_command(&client_hash))?;
            check_reply("SAFECOOKIE", &reply)
        }
        Method::PlainCookie(path) => {
            let cookie = read_cookie(&path, CookieOrigin::Configured)?;
            let reply = connection.command(&auth::authenticate_hex_command(&cookie))?;
            check_reply("COOKIE", &reply)
        }
        Method::Null => {
            let reply = connection.command(auth::AUTHENTICATE_NULL)?;
            check_reply("NULL", &reply)
        }
    }
}

/// 32 unpredictable bytes for AUTHCHALLENGE. A nonce tor's peers could guess would let a
/// replayed server hash pass, so no nonce means no SAFECOOKIE (the old code sent zeros).
fn random_nonce() -> Result<[u8; auth::NONCE_LEN], SessionError> {
    use std::io::Read;
    let mut nonce = [0u8; auth::NONCE_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut nonce))
        .map_err(|error| {
            SessionError::Auth(format!(
                "SAFECOOKIE needs a random nonce, but /dev/urandom cannot be read ({error})"
            ))
        })?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info(methods: &[AuthMethod], cookie_file: Option<&str>) -> ProtocolInfo {
        ProtocolInfo {
            protocol_version: Some("1".into()),
            auth_methods: methods.to_vec(),
            cookie_file: cookie_file.map(str::to_string),
            tor_version: None,
        }
    }

    fn config(cookie: Option<&str>, password: Option<&str>, allow_plain: bool) -> TorControlConfig {
        TorControlConfig {
            address: "127.0.0.1:9051".parse().unwrap(),
            cookie_file: cookie.map(PathBuf::from),
            password_file: password.map(PathBuf::from),
            allow_plain_cookie: allow_plain,
            poll_interval: Duration::from_secs(1),
        }
    }

    use AuthMethod::{Cookie, HashedPassword, Null, SafeCookie};

    /// (offered methods, COOKIEFILE, configuration, expected method or error start)
    type Case<'a> = (
        &'a [AuthMethod],
        Option<&'a str>,
        TorControlConfig,
        Result<Method, &'a str>,
    );

    /// The decision table: offers × configuration → method (or the start of the error).
    #[test]
    fn method_table() {
        let tor_named = Some("/run/tor/cookie");
        let safe = |path: &str, origin| -> Result<Method, &str> {
            Ok(Method::SafeCookie(PathBuf::from(path), origin))
        };
        let cases: Vec<Case> = vec![
            (
                &[Cookie, SafeCookie],
                tor_named,
                config(None, None, false),
                safe("/run/tor/cookie", CookieOrigin::NamedByTor),
            ),
            (
                &[Cookie, SafeCookie],
                tor_named,
                config(Some("/c"), None, false),
                safe("/c", CookieOrigin::Configured),
            ),
            (
                &[HashedPassword, SafeCookie],
                tor_named,
                config(None, Some("/p"), false),
                Ok(Method::HashedPassword("/p".into())),
            ),
            (
                &[SafeCookie],
                tor_named,
                config(None, Some("/p"), false),
                safe("/run/tor/cookie", CookieOrigin::NamedByTor),
            ),
            (
                &[Null],
                None,
                config(Some("/c"), None, true),
                Ok(Method::Null),
            ),
            // Plain COOKIE only: refused, whichever file; NULL still works when offered.
            (
                &[Cookie],
                tor_named,
                config(None, None, false),
                Err("tor offers COOKIE but not SAFECOOKIE"),
            ),
            (
                &[Cookie],
                tor_named,
                config(Some("/c"), None, false),
                Err("tor offers COOKIE but not SAFECOOKIE"),
            ),
            (
                &[Cookie],
                tor_named,
                config(None, None, true),
                Err("tor offers only plain COOKIE, and --tor-allow-plain-cookie sends only"),
            ),
            (
                &[Cookie, Null],
                tor_named,
                config(None, None, false),
                Ok(Method::Null),
            ),
            // Allowed, and only the configured file.
            (
                &[Cookie],
                tor_named,
                config(Some("/c"), None, true),
                Ok(Method::PlainCookie("/c".into())),
            ),
            (
                &[SafeCookie],
                None,
                config(None, None, false),
                Err("tor offers SAFECOOKIE but names no cookie file"),
            ),
            (
                &[HashedPassword],
                None,
                config(None, None, false),
                Err("no usable authentication method: tor offers HASHEDPASSWORD"),
            ),
        ];
        for (methods, cookie_file, config, expected) in cases {
            let got = choose(&info(methods, cookie_file), &config);
            match (&got, &expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{methods:?} {config:?}"),
                (Err(got), Err(start)) => assert!(got.starts_with(start), "{methods:?}: {got}"),
                _ => panic!("{methods:?} {config:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn unknown_methods_are_named_as_an_excerpt() {
        let methods = [AuthMethod::Other("X\r\n198.51.100.7".into())];
        let error = choose(&info(&methods, None), &config(None, None, false)).unwrap_err();
        assert!(
            !error.contains("198.51") && !error.contains('\r'),
            "{error:?}"
        );
    }
}
