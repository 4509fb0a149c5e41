//! The provisioning steps that need the local engine: load each model the bundle installs
//! and generate a few tokens (the smoke test), then run the bundle's canaries once against
//! their use case's model. They run after the models are installed and the new
//! configuration validated, before it is swapped in: a failure here rolls provisioning back
//! like any other. A trait, so tests can make them fail without a model.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use genset_engine::{ChatMessage, Engine, GenerateRequest, LoadOptions, Prompt, SamplingParams};
use parking_lot::Mutex;
use serde::Serialize;

use super::manifest::{Canary, Expect, Manifest};
use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub name: String,
    pub status: StepStatus,
    pub detail: String,
    /// A failure of this step fails provisioning.
    pub required: bool,
}

impl StepResult {
    pub fn passed(name: impl Into<String>, detail: impl Into<String>) -> Self {
        StepResult { name: name.into(), status: StepStatus::Passed, detail: detail.into(), required: true }
    }
    pub fn failed(name: impl Into<String>, detail: impl Into<String>) -> Self {
        StepResult { name: name.into(), status: StepStatus::Failed, detail: detail.into(), required: true }
    }
    pub fn skipped(name: impl Into<String>, detail: impl Into<String>) -> Self {
        StepResult { name: name.into(), status: StepStatus::Skipped, detail: detail.into(), required: false }
    }
    /// Failed and required: provisioning must not go on.
    pub fn blocks(&self) -> bool {
        self.status == StepStatus::Failed && self.required
    }
}

/// The engine-backed steps of provisioning.
pub trait ModelChecks: Send + Sync {
    /// Load each of the bundle's models (as configured in `cfg`) and generate a few tokens.
    fn smoke(&self, cfg: &Config, m: &Manifest) -> Vec<StepResult>;
    /// Run each canary once against its use case's local model.
    fn canaries(&self, cfg: &Config, m: &Manifest) -> Vec<StepResult>;
}

/// No engine work at all (`--no-smoke`): both steps report `skipped`.
pub struct SkipChecks;

impl ModelChecks for SkipChecks {
    fn smoke(&self, _cfg: &Config, m: &Manifest) -> Vec<StepResult> {
        m.models.iter().map(|e| StepResult::skipped(&e.name, "not loaded (--no-smoke)")).collect()
    }
    fn canaries(&self, _cfg: &Config, m: &Manifest) -> Vec<StepResult> {
        m.canaries.iter().map(|c| StepResult::skipped(canary_name(c), "not run (--no-smoke)")).collect()
    }
}

/// The real steps, through genset-engine. The engines loaded for the smoke test are kept
/// for the canaries and dropped with this value.
#[derive(Default)]
pub struct EngineChecks {
    loaded: Mutex<HashMap<String, Arc<dyn Engine>>>,
}

/// Tokens the smoke test asks for.
const SMOKE_TOKENS: u32 = 8;
/// Longest a smoke generation or canary may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

impl ModelChecks for EngineChecks {
    fn smoke(&self, cfg: &Config, m: &Manifest) -> Vec<StepResult> {
        let mut out = Vec::new();
        for entry in &m.models {
            let Some(mc) = cfg.models.iter().find(|c| c.name == entry.name) else {
                out.push(StepResult::failed(&entry.name, "not in the new configuration"));
                continue;
            };
            let t = Instant::now();
            let engine = match genset_engine::build(mc, &LoadOptions::default()) {
                Ok(e) => e,
                Err(e) => {
                    out.push(StepResult::failed(&entry.name, format!("does not load: {e}")));
                    continue;
                }
            };
            let loaded = t.elapsed();
            let t = Instant::now();
            // A chat turn when the model has a template, raw text when it has none.
            let chat = Prompt::Chat { messages: vec![ChatMessage::new("user", "Say hello.")], tools: vec![] };
            let res = generate(&engine, chat, SMOKE_TOKENS).or_else(|e| match e {
                genset_engine::EngineError::Unsupported(_) => generate(&engine, Prompt::Text("Hello".into()), SMOKE_TOKENS),
                e => Err(e),
            });
            match res {
                Ok(c) => {
                    let toks = c.usage.completion_tokens;
                    out.push(StepResult::passed(
                        &entry.name,
                        format!(
                            "loaded in {:.1}s; generated {toks} tokens in {:.2}s: {:?}",
                            loaded.as_secs_f64(),
                            t.elapsed().as_secs_f64(),
                            c.text.chars().take(60).collect::<String>()
                        ),
                    ));
                    self.loaded.lock().insert(entry.name.clone(), engine);
                }
                Err(e) => out.push(StepResult::failed(&entry.name, format!("loaded, but generation failed: {e}"))),
            }
        }
        out
    }

