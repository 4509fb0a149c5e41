//! Scheduled drills: `[[drills]]` entries with a cron `schedule` (UTC), started by the runner
//! when due. A drill that cannot start (a real outage, a drill already holding the use case)
//! is skipped with an event, never queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{DrillSpec, Drills};
use crate::config::drills::DrillConfig;

/// How often the schedule is looked at (cron has one-second resolution).
const TICK: Duration = Duration::from_millis(250);

pub fn spec_of(d: &DrillConfig) -> DrillSpec {
    DrillSpec {
        name: Some(d.name.clone()),
        kind: Some(d.kind.as_str().into()),
        use_cases: d.use_cases.clone(),
        duration: Some(humantime::format_duration(d.duration).to_string()),
        window: Some(humantime::format_duration(d.window).to_string()),
        period: None,
        speed: Some(d.speed),
        max_requests: Some(d.max_requests),
        force: None,
    }
}

pub async fn run(drills: Arc<Drills>, shutdown: CancellationToken) {
    // Per drill (name and expression): the next time it is due.
    let mut next: HashMap<(String, String), DateTime<Utc>> = HashMap::new();
    // The scheduled report delivery in flight, if any: one at a time.
    let mut delivery: Option<tokio::task::JoinHandle<()>> = None;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cfg = drills.config.load_full();
        let now = Utc::now();
        let mut seen = Vec::new();
        for d in &cfg.drills {
            let Some((expr, schedule)) = &d.schedule else { continue };
            let key = (d.name.clone(), expr.clone());
            seen.push(key.clone());
            let due = match next.get(&key) {
                Some(t) => *t,
                None => {
                    // First sight (start-up or reload): the next occurrence from now on.
                    if let Some(t) = schedule.after(&now).next() {
                        next.insert(key.clone(), t);
                    }
                    continue;
                }
            };
            if due > now {
                continue;
            }
            if let Some(t) = schedule.after(&now).next() {
                next.insert(key.clone(), t);
            } else {
                next.remove(&key);
            }
            let actor = format!("schedule:{} ({expr})", d.name);
            match drills.start_drill(spec_of(d), &actor).await {
                Ok(v) => tracing::info!(drill = %v.id, name = %d.name, "scheduled drill started"),
                Err(e) => {
                    tracing::warn!(name = %d.name, error = %e, "scheduled drill skipped");
                    drills
                        .event(
                            crate::record::now_ms(),
                            &d.name,
                            &format!("scheduled drill skipped: {e}"),
                            json!({"to": "skipped", "schedule": expr}),
                        )
                        .await;
                }
            }
        }
        // Scheduled report delivery, in the background so drills keep their timing.
        if let Some(d) = &cfg.reports.delivery {
            let key = ("[reports]".to_string(), d.expr.clone());
            seen.push(key.clone());
            match next.get(&key) {
                None => {
                    if let Some(t) = d.schedule.after(&now).next() {
                        next.insert(key, t);
                    }
                }
                Some(due) if *due <= now => {
                    match d.schedule.after(&now).next() {
                        Some(t) => next.insert(key, t),
                        None => next.remove(&key),
                    };
                    if delivery.as_ref().is_some_and(|h| !h.is_finished()) {
                        // One at a time: a webhook slower than the schedule must not collect
                        // deliveries.
                        tracing::warn!(schedule = %d.expr, "scheduled report skipped: the previous delivery is still running");
                        super::delivery::report_event(
                            &drills,
                            "scheduled report skipped: the previous delivery is still running",
                            json!({"to": "skipped", "schedule": d.expr}),
                        )
                        .await;
                    } else {
                        // Tracked with the drills (shutdown waits for it) and given up when
                        // shutdown starts: a webhook that hangs never holds the daemon up.
                        let (drills, d) = (drills.clone(), d.clone());
                        delivery = Some(drills.tracker.clone().spawn(async move {
                            tokio::select! {
                                () = super::delivery::deliver(&drills, &d) => {}
                                () = drills.shutdown.cancelled() => {
                                    tracing::warn!(
                                        "scheduled report delivery interrupted by shutdown; it runs again at its next scheduled time"
                                    );
                                }
                            }
                        }));
                    }
                }
                Some(_) => {}
            }
        }
        next.retain(|k, _| seen.contains(k));
    }
}
