//! Admin pages: virtual keys, users, the audit log.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use genset::admin::AdminState;
use serde::Deserialize;

use super::auth::{SessionView, reauth, revoke_by_handle, session_views, valid_username};
use super::{Layout, PageError, PageResult, internal, not_found, qv, render, see_other, user};
use crate::Console;
use crate::audit::{self, Entry};
use crate::authz::Role;
use crate::db::{self, AuditFilter};
use crate::password;
use crate::session::Authed;
use crate::text::{self, utc};

pub struct KeyView {
    id: String,
    name: String,
    last4: String,
    use_case: String,
    upstream: String,
    created: String,
    revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    l: Layout,
    csrf: String,
    keys: Vec<KeyView>,
    use_cases: Vec<String>,
    upstreams: Vec<String>,
    /// (name, plaintext key): shown once, on the answer to the creating POST only.
    created: Option<(String, String)>,
    error: Option<String>,
}

async fn keys_page(st: &AdminState, a: &Authed, created: Option<(String, String)>, error: Option<String>) -> PageResult {
    let rows = st.store.list_virtual_keys().await.map_err(internal)?;
    let cfg = st.config.load();
    let keys = rows
        .into_iter()
        .rev()
        .map(|k| KeyView {
            last4: format!("gk-…{}", k.last4.trim_start_matches('…')),
            use_case: k.use_case.unwrap_or_else(|| "by rules".into()),
            upstream: k.upstream.unwrap_or_else(|| "default".into()),
            created: utc(k.created_ms),
            revoked: k.revoked_ms.map(utc),
            id: k.id,
            name: k.name,
        })
        .collect();
    render(&KeysPage {
        l: Layout::new("Keys", "keys", Some(a)),
        csrf: a.csrf.clone(),
        keys,
        use_cases: cfg.use_cases.iter().map(|u| u.name.clone()).collect(),
        upstreams: cfg.upstreams.iter().filter(|u| u.api_key.is_some()).map(|u| u.name.clone()).collect(),
        created,
        error,
    })
}

pub async fn keys(req: HttpRequest, st: web::Data<AdminState>) -> PageResult {
    let a = user(&req)?;
    keys_page(&st, &a, None, None).await
}

#[derive(Deserialize)]
pub struct KeyForm {
    name: String,
    use_case: Option<String>,
    upstream: Option<String>,
}

fn opt(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub async fn create_key(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>, form: web::Form<KeyForm>) -> PageResult {
    let a = user(&req)?;
    let f = form.into_inner();
    let name = f.name.trim().to_string();
    let (use_case, upstream) = (opt(f.use_case), opt(f.upstream));
    let cfg = st.config.load();
    // The same checks as the core's POST /api/v1/keys.
    let error = if name.is_empty() || name.len() > 64 {
        Some("A name of up to 64 characters is required.".to_string())
    } else if use_case.as_ref().is_some_and(|uc| !cfg.use_cases.iter().any(|u| &u.name == uc)) {
        Some("No such use case in the configuration.".into())
    } else if let Some(up) = &upstream {
        match cfg.upstreams.iter().find(|u| &u.name == up) {
            None => Some("No such upstream.".into()),
            Some(u) if u.api_key.is_none() => Some("That upstream holds no credential (it passes client keys through).".into()),
            Some(_) => None,
        }
    } else if !cfg.upstreams.iter().any(|u| u.api_key.is_some()) {
        Some("No upstream holds a credential (api_key_env / api_key_file): a virtual key would have nothing to map to.".into())
    } else {
        None
    };
    if let Some(e) = error {
        return keys_page(&st, &a, None, Some(e)).await;
    }
    let now = console.now_ms();
    let (row, key) = st.keys.issue(&name, use_case, upstream, now);
    st.store.insert_virtual_key(&row).await.map_err(internal)?;
    st.keys.insert(&row);
    audit::record(
        &st.store,
        now,
        Entry {
            actor: &a.user.username,
            action: "key.create",
            target: &row.id,
            outcome: "ok",
            address: &a.address,
            detail: Some(&format!("name {name:?}, key {}", text::last4(&key))),
        },
    )
    .await;
    keys_page(&st, &a, Some((name, key)), None).await
}

pub async fn revoke_key(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>, id: web::Path<String>) -> PageResult {
    let a = user(&req)?;
    let now = console.now_ms();
    if st.store.revoke_virtual_key(&id, now).await.map_err(internal)? {
        st.keys.remove(&id);
        audit::record(
            &st.store,
            now,
            Entry { actor: &a.user.username, action: "key.revoke", target: &id, outcome: "ok", address: &a.address, detail: None },
        )
        .await;
        Ok(see_other("/keys"))
    } else {
        Err(not_found("No active virtual key with that id."))
    }
}

pub struct UserView {
    id: i64,
    name: String,
    role: String,
    disabled: bool,
    last_login: String,
    sessions: usize,
}

impl UserView {
    pub fn has_role(&self, r: &str) -> bool {
        self.role == r
    }
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    l: Layout,
    csrf: String,
    users: Vec<UserView>,
    roles: Vec<&'static str>,
    sessions: Vec<SessionView>,
    notice: Option<String>,
    error: Option<String>,
}

async fn users_page(st: &AdminState, console: &Console, a: &Authed, notice: Option<String>, error: Option<String>) -> PageResult {
    let users = db::list_users(&st.store).await.map_err(internal)?;
    let names: std::collections::HashMap<i64, String> = users.iter().map(|u| (u.id, u.username.clone())).collect();
    let live = session_views(st, console, None, &a.session_hash, &|id| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))).await?;
    let users = users
        .into_iter()
        .map(|u| UserView {
            sessions: live.iter().filter(|s| s.user_id == u.id).count(),
            id: u.id,
            name: u.username,
            role: u.role,
            disabled: u.disabled,
            last_login: u.last_login_ms.map(utc).unwrap_or_else(|| "never".into()),
        })
        .collect();
    let page = UsersPage {
        l: Layout::new("Users", "users", Some(a)),
        csrf: a.csrf.clone(),
        users,
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        sessions: live,
        notice,
        error,
    };
    let mut resp = render(&page)?;
    if error_status(&page.error) {
        *resp.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    Ok(resp)
}

