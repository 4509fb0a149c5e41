//! `serve` end to end against a scripted fake engine (no model).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt;
use genset_engine::{
    BoxFuture, Embeddings, EngineError, FinishReason, GenerateEvent, GenerateRequest, Generation, ModelKind, ModelStats, ModelTotals,
    Priority, Prompt, Usage,
};
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::*;
use crate::api::error::ErrorKind;

/// Answers each submission with the next scripted outcome and remembers the requests.
struct Fake {
    script: Mutex<VecDeque<Result<Vec<GenerateEvent>, EngineError>>>,
    seen: Mutex<Vec<GenerateRequest>>,
}

impl Fake {
    fn new(script: Vec<Result<Vec<GenerateEvent>, EngineError>>) -> Arc<Self> {
        Arc::new(Fake { script: Mutex::new(script.into()), seen: Mutex::new(vec![]) })
    }
}

impl Engine for Fake {
    fn name(&self) -> &str {
        "tiny"
    }
    fn kind(&self) -> ModelKind {
        ModelKind::Gguf
    }
    fn submit(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        self.seen.lock().push(request);
        let events = self.script.lock().pop_front().unwrap_or_else(|| Err(EngineError::Internal("no script".into())))?;
        let (tx, g) = Generation::channel();
        for e in events {
            let _ = tx.send(e);
        }
        Ok(g)
    }
    fn embed(&self, input: Vec<String>) -> BoxFuture<'_, Result<Embeddings, EngineError>> {
        Box::pin(async move { Ok(Embeddings { vectors: input.iter().map(|s| vec![s.len() as f32, 0.5]).collect(), prompt_tokens: 4 }) })
    }
    fn count_tokens(&self, prompt: &Prompt) -> Result<usize, EngineError> {
        match prompt {
            Prompt::Chat { messages, .. } => Ok(messages.len() * 10),
            Prompt::Text(t) => Ok(t.len()),
        }
    }
    fn stats(&self) -> ModelStats {
        ModelStats {
            name: "tiny".into(),
            kind: ModelKind::Gguf,
            file_size: 0,
            memory_bytes: 0,
            context: 1024,
            parallel: 1,
            active_slots: 0,
            used_slots: 0,
            queue_depth: 0,
            queue_capacity: 0,
            decode_tokens_per_second: 0.0,
            prompt_tokens_per_second: 0.0,
            totals: ModelTotals::default(),
        }
    }
}

fn usage() -> Usage {
    Usage { prompt_tokens: 12, cached_tokens: 2, completion_tokens: 3 }
}

fn ok_script(finish: FinishReason) -> Result<Vec<GenerateEvent>, EngineError> {
    Ok(vec![
        GenerateEvent::Started { prompt_tokens: 12, cached_tokens: 2 },
        GenerateEvent::Text("Hel".into()),
        GenerateEvent::Text("lo".into()),
        GenerateEvent::Done { finish, usage: usage() },
    ])
}

fn failing_midway() -> Result<Vec<GenerateEvent>, EngineError> {
    Ok(vec![
        GenerateEvent::Started { prompt_tokens: 12, cached_tokens: 0 },
        GenerateEvent::Text("Hel".into()),
        GenerateEvent::Error(EngineError::Internal("decode failed".into())),
    ])
}

async fn run(engine: Arc<Fake>, ep: LocalEndpoint, body: Value) -> Result<LocalResponse, ApiError> {
    serve(engine, ep, &body, Priority::Live).await
}

fn full_json(r: LocalResponse) -> Value {
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, JSON);
    match r.body {
        LocalBody::Full(b) => serde_json::from_slice(&b).unwrap(),
        LocalBody::Stream(_) => panic!("expected a full body"),
    }
}

/// The (event name, data) pairs of a streamed body.
async fn sse(r: LocalResponse) -> Vec<(Option<String>, String)> {
    assert_eq!(r.content_type, EVENT_STREAM);
    let LocalBody::Stream(mut s) = r.body else { panic!("expected a stream") };
    let mut all = Vec::new();
    while let Some(b) = s.next().await {
        all.extend_from_slice(&b.unwrap());
    }
    let text = String::from_utf8(all).unwrap();
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d.to_owned();
                }
            }
            (name, data)
        })
        .collect()
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "local/tiny", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
           "stream_options": {"include_usage": true}, "max_tokens": 5})
}

