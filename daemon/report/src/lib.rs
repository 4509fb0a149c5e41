//! genset SLA reports: pure functions from what genset recorded (exchanges, events,
//! readiness, drills) plus a price table and a period to the figures a manager signs, and
//! renderers for them (JSON, CSV, HTML with print styles, PDF rendered in-process).
//!
//! No I/O here: the daemon reads the store and hands over [`Input`]; tests build a known
//! history and check every figure against hand-computed values.
//!
//! # Definitions (what every figure means)
//!
//! Only **client requests** count: exchanges with `final_attempt = true` (a failed attempt
//! that was retried on another step is not a request, and never a completion).
//!
//! - A request **failed** when its final answer was an error the client could not act on:
//!   status `>= 500` (including genset's own 503 "cloud cut off"), status `429`, or a 2xx/3xx
//!   answer that did not complete (a cut stream). Other 4xx (bad request, context length,
//!   content policy, unknown model) are the client's own and count as answered.
//! - **Effective availability** = (requests − failed) / requests: what clients got.
//! - A request was **rescued** when genset answered it although the cloud could not:
//!   `rescue` is `fallback`, `continuation` or `cut-off`, it did not fail, and it was not part
//!   of a drill (`mode = drill`: the cloud was healthy then).
//! - **Cloud availability** = (requests − cloud-failed) / requests, where cloud-failed =
//!   requests that failed or were rescued, except those the cloud was never asked for (a
//!   drill, `rescue = local-policy`, or served locally with no rescue at all, i.e. `local-only`
//!   / explicit `local/<model>` requests): what the org would have had without genset.
//! - With no requests both availabilities are 100%.
//! - **Error budget** (requests) = requests × (1 − SLO). **Burn** = failed / budget (as a
//!   percentage of the budget; over 100% means the SLO is missed); **left** = 100% − burn.
//!   The cloud burn is the same with cloud-failed.
//! - **Incidents** are rebuilt per upstream from the events: a breaker `open` starts one
//!   (its time is the **detection**); the failover flip (`failover`, `to = failover`) is the
//!   **flip**; the breaker closing after that is the **recovery**; the flip back (`to =
//!   cloud`) ends it. An opening that closes again without a flip is an incident without a
//!   flip, ending at the close. The **first failure** is the earliest evidence in the opening
//!   event (`detail.evidence[].ts_ms`), else the earliest failed attempt on that upstream in
//!   the 10 minutes before detection, else the detection. **MTTD** = detection − first
//!   failure; **MTTR** = recovery (or the end, when there is none) − first failure; both are
//!   means over the incidents that have them. An incident still open at the end of the
//!   period ends at the period's end. Its requests are the client requests between first
//!   failure and end (all use cases): rescued, served locally (`local:*`, not a drill) and
//!   failed.
//! - **Requests by served-by** count client requests; **tokens by served-by** add the usage
//!   of every recorded row (a failed attempt that consumed tokens was paid for).
//! - **Latency percentiles** are nearest-rank (`genset_eval::stats::percentile`) of
//!   `total_ms` and `ttfb_ms` of client requests, by the mode they were served in.
//! - **Cost**: each cloud row's (`cloud:*`) prompt and completion tokens × the price of its
//!   model (per million tokens). **Saved**: each local row's tokens × the price of the
//!   cloud model of its use case (the most used priced cloud model of that use case in the
//!   period, else the price table's `default` entry), split by why it was local.

pub mod fixture;
mod pdf;
pub mod period;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use genset_eval::stats::percentile;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(any(test, feature = "pdf-text"))]
pub use pdf::pdf_text;
pub use pdf::render_pdf;
pub use period::{Period, PeriodError, format_ts};
pub use render::{render_csv, render_html, render_json};

/// One recorded exchange, as much of it as reports need.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ExchangeSummary {
    pub ts_ms: i64,
    pub use_case: String,
    /// `cloud:<upstream>`, `local:<model>` or `genset`.
    pub served_by: String,
    pub model: Option<String>,
    pub status: i64,
    pub completed: bool,
    pub ttfb_ms: Option<f64>,
    pub total_ms: f64,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub final_attempt: bool,
    pub rescue: Option<String>,
    pub mode: Option<String>,
}

