//! Overview, use cases, models and failover.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{HttpRequest, web};
use askama::Template;
use genset::admin::AdminState;
use genset::config::{ChainStep, Config, UseCaseConfig};
use genset::control::{Controller, Mode};
use serde::Deserialize;

use super::traffic::{Row, rows};
use super::{Layout, PageError, PageResult, internal, not_found, render, see_other, user};
use crate::Console;
use crate::audit::{self, Entry};
use crate::authz::Role;
use crate::db::{self, MinuteRow};
use crate::latency::Hist;
use crate::rollup;
use crate::svg::{self, Series, TrendPoint};
use crate::text::{self, utc};

/// The failover controller (the core's live one).
fn controller(st: &AdminState) -> Option<Arc<Controller>> {
    Some(st.controller.clone())
}

pub struct UpView {
    name: String,
    /// The last four characters of the upstream's key, or "passthrough".
    credential: String,
    api: String,
    breaker: String,
    failover: bool,
    since: String,
    open_until: String,
    openings: u32,
    evidence: Vec<String>,
}

pub struct ControlView {
    wired: bool,
    mode: String,
    effective: String,
    effective_label: String,
    reason: String,
    actor: String,
    since: String,
    upstreams: Vec<UpView>,
}

fn effective_label(e: &str) -> &'static str {
    match e {
        "cloud" => "Cloud",
        "failover" => "Failing over to local",
        "forced-local" => "Forced local",
        "forced-cloud" => "Forced cloud",
        _ => "Unknown",
    }
}

fn control_view(st: &AdminState, evidence_per_upstream: usize) -> ControlView {
    let cfg = st.config.load();
    let credential = |name: &str| {
        cfg.upstreams
            .iter()
            .find(|u| u.name == name)
            .and_then(|u| u.api_key.as_ref().map(|k| k.last4()))
            .unwrap_or_else(|| "client keys (passthrough)".into())
    };
    match controller(st) {
        Some(c) => {
            let s = c.snapshot();
            ControlView {
                wired: true,
                mode: s.mode.mode.as_str().to_string(),
                effective: s.effective.to_string(),
                effective_label: effective_label(s.effective).to_string(),
                reason: s.mode.reason.clone(),
                actor: s.mode.actor.clone(),
                since: utc(s.mode.since_ms),
                upstreams: s
                    .upstreams
                    .iter()
                    .map(|u| UpView {
                        credential: credential(&u.name),
                        name: u.name.clone(),
                        api: u.api.to_string(),
                        breaker: u.breaker.to_string(),
                        failover: u.failover,
                        since: u.since_ms.map(utc).unwrap_or_else(|| "—".into()),
                        open_until: u.open_until_ms.map(utc).unwrap_or_else(|| "—".into()),
                        openings: u.openings,
                        evidence: u
                            .evidence
                            .iter()
                            .rev()
                            .take(evidence_per_upstream)
                            .map(|e| format!("{} {} ({}): {}", utc(e.ts_ms), e.outcome, e.source, e.detail))
                            .collect(),
                    })
                    .collect(),
            }
        }
        None => ControlView {
            wired: false,
            mode: "auto".into(),
            effective: "cloud".into(),
            effective_label: effective_label("cloud").into(),
            reason: "default".into(),
            actor: "genset".into(),
            since: "start".into(),
            upstreams: cfg
                .upstreams
                .iter()
                .map(|u| UpView {
                    credential: credential(&u.name),
                    name: u.name.clone(),
                    api: genset::metrics::api_label(u.api).to_string(),
                    breaker: "unknown".into(),
                    failover: false,
                    since: "—".into(),
                    open_until: "—".into(),
                    openings: 0,
                    evidence: Vec::new(),
                })
                .collect(),
        },
    }
}

pub struct EventView {
    ts: String,
    kind: String,
    subject: String,
    cause: String,
    detail: String,
}

fn event_view(e: &genset::store::EventRow) -> EventView {
    EventView {
        ts: utc(e.ts_ms),
        kind: e.kind.clone(),
        subject: e.subject.clone(),
        cause: e.cause.clone(),
        detail: e.detail.clone().unwrap_or_default().chars().take(400).collect(),
    }
}

