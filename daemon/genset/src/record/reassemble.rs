//! Turning a captured response into what is stored: a streamed answer is reassembled into
//! the equivalent complete response object; usage and completion are read from it.
//! Runs in the writer, never on the request path.

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{FutureExt, StreamExt};
use serde_json::{Map, Value, json};

use crate::api::error::Flavor;

#[derive(Debug, Default, PartialEq)]
pub struct Reassembled {
    /// The response as a complete JSON document (or the raw text when it is not JSON).
    pub body: String,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// For streams: the terminal event was seen. For other responses: the body parsed.
    pub complete: bool,
}

/// Parse an SSE body into (event, data) pairs with a real SSE parser.
pub fn sse_events(body: &[u8]) -> Vec<(String, String)> {
    let input = futures_util::stream::iter([Ok::<Bytes, std::convert::Infallible>(Bytes::copy_from_slice(body))]);
    let collected = input.eventsource().collect::<Vec<_>>().now_or_never().unwrap_or_default();
    collected.into_iter().filter_map(|e| e.ok()).map(|e| (e.event, e.data)).collect()
}

pub fn reassemble(api: Flavor, endpoint: &str, is_sse: bool, body: &[u8]) -> Reassembled {
    if !is_sse {
        let text = String::from_utf8_lossy(body).into_owned();
        // Only the usage is wanted: the rest of the document is checked, not built.
        let usage = match serde_json::from_slice::<UsageOnly>(body) {
            Ok(u) => Some(u.usage.or_else(|| u.response.and_then(|r| r.usage)).map_or((None, None), |u| usage_fields(&u))),
            Err(_) => serde_json::from_slice::<Value>(body).ok().map(|v| usage_of(&v)),
        };
        return match usage {
            Some((p, c)) => Reassembled { body: text, prompt_tokens: p, completion_tokens: c, complete: true },
            None => Reassembled { body: text, complete: false, ..Default::default() },
        };
    }
    let events = sse_events(body);
    let (value, complete) = match (api, endpoint) {
        (_, "/v1/responses") => responses_stream(&events),
        (Flavor::Anthropic, _) => anthropic_stream(&events),
        (Flavor::OpenAi, _) => openai_stream(&events),
    };
    let (p, c) = usage_of(&value);
    Reassembled { body: value.to_string(), prompt_tokens: p, completion_tokens: c, complete }
}

/// A JSON answer's `usage` (or the Responses API's `response.usage`); a field present as
/// `null` counts as present, like [`usage_of`]'s `get`. Anything else it cannot take (the
/// document is not an object, a duplicate key) falls back to [`usage_of`].
#[derive(serde::Deserialize)]
struct UsageOnly {
    #[serde(default, deserialize_with = "present")]
    usage: Option<Value>,
    #[serde(default)]
    response: Option<ResponseUsage>,
}

