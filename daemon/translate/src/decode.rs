//! Stream decoders: one API's server-sent events to neutral [`Delta`]s.

use serde_json::Value;

use crate::util::{Obj, field};
use crate::{Api, Delta, ErrorKind, FinishReason, SseEvent, TranslateError, Usage};

/// What an Anthropic content block carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Text,
    /// A `tool_use` block, with its tool call ordinal.
    Tool(u32),
    /// Thinking, redacted thinking, server tool blocks: not part of the neutral answer.
    Other,
}

/// Decodes the events of one upstream stream into [`Delta`]s.
///
/// Stateful: it checks the protocol's order (deltas only for open content blocks, tool call
/// arguments only for started calls, nothing after the end) and maps Anthropic content block
/// indexes to tool call ordinals. Create one per stream.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    api: Api,
    started: bool,
    ended: bool,
    /// Anthropic content blocks by index.
    pub(crate) blocks: Vec<BlockKind>,
    /// The Anthropic content block currently open.
    pub(crate) open: Option<u32>,
    /// Tool calls started so far (both APIs).
    pub(crate) tool_calls: u32,
}

impl StreamDecoder {
    /// A decoder for a stream in `api`'s format.
    pub fn new(api: Api) -> Self {
        Self { api, started: false, ended: false, blocks: Vec::new(), open: None, tool_calls: 0 }
    }

    /// The API this decoder reads.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Decodes one event. Keep-alives, pings and events that carry nothing of the answer give
    /// no delta. Malformed JSON, an unexpected shape, or an event out of the protocol's order is
    /// an error: such an event must not reach a client.
    pub fn decode(&mut self, event: &SseEvent) -> Result<Vec<Delta>, TranslateError> {
        if std::str::from_utf8(&event.raw).is_err() {
            return Err(self.malformed("event is not valid UTF-8"));
        }
        if event.data.is_empty() {
            return Ok(Vec::new());
        }
        if self.ended {
            return Err(self.malformed("event after the end of the stream"));
        }
        let deltas = match self.api {
            Api::OpenAi => self.decode_openai(&event.data)?,
            Api::Anthropic => self.decode_anthropic(event.event.as_deref(), &event.data)?,
        };
        if deltas.iter().any(|d| matches!(d, Delta::Done | Delta::Error { .. })) {
            self.ended = true;
        }
        Ok(deltas)
    }

    fn malformed(&self, message: impl Into<String>) -> TranslateError {
        TranslateError::Malformed { api: self.api, message: message.into() }
    }

