//! The failover part of the configuration: chains, per-use-case policies, `[failover]`.

use std::num::NonZeroU32;
use std::time::Duration;

use super::{ConfigError, duration, raw};

/// One step of a fallback chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStep {
    /// Index into `Config::upstreams`.
    Upstream(usize),
    /// A local model by name (`local:<name>` in the file).
    Local(String),
}

/// What a use case does when the cloud is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCutoff {
    /// Serve from its local model when readiness allows, else reject.
    ServeLocal,
    /// A clear 503 explaining the outage.
    Reject,
    /// Wait (bounded) for the cloud to come back.
    Queue,
}

impl OnCutoff {
    pub fn as_str(self) -> &'static str {
        match self {
            OnCutoff::ServeLocal => "serve-local",
            OnCutoff::Reject => "reject",
            OnCutoff::Queue => "queue",
        }
    }
}

/// Where a use case's traffic goes in normal times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingPolicy {
    CloudFirst,
    /// Proven use cases served locally on purpose; the cloud as fallback.
    LocalFirst,
    /// Data that must not leave the building.
    LocalOnly,
}

impl RoutingPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingPolicy::CloudFirst => "cloud-first",
            RoutingPolicy::LocalFirst => "local-first",
            RoutingPolicy::LocalOnly => "local-only",
        }
    }
}

/// A rate: `n` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub n: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    pub fn parse(path: &str, s: &str) -> Result<Rate, ConfigError> {
        let bad = || ConfigError::new(path, format!("not a rate: {s:?} (expected e.g. \"120/min\", \"10/s\", \"5000/h\")"));
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let n = NonZeroU32::new(n).ok_or_else(|| ConfigError::new(path, "a rate must allow at least 1 request"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { n, per })
    }

    pub fn quota(&self) -> governor::Quota {
        let per_cell = self.per / self.n.get();
        governor::Quota::with_period(per_cell.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| governor::Quota::per_second(self.n))
            .allow_burst(self.n)
    }
}

/// `[failover]`, validated.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub max_retry_wait: Duration,
    pub breaker: BreakerConfig,
    pub probe_interval: Duration,
    pub probe_interval_failing: Duration,
    pub probe_timeout: Duration,
    pub queue_timeout: Duration,
    pub local_rate_per_key: Option<Rate>,
}

/// The circuit breaker's and the mode's thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub consecutive_cutoffs: u32,
    pub failure_rate: f64,
    pub min_volume: u32,
    pub window: Duration,
    pub open_base: Duration,
    pub open_max: Duration,
    pub half_open_successes: u32,
    pub recovery_hold: Duration,
    pub min_dwell: Duration,
    pub distinct_key_rejections: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        // The defaults of the file, for tests of the state machine.
        validate(raw::RawFailover::default()).map(|f| f.breaker).unwrap_or(BreakerConfig {
            consecutive_cutoffs: 3,
            failure_rate: 0.5,
            min_volume: 10,
            window: Duration::from_secs(30),
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(300),
            half_open_successes: 2,
            recovery_hold: Duration::from_secs(30),
            min_dwell: Duration::from_secs(60),
            distinct_key_rejections: 2,
        })
    }
}

