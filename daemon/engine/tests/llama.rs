//! The llama.cpp engine against the real test model. The model is a tiny base model: answers
//! are poor but deterministic under greedy sampling, so these tests assert properties (usage,
//! lengths, stops, JSON validity), never wording, and never timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use genset_engine::{
    ChatMessage, EngineError, EngineRegistry, FinishReason, GenerateEvent, GrammarSpec, LoadOptions, ModelConfig, Priority, Prompt,
};
use serde_json::{Value, json};

#[tokio::test]
async fn chat_completion_counts_usage() {
    let engine = load(1024, 2);
    let prompt = chat("Write one sentence about the sea.");
    let n_prompt = engine.count_tokens(&prompt).unwrap();
    assert!(n_prompt > 5);
    let evs = events(engine.submit(greedy(prompt.clone(), 24)).unwrap()).await;
    let GenerateEvent::Started { prompt_tokens, cached_tokens } = evs[0] else { panic!("{:?}", evs[0]) };
    assert_eq!(prompt_tokens, n_prompt);
    assert_eq!(cached_tokens, 0);
    let GenerateEvent::Done { finish, usage } = evs.last().unwrap().clone() else { panic!("{:?}", evs.last()) };
    assert_eq!(usage.prompt_tokens, n_prompt);
    assert!(usage.completion_tokens >= 1 && usage.completion_tokens <= 24, "{usage:?}");
    if finish == FinishReason::Length {
        assert_eq!(usage.completion_tokens, 24);
    }
    let text: String = evs.iter().filter_map(|e| if let GenerateEvent::Text(t) = e { Some(t.as_str()) } else { None }).collect();

    // Greedy decoding is deterministic; the second run reuses the cached prompt.
    let again = engine.submit(greedy(prompt, 24)).unwrap().collect().await.unwrap();
    assert_eq!(again.text, text);
    assert_eq!(again.usage.completion_tokens, usage.completion_tokens);
    assert_eq!(again.usage.cached_tokens, n_prompt - 1);
}

#[tokio::test]
async fn max_tokens_is_honoured_exactly() {
    let engine = load(1024, 1);
    let c = engine.submit(forced_length(Prompt::Text("The history of the city begins".into()), 17)).unwrap().collect().await.unwrap();
    assert_eq!(c.finish, FinishReason::Length);
    assert_eq!(c.usage.completion_tokens, 17);
    assert!(!c.text.is_empty());
    // The text is what 17 tokens detokenize to: re-tokenizing gives about as many tokens.
    let retok = engine.count_tokens(&Prompt::Text(c.text.clone())).unwrap();
    assert!((10..=25).contains(&retok), "{retok} tokens for {:?}", c.text);
}

#[tokio::test]
async fn stop_sequences_are_honoured() {
    let engine = load(1024, 1);
    let mut req = forced_length(Prompt::Text("Monday, Tuesday, Wednesday, Thursday,".into()), 40);
    req.sampling.stop = vec![",".into()];
    let c = engine.submit(req).unwrap().collect().await.unwrap();
    assert_eq!(c.finish, FinishReason::StopSequence(",".into()));
    assert!(!c.text.contains(','), "{:?}", c.text);
    assert!(c.usage.completion_tokens < 40);

    // A multi-character stop that is a prefix of nothing else: the text before it comes back
    // and nothing after.
    let mut req = forced_length(Prompt::Text("1 2 3 4 5 6 7".into()), 40);
    req.sampling.stop = vec![" 9".into(), "zzz".into()];
    let c = engine.submit(req).unwrap().collect().await.unwrap();
    if c.finish == FinishReason::StopSequence(" 9".into()) {
        assert!(!c.text.contains(" 9"), "{:?}", c.text);
    } else {
        assert_eq!(c.finish, FinishReason::Length);
        assert!(!c.text.contains(" 9"));
    }
}

