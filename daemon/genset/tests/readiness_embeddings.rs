//! With `[evaluation] embedding_model`, generation use cases are scored with an embedding
//! cosine term from the local engine (the real test model), beside ROUGE-L and chrF.
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
    let list: Value = d.http.get(format!("{}/api/v1/evaluations?use_case=gen", d.admin)).bearer_auth(&d.token).send().await.unwrap().json().await.unwrap();
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
