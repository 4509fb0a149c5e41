//! Chaos tests: every fault of the cloud simulator against the failover controller and the
//! fallback chain. A primary OpenAI-style simulator, a backup Anthropic-style simulator
//! (answers translated back to OpenAI for the client), clients with a genset virtual key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, start_daemon_with_store};
use genset_sim::{Fault, FaultMode, SimHandle, SimOptions};
use serde_json::{Value, json};

struct Rig {
    primary: SimHandle,
    backup: SimHandle,
    d: Daemon,
    key: String,
    _keys: tempfile::TempDir,
}

const FAILOVER: &str = "[failover]\nmax_attempts = 3\nretry_backoff = \"50ms\"\nmax_retry_wait = \"2s\"\nmin_volume = 4\n\
    probe_interval = \"200ms\"\nprobe_interval_failing = \"100ms\"\nopen_base = \"300ms\"\nrecovery_hold = \"500ms\"\nmin_dwell = \"1s\"\n";

async fn rig_with(extra: &str, store: Option<&str>) -> Rig {
    let primary = genset_sim::start(SimOptions::default()).await.unwrap();
    let backup = genset_sim::start(SimOptions::default()).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("openai"), "sk-appliance-openai").unwrap();
    std::fs::write(keys.path().join("claude"), "sk-ant-appliance").unwrap();
    let toml = format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\napi_key_file = \"{}\"\n\
         first_byte_timeout = \"1s\"\nidle_timeout = \"1s\"\n\
         [[upstreams]]\nname = \"claude\"\napi = \"anthropic\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\n\
         first_byte_timeout = \"1s\"\nidle_timeout = \"1s\"\nmodel_map = {{ \"*\" = \"claude-backup\" }}\n\
         [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\nchain = [\"openai\", \"claude\"]\non_cutoff = \"reject\"\n\
         {FAILOVER}{extra}",
        primary.base_url(),
        keys.path().join("openai").display(),
        backup.base_url(),
        keys.path().join("claude").display(),
    );
    let d = start_daemon_with_store(&toml, store).await;
    let key = d.create_key(json!({"name": "chaos", "use_case": "chat"})).await;
    Rig { primary, backup, d, key, _keys: keys }
}

async fn rig() -> Rig {
    rig_with("", None).await
}

/// Faults apply to chat requests only, never to the health probes.
const CHAT: &str = "/v1/chat/completions";
const SENTENCE: &str = "alpha beta gamma delta epsilon zeta eta theta";

impl Rig {
    async fn chat(&self, say: &str, stream: bool) -> reqwest::Response {
        self.chat_body(json!({
            "model": "gpt-test",
            "stream": stream,
            "messages": [{"role": "user", "content": format!("say: {say}")}],
        }))
        .await
    }

    async fn chat_body(&self, body: Value) -> reqwest::Response {
        self.d
            .http
            .post(format!("{}/v1/chat/completions", self.d.proxy))
            .bearer_auth(&self.key)
            .header("x-genset-use-case", "chat")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn snapshot(&self) -> Value {
        self.d.admin_json("/api/v1/failover").await
    }

    async fn breaker(&self, upstream: &str) -> String {
        let s = self.snapshot().await;
        s["upstreams"].as_array().unwrap().iter().find(|u| u["name"] == upstream).unwrap()["breaker"].as_str().unwrap().to_string()
    }

    /// Wait (polling, bounded) until `pred` holds on the controller's snapshot.
    async fn wait_snapshot(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.snapshot().await;
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {s}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Final rows (what clients got) and failed attempts.
    async fn rows(&self, finals: usize) -> (Vec<genset::store::ExchangeRecord>, Vec<genset::store::ExchangeRecord>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows =
                self.d.running().store.list_exchanges(&genset::store::TrafficFilter { limit: 1000, ..Default::default() }).await.unwrap();
            let (f, a): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.final_attempt);
            if f.len() >= finals {
                return (f, a);
            }
            assert!(Instant::now() < deadline, "expected {finals} final rows, have {}", f.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.d.shutdown().await;
        self.primary.stop().await;
        self.backup.stop().await;
    }
}

/// A client's view of an OpenAI stream: the text, whether it ended with [DONE], any error.
#[derive(Debug)]
struct Seen {
    text: String,
    done: bool,
    error: Option<Value>,
    finish: Option<String>,
    models: Vec<String>,
    clean_end: bool,
}

async fn read_stream(resp: reqwest::Response) -> Seen {
    let mut raw = Vec::new();
    let mut s = resp.bytes_stream();
    let mut clean_end = true;
    use futures_util::StreamExt;
    while let Some(c) = s.next().await {
        match c {
            Ok(c) => raw.extend_from_slice(&c),
            Err(_) => {
                clean_end = false;
                break;
            }
        }
    }
    let text = String::from_utf8(raw).unwrap();
    let mut seen = Seen { text: String::new(), done: false, error: None, finish: None, models: vec![], clean_end };
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let data = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect::<Vec<_>>().join("\n");
        assert!(!seen.done, "nothing may follow [DONE]: {text}");
        if data == "[DONE]" {
            seen.done = true;
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("the client got a malformed event ({e}): {data:?} in {text}"));
        if v.get("error").is_some() {
            seen.error = Some(v);
            continue;
        }
        if let Some(m) = v["model"].as_str() {
            seen.models.push(m.to_string());
        }
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            seen.text.push_str(c);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            seen.finish = Some(f.to_string());
        }
    }
    seen
}

