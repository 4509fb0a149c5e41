//! Stream decoding, encoding, transcripts and splicing a continuation into a client's stream.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Call, Parsed, events, parse, parse_anthropic, parse_openai, wire};
use crate::{
    Api, Delta, EncoderOptions, ErrorKind, FinishReason, RequestOptions, SseFramer, StreamDecoder, StreamEncoder, Transcript,
    TranslateError, Usage, continuation_request, translate_request,
};

/// An Anthropic stream with a thinking block, a ping, text and a tool call.
pub(crate) const ANTHROPIC_STREAM: &str = r#"
event: message_start
data: {"type":"message_start","message":{"id":"msg_01TnXbPj","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants the weather."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let me check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" the weather in Paris."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}
"#;

/// An OpenAI stream with text, two tool calls and a usage chunk.
pub(crate) const OPENAI_STREAM: &str = r#"
data: {"id":"chatcmpl-AxQ1","object":"chat.completion.chunk","created":1738000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AxQ1","object":"chat.completion.chunk","created":1738000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"content":"Checking"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AxQ1","object":"chat.completion.chunk","created":1738000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"content":" Paris.\n"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AxQ1","object":"chat.completion.chunk","created":1738000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AxQ1","object":"chat.completion.chunk","created":1738000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AxQ1","object":"chat.completion.chunk","created":1738000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AxQ1","object":"chat.completion.chunk","created":1738000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AxQ1","object":"chat.completion.chunk","created":1738000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-AxQ1","object":"chat.completion.chunk","created":1738000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[],"usage":{"prompt_tokens":82,"completion_tokens":40,"total_tokens":122,"prompt_tokens_details":{"cached_tokens":64,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}}}

data: [DONE]
"#;

/// Decodes a whole stream.
fn decode_all(api: Api, stream: &[u8]) -> Result<Vec<Delta>, TranslateError> {
    let mut decoder = StreamDecoder::new(api);
    let mut out = Vec::new();
    for event in events(stream) {
        out.extend(decoder.decode(&event)?);
    }
    Ok(out)
}

fn check_decode(api: Api, stream: &str, expected: &[Delta]) {
    assert_eq!(decode_all(api, &wire(stream)).unwrap(), expected);
}

fn usage(input: Option<u64>, output: Option<u64>, cached: Option<u64>) -> Delta {
    Delta::Usage(Usage { input, output, cached })
}

fn text(t: &str) -> Delta {
    Delta::Text(t.to_owned())
}

fn tool_start(index: u32, id: &str, name: &str) -> Delta {
    Delta::ToolCallStart { index, id: id.to_owned(), name: name.to_owned() }
}

fn tool_args(index: u32, json: &str) -> Delta {
    Delta::ToolCallArgs { index, json: json.to_owned() }
}

#[test]
fn decode_real_streams() {
    check_decode(
        Api::Anthropic,
        ANTHROPIC_STREAM,
        &[
            Delta::Start { id: "msg_01TnXbPj".into(), model: "claude-sonnet-4-5-20250929".into() },
            usage(Some(472), Some(2), Some(0)),
            text("Okay, let me check"),
            text(" the weather in Paris."),
            tool_start(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
            tool_args(0, "{\"city\": \"Pa"),
            tool_args(0, "ris\"}"),
            Delta::Finish { reason: FinishReason::ToolCalls },
            usage(None, Some(89), None),
            Delta::Done,
        ],
    );
    check_decode(
        Api::OpenAi,
        OPENAI_STREAM,
        &[
            Delta::Start { id: "chatcmpl-AxQ1".into(), model: "gpt-4o-2024-08-06".into() },
            text("Checking"),
            text(" Paris.\n"),
            tool_start(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather"),
            tool_args(0, "{\"ci"),
            tool_args(0, "ty\":\"Paris\"}"),
            tool_start(1, "call_2", "get_time"),
            tool_args(1, "{}"),
            Delta::Finish { reason: FinishReason::ToolCalls },
            usage(Some(82), Some(40), Some(64)),
            Delta::Done,
        ],
    );
    check_decode(
        Api::Anthropic,
        r#"
event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"c","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}

event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}
"#,
        &[
            Delta::Start { id: "msg_1".into(), model: "c".into() },
            usage(Some(5), Some(1), None),
            Delta::Error { kind: ErrorKind::Overloaded, message: "Overloaded".into() },
        ],
    );
    check_decode(
        Api::OpenAi,
        r#"
: OPENROUTER PROCESSING

data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}
"#,
        &[Delta::Error { kind: ErrorKind::Server, message: "The server had an error while processing your request.".into() }],
    );
}

#[test]
fn malformed_events_are_errors() {
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{}}}\n\n";
    let text_block = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    let tool_block = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\n";
    let chunk = |delta: &str| format!("data: {{\"id\":\"c\",\"model\":\"g\",\"choices\":[{{\"index\":0,\"delta\":{delta}}}]}}\n\n");
    let cases: Vec<(Api, Vec<u8>, &str)> = vec![
        (Api::OpenAi, b"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hel\n\n".to_vec(), "invalid JSON"),
        (Api::OpenAi, b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\"}\n\n".to_vec(), "no `choices`"),
        (Api::OpenAi, b"data: [1, 2]\n\n".to_vec(), "not a JSON object"),
        (Api::OpenAi, b"data: {\"id\":\"c\",\"choices\":[{\"index\":1,\"delta\":{}}]}\n\n".to_vec(), "more than one choice"),
        (Api::OpenAi, chunk("{\"content\":42}").into_bytes(), "not a string"),
        (Api::OpenAi, chunk("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}").into_bytes(), "before it started"),
        (Api::OpenAi, chunk("{\"tool_calls\":[{\"index\":1,\"id\":\"x\",\"function\":{\"name\":\"f\"}}]}").into_bytes(), "before it started"),
        (Api::OpenAi, [chunk("{}"), "data: [DONE]\n\n".into(), chunk("{}")].concat().into_bytes(), "after the end"),
        (Api::OpenAi, b"data: {\"id\":\"c\",\"choices\":[],\"x\":\"\xff\"}\n\n".to_vec(), "UTF-8"),
        (Api::Anthropic, b"event: message_start\ndata: {\"type\":\"message_start\"\n\n".to_vec(), "invalid JSON"),
        (Api::Anthropic, b"event: ping\ndata: {}\n\n".to_vec(), "no `type`"),
        (Api::Anthropic, b"event: message_stop\ndata: {\"type\":\"ping\"}\n\n".to_vec(), "carries data of type"),
        (Api::Anthropic, text_block.as_bytes().to_vec(), "before `message_start`"),
        (Api::Anthropic, [start, start].concat().into_bytes(), "second `message_start`"),
        (
            Api::Anthropic,
            [start, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n"]
                .concat()
                .into_bytes(),
            "not open",
        ),
        (
            Api::Anthropic,
            [start, tool_block, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n"]
                .concat()
                .into_bytes(),
            "does not match",
        ),
        (Api::Anthropic, [start, text_block, text_block].concat().into_bytes(), "out of order"),
        (Api::Anthropic, [start, text_block, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"].concat().into_bytes(), "block open"),
        (
            Api::Anthropic,
            [start, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"name\":\"f\"}}\n\n"]
                .concat()
                .into_bytes(),
            "no `id`",
        ),
    ];
    for (api, stream, expected) in cases {
        match decode_all(api, &stream) {
            Err(e @ TranslateError::Malformed { .. }) => {
                assert!(e.to_string().contains(expected), "{e} should mention {expected:?}");
            }
            other => {
                panic!("{:?}: expected a malformed-event error mentioning {expected:?}, got {other:?}", String::from_utf8_lossy(&stream))
            }
        }
    }
    // Unknown Anthropic event types and pings are ignored, as the API asks.
    assert_eq!(
        decode_all(Api::Anthropic, b"event: ping\ndata: {\"type\":\"ping\"}\n\nevent: future\ndata: {\"type\":\"future\"}\n\n").unwrap(),
        []
    );
}

fn options(model: &str) -> EncoderOptions {
    EncoderOptions { id: None, model: model.to_owned(), created: 1_738_000_000, include_usage: true }
}

/// Encodes batches of deltas and checks the events produced (name and JSON data).
fn check_encode(api: Api, options: EncoderOptions, batches: &[Vec<Delta>], expected: &[(Option<&str>, Value)]) {
    let mut encoder = StreamEncoder::new(api, options);
    let mut out = Vec::new();
    for batch in batches {
        out.extend_from_slice(&encoder.encode(batch).unwrap());
    }
    let actual: Vec<(Option<String>, Value)> = events(&out)
        .into_iter()
        .map(|e| (e.event, if e.data == "[DONE]" { json!("[DONE]") } else { serde_json::from_str(&e.data).unwrap() }))
        .collect();
    let expected: Vec<(Option<String>, Value)> = expected.iter().map(|(n, v)| (n.map(str::to_owned), v.clone())).collect();
    assert_eq!(actual, expected, "\nactual:   {actual:#?}");
}

#[test]
fn encode_openai() {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "msg_1", "object": "chat.completion.chunk", "created": 1_738_000_000, "model": "gpt-client",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    check_encode(
        Api::OpenAi,
        options("gpt-client"),
        &[
            vec![Delta::Start { id: "msg_1".into(), model: "claude".into() }, usage(Some(100), Some(1), Some(80))],
            vec![text("Hi")],
            vec![tool_start(0, "toolu_1", "f"), tool_args(0, "{\"a\":")],
            vec![tool_args(0, "1}")],
            vec![Delta::Finish { reason: FinishReason::ToolCalls }, usage(None, Some(12), None)],
            vec![Delta::Done],
        ],
        &[
            (None, chunk(json!({"role": "assistant", "content": ""}), Value::Null)),
            (None, chunk(json!({"content": "Hi"}), Value::Null)),
            (
                None,
                chunk(
                    json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
                    Value::Null,
                ),
            ),
            (None, chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}), Value::Null)),
            (None, chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}), Value::Null)),
            (None, chunk(json!({}), json!("tool_calls"))),
            (
                None,
                json!({"id": "msg_1", "object": "chat.completion.chunk", "created": 1_738_000_000, "model": "gpt-client", "choices": [],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112, "prompt_tokens_details": {"cached_tokens": 80}}}),
            ),
            (None, json!("[DONE]")),
        ],
    );
}

