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

/// `stable_ids`: identical requests get byte-identical answers (ids and `created` derived
/// from the request), on every endpoint that mints ids, streamed or not; different requests
/// still get different ids; off again, ids are fresh per answer.
#[tokio::test]
async fn stable_ids_make_identical_requests_byte_identical() {
    let sim = sim().await;
    let c = client();
    let cases: Vec<(&str, Value, bool)> = vec![
        ("/v1/chat/completions", json!({"model": "gpt-4o", "messages": [user("say: a b c")]}), false),
        ("/v1/chat/completions", json!({"model": "gpt-4o", "stream": true, "messages": [user("say: a b c")]}), false),
        ("/v1/completions", json!({"model": "gpt-3.5-turbo-instruct", "prompt": "say: a b c"}), false),
        ("/v1/responses", json!({"model": "gpt-4o", "input": "say: a b c", "stream": true}), false),
        ("/v1/messages", json!({"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [user("say: a b c")]}), true),
        ("/v1/messages", json!({"model": "claude-haiku-4-5", "max_tokens": 50, "stream": true, "messages": [user("say: a b c")]}), true),
    ];
    let get = |path: &'static str, body: Value, ant: bool| {
        let (c, sim) = (&c, &sim);
        async move {
            let r = if ant { anthropic(c, sim, path, &body).await } else { openai(c, sim, path, &body).await };
            assert_eq!(r.status(), 200, "{path}");
            r.bytes().await.unwrap()
        }
    };
    let r = c.post(format!("{}/_sim/config", sim.base_url())).json(&json!({"stable_ids": true})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["stable_ids"], true);
    for (path, body, ant) in &cases {
        let a = get(path, body.clone(), *ant).await;
        let b = get(path, body.clone(), *ant).await;
        assert_eq!(a, b, "{path} {body}");
        assert!(String::from_utf8_lossy(&a).contains("1700000000") || *ant, "{path}: fixed created time");
        // Another request: another id.
        let mut other = body.clone();
        other["model"] = json!(if *ant { "claude-sonnet-4-5" } else { "gpt-4o-mini" });
        if *path == "/v1/completions" {
            other["model"] = json!("davinci-002");
        }
        let o = get(path, other, *ant).await;
        let id = |b: &[u8]| {
            let s = String::from_utf8_lossy(b).into_owned();
            let i = s.find("\"id\":\"").unwrap_or_else(|| panic!("{path}: no id in {s}")) + 6;
            s[i..i + s[i..].find('"').unwrap()].to_string()
        };
        assert_ne!(id(&a), id(&o), "{path}");
    }
    let r = c.post(format!("{}/_sim/config", sim.base_url())).json(&json!({"stable_ids": false})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["stable_ids"], false);
    let (path, body, ant) = &cases[0];
    assert_ne!(get(path, body.clone(), *ant).await, get(path, body.clone(), *ant).await, "fresh ids again");
}
