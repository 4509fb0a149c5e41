//! The middleware in front of every console route. In order: refuse plain HTTP from other
//! hosts, look the raw path up in [`authz::RULES`], load the session, check the role, check
//! the CSRF token (and the origin) of every POST; then add the security headers to whatever
//! the answer is. Handlers only run for requests that passed all of it.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use genset::admin::AdminState;
use genset::auth::constant_time_eq;

use crate::Console;
use crate::audit::{self, Entry};
use crate::authz::{self, Access, Role};
use crate::session::{self, Authed};

/// The console's Content-Security-Policy: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
     font-src 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The one route served under [`REPORT_CSP`].
pub const REPORT_VIEW: &str = "/reports/view";
/// The standalone HTML report's policy: its inline styles, data: images, nothing else.
pub const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'";
pub const HSTS: &str = "max-age=31536000";
/// The largest form body the console reads.
const MAX_FORM: usize = 64 * 1024;
/// A session's last-seen time is written at most this often.
const TOUCH_EVERY_MS: i64 = 30_000;
/// Live-refresh requests carry this header and do not count as activity.
pub const REFRESH_HEADER: &str = "x-genset-refresh";

pub async fn console_guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let tls = req.app_config().secure();
    let decision = decide(&mut req).await;
    let is_static = req.path().starts_with("/static/");
    let is_report = req.path() == REPORT_VIEW;
    let mut res = match decision {
        Ok(()) => next.call(req).await?.map_into_boxed_body(),
        Err(resp) => req.into_response(resp),
    };
    security_headers(res.headers_mut(), tls, is_static);
    // The HTML report is a standalone document with its own inline styles: on a successful
    // answer of that one route, a CSP that allows inline styles (and data: images) only.
    if is_report && res.status().is_success() {
        res.headers_mut().insert(HeaderName::from_static("content-security-policy"), HeaderValue::from_static(REPORT_CSP));
    }
    Ok(res)
}

/// The headers on every console answer (a test checks each).
pub fn security_headers(h: &mut header::HeaderMap, tls: bool, is_static: bool) {
    let set = |h: &mut header::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(h, "permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()");
    if !is_static {
        set(h, "cache-control", "no-store");
    }
    if tls {
        set(h, "strict-transport-security", HSTS);
    }
}

fn data(req: &ServiceRequest) -> Option<(web::Data<AdminState>, web::Data<Console>)> {
    Some((req.app_data::<web::Data<AdminState>>()?.clone(), req.app_data::<web::Data<Console>>()?.clone()))
}

async fn decide(req: &mut ServiceRequest) -> Result<(), HttpResponse> {
    let Some((st, console)) = data(req) else {
        return Err(crate::pages::error_page(500, "The console is not wired to the daemon's state."));
    };
    let http = req.request().clone();
    let tls = session::is_tls(&http);
    if !tls && !session::is_loopback(&http) {
        return Err(crate::pages::error_page(
            403,
            "The console needs TLS when reached from another host: set admin.tls_cert and admin.tls_key.",
        ));
    }
    let method = req.method().as_str().to_string();
    let raw_path = req.uri().path().to_string();
    let Some(rule) = authz::lookup(&method, &raw_path) else {
        return Err(crate::pages::error_page(404, "No such page."));
    };
    let now = console.now_ms();
    let address = session::address(&http);
    let token = http.cookie(session::cookie_name(tls)).map(|c| c.value().to_string()).filter(|t| session::well_formed(t));
    let authed = match &token {
        Some(t) => load_session(&st, &console, t, now, &address, &http).await?,
        None => None,
    };
    let is_post = method == "POST";
    if is_post && !same_origin(&http, tls) {
        deny(&st, &console, authed.as_ref(), &address, &method, &raw_path, "cross-origin POST").await;
        return Err(crate::pages::error_page(403, "Cross-origin request refused."));
    }
    match rule.access {
        Access::Public => {
            if is_post {
                let form = read_form(req).await?;
                let pre = http.cookie(session::pre_name(tls)).map(|c| c.value().to_string()).unwrap_or_default();
                let sent = form_field(&form, "csrf");
                if pre.is_empty() || !constant_time_eq(pre.as_bytes(), sent.as_bytes()) {
                    deny(&st, &console, authed.as_ref(), &address, &method, &raw_path, "missing or wrong CSRF token").await;
                    return Err(crate::pages::error_page(
                        403,
                        "The form expired or was not sent from this console. Reload the page and try again.",
                    ));
                }
            }
            if let Some(a) = authed {
                req.extensions_mut().insert(a);
            }
            Ok(())
        }
        Access::Role(need) => {
            let Some(a) = authed else {
                if is_post {
                    return Err(crate::pages::error_page(403, "Your session ended. Sign in again."));
                }
                let next = if raw_path == "/" { String::new() } else { format!("?next={raw_path}") };
                return Err(HttpResponse::SeeOther().insert_header((header::LOCATION, format!("/login{next}"))).finish());
            };
            if a.role < need {
                deny(&st, &console, Some(&a), &address, &method, &raw_path, &format!("needs role {need}")).await;
                return Err(crate::pages::error_page(403, &format!("This page needs the {need} role; you are {}.", a.role)));
            }
            if is_post {
                let form = read_form(req).await?;
                let sent = form_field(&form, "csrf");
                if !constant_time_eq(a.csrf.as_bytes(), sent.as_bytes()) {
                    deny(&st, &console, Some(&a), &address, &method, &raw_path, "missing or wrong CSRF token").await;
                    return Err(crate::pages::error_page(
                        403,
                        "The form expired or was not sent from this console. Reload the page and try again.",
                    ));
                }
            }
            req.extensions_mut().insert(a);
            Ok(())
        }
    }
}

