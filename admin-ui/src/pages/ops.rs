//! Drills (list, result, start, abort) and reports (HTML view, downloads).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use genset::admin::AdminState;
use genset::drill::{DrillError, DrillSpec, DrillView, Drills};
use serde::Deserialize;

use super::{Layout, PageError, PageResult, internal, qv, see_other, user};
use crate::Console;
use crate::audit::{self, Entry};
use crate::authz::Role;
use crate::session::Authed;
use crate::text::utc;

fn drills(req: &HttpRequest) -> Result<Arc<Drills>, PageError> {
    req.app_data::<web::Data<Drills>>()
        .map(|d| d.clone().into_inner())
        .ok_or(PageError { code: 503, message: "The drill runner is not running in this daemon.".into() })
}

fn drill_error(e: DrillError) -> PageError {
    match e {
        DrillError::NotFound(_) => PageError { code: 404, message: "No drill with that id.".into() },
        DrillError::Store(e) => internal(e),
        e => PageError { code: 400, message: e.to_string() },
    }
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "—".into())
}

fn ms(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "—".into())
}

fn num(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into())
}

pub struct DrillRowView {
    id: String,
    name: String,
    kind: String,
    state: String,
    verdict: String,
    use_cases: String,
    started: String,
    ended: String,
    actor: String,
    running: bool,
    /// 0..100
    progress: u32,
    progress_text: String,
}

fn row_view(d: &DrillView) -> DrillRowView {
    let (progress, progress_text) = match &d.progress {
        Some(p) if p.selecting => (0, "selecting the recorded requests to replay…".into()),
        Some(p) => {
            let total = p.requests_total.map(|t| format!(" of {t}")).unwrap_or_default();
            (
                (p.fraction * 100.0).round().clamp(0.0, 100.0) as u32,
                format!(
                    "{:.0}% · {} requests{total}, {} ok · {} s left",
                    p.fraction * 100.0,
                    p.requests_done,
                    p.requests_ok,
                    p.remaining_ms / 1000
                ),
            )
        }
        None => (if d.state == "running" { 0 } else { 100 }, String::new()),
    };
    DrillRowView {
        id: d.id.clone(),
        name: d.name.clone(),
        kind: d.kind.clone(),
        state: d.state.clone(),
        verdict: d.verdict.clone().unwrap_or_else(|| "—".into()),
        use_cases: d.use_cases.join(", "),
        started: utc(d.started_ms),
        ended: d.ended_ms.map(utc).unwrap_or_else(|| "—".into()),
        actor: d.actor.clone(),
        running: d.state == "running",
        progress,
        progress_text,
    }
}

#[derive(Template)]
#[template(path = "drills.html")]
struct DrillsPage {
    l: Layout,
    drills: Vec<DrillRowView>,
    can_operate: bool,
    csrf: String,
    use_cases: Vec<String>,
    error: Option<String>,
    form: StartForm,
}

#[derive(Default, Clone)]
pub struct StartForm {
    kind: String,
    use_cases: Vec<String>,
    duration: String,
    window: String,
    name: String,
    force: bool,
}

impl StartForm {
    fn has(&self, u: &str) -> bool {
        self.use_cases.iter().any(|x| x == u)
    }
}

async fn drills_page(req: &HttpRequest, st: &AdminState, a: &Authed, error: Option<(u16, String)>, form: StartForm) -> PageResult {
    let d = drills(req)?;
    let list = d.list(100).await.map_err(drill_error)?;
    let cfg = st.config.load();
    let use_cases = cfg.use_cases.iter().filter(|u| genset::evaluate::local_model(u).is_some()).map(|u| u.name.clone()).collect();
    let code = error.as_ref().map(|e| e.0).unwrap_or(200);
    let page = DrillsPage {
        l: Layout::new("Drills", "drills", Some(a)).refresh(if list.iter().any(|d| d.state == "running") { 5 } else { 0 }),
        drills: list.iter().map(row_view).collect(),
        can_operate: a.role >= Role::Operator,
        csrf: a.csrf.clone(),
        use_cases,
        error: error.map(|e| e.1),
        form: StartForm { kind: if form.kind.is_empty() { "live".into() } else { form.kind }, ..form },
    };
    let body = page.render().map_err(internal)?;
    Ok(HttpResponse::build(StatusCode::from_u16(code).unwrap_or(StatusCode::OK)).content_type("text/html; charset=utf-8").body(body))
}

pub async fn list(req: HttpRequest, st: web::Data<AdminState>) -> PageResult {
    let a = user(&req)?;
    drills_page(&req, &st, &a, None, StartForm::default()).await
}

