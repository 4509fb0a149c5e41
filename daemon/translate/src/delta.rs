//! The neutral stream vocabulary between decoders and encoders.

use crate::ErrorKind;

/// One step of a streamed answer, independent of the API that carried it.
///
/// A well-formed stream is `Start`, then any number of `Text` / `ToolCallStart` /
/// `ToolCallArgs` / `Usage`, then `Finish`, more `Usage`, and `Done`; or it ends early with
/// `Error`. Tool call indexes count tool calls from 0 in the order they start, whatever content
/// block index carried them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// The answer begins; the upstream's message id and model.
    Start {
        /// Upstream message id (`chatcmpl-...` or `msg_...`).
        id: String,
        /// Upstream model name.
        model: String,
    },
    /// A piece of the answer's text.
    Text(String),
    /// A tool call begins.
    ToolCallStart {
        /// Ordinal of the tool call in this answer.
        index: u32,
        /// Tool call id (`call_...` or `toolu_...`).
        id: String,
        /// Function name.
        name: String,
    },
    /// A piece of a tool call's JSON arguments.
    ToolCallArgs {
        /// Ordinal of the tool call in this answer.
        index: u32,
        /// The next piece of the arguments' JSON text.
        json: String,
    },
    /// Why generation stopped.
    Finish {
        /// The neutral reason.
        reason: FinishReason,
    },
    /// Token counts known so far (cumulative; `None` where this event said nothing).
    Usage(Usage),
    /// The stream ended normally (`data: [DONE]` / `message_stop`).
    Done,
    /// The upstream reported an error in-band; the stream ends here.
    Error {
        /// Neutral classification of the upstream's error type.
        kind: ErrorKind,
        /// The upstream's message.
        message: String,
    },
}

/// Token counts. `input` counts all prompt tokens, cached ones included; `cached` is the part
/// read from a prompt cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached included.
    pub input: Option<u64>,
    /// Generated tokens.
    pub output: Option<u64>,
    /// Prompt tokens read from a cache.
    pub cached: Option<u64>,
}

impl Usage {
    /// Overwrites the counts `newer` knows (usage events are cumulative).
    pub fn merge(&mut self, newer: Usage) {
        self.input = newer.input.or(self.input);
        self.output = newer.output.or(self.output);
        self.cached = newer.cached.or(self.cached);
    }
}

/// Why generation stopped, in neutral terms.
///
/// OpenAI `finish_reason` and Anthropic `stop_reason` map as: `stop` <-> `end_turn` (and
/// `stop_sequence`), `length` <-> `max_tokens`, `tool_calls` <-> `tool_use`,
/// `content_filter` <-> `refusal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its turn.
    Stop,
    /// A stop sequence matched (Anthropic says which; OpenAI reports it as `stop`).
    StopSequence(Option<String>),
    /// The output budget or the context ran out.
    Length,
    /// The model called tools.
    ToolCalls,
    /// The answer was filtered or refused.
    ContentFilter,
    /// A reason neither mapping knows (e.g. Anthropic `pause_turn`), kept for logging; encoded
    /// as a plain stop.
    Other(String),
}

impl FinishReason {
    /// From an OpenAI `finish_reason`.
    pub fn from_openai(reason: &str) -> Self {
        match reason {
            "stop" => Self::Stop,
            "length" => Self::Length,
            "tool_calls" | "function_call" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }

    /// From an Anthropic `stop_reason` and `stop_sequence`.
    pub fn from_anthropic(reason: &str, stop_sequence: Option<&str>) -> Self {
        match reason {
            "end_turn" => Self::Stop,
            "stop_sequence" => Self::StopSequence(stop_sequence.map(str::to_owned)),
            "max_tokens" | "model_context_window_exceeded" => Self::Length,
            "tool_use" => Self::ToolCalls,
            "refusal" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The OpenAI `finish_reason`.
    pub fn openai(&self) -> &'static str {
        match self {
            Self::Stop | Self::StopSequence(_) | Self::Other(_) => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
        }
    }

    /// The Anthropic `stop_reason`.
    pub fn anthropic(&self) -> &'static str {
        match self {
            Self::Stop | Self::Other(_) => "end_turn",
            Self::StopSequence(_) => "stop_sequence",
            Self::Length => "max_tokens",
            Self::ToolCalls => "tool_use",
            Self::ContentFilter => "refusal",
        }
    }

    /// The Anthropic `stop_sequence` that goes with [`FinishReason::anthropic`].
    pub fn stop_sequence(&self) -> Option<&str> {
        match self {
            Self::StopSequence(s) => s.as_deref(),
            _ => None,
        }
    }
}
