//! The console's background upkeep, one task per console: fold new exchanges into the
//! dashboards' rollup every `rollup_interval`, and every `sweep_interval` (and once at start)
//! delete what is past its retention: audit entries (`admin.audit_retention`), sign-in
//! attempts (`admin.login_attempts_retention`), ended sessions, expired setup tokens and
//! rollup minutes older than [`rollup::KEEP`].
//!
//! Deletes run in small batches (like the recorder's retention), so the store is never held
//! for long; each batch is one statement, so the task can be cancelled at any point (the
//! admin listener stopping) without leaving anything half done.

use std::sync::Arc;

use genset::store::{Store, StoreError};

use crate::{Console, Options, db, rollup};

/// Rows deleted per statement.
pub const BATCH: i64 = 5000;

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub audit: u64,
    pub attempts: u64,
    pub sessions: u64,
    pub bootstrap: u64,
    pub minutes: u64,
}

impl Swept {
    pub fn total(&self) -> u64 {
        self.audit + self.attempts + self.sessions + self.bootstrap + self.minutes
    }
}

async fn batched<F, Fut>(mut delete: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = delete().await?;
        total += n;
        if (n as i64) < BATCH {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Delete everything past its retention as of `now_ms`.
pub async fn sweep(store: &Store, o: &Options, now_ms: i64) -> Result<Swept, StoreError> {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let audit_cutoff = now_ms.saturating_sub(ms(o.audit_retention));
    let attempts_cutoff = now_ms.saturating_sub(ms(o.login_attempts_retention));
    Ok(Swept {
        audit: batched(|| db::delete_audit_before(store, audit_cutoff, BATCH)).await?,
        attempts: batched(|| db::delete_attempts_before(store, attempts_cutoff, BATCH)).await?,
        sessions: db::delete_ended_sessions(store, now_ms - ms(o.idle_timeout), now_ms - ms(o.absolute_timeout)).await?,
        bootstrap: db::delete_expired_bootstrap(store, now_ms).await?,
        minutes: db::prune_minutes(store, now_ms - ms(rollup::KEEP)).await?,
    })
}

/// The loop (see the module's description).
pub async fn run(store: Store, console: Arc<Console>) {
    let mut fold = tokio::time::interval(console.options.rollup_interval);
    fold.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clean = tokio::time::interval(console.options.sweep_interval);
    clean.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = fold.tick() => {
                match rollup::catch_up(&store, console.now_ms()).await {
                    Ok(n) if n > 0 => tracing::debug!(folded = n, "console rollup"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "console rollup failed; retrying"),
                }
            }
            _ = clean.tick() => {
                match sweep(&store, &console.options, console.now_ms()).await {
                    Ok(s) if s.total() > 0 => tracing::info!(
                        audit = s.audit, attempts = s.attempts, sessions = s.sessions, bootstrap = s.bootstrap, minutes = s.minutes,
                        "console: deleted entries past retention"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "console: retention sweep failed; will retry"),
                }
            }
        }
    }
}