pub struct Capacity {
    name: String,
    active: usize,
    slots: usize,
    queue: usize,
    bar: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    l: Layout,
    c: ControlView,
    chart: String,
    latency_chart: String,
    latency: LatencySummary,
    local_share: String,
    local_bar: String,
    requests_hour: i64,
    errors_hour: i64,
    capacity: Vec<Capacity>,
    last_drill: Option<String>,
    events: Vec<EventView>,
    stale: bool,
}

pub fn is_local(served_by: &str) -> bool {
    served_by.starts_with("local")
}

/// Requests per minute per use case over the hour before `now`, as an SVG line chart.
fn rpm_chart(minutes: &[MinuteRow], now: i64, title: &str) -> String {
    let end = now - now.rem_euclid(60_000);
    let start = end - 59 * 60_000;
    let mut by_uc: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for m in minutes.iter().filter(|m| m.minute_ms >= start && m.minute_ms <= end) {
        let idx = ((m.minute_ms - start) / 60_000) as usize;
        let v = by_uc.entry(m.use_case.as_str()).or_insert_with(|| vec![0.0; 60]);
        if let Some(slot) = v.get_mut(idx) {
            *slot += m.requests as f64;
        }
    }
    let series: Vec<Series> = by_uc.into_iter().map(|(k, v)| Series { label: k.to_string(), values: v }).collect();
    let labels: Vec<(usize, String)> = [0usize, 15, 30, 45, 59].iter().map(|i| (*i, text::hm(start + *i as i64 * 60_000))).collect();
    svg::lines(title, &series, &labels, "requests / min")
}

/// The hour's latency percentiles (ms), "—" without traffic.
pub struct LatencySummary {
    total_p50: String,
    total_p95: String,
    ttfb_p50: String,
    ttfb_p95: String,
}

fn ms_text(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v >= 10_000.0 => format!("{:.1} s", v / 1000.0),
        Some(v) => format!("{v:.0} ms"),
    }
}

/// p50 and p95 of the total time and of the time to first byte, per minute over the hour
/// before `now` (from the rollup's histograms), as an SVG line chart, and over the whole hour.
fn latency_chart(minutes: &[MinuteRow], now: i64, title: &str) -> (String, LatencySummary) {
    let end = now - now.rem_euclid(60_000);
    let start = end - 59 * 60_000;
    let mut total = vec![Hist::default(); 60];
    let mut ttfb = vec![Hist::default(); 60];
    for m in minutes.iter().filter(|m| m.minute_ms >= start && m.minute_ms <= end) {
        let idx = ((m.minute_ms - start) / 60_000) as usize;
        if let (Some(t), Some(f)) = (total.get_mut(idx), ttfb.get_mut(idx)) {
            t.merge(&Hist::decode(&m.total_hist));
            f.merge(&Hist::decode(&m.ttfb_hist));
        }
    }
    let per_minute = |h: &[Hist], q: f64| h.iter().map(|h| h.quantile(q).unwrap_or(f64::NAN)).collect::<Vec<f64>>();
    let series = vec![
        Series { label: "total p50".into(), values: per_minute(&total, 0.5) },
        Series { label: "total p95".into(), values: per_minute(&total, 0.95) },
        Series { label: "first byte p50".into(), values: per_minute(&ttfb, 0.5) },
        Series { label: "first byte p95".into(), values: per_minute(&ttfb, 0.95) },
    ];
    let labels: Vec<(usize, String)> = [0usize, 15, 30, 45, 59].iter().map(|i| (*i, text::hm(start + *i as i64 * 60_000))).collect();
    let hour = |h: &[Hist]| {
        let mut all = Hist::default();
        for m in h {
            all.merge(m);
        }
        all
    };
    let (t, f) = (hour(&total), hour(&ttfb));
    let summary = LatencySummary {
        total_p50: ms_text(t.quantile(0.5)),
        total_p95: ms_text(t.quantile(0.95)),
        ttfb_p50: ms_text(f.quantile(0.5)),
        ttfb_p95: ms_text(f.quantile(0.95)),
    };
    (svg::lines(title, &series, &labels, "ms"), summary)
}