    fn parse<'a>(&self, data: &str, value: &'a mut Value) -> Result<&'a Obj, TranslateError> {
        *value = serde_json::from_str(data).map_err(|e| self.malformed(format!("invalid JSON: {e}")))?;
        value.as_object().ok_or_else(|| self.malformed("data is not a JSON object"))
    }

    fn decode_openai(&mut self, data: &str) -> Result<Vec<Delta>, TranslateError> {
        if data.trim() == "[DONE]" {
            return Ok(vec![Delta::Done]);
        }
        let mut value = Value::Null;
        let chunk = self.parse(data, &mut value)?;
        if let Some(error) = field(chunk, "error") {
            return Ok(vec![error_delta(error)]);
        }
        let mut out = Vec::new();
        if !self.started {
            let id = chunk.get("id").and_then(Value::as_str).unwrap_or_default();
            let model = chunk.get("model").and_then(Value::as_str).unwrap_or_default();
            out.push(Delta::Start { id: id.to_owned(), model: model.to_owned() });
            self.started = true;
        }
        let choices = chunk.get("choices").and_then(Value::as_array).ok_or_else(|| self.malformed("chunk has no `choices` array"))?;
        for choice in choices {
            let choice = choice.as_object().ok_or_else(|| self.malformed("a choice is not an object"))?;
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                return Err(self.malformed("more than one choice in the stream"));
            }
            if let Some(delta) = field(choice, "delta") {
                let delta = delta.as_object().ok_or_else(|| self.malformed("`delta` is not an object"))?;
                self.openai_delta(delta, &mut out)?;
            }
            if let Some(reason) = field(choice, "finish_reason") {
                let reason = reason.as_str().ok_or_else(|| self.malformed("`finish_reason` is not a string"))?;
                out.push(Delta::Finish { reason: FinishReason::from_openai(reason) });
            }
        }
        if let Some(usage) = field(chunk, "usage") {
            let usage = usage.as_object().ok_or_else(|| self.malformed("`usage` is not an object"))?;
            out.push(Delta::Usage(openai_usage(usage)));
        }
        Ok(out)
    }

    fn openai_delta(&mut self, delta: &Obj, out: &mut Vec<Delta>) -> Result<(), TranslateError> {
        for key in ["content", "refusal"] {
            match field(delta, key) {
                Some(Value::String(text)) if !text.is_empty() => out.push(Delta::Text(text.clone())),
                Some(Value::String(_)) | None => {}
                Some(_) => return Err(self.malformed(format!("`delta.{key}` is not a string"))),
            }
        }
        let Some(calls) = field(delta, "tool_calls") else { return Ok(()) };
        let calls = calls.as_array().ok_or_else(|| self.malformed("`tool_calls` is not an array"))?;
        for call in calls {
            let call = call.as_object().ok_or_else(|| self.malformed("a tool call is not an object"))?;
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| self.malformed("a tool call has no `index`"))?;
            let function = field(call, "function").and_then(Value::as_object);
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
            let id = call.get("id").and_then(Value::as_str);
            if index == self.tool_calls && (id.is_some() || name.is_some()) {
                self.tool_calls += 1;
                out.push(Delta::ToolCallStart { index, id: id.unwrap_or_default().to_owned(), name: name.unwrap_or_default().to_owned() });
            } else if index >= self.tool_calls {
                return Err(self.malformed(format!("tool call {index} continues before it started")));
            }
            match function.and_then(|f| field(f, "arguments")) {
                Some(Value::String(json)) if !json.is_empty() => {
                    out.push(Delta::ToolCallArgs { index, json: json.clone() });
                }
                Some(Value::String(_)) | None => {}
                Some(_) => return Err(self.malformed("tool call `arguments` is not a string")),
            }
        }
        Ok(())
    }

    fn decode_anthropic(&mut self, name: Option<&str>, data: &str) -> Result<Vec<Delta>, TranslateError> {
        let mut value = Value::Null;
        let event = self.parse(data, &mut value)?;
        let kind = event.get("type").and_then(Value::as_str).ok_or_else(|| self.malformed("data has no `type`"))?;
        if let Some(name) = name
            && name != kind
        {
            return Err(self.malformed(format!("event `{name}` carries data of type `{kind}`")));
        }
        let in_message =
            matches!(kind, "content_block_start" | "content_block_delta" | "content_block_stop" | "message_delta" | "message_stop");
        if in_message && !self.started {
            return Err(self.malformed(format!("`{kind}` before `message_start`")));
        }
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                if self.started {
                    return Err(self.malformed("second `message_start`"));
                }
                self.started = true;
                let message = obj_field(event, "message").ok_or_else(|| self.malformed("`message` missing"))?;
                let id = message.get("id").and_then(Value::as_str).ok_or_else(|| self.malformed("`message.id` missing"))?;
                let model = message.get("model").and_then(Value::as_str).unwrap_or_default();
                out.push(Delta::Start { id: id.to_owned(), model: model.to_owned() });
                if let Some(usage) = obj_field(message, "usage") {
                    out.push(Delta::Usage(anthropic_usage(usage)));
                }
            }
            "content_block_start" => {
                let index = self.block_index(event)?;
                if index as usize != self.blocks.len() || self.open.is_some() {
                    return Err(self.malformed(format!("content block {index} starts out of order")));
                }
                let block = obj_field(event, "content_block").ok_or_else(|| self.malformed("`content_block` missing"))?;
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        match block.get("text").and_then(Value::as_str) {
                            Some("") => {}
                            Some(text) => out.push(Delta::Text(text.to_owned())),
                            None => return Err(self.malformed("text block has no `text`")),
                        }
                        BlockKind::Text
                    }
                    Some("tool_use") => {
                        let tool = self.tool_calls;
                        self.tool_calls += 1;
                        let id = block.get("id").and_then(Value::as_str).ok_or_else(|| self.malformed("tool_use block has no `id`"))?;
                        let name =
                            block.get("name").and_then(Value::as_str).ok_or_else(|| self.malformed("tool_use block has no `name`"))?;
                        out.push(Delta::ToolCallStart { index: tool, id: id.to_owned(), name: name.to_owned() });
                        if let Some(input) = obj_field(block, "input").filter(|i| !i.is_empty()) {
                            out.push(Delta::ToolCallArgs { index: tool, json: Value::Object(input.clone()).to_string() });
                        }
                        BlockKind::Tool(tool)
                    }
                    Some(_) => BlockKind::Other,
                    None => return Err(self.malformed("content block has no `type`")),
                };
                self.blocks.push(kind);
                self.open = Some(index);
            }
            "content_block_delta" => {
                let index = self.block_index(event)?;
                if self.open != Some(index) {
                    return Err(self.malformed(format!("delta for content block {index}, which is not open")));
                }
                let delta = obj_field(event, "delta").ok_or_else(|| self.malformed("`delta` missing"))?;
                let block = self.blocks.get(index as usize).copied();
                match (delta.get("type").and_then(Value::as_str), block) {
                    (Some("text_delta"), Some(BlockKind::Text)) => {
                        let text = delta.get("text").and_then(Value::as_str).ok_or_else(|| self.malformed("text_delta has no `text`"))?;
                        if !text.is_empty() {
                            out.push(Delta::Text(text.to_owned()));
                        }
                    }
                    (Some("input_json_delta"), Some(BlockKind::Tool(tool))) => {
                        let json = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .ok_or_else(|| self.malformed("input_json_delta has no `partial_json`"))?;
                        if !json.is_empty() {
                            out.push(Delta::ToolCallArgs { index: tool, json: json.to_owned() });
                        }
                    }
                    (Some("text_delta" | "input_json_delta"), _) => {
                        return Err(self.malformed(format!("delta type does not match content block {index}")));
                    }
                    (Some(_), _) => {} // thinking, signature, citations
                    (None, _) => return Err(self.malformed("delta has no `type`")),
                }
            }
            "content_block_stop" => {
                let index = self.block_index(event)?;
                if self.open != Some(index) {
                    return Err(self.malformed(format!("stop for content block {index}, which is not open")));
                }
                self.open = None;
            }
            "message_delta" => {
                let delta = obj_field(event, "delta").ok_or_else(|| self.malformed("`delta` missing"))?;
                if let Some(reason) = field(delta, "stop_reason") {
                    let reason = reason.as_str().ok_or_else(|| self.malformed("`stop_reason` is not a string"))?;
                    let sequence = delta.get("stop_sequence").and_then(Value::as_str);
                    out.push(Delta::Finish { reason: FinishReason::from_anthropic(reason, sequence) });
                }
                if let Some(usage) = obj_field(event, "usage") {
                    out.push(Delta::Usage(anthropic_usage(usage)));
                }
            }
            "message_stop" => {
                if self.open.is_some() {
                    return Err(self.malformed("`message_stop` with a content block open"));
                }
                out.push(Delta::Done);
            }
            "error" => out.push(error_delta(event.get("error").unwrap_or(&Value::Null))),
            // `ping`, and event types added later: the API asks clients to ignore unknown ones.
            _ => {}
        }
        Ok(out)
    }

    fn block_index(&self, event: &Obj) -> Result<u32, TranslateError> {
        event
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| self.malformed("event has no content block `index`"))
    }
}

