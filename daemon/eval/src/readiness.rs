//! Readiness of a use case for local serving, from its recent evaluations.
//!
//! [`Readiness::compute`] looks at the samples inside a rolling [`Window`]
//! and decides three things:
//!
//! - **score**: the mean score with a 95% Wilson interval on `n` (see
//!   [`crate::stats`] for why Wilson on the mean);
//! - **latency** ([`Check`]): the nearest-rank p95 of total latency (and of
//!   time to first token, when samples carry it) against the SLO in
//!   [`Thresholds`]; `unknown` when no SLO is configured or nothing was
//!   measured;
//! - **capacity** ([`Check`]): `local_rps_measured >= peak_rps_recorded *
//!   capacity_headroom`; `unknown` when no [`Capacity`] is given.
//!
//! The verdict, in this order:
//!
//! 1. `not-ready` when `n < min_samples` ("not enough evidence");
//! 2. `not-ready` when the interval's **upper** bound is below
//!    `marginal_score` (confidently bad);
//! 3. `ready` when the interval's **lower** bound is at least `ready_score`,
//!    and neither latency nor capacity is `fail` (`unknown` does not block,
//!    but says so in the reasons);
//! 4. `marginal` otherwise (good-looking but unproven, in between, or good
//!    but too slow / not enough capacity).
//!
//! `reasons` are human sentences for the console and the API, always in the
//! order score, latency, capacity. A change of verdict is an event:
//! [`verdict_change`] says when to emit one.

use serde::{Deserialize, Serialize};

use crate::stats::{Interval, Z_95, half_trend, mean, percentile, wilson};

/// One scored evaluation of the use case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When the evaluation ran (Unix ms).
    pub ts_ms: i64,
    /// In `[0, 1]`; non-finite scores are ignored.
    pub score: f64,
    pub pass: bool,
    /// Total latency of the local call.
    pub latency_ms: u64,
    /// Time to first token, when streamed.
    #[serde(default)]
    pub ttft_ms: Option<u64>,
}

/// The rolling window: samples with `end_ms - span_ms < ts_ms <= end_ms`,
/// and of those at most the newest `max_samples`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub end_ms: i64,
    pub span_ms: u64,
    #[serde(default)]
    pub max_samples: Option<usize>,
}

/// Readiness thresholds of a use case (from the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// The interval's lower bound must reach this for `ready`. Default 0.80.
    pub ready_score: f64,
    /// An upper bound below this is `not-ready`. Default 0.60.
    pub marginal_score: f64,
    /// Fewer samples than this is `not-ready`. Default 30.
    pub min_samples: usize,
    /// SLO on p95 total latency; `None` means no latency SLO. Default none.
    pub p95_latency_ms: Option<u64>,
    /// SLO on p95 time to first token; `None` means none. Default none.
    pub p95_ttft_ms: Option<u64>,
    /// Capacity must be at least `peak * capacity_headroom`. Default 1.0.
    pub capacity_headroom: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            ready_score: 0.8,
            marginal_score: 0.6,
            min_samples: 30,
            p95_latency_ms: None,
            p95_ttft_ms: None,
            capacity_headroom: 1.0,
        }
    }
}

impl Thresholds {
    /// Load-time check; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if !unit(self.ready_score) {
            return Err(format!("ready_score: {} is not within [0, 1]", self.ready_score));
        }
        if !unit(self.marginal_score) || self.marginal_score > self.ready_score {
            return Err(format!("marginal_score: {} must be within [0, ready_score = {}]", self.marginal_score, self.ready_score));
        }
        if self.min_samples == 0 {
            return Err("min_samples: must be at least 1".to_string());
        }
        if !(self.capacity_headroom.is_finite() && self.capacity_headroom > 0.0) {
            return Err(format!("capacity_headroom: {} must be a positive number", self.capacity_headroom));
        }
        Ok(())
    }
}

/// Recorded peak load against what the local engine was measured to carry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub peak_rps_recorded: f64,
    pub local_rps_measured: f64,
}