/// Start a drill (operator and admin: the authorization table, and checked again here).
pub async fn start(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    form: web::Form<Vec<(String, String)>>,
) -> PageResult {
    let a = user(&req)?;
    if a.role < Role::Operator {
        return Err(PageError { code: 403, message: "Starting a drill needs the operator role.".into() });
    }
    let mut f = StartForm::default();
    for (k, v) in form.into_inner() {
        let v = v.trim().to_string();
        match k.as_str() {
            "kind" => f.kind = v,
            "use_cases" => {
                f.use_cases.extend(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
            }
            "duration" => f.duration = v,
            "window" => f.window = v,
            "name" => f.name = v,
            "force" => f.force = v == "yes",
            _ => {}
        }
    }
    let kind = if f.kind.is_empty() { "live".to_string() } else { f.kind.clone() };
    if kind != "live" && kind != "replay" {
        return drills_page(&req, &st, &a, Some((400, "Kind: live or replay.".into())), f).await;
    }
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let spec = DrillSpec {
        name: some(&f.name),
        kind: Some(kind.clone()),
        use_cases: f.use_cases.clone(),
        duration: if kind == "live" { some(&f.duration) } else { None },
        window: if kind == "replay" { some(&f.window) } else { None },
        force: (kind == "live" && f.force).then_some(true),
        ..Default::default()
    };
    let d = drills(&req)?;
    let actor = format!("console:{}", a.user.username);
    let target = f.use_cases.join(",");
    let result = d.start_drill(spec, &actor).await;
    let (outcome, detail) = match &result {
        Ok(v) => ("ok", format!("{kind} drill {} ({}) started", v.id, v.name)),
        Err(e) => ("failed", e.to_string()),
    };
    audit::record(
        &st.store,
        console.now_ms(),
        Entry { actor: &a.user.username, action: "drill.start", target: &target, outcome, address: &a.address, detail: Some(&detail) },
    )
    .await;
    match result {
        Ok(v) => Ok(see_other(&format!("/drills/{}", qv(&v.id)))),
        Err(DrillError::Store(e)) => Err(internal(e)),
        Err(e @ DrillError::Conflict(_)) => drills_page(&req, &st, &a, Some((409, e.to_string())), f).await,
        Err(e) => drills_page(&req, &st, &a, Some((400, e.to_string())), f).await,
    }
}

pub struct UcResultView {
    use_case: String,
    requests: u64,
    succeeded: u64,
    p95: String,
    slo: String,
    quality: String,
}

pub struct ResultView {
    verdict: String,
    findings: Vec<String>,
    failures: Vec<String>,
    requests: u64,
    succeeded: u64,
    served_locally: u64,
    success_rate: String,
    rto: String,
    p50: String,
    p95: String,
    max: String,
    quality: String,
    quality_n: u64,
    capacity: Option<String>,
    per_use_case: Vec<UcResultView>,
}

#[derive(Template)]
#[template(path = "drill.html")]
struct DrillPage {
    l: Layout,
    d: DrillRowView,
    result: Option<ResultView>,
    can_operate: bool,
    csrf: String,
    error: Option<String>,
}

async fn drill_page(req: &HttpRequest, a: &Authed, id: &str, error: Option<(u16, String)>) -> PageResult {
    let d = drills(req)?.view(id).await.map_err(drill_error)?;
    let result = d.result.as_ref().map(|r| ResultView {
        verdict: r.verdict.clone(),
        findings: r.findings.clone(),
        failures: r.failures.clone(),
        requests: r.requests,
        succeeded: r.succeeded,
        served_locally: r.served_locally,
        success_rate: pct(r.success_rate),
        rto: ms(r.rto_ms),
        p50: ms(r.p50_ms),
        p95: ms(r.p95_ms),
        max: ms(r.max_ms),
        quality: num(r.quality),
        quality_n: r.quality_n,
        capacity: r.capacity.as_ref().map(|c| {
            format!(
                "served peak {:.1}/min against a recorded peak of {:.1}/min at {}× speed: headroom {:.2}",
                c.served_peak_per_min, c.recorded_peak_per_min, c.speed, c.headroom
            )
        }),
        per_use_case: r
            .per_use_case
            .iter()
            .map(|u| UcResultView {
                use_case: u.use_case.clone(),
                requests: u.requests,
                succeeded: u.succeeded,
                p95: ms(u.p95_ms),
                slo: u.slo_p95_ms.map(|s| format!("{s} ms")).unwrap_or_else(|| "—".into()),
                quality: num(u.quality),
            })
            .collect(),
    });
    let code = error.as_ref().map(|e| e.0).unwrap_or(200);
    let running = d.state == "running";
    let page = DrillPage {
        l: Layout::new(format!("Drill {}", d.name), "drills", Some(a)).refresh(if running { 5 } else { 0 }),
        d: row_view(&d),
        result,
        can_operate: a.role >= Role::Operator,
        csrf: a.csrf.clone(),
        error: error.map(|e| e.1),
    };
    let body = page.render().map_err(internal)?;
    Ok(HttpResponse::build(StatusCode::from_u16(code).unwrap_or(StatusCode::OK)).content_type("text/html; charset=utf-8").body(body))
}

pub async fn detail(req: HttpRequest, id: web::Path<String>) -> PageResult {
    let a = user(&req)?;
    drill_page(&req, &a, &id, None).await
}

/// Abort a running drill (operator and admin).
pub async fn abort(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>, id: web::Path<String>) -> PageResult {
    let a = user(&req)?;
    if a.role < Role::Operator {
        return Err(PageError { code: 403, message: "Aborting a drill needs the operator role.".into() });
    }
    let id = id.into_inner();
    let actor = format!("console:{}", a.user.username);
    let result = drills(&req)?.abort(&id, &actor).await;
    let (outcome, detail) = match &result {
        Ok(v) => ("ok", format!("drill {} ({}) aborted", v.id, v.name)),
        Err(e) => ("failed", e.to_string()),
    };
    audit::record(
        &st.store,
        console.now_ms(),
        Entry { actor: &a.user.username, action: "drill.abort", target: &id, outcome, address: &a.address, detail: Some(&detail) },
    )
    .await;
    match result {
        Ok(_) => Ok(see_other(&format!("/drills/{}", qv(&id)))),
        Err(e @ DrillError::Conflict(_)) => drill_page(&req, &a, &id, Some((409, e.to_string()))).await,
        Err(e) => Err(drill_error(e)),
    }
}

#[derive(Deserialize)]
pub struct ReportQuery {
    period: Option<String>,
    format: Option<String>,
}

/// The period asked for, or the current month (UTC).
fn period(console: &Console, q: &ReportQuery) -> Result<genset_report::Period, PageError> {
    let p = match q.period.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => p.to_string(),
        None => utc(console.now_ms()).chars().take(7).collect(),
    };
    genset_report::Period::parse(&p).map_err(|e| PageError { code: 400, message: e.to_string() })
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    l: Layout,
    period: String,
    q: String,
}

