//! Admin API of drills and reports (bearer token, like the rest of `/api/v1`):
//!
//! - `POST /api/v1/drills` `{"kind": "live"|"replay", "use_cases": [...], "duration": "5m",
//!   "window": "1d" | "period": "2026-11", "speed": 2, "max_requests": 200, "name": "..."}`
//!   → 201 with the drill; 409 during a real outage or when a use case is already held.
//! - `GET /api/v1/drills` → `{"items": [...]}` newest first (progress included while running).
//! - `GET /api/v1/drills/{id}` → the drill with its result or progress.
//! - `POST /api/v1/drills/{id}/abort` → the drill once ended (the hold is released at once).
//! - `GET /api/v1/reports?period=2026-11&format=json|csv|html|pdf` → the report.
//!
//! The same functions back `gensetctl drill ...` and `gensetctl report ...` ([`ctl_drill`],
//! [`ctl_report`]).

use std::fmt::Write as _;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DrillError, DrillSpec, Drills};
use crate::admin::{AdminError, AdminState, authorize};
use crate::api::error::{ApiError, ErrorKind};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/drills", web::post().to(start))
        .route("/api/v1/drills", web::get().to(list))
        .route("/api/v1/drills/{id}", web::get().to(get))
        .route("/api/v1/drills/{id}/abort", web::post().to(abort))
        .route("/api/v1/reports", web::get().to(report));
}

type Result<T> = std::result::Result<T, AdminError>;

fn error(e: DrillError) -> std::result::Result<HttpResponse, AdminError> {
    match e {
        DrillError::Invalid(m) => Err(ApiError::invalid(m).into()),
        DrillError::NotFound(_) => Err(ApiError::new(ErrorKind::NotFound, e.to_string()).into()),
        DrillError::Conflict(m) => {
            Ok(HttpResponse::Conflict().json(json!({"error": {"message": m, "type": "conflict", "param": null, "code": "drill_conflict"}})))
        }
        DrillError::Store(e) => {
            tracing::error!(error = %e, "drills API: store error");
            Err(ApiError::new(ErrorKind::Internal, "the store failed; see the daemon log").into())
        }
    }
}

fn runner(req: &HttpRequest) -> Result<web::Data<Drills>> {
    req.app_data::<web::Data<Drills>>()
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorKind::Internal, "drills are not running in this daemon").into())
}

async fn start(req: HttpRequest, st: web::Data<AdminState>, body: web::Bytes) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let d = runner(&req)?;
    let mut v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("bad request body: {e}")))?;
    let actor = v.as_object_mut().and_then(|o| o.remove("actor")).and_then(|a| a.as_str().map(str::to_string));
    let spec: DrillSpec = serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("bad drill: {e}")))?;
    let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let actor = format!("{} (admin API token, from {peer})", actor.as_deref().unwrap_or("unknown").chars().take(100).collect::<String>());
    match d.start_drill(spec, &actor).await {
        Ok(view) => Ok(HttpResponse::Created().json(view)),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

async fn list(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let d = runner(&req)?;
    let q = web::Query::<ListQuery>::from_query(req.query_string()).map_err(|e| ApiError::invalid(format!("bad query string: {e}")))?;
    match d.list(q.limit.unwrap_or(50)).await {
        Ok(items) => Ok(HttpResponse::Ok().json(json!({"items": items}))),
        Err(e) => error(e),
    }
}

async fn get(req: HttpRequest, st: web::Data<AdminState>, id: web::Path<String>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    match runner(&req)?.view(&id).await {
        Ok(v) => Ok(HttpResponse::Ok().json(v)),
        Err(e) => error(e),
    }
}

#[derive(Deserialize, Default)]
struct AbortBody {
    actor: Option<String>,
}

async fn abort(req: HttpRequest, st: web::Data<AdminState>, id: web::Path<String>, body: web::Bytes) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let b: AbortBody = if body.is_empty() { AbortBody::default() } else { serde_json::from_slice(&body).unwrap_or_default() };
    let actor = b.actor.unwrap_or_else(|| "admin API token".into()).chars().take(100).collect::<String>();
    match runner(&req)?.abort(&id, &actor).await {
        Ok(v) => Ok(HttpResponse::Ok().json(v)),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    period: String,
    format: Option<String>,
}

async fn report(req: HttpRequest, st: web::Data<AdminState>) -> Result<HttpResponse> {
    authorize(&req, &st)?;
    let d = runner(&req)?;
    let q = web::Query::<ReportQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid(format!("bad query string (period=2026-11&format=json|csv|html|pdf): {e}")))?;
    let period = genset_report::Period::parse(&q.period).map_err(|e| ApiError::invalid(e.to_string()).with_param("period"))?;
    let format: genset_report::Format =
        q.format.as_deref().unwrap_or("json").parse().map_err(|e: String| ApiError::invalid(e).with_param("format"))?;
    let (ct, bytes) = d.render_report(&period, format).await.map_err(|e| ApiError::new(ErrorKind::Internal, e))?;
    let filename = format!("genset-report-{}.{}", period.label.replace("..", "_"), format.extension());
    Ok(HttpResponse::Ok().content_type(ct).insert_header(("content-disposition", format!("inline; filename=\"{filename}\""))).body(bytes))
}