/// The readiness verdict of a use case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ready,
    Marginal,
    NotReady,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Ready => "ready",
            Verdict::Marginal => "marginal",
            Verdict::NotReady => "not-ready",
        })
    }
}

/// The outcome of a latency or capacity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Pass,
    Fail,
    /// Not configured or not measured.
    Unknown,
}

/// Readiness of one use case over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// Samples in the window.
    pub n: usize,
    /// Mean score (0 when `n = 0`).
    pub mean: f64,
    /// 95% Wilson interval on the mean.
    pub lower: f64,
    pub upper: f64,
    /// Fraction of samples with `pass`.
    pub pass_rate: f64,
    pub p95_latency_ms: Option<u64>,
    pub p95_ttft_ms: Option<u64>,
    /// Newer-half mean minus older-half mean ([`crate::stats::half_trend`]).
    pub trend: Option<f64>,
    pub verdict: Verdict,
    pub latency_verdict: Check,
    pub capacity_verdict: Check,
    /// Human sentences: score, latency, capacity.
    pub reasons: Vec<String>,
}

impl Readiness {
    /// Compute readiness from the evaluations of one use case.
    pub fn compute(samples: &[Sample], window: Window, thresholds: &Thresholds, capacity: Option<Capacity>) -> Readiness {
        let start = window.end_ms.saturating_sub(i64::try_from(window.span_ms).unwrap_or(i64::MAX));
        let mut inside: Vec<Sample> =
            samples.iter().filter(|s| s.ts_ms > start && s.ts_ms <= window.end_ms && s.score.is_finite()).copied().collect();
        inside.sort_by_key(|s| std::cmp::Reverse(s.ts_ms));
        if let Some(max) = window.max_samples {
            inside.truncate(max);
        }

        let n = inside.len();
        let scores: Vec<f64> = inside.iter().map(|s| s.score.clamp(0.0, 1.0)).collect();
        let m = mean(&scores).unwrap_or(0.0);
        let Interval { lower, upper } = wilson(m, n, Z_95);
        let pass_rate = if n == 0 { 0.0 } else { inside.iter().filter(|s| s.pass).count() as f64 / n as f64 };
        let latencies: Vec<u64> = inside.iter().map(|s| s.latency_ms).collect();
        let ttfts: Vec<u64> = inside.iter().filter_map(|s| s.ttft_ms).collect();
        let p95_latency_ms = percentile(&latencies, 95.0);
        let p95_ttft_ms = percentile(&ttfts, 95.0);
        let points: Vec<(i64, f64)> = inside.iter().zip(&scores).map(|(s, v)| (s.ts_ms, *v)).collect();
        let trend = half_trend(&points);

        let t = thresholds;
        let mut reasons = Vec::new();
        let figure = format!("score {m:.2} [{lower:.2}, {upper:.2}] over {n} samples");
        let enough = n >= t.min_samples;
        if !enough {
            reasons.push(format!(
                "not enough evidence: {n} {} in the window, {} needed",
                if n == 1 { "sample" } else { "samples" },
                t.min_samples
            ));
            if n > 0 {
                reasons.push(figure);
            }
        } else if lower >= t.ready_score {
            reasons.push(format!("{figure} meets the {:.2} threshold", t.ready_score));
        } else if upper < t.marginal_score {
            reasons.push(format!("{figure} is below the {:.2} marginal threshold", t.marginal_score));
        } else if m < t.ready_score {
            reasons.push(format!("{figure} is below the {:.2} threshold", t.ready_score));
        } else {
            reasons.push(format!("{figure} is not yet confidently above the {:.2} threshold (lower bound {lower:.2})", t.ready_score));
        }

        let latency_verdict = latency_check(p95_latency_ms, p95_ttft_ms, t, &mut reasons);
        let capacity_verdict = capacity_check(capacity, t.capacity_headroom, &mut reasons);

        let verdict = if !enough || upper < t.marginal_score {
            Verdict::NotReady
        } else if lower >= t.ready_score && latency_verdict != Check::Fail && capacity_verdict != Check::Fail {
            Verdict::Ready
        } else {
            Verdict::Marginal
        };

        Readiness {
            n,
            mean: m,
            lower,
            upper,
            pass_rate,
            p95_latency_ms,
            p95_ttft_ms,
            trend,
            verdict,
            latency_verdict,
            capacity_verdict,
            reasons,
        }
    }
}

