//! Recorded traffic: filtered, newest first, keyset-paginated on (ts_ms, id) (never a count,
//! never an offset), and one exchange as stored.

use actix_web::{HttpRequest, web};
use askama::Template;
use genset::admin::AdminState;
use serde::Deserialize;

use super::{Layout, PageResult, internal, not_found, qv, render, user};
use crate::Console;
use crate::authz::Role;
use crate::db::{self, ExchangeSummary};
use crate::text::{self, utc};

pub const PAGE: i64 = 50;

pub struct Row {
    pub id: i64,
    pub ts: String,
    pub use_case: String,
    pub served_by: String,
    pub model: String,
    pub endpoint: String,
    pub status: i64,
    pub completed: bool,
    pub failed: bool,
    pub total_ms: String,
    pub tokens: String,
}

fn tokens(p: Option<i64>, c: Option<i64>) -> String {
    match (p, c) {
        (None, None) => "—".into(),
        (p, c) => format!(
            "{} / {}",
            p.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
            c.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
        ),
    }
}

pub fn rows(xs: &[ExchangeSummary]) -> Vec<Row> {
    xs.iter()
        .map(|x| Row {
            id: x.id,
            ts: utc(x.ts_ms),
            use_case: x.use_case.clone(),
            served_by: x.served_by.clone(),
            model: x.model.clone().unwrap_or_else(|| "—".into()),
            endpoint: x.endpoint.clone(),
            status: x.status,
            completed: x.completed,
            failed: crate::rollup::is_error(x.status, x.completed),
            total_ms: format!("{:.0}", x.total_ms),
            tokens: tokens(x.prompt_tokens, x.completion_tokens),
        })
        .collect()
}

#[derive(Deserialize, Default)]
pub struct TrafficParams {
    use_case: Option<String>,
    served_by: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<String>,
}

/// The filters as the form shows them back.
pub struct Filters {
    use_case: String,
    served_by: String,
    status: String,
    from: String,
    to: String,
    paged: bool,
}