pub async fn overview(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>) -> PageResult {
    let a = user(&req)?;
    let now = console.now_ms();
    // The chart's hour: the current minute and the 59 before it.
    let since = now - now.rem_euclid(60_000) - 59 * 60_000;
    let minutes = rollup::minutes(&st.store, since, None).await.map_err(internal)?;
    let (mut total, mut local, mut errors) = (0i64, 0i64, 0i64);
    for m in &minutes {
        total += m.requests;
        errors += m.errors;
        if is_local(&m.served_by) {
            local += m.requests;
        }
    }
    let share = if total > 0 { local as f64 / total as f64 } else { 0.0 };
    let capacity = st
        .models
        .stats()
        .into_iter()
        .map(|m| Capacity {
            bar: svg::bar(
                &format!("{} slots in use", m.name),
                if m.parallel > 0 { m.active_slots as f64 / m.parallel as f64 } else { 0.0 },
            ),
            name: m.name,
            active: m.active_slots,
            slots: m.parallel,
            queue: m.queue_depth,
        })
        .collect();
    let events = st.store.list_events(200).await.map_err(internal)?;
    let last_drill = events.iter().find(|e| e.kind.starts_with("drill")).map(|e| format!("{} {}: {}", utc(e.ts_ms), e.subject, e.cause));
    let hw = rollup::high_water(&st.store).await.map_err(internal)?.unwrap_or(0);
    let stale = db::max_exchange_id(&st.store).await.map_err(internal)? - hw > rollup::TAIL_LIMIT;
    let (latency_chart, latency) =
        latency_chart(&minutes, now, "Latency per minute (p50, p95 of total time and time to first byte), last hour");
    render(&OverviewPage {
        l: Layout::new("Overview", "overview", Some(&a)).refresh(10),
        c: control_view(&st, 3),
        chart: rpm_chart(&minutes, now, "Requests per minute by use case, last hour"),
        latency_chart,
        latency,
        local_share: format!("{:.1} %", share * 100.0),
        local_bar: svg::bar("share served locally", share),
        requests_hour: total,
        errors_hour: errors,
        capacity,
        last_drill,
        events: events.iter().take(10).map(event_view).collect(),
        stale,
    })
}

pub struct UcRow {
    name: String,
    description: String,
    rules: usize,
    routing: String,
    on_cutoff: String,
    ready: String,
    requests: i64,
    errors: i64,
    local: i64,
    readiness: ReadinessView,
    /// A small SVG of the last readiness scores; empty when there are none.
    spark: String,
}

/// How many readiness computations the trend charts show.
const TREND_POINTS: i64 = 200;
/// How many the use case list's small charts show.
const SPARK_POINTS: i64 = 30;

/// A use case's readiness over time (oldest first in `history_newest_first` reversed).
fn readiness_trend(name: &str, history_newest_first: &[genset::store::evaluate::ReadinessRow], now: i64) -> String {
    let points: Vec<TrendPoint> = history_newest_first
        .iter()
        .rev()
        .map(|r| TrendPoint { ts_ms: r.ts_ms, score: r.score, lower: r.score_lower, upper: r.score_upper, verdict: r.verdict.clone() })
        .collect();
    let to = points.last().map(|p| p.ts_ms.max(now)).unwrap_or(now);
    let from = points.first().map(|p| p.ts_ms).unwrap_or(to).min(to - 3_600_000);
    let labels: Vec<(i64, String)> = (0..=3).map(|k| from + (to - from) * k / 3).map(|ts| (ts, text::mdhm(ts))).collect();
    svg::trend(&format!("Readiness score of {name} over time, with its 95% interval"), &points, from, to, &labels)
}