#[test]
fn encode_anthropic() {
    check_encode(
        Api::Anthropic,
        EncoderOptions { id: Some("msg_genset_7".into()), ..options("claude-client") },
        &[
            vec![Delta::Start { id: "chatcmpl-1".into(), model: "gpt".into() }],
            vec![text("Hi"), text("!")],
            vec![tool_start(0, "call_1", "f"), tool_args(0, "{}")],
            vec![tool_start(1, "call_2", "g")],
            vec![Delta::Finish { reason: FinishReason::StopSequence(Some("###".into())) }],
            vec![usage(Some(100), Some(12), Some(80)), Delta::Done],
        ],
        &[
            (
                Some("message_start"),
                json!({"type": "message_start", "message": {"id": "msg_genset_7", "type": "message", "role": "assistant", "model": "claude-client",
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            ),
            (
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            ),
            (Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}})),
            (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 0})),
            (
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}}),
            ),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            ),
            (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 1})),
            (
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_2", "name": "g", "input": {}}}),
            ),
            (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 2})),
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "###"},
                "usage": {"input_tokens": 20, "cache_read_input_tokens": 80, "output_tokens": 12}}),
            ),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ],
    );
    // Usage that comes with the start goes into message_start.
    check_encode(
        Api::Anthropic,
        options("c"),
        &[vec![Delta::Start { id: "msg_9".into(), model: "m".into() }, usage(Some(10), Some(1), None)]],
        &[(
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": "msg_9", "type": "message", "role": "assistant", "model": "c",
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        )],
    );
}

