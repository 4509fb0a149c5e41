//! Walking the plan: each step in turn, bounded retries with jittered backoff and
//! `Retry-After`, first-byte timeouts, outcomes reported to the controller, failed attempts
//! recorded (never as completions), the request translated for an upstream of the other API.
//! A failure before the first byte moves silently to the next step; streams hand over to
//! [`super::stream`], which rescues a failure after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use futures_util::StreamExt;
use genset_engine::Priority;
use genset_translate::Api;
use rand::Rng;

use super::plan::{self, Planned};
use crate::api::error::{ApiError, ErrorKind, ErrorSource, Flavor};
use crate::auth::{KeyBook, VirtualKey};
use crate::control::{Controller, Mode, Outcome, Refusal, Source};
use crate::local::{LocalBody, LocalEndpoint};
use crate::proxy::client::{self, Response};
use crate::proxy::routing::{Routing, Step, Upstream};
use crate::proxy::tee::Tee;
use crate::proxy::{Endpoint, ProxyState, is_hop_by_hop};
use crate::record::{Capture, Ending, Exchange, Recorder, now_ms};

/// How long the cloud must have accepted a passthrough key for it to use local models and
/// the appliance's backup credentials while the primary is gone.
const ACCEPTED_KEY_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// Everything about the inbound request the steps need, owned so a stream can outlive the handler.
#[derive(Clone)]
pub struct Inbound {
    pub ep: Endpoint,
    pub flavor: Flavor,
    pub body: Bytes,
    pub model: Option<String>,
    pub stream: bool,
    pub headers: actix_web::http::header::HeaderMap,
    pub query: Option<String>,
    pub key_hash: Option<String>,
    pub virtual_key: Option<VirtualKey>,
    pub use_case: Option<usize>,
}

/// The shared parts of the daemon a walk needs.
#[derive(Clone)]
pub struct Env {
    pub routing: Arc<Routing>,
    pub controller: Arc<Controller>,
    pub recorder: Recorder,
    pub keys: Arc<KeyBook>,
    pub local: Option<Arc<crate::local_route::LocalRoute>>,
}

/// Per-request attempt bookkeeping.
pub struct Walk {
    pub env: Env,
    pub inbound: Arc<Inbound>,
    /// The exchange as known before any attempt (request captured, use case, keys).
    pub template: Exchange,
    pub started: Instant,
    pub attempts: u32,
    /// Cloud attempts (the figure "upstream attempts per client request").
    pub cloud_attempts: u32,
    pub max_attempts: u32,
    /// Any step has failed already.
    pub failed_before: bool,
    pub cut_off: bool,
    pub local_first: bool,
}

/// What the client gets when every step failed: the last upstream answer, passed back, or
/// genset's own error.
pub enum Failure {
    Upstream { status: u16, headers: http::HeaderMap, body: Bytes, api: Flavor, tag: Arc<str> },
    Genset(ApiError),
}

