//! Small statistics: the Wilson interval, nearest-rank percentiles, trends.
//!
//! **Interval choice.** Readiness uses the Wilson score interval at 95%
//! (`z` = [`Z_95`]) around the *mean score*, with `n` the number of samples:
//!
//! ```text
//! center = (p + z²/2n) / (1 + z²/n)
//! half   = z / (1 + z²/n) * sqrt(p(1 - p)/n + z²/4n²)
//! [lower, upper] = [center - half, center + half], clipped to [0, 1]
//! ```
//!
//! For pass/fail scores this is the textbook Wilson interval. For fractional
//! scores in `[0, 1]` the mean is used as `p`: a variable in `[0, 1]` with
//! mean `p` has variance at most `p(1 - p)` (the Bernoulli case), so the
//! interval is conservative (never narrower than the data warrant, up to the
//! normal approximation), deterministic, and needs no resampling. No
//! bootstrap is used.

use serde::{Deserialize, Serialize};

/// The two-sided 95% normal quantile.
pub const Z_95: f64 = 1.959964;

/// Milliseconds in a day, for slopes per day.
pub const DAY_MS: f64 = 86_400_000.0;

/// A confidence interval within `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// Wilson score interval for a proportion (or a mean score) `p` over `n`
/// samples at quantile `z`. `n = 0` gives the uninformative `[0, 1]`.
pub fn wilson(p: f64, n: usize, z: f64) -> Interval {
    if n == 0 || p.is_nan() {
        return Interval { lower: 0.0, upper: 1.0 };
    }
    let p = p.clamp(0.0, 1.0);
    let n = n as f64;
    let z2 = z * z;
    let den = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / den;
    let half = z / den * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval { lower: (center - half).clamp(0.0, 1.0), upper: (center + half).clamp(0.0, 1.0) }
}

/// Arithmetic mean; `None` when empty.
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() { None } else { Some(xs.iter().sum::<f64>() / xs.len() as f64) }
}

/// Nearest-rank percentile: sort ascending, take the value at rank
/// `ceil(p/100 * n)` (1-based), clamped to `[1, n]`. It is always one of the
/// observed values (no interpolation): p95 of 20 values is the 19th smallest,
/// p50 of 4 values the 2nd. `None` when empty.
pub fn percentile<T: Copy + PartialOrd>(values: &[T], p: f64) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil();
    let rank = if rank.is_nan() { n } else { (rank as usize).clamp(1, n) };
    sorted.get(rank - 1).copied()
}

/// Difference of means between the newer and the older half of the points
/// `(ts_ms, value)`, ordered by time; positive means improving. With an odd
/// count the middle point is left out. `None` with fewer than 4 points.
pub fn half_trend(points: &[(i64, f64)]) -> Option<f64> {
    if points.len() < 4 {
        return None;
    }
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|(ts, _)| *ts);
    let half = sorted.len() / 2;
    let older: Vec<f64> = sorted[..half].iter().map(|p| p.1).collect();
    let newer: Vec<f64> = sorted[sorted.len() - half..].iter().map(|p| p.1).collect();
    Some(mean(&newer)? - mean(&older)?)
}

/// Least-squares slope of value against time, in value units per day.
/// `None` with fewer than 2 points or when all timestamps are equal.
pub fn slope_per_day(points: &[(i64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let t0 = points.iter().map(|p| p.0).min()?;
    let xs: Vec<f64> = points.iter().map(|p| (p.0 - t0) as f64 / DAY_MS).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, p) in xs.iter().zip(points) {
        sxy += (x - mx) * (p.1 - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx > 0.0 { Some(sxy / sxx) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-6;

    /// One Wilson case: (p, n) -> (lower, upper).
    fn check(p: f64, n: usize, expected: (f64, f64)) {
        let got = wilson(p, n, Z_95);
        assert!(
            (got.lower - expected.0).abs() < EPS && (got.upper - expected.1).abs() < EPS,
            "p {p} n {n}: got {got:?} expected {expected:?}"
        );
    }

    #[test]
    fn wilson_cases() {
        // z = 1.959964, z² = 3.841458881296.
        // p = 0.8, n = 10: z²/n = 0.3841458881, den = 1.3841458881
        // center = (0.8 + 0.1920729441) / 1.3841458881 = 0.7167401591
        // half = 1.959964 / 1.3841458881 * sqrt(0.016 + 0.0096036472)
        //      = 1.4160305 * 0.1600114 = 0.2265776900
        // -> [0.4901624691, 0.9433178491]
        check(0.8, 10, (0.490_162_469_1, 0.943_317_849_1));
        // p = 1, n = 10: lower = n / (n + z²) = 10 / 13.841458881 = 0.7224671970, upper 1.
        check(1.0, 10, (0.722_467_197_0, 1.0));
        // p = 0: the mirror image.
        check(0.0, 10, (0.0, 1.0 - 0.722_467_197_0));
        // p = 0.5, n = 100: den = 1.0384145888, center 0.5,
        // half = 1.959964 / 1.0384145888 * sqrt(0.0025 + 0.0000960365) = 0.0961684704
        check(0.5, 100, (0.403_831_529_6, 0.596_168_470_4));
        // No data: no information.
        check(0.3, 0, (0.0, 1.0));
    }

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=20).collect();
        // p95 of 20: rank ceil(19) = 19 -> 19.
        assert_eq!(percentile(&v, 95.0), Some(19));
        // p50 of [40, 10, 30, 20]: sorted 10 20 30 40, rank ceil(2) = 2 -> 20.
        assert_eq!(percentile(&[40u64, 10, 30, 20], 50.0), Some(20));
        // p95 of 4 values: rank ceil(3.8) = 4 -> the max.
        assert_eq!(percentile(&[40u64, 10, 30, 20], 95.0), Some(40));
        assert_eq!(percentile(&[5.0f64], 0.0), Some(5.0));
        assert_eq!(percentile(&[3u64, 1], 0.0), Some(1));
        assert_eq!(percentile::<u64>(&[], 95.0), None);
    }

    #[test]
    fn trends() {
        // Older half (t=0,1): 0.5, 0.7 -> 0.6; newer half (t=3,4): 0.8, 1.0 -> 0.9;
        // the middle point (t=2) is left out. 0.9 - 0.6 = 0.3.
        let pts = [(4, 1.0), (0, 0.5), (2, 0.0), (1, 0.7), (3, 0.8)];
        assert!(half_trend(&pts).is_some_and(|d| (d - 0.3).abs() < EPS));
        assert_eq!(half_trend(&pts[..3]), None);
        // One point per day rising 0.1 a day: slope 0.1/day.
        let day = DAY_MS as i64;
        let pts = [(0, 0.5), (day, 0.6), (2 * day, 0.7)];
        assert!(slope_per_day(&pts).is_some_and(|s| (s - 0.1).abs() < EPS));
        assert_eq!(slope_per_day(&[(5, 0.1), (5, 0.9)]), None);
    }
}
