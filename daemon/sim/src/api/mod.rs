//! The simulated API routes. Every route walks the same steps:
//! parse the body → take the active fault (if it matches) → authenticate →
//! report parse errors → answer (see [`crate::answer`]) → render in the
//! route's own format, streaming or not.

mod anthropic;
mod openai;
mod responses;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;

use crate::body::Resp;
use crate::error::ApiError;
use crate::fault::{FaultMode, Shape};
use crate::ids::{Id, STABLE_CREATED, splitmix64, unix_now};
use crate::route::{Flavor, Route};
use crate::state::Shared;

pub(crate) use stream::StreamFault;

/// How a request ends when it does not get a normal response.
pub(crate) enum Exit {
    /// Boxed: this is the error path, and keeps `Result<Resp, Exit>` small.
    Respond(Box<Resp>),
    /// Drop the connection without answering.
    Reset,
}

/// The request as the route handlers see it.
pub(crate) struct ApiCtx<'r> {
    pub(crate) shared: &'r Shared,
    pub(crate) route: Route,
    pub(crate) flavor: Flavor,
    pub(crate) path: &'r str,
    pub(crate) headers: &'r HeaderMap,
    /// `{id}` of `/v1/models/{id}`.
    pub(crate) param: Option<&'r str>,
    /// In `stable_ids` mode: the request's key, from which identifiers are derived.
    pub(crate) stable: Option<u64>,
    /// Identifiers made for this request so far (each derived one differs from the others).
    pub(crate) minted: AtomicU64,
}

impl ApiCtx<'_> {
    /// An identifier for this answer: random, or in `stable_ids` mode the same for every
    /// identical request.
    pub(crate) fn id(&self, prefix: &str, random_chars: usize) -> Id {
        match self.stable {
            Some(key) => Id::derived(prefix, random_chars, splitmix64(key ^ self.minted.fetch_add(1, Ordering::Relaxed))),
            None => Id::new(prefix, random_chars),
        }
    }

    /// The answer's `created` time: now, or a fixed time in `stable_ids` mode.
    pub(crate) fn created(&self) -> u64 {
        if self.stable.is_some() { STABLE_CREATED } else { unix_now() }
    }

    pub(crate) fn fail(&self, e: ApiError) -> Exit {
        Exit::Respond(Box::new(e.into_response(self.flavor)))
    }

    /// Applies the active fault, if it matches this request, then checks the
    /// API key. Faults come first: a broken upstream fails whatever the key.
    pub(crate) async fn gate(&self, shape: Shape, prompt_tokens: u64, model: &str) -> Result<Option<StreamFault>, Exit> {
        let mut stream_fault = None;
        if let Some(t) = self.shared.faults.take(self.path, shape) {
            self.shared.stats.record_fault();
            tracing::debug!(mode = %t.mode, path = self.path, "fault applied");
            let server = |status| Err(self.fail(ApiError::Server { status, retry_after: t.retry_after }));
            match t.mode {
                FaultMode::Http500 => return server(500),
                FaultMode::Http502 => return server(502),
                FaultMode::Http503 => return server(503),
                FaultMode::Http529 => return server(529),
                FaultMode::RateLimit => {
                    return Err(self.fail(ApiError::RateLimited {
                        model: if model.is_empty() { "this model".to_owned() } else { model.to_owned() },
                        retry_after: t.retry_after.unwrap_or(1),
                    }));
                }
                FaultMode::Quota => return Err(self.fail(ApiError::Quota)),
                FaultMode::Unauthorized => {
                    return Err(self.fail(ApiError::InvalidKey { masked: "********".to_owned() }));
                }
                FaultMode::Forbidden => return Err(self.fail(ApiError::Forbidden)),
                FaultMode::ContextLength => {
                    return Err(self.fail(ApiError::ContextLength { prompt_tokens }));
                }
                FaultMode::ContentPolicy => return Err(self.fail(ApiError::ContentPolicy)),
                FaultMode::RejectPrefill => return Err(self.fail(ApiError::PrefillUnsupported)),
                FaultMode::Reset => return Err(Exit::Reset),
                FaultMode::Hang => self.wait_release(t.generation).await,
                FaultMode::SlowFirstToken => {
                    tokio::time::sleep(t.delay.unwrap_or(Duration::from_millis(1000))).await;
                }
                FaultMode::StallMidStream | FaultMode::CutMidStream | FaultMode::MalformedChunk | FaultMode::MissingDone => {
                    stream_fault =
                        Some(StreamFault { mode: t.mode, after_chunks: t.after_chunks, delay: t.delay, generation: t.generation });
                }
                // Never taken by a request: it acts on the listener.
                FaultMode::Refuse => {}
            }
        }
        self.shared.authorize(self.flavor, self.headers).map_err(|e| self.fail(e))?;
        Ok(stream_fault)
    }

    /// Waits until the fault is explicitly set again, cleared or reset.
    async fn wait_release(&self, generation: u64) {
        let mut rx = self.shared.faults.release_rx();
        // An error means the simulator is shutting down; the task is about
        // to be dropped anyway.
        let _ = rx.wait_for(|g| *g != generation).await;
    }
}

