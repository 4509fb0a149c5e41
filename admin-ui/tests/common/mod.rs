//! Test harness: gensetd started in-process (port 0, temp SQLite) with the console mounted,
//! over TLS (a throwaway self-signed pair made with `openssl`) or plain loopback HTTP, and a
//! small cookie-keeping client that can speak from another loopback address.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use genset::config::Config;
use genset::daemon::Running;
use genset_admin_ui::{Clock, Console, Options, db, password};

pub const CHEAP: password::Params = password::Params { m_kib: 256, t: 1, p: 1 };
pub const ADMIN_PW: &str = "correct horse battery staple";

pub struct Daemon {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub token: String,
    pub console: Arc<Console>,
    pub tls: bool,
}

/// A self-signed pair for 127.0.0.1 / localhost.
pub fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("console.crt");
    let key = dir.join("console.key");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

pub fn test_options() -> Options {
    Options { argon2: CHEAP, rollup_interval: std::time::Duration::from_millis(200), ..Options::default() }
}

pub async fn start(tls: bool) -> Daemon {
    start_with(tls, test_options(), "").await
}

pub async fn start_with(tls: bool, options: Options, extra: &str) -> Daemon {
    start_on(tls, options, extra, None).await
}

/// [`start_with`] on a given store URL (PostgreSQL); a temp SQLite file when `None`.
pub async fn start_on(tls: bool, options: Options, extra: &str, store_url: Option<&str>) -> Daemon {
    start_full(tls, options, "", extra, store_url).await
}

/// [`start_on`] with more `[admin]` keys (`admin_extra`, one per line).
pub async fn start_full(tls: bool, options: Options, admin_extra: &str, extra: &str, store_url: Option<&str>) -> Daemon {
    genset::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let store_url = store_url.map(str::to_string).unwrap_or_else(|| format!("sqlite://{}", dir.path().join("genset.db").display()));
    let keyfile = dir.path().join("upstream.key");
    std::fs::write(&keyfile, "sk-test-upstream-secret-9z9z\n").unwrap();
    let tls_toml = if tls {
        let (c, k) = self_signed(dir.path());
        format!("tls_cert = \"{}\"\ntls_key = \"{}\"\n", c.display(), k.display())
    } else {
        String::new()
    };
    let toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nshutdown_grace = \"2s\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{tok}\"\n{tls_toml}{admin_extra}\n\
         [store]\nurl = \"{store_url}\"\n\
         [[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_file = \"{kf}\"\n\
         [[use_cases]]\nname = \"support\"\ndescription = \"Support ticket triage\"\nmatch = {{ header = \"x-genset-use-case\", value = \"support\" }}\n\
         [[use_cases]]\nname = \"invoices\"\ndescription = \"Invoice field extraction\"\n{extra}",
        tok = dir.path().join("admin.token").display(),
        kf = keyfile.display(),
    );
    let cfg = Config::from_toml(&toml, Path::new("test.toml")).unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    // The real start-up task too (its own pool: bootstrap token, rollup).
    let console = Console::new(options, Clock::system(), Some(cfg.store.url.clone()));
    let running = genset::daemon::start_with(cfg, genset_admin_ui::extensions_for(console.clone())).await.unwrap();
    let scheme = if tls { "https" } else { "http" };
    let base = format!("{scheme}://{}", running.admin_addr);
    let token = running.admin_token.clone();
    Daemon { running: Some(running), dir, base, token, console, tls }
}

impl Daemon {
    pub fn store(&self) -> &genset::store::Store {
        &self.running.as_ref().unwrap().store
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base, None)
    }

    /// A client whose connections come from another loopback address.
    pub fn client_from(&self, ip: &str) -> Client {
        Client::new(&self.base, Some(ip.parse().unwrap()))
    }

    /// A user straight into the store (cheap hash).
    pub async fn add_user(&self, name: &str, role: &str, pw: &str) -> i64 {
        let hash = password::hash_blocking(pw, CHEAP).unwrap();
        db::create_user(self.store(), name, &hash, role, genset::record::now_ms()).await.unwrap().unwrap()
    }

    /// A signed-in client for a new user of `role` (named after it).
    pub async fn signed_in(&self, role: &str) -> Client {
        let name = format!("{role}-user");
        self.add_user(&name, role, ADMIN_PW).await;
        let mut c = self.client();
        let r = c.login(&name, ADMIN_PW).await;
        assert_eq!(r.status, 303, "login of {name}: {}", r.body);
        c
    }

    /// Wait until the console's start-up task has run and its rollup has folded every
    /// exchange recorded so far.
    pub async fn wait_rollup(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let max = db::max_exchange_id(self.store()).await.unwrap();
            if genset_admin_ui::rollup::high_water(self.store()).await.unwrap().is_some_and(|h| h >= max) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the rollup did not catch up");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn audit(&self) -> Vec<db::AuditRow> {
        db::list_audit(self.store(), &db::AuditFilter { limit: 10_000, ..Default::default() }).await.unwrap()
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }
    pub fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }
    /// The value of `<input type="hidden" name="csrf" value="…">` on the page.
    pub fn csrf(&self) -> String {
        hidden(&self.body, "csrf").unwrap_or_else(|| panic!("no csrf field in:\n{}", self.body))
    }
}

pub fn hidden(body: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let i = body.find(&needle)? + needle.len();
    let j = body[i..].find('"')? + i;
    Some(body[i..j].to_string())
}

