//! Choosing which recorded exchanges to replay against the local model.
//!
//! [`choose`] picks up to `k` exchanges out of candidate rows
//! `(id, ts_ms, fingerprint)`, at most one per prompt fingerprint:
//!
//! 1. **Newest**: walking the rows newest first, the newest row of each of
//!    the first `min(newest, k)` distinct fingerprints (what the traffic looks
//!    like now).
//! 2. **Reservoir**: the remaining slots are filled from the older rows by
//!    weighted sampling without replacement over their distinct fingerprints
//!    (Efraimidis and Spirakis' A-Res, "weighted random sampling with a
//!    reservoir"): a fingerprint seen `w` times gets the key `ln(u) / w`, and
//!    the largest keys win, so a prompt sent often is proportionally more
//!    likely to be picked but is picked once. Its newest row represents it.
//!
//! `u` in `(0, 1]` is a hash of `(seed, fingerprint)` (FNV-1a then the
//! SplitMix64 finaliser), not a random stream: the choice is deterministic for
//! a seed, does not depend on the order rows arrive in, and stays stable as
//! the window slides. Vary the seed per evaluation round to rotate the sample.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// A recorded exchange that may be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate<Id> {
    pub id: Id,
    pub ts_ms: i64,
    /// Fingerprint of the prompt (same prompt, same fingerprint).
    pub fingerprint: String,
}

/// Why a candidate was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    Newest,
    Reservoir,
}

/// A chosen exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Picked<Id> {
    pub id: Id,
    pub ts_ms: i64,
    pub fingerprint: String,
    pub why: Why,
    /// How many candidate rows share this fingerprint.
    pub occurrences: usize,
}

/// Pick up to `k` distinct-fingerprint candidates: the newest `newest`, then a
/// seeded weighted reservoir over the rest. The result lists the newest
/// picks first, then the reservoir picks, each part newest first. The input
/// need not be sorted.
pub fn choose<Id: Clone>(candidates: &[Candidate<Id>], k: usize, newest: usize, seed: u64) -> Vec<Picked<Id>> {
    let mut order: Vec<&Candidate<Id>> = candidates.iter().collect();
    order.sort_by_key(|c| std::cmp::Reverse(c.ts_ms));
    let mut occurrences: HashMap<&str, usize> = HashMap::new();
    for c in &order {
        *occurrences.entry(c.fingerprint.as_str()).or_insert(0) += 1;
    }
    let pick = |c: &Candidate<Id>, why: Why| Picked {
        id: c.id.clone(),
        ts_ms: c.ts_ms,
        fingerprint: c.fingerprint.clone(),
        why,
        occurrences: occurrences.get(c.fingerprint.as_str()).copied().unwrap_or(1),
    };

    let mut chosen = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let want_newest = newest.min(k);
    let mut rest_from = order.len();
    for (i, c) in order.iter().enumerate() {
        if chosen.len() == want_newest {
            rest_from = i;
            break;
        }
        if seen.insert(c.fingerprint.as_str()) {
            chosen.push(pick(c, Why::Newest));
        }
    }

    // Older rows: group by fingerprint (newest row represents the group).
    let mut groups: Vec<(&Candidate<Id>, usize)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for c in &order[rest_from..] {
        let fp = c.fingerprint.as_str();
        if seen.contains(fp) {
            continue;
        }
        match index.get(fp) {
            Some(&g) => groups[g].1 += 1,
            None => {
                index.insert(fp, groups.len());
                groups.push((c, 1));
            }
        }
    }
    let mut keyed: Vec<(f64, &Candidate<Id>)> =
        groups.into_iter().map(|(c, w)| (unit_hash(seed, &c.fingerprint).ln() / w as f64, c)).collect();
    keyed.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.1.ts_ms.cmp(&a.1.ts_ms))
            .then(a.1.fingerprint.cmp(&b.1.fingerprint))
    });
    let mut reservoir: Vec<&Candidate<Id>> = keyed.into_iter().take(k - chosen.len()).map(|(_, c)| c).collect();
    reservoir.sort_by_key(|c| std::cmp::Reverse(c.ts_ms));
    chosen.extend(reservoir.into_iter().map(|c| pick(c, Why::Reservoir)));
    chosen
}

