//! The evaluator's admin API (bearer token, like the rest of `/api/v1`) and the text that
//! `gensetctl readiness` prints.
//!
//! - `GET  /api/v1/readiness`: every use case with a local model: verdict, score, interval.
//! - `GET  /api/v1/use-cases/{name}/readiness[?worst=N&history=N]`: the latest readiness
//!   (score, 95% Wilson interval, verdict, trend, latency, capacity, reasons), its history,
//!   and the worst recent examples side by side (prompt, cloud answer, local answer, score).
//! - `POST /api/v1/evaluations/run`: run a round now and answer with its report.
//! - `GET  /api/v1/evaluations[?use_case=&limit=]`: the newest evaluations.

use std::fmt::Write as _;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Evaluator, local_model};
use crate::admin::{AdminState, authorize};
use crate::api::error::{ApiError, ErrorKind, Flavor};
use crate::record::now_ms;
use crate::store::evaluate::ReadinessRow;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/readiness", web::get().to(all_readiness))
        .route("/api/v1/use-cases/{name}/readiness", web::get().to(readiness))
        .route("/api/v1/evaluations/run", web::post().to(run_now))
        .route("/api/v1/evaluations/judge", web::get().to(judge_usage))
        .route("/api/v1/evaluations", web::get().to(list));
}

fn error(e: ApiError) -> HttpResponse {
    e.render(Flavor::OpenAi)
}

fn store_error(e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "admin API: store error");
    error(ApiError::new(ErrorKind::Internal, "the store failed; see the daemon log"))
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

/// A stored readiness as the API shows it.
fn readiness_json(row: &ReadinessRow) -> Value {
    let detail = parse_json(&row.detail);
    let r = &detail["readiness"];
    json!({
        "computed_ms": row.ts_ms,
        "verdict": row.verdict,
        "score": row.score,
        "interval": {"lower": row.score_lower, "upper": row.score_upper, "method": "wilson", "confidence": 0.95},
        "n": row.n,
        "pass_rate": r["pass_rate"],
        "trend": r["trend"],
        "latency": {
            "verdict": r["latency_verdict"],
            "p95_ms": r["p95_latency_ms"],
            "p95_ttft_ms": r["p95_ttft_ms"],
            "slo_p95_ms": detail["thresholds"]["p95_latency_ms"],
            "slo_p95_ttft_ms": detail["thresholds"]["p95_ttft_ms"],
        },
        "capacity": {
            "verdict": r["capacity_verdict"],
            "peak_rps_recorded": detail["capacity"]["capacity"]["peak_rps_recorded"],
            "local_rps_measured": detail["capacity"]["capacity"]["local_rps_measured"],
            "peak_requests_per_minute": detail["capacity"]["peak_requests_per_minute"],
            "mean_latency_ms": detail["capacity"]["mean_latency_ms"],
            "parallel": detail["capacity"]["parallel"],
        },
        "reasons": parse_json(&row.reasons),
        "thresholds": detail["thresholds"],
    })
}

