//! Scheduled report delivery: `[reports] schedule` (cron, UTC) and `webhook`. When due, the
//! report of the period just ended (previous month, week or day) is computed and POSTed as
//! JSON — the figures, and the PDF in base64 — with retries; every delivery, delivered or
//! failed, is an event (`report`).

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use super::Drills;
use crate::config::drills::{ReportDelivery, ScheduledPeriod};
use crate::record::now_ms;

const DAY_MS: i64 = 86_400_000;
const ATTEMPTS: u32 = 3;

/// The period a scheduled report sent at `now_ms` covers, as a label `Period::parse` takes.
pub fn period_label(p: ScheduledPeriod, now_ms: i64) -> String {
    use genset_report::period::{civil_from_days, days_from_civil};
    let today = now_ms.div_euclid(DAY_MS);
    match p {
        ScheduledPeriod::PreviousDay => {
            let (y, m, d) = civil_from_days(today - 1);
            format!("{y:04}-{m:02}-{d:02}..{y:04}-{m:02}-{d:02}")
        }
        ScheduledPeriod::PreviousWeek => {
            // The seven days before this Monday (ISO weeks start on Monday; 1970-01-01 was a Thursday).
            let weekday = (today + 3).rem_euclid(7); // 0 = Monday
            let monday = today - weekday;
            let (y1, m1, d1) = civil_from_days(monday - 7);
            let (y2, m2, d2) = civil_from_days(monday - 1);
            format!("{y1:04}-{m1:02}-{d1:02}..{y2:04}-{m2:02}-{d2:02}")
        }
        ScheduledPeriod::PreviousMonth => {
            let (y, m, _) = civil_from_days(today);
            let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
            let _ = days_from_civil;
            format!("{py:04}-{pm:02}")
        }
    }
}

/// Compute, render and deliver one scheduled report.
pub async fn deliver(drills: &Drills, d: &ReportDelivery) {
    let label = period_label(d.period, now_ms());
    let period = match genset_report::Period::parse(&label) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(period = %label, error = ?e, "scheduled report: bad period");
            return;
        }
    };
    tracing::info!(period = %label, "scheduled report: computing");
    let report = match drills.report(&period).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "scheduled report: the store failed");
            report_event(drills, &format!("scheduled report {label} not computed: {e}"), json!({"to": "failed", "period": label})).await;
            return;
        }
    };
    let figures =
        serde_json::from_slice::<serde_json::Value>(&genset_report::render(&report, genset_report::Format::Json).unwrap_or_default())
            .unwrap_or(serde_json::Value::Null);
    let pdf = genset_report::render(&report, genset_report::Format::Pdf).map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    tracing::info!(period = %label, "scheduled report: rendered, delivering");
    let body = json!({
        "type": "genset.report",
        "period": label,
        "report": figures,
        "pdf_base64": pdf.as_ref().ok(),
        "pdf_error": pdf.as_ref().err(),
    });
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(30)).no_proxy().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "scheduled report: http client");
            return;
        }
    };
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match client.post(&d.webhook).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(period = %label, attempt, "scheduled report delivered");
                report_event(
                    drills,
                    &format!("scheduled report {label} delivered"),
                    json!({"to": "delivered", "period": label, "attempts": attempt}),
                )
                .await;
                return;
            }
            Ok(r) => last = format!("the webhook answered {}", r.status()),
            Err(e) => last = crate::util::error_chain(&e),
        }
        tracing::warn!(period = %label, attempt, error = %last, "scheduled report: delivery failed");
        tokio::time::sleep(Duration::from_secs(2u64.pow(attempt))).await;
    }
    report_event(
        drills,
        &format!("scheduled report {label} not delivered: {last}"),
        json!({"to": "failed", "period": label, "attempts": ATTEMPTS}),
    )
    .await;
}

pub(super) async fn report_event(drills: &Drills, cause: &str, detail: serde_json::Value) {
    if let Err(e) = drills.store.insert_event(now_ms(), "report", "reports", cause, Some(&detail.to_string())).await {
        tracing::error!(error = %e, "scheduled report: cannot store an event");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn check(p: ScheduledPeriod, now: &str, want: &str) {
        let now_ms = genset_report::Period::parse(now).unwrap().start_ms + 3_600_000;
        assert_eq!(period_label(p, now_ms), want, "{p:?} at {now}");
    }

    #[test]
    fn scheduled_periods() {
        check(ScheduledPeriod::PreviousMonth, "2026-12", "2026-11");
        check(ScheduledPeriod::PreviousMonth, "2027-01", "2026-12");
        // 2026-11-24 is a Tuesday: the previous ISO week is Mon 16 .. Sun 22.
        check(ScheduledPeriod::PreviousWeek, "2026-11-24..2026-11-24", "2026-11-16..2026-11-22");
        check(ScheduledPeriod::PreviousDay, "2026-03-01..2026-03-01", "2026-02-28..2026-02-28");
    }
}
