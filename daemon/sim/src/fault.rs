//! Faults: what can go wrong, and the slot that holds the active one.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A failure the simulator can inject. Error bodies always use the format of
/// the API whose route was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultMode {
    /// 500 `server_error` / `api_error`.
    #[serde(rename = "http_500")]
    Http500,
    /// 502, bad gateway.
    #[serde(rename = "http_502")]
    Http502,
    /// 503, with `Retry-After` when `retry_after` is set.
    #[serde(rename = "http_503")]
    Http503,
    /// 529 `overloaded_error` (Anthropic's overload status).
    #[serde(rename = "http_529")]
    Http529,
    /// 429 with `Retry-After` (default 1 s): `rate_limit_exceeded` / `rate_limit_error`.
    #[serde(rename = "rate_limit")]
    RateLimit,
    /// Out of credit: OpenAI 429 `insufficient_quota`; Anthropic 400
    /// "Your credit balance is too low…".
    #[serde(rename = "quota")]
    Quota,
    /// 401 for every key.
    #[serde(rename = "unauthorized")]
    Unauthorized,
    /// 403 `permission_error`.
    #[serde(rename = "forbidden")]
    Forbidden,
    /// The listening socket is closed (connections are refused) and open
    /// connections are dropped until the fault is cleared, or for `delay_ms`.
    #[serde(rename = "refuse")]
    Refuse,
    /// The request is read, then the connection is reset without a response.
    #[serde(rename = "reset")]
    Reset,
    /// The request is read and never answered, until the fault is cleared
    /// (then it is answered normally) or the client goes away.
    #[serde(rename = "hang")]
    Hang,
    /// Wait `delay_ms` (default 1000) before sending anything.
    #[serde(rename = "slow_first_token")]
    SlowFirstToken,
    /// Send `after_chunks` chunks (default 2), then stall for `delay_ms`
    /// (default: until cleared), then go on normally.
    #[serde(rename = "stall_mid_stream")]
    StallMidStream,
    /// Send `after_chunks` chunks (default 2), then abort the connection.
    #[serde(rename = "cut_mid_stream")]
    CutMidStream,
    /// Send an invalid JSON `data:` event after `after_chunks` chunks, then go on.
    #[serde(rename = "malformed_chunk")]
    MalformedChunk,
    /// End the stream cleanly without `[DONE]` / `message_stop` /
    /// `response.completed`. Streaming requests only.
    #[serde(rename = "missing_done")]
    MissingDone,
    /// 400 `context_length_exceeded` / "prompt is too long".
    #[serde(rename = "context_length")]
    ContextLength,
    /// 400 `content_policy_violation` / content filtering.
    #[serde(rename = "content_policy")]
    ContentPolicy,
    /// 400 for requests whose last message is an assistant prefill. Other
    /// requests pass and do not use up `count`.
    #[serde(rename = "reject_prefill")]
    RejectPrefill,
}

impl FaultMode {
    pub const ALL: [FaultMode; 19] = [
        FaultMode::Http500,
        FaultMode::Http502,
        FaultMode::Http503,
        FaultMode::Http529,
        FaultMode::RateLimit,
        FaultMode::Quota,
        FaultMode::Unauthorized,
        FaultMode::Forbidden,
        FaultMode::Refuse,
        FaultMode::Reset,
        FaultMode::Hang,
        FaultMode::SlowFirstToken,
        FaultMode::StallMidStream,
        FaultMode::CutMidStream,
        FaultMode::MalformedChunk,
        FaultMode::MissingDone,
        FaultMode::ContextLength,
        FaultMode::ContentPolicy,
        FaultMode::RejectPrefill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultMode::Http500 => "http_500",
            FaultMode::Http502 => "http_502",
            FaultMode::Http503 => "http_503",
            FaultMode::Http529 => "http_529",
            FaultMode::RateLimit => "rate_limit",
            FaultMode::Quota => "quota",
            FaultMode::Unauthorized => "unauthorized",
            FaultMode::Forbidden => "forbidden",
            FaultMode::Refuse => "refuse",
            FaultMode::Reset => "reset",
            FaultMode::Hang => "hang",
            FaultMode::SlowFirstToken => "slow_first_token",
            FaultMode::StallMidStream => "stall_mid_stream",
            FaultMode::CutMidStream => "cut_mid_stream",
            FaultMode::MalformedChunk => "malformed_chunk",
            FaultMode::MissingDone => "missing_done",
            FaultMode::ContextLength => "context_length",
            FaultMode::ContentPolicy => "content_policy",
            FaultMode::RejectPrefill => "reject_prefill",
        }
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = FaultMode::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown fault mode `{s}`; expected one of: {}", names.join(", "))
        })
    }
}

/// A fault to inject, as set through `POST /_sim/fault` or
/// [`SimHandle::set_fault`](crate::SimHandle::set_fault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub mode: FaultMode,
    /// Applies to the next `count` matching API requests, then clears
    /// itself; absent: every request until cleared. Not used by `refuse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `slow_first_token`: the wait (default 1000 ms); `stall_mid_stream`:
    /// the stall (default: until cleared); `refuse`: how long to refuse
    /// before recovering by itself (default: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Stream faults: how many content chunks go out first (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_chunks: Option<u32>,
    /// Seconds for the `Retry-After` header (`rate_limit` defaults to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Restrict the fault to one route, e.g. `/v1/messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Fault {
    pub fn new(mode: FaultMode) -> Self {
        Self { mode, count: None, delay_ms: None, after_chunks: None, retry_after: None, path: None }
    }
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay_ms = Some(d.as_millis().try_into().unwrap_or(u64::MAX));
        self
    }
    pub fn after_chunks(mut self, n: u32) -> Self {
        self.after_chunks = Some(n);
        self
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.count == Some(0) {
            return Err("`count` must be at least 1 (omit it for every request)".into());
        }
        if let Some(p) = &self.path
            && !p.starts_with('/')
        {
            return Err(format!("`path` must start with `/`, got `{p}`"));
        }
        Ok(())
    }
}

