//! Signing in and out, the first admin's setup, and one's own password.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use genset::admin::AdminState;
use serde::Deserialize;
use serde_json::json;

use super::{Layout, PageError, PageResult, internal, render, see_other, user};
use crate::Console;
use crate::audit::{self, Entry};
use crate::session::{self, Authed};
use crate::{authz, bootstrap, db, password};

const KNOWN_ADDRESS_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    csrf: String,
    next: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    l: Layout,
    csrf: String,
    token: String,
    already: bool,
    valid: bool,
    error: Option<String>,
    min: usize,
    max: usize,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    l: Layout,
    csrf: String,
    username: String,
    role: String,
    password_changed: String,
    sessions: Vec<SessionView>,
    notice: Option<String>,
    error: Option<String>,
}

/// One live session as the account and users pages show it.
pub struct SessionView {
    pub handle: String,
    pub user_id: i64,
    pub user: String,
    pub created: String,
    pub last_seen: String,
    pub address: String,
    pub user_agent: String,
    pub current: bool,
}

/// The most sessions a page lists.
const SESSIONS_SHOWN: i64 = 200;

/// Live sessions (of `user_id`, or of everyone) as views; `names`: user id → name.
pub async fn session_views(
    st: &AdminState,
    console: &Console,
    user_id: Option<i64>,
    current: &str,
    names: &dyn Fn(i64) -> String,
) -> Result<Vec<SessionView>, PageError> {
    let now = console.now_ms();
    let o = &console.options;
    let rows = db::live_sessions(
        &st.store,
        user_id,
        now - o.idle_timeout.as_millis() as i64,
        now - o.absolute_timeout.as_millis() as i64,
        SESSIONS_SHOWN,
    )
    .await
    .map_err(internal)?;
    Ok(rows
        .into_iter()
        .map(|r| SessionView {
            handle: session::handle(&r.id_hash),
            user_id: r.user_id,
            user: names(r.user_id),
            created: crate::text::utc(r.created_ms),
            last_seen: crate::text::utc(r.last_seen_ms),
            address: r.address,
            user_agent: if r.user_agent.is_empty() { "—".into() } else { r.user_agent },
            current: r.id_hash == current,
        })
        .collect())
}

/// Revoke the live session of `user_id` whose handle is `handle`; `Ok(None)`: no such
/// session (ended already, or another user's). Returns the revoked row.
pub async fn revoke_by_handle(st: &AdminState, console: &Console, user_id: i64, handle: &str) -> Result<Option<db::SessionRow>, PageError> {
    let now = console.now_ms();
    let o = &console.options;
    let rows = db::live_sessions(
        &st.store,
        Some(user_id),
        now - o.idle_timeout.as_millis() as i64,
        now - o.absolute_timeout.as_millis() as i64,
        10_000,
    )
    .await
    .map_err(internal)?;
    let Some(row) = rows.into_iter().find(|r| session::handle(&r.id_hash) == handle) else { return Ok(None) };
    if !db::revoke_session(&st.store, &row.id_hash, now).await.map_err(internal)? {
        return Ok(None);
    }
    Ok(Some(row))
}

/// The pre-session token of the login and setup forms (double-submitted as their CSRF
/// token), reused while its cookie lives.
fn pre_token(req: &HttpRequest) -> String {
    let tls = session::is_tls(req);
    req.cookie(session::pre_name(tls)).map(|c| c.value().to_string()).filter(|t| session::well_formed(t)).unwrap_or_else(session::new_token)
}

fn with_pre(req: &HttpRequest, mut resp: HttpResponse, token: &str) -> HttpResponse {
    let tls = session::is_tls(req);
    let _ = resp.add_cookie(&session::make_cookie(session::pre_name(tls), token.to_string(), tls, Some(3600)));
    resp
}

