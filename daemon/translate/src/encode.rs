//! Stream encoders: neutral [`Delta`]s to the server-sent events a client of one API expects.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::decode::BlockKind;
use crate::{Api, Delta, ErrorKind, FinishReason, Transcript, TranslateError, Usage};

/// What the client sees of the stream's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderOptions {
    /// The message id the client sees; `None` takes the upstream's from [`Delta::Start`].
    pub id: Option<String>,
    /// The model name the client sees (the one it asked for).
    pub model: String,
    /// OpenAI `created` (Unix seconds).
    pub created: u64,
    /// OpenAI: send the usage chunk before `[DONE]` (`stream_options.include_usage`).
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet.
    Fresh,
    /// Anthropic: `Start` seen, `message_start` held back to carry the usage that comes with it.
    PendingStart,
    /// The start was sent.
    Open,
    /// `[DONE]` / `message_stop` or an error was sent.
    Ended,
}

/// Produces a client's stream in its API from [`Delta`]s.
///
/// OpenAI output: the role chunk first, `chat.completion.chunk` objects, a chunk with
/// `finish_reason`, the usage chunk (`choices: []`) if asked for, then `data: [DONE]`.
/// Anthropic output: `message_start`, `content_block_start` / `_delta` / `_stop` with indexes,
/// `message_delta` with `stop_reason` and usage, then `message_stop`.
///
/// A second [`Delta::Start`] (from a continuation's upstream) is ignored, so the same encoder
/// can carry on after a splice; [`StreamEncoder::resume`] builds one for a stream that was passed
/// through to the client unencoded.
#[derive(Debug, Clone)]
pub struct StreamEncoder {
    api: Api,
    id: Option<String>,
    model: String,
    created: u64,
    include_usage: bool,
    phase: Phase,
    finish: Option<FinishReason>,
    usage: Usage,
    /// Output tokens the client's stream had before a resume.
    base_output: u64,
    /// OpenAI: tool calls the client saw before a resume.
    tool_offset: u32,
    /// Anthropic: the next content block index and the open block.
    next_block: u32,
    open: Option<(u32, BlockKind)>,
    out: Vec<u8>,
}

impl StreamEncoder {
    /// An encoder for a new client stream in `api`'s format.
    pub fn new(api: Api, options: EncoderOptions) -> Self {
        Self {
            api,
            id: options.id,
            model: options.model,
            created: options.created,
            include_usage: options.include_usage,
            phase: Phase::Fresh,
            finish: None,
            usage: Usage::default(),
            base_output: 0,
            tool_offset: 0,
            next_block: 0,
            open: None,
            out: Vec::new(),
        }
    }

    /// An encoder that carries on a client stream of which `transcript` recorded what was sent:
    /// no second start, text goes on in the open text block (Anthropic) and tool call indexes go
    /// on after the client's. The model is the one the client saw, and so is the id unless
    /// `options` names one. Fails if the client stream already finished or failed.
    pub fn resume(transcript: &Transcript, mut options: EncoderOptions) -> Result<Self, TranslateError> {
        if transcript.finish().is_some() || transcript.is_done() || transcript.is_errored() {
            return Err(TranslateError::Invalid {
                path: "transcript".to_owned(),
                message: "the client stream already ended; it cannot be resumed".to_owned(),
            });
        }
        if let (Some(id), Some(model)) = (transcript.id(), transcript.model()) {
            options.id.get_or_insert_with(|| id.to_owned());
            model.clone_into(&mut options.model);
        }
        let mut encoder = Self::new(transcript.api(), options);
        if transcript.is_started() {
            encoder.phase = Phase::Open;
        }
        encoder.base_output = transcript.usage().output.unwrap_or(0);
        encoder.tool_offset = transcript.tool_calls();
        (encoder.next_block, encoder.open) = transcript.blocks();
        Ok(encoder)
    }

    /// The client's API.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Whether the stream's end (or an error) was sent; nothing more may be encoded.
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Encodes a batch of deltas (typically those decoded from one upstream event) into zero or
    /// more complete events. A delta out of order (text after the finish, arguments for a tool
    /// call that is not the open one, anything after the end) is an error.
    pub fn encode(&mut self, deltas: &[Delta]) -> Result<Bytes, TranslateError> {
        for delta in deltas {
            if self.phase == Phase::Ended {
                return Err(self.out_of_order("a delta after the end of the stream"));
            }
            match self.api {
                Api::OpenAi => self.openai(delta)?,
                Api::Anthropic => self.anthropic(delta)?,
            }
        }
        if self.phase == Phase::PendingStart {
            self.anthropic_message_start();
        }
        Ok(Bytes::from(std::mem::take(&mut self.out)))
    }

