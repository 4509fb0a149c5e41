//! Parsing OpenAI and Anthropic request bodies into engine requests. Pure functions.
//!
//! Unknown fields are ignored (clients send many); fields genset cannot honour locally are
//! refused with an error naming them, never silently dropped.

use genset_engine::{ChatMessage, GenerateRequest, GrammarSpec, Priority, Prompt, SamplingParams};
use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::local::tools::{ToolMode, call_schema, tool_signature};

/// A parsed generation request and how to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub request: GenerateRequest,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Whether and how the output is parsed for tool calls.
    pub tools: ToolMode,
}

/// A parsed embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsRequest {
    pub input: Vec<String>,
    pub base64: bool,
}

fn invalid(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid(format!("{param}: {}", msg.into())).with_param(param.to_owned())
}

/// A feature this local model cannot honour.
pub fn unsupported(param: &str, what: &str) -> ApiError {
    ApiError::invalid(format!("{what} is not supported by local models ({param})"))
        .with_param(param.to_owned())
        .with_code("unsupported_feature")
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| ApiError::invalid("the request body must be a JSON object"))
}

fn opt_f32(o: &Map<String, Value>, k: &str) -> Result<Option<f32>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| invalid(k, "must be a number")),
    }
}

fn opt_u32(o: &Map<String, Value>, k: &str) -> Result<Option<u32>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().and_then(|x| u32::try_from(x).ok()).map(Some).ok_or_else(|| invalid(k, "must be a non-negative integer")),
    }
}

/// A boolean field that defaults to false.
fn opt_bool(o: &Map<String, Value>, k: &str) -> Result<bool, ApiError> {
    Ok(flag(o.get(k), k)?.unwrap_or(false))
}

/// An optional boolean field: absent or null is `None`, anything but a boolean an error.
fn flag(v: Option<&Value>, param: &str) -> Result<Option<bool>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(param, "must be a boolean")),
    }
}

fn range(k: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<Option<f32>, ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(invalid(k, format!("must be between {lo} and {hi}"))),
        _ => Ok(v),
    }
}

fn stop_list(o: &Map<String, Value>, k: &str) -> Result<Vec<String>, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => {
            a.iter().map(|s| s.as_str().map(str::to_owned).ok_or_else(|| invalid(k, "must be a string or an array of strings"))).collect()
        }
        Some(_) => Err(invalid(k, "must be a string or an array of strings")),
    }
}

/// Sampling fields shared by OpenAI's chat and completions endpoints (and the common
/// extensions of vLLM / llama-server: top_k, min_p, repeat_penalty).
fn openai_sampling(o: &Map<String, Value>) -> Result<SamplingParams, ApiError> {
    if o.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(unsupported("n", "more than one choice (n > 1)"));
    }
    if o.get("logprobs").is_some_and(|v| v.as_bool() == Some(true) || v.is_u64()) {
        return Err(unsupported("logprobs", "logprobs"));
    }
    if o.get("top_logprobs").is_some_and(|v| !v.is_null()) {
        return Err(unsupported("top_logprobs", "logprobs"));
    }
    let max_tokens = match opt_u32(o, "max_completion_tokens")? {
        Some(m) => Some(m),
        None => opt_u32(o, "max_tokens")?,
    };
    let logit_bias = match o.get("logit_bias") {
        None | Some(Value::Null) => vec![],
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let tok = k.parse::<i32>().map_err(|_| invalid("logit_bias", format!("{k:?} is not a token id")))?;
                let b = v.as_f64().ok_or_else(|| invalid("logit_bias", "biases must be numbers"))?;
                Ok((tok, b as f32))
            })
            .collect::<Result<_, ApiError>>()?,
        Some(_) => return Err(invalid("logit_bias", "must be an object")),
    };
    let grammar = match o.get("response_format") {
        None | Some(Value::Null) => None,
        Some(rf) => match rf.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(GrammarSpec::JsonObject),
            Some("json_schema") => {
                let schema = rf
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .filter(|s| s.is_object())
                    .ok_or_else(|| invalid("response_format.json_schema.schema", "must be a JSON Schema object"))?;
                Some(GrammarSpec::JsonSchema(schema.clone()))
            }
            _ => return Err(invalid("response_format.type", "must be text, json_object or json_schema")),
        },
    };
    let seed = match o.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().or_else(|| v.as_i64().map(|x| x as u64)).ok_or_else(|| invalid("seed", "must be an integer"))?),
    };
    Ok(SamplingParams {
        temperature: range("temperature", opt_f32(o, "temperature")?, 0.0, 2.0)?,
        top_p: range("top_p", opt_f32(o, "top_p")?, 0.0, 1.0)?,
        top_k: opt_u32(o, "top_k")?.map(|k| k as i32),
        min_p: range("min_p", opt_f32(o, "min_p")?, 0.0, 1.0)?,
        seed,
        stop: stop_list(o, "stop")?,
        max_tokens,
        repeat_penalty: opt_f32(o, "repeat_penalty")?.or(opt_f32(o, "repetition_penalty")?),
        presence_penalty: range("presence_penalty", opt_f32(o, "presence_penalty")?, -2.0, 2.0)?,
        frequency_penalty: range("frequency_penalty", opt_f32(o, "frequency_penalty")?, -2.0, 2.0)?,
        logit_bias,
        grammar,
    })
}

