//! Anthropic routes through real HTTP.

use serde_json::{Value, json};

use crate::*;

#[tokio::test]
async fn message_stream_matches_non_stream() {
    let sim = sim().await;
    let c = client();
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "system": "be brief", "messages": [user("hello there")]});
    let resp = messages(&c, &sim, body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("request-id"));
    let full: Value = resp.json().await.unwrap();
    assert!(full["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(full["type"], "message");
    assert_eq!(full["role"], "assistant");
    assert_eq!(full["model"], "claude-sonnet-4-5");
    assert_eq!(full["stop_reason"], "end_turn");
    assert!(full["stop_sequence"].is_null());
    assert_eq!(full["content"][0]["type"], "text");
    let text = full["content"][0]["text"].as_str().unwrap().to_owned();
    let words = text.split_whitespace().count() as u64;
    assert_eq!(full["usage"]["input_tokens"], 6);
    assert_eq!(full["usage"]["output_tokens"], words);

    let mut stream = body;
    stream["stream"] = json!(true);
    let resp = messages(&c, &sim, stream).await;
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = parse_sse(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    let mut want = vec!["message_start", "content_block_start", "ping"];
    want.extend(std::iter::repeat_n("content_block_delta", words as usize));
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, want);
    for e in &events {
        assert_eq!(e.json()["type"], e.name.as_deref().unwrap(), "data type matches the event name");
    }
    assert_eq!(anthropic_text(&events), text);
    let start = events[0].json();
    assert_eq!(start["message"]["usage"]["input_tokens"], 6);
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(events[1].json()["content_block"], json!({"type": "text", "text": ""}));
    let delta = events[events.len() - 2].json();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], words);
}

/// (messages, max_tokens, stop_sequences, expected text, stop_reason, stop_sequence)
async fn check(sim: &genset_sim::SimHandle, msgs: Value, max_tokens: u64, stop: Value, want: &str, reason: &str, seq: Value) {
    let c = client();
    let mut body = json!({"model": "claude-haiku-4-5", "max_tokens": max_tokens, "messages": msgs, "stop_sequences": stop});
    let full: Value = messages(&c, sim, body.clone()).await.json().await.unwrap();
    assert_eq!(full["content"][0]["text"], want, "{body}");
    assert_eq!(full["stop_reason"], reason, "{body}");
    assert_eq!(full["stop_sequence"], seq, "{body}");
    body["stream"] = json!(true);
    let events = parse_sse(&messages(&c, sim, body.clone()).await.text().await.unwrap());
    assert_eq!(anthropic_text(&events), want, "{body}");
    let delta = events.iter().find(|e| e.name.as_deref() == Some("message_delta")).unwrap().json();
    assert_eq!(delta["delta"]["stop_reason"], reason);
    assert_eq!(delta["delta"]["stop_sequence"], seq);
    assert_eq!(delta["usage"]["output_tokens"], full["usage"]["output_tokens"]);
}

#[tokio::test]
async fn answer_rules() {
    let sim = sim().await;
    let say = |t: &str| json!([user(&format!("say:{t}"))]);
    check(&sim, say("The answer is 42"), 100, json!([]), "The answer is 42", "end_turn", Value::Null).await;
    check(&sim, say("The answer is 42"), 2, json!([]), "The answer", "max_tokens", Value::Null).await;
    check(&sim, say("The answer is 42"), 100, json!(["is", "42"]), "The answer ", "stop_sequence", json!("is")).await;
    // prefill
    let prefill = json!([user("say:The answer is 42"), {"role": "assistant", "content": "The answer"}]);
    check(&sim, prefill, 100, json!([]), " is 42", "end_turn", Value::Null).await;
    // content blocks
    let blocks = json!([{"role": "user", "content": [{"type": "text", "text": "say:from blocks"}]}]);
    check(&sim, blocks, 100, json!([]), "from blocks", "end_turn", Value::Null).await;
}

#[tokio::test]
async fn tool_use_and_count_tokens() {
    let sim = sim().await;
    let c = client();
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "tools": tools, "messages": [user("call:get_weather")]});
    let full: Value = messages(&c, &sim, body.clone()).await.json().await.unwrap();
    assert_eq!(full["stop_reason"], "tool_use");
    assert_eq!(full["content"][0]["type"], "tool_use");
    assert_eq!(full["content"][0]["name"], "get_weather");
    assert_eq!(full["content"][0]["input"], json!({}));
    assert!(full["content"][0]["id"].as_str().unwrap().starts_with("toolu_"));

    let mut stream = body;
    stream["stream"] = json!(true);
    let events = parse_sse(&messages(&c, &sim, stream).await.text().await.unwrap());
    assert_eq!(events[1].json()["content_block"]["type"], "tool_use");
    let delta = events.iter().find(|e| e.name.as_deref() == Some("content_block_delta")).unwrap().json();
    assert_eq!(delta["delta"], json!({"type": "input_json_delta", "partial_json": "{}"}));

    let count: Value = anthropic(
        &c,
        &sim,
        "/v1/messages/count_tokens",
        &json!({"model": "claude-sonnet-4-5", "system": "be nice", "messages": [user("one two three")]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(count, json!({"input_tokens": 3 + 4}));
}

#[tokio::test]
async fn bad_requests_use_anthropic_errors() {
    let sim = sim().await;
    let c = client();
    let check_400 = |v: Value, needle: &'static str| {
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{v}");
    };
    let url = format!("{}/v1/messages", sim.base_url());
    let resp = c.post(&url).header("x-api-key", "k").body("[1,").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    check_400(resp.json().await.unwrap(), "parsing the body");
    let resp = messages(&c, &sim, json!({"model": "m", "messages": [user("x")]})).await;
    assert_eq!(resp.status(), 400);
    check_400(resp.json().await.unwrap(), "max_tokens");
    let resp = messages(&c, &sim, json!({"model": "m", "max_tokens": 5})).await;
    check_400(resp.json().await.unwrap(), "messages");
}
