//! Scoring one local answer against the cloud's answer to the same prompt.
//!
//! [`score`] dispatches on the use case's [`Kind`]; every scorer returns a
//! [`Score`] with a value in `[0, 1]`, a pass/fail against the kind's pass
//! threshold, and a JSON `detail` explaining the number (stored with the
//! evaluation and shown in the console).

mod classification;
mod extraction;
mod generation;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::canary::AssertionResult;

pub use classification::normalize_label;
pub(crate) use classification::resolve as resolve_label;
pub use generation::{CHRF_BETA, CHRF_ORDER, MAX_ROUGE_TOKENS, Prf, chrf, cosine, rouge_l};

/// How a use case's answers are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One label out of a set: normalised label match, 1 or 0.
    Classification,
    /// Structured JSON: field-level F1 over leaf paths.
    Extraction,
    /// Free text: mean of ROUGE-L and chrF (and embedding cosine if given).
    Generation,
    /// Only the canary assertions decide.
    Custom,
}

impl Kind {
    /// The pass threshold used when the configuration gives none:
    /// classification 1.0 (the label must match), extraction 0.9 (F1),
    /// generation 0.5 (combined text similarity), custom 1.0 (every assertion).
    pub fn default_pass_threshold(self) -> f64 {
        match self {
            Kind::Classification | Kind::Custom => 1.0,
            Kind::Extraction => 0.9,
            Kind::Generation => 0.5,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Classification => "classification",
            Kind::Extraction => "extraction",
            Kind::Generation => "generation",
            Kind::Custom => "custom",
        })
    }
}

/// Optional inputs to [`score`]. All borrowed; `Default` means "none given".
#[derive(Debug, Clone, Copy, Default)]
pub struct ScoreOptions<'a> {
    /// Classification: the known label set. Empty means "unknown set".
    pub labels: &'a [String],
    /// Overrides [`Kind::default_pass_threshold`].
    pub pass_threshold: Option<f64>,
    /// Generation: embeddings of the cloud and the local answer, when an
    /// embedding model is configured.
    pub embeddings: Option<(&'a [f32], &'a [f32])>,
    /// Custom: the results of the canary assertions on the local answer.
    pub assertions: &'a [AssertionResult],
}

/// The outcome of scoring one local answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// In `[0, 1]`; higher is better.
    pub value: f64,
    /// `value >= pass threshold` (classification/custom: exact success).
    pub pass: bool,
    /// `false` when the reference (the cloud's answer) is unusable: blank, or
    /// not JSON for an extraction. Such evaluations should be stored but not
    /// rolled into readiness: they say nothing about the local model.
    pub comparable: bool,
    /// Scorer-specific explanation (sub-scores, matched fields, errors).
    pub detail: Value,
}

impl Score {
    fn new(value: f64, threshold: f64, detail: Value) -> Score {
        let value = clamp01(value);
        Score { value, pass: value >= threshold, comparable: true, detail }
    }

    fn not_comparable(detail: Value) -> Score {
        Score { value: 0.0, pass: false, comparable: false, detail }
    }

    /// Score from canary assertions: the fraction that passed; `pass` when
    /// all passed. No assertions at all is not comparable (nothing was
    /// checked).
    pub fn from_assertions(results: &[AssertionResult]) -> Score {
        if results.is_empty() {
            return Score::not_comparable(json!({ "error": "no assertions to check" }));
        }
        let passed = results.iter().filter(|r| r.passed).count();
        let total = results.len();
        let failed: Vec<&AssertionResult> = results.iter().filter(|r| !r.passed).collect();
        Score {
            value: passed as f64 / total as f64,
            pass: passed == total,
            comparable: true,
            detail: json!({ "passed": passed, "total": total, "failed": failed }),
        }
    }
}

