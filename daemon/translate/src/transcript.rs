//! What a client has received of a stream so far.

use crate::decode::BlockKind;
use crate::{Api, Delta, FinishReason, SseEvent, StreamDecoder, TranslateError, Usage};

/// Tracks what the client has received so far: feed it every event exactly as sent to the
/// client. It gives the partial text for [`continuation_request`](crate::continuation_request),
/// says whether continuing is possible at all ([`Transcript::can_continue`]), and is what
/// [`StreamEncoder::resume`](crate::StreamEncoder::resume) carries the stream on from.
#[derive(Debug, Clone)]
pub struct Transcript {
    decoder: StreamDecoder,
    start: Option<(String, String)>,
    text: String,
    finish: Option<FinishReason>,
    done: bool,
    errored: bool,
    usage: Usage,
}

impl Transcript {
    /// An empty transcript of a client stream in `api`'s format.
    pub fn new(api: Api) -> Self {
        Self {
            decoder: StreamDecoder::new(api),
            start: None,
            text: String::new(),
            finish: None,
            done: false,
            errored: false,
            usage: Usage::default(),
        }
    }

    /// Records one event sent to the client. An error means the event was malformed; the
    /// transcript is unchanged then.
    pub fn observe(&mut self, event: &SseEvent) -> Result<(), TranslateError> {
        for delta in self.decoder.decode(event)? {
            match delta {
                Delta::Start { id, model } => self.start = Some((id, model)),
                Delta::Text(text) => self.text.push_str(&text),
                Delta::ToolCallStart { .. } | Delta::ToolCallArgs { .. } => {}
                Delta::Finish { reason } => self.finish = Some(reason),
                Delta::Usage(usage) => self.usage.merge(usage),
                Delta::Done => self.done = true,
                Delta::Error { .. } => self.errored = true,
            }
        }
        Ok(())
    }

    /// The API of the client stream.
    pub fn api(&self) -> Api {
        self.decoder.api()
    }

    /// Whether the client received the stream's start (`message_start` / the first chunk).
    pub fn is_started(&self) -> bool {
        self.start.is_some()
    }

    /// The message id the client saw.
    pub fn id(&self) -> Option<&str> {
        self.start.as_ref().map(|(id, _)| id.as_str())
    }

    /// The model name the client saw.
    pub fn model(&self) -> Option<&str> {
        self.start.as_ref().map(|(_, model)| model.as_str())
    }

    /// All answer text the client received.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many tool calls the client saw start.
    pub fn tool_calls(&self) -> u32 {
        self.decoder.tool_calls
    }

    /// Whether the client saw any tool call start (a text prefill cannot continue those).
    pub fn tool_call_started(&self) -> bool {
        self.decoder.tool_calls > 0
    }

    /// The finish reason the client received, if any.
    pub fn finish(&self) -> Option<&FinishReason> {
        self.finish.as_ref()
    }

    /// Whether the client received the normal end (`[DONE]` / `message_stop`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the client received an in-band error.
    pub fn is_errored(&self) -> bool {
        self.errored
    }

    /// The latest usage the client was told.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Whether a continuation can be spliced in: the stream started, is still open, and holds
    /// only text so far.
    pub fn can_continue(&self) -> bool {
        self.is_started() && !self.tool_call_started() && self.finish.is_none() && !self.done && !self.errored
    }

    /// Anthropic: the next content block index and the open block, if any.
    pub(crate) fn blocks(&self) -> (u32, Option<(u32, BlockKind)>) {
        let next = u32::try_from(self.decoder.blocks.len()).unwrap_or(u32::MAX);
        let open = self.decoder.open.and_then(|i| self.decoder.blocks.get(i as usize).map(|kind| (i, *kind)));
        (next, open)
    }
}
