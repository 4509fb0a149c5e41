//! The failover controller: per upstream health from passive outcomes (every real request)
//! and active probes (a token-free `GET /v1/models`), a circuit breaker with hysteresis
//! ([`breaker`]), and the operator's mode (`auto`, `force-cloud`, `force-local`).
//!
//! The request path reads one atomic per upstream ([`Health::routable`]) and reports each
//! attempt's [`Outcome`]; transitions become events written by a background task, so nothing
//! on the request path waits on the store.
//!
//! **Architecture Invariant:** every change of mode or breaker state is an event with its
//! cause and evidence, and the breaker state is saved so a restarted daemon does not hammer a
//! provider that was down when it stopped.

pub mod breaker;
pub mod outcome;
mod probe;

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::api::error::Flavor;
use crate::config::{Config, FailoverConfig, UpstreamConfig};
use crate::record::now_ms;
use crate::store::Store;
pub use breaker::{Breaker, Evidence, Source, State, Transition};
pub use outcome::{Outcome, Refusal};

/// The operator's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Follow the breakers (the default).
    Auto,
    /// Never serve locally because of failover (cloud steps only).
    ForceCloud,
    /// Serve every use case that may be served locally from local models, as in a cut-off.
    ForceLocal,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::ForceCloud => "force-cloud",
            Mode::ForceLocal => "force-local",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Mode::Auto),
            "force-cloud" => Ok(Mode::ForceCloud),
            "force-local" => Ok(Mode::ForceLocal),
            o => Err(format!("unknown mode {o:?}: expected auto, force-cloud or force-local")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModeState {
    pub mode: Mode,
    pub reason: String,
    pub actor: String,
    pub since_ms: i64,
}

/// The last active probe of an upstream.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub ts_ms: i64,
    pub outcome: String,
    pub detail: String,
    pub latency_ms: f64,
}

/// One upstream's health.
pub struct Health {
    pub name: String,
    pub api: Flavor,
    config: ArcSwap<UpstreamConfig>,
    breaker: Mutex<Breaker>,
    routable: AtomicBool,
    /// (ts, salted key hash) of previously accepted client keys the cloud rejected.
    rejected_keys: Mutex<VecDeque<(i64, String)>>,
    last_probe: Mutex<Option<ProbeResult>>,
    probing: AtomicBool,
    next_probe_ms: AtomicU64,
}

impl Health {
    /// A health outside any controller, never routable.
    pub fn detached(cfg: Arc<UpstreamConfig>) -> Arc<Health> {
        let mut b = Breaker::new(crate::config::BreakerConfig::default(), 1);
        b.record(0, &Outcome::CutOff("unknown upstream".into()), Source::Request);
        Arc::new(Health {
            name: cfg.name.clone(),
            api: cfg.api,
            config: ArcSwap::new(cfg),
            breaker: Mutex::new(b),
            routable: AtomicBool::new(false),
            rejected_keys: Mutex::new(VecDeque::new()),
            last_probe: Mutex::new(None),
            probing: AtomicBool::new(false),
            next_probe_ms: AtomicU64::new(u64::MAX),
        })
    }