fn stream_flags(o: &Map<String, Value>) -> Result<(bool, bool), ApiError> {
    let stream = opt_bool(o, "stream")?;
    let include_usage = o.get("stream_options").and_then(|s| s.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    Ok((stream, include_usage))
}

/// OpenAI message content: a string, null, or an array of parts (text only).
fn openai_content(v: Option<&Value>, at: &str) -> Result<String, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let here = format!("{at}[{j}]");
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        texts.push(p.get("text").and_then(Value::as_str).ok_or_else(|| invalid(&here, "text part without text"))?)
                    }
                    Some("refusal") => texts.push(p.get("refusal").and_then(Value::as_str).unwrap_or("")),
                    Some("image_url") | Some("image") => return Err(unsupported(&here, "image input")),
                    Some("input_audio") => return Err(unsupported(&here, "audio input")),
                    Some("file") => return Err(unsupported(&here, "file input")),
                    Some(other) => return Err(invalid(&here, format!("unknown content part type {other:?}"))),
                    None => return Err(invalid(&here, "content parts need a type")),
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(invalid(at, "must be a string or an array of content parts")),
    }
}

/// `POST /v1/chat/completions`.
pub fn openai_chat(body: &Value, priority: Priority) -> Result<Parsed, ApiError> {
    let o = object(body)?;
    if o.contains_key("functions") || o.contains_key("function_call") {
        return Err(unsupported("functions", "legacy function calling (use tools)"));
    }
    if o.contains_key("audio") || o.get("modalities").and_then(Value::as_array).is_some_and(|m| m.iter().any(|x| x != "text")) {
        return Err(unsupported("modalities", "audio output"));
    }
    let msgs = o
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("messages", "must be a non-empty array"))?;
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| invalid(&format!("{at}.role"), "required"))?;
        let role = match role {
            "system" | "developer" => "system",
            "user" | "assistant" | "tool" => role,
            "function" => return Err(unsupported(&format!("{at}.role"), "legacy function messages")),
            other => return Err(invalid(&format!("{at}.role"), format!("unknown role {other:?}"))),
        };
        let mut msg = ChatMessage::new(role, openai_content(m.get("content"), &format!("{at}.content"))?);
        if let Some(tc) = m.get("tool_calls").filter(|v| !v.is_null()) {
            msg.tool_calls = Some(tc.clone());
        }
        msg.tool_call_id = m.get("tool_call_id").and_then(Value::as_str).map(str::to_owned);
        msg.name = m.get("name").and_then(Value::as_str).map(str::to_owned);
        messages.push(msg);
    }
    let choice = match o.get("tool_choice") {
        None | Some(Value::Null) => Choice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => Choice::None,
            "auto" => Choice::Auto,
            "required" => Choice::Any,
            other => return Err(invalid("tool_choice", format!("{other:?} is not none, auto or required"))),
        },
        Some(v) => match v.get("type").and_then(Value::as_str) {
            Some("function") => Choice::Named(
                v.get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("tool_choice.function.name", "required"))?
                    .to_owned(),
            ),
            Some("allowed_tools") => return Err(unsupported("tool_choice", "an allowed_tools tool choice")),
            Some("custom") => return Err(unsupported("tool_choice", "custom tools")),
            _ => return Err(invalid("tool_choice", "must be none, auto, required or a function")),
        },
    };
    let tools = match o.get("tools") {
        Some(Value::Array(t)) if choice != Choice::None => {
            for (i, tool) in t.iter().enumerate() {
                match tool.get("type").and_then(Value::as_str) {
                    Some("function") => {}
                    Some("custom") => return Err(unsupported(&format!("tools[{i}].type"), "custom tools")),
                    _ => return Err(invalid(&format!("tools[{i}].type"), "must be function")),
                }
                if tool_signature(tool).is_none() {
                    return Err(invalid(&format!("tools[{i}].function.name"), "required"));
                }
            }
            t.clone()
        }
        None | Some(Value::Null) | Some(Value::Array(_)) => vec![],
        Some(_) => return Err(invalid("tools", "must be an array")),
    };
    let mut sampling = openai_sampling(o)?;
    let parallel = !matches!(flag(o.get("parallel_tool_calls"), "parallel_tool_calls")?, Some(false));
    let mode = tool_mode(&tools, &choice, parallel, "tool_choice", &mut sampling)?;
    let (stream, include_usage) = stream_flags(o)?;
    Ok(Parsed {
        request: GenerateRequest { prompt: Prompt::Chat { messages, tools }, sampling, priority },
        stream,
        include_usage,
        tools: mode,
    })
}

