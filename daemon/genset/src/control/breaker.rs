//! The circuit breaker of one upstream, with the failover flag's hysteresis on top. Pure: time
//! comes in as milliseconds and jitter from a seeded generator, so the state machine is tested
//! over hours of simulated flapping in microseconds.
//!
//! Two layers:
//! - the **breaker** (closed / open / half-open) follows the evidence fast: cut-offs in a row
//!   or a failure rate over a window (with a minimum volume) open it; the open time grows with
//!   each consecutive opening, with jitter; after it, successful probes in half-open close it;
//! - the **failover flag** is what the operator sees as the mode: it is raised when the
//!   breaker opens and lowered only after the breaker has stayed closed for `recovery_hold`,
//!   and it never flips twice within `min_dwell`. Requests go to the upstream only when the
//!   flag is down and the breaker closed.
//!
//! **Architecture Invariant:** every change of either layer comes back as a [`Transition`],
//! which the controller turns into an event with its cause and evidence.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::outcome::Outcome;
use crate::config::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// Where an outcome came from: real traffic, or an active probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Request,
    Probe,
}

/// One failure kept as evidence for the next transition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    pub ts_ms: i64,
    pub outcome: String,
    pub detail: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Opened { cause: String, evidence: Vec<Evidence>, open_ms: i64 },
    HalfOpened,
    Closed,
    FailoverEntered { cause: String },
    FailoverLeft { cause: String },
}

/// What survives a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Persisted {
    pub state: State,
    pub open_until_ms: i64,
    pub openings: u32,
    pub failover: bool,
    pub last_flip_ms: Option<i64>,
    pub closed_since_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: State,
    open_until_ms: i64,
    half_open_successes: u32,
    /// Consecutive openings without a stable recovery; grows the open time.
    openings: u32,
    consecutive_cutoffs: u32,
    /// Outcomes over `window`, counted in time buckets (bounded memory and O(1) per outcome
    /// at any request rate: this runs on every request).
    window: Window,
    failover: bool,
    last_flip_ms: Option<i64>,
    closed_since_ms: Option<i64>,
    evidence: VecDeque<Evidence>,
    rng: u64,
}

const EVIDENCE_KEPT: usize = 10;

impl Breaker {
    pub fn new(cfg: BreakerConfig, seed: u64) -> Self {
        Breaker {
            cfg,
            state: State::Closed,
            open_until_ms: 0,
            half_open_successes: 0,
            openings: 0,
            consecutive_cutoffs: 0,
            window: Window::default(),
            failover: false,
            last_flip_ms: None,
            closed_since_ms: None,
            evidence: VecDeque::new(),
            rng: seed | 1,
        }
    }

    pub fn restore(cfg: BreakerConfig, seed: u64, p: &Persisted) -> Self {
        let mut b = Breaker::new(cfg, seed);
        b.state = p.state;
        b.open_until_ms = p.open_until_ms;
        b.openings = p.openings;
        b.failover = p.failover;
        b.last_flip_ms = p.last_flip_ms;
        b.closed_since_ms = p.closed_since_ms;
        b
    }

    pub fn persisted(&self) -> Persisted {
        Persisted {
            state: self.state,
            open_until_ms: self.open_until_ms,
            openings: self.openings,
            failover: self.failover,
            last_flip_ms: self.last_flip_ms,
            closed_since_ms: self.closed_since_ms,
        }
    }

