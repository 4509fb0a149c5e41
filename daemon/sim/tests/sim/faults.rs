//! Every fault mode, as a client sees it.

use std::time::{Duration, Instant};

use genset_sim::{Fault, FaultMode, SimHandle};
use serde_json::{Value, json};

use crate::*;

#[derive(Clone, Copy, Debug)]
enum Api {
    OpenAi,
    Anthropic,
}

fn say_body(api: Api, text: &str, stream: bool) -> (&'static str, Value) {
    match api {
        Api::OpenAi => ("/v1/chat/completions", json!({"model": "gpt-4o", "stream": stream, "messages": [user(&format!("say:{text}"))]})),
        Api::Anthropic => (
            "/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream, "messages": [user(&format!("say:{text}"))]}),
        ),
    }
}

async fn send(c: &reqwest::Client, sim: &SimHandle, api: Api, text: &str, stream: bool) -> reqwest::Response {
    let (path, body) = say_body(api, text, stream);
    match api {
        Api::OpenAi => openai(c, sim, path, &body).await,
        Api::Anthropic => anthropic(c, sim, path, &body).await,
    }
}

/// One error fault on one API: the status, the error type (OpenAI `type`
/// or Anthropic `error.type`), the OpenAI `code`, and `Retry-After`.
async fn check(fault: Fault, api: Api, status: u16, kind: &str, code: Option<&str>, retry_after: Option<&str>) -> Value {
    let sim = sim().await;
    let c = client();
    sim.set_fault(fault.clone().count(1)).await.unwrap();
    let resp = send(&c, &sim, api, "hi", false).await;
    assert_eq!(resp.status().as_u16(), status, "{fault:?} {api:?}");
    assert_eq!(resp.headers().get("retry-after").map(|v| v.to_str().unwrap()), retry_after, "{fault:?} {api:?}");
    let body: Value = resp.json().await.unwrap();
    match api {
        Api::OpenAi => {
            assert_eq!(body["error"]["type"], kind, "{body}");
            assert_eq!(body["error"]["code"].as_str(), code, "{body}");
            assert!(body["error"]["message"].is_string());
            assert!(body["error"].as_object().unwrap().contains_key("param"));
        }
        Api::Anthropic => {
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], kind, "{body}");
            assert!(body["error"]["message"].is_string());
        }
    }
    // count 1: the next request is fine again.
    assert_eq!(send(&c, &sim, api, "hi", false).await.status(), 200);
    let stats = sim.stats();
    assert_eq!(stats.faults_served, 1);
    assert_eq!(stats.status(status), 1);
    body
}

#[tokio::test]
async fn error_faults_in_each_apis_format() {
    use Api::*;
    use FaultMode::*;
    let f = Fault::new;
    let checks = vec![
        check(f(Http500), OpenAi, 500, "server_error", None, None),
        check(f(Http500), Anthropic, 500, "api_error", None, None),
        check(f(Http502), OpenAi, 502, "server_error", None, None),
        check(f(Http502), Anthropic, 502, "api_error", None, None),
        check(f(Http503), OpenAi, 503, "server_error", None, None),
        check(f(Http503).retry_after(7), Anthropic, 503, "api_error", None, Some("7")),
        check(f(Http529), Anthropic, 529, "overloaded_error", None, None),
        check(f(Http529), OpenAi, 529, "server_error", None, None),
        check(f(RateLimit), OpenAi, 429, "requests", Some("rate_limit_exceeded"), Some("1")),
        check(f(RateLimit).retry_after(3), Anthropic, 429, "rate_limit_error", None, Some("3")),
        check(f(Quota), OpenAi, 429, "insufficient_quota", Some("insufficient_quota"), None),
        check(f(Quota), Anthropic, 400, "invalid_request_error", None, None),
        check(f(Unauthorized), OpenAi, 401, "invalid_request_error", Some("invalid_api_key"), None),
        check(f(Unauthorized), Anthropic, 401, "authentication_error", None, None),
        check(f(Forbidden), OpenAi, 403, "permission_error", Some("insufficient_permissions"), None),
        check(f(Forbidden), Anthropic, 403, "permission_error", None, None),
        check(f(ContextLength), OpenAi, 400, "invalid_request_error", Some("context_length_exceeded"), None),
        check(f(ContextLength), Anthropic, 400, "invalid_request_error", None, None),
        check(f(ContentPolicy), OpenAi, 400, "invalid_request_error", Some("content_policy_violation"), None),
        check(f(ContentPolicy), Anthropic, 400, "invalid_request_error", None, None),
    ];
    let bodies = futures_util::future::join_all(checks).await;
    let anthropic_quota = &bodies[11];
    assert!(anthropic_quota["error"]["message"].as_str().unwrap().contains("credit balance is too low"));
    let anthropic_context = &bodies[17];
    assert!(anthropic_context["error"]["message"].as_str().unwrap().starts_with("prompt is too long: "));
}

