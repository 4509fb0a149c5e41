//! State shared by the listeners, the request handlers, the control
//! endpoints and the in-process handle.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderMap;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::error::{ApiError, mask_key};
use crate::fault::{Fault, FaultMode, FaultSlot};
use crate::route::Flavor;
use crate::stats::Stats;

/// What the API listener is doing, reported by its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenerState {
    Listening,
    Closed,
    /// Rebinding after `refuse` failed (someone else took the port); the
    /// listener keeps retrying.
    BindFailed(String),
}

pub(crate) struct Shared {
    pub(crate) api_addr: SocketAddr,
    pub(crate) control_addr: Option<SocketAddr>,
    /// `None`: any non-empty key is accepted.
    keys: Option<HashSet<String>>,
    revoked: RwLock<HashSet<String>>,
    any_revoked: AtomicBool,
    token_delay_ms: AtomicU64,
    /// Identifiers and `created` times derived from the request (`POST /_sim/config`).
    stable_ids: AtomicBool,
    pub(crate) faults: FaultSlot,
    pub(crate) stats: Stats,
    pub(crate) listener: watch::Sender<ListenerState>,
    /// Bumped when open API connections must be dropped (`refuse`).
    pub(crate) drop_connections: watch::Sender<u64>,
}

/// How long `set_fault` waits for the listener to close or reopen.
const LISTENER_WAIT: Duration = Duration::from_secs(5);

impl Shared {
    pub(crate) fn new(api_addr: SocketAddr, control_addr: Option<SocketAddr>, keys: Option<Vec<String>>, token_delay: Duration) -> Self {
        Self {
            api_addr,
            control_addr,
            keys: keys.map(|k| k.into_iter().filter(|k| !k.is_empty()).collect()),
            revoked: RwLock::new(HashSet::new()),
            any_revoked: AtomicBool::new(false),
            token_delay_ms: AtomicU64::new(token_delay.as_millis().try_into().unwrap_or(u64::MAX)),
            stable_ids: AtomicBool::new(false),
            faults: FaultSlot::new(),
            stats: Stats::new(),
            listener: watch::Sender::new(ListenerState::Listening),
            drop_connections: watch::Sender::new(0),
        }
    }

    pub(crate) fn token_delay(&self) -> Duration {
        Duration::from_millis(self.token_delay_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn set_token_delay(&self, d: Duration) {
        self.token_delay_ms.store(d.as_millis().try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn stable_ids(&self) -> bool {
        self.stable_ids.load(Ordering::Relaxed)
    }

    pub(crate) fn set_stable_ids(&self, on: bool) {
        self.stable_ids.store(on, Ordering::Relaxed);
    }

    pub(crate) fn revoke(&self, key: &str) {
        self.revoked.write().insert(key.to_owned());
        self.any_revoked.store(true, Ordering::Release);
    }

    /// Sets or clears the fault and, when that opens or closes the API
    /// listener, waits until it has.
    pub(crate) async fn set_fault(&self, fault: Option<Fault>) -> anyhow::Result<()> {
        if let Some(f) = &fault {
            f.validate().map_err(anyhow::Error::msg)?;
        }
        let refuse = fault.as_ref().is_some_and(|f| f.mode == FaultMode::Refuse);
        match &fault {
            Some(f) => {
                tracing::info!(mode = %f.mode, count = ?f.count, path = ?f.path, "fault set")
            }
            None => tracing::info!("fault cleared"),
        }
        self.faults.set(fault);
        self.wait_listener(!refuse).await
    }

    pub(crate) async fn wait_listener(&self, listening: bool) -> anyhow::Result<()> {
        let mut rx = self.listener.subscribe();
        let wait = rx.wait_for(|s| match s {
            ListenerState::Listening => listening,
            ListenerState::Closed => !listening,
            ListenerState::BindFailed(_) => false,
        });
        match tokio::time::timeout(LISTENER_WAIT, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("the simulator has stopped"),
            Err(_) => match &*self.listener.borrow() {
                ListenerState::BindFailed(e) => {
                    anyhow::bail!("could not listen on {} again: {e}", self.api_addr)
                }
                other => anyhow::bail!("the API listener did not settle (state {other:?})"),
            },
        }
    }

    pub(crate) async fn reset(&self) -> anyhow::Result<()> {
        self.revoked.write().clear();
        self.any_revoked.store(false, Ordering::Release);
        self.set_stable_ids(false);
        self.stats.reset();
        self.set_fault(None).await
    }

    /// Checks the request's key: OpenAI routes read `Authorization: Bearer`,
    /// Anthropic routes read `x-api-key` (or Bearer).
    pub(crate) fn authorize(&self, flavor: Flavor, headers: &HeaderMap) -> Result<(), ApiError> {
        let bearer = || {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
        };
        let key = match flavor {
            Flavor::OpenAi => bearer(),
            Flavor::Anthropic => {
                headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty()).or_else(bearer)
            }
        };
        let key = match key {
            Some(k) if !k.is_empty() => k,
            _ => return Err(ApiError::MissingKey),
        };
        let known = self.keys.as_ref().is_none_or(|keys| keys.contains(key));
        let revoked = self.any_revoked.load(Ordering::Acquire) && self.revoked.read().contains(key);
        if known && !revoked { Ok(()) } else { Err(ApiError::InvalidKey { masked: mask_key(key) }) }
    }
}
