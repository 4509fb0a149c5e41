//! Session tokens: 256 random bits in a cookie, only their sha256 in the store; the CSRF
//! token is derived from the session token (so it changes with every login and is never
//! stored).

use std::net::IpAddr;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use genset::admin::AdminState;
use genset::config::cidr::canonical;
use genset::config::{Cidr, ForwardedHeader};

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

/// A session's public handle in forms and pages: derived from the stored hash (which is not
/// secret, but is what the store looks sessions up by), 64 bits, stable for the session.
pub fn handle(id_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"genset-console-session-handle\0");
    h.update(id_hash.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// The client's address: the TCP peer, or, when the peer is one of `admin.trusted_proxies`
/// (read from the live configuration), the client its forwarding header names (see
/// [`forwarded_client`]). Used for the audit log, sessions and the per-address login limits.
pub fn address(req: &HttpRequest) -> String {
    let Some(peer) = req.peer_addr().map(|a| canonical(a.ip())) else { return "-".into() };
    let Some(st) = req.app_data::<web::Data<AdminState>>() else { return peer.to_string() };
    let cfg = st.config.load();
    let admin = &cfg.admin;
    if admin.trusted_proxies.is_empty() {
        return peer.to_string();
    }
    let name = match admin.forwarded_header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let values: Vec<&str> = req.headers().get_all(name).filter_map(|v| v.to_str().ok()).collect();
    forwarded_client(peer, &admin.trusted_proxies, admin.forwarded_header, &values).to_string()
}

/// The client behind a chain of proxies. Only a trusted peer's header counts. Its hops are
/// read from the right (the hop the nearest proxy added) leftwards, past every trusted
/// proxy; the first untrusted hop is the client. Hops left of it were written by the client
/// itself (or by proxies we do not know) and are ignored, so a client cannot pick its own
/// address by sending the header. A hop that does not parse ends the walk at the last proxy.
pub fn forwarded_client(peer: IpAddr, trusted: &[Cidr], header: ForwardedHeader, values: &[&str]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let hops: Vec<&str> = values.iter().flat_map(|v| v.split(',')).map(str::trim).collect();
    let mut client = canonical(peer);
    for hop in hops.iter().rev() {
        if !is_trusted(client) {
            break;
        }
        let ip = match header {
            ForwardedHeader::XForwardedFor => parse_hop(hop),
            ForwardedHeader::Forwarded => forwarded_for(hop).and_then(parse_hop),
        };
        match ip {
            Some(ip) => client = canonical(ip),
            None => break,
        }
    }
    client
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').map(str::trim).find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `"[2001:db8::1]:4711"`; not `unknown` or an obfuscated `_name`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let h = hop.trim().trim_matches('"');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    h.rsplit_once(':').filter(|(ip, _)| !ip.contains(':')).and_then(|(ip, _)| ip.parse().ok())
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
        assert_eq!(handle(&token_hash(&a)).len(), 16);
        assert_ne!(handle(&token_hash(&a)), handle(&token_hash(&b)));
    }

    fn check(peer: &str, trusted: &[&str], header: ForwardedHeader, values: &[&str], expected: &str) {
        let trusted: Vec<Cidr> = trusted.iter().map(|c| c.parse().unwrap()).collect();
        let got = forwarded_client(peer.parse().unwrap(), &trusted, header, values);
        assert_eq!(got.to_string(), expected, "peer {peer}, trusted {trusted:?}, {header:?} {values:?}");
    }

    #[test]
    fn client_behind_proxies() {
        use ForwardedHeader::{Forwarded, XForwardedFor as Xff};
        let lo = &["127.0.0.1/32"][..];
        // An untrusted peer's header is ignored.
        check("192.0.2.9", lo, Xff, &["203.0.113.5"], "192.0.2.9");
        check("192.0.2.9", &[], Xff, &["203.0.113.5"], "192.0.2.9");
        // A trusted peer: the hop it added.
        check("127.0.0.1", lo, Xff, &["203.0.113.5"], "203.0.113.5");
        check("::ffff:127.0.0.1", lo, Xff, &["203.0.113.5"], "203.0.113.5");
        // What the client wrote itself (left of the proxy's hop) does not count.
        check("127.0.0.1", lo, Xff, &["198.51.100.1, 203.0.113.5"], "203.0.113.5");
        check("127.0.0.1", lo, Xff, &["198.51.100.1", "203.0.113.5"], "203.0.113.5");
        // Through two trusted proxies.
        check("127.0.0.1", &["127.0.0.1/32", "10.0.0.0/8"], Xff, &["198.51.100.1, 203.0.113.5, 10.1.1.1"], "203.0.113.5");
        // All hops trusted: the left-most.
        check("127.0.0.1", &["127.0.0.1/32", "10.0.0.0/8"], Xff, &["10.2.2.2, 10.1.1.1"], "10.2.2.2");
        // No header, or garbage: the proxy itself.
        check("127.0.0.1", lo, Xff, &[], "127.0.0.1");
        check("127.0.0.1", lo, Xff, &["unknown"], "127.0.0.1");
        check("127.0.0.1", lo, Xff, &["[2001:db8::7]:4711"], "2001:db8::7");
        check("127.0.0.1", lo, Xff, &["203.0.113.5:4711"], "203.0.113.5");
        // RFC 7239.
        check("127.0.0.1", lo, Forwarded, &[r#"for=198.51.100.1, for="[2001:db8:cafe::17]:4711";proto=https"#], "2001:db8:cafe::17");
        check("127.0.0.1", lo, Forwarded, &["For=203.0.113.5;by=127.0.0.1"], "203.0.113.5");
        check("127.0.0.1", lo, Forwarded, &["for=_hidden"], "127.0.0.1");
        // The header that is not configured is not read (the caller passes only the chosen one).
        check("192.0.2.9", lo, Forwarded, &["for=203.0.113.5"], "192.0.2.9");
    }
}