fn error_status(e: &Option<String>) -> bool {
    e.is_some()
}

pub async fn users(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>) -> PageResult {
    let a = user(&req)?;
    users_page(&st, &console, &a, None, None).await
}

#[derive(Deserialize)]
pub struct NewUserForm {
    username: String,
    role: String,
    new_password: String,
    password: String,
}

async fn audit_admin(st: &AdminState, console: &Console, a: &Authed, action: &str, target: &str, outcome: &str, detail: Option<&str>) {
    audit::record(&st.store, console.now_ms(), Entry { actor: &a.user.username, action, target, outcome, address: &a.address, detail })
        .await;
}

pub async fn create_user(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    form: web::Form<NewUserForm>,
) -> PageResult {
    let a = user(&req)?;
    let f = form.into_inner();
    if !reauth(&st, &console, &a, f.password, "user.create").await? {
        return users_page(&st, &console, &a, None, Some("Your password is not right.".into())).await;
    }
    let username = f.username.trim().to_string();
    let Some(role) = Role::parse(&f.role) else {
        return users_page(&st, &console, &a, None, Some("Unknown role.".into())).await;
    };
    if !valid_username(&username) {
        return users_page(&st, &console, &a, None, Some("The user name may hold letters, digits, '.', '_' and '-' (up to 64).".into()))
            .await;
    }
    if let Some(e) = password::policy_error(&f.new_password, &username) {
        return users_page(&st, &console, &a, None, Some(e)).await;
    }
    let hash = password::hash(f.new_password, console.options.argon2).await.map_err(internal)?;
    match db::create_user(&st.store, &username, &hash, role.as_str(), console.now_ms()).await.map_err(internal)? {
        Some(_) => {
            audit_admin(&st, &console, &a, "user.create", &username, "ok", Some(&format!("role {role}"))).await;
            users_page(&st, &console, &a, Some(format!("User {username} created with role {role}.")), None).await
        }
        None => users_page(&st, &console, &a, None, Some(format!("A user named {username} exists already."))).await,
    }
}

fn user_id(id: &str) -> Result<i64, PageError> {
    id.parse().map_err(|_| not_found("No such user."))
}

/// Whether changing `target` away from an enabled admin would leave no enabled admin.
async fn last_admin(st: &AdminState, target: &db::UserRow) -> Result<bool, PageError> {
    Ok(target.role == "admin" && !target.disabled && db::other_enabled_admins(&st.store, target.id).await.map_err(internal)? == 0)
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
    password: String,
}