#[derive(serde::Deserialize)]
struct ResponseUsage {
    #[serde(default, deserialize_with = "present")]
    usage: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

fn usage_of(v: &Value) -> (Option<i64>, Option<i64>) {
    let u = v.get("usage").or_else(|| v.get("response").and_then(|r| r.get("usage")));
    u.map_or((None, None), usage_fields)
}

fn usage_fields(u: &Value) -> (Option<i64>, Option<i64>) {
    let get = |k: &str| u.get(k).and_then(Value::as_i64);
    let p = get("prompt_tokens").or_else(|| get("input_tokens"));
    let c = get("completion_tokens").or_else(|| get("output_tokens"));
    (p, c)
}

fn openai_stream(events: &[(String, String)]) -> (Value, bool) {
    let mut done = false;
    let mut head = Map::new();
    let mut choices: Vec<Map<String, Value>> = Vec::new();
    let mut usage = Value::Null;
    let mut text_completion = false;
    for (_, data) in events {
        if data.trim() == "[DONE]" {
            done = true;
            continue;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else { continue };
        for k in ["id", "model", "created", "system_fingerprint"] {
            if let Some(v) = chunk.get(k) {
                head.insert(k.into(), v.clone());
            }
        }
        if chunk.get("object").and_then(Value::as_str) == Some("text_completion") {
            text_completion = true;
        }
        if let Some(u) = chunk.get("usage")
            && !u.is_null()
        {
            usage = u.clone();
        }
        for c in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            while choices.len() <= idx {
                let mut m = Map::new();
                m.insert("index".into(), json!(choices.len()));
                choices.push(m);
            }
            let ch = &mut choices[idx];
            if let Some(fr) = c.get("finish_reason")
                && !fr.is_null()
            {
                ch.insert("finish_reason".into(), fr.clone());
            }
            if let Some(t) = c.get("text").and_then(Value::as_str) {
                append_str(ch, "text", t);
            }
            let Some(delta) = c.get("delta") else { continue };
            let msg = ch.entry("message").or_insert_with(|| json!({"role": "assistant", "content": null}));
            let Some(msg) = msg.as_object_mut() else { continue };
            if let Some(r) = delta.get("role").and_then(Value::as_str) {
                msg.insert("role".into(), json!(r));
            }
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                append_str(msg, "content", t);
            }
            if let Some(t) = delta.get("refusal").and_then(Value::as_str) {
                append_str(msg, "refusal", t);
            }
            for tc in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let ti = tc.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let calls = msg.entry("tool_calls").or_insert_with(|| json!([]));
                let Some(calls) = calls.as_array_mut() else { continue };
                while calls.len() <= ti {
                    calls.push(json!({"id": null, "type": "function", "function": {"name": "", "arguments": ""}}));
                }
                let call = &mut calls[ti];
                if let Some(id) = tc.get("id") {
                    call["id"] = id.clone();
                }
                if let Some(f) = tc.get("function") {
                    if let Some(n) = f.get("name").and_then(Value::as_str) {
                        let cur = call["function"]["name"].as_str().unwrap_or("").to_string();
                        call["function"]["name"] = json!(cur + n);
                    }
                    if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                        let cur = call["function"]["arguments"].as_str().unwrap_or("").to_string();
                        call["function"]["arguments"] = json!(cur + a);
                    }
                }
            }
        }
    }
    head.insert("object".into(), json!(if text_completion { "text_completion" } else { "chat.completion" }));
    head.insert("choices".into(), Value::Array(choices.into_iter().map(Value::Object).collect()));
    if !usage.is_null() {
        head.insert("usage".into(), usage);
    }
    (Value::Object(head), done)
}

fn append_str(m: &mut Map<String, Value>, key: &str, add: &str) {
    let cur = m.get(key).and_then(Value::as_str).unwrap_or("");
    let joined = format!("{cur}{add}");
    m.insert(key.into(), Value::String(joined));
}

