//! Retention: exchanges older than `recording.retention` are deleted in small batches, so
//! the store never holds a long lock while traffic is being recorded.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::store::Store;

/// Delete everything past retention now; returns how many rows went.
pub async fn sweep(store: &Store, retention: Duration, metrics: &Metrics) -> Result<u64, crate::store::StoreError> {
    let cutoff = super::now_ms() - retention.as_millis() as i64;
    let mut total = 0u64;
    loop {
        let n = store.delete_exchanges_before(cutoff, 5000).await?;
        total += n;
        metrics.retention_deleted.inc_by(n);
        if n < 5000 {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}

/// Sweep at start and then every `every` until cancelled.
pub async fn run(store: Store, retention: Duration, every: Duration, metrics: Arc<Metrics>, cancel: tokio_util::sync::CancellationToken) {
    loop {
        match sweep(&store, retention, &metrics).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention: deleted exchanges past {}", humantime::format_duration(retention)),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; will retry"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
