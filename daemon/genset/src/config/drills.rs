//! Configuration of drills and reports: `[[drills]]` (scheduled drills), `[drill_verdict]`
//! (what a drill must show to pass), `[reports]` (the SLO) and `[pricing]` (the price table).
//!
//! ```toml
//! [[drills]]
//! name = "weekly-support"
//! kind = "live"                 # live | replay
//! use_cases = ["support"]
//! duration = "5m"               # live: how long traffic is served locally
//! schedule = "0 0 3 * * Sun"    # cron: sec min hour day-of-month month day-of-week (UTC)
//!
//! [[drills]]
//! name = "nightly-replay"
//! kind = "replay"
//! use_cases = ["support", "extract"]
//! window = "1d"                 # replay: the recorded traffic of the last day
//! speed = 2.0                   # replay at 2x its recorded rate
//! max_requests = 200
//! schedule = "0 30 2 * * *"
//!
//! [drill_verdict]
//! min_success_rate = 0.99       # below: fail
//! max_rto = "10s"               # time to the first local answer; above: fail
//! min_quality = 0.6             # mean score against the cloud's answers; below: finding
//! min_headroom = 1.0            # replay: capacity / recorded peak; below: fail
//!
//! [reports]
//! slo = 99.9                    # availability objective, percent
//! title = "Acme Corp"
//! currency = "USD"
//!
//! [pricing]
//! "gpt-4o" = { input_per_mtok = 2.5, output_per_mtok = 10 }
//! default = { input_per_mtok = 1, output_per_mtok = 4 }   # local answers of use cases with no priced cloud model
//! ```

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    pub name: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default)]
    pub use_cases: Vec<String>,
    pub duration: Option<String>,
    pub window: Option<String>,
    pub speed: Option<f64>,
    pub max_requests: Option<usize>,
    pub schedule: Option<String>,
}

fn default_kind() -> String {
    "live".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDrillVerdict {
    pub min_success_rate: f64,
    pub max_rto: String,
    pub min_quality: f64,
    pub min_headroom: f64,
}

impl Default for RawDrillVerdict {
    fn default() -> Self {
        RawDrillVerdict { min_success_rate: 0.99, max_rto: "10s".into(), min_quality: 0.5, min_headroom: 1.0 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReports {
    pub slo: f64,
    pub title: String,
    pub currency: String,
    /// Scheduled delivery: a cron expression (UTC, with seconds), e.g. "0 0 6 1 * *".
    pub schedule: Option<String>,
    /// Where scheduled reports are POSTed (JSON with the figures and the PDF in base64).
    pub webhook: Option<String>,
    /// What a scheduled report covers: "previous-month" | "previous-week" | "previous-day".
    pub scheduled_period: String,
}

impl Default for RawReports {
    fn default() -> Self {
        RawReports {
            slo: 99.9,
            title: "genset".into(),
            currency: "USD".into(),
            schedule: None,
            webhook: None,
            scheduled_period: "previous-month".into(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillKind {
    Live,
    Replay,
}

impl DrillKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillKind::Live => "live",
            DrillKind::Replay => "replay",
        }
    }
}

impl FromStr for DrillKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(DrillKind::Live),
            "replay" => Ok(DrillKind::Replay),
            o => Err(format!("unknown drill kind {o:?}: expected live or replay")),
        }
    }
}

/// A configured (scheduled) drill.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    pub name: String,
    pub kind: DrillKind,
    pub use_cases: Vec<String>,
    pub duration: Duration,
    pub window: Duration,
    pub speed: f64,
    pub max_requests: usize,
    /// The cron expression as written, and parsed.
    pub schedule: Option<(String, cron::Schedule)>,
}

#[derive(Debug, Clone)]
pub struct DrillVerdictConfig {
    pub min_success_rate: f64,
    pub max_rto: Duration,
    pub min_quality: f64,
    pub min_headroom: f64,
}

#[derive(Debug, Clone)]
pub struct ReportsConfig {
    pub slo: f64,
    pub title: String,
    pub currency: String,
    pub prices: BTreeMap<String, genset_report::Price>,
    /// Scheduled delivery: (expression, schedule, webhook URL, what each report covers).
    pub delivery: Option<ReportDelivery>,
}

/// `[reports] schedule` + `webhook`.
#[derive(Debug, Clone)]
pub struct ReportDelivery {
    pub expr: String,
    pub schedule: cron::Schedule,
    pub webhook: String,
    pub period: ScheduledPeriod,
}

/// What a scheduled report covers, relative to when it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduledPeriod {
    PreviousMonth,
    PreviousWeek,
    PreviousDay,
}

pub const DEFAULT_DURATION: Duration = Duration::from_secs(300);
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(86_400);
pub const DEFAULT_MAX_REQUESTS: usize = 200;

fn duration(path: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s).map_err(|e| ConfigError::new(path, format!("not a duration ({e}): {s:?}")))
}