/// A number in `(0, 1]` from `(seed, text)`: FNV-1a 64, then SplitMix64's
/// finaliser, top 53 bits.
fn unit_hash(seed: u64, text: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 11) + 1) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Candidates from (id, ts, fingerprint).
    fn rows(list: &[(u32, i64, &str)]) -> Vec<Candidate<u32>> {
        list.iter().map(|(id, ts, fp)| Candidate { id: *id, ts_ms: *ts, fingerprint: fp.to_string() }).collect()
    }

    /// One choice: expected (id, why) in order.
    fn check(cands: &[Candidate<u32>], k: usize, newest: usize, seed: u64, expected: &[(u32, Why)]) {
        let got: Vec<(u32, Why)> = choose(cands, k, newest, seed).into_iter().map(|p| (p.id, p.why)).collect();
        assert_eq!(got, expected, "k {k} newest {newest} seed {seed}");
    }

    #[test]
    fn newest_part_is_deduplicated() {
        use Why::Newest;
        let c = rows(&[(1, 10, "a"), (2, 9, "a"), (3, 8, "b"), (4, 7, "c"), (5, 6, "b")]);
        // Newest 3 distinct fingerprints: a (id 1), b (id 3), c (id 4).
        check(&c, 3, 3, 0, &[(1, Newest), (3, Newest), (4, Newest)]);
        // k caps newest.
        check(&c, 2, 5, 0, &[(1, Newest), (3, Newest)]);
        // Unsorted input gives the same result.
        let mut shuffled = c.clone();
        shuffled.reverse();
        check(&shuffled, 3, 3, 0, &[(1, Newest), (3, Newest), (4, Newest)]);
        check(&c, 0, 3, 0, &[]);
        check(&[], 3, 3, 0, &[]);
    }

    #[test]
    fn reservoir_fills_with_distinct_older_prompts() {
        let c = rows(&[(1, 10, "a"), (2, 9, "b"), (3, 8, "a"), (4, 7, "c"), (5, 6, "d"), (6, 5, "c")]);
        // Newest 1: a. Older distinct fingerprints not yet chosen: b, c, d: k = 10
        // takes them all, each by its newest row (c -> id 4), newest first.
        check(&c, 10, 1, 7, &[(1, Why::Newest), (2, Why::Reservoir), (4, Why::Reservoir), (5, Why::Reservoir)]);
        let picked = choose(&c, 10, 1, 7);
        assert_eq!(picked.iter().map(|p| p.occurrences).collect::<Vec<_>>(), vec![2, 1, 2, 1]);
        // No newest part: a pure reservoir, still one per fingerprint.
        let all = choose(&c, 10, 0, 7);
        let mut fps: Vec<&str> = all.iter().map(|p| p.fingerprint.as_str()).collect();
        fps.sort_unstable();
        assert_eq!(fps, vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn deterministic_per_seed() {
        let c: Vec<Candidate<u32>> =
            (0..500u32).map(|i| Candidate { id: i, ts_ms: i64::from(i), fingerprint: format!("p{}", i % 300) }).collect();
        let a = choose(&c, 20, 5, 42);
        assert_eq!(a, choose(&c, 20, 5, 42));
        assert_ne!(a, choose(&c, 20, 5, 43));
        assert_eq!(a.len(), 20);
        let distinct: HashSet<&str> = a.iter().map(|p| p.fingerprint.as_str()).collect();
        assert_eq!(distinct.len(), 20);
    }

    #[test]
    fn frequent_prompts_are_favoured_proportionally() {
        // One prompt sent 100 times and 100 prompts sent once, one reservoir
        // slot: the frequent one should win with probability 100/200 = 1/2.
        let mut list: Vec<Candidate<u32>> =
            (0..100u32).map(|i| Candidate { id: i, ts_ms: i64::from(i), fingerprint: "hot".to_string() }).collect();
        list.extend((100..200u32).map(|i| Candidate { id: i, ts_ms: i64::from(i), fingerprint: format!("cold{i}") }));
        let wins = (0..400u64).filter(|seed| choose(&list, 1, 0, *seed).first().is_some_and(|p| p.fingerprint == "hot")).count();
        assert!((150..=250).contains(&wins), "hot won {wins} of 400");
    }

    #[test]
    fn unit_hash_is_in_range() {
        for s in 0..1000u64 {
            let u = unit_hash(s, "x");
            assert!(u > 0.0 && u <= 1.0);
        }
    }
}
