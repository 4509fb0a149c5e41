//! Recorder throughput: how many exchanges per second the batch writer stores in SQLite
//! (or PostgreSQL), redaction and stream reassembly included.
//!
//! cargo run --release -p genset --example recorder_bench -- [N] [STORE_URL] [REDACT]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use genset::api::error::Flavor;
use genset::config::RedactMode;
use genset::metrics::Metrics;
use genset::record::writer::Writer;
use genset::record::{Capture, Ending, Exchange, Recorder};
use genset::store::Store;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let url =
        args.get(2).filter(|s| !s.is_empty()).cloned().unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let redact = match args.get(3).map(String::as_str) {
        Some("none") => RedactMode::None,
        Some("hash-only") => RedactMode::HashOnly,
        _ => RedactMode::Pii,
    };
    let store = Store::open(&url, 4).await.unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let (recorder, rx) = Recorder::channel(n + 1, 1 << 20, metrics.clone());
    let req = Bytes::from_static(br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You triage support tickets into billing, bug, or other."},{"role":"user","content":"My invoice for October is wrong, please fix."}]}"#);
    let resp = Bytes::from_static(br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"billing"},"finish_reason":"stop"}],"usage":{"prompt_tokens":42,"completion_tokens":1,"total_tokens":43}}"#);
    let uc: Arc<str> = Arc::from("support-triage");
    let by: Arc<str> = Arc::from("cloud:openai");
    for i in 0..n {
        recorder.record(Exchange {
            ts_ms: 1_700_000_000_000 + i as i64,
            api: Flavor::OpenAi,
            endpoint: "/v1/chat/completions",
            use_case: uc.clone(),
            served_by: by.clone(),
            model: Some("gpt-4o-mini".into()),
            status: 200,
            stream: false,
            sse: false,
            request: Capture::from_bytes(req.clone(), 1 << 20),
            response: Capture::from_bytes(resp.clone(), 1 << 20),
            ending: Ending::Delivered,
            error: None,
            client_key_hash: Some(format!("{:064x}", i % 50)),
            virtual_key_id: None,
            ttfb: Some(Duration::from_millis(120)),
            total: Duration::from_millis(150),
            attempt: Default::default(),
        });
    }
    let stats = recorder.stats.clone();
    drop(recorder);
    let writer = Writer {
        store: store.clone(),
        redact,
        batch: 1024,
        flush_interval: Duration::from_millis(100),
        metrics,
        stats: stats.clone(),
        hurry: Default::default(),
    };
    let t = Instant::now();
    writer.run(rx).await;
    let secs = t.elapsed().as_secs_f64();
    let stored = store.count_exchanges().await.unwrap();
    assert_eq!(stored as usize, n, "every exchange must be stored");
    println!(
        "recorder: {n} exchanges written to {} (redact={}) in {secs:.2}s = {:.0} exchanges/s",
        store.backend(),
        redact.as_str(),
        n as f64 / secs
    );
}
