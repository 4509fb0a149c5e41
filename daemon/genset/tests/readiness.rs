//! Continuous synthetic testing (issue 6) end to end: the real test model (Gemma 3 270M, base)
//! as the local model, the simulator as the cloud, traffic recorded through the proxy, one
//! evaluation round, and the readiness it leads to.
//!
//! Two use cases whose agreement with the cloud is clearly different:
//! - `echo`: a classification whose label is in the prompt: a few-shot conversation of
//!   `say:WORD` -> `WORD` turns ending in `say:LABEL`. The simulator answers exactly `LABEL`
//!   (its `say:` rule); a tiny base model continues the pattern.
//! - `triage`: "which team handles this ticket?"; the simulator answers an arbitrary sentence
//!   (a hash of the request picks 12-24 words) the local model cannot reproduce.
//!
//! The test model is `$GENSET_TEST_MODEL`, else `~/.cache/genset/models/gemma-3-270m-q4_k_m.gguf`
//! (`provisioning/fetch-test-model.sh`); the test fails (never skips) when it is missing.
//! `GENSET_TEST_THREADS` sets llama.cpp's threads (default 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Fixture, start_daemon_with_store};
use serde_json::{Value, json};

const SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

const WORDS: [&str; 24] = [
    "red", "blue", "green", "yellow", "purple", "orange", "black", "white", "brown", "pink", "gray", "silver", "gold", "cyan", "violet",
    "indigo", "maroon", "navy", "olive", "teal", "lime", "coral", "beige", "amber",
];

const TICKETS: [&str; 24] = [
    "My invoice shows the wrong amount",
    "The app crashes when I open settings",
    "I want to cancel my subscription",
    "The parcel arrived damaged",
    "How do I reset my password",
    "The delivery is two weeks late",
    "I was charged twice this month",
    "The printer driver does not install",
    "Can I change my shipping address",
    "The discount code is not accepted",
    "My account was locked after login attempts",
    "The manual is missing from the box",
    "I need a copy of last year's receipts",
    "The website is very slow today",
    "The product color differs from the photo",
    "I want to upgrade to the business plan",
    "The refund has not arrived yet",
    "The chat widget does not load",
    "I received someone else's order",
    "The warranty card is unreadable",
    "Can I pay by bank transfer",
    "The battery drains within an hour",
    "I forgot which email I registered with",
    "The export to CSV fails",
];

fn model_path() -> PathBuf {
    let path = match std::env::var_os("GENSET_TEST_MODEL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set")).join(".cache/genset/models/gemma-3-270m-q4_k_m.gguf"),
    };
    assert!(
        path.is_file(),
        "the test model is missing at {}: run provisioning/fetch-test-model.sh or set GENSET_TEST_MODEL",
        path.display()
    );
    path
}

fn threads() -> u32 {
    std::env::var("GENSET_TEST_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1)
}

/// The `echo` request for `WORDS[i]`: three few-shot turns, then `say:LABEL`.
fn echo_request(i: usize) -> Value {
    let shot = |k: usize| WORDS[(i + 7 + 5 * k) % WORDS.len()];
    let mut messages = vec![json!({"role": "system", "content": "Repeat the word that follows say: and nothing else."})];
    for k in 0..3 {
        messages.push(json!({"role": "user", "content": format!("say:{}", shot(k))}));
        messages.push(json!({"role": "assistant", "content": shot(k)}));
    }
    messages.push(json!({"role": "user", "content": format!("say:{}", WORDS[i])}));
    json!({"model": "gpt-4o-mini", "messages": messages, "max_tokens": 1})
}

fn triage_request(i: usize) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "stream": i.is_multiple_of(2),
        "max_tokens": 24,
        "messages": [
            {"role": "system", "content": "You route support tickets to a team. Answer with the team's name."},
            {"role": "user", "content": format!("Ticket {i}: {}. Which team should handle it?", TICKETS[i])}
        ]
    })
}