fn anthropic_stream(events: &[(String, String)]) -> (Value, bool) {
    let mut msg = json!({"type": "message", "role": "assistant", "content": []});
    let mut partial_json: Vec<String> = Vec::new();
    let mut done = false;
    for (event, data) in events {
        let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or(event.as_str());
        match kind {
            "message_start" => {
                if let Some(m) = v.get("message") {
                    msg = m.clone();
                    if msg.get("content").is_none_or(|c| !c.is_array()) {
                        msg["content"] = json!([]);
                    }
                }
            }
            "content_block_start" => {
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if let Some(arr) = msg["content"].as_array_mut() {
                    while arr.len() <= idx {
                        arr.push(Value::Null);
                    }
                    arr[idx] = v.get("content_block").cloned().unwrap_or(Value::Null);
                }
                while partial_json.len() <= idx {
                    partial_json.push(String::new());
                }
            }
            "content_block_delta" => {
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let Some(d) = v.get("delta") else { continue };
                let Some(block) = msg["content"].as_array_mut().and_then(|a| a.get_mut(idx)) else { continue };
                let Some(b) = block.as_object_mut() else { continue };
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => append_str(b, "text", d.get("text").and_then(Value::as_str).unwrap_or("")),
                    Some("thinking_delta") => append_str(b, "thinking", d.get("thinking").and_then(Value::as_str).unwrap_or("")),
                    Some("signature_delta") => append_str(b, "signature", d.get("signature").and_then(Value::as_str).unwrap_or("")),
                    Some("input_json_delta") => {
                        if let Some(p) = partial_json.get_mut(idx) {
                            p.push_str(d.get("partial_json").and_then(Value::as_str).unwrap_or(""));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if let Some(p) = partial_json.get(idx).filter(|p| !p.is_empty())
                    && let Some(block) = msg["content"].as_array_mut().and_then(|a| a.get_mut(idx))
                {
                    block["input"] = serde_json::from_str(p).unwrap_or(Value::String(p.clone()));
                }
            }
            "message_delta" => {
                if let Some(d) = v.get("delta").and_then(Value::as_object) {
                    for (k, val) in d {
                        msg[k] = val.clone();
                    }
                }
                if let Some(u) = v.get("usage").and_then(Value::as_object) {
                    if !msg["usage"].is_object() {
                        msg["usage"] = json!({});
                    }
                    for (k, val) in u {
                        msg["usage"][k] = val.clone();
                    }
                }
            }
            "message_stop" => done = true,
            _ => {}
        }
    }
    (msg, done)
}

fn responses_stream(events: &[(String, String)]) -> (Value, bool) {
    let mut last = Value::Null;
    let mut done = false;
    for (event, data) in events {
        let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or(event.as_str()).to_string();
        if let Some(r) = v.get("response") {
            last = r.clone();
        }
        if matches!(kind.as_str(), "response.completed" | "response.incomplete" | "response.failed") {
            done = true;
        }
    }
    (last, done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn whole_json_answers_read_usage_like_a_full_parse() {
        let docs = [
            r#"{"id":"c","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":21,"completion_tokens":10}}"#,
            r#"{"id":"m","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":9,"output_tokens":4}}"#,
            r#"{"type":"response","response":{"usage":{"input_tokens":3,"output_tokens":2}}}"#,
            r#"{"usage":null,"response":{"usage":{"input_tokens":3,"output_tokens":2}}}"#,
            r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":"x"}}"#,
            r#"{"usage":5}"#,
            r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
            r#"{"response":"text"}"#,
            r#"[1,2,3]"#,
            r#"{"error":{"message":"bad"}}"#,
            r#"{"truncated":"#,
            "not json",
        ];
        for d in docs {
            let r = reassemble(Flavor::OpenAi, "/v1/chat/completions", false, d.as_bytes());
            let full = serde_json::from_str::<Value>(d).ok();
            assert_eq!(r.complete, full.is_some(), "{d}");
            let (p, c) = full.as_ref().map_or((None, None), usage_of);
            assert_eq!((r.prompt_tokens, r.completion_tokens), (p, c), "{d}");
            assert_eq!(r.body, d);
        }
        let r = reassemble(Flavor::OpenAi, "/v1/chat/completions", false, docs[0].as_bytes());
        assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(21), Some(10)));
        let r = reassemble(Flavor::OpenAi, "/v1/chat/completions", false, docs[3].as_bytes());
        assert_eq!((r.prompt_tokens, r.completion_tokens), (None, None), "a null usage is a usage");
    }

    #[test]
    fn openai_chat_stream() {
        let body = concat!(
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        let r = reassemble(Flavor::OpenAi, "/v1/chat/completions", true, body.as_bytes());
        assert!(r.complete);
        assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(5), Some(2)));
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Hello");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let cut = &body[..body.find("data: [DONE]").unwrap()];
        assert!(!reassemble(Flavor::OpenAi, "/v1/chat/completions", true, cut.as_bytes()).complete);
    }

    #[test]
    fn anthropic_stream_with_tool_input() {
        let body = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"there\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let r = reassemble(Flavor::Anthropic, "/v1/messages", true, body.as_bytes());
        assert!(r.complete);
        assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(9), Some(4)));
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["content"][0]["text"], "Hi there");
        assert_eq!(v["content"][1]["input"]["a"], 1);
        assert_eq!(v["stop_reason"], "end_turn");
    }

    #[test]
    fn plain_json_usage() {
        let r = reassemble(Flavor::OpenAi, "/v1/embeddings", false, br#"{"data":[],"usage":{"prompt_tokens":3,"total_tokens":3}}"#);
        assert_eq!(r.prompt_tokens, Some(3));
        assert!(r.complete);
    }
}
