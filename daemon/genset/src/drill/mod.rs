//! Failover drills: evidence that the local models can carry the org when the cloud is gone.
//!
//! - A **live drill** holds some use cases in the controller ([`Controller::hold_for_drill`])
//!   until a deadline: the request path serves them exactly as in a real cut-off (recorded
//!   with `mode = drill`), then the hold is released and traffic returns to the cloud. An
//!   operator can abort at any moment (the hold goes at once). The deadline is stored: at
//!   start-up, overdue drills are finished and running ones held again only until their
//!   deadline, so a drill never outlives it across a restart.
//! - A **replay drill** replays the recorded client requests of a window against the local
//!   engine at drill priority (below live traffic), at 1x or k× their recorded rate, without
//!   touching clients: it measures whether the box can carry the real load.
//! - Drills refuse to start during a real outage (`effective() != "cloud"`), and a replay
//!   stops when one begins.
//! - Scheduled drills come from `[[drills]]` cron expressions ([`scheduler`]).
//!
//! Each drill ends with a [`DrillResult`]: RTO (time to the first local answer), success
//! rate, latency against the use case's SLO, quality against the cloud's recorded answers
//! (the readiness scorers of `genset-eval`), capacity headroom against the recorded peak
//! (replay), and a verdict (`passed`, `passed-with-findings`, `failed`) with its findings.
//!
//! **Architecture Invariant:** a live drill never outlives its deadline, and drills never
//! take capacity from live local traffic (replays run at `Priority::Drill`).

pub mod api;
pub mod delivery;
pub mod replay;
pub mod report;
mod result;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::config::drills::{DEFAULT_DURATION, DEFAULT_MAX_REQUESTS, DEFAULT_WINDOW, DrillKind};
use crate::control::{Controller, DrillHold};
use crate::record::now_ms;
use crate::route::plan::LocalGate;
use crate::store::Store;
use crate::store::drill::DrillRow;
pub use result::{Capacity, DrillResult, UseCaseResult, verdict_of};

/// What an operator (or a schedule) asks for.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DrillSpec {
    /// Shown in lists and reports; default: `<kind>-<use cases>`.
    pub name: Option<String>,
    /// live (default) | replay
    pub kind: Option<String>,
    pub use_cases: Vec<String>,
    /// Live: how long traffic is served locally ("5m").
    pub duration: Option<String>,
    /// Replay: the recorded traffic of the last `window` ("1d")...
    pub window: Option<String>,
    /// ...or of this period (`2026-11`, `2026-W45`, `2026-11-01..2026-11-15`).
    pub period: Option<String>,
    /// Replay: how many times the recorded rate (default 1).
    pub speed: Option<f64>,
    /// Replay: most requests replayed (default 200).
    pub max_requests: Option<usize>,
    /// Live: start even when a use case would not be served locally in a real cut-off
    /// (readiness not proven, `on_cutoff` other than serve-local): its clients then get
    /// the cut-off's 503 for the whole drill.
    pub force: Option<bool>,
}

/// Why a drill could not start (or be found).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("no drill {0:?}")]
    NotFound(String),
    #[error("the store failed: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// A drill with, while it runs, its progress.
#[derive(Debug, Clone, Serialize)]
pub struct DrillView {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// running | finished | aborted
    pub state: String,
    pub verdict: Option<String>,
    pub use_cases: Vec<String>,
    pub started_ms: i64,
    pub deadline_ms: i64,
    pub ended_ms: Option<i64>,
    pub actor: String,
    pub spec: Value,
    pub result: Option<DrillResult>,
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub elapsed_ms: i64,
    pub remaining_ms: i64,
    /// 0..1 of the duration (live) or of the requests (replay).
    pub fraction: f64,
    pub requests_done: u64,
    /// The requests a replay will send; `None` for a live drill, and for a replay still
    /// selecting them from the recorded window (`selecting`).
    pub requests_total: Option<u64>,
    pub requests_ok: u64,
    /// A replay that has not yet chosen its requests (its first moments).
    pub selecting: bool,
}