fn anthropic_body(stream: bool) -> Value {
    json!({"model": "claude-x", "max_tokens": 5, "system": "sys", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
}

#[tokio::test]
async fn openai_chat_full() {
    let fake = Fake::new(vec![ok_script(FinishReason::Length)]);
    let v = full_json(run(fake.clone(), LocalEndpoint::OpenAiChat, chat_body(false)).await.unwrap());
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "tiny");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["content"], "Hello");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(fake.seen.lock()[0].sampling.max_tokens, Some(5));
}

#[tokio::test]
async fn openai_chat_stream() {
    let fake = Fake::new(vec![ok_script(FinishReason::StopSequence("x".into()))]);
    let evs = sse(run(fake, LocalEndpoint::OpenAiChat, chat_body(true)).await.unwrap()).await;
    let datas: Vec<&str> = evs.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(datas.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = datas[..datas.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello");
    let fin = chunks.iter().find(|c| !c["choices"][0]["finish_reason"].is_null()).unwrap();
    assert_eq!(fin["choices"][0]["finish_reason"], "stop");
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"]["total_tokens"], 15);
    assert!(chunks.iter().all(|c| c["model"] == "tiny" && c["id"] == chunks[0]["id"]));
}

#[tokio::test]
async fn an_error_midstream_ends_the_stream_honestly() {
    let fake = Fake::new(vec![failing_midway()]);
    let evs = sse(run(fake, LocalEndpoint::OpenAiChat, chat_body(true)).await.unwrap()).await;
    let last: Value = serde_json::from_str(&evs.last().unwrap().1).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
    assert!(evs.iter().all(|e| e.1 != "[DONE]"));
    assert!(evs.iter().all(|e| !e.1.contains("finish_reason\":\"stop")));

    let fake = Fake::new(vec![failing_midway()]);
    let evs = sse(run(fake, LocalEndpoint::AnthropicMessages, anthropic_body(true)).await.unwrap()).await;
    let (name, data) = evs.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "api_error");
    assert!(evs.iter().all(|e| e.0.as_deref() != Some("message_stop")));
}

#[tokio::test]
async fn an_error_in_a_full_answer_is_an_error_response() {
    let fake = Fake::new(vec![failing_midway()]);
    let e = run(fake, LocalEndpoint::OpenAiChat, chat_body(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
}

#[tokio::test]
async fn errors_before_the_first_byte_are_returned() {
    let fake = Fake::new(vec![
        Err(EngineError::Overloaded { retry_after: Duration::from_secs(3) }),
        Ok(vec![GenerateEvent::Error(EngineError::QueueTimeout { waited: Duration::from_secs(30), retry_after: Duration::from_secs(1) })]),
        Err(EngineError::ContextTooLong { prompt_tokens: 5000, context: 4096 }),
        Err(EngineError::Unsupported("tools: the model's chat template has no tool support".into())),
    ]);
    let e = run(fake.clone(), LocalEndpoint::OpenAiChat, chat_body(true)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert_eq!(e.status(), 503);
    assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
    let e = run(fake.clone(), LocalEndpoint::AnthropicMessages, anthropic_body(true)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert!(e.retry_after.is_some());
    let e = run(fake.clone(), LocalEndpoint::OpenAiChat, chat_body(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert_eq!(e.code, Some("context_length_exceeded"));
    assert!(e.message.contains("4096") && e.message.contains("5000"), "{}", e.message);
    let e = run(fake, LocalEndpoint::OpenAiChat, chat_body(false)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(e.message.contains("tiny") && e.message.contains("tools"), "{}", e.message);
}

#[tokio::test]
async fn anthropic_full_and_stream() {
    let fake = Fake::new(vec![ok_script(FinishReason::Length), ok_script(FinishReason::StopSequence("##".into()))]);
    let v = full_json(run(fake.clone(), LocalEndpoint::AnthropicMessages, anthropic_body(false)).await.unwrap());
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "tiny");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["content"][0]["text"], "Hello");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 3);
    {
        let seen = fake.seen.lock();
        let Prompt::Chat { messages, .. } = &seen[0].prompt else { panic!() };
        assert_eq!(messages[0].role, "system");
    }

    let evs = sse(run(fake, LocalEndpoint::AnthropicMessages, anthropic_body(true)).await.unwrap()).await;
    let names: Vec<&str> = evs.iter().map(|e| e.0.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let delta: Value = serde_json::from_str(&evs[6].1).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "stop_sequence");
    assert_eq!(delta["delta"]["stop_sequence"], "##");
}

#[tokio::test]
async fn completions_stream_and_full() {
    let fake = Fake::new(vec![ok_script(FinishReason::Stop), ok_script(FinishReason::Stop)]);
    let body = json!({"model": "local/tiny", "prompt": "Once"});
    let v = full_json(run(fake.clone(), LocalEndpoint::OpenAiCompletions, body).await.unwrap());
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "Hello");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let evs = sse(run(fake, LocalEndpoint::OpenAiCompletions, json!({"prompt": "Once", "stream": true})).await.unwrap()).await;
    assert_eq!(evs.last().unwrap().1, "[DONE]");
    let first: Value = serde_json::from_str(&evs[0].1).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], "Hel");
}

#[tokio::test]
async fn count_tokens_and_embeddings() {
    let fake = Fake::new(vec![]);
    let v = full_json(
        run(fake.clone(), LocalEndpoint::AnthropicCountTokens, json!({"messages": [{"role": "user", "content": "x"}]})).await.unwrap(),
    );
    assert_eq!(v, json!({"input_tokens": 10}));
    let v = full_json(run(fake, LocalEndpoint::OpenAiEmbeddings, json!({"input": ["ab", "c"]})).await.unwrap());
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["embedding"], json!([1.0, 0.5]));
    assert_eq!(v["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn bad_requests_are_refused_before_the_engine() {
    let fake = Fake::new(vec![]);
    let e = run(fake.clone(), LocalEndpoint::OpenAiChat, json!({"messages": "nope"})).await.unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(fake.seen.lock().is_empty());
}

#[test]
fn paths_names_and_labels() {
    assert_eq!(LocalEndpoint::from_path("/v1/messages"), Some(LocalEndpoint::AnthropicMessages));
    assert_eq!(LocalEndpoint::from_path("/v1/models"), None);
    assert_eq!(explicit_model("local/gemma"), Some("gemma"));
    assert_eq!(explicit_model("gpt-4o"), None);
    assert_eq!(explicit_model("local/"), None);
    let fake = Fake::new(vec![]);
    assert_eq!(served_by(fake.as_ref()), "local:tiny");
    assert_eq!(finish_label(&FinishReason::Length), "length");
}

fn scripted(texts: &[&str]) -> Result<Vec<GenerateEvent>, EngineError> {
    let mut evs = vec![GenerateEvent::Started { prompt_tokens: 12, cached_tokens: 2 }];
    evs.extend(texts.iter().map(|t| GenerateEvent::Text((*t).to_owned())));
    evs.push(GenerateEvent::Done { finish: FinishReason::Stop, usage: usage() });
    Ok(evs)
}

const CALL: [&str; 3] = ["{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": ", "\"Paris\"}}"];

fn weather_tool_openai() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

fn tool_chat(stream: bool, choice: Value) -> Value {
    let mut b = chat_body(stream);
    b["tools"] = json!([weather_tool_openai()]);
    b["tool_choice"] = choice;
    b
}

fn tool_messages(stream: bool, choice: Value) -> Value {
    let mut b = anthropic_body(stream);
    b["tools"] =
        json!([{"name": "get_weather", "description": "weather", "input_schema": weather_tool_openai()["function"]["parameters"]}]);
    b["tool_choice"] = choice;
    b
}

#[tokio::test]
async fn openai_tool_calls_full_and_stream() {
    let fake = Fake::new(vec![scripted(&CALL), scripted(&CALL), scripted(&["Sunny", " today."])]);
    let v = full_json(run(fake.clone(), LocalEndpoint::OpenAiChat, tool_chat(false, json!("required"))).await.unwrap());
    let m = &v["choices"][0]["message"];
    assert!(m["content"].is_null(), "{v}");
    let call = &m["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    // The forced choice reached the engine as a grammar for a call of that tool.
    match &fake.seen.lock()[0].sampling.grammar {
        Some(genset_engine::GrammarSpec::ToolCall(schema)) => assert_eq!(schema["properties"]["name"]["const"], "get_weather"),
        other => panic!("{other:?}"),
    }

    let evs = sse(run(fake.clone(), LocalEndpoint::OpenAiChat, tool_chat(true, json!("auto"))).await.unwrap()).await;
    let chunks: Vec<Value> = evs.iter().filter(|e| e.1 != "[DONE]").map(|e| serde_json::from_str(&e.1).unwrap()).collect();
    // No text leaks as content before the call is known.
    assert!(chunks.iter().all(|c| c["choices"][0]["delta"]["content"].as_str().unwrap_or("").is_empty()), "{evs:?}");
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).collect();
    assert_eq!(deltas[0][0]["function"]["name"], "get_weather");
    assert!(deltas[0][0]["id"].as_str().unwrap().starts_with("call_"));
    let args: String = deltas.iter().filter_map(|d| d[0]["function"]["arguments"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"city": "Paris"}));
    let fin: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(fin, [&json!("tool_calls")]);
    assert!(fake.seen.lock()[1].sampling.grammar.is_none(), "auto needs no grammar");

    // Plain text with tools offered streams as text, as it comes.
    let evs = sse(run(fake, LocalEndpoint::OpenAiChat, tool_chat(true, json!("auto"))).await.unwrap()).await;
    let contents: Vec<String> = evs
        .iter()
        .filter(|e| e.1 != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(&e.1).unwrap()["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(contents, ["Sunny", " today."]);
    assert!(evs.iter().any(|e| e.1.contains("\"finish_reason\":\"stop\"")));
}

#[tokio::test]
async fn anthropic_tool_use_full_and_stream() {
    let fake = Fake::new(vec![
        scripted(&CALL),
        scripted(&["Let me check.\n<tool_call>", CALL[0], CALL[1], CALL[2], "</tool_call>"]),
        scripted(&["Hi"]),
    ]);
    let v = full_json(
        run(fake.clone(), LocalEndpoint::AnthropicMessages, tool_messages(false, json!({"type": "tool", "name": "get_weather"})))
            .await
            .unwrap(),
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"].as_array().unwrap().len(), 1, "{v}");
    let block = &v["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "Paris"}));
    assert!(matches!(fake.seen.lock()[0].sampling.grammar, Some(genset_engine::GrammarSpec::ToolCall(_))));

    // Streaming, auto: the text before the tag streams, then the call as a tool_use block.
    let evs = sse(run(fake.clone(), LocalEndpoint::AnthropicMessages, tool_messages(true, json!({"type": "auto"}))).await.unwrap()).await;
    let v: Vec<Value> = evs.iter().map(|e| serde_json::from_str(&e.1).unwrap()).collect();
    let kinds: Vec<&str> = v.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(v[3]["delta"], json!({"type": "text_delta", "text": "Let me check.\n"}));
    assert_eq!(v[5]["index"], 1);
    assert_eq!(v[5]["content_block"]["type"], "tool_use");
    assert_eq!(v[5]["content_block"]["name"], "get_weather");
    let input: Value = serde_json::from_str(v[6]["delta"]["partial_json"].as_str().unwrap()).unwrap();
    assert_eq!(input, json!({"city": "Paris"}));
    assert_eq!(v[8]["delta"]["stop_reason"], "tool_use");

    // Text only, tools offered: one text block, end_turn.
    let evs = sse(run(fake, LocalEndpoint::AnthropicMessages, tool_messages(true, json!({"type": "auto"}))).await.unwrap()).await;
    let v: Vec<Value> = evs.iter().map(|e| serde_json::from_str(&e.1).unwrap()).collect();
    assert_eq!(v.iter().filter(|e| e["type"] == "content_block_start").count(), 1);
    assert!(v.iter().any(|e| e["delta"]["text"] == "Hi"));
    assert!(v.iter().any(|e| e["delta"]["stop_reason"] == "end_turn"));
}

#[tokio::test]
async fn a_forced_call_cut_short_is_not_passed_off_as_a_call() {
    let cut = Ok(vec![
        GenerateEvent::Started { prompt_tokens: 12, cached_tokens: 0 },
        GenerateEvent::Text(CALL[0].into()),
        GenerateEvent::Done { finish: FinishReason::Length, usage: usage() },
    ]);
    let fake = Fake::new(vec![cut]);
    let v = full_json(run(fake, LocalEndpoint::OpenAiChat, tool_chat(false, json!("required"))).await.unwrap());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["choices"][0]["message"]["content"], CALL[0]);
}