    /// The API's in-band error event (OpenAI: `data: {"error":{...}}`; Anthropic:
    /// `event: error`), preceded by anything still buffered. It ends the stream: nothing, not
    /// even `[DONE]` / `message_stop`, may follow it.
    pub fn error_event(&mut self, kind: ErrorKind, message: &str) -> Bytes {
        if self.phase != Phase::Ended {
            self.write_error(kind, message);
            self.phase = Phase::Ended;
        }
        Bytes::from(std::mem::take(&mut self.out))
    }

    fn out_of_order(&self, what: &str) -> TranslateError {
        TranslateError::Malformed { api: self.api, message: format!("cannot encode {what}") }
    }

    fn id(&self) -> &str {
        self.id.as_deref().unwrap_or(match self.api {
            Api::OpenAi => "chatcmpl-genset",
            Api::Anthropic => "msg_genset",
        })
    }

    fn write_data(&mut self, data: &Value) {
        self.out.extend_from_slice(b"data: ");
        self.out.extend_from_slice(data.to_string().as_bytes());
        self.out.extend_from_slice(b"\n\n");
    }

    fn write_event(&mut self, data: &Value) {
        let name = data.get("type").and_then(Value::as_str).unwrap_or("message");
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
        self.write_data(data);
    }

    fn write_error(&mut self, kind: ErrorKind, message: &str) {
        let body = crate::response::error_body(self.api, kind, message);
        match self.api {
            Api::OpenAi => self.write_data(&body),
            Api::Anthropic => self.write_event(&body),
        }
    }

    // ---- OpenAI

    fn openai(&mut self, delta: &Delta) -> Result<(), TranslateError> {
        match delta {
            Delta::Start { id, .. } => {
                if self.phase == Phase::Fresh {
                    self.id.get_or_insert_with(|| id.clone());
                    self.openai_start();
                }
            }
            Delta::Text(text) => {
                self.openai_open("text")?;
                if !text.is_empty() {
                    self.openai_chunk(json!({"content": text}), None);
                }
            }
            Delta::ToolCallStart { index, id, name } => {
                self.openai_open("a tool call")?;
                let index = index + self.tool_offset;
                self.openai_chunk(
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    None,
                );
            }
            Delta::ToolCallArgs { index, json } => {
                self.openai_open("tool call arguments")?;
                let index = index + self.tool_offset;
                self.openai_chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": json}}]}), None);
            }
            Delta::Finish { reason } => {
                self.openai_open("a second finish")?;
                self.openai_chunk(json!({}), Some(reason.openai()));
                self.finish = Some(reason.clone());
            }
            Delta::Usage(usage) => self.usage.merge(*usage),
            Delta::Done => {
                if self.phase == Phase::Fresh {
                    self.openai_start();
                }
                if self.finish.is_none() {
                    self.openai_chunk(json!({}), Some(FinishReason::Stop.openai()));
                }
                if self.include_usage {
                    let usage = self.openai_usage();
                    let chunk = json!({"id": self.id(), "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": usage});
                    self.write_data(&chunk);
                }
                self.out.extend_from_slice(b"data: [DONE]\n\n");
                self.phase = Phase::Ended;
            }
            Delta::Error { kind, message } => {
                self.write_error(*kind, message);
                self.phase = Phase::Ended;
            }
        }
        Ok(())
    }

    /// Makes sure the role chunk went out and the choice is not finished yet.
    fn openai_open(&mut self, what: &str) -> Result<(), TranslateError> {
        if self.finish.is_some() {
            return Err(self.out_of_order(&format!("{what} after the finish")));
        }
        if self.phase == Phase::Fresh {
            self.openai_start();
        }
        Ok(())
    }

    fn openai_start(&mut self) {
        self.openai_chunk(json!({"role": "assistant", "content": ""}), None);
        self.phase = Phase::Open;
    }

    fn openai_chunk(&mut self, delta: Value, finish_reason: Option<&str>) {
        let chunk = json!({
            "id": self.id(), "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        self.write_data(&chunk);
    }

    fn openai_usage(&self) -> Value {
        let input = self.usage.input.unwrap_or(0);
        let output = self.base_output + self.usage.output.unwrap_or(0);
        let mut usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output});
        if let Some(cached) = self.usage.cached {
            usage["prompt_tokens_details"] = json!({"cached_tokens": cached});
        }
        usage
    }

