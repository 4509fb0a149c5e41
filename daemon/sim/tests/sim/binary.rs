//! The `genset-sim` binary, as the Python tests run it.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::*;

#[tokio::test]
async fn binary_prints_its_url_and_refuses_through_the_control_port() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_genset-sim"))
        .args(["--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0", "--keys", "key-a,key-b"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    let base = line.strip_prefix("genset-sim listening on ").unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();

    let c = fresh_client();
    let health: Value = c.get(format!("{base}/_sim/health")).send().await.unwrap().json().await.unwrap();
    let control = health["control_url"].as_str().unwrap().to_owned();
    assert_ne!(control, base);

    let body = json!({"model": "gpt-4o", "messages": [user("say:hi")]});
    let post = |key: &'static str| c.post(format!("{base}/v1/chat/completions")).bearer_auth(key).json(&body).send();
    assert_eq!(post("key-b").await.unwrap().status(), 200);
    assert_eq!(post("key-c").await.unwrap().status(), 401);

    let r = c.post(format!("{control}/_sim/fault")).json(&json!({"mode": "refuse"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let r = c.delete(format!("{control}/_sim/fault")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let resp: Value = post("key-a").await.unwrap().json().await.unwrap();
    assert_eq!(resp["choices"][0]["message"]["content"], "hi");

    let stats: Value = c.get(format!("{control}/_sim/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["total_requests"], 3);
    assert_eq!(stats["by_status"], json!({"200": 2, "401": 1}));
    // The control port serves /_sim/ only.
    let r = c.post(format!("{control}/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 404);

    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
