//! Drills and reports end to end (issue 8): a live drill with the real test model through the
//! admin API and gensetctl, an abort that returns traffic to the cloud at once, a drill
//! refused during an outage, a replay drill's capacity, a scheduled drill firing, and the
//! report of a seeded month checked against hand-computed figures in every format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, start_daemon};
use genset::ctl::{Cli, Command};
use genset::drill::api::DrillCmd;
use serde_json::{Value, json};

const SHA: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

fn model_path() -> std::path::PathBuf {
    let p = match std::env::var_os("GENSET_TEST_MODEL") {
        Some(p) => p.into(),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/genset/models/gemma-3-270m-q4_k_m.gguf"),
    };
    assert!(p.exists(), "the test model is missing at {}: run provisioning/fetch-test-model.sh", p.display());
    p
}

/// A daemon with the simulator as the cloud and the test model behind use case "chat".
async fn rig(extra: &str) -> (genset_sim::SimHandle, Daemon) {
    let sim = genset_sim::start(genset_sim::SimOptions::default()).await.unwrap();
    let d = start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"{}/v1\"\n\
         [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\nchain = [\"openai\", \"local:gemma\"]\n\
         on_cutoff = \"serve-local\"\nlocal_ready = true\n\
         [[models]]\nname = \"gemma\"\npath = \"{}\"\nsha256 = \"{SHA}\"\ncontext = 1024\nparallel = 2\nthreads = 2\nchat_template = \"gemma\"\n\
         [drill_verdict]\nmax_rto = \"60s\"\nmin_success_rate = 0.5\n{extra}",
        sim.base_url(),
        model_path().display(),
    ))
    .await;
    (sim, d)
}

async fn chat(d: &Daemon, text: &str) -> reqwest::Response {
    chat_as(d, "chat", text).await
}