fn config(db_dir: &std::path::Path, webhook: &str) -> String {
    let labels: Vec<String> = WORDS.iter().map(|w| format!("{w:?}")).collect();
    format!(
        r#"
[[upstreams]]
name = "openai"
api = "openai"
base_url = "{{SIM}}/v1"

[[models]]
name = "gemma"
path = "{model}"
sha256 = "{SHA256}"
context = 1024
parallel = 2
threads = {threads}
chat_template = "gemma"
max_wait = "120s"

[evaluation]
enabled = false          # rounds run when the test asks (POST /api/v1/evaluations/run)
replays_per_round = 24
window = "1d"
timeout = "60s"
webhook = "{webhook}/hook"

[[use_cases]]
name = "echo"
match = {{ header = "x-genset-use-case", value = "echo" }}
chain = ["openai", "local:gemma"]
kind = "classification"
labels = [{labels}]
readiness = {{ ready_score = 0.6, marginal_score = 0.3, min_samples = 20 }}
canaries = [
  {{ name = "teal", messages = [
      {{ role = "user", content = "say:red" }}, {{ role = "assistant", content = "red" }},
      {{ role = "user", content = "say:teal" }} ],
    assertions = [ {{ label_in = [{labels}] }}, {{ max_latency_ms = 60000 }} ] }},
]

[[use_cases]]
name = "triage"
match = {{ header = "x-genset-use-case", value = "triage" }}
chain = ["openai", "local:gemma"]
kind = "classification"
readiness = {{ ready_score = 0.6, marginal_score = 0.3, min_samples = 20 }}
# db: {db}
"#,
        model = model_path().display(),
        threads = threads(),
        labels = labels.join(", "),
        db = db_dir.display(),
    )
}

