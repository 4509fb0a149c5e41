//! OpenAI Responses API (`POST /v1/responses`): a minimal but valid
//! response object, whole or as the documented event stream.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::StatusCode;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::stream::{self, MALFORMED_RESPONSES, StreamFault};
use super::{ApiCtx, Exit, bad_json, check_max_tokens, required};
use crate::answer::{self, Answer, Conversation, Finish, Limits, Msg, Reply, Role};
use crate::body::{Resp, SseWriter, to_json};
use crate::error::ApiError;
use crate::fault::Shape;
use crate::ids::Id;
use crate::route::Flavor;
use crate::wire::Text;

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Text<'a>,
}

/// `input`: a string (one user message) or a list of items.
#[derive(Default)]
struct Input<'a>(Vec<Msg<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Input<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Input<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of input items")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Input(vec![Msg { role: Role::User, text: Text::One(Cow::Borrowed(v)) }]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Input(vec![Msg { role: Role::User, text: Text::One(Cow::Owned(v.to_owned())) }]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut msgs = Vec::new();
                while let Some(item) = seq.next_element::<Item<'de>>()? {
                    let role = item.role.as_deref().map_or(Role::Other, Role::parse);
                    msgs.push(Msg { role, text: item.content });
                }
                Ok(Input(msgs))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct ResponsesRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<Input<'a>>,
    #[serde(borrow, default)]
    instructions: Option<Cow<'a, str>>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
}

struct Prepared<'a> {
    conv: Conversation<'a>,
    instructions: Option<Cow<'a, str>>,
    max_output_tokens: Option<u64>,
    stream: bool,
    tools: Option<&'a RawValue>,
}

fn prepare(body: &[u8]) -> Result<Prepared<'_>, ApiError> {
    let req: ResponsesRequest<'_> = serde_json::from_slice(body).map_err(bad_json)?;
    let model = required(req.model, "model", Flavor::OpenAi)?;
    let Some(Input(input)) = req.input else {
        return Err(ApiError::invalid("Missing required parameter: 'input'.", "input"));
    };
    let max_output_tokens = check_max_tokens(req.max_output_tokens, "max_output_tokens", Flavor::OpenAi)?;
    let mut messages = Vec::with_capacity(input.len() + 1);
    if let Some(i) = req.instructions.as_ref().filter(|i| !i.is_empty()) {
        messages.push(Msg { role: Role::System, text: Text::One(i.clone()) });
    }
    messages.extend(input);
    let has_tools = req.tools.is_some_and(|t| {
        let t = t.get().trim();
        t.starts_with('[') && t[1..].trim_start() != "]"
    });
    Ok(Prepared {
        conv: Conversation { model, messages, tools: has_tools },
        instructions: req.instructions,
        max_output_tokens,
        stream: req.stream.unwrap_or(false),
        tools: req.tools,
    })
}

#[derive(Serialize)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    annotations: [(); 0],
    logprobs: [(); 0],
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputItem<'a> {
    Message { id: &'a str, status: &'static str, role: &'static str, content: Vec<OutputText<'a>> },
    FunctionCall { id: &'a str, call_id: &'a str, name: &'a str, arguments: &'a str, status: &'static str },
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    input_tokens_details: CachedTokens,
    output_tokens: u64,
    output_tokens_details: ReasoningTokens,
    total_tokens: u64,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

#[derive(Serialize)]
struct Incomplete {
    reason: &'static str,
}

#[derive(Serialize)]
struct Reasoning {
    effort: Option<()>,
    summary: Option<()>,
}

#[derive(Serialize)]
struct TextFormat {
    format: FormatType,
}

#[derive(Serialize)]
struct FormatType {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    error: Option<()>,
    incomplete_details: Option<Incomplete>,
    instructions: Option<&'a str>,
    max_output_tokens: Option<u64>,
    model: &'a str,
    output: &'a [OutputItem<'a>],
    parallel_tool_calls: bool,
    previous_response_id: Option<()>,
    reasoning: Reasoning,
    store: bool,
    temperature: f64,
    text: TextFormat,
    tool_choice: &'static str,
    tools: &'a RawValue,
    top_p: f64,
    truncation: &'static str,
    usage: Option<Usage>,
    user: Option<()>,
    metadata: EmptyObject,
}

