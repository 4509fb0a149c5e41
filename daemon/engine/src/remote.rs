//! `kind = "openai-compatible"`: an external server (vLLM, llama-server, Ollama) behind the
//! same [`Engine`] trait, streamed over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::{
    BoxFuture, Embeddings, Engine, EngineError, FinishReason, GenerateEvent, GenerateRequest, Generation, GrammarSpec, ModelConfig,
    ModelKind, ModelStats, ModelTotals, Prompt, Usage,
};

/// An API key that never prints.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("*****")
    }
}

#[derive(Default)]
struct RemoteState {
    totals: ModelTotals,
    /// (finished at, completion tokens, duration) of recent requests.
    recent: Vec<(Instant, usize, Duration)>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    remote_model: String,
    base_url: String,
    api_key: Option<Secret>,
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    running: AtomicUsize,
    parallel: usize,
    max_queue: usize,
    max_wait: Duration,
    context: usize,
}

pub(crate) struct RemoteEngine {
    inner: Arc<Inner>,
    state: Arc<Mutex<RemoteState>>,
}

const ERROR_BODY_LIMIT: usize = 16 * 1024;
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl RemoteEngine {
    pub(crate) fn new(cfg: &ModelConfig) -> Result<Self, EngineError> {
        let base_url = cfg
            .base_url
            .as_deref()
            .ok_or_else(|| EngineError::InvalidRequest("base_url: required".into()))?
            .trim_end_matches('/')
            .to_owned();
        let api_key = match &cfg.api_key_env {
            None => None,
            Some(var) => Some(Secret(
                std::env::var(var)
                    .map_err(|_| EngineError::Unavailable(format!("api_key_env: the environment variable {var} is not set")))?,
            )),
        };
        // reqwest is built with `rustls-no-provider`: make sure a provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| EngineError::Internal(format!("http client: {e}")))?;
        Ok(RemoteEngine {
            inner: Arc::new(Inner {
                name: cfg.name.clone(),
                remote_model: cfg.remote_model.clone().unwrap_or_else(|| cfg.name.clone()),
                base_url,
                api_key,
                client,
                permits: Arc::new(Semaphore::new(cfg.parallel as usize)),
                waiting: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                parallel: cfg.parallel as usize,
                max_queue: cfg.max_queue as usize,
                max_wait: cfg.max_wait,
                context: cfg.context as usize,
            }),
            state: Arc::new(Mutex::new(RemoteState::default())),
        })
    }
}

