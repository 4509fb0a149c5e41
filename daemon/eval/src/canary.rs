//! Canaries: provisioned test cases whose answers are checked by assertions.
//!
//! An [`Assertion`] is written in TOML as a one-key table plus an optional
//! `case_insensitive` flag:
//!
//! ```toml
//! assertions = [
//!   { equals = "positive" },
//!   { contains = "refund", case_insensitive = true },
//!   { regex = '^\d{4}-\d{2}-\d{2}$' },
//!   { json_schema = { type = "object", required = ["id"] } },
//!   { label_in = ["spam", "ham"] },
//!   { max_latency_ms = 2000 },
//! ]
//! ```
//!
//! Semantics (all on the local answer):
//! - `equals`: the answer, trimmed, equals the value, trimmed.
//! - `contains`: the value is a substring of the answer.
//! - `regex`: the regex (Rust `regex` syntax) matches somewhere in the answer
//!   (anchor it with `^...$` for a full match).
//! - `json_schema`: the answer is JSON (the whole answer, or one Markdown
//!   fence wrapping the whole answer; prose around it fails) and valid
//!   against the schema (the subset described in [`crate::schema`]).
//! - `label_in`: the answer resolves to one of the labels with the
//!   classification normalisation ([`crate::score::normalize_label`]), so it
//!   is always case-insensitive.
//! - `max_latency_ms`: the local call's total latency is at most the value.
//!
//! `case_insensitive` applies to `equals`, `contains` and `regex`; elsewhere
//! it is refused when loading. Deserialising checks the shape; [`validate`]
//! (to run at config load) compiles regexes and checks schemas, and its error
//! names the assertion (`assertions[2] (regex): invalid regex: ...`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json::parse_strict;
use crate::schema;
use crate::score::{normalize_label, resolve_label};

/// One check on a canary's answer. See the module doc for the TOML form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAssertion", into = "RawAssertion")]
pub enum Assertion {
    Equals { value: String, case_insensitive: bool },
    Contains { value: String, case_insensitive: bool },
    Regex { pattern: String, case_insensitive: bool },
    JsonSchema(Value),
    LabelIn(Vec<String>),
    MaxLatencyMs(u64),
}

/// The serde shape of an [`Assertion`]: exactly one check key set.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssertion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label_in: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    case_insensitive: Option<bool>,
}

impl TryFrom<RawAssertion> for Assertion {
    type Error = String;

    fn try_from(raw: RawAssertion) -> Result<Self, String> {
        let mut set = Vec::new();
        let ci = raw.case_insensitive;
        let case_insensitive = ci.unwrap_or(false);
        let mut found = None;
        if let Some(value) = raw.equals {
            set.push("equals");
            found = Some(Assertion::Equals { value, case_insensitive });
        }
        if let Some(value) = raw.contains {
            set.push("contains");
            found = Some(Assertion::Contains { value, case_insensitive });
        }
        if let Some(pattern) = raw.regex {
            set.push("regex");
            found = Some(Assertion::Regex { pattern, case_insensitive });
        }
        if let Some(s) = raw.json_schema {
            set.push("json_schema");
            found = Some(Assertion::JsonSchema(s));
        }
        if let Some(l) = raw.label_in {
            set.push("label_in");
            found = Some(Assertion::LabelIn(l));
        }
        if let Some(ms) = raw.max_latency_ms {
            set.push("max_latency_ms");
            found = Some(Assertion::MaxLatencyMs(ms));
        }
        match (set.len(), found) {
            (1, Some(a)) => {
                if ci.is_some() && !a.takes_case_flag() {
                    return Err(format!("case_insensitive does not apply to {}", a.kind()));
                }
                Ok(a)
            }
            (0, _) => Err(format!("an assertion needs one of {}", KINDS.join(", "))),
            _ => Err(format!("an assertion has exactly one check, found {}", set.join(" and "))),
        }
    }
}

const KINDS: &[&str] = &["equals", "contains", "regex", "json_schema", "label_in", "max_latency_ms"];

