//! Failover to the local engine, with the real test model (Gemma 3 270M) and the cloud
//! simulator: a cut stream continued locally, a hard cut-off under load with zero
//! client-visible failures, and the local engine closed to keys the cloud never accepted.
//!
//! `hard_cut_off_under_load` also writes its figures as JSON to `$GENSET_FAILOVER_FIGURES`
//! when set (bench/failover/run.sh records them in docs/benchmarks.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, start_daemon};
use genset_sim::{Fault, FaultMode, SimHandle, SimOptions};
use serde_json::{Value, json};

const SHA: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

fn model_path() -> std::path::PathBuf {
    let p = match std::env::var_os("GENSET_TEST_MODEL") {
        Some(p) => p.into(),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/genset/models/gemma-3-270m-q4_k_m.gguf"),
    };
    assert!(p.exists(), "the test model is missing at {}: run provisioning/fetch-test-model.sh", p.display());
    p
}

fn models() -> String {
    format!(
        "[[models]]\nname = \"gemma\"\npath = \"{}\"\nsha256 = \"{SHA}\"\ncontext = 1024\nparallel = 4\nthreads = 2\nchat_template = \"gemma\"\n",
        model_path().display()
    )
}

const FAILOVER: &str = "[failover]\nmax_attempts = 3\nretry_backoff = \"50ms\"\nmin_volume = 4\nprobe_interval = \"200ms\"\n\
    probe_interval_failing = \"100ms\"\nopen_base = \"300ms\"\nrecovery_hold = \"500ms\"\nmin_dwell = \"1s\"\n";

/// Flip the daemon to force-local through the admin API.
async fn force_local(d: &Daemon, reason: &str) {
    let r = d
        .http
        .post(format!("{}/api/v1/mode", d.admin))
        .bearer_auth(&d.token)
        .json(&json!({"mode": "force-local", "reason": reason}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "force-local: {}", r.text().await.unwrap_or_default());
}

struct Rig {
    sim: SimHandle,
    d: Daemon,
    key: String,
    _dir: tempfile::TempDir,
}

async fn rig(passthrough: bool) -> Rig {
    let sim = genset_sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "sk-appliance").unwrap();
    let key_line = if passthrough { String::new() } else { format!("api_key_file = \"{}\"\n", dir.path().join("key").display()) };
    let d = start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\n{key_line}first_byte_timeout = \"2s\"\nidle_timeout = \"2s\"\n\
         [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\nchain = [\"openai\", \"local:gemma\"]\n\
         on_cutoff = \"serve-local\"\nlocal_ready = true\n{}{}",
        sim.base_url(),
        models(),
        // The benchmark runs with the shipped defaults; tests with shorter timers.
        if std::env::var_os("GENSET_FAILOVER_DEFAULTS").is_some() { "" } else { FAILOVER }
    ))
    .await;
    let key = if passthrough { String::new() } else { d.create_key(json!({"use_case": "chat"})).await };
    Rig { sim, d, key, _dir: dir }
}

