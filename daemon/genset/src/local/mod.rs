//! The OpenAI and Anthropic API surfaces for local models.
//!
//! The proxy calls [`serve`] when a request targets a local model (`model: "local/<name>"`
//! or header `x-genset-route: local`) or when the route plan fails over to one. It gets back
//! the status, content type and body (whole or streamed) in the API's own format; HTTP,
//! authentication, recording (it tees [`LocalBody`]) and the `x-genset-served-by` header
//! ([`served_by`]) stay with the proxy.
//!
//! **Architecture Invariant:** errors before the first byte come back as `Err(ApiError)`, so
//! the caller can still fail over or answer a clean error status; after the first byte a
//! failure ends the stream with the API's error event (OpenAI `data: {"error":…}`, Anthropic
//! `event: error`), never with `[DONE]` or `message_stop`.

pub mod render;
pub mod request;
pub mod tools;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use genset_engine::{Engine, EngineError, FinishReason, GenerateEvent, Generation, Priority, Prompt, Usage};
use rand::Rng;
use serde_json::{Value, json};

use crate::api::error::{ApiError, ErrorKind, ErrorSource};
use render::{AnthropicEvents, Meta, OpenAiChunks, OpenAiObject};
use tools::{Call, Splitter};

/// The API operation a local request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalEndpoint {
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/completions`
    OpenAiCompletions,
    /// `POST /v1/embeddings`
    OpenAiEmbeddings,
    /// `POST /v1/messages`
    AnthropicMessages,
    /// `POST /v1/messages/count_tokens`
    AnthropicCountTokens,
}

impl LocalEndpoint {
    /// The endpoint for an inbound path, if local models serve it.
    pub fn from_path(path: &str) -> Option<Self> {
        Some(match path {
            "/v1/chat/completions" => LocalEndpoint::OpenAiChat,
            "/v1/completions" => LocalEndpoint::OpenAiCompletions,
            "/v1/embeddings" => LocalEndpoint::OpenAiEmbeddings,
            "/v1/messages" => LocalEndpoint::AnthropicMessages,
            "/v1/messages/count_tokens" => LocalEndpoint::AnthropicCountTokens,
            _ => return None,
        })
    }

    pub fn flavor(self) -> crate::api::error::Flavor {
        match self {
            LocalEndpoint::AnthropicMessages | LocalEndpoint::AnthropicCountTokens => crate::api::error::Flavor::Anthropic,
            _ => crate::api::error::Flavor::OpenAi,
        }
    }
}

pub type LocalStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pub enum LocalBody {
    Full(Bytes),
    Stream(LocalStream),
}

impl std::fmt::Debug for LocalBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalBody::Full(b) => f.debug_tuple("Full").field(&b.len()).finish(),
            LocalBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

#[derive(Debug)]
pub struct LocalResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: LocalBody,
}

pub const JSON: &str = "application/json";
pub const EVENT_STREAM: &str = "text/event-stream";

/// The `x-genset-served-by` value for answers of `engine`.
pub fn served_by(engine: &dyn Engine) -> String {
    format!("local:{}", engine.name())
}

/// The local model a `model` field names explicitly (`local/<name>`).
pub fn explicit_model(model: &str) -> Option<&str> {
    model.strip_prefix("local/").filter(|n| !n.is_empty())
}

/// Map an engine error to the API error the client sees.
pub fn api_error(e: &EngineError, model: &str) -> ApiError {
    match e {
        EngineError::Overloaded { retry_after } => ApiError::new(
            ErrorKind::Overloaded,
            format!("local model {model} is at capacity; retry after {}s", retry_after.as_secs().max(1)),
        )
        .with_retry_after(*retry_after),
        EngineError::QueueTimeout { waited, retry_after } => {
            ApiError::new(ErrorKind::Overloaded, format!("local model {model} had no free slot within {}s", waited.as_secs()))
                .with_retry_after(*retry_after)
        }
        EngineError::ContextTooLong { prompt_tokens, context } => ApiError::invalid(format!(
            "This model's maximum context length is {context} tokens. However, your messages resulted in {prompt_tokens} tokens."
        ))
        .with_code("context_length_exceeded")
        .with_param("messages"),
        EngineError::Unsupported(what) => {
            ApiError::invalid(format!("local model {model} does not support {what}")).with_code("unsupported_feature")
        }
        EngineError::InvalidRequest(m) => ApiError::invalid(m.clone()),
        EngineError::Unavailable(m) => ApiError::new(ErrorKind::UpstreamUnavailable, format!("local model {model} is unavailable: {m}")),
        EngineError::Upstream { status, message } => {
            let kind = match status {
                400 | 404 | 413 | 422 => ErrorKind::InvalidRequest,
                429 => ErrorKind::RateLimited,
                503 => ErrorKind::Overloaded,
                _ => ErrorKind::UpstreamUnavailable,
            };
            let mut err = ApiError::new(kind, format!("model server for {model} answered {status}: {message}"));
            if kind == ErrorKind::Overloaded || kind == ErrorKind::RateLimited {
                err = err.with_retry_after(Duration::from_secs(1)).with_source(ErrorSource::Upstream);
            }
            err
        }
        EngineError::Internal(m) => ApiError::new(ErrorKind::Internal, format!("local model {model} failed: {m}")),
    }
}

fn new_id(prefix: &str) -> String {
    let suffix: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(24).map(char::from).collect();
    format!("{prefix}{suffix}")
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn full(v: &Value) -> LocalResponse {
    LocalResponse { status: 200, content_type: JSON, body: LocalBody::Full(Bytes::from(v.to_string())) }
}

/// Serve one request with a local model. `body` is the request JSON as the client sent it.
pub async fn serve(engine: Arc<dyn Engine>, endpoint: LocalEndpoint, body: &Value, priority: Priority) -> Result<LocalResponse, ApiError> {
    let model = engine.name().to_owned();
    match endpoint {
        LocalEndpoint::OpenAiEmbeddings => {
            let req = request::openai_embeddings(body)?;
            let out = engine.embed(req.input).await.map_err(|e| api_error(&e, &model))?;
            Ok(full(&render::embeddings_list(&model, &out.vectors, out.prompt_tokens, req.base64)))
        }
        LocalEndpoint::AnthropicCountTokens => {
            let parsed = request::anthropic_messages(body, priority, true)?;
            let n = engine.count_tokens_async(&parsed.request.prompt).await.map_err(|e| api_error(&e, &model))?;
            Ok(full(&json!({"input_tokens": n})))
        }
        LocalEndpoint::OpenAiChat | LocalEndpoint::OpenAiCompletions | LocalEndpoint::AnthropicMessages => {
            let parsed = match endpoint {
                LocalEndpoint::OpenAiChat => request::openai_chat(body, priority)?,
                LocalEndpoint::OpenAiCompletions => request::openai_completion(body, priority)?,
                _ => request::anthropic_messages(body, priority, false)?,
            };
            generate(engine, endpoint, parsed, model).await
        }
    }
}

/// Wait for the generation to start: admission errors, queue timeouts and remote failures
/// before the first byte become `Err`, so the caller can still fail over.
async fn started(g: &mut Generation, model: &str) -> Result<Usage, ApiError> {
    match g.next().await {
        Some(GenerateEvent::Started { prompt_tokens, cached_tokens }) => Ok(Usage { prompt_tokens, cached_tokens, completion_tokens: 0 }),
        Some(GenerateEvent::Error(e)) => Err(api_error(&e, model)),
        Some(other) => Err(ApiError::new(ErrorKind::Internal, format!("local model {model} began with {other:?}"))),
        None => Err(ApiError::new(ErrorKind::Internal, format!("local model {model} produced nothing"))),
    }
}

async fn generate(
    engine: Arc<dyn Engine>,
    endpoint: LocalEndpoint,
    parsed: request::Parsed,
    model: String,
) -> Result<LocalResponse, ApiError> {
    let chat = matches!(parsed.request.prompt, Prompt::Chat { .. });
    let mut generation = engine.submit(parsed.request).map_err(|e| api_error(&e, &model))?;
    let start_usage = started(&mut generation, &model).await?;
    let (prefix, object) = match endpoint {
        LocalEndpoint::AnthropicMessages => ("msg_", OpenAiObject::Chat),
        _ if chat => ("chatcmpl-", OpenAiObject::Chat),
        _ => ("cmpl-", OpenAiObject::Completion),
    };
    let meta = Meta { id: new_id(prefix), created: now_secs(), model: model.clone() };

    if !parsed.stream {
        let mut text = String::new();
        let (finish, usage) = loop {
            match generation.next().await {
                Some(GenerateEvent::Text(t)) => text.push_str(&t),
                Some(GenerateEvent::Done { finish, usage }) => break (finish, usage),
                Some(GenerateEvent::Error(e)) => return Err(api_error(&e, &model)),
                Some(GenerateEvent::Started { .. }) => {}
                None => return Err(ApiError::new(ErrorKind::Internal, "the generation ended without finishing")),
            }
        };
        let out = tools::split(&parsed.tools, &text);
        let v = match endpoint {
            LocalEndpoint::AnthropicMessages => {
                let calls = with_ids(out.calls, "toolu_");
                render::anthropic_message(&meta, &out.content, &calls, &finish, &usage)
            }
            _ if chat => render::chat_completion(&meta, &out.content, &with_ids(out.calls, "call_"), &finish, &usage),
            _ => render::text_completion(&meta, &text, &finish, &usage),
        };
        return Ok(full(&v));
    }

    let splitter = Splitter::new(parsed.tools);
    let stream: LocalStream = if endpoint == LocalEndpoint::AnthropicMessages {
        let events = AnthropicEvents::new(meta, !splitter.active());
        Box::pin(anthropic_stream(generation, events, splitter, start_usage, model))
    } else {
        let chunks = OpenAiChunks { meta, object, include_usage: parsed.include_usage };
        Box::pin(openai_stream(generation, chunks, splitter, model))
    };
    Ok(LocalResponse { status: 200, content_type: EVENT_STREAM, body: LocalBody::Stream(stream) })
}

/// Give parsed calls their API's ids.
fn with_ids(mut calls: Vec<Call>, prefix: &str) -> Vec<Call> {
    for c in &mut calls {
        c.id = new_id(prefix);
    }
    calls
}

/// Text goes out as soon as the splitter releases it; calls at the end, when they are whole.
fn openai_stream(
    mut g: Generation,
    chunks: OpenAiChunks,
    mut splitter: Splitter,
    model: String,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    async_stream::stream! {
        if let Some(b) = chunks.start() {
            yield Ok(b);
        }
        loop {
            match g.next().await {
                Some(GenerateEvent::Text(t)) => {
                    let t = splitter.push(&t);
                    if !t.is_empty() {
                        yield Ok(chunks.text(&t));
                    }
                }
                Some(GenerateEvent::Done { finish, usage }) => {
                    let out = std::mem::replace(&mut splitter, Splitter::new(tools::ToolMode::Off)).finish();
                    if !out.content.is_empty() {
                        yield Ok(chunks.text(&out.content));
                    }
                    let calls = with_ids(out.calls, "call_");
                    for b in chunks.tool_calls(&calls) {
                        yield Ok(b);
                    }
                    for b in chunks.done(&finish, &usage, !calls.is_empty()) {
                        yield Ok(b);
                    }
                    break;
                }
                Some(GenerateEvent::Error(e)) => {
                    yield Ok(chunks.error(&api_error(&e, &model)));
                    break;
                }
                Some(GenerateEvent::Started { .. }) => {}
                None => {
                    yield Ok(chunks.error(&ApiError::new(ErrorKind::Internal, "the generation ended without finishing")));
                    break;
                }
            }
        }
    }
}

fn anthropic_stream(
    mut g: Generation,
    mut events: AnthropicEvents,
    mut splitter: Splitter,
    start_usage: Usage,
    model: String,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    async_stream::stream! {
        for b in events.start(&start_usage) {
            yield Ok(b);
        }
        loop {
            match g.next().await {
                Some(GenerateEvent::Text(t)) => {
                    for b in events.text(&splitter.push(&t)) {
                        yield Ok(b);
                    }
                }
                Some(GenerateEvent::Done { finish, usage }) => {
                    let out = std::mem::replace(&mut splitter, Splitter::new(tools::ToolMode::Off)).finish();
                    let mut tail = events.text(&out.content);
                    let calls = with_ids(out.calls, "toolu_");
                    tail.extend(events.tool_uses(&calls));
                    tail.extend(events.done(&finish, &usage, !calls.is_empty()));
                    for b in tail {
                        yield Ok(b);
                    }
                    break;
                }
                Some(GenerateEvent::Error(e)) => {
                    yield Ok(events.error(&api_error(&e, &model)));
                    break;
                }
                Some(GenerateEvent::Started { .. }) => {}
                None => {
                    yield Ok(events.error(&ApiError::new(ErrorKind::Internal, "the generation ended without finishing")));
                    break;
                }
            }
        }
    }
}

/// What a finish reason is called in logs and records.
pub fn finish_label(f: &FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::StopSequence(_) => "stop_sequence",
        FinishReason::Length => "length",
    }
}

#[cfg(test)]
mod tests;