#[tokio::test]
async fn count_and_path_restrict_a_fault() {
    let sim = sim().await;
    let c = client();
    sim.set_fault(Fault::new(FaultMode::Http500).count(2).path("/v1/messages")).await.unwrap();
    assert_eq!(send(&c, &sim, Api::OpenAi, "x", false).await.status(), 200);
    assert_eq!(send(&c, &sim, Api::Anthropic, "x", false).await.status(), 500);
    assert_eq!(sim.fault().unwrap().count, Some(1));
    assert_eq!(send(&c, &sim, Api::Anthropic, "x", true).await.status(), 500);
    assert!(sim.fault().is_none(), "used up");
    assert_eq!(send(&c, &sim, Api::Anthropic, "x", false).await.status(), 200);
    let stats = sim.stats();
    assert_eq!(stats.faults_served, 2);
    assert_eq!(stats.total_requests, 4);
    assert_eq!(stats.path("/v1/messages"), 3);
    assert_eq!(stats.status(500), 2);
    assert_eq!(stats.status(200), 2);

    // Without count, it stays until cleared.
    sim.set_fault(FaultMode::Http502).await.unwrap();
    for _ in 0..3 {
        assert_eq!(send(&c, &sim, Api::OpenAi, "x", false).await.status(), 502);
    }
    sim.clear_fault().await.unwrap();
    assert_eq!(send(&c, &sim, Api::OpenAi, "x", false).await.status(), 200);
}

