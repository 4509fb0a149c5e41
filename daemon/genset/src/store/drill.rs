//! Drills (table `drills`, migration 0005) and the reads reports are computed from.

use serde::Serialize;
use sqlx::{FromRow, Postgres, QueryBuilder, Sqlite};

use super::{EventRow, Store, StoreError, dispatch};

/// One drill as stored.
#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct DrillRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub state: String,
    pub verdict: Option<String>,
    /// JSON array.
    pub use_cases: String,
    pub started_ms: i64,
    pub deadline_ms: i64,
    pub ended_ms: Option<i64>,
    pub actor: String,
    /// JSON.
    pub spec: String,
    /// JSON.
    pub result: Option<String>,
}

/// An exchange as reports and drill results read it (no bodies).
#[derive(Debug, Clone, FromRow)]
pub struct ReportExchangeRow {
    pub id: i64,
    pub ts_ms: i64,
    pub endpoint: String,
    pub use_case: String,
    pub served_by: String,
    pub model: Option<String>,
    pub status: i64,
    pub completed: bool,
    pub ttfb_ms: Option<f64>,
    pub total_ms: f64,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub final_attempt: bool,
    pub rescue: Option<String>,
    pub mode: Option<String>,
    pub prompt_fingerprint: Option<String>,
}

