//! The console's queries, for SQLite and PostgreSQL alike: each body is written once and
//! expanded per backend by `dispatch!`; parameters only, `QueryBuilder` for dynamic SQL.

use genset::store::{Store, StoreError};
use serde::Serialize;
use sqlx::{FromRow, Postgres, QueryBuilder, Sqlite};

pub type Result<T> = std::result::Result<T, StoreError>;

macro_rules! dispatch {
    ($self:expr, $pool:ident => $body:expr) => {
        match $self {
            Store::Sqlite($pool) => {
                #[allow(dead_code)]
                type DB = Sqlite;
                $body
            }
            Store::Postgres($pool) => {
                #[allow(dead_code)]
                type DB = Postgres;
                $body
            }
        }
    };
}

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub password_changed_ms: i64,
    pub last_login_ms: Option<i64>,
}

const USER_COLUMNS: &str = "id, username, password_hash, role, disabled, created_ms, updated_ms, password_changed_ms, last_login_ms";

#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub id_hash: String,
    pub user_id: i64,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub address: String,
    pub user_agent: String,
    pub revoked_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub address: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub before: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct MinuteRow {
    pub minute_ms: i64,
    pub use_case: String,
    pub served_by: String,
    pub requests: i64,
    pub errors: i64,
    pub total_ms_sum: f64,
    /// Encoded [`crate::latency::Hist`] of the total times.
    pub total_hist: String,
    /// Encoded [`crate::latency::Hist`] of the times to first byte (where recorded).
    pub ttfb_hist: String,
}

/// The columns of an exchange the traffic list shows (never the bodies).
#[derive(Debug, Clone, FromRow)]
pub struct ExchangeSummary {
    pub id: i64,
    pub ts_ms: i64,
    pub api: String,
    pub endpoint: String,
    pub use_case: String,
    pub served_by: String,
    pub model: Option<String>,
    pub status: i64,
    pub stream: bool,
    pub completed: bool,
    pub error: Option<String>,
    pub total_ms: f64,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
}

/// What the rollup folds in per exchange.
#[derive(Debug, Clone, FromRow)]
pub struct ExchangeTick {
    pub id: i64,
    pub ts_ms: i64,
    pub use_case: String,
    pub served_by: String,
    pub status: i64,
    pub completed: bool,
    pub total_ms: f64,
    pub ttfb_ms: Option<f64>,
    /// Failed attempts before a failover are recorded too; only the final one is what the
    /// client got.
    pub final_attempt: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TrafficQuery {
    pub use_case: Option<String>,
    pub served_by: Option<String>,
    pub status: Option<i64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Keyset cursor: only rows before this (ts_ms, id), in the list's order.
    pub before: Option<(i64, i64)>,
    pub limit: i64,
}

// ---- users ----

pub async fn any_admin(s: &Store) -> Result<bool> {
    dispatch!(s, p => {
        let r: Option<(i64,)> = QueryBuilder::<DB>::new("SELECT id FROM console_users WHERE role = 'admin' LIMIT 1")
            .build_query_as()
            .fetch_optional(p)
            .await?;
        Ok(r.is_some())
    })
}

/// Enabled admins other than `except`.
pub async fn other_enabled_admins(s: &Store, except: i64) -> Result<i64> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT COUNT(*) FROM console_users WHERE role = 'admin' AND disabled = ");
        q.push_bind(false).push(" AND id <> ").push_bind(except);
        let r: (i64,) = q.build_query_as().fetch_one(p).await?;
        Ok(r.0)
    })
}

/// Create a user; `Ok(None)` when the name is taken.
pub async fn create_user(s: &Store, username: &str, hash: &str, role: &str, now: i64) -> Result<Option<i64>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new(
            "INSERT INTO console_users (username, password_hash, role, disabled, created_ms, updated_ms, password_changed_ms) VALUES (",
        );
        let mut sep = q.separated(", ");
        sep.push_bind(username).push_bind(hash).push_bind(role).push_bind(false).push_bind(now).push_bind(now).push_bind(now);
        q.push(") ON CONFLICT (username) DO NOTHING RETURNING id");
        let r: Option<(i64,)> = q.build_query_as().fetch_optional(p).await?;
        Ok(r.map(|r| r.0))
    })
}

