//! Continuous synthetic testing: the evaluator keeps testing each use case's local model on
//! the organization's own recorded traffic (replays) and on provisioned canaries, scores the
//! answers against the cloud's (`genset-eval`), stores every evaluation, and keeps a
//! readiness verdict per use case that the failover policy reads (`Controller::set_verdict`).
//!
//! One round, per use case whose chain has a local model (its first `local:` step):
//! 1. **Replays** (kinds other than `custom`): recorded exchanges of the use case in the
//!    window that the client got whole from the cloud; one per distinct prompt (fingerprint
//!    of every message, see [`replay::fingerprint`]); the newest half and a seeded weighted
//!    reservoir over the rest ([`genset_eval::sample::choose`]); re-run greedily through the
//!    local engine at evaluation priority ([`run`]) and scored by the use case's kind.
//! 2. **Canaries**: every configured canary, checked by its assertions.
//! 3. **Readiness** over the rolling window ([`genset_eval::Readiness`]: mean score with a 95%
//!    Wilson interval, latency against the SLO, capacity against the recorded peak), stored;
//!    a change of verdict is an event, a log line and a webhook POST.
//!
//! Rounds run soon after start, every `evaluation.interval`, soon after a reload, and on
//! demand (`POST /api/v1/evaluations/run`). They pause while genset serves a cut-off (mode
//! `failover` or `forced-local`) or a live drill holds use cases.
//!
//! **Architecture Invariant:** evaluations never take capacity from live local traffic: they
//! run at the engine's lowest priority, only on an idle engine, one at a time, and step aside
//! (drop their generation) as soon as a live request is queued or running ([`run`]).
//!
//! **Architecture Invariant:** every change of readiness verdict is an event with its cause.

pub mod api;
pub mod judge;
pub mod replay;
pub mod run;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use genset_engine::{Engine, EngineRegistry};
use genset_eval::readiness::verdict_change;
use genset_eval::sample::{Candidate, choose};
use genset_eval::{Capacity, Readiness, Sample, ScoreOptions, Verdict, Window};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ChainStep, Config, UseCaseConfig};
use crate::control::{Controller, ReadinessVerdict};
use crate::record::now_ms;
use crate::store::Store;
use crate::store::evaluate::{NewEvaluation, ReadinessRow};

pub use api::configure;

/// The first round after start waits this long (or one interval, if shorter), so that the
/// daemon's start-up and the first live requests come first.
pub const STARTUP_DELAY: Duration = Duration::from_secs(30);
/// A reload (new models, canaries or thresholds) is followed by a round after this long.
pub const RELOAD_DELAY: Duration = Duration::from_secs(5);
/// A paused round (cut-off) is tried again after this long.
pub const PAUSED_RETRY: Duration = Duration::from_secs(30);
/// Recorded exchanges looked at per use case and round (newest first) to choose replays from.
pub const CANDIDATES: i64 = 5000;
/// How long a webhook POST may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The evaluator: shared by its background task and the admin API.
pub struct Evaluator {
    store: Store,
    config: Arc<ArcSwap<Config>>,
    registry: EngineRegistry,
    controller: Arc<Controller>,
    http: Option<reqwest::Client>,
    /// One round at a time.
    round: tokio::sync::Mutex<()>,
    rounds: AtomicU64,
    cancel: CancellationToken,
    webhooks: TaskTracker,
    last: parking_lot::Mutex<Option<RoundReport>>,
    /// The optional cloud judge and its daily budget.
    pub judge: judge::Judge,
}

/// What one round did.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    pub round_id: String,
    pub started_ms: i64,
    pub finished_ms: i64,
    /// Why the round did not run (a cut-off is being served), if it did not.
    pub paused: Option<String>,
    pub use_cases: Vec<UseCaseRound>,
}

/// What one round did for one use case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UseCaseRound {
    pub use_case: String,
    pub model: String,
    /// Distinct recorded prompts available / chosen.
    pub candidates: usize,
    pub chosen: usize,
    /// Replays scored (comparable or not) and canaries run.
    pub replays: usize,
    pub canaries: usize,
    /// Evaluations the local model failed (engine error, timeout): stored with score 0.
    pub failed: usize,
    /// Not run this round: live traffic kept the engine busy.
    pub deferred: usize,
    /// Recorded exchanges that could not be replayed (no cloud text to compare with, a
    /// request local models cannot serve).
    pub skipped: usize,
    /// Times evaluations stepped aside for live traffic.
    pub yields: u64,
    pub verdict: Option<Verdict>,
    pub verdict_changed: bool,
    pub note: Option<String>,
}