#[derive(Template)]
#[template(path = "traffic.html")]
struct TrafficPage {
    l: Layout,
    f: Filters,
    rows: Vec<Row>,
    use_cases: Vec<String>,
    served_by: Vec<String>,
    can_detail: bool,
    error: Option<String>,
    next_link: Option<String>,
    first_link: String,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

pub async fn list(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>) -> PageResult {
    let a = user(&req)?;
    let p = web::Query::<TrafficParams>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let mut error = None;
    let mut q = db::TrafficQuery { limit: PAGE, ..Default::default() };
    q.use_case = nonempty(&p.use_case);
    q.served_by = nonempty(&p.served_by);
    if let Some(s) = nonempty(&p.status) {
        match s.parse::<i64>() {
            Ok(v) if (100..=599).contains(&v) => q.status = Some(v),
            _ => error = Some("Status: a three-digit HTTP status, e.g. 500.".to_string()),
        }
    }
    for (field, value, slot) in [("From", &p.from, &mut q.since_ms), ("To", &p.to, &mut q.until_ms)] {
        if let Some(v) = nonempty(value) {
            match text::parse_utc(&v) {
                Some(ms) => *slot = Some(ms),
                None => error = Some(format!("{field}: a UTC date and time, e.g. 2026-11-24T10:00.")),
            }
        }
    }
    q.before = nonempty(&p.before).and_then(|b| parse_cursor(&b));
    let found = db::list_traffic(&st.store, &q).await.map_err(internal)?;
    let cfg = st.config.load();
    let mut base = String::from("/traffic?");
    for (k, v) in [("use_case", &p.use_case), ("served_by", &p.served_by), ("status", &p.status), ("from", &p.from), ("to", &p.to)] {
        if let Some(v) = nonempty(v) {
            base.push_str(&format!("{k}={}&", qv(&v)));
        }
    }
    let next_link = (found.len() as i64 == PAGE).then(|| found.last().map(|r| format!("{base}before={}_{}", r.ts_ms, r.id))).flatten();
    let mut use_cases: Vec<String> = cfg.use_cases.iter().map(|u| u.name.clone()).collect();
    use_cases.push(genset::classify::UNCLASSIFIED.into());
    // What can serve (the configuration) and what did lately (the rollup's last day).
    let mut served_by: Vec<String> =
        cfg.upstreams.iter().map(|u| u.name.clone()).chain(cfg.models.iter().map(|m| format!("local:{}", m.name))).collect();
    for s in db::served_by_values(&st.store, console.now_ms() - 24 * 3_600_000).await.map_err(internal)? {
        if !served_by.contains(&s) {
            served_by.push(s);
        }
    }
    for m in crate::rollup::tail(&st.store).await.map_err(internal)? {
        if !served_by.contains(&m.served_by) {
            served_by.push(m.served_by);
        }
    }
    if let Some(s) = &q.served_by
        && !served_by.contains(s)
    {
        served_by.push(s.clone());
    }
    let page = TrafficPage {
        l: Layout::new("Traffic", "traffic", Some(&a)),
        f: Filters {
            use_case: q.use_case.clone().unwrap_or_default(),
            served_by: q.served_by.clone().unwrap_or_default(),
            status: nonempty(&p.status).unwrap_or_default(),
            from: nonempty(&p.from).unwrap_or_default(),
            to: nonempty(&p.to).unwrap_or_default(),
            paged: q.before.is_some(),
        },
        rows: rows(&found),
        use_cases,
        served_by,
        can_detail: a.role >= Role::Operator,
        error,
        next_link,
        first_link: base.trim_end_matches(['&', '?']).to_string(),
    };
    render(&page)
}

/// `before=<ts_ms>_<id>`.
fn parse_cursor(s: &str) -> Option<(i64, i64)> {
    let (ts, id) = s.split_once('_')?;
    Some((ts.parse().ok()?, id.parse().ok()?))
}

#[derive(Template)]
#[template(path = "exchange.html")]
struct ExchangePage {
    l: Layout,
    x: genset::store::ExchangeRecord,
    ts: String,
    model: String,
    ttfb: String,
    total: String,
    tokens: String,
    client_key: String,
    virtual_key: String,
    request_id: String,
    rescue: String,
    mode: String,
    request_body: String,
    response_body: String,
}

/// The most of a body the page shows.
const MAX_SHOWN: usize = 256 * 1024;

fn show_body(b: &Option<String>) -> String {
    let Some(b) = b else { return "(not recorded)".into() };
    let pretty = serde_json::from_str::<serde_json::Value>(b).ok().and_then(|v| serde_json::to_string_pretty(&v).ok());
    let s = pretty.as_deref().unwrap_or(b);
    if s.len() > MAX_SHOWN {
        let end = s.floor_char_boundary(MAX_SHOWN);
        format!("{}\n… ({} more bytes not shown)", &s[..end], s.len() - end)
    } else {
        s.to_string()
    }
}

pub async fn detail(req: HttpRequest, st: web::Data<AdminState>, id: web::Path<String>) -> PageResult {
    let a = user(&req)?;
    let id: i64 = id.parse().map_err(|_| not_found("No such exchange."))?;
    let Some(x) = st.store.get_exchange(id).await.map_err(internal)? else {
        return Err(not_found("No such exchange."));
    };
    let page = ExchangePage {
        l: Layout::new(format!("Exchange {id}"), "traffic", Some(&a)),
        ts: utc(x.ts_ms),
        model: x.model.clone().unwrap_or_else(|| "—".into()),
        ttfb: x.ttfb_ms.map(|v| format!("{v:.1}")).unwrap_or_else(|| "—".into()),
        total: format!("{:.1}", x.total_ms),
        tokens: tokens(x.prompt_tokens, x.completion_tokens),
        client_key: x.client_key_hash.as_deref().map(|h| format!("salted hash {}", text::last4(h))).unwrap_or_else(|| "—".into()),
        virtual_key: x.virtual_key_id.clone().unwrap_or_else(|| "—".into()),
        request_id: x.request_id.clone().unwrap_or_else(|| "—".into()),
        rescue: x.rescue.clone().unwrap_or_else(|| "—".into()),
        mode: x.mode.clone().unwrap_or_else(|| "—".into()),
        request_body: show_body(&x.request_body),
        response_body: show_body(&x.response_body),
        x,
    };
    render(&page)
}