    pub fn set_config(&mut self, cfg: BreakerConfig) {
        self.cfg = cfg;
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn failover(&self) -> bool {
        self.failover
    }
    pub fn openings(&self) -> u32 {
        self.openings
    }
    pub fn open_until_ms(&self) -> i64 {
        self.open_until_ms
    }
    pub fn last_flip_ms(&self) -> Option<i64> {
        self.last_flip_ms
    }
    pub fn evidence(&self) -> Vec<Evidence> {
        self.evidence.iter().cloned().collect()
    }

    /// Whether live requests may go to this upstream.
    pub fn routable(&self) -> bool {
        !self.failover && self.state == State::Closed
    }

    /// Whether the upstream needs the fast probe interval.
    pub fn failing(&self) -> bool {
        self.failover || self.state != State::Closed
    }

    /// Take one outcome into account.
    pub fn record(&mut self, now: i64, outcome: &Outcome, source: Source) -> Vec<Transition> {
        let mut out = Vec::new();
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::CutOff(_) | Outcome::Transient { .. } => true,
            Outcome::NotCounted(_) | Outcome::ClientKeyRejected => return out,
        };
        if failed {
            self.evidence.push_back(Evidence {
                ts_ms: now,
                outcome: outcome.label().into(),
                detail: outcome.cause(),
                source: match source {
                    Source::Request => "request".into(),
                    Source::Probe => "probe".into(),
                },
            });
            while self.evidence.len() > EVIDENCE_KEPT {
                self.evidence.pop_front();
            }
        }
        match self.state {
            State::Closed => {
                let horizon = ms(self.cfg.window);
                self.window.push(now, failed, horizon);
                if let Outcome::CutOff(_) = outcome {
                    self.consecutive_cutoffs += 1;
                } else if !failed {
                    self.consecutive_cutoffs = 0;
                }
                let cause = if self.consecutive_cutoffs >= self.cfg.consecutive_cutoffs {
                    Some(format!("{} cut-off failures in a row, the last: {}", self.consecutive_cutoffs, outcome.cause()))
                } else {
                    let (n, bad) = (self.window.total, self.window.bad);
                    (n >= self.cfg.min_volume && f64::from(bad) / f64::from(n) >= self.cfg.failure_rate).then(|| {
                        format!(
                            "{bad} of the last {n} outcomes failed (threshold {:.0}%), the last: {}",
                            self.cfg.failure_rate * 100.0,
                            outcome.cause()
                        )
                    })
                };
                if let Some(cause) = cause {
                    self.open(now, cause, &mut out);
                }
            }
            State::Open => {}
            State::HalfOpen => {
                if failed {
                    self.open(now, format!("half-open trial failed: {}", outcome.cause()), &mut out);
                } else if source == Source::Probe || !self.failover {
                    self.half_open_successes += 1;
                    if self.half_open_successes >= self.cfg.half_open_successes {
                        self.state = State::Closed;
                        self.closed_since_ms = Some(now);
                        self.consecutive_cutoffs = 0;
                        self.window.clear();
                        out.push(Transition::Closed);
                    }
                }
            }
        }
        self.tick_into(now, &mut out);
        out
    }

    /// Open at once on definitive evidence (several accepted client keys rejected together).
    pub fn trip(&mut self, now: i64, cause: String) -> Vec<Transition> {
        let mut out = Vec::new();
        self.evidence.push_back(Evidence { ts_ms: now, outcome: "cut-off".into(), detail: cause.clone(), source: "request".into() });
        while self.evidence.len() > EVIDENCE_KEPT {
            self.evidence.pop_front();
        }
        if self.state != State::Open {
            self.open(now, cause, &mut out);
        }
        self.tick_into(now, &mut out);
        out
    }

    /// Let time pass: open -> half-open, the failover flag's hysteresis.
    pub fn tick(&mut self, now: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        self.tick_into(now, &mut out);
        out
    }

    fn tick_into(&mut self, now: i64, out: &mut Vec<Transition>) {
        if self.state == State::Open && now >= self.open_until_ms {
            self.state = State::HalfOpen;
            self.half_open_successes = 0;
            out.push(Transition::HalfOpened);
        }
        let dwell_ok = self.last_flip_ms.is_none_or(|t| now - t >= ms(self.cfg.min_dwell));
        if !self.failover && self.state != State::Closed && dwell_ok {
            self.failover = true;
            self.last_flip_ms = Some(now);
            let cause = self.evidence.back().map_or_else(|| "breaker not closed".to_string(), |e| e.detail.clone());
            out.push(Transition::FailoverEntered { cause });
        }
        if self.state == State::Closed
            && let Some(since) = self.closed_since_ms
            && now - since >= ms(self.cfg.recovery_hold)
        {
            // A stable recovery: the next opening starts from the base open time again.
            self.openings = 0;
            if self.failover && dwell_ok {
                self.failover = false;
                self.last_flip_ms = Some(now);
                out.push(Transition::FailoverLeft {
                    cause: format!("closed and healthy for {}", humantime::format_duration(self.cfg.recovery_hold)),
                });
            }
        }
    }

    fn open(&mut self, now: i64, cause: String, out: &mut Vec<Transition>) {
        let base = ms(self.cfg.open_base) as f64;
        let max = ms(self.cfg.open_max) as f64;
        let grown = (base * 2f64.powi(self.openings.min(30) as i32)).min(max);
        let open_ms = (grown * self.jitter()).round() as i64;
        self.state = State::Open;
        self.open_until_ms = now + open_ms;
        self.openings += 1;
        self.half_open_successes = 0;
        self.closed_since_ms = None;
        self.window.clear();
        self.consecutive_cutoffs = 0;
        out.push(Transition::Opened { cause, evidence: self.evidence(), open_ms });
    }

