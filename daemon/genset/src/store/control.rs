//! The controller's tables: breaker state per upstream and the `meta` keys it owns (the mode).

use sqlx::{Postgres, QueryBuilder, Sqlite};

use super::{Store, StoreError, dispatch};

impl Store {
    /// Save one upstream's breaker state (JSON).
    pub async fn upsert_upstream_state(&self, upstream: &str, state_json: &str, now_ms: i64) -> Result<(), StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO upstream_state (upstream, state, updated_ms) VALUES (");
            q.push_bind(upstream).push(", ").push_bind(state_json).push(", ").push_bind(now_ms);
            q.push(") ON CONFLICT (upstream) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms");
            q.build().execute(p).await?;
            Ok(())
        })
    }

    /// Every saved breaker state: (upstream, JSON).
    pub async fn load_upstream_states(&self) -> Result<Vec<(String, String)>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT upstream, state FROM upstream_state");
            Ok(q.build_query_as::<(String, String)>().fetch_all(p).await?)
        })
    }

    pub async fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO meta (key, value) VALUES (");
            q.push_bind(key).push(", ").push_bind(value).push(") ON CONFLICT (key) DO UPDATE SET value = excluded.value");
            q.build().execute(p).await?;
            Ok(())
        })
    }

    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT value FROM meta WHERE key = ");
            q.push_bind(key);
            Ok(q.build_query_as::<(String,)>().fetch_optional(p).await?.map(|r| r.0))
        })
    }

    /// Passthrough keys (salted hashes) the cloud accepted since `since_ms`, with when it last did.
    pub async fn list_accepted_keys(&self, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, p => {
            let mut q = QueryBuilder::<DB>::new("SELECT key_hash, last_seen_ms FROM client_keys WHERE accepted > 0 AND last_seen_ms >= ");
            q.push_bind(since_ms);
            Ok(q.build_query_as::<(String, i64)>().fetch_all(p).await?)
        })
    }
}