/// Create the first admin, only while no admin exists (one statement: two setup forms
/// submitted together cannot both win).
pub async fn create_first_admin(s: &Store, username: &str, hash: &str, now: i64) -> Result<Option<i64>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new(
            "INSERT INTO console_users (username, password_hash, role, disabled, created_ms, updated_ms, password_changed_ms) SELECT ",
        );
        let mut sep = q.separated(", ");
        sep.push_bind(username).push_bind(hash).push("'admin'").push_bind(false).push_bind(now).push_bind(now).push_bind(now);
        q.push(" WHERE NOT EXISTS (SELECT 1 FROM console_users WHERE role = 'admin') ON CONFLICT (username) DO NOTHING RETURNING id");
        let r: Option<(i64,)> = q.build_query_as().fetch_optional(p).await?;
        Ok(r.map(|r| r.0))
    })
}

pub async fn user_by_name(s: &Store, username: &str) -> Result<Option<UserRow>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT ");
        q.push(USER_COLUMNS).push(" FROM console_users WHERE username = ").push_bind(username);
        Ok(q.build_query_as::<UserRow>().fetch_optional(p).await?)
    })
}

pub async fn user_by_id(s: &Store, id: i64) -> Result<Option<UserRow>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT ");
        q.push(USER_COLUMNS).push(" FROM console_users WHERE id = ").push_bind(id);
        Ok(q.build_query_as::<UserRow>().fetch_optional(p).await?)
    })
}

pub async fn list_users(s: &Store) -> Result<Vec<UserRow>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT ");
        q.push(USER_COLUMNS).push(" FROM console_users ORDER BY username");
        Ok(q.build_query_as::<UserRow>().fetch_all(p).await?)
    })
}

pub async fn set_role(s: &Store, id: i64, role: &str, now: i64) -> Result<bool> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("UPDATE console_users SET role = ");
        q.push_bind(role).push(", updated_ms = ").push_bind(now).push(" WHERE id = ").push_bind(id);
        Ok(q.build().execute(p).await?.rows_affected() == 1)
    })
}

pub async fn set_disabled(s: &Store, id: i64, disabled: bool, now: i64) -> Result<bool> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("UPDATE console_users SET disabled = ");
        q.push_bind(disabled).push(", updated_ms = ").push_bind(now).push(" WHERE id = ").push_bind(id);
        Ok(q.build().execute(p).await?.rows_affected() == 1)
    })
}

pub async fn set_password(s: &Store, id: i64, hash: &str, now: i64) -> Result<bool> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("UPDATE console_users SET password_hash = ");
        q.push_bind(hash)
            .push(", updated_ms = ")
            .push_bind(now)
            .push(", password_changed_ms = ")
            .push_bind(now)
            .push(" WHERE id = ")
            .push_bind(id);
        Ok(q.build().execute(p).await?.rows_affected() == 1)
    })
}

pub async fn touch_login(s: &Store, id: i64, now: i64) -> Result<()> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("UPDATE console_users SET last_login_ms = ");
        q.push_bind(now).push(" WHERE id = ").push_bind(id);
        q.build().execute(p).await?;
        Ok(())
    })
}

// ---- sessions ----

pub async fn insert_session(s: &Store, r: &SessionRow) -> Result<()> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new(
            "INSERT INTO console_sessions (id_hash, user_id, created_ms, last_seen_ms, address, user_agent) VALUES (",
        );
        let mut sep = q.separated(", ");
        sep.push_bind(&r.id_hash)
            .push_bind(r.user_id)
            .push_bind(r.created_ms)
            .push_bind(r.last_seen_ms)
            .push_bind(&r.address)
            .push_bind(&r.user_agent);
        q.push(")");
        q.build().execute(p).await?;
        Ok(())
    })
}

