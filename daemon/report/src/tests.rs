#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::fixture::{EXPECTED_TEXT, november, ts};

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 0.005, "{what}: {a} != {b}");
}

fn nov() -> Report {
    report(&november()).unwrap()
}

#[test]
fn availability_figures() {
    let r = nov();
    let a = &r.overall;
    assert_eq!((a.requests, a.failed, a.rescued, a.cloud_failed, a.served_locally), (315, 7, 7, 13, 16));
    close(a.effective_percent, 97.78, "effective"); // 308 / 315
    close(a.cloud_percent, 95.87, "cloud"); // 302 / 315
    close(a.budget_requests, 7.875, "budget"); // 315 × 2.5%
    close(a.budget_burn_percent, 88.89, "burn"); // 7 / 7.875
    close(a.budget_left_percent, 11.11, "left");
    close(a.cloud_budget_burn_percent, 165.08, "cloud burn"); // 13 / 7.875
    assert!(a.meets_slo);

    assert_eq!(r.use_cases.len(), 2);
    let ex = &r.use_cases[0];
    assert_eq!(ex.use_case, "extract");
    let e = &ex.availability;
    assert_eq!((e.requests, e.failed, e.rescued, e.cloud_failed, e.served_locally), (112, 4, 1, 5, 10));
    close(e.effective_percent, 96.43, "extract effective"); // 108 / 112
    close(e.cloud_percent, 95.54, "extract cloud"); // 107 / 112
    close(e.budget_burn_percent, 142.86, "extract burn"); // 4 / 2.8
    close(e.budget_left_percent, -42.86, "extract left");
    assert!(!e.meets_slo);
    let s = &r.use_cases[1].availability;
    assert_eq!(r.use_cases[1].use_case, "support");
    assert_eq!((s.requests, s.failed, s.rescued, s.cloud_failed, s.served_locally), (203, 3, 6, 8, 6));
    close(s.effective_percent, 98.52, "support effective"); // 200 / 203
    close(s.cloud_percent, 96.06, "support cloud"); // 195 / 203
    close(s.budget_burn_percent, 59.11, "support burn"); // 3 / 5.075
    close(s.cloud_budget_burn_percent, 157.64, "support cloud burn"); // 8 / 5.075
}

#[test]
fn incident_figures() {
    let r = nov();
    assert_eq!(r.incidents.len(), 2, "{:#?}", r.incidents);
    let o = &r.incidents[0];
    assert_eq!(o.upstream, "openai");
    assert_eq!(o.first_failure_ms, ts(2026, 11, 10, 12, 0, 0));
    assert_eq!(o.detection_ms, ts(2026, 11, 10, 12, 0, 5));
    assert_eq!(o.flip_ms, Some(ts(2026, 11, 10, 12, 0, 5)));
    assert_eq!(o.recovery_ms, Some(ts(2026, 11, 10, 12, 20, 0)));
    assert_eq!(o.flip_back_ms, Some(ts(2026, 11, 10, 12, 20, 30)));
    assert_eq!((o.ttd_ms, o.ttr_ms), (5_000, 1_200_000));
    assert_eq!((o.requests, o.rescued, o.served_locally, o.failed), (10, 6, 6, 4));
    assert!(!o.ongoing);
    let a = &r.incidents[1];
    assert_eq!(a.upstream, "anthropic");
    assert_eq!(a.first_failure_ms, ts(2026, 11, 20, 9, 59, 50));
    assert_eq!((a.flip_ms, a.flip_back_ms), (None, None));
    assert_eq!(a.recovery_ms, Some(ts(2026, 11, 20, 10, 0, 30)));
    assert_eq!((a.ttd_ms, a.ttr_ms), (10_000, 40_000));
    assert_eq!((a.requests, a.rescued, a.served_locally, a.failed), (1, 1, 0, 0));
    assert_eq!(r.summary.incidents, 2);
    assert_eq!(r.summary.mttd_ms, Some(7_500.0));
    assert_eq!(r.summary.mttr_ms, Some(620_000.0));
    assert_eq!(r.summary.requests_rescued, 7);
}

#[test]
fn ongoing_incident_ends_with_the_period() {
    let mut input = november();
    input.events.retain(|e| !(e.subject == "openai" && e.detail["to"] == "cloud"));
    let r = report(&input).unwrap();
    let o = r.incidents.iter().find(|i| i.upstream == "openai").unwrap();
    assert!(o.ongoing);
    assert_eq!(o.end_ms, r.period.end_ms);
    assert_eq!(o.ttr_ms, 1_200_000, "recovery is known even though the flip back is not");
}

