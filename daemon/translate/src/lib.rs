//! OpenAI <-> Anthropic format translation and SSE stream decoding/encoding for genset's
//! fallback chain.
//!
//! genset sits between a client speaking one API (OpenAI chat completions or Anthropic
//! messages) and a chain of upstreams that may speak the other. This crate holds the pure,
//! synchronous pieces that make a step of the chain usable whatever its API, and that let a
//! broken stream be continued by the next step. It does no I/O: no HTTP, no runtime.
//!
//! # The model
//!
//! ```text
//!            requests                                   streams
//!  client body ──translate_request──▶ upstream body     upstream bytes
//!                                                           │ SseFramer
//!  client body ──continuation_request──▶ prefilled body     ▼
//!                                                       SseEvent ──StreamDecoder(upstream api)──▶ Delta*
//!  upstream JSON ──translate_response──▶ client JSON                                              │
//!  upstream error ──translate_error──▶ client error body    client bytes ◀──StreamEncoder(client api)──┘
//! ```
//!
//! * **Requests and whole responses** are translated JSON to JSON ([`translate_request`],
//!   [`translate_response`], [`translate_error`]). Anything the target cannot express without
//!   answering a different question (`n > 1`, `logprobs`, JSON mode, server tools...) is a
//!   [`TranslateError::Unsupported`] naming the field, so the caller skips that step rather than
//!   silently answering something else. Harmless tuning fields the target lacks (penalties,
//!   `seed`, `top_k`, cache hints) are dropped.
//! * **Streams** go through a neutral [`Delta`] in the middle. A [`StreamDecoder`] turns one
//!   API's server-sent events (cut into [`SseEvent`]s by the zero-copy [`SseFramer`]) into
//!   deltas; a [`StreamEncoder`] turns deltas into the other (or the same) API's events, with the
//!   id and model the client sees. A malformed or out-of-protocol event is an error, never a
//!   delta: the proxy must not hand a broken chunk to a client as if it were valid.
//! * **Continuation.** When a stream breaks after the client has received part of the answer,
//!   the [`Transcript`] of what the client received gives the partial text;
//!   [`continuation_request`] asks the next step to continue it (assistant prefill);
//!   [`StreamEncoder::resume`] builds an encoder that carries on the client's stream (no second
//!   `message_start` or role chunk, same content block) and the [`Splicer`] drops the whitespace
//!   that Anthropic's prefill rules forced us to trim. If the stream cannot be continued, the
//!   encoder's [`StreamEncoder::error_event`] ends it honestly, with no `[DONE]` or
//!   `message_stop` after it.
//!
//! # Example: an Anthropic upstream answering an OpenAI client
//!
//! ```
//! use bytes::Bytes;
//! use genset_translate::{Api, EncoderOptions, SseFramer, StreamDecoder, StreamEncoder};
//!
//! let upstream = concat!(
//!     "event: message_start\n",
//!     r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","#,
//!     r#""model":"claude","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}"#, "\n\n",
//!     "event: content_block_start\n",
//!     r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#, "\n\n",
//!     "event: content_block_delta\n",
//!     r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi!"}}"#, "\n\n",
//!     "event: content_block_stop\n",
//!     r#"data: {"type":"content_block_stop","index":0}"#, "\n\n",
//!     "event: message_delta\n",
//!     r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#, "\n\n",
//!     "event: message_stop\n",
//!     r#"data: {"type":"message_stop"}"#, "\n\n",
//! );
//! let mut framer = SseFramer::new();
//! let mut decoder = StreamDecoder::new(Api::Anthropic);
//! let options = EncoderOptions { id: None, model: "gpt-4o".into(), created: 0, include_usage: true };
//! let mut encoder = StreamEncoder::new(Api::OpenAi, options);
//! let mut client = Vec::new();
//! // Chunks arrive as the network cuts them; events come out whole.
//! for chunk in upstream.as_bytes().chunks(50) {
//!     framer.push(Bytes::copy_from_slice(chunk));
//!     while let Some(event) = framer.pop() {
//!         let deltas = decoder.decode(&event)?;
//!         client.extend_from_slice(&encoder.encode(&deltas)?);
//!     }
//! }
//! let client = String::from_utf8(client)?;
//! assert!(client.contains(r#""delta":{"content":"Hi!"}"#));
//! assert!(client.contains(r#""finish_reason":"stop""#));
//! assert!(client.ends_with("data: [DONE]\n\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Usage accounting
//!
//! [`Usage::input`] counts all prompt tokens, cached ones included (OpenAI's `prompt_tokens`);
//! [`Usage::cached`] is the part read from a prompt cache. Anthropic reports uncached
//! `input_tokens` beside `cache_read_input_tokens` and `cache_creation_input_tokens`; the
//! decoders and encoders convert.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod decode;
mod delta;
mod encode;
mod error;
mod request;
mod response;
mod sse;
mod transcript;
mod util;

#[cfg(test)]
mod tests;

pub use decode::StreamDecoder;
pub use delta::{Delta, FinishReason, Usage};
pub use encode::{EncoderOptions, StreamEncoder};
pub use error::{ErrorKind, TranslateError};
pub use request::{Continuation, MaxTokensField, RequestOptions, Splicer, continuation_request, translate_request};
pub use response::{translate_error, translate_response};
pub use sse::{SseEvent, SseFramer};
pub use transcript::Transcript;

/// The two wire APIs genset speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI chat completions (`POST /v1/chat/completions`).
    OpenAi,
    /// Anthropic messages (`POST /v1/messages`).
    Anthropic,
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Api::OpenAi => "OpenAI chat completions",
            Api::Anthropic => "Anthropic messages",
        })
    }
}
