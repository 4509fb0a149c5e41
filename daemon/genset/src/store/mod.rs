//! The store: SQLite (default, WAL) or PostgreSQL through sqlx. One set of query functions
//! serves both backends: each body is written once and expanded per backend by `dispatch!`,
//! with parameters only (`QueryBuilder` for dynamic SQL).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, Postgres, QueryBuilder, Sqlite};

mod control;
pub mod drill;
pub mod evaluate;
mod sqlite_lib;

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Other(String),
}

/// Run the same body against whichever backend the store is; `DB` names the backend type.
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
pub(crate) use dispatch;

/// One exchange as written.
#[derive(Debug, Clone)]
pub struct NewExchange {
    pub ts_ms: i64,
    pub api: &'static str,
    pub endpoint: &'static str,
    pub use_case: String,
    pub served_by: String,
    pub model: Option<String>,
    pub status: i64,
    pub stream: bool,
    pub completed: bool,
    pub error: Option<String>,
    pub client_key_hash: Option<String>,
    pub virtual_key_id: Option<String>,
    pub ttfb_ms: Option<f64>,
    pub total_ms: f64,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub truncated: bool,
    pub prompt_fingerprint: Option<String>,
    pub request_id: Option<String>,
    pub attempt: i64,
    pub final_attempt: bool,
    pub rescue: Option<String>,
    pub mode: Option<String>,
}