pub async fn get_session(s: &Store, id_hash: &str) -> Result<Option<SessionRow>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new(
            "SELECT id_hash, user_id, created_ms, last_seen_ms, address, user_agent, revoked_ms FROM console_sessions WHERE id_hash = ",
        );
        q.push_bind(id_hash);
        Ok(q.build_query_as::<SessionRow>().fetch_optional(p).await?)
    })
}

pub async fn touch_session(s: &Store, id_hash: &str, now: i64) -> Result<()> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("UPDATE console_sessions SET last_seen_ms = ");
        q.push_bind(now).push(" WHERE id_hash = ").push_bind(id_hash);
        q.build().execute(p).await?;
        Ok(())
    })
}

pub async fn revoke_session(s: &Store, id_hash: &str, now: i64) -> Result<bool> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("UPDATE console_sessions SET revoked_ms = ");
        q.push_bind(now).push(" WHERE id_hash = ").push_bind(id_hash).push(" AND revoked_ms IS NULL");
        Ok(q.build().execute(p).await?.rows_affected() == 1)
    })
}

/// Revoke every live session of a user but `keep`; returns how many.
pub async fn revoke_user_sessions(s: &Store, user_id: i64, keep: Option<&str>, now: i64) -> Result<u64> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("UPDATE console_sessions SET revoked_ms = ");
        q.push_bind(now).push(" WHERE user_id = ").push_bind(user_id).push(" AND revoked_ms IS NULL");
        if let Some(k) = keep {
            q.push(" AND id_hash <> ").push_bind(k);
        }
        Ok(q.build().execute(p).await?.rows_affected())
    })
}

/// Live sessions (not revoked, seen since `seen_since`, created since `created_since`), of
/// one user or of all, most recently used first; at most `limit`.
pub async fn live_sessions(s: &Store, user_id: Option<i64>, seen_since: i64, created_since: i64, limit: i64) -> Result<Vec<SessionRow>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new(
            "SELECT id_hash, user_id, created_ms, last_seen_ms, address, user_agent, revoked_ms FROM console_sessions \
             WHERE revoked_ms IS NULL AND last_seen_ms >= ",
        );
        q.push_bind(seen_since).push(" AND created_ms >= ").push_bind(created_since);
        if let Some(u) = user_id {
            q.push(" AND user_id = ").push_bind(u);
        }
        q.push(" ORDER BY last_seen_ms DESC LIMIT ").push_bind(limit);
        Ok(q.build_query_as::<SessionRow>().fetch_all(p).await?)
    })
}

/// Delete sessions that have ended (revoked, idle since before `seen_before`, or created
/// before `created_before`); their cookies already lead to the sign-in page.
pub async fn delete_ended_sessions(s: &Store, seen_before: i64, created_before: i64) -> Result<u64> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("DELETE FROM console_sessions WHERE revoked_ms IS NOT NULL OR last_seen_ms < ");
        q.push_bind(seen_before).push(" OR created_ms < ").push_bind(created_before);
        Ok(q.build().execute(p).await?.rows_affected())
    })
}

// ---- audit ----

#[allow(clippy::too_many_arguments)]
pub async fn insert_audit(
    s: &Store,
    ts_ms: i64,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    address: &str,
    detail: Option<&str>,
) -> Result<()> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("INSERT INTO console_audit (ts_ms, actor, action, target, outcome, address, detail) VALUES (");
        let mut sep = q.separated(", ");
        sep.push_bind(ts_ms).push_bind(actor).push_bind(action).push_bind(target).push_bind(outcome).push_bind(address).push_bind(detail);
        q.push(")");
        q.build().execute(p).await?;
        Ok(())
    })
}

pub async fn list_audit(s: &Store, f: &AuditFilter) -> Result<Vec<AuditRow>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT id, ts_ms, actor, action, target, outcome, address, detail FROM console_audit WHERE 1=1");
        if let Some(a) = &f.action {
            q.push(" AND action = ").push_bind(a);
        }
        if let Some(a) = &f.actor {
            q.push(" AND actor = ").push_bind(a);
        }
        if let Some(b) = f.before {
            q.push(" AND id < ").push_bind(b);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
        Ok(q.build_query_as::<AuditRow>().fetch_all(p).await?)
    })
}