impl From<Assertion> for RawAssertion {
    fn from(a: Assertion) -> Self {
        let flag = |ci: bool| ci.then_some(true);
        match a {
            Assertion::Equals { value, case_insensitive } => {
                RawAssertion { equals: Some(value), case_insensitive: flag(case_insensitive), ..Default::default() }
            }
            Assertion::Contains { value, case_insensitive } => {
                RawAssertion { contains: Some(value), case_insensitive: flag(case_insensitive), ..Default::default() }
            }
            Assertion::Regex { pattern, case_insensitive } => {
                RawAssertion { regex: Some(pattern), case_insensitive: flag(case_insensitive), ..Default::default() }
            }
            Assertion::JsonSchema(s) => RawAssertion { json_schema: Some(s), ..Default::default() },
            Assertion::LabelIn(l) => RawAssertion { label_in: Some(l), ..Default::default() },
            Assertion::MaxLatencyMs(ms) => RawAssertion { max_latency_ms: Some(ms), ..Default::default() },
        }
    }
}

/// A load-time problem with one assertion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("assertions[{index}] ({kind}): {message}")]
pub struct AssertionError {
    /// Position in the list given to [`validate`].
    pub index: usize,
    /// The assertion's key (`regex`, `json_schema`, ...).
    pub kind: &'static str,
    pub message: String,
}

impl Assertion {
    /// The TOML key of this assertion.
    pub fn kind(&self) -> &'static str {
        match self {
            Assertion::Equals { .. } => "equals",
            Assertion::Contains { .. } => "contains",
            Assertion::Regex { .. } => "regex",
            Assertion::JsonSchema(_) => "json_schema",
            Assertion::LabelIn(_) => "label_in",
            Assertion::MaxLatencyMs(_) => "max_latency_ms",
        }
    }

    fn takes_case_flag(&self) -> bool {
        matches!(self, Assertion::Equals { .. } | Assertion::Contains { .. } | Assertion::Regex { .. })
    }

    /// Load-time check: the regex compiles, the schema is in the supported
    /// subset, the label set is not empty.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Assertion::Regex { pattern, case_insensitive } => {
                build_regex(pattern, *case_insensitive).map(|_| ()).map_err(|e| format!("invalid regex: {e}"))
            }
            Assertion::JsonSchema(s) => schema::check_schema(s).map_err(|e| format!("invalid schema: {e}")),
            Assertion::LabelIn(labels) if labels.iter().all(|l| normalize_label(l).is_empty()) => Err("the label set is empty".to_string()),
            _ => Ok(()),
        }
    }

    /// Check this assertion on one answer.
    pub fn check(&self, answer: &str, latency_ms: u64) -> AssertionResult {
        let (passed, reason) = self.evaluate(answer, latency_ms);
        AssertionResult { assertion: self.clone(), passed, reason }
    }

    fn evaluate(&self, answer: &str, latency_ms: u64) -> (bool, String) {
        let fold = |s: &str, ci: bool| if ci { s.to_lowercase() } else { s.to_string() };
        match self {
            Assertion::Equals { value, case_insensitive: ci } => {
                if fold(answer.trim(), *ci) == fold(value.trim(), *ci) {
                    (true, format!("the answer equals {value:?}"))
                } else {
                    (false, format!("the answer {} does not equal {value:?}", quote(answer)))
                }
            }
            Assertion::Contains { value, case_insensitive: ci } => {
                if fold(answer, *ci).contains(&fold(value, *ci)) {
                    (true, format!("the answer contains {value:?}"))
                } else {
                    (false, format!("the answer {} does not contain {value:?}", quote(answer)))
                }
            }
            Assertion::Regex { pattern, case_insensitive } => match build_regex(pattern, *case_insensitive) {
                Ok(re) if re.is_match(answer) => (true, format!("the answer matches /{pattern}/")),
                Ok(_) => (false, format!("the answer {} does not match /{pattern}/", quote(answer))),
                Err(e) => (false, format!("invalid regex: {e}")),
            },
            Assertion::JsonSchema(s) => {
                if let Err(e) = schema::check_schema(s) {
                    return (false, format!("invalid schema: {e}"));
                }
                let Some((instance, _)) = parse_strict(answer) else {
                    return (false, format!("the answer {} is not JSON", quote(answer)));
                };
                let errors = schema::validate(s, &instance);
                if errors.is_empty() {
                    (true, "the answer is valid JSON for the schema".to_string())
                } else {
                    (false, format!("the answer does not match the schema: {}", errors.join("; ")))
                }
            }
            Assertion::LabelIn(labels) => {
                let known: Vec<String> = labels.iter().map(|l| normalize_label(l)).collect();
                match resolve_label(answer, &known) {
                    Some(l) => (true, format!("the answer is the label {l:?}")),
                    None => (false, format!("the answer {} is none of the labels {labels:?}", quote(answer))),
                }
            }
            Assertion::MaxLatencyMs(max) => {
                if latency_ms <= *max {
                    (true, format!("latency {latency_ms} ms is within {max} ms"))
                } else {
                    (false, format!("latency {latency_ms} ms exceeds {max} ms"))
                }
            }
        }
    }
}

