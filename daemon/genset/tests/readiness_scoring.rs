//! Scoring extras: with `[evaluation] embedding_model`, generation use cases are scored with an embedding
//! cosine term from the local engine (the real test model), beside ROUGE-L and chrF; the judge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{Value, json};

const SHA: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

#[actix_web::test]
async fn generation_scores_carry_the_embedding_cosine() {
    let model = match std::env::var_os("GENSET_TEST_MODEL") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/genset/models/gemma-3-270m-q4_k_m.gguf"),
    };
    assert!(model.exists(), "the test model is missing: run provisioning/fetch-test-model.sh");
    let sim = genset_sim::start(genset_sim::SimOptions::default()).await.unwrap();
    let d = common::start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\n\
         [[models]]\nname = \"gemma\"\npath = \"{}\"\nsha256 = \"{SHA}\"\ncontext = 1024\nparallel = 2\nthreads = 2\nchat_template = \"gemma\"\n\
         [evaluation]\nenabled = false\nreplays_per_round = 3\nwindow = \"1d\"\ntimeout = \"60s\"\nembedding_model = \"gemma\"\n\
         [[use_cases]]\nname = \"gen\"\nmatch = {{ header = \"x-genset-use-case\", value = \"gen\" }}\nchain = [\"openai\", \"local:gemma\"]\nkind = \"generation\"\n",
        sim.base_url(),
        model.display()
    ))
    .await;
    for i in 0..3 {
        let r = d
            .http
            .post(format!("{}/v1/chat/completions", d.proxy))
            .bearer_auth("sk-client")
            .header("x-genset-use-case", "gen")
            .json(&json!({"model": "gpt-x", "max_tokens": 8, "messages": [{"role": "user", "content": format!("say: the weather is fine today number {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    d.wait_rows(3).await;
    let run = d.http.post(format!("{}/api/v1/evaluations/run", d.admin)).bearer_auth(&d.token).send().await.unwrap();
    assert!(run.status().is_success(), "{:?}", run.text().await);
    let list: Value = d.admin_json("/api/v1/evaluations?use_case=gen").await;
    let items = list["items"].as_array().or_else(|| list.as_array()).unwrap_or_else(|| panic!("{list}"));
    assert!(!items.is_empty(), "{list}");
    let with_cosine = items
        .iter()
        .filter(|e| {
            let detail = match &e["detail"] {
                Value::String(s) => serde_json::from_str::<Value>(s).unwrap_or(Value::Null),
                v => v.clone(),
            };
            detail["cosine"].as_f64().is_some_and(|c| (0.0..=1.0).contains(&c))
        })
        .count();
    assert!(with_cosine > 0, "no evaluation carries the cosine term: {list}");
    d.shutdown().await;
    sim.stop().await;
}

/// The judge grades sampled local answers through a cloud upstream (a scripted one here),
/// and stops at its daily token budget; what it spent is reported.
#[actix_web::test]
async fn the_judge_grades_within_its_daily_budget() {
    let model = match std::env::var_os("GENSET_TEST_MODEL") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/genset/models/gemma-3-270m-q4_k_m.gguf"),
    };
    let sim = genset_sim::start(genset_sim::SimOptions::default()).await.unwrap();
    let judge = common::Fixture::start().await;
    judge.set_sized(
        200,
        "application/json",
        br#"{"id":"j","object":"chat.completion","model":"judge-1","choices":[{"index":0,"message":{"role":"assistant","content":"{\"score\": 8, \"reason\": \"same meaning\"}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":25,"completion_tokens":5,"total_tokens":30}}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k"), "sk-judge").unwrap();
    let d = common::start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\n\
         [[upstreams]]\nname = \"judge\"\napi = \"openai\"\nbase_url = \"{}/v1\"\napi_key_file = \"{}\"\n\
         [[models]]\nname = \"gemma\"\npath = \"{}\"\nsha256 = \"{SHA}\"\ncontext = 1024\nparallel = 2\nthreads = 2\nchat_template = \"gemma\"\n\
         [evaluation]\nenabled = false\nreplays_per_round = 3\nwindow = \"1d\"\ntimeout = \"60s\"\n\
         judge = {{ upstream = \"judge\", model = \"judge-1\", sample = 1.0, daily_tokens = 50 }}\n\
         [[use_cases]]\nname = \"gen\"\nmatch = {{ header = \"x-genset-use-case\", value = \"gen\" }}\nupstream = \"openai\"\nchain = [\"openai\", \"local:gemma\"]\nkind = \"generation\"\n",
        sim.base_url(),
        judge.url,
        dir.path().join("k").display(),
        model.display()
    ))
    .await;
    for i in 0..3 {
        let r = d
            .http
            .post(format!("{}/v1/chat/completions", d.proxy))
            .bearer_auth("sk-client")
            .header("x-genset-use-case", "gen")
            .json(&json!({"model": "gpt-x", "max_tokens": 8, "messages": [{"role": "user", "content": format!("say: judged answer {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    d.wait_rows(3).await;
    let run = d.http.post(format!("{}/api/v1/evaluations/run", d.admin)).bearer_auth(&d.token).send().await.unwrap();
    assert!(run.status().is_success());
    let usage: Value = d.admin_json("/api/v1/evaluations/judge").await;
    // 30 tokens a grade, 50 a day: two grades fit (the budget is checked before each call), the third is skipped.
    assert_eq!(usage["usage"]["graded"], 2, "{usage}");
    assert_eq!(usage["usage"]["tokens_used"], 60, "{usage}");
    assert_eq!(usage["usage"]["skipped_for_budget"], 1, "{usage}");
    let list: Value = d.admin_json("/api/v1/evaluations?use_case=gen").await;
    let judged: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()))
        .map(|d| d["judge"].clone())
        .collect();
    assert_eq!(judged.iter().filter(|j| j["score"].as_f64() == Some(0.8) && j["reason"] == "same meaning").count(), 2, "{judged:?}");
    assert_eq!(judged.iter().filter(|j| j["skipped"].is_string()).count(), 1, "{judged:?}");
    // The judge saw the cloud's answer as the reference, with the appliance's own key.
    let seen = judge.last();
    assert_eq!(common::header(&seen, "authorization"), Some("Bearer sk-judge"));
    assert!(String::from_utf8_lossy(&seen.body).contains("Reference answer"), "the judge is asked to compare");
    d.shutdown().await;
    sim.stop().await;
    judge.stop().await;
}