impl Inner {
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.post_url(format!("{}{path}", self.base_url), body)
    }

    fn post_url(&self, url: String, body: &Value) -> reqwest::RequestBuilder {
        let mut rb = self.client.post(url).json(body);
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(&k.0);
        }
        rb
    }

    /// The server's root: `base_url` without its trailing `/v1`, where llama-server and vLLM
    /// serve `/tokenize` and `/apply-template`.
    fn root(&self) -> &str {
        self.base_url.strip_suffix("/v1").unwrap_or(&self.base_url)
    }

    /// POST `{root}{path}`: `Ok(None)` when the server has no such endpoint (404, 405).
    async fn post_root(&self, path: &str, body: &Value) -> Result<Option<Value>, EngineError> {
        let url = format!("{}{path}", self.root());
        let resp = self.post_url(url.clone(), body).send().await.map_err(|e| EngineError::Unavailable(format!("{url}: {e}")))?;
        if matches!(resp.status().as_u16(), 404 | 405) {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(read_error(resp).await);
        }
        resp.json::<Value>()
            .await
            .map(Some)
            .map_err(|e| EngineError::Upstream { status: 200, message: format!("{url} answered with something that is not JSON: {e}") })
    }

    /// Count a prompt's tokens with the server's own tokenizer and chat template:
    /// llama-server renders the chat with `/apply-template` and counts the text with
    /// `/tokenize`; vLLM's `/tokenize` takes the messages. A server with neither (Ollama, a
    /// hosted API) cannot count, and says so.
    async fn count_tokens(&self, prompt: &Prompt) -> Result<usize, EngineError> {
        let no_tokenizer = || {
            EngineError::Unsupported(format!(
                "count_tokens: the model server at {} has no /tokenize endpoint (llama-server and vLLM have one)",
                self.root()
            ))
        };
        let answer = match prompt {
            Prompt::Text(text) => {
                // vLLM reads `prompt`, llama-server `content`.
                let body = json!({"model": self.remote_model, "prompt": text, "content": text, "add_special": true});
                self.post_root("/tokenize", &body).await?.ok_or_else(no_tokenizer)?
            }
            Prompt::Chat { messages, tools } => {
                let mut rendered = json!({"messages": messages});
                if !tools.is_empty() {
                    rendered["tools"] = json!(tools);
                }
                if let Some(v) = self.post_root("/apply-template", &rendered).await? {
                    let text = v["prompt"].as_str().ok_or_else(|| EngineError::Upstream {
                        status: 200,
                        message: "/apply-template answered without a prompt".into(),
                    })?;
                    let body = json!({"content": text, "add_special": true, "parse_special": true});
                    self.post_root("/tokenize", &body).await?.ok_or_else(no_tokenizer)?
                } else {
                    // A trailing assistant turn is continued, not answered.
                    let prefill = messages.last().is_some_and(|m| m.role == "assistant");
                    let mut body = json!({
                        "model": self.remote_model,
                        "messages": messages,
                        "add_generation_prompt": !prefill,
                        "continue_final_message": prefill,
                    });
                    if !tools.is_empty() {
                        body["tools"] = json!(tools);
                    }
                    let v = self.post_root("/tokenize", &body).await?.ok_or_else(no_tokenizer)?;
                    // An old llama-server ignores messages and counts nothing.
                    if v.get("count").is_none() && v["tokens"].as_array().is_some_and(Vec::is_empty) {
                        return Err(EngineError::Unsupported(format!(
                            "count_tokens: the model server at {} can tokenize text but neither renders chat messages (/apply-template) nor tokenizes them",
                            self.root()
                        )));
                    }
                    v
                }
            }
        };
        answer["count"]
            .as_u64()
            .map(|n| n as usize)
            .or_else(|| answer["tokens"].as_array().map(Vec::len))
            .ok_or_else(|| EngineError::Upstream { status: 200, message: "/tokenize answered without tokens or a count".into() })
    }
}

/// The request body for the remote server.
pub(crate) fn request_body(model: &str, req: &GenerateRequest) -> (&'static str, Value) {
    let s = &req.sampling;
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    let path = match &req.prompt {
        Prompt::Chat { messages, tools } => {
            body.insert("messages".into(), json!(messages));
            if !tools.is_empty() {
                body.insert("tools".into(), json!(tools));
            }
            "/chat/completions"
        }
        Prompt::Text(t) => {
            body.insert("prompt".into(), json!(t));
            "/completions"
        }
    };
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    };
    put("temperature", s.temperature.map(|v| json!(v)));
    put("top_p", s.top_p.map(|v| json!(v)));
    put("top_k", s.top_k.map(|v| json!(v)));
    put("min_p", s.min_p.map(|v| json!(v)));
    put("seed", s.seed.map(|v| json!(v)));
    put("max_tokens", s.max_tokens.map(|v| json!(v)));
    put("presence_penalty", s.presence_penalty.map(|v| json!(v)));
    put("frequency_penalty", s.frequency_penalty.map(|v| json!(v)));
    // vLLM spells it repetition_penalty, llama-server repeat_penalty.
    put("repetition_penalty", s.repeat_penalty.map(|v| json!(v)));
    put("repeat_penalty", s.repeat_penalty.map(|v| json!(v)));
    put("stop", (!s.stop.is_empty()).then(|| json!(s.stop)));
    put(
        "logit_bias",
        (!s.logit_bias.is_empty()).then(|| Value::Object(s.logit_bias.iter().map(|(t, b)| (t.to_string(), json!(b))).collect())),
    );
    put(
        "response_format",
        s.grammar.as_ref().map(|g| match g {
            GrammarSpec::JsonObject => json!({"type": "json_object"}),
            GrammarSpec::JsonSchema(schema) => {
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}})
            }
            // A forced tool call goes as a response format: every server that constrains JSON
            // honours it, and the API layer parses the call out of the text as for a local model.
            GrammarSpec::ToolCall(schema) => {
                json!({"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}})
            }
        }),
    );
    put("stream", Some(json!(true)));
    put("stream_options", Some(json!({"include_usage": true})));
    (path, Value::Object(body))
}