    /// Whether live requests may go to this upstream now (one atomic load).
    #[inline]
    pub fn routable(&self) -> bool {
        self.routable.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> State {
        self.breaker.lock().state()
    }

    pub fn in_failover(&self) -> bool {
        self.breaker.lock().failover()
    }
}

/// A write for the store, done off the request path.
enum Write {
    Event { ts_ms: i64, kind: &'static str, subject: String, cause: String, detail: serde_json::Value },
    UpstreamState { upstream: String, json: String, ts_ms: i64 },
    Meta { key: &'static str, value: String },
}

/// A use case's measured readiness as the request path sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ReadinessVerdict {
    pub verdict: genset_eval::Verdict,
    /// The first reason, for error messages.
    pub reason: String,
}

/// A live drill's hold on some use cases: served locally, as in a cut-off, until `until_ms`.
#[derive(Debug, Clone, Serialize)]
pub struct DrillHold {
    pub drill_id: String,
    pub use_cases: Vec<String>,
    pub until_ms: i64,
}

pub struct Controller {
    healths: ArcSwap<Vec<Arc<Health>>>,
    /// Live drills in progress (at most a few).
    drills: ArcSwap<Vec<DrillHold>>,
    /// Per use case, the evaluator's latest verdict.
    verdicts: ArcSwap<std::collections::HashMap<String, ReadinessVerdict>>,
    mode: ArcSwap<ModeState>,
    cfg: ArcSwap<FailoverConfig>,
    writes: mpsc::Sender<Write>,
    dropped_writes: AtomicU64,
    changed: watch::Sender<u64>,
    version: AtomicU64,
}

/// The controller's state for the admin API and the console.
#[derive(Debug, Clone, Serialize)]
pub struct ControlSnapshot {
    pub mode: ModeState,
    /// cloud | failover | forced-local | forced-cloud
    pub effective: &'static str,
    pub upstreams: Vec<UpstreamStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub api: &'static str,
    pub breaker: &'static str,
    pub failover: bool,
    pub routable: bool,
    /// When the mode of this upstream last flipped.
    pub since_ms: Option<i64>,
    pub open_until_ms: Option<i64>,
    pub openings: u32,
    pub last_error: Option<String>,
    pub last_probe: Option<ProbeResult>,
    pub evidence: Vec<Evidence>,
}

const MODE_KEY: &str = "mode";

impl Controller {
    /// Load the saved breaker states and mode, and start the writer, the ticker and the probes.
    /// The tasks stop when `cancel` fires; await the handle to drain the pending writes.
    pub async fn start(
        store: Store,
        cfg: &Config,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Arc<Controller>, tokio::task::JoinHandle<()>)> {
        let saved: std::collections::HashMap<String, breaker::Persisted> = store
            .load_upstream_states()
            .await?
            .into_iter()
            .filter_map(|(name, json)| serde_json::from_str(&json).ok().map(|p| (name, p)))
            .collect();
        let mode = match store.meta_get(MODE_KEY).await? {
            Some(json) => serde_json::from_str(&json).unwrap_or_else(|_| default_mode()),
            None => default_mode(),
        };
        let (tx, rx) = mpsc::channel(4096);
        let (changed, _) = watch::channel(0);
        let c = Arc::new(Controller {
            healths: ArcSwap::from_pointee(Vec::new()),
            verdicts: ArcSwap::from_pointee(Default::default()),
            drills: ArcSwap::from_pointee(Vec::new()),
            mode: ArcSwap::from_pointee(mode),
            cfg: ArcSwap::from_pointee(cfg.failover.clone()),
            writes: tx,
            dropped_writes: AtomicU64::new(0),
            changed,
            version: AtomicU64::new(0),
        });
        c.set_upstreams(cfg, &saved);
        for h in c.healths.load().iter() {
            let b = h.breaker.lock();
            if b.state() != State::Closed || b.failover() {
                tracing::warn!(upstream = %h.name, breaker = b.state().as_str(), failover = b.failover(), "restored breaker state: the upstream was failing when genset stopped");
            }
        }
        let writer = tokio::spawn(write_loop(store, rx, cancel.clone()));
        let ticker = tokio::spawn(probe::run(c.clone(), cancel));
        let handle = tokio::spawn(async move {
            let _ = ticker.await;
            let _ = writer.await;
        });
        Ok((c, handle))
    }

    /// Rebuild the upstream list after a reload, keeping the health of upstreams that stay.
    pub fn reload(&self, cfg: &Config) {
        self.cfg.store(Arc::new(cfg.failover.clone()));
        self.set_upstreams(cfg, &Default::default());
    }

    fn set_upstreams(&self, cfg: &Config, saved: &std::collections::HashMap<String, breaker::Persisted>) {
        let old = self.healths.load_full();
        let now = now_ms();
        let healths = cfg
            .upstreams
            .iter()
            .map(|u| {
                if let Some(h) = old.iter().find(|h| h.name == u.name && h.api == u.api) {
                    h.config.store(u.clone());
                    h.breaker.lock().set_config(cfg.failover.breaker.clone());
                    return h.clone();
                }
                let seed =
                    u.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)) ^ now as u64;
                let breaker = match saved.get(&u.name) {
                    Some(p) => Breaker::restore(cfg.failover.breaker.clone(), seed, p),
                    None => Breaker::new(cfg.failover.breaker.clone(), seed),
                };
                let routable = breaker.routable();
                // A healthy upstream is first probed after one interval (real traffic tells
                // sooner); one restored as failing is probed at once.
                let first_probe = if breaker.failing() { 0 } else { now as u64 + cfg.failover.probe_interval.as_millis() as u64 };
                Arc::new(Health {
                    name: u.name.clone(),
                    api: u.api,
                    config: ArcSwap::new(u.clone()),
                    breaker: Mutex::new(breaker),
                    routable: AtomicBool::new(routable),
                    rejected_keys: Mutex::new(VecDeque::new()),
                    last_probe: Mutex::new(None),
                    probing: AtomicBool::new(false),
                    next_probe_ms: AtomicU64::new(first_probe),
                })
            })
            .collect();
        self.healths.store(Arc::new(healths));
    }

    /// The evaluator's latest verdict for a use case.
    pub fn verdict(&self, use_case: &str) -> Option<ReadinessVerdict> {
        self.verdicts.load().get(use_case).cloned()
    }

