//! Routing a request through its fallback chain: [`plan`] decides the ordered steps from the
//! mode, the use case's policies and the upstreams' health; [`exec`] walks them (bounded
//! retries, jittered backoff, `Retry-After`, first-byte and idle timeouts), rescuing a
//! request silently before its first byte and by continuation after it ([`stream`]).
//!
//! **Architecture Invariant:** a client never receives a truncated answer presented as
//! complete: a stream that cannot be continued ends with an in-band error event in the
//! client's API format and without its terminal event.

pub mod exec;
pub mod plan;
pub mod stream;
