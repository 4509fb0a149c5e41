//! The console on PostgreSQL: the same flows as on SQLite, in a fresh database per run
//! (created from `GENSET_TEST_PG_URL`, which `scripts/test.sh` provides, and dropped after).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ADMIN_PW, hidden, seed_exchanges, start_on, test_options};
use sqlx::Connection;

#[actix_web::test]
async fn console_on_postgres() {
    let Ok(base_url) = std::env::var("GENSET_TEST_PG_URL") else {
        panic!("GENSET_TEST_PG_URL is not set: run the README's test command (scripts/test.sh), which starts a throwaway PostgreSQL");
    };
    genset::install_crypto_provider();
    let name = format!("genset_console_{}_{}", std::process::id(), genset::record::now_ms());
    let mut admin_conn = sqlx::PgConnection::connect(&base_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin_conn).await.unwrap();
    let (prefix, _) = base_url.rsplit_once('/').unwrap();
    let url = format!("{prefix}/{name}");

    let d = start_on(true, test_options(), "", Some(&url)).await;
    assert_eq!(d.store().backend(), "postgres");
    seed_exchanges(d.store(), 120).await;

    // Bootstrap and the first admin.
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let link: serde_json::Value =
        http.post(format!("{}/api/v1/console/bootstrap", d.base)).bearer_auth(&d.token).send().await.unwrap().json().await.unwrap();
    let mut c = d.client();
    let page = c.get(link["setup_path"].as_str().unwrap()).await;
    let (csrf, token) = (page.csrf(), hidden(&page.body, "token").unwrap());
    let r =
        c.post("/setup", &[("csrf", &csrf), ("token", &token), ("username", "ada"), ("password", ADMIN_PW), ("confirm", ADMIN_PW)]).await;
    assert_eq!(r.status, 303, "{}", r.body);

    // Every page, a key, a user, a flip and back.
    d.wait_rollup().await;
    for p in [
        "/",
        "/use-cases",
        "/use-cases/support",
        "/traffic",
        "/traffic?use_case=invoices&status=200",
        "/models",
        "/failover",
        "/keys",
        "/users",
        "/audit",
        "/audit.csv",
        "/account",
    ] {
        let r = c.get(p).await;
        assert_eq!(r.status, 200, "{p}: {}", r.body);
    }
    assert!(c.get("/use-cases").await.body.contains("<td class=\"num\">80</td>"), "support's 24 h count from the rollup");
    let t = c.get("/traffic").await;
    let older = t.body.find("\" id=\"older\"").map(|j| {
        let head = &t.body[..j];
        head[head.rfind("href=\"").unwrap() + 6..].replace("&#38;", "&")
    });
    assert_eq!(c.get(&older.expect("a second page")).await.status, 200);
    let csrf = c.csrf().await;
    let r = c.post("/keys", &[("csrf", &csrf), ("name", "pg-app")]).await;
    assert!(r.body.contains("new-key-value"), "{}", r.body);
    let r = c
        .post(
            "/users",
            &[("csrf", &csrf), ("username", "bob"), ("role", "viewer"), ("new_password", "a long passphrase here"), ("password", ADMIN_PW)],
        )
        .await;
    assert!(r.body.contains("User bob created"), "{}", r.body);
    for (mode, reason) in [("force-local", "pg drill"), ("auto", "pg drill over")] {
        let r = c
            .post("/failover/flip", &[("csrf", &csrf), ("mode", mode), ("reason", reason), ("confirm", "yes"), ("password", ADMIN_PW)])
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
    }
    let audit = d.audit().await;
    for action in ["setup", "login", "key.create", "user.create", "mode.flip"] {
        assert!(audit.iter().any(|a| a.action == action), "{action} audited");
    }
    // Sessions and the limiter's known addresses work on PostgreSQL too.
    let mut bob = d.client();
    assert_eq!(bob.login("bob", "a long passphrase here").await.status, 303);
    assert_eq!(bob.get("/users").await.status, 403);

    // The latency histograms merge on PostgreSQL: a second fold into the same minutes.
    let before = c.get("/").await;
    assert!(before.body.contains("data-live=\"latency-summary\">Total time p50 "), "{}", before.body);
    assert!(!before.body.contains("Total time p50 —"), "latency from the rollup: {}", before.body);
    seed_exchanges(d.store(), 120).await;
    d.wait_rollup().await;
    let minutes = genset_admin_ui::db::minutes_since(d.store(), 0, None).await.unwrap();
    let counted: u64 = minutes.iter().map(|m| genset_admin_ui::latency::Hist::decode(&m.total_hist).count()).sum();
    assert_eq!(counted, 240, "every exchange once in the histograms");
    assert_eq!(minutes.iter().map(|m| m.requests).sum::<i64>(), 240);

    // Sessions: bob's is listed for the admin and ends when revoked.
    let users = c.get("/users").await;
    let row =
        users.body.split("<tr id=\"session-").skip(1).find(|r| r[..r.find("</tr>").unwrap()].contains(">bob<")).expect("bob's session");
    let handle = &row[..16];
    let bob_id = genset_admin_ui::db::user_by_name(d.store(), "bob").await.unwrap().unwrap().id;
    let r = c.post(&format!("/users/{bob_id}/sessions/{handle}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bob.get("/").await.status, 303);

    // Retention and the limiter's memory on PostgreSQL.
    let now = genset::record::now_ms();
    let day = 86_400_000;
    genset_admin_ui::db::insert_audit(d.store(), now - 400 * day, "x", "x", "x", "ok", "-", Some("ancient")).await.unwrap();
    genset_admin_ui::db::insert_attempt(d.store(), now - 100 * day, "x", "10.9.9.9", false).await.unwrap();
    genset_admin_ui::db::insert_attempt(d.store(), now - 1000, "ada", "10.9.9.8", false).await.unwrap();
    let swept = genset_admin_ui::upkeep::sweep(d.store(), &test_options(), now).await.unwrap();
    assert_eq!((swept.audit, swept.attempts), (1, 1), "{swept:?}");
    assert!(swept.sessions >= 1, "bob's revoked session: {swept:?}");
    let recent = genset_admin_ui::db::failed_attempts_since(d.store(), now - 60_000, 100).await.unwrap();
    assert!(recent.iter().any(|a| a.address == "10.9.9.8" && !a.ok));

    d.shutdown().await;
    drop(http);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin_conn).await.unwrap();
}
