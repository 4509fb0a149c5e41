//! genset readiness scoring: scorers, canary assertions, confidence
//! intervals, verdicts.
//!
//! Pure logic: no I/O, no database, no engine. The daemon's evaluation loop
//! feeds it answers and rows and stores what it returns (everything here is
//! serde-serialisable).
//!
//! # What each module decides
//!
//! - [`mod@score`]: how close one local answer is to the cloud's, by the use
//!   case's [`Kind`]:
//!   - `classification`: normalised label match, 1 or 0 (lowercase, collapsed
//!     whitespace, surrounding quotes/punctuation/Markdown and a `Label:`
//!     prefix stripped; with a label set, the whole answer, then its first
//!     line, then its first word is resolved against the set);
//!   - `extraction`: field-level F1 over JSON leaf paths (`a.b[0].c`),
//!     `P = matched / local leaves`, `R = matched / cloud leaves`,
//!     `F1 = 2PR / (P + R)`, with normalised leaf equality (`"12"` = `12`,
//!     strings trimmed and case-folded); JSON is found inside fences/prose;
//!   - `generation`: mean of ROUGE-L F1 (LCS over lowercase word tokens) and
//!     chrF (sacrebleu defaults: char n-grams 1..=6, whitespace removed,
//!     precision and recall averaged over orders, then F with beta = 2), plus
//!     the embedding cosine as a third term when both embeddings are given;
//!   - `custom`: the fraction of canary assertions that passed.
//!
//!   Each [`Score`] also says whether it is `comparable`: an unusable cloud
//!   answer (blank, or not JSON for extraction) says nothing about the local
//!   model and should not count towards readiness.
//! - [`canary`]: the assertions of provisioned test cases (`equals`,
//!   `contains`, `regex`, `json_schema`, `label_in`, `max_latency_ms`), their
//!   TOML form, load-time validation and checking.
//! - [`schema`]: the JSON Schema subset `json_schema` assertions support
//!   (a small in-crate validator; unsupported keywords are refused at load).
//! - [`stats`]: the 95% Wilson interval (applied to the mean score with `n`
//!   samples; no bootstrap), nearest-rank percentiles, trends.
//! - [`readiness`]: the verdict per use case over a rolling window: `ready`
//!   when `n >= min_samples`, the interval's lower bound `>= ready_score`, and
//!   latency and capacity do not fail; `not-ready` with too few samples or
//!   when the upper bound is `< marginal_score`; `marginal` otherwise; with
//!   human reasons, and [`readiness::verdict_change`] for the events.
//! - [`sample`]: which recorded exchanges to replay: the newest distinct
//!   prompts plus a seeded weighted reservoir over older distinct prompts.

pub mod canary;
mod json;
pub mod readiness;
pub mod sample;
pub mod schema;
pub mod score;
pub mod stats;

pub use canary::{Assertion, AssertionError, AssertionResult, Canary, check_all};
pub use readiness::{Capacity, Check, Readiness, Sample, Thresholds, Verdict, Window};
pub use score::{Kind, Score, ScoreOptions, score};