fn latency_check(p95: Option<u64>, p95_ttft: Option<u64>, t: &Thresholds, reasons: &mut Vec<String>) -> Check {
    let mut one = |what: &str, measured: Option<u64>, slo: Option<u64>| match (measured, slo) {
        (_, None) => Check::Unknown,
        (None, Some(_)) => {
            reasons.push(format!("no {what} measured"));
            Check::Unknown
        }
        (Some(v), Some(slo)) if v > slo => {
            reasons.push(format!("p95 {what} {v} ms exceeds the {slo} ms SLO"));
            Check::Fail
        }
        (Some(v), Some(slo)) => {
            reasons.push(format!("p95 {what} {v} ms is within the {slo} ms SLO"));
            Check::Pass
        }
    };
    let total = one("latency", p95, t.p95_latency_ms);
    let first = one("time to first token", p95_ttft, t.p95_ttft_ms);
    if t.p95_latency_ms.is_none() && t.p95_ttft_ms.is_none() {
        reasons.push("no latency SLO configured".to_string());
    }
    match (total, first) {
        (Check::Fail, _) | (_, Check::Fail) => Check::Fail,
        (Check::Pass, _) | (_, Check::Pass) => Check::Pass,
        _ => Check::Unknown,
    }
}

fn capacity_check(capacity: Option<Capacity>, headroom: f64, reasons: &mut Vec<String>) -> Check {
    let Some(c) = capacity else {
        reasons.push("local capacity not measured yet".to_string());
        return Check::Unknown;
    };
    let (peak, local) = (c.peak_rps_recorded, c.local_rps_measured);
    if !(peak.is_finite() && local.is_finite()) {
        reasons.push("local capacity figures are not usable".to_string());
        return Check::Unknown;
    }
    let need = peak.max(0.0) * headroom;
    let headroom_note = if (headroom - 1.0).abs() > f64::EPSILON { format!(" with x{headroom:.2} headroom") } else { String::new() };
    if local >= need {
        reasons.push(format!("local engine measured {local:.2} req/s, enough for the recorded peak of {peak:.2} req/s{headroom_note}"));
        Check::Pass
    } else {
        reasons.push(format!("local engine measured {local:.2} req/s, below the recorded peak of {peak:.2} req/s{headroom_note}"));
        Check::Fail
    }
}

/// A change of verdict, to be recorded as an event with its cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictChange {
    /// `None` for the first verdict ever computed for the use case.
    pub from: Option<Verdict>,
    pub to: Verdict,
    /// The new readiness's reasons, joined with "; ".
    pub cause: String,
}

/// The event to record when `current` differs from the previous verdict
/// (including the first verdict, `previous = None`); `None` when unchanged.
pub fn verdict_change(previous: Option<Verdict>, current: &Readiness) -> Option<VerdictChange> {
    (previous != Some(current.verdict)).then(|| VerdictChange { from: previous, to: current.verdict, cause: current.reasons.join("; ") })
}

#[cfg(test)]
mod tests {
    use super::*;

    const END: i64 = 1_000_000;

