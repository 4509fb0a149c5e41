//! Request translation and continuation (assistant prefill) requests.

use serde_json::{Value, json};

use crate::util::{Obj, as_arr, as_obj, field, invalid, join, opt_str, opt_u64, parse_data_url, req_str, unsupported};
use crate::{Api, TranslateError};

/// Which field carries the output budget in an OpenAI request genset builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTokensField {
    /// `max_completion_tokens` (current OpenAI; required by reasoning models; genset's engine
    /// reads it).
    #[default]
    MaxCompletionTokens,
    /// `max_tokens` (older OpenAI-compatible servers).
    MaxTokens,
}

/// Choices a translation cannot take from the body itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOptions {
    /// `max_tokens` for an Anthropic request when the OpenAI body sets none (Anthropic requires
    /// it).
    pub default_max_tokens: u64,
    /// The field an OpenAI request gets its budget in.
    pub openai_max_tokens_field: MaxTokensField,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self { default_max_tokens: 4096, openai_max_tokens_field: MaxTokensField::default() }
    }
}

/// Translates a request body from one API to the other, naming `model` as the target model.
/// Same-API "translation" only replaces the model.
///
/// OpenAI -> Anthropic: `system`/`developer` messages become `system` (one text block each);
/// user content parts (text, `image_url` with a `data:` URL -> base64 image block, http(s) URL ->
/// URL image block, PDF `file` data -> document block); assistant `tool_calls` -> `tool_use`
/// blocks; `tool` messages -> `tool_result` blocks in a user message (neighbours with the same
/// role are merged, so roles alternate); `tools`, `tool_choice` (auto/none/required/named ->
/// auto/none/any/tool), `parallel_tool_calls: false` -> `disable_parallel_tool_use`;
/// `max_completion_tokens`/`max_tokens` (else [`RequestOptions::default_max_tokens`]);
/// `temperature` (clamped to Anthropic's 0..=1), `top_p`, `stop` -> `stop_sequences`, `stream`,
/// `user` -> `metadata.user_id`. Anthropic -> OpenAI is the reverse, and asks for usage in
/// streams (`stream_options.include_usage`).
///
/// Fields that would change the answer's shape or meaning if dropped (`n > 1`, `logprobs`,
/// `response_format` other than text, audio, legacy `functions`, Anthropic server tools and
/// MCP servers...) are [`TranslateError::Unsupported`]. Sampling hints the target lacks
/// (penalties, `seed`, `top_k`, `thinking`, cache control) are dropped.
pub fn translate_request(body: &Value, from: Api, to: Api, model: &str, options: &RequestOptions) -> Result<Value, TranslateError> {
    let obj = as_obj(body, "")?;
    match (from, to) {
        (Api::OpenAi, Api::Anthropic) => openai_to_anthropic(obj, model, options),
        (Api::Anthropic, Api::OpenAi) => anthropic_to_openai(obj, model, options),
        _ => {
            let mut out = obj.clone();
            out.insert("model".into(), model.into());
            Ok(Value::Object(out))
        }
    }
}

// ---------------------------------------------------------------- OpenAI -> Anthropic

