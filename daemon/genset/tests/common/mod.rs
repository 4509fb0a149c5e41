//! Shared test harness: the daemon started in-process on port 0 against a fixture upstream
//! (an in-process actix server whose answers a test scripts exactly) or the simulator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use parking_lot::Mutex;

use genset::config::Config;
use genset::daemon::Running;
use genset::store::{ExchangeRecord, TrafficFilter};

pub struct Daemon {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub proxy: String,
    pub admin: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Daemon {
    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Poll the store until `pred` holds for the listed exchanges (newest first), or fail after 10 s.
    pub async fn wait_rows(&self, want: usize) -> Vec<ExchangeRecord> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rows = self.running().store.list_exchanges(&TrafficFilter { limit: 1000, ..Default::default() }).await.unwrap();
            if rows.len() >= want {
                return rows;
            }
            assert!(std::time::Instant::now() < deadline, "expected {want} recorded exchanges, have {}", rows.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET a JSON document from the admin API (`path` from `/api/v1/...`); it must answer 200.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let resp = self.http.get(format!("{}{path}", self.admin)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().await.unwrap()
    }

    /// A virtual key issued through the admin API (`spec`: `use_case`, `name`, ...).
    pub async fn create_key(&self, spec: serde_json::Value) -> String {
        let v = self.create_key_record(spec).await;
        v["key"].as_str().unwrap_or_else(|| panic!("no key in {v}")).to_string()
    }

    /// The admin API's whole answer to issuing a virtual key (`key`, `id`, ...).
    pub async fn create_key_record(&self, spec: serde_json::Value) -> serde_json::Value {
        self.http
            .post(format!("{}/api/v1/keys", self.admin))
            .bearer_auth(&self.token)
            .json(&spec)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Start gensetd in-process with `extra` TOML appended to a base config (temp SQLite store).
pub async fn start_daemon(extra: &str) -> Daemon {
    start_daemon_with_store(extra, None).await
}

pub async fn start_daemon_with_store(extra: &str, store_url: Option<&str>) -> Daemon {
    genset::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("genset.db");
    let url = store_url.map(str::to_string).unwrap_or_else(|| format!("sqlite://{}", db.display()));
    let toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = 1\nshutdown_grace = \"5s\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n\
         [store]\nurl = \"{url}\"\n{extra}",
        dir.path().join("admin.token").display(),
    );
    let cfg = Config::from_toml(&toml, std::path::Path::new("test.toml")).unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    let running = genset::daemon::start(cfg).await.unwrap();
    let proxy = format!("http://{}", running.proxy_addr);
    let admin = format!("http://{}", running.admin_addr);
    let token = running.admin_token.clone();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Daemon { running: Some(running), dir, proxy, admin, token, http }
}

/// What the fixture upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// How the fixture answers: status, headers, and body chunks (an `Err` chunk breaks the stream).
#[derive(Clone)]
pub struct Script {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub chunks: Vec<Result<Bytes, ()>>,
    pub sized: bool,
}

pub struct Fixture {
    pub url: String,
    /// A scripted `Err` chunk waits for this before breaking the connection, so the
    /// response head has certainly reached the client first.
    pub cut: Arc<tokio::sync::Notify>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub script: Arc<Mutex<Script>>,
    handle: actix_web::dev::ServerHandle,
}

impl Fixture {
    pub async fn start() -> Fixture {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Script { status: 200, headers: vec![], chunks: vec![], sized: false }));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (s1, s2, c1) = (seen.clone(), script.clone(), cut.clone());
        let server = HttpServer::new(move || {
            let seen = s1.clone();
            let script = s2.clone();
            let cut = c1.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: Bytes| {
                let seen = seen.clone();
                let script = script.clone();
                let cut = cut.clone();
                async move {
                    seen.lock().push(Seen {
                        path: req.uri().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body,
                    });
                    let sc = script.lock().clone();
                    let mut b = HttpResponse::build(actix_web::http::StatusCode::from_u16(sc.status).unwrap());
                    for (k, v) in &sc.headers {
                        b.insert_header((*k, *v));
                    }
                    if sc.sized {
                        let all: Vec<u8> = sc.chunks.iter().flat_map(|c| c.clone().unwrap().to_vec()).collect();
                        return b.body(all);
                    }
                    let chunks = futures_util::stream::unfold((sc.chunks.into_iter(), cut), |(mut it, cut)| async move {
                        match it.next()? {
                            Ok(b) => Some((Ok(b), (it, cut))),
                            Err(()) => {
                                cut.notified().await;
                                Some((Err(std::io::Error::other("fixture: cut")), (it, cut)))
                            }
                        }
                    });
                    b.streaming(chunks)
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Fixture { url: format!("http://{addr}"), cut, seen, script, handle }
    }

    pub fn set(&self, status: u16, content_type: &'static str, chunks: Vec<Result<&'static [u8], ()>>) {
        *self.script.lock() = Script {
            status,
            headers: vec![("content-type", content_type), ("x-upstream-extra", "kept")],
            chunks: chunks.into_iter().map(|c| c.map(Bytes::from_static)).collect(),
            sized: false,
        };
    }

    pub fn set_sized(&self, status: u16, content_type: &'static str, body: &'static [u8]) {
        *self.script.lock() = Script {
            status,
            headers: vec![("content-type", content_type), ("x-upstream-extra", "kept")],
            chunks: vec![Ok(Bytes::from_static(body))],
            sized: true,
        };
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().last().cloned().expect("the fixture saw no request")
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

pub fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