/// A client with its own cookie jar (names as set, `Max-Age=0` removes).
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: BTreeMap<String, String>,
    pub raw_set_cookies: Vec<String>,
    /// Sent with every request (a user agent, a forwarding header).
    pub headers: Vec<(String, String)>,
}

impl Client {
    pub fn new(base: &str, local: Option<IpAddr>) -> Client {
        let mut b = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).danger_accept_invalid_certs(true);
        if let Some(ip) = local {
            b = b.local_address(ip);
        }
        Client {
            http: b.build().unwrap(),
            base: base.to_string(),
            cookies: BTreeMap::new(),
            raw_set_cookies: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Send `name: value` with every request from now on (replacing an earlier value).
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn finish(&mut self, r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        for v in headers.get_all("set-cookie") {
            let s = v.to_str().unwrap().to_string();
            self.raw_set_cookies.push(s.clone());
            let (nv, attrs) = s.split_once(';').unwrap_or((&s, ""));
            let (n, v) = nv.split_once('=').unwrap();
            if attrs.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.remove(n.trim());
            } else {
                self.cookies.insert(n.trim().to_string(), v.trim().to_string());
            }
        }
        let body = r.text().await.unwrap_or_default();
        Resp { status, headers, body }
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        let mut rb = self.http.get(format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            rb = rb.header("cookie", self.cookie_header());
        }
        for (k, v) in &self.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let r = rb.send().await.unwrap();
        self.finish(r).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.post_with(path, form, &[]).await
    }

    pub async fn post_with(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        let body = serde_urlencoded::to_string(form).unwrap();
        let mut rb = self.http.post(format!("{}{path}", self.base)).header("content-type", "application/x-www-form-urlencoded").body(body);
        if !self.cookies.is_empty() {
            rb = rb.header("cookie", self.cookie_header());
        }
        for (k, v) in &self.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.unwrap();
        self.finish(r).await
    }

    /// GET /login for its form token, then POST the credentials.
    pub async fn login(&mut self, user: &str, pw: &str) -> Resp {
        let page = self.get("/login").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.csrf();
        self.post("/login", &[("csrf", &csrf), ("username", user), ("password", pw), ("next", "")]).await
    }

    /// The CSRF token of the signed-in session (from any page's sign-out form).
    pub async fn csrf(&mut self) -> String {
        self.get("/account").await.csrf()
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookies.get("__Host-genset_session").or_else(|| self.cookies.get("genset_session")).cloned()
    }
}

/// `n` recorded exchanges over the last hour (two use cases, cloud and local, a few errors).
pub async fn seed_exchanges(store: &genset::store::Store, n: usize) {
    let now = genset::record::now_ms();
    let rows: Vec<genset::store::NewExchange> = (0..n)
        .map(|i| genset::store::NewExchange {
            ts_ms: now - 3_000_000 + (i as i64 * 3_000_000 / n.max(1) as i64),
            api: "openai",
            endpoint: "/v1/chat/completions",
            use_case: if i % 3 == 0 { "invoices".into() } else { "support".into() },
            served_by: if i % 5 == 0 { "local:gemma".into() } else { "openai".into() },
            model: Some("gpt-x".into()),
            status: if i % 17 == 0 { 500 } else { 200 },
            stream: i % 2 == 0,
            completed: true,
            error: None,
            client_key_hash: Some("0123456789abcdef".into()),
            virtual_key_id: None,
            ttfb_ms: Some(120.0),
            total_ms: 480.0 + i as f64,
            prompt_tokens: Some(42),
            completion_tokens: Some(7),
            request_body: Some(format!(r#"{{"model":"gpt-x","messages":[{{"role":"user","content":"ticket {i}: printer on fire"}}]}}"#)),
            response_body: Some(r#"{"choices":[{"message":{"role":"assistant","content":"category: hardware"}}]}"#.into()),
            request_bytes: 120,
            response_bytes: 90,
            truncated: false,
            prompt_fingerprint: None,
            request_id: Some(format!("req-{i}")),
            attempt: 0,
            final_attempt: true,
            rescue: None,
            mode: Some("cloud".into()),
        })
        .collect();
    store.insert_exchanges(&rows, &[]).await.unwrap();
}

/// A failed attempt before a failover (`final_attempt = false`): recorded, never a client request.
pub async fn seed_failed_attempt(store: &genset::store::Store, use_case: &str, total_ms: f64) {
    let now = genset::record::now_ms();
    let row = genset::store::NewExchange {
        ts_ms: now - 60_000,
        api: "openai",
        endpoint: "/v1/chat/completions",
        use_case: use_case.into(),
        served_by: "openai".into(),
        model: Some("gpt-x".into()),
        status: 503,
        stream: false,
        completed: false,
        error: Some("upstream 503".into()),
        client_key_hash: None,
        virtual_key_id: None,
        ttfb_ms: Some(total_ms),
        total_ms,
        prompt_tokens: None,
        completion_tokens: None,
        request_body: None,
        response_body: None,
        request_bytes: 0,
        response_bytes: 0,
        truncated: false,
        prompt_fingerprint: None,
        request_id: Some("req-failed".into()),
        attempt: 0,
        final_attempt: false,
        rescue: None,
        mode: Some("cloud".into()),
    };
    store.insert_exchanges(&[row], &[]).await.unwrap();
}