pub async fn run(state: &ProxyState, req: &HttpRequest, inbound: Inbound, mut ex: Exchange, started: Instant) -> HttpResponse {
    let env = Env {
        routing: state.routing.load_full(),
        controller: state.controller.clone(),
        recorder: state.recorder.clone(),
        keys: state.keys.clone(),
        local: state.local.clone(),
    };
    let _ = req;
    let request_id: Arc<str> = Arc::from(format!("{:016x}", rand::rng().random::<u64>()));
    ex.attempt.request_id = Some(request_id);
    ex.attempt.mode = Some(env.controller.effective());
    let mut mode = env.controller.mode().mode;
    let drill = if mode == Mode::Auto { env.controller.drill_for(&ex.use_case) } else { None };
    if drill.is_some() {
        // A live drill: the same path as a real cut-off, for this use case only.
        mode = Mode::ForceLocal;
        ex.attempt.mode = Some("drill");
    }
    let inbound = Arc::new(inbound);
    let input = |routing: &Arc<Routing>| -> Result<Planned, ApiError> {
        plan::plan(&plan::Input {
            routing,
            mode,
            flavor: inbound.flavor,
            path: inbound.ep.path,
            use_case: inbound.use_case,
            use_case_name: &ex.use_case,
            virtual_key: inbound.virtual_key.as_ref(),
            readiness: env.controller.verdict(&ex.use_case),
            drill: drill.as_ref().map(|h| h.drill_id.as_str()),
        })
    };
    let mut planned = match input(&env.routing) {
        Ok(p) => p,
        Err(e) => return crate::proxy::reject(ex, started, &env.recorder, e),
    };
    if let Planned::Queue = planned {
        // on_cutoff = "queue": wait (bounded) for an upstream of the chain to come back.
        let deadline = tokio::time::Instant::now() + env.routing.failover.queue_timeout;
        let mut changes = env.controller.subscribe();
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
            if let Ok(p @ Planned::Steps { .. }) = input(&env.routing) {
                planned = p;
                break;
            }
        }
        if let Planned::Queue = planned {
            let e = ApiError::new(
                ErrorKind::CutOff,
                format!(
                    "the cloud is cut off and did not come back within {} (use case {:?}, on_cutoff = \"queue\"). Retry later.",
                    humantime::format_duration(env.routing.failover.queue_timeout),
                    &*ex.use_case
                ),
            )
            .with_code("cloud_cut_off")
            .with_retry_after(env.routing.failover.breaker.open_base);
            return crate::proxy::reject(ex, started, &env.recorder, e);
        }
    }
    let Planned::Steps { steps, cut_off, local_first } = planned else {
        return crate::proxy::reject(ex, started, &env.recorder, ApiError::new(ErrorKind::Internal, "no plan"));
    };
    let max_attempts = env.routing.failover.max_attempts;
    let walk = Walk {
        env,
        inbound,
        template: ex,
        started,
        attempts: 0,
        cloud_attempts: 0,
        max_attempts,
        failed_before: false,
        cut_off,
        local_first,
    };
    walk.go(steps, mode).await
}

impl Walk {
    async fn go(mut self, steps: Vec<Step>, mode: Mode) -> HttpResponse {
        let mut last: Option<Failure> = None;
        let first_cloud = steps.iter().position(|s| matches!(s, Step::Cloud(_)));
        for (i, step) in steps.iter().enumerate() {
            if self.attempts >= self.max_attempts {
                break;
            }
            match step {
                Step::Cloud(up) => {
                    if !up.health.routable() && mode != Mode::ForceCloud && (self.failed_before || i > 0) {
                        continue; // opened since the plan was made
                    }
                    match self.cloud(up, Some(i) == first_cloud, &steps[i + 1..]).await {
                        Ok(resp) => return resp,
                        Err(f) => last = Some(f),
                    }
                }
                Step::Local(name) => match self.local(name).await {
                    Ok(resp) => return resp,
                    Err(f) => last = Some(f),
                },
            }
        }
        self.fail(last)
    }

    /// A copy for a stream that outlives the handler.
    pub fn fork(&self) -> Walk {
        Walk {
            env: self.env.clone(),
            inbound: self.inbound.clone(),
            template: self.template.clone(),
            started: self.started,
            attempts: self.attempts,
            cloud_attempts: self.cloud_attempts,
            max_attempts: self.max_attempts,
            failed_before: self.failed_before,
            cut_off: self.cut_off,
            local_first: self.local_first,
        }
    }