/// A use case's latest measured readiness (the evaluator's, as `GET
/// /api/v1/use-cases/{name}/readiness` shows it).
#[derive(Default)]
pub struct ReadinessView {
    /// ready | marginal | not-ready | none
    verdict: String,
    score: String,
    lower: String,
    upper: String,
    n: i64,
    trend: String,
    computed: String,
    reasons: Vec<String>,
    /// The verdict the failover policy uses now (the controller's).
    serving: String,
}

fn fmt_score(x: f64) -> String {
    format!("{x:.3}")
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:+.3}"),
            _ => n.to_string(),
        },
        o => o.to_string(),
    }
}

fn readiness_view(st: &AdminState, name: &str, row: Option<&genset::store::evaluate::ReadinessRow>) -> ReadinessView {
    let serving = st.controller.verdict(name).map(|v| v.verdict.to_string()).unwrap_or_else(|| "—".into());
    let Some(r) = row else {
        return ReadinessView {
            verdict: "none".into(),
            score: "—".into(),
            lower: "—".into(),
            upper: "—".into(),
            trend: "—".into(),
            computed: "—".into(),
            reasons: vec!["not evaluated yet".into()],
            serving,
            n: 0,
        };
    };
    let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
    let reasons: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&r.reasons)
        .unwrap_or_default()
        .iter()
        .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
        .collect();
    ReadinessView {
        verdict: r.verdict.clone(),
        score: fmt_score(r.score),
        lower: fmt_score(r.score_lower),
        upper: fmt_score(r.score_upper),
        n: r.n,
        trend: json_text(&detail["readiness"]["trend"]),
        computed: utc(r.ts_ms),
        reasons,
        serving,
    }
}

pub struct WorstView {
    ts: String,
    source: String,
    score: String,
    passed: bool,
    prompt: String,
    cloud: String,
    local: String,
    error: String,
}

#[derive(Template)]
#[template(path = "use_cases.html")]
struct UseCasesPage {
    l: Layout,
    rows: Vec<UcRow>,
}

fn counts(minutes: &[MinuteRow], uc: &str) -> (i64, i64, i64) {
    minutes
        .iter()
        .filter(|m| m.use_case == uc)
        .fold((0, 0, 0), |(r, e, l), m| (r + m.requests, e + m.errors, l + if is_local(&m.served_by) { m.requests } else { 0 }))
}

pub async fn use_cases(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>) -> PageResult {
    let a = user(&req)?;
    let now = console.now_ms();
    let minutes = rollup::totals(&st.store, now - 24 * 3_600_000, None).await.map_err(internal)?;
    let cfg = st.config.load();
    let latest = st.store.latest_readiness().await.map_err(internal)?;
    // One indexed read of (use_case, id) per use case that has a readiness at all.
    let mut sparks: BTreeMap<String, String> = BTreeMap::new();
    for r in &latest {
        let h = st.store.readiness_history(&r.use_case, SPARK_POINTS).await.map_err(internal)?;
        let scores: Vec<f64> = h.iter().rev().map(|r| r.score).collect();
        sparks.insert(r.use_case.clone(), svg::spark(&format!("Readiness of {}, last {} computations", r.use_case, scores.len()), &scores));
    }
    let mut rows: Vec<UcRow> = cfg
        .use_cases
        .iter()
        .map(|u| {
            let (r, e, l) = counts(&minutes, &u.name);
            UcRow {
                spark: sparks.get(&u.name).cloned().unwrap_or_default(),
                name: u.name.clone(),
                description: u.description.clone(),
                rules: u.rules.len(),
                routing: u.routing.as_str().into(),
                on_cutoff: u.on_cutoff.as_str().into(),
                ready: if u.local_ready { "yes (configured)".into() } else { "no".into() },
                requests: r,
                errors: e,
                local: l,
                readiness: readiness_view(&st, &u.name, latest.iter().find(|r| r.use_case == u.name)),
            }
        })
        .collect();
    let (r, e, l) = counts(&minutes, genset::classify::UNCLASSIFIED);
    rows.push(UcRow {
        name: genset::classify::UNCLASSIFIED.into(),
        description: "traffic no use case matches".into(),
        rules: 0,
        routing: "—".into(),
        on_cutoff: "—".into(),
        ready: "—".into(),
        requests: r,
        errors: e,
        local: l,
        readiness: ReadinessView { verdict: "—".into(), ..Default::default() },
        spark: String::new(),
    });
    render(&UseCasesPage { l: Layout::new("Use cases", "use-cases", Some(&a)), rows })
}

