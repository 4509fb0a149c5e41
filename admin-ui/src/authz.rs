//! The one authorization table: every console route, its method and who may use it. The
//! guard looks the **raw** request path up here before routing; a path that matches no row
//! is not served, so a route added without a row is unreachable rather than open.
//!
//! Patterns are `/`-separated; `*` matches exactly one non-empty segment. A raw path with a
//! `%` never matches (the router would decode it into another path than the one checked).

use std::fmt;

/// Roles, in increasing power: each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Dashboards and reports: the manager.
    Viewer,
    /// Flip the mode, run drills, read recorded exchanges: the on-call operator.
    Operator,
    /// Everything: keys, users, the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No session needed (login, setup, static files). POSTs still need a CSRF token (the
    /// pre-session cookie's).
    Public,
    /// A session whose user has at least this role.
    Role(Role),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

pub struct Rule {
    pub method: Method,
    pub pattern: &'static str,
    pub access: Access,
}

const fn r(method: Method, pattern: &'static str, access: Access) -> Rule {
    Rule { method, pattern, access }
}

use Access::{Public, Role as R};
use Method::{Get, Post};

/// Every console route. Keep in step with `pages::configure` (a test checks both ways).
pub const RULES: &[Rule] = &[
    r(Get, "/login", Public),
    r(Post, "/login", Public),
    r(Get, "/setup", Public),
    r(Post, "/setup", Public),
    r(Get, "/static/*", Public),
    r(Post, "/logout", R(Role::Viewer)),
    r(Get, "/", R(Role::Viewer)),
    r(Get, "/account", R(Role::Viewer)),
    r(Post, "/account/password", R(Role::Viewer)),
    r(Post, "/account/sessions/*/revoke", R(Role::Viewer)),
    r(Get, "/use-cases", R(Role::Viewer)),
    r(Get, "/use-cases/*", R(Role::Viewer)),
    r(Get, "/traffic", R(Role::Viewer)),
    r(Get, "/traffic/*", R(Role::Operator)),
    r(Get, "/models", R(Role::Viewer)),
    r(Get, "/failover", R(Role::Viewer)),
    r(Get, "/failover/flip", R(Role::Operator)),
    r(Post, "/failover/flip", R(Role::Operator)),
    r(Get, "/drills", R(Role::Viewer)),
    r(Post, "/drills", R(Role::Operator)),
    r(Get, "/drills/*", R(Role::Viewer)),
    r(Post, "/drills/*/abort", R(Role::Operator)),
    r(Get, "/reports", R(Role::Viewer)),
    r(Get, "/reports/view", R(Role::Viewer)),
    r(Get, "/reports/download", R(Role::Viewer)),
    r(Get, "/keys", R(Role::Admin)),
    r(Post, "/keys", R(Role::Admin)),
    r(Post, "/keys/*/revoke", R(Role::Admin)),
    r(Get, "/users", R(Role::Admin)),
    r(Post, "/users", R(Role::Admin)),
    r(Post, "/users/*/role", R(Role::Admin)),
    r(Post, "/users/*/disable", R(Role::Admin)),
    r(Post, "/users/*/enable", R(Role::Admin)),
    r(Post, "/users/*/password", R(Role::Admin)),
    r(Post, "/users/*/sessions/revoke", R(Role::Admin)),
    r(Post, "/users/*/sessions/*/revoke", R(Role::Admin)),
    r(Get, "/audit", R(Role::Admin)),
    r(Get, "/audit.csv", R(Role::Admin)),
];

/// The rule for a request, from its method and raw path; `None`: not a console route.
pub fn lookup(method: &str, raw_path: &str) -> Option<&'static Rule> {
    let m = match method {
        "GET" | "HEAD" => Method::Get,
        "POST" => Method::Post,
        _ => return None,
    };
    if raw_path.contains('%') || raw_path.contains("//") || !raw_path.starts_with('/') {
        return None;
    }
    RULES.iter().find(|r| r.method == m && matches(r.pattern, raw_path))
}

/// Whether `path` matches `pattern` (`*` = one non-empty segment without dots-only names).
pub fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some("*"), Some(seg)) => {
                if seg.is_empty() || seg == "." || seg == ".." {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Whether a path belongs to the console at all (the core keeps its JSON API, metrics and
/// health check).
pub fn is_console_path(path: &str) -> bool {
    !(path == "/metrics" || path == "/healthz" || path == "/api" || path.starts_with("/api/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, path: &str, expected: Option<Access>) {
        assert_eq!(lookup(method, path).map(|r| r.access), expected, "{method} {path}");
    }

    #[test]
    fn table() {
        check("GET", "/", Some(R(Role::Viewer)));
        check("HEAD", "/", Some(R(Role::Viewer)));
        check("GET", "/login", Some(Public));
        check("GET", "/static/console.css", Some(Public));
        check("GET", "/static/", None);
        check("GET", "/static/a/b", None);
        check("GET", "/traffic/12", Some(R(Role::Operator)));
        check("GET", "/traffic/12/", None);
        check("GET", "/traffic/..", None);
        check("POST", "/users/3/role", Some(R(Role::Admin)));
        check("GET", "/users/3/role", None);
        check("POST", "/failover/flip", Some(R(Role::Operator)));
        check("DELETE", "/keys/x/revoke", None);
        check("GET", "/%75sers", None);
        check("GET", "/use-cases/a%2Fb", None);
        check("GET", "//users", None);
        check("GET", "/nope", None);
        check("GET", "/drills/drill-abc", Some(R(Role::Viewer)));
        check("POST", "/drills", Some(R(Role::Operator)));
        check("POST", "/drills/drill-abc/abort", Some(R(Role::Operator)));
        check("GET", "/drills/drill-abc/abort", None);
        check("GET", "/reports/view", Some(R(Role::Viewer)));
        check("GET", "users", None);
        check("POST", "/account/sessions/0123456789abcdef/revoke", Some(R(Role::Viewer)));
        check("GET", "/account/sessions/0123456789abcdef/revoke", None);
        check("POST", "/users/3/sessions/revoke", Some(R(Role::Admin)));
        check("POST", "/users/3/sessions/0123456789abcdef/revoke", Some(R(Role::Admin)));
    }

    #[test]
    fn console_paths() {
        assert!(is_console_path("/"));
        assert!(is_console_path("/apix"));
        assert!(!is_console_path("/api/v1/status"));
        assert!(!is_console_path("/metrics"));
        assert!(!is_console_path("/healthz"));
    }
}
