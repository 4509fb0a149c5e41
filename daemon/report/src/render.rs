//! Renderers. The HTML and PDF share one layout ([`layout`]: a summary page, then sections of
//! tables), so both show exactly the same text; JSON is the [`Report`] itself; CSV is one
//! row per figure (`section,subject,metric,value`) for spreadsheets.

use std::fmt::Write as _;

use crate::{Availability, Report, format_ts};

/// `99.53%` (two decimals: reports are exact to 0.01 percentage point).
pub fn percent(v: f64) -> String {
    if v.is_finite() { format!("{v:.2}%") } else { "∞".into() }
}

pub fn money(v: f64, currency: &str) -> String {
    format!("{v:.2} {currency}")
}

/// `12.3 s` from milliseconds.
pub fn secs(ms: f64) -> String {
    format!("{:.1} s", ms / 1000.0)
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "-".into())
}

fn opt_ts(v: Option<i64>) -> String {
    v.map(format_ts).unwrap_or_else(|| "-".into())
}

fn score(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

/// One block of the shared layout.
#[derive(Debug, Clone)]
pub enum Block {
    Heading(String),
    Para(String),
    /// (label, value) pairs, shown as a two-column list.
    KeyValues(Vec<(String, String)>),
    Table {
        headers: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    PageBreak,
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> Block {
    Block::Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows }
}

fn kv(pairs: Vec<(&str, String)>) -> Block {
    Block::KeyValues(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn availability_row(name: &str, a: &Availability) -> Vec<String> {
    vec![
        name.to_string(),
        a.requests.to_string(),
        percent(a.cloud_percent),
        percent(a.effective_percent),
        percent(a.slo_percent),
        a.rescued.to_string(),
        a.failed.to_string(),
        percent(a.budget_burn_percent),
        percent(a.budget_left_percent),
    ]
}

/// The report as blocks: a one-page summary, then the detail.
pub fn layout(r: &Report) -> Vec<Block> {
    let s = &r.summary;
    let cur = &r.cost.currency;
    let mut b = vec![
        Block::Heading(format!("{} availability report {}", r.title, r.period.label)),
        Block::Para(format!(
            "Period {} to {} (UTC). Generated {}.",
            format_ts(r.period.start_ms),
            format_ts(r.period.end_ms),
            format_ts(r.generated_ms)
        )),
        Block::Heading("Summary".into()),
        kv(vec![
            ("Effective availability (what clients got)", percent(s.effective_percent)),
            ("Cloud availability (without genset)", percent(s.cloud_percent)),
            ("SLO", format!("{} ({})", percent(s.slo_percent), if s.meets_slo { "met" } else { "missed" })),
            ("Error budget left", percent(s.budget_left_percent)),
            ("Incidents", s.incidents.to_string()),
            ("MTTD", s.mttd_ms.map(secs).unwrap_or_else(|| "-".into())),
            ("MTTR", s.mttr_ms.map(secs).unwrap_or_else(|| "-".into())),
            ("Requests rescued", s.requests_rescued.to_string()),
            (
                "Last drill",
                match (&s.last_drill, &s.last_drill_verdict) {
                    (Some(n), Some(v)) => format!("{n}: {v}"),
                    _ => "none in the period".into(),
                },
            ),
            ("Cloud spend", money(s.cloud_spend, cur)),
            ("Saved by local serving", money(s.cost_saved, cur)),
            ("Open findings", s.open_findings.len().to_string()),
        ]),
    ];
    for f in &s.open_findings {
        b.push(Block::Para(format!("Finding: {f}")));
    }
    b.push(Block::PageBreak);
    b.push(Block::Heading("Availability".into()));
    b.push(Block::Para(
        "Cloud availability: share of client requests the cloud would have answered without genset. Effective availability: share \
         that got an answer (not 5xx, not 429, not cut off). Budget burn: failed requests as a share of the failures the SLO allows."
            .into(),
    ));
    let mut rows = vec![availability_row("all", &r.overall)];
    rows.extend(r.use_cases.iter().map(|u| availability_row(&u.use_case, &u.availability)));
    b.push(table(&["Use case", "Requests", "Cloud", "Effective", "SLO", "Rescued", "Failed", "Burn", "Budget left"], rows));

    b.push(Block::Heading("Incidents".into()));
    if r.incidents.is_empty() {
        b.push(Block::Para("No incidents in the period.".into()));
    }
    for (i, inc) in r.incidents.iter().enumerate() {
        b.push(Block::Para(format!(
            "Incident {} on {}: {}{}",
            i + 1,
            inc.upstream,
            inc.cause,
            if inc.ongoing { " (ongoing)" } else { "" }
        )));
        b.push(kv(vec![
            ("First failure", format_ts(inc.first_failure_ms)),
            ("Detection (breaker open)", format_ts(inc.detection_ms)),
            ("Flip to failover", opt_ts(inc.flip_ms)),
            ("Recovery (breaker closed)", opt_ts(inc.recovery_ms)),
            ("Flip back to the cloud", opt_ts(inc.flip_back_ms)),
            ("Time to detect", secs(inc.ttd_ms as f64)),
            ("Time to recover", secs(inc.ttr_ms as f64)),
            ("Requests", inc.requests.to_string()),
            ("Rescued", inc.rescued.to_string()),
            ("Served locally", inc.served_locally.to_string()),
            ("Failed", inc.failed.to_string()),
        ]));
    }

    b.push(Block::Heading("Requests and tokens by served-by".into()));
    b.push(table(
        &["Served by", "Requests", "Prompt tokens", "Completion tokens"],
        r.served_by
            .iter()
            .map(|x| vec![x.served_by.clone(), x.requests.to_string(), x.prompt_tokens.to_string(), x.completion_tokens.to_string()])
            .collect(),
    ));
    b.push(Block::Heading("Latency by mode".into()));
    b.push(table(
        &["Mode", "Requests", "p50", "p95", "p99", "TTFB p50", "TTFB p95"],
        r.latency
            .iter()
            .map(|l| {
                vec![l.mode.clone(), l.requests.to_string(), ms(l.p50_ms), ms(l.p95_ms), ms(l.p99_ms), ms(l.ttfb_p50_ms), ms(l.ttfb_p95_ms)]
            })
            .collect(),
    ));
    b.push(Block::Heading("Quality during failover and readiness".into()));
    b.push(table(
        &["Use case", "Served in failover", "Verdict", "Score", "95% interval", "Trend"],
        r.quality
            .iter()
            .map(|q| {
                vec![
                    q.use_case.clone(),
                    q.served_in_failover.to_string(),
                    q.verdict.clone().unwrap_or_else(|| "-".into()),
                    score(q.score),
                    match (q.lower, q.upper) {
                        (Some(l), Some(u)) => format!("{l:.3}-{u:.3}"),
                        _ => "-".into(),
                    },
                    q.trend.map(|t| format!("{t:+.3}")).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
    ));
    b.push(Block::Heading("Drills".into()));
    if r.drills.is_empty() {
        b.push(Block::Para("No drills in the period.".into()));
    } else {
        b.push(table(
            &["Drill", "Kind", "Started", "Use cases", "RTO", "Success", "Verdict"],
            r.drills
                .iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.kind.clone(),
                        format_ts(d.started_ms),
                        d.use_cases.join(" "),
                        d.rto_ms.map(secs).unwrap_or_else(|| "-".into()),
                        d.success_rate.map(|s| percent(s * 100.0)).unwrap_or_else(|| "-".into()),
                        d.verdict.clone(),
                    ]
                })
                .collect(),
        ));
        for d in &r.drills {
            for f in &d.findings {
                b.push(Block::Para(format!("{}: {f}", d.name)));
            }
        }
    }
    b.push(Block::Heading("Cost".into()));
    let mut kvs = vec![("Cloud spend", money(r.cost.cloud_spend, cur)), ("Saved by local serving", money(r.cost.saved, cur))];
    let reasons: Vec<(String, String)> = r.cost.saved_by_reason.iter().map(|(k, v)| (format!("Saved ({k})"), money(*v, cur))).collect();
    let mut block = kv(std::mem::take(&mut kvs));
    if let Block::KeyValues(v) = &mut block {
        v.extend(reasons);
    }
    b.push(block);
    b.push(table(
        &["Model", "Requests", "Prompt tokens", "Completion tokens", "Spend"],
        r.cost
            .by_model
            .iter()
            .map(|c| {
                vec![
                    c.model.clone(),
                    c.requests.to_string(),
                    c.prompt_tokens.to_string(),
                    c.completion_tokens.to_string(),
                    money(c.spend, cur),
                ]
            })
            .collect(),
    ));
    b
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:2rem;color:#111;max-width:70rem}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}\
th{background:#f3f3f3}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:bold}dd{margin:0}\
.pagebreak{break-after:page}\
@media print{body{margin:0;max-width:none;font-size:10pt}h2{break-after:avoid}table,dl{break-inside:avoid}a{color:inherit}}";

/// A standalone HTML page (inline CSS with print styles; the console embeds it as is).
pub fn render_html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(&format!("{} availability report {}", r.title, r.period.label))
    );
    let mut first = true;
    for b in layout(r) {
        match b {
            Block::Heading(t) => {
                let tag = if first { "h1" } else { "h2" };
                first = false;
                let _ = write!(o, "<{tag}>{}</{tag}>", esc(&t));
            }
            Block::Para(t) => {
                let _ = write!(o, "<p>{}</p>", esc(&t));
            }
            Block::KeyValues(kv) => {
                o.push_str("<dl>");
                for (k, v) in kv {
                    let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", esc(&k), esc(&v));
                }
                o.push_str("</dl>");
            }
            Block::Table { headers, rows } => {
                o.push_str("<table><thead><tr>");
                for h in headers {
                    let _ = write!(o, "<th>{}</th>", esc(&h));
                }
                o.push_str("</tr></thead><tbody>");
                for row in rows {
                    o.push_str("<tr>");
                    for c in row {
                        let _ = write!(o, "<td>{}</td>", esc(&c));
                    }
                    o.push_str("</tr>");
                }
                o.push_str("</tbody></table>");
            }
            Block::PageBreak => o.push_str("<div class=\"pagebreak\"></div>"),
        }
    }
    o.push_str("</body></html>\n");
    o
}

pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// One row per figure: `section,subject,metric,value`. Percentages are numbers with two
/// decimals (no `%`), money with two decimals, durations in milliseconds.
pub fn render_csv(r: &Report) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut push = |section: &str, subject: &str, metric: &str, value: String| {
        rows.push([section.into(), subject.into(), metric.into(), value]);
    };
    let p2 = |v: f64| if v.is_finite() { format!("{v:.2}") } else { "inf".into() };
    push("period", &r.period.label, "start", format_ts(r.period.start_ms));
    push("period", &r.period.label, "end", format_ts(r.period.end_ms));
    let mut avail = |subject: &str, a: &Availability| {
        push("availability", subject, "requests", a.requests.to_string());
        push("availability", subject, "failed", a.failed.to_string());
        push("availability", subject, "rescued", a.rescued.to_string());
        push("availability", subject, "cloud_failed", a.cloud_failed.to_string());
        push("availability", subject, "served_locally", a.served_locally.to_string());
        push("availability", subject, "cloud_percent", p2(a.cloud_percent));
        push("availability", subject, "effective_percent", p2(a.effective_percent));
        push("availability", subject, "slo_percent", p2(a.slo_percent));
        push("availability", subject, "meets_slo", a.meets_slo.to_string());
        push("availability", subject, "budget_requests", p2(a.budget_requests));
        push("availability", subject, "budget_burn_percent", p2(a.budget_burn_percent));
        push("availability", subject, "budget_left_percent", p2(a.budget_left_percent));
        push("availability", subject, "cloud_budget_burn_percent", p2(a.cloud_budget_burn_percent));
    };
    avail("all", &r.overall);
    for u in &r.use_cases {
        avail(&u.use_case, &u.availability);
    }
    for (i, inc) in r.incidents.iter().enumerate() {
        let subj = format!("{}#{}", inc.upstream, i + 1);
        push("incident", &subj, "first_failure", format_ts(inc.first_failure_ms));
        push("incident", &subj, "detection", format_ts(inc.detection_ms));
        push("incident", &subj, "flip", opt_ts(inc.flip_ms));
        push("incident", &subj, "recovery", opt_ts(inc.recovery_ms));
        push("incident", &subj, "flip_back", opt_ts(inc.flip_back_ms));
        push("incident", &subj, "ttd_ms", inc.ttd_ms.to_string());
        push("incident", &subj, "ttr_ms", inc.ttr_ms.to_string());
        push("incident", &subj, "requests", inc.requests.to_string());
        push("incident", &subj, "rescued", inc.rescued.to_string());
        push("incident", &subj, "served_locally", inc.served_locally.to_string());
        push("incident", &subj, "failed", inc.failed.to_string());
        push("incident", &subj, "ongoing", inc.ongoing.to_string());
    }
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    push("summary", "all", "incidents", r.summary.incidents.to_string());
    push("summary", "all", "mttd_ms", opt(r.summary.mttd_ms));
    push("summary", "all", "mttr_ms", opt(r.summary.mttr_ms));
    for s in &r.served_by {
        push("served_by", &s.served_by, "requests", s.requests.to_string());
        push("served_by", &s.served_by, "prompt_tokens", s.prompt_tokens.to_string());
        push("served_by", &s.served_by, "completion_tokens", s.completion_tokens.to_string());
    }
    for l in &r.latency {
        push("latency", &l.mode, "requests", l.requests.to_string());
        push("latency", &l.mode, "p50_ms", opt(l.p50_ms));
        push("latency", &l.mode, "p95_ms", opt(l.p95_ms));
        push("latency", &l.mode, "p99_ms", opt(l.p99_ms));
        push("latency", &l.mode, "ttfb_p50_ms", opt(l.ttfb_p50_ms));
        push("latency", &l.mode, "ttfb_p95_ms", opt(l.ttfb_p95_ms));
    }
    let opt3 = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for q in &r.quality {
        push("quality", &q.use_case, "served_in_failover", q.served_in_failover.to_string());
        push("quality", &q.use_case, "verdict", q.verdict.clone().unwrap_or_default());
        push("quality", &q.use_case, "score", opt3(q.score));
        push("quality", &q.use_case, "lower", opt3(q.lower));
        push("quality", &q.use_case, "upper", opt3(q.upper));
        push("quality", &q.use_case, "trend", opt3(q.trend));
    }
    for d in &r.drills {
        push("drill", &d.id, "name", d.name.clone());
        push("drill", &d.id, "kind", d.kind.clone());
        push("drill", &d.id, "started", format_ts(d.started_ms));
        push("drill", &d.id, "verdict", d.verdict.clone());
        push("drill", &d.id, "rto_ms", opt(d.rto_ms));
        push("drill", &d.id, "findings", d.findings.join("; "));
    }
    push("cost", &r.cost.currency, "cloud_spend", p2(r.cost.cloud_spend));
    push("cost", &r.cost.currency, "saved", p2(r.cost.saved));
    for (k, v) in &r.cost.saved_by_reason {
        push("cost", &r.cost.currency, &format!("saved_{k}"), p2(*v));
    }
    for c in &r.cost.by_model {
        push("cost_model", &c.model, "spend", p2(c.spend));
        push("cost_model", &c.model, "prompt_tokens", c.prompt_tokens.to_string());
        push("cost_model", &c.model, "completion_tokens", c.completion_tokens.to_string());
    }
    let mut o = String::from("section,subject,metric,value\n");
    for r in rows {
        let _ = writeln!(o, "{}", r.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
    }
    o
}
