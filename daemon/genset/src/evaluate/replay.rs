//! From a recorded exchange to an evaluation request, and back from the stored cloud response
//! to the text the local answer is compared with. Pure functions.
//!
//! The stored request is the client's own JSON (OpenAI chat or completions, or Anthropic
//! messages); it is parsed by the same code that serves local requests (`local::request`), at
//! evaluation priority, then made deterministic (temperature 0) and given the use case's local
//! system prompt when one is configured. The stored response body is already reassembled into
//! one JSON document when it was streamed (`record::reassemble`).

use genset_engine::{ChatMessage, GenerateRequest, Priority, Prompt};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The longest answer asked of the local model, whatever the request allows.
pub const MAX_EVAL_TOKENS: u32 = 1024;
/// The local answer may run to this many times the cloud's length (plus [`SLACK_TOKENS`]):
/// longer answers would not score better, and a base model left alone can ramble to the limit.
pub const LENGTH_FACTOR: u32 = 2;
pub const SLACK_TOKENS: u32 = 32;
/// Characters of prompt and answers kept with an evaluation for people to read.
pub const EXCERPT_CHARS: usize = 2000;

/// A recorded request made ready for the local engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub request: GenerateRequest,
    /// What people see as "the prompt": the last user message (or the raw prompt).
    pub prompt_excerpt: String,
    /// Hash of the whole prompt (system, every message): one replay per distinct prompt.
    pub fingerprint: String,
}

/// Parse a stored request body of `endpoint` into an evaluation request.
///
/// `cloud_tokens` (the cloud answer's completion tokens, when recorded) bounds the local
/// answer's length: `min(request max_tokens, LENGTH_FACTOR * cloud + SLACK, MAX_EVAL_TOKENS)`.
pub fn build(endpoint: &str, body: &str, local_system_prompt: Option<&str>, cloud_tokens: Option<i64>) -> Result<Replay, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("the stored request is not JSON: {e}"))?;
    let parsed = match endpoint {
        "/v1/chat/completions" => crate::local::request::openai_chat(&value, Priority::Evaluation),
        "/v1/completions" => crate::local::request::openai_completion(&value, Priority::Evaluation),
        "/v1/messages" => crate::local::request::anthropic_messages(&value, Priority::Evaluation, false),
        other => return Err(format!("{other} is not served by local models")),
    }
    .map_err(|e| format!("the stored request cannot be served locally: {e}"))?;
    let mut request = parsed.request;
    let fingerprint = fingerprint(&request.prompt);
    let prompt_excerpt = excerpt(&prompt_text(&request.prompt), EXCERPT_CHARS);
    if let Some(system) = local_system_prompt {
        override_system(&mut request.prompt, system);
    }
    deterministic(&mut request);
    let mut cap = request.sampling.max_tokens.unwrap_or(MAX_EVAL_TOKENS).min(MAX_EVAL_TOKENS);
    if let Some(t) = cloud_tokens.and_then(|t| u32::try_from(t).ok()) {
        cap = cap.min(t.saturating_mul(LENGTH_FACTOR).saturating_add(SLACK_TOKENS));
    }
    request.sampling.max_tokens = Some(cap.max(1));
    request.priority = Priority::Evaluation;
    Ok(Replay { request, prompt_excerpt, fingerprint })
}

/// Tokens in `text`, roughly (one per 3 characters, at least one per word): only a bound.
pub fn estimate_tokens(text: &str) -> i64 {
    let chars = text.chars().count().div_ceil(3);
    chars.max(text.split_whitespace().count()) as i64
}

/// The longest canary answer.
pub const CANARY_MAX_TOKENS: u32 = 256;

/// A canary's messages as an evaluation request.
pub fn canary_request(c: &genset_eval::Canary, local_system_prompt: Option<&str>) -> GenerateRequest {
    let messages = c.messages.iter().map(|m| ChatMessage::new(m.role.clone(), m.content.clone())).collect();
    let mut request = GenerateRequest::new(Prompt::Chat { messages, tools: vec![] });
    if let Some(system) = local_system_prompt {
        override_system(&mut request.prompt, system);
    }
    deterministic(&mut request);
    request.sampling.max_tokens = Some(CANARY_MAX_TOKENS);
    request.priority = Priority::Evaluation;
    request
}

/// Greedy decoding: the same prompt gives the same answer, so scores move only when the model
/// or the traffic does.
fn deterministic(r: &mut GenerateRequest) {
    r.sampling.temperature = Some(0.0);
    r.sampling.seed = Some(0);
}

/// Replace the conversation's system messages with `system` (or prefix a raw prompt with it).
pub fn override_system(prompt: &mut Prompt, system: &str) {
    match prompt {
        Prompt::Chat { messages, .. } => {
            messages.retain(|m| m.role != "system");
            messages.insert(0, ChatMessage::new("system", system));
        }
        Prompt::Text(t) => *t = format!("{system}\n\n{t}"),
    }
}

