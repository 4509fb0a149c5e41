//! Request translation and continuation requests.

use serde_json::{Value, json};

use crate::{Api, MaxTokensField, RequestOptions, TranslateError, continuation_request, translate_request};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn check(from: Api, to: Api, input: Value, expected: Value) {
    let options = RequestOptions { default_max_tokens: 1024, openai_max_tokens_field: MaxTokensField::MaxCompletionTokens };
    let actual = translate_request(&input, from, to, "target-model", &options).unwrap();
    assert_eq!(actual, expected, "\nactual:   {actual:#}\nexpected: {expected:#}");
}

fn check_err(from: Api, to: Api, input: Value, field: &str) {
    match translate_request(&input, from, to, "m", &RequestOptions::default()) {
        Err(TranslateError::Unsupported { field: f, .. }) | Err(TranslateError::Invalid { path: f, .. }) => {
            assert_eq!(f, field, "for {input}");
        }
        other => panic!("expected an error on `{field}`, got {other:?}"),
    }
}

#[test]
fn openai_to_anthropic_agent_conversation() {
    check(
        Api::OpenAi,
        Api::Anthropic,
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are a weather bot."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What's the weather where this was taken?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}}
                ]},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C, cloudy"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:05"}]},
                {"role": "user", "content": "Thanks! And tomorrow?"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": true}},
                {"type": "function", "function": {"name": "get_time"}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "max_completion_tokens": 300,
            "max_tokens": 999,
            "temperature": 1.5,
            "top_p": 0.9,
            "stop": "\n\nHuman:",
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "user-42",
            "seed": 7,
            "presence_penalty": 0.5
        }),
        json!({
            "model": "target-model",
            "system": [{"type": "text", "text": "You are a weather bot."}, {"type": "text", "text": "Answer in French."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What's the weather where this was taken?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, cloudy"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "14:05"}]},
                    {"type": "text", "text": "Thanks! And tomorrow?"}
                ]}
            ],
            "tools": [
                {"name": "get_weather", "description": "Current weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
            ],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
            "max_tokens": 300,
            "temperature": 1.0,
            "top_p": 0.9,
            "stop_sequences": ["\n\nHuman:"],
            "stream": true,
            "metadata": {"user_id": "user-42"}
        }),
    );
}

#[test]
fn openai_to_anthropic_small_cases() {
    let cases = [
        // Default max_tokens, one system message as a string, stop list, merged user messages.
        (
            json!({"model": "x", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": "Anyone there?"},
                {"role": "assistant", "content": null},
                {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}
            ], "stop": ["END", "STOP"], "max_tokens": 50, "n": 1}),
            json!({"model": "target-model", "system": "Be brief.", "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Anyone there?"}]},
                {"role": "assistant", "content": "Yes."}
            ], "max_tokens": 50, "stop_sequences": ["END", "STOP"]}),
        ),
        (
            json!({"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": "required"}),
            json!({"model": "target-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1024,
                "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}}], "tool_choice": {"type": "any"}}),
        ),
        (
            json!({"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": "none", "parallel_tool_calls": false}),
            json!({"model": "target-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1024,
                "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}}], "tool_choice": {"type": "none"}}),
        ),
        // tool_choice without tools is dropped; PDFs become documents.
        (
            json!({"messages": [{"role": "user", "content": [
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
            ]}], "tool_choice": "auto", "temperature": 0.2}),
            json!({"model": "target-model", "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}
            ]}], "max_tokens": 1024, "temperature": 0.2}),
        ),
    ];
    for (input, expected) in cases {
        check(Api::OpenAi, Api::Anthropic, input, expected);
    }
}