#[actix_web::test]
async fn a_500_once_is_retried_on_the_same_upstream() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::Http500).path(CHAT).count(1)).await.unwrap();
    let resp = r.chat(SENTENCE, false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-genset-served-by"], "cloud:openai");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], SENTENCE);
    assert_eq!(r.primary.stats().path("/v1/chat/completions"), 2);
    assert_eq!(r.backup.stats().path("/v1/messages"), 0);
    let (finals, attempts) = r.rows(1).await;
    assert!(finals[0].completed && finals[0].rescue.as_deref() == Some("fallback"), "{finals:?}");
    assert_eq!(attempts.len(), 1);
    assert!(!attempts[0].completed && attempts[0].status == 500, "{attempts:?}");
    assert_eq!(r.breaker("openai").await, "closed", "one sporadic 500 does not open the breaker");
    r.stop().await;
}

#[actix_web::test]
async fn a_429_with_retry_after_is_honoured() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::RateLimit).path(CHAT).count(1).retry_after(1)).await.unwrap();
    let t0 = Instant::now();
    let resp = r.chat(SENTENCE, false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-genset-served-by"], "cloud:openai");
    assert!(t0.elapsed() >= Duration::from_millis(950), "Retry-After: 1 must be waited: {:?}", t0.elapsed());
    assert_eq!(r.primary.stats().path("/v1/chat/completions"), 2);
    r.stop().await;
}

#[actix_web::test]
async fn a_429_with_a_long_retry_after_moves_to_the_backup_at_once() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::RateLimit).path(CHAT).retry_after(30)).await.unwrap();
    let t0 = Instant::now();
    let resp = r.chat(SENTENCE, false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-genset-served-by"], "cloud:claude");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let v: Value = resp.json().await.unwrap();
    // Translated from Anthropic, named after the model that answered.
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-backup");
    assert_eq!(v["choices"][0]["message"]["content"], SENTENCE);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(r.primary.stats().path("/v1/chat/completions"), 1);
    r.stop().await;
}

#[actix_web::test]
async fn a_persistent_503_is_served_by_the_backup_and_opens_the_breaker() {
    let r = rig().await;
    r.primary.set_fault(FaultMode::Http503).await.unwrap();
    for _ in 0..6 {
        let resp = r.chat(SENTENCE, false).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-genset-served-by"], "cloud:claude");
    }
    r.wait_snapshot("the primary's breaker to open", |s| s["upstreams"][0]["breaker"] != "closed").await;
    let before = r.primary.stats().total_requests;
    for _ in 0..5 {
        assert_eq!(r.chat(SENTENCE, false).await.headers()["x-genset-served-by"], "cloud:claude");
    }
    // Only probes (GET /v1/models) reach the primary now, no chat requests.
    let chat_after = r.primary.stats().path("/v1/chat/completions");
    assert!(r.primary.stats().total_requests >= before);
    assert_eq!(chat_after, r.primary.stats().path("/v1/chat/completions"));
    let events = r.d.running().store.list_events(50).await.unwrap();
    let opened = events
        .iter()
        .find(|e| e.kind == "breaker" && e.subject == "openai" && e.detail.as_deref().unwrap_or("").contains("\"open\""))
        .expect("breaker event");
    assert!(opened.detail.as_deref().unwrap().contains("evidence"), "{opened:?}");
    assert!(events.iter().any(|e| e.kind == "failover" && e.subject == "openai"), "{events:?}");
    r.stop().await;
}