/// One event of the timeline (`events` table).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Event {
    pub ts_ms: i64,
    pub kind: String,
    pub subject: String,
    pub cause: String,
    pub detail: Value,
}

/// A drill, as reports show it.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct DrillSummary {
    pub id: String,
    pub name: String,
    /// live | replay
    pub kind: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub use_cases: Vec<String>,
    /// running | passed | passed-with-findings | failed | aborted
    pub verdict: String,
    pub findings: Vec<String>,
    pub rto_ms: Option<f64>,
    pub success_rate: Option<f64>,
}

/// One readiness computation of a use case.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ReadinessPoint {
    pub ts_ms: i64,
    pub use_case: String,
    pub verdict: String,
    pub score: f64,
    pub lower: f64,
    pub upper: f64,
    pub n: i64,
}

/// Price of a model per million tokens.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    pub fn cost(&self, prompt: i64, completion: i64) -> f64 {
        (prompt as f64 * self.input_per_mtok + completion as f64 * self.output_per_mtok) / 1e6
    }
}

/// Everything a report is computed from.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Input {
    pub period: Option<Period>,
    /// The availability objective, in percent (e.g. 99.9).
    pub slo_percent: f64,
    /// Exchanges of the period (others are ignored).
    pub exchanges: Vec<ExchangeSummary>,
    /// Events of the period, plus any before it that an incident needs (others ignored).
    pub events: Vec<Event>,
    pub drills: Vec<DrillSummary>,
    pub readiness: Vec<ReadinessPoint>,
    /// Model name → price; the key `default` prices local answers of use cases without a
    /// priced cloud model.
    pub prices: BTreeMap<String, Price>,
    pub currency: String,
    pub generated_ms: i64,
    /// Organisation name shown on the title page.
    pub title: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Availability {
    pub requests: u64,
    pub failed: u64,
    pub rescued: u64,
    /// Requests the cloud alone would not have answered.
    pub cloud_failed: u64,
    pub served_locally: u64,
    pub effective_percent: f64,
    pub cloud_percent: f64,
    pub slo_percent: f64,
    pub meets_slo: bool,
    /// Failures the SLO allows over the period.
    pub budget_requests: f64,
    pub budget_burn_percent: f64,
    pub budget_left_percent: f64,
    pub cloud_budget_burn_percent: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UseCaseFigures {
    pub use_case: String,
    pub availability: Availability,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Incident {
    pub upstream: String,
    pub first_failure_ms: i64,
    pub detection_ms: i64,
    pub flip_ms: Option<i64>,
    pub recovery_ms: Option<i64>,
    pub flip_back_ms: Option<i64>,
    pub end_ms: i64,
    /// Still going at the end of the period.
    pub ongoing: bool,
    pub cause: String,
    pub ttd_ms: i64,
    pub ttr_ms: i64,
    pub requests: u64,
    pub rescued: u64,
    pub served_locally: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServedByRow {
    pub served_by: String,
    pub requests: u64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencyRow {
    pub mode: String,
    pub requests: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ttfb_p50_ms: Option<f64>,
    pub ttfb_p95_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QualityRow {
    pub use_case: String,
    /// Requests of this use case served locally during failover (not drills).
    pub served_in_failover: u64,
    pub verdict: Option<String>,
    pub score: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Last score of the period minus the first (readiness trend); `None` with fewer than 2.
    pub trend: Option<f64>,
    pub points: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CostRow {
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub spend: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cost {
    pub currency: String,
    pub cloud_spend: f64,
    pub saved: f64,
    /// failover | local-first | drill | other → amount saved.
    pub saved_by_reason: BTreeMap<String, f64>,
    pub by_model: Vec<CostRow>,
    /// Cloud models with tokens but no price (their spend is not counted).
    pub unpriced_models: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub effective_percent: f64,
    pub cloud_percent: f64,
    pub slo_percent: f64,
    pub meets_slo: bool,
    pub budget_left_percent: f64,
    pub incidents: u64,
    pub mttd_ms: Option<f64>,
    pub mttr_ms: Option<f64>,
    pub requests_rescued: u64,
    pub last_drill: Option<String>,
    pub last_drill_verdict: Option<String>,
    pub cost_saved: f64,
    pub cloud_spend: f64,
    pub open_findings: Vec<String>,
}

/// The figures of one period.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub title: String,
    pub period: Period,
    pub generated_ms: i64,
    pub summary: Summary,
    pub overall: Availability,
    pub use_cases: Vec<UseCaseFigures>,
    pub incidents: Vec<Incident>,
    pub served_by: Vec<ServedByRow>,
    pub latency: Vec<LatencyRow>,
    pub quality: Vec<QualityRow>,
    pub drills: Vec<DrillSummary>,
    pub cost: Cost,
}

/// Whether a client request failed (see the crate docs).
pub fn failed(e: &ExchangeSummary) -> bool {
    e.status >= 500 || e.status == 429 || (e.status < 400 && !e.completed)
}

fn is_drill(e: &ExchangeSummary) -> bool {
    e.mode.as_deref() == Some("drill")
}

fn is_local(e: &ExchangeSummary) -> bool {
    e.served_by.starts_with("local:")
}

/// Whether genset rescued a request the cloud could not answer.
pub fn rescued(e: &ExchangeSummary) -> bool {
    !failed(e) && !is_drill(e) && matches!(e.rescue.as_deref(), Some("fallback" | "continuation" | "cut-off"))
}

/// Whether the cloud was never asked for this request (it cannot count against the cloud).
fn cloud_not_asked(e: &ExchangeSummary) -> bool {
    is_drill(e) || e.rescue.as_deref() == Some("local-policy") || (is_local(e) && e.rescue.is_none())
}

fn cloud_failed(e: &ExchangeSummary) -> bool {
    !cloud_not_asked(e) && (failed(e) || rescued(e))
}

fn pct(ok: u64, n: u64) -> f64 {
    if n == 0 { 100.0 } else { ok as f64 * 100.0 / n as f64 }
}

/// Availability of a set of client requests against the SLO (percent).
pub fn availability<'a>(requests: impl IntoIterator<Item = &'a ExchangeSummary>, slo_percent: f64) -> Availability {
    let (mut n, mut f, mut r, mut cf, mut local) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for e in requests {
        n += 1;
        f += u64::from(failed(e));
        r += u64::from(rescued(e));
        cf += u64::from(cloud_failed(e));
        local += u64::from(is_local(e) && !is_drill(e));
    }
    let budget = n as f64 * (1.0 - slo_percent / 100.0);
    let burn = |x: u64| {
        if budget > 0.0 {
            x as f64 * 100.0 / budget
        } else if x == 0 {
            0.0
        } else {
            f64::INFINITY
        }
    };
    let effective = pct(n - f, n);
    Availability {
        requests: n,
        failed: f,
        rescued: r,
        cloud_failed: cf,
        served_locally: local,
        effective_percent: effective,
        cloud_percent: pct(n - cf, n),
        slo_percent,
        meets_slo: effective + 1e-9 >= slo_percent,
        budget_requests: budget,
        budget_burn_percent: burn(f),
        budget_left_percent: 100.0 - burn(f),
        cloud_budget_burn_percent: burn(cf),
    }
}

fn detail_to(e: &Event) -> &str {
    e.detail.get("to").and_then(Value::as_str).unwrap_or("")
}

const FIRST_FAILURE_LOOKBACK_MS: i64 = 10 * 60 * 1000;

/// Rebuild the incidents of each upstream from the breaker and failover events.
pub fn incidents(input: &Input, period: &Period) -> Vec<Incident> {
    let mut events: Vec<&Event> = input.events.iter().filter(|e| e.kind == "breaker" || e.kind == "failover").collect();
    events.sort_by_key(|e| e.ts_ms);
    let upstreams: BTreeSet<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    let mut out = Vec::new();
    for up in upstreams {
        let mut cur: Option<Incident> = None;
        for e in events.iter().filter(|e| e.subject == up) {
            match (e.kind.as_str(), detail_to(e)) {
                ("breaker", "open") => {
                    if cur.is_none() {
                        let first = first_failure(input, up, e);
                        cur = Some(Incident {
                            upstream: up.to_string(),
                            first_failure_ms: first,
                            detection_ms: e.ts_ms,
                            flip_ms: None,
                            recovery_ms: None,
                            flip_back_ms: None,
                            end_ms: e.ts_ms,
                            ongoing: true,
                            cause: e.cause.clone(),
                            ttd_ms: e.ts_ms - first,
                            ttr_ms: 0,
                            requests: 0,
                            rescued: 0,
                            served_locally: 0,
                            failed: 0,
                        });
                    } else if let Some(c) = cur.as_mut() {
                        // Re-opened after a failed half-open probe: the same outage.
                        c.recovery_ms = None;
                    }
                }
                ("failover", "failover") => {
                    if let Some(c) = cur.as_mut()
                        && c.flip_ms.is_none()
                    {
                        c.flip_ms = Some(e.ts_ms);
                    }
                }
                ("breaker", "closed") => {
                    if let Some(mut c) = cur.take() {
                        c.recovery_ms = Some(e.ts_ms);
                        if c.flip_ms.is_none() {
                            c.end_ms = e.ts_ms;
                            c.ongoing = false;
                            out.push(c);
                        } else {
                            cur = Some(c);
                        }
                    }
                }
                ("failover", "cloud") => {
                    if let Some(mut c) = cur.take() {
                        c.flip_back_ms = Some(e.ts_ms);
                        c.end_ms = e.ts_ms;
                        c.ongoing = false;
                        out.push(c);
                    }
                }
                _ => {}
            }
        }
        if let Some(mut c) = cur.take() {
            c.end_ms = period.end_ms.max(c.detection_ms);
            out.push(c);
        }
    }
    out.retain(|c| c.end_ms >= period.start_ms && c.detection_ms < period.end_ms);
    for c in &mut out {
        c.ttr_ms = c.recovery_ms.unwrap_or(c.end_ms) - c.first_failure_ms;
        for x in input.exchanges.iter().filter(|x| x.final_attempt && x.ts_ms >= c.first_failure_ms && x.ts_ms <= c.end_ms) {
            c.requests += 1;
            c.rescued += u64::from(rescued(x));
            c.served_locally += u64::from(is_local(x) && !is_drill(x));
            c.failed += u64::from(failed(x));
        }
    }
    out.sort_by_key(|c| (c.first_failure_ms, c.upstream.clone()));
    out
}

fn first_failure(input: &Input, upstream: &str, open: &Event) -> i64 {
    let from_evidence = open
        .detail
        .get("evidence")
        .and_then(Value::as_array)
        .and_then(|ev| ev.iter().filter_map(|x| x.get("ts_ms").and_then(Value::as_i64)).min());
    if let Some(t) = from_evidence {
        return t.min(open.ts_ms);
    }
    let tag = format!("cloud:{upstream}");
    input
        .exchanges
        .iter()
        .filter(|x| {
            x.served_by == tag
                && x.ts_ms <= open.ts_ms
                && x.ts_ms >= open.ts_ms - FIRST_FAILURE_LOOKBACK_MS
                && (failed(x) || !x.final_attempt)
        })
        .map(|x| x.ts_ms)
        .min()
        .unwrap_or(open.ts_ms)
}

fn mean(xs: &[f64]) -> Option<f64> {
    genset_eval::stats::mean(xs)
}

/// Compute every figure of the report.
pub fn compute(input: &Input, period: &Period) -> Report {
    let rows: Vec<&ExchangeSummary> = input.exchanges.iter().filter(|e| period.contains(e.ts_ms)).collect();
    let requests: Vec<&ExchangeSummary> = rows.iter().copied().filter(|e| e.final_attempt).collect();
    let overall = availability(requests.iter().copied(), input.slo_percent);

    let names: BTreeSet<&str> = requests.iter().map(|e| e.use_case.as_str()).collect();
    let use_cases = names
        .iter()
        .map(|uc| UseCaseFigures {
            use_case: uc.to_string(),
            availability: availability(requests.iter().copied().filter(|e| e.use_case == *uc), input.slo_percent),
        })
        .collect();

    let incidents = incidents(input, period);

    // Requests and tokens by served-by.
    let mut sb: BTreeMap<&str, ServedByRow> = BTreeMap::new();
    for e in &rows {
        let r = sb.entry(e.served_by.as_str()).or_insert_with(|| ServedByRow {
            served_by: e.served_by.clone(),
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        r.requests += u64::from(e.final_attempt);
        r.prompt_tokens += e.prompt_tokens.unwrap_or(0);
        r.completion_tokens += e.completion_tokens.unwrap_or(0);
    }
    let served_by = sb.into_values().collect();

    // Latency by mode.
    let mut by_mode: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for e in &requests {
        let m = by_mode.entry(e.mode.clone().unwrap_or_else(|| "cloud".into())).or_default();
        m.0.push(e.total_ms);
        if let Some(t) = e.ttfb_ms {
            m.1.push(t);
        }
    }
    let latency = by_mode
        .into_iter()
        .map(|(mode, (total, ttfb))| LatencyRow {
            mode,
            requests: total.len() as u64,
            p50_ms: percentile(&total, 50.0),
            p95_ms: percentile(&total, 95.0),
            p99_ms: percentile(&total, 99.0),
            ttfb_p50_ms: percentile(&ttfb, 50.0),
            ttfb_p95_ms: percentile(&ttfb, 95.0),
        })
        .collect();

    // Quality: use cases served locally in failover, and every use case with readiness.
    let mut q_names: BTreeSet<String> = input.readiness.iter().filter(|p| p.ts_ms < period.end_ms).map(|p| p.use_case.clone()).collect();
    q_names.extend(requests.iter().filter(|e| is_local(e) && rescued(e)).map(|e| e.use_case.clone()));
    let quality = q_names
        .into_iter()
        .map(|uc| {
            let mut pts: Vec<&ReadinessPoint> = input.readiness.iter().filter(|p| p.use_case == uc && p.ts_ms < period.end_ms).collect();
            pts.sort_by_key(|p| p.ts_ms);
            let in_period: Vec<&&ReadinessPoint> = pts.iter().filter(|p| p.ts_ms >= period.start_ms).collect();
            let last = pts.last();
            QualityRow {
                served_in_failover: requests.iter().filter(|e| e.use_case == uc && is_local(e) && rescued(e)).count() as u64,
                verdict: last.map(|p| p.verdict.clone()),
                score: last.map(|p| p.score),
                lower: last.map(|p| p.lower),
                upper: last.map(|p| p.upper),
                trend: match (in_period.first(), in_period.last()) {
                    (Some(a), Some(b)) if in_period.len() >= 2 => Some(b.score - a.score),
                    _ => None,
                },
                points: in_period.len() as u64,
                use_case: uc,
            }
        })
        .collect();

    let mut drills: Vec<DrillSummary> = input.drills.iter().filter(|d| period.contains(d.started_ms)).cloned().collect();
    drills.sort_by_key(|d| d.started_ms);

    let cost = cost(input, &rows);

    let with_ttd: Vec<f64> = incidents.iter().map(|i| i.ttd_ms as f64).collect();
    let with_ttr: Vec<f64> = incidents.iter().filter(|i| !i.ongoing).map(|i| i.ttr_ms as f64).collect();
    let last = drills.iter().rev().find(|d| d.verdict != "running");
    let mut open_findings: Vec<String> = Vec::new();
    if let Some(d) = last {
        open_findings.extend(d.findings.iter().map(|f| format!("{}: {f}", d.name)));
    }
    if !overall.meets_slo {
        open_findings.push(format!(
            "effective availability {} is below the SLO {}",
            render::percent(overall.effective_percent),
            render::percent(overall.slo_percent)
        ));
    }
    if !cost.unpriced_models.is_empty() {
        open_findings.push(format!("no price for {}: their spend is not counted", cost.unpriced_models.join(", ")));
    }
    let summary = Summary {
        effective_percent: overall.effective_percent,
        cloud_percent: overall.cloud_percent,
        slo_percent: overall.slo_percent,
        meets_slo: overall.meets_slo,
        budget_left_percent: overall.budget_left_percent,
        incidents: incidents.len() as u64,
        mttd_ms: mean(&with_ttd),
        mttr_ms: mean(&with_ttr),
        requests_rescued: overall.rescued,
        last_drill: last.map(|d| d.name.clone()),
        last_drill_verdict: last.map(|d| d.verdict.clone()),
        cost_saved: cost.saved,
        cloud_spend: cost.cloud_spend,
        open_findings,
    };
    Report {
        title: if input.title.is_empty() { "genset".into() } else { input.title.clone() },
        period: period.clone(),
        generated_ms: input.generated_ms,
        summary,
        overall,
        use_cases,
        incidents,
        served_by,
        latency,
        quality,
        drills,
        cost,
    }
}

fn cost(input: &Input, rows: &[&ExchangeSummary]) -> Cost {
    let mut by_model: BTreeMap<String, CostRow> = BTreeMap::new();
    let mut unpriced = BTreeSet::new();
    // Per use case, how many cloud requests each priced model served (its cloud model).
    let mut uc_models: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for e in rows.iter().filter(|e| e.served_by.starts_with("cloud:")) {
        let model = e.model.clone().unwrap_or_else(|| "unknown".into());
        let (p, c) = (e.prompt_tokens.unwrap_or(0), e.completion_tokens.unwrap_or(0));
        let price = input.prices.get(&model);
        if let Some(m) = e.model.as_deref()
            && price.is_some()
        {
            *uc_models.entry(e.use_case.as_str()).or_default().entry(m).or_default() += u64::from(e.final_attempt);
        }
        if price.is_none() && p + c > 0 {
            unpriced.insert(model.clone());
        }
        let r = by_model.entry(model.clone()).or_insert_with(|| CostRow {
            model,
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            spend: 0.0,
        });
        r.requests += u64::from(e.final_attempt);
        r.prompt_tokens += p;
        r.completion_tokens += c;
        r.spend += price.map(|pr| pr.cost(p, c)).unwrap_or(0.0);
    }
    let cloud_spend = by_model.values().map(|r| r.spend).sum();
    let mut saved_by_reason: BTreeMap<String, f64> = BTreeMap::new();
    for e in rows.iter().filter(|e| is_local(e)) {
        let price = uc_models
            .get(e.use_case.as_str())
            .and_then(|m| m.iter().max_by_key(|(name, n)| (**n, std::cmp::Reverse(**name))))
            .and_then(|(name, _)| input.prices.get(*name))
            .or_else(|| input.prices.get("default"));
        let Some(price) = price else { continue };
        let reason = if is_drill(e) {
            "drill"
        } else if e.rescue.as_deref() == Some("local-policy") {
            "local-first"
        } else if e.rescue.is_some() || matches!(e.mode.as_deref(), Some("failover" | "forced-local")) {
            "failover"
        } else {
            "other"
        };
        *saved_by_reason.entry(reason.into()).or_default() += price.cost(e.prompt_tokens.unwrap_or(0), e.completion_tokens.unwrap_or(0));
    }
    Cost {
        currency: if input.currency.is_empty() { "USD".into() } else { input.currency.clone() },
        cloud_spend,
        saved: saved_by_reason.values().sum(),
        saved_by_reason,
        by_model: by_model.into_values().collect(),
        unpriced_models: unpriced.into_iter().collect(),
    }
}

/// Compute the report of `input.period`.
pub fn report(input: &Input) -> Option<Report> {
    input.period.as_ref().map(|p| compute(input, p))
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
    Html,
    Pdf,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "html" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            o => Err(format!("unknown format {o:?}: expected json, csv, html or pdf")),
        }
    }
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }
}

/// Render a report in one format.
pub fn render(report: &Report, format: Format) -> Result<Vec<u8>, String> {
    match format {
        Format::Json => Ok(render_json(report).into_bytes()),
        Format::Csv => Ok(render_csv(report).into_bytes()),
        Format::Html => Ok(render_html(report).into_bytes()),
        Format::Pdf => render_pdf(report),
    }
}

#[cfg(test)]
mod tests;
