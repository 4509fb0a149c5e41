//! The values that cross the engine boundary: requests, events, errors and stats.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One message of a chat prompt, already normalized by the API layer (content parts joined into
/// text; images rejected before they get here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
    /// OpenAI-shaped tool calls of an assistant turn, passed through to Jinja chat templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into(), tool_calls: None, tool_call_id: None, name: None }
    }

    /// True when the message carries tool-use structure a template must understand.
    pub fn uses_tools(&self) -> bool {
        self.tool_calls.is_some() || self.tool_call_id.is_some() || self.role == "tool"
    }
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A conversation rendered through the model's chat template. `tools` are OpenAI-shaped
    /// (`{"type":"function","function":{name, description, parameters}}`).
    Chat { messages: Vec<ChatMessage>, tools: Vec<serde_json::Value> },
    /// Raw text, tokenized as is (legacy completions).
    Text(String),
}

/// Constrain the output with a grammar.
#[derive(Debug, Clone, PartialEq)]
pub enum GrammarSpec {
    /// Any JSON object.
    JsonObject,
    /// JSON matching this JSON Schema.
    JsonSchema(serde_json::Value),
    /// A tool call forced by `tool_choice`: JSON matching this schema (built by the API layer:
    /// `{"name": <a tool's name>, "arguments": <its parameters>}`). Kept apart from
    /// `JsonSchema` so errors name the tools, and so remote servers get it as a response format.
    ToolCall(serde_json::Value),
}

/// Sampling parameters. `None` means the engine default (llama-server's: temperature 0.8,
/// top_k 40, top_p 0.95, min_p 0.05, no penalties).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingParams {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    /// Stop sequences: generation ends before the first occurrence, which is not returned.
    pub stop: Vec<String>,
    /// At most this many completion tokens; clamped to what the context has left.
    pub max_tokens: Option<u32>,
    pub repeat_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// (token id, bias) pairs added to the logits; a bias of -100 or less bans the token.
    pub logit_bias: Vec<(i32, f32)>,
    pub grammar: Option<GrammarSpec>,
}

/// Who is asking. Higher priorities are admitted first; lower ones never take a slot while a
/// higher one waits, and are evicted from a full queue to make room for a higher one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Evaluation = 0,
    Drill = 1,
    #[default]
    Live = 2,
}

impl Priority {
    pub fn label(self) -> &'static str {
        match self {
            Priority::Live => "live",
            Priority::Drill => "drill",
            Priority::Evaluation => "evaluation",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub sampling: SamplingParams,
    pub priority: Priority,
}

impl GenerateRequest {
    pub fn new(prompt: Prompt) -> Self {
        GenerateRequest { prompt, sampling: SamplingParams::default(), priority: Priority::Live }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn (end-of-generation token).
    Stop,
    /// A stop sequence matched (it is not part of the returned text).
    StopSequence(String),
    /// `max_tokens` or the context ran out.
    Length,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub prompt_tokens: usize,
    /// Prompt tokens served from the prefix cache (not recomputed).
    pub cached_tokens: usize,
    /// Tokens sampled (the end-of-generation token included).
    pub completion_tokens: usize,
}

/// What a [`Generation`] yields: `Started`, zero or more `Text`, then exactly one of `Done` or
/// `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerateEvent {
    /// The request got a slot; its prompt is being processed.
    Started {
        prompt_tokens: usize,
        cached_tokens: usize,
    },
    /// A valid UTF-8 delta. Partial multi-byte sequences and text that may be the start of a
    /// stop sequence are held back until resolved.
    Text(String),
    Done {
        finish: FinishReason,
        usage: Usage,
    },
    Error(EngineError),
}

impl GenerateEvent {
    pub fn is_terminal(&self) -> bool {
        matches!(self, GenerateEvent::Done { .. } | GenerateEvent::Error(_))
    }
}

/// Errors at the engine boundary. The API layer maps them to each API's error format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The queue is full: try again later.
    #[error("the model is at capacity (queue full); retry after {}s", retry_after.as_secs().max(1))]
    Overloaded { retry_after: Duration },
    /// The request waited longer than `max_wait` for a slot.
    #[error("no slot became free within {}s", waited.as_secs())]
    QueueTimeout { waited: Duration, retry_after: Duration },
    /// The prompt does not fit the model's context.
    #[error("the model's maximum context length is {context} tokens, but the prompt has {prompt_tokens} tokens")]
    ContextTooLong { prompt_tokens: usize, context: usize },
    /// A feature the model cannot honour; the string names it.
    #[error("unsupported by this model: {0}")]
    Unsupported(String),
    /// The request is malformed for this engine (an invalid JSON schema, say).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The engine is not running (failed, shutting down) or its remote server is unreachable.
    #[error("model unavailable: {0}")]
    Unavailable(String),
    /// A remote (`openai-compatible`) server answered with an error status.
    #[error("remote model server answered {status}: {message}")]
    Upstream { status: u16, message: String },
    #[error("engine error: {0}")]
    Internal(String),
}