impl DrillView {
    fn from_row(r: DrillRow) -> DrillView {
        DrillView {
            use_cases: serde_json::from_str(&r.use_cases).unwrap_or_default(),
            spec: serde_json::from_str(&r.spec).unwrap_or(Value::Null),
            result: r.result.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            id: r.id,
            name: r.name,
            kind: r.kind,
            state: r.state,
            verdict: r.verdict,
            started_ms: r.started_ms,
            deadline_ms: r.deadline_ms,
            ended_ms: r.ended_ms,
            actor: r.actor,
            progress: None,
        }
    }

    /// The report crate's view of this drill.
    pub fn summary(&self) -> genset_report::DrillSummary {
        genset_report::DrillSummary {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            started_ms: self.started_ms,
            ended_ms: self.ended_ms,
            use_cases: self.use_cases.clone(),
            verdict: self.verdict.clone().unwrap_or_else(|| self.state.clone()),
            findings: self.result.as_ref().map(|r| r.findings.clone()).unwrap_or_default(),
            rto_ms: self.result.as_ref().and_then(|r| r.rto_ms),
            success_rate: self.result.as_ref().and_then(|r| r.success_rate),
        }
    }
}

/// Counters of a running replay.
#[derive(Default)]
pub(crate) struct Counters {
    /// Set once `total` holds the replay's count.
    pub selected: AtomicBool,
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub ok: AtomicU64,
}

struct Active {
    kind: DrillKind,
    started_ms: i64,
    deadline_ms: i64,
    /// Fired by an abort (not by shutdown).
    abort: CancellationToken,
    abort_reason: Arc<Mutex<Option<String>>>,
    counters: Arc<Counters>,
    done: tokio::sync::watch::Receiver<bool>,
}

/// The drill runner: starts, tracks, aborts and finishes drills. One per daemon.
pub struct Drills {
    pub(crate) store: Store,
    pub(crate) controller: Arc<Controller>,
    pub(crate) models: genset_engine::EngineRegistry,
    pub(crate) config: Arc<ArcSwap<Config>>,
    active: Mutex<HashMap<String, Active>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// A validated spec.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub name: String,
    pub kind: DrillKind,
    pub use_cases: Vec<String>,
    pub duration: Duration,
    pub since_ms: i64,
    pub until_ms: i64,
    pub speed: f64,
    pub max_requests: usize,
}

fn new_id() -> String {
    let suffix: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(10).map(char::from).collect();
    format!("drill-{}", suffix.to_ascii_lowercase())
}

impl Drills {
    /// Build the runner, settle the drills a previous run left (finish overdue ones, hold
    /// running live drills again until their deadline), and start the scheduler. Tasks stop
    /// when `shutdown` fires; await the handle to let them finish.
    pub async fn start(
        store: Store,
        controller: Arc<Controller>,
        models: genset_engine::EngineRegistry,
        config: Arc<ArcSwap<Config>>,
        shutdown: CancellationToken,
    ) -> (Arc<Drills>, tokio::task::JoinHandle<()>) {
        let d = Arc::new(Drills {
            store,
            controller,
            models,
            config,
            active: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            shutdown: shutdown.clone(),
        });
        if let Err(e) = d.resume().await {
            tracing::error!(error = %e, "drills: could not settle the drills of the previous run");
        }
        let sched = tokio::spawn(scheduler::run(d.clone(), shutdown.clone()));
        let tracker = d.tracker.clone();
        let handle = tokio::spawn(async move {
            shutdown.cancelled().await;
            let _ = sched.await;
            tracker.close();
            tracker.wait().await;
        });
        (d, handle)
    }