#[tokio::test]
async fn eight_concurrent_requests_complete_with_correct_usage() {
    let engine = load(1024, 4);
    let prompts: Vec<Prompt> = (0..8).map(|i| chat(&format!("Count from {i} to {}.", i + 5))).collect();
    let expected: Vec<usize> = prompts.iter().map(|p| engine.count_tokens(p).unwrap()).collect();
    let started = Instant::now();
    let gens: Vec<_> = prompts.iter().map(|p| engine.submit(forced_length(p.clone(), 16)).unwrap()).collect();
    // Four slots: at least four requests wait in the queue.
    assert!(engine.stats().queue_depth >= 4, "{:?}", engine.stats());
    let results = futures_util::future::join_all(gens.into_iter().map(|g| g.collect())).await;
    let elapsed = started.elapsed();
    for (c, n) in results.iter().zip(&expected) {
        let c = c.as_ref().unwrap();
        assert_eq!(c.finish, FinishReason::Length);
        assert_eq!(c.usage.prompt_tokens, *n);
        assert_eq!(c.usage.completion_tokens, 16);
    }
    let total: usize = results.iter().map(|c| c.as_ref().unwrap().usage.completion_tokens).sum();
    eprintln!("8 requests x 16 tokens on 4 slots: {total} tokens in {elapsed:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stats().totals.completed < 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = engine.stats();
    assert_eq!(stats.totals.completed, 8);
    assert_eq!(stats.totals.completion_tokens, 128);
    assert_eq!(stats.active_slots, 0);
    assert_eq!(stats.queue_depth, 0);
}

/// A minimal structural check of the schema used below.
fn check_person(v: &Value) {
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert!(obj.keys().all(|k| k == "name" || k == "age"), "extra keys in {v}");
    let name = obj["name"].as_str().unwrap_or_else(|| panic!("name is not a string: {v}"));
    assert!(name.chars().count() <= 20);
    assert!(obj["age"].is_i64() || obj["age"].is_u64(), "age is not an integer: {v}");
}

#[tokio::test]
async fn json_schema_output_validates() {
    let engine = load(1024, 1);
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer"}
        },
        "required": ["name", "age"],
        "additionalProperties": false
    });
    let mut req = greedy(chat("Describe a person as JSON with a name and an age."), 96);
    req.sampling.grammar = Some(GrammarSpec::JsonSchema(schema));
    let c = engine.submit(req).unwrap().collect().await.unwrap();
    assert_eq!(c.finish, FinishReason::Stop, "{:?}", c.text);
    let v: Value = serde_json::from_str(&c.text).unwrap_or_else(|e| panic!("invalid JSON {:?}: {e}", c.text));
    check_person(&v);

    // With sampling (not greedy) the grammar still holds.
    let mut req = greedy(chat("Any JSON object please."), 96);
    req.sampling.temperature = Some(0.9);
    req.sampling.seed = Some(7);
    req.sampling.grammar = Some(GrammarSpec::JsonObject);
    let c = engine.submit(req).unwrap().collect().await.unwrap();
    if c.finish == FinishReason::Stop {
        let v: Value = serde_json::from_str(&c.text).unwrap_or_else(|e| panic!("invalid JSON {:?}: {e}", c.text));
        assert!(v.is_object(), "{v}");
    } else {
        // Cut by max_tokens: still a valid JSON prefix that starts an object.
        assert!(c.text.trim_start().starts_with('{'), "{:?}", c.text);
    }
}