/// A recorded client request with its bodies (replay drills, drill quality).
#[derive(Debug, Clone, FromRow)]
pub struct BodyRow {
    pub id: i64,
    pub ts_ms: i64,
    pub endpoint: String,
    pub use_case: String,
    pub served_by: String,
    pub total_ms: f64,
    pub completion_tokens: Option<i64>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    pub prompt_fingerprint: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct ReadinessRow {
    pub ts_ms: i64,
    pub use_case: String,
    pub verdict: String,
    pub score: f64,
    pub score_lower: f64,
    pub score_upper: f64,
    pub n: i64,
}

const DRILL_COLUMNS: &str = "id, name, kind, state, verdict, use_cases, started_ms, deadline_ms, ended_ms, actor, spec, result";
const REPORT_COLUMNS: &str = "id, ts_ms, endpoint, use_case, served_by, model, status, completed, ttfb_ms, total_ms, \
    prompt_tokens, completion_tokens, final_attempt, rescue, mode, prompt_fingerprint";
const BODY_COLUMNS: &str =
    "id, ts_ms, endpoint, use_case, served_by, total_ms, completion_tokens, request_body, response_body, prompt_fingerprint";

impl Store {
    pub async fn insert_drill(&self, d: &DrillRow) -> Result<(), StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO drills (");
            q.push(DRILL_COLUMNS).push(") ");
            q.push_values([d], |mut b, d| {
                b.push_bind(&d.id)
                    .push_bind(&d.name)
                    .push_bind(&d.kind)
                    .push_bind(&d.state)
                    .push_bind(&d.verdict)
                    .push_bind(&d.use_cases)
                    .push_bind(d.started_ms)
                    .push_bind(d.deadline_ms)
                    .push_bind(d.ended_ms)
                    .push_bind(&d.actor)
                    .push_bind(&d.spec)
                    .push_bind(&d.result);
            });
            q.build().execute(p).await?;
            Ok(())
        })
    }

    /// Close a running drill; false when it was not running (already ended).
    pub async fn end_drill(&self, id: &str, state: &str, verdict: &str, ended_ms: i64, result: &str) -> Result<bool, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("UPDATE drills SET state = ");
            q.push_bind(state)
                .push(", verdict = ")
                .push_bind(verdict)
                .push(", ended_ms = ")
                .push_bind(ended_ms)
                .push(", result = ")
                .push_bind(result)
                .push(" WHERE id = ")
                .push_bind(id)
                .push(" AND state = 'running'");
            Ok(q.build().execute(p).await?.rows_affected() == 1)
        })
    }

    pub async fn get_drill(&self, id: &str) -> Result<Option<DrillRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ");
            q.push(DRILL_COLUMNS).push(" FROM drills WHERE id = ").push_bind(id);
            Ok(q.build_query_as::<DrillRow>().fetch_optional(p).await?)
        })
    }

    /// Newest first; `state` filters (e.g. "running").
    pub async fn list_drills(
        &self,
        state: Option<&str>,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DrillRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ");
            q.push(DRILL_COLUMNS).push(" FROM drills WHERE 1=1");
            if let Some(s) = state {
                q.push(" AND state = ").push_bind(s);
            }
            if let Some(t) = since_ms {
                q.push(" AND started_ms >= ").push_bind(t);
            }
            if let Some(t) = until_ms {
                q.push(" AND started_ms < ").push_bind(t);
            }
            q.push(" ORDER BY started_ms DESC, id DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as::<DrillRow>().fetch_all(p).await?)
        })
    }

    /// Exchanges (every attempt) with `since <= ts < until`, oldest first, no bodies.
    pub async fn report_exchanges(&self, since_ms: i64, until_ms: i64, mode: Option<&str>) -> Result<Vec<ReportExchangeRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ");
            q.push(REPORT_COLUMNS).push(" FROM exchanges WHERE ts_ms >= ").push_bind(since_ms).push(" AND ts_ms < ").push_bind(until_ms);
            if let Some(m) = mode {
                q.push(" AND mode = ").push_bind(m);
            }
            q.push(" ORDER BY ts_ms, id");
            Ok(q.build_query_as::<ReportExchangeRow>().fetch_all(p).await?)
        })
    }

    /// Client requests (final attempts) of some use cases in a time range, with bodies, oldest
    /// first; `served_by_prefix` e.g. "cloud:".
    pub async fn body_exchanges(
        &self,
        use_cases: &[String],
        since_ms: i64,
        until_ms: i64,
        served_by_prefix: &str,
        mode: Option<&str>,
        limit: i64,
    ) -> Result<Vec<BodyRow>, StoreError> {
        if use_cases.is_empty() {
            return Ok(Vec::new());
        }
        let like = format!("{served_by_prefix}%");
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ");
            q.push(BODY_COLUMNS).push(" FROM exchanges WHERE final_attempt = ").push_bind(true);
            q.push(" AND ts_ms >= ").push_bind(since_ms).push(" AND ts_ms < ").push_bind(until_ms);
            q.push(" AND served_by LIKE ").push_bind(&like);
            if let Some(m) = mode {
                q.push(" AND mode = ").push_bind(m);
            }
            q.push(" AND use_case IN (");
            let mut sep = q.separated(", ");
            for u in use_cases {
                sep.push_bind(u);
            }
            q.push(") ORDER BY ts_ms, id LIMIT ").push_bind(limit);
            Ok(q.build_query_as::<BodyRow>().fetch_all(p).await?)
        })
    }

    /// Events with `since <= ts < until`, oldest first.
    pub async fn events_between(&self, since_ms: i64, until_ms: i64) -> Result<Vec<EventRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT id, ts_ms, kind, subject, cause, detail FROM events WHERE ts_ms >= ");
            q.push_bind(since_ms).push(" AND ts_ms < ").push_bind(until_ms).push(" ORDER BY ts_ms, id");
            Ok(q.build_query_as::<EventRow>().fetch_all(p).await?)
        })
    }

    /// The readiness computations a report of `[since_ms, until_ms)` needs: those within the
    /// period, and for each use case the latest one before it (a use case with no computation
    /// in the period is reported with the verdict it had). Oldest first. Index reads only:
    /// a range on `readiness_ts`, and a loose index scan over the use cases.
    pub async fn readiness_points(&self, since_ms: i64, until_ms: i64) -> Result<Vec<ReadinessRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new(super::evaluate::READINESS_USE_CASES);
            q.push("SELECT ts_ms, use_case, verdict, score, score_lower, score_upper, n FROM readiness WHERE (ts_ms >= ");
            q.push_bind(since_ms).push(" AND ts_ms < ").push_bind(until_ms);
            q.push(") OR id IN (SELECT (SELECT MAX(id) FROM readiness r WHERE r.use_case = u.name AND r.ts_ms < ");
            q.push_bind(since_ms).push(") FROM u WHERE u.name IS NOT NULL) ORDER BY ts_ms, id");
            Ok(q.build_query_as::<ReadinessRow>().fetch_all(p).await?)
        })
    }
}
