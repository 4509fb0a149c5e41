//! Trace export: with `telemetry.otlp_endpoint` set, request spans reach an OTLP/HTTP
//! collector (a fake one here that records what it receives). Its own test binary, because
//! the tracing subscriber is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use parking_lot::Mutex;

#[actix_web::test]
async fn request_spans_are_exported_over_otlp_http() {
    let got: Arc<Mutex<Vec<(String, String, usize)>>> = Arc::default();
    let g = got.clone();
    let collector = HttpServer::new(move || {
        let g = g.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let g = g.clone();
            async move {
                let ct = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                g.lock().push((req.path().to_string(), ct, body.len()));
                HttpResponse::Ok().content_type("application/x-protobuf").finish()
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = collector.addrs()[0];
    let server = collector.run();
    let handle = server.handle();
    tokio::spawn(server);

    let sim = genset_sim::start(genset_sim::SimOptions::default()).await.unwrap();
    let extra = format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\n\
         [telemetry]\notlp_endpoint = \"http://{addr}\"\nservice_name = \"gensetd-test\"\notlp_headers = {{ authorization = \"Bearer collector-secret\" }}\n",
        sim.base_url()
    );
    let d = common::start_daemon(&extra).await;
    genset::telemetry::init(&d.running().config().telemetry);
    let resp = d
        .http
        .post(format!("{}/v1/chat/completions", d.proxy))
        .bearer_auth("sk-client")
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "say: traced"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Shutting the provider down flushes the batch.
    tokio::task::spawn_blocking(genset::telemetry::shutdown).await.unwrap();
    let got = got.lock().clone();
    assert!(
        got.iter().any(|(path, ct, len)| path == "/v1/traces" && ct == "application/x-protobuf" && *len > 0),
        "the collector received no spans: {got:?}"
    );
    d.shutdown().await;
    sim.stop().await;
    handle.stop(true).await;
}