#[test]
fn anthropic_to_openai_agent_conversation() {
    check(
        Api::Anthropic,
        Api::OpenAi,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 2048,
            "system": [{"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                    {"type": "text", "text": "Where is this? What's the weather?"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Looks like Paris.", "signature": "sig"},
                    {"type": "text", "text": "Paris. Checking."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C", "is_error": false},
                    {"type": "text", "text": "And in Lyon?"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Lyon"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": "21C"}]}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "temperature": 0.7,
            "top_k": 40,
            "stop_sequences": ["###"],
            "stream": true,
            "metadata": {"user_id": "user-42"},
            "thinking": {"type": "enabled", "budget_tokens": 1024}
        }),
        json!({
            "model": "target-model",
            "messages": [
                {"role": "system", "content": "You are a weather bot."},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                    {"type": "text", "text": "Where is this? What's the weather?"}
                ]},
                {"role": "assistant", "content": "Paris. Checking.", "tool_calls": [
                    {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"},
                {"role": "user", "content": [{"type": "text", "text": "And in Lyon?"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_02", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "21C"}]}
            ],
            "max_completion_tokens": 2048,
            "temperature": 0.7,
            "stop": ["###"],
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "user-42",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false
        }),
    );
}

#[test]
fn anthropic_to_openai_small_cases() {
    let cases = [
        (
            json!({"model": "c", "max_tokens": 10, "system": "Be brief.", "messages": [
                {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": [{"type": "document", "title": "spec.pdf",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}]}
            ], "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "tool", "name": "f"}}),
            json!({"model": "target-model", "messages": [
                {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": [{"type": "file", "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}]}
            ], "max_completion_tokens": 10,
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}}}),
        ),
        (
            json!({"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}], "stream": false, "stop_sequences": [],
                "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "auto"}}),
            json!({"model": "target-model", "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 10, "stream": false,
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": "auto"}),
        ),
    ];
    for (input, expected) in cases {
        check(Api::Anthropic, Api::OpenAi, input, expected);
    }
    let options = RequestOptions { default_max_tokens: 7, openai_max_tokens_field: MaxTokensField::MaxTokens };
    let out = translate_request(&json!({"messages": []}), Api::Anthropic, Api::OpenAi, "m", &options).unwrap();
    assert_eq!(out, json!({"model": "m", "messages": [], "max_tokens": 7}));
}

#[test]
fn same_api_only_renames_the_model() {
    let body = json!({"model": "a", "messages": [{"role": "user", "content": "Hi"}], "n": 3, "logprobs": true});
    check(
        Api::OpenAi,
        Api::OpenAi,
        body,
        json!({"model": "target-model", "messages": [{"role": "user", "content": "Hi"}], "n": 3, "logprobs": true}),
    );
}

#[test]
fn semantics_changing_fields_are_refused() {
    let user = json!([{"role": "user", "content": "Hi"}]);
    let cases = [
        (Api::OpenAi, json!({"messages": user, "n": 2}), "n"),
        (Api::OpenAi, json!({"messages": user, "logprobs": true}), "logprobs"),
        (Api::OpenAi, json!({"messages": user, "top_logprobs": 3}), "top_logprobs"),
        (Api::OpenAi, json!({"messages": user, "logit_bias": {"50256": -100}}), "logit_bias"),
        (Api::OpenAi, json!({"messages": user, "response_format": {"type": "json_object"}}), "response_format"),
        (Api::OpenAi, json!({"messages": user, "modalities": ["text", "audio"]}), "modalities"),
        (Api::OpenAi, json!({"messages": user, "functions": [{"name": "f"}]}), "functions"),
        (
            Api::OpenAi,
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
            "messages[0].content[0].type",
        ),
        (Api::OpenAi, json!({"messages": user, "tools": [{"type": "custom", "custom": {"name": "x"}}]}), "tools[0].type"),
        (
            Api::OpenAi,
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (Api::OpenAi, json!({"messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role"),
        (Api::OpenAi, json!({"messages": "hi"}), "messages"),
        (
            Api::Anthropic,
            json!({"max_tokens": 5, "messages": user, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0].type",
        ),
        (Api::Anthropic, json!({"max_tokens": 5, "messages": user, "mcp_servers": []}), "mcp_servers"),
        (
            Api::Anthropic,
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}]}),
            "messages[0].content[0].content[0].type",
        ),
        (
            Api::Anthropic,
            json!({"max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}]}),
            "messages[0].content[0].type",
        ),
    ];
    for (from, body, field) in cases {
        let to = if from == Api::OpenAi { Api::Anthropic } else { Api::OpenAi };
        check_err(from, to, body, field);
    }
}

fn check_continuation(api: Api, body: Value, partial: &str, produced: Option<u64>, expected: Value, trimmed: &str) {
    let c = continuation_request(&body, api, partial, produced).unwrap();
    assert_eq!(c.body, expected, "\nactual:   {:#}\nexpected: {expected:#}", c.body);
    assert_eq!(c.trimmed, trimmed);
}

#[test]
fn continuation_requests() {
    let user = json!({"role": "user", "content": "Write a haiku."});
    // Anthropic: a new trailing assistant message, budget reduced.
    check_continuation(
        Api::Anthropic,
        json!({"model": "c", "max_tokens": 100, "messages": [user], "stream": true}),
        "Autumn moonlight—\na worm",
        Some(12),
        json!({"model": "c", "max_tokens": 88, "stream": true, "messages": [user, {"role": "assistant", "content": "Autumn moonlight—\na worm"}]}),
        "",
    );
    // Anthropic: trailing whitespace trimmed and reported.
    check_continuation(
        Api::Anthropic,
        json!({"max_tokens": 100, "messages": [user]}),
        "Autumn moonlight— \n",
        None,
        json!({"max_tokens": 100, "messages": [user, {"role": "assistant", "content": "Autumn moonlight—"}]}),
        " \n",
    );
    // Anthropic: merged into the client's own prefill (string and blocks).
    check_continuation(
        Api::Anthropic,
        json!({"max_tokens": 100, "messages": [user, {"role": "assistant", "content": "{"}]}),
        "\"a\": 1, ",
        None,
        json!({"max_tokens": 100, "messages": [user, {"role": "assistant", "content": "{\"a\": 1,"}]}),
        " ",
    );
    check_continuation(
        Api::Anthropic,
        json!({"max_tokens": 100, "messages": [user, {"role": "assistant", "content": [{"type": "text", "text": "Sure:"}]}]}),
        " an old pond",
        None,
        json!({"max_tokens": 100, "messages": [user, {"role": "assistant", "content": [{"type": "text", "text": "Sure: an old pond"}]}]}),
        "",
    );
    // Anthropic: an all-whitespace partial adds no (empty, rejected) prefill.
    check_continuation(
        Api::Anthropic,
        json!({"max_tokens": 5, "messages": [user]}),
        "\n\n",
        None,
        json!({"max_tokens": 5, "messages": [user]}),
        "\n\n",
    );
    // OpenAI: whitespace kept, whichever budget field is set is reduced.
    check_continuation(
        Api::OpenAi,
        json!({"model": "g", "max_completion_tokens": 100, "messages": [user]}),
        "Autumn moonlight ",
        Some(30),
        json!({"model": "g", "max_completion_tokens": 70, "messages": [user, {"role": "assistant", "content": "Autumn moonlight "}]}),
        "",
    );
    // OpenAI: an assistant message with tool calls is history, not a prefill.
    let calls = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
    check_continuation(
        Api::OpenAi,
        json!({"max_tokens": 10, "messages": [user, calls]}),
        "x",
        Some(1),
        json!({"max_tokens": 9, "messages": [user, calls, {"role": "assistant", "content": "x"}]}),
        "",
    );
    assert_eq!(
        continuation_request(&json!({"max_tokens": 10, "messages": []}), Api::Anthropic, "x", Some(10)),
        Err(TranslateError::BudgetExhausted { max_tokens: 10 })
    );
}

#[test]
fn splicer_drops_only_matching_whitespace() {
    let body = json!({"max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]});
    let cases: [(&str, &[&str], &str); 5] = [
        ("Hello ", &[" world"], "world"),
        ("Hello\n\n", &["\n", "\nWorld"], "World"),
        ("Hello ", &["world"], "world"),
        ("Hello\n\n", &["\nWorld", "\n"], "World\n"),
        ("Hello ", &["", " ", " x"], " x"),
    ];
    for (partial, deltas, expected) in cases {
        let c = continuation_request(&body, Api::Anthropic, partial, None).unwrap();
        let mut splicer = c.splicer();
        let out: String = deltas.iter().map(|d| splicer.splice(d)).collect();
        assert_eq!(out, expected, "partial {partial:?}, deltas {deltas:?}");
    }
}
