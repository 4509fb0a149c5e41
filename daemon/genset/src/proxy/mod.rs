//! The inbound API: OpenAI- and Anthropic-style routes, passed through to the cloud
//! unchanged and recorded. The path a request walks: read the body (bounded) → peek at it →
//! authenticate → classify the use case → pick the upstream → forward → stream back
//! through a [`tee::Tee`] that hands the exchange to the recorder. Nothing here waits on the
//! database.

pub mod client;
pub mod peek;
pub mod routing;
pub mod tee;

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::api::error::{ApiError, ErrorKind, Flavor};
use crate::auth::{KeyBook, VIRTUAL_KEY_PREFIX, VirtualKey, plain_sha256};
use crate::record::{Capture, Ending, Exchange, Recorder, now_ms};
pub use routing::{Routing, Upstream};

/// Everything the request path needs; shared by all proxy workers.
pub struct ProxyState {
    pub routing: ArcSwap<Routing>,
    pub recorder: Recorder,
    pub keys: Arc<KeyBook>,
    /// Local models, when any are configured.
    pub local: Option<Arc<crate::local_route::LocalRoute>>,
    pub controller: Arc<crate::control::Controller>,
}

/// One inbound route.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub path: &'static str,
    /// `None`: decided per request from its headers (`GET /v1/models` serves both APIs).
    pub flavor: Option<Flavor>,
    pub has_body: bool,
}

pub const ENDPOINTS: &[(Method, Endpoint)] = &[
    (Method::POST, Endpoint { path: "/v1/chat/completions", flavor: Some(Flavor::OpenAi), has_body: true }),
    (Method::POST, Endpoint { path: "/v1/completions", flavor: Some(Flavor::OpenAi), has_body: true }),
    (Method::POST, Endpoint { path: "/v1/embeddings", flavor: Some(Flavor::OpenAi), has_body: true }),
    (Method::POST, Endpoint { path: "/v1/responses", flavor: Some(Flavor::OpenAi), has_body: true }),
    (Method::GET, Endpoint { path: "/v1/models", flavor: None, has_body: false }),
    (Method::POST, Endpoint { path: "/v1/messages", flavor: Some(Flavor::Anthropic), has_body: true }),
    (Method::POST, Endpoint { path: "/v1/messages/count_tokens", flavor: Some(Flavor::Anthropic), has_body: true }),
];

/// Register the API routes on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (method, ep) in ENDPOINTS {
        cfg.service(
            web::resource(ep.path).app_data(*ep).route(web::method(method.clone()).to(handle)).default_service(web::to(method_not_allowed)),
        );
    }
    cfg.default_service(web::to(unknown_path));
}

fn flavor_from_headers(req: &HttpRequest) -> Flavor {
    let h = req.headers();
    if h.contains_key("anthropic-version") || h.contains_key("x-api-key") || req.path().starts_with("/v1/messages") {
        Flavor::Anthropic
    } else {
        Flavor::OpenAi
    }
}

