//! API keys: missing, unknown, revoked.

use genset_sim::SimOptions;
use serde_json::{Value, json};

use crate::*;

async fn status_and_body(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn any_key_by_default_and_none_is_401() {
    let sim = sim().await;
    let c = client();
    let chat_url = format!("{}/v1/chat/completions", sim.base_url());
    let msg_url = format!("{}/v1/messages", sim.base_url());
    let chat_body = json!({"model": "m", "messages": [user("x")]});
    let msg_body = json!({"model": "m", "max_tokens": 5, "messages": [user("x")]});

    let (s, b) = status_and_body(c.post(&chat_url).json(&chat_body)).await;
    assert_eq!(s, 401);
    assert_eq!(b["error"]["code"], "invalid_api_key");
    assert_eq!(b["error"]["type"], "invalid_request_error");
    assert!(b["error"]["param"].is_null());
    let (s, b) = status_and_body(c.post(&msg_url).json(&msg_body)).await;
    assert_eq!(s, 401);
    assert_eq!(b["type"], "error");
    assert_eq!(b["error"]["type"], "authentication_error");

    // The OpenAI route does not read x-api-key; the Anthropic one accepts Bearer.
    let (s, _) = status_and_body(c.post(&chat_url).header("x-api-key", "k").json(&chat_body)).await;
    assert_eq!(s, 401);
    let (s, _) = status_and_body(c.post(&msg_url).bearer_auth("k").json(&msg_body)).await;
    assert_eq!(s, 200);
    let (s, _) = status_and_body(c.post(&chat_url).bearer_auth("anything").json(&chat_body)).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn configured_keys_and_revocation() {
    let sim = sim_with(SimOptions { keys: Some(vec!["good-key-1".into(), "good-key-2".into()]), ..SimOptions::default() }).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let body = json!({"model": "m", "messages": [user("x")]});
    let (s, b) = status_and_body(c.post(&url).bearer_auth("sk-wrong-key-999").json(&body)).await;
    assert_eq!(s, 401);
    assert!(b["error"]["message"].as_str().unwrap().contains("sk-*********-999"), "{b}");
    let (s, _) = status_and_body(c.post(&url).bearer_auth("good-key-1").json(&body)).await;
    assert_eq!(s, 200);

    // Revoke through the control endpoint.
    let r = c.post(format!("{}/_sim/keys/revoke", sim.base_url())).json(&json!({"key": "good-key-1"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = status_and_body(c.post(&url).bearer_auth("good-key-1").json(&body)).await;
    assert_eq!(s, 401);
    let msg = format!("{}/v1/messages", sim.base_url());
    let (s, b) = status_and_body(
        c.post(&msg).header("x-api-key", "good-key-1").json(&json!({"model": "m", "max_tokens": 5, "messages": [user("x")]})),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(b["error"]["type"], "authentication_error");
    // The other key still works; reset restores the revoked one.
    let (s, _) = status_and_body(c.post(&url).bearer_auth("good-key-2").json(&body)).await;
    assert_eq!(s, 200);
    sim.reset().await.unwrap();
    let (s, _) = status_and_body(c.post(&url).bearer_auth("good-key-1").json(&body)).await;
    assert_eq!(s, 200);

    // And through the handle.
    sim.revoke_key("good-key-2");
    let (s, _) = status_and_body(c.post(&url).bearer_auth("good-key-2").json(&body)).await;
    assert_eq!(s, 401);
}