pub async fn set_role(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    form: web::Form<RoleForm>,
) -> PageResult {
    let a = user(&req)?;
    let f = form.into_inner();
    let id = user_id(&id)?;
    let target = db::user_by_id(&st.store, id).await.map_err(internal)?.ok_or_else(|| not_found("No such user."))?;
    if !reauth(&st, &console, &a, f.password, "user.role").await? {
        return users_page(&st, &console, &a, None, Some("Your password is not right.".into())).await;
    }
    let Some(role) = Role::parse(&f.role) else {
        return users_page(&st, &console, &a, None, Some("Unknown role.".into())).await;
    };
    if role != Role::Admin && last_admin(&st, &target).await? {
        return users_page(&st, &console, &a, None, Some("That is the last enabled admin: make another admin first.".into())).await;
    }
    db::set_role(&st.store, id, role.as_str(), console.now_ms()).await.map_err(internal)?;
    audit_admin(&st, &console, &a, "user.role", &target.username, "ok", Some(&format!("{} → {role}", target.role))).await;
    users_page(&st, &console, &a, Some(format!("{} is now {role}.", target.username)), None).await
}

#[derive(Deserialize)]
pub struct PasswordOnly {
    password: String,
}

async fn set_disabled(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    password: String,
    disabled: bool,
) -> PageResult {
    let a = user(&req)?;
    let id = user_id(&id)?;
    let target = db::user_by_id(&st.store, id).await.map_err(internal)?.ok_or_else(|| not_found("No such user."))?;
    let action = if disabled { "user.disable" } else { "user.enable" };
    if !reauth(&st, &console, &a, password, action).await? {
        return users_page(&st, &console, &a, None, Some("Your password is not right.".into())).await;
    }
    if disabled && last_admin(&st, &target).await? {
        return users_page(&st, &console, &a, None, Some("That is the last enabled admin: make another admin first.".into())).await;
    }
    let now = console.now_ms();
    db::set_disabled(&st.store, id, disabled, now).await.map_err(internal)?;
    let ended = if disabled { db::revoke_user_sessions(&st.store, id, None, now).await.map_err(internal)? } else { 0 };
    audit_admin(&st, &console, &a, action, &target.username, "ok", disabled.then(|| format!("{ended} sessions ended")).as_deref()).await;
    if disabled && id == a.user.id {
        return Ok(see_other("/login"));
    }
    users_page(&st, &console, &a, Some(format!("{} is now {}.", target.username, if disabled { "disabled" } else { "enabled" })), None)
        .await
}

pub async fn disable(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    form: web::Form<PasswordOnly>,
) -> PageResult {
    set_disabled(req, st, console, id, form.into_inner().password, true).await
}

pub async fn enable(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    form: web::Form<PasswordOnly>,
) -> PageResult {
    set_disabled(req, st, console, id, form.into_inner().password, false).await
}

#[derive(Deserialize)]
pub struct ResetForm {
    new_password: String,
    password: String,
}

pub async fn reset_password(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    form: web::Form<ResetForm>,
) -> PageResult {
    let a = user(&req)?;
    let f = form.into_inner();
    let id = user_id(&id)?;
    let target = db::user_by_id(&st.store, id).await.map_err(internal)?.ok_or_else(|| not_found("No such user."))?;
    if !reauth(&st, &console, &a, f.password, "user.password").await? {
        return users_page(&st, &console, &a, None, Some("Your password is not right.".into())).await;
    }
    if let Some(e) = password::policy_error(&f.new_password, &target.username) {
        return users_page(&st, &console, &a, None, Some(e)).await;
    }
    let now = console.now_ms();
    let hash = password::hash(f.new_password, console.options.argon2).await.map_err(internal)?;
    db::set_password(&st.store, id, &hash, now).await.map_err(internal)?;
    let keep = (id == a.user.id).then_some(a.session_hash.as_str());
    let ended = db::revoke_user_sessions(&st.store, id, keep, now).await.map_err(internal)?;
    audit_admin(&st, &console, &a, "user.password", &target.username, "ok", Some(&format!("{ended} sessions ended"))).await;
    users_page(&st, &console, &a, Some(format!("Password of {} reset; {ended} sessions signed out.", target.username)), None).await
}

pub async fn revoke_sessions(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    id: web::Path<String>,
) -> PageResult {
    let a = user(&req)?;
    let id = user_id(&id)?;
    let target = db::user_by_id(&st.store, id).await.map_err(internal)?.ok_or_else(|| not_found("No such user."))?;
    let ended = db::revoke_user_sessions(&st.store, id, None, console.now_ms()).await.map_err(internal)?;
    audit_admin(&st, &console, &a, "user.sessions.revoke", &target.username, "ok", Some(&format!("{ended} sessions ended"))).await;
    if id == a.user.id {
        return Ok(see_other("/login"));
    }
    users_page(&st, &console, &a, Some(format!("{ended} sessions of {} ended.", target.username)), None).await
}