async fn all_readiness(req: HttpRequest, st: web::Data<AdminState>) -> actix_web::Result<HttpResponse> {
    authorize(&req, &st)?;
    let latest = match st.store.latest_readiness().await {
        Ok(r) => r,
        Err(e) => return Ok(store_error(e)),
    };
    let cfg = st.config.load();
    let items: Vec<Value> = cfg
        .use_cases
        .iter()
        .filter_map(|uc| local_model(uc).map(|m| (uc, m)))
        .map(|(uc, model)| {
            let row = latest.iter().find(|r| r.use_case == uc.name);
            let mut v = row.map(readiness_json).unwrap_or_else(|| json!({"verdict": null, "reasons": ["not evaluated yet"]}));
            v["use_case"] = json!(uc.name);
            v["model"] = json!(model);
            v["kind"] = json!(uc.eval.kind);
            v["serving"] = json!(st.controller.verdict(&uc.name).map(|v| v.verdict));
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"items": items})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadinessQuery {
    worst: Option<i64>,
    history: Option<i64>,
}

async fn readiness(req: HttpRequest, st: web::Data<AdminState>, name: web::Path<String>) -> actix_web::Result<HttpResponse> {
    authorize(&req, &st)?;
    let q = match web::Query::<ReadinessQuery>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => return Ok(error(ApiError::invalid(format!("bad query string: {e}")))),
    };
    let cfg = st.config.load_full();
    let Some(uc) = cfg.use_cases.iter().find(|u| u.name == *name) else {
        return Ok(error(ApiError::new(ErrorKind::NotFound, format!("no use case named {:?} in the configuration", *name))));
    };
    let history = match st.store.readiness_history(&uc.name, q.history.unwrap_or(30).clamp(1, 1000)).await {
        Ok(h) => h,
        Err(e) => return Ok(store_error(e)),
    };
    let since = now_ms() - cfg.evaluation.window.as_millis() as i64;
    let worst = match st.store.worst_evaluations(&uc.name, since, q.worst.unwrap_or(5).clamp(0, 100)).await {
        Ok(w) => w,
        Err(e) => return Ok(store_error(e)),
    };
    let mut v = history.first().map(readiness_json).unwrap_or_else(
        || json!({"verdict": null, "score": null, "interval": null, "n": 0, "trend": null, "reasons": ["not evaluated yet"]}),
    );
    v["use_case"] = json!(uc.name);
    v["model"] = json!(local_model(uc));
    v["kind"] = json!(uc.eval.kind);
    v["serving"] = json!(st.controller.verdict(&uc.name));
    v["evaluation"] = json!({
        "enabled": cfg.evaluation.enabled,
        "interval": humantime::format_duration(cfg.evaluation.interval).to_string(),
        "window": humantime::format_duration(cfg.evaluation.window).to_string(),
        "replays_per_round": cfg.evaluation.replays_per_round,
        "canaries": uc.eval.canaries.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
    });
    // Score direction over the history: latest minus the oldest shown.
    v["history_trend"] = match (history.first(), history.last()) {
        (Some(a), Some(b)) if history.len() > 1 => json!(a.score - b.score),
        _ => Value::Null,
    };
    v["history"] = history
        .iter()
        .map(
            |h| json!({"ts_ms": h.ts_ms, "verdict": h.verdict, "score": h.score, "lower": h.score_lower, "upper": h.score_upper, "n": h.n}),
        )
        .collect();
    v["worst"] = worst
        .iter()
        .map(|w| {
            json!({
                "id": w.id, "ts_ms": w.ts_ms, "source": w.source, "exchange_id": w.exchange_id, "canary": w.canary,
                "score": w.score, "passed": w.passed, "latency_ms": w.latency_ms, "error": w.error,
                "prompt": w.prompt, "cloud_answer": w.cloud_answer, "local_answer": w.local_answer,
                "detail": w.detail.as_deref().map(parse_json),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(v))
}

async fn run_now(req: HttpRequest, st: web::Data<AdminState>) -> actix_web::Result<HttpResponse> {
    authorize(&req, &st)?;
    let Some(ev) = req.app_data::<web::Data<Evaluator>>() else {
        return Ok(error(ApiError::new(ErrorKind::Internal, "the evaluator is not running in this daemon")));
    };
    let report = ev.run_round().await;
    Ok(HttpResponse::Ok().json(report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    use_case: Option<String>,
    limit: Option<i64>,
}

async fn list(req: HttpRequest, st: web::Data<AdminState>) -> actix_web::Result<HttpResponse> {
    authorize(&req, &st)?;
    let q = match web::Query::<ListQuery>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => return Ok(error(ApiError::invalid(format!("bad query string: {e}")))),
    };
    match st.store.list_evaluations(q.use_case.as_deref(), q.limit.unwrap_or(50).clamp(1, 1000)).await {
        Ok(items) => Ok(HttpResponse::Ok().json(json!({"items": items}))),
        Err(e) => Ok(store_error(e)),
    }
}

/// The judge's configuration and what it spent today against its daily token budget.
async fn judge_usage(req: HttpRequest, st: web::Data<AdminState>, ev: web::Data<super::Evaluator>) -> actix_web::Result<HttpResponse> {
    authorize(&req, &st)?;
    let cfg = st.config.load();
    Ok(HttpResponse::Ok().json(match &cfg.evaluation.judge {
        None => json!({"configured": false}),
        Some(j) => json!({
            "configured": true,
            "upstream": j.upstream,
            "model": j.model,
            "sample": j.sample,
            "usage": ev.judge.usage(j.daily_tokens),
        }),
    }))
}

// ---- gensetctl readiness -------------------------------------------------------------------

/// The admin path `gensetctl readiness [USE_CASE]` reads.
pub fn ctl_path(use_case: Option<&str>) -> String {
    match use_case {
        Some(u) => format!("/api/v1/use-cases/{}/readiness", urlencode(u)),
        None => "/api/v1/readiness".to_string(),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn f2(v: &Value) -> String {
    v.as_f64().map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into())
}

fn signed(v: &Value) -> String {
    v.as_f64().map(|x| format!("{x:+.2}")).unwrap_or_else(|| "-".into())
}

fn interval(v: &Value) -> String {
    match (v["interval"]["lower"].as_f64(), v["interval"]["upper"].as_f64()) {
        (Some(l), Some(u)) => format!("[{l:.2}, {u:.2}]"),
        _ => "-".into(),
    }
}

fn one_line(text: &Value, max: usize) -> String {
    let t = s(text).split_whitespace().collect::<Vec<_>>().join(" ");
    super::replay::excerpt(&t, max)
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
    out
}

/// `gensetctl readiness [USE_CASE]` for people.
pub fn render(use_case: Option<&str>, v: &Value) -> String {
    let mut out = String::new();
    if use_case.is_none() {
        let rows: Vec<Vec<String>> = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                vec![
                    s(&u["use_case"]),
                    s(&u["model"]),
                    s(&u["kind"]),
                    s(&u["verdict"]),
                    f2(&u["score"]),
                    interval(u),
                    s(&u["n"]),
                    signed(&u["trend"]),
                    u["reasons"].get(0).map(|r| one_line(r, 80)).unwrap_or_default(),
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str("no use case has a local model in its chain\n");
        } else {
            out.push_str(&table(&["USE CASE", "MODEL", "KIND", "VERDICT", "SCORE", "95% INTERVAL", "N", "TREND", "WHY"], &rows));
        }
        return out;
    }
    let _ = writeln!(out, "use case {}  (model {}, kind {})", s(&v["use_case"]), s(&v["model"]), s(&v["kind"]));
    let _ = writeln!(
        out,
        "verdict  {}   score {} {} (Wilson 95%) over {} evaluations   trend {}",
        s(&v["verdict"]),
        f2(&v["score"]),
        interval(v),
        s(&v["n"]),
        signed(&v["trend"])
    );
    let lat = &v["latency"];
    if !lat.is_null() {
        let _ = writeln!(out, "latency  {}   p95 {} ms (SLO {})", s(&lat["verdict"]), s(&lat["p95_ms"]), s(&lat["slo_p95_ms"]));
        let cap = &v["capacity"];
        let _ = writeln!(
            out,
            "capacity {}   local {} req/s vs recorded peak {} req/s",
            s(&cap["verdict"]),
            f2(&cap["local_rps_measured"]),
            f2(&cap["peak_rps_recorded"])
        );
    }
    for r in v["reasons"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  - {}", s(r));
    }
    let hist: Vec<Vec<String>> = v["history"]
        .as_array()
        .into_iter()
        .flatten()
        .take(10)
        .map(|h| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(h["ts_ms"].as_u64().unwrap_or(0));
            vec![
                humantime::format_rfc3339_seconds(t).to_string(),
                s(&h["verdict"]),
                f2(&h["score"]),
                format!("[{}, {}]", f2(&h["lower"]), f2(&h["upper"])),
                s(&h["n"]),
            ]
        })
        .collect();
    if !hist.is_empty() {
        out.push_str("\nhistory (newest first)\n");
        out.push_str(&table(&["TIME (UTC)", "VERDICT", "SCORE", "INTERVAL", "N"], &hist));
    }
    let worst = v["worst"].as_array().cloned().unwrap_or_default();
    if !worst.is_empty() {
        out.push_str("\nworst examples\n");
        for w in worst {
            let what = match (w["exchange_id"].as_i64(), w["canary"].as_str()) {
                (Some(id), _) => format!("replay of exchange {id}"),
                (None, Some(c)) => format!("canary {c}"),
                _ => s(&w["source"]),
            };
            let _ = writeln!(
                out,
                "score {}  {}{}",
                f2(&w["score"]),
                what,
                w["error"].as_str().map(|e| format!("  (error: {e})")).unwrap_or_default()
            );
            let _ = writeln!(out, "  prompt: {}", one_line(&w["prompt"], 160));
            let _ = writeln!(out, "  cloud:  {}", one_line(&w["cloud_answer"], 160));
            let _ = writeln!(out, "  local:  {}", one_line(&w["local_answer"], 160));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_summary_and_one_use_case() {
        let all = json!({"items": [{"use_case": "triage", "model": "gemma", "kind": "classification", "verdict": "ready",
            "score": 0.95, "interval": {"lower": 0.83, "upper": 0.99}, "n": 40, "trend": 0.01, "reasons": ["score 0.95 ok"]}]});
        let text = render(None, &all);
        assert!(text.contains("triage") && text.contains("[0.83, 0.99]") && text.contains("+0.01"), "{text}");
        let one = json!({"use_case": "triage", "model": "gemma", "kind": "classification", "verdict": "not-ready", "score": 0.1,
            "interval": {"lower": 0.05, "upper": 0.2}, "n": 40, "trend": null, "reasons": ["bad"],
            "latency": {"verdict": "unknown", "p95_ms": 300, "slo_p95_ms": null},
            "capacity": {"verdict": "pass", "local_rps_measured": 4.0, "peak_rps_recorded": 0.5},
            "history": [{"ts_ms": 0, "verdict": "not-ready", "score": 0.1, "lower": 0.05, "upper": 0.2, "n": 40}],
            "worst": [{"exchange_id": 7, "score": 0.0, "prompt": "a\nb", "cloud_answer": "spam", "local_answer": "ham"}]});
        let text = render(Some("triage"), &one);
        assert!(text.contains("replay of exchange 7") && text.contains("prompt: a b") && text.contains("local:  ham"), "{text}");
        assert_eq!(ctl_path(Some("a b")), "/api/v1/use-cases/a%20b/readiness");
    }
}
