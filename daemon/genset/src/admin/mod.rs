//! The admin listener: the JSON API (bearer token), `/metrics` and `/healthz`.
//! Reads the store and the live state; never on the request path.

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use arc_swap::ArcSwap;
use serde::Deserialize;
use serde_json::json;

use crate::api::error::{ApiError, ErrorKind, Flavor};
use crate::auth::{KeyBook, constant_time_eq};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::peek::Peek;
use crate::record::{Recorder, now_ms};
use crate::store::{Store, TrafficFilter};

pub struct AdminState {
    pub store: Store,
    pub recorder: Recorder,
    pub keys: Arc<KeyBook>,
    pub metrics: Arc<Metrics>,
    pub token: String,
    pub started: Instant,
    pub config: Arc<ArcSwap<Config>>,
    pub proxy_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    pub models: genset_engine::EngineRegistry,
    pub controller: Arc<crate::control::Controller>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(healthz))
        .route("/api/v1/status", web::get().to(status))
        .route("/api/v1/traffic", web::get().to(traffic))
        .route("/api/v1/traffic/{id}", web::get().to(exchange))
        .route("/api/v1/use-cases", web::get().to(use_cases))
        .route("/api/v1/use-cases/suggest", web::get().to(suggest))
        .route("/api/v1/keys", web::get().to(list_keys))
        .route("/api/v1/keys", web::post().to(create_key))
        .route("/api/v1/keys/{id}", web::delete().to(revoke_key))
        .route("/api/v1/events", web::get().to(events))
        .route("/api/v1/models", web::get().to(models))
        .route("/api/v1/failover", web::get().to(failover))
        .route("/api/v1/mode", web::get().to(failover))
        .route("/api/v1/mode", web::post().to(set_mode))
        .configure(crate::evaluate::configure)
        .configure(crate::drill::api::configure)
        .default_service(web::to(|req: HttpRequest| async move {
            ApiError::new(ErrorKind::NotFound, format!("unknown admin path {} {}", req.method(), req.path())).render(Flavor::OpenAi)
        }));
}

/// An admin API error: rendered in the OpenAI error format.
#[derive(Debug)]
pub(crate) struct AdminError(ApiError);

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl actix_web::ResponseError for AdminError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.0.status()
    }
    fn error_response(&self) -> HttpResponse {
        self.0.render(Flavor::OpenAi)
    }
}

impl From<ApiError> for AdminError {
    fn from(e: ApiError) -> Self {
        AdminError(e)
    }
}

type Result<T> = std::result::Result<T, AdminError>;

pub(crate) fn authorize(req: &HttpRequest, st: &AdminState) -> Result<()> {
    let given = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if !given.is_empty() && constant_time_eq(given.trim().as_bytes(), st.token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::Authentication, "missing or wrong admin token (Authorization: Bearer <admin.token_file>)").into())
    }
}

fn internal(e: impl std::fmt::Display) -> AdminError {
    tracing::error!(error = %e, "admin API: store error");
    ApiError::new(ErrorKind::Internal, "the store failed; see the daemon log").into()
}

async fn metrics(st: web::Data<AdminState>) -> HttpResponse {
    st.metrics.recorder_queue_depth.set(st.recorder.queue_depth() as i64);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(st.metrics.render())
}

/// The controller: mode, each upstream's breaker with its evidence.
async fn failover(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    Ok(HttpResponse::Ok().json(st.controller.snapshot()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: String,
    reason: String,
    /// Who asked (gensetctl sends user@host); recorded with the event.
    actor: Option<String>,
}

/// The operator's flip: `{"mode": "force-local", "reason": "..."}`.
async fn set_mode(req: HttpRequest, st: web::Data<AdminState>, body: web::Bytes) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let b: ModeBody = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("expected {{\"mode\", \"reason\"}}: {e}")))?;
    let mode: crate::control::Mode = b.mode.parse().map_err(|e: String| ApiError::invalid(e).with_param("mode"))?;
    let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let actor = format!("{} (admin API token, from {peer})", b.actor.as_deref().unwrap_or("unknown").chars().take(100).collect::<String>());
    let state = st.controller.set_mode(mode, &b.reason, &actor).map_err(|e| ApiError::invalid(e).with_param("reason"))?;
    Ok(HttpResponse::Ok().json(json!({"mode": state, "effective": st.controller.effective()})))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true}))
}

