//! Listeners, connections and the per-request entry point.
//!
//! The simulator owns its accept loop so that faults can act below HTTP:
//! `refuse` closes the listening socket (and drops open connections) and
//! rebinds the same port when cleared; `reset` closes a connection with an
//! RST instead of answering; `cut_mid_stream` aborts a response half way.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::api::{self, ApiCtx, Exit};
use crate::body::{Resp, plain, with_request_id};
use crate::control;
use crate::error::ApiError;
use crate::route::{Flavor, Resolved, Route};
use crate::state::{ListenerState, Shared};

/// Largest request body accepted on API routes.
const MAX_BODY: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    /// The API port (which also serves `/_sim/`).
    Api,
    /// The optional separate control port: `/_sim/` only, never refused.
    Control,
}

/// Per-connection flags set by request handling.
pub(crate) struct ConnCtx {
    pub(crate) kind: ListenerKind,
    /// Close with an RST (SO_LINGER 0) rather than a FIN.
    reset: AtomicBool,
    /// Survive `refuse` dropping the API connections (the control request
    /// that set it, answered with `Connection: close`).
    pub(crate) exempt: AtomicBool,
}

/// Makes hyper drop the connection without a response.
#[derive(Debug)]
pub(crate) struct ConnAbort;

impl std::fmt::Display for ConnAbort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by an injected fault")
    }
}

impl std::error::Error for ConnAbort {}

/// Binds a listening socket with SO_REUSEADDR, so the port can be bound
/// again after `refuse` while old connections sit in TIME_WAIT.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Starts the accept loops on the current runtime. Listener and connection
/// tasks hold no work that must finish: stopping the simulator drops its
/// runtime, which drops them (and closes their sockets).
pub(crate) fn spawn(shared: Arc<Shared>, api: TcpListener, control: Option<TcpListener>) {
    if let Some(control) = control {
        tokio::spawn(control_listener(shared.clone(), control));
    }
    tokio::spawn(api_listener(shared, api));
}

async fn control_listener(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_conn(shared.clone(), stream, ListenerKind::Control));
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

async fn accept_failed(e: io::Error) {
    tracing::warn!(error = %e, "accept failed");
    // Out of file descriptors and the like: back off instead of spinning.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// The API accept loop: closes the socket while `refuse` is active and
/// binds the same address again afterwards.
async fn api_listener(shared: Arc<Shared>, first: TcpListener) {
    let mut listener = Some(first);
    let mut refuse = shared.faults.refuse_rx();
    loop {
        let state = *refuse.borrow_and_update();
        if let Some(r) = state {
            if listener.take().is_some() {
                tracing::info!(addr = %shared.api_addr, "refusing connections");
                shared.drop_connections.send_modify(|n| *n += 1);
            }
            shared.listener.send_replace(ListenerState::Closed);
            let changed = match r.until {
                Some(until) => tokio::select! {
                    () = tokio::time::sleep_until(until) => {
                        shared.faults.expire_refuse(r.generation);
                        Ok(())
                    }
                    res = refuse.changed() => res,
                },
                None => refuse.changed().await,
            };
            if changed.is_err() {
                return;
            }
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match bind(shared.api_addr) {
                Ok(l) => {
                    tracing::info!(addr = %shared.api_addr, "accepting connections again");
                    l
                }
                Err(e) => {
                    tracing::warn!(addr = %shared.api_addr, error = %e, "cannot listen again; retrying");
                    shared.listener.send_replace(ListenerState::BindFailed(e.to_string()));
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        res = refuse.changed() => if res.is_err() { return },
                    }
                    continue;
                }
            },
        };
        shared.listener.send_if_modified(|s| {
            let changed = *s != ListenerState::Listening;
            *s = ListenerState::Listening;
            changed
        });
        loop {
            tokio::select! {
                res = l.accept() => match res {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_conn(shared.clone(), stream, ListenerKind::Api));
                    }
                    Err(e) => accept_failed(e).await,
                },
                res = refuse.changed() => {
                    if res.is_err() {
                        return;
                    }
                    listener = Some(l);
                    break;
                }
            }
        }
    }
}