#[actix_web::test]
async fn reset_before_headers_and_no_answer_fail_over_silently() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::Reset).path(CHAT).count(1)).await.unwrap();
    let resp = r.chat(SENTENCE, false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-genset-served-by"], "cloud:claude");
    r.primary.set_fault(Fault::new(FaultMode::Hang).path(CHAT)).await.unwrap();
    let t0 = Instant::now();
    let resp = r.chat(SENTENCE, true).await;
    assert_eq!(resp.status(), 200);
    let seen = read_stream(resp).await;
    assert!(t0.elapsed() < Duration::from_secs(4), "first_byte_timeout is 1 s: {:?}", t0.elapsed());
    assert_eq!(seen.text, SENTENCE);
    assert!(seen.done && seen.error.is_none(), "{seen:?}");
    r.primary.clear_fault().await.unwrap();
    r.stop().await;
}

#[actix_web::test]
async fn a_slow_first_token_moves_to_the_backup() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::SlowFirstToken).path(CHAT).delay(Duration::from_secs(5))).await.unwrap();
    let resp = r.chat(SENTENCE, true).await;
    let seen = read_stream(resp).await;
    assert_eq!(seen.text, SENTENCE);
    assert!(seen.done, "{seen:?}");
    assert!(seen.models.iter().all(|m| m == "claude-backup"), "{seen:?}");
    r.stop().await;
}

#[actix_web::test]
async fn a_stream_cut_mid_answer_is_continued_by_the_backup() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::CutMidStream).path(CHAT).after_chunks(3).count(1)).await.unwrap();
    let resp = r.chat(SENTENCE, true).await;
    assert_eq!(resp.headers()["x-genset-served-by"], "cloud:openai");
    let seen = read_stream(resp).await;
    assert_eq!(seen.text, SENTENCE, "one complete answer: {seen:?}");
    assert!(seen.done && seen.error.is_none() && seen.clean_end, "{seen:?}");
    assert_eq!(seen.finish.as_deref(), Some("stop"));
    // The backup was asked to continue from the text the client already had.
    let last = r.backup.stats().last_request.unwrap();
    let msgs = last.body["messages"].as_array().unwrap();
    assert_eq!(msgs.last().unwrap()["role"], "assistant", "{}", last.body);
    assert_eq!(msgs.last().unwrap()["content"].as_str().unwrap().trim(), "alpha beta gamma");
    let (finals, attempts) = r.rows(1).await;
    assert!(finals[0].completed, "{finals:?}");
    assert_eq!(finals[0].served_by, "cloud:claude");
    assert_eq!(finals[0].rescue.as_deref(), Some("continuation"));
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].error.as_deref(), Some("stream_broken"));
    r.stop().await;
}

#[actix_web::test]
async fn a_stalled_stream_is_continued_after_the_idle_timeout() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::StallMidStream).path(CHAT).after_chunks(2).count(1)).await.unwrap();
    let seen = read_stream(r.chat(SENTENCE, true).await).await;
    assert_eq!(seen.text, SENTENCE);
    assert!(seen.done && seen.error.is_none(), "{seen:?}");
    r.primary.clear_fault().await.unwrap();
    r.stop().await;
}

#[actix_web::test]
async fn a_malformed_chunk_never_reaches_the_client() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::MalformedChunk).path(CHAT).after_chunks(2).count(1)).await.unwrap();
    // read_stream panics on any event that is not valid JSON.
    let seen = read_stream(r.chat(SENTENCE, true).await).await;
    assert_eq!(seen.text, SENTENCE);
    assert!(seen.done && seen.error.is_none(), "{seen:?}");
    r.stop().await;
}

