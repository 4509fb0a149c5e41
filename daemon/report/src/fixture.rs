//! A known history (November 2026) with hand-computed figures, shared by this crate's tests
//! and the daemon's end-to-end report test (which seeds the same rows into a store).
//!
//! The history, SLO 97.5%:
//! - `support` (203 client requests): 190 cloud answers on Nov 2 (`cloud:openai`, gpt-4o,
//!   1000/200 tokens, 200..389 ms); an OpenAI outage on Nov 10 12:00 (evidence from 12:00:00,
//!   breaker open and flip 12:00:05, re-opened 12:10:01, closed 12:20:00, flip back 12:20:30)
//!   during which 2 requests were rescued by fallback after a failed attempt, 4 served
//!   locally as cut-off, 2 rejected with 503; a live drill on Nov 15: 4 local answers and
//!   1 local 500.
//! - `extract` (112): 96 cloud answers (`cloud:anthropic`, claude-sonnet-4-5), 10 local-first
//!   answers, a 400 (the client's), a 429, a cut stream, 2 rejected with 503 in the outage,
//!   and on Nov 20 a blip on Anthropic (breaker open 10:00:00, closed 10:00:30, no flip; a
//!   failed attempt at 09:59:50 retried successfully at 09:59:51).
//! - Outside the period: an October failure, an October incident and an October drill.
//!
//! Hand-computed: failed 7 (support 3, extract 4), rescued 7, cloud-failed 13 (support 8 =
//! 2 failed + 6 rescued, drill rows excluded; extract 5), so effective 308/315 = 97.78%,
//! cloud 302/315 = 95.87%; budget 315 × 2.5% = 7.875 requests, burn 7/7.875 = 88.89%, left
//! 11.11%, cloud burn 13/7.875 = 165.08%. Incidents: OpenAI TTD 5 s, TTR 1200 s, 10 requests
//! (6 rescued, 6 local, 4 failed); Anthropic TTD 10 s, TTR 40 s, 1 request rescued. MTTD
//! 7.5 s, MTTR 620.0 s. Cost: gpt-4o 190,000 × 2.5 + 38,000 × 10 per Mtok = 0.855; claude
//! 196,000 × 3 + 48,600 × 15 per Mtok = 1.317; spend 2.172 → "2.17 USD"; saved: failover
//! 6 × 0.0045 = 0.027, drill 4 × 0.00225 = 0.009, local-first 10 × 0.015 = 0.15, total 0.186.

use std::collections::BTreeMap;

use serde_json::json;

use crate::period::days_from_civil;
use crate::{DrillSummary, Event, ExchangeSummary, Input, Period, Price, ReadinessPoint};

/// Unix milliseconds of a UTC date and time.
pub fn ts(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
    (days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s) * 1000
}

#[allow(clippy::too_many_arguments)]
fn x(
    ts_ms: i64,
    use_case: &str,
    served_by: &str,
    model: &str,
    status: i64,
    completed: bool,
    total_ms: f64,
    ttfb_ms: Option<f64>,
    tokens: Option<(i64, i64)>,
    final_attempt: bool,
    rescue: Option<&str>,
    mode: &str,
) -> ExchangeSummary {
    ExchangeSummary {
        ts_ms,
        use_case: use_case.into(),
        served_by: served_by.into(),
        model: Some(model.into()),
        status,
        completed,
        ttfb_ms,
        total_ms,
        prompt_tokens: tokens.map(|t| t.0),
        completion_tokens: tokens.map(|t| t.1),
        final_attempt,
        rescue: rescue.map(Into::into),
        mode: Some(mode.into()),
    }
}

fn ev(ts_ms: i64, kind: &str, subject: &str, cause: &str, detail: serde_json::Value) -> Event {
    Event { ts_ms, kind: kind.into(), subject: subject.into(), cause: cause.into(), detail }
}

pub const SLO: f64 = 97.5;