/// Delete up to `limit` audit entries older than `before_ms` (oldest first); returns how many.
pub async fn delete_audit_before(s: &Store, before_ms: i64, limit: i64) -> Result<u64> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("DELETE FROM console_audit WHERE id IN (SELECT id FROM console_audit WHERE ts_ms < ");
        q.push_bind(before_ms).push(" ORDER BY ts_ms LIMIT ").push_bind(limit).push(")");
        Ok(q.build().execute(p).await?.rows_affected())
    })
}

// ---- login attempts ----

#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub ts_ms: i64,
    pub username: String,
    pub address: String,
    pub ok: bool,
}

/// Failed sign-in attempts since `since_ms`, newest first, at most `limit` (the login
/// limiter's memory across restarts).
pub async fn failed_attempts_since(s: &Store, since_ms: i64, limit: i64) -> Result<Vec<AttemptRow>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT ts_ms, username, address, ok FROM console_login_attempts WHERE ts_ms >= ");
        q.push_bind(since_ms).push(" AND ok = ").push_bind(false).push(" ORDER BY ts_ms DESC LIMIT ").push_bind(limit);
        Ok(q.build_query_as::<AttemptRow>().fetch_all(p).await?)
    })
}

/// Delete up to `limit` sign-in attempts older than `before_ms`; returns how many.
pub async fn delete_attempts_before(s: &Store, before_ms: i64, limit: i64) -> Result<u64> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new(
            "DELETE FROM console_login_attempts WHERE id IN (SELECT id FROM console_login_attempts WHERE ts_ms < ",
        );
        q.push_bind(before_ms).push(" ORDER BY ts_ms LIMIT ").push_bind(limit).push(")");
        Ok(q.build().execute(p).await?.rows_affected())
    })
}

pub async fn insert_attempt(s: &Store, ts_ms: i64, username: &str, address: &str, ok: bool) -> Result<()> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("INSERT INTO console_login_attempts (ts_ms, username, address, ok) VALUES (");
        let mut sep = q.separated(", ");
        sep.push_bind(ts_ms).push_bind(username).push_bind(address).push_bind(ok);
        q.push(")");
        q.build().execute(p).await?;
        Ok(())
    })
}

/// Whether `username` logged in successfully from `address` since `since_ms`.
pub async fn known_address(s: &Store, username: &str, address: &str, since_ms: i64) -> Result<bool> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT id FROM console_login_attempts WHERE username = ");
        q.push_bind(username)
            .push(" AND address = ")
            .push_bind(address)
            .push(" AND ok = ")
            .push_bind(true)
            .push(" AND ts_ms >= ")
            .push_bind(since_ms)
            .push(" LIMIT 1");
        let r: Option<(i64,)> = q.build_query_as().fetch_optional(p).await?;
        Ok(r.is_some())
    })
}

// ---- bootstrap ----

pub async fn insert_bootstrap(s: &Store, token_hash: &str, now: i64, expires_ms: i64) -> Result<()> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("INSERT INTO console_bootstrap (token_hash, created_ms, expires_ms) VALUES (");
        let mut sep = q.separated(", ");
        sep.push_bind(token_hash).push_bind(now).push_bind(expires_ms);
        q.push(")");
        q.build().execute(p).await?;
        Ok(())
    })
}

pub async fn bootstrap_valid(s: &Store, token_hash: &str, now: i64) -> Result<bool> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT token_hash FROM console_bootstrap WHERE token_hash = ");
        q.push_bind(token_hash).push(" AND expires_ms > ").push_bind(now);
        let r: Option<(String,)> = q.build_query_as().fetch_optional(p).await?;
        Ok(r.is_some())
    })
}

/// Delete setup tokens that expired before `now`.
pub async fn delete_expired_bootstrap(s: &Store, now: i64) -> Result<u64> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("DELETE FROM console_bootstrap WHERE expires_ms < ");
        q.push_bind(now);
        Ok(q.build().execute(p).await?.rows_affected())
    })
}