/// Answers one API request.
pub(crate) async fn dispatch(cx: &ApiCtx<'_>, body: &Bytes) -> Result<Resp, Exit> {
    match cx.route {
        Route::ChatCompletions => openai::chat(cx, body).await,
        Route::Completions => openai::completions(cx, body).await,
        Route::Embeddings => openai::embeddings(cx, body).await,
        Route::Responses => responses::responses(cx, body).await,
        Route::Models => models(cx).await,
        Route::Model => model(cx).await,
        Route::Messages => anthropic::messages(cx, body).await,
        Route::CountTokens => anthropic::count_tokens(cx, body).await,
    }
}

async fn models(cx: &ApiCtx<'_>) -> Result<Resp, Exit> {
    cx.gate(Shape::default(), 0, "").await?;
    Ok(match cx.flavor {
        Flavor::OpenAi => openai::model_list(),
        Flavor::Anthropic => anthropic::model_list(),
    })
}

async fn model(cx: &ApiCtx<'_>) -> Result<Resp, Exit> {
    cx.gate(Shape::default(), 0, "").await?;
    let id = cx.param.unwrap_or("");
    let found = match cx.flavor {
        Flavor::OpenAi => openai::model_object(id),
        Flavor::Anthropic => anthropic::model_object(id),
    };
    found.ok_or_else(|| cx.fail(ApiError::ModelNotFound(id.to_owned())))
}

/// Parse errors from serde, in the wording the APIs use.
pub(crate) fn bad_json(e: serde_json::Error) -> ApiError {
    ApiError::BadJson(e.to_string())
}

/// A required string field, present and non-empty.
pub(crate) fn required<'a>(
    value: Option<std::borrow::Cow<'a, str>>,
    name: &'static str,
    flavor: Flavor,
) -> Result<std::borrow::Cow<'a, str>, ApiError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::invalid(
            match flavor {
                Flavor::OpenAi => format!("you must provide a {name} parameter"),
                Flavor::Anthropic => format!("{name}: Field required"),
            },
            name,
        )),
    }
}

/// `max_tokens` and its relatives must be at least 1 when given.
pub(crate) fn check_max_tokens(value: Option<u64>, name: &'static str, flavor: Flavor) -> Result<Option<u64>, ApiError> {
    match value {
        Some(0) => Err(ApiError::invalid(
            match flavor {
                Flavor::OpenAi => format!("Invalid '{name}': integer below minimum value. Expected a value >= 1, but got 0 instead."),
                Flavor::Anthropic => format!("{name}: Input should be greater than or equal to 1"),
            },
            name,
        )),
        v => Ok(v),
    }
}
