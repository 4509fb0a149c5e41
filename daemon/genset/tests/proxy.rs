//! The proxy in cloud mode, driven over HTTP against a scripted fixture upstream: byte-exact
//! pass-through, recording, honest endings, bad input, virtual keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fixture, header, start_daemon};
use serde_json::{Value, json};

fn openai_upstream(url: &str, extra: &str) -> String {
    format!("[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{url}/v1\"\n{extra}")
}

const SSE_CHUNKS: &[&[u8]] = &[
    b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Bon\"},\"finish_reason\":null}],\"unknown_field\":{\"z\":[1,2]}}\n\n",
    b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jour \\u00e9t\\u00e9 \xc3\xa9\"},\"finish_reason\":null}]}\n",
    b"\n",
    b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,\"total_tokens\":14}}\n\ndata: [DO",
    b"NE]\n\n",
];

#[actix_web::test]
async fn stream_passes_through_byte_for_byte_and_is_recorded() {
    let fx = Fixture::start().await;
    fx.set(200, "text/event-stream", SSE_CHUNKS.iter().map(|c| Ok(*c)).collect());
    let d = start_daemon(&format!(
        "{}\n[[use_cases]]\nname = \"triage\"\nmatch = {{ header = \"x-genset-use-case\", value = \"triage\" }}\n",
        openai_upstream(&fx.url, "")
    ))
    .await;
    let req = br#"{"model":"gpt-x","stream":true,"messages":[{"role":"user","content":"hi"}],"vendor_ext":{"keep":true}}"#;
    let resp = d
        .http
        .post(format!("{}/v1/chat/completions?trace=1", d.proxy))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-client-key-123456789")
        .header("x-genset-use-case", "triage")
        .body(&req[..])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-genset-served-by"], "cloud:openai");
    assert_eq!(resp.headers()["x-genset-use-case"], "triage");
    assert_eq!(resp.headers()["x-upstream-extra"], "kept");
    let got = resp.bytes().await.unwrap();
    let want: Vec<u8> = SSE_CHUNKS.concat();
    assert_eq!(got.as_ref(), &want[..], "the stream must arrive byte for byte");

    // The upstream saw the request unchanged, with the client's key and path/query.
    let seen = fx.last();
    assert_eq!(seen.path, "/v1/chat/completions?trace=1");
    assert_eq!(seen.body.as_ref(), &req[..]);
    assert_eq!(header(&seen, "authorization"), Some("Bearer sk-client-key-123456789"));
    assert_eq!(header(&seen, "x-genset-use-case"), None, "genset's own headers stay home");

    let rows = d.wait_rows(1).await;
    let r = &rows[0];
    assert_eq!(r.use_case, "triage");
    assert_eq!(r.served_by, "cloud:openai");
    assert_eq!(r.status, 200);
    assert!(r.stream && r.completed, "{r:?}");
    assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(11), Some(3)));
    let body: Value = serde_json::from_str(r.response_body.as_deref().unwrap()).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Bonjour été é");
    let key_hash = r.client_key_hash.clone().unwrap();
    assert!(!key_hash.contains("sk-client"), "only a salted hash of the key is kept");
    assert!(r.ttfb_ms.is_some() && r.total_ms >= r.ttfb_ms.unwrap());
    d.shutdown().await;
    fx.stop().await;
}

#[actix_web::test]
async fn sized_json_passes_through_and_usage_is_recorded() {
    let fx = Fixture::start().await;
    const BODY: &[u8] = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":7,"completion_tokens":2},"extra":null}"#;
    fx.set_sized(200, "application/json", BODY);
    let d = start_daemon(&openai_upstream(&fx.url, "")).await;
    let resp = d
        .http
        .post(format!("{}/v1/chat/completions", d.proxy))
        .header("content-type", "application/json")
        .body(r#"{"model":"m","messages":[{"role":"system","content":"Sort tickets"},{"role":"user","content":"x"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-length"], BODY.len().to_string());
    assert_eq!(resp.headers()["x-genset-use-case"], "unclassified");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), BODY);
    let rows = d.wait_rows(1).await;
    assert!(rows[0].completed);
    assert_eq!((rows[0].prompt_tokens, rows[0].completion_tokens), (Some(7), Some(2)));
    assert!(rows[0].prompt_fingerprint.is_some());
    d.shutdown().await;
    fx.stop().await;
}