pub fn validate(
    drills: Vec<RawDrill>,
    verdict: RawDrillVerdict,
    reports: RawReports,
    pricing: BTreeMap<String, RawPrice>,
    use_case_names: &[String],
) -> Result<(Vec<DrillConfig>, DrillVerdictConfig, ReportsConfig), ConfigError> {
    let mut out = Vec::new();
    for (i, d) in drills.into_iter().enumerate() {
        let p = |k: &str| format!("drills[{i}].{k}");
        if d.name.is_empty() || !d.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ConfigError::new(p("name"), "must be non-empty and use only letters, digits, '-' and '_'"));
        }
        if out.iter().any(|o: &DrillConfig| o.name == d.name) {
            return Err(ConfigError::new(p("name"), format!("duplicate drill name {:?}", d.name)));
        }
        let kind: DrillKind = d.kind.parse().map_err(|e: String| ConfigError::new(p("kind"), e))?;
        if d.use_cases.is_empty() {
            return Err(ConfigError::new(p("use_cases"), "name at least one use case"));
        }
        for (j, u) in d.use_cases.iter().enumerate() {
            if !use_case_names.iter().any(|n| n == u) {
                return Err(ConfigError::new(format!("drills[{i}].use_cases[{j}]"), format!("no use case named {u:?}")));
            }
        }
        let speed = d.speed.unwrap_or(1.0);
        if !(speed.is_finite() && speed > 0.0 && speed <= 100.0) {
            return Err(ConfigError::new(p("speed"), "must be a number in (0, 100]"));
        }
        let schedule = match d.schedule {
            Some(s) => {
                let parsed = cron::Schedule::from_str(&s).map_err(|e| {
                    ConfigError::new(
                        p("schedule"),
                        format!("not a cron expression ({e}): {s:?} (sec min hour day month weekday, e.g. \"0 0 3 * * Sun\")"),
                    )
                })?;
                Some((s, parsed))
            }
            None => None,
        };
        out.push(DrillConfig {
            name: d.name,
            kind,
            use_cases: d.use_cases,
            duration: d.duration.as_deref().map(|s| duration(&p("duration"), s)).transpose()?.unwrap_or(DEFAULT_DURATION),
            window: d.window.as_deref().map(|s| duration(&p("window"), s)).transpose()?.unwrap_or(DEFAULT_WINDOW),
            speed,
            max_requests: d.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS).max(1),
            schedule,
        });
    }
    let unit = |k: &str, v: f64| {
        if (0.0..=1.0).contains(&v) { Ok(v) } else { Err(ConfigError::new(format!("drill_verdict.{k}"), "must be within [0, 1]")) }
    };
    let v = DrillVerdictConfig {
        min_success_rate: unit("min_success_rate", verdict.min_success_rate)?,
        max_rto: duration("drill_verdict.max_rto", &verdict.max_rto)?,
        min_quality: unit("min_quality", verdict.min_quality)?,
        min_headroom: if verdict.min_headroom.is_finite() && verdict.min_headroom >= 0.0 {
            verdict.min_headroom
        } else {
            return Err(ConfigError::new("drill_verdict.min_headroom", "must be a non-negative number"));
        },
    };
    if !(reports.slo > 0.0 && reports.slo <= 100.0) {
        return Err(ConfigError::new("reports.slo", "must be a percentage in (0, 100], e.g. 99.9"));
    }
    let mut prices = BTreeMap::new();
    for (model, pr) in pricing {
        if !(pr.input_per_mtok.is_finite() && pr.input_per_mtok >= 0.0 && pr.output_per_mtok.is_finite() && pr.output_per_mtok >= 0.0) {
            return Err(ConfigError::new(format!("pricing.{model:?}"), "prices must be non-negative numbers"));
        }
        prices.insert(model, genset_report::Price { input_per_mtok: pr.input_per_mtok, output_per_mtok: pr.output_per_mtok });
    }
    let delivery = match (&reports.schedule, &reports.webhook) {
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError::new("reports.webhook", "reports.schedule is set: give the webhook to deliver to")),
        (None, Some(_)) => return Err(ConfigError::new("reports.schedule", "reports.webhook is set: give the cron schedule")),
        (Some(expr), Some(url)) => {
            let schedule = cron::Schedule::from_str(expr)
                .map_err(|e| ConfigError::new("reports.schedule", format!("not a cron expression ({e}): {expr:?}")))?;
            let parsed = reqwest::Url::parse(url).map_err(|e| ConfigError::new("reports.webhook", format!("not an absolute URL ({e})")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::new("reports.webhook", "must be an http:// or https:// URL"));
            }
            let period = match reports.scheduled_period.as_str() {
                "previous-month" => ScheduledPeriod::PreviousMonth,
                "previous-week" => ScheduledPeriod::PreviousWeek,
                "previous-day" => ScheduledPeriod::PreviousDay,
                o => {
                    return Err(ConfigError::new(
                        "reports.scheduled_period",
                        format!("unknown period {o:?}: expected previous-month, previous-week or previous-day"),
                    ));
                }
            };
            Some(ReportDelivery { expr: expr.clone(), schedule, webhook: url.clone(), period })
        }
    };
    let r = ReportsConfig { slo: reports.slo, title: reports.title, currency: reports.currency, prices, delivery };
    Ok((out, v, r))
}