/// One exchange as read back.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ExchangeRecord {
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
    pub client_key_hash: Option<String>,
    pub virtual_key_id: Option<String>,
    pub ttfb_ms: Option<f64>,
    pub total_ms: f64,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub truncated: bool,
    pub prompt_fingerprint: Option<String>,
    pub request_id: Option<String>,
    pub attempt: i64,
    pub final_attempt: bool,
    pub rescue: Option<String>,
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TrafficFilter {
    pub use_case: Option<String>,
    pub served_by: Option<String>,
    pub status: Option<i64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Keyset pagination: only rows older than this exchange (by time, then id).
    pub before: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct VirtualKeyRow {
    pub id: String,
    pub name: String,
    pub use_case: Option<String>,
    pub upstream: Option<String>,
    #[serde(skip)]
    pub key_hash: String,
    pub last4: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct UseCaseCount {
    pub use_case: String,
    pub requests: i64,
    pub errors: i64,
    pub last_ts_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct FingerprintGroup {
    pub prompt_fingerprint: String,
    pub requests: i64,
    pub sample_id: i64,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub ts_ms: i64,
    pub kind: String,
    pub subject: String,
    pub cause: String,
    pub detail: Option<String>,
}

const EXCHANGE_COLUMNS: &str = "id, ts_ms, api, endpoint, use_case, served_by, model, status, stream, completed, error, \
    client_key_hash, virtual_key_id, ttfb_ms, total_ms, prompt_tokens, completion_tokens, request_body, response_body, \
    request_bytes, response_bytes, truncated, prompt_fingerprint, request_id, attempt, final_attempt, rescue, mode";

impl Store {
    /// Open (creating a SQLite file and its folder if needed) and migrate.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let store = if url.starts_with("sqlite:") {
            sqlite_lib::configure();
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Applies when the file is created (an existing database keeps its size). The
                // recorder appends ~1 KiB rows in batches: 16 KiB pages mean a quarter of the
                // WAL frames, writes and checksums of 4 KiB ones (sqlx thread -10% CPU per
                // recorded exchange, docs/benchmarks.md).
                .page_size(16384);
            if let Some(parent) = Path::new(opts.get_filename()).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Other(format!("cannot create {}: {e}", parent.display())))?;
            }
            let pool = SqlitePoolOptions::new().max_connections(max_connections).connect_with(opts).await?;
            Store::Sqlite(pool)
        } else {
            let pool = PgPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
            Store::Postgres(pool)
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await?,
            Store::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        dispatch!(self, p => p.close().await)
    }

    /// A value from the `meta` table, set to `init()` first if absent.
    pub async fn meta_get_or_init(&self, key: &str, init: impl FnOnce() -> String) -> Result<String, StoreError> {
        let value = init();
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO meta (key, value) VALUES (");
            q.push_bind(key).push(", ").push_bind(&value).push(") ON CONFLICT (key) DO NOTHING");
            q.build().execute(p).await?;
            let mut q = QueryBuilder::<DB>::new("SELECT value FROM meta WHERE key = ");
            q.push_bind(key);
            let v: (String,) = q.build_query_as().fetch_one(p).await?;
            Ok(v.0)
        })
    }

    /// Write a batch of exchanges and note the client keys the cloud accepted, in one transaction.
    pub async fn insert_exchanges(&self, rows: &[NewExchange], accepted_keys: &[(String, i64)]) -> Result<(), StoreError> {
        if rows.is_empty() && accepted_keys.is_empty() {
            return Ok(());
        }
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            // Stay well under both backends' bind-parameter limits.
            for chunk in rows.chunks(1000) {
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO exchanges (ts_ms, api, endpoint, use_case, served_by, model, status, stream, completed, error, \
                     client_key_hash, virtual_key_id, ttfb_ms, total_ms, prompt_tokens, completion_tokens, request_body, \
                     response_body, request_bytes, response_bytes, truncated, prompt_fingerprint, request_id, attempt, final_attempt, \
                     rescue, mode) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.ts_ms)
                        .push_bind(r.api)
                        .push_bind(r.endpoint)
                        .push_bind(&r.use_case)
                        .push_bind(&r.served_by)
                        .push_bind(&r.model)
                        .push_bind(r.status)
                        .push_bind(r.stream)
                        .push_bind(r.completed)
                        .push_bind(&r.error)
                        .push_bind(&r.client_key_hash)
                        .push_bind(&r.virtual_key_id)
                        .push_bind(r.ttfb_ms)
                        .push_bind(r.total_ms)
                        .push_bind(r.prompt_tokens)
                        .push_bind(r.completion_tokens)
                        .push_bind(&r.request_body)
                        .push_bind(&r.response_body)
                        .push_bind(r.request_bytes)
                        .push_bind(r.response_bytes)
                        .push_bind(r.truncated)
                        .push_bind(&r.prompt_fingerprint)
                        .push_bind(&r.request_id)
                        .push_bind(r.attempt)
                        .push_bind(r.final_attempt)
                        .push_bind(&r.rescue)
                        .push_bind(&r.mode);
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in accepted_keys.chunks(1000) {
                let mut q = QueryBuilder::<DB>::new("INSERT INTO client_keys (key_hash, first_seen_ms, last_seen_ms, accepted) ");
                q.push_values(chunk, |mut b, (h, ts)| {
                    b.push_bind(h).push_bind(*ts).push_bind(*ts).push_bind(1i64);
                });
                q.push(
                    " ON CONFLICT (key_hash) DO UPDATE SET last_seen_ms = excluded.last_seen_ms, \
                     accepted = client_keys.accepted + 1",
                );
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn list_exchanges(&self, f: &TrafficFilter) -> Result<Vec<ExchangeRecord>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ");
            q.push(EXCHANGE_COLUMNS).push(" FROM exchanges WHERE 1=1");
            if let Some(u) = &f.use_case {
                q.push(" AND use_case = ").push_bind(u);
            }
            if let Some(s) = &f.served_by {
                q.push(" AND served_by = ").push_bind(s);
            }
            if let Some(s) = f.status {
                q.push(" AND status = ").push_bind(s);
            }
            if let Some(t) = f.since_ms {
                q.push(" AND ts_ms >= ").push_bind(t);
            }
            if let Some(t) = f.until_ms {
                q.push(" AND ts_ms < ").push_bind(t);
            }
            if let Some(b) = f.before {
                // The cursor is an exchange id; the order is (time, id), as on the console, so
                // every filter has its `(column, ts_ms, id)` index. A cursor row removed by
                // retention meanwhile continues below its id.
                q.push(" AND (ts_ms, id) < (COALESCE((SELECT c.ts_ms FROM exchanges c WHERE c.id = ")
                    .push_bind(b)
                    .push("), ")
                    .push_bind(i64::MAX)
                    .push("), ")
                    .push_bind(b)
                    .push(")");
            }
            q.push(" ORDER BY ts_ms DESC, id DESC LIMIT ").push_bind(f.limit);
            Ok(q.build_query_as::<ExchangeRecord>().fetch_all(p).await?)
        })
    }

    pub async fn get_exchange(&self, id: i64) -> Result<Option<ExchangeRecord>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT ");
            q.push(EXCHANGE_COLUMNS).push(" FROM exchanges WHERE id = ").push_bind(id);
            Ok(q.build_query_as::<ExchangeRecord>().fetch_optional(p).await?)
        })
    }

    pub async fn count_exchanges(&self) -> Result<i64, StoreError> {
        dispatch!(self, p => {
            let r: (i64,) = QueryBuilder::<DB>::new("SELECT COUNT(*) FROM exchanges").build_query_as().fetch_one(p).await?;
            Ok(r.0)
        })
    }

    /// Delete up to `limit` exchanges older than `cutoff_ms`; returns how many went.
    pub async fn delete_exchanges_before(&self, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("DELETE FROM exchanges WHERE id IN (SELECT id FROM exchanges WHERE ts_ms < ");
            q.push_bind(cutoff_ms).push(" ORDER BY id LIMIT ").push_bind(limit).push(")");
            Ok(q.build().execute(p).await?.rows_affected())
        })
    }

    pub async fn use_case_counts(&self, since_ms: i64) -> Result<Vec<UseCaseCount>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT use_case, COUNT(*) AS requests, \
                 SUM(CASE WHEN status >= 400 OR NOT completed THEN 1 ELSE 0 END) AS errors, MAX(ts_ms) AS last_ts_ms \
                 FROM exchanges WHERE ts_ms >= ",
            );
            q.push_bind(since_ms).push(" GROUP BY use_case ORDER BY use_case");
            Ok(q.build_query_as::<UseCaseCount>().fetch_all(p).await?)
        })
    }

    /// Unclassified traffic grouped by system-prompt fingerprint, largest groups first.
    pub async fn unclassified_groups(&self, since_ms: i64, limit: i64) -> Result<Vec<FingerprintGroup>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT prompt_fingerprint, COUNT(*) AS requests, MAX(id) AS sample_id FROM exchanges \
                 WHERE use_case = ",
            );
            q.push_bind(crate::classify::UNCLASSIFIED)
                .push(" AND prompt_fingerprint IS NOT NULL AND ts_ms >= ")
                .push_bind(since_ms)
                .push(" GROUP BY prompt_fingerprint ORDER BY requests DESC LIMIT ")
                .push_bind(limit);
            Ok(q.build_query_as::<FingerprintGroup>().fetch_all(p).await?)
        })
    }

    pub async fn insert_virtual_key(&self, k: &VirtualKeyRow) -> Result<(), StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO virtual_keys (id, name, use_case, upstream, key_hash, last4, created_ms, revoked_ms) ",
            );
            q.push_values([k], |mut b, k| {
                b.push_bind(&k.id)
                    .push_bind(&k.name)
                    .push_bind(&k.use_case)
                    .push_bind(&k.upstream)
                    .push_bind(&k.key_hash)
                    .push_bind(&k.last4)
                    .push_bind(k.created_ms)
                    .push_bind(k.revoked_ms);
            });
            q.build().execute(p).await?;
            Ok(())
        })
    }

    pub async fn list_virtual_keys(&self) -> Result<Vec<VirtualKeyRow>, StoreError> {
        dispatch!(self, p => {
            Ok(QueryBuilder::<DB>::new(
                "SELECT id, name, use_case, upstream, key_hash, last4, created_ms, revoked_ms FROM virtual_keys ORDER BY created_ms",
            )
            .build_query_as::<VirtualKeyRow>()
            .fetch_all(p)
            .await?)
        })
    }

    /// Mark a key revoked; false when no such (unrevoked) key.
    pub async fn revoke_virtual_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("UPDATE virtual_keys SET revoked_ms = ");
            q.push_bind(now_ms).push(" WHERE id = ").push_bind(id).push(" AND revoked_ms IS NULL");
            Ok(q.build().execute(p).await?.rows_affected() == 1)
        })
    }

    pub async fn insert_event(&self, ts_ms: i64, kind: &str, subject: &str, cause: &str, detail: Option<&str>) -> Result<(), StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO events (ts_ms, kind, subject, cause, detail) ");
            q.push_values([()], |mut b, _| {
                b.push_bind(ts_ms).push_bind(kind).push_bind(subject).push_bind(cause).push_bind(detail);
            });
            q.build().execute(p).await?;
            Ok(())
        })
    }

    pub async fn list_events(&self, limit: i64) -> Result<Vec<EventRow>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT id, ts_ms, kind, subject, cause, detail FROM events ORDER BY id DESC LIMIT ");
            q.push_bind(limit);
            Ok(q.build_query_as::<EventRow>().fetch_all(p).await?)
        })
    }
}
