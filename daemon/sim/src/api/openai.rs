//! OpenAI routes: chat completions, legacy completions, embeddings, models.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::stream::{self, MALFORMED_OPENAI, StreamFault};
use super::{ApiCtx, Exit, bad_json, check_max_tokens, required};
use crate::answer::{self, Answer, Conversation, Finish, Limits, Msg, Reply, Role};
use crate::body::{Resp, SseWriter, json_value, to_json};
use crate::error::ApiError;
use crate::fault::Shape;
use crate::ids::{Id, splitmix64};
use crate::route::Flavor;
use crate::wire::{Count, StopList, Text};

const FINGERPRINT: &str = "fp_genset_sim";

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<ChatMessage<'a>>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(borrow, default)]
    stop: StopList<'a>,
    #[serde(default)]
    tools: Count,
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Text<'a>,
}

/// A parsed, validated generation request (chat or legacy completion).
struct Prepared<'a> {
    conv: Conversation<'a>,
    max_tokens: Option<u64>,
    stop: Vec<Cow<'a, str>>,
    stream: bool,
    include_usage: bool,
}

impl Prepared<'_> {
    fn shape(&self) -> Shape {
        Shape { stream: self.stream, prefill: self.conv.has_prefill() }
    }
    fn answer(&self) -> Answer {
        answer::answer(&self.conv, &Limits { max_tokens: self.max_tokens, stop: &self.stop })
    }
}

/// Shape and prompt size for fault matching, from a parse that may have failed.
fn gate_inputs<'p>(p: &'p Result<Prepared<'_>, ApiError>) -> (Shape, u64, &'p str) {
    match p {
        Ok(p) => (p.shape(), p.conv.prompt_tokens(), &p.conv.model),
        Err(_) => (Shape::default(), 0, ""),
    }
}

fn prepare_chat(body: &[u8]) -> Result<Prepared<'_>, ApiError> {
    let req: ChatRequest<'_> = serde_json::from_slice(body).map_err(bad_json)?;
    let model = required(req.model, "model", Flavor::OpenAi)?;
    let messages = match req.messages {
        Some(m) if !m.is_empty() => m,
        Some(_) => {
            return Err(ApiError::invalid("[] is too short - 'messages'", "messages"));
        }
        None => {
            return Err(ApiError::invalid("Missing required parameter: 'messages'.", "messages"));
        }
    };
    let max_tokens = match req.max_completion_tokens {
        Some(v) => check_max_tokens(Some(v), "max_completion_tokens", Flavor::OpenAi)?,
        None => check_max_tokens(req.max_tokens, "max_tokens", Flavor::OpenAi)?,
    };
    Ok(Prepared {
        conv: Conversation {
            model,
            messages: messages.into_iter().map(|m| Msg { role: Role::parse(&m.role), text: m.content }).collect(),
            tools: req.tools.0 > 0,
        },
        max_tokens,
        stop: req.stop.0,
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
    })
}

pub(super) async fn chat(cx: &ApiCtx<'_>, body: &Bytes) -> Result<Resp, Exit> {
    let prepared = prepare_chat(body);
    let (shape, prompt_tokens, model) = gate_inputs(&prepared);
    let fault = cx.gate(shape, prompt_tokens, model).await?;
    let p = prepared.map_err(|e| cx.fail(e))?;
    let a = p.answer();
    let r = if p.stream { chat_stream(cx, &p, &a, fault) } else { chat_full(cx, &p, &a, fault) };
    r.map_err(|e| cx.fail(ApiError::Internal(e.to_string())))
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::End | Finish::Stop(_) => "stop",
        Finish::Length => "length",
        Finish::ToolUse => "tool_calls",
    }
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

