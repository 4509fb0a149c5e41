//! `serve` end to end against a scripted fake engine (no model).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt;
use genset_engine::{
    BoxFuture, Embeddings, EngineError, FinishReason, GenerateEvent, GenerateRequest, Generation, ModelKind, ModelStats,
    ModelTotals, Priority, Prompt, Usage,
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
        Ok(vec![GenerateEvent::Error(EngineError::QueueTimeout {
            waited: Duration::from_secs(30),
            retry_after: Duration::from_secs(1),
        })]),
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
    let v = full_json(run(fake.clone(), LocalEndpoint::AnthropicCountTokens, json!({"messages": [{"role": "user", "content": "x"}]})).await.unwrap());
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