#[tokio::test]
async fn an_invalid_schema_is_refused_at_submission() {
    let engine = load(512, 1);
    let mut req = greedy(chat("hi"), 8);
    req.sampling.grammar = Some(GrammarSpec::JsonSchema(json!({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})));
    match engine.submit(req) {
        Err(EngineError::InvalidRequest(m)) => assert!(m.contains("response_format"), "{m}"),
        Ok(g) => {
            // llama.cpp may accept the schema; then it must still end cleanly.
            let _ = g.collect().await;
        }
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn a_dropped_generation_frees_its_slot() {
    let engine = load(1024, 1);
    let mut g = engine.submit(forced_length(Prompt::Text("Once upon a time".into()), 500)).unwrap();
    assert!(matches!(g.next().await, Some(GenerateEvent::Started { .. })));
    assert!(matches!(g.next().await, Some(GenerateEvent::Text(_))));
    assert_eq!(engine.stats().active_slots, 1);
    drop(g);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stats().active_slots != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = engine.stats();
    assert_eq!(stats.active_slots, 0);
    // The slot serves the next request.
    let c = engine.submit(forced_length(Prompt::Text("Twice upon a time".into()), 4)).unwrap().collect().await.unwrap();
    assert_eq!(c.usage.completion_tokens, 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stats().totals.cancelled != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.stats().totals.cancelled, 1);
    assert!(engine.stats().totals.completion_tokens < 500);
}

#[tokio::test]
async fn an_over_long_prompt_is_refused() {
    let engine = load(256, 1);
    let long = "lorem ipsum dolor ".repeat(200);
    match engine.submit(greedy(Prompt::Text(long), 8)) {
        Err(EngineError::ContextTooLong { prompt_tokens, context }) => {
            assert_eq!(context, 256);
            assert!(prompt_tokens > 256);
        }
        other => panic!("expected ContextTooLong, got {other:?}"),
    }
    assert_eq!(engine.stats().totals.rejected, 1);
    // A prompt that fits gets its max_tokens clamped to what is left of the context.
    let mut n = 50;
    while engine.count_tokens(&Prompt::Text("lorem ipsum ".repeat(n))).unwrap() < 240 {
        n += 1;
    }
    let c = engine.submit(forced_length(Prompt::Text("lorem ipsum ".repeat(n)), 10_000)).unwrap().collect().await.unwrap();
    assert_eq!(c.finish, FinishReason::Length);
    assert_eq!(c.usage.prompt_tokens + c.usage.completion_tokens, 256);
}

#[test]
fn a_sha256_mismatch_refuses_to_load() {
    let mut cfg = config(512, 1);
    cfg.sha256 = Some("0".repeat(64));
    let err = EngineRegistry::load_blocking(&[cfg], &LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("models[0] (gemma-test)"), "{msg}");
    assert!(msg.contains("sha256 mismatch"), "{msg}");
    assert!(msg.contains("refusing to load"), "{msg}");
}

#[tokio::test]
async fn a_repeated_system_prompt_hits_the_prefix_cache() {
    let engine = load(2048, 2);
    let system = "You are a careful assistant for a hardware store. ".repeat(20);
    let ask = |q: &str| chat_with_system(&system, q);
    let first = engine.submit(greedy(ask("Do you sell hammers?"), 4)).unwrap().collect().await.unwrap();
    assert_eq!(first.usage.cached_tokens, 0);
    let mut g = engine.submit(greedy(ask("What time do you open?"), 4)).unwrap();
    let Some(GenerateEvent::Started { prompt_tokens, cached_tokens }) = g.next().await else { panic!() };
    // The whole system prompt (and the template's preamble) came from the cache.
    assert!(cached_tokens >= 200, "cached {cached_tokens} of {prompt_tokens}");
    assert!(cached_tokens < prompt_tokens);
    let second = g.collect().await.unwrap();
    assert_eq!(second.usage.cached_tokens, cached_tokens);
    assert!(engine.stats().totals.cached_tokens >= cached_tokens as u64);
}

/// Gemma 3's sliding-window layers keep only the last 512 positions of a sequence, and a copy
/// of an idle slot to host memory leaves the rest out. A prompt that branches off such a copy
/// (the same long system prompt, another question) cannot be continued from it: the window of
/// its next token reaches back to positions the copy lacks. It is computed again, and answers
/// exactly as on a fresh engine (before, it was continued over the hole).
#[tokio::test]
async fn a_long_prompt_brought_back_from_host_memory_is_not_continued_over_a_hole() {
    let engine = load(2048, 2);
    let system = "You are a careful assistant for a hardware store. ".repeat(60);
    let ask = |q: &str| chat_with_system(&system, q);
    let first = engine.submit(greedy(ask("Do you sell hammers?"), 4)).unwrap().collect().await.unwrap();
    assert!(first.usage.prompt_tokens > 600, "{:?}", first.usage);
    // Another request runs meanwhile: the first slot leaves the KV cache for host memory.
    engine.submit(forced_length(chat("Say something."), 8)).unwrap().collect().await.unwrap();
    let branched = engine.submit(greedy(ask("What time do you open?"), 12)).unwrap().collect().await.unwrap();
    // Not the ~600-token system prompt: at most the chat template's opening tokens, which
    // another slot lends.
    assert!(branched.usage.cached_tokens < 16, "{:?}", branched.usage);
    let fresh = load(2048, 2);
    let cold = fresh.submit(greedy(ask("What time do you open?"), 12)).unwrap().collect().await.unwrap();
    assert_eq!(branched.text, cold.text);
}

#[tokio::test]
async fn priorities_are_accepted_and_served() {
    let engine = load(1024, 1);
    let mut reqs = Vec::new();
    for p in [Priority::Evaluation, Priority::Drill, Priority::Live] {
        let mut r = forced_length(chat("Say something."), 3);
        r.priority = p;
        reqs.push(engine.submit(r).unwrap());
    }
    for g in reqs {
        assert_eq!(g.collect().await.unwrap().usage.completion_tokens, 3);
    }
}

#[tokio::test]
async fn tools_with_a_builtin_template_are_unsupported() {
    let engine = load(512, 1);
    let prompt = Prompt::Chat {
        messages: vec![ChatMessage::new("user", "weather?")],
        tools: vec![json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}})],
    };
    match engine.submit(greedy(prompt, 8)) {
        Err(EngineError::Unsupported(what)) => assert!(what.contains("tools"), "{what}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[tokio::test]
async fn embeddings_are_normalized_vectors() {
    let engine = load(512, 1);
    let out = engine.embed(vec!["hello world".into(), "a hammer and some nails".into()]).await.unwrap();
    assert_eq!(out.vectors.len(), 2);
    assert_eq!(out.vectors[0].len(), out.vectors[1].len());
    assert!(out.vectors[0].len() >= 64);
    for v in &out.vectors {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }
    assert_ne!(out.vectors[0], out.vectors[1]);
    assert!(out.prompt_tokens >= 4);
    // Generation still works after the embedding context was created.
    let c = engine.submit(forced_length(chat("hi"), 2)).unwrap().collect().await.unwrap();
    assert_eq!(c.usage.completion_tokens, 2);
}

#[tokio::test]
async fn streamed_text_is_valid_and_complete() {
    let engine = load(1024, 1);
    let g = engine.submit(forced_length(Prompt::Text("Les élèves français écrivent".into()), 24)).unwrap();
    let evs = events(g).await;
    let mut text = String::new();
    for e in &evs[1..evs.len() - 1] {
        match e {
            GenerateEvent::Text(t) => {
                assert!(!t.is_empty());
                text.push_str(t);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(evs.last(), Some(GenerateEvent::Done { finish: FinishReason::Length, .. })));
    assert!(!text.contains('\u{fffd}'), "{text:?}");
}

#[test]
fn a_missing_chat_template_is_reported_at_load() {
    let mut cfg = config(512, 1);
    cfg.chat_template = Some("no-such-template".into());
    let err = EngineRegistry::load_blocking(&[cfg], &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("chat_template"), "{err}");
}

#[test]
fn config_round_trip_for_the_test_model() {
    let cfg: ModelConfig = serde_json::from_value(json!({
        "name": "gemma-test",
        "path": model_path(),
        "sha256": SHA256,
        "context": 1024,
        "parallel": 2,
        "chat_template": "gemma",
        "max_wait": "5s"
    }))
    .unwrap();
    cfg.validate(0).unwrap();
    assert_eq!(cfg.max_wait, Duration::from_secs(5));
}

#[tokio::test]
async fn concurrent_requests_share_one_system_prompt_and_answer_as_alone() {
    let system = "You are the triage assistant of the support desk. ".repeat(20);
    let prompt = |q: &str| chat_with_system(&system, q);
    let questions = ["The printer is on fire.", "My password expired.", "The VPN drops every hour.", "Invoice 42 is wrong."];
    // Each answer alone, on a fresh engine (nothing cached, nothing shared).
    let mut alone = Vec::new();
    for q in questions {
        let engine = load(1024, 1);
        alone.push(engine.submit(forced_length(prompt(q), 8)).unwrap().collect().await.unwrap());
        assert_eq!(alone.last().unwrap().usage.cached_tokens, 0);
    }
    // All four at once at a cold engine: the system prompt is computed once.
    let engine = load(1024, 4);
    let gens: Vec<_> = questions.iter().map(|q| engine.submit(forced_length(prompt(q), 8)).unwrap()).collect();
    let together = futures_util::future::join_all(gens.into_iter().map(|g| g.collect())).await;
    let n_system = engine.count_tokens(&prompt("")).unwrap().min(alone[0].usage.prompt_tokens);
    let mut shared = 0;
    for (c, a) in together.iter().zip(&alone) {
        let c = c.as_ref().unwrap();
        assert_eq!(c.usage.prompt_tokens, a.usage.prompt_tokens);
        assert_eq!(c.usage.completion_tokens, 8);
        assert_eq!(c.text, a.text, "a shared prefix must not change the answer");
        if c.usage.cached_tokens > 0 {
            shared += 1;
            assert!(c.usage.cached_tokens + 20 >= n_system, "{} of ~{n_system} system tokens shared", c.usage.cached_tokens);
        }
    }
    assert_eq!(shared, 3, "three of the four took the system prompt from the first: {together:?}");
}