/// A request's `tool_choice`, in either API.
#[derive(Debug, Clone, PartialEq)]
enum Choice {
    None,
    Auto,
    /// OpenAI `required`, Anthropic `any`.
    Any,
    /// One named tool.
    Named(String),
}

/// How the output relates to `tools` (OpenAI-shaped); a forced choice puts the grammar of a
/// call into `sampling`.
fn tool_mode(tools: &[Value], choice: &Choice, parallel: bool, param: &str, sampling: &mut SamplingParams) -> Result<ToolMode, ApiError> {
    let names = || tools.iter().filter_map(tool_signature).map(|(n, _)| n.to_owned()).collect::<Vec<_>>();
    let forced: Vec<&Value> = match choice {
        Choice::None => return Ok(ToolMode::Off),
        Choice::Auto if tools.is_empty() => return Ok(ToolMode::Off),
        Choice::Auto => return Ok(ToolMode::Auto { names: names(), parallel }),
        Choice::Any if tools.is_empty() => return Err(invalid(param, "a tool call is required but no tools are given")),
        Choice::Any => tools.iter().collect(),
        Choice::Named(name) => {
            let t: Vec<&Value> = tools.iter().filter(|t| tool_signature(t).is_some_and(|(n, _)| n == name)).collect();
            if t.is_empty() {
                return Err(invalid(param, format!("no tool named {name:?} is given")));
            }
            t
        }
    };
    if sampling.grammar.is_some() {
        return Err(unsupported("response_format", "a response format together with a forced tool choice"));
    }
    let names = forced.iter().filter_map(|t| tool_signature(t)).map(|(n, _)| n.to_owned()).collect();
    sampling.grammar = Some(GrammarSpec::ToolCall(call_schema(&forced)));
    Ok(ToolMode::Forced { names })
}

/// `POST /v1/completions` (legacy).
pub fn openai_completion(body: &Value, priority: Priority) -> Result<Parsed, ApiError> {
    let o = object(body)?;
    let prompt = match o.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or_default().to_owned(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            return Err(unsupported("prompt", "several prompts in one request"));
        }
        Some(Value::Array(_)) => return Err(unsupported("prompt", "token-id prompts")),
        _ => return Err(invalid("prompt", "must be a string")),
    };
    if opt_bool(o, "echo")? {
        return Err(unsupported("echo", "echo"));
    }
    if o.get("suffix").is_some_and(|s| !s.is_null()) {
        return Err(unsupported("suffix", "suffix (fill-in-the-middle)"));
    }
    if o.get("best_of").and_then(Value::as_u64).is_some_and(|b| b > 1) {
        return Err(unsupported("best_of", "best_of > 1"));
    }
    let mut sampling = openai_sampling(o)?;
    // The legacy endpoint's documented default.
    if sampling.max_tokens.is_none() {
        sampling.max_tokens = Some(16);
    }
    let (stream, include_usage) = stream_flags(o)?;
    Ok(Parsed {
        request: GenerateRequest { prompt: Prompt::Text(prompt), sampling, priority },
        stream,
        include_usage,
        tools: ToolMode::Off,
    })
}

