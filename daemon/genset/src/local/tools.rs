//! Tool calls in a local model's output. Pure functions.
//!
//! Tool definitions reach the model through its chat template; what comes back is text. This
//! module turns that text into the APIs' tool calls:
//!
//! - **forced** (`tool_choice` `"required"` or a named function; Anthropic `any` or `tool`):
//!   the request carries a grammar ([`call_schema`]) so the model can only write
//!   `{"name": <one of the tools>, "arguments": {…matching its parameters…}}`;
//! - **auto**: the text is parsed for a call in the formats models commonly use: a JSON object
//!   with `name` and `arguments` (or `parameters`), a JSON array of them, optionally wrapped in
//!   `<tool_call>…</tool_call>` (text may precede the first tag), a fenced ```` ```json ````
//!   block, or after Mistral's `[TOOL_CALLS]`. A call must name one of the offered tools and
//!   carry nothing but a name and an arguments object; anything else stays text.
//!
//! [`Splitter`] does the same while streaming: text is released as content as soon as it
//! cannot be a call, and held back only from where a call may begin (the start of the output
//! when it starts like one, or a `<tool_call>` tag), so the streamed and the whole answer
//! always agree.

use serde_json::{Map, Value, json};

/// How a request's output relates to tools.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolMode {
    /// No tools offered, or `tool_choice` none: the output is text.
    Off,
    /// The model may call one of these tools; `parallel: false` (OpenAI `parallel_tool_calls`,
    /// Anthropic `disable_parallel_tool_use`) keeps only the first call it writes.
    Auto { names: Vec<String>, parallel: bool },
    /// The output is grammar-constrained to a call of one of these tools.
    Forced { names: Vec<String> },
}

impl ToolMode {
    fn names(&self) -> &[String] {
        match self {
            ToolMode::Off => &[],
            ToolMode::Auto { names, .. } | ToolMode::Forced { names } => names,
        }
    }

    /// `text` split into content and the calls in it, as many calls as the request allows
    /// (a forced call's grammar allows one only); `None` when it holds no call.
    fn calls_in(&self, text: &str) -> Option<Output> {
        let mut out = parse(text, self.names())?;
        if matches!(self, ToolMode::Auto { parallel: false, .. }) {
            out.calls.truncate(1);
        }
        Some(out)
    }
}

/// One parsed tool call. `id` is filled in by the API layer (`call_…` / `toolu_…`).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: String,
    pub name: String,
    /// Always a JSON object.
    pub arguments: Value,
}

/// The output split into content and calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Text before the first call (all the text when there is no call).
    pub content: String,
    pub calls: Vec<Call>,
}

/// The name and parameters schema of an OpenAI-shaped tool definition.
pub fn tool_signature(tool: &Value) -> Option<(&str, Value)> {
    let f = tool.get("function")?;
    let name = f.get("name")?.as_str()?;
    let params = f.get("parameters").filter(|p| p.is_object()).cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    Some((name, params))
}

/// The JSON Schema of a call to one of `tools` (OpenAI-shaped), for the grammar of a forced
/// tool choice: `{"name": <const>, "arguments": <the tool's parameters>}`.
pub fn call_schema(tools: &[&Value]) -> Value {
    let one = |t: &&Value| {
        let (name, params) = tool_signature(t)?;
        Some(json!({
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": params},
            "required": ["name", "arguments"],
            "additionalProperties": false
        }))
    };
    let mut alts: Vec<Value> = tools.iter().filter_map(one).collect();
    if alts.len() == 1 { alts.remove(0) } else { json!({"anyOf": alts}) }
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const MISTRAL: &str = "[TOOL_CALLS]";

/// Parse a whole output for tool calls; `None` when it is not (only) calls, in which case all
/// of it is content.
pub fn parse(text: &str, names: &[String]) -> Option<Output> {
    if let Some(at) = text.find(OPEN) {
        let mut calls = Vec::new();
        let mut rest = &text[at..];
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            rest = rest.strip_prefix(OPEN)?;
            let (body, after) = match rest.find(CLOSE) {
                Some(end) => (&rest[..end], &rest[end + CLOSE.len()..]),
                // The closing tag may be missing (a stop sequence, or the end of the turn).
                None => (rest, ""),
            };
            calls.extend(calls_in(body.trim(), names)?);
            rest = after;
        }
        return Some(Output { content: text[..at].to_owned(), calls });
    }
    let trimmed = text.trim();
    let json = if let Some(rest) = trimmed.strip_prefix(MISTRAL) {
        rest.trim()
    } else if let Some(rest) = trimmed.strip_prefix("```") {
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        rest.strip_suffix("```")?.trim()
    } else {
        trimmed
    };
    Some(Output { content: String::new(), calls: calls_in(json, names)? })
}