#[derive(Template)]
#[template(path = "use_case.html")]
struct UseCasePage {
    l: Layout,
    name: String,
    description: String,
    routing: String,
    on_cutoff: String,
    chain: String,
    ready: String,
    requests: i64,
    errors: i64,
    local: i64,
    rules: Vec<String>,
    chart: String,
    latency_chart: String,
    latency: LatencySummary,
    trend: String,
    rows: Vec<Row>,
    can_detail: bool,
    has_readiness: bool,
    readiness: ReadinessView,
    worst: Vec<WorstView>,
}

fn describe_rule(r: &genset::config::MatchRule) -> String {
    let mut parts = Vec::new();
    if let Some((k, v)) = &r.header {
        parts.push(format!("header {k} = {v:?}"));
    }
    if let Some(m) = &r.model {
        parts.push(format!("model matches {m:?}"));
    }
    if let Some(p) = &r.path {
        parts.push(format!("path = {p:?}"));
    }
    if let Some(re) = &r.system_prompt {
        parts.push(format!("system prompt matches /{}/", re.as_str()));
    }
    if let Some(h) = &r.api_key_sha256 {
        parts.push(format!("API key sha256 {}", text::last4(h)));
    }
    if parts.is_empty() { "matches everything".into() } else { parts.join(" and ") }
}

/// The chain as the planner runs it (`route::plan`): a use case that names no cloud step
/// keeps the routing default (`[routing] default_chain`, else the API's upstream) and then
/// its own local steps.
fn describe_chain(cfg: &Config, uc: &UseCaseConfig) -> String {
    let default = cfg.default_chain.as_deref().unwrap_or(&[]);
    let uses_default = uc.chain.is_empty() || uc.default_cloud;
    let mut steps: Vec<&ChainStep> = if uses_default { default.iter().collect() } else { uc.chain.iter().collect() };
    if uc.default_cloud {
        for s in &uc.chain {
            if !steps.contains(&s) {
                steps.push(s);
            }
        }
    }
    let named = steps.iter().map(|s| match s {
        ChainStep::Upstream(i) => cfg.upstreams.get(*i).map(|u| u.name.clone()).unwrap_or_else(|| format!("upstream #{i}")),
        ChainStep::Local(n) => format!("local:{n}"),
    });
    let api_default = (uses_default && default.is_empty()).then(|| "the API's default upstream".to_string());
    api_default.into_iter().chain(named).collect::<Vec<_>>().join(" → ")
}