    // ---- Anthropic

    fn anthropic(&mut self, delta: &Delta) -> Result<(), TranslateError> {
        match delta {
            Delta::Start { id, .. } => {
                if self.phase == Phase::Fresh {
                    self.id.get_or_insert_with(|| id.clone());
                    self.phase = Phase::PendingStart;
                }
            }
            Delta::Usage(usage) => self.usage.merge(*usage),
            Delta::Text(text) => {
                self.anthropic_open("text")?;
                if text.is_empty() {
                    return Ok(());
                }
                let index = match self.open {
                    Some((index, BlockKind::Text)) => index,
                    _ => {
                        self.anthropic_close_block();
                        self.anthropic_start_block(BlockKind::Text, json!({"type": "text", "text": ""}))
                    }
                };
                self.write_event(&json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": text}}));
            }
            Delta::ToolCallStart { index, id, name } => {
                self.anthropic_open("a tool call")?;
                self.anthropic_close_block();
                self.anthropic_start_block(BlockKind::Tool(*index), json!({"type": "tool_use", "id": id, "name": name, "input": {}}));
            }
            Delta::ToolCallArgs { index, json } => {
                self.anthropic_open("tool call arguments")?;
                let Some((block, BlockKind::Tool(tool))) = self.open else {
                    return Err(self.out_of_order("tool call arguments with no tool call open"));
                };
                if tool != *index {
                    return Err(self.out_of_order(&format!("arguments for tool call {index} while {tool} is open")));
                }
                self.write_event(&json!({"type": "content_block_delta", "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": json}}));
            }
            Delta::Finish { reason } => {
                self.anthropic_open("a second finish")?;
                self.anthropic_close_block();
                self.finish = Some(reason.clone());
            }
            Delta::Done => {
                if self.phase != Phase::Open {
                    self.anthropic_message_start();
                }
                self.anthropic_close_block();
                let reason = self.finish.take().unwrap_or(FinishReason::Stop);
                let usage = self.anthropic_usage(true);
                self.write_event(&json!({"type": "message_delta",
                    "delta": {"stop_reason": reason.anthropic(), "stop_sequence": reason.stop_sequence()},
                    "usage": usage}));
                self.write_event(&json!({"type": "message_stop"}));
                self.phase = Phase::Ended;
            }
            Delta::Error { kind, message } => {
                self.write_error(*kind, message);
                self.phase = Phase::Ended;
            }
        }
        Ok(())
    }

    /// Makes sure `message_start` went out and the message is not finished yet.
    fn anthropic_open(&mut self, what: &str) -> Result<(), TranslateError> {
        if self.finish.is_some() {
            return Err(self.out_of_order(&format!("{what} after the finish")));
        }
        if self.phase != Phase::Open {
            self.anthropic_message_start();
        }
        Ok(())
    }

    fn anthropic_message_start(&mut self) {
        let usage = self.anthropic_usage(false);
        let message = json!({"type": "message_start", "message": {
            "id": self.id(), "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage,
        }});
        self.write_event(&message);
        self.phase = Phase::Open;
    }

    fn anthropic_usage(&self, is_final: bool) -> Value {
        let cached = self.usage.cached.unwrap_or(0);
        let mut usage = serde_json::Map::new();
        if let Some(input) = self.usage.input {
            usage.insert("input_tokens".into(), input.saturating_sub(cached).into());
        } else if !is_final {
            usage.insert("input_tokens".into(), 0.into());
        }
        if let Some(cached) = self.usage.cached {
            usage.insert("cache_read_input_tokens".into(), cached.into());
        }
        let output = self.base_output + self.usage.output.unwrap_or(0);
        usage.insert("output_tokens".into(), output.into());
        Value::Object(usage)
    }

    fn anthropic_start_block(&mut self, kind: BlockKind, content_block: Value) -> u32 {
        let index = self.next_block;
        self.next_block += 1;
        self.write_event(&json!({"type": "content_block_start", "index": index, "content_block": content_block}));
        self.open = Some((index, kind));
        index
    }

    fn anthropic_close_block(&mut self) {
        if let Some((index, _)) = self.open.take() {
            self.write_event(&json!({"type": "content_block_stop", "index": index}));
        }
    }
}