/// The message of an OpenAI-style error body, or the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().or_else(|| v["error"].as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(500).collect())
}

async fn read_error(resp: reqwest::Response) -> EngineError {
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > ERROR_BODY_LIMIT {
            break;
        }
    }
    EngineError::Upstream { status, message: error_message(&String::from_utf8_lossy(&body)) }
}

/// Stream one request; returns the terminal event.
async fn stream(inner: &Inner, path: &str, body: &Value, tx: &mpsc::UnboundedSender<GenerateEvent>) -> GenerateEvent {
    let resp = match inner.post(path, body).send().await {
        Ok(r) => r,
        Err(e) => return GenerateEvent::Error(EngineError::Unavailable(format!("{}: {e}", inner.base_url))),
    };
    if !resp.status().is_success() {
        return GenerateEvent::Error(read_error(resp).await);
    }
    let _ = tx.send(GenerateEvent::Started { prompt_tokens: 0, cached_tokens: 0 });
    let mut events = resp.bytes_stream().eventsource();
    let mut finish: Option<FinishReason> = None;
    let mut usage = Usage::default();
    let mut generated_chunks = 0usize;
    let mut calls = RemoteCalls::default();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                return GenerateEvent::Error(EngineError::Unavailable(format!("the remote stream broke: {e}")));
            }
        };
        if ev.data.trim() == "[DONE]" {
            break;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&ev.data) else { continue };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            return GenerateEvent::Error(EngineError::Upstream { status: 200, message: error_message(&ev.data) });
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            let n = |k: &str| u[k].as_u64().unwrap_or(0) as usize;
            usage = Usage {
                prompt_tokens: n("prompt_tokens"),
                cached_tokens: u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0) as usize,
                completion_tokens: n("completion_tokens"),
            };
        }
        let Some(choice) = chunk["choices"].get(0) else { continue };
        let text = choice["delta"]["content"].as_str().or_else(|| choice["text"].as_str()).unwrap_or("");
        if !text.is_empty() {
            generated_chunks += 1;
            if tx.send(GenerateEvent::Text(text.to_owned())).is_err() {
                return GenerateEvent::Error(EngineError::Internal("cancelled".into()));
            }
        }
        if let Some(deltas) = choice["delta"]["tool_calls"].as_array() {
            generated_chunks += 1;
            calls.add(deltas);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(match reason {
                "length" => FinishReason::Length,
                // vLLM says which stop string matched.
                _ => match choice["stop_reason"].as_str() {
                    Some(s) => FinishReason::StopSequence(s.to_owned()),
                    None => FinishReason::Stop,
                },
            });
        }
    }
    // Calls the server parsed itself come back as text in the `<tool_call>` form the API
    // layer parses, so they are answered like a local model's calls.
    let calls = calls.text();
    if !calls.is_empty() && tx.send(GenerateEvent::Text(calls)).is_err() {
        return GenerateEvent::Error(EngineError::Internal("cancelled".into()));
    }
    match finish {
        Some(finish) => {
            if usage.completion_tokens == 0 {
                usage.completion_tokens = generated_chunks;
            }
            GenerateEvent::Done { finish, usage }
        }
        None => GenerateEvent::Error(EngineError::Unavailable("the remote stream ended without finishing".into())),
    }
}

/// Tool calls streamed as OpenAI `delta.tool_calls` fragments, by index.
#[derive(Default)]
struct RemoteCalls {
    /// (name, arguments so far), in index order.
    calls: Vec<(String, String)>,
}

