//! Rendering engine output in the OpenAI and Anthropic formats. Pure functions: the same
//! shapes the cloud APIs answer, so a client cannot tell which side answered except by
//! `model` and the `x-genset-served-by` header.

use bytes::Bytes;
use genset_engine::{FinishReason, Usage};
use serde_json::{Value, json};

use crate::api::error::{ApiError, Flavor};
use crate::local::tools::Call;

/// Identity of one answer: its id, creation time and model name.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// OpenAI's `finish_reason`; `called`: the answer ends with tool calls.
pub fn openai_finish(f: &FinishReason, called: bool) -> &'static str {
    match f {
        _ if called => "tool_calls",
        FinishReason::Stop | FinishReason::StopSequence(_) => "stop",
        FinishReason::Length => "length",
    }
}

/// Anthropic's `stop_reason` and `stop_sequence`; `called`: the answer ends with tool use.
pub fn anthropic_stop(f: &FinishReason, called: bool) -> (&'static str, Value) {
    match f {
        _ if called => ("tool_use", Value::Null),
        FinishReason::Stop => ("end_turn", Value::Null),
        FinishReason::StopSequence(s) => ("stop_sequence", json!(s)),
        FinishReason::Length => ("max_tokens", Value::Null),
    }
}

/// OpenAI's `tool_calls` entry: arguments as a JSON string.
fn openai_call(c: &Call) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}})
}

fn anthropic_tool_use(c: &Call) -> Value {
    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
}

pub fn openai_usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0}
    })
}

/// Anthropic counts cache reads apart from `input_tokens`.
pub fn anthropic_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.completion_tokens
    })
}

/// A chat completion; with `calls`, `message.tool_calls` and `content` null when no text came
/// before them (as OpenAI answers).
pub fn chat_completion(m: &Meta, text: &str, calls: &[Call], finish: &FinishReason, usage: &Usage) -> Value {
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    if !calls.is_empty() {
        if text.trim().is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = calls.iter().map(openai_call).collect();
    }
    json!({
        "id": m.id,
        "object": "chat.completion",
        "created": m.created,
        "model": m.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": openai_finish(finish, !calls.is_empty())
        }],
        "usage": openai_usage(usage),
        "system_fingerprint": null
    })
}

pub fn text_completion(m: &Meta, text: &str, finish: &FinishReason, usage: &Usage) -> Value {
    json!({
        "id": m.id,
        "object": "text_completion",
        "created": m.created,
        "model": m.model,
        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": openai_finish(finish, false)}],
        "usage": openai_usage(usage),
        "system_fingerprint": null
    })
}

/// A message; with `calls`, a text block only when text came before them, then one
/// `tool_use` block per call.
pub fn anthropic_message(m: &Meta, text: &str, calls: &[Call], finish: &FinishReason, usage: &Usage) -> Value {
    let (reason, seq) = anthropic_stop(finish, !calls.is_empty());
    let mut content = Vec::with_capacity(calls.len() + 1);
    if calls.is_empty() || !text.trim().is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    content.extend(calls.iter().map(anthropic_tool_use));
    json!({
        "id": m.id,
        "type": "message",
        "role": "assistant",
        "model": m.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": seq,
        "usage": anthropic_usage(usage)
    })
}

pub fn embeddings_list(model: &str, vectors: &[Vec<f32>], prompt_tokens: usize, base64: bool) -> Value {
    use base64::Engine as _;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    })
}

/// One SSE `data:` line.
pub fn sse_data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// One SSE event with a name (Anthropic's framing).
pub fn sse_event(name: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// Which OpenAI object a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiObject {
    Chat,
    Completion,
}

/// OpenAI streaming: chunk builders.
pub struct OpenAiChunks {
    pub meta: Meta,
    pub object: OpenAiObject,
    pub include_usage: bool,
}

