//! Tests, with strict parsers of both APIs' streams standing in for the official SDKs.

mod props;
mod requests;
mod responses;
mod sse;
mod streams;

use bytes::Bytes;
use serde_json::Value;

use crate::{SseEvent, SseFramer};

/// All events of a complete stream, framed in one go.
pub(crate) fn events(stream: &[u8]) -> Vec<SseEvent> {
    let mut framer = SseFramer::new();
    framer.push(Bytes::copy_from_slice(stream));
    let events: Vec<SseEvent> = std::iter::from_fn(|| framer.pop()).collect();
    assert_eq!(framer.pending_len(), 0, "stream ends mid-event");
    events
}

/// Turns the readable fixture notation (events separated by blank lines) into wire bytes.
pub(crate) fn wire(stream: &str) -> Vec<u8> {
    let mut out = stream.trim().as_bytes().to_vec();
    out.extend_from_slice(b"\n\n");
    out
}

/// A tool call as a client assembles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// What a client made of a complete stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Parsed {
    pub id: String,
    pub model: String,
    pub text: String,
    pub calls: Vec<Call>,
    /// `finish_reason` / `stop_reason`.
    pub finish: String,
    pub stop_sequence: Option<String>,
    pub output_tokens: Option<u64>,
    pub input_tokens: Option<u64>,
}

fn json(data: &str) -> Result<Value, String> {
    serde_json::from_str(data).map_err(|e| format!("bad JSON {data:?}: {e}"))
}

/// A strict parser of an OpenAI chat completion stream, as the `openai` SDK reads one plus the
/// protocol's order: role chunk first, one id and model, tool calls started with id and name
/// at consecutive indexes, exactly one finish, only usage after it, `[DONE]` last.
pub(crate) fn parse_openai(stream: &[u8]) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut seen_role = false;
    let mut finished = false;
    let mut done = false;
    for (n, event) in events(stream).iter().enumerate() {
        if event.is_empty() {
            continue;
        }
        if done {
            return Err(format!("event {n} after [DONE]"));
        }
        if event.event.is_some() {
            return Err(format!("event {n} has an event name"));
        }
        if event.data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk = json(&event.data)?;
        if chunk.get("error").is_some() {
            return Err(format!("error event: {}", event.data));
        }
        if chunk["object"] != "chat.completion.chunk" {
            return Err(format!("event {n}: object is {}", chunk["object"]));
        }
        let (id, model) = (chunk["id"].as_str().ok_or("no id")?, chunk["model"].as_str().ok_or("no model")?);
        if !chunk["created"].is_u64() {
            return Err("no created".into());
        }
        if n == 0 {
            p.id = id.to_owned();
            p.model = model.to_owned();
        } else if id != p.id || model != p.model {
            return Err(format!("event {n}: id/model changed to {id}/{model}"));
        }
        let choices = chunk["choices"].as_array().ok_or("no choices")?;
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            if !choices.is_empty() {
                return Err("usage chunk with choices".into());
            }
            let (prompt, completion) = (usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64());
            if usage["total_tokens"].as_u64() != Some(prompt.ok_or("no prompt_tokens")? + completion.ok_or("no completion_tokens")?) {
                return Err("total_tokens is not the sum".into());
            }
            p.input_tokens = prompt;
            p.output_tokens = completion;
            continue;
        }
        if choices.len() != 1 || choices[0]["index"] != 0 {
            return Err(format!("event {n}: expected one choice"));
        }
        if finished {
            return Err(format!("event {n}: a choice after the finish"));
        }
        let choice = &choices[0];
        let delta = choice["delta"].as_object().ok_or("no delta")?;
        if let Some(role) = delta.get("role") {
            if seen_role || role != "assistant" {
                return Err(format!("event {n}: unexpected role {role}"));
            }
            seen_role = true;
        } else if !seen_role {
            return Err("first chunk has no role".into());
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            p.text.push_str(text);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let index = call["index"].as_u64().ok_or("tool call without index")? as usize;
            if let Some(id) = call.get("id") {
                if index != p.calls.len() || call["type"] != "function" {
                    return Err(format!("tool call {index} starts out of order"));
                }
                p.calls.push(Call {
                    id: id.as_str().ok_or("id")?.to_owned(),
                    name: call["function"]["name"].as_str().ok_or("name")?.to_owned(),
                    arguments: String::new(),
                });
            }
            let slot = p.calls.get_mut(index).ok_or("arguments for an unknown tool call")?;
            slot.arguments.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            p.finish = reason.to_owned();
            finished = true;
        }
    }
    if !done {
        return Err("no [DONE]".into());
    }
    if !finished {
        return Err("no finish_reason".into());
    }
    Ok(p)
}