/// `POST /v1/embeddings`.
pub fn openai_embeddings(body: &Value) -> Result<EmbeddingsRequest, ApiError> {
    let o = object(body)?;
    let input = match o.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::Array(_)) => return Err(unsupported("input", "token-id input")),
        _ => return Err(invalid("input", "must be a string or an array of strings")),
    };
    if input.is_empty() {
        return Err(invalid("input", "must not be empty"));
    }
    if o.get("dimensions").is_some_and(|d| !d.is_null()) {
        return Err(unsupported("dimensions", "choosing embedding dimensions"));
    }
    let base64 = match o.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(invalid("encoding_format", format!("{other:?} is not float or base64"))),
    };
    Ok(EmbeddingsRequest { input, base64 })
}

/// Text of Anthropic content blocks (text only), for `system` and `tool_result` content.
fn anthropic_text(v: &Value, at: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                let here = format!("{at}[{j}]");
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(b.get("text").and_then(Value::as_str).unwrap_or("").to_owned()),
                    Some("image") => return Err(unsupported(&here, "image input")),
                    Some("document") => return Err(unsupported(&here, "document input")),
                    Some(other) => return Err(invalid(&here, format!("unexpected block type {other:?}"))),
                    None => return Err(invalid(&here, "content blocks need a type")),
                }
            }
            Ok(texts.join("\n"))
        }
        Value::Null => Ok(String::new()),
        _ => Err(invalid(at, "must be a string or an array of content blocks")),
    }
}

