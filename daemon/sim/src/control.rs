//! The control endpoints under `/_sim/` (no auth): faults, stats, keys,
//! config. Served on the API port and on `--control-listen` when given.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::body::{Resp, json_value};
use crate::fault::{Fault, FaultMode};
use crate::server::{ConnCtx, ListenerKind, ReadError, read_body};
use crate::state::Shared;

const MAX_CONTROL_BODY: usize = 1024 * 1024;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn error(status: StatusCode, message: &str) -> Resp {
    json_value(status, &ErrorBody { error: message })
}

#[derive(Serialize)]
struct Ok_<'a, T: Serialize> {
    ok: bool,
    #[serde(flatten)]
    data: &'a T,
}

fn ok<T: Serialize>(data: &T) -> Resp {
    json_value(StatusCode::OK, &Ok_ { ok: true, data })
}

#[derive(Serialize)]
struct Nothing {}

#[derive(Serialize)]
struct FaultView {
    fault: Option<Fault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigRequest {
    token_delay_ms: Option<u64>,
    stable_ids: Option<bool>,
}

#[derive(Serialize)]
struct ConfigView {
    token_delay_ms: u64,
    stable_ids: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    key: String,
}

#[derive(Serialize)]
struct Health {
    api_url: String,
    control_url: Option<String>,
    fault: Option<Fault>,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// A control request that failed: status and message.
struct Failure(StatusCode, String);

impl From<Failure> for Resp {
    fn from(f: Failure) -> Self {
        error(f.0, &f.1)
    }
}

pub(crate) async fn handle(shared: &Arc<Shared>, ctx: &ConnCtx, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, MAX_CONTROL_BODY).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
        Err(ReadError::Io) => return error(StatusCode::BAD_REQUEST, "could not read the body"),
    };
    let path = parts.uri.path();
    let path = path.strip_suffix('/').unwrap_or(path);
    let result = match (&parts.method, path) {
        (&Method::GET, "/_sim" | "/_sim/health") => Ok(ok(&Health {
            api_url: format!("http://{}", shared.api_addr),
            control_url: shared.control_addr.map(|a| format!("http://{a}")),
            fault: shared.faults.current(),
        })),
        (&Method::GET, "/_sim/fault") => Ok(ok(&FaultView { fault: shared.faults.current() })),
        (&Method::POST, "/_sim/fault") => set_fault(shared, ctx, &body).await,
        (&Method::DELETE, "/_sim/fault") => match shared.set_fault(None).await {
            Ok(()) => Ok(ok(&Nothing {})),
            Err(e) => Err(Failure(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))),
        },
        (&Method::GET, "/_sim/stats") => Ok(json_value(StatusCode::OK, &shared.stats.snapshot())),
        (&Method::POST, "/_sim/reset") => match shared.reset().await {
            Ok(()) => Ok(ok(&Nothing {})),
            Err(e) => Err(Failure(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))),
        },
        (&Method::GET, "/_sim/config") => Ok(ok(&config_view(shared))),
        (&Method::POST, "/_sim/config") => parse::<ConfigRequest>(&body).map(|c| {
            if let Some(ms) = c.token_delay_ms {
                shared.set_token_delay(Duration::from_millis(ms));
            }
            if let Some(on) = c.stable_ids {
                shared.set_stable_ids(on);
            }
            ok(&config_view(shared))
        }),
        (&Method::POST, "/_sim/keys/revoke") => parse::<RevokeRequest>(&body).map(|r| {
            shared.revoke(&r.key);
            ok(&Nothing {})
        }),
        (_, "/_sim" | "/_sim/health" | "/_sim/fault" | "/_sim/stats" | "/_sim/reset" | "/_sim/config" | "/_sim/keys/revoke") => {
            Err(Failure(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".into()))
        }
        _ => Err(Failure(StatusCode::NOT_FOUND, "unknown control endpoint".into())),
    };
    result.unwrap_or_else(Resp::from)
}

fn config_view(shared: &Shared) -> ConfigView {
    ConfigView { token_delay_ms: shared.token_delay().as_millis().try_into().unwrap_or(u64::MAX), stable_ids: shared.stable_ids() }
}

async fn set_fault(shared: &Shared, ctx: &ConnCtx, body: &[u8]) -> Result<Resp, Failure> {
    let fault: Fault = serde_json::from_slice(body).map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("invalid fault: {e}")))?;
    fault.validate().map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    let shares_api_port = ctx.kind == ListenerKind::Api;
    let refuse = fault.mode == FaultMode::Refuse;
    if refuse && shares_api_port && fault.delay_ms.is_none() {
        return Err(Failure(
            StatusCode::CONFLICT,
            "`refuse` without `delay_ms` would close the port this request came in on, and nothing \
             could clear it; start genset-sim with --control-listen and send it there, or set \
             delay_ms to refuse for a while"
                .into(),
        ));
    }
    if refuse && shares_api_port {
        // This connection carries the answer: keep it through the refuse,
        // then close it.
        ctx.exempt.store(true, Ordering::Release);
    }
    shared.set_fault(Some(fault.clone())).await.map_err(|e| Failure(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))?;
    let mut resp = ok(&FaultView { fault: Some(fault) });
    if refuse && shares_api_port {
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp)
}
