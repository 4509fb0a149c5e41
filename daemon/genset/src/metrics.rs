//! The one registry of metric names, each described once. Labels are few and bounded:
//! API, use case (bounded by configuration), served-by (bounded by upstreams and models),
//! status class, error label (from `ErrorKind::label` and the recorder's fixed set).

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::api::error::Flavor;
use crate::record::Exchange;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub ttfb: HistogramVec,
    pub recorder_dropped: IntCounter,
    pub recorder_written: IntCounter,
    pub recorder_write_errors: IntCounter,
    pub recorder_queue_depth: IntGauge,
    pub recorder_batch_seconds: prometheus::Histogram,
    pub retention_deleted: IntCounter,
    pub upstream_attempts: IntCounterVec,
    pub failed_attempts: IntCounterVec,
    pub rescued: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("genset".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "API requests handled, by API, use case, who served them and status class"),
            &["api", "use_case", "served_by", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Time from request to the end of the response")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["api", "served_by"],
        )?;
        let ttfb = HistogramVec::new(
            HistogramOpts::new("time_to_first_byte_seconds", "Time from request to the first response body byte")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["api", "served_by"],
        )?;
        let recorder_dropped = IntCounter::new("recorder_dropped_total", "Exchanges not recorded because the recorder queue was full")?;
        let recorder_written = IntCounter::new("recorder_written_total", "Exchanges written to the store")?;
        let recorder_write_errors =
            IntCounter::new("recorder_write_errors_total", "Batches the store refused (retried, then dropped and counted here)")?;
        let recorder_queue_depth = IntGauge::new("recorder_queue_depth", "Exchanges waiting for the batch writer")?;
        let recorder_batch_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new("recorder_batch_seconds", "Time to write one batch of exchanges").buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let retention_deleted = IntCounter::new("retention_deleted_total", "Exchanges deleted by the retention task")?;
        let upstream_attempts = IntCounterVec::new(
            Opts::new("upstream_attempts_total", "Requests sent to a cloud upstream, retries and fallbacks included"),
            &["upstream"],
        )?;
        let failed_attempts = IntCounterVec::new(
            Opts::new("failed_attempts_total", "Attempts that failed and were followed by another step (never counted as requests)"),
            &["served_by", "error"],
        )?;
        let rescued = IntCounterVec::new(
            Opts::new("rescued_total", "Client requests answered by a later step: fallback, continuation, cut-off, local-policy"),
            &["rescue", "served_by"],
        )?;
        registry.register(Box::new(upstream_attempts.clone()))?;
        registry.register(Box::new(failed_attempts.clone()))?;
        registry.register(Box::new(rescued.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(ttfb.clone()))?;
        registry.register(Box::new(recorder_dropped.clone()))?;
        registry.register(Box::new(recorder_written.clone()))?;
        registry.register(Box::new(recorder_write_errors.clone()))?;
        registry.register(Box::new(recorder_queue_depth.clone()))?;
        registry.register(Box::new(recorder_batch_seconds.clone()))?;
        registry.register(Box::new(retention_deleted.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            ttfb,
            recorder_dropped,
            recorder_written,
            recorder_write_errors,
            recorder_queue_depth,
            recorder_batch_seconds,
            retention_deleted,
            upstream_attempts,
            failed_attempts,
            rescued,
        })
    }

    pub fn observe_exchange(&self, ex: &Exchange) {
        if !ex.attempt.final_attempt {
            self.failed_attempts.with_label_values(&[&*ex.served_by, ex.error.unwrap_or("error")]).inc();
            return;
        }
        if let Some(r) = ex.attempt.rescue {
            self.rescued.with_label_values(&[r, &*ex.served_by]).inc();
        }
        let api = api_label(ex.api);
        let status = match ex.status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        };
        self.requests.with_label_values(&[api, &ex.use_case, &ex.served_by, status]).inc();
        self.request_duration.with_label_values(&[api, &ex.served_by]).observe(ex.total.as_secs_f64());
        if let Some(t) = ex.ttfb {
            self.ttfb.with_label_values(&[api, &ex.served_by]).observe(t.as_secs_f64());
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

pub fn api_label(f: Flavor) -> &'static str {
    match f {
        Flavor::OpenAi => "openai",
        Flavor::Anthropic => "anthropic",
    }
}
