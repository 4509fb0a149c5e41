//! Stage one of configuration: the TOML file as serde structs, strict about unknown keys,
//! with defaults. Nothing here is trusted yet; `super::validate` turns it into runtime config.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub recording: RawRecording,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub use_cases: Vec<RawUseCase>,
    #[serde(default)]
    pub models: Vec<crate::config::ModelConfig>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub failover: RawFailover,
    #[serde(default)]
    pub evaluation: RawEvaluation,
    /// Drills and reports (see `config::drills`).
    #[serde(default)]
    pub drills: Vec<super::drills::RawDrill>,
    #[serde(default)]
    pub drill_verdict: super::drills::RawDrillVerdict,
    #[serde(default)]
    pub reports: super::drills::RawReports,
    #[serde(default)]
    pub pricing: std::collections::BTreeMap<String, super::drills::RawPrice>,
}

/// `[evaluation]`: continuous testing of the local models on recorded traffic and canaries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvaluation {
    pub enabled: bool,
    /// Time between evaluation rounds.
    pub interval: String,
    /// Recorded exchanges replayed per use case and round.
    pub replays_per_round: usize,
    /// Readiness is computed over this rolling window.
    pub window: String,
    /// Longest one local answer may take during evaluation.
    pub timeout: String,
    /// POSTed a JSON body when a use case's readiness verdict changes.
    pub webhook: Option<String>,
    /// A local model (`[[models]]` name) whose embeddings add a cosine term to generation scores.
    pub embedding_model: Option<String>,
    /// The optional judge: a cloud model grades a sample of local answers.
    pub judge: Option<RawJudge>,
}

/// `[evaluation.judge]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJudge {
    /// An upstream with the appliance's own key.
    pub upstream: String,
    pub model: String,
    #[serde(default = "default_rubric")]
    pub rubric: String,
    /// Share of replays graded, 0..1.
    #[serde(default = "default_judge_sample")]
    pub sample: f64,
    /// Tokens the judge may spend per UTC day.
    #[serde(default = "default_judge_tokens")]
    pub daily_tokens: u64,
}

fn default_rubric() -> String {
    "Score 10 when the candidate says the same thing as the reference (same facts, same label, same fields), 0 when it is wrong or unrelated; style does not matter.".into()
}
fn default_judge_sample() -> f64 {
    0.2
}
fn default_judge_tokens() -> u64 {
    50_000
}

