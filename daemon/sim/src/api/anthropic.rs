//! Anthropic routes: messages (whole or streamed with the full event
//! sequence), token counting, models.

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::openai::MODELS;
use super::stream::{self, MALFORMED_ANTHROPIC, StreamFault};
use super::{ApiCtx, Exit, bad_json, check_max_tokens, required};
use crate::answer::{self, Answer, Conversation, Finish, Limits, Msg, Reply, Role};
use crate::body::{Resp, SseWriter, json_value, to_json};
use crate::error::ApiError;
use crate::fault::Shape;
use crate::ids::Id;
use crate::route::Flavor;
use crate::wire::{Count, StopList, Text};

#[derive(Deserialize)]
struct MessagesRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(borrow, default)]
    system: Text<'a>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    stop_sequences: StopList<'a>,
    #[serde(default)]
    tools: Count,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Text<'a>,
}

struct Prepared<'a> {
    conv: Conversation<'a>,
    max_tokens: Option<u64>,
    stop: Vec<Cow<'a, str>>,
    stream: bool,
}

/// Parses a messages (or count_tokens) request; `max_tokens` is required
/// by the real API for messages, so it is here too.
fn prepare(body: &[u8], need_max_tokens: bool) -> Result<Prepared<'_>, ApiError> {
    let req: MessagesRequest<'_> = serde_json::from_slice(body).map_err(bad_json)?;
    let model = required(req.model, "model", Flavor::Anthropic)?;
    let Some(messages) = req.messages else {
        return Err(ApiError::invalid("messages: Field required", "messages"));
    };
    if messages.is_empty() {
        return Err(ApiError::invalid("messages: at least one message is required", "messages"));
    }
    if need_max_tokens && req.max_tokens.is_none() {
        return Err(ApiError::invalid("max_tokens: Field required", "max_tokens"));
    }
    let max_tokens = check_max_tokens(req.max_tokens, "max_tokens", Flavor::Anthropic)?;
    let mut msgs = Vec::with_capacity(messages.len() + 1);
    if req.system.parts().next().is_some() {
        msgs.push(Msg { role: Role::System, text: req.system });
    }
    msgs.extend(messages.into_iter().map(|m| Msg { role: Role::parse(&m.role), text: m.content }));
    Ok(Prepared {
        conv: Conversation { model, messages: msgs, tools: req.tools.0 > 0 },
        max_tokens,
        stop: req.stop_sequences.0,
        stream: req.stream.unwrap_or(false),
    })
}

fn gate_inputs<'p>(p: &'p Result<Prepared<'_>, ApiError>) -> (Shape, u64, &'p str) {
    match p {
        Ok(p) => (Shape { stream: p.stream, prefill: p.conv.has_prefill() }, p.conv.prompt_tokens(), &p.conv.model),
        Err(_) => (Shape::default(), 0, ""),
    }
}

pub(super) async fn messages(cx: &ApiCtx<'_>, body: &Bytes) -> Result<Resp, Exit> {
    let prepared = prepare(body, true);
    let (shape, prompt_tokens, model) = gate_inputs(&prepared);
    let fault = cx.gate(shape, prompt_tokens, model).await?;
    let p = prepared.map_err(|e| cx.fail(e))?;
    let a = answer::answer(&p.conv, &Limits { max_tokens: p.max_tokens, stop: &p.stop });
    let r = if p.stream { stream_message(cx, &p, &a, fault) } else { full_message(cx, &p, &a, fault) };
    r.map_err(|e| cx.fail(ApiError::Internal(e.to_string())))
}

pub(super) async fn count_tokens(cx: &ApiCtx<'_>, body: &Bytes) -> Result<Resp, Exit> {
    let prepared = prepare(body, false);
    let (shape, prompt_tokens, model) = gate_inputs(&prepared);
    let fault = cx.gate(shape, prompt_tokens, model).await?;
    let p = prepared.map_err(|e| cx.fail(e))?;
    #[derive(Serialize)]
    struct Count {
        input_tokens: u64,
    }
    let bytes = to_json(&Count { input_tokens: p.conv.prompt_tokens() }, 32).map_err(|e| cx.fail(ApiError::Internal(e.to_string())))?;
    Ok(stream::json(cx.shared, StatusCode::OK, bytes, fault))
}

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::End => "end_turn",
        Finish::Length => "max_tokens",
        Finish::Stop(_) => "stop_sequence",
        Finish::ToolUse => "tool_use",
    }
}

fn stop_sequence<'a>(p: &'a Prepared<'_>, f: Finish) -> Option<&'a str> {
    match f {
        Finish::Stop(i) => p.stop.get(i).map(|s| &**s),
        _ => None,
    }
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text { text: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: EmptyObject },
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
    service_tier: &'static str,
}