/// Only paths of this console, never another site.
fn safe_next(next: &str) -> String {
    let path = next.split(['?', '#']).next().unwrap_or("");
    if path.starts_with('/')
        && authz::lookup("GET", path).is_some_and(|r| r.access != authz::Access::Public)
        && !next.contains(['\\', '\r', '\n'])
    {
        path.to_string()
    } else {
        "/".to_string()
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Shown signed in or not (signing in again switches user and rotates the session).
pub async fn login_form(req: HttpRequest, q: web::Query<NextQuery>) -> PageResult {
    let token = pre_token(&req);
    let page =
        LoginPage { l: Layout::new("Sign in", "login", None), csrf: token.clone(), next: q.next.clone().unwrap_or_default(), error: None };
    Ok(with_pre(&req, render(&page)?, &token))
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

fn login_again(req: &HttpRequest, status: u16, error: &str, next: &str) -> PageResult {
    let token = pre_token(req);
    let page =
        LoginPage { l: Layout::new("Sign in", "login", None), csrf: token.clone(), next: next.to_string(), error: Some(error.to_string()) };
    let mut resp = render(&page)?;
    *resp.status_mut() = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::UNAUTHORIZED);
    Ok(with_pre(req, resp, &token))
}

pub async fn login(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>, form: web::Form<LoginForm>) -> PageResult {
    let f = form.into_inner();
    let username = f.username.trim().to_string();
    let next = f.next.unwrap_or_default();
    let address = session::address(&req);
    let now = console.now_ms();
    if username.is_empty() || username.len() > 64 {
        return login_again(&req, 401, "Wrong user name or password.", &next);
    }
    console.ready_limits(&st.store).await.map_err(internal)?;
    let known = db::known_address(&st.store, &username, &address, now - KNOWN_ADDRESS_WINDOW_MS).await.map_err(internal)?;
    if let Err(limit) = console.limits.check(&username, &address, known) {
        audit::record(
            &st.store,
            now,
            Entry {
                actor: &username,
                action: "login.limited",
                target: &username,
                outcome: "denied",
                address: &address,
                detail: Some(limit.as_str()),
            },
        )
        .await;
        return login_again(&req, 429, "Too many sign-in attempts. Wait a minute and try again.", &next);
    }
    let u = db::user_by_name(&st.store, &username).await.map_err(internal)?;
    let ok = password::verify(f.password, u.as_ref().map(|u| u.password_hash.clone()), console.options.argon2).await;
    let u = match u {
        Some(u) if ok && !u.disabled => u,
        other => {
            let why = match other {
                None => "unknown user",
                Some(u) if u.disabled && ok => "account disabled",
                Some(_) => "wrong password",
            };
            db::insert_attempt(&st.store, now, &username, &address, false).await.map_err(internal)?;
            audit::record(
                &st.store,
                now,
                Entry {
                    actor: &username,
                    action: "login.failed",
                    target: &username,
                    outcome: "failed",
                    address: &address,
                    detail: Some(why),
                },
            )
            .await;
            return login_again(&req, 401, "Wrong user name or password.", &next);
        }
    };
    db::insert_attempt(&st.store, now, &username, &address, true).await.map_err(internal)?;
    let resp = start_session(&req, &st, &console, &u, now, &address).await?;
    audit::record(
        &st.store,
        now,
        Entry { actor: &u.username, action: "login", target: &u.username, outcome: "ok", address: &address, detail: None },
    )
    .await;
    Ok(resp_redirect(resp, &safe_next(&next)))
}

fn resp_redirect(mut resp: HttpResponse, to: &str) -> HttpResponse {
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(to) {
        resp.headers_mut().insert(actix_web::http::header::LOCATION, v);
    }
    resp
}

/// A fresh session for `u`: a new token (the old session, if any, ends: rotation at login).
async fn start_session(
    req: &HttpRequest,
    st: &AdminState,
    console: &Console,
    u: &db::UserRow,
    now: i64,
    address: &str,
) -> Result<HttpResponse, PageError> {
    let tls = session::is_tls(req);
    if let Some(old) = req.cookie(session::cookie_name(tls)).filter(|c| session::well_formed(c.value())) {
        db::revoke_session(&st.store, &session::token_hash(old.value()), now).await.map_err(internal)?;
    }
    let token = session::new_token();
    let ua: String = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").chars().take(200).collect();
    db::insert_session(
        &st.store,
        &db::SessionRow {
            id_hash: session::token_hash(&token),
            user_id: u.id,
            created_ms: now,
            last_seen_ms: now,
            address: address.to_string(),
            user_agent: ua,
            revoked_ms: None,
        },
    )
    .await
    .map_err(internal)?;
    db::touch_login(&st.store, u.id, now).await.map_err(internal)?;
    let mut resp = see_other("/");
    let max_age = console.options.absolute_timeout.as_secs() as i64;
    let _ = resp.add_cookie(&session::make_cookie(session::cookie_name(tls), token, tls, Some(max_age)));
    let _ = resp.add_cookie(&session::removal(session::pre_name(tls), tls));
    Ok(resp)
}

pub async fn logout(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>) -> PageResult {
    let a = user(&req)?;
    let now = console.now_ms();
    db::revoke_session(&st.store, &a.session_hash, now).await.map_err(internal)?;
    audit::record(
        &st.store,
        now,
        Entry { actor: &a.user.username, action: "logout", target: &a.user.username, outcome: "ok", address: &a.address, detail: None },
    )
    .await;
    let tls = session::is_tls(&req);
    let mut resp = see_other("/login");
    let _ = resp.add_cookie(&session::removal(session::cookie_name(tls), tls));
    Ok(resp)
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

pub fn valid_username(u: &str) -> bool {
    (1..=64).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

async fn setup_page(req: &HttpRequest, st: &AdminState, console: &Console, token: &str, error: Option<String>) -> PageResult {
    let already = db::any_admin(&st.store).await.map_err(internal)?;
    let valid = session::well_formed(token)
        && db::bootstrap_valid(&st.store, &session::token_hash(token), console.now_ms()).await.map_err(internal)?;
    let pre = pre_token(req);
    let page = SetupPage {
        l: Layout::new("Set up", "setup", None),
        csrf: pre.clone(),
        token: if valid { token.to_string() } else { String::new() },
        already,
        valid,
        error,
        min: password::MIN_LEN,
        max: password::MAX_LEN,
    };
    Ok(with_pre(req, render(&page)?, &pre))
}

pub async fn setup_form(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>, q: web::Query<SetupQuery>) -> PageResult {
    setup_page(&req, &st, &console, q.token.as_deref().unwrap_or(""), None).await
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: String,
    username: String,
    password: String,
    confirm: String,
}

pub async fn setup(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>, form: web::Form<SetupForm>) -> PageResult {
    let f = form.into_inner();
    let address = session::address(&req);
    let now = console.now_ms();
    if console.limits.check("\0setup", &address, false).is_err() {
        return Err(PageError { code: 429, message: "Too many attempts. Wait a minute and try again.".into() });
    }
    let valid =
        session::well_formed(&f.token) && db::bootstrap_valid(&st.store, &session::token_hash(&f.token), now).await.map_err(internal)?;
    if !valid {
        audit::record(
            &st.store,
            now,
            Entry {
                actor: "-",
                action: "setup",
                target: "-",
                outcome: "denied",
                address: &address,
                detail: Some("invalid or expired setup token"),
            },
        )
        .await;
        return setup_page(&req, &st, &console, "", None).await;
    }
    let username = f.username.trim().to_string();
    let error = if !valid_username(&username) {
        Some("The user name may hold letters, digits, '.', '_' and '-' (up to 64).".to_string())
    } else if f.password != f.confirm {
        Some("The two passwords differ.".to_string())
    } else {
        password::policy_error(&f.password, &username)
    };
    if let Some(e) = error {
        return setup_page(&req, &st, &console, &f.token, Some(e)).await;
    }
    let hash = password::hash(f.password, console.options.argon2).await.map_err(internal)?;
    let Some(id) = db::create_first_admin(&st.store, &username, &hash, now).await.map_err(internal)? else {
        return setup_page(&req, &st, &console, &f.token, None).await;
    };
    db::clear_bootstrap(&st.store).await.map_err(internal)?;
    audit::record(
        &st.store,
        now,
        Entry {
            actor: &username,
            action: "setup",
            target: &username,
            outcome: "ok",
            address: &address,
            detail: Some("first admin created"),
        },
    )
    .await;
    let u = db::user_by_id(&st.store, id).await.map_err(internal)?.ok_or_else(|| internal("the new admin vanished"))?;
    db::insert_attempt(&st.store, now, &username, &address, true).await.map_err(internal)?;
    let resp = start_session(&req, &st, &console, &u, now, &address).await?;
    audit::record(
        &st.store,
        now,
        Entry { actor: &username, action: "login", target: &username, outcome: "ok", address: &address, detail: Some("after setup") },
    )
    .await;
    Ok(resp)
}

pub async fn account(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>) -> PageResult {
    let a = user(&req)?;
    account_page(&st, &console, &a, None, None).await
}

async fn account_page(st: &AdminState, console: &Console, a: &Authed, notice: Option<String>, error: Option<String>) -> PageResult {
    let name = a.user.username.clone();
    let sessions = session_views(st, console, Some(a.user.id), &a.session_hash, &|_| name.clone()).await?;
    render(&AccountPage {
        l: Layout::new("Account", "account", Some(a)),
        csrf: a.csrf.clone(),
        username: a.user.username.clone(),
        role: a.role.to_string(),
        password_changed: crate::text::utc(a.user.password_changed_ms),
        sessions,
        notice,
        error,
    })
}

/// `POST /account/sessions/{handle}/revoke`: end one of one's own sessions (this one too:
/// then it is a sign-out).
pub async fn revoke_own_session(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    handle: web::Path<String>,
) -> PageResult {
    let a = user(&req)?;
    let Some(row) = revoke_by_handle(&st, &console, a.user.id, &handle).await? else {
        return Err(PageError { code: 404, message: "No such session: it has ended already.".into() });
    };
    let detail = format!("session {} from {}", handle.as_str(), row.address);
    audit::record(
        &st.store,
        console.now_ms(),
        Entry {
            actor: &a.user.username,
            action: "session.revoke",
            target: &a.user.username,
            outcome: "ok",
            address: &a.address,
            detail: Some(&detail),
        },
    )
    .await;
    if row.id_hash == a.session_hash {
        let tls = session::is_tls(&req);
        let mut resp = see_other("/login");
        let _ = resp.add_cookie(&session::removal(session::cookie_name(tls), tls));
        return Ok(resp);
    }
    account_page(&st, &console, &a, Some(format!("The session from {} was signed out.", row.address)), None).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    password: String,
    confirm: String,
}

pub async fn change_password(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    form: web::Form<PasswordForm>,
) -> PageResult {
    let a = user(&req)?;
    let f = form.into_inner();
    let now = console.now_ms();
    if !reauth(&st, &console, &a, f.current, "account.password").await? {
        return account_page(&st, &console, &a, None, Some("Your current password is not right.".into())).await;
    }
    if f.password != f.confirm {
        return account_page(&st, &console, &a, None, Some("The two new passwords differ.".into())).await;
    }
    if let Some(e) = password::policy_error(&f.password, &a.user.username) {
        return account_page(&st, &console, &a, None, Some(e)).await;
    }
    let hash = password::hash(f.password, console.options.argon2).await.map_err(internal)?;
    db::set_password(&st.store, a.user.id, &hash, now).await.map_err(internal)?;
    let ended = db::revoke_user_sessions(&st.store, a.user.id, Some(&a.session_hash), now).await.map_err(internal)?;
    audit::record(
        &st.store,
        now,
        Entry {
            actor: &a.user.username,
            action: "account.password",
            target: &a.user.username,
            outcome: "ok",
            address: &a.address,
            detail: Some(&format!("{ended} other sessions ended")),
        },
    )
    .await;
    account_page(&st, &console, &a, Some(format!("Password changed; {ended} other sessions were signed out.")), None).await
}

/// Re-authentication before a dangerous action: the signed-in user's own password, under
/// the same limits as a login. A wrong password is audited.
pub async fn reauth(st: &AdminState, console: &Console, a: &Authed, password: String, action: &str) -> Result<bool, PageError> {
    let now = console.now_ms();
    console.ready_limits(&st.store).await.map_err(internal)?;
    if console.limits.check(&a.user.username, &a.address, false).is_err() {
        audit::record(
            &st.store,
            now,
            Entry {
                actor: &a.user.username,
                action: "reauth.limited",
                target: action,
                outcome: "denied",
                address: &a.address,
                detail: None,
            },
        )
        .await;
        return Err(PageError { code: 429, message: "Too many password attempts. Wait a minute and try again.".into() });
    }
    let current = db::user_by_id(&st.store, a.user.id).await.map_err(internal)?.map(|u| u.password_hash);
    let ok = password::verify(password, current, console.options.argon2).await;
    if !ok {
        // Remembered like a failed sign-in, so the limits hold it across a restart.
        db::insert_attempt(&st.store, now, &a.user.username, &a.address, false).await.map_err(internal)?;
        audit::record(
            &st.store,
            now,
            Entry {
                actor: &a.user.username,
                action: "reauth.failed",
                target: action,
                outcome: "failed",
                address: &a.address,
                detail: None,
            },
        )
        .await;
    }
    Ok(ok)
}

/// `POST /api/v1/console/bootstrap` (admin bearer token): a fresh setup link while no
/// admin exists; what `gensetctl admin bootstrap` calls.
pub async fn api_bootstrap(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>) -> HttpResponse {
    let given = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let address = session::address(&req);
    let now = console.now_ms();
    if given.is_empty() || !genset::auth::constant_time_eq(given.trim().as_bytes(), st.token.as_bytes()) {
        return HttpResponse::Unauthorized()
            .json(json!({"error": {"message": "missing or wrong admin token", "type": "authentication_error"}}));
    }
    match bootstrap::issue(&st.store, &console).await {
        Ok(Some(token)) => {
            audit::record(
                &st.store,
                now,
                Entry { actor: "admin-token", action: "bootstrap.issue", target: "-", outcome: "ok", address: &address, detail: None },
            )
            .await;
            HttpResponse::Created().json(json!({
                "setup_path": bootstrap::setup_path(&token),
                "expires_in_s": console.options.bootstrap_ttl.as_secs(),
            }))
        }
        Ok(None) => HttpResponse::Conflict()
            .json(json!({"error": {"message": "an admin exists already; sign in, or ask an admin", "type": "conflict"}})),
        Err(e) => {
            tracing::error!(error = %e, "console: bootstrap failed");
            HttpResponse::InternalServerError()
                .json(json!({"error": {"message": "the store failed; see the daemon log", "type": "internal_error"}}))
        }
    }
}