/// Stops evaluations while genset serves a cut-off or a live drill.
struct CutOffGate(Arc<Controller>);

impl run::Gate for CutOffGate {
    fn stop(&self) -> bool {
        paused_reason(&self.0).is_some()
    }
}

fn paused_reason(c: &Controller) -> Option<String> {
    match c.effective() {
        e @ ("failover" | "forced-local") => Some(format!("genset is serving a cut-off (mode {e})")),
        _ if !c.drills().is_empty() => Some("a live drill is in progress".to_string()),
        _ => None,
    }
}

/// The local model a use case fails over to: the first `local:` step of its chain.
pub fn local_model(uc: &UseCaseConfig) -> Option<&str> {
    uc.chain.iter().find_map(|s| match s {
        ChainStep::Local(name) => Some(name.as_str()),
        ChainStep::Upstream(_) => None,
    })
}

impl Evaluator {
    /// Publish the stored verdicts (a restart keeps them) and start the background task. The
    /// task stops when `cancel` fires; await the handle (it also waits for webhooks in flight).
    pub async fn start(
        store: Store,
        config: Arc<ArcSwap<Config>>,
        registry: EngineRegistry,
        controller: Arc<Controller>,
        cancel: CancellationToken,
    ) -> (Arc<Evaluator>, tokio::task::JoinHandle<()>) {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .map_err(|e| tracing::error!(error = %e, "evaluator: cannot build the webhook client; webhooks are off"))
            .ok();
        let ev = Arc::new(Evaluator {
            store,
            config,
            registry,
            controller,
            http,
            round: tokio::sync::Mutex::new(()),
            rounds: AtomicU64::new(0),
            cancel,
            webhooks: TaskTracker::new(),
            last: parking_lot::Mutex::new(None),
            judge: judge::Judge::new(),
        });
        ev.restore_verdicts().await;
        let task = tokio::spawn(ev.clone().run_loop());
        (ev, task)
    }