pub async fn use_case(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>, name: web::Path<String>) -> PageResult {
    let a = user(&req)?;
    let now = console.now_ms();
    let cfg = st.config.load();
    let name = name.into_inner();
    let uc = cfg.use_cases.iter().find(|u| u.name == name);
    if uc.is_none() && name != genset::classify::UNCLASSIFIED {
        return Err(not_found("No such use case in the configuration."));
    }
    let day = rollup::totals(&st.store, now - 24 * 3_600_000, Some(&name)).await.map_err(internal)?;
    let (requests, errors, local) = counts(&day, &name);
    let minutes = rollup::minutes(&st.store, now - now.rem_euclid(60_000) - 59 * 60_000, Some(&name)).await.map_err(internal)?;
    let recent = db::list_traffic(&st.store, &db::TrafficQuery { use_case: Some(name.clone()), limit: 10, ..Default::default() })
        .await
        .map_err(internal)?;
    let (readiness, worst, trend) = match uc {
        Some(u) => {
            // The same reads as the evaluator's API (`GET /api/v1/use-cases/{name}/readiness`).
            let history = st.store.readiness_history(&u.name, TREND_POINTS).await.map_err(internal)?;
            let since = genset::record::now_ms() - cfg.evaluation.window.as_millis() as i64;
            let worst = st.store.worst_evaluations(&u.name, since, 5).await.map_err(internal)?;
            let worst = worst
                .into_iter()
                .map(|w| WorstView {
                    ts: utc(w.ts_ms),
                    source: w.canary.map(|c| format!("canary {c}")).unwrap_or(w.source),
                    score: fmt_score(w.score),
                    passed: w.passed,
                    prompt: w.prompt.unwrap_or_default(),
                    cloud: w.cloud_answer.unwrap_or_default(),
                    local: w.local_answer.unwrap_or_default(),
                    error: w.error.unwrap_or_default(),
                })
                .collect();
            (readiness_view(&st, &u.name, history.first()), worst, readiness_trend(&u.name, &history, now))
        }
        None => (ReadinessView::default(), Vec::new(), String::new()),
    };
    let (latency_chart, latency) = latency_chart(&minutes, now, &format!("Latency per minute of {name} (p50, p95), last hour"));
    let page = UseCasePage {
        has_readiness: uc.is_some_and(|u| genset::evaluate::local_model(u).is_some()) || !matches!(readiness.verdict.as_str(), "" | "none"),
        readiness,
        worst,
        l: Layout::new(format!("Use case {name}"), "use-cases", Some(&a)),
        description: uc.map(|u| u.description.clone()).unwrap_or_else(|| "traffic no use case matches".into()),
        routing: uc.map(|u| u.routing.as_str().to_string()).unwrap_or_else(|| "—".into()),
        on_cutoff: uc.map(|u| u.on_cutoff.as_str().to_string()).unwrap_or_else(|| "—".into()),
        chain: uc.map(|u| describe_chain(&cfg, u)).unwrap_or_else(|| "the default upstream".into()),
        ready: uc.map(|u| if u.local_ready { "yes (configured)" } else { "no" }).unwrap_or("—").into(),
        requests,
        errors,
        local,
        rules: uc.map(|u| u.rules.iter().map(describe_rule).collect()).unwrap_or_default(),
        chart: rpm_chart(&minutes, now, &format!("Requests per minute of {name}, last hour")),
        latency_chart,
        latency,
        trend,
        rows: rows(&recent),
        can_detail: a.role >= Role::Operator,
        name,
    };
    render(&page)
}

pub struct ModelView {
    name: String,
    kind: String,
    file: String,
    memory: String,
    context: usize,
    active: usize,
    slots: usize,
    queue: usize,
    queue_capacity: usize,
    decode: String,
    prompt: String,
}

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    l: Layout,
    models: Vec<ModelView>,
    configured_only: Vec<String>,
}

pub async fn models(req: HttpRequest, st: web::Data<AdminState>) -> PageResult {
    let a = user(&req)?;
    let stats = st.models.stats();
    let cfg = st.config.load();
    let configured_only = cfg.models.iter().map(|m| m.name.clone()).filter(|n| !stats.iter().any(|s| &s.name == n)).collect();
    let models = stats
        .into_iter()
        .map(|m| ModelView {
            kind: serde_json::to_value(m.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            file: if m.file_size > 0 { text::bytes(m.file_size) } else { "—".into() },
            memory: if m.memory_bytes > 0 { text::bytes(m.memory_bytes) } else { "—".into() },
            context: m.context,
            active: m.active_slots,
            slots: m.parallel,
            queue: m.queue_depth,
            queue_capacity: m.queue_capacity,
            decode: format!("{:.1}", m.decode_tokens_per_second),
            prompt: format!("{:.1}", m.prompt_tokens_per_second),
            name: m.name,
        })
        .collect();
    render(&ModelsPage { l: Layout::new("Models", "models", Some(&a)).refresh(10), models, configured_only })
}

#[derive(Template)]
#[template(path = "failover.html")]
struct FailoverPage {
    l: Layout,
    c: ControlView,
    can_flip: bool,
    events: Vec<EventView>,
}

pub async fn failover(req: HttpRequest, st: web::Data<AdminState>) -> PageResult {
    let a = user(&req)?;
    let events = st.store.list_events(200).await.map_err(internal)?;
    let events = events.iter().filter(|e| matches!(e.kind.as_str(), "mode" | "breaker" | "failover")).take(100).map(event_view).collect();
    render(&FailoverPage {
        l: Layout::new("Failover", "failover", Some(&a)),
        c: control_view(&st, 5),
        can_flip: a.role >= Role::Operator,
        events,
    })
}

#[derive(Template)]
#[template(path = "flip.html")]
struct FlipPage {
    l: Layout,
    csrf: String,
    mode: String,
    current: String,
    explain: String,
    reason: String,
    error: Option<String>,
}

fn explain(m: Mode) -> &'static str {
    match m {
        Mode::ForceLocal => "Every use case that may be served locally is served from local models, as during a cut-off.",
        Mode::ForceCloud => "Local failover is off: requests go to the cloud even when its breakers are open.",
        Mode::Auto => "The breakers decide: traffic fails over when the cloud is cut off and returns when it is back.",
    }
}