fn build_regex(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).case_insensitive(case_insensitive).size_limit(schema::REGEX_SIZE_LIMIT).build()
}

/// The answer quoted for a reason, cut to 80 characters.
fn quote(answer: &str) -> String {
    const MAX: usize = 80;
    let t = answer.trim();
    if t.chars().count() <= MAX {
        format!("{t:?}")
    } else {
        let cut: String = t.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}

/// The outcome of one assertion on one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertionResult {
    pub assertion: Assertion,
    pub passed: bool,
    /// A human sentence: why it passed or failed.
    pub reason: String,
}

/// Load-time validation of a list of assertions; the first problem found,
/// naming the assertion by position and kind.
pub fn validate(assertions: &[Assertion]) -> Result<(), AssertionError> {
    for (index, a) in assertions.iter().enumerate() {
        a.validate().map_err(|message| AssertionError { index, kind: a.kind(), message })?;
    }
    Ok(())
}

/// Check every assertion on one answer and its total latency.
pub fn check_all(assertions: &[Assertion], answer: &str, latency_ms: u64) -> Vec<AssertionResult> {
    assertions.iter().map(|a| a.check(answer, latency_ms)).collect()
}

/// One message of a canary's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// A provisioned test case for a use case: input messages and assertions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub name: String,
    pub messages: Vec<CanaryMessage>,
    pub assertions: Vec<Assertion>,
}