    async fn restore_verdicts(&self) {
        let rows = match self.store.latest_readiness().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "evaluator: cannot read the stored readiness; use cases start without a verdict");
                return;
            }
        };
        let cfg = self.config.load();
        for row in rows {
            if !cfg.use_cases.iter().any(|u| u.name == row.use_case) {
                continue;
            }
            let Ok(verdict) = serde_json::from_value::<Verdict>(json!(row.verdict)) else { continue };
            let reason = first_reason(&row.reasons);
            tracing::info!(use_case = %row.use_case, %verdict, "restored the stored readiness verdict");
            self.controller.set_verdict(&row.use_case, ReadinessVerdict { verdict, reason });
        }
    }

    /// The last round's report.
    pub fn last_round(&self) -> Option<RoundReport> {
        self.last.lock().clone()
    }

    async fn run_loop(self: Arc<Self>) {
        let mut seen = self.config.load_full();
        let mut next = Instant::now() + STARTUP_DELAY.min(seen.evaluation.interval);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let cfg = self.config.load_full();
            if !Arc::ptr_eq(&cfg, &seen) {
                seen = cfg.clone();
                next = next.min(Instant::now() + RELOAD_DELAY);
                tracing::info!("evaluator: configuration reloaded; a round follows");
            }
            if !cfg.evaluation.enabled || Instant::now() < next {
                continue;
            }
            let report = tokio::select! {
                _ = self.cancel.cancelled() => break,
                r = self.run_round() => r,
            };
            next =
                Instant::now() + if report.paused.is_some() { PAUSED_RETRY.min(cfg.evaluation.interval) } else { cfg.evaluation.interval };
        }
        self.webhooks.close();
        if tokio::time::timeout(WEBHOOK_TIMEOUT, self.webhooks.wait()).await.is_err() {
            tracing::warn!("evaluator: webhooks still in flight at shutdown were abandoned");
        }
    }

    /// Run one round now (waits for a round in progress to finish first).
    pub async fn run_round(&self) -> RoundReport {
        let _one = self.round.lock().await;
        let n = self.rounds.fetch_add(1, Ordering::Relaxed) + 1;
        let started_ms = now_ms();
        let round_id = format!("{started_ms:x}-{n}");
        let mut report = RoundReport { round_id: round_id.clone(), started_ms, finished_ms: started_ms, paused: None, use_cases: vec![] };
        if let Some(why) = paused_reason(&self.controller) {
            tracing::info!(reason = %why, "evaluator: round skipped");
            report.paused = Some(why);
            report.finished_ms = now_ms();
            *self.last.lock() = Some(report.clone());
            return report;
        }
        let cfg = self.config.load_full();
        let gate = CutOffGate(self.controller.clone());
        for uc in &cfg.use_cases {
            let Some(model) = local_model(uc) else { continue };
            if self.cancel.is_cancelled() {
                break;
            }
            let mut r = UseCaseRound { use_case: uc.name.clone(), model: model.to_string(), ..Default::default() };
            match self.registry.get(model) {
                Some(engine) => {
                    let stopped = self.evaluate_use_case(&cfg, uc, &engine, &round_id, n, &gate, &mut r).await;
                    if let Some(why) = stopped {
                        report.paused = Some(why);
                        report.use_cases.push(r);
                        break;
                    }
                }
                None => r.note = Some(format!("local model {model:?} is not loaded (models change on restart)")),
            }
            self.update_readiness(&cfg, uc, &engine_parallel(&self.registry, model), &mut r).await;
            report.use_cases.push(r);
        }
        report.finished_ms = now_ms();
        let (evaluated, deferred): (usize, usize) =
            report.use_cases.iter().fold((0, 0), |(e, d), u| (e + u.replays + u.canaries, d + u.deferred));
        tracing::info!(round = %round_id, evaluated, deferred, ms = report.finished_ms - started_ms, paused = ?report.paused, "evaluation round done");
        *self.last.lock() = Some(report.clone());
        report
    }

    /// Replays and canaries of one use case. `Some(reason)` when the round must stop.
    #[allow(clippy::too_many_arguments)]
    async fn evaluate_use_case(
        &self,
        cfg: &Config,
        uc: &UseCaseConfig,
        engine: &Arc<dyn Engine>,
        round_id: &str,
        round_no: u64,
        gate: &CutOffGate,
        r: &mut UseCaseRound,
    ) -> Option<String> {
        let e = &cfg.evaluation;
        let since = now_ms() - e.window.as_millis() as i64;
        let system = uc.eval.local_system_prompt.as_deref();
        let mut jobs: Vec<Job> = Vec::new();
        if uc.eval.kind != genset_eval::Kind::Custom && e.replays_per_round > 0 {
            let rows = match self.store.replay_candidates(&uc.name, since, CANDIDATES).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::error!(error = %err, use_case = %uc.name, "evaluator: cannot read recorded exchanges");
                    vec![]
                }
            };
            let mut built: HashMap<i64, replay::Replay> = HashMap::new();
            let mut candidates = Vec::new();
            for row in rows {
                let Some(body) = row.request_body.as_deref() else { continue };
                match replay::build(&row.endpoint, body, system, None) {
                    Ok(rep) => {
                        candidates.push(Candidate { id: row.id, ts_ms: row.ts_ms, fingerprint: rep.fingerprint.clone() });
                        built.insert(row.id, rep);
                    }
                    Err(_) => r.skipped += 1,
                }
            }
            let k = e.replays_per_round;
            let seed = round_no ^ now_ms() as u64;
            let picked = choose(&candidates, k, k.div_ceil(2), seed);
            r.candidates = candidates.iter().map(|c| &c.fingerprint).collect::<std::collections::HashSet<_>>().len();
            r.chosen = picked.len();
            for p in picked {
                let Ok(Some(ex)) = self.store.get_exchange(p.id).await else {
                    r.skipped += 1;
                    continue;
                };
                let cloud = ex.response_body.as_deref().and_then(|b| replay::cloud_answer(&ex.endpoint, b));
                let (Some(cloud), Some(body)) = (cloud, ex.request_body.as_deref()) else {
                    r.skipped += 1;
                    continue;
                };
                // Rebuilt with the cloud's length as a bound on the local answer's (estimated
                // from its text when the usage was not recorded, as in a stream without it).
                let cloud_tokens = ex.completion_tokens.unwrap_or_else(|| replay::estimate_tokens(&cloud));
                let rep = match replay::build(&ex.endpoint, body, system, Some(cloud_tokens)) {
                    Ok(rep) => rep,
                    Err(_) => match built.remove(&p.id) {
                        Some(rep) => rep,
                        None => {
                            r.skipped += 1;
                            continue;
                        }
                    },
                };
                jobs.push(Job::Replay { exchange_id: ex.id, rep: Box::new(rep), cloud });
            }
        }
        for c in &uc.eval.canaries {
            jobs.push(Job::Canary(c.clone()));
        }
        let total = jobs.len();
        for (i, job) in jobs.into_iter().enumerate() {
            let (request, prompt) = match &job {
                Job::Replay { rep, .. } => (rep.request.clone(), rep.prompt_excerpt.clone()),
                Job::Canary(c) => {
                    let req = replay::canary_request(c, system);
                    let prompt = replay::excerpt(&replay::prompt_text(&req.prompt), replay::EXCERPT_CHARS);
                    (req, prompt)
                }
            };
            let outcome = run::run(engine, request, e.timeout, e.timeout, gate, &self.cancel).await;
            let mut row = NewEvaluation {
                ts_ms: now_ms(),
                round_id: round_id.to_string(),
                use_case: uc.name.clone(),
                source: "replay",
                exchange_id: None,
                canary: None,
                model: engine.name().to_string(),
                kind: uc.eval.kind.to_string(),
                score: 0.0,
                passed: false,
                comparable: true,
                latency_ms: 0,
                ttft_ms: None,
                completion_tokens: None,
                prompt: Some(prompt),
                cloud_answer: None,
                local_answer: None,
                error: None,
                detail: None,
            };
            let answer = match outcome {
                Ok(a) => {
                    r.yields += u64::from(a.yields);
                    row.latency_ms = a.latency_ms as i64;
                    row.ttft_ms = a.ttft_ms.map(|t| t as i64);
                    row.completion_tokens = Some(a.completion_tokens as i64);
                    row.local_answer = Some(replay::excerpt(&a.text, replay::EXCERPT_CHARS));
                    Some(a)
                }
                Err(run::RunError::Stopped) => {
                    return Some(paused_reason(&self.controller).unwrap_or_else(|| "stopped".to_string()));
                }
                Err(run::RunError::Deferred) => {
                    r.deferred += total - i;
                    tracing::info!(use_case = %uc.name, left = total - i, "evaluator: live traffic keeps the local model busy; the rest waits for the next round");
                    return None;
                }
                Err(run::RunError::Timeout { after_ms }) => {
                    r.failed += 1;
                    row.latency_ms = after_ms as i64;
                    row.error = Some(format!("no answer within {}", humantime::format_duration(e.timeout)));
                    None
                }
                Err(run::RunError::Engine(err)) => {
                    r.failed += 1;
                    row.error = Some(err.to_string());
                    None
                }
            };
            match job {
                Job::Replay { exchange_id, cloud, rep } => {
                    r.replays += 1;
                    row.exchange_id = Some(exchange_id);
                    if let Some(a) = &answer {
                        // Generation: an embedding cosine term when an embedding model is set.
                        let vectors = match (&e.embedding_model, uc.eval.kind) {
                            (Some(m), genset_eval::Kind::Generation) => match self.registry.get(m) {
                                Some(engine) => match engine.embed(vec![cloud.clone(), a.text.clone()]).await {
                                    Ok(out) if out.vectors.len() == 2 => Some(out.vectors),
                                    Ok(_) => None,
                                    Err(err) => {
                                        tracing::warn!(model = %m, error = %err, "evaluator: embeddings failed; scoring without the cosine term");
                                        None
                                    }
                                },
                                None => None,
                            },
                            _ => None,
                        };
                        let opts = ScoreOptions {
                            labels: &uc.eval.labels,
                            embeddings: vectors.as_ref().map(|v| (v[0].as_slice(), v[1].as_slice())),
                            ..Default::default()
                        };
                        let s = genset_eval::score(uc.eval.kind, &cloud, &a.text, &opts);
                        row.score = s.value;
                        row.passed = s.pass;
                        row.comparable = s.comparable;
                        let mut detail = s.detail;
                        // The judge: a second opinion from the cloud, in normal times, sampled, on budget.
                        if let Some(j) = &e.judge
                            && judge::Judge::sampled(j, exchange_id)
                            && self.controller.effective() == "cloud"
                            && let Some(up) = cfg.upstreams.iter().find(|u| u.name == j.upstream)
                        {
                            let question = replay::prompt_text(&rep.request.prompt);
                            let verdict = match self.judge.grade(j, up, &question, &cloud, &a.text).await {
                                Ok(Some(g)) => serde_json::to_value(&g).unwrap_or_default(),
                                Ok(None) => json!({"skipped": "the judge's daily token budget is spent"}),
                                Err(err) => json!({"error": err}),
                            };
                            if let Some(o) = detail.as_object_mut() {
                                o.insert("judge".into(), verdict);
                            }
                        }
                        row.detail = Some(detail.to_string());
                    }
                    row.cloud_answer = Some(replay::excerpt(&cloud, replay::EXCERPT_CHARS));
                }
                Job::Canary(c) => {
                    r.canaries += 1;
                    row.source = "canary";
                    row.canary = Some(c.name.clone());
                    if let Some(a) = &answer {
                        let results = genset_eval::check_all(&c.assertions, &a.text, a.latency_ms);
                        let s = genset_eval::Score::from_assertions(&results);
                        row.score = s.value;
                        row.passed = s.pass;
                        row.comparable = s.comparable;
                        row.detail = Some(s.detail.to_string());
                    }
                }
            }
            if let Err(err) = self.store.insert_evaluations(std::slice::from_ref(&row)).await {
                tracing::error!(error = %err, use_case = %uc.name, "evaluator: cannot store an evaluation");
            }
        }
        None
    }

    /// Compute, store and publish a use case's readiness; an event and a webhook when its
    /// verdict changed.
    async fn update_readiness(&self, cfg: &Config, uc: &UseCaseConfig, parallel: &Option<usize>, r: &mut UseCaseRound) {
        let now = now_ms();
        let window = cfg.evaluation.window;
        let since = now - window.as_millis() as i64;
        let samples: Vec<Sample> = match self.store.evaluation_samples(&uc.name, since).await {
            Ok(rows) => rows
                .into_iter()
                .map(|s| Sample {
                    ts_ms: s.ts_ms,
                    score: s.score,
                    pass: s.passed,
                    latency_ms: u64::try_from(s.latency_ms).unwrap_or(0),
                    ttft_ms: s.ttft_ms.and_then(|t| u64::try_from(t).ok()),
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, use_case = %uc.name, "evaluator: cannot read evaluations");
                return;
            }
        };
        let peak_per_minute = self.store.peak_requests_per_minute(&uc.name, since).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, use_case = %uc.name, "evaluator: cannot read the recorded peak");
            0
        });
        let capacity = capacity(&samples, *parallel, peak_per_minute);
        let readiness = Readiness::compute(
            &samples,
            Window { end_ms: now, span_ms: window.as_millis() as u64, max_samples: None },
            &uc.eval.thresholds,
            capacity.map(|c| c.capacity),
        );
        let previous = match self.store.readiness_history(&uc.name, 1).await {
            Ok(rows) => rows.first().and_then(|row| serde_json::from_value::<Verdict>(json!(row.verdict)).ok()),
            Err(e) => {
                tracing::error!(error = %e, use_case = %uc.name, "evaluator: cannot read the readiness history");
                self.controller.verdict(&uc.name).map(|v| v.verdict)
            }
        };
        let detail = json!({
            "readiness": readiness,
            "capacity": capacity,
            "model": local_model(uc),
            "kind": uc.eval.kind,
            "thresholds": uc.eval.thresholds,
            "window_ms": window.as_millis() as u64,
            "interval": "wilson-95",
        });
        let row = ReadinessRow {
            ts_ms: now,
            use_case: uc.name.clone(),
            verdict: readiness.verdict.to_string(),
            score: readiness.mean,
            score_lower: readiness.lower,
            score_upper: readiness.upper,
            n: readiness.n as i64,
            reasons: serde_json::to_string(&readiness.reasons).unwrap_or_else(|_| "[]".into()),
            detail: detail.to_string(),
        };
        if let Err(e) = self.store.insert_readiness(&row).await {
            tracing::error!(error = %e, use_case = %uc.name, "evaluator: cannot store the readiness");
        }
        let reason = readiness.reasons.first().cloned().unwrap_or_default();
        self.controller.set_verdict(&uc.name, ReadinessVerdict { verdict: readiness.verdict, reason });
        r.verdict = Some(readiness.verdict);
        if let Some(change) = verdict_change(previous, &readiness) {
            r.verdict_changed = true;
            let from = change.from.map(|v| v.to_string());
            let body = json!({
                "event": "readiness",
                "use_case": uc.name,
                "from": from,
                "to": change.to,
                "cause": change.cause,
                "ts_ms": now,
                "score": readiness.mean,
                "lower": readiness.lower,
                "upper": readiness.upper,
                "n": readiness.n,
                "model": local_model(uc),
            });
            // A warning when a use case loses readiness it had; its first verdict (a fresh
            // install starts without evidence) and gains are news, not trouble.
            match (&from, change.to) {
                (None, _) | (_, Verdict::Ready) => {
                    tracing::info!(use_case = %uc.name, from = ?from, to = %change.to, cause = %change.cause, "readiness verdict changed")
                }
                _ => tracing::warn!(use_case = %uc.name, from = ?from, to = %change.to, cause = %change.cause, "readiness verdict changed"),
            }
            if let Err(e) = self.store.insert_event(now, "readiness", &uc.name, &change.cause, Some(&body.to_string())).await {
                tracing::error!(error = %e, use_case = %uc.name, "evaluator: cannot store the readiness event");
            }
            self.webhook(cfg, body);
        }
    }

    /// POST the event to `evaluation.webhook`, off the round (bounded by [`WEBHOOK_TIMEOUT`]).
    fn webhook(&self, cfg: &Config, body: serde_json::Value) {
        let (Some(url), Some(http)) = (cfg.evaluation.webhook.clone(), self.http.clone()) else { return };
        self.webhooks.spawn(async move {
            match http.post(&url).json(&body).send().await {
                Ok(resp) if resp.status().is_success() => tracing::debug!(status = %resp.status(), "readiness webhook delivered"),
                Ok(resp) => tracing::warn!(status = %resp.status(), "readiness webhook: the receiver answered with an error"),
                Err(e) => tracing::warn!(error = %e, "readiness webhook: not delivered"),
            }
        });
    }
}