#[actix_web::test]
async fn a_cut_stream_is_never_presented_as_complete() {
    let fx = Fixture::start().await;
    let d = start_daemon(&openai_upstream(&fx.url, "")).await;
    let send = || {
        d.http
            .post(format!("{}/v1/chat/completions", d.proxy))
            .header("content-type", "application/json")
            .body(r#"{"model":"m","stream":true,"messages":[]}"#)
            .send()
    };
    // 1. The upstream connection breaks mid-stream.
    fx.set(200, "text/event-stream", vec![Ok(SSE_CHUNKS[0]), Err(())]);
    let resp = send().await.unwrap();
    assert_eq!(resp.status(), 200);
    fx.cut.notify_one();
    // The client sees the break in band (nothing to continue with here), never a [DONE].
    let body = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    assert!(body.contains("data: {\"error\"") && !body.contains("[DONE]"), "{body}");
    // 2. The upstream ends cleanly at HTTP level but without [DONE] (mid-answer).
    fx.set(200, "text/event-stream", vec![Ok(SSE_CHUNKS[0]), Ok(SSE_CHUNKS[1])]);
    let resp = send().await.unwrap();
    let body = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    assert!(body.contains("data: {\"error\"") && !body.contains("[DONE]"), "a stream without its terminal event is not complete: {body}");
    // Each broken stream: the failed upstream attempt and the truncated answer the client got.
    let rows = d.wait_rows(4).await;
    for r in &rows {
        assert!(!r.completed, "{r:?}");
    }
    let finals: Vec<_> = rows.iter().filter(|r| r.final_attempt).collect();
    assert_eq!(finals.len(), 2, "{rows:?}");
    assert!(finals.iter().all(|r| r.error.as_deref() == Some("stream_truncated")), "{finals:?}");
    assert!(rows.iter().filter(|r| !r.final_attempt).all(|r| r.error.as_deref() == Some("stream_broken")), "{rows:?}");
    // The partial answer is kept, and ends with the in-band error the client saw.
    assert!(finals.iter().all(|r| r.response_body.as_deref().unwrap_or("").contains("Bon")), "{finals:?}");
    d.shutdown().await;
    fx.stop().await;
}

async fn expect_error(resp: reqwest::Response, status: u16, anthropic: bool) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let v: Value = resp.json().await.unwrap();
    if anthropic {
        assert_eq!(v["type"], "error", "{v}");
        assert!(v["error"]["type"].is_string() && v["error"]["message"].is_string(), "{v}");
    } else {
        assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string(), "{v}");
    }
    v
}