pub(super) async fn responses(cx: &ApiCtx<'_>, body: &Bytes) -> Result<Resp, Exit> {
    let prepared = prepare(body);
    let (shape, prompt_tokens, model) = match &prepared {
        Ok(p) => (Shape { stream: p.stream, prefill: p.conv.has_prefill() }, p.conv.prompt_tokens(), &*p.conv.model),
        Err(_) => (Shape::default(), 0, ""),
    };
    let fault = cx.gate(shape, prompt_tokens, model).await?;
    let p = prepared.map_err(|e| cx.fail(e))?;
    let a = answer::answer(&p.conv, &Limits { max_tokens: p.max_output_tokens, stop: &[] });
    render(cx, &p, &a, fault).map_err(|e| cx.fail(ApiError::Internal(e.to_string())))
}

struct Ids {
    response: Id,
    item: Id,
    call: Id,
}

fn response_object<'a>(
    p: &'a Prepared<'a>,
    a: &Answer,
    ids: &'a Ids,
    created_at: u64,
    output: &'a [OutputItem<'a>],
    done: bool,
) -> ResponseObject<'a> {
    let incomplete = a.finish == Finish::Length;
    ResponseObject {
        id: ids.response.as_str(),
        object: "response",
        created_at,
        status: match (done, incomplete) {
            (false, _) => "in_progress",
            (true, false) => "completed",
            (true, true) => "incomplete",
        },
        error: None,
        incomplete_details: (done && incomplete).then_some(Incomplete { reason: "max_output_tokens" }),
        instructions: p.instructions.as_deref(),
        max_output_tokens: p.max_output_tokens,
        model: &p.conv.model,
        output,
        parallel_tool_calls: true,
        previous_response_id: None,
        reasoning: Reasoning { effort: None, summary: None },
        store: true,
        temperature: 1.0,
        text: TextFormat { format: FormatType { kind: "text" } },
        tool_choice: "auto",
        tools: p.tools.unwrap_or_else(|| empty_raw()),
        top_p: 1.0,
        truncation: "disabled",
        usage: done.then(|| Usage {
            input_tokens: a.prompt_tokens,
            input_tokens_details: CachedTokens { cached_tokens: 0 },
            output_tokens: a.completion_tokens,
            output_tokens_details: ReasoningTokens { reasoning_tokens: 0 },
            total_tokens: a.prompt_tokens + a.completion_tokens,
        }),
        user: None,
        metadata: EmptyObject {},
    }
}

/// `[]` as a raw value, for the `tools` echo when the request had none.
fn empty_raw() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("[]".to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned()))
}

fn final_item<'a>(a: &'a Answer, ids: &'a Ids, text_status: &'static str) -> OutputItem<'a> {
    match &a.reply {
        Reply::Text(t) => OutputItem::Message {
            id: ids.item.as_str(),
            status: text_status,
            role: "assistant",
            content: vec![OutputText { kind: "output_text", text: t, annotations: [], logprobs: [] }],
        },
        Reply::ToolCall { name } => {
            OutputItem::FunctionCall { id: ids.item.as_str(), call_id: ids.call.as_str(), name, arguments: "{}", status: "completed" }
        }
    }
}

#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    payload: T,
}

