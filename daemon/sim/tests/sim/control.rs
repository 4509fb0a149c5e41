//! The /_sim/ control endpoints and the stats they report.

use genset_sim::{Fault, FaultMode};
use serde_json::{Value, json};

use crate::*;

#[tokio::test]
async fn stats_count_and_record_the_last_request() {
    let sim = sim().await;
    let c = client();
    chat(&c, &sim, json!({"model": "gpt-4o", "messages": [user("x")]})).await;
    chat(&c, &sim, json!({"model": "gpt-4o"})).await;
    messages(&c, &sim, json!({"model": "claude-haiku-4-5", "max_tokens": 9, "messages": [user("last one")]})).await;
    c.get(format!("{}/v1/unknown", sim.base_url())).send().await.unwrap();
    c.get(format!("{}/_sim/health", sim.base_url())).send().await.unwrap();

    let stats: Value = c.get(format!("{}/_sim/stats", sim.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["total_requests"], 4, "control requests are not counted");
    assert_eq!(stats["by_path"], json!({"/v1/chat/completions": 2, "/v1/messages": 1, "/v1/unknown": 1}));
    assert_eq!(stats["by_status"], json!({"200": 2, "400": 1, "404": 1}));
    assert_eq!(stats["faults_served"], 0);
    // The unknown path came last; look at the messages request through the handle
    // after one more request.
    messages(&c, &sim, json!({"model": "claude-haiku-4-5", "max_tokens": 9, "messages": [user("last one")]})).await;
    let last = sim.stats().last_request.unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, "/v1/messages");
    assert_eq!(last.headers["x-api-key"], "sk-ant-test");
    assert_eq!(last.headers["anthropic-version"], "2023-06-01");
    assert_eq!(last.body["messages"][0]["content"], "last one");

    chat(&c, &sim, json!({"model": "gpt-4o", "messages": [user("x")]})).await;
    let last = sim.stats().last_request.unwrap();
    assert_eq!(last.headers["authorization"], "Bearer sk-test-key-123456");

    let r = c.post(format!("{}/_sim/reset", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let stats = sim.stats();
    assert_eq!(stats.total_requests, 0);
    assert!(stats.by_path.is_empty() && stats.by_status.is_empty() && stats.last_request.is_none());
}

#[tokio::test]
async fn faults_over_http() {
    let sim = sim().await;
    let c = client();
    let url = format!("{}/_sim/fault", sim.base_url());
    let r = c
        .post(&url)
        .json(&json!({"mode": "rate_limit", "count": 3, "retry_after": 2, "path": "/v1/chat/completions"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.fault(), Some(Fault::new(FaultMode::RateLimit).count(3).retry_after(2).path("/v1/chat/completions")));
    let got: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["fault"]["mode"], "rate_limit");
    let resp = chat(&c, &sim, json!({"model": "gpt-4o", "messages": [user("x")]})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let got: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["fault"]["count"], 2, "shows what is left");

    assert_eq!(c.delete(&url).send().await.unwrap().status(), 200);
    assert!(sim.fault().is_none());
    assert_eq!(chat(&c, &sim, json!({"model": "gpt-4o", "messages": [user("x")]})).await.status(), 200);

    for bad in [json!({"mode": "nope"}), json!({"mode": "http_500", "cnt": 1}), json!({"mode": "http_500", "count": 0})] {
        let r = c.post(&url).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    }
    let r = c.get(format!("{}/_sim/nope", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn several_workers_and_stop() {
    let sim = sim_with(genset_sim::SimOptions { workers: 2, ..Default::default() }).await;
    let c = fresh_client();
    let replies = futures_util::future::join_all(
        (0..8).map(|i| chat(&c, &sim, json!({"model": "gpt-4o", "messages": [user(&format!("say:n{i}"))]}))),
    )
    .await;
    for (i, r) in replies.into_iter().enumerate() {
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], format!("n{i}"));
    }
    assert_eq!(sim.stats().total_requests, 8);
    let addr = sim.addr();
    sim.stop().await;
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn handle_can_be_shared_between_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<genset_sim::SimHandle>();
    send_sync::<genset_sim::SimStats>();
    send_sync::<genset_sim::Fault>();
}