async fn status(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let cfg = st.config.load();
    let s = &st.recorder.stats;
    use std::sync::atomic::Ordering::Relaxed;
    let exchanges = st.store.count_exchanges().await.map_err(internal)?;
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": st.started.elapsed().as_secs(),
        "mode": st.controller.effective(),
        "listen": {"proxy": st.proxy_addr.to_string(), "admin": st.admin_addr.to_string()},
        "store": {"backend": st.store.backend(), "exchanges": exchanges},
        "recording": {
            "redact": cfg.recording.redact.as_str(),
            "retention": humantime::format_duration(cfg.recording.retention).to_string(),
            "queue_depth": st.recorder.queue_depth(),
            "queue_capacity": st.recorder.capacity(),
            "enqueued": s.enqueued.load(Relaxed),
            "written": s.written.load(Relaxed),
            "dropped": s.dropped.load(Relaxed),
            "write_errors": s.write_errors.load(Relaxed),
        },
        "upstreams": cfg.upstreams.iter().map(|u| json!({
            "name": u.name,
            "api": crate::metrics::api_label(u.api),
            "base_url": u.base_url,
            "credential": u.api_key.as_ref().map(|k| k.last4()).unwrap_or_else(|| "passthrough".into()),
        })).collect::<Vec<_>>(),
        "use_cases": cfg.use_cases.iter().map(|u| u.name.clone()).collect::<Vec<_>>(),
        "models": cfg.models.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct TrafficQuery {
    use_case: Option<String>,
    served_by: Option<String>,
    status: Option<i64>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T> {
    web::Query::<T>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .map_err(|e| ApiError::invalid(format!("bad query string: {e}")).into())
}

async fn traffic(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let q: TrafficQuery = query(&req)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000").with_param("limit").into());
    }
    let f = TrafficFilter {
        use_case: q.use_case,
        served_by: q.served_by,
        status: q.status,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        before: q.before,
        limit,
    };
    let items = st.store.list_exchanges(&f).await.map_err(internal)?;
    let next_before = if items.len() as i64 == limit { items.last().map(|r| r.id) } else { None };
    Ok(HttpResponse::Ok().json(json!({"items": items, "next_before": next_before})))
}

async fn exchange(req: HttpRequest, st: web::Data<AdminState>, id: web::Path<String>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let id: i64 = id.parse().map_err(|_| AdminError(ApiError::invalid("exchange id must be a number")))?;
    match st.store.get_exchange(id).await.map_err(internal)? {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(ApiError::new(ErrorKind::NotFound, format!("no exchange {id}")).into()),
    }
}

async fn use_cases(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let since = now_ms() - 24 * 3600 * 1000;
    let counts = st.store.use_case_counts(since).await.map_err(internal)?;
    let cfg = st.config.load();
    let mut out = Vec::new();
    let count_of = |name: &str| counts.iter().find(|c| c.use_case == name);
    for uc in &cfg.use_cases {
        let c = count_of(&uc.name);
        out.push(json!({
            "name": uc.name,
            "description": uc.description,
            "rules": uc.rules.len(),
            "upstream": uc.upstream.and_then(|i| cfg.upstreams.get(i)).map(|u| u.name.clone()),
            "requests_24h": c.map(|c| c.requests).unwrap_or(0),
            "errors_24h": c.map(|c| c.errors).unwrap_or(0),
            "last_ts_ms": c.and_then(|c| c.last_ts_ms),
        }));
    }
    let u = count_of(crate::classify::UNCLASSIFIED);
    out.push(json!({
        "name": crate::classify::UNCLASSIFIED,
        "description": "traffic no use case matches",
        "rules": 0,
        "upstream": null,
        "requests_24h": u.map(|c| c.requests).unwrap_or(0),
        "errors_24h": u.map(|c| c.errors).unwrap_or(0),
        "last_ts_ms": u.and_then(|c| c.last_ts_ms),
    }));
    Ok(HttpResponse::Ok().json(json!({"items": out})))
}

#[derive(Deserialize)]
struct SuggestQuery {
    days: Option<i64>,
    limit: Option<i64>,
}

async fn suggest(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let q: SuggestQuery = query(&req)?;
    let since = now_ms() - q.days.unwrap_or(7).max(1) * 24 * 3600 * 1000;
    let groups = st.store.unclassified_groups(since, q.limit.unwrap_or(20).clamp(1, 200)).await.map_err(internal)?;
    let mut out = Vec::new();
    for g in groups {
        let sample = st.store.get_exchange(g.sample_id).await.map_err(internal)?;
        let system = sample
            .as_ref()
            .and_then(|s| s.request_body.as_deref())
            .and_then(|b| Peek::parse(b.as_bytes()).ok().and_then(|p| p.system_prompt()));
        let Some(system) = system else { continue };
        let name = suggest_name(&system);
        let head: String = system.chars().take(48).collect();
        let regex = format!("^{}", regex::escape(head.trim_end()));
        out.push(json!({
            "suggested_name": name,
            "requests": g.requests,
            "prompt_fingerprint": g.prompt_fingerprint,
            "system_prompt_excerpt": system.chars().take(160).collect::<String>(),
            "sample_exchange": g.sample_id,
            "config": format!("[[use_cases]]\nname = {name:?}\nmatch = {{ system_prompt = {regex:?} }}\n"),
        }));
    }
    Ok(HttpResponse::Ok().json(json!({"items": out})))
}

/// A slug from the first meaningful words of a system prompt.
fn suggest_name(system: &str) -> String {
    const STOP: &[&str] = &["you", "are", "a", "an", "the", "of", "to", "and", "your", "is", "for", "please", "assistant", "helpful"];
    let words: Vec<String> = system
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .filter(|w| !STOP.contains(&w.as_str()))
        .take(3)
        .collect();
    if words.is_empty() { "use-case".into() } else { words.join("-") }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: Option<String>,
    use_case: Option<String>,
    upstream: Option<String>,
}

async fn list_keys(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let rows = st.store.list_virtual_keys().await.map_err(internal)?;
    Ok(HttpResponse::Ok().json(json!({"items": rows})))
}

async fn create_key(req: HttpRequest, st: web::Data<AdminState>, body: web::Bytes) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let c: CreateKey = serde_json::from_slice(&body).map_err(|e| AdminError(ApiError::invalid(format!("bad request body: {e}"))))?;
    let cfg = st.config.load();
    if let Some(uc) = &c.use_case
        && !cfg.use_cases.iter().any(|u| &u.name == uc)
    {
        return Err(ApiError::invalid(format!("no use case named {uc:?} in the configuration")).with_param("use_case").into());
    }
    if let Some(up) = &c.upstream {
        match cfg.upstreams.iter().find(|u| &u.name == up) {
            None => return Err(ApiError::invalid(format!("no upstream named {up:?}")).with_param("upstream").into()),
            Some(u) if u.api_key.is_none() => {
                return Err(ApiError::invalid(format!("upstream {up:?} holds no credential (it passes client keys through)"))
                    .with_param("upstream")
                    .into());
            }
            Some(_) => {}
        }
    } else if !cfg.upstreams.iter().any(|u| u.api_key.is_some()) {
        return Err(ApiError::invalid(
            "no upstream holds a credential (api_key_env / api_key_file): virtual keys would have nothing to map to",
        )
        .into());
    }
    let name = c.name.unwrap_or_else(|| c.use_case.clone().unwrap_or_else(|| "key".into()));
    let (row, key) = st.keys.issue(&name, c.use_case, c.upstream, now_ms());
    st.store.insert_virtual_key(&row).await.map_err(internal)?;
    st.keys.insert(&row);
    tracing::info!(id = %row.id, name = %row.name, use_case = ?row.use_case, "virtual key created");
    let mut v = serde_json::to_value(&row).unwrap_or_default();
    v["key"] = json!(key);
    Ok(HttpResponse::Created().json(v))
}

async fn revoke_key(req: HttpRequest, st: web::Data<AdminState>, id: web::Path<String>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    if st.store.revoke_virtual_key(&id, now_ms()).await.map_err(internal)? {
        st.keys.remove(&id);
        tracing::info!(id = %id, "virtual key revoked");
        Ok(HttpResponse::Ok().json(json!({"id": *id, "revoked": true})))
    } else {
        Err(ApiError::new(ErrorKind::NotFound, format!("no active virtual key {id:?}")).into())
    }
}

async fn models(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    Ok(HttpResponse::Ok().json(json!({"items": st.models.stats()})))
}

async fn events(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let rows = st.store.list_events(200).await.map_err(internal)?;
    Ok(HttpResponse::Ok().json(json!({"items": rows})))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names() {
        assert_eq!(suggest_name("You are a helpful assistant that triages support tickets."), "that-triages-support");
        assert_eq!(suggest_name("Extract invoice fields as JSON"), "extract-invoice-fields");
        assert_eq!(suggest_name("!!"), "use-case");
    }
}