pub async fn reports(req: HttpRequest, console: web::Data<Console>, q: web::Query<ReportQuery>) -> PageResult {
    let a = user(&req)?;
    let p = period(&console, &q)?;
    super::render(&ReportsPage { l: Layout::new("Reports", "reports", Some(&a)), q: qv(&p.label), period: p.label })
}

async fn report_bytes(
    req: &HttpRequest,
    p: &genset_report::Period,
    format: genset_report::Format,
) -> Result<(&'static str, Vec<u8>), PageError> {
    drills(req)?.render_report(p, format).await.map_err(internal)
}

/// The HTML report as a standalone document. It carries its own inline styles: the guard
/// gives this one route a CSP that allows inline styles and nothing else (see README).
pub async fn view(req: HttpRequest, console: web::Data<Console>, q: web::Query<ReportQuery>) -> PageResult {
    user(&req)?;
    let p = period(&console, &q)?;
    let (ct, body) = report_bytes(&req, &p, genset_report::Format::Html).await?;
    Ok(HttpResponse::Ok().content_type(ct).body(body))
}

pub async fn download(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>, q: web::Query<ReportQuery>) -> PageResult {
    let a = user(&req)?;
    let p = period(&console, &q)?;
    let format: genset_report::Format = match q.format.as_deref() {
        Some(f @ ("pdf" | "csv" | "json")) => f.parse().map_err(|e: String| PageError { code: 400, message: e })?,
        _ => return Err(PageError { code: 400, message: "Format: pdf, csv or json.".into() }),
    };
    let (ct, body) = report_bytes(&req, &p, format).await?;
    let safe: String = p.label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    let detail = format!("{} {}", p.label, format.extension());
    audit::record(
        &st.store,
        console.now_ms(),
        Entry {
            actor: &a.user.username,
            action: "report.export",
            target: &p.label,
            outcome: "ok",
            address: &a.address,
            detail: Some(&detail),
        },
    )
    .await;
    Ok(HttpResponse::Ok()
        .content_type(ct)
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"genset-report-{safe}.{}\"", format.extension())))
        .body(body))
}

#[cfg(test)]
mod tests {
    use genset::drill::Progress;
    use serde_json::Value;

    use super::*;

    fn replay(progress: Progress) -> DrillView {
        DrillView {
            id: "d1".into(),
            name: "n".into(),
            kind: "replay".into(),
            state: "running".into(),
            verdict: None,
            use_cases: vec!["a".into()],
            started_ms: 0,
            deadline_ms: 60_000,
            ended_ms: None,
            actor: "ops".into(),
            spec: Value::Null,
            result: None,
            progress: Some(progress),
        }
    }

    #[test]
    fn a_replay_row_reads_selecting_until_it_has_counted_its_requests() {
        let p = Progress {
            elapsed_ms: 300,
            remaining_ms: 0,
            fraction: 0.0,
            requests_done: 0,
            requests_total: None,
            requests_ok: 0,
            selecting: true,
        };
        let v = row_view(&replay(p.clone()));
        assert_eq!((v.progress, v.progress_text.as_str()), (0, "selecting the recorded requests to replay…"));
        let v = row_view(&replay(Progress {
            selecting: false,
            requests_total: Some(8),
            requests_done: 2,
            requests_ok: 2,
            fraction: 0.25,
            ..p
        }));
        assert_eq!(v.progress, 25);
        assert!(v.progress_text.contains("2 requests of 8, 2 ok"), "{}", v.progress_text);
    }
}
