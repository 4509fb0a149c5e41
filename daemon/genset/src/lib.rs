//! genset: standby power for an organization's AI.
//!
//! The daemon's core as a library that tests drive directly. See `docs/ARCHITECTURE.md`
//! for the bird's-eye view; in request order the modules are:
//! [`proxy`] (inbound API, forwarding) → [`classify`] (use cases) → [`record`] (recorder
//! queue, batch writer, redaction) → [`store`] (SQLite / PostgreSQL). Beside them:
//! [`config`], [`auth`] (client and virtual keys), [`admin`] (JSON API, metrics),
//! [`daemon`] (startup, signals, shutdown) and [`ctl`] (the gensetctl client).

pub mod admin;
pub mod api;
pub mod auth;
pub mod classify;
pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod drill;
pub mod evaluate;
pub mod local;
pub mod local_route;
pub mod metrics;
pub mod provision;
pub mod proxy;
pub mod record;
pub mod route;
pub mod store;
pub mod telemetry;
pub mod util;

/// Install the process-wide rustls crypto provider (ring). Call first thing in every binary
/// and test; repeated calls are harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