#[test]
fn errors_end_the_stream_honestly() {
    for api in [Api::OpenAi, Api::Anthropic] {
        let mut encoder = StreamEncoder::new(api, options("m"));
        let mut out = encoder.encode(&[Delta::Start { id: "x".into(), model: "m".into() }, text("Half an ans")]).unwrap().to_vec();
        out.extend_from_slice(&encoder.error_event(ErrorKind::Overloaded, "upstream overloaded; the answer is incomplete"));
        assert!(encoder.is_ended());
        assert!(encoder.encode(&[Delta::Done]).is_err());
        assert!(encoder.error_event(ErrorKind::Server, "again").is_empty());
        let err = parse(api, &out).unwrap_err();
        assert!(err.starts_with("error event"), "{err}");
        let last = events(&out).pop().unwrap();
        let expected = match api {
            Api::OpenAi => {
                json!({"error": {"message": "upstream overloaded; the answer is incomplete", "type": "server_error", "param": null, "code": "overloaded"}})
            }
            Api::Anthropic => {
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "upstream overloaded; the answer is incomplete"}})
            }
        };
        assert_eq!(serde_json::from_str::<Value>(&last.data).unwrap(), expected);
        assert_eq!(last.event.as_deref(), (api == Api::Anthropic).then_some("error"));
        // An in-band upstream error delta is rendered the same way.
        let mut encoder = StreamEncoder::new(api, options("m"));
        let out = encoder.encode(&[Delta::Error { kind: ErrorKind::RateLimit, message: "slow down".into() }]).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("slow down"));
        assert!(encoder.is_ended());
    }
}