/// The calls in one JSON text: a call object or a non-empty array of them.
fn calls_in(json: &str, names: &[String]) -> Option<Vec<Call>> {
    match serde_json::from_str::<Value>(json).ok()? {
        Value::Array(items) if !items.is_empty() => items.iter().map(|v| call(v, names)).collect(),
        v @ Value::Object(_) => Some(vec![call(&v, names)?]),
        _ => None,
    }
}

fn call(v: &Value, names: &[String]) -> Option<Call> {
    let o = v.as_object()?;
    // The OpenAI shape: {"type": "function", "function": {...}}.
    if let Some(f) = o.get("function").filter(|f| f.is_object()) {
        if o.keys().any(|k| !matches!(k.as_str(), "function" | "type" | "id")) {
            return None;
        }
        return call(f, names);
    }
    if o.keys().any(|k| !matches!(k.as_str(), "name" | "arguments" | "parameters" | "id" | "type")) {
        return None;
    }
    let name = o.get("name")?.as_str()?;
    if !names.iter().any(|n| n == name) {
        return None;
    }
    let arguments = match (o.get("arguments"), o.get("parameters")) {
        (Some(a), None) | (None, Some(a)) => arguments(a)?,
        (None, None) => Value::Object(Map::new()),
        (Some(_), Some(_)) => return None,
    };
    Some(Call { id: String::new(), name: name.to_owned(), arguments })
}

/// Arguments are an object, or a string holding one (OpenAI's own encoding).
fn arguments(a: &Value) -> Option<Value> {
    match a {
        Value::Object(_) => Some(a.clone()),
        Value::String(s) => serde_json::from_str::<Value>(s).ok().filter(Value::is_object),
        _ => None,
    }
}

/// Whether the start of an output (leading whitespace removed) may be a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Looks {
    Call,
    Text,
    Undecided,
}