/// `POST /users/{id}/sessions/{handle}/revoke`: an admin ends one session of a user.
pub async fn revoke_user_session(
    req: HttpRequest,
    st: web::Data<AdminState>,
    console: web::Data<Console>,
    path: web::Path<(String, String)>,
) -> PageResult {
    let a = user(&req)?;
    let (id, handle) = path.into_inner();
    let id = user_id(&id)?;
    let target = db::user_by_id(&st.store, id).await.map_err(internal)?.ok_or_else(|| not_found("No such user."))?;
    let Some(row) = revoke_by_handle(&st, &console, id, &handle).await? else {
        return Err(not_found("No such session: it has ended already."));
    };
    let detail = format!("session {handle} from {}", row.address);
    audit_admin(&st, &console, &a, "session.revoke", &target.username, "ok", Some(&detail)).await;
    if row.id_hash == a.session_hash {
        return Ok(see_other("/login"));
    }
    users_page(&st, &console, &a, Some(format!("The session of {} from {} was signed out.", target.username, row.address)), None).await
}

#[derive(Deserialize, Default)]
pub struct AuditParams {
    action: Option<String>,
    actor: Option<String>,
    before: Option<String>,
}

pub struct AuditView {
    id: i64,
    ts: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    address: String,
    detail: String,
}

pub struct AuditFilters {
    action: String,
    actor: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    f: AuditFilters,
    rows: Vec<AuditView>,
    paged: bool,
    next_link: Option<String>,
    first_link: String,
    csv_link: String,
}

fn audit_filter(p: &AuditParams, limit: i64) -> AuditFilter {
    let t = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    AuditFilter { action: t(&p.action), actor: t(&p.actor), before: t(&p.before).and_then(|b| b.parse().ok()), limit }
}

pub async fn audit(req: HttpRequest, st: web::Data<AdminState>) -> PageResult {
    let a = user(&req)?;
    let p = web::Query::<AuditParams>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let f = audit_filter(&p, 100);
    let found = db::list_audit(&st.store, &f).await.map_err(internal)?;
    let mut base = String::new();
    for (k, v) in [("action", &f.action), ("actor", &f.actor)] {
        if let Some(v) = v {
            base.push_str(&format!("{k}={}&", qv(v)));
        }
    }
    let next_link = (found.len() as i64 == f.limit).then(|| found.last().map(|r| format!("/audit?{base}before={}", r.id))).flatten();
    let page = AuditPage {
        l: Layout::new("Audit log", "audit", Some(&a)),
        f: AuditFilters { action: f.action.clone().unwrap_or_default(), actor: f.actor.clone().unwrap_or_default() },
        rows: found
            .into_iter()
            .map(|r| AuditView {
                id: r.id,
                ts: utc(r.ts_ms),
                actor: r.actor,
                action: r.action,
                target: r.target,
                outcome: r.outcome,
                address: r.address,
                detail: r.detail.unwrap_or_default(),
            })
            .collect(),
        paged: f.before.is_some(),
        next_link,
        first_link: format!("/audit?{}", base.trim_end_matches('&')),
        csv_link: format!("/audit.csv?{}", base.trim_end_matches('&')),
    };
    render(&page)
}

/// One CSV field: quoted, and a leading `= + - @` (a spreadsheet formula) defused.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The most rows one export holds (newest first).
const CSV_MAX: i64 = 100_000;

pub async fn audit_csv(req: HttpRequest, st: web::Data<AdminState>, console: web::Data<Console>) -> PageResult {
    let a = user(&req)?;
    let p = web::Query::<AuditParams>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let mut f = audit_filter(&p, 5000);
    let mut out = String::from("id,time_utc,actor,action,target,outcome,address,detail\n");
    let mut n = 0i64;
    loop {
        let rows = db::list_audit(&st.store, &f).await.map_err(internal)?;
        for r in &rows {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                r.id,
                text::iso(r.ts_ms),
                csv_field(&r.actor),
                csv_field(&r.action),
                csv_field(&r.target),
                csv_field(&r.outcome),
                csv_field(&r.address),
                csv_field(r.detail.as_deref().unwrap_or(""))
            ));
        }
        n += rows.len() as i64;
        match rows.last() {
            Some(last) if rows.len() as i64 == f.limit && n < CSV_MAX => f.before = Some(last.id),
            _ => break,
        }
    }
    audit_admin(&st, &console, &a, "audit.export", "audit.csv", "ok", Some(&format!("{n} rows"))).await;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, "attachment; filename=\"genset-audit.csv\""))
        .body(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_field("plain"), "\"plain\"");
    }
}