impl From<FaultMode> for Fault {
    fn from(mode: FaultMode) -> Self {
        Fault::new(mode)
    }
}

/// What a request looks like, as far as fault matching cares.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    pub(crate) stream: bool,
    pub(crate) prefill: bool,
}

/// A fault taken by one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken {
    pub(crate) mode: FaultMode,
    pub(crate) delay: Option<Duration>,
    pub(crate) after_chunks: u32,
    pub(crate) retry_after: Option<u64>,
    /// The slot's generation when the fault was taken; hung requests wait
    /// for it to move on.
    pub(crate) generation: u64,
}

#[derive(Debug)]
struct Armed {
    fault: Fault,
    remaining: Option<u64>,
}

/// The active fault. Requests check an atomic flag first, so the slot costs
/// nothing while no fault is set.
pub(crate) struct FaultSlot {
    armed: AtomicBool,
    inner: Mutex<Option<Armed>>,
    /// Bumped by every explicit set/clear/reset; hung requests and
    /// open-ended stalls wait for it to move.
    release: watch::Sender<u64>,
    /// Whether the API listener should be closed, and until when.
    refuse: watch::Sender<Option<RefuseState>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefuseState {
    pub(crate) generation: u64,
    pub(crate) until: Option<tokio::time::Instant>,
}

impl FaultSlot {
    pub(crate) fn new() -> Self {
        Self { armed: AtomicBool::new(false), inner: Mutex::new(None), release: watch::Sender::new(0), refuse: watch::Sender::new(None) }
    }

    pub(crate) fn current(&self) -> Option<Fault> {
        self.inner.lock().as_ref().map(|a| {
            let mut f = a.fault.clone();
            if f.count.is_some() {
                f.count = a.remaining;
            }
            f
        })
    }

    /// Sets (or with `None` clears) the fault; returns the new generation.
    pub(crate) fn set(&self, fault: Option<Fault>) -> u64 {
        let mut inner = self.inner.lock();
        let refuse = fault.as_ref().is_some_and(|f| f.mode == FaultMode::Refuse);
        let until = fault.as_ref().and_then(|f| f.delay_ms).map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        *inner = fault.map(|fault| Armed { remaining: fault.count, fault });
        self.armed.store(inner.is_some(), Ordering::Release);
        let mut generation = 0;
        self.release.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        self.refuse.send_replace(refuse.then_some(RefuseState { generation, until }));
        generation
    }

    /// Clears a temporary `refuse` whose time is up, unless the fault was
    /// changed since.
    pub(crate) fn expire_refuse(&self, generation: u64) {
        if *self.release.borrow() == generation {
            self.set(None);
        }
    }

    /// The fault for this request, if one is active and matches; uses up one
    /// of its `count`.
    pub(crate) fn take(&self, path: &str, shape: Shape) -> Option<Taken> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let mut inner = self.inner.lock();
        let armed = inner.as_mut()?;
        let f = &armed.fault;
        if f.path.as_deref().is_some_and(|p| p != path) {
            return None;
        }
        let applies = match f.mode {
            FaultMode::Refuse => false,
            FaultMode::MissingDone => shape.stream,
            FaultMode::RejectPrefill => shape.prefill,
            _ => true,
        };
        if !applies {
            return None;
        }
        let taken = Taken {
            mode: f.mode,
            delay: f.delay_ms.map(Duration::from_millis),
            after_chunks: f.after_chunks.unwrap_or(2),
            retry_after: f.retry_after,
            generation: *self.release.borrow(),
        };
        if let Some(n) = &mut armed.remaining {
            *n = n.saturating_sub(1);
            if *n == 0 {
                *inner = None;
                self.armed.store(false, Ordering::Release);
            }
        }
        Some(taken)
    }

    pub(crate) fn release_rx(&self) -> watch::Receiver<u64> {
        self.release.subscribe()
    }

    pub(crate) fn refuse_rx(&self) -> watch::Receiver<Option<RefuseState>> {
        self.refuse.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn modes_round_trip() {
        for m in FaultMode::ALL {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
            assert_eq!(m.as_str().parse::<FaultMode>().unwrap(), m);
        }
        let f: Fault = serde_json::from_str(r#"{"mode":"http_503","count":2,"retry_after":7}"#).unwrap();
        assert_eq!(f, Fault::new(FaultMode::Http503).count(2).retry_after(7));
        assert!(serde_json::from_str::<Fault>(r#"{"mode":"http_503","cnt":2}"#).is_err());
    }

    #[test]
    fn count_path_and_shape() {
        let slot = FaultSlot::new();
        slot.set(Some(Fault::new(FaultMode::Http500).count(2).path("/v1/messages")));
        let s = Shape::default();
        assert!(slot.take("/v1/chat/completions", s).is_none());
        assert!(slot.take("/v1/messages", s).is_some());
        assert_eq!(slot.current().unwrap().count, Some(1));
        assert!(slot.take("/v1/messages", s).is_some());
        assert!(slot.take("/v1/messages", s).is_none());
        assert!(slot.current().is_none());

        slot.set(Some(Fault::new(FaultMode::RejectPrefill).count(1)));
        assert!(slot.take("/v1/messages", s).is_none());
        assert!(slot.take("/v1/messages", Shape { prefill: true, stream: false }).is_some());
        assert!(slot.current().is_none());
    }
}