/// `POST /v1/messages` (and count_tokens, which needs no `max_tokens`).
pub fn anthropic_messages(body: &Value, priority: Priority, count_only: bool) -> Result<Parsed, ApiError> {
    let o = object(body)?;
    if o.get("thinking").and_then(|t| t.get("type")).and_then(Value::as_str) == Some("enabled") {
        return Err(unsupported("thinking", "extended thinking"));
    }
    let max_tokens = opt_u32(o, "max_tokens")?;
    if !count_only {
        match max_tokens {
            None => return Err(invalid("max_tokens", "required")),
            Some(0) => return Err(invalid("max_tokens", "must be at least 1")),
            _ => {}
        }
    }
    let mut messages = Vec::new();
    if let Some(system) = o.get("system") {
        let text = anthropic_text(system, "system")?;
        if !text.is_empty() {
            messages.push(ChatMessage::new("system", text));
        }
    }
    let msgs = o
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("messages", "must be a non-empty array"))?;
    for (i, m) in msgs.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = match m.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant")) => r,
            Some(other) => return Err(invalid(&format!("{at}.role"), format!("must be user or assistant, not {other:?}"))),
            None => return Err(invalid(&format!("{at}.role"), "required")),
        };
        match m.get("content") {
            Some(Value::String(s)) => messages.push(ChatMessage::new(role, s.clone())),
            Some(Value::Array(blocks)) => {
                let mut text = Vec::new();
                let mut calls = Vec::new();
                for (j, b) in blocks.iter().enumerate() {
                    let here = format!("{at}.content[{j}]");
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => text.push(b.get("text").and_then(Value::as_str).unwrap_or("").to_owned()),
                        Some("image") => return Err(unsupported(&here, "image input")),
                        Some("document") => return Err(unsupported(&here, "document input")),
                        // Earlier reasoning is not replayed to a local model.
                        Some("thinking") | Some("redacted_thinking") => {}
                        Some("tool_use") => calls.push(json!({
                            "id": b.get("id").cloned().unwrap_or(Value::Null),
                            "type": "function",
                            "function": {
                                "name": b.get("name").cloned().unwrap_or(Value::Null),
                                "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                            }
                        })),
                        Some("tool_result") => {
                            let mut msg = ChatMessage::new(
                                "tool",
                                anthropic_text(b.get("content").unwrap_or(&Value::Null), &format!("{here}.content"))?,
                            );
                            msg.tool_call_id = b.get("tool_use_id").and_then(Value::as_str).map(str::to_owned);
                            messages.push(msg);
                        }
                        Some(other) => return Err(invalid(&here, format!("unknown content block type {other:?}"))),
                        None => return Err(invalid(&here, "content blocks need a type")),
                    }
                }
                if !text.is_empty() || !calls.is_empty() {
                    let mut msg = ChatMessage::new(role, text.join("\n"));
                    if !calls.is_empty() {
                        msg.tool_calls = Some(Value::Array(calls));
                    }
                    messages.push(msg);
                }
            }
            _ => return Err(invalid(&format!("{at}.content"), "must be a string or an array of content blocks")),
        }
    }
    let choice = match o.get("tool_choice") {
        None | Some(Value::Null) => Choice::Auto,
        Some(tc) => match tc.get("type").and_then(Value::as_str) {
            Some("none") => Choice::None,
            Some("auto") => Choice::Auto,
            Some("any") => Choice::Any,
            Some("tool") => {
                Choice::Named(tc.get("name").and_then(Value::as_str).ok_or_else(|| invalid("tool_choice.name", "required"))?.to_owned())
            }
            _ => return Err(invalid("tool_choice.type", "must be auto, any, tool or none")),
        },
    };
    let tools: Vec<Value> = match o.get("tools") {
        Some(Value::Array(t)) if choice != Choice::None => t
            .iter()
            .enumerate()
            .map(|(i, t)| {
                match t.get("type").and_then(Value::as_str) {
                    None | Some("custom") => {}
                    Some(other) => return Err(unsupported(&format!("tools[{i}].type"), &format!("the server tool {other:?}"))),
                }
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| invalid(&format!("tools[{i}].name"), "required"))?;
                Ok(json!({
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": t.get("description").cloned().unwrap_or(Value::Null),
                        "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
                    }
                }))
            })
            .collect::<Result<_, ApiError>>()?,
        None | Some(Value::Null) | Some(Value::Array(_)) => vec![],
        Some(_) => return Err(invalid("tools", "must be an array")),
    };
    let mut sampling = SamplingParams {
        temperature: range("temperature", opt_f32(o, "temperature")?, 0.0, 1.0)?,
        top_p: range("top_p", opt_f32(o, "top_p")?, 0.0, 1.0)?,
        top_k: opt_u32(o, "top_k")?.map(|k| k as i32),
        stop: stop_list(o, "stop_sequences")?,
        max_tokens,
        ..SamplingParams::default()
    };
    let disable_parallel = o.get("tool_choice").and_then(|tc| tc.get("disable_parallel_tool_use"));
    let parallel = !matches!(flag(disable_parallel, "tool_choice.disable_parallel_tool_use")?, Some(true));
    let mode = tool_mode(&tools, &choice, parallel, "tool_choice", &mut sampling)?;
    let stream = opt_bool(o, "stream")?;
    Ok(Parsed {
        request: GenerateRequest { prompt: Prompt::Chat { messages, tools }, sampling, priority },
        stream,
        include_usage: true,
        tools: mode,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn chat(body: Value) -> Result<Parsed, ApiError> {
        openai_chat(&body, Priority::Live)
    }

    fn messages(p: &Parsed) -> &[ChatMessage] {
        match &p.request.prompt {
            Prompt::Chat { messages, .. } => messages,
            Prompt::Text(_) => panic!("not a chat"),
        }
    }

    #[test]
    fn openai_chat_fields() {
        let p = chat(json!({
            "model": "local/gemma",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "temperature": 0, "top_p": 0.5, "max_completion_tokens": 9, "max_tokens": 100,
            "stop": "END", "seed": 3, "logit_bias": {"12": -100},
            "presence_penalty": 0.5, "frequency_penalty": 0.25,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "stream": true, "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "user": "ignored"
        }))
        .unwrap();
        assert!(p.stream && p.include_usage);
        let m = messages(&p);
        assert_eq!(m[0], ChatMessage::new("system", "be brief"));
        assert_eq!(m[1].content, "a\nb");
        assert!(m[2].tool_calls.is_some());
        assert_eq!(m[3].tool_call_id.as_deref(), Some("c1"));
        let s = &p.request.sampling;
        assert_eq!(s.temperature, Some(0.0));
        assert_eq!(s.max_tokens, Some(9));
        assert_eq!(s.stop, vec!["END".to_string()]);
        assert_eq!(s.seed, Some(3));
        assert_eq!(s.logit_bias, vec![(12, -100.0)]);
        assert_eq!(s.grammar, Some(GrammarSpec::JsonSchema(json!({"type": "object"}))));
        let Prompt::Chat { tools, .. } = &p.request.prompt else { unreachable!() };
        assert_eq!(tools.len(), 1);
    }

    #[test]
    fn openai_chat_refusals_name_the_feature() {
        let check = |body: Value, needle: &str| {
            let e = chat(body).unwrap_err();
            assert!(e.message.contains(needle), "{} does not mention {needle}", e.message);
            e
        };
        let e =
            check(json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}), "image input");
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
        assert_eq!(e.code, Some("unsupported_feature"));
        check(json!({"messages": [{"role": "user", "content": "x"}], "n": 2}), "n > 1");
        check(json!({"messages": [{"role": "user", "content": "x"}], "logprobs": true}), "logprobs");
        check(json!({"messages": []}), "messages");
        check(json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}), "temperature");
        check(json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}), "response_format");
        check(json!([1, 2]), "JSON object");
    }

    #[test]
    fn tool_choice_none_drops_tools() {
        let p =
            chat(json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}], "tool_choice": "none"})).unwrap();
        let Prompt::Chat { tools, .. } = &p.request.prompt else { unreachable!() };
        assert!(tools.is_empty());
    }

    #[test]
    fn tool_choices() {
        let weather = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}});
        let now = json!({"type": "function", "function": {"name": "now"}});
        let body = |choice: Value| {
            let mut b = json!({"messages": [{"role": "user", "content": "x"}], "tools": [weather, now]});
            if !choice.is_null() {
                b["tool_choice"] = choice;
            }
            b
        };
        let names = || vec!["get_weather".to_string(), "now".to_string()];
        // (tool_choice, expected mode); a forced mode carries the grammar of a call.
        let cases = [
            (Value::Null, ToolMode::Auto { names: names(), parallel: true }),
            (json!("auto"), ToolMode::Auto { names: names(), parallel: true }),
            (json!("none"), ToolMode::Off),
            (json!("required"), ToolMode::Forced { names: names() }),
            (json!({"type": "function", "function": {"name": "now"}}), ToolMode::Forced { names: vec!["now".into()] }),
        ];
        for (choice, want) in cases {
            let p = chat(body(choice.clone())).unwrap();
            assert_eq!(p.tools, want, "{choice}");
            match (&p.tools, &p.request.sampling.grammar) {
                (ToolMode::Forced { names }, Some(GrammarSpec::ToolCall(schema))) if names.len() == 1 => {
                    assert_eq!(schema["properties"]["name"]["const"], "now");
                }
                (ToolMode::Forced { .. }, Some(GrammarSpec::ToolCall(schema))) => assert_eq!(schema["anyOf"].as_array().unwrap().len(), 2),
                (ToolMode::Forced { .. }, other) => panic!("forced without a tool grammar: {other:?}"),
                (_, g) => assert!(g.is_none(), "{choice}"),
            }
        }
        // No tools: no tool mode.
        assert_eq!(chat(json!({"messages": [{"role": "user", "content": "x"}]})).unwrap().tools, ToolMode::Off);

        let a = |choice: Value| {
            anthropic_messages(
                &json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": choice,
                        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}, {"name": "now", "input_schema": {"type": "object"}}]}),
                Priority::Live,
                false,
            )
        };
        assert_eq!(a(json!({"type": "auto"})).unwrap().tools, ToolMode::Auto { names: names(), parallel: true });
        assert_eq!(a(json!({"type": "any"})).unwrap().tools, ToolMode::Forced { names: names() });
        assert_eq!(a(json!({"type": "tool", "name": "now"})).unwrap().tools, ToolMode::Forced { names: vec!["now".into()] });
        assert_eq!(a(json!({"type": "none"})).unwrap().tools, ToolMode::Off);

        // One call at most, when the client says so; anything but a boolean is refused.
        let mut b = body(json!("auto"));
        b["parallel_tool_calls"] = json!(false);
        assert_eq!(chat(b.clone()).unwrap().tools, ToolMode::Auto { names: names(), parallel: false });
        b["parallel_tool_calls"] = json!(true);
        assert_eq!(chat(b.clone()).unwrap().tools, ToolMode::Auto { names: names(), parallel: true });
        b["parallel_tool_calls"] = json!("no");
        assert!(chat(b).unwrap_err().message.contains("parallel_tool_calls"));
        let one = a(json!({"type": "auto", "disable_parallel_tool_use": true})).unwrap();
        assert_eq!(one.tools, ToolMode::Auto { names: names(), parallel: false });
        assert!(a(json!({"type": "auto", "disable_parallel_tool_use": 1})).unwrap_err().message.contains("disable_parallel_tool_use"));

        // Refusals name what is wrong or unsupported.
        let refused = |r: Result<Parsed, ApiError>, needle: &str| {
            let e = r.unwrap_err();
            assert!(e.message.contains(needle), "{} does not mention {needle}", e.message);
        };
        refused(chat(body(json!({"type": "function", "function": {"name": "nope"}}))), "no tool named \"nope\"");
        refused(a(json!({"type": "tool", "name": "nope"})), "no tool named \"nope\"");
        refused(chat(json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"})), "no tools");
        refused(chat(body(json!("sometimes"))), "tool_choice");
        let mut b = body(json!("required"));
        b["response_format"] = json!({"type": "json_object"});
        refused(chat(b), "forced tool choice");
        refused(
            chat(json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "custom", "custom": {"name": "x"}}]})),
            "custom tools",
        );
        refused(
            anthropic_messages(
                &json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                Priority::Live,
                false,
            ),
            "server tool \"web_search_20250305\"",
        );
    }

    #[test]
    fn completions() {
        let p = openai_completion(&json!({"prompt": "Once", "stop": ["\n"]}), Priority::Drill).unwrap();
        assert_eq!(p.request.prompt, Prompt::Text("Once".into()));
        assert_eq!(p.request.sampling.max_tokens, Some(16));
        assert_eq!(p.request.priority, Priority::Drill);
        assert!(openai_completion(&json!({"prompt": [1, 2]}), Priority::Live).unwrap_err().message.contains("token-id"));
        assert!(openai_completion(&json!({"prompt": "x", "echo": true}), Priority::Live).is_err());
    }

    #[test]
    fn embeddings() {
        let e = openai_embeddings(&json!({"input": ["a", "b"], "encoding_format": "base64"})).unwrap();
        assert_eq!(e.input, vec!["a", "b"]);
        assert!(e.base64);
        assert!(openai_embeddings(&json!({"input": [[1, 2]]})).is_err());
        assert!(openai_embeddings(&json!({"input": "a", "dimensions": 8})).is_err());
    }

    #[test]
    fn anthropic_messages_fields() {
        let p = anthropic_messages(
            &json!({
                "model": "claude-x", "max_tokens": 50,
                "system": [{"type": "text", "text": "sys"}],
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "hmm"},
                        {"type": "text", "text": "calling"},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}
                    ]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "ok"}]}]}
                ],
                "stop_sequences": ["Human:"], "temperature": 0.2, "top_k": 5, "stream": true,
                "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]
            }),
            Priority::Live,
            false,
        )
        .unwrap();
        let m = messages(&p);
        assert_eq!(m[0], ChatMessage::new("system", "sys"));
        assert_eq!(m[1], ChatMessage::new("user", "hi"));
        assert_eq!(m[2].content, "calling");
        assert_eq!(m[2].tool_calls.as_ref().unwrap()[0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(m[3].role, "tool");
        assert_eq!(m[3].content, "ok");
        assert_eq!(p.request.sampling.stop, vec!["Human:".to_string()]);
        assert_eq!(p.request.sampling.max_tokens, Some(50));
        assert_eq!(p.request.sampling.top_k, Some(5));
        let Prompt::Chat { tools, .. } = &p.request.prompt else { unreachable!() };
        assert_eq!(tools[0]["function"]["parameters"], json!({"type": "object"}));
        assert!(p.stream);
    }

    #[test]
    fn anthropic_refusals() {
        let base = |extra: Value| {
            let mut b = json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        let e = anthropic_messages(
            &base(json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]})),
            Priority::Live,
            false,
        )
        .unwrap_err();
        assert!(e.message.contains("image input"), "{}", e.message);
        let e = anthropic_messages(&json!({"messages": [{"role": "user", "content": "x"}]}), Priority::Live, false).unwrap_err();
        assert!(e.message.contains("max_tokens"));
        // count_tokens needs no max_tokens.
        anthropic_messages(&json!({"messages": [{"role": "user", "content": "x"}]}), Priority::Live, true).unwrap();
        let e =
            anthropic_messages(&base(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})), Priority::Live, false).unwrap_err();
        assert!(e.message.contains("thinking"));
    }
}
