//! Generation: text similarity to the cloud's answer.
//!
//! - **ROUGE-L** ([`rouge_l`]): tokens are the maximal runs of alphanumeric
//!   characters of the lowercased text. With `LCS` the length of the longest
//!   common subsequence of the token lists, `P = LCS / local tokens`,
//!   `R = LCS / cloud tokens`, and the F-measure with beta = 1,
//!   `F = 2PR / (P + R)`. Inputs are cut to their first
//!   [`MAX_ROUGE_TOKENS`] tokens (the LCS is quadratic).
//! - **chrF** ([`chrf`]), as sacrebleu's defaults (`char_order = 6`,
//!   `word_order = 0`, `beta = 2`, whitespace removed, case kept): for each
//!   n in 1..=6 count the character n-grams of both texts; `matches` is the
//!   sum over n-grams of the smaller of the two counts; `P_n = matches /
//!   local n-grams`, `R_n = matches / cloud n-grams`. Orders where either side
//!   has no n-gram are skipped; the others are averaged into `P` and `R`, and
//!   `chrF = (1 + b^2) P R / (b^2 P + R)` with `b = 2`. Reported in `[0, 1]`
//!   (sacrebleu prints it times 100).
//! - **Embedding cosine** ([`cosine`]), when both embeddings are supplied and
//!   have the same non-zero dimension; negative cosines count as 0.
//!
//! The score is the plain mean of ROUGE-L F and chrF, and of the cosine too
//! when it is available: word order (ROUGE-L), surface form (chrF) and
//! meaning (cosine) weigh the same.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;

use super::Score;

/// ROUGE-L reads at most this many tokens of each text.
pub const MAX_ROUGE_TOKENS: usize = 4096;
/// chrF's maximum character n-gram order (sacrebleu default).
pub const CHRF_ORDER: usize = 6;
/// chrF's beta (sacrebleu default): recall weighs beta^2 = 4 times precision.
pub const CHRF_BETA: f64 = 2.0;

/// Precision, recall and the F-measure of one metric, in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f: f64,
}

fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).take(MAX_ROUGE_TOKENS).map(str::to_string).collect()
}

fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn f_beta(p: f64, r: f64, beta: f64) -> f64 {
    let b2 = beta * beta;
    let den = b2 * p + r;
    if den > 0.0 { (1.0 + b2) * p * r / den } else { 0.0 }
}

/// ROUGE-L of `local` against the reference `cloud`.
pub fn rouge_l(cloud: &str, local: &str) -> Prf {
    let (c, l) = (tokens(cloud), tokens(local));
    if c.is_empty() || l.is_empty() {
        let same = c.is_empty() && l.is_empty();
        let v = if same { 1.0 } else { 0.0 };
        return Prf { precision: v, recall: v, f: v };
    }
    let lcs = lcs_len(&c, &l) as f64;
    let (p, r) = (lcs / l.len() as f64, lcs / c.len() as f64);
    Prf { precision: p, recall: r, f: f_beta(p, r, 1.0) }
}

