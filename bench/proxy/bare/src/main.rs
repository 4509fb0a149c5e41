//! `LISTEN=127.0.0.1:PORT UPSTREAM=http://127.0.0.1:PORT genset-bench-bare-proxy`: forwards
//! every request to UPSTREAM + path with the client's headers, returns status, content type
//! and body. Two workers, like gensetd on two cores.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;

struct State {
    client: reqwest::Client,
    upstream: String,
}

async fn forward(req: HttpRequest, body: Bytes, st: web::Data<State>) -> HttpResponse {
    let url = format!("{}{}", st.upstream, req.uri().path());
    let mut rb = st.client.request(reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or(reqwest::Method::POST), url);
    for (k, v) in req.headers() {
        if k != "host" && k != "content-length" && k != "connection" {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
    }
    let resp = match rb.body(body).send().await {
        Ok(r) => r,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let status = actix_web::http::StatusCode::from_u16(resp.status().as_u16()).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let ct = resp.headers().get("content-type").map(|v| v.as_bytes().to_vec());
    match resp.bytes().await {
        Ok(b) => {
            let mut out = HttpResponse::build(status);
            if let Some(ct) = ct {
                out.insert_header(("content-type", ct));
            }
            out.body(b)
        }
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let upstream = std::env::var("UPSTREAM").unwrap_or_else(|_| "http://127.0.0.1:8091".into());
    HttpServer::new(move || {
        let client = reqwest::Client::builder().no_proxy().tcp_nodelay(true).build().unwrap_or_default();
        App::new().app_data(web::Data::new(State { client, upstream: upstream.clone() })).default_service(web::to(forward))
    })
    .workers(2)
    .bind(listen)?
    .run()
    .await
}
