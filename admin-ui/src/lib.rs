//! genset's admin console: server-rendered pages (askama) on the admin listener.
//!
//! The console is mounted on the core's admin listener through
//! [`genset::daemon::Extensions`] ([`extensions`]): every path except the core's JSON API
//! (`/api/v1/…`), `/metrics` and `/healthz` belongs to it. One middleware
//! ([`guard::console_guard`]) runs in front of every console route and, in this order:
//! adds the security headers, refuses plain HTTP from other hosts, looks the raw path up in
//! the one authorization table ([`authz::RULES`]), loads the session, checks the role, and
//! checks the CSRF token of every POST, before any handler runs.
//!
//! **Architecture Invariant:** no console route changes state on GET.
//! **Architecture Invariant:** a route that is not in [`authz::RULES`] is not served.
//! **Architecture Invariant:** passwords, session tokens and keys are never stored or shown in
//! clear: argon2id for passwords, sha256 for session and bootstrap tokens, last four
//! characters for keys.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod authz;
pub mod bootstrap;
pub mod clock;
pub mod db;
pub mod guard;
pub mod latency;
pub mod limits;
mod pages;
pub mod password;
pub mod rollup;
pub mod session;
pub mod svg;
pub mod text;
pub mod upkeep;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::web;

pub use clock::Clock;

/// Tunables of the console; the defaults are what production runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after login, used or not.
    pub absolute_timeout: Duration,
    /// How long a bootstrap (setup) token is valid.
    pub bootstrap_ttl: Duration,
    /// How often the dashboards' per-minute rollup folds in new exchanges.
    pub rollup_interval: Duration,
    /// How often entries past their retention are deleted (see [`upkeep`]).
    pub sweep_interval: Duration,
    /// `admin.audit_retention`.
    pub audit_retention: Duration,
    /// `admin.login_attempts_retention`.
    pub login_attempts_retention: Duration,
    /// Login limits (see [`limits`]).
    pub limits: limits::LimitConfig,
    /// Argon2id parameters (OWASP: m=19456 KiB, t=2, p=1).
    pub argon2: password::Params,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            bootstrap_ttl: Duration::from_secs(24 * 3600),
            rollup_interval: Duration::from_secs(5),
            sweep_interval: Duration::from_secs(3600),
            audit_retention: Duration::from_secs(365 * 86_400),
            login_attempts_retention: Duration::from_secs(90 * 86_400),
            limits: limits::LimitConfig::default(),
            argon2: password::Params::default(),
        }
    }
}

impl Options {
    /// The defaults with what the configuration sets (`[admin]` retentions).
    pub fn from_config(cfg: &genset::config::Config) -> Options {
        Options {
            audit_retention: cfg.admin.audit_retention,
            login_attempts_retention: cfg.admin.login_attempts_retention,
            ..Options::default()
        }
    }
}

/// The console's own state, shared by every worker of the admin listener.
pub struct Console {
    pub options: Options,
    pub clock: Clock,
    pub limits: limits::Limits,
    /// The store URL, for the start-up task (first-admin notice, rollup) that runs before any
    /// request arrives.
    store_url: Option<String>,
    started: AtomicBool,
    /// Set once the login limits hold what the store remembers (see [`Console::ready_limits`]).
    limits_seeded: tokio::sync::OnceCell<()>,
    /// Ends the background upkeep task ([`Console::stop`]).
    stop: tokio_util::sync::CancellationToken,
}

