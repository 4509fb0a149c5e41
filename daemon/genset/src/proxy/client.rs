//! The HTTP client the request path talks to cloud upstreams with: hyper's pooled client over
//! rustls (HTTP/1.1, or HTTP/2 where the server offers it through ALPN; certificates checked
//! against the platform's trust store), with genset's timeouts and nothing else in the way.
//!
//! Why not reqwest, which the rest of the daemon uses (probes, webhooks, the remote engine):
//! on the request path its layers (redirect policy, retry bookkeeping, URL re-parsing, a
//! request builder that re-validates each header) cost as much as the rest of a pass-through.
//! A bare actix-web pass-through does ~1.3x the requests per second on this client than on
//! reqwest (docs/benchmarks.md). Redirects are never followed here (an API answer is passed
//! back as it is), and no proxy from the environment is used, as before.
//!
//! Timeouts: `connect_timeout` bounds TCP connect and TLS handshake together; `read_timeout`
//! bounds every silence while reading a response (before its headers and between body
//! chunks); callers add their own, shorter ones (`first_byte_timeout`, `idle_timeout`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, StatusCode, Uri};
use http_body::Body as _;
use hyper_util::client::legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// A request body: the client's bytes, shared, never copied.
pub type Body = http_body_util::Full<Bytes>;

type Connector = TimeoutConnector<hyper_rustls::HttpsConnector<HttpConnector>>;

/// A connection pool to upstreams, with one upstream's timeouts. Cheap to clone (shared pool).
#[derive(Clone)]
pub struct Client {
    /// Behind an `Arc`: the request path takes a clone per request, and hyper's client is a
    /// dozen reference counts wide (it clones itself once more inside `request`).
    inner: Arc<legacy::Client<Connector, Body>>,
    read_timeout: Duration,
}

impl Client {
    /// A new pool (clones share theirs) trusting what `tls` trusts, with an upstream's
    /// `connect_timeout` and `read_timeout`.
    pub fn new(tls: &Tls, connect_timeout: Duration, read_timeout: Duration) -> Client {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls.0).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let connector = TimeoutConnector { inner: https, timeout: connect_timeout };
        let inner = legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Client { inner: Arc::new(inner), read_timeout }
    }

    /// Send `req` and wait for the response headers, at most `within` (and never longer than
    /// `read_timeout`).
    pub async fn send(&self, req: http::Request<Body>, within: Duration) -> Result<Response, Error> {
        let wait = within.min(self.read_timeout);
        match tokio::time::timeout(wait, self.inner.request(req)).await {
            Err(_) => Err(Error::Timeout(wait)),
            Ok(Err(e)) if e.is_connect() => Err(Error::Connect(e)),
            Ok(Err(e)) => Err(Error::Transport(Box::new(e))),
            Ok(Ok(resp)) => Ok(Response { inner: resp, read_timeout: self.read_timeout }),
        }
    }
}

/// TLS client settings: the platform's trust store, through rustls.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ClientConfig>);

impl Tls {
    /// The process's settings, built once (loading the platform's roots takes time). Fails
    /// where the system has no CA certificates (the packages depend on `ca-certificates`).
    pub fn platform() -> Result<Tls, Error> {
        static TLS: OnceLock<Result<Tls, String>> = OnceLock::new();
        TLS.get_or_init(|| Tls::load(Vec::new())).clone().map_err(Error::Request)
    }

    /// The platform's trust store, plus `extra` roots.
    fn load(extra: Vec<rustls_pki_types::CertificateDer<'static>>) -> Result<Tls, String> {
        let fail = |e: rustls::Error| format!("TLS set-up failed: {e}");
        let provider =
            rustls::crypto::CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone()).map_err(fail)?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(fail)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Tls(Arc::new(config)))
    }
}

/// An upstream's response: status and headers in hand, the body still on the wire.
pub struct Response {
    inner: http::Response<hyper::body::Incoming>,
    read_timeout: Duration,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The body's length when the upstream declared it.
    pub fn content_length(&self) -> Option<u64> {
        self.inner.body().size_hint().exact()
    }

