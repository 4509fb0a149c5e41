//! OpenAI routes through real HTTP.

use serde_json::{Value, json};

use crate::*;

#[tokio::test]
async fn chat_stream_matches_non_stream() {
    let sim = sim().await;
    let c = client();
    let body = json!({"model": "gpt-4o", "messages": [{"role": "system", "content": "be brief"}, user("hello there")]});
    let resp = chat(&c, &sim, body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let full: Value = resp.json().await.unwrap();
    assert!(full["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(full["object"], "chat.completion");
    assert_eq!(full["model"], "gpt-4o");
    assert!(full["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(full["choices"][0]["finish_reason"], "stop");
    assert_eq!(full["choices"][0]["message"]["role"], "assistant");
    let text = full["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    let words = text.split_whitespace().count() as u64;
    assert!((12..=24).contains(&words), "{text}");
    // 2 + 1 (system) + 2 + 1 (user)
    assert_eq!(full["usage"]["prompt_tokens"], 6);
    assert_eq!(full["usage"]["completion_tokens"], words);
    assert_eq!(full["usage"]["total_tokens"], 6 + words);

    // Same request, same answer.
    let again: Value = chat(&c, &sim, body.clone()).await.json().await.unwrap();
    assert_eq!(again["choices"][0]["message"]["content"], text.as_str());

    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    stream_body["stream_options"] = json!({"include_usage": true});
    let resp = chat(&c, &sim, stream_body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = parse_sse(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert_eq!(chat_text(&events), text);
    // one chunk per word, plus the role chunk, the finish chunk, the usage chunk and [DONE]
    assert_eq!(events.len() as u64, words + 4);
    let first = events[0].json();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let finish = events[events.len() - 3].json();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["usage"].is_null());
    let usage = events[events.len() - 2].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], full["usage"]);
    let ids: std::collections::HashSet<String> =
        events[..events.len() - 1].iter().map(|e| e.json()["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1, "one id per stream");

    // Without include_usage there is no usage key at all.
    let mut plain = body;
    plain["stream"] = json!(true);
    let events = parse_sse(&chat(&c, &sim, plain).await.text().await.unwrap());
    assert!(events.iter().filter(|e| e.data != "[DONE]").all(|e| e.json().get("usage").is_none()));
    assert_eq!(chat_text(&events), text);
}

/// (messages, max_tokens, stop, expected text, expected finish_reason)
async fn check(sim: &genset_sim::SimHandle, messages: Value, max_tokens: Option<u64>, stop: Value, want: &str, finish: &str) {
    let c = client();
    let mut body = json!({"model": "gpt-4o-mini", "messages": messages, "stop": stop});
    if let Some(n) = max_tokens {
        body["max_completion_tokens"] = json!(n);
    }
    let full: Value = chat(&c, sim, body.clone()).await.json().await.unwrap();
    assert_eq!(full["choices"][0]["message"]["content"], want, "{body}");
    assert_eq!(full["choices"][0]["finish_reason"], finish, "{body}");
    assert_eq!(full["usage"]["completion_tokens"], want.split_whitespace().count() as u64);
    body["stream"] = json!(true);
    let events = parse_sse(&chat(&c, sim, body.clone()).await.text().await.unwrap());
    assert_eq!(chat_text(&events), want, "{body}");
    let finish_chunk = events.iter().rev().find(|e| e.data != "[DONE]").unwrap().json();
    assert_eq!(finish_chunk["choices"][0]["finish_reason"], finish);
}

#[tokio::test]
async fn answer_rules() {
    let sim = sim().await;
    let say = |t: &str| json!([user(&format!("say:{t}"))]);
    check(&sim, say(" Hello brave new world "), None, Value::Null, "Hello brave new world", "stop").await;
    check(&sim, say("Hello brave new world"), Some(2), Value::Null, "Hello brave", "length").await;
    check(&sim, say("Hello brave new world"), None, json!("new"), "Hello brave ", "stop").await;
    check(&sim, say("Hello brave new world"), None, json!(["zzz", "ave"]), "Hello br", "stop").await;
    // prefill on the OpenAI route too
    check(&sim, json!([user("say:The answer is 42"), {"role": "assistant", "content": "The answer"}]), None, Value::Null, " is 42", "stop")
        .await;
    check(
        &sim,
        json!([user("say:The answer is 42"), {"role": "assistant", "content": "Something else"}]),
        None,
        Value::Null,
        "The answer is 42",
        "stop",
    )
    .await;
    // content as an array of parts
    check(
        &sim,
        json!([{"role": "user", "content": [{"type": "text", "text": "say:parts work"}]}]),
        None,
        Value::Null,
        "parts work",
        "stop",
    )
    .await;
}

#[tokio::test]
async fn prefill_continues_generated_answer() {
    let sim = sim().await;
    let c = client();
    let full: Value = chat(&c, &sim, json!({"model": "m", "messages": [user("tell me")]})).await.json().await.unwrap();
    let text = full["choices"][0]["message"]["content"].as_str().unwrap();
    let prefix: String = text.split(' ').take(3).collect::<Vec<_>>().join(" ");
    let body = json!({"model": "m", "messages": [user("tell me"), {"role": "assistant", "content": prefix}]});
    let cont: Value = chat(&c, &sim, body).await.json().await.unwrap();
    let rest = cont["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(format!("{prefix}{rest}"), text);
}

#[tokio::test]
async fn tool_calls() {
    let sim = sim().await;
    let c = client();
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let body = json!({"model": "gpt-4o", "messages": [user("call:get_weather now")], "tools": tools});
    let full: Value = chat(&c, &sim, body.clone()).await.json().await.unwrap();
    let choice = &full["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"], json!({"name": "get_weather", "arguments": "{}"}));

    let mut stream = body;
    stream["stream"] = json!(true);
    let events = parse_sse(&chat(&c, &sim, stream).await.text().await.unwrap());
    let first = events[0].json();
    assert_eq!(first["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "get_weather");
    let args: String = events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .filter_map(|e| e.json()["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(args, "{}");
    assert_eq!(events[events.len() - 2].json()["choices"][0]["finish_reason"], "tool_calls");

    // Without tools, `call:` is just text.
    let plain: Value = chat(&c, &sim, json!({"model": "gpt-4o", "messages": [user("call:get_weather")]})).await.json().await.unwrap();
    assert_eq!(plain["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn legacy_completions() {
    let sim = sim().await;
    let c = client();
    let body = json!({"model": "gpt-4o", "prompt": "say:one two three four", "max_tokens": 3});
    let full: Value = openai(&c, &sim, "/v1/completions", &body).await.json().await.unwrap();
    assert!(full["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(full["object"], "text_completion");
    assert_eq!(full["choices"][0]["text"], "one two three");
    assert_eq!(full["choices"][0]["finish_reason"], "length");
    assert_eq!(full["usage"]["completion_tokens"], 3);
    let mut stream = body;
    stream["stream"] = json!(true);
    let events = parse_sse(&openai(&c, &sim, "/v1/completions", &stream).await.text().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let text: String = events[..events.len() - 1].iter().map(|e| e.json()["choices"][0]["text"].as_str().unwrap().to_owned()).collect();
    assert_eq!(text, "one two three");
}

#[tokio::test]
async fn embeddings_are_deterministic() {
    let sim = sim().await;
    let c = client();
    let body = json!({"model": "text-embedding-3-small", "input": ["hello world", "other"]});
    let a: Value = openai(&c, &sim, "/v1/embeddings", &body).await.json().await.unwrap();
    let b: Value = openai(&c, &sim, "/v1/embeddings", &body).await.json().await.unwrap();
    assert_eq!(a["data"], b["data"]);
    assert_eq!(a["object"], "list");
    assert_eq!(a["model"], "text-embedding-3-small");
    assert_eq!(a["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    let v0: Vec<f64> = serde_json::from_value(a["data"][0]["embedding"].clone()).unwrap();
    let v1: Vec<f64> = serde_json::from_value(a["data"][1]["embedding"].clone()).unwrap();
    assert_eq!(v0.len(), 8);
    assert_ne!(v0, v1);
    assert!((v0.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-5);
    assert_eq!(a["data"][1]["index"], 1);

    // A single string embeds like the same string in a list.
    let single: Value = openai(&c, &sim, "/v1/embeddings", &json!({"model": "m", "input": "hello world"})).await.json().await.unwrap();
    assert_eq!(single["data"][0]["embedding"], a["data"][0]["embedding"]);

    // base64 carries the same little-endian f32 values.
    let b64: Value = openai(&c, &sim, "/v1/embeddings", &json!({"model": "m", "input": "hello world", "encoding_format": "base64"}))
        .await
        .json()
        .await
        .unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let floats: Vec<f64> = bytes.chunks(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))).collect();
    assert_eq!(floats, v0);

    let dims: Value = openai(&c, &sim, "/v1/embeddings", &json!({"model": "m", "input": "x", "dimensions": 3})).await.json().await.unwrap();
    assert_eq!(dims["data"][0]["embedding"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn responses_api() {
    let sim = sim().await;
    let c = client();
    let body = json!({"model": "gpt-4o", "instructions": "be terse", "input": "say:hi from responses"});
    let full: Value = openai(&c, &sim, "/v1/responses", &body).await.json().await.unwrap();
    assert!(full["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(full["object"], "response");
    assert_eq!(full["status"], "completed");
    assert_eq!(full["model"], "gpt-4o");
    assert_eq!(full["output"][0]["type"], "message");
    assert_eq!(full["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(full["output"][0]["content"][0]["text"], "hi from responses");
    assert_eq!(full["usage"]["input_tokens"], 2 + 1 + 3 + 1);
    assert_eq!(full["usage"]["output_tokens"], 3);

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let events = parse_sse(&openai(&c, &sim, "/v1/responses", &stream).await.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    assert_eq!(names[..4], ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]);
    assert_eq!(names.last(), Some(&"response.completed"));
    for (i, e) in events.iter().enumerate() {
        let j = e.json();
        assert_eq!(j["type"], e.name.as_deref().unwrap());
        assert_eq!(j["sequence_number"], i as u64);
    }
    let text: String = events
        .iter()
        .filter(|e| e.name.as_deref() == Some("response.output_text.delta"))
        .map(|e| e.json()["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "hi from responses");
    let done = events.last().unwrap().json();
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], "hi from responses");
    assert_eq!(done["response"]["usage"], full["usage"]);

    // max_output_tokens makes it incomplete.
    let cut: Value = openai(&c, &sim, "/v1/responses", &json!({"model": "gpt-4o", "input": "say:a b c d", "max_output_tokens": 2}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cut["status"], "incomplete");
    assert_eq!(cut["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(cut["output"][0]["content"][0]["text"], "a b");

    // Items with content parts, and a function call.
    let tools = json!([{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]);
    let call: Value = openai(
        &c,
        &sim,
        "/v1/responses",
        &json!({"model": "gpt-4o", "tools": tools, "input": [{"role": "user", "content": [{"type": "input_text", "text": "call:lookup"}]}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(call["output"][0]["type"], "function_call");
    assert_eq!(call["output"][0]["name"], "lookup");
    assert_eq!(call["output"][0]["arguments"], "{}");
    assert_eq!(call["tools"], tools);
}

#[tokio::test]
async fn models_answer_in_the_callers_shape() {
    let sim = sim().await;
    let c = client();
    let url = format!("{}/v1/models", sim.base_url());
    let oa: Value = c.get(&url).bearer_auth("k").send().await.unwrap().json().await.unwrap();
    assert_eq!(oa["object"], "list");
    let ids: Vec<&str> = oa["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for id in ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-haiku-4-5"] {
        assert!(ids.contains(&id), "{id}");
    }
    assert_eq!(oa["data"][0]["object"], "model");

    let an: Value =
        c.get(&url).header("x-api-key", "k").header("anthropic-version", "2023-06-01").send().await.unwrap().json().await.unwrap();
    assert_eq!(an["has_more"], false);
    assert_eq!(an["data"][0]["type"], "model");
    assert!(an["data"][0]["display_name"].is_string());
    assert_eq!(an["first_id"], an["data"][0]["id"]);

    let one = c.get(format!("{url}/gpt-4o")).bearer_auth("k").send().await.unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap()["id"], "gpt-4o");
    let missing = c.get(format!("{url}/nope")).bearer_auth("k").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn bad_requests_use_openai_errors() {
    let sim = sim().await;
    let c = client();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let resp = c.post(&url).bearer_auth("k").body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("parse the JSON body"));

    let resp = chat(&c, &sim, json!({"model": "gpt-4o", "messages": []})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["param"], "messages");
    let resp = chat(&c, &sim, json!({"messages": [user("x")]})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["param"], "model");

    let resp = c.get(&url).bearer_auth("k").send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = c.post(format!("{}/v1/nope", sim.base_url())).bearer_auth("k").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("/v1/nope"));
}