    fn canaries(&self, _cfg: &Config, m: &Manifest) -> Vec<StepResult> {
        m.canaries
            .iter()
            .map(|c| {
                let uc = m.use_cases.iter().find(|u| u.name == c.use_case);
                let model =
                    uc.and_then(|u| u.model.clone().or_else(|| u.chain.iter().find_map(|s| s.strip_prefix("local:").map(str::to_string))));
                let Some(model) = model else {
                    return StepResult::skipped(canary_name(c), "its use case has no local model");
                };
                let Some(engine) = self.loaded.lock().get(&model).cloned() else {
                    return with_required(StepResult::failed(canary_name(c), format!("model {model} did not load")), c.required);
                };
                let messages = c.messages.iter().map(|msg| ChatMessage::new(&msg.role, &msg.content)).collect();
                let t = Instant::now();
                let r = match generate(&engine, Prompt::Chat { messages, tools: vec![] }, c.max_tokens.unwrap_or(64)) {
                    Ok(done) => match judge(&c.expect, &done.text, t.elapsed()) {
                        Ok(()) => {
                            StepResult::passed(canary_name(c), format!("{:?} in {:.2}s", trim(&done.text), t.elapsed().as_secs_f64()))
                        }
                        Err(why) => StepResult::failed(canary_name(c), format!("{why}; answer {:?}", trim(&done.text))),
                    },
                    Err(e) => StepResult::failed(canary_name(c), format!("generation failed: {e}")),
                };
                with_required(r, c.required)
            })
            .collect()
    }
}

fn canary_name(c: &Canary) -> String {
    format!("canary {}/{}", c.use_case, c.name)
}

fn with_required(mut r: StepResult, required: bool) -> StepResult {
    r.required = required;
    r
}

fn trim(s: &str) -> String {
    s.trim().chars().take(80).collect()
}

/// Greedy generation of at most `max_tokens`, waited for on this (blocking) thread.
fn generate(engine: &Arc<dyn Engine>, prompt: Prompt, max_tokens: u32) -> Result<genset_engine::Completion, genset_engine::EngineError> {
    let mut req = GenerateRequest::new(prompt);
    req.sampling = SamplingParams { temperature: Some(0.0), max_tokens: Some(max_tokens), ..SamplingParams::default() };
    let generation = engine.submit(req)?;
    let fut = async move {
        tokio::time::timeout(STEP_TIMEOUT, generation.collect())
            .await
            .unwrap_or_else(|_| Err(genset_engine::EngineError::Internal(format!("no answer within {}s", STEP_TIMEOUT.as_secs()))))
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(fut),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| genset_engine::EngineError::Internal(e.to_string()))?
            .block_on(fut),
    }
}

/// Check an answer against a canary's assertions.
pub fn judge(expect: &Expect, answer: &str, took: Duration) -> Result<(), String> {
    let a = answer.trim();
    if let Some(e) = &expect.equals
        && a != e.trim()
    {
        return Err(format!("expected exactly {e:?}"));
    }
    if let Some(c) = &expect.contains
        && !a.contains(c.as_str())
    {
        return Err(format!("expected it to contain {c:?}"));
    }
    if let Some(re) = &expect.regex {
        let re = regex::Regex::new(re).map_err(|e| format!("invalid regex: {e}"))?;
        if !re.is_match(a) {
            return Err(format!("expected a match for /{}/", re.as_str()));
        }
    }
    if !expect.label_in.is_empty() {
        let norm = |s: &str| s.trim().trim_end_matches(['.', '!']).to_lowercase();
        if !expect.label_in.iter().any(|l| norm(l) == norm(a)) {
            return Err(format!("expected one of {:?}", expect.label_in));
        }
    }
    if let Some(schema) = &expect.json_schema {
        let v: serde_json::Value = serde_json::from_str(a).map_err(|e| format!("expected JSON: {e}"))?;
        // The schema's top-level `required` keys are checked; full JSON Schema validation
        // belongs to the evaluator.
        if let Some(req) = schema.get("required").and_then(|r| r.as_array()) {
            for k in req.iter().filter_map(|k| k.as_str()) {
                if v.get(k).is_none() {
                    return Err(format!("expected JSON with the key {k:?}"));
                }
            }
        }
    }
    if let Some(l) = &expect.max_latency
        && let Ok(max) = humantime::parse_duration(l)
        && took > max
    {
        return Err(format!("took {:.2}s, more than {l}", took.as_secs_f64()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(expect: &str, answer: &str, ok: bool) {
        let e: Expect = toml::from_str(expect).unwrap_or_default();
        let r = judge(&e, answer, Duration::from_millis(10));
        assert_eq!(r.is_ok(), ok, "{expect} vs {answer:?}: {r:?}");
    }

    #[test]
    fn canary_assertions() {
        check("equals = \"yes\"", " yes\n", true);
        check("equals = \"yes\"", "yes!", false);
        check("contains = \"refund\"", "a refund request", true);
        check("regex = \"^[A-Z]{3}-\\\\d+$\"", "INV-42", true);
        check("regex = \"^\\\\d+$\"", "INV-42", false);
        check("label_in = [\"billing\", \"refund\"]", " Refund.", true);
        check("label_in = [\"billing\"]", "shipping", false);
        check("json_schema = { required = [\"total\"] }", "{\"total\": 3}", true);
        check("json_schema = { required = [\"total\"] }", "{\"sum\": 3}", false);
        check("json_schema = {}", "not json", false);
        check("max_latency = \"1ms\"", "x", false);
        check("max_latency = \"1s\"", "x", true);
    }
}