/// The prompt as people read it: the last user message, else the raw text.
pub fn prompt_text(prompt: &Prompt) -> String {
    match prompt {
        Prompt::Chat { messages, .. } => {
            messages.iter().rev().find(|m| m.role == "user").or_else(|| messages.last()).map(|m| m.content.clone()).unwrap_or_default()
        }
        Prompt::Text(t) => t.clone(),
    }
}

/// sha256 (first 8 bytes, hex) over every message's role and text, or the raw prompt.
pub fn fingerprint(prompt: &Prompt) -> String {
    let mut h = Sha256::new();
    match prompt {
        Prompt::Chat { messages, tools } => {
            for m in messages {
                h.update(m.role.as_bytes());
                h.update([0u8]);
                h.update(m.content.as_bytes());
                h.update([0u8]);
            }
            for t in tools {
                h.update(t.to_string().as_bytes());
            }
        }
        Prompt::Text(t) => h.update(t.as_bytes()),
    }
    hex::encode(&h.finalize()[..8])
}

/// At most `max` characters, with an ellipsis when cut.
pub fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// The text of the cloud's answer in a stored response body; `None` when there is none to
/// compare with (a tool call, an empty body, not JSON).
pub fn cloud_answer(endpoint: &str, body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let text = match endpoint {
        "/v1/chat/completions" => {
            let content = v.get("choices")?.get(0)?.get("message")?.get("content")?;
            match content {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(""),
                _ => return None,
            }
        }
        "/v1/completions" => v.get("choices")?.get(0)?.get("text")?.as_str()?.to_string(),
        "/v1/messages" => v
            .get("content")?
            .as_array()?
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn check_answer(endpoint: &str, body: Value, expected: Option<&str>) {
        assert_eq!(cloud_answer(endpoint, &body.to_string()).as_deref(), expected, "{endpoint} {body}");
    }

    #[test]
    fn cloud_answers() {
        check_answer("/v1/chat/completions", json!({"choices": [{"message": {"role": "assistant", "content": "spam"}}]}), Some("spam"));
        check_answer(
            "/v1/chat/completions",
            json!({"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]}),
            Some("ab"),
        );
        check_answer("/v1/chat/completions", json!({"choices": [{"message": {"content": null, "tool_calls": []}}]}), None);
        check_answer("/v1/chat/completions", json!({"choices": [{"message": {"content": "  "}}]}), None);
        check_answer("/v1/completions", json!({"choices": [{"text": "hello"}]}), Some("hello"));
        check_answer(
            "/v1/messages",
            json!({"content": [{"type": "text", "text": "one "}, {"type": "tool_use", "name": "x"}, {"type": "text", "text": "two"}]}),
            Some("one two"),
        );
        check_answer("/v1/responses", json!({"output": []}), None);
        assert_eq!(cloud_answer("/v1/messages", "not json"), None);
    }

    #[test]
    fn builds_deterministic_bounded_requests() {
        let body = json!({
            "model": "gpt-4o-mini", "stream": true, "temperature": 0.9, "max_tokens": 500,
            "messages": [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Refund please"}]
        })
        .to_string();
        let r = build("/v1/chat/completions", &body, None, Some(3)).unwrap();
        assert_eq!(r.request.priority, Priority::Evaluation);
        assert_eq!(r.request.sampling.temperature, Some(0.0));
        // min(500, 2 * 3 + 32, 1024)
        assert_eq!(r.request.sampling.max_tokens, Some(38));
        assert_eq!(r.prompt_excerpt, "Refund please");
        // The local system prompt replaces the client's; the fingerprint is the client's prompt.
        let o = build("/v1/chat/completions", &body, Some("Answer with one word."), None).unwrap();
        assert_eq!(o.fingerprint, r.fingerprint);
        assert_eq!(o.request.sampling.max_tokens, Some(500));
        let Prompt::Chat { messages, .. } = &o.request.prompt else { panic!("chat expected") };
        assert_eq!((messages[0].role.as_str(), messages[0].content.as_str()), ("system", "Answer with one word."));
        assert_eq!(messages.len(), 2);
        // Another user message, another fingerprint.
        let other = body.replace("Refund please", "Where is my parcel");
        assert_ne!(build("/v1/chat/completions", &other, None, None).unwrap().fingerprint, r.fingerprint);
        // Anthropic, no max given beyond the required one.
        let a = json!({"model": "claude", "max_tokens": 4096, "system": "S", "messages": [{"role": "user", "content": "hi"}]});
        let a = build("/v1/messages", &a.to_string(), None, None).unwrap();
        assert_eq!(a.request.sampling.max_tokens, Some(MAX_EVAL_TOKENS));
        assert!(build("/v1/responses", "{}", None, None).is_err());
        assert!(build("/v1/chat/completions", "{", None, None).is_err());
    }

    #[test]
    fn excerpts() {
        assert_eq!(estimate_tokens("a b c d"), 4);
        assert_eq!(estimate_tokens("abcdefgh"), 3);
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("abcd", 3), "abc…");
    }
}
