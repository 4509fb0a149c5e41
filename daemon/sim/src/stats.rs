//! Hit counters and the last request, for assertions in tests.
//!
//! Counting is lock-free on the hot path (atomics indexed by route and by
//! status); the last request keeps refcounted clones of its headers and
//! body and is only rendered to JSON when asked for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Method};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::route::Route;

/// A snapshot of the counters, as served by `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// API requests received (control requests under `/_sim/` excluded).
    pub total_requests: u64,
    /// API requests per path.
    pub by_path: BTreeMap<String, u64>,
    /// Responses per HTTP status (requests answered by `reset`, or still
    /// hanging, have none).
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that a fault was applied to.
    pub faults_served: u64,
    /// API requests being handled right now (hanging ones included).
    pub in_flight: i64,
    /// Open client connections on the API port.
    pub open_connections: i64,
    /// The last API request.
    pub last_request: Option<RecordedRequest>,
}

impl SimStats {
    /// Hits on one path.
    pub fn path(&self, path: &str) -> u64 {
        self.by_path.get(path).copied().unwrap_or(0)
    }
    /// Responses with one status.
    pub fn status(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
}

/// A request as received, headers (auth values included) and body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub body: serde_json::Value,
}

struct Last {
    method: Method,
    path: Box<str>,
    headers: HeaderMap,
    body: Bytes,
}

pub(crate) struct Stats {
    total: AtomicU64,
    by_route: [AtomicU64; Route::COUNT],
    other_paths: Mutex<BTreeMap<String, u64>>,
    by_status: Box<[AtomicU64]>,
    faults_served: AtomicU64,
    in_flight: AtomicI64,
    open_connections: AtomicI64,
    last: Mutex<Option<Last>>,
}

const STATUS_SLOTS: usize = 600;

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            total: AtomicU64::new(0),
            by_route: std::array::from_fn(|_| AtomicU64::new(0)),
            other_paths: Mutex::new(BTreeMap::new()),
            by_status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            faults_served: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            open_connections: AtomicI64::new(0),
            last: Mutex::new(None),
        }
    }

    pub(crate) fn record_request(&self, route: Option<Route>, method: &Method, path: &str, headers: &HeaderMap, body: &Bytes) {
        self.total.fetch_add(1, Ordering::Relaxed);
        match route {
            Some(r) => {
                self.by_route[r as usize].fetch_add(1, Ordering::Relaxed);
            }
            None => *self.other_paths.lock().entry(path.to_owned()).or_insert(0) += 1,
        }
        let last = Last { method: method.clone(), path: path.into(), headers: headers.clone(), body: body.clone() };
        // Drop the previous one outside the lock.
        let _previous = self.last.lock().replace(last);
    }

    pub(crate) fn record_status(&self, status: u16) {
        if let Some(slot) = self.by_status.get(usize::from(status)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_fault(&self) {
        self.faults_served.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> Gauge<'_> {
        Gauge::new(&self.in_flight)
    }

    pub(crate) fn connection(&self) -> Gauge<'_> {
        Gauge::new(&self.open_connections)
    }

    pub(crate) fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.by_route.iter().for_each(|c| c.store(0, Ordering::Relaxed));
        self.other_paths.lock().clear();
        self.by_status.iter().for_each(|c| c.store(0, Ordering::Relaxed));
        self.faults_served.store(0, Ordering::Relaxed);
        *self.last.lock() = None;
    }

    pub(crate) fn snapshot(&self) -> SimStats {
        let mut by_path: BTreeMap<String, u64> = self.other_paths.lock().clone();
        for r in Route::ALL {
            let n = self.by_route[r as usize].load(Ordering::Relaxed);
            if n > 0 {
                *by_path.entry(r.stats_key().to_owned()).or_insert(0) += n;
            }
        }
        let by_status = self
            .by_status
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then_some((code as u16, n))
            })
            .collect();
        let last_request = self.last.lock().as_ref().map(|l| RecordedRequest {
            method: l.method.to_string(),
            path: l.path.to_string(),
            headers: headers_map(&l.headers),
            body: serde_json::from_slice(&l.body)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&l.body).into_owned())),
        });
        SimStats {
            total_requests: self.total.load(Ordering::Relaxed),
            by_path,
            by_status,
            faults_served: self.faults_served.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            open_connections: self.open_connections.load(Ordering::Relaxed),
            last_request,
        }
    }
}

fn headers_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

/// Increments a gauge now, decrements it when dropped (also when the
/// request future is dropped because the client went away).
pub(crate) struct Gauge<'a>(&'a AtomicI64);

impl<'a> Gauge<'a> {
    fn new(g: &'a AtomicI64) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        Self(g)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