    /// Publish a use case's verdict (the evaluator calls this; the failover policy reads it).
    pub fn set_verdict(&self, use_case: &str, v: ReadinessVerdict) {
        self.verdicts.rcu(|m| {
            let mut m = (**m).clone();
            m.insert(use_case.to_string(), v.clone());
            m
        });
    }

    /// Put use cases under a live drill until `until_ms` (the drill module calls this; the
    /// request path then serves them as in a cut-off). Replaces a hold with the same id.
    pub fn hold_for_drill(&self, hold: DrillHold) {
        self.drills.rcu(|v| {
            let mut v: Vec<DrillHold> = v.iter().filter(|h| h.drill_id != hold.drill_id).cloned().collect();
            v.push(hold.clone());
            v
        });
        self.bump();
    }

    /// Release a drill's hold (abort or end). Returns whether it was held.
    pub fn release_drill(&self, drill_id: &str) -> bool {
        let before = self.drills.load().len();
        self.drills.rcu(|v| v.iter().filter(|h| h.drill_id != drill_id).cloned().collect::<Vec<_>>());
        self.bump();
        self.drills.load().len() != before
    }

    /// The live drill holding this use case now, if any (expired holds do not count).
    pub fn drill_for(&self, use_case: &str) -> Option<DrillHold> {
        let d = self.drills.load();
        if d.is_empty() {
            return None;
        }
        let now = now_ms();
        d.iter().find(|h| h.until_ms > now && h.use_cases.iter().any(|u| u == use_case)).cloned()
    }

    pub fn drills(&self) -> Vec<DrillHold> {
        self.drills.load().iter().cloned().collect()
    }

    /// The health of the upstream named `name`.
    pub fn health(&self, name: &str) -> Option<Arc<Health>> {
        self.healths.load().iter().find(|h| h.name == name).cloned()
    }

    pub fn healths(&self) -> Arc<Vec<Arc<Health>>> {
        self.healths.load_full()
    }

    pub fn config(&self) -> Arc<FailoverConfig> {
        self.cfg.load_full()
    }

    pub fn mode(&self) -> Arc<ModeState> {
        self.mode.load_full()
    }

