//! The batch writer: drains the recorder queue, turns exchanges into rows (reassembly,
//! usage, redaction, fingerprint) on a blocking thread, and writes each batch in one
//! transaction. On shutdown the queue is drained before the writer returns.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Ending, Exchange, RecorderStats, reassemble, redact};
use crate::config::RedactMode;
use crate::metrics::{Metrics, api_label};
use crate::proxy::peek::Peek;
use crate::store::{NewExchange, Store};

pub struct Writer {
    pub store: Store,
    pub redact: RedactMode,
    pub batch: usize,
    pub flush_interval: Duration,
    pub metrics: Arc<Metrics>,
    pub stats: Arc<RecorderStats>,
    /// Once cancelled (shutdown), batches are written without waiting for the flush interval.
    pub hurry: tokio_util::sync::CancellationToken,
}

impl Writer {
    /// Run until the queue is closed and empty.
    ///
    /// The writer is woken once per batch, not once per exchange: after the first exchange of
    /// a batch it sleeps until the flush deadline (unless a whole batch is already waiting)
    /// and then takes what has queued up. While it sleeps it is not registered on the
    /// channel, so the request path's `try_send` wakes no thread.
    pub async fn run(self, mut rx: mpsc::Receiver<Exchange>) {
        let mut buf: Vec<Exchange> = Vec::with_capacity(self.batch);
        loop {
            let Some(first) = rx.recv().await else { break };
            buf.push(first);
            if rx.len() + 1 < self.batch && !self.hurry.is_cancelled() {
                tokio::select! {
                    () = tokio::time::sleep(self.flush_interval) => {}
                    () = self.hurry.cancelled() => {}
                }
            }
            while buf.len() < self.batch {
                match rx.try_recv() {
                    Ok(ex) => buf.push(ex),
                    Err(_) => break,
                }
            }
            self.metrics.recorder_queue_depth.set(rx.len() as i64);
            let batch = std::mem::replace(&mut buf, Vec::with_capacity(self.batch));
            self.write(batch).await;
        }
        self.metrics.recorder_queue_depth.set(0);
        tracing::info!(written = self.stats.written.load(Ordering::Relaxed), "recorder drained");
    }

    async fn write(&self, batch: Vec<Exchange>) {
        let n = batch.len() as u64;
        let mode = self.redact;
        let rows = match tokio::task::spawn_blocking(move || to_rows(batch, mode)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "recorder: preparing a batch failed");
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            match self.store.insert_exchanges(&rows.0, &rows.1).await {
                Ok(()) => {
                    self.stats.written.fetch_add(n, Ordering::Relaxed);
                    self.metrics.recorder_written.inc_by(n);
                    self.metrics.recorder_batch_seconds.observe(started.elapsed().as_secs_f64());
                    return;
                }
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, rows = n, "recorder: writing a batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, rows = n, "recorder: batch lost after retries");
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    self.metrics.recorder_write_errors.inc();
                    return;
                }
            }
        }
    }
}

/// Rows for a batch, plus the client keys the cloud accepted in it.
pub fn to_rows(batch: Vec<Exchange>, mode: RedactMode) -> (Vec<NewExchange>, Vec<(String, i64)>) {
    let mut keys: Vec<(String, i64)> = Vec::new();
    let rows = batch
        .into_iter()
        .map(|ex| {
            if let Some(h) = &ex.client_key_hash
                && (200..300).contains(&ex.status)
                && ex.served_by.starts_with("cloud:")
            {
                match keys.iter_mut().find(|(k, _)| k == h) {
                    Some(e) => e.1 = e.1.max(ex.ts_ms),
                    None => keys.push((h.clone(), ex.ts_ms)),
                }
            }
            to_row(ex, mode)
        })
        .collect();
    (rows, keys)
}

/// The bytes as text, moved when they are valid UTF-8 (they nearly always are: requests
/// were checked on the way in), copied with replacement characters otherwise.
fn utf8_lossy(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

pub fn to_row(ex: Exchange, mode: RedactMode) -> NewExchange {
    let req = ex.request.concat();
    let resp = ex.response.concat();
    let fingerprint =
        Peek::parse(&req).ok().and_then(|p| p.system_prompt()).map(|s| crate::util::hex_lower(&Sha256::digest(s.trim().as_bytes())[..8]));
    let re = if resp.is_empty() { None } else { Some(reassemble::reassemble(ex.api, ex.endpoint, ex.sse, &resp)) };
    // A response counts as completed when it was delivered whole and, for a stream, its
    // terminal event was seen; an error answer is complete but not a success.
    let body_complete = re.as_ref().is_some_and(|r| r.complete) || (resp.is_empty() && ex.status == 204);
    let completed = ex.ending == Ending::Delivered && body_complete && !ex.response.truncated() && ex.attempt.final_attempt;
    let error = match (ex.error, ex.ending) {
        (Some(e), _) => Some(e.to_string()),
        (None, Ending::ClientGone) => Some("client_disconnected".into()),
        (None, Ending::UpstreamBroke) => Some("upstream_stream_broken".into()),
        (None, _) if !body_complete && ex.response.truncated() => None,
        (None, _) if !body_complete => Some("incomplete_response".into()),
        _ => None,
    };
    let request_body = if req.is_empty() { None } else { Some(redact::for_storage(mode, utf8_lossy(req))) };
    let (response_body, prompt_tokens, completion_tokens) = match re {
        Some(r) => (Some(redact::for_storage(mode, r.body)), r.prompt_tokens, r.completion_tokens),
        None => (None, None, None),
    };
    NewExchange {
        ts_ms: ex.ts_ms,
        api: api_label(ex.api),
        endpoint: ex.endpoint,
        use_case: ex.use_case.to_string(),
        served_by: ex.served_by.to_string(),
        model: ex.model,
        status: i64::from(ex.status),
        stream: ex.stream,
        completed,
        error,
        client_key_hash: ex.client_key_hash,
        virtual_key_id: ex.virtual_key_id.map(|v| v.to_string()),
        ttfb_ms: ex.ttfb.map(|d| d.as_secs_f64() * 1e3),
        total_ms: ex.total.as_secs_f64() * 1e3,
        prompt_tokens,
        completion_tokens,
        request_body,
        response_body,
        request_bytes: ex.request.total as i64,
        response_bytes: ex.response.total as i64,
        truncated: ex.request.truncated() || ex.response.truncated(),
        prompt_fingerprint: fingerprint,
        request_id: ex.attempt.request_id.map(|r| r.to_string()),
        attempt: i64::from(ex.attempt.attempt),
        final_attempt: ex.attempt.final_attempt,
        rescue: ex.attempt.rescue.map(str::to_string),
        mode: ex.attempt.mode.map(str::to_string),
    }
}
