//! HTTP-level tests of the console against the real daemon in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ADMIN_PW, Client, Resp, hidden, start};
use genset_admin_ui::authz::{Access, Method, RULES, Role};
use genset_admin_ui::guard::{CSP, HSTS};

fn check_headers(r: &Resp, tls: bool, what: &str) {
    assert_eq!(r.header("content-security-policy"), Some(CSP), "{what}: CSP");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(r.header("cross-origin-opener-policy"), Some("same-origin"), "{what}");
    assert!(CSP.contains("frame-ancestors 'none'") && !CSP.contains("unsafe-inline") && !CSP.contains("http"), "{what}");
    if tls {
        assert_eq!(r.header("strict-transport-security"), Some(HSTS), "{what}: HSTS over TLS");
    } else {
        assert_eq!(r.header("strict-transport-security"), None, "{what}: no HSTS over plain HTTP");
    }
}

#[actix_web::test]
async fn security_headers_on_every_kind_of_answer() {
    for tls in [true, false] {
        let d = start(tls).await;
        let mut anon = d.client();
        let mut admin = d.signed_in("admin").await;
        let mut viewer = d.signed_in("viewer").await;
        let cases = [
            ("login page", anon.get("/login").await),
            ("redirect to login", anon.get("/").await),
            ("unknown path", anon.get("/nope").await),
            ("encoded path", anon.get("/%75sers").await),
            ("static css", anon.get("/static/console.css").await),
            ("static js", anon.get("/static/refresh.js").await),
            ("overview", admin.get("/").await),
            ("traffic", admin.get("/traffic").await),
            ("csv", admin.get("/audit.csv").await),
            ("forbidden", viewer.get("/users").await),
            ("csrf refusal", admin.post("/keys", &[("name", "x")]).await),
            ("static icon", anon.get("/static/favicon.svg").await),
        ];
        for (what, r) in &cases {
            check_headers(r, tls, what);
        }
        assert_eq!(cases[1].1.status, 303);
        assert_eq!(cases[2].1.status, 404);
        assert_eq!(cases[3].1.status, 404);
        assert_eq!(cases[4].1.header("content-type"), Some("text/css; charset=utf-8"));
        assert_eq!(cases[6].1.header("cache-control"), Some("no-store"));
        // Every page names its icon, so browsers do not ask for a /favicon.ico that is not there.
        assert!(cases[0].1.body.contains("<link rel=\"icon\" href=\"/static/favicon.svg\""));
        assert_eq!((cases[11].1.status, cases[11].1.header("content-type")), (200, Some("image/svg+xml")));
        // The HTML never carries inline script or style.
        for (what, r) in &cases {
            if r.header("content-type").is_some_and(|c| c.starts_with("text/html")) {
                assert!(
                    !r.body.contains("<script>") && !r.body.contains("style=") && !r.body.contains("<style"),
                    "{what}: inline script/style"
                );
            }
        }
        // The core's JSON API is not the console's: no console headers there, still bearer-only.
        let api = anon.get("/api/v1/status").await;
        assert_eq!(api.status, 401);
        d.shutdown().await;
    }
}

