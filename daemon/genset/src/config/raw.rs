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
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin { listen: "127.0.0.1:8081".into(), token_file: PathBuf::from("/etc/genset/admin.token") }
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
}
