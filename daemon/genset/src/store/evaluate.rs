//! The evaluator's tables: `evaluations` (one scored local answer each) and `readiness` (the
//! verdict history per use case), plus the reads of `exchanges` it needs (replay candidates,
//! the recorded peak rate).

use serde::Serialize;
use sqlx::{FromRow, Postgres, QueryBuilder, Sqlite};

use super::{Store, StoreError, dispatch};

/// One scored local answer, as written.
#[derive(Debug, Clone)]
pub struct NewEvaluation {
    pub ts_ms: i64,
    pub round_id: String,
    pub use_case: String,
    /// `replay` or `canary`.
    pub source: &'static str,
    pub exchange_id: Option<i64>,
    pub canary: Option<String>,
    pub model: String,
    pub kind: String,
    pub score: f64,
    pub passed: bool,
    pub comparable: bool,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub prompt: Option<String>,
    pub cloud_answer: Option<String>,
    pub local_answer: Option<String>,
    pub error: Option<String>,
    pub detail: Option<String>,
}

/// One evaluation as read back.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct EvaluationRow {
    pub id: i64,
    pub ts_ms: i64,
    pub round_id: String,
    pub use_case: String,
    pub source: String,
    pub exchange_id: Option<i64>,
    pub canary: Option<String>,
    pub model: String,
    pub kind: String,
    pub score: f64,
    pub passed: bool,
    pub comparable: bool,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub prompt: Option<String>,
    pub cloud_answer: Option<String>,
    pub local_answer: Option<String>,
    pub error: Option<String>,
    pub detail: Option<String>,
}

/// What readiness needs of one evaluation.
#[derive(Debug, Clone, Copy, FromRow)]
pub struct EvaluationSample {
    pub ts_ms: i64,
    pub score: f64,
    pub passed: bool,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
}

/// One readiness computation, as written and read back.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ReadinessRow {
    pub ts_ms: i64,
    pub use_case: String,
    pub verdict: String,
    pub score: f64,
    pub score_lower: f64,
    pub score_upper: f64,
    pub n: i64,
    /// JSON array of sentences.
    pub reasons: String,
    /// JSON: the full readiness, capacity and window.
    pub detail: String,
}

/// A recorded exchange that may be replayed.
#[derive(Debug, Clone, FromRow)]
pub struct ReplayCandidate {
    pub id: i64,
    pub ts_ms: i64,
    pub endpoint: String,
    pub request_body: Option<String>,
}

const EVALUATION_COLUMNS: &str = "id, ts_ms, round_id, use_case, source, exchange_id, canary, model, kind, score, passed, \
    comparable, latency_ms, ttft_ms, completion_tokens, prompt, cloud_answer, local_answer, error, detail";

const READINESS_COLUMNS: &str = "ts_ms, use_case, verdict, score, score_lower, score_upper, n, reasons, detail";

/// `u(name)`: the use cases that have a readiness row, with `NULL` ending the list (filter it
/// out). The table keeps every computation (about 52k rows a year per use case), so the
/// distinct names are walked through the `(use_case, id)` index one seek at a time (a loose
/// index scan) instead of grouping the whole table. Same SQL on SQLite and PostgreSQL.
pub(super) const READINESS_USE_CASES: &str = "WITH RECURSIVE u(name) AS (SELECT MIN(use_case) FROM readiness \
     UNION ALL SELECT (SELECT MIN(use_case) FROM readiness WHERE use_case > u.name) FROM u WHERE u.name IS NOT NULL) ";

/// The endpoints a local model can answer, so the only ones worth replaying.
const REPLAYABLE: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/messages"];