fn ngram_counts(chars: &[char], n: usize) -> HashMap<&[char], usize> {
    let mut counts = HashMap::new();
    if chars.len() >= n {
        for w in chars.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// chrF of `local` against the reference `cloud` (sacrebleu defaults).
pub fn chrf(cloud: &str, local: &str) -> Prf {
    let c: Vec<char> = cloud.chars().filter(|ch| !ch.is_whitespace()).collect();
    let l: Vec<char> = local.chars().filter(|ch| !ch.is_whitespace()).collect();
    let (mut sum_p, mut sum_r, mut orders) = (0.0, 0.0, 0usize);
    for n in 1..=CHRF_ORDER {
        let (cc, lc) = (ngram_counts(&c, n), ngram_counts(&l, n));
        let (c_total, l_total): (usize, usize) = (cc.values().sum(), lc.values().sum());
        if c_total == 0 || l_total == 0 {
            continue;
        }
        let matches: usize = lc.iter().map(|(g, k)| (*k).min(cc.get(g).copied().unwrap_or(0))).sum();
        sum_p += matches as f64 / l_total as f64;
        sum_r += matches as f64 / c_total as f64;
        orders += 1;
    }
    if orders == 0 {
        return Prf { precision: 0.0, recall: 0.0, f: 0.0 };
    }
    let (p, r) = (sum_p / orders as f64, sum_r / orders as f64);
    Prf { precision: p, recall: r, f: f_beta(p, r, CHRF_BETA) }
}

/// Cosine similarity of two embeddings; `None` when the dimensions differ,
/// are zero, or a vector has zero norm.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let den = na.sqrt() * nb.sqrt();
    if den > 0.0 && den.is_finite() { Some((dot / den).clamp(-1.0, 1.0)) } else { None }
}

pub(super) fn score(cloud: &str, local: &str, embeddings: Option<(&[f32], &[f32])>, threshold: f64) -> Score {
    let rl = rouge_l(cloud, local);
    let cf = chrf(cloud, local);
    let cos = embeddings.and_then(|(c, l)| cosine(c, l));
    let mut parts = vec![rl.f, cf.f];
    if let Some(c) = cos {
        parts.push(c.max(0.0));
    }
    let value = parts.iter().sum::<f64>() / parts.len() as f64;
    let mut detail = json!({
        "rouge_l": rl,
        "chrf": cf,
        "cosine": cos,
        "combined": if cos.is_some() { "mean of rouge_l.f, chrf.f and cosine" } else { "mean of rouge_l.f and chrf.f" },
    });
    if embeddings.is_some() && cos.is_none() {
        detail["note"] = json!("embeddings were given but are not comparable (dimension or zero norm)");
    }
    Score::new(value, threshold, detail)
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, ScoreOptions, score as score_kind};
    use super::*;

    const EPS: f64 = 1e-6;

    /// One metric case: `metric(cloud, local)` must give (P, R, F).
    fn check(metric: fn(&str, &str) -> Prf, cloud: &str, local: &str, expected: (f64, f64, f64)) {
        let got = metric(cloud, local);
        assert!(
            (got.precision - expected.0).abs() < EPS && (got.recall - expected.1).abs() < EPS && (got.f - expected.2).abs() < EPS,
            "cloud {cloud:?} local {local:?}: got {got:?} expected {expected:?}"
        );
    }

    #[test]
    fn rouge_l_cases() {
        // cloud: the cat sat on the mat (6 tokens)
        // local: a cat sat on mat      (5 tokens)
        // LCS = "cat sat on mat" = 4.
        // P = 4/5 = 0.8, R = 4/6 = 2/3,
        // F = 2 * 0.8 * 2/3 / (0.8 + 2/3) = (16/15) / (22/15) = 8/11 = 0.727272...
        check(rouge_l, "the cat sat on the mat", "a cat sat on mat", (0.8, 2.0 / 3.0, 8.0 / 11.0));
        // Case and punctuation are not tokens: identical token lists.
        check(rouge_l, "Hello, world!", "hello world", (1.0, 1.0, 1.0));
        // cloud: a b c d (4), local: d c b a (4): LCS = 1 (any single token).
        // P = R = F = 1/4.
        check(rouge_l, "a b c d", "d c b a", (0.25, 0.25, 0.25));
        // Nothing in common.
        check(rouge_l, "yes", "no", (0.0, 0.0, 0.0));
        // One side without tokens.
        check(rouge_l, "text", "...", (0.0, 0.0, 0.0));
    }

    #[test]
    fn chrf_cases() {
        // cloud "abc", local "ab":
        // n=1: local {a,b} = 2, cloud {a,b,c} = 3, matches 2: P1 = 1, R1 = 2/3
        // n=2: local {ab} = 1, cloud {ab,bc} = 2, matches 1:  P2 = 1, R2 = 1/2
        // n=3: local has no 3-gram: order skipped. Effective orders: 2.
        // P = (1 + 1)/2 = 1, R = (2/3 + 1/2)/2 = 7/12
        // chrF = 5 * 1 * 7/12 / (4 * 1 + 7/12) = (35/12) / (55/12) = 7/11 = 0.636363...
        check(chrf, "abc", "ab", (1.0, 7.0 / 12.0, 7.0 / 11.0));
        // Whitespace is removed: "a b" is "ab", same figures.
        check(chrf, "abc", "a b", (1.0, 7.0 / 12.0, 7.0 / 11.0));
        // cloud "abd", local "abc":
        // n=1: 2 of 3 both ways: P1 = R1 = 2/3
        // n=2: {ab,bc} vs {ab,bd}: 1 of 2: P2 = R2 = 1/2
        // n=3: {abc} vs {abd}: 0 of 1: P3 = R3 = 0
        // P = R = (2/3 + 1/2 + 0)/3 = 7/18; chrF with P = R is P: 7/18 = 0.388888...
        check(chrf, "abd", "abc", (7.0 / 18.0, 7.0 / 18.0, 7.0 / 18.0));
        // Counts are clipped: cloud "a", local "aa":
        // n=1: local {a:2}, cloud {a:1}, matches min(2,1) = 1: P1 = 1/2, R1 = 1
        // n=2: cloud has no 2-gram: skipped.
        // chrF = 5 * 0.5 * 1 / (4 * 0.5 + 1) = 2.5 / 3 = 0.833333...
        check(chrf, "a", "aa", (0.5, 1.0, 2.5 / 3.0));
        // Case is kept (sacrebleu default lowercase=False): "A" vs "a" share nothing.
        check(chrf, "A", "a", (0.0, 0.0, 0.0));
        check(chrf, "", "a", (0.0, 0.0, 0.0));
    }

    #[test]
    fn chrf_matches_sacrebleu_reference_value() {
        // sacrebleu's documented example (HF metric card for chrF):
        // sentence chrF = 61.576379378113785 (on the 0-100 scale).
        let got = chrf(
            "The ties between Obama and Netanyahu are not particularly friendly.",
            "The relationship between Obama and Netanyahu is not exactly friendly.",
        );
        assert!((got.f * 100.0 - 61.576379378113785).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn cosine_cases() {
        let c = |a: &[f32], b: &[f32], want: Option<f64>| {
            let got = cosine(a, b);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < EPS, "{a:?} {b:?}: {g}"),
                _ => assert_eq!(got, want, "{a:?} {b:?}"),
            }
        };
        // (1,0)·(1,1) = 1; |a| = 1, |b| = sqrt 2: cos = 1/sqrt 2 = 0.707106781...
        c(&[1.0, 0.0], &[1.0, 1.0], Some(std::f64::consts::FRAC_1_SQRT_2));
        c(&[1.0, 2.0], &[-1.0, -2.0], Some(-1.0));
        c(&[1.0], &[1.0, 2.0], None);
        c(&[0.0, 0.0], &[1.0, 2.0], None);
    }

    /// Combined generation score through `score(Kind::Generation, ..)`.
    fn check_combined(cloud: &str, local: &str, emb: Option<(&[f32], &[f32])>, expected: f64) {
        let s = score_kind(Kind::Generation, cloud, local, &ScoreOptions { embeddings: emb, ..Default::default() });
        assert!((s.value - expected).abs() < EPS, "cloud {cloud:?} local {local:?}: got {} want {expected}; {}", s.value, s.detail);
        assert_eq!(s.pass, s.value >= 0.5);
    }

    #[test]
    fn combined_generation_score() {
        // Identical texts: ROUGE-L 1, chrF 1 -> 1.
        check_combined("The cat sat.", "The cat sat.", None, 1.0);
        // cloud "ab", local "a b": tokens [ab] vs [a, b], LCS 0 -> ROUGE-L 0;
        // chrF sees "ab" vs "ab" -> 1. Mean (0 + 1)/2 = 0.5.
        check_combined("ab", "a b", None, 0.5);
        // Same with embeddings at cosine 1/sqrt 2: (0 + 1 + 0.707106781)/3 = 0.569035593...
        let (a, b) = ([1.0f32, 0.0], [1.0f32, 1.0]);
        check_combined("ab", "a b", Some((&a, &b)), (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 3.0);
        // Opposite embeddings count as 0: (0 + 1 + 0)/3 = 1/3.
        let (a, b) = ([1.0f32, 0.0], [-1.0f32, 0.0]);
        check_combined("ab", "a b", Some((&a, &b)), 1.0 / 3.0);
        // Mismatched dimensions are ignored: back to the mean of two.
        let (a, b) = ([1.0f32], [1.0f32, 0.0]);
        check_combined("ab", "a b", Some((&a, &b)), 0.5);
    }
}
