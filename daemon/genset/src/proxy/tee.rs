//! The response body on its way to the client: each chunk is forwarded as it arrives and a
//! refcounted slice of it is kept for the recorder. When the stream ends, fails, or the
//! client goes away (drop), the exchange is handed to the recorder exactly once.
//!
//! A server-sent-event stream that ends without its terminal event (`data: [DONE]`,
//! `message_stop`, `response.completed`, or an error event) is ended with an error, so the
//! client's connection is cut rather than closed cleanly: a truncated answer is never
//! presented as complete.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use aho_corasick::AhoCorasick;
use bytes::Bytes;
use futures_util::Stream;

use crate::record::{Ending, Exchange, Recorder};

type Inner = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

#[allow(clippy::expect_used)] // constant patterns
static TERMINAL: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::new([
        "\ndata: [DONE]",
        "\"type\":\"message_stop\"",
        "\"type\": \"message_stop\"",
        "\"type\":\"response.completed\"",
        "\"type\":\"response.incomplete\"",
        "\"type\":\"response.failed\"",
        "\nevent: error",
        "\ndata: {\"error\"",
    ])
    .expect("constant patterns")
});
/// Longest pattern above, minus one: bytes carried across chunk boundaries.
const CARRY: usize = 32;

pub struct Tee {
    inner: Inner,
    pending: Option<Box<Exchange>>,
    recorder: Recorder,
    started: Instant,
    cap: usize,
    /// For SSE: the terminal event has not been seen yet; `tail` holds the last bytes seen.
    awaiting_terminal: bool,
    tail: Vec<u8>,
}

impl Tee {
    pub fn new(inner: Inner, ex: Exchange, recorder: Recorder, started: Instant) -> Self {
        let cap = recorder.body_cap();
        let awaiting_terminal = ex.sse;
        // Only a stream is scanned for its terminal event: a whole answer allocates nothing here.
        let tail = if awaiting_terminal {
            let mut t = Vec::with_capacity(CARRY * 2);
            t.push(b'\n');
            t
        } else {
            Vec::new()
        };
        Tee { inner, pending: Some(Box::new(ex)), recorder, started, cap, awaiting_terminal, tail }
    }

    fn finish(&mut self, ending: Ending, error: Option<&'static str>) {
        if let Some(mut ex) = self.pending.take() {
            ex.ending = ending;
            if ex.error.is_none() {
                ex.error = error;
            }
            ex.total = self.started.elapsed();
            self.recorder.record(*ex);
        }
    }

    fn scan(&mut self, chunk: &[u8]) {
        // Search the carried tail joined with the chunk's head, then the chunk itself.
        let head = &chunk[..chunk.len().min(CARRY)];
        self.tail.extend_from_slice(head);
        if TERMINAL.is_match(&self.tail[..]) || TERMINAL.is_match(chunk) {
            self.awaiting_terminal = false;
            return;
        }
        let keep_from = chunk.len().saturating_sub(CARRY);
        self.tail.clear();
        self.tail.extend_from_slice(&chunk[keep_from..]);
    }
}

impl Stream for Tee {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(ex) = this.pending.as_mut() {
                    if ex.ttfb.is_none() {
                        ex.ttfb = Some(this.started.elapsed());
                    }
                    ex.response.push(&chunk, this.cap);
                }
                if this.awaiting_terminal {
                    this.scan(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Ending::UpstreamBroke, Some("upstream_stream_error"));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if this.awaiting_terminal && this.pending.is_some() {
                    this.finish(Ending::UpstreamBroke, Some("stream_incomplete"));
                    return Poll::Ready(Some(Err(std::io::Error::other("upstream ended the event stream without its terminal event"))));
                }
                this.finish(Ending::Delivered, None);
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish(Ending::ClientGone, None);
    }
}