async fn chat(d: &Daemon, key: &str, body: Value) -> reqwest::Response {
    d.http
        .post(format!("{}/v1/chat/completions", d.proxy))
        .bearer_auth(key)
        .header("x-genset-use-case", "chat")
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_cut_stream_is_continued_by_the_local_model() {
    let r = rig(false).await;
    r.sim.set_fault(Fault::new(FaultMode::CutMidStream).path("/v1/chat/completions").after_chunks(3).count(1)).await.unwrap();
    let resp = chat(
        &r.d,
        &r.key,
        json!({"model": "gpt-test", "stream": true, "max_tokens": 12, "temperature": 0,
               "messages": [{"role": "user", "content": "say: The quick brown fox jumps over the lazy dog"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let raw = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    let mut text = String::new();
    let mut done = false;
    for block in raw.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let data = block.strip_prefix("data: ").unwrap_or_else(|| panic!("{block:?}"));
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("malformed event {e}: {data}"));
        assert!(v.get("error").is_none(), "{raw}");
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(c);
        }
    }
    assert!(done, "one complete answer ends with [DONE]: {raw}");
    assert!(text.starts_with("The quick brown"), "the cloud's part first: {text:?}");
    assert!(text.len() > "The quick brown".len(), "then the local model's continuation: {text:?}");
    let rows = r.d.wait_rows(2).await;
    let fin = rows.iter().find(|x| x.final_attempt).unwrap();
    assert_eq!(fin.served_by, "local:gemma");
    assert_eq!(fin.rescue.as_deref(), Some("continuation"));
    assert!(fin.completed, "{fin:?}");
    r.d.shutdown().await;
    r.sim.stop().await;
}

#[actix_web::test]
async fn a_passthrough_key_the_cloud_never_accepted_cannot_use_the_local_engine() {
    let r = rig(true).await;
    let body = json!({"model": "gpt-test", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "say: hello"}]});
    assert_eq!(chat(&r.d, "sk-known-user", body.clone()).await.status(), 200);
    r.sim.set_fault(FaultMode::Refuse).await.unwrap();
    let known = chat(&r.d, "sk-known-user", body.clone()).await;
    assert_eq!(known.status(), 200);
    assert_eq!(known.headers()["x-genset-served-by"], "local:gemma");
    let stranger = chat(&r.d, "sk-never-seen", body.clone()).await;
    assert_eq!(stranger.status(), 401, "an outage does not open the GPU to anyone on the network");
    let v: Value = stranger.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("accepted"), "{v}");
    r.sim.clear_fault().await.unwrap();
    r.d.shutdown().await;
    r.sim.stop().await;
}

