//! Streams: relayed event by event (never the whole stream buffered), each event checked
//! before the client gets it. A stream that breaks — cut, stalled past the idle timeout, a
//! malformed event, an in-band error, or an end without its terminal event — is rescued by
//! **continuation**: the next step that supports assistant prefill (a cloud upstream with
//! `prefill = true`, or a local model) is asked to continue from the text the client already
//! has, and its events are spliced into the client's stream, so the client receives one
//! complete answer. Where no step can continue, the stream ends with an in-band error event in
//! the client's API format carrying the original failure, and no terminal event.
//!
//! Same API, no splice: events pass through as the upstream's exact bytes (refcounted slices).
//! Otherwise they are re-encoded for the client by a [`StreamEncoder`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use genset_engine::Priority;
use genset_translate::{Delta, EncoderOptions, SseEvent, SseFramer, StreamDecoder, StreamEncoder, Transcript};

use super::exec::{Inbound, Walk, api, build_request, send, transport_outcome};
use crate::api::error::Flavor;
use crate::control::{Outcome, Source};
use crate::local::{LocalBody, LocalEndpoint};
use crate::proxy::client::{self, Response};
use crate::proxy::routing::{Step, Upstream};
use crate::record::{Ending, Exchange, Recorder};

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Where events currently come from.
struct Src {
    stream: ByteStream,
    framer: SseFramer,
    decoder: StreamDecoder,
    /// The cloud upstream behind it (health is reported there); `None` for a local model.
    upstream: Option<Arc<Upstream>>,
    tag: Arc<str>,
    first_timeout: Duration,
    idle_timeout: Duration,
    got_event: bool,
    /// Drops the whitespace the client already has from the continuation's start.
    splicer: Option<genset_translate::Splicer>,
}

impl Src {
    /// The event stream of a cloud upstream's 2xx answer, with its timeouts.
    fn cloud(up: &Arc<Upstream>, resp: Response, splicer: Option<genset_translate::Splicer>) -> Src {
        Src {
            stream: Box::pin(resp.bytes_stream().map(|r| r.map_err(|e| std::io::Error::other(crate::util::error_chain(&e))))),
            framer: SseFramer::new(),
            decoder: StreamDecoder::new(api(up.config.api)),
            upstream: Some(up.clone()),
            tag: up.tag.clone(),
            first_timeout: up.config.first_byte_timeout,
            idle_timeout: up.config.idle_timeout,
            got_event: false,
            splicer,
        }
    }

    /// The next complete event, within the first-event or idle timeout.
    async fn next(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            if let Some(ev) = self.framer.pop() {
                self.got_event = true;
                return Ok(Some(ev));
            }
            let wait = if self.got_event { self.idle_timeout } else { self.first_timeout };
            match tokio::time::timeout(wait, self.stream.next()).await {
                Err(_) => return Err(format!("the stream stalled for {}", humantime::format_duration(wait))),
                Ok(Some(Ok(chunk))) => self.framer.push(chunk),
                Ok(Some(Err(e))) => return Err(format!("the stream was cut: {e}")),
                Ok(None) => {
                    if let Some(ev) = self.framer.finish() {
                        return Ok(Some(ev));
                    }
                    return Ok(None);
                }
            }
        }
    }
}

/// The client's exchange, recorded exactly once: at the end, or when the client goes away.
struct Recording {
    ex: Option<Exchange>,
    recorder: Recorder,
    started: Instant,
    cap: usize,
}