    /// `n` samples, `passes` of them scoring 1 and the rest 0, one ms apart
    /// ending at END, with the given latency.
    fn samples(n: usize, passes: usize, latency_ms: u64) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                ts_ms: END - i as i64,
                score: if i < passes { 1.0 } else { 0.0 },
                pass: i < passes,
                latency_ms,
                ttft_ms: None,
            })
            .collect()
    }

    fn window() -> Window {
        Window { end_ms: END, span_ms: 10_000, max_samples: None }
    }

    /// One readiness case: expected verdict, latency and capacity checks, and
    /// the first reason.
    fn check(samples: &[Sample], thresholds: Thresholds, capacity: Option<Capacity>, expected: (Verdict, Check, Check, &str)) -> Readiness {
        let r = Readiness::compute(samples, window(), &thresholds, capacity);
        assert_eq!(
            (r.verdict, r.latency_verdict, r.capacity_verdict, r.reasons.first().map(String::as_str)),
            (expected.0, expected.1, expected.2, Some(expected.3)),
            "{r:#?}"
        );
        r
    }

    #[test]
    fn verdicts() {
        let slo = Thresholds { p95_latency_ms: Some(2000), ..Default::default() };
        let cap_ok = Some(Capacity { peak_rps_recorded: 2.0, local_rps_measured: 3.0 });
        let cap_low = Some(Capacity { peak_rps_recorded: 2.0, local_rps_measured: 1.0 });

        // 100 of 100 pass: mean 1, Wilson lower = 100 / (100 + 3.8414589) = 0.963006.
        let r = check(
            &samples(100, 100, 1500),
            slo,
            cap_ok,
            (Verdict::Ready, Check::Pass, Check::Pass, "score 1.00 [0.96, 1.00] over 100 samples meets the 0.80 threshold"),
        );
        assert!((r.lower - 100.0 / (100.0 + Z_95 * Z_95)).abs() < 1e-9);
        assert_eq!(r.reasons[1], "p95 latency 1500 ms is within the 2000 ms SLO");
        assert_eq!(r.reasons[2], "local engine measured 3.00 req/s, enough for the recorded peak of 2.00 req/s");

        // Same scores, too slow: marginal.
        check(
            &samples(100, 100, 2500),
            slo,
            cap_ok,
            (Verdict::Marginal, Check::Fail, Check::Pass, "score 1.00 [0.96, 1.00] over 100 samples meets the 0.80 threshold"),
        );
        // Same scores, not enough capacity: marginal.
        check(
            &samples(100, 100, 1500),
            slo,
            cap_low,
            (Verdict::Marginal, Check::Pass, Check::Fail, "score 1.00 [0.96, 1.00] over 100 samples meets the 0.80 threshold"),
        );
        // No SLO, no capacity measured: unknowns do not block.
        let r = check(
            &samples(100, 100, 9999),
            Thresholds::default(),
            None,
            (Verdict::Ready, Check::Unknown, Check::Unknown, "score 1.00 [0.96, 1.00] over 100 samples meets the 0.80 threshold"),
        );
        assert_eq!(r.reasons[1..], ["no latency SLO configured", "local capacity not measured yet"]);

        // 31 of 50 (mean 0.62): Wilson [0.4818, 0.7399]: upper >= 0.60 and lower < 0.80 -> marginal.
        check(
            &samples(50, 31, 100),
            slo,
            cap_ok,
            (Verdict::Marginal, Check::Pass, Check::Pass, "score 0.62 [0.48, 0.74] over 50 samples is below the 0.80 threshold"),
        );
        // 43 of 50 (mean 0.86) but Wilson lower 0.738 < 0.80: marginal, unproven.
        check(
            &samples(50, 43, 100),
            slo,
            cap_ok,
            (
                Verdict::Marginal,
                Check::Pass,
                Check::Pass,
                "score 0.86 [0.74, 0.93] over 50 samples is not yet confidently above the 0.80 threshold (lower bound 0.74)",
            ),
        );
        // 20 of 50 (mean 0.40): Wilson upper 0.5411 < 0.60 -> not ready.
        check(
            &samples(50, 20, 100),
            slo,
            cap_ok,
            (Verdict::NotReady, Check::Pass, Check::Pass, "score 0.40 [0.28, 0.54] over 50 samples is below the 0.60 marginal threshold"),
        );
        // Perfect but only 12 samples: not enough evidence.
        let r = check(
            &samples(12, 12, 100),
            slo,
            cap_ok,
            (Verdict::NotReady, Check::Pass, Check::Pass, "not enough evidence: 12 samples in the window, 30 needed"),
        );
        assert_eq!(r.reasons[1], "score 1.00 [0.76, 1.00] over 12 samples");
        // Nothing at all.
        let r = check(
            &[],
            slo,
            None,
            (Verdict::NotReady, Check::Unknown, Check::Unknown, "not enough evidence: 0 samples in the window, 30 needed"),
        );
        assert_eq!((r.lower, r.upper), (0.0, 1.0));
        assert_eq!(r.reasons[1], "no latency measured");
    }

    #[test]
    fn window_bounds_and_cap() {
        let mut s = samples(40, 40, 100);
        // Outside the window: too old (start is exclusive) and in the future.
        s.push(Sample { ts_ms: END - 10_000, score: 0.0, pass: false, latency_ms: 1, ttft_ms: None });
        s.push(Sample { ts_ms: END + 1, score: 0.0, pass: false, latency_ms: 1, ttft_ms: None });
        s.push(Sample { ts_ms: END - 5, score: f64::NAN, pass: false, latency_ms: 1, ttft_ms: None });
        let r = Readiness::compute(&s, window(), &Thresholds::default(), None);
        assert_eq!((r.n, r.mean), (40, 1.0));
        let capped = Window { max_samples: Some(10), ..window() };
        let r = Readiness::compute(&s, capped, &Thresholds::default(), None);
        assert_eq!(r.n, 10);
    }

    #[test]
    fn ttft_slo_and_trend() {
        let mut s = samples(40, 40, 100);
        for (i, x) in s.iter_mut().enumerate() {
            x.ttft_ms = Some(if i < 2 { 900 } else { 300 });
            // Newer half (i < 20) scores 1, older half 0.5: trend +0.5.
            x.score = if i < 20 { 1.0 } else { 0.5 };
        }
        let t = Thresholds { p95_ttft_ms: Some(500), min_samples: 10, ready_score: 0.5, marginal_score: 0.4, ..Default::default() };
        let r = Readiness::compute(&s, window(), &t, None);
        // p95 of 40 ttfts: rank 38 of (38 x 300, 2 x 900) sorted -> 300.
        assert_eq!(r.p95_ttft_ms, Some(300));
        assert_eq!(r.latency_verdict, Check::Pass);
        assert!(r.trend.is_some_and(|d| (d - 0.5).abs() < 1e-9));
        let t = Thresholds { p95_ttft_ms: Some(200), ..t };
        let r = Readiness::compute(&s, window(), &t, None);
        assert_eq!(r.latency_verdict, Check::Fail);
        assert!(r.reasons.contains(&"p95 time to first token 300 ms exceeds the 200 ms SLO".to_string()));
    }

    #[test]
    fn verdict_changes_are_events() {
        let r = Readiness::compute(&samples(100, 100, 1), window(), &Thresholds::default(), None);
        assert_eq!(verdict_change(Some(Verdict::Ready), &r), None);
        let ev = verdict_change(Some(Verdict::Marginal), &r);
        assert_eq!(ev.as_ref().map(|e| (e.from, e.to)), Some((Some(Verdict::Marginal), Verdict::Ready)));
        assert!(ev.is_some_and(|e| e.cause.starts_with("score 1.00")));
        assert!(verdict_change(None, &r).is_some());
    }

    #[test]
    fn thresholds_config() {
        assert_eq!(Thresholds::default().validate(), Ok(()));
        let t: Result<Thresholds, _> = toml::from_str("ready_score = 0.9\np95_latency_ms = 3000");
        assert_eq!(t.as_ref().map(|t| (t.ready_score, t.marginal_score, t.p95_latency_ms)).ok(), Some((0.9, 0.6, Some(3000))));
        assert!(toml::from_str::<Thresholds>("ready = 0.9").is_err());
        let bad = Thresholds { marginal_score: 0.9, ready_score: 0.8, ..Default::default() };
        assert!(bad.validate().is_err_and(|e| e.starts_with("marginal_score")));
        assert_eq!(serde_json::to_value(Verdict::NotReady).ok(), Some(serde_json::json!("not-ready")));
    }
}