impl Usage {
    fn of(a: &Answer) -> Self {
        Usage {
            prompt_tokens: a.prompt_tokens,
            completion_tokens: a.completion_tokens,
            total_tokens: a.prompt_tokens + a.completion_tokens,
            prompt_tokens_details: PromptDetails { cached_tokens: 0, audio_tokens: 0 },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

#[derive(Serialize)]
struct ToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Id>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: Id,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
    service_tier: &'static str,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<()>,
    annotations: [(); 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
}

fn chat_full(cx: &ApiCtx<'_>, p: &Prepared<'_>, a: &Answer, fault: Option<StreamFault>) -> Result<Resp, serde_json::Error> {
    let (content, tool_calls) = match &a.reply {
        Reply::Text(t) => (Some(t.as_str()), None),
        Reply::ToolCall { name } => (
            None,
            Some([ToolCall {
                index: None,
                id: Some(cx.id("call_", 24)),
                kind: Some("function"),
                function: Function { name: Some(name), arguments: "{}" },
            }]),
        ),
    };
    let body = ChatCompletion {
        id: cx.id("chatcmpl-", 29),
        object: "chat.completion",
        created: cx.created(),
        model: &p.conv.model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage { role: "assistant", content, refusal: None, annotations: [], tool_calls },
            logprobs: None,
            finish_reason: finish_reason(a.finish),
        }],
        usage: Usage::of(a),
        service_tier: "default",
        system_fingerprint: FINGERPRINT,
    };
    let bytes = to_json(&body, 512 + a.text().len())?;
    Ok(stream::json(cx.shared, StatusCode::OK, bytes, fault))
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    service_tier: &'static str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    /// Present (null, or the totals on the last chunk) only when the
    /// client asked for `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<()>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
}

fn chat_stream(cx: &ApiCtx<'_>, p: &Prepared<'_>, a: &Answer, fault: Option<StreamFault>) -> Result<Resp, serde_json::Error> {
    let id = cx.id("chatcmpl-", 29);
    let created = cx.created();
    let usage = Usage::of(a);
    let usage_field = |last: bool| p.include_usage.then_some(last.then_some(&usage));
    let chunk = |delta: Delta<'_>, finish: Option<&'static str>, w: &mut SseWriter| {
        w.event(
            None,
            &ChatChunk {
                id: id.as_str(),
                object: "chat.completion.chunk",
                created,
                model: &p.conv.model,
                service_tier: "default",
                system_fingerprint: FINGERPRINT,
                choices: &[ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }],
                usage: usage_field(false),
            },
        )
    };
    let mut w = SseWriter::new(a.completion_tokens as usize + 5);
    match &a.reply {
        Reply::Text(text) => {
            let first = Delta { role: Some("assistant"), content: Some(Some("")), refusal: Some(None), tool_calls: None };
            chunk(first, None, &mut w)?;
            w.begin_content();
            for piece in answer::chunks(text) {
                chunk(Delta { content: Some(Some(piece)), ..Delta::default() }, None, &mut w)?;
            }
        }
        Reply::ToolCall { name } => {
            let first = Delta {
                role: Some("assistant"),
                content: Some(None),
                refusal: Some(None),
                tool_calls: Some([ToolCall {
                    index: Some(0),
                    id: Some(cx.id("call_", 24)),
                    kind: Some("function"),
                    function: Function { name: Some(name), arguments: "" },
                }]),
            };
            chunk(first, None, &mut w)?;
            w.begin_content();
            let args = Delta {
                tool_calls: Some([ToolCall { index: Some(0), id: None, kind: None, function: Function { name: None, arguments: "{}" } }]),
                ..Delta::default()
            };
            chunk(args, None, &mut w)?;
        }
    }
    w.end_content();
    chunk(Delta::default(), Some(finish_reason(a.finish)), &mut w)?;
    if p.include_usage {
        w.event(
            None,
            &ChatChunk {
                id: id.as_str(),
                object: "chat.completion.chunk",
                created,
                model: &p.conv.model,
                service_tier: "default",
                system_fingerprint: FINGERPRINT,
                choices: &[],
                usage: usage_field(true),
            },
        )?;
    }
    if !StreamFault::omits_done(fault) {
        w.raw(b"data: [DONE]\n\n");
    }
    Ok(stream::sse(cx.shared, w.finish(), fault, MALFORMED_OPENAI))
}

// ---- legacy completions -------------------------------------------------

#[derive(Deserialize)]
struct CompletionRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    prompt: Text<'a>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(borrow, default)]
    stop: StopList<'a>,
}

/// The legacy API's default `max_tokens`.
const LEGACY_DEFAULT_MAX_TOKENS: u64 = 16;

fn prepare_completion(body: &[u8]) -> Result<Prepared<'_>, ApiError> {
    let req: CompletionRequest<'_> = serde_json::from_slice(body).map_err(bad_json)?;
    let model = required(req.model, "model", Flavor::OpenAi)?;
    let max_tokens = check_max_tokens(req.max_tokens, "max_tokens", Flavor::OpenAi)?;
    Ok(Prepared {
        conv: Conversation { model, messages: vec![Msg { role: Role::User, text: req.prompt }], tools: false },
        max_tokens: Some(max_tokens.unwrap_or(LEGACY_DEFAULT_MAX_TOKENS)),
        stop: req.stop.0,
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
    })
}

#[derive(Serialize)]
struct LegacyUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [TextChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a LegacyUsage>>,
}

/// The fields every legacy completion object shares.
struct Head<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
}