    /// The rescue label of an answer from the current step.
    pub fn rescue(&self) -> Option<&'static str> {
        if self.local_first {
            Some("local-policy")
        } else if self.failed_before {
            Some("fallback")
        } else if self.cut_off {
            Some("cut-off")
        } else {
            None
        }
    }

    /// Record a failed attempt: never a completion, linked to the request by its id.
    pub fn record_attempt(&self, tag: &Arc<str>, status: u16, error: &'static str, body: Option<Bytes>) {
        let mut a = self.template.clone();
        a.served_by = tag.clone();
        a.status = status;
        a.error = Some(error);
        a.ending = Ending::UpstreamBroke;
        a.attempt.attempt = self.attempts.saturating_sub(1);
        a.attempt.final_attempt = false;
        if let Some(b) = body {
            a.response = Capture::from_bytes(b, self.env.recorder.body_cap());
        }
        a.total = self.started.elapsed();
        self.env.recorder.record(a);
    }

    /// The exchange for the answer the client gets.
    pub fn final_exchange(&self, tag: &Arc<str>, status: u16) -> Exchange {
        let mut ex = self.template.clone();
        ex.served_by = tag.clone();
        ex.status = status;
        ex.attempt.attempt = self.attempts.saturating_sub(1);
        ex.attempt.final_attempt = true;
        ex.attempt.rescue = self.rescue();
        ex
    }

    async fn cloud(&mut self, up: &Arc<Upstream>, first: bool, rest: &[Step]) -> Result<HttpResponse, Failure> {
        let inb = self.inbound.clone();
        let swap = match self.auth_for(up, first) {
            Ok(s) => s,
            // The first step's answer to a wrong credential is the client's to see.
            Err(e) if first && !self.failed_before && !self.cut_off => return Ok(self.pass_back(Failure::Genset(e))),
            Err(e) => return Err(Failure::Genset(e)),
        };
        let (body, api_model) = self.body_for(up).map_err(Failure::Genset)?;
        let mut context_overflow_used = false;
        let mut body = body;
        let mut tries_here = 0u32;
        loop {
            if self.attempts >= self.max_attempts {
                return Err(Failure::Genset(exhausted(self.max_attempts)));
            }
            self.attempts += 1;
            self.cloud_attempts += 1;
            self.env.recorder.metrics().upstream_attempts.with_label_values(&[&up.config.name]).inc();
            let span = tracing::debug_span!("upstream.attempt", otel.kind = "client", upstream = %up.config.name, attempt = self.attempts);
            let sent = {
                use tracing::Instrument;
                send(up, build_request(up, &inb, body.clone(), swap)).instrument(span).await
            };
            let resp = sent.map_err(|e| transport_outcome(up, &e));
            let resp = match resp {
                Ok(r) => r,
                Err(outcome) => {
                    tracing::warn!(upstream = %up.config.name, cause = %outcome.cause(), "upstream attempt failed before answering");
                    self.env.controller.report(&up.health, &outcome, Source::Request, None);
                    self.record_attempt(&up.tag, 0, "upstream_unavailable", None);
                    self.failed_before = true;
                    return Err(Failure::Genset(
                        ApiError::new(
                            if outcome.cause().contains("in time") { ErrorKind::Timeout } else { ErrorKind::UpstreamUnavailable },
                            {
                                let cause = outcome.cause();
                                let what = if cause.starts_with("connection failed") {
                                    "is unreachable"
                                } else if cause.contains("in time") {
                                    "did not answer in time"
                                } else {
                                    "failed before answering"
                                };
                                format!("upstream {:?} {what}: {cause}", up.config.name)
                            },
                        )
                        .with_code("upstream_unavailable")
                        .with_source(ErrorSource::Upstream),
                    ));
                }
            };
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                let sse = resp.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
                if sse {
                    self.env.controller.report(&up.health, &Outcome::Success, Source::Request, None);
                    self.note_accepted(up);
                    if !super::plan::is_chat(inb.ep.path) {
                        // Responses API and legacy completions streams: passed through as
                        // they come (the tee aborts the connection if the terminal event
                        // never arrives); only chat streams are decoded and continued.
                        return Ok(self.passthrough_stream(up, status, resp));
                    }
                    return Ok(super::stream::relay(self, up.clone(), resp, rest.to_vec(), api_model).await);
                }
                match read_body(resp, up.config.idle_timeout).await {
                    Ok((headers, chunks, len)) => {
                        if let Err(why) = validate_json(&headers, &chunks) {
                            let o = Outcome::Transient { cause: format!("malformed response: {why}"), retry_after: None };
                            self.env.controller.report(&up.health, &o, Source::Request, None);
                            self.record_attempt(&up.tag, status, "malformed_response", None);
                            self.failed_before = true;
                            return Err(Failure::Genset(
                                ApiError::new(
                                    ErrorKind::UpstreamUnavailable,
                                    format!("upstream {:?} sent a malformed response", up.config.name),
                                )
                                .with_source(ErrorSource::Upstream),
                            ));
                        }
                        self.env.controller.report(&up.health, &Outcome::Success, Source::Request, None);
                        self.note_accepted(up);
                        return Ok(self.answer(up, status, headers, chunks, len));
                    }
                    Err(cause) => {
                        let o = Outcome::Transient { cause: cause.clone(), retry_after: None };
                        self.env.controller.report(&up.health, &o, Source::Request, None);
                        self.record_attempt(&up.tag, status, "upstream_stream_error", None);
                        self.failed_before = true;
                        return Err(Failure::Genset(
                            ApiError::new(ErrorKind::UpstreamUnavailable, format!("upstream {:?}: {cause}", up.config.name))
                                .with_source(ErrorSource::Upstream),
                        ));
                    }
                }
            }
            // An error answer: classify it.
            let retry_after = crate::control::outcome::retry_after(resp.headers());
            let (headers, err_body) = resp.into_parts();
            let err_body =
                tokio::time::timeout(up.config.idle_timeout, err_body.bytes()).await.ok().and_then(Result::ok).unwrap_or_default();
            let outcome = crate::control::outcome::classify_status(status, retry_after, &err_body, swap);
            let key = self.inbound.key_hash.as_deref().map(|h| (h, self.env.keys.was_accepted(h, now_ms() - ACCEPTED_KEY_TTL_MS)));
            self.env.controller.report(&up.health, &outcome, Source::Request, if swap { None } else { key });
            let failure = Failure::Upstream { status, headers, body: err_body.clone(), api: up.config.api, tag: up.tag.clone() };
            match outcome {
                Outcome::Transient { retry_after, .. } => {
                    self.record_attempt(&up.tag, status, "upstream_transient", Some(err_body));
                    self.failed_before = true;
                    tries_here += 1;
                    let backoff = self.env.routing.failover.retry_backoff * 2u32.pow(tries_here - 1);
                    let jitter = rand::rng().random_range(0.5..1.0);
                    let wait = retry_after.unwrap_or(backoff.mul_f64(jitter));
                    let more_steps = rest.iter().any(|s| match s {
                        Step::Cloud(u) => u.health.routable(),
                        Step::Local(_) => true,
                    });
                    // Retry here only when it is cheap and there is nowhere better to go.
                    if wait <= self.env.routing.failover.max_retry_wait
                        && self.attempts < self.max_attempts
                        && (!more_steps || tries_here < 2)
                        && up.health.routable()
                    {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(failure);
                }
                Outcome::CutOff(_) => {
                    self.record_attempt(&up.tag, status, "upstream_cut_off", Some(err_body));
                    self.failed_before = true;
                    return Err(failure);
                }
                Outcome::NotCounted(Refusal::ContextLength) if !context_overflow_used => {
                    if let Some(bigger) = self.policy_overflow_model() {
                        context_overflow_used = true;
                        self.record_attempt(&up.tag, status, "context_length", Some(err_body));
                        tracing::info!(upstream = %up.config.name, model = %bigger, "context length exceeded: retrying on the larger-context model");
                        match with_model(&body, &bigger) {
                            Some(b) => {
                                body = b;
                                continue;
                            }
                            None => return Ok(self.pass_back(failure)),
                        }
                    }
                    return Ok(self.pass_back(failure));
                }
                _ => return Ok(self.pass_back(failure)),
            }
        }
    }

    fn policy_overflow_model(&self) -> Option<String> {
        self.inbound.use_case.and_then(|u| self.env.routing.policies.get(u)).and_then(|p| p.on_context_overflow.clone())
    }

    fn note_accepted(&self, up: &Upstream) {
        if up.config.api_key.is_none()
            && let Some(h) = &self.inbound.key_hash
        {
            self.env.keys.note_accepted(h, now_ms());
        }
    }

    /// Whether to swap in the upstream's own credential (true) or forward the client's (false).
    pub(crate) fn auth_for(&self, up: &Upstream, first: bool) -> Result<bool, ApiError> {
        let cross = up.config.api != self.inbound.flavor;
        let own = up.config.api_key.is_some();
        match (&self.inbound.virtual_key, own) {
            (Some(_), true) => Ok(true),
            (Some(_), false) => Err(ApiError::new(
                ErrorKind::Authentication,
                format!("upstream {:?} passes client keys through and holds no credential for virtual keys", up.config.name),
            )
            .with_code("invalid_api_key")),
            (None, false) if cross => Err(ApiError::new(
                ErrorKind::UpstreamUnavailable,
                format!("upstream {:?} speaks the other API and holds no credential of its own", up.config.name),
            )),
            (None, false) => Ok(false),
            (None, true) => {
                let accepted =
                    self.inbound.key_hash.as_deref().is_some_and(|h| self.env.keys.was_accepted(h, now_ms() - ACCEPTED_KEY_TTL_MS));
                if !first && accepted {
                    Ok(true)
                } else {
                    Err(ApiError::new(
                        ErrorKind::Authentication,
                        format!(
                            "upstream {:?} uses genset's own credential: authenticate with a genset virtual key (gk-...)",
                            up.config.name
                        ),
                    )
                    .with_code("invalid_api_key"))
                }
            }
        }
    }

    /// The body for this upstream and the model asked there: unchanged (the same bytes) when
    /// nothing maps, the model swapped when `model_map` says so, translated for the other API.
    pub(crate) fn body_for(&self, up: &Upstream) -> Result<(Bytes, Option<String>), ApiError> {
        let inb = &self.inbound;
        if !inb.ep.has_body {
            return Ok((inb.body.clone(), None));
        }
        let client_model = inb.model.as_deref().unwrap_or("");
        let mapped = up.config.map_model(client_model);
        if up.config.api == inb.flavor {
            return match mapped {
                Some(m) if m != client_model => {
                    let b = with_model(&inb.body, m).ok_or_else(|| ApiError::invalid("the request body is not a JSON object"))?;
                    Ok((b, Some(m.to_string())))
                }
                _ => Ok((inb.body.clone(), inb.model.clone())),
            };
        }
        let target = mapped.ok_or_else(|| {
            ApiError::new(
                ErrorKind::UpstreamUnavailable,
                format!("upstream {:?} has no model_map entry for model {client_model:?}", up.config.name),
            )
        })?;
        let value: serde_json::Value = serde_json::from_slice(&inb.body).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
        let opts = genset_translate::RequestOptions { default_max_tokens: u64::from(up.config.default_max_tokens), ..Default::default() };
        let out = genset_translate::translate_request(&value, api(inb.flavor), api(up.config.api), target, &opts)
            .map_err(|e| ApiError::new(ErrorKind::UpstreamUnavailable, format!("cannot fall back to {:?}: {e}", up.config.name)))?;
        let bytes = serde_json::to_vec(&out).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
        Ok((Bytes::from(bytes), Some(target.to_string())))
    }

    /// A whole (non-streamed) 2xx answer, translated to the client's API when needed.
    fn answer(&self, up: &Upstream, status: u16, headers: http::HeaderMap, chunks: Vec<Bytes>, len: usize) -> HttpResponse {
        let mut ex = self.final_exchange(&up.tag, status);
        let mut b = HttpResponseBuilder::new(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
        b.insert_header(("x-genset-served-by", &*up.tag));
        b.insert_header(("x-genset-use-case", &*ex.use_case));
        if up.config.api != self.inbound.flavor {
            let whole: Vec<u8> = chunks.concat();
            let translated = serde_json::from_slice::<serde_json::Value>(&whole).ok().and_then(|v| {
                // The model that actually answered, as the upstream named it.
                let answered = v.get("model").and_then(|m| m.as_str()).unwrap_or_default().to_string();
                let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                genset_translate::translate_response(&v, api(up.config.api), api(self.inbound.flavor), &answered, created).ok()
            });
            let body = match translated {
                Some(v) => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
                None => {
                    let e = ApiError::new(
                        ErrorKind::UpstreamUnavailable,
                        format!("the answer of {:?} could not be translated", up.config.name),
                    )
                    .with_source(ErrorSource::Upstream);
                    return crate::proxy::reject(ex, self.started, &self.env.recorder, e);
                }
            };
            b.content_type("application/json");
            let body_len = body.len() as u64;
            let s = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
            return b.body(actix_web::body::SizedStream::new(body_len, Tee::new(Box::pin(s), ex, self.env.recorder.clone(), self.started)));
        }
        for (name, value) in &headers {
            let n = name.as_str();
            if is_hop_by_hop(n) || n == "content-length" {
                continue;
            }
            b.append_header((n, value.as_bytes()));
        }
        ex.sse = false;
        let s = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        b.body(actix_web::body::SizedStream::new(len as u64, Tee::new(Box::pin(s), ex, self.env.recorder.clone(), self.started)))
    }

    /// A stream of a non-chat endpoint, forwarded chunk by chunk through the tee.
    fn passthrough_stream(&self, up: &Upstream, status: u16, resp: Response) -> HttpResponse {
        let mut ex = self.final_exchange(&up.tag, status);
        ex.sse = true;
        let mut b = HttpResponseBuilder::new(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
        for (name, value) in resp.headers() {
            let n = name.as_str();
            if is_hop_by_hop(n) || n == "content-length" {
                continue;
            }
            b.append_header((n, value.as_bytes()));
        }
        b.insert_header(("x-genset-served-by", &*up.tag));
        b.insert_header(("x-genset-use-case", &*ex.use_case));
        let stream = resp.bytes_stream().map(|r| r.map_err(|e| std::io::Error::other(crate::util::error_chain(&e))));
        b.streaming(Tee::new(Box::pin(stream), ex, self.env.recorder.clone(), self.started))
    }

    /// An upstream's error answer goes back to the client unchanged (translated to the
    /// client's API format when it came from the other API).
    fn pass_back(&self, f: Failure) -> HttpResponse {
        match f {
            Failure::Genset(e) => {
                let ex = self.final_exchange(&self.env.routing.genset_tag, e.status().as_u16());
                let use_case = ex.use_case.clone();
                let mut r = crate::proxy::reject(ex, self.started, &self.env.recorder, e);
                let h = r.headers_mut();
                h.insert(HeaderName::from_static("x-genset-served-by"), HeaderValue::from_static("genset"));
                if let Ok(v) = HeaderValue::from_str(&use_case) {
                    h.insert(HeaderName::from_static("x-genset-use-case"), v);
                }
                r
            }
            Failure::Upstream { status, headers, body, api: from, tag } => {
                let ex = self.final_exchange(&tag, status);
                let mut b = HttpResponseBuilder::new(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY));
                b.insert_header(("x-genset-served-by", &*tag));
                b.insert_header(("x-genset-use-case", &*ex.use_case));
                let body = if from != self.inbound.flavor {
                    b.content_type("application/json");
                    if let Some(ra) = headers.get(http::header::RETRY_AFTER) {
                        b.insert_header(("retry-after", ra.as_bytes()));
                    }
                    Bytes::from(genset_translate::translate_error(status, &body, api(from), api(self.inbound.flavor)).to_string())
                } else {
                    for (name, value) in &headers {
                        let n = name.as_str();
                        if is_hop_by_hop(n) || n == "content-length" {
                            continue;
                        }
                        b.append_header((n, value.as_bytes()));
                    }
                    body
                };
                let len = body.len() as u64;
                let s = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
                b.body(actix_web::body::SizedStream::new(len, Tee::new(Box::pin(s), ex, self.env.recorder.clone(), self.started)))
            }
        }
    }

    fn fail(self, last: Option<Failure>) -> HttpResponse {
        match last {
            Some(f) => self.pass_back(f),
            None => {
                let e = ApiError::new(ErrorKind::UpstreamUnavailable, "no step of the fallback chain could serve this request")
                    .with_code("no_route")
                    .with_retry_after(Duration::from_secs(1));
                self.pass_back(Failure::Genset(e))
            }
        }
    }

    /// May this client use local models? Virtual keys may; passthrough keys only when the
    /// cloud accepted them recently (an outage does not open the GPU to anyone on the network).
    pub fn local_allowed(&self) -> Result<String, ApiError> {
        if let Some(v) = &self.inbound.virtual_key {
            return Ok(v.id.to_string());
        }
        match &self.inbound.key_hash {
            Some(h) if self.env.keys.was_accepted(h, now_ms() - ACCEPTED_KEY_TTL_MS) => Ok(h.clone()),
            Some(_) => Err(ApiError::new(
                ErrorKind::Authentication,
                "local models serve only keys the cloud accepted recently, or genset virtual keys; this key is unknown to genset",
            )
            .with_code("invalid_api_key")),
            None => Err(ApiError::new(ErrorKind::Authentication, "an API key is required").with_code("missing_api_key")),
        }
    }

    /// Failover rate limits: per client key and per use case, protecting local capacity.
    pub fn local_limits(&self, key_id: &str) -> Result<(), ApiError> {
        let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
        let limited = |wait: Duration, what: &str| {
            ApiError::new(ErrorKind::RateLimited, format!("{what} is over its local serving limit; retry after {}s", wait.as_secs().max(1)))
                .with_code("rate_limit_exceeded")
                .with_retry_after(wait.max(Duration::from_secs(1)))
        };
        if let Some(l) = &self.env.routing.local_limit_per_key
            && let Err(n) = l.check_key(&key_id.to_string())
        {
            return Err(limited(n.wait_time_from(now), "this client key"));
        }
        if let Some(p) = self.inbound.use_case.and_then(|u| self.env.routing.policies.get(u))
            && let Some(l) = &p.local_limit
            && let Err(n) = l.check()
        {
            return Err(limited(n.wait_time_from(now), "this use case"));
        }
        Ok(())
    }

    async fn local(&mut self, name: &Arc<str>) -> Result<HttpResponse, Failure> {
        let Some(local) = self.env.local.clone() else {
            return Err(Failure::Genset(
                ApiError::new(ErrorKind::UpstreamUnavailable, "no local models are configured").with_code("no_local_model"),
            ));
        };
        let Some(engine) = local.registry.get(name) else {
            return Err(Failure::Genset(ApiError::new(ErrorKind::UpstreamUnavailable, format!("local model {name:?} is not loaded"))));
        };
        let key_id = self.local_allowed().map_err(Failure::Genset)?;
        if let Err(e) = self.local_limits(&key_id) {
            // The limit is the protection itself: the client gets it, not another step.
            return Ok(self.pass_back(Failure::Genset(e)));
        }
        let Some(endpoint) = LocalEndpoint::from_path(self.inbound.ep.path) else {
            return Err(Failure::Genset(ApiError::invalid(format!("{} is not served by local models", self.inbound.ep.path))));
        };
        let mut value: serde_json::Value = match serde_json::from_slice(&self.inbound.body) {
            Ok(v) => v,
            Err(e) => return Err(Failure::Genset(ApiError::invalid(format!("the request body is not valid JSON: {e}")))),
        };
        if let Some(o) = value.as_object_mut() {
            o.insert("model".into(), serde_json::Value::String(name.to_string()));
        }
        self.attempts += 1;
        let tag: Arc<str> = Arc::from(crate::local::served_by(engine.as_ref()));
        match crate::local::serve(engine, endpoint, &value, Priority::Live).await {
            Ok(resp) => {
                let mut ex = self.final_exchange(&tag, resp.status);
                ex.sse = resp.content_type.starts_with("text/event-stream");
                let mut b = HttpResponseBuilder::new(StatusCode::from_u16(resp.status).unwrap_or(StatusCode::OK));
                b.content_type(resp.content_type);
                b.insert_header(("x-genset-served-by", &*tag));
                b.insert_header(("x-genset-use-case", &*ex.use_case));
                Ok(match resp.body {
                    LocalBody::Full(bytes) => {
                        ex.ending = Ending::Delivered;
                        let len = bytes.len() as u64;
                        let s = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
                        b.body(actix_web::body::SizedStream::new(len, Tee::new(Box::pin(s), ex, self.env.recorder.clone(), self.started)))
                    }
                    LocalBody::Stream(s) => b.streaming(Tee::new(s, ex, self.env.recorder.clone(), self.started)),
                })
            }
            Err(e) => {
                self.record_attempt(&tag, e.status().as_u16(), e.kind.label(), None);
                self.failed_before = true;
                Err(Failure::Genset(e))
            }
        }
    }
}

