//! Scheduled SLA report delivery: `[reports] schedule` + `webhook` POST the period's report
//! (figures as JSON and the PDF in base64) and record a `report` event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::Value;

/// Wait until a `report` event whose cause contains `needle` is stored.
async fn wait_report_event(d: &common::Daemon, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let events = d.running().store.list_events(50).await.unwrap();
        if events.iter().any(|e| e.kind == "report" && e.cause.contains(needle)) {
            return;
        }
        assert!(Instant::now() < deadline, "no report event with {needle:?}: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_scheduled_report_is_delivered_to_the_webhook() {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let hook = HttpServer::new(move || {
        let g = g.clone();
        App::new().route(
            "/hook",
            web::post().to(move |body: web::Json<Value>| {
                let g = g.clone();
                async move {
                    g.lock().push(body.into_inner());
                    HttpResponse::NoContent().finish()
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = hook.addrs()[0];
    let server = hook.run();
    let handle = server.handle();
    tokio::spawn(server);

    let d = common::start_daemon(&format!(
        "[reports]\nslo = 99.5\ntitle = \"Acme\"\nschedule = \"* * * * * *\"\nwebhook = \"http://{addr}/hook\"\nscheduled_period = \"previous-month\"\n"
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().is_empty() {
        assert!(Instant::now() < deadline, "no report was delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = got.lock()[0].clone();
    assert_eq!(body["type"], "genset.report");
    let want = genset::drill::delivery::period_label(genset::config::drills::ScheduledPeriod::PreviousMonth, genset::record::now_ms());
    assert_eq!(body["period"], want);
    assert!(body["report"].is_object(), "{body}");
    assert!(body["report"].to_string().contains("99.5"), "the configured SLO is in the figures");
    let pdf = base64::engine::general_purpose::STANDARD.decode(body["pdf_base64"].as_str().unwrap()).unwrap();
    assert!(pdf.starts_with(b"%PDF"), "a PDF rendered by the daemon");
    // The delivery is an event.
    wait_report_event(&d, "delivered", Duration::from_secs(10)).await;
    d.shutdown().await;
    handle.stop(true).await;
}

/// A webhook that accepts the POST and never answers: the next scheduled deliveries are
/// skipped while it hangs (one at a time, recorded as events), and it does not outlive the
/// daemon: shutdown gives the delivery up (its connection closes) instead of leaving it
/// running or waiting for the client's 30 s timeout.
#[actix_web::test]
async fn a_webhook_that_hangs_gets_one_delivery_which_shutdown_gives_up() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let d = common::start_daemon(&format!(
        "[reports]\nschedule = \"* * * * * *\"\nwebhook = \"http://{addr}/hook\"\nscheduled_period = \"previous-month\"\n"
    ))
    .await;
    // The first delivery arrives (the request line, at least) and is left hanging.
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await.expect("no delivery arrived").unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"POST /hook"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    // The schedule fires every second; the next firing is skipped, not a second delivery.
    wait_report_event(&d, "skipped", Duration::from_secs(30)).await;
    let second = tokio::time::timeout(Duration::from_millis(1), listener.accept()).await;
    assert!(second.is_err(), "a second delivery was started while the first one hangs");
    let t = Instant::now();
    d.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(10), "shutdown waited {:?} for the hanging webhook", t.elapsed());
    // The delivery was dropped with the daemon: its connection is closed (EOF), not left open.
    let eof = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // the rest of the request body
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "the delivery kept its connection to the webhook open after shutdown");
}

#[test]
fn a_schedule_without_a_webhook_is_a_config_error_naming_the_key() {
    let e = genset::config::Config::from_toml("[reports]\nschedule = \"0 0 6 1 * *\"\n", std::path::Path::new("t.toml")).unwrap_err();
    assert_eq!(e.path, "reports.webhook", "{e}");
    let e =
        genset::config::Config::from_toml("[reports]\nschedule = \"every day\"\nwebhook = \"http://x/\"\n", std::path::Path::new("t.toml"))
            .unwrap_err();
    assert_eq!(e.path, "reports.schedule", "{e}");
}