    /// Headers and the body as a stream of chunks as they arrive.
    pub fn into_parts(self) -> (HeaderMap, BodyStream) {
        let (parts, body) = self.inner.into_parts();
        (parts.headers, BodyStream { body, read_timeout: self.read_timeout, sleep: None })
    }

    /// The body's chunks as they arrive.
    pub fn bytes_stream(self) -> BodyStream {
        self.into_parts().1
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        self.bytes_stream().bytes().await
    }
}

/// A response body's data chunks, each within `read_timeout` of the last (trailers skipped).
pub struct BodyStream {
    body: hyper::body::Incoming,
    read_timeout: Duration,
    /// Armed the first time the body is not ready (a body already read in full never
    /// allocates a timer); reset whenever a chunk arrives.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl BodyStream {
    /// The rest of the body in one piece (a body that came in one chunk is not copied).
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        use futures_util::StreamExt;
        let mut chunks = Vec::new();
        while let Some(chunk) = self.next().await {
            chunks.push(chunk?);
        }
        Ok(if chunks.len() == 1 { chunks.swap_remove(0) } else { Bytes::from(chunks.concat()) })
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(sleep) = &mut this.sleep {
                        sleep.as_mut().reset(tokio::time::Instant::now() + this.read_timeout);
                    }
                    match frame.into_data() {
                        Ok(data) => return Poll::Ready(Some(Ok(data))),
                        Err(_trailers) => continue,
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Error::Transport(Box::new(e))))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    let timeout = this.read_timeout;
                    let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    return match sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Some(Err(Error::ReadTimeout(timeout)))),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// Why a request to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be made as asked (a URL or setting the client cannot use).
    #[error("{0}")]
    Request(String),
    /// No connection: refused, unresolvable, TLS rejected, or not made within `connect_timeout`.
    #[error("error connecting to the upstream")]
    Connect(#[source] legacy::Error),
    /// Connected, but no response headers within the deadline.
    #[error("no response headers within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The body went silent for longer than `read_timeout`.
    #[error("the response body was silent for {}", humantime::format_duration(*.0))]
    ReadTimeout(Duration),
    /// The connection failed while the request or response was on it.
    #[error("the upstream connection failed")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_) | Error::ReadTimeout(_))
    }

    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }
}

/// Bounds a whole connect (TCP, then TLS) by one deadline.
#[derive(Clone)]
struct TimeoutConnector<C> {
    inner: C,
    timeout: Duration,
}