/// `gensetctl drill` subcommands as (method, path, body).
pub fn ctl_drill(cmd: &DrillCmd, actor: &str) -> (reqwest::Method, String, Option<Value>) {
    use reqwest::Method;
    match cmd {
        DrillCmd::Start { kind, use_cases, duration, window, period, speed, max_requests, name, force } => (
            Method::POST,
            "/api/v1/drills".into(),
            Some(json!({
                "kind": kind, "use_cases": use_cases, "duration": duration, "window": window, "period": period,
                "speed": speed, "max_requests": max_requests, "name": name, "force": force.then_some(true), "actor": actor,
            })),
        ),
        DrillCmd::Status { id } => (Method::GET, format!("/api/v1/drills/{id}"), None),
        DrillCmd::Abort { id } => (Method::POST, format!("/api/v1/drills/{id}/abort"), Some(json!({"actor": actor}))),
        DrillCmd::List { limit } => (Method::GET, format!("/api/v1/drills?limit={limit}"), None),
    }
}

/// `gensetctl report` as the admin API path.
pub fn ctl_report(period: &str, format: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect::<String>()
    };
    format!("/api/v1/reports?period={}&format={}", enc(period), enc(format))
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum DrillCmd {
    /// Start a drill: `gensetctl drill start --use-case support --duration 5m` (live) or
    /// `gensetctl drill start --kind replay --use-case support --window 1d --speed 2`.
    Start {
        #[arg(long, default_value = "live")]
        kind: String,
        /// A use case to drill (repeat for several).
        #[arg(long = "use-case", required = true)]
        use_cases: Vec<String>,
        /// Live: how long traffic is served locally.
        #[arg(long)]
        duration: Option<String>,
        /// Replay: the recorded traffic of the last WINDOW (e.g. 1d).
        #[arg(long)]
        window: Option<String>,
        /// Replay: the recorded traffic of a period (2026-11, 2026-W45, 2026-11-01..2026-11-15).
        #[arg(long)]
        period: Option<String>,
        /// Replay: times the recorded rate.
        #[arg(long)]
        speed: Option<f64>,
        #[arg(long)]
        max_requests: Option<usize>,
        #[arg(long)]
        name: Option<String>,
        /// Live: drill even a use case that a real cut-off would not serve locally (readiness
        /// not proven): its clients get the cut-off's 503 for the whole drill.
        #[arg(long)]
        force: bool,
    },
    /// A drill's progress or result.
    Status { id: String },
    /// Abort a running drill: its use cases return to the cloud at once.
    Abort { id: String },
    /// Drills, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        o => o.to_string(),
    }
}

fn ms_str(v: &Value) -> String {
    v.as_f64().map(|m| format!("{:.1} s", m / 1000.0)).unwrap_or_else(|| "-".into())
}