fn obj_field<'a>(obj: &'a Obj, key: &str) -> Option<&'a Obj> {
    obj.get(key).and_then(Value::as_object)
}

/// An in-band error object of either API (`{"type","message"}` or `{"message","type","code"}`).
pub(crate) fn error_delta(error: &Value) -> Delta {
    let message = error.get("message").and_then(Value::as_str).or_else(|| error.as_str()).unwrap_or("upstream error").to_owned();
    let kind = ["type", "code"]
        .iter()
        .filter_map(|k| error.get(*k).and_then(Value::as_str))
        .find_map(ErrorKind::from_type)
        .unwrap_or(ErrorKind::Server);
    Delta::Error { kind, message }
}

/// OpenAI `usage` (`prompt_tokens` includes cached tokens).
pub(crate) fn openai_usage(usage: &Obj) -> Usage {
    Usage {
        input: usage.get("prompt_tokens").and_then(Value::as_u64),
        output: usage.get("completion_tokens").and_then(Value::as_u64),
        cached: usage.get("prompt_tokens_details").and_then(|d| d.get("cached_tokens")).and_then(Value::as_u64),
    }
}

/// Anthropic `usage` (`input_tokens` excludes cache reads and cache writes).
pub(crate) fn anthropic_usage(usage: &Obj) -> Usage {
    let get = |k: &str| usage.get(k).and_then(Value::as_u64);
    let cached = get("cache_read_input_tokens");
    Usage {
        input: get("input_tokens").map(|i| i + cached.unwrap_or(0) + get("cache_creation_input_tokens").unwrap_or(0)),
        output: get("output_tokens"),
        cached,
    }
}