impl Canary {
    /// Load-time check: messages present with known roles, assertions valid.
    /// Errors read `canary "name": assertions[1] (regex): ...`.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if self.messages.is_empty() {
            return Err(format!("canary {name:?}: messages: at least one message is needed"));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(format!("canary {name:?}: messages[{i}].role: unknown role {:?}", m.role));
            }
        }
        if self.assertions.is_empty() {
            return Err(format!("canary {name:?}: assertions: at least one assertion is needed"));
        }
        validate(&self.assertions).map_err(|e| format!("canary {name:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    struct Doc {
        assertions: Vec<Assertion>,
    }

    fn parse(toml_text: &str) -> Result<Vec<Assertion>, String> {
        toml::from_str::<Doc>(toml_text).map(|d| d.assertions).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_toml_shape() {
        let got = parse(
            r#"assertions = [
                { equals = "positive" },
                { contains = "refund", case_insensitive = true },
                { regex = '^\d{4}$' },
                { json_schema = { type = "object", required = ["id"] } },
                { label_in = ["spam", "ham"] },
                { max_latency_ms = 2000 },
            ]"#,
        );
        let want = vec![
            Assertion::Equals { value: "positive".into(), case_insensitive: false },
            Assertion::Contains { value: "refund".into(), case_insensitive: true },
            Assertion::Regex { pattern: r"^\d{4}$".into(), case_insensitive: false },
            Assertion::JsonSchema(json!({"type": "object", "required": ["id"]})),
            Assertion::LabelIn(vec!["spam".into(), "ham".into()]),
            Assertion::MaxLatencyMs(2000),
        ];
        assert_eq!(got, Ok(want.clone()));
        // JSON round trip keeps the same shape.
        let text = serde_json::to_string(&want).unwrap_or_default();
        assert!(text.contains(r#"{"contains":"refund","case_insensitive":true}"#), "{text}");
        assert!(text.contains(r#"{"equals":"positive"}"#), "{text}");
        let back: Result<Vec<Assertion>, _> = serde_json::from_str(&text);
        assert_eq!(back.ok(), Some(want));
    }

    #[test]
    fn rejects_bad_shapes() {
        for (text, needle) in [
            ("assertions = [{}]", "needs one of"),
            ("assertions = [{ equals = \"a\", contains = \"b\" }]", "found equals and contains"),
            ("assertions = [{ max_latency_ms = 5, case_insensitive = true }]", "does not apply to max_latency_ms"),
            ("assertions = [{ equal = \"a\" }]", "unknown field"),
        ] {
            let err = parse(text).err().unwrap_or_default();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn validate_names_the_assertion() {
        let list = vec![
            Assertion::Equals { value: "a".into(), case_insensitive: false },
            Assertion::Regex { pattern: "(unclosed".into(), case_insensitive: false },
        ];
        let err = validate(&list).err();
        assert_eq!(err.as_ref().map(|e| (e.index, e.kind)), Some((1, "regex")));
        assert!(err.is_some_and(|e| e.to_string().starts_with("assertions[1] (regex): invalid regex")));

        let err = validate(&[Assertion::JsonSchema(json!({"anyOf": []}))]).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("assertions[0] (json_schema): invalid schema: #/anyOf: unsupported keyword `anyOf`".to_string())
        );
        assert!(validate(&[Assertion::LabelIn(vec![" ".into()])]).is_err());
    }

    /// One assertion on one (answer, latency): expected pass/fail.
    fn check(a: Assertion, answer: &str, latency_ms: u64, expected: bool) {
        let r = a.check(answer, latency_ms);
        assert_eq!(r.passed, expected, "{a:?} on {answer:?}: {}", r.reason);
        assert!(!r.reason.is_empty());
    }

    #[test]
    fn assertion_semantics() {
        let eq = |v: &str, ci| Assertion::Equals { value: v.into(), case_insensitive: ci };
        check(eq("positive", false), " positive\n", 0, true);
        check(eq("positive", false), "Positive", 0, false);
        check(eq("positive", true), "Positive", 0, true);
        let has = |v: &str, ci| Assertion::Contains { value: v.into(), case_insensitive: ci };
        check(has("refund", false), "We will refund you", 0, true);
        check(has("REFUND", false), "We will refund you", 0, false);
        check(has("REFUND", true), "We will refund you", 0, true);
        let re = |p: &str, ci| Assertion::Regex { pattern: p.into(), case_insensitive: ci };
        check(re(r"^\d{4}-\d{2}-\d{2}$", false), "2024-01-31", 0, true);
        check(re(r"^\d{4}-\d{2}-\d{2}$", false), "Date: 2024-01-31", 0, false);
        check(re("order #\\d+", true), "ORDER #12 shipped", 0, true);
        let schema = Assertion::JsonSchema(json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}));
        check(schema.clone(), r#"{"id": 7}"#, 0, true);
        check(schema.clone(), "```json\n{\"id\": 7}\n```", 0, true);
        check(schema.clone(), r#"Here: {"id": 7}"#, 0, false);
        check(schema.clone(), r#"{"id": "7"}"#, 0, false);
        check(schema, "not json", 0, false);
        let labels = Assertion::LabelIn(vec!["Spam".into(), "Not spam".into()]);
        check(labels.clone(), "**spam**", 0, true);
        check(labels.clone(), "Not Spam.", 0, true);
        check(labels, "maybe", 0, false);
        check(Assertion::MaxLatencyMs(2000), "", 2000, true);
        check(Assertion::MaxLatencyMs(2000), "", 2001, false);
    }

    #[test]
    fn check_all_reports_each() {
        let list = [Assertion::Contains { value: "ok".into(), case_insensitive: false }, Assertion::MaxLatencyMs(100)];
        let results = check_all(&list, "ok", 250);
        assert_eq!(results.iter().map(|r| r.passed).collect::<Vec<_>>(), vec![true, false]);
        assert_eq!(results[1].reason, "latency 250 ms exceeds 100 ms");
    }

    #[test]
    fn canary_validation() {
        let text = r#"
            name = "refund-intent"
            messages = [{ role = "user", content = "I want my money back" }]
            assertions = [{ label_in = ["refund", "billing"] }, { regex = "[" }]
        "#;
        let canary: Result<Canary, _> = toml::from_str(text);
        let err = canary.map_err(|e| e.to_string()).and_then(|c| c.validate());
        assert!(err.as_ref().is_err_and(|e| e.starts_with("canary \"refund-intent\": assertions[1] (regex): invalid regex")), "{err:?}");
    }
}