/// The session behind a cookie, if it is live; ends it when it timed out.
async fn load_session(
    st: &AdminState,
    console: &Console,
    token: &str,
    now: i64,
    address: &str,
    http: &HttpRequest,
) -> Result<Option<Authed>, HttpResponse> {
    let hash = session::token_hash(token);
    let s = crate::db::get_session(&st.store, &hash).await.map_err(internal)?;
    let Some(s) = s else { return Ok(None) };
    if s.revoked_ms.is_some() {
        return Ok(None);
    }
    let idle = now - s.last_seen_ms > console.options.idle_timeout.as_millis() as i64;
    let absolute = now - s.created_ms > console.options.absolute_timeout.as_millis() as i64;
    if idle || absolute {
        let _ = crate::db::revoke_session(&st.store, &hash, now).await;
        return Ok(None);
    }
    let Some(user) = crate::db::user_by_id(&st.store, s.user_id).await.map_err(internal)? else { return Ok(None) };
    if user.disabled {
        return Ok(None);
    }
    let Some(role) = Role::parse(&user.role) else { return Ok(None) };
    if now - s.last_seen_ms > TOUCH_EVERY_MS && !http.headers().contains_key(REFRESH_HEADER) {
        crate::db::touch_session(&st.store, &hash, now).await.map_err(internal)?;
    }
    Ok(Some(Authed { user, role, session_hash: hash, csrf: session::csrf_for(token), address: address.to_string() }))
}

/// A POST must come from a page of this console. Browsers that send `Sec-Fetch-Site` are
/// judged by it (same-origin, or none: typed by the user); others by `Origin` when it names
/// a site. With `Referrer-Policy: no-referrer` browsers send `Origin: null` on form posts, so
/// `null` is not proof of anything either way; the CSRF token still is.
fn same_origin(req: &HttpRequest, tls: bool) -> bool {
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || site == "none";
    }
    match h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None | Some("null") => true,
        Some(origin) => {
            // HTTP/1.1 sends Host; HTTP/2 the :authority the URI carries.
            let host = h
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string()))
                .unwrap_or_default();
            let scheme = if tls { "https" } else { "http" };
            origin == format!("{scheme}://{host}")
        }
    }
}

/// Read the (bounded) urlencoded body and put it back for the handler.
async fn read_form(req: &mut ServiceRequest) -> Result<Vec<(String, String)>, HttpResponse> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(crate::pages::error_page(415, "Forms only (application/x-www-form-urlencoded)."));
    }
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| crate::pages::error_page(400, "The request body could not be read."))?;
        if body.len() + chunk.len() > MAX_FORM {
            return Err(crate::pages::error_page(413, "The form is too large."));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    let form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&body).map_err(|_| crate::pages::error_page(400, "The form could not be read."))?;
    req.set_payload(Payload::from(body));
    Ok(form)
}

fn form_field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

async fn deny(st: &AdminState, console: &Console, a: Option<&Authed>, address: &str, method: &str, path: &str, why: &str) {
    let actor = a.map(|a| a.user.username.as_str()).unwrap_or("-");
    audit::record(
        &st.store,
        console.now_ms(),
        Entry { actor, action: "access.denied", target: &format!("{method} {path}"), outcome: "denied", address, detail: Some(why) },
    )
    .await;
}

fn internal(e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "console: store error");
    crate::pages::error_page(500, "The store failed; see the daemon log.")
}

/// The console's state for handlers.
pub type ConsoleData = web::Data<Console>;

/// Convenience for handlers: the signed-in user the guard put in the request.
pub fn authed(req: &HttpRequest) -> Option<Authed> {
    req.extensions().get::<Authed>().cloned()
}