async fn serve_conn(shared: Arc<Shared>, stream: TcpStream, kind: ListenerKind) {
    let _ = stream.set_nodelay(true);
    let _open = (kind == ListenerKind::Api).then(|| shared.stats.connection());
    let ctx = Arc::new(ConnCtx { kind, reset: AtomicBool::new(false), exempt: AtomicBool::new(false) });
    let mut drop_rx = shared.drop_connections.subscribe();
    let io = TokioIo::new(SimIo { stream, ctx: ctx.clone() });
    let (svc_shared, svc_ctx) = (shared.clone(), ctx.clone());
    let service = service_fn(move |req| serve(svc_shared.clone(), svc_ctx.clone(), req));
    // No timer: hyper's 30 s header-read timeout would also close idle
    // keep-alive connections, and costs a timer reset per request.
    let conn = http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    if kind == ListenerKind::Control {
        let _ = conn.await;
        return;
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = drop_rx.changed() => {
                if changed.is_err() || !ctx.exempt.load(Ordering::Acquire) {
                    return;
                }
            }
        }
    }
}

/// Every request starts here.
async fn serve(shared: Arc<Shared>, ctx: Arc<ConnCtx>, req: Request<Incoming>) -> Result<Resp, ConnAbort> {
    let path = req.uri().path();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return Ok(control::handle(&shared, &ctx, req).await);
    }
    if ctx.kind == ListenerKind::Control {
        return Ok(plain(StatusCode::NOT_FOUND, "the control port serves /_sim/ only\n".to_owned()));
    }
    api_request(&shared, &ctx, req).await
}

async fn api_request(shared: &Shared, ctx: &ConnCtx, req: Request<Incoming>) -> Result<Resp, ConnAbort> {
    let _in_flight = shared.stats.in_flight();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let resolved = Route::resolve(&parts.method, path);
    let flavor = match &resolved {
        Resolved::Api(r, _) | Resolved::WrongMethod(r) => r.flavor(&parts.headers),
        Resolved::NotFound => Flavor::sniff(&parts.headers),
    };
    let body = match read_body(body, MAX_BODY).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => {
            let resp = ApiError::TooLarge.into_response(flavor);
            shared.stats.record_status(resp.status().as_u16());
            return Ok(resp);
        }
        Err(ReadError::Io) => return Err(ConnAbort),
    };
    let route = match &resolved {
        Resolved::Api(r, _) | Resolved::WrongMethod(r) => Some(*r),
        Resolved::NotFound => None,
    };
    shared.stats.record_request(route, &parts.method, path, &parts.headers, &body);
    let resp = match resolved {
        Resolved::Api(route, param) => {
            let stable = shared.stable_ids().then(|| crate::ids::request_key(&[path.as_bytes(), &body]));
            let cx = ApiCtx { shared, route, flavor, path, headers: &parts.headers, param, stable, minted: AtomicU64::new(0) };
            match api::dispatch(&cx, &body).await {
                Ok(resp) => with_request_id(resp, flavor),
                Err(Exit::Respond(resp)) => *resp,
                Err(Exit::Reset) => {
                    ctx.reset.store(true, Ordering::Release);
                    return Err(ConnAbort);
                }
            }
        }
        Resolved::WrongMethod(_) => ApiError::MethodNotAllowed.into_response(flavor),
        Resolved::NotFound => ApiError::NotFound { method: parts.method.to_string(), path: path.to_owned() }.into_response(flavor),
    };
    shared.stats.record_status(resp.status().as_u16());
    Ok(resp)
}

pub(crate) enum ReadError {
    TooLarge,
    Io,
}

/// Collects a request body; a body that arrives in one frame is not copied.
pub(crate) async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Io)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(total.max(f.len() * 2));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                more = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match more {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// A TCP stream that closes with an RST when its connection was marked for
/// `reset`.
struct SimIo {
    stream: TcpStream,
    ctx: Arc<ConnCtx>,
}

impl Drop for SimIo {
    fn drop(&mut self) {
        if self.ctx.reset.load(Ordering::Acquire) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for SimIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ctx.reset.load(Ordering::Acquire) {
            // No FIN: the RST on drop is the whole answer.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