#[derive(Serialize)]
struct MessageObject<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: &'a [Block<'a>],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'a str>,
    usage: Usage,
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        output_tokens: output,
        service_tier: "standard",
    }
}

fn block<'a>(a: &'a Answer, tool_id: &'a Id) -> Block<'a> {
    match &a.reply {
        Reply::Text(t) => Block::Text { text: t },
        Reply::ToolCall { name } => Block::ToolUse { id: tool_id.as_str(), name, input: EmptyObject {} },
    }
}

fn full_message(cx: &ApiCtx<'_>, p: &Prepared<'_>, a: &Answer, fault: Option<StreamFault>) -> Result<Resp, serde_json::Error> {
    let id = cx.id("msg_01", 22);
    let tool_id = cx.id("toolu_01", 22);
    let content = [block(a, &tool_id)];
    let msg = MessageObject {
        id: id.as_str(),
        kind: "message",
        role: "assistant",
        model: &p.conv.model,
        content: &content,
        stop_reason: Some(stop_reason(a.finish)),
        stop_sequence: stop_sequence(p, a.finish),
        usage: usage(a.prompt_tokens, a.completion_tokens),
    };
    let bytes = to_json(&msg, 384 + a.text().len())?;
    Ok(stream::json(cx.shared, StatusCode::OK, bytes, fault))
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart { message: MessageObject<'a> },
    ContentBlockStart { index: u32, content_block: Block<'a> },
    Ping,
    ContentBlockDelta { index: u32, delta: Delta<'a> },
    ContentBlockStop { index: u32 },
    MessageDelta { delta: StopDelta<'a>, usage: DeltaUsage },
    MessageStop,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::Ping => "ping",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
struct DeltaUsage {
    output_tokens: u64,
}

fn stream_message(cx: &ApiCtx<'_>, p: &Prepared<'_>, a: &Answer, fault: Option<StreamFault>) -> Result<Resp, serde_json::Error> {
    let id = cx.id("msg_01", 22);
    let tool_id = cx.id("toolu_01", 22);
    let mut w = SseWriter::new(a.completion_tokens as usize + 7);
    let emit = |w: &mut SseWriter, e: Event<'_>| w.event(Some(e.name()), &e);

    let start = MessageObject {
        id: id.as_str(),
        kind: "message",
        role: "assistant",
        model: &p.conv.model,
        content: &[],
        stop_reason: None,
        stop_sequence: None,
        usage: usage(a.prompt_tokens, 1),
    };
    emit(&mut w, Event::MessageStart { message: start })?;
    let opening = match &a.reply {
        Reply::Text(_) => Block::Text { text: "" },
        Reply::ToolCall { name } => Block::ToolUse { id: tool_id.as_str(), name, input: EmptyObject {} },
    };
    emit(&mut w, Event::ContentBlockStart { index: 0, content_block: opening })?;
    emit(&mut w, Event::Ping)?;
    w.begin_content();
    match &a.reply {
        Reply::Text(text) => {
            for piece in answer::chunks(text) {
                emit(&mut w, Event::ContentBlockDelta { index: 0, delta: Delta::TextDelta { text: piece } })?;
            }
        }
        Reply::ToolCall { .. } => {
            emit(&mut w, Event::ContentBlockDelta { index: 0, delta: Delta::InputJsonDelta { partial_json: "{}" } })?;
        }
    }
    w.end_content();
    emit(&mut w, Event::ContentBlockStop { index: 0 })?;
    emit(
        &mut w,
        Event::MessageDelta {
            delta: StopDelta { stop_reason: stop_reason(a.finish), stop_sequence: stop_sequence(p, a.finish) },
            usage: DeltaUsage { output_tokens: a.completion_tokens },
        },
    )?;
    if !StreamFault::omits_done(fault) {
        emit(&mut w, Event::MessageStop)?;
    }
    Ok(stream::sse(cx.shared, w.finish(), fault, MALFORMED_ANTHROPIC))
}

#[derive(Serialize)]
struct ModelInfo<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: &'a str,
}

#[derive(Serialize)]
struct ModelPage<'a> {
    data: Vec<ModelInfo<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

fn claude_models() -> impl Iterator<Item = ModelInfo<'static>> {
    MODELS.iter().filter(|m| m.1 == "anthropic").map(|m| ModelInfo { kind: "model", id: m.0, display_name: m.3, created_at: m.4 })
}

pub(super) fn model_list() -> Resp {
    let data: Vec<ModelInfo<'_>> = claude_models().collect();
    let first_id = data.first().map(|m| m.id);
    let last_id = data.last().map(|m| m.id);
    json_value(StatusCode::OK, &ModelPage { data, has_more: false, first_id, last_id })
}

pub(super) fn model_object(id: &str) -> Option<Resp> {
    claude_models().find(|m| m.id == id).map(|m| json_value(StatusCode::OK, &m))
}