fn openai_to_anthropic(obj: &Obj, model: &str, options: &RequestOptions) -> Result<Value, TranslateError> {
    let to = Api::Anthropic;
    if let Some(n) = opt_u64(obj, "n", "")?
        && n != 1
    {
        return Err(unsupported("n", to, "Anthropic generates one choice per request"));
    }
    if field(obj, "logprobs").and_then(Value::as_bool) == Some(true) || field(obj, "top_logprobs").is_some() {
        let key = if field(obj, "top_logprobs").is_some() { "top_logprobs" } else { "logprobs" };
        return Err(unsupported(key, to, "Anthropic returns no log probabilities"));
    }
    if field(obj, "logit_bias").and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
        return Err(unsupported("logit_bias", to, "Anthropic has no logit bias"));
    }
    if let Some(format) = field(obj, "response_format")
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(unsupported("response_format", to, "JSON mode is not translated"));
    }
    if field(obj, "audio").is_some()
        || field(obj, "modalities").and_then(Value::as_array).is_some_and(|m| m.iter().any(|v| v.as_str() != Some("text")))
    {
        let key = if field(obj, "audio").is_some() { "audio" } else { "modalities" };
        return Err(unsupported(key, to, "only text output is translated"));
    }
    for key in ["functions", "function_call", "web_search_options"] {
        if field(obj, key).is_some() {
            return Err(unsupported(key, to, "no Anthropic equivalent is translated"));
        }
    }

    let mut out = Obj::new();
    out.insert("model".into(), model.into());
    let messages = as_arr(obj.get("messages").unwrap_or(&Value::Null), "messages")?;
    let (system, messages) = openai_messages_to_anthropic(messages)?;
    match system.len() {
        0 => {}
        1 => {
            out.insert("system".into(), system.into_iter().next().unwrap_or_default().into());
        }
        _ => {
            let blocks: Vec<Value> = system.into_iter().map(|t| json!({"type": "text", "text": t})).collect();
            out.insert("system".into(), blocks.into());
        }
    }
    out.insert("messages".into(), messages.into());
    let max_tokens = match opt_u64(obj, "max_completion_tokens", "")? {
        Some(m) => m,
        None => opt_u64(obj, "max_tokens", "")?.unwrap_or(options.default_max_tokens),
    };
    out.insert("max_tokens".into(), max_tokens.into());
    if let Some(t) = field(obj, "temperature") {
        let t = t.as_f64().ok_or_else(|| invalid("temperature", "expected a number"))?;
        out.insert("temperature".into(), t.clamp(0.0, 1.0).into());
    }
    if let Some(p) = field(obj, "top_p") {
        out.insert("top_p".into(), p.clone());
    }
    match field(obj, "stop") {
        None => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(list)) => {
            let list = list
                .iter()
                .enumerate()
                .map(|(i, s)| s.as_str().map(Value::from).ok_or_else(|| invalid(format!("stop[{i}]"), "expected a string")))
                .collect::<Result<Vec<_>, _>>()?;
            if !list.is_empty() {
                out.insert("stop_sequences".into(), list.into());
            }
        }
        Some(_) => return Err(invalid("stop", "expected a string or an array of strings")),
    }
    if let Some(stream) = field(obj, "stream") {
        out.insert("stream".into(), stream.as_bool().ok_or_else(|| invalid("stream", "expected a boolean"))?.into());
    }
    if let Some(user) = opt_str(obj, "user", "")?.or(opt_str(obj, "safety_identifier", "")?) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }

    let tools = match field(obj, "tools") {
        Some(tools) => as_arr(tools, "tools")?
            .iter()
            .enumerate()
            .map(|(i, tool)| openai_tool_to_anthropic(tool, &format!("tools[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    if !tools.is_empty() {
        let mut choice = match field(obj, "tool_choice") {
            None => None,
            Some(Value::String(s)) => Some(match s.as_str() {
                "auto" => json!({"type": "auto"}),
                "none" => json!({"type": "none"}),
                "required" => json!({"type": "any"}),
                other => return Err(invalid("tool_choice", format!("unknown value {other:?}"))),
            }),
            Some(choice) => {
                let c = as_obj(choice, "tool_choice")?;
                if c.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(unsupported("tool_choice.type", to, "only function tool choices are translated"));
                }
                let function = as_obj(c.get("function").unwrap_or(&Value::Null), "tool_choice.function")?;
                Some(json!({"type": "tool", "name": req_str(function, "name", "tool_choice.function")?}))
            }
        };
        if field(obj, "parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = true.into();
            }
        }
        out.insert("tools".into(), tools.into());
        if let Some(choice) = choice {
            out.insert("tool_choice".into(), choice);
        }
    }
    Ok(Value::Object(out))
}