#[derive(Deserialize)]
pub struct FlipQuery {
    mode: String,
}

fn flip_page(st: &AdminState, a: &crate::session::Authed, mode: Mode, reason: String, error: Option<String>) -> PageResult {
    let c = control_view(st, 0);
    render(&FlipPage {
        l: Layout::new("Change the mode", "failover", Some(a)),
        csrf: a.csrf.clone(),
        mode: mode.as_str().into(),
        current: format!("{} ({})", c.mode, c.effective_label),
        explain: explain(mode).into(),
        reason,
        error,
    })
}

pub async fn flip_form(req: HttpRequest, st: web::Data<AdminState>, q: web::Query<FlipQuery>) -> PageResult {
    let a = user(&req)?;
    let mode: Mode = q.mode.parse().map_err(|e: String| PageError { code: 400, message: e })?;
    flip_page(&st, &a, mode, String::new(), None)
}

#[derive(Deserialize)]
pub struct FlipForm {
    mode: String,
    reason: String,
    confirm: Option<String>,
    password: String,
}

pub async fn flip(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>, form: web::Form<FlipForm>) -> PageResult {
    let a = user(&req)?;
    let f = form.into_inner();
    let mode: Mode = f.mode.parse().map_err(|e: String| PageError { code: 400, message: e })?;
    let reason = f.reason.trim().to_string();
    if reason.is_empty() {
        return flip_page(&st, &a, mode, reason, Some("A reason is required.".into()));
    }
    if f.confirm.as_deref() != Some("yes") {
        return flip_page(&st, &a, mode, reason, Some("Tick the confirmation.".into()));
    }
    if !super::auth::reauth(&st, &console, &a, f.password, "mode.flip").await? {
        return flip_page(&st, &a, mode, reason, Some("Your password is not right.".into()));
    }
    let now = console.now_ms();
    let Some(c) = controller(&st) else {
        return flip_page(&st, &a, mode, reason, Some("The failover controller is not wired to the console in this build.".into()));
    };
    let from = c.mode().mode;
    let actor = format!("console:{}", a.user.username);
    match c.set_mode(mode, &reason, &actor) {
        Ok(_) => {
            let detail = format!("{} → {}: {reason}", from.as_str(), mode.as_str());
            audit::record(
                &st.store,
                now,
                Entry {
                    actor: &a.user.username,
                    action: "mode.flip",
                    target: mode.as_str(),
                    outcome: "ok",
                    address: &a.address,
                    detail: Some(&detail),
                },
            )
            .await;
            Ok(see_other("/failover"))
        }
        Err(e) => {
            audit::record(
                &st.store,
                now,
                Entry {
                    actor: &a.user.username,
                    action: "mode.flip",
                    target: mode.as_str(),
                    outcome: "failed",
                    address: &a.address,
                    detail: Some(&e),
                },
            )
            .await;
            flip_page(&st, &a, mode, reason, Some(e))
        }
    }
}
