//! Finding a JSON value inside a model's answer.
//!
//! Models wrap JSON in Markdown fences and surround it with prose. Two levels
//! of tolerance are offered: [`parse_strict`] (the whole answer, optionally in
//! a single fence that wraps the whole answer: what an application doing
//! `JSON.parse` after stripping a fence would accept) and [`find_json`] (also
//! the first fenced block anywhere, or the first object/array embedded in
//! prose).

use serde::Serialize;
use serde_json::Value;

/// Where the JSON was found in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Found {
    /// The whole answer is JSON.
    Whole,
    /// Inside a ```` ``` ```` fenced block.
    Fenced,
    /// The first object or array embedded in surrounding text.
    Embedded,
}

/// How many candidate `{` / `[` positions [`find_json`] tries before giving up
/// (bounds the work on long prose answers).
const MAX_EMBEDDED_TRIES: usize = 64;

/// The answer as JSON: the whole trimmed text, or the content of a fence that
/// wraps the whole answer.
pub(crate) fn parse_strict(text: &str) -> Option<(Value, Found)> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return Some((v, Found::Whole));
    }
    let inner = trimmed.strip_prefix("```")?.strip_suffix("```")?;
    let body = fence_body(inner);
    serde_json::from_str::<Value>(body.trim()).ok().map(|v| (v, Found::Fenced))
}

/// The first JSON value found in the answer: the whole answer, else the first
/// fenced block that parses, else the first object or array embedded in text.
pub(crate) fn find_json(text: &str) -> Option<(Value, Found)> {
    if let Some(found) = parse_strict(text) {
        return Some(found);
    }
    // Fenced blocks anywhere: ```json\n ... \n```
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("```") else { break };
        let body = fence_body(&after[..end]);
        if let Ok(v) = serde_json::from_str::<Value>(body.trim()) {
            return Some((v, Found::Fenced));
        }
        rest = &after[end + 3..];
    }
    // First object/array embedded in prose.
    for (tries, (i, _)) in text.char_indices().filter(|(_, c)| *c == '{' || *c == '[').enumerate() {
        if tries >= MAX_EMBEDDED_TRIES {
            break;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        if let Some(Ok(v)) = stream.next()
            && (v.is_object() || v.is_array())
        {
            return Some((v, Found::Embedded));
        }
    }
    None
}

/// The body of a fence without its info string (`json`, `JSON`, ...): if the
/// first line is a bare word it is the language tag.
fn fence_body(inner: &str) -> &str {
    match inner.split_once('\n') {
        Some((first, body)) if first.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => body,
        _ => inner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(text: &str, expected: Option<(Value, Found)>) {
        assert_eq!(find_json(text), expected, "input: {text:?}");
    }

    #[test]
    fn finds_json_in_answers() {
        check(r#" {"a": 1} "#, Some((json!({"a": 1}), Found::Whole)));
        check("```json\n{\"a\": 1}\n```", Some((json!({"a": 1}), Found::Fenced)));
        check("```\n[1, 2]\n```", Some((json!([1, 2]), Found::Fenced)));
        check("Here you go:\n```json\n{\"a\": 1}\n```\nAnything else?", Some((json!({"a": 1}), Found::Fenced)));
        check("The result is {\"a\": {\"b\": [1]}} as requested.", Some((json!({"a": {"b": [1]}}), Found::Embedded)));
        // A brace that does not start JSON is skipped.
        check("Use {braces} carefully: [\"x\"] is the list.", Some((json!(["x"]), Found::Embedded)));
        check("no json here", None);
        check("", None);
        // A bare scalar inside prose is not an extraction.
        check("the answer is 42 apples", None);
    }

    #[test]
    fn strict_accepts_only_whole_or_wrapping_fence() {
        assert!(parse_strict("```json\n{\"a\": 1}\n```").is_some());
        assert!(parse_strict("Sure: {\"a\": 1}").is_none());
        assert!(parse_strict("```json\n{\"a\": 1}\n``` done").is_none());
    }
}