#[actix_web::test]
async fn a_missing_done_is_completed_by_the_backup() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::MissingDone).path(CHAT).count(1)).await.unwrap();
    let seen = read_stream(r.chat(SENTENCE, true).await).await;
    assert_eq!(seen.text, SENTENCE, "no text lost or repeated: {seen:?}");
    assert!(seen.done && seen.error.is_none(), "{seen:?}");
    r.stop().await;
}

#[actix_web::test]
async fn a_backup_that_rejects_prefill_ends_the_stream_honestly() {
    let r = rig().await;
    r.primary.set_fault(Fault::new(FaultMode::CutMidStream).path(CHAT).after_chunks(3).count(1)).await.unwrap();
    r.backup.set_fault(Fault::new(FaultMode::RejectPrefill).path("/v1/messages")).await.unwrap();
    let seen = read_stream(r.chat(SENTENCE, true).await).await;
    assert_eq!(seen.text, "alpha beta gamma", "{seen:?}");
    assert!(!seen.done, "a cut answer is never presented as complete: {seen:?}");
    let err = seen.error.expect("an in-band error event");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("cut"), "the original failure, not the prefill rejection: {msg}");
    assert!(!msg.contains("prefill"), "{msg}");
    let (finals, _) = r.rows(1).await;
    assert!(!finals[0].completed);
    assert_eq!(finals[0].error.as_deref(), Some("stream_truncated"));
    r.stop().await;
}

#[actix_web::test]
async fn context_length_and_content_policy_go_back_unchanged() {
    let r = rig_with("", None).await;
    r.primary.set_fault(Fault::new(FaultMode::ContextLength).path(CHAT).count(1)).await.unwrap();
    let resp = r.chat(SENTENCE, false).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    r.primary.set_fault(Fault::new(FaultMode::ContentPolicy).path(CHAT).count(1)).await.unwrap();
    let resp = r.chat(SENTENCE, false).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "content_policy_violation", "{v}");
    // Never retried, never failed over, never counted against the upstream.
    assert_eq!(r.primary.stats().path("/v1/chat/completions"), 2);
    assert_eq!(r.backup.stats().path("/v1/messages"), 0);
    assert_eq!(r.breaker("openai").await, "closed");
    r.stop().await;
}

#[actix_web::test]
async fn context_overflow_is_routed_to_the_larger_model() {
    let r = rig_with("", None).await;
    r.d.shutdown().await;
    // Same rig, with on_context_overflow on the use case.
    let r2 = {
        let primary = r.primary;
        let backup = r.backup;
        let keys = r._keys;
        let toml = format!(
            "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\napi_key_file = \"{}\"\n\
             [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\non_context_overflow = \"gpt-long\"\n{FAILOVER}",
            primary.base_url(),
            keys.path().join("openai").display()
        );
        let d = common::start_daemon(&toml).await;
        let key = d.create_key(json!({"use_case": "chat"})).await;
        Rig { primary, backup, d, key, _keys: keys }
    };
    r2.primary.set_fault(Fault::new(FaultMode::ContextLength).path(CHAT).count(1)).await.unwrap();
    let resp = r2.chat(SENTENCE, false).await;
    assert_eq!(resp.status(), 200);
    let last = r2.primary.stats().last_request.unwrap();
    assert_eq!(last.body["model"], "gpt-long");
    r2.stop().await;
}

#[actix_web::test]
async fn a_primary_down_for_a_while_is_bridged_and_traffic_returns_after_recovery() {
    let r = rig().await;
    r.primary.set_fault(FaultMode::Refuse).await.unwrap();
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(r.chat(SENTENCE, false).await.headers()["x-genset-served-by"], "cloud:claude");
    }
    r.wait_snapshot("failover", |s| s["effective"] == "failover").await;
    assert!(t0.elapsed() < Duration::from_secs(2), "cut-off detected fast: {:?}", t0.elapsed());
    // While down: one attempt per request, straight to the backup.
    let (f0, a0) = r.rows(3).await;
    let before = f0.len() + a0.len();
    for _ in 0..5 {
        assert_eq!(r.chat(SENTENCE, false).await.headers()["x-genset-served-by"], "cloud:claude");
    }
    let (f1, attempts) = r.rows(8).await;
    let after = f1.len() + attempts.len();
    assert_eq!(after - before, 5, "no failed attempts while the breaker is open ({before} -> {after})");
    assert!(attempts.len() <= 3, "{attempts:?}");
    r.primary.clear_fault().await.unwrap();
    r.wait_snapshot("the return to the cloud", |s| s["effective"] == "cloud").await;
    assert_eq!(r.chat(SENTENCE, false).await.headers()["x-genset-served-by"], "cloud:openai");
    let events = r.d.running().store.list_events(100).await.unwrap();
    let flips: Vec<_> = events.iter().filter(|e| e.kind == "failover").collect();
    assert_eq!(flips.len(), 2, "into failover once, back once: {flips:?}");
    r.stop().await;
}

