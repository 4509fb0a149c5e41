//! Property tests: framing is chunking-independent, requests survive a round trip, and any
//! answer survives encode -> decode -> encode into the other API.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Call, events, parse};
use crate::{Api, Delta, EncoderOptions, FinishReason, RequestOptions, SseFramer, StreamDecoder, StreamEncoder, Usage, translate_request};

// ---------------------------------------------------------------- framing

/// A stream of events with arbitrary fields, data lines and line endings.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let line_end = prop::sample::select(vec!["\n", "\r\n", "\r"]);
    let field = prop_oneof![
        "[^\r\n]{0,12}".prop_map(|d| format!("data: {d}")),
        "[^\r\n]{0,12}".prop_map(|d| format!("data:{d}")),
        "[a-z_]{1,10}".prop_map(|e| format!("event: {e}")),
        "[^\r\n]{0,8}".prop_map(|c| format!(":{c}")),
        Just("id: 1".to_owned()),
    ];
    let event = (prop::collection::vec((field, line_end.clone()), 1..5), line_end);
    prop::collection::vec(event, 1..8).prop_map(|events| {
        let mut out = String::new();
        for (lines, end) in events {
            for (line, eol) in lines {
                out.push_str(&line);
                out.push_str(eol);
            }
            out.push_str(end);
        }
        // A lone CR at the very end waits for a possible LF: close the stream with one.
        out.push('\n');
        out.into_bytes()
    })
}

proptest! {
    #[test]
    fn framing_does_not_depend_on_chunking(stream in sse_stream(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let whole = events(&stream);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut framer = SseFramer::new();
        let mut got = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain(std::iter::once(stream.len())) {
            framer.push(Bytes::copy_from_slice(&stream[start..cut]));
            got.extend(std::iter::from_fn(|| framer.pop()));
            start = cut;
        }
        prop_assert_eq!(framer.pending_len(), 0);
        prop_assert_eq!(got, whole);
    }
}

// ---------------------------------------------------------------- requests

#[derive(Debug, Clone)]
enum Assistant {
    Text(String),
    Tools { text: String, calls: Vec<(String, Value)>, results: Vec<String> },
}

fn args() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{1,6}", prop_oneof![any::<i32>().prop_map(Value::from), ".{0,8}".prop_map(Value::from)], 0..3)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn assistant() -> impl Strategy<Value = Assistant> {
    prop_oneof![
        ".{1,20}".prop_map(Assistant::Text),
        (".{0,10}", prop::collection::vec(("[a-z_]{1,10}", args()), 1..3)).prop_flat_map(|(text, calls)| {
            let n = calls.len();
            prop::collection::vec(".{0,15}", n).prop_map(move |results| Assistant::Tools {
                text: text.clone(),
                calls: calls.clone(),
                results,
            })
        }),
    ]
}

/// An OpenAI conversation whose roles alternate (user, assistant with its tool results, ...).
fn conversation() -> impl Strategy<Value = Value> {
    (prop::option::of(".{1,20}"), prop::collection::vec((".{1,20}", prop::option::of(assistant())), 1..5)).prop_map(|(system, turns)| {
        let mut messages = Vec::new();
        if let Some(system) = system {
            messages.push(json!({"role": "system", "content": system}));
        }
        let mut next_id = 0;
        for (user, reply) in turns {
            messages.push(json!({"role": "user", "content": user}));
            match reply {
                None => break,
                Some(Assistant::Text(text)) => messages.push(json!({"role": "assistant", "content": text})),
                Some(Assistant::Tools { text, calls, results }) => {
                    let ids: Vec<String> = calls
                        .iter()
                        .map(|_| {
                            next_id += 1;
                            format!("call_{next_id}")
                        })
                        .collect();
                    let calls: Vec<Value> = calls.iter().zip(&ids).map(|((name, args), id)| {
                        json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
                    }).collect();
                    messages.push(json!({"role": "assistant", "content": text, "tool_calls": calls}));
                    for (id, result) in ids.iter().zip(results) {
                        messages.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
                    }
                }
            }
        }
        json!({"model": "gpt", "messages": messages, "max_completion_tokens": 64})
    })
}

/// What must survive: each message's role, text, tool calls (arguments as JSON) and the id a
/// tool result answers.
/// (role, text, tool calls as (id, name, arguments), tool_call_id) per message.
type Normalized = Vec<(String, String, Vec<(String, String, Value)>, String)>;