pub fn api(f: Flavor) -> Api {
    match f {
        Flavor::OpenAi => Api::OpenAi,
        Flavor::Anthropic => Api::Anthropic,
    }
}

fn exhausted(n: u32) -> ApiError {
    ApiError::new(ErrorKind::UpstreamUnavailable, format!("gave up after {n} upstream attempts (failover.max_attempts)"))
        .with_code("upstream_unavailable")
}

/// The body with its `model` field replaced.
pub fn with_model(body: &Bytes, model: &str) -> Option<Bytes> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.as_object_mut()?.insert("model".into(), serde_json::Value::String(model.to_string()));
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

/// The request to an upstream: the client's headers (less hop-by-hop and genset's own) for
/// the same API; a fresh set for the other API; the credential swapped in when `swap`.
/// `None` when the upstream URL for this path and query cannot be formed.
pub fn build_request(up: &Upstream, inb: &Inbound, body: Bytes, swap: bool) -> Option<http::Request<client::Body>> {
    use http::header::{HeaderName, HeaderValue};
    let path = if up.config.api == inb.flavor {
        inb.ep.path
    } else {
        match up.config.api {
            Flavor::OpenAi => "/v1/chat/completions",
            Flavor::Anthropic => "/v1/messages",
        }
    };
    let query = if up.config.api == inb.flavor { inb.query.as_deref() } else { None };
    let url = up.url(path, query);
    let method = if inb.ep.has_body { http::Method::POST } else { http::Method::GET };
    let mut headers = http::HeaderMap::with_capacity(inb.headers.len() + 2);
    if up.config.api == inb.flavor {
        let connection_listed: Vec<String> = inb
            .headers
            .get_all(actix_web::http::header::CONNECTION)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
            .collect();
        for (name, value) in inb.headers.iter() {
            let n = name.as_str();
            if is_hop_by_hop(n)
                || matches!(n, "host" | "content-length" | "accept-encoding")
                || n.starts_with("x-genset-")
                || connection_listed.iter().any(|c| c == n)
                || (swap && matches!(n, "authorization" | "x-api-key"))
            {
                continue;
            }
            if let (Ok(hn), Ok(hv)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_bytes(value.as_bytes())) {
                headers.append(hn, hv);
            }
        }
    } else {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if inb.stream {
            headers.insert(http::header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        }
    }
    if swap && let Some(key) = &up.config.api_key {
        let (name, value) = match up.config.api {
            Flavor::OpenAi => ("authorization", format!("Bearer {}", key.expose())),
            Flavor::Anthropic => ("x-api-key", key.expose().to_string()),
        };
        if let Ok(mut hv) = HeaderValue::from_str(&value) {
            hv.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), hv);
        }
    }
    if up.config.api == Flavor::Anthropic
        && !headers.contains_key("anthropic-version")
        && let Ok(hv) = HeaderValue::from_str(&up.config.anthropic_version)
    {
        headers.insert(HeaderName::from_static("anthropic-version"), hv);
    }
    let mut req = http::Request::new(client::Body::new(if inb.ep.has_body { body } else { Bytes::new() }));
    *req.method_mut() = method;
    *req.uri_mut() = url?;
    *req.headers_mut() = headers;
    Some(req)
}