#[test]
fn encoder_refuses_deltas_out_of_order() {
    for api in [Api::OpenAi, Api::Anthropic] {
        let mut encoder = StreamEncoder::new(api, options("m"));
        encoder.encode(&[text("a"), Delta::Finish { reason: FinishReason::Stop }]).unwrap();
        assert!(encoder.encode(&[text("b")]).is_err(), "{api}: text after finish");
    }
    let mut encoder = StreamEncoder::new(Api::Anthropic, options("m"));
    assert!(encoder.encode(&[tool_start(0, "t", "f"), text("x"), tool_args(0, "{}")]).is_err());
}

/// Re-encodes a whole upstream stream for a client and parses it as that client would.
fn translate_stream(from: Api, to: Api, stream: &str) -> Parsed {
    let mut decoder = StreamDecoder::new(from);
    let mut encoder = StreamEncoder::new(to, options("client-model"));
    let mut out = Vec::new();
    for event in events(&wire(stream)) {
        out.extend_from_slice(&encoder.encode(&decoder.decode(&event).unwrap()).unwrap());
    }
    parse(to, &out).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)))
}

#[test]
fn streams_translate_both_ways() {
    let weather =
        Call { id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(), name: "get_weather".into(), arguments: "{\"city\": \"Paris\"}".into() };
    for to in [Api::OpenAi, Api::Anthropic] {
        let p = translate_stream(Api::Anthropic, to, ANTHROPIC_STREAM);
        assert_eq!((p.id.as_str(), p.model.as_str()), ("msg_01TnXbPj", "client-model"));
        assert_eq!(p.text, "Okay, let me check the weather in Paris.");
        assert_eq!(p.calls, std::slice::from_ref(&weather));
        assert_eq!(p.finish, if to == Api::OpenAi { "tool_calls" } else { "tool_use" });
        assert_eq!((p.input_tokens, p.output_tokens), (Some(472), Some(89)));
    }
    for to in [Api::OpenAi, Api::Anthropic] {
        let p = translate_stream(Api::OpenAi, to, OPENAI_STREAM);
        assert_eq!(p.id, "chatcmpl-AxQ1");
        assert_eq!(p.text, "Checking Paris.\n");
        assert_eq!(
            p.calls,
            [
                Call { id: "call_DdmO9pD3xa9XTPNJ32zg2hcA".into(), name: "get_weather".into(), arguments: "{\"city\":\"Paris\"}".into() },
                Call { id: "call_2".into(), name: "get_time".into(), arguments: "{}".into() },
            ]
        );
        assert_eq!(p.finish, if to == Api::OpenAi { "tool_calls" } else { "tool_use" });
        assert_eq!(p.output_tokens, Some(40));
        // Anthropic reports uncached input beside the cache reads.
        assert_eq!(p.input_tokens, Some(if to == Api::OpenAi { 82 } else { 18 }));
    }
}