#[tokio::test]
async fn refuse_closes_the_port_and_clear_reopens_it() {
    let sim = sim().await;
    let c = client();
    assert_eq!(send(&c, &sim, Api::OpenAi, "x", false).await.status(), 200);
    eventually(Duration::from_secs(2), || sim.stats().open_connections == 1).await;

    sim.set_fault(FaultMode::Refuse).await.unwrap();
    let err = tokio::net::TcpStream::connect(sim.addr()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    // The pooled connection was dropped too.
    eventually(Duration::from_secs(2), || sim.stats().open_connections == 0).await;
    let (path, body) = say_body(Api::OpenAi, "x", false);
    let r = c.post(format!("{}{path}", sim.base_url())).bearer_auth("k").json(&body).send().await;
    assert!(r.is_err(), "{r:?}");

    sim.clear_fault().await.unwrap();
    tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    assert_eq!(send(&c, &sim, Api::OpenAi, "x", false).await.status(), 200);
    assert_eq!(sim.addr(), sim.addr(), "same port");
}

#[tokio::test]
async fn temporary_refuse_through_the_api_port_recovers_by_itself() {
    let sim = sim().await;
    let c = fresh_client();
    let control = format!("{}/_sim/fault", sim.base_url());
    let r = c.post(&control).json(&json!({"mode": "refuse"})).send().await.unwrap();
    assert_eq!(r.status(), 409, "open-ended refuse would lock the control endpoints out");
    let r = c.post(&control).json(&json!({"mode": "refuse", "delay_ms": 300})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let err = tokio::net::TcpStream::connect(sim.addr()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(sim.addr()).await.is_err() {
        assert!(Instant::now() < deadline, "port did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sim.fault().is_none());
    assert_eq!(send(&c, &sim, Api::OpenAi, "x", false).await.status(), 200);
}

#[tokio::test]
async fn reset_drops_the_connection_without_a_response() {
    let sim = sim().await;
    let c = fresh_client();
    sim.set_fault(Fault::new(FaultMode::Reset).count(1)).await.unwrap();
    let (path, body) = say_body(Api::Anthropic, "x", false);
    let r = c.post(format!("{}{path}", sim.base_url())).header("x-api-key", "k").json(&body).send().await;
    let err = r.unwrap_err();
    assert!(!err.is_timeout() && !err.is_status(), "{err:?}");
    let stats = sim.stats();
    assert_eq!(stats.total_requests, 1);
    assert_eq!(stats.faults_served, 1);
    assert!(stats.by_status.is_empty(), "no response was sent");
    assert_eq!(send(&c, &sim, Api::Anthropic, "x", false).await.status(), 200);
}

#[tokio::test]
async fn hang_never_answers_until_cleared() {
    let sim = sim().await;
    sim.set_fault(FaultMode::Hang).await.unwrap();
    let c = fresh_client();
    let (path, body) = say_body(Api::OpenAi, "x", false);
    let url = format!("{}{path}", sim.base_url());
    let r = c.post(&url).bearer_auth("k").json(&body).timeout(Duration::from_millis(300)).send().await;
    assert!(r.unwrap_err().is_timeout());
    // The client went away: the hung request is dropped, not leaked.
    eventually(Duration::from_secs(2), || sim.stats().in_flight == 0).await;

    let pending = tokio::spawn({
        let c = c.clone();
        let url = url.clone();
        async move { c.post(&url).bearer_auth("k").json(&body).send().await.unwrap() }
    });
    eventually(Duration::from_secs(2), || sim.stats().in_flight == 1).await;
    sim.clear_fault().await.unwrap();
    let resp = pending.await.unwrap();
    assert_eq!(resp.status(), 200, "released and answered once cleared");
    assert_eq!(sim.stats().faults_served, 2);
}

#[tokio::test]
async fn slow_first_token_delays_the_response() {
    let sim = sim().await;
    let c = client();
    sim.set_fault(Fault::new(FaultMode::SlowFirstToken).delay(Duration::from_millis(300)).count(1)).await.unwrap();
    let t = Instant::now();
    let resp = send(&c, &sim, Api::OpenAi, "x", true).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status(), 200);
    assert_eq!(parse_sse(&resp.text().await.unwrap()).last().unwrap().data, "[DONE]");
}

/// Reads a streamed body until it fails, ends, or `stop` says enough;
/// returns what arrived and how it ended.
async fn read_until(resp: &mut reqwest::Response, mut stop: impl FnMut(&str) -> bool) -> (String, Result<bool, reqwest::Error>) {
    let mut text = String::new();
    loop {
        if stop(&text) {
            return (text, Ok(false));
        }
        match resp.chunk().await {
            Ok(Some(b)) => text.push_str(std::str::from_utf8(&b).unwrap()),
            Ok(None) => return (text, Ok(true)),
            Err(e) => return (text, Err(e)),
        }
    }
}

fn complete_events(text: &str) -> Vec<Event> {
    match text.rfind("\n\n") {
        Some(end) => parse_sse(&text[..end + 2]),
        None => Vec::new(),
    }
}

#[tokio::test]
async fn cut_mid_stream_aborts_before_the_end() {
    for api in [Api::OpenAi, Api::Anthropic] {
        let sim = sim().await;
        let c = fresh_client();
        sim.set_fault(Fault::new(FaultMode::CutMidStream).after_chunks(2)).await.unwrap();
        let mut resp = send(&c, &sim, api, "one two three four five", true).await;
        assert_eq!(resp.status(), 200);
        let (text, end) = read_until(&mut resp, |_| false).await;
        assert!(end.is_err(), "{api:?}: the stream must end with an error, got {end:?}");
        let events = parse_sse(&text);
        match api {
            Api::OpenAi => {
                assert_eq!(chat_text(&events), "one two");
                assert!(!text.contains("[DONE]") && !text.contains("finish_reason\":\"stop"));
            }
            Api::Anthropic => {
                assert_eq!(anthropic_text(&events), "one two");
                assert!(!text.contains("message_delta") && !text.contains("message_stop"));
            }
        }
        // A non-streaming answer is cut half way through its body.
        let resp = send(&c, &sim, api, "one two three", false).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.is_err(), "{api:?}");
    }
}

#[tokio::test]
async fn stall_mid_stream_holds_until_cleared() {
    let sim = sim().await;
    let c = fresh_client();
    sim.set_fault(Fault::new(FaultMode::StallMidStream).after_chunks(2).count(1)).await.unwrap();
    let mut resp = send(&c, &sim, Api::Anthropic, "one two three four", true).await;
    let (text, _) = read_until(&mut resp, |t| anthropic_text(&complete_events(t)) == "one two").await;
    assert_eq!(anthropic_text(&complete_events(&text)), "one two");
    let next = tokio::time::timeout(Duration::from_millis(300), resp.chunk()).await;
    assert!(next.is_err(), "stalled: nothing more arrives");
    sim.clear_fault().await.unwrap();
    let (rest, end) = read_until(&mut resp, |_| false).await;
    assert!(end.unwrap());
    let all = parse_sse(&format!("{text}{rest}"));
    assert_eq!(anthropic_text(&all), "one two three four");
    assert_eq!(all.last().unwrap().name.as_deref(), Some("message_stop"));

    // With delay_ms the stall ends by itself.
    sim.set_fault(Fault::new(FaultMode::StallMidStream).delay(Duration::from_millis(250))).await.unwrap();
    let t = Instant::now();
    let events = parse_sse(&send(&c, &sim, Api::OpenAi, "a b c", true).await.text().await.unwrap());
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert_eq!(chat_text(&events), "a b c");
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[tokio::test]
async fn malformed_chunk_injects_invalid_json_and_goes_on() {
    for api in [Api::OpenAi, Api::Anthropic] {
        let sim = sim().await;
        let c = client();
        sim.set_fault(Fault::new(FaultMode::MalformedChunk).after_chunks(1)).await.unwrap();
        let events = parse_sse(&send(&c, &sim, api, "one two three", true).await.text().await.unwrap());
        let bad: Vec<usize> =
            (0..events.len()).filter(|&i| events[i].data != "[DONE]" && serde_json::from_str::<Value>(&events[i].data).is_err()).collect();
        assert_eq!(bad.len(), 1, "{api:?}: {events:?}");
        let good: Vec<Event> =
            events.iter().filter(|e| e.data == "[DONE]" || serde_json::from_str::<Value>(&e.data).is_ok()).cloned().collect();
        match api {
            Api::OpenAi => {
                assert_eq!(chat_text(&good), "one two three");
                assert_eq!(events.last().unwrap().data, "[DONE]");
                assert!(chat_text(&good[..bad[0]]) == "one", "after one chunk");
            }
            Api::Anthropic => {
                assert_eq!(anthropic_text(&good), "one two three");
                assert_eq!(events.last().unwrap().name.as_deref(), Some("message_stop"));
            }
        }
    }
}

#[tokio::test]
async fn missing_done_ends_cleanly_without_the_terminal_event() {
    let sim = sim().await;
    let c = client();
    sim.set_fault(Fault::new(FaultMode::MissingDone).count(2)).await.unwrap();
    // Non-streaming requests neither see it nor use it up.
    assert_eq!(send(&c, &sim, Api::OpenAi, "a b", false).await.status(), 200);
    let events = parse_sse(&send(&c, &sim, Api::OpenAi, "a b", true).await.text().await.unwrap());
    assert_eq!(chat_text(&events), "a b");
    assert!(events.iter().all(|e| e.data != "[DONE]"));
    assert_eq!(events.last().unwrap().json()["choices"][0]["finish_reason"], "stop");
    let events = parse_sse(&send(&c, &sim, Api::Anthropic, "a b", true).await.text().await.unwrap());
    assert_eq!(anthropic_text(&events), "a b");
    assert_eq!(events.last().unwrap().name.as_deref(), Some("message_delta"));
    // Used up: complete again.
    let events = parse_sse(&send(&c, &sim, Api::Anthropic, "a b", true).await.text().await.unwrap());
    assert_eq!(events.last().unwrap().name.as_deref(), Some("message_stop"));
    assert_eq!(sim.stats().faults_served, 2);
}

#[tokio::test]
async fn reject_prefill_only_hits_prefill_requests() {
    let sim = sim().await;
    let c = client();
    sim.set_fault(Fault::new(FaultMode::RejectPrefill).count(1)).await.unwrap();
    assert_eq!(send(&c, &sim, Api::Anthropic, "x", false).await.status(), 200);
    let prefill = json!({"model": "m", "max_tokens": 10, "messages": [user("say:a b"), {"role": "assistant", "content": "a"}]});
    let resp = messages(&c, &sim, prefill.clone()).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["message"], "assistant message prefill is not supported for this model");
    let ok: Value = messages(&c, &sim, prefill).await.json().await.unwrap();
    assert_eq!(ok["content"][0]["text"], " b");
}

#[tokio::test]
async fn token_delay_paces_streams_only() {
    let sim = sim().await;
    let c = client();
    let r = c.post(format!("{}/_sim/config", sim.base_url())).json(&json!({"token_delay_ms": 60})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["token_delay_ms"], 60);
    let t = Instant::now();
    let events = parse_sse(&send(&c, &sim, Api::OpenAi, "a b c d", true).await.text().await.unwrap());
    assert!(t.elapsed() >= Duration::from_millis(240), "{:?}", t.elapsed());
    assert_eq!(chat_text(&events), "a b c d");
    sim.set_token_delay(Duration::ZERO);
    let t = Instant::now();
    send(&c, &sim, Api::OpenAi, "a b c d", true).await.text().await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(240), "{:?}", t.elapsed());
}
