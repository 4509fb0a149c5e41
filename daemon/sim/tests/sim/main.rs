//! Real HTTP against a started simulator: both APIs, answer rules, auth,
//! every fault, control endpoints and the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod auth;
mod binary;
mod control;
mod faults;
mod openai;

use std::time::Duration;

use genset_sim::{SimHandle, SimOptions};
use serde_json::{Value, json};

pub async fn sim() -> SimHandle {
    sim_with(SimOptions::default()).await
}

pub async fn sim_with(opts: SimOptions) -> SimHandle {
    genset_sim::start(opts).await.expect("simulator starts")
}

fn install_crypto() {
    // reqwest is built without a default rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client with a connection pool, like an SDK.
pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// A client that opens a new connection for every request.
pub fn fresh_client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(0).build().unwrap()
}

pub async fn openai(c: &reqwest::Client, sim: &SimHandle, path: &str, body: &Value) -> reqwest::Response {
    c.post(format!("{}{path}", sim.base_url())).bearer_auth("sk-test-key-123456").json(body).send().await.unwrap()
}

pub async fn anthropic(c: &reqwest::Client, sim: &SimHandle, path: &str, body: &Value) -> reqwest::Response {
    c.post(format!("{}{path}", sim.base_url()))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn chat(c: &reqwest::Client, sim: &SimHandle, body: Value) -> reqwest::Response {
    openai(c, sim, "/v1/chat/completions", &body).await
}

pub async fn messages(c: &reqwest::Client, sim: &SimHandle, body: Value) -> reqwest::Response {
    anthropic(c, sim, "/v1/messages", &body).await
}

pub fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

/// One server-sent event: its `event:` name, if any, and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("bad JSON in {:?}: {e}", self.data))
    }
}

pub fn parse_sse(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            Event { name, data }
        })
        .collect()
}

/// Text of the OpenAI chat chunks.
pub fn chat_text(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .filter_map(|e| e.json()["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

/// Text of the Anthropic `text_delta` events.
pub fn anthropic_text(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.name.as_deref() == Some("content_block_delta"))
        .filter_map(|e| e.json()["delta"]["text"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (polling) until `cond` holds, failing after `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