    /// Notified on every transition and mode change (the `queue` policy waits on it).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// cloud | failover | forced-local | forced-cloud
    pub fn effective(&self) -> &'static str {
        match self.mode.load().mode {
            Mode::ForceLocal => "forced-local",
            Mode::ForceCloud => "forced-cloud",
            Mode::Auto => {
                if self.healths.load().iter().any(|h| h.in_failover()) {
                    "failover"
                } else {
                    "cloud"
                }
            }
        }
    }

    /// The operator's flip: recorded as an event with who did it and why.
    pub fn set_mode(&self, mode: Mode, reason: &str, actor: &str) -> Result<ModeState, String> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err("a reason is required to change the mode".into());
        }
        if reason.len() > 500 {
            return Err("the reason is longer than 500 characters".into());
        }
        let now = now_ms();
        let old = self.mode.load_full();
        let new = ModeState { mode, reason: reason.to_string(), actor: actor.to_string(), since_ms: now };
        self.mode.store(Arc::new(new.clone()));
        tracing::warn!(from = old.mode.as_str(), to = mode.as_str(), actor, reason, "mode changed");
        self.write(Write::Event {
            ts_ms: now,
            kind: "mode",
            subject: "genset".into(),
            cause: reason.to_string(),
            detail: json!({"from": old.mode, "to": mode, "actor": actor}),
        });
        self.write(Write::Meta { key: MODE_KEY, value: serde_json::to_string(&new).unwrap_or_default() });
        self.bump();
        Ok(new)
    }

    /// Take one attempt's outcome into account. `key_hash` and `key_was_accepted` describe the
    /// client key of a passthrough request (for the distinct-rejected-keys signal).
    pub fn report(&self, h: &Health, outcome: &Outcome, source: Source, key: Option<(&str, bool)>) {
        let now = now_ms();
        let outcome = match (outcome, key) {
            (Outcome::ClientKeyRejected, Some((hash, true))) => {
                let cfg = self.cfg.load();
                let mut keys = h.rejected_keys.lock();
                let horizon = now - cfg.breaker.window.as_millis() as i64;
                while keys.front().is_some_and(|(t, _)| *t < horizon) {
                    keys.pop_front();
                }
                if !keys.iter().any(|(_, k)| k == hash) {
                    keys.push_back((now, hash.to_string()));
                }
                let distinct = keys.len() as u32;
                if distinct >= cfg.breaker.distinct_key_rejections {
                    keys.clear();
                    drop(keys);
                    let cause = format!("{distinct} distinct client keys the cloud accepted before were rejected (401/403)");
                    let transitions = h.breaker.lock().trip(now, cause);
                    self.apply(h, now, transitions);
                }
                return;
            }
            (o, _) => o.clone(),
        };
        let transitions = h.breaker.lock().record(now, &outcome, source);
        self.apply(h, now, transitions);
    }

    /// Let time pass for every upstream.
    fn tick(&self) {
        let now = now_ms();
        for h in self.healths.load().iter() {
            let t = h.breaker.lock().tick(now);
            self.apply(h, now, t);
        }
    }

    fn apply(&self, h: &Health, now: i64, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        let (from_state, persisted, routable) = {
            let b = h.breaker.lock();
            (b.state(), b.persisted(), b.routable())
        };
        h.routable.store(routable, Ordering::Relaxed);
        let _ = from_state;
        for t in transitions {
            let (kind, cause, detail) = match t {
                Transition::Opened { cause, evidence, open_ms } => {
                    tracing::warn!(upstream = %h.name, %cause, open_ms, "breaker opened");
                    ("breaker", cause, json!({"to": "open", "open_ms": open_ms, "evidence": evidence}))
                }
                Transition::HalfOpened => {
                    tracing::info!(upstream = %h.name, "breaker half-open: probing");
                    ("breaker", "open time elapsed; probing".to_string(), json!({"to": "half-open"}))
                }
                Transition::Closed => {
                    tracing::info!(upstream = %h.name, "breaker closed");
                    ("breaker", "half-open probes succeeded".to_string(), json!({"to": "closed"}))
                }
                Transition::FailoverEntered { cause } => {
                    tracing::warn!(upstream = %h.name, %cause, "failing over: traffic leaves this upstream");
                    ("failover", cause, json!({"to": "failover"}))
                }
                Transition::FailoverLeft { cause } => {
                    tracing::warn!(upstream = %h.name, %cause, "back to the cloud: traffic returns to this upstream");
                    ("failover", cause, json!({"to": "cloud"}))
                }
            };
            self.write(Write::Event { ts_ms: now, kind, subject: h.name.clone(), cause, detail });
        }
        self.write(Write::UpstreamState {
            upstream: h.name.clone(),
            json: serde_json::to_string(&persisted).unwrap_or_default(),
            ts_ms: now,
        });
        self.bump();
    }

    fn bump(&self) {
        let v = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        self.changed.send_replace(v);
    }

    fn write(&self, w: Write) {
        if self.writes.try_send(w).is_err() {
            self.dropped_writes.fetch_add(1, Ordering::Relaxed);
            tracing::error!("controller event queue full: an event was not stored");
        }
    }

    pub fn snapshot(&self) -> ControlSnapshot {
        let upstreams = self
            .healths
            .load()
            .iter()
            .map(|h| {
                let b = h.breaker.lock();
                let evidence = b.evidence();
                UpstreamStatus {
                    name: h.name.clone(),
                    api: match h.api {
                        Flavor::OpenAi => "openai",
                        Flavor::Anthropic => "anthropic",
                    },
                    breaker: b.state().as_str(),
                    failover: b.failover(),
                    routable: b.routable(),
                    since_ms: b.last_flip_ms(),
                    open_until_ms: (b.state() == State::Open).then(|| b.open_until_ms()),
                    openings: b.openings(),
                    last_error: evidence.last().map(|e| e.detail.clone()),
                    last_probe: h.last_probe.lock().clone(),
                    evidence,
                }
            })
            .collect();
        ControlSnapshot { mode: (*self.mode.load_full()).clone(), effective: self.effective(), upstreams }
    }
}

fn default_mode() -> ModeState {
    ModeState { mode: Mode::Auto, reason: "default".into(), actor: "genset".into(), since_ms: now_ms() }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Write>, cancel: CancellationToken) {
    loop {
        let w = tokio::select! {
            w = rx.recv() => w,
            _ = cancel.cancelled() => {
                // Drain what is queued, then stop.
                while let Ok(w) = rx.try_recv() {
                    do_write(&store, w).await;
                }
                return;
            }
        };
        match w {
            Some(w) => do_write(&store, w).await,
            None => return,
        }
    }
}

async fn do_write(store: &Store, w: Write) {
    let r = match &w {
        Write::Event { ts_ms, kind, subject, cause, detail } => {
            store.insert_event(*ts_ms, kind, subject, cause, Some(&detail.to_string())).await
        }
        Write::UpstreamState { upstream, json, ts_ms } => store.upsert_upstream_state(upstream, json, *ts_ms).await,
        Write::Meta { key, value } => store.meta_set(key, value).await,
    };
    if let Err(e) = r {
        tracing::error!(error = %e, "controller: could not store an event or state");
    }
}