#[test]
fn transcript_tracks_what_the_client_received() {
    let mut t = Transcript::new(Api::Anthropic);
    assert!(!t.can_continue());
    let all = events(&wire(ANTHROPIC_STREAM));
    for event in &all[..9] {
        t.observe(event).unwrap();
    }
    assert_eq!((t.id(), t.model()), (Some("msg_01TnXbPj"), Some("claude-sonnet-4-5-20250929")));
    assert_eq!(t.text(), "Okay, let me check the weather in Paris.");
    assert!(t.can_continue());
    t.observe(&all[9]).unwrap();
    t.observe(&all[10]).unwrap();
    assert!(t.tool_call_started() && !t.can_continue());
    for event in &all[11..] {
        t.observe(event).unwrap();
    }
    assert!(t.is_done());
    assert_eq!(t.finish(), Some(&FinishReason::ToolCalls));
    assert_eq!(t.usage(), Usage { input: Some(472), output: Some(89), cached: Some(0) });
    assert!(StreamEncoder::resume(&t, options("m")).is_err());
    let bad = events(b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":5}\n\n");
    let mut t = Transcript::new(Api::Anthropic);
    assert!(t.observe(&all[0]).is_ok() && t.observe(&bad[0]).is_err());
}

// ---------------------------------------------------------------- splicing

const FULL: &str = "The quick brown fox jumps over the lazy dog.";
const PIECES: [&str; 5] = ["The quick", " brown fox ", "jumps over", " the lazy", " dog."];

/// A whole upstream answer in `api`'s wire format, as an upstream would stream it.
fn upstream(api: Api, id: &str, pieces: &[&str], output_tokens: u64) -> Vec<u8> {
    let mut encoder = StreamEncoder::new(api, EncoderOptions { id: Some(id.into()), ..options("upstream-model") });
    let mut deltas = vec![Delta::Start { id: id.into(), model: "upstream-model".into() }, usage(Some(30), Some(1), None)];
    deltas.extend(pieces.iter().map(|p| text(p)));
    deltas.extend([Delta::Finish { reason: FinishReason::Stop }, usage(None, Some(output_tokens), None), Delta::Done]);
    let mut out = Vec::new();
    for delta in deltas {
        out.extend_from_slice(&encoder.encode(&[delta]).unwrap());
    }
    out
}

/// The client's stream cut after `cut` upstream events: passed through when the APIs match,
/// re-encoded otherwise.
fn first_part(client: Api, first: Api, cut: usize) -> Vec<u8> {
    let stream = upstream(first, "first-id", &PIECES, 11);
    let upstream_events = events(&stream);
    let cut = cut.min(upstream_events.len());
    if client == first {
        return upstream_events[..cut].iter().flat_map(|e| e.raw.to_vec()).collect();
    }
    let mut decoder = StreamDecoder::new(first);
    let mut encoder = StreamEncoder::new(client, options("client-model"));
    let mut out = Vec::new();
    for event in &upstream_events[..cut] {
        out.extend_from_slice(&encoder.encode(&decoder.decode(event).unwrap()).unwrap());
    }
    out
}