async fn chat_as(d: &Daemon, use_case: &str, text: &str) -> reqwest::Response {
    d.http
        .post(format!("{}/v1/chat/completions", d.proxy))
        .bearer_auth("sk-client")
        .header("x-genset-use-case", use_case)
        .json(&json!({"model": "gpt-4o", "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap()
}

fn served_by(r: &reqwest::Response) -> String {
    r.headers().get("x-genset-served-by").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

async fn admin(d: &Daemon, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = d.http.request(method, format!("{}{path}", d.admin)).bearer_auth(&d.token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn cli(d: &Daemon, command: Command) -> Cli {
    Cli { config: "/nonexistent".into(), admin_url: Some(d.admin.clone()), admin_token: Some(d.token.clone()), json: true, command }
}

/// A 10-minute live drill of one use case started through gensetctl: its id.
async fn start_live(d: &Daemon, use_case: &str, force: bool) -> String {
    let start = DrillCmd::Start {
        kind: "live".into(),
        use_cases: vec![use_case.into()],
        duration: Some("10m".into()),
        window: None,
        period: None,
        speed: None,
        max_requests: None,
        name: None,
        force,
    };
    let out = genset::ctl::run(cli(d, Command::Drill(start))).await.unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Poll a drill until it is no longer running.
async fn wait_ended(d: &Daemon, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, v) = admin(d, reqwest::Method::GET, &format!("/api/v1/drills/{id}"), None).await;
        if v["state"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "drill {id} still running: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn live_drill_serves_locally_then_returns_to_the_cloud() {
    let (_sim, d) = rig("").await;
    let r = chat(&d, "Say hello").await;
    assert_eq!(r.status(), 200);
    assert!(served_by(&r).starts_with("cloud:"), "{}", served_by(&r));

    let (status, v) =
        admin(&d, reqwest::Method::POST, "/api/v1/drills", Some(json!({"use_cases": ["chat"], "duration": "6s", "name": "e2e"}))).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["state"], "running");

    // Progress while it runs, through gensetctl.
    let out = genset::ctl::run(cli(&d, Command::Drill(DrillCmd::Status { id: id.clone() }))).await.unwrap();
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["state"], "running");
    assert!(st["progress"]["fraction"].as_f64().unwrap() < 1.0);
    // During the drill: the same path as a real cut-off, served by the local model.
    let r = chat(&d, "Say hello").await;
    assert_eq!(r.status(), 200);
    assert_eq!(served_by(&r), "local:gemma");
    let _ = r.bytes().await.unwrap();

    let v = wait_ended(&d, &id, Duration::from_secs(20)).await;
    assert_eq!(v["state"], "finished", "{v}");
    let res = &v["result"];
    assert!(res["requests"].as_u64().unwrap() >= 1, "{res}");
    assert!(res["succeeded"].as_u64().unwrap() >= 1, "{res}");
    assert!(res["rto_ms"].as_f64().unwrap() < 6000.0, "{res}");
    assert!(["passed", "passed-with-findings"].contains(&res["verdict"].as_str().unwrap()), "{res}");
    assert!(res["quality_n"].as_u64().unwrap() >= 1, "the cloud's answer to the same prompt is the reference: {res}");

    // After it: back to the cloud.
    let r = chat(&d, "Say hello").await;
    assert!(served_by(&r).starts_with("cloud:"), "{}", served_by(&r));
    let out = genset::ctl::run(cli(&d, Command::Drill(DrillCmd::List { limit: 10 }))).await.unwrap();
    assert!(out.contains(&id));
    d.shutdown().await;
}

#[actix_web::test]
async fn a_live_drill_of_an_unproven_use_case_needs_force() {
    // "unproven" fails over to the same model, but its readiness is not proven and the
    // operator has not set local_ready: a real cut-off would reject its traffic.
    let (_sim, d) = rig("[[use_cases]]\nname = \"unproven\"\nmatch = { header = \"x-genset-use-case\", value = \"unproven\" }\n\
         chain = [\"openai\", \"local:gemma\"]\non_cutoff = \"serve-local\"\n")
    .await;
    let (status, v) = admin(&d, reqwest::Method::POST, "/api/v1/drills", Some(json!({"use_cases": ["unproven"], "duration": "1m"}))).await;
    assert_eq!(status, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("\"unproven\" would not be served locally in a real cut-off") && msg.contains("force"), "{msg}");
    assert!(msg.contains("readiness"), "the reason is the readiness gate's: {msg}");
    // The proven use case beside it starts as before; both together do not.
    let (status, v) =
        admin(&d, reqwest::Method::POST, "/api/v1/drills", Some(json!({"use_cases": ["chat", "unproven"], "duration": "1m"}))).await;
    assert_eq!(status, 400, "{v}");
    let (_, v) = admin(&d, reqwest::Method::GET, "/api/v1/drills", None).await;
    assert_eq!(v["items"].as_array().map(Vec::len), Some(0), "nothing started: {v}");

    // With force (gensetctl --force) it runs, and its clients get the cut-off's answer, which
    // names the drill.
    let id = start_live(&d, "unproven", true).await;
    let r = chat_as(&d, "unproven", "Hi").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cloud_cut_off", "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&format!("failover drill {id}")) && msg.contains("readiness"), "{msg}");
    let (status, _) = admin(&d, reqwest::Method::POST, &format!("/api/v1/drills/{id}/abort"), None).await;
    assert_eq!(status, 200);
    d.shutdown().await;
}

#[actix_web::test]
async fn abort_returns_traffic_at_once_and_outages_refuse_drills() {
    let (_sim, d) = rig("").await;
    let _ = chat(&d, "Hi").await;
    let id = start_live(&d, "chat", false).await;
    let r = chat(&d, "Hi").await;
    assert_eq!(served_by(&r), "local:gemma");
    let _ = r.bytes().await.unwrap();

    let started = Instant::now();
    let out = genset::ctl::run(cli(&d, Command::Drill(DrillCmd::Abort { id: id.clone() }))).await.unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "aborted", "{v}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let r = chat(&d, "Hi").await;
    assert!(served_by(&r).starts_with("cloud:"), "after abort: {}", served_by(&r));
    assert!(v["result"]["findings"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().contains("aborted")), "{v}");
    // Aborting again: not running.
    let (status, _) = admin(&d, reqwest::Method::POST, &format!("/api/v1/drills/{id}/abort"), None).await;
    assert_eq!(status, 409);

    // A (forced) outage: drills refuse to start.
    let (s, _) = admin(&d, reqwest::Method::POST, "/api/v1/mode", Some(json!({"mode": "force-local", "reason": "test"}))).await;
    assert_eq!(s, 200);
    let (status, v) = admin(&d, reqwest::Method::POST, "/api/v1/drills", Some(json!({"use_cases": ["chat"], "duration": "5s"}))).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("outage"));
    // Bad input is the caller's.
    let (status, _) = admin(&d, reqwest::Method::POST, "/api/v1/drills", Some(json!({"use_cases": ["nope"]}))).await;
    assert_eq!(status, 400);
    d.shutdown().await;
}

#[actix_web::test]
async fn replay_drill_reports_capacity() {
    let (_sim, d) = rig("").await;
    for q in ["Say hello", "Name a colour", "Count to three"] {
        let r = chat(&d, q).await;
        assert_eq!(r.status(), 200);
    }
    d.wait_rows(3).await;
    let (status, v) = admin(
        &d,
        reqwest::Method::POST,
        "/api/v1/drills",
        Some(json!({"kind": "replay", "use_cases": ["chat"], "window": "1h", "speed": 2})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let v = wait_ended(&d, v["id"].as_str().unwrap(), Duration::from_secs(120)).await;
    let res = &v["result"];
    assert_eq!(res["requests"], 3, "{res}");
    assert_eq!(res["succeeded"], 3, "{res}");
    let cap = &res["capacity"];
    assert_eq!(cap["recorded_peak_per_min"], 3.0, "{res}");
    assert_eq!(cap["speed"], 2.0);
    assert!(cap["headroom"].as_f64().unwrap() >= 1.0, "{res}");
    assert_eq!(res["quality_n"], 3, "{res}");
    // Clients were not touched: no drill-mode exchanges were recorded.
    let rows = d.running().store.report_exchanges(0, i64::MAX, Some("drill")).await.unwrap();
    assert!(rows.is_empty());
    d.shutdown().await;
}

#[actix_web::test]
async fn scheduled_drill_fires() {
    let (_sim, d) = rig(
        "[[drills]]\nname = \"every-second\"\nkind = \"replay\"\nuse_cases = [\"chat\"]\nwindow = \"1m\"\nschedule = \"* * * * * *\"\n",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = admin(&d, reqwest::Method::GET, "/api/v1/drills", None).await;
        let items = v["items"].as_array().unwrap();
        if let Some(it) = items.iter().find(|i| i["name"] == "every-second" && i["state"] == "finished") {
            assert!(it["actor"].as_str().unwrap().starts_with("schedule:every-second"), "{it}");
            assert_eq!(it["result"]["verdict"], "passed-with-findings", "{it}");
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled drill ran: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.shutdown().await;
}

/// The November fixture of genset-report, seeded into a real store, through the admin API.
#[actix_web::test]
async fn report_of_a_seeded_month_in_every_format() {
    use genset::store::NewExchange;
    use genset_report::fixture;
    // The fixture's exchanges are dated November 2026: a retention longer than their age, or
    // the start-up sweep (racing the seeding below) would delete them once they are 30 days old.
    let d = start_daemon(
        "[recording]\nretention = \"36500d\"\n\
         [reports]\nslo = 97.5\ntitle = \"Acme\"\ncurrency = \"USD\"\n\
         [pricing]\n\"gpt-4o\" = { input_per_mtok = 2.5, output_per_mtok = 10 }\n\"claude-sonnet-4-5\" = { input_per_mtok = 3, output_per_mtok = 15 }\n",
    )
    .await;
    let input = fixture::november();
    let store = &d.running().store;
    let rows: Vec<NewExchange> = input
        .exchanges
        .iter()
        .map(|x| NewExchange {
            ts_ms: x.ts_ms,
            api: "openai",
            endpoint: "/v1/chat/completions",
            use_case: x.use_case.clone(),
            served_by: x.served_by.clone(),
            model: x.model.clone(),
            status: x.status,
            stream: false,
            completed: x.completed,
            error: None,
            client_key_hash: None,
            virtual_key_id: None,
            ttfb_ms: x.ttfb_ms,
            total_ms: x.total_ms,
            prompt_tokens: x.prompt_tokens,
            completion_tokens: x.completion_tokens,
            request_body: None,
            response_body: None,
            request_bytes: 0,
            response_bytes: 0,
            truncated: false,
            prompt_fingerprint: None,
            request_id: None,
            attempt: 0,
            final_attempt: x.final_attempt,
            rescue: x.rescue.clone(),
            mode: x.mode.clone(),
        })
        .collect();
    store.insert_exchanges(&rows, &[]).await.unwrap();
    for e in &input.events {
        store.insert_event(e.ts_ms, &e.kind, &e.subject, &e.cause, Some(&e.detail.to_string())).await.unwrap();
    }
    for r in &input.readiness {
        store
            .insert_readiness(&genset::store::evaluate::ReadinessRow {
                ts_ms: r.ts_ms,
                use_case: r.use_case.clone(),
                verdict: r.verdict.clone(),
                score: r.score,
                score_lower: r.lower,
                score_upper: r.upper,
                n: r.n,
                reasons: "[]".into(),
                detail: "{}".into(),
            })
            .await
            .unwrap();
    }
    for dr in &input.drills {
        let full = genset::drill::DrillResult {
            verdict: dr.verdict.clone(),
            findings: dr.findings.clone(),
            rto_ms: dr.rto_ms,
            success_rate: dr.success_rate,
            ..Default::default()
        };
        store
            .insert_drill(&genset::store::drill::DrillRow {
                id: dr.id.clone(),
                name: dr.name.clone(),
                kind: dr.kind.clone(),
                state: "finished".into(),
                verdict: Some(dr.verdict.clone()),
                use_cases: serde_json::to_string(&dr.use_cases).unwrap(),
                started_ms: dr.started_ms,
                deadline_ms: dr.ended_ms.unwrap(),
                ended_ms: dr.ended_ms,
                actor: "test".into(),
                spec: "{}".into(),
                result: Some(serde_json::to_string(&full).unwrap()),
            })
            .await
            .unwrap();
    }

    let get = |format: &'static str| {
        let d = &d;
        async move {
            let r = d
                .http
                .get(format!("{}/api/v1/reports?period=2026-11&format={format}", d.admin))
                .bearer_auth(&d.token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{format}");
            r.bytes().await.unwrap().to_vec()
        }
    };
    let json: Value = serde_json::from_slice(&get("json").await).unwrap();
    let close = |v: &Value, want: f64| assert!((v.as_f64().unwrap() - want).abs() < 0.005, "{v} != {want}");
    close(&json["overall"]["effective_percent"], 97.78);
    close(&json["overall"]["cloud_percent"], 95.87);
    close(&json["overall"]["budget_left_percent"], 11.11);
    close(&json["use_cases"][1]["availability"]["cloud_percent"], 96.06);
    assert_eq!(json["incidents"].as_array().unwrap().len(), 2);
    assert_eq!(json["incidents"][0]["ttd_ms"], 5000);
    assert_eq!(json["summary"]["mttr_ms"], 620_000.0);
    close(&json["cost"]["cloud_spend"], 2.172);
    close(&json["cost"]["saved"], 0.186);

    let html = String::from_utf8(get("html").await).unwrap();
    let csv = String::from_utf8(get("csv").await).unwrap();
    let pdf = get("pdf").await;
    let pdf_text = genset_report::pdf_text(&pdf).unwrap();
    for want in fixture::EXPECTED_TEXT {
        assert!(html.contains(want), "HTML lacks {want:?}");
        assert!(pdf_text.contains(want), "PDF lacks {want:?}\n{pdf_text}");
    }
    for line in [
        "availability,all,effective_percent,97.78",
        "availability,all,cloud_percent,95.87",
        "incident,openai#1,ttr_ms,1200000",
        "cost,USD,saved,0.19",
    ] {
        assert!(csv.lines().any(|l| l == line), "CSV lacks {line}");
    }

    // gensetctl report writes the PDF.
    let out = d.dir.path().join("report.pdf");
    let msg = genset::ctl::run(cli(
        &d,
        Command::Report(genset::ctl::ReportArgs { period: "2026-11".into(), format: "pdf".into(), output: Some(out.clone()) }),
    ))
    .await
    .unwrap();
    assert!(msg.contains("wrote"));
    let text = genset_report::pdf_text(&std::fs::read(&out).unwrap()).unwrap();
    assert!(text.contains("97.78%"));
    // Bad periods and formats are the caller's.
    let r = d.http.get(format!("{}/api/v1/reports?period=2026-13", d.admin)).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = d.http.get(format!("{}/api/v1/reports?period=2026-11&format=doc", d.admin)).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    d.shutdown().await;
}