pub async fn clear_bootstrap(s: &Store) -> Result<()> {
    dispatch!(s, p => {
        QueryBuilder::<DB>::new("DELETE FROM console_bootstrap").build().execute(p).await?;
        Ok(())
    })
}

// ---- traffic ----

const SUMMARY_COLUMNS: &str =
    "id, ts_ms, api, endpoint, use_case, served_by, model, status, stream, completed, error, total_ms, prompt_tokens, completion_tokens";

/// Newest first by (ts_ms, id), keyset-paginated on that pair; never the bodies. Each
/// filter has a `(column, ts_ms, id)` index, so a page is one index range walk.
pub async fn list_traffic(s: &Store, f: &TrafficQuery) -> Result<Vec<ExchangeSummary>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT ");
        q.push(SUMMARY_COLUMNS).push(" FROM exchanges WHERE 1=1");
        if let Some(u) = &f.use_case {
            q.push(" AND use_case = ").push_bind(u);
        }
        if let Some(v) = &f.served_by {
            q.push(" AND served_by = ").push_bind(v);
        }
        if let Some(v) = f.status {
            q.push(" AND status = ").push_bind(v);
        }
        if let Some(t) = f.since_ms {
            q.push(" AND ts_ms >= ").push_bind(t);
        }
        if let Some(t) = f.until_ms {
            q.push(" AND ts_ms < ").push_bind(t);
        }
        if let Some((ts, id)) = f.before {
            q.push(" AND (ts_ms, id) < (").push_bind(ts).push(", ").push_bind(id).push(")");
        }
        q.push(" ORDER BY ts_ms DESC, id DESC LIMIT ").push_bind(f.limit);
        Ok(q.build_query_as::<ExchangeSummary>().fetch_all(p).await?)
    })
}

/// Exchanges after `after_id`, oldest first (the rollup's input).
pub async fn exchanges_after(s: &Store, after_id: i64, limit: i64) -> Result<Vec<ExchangeTick>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new(
            "SELECT id, ts_ms, use_case, served_by, status, completed, total_ms, ttfb_ms, final_attempt FROM exchanges WHERE id > ",
        );
        q.push_bind(after_id).push(" ORDER BY id LIMIT ").push_bind(limit);
        Ok(q.build_query_as::<ExchangeTick>().fetch_all(p).await?)
    })
}

/// Distinct `served_by` values seen since `since_ms` (for the traffic filter), from the rollup.
pub async fn served_by_values(s: &Store, since_ms: i64) -> Result<Vec<String>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("SELECT DISTINCT served_by FROM console_minutes WHERE minute_ms >= ");
        q.push_bind(since_ms).push(" ORDER BY served_by LIMIT 100");
        let r: Vec<(String,)> = q.build_query_as().fetch_all(p).await?;
        Ok(r.into_iter().map(|r| r.0).collect())
    })
}

// ---- rollup ----

pub const ROLLUP_KEY: &str = "console.rollup_id";

