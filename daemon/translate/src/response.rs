//! Non-streamed responses and error bodies.

use serde_json::{Value, json};

use crate::decode::{anthropic_usage, openai_usage};
use crate::util::{Obj, as_arr, as_obj, field, invalid, join, opt_str, req_str, unsupported};
use crate::{Api, ErrorKind, FinishReason, TranslateError, Usage};

/// Translates a complete (non-streamed) response body from one API to the other, naming
/// `client_model` as the model. `created` is the OpenAI timestamp (Unix seconds) used when the
/// upstream is Anthropic, which has none.
///
/// OpenAI `chat.completion` (first choice; `n > 1` responses are refused) <-> Anthropic
/// `message`: text, tool calls (arguments parsed into `input` objects and back), the finish
/// reason (see [`FinishReason`]) and usage. Anthropic thinking blocks are dropped.
pub fn translate_response(body: &Value, from: Api, to: Api, client_model: &str, created: u64) -> Result<Value, TranslateError> {
    let obj = as_obj(body, "")?;
    match (from, to) {
        (Api::OpenAi, Api::Anthropic) => openai_to_anthropic(obj, client_model),
        (Api::Anthropic, Api::OpenAi) => anthropic_to_openai(obj, client_model, created),
        _ => {
            let mut out = obj.clone();
            out.insert("model".into(), client_model.into());
            Ok(Value::Object(out))
        }
    }
}

fn openai_to_anthropic(obj: &Obj, model: &str) -> Result<Value, TranslateError> {
    let choices = as_arr(obj.get("choices").unwrap_or(&Value::Null), "choices")?;
    if choices.len() > 1 {
        return Err(unsupported("choices", Api::Anthropic, "an Anthropic message holds one answer"));
    }
    let choice = as_obj(choices.first().ok_or_else(|| invalid("choices", "empty"))?, "choices[0]")?;
    let message = as_obj(choice.get("message").unwrap_or(&Value::Null), "choices[0].message")?;
    let mut content = Vec::new();
    for key in ["content", "refusal"] {
        if let Some(text) = opt_str(message, key, "choices[0].message")?
            && !text.is_empty()
        {
            content.push(json!({"type": "text", "text": text}));
        }
    }
    if let Some(calls) = field(message, "tool_calls") {
        for (i, call) in as_arr(calls, "choices[0].message.tool_calls")?.iter().enumerate() {
            let cp = format!("choices[0].message.tool_calls[{i}]");
            let call = as_obj(call, &cp)?;
            let fp = join(&cp, "function");
            let function = as_obj(call.get("function").unwrap_or(&Value::Null), &fp)?;
            let arguments = opt_str(function, "arguments", &fp)?.unwrap_or_default();
            let input: Value = if arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(arguments).map_err(|e| invalid(join(&fp, "arguments"), format!("not valid JSON: {e}")))?
            };
            if !input.is_object() {
                return Err(invalid(join(&fp, "arguments"), "not a JSON object"));
            }
            content.push(json!({"type": "tool_use", "id": req_str(call, "id", &cp)?,
                "name": req_str(function, "name", &fp)?, "input": input}));
        }
    }
    let reason = match opt_str(choice, "finish_reason", "choices[0]")? {
        Some(r) => FinishReason::from_openai(r),
        None => FinishReason::Stop,
    };
    let usage = field(obj, "usage").and_then(Value::as_object).map(openai_usage).unwrap_or_default();
    Ok(json!({
        "id": obj.get("id").and_then(Value::as_str).unwrap_or("msg_genset"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason.anthropic(),
        "stop_sequence": reason.stop_sequence(),
        "usage": anthropic_usage_json(usage),
    }))
}

fn anthropic_usage_json(usage: Usage) -> Value {
    let cached = usage.cached.unwrap_or(0);
    let mut out = json!({
        "input_tokens": usage.input.unwrap_or(0).saturating_sub(cached),
        "output_tokens": usage.output.unwrap_or(0),
    });
    if let Some(cached) = usage.cached {
        out["cache_read_input_tokens"] = cached.into();
    }
    out
}

fn anthropic_to_openai(obj: &Obj, model: &str, created: u64) -> Result<Value, TranslateError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (i, block) in as_arr(obj.get("content").unwrap_or(&Value::Null), "content")?.iter().enumerate() {
        let bp = format!("content[{i}]");
        let block = as_obj(block, &bp)?;
        match req_str(block, "type", &bp)? {
            "text" => text.push_str(req_str(block, "text", &bp)?),
            "tool_use" => {
                let input = field(block, "input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": req_str(block, "id", &bp)?, "type": "function",
                    "function": {"name": req_str(block, "name", &bp)?, "arguments": input.to_string()}}));
            }
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(unsupported(join(&bp, "type"), Api::OpenAi, format!("content block {other:?} is not translated")));
            }
        }
    }
    let reason = match opt_str(obj, "stop_reason", "")? {
        Some(r) => FinishReason::from_anthropic(r, obj.get("stop_sequence").and_then(Value::as_str)),
        None => FinishReason::Stop,
    };
    let usage = field(obj, "usage").and_then(Value::as_object).map(anthropic_usage).unwrap_or_default();
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = calls.into();
    }
    let (input, output) = (usage.input.unwrap_or(0), usage.output.unwrap_or(0));
    let mut usage_json = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output});
    if let Some(cached) = usage.cached {
        usage_json["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    Ok(json!({
        "id": obj.get("id").and_then(Value::as_str).unwrap_or("chatcmpl-genset"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": reason.openai()}],
        "usage": usage_json,
    }))
}

/// Re-renders an upstream error body (either API's format, or anything else: an HTML page, an
/// empty body) in `to`'s format, keeping the message and mapping the type through
/// [`ErrorKind`] (a specific HTTP status wins over a generic one's type string). A body already
/// in `to`'s format (when `from == to`) is returned as it is. The client's status is the
/// caller's to choose, e.g. with [`ErrorKind::status`].
pub fn translate_error(status: u16, body: &[u8], from: Api, to: Api) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if from == to
        && let Some(v) = &parsed
        && is_error_body(v, to)
    {
        return v.clone();
    }
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message").and_then(Value::as_str).or_else(|| e.as_str()))
        .or_else(|| parsed.as_ref().and_then(|v| v.get("message")).and_then(Value::as_str))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() || parsed.is_some() { format!("upstream returned HTTP {status}") } else { text.chars().take(500).collect() }
        });
    let type_str = error.and_then(|e| {
        ["type", "code"].iter().filter_map(|k| e.get(*k).and_then(Value::as_str)).find(|t| ErrorKind::from_type(t).is_some())
    });
    let kind = ErrorKind::classify(status, type_str);
    error_body(to, kind, &message)
}

/// An error body in `api`'s format.
pub(crate) fn error_body(api: Api, kind: ErrorKind, message: &str) -> Value {
    match api {
        Api::OpenAi => json!({"error": {"message": message, "type": kind.openai_type(), "param": null,
            "code": kind.openai_code()}}),
        Api::Anthropic => json!({"type": "error", "error": {"type": kind.anthropic_type(), "message": message}}),
    }
}

fn is_error_body(v: &Value, api: Api) -> bool {
    match api {
        Api::OpenAi => v.get("error").and_then(|e| e.get("message")).is_some_and(Value::is_string),
        Api::Anthropic => {
            v.get("type") == Some(&json!("error"))
                && v.get("error").and_then(|e| e.get("type")).is_some_and(Value::is_string)
                && v.get("error").and_then(|e| e.get("message")).is_some_and(Value::is_string)
        }
    }
}
