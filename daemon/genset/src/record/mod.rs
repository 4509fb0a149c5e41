//! The recording path: the request path hands a cheap copy of each exchange (refcounted
//! body chunks, no copies) to a bounded queue; a batch writer redacts, reassembles and stores
//! it. A full queue drops the record and counts it: the client is never slowed.

pub mod reassemble;
pub mod redact;
pub mod retention;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::api::error::Flavor;
use crate::metrics::Metrics;

/// Body bytes as captured on the request path: shared chunks, up to a cap.
#[derive(Debug, Default, Clone)]
pub struct Capture {
    pub chunks: Vec<Bytes>,
    /// Bytes kept in `chunks`.
    pub kept: usize,
    /// Bytes seen in all (may exceed `kept`).
    pub total: usize,
}

impl Capture {
    pub fn from_bytes(b: Bytes, cap: usize) -> Self {
        let total = b.len();
        let kept = b.len().min(cap);
        Capture { chunks: vec![b.slice(..kept)], kept, total }
    }

    /// Keep a refcounted slice of `chunk`, up to `cap` bytes in all.
    #[inline]
    pub fn push(&mut self, chunk: &Bytes, cap: usize) {
        self.total += chunk.len();
        let room = cap.saturating_sub(self.kept);
        if room == 0 {
            return;
        }
        let take = room.min(chunk.len());
        self.chunks.push(if take == chunk.len() { chunk.clone() } else { chunk.slice(..take) });
        self.kept += take;
    }

    pub fn truncated(&self) -> bool {
        self.total > self.kept
    }

    /// The kept bytes as one buffer (done by the writer, off the request path).
    pub fn concat(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.kept);
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v
    }
}

/// How an exchange ended, as far as the request path could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The whole response was delivered to the client.
    Delivered,
    /// The upstream failed while the body was being streamed.
    UpstreamBroke,
    /// The client went away before the end.
    ClientGone,
    /// genset answered with an error itself (before anything was forwarded).
    Rejected,
}

/// One request/response as seen by the proxy, handed to the recorder.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub ts_ms: i64,
    pub api: Flavor,
    pub endpoint: &'static str,
    pub use_case: Arc<str>,
    pub served_by: Arc<str>,
    pub model: Option<String>,
    pub status: u16,
    pub stream: bool,
    /// The response was a server-sent-event stream.
    pub sse: bool,
    pub request: Capture,
    pub response: Capture,
    pub ending: Ending,
    /// Low-cardinality error label when genset or the upstream failed.
    pub error: Option<&'static str>,
    /// Salted hash of the client's own key (passthrough).
    pub client_key_hash: Option<String>,
    pub virtual_key_id: Option<Arc<str>>,
    pub ttfb: Option<Duration>,
    pub total: Duration,
    /// Where this row sits among the attempts behind one client request.
    pub attempt: AttemptInfo,
}

/// One client request may take several upstream attempts (retries, fallbacks, a
/// continuation): they share `request_id`; only the final one is what the client got.
#[derive(Debug, Clone)]
pub struct AttemptInfo {
    pub request_id: Option<Arc<str>>,
    /// 0 for the first attempt.
    pub attempt: u32,
    pub final_attempt: bool,
    /// `fallback`, `continuation` or `local-policy` when the answer did not come from the first step.
    pub rescue: Option<&'static str>,
    /// The controller's mode when the request arrived.
    pub mode: Option<&'static str>,
}

impl Default for AttemptInfo {
    fn default() -> Self {
        AttemptInfo { request_id: None, attempt: 0, final_attempt: true, rescue: None, mode: None }
    }
}

/// The handle the request path records through. Cloning is cheap.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Exchange>,
    metrics: Arc<Metrics>,
    pub stats: Arc<RecorderStats>,
    capacity: usize,
    body_cap: usize,
}

#[derive(Debug, Default)]
pub struct RecorderStats {
    pub enqueued: AtomicU64,
    pub dropped: AtomicU64,
    pub written: AtomicU64,
    pub write_errors: AtomicU64,
}

impl Recorder {
    pub fn channel(capacity: usize, body_cap: usize, metrics: Arc<Metrics>) -> (Recorder, mpsc::Receiver<Exchange>) {
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(RecorderStats::default());
        (Recorder { tx, metrics, stats, capacity, body_cap }, rx)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Most body bytes kept per direction.
    pub fn body_cap(&self) -> usize {
        self.body_cap
    }

    /// Hand an exchange to the writer without waiting; a full queue drops it (counted).
    pub fn record(&self, ex: Exchange) {
        self.metrics.observe_exchange(&ex);
        match self.tx.try_send(ex) {
            Ok(()) => {
                self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.recorder_dropped.inc();
            }
        }
    }

    /// Exchanges waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_caps_without_copying() {
        let mut c = Capture::default();
        let a = Bytes::from_static(b"hello ");
        let b = Bytes::from_static(b"world!");
        c.push(&a, 8);
        c.push(&b, 8);
        c.push(&b, 8);
        assert_eq!(c.concat(), b"hello wo");
        assert_eq!(c.total, 18);
        assert!(c.truncated());
        assert_eq!(c.chunks[0].as_ptr(), a.as_ptr(), "the first chunk is shared, not copied");
    }
}