fn openai_tool_to_anthropic(tool: &Value, path: &str) -> Result<Value, TranslateError> {
    let tool = as_obj(tool, path)?;
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(unsupported(join(path, "type"), Api::Anthropic, "only function tools are translated"));
    }
    let fpath = join(path, "function");
    let function = as_obj(tool.get("function").unwrap_or(&Value::Null), &fpath)?;
    let mut out = Obj::new();
    out.insert("name".into(), req_str(function, "name", &fpath)?.into());
    if let Some(description) = opt_str(function, "description", &fpath)? {
        out.insert("description".into(), description.into());
    }
    let schema = field(function, "parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    out.insert("input_schema".into(), schema);
    Ok(Value::Object(out))
}

/// Returns the system texts and the Anthropic messages.
fn openai_messages_to_anthropic(messages: &[Value]) -> Result<(Vec<String>, Vec<Value>), TranslateError> {
    let to = Api::Anthropic;
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = as_obj(message, &path)?;
        let role = req_str(m, "role", &path)?;
        let cpath = join(&path, "content");
        match role {
            "system" | "developer" => system.push(openai_text_content(field(m, "content"), &cpath)?),
            "user" => {
                let content = match field(m, "content") {
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(Value::Array(parts)) => Value::Array(
                        parts
                            .iter()
                            .enumerate()
                            .map(|(j, part)| openai_user_part_to_anthropic(part, &format!("{cpath}[{j}]")))
                            .collect::<Result<_, _>>()?,
                    ),
                    _ => return Err(invalid(cpath, "expected a string or an array of content parts")),
                };
                push_merged(&mut out, "user", content);
            }
            "assistant" => {
                for key in ["function_call", "audio"] {
                    if field(m, key).is_some() {
                        return Err(unsupported(join(&path, key), to, "not translated"));
                    }
                }
                let mut blocks = Vec::new();
                let text = match field(m, "content") {
                    None => String::new(),
                    Some(content) => openai_text_content(Some(content), &cpath)?,
                };
                let calls = match field(m, "tool_calls") {
                    Some(calls) => as_arr(calls, &join(&path, "tool_calls"))?.as_slice(),
                    None => &[],
                };
                if calls.is_empty() {
                    if !text.is_empty() {
                        push_merged(&mut out, "assistant", Value::String(text));
                    }
                    continue;
                }
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for (j, call) in calls.iter().enumerate() {
                    let cp = format!("{path}.tool_calls[{j}]");
                    let call = as_obj(call, &cp)?;
                    if call.get("type").and_then(Value::as_str).is_some_and(|t| t != "function") {
                        return Err(unsupported(join(&cp, "type"), to, "only function tool calls are translated"));
                    }
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
                    blocks.push(json!({"type": "tool_use", "id": req_str(call, "id", &cp)?,
                        "name": req_str(function, "name", &fp)?, "input": input}));
                }
                push_merged(&mut out, "assistant", Value::Array(blocks));
            }
            "tool" => {
                let content = match field(m, "content") {
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(Value::Array(parts)) => Value::Array(
                        parts
                            .iter()
                            .enumerate()
                            .map(|(j, part)| {
                                let pp = format!("{cpath}[{j}]");
                                let part = as_obj(part, &pp)?;
                                match part.get("type").and_then(Value::as_str) {
                                    Some("text") => Ok(json!({"type": "text", "text": req_str(part, "text", &pp)?})),
                                    _ => Err(unsupported(join(&pp, "type"), to, "tool results carry text only")),
                                }
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    None => Value::String(String::new()),
                    Some(_) => return Err(invalid(cpath, "expected a string or an array of text parts")),
                };
                let result = json!({"type": "tool_result", "tool_use_id": req_str(m, "tool_call_id", &path)?,
                    "content": content});
                push_merged(&mut out, "user", Value::Array(vec![result]));
            }
            "function" => return Err(unsupported(join(&path, "role"), to, "legacy function messages are not translated")),
            other => return Err(invalid(join(&path, "role"), format!("unknown role {other:?}"))),
        }
    }
    Ok((system, out))
}

/// Text of a system/assistant content: a string or an array of text (or refusal) parts.
fn openai_text_content(content: Option<&Value>, path: &str) -> Result<String, TranslateError> {
    match content {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let pp = format!("{path}[{j}]");
                let part = as_obj(part, &pp)?;
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(req_str(part, "text", &pp)?),
                    Some("refusal") => text.push_str(req_str(part, "refusal", &pp)?),
                    _ => return Err(unsupported(join(&pp, "type"), Api::Anthropic, "only text parts are translated here")),
                }
            }
            Ok(text)
        }
        Some(_) => Err(invalid(path, "expected a string or an array of text parts")),
    }
}