    /// A factor in [0.8, 1.2) from a xorshift generator.
    fn jitter(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        0.8 + 0.4 * ((x >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Outcome counts over a sliding time window, in buckets of 1/100 of the window (at least
/// 1 ms): an outcome is forgotten between `window` and `window` + one bucket after it
/// happened.
#[derive(Debug, Default, Clone)]
struct Window {
    /// (bucket start ms, outcomes, failures), oldest first.
    buckets: VecDeque<(i64, u32, u32)>,
    total: u32,
    bad: u32,
}

impl Window {
    fn push(&mut self, now: i64, failed: bool, window_ms: i64) {
        let width = (window_ms / 100).max(1);
        let start = now - now.rem_euclid(width);
        match self.buckets.back_mut() {
            Some(b) if b.0 == start => {
                b.1 += 1;
                b.2 += u32::from(failed);
            }
            _ => self.buckets.push_back((start, 1, u32::from(failed))),
        }
        self.total += 1;
        self.bad += u32::from(failed);
        let horizon = now - window_ms;
        while let Some(&(start, n, bad)) = self.buckets.front() {
            if start + width > horizon {
                break;
            }
            self.buckets.pop_front();
            self.total -= n;
            self.bad -= bad;
        }
    }

    fn clear(&mut self) {
        *self = Window::default();
    }
}

fn ms(d: std::time::Duration) -> i64 {
    d.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut() -> Outcome {
        Outcome::CutOff("connection refused".into())
    }
    fn blip() -> Outcome {
        Outcome::Transient { cause: "upstream error 503".into(), retry_after: None }
    }

    #[test]
    fn the_window_counts_in_bounded_buckets_and_forgets_old_outcomes() {
        let mut w = Window::default();
        // 60 s window: 600 ms buckets. A million outcomes in one bucket take one entry.
        for i in 0..1_000_000u32 {
            w.push(1_000, i % 10 == 0, 60_000);
        }
        assert_eq!((w.total, w.bad, w.buckets.len()), (1_000_000, 100_000, 1));
        // One outcome per second for two minutes: at most ~101 buckets, only the last minute counted.
        let mut w = Window::default();
        for s in 0..120i64 {
            w.push(s * 1_000, s >= 100, 60_000);
        }
        assert!(w.buckets.len() <= 101, "{} buckets", w.buckets.len());
        assert_eq!(w.total, 61, "outcomes from t=59 s..=119 s (a window includes its edge)");
        assert_eq!(w.bad, 20);
        assert_eq!(w.buckets.iter().map(|b| b.1).sum::<u32>(), w.total);
    }

    #[test]
    fn three_cutoffs_in_a_row_open_at_once_and_flip_to_failover() {
        let mut b = Breaker::new(BreakerConfig::default(), 7);
        assert!(b.record(0, &cut(), Source::Request).is_empty());
        assert!(b.record(10, &cut(), Source::Request).is_empty());
        let t = b.record(20, &cut(), Source::Request);
        assert!(matches!(&t[0], Transition::Opened { evidence, .. } if evidence.len() == 3), "{t:?}");
        assert!(matches!(t[1], Transition::FailoverEntered { .. }));
        assert!(!b.routable());
    }

    #[test]
    fn sporadic_errors_and_refusals_do_not_open() {
        let mut b = Breaker::new(BreakerConfig::default(), 7);
        for i in 0..100 {
            let o = if i % 5 == 0 { blip() } else { Outcome::Success };
            assert!(b.record(i * 100, &o, Source::Request).is_empty());
            assert!(b.record(i * 100 + 1, &Outcome::NotCounted(super::super::outcome::Refusal::ContextLength), Source::Request).is_empty());
        }
        assert!(b.routable());
    }

    #[test]
    fn a_persistent_error_rate_opens_after_the_minimum_volume() {
        let mut b = Breaker::new(BreakerConfig::default(), 7);
        let mut opened_at = None;
        for i in 0..20 {
            if b.record(i * 100, &blip(), Source::Request).iter().any(|t| matches!(t, Transition::Opened { .. })) {
                opened_at = Some(i);
                break;
            }
        }
        assert_eq!(opened_at, Some(9), "min_volume 10 outcomes, all failed");
    }

    #[test]
    fn half_open_needs_probe_successes_then_recovery_hold_before_traffic_returns() {
        let cfg = BreakerConfig::default();
        let mut b = Breaker::new(cfg.clone(), 7);
        for t in 0..3 {
            b.record(t, &cut(), Source::Request);
        }
        let until = b.open_until_ms();
        assert!((4_000..=6_000).contains(&(until - 2)), "5 s +-20% jitter: {until}");
        assert_eq!(b.tick(until), vec![Transition::HalfOpened]);
        assert!(b.record(until + 1, &Outcome::Success, Source::Probe).is_empty());
        assert_eq!(b.record(until + 2, &Outcome::Success, Source::Probe), vec![Transition::Closed]);
        assert!(!b.routable(), "closed but still in failover until the hold and dwell pass");
        let back = until + 2 + 60_000;
        assert!(matches!(b.tick(back)[..], [Transition::FailoverLeft { .. }]));
        assert!(b.routable());
    }

    #[test]
    fn open_time_grows_with_consecutive_openings() {
        let mut b = Breaker::new(BreakerConfig::default(), 9);
        for t in 0..3 {
            b.record(t, &cut(), Source::Request);
        }
        let mut now = b.open_until_ms();
        let mut lengths = vec![];
        for _ in 0..5 {
            b.tick(now);
            let t = b.record(now, &cut(), Source::Probe);
            let Some(Transition::Opened { open_ms, .. }) = t.first() else { panic!("{t:?}") };
            lengths.push(*open_ms);
            now = b.open_until_ms();
        }
        // 10, 20, 40, 80, 160 s, each +-20%.
        for (i, l) in lengths.iter().enumerate() {
            let nominal = 10_000f64 * 2f64.powi(i as i32);
            assert!((*l as f64) >= nominal * 0.8 && (*l as f64) < nominal * 1.2, "{lengths:?}");
        }
    }

    #[test]
    fn restored_state_keeps_an_open_breaker_open() {
        let mut b = Breaker::new(BreakerConfig::default(), 7);
        for t in 0..3 {
            b.record(t, &cut(), Source::Request);
        }
        let p = b.persisted();
        let r = Breaker::restore(BreakerConfig::default(), 8, &p);
        assert_eq!(r.state(), State::Open);
        assert!(!r.routable());
        assert_eq!(r.persisted(), p);
    }

    /// Down 10 s, up 10 s, for an hour, with probes every second while failing and traffic
    /// every 100 ms while routable: the mode flips at most once a minute.
    #[test]
    fn flapping_upstream_flips_the_mode_at_most_once_a_minute() {
        let mut b = Breaker::new(BreakerConfig::default(), 42);
        let mut flips = vec![];
        let mut now = 0i64;
        while now < 3_600_000 {
            let up = (now / 10_000) % 2 == 1;
            let outcome = if up { Outcome::Success } else { cut() };
            let mut t = b.tick(now);
            if b.routable() {
                t.extend(b.record(now, &outcome, Source::Request));
            }
            if b.failing() && now % 1000 == 0 {
                t.extend(b.record(now, &outcome, Source::Probe));
            }
            for tr in t {
                if matches!(tr, Transition::FailoverEntered { .. } | Transition::FailoverLeft { .. }) {
                    flips.push(now);
                }
            }
            now += 100;
        }
        assert!(!flips.is_empty());
        for w in flips.windows(2) {
            assert!(w[1] - w[0] >= 60_000, "flips {flips:?}");
        }
    }

    /// A real outage then a stable recovery: failover once, back once.
    #[test]
    fn outage_then_recovery_flips_twice() {
        let mut b = Breaker::new(BreakerConfig::default(), 1);
        let mut flips = vec![];
        for now in (0..600_000i64).step_by(100) {
            let up = !(10_000..130_000).contains(&now);
            let outcome = if up { Outcome::Success } else { cut() };
            let mut t = b.tick(now);
            if b.routable() {
                t.extend(b.record(now, &outcome, Source::Request));
            }
            if b.failing() && now % 1000 == 0 {
                t.extend(b.record(now, &outcome, Source::Probe));
            }
            flips.extend(
                t.into_iter().filter(|tr| matches!(tr, Transition::FailoverEntered { .. } | Transition::FailoverLeft { .. })).map(|_| now),
            );
        }
        assert_eq!(flips.len(), 2, "{flips:?}");
        assert!(flips[0] - 10_000 <= 300, "entered within 0.3 s: {flips:?}");
        assert!(flips[1] > 130_000 && flips[1] < 130_000 + 300_000, "{flips:?}");
    }
}