impl Head<'_> {
    fn object<'b>(&'b self, choices: &'b [TextChoice<'b>], usage: Option<Option<&'b LegacyUsage>>) -> TextCompletion<'b> {
        TextCompletion {
            id: self.id,
            object: "text_completion",
            created: self.created,
            model: self.model,
            system_fingerprint: FINGERPRINT,
            choices,
            usage,
        }
    }
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

pub(super) async fn completions(cx: &ApiCtx<'_>, body: &Bytes) -> Result<Resp, Exit> {
    let prepared = prepare_completion(body);
    let (shape, prompt_tokens, model) = gate_inputs(&prepared);
    let fault = cx.gate(shape, prompt_tokens, model).await?;
    let p = prepared.map_err(|e| cx.fail(e))?;
    let a = p.answer();
    completion_response(cx, &p, &a, fault).map_err(|e| cx.fail(ApiError::Internal(e.to_string())))
}

fn completion_response(cx: &ApiCtx<'_>, p: &Prepared<'_>, a: &Answer, fault: Option<StreamFault>) -> Result<Resp, serde_json::Error> {
    let id = cx.id("cmpl-", 29);
    let created = cx.created();
    let usage = LegacyUsage {
        prompt_tokens: a.prompt_tokens,
        completion_tokens: a.completion_tokens,
        total_tokens: a.prompt_tokens + a.completion_tokens,
    };
    let head = Head { id: id.as_str(), created, model: &p.conv.model };
    let finish = finish_reason(a.finish);
    if !p.stream {
        let choice = [TextChoice { text: a.text(), index: 0, logprobs: None, finish_reason: Some(finish) }];
        let bytes = to_json(&head.object(&choice, Some(Some(&usage))), 384 + a.text().len())?;
        return Ok(stream::json(cx.shared, StatusCode::OK, bytes, fault));
    }
    let usage_null = p.include_usage.then_some(None);
    let mut w = SseWriter::new(a.completion_tokens as usize + 4);
    w.begin_content();
    for piece in answer::chunks(a.text()) {
        let choice = [TextChoice { text: piece, index: 0, logprobs: None, finish_reason: None }];
        w.event(None, &head.object(&choice, usage_null))?;
    }
    w.end_content();
    let last = [TextChoice { text: "", index: 0, logprobs: None, finish_reason: Some(finish) }];
    w.event(None, &head.object(&last, usage_null))?;
    if p.include_usage {
        w.event(None, &head.object(&[], Some(Some(&usage))))?;
    }
    if !StreamFault::omits_done(fault) {
        w.raw(b"data: [DONE]\n\n");
    }
    Ok(stream::sse(cx.shared, w.finish(), fault, MALFORMED_OPENAI))
}

// ---- embeddings -----------------------------------------------------------

#[derive(Deserialize)]
struct EmbeddingRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// Default embedding size.
pub(crate) const EMBEDDING_DIMS: usize = 8;
const MAX_DIMS: usize = 4096;

/// One input to embed: its hash and its token count.
fn embedding_inputs(raw: &RawValue) -> Result<Vec<(u64, u64)>, ApiError> {
    let invalid = || ApiError::invalid("'input' must be a string, an array of strings or an array of token arrays", "input");
    let hash = |bytes: &[u8]| answer::fnv1a(answer::FNV_OFFSET, bytes);
    let text = raw.get().trim_start();
    if text.starts_with('"') {
        let s: Cow<'_, str> = serde_json::from_str(raw.get()).map_err(|_| invalid())?;
        return Ok(vec![(hash(s.as_bytes()), s.split_whitespace().count() as u64)]);
    }
    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| invalid())?;
    if items.is_empty() {
        return Err(invalid());
    }
    // A flat array of numbers is one tokenized input.
    if items[0].get().trim_start().starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        return Ok(vec![(hash(raw.get().as_bytes()), items.len() as u64)]);
    }
    items
        .iter()
        .map(|item| {
            let t = item.get().trim_start();
            if t.starts_with('"') {
                let s: Cow<'_, str> = serde_json::from_str(item.get()).map_err(|_| invalid())?;
                Ok((hash(s.as_bytes()), s.split_whitespace().count() as u64))
            } else if t.starts_with('[') {
                let tokens: Vec<i64> = serde_json::from_str(item.get()).map_err(|_| invalid())?;
                Ok((hash(item.get().as_bytes()), tokens.len() as u64))
            } else {
                Err(invalid())
            }
        })
        .collect()
}