async fn post(http: &reqwest::Client, url: &str, use_case: &str, body: &Value) {
    let resp = http.post(url).bearer_auth("sk-client").header("x-genset-use-case", use_case).json(body).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_follow_agreement_with_the_cloud() {
    let sim = genset_sim::start(genset_sim::SimOptions::default()).await.unwrap();
    let hook = Fixture::start().await;
    hook.set_sized(200, "application/json", b"{}");
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("genset.db").display());
    let toml = config(db.path(), &hook.url).replace("{SIM}", &sim.base_url());
    let d = start_daemon_with_store(&toml, Some(&url)).await;

    // Record traffic through the proxy: both use cases, answered by the simulator.
    let chat = format!("{}/v1/chat/completions", d.proxy);
    for i in 0..WORDS.len() {
        post(&d.http, &chat, "echo", &echo_request(i)).await;
        post(&d.http, &chat, "triage", &triage_request(i)).await;
    }
    let rows = d.wait_rows(2 * WORDS.len()).await;
    assert!(rows.iter().all(|r| r.served_by == "cloud:openai" && r.completed), "{:?}", rows.first());

    // No verdict before the first round.
    assert!(d.running().controller.verdict("echo").is_none());

    // One round, through the admin API.
    let started = Instant::now();
    let resp = d.http.post(format!("{}/api/v1/evaluations/run", d.admin)).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    eprintln!("round took {:?}: {report:#}", started.elapsed());
    let uc = |name: &str| report["use_cases"].as_array().unwrap().iter().find(|u| u["use_case"] == name).cloned().unwrap();
    let (echo, triage) = (uc("echo"), uc("triage"));
    // 24 distinct prompts each (the system prompt is shared: deduplication is by the whole prompt).
    assert_eq!((echo["candidates"].as_u64(), echo["chosen"].as_u64(), echo["replays"].as_u64()), (Some(24), Some(24), Some(24)), "{echo}");
    assert_eq!(echo["canaries"], 1);
    assert_eq!(
        (triage["chosen"].as_u64(), triage["replays"].as_u64(), triage["canaries"].as_u64()),
        (Some(24), Some(24), Some(0)),
        "{triage}"
    );
    assert_eq!(report["paused"], Value::Null);

    // Readiness: echo ready, triage not ready, with plausible intervals.
    let r_echo = d.admin_json("/api/v1/use-cases/echo/readiness?worst=3").await;
    let r_triage = d.admin_json("/api/v1/use-cases/triage/readiness?worst=3").await;
    eprintln!("echo: {r_echo:#}\ntriage: {r_triage:#}");
    let figures = |v: &Value| {
        (
            v["score"].as_f64().unwrap(),
            v["interval"]["lower"].as_f64().unwrap(),
            v["interval"]["upper"].as_f64().unwrap(),
            v["n"].as_u64().unwrap(),
        )
    };
    let (s, lo, hi, n) = figures(&r_echo);
    assert_eq!(n, 25, "24 replays and 1 canary");
    assert!(s >= 0.8 && lo >= 0.6 && lo <= s && s <= hi && hi <= 1.0, "echo score {s} [{lo}, {hi}]");
    assert_eq!(r_echo["verdict"], "ready", "{r_echo}");
    let (s, lo, hi, n) = figures(&r_triage);
    assert_eq!(n, 24);
    assert!(s <= 0.15 && lo >= 0.0 && lo <= s && s <= hi && hi < 0.3, "triage score {s} [{lo}, {hi}]");
    assert_eq!(r_triage["verdict"], "not-ready", "{r_triage}");
    // Wilson at 95%: hand-checked for the mean and n.
    let wilson_upper = |p: f64, n: f64| {
        let z2 = 1.959964f64.powi(2);
        ((p + z2 / (2.0 * n)) + 1.959964 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n)
    };
    assert!((hi - wilson_upper(s, n as f64)).abs() < 1e-9);

    // Worst examples side by side, history, the verdict published to the failover policy.
    let worst = &r_triage["worst"][0];
    assert!(worst["prompt"].as_str().unwrap().starts_with("Ticket "), "{worst}");
    assert!(!worst["cloud_answer"].as_str().unwrap().is_empty() && worst["local_answer"].is_string(), "{worst}");
    assert_eq!(r_echo["history"].as_array().unwrap().len(), 1);
    assert_eq!(d.running().controller.verdict("echo").map(|v| v.verdict), Some(genset_eval::Verdict::Ready));
    assert_eq!(d.running().controller.verdict("triage").map(|v| v.verdict), Some(genset_eval::Verdict::NotReady));

    // A verdict change is an event and a webhook POST.
    let events = d.running().store.list_events(100).await.unwrap();
    let readiness_events: Vec<_> = events.iter().filter(|e| e.kind == "readiness").collect();
    assert_eq!(readiness_events.len(), 2, "{events:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = hook.seen.lock().clone();
        if seen.len() >= 2 {
            let bodies: Vec<Value> = seen.iter().map(|s| serde_json::from_slice(&s.body).unwrap()).collect();
            assert!(seen.iter().all(|s| s.path == "/hook"));
            assert!(bodies.iter().any(|b| b["use_case"] == "echo" && b["to"] == "ready" && b["from"].is_null()), "{bodies:?}");
            assert!(bodies.iter().any(|b| b["use_case"] == "triage" && b["to"] == "not-ready"), "{bodies:?}");
            break;
        }
        assert!(Instant::now() < deadline, "webhook not called: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // gensetctl readiness: text for people, JSON for scripts.
    let ctl = |args: &[&str]| {
        let mut all = vec!["gensetctl", "--admin-url", &d.admin, "--admin-token", &d.token];
        all.extend_from_slice(args);
        use clap::Parser;
        genset::ctl::Cli::parse_from(all)
    };
    let text = genset::ctl::run(ctl(&["readiness"])).await.unwrap();
    assert!(text.contains("echo") && text.contains("ready") && text.contains("triage") && text.contains("not-ready"), "{text}");
    let text = genset::ctl::run(ctl(&["readiness", "triage"])).await.unwrap();
    assert!(text.contains("worst examples") && text.contains("cloud:") && text.contains("local:"), "{text}");
    let json_out: Value = serde_json::from_str(&genset::ctl::run(ctl(&["--json", "readiness", "echo"])).await.unwrap()).unwrap();
    assert_eq!(json_out["verdict"], "ready");

    // A restart keeps the verdicts (read back from the store at start).
    d.shutdown().await;
    let d = start_daemon_with_store(&toml, Some(&url)).await;
    assert_eq!(d.running().controller.verdict("echo").map(|v| v.verdict), Some(genset_eval::Verdict::Ready));
    assert_eq!(d.running().controller.verdict("triage").map(|v| v.verdict), Some(genset_eval::Verdict::NotReady));
    d.shutdown().await;
    hook.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_pause_while_a_cut_off_is_served() {
    let sim = genset_sim::start(genset_sim::SimOptions::default()).await.unwrap();
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("genset.db").display());
    let toml = config(db.path(), "http://127.0.0.1:9").replace("{SIM}", &sim.base_url());
    let d = start_daemon_with_store(&toml, Some(&url)).await;
    let chat = format!("{}/v1/chat/completions", d.proxy);
    post(&d.http, &chat, "echo", &echo_request(0)).await;
    d.wait_rows(1).await;
    d.running().controller.set_mode(genset::control::Mode::ForceLocal, "drill: cut-off", "test").unwrap();
    let report = d.running().evaluator.run_round().await;
    assert!(report.paused.as_deref().is_some_and(|p| p.contains("forced-local")), "{report:?}");
    assert!(report.use_cases.is_empty());
    let evals = d.running().store.list_evaluations(None, 10).await.unwrap();
    assert!(evals.is_empty());
    d.shutdown().await;
    sim.stop().await;
}