#[actix_web::test]
async fn a_restarted_daemon_remembers_an_open_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    let r = rig_with("", Some(&url)).await;
    r.primary.set_fault(FaultMode::Refuse).await.unwrap();
    for _ in 0..3 {
        r.chat(SENTENCE, false).await;
    }
    r.wait_snapshot("failover", |s| s["effective"] == "failover").await;
    let Rig { primary, backup, d, _keys, .. } = r;
    d.shutdown().await;
    let r = rig_with("", Some(&url)).await;
    let s = r.snapshot().await;
    // A new rig has new simulators (the new primary is healthy), but the daemon starts from
    // the saved state: in failover, until probes prove recovery.
    assert_eq!(s["upstreams"][0]["failover"], true, "{s}");
    primary.stop().await;
    backup.stop().await;
    r.stop().await;
}

#[actix_web::test]
async fn the_operator_flips_the_mode_with_a_reason_and_it_is_recorded() {
    let r = rig().await;
    let set = |mode: &'static str, reason: &'static str| {
        r.d.http
            .post(format!("{}/api/v1/mode", r.d.admin))
            .bearer_auth(&r.d.token)
            .json(&json!({"mode": mode, "reason": reason, "actor": "alice"}))
            .send()
    };
    assert_eq!(set("force-local", "").await.unwrap().status(), 400, "a reason is required");
    assert_eq!(set("force-local", "drill: provider outage").await.unwrap().status(), 200);
    // This use case may not be served locally (on_cutoff = reject): a clear 503.
    let resp = r.chat(SENTENCE, false).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("forced local mode"), "{v}");
    assert_eq!(set("auto", "drill over").await.unwrap().status(), 200);
    assert_eq!(r.chat(SENTENCE, false).await.status(), 200);
    let events = r.d.running().store.list_events(10).await.unwrap();
    let modes: Vec<_> = events.iter().filter(|e| e.kind == "mode").collect();
    assert_eq!(modes.len(), 2);
    assert!(modes.iter().all(|e| e.detail.as_deref().unwrap().contains("alice")), "{modes:?}");
    assert_eq!(modes[1].cause, "drill: provider outage");
    r.stop().await;
}