/// Send a request built by [`build_request`] (`None`: its URL could not be formed) on this
/// thread's pool, waiting for the response headers at most `first_byte_timeout`.
pub async fn send(up: &Upstream, req: Option<http::Request<client::Body>>) -> Result<Response, client::Error> {
    let Some(req) = req else {
        return Err(client::Error::Request(format!(
            "upstream {:?}: the request URL could not be formed from its base_url",
            up.config.name
        )));
    };
    up.client().send(req, up.config.first_byte_timeout).await
}

/// The outcome of a request that got no response: a cut-off, named by what ran out or broke.
pub fn transport_outcome(up: &Upstream, e: &client::Error) -> Outcome {
    match e {
        client::Error::Timeout(d) => Outcome::CutOff(format!(
            "no response within {} ({})",
            if *d == up.config.first_byte_timeout { "first_byte_timeout" } else { "read_timeout" },
            humantime::format_duration(*d)
        )),
        e => crate::control::outcome::classify_transport(e.is_timeout(), e.is_connect(), e),
    }
}

/// Read a whole (non-streamed) answer, each chunk within `idle`; the chunks stay as they came.
async fn read_body(resp: Response, idle: Duration) -> Result<(http::HeaderMap, Vec<Bytes>, usize), String> {
    let declared = resp.content_length();
    let (headers, mut s) = resp.into_parts();
    let mut chunks = Vec::new();
    let mut len = 0usize;
    loop {
        match tokio::time::timeout(idle, s.next()).await {
            Err(_) => return Err(format!("the response stalled for {}", humantime::format_duration(idle))),
            Ok(Some(Ok(c))) => {
                len += c.len();
                chunks.push(c);
            }
            Ok(Some(Err(e))) => return Err(format!("the response was cut: {}", crate::util::error_chain(&e))),
            Ok(None) => break,
        }
    }
    if declared.is_some_and(|d| d as usize != len) {
        return Err("the response ended before its declared length".into());
    }
    Ok((headers, chunks, len))
}

/// A JSON answer must parse: a malformed body is never passed on as valid.
fn validate_json(headers: &http::HeaderMap, chunks: &[Bytes]) -> Result<(), String> {
    let is_json = headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return Ok(());
    }
    if let [one] = chunks {
        // The usual case: one chunk, parsed in place (the reader path is several times slower).
        return serde_json::from_slice::<serde::de::IgnoredAny>(one).map(|_| ()).map_err(|e| e.to_string());
    }
    let reader = ChunkReader { chunks, i: 0, off: 0 };
    serde_json::from_reader::<_, serde::de::IgnoredAny>(reader).map(|_| ()).map_err(|e| e.to_string())
}

/// `io::Read` over a list of chunks, without joining them.
struct ChunkReader<'a> {
    chunks: &'a [Bytes],
    i: usize,
    off: usize,
}

impl std::io::Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(c) = self.chunks.get(self.i) {
            if self.off < c.len() {
                let n = buf.len().min(c.len() - self.off);
                buf[..n].copy_from_slice(&c[self.off..self.off + n]);
                self.off += n;
                return Ok(n);
            }
            self.i += 1;
            self.off = 0;
        }
        Ok(0)
    }
}
