//! The pages: askama templates rendered on the server; each handler runs after the guard.

mod admin;
mod auth;
mod dash;
mod ops;
mod traffic;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, guard, web};
use askama::Template;
use rust_embed::RustEmbed;

use crate::Console;
use crate::authz::{self, Role};
use crate::session::Authed;

pub fn configure(cfg: &mut web::ServiceConfig, console: Arc<Console>) {
    // gensetctl's way to a setup link (admin bearer token), beside the core's JSON API.
    cfg.app_data(web::Data::from(console.clone())).route("/api/v1/console/bootstrap", web::post().to(auth::api_bootstrap));
    cfg.service(
        web::scope("")
            .guard(guard::fn_guard(|ctx| authz::is_console_path(ctx.head().uri.path())))
            .app_data(web::Data::from(console))
            .wrap(actix_web::middleware::from_fn(crate::guard::console_guard))
            .route("/login", web::get().to(auth::login_form))
            .route("/login", web::post().to(auth::login))
            .route("/setup", web::get().to(auth::setup_form))
            .route("/setup", web::post().to(auth::setup))
            .route("/logout", web::post().to(auth::logout))
            .route("/account", web::get().to(auth::account))
            .route("/account/password", web::post().to(auth::change_password))
            .route("/account/sessions/{handle}/revoke", web::post().to(auth::revoke_own_session))
            .route("/static/{file}", web::get().to(static_file))
            .route("/", web::get().to(dash::overview))
            .route("/use-cases", web::get().to(dash::use_cases))
            .route("/use-cases/{name}", web::get().to(dash::use_case))
            .route("/traffic", web::get().to(traffic::list))
            .route("/traffic/{id}", web::get().to(traffic::detail))
            .route("/models", web::get().to(dash::models))
            .route("/failover", web::get().to(dash::failover))
            .route("/failover/flip", web::get().to(dash::flip_form))
            .route("/failover/flip", web::post().to(dash::flip))
            .route("/drills", web::get().to(ops::list))
            .route("/drills", web::post().to(ops::start))
            .route("/drills/{id}", web::get().to(ops::detail))
            .route("/drills/{id}/abort", web::post().to(ops::abort))
            .route("/reports", web::get().to(ops::reports))
            .route("/reports/view", web::get().to(ops::view))
            .route("/reports/download", web::get().to(ops::download))
            .route("/keys", web::get().to(admin::keys))
            .route("/keys", web::post().to(admin::create_key))
            .route("/keys/{id}/revoke", web::post().to(admin::revoke_key))
            .route("/users", web::get().to(admin::users))
            .route("/users", web::post().to(admin::create_user))
            .route("/users/{id}/role", web::post().to(admin::set_role))
            .route("/users/{id}/disable", web::post().to(admin::disable))
            .route("/users/{id}/enable", web::post().to(admin::enable))
            .route("/users/{id}/password", web::post().to(admin::reset_password))
            .route("/users/{id}/sessions/revoke", web::post().to(admin::revoke_sessions))
            .route("/users/{id}/sessions/{handle}/revoke", web::post().to(admin::revoke_user_session))
            .route("/audit", web::get().to(admin::audit))
            .route("/audit.csv", web::get().to(admin::audit_csv))
            .default_service(web::to(|| async { error_page(404, "No such page.") })),
    );
}

/// The frame every page shares.
pub struct Layout {
    pub title: String,
    pub user: Option<NavUser>,
    pub active: &'static str,
    pub refresh: u32,
    pub version: &'static str,
}

pub struct NavUser {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub admin: bool,
}

impl Layout {
    pub fn new(title: impl Into<String>, active: &'static str, a: Option<&Authed>) -> Layout {
        Layout {
            title: title.into(),
            user: a.map(|a| NavUser { name: a.user.username.clone(), role: a.role, csrf: a.csrf.clone(), admin: a.role >= Role::Admin }),
            active,
            refresh: 0,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    pub fn refresh(mut self, seconds: u32) -> Layout {
        self.refresh = seconds;
        self
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    code: u16,
    message: String,
}

/// A plain error page (no user menu: it may answer a request that has no session).
pub fn error_page(code: u16, message: &str) -> HttpResponse {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let page = ErrorPage { l: Layout::new(status.canonical_reason().unwrap_or("Error"), "", None), code, message: message.to_string() };
    let body = page.render().unwrap_or_else(|_| message.to_string());
    HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body)
}

/// A handler's failure, rendered as an error page.
#[derive(Debug)]
pub struct PageError {
    pub code: u16,
    pub message: String,
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl actix_web::ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        error_page(self.code, &self.message)
    }
}

pub type PageResult = Result<HttpResponse, PageError>;

pub fn internal(e: impl std::fmt::Display) -> PageError {
    tracing::error!(error = %e, "console: internal error");
    PageError { code: 500, message: "The store failed; see the daemon log.".into() }
}

pub fn not_found(what: &str) -> PageError {
    PageError { code: 404, message: what.to_string() }
}

pub fn render<T: Template>(t: &T) -> PageResult {
    let body = t.render().map_err(internal)?;
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").body(body))
}

/// The signed-in user (the guard has checked the role before the handler runs).
pub fn user(req: &HttpRequest) -> Result<Authed, PageError> {
    crate::guard::authed(req).ok_or(PageError { code: 403, message: "Sign in first.".into() })
}

pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to.to_string())).finish()
}

/// Percent-encode a query value.
pub fn qv(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

async fn static_file(file: web::Path<String>) -> HttpResponse {
    let Some(f) = Assets::get(&file) else { return error_page(404, "No such file.") };
    let ct = match file.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    HttpResponse::Ok()
        .content_type(ct)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::ETAG, format!("\"{}\"", hex::encode(&f.metadata.sha256_hash()[..8]))))
        .body(f.data.into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values() {
        assert_eq!(super::qv("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
