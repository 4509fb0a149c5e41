//! `LISTEN=127.0.0.1:PORT UPSTREAM=http://127.0.0.1:PORT genset-bench-bare-proxy`: forwards
//! every request to UPSTREAM + path with the client's headers, returns status, content type
//! and body. Two workers, like gensetd on two cores, each with its own connection pool.
//! `CLIENT=reqwest` forwards through reqwest instead of hyper-util's client.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

enum Upstream {
    Hyper(Client<HttpConnector, Full<Bytes>>),
    Reqwest(reqwest::Client),
}

struct State {
    client: Upstream,
    upstream: String,
}

fn forwarded(req: &HttpRequest) -> impl Iterator<Item = (&str, &[u8])> {
    req.headers()
        .iter()
        .filter(|(k, _)| *k != "host" && *k != "content-length" && *k != "connection")
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
}

fn answer(status: u16, ct: Option<Vec<u8>>, body: Bytes) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let mut out = HttpResponse::build(status);
    if let Some(ct) = ct {
        out.insert_header(("content-type", ct));
    }
    out.body(body)
}

async fn forward(req: HttpRequest, body: Bytes, st: web::Data<State>) -> HttpResponse {
    let url = format!("{}{}", st.upstream, req.uri().path());
    match &st.client {
        Upstream::Hyper(client) => {
            let mut b = http::Request::builder().method(req.method().as_str()).uri(url);
            for (k, v) in forwarded(&req) {
                b = b.header(k, v);
            }
            let Ok(r) = b.body(Full::new(body)) else { return HttpResponse::BadRequest().finish() };
            let resp = match client.request(r).await {
                Ok(r) => r,
                Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
            };
            let ct = resp.headers().get("content-type").map(|v| v.as_bytes().to_vec());
            let status = resp.status().as_u16();
            match resp.into_body().collect().await {
                Ok(b) => answer(status, ct, b.to_bytes()),
                Err(e) => HttpResponse::BadGateway().body(e.to_string()),
            }
        }
        Upstream::Reqwest(client) => {
            let mut rb = client.request(reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or(reqwest::Method::POST), url);
            for (k, v) in forwarded(&req) {
                rb = rb.header(k, v);
            }
            let resp = match rb.body(body).send().await {
                Ok(r) => r,
                Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
            };
            let ct = resp.headers().get("content-type").map(|v| v.as_bytes().to_vec());
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(b) => answer(status, ct, b),
                Err(e) => HttpResponse::BadGateway().body(e.to_string()),
            }
        }
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let upstream = std::env::var("UPSTREAM").unwrap_or_else(|_| "http://127.0.0.1:8091".into());
    let use_reqwest = std::env::var("CLIENT").is_ok_and(|c| c == "reqwest");
    HttpServer::new(move || {
        // Built per worker: a pooled connection is driven by the runtime that opened it.
        let client = if use_reqwest {
            Upstream::Reqwest(reqwest::Client::builder().no_proxy().tcp_nodelay(true).build().unwrap_or_default())
        } else {
            let mut c = HttpConnector::new();
            c.set_nodelay(true);
            Upstream::Hyper(Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).build(c))
        };
        App::new().app_data(web::Data::new(State { client, upstream: upstream.clone() })).default_service(web::to(forward))
    })
    .workers(2)
    .bind(listen)?
    .run()
    .await
}
