//! Replay drills: the recorded client requests of a window, replayed against the use cases'
//! local models at `Priority::Drill` (below live traffic) at k× their recorded rate, without
//! touching clients. Measures success, latency, quality against the cloud's recorded answers
//! and capacity against the recorded peak.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use genset_engine::{GenerateEvent, Priority};
use tokio_util::sync::CancellationToken;

use super::result::{Capacity, DrillResult, Observation, score};
use super::{Counters, Drills, Plan};
use crate::record::now_ms;

/// Longest one replayed answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Busiest 60 s window of `ts` (milliseconds), in events per minute. A span shorter than a
/// minute counts as it is (its events happened within one minute).
pub fn peak_per_min(ts: &[i64]) -> f64 {
    let mut t = ts.to_vec();
    t.sort_unstable();
    let mut best = 0usize;
    let mut lo = 0usize;
    for hi in 0..t.len() {
        while t[hi] - t[lo] >= 60_000 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best as f64
}

impl Drills {
    /// Run a replay drill; `None` when the daemon is stopping.
    pub(crate) async fn run_replay(
        &self,
        id: &str,
        plan: &Plan,
        started: i64,
        abort: &CancellationToken,
        counters: &Arc<Counters>,
    ) -> Option<DrillResult> {
        let cfg = self.config.load_full();
        let rows = match self
            .store
            .body_exchanges(&plan.use_cases, plan.since_ms, plan.until_ms, "cloud:", None, plan.max_requests as i64)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(drill = %id, error = %e, "replay drill: cannot read the recorded traffic");
                let mut r = DrillResult::default();
                r.fail("the recorded traffic could not be read");
                return Some(r);
            }
        };
        // Requests the local engine can serve, with their model.
        let mut jobs = Vec::new();
        let mut skipped = 0u64;
        for row in &rows {
            let Some(uc) = cfg.use_cases.iter().find(|u| u.name == row.use_case) else { continue };
            let engine = crate::evaluate::local_model(uc).and_then(|m| self.models.get(m));
            let built = row
                .request_body
                .as_deref()
                .map(|b| crate::evaluate::replay::build(&row.endpoint, b, uc.eval.local_system_prompt.as_deref(), row.completion_tokens));
            match (engine, built) {
                (Some(engine), Some(Ok(mut replay))) => {
                    replay.request.priority = Priority::Drill;
                    let cloud = row.response_body.as_deref().and_then(|b| crate::evaluate::replay::cloud_answer(&row.endpoint, b));
                    jobs.push((row.ts_ms, uc.clone(), engine, replay.request, cloud));
                }
                _ => skipped += 1,
            }
        }
        counters.total.store(jobs.len() as u64, Ordering::Relaxed);
        counters.selected.store(true, Ordering::Release);
        let recorded_ts: Vec<i64> = jobs.iter().map(|j| j.0).collect();
        let t0 = recorded_ts.iter().copied().min().unwrap_or(0);
        let wall = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        let stop = CancellationToken::new();
        for (ts, uc, engine, request, cloud) in jobs {
            let offset = Duration::from_millis(((ts - t0) as f64 / plan.speed) as u64);
            let counters = counters.clone();
            let stop = stop.clone();
            set.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wall + offset)) => {}
                    _ = stop.cancelled() => return None,
                }
                let began = Instant::now();
                let began_ms = now_ms();
                let mut text = String::new();
                let ok = match engine.submit(request) {
                    Err(_) => false,
                    Ok(mut g) => {
                        let run = async {
                            loop {
                                match g.next().await {
                                    Some(GenerateEvent::Text(t)) => text.push_str(&t),
                                    Some(GenerateEvent::Done { .. }) => return true,
                                    Some(GenerateEvent::Error(_)) | None => return false,
                                    Some(GenerateEvent::Started { .. }) => {}
                                }
                            }
                        };
                        tokio::select! {
                            r = tokio::time::timeout(ANSWER_TIMEOUT, run) => r.unwrap_or(false),
                            _ = stop.cancelled() => return None,
                        }
                    }
                };
                let latency_ms = began.elapsed().as_secs_f64() * 1000.0;
                counters.done.fetch_add(1, Ordering::Relaxed);
                if ok {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                }
                let quality = match (&cloud, ok) {
                    (Some(c), true) => Some(score(&uc, c, &text)),
                    _ => None,
                };
                Some(Observation { use_case: uc.name.clone(), ts_ms: began_ms + latency_ms as i64, ok, local: true, latency_ms, quality })
            });
        }
        let mut obs = Vec::new();
        let mut outage = false;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                r = set.join_next() => match r {
                    Some(Ok(Some(o))) => obs.push(o),
                    Some(_) => {}
                    None => break,
                },
                _ = abort.cancelled() => { stop.cancel(); }
                _ = self.shutdown.cancelled() => { stop.cancel(); set.abort_all(); return None; }
                _ = tick.tick() => {
                    if !outage && self.controller.effective() != "cloud" {
                        // A real outage: the engine is needed for live traffic.
                        outage = true;
                        stop.cancel();
                    }
                }
            }
        }
        let ended = now_ms();
        let mut r = DrillResult::from_observations(&obs, None, &cfg, &plan.use_cases);
        let recorded_peak = peak_per_min(&recorded_ts);
        if recorded_peak > 0.0 && !obs.is_empty() {
            let served: Vec<i64> = obs.iter().filter(|o| o.ok).map(|o| o.ts_ms).collect();
            // At k× speed a box that keeps up serves k× the recorded peak (headroom k); one
            // that cannot serves what it can (headroom = capacity / recorded peak).
            let served_equiv = peak_per_min(&served);
            r.capacity = Some(Capacity {
                recorded_peak_per_min: recorded_peak,
                speed: plan.speed,
                served_peak_per_min: served_equiv,
                headroom: served_equiv / recorded_peak,
            });
        }
        r.window_ms = Some((started, ended));
        r.judge(&cfg, false);
        if skipped > 0 {
            r.note(&format!("{skipped} recorded requests could not be replayed locally (no body, or not servable by the local model)"));
        }
        if outage {
            r.note("stopped early: a real outage began and the local engine is needed for live traffic");
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn peaks() {
        assert_eq!(peak_per_min(&[]), 0.0);
        assert_eq!(peak_per_min(&[0, 10, 20]), 3.0);
        assert_eq!(peak_per_min(&[0, 59_999, 60_000, 61_000, 200_000]), 3.0);
    }
}
