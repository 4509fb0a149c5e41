//! Session tokens: 256 random bits in a cookie, only their sha256 in the store; the CSRF
//! token is derived from the session token (so it changes with every login and is never
//! stored).

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::authz::Role;
use crate::db::UserRow;

/// The session cookie over TLS: `__Host-` binds it to this host, path `/`, Secure.
pub const COOKIE_TLS: &str = "__Host-genset_session";
/// Over plain HTTP (loopback only: an SSH tunnel, tests), where `Secure` cookies are not sent.
pub const COOKIE_PLAIN: &str = "genset_session";
/// The pre-session cookie that the login and setup forms double-submit as their CSRF token.
pub const PRE_TLS: &str = "__Host-genset_pre";
pub const PRE_PLAIN: &str = "genset_pre";

/// 256 random bits, URL-safe base64.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// What is stored about a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The CSRF token for a session token.
pub fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"genset-console-csrf\0");
    h.update(token.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// A token as a client sent it: plausible length and alphabet only.
pub fn well_formed(token: &str) -> bool {
    token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether this request came over TLS (the listener's own transport, not a header a client
/// could send).
pub fn is_tls(req: &HttpRequest) -> bool {
    req.app_config().secure()
}

pub fn cookie_name(tls: bool) -> &'static str {
    if tls { COOKIE_TLS } else { COOKIE_PLAIN }
}

pub fn pre_name(tls: bool) -> &'static str {
    if tls { PRE_TLS } else { PRE_PLAIN }
}

pub fn make_cookie(name: &'static str, value: String, tls: bool, max_age_s: Option<i64>) -> Cookie<'static> {
    let mut c = Cookie::build(name, value).path("/").http_only(true).secure(tls).same_site(SameSite::Strict).finish();
    if let Some(s) = max_age_s {
        c.set_max_age(actix_web::cookie::time::Duration::seconds(s));
    }
    c
}

pub fn removal(name: &'static str, tls: bool) -> Cookie<'static> {
    make_cookie(name, String::new(), tls, Some(0))
}

/// The signed-in user of a request, put in its extensions by the guard.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user: UserRow,
    pub role: Role,
    /// sha256 of the session token.
    pub session_hash: String,
    pub csrf: String,
    pub address: String,
}

/// The client's address: the TCP peer (never a forwarding header a client could write).
pub fn address(req: &HttpRequest) -> String {
    req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "-".into())
}

pub fn is_loopback(req: &HttpRequest) -> bool {
    req.peer_addr().is_some_and(|a| a.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed("short"));
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(csrf_for(&a), csrf_for(&b));
        assert_ne!(csrf_for(&a), token_hash(&a));
    }
}