#[actix_web::test]
async fn session_cookie_attributes() {
    let d = start(true).await;
    let mut c = d.client();
    let r = c.login("nobody", "x").await;
    assert_eq!(r.status, 401);
    d.add_user("ada", "admin", ADMIN_PW).await;
    let r = c.login("ada", ADMIN_PW).await;
    assert_eq!(r.status, 303);
    let set = c.raw_set_cookies.iter().find(|s| s.starts_with("__Host-genset_session=")).expect("session cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    let token = c.session_cookie().unwrap();
    assert!(token.len() >= 43, "256-bit token: {token}");
    // Only the hash is stored.
    let genset::store::Store::Sqlite(pool) = d.store() else { panic!() };
    let stored: Vec<(String,)> = sqlx::query_as("SELECT id_hash FROM console_sessions").fetch_all(pool).await.unwrap();
    assert!(stored.iter().all(|(h,)| h != &token && h.len() == 64));
    d.shutdown().await;
}

/// A path for a pattern: `*` filled with something that exists where it matters.
fn concrete(pattern: &str) -> String {
    match pattern {
        "/use-cases/*" => "/use-cases/support".into(),
        "/reports" => "/reports?period=2026-11".into(),
        "/reports/view" => "/reports/view?period=2026-11".into(),
        "/reports/download" => "/reports/download?period=2026-11&format=csv".into(),
        "/static/*" => "/static/console.css".into(),
        p => p.replace('*', "999999"),
    }
}

/// Harmless forms for each POST route (wrong passwords, unknown ids): they may fail, but
/// must get past (or be stopped by) the authorization check.
fn form_for(pattern: &str) -> Vec<(&'static str, &'static str)> {
    match pattern {
        "/login" => vec![("username", "nobody"), ("password", "wrong-password-123")],
        "/setup" => vec![("token", "x"), ("username", "x"), ("password", "x"), ("confirm", "x")],
        "/failover/flip" => vec![("mode", "auto"), ("reason", ""), ("password", "x")],
        "/keys" => vec![("name", "")],
        "/drills" => vec![("kind", "live"), ("use_cases", "support"), ("duration", "1m")],
        "/users" => vec![("username", "x"), ("role", "viewer"), ("new_password", "x"), ("password", "wrong")],
        "/account/password" => vec![("current", "wrong"), ("password", "x"), ("confirm", "x")],
        p if p.starts_with("/users/") => vec![("role", "viewer"), ("password", "wrong"), ("new_password", "x")],
        _ => vec![],
    }
}

#[actix_web::test]
async fn every_role_on_every_route() {
    let d = start(false).await;
    let mut clients: Vec<(Option<Role>, Client)> = vec![(None, d.client())];
    for role in Role::ALL {
        clients.push((Some(role), d.signed_in(role.as_str()).await));
    }
    let mut checked = 0;
    for rule in RULES.iter().filter(|r| r.pattern != "/logout") {
        let path = concrete(rule.pattern);
        for (role, c) in clients.iter_mut() {
            let role: Option<Role> = *role;
            let r = match rule.method {
                Method::Get => c.get(&path).await,
                Method::Post => {
                    let csrf = match rule.access {
                        Access::Role(_) if role.is_some() => c.csrf().await,
                        _ => c.get("/login").await.csrf(),
                    };
                    let mut form = form_for(rule.pattern);
                    form.push(("csrf", &csrf));
                    c.post(&path, &form).await
                }
            };
            let what = format!("{:?} {path} as {role:?}: {} {}", rule.method, r.status, r.location());
            let allowed = match (rule.access, role) {
                (Access::Public, _) => true,
                (Access::Role(_), None) => false,
                (Access::Role(need), Some(have)) => have >= need,
            };
            if allowed {
                assert!(r.status != 403 && !r.location().starts_with("/login"), "should be allowed: {what}\n{}", r.body);
                assert!(!r.body.contains("No such page."), "route in the table but not registered: {what}");
            } else if role.is_none() && rule.method == Method::Get {
                assert_eq!((r.status, r.location().starts_with("/login")), (303, true), "anonymous GET goes to login: {what}");
            } else {
                assert_eq!(r.status, 403, "should be refused: {what}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 4 * (RULES.len() - 1));
    // Denied accesses of signed-in users are audited with who and from where.
    let denied: Vec<_> = d.audit().await.into_iter().filter(|a| a.action == "access.denied").collect();
    assert!(denied.iter().any(|a| a.actor == "viewer-user" && a.target == "GET /users" && a.address == "127.0.0.1"), "{denied:?}");
    // POST /logout for every role.
    for (role, c) in clients.iter_mut().skip(1) {
        let csrf = c.csrf().await;
        let r = c.post("/logout", &[("csrf", &csrf)]).await;
        assert_eq!((r.status, r.location()), (303, "/login"), "{role:?}");
        assert_eq!(c.get("/").await.status, 303, "{role:?}: signed out");
    }
    d.shutdown().await;
}

#[actix_web::test]
async fn paths_outside_the_table_are_not_served() {
    let d = start(false).await;
    let mut admin = d.signed_in("admin").await;
    for p in ["/%75sers", "/users/", "/traffic/1/", "//users", "/static/../Cargo.toml", "/keys/x/revoke"] {
        let r = admin.get(p).await;
        assert!(r.status == 404 || r.status == 400, "{p}: {}", r.status);
    }
    let r = admin.http.put(format!("{}/users", admin.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    d.shutdown().await;
}

#[actix_web::test]
async fn csrf_is_required_on_every_post() {
    let d = start(true).await;
    let mut admin = d.signed_in("admin").await;
    let keys_before = d.store().list_virtual_keys().await.unwrap().len();
    // No token, a wrong token, another session's token, a cross-site origin.
    let mut other = d.signed_in("operator").await;
    let other_csrf = other.csrf().await;
    let good = admin.csrf().await;
    let host = admin.base.trim_start_matches("https://").to_string();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        ("none", vec![("name", "k1")], vec![]),
        ("wrong", vec![("name", "k1"), ("csrf", "AAAA")], vec![]),
        ("other session's", vec![("name", "k1"), ("csrf", &other_csrf)], vec![]),
        ("cross-site origin", vec![("name", "k1"), ("csrf", &good)], vec![("origin", "https://evil.example".into())]),
        ("cross-site fetch", vec![("name", "k1"), ("csrf", &good)], vec![("sec-fetch-site", "cross-site".into())]),
    ];
    for (what, form, headers) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = admin.post_with("/keys", &form, &h).await;
        assert_eq!(r.status, 403, "{what}");
    }
    assert_eq!(d.store().list_virtual_keys().await.unwrap().len(), keys_before, "no key created");
    // The right token from this origin works.
    let r = admin.post_with("/keys", &[("name", "k1"), ("csrf", &good)], &[("origin", &format!("https://{host}"))]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(d.store().list_virtual_keys().await.unwrap().len(), keys_before + 1);
    // Login needs the pre-session token too.
    let mut anon = d.client();
    let r = anon.post("/login", &[("username", "admin-user"), ("password", ADMIN_PW)]).await;
    assert_eq!(r.status, 403);
    let refusals = d.audit().await.into_iter().filter(|a| a.detail.as_deref() == Some("missing or wrong CSRF token")).count();
    assert!(refusals >= 4, "{refusals}");
    d.shutdown().await;
}

/// Everything a GET could change, as text (the audit log and session last-seen times are
/// logs, not state, and are left out).
async fn state(d: &common::Daemon) -> String {
    let genset::store::Store::Sqlite(pool) = d.store() else { panic!() };
    let mut out = String::new();
    for q in [
        "SELECT id || username || password_hash || role || disabled || updated_ms FROM console_users ORDER BY id",
        "SELECT id_hash || user_id || IFNULL(revoked_ms, '-') FROM console_sessions ORDER BY id_hash",
        "SELECT id || IFNULL(revoked_ms, '-') FROM virtual_keys ORDER BY id",
        "SELECT id || kind FROM events ORDER BY id",
        "SELECT key || value FROM meta WHERE key <> 'console.rollup_id' ORDER BY key",
        "SELECT token_hash FROM console_bootstrap ORDER BY token_hash",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(q).fetch_all(pool).await.unwrap();
        out.push_str(&format!("{rows:?}\n"));
    }
    out
}

#[actix_web::test]
async fn get_never_changes_state() {
    let d = start(false).await;
    let mut admin = d.signed_in("admin").await;
    d.wait_rollup().await;
    let before = state(&d).await;
    for rule in RULES.iter().filter(|r| r.method == Method::Get) {
        let mut path = concrete(rule.pattern);
        // GETs that look like actions must not act.
        if path == "/failover/flip" {
            path.push_str("?mode=force-local");
        }
        if path == "/setup" {
            path.push_str("?token=abc");
        }
        let _ = admin.get(&path).await;
        let _ = admin.get(&format!("{path}?csrf=x&name=k&mode=force-local&reason=r&password={ADMIN_PW}")).await;
    }
    for p in ["/logout", "/keys/1/revoke", "/users/1/disable"] {
        let r = admin.get(p).await;
        assert_eq!(r.status, 404, "{p}");
    }
    assert_eq!(state(&d).await, before);
    assert_eq!(admin.get("/").await.status, 200, "still signed in");
    d.shutdown().await;
}

#[actix_web::test]
async fn wrong_passwords_from_one_address_do_not_lock_out_another() {
    let d = start(false).await;
    d.add_user("ada", "admin", ADMIN_PW).await;
    let mut attacker = d.client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(attacker.login("ada", &format!("guess number {i} wrong")).await.status);
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429], "the sixth try from the attacker's address is throttled");
    // Even the right password is throttled from there for now…
    assert_eq!(attacker.login("ada", ADMIN_PW).await.status, 429);
    // …but the admin, from another address, signs in.
    let mut admin = d.client();
    let r = admin.login("ada", ADMIN_PW).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(admin.get("/").await.status, 200);
    let audit = d.audit().await;
    let failed = audit.iter().filter(|a| a.action == "login.failed" && a.address == "127.0.0.2").count();
    assert_eq!(failed, 5);
    assert!(audit.iter().any(|a| a.action == "login.limited" && a.address == "127.0.0.2"));
    assert!(audit.iter().any(|a| a.action == "login" && a.actor == "ada" && a.address == "127.0.0.1"));
    d.shutdown().await;
}

#[actix_web::test]
async fn sessions_rotate_expire_and_end() {
    let d = start(false).await;
    d.add_user("ada", "admin", ADMIN_PW).await;
    let mut c = d.client();
    assert_eq!(c.login("ada", ADMIN_PW).await.status, 303);
    let first = c.session_cookie().unwrap();
    // Signing in again rotates: a new token, and the old one is dead.
    assert_eq!(c.login("ada", ADMIN_PW).await.status, 303);
    let second = c.session_cookie().unwrap();
    assert_ne!(first, second);
    let mut stale = d.client();
    stale.cookies.insert("genset_session".into(), first.clone());
    assert_eq!(stale.get("/").await.status, 303, "the pre-rotation token no longer works");
    assert_eq!(c.get("/").await.status, 200);

    // Idle timeout.
    let idle = d.console.options.idle_timeout;
    d.console.clock.advance(idle - Duration::from_secs(60));
    assert_eq!(c.get("/").await.status, 200, "used just before the idle timeout");
    d.console.clock.advance(idle + Duration::from_secs(1));
    assert_eq!(c.get("/").await.status, 303, "idle too long");

    // Absolute timeout, however busy the session.
    assert_eq!(c.login("ada", ADMIN_PW).await.status, 303);
    let step = Duration::from_secs(20 * 60);
    let mut elapsed = Duration::ZERO;
    while elapsed + step < d.console.options.absolute_timeout {
        d.console.clock.advance(step);
        elapsed += step;
        assert_eq!(c.get("/").await.status, 200, "after {elapsed:?}");
    }
    d.console.clock.advance(step);
    assert_eq!(c.get("/").await.status, 303, "past the absolute timeout");

    // Revocation: disabling a user ends their sessions at once.
    assert_eq!(c.login("ada", ADMIN_PW).await.status, 303);
    let mut boss = d.signed_in("admin").await;
    let mut v = d.signed_in("viewer").await;
    assert_eq!(v.get("/").await.status, 200);
    let users = genset_admin_ui::db::list_users(d.store()).await.unwrap();
    let vid = users.iter().find(|u| u.username == "viewer-user").unwrap().id;
    let csrf = boss.csrf().await;
    let r = boss.post(&format!("/users/{vid}/disable"), &[("csrf", &csrf), ("password", "not my password")]).await;
    assert!(r.body.contains("Your password is not right."), "re-authentication required");
    assert_eq!(v.get("/").await.status, 200, "not disabled without the password");
    let r = boss.post(&format!("/users/{vid}/disable"), &[("csrf", &csrf), ("password", ADMIN_PW)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(v.get("/").await.status, 303, "a disabled user's session ends");
    assert_eq!(v.login("viewer-user", ADMIN_PW).await.status, 401);
    d.shutdown().await;
}

#[actix_web::test]
async fn bootstrap_sets_up_the_first_admin_once() {
    let d = start(true).await;
    let mut c = d.client();
    // No default account exists.
    for (u, p) in [("admin", "admin"), ("admin", "password"), ("root", "genset")] {
        assert_eq!(c.login(u, p).await.status, 401);
    }
    let bad = c.get("/setup?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert!(bad.body.contains("not valid"));
    // gensetctl's way: the admin bearer token gets a setup link.
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let unauth = http.post(format!("{}/api/v1/console/bootstrap", d.base)).send().await.unwrap();
    assert_eq!(unauth.status().as_u16(), 401);
    let link: serde_json::Value =
        http.post(format!("{}/api/v1/console/bootstrap", d.base)).bearer_auth(&d.token).send().await.unwrap().json().await.unwrap();
    let path = link["setup_path"].as_str().unwrap().to_string();
    let page = c.get(&path).await;
    assert_eq!(page.status, 200);
    let csrf = page.csrf();
    let token = hidden(&page.body, "token").unwrap();
    // Password policy.
    let r = c
        .post("/setup", &[("csrf", &csrf), ("token", &token), ("username", "ada"), ("password", "too short"), ("confirm", "too short")])
        .await;
    assert!(r.body.contains("at least 12"), "{}", r.body);
    let r =
        c.post("/setup", &[("csrf", &csrf), ("token", &token), ("username", "ada"), ("password", ADMIN_PW), ("confirm", ADMIN_PW)]).await;
    assert_eq!((r.status, r.location()), (303, "/"), "{}", r.body);
    assert_eq!(c.get("/").await.status, 200, "signed in after setup");
    // The link is spent, and a second admin cannot be made through it.
    let again = d.client().get(&path).await;
    assert!(again.body.contains("An admin exists already"));
    let r = http.post(format!("{}/api/v1/console/bootstrap", d.base)).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let users = genset_admin_ui::db::list_users(d.store()).await.unwrap();
    assert_eq!(users.len(), 1);
    assert!(users[0].password_hash.starts_with("$argon2id$"));
    assert!(d.audit().await.iter().any(|a| a.action == "setup" && a.outcome == "ok" && a.actor == "ada"));
    d.shutdown().await;
}

#[actix_web::test]
async fn keys_show_the_plaintext_once() {
    let d = start(false).await;
    let mut admin = d.signed_in("admin").await;
    let csrf = admin.csrf().await;
    let r = admin.post("/keys", &[("csrf", &csrf), ("name", "billing-app"), ("use_case", "invoices"), ("upstream", "openai")]).await;
    assert_eq!(r.status, 200);
    let start = r.body.find("gk-").unwrap();
    let key: String = r.body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    assert!(key.len() > 20, "{key}");
    let list = admin.get("/keys").await;
    assert!(!list.body.contains(&key), "the key is never shown again");
    assert!(list.body.contains(&key[key.len() - 4..]), "its last four are");
    // The upstream's credential is never on any page; its last four are, on the overview.
    for p in ["/", "/keys", "/use-cases", "/failover", "/models", "/use-cases/support", "/audit"] {
        assert!(!admin.get(p).await.body.contains("sk-test-upstream-secret"), "{p}");
    }
    assert!(admin.get("/").await.body.contains("…9z9z"));
    let id = d.store().list_virtual_keys().await.unwrap()[0].id.clone();
    let r = admin.post(&format!("/keys/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert!(d.store().list_virtual_keys().await.unwrap()[0].revoked_ms.is_some());
    let audit = d.audit().await;
    assert!(audit.iter().any(|a| a.action == "key.create" && a.actor == "admin-user"));
    assert!(audit.iter().any(|a| a.action == "key.revoke"));
    assert!(!audit.iter().any(|a| a.detail.as_deref().is_some_and(|x| x.contains(&key))), "the audit log holds no key");
    d.shutdown().await;
}

#[actix_web::test]
async fn viewer_cannot_reach_the_flip() {
    let d = start(false).await;
    let mut viewer = d.signed_in("viewer").await;
    let page = viewer.get("/failover").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/failover/flip"), "no flip controls for a viewer");
    assert_eq!(viewer.get("/failover/flip?mode=force-local").await.status, 403);
    let csrf = viewer.csrf().await;
    let r = viewer
        .post("/failover/flip", &[("csrf", &csrf), ("mode", "force-local"), ("reason", "r"), ("confirm", "yes"), ("password", ADMIN_PW)])
        .await;
    assert_eq!(r.status, 403);
    assert!(d.audit().await.iter().any(|a| a.action == "access.denied" && a.target == "POST /failover/flip" && a.actor == "viewer-user"));
    d.shutdown().await;
}

#[actix_web::test]
async fn users_roles_and_the_last_admin() {
    let d = start(false).await;
    let mut admin = d.signed_in("admin").await;
    let csrf = admin.csrf().await;
    let r = admin
        .post(
            "/users",
            &[
                ("csrf", &csrf),
                ("username", "bob"),
                ("role", "operator"),
                ("new_password", "a long passphrase for b"),
                ("password", ADMIN_PW),
            ],
        )
        .await;
    assert!(r.body.contains("User bob created"), "{}", r.body);
    let mut bob = d.client();
    assert_eq!(bob.login("bob", "a long passphrase for b").await.status, 303);
    assert_eq!(bob.get("/failover/flip?mode=auto").await.status, 200);
    assert_eq!(bob.get("/users").await.status, 403);
    let users = genset_admin_ui::db::list_users(d.store()).await.unwrap();
    let bob_id = users.iter().find(|u| u.username == "bob").unwrap().id;
    let me = users.iter().find(|u| u.username == "admin-user").unwrap().id;
    let r = admin.post(&format!("/users/{bob_id}/role"), &[("csrf", &csrf), ("role", "viewer"), ("password", ADMIN_PW)]).await;
    assert!(r.body.contains("bob is now viewer"));
    assert_eq!(bob.get("/failover/flip?mode=auto").await.status, 403, "the role is checked on every request");
    let r = admin.post(&format!("/users/{me}/role"), &[("csrf", &csrf), ("role", "viewer"), ("password", ADMIN_PW)]).await;
    assert!(r.body.contains("last enabled admin"), "{}", r.body);
    let csv = admin.get("/audit.csv").await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(csv.body.starts_with("id,time_utc,actor,action,target,outcome,address,detail\n"));
    assert!(csv.body.contains("\"user.role\""));
    assert!(csv.body.contains("\"user.create\""));
    d.shutdown().await;
}

#[actix_web::test]
async fn operator_flips_with_reason_confirmation_and_password() {
    let d = start(false).await;
    let mut op = d.signed_in("operator").await;
    let ctl = d.running.as_ref().unwrap().controller.clone();
    let page = op.get("/failover/flip?mode=force-local").await;
    assert_eq!(page.status, 200);
    let csrf = page.csrf();
    let flip = |reason: &'static str, confirm: Option<&'static str>, pw: &'static str| {
        let mut f =
            vec![("csrf", csrf.clone()), ("mode", "force-local".to_string()), ("reason", reason.to_string()), ("password", pw.to_string())];
        if let Some(c) = confirm {
            f.push(("confirm", c.to_string()));
        }
        f
    };
    for (form, expect) in [
        (flip("", Some("yes"), ADMIN_PW), "A reason is required."),
        (flip("drill", None, ADMIN_PW), "Tick the confirmation."),
        (flip("drill", Some("yes"), "wrong password"), "Your password is not right."),
    ] {
        let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = op.post("/failover/flip", &f).await;
        assert!(r.body.contains(expect), "{expect}: {}", r.body);
        assert_eq!(ctl.snapshot().mode.mode.as_str(), "auto", "unchanged after: {expect}");
    }
    let form = flip("quarterly drill", Some("yes"), ADMIN_PW);
    let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = op.post("/failover/flip", &f).await;
    assert_eq!((r.status, r.location()), (303, "/failover"), "{}", r.body);
    let snap = ctl.snapshot();
    assert_eq!((snap.mode.mode.as_str(), snap.effective), ("force-local", "forced-local"));
    assert_eq!(snap.mode.actor, "console:operator-user");
    let page = op.get("/failover").await;
    assert!(page.body.contains("Forced local"), "{}", page.body);
    let r = op
        .post("/failover/flip", &[("csrf", &csrf), ("mode", "auto"), ("reason", "drill over"), ("confirm", "yes"), ("password", ADMIN_PW)])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(ctl.snapshot().mode.mode.as_str(), "auto");
    let flips: Vec<_> = d.audit().await.into_iter().filter(|a| a.action == "mode.flip" && a.outcome == "ok").collect();
    assert_eq!(flips.len(), 2);
    assert!(flips.iter().any(|a| a.detail.as_deref() == Some("auto → force-local: quarterly drill")));
    assert!(d.audit().await.iter().any(|a| a.action == "reauth.failed" && a.target == "mode.flip"));
    // The controller's own events reach the timeline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = op.get("/failover").await;
        if page.body.contains("quarterly drill") && page.body.contains("drill over") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "mode events on the timeline: {}", page.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.shutdown().await;
}

#[actix_web::test]
async fn dashboards_count_from_the_rollup_and_its_tail() {
    let d = start(false).await;
    common::seed_exchanges(d.store(), 300).await;
    let mut viewer = d.signed_in("viewer").await;
    // Before and after the fold, the figures are the same (no double counting).
    for round in 0..2 {
        let page = viewer.get("/use-cases").await;
        assert_eq!(page.status, 200);
        let row = |name: &str| {
            let i = page.body.find(&format!("<a href=\"/use-cases/{name}\">")).unwrap();
            let cells: Vec<String> =
                page.body[i..].split("<td class=\"num\">").skip(1).take(3).map(|c| c.split('<').next().unwrap().to_string()).collect();
            cells
        };
        assert_eq!(row("support"), vec!["200", "12", "40"], "round {round}");
        assert_eq!(row("invoices"), vec!["100", "6", "20"], "round {round}");
        let overview = viewer.get("/").await;
        assert!(overview.body.contains("<polyline class=\"line s0\""), "chart drawn");
        assert!(overview.body.contains("300 requests, 18 errors"), "round {round}");
        d.wait_rollup().await;
    }
    // A viewer sees the traffic list but not the recorded bodies.
    let t = viewer.get("/traffic?use_case=invoices").await;
    assert!(t.body.contains("local:gemma") && !t.body.contains("href=\"/traffic/"));
    assert_eq!(viewer.get("/traffic/1").await.status, 403);
    d.shutdown().await;
}

#[actix_web::test]
async fn traffic_pages_walk_every_row_once() {
    let d = start(false).await;
    common::seed_exchanges(d.store(), 300).await;
    let mut op = d.signed_in("operator").await;
    for (filter, want) in [("", 300usize), ("use_case=invoices&", 100), ("served_by=local%3Agemma&status=200&", 56)] {
        let mut seen: Vec<i64> = Vec::new();
        let mut next = Some(format!("/traffic?{filter}"));
        let mut pages = 0;
        while let Some(path) = next.take() {
            let r = op.get(&path).await;
            assert_eq!(r.status, 200, "{path}");
            seen.extend(r.body.match_indices("<a href=\"/traffic/").map(|(i, m)| {
                let rest = &r.body[i + m.len()..];
                rest[..rest.find('"').unwrap()].parse::<i64>().unwrap()
            }));
            next = r.body.find("\" id=\"older\"").map(|j| {
                let head = &r.body[..j];
                head[head.rfind("href=\"").unwrap() + 6..].replace("&amp;", "&").replace("&#38;", "&")
            });
            pages += 1;
            assert!(pages < 20, "{path} {seen:?}");
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(seen.len(), want, "{filter}: every row once");
        assert_eq!(sorted, seen, "{filter}: newest first, no repeats");
    }
    // One exchange in detail: times with the same precision, booleans in words.
    let r = op.get("/traffic/2").await;
    assert_eq!(r.status, 200);
    let total = &r.body[r.body.find("<dt>First byte / total</dt><dd>120.0 / ").expect(&r.body) + 39..];
    let total = &total[..total.find(" ms</dd>").unwrap()];
    assert!(total.len() == 5 && total.ends_with(".0") && total.starts_with('4'), "total {total:?}");
    assert!(r.body.contains("<dt>Streamed</dt><dd>no</dd>") || r.body.contains("<dt>Streamed</dt><dd>yes</dd>"), "{}", r.body);
    d.shutdown().await;
}

#[actix_web::test]
async fn drills_reports_and_readiness_by_role() {
    let d = start(false).await;
    let store = d.store();
    let now = genset::record::now_ms();
    store
        .insert_readiness(&genset::store::evaluate::ReadinessRow {
            ts_ms: now,
            use_case: "support".into(),
            verdict: "marginal".into(),
            score: 0.8123,
            score_lower: 0.7011,
            score_upper: 0.9,
            n: 42,
            reasons: r#"["score interval straddles the threshold"]"#.into(),
            detail: r#"{"readiness":{"trend":-0.05}}"#.into(),
        })
        .await
        .unwrap();
    let result = genset::drill::DrillResult {
        requests: 10,
        succeeded: 9,
        failed: 1,
        served_locally: 10,
        success_rate: Some(0.9),
        rto_ms: Some(1234.0),
        p50_ms: Some(200.0),
        p95_ms: Some(900.0),
        verdict: "passed-with-findings".into(),
        findings: vec!["one request failed".into()],
        ..Default::default()
    };
    store
        .insert_drill(&genset::store::drill::DrillRow {
            id: "drill-seeded0001".into(),
            name: "live-support".into(),
            kind: "live".into(),
            state: "finished".into(),
            verdict: Some("passed-with-findings".into()),
            use_cases: r#"["support"]"#.into(),
            started_ms: now - 60_000,
            deadline_ms: now,
            ended_ms: Some(now),
            actor: "console:operator-user".into(),
            spec: "{}".into(),
            result: Some(serde_json::to_string(&result).unwrap()),
        })
        .await
        .unwrap();

    let mut viewer = d.signed_in("viewer").await;
    let r = viewer.get("/use-cases").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("marginal") && r.body.contains("0.812 [0.701, 0.900]"), "{}", r.body);
    assert!(r.body.contains(">none<"), "a use case without readiness says none: {}", r.body);
    let r = viewer.get("/use-cases/support").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("0.812 [0.701, 0.900]") && r.body.contains("42") && r.body.contains("-0.050"), "{}", r.body);
    assert!(r.body.contains("score interval straddles the threshold"));
    let r = viewer.get("/drills").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("/drills/drill-seeded0001") && r.body.contains("passed-with-findings"), "{}", r.body);
    assert!(!r.body.contains("action=\"/drills\""), "no start form for a viewer");
    let r = viewer.get("/drills/drill-seeded0001").await;
    assert_eq!(r.status, 200);
    for want in ["one request failed", "1234 ms", "90.0%", "200 ms", "900 ms"] {
        assert!(r.body.contains(want), "{want}: {}", r.body);
    }
    assert_eq!(viewer.get("/drills/drill-nope").await.status, 404);
    let r = viewer.get("/reports?period=2026-11").await;
    assert_eq!(r.status, 200);
    for f in ["pdf", "csv", "json"] {
        assert!(r.body.contains(&format!("/reports/download?period=2026-11&amp;format={f}")), "{f}");
        let dl = viewer.get(&format!("/reports/download?period=2026-11&format={f}")).await;
        assert_eq!(dl.status, 200, "{f}");
        assert!(dl.header("content-disposition").unwrap().contains(&format!("genset-report-2026-11.{f}")), "{f}");
    }
    assert_eq!(viewer.get("/reports/download?period=2026-11&format=exe").await.status, 400);
    assert_eq!(viewer.get("/reports?period=nonsense").await.status, 400);
    let r = viewer.get("/reports/view?period=2026-11").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(r.header("content-security-policy"), Some(genset_admin_ui::guard::REPORT_CSP));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // Every other page keeps the strict policy.
    assert_eq!(viewer.get("/reports").await.header("content-security-policy"), Some(CSP));

    // A viewer's start and abort are refused by the server, and audited as denied.
    let csrf = viewer.csrf().await;
    let r = viewer.post("/drills", &[("csrf", &csrf), ("kind", "live"), ("use_cases", "support"), ("duration", "1m")]).await;
    assert_eq!(r.status, 403);
    let r = viewer.post("/drills/drill-seeded0001/abort", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 403);
    let audit = d.audit().await;
    assert!(audit.iter().any(|a| a.action == "access.denied" && a.target == "POST /drills" && a.actor == "viewer-user"));
    assert!(!audit.iter().any(|a| a.action == "drill.start"), "the viewer's start never reached the runner");

    // An operator's start reaches the drill runner; without a local model it fails clearly.
    let mut op = d.signed_in("operator").await;
    let page = op.get("/drills").await;
    assert!(page.body.contains("action=\"/drills\""), "start form for an operator");
    let csrf = op.csrf().await;
    let r = op.post("/drills", &[("csrf", &csrf), ("kind", "live"), ("use_cases", "support"), ("duration", "1m")]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("has no local model in its chain"), "{}", r.body);
    // Without the CSRF token it is refused before the runner.
    let r = op.post("/drills", &[("kind", "live"), ("use_cases", "support")]).await;
    assert_eq!(r.status, 403);
    // Aborting a finished drill: a clear conflict.
    let r = op.post("/drills/drill-seeded0001/abort", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("is not running"), "{}", r.body);
    let audit = d.audit().await;
    let start = audit.iter().find(|a| a.action == "drill.start").expect("start audited");
    assert_eq!((start.actor.as_str(), start.outcome.as_str(), start.target.as_str()), ("operator-user", "failed", "support"));
    assert!(start.detail.as_deref().unwrap_or("").contains("no local model"));
    assert!(audit.iter().any(|a| a.action == "drill.abort" && a.actor == "operator-user" && a.outcome == "failed"));
    assert!(store.list_drills(None, None, None, 10).await.unwrap().len() == 1, "no drill started");
    d.shutdown().await;
}

/// The number in a "p50 123 ms" style summary after `label`.
fn ms_after(body: &str, label: &str) -> f64 {
    let i = body.find(label).unwrap_or_else(|| panic!("{label} not in:\n{body}")) + label.len();
    let rest = body[i..].trim_start();
    let num: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    assert!(rest[num.len()..].starts_with(" ms"), "{label}: {}", &rest[..20.min(rest.len())]);
    num.parse().unwrap()
}

fn near(got: f64, want: f64, what: &str) {
    assert!((got / want - 1.0).abs() <= 0.1, "{what}: {got} is not within 10 % of {want}");
}

#[actix_web::test]
async fn latency_charts_from_the_rollup_and_its_tail() {
    let d = start(false).await;
    // Total times 480..779 ms (p50 630, p95 765), first byte 120 ms; one failed attempt of
    // 90 s before a failover, which is not what any client got.
    common::seed_exchanges(d.store(), 300).await;
    common::seed_failed_attempt(d.store(), "support", 90_000.0).await;
    let mut viewer = d.signed_in("viewer").await;
    for round in ["tail", "folded"] {
        let r = viewer.get("/").await;
        assert_eq!(r.status, 200);
        let summary = &r.body[r.body.find("id=\"latency-summary\"").unwrap()..];
        near(ms_after(summary, "Total time p50"), 630.0, round);
        near(ms_after(summary, "p95"), 765.0, round);
        near(ms_after(summary, "first byte p50"), 120.0, round);
        let chart = &r.body[r.body.find("id=\"latency-chart\"").unwrap()..];
        let chart = &chart[..chart.find("</svg>").unwrap()];
        for label in ["total p50", "total p95", "first byte p50", "first byte p95"] {
            assert!(chart.contains(&format!(">{label}</text>")), "{round}: legend {label}");
        }
        assert!(chart.contains("class=\"line s1\"") || chart.contains("class=\"dot s1\""), "{round}: p95 drawn");
        assert!(!chart.contains("NaN") && !chart.contains("style="), "{round}");
        // Per use case: invoices are every third exchange (480, 483, …, 777 ms).
        let r = viewer.get("/use-cases/invoices").await;
        assert_eq!(r.status, 200);
        near(ms_after(&r.body, "Total time p50"), 628.5, round);
        assert!(r.body.contains("id=\"latency-chart\""));
        d.wait_rollup().await;
    }
    // The failed attempt counts neither as a request nor towards latency.
    let r = viewer.get("/").await;
    assert!(r.body.contains("300 requests, 18 errors"), "{}", r.body);
    d.shutdown().await;
}

#[actix_web::test]
async fn readiness_trend_on_the_use_case_pages() {
    let d = start(false).await;
    let now = genset::record::now_ms();
    for (i, (verdict, score)) in [("not-ready", 0.41), ("marginal", 0.74), ("ready", 0.93)].iter().enumerate() {
        d.store()
            .insert_readiness(&genset::store::evaluate::ReadinessRow {
                ts_ms: now - (3 - i as i64) * 3_600_000,
                use_case: "support".into(),
                verdict: verdict.to_string(),
                score: *score,
                score_lower: score - 0.05,
                score_upper: score + 0.04,
                n: 50,
                reasons: "[]".into(),
                detail: "{}".into(),
            })
            .await
            .unwrap();
    }
    let mut viewer = d.signed_in("viewer").await;
    let r = viewer.get("/use-cases/support").await;
    assert_eq!(r.status, 200);
    let trend = &r.body[r.body.find("id=\"readiness-trend\"").expect("trend section")..];
    let trend = &trend[..trend.find("</svg>").unwrap()];
    assert_eq!(trend.matches("<polygon class=\"band\"").count(), 1, "{trend}");
    for (verdict, score) in [("not-ready", "0.410"), ("marginal", "0.740"), ("ready", "0.930")] {
        assert!(trend.contains(&format!("class=\"dot {verdict}\"")), "{verdict}: {trend}");
        assert!(trend.contains(&format!("<title>{verdict} {score}")), "{verdict}: {trend}");
    }
    // Oldest on the left: the dots' x grow in the order they were computed.
    let xs: Vec<f64> = trend
        .match_indices("<circle class=\"dot ")
        .map(|(i, _)| {
            let rest = &trend[i..];
            let j = rest.find("cx=\"").unwrap() + 4;
            rest[j..j + rest[j..].find('"').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(xs.len(), 3);
    assert!(xs[0] < xs[1] && xs[1] < xs[2], "{xs:?}");
    // The list: a small chart where there is a history, none where there is not.
    let r = viewer.get("/use-cases").await;
    assert_eq!(r.body.matches("<svg class=\"spark\"").count(), 1, "{}", r.body);
    let r = viewer.get("/use-cases/invoices").await;
    assert!(!r.body.contains("class=\"band\""));
    d.shutdown().await;
}

/// The handle of the session listed in the row that contains `needle`.
fn session_handle(body: &str, needle: &str) -> Option<String> {
    body.split("<tr id=\"session-")
        .skip(1)
        .find(|row| row[..row.find("</tr>").unwrap_or(row.len())].contains(needle))
        .map(|row| row[..16].to_string())
}

#[actix_web::test]
async fn sessions_are_listed_and_revoked_one_at_a_time() {
    let d = start(false).await;
    d.add_user("ada", "operator", ADMIN_PW).await;
    let mut laptop = d.client();
    laptop.set_header("user-agent", "Laptop-Browser/1.0");
    assert_eq!(laptop.login("ada", ADMIN_PW).await.status, 303);
    let mut phone = d.client_from("127.0.0.2");
    phone.set_header("user-agent", "Phone-Browser/2.0");
    assert_eq!(phone.login("ada", ADMIN_PW).await.status, 303);

    // Both sessions, with where from and the browser, on the account page.
    let page = laptop.get("/account").await;
    assert_eq!(page.status, 200);
    let phone_handle = session_handle(&page.body, "Phone-Browser/2.0").expect("the phone's session is listed");
    assert!(session_handle(&page.body, "127.0.0.2").as_deref() == Some(phone_handle.as_str()));
    let laptop_handle = session_handle(&page.body, "Laptop-Browser/1.0").expect("this session is listed");
    assert!(page.body.contains("Sign out (this session)"));

    // Another user cannot end ada's session through their own account.
    let mut other = d.signed_in("viewer").await;
    let csrf = other.csrf().await;
    let r = other.post(&format!("/account/sessions/{phone_handle}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 404);
    assert_eq!(phone.get("/").await.status, 200, "still signed in");
    // Nor without the CSRF token, nor on GET.
    let r = laptop.post(&format!("/account/sessions/{phone_handle}/revoke"), &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(laptop.get(&format!("/account/sessions/{phone_handle}/revoke")).await.status, 404);
    assert_eq!(phone.get("/").await.status, 200, "still signed in");

    // Ada ends the phone's session from the laptop: the phone's cookie goes to sign-in.
    let csrf = laptop.csrf().await;
    let r = laptop.post(&format!("/account/sessions/{phone_handle}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(session_handle(&r.body, "Phone-Browser/2.0").is_none(), "no longer listed");
    let r = phone.get("/").await;
    assert_eq!((r.status, r.location()), (303, "/login"));
    assert_eq!(laptop.get("/").await.status, 200, "the laptop's session lives on");
    let r = laptop.post(&format!("/account/sessions/{phone_handle}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 404, "ended already");
    let audit = d.audit().await;
    assert!(
        audit.iter().any(|a| a.action == "session.revoke"
            && a.actor == "ada"
            && a.address == "127.0.0.1"
            && a.detail.as_deref() == Some(&format!("session {phone_handle} from 127.0.0.2"))),
        "{audit:?}"
    );

    // An admin sees ada's session on the users page and ends it.
    let mut boss = d.signed_in("admin").await;
    let users = boss.get("/users").await;
    assert_eq!(users.status, 200);
    assert_eq!(session_handle(&users.body, "Laptop-Browser/1.0").as_deref(), Some(laptop_handle.as_str()));
    let ada = genset_admin_ui::db::user_by_name(d.store(), "ada").await.unwrap().unwrap();
    let viewer = genset_admin_ui::db::user_by_name(d.store(), "viewer-user").await.unwrap().unwrap();
    let csrf = boss.csrf().await;
    // The handle must belong to the user in the path.
    let r = boss.post(&format!("/users/{}/sessions/{laptop_handle}/revoke", viewer.id), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 404);
    assert_eq!(laptop.get("/").await.status, 200);
    let r = boss.post(&format!("/users/{}/sessions/{laptop_handle}/revoke", ada.id), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(laptop.get("/").await.status, 303, "revoked by an admin");
    assert!(d.audit().await.iter().any(|a| a.action == "session.revoke" && a.actor == "admin-user" && a.target == "ada"));
    // A non-admin cannot use the admin's route.
    let csrf = other.csrf().await;
    let users = boss.get("/users").await;
    let boss_handle = session_handle(&users.body, "(you, this session)").unwrap();
    let admin_user = genset_admin_ui::db::user_by_name(d.store(), "admin-user").await.unwrap().unwrap();
    let r = other.post(&format!("/users/{}/sessions/{boss_handle}/revoke", admin_user.id), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 403);

    // Ending one's own current session is a sign-out.
    let page = other.get("/account").await;
    let mine = session_handle(&page.body, "Sign out (this session)").unwrap();
    let r = other.post(&format!("/account/sessions/{mine}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.location()), (303, "/login"));
    assert!(other.session_cookie().is_none(), "the cookie is removed");
    d.shutdown().await;
}

#[actix_web::test]
async fn retention_deletes_old_rows_and_keeps_recent_ones() {
    let day = Duration::from_secs(86_400);
    let options = genset_admin_ui::Options {
        audit_retention: 10 * day,
        login_attempts_retention: 3 * day,
        sweep_interval: Duration::from_millis(200),
        ..common::test_options()
    };
    let d = common::start_with(false, options.clone(), "").await;
    let s = d.store();
    let now = genset::record::now_ms();
    let ms = |d: Duration| d.as_millis() as i64;
    use genset_admin_ui::db;
    let uid = d.add_user("ada", "viewer", ADMIN_PW).await;
    // Audit: 11 days old goes, 9 days old stays.
    db::insert_audit(s, now - ms(11 * day), "ada", "login", "ada", "ok", "10.0.0.1", Some("old")).await.unwrap();
    db::insert_audit(s, now - ms(9 * day), "ada", "login", "ada", "ok", "10.0.0.1", Some("recent")).await.unwrap();
    // Attempts: 4 days old go, 2 days old stay.
    db::insert_attempt(s, now - ms(4 * day), "ada", "10.0.0.1", false).await.unwrap();
    db::insert_attempt(s, now - ms(2 * day), "ada", "10.0.0.2", false).await.unwrap();
    // Sessions: revoked, idle too long, past the absolute timeout go; a live one stays.
    let session = |id: &str, created: i64, seen: i64, revoked: Option<i64>| db::SessionRow {
        id_hash: id.into(),
        user_id: uid,
        created_ms: created,
        last_seen_ms: seen,
        address: "10.0.0.1".into(),
        user_agent: String::new(),
        revoked_ms: revoked,
    };
    for r in [
        session("revoked", now - 60_000, now - 60_000, None),
        session("idle", now - ms(2 * options.idle_timeout), now - ms(2 * options.idle_timeout), None),
        session("old", now - ms(options.absolute_timeout) - 60_000, now - 1000, None),
        session("live", now - 60_000, now - 1000, None),
    ] {
        db::insert_session(s, &r).await.unwrap();
    }
    db::revoke_session(s, "revoked", now - 30_000).await.unwrap();
    db::insert_bootstrap(s, "expired", now - 100_000, now - 1).await.unwrap();

    // The background sweep (every 200 ms here) deletes exactly what is past retention. A
    // sweep may run between the inserts above, so wait until one has seen them all.
    let genset::store::Store::Sqlite(pool) = s else { panic!() };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let audit = d.audit().await;
        let attempts: Vec<(String,)> =
            sqlx::query_as("SELECT address FROM console_login_attempts ORDER BY id").fetch_all(pool).await.unwrap();
        let sessions: Vec<(String,)> =
            sqlx::query_as("SELECT id_hash FROM console_sessions ORDER BY id_hash").fetch_all(pool).await.unwrap();
        let tokens: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM console_bootstrap").fetch_all(pool).await.unwrap();
        let swept = !audit.iter().any(|a| a.detail.as_deref() == Some("old"))
            && attempts.iter().all(|(a,)| a != "10.0.0.1")
            && sessions.len() == 1
            && !tokens.iter().any(|(t,)| t == "expired");
        if swept {
            // ...and nothing recent went with them.
            assert!(audit.iter().any(|a| a.detail.as_deref() == Some("recent")), "the recent entry stays");
            assert_eq!(attempts, vec![("10.0.0.2".to_string(),)]);
            assert_eq!(sessions, vec![("live".to_string(),)]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the background sweep did not remove what is past retention: {attempts:?} {sessions:?} {tokens:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // In batches: more rows than one statement deletes. The rows are within retention for the
    // background sweep (5 days old), and past it for a sweep run as of 6 days from now
    // (cut-off 4 days ago), which also takes the 9-day-old "recent" entry.
    d.console.stop();
    let n = genset_admin_ui::upkeep::BATCH as usize + 7;
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        sqlx::query("INSERT INTO console_audit (ts_ms, actor, action, target, outcome, address) VALUES (?1, 'x', 'x', 'x', 'ok', '-')")
            .bind(now - ms(5 * day) - i as i64)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let swept = genset_admin_ui::upkeep::sweep(s, &options, now + ms(6 * day)).await.unwrap();
    assert_eq!(swept.audit, n as u64 + 1);
    assert!(!d.audit().await.iter().any(|a| a.detail.as_deref() == Some("recent")));
    d.shutdown().await;
}

#[actix_web::test]
async fn login_limits_hold_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("genset.db").display());
    let d = common::start_on(false, common::test_options(), "", Some(&url)).await;
    d.add_user("ada", "admin", ADMIN_PW).await;
    let mut attacker = d.client_from("127.0.0.2");
    for i in 0..5 {
        assert_eq!(attacker.login("ada", &format!("guess number {i} wrong")).await.status, 401);
    }
    d.shutdown().await;

    // A new daemon and console over the same store: the limiter starts empty in memory.
    let d = common::start_on(false, common::test_options(), "", Some(&url)).await;
    let mut attacker = d.client_from("127.0.0.2");
    assert_eq!(attacker.login("ada", "guess number 5 wrong").await.status, 429, "no fresh budget after the restart");
    assert_eq!(attacker.login("ada", ADMIN_PW).await.status, 429);
    // The real admin, from another address, is not locked out…
    let mut admin = d.client();
    assert_eq!(admin.login("ada", ADMIN_PW).await.status, 303);
    // …and a third address still has its own budget.
    let mut other = d.client_from("127.0.0.3");
    assert_eq!(other.login("ada", "a wrong password here").await.status, 401);
    // Once the failures are old enough, the address has its budget back (a restart then).
    d.shutdown().await;
    let d = common::start_on(false, common::test_options(), "", Some(&url)).await;
    d.console.clock.advance(Duration::from_secs(6 * 60));
    let mut attacker = d.client_from("127.0.0.2");
    assert_eq!(attacker.login("ada", "guess number 6 wrong").await.status, 401);
    d.shutdown().await;
}

#[actix_web::test]
async fn client_address_behind_a_trusted_proxy() {
    let d = common::start_full(false, common::test_options(), "trusted_proxies = [\"127.0.0.1/32\"]", "", None).await;
    d.add_user("ada", "admin", ADMIN_PW).await;

    // Through the proxy (127.0.0.1): the hop it added, not what the client wrote before it.
    let mut admin = d.client();
    admin.set_header("x-forwarded-for", "198.51.100.99, 203.0.113.5");
    assert_eq!(admin.login("ada", ADMIN_PW).await.status, 303);
    let audit = d.audit().await;
    assert!(audit.iter().any(|a| a.action == "login" && a.address == "203.0.113.5"), "{audit:?}");
    let page = admin.get("/account").await;
    assert!(session_handle(&page.body, "203.0.113.5").is_some(), "the session is from the client: {}", page.body);

    // An attacker behind the same proxy is limited by their own address…
    let mut attacker = d.client();
    attacker.set_header("x-forwarded-for", "203.0.113.66");
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(attacker.login("ada", &format!("guess number {i} wrong")).await.status);
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429]);
    // …and does not lock out the admin, who comes through the same proxy.
    let mut again = d.client();
    again.set_header("x-forwarded-for", "203.0.113.5");
    assert_eq!(again.login("ada", ADMIN_PW).await.status, 303);

    // A peer that is not a trusted proxy: its header is ignored, whatever it says.
    let mut spoofer = d.client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for i in 0..6 {
        spoofer.set_header("x-forwarded-for", &format!("192.0.2.{i}"));
        statuses.push(spoofer.login("ada", &format!("spoofed guess {i}")).await.status);
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429], "a made-up header does not buy a fresh budget");
    let audit = d.audit().await;
    let spoofed: Vec<_> =
        audit.iter().filter(|a| a.detail.as_deref() == Some("wrong password") && a.address.starts_with("192.0.2.")).collect();
    assert!(spoofed.is_empty(), "{spoofed:?}");
    assert_eq!(audit.iter().filter(|a| a.action == "login.failed" && a.address == "127.0.0.2").count(), 5);
    d.shutdown().await;
}

#[actix_web::test]
async fn a_use_case_page_shows_the_chain_the_planner_runs() {
    // `support` and `invoices` name no chain and no upstream: the API's default upstream, then
    // the model their on_cutoff (serve-local by default) needs. `pinned` names its upstream;
    // `strict` rejects on a cut-off, so it has no local step.
    let extra = "on_cutoff = \"serve-local\"\n\
        [[use_cases]]\nname = \"pinned\"\nupstream = \"openai\"\n\
        [[use_cases]]\nname = \"strict\"\non_cutoff = \"reject\"\n\
        [[models]]\nname = \"remote\"\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let d = common::start_with(false, common::test_options(), extra).await;
    let mut viewer = d.signed_in("viewer").await;
    for (name, want) in [
        ("invoices", "default upstream → local:remote"),
        ("pinned", "<dd>openai → local:remote</dd>"),
        ("support", "default upstream → local:remote"),
        ("strict", "default upstream</dd>"),
    ] {
        let r = viewer.get(&format!("/use-cases/{name}")).await;
        assert_eq!(r.status, 200);
        let chain = &r.body[r.body.find("<dt>Chain</dt>").unwrap()..];
        let chain = &chain[..chain.find("</dd>").unwrap() + 5];
        assert!(chain.contains(want), "{name}: {chain}");
    }
    d.shutdown().await;
}

#[actix_web::test]
async fn a_live_drill_of_an_unproven_use_case_needs_the_force_box() {
    let extra = "[[models]]\nname = \"remote\"\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let d = common::start_with(false, common::test_options(), extra).await;
    let mut op = d.signed_in("operator").await;
    let page = op.get("/drills").await;
    assert!(page.body.contains("name=\"force\""), "the form has the box: {}", page.body);
    let csrf = op.csrf().await;
    let form = [("csrf", csrf.as_str()), ("kind", "live"), ("use_cases", "support"), ("duration", "1m")];
    let r = op.post("/drills", &form).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("would not be served locally in a real cut-off"), "{}", r.body);
    assert!(r.body.contains("id=\"drill-force\""), "the form comes back to tick the box: {}", r.body);
    assert!(d.store().list_drills(None, None, None, 10).await.unwrap().is_empty());
    let mut forced = form.to_vec();
    forced.push(("force", "yes"));
    let r = op.post("/drills", &forced).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let drills = d.store().list_drills(None, None, None, 10).await.unwrap();
    assert_eq!(drills.len(), 1);
    let csrf = op.csrf().await;
    let r = op.post(&format!("/drills/{}/abort", drills[0].id), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    d.shutdown().await;
}