#[test]
fn traffic_latency_quality_drills_cost() {
    let r = nov();
    let sb: Vec<(&str, u64, i64, i64)> =
        r.served_by.iter().map(|s| (s.served_by.as_str(), s.requests, s.prompt_tokens, s.completion_tokens)).collect();
    assert_eq!(
        sb,
        vec![
            ("cloud:anthropic", 100, 196_000, 48_600),
            ("cloud:openai", 190, 190_000, 38_000),
            ("genset", 4, 0, 0),
            ("local:gemma", 21, 28_000, 7_600),
        ]
    );
    // (mode, requests, p50, p95, p99, ttfb p50, ttfb p95)
    type LatencyRow<'a> = (&'a str, u64, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>);
    let lat: Vec<LatencyRow<'_>> =
        r.latency.iter().map(|l| (l.mode.as_str(), l.requests, l.p50_ms, l.p95_ms, l.p99_ms, l.ttfb_p50_ms, l.ttfb_p95_ms)).collect();
    assert_eq!(
        lat,
        vec![
            ("cloud", 302, Some(300.0), Some(388.0), Some(800.0), Some(50.0), Some(80.0)),
            ("drill", 5, Some(1500.0), Some(1500.0), Some(1500.0), Some(250.0), Some(250.0)),
            ("failover", 8, Some(5.0), Some(2500.0), Some(2500.0), Some(300.0), Some(300.0)),
        ]
    );
    assert_eq!(r.quality.len(), 1);
    let q = &r.quality[0];
    assert_eq!((q.use_case.as_str(), q.served_in_failover, q.verdict.as_deref(), q.points), ("support", 6, Some("ready"), 2));
    close(q.score.unwrap(), 0.82, "score");
    close(q.trend.unwrap(), 0.12, "trend");
    assert_eq!(r.drills.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec!["d-1", "d-2"]);
    assert_eq!(r.summary.last_drill.as_deref(), Some("replay-nov"));
    assert_eq!(r.summary.open_findings, vec!["replay-nov: capacity headroom 0.8x of the recorded peak".to_string()]);

    let c = &r.cost;
    close(c.cloud_spend, 2.172, "spend");
    close(c.by_model[0].spend, 1.317, "claude");
    close(c.by_model[1].spend, 0.855, "gpt-4o");
    close(c.saved, 0.186, "saved");
    close(c.saved_by_reason["failover"], 0.027, "failover");
    close(c.saved_by_reason["drill"], 0.009, "drill");
    close(c.saved_by_reason["local-first"], 0.15, "local-first");
    assert!(c.unpriced_models.is_empty());
}

#[test]
fn empty_period_is_fully_available() {
    let mut input = november();
    input.period = Period::parse("2026-09").ok();
    let r = report(&input).unwrap();
    assert_eq!(r.overall.requests, 0);
    assert_eq!(r.overall.effective_percent, 100.0);
    assert_eq!(r.overall.cloud_percent, 100.0);
    assert!(r.incidents.is_empty());
    for f in [Format::Json, Format::Csv, Format::Html, Format::Pdf] {
        assert!(!render(&r, f).unwrap().is_empty());
    }
}

#[test]
fn html_shows_every_figure() {
    let html = render_html(&nov());
    for want in EXPECTED_TEXT {
        assert!(html.contains(want), "HTML lacks {want:?}");
    }
    assert!(html.contains("@media print"));
    assert!(html.contains("<td>support</td><td>203</td><td>96.06%</td><td>98.52%</td>"));
}

#[test]
fn csv_has_every_figure() {
    let csv = render_csv(&nov());
    for line in [
        "availability,all,effective_percent,97.78",
        "availability,all,cloud_percent,95.87",
        "availability,all,budget_burn_percent,88.89",
        "availability,all,budget_left_percent,11.11",
        "availability,support,cloud_percent,96.06",
        "availability,extract,effective_percent,96.43",
        "incident,openai#1,ttd_ms,5000",
        "incident,openai#1,ttr_ms,1200000",
        "incident,openai#1,rescued,6",
        "incident,anthropic#2,first_failure,2026-11-20 09:59:50",
        "summary,all,mttd_ms,7500.0",
        "summary,all,mttr_ms,620000.0",
        "served_by,local:gemma,completion_tokens,7600",
        "latency,cloud,p95_ms,388.0",
        "quality,support,trend,0.120",
        "drill,d-2,verdict,passed-with-findings",
        "cost,USD,cloud_spend,2.17",
        "cost,USD,saved,0.19",
        "cost,USD,saved_local-first,0.15",
    ] {
        assert!(csv.lines().any(|l| l == line), "CSV lacks {line:?}\n{csv}");
    }
}

#[test]
fn json_round_trips() {
    let r = nov();
    let back: Report = serde_json::from_str(&render_json(&r)).unwrap();
    // Floats round-trip to within a few ulps: check the figures, not bit equality.
    close(back.overall.effective_percent, 97.78, "effective");
    close(back.overall.cloud_percent, 95.87, "cloud");
    close(back.use_cases[1].availability.cloud_percent, 96.06, "support cloud");
    close(back.cost.saved, 0.186, "saved");
    assert_eq!(back.incidents, r.incidents);
    assert_eq!(back.served_by, r.served_by);
    assert_eq!(back.latency, r.latency);
    assert_eq!(back.drills, r.drills);
    assert_eq!(back.summary.mttr_ms, Some(620_000.0));
}

#[test]
fn pdf_shows_every_figure() {
    let pdf = render_pdf(&nov()).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let text = crate::pdf::pdf_text(&pdf).unwrap();
    for want in EXPECTED_TEXT {
        assert!(text.contains(want), "PDF text lacks {want:?}:\n{text}");
    }
}