fn render(cx: &ApiCtx<'_>, p: &Prepared<'_>, a: &Answer, fault: Option<StreamFault>) -> Result<Resp, serde_json::Error> {
    let is_tool = matches!(a.reply, Reply::ToolCall { .. });
    let ids = Ids { response: cx.id("resp_", 48 - 5), item: cx.id(if is_tool { "fc_" } else { "msg_" }, 40), call: cx.id("call_", 24) };
    let created_at = cx.created();
    let text_status = if a.finish == Finish::Length { "incomplete" } else { "completed" };
    let done_item = [final_item(a, &ids, text_status)];
    if !p.stream {
        let obj = response_object(p, a, &ids, created_at, &done_item, true);
        let bytes = to_json(&obj, 1024 + a.text().len())?;
        return Ok(stream::json(cx.shared, StatusCode::OK, bytes, fault));
    }

    let mut w = SseWriter::new(a.completion_tokens as usize + 10);
    let mut seq = 0u64;
    let mut event = |w: &mut SseWriter, kind: &str, payload: &dyn erased_serde_free::Payload| {
        let r = payload.emit(w, kind, seq);
        seq += 1;
        r
    };

    #[derive(Serialize)]
    struct WithResponse<'a> {
        response: ResponseObject<'a>,
    }
    let started = response_object(p, a, &ids, created_at, &[], false);
    event(&mut w, "response.created", &WithResponse { response: started })?;
    let started = response_object(p, a, &ids, created_at, &[], false);
    event(&mut w, "response.in_progress", &WithResponse { response: started })?;

    #[derive(Serialize)]
    struct ItemEvent<'a> {
        output_index: u32,
        item: &'a OutputItem<'a>,
    }
    #[derive(Serialize)]
    struct PartEvent<'a> {
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        part: OutputText<'a>,
    }
    #[derive(Serialize)]
    struct TextDelta<'a> {
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        delta: &'a str,
        logprobs: [(); 0],
    }
    #[derive(Serialize)]
    struct TextDone<'a> {
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        text: &'a str,
        logprobs: [(); 0],
    }
    #[derive(Serialize)]
    struct ArgsDelta<'a> {
        item_id: &'a str,
        output_index: u32,
        delta: &'a str,
    }
    #[derive(Serialize)]
    struct ArgsDone<'a> {
        item_id: &'a str,
        output_index: u32,
        arguments: &'a str,
    }

    let item_id = ids.item.as_str();
    match &a.reply {
        Reply::Text(text) => {
            let added = OutputItem::Message { id: item_id, status: "in_progress", role: "assistant", content: Vec::new() };
            event(&mut w, "response.output_item.added", &ItemEvent { output_index: 0, item: &added })?;
            let part = OutputText { kind: "output_text", text: "", annotations: [], logprobs: [] };
            event(&mut w, "response.content_part.added", &PartEvent { item_id, output_index: 0, content_index: 0, part })?;
            w.begin_content();
            for piece in answer::chunks(text) {
                let d = TextDelta { item_id, output_index: 0, content_index: 0, delta: piece, logprobs: [] };
                event(&mut w, "response.output_text.delta", &d)?;
            }
            w.end_content();
            let done = TextDone { item_id, output_index: 0, content_index: 0, text, logprobs: [] };
            event(&mut w, "response.output_text.done", &done)?;
            let part = OutputText { kind: "output_text", text, annotations: [], logprobs: [] };
            event(&mut w, "response.content_part.done", &PartEvent { item_id, output_index: 0, content_index: 0, part })?;
        }
        Reply::ToolCall { name } => {
            let added = OutputItem::FunctionCall { id: item_id, call_id: ids.call.as_str(), name, arguments: "", status: "in_progress" };
            event(&mut w, "response.output_item.added", &ItemEvent { output_index: 0, item: &added })?;
            w.begin_content();
            event(&mut w, "response.function_call_arguments.delta", &ArgsDelta { item_id, output_index: 0, delta: "{}" })?;
            w.end_content();
            event(&mut w, "response.function_call_arguments.done", &ArgsDone { item_id, output_index: 0, arguments: "{}" })?;
        }
    }
    event(&mut w, "response.output_item.done", &ItemEvent { output_index: 0, item: &done_item[0] })?;
    if !StreamFault::omits_done(fault) {
        let kind = if a.finish == Finish::Length { "response.incomplete" } else { "response.completed" };
        let done = response_object(p, a, &ids, created_at, &done_item, true);
        event(&mut w, kind, &WithResponse { response: done })?;
    }
    Ok(stream::sse(cx.shared, w.finish(), fault, MALFORMED_RESPONSES))
}

/// Lets one closure emit event payloads of different types, each with its
/// `type` and `sequence_number`.
mod erased_serde_free {
    use serde::Serialize;

    use super::Event;
    use crate::body::SseWriter;

    pub(super) trait Payload {
        fn emit(&self, w: &mut SseWriter, kind: &str, seq: u64) -> Result<(), serde_json::Error>;
    }

    impl<T: Serialize> Payload for T {
        fn emit(&self, w: &mut SseWriter, kind: &str, seq: u64) -> Result<(), serde_json::Error> {
            w.event(Some(kind), &Event { kind, sequence_number: seq, payload: self })
        }
    }
}