#[actix_web::test]
async fn bad_input_gets_clear_errors_in_the_apis_format() {
    let fx = Fixture::start().await;
    fx.set_sized(200, "application/json", b"{}");
    let d = start_daemon(&format!(
        "{}\n[[upstreams]]\nname = \"claude\"\napi = \"anthropic\"\nbase_url = \"http://127.0.0.1:1\"\n",
        openai_upstream(&fx.url, "")
    ))
    .await;
    let post = |path: &str, ct: &str, body: Vec<u8>| d.http.post(format!("{}{path}", d.proxy)).header("content-type", ct).body(body).send();
    for anthropic in [false, true] {
        let path = if anthropic { "/v1/messages" } else { "/v1/chat/completions" };
        let v = expect_error(post(path, "application/json", b"{\"model\": ".to_vec()).await.unwrap(), 400, anthropic).await;
        // Both APIs put the text in error.message (their envelopes differ around it).
        let msg = &v["error"]["message"];
        assert!(msg.as_str().unwrap().contains("not valid JSON"), "{v}");
        expect_error(post(path, "text/plain", b"{}".to_vec()).await.unwrap(), 415, anthropic).await;
        expect_error(post(path, "application/json", vec![b' '; 9 * 1024 * 1024]).await.unwrap(), 413, anthropic).await;
        let v = expect_error(post(path, "application/json", b"{\"model\":\"\xff\xfe\"}".to_vec()).await.unwrap(), 400, anthropic).await;
        assert!(v.to_string().contains("UTF-8"), "{v}");
    }
    // Unknown path and wrong method, in the format the headers suggest.
    expect_error(d.http.get(format!("{}/v1/nope", d.proxy)).send().await.unwrap(), 404, false).await;
    expect_error(d.http.get(format!("{}/v1/nope", d.proxy)).header("anthropic-version", "2023-06-01").send().await.unwrap(), 404, true)
        .await;
    expect_error(d.http.get(format!("{}/v1/chat/completions", d.proxy)).send().await.unwrap(), 405, false).await;
    // Upstream unreachable (nothing listens on port 1).
    let resp = post("/v1/messages", "application/json", br#"{"model":"claude","max_tokens":5,"messages":[]}"#.to_vec()).await.unwrap();
    assert_eq!(resp.headers()["x-genset-served-by"], "genset");
    let v = expect_error(resp, 502, true).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("unreachable"), "{v}");
    // Nothing was forwarded, everything was recorded, and the daemon is still up.
    assert_eq!(fx.seen.lock().len(), 0, "bad requests must not be half-forwarded");
    // Each rejected API request is recorded once as what the client got; the unreachable
    // upstream's failed attempt is a row of its own, never a completion.
    let rows = d.wait_rows(10).await;
    let finals: Vec<_> = rows.iter().filter(|r| r.final_attempt).collect();
    assert_eq!(finals.len(), 9, "{rows:?}");
    assert!(finals.iter().all(|r| r.status >= 400 && r.error.is_some()), "{rows:?}");
    assert_eq!(rows.iter().filter(|r| !r.final_attempt && r.served_by == "cloud:claude" && !r.completed).count(), 1, "{rows:?}");
    let status = d.http.get(format!("{}/api/v1/status", d.admin)).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!(status.status(), 200);
    d.shutdown().await;
    fx.stop().await;
}