pub fn november() -> Input {
    let mut xs = Vec::new();
    let (o, a, l) = ("cloud:openai", "cloud:anthropic", "local:gemma");
    // support: 190 cloud answers on Nov 2.
    for i in 0..190 {
        xs.push(x(
            ts(2026, 11, 2, 8, 0, 0) + i * 60_000,
            "support",
            o,
            "gpt-4o",
            200,
            true,
            200.0 + i as f64,
            Some(50.0),
            Some((1000, 200)),
            true,
            None,
            "cloud",
        ));
    }
    // The OpenAI outage of Nov 10.
    let t = |mi: i64, s: i64| ts(2026, 11, 10, 12, mi, s);
    xs.push(x(t(0, 0), "support", o, "gpt-4o", 502, false, 30.0, None, None, false, None, "cloud"));
    xs.push(x(t(0, 0), "support", l, "gpt-4o", 200, true, 2000.0, Some(300.0), Some((1000, 200)), true, Some("fallback"), "cloud"));
    xs.push(x(t(0, 2), "support", o, "gpt-4o", 502, false, 30.0, None, None, false, None, "cloud"));
    xs.push(x(t(0, 2), "support", l, "gpt-4o", 200, true, 2100.0, Some(300.0), Some((1000, 200)), true, Some("fallback"), "cloud"));
    for (i, mi) in [5, 6, 7, 8].into_iter().enumerate() {
        xs.push(x(
            t(mi, 0),
            "support",
            l,
            "gpt-4o",
            200,
            true,
            2200.0 + 100.0 * i as f64,
            Some(300.0),
            Some((1000, 200)),
            true,
            Some("cut-off"),
            "failover",
        ));
    }
    xs.push(x(t(9, 0), "support", "genset", "gpt-4o", 503, false, 5.0, None, None, true, None, "failover"));
    xs.push(x(t(11, 0), "support", "genset", "gpt-4o", 503, false, 5.0, None, None, true, None, "failover"));
    xs.push(x(t(12, 0), "extract", "genset", "claude-sonnet-4-5", 503, false, 5.0, None, None, true, None, "failover"));
    xs.push(x(t(13, 0), "extract", "genset", "claude-sonnet-4-5", 503, false, 5.0, None, None, true, None, "failover"));
    // The live drill of Nov 15.
    for i in 0..4 {
        xs.push(x(
            ts(2026, 11, 15, 10, 1, i),
            "support",
            l,
            "gpt-4o",
            200,
            true,
            1500.0,
            Some(250.0),
            Some((500, 100)),
            true,
            Some("cut-off"),
            "drill",
        ));
    }
    xs.push(x(ts(2026, 11, 15, 10, 2, 0), "support", l, "gpt-4o", 500, false, 200.0, None, None, true, Some("cut-off"), "drill"));
    // extract.
    for i in 0..96 {
        xs.push(x(
            ts(2026, 11, 3, 9, 0, 0) + i * 60_000,
            "extract",
            a,
            "claude-sonnet-4-5",
            200,
            true,
            300.0,
            Some(80.0),
            Some((2000, 500)),
            true,
            None,
            "cloud",
        ));
    }
    for i in 0..10 {
        xs.push(x(
            ts(2026, 11, 4, 9, 0, 0) + i * 60_000,
            "extract",
            l,
            "claude-sonnet-4-5",
            200,
            true,
            800.0,
            Some(100.0),
            Some((2000, 600)),
            true,
            Some("local-policy"),
            "cloud",
        ));
    }
    xs.push(x(ts(2026, 11, 5, 9, 0, 0), "extract", a, "claude-sonnet-4-5", 400, false, 50.0, None, None, true, None, "cloud"));
    xs.push(x(ts(2026, 11, 5, 9, 1, 0), "extract", a, "claude-sonnet-4-5", 429, false, 40.0, None, None, true, None, "cloud"));
    xs.push(x(
        ts(2026, 11, 5, 9, 2, 0),
        "extract",
        a,
        "claude-sonnet-4-5",
        200,
        false,
        900.0,
        Some(80.0),
        Some((2000, 100)),
        true,
        None,
        "cloud",
    ));
    // The Anthropic blip of Nov 20.
    xs.push(x(ts(2026, 11, 20, 9, 59, 50), "extract", a, "claude-sonnet-4-5", 503, false, 20.0, None, None, false, None, "cloud"));
    xs.push(x(
        ts(2026, 11, 20, 9, 59, 51),
        "extract",
        a,
        "claude-sonnet-4-5",
        200,
        true,
        600.0,
        Some(80.0),
        Some((2000, 500)),
        true,
        Some("fallback"),
        "cloud",
    ));
    // Outside the period.
    xs.push(x(ts(2026, 10, 31, 23, 59, 59), "support", o, "gpt-4o", 500, false, 10.0, None, Some((1000, 0)), true, None, "cloud"));

    let events = vec![
        ev(
            ts(2026, 10, 20, 8, 0, 0),
            "breaker",
            "openai",
            "3 cut-offs in a row",
            json!({"to": "open", "evidence": [{"ts_ms": ts(2026, 10, 20, 7, 59, 58)}]}),
        ),
        ev(ts(2026, 10, 20, 8, 5, 0), "breaker", "openai", "half-open probes succeeded", json!({"to": "closed"})),
        ev(
            t(0, 5),
            "breaker",
            "openai",
            "3 cut-offs in a row",
            json!({"to": "open", "open_ms": 5000, "evidence": [{"ts_ms": t(0, 0)}, {"ts_ms": t(0, 2)}]}),
        ),
        ev(t(0, 5), "failover", "openai", "breaker opened", json!({"to": "failover"})),
        ev(t(10, 0), "breaker", "openai", "open time elapsed; probing", json!({"to": "half-open"})),
        ev(t(10, 1), "breaker", "openai", "probe failed", json!({"to": "open", "evidence": [{"ts_ms": t(10, 1)}]})),
        ev(t(20, 0), "breaker", "openai", "half-open probes succeeded", json!({"to": "closed"})),
        ev(t(20, 30), "failover", "openai", "recovered", json!({"to": "cloud"})),
        ev(ts(2026, 11, 20, 10, 0, 0), "breaker", "anthropic", "failure rate 60%", json!({"to": "open"})),
        ev(ts(2026, 11, 20, 10, 0, 30), "breaker", "anthropic", "half-open probes succeeded", json!({"to": "closed"})),
        ev(ts(2026, 11, 21, 0, 0, 0), "mode", "genset", "operator test", json!({"from": "auto", "to": "auto"})),
    ];
    let drills = vec![
        DrillSummary {
            id: "d-oct".into(),
            name: "october".into(),
            kind: "live".into(),
            started_ms: ts(2026, 10, 10, 10, 0, 0),
            ended_ms: Some(ts(2026, 10, 10, 10, 5, 0)),
            use_cases: vec!["support".into()],
            verdict: "failed".into(),
            findings: vec!["old finding".into()],
            rto_ms: Some(900.0),
            success_rate: Some(0.5),
        },
        DrillSummary {
            id: "d-1".into(),
            name: "weekly-support".into(),
            kind: "live".into(),
            started_ms: ts(2026, 11, 15, 10, 0, 0),
            ended_ms: Some(ts(2026, 11, 15, 10, 5, 0)),
            use_cases: vec!["support".into()],
            verdict: "passed-with-findings".into(),
            findings: vec!["p95 latency 1500 ms above the SLO 1000 ms".into()],
            rto_ms: Some(1200.0),
            success_rate: Some(0.8),
        },
        DrillSummary {
            id: "d-2".into(),
            name: "replay-nov".into(),
            kind: "replay".into(),
            started_ms: ts(2026, 11, 16, 3, 0, 0),
            ended_ms: Some(ts(2026, 11, 16, 3, 10, 0)),
            use_cases: vec!["support".into(), "extract".into()],
            verdict: "passed-with-findings".into(),
            findings: vec!["capacity headroom 0.8x of the recorded peak".into()],
            rto_ms: None,
            success_rate: Some(1.0),
        },
    ];
    let rp = |ts_ms, verdict: &str, score, lower, upper, n| ReadinessPoint {
        ts_ms,
        use_case: "support".into(),
        verdict: verdict.into(),
        score,
        lower,
        upper,
        n,
    };
    let readiness = vec![
        rp(ts(2026, 10, 25, 0, 0, 0), "not-ready", 0.5, 0.4, 0.6, 20),
        rp(ts(2026, 11, 1, 0, 0, 0), "marginal", 0.70, 0.60, 0.80, 30),
        rp(ts(2026, 11, 25, 0, 0, 0), "ready", 0.82, 0.74, 0.88, 50),
    ];
    let mut prices = BTreeMap::new();
    prices.insert("gpt-4o".to_string(), Price { input_per_mtok: 2.5, output_per_mtok: 10.0 });
    prices.insert("claude-sonnet-4-5".to_string(), Price { input_per_mtok: 3.0, output_per_mtok: 15.0 });
    Input {
        period: Period::parse("2026-11").ok(),
        slo_percent: SLO,
        exchanges: xs,
        events,
        drills,
        readiness,
        prices,
        currency: "USD".into(),
        generated_ms: ts(2026, 12, 1, 6, 0, 0),
        title: "Acme".into(),
    }
}

/// Figures every rendering (HTML, PDF text, CSV) of the November report must show.
pub const EXPECTED_TEXT: &[&str] = &[
    "97.78%",              // effective availability
    "95.87%",              // cloud availability
    "97.50%",              // SLO
    "11.11%",              // error budget left
    "88.89%",              // burn
    "98.52%",              // support effective
    "96.06%",              // support cloud
    "96.43%",              // extract effective
    "95.54%",              // extract cloud
    "142.86%",             // extract burn
    "7.5 s",               // MTTD
    "620.0 s",             // MTTR
    "1200.0 s",            // OpenAI incident TTR
    "2026-11-10 12:00:00", // first failure
    "2026-11-10 12:00:05", // detection and flip
    "2026-11-10 12:20:00", // recovery
    "2026-11-10 12:20:30", // flip back
    "2026-11-20 09:59:50", // Anthropic first failure
    "2.17 USD",            // cloud spend
    "0.19 USD",            // saved
    "0.15 USD",            // saved local-first
    "replay-nov",
    "passed-with-findings",
    "capacity headroom 0.8x of the recorded peak",
];