impl Recording {
    fn push(&mut self, b: &Bytes) {
        if let Some(ex) = &mut self.ex {
            if ex.ttfb.is_none() {
                ex.ttfb = Some(self.started.elapsed());
            }
            ex.response.push(b, self.cap);
        }
    }
    fn finish(&mut self, ending: Ending, error: Option<&'static str>) {
        if let Some(mut ex) = self.ex.take() {
            ex.ending = ending;
            if ex.error.is_none() {
                ex.error = error;
            }
            ex.total = self.started.elapsed();
            self.recorder.record(ex);
        }
    }
    fn set_served_by(&mut self, tag: &Arc<str>, rescue: &'static str) {
        if let Some(ex) = &mut self.ex {
            ex.served_by = tag.clone();
            ex.attempt.rescue = Some(rescue);
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.finish(Ending::ClientGone, None);
    }
}

/// Relay a 2xx event stream from `up` to the client, rescuing it if it breaks.
pub async fn relay(walk: &mut Walk, up: Arc<Upstream>, resp: Response, rest: Vec<Step>, api_model: Option<String>) -> HttpResponse {
    let inbound = walk.inbound.clone();
    let client_api = api(inbound.flavor);
    let cross = up.config.api != inbound.flavor;
    let mut ex = walk.final_exchange(&up.tag, 200);
    ex.sse = true;
    let mut b = HttpResponseBuilder::new(StatusCode::OK);
    match resp.headers().get(http::header::CONTENT_TYPE) {
        Some(ct) if !cross => b.insert_header(("content-type", ct.as_bytes())),
        _ => b.content_type("text/event-stream"),
    };
    b.insert_header(("cache-control", "no-cache"));
    b.insert_header(("x-genset-served-by", &*up.tag));
    b.insert_header(("x-genset-use-case", &*ex.use_case));
    if !cross {
        // The upstream's own headers (request ids, rate-limit state) pass through.
        for (name, value) in resp.headers() {
            let n = name.as_str();
            if crate::proxy::is_hop_by_hop(n) || matches!(n, "content-length" | "content-type" | "cache-control") {
                continue;
            }
            b.append_header((n, value.as_bytes()));
        }
    }
    let src = Src::cloud(&up, resp, None);
    let client_model = inbound.model.clone().unwrap_or_default();
    let encoder = cross.then(|| StreamEncoder::new(client_api, encoder_options(&inbound, api_model.as_deref().unwrap_or(&client_model))));
    let state = Relay {
        walk: walk.fork(),
        rest,
        src,
        encoder,
        transcript: Transcript::new(client_api),
        echo: SseFramer::new(),
        terminal_only: false,
        rec: Recording { ex: Some(ex), recorder: walk.env.recorder.clone(), started: walk.started, cap: walk.env.recorder.body_cap() },
    };
    b.streaming(state.run())
}

fn encoder_options(inbound: &Inbound, model: &str) -> EncoderOptions {
    let include_usage = serde_json::from_slice::<serde_json::Value>(&inbound.body)
        .ok()
        .and_then(|v| v.pointer("/stream_options/include_usage").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    EncoderOptions {
        id: None,
        model: model.to_string(),
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        include_usage,
    }
}

struct Relay {
    walk: Walk,
    rest: Vec<Step>,
    src: Src,
    /// Set once the client's stream is re-encoded (other API, or after a splice).
    encoder: Option<StreamEncoder>,
    /// What the client has received.
    transcript: Transcript,
    /// Re-frames encoded output for the transcript.
    echo: SseFramer,
    rec: Recording,
    /// The answer is complete but its terminal event never came: send it and end.
    terminal_only: bool,
}

enum Next {
    Emit(Bytes),
    /// The last bytes of a complete answer.
    Last(Bytes),
    Broken(String),
}

impl Relay {
    fn run(mut self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + 'static {
        async_stream::stream! {
            loop {
                match self.step().await {
                    Next::Emit(b) => {
                        if !b.is_empty() {
                            self.rec.push(&b);
                            yield Ok(b);
                        }
                    }
                    Next::Last(b) => {
                        self.rec.push(&b);
                        self.rec.finish(Ending::Delivered, None);
                        yield Ok(b);
                        break;
                    }
                    Next::Broken(cause) => {
                        tracing::warn!(served_by = %self.src.tag, %cause, "stream broke mid-answer");
                        if let Some(up) = self.src.upstream.clone() {
                            let o = Outcome::Transient { cause: cause.clone(), retry_after: None };
                            self.walk.env.controller.report(&up.health, &o, Source::Request, None);
                        }
                        self.walk.record_attempt(&self.src.tag, 200, "stream_broken", None);
                        if self.continue_elsewhere().await {
                            continue;
                        }
                        // Honest end: the original failure, in band, no terminal event.
                        let enc = match self.encoder.take() {
                            Some(e) => Some(e),
                            None => StreamEncoder::resume(&self.transcript, encoder_options(&self.walk.inbound, self.transcript.model().unwrap_or(""))).ok(),
                        };
                        let msg = format!("the answer was cut off and could not be continued: {cause}");
                        if let Some(mut enc) = enc {
                            let b = enc.error_event(genset_translate::ErrorKind::Server, &msg);
                            self.rec.push(&b);
                            yield Ok(b);
                        }
                        // End the HTTP body cleanly so the error event is flushed to the client;
                        // without [DONE]/message_stop after it, no client takes it as complete.
                        self.rec.finish(Ending::UpstreamBroke, Some("stream_truncated"));
                        break;
                    }
                }
            }
        }
    }

    /// Read, check and forward one event.
    async fn step(&mut self) -> Next {
        if self.terminal_only {
            let b = match self.transcript.api() {
                genset_translate::Api::OpenAi => Bytes::from_static(b"data: [DONE]\n\n"),
                genset_translate::Api::Anthropic => Bytes::from_static(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
            };
            return Next::Last(b);
        }
        let ev = match self.src.next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return Next::Broken("the stream ended without its terminal event".into()),
            Err(cause) => return Next::Broken(cause),
        };
        let mut deltas = match self.src.decoder.decode(&ev) {
            Ok(d) => d,
            Err(e) => return Next::Broken(format!("malformed event from upstream: {e}")),
        };
        if let Some(Delta::Error { message, .. }) = deltas.iter().find(|d| matches!(d, Delta::Error { .. })) {
            return Next::Broken(format!("the upstream reported an error mid-stream: {message}"));
        }
        if let Some(sp) = &mut self.src.splicer {
            for d in &mut deltas {
                if let Delta::Text(t) = d
                    && !sp.is_done()
                {
                    *t = sp.splice(t).to_string();
                }
            }
        }
        let done = deltas.iter().any(|d| matches!(d, Delta::Done));
        let bytes = match &mut self.encoder {
            None => {
                // Pass-through: the upstream's exact bytes.
                let _ = self.transcript.observe(&ev);
                ev.raw
            }
            Some(enc) => match enc.encode(&deltas) {
                Ok(b) => {
                    self.echo.push(b.clone());
                    while let Some(e) = self.echo.pop() {
                        let _ = self.transcript.observe(&e);
                    }
                    b
                }
                Err(e) => return Next::Broken(format!("the upstream's events are out of order: {e}")),
            },
        };
        if done { Next::Last(bytes) } else { Next::Emit(bytes) }
    }

    /// Find the next step that can continue the answer and switch to it.
    async fn continue_elsewhere(&mut self) -> bool {
        if self.transcript.finish().is_some() && !self.transcript.is_done() && !self.transcript.is_errored() {
            // The answer is complete (its finish reason arrived); only the terminal event is
            // missing: genset ends the stream properly.
            self.terminal_only = true;
            return true;
        }
        let started = self.transcript.is_started();
        if started && !self.transcript.can_continue() {
            return false;
        }
        let partial = self.transcript.text().to_string();
        while !self.rest.is_empty() {
            let step = self.rest.remove(0);
            if self.walk.attempts >= self.walk.max_attempts {
                return false;
            }
            let ok = match step {
                Step::Cloud(up) => self.continue_cloud(&up, &partial).await,
                Step::Local(name) => self.continue_local(&name, &partial).await,
            };
            if ok {
                return true;
            }
        }
        false
    }

    /// Switch the client's stream over to a new source.
    fn switch(&mut self, src: Src, model: &str) -> bool {
        if self.encoder.is_none() {
            match StreamEncoder::resume(&self.transcript, encoder_options(&self.walk.inbound, model)) {
                Ok(e) => self.encoder = Some(e),
                Err(_) => return false,
            }
        }
        self.rec.set_served_by(&src.tag, if self.transcript.is_started() { "continuation" } else { "fallback" });
        self.src = src;
        true
    }

    async fn continue_cloud(&mut self, up: &Arc<Upstream>, partial: &str) -> bool {
        if !up.health.routable() || (!up.config.prefill && !partial.is_empty()) {
            return false;
        }
        let inbound = self.walk.inbound.clone();
        let Ok(swap) = self.walk.auth_for(up, false) else { return false };
        let Ok((body, model)) = self.walk.body_for(up) else { return false };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else { return false };
        let (body, skip) = if partial.is_empty() {
            (body, None)
        } else {
            match genset_translate::continuation_request(&value, api(up.config.api), partial, self.transcript.usage().output) {
                Ok(c) => match serde_json::to_vec(&c.body) {
                    Ok(v) => (Bytes::from(v), Some(c.splicer())),
                    Err(_) => return false,
                },
                Err(_) => return false,
            }
        };
        self.walk.attempts += 1;
        self.walk.cloud_attempts += 1;
        self.walk.env.recorder.metrics().upstream_attempts.with_label_values(&[&up.config.name]).inc();
        let mut probe = (*inbound).clone();
        if up.config.api != inbound.flavor {
            probe.flavor = up.config.api;
            probe.ep.path = match up.config.api {
                Flavor::OpenAi => "/v1/chat/completions",
                Flavor::Anthropic => "/v1/messages",
            };
        }
        let resp = match send(up, build_request(up, &probe, body, swap)).await {
            Ok(r) => r,
            Err(e) => {
                let o = transport_outcome(up, &e);
                self.walk.env.controller.report(&up.health, &o, Source::Request, None);
                let label = if matches!(e, client::Error::Timeout(_)) { "upstream_timeout" } else { "upstream_unavailable" };
                self.walk.record_attempt(&up.tag, 0, label, None);
                return false;
            }
        };
        let status = resp.status().as_u16();
        let sse = resp.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if !resp.status().is_success() || !sse {
            // A rejected prefill is the fallback's problem, not the client's: the client will
            // see the original failure if nothing else continues.
            let body = resp.bytes().await.unwrap_or_default();
            let o = crate::control::outcome::classify_status(status, None, &body, swap);
            self.walk.env.controller.report(&up.health, &o, Source::Request, None);
            self.walk.record_attempt(&up.tag, status, "continuation_refused", Some(body));
            return false;
        }
        let src = Src::cloud(up, resp, skip);
        self.switch(src, model.as_deref().unwrap_or(""))
    }

    async fn continue_local(&mut self, name: &Arc<str>, partial: &str) -> bool {
        let Some(local) = self.walk.env.local.clone() else { return false };
        let Some(engine) = local.registry.get(name) else { return false };
        let Ok(key_id) = self.walk.local_allowed() else { return false };
        if self.walk.local_limits(&key_id).is_err() {
            return false;
        }
        let inbound = self.walk.inbound.clone();
        let Some(endpoint) = LocalEndpoint::from_path(inbound.ep.path) else { return false };
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&inbound.body) else { return false };
        if let Some(o) = value.as_object_mut() {
            o.insert("model".into(), serde_json::Value::String(name.to_string()));
        }
        let (value, skip) = if partial.is_empty() {
            (value, None)
        } else {
            match genset_translate::continuation_request(&value, api(inbound.flavor), partial, self.transcript.usage().output) {
                Ok(c) => {
                    let sp = c.splicer();
                    (c.body, Some(sp))
                }
                Err(_) => return false,
            }
        };
        self.walk.attempts += 1;
        let tag: Arc<str> = Arc::from(crate::local::served_by(engine.as_ref()));
        let model = engine.name().to_string();
        match crate::local::serve(engine, endpoint, &value, Priority::Live).await {
            Ok(resp) => {
                let LocalBody::Stream(stream) = resp.body else { return false };
                let src = Src {
                    stream,
                    framer: SseFramer::new(),
                    decoder: StreamDecoder::new(api(inbound.flavor)),
                    upstream: None,
                    tag,
                    first_timeout: Duration::from_secs(300),
                    idle_timeout: Duration::from_secs(120),
                    got_event: false,
                    splicer: skip,
                };
                self.switch(src, &model)
            }
            Err(e) => {
                self.walk.record_attempt(&tag, e.status().as_u16(), e.kind.label(), None);
                false
            }
        }
    }
}