#[actix_web::test]
async fn virtual_keys_swap_in_the_appliance_credential() {
    let fx = Fixture::start().await;
    fx.set_sized(200, "application/json", br#"{"ok":true}"#);
    let keyfile = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keyfile.path(), "sk-appliance-secret-0000\n").unwrap();
    let d = start_daemon(&format!(
        "{}\n[[use_cases]]\nname = \"invoices\"\n",
        openai_upstream(&fx.url, &format!("api_key_file = \"{}\"", keyfile.path().display()))
    ))
    .await;
    let created = d.create_key_record(json!({"use_case": "invoices", "name": "billing-app"})).await;
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("gk-"));
    let call = |k: String| {
        d.http
            .post(format!("{}/v1/chat/completions", d.proxy))
            .header("content-type", "application/json")
            .bearer_auth(k)
            .body(r#"{"model":"m","messages":[]}"#)
            .send()
    };
    let resp = call(key.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-genset-use-case"], "invoices");
    assert_eq!(header(&fx.last(), "authorization"), Some("Bearer sk-appliance-secret-0000"));
    // Unknown virtual key, and a raw key where the appliance holds the credential: 401.
    expect_error(call("gk-not-a-real-key".into()).await.unwrap(), 401, false).await;
    expect_error(call("sk-someone-elses-key".into()).await.unwrap(), 401, false).await;
    // Revoked keys stop working at once.
    let id = created["id"].as_str().unwrap();
    let r = d.http.delete(format!("{}/api/v1/keys/{id}", d.admin)).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    expect_error(call(key.clone()).await.unwrap(), 401, false).await;
    assert_eq!(fx.seen.lock().len(), 1);
    // The key and the appliance's secret are nowhere in the store.
    let rows = d.wait_rows(4).await;
    let dump = format!("{rows:?}");
    assert!(!dump.contains(&key[3..]) && !dump.contains("appliance-secret"), "secrets leaked into the store");
    d.shutdown().await;
    fx.stop().await;
}

#[actix_web::test]
async fn redaction_and_admin_api() {
    let fx = Fixture::start().await;
    fx.set_sized(200, "application/json", br#"{"choices":[{"message":{"content":"mail bob@example.com"}}]}"#);
    let d = start_daemon(&openai_upstream(&fx.url, "")).await;
    d.http
        .post(format!("{}/v1/chat/completions", d.proxy))
        .header("content-type", "application/json")
        .body(r#"{"model":"m","messages":[{"role":"user","content":"I am jane@corp.example, card 4111 1111 1111 1111, call +1 415 555 0100"}]}"#)
        .send()
        .await
        .unwrap();
    d.wait_rows(1).await;
    let v: Value = d.admin_json("/api/v1/traffic?limit=10").await;
    let row = &v["items"][0];
    let req = row["request_body"].as_str().unwrap();
    assert!(req.contains("[EMAIL]") && req.contains("[CARD]") && req.contains("[PHONE]"), "{req}");
    assert!(!req.contains("jane@") && !req.contains("4111"), "{req}");
    assert!(row["response_body"].as_str().unwrap().contains("[EMAIL]"));
    // The admin API wants its token.
    let r = d.http.get(format!("{}/api/v1/traffic", d.admin)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = d.http.get(format!("{}/api/v1/traffic", d.admin)).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let metrics = d.http.get(format!("{}/metrics", d.admin)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("genset_requests_total{api=\"openai\""), "{metrics}");
    assert!(metrics.contains("genset_recorder_dropped_total 0"), "{metrics}");
    d.shutdown().await;
    fx.stop().await;
}

#[actix_web::test]
async fn shutdown_drains_the_recorder_queue() {
    let fx = Fixture::start().await;
    fx.set_sized(200, "application/json", br#"{"ok":1}"#);
    // A flush interval far beyond the test: rows can only land through the shutdown drain.
    let d = start_daemon(&format!("{}\n[recording]\nflush_interval = \"1h\"\nbatch = 100000\n", openai_upstream(&fx.url, ""))).await;
    for _ in 0..50 {
        let r = d
            .http
            .post(format!("{}/v1/embeddings", d.proxy))
            .header("content-type", "application/json")
            .body(r#"{"model":"e","input":"x"}"#)
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap();
    }
    let store = d.running().store.clone();
    let dir_path = d.dir.path().to_path_buf();
    let running = {
        let mut d = d;
        let r = d.running.take().unwrap();
        (r, d)
    };
    running.0.shutdown().await;
    // Reopen the store and count.
    let reopened = genset::store::Store::open(&format!("sqlite://{}", dir_path.join("genset.db").display()), 1).await.unwrap();
    assert_eq!(reopened.count_exchanges().await.unwrap(), 50);
    drop(store);
    drop(running.1);
    fx.stop().await;
}

#[actix_web::test]
async fn postgres_store_records_the_same_rows() {
    let Ok(url) = std::env::var("GENSET_TEST_PG_URL") else {
        panic!("GENSET_TEST_PG_URL is not set: run the README's test command (scripts/test.sh), which starts a throwaway PostgreSQL");
    };
    let fx = Fixture::start().await;
    fx.set(200, "text/event-stream", SSE_CHUNKS.iter().map(|c| Ok(*c)).collect());
    let d = common::start_daemon_with_store(&openai_upstream(&fx.url, ""), Some(&url)).await;
    assert_eq!(d.running().store.backend(), "postgres");
    let before = d.running().store.count_exchanges().await.unwrap();
    let marker = format!("pg-marker-{}", std::process::id());
    let resp = d
        .http
        .post(format!("{}/v1/chat/completions", d.proxy))
        .header("content-type", "application/json")
        .body(json!({"model": marker, "stream": true, "messages": []}).to_string())
        .send()
        .await
        .unwrap();
    resp.bytes().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if d.running().store.count_exchanges().await.unwrap() > before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "row never reached PostgreSQL");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let rows = d.running().store.list_exchanges(&genset::store::TrafficFilter { limit: 50, ..Default::default() }).await.unwrap();
    let r = rows.iter().find(|r| r.model.as_deref() == Some(&marker)).expect("our row");
    assert!(r.completed && r.stream);
    assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(11), Some(3)));
    d.shutdown().await;
    fx.stop().await;
}
