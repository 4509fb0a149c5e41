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

    d.shutdown().await;
    drop(http);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin_conn).await.unwrap();
}