/// A unit-length vector derived from the input's hash.
pub(crate) fn embedding_vector(hash: u64, dims: usize) -> Vec<f32> {
    let mut state = hash;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state = splitmix64(state);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    /// The f32 values widened, so the JSON decimals parse back to exactly
    /// the numbers the base64 form carries.
    Floats(Vec<f64>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

pub(super) async fn embeddings(cx: &ApiCtx<'_>, body: &Bytes) -> Result<Resp, Exit> {
    let parsed: Result<EmbeddingRequest<'_>, ApiError> = serde_json::from_slice(body).map_err(bad_json);
    let model = parsed.as_ref().ok().and_then(|r| r.model.as_deref()).unwrap_or("");
    let fault = cx.gate(Shape::default(), 0, model).await?;
    let req = parsed.map_err(|e| cx.fail(e))?;
    let model = required(req.model, "model", Flavor::OpenAi).map_err(|e| cx.fail(e))?;
    let input = req.input.ok_or_else(|| cx.fail(ApiError::invalid("Missing required parameter: 'input'.", "input")))?;
    let inputs = embedding_inputs(input).map_err(|e| cx.fail(e))?;
    let dims = req.dimensions.unwrap_or(EMBEDDING_DIMS);
    if dims == 0 || dims > MAX_DIMS {
        return Err(cx.fail(ApiError::invalid(format!("'dimensions' must be between 1 and {MAX_DIMS}"), "dimensions")));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(cx.fail(ApiError::invalid(
                format!("Invalid value: '{other}'. Supported values are: 'float' and 'base64'."),
                "encoding_format",
            )));
        }
    };
    let tokens: u64 = inputs.iter().map(|(_, t)| t).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, (hash, _))| {
            let v = embedding_vector(*hash, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingValue::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingValue::Floats(v.into_iter().map(f64::from).collect())
            };
            EmbeddingItem { object: "embedding", index, embedding }
        })
        .collect();
    let list = EmbeddingList { object: "list", data, model: &model, usage: EmbeddingUsage { prompt_tokens: tokens, total_tokens: tokens } };
    let bytes = to_json(&list, 256 + inputs.len() * dims * 12).map_err(|e| cx.fail(ApiError::Internal(e.to_string())))?;
    Ok(stream::json(cx.shared, StatusCode::OK, bytes, fault))
}

// ---- models -----------------------------------------------------------------

/// The models the simulator lists: (id, owner, created, display name,
/// created_at).
pub(super) const MODELS: [(&str, &str, u64, &str, &str); 5] = [
    ("gpt-4o", "openai", 1_715_367_049, "GPT-4o", "2024-05-13T00:00:00Z"),
    ("gpt-4o-mini", "openai", 1_721_172_741, "GPT-4o mini", "2024-07-18T00:00:00Z"),
    ("claude-sonnet-4-5", "anthropic", 1_759_104_000, "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-haiku-4-5", "anthropic", 1_760_486_400, "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
    ("text-embedding-3-small", "openai", 1_705_948_997, "text-embedding-3-small", "2024-01-22T00:00:00Z"),
];

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

fn model_obj(m: &(&'static str, &'static str, u64, &'static str, &'static str)) -> ModelObject<'static> {
    ModelObject { id: m.0, object: "model", created: m.2, owned_by: m.1 }
}

pub(super) fn model_list() -> Resp {
    json_value(StatusCode::OK, &ModelList { object: "list", data: MODELS.iter().map(model_obj).collect() })
}

pub(super) fn model_object(id: &str) -> Option<Resp> {
    MODELS.iter().find(|m| m.0 == id).map(|m| json_value(StatusCode::OK, &model_obj(m)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn embedding_input_shapes() {
        let raw = |s: &str| serde_json::from_str::<Box<RawValue>>(s).unwrap();
        assert_eq!(embedding_inputs(&raw(r#""a b""#)).unwrap().len(), 1);
        assert_eq!(embedding_inputs(&raw(r#"["a", "b c"]"#)).unwrap().iter().map(|x| x.1).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(embedding_inputs(&raw("[1, 2, 3]")).unwrap(), embedding_inputs(&raw("[1, 2, 3]")).unwrap());
        assert_eq!(embedding_inputs(&raw("[1, 2, 3]")).unwrap()[0].1, 3);
        assert_eq!(embedding_inputs(&raw("[[1, 2], [3]]")).unwrap().len(), 2);
        assert!(embedding_inputs(&raw("[]")).is_err());
        assert!(embedding_inputs(&raw("5")).is_err());
        let v = embedding_vector(42, 8);
        assert_eq!(v.len(), 8);
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(v, embedding_vector(42, 8));
    }
}