impl RemoteCalls {
    fn add(&mut self, deltas: &[Value]) {
        for (i, d) in deltas.iter().enumerate() {
            let at = d["index"].as_u64().map_or(i, |x| x as usize);
            if at >= 1024 {
                continue;
            }
            if self.calls.len() <= at {
                self.calls.resize_with(at + 1, Default::default);
            }
            let c = &mut self.calls[at];
            if let Some(name) = d["function"]["name"].as_str() {
                c.0.push_str(name);
            }
            if let Some(args) = d["function"]["arguments"].as_str() {
                c.1.push_str(args);
            }
        }
    }

    fn text(&self) -> String {
        self.calls
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, args)| {
                let arguments =
                    if args.trim().is_empty() { json!({}) } else { serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!(args)) };
                format!("<tool_call>{{\"name\":{},\"arguments\":{arguments}}}</tool_call>", json!(name))
            })
            .collect()
    }
}

impl Engine for RemoteEngine {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> ModelKind {
        ModelKind::OpenaiCompatible
    }

    fn submit(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| EngineError::Internal("submit needs a tokio runtime".into()))?;
        let inner = self.inner.clone();
        {
            let mut st = self.state.lock();
            st.totals.requests += 1;
            let busy = inner.waiting.load(Ordering::Relaxed) + inner.running.load(Ordering::Relaxed);
            if busy >= inner.parallel + inner.max_queue {
                st.totals.rejected += 1;
                return Err(EngineError::Overloaded { retry_after: Duration::from_secs(1) });
            }
        }
        let (path, body) = request_body(&inner.remote_model, &request);
        let (tx, generation) = Generation::channel();
        let state = self.state.clone();
        inner.waiting.fetch_add(1, Ordering::Relaxed);
        rt.spawn(async move {
            let enqueued = Instant::now();
            let permit = tokio::select! {
                p = tokio::time::timeout(inner.max_wait, inner.permits.clone().acquire_owned()) => p,
                _ = tx.closed() => {
                    inner.waiting.fetch_sub(1, Ordering::Relaxed);
                    state.lock().totals.cancelled += 1;
                    return;
                }
            };
            inner.waiting.fetch_sub(1, Ordering::Relaxed);
            let _permit = match permit {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => {
                    let _ = tx.send(GenerateEvent::Error(EngineError::Unavailable("the model is shutting down".into())));
                    return;
                }
                Err(_) => {
                    state.lock().totals.timed_out += 1;
                    let _ = tx.send(GenerateEvent::Error(EngineError::QueueTimeout {
                        waited: enqueued.elapsed(),
                        retry_after: Duration::from_secs(1),
                    }));
                    return;
                }
            };
            inner.running.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let outcome = tokio::select! {
                ev = stream(&inner, path, &body, &tx) => Some(ev),
                _ = tx.closed() => None,
            };
            inner.running.fetch_sub(1, Ordering::Relaxed);
            let mut st = state.lock();
            match outcome {
                None => st.totals.cancelled += 1,
                Some(ev) => {
                    match &ev {
                        GenerateEvent::Done { usage, .. } => {
                            st.totals.completed += 1;
                            st.totals.prompt_tokens += usage.prompt_tokens as u64;
                            st.totals.cached_tokens += usage.cached_tokens as u64;
                            st.totals.completion_tokens += usage.completion_tokens as u64;
                            let now = Instant::now();
                            st.recent.retain(|(t, _, _)| now.duration_since(*t) <= RATE_WINDOW);
                            st.recent.push((now, usage.completion_tokens, started.elapsed()));
                        }
                        _ => st.totals.failed += 1,
                    }
                    drop(st);
                    let _ = tx.send(ev);
                }
            }
        });
        Ok(generation)
    }

    fn embed(&self, input: Vec<String>) -> BoxFuture<'_, Result<Embeddings, EngineError>> {
        Box::pin(async move {
            let body = json!({"model": self.inner.remote_model, "input": input});
            let resp = self
                .inner
                .post("/embeddings", &body)
                .send()
                .await
                .map_err(|e| EngineError::Unavailable(format!("{}: {e}", self.inner.base_url)))?;
            if !resp.status().is_success() {
                return Err(read_error(resp).await);
            }
            let v: Value = resp.json().await.map_err(|e| EngineError::Unavailable(format!("bad embeddings answer: {e}")))?;
            let mut data: Vec<(usize, Vec<f32>)> = v["data"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .enumerate()
                        .map(|(i, d)| {
                            let idx = d["index"].as_u64().map_or(i, |x| x as usize);
                            let vec = d["embedding"]
                                .as_array()
                                .map(|e| e.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                                .unwrap_or_default();
                            (idx, vec)
                        })
                        .collect()
                })
                .unwrap_or_default();
            data.sort_by_key(|d| d.0);
            Ok(Embeddings {
                vectors: data.into_iter().map(|d| d.1).collect(),
                prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as usize,
            })
        })
    }

    fn count_tokens(&self, _prompt: &Prompt) -> Result<usize, EngineError> {
        Err(EngineError::Unsupported("count_tokens: an openai-compatible model counts through its server (count_tokens_async)".into()))
    }

    fn count_tokens_async<'a>(&'a self, prompt: &'a Prompt) -> BoxFuture<'a, Result<usize, EngineError>> {
        Box::pin(self.inner.count_tokens(prompt))
    }

    fn stats(&self) -> ModelStats {
        let st = self.state.lock();
        let now = Instant::now();
        let recent: Vec<_> = st.recent.iter().filter(|(t, _, _)| now.duration_since(*t) <= RATE_WINDOW).collect();
        let tokens: usize = recent.iter().map(|r| r.1).sum();
        ModelStats {
            name: self.inner.name.clone(),
            kind: ModelKind::OpenaiCompatible,
            file_size: 0,
            memory_bytes: 0,
            context: self.inner.context,
            parallel: self.inner.parallel,
            active_slots: self.inner.running.load(Ordering::Relaxed),
            used_slots: self.inner.running.load(Ordering::Relaxed),
            queue_depth: self.inner.waiting.load(Ordering::Relaxed),
            queue_capacity: self.inner.max_queue,
            decode_tokens_per_second: tokens as f64 / RATE_WINDOW.as_secs_f64(),
            prompt_tokens_per_second: 0.0,
            totals: st.totals.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatMessage, SamplingParams};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot loopback server answering every connection with `response`.
    async fn serve(response: String) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut requests = Vec::new();
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            loop {
                let n = sock.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let s = String::from_utf8_lossy(&got).to_string();
                if let Some(h) = s.find("\r\n\r\n") {
                    let len = s[..h]
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                        .unwrap_or(0);
                    if got.len() >= h + 4 + len {
                        requests.push(s);
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            sock.write_all(response.as_bytes()).await.unwrap();
            sock.shutdown().await.unwrap();
            requests
        });
        (format!("http://{addr}/v1"), task)
    }

    fn sse(events: &[&str]) -> String {
        let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
    }

    fn engine(url: &str) -> RemoteEngine {
        let mut cfg = ModelConfig::openai_compatible("remote", url);
        cfg.remote_model = Some("served-name".into());
        RemoteEngine::new(&cfg).unwrap()
    }

    fn chat() -> GenerateRequest {
        let mut r = GenerateRequest::new(Prompt::Chat { messages: vec![ChatMessage::new("user", "hi")], tools: vec![] });
        r.sampling = SamplingParams { max_tokens: Some(5), stop: vec!["x".into()], ..Default::default() };
        r
    }

    #[tokio::test]
    async fn streams_a_chat_completion() {
        let (url, server) = serve(sse(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"length"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#,
            "[DONE]",
        ]))
        .await;
        let e = engine(&url);
        let c = e.submit(chat()).unwrap().collect().await.unwrap();
        assert_eq!(c.text, "Hello");
        assert_eq!(c.finish, FinishReason::Length);
        assert_eq!(c.usage, Usage { prompt_tokens: 7, cached_tokens: 0, completion_tokens: 2 });
        let req = &server.await.unwrap()[0];
        assert!(req.starts_with("POST /v1/chat/completions"), "{req}");
        assert!(req.contains(r#""model":"served-name""#), "{req}");
        assert!(req.contains(r#""stream":true"#));
        assert!(req.contains(r#""max_tokens":5"#));
        assert_eq!(e.stats().totals.completed, 1);
    }

    #[tokio::test]
    async fn remote_errors_come_back_as_events() {
        let body = r#"{"error":{"message":"model too busy","type":"server_error"}}"#;
        let (url, _server) = serve(format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await;
        let e = engine(&url);
        match e.submit(chat()).unwrap().collect().await {
            Err(EngineError::Upstream { status: 503, message }) => assert_eq!(message, "model too busy"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_stream_cut_short_is_an_error() {
        let (url, _server) = serve(sse(&[r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#])).await;
        let e = engine(&url);
        assert!(matches!(e.submit(chat()).unwrap().collect().await, Err(EngineError::Unavailable(_))));
    }

    #[tokio::test]
    async fn unreachable_server() {
        let e = engine("http://127.0.0.1:9/v1");
        assert!(matches!(e.submit(chat()).unwrap().collect().await, Err(EngineError::Unavailable(_))));
    }

    /// A loopback model server answering each request with `route(path, body)`: (status, JSON).
    /// Returns its `/v1` base URL and the paths it was asked for.
    async fn routed(route: impl Fn(&str, &Value) -> (u16, Value) + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let route = Arc::new(route);
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (route, log) = (route.clone(), log.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    let (head, body) = loop {
                        let n = sock.read(&mut buf).await.unwrap();
                        got.extend_from_slice(&buf[..n]);
                        let s = String::from_utf8_lossy(&got).to_string();
                        if let Some(h) = s.find("\r\n\r\n") {
                            let len = s[..h]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                                })
                                .unwrap_or(0);
                            if got.len() >= h + 4 + len {
                                break (s[..h].to_string(), s[h + 4..h + 4 + len].to_string());
                            }
                        }
                        assert!(n > 0, "the client hung up");
                    };
                    let path = head.split_whitespace().nth(1).unwrap().to_string();
                    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let (status, answer) = route(&path, &body);
                    log.lock().push((path, body));
                    let answer = answer.to_string();
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    sock.write_all(resp.as_bytes()).await.unwrap();
                    sock.shutdown().await.unwrap();
                });
            }
        });
        (format!("http://{addr}/v1"), seen)
    }

    fn not_found() -> (u16, Value) {
        (404, json!({"error": {"message": "File Not Found", "code": 404}}))
    }

    fn chat_prompt() -> Prompt {
        Prompt::Chat {
            messages: vec![ChatMessage::new("system", "be brief"), ChatMessage::new("user", "how many tokens is this")],
            tools: vec![json!({"type": "function", "function": {"name": "f"}})],
        }
    }

    #[tokio::test]
    async fn count_tokens_like_llama_server() {
        // /apply-template renders the chat; /tokenize counts its text (one token per word here).
        let (url, seen) = routed(|path, body| match path {
            "/apply-template" => {
                let words: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
                (200, json!({"prompt": format!("<start> {} <tools:{}> <model>", words.join(" "), body["tools"].as_array().map_or(0, Vec::len))}))
            }
            "/tokenize" => {
                let n = body["content"].as_str().unwrap().split_whitespace().count();
                (200, json!({"tokens": (0..n).collect::<Vec<_>>()}))
            }
            _ => not_found(),
        })
        .await;
        let e = engine(&url);
        // "<start> be brief how many tokens is this <tools:1> <model>"
        assert_eq!(e.count_tokens_async(&chat_prompt()).await.unwrap(), 10);
        assert_eq!(e.count_tokens_async(&Prompt::Text("one two three".into())).await.unwrap(), 3);
        let seen = seen.lock();
        let paths: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(paths, ["/apply-template", "/tokenize", "/tokenize"]);
        assert_eq!(seen[0].1["tools"][0]["function"]["name"], "f");
        assert_eq!(seen[1].1["add_special"], true);
        assert_eq!(seen[2].1["content"], "one two three");
    }

    #[tokio::test]
    async fn count_tokens_like_vllm() {
        let (url, seen) = routed(|path, body| match path {
            "/tokenize" if body.get("messages").is_some() => (200, json!({"count": 17, "max_model_len": 4096, "tokens": [1]})),
            "/tokenize" => (200, json!({"count": 4, "max_model_len": 4096, "tokens": [1, 2, 3, 4]})),
            _ => not_found(),
        })
        .await;
        let e = engine(&url);
        assert_eq!(e.count_tokens_async(&chat_prompt()).await.unwrap(), 17);
        assert_eq!(e.count_tokens_async(&Prompt::Text("x".into())).await.unwrap(), 4);
        let seen = seen.lock();
        let vllm = &seen.iter().find(|s| s.0 == "/tokenize").unwrap().1;
        assert_eq!(vllm["model"], "served-name");
        assert_eq!(vllm["add_generation_prompt"], true);
        assert_eq!(vllm["tools"][0]["function"]["name"], "f");
        assert_eq!(seen.last().unwrap().1["prompt"], "x");
    }

    #[tokio::test]
    async fn count_tokens_without_a_tokenizer_says_so() {
        let (url, _) = routed(|_, _| not_found()).await;
        let e = engine(&url);
        for prompt in [chat_prompt(), Prompt::Text("x".into())] {
            match e.count_tokens_async(&prompt).await {
                Err(EngineError::Unsupported(m)) => {
                    assert!(m.contains("count_tokens") && m.contains("/tokenize") && !m.contains("/v1"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
        // A server that tokenizes text but ignores chat messages must not answer 0.
        let (url, _) = routed(|path, _| if path == "/tokenize" { (200, json!({"tokens": []})) } else { not_found() }).await;
        match engine(&url).count_tokens_async(&chat_prompt()).await {
            Err(EngineError::Unsupported(m)) => assert!(m.contains("chat messages"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Other failures are the server's errors, not a count.
        let (url, _) = routed(|_, _| (500, json!({"error": {"message": "tokenizer crashed"}}))).await;
        match engine(&url).count_tokens_async(&Prompt::Text("x".into())).await {
            Err(EngineError::Upstream { status: 500, message }) => assert_eq!(message, "tokenizer crashed"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn server_parsed_tool_calls_come_back_as_tool_call_text() {
        let (url, _server) = serve(sse(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"x","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"y","type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ]))
        .await;
        let c = engine(&url).submit(chat()).unwrap().collect().await.unwrap();
        assert_eq!(
            c.text,
            r#"<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call><tool_call>{"name":"now","arguments":{}}</tool_call>"#
        );
        assert_eq!(c.finish, FinishReason::Stop);
    }

    #[test]
    fn forced_tool_calls_go_as_a_response_format() {
        let mut r = chat();
        r.sampling.grammar = Some(GrammarSpec::ToolCall(json!({"type": "object"})));
        let (_, body) = request_body("m", &r);
        assert_eq!(body["response_format"]["json_schema"], json!({"name": "tool_call", "schema": {"type": "object"}}));
    }

    #[test]
    fn body_maps_sampling_and_formats() {
        let mut r = GenerateRequest::new(Prompt::Text("once".into()));
        r.sampling.grammar = Some(GrammarSpec::JsonSchema(json!({"type":"object"})));
        r.sampling.logit_bias = vec![(42, -100.0)];
        let (path, body) = request_body("m", &r);
        assert_eq!(path, "/completions");
        assert_eq!(body["prompt"], "once");
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["logit_bias"]["42"], -100.0);
        assert!(body.get("temperature").is_none());
    }
}