impl Store {
    pub async fn insert_evaluations(&self, rows: &[NewEvaluation]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        dispatch!(self, p => {
            for chunk in rows.chunks(500) {
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO evaluations (ts_ms, round_id, use_case, source, exchange_id, canary, model, kind, score, passed, \
                     comparable, latency_ms, ttft_ms, completion_tokens, prompt, cloud_answer, local_answer, error, detail) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.ts_ms)
                        .push_bind(&r.round_id)
                        .push_bind(&r.use_case)
                        .push_bind(r.source)
                        .push_bind(r.exchange_id)
                        .push_bind(&r.canary)
                        .push_bind(&r.model)
                        .push_bind(&r.kind)
                        .push_bind(r.score)
                        .push_bind(r.passed)
                        .push_bind(r.comparable)
                        .push_bind(r.latency_ms)
                        .push_bind(r.ttft_ms)
                        .push_bind(r.completion_tokens)
                        .push_bind(&r.prompt)
                        .push_bind(&r.cloud_answer)
                        .push_bind(&r.local_answer)
                        .push_bind(&r.error)
                        .push_bind(&r.detail);
                });
                q.build().execute(p).await?;
            }
            Ok(())
        })
    }

    /// The comparable evaluations of a use case newer than `since_ms` (readiness input).
    pub async fn evaluation_samples(&self, use_case: &str, since_ms: i64) -> Result<Vec<EvaluationSample>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ts_ms, score, passed, latency_ms, ttft_ms FROM evaluations WHERE use_case = ");
            q.push_bind(use_case).push(" AND comparable AND ts_ms > ").push_bind(since_ms).push(" ORDER BY ts_ms DESC LIMIT 100000");
            Ok(q.build_query_as::<EvaluationSample>().fetch_all(p).await?)
        })
    }

    /// The lowest-scoring comparable evaluations of a use case newer than `since_ms`.
    pub async fn worst_evaluations(&self, use_case: &str, since_ms: i64, limit: i64) -> Result<Vec<EvaluationRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ");
            q.push(EVALUATION_COLUMNS).push(" FROM evaluations WHERE use_case = ").push_bind(use_case);
            q.push(" AND comparable AND ts_ms > ").push_bind(since_ms);
            q.push(" ORDER BY score ASC, ts_ms DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as::<EvaluationRow>().fetch_all(p).await?)
        })
    }

    /// The newest evaluations, all use cases or one.
    pub async fn list_evaluations(&self, use_case: Option<&str>, limit: i64) -> Result<Vec<EvaluationRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ");
            q.push(EVALUATION_COLUMNS).push(" FROM evaluations WHERE 1=1");
            if let Some(u) = use_case {
                q.push(" AND use_case = ").push_bind(u);
            }
            q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as::<EvaluationRow>().fetch_all(p).await?)
        })
    }

    pub async fn insert_readiness(&self, r: &ReadinessRow) -> Result<(), StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO readiness (");
            q.push(READINESS_COLUMNS).push(") ");
            q.push_values([r], |mut b, r| {
                b.push_bind(r.ts_ms)
                    .push_bind(&r.use_case)
                    .push_bind(&r.verdict)
                    .push_bind(r.score)
                    .push_bind(r.score_lower)
                    .push_bind(r.score_upper)
                    .push_bind(r.n)
                    .push_bind(&r.reasons)
                    .push_bind(&r.detail);
            });
            q.build().execute(p).await?;
            Ok(())
        })
    }

    /// A use case's readiness history, newest first.
    pub async fn readiness_history(&self, use_case: &str, limit: i64) -> Result<Vec<ReadinessRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ");
            q.push(READINESS_COLUMNS).push(" FROM readiness WHERE use_case = ").push_bind(use_case);
            q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as::<ReadinessRow>().fetch_all(p).await?)
        })
    }

    /// The latest readiness of each use case that has one.
    pub async fn latest_readiness(&self) -> Result<Vec<ReadinessRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new(READINESS_USE_CASES);
            q.push("SELECT ").push(READINESS_COLUMNS).push(
                " FROM readiness WHERE id IN (SELECT (SELECT MAX(id) FROM readiness r WHERE r.use_case = u.name) FROM u \
                 WHERE u.name IS NOT NULL) ORDER BY use_case",
            );
            Ok(q.build_query_as::<ReadinessRow>().fetch_all(p).await?)
        })
    }

    /// Recorded exchanges of a use case that may be replayed against its local model: what the
    /// client got (final attempt), complete, from the cloud, successful, on an endpoint local
    /// models serve, newer than `since_ms`; newest first, at most `limit`.
    pub async fn replay_candidates(&self, use_case: &str, since_ms: i64, limit: i64) -> Result<Vec<ReplayCandidate>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT id, ts_ms, endpoint, request_body FROM exchanges WHERE use_case = ");
            q.push_bind(use_case);
            q.push(" AND completed AND final_attempt AND NOT truncated AND status >= 200 AND status < 300");
            q.push(" AND request_body IS NOT NULL AND response_body IS NOT NULL AND served_by LIKE ").push_bind("cloud:%");
            q.push(" AND ts_ms > ").push_bind(since_ms);
            q.push(" AND endpoint IN (");
            let mut list = q.separated(", ");
            for e in REPLAYABLE {
                list.push_bind(e);
            }
            q.push(") ORDER BY ts_ms DESC, id DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as::<ReplayCandidate>().fetch_all(p).await?)
        })
    }

    /// The busiest minute of a use case since `since_ms`: requests in it (client requests,
    /// i.e. final attempts). 0 when there was no traffic.
    pub async fn peak_requests_per_minute(&self, use_case: &str, since_ms: i64) -> Result<i64, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT COUNT(*) AS requests FROM exchanges WHERE use_case = ");
            q.push_bind(use_case).push(" AND final_attempt AND ts_ms > ").push_bind(since_ms);
            q.push(" GROUP BY ts_ms / 60000 ORDER BY requests DESC LIMIT 1");
            Ok(q.build_query_as::<(i64,)>().fetch_optional(p).await?.map(|r| r.0).unwrap_or(0))
        })
    }
}