impl<C> tower_service::Service<Uri> for TimeoutConnector<C>
where
    C: tower_service::Service<Uri> + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = C::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let timeout = self.timeout;
        let connecting = self.inner.call(dst);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timed out after {} (connect_timeout)", humantime::format_duration(timeout)),
                )) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use std::time::Instant;

    use rustls_pki_types::pem::PemObject;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn client(connect_timeout: Duration, read_timeout: Duration) -> Client {
        crate::install_crypto_provider();
        Client::new(&Tls::platform().expect("platform TLS settings"), connect_timeout, read_timeout)
    }

    fn get(url: &str) -> http::Request<Body> {
        http::Request::get(url).body(Body::new(Bytes::new())).expect("request")
    }

    /// `openssl` with `args`, in `dir`.
    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let out = std::process::Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A CA named `name`, and a server certificate for 127.0.0.1 it signed: (CA, chain, key).
    fn ca_and_server_cert(dir: &std::path::Path, name: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let (ca, ca_key, key, csr, crt) =
            (format!("{name}-ca.crt"), format!("{name}-ca.key"), format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
        openssl(
            dir,
            &[&["req", "-x509"], &ec[..], &["-days", "2", "-subj", &format!("/CN={name} test CA"), "-keyout", &ca_key, "-out", &ca]]
                .concat(),
        );
        openssl(dir, &[&["req"], &ec[..], &["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]].concat());
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                &crt,
            ],
        );
        let read = |f: &str| std::fs::read(dir.join(f)).expect("read");
        (read(&ca), read(&crt), read(&key))
    }

    /// An HTTPS server on 127.0.0.1 with `chain` and `key` answering every request with its HTTP version.
    fn https_server(chain: &[u8], key: &[u8]) -> String {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(chain).collect::<Result<Vec<_>, _>>().expect("chain");
        let key = PrivateKeyDer::from_pem_slice(key).expect("key");
        let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).expect("TLS identity");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new()
                .default_service(actix_web::web::to(|req: actix_web::HttpRequest| async move { format!("{:?}", req.version()) }))
        })
        .workers(1)
        .listen_rustls_0_23(listener, config)
        .expect("listen")
        .run();
        actix_web::rt::spawn(server);
        format!("https://{addr}/v1/models")
    }

    #[actix_web::test]
    async fn https_upstreams_are_verified_and_get_http2_by_alpn() {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, chain, key) = ca_and_server_cert(dir.path(), "trusted");
        let (_, other_chain, other_key) = ca_and_server_cert(dir.path(), "unknown");
        let roots = rustls_pki_types::CertificateDer::pem_slice_iter(&ca).collect::<Result<Vec<_>, _>>().expect("CA");
        let tls = Tls::load(roots).expect("the platform's roots and the test CA");
        let c = Client::new(&tls, Duration::from_secs(5), Duration::from_secs(30));

        let resp = c.send(get(&https_server(&chain, &key)), Duration::from_secs(30)).await.expect("a server the CA vouches for");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.inner.version(), http::Version::HTTP_2, "the server offers h2 by ALPN");
        assert_eq!(resp.bytes().await.expect("body"), "HTTP/2.0");

        let err = c.send(get(&https_server(&other_chain, &other_key)), Duration::from_secs(30)).await.err().expect("an unknown issuer");
        assert!(err.is_connect(), "{err:?}");
        let chain = crate::util::error_chain(&err);
        assert!(chain.contains("certificate"), "the error says why: {chain}");
    }

    #[tokio::test]
    async fn connect_timeout_covers_the_tls_handshake() {
        // The kernel completes the TCP handshake from the listen backlog; nothing ever answers
        // the TLS ClientHello, so only the connect deadline can end this.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://{}/v1/models", listener.local_addr().expect("addr"));
        let c = client(Duration::from_millis(300), Duration::from_secs(60));
        let started = Instant::now();
        let err = c.send(get(&url), Duration::from_secs(60)).await.err().expect("no TLS server: the request must fail");
        assert!(err.is_connect(), "a handshake that never completes is a connect failure: {err:?}");
        let chain = crate::util::error_chain(&err);
        assert!(chain.contains("connect_timeout"), "the error names the setting that ran out: {chain}");
        assert!(started.elapsed() < Duration::from_secs(30), "ended by connect_timeout, not by the 60 s read deadline");
    }

    /// A server on loopback that takes one connection, reads the request, writes `reply`
    /// (nothing if empty) and then stays silent until the client closes the connection.
    async fn silent_server(reply: &'static [u8]) -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/v1/models", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            sock.write_all(reply).await.expect("write");
            while sock.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        (url, server)
    }

    #[tokio::test]
    async fn a_body_that_goes_silent_fails_after_read_timeout() {
        let (url, server) =
            silent_server(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{\"data\":").await;
        let c = client(Duration::from_secs(5), Duration::from_millis(300));
        let resp = c.send(get(&url), Duration::from_secs(60)).await.expect("headers arrive");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.content_length(), Some(20));
        let err = resp.bytes().await.expect_err("the body never completes");
        assert!(matches!(err, Error::ReadTimeout(d) if d == Duration::from_millis(300)), "{err:?}");
        server.await.expect("server task");
    }

    #[tokio::test]
    async fn no_headers_within_the_deadline_is_a_timeout() {
        let (url, server) = silent_server(b"").await;
        let c = client(Duration::from_secs(5), Duration::from_secs(60));
        let err = c.send(get(&url), Duration::from_millis(200)).await.err().expect("nothing answers");
        assert!(matches!(err, Error::Timeout(d) if d == Duration::from_millis(200)), "{err:?}");
        assert!(err.is_timeout() && !err.is_connect());
        drop(c);
        server.abort();
    }
}