    fn plan(&self, spec: &DrillSpec) -> Result<Plan, DrillError> {
        let cfg = self.config.load();
        let kind: DrillKind = spec.kind.as_deref().unwrap_or("live").parse().map_err(DrillError::Invalid)?;
        if spec.use_cases.is_empty() {
            return Err(DrillError::Invalid("name at least one use case (use_cases)".into()));
        }
        for u in &spec.use_cases {
            let Some(uc) = cfg.use_cases.iter().find(|c| &c.name == u) else {
                return Err(DrillError::Invalid(format!("no use case named {u:?} in the configuration")));
            };
            match crate::evaluate::local_model(uc) {
                None => {
                    return Err(DrillError::Invalid(format!(
                        "use case {u:?} has no local model in its chain: a drill would only reject its traffic"
                    )));
                }
                Some(m) if self.models.get(m).is_none() => {
                    return Err(DrillError::Invalid(format!("use case {u:?} fails over to local model {m:?}, which is not loaded")));
                }
                Some(_) => {}
            }
            if kind == DrillKind::Live
                && spec.force != Some(true)
                && let Some(why) = LocalGate::of(uc).refusal(self.controller.verdict(u).as_ref())
            {
                return Err(DrillError::Invalid(format!(
                    "use case {u:?} would not be served locally in a real cut-off: {why}. A live drill would \
                     fail all of its traffic. A replay drill measures the local model without touching \
                     clients; to drill live anyway, force it (gensetctl drill start --force, or the \
                     console's box for it)"
                )));
            }
        }
        let dur = |s: &Option<String>, key: &str, default: Duration| -> Result<Duration, DrillError> {
            match s {
                Some(s) => humantime::parse_duration(s).map_err(|e| DrillError::Invalid(format!("{key}: not a duration ({e}): {s:?}"))),
                None => Ok(default),
            }
        };
        let duration = dur(&spec.duration, "duration", DEFAULT_DURATION)?;
        if kind == DrillKind::Live && (duration < Duration::from_secs(1) || duration > Duration::from_secs(24 * 3600)) {
            return Err(DrillError::Invalid("duration: a live drill lasts between 1s and 24h".into()));
        }
        let now = now_ms();
        let (since_ms, until_ms) = match &spec.period {
            Some(p) => {
                let p = genset_report::Period::parse(p).map_err(|e| DrillError::Invalid(e.to_string()))?;
                (p.start_ms, p.end_ms.min(now))
            }
            None => (now - dur(&spec.window, "window", DEFAULT_WINDOW)?.as_millis() as i64, now),
        };
        let speed = spec.speed.unwrap_or(1.0);
        if !(speed.is_finite() && speed > 0.0 && speed <= 100.0) {
            return Err(DrillError::Invalid("speed: must be in (0, 100]".into()));
        }
        let name = match &spec.name {
            Some(n) if !n.trim().is_empty() => n.trim().chars().take(100).collect(),
            _ => format!("{}-{}", kind.as_str(), spec.use_cases.join("-")),
        };
        Ok(Plan {
            name,
            kind,
            use_cases: spec.use_cases.clone(),
            duration,
            since_ms,
            until_ms,
            speed,
            max_requests: spec.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS).clamp(1, 10_000),
        })
    }

    /// Start a drill. Refused during a real outage, or when a running live drill already
    /// holds one of the use cases.
    pub async fn start_drill(self: &Arc<Self>, spec: DrillSpec, actor: &str) -> Result<DrillView, DrillError> {
        let plan = self.plan(&spec)?;
        let effective = self.controller.effective();
        if effective != "cloud" {
            return Err(DrillError::Conflict(format!(
                "genset is not serving from the cloud now (mode: {effective}): drills do not start during a real outage or a forced mode"
            )));
        }
        if plan.kind == DrillKind::Live {
            for h in self.controller.drills() {
                if let Some(u) = h.use_cases.iter().find(|u| plan.use_cases.contains(u)) {
                    return Err(DrillError::Conflict(format!("drill {} already holds use case {u:?}", h.drill_id)));
                }
            }
        }
        let now = now_ms();
        let deadline = match plan.kind {
            DrillKind::Live => now + plan.duration.as_millis() as i64,
            // A replay is bounded by its recorded span at its speed, plus time to finish.
            DrillKind::Replay => now + ((plan.until_ms - plan.since_ms).max(0) as f64 / plan.speed) as i64 + 30 * 60 * 1000,
        };
        let row = DrillRow {
            id: new_id(),
            name: plan.name.clone(),
            kind: plan.kind.as_str().into(),
            state: "running".into(),
            verdict: None,
            use_cases: serde_json::to_string(&plan.use_cases).unwrap_or_else(|_| "[]".into()),
            started_ms: now,
            deadline_ms: deadline,
            ended_ms: None,
            actor: actor.chars().take(200).collect(),
            spec: serde_json::to_string(&json!({
                "duration": humantime::format_duration(plan.duration).to_string(),
                "since_ms": plan.since_ms,
                "until_ms": plan.until_ms,
                "speed": plan.speed,
                "max_requests": plan.max_requests,
            }))
            .unwrap_or_default(),
            result: None,
        };
        self.store.insert_drill(&row).await?;
        self.event(
            now,
            &row.id,
            &format!("{} drill {:?} started by {actor}", row.kind, row.name),
            json!({"to": "started", "kind": row.kind, "use_cases": plan.use_cases, "deadline_ms": deadline}),
        )
        .await;
        tracing::warn!(drill = %row.id, name = %row.name, kind = %row.kind, use_cases = ?plan.use_cases, "drill started");
        self.launch(&row, plan);
        self.view(&row.id).await
    }

    /// Register and spawn the task of a running drill.
    fn launch(self: &Arc<Self>, row: &DrillRow, plan: Plan) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let active = Active {
            kind: plan.kind,
            started_ms: row.started_ms,
            deadline_ms: row.deadline_ms,
            abort: CancellationToken::new(),
            abort_reason: Arc::new(Mutex::new(None)),
            counters: Arc::new(Counters::default()),
            done: rx,
        };
        let abort = active.abort.clone();
        let reason = active.abort_reason.clone();
        let counters = active.counters.clone();
        self.active.lock().insert(row.id.clone(), active);
        let me = self.clone();
        let id = row.id.clone();
        let (started, deadline) = (row.started_ms, row.deadline_ms);
        // A live drill holds its use cases before the caller hears it started: traffic sent
        // right after the answer is already served locally, and a second drill on the same
        // use case is refused.
        if plan.kind == DrillKind::Live {
            self.controller.hold_for_drill(DrillHold { drill_id: id.clone(), use_cases: plan.use_cases.clone(), until_ms: deadline });
        }
        self.tracker.spawn(async move {
            let finished = match plan.kind {
                DrillKind::Live => me.run_live(&id, &plan, started, deadline, &abort).await,
                DrillKind::Replay => me.run_replay(&id, &plan, started, &abort, &counters).await,
            };
            if let Some(result) = finished {
                let aborted = reason.lock().clone();
                me.finish(&id, started, result, aborted).await;
            }
            me.active.lock().remove(&id);
            let _ = tx.send(true);
        });
    }

    /// A live drill: hold until the deadline or an abort. `None` when the daemon is stopping
    /// (the drill stays `running` in the store; the next start settles it).
    async fn run_live(&self, id: &str, plan: &Plan, started: i64, deadline: i64, abort: &CancellationToken) -> Option<DrillResult> {
        let wait = Duration::from_millis((deadline - now_ms()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = abort.cancelled() => {}
            _ = self.shutdown.cancelled() => {
                self.controller.release_drill(id);
                return None;
            }
        }
        self.controller.release_drill(id);
        let ended = now_ms().min(deadline);
        // Let answers still being generated for the drill finish (up to a minute), then the
        // recorder write them, before they are read.
        let cfg = self.config.load_full();
        let engines: Vec<_> = cfg
            .use_cases
            .iter()
            .filter(|u| plan.use_cases.contains(&u.name))
            .filter_map(|u| crate::evaluate::local_model(u).and_then(|m| self.models.get(m)))
            .collect();
        let idle_by = std::time::Instant::now() + Duration::from_secs(60);
        while engines.iter().any(|e| e.stats().active_slots > 0) && std::time::Instant::now() < idle_by {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(cfg.recording.flush_interval + Duration::from_millis(300)).await;
        Some(self.live_result(plan, started, ended).await)
    }

    /// The figures of a live drill from what was recorded between `started` and `ended`.
    pub(crate) async fn live_result(&self, plan: &Plan, started: i64, ended: i64) -> DrillResult {
        let cfg = self.config.load_full();
        let rows = match self.store.report_exchanges(started, ended + 1, Some("drill")).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "drill: cannot read the drill's exchanges");
                Vec::new()
            }
        };
        let rows: Vec<_> = rows.into_iter().filter(|r| r.final_attempt && plan.use_cases.contains(&r.use_case)).collect();
        let mut obs: Vec<result::Observation> = rows
            .iter()
            .map(|r| result::Observation {
                use_case: r.use_case.clone(),
                ts_ms: r.ts_ms,
                ok: r.status < 400 && r.completed && r.served_by.starts_with("local:"),
                local: r.served_by.starts_with("local:"),
                latency_ms: r.total_ms,
                quality: None,
            })
            .collect();
        // Quality: each local answer against the cloud's recorded answer to the same prompt
        // (same prompt = same fingerprint of the parsed messages), from the week before.
        let fp = |b: &crate::store::drill::BodyRow| {
            b.request_body
                .as_deref()
                .and_then(|body| crate::evaluate::replay::build(&b.endpoint, body, None, None).ok())
                .map(|r| r.fingerprint)
        };
        let mut cloud: HashMap<(String, String), String> = HashMap::new();
        if let Ok(rows) = self.store.body_exchanges(&plan.use_cases, started - 7 * 86_400_000, started, "cloud:", None, 2000).await {
            for b in rows {
                let text = b.response_body.as_deref().and_then(|r| crate::evaluate::replay::cloud_answer(&b.endpoint, r));
                if let (Some(f), Some(t)) = (fp(&b), text) {
                    cloud.insert((b.use_case.clone(), f), t);
                }
            }
        }
        if let Ok(bodies) = self.store.body_exchanges(&plan.use_cases, started, ended + 1, "local:", Some("drill"), 500).await {
            for b in bodies {
                let q = match (fp(&b), cfg.use_cases.iter().find(|u| u.name == b.use_case)) {
                    (Some(f), Some(uc)) => cloud.get(&(b.use_case.clone(), f)).map(|c| {
                        let local = b
                            .response_body
                            .as_deref()
                            .and_then(|r| crate::evaluate::replay::cloud_answer(&b.endpoint, r))
                            .unwrap_or_default();
                        result::score(uc, c, &local)
                    }),
                    _ => None,
                };
                if let Some(o) = obs.iter_mut().find(|o| o.ts_ms == b.ts_ms && o.use_case == b.use_case && o.local && o.quality.is_none()) {
                    o.quality = q;
                }
            }
        }
        let mut r = DrillResult::from_observations(&obs, Some(started), &cfg, &plan.use_cases);
        r.window_ms = Some((started, ended));
        r
    }

    /// Record the end of a drill: result, verdict, event.
    async fn finish(&self, id: &str, started: i64, mut result: DrillResult, aborted: Option<String>) {
        let now = now_ms();
        let state = if aborted.is_some() { "aborted" } else { "finished" };
        if let Some(why) = &aborted {
            result.note(&format!("aborted after {:.1} s: {why}", (now - started) as f64 / 1000.0));
        }
        let v = result.verdict.clone();
        let json = serde_json::to_string(&result).unwrap_or_default();
        match self.store.end_drill(id, state, &v, now, &json).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(drill = %id, "drill had already ended"),
            Err(e) => tracing::error!(drill = %id, error = %e, "drill: cannot store the result"),
        }
        tracing::warn!(drill = %id, verdict = %v, state, findings = ?result.findings, "drill ended");
        self.event(now, id, &format!("drill {state}: {v}"), json!({"to": state, "verdict": v, "findings": result.findings})).await;
    }

    async fn event(&self, ts: i64, id: &str, cause: &str, detail: Value) {
        if let Err(e) = self.store.insert_event(ts, "drill", id, cause, Some(&detail.to_string())).await {
            tracing::error!(error = %e, "drill: cannot store an event");
        }
    }

    /// Abort a running drill: a live drill's hold goes at once; returns once it is recorded.
    pub async fn abort(&self, id: &str, actor: &str) -> Result<DrillView, DrillError> {
        let done = self.active.lock().get(id).map(|a| {
            *a.abort_reason.lock() = Some(format!("aborted by {actor}"));
            a.abort.cancel();
            a.done.clone()
        });
        let Some(done) = done else {
            return match self.store.get_drill(id).await? {
                Some(_) => Err(DrillError::Conflict(format!("drill {id} is not running"))),
                None => Err(DrillError::NotFound(id.to_string())),
            };
        };
        // Traffic returns to the cloud now, not when the task gets to it.
        self.controller.release_drill(id);
        let mut done = done;
        let _ = tokio::time::timeout(Duration::from_secs(30), done.wait_for(|d| *d)).await;
        self.view(id).await
    }

    /// One drill, with its progress while it runs.
    pub async fn view(&self, id: &str) -> Result<DrillView, DrillError> {
        let row = self.store.get_drill(id).await?.ok_or_else(|| DrillError::NotFound(id.to_string()))?;
        let mut v = DrillView::from_row(row);
        if v.state == "running" {
            v.progress = self.progress(id).await;
        }
        Ok(v)
    }

    async fn progress(&self, id: &str) -> Option<Progress> {
        let (kind, started, deadline, counters) = {
            let a = self.active.lock();
            let a = a.get(id)?;
            (a.kind, a.started_ms, a.deadline_ms, a.counters.clone())
        };
        let now = now_ms();
        let elapsed = now - started;
        match kind {
            DrillKind::Live => {
                let rows = self.store.report_exchanges(started, now + 1, Some("drill")).await.ok().unwrap_or_default();
                let hold = self.controller.drills().into_iter().find(|h| h.drill_id == id);
                let rows: Vec<_> = rows
                    .into_iter()
                    .filter(|r| r.final_attempt && hold.as_ref().is_some_and(|h| h.use_cases.contains(&r.use_case)))
                    .collect();
                let ok = rows.iter().filter(|r| r.status < 400 && r.completed && r.served_by.starts_with("local:")).count() as u64;
                Some(Progress {
                    elapsed_ms: elapsed,
                    remaining_ms: (deadline - now).max(0),
                    fraction: (elapsed as f64 / (deadline - started).max(1) as f64).clamp(0.0, 1.0),
                    requests_done: rows.len() as u64,
                    requests_total: None,
                    requests_ok: ok,
                    selecting: false,
                })
            }
            DrillKind::Replay => {
                let selected = counters.selected.load(Ordering::Acquire);
                let total = counters.total.load(Ordering::Relaxed);
                let done = counters.done.load(Ordering::Relaxed);
                Some(Progress {
                    elapsed_ms: elapsed,
                    remaining_ms: (deadline - now).max(0),
                    fraction: if total == 0 { 0.0 } else { done as f64 / total as f64 },
                    requests_done: done,
                    requests_total: selected.then_some(total),
                    requests_ok: counters.ok.load(Ordering::Relaxed),
                    selecting: !selected,
                })
            }
        }
    }

    /// Newest first.
    pub async fn list(&self, limit: i64) -> Result<Vec<DrillView>, DrillError> {
        let rows = self.store.list_drills(None, None, None, limit.clamp(1, 1000)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut v = DrillView::from_row(r);
            if v.state == "running" {
                v.progress = self.progress(&v.id).await;
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Settle what a previous run left: overdue drills are finished with what was recorded up
    /// to their deadline; running live drills are held again until their deadline; an
    /// interrupted replay is closed as aborted.
    async fn resume(self: &Arc<Self>) -> Result<(), DrillError> {
        let now = now_ms();
        for row in self.store.list_drills(Some("running"), None, None, 1000).await? {
            let use_cases: Vec<String> = serde_json::from_str(&row.use_cases).unwrap_or_default();
            let kind: DrillKind = row.kind.parse().unwrap_or(DrillKind::Live);
            let spec: Value = serde_json::from_str(&row.spec).unwrap_or(Value::Null);
            let plan = Plan {
                name: row.name.clone(),
                kind,
                use_cases,
                duration: Duration::from_millis((row.deadline_ms - row.started_ms).max(0) as u64),
                since_ms: spec["since_ms"].as_i64().unwrap_or(row.started_ms),
                until_ms: spec["until_ms"].as_i64().unwrap_or(row.started_ms),
                speed: spec["speed"].as_f64().unwrap_or(1.0),
                max_requests: spec["max_requests"].as_u64().unwrap_or(DEFAULT_MAX_REQUESTS as u64) as usize,
            };
            match kind {
                DrillKind::Live if row.deadline_ms > now => {
                    tracing::warn!(drill = %row.id, until_ms = row.deadline_ms, "resuming a live drill until its deadline");
                    self.launch(&row, plan);
                }
                DrillKind::Live => {
                    tracing::warn!(drill = %row.id, "a live drill passed its deadline while genset was down: finishing it");
                    let mut r = self.live_result(&plan, row.started_ms, row.deadline_ms).await;
                    r.note("genset restarted during the drill");
                    self.finish(&row.id, row.started_ms, r, None).await;
                }
                DrillKind::Replay => {
                    let mut r = DrillResult::default();
                    r.fail("the replay was interrupted by a restart");
                    self.finish(&row.id, row.started_ms, r, Some("genset restarted".into())).await;
                }
            }
        }
        Ok(())
    }
}
