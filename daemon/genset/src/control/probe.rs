//! Active health: a token-free GET (`probe_path`, default `/v1/models`) per upstream, slow
//! while healthy and fast while failing, plus the clock that moves breakers from open to
//! half-open and lowers the failover flag.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Controller, Health, Outcome, ProbeResult, Source};
use crate::api::error::Flavor;
use crate::record::now_ms;

const TICK: Duration = Duration::from_millis(50);

pub(super) async fn run(c: Arc<Controller>, cancel: CancellationToken) {
    let mut probes = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
        while probes.try_join_next().is_some() {}
        c.tick();
        let cfg = c.config();
        let now = now_ms() as u64;
        for h in c.healths().iter() {
            if now < h.next_probe_ms.load(Ordering::Relaxed) || h.probing.swap(true, Ordering::AcqRel) {
                continue;
            }
            let failing = h.breaker.lock().failing();
            let interval = if failing { cfg.probe_interval_failing } else { cfg.probe_interval };
            h.next_probe_ms.store(now + interval.as_millis() as u64, Ordering::Relaxed);
            let (c, h, timeout) = (c.clone(), h.clone(), cfg.probe_timeout);
            probes.spawn(async move {
                let (outcome, latency) = probe(&h, timeout).await;
                *h.last_probe.lock() = Some(ProbeResult {
                    ts_ms: now_ms(),
                    outcome: outcome.label().into(),
                    detail: outcome.cause(),
                    latency_ms: latency.as_secs_f64() * 1000.0,
                });
                c.report(&h, &outcome, Source::Probe, None);
                h.probing.store(false, Ordering::Release);
            });
        }
    }
    probes.abort_all();
}

/// One probe. Reachability is what counts: any HTTP answer that is not a server error, a
/// rejected appliance key or exhausted quota is a success (a passthrough upstream probed
/// without a key answers 401, which proves it is there).
async fn probe(h: &Health, timeout: Duration) -> (Outcome, Duration) {
    let cfg = h.config.load_full();
    let root = cfg.base_url.strip_suffix("/v1").unwrap_or(&cfg.base_url);
    let url = format!("{root}{}", cfg.probe_path);
    let client = match probe_client(&cfg, timeout) {
        Ok(c) => c,
        Err(e) => return (Outcome::CutOff(format!("probe client: {e}")), Duration::ZERO),
    };
    // Probes name themselves, so they can be told apart in the provider's logs.
    let mut rb = client.get(&url).header(reqwest::header::USER_AGENT, concat!("genset-probe/", env!("CARGO_PKG_VERSION")));
    if let Some(key) = &cfg.api_key {
        rb = match cfg.api {
            Flavor::OpenAi => rb.bearer_auth(key.expose()),
            Flavor::Anthropic => rb.header("x-api-key", key.expose()),
        };
    }
    if cfg.api == Flavor::Anthropic {
        rb = rb.header("anthropic-version", &cfg.anthropic_version);
    }
    let started = Instant::now();
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return (super::outcome::classify_transport(e.is_timeout(), e.is_connect(), &e), started.elapsed()),
    };
    let status = resp.status().as_u16();
    let retry_after = super::outcome::retry_after(resp.headers());
    let body = tokio::time::timeout(timeout, resp.bytes()).await.ok().and_then(Result::ok).unwrap_or_default();
    let latency = started.elapsed();
    let outcome = match super::outcome::classify_status(status, retry_after, &body, cfg.api_key.is_some()) {
        Outcome::CutOff(c) => Outcome::CutOff(format!("probe: {c}")),
        Outcome::Transient { cause, retry_after } if status >= 500 => Outcome::Transient { cause: format!("probe: {cause}"), retry_after },
        _ => Outcome::Success,
    };
    (outcome, latency)
}

fn probe_client(cfg: &crate::config::UpstreamConfig, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    thread_local! {
        static CLIENTS: std::cell::RefCell<std::collections::HashMap<(String, u128, u128), reqwest::Client>> = Default::default();
    }
    let key = (cfg.name.clone(), cfg.connect_timeout.as_millis(), timeout.as_millis());
    CLIENTS.with(|m| {
        if let Some(c) = m.borrow().get(&key) {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout.min(timeout))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        let mut map = m.borrow_mut();
        if map.len() > 64 {
            map.clear();
        }
        map.insert(key, c.clone());
        Ok(c)
    })
}