/// Add a batch of minute rows and move the high-water mark, in one transaction. Counts add up
/// in SQL; the latency histograms are merged here with the stored ones (the high-water
/// write comes first, so on SQLite the transaction holds the write lock before it reads).
pub async fn add_minutes(s: &Store, rows: &[MinuteRow], high_water: i64) -> Result<()> {
    dispatch!(s, p => {
        let mut tx = p.begin().await?;
        let mut q = QueryBuilder::<DB>::new("INSERT INTO meta (key, value) VALUES (");
        q.push_bind(ROLLUP_KEY).push(", ").push_bind(high_water.to_string());
        q.push(") ON CONFLICT (key) DO UPDATE SET value = excluded.value");
        q.build().execute(&mut *tx).await?;
        for chunk in rows.chunks(300) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT minute_ms, use_case, served_by, total_hist, ttfb_hist FROM console_minutes WHERE (minute_ms, use_case, served_by) IN (",
            );
            let mut sep = q.separated(", ");
            for r in chunk {
                sep.push("(").push_bind_unseparated(r.minute_ms).push_unseparated(", ").push_bind_unseparated(&r.use_case);
                sep.push_unseparated(", ").push_bind_unseparated(&r.served_by).push_unseparated(")");
            }
            q.push(")");
            let stored: Vec<(i64, String, String, String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
            let merged: Vec<(String, String)> = chunk
                .iter()
                .map(|r| match stored.iter().find(|s| s.0 == r.minute_ms && s.1 == r.use_case && s.2 == r.served_by) {
                    Some(s) => (crate::latency::merge_encoded(&s.3, &r.total_hist), crate::latency::merge_encoded(&s.4, &r.ttfb_hist)),
                    None => (r.total_hist.clone(), r.ttfb_hist.clone()),
                })
                .collect();
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO console_minutes (minute_ms, use_case, served_by, requests, errors, total_ms_sum, total_hist, ttfb_hist) ",
            );
            q.push_values(chunk.iter().zip(&merged), |mut b, (r, (th, fh))| {
                b.push_bind(r.minute_ms)
                    .push_bind(&r.use_case)
                    .push_bind(&r.served_by)
                    .push_bind(r.requests)
                    .push_bind(r.errors)
                    .push_bind(r.total_ms_sum)
                    .push_bind(th)
                    .push_bind(fh);
            });
            q.push(
                " ON CONFLICT (minute_ms, use_case, served_by) DO UPDATE SET requests = console_minutes.requests + excluded.requests, \
                 errors = console_minutes.errors + excluded.errors, total_ms_sum = console_minutes.total_ms_sum + excluded.total_ms_sum, \
                 total_hist = excluded.total_hist, ttfb_hist = excluded.ttfb_hist",
            );
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    })
}

pub async fn minutes_since(s: &Store, since_ms: i64, use_case: Option<&str>) -> Result<Vec<MinuteRow>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new(
            "SELECT minute_ms, use_case, served_by, requests, errors, total_ms_sum, total_hist, ttfb_hist FROM console_minutes WHERE minute_ms >= ",
        );
        q.push_bind(since_ms);
        if let Some(u) = use_case {
            q.push(" AND use_case = ").push_bind(u);
        }
        Ok(q.build_query_as::<MinuteRow>().fetch_all(p).await?)
    })
}

/// Sums per (use case, served_by) since `since_ms` (`minute_ms` is 0 in the answer).
pub async fn sums_since(s: &Store, since_ms: i64, use_case: Option<&str>) -> Result<Vec<MinuteRow>> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new(
            "SELECT CAST(0 AS BIGINT) AS minute_ms, use_case, served_by, CAST(SUM(requests) AS BIGINT) AS requests, \
             CAST(SUM(errors) AS BIGINT) AS errors, CAST(SUM(total_ms_sum) AS DOUBLE PRECISION) AS total_ms_sum, \
             CAST('' AS TEXT) AS total_hist, CAST('' AS TEXT) AS ttfb_hist \
             FROM console_minutes WHERE minute_ms >= ",
        );
        q.push_bind(since_ms);
        if let Some(u) = use_case {
            q.push(" AND use_case = ").push_bind(u);
        }
        q.push(" GROUP BY use_case, served_by");
        Ok(q.build_query_as::<MinuteRow>().fetch_all(p).await?)
    })
}

pub async fn prune_minutes(s: &Store, before_ms: i64) -> Result<u64> {
    dispatch!(s, p => {
        let mut q = QueryBuilder::<DB>::new("DELETE FROM console_minutes WHERE minute_ms < ");
        q.push_bind(before_ms);
        Ok(q.build().execute(p).await?.rows_affected())
    })
}

/// The newest exchange id (cheap: the primary key's last entry).
pub async fn max_exchange_id(s: &Store) -> Result<i64> {
    dispatch!(s, p => {
        let r: (Option<i64>,) = QueryBuilder::<DB>::new("SELECT MAX(id) FROM exchanges").build_query_as().fetch_one(p).await?;
        Ok(r.0.unwrap_or(0))
    })
}