impl Default for RawEvaluation {
    fn default() -> Self {
        RawEvaluation {
            enabled: true,
            interval: "10m".into(),
            replays_per_round: 20,
            window: "7d".into(),
            timeout: "120s".into(),
            webhook: None,
            embedding_model: None,
            judge: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProxy {
    pub listen: String,
    pub max_body: String,
    /// Worker threads serving the proxy listener; 0 = one per CPU.
    pub workers: usize,
    /// How long a client may keep a connection idle.
    pub keep_alive: String,
    /// Time allowed for in-flight requests to finish on shutdown.
    pub shutdown_grace: String,
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            listen: "127.0.0.1:8080".into(),
            max_body: "8MiB".into(),
            workers: 0,
            keep_alive: "75s".into(),
            shutdown_grace: "30s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: String,
    pub token_file: PathBuf,
    /// PEM certificate chain; with `tls_key`, the admin listener speaks HTTPS (rustls).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The console's audit log keeps entries this long.
    pub audit_retention: String,
    /// Sign-in attempts (the login limiter's memory and the known-address list) kept this long.
    pub login_attempts_retention: String,
    /// Peers (CIDRs) whose forwarding header names the client (a reverse proxy in front of
    /// the console).
    pub trusted_proxies: Vec<String>,
    /// Which header a trusted proxy writes: `x-forwarded-for` or `forwarded` (RFC 7239).
    pub forwarded_header: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:8081".into(),
            token_file: PathBuf::from("/etc/genset/admin.token"),
            tls_cert: None,
            tls_key: None,
            audit_retention: "365d".into(),
            login_attempts_retention: "90d".into(),
            trusted_proxies: Vec::new(),
            forwarded_header: "x-forwarded-for".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub url: String,
    pub max_connections: u32,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore { url: "sqlite:///var/lib/genset/genset.db".into(), max_connections: 8 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRecording {
    pub redact: String,
    pub retention: String,
    /// Exchanges waiting for the writer; beyond this, records are dropped and counted.
    pub queue: usize,
    /// Most exchanges written in one transaction.
    pub batch: usize,
    /// Longest a recorded exchange waits before its batch is written.
    pub flush_interval: String,
    /// Most bytes of a request or response body kept; longer bodies are stored truncated.
    pub max_body: String,
}

impl Default for RawRecording {
    fn default() -> Self {
        RawRecording {
            redact: "pii".into(),
            retention: "30d".into(),
            queue: 16384,
            batch: 1024,
            flush_interval: "100ms".into(),
            max_body: "1MiB".into(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouting {
    /// Upstream for OpenAI-style traffic no use case routes; default: the first `api = "openai"` upstream.
    pub openai: Option<String>,
    /// Upstream for Anthropic-style traffic no use case routes; default: the first `api = "anthropic"` upstream.
    pub anthropic: Option<String>,
    /// Fallback chain for traffic no use case claims: upstream names and `local:<model>`.
    pub default_chain: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    pub api: String,
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    /// Name of a systemd credential (`LoadCredential=`) holding the key, read from `$CREDENTIALS_DIRECTORY`.
    pub api_key_credential: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// Longest silence allowed while reading a response (before the first byte and between chunks).
    #[serde(default = "default_read_timeout")]
    pub read_timeout: String,
    /// Anthropic `anthropic-version` sent when the client sent none.
    pub anthropic_version: Option<String>,
    /// Which model to ask here for a model the client named: `{ "gpt-4o" = "claude-sonnet-4-5", "*" = "claude-haiku-4-5" }`.
    #[serde(default)]
    pub model_map: std::collections::BTreeMap<String, String>,
    /// Whether this upstream continues a trailing assistant message (prefill). Default: true
    /// for Anthropic, false for OpenAI.
    pub prefill: Option<bool>,
    /// Longest wait for the response headers and, when streaming, the first event.
    #[serde(default = "default_first_byte_timeout")]
    pub first_byte_timeout: String,
    /// Longest silence between two events of a stream.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    /// The active health probe: a GET that costs no tokens.
    #[serde(default = "default_probe_path")]
    pub probe_path: String,
    /// `max_tokens` sent to an Anthropic upstream for a translated request that set none.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
}

fn default_first_byte_timeout() -> String {
    "30s".into()
}
fn default_idle_timeout() -> String {
    "60s".into()
}
fn default_probe_path() -> String {
    "/v1/models".into()
}
fn default_max_tokens() -> u32 {
    4096
}

fn default_connect_timeout() -> String {
    "5s".into()
}
fn default_read_timeout() -> String {
    "120s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUseCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "match", default)]
    pub match_: Option<RawMatchList>,
    /// The upstream this use case's cloud traffic goes to (default: the routing default for its API).
    pub upstream: Option<String>,
    /// Where its requests go, in order: upstream names and `local:<model>`.
    pub chain: Option<Vec<String>>,
    /// When the cloud is cut off: serve-local | reject | queue.
    pub on_cutoff: Option<String>,
    /// In normal times: cloud-first | local-first | local-only.
    pub routing: Option<String>,
    /// Whether the local model may serve this use case (until measured readiness decides).
    pub local_ready: Option<bool>,
    /// A larger-context model (on the same upstream) for requests the cloud rejects as too long.
    pub on_context_overflow: Option<String>,
    /// Local serving limit for this use case, e.g. "600/min".
    pub local_rate: Option<String>,
    /// How local answers are scored: classification | extraction | generation | custom.
    pub kind: Option<String>,
    /// Known labels (classification).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Readiness thresholds (ready_score, marginal_score, min_samples, p95_latency_ms, ...).
    pub readiness: Option<genset_eval::Thresholds>,
    /// With a `marginal` verdict: serve locally anyway ("serve") or reject ("reject", default).
    pub on_marginal: Option<String>,
    /// Replaces the system prompt when the local model answers (its local profile).
    pub local_system_prompt: Option<String>,
    /// Provisioned test cases.
    #[serde(default)]
    pub canaries: Vec<genset_eval::Canary>,
}

/// `[failover]`: how genset tells a cut-off from a blip, and how it rescues requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFailover {
    /// Most upstream attempts for one client request (all steps of the chain together).
    pub max_attempts: u32,
    /// First retry backoff (doubled per retry, with jitter).
    pub retry_backoff: String,
    /// Longest `Retry-After` honoured by waiting; longer ones move to the next step.
    pub max_retry_wait: String,
    /// Cut-off failures in a row that open the breaker at once.
    pub consecutive_cutoffs: u32,
    /// Failure share over `window` that opens the breaker, once `min_volume` outcomes are seen.
    pub failure_rate: f64,
    pub min_volume: u32,
    pub window: String,
    /// Open time after the first opening; doubles with each consecutive opening, up to `open_max`.
    pub open_base: String,
    pub open_max: String,
    /// Successful probes in half-open before the breaker closes.
    pub half_open_successes: u32,
    pub probe_interval: String,
    pub probe_interval_failing: String,
    pub probe_timeout: String,
    /// Traffic returns to a recovered upstream after its breaker stayed closed this long.
    pub recovery_hold: String,
    /// Shortest time between two flips of an upstream's mode (cloud <-> failover).
    pub min_dwell: String,
    /// Distinct, previously accepted client keys rejected (401/403) within `window` that count as a cut-off.
    pub distinct_key_rejections: u32,
    /// `on_cutoff = "queue"`: longest wait for the cloud.
    pub queue_timeout: String,
    /// Local serving limit per client key while failing over, e.g. "120/min".
    pub local_rate_per_key: Option<String>,
}

impl Default for RawFailover {
    fn default() -> Self {
        RawFailover {
            max_attempts: 3,
            retry_backoff: "200ms".into(),
            max_retry_wait: "2s".into(),
            consecutive_cutoffs: 3,
            failure_rate: 0.5,
            min_volume: 10,
            window: "30s".into(),
            open_base: "5s".into(),
            open_max: "5m".into(),
            half_open_successes: 2,
            probe_interval: "30s".into(),
            probe_interval_failing: "1s".into(),
            probe_timeout: "5s".into(),
            recovery_hold: "30s".into(),
            min_dwell: "60s".into(),
            distinct_key_rejections: 2,
            queue_timeout: "30s".into(),
            local_rate_per_key: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMatchList {
    One(RawMatch),
    Any(Vec<RawMatch>),
}

/// One rule; every field given must match (AND). A list of rules matches when any does (OR).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub header: Option<String>,
    pub value: Option<String>,
    /// The request's `model`; `*` matches any run of characters.
    pub model: Option<String>,
    /// The request path, e.g. "/v1/embeddings".
    pub path: Option<String>,
    /// A regular expression searched in the system prompt.
    pub system_prompt: Option<String>,
    /// Hex sha256 of the client's API key (never the key itself).
    pub api_key_sha256: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    /// "text" or "json" log lines on stderr.
    pub log_format: Option<String>,
    /// Log filter in `RUST_LOG` syntax; `RUST_LOG` wins when set.
    pub log_level: Option<String>,
    /// OTLP/HTTP collector base URL (e.g. "http://127.0.0.1:4318"): traces are exported there.
    pub otlp_endpoint: Option<String>,
    /// Extra headers for the collector (e.g. an authorization header); never logged.
    pub otlp_headers: std::collections::BTreeMap<String, String>,
    pub service_name: Option<String>,
    /// Share of requests traced (parent-based).
    pub trace_sample_ratio: Option<f64>,
}