impl OpenAiChunks {
    fn chunk(&self, choice: Value) -> Value {
        let object = match self.object {
            OpenAiObject::Chat => "chat.completion.chunk",
            OpenAiObject::Completion => "text_completion",
        };
        let mut c = json!({
            "id": self.meta.id,
            "object": object,
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": null,
            "choices": [choice]
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// The opening chunk (chat: the assistant role), if the object has one.
    pub fn start(&self) -> Option<Bytes> {
        match self.object {
            OpenAiObject::Chat => Some(sse_data(&self.chunk(json!({
                "index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null
            })))),
            OpenAiObject::Completion => None,
        }
    }

    pub fn text(&self, t: &str) -> Bytes {
        sse_data(&self.chunk(match self.object {
            OpenAiObject::Chat => json!({"index": 0, "delta": {"content": t}, "logprobs": null, "finish_reason": null}),
            OpenAiObject::Completion => json!({"index": 0, "text": t, "logprobs": null, "finish_reason": null}),
        }))
    }

    /// The tool calls, each as one chunk carrying its id and name and one carrying its whole
    /// arguments string (chat only).
    pub fn tool_calls(&self, calls: &[Call]) -> Vec<Bytes> {
        let delta = |call: Value| json!({"index": 0, "delta": {"tool_calls": [call]}, "logprobs": null, "finish_reason": null});
        let mut out = Vec::with_capacity(calls.len() * 2);
        for (i, c) in calls.iter().enumerate() {
            out.push(sse_data(&self.chunk(delta(json!({
                "index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}
            })))));
            out.push(sse_data(&self.chunk(delta(json!({"index": i, "function": {"arguments": c.arguments.to_string()}})))));
        }
        out
    }

    /// The final chunk(s) and `[DONE]`; `called`: tool calls were sent.
    pub fn done(&self, finish: &FinishReason, usage: &Usage, called: bool) -> Vec<Bytes> {
        let f = openai_finish(finish, called);
        let mut out = vec![sse_data(&self.chunk(match self.object {
            OpenAiObject::Chat => json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": f}),
            OpenAiObject::Completion => json!({"index": 0, "text": "", "logprobs": null, "finish_reason": f}),
        }))];
        if self.include_usage {
            let mut u = self.chunk(Value::Null);
            u["choices"] = json!([]);
            u["usage"] = openai_usage(usage);
            out.push(sse_data(&u));
        }
        out.push(Bytes::from_static(SSE_DONE));
        out
    }

    /// An error after the stream started: an error object, and no `[DONE]`.
    pub fn error(&self, e: &ApiError) -> Bytes {
        sse_data(&e.body(Flavor::OpenAi))
    }
}

/// Anthropic streaming: the event sequence. Content blocks are numbered in order: a text
/// block (opened at the start, or, when tool use is possible, only once there is text), then
/// one `tool_use` block per call.
pub struct AnthropicEvents {
    pub meta: Meta,
    /// Open the text block with `message_start` (no tools in play), as Anthropic does.
    eager_text: bool,
    /// The index of the next block.
    next: usize,
    text_open: bool,
}

impl AnthropicEvents {
    pub fn new(meta: Meta, eager_text: bool) -> Self {
        AnthropicEvents { meta, eager_text, next: 0, text_open: false }
    }

    fn open_text(&mut self) -> Bytes {
        self.text_open = true;
        sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.next, "content_block": {"type": "text", "text": ""}}),
        )
    }

    fn close_block(&mut self) -> Bytes {
        let b = sse_event("content_block_stop", &json!({"type": "content_block_stop", "index": self.next}));
        self.text_open = false;
        self.next += 1;
        b
    }

