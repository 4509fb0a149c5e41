//! Decode throughput and time to first token of the in-process engine, at 1, 4 and 8
//! concurrent streams, plus a repeated-system-prompt (prefix cache) run.
//!
//! ```sh
//! cargo run --release -p genset-engine --example decode_speed -- [MODEL.gguf] [THREADS]
//! ```
//! Defaults: `$GENSET_TEST_MODEL` or `~/.cache/genset/models/gemma-3-270m-q4_k_m.gguf`, and the
//! physical cores. Settings mirror `llama-server -c 16384 -np 4 -b 512 -ub 512 --swa-full`
//! (context 4096 per slot, 4 slots).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use genset_engine::{ChatMessage, EngineRegistry, GenerateEvent, GenerateRequest, LoadOptions, ModelConfig, Prompt, SamplingParams};

const SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

fn request(user: &str, system: Option<&str>, max_tokens: u32) -> GenerateRequest {
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(ChatMessage::new("system", s));
    }
    messages.push(ChatMessage::new("user", user));
    let mut r = GenerateRequest::new(Prompt::Chat { messages, tools: vec![] });
    r.sampling = SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        // Ban <eos> and <end_of_turn> so every stream decodes exactly max_tokens.
        logit_bias: vec![(1, -100.0), (106, -100.0)],
        ..Default::default()
    };
    r
}

struct Run {
    ttft: Vec<Duration>,
    tokens: usize,
    cached: usize,
    wall: Duration,
    decode_wall: Duration,
}

async fn run(engine: &std::sync::Arc<dyn genset_engine::Engine>, reqs: Vec<GenerateRequest>) -> Run {
    let t0 = Instant::now();
    let gens: Vec<_> = reqs.into_iter().map(|r| engine.submit(r).unwrap()).collect();
    let tasks = gens.into_iter().map(|mut g| async move {
        let mut first = None;
        let mut tokens = 0;
        let mut cached = 0;
        while let Some(ev) = g.next().await {
            match ev {
                GenerateEvent::Started { cached_tokens, .. } => cached = cached_tokens,
                GenerateEvent::Text(_) => {
                    first.get_or_insert_with(Instant::now);
                }
                GenerateEvent::Done { usage, .. } => tokens = usage.completion_tokens,
                GenerateEvent::Error(e) => panic!("{e}"),
            }
        }
        (first.unwrap_or_else(Instant::now), Instant::now(), tokens, cached)
    });
    let results = futures_util::future::join_all(tasks).await;
    let wall = t0.elapsed();
    let last_first = results.iter().map(|r| r.0).max().unwrap();
    let end = results.iter().map(|r| r.1).max().unwrap();
    Run {
        ttft: results.iter().map(|r| r.0 - t0).collect(),
        tokens: results.iter().map(|r| r.2).sum(),
        cached: results.iter().map(|r| r.3).sum(),
        wall,
        decode_wall: end.duration_since(last_first),
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .filter(|a| !a.is_empty())
        .cloned()
        .or_else(|| std::env::var("GENSET_TEST_MODEL").ok())
        .unwrap_or_else(|| format!("{}/.cache/genset/models/gemma-3-270m-q4_k_m.gguf", std::env::var("HOME").unwrap()));
    let mut cfg = ModelConfig::gguf("bench", model, SHA256);
    cfg.context = 4096;
    cfg.parallel = 4;
    cfg.chat_template = Some("gemma".into());
    cfg.threads = args.get(2).and_then(|t| t.parse().ok());
    println!("threads: {}", cfg.effective_threads());
    let reg = EngineRegistry::load(&[cfg], &LoadOptions::default()).await.unwrap();
    let engine = reg.get("bench").unwrap();
    let n = 128;
    // Warm-up.
    run(&engine, vec![request("Hello there.", None, 8)]).await;
    for streams in [1usize, 4, 8] {
        let reqs = (0..streams).map(|i| request(&format!("Tell me a story about robot number {i}."), None, n)).collect();
        let r = run(&engine, reqs).await;
        let ttft_ms: Vec<u128> = r.ttft.iter().map(|d| d.as_millis()).collect();
        println!(
            "{streams} streams x {n} tokens: {:.1} tok/s aggregate over the whole run ({} tokens in {:.2}s), ttft ms {:?}",
            r.tokens as f64 / r.wall.as_secs_f64(),
            r.tokens,
            r.wall.as_secs_f64(),
            ttft_ms,
        );
        if streams <= 4 {
            // Approximate for several streams: counts tokens from before the last first token.
            println!(
                "    decode after the last first token: {:.1} tok/s",
                r.tokens.saturating_sub(streams) as f64 / r.decode_wall.as_secs_f64().max(1e-9)
            );
        }
    }
    // Prefix cache: a ~500-token system prompt, asked twice with different questions.
    let system = "You are the assistant of a hardware store. Answer briefly and politely. ".repeat(36);
    let miss = run(&engine, vec![request("Do you sell hammers?", Some(&system), 8)]).await;
    let hit = run(&engine, vec![request("When do you open?", Some(&system), 8)]).await;
    println!(
        "prefix cache: miss ttft {} ms, hit ttft {} ms (cached {} tokens)",
        miss.ttft[0].as_millis(),
        hit.ttft[0].as_millis(),
        hit.cached
    );
    println!("{:#?}", engine.stats());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status.lines().filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM")) {
        println!("{line}");
    }
}