/// A strict parser of an Anthropic messages stream: event names match data types,
/// `message_start` once and first, content blocks started in index order, deltas only for the
/// open block and of its type, every block stopped, one `message_delta` then `message_stop` last.
pub(crate) fn parse_anthropic(stream: &[u8]) -> Result<Parsed, String> {
    #[derive(PartialEq)]
    enum Block {
        Text,
        Tool,
    }
    let mut p = Parsed::default();
    let mut blocks: Vec<Block> = Vec::new();
    let mut open: Option<usize> = None;
    let mut started = false;
    let mut message_delta = false;
    let mut stopped = false;
    for (n, event) in events(stream).iter().enumerate() {
        if event.is_empty() {
            continue;
        }
        if stopped {
            return Err(format!("event {n} after message_stop"));
        }
        let data = json(&event.data)?;
        let kind = data["type"].as_str().ok_or("no type")?;
        if event.event.as_deref() != Some(kind) {
            return Err(format!("event {n}: name {:?} for type {kind}", event.event));
        }
        if kind != "message_start" && kind != "ping" && !started {
            return Err(format!("{kind} before message_start"));
        }
        let index = data["index"].as_u64().map(|i| i as usize);
        match kind {
            "message_start" => {
                if started {
                    return Err("second message_start".into());
                }
                started = true;
                let m = &data["message"];
                if m["type"] != "message" || m["role"] != "assistant" || m["content"] != serde_json::json!([]) {
                    return Err(format!("bad message_start {m}"));
                }
                p.id = m["id"].as_str().ok_or("no id")?.to_owned();
                p.model = m["model"].as_str().ok_or("no model")?.to_owned();
                p.input_tokens = Some(m["usage"]["input_tokens"].as_u64().ok_or("no input_tokens")?);
            }
            "content_block_start" => {
                if open.is_some() || index != Some(blocks.len()) || message_delta {
                    return Err(format!("content_block_start {index:?} out of order"));
                }
                let block = &data["content_block"];
                match block["type"].as_str() {
                    Some("text") => {
                        p.text.push_str(block["text"].as_str().ok_or("no text")?);
                        blocks.push(Block::Text);
                    }
                    Some("tool_use") => {
                        if block["input"] != serde_json::json!({}) {
                            return Err("tool_use block starts with input".into());
                        }
                        p.calls.push(Call {
                            id: block["id"].as_str().ok_or("id")?.to_owned(),
                            name: block["name"].as_str().ok_or("name")?.to_owned(),
                            arguments: String::new(),
                        });
                        blocks.push(Block::Tool);
                    }
                    other => return Err(format!("unexpected block type {other:?}")),
                }
                open = index;
            }
            "content_block_delta" => {
                if index.is_none() || open != index {
                    return Err(format!("delta for block {index:?}, open is {open:?}"));
                }
                let delta = &data["delta"];
                match (delta["type"].as_str(), &blocks[open.unwrap_or_default()]) {
                    (Some("text_delta"), Block::Text) => p.text.push_str(delta["text"].as_str().ok_or("text")?),
                    (Some("input_json_delta"), Block::Tool) => {
                        let call = p.calls.last_mut().ok_or("no call")?;
                        call.arguments.push_str(delta["partial_json"].as_str().ok_or("partial_json")?);
                    }
                    (t, _) => return Err(format!("delta {t:?} does not fit its block")),
                }
            }
            "content_block_stop" => {
                if index.is_none() || open != index {
                    return Err(format!("stop for block {index:?}, open is {open:?}"));
                }
                open = None;
            }
            "message_delta" => {
                if open.is_some() || message_delta {
                    return Err("message_delta out of order".into());
                }
                message_delta = true;
                p.finish = data["delta"]["stop_reason"].as_str().ok_or("no stop_reason")?.to_owned();
                p.stop_sequence = data["delta"]["stop_sequence"].as_str().map(str::to_owned);
                p.output_tokens = Some(data["usage"]["output_tokens"].as_u64().ok_or("no output_tokens")?);
                if let Some(input) = data["usage"]["input_tokens"].as_u64() {
                    p.input_tokens = Some(input);
                }
            }
            "message_stop" => {
                if !message_delta {
                    return Err("message_stop before message_delta".into());
                }
                stopped = true;
            }
            "ping" => {}
            "error" => return Err(format!("error event: {}", event.data)),
            other => return Err(format!("unknown event {other}")),
        }
    }
    if !stopped {
        return Err("no message_stop".into());
    }
    Ok(p)
}

/// Parses a complete stream of either API.
pub(crate) fn parse(api: crate::Api, stream: &[u8]) -> Result<Parsed, String> {
    match api {
        crate::Api::OpenAi => parse_openai(stream),
        crate::Api::Anthropic => parse_anthropic(stream),
    }
}