fn normalize(body: &Value) -> Normalized {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts.iter().map(|p| p["text"].as_str().unwrap()).collect(),
                _ => String::new(),
            };
            let calls = m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let f = &c["function"];
                    (
                        c["id"].as_str().unwrap().to_owned(),
                        f["name"].as_str().unwrap().to_owned(),
                        serde_json::from_str(f["arguments"].as_str().unwrap()).unwrap(),
                    )
                })
                .collect();
            (m["role"].as_str().unwrap().to_owned(), text, calls, m["tool_call_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

proptest! {
    #[test]
    fn openai_anthropic_openai_preserves_messages(body in conversation()) {
        let options = RequestOptions::default();
        let anthropic = translate_request(&body, Api::OpenAi, Api::Anthropic, "claude", &options).unwrap();
        // Anthropic's rule: roles alternate.
        let roles: Vec<&str> = anthropic["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        prop_assert!(roles.windows(2).all(|w| w[0] != w[1]), "roles {:?}", roles);
        let back = translate_request(&anthropic, Api::Anthropic, Api::OpenAi, "gpt", &options).unwrap();
        prop_assert_eq!(normalize(&back), normalize(&body));
        prop_assert_eq!(&back["max_completion_tokens"], &body["max_completion_tokens"]);
    }
}

// ---------------------------------------------------------------- streams

#[derive(Debug, Clone)]
enum Item {
    Text(String),
    Tool { name: String, args: Vec<String> },
}

fn answer() -> impl Strategy<Value = (Vec<Item>, FinishReason, u64)> {
    let item = prop_oneof![
        3 => ".{0,12}".prop_map(Item::Text),
        1 => ("[a-z_]{1,8}", prop::collection::vec(".{0,6}", 0..4)).prop_map(|(name, args)| Item::Tool { name, args }),
    ];
    let finish =
        prop_oneof![Just(FinishReason::Stop), Just(FinishReason::Length), Just(FinishReason::ToolCalls), Just(FinishReason::ContentFilter)];
    (prop::collection::vec(item, 0..8), finish, 0..10_000u64)
}

fn deltas(items: &[Item], finish: &FinishReason, output: u64) -> (Vec<Delta>, String, Vec<Call>) {
    let mut deltas =
        vec![Delta::Start { id: "up-1".into(), model: "up".into() }, Delta::Usage(Usage { input: Some(9), output: Some(1), cached: None })];
    let (mut text, mut calls) = (String::new(), Vec::new());
    for item in items {
        match item {
            Item::Text(t) => {
                text.push_str(t);
                deltas.push(Delta::Text(t.clone()));
            }
            Item::Tool { name, args } => {
                let index = u32::try_from(calls.len()).unwrap();
                let id = format!("call_{index}");
                deltas.push(Delta::ToolCallStart { index, id: id.clone(), name: name.clone() });
                deltas.extend(args.iter().map(|a| Delta::ToolCallArgs { index, json: a.clone() }));
                calls.push(Call { id, name: name.clone(), arguments: args.concat() });
            }
        }
    }
    deltas.extend([
        Delta::Finish { reason: finish.clone() },
        Delta::Usage(Usage { input: None, output: Some(output), cached: None }),
        Delta::Done,
    ]);
    (deltas, text, calls)
}

fn encode(api: Api, deltas: &[Delta]) -> Vec<u8> {
    let mut encoder = StreamEncoder::new(api, EncoderOptions { id: None, model: "client".into(), created: 0, include_usage: true });
    deltas.iter().flat_map(|d| encoder.encode(std::slice::from_ref(d)).unwrap().to_vec()).collect()
}

proptest! {
    #[test]
    fn answers_survive_encoding_and_translation((items, finish, output) in answer()) {
        let (deltas, text, calls) = deltas(&items, &finish, output);
        for first in [Api::OpenAi, Api::Anthropic] {
            let stream = encode(first, &deltas);
            let p = parse(first, &stream).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&p.text, &text);
            prop_assert_eq!(&p.calls, &calls);
            prop_assert_eq!(p.output_tokens, Some(output));
            // Decode and re-encode for a client of each API.
            for second in [Api::OpenAi, Api::Anthropic] {
                let mut decoder = StreamDecoder::new(first);
                let mut encoder = StreamEncoder::new(second, EncoderOptions { id: None, model: "c2".into(), created: 0, include_usage: true });
                let mut out = Vec::new();
                for event in events(&stream) {
                    out.extend_from_slice(&encoder.encode(&decoder.decode(&event).unwrap()).unwrap());
                }
                let q = parse(second, &out).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&q.text, &text);
                prop_assert_eq!(&q.calls, &calls);
                prop_assert_eq!(q.output_tokens, Some(output));
                let expected = if second == Api::OpenAi { finish.openai() } else { finish.anthropic() };
                prop_assert_eq!(q.finish.as_str(), expected);
            }
        }
    }
}