fn looks(s: &str) -> Looks {
    if s.is_empty() {
        return Looks::Undecided;
    }
    if s.starts_with('{') || s.starts_with('[') || s.starts_with(OPEN) {
        return Looks::Call;
    }
    if OPEN.starts_with(s) || "```".starts_with(s) {
        return Looks::Undecided;
    }
    if let Some(after) = s.strip_prefix("```") {
        if after.starts_with("json") {
            return Looks::Call;
        }
        if "json".starts_with(after) {
            return Looks::Undecided;
        }
        let a = after.trim_start();
        return match a.chars().next() {
            None => Looks::Undecided,
            Some('{' | '[') => Looks::Call,
            Some(_) => Looks::Text,
        };
    }
    Looks::Text
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag`.
fn partial_tag(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&k| text.is_char_boundary(text.len() - k) && tag.as_bytes().starts_with(&text.as_bytes()[text.len() - k..]))
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace or a possible opening so far.
    Start,
    /// Streaming text, watching for a `<tool_call>` tag.
    Text,
    /// Holding everything from where a call may begin.
    Holding,
}

/// The streaming counterpart of [`parse`]: feed text deltas, get back the text that can be
/// sent as content now; [`Splitter::finish`] returns the rest of the content and the calls.
#[derive(Debug)]
pub struct Splitter {
    mode: ToolMode,
    state: State,
    held: String,
}

impl Splitter {
    pub fn new(mode: ToolMode) -> Self {
        let state = if matches!(mode, ToolMode::Forced { .. }) { State::Holding } else { State::Start };
        Splitter { mode, state, held: String::new() }
    }

    /// Whether anything at all may be held back (tools are in play).
    pub fn active(&self) -> bool {
        self.mode != ToolMode::Off
    }

    /// Add a delta; returns the content that is safe to send now (possibly empty).
    pub fn push(&mut self, delta: &str) -> String {
        if self.mode == ToolMode::Off {
            return delta.to_owned();
        }
        self.held.push_str(delta);
        if self.state == State::Start {
            match looks(self.held.trim_start()) {
                Looks::Undecided => return String::new(),
                Looks::Call => {
                    self.state = State::Holding;
                    return String::new();
                }
                Looks::Text => self.state = State::Text,
            }
        }
        if self.state == State::Holding {
            return String::new();
        }
        if let Some(at) = self.held.find(OPEN) {
            let out = self.held[..at].to_owned();
            self.held.drain(..at);
            self.state = State::Holding;
            return out;
        }
        let keep = partial_tag(&self.held, OPEN);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_owned();
        self.held.drain(..cut);
        out
    }

    /// The end of the output: the content not yet sent, and the calls.
    pub fn finish(self) -> Output {
        if self.state == State::Holding
            && let Some(out) = self.mode.calls_in(&self.held)
        {
            return out;
        }
        Output { content: self.held, calls: vec![] }
    }
}

/// The whole-answer split: what [`Splitter`] yields in total.
pub fn split(mode: &ToolMode, text: &str) -> Output {
    match mode {
        ToolMode::Off => Output { content: text.to_owned(), calls: vec![] },
        _ => mode.calls_in(text).unwrap_or_else(|| Output { content: text.to_owned(), calls: vec![] }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn names() -> Vec<String> {
        vec!["get_weather".into(), "now".into()]
    }

    /// `expected`: `None` when the text stays content, else (content, [(name, arguments)]).
    /// Also checks that streaming it in every two-way split, and char by char, agrees.
    fn check(input: &str, expected: Option<(&str, Vec<(&str, Value)>)>) {
        let got = parse(input, &names())
            .map(|o| (o.content.clone(), o.calls.iter().map(|c| (c.name.clone(), c.arguments.clone())).collect::<Vec<_>>()));
        let want = expected.map(|(c, calls)| (c.to_owned(), calls.into_iter().map(|(n, a)| (n.to_owned(), a)).collect()));
        assert_eq!(got, want, "parse({input:?})");
        let whole = split(&ToolMode::Auto { names: names(), parallel: true }, input);
        let mut cuts: Vec<Vec<&str>> =
            (0..=input.len()).filter(|&i| input.is_char_boundary(i)).map(|i| vec![&input[..i], &input[i..]]).collect();
        cuts.push(input.char_indices().map(|(i, c)| &input[i..i + c.len_utf8()]).collect());
        for pieces in cuts {
            let mut s = Splitter::new(ToolMode::Auto { names: names(), parallel: true });
            let mut content: String = pieces.iter().map(|p| s.push(p)).collect();
            let out = s.finish();
            content.push_str(&out.content);
            assert_eq!(content, whole.content, "streamed content of {pieces:?}");
            assert_eq!(out.calls, whole.calls, "streamed calls of {pieces:?}");
        }
    }

    #[test]
    fn one_call_when_parallel_calls_are_off() {
        let text = r#"[{"name": "now", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Oslo"}}]"#;
        let both = split(&ToolMode::Auto { names: names(), parallel: true }, text);
        assert_eq!(both.calls.len(), 2);
        let single = ToolMode::Auto { names: names(), parallel: false };
        let one = split(&single, text);
        assert_eq!(one.calls, both.calls[..1].to_vec());
        let mut s = Splitter::new(single);
        assert_eq!(s.push(text), "");
        assert_eq!(s.finish(), one);
    }

    #[test]
    fn formats() {
        let paris = || json!({"city": "Paris"});
        check(r#"{"name": "get_weather", "arguments": {"city": "Paris"}}"#, Some(("", vec![("get_weather", paris())])));
        check(r#"  {"name":"get_weather","parameters":{"city":"Paris"}} "#, Some(("", vec![("get_weather", paris())])));
        check(r#"{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}"#, Some(("", vec![("get_weather", paris())])));
        check(r#"{"name":"now"}"#, Some(("", vec![("now", json!({}))])));
        check(
            r#"{"type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}}"#,
            Some(("", vec![("get_weather", paris())])),
        );
        check(
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            Some(("", vec![("get_weather", paris())])),
        );
        check(
            "Let me look.\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}</tool_call>\n<tool_call>{\"name\":\"now\",\"arguments\":{}}",
            Some(("Let me look.\n", vec![("get_weather", paris()), ("now", json!({}))])),
        );
        check("```json\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n```", Some(("", vec![("get_weather", paris())])));
        check("```\n[{\"name\":\"now\",\"arguments\":{}}]\n```", Some(("", vec![("now", json!({}))])));
        check(
            "[TOOL_CALLS][{\"name\":\"now\",\"arguments\":{}},{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}]",
            Some(("", vec![("now", json!({})), ("get_weather", paris())])),
        );
    }

    #[test]
    fn text_stays_text() {
        check("The weather in Paris is mild.", None);
        check("", None);
        check("   ", None);
        // Not an offered tool, extra keys, bad arguments, trailing prose, broken JSON.
        check(r#"{"name":"delete_everything","arguments":{}}"#, None);
        check(r#"{"name":"get_weather","arguments":{"city":"Paris"},"why":"asked"}"#, None);
        check(r#"{"name":"get_weather","arguments":[1]}"#, None);
        check(r#"{"name":"get_weather","arguments":{}} and then some"#, None);
        check(r#"{"name":"get_weather","arguments":{"#, None);
        check(r#"{"colour":"blue","count":3}"#, None);
        check("[]", None);
        check("[1, 2]", None);
        check("```python\nprint(1)\n```", None);
        check("<tool_call>not json</tool_call>", None);
        check("use <tool_call> tags like <tool_call>{}</tool_call>", None);
        check("a < b, and <tool_", None);
        check("héllo <tool_cal wörld", None);
    }

    #[test]
    fn splitter_releases_text_early_and_holds_calls() {
        let mut s = Splitter::new(ToolMode::Auto { names: names(), parallel: true });
        assert_eq!(s.push("Hello"), "Hello");
        assert_eq!(s.push(" there <tool"), " there ");
        assert_eq!(s.push("_call>{\"name\":\"now\"}"), "");
        let out = s.finish();
        assert_eq!(out.content, "");
        assert_eq!(out.calls[0].name, "now");
        // A call-like start is held; whitespace before it too.
        let mut s = Splitter::new(ToolMode::Auto { names: names(), parallel: true });
        assert_eq!(s.push("\n "), "");
        assert_eq!(s.push("{\"na"), "");
        assert_eq!(s.finish().content, "\n {\"na");
        // Forced: nothing is released before the end.
        let mut s = Splitter::new(ToolMode::Forced { names: names() });
        assert_eq!(s.push("Hello"), "");
        assert_eq!(s.finish().content, "Hello");
        // Off: everything passes through.
        let mut s = Splitter::new(ToolMode::Off);
        assert_eq!(s.push("{\"name\":\"now\"}"), "{\"name\":\"now\"}");
        assert_eq!(s.finish(), Output::default());
    }

    #[test]
    fn call_schema_shapes() {
        let a = json!({"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}});
        let b = json!({"type": "function", "function": {"name": "b"}});
        let one = call_schema(&[&a]);
        assert_eq!(one["properties"]["name"], json!({"const": "a"}));
        assert_eq!(one["properties"]["arguments"]["required"], json!(["x"]));
        assert_eq!(one["required"], json!(["name", "arguments"]));
        let two = call_schema(&[&a, &b]);
        assert_eq!(two["anyOf"].as_array().unwrap().len(), 2);
        assert_eq!(two["anyOf"][1]["properties"]["arguments"], json!({"type": "object", "properties": {}}));
    }
}
