//! Non-streamed responses, error bodies and finish reasons.

use serde_json::{Value, json};

use crate::{Api, ErrorKind, FinishReason, translate_error, translate_response};

fn check(from: Api, to: Api, input: Value, expected: Value) {
    let actual = translate_response(&input, from, to, "client-model", 1_700_000_000).unwrap();
    assert_eq!(actual, expected, "\nactual:   {actual:#}\nexpected: {expected:#}");
}

#[test]
fn openai_response_to_anthropic() {
    check(
        Api::OpenAi,
        Api::Anthropic,
        json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion", "created": 1741569952,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Checking.", "refusal": null,
                "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 17, "total_tokens": 137,
                "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_fc9f1d7035"
        }),
        json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "type": "message", "role": "assistant", "model": "client-model",
            "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 17, "cache_read_input_tokens": 100}
        }),
    );
    check(
        Api::OpenAi,
        Api::Anthropic,
        json!({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Once upon"}, "finish_reason": "length"}]}),
        json!({"id": "x", "type": "message", "role": "assistant", "model": "client-model", "content": [{"type": "text", "text": "Once upon"}],
            "stop_reason": "max_tokens", "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}),
    );
}

#[test]
fn anthropic_response_to_openai() {
    check(
        Api::Anthropic,
        Api::OpenAi,
        json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me look"}, {"type": "text", "text": " that up."},
                {"type": "tool_use", "id": "toolu_01", "name": "search", "input": {"n": 3, "q": "rust sse"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 40}
        }),
        json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "object": "chat.completion", "created": 1_700_000_000, "model": "client-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Let me look that up.", "refusal": null,
                "tool_calls": [{"id": "toolu_01", "type": "function", "function": {"name": "search", "arguments": "{\"n\":3,\"q\":\"rust sse\"}"}}]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 117, "completion_tokens": 40, "total_tokens": 157, "prompt_tokens_details": {"cached_tokens": 100}}
        }),
    );
    check(
        Api::Anthropic,
        Api::OpenAi,
        json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "c", "content": [{"type": "text", "text": "1, 2, 3"}],
            "stop_reason": "stop_sequence", "stop_sequence": ", 4", "usage": {"input_tokens": 3, "output_tokens": 5}}),
        json!({"id": "msg_2", "object": "chat.completion", "created": 1_700_000_000, "model": "client-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "1, 2, 3", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}),
    );
}

#[test]
fn responses_that_cannot_be_translated() {
    let two = json!({"choices": [{"index": 0, "message": {"content": "a"}}, {"index": 1, "message": {"content": "b"}}]});
    assert!(translate_response(&two, Api::OpenAi, Api::Anthropic, "m", 0).is_err());
    let bad_args =
        json!({"choices": [{"index": 0, "message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1"}}]}}]});
    assert!(translate_response(&bad_args, Api::OpenAi, Api::Anthropic, "m", 0).is_err());
    let server_tool = json!({"content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]});
    assert!(translate_response(&server_tool, Api::Anthropic, Api::OpenAi, "m", 0).is_err());
}

#[test]
fn finish_reasons_map_both_ways() {
    let table = [
        ("stop", "end_turn", FinishReason::Stop),
        ("length", "max_tokens", FinishReason::Length),
        ("tool_calls", "tool_use", FinishReason::ToolCalls),
        ("content_filter", "refusal", FinishReason::ContentFilter),
    ];
    for (openai, anthropic, neutral) in table {
        assert_eq!(FinishReason::from_openai(openai), neutral);
        assert_eq!(FinishReason::from_anthropic(anthropic, None), neutral);
        assert_eq!(neutral.openai(), openai);
        assert_eq!(neutral.anthropic(), anthropic);
    }
    let seq = FinishReason::from_anthropic("stop_sequence", Some("###"));
    assert_eq!((seq.openai(), seq.anthropic(), seq.stop_sequence()), ("stop", "stop_sequence", Some("###")));
    assert_eq!(FinishReason::from_anthropic("pause_turn", None).openai(), "stop");
    assert_eq!(FinishReason::from_anthropic("model_context_window_exceeded", None), FinishReason::Length);
}

fn check_error(status: u16, body: &str, from: Api, to: Api, expected: Value) {
    let actual = translate_error(status, body.as_bytes(), from, to);
    assert_eq!(actual, expected, "status {status}, body {body}");
}

#[test]
fn errors_are_rerendered() {
    let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
    check_error(
        529,
        overloaded,
        Api::Anthropic,
        Api::OpenAi,
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}}),
    );
    check_error(
        529,
        overloaded,
        Api::Anthropic,
        Api::Anthropic,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"}),
    );
    let rate = r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    check_error(
        429,
        rate,
        Api::OpenAi,
        Api::Anthropic,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached for gpt-4o"}}),
    );
    let key = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    check_error(
        401,
        key,
        Api::OpenAi,
        Api::Anthropic,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "Incorrect API key provided"}}),
    );
    let ctx = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
    check_error(
        400,
        ctx,
        Api::Anthropic,
        Api::OpenAi,
        json!({"error": {"message": "prompt is too long: 210000 tokens > 200000 maximum", "type": "invalid_request_error", "param": null, "code": null}}),
    );
    // Not JSON at all: the text is kept, the status classifies.
    check_error(
        502,
        "<html><body>Bad Gateway</body></html>",
        Api::OpenAi,
        Api::Anthropic,
        json!({"type": "error", "error": {"type": "api_error", "message": "<html><body>Bad Gateway</body></html>"}}),
    );
    check_error(
        503,
        "",
        Api::OpenAi,
        Api::OpenAi,
        json!({"error": {"message": "upstream returned HTTP 503", "type": "server_error", "param": null, "code": "overloaded"}}),
    );
    check_error(
        500,
        r#"{"detail":"boom"}"#,
        Api::OpenAi,
        Api::Anthropic,
        json!({"type": "error", "error": {"type": "api_error", "message": "upstream returned HTTP 500"}}),
    );
    check_error(
        400,
        r#"{"error":"bad prompt"}"#,
        Api::OpenAi,
        Api::Anthropic,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad prompt"}}),
    );
    assert_eq!(ErrorKind::Overloaded.status(Api::OpenAi), 503);
    assert_eq!(ErrorKind::Overloaded.status(Api::Anthropic), 529);
    assert_eq!(ErrorKind::classify(400, Some("not_found_error")), ErrorKind::NotFound);
}
