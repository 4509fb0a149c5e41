//! The console in real headless Chromium (Debian's `chromium` and `chromium-driver`), over
//! TLS with a self-signed certificate, as an operator would use it. Screenshots of each page
//! go to `$GENSET_ARTIFACTS` (or `$CARGO_TARGET_DIR/console-screenshots`). Skips, saying
//! so, only when Chromium or chromedriver is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_PW, seed_exchanges, start};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use serde_json::json;

fn find_exe(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("GENSET_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("console-screenshots")
    });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
}

/// Wait (up to 10 s) until the page, after a navigation a click started, shows all of
/// `needles`; returns its text.
async fn wait_text(c: &Client, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = match c.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if needles.iter().all(|n| text.contains(n)) {
            return text;
        }
        assert!(Instant::now() < deadline, "waited for {needles:?} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait (up to 10 s) for an element that a navigation a click started will show. Unlike
/// fantoccini's `wait().for_element`, a lookup that fails while the page is still loading
/// (chromedriver answers "aborted by navigation") is retried, not returned.
async fn try_wait_for(c: &Client, css: &str) -> Result<Element, CmdError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.find(Locator::Css(css)).await {
            Ok(e) => return Ok(e),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn wait_for(c: &Client, css: &str) -> Element {
    try_wait_for(c, css).await.unwrap_or_else(|e| panic!("waited for {css}: {e}"))
}

/// Wait (up to 10 s) until the browser's URL passes `ok`, retrying lookups that fail while a
/// navigation is under way.
async fn wait_url(c: &Client, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        if ok(&url) {
            return url;
        }
        assert!(Instant::now() < deadline, "waited for {what}, at {url:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

async fn login(c: &Client, base: &str, user: &str, pw: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(c, "#username", user).await;
    fill(c, "#password", pw).await;
    click(c, "#signin").await;
    wait_for(c, "#logout").await;
}

async fn flip(c: &Client, base: &str, mode: &str, reason: &str) {
    c.goto(&format!("{base}/failover")).await.unwrap();
    click(c, &format!("#flip-{mode}")).await;
    wait_for(c, "#reason").await;
    fill(c, "#reason", reason).await;
    click(c, "#confirm").await;
    fill(c, "#password", ADMIN_PW).await;
    click(c, "#flip-submit").await;
    let back = format!("{base}/failover");
    wait_url(c, "the failover page", |u| u == back).await;
}

#[actix_web::test]
async fn console_in_headless_chromium() {
    let (Some(chromium), Some(chromedriver)) = (find_exe(&["chromium", "chromium-browser"]), find_exe(&["chromedriver"])) else {
        println!(
            "SKIPPED console_in_headless_chromium: Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let d = start(true).await;
    seed_exchanges(d.store(), 300).await;
    let base = d.base.clone();
    let shots = artifacts();

    // chromedriver on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver"),
    );
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("acceptInsecureCerts".into(), json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--no-first-run", "--disable-extensions", format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let c = loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver did not start: {e}"),
        }
    };

    // Whatever happens in the scenario, end the browser session (a panicking test would
    // otherwise leave Chromium running after chromedriver is killed).
    let outcome = std::panic::AssertUnwindSafe(scenario(&c, &d, &base, &shots)).catch_unwind().await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    println!("screenshots in {}", shots.display());
    d.shutdown().await;
}

async fn scenario(c: &Client, d: &common::Daemon, base: &str, shots: &Path) {
    let (base, shots) = (base.to_string(), shots.to_path_buf());
    // 1. Bootstrap the first admin through the setup link gensetctl would print.
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let link: serde_json::Value =
        http.post(format!("{base}/api/v1/console/bootstrap")).bearer_auth(&d.token).send().await.unwrap().json().await.unwrap();
    c.goto(&format!("{base}{}", link["setup_path"].as_str().unwrap())).await.unwrap();
    shot(c, &shots, "01-setup").await;
    fill(c, "#username", "ada").await;
    fill(c, "#password", ADMIN_PW).await;
    fill(c, "#confirm", ADMIN_PW).await;
    click(c, "#create-admin").await;
    if try_wait_for(c, "#logout").await.is_err() {
        panic!("setup did not sign in: {}\n{}", c.current_url().await.unwrap(), body_text(c).await);
    }
    assert!(body_text(c).await.contains("Overview"));
    // The session cookie is __Host-, Secure, HttpOnly, SameSite=Strict, and works in Chromium.
    let cookie = c.get_named_cookie("__Host-genset_session").await.unwrap();
    assert_eq!((cookie.secure(), cookie.http_only()), (Some(true), Some(true)));

    // 2. Six wrong passwords from another address do not lock the admin out.
    let mut attacker = common::Client::new(&base, Some("127.0.0.2".parse().unwrap()));
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for i in 0..6 {
            v.push(attacker.login("ada", &format!("wrong password {i}")).await.status);
        }
        v
    };
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    click(c, "#logout").await;
    wait_for(c, "#signin").await;
    shot(c, &shots, "02-login").await;
    login(c, &base, "ada", ADMIN_PW).await;

    // 3. Every page (with a readiness history, so the use case page draws its trend).
    let now = genset::record::now_ms();
    for (i, (verdict, score)) in [("not-ready", 0.52), ("marginal", 0.78), ("ready", 0.91)].iter().enumerate() {
        d.store()
            .insert_readiness(&genset::store::evaluate::ReadinessRow {
                ts_ms: now - (3 - i as i64) * 3_600_000,
                use_case: "support".into(),
                verdict: verdict.to_string(),
                score: *score,
                score_lower: score - 0.06,
                score_upper: score + 0.05,
                n: 60,
                reasons: "[]".into(),
                detail: "{}".into(),
            })
            .await
            .unwrap();
    }
    let first_id = d.store().list_exchanges(&genset::store::TrafficFilter { limit: 1, ..Default::default() }).await.unwrap()[0].id;
    let pages = [
        ("03-overview", "/".to_string(), "Latency, last hour"),
        ("04-use-cases", "/use-cases".into(), "Use cases"),
        ("05-use-case", "/use-cases/support".into(), "Readiness over time"),
        ("06-traffic", "/traffic".into(), "Traffic"),
        ("07-traffic-filtered", "/traffic?use_case=invoices&status=200".into(), "Traffic"),
        ("08-exchange", format!("/traffic/{first_id}"), "printer on fire"),
        ("09-models", "/models".into(), "Local models"),
        ("10-failover", "/failover".into(), "Failover"),
        ("11-keys", "/keys".into(), "Virtual keys"),
        ("12-users", "/users".into(), "Active sessions"),
        ("13-audit", "/audit".into(), "Audit log"),
        ("14-account", "/account".into(), "Your active sessions"),
        ("15-drills", "/drills".into(), "Start a drill"),
        ("16-reports", "/reports?period=2026-11".into(), "Download PDF"),
    ];
    for (name, path, expect) in &pages {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let text = body_text(c).await;
        assert!(text.contains(expect), "{path}: expected {expect:?} in:\n{text}");
        assert!(!text.contains("The store failed"), "{path}");
        shot(c, &shots, name).await;
    }
    // Paging to older traffic.
    c.goto(&format!("{base}/traffic")).await.unwrap();
    click(c, "#older").await;
    wait_url(c, "older traffic", |u| u.contains("before=")).await;

    // 4. A key: shown once.
    c.goto(&format!("{base}/keys")).await.unwrap();
    fill(c, "#key-name", "billing-app").await;
    click(c, "#create-key").await;
    let key = wait_for(c, "#new-key-value").await.text().await.unwrap();
    assert!(key.starts_with("gk-"), "{key}");
    shot(c, &shots, "15-key-created").await;
    c.goto(&format!("{base}/keys")).await.unwrap();
    assert!(!c.source().await.unwrap().contains(&key));

    // 5. A form whose CSRF token was removed is refused.
    c.goto(&format!("{base}/keys")).await.unwrap();
    c.execute("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())", vec![]).await.unwrap();
    fill(c, "#key-name", "no-csrf").await;
    click(c, "#create-key").await;
    wait_text(c, &["403", "The form expired"]).await;
    shot(c, &shots, "16-csrf-refused").await;

    // 6. Flip to force-local and back, with reasons.
    flip(c, &base, "force-local", "quarterly failover drill").await;
    wait_text(c, &["Forced local", "quarterly failover drill"]).await;
    shot(c, &shots, "17-forced-local").await;
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(body_text(c).await.contains("Forced local"));
    shot(c, &shots, "18-overview-forced-local").await;
    flip(c, &base, "auto", "drill finished").await;
    let text = wait_text(c, &["Cloud", "drill finished"]).await;
    assert!(!text.contains("Forced local"), "{text}");
    c.goto(&format!("{base}/audit?action=mode.flip")).await.unwrap();
    let audit = body_text(c).await;
    assert!(audit.contains("auto → force-local: quarterly failover drill"), "{audit}");
    assert!(audit.contains("force-local → auto: drill finished"), "{audit}");
    shot(c, &shots, "19-audit-flips").await;

    // 7. A viewer: dashboards yes, the flip no (the server refuses, not just a hidden button).
    c.goto(&format!("{base}/users")).await.unwrap();
    fill(c, "#new-username", "manager").await;
    fill(c, "#new-password", "quarterly numbers only").await;
    c.find(Locator::Css("#new-role option[value=viewer]")).await.unwrap().click().await.unwrap();
    fill(c, "#my-password", ADMIN_PW).await;
    click(c, "#create-user").await;
    assert!(wait_for(c, "#users-notice").await.text().await.unwrap().contains("manager"));
    click(c, "#logout").await;
    wait_for(c, "#signin").await;
    login(c, &base, "manager", "quarterly numbers only").await;
    c.goto(&format!("{base}/failover")).await.unwrap();
    assert!(c.find(Locator::Css("#flip-force-local")).await.is_err(), "no flip button for a viewer");
    shot(c, &shots, "20-viewer-failover").await;
    c.goto(&format!("{base}/failover/flip?mode=force-local")).await.unwrap();
    let text = body_text(c).await;
    assert!(text.contains("403") && text.contains("needs the operator role"), "{text}");
    shot(c, &shots, "21-viewer-flip-refused").await;
    c.goto(&format!("{base}/users")).await.unwrap();
    assert!(body_text(c).await.contains("needs the admin role"));
    assert_eq!(d.running.as_ref().unwrap().controller.snapshot().mode.mode.as_str(), "auto");
}