pub fn validate(r: raw::RawFailover) -> Result<FailoverConfig, ConfigError> {
    let p = |k: &str| format!("failover.{k}");
    let d = |k: &str, v: &str| duration(&p(k), v);
    if r.max_attempts == 0 || r.max_attempts > 10 {
        return Err(ConfigError::new(p("max_attempts"), "must be between 1 and 10"));
    }
    if !(r.failure_rate > 0.0 && r.failure_rate <= 1.0) {
        return Err(ConfigError::new(p("failure_rate"), "must be in (0, 1]"));
    }
    if r.consecutive_cutoffs == 0 {
        return Err(ConfigError::new(p("consecutive_cutoffs"), "must be at least 1"));
    }
    if r.half_open_successes == 0 {
        return Err(ConfigError::new(p("half_open_successes"), "must be at least 1"));
    }
    let breaker = BreakerConfig {
        consecutive_cutoffs: r.consecutive_cutoffs,
        failure_rate: r.failure_rate,
        min_volume: r.min_volume.max(1),
        window: d("window", &r.window)?,
        open_base: d("open_base", &r.open_base)?,
        open_max: d("open_max", &r.open_max)?,
        half_open_successes: r.half_open_successes,
        recovery_hold: d("recovery_hold", &r.recovery_hold)?,
        min_dwell: d("min_dwell", &r.min_dwell)?,
        distinct_key_rejections: r.distinct_key_rejections.max(1),
    };
    if breaker.open_max < breaker.open_base {
        return Err(ConfigError::new(p("open_max"), "must be at least failover.open_base"));
    }
    let probe_interval = d("probe_interval", &r.probe_interval)?;
    let probe_interval_failing = d("probe_interval_failing", &r.probe_interval_failing)?;
    for (k, v) in [("probe_interval", probe_interval), ("probe_interval_failing", probe_interval_failing)] {
        if v < Duration::from_millis(50) {
            return Err(ConfigError::new(p(k), "must be at least 50ms"));
        }
    }
    Ok(FailoverConfig {
        max_attempts: r.max_attempts,
        retry_backoff: d("retry_backoff", &r.retry_backoff)?,
        max_retry_wait: d("max_retry_wait", &r.max_retry_wait)?,
        breaker,
        probe_interval,
        probe_interval_failing,
        probe_timeout: d("probe_timeout", &r.probe_timeout)?,
        queue_timeout: d("queue_timeout", &r.queue_timeout)?,
        local_rate_per_key: r.local_rate_per_key.as_deref().map(|s| Rate::parse(&p("local_rate_per_key"), s)).transpose()?,
    })
}

pub fn on_cutoff(path: &str, s: Option<&str>) -> Result<OnCutoff, ConfigError> {
    Ok(match s.unwrap_or("serve-local") {
        "serve-local" => OnCutoff::ServeLocal,
        "reject" => OnCutoff::Reject,
        "queue" => OnCutoff::Queue,
        o => return Err(ConfigError::new(path, format!("unknown policy {o:?}: expected serve-local, reject or queue"))),
    })
}

pub fn routing_policy(path: &str, s: Option<&str>) -> Result<RoutingPolicy, ConfigError> {
    Ok(match s.unwrap_or("cloud-first") {
        "cloud-first" => RoutingPolicy::CloudFirst,
        "local-first" => RoutingPolicy::LocalFirst,
        "local-only" => RoutingPolicy::LocalOnly,
        o => return Err(ConfigError::new(path, format!("unknown policy {o:?}: expected cloud-first, local-first or local-only"))),
    })
}

/// Resolve chain entries against the upstreams and the local models.
pub fn chain(
    path: &str,
    entries: &[String],
    upstream_index: &dyn Fn(&str) -> Option<usize>,
    models: &[super::ModelConfig],
) -> Result<Vec<ChainStep>, ConfigError> {
    let mut out = Vec::with_capacity(entries.len());
    for (j, e) in entries.iter().enumerate() {
        let ep = format!("{path}[{j}]");
        let step = if let Some(m) = e.strip_prefix("local:") {
            if !models.iter().any(|x| x.name == m) {
                return Err(ConfigError::new(ep, format!("no local model named {m:?} ([[models]])")));
            }
            ChainStep::Local(m.to_string())
        } else {
            ChainStep::Upstream(
                upstream_index(e).ok_or_else(|| ConfigError::new(&ep, format!("no upstream named {e:?} (or write local:<model>)")))?,
            )
        };
        if out.contains(&step) {
            return Err(ConfigError::new(ep, format!("{e:?} appears twice in the chain")));
        }
        out.push(step);
    }
    Ok(out)
}