fn openai_user_part_to_anthropic(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let to = Api::Anthropic;
    let part = as_obj(part, path)?;
    match part.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"type": "text", "text": req_str(part, "text", path)?})),
        Some("image_url") => {
            let ip = join(path, "image_url");
            let url = match part.get("image_url") {
                Some(Value::String(url)) => url.as_str(),
                Some(image) => req_str(as_obj(image, &ip)?, "url", &ip)?,
                None => return Err(invalid(ip, "required")),
            };
            if let Some((media_type, data)) = parse_data_url(url) {
                Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}))
            } else if url.starts_with("https://") || url.starts_with("http://") {
                Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
            } else {
                Err(invalid(join(&ip, "url"), "expected a data: or http(s) URL"))
            }
        }
        Some("file") => {
            let fp = join(path, "file");
            let file = as_obj(part.get("file").unwrap_or(&Value::Null), &fp)?;
            match opt_str(file, "file_data", &fp)?.and_then(parse_data_url) {
                Some((media_type @ "application/pdf", data)) => Ok(json!({"type": "document",
                    "source": {"type": "base64", "media_type": media_type, "data": data}})),
                _ => Err(unsupported(fp, to, "only inline PDF file data is translated")),
            }
        }
        Some(other) => Err(unsupported(join(path, "type"), to, format!("content part {other:?} is not translated"))),
        None => Err(invalid(join(path, "type"), "required")),
    }
}

/// Appends a message, merging it into the previous one if that has the same role (Anthropic
/// wants roles to alternate).
fn push_merged(out: &mut Vec<Value>, role: &str, content: Value) {
    if let Some(last) = out.last_mut()
        && last["role"] == role
    {
        let mut blocks = into_blocks(last["content"].take());
        blocks.extend(into_blocks(content));
        last["content"] = Value::Array(blocks);
        return;
    }
    out.push(json!({"role": role, "content": content}));
}