async fn unknown_path(req: HttpRequest) -> HttpResponse {
    ApiError::new(ErrorKind::NotFound, format!("unknown path {} {}", req.method(), req.path()))
        .with_code("unknown_url")
        .render(flavor_from_headers(&req))
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut r = ApiError::new(ErrorKind::NotFound, format!("method {} is not allowed on {}", req.method(), req.path()))
        .with_code("method_not_allowed")
        .render(flavor_from_headers(&req));
    *r.status_mut() = actix_web::http::StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// The part of an exchange known before the response: filled in as the request walks.
struct Pending {
    started: Instant,
    ex: Exchange,
}

impl Pending {
    /// genset answers itself: record the rejection and render the error.
    fn reject(self, recorder: &Recorder, err: ApiError) -> HttpResponse {
        reject(self.ex, self.started, recorder, err)
    }
}

/// Record an exchange genset answered with an error of its own, and render that error in the
/// format of the exchange's API.
pub(crate) fn reject(mut ex: Exchange, started: Instant, recorder: &Recorder, err: ApiError) -> HttpResponse {
    let flavor = ex.api;
    let resp = err.render(flavor);
    let body = serde_json::to_vec(&err.body(flavor)).unwrap_or_default();
    ex.status = err.status().as_u16();
    ex.error = Some(err.kind.label());
    ex.ending = Ending::Rejected;
    ex.response = Capture::from_bytes(Bytes::from(body), recorder.body_cap());
    ex.total = started.elapsed();
    recorder.record(ex);
    resp
}

async fn handle(req: HttpRequest, payload: web::Payload, state: web::Data<ProxyState>) -> HttpResponse {
    let started = Instant::now();
    let Some(ep) = req.app_data::<Endpoint>().copied() else {
        return unknown_path(req).await;
    };
    let flavor = ep.flavor.unwrap_or_else(|| flavor_from_headers(&req));
    let routing = state.routing.load_full();
    let recorder = &state.recorder;
    let mut pending = Pending {
        started,
        ex: Exchange {
            ts_ms: now_ms(),
            api: flavor,
            endpoint: ep.path,
            use_case: routing.classifier.unclassified().clone(),
            served_by: routing.genset_tag.clone(),
            model: None,
            status: 0,
            stream: false,
            sse: false,
            request: Capture::default(),
            response: Capture::default(),
            ending: Ending::Rejected,
            error: None,
            client_key_hash: None,
            virtual_key_id: None,
            ttfb: None,
            total: Default::default(),
            attempt: Default::default(),
        },
    };

    // 1. The body, bounded.
    let body = if ep.has_body {
        if let Err(e) = check_content_type(&req) {
            return pending.reject(recorder, e);
        }
        match read_body(&req, payload, routing.max_body).await {
            Ok(b) => b,
            Err(e) => return pending.reject(recorder, e),
        }
    } else {
        Bytes::new()
    };
    pending.ex.request = Capture::from_bytes(body.clone(), recorder.body_cap());

    // 2. A look inside.
    let peek = if ep.has_body {
        match peek::Peek::parse(&body) {
            Ok(p) => Some(p),
            Err(e) => return pending.reject(recorder, e),
        }
    } else {
        None
    };
    pending.ex.model = peek.as_ref().and_then(|p| p.model.as_deref().map(str::to_string));
    pending.ex.stream = peek.as_ref().is_some_and(|p| p.stream);

    // 3. Who is calling.
    let client_key = client_key(&req, flavor);
    let virtual_key: Option<VirtualKey> = match client_key {
        Some(k) if k.starts_with(VIRTUAL_KEY_PREFIX) => match state.keys.lookup(k) {
            Some(v) => Some(v),
            None => {
                return pending.reject(
                    recorder,
                    ApiError::new(ErrorKind::Authentication, "invalid or revoked genset virtual key").with_code("invalid_api_key"),
                );
            }
        },
        _ => None,
    };
    if let Some(v) = &virtual_key {
        pending.ex.virtual_key_id = Some(v.id.clone());
    } else if let Some(k) = client_key {
        pending.ex.client_key_hash = Some(state.keys.hash(k));
    }

    // 4. Which use case.
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let key_sha = || client_key.map(plain_sha256);
    let use_case_idx = match virtual_key.as_ref().and_then(|v| v.use_case.as_deref()) {
        Some(uc) => routing.classifier.index_of(uc),
        None => routing.classifier.classify(crate::classify::Input {
            header: &header,
            path: ep.path,
            model: pending.ex.model.as_deref(),
            key_sha256: &key_sha,
            system_prompt: || peek.as_ref().and_then(|p| p.system_prompt()),
        }),
    };
    if let Some(i) = use_case_idx {
        pending.ex.use_case = routing.classifier.name(i).clone();
    }

    // 5. Local engine, when asked for explicitly.
    if let Some(local) = &state.local {
        let by_model = pending.ex.model.as_deref().is_some_and(|m| m.starts_with("local/"));
        let by_header = header("x-genset-route") == Some("local");
        if by_model || by_header {
            return local.serve(&req, ep, body, pending.ex, started, recorder.clone()).await;
        }
    } else if pending.ex.model.as_deref().is_some_and(|m| m.starts_with("local/")) || header("x-genset-route") == Some("local") {
        return pending.reject(
            recorder,
            ApiError::new(ErrorKind::UpstreamUnavailable, "no local models are configured ([[models]])").with_code("no_local_model"),
        );
    }

    // 6. The fallback chain: plan, attempts, rescue (route::exec).
    let inbound = crate::route::exec::Inbound {
        ep,
        flavor,
        model: pending.ex.model.clone(),
        stream: pending.ex.stream,
        headers: req.headers().clone(),
        query: req.uri().query().map(str::to_string),
        key_hash: pending.ex.client_key_hash.clone(),
        virtual_key,
        use_case: use_case_idx,
        body,
    };
    let span = tracing::debug_span!(
        "proxy.request",
        otel.name = %format_args!("{} {}", req.method(), ep.path),
        otel.kind = "server",
        api = ?flavor,
        use_case = %pending.ex.use_case,
        model = pending.ex.model.as_deref().unwrap_or(""),
        stream = pending.ex.stream,
        http.status_code = tracing::field::Empty,
        served_by = tracing::field::Empty,
    );
    let resp = {
        use tracing::Instrument;
        crate::route::exec::run(&state, &req, inbound, pending.ex, started).instrument(span.clone()).await
    };
    span.record("http.status_code", resp.status().as_u16());
    if let Some(v) = resp.headers().get("x-genset-served-by").and_then(|v| v.to_str().ok()) {
        span.record("served_by", v);
    }
    resp
}

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    // `str::get` is `None` off a character boundary, so multi-byte input is simply no match.
    let part_is = |part: Option<&str>, want: &str| part.is_some_and(|p| p.eq_ignore_ascii_case(want));
    let (prefix, suffix) = ("application/", "+json");
    let structured_json = mime.len() >= prefix.len() + suffix.len()
        && part_is(mime.get(..prefix.len()), prefix)
        && part_is(mime.get(mime.len() - suffix.len()..), suffix);
    if mime.eq_ignore_ascii_case("application/json") || structured_json {
        Ok(())
    } else {
        let shown = if ct.is_empty() { "none".to_string() } else { format!("{ct:?}") };
        Err(ApiError::new(ErrorKind::UnsupportedMediaType, format!("expected Content-Type: application/json, got {shown}"))
            .with_code("unsupported_content_type"))
    }
}