#[actix_web::test]
async fn one_revoked_client_key_is_not_an_outage_but_several_are() {
    // Passthrough: clients use their own keys.
    let primary = genset_sim::start(SimOptions::default()).await.unwrap();
    let d = common::start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\n{FAILOVER}distinct_key_rejections = 3\n",
        primary.base_url()
    ))
    .await;
    let call = |key: &'static str| {
        d.http
            .post(format!("{}/v1/chat/completions", d.proxy))
            .bearer_auth(key)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "say: hi"}]}))
            .send()
    };
    for k in ["sk-user-a", "sk-user-b", "sk-user-c"] {
        assert_eq!(call(k).await.unwrap().status(), 200);
    }
    primary.revoke_key("sk-user-a");
    let resp = call("sk-user-a").await.unwrap();
    assert_eq!(resp.status(), 401, "the user's own problem goes back to the user");
    let snap = |d: &Daemon| {
        let (h, a, t) = (d.http.clone(), d.admin.clone(), d.token.clone());
        async move { h.get(format!("{a}/api/v1/failover")).bearer_auth(t).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(snap(&d).await["upstreams"][0]["breaker"], "closed");
    assert_eq!(call("sk-user-b").await.unwrap().status(), 200);
    // The account is banned: every key the cloud accepted before is now rejected.
    primary.set_fault(FaultMode::Unauthorized).await.unwrap();
    assert_eq!(call("sk-user-b").await.unwrap().status(), 401);
    assert_eq!(call("sk-user-c").await.unwrap().status(), 401);
    let s = snap(&d).await;
    assert_ne!(s["upstreams"][0]["breaker"], "closed", "{s}");
    assert!(s["upstreams"][0]["last_error"].as_str().unwrap().contains("distinct client keys"), "{s}");
    d.shutdown().await;
    primary.stop().await;
}

#[actix_web::test]
async fn queue_waits_for_the_cloud_to_come_back() {
    let r = rig_with("", None).await;
    r.d.shutdown().await;
    let keys = r._keys;
    let primary = r.primary;
    let toml = format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\napi_key_file = \"{}\"\n\
         [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\non_cutoff = \"queue\"\n{FAILOVER}queue_timeout = \"20s\"\n",
        primary.base_url(),
        keys.path().join("openai").display()
    );
    let d = common::start_daemon(&toml).await;
    let key = d.create_key(json!({"use_case": "chat"})).await;
    let r = Rig { primary, backup: r.backup, d, key, _keys: keys };
    r.primary.set_fault(FaultMode::Refuse).await.unwrap();
    // Trip the breaker: these fail (no other step), then the cut-off is known.
    for _ in 0..3 {
        assert!(r.chat(SENTENCE, false).await.status().is_server_error());
    }
    r.wait_snapshot("failover", |s| s["effective"] == "failover").await;
    let queued = tokio::spawn({
        let (http, proxy, key) = (r.d.http.clone(), r.d.proxy.clone(), r.key.clone());
        async move {
            let t0 = Instant::now();
            let resp = http
                .post(format!("{proxy}/v1/chat/completions"))
                .bearer_auth(key)
                .header("x-genset-use-case", "chat")
                .json(&json!({"model": "m", "messages": [{"role": "user", "content": "say: queued"}]}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.headers()["x-genset-served-by"].to_str().unwrap().to_string(), t0.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!queued.is_finished(), "the request waits for the cloud");
    r.primary.clear_fault().await.unwrap();
    let (status, served_by, waited) = queued.await.unwrap();
    assert_eq!((status, served_by.as_str()), (200, "cloud:openai"));
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    r.stop().await;
}

/// Down 1 s, up 1 s, for 9 s, with `min_dwell = 3s`: the mode flips at most once per 3 s
/// (the same rule as the shipped default of once a minute, scaled).
#[actix_web::test]
async fn a_flapping_upstream_does_not_flip_the_mode_more_than_min_dwell_allows() {
    let r = rig_with("", None).await;
    r.d.shutdown().await;
    let keys = r._keys;
    let primary = r.primary;
    let toml = format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\napi_key_file = \"{}\"\nfirst_byte_timeout = \"500ms\"\n\
         [[upstreams]]\nname = \"claude\"\napi = \"anthropic\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\nmodel_map = {{ \"*\" = \"claude-backup\" }}\n\
         [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\nchain = [\"openai\", \"claude\"]\n\
         [failover]\nprobe_interval = \"200ms\"\nprobe_interval_failing = \"100ms\"\nopen_base = \"300ms\"\nrecovery_hold = \"500ms\"\nmin_dwell = \"3s\"\n",
        primary.base_url(),
        keys.path().join("openai").display(),
        r.backup.base_url(),
        keys.path().join("claude").display(),
    );
    let d = common::start_daemon(&toml).await;
    let key = d.create_key(json!({"use_case": "chat"})).await;
    let r = Rig { primary, backup: r.backup, d, key, _keys: keys };
    let t0 = Instant::now();
    let mut down = false;
    let mut next_toggle = Duration::ZERO;
    while t0.elapsed() < Duration::from_secs(9) {
        if t0.elapsed() >= next_toggle {
            down = !down;
            if down {
                r.primary.set_fault(FaultMode::Refuse).await.unwrap();
            } else {
                r.primary.clear_fault().await.unwrap();
            }
            next_toggle += Duration::from_secs(1);
        }
        let resp = r.chat(SENTENCE, false).await;
        assert_eq!(resp.status(), 200, "every request is still answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.primary.clear_fault().await.unwrap();
    let events = r.d.running().store.list_events(500).await.unwrap();
    let mut flips: Vec<i64> = events.iter().filter(|e| e.kind == "failover").map(|e| e.ts_ms).collect();
    flips.sort();
    assert!(!flips.is_empty(), "the outage was noticed");
    for w in flips.windows(2) {
        assert!(w[1] - w[0] >= 3000, "two flips {} ms apart: {flips:?}", w[1] - w[0]);
    }
    r.stop().await;
}

#[actix_web::test]
async fn an_anthropic_stream_cut_is_continued_by_an_openai_backup() {
    let primary = genset_sim::start(SimOptions::default()).await.unwrap();
    let backup = genset_sim::start(SimOptions::default()).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("k"), "sk-appliance").unwrap();
    let d = common::start_daemon(&format!(
        "[[upstreams]]\nname = \"claude\"\napi = \"anthropic\"\nbase_url = \"{}\"\napi_key_file = \"{k}\"\n\
         [[upstreams]]\nname = \"oai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\napi_key_file = \"{k}\"\nprefill = true\nmodel_map = {{ \"*\" = \"gpt-backup\" }}\n\
         [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\nchain = [\"claude\", \"oai\"]\n{FAILOVER}",
        primary.base_url(),
        backup.base_url(),
        k = keys.path().join("k").display()
    ))
    .await;
    let key = d.create_key(json!({"use_case": "chat"})).await;
    primary.set_fault(Fault::new(FaultMode::CutMidStream).path("/v1/messages").after_chunks(3).count(1)).await.unwrap();
    let resp = d
        .http
        .post(format!("{}/v1/messages", d.proxy))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .header("x-genset-use-case", "chat")
        .json(&json!({"model": "claude-x", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": format!("say: {SENTENCE}")}]}))
        .send()
        .await
        .unwrap();
    let raw = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    // A strict reading of the Anthropic event sequence.
    let mut text = String::new();
    let mut kinds = vec![];
    for block in raw.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let event = block.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_else(|| panic!("{block:?}"));
        let data: Value = serde_json::from_str(block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
        assert_eq!(data["type"], event, "{block}");
        if event != "ping" {
            kinds.push(event.to_string());
        }
        if event == "content_block_delta" {
            assert_eq!(data["index"], 0, "the continuation stays in the same content block: {raw}");
            text.push_str(data["delta"]["text"].as_str().unwrap());
        }
    }
    assert_eq!(text, SENTENCE, "{raw}");
    assert_eq!(kinds.iter().filter(|k| *k == "message_start").count(), 1, "{kinds:?}");
    assert_eq!(kinds.first().map(String::as_str), Some("message_start"));
    assert_eq!(kinds.last().map(String::as_str), Some("message_stop"), "{kinds:?}");
    let last = backup.stats().last_request.unwrap();
    assert_eq!(last.body["messages"].as_array().unwrap().last().unwrap()["role"], "assistant", "{}", last.body);
    d.shutdown().await;
    primary.stop().await;
    backup.stop().await;
}

#[actix_web::test]
async fn responses_and_legacy_completion_streams_pass_through() {
    let r = rig().await;
    let resp =
        r.d.http
            .post(format!("{}/v1/responses", r.d.proxy))
            .bearer_auth(&r.key)
            .header("x-genset-use-case", "chat")
            .json(&json!({"model": "gpt-test", "stream": true, "input": format!("say: {SENTENCE}")}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let raw = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    assert!(raw.contains("response.completed") && raw.contains("response.output_text.delta"), "{raw}");
    let resp =
        r.d.http
            .post(format!("{}/v1/completions", r.d.proxy))
            .bearer_auth(&r.key)
            .header("x-genset-use-case", "chat")
            .json(&json!({"model": "gpt-test", "stream": true, "prompt": "say: one two three", "max_tokens": 8}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let raw = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    assert!(raw.trim_end().ends_with("data: [DONE]") && raw.contains("\"text\""), "{raw}");
    let (finals, _) = r.rows(2).await;
    assert!(finals.iter().all(|x| x.completed), "{finals:?}");
    r.stop().await;
}