/// Steady traffic from several clients, then a hard cut-off of the primary (its port closed,
/// open connections dropped), then recovery.
#[actix_web::test]
async fn hard_cut_off_under_load() {
    let r = Arc::new(rig(false).await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let clients = 4;
    let mut tasks = vec![];
    for c in 0..clients {
        let (r, stop, ok, failures) = (r.clone(), stop.clone(), ok.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = json!({"model": "gpt-test", "max_tokens": 4, "temperature": 0,
                                  "messages": [{"role": "user", "content": format!("say: client {c} request {i}")}]});
                let resp = chat(&r.d, &r.key, body).await;
                let status = resp.status();
                let served = resp.headers().get("x-genset-served-by").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                if status == 200 && v["choices"][0]["message"]["content"].is_string() {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.lock().push(format!("{status} {served} {v}"));
                }
            }
        }));
    }
    let wait_for = |what: &'static str, pred: Box<dyn Fn(&Value) -> bool + Send>| {
        let r = r.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let s: Value = r.d.admin_json("/api/v1/failover").await;
                if pred(&s) {
                    return Instant::now();
                }
                assert!(Instant::now() < deadline, "timed out waiting for {what}: {s}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Normal traffic first.
    let t_start = Instant::now();
    while ok.load(Ordering::Relaxed) < 20 {
        assert!(t_start.elapsed() < Duration::from_secs(20), "no steady traffic");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cut_wall = genset::record::now_ms();
    let t_cut = Instant::now();
    r.sim.set_fault(FaultMode::Refuse).await.unwrap();
    let t_open =
        wait_for("the breaker to open", Box::new(|s| s["upstreams"][0]["breaker"] == "open" || s["upstreams"][0]["failover"] == true))
            .await;
    let ok_at_cut = ok.load(Ordering::Relaxed);
    // The outage lasts until the local model has served a good share of requests.
    while ok.load(Ordering::Relaxed) < ok_at_cut + 24 {
        assert!(t_cut.elapsed() < Duration::from_secs(60), "local serving too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recover_wall = genset::record::now_ms();
    let t_recover = Instant::now();
    r.sim.clear_fault().await.unwrap();
    let t_back = wait_for("the return to the cloud", Box::new(|s| s["effective"] == "cloud")).await;
    let back_wall = genset::record::now_ms();
    let ok_at_back = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < ok_at_back + 16 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().clone();
    assert!(failures.is_empty(), "client-visible failures: {failures:?}");

    // What the store says about the outage window.
    let rows = loop {
        let rows =
            r.d.running().store.list_exchanges(&genset::store::TrafficFilter { limit: 100_000, ..Default::default() }).await.unwrap();
        if rows.iter().filter(|x| x.final_attempt).count() as u64 >= ok.load(Ordering::Relaxed) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let during = |x: &&genset::store::ExchangeRecord| x.ts_ms >= cut_wall && x.ts_ms < recover_wall;
    let finals_out: Vec<_> = rows.iter().filter(during).filter(|x| x.final_attempt).collect();
    let cloud_attempts_out = rows.iter().filter(during).filter(|x| x.served_by == "cloud:openai").count();
    let local_out = finals_out.iter().filter(|x| x.served_by == "local:gemma").count();
    let rescued_out = finals_out.iter().filter(|x| x.rescue.is_some()).count();
    // Every row is one attempt: the final one answered, the others failed before it.
    let attempts_per_request = rows.iter().filter(during).count() as f64 / finals_out.len().max(1) as f64;
    let after: Vec<_> = rows.iter().filter(|x| x.final_attempt && x.ts_ms >= back_wall).collect();
    let figures = json!({
        "clients": clients,
        "requests_total": ok.load(Ordering::Relaxed),
        "client_visible_failures": failures.len(),
        "cut_to_breaker_open_ms": (t_open - t_cut).as_millis(),
        "outage_requests": finals_out.len(),
        "outage_served_locally": local_out,
        "outage_rescued": rescued_out,
        "outage_cloud_attempts": cloud_attempts_out,
        "outage_upstream_attempts_per_request": attempts_per_request,
        "recovery_to_cloud_ms": (t_back - t_recover).as_millis(),
        "after_recovery_served_by_cloud": after.iter().filter(|x| x.served_by == "cloud:openai").count(),
        "after_recovery_requests": after.len(),
    });
    eprintln!("failover figures: {figures}");
    if let Some(p) = std::env::var_os("GENSET_FAILOVER_FIGURES") {
        std::fs::write(p, serde_json::to_vec_pretty(&figures).unwrap()).unwrap();
    }
    assert!(t_open - t_cut <= Duration::from_secs(1), "breaker open within 1 s of the cut: {figures}");
    // Requests that started once the cut-off was known were all served locally (one that
    // started at the very moment of the cut may still have been answered by the cloud).
    let open_wall = cut_wall + (t_open - t_cut).as_millis() as i64;
    let after_open: Vec<_> = finals_out.iter().filter(|x| x.ts_ms > open_wall).collect();
    assert!(!after_open.is_empty() && after_open.iter().all(|x| x.served_by == "local:gemma"), "the outage served locally: {figures}");
    assert!(attempts_per_request <= 1.2, "{figures}");
    assert!(!after.is_empty() && after.iter().all(|x| x.served_by == "cloud:openai"), "back to the cloud: {figures}");
    let r = Arc::try_unwrap(r).ok().unwrap();
    r.d.shutdown().await;
    r.sim.stop().await;
}

#[actix_web::test]
async fn failover_rate_limits_protect_the_local_engine() {
    let sim = genset_sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "sk-appliance").unwrap();
    let d = start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\napi_key_file = \"{}\"\n\
         [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\nchain = [\"openai\", \"local:gemma\"]\n\
         on_cutoff = \"serve-local\"\nlocal_ready = true\nlocal_rate = \"3/min\"\n{}{FAILOVER}local_rate_per_key = \"2/min\"\n",
        sim.base_url(),
        dir.path().join("key").display(),
        models()
    ))
    .await;
    let mut keys = vec![];
    for _ in 0..2 {
        keys.push(d.create_key(json!({"use_case": "chat"})).await);
    }
    force_local(&d, "rate-limit test").await;
    let body = json!({"model": "m", "max_tokens": 1, "temperature": 0, "messages": [{"role": "user", "content": "hi"}]});
    // Per key: 2 a minute.
    assert_eq!(chat(&d, &keys[0], body.clone()).await.status(), 200);
    assert_eq!(chat(&d, &keys[0], body.clone()).await.status(), 200);
    let limited = chat(&d, &keys[0], body.clone()).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().get("retry-after").is_some(), "{:?}", limited.headers());
    let v: Value = limited.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("client key"), "{v}");
    // Per use case: 3 a minute, whoever asks.
    assert_eq!(chat(&d, &keys[1], body.clone()).await.status(), 200);
    let v: Value = chat(&d, &keys[1], body.clone()).await.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("use case"), "{v}");
    d.shutdown().await;
    sim.stop().await;
}