    /// message_start, content_block_start (when eager), ping.
    pub fn start(&mut self, usage: &Usage) -> Vec<Bytes> {
        let mut u = anthropic_usage(usage);
        u["output_tokens"] = json!(0);
        let mut out = vec![sse_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.meta.id, "type": "message", "role": "assistant", "model": self.meta.model,
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": u
            }}),
        )];
        if self.eager_text {
            out.push(self.open_text());
        }
        out.push(sse_event("ping", &json!({"type": "ping"})));
        out
    }

    /// A text delta (opening the text block first if needed); nothing for empty text.
    pub fn text(&mut self, t: &str) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(2);
        if t.is_empty() {
            return out;
        }
        if !self.text_open {
            out.push(self.open_text());
        }
        out.push(sse_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.next, "delta": {"type": "text_delta", "text": t}}),
        ));
        out
    }

    /// Close the text block if open, then each call as a `tool_use` block whose input comes
    /// in one `input_json_delta`.
    pub fn tool_uses(&mut self, calls: &[Call]) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(1 + calls.len() * 3);
        if self.text_open {
            out.push(self.close_block());
        }
        for c in calls {
            out.push(sse_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": self.next,
                        "content_block": {"type": "tool_use", "id": c.id, "name": c.name, "input": {}}}),
            ));
            out.push(sse_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": self.next,
                        "delta": {"type": "input_json_delta", "partial_json": c.arguments.to_string()}}),
            ));
            out.push(self.close_block());
        }
        out
    }

    /// content_block_stop (of an open text block; an empty text block when there was no
    /// block at all), message_delta, message_stop. `called`: tool_use blocks were sent.
    pub fn done(&mut self, finish: &FinishReason, usage: &Usage, called: bool) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(4);
        if self.next == 0 && !self.text_open {
            out.push(self.open_text());
        }
        if self.text_open {
            out.push(self.close_block());
        }
        let (reason, seq) = anthropic_stop(finish, called);
        out.push(sse_event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": seq},
                    "usage": {"output_tokens": usage.completion_tokens}}),
        ));
        out.push(sse_event("message_stop", &json!({"type": "message_stop"})));
        out
    }

    pub fn error(&self, e: &ApiError) -> Bytes {
        sse_event("error", &e.body(Flavor::Anthropic))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::api::error::ErrorKind;

    fn meta() -> Meta {
        Meta { id: "id-1".into(), created: 7, model: "gemma".into() }
    }

    fn usage() -> Usage {
        Usage { prompt_tokens: 10, cached_tokens: 4, completion_tokens: 3 }
    }

    fn parse_sse(chunks: &[Bytes]) -> Vec<(Option<String>, String)> {
        let all: String = chunks.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        all.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let mut name = None;
                let mut data = String::new();
                for line in e.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = d.to_owned();
                    }
                }
                (name, data)
            })
            .collect()
    }

    #[test]
    fn full_bodies() {
        let c = chat_completion(&meta(), "hi", &[], &FinishReason::StopSequence("x".into()), &usage());
        assert_eq!(c["object"], "chat.completion");
        assert_eq!(c["model"], "gemma");
        assert_eq!(c["choices"][0]["message"]["content"], "hi");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(c["usage"]["total_tokens"], 13);
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        let t = text_completion(&meta(), "yo", &FinishReason::Length, &usage());
        assert_eq!(t["choices"][0]["finish_reason"], "length");
        assert_eq!(t["choices"][0]["text"], "yo");
        let a = anthropic_message(&meta(), "hey", &[], &FinishReason::StopSequence("END".into()), &usage());
        assert_eq!(a["stop_reason"], "stop_sequence");
        assert_eq!(a["stop_sequence"], "END");
        assert_eq!(a["usage"]["input_tokens"], 6);
        assert_eq!(a["usage"]["cache_read_input_tokens"], 4);
        assert_eq!(anthropic_stop(&FinishReason::Stop, false).0, "end_turn");
        assert_eq!(anthropic_stop(&FinishReason::Length, false).0, "max_tokens");
    }

    #[test]
    fn embeddings_float_and_base64() {
        let v = embeddings_list("m", &[vec![1.0, -2.0]], 3, false);
        assert_eq!(v["data"][0]["embedding"], json!([1.0, -2.0]));
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        let b = embeddings_list("m", &[vec![1.0]], 1, true);
        assert_eq!(b["data"][0]["embedding"], "AACAPw==");
    }

    #[test]
    fn openai_chat_stream_shape() {
        let c = OpenAiChunks { meta: meta(), object: OpenAiObject::Chat, include_usage: true };
        let mut chunks = vec![c.start().unwrap(), c.text("Hel"), c.text("lo")];
        chunks.extend(c.done(&FinishReason::Length, &usage(), false));
        let evs = parse_sse(&chunks);
        assert_eq!(evs.len(), 6);
        let first: Value = serde_json::from_str(&evs[0].1).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert!(first["usage"].is_null());
        let text: String = evs[1..3]
            .iter()
            .map(|e| serde_json::from_str::<Value>(&e.1).unwrap()["choices"][0]["delta"]["content"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(text, "Hello");
        let fin: Value = serde_json::from_str(&evs[3].1).unwrap();
        assert_eq!(fin["choices"][0]["finish_reason"], "length");
        let u: Value = serde_json::from_str(&evs[4].1).unwrap();
        assert_eq!(u["choices"], json!([]));
        assert_eq!(u["usage"]["completion_tokens"], 3);
        assert_eq!(evs[5].1, "[DONE]");
    }

    #[test]
    fn openai_completion_stream_and_error() {
        let c = OpenAiChunks { meta: meta(), object: OpenAiObject::Completion, include_usage: false };
        assert!(c.start().is_none());
        let t: Value = serde_json::from_str(&parse_sse(&[c.text("x")])[0].1).unwrap();
        assert_eq!(t["object"], "text_completion");
        assert_eq!(t["choices"][0]["text"], "x");
        assert!(t.get("usage").is_none());
        let done = parse_sse(&c.done(&FinishReason::Stop, &usage(), false));
        assert_eq!(done.len(), 2);
        let e = parse_sse(&[c.error(&ApiError::new(ErrorKind::Internal, "boom"))]);
        let v: Value = serde_json::from_str(&e[0].1).unwrap();
        assert_eq!(v["error"]["message"], "boom");
    }

    #[test]
    fn anthropic_stream_sequence() {
        let mut a = AnthropicEvents::new(meta(), true);
        let mut chunks = a.start(&usage());
        chunks.extend(a.text("Hi"));
        chunks.extend(a.done(&FinishReason::Stop, &usage(), false));
        let evs = parse_sse(&chunks);
        let names: Vec<&str> = evs.iter().map(|e| e.0.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
        );
        for (name, data) in &evs {
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(v["type"], name.as_deref().unwrap());
        }
        let start: Value = serde_json::from_str(&evs[0].1).unwrap();
        assert_eq!(start["message"]["usage"]["input_tokens"], 6);
        assert_eq!(start["message"]["model"], "gemma");
        let delta: Value = serde_json::from_str(&evs[5].1).unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 3);
        let err = parse_sse(&[a.error(&ApiError::new(ErrorKind::Overloaded, "busy"))]);
        assert_eq!(err[0].0.as_deref(), Some("error"));
        let v: Value = serde_json::from_str(&err[0].1).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
    }

    fn calls() -> Vec<Call> {
        vec![
            Call { id: "c1".into(), name: "get_weather".into(), arguments: json!({"city": "Paris"}) },
            Call { id: "c2".into(), name: "now".into(), arguments: json!({}) },
        ]
    }

    #[test]
    fn tool_calls_in_full_bodies() {
        let c = chat_completion(&meta(), "", &calls(), &FinishReason::Stop, &usage());
        let m = &c["choices"][0]["message"];
        assert!(m["content"].is_null());
        assert_eq!(
            m["tool_calls"][0],
            json!({"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}})
        );
        assert_eq!(m["tool_calls"][1]["function"]["arguments"], "{}");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        let c = chat_completion(&meta(), "Looking.", &calls()[..1], &FinishReason::Stop, &usage());
        assert_eq!(c["choices"][0]["message"]["content"], "Looking.");

        let a = anthropic_message(&meta(), "", &calls(), &FinishReason::Stop, &usage());
        assert_eq!(a["stop_reason"], "tool_use");
        assert_eq!(a["content"][0], json!({"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Paris"}}));
        assert_eq!(a["content"].as_array().unwrap().len(), 2);
        let a = anthropic_message(&meta(), "Looking.", &calls()[..1], &FinishReason::Stop, &usage());
        assert_eq!(a["content"][0], json!({"type": "text", "text": "Looking."}));
        assert_eq!(a["content"][1]["type"], "tool_use");
    }

    #[test]
    fn openai_tool_call_chunks() {
        let c = OpenAiChunks { meta: meta(), object: OpenAiObject::Chat, include_usage: false };
        let mut chunks = c.tool_calls(&calls());
        chunks.extend(c.done(&FinishReason::Stop, &usage(), true));
        let evs: Vec<Value> = parse_sse(&chunks).iter().filter(|e| e.1 != "[DONE]").map(|e| serde_json::from_str(&e.1).unwrap()).collect();
        let deltas: Vec<&Value> = evs.iter().map(|e| &e["choices"][0]["delta"]["tool_calls"][0]).collect();
        assert_eq!(deltas[0], &json!({"index": 0, "id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}));
        assert_eq!(deltas[1], &json!({"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}}));
        assert_eq!(deltas[2]["index"], 1);
        assert_eq!(deltas[2]["id"], "c2");
        assert_eq!(evs[4]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn anthropic_tool_use_events() {
        // Text, then a call: the text block is opened lazily and closed before the tool_use.
        let mut a = AnthropicEvents::new(meta(), false);
        let mut chunks = a.start(&usage());
        chunks.extend(a.text(""));
        chunks.extend(a.text("Looking."));
        chunks.extend(a.tool_uses(&calls()[..1]));
        chunks.extend(a.done(&FinishReason::Stop, &usage(), true));
        let evs: Vec<Value> = parse_sse(&chunks).iter().map(|e| serde_json::from_str(&e.1).unwrap()).collect();
        let kinds: Vec<String> = evs
            .iter()
            .map(|e| format!("{}{}", e["type"].as_str().unwrap(), e.get("index").map(|i| format!("@{i}")).unwrap_or_default()))
            .collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "ping",
                "content_block_start@0",
                "content_block_delta@0",
                "content_block_stop@0",
                "content_block_start@1",
                "content_block_delta@1",
                "content_block_stop@1",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(evs[5]["content_block"], json!({"type": "tool_use", "id": "c1", "name": "get_weather", "input": {}}));
        assert_eq!(evs[6]["delta"], json!({"type": "input_json_delta", "partial_json": "{\"city\":\"Paris\"}"}));
        assert_eq!(evs[8]["delta"]["stop_reason"], "tool_use");
        // Only calls: the first block is the tool_use, at index 0.
        let mut a = AnthropicEvents::new(meta(), false);
        let mut chunks = a.start(&usage());
        chunks.extend(a.tool_uses(&calls()));
        chunks.extend(a.done(&FinishReason::Stop, &usage(), true));
        let evs: Vec<Value> = parse_sse(&chunks).iter().map(|e| serde_json::from_str(&e.1).unwrap()).collect();
        assert_eq!(evs[2]["content_block"]["type"], "tool_use");
        assert_eq!(evs[2]["index"], 0);
        assert_eq!(evs[5]["index"], 1);
        // No output at all still yields one (empty) text block.
        let mut a = AnthropicEvents::new(meta(), false);
        let mut chunks = a.start(&usage());
        chunks.extend(a.done(&FinishReason::Stop, &usage(), false));
        let names: Vec<String> = parse_sse(&chunks).into_iter().map(|e| e.0.unwrap()).collect();
        assert_eq!(names, ["message_start", "ping", "content_block_start", "content_block_stop", "message_delta", "message_stop"]);
    }
}