/// Splices a continuation from `next` into a client stream cut after `cut` events of `first`.
/// Returns `None` where the cut left nothing to continue (the stream had finished).
fn splice(client: Api, first: Api, next: Api, cut: usize) -> Option<Vec<u8>> {
    let mut client_bytes = first_part(client, first, cut);
    let mut transcript = Transcript::new(client);
    for event in events(&client_bytes) {
        transcript.observe(&event).unwrap();
    }
    if transcript.is_started() && !transcript.can_continue() {
        return None;
    }
    // The client's request, translated for the continuation's upstream, then prefilled.
    let request = match client {
        Api::OpenAi => json!({"model": "client-model", "stream": true, "max_tokens": 100,
            "messages": [{"role": "user", "content": "Say the pangram."}]}),
        Api::Anthropic => json!({"model": "client-model", "stream": true, "max_tokens": 100,
            "messages": [{"role": "user", "content": "Say the pangram."}]}),
    };
    let request = translate_request(&request, client, next, "next-model", &RequestOptions::default()).unwrap();
    let continuation = continuation_request(&request, next, transcript.text(), Some(4)).unwrap();
    let prefill = continuation.body["messages"]
        .as_array()
        .unwrap()
        .last()
        .filter(|m| m["role"] == "assistant")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(format!("{prefill}{}", continuation.trimmed), transcript.text());
    // The next upstream continues from the prefill, in pieces of its own.
    let rest = &FULL[prefill.len()..];
    let pieces: Vec<&str> = rest.as_bytes().chunks(6).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let next_stream = upstream(next, "next-id", &pieces, 7);
    // ... arriving in chunks that do not respect event boundaries.
    let mut framer = SseFramer::new();
    let mut decoder = StreamDecoder::new(next);
    let mut encoder = StreamEncoder::resume(&transcript, options("client-model")).unwrap();
    let mut splicer = continuation.splicer();
    for chunk in next_stream.chunks(37) {
        framer.push(Bytes::copy_from_slice(chunk));
        while let Some(event) = framer.pop() {
            let deltas: Vec<Delta> = decoder
                .decode(&event)
                .unwrap()
                .into_iter()
                .filter_map(|d| match d {
                    Delta::Text(t) => Some(splicer.splice(&t).to_owned()).filter(|t| !t.is_empty()).map(Delta::Text),
                    other => Some(other),
                })
                .collect();
            client_bytes.extend_from_slice(&encoder.encode(&deltas).unwrap());
        }
    }
    Some(client_bytes)
}

#[test]
fn a_continuation_splices_into_one_well_formed_stream() {
    let apis = [Api::OpenAi, Api::Anthropic];
    for client in apis {
        for first in apis {
            for next in apis {
                let mut spliced = 0;
                for cut in 0..20 {
                    let Some(stream) = splice(client, first, next, cut) else { continue };
                    spliced += 1;
                    let context =
                        || format!("client {client}, first {first}, next {next}, cut {cut}:\n{}", String::from_utf8_lossy(&stream));
                    let p = parse(client, &stream).unwrap_or_else(|e| panic!("{e}\n{}", context()));
                    assert_eq!(p.text, FULL, "{}", context());
                    assert_eq!(p.finish, if client == Api::OpenAi { "stop" } else { "end_turn" });
                    assert!(p.output_tokens.is_some());
                }
                assert!(spliced >= 5, "client {client}, first {first}, next {next}: only {spliced} cuts could continue");
            }
        }
    }
}

#[test]
fn splicing_keeps_the_anthropic_content_block_and_the_client_id() {
    // Cut right after " brown fox ": the Anthropic prefill trims the space, the splicer drops
    // it from the continuation, and the text goes on in content block 0.
    let stream = splice(Api::Anthropic, Api::Anthropic, Api::Anthropic, 4).unwrap();
    let all = events(&stream);
    let starts: Vec<&str> = all.iter().filter_map(|e| e.event.as_deref()).filter(|e| *e == "content_block_start").collect();
    assert_eq!(starts.len(), 1);
    let p = parse_anthropic(&stream).unwrap();
    assert_eq!((p.id.as_str(), p.model.as_str(), p.text.as_str()), ("first-id", "upstream-model", FULL));
    let stream = splice(Api::OpenAi, Api::Anthropic, Api::Anthropic, 6).unwrap();
    let p = parse_openai(&stream).unwrap();
    assert_eq!((p.id.as_str(), p.text.as_str()), ("first-id", FULL));
}