impl EngineError {
    /// A low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            EngineError::Overloaded { .. } => "overloaded",
            EngineError::QueueTimeout { .. } => "queue_timeout",
            EngineError::ContextTooLong { .. } => "context_too_long",
            EngineError::Unsupported(_) => "unsupported",
            EngineError::InvalidRequest(_) => "invalid_request",
            EngineError::Unavailable(_) => "unavailable",
            EngineError::Upstream { .. } => "upstream",
            EngineError::Internal(_) => "internal",
        }
    }

    /// True when the request itself is at fault (retrying it unchanged will fail again).
    pub fn is_client_error(&self) -> bool {
        matches!(self, EngineError::ContextTooLong { .. } | EngineError::Unsupported(_) | EngineError::InvalidRequest(_))
            || matches!(self, EngineError::Upstream { status, .. } if (400..500).contains(status) && *status != 429)
    }
}

/// Output of [`crate::Engine::embed`].
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
}

/// Lifetime counters of a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelTotals {
    pub requests: u64,
    pub completed: u64,
    pub cancelled: u64,
    pub rejected: u64,
    pub timed_out: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
}

/// A snapshot for `GET /api/v1/models` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStats {
    pub name: String,
    pub kind: crate::ModelKind,
    /// Size of the GGUF file (0 for remote models).
    pub file_size: u64,
    /// Estimated resident memory: weights plus KV cache plus compute buffers (0 for remote).
    pub memory_bytes: u64,
    /// Tokens per sequence (prompt plus completion).
    pub context: usize,
    /// Concurrent sequences.
    pub parallel: usize,
    /// Slots generating now.
    pub active_slots: usize,
    /// Slots holding a prefix cache (idle or active).
    pub used_slots: usize,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    /// Decode tokens per second over the recent window (all sequences together).
    pub decode_tokens_per_second: f64,
    /// Prompt tokens processed per second over the recent window.
    pub prompt_tokens_per_second: f64,
    pub totals: ModelTotals,
}

/// The stream of events of one request. Dropping it cancels the sequence at the next step.
///
/// Always ends with exactly one terminal event: if the engine goes away without sending one,
/// an [`EngineError::Unavailable`] is synthesized.
#[derive(Debug)]
pub struct Generation {
    rx: mpsc::UnboundedReceiver<GenerateEvent>,
    finished: bool,
}

impl Generation {
    /// A generation fed by `rx`; the engine side holds the sender.
    pub fn new(rx: mpsc::UnboundedReceiver<GenerateEvent>) -> Self {
        Generation { rx, finished: false }
    }

    /// A pair for engine implementations: the sender to feed and the generation to return.
    pub fn channel() -> (mpsc::UnboundedSender<GenerateEvent>, Generation) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Generation::new(rx))
    }

    /// The next event; `None` after the terminal event.
    pub async fn next(&mut self) -> Option<GenerateEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<GenerateEvent>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(ev)) => {
                if ev.is_terminal() {
                    self.finished = true;
                    self.rx.close();
                }
                Poll::Ready(Some(ev))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(Some(GenerateEvent::Error(EngineError::Unavailable(
                    "the engine stopped before the generation finished".into(),
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Drain the generation into its full text.
    pub async fn collect(mut self) -> Result<Completion, EngineError> {
        let mut out = Completion::default();
        while let Some(ev) = self.next().await {
            match ev {
                GenerateEvent::Started { prompt_tokens, cached_tokens } => {
                    out.usage.prompt_tokens = prompt_tokens;
                    out.usage.cached_tokens = cached_tokens;
                }
                GenerateEvent::Text(t) => out.text.push_str(&t),
                GenerateEvent::Done { finish, usage } => {
                    out.finish = finish;
                    out.usage = usage;
                    return Ok(out);
                }
                GenerateEvent::Error(e) => return Err(e),
            }
        }
        Err(EngineError::Internal("generation ended without a terminal event".into()))
    }
}

impl Stream for Generation {
    type Item = GenerateEvent;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GenerateEvent>> {
        self.get_mut().poll_event(cx)
    }
}

/// A whole generation, from [`Generation::collect`].
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub finish: FinishReason,
    pub usage: Usage,
}

impl Default for Completion {
    fn default() -> Self {
        Completion { text: String::new(), finish: FinishReason::Stop, usage: Usage::default() }
    }
}