fn into_blocks(content: Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(blocks) => blocks,
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------- Anthropic -> OpenAI

fn anthropic_to_openai(obj: &Obj, model: &str, options: &RequestOptions) -> Result<Value, TranslateError> {
    let to = Api::OpenAi;
    for key in ["mcp_servers", "container", "output_format"] {
        if field(obj, key).is_some() {
            return Err(unsupported(key, to, "no OpenAI equivalent is translated"));
        }
    }
    let mut out = Obj::new();
    out.insert("model".into(), model.into());

    let mut messages = Vec::new();
    match field(obj, "system") {
        None => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            for (i, block) in blocks.iter().enumerate() {
                let bp = format!("system[{i}]");
                let block = as_obj(block, &bp)?;
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(invalid(join(&bp, "type"), "expected a text block"));
                }
                messages.push(json!({"role": "system", "content": req_str(block, "text", &bp)?}));
            }
        }
        Some(_) => return Err(invalid("system", "expected a string or an array of text blocks")),
    }
    for (i, message) in as_arr(obj.get("messages").unwrap_or(&Value::Null), "messages")?.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = as_obj(message, &path)?;
        match req_str(m, "role", &path)? {
            "user" => anthropic_user_to_openai(m, &path, &mut messages)?,
            "assistant" => messages.push(anthropic_assistant_to_openai(m, &path)?),
            other => return Err(invalid(join(&path, "role"), format!("unknown role {other:?}"))),
        }
    }
    out.insert("messages".into(), messages.into());

    let max_tokens = opt_u64(obj, "max_tokens", "")?.unwrap_or(options.default_max_tokens);
    let key = match options.openai_max_tokens_field {
        crate::MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        crate::MaxTokensField::MaxTokens => "max_tokens",
    };
    out.insert(key.into(), max_tokens.into());
    for key in ["temperature", "top_p"] {
        if let Some(v) = field(obj, key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stops) = field(obj, "stop_sequences") {
        let stops = as_arr(stops, "stop_sequences")?;
        if !stops.is_empty() {
            out.insert("stop".into(), Value::Array(stops.clone()));
        }
    }
    if let Some(stream) = field(obj, "stream") {
        let stream = stream.as_bool().ok_or_else(|| invalid("stream", "expected a boolean"))?;
        out.insert("stream".into(), stream.into());
        if stream {
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    if let Some(metadata) = field(obj, "metadata")
        && let Some(user) = opt_str(as_obj(metadata, "metadata")?, "user_id", "metadata")?
    {
        out.insert("user".into(), user.into());
    }

    let tools = match field(obj, "tools") {
        Some(tools) => as_arr(tools, "tools")?
            .iter()
            .enumerate()
            .map(|(i, tool)| {
                let tp = format!("tools[{i}]");
                let tool = as_obj(tool, &tp)?;
                if let Some(kind) = opt_str(tool, "type", &tp)?
                    && kind != "custom"
                {
                    return Err(unsupported(join(&tp, "type"), to, format!("server tool {kind:?} has no OpenAI equivalent")));
                }
                let mut function = Obj::new();
                function.insert("name".into(), req_str(tool, "name", &tp)?.into());
                if let Some(description) = opt_str(tool, "description", &tp)? {
                    function.insert("description".into(), description.into());
                }
                let schema = field(tool, "input_schema").ok_or_else(|| invalid(join(&tp, "input_schema"), "required"))?;
                function.insert("parameters".into(), schema.clone());
                Ok(json!({"type": "function", "function": function}))
            })
            .collect::<Result<Vec<_>, TranslateError>>()?,
        None => Vec::new(),
    };
    if !tools.is_empty() {
        out.insert("tools".into(), tools.into());
        if let Some(choice) = field(obj, "tool_choice") {
            let c = as_obj(choice, "tool_choice")?;
            let value = match req_str(c, "type", "tool_choice")? {
                "auto" => json!("auto"),
                "any" => json!("required"),
                "none" => json!("none"),
                "tool" => json!({"type": "function", "function": {"name": req_str(c, "name", "tool_choice")?}}),
                other => return Err(invalid("tool_choice.type", format!("unknown value {other:?}"))),
            };
            out.insert("tool_choice".into(), value);
            if field(c, "disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
                out.insert("parallel_tool_calls".into(), false.into());
            }
        }
    }
    Ok(Value::Object(out))
}

/// A user message: its `tool_result` blocks become `tool` messages (first, as OpenAI wants them
/// right after the assistant's calls), the rest one user message.
fn anthropic_user_to_openai(m: &Obj, path: &str, messages: &mut Vec<Value>) -> Result<(), TranslateError> {
    let to = Api::OpenAi;
    let cpath = join(path, "content");
    let blocks = match field(m, "content") {
        Some(Value::String(s)) => {
            messages.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => return Err(invalid(cpath, "expected a string or an array of content blocks")),
    };
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bp = format!("{cpath}[{j}]");
        let block = as_obj(block, &bp)?;
        match req_str(block, "type", &bp)? {
            "text" => parts.push(json!({"type": "text", "text": req_str(block, "text", &bp)?})),
            "image" => {
                let sp = join(&bp, "source");
                let source = as_obj(block.get("source").unwrap_or(&Value::Null), &sp)?;
                let url = match req_str(source, "type", &sp)? {
                    "base64" => format!("data:{};base64,{}", req_str(source, "media_type", &sp)?, req_str(source, "data", &sp)?),
                    "url" => req_str(source, "url", &sp)?.to_owned(),
                    other => return Err(unsupported(join(&sp, "type"), to, format!("image source {other:?} is not translated"))),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            "document" => {
                let sp = join(&bp, "source");
                let source = as_obj(block.get("source").unwrap_or(&Value::Null), &sp)?;
                match (req_str(source, "type", &sp)?, opt_str(source, "media_type", &sp)?) {
                    ("base64", Some(media_type @ "application/pdf")) => {
                        let data = format!("data:{media_type};base64,{}", req_str(source, "data", &sp)?);
                        let name = opt_str(block, "title", &bp)?.unwrap_or("document.pdf");
                        parts.push(json!({"type": "file", "file": {"filename": name, "file_data": data}}));
                    }
                    ("text", _) => parts.push(json!({"type": "text", "text": req_str(source, "data", &sp)?})),
                    _ => return Err(unsupported(sp, to, "only PDF and plain text documents are translated")),
                }
            }
            "tool_result" => {
                let content = match field(block, "content") {
                    None => Value::String(String::new()),
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(Value::Array(items)) => Value::Array(
                        items
                            .iter()
                            .enumerate()
                            .map(|(k, item)| {
                                let ip = format!("{bp}.content[{k}]");
                                let item = as_obj(item, &ip)?;
                                match item.get("type").and_then(Value::as_str) {
                                    Some("text") => Ok(json!({"type": "text", "text": req_str(item, "text", &ip)?})),
                                    _ => Err(unsupported(join(&ip, "type"), to, "OpenAI tool messages carry text only")),
                                }
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    Some(_) => return Err(invalid(join(&bp, "content"), "expected a string or an array")),
                };
                messages.push(json!({"role": "tool", "tool_call_id": req_str(block, "tool_use_id", &bp)?, "content": content}));
            }
            other => return Err(unsupported(join(&bp, "type"), to, format!("content block {other:?} is not translated"))),
        }
    }
    if !parts.is_empty() {
        messages.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn anthropic_assistant_to_openai(m: &Obj, path: &str) -> Result<Value, TranslateError> {
    let cpath = join(path, "content");
    let blocks = match field(m, "content") {
        Some(Value::String(s)) => return Ok(json!({"role": "assistant", "content": s})),
        Some(Value::Array(blocks)) => blocks,
        _ => return Err(invalid(cpath, "expected a string or an array of content blocks")),
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bp = format!("{cpath}[{j}]");
        let block = as_obj(block, &bp)?;
        match req_str(block, "type", &bp)? {
            "text" => text.push_str(req_str(block, "text", &bp)?),
            "tool_use" => {
                let input = field(block, "input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": req_str(block, "id", &bp)?, "type": "function",
                    "function": {"name": req_str(block, "name", &bp)?, "arguments": input.to_string()}}));
            }
            // Earlier reasoning is not replayed to a model of the other family.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(unsupported(join(&bp, "type"), Api::OpenAi, format!("content block {other:?} is not translated")));
            }
        }
    }
    let mut out = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        out["tool_calls"] = calls.into();
    }
    Ok(out)
}

// ---------------------------------------------------------------- continuation

/// A request asking the model to continue a partial answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    /// The request body, in the API it was given in.
    pub body: Value,
    /// Trailing whitespace trimmed off the prefill (Anthropic rejects prefill ending in
    /// whitespace). The client already received it: drop it from the continuation's start with
    /// [`Continuation::splicer`].
    pub trimmed: String,
}

impl Continuation {
    /// A [`Splicer`] that removes [`Continuation::trimmed`] from the start of the continuation.
    pub fn splicer(&self) -> Splicer {
        Splicer { pending: self.trimmed.clone(), pos: 0 }
    }
}

/// Drops from the start of a continuation's text the whitespace the client already received.
///
/// Characters are dropped while they match the trimmed whitespace, in order; the first
/// character that does not match ends the splice (the model chose different whitespace, and
/// what the client has is kept as is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splicer {
    pending: String,
    pos: usize,
}

impl Splicer {
    /// The part of `text` (the next text delta of the continuation) to forward.
    pub fn splice<'a>(&mut self, text: &'a str) -> &'a str {
        let mut cut = 0;
        for c in text.chars() {
            match self.pending[self.pos..].chars().next() {
                Some(p) if p == c => {
                    self.pos += c.len_utf8();
                    cut += c.len_utf8();
                }
                _ => {
                    self.pos = self.pending.len();
                    break;
                }
            }
        }
        &text[cut..]
    }

    /// Whether nothing more will be dropped.
    pub fn is_done(&self) -> bool {
        self.pos >= self.pending.len()
    }
}

/// Appends `partial` as an assistant prefill to a request in its own API, so that the model
/// continues it; merged into a trailing assistant message if there is one.
///
/// Anthropic rejects a prefill that ends in whitespace: it is trimmed and returned in
/// [`Continuation::trimmed`]. OpenAI gets the same final assistant message (genset's engine
/// treats it as prefill; upstreams that do not will answer anew, so prefer local steps for
/// continuations). If `produced_tokens` is given, the output budget (`max_tokens` /
/// `max_completion_tokens`) is reduced by it; [`TranslateError::BudgetExhausted`] if nothing is
/// left.
pub fn continuation_request(body: &Value, api: Api, partial: &str, produced_tokens: Option<u64>) -> Result<Continuation, TranslateError> {
    let mut out = as_obj(body, "")?.clone();
    if let Some(produced) = produced_tokens {
        for key in ["max_tokens", "max_completion_tokens"] {
            if let Some(max) = opt_u64(&out, key, "")? {
                if produced >= max {
                    return Err(TranslateError::BudgetExhausted { max_tokens: max });
                }
                out.insert(key.into(), (max - produced).into());
            }
        }
    }
    let messages = out.get_mut("messages").and_then(Value::as_array_mut).ok_or_else(|| invalid("messages", "expected an array"))?;
    let last = messages.len().checked_sub(1);
    let has_prefill = last.is_some_and(|i| messages[i]["role"] == "assistant" && messages[i].get("tool_calls").is_none_or(Value::is_null));
    let mut content = match (has_prefill, last) {
        (true, Some(i)) => messages.remove(i)["content"].take(),
        _ => Value::String(String::new()),
    };
    let path = format!("messages[{}].content", messages.len());
    let mut trimmed = String::new();
    match &mut content {
        Value::Null => content = Value::String(partial.to_owned()),
        Value::String(s) => s.push_str(partial),
        Value::Array(blocks) => match blocks.last_mut() {
            Some(last) if last["type"] == "text" && last["text"].is_string() => {
                let text = format!("{}{partial}", last["text"].as_str().unwrap_or_default());
                last["text"] = text.into();
            }
            Some(last) if last["type"] != "text" => {
                return Err(unsupported(path, api, "the trailing assistant message does not end in text"));
            }
            _ => blocks.push(json!({"type": "text", "text": partial})),
        },
        _ => return Err(invalid(path, "expected a string or an array")),
    }
    if api == Api::Anthropic {
        let text = match &mut content {
            Value::String(s) => Some(s),
            Value::Array(blocks) => blocks.last_mut().and_then(|b| match &mut b["text"] {
                Value::String(s) => Some(s),
                _ => None,
            }),
            _ => None,
        };
        if let Some(text) = text {
            let keep = text.trim_end().len();
            trimmed = text.split_off(keep);
        }
    }
    if let Value::Array(blocks) = &mut content
        && blocks.last().is_some_and(|b| b["text"] == "")
    {
        blocks.pop();
    }
    let empty = match &content {
        Value::String(s) => s.is_empty(),
        Value::Array(blocks) => blocks.is_empty(),
        _ => true,
    };
    if !empty {
        messages.push(json!({"role": "assistant", "content": content}));
    }
    Ok(Continuation { body: Value::Object(out), trimmed })
}