pub(crate) fn clamp01(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// Score `local_answer` against `cloud_answer` by `kind`.
///
/// `Kind::Custom` ignores both answers and scores `opts.assertions` with
/// [`Score::from_assertions`].
pub fn score(kind: Kind, cloud_answer: &str, local_answer: &str, opts: &ScoreOptions<'_>) -> Score {
    let threshold = opts.pass_threshold.unwrap_or_else(|| kind.default_pass_threshold());
    if kind == Kind::Custom {
        let mut s = Score::from_assertions(opts.assertions);
        s.pass = s.comparable && s.value >= threshold;
        return s;
    }
    if cloud_answer.trim().is_empty() {
        return Score::not_comparable(json!({ "error": "the cloud answer is empty" }));
    }
    match kind {
        Kind::Classification => classification::score(cloud_answer, local_answer, opts.labels, threshold),
        Kind::Extraction => extraction::score(cloud_answer, local_answer, threshold),
        Kind::Generation => generation::score(cloud_answer, local_answer, opts.embeddings, threshold),
        Kind::Custom => Score::from_assertions(opts.assertions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::Assertion;

    #[test]
    fn kind_serde_is_kebab_case() {
        assert_eq!(serde_json::to_string(&Kind::Classification).ok(), Some("\"classification\"".into()));
        let k: Result<Kind, _> = serde_json::from_str("\"custom\"");
        assert_eq!(k.ok(), Some(Kind::Custom));
        assert!(serde_json::from_str::<Kind>("\"Custom\"").is_err());
    }

    #[test]
    fn custom_scores_assertions() {
        let results = crate::canary::check_all(
            &[Assertion::Contains { value: "ok".into(), case_insensitive: false }, Assertion::MaxLatencyMs(100)],
            "ok then",
            250,
        );
        let s = score(Kind::Custom, "", "ignored", &ScoreOptions { assertions: &results, ..Default::default() });
        // 1 of 2 passed -> 0.5, not a pass.
        assert!((s.value - 0.5).abs() < 1e-9);
        assert!(!s.pass);
        assert!(s.comparable);
        assert_eq!(s.detail["failed"].as_array().map(Vec::len), Some(1));

        let none = score(Kind::Custom, "", "x", &ScoreOptions::default());
        assert!(!none.comparable && !none.pass);
    }

    #[test]
    fn blank_cloud_answer_is_not_comparable() {
        for kind in [Kind::Classification, Kind::Extraction, Kind::Generation] {
            let s = score(kind, "  \n", "anything", &ScoreOptions::default());
            assert!(!s.comparable, "{kind}");
            assert_eq!(s.value, 0.0);
        }
    }

    /// Invariants over a spread of inputs: values stay in [0, 1], and an
    /// answer scored against itself is a full, passing score when comparable.
    #[test]
    fn invariants_over_inputs() {
        let inputs = [
            "",
            "Spam",
            "**Label:** not spam",
            "{\"a\": [1, {\"b\": \"x\"}], \"c\": null}",
            "```json\n[1, 2, 3]\n```",
            "The quick brown fox jumps over the lazy dog.",
            "Ünïcödé – ✓ 漢字 😀",
            "{ not json",
            "   \n\t  ",
        ];
        let labels = vec!["spam".to_string(), "not spam".to_string()];
        for kind in [Kind::Classification, Kind::Extraction, Kind::Generation] {
            let opts = ScoreOptions { labels: &labels, ..Default::default() };
            for a in inputs {
                for b in inputs {
                    let s = score(kind, a, b, &opts);
                    assert!((0.0..=1.0).contains(&s.value), "{kind} {a:?} {b:?}: {}", s.value);
                }
                let same = score(kind, a, a, &opts);
                if same.comparable && (kind != Kind::Extraction || crate::json::find_json(a).is_some()) {
                    assert_eq!((same.value, same.pass), (1.0, true), "{kind} {a:?}: {}", same.detail);
                }
            }
        }
    }

    #[test]
    fn score_round_trips_as_json() {
        let s = score(Kind::Generation, "a b", "a b", &ScoreOptions::default());
        let back: Result<Score, _> = serde_json::to_string(&s).and_then(|t| serde_json::from_str(&t));
        assert_eq!(back.ok(), Some(s));
    }
}