impl Console {
    /// `store_url`: where the start-up task (first-admin notice, rollup) opens its own small
    /// pool; `None` runs neither (tests that drive them by hand).
    pub fn new(options: Options, clock: Clock, store_url: Option<String>) -> Arc<Console> {
        let limits = limits::Limits::new(&options.limits);
        Arc::new(Console {
            options,
            clock,
            limits,
            store_url,
            started: AtomicBool::new(false),
            limits_seeded: tokio::sync::OnceCell::new(),
            stop: tokio_util::sync::CancellationToken::new(),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Before the first sign-in check after a start: take from the login limits what the
    /// failed attempts in the store still hold (the limiters live in memory; without this a
    /// restart would hand every address a fresh budget). Runs once; a store error fails the
    /// sign-in and is retried by the next one.
    pub async fn ready_limits(&self, store: &genset::store::Store) -> Result<(), genset::store::StoreError> {
        self.limits_seeded
            .get_or_try_init(|| async {
                let now = self.now_ms();
                let since = now - self.limits.memory().as_millis() as i64;
                let rows = db::failed_attempts_since(store, since, 100_000).await?;
                let failures: Vec<limits::PastFailure> =
                    rows.into_iter().map(|r| limits::PastFailure { ts_ms: r.ts_ms, account: r.username, address: r.address }).collect();
                self.limits.seed(&failures, now);
                if !failures.is_empty() {
                    tracing::info!(failures = failures.len(), "console: login limits seeded from recent failed sign-ins");
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// End the background upkeep task (it also ends with the admin listener's runtime).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// The console for `gensetd`: pass to [`genset::daemon::serve_with`] /
/// [`genset::daemon::start_with`]. At start it opens a small pool of its own on
/// `cfg.store.url` to log a notice while no admin exists (how to get a setup link, never the
/// link) and to run the dashboards' rollup.
pub fn extensions(cfg: &genset::config::Config) -> genset::daemon::Extensions {
    extensions_with(cfg, Options::from_config(cfg), Clock::system())
}

/// [`extensions`] with explicit options and clock (tests).
pub fn extensions_with(cfg: &genset::config::Config, options: Options, clock: Clock) -> genset::daemon::Extensions {
    extensions_for(Console::new(options, clock, Some(cfg.store.url.clone())))
}

/// The extensions for an already built [`Console`] (tests keep the `Arc` to move its clock).
// Field by field, so fields the core adds to `Extensions` later keep their defaults.
#[allow(clippy::field_reassign_with_default)]
pub fn extensions_for(console: Arc<Console>) -> genset::daemon::Extensions {
    let mut ext = genset::daemon::Extensions::default();
    ext.admin_routes = Some(Arc::new(move |c: &mut web::ServiceConfig| {
        start_background(&console);
        configure(c, console.clone());
    }));
    ext
}

/// Register the console's routes (called once per admin worker).
pub fn configure(cfg: &mut web::ServiceConfig, console: Arc<Console>) {
    pages::configure(cfg, console);
}

/// The start-up task: once per console, on the first worker's runtime: the bootstrap
/// announcement, then [`upkeep::run`] until [`Console::stop`] or the runtime ends. A panic in
/// the upkeep is logged and the upkeep restarted (after a pause), never silently lost.
fn start_background(console: &Arc<Console>) {
    let Some(url) = console.store_url.clone() else { return };
    if console.started.swap(true, Ordering::SeqCst) {
        return;
    }
    let console = console.clone();
    // The admin worker's runtime: the task ends with the listener. Everything it does is
    // one statement at a time (see `upkeep`), so ending it anywhere loses nothing.
    tokio::spawn(async move {
        let store = match genset::store::Store::open(&url, 2).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "console: cannot open the store; no bootstrap token, no rollup, no retention");
                return;
            }
        };
        if let Err(e) = bootstrap::announce_at_start(&store).await {
            tracing::error!(error = %e, "console: bootstrap check failed");
        }
        let stop = console.stop.clone();
        loop {
            let task = tokio::spawn(upkeep::run(store.clone(), console.clone()));
            let abort = task.abort_handle();
            tokio::select! {
                _ = stop.cancelled() => {
                    abort.abort();
                    return;
                }
                r = task => match r {
                    Err(e) if e.is_panic() => tracing::error!("console: the upkeep task panicked; restarting it in 30 s"),
                    _ => return,
                },
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    });
}