enum Job {
    Replay { exchange_id: i64, rep: Box<replay::Replay>, cloud: String },
    Canary(genset_eval::Canary),
}

fn engine_parallel(registry: &EngineRegistry, model: &str) -> Option<usize> {
    registry.get(model).map(|e| e.stats().parallel.max(1))
}

fn first_reason(reasons_json: &str) -> String {
    serde_json::from_str::<Vec<String>>(reasons_json).ok().and_then(|r| r.into_iter().next()).unwrap_or_default()
}

/// The capacity estimate and how it was made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CapacityEstimate {
    pub capacity: Capacity,
    /// Requests in the busiest recorded minute of the window.
    pub peak_requests_per_minute: i64,
    /// Mean local latency of the evaluations in the window.
    pub mean_latency_ms: f64,
    /// The engine's concurrent sequences.
    pub parallel: usize,
}

/// The local model's rate, `parallel / mean latency` (an upper bound: slots decoding together
/// are each slower than one alone), against the recorded peak (busiest minute / 60). `None`
/// before anything was measured.
pub fn capacity(samples: &[Sample], parallel: Option<usize>, peak_per_minute: i64) -> Option<CapacityEstimate> {
    let parallel = parallel?;
    let latencies: Vec<f64> = samples.iter().map(|s| s.latency_ms as f64).collect();
    let mean = genset_eval::stats::mean(&latencies)?;
    let local = if mean > 0.0 { parallel as f64 / (mean / 1000.0) } else { f64::INFINITY };
    let local = if local.is_finite() { local } else { 1e6 };
    Some(CapacityEstimate {
        capacity: Capacity { peak_rps_recorded: peak_per_minute as f64 / 60.0, local_rps_measured: local },
        peak_requests_per_minute: peak_per_minute,
        mean_latency_ms: mean,
        parallel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(latency_ms: u64) -> Sample {
        Sample { ts_ms: 1, score: 1.0, pass: true, latency_ms, ttft_ms: None }
    }

    #[test]
    fn capacity_estimates() {
        // Mean latency 500 ms, 4 slots: 8 req/s; busiest minute 120 requests: 2 req/s.
        let c = capacity(&[sample(400), sample(600)], Some(4), 120);
        assert_eq!(c.map(|c| (c.capacity.local_rps_measured, c.capacity.peak_rps_recorded)), Some((8.0, 2.0)));
        assert_eq!(capacity(&[], Some(4), 120), None);
        assert_eq!(capacity(&[sample(400)], None, 120), None);
    }
}
