//! From the store to a report: reads the period's exchanges, events, readiness history and
//! drills, and hands them to the pure `genset-report` crate with the configured SLO and prices.

use genset_report::{DrillSummary, Event, ExchangeSummary, Format, Input, Period, ReadinessPoint, Report};

use super::{DrillView, Drills};
use crate::record::now_ms;

/// Events this long before the period are read too: an incident that began before it.
const EVENT_LOOKBACK_MS: i64 = 7 * 24 * 3600 * 1000;

impl Drills {
    /// The figures of a period.
    pub async fn report(&self, period: &Period) -> Result<Report, crate::store::StoreError> {
        let cfg = self.config.load_full();
        let exchanges = self
            .store
            .report_exchanges(period.start_ms - 10 * 60 * 1000, period.end_ms, None)
            .await?
            .into_iter()
            .map(|r| ExchangeSummary {
                ts_ms: r.ts_ms,
                use_case: r.use_case,
                served_by: r.served_by,
                model: r.model,
                status: r.status,
                completed: r.completed,
                ttfb_ms: r.ttfb_ms,
                total_ms: r.total_ms,
                prompt_tokens: r.prompt_tokens,
                completion_tokens: r.completion_tokens,
                final_attempt: r.final_attempt,
                rescue: r.rescue,
                mode: r.mode,
            })
            .collect();
        let events = self
            .store
            .events_between(period.start_ms - EVENT_LOOKBACK_MS, period.end_ms)
            .await?
            .into_iter()
            .map(|e| Event {
                ts_ms: e.ts_ms,
                kind: e.kind,
                subject: e.subject,
                cause: e.cause,
                detail: e.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or(serde_json::Value::Null),
            })
            .collect();
        let readiness = self
            .store
            .readiness_points(period.start_ms, period.end_ms)
            .await?
            .into_iter()
            .map(|r| ReadinessPoint {
                ts_ms: r.ts_ms,
                use_case: r.use_case,
                verdict: r.verdict,
                score: r.score,
                lower: r.score_lower,
                upper: r.score_upper,
                n: r.n,
            })
            .collect();
        let drills: Vec<DrillSummary> = self
            .store
            .list_drills(None, Some(period.start_ms), Some(period.end_ms), 1000)
            .await?
            .into_iter()
            .map(|r| DrillView::from_row(r).summary())
            .collect();
        let input = Input {
            period: Some(period.clone()),
            slo_percent: cfg.reports.slo,
            exchanges,
            events,
            drills,
            readiness,
            prices: cfg.reports.prices.clone(),
            currency: cfg.reports.currency.clone(),
            generated_ms: now_ms(),
            title: cfg.reports.title.clone(),
        };
        Ok(genset_report::compute(&input, period))
    }

    /// A period's report rendered: (content type, bytes).
    pub async fn render_report(&self, period: &Period, format: Format) -> Result<(&'static str, Vec<u8>), String> {
        let r = self.report(period).await.map_err(|e| format!("the store failed: {e}"))?;
        let bytes = genset_report::render(&r, format)?;
        Ok((format.content_type(), bytes))
    }
}