/// Text for people of one drill (start, status, abort).
pub fn render_drill(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "drill {}  {} ({})  {}", s(&v["id"]), s(&v["name"]), s(&v["kind"]), s(&v["state"]));
    let _ =
        writeln!(o, "use cases: {}", v["use_cases"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(", ")).unwrap_or_default());
    let _ = writeln!(o, "started by {}", s(&v["actor"]));
    let progress = v.get("progress").filter(|p| !p.is_null());
    if let Some(p) = progress.filter(|p| p["selecting"] == true) {
        let _ = writeln!(o, "progress: selecting the recorded requests to replay  elapsed {}", ms_str(&p["elapsed_ms"]));
    } else if let Some(p) = progress {
        let _ = writeln!(
            o,
            "progress {:.0}%  elapsed {}  remaining {}  requests {} ({} ok){}",
            p["fraction"].as_f64().unwrap_or(0.0) * 100.0,
            ms_str(&p["elapsed_ms"]),
            ms_str(&p["remaining_ms"]),
            s(&p["requests_done"]),
            s(&p["requests_ok"]),
            p["requests_total"].as_u64().map(|t| format!(" of {t}")).unwrap_or_default()
        );
    }
    if let Some(r) = v.get("result").filter(|r| !r.is_null()) {
        let _ = writeln!(o, "verdict: {}", s(&r["verdict"]));
        let _ = writeln!(
            o,
            "requests {}  succeeded {}  success rate {}  RTO {}  p50 {}  p95 {}",
            s(&r["requests"]),
            s(&r["succeeded"]),
            r["success_rate"].as_f64().map(|x| format!("{:.2}%", x * 100.0)).unwrap_or_else(|| "-".into()),
            ms_str(&r["rto_ms"]),
            r["p50_ms"].as_f64().map(|x| format!("{x:.0} ms")).unwrap_or_else(|| "-".into()),
            r["p95_ms"].as_f64().map(|x| format!("{x:.0} ms")).unwrap_or_else(|| "-".into()),
        );
        if let Some(q) = r["quality"].as_f64() {
            let _ = writeln!(o, "quality {q:.3} against the cloud's answers ({} compared)", s(&r["quality_n"]));
        }
        if let Some(c) = r.get("capacity").filter(|c| !c.is_null()) {
            let _ = writeln!(
                o,
                "capacity headroom {:.2}x ({:.1}/min served vs recorded peak {:.1}/min, speed {}x)",
                c["headroom"].as_f64().unwrap_or(0.0),
                c["served_peak_per_min"].as_f64().unwrap_or(0.0),
                c["recorded_peak_per_min"].as_f64().unwrap_or(0.0),
                s(&c["speed"])
            );
        }
        for f in r["findings"].as_array().into_iter().flatten() {
            let _ = writeln!(o, "  finding: {}", s(f));
        }
    }
    o
}

pub fn render_list(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{:<18} {:<24} {:<7} {:<9} {:<21} {:<22} USE CASES", "ID", "NAME", "KIND", "STATE", "VERDICT", "STARTED (UTC)");
    for d in v["items"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "{:<18} {:<24} {:<7} {:<9} {:<21} {:<22} {}",
            s(&d["id"]),
            s(&d["name"]),
            s(&d["kind"]),
            s(&d["state"]),
            s(&d["verdict"]),
            d["started_ms"].as_i64().map(genset_report::format_ts).unwrap_or_default(),
            d["use_cases"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(",")).unwrap_or_default()
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(progress: Value) -> Value {
        json!({"id": "d1", "name": "n", "kind": "replay", "state": "running", "use_cases": ["a"], "actor": "ops", "progress": progress})
    }

    #[test]
    fn a_replay_still_selecting_says_so_instead_of_zero_of_zero() {
        let selecting = render_drill(&running(json!({
            "elapsed_ms": 400, "remaining_ms": 0, "fraction": 0.0,
            "requests_done": 0, "requests_total": null, "requests_ok": 0, "selecting": true
        })));
        assert!(selecting.contains("selecting the recorded requests"), "{selecting}");
        assert!(!selecting.contains("of 0"), "{selecting}");
        let counted = render_drill(&running(json!({
            "elapsed_ms": 900, "remaining_ms": 0, "fraction": 0.25,
            "requests_done": 3, "requests_total": 12, "requests_ok": 2, "selecting": false
        })));
        assert!(counted.contains("progress 25%") && counted.contains("requests 3 (2 ok) of 12"), "{counted}");
    }
}