#[actix_web::test]
async fn local_first_and_local_only_use_cases_are_served_locally_on_purpose() {
    let sim = genset_sim::start(SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "sk-appliance").unwrap();
    let d = start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\napi_key_file = \"{}\"\n\
         [[use_cases]]\nname = \"cheap\"\nmatch = {{ header = \"x-genset-use-case\", value = \"cheap\" }}\nchain = [\"openai\", \"local:gemma\"]\nrouting = \"local-first\"\nlocal_ready = true\n\
         [[use_cases]]\nname = \"private\"\nmatch = {{ header = \"x-genset-use-case\", value = \"private\" }}\nchain = [\"local:gemma\"]\nrouting = \"local-only\"\n\
         [[use_cases]]\nname = \"unproven\"\nmatch = {{ header = \"x-genset-use-case\", value = \"unproven\" }}\nchain = [\"openai\", \"local:gemma\"]\nrouting = \"local-first\"\n\
         {}{FAILOVER}",
        sim.base_url(),
        dir.path().join("key").display(),
        models()
    ))
    .await;
    let key = d.create_key(json!({"name": "any"})).await;
    let body = json!({"model": "gpt-test", "max_tokens": 2, "temperature": 0, "messages": [{"role": "user", "content": "say: hi"}]});
    let ask = |uc: &'static str| {
        d.http.post(format!("{}/v1/chat/completions", d.proxy)).bearer_auth(&key).header("x-genset-use-case", uc).json(&body).send()
    };
    let served = |r: &reqwest::Response| r.headers()["x-genset-served-by"].to_str().unwrap().to_string();
    let r = ask("cheap").await.unwrap();
    assert_eq!((r.status().as_u16(), served(&r).as_str()), (200, "local:gemma"));
    let r = ask("private").await.unwrap();
    assert_eq!((r.status().as_u16(), served(&r).as_str()), (200, "local:gemma"));
    // local-first without readiness stays on the cloud.
    let r = ask("unproven").await.unwrap();
    assert_eq!((r.status().as_u16(), served(&r).as_str()), (200, "cloud:openai"));
    assert_eq!(sim.stats().path("/v1/chat/completions"), 1, "only the unproven use case reached the cloud");
    let rows = d.wait_rows(3).await;
    assert_eq!(rows.iter().filter(|x| x.rescue.as_deref() == Some("local-policy")).count(), 2, "{rows:?}");
    d.shutdown().await;
    sim.stop().await;
}

/// A use case that names neither `upstream` nor `chain` (only how to recognise its traffic),
/// with a local model configured: its cloud step is the routing default (the API's upstream),
/// and the first model is appended after it for a cut-off. It used to get the model alone, so
/// in normal times its traffic was refused with `no_route` instead of reaching the cloud.
#[actix_web::test]
async fn a_use_case_without_a_chain_goes_to_the_cloud_and_falls_back_to_the_model() {
    let sim = genset_sim::start(SimOptions::default()).await.unwrap();
    let d = start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\n\
         [[use_cases]]\nname = \"triage\"\nmatch = {{ header = \"x-genset-use-case\", value = \"triage\" }}\nlocal_ready = true\n\
         {}{FAILOVER}",
        sim.base_url(),
        models()
    ))
    .await;
    let body = json!({"model": "gpt-test", "max_tokens": 2, "temperature": 0, "messages": [{"role": "user", "content": "say: hi"}]});
    let ask = || {
        d.http
            .post(format!("{}/v1/chat/completions", d.proxy))
            .bearer_auth("sk-client-own-key")
            .header("x-genset-use-case", "triage")
            .json(&body)
            .send()
    };
    let served = |r: &reqwest::Response| r.headers().get("x-genset-served-by").map(|v| v.to_str().unwrap().to_string());
    let r = ask().await.unwrap();
    let (status, by) = (r.status().as_u16(), served(&r));
    assert_eq!((status, by.as_deref()), (200, Some("cloud:openai")), "{}", r.text().await.unwrap());
    assert_eq!(sim.stats().path("/v1/chat/completions"), 1);

    force_local(&d, "chain test").await;
    let r = ask().await.unwrap();
    let (status, by) = (r.status().as_u16(), served(&r));
    assert_eq!((status, by.as_deref()), (200, Some("local:gemma")), "{}", r.text().await.unwrap());
    assert_eq!(sim.stats().path("/v1/chat/completions"), 1, "forced local: the cloud is not asked");
    d.shutdown().await;
    sim.stop().await;
}