async fn read_body(req: &HttpRequest, mut payload: web::Payload, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(ErrorKind::RequestTooLarge, format!("the request body is larger than the {max} bytes allowed (proxy.max_body)"))
            .with_code("request_too_large")
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(4096).min(max));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("could not read the request body: {e}")))?;
        if buf.len() + chunk.len() > max {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The key the client sent: `x-api-key` (Anthropic) or `Authorization: Bearer` (both).
fn client_key(req: &HttpRequest, flavor: Flavor) -> Option<&str> {
    let h = req.headers();
    let x_api_key = || h.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty());
    let bearer = || {
        h.get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    match flavor {
        Flavor::Anthropic => x_api_key().or_else(bearer),
        Flavor::OpenAi => bearer().or_else(x_api_key),
    }
}

pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "trailers"
            | "transfer-encoding"
            | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    #[test]
    fn json_content_types_pass_in_any_case_and_others_are_refused() {
        let check = |ct: &str| {
            let req = if ct.is_empty() { TestRequest::default() } else { TestRequest::default().insert_header(("content-type", ct)) };
            super::check_content_type(&req.to_http_request()).is_ok()
        };
        for ok in
            ["application/json", "Application/JSON; charset=utf-8", " application/json ", "application/vnd.api+json", "APPLICATION/X+JSON"]
        {
            assert!(check(ok), "{ok:?} should be accepted");
        }
        for bad in ["", "text/plain", "application/jsonx", "application/xml", "text/x+json", "+json", "applicationé/+json", "é"] {
            assert!(!check(bad), "{bad:?} should be refused");
        }
    }
}
