//! A cheap look into a request body: just the fields routing and classification need.
//! The body itself is forwarded untouched; this only borrows from it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::api::error::ApiError;

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    messages: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<Cow<'a, str>>,
}

/// The parts of a JSON request body genset looks at.
pub struct Peek<'a> {
    pub model: Option<Cow<'a, str>>,
    pub stream: bool,
    messages: Vec<&'a RawValue>,
    system: Option<&'a RawValue>,
    instructions: Option<Cow<'a, str>>,
}

impl<'a> Peek<'a> {
    /// Parse `body` as a JSON object. Invalid UTF-8, invalid JSON, or a non-object give a clear error.
    pub fn parse(body: &'a [u8]) -> Result<Peek<'a>, ApiError> {
        if body.is_empty() {
            return Err(ApiError::invalid("the request body is empty; expected a JSON object").with_code("invalid_json"));
        }
        if let Err(e) = std::str::from_utf8(body) {
            return Err(ApiError::invalid(format!("the request body is not valid UTF-8 (at byte {})", e.valid_up_to()))
                .with_code("invalid_encoding"));
        }
        let raw: Raw<'a> = serde_json::from_slice(body).map_err(|e| {
            let what = if e.is_data() { "is not a valid request object" } else { "is not valid JSON" };
            ApiError::invalid(format!("the request body {what}: {e}")).with_code("invalid_json")
        })?;
        Ok(Peek {
            model: raw.model,
            stream: raw.stream.unwrap_or(false),
            messages: raw.messages.unwrap_or_default(),
            system: raw.system,
            instructions: raw.instructions,
        })
    }

    /// The system prompt: Anthropic's top-level `system`, the Responses API's `instructions`, or
    /// the leading `system`/`developer` messages of a chat request, joined.
    pub fn system_prompt(&self) -> Option<String> {
        if let Some(s) = self.system {
            return content_text(s);
        }
        if let Some(i) = &self.instructions {
            return Some(i.to_string());
        }
        #[derive(Deserialize)]
        struct Msg<'b> {
            #[serde(borrow)]
            role: Cow<'b, str>,
            #[serde(borrow, default)]
            content: Option<&'b RawValue>,
        }
        let mut out: Option<String> = None;
        for m in &self.messages {
            let Ok(msg) = serde_json::from_str::<Msg<'_>>(m.get()) else { break };
            if msg.role != "system" && msg.role != "developer" {
                break;
            }
            if let Some(t) = msg.content.and_then(content_text) {
                let o = out.get_or_insert_with(String::new);
                if !o.is_empty() {
                    o.push('\n');
                }
                o.push_str(&t);
            }
        }
        out
    }
}

/// Text of a content value: a string, or an array of blocks with `text`.
fn content_text(v: &RawValue) -> Option<String> {
    let val: serde_json::Value = serde_json::from_str(v.get()).ok()?;
    match val {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Array(parts) => {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect();
            if texts.is_empty() { None } else { Some(texts.join("\n")) }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn finds_model_stream_and_system() {
        let b = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"You triage."},{"role":"user","content":"hi"}],"extra":{"x":[1,2]}}"#;
        let p = Peek::parse(b).unwrap();
        assert_eq!(p.model.as_deref(), Some("gpt-4o"));
        assert!(p.stream);
        assert_eq!(p.system_prompt().as_deref(), Some("You triage."));
        let a = br#"{"model":"claude","system":[{"type":"text","text":"A"},{"type":"text","text":"B"}],"messages":[]}"#;
        assert_eq!(Peek::parse(a).unwrap().system_prompt().as_deref(), Some("A\nB"));
        let n = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        assert_eq!(Peek::parse(n).unwrap().system_prompt(), None);
    }

    #[test]
    fn bad_bodies() {
        for (b, code) in [
            (&b""[..], "invalid_json"),
            (&b"{\"model\": "[..], "invalid_json"),
            (&b"[1,2]"[..], "invalid_json"),
            (&b"{\"model\": 5}"[..], "invalid_json"),
            (&b"{\"model\": \"\xff\"}"[..], "invalid_encoding"),
        ] {
            let e = Peek::parse(b).err().expect("should fail");
            assert_eq!(e.code, Some(code), "{:?}", String::from_utf8_lossy(b));
            assert_eq!(e.status(), 400);
        }
    }
}
