//! Shared helpers for the tests that run the real test model (Gemma 3 270M, Q4_K_M, base).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use genset_engine::{
    ChatMessage, Engine, EngineRegistry, GenerateEvent, GenerateRequest, Generation, LoadOptions, ModelConfig, Prompt, SamplingParams,
};

pub const SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

/// Gemma's end-of-generation tokens (`<eos>`, `<end_of_turn>`): banning them forces a
/// generation to run to `max_tokens`.
pub const EOG_TOKENS: [i32; 2] = [1, 106];

/// The test model: `$GENSET_TEST_MODEL`, else where `provisioning/fetch-test-model.sh` puts it.
/// Fails (never skips) when it is missing.
pub fn model_path() -> PathBuf {
    let path = match std::env::var_os("GENSET_TEST_MODEL") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".cache/genset/models/gemma-3-270m-q4_k_m.gguf")
        }
    };
    assert!(
        path.is_file(),
        "the test model is missing at {}: run provisioning/fetch-test-model.sh or set GENSET_TEST_MODEL",
        path.display()
    );
    path
}

pub fn config(context: u32, parallel: u32) -> ModelConfig {
    let mut cfg = ModelConfig::gguf("gemma-test", model_path(), SHA256);
    cfg.context = context;
    cfg.parallel = parallel;
    cfg.chat_template = Some("gemma".into());
    // Tests run in parallel processes on few cores: one thread each unless told otherwise.
    cfg.threads = Some(std::env::var("GENSET_TEST_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1));
    cfg.max_wait = Duration::from_secs(120);
    cfg
}

pub fn load(context: u32, parallel: u32) -> Arc<dyn Engine> {
    load_config(config(context, parallel))
}

pub fn load_config(cfg: ModelConfig) -> Arc<dyn Engine> {
    let reg = EngineRegistry::load_blocking(&[cfg], &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    reg.get("gemma-test").unwrap()
}

pub fn chat(user: &str) -> Prompt {
    Prompt::Chat { messages: vec![ChatMessage::new("user", user)], tools: vec![] }
}

/// A chat turn under a system prompt.
pub fn chat_with_system(system: &str, user: &str) -> Prompt {
    Prompt::Chat { messages: vec![ChatMessage::new("system", system), ChatMessage::new("user", user)], tools: vec![] }
}

pub fn greedy(prompt: Prompt, max_tokens: u32) -> GenerateRequest {
    let mut r = GenerateRequest::new(prompt);
    r.sampling = SamplingParams { temperature: Some(0.0), max_tokens: Some(max_tokens), ..Default::default() };
    r
}

/// Greedy, with the end-of-generation tokens banned: always runs to `max_tokens`.
pub fn forced_length(prompt: Prompt, max_tokens: u32) -> GenerateRequest {
    let mut r = greedy(prompt, max_tokens);
    r.sampling.logit_bias = EOG_TOKENS.iter().map(|t| (*t, -100.0)).collect();
    r
}

/// All events of a generation, in order.
pub async fn events(mut g: Generation) -> Vec<GenerateEvent> {
    let mut out = Vec::new();
    while let Some(ev) = g.next().await {
        out.push(ev);
    }
    out
}
