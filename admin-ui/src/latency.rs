//! Latency histograms for the dashboards' rollup: log-scale buckets, four per doubling (each
//! bucket spans about 19 %, so a percentile read back is within about 9 % of the exact one),
//! stored per minute row as text (`"bucket:count bucket:count …"`) so minutes merge by
//! adding counts and an hour's percentiles come from 60 small rows instead of the exchanges.

use std::collections::BTreeMap;

/// Buckets per doubling.
const PER_OCTAVE: f64 = 4.0;
/// The last bucket holds everything from about 2^30 ms (12 days) up.
const MAX_BUCKET: u16 = 121;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hist {
    counts: BTreeMap<u16, u64>,
}

/// Bucket 0 holds [0, 1) ms; bucket `b >= 1` holds [2^((b-1)/4), 2^(b/4)) ms.
pub fn bucket(ms: f64) -> u16 {
    if !ms.is_finite() || ms < 1.0 {
        return 0;
    }
    let b = (ms.log2() * PER_OCTAVE).floor() + 1.0;
    (b as u16).min(MAX_BUCKET)
}

/// The value a bucket stands for: its geometric middle (0.5 ms for bucket 0).
pub fn representative(b: u16) -> f64 {
    if b == 0 { 0.5 } else { 2f64.powf((f64::from(b) - 0.5) / PER_OCTAVE) }
}

impl Hist {
    pub fn add(&mut self, ms: f64) {
        *self.counts.entry(bucket(ms)).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &Hist) {
        for (b, n) in &other.counts {
            *self.counts.entry(*b).or_insert(0) += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The `q` quantile (0..=1), as its bucket's representative value; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // The smallest value with at least ceil(q·n) observations at or below it.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, c) in &self.counts {
            seen += c;
            if seen >= rank {
                return Some(representative(*b));
            }
        }
        self.counts.keys().next_back().map(|b| representative(*b))
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        for (b, n) in &self.counts {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&b.to_string());
            s.push(':');
            s.push_str(&n.to_string());
        }
        s
    }

    /// The inverse of [`Hist::encode`]; malformed entries are skipped.
    pub fn decode(s: &str) -> Hist {
        let mut h = Hist::default();
        for part in s.split_ascii_whitespace() {
            if let Some((b, n)) = part.split_once(':')
                && let (Ok(b), Ok(n)) = (b.parse::<u16>(), n.parse::<u64>())
            {
                *h.counts.entry(b.min(MAX_BUCKET)).or_insert(0) += n;
            }
        }
        h
    }
}

/// Merge two encoded histograms.
pub fn merge_encoded(a: &str, b: &str) -> String {
    if a.is_empty() {
        return b.to_string();
    }
    if b.is_empty() {
        return a.to_string();
    }
    let mut h = Hist::decode(a);
    h.merge(&Hist::decode(b));
    h.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        let mut v = 0.1;
        while v < 1e9 {
            let b = bucket(v);
            assert!(b >= last, "{v}");
            last = b;
            if v >= 1.0 && b < MAX_BUCKET {
                let r = representative(b);
                assert!((r / v - 1.0).abs() < 0.2, "{v} → bucket {b} → {r}");
            }
            v *= 1.07;
        }
        assert_eq!(bucket(0.0), 0);
        assert_eq!(bucket(f64::NAN), 0);
        assert_eq!(bucket(1.0), 1);
        assert_eq!(bucket(2.0), 5);
        assert_eq!(bucket(1e12), MAX_BUCKET);
    }

    #[test]
    fn quantiles_within_a_bucket_of_the_exact_ones() {
        let mut h = Hist::default();
        let values: Vec<f64> = (1..=1000).map(|i| i as f64).collect();
        for v in &values {
            h.add(*v);
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0), (1.0, 1000.0)] {
            let got = h.quantile(q).unwrap();
            assert!((got / exact - 1.0).abs() < 0.1, "q{q}: {got} vs {exact}");
        }
        assert_eq!(Hist::default().quantile(0.5), None);
    }

    #[test]
    fn encoding_round_trips_and_merges() {
        let mut a = Hist::default();
        for v in [3.0, 3.1, 250.0, 0.2] {
            a.add(v);
        }
        assert_eq!(Hist::decode(&a.encode()), a);
        let mut b = Hist::default();
        b.add(250.0);
        let merged = Hist::decode(&merge_encoded(&a.encode(), &b.encode()));
        assert_eq!(merged.count(), 5);
        assert_eq!(merge_encoded("", &b.encode()), b.encode());
        assert_eq!(Hist::decode("7:2 junk 9:x 8:1").count(), 3);
    }
}
