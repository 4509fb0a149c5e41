//! Wall-clock time in milliseconds, with an offset tests can move forward (session timeouts,
//! limiter windows are then tested without sleeping).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now_ms(&self) -> i64 {
        genset::record::now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Move this clock forward (tests).
    pub fn advance(&self, d: Duration) {
        self.offset_ms.fetch_add(d.as_millis() as i64, Ordering::Relaxed);
    }
}
