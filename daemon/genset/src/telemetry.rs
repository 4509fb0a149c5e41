//! Logs and traces. Logs go to journald (when stderr is the journal) or stderr; traces are
//! exported with OTLP over HTTP (protobuf) when `telemetry.otlp_endpoint` is set.
//!
//! The exporter sends through genset's own reqwest/rustls stack (an `opentelemetry_http`
//! client adapter) on a small runtime of its own, so exporting never runs on — or blocks —
//! the proxy's workers, and no second TLS stack is linked.
//!
//! Spans: `proxy.request` per client request and `upstream.attempt` per attempt, at DEBUG
//! level for the log output (so they cost a disabled-callsite check when only logs are on),
//! always recorded by the OTLP layer when it is enabled.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::config::TelemetryConfig;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Set up logging (and trace export when configured). Call once, first thing.
pub fn init(t: &TelemetryConfig) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        || EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&t.log_level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = t.otlp_endpoint.as_deref().and_then(|endpoint| match tracer_provider(endpoint, t) {
        Ok(p) => {
            let tracer = p.tracer("genset");
            let _ = PROVIDER.set(p);
            let targets = tracing_subscriber::filter::Targets::new().with_target("genset", tracing::Level::DEBUG);
            Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(targets))
        }
        Err(e) => {
            eprintln!("gensetd: telemetry.otlp_endpoint: trace export disabled: {e}");
            None
        }
    });
    let registry = tracing_subscriber::registry().with(otel);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let _ = registry.with(layer.with_syslog_identifier("gensetd".into()).with_filter(filter())).try_init();
                return;
            }
            Err(e) => eprintln!("gensetd: journald unavailable ({e}); logging to stderr"),
        }
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let _ = if t.log_json {
        registry.with(fmt.json().with_filter(filter())).try_init()
    } else {
        registry.with(fmt.with_filter(filter())).try_init()
    };
}

/// Flush and stop trace export (on shutdown).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.shutdown()
    {
        tracing::warn!(error = %e, "trace export: shutdown");
    }
}

fn tracer_provider(endpoint: &str, t: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(ExportClient::new()?)
        .with_endpoint(url)
        .with_headers(t.otlp_headers.iter().map(|(k, v)| (k.clone(), v.expose().to_string())).collect::<HashMap<_, _>>())
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(t.service_name.clone()).build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(
            t.trace_sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// `opentelemetry_http::HttpClient` over genset's reqwest, run on a dedicated one-thread
/// runtime (the SDK's batch processor calls it from its own thread).
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    rt: tokio::runtime::Handle,
}

impl ExportClient {
    fn new() -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().thread_name("genset-otlp").build()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new().name("genset-otlp".into()).spawn(move || rt.block_on(std::future::pending::<()>()))?;
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).no_proxy().build()?;
        Ok(ExportClient { client, rt: handle })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut rb = self.client.request(parts.method, parts.uri.to_string()).body(body);
        for (k, v) in &parts.headers {
            rb = rb.header(k, v);
        }
        let resp = self
            .rt
            .spawn(async move {
                let resp = rb.send().await?.error_for_status()?;
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let mut out = http::Response::builder().status(resp.0).body(resp.2)?;
        *out.headers_mut() = resp.1;
        Ok(out)
    }
}
