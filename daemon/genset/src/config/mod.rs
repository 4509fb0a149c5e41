//! Configuration: stage one (`raw`) parses the TOML strictly; stage two (`validate`) checks
//! every value and produces the typed runtime [`Config`]. Every error names its key path.

pub mod cidr;
pub mod drills;
pub mod failover;
pub mod raw;
mod secret;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

pub use cidr::Cidr;
pub use failover::{BreakerConfig, ChainStep, FailoverConfig, OnCutoff, Rate, RoutingPolicy};
pub use genset_engine::ModelConfig;
pub use secret::Secret;

use crate::api::error::Flavor;

/// A configuration error: the key path it concerns and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub recording: RecordingConfig,
    pub upstreams: Vec<Arc<UpstreamConfig>>,
    pub use_cases: Vec<UseCaseConfig>,
    pub default_openai: Option<usize>,
    pub default_anthropic: Option<usize>,
    pub models: Vec<crate::config::ModelConfig>,
    pub telemetry: TelemetryConfig,
    pub failover: FailoverConfig,
    pub evaluation: EvaluationConfig,
    /// `[routing] default_chain`: for traffic no use case claims.
    pub default_chain: Option<Vec<ChainStep>>,
    /// `[[drills]]`, `[drill_verdict]`, `[reports]` and `[pricing]`.
    pub drills: Vec<drills::DrillConfig>,
    pub drill_verdict: drills::DrillVerdictConfig,
    pub reports: drills::ReportsConfig,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub max_body: usize,
    pub workers: usize,
    pub keep_alive: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    /// Certificate chain and key (PEM): the admin listener speaks HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long the console keeps its audit log.
    pub audit_retention: Duration,
    /// How long the console keeps sign-in attempts.
    pub login_attempts_retention: Duration,
    /// Peers whose forwarding header names the client; empty: the TCP peer is the client.
    pub trusted_proxies: Vec<Cidr>,
    pub forwarded_header: ForwardedHeader,
}

/// The header a trusted reverse proxy writes the client's address into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …`
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239)
    Forwarded,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedactMode {
    /// Store bodies as they were.
    None,
    /// Replace e-mail addresses, phone, card and IBAN numbers, bearer tokens and API keys.
    Pii,
    /// Store no bodies at all, only their sha256.
    HashOnly,
}

impl RedactMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RedactMode::None => "none",
            RedactMode::Pii => "pii",
            RedactMode::HashOnly => "hash-only",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecordingConfig {
    pub redact: RedactMode,
    pub retention: Duration,
    pub queue: usize,
    pub batch: usize,
    pub flush_interval: Duration,
    pub max_body: usize,
}

#[derive(Debug)]
pub struct UpstreamConfig {
    pub name: String,
    pub api: Flavor,
    /// Without a trailing slash.
    pub base_url: String,
    /// The appliance's own credential; `None` means the client's key is passed through.
    pub api_key: Option<Secret>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub anthropic_version: String,
    /// Client model -> model asked here; keys may use `*`.
    pub model_map: Vec<(Glob, String)>,
    /// Continues a trailing assistant message (prefill).
    pub prefill: bool,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub probe_path: String,
    pub default_max_tokens: u32,
}

impl UpstreamConfig {
    /// The model to ask this upstream for, given the model the client named: an exact key of
    /// `model_map` first, then the first pattern that matches; `None` when nothing maps it.
    pub fn map_model(&self, client_model: &str) -> Option<&str> {
        self.model_map
            .iter()
            .find(|(g, _)| g.0 == client_model)
            .or_else(|| self.model_map.iter().find(|(g, _)| g.matches(client_model)))
            .map(|(_, m)| m.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct UseCaseConfig {
    pub name: String,
    pub description: String,
    pub rules: Vec<MatchRule>,
    /// Index into `Config::upstreams`.
    pub upstream: Option<usize>,
    /// Its fallback chain; empty: the default chain.
    pub chain: Vec<ChainStep>,
    /// Neither `chain` nor `upstream` was given: the cloud part of the chain is the routing
    /// default (`[routing] default_chain`, else the API's upstream), and `chain` holds only
    /// the local model appended for serving locally.
    pub default_cloud: bool,
    pub on_cutoff: OnCutoff,
    pub routing: RoutingPolicy,
    /// The configured readiness flag (until measured readiness decides).
    pub local_ready: bool,
    pub on_context_overflow: Option<String>,
    pub local_rate: Option<Rate>,
    pub eval: UseCaseEval,
}

/// How a use case's local answers are tested and judged.
#[derive(Debug, Clone)]
pub struct UseCaseEval {
    pub kind: genset_eval::Kind,
    pub labels: Vec<String>,
    pub thresholds: genset_eval::Thresholds,
    /// Serve locally on a `marginal` verdict.
    pub serve_marginal: bool,
    pub local_system_prompt: Option<String>,
    pub canaries: Vec<genset_eval::Canary>,
}

/// `[evaluation]`, validated.
#[derive(Debug, Clone)]
pub struct EvaluationConfig {
    pub enabled: bool,
    pub interval: Duration,
    pub replays_per_round: usize,
    pub window: Duration,
    pub timeout: Duration,
    pub webhook: Option<String>,
    pub embedding_model: Option<String>,
    pub judge: Option<JudgeConfig>,
}

/// `[evaluation.judge]`, validated.
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    /// An upstream name (it holds the appliance's own key).
    pub upstream: String,
    pub model: String,
    pub rubric: String,
    pub sample: f64,
    pub daily_tokens: u64,
}

#[derive(Debug, Clone, Default)]
pub struct MatchRule {
    pub header: Option<(String, String)>,
    pub model: Option<Glob>,
    pub path: Option<String>,
    pub system_prompt: Option<Regex>,
    pub api_key_sha256: Option<String>,
}

/// A `*`-wildcard pattern.
#[derive(Debug, Clone)]
pub struct Glob(String);

impl Glob {
    pub fn matches(&self, s: &str) -> bool {
        glob_match(self.0.as_bytes(), s.as_bytes())
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_match(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob_match(rest, &s[1..]),
    }
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_json: bool,
    pub log_level: String,
    pub otlp_endpoint: Option<String>,
    pub otlp_headers: Vec<(String, Secret)>,
    pub service_name: String,
    pub trace_sample_ratio: f64,
}

/// Parse a size like `8MiB`, `512KiB`, `1MB` or `4096`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("not a size: {s:?} (expected e.g. \"8MiB\")"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    Ok((n * mult) as usize)
}

fn duration(path: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s)
        .map_err(|e| ConfigError::new(path, format!("not a duration ({e}): {s:?} (expected e.g. \"30s\", \"30d\")")))
}

fn size(path: &str, s: &str) -> Result<usize, ConfigError> {
    parse_size(s).map_err(|m| ConfigError::new(path, m))
}

fn addr(path: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| ConfigError::new(path, format!("not a socket address: {s:?} (expected e.g. \"127.0.0.1:8080\")")))
}

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
        Self::from_toml(&text, path)
    }

    /// Parse and validate configuration text; `source` is used for messages and relative paths.
    pub fn from_toml(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new(source.display().to_string(), e.to_string().trim().to_string()))?;
        let raw: raw::RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let p = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().trim().to_string();
            ConfigError::new(if p == "." { source.display().to_string() } else { p }, msg)
        })?;
        validate(raw, source)
    }
}

fn validate(raw: raw::RawConfig, source: &Path) -> Result<Config, ConfigError> {
    let proxy = ProxyConfig {
        listen: addr("proxy.listen", &raw.proxy.listen)?,
        max_body: size("proxy.max_body", &raw.proxy.max_body)?,
        workers: if raw.proxy.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            raw.proxy.workers
        },
        keep_alive: duration("proxy.keep_alive", &raw.proxy.keep_alive)?,
        shutdown_grace: duration("proxy.shutdown_grace", &raw.proxy.shutdown_grace)?,
    };
    if proxy.max_body == 0 {
        return Err(ConfigError::new("proxy.max_body", "must be greater than 0"));
    }
    let tls = match (raw.admin.tls_cert, raw.admin.tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError::new("admin.tls_key", "admin.tls_cert is set: give the key too")),
        (None, Some(_)) => return Err(ConfigError::new("admin.tls_cert", "admin.tls_key is set: give the certificate too")),
    };
    let mut trusted_proxies = Vec::new();
    for (i, p) in raw.admin.trusted_proxies.iter().enumerate() {
        trusted_proxies.push(p.parse::<Cidr>().map_err(|m| ConfigError::new(format!("admin.trusted_proxies[{i}]"), m))?);
    }
    let forwarded_header = match raw.admin.forwarded_header.trim().to_ascii_lowercase().as_str() {
        "x-forwarded-for" => ForwardedHeader::XForwardedFor,
        "forwarded" => ForwardedHeader::Forwarded,
        other => {
            return Err(ConfigError::new(
                "admin.forwarded_header",
                format!("unknown header {other:?}: expected \"x-forwarded-for\" or \"forwarded\""),
            ));
        }
    };
    let day = Duration::from_secs(86_400);
    let audit_retention = duration("admin.audit_retention", &raw.admin.audit_retention)?;
    if audit_retention < day {
        return Err(ConfigError::new("admin.audit_retention", "must be at least 1d"));
    }
    let login_attempts_retention = duration("admin.login_attempts_retention", &raw.admin.login_attempts_retention)?;
    if login_attempts_retention < day {
        return Err(ConfigError::new(
            "admin.login_attempts_retention",
            "must be at least 1d (the login limiter reads the last minutes of it)",
        ));
    }
    let admin = AdminConfig {
        listen: addr("admin.listen", &raw.admin.listen)?,
        token_file: raw.admin.token_file,
        tls,
        audit_retention,
        login_attempts_retention,
        trusted_proxies,
        forwarded_header,
    };
    if admin.listen == proxy.listen && proxy.listen.port() != 0 {
        return Err(ConfigError::new("admin.listen", "must differ from proxy.listen"));
    }

    let url = raw.store.url.trim().to_string();
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::new("store.url", format!("unsupported store {url:?}: expected sqlite:///path or postgres://...")));
    }
    if raw.store.max_connections == 0 {
        return Err(ConfigError::new("store.max_connections", "must be greater than 0"));
    }
    let store = StoreConfig { url, max_connections: raw.store.max_connections };

    let r = &raw.recording;
    let recording = RecordingConfig {
        redact: match r.redact.as_str() {
            "none" => RedactMode::None,
            "pii" => RedactMode::Pii,
            "hash-only" => RedactMode::HashOnly,
            other => {
                return Err(ConfigError::new("recording.redact", format!("unknown mode {other:?}: expected none, pii or hash-only")));
            }
        },
        retention: duration("recording.retention", &r.retention)?,
        queue: r.queue,
        batch: r.batch,
        flush_interval: duration("recording.flush_interval", &r.flush_interval)?,
        max_body: size("recording.max_body", &r.max_body)?,
    };
    if recording.queue == 0 {
        return Err(ConfigError::new("recording.queue", "must be greater than 0"));
    }
    if recording.batch == 0 {
        return Err(ConfigError::new("recording.batch", "must be greater than 0"));
    }

    let mut upstreams = Vec::new();
    let mut names = HashSet::new();
    for (i, u) in raw.upstreams.into_iter().enumerate() {
        let p = |k: &str| format!("upstreams[{i}].{k}");
        if u.name.is_empty() || !u.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ConfigError::new(p("name"), "must be non-empty and use only letters, digits, '-' and '_'"));
        }
        if !names.insert(u.name.clone()) {
            return Err(ConfigError::new(p("name"), format!("duplicate upstream name {:?}", u.name)));
        }
        let api = match u.api.as_str() {
            "openai" => Flavor::OpenAi,
            "anthropic" => Flavor::Anthropic,
            other => return Err(ConfigError::new(p("api"), format!("unknown api {other:?}: expected openai or anthropic"))),
        };
        let base = u.base_url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| ConfigError::new(p("base_url"), format!("not an absolute URL ({e}): {:?}", u.base_url)))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(ConfigError::new(p("base_url"), "must be an http:// or https:// URL with a host"));
        }
        let given = [u.api_key_env.is_some(), u.api_key_file.is_some(), u.api_key_credential.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ConfigError::new(p("api_key_env"), "give at most one of api_key_env, api_key_file, api_key_credential"));
        }
        let api_key = if let Some(var) = &u.api_key_env {
            let v = std::env::var(var).map_err(|_| ConfigError::new(p("api_key_env"), format!("environment variable {var} is not set")))?;
            Some(Secret::new(v.trim().to_string()))
        } else if let Some(f) = &u.api_key_file {
            Some(Secret::new(read_secret_file(f).map_err(|m| ConfigError::new(p("api_key_file"), m))?))
        } else if let Some(name) = &u.api_key_credential {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                ConfigError::new(p("api_key_credential"), "$CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)")
            })?;
            let f = Path::new(&dir).join(name);
            Some(Secret::new(read_secret_file(&f).map_err(|m| ConfigError::new(p("api_key_credential"), m))?))
        } else {
            None
        };
        if let Some(k) = &api_key
            && k.expose().is_empty()
        {
            return Err(ConfigError::new(p("api_key_env"), "the key is empty"));
        }
        upstreams.push(Arc::new(UpstreamConfig {
            name: u.name,
            api,
            base_url: base,
            api_key,
            connect_timeout: duration(&p("connect_timeout"), &u.connect_timeout)?,
            read_timeout: duration(&p("read_timeout"), &u.read_timeout)?,
            anthropic_version: u.anthropic_version.unwrap_or_else(|| "2023-06-01".into()),
            model_map: u.model_map.into_iter().map(|(k, v)| (Glob(k), v)).collect(),
            prefill: u.prefill.unwrap_or(api == Flavor::Anthropic),
            first_byte_timeout: duration(&p("first_byte_timeout"), &u.first_byte_timeout)?,
            idle_timeout: duration(&p("idle_timeout"), &u.idle_timeout)?,
            probe_path: if u.probe_path.starts_with('/') {
                u.probe_path
            } else {
                return Err(ConfigError::new(p("probe_path"), "must start with /"));
            },
            default_max_tokens: u.default_max_tokens.max(1),
        }));
    }

    let find_upstream = |path: &str, name: &str, want: Option<Flavor>| -> Result<usize, ConfigError> {
        let i =
            upstreams.iter().position(|u| u.name == name).ok_or_else(|| ConfigError::new(path, format!("no upstream named {name:?}")))?;
        if let Some(f) = want
            && upstreams[i].api != f
        {
            return Err(ConfigError::new(path, format!("upstream {name:?} does not speak this API")));
        }
        Ok(i)
    };
    let default_openai = match &raw.routing.openai {
        Some(n) => Some(find_upstream("routing.openai", n, Some(Flavor::OpenAi))?),
        None => upstreams.iter().position(|u| u.api == Flavor::OpenAi),
    };
    let default_anthropic = match &raw.routing.anthropic {
        Some(n) => Some(find_upstream("routing.anthropic", n, Some(Flavor::Anthropic))?),
        None => upstreams.iter().position(|u| u.api == Flavor::Anthropic),
    };

    let mut use_cases = Vec::new();
    let mut uc_names = HashSet::new();
    for (i, uc) in raw.use_cases.into_iter().enumerate() {
        let p = |k: &str| format!("use_cases[{i}].{k}");
        if uc.name.is_empty() || !uc.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ConfigError::new(p("name"), "must be non-empty and use only letters, digits, '-' and '_'"));
        }
        if uc.name == crate::classify::UNCLASSIFIED {
            return Err(ConfigError::new(p("name"), "\"unclassified\" is reserved for traffic no use case matches"));
        }
        if !uc_names.insert(uc.name.clone()) {
            return Err(ConfigError::new(p("name"), format!("duplicate use case name {:?}", uc.name)));
        }
        let raw_rules = match uc.match_ {
            None => vec![],
            Some(raw::RawMatchList::One(m)) => vec![(p("match"), m)],
            Some(raw::RawMatchList::Any(v)) => v.into_iter().enumerate().map(|(j, m)| (format!("use_cases[{i}].match[{j}]"), m)).collect(),
        };
        let mut rules = Vec::new();
        for (mp, m) in raw_rules {
            rules.push(compile_rule(&mp, m)?);
        }
        let upstream = match &uc.upstream {
            Some(n) => Some(find_upstream(&p("upstream"), n, None)?),
            None => None,
        };
        let by_name = |n: &str| upstreams.iter().position(|u| u.name == n);
        let mut chain = match &uc.chain {
            Some(c) => failover::chain(&p("chain"), c, &by_name, &raw.models)?,
            None => upstream.map(|u| vec![ChainStep::Upstream(u)]).unwrap_or_default(),
        };
        let on_cutoff = failover::on_cutoff(&p("on_cutoff"), uc.on_cutoff.as_deref())?;
        let routing = failover::routing_policy(&p("routing"), uc.routing.as_deref())?;
        let wants_local = on_cutoff == OnCutoff::ServeLocal || routing != RoutingPolicy::CloudFirst;
        if wants_local && !chain.iter().any(|s| matches!(s, ChainStep::Local(_))) {
            // Serving locally needs a model: the first configured one, at the end of the chain.
            if let Some(m) = raw.models.first() {
                chain.push(ChainStep::Local(m.name.clone()));
            } else if routing != RoutingPolicy::CloudFirst {
                return Err(ConfigError::new(p("routing"), "a local routing policy needs a local model ([[models]])"));
            }
        }
        let local_rate = uc.local_rate.as_deref().map(|r| Rate::parse(&p("local_rate"), r)).transpose()?;
        let kind = match uc.kind.as_deref().unwrap_or("generation") {
            "classification" => genset_eval::Kind::Classification,
            "extraction" => genset_eval::Kind::Extraction,
            "generation" => genset_eval::Kind::Generation,
            "custom" => genset_eval::Kind::Custom,
            o => {
                return Err(ConfigError::new(
                    p("kind"),
                    format!("unknown kind {o:?}: expected classification, extraction, generation or custom"),
                ));
            }
        };
        let thresholds = uc.readiness.unwrap_or_default();
        thresholds.validate().map_err(|m| ConfigError::new(p("readiness"), m))?;
        for (j, c) in uc.canaries.iter().enumerate() {
            c.validate().map_err(|m| ConfigError::new(format!("use_cases[{i}].canaries[{j}]"), m))?;
        }
        let serve_marginal = match uc.on_marginal.as_deref().unwrap_or("reject") {
            "serve" => true,
            "reject" => false,
            o => return Err(ConfigError::new(p("on_marginal"), format!("unknown policy {o:?}: expected serve or reject"))),
        };
        let eval = UseCaseEval {
            kind,
            labels: uc.labels,
            thresholds,
            serve_marginal,
            local_system_prompt: uc.local_system_prompt,
            canaries: uc.canaries,
        };
        use_cases.push(UseCaseConfig {
            name: uc.name,
            description: uc.description,
            rules,
            upstream,
            default_cloud: uc.chain.is_none() && upstream.is_none(),
            chain,
            on_cutoff,
            routing,
            local_ready: uc.local_ready.unwrap_or(false),
            on_context_overflow: uc.on_context_overflow,
            local_rate,
            eval,
        });
    }

    let mut model_names = HashSet::new();
    for (i, m) in raw.models.iter().enumerate() {
        m.validate(i).map_err(|msg| match msg.split_once(": ") {
            Some((k, v)) => ConfigError::new(k, v),
            None => ConfigError::new(format!("models[{i}]"), msg),
        })?;
        if !model_names.insert(m.name.clone()) {
            return Err(ConfigError::new(format!("models[{i}].name"), format!("duplicate model name {:?}", m.name)));
        }
    }

    let telemetry = TelemetryConfig {
        log_json: match raw.telemetry.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(o) => return Err(ConfigError::new("telemetry.log_format", format!("unknown format {o:?}: expected text or json"))),
        },
        log_level: raw.telemetry.log_level.unwrap_or_else(|| "info".into()),
        otlp_endpoint: match raw.telemetry.otlp_endpoint {
            Some(u) => {
                let parsed = reqwest::Url::parse(&u)
                    .map_err(|e| ConfigError::new("telemetry.otlp_endpoint", format!("not an absolute URL ({e})")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(ConfigError::new("telemetry.otlp_endpoint", "must be an http:// or https:// URL (OTLP over HTTP)"));
                }
                Some(u)
            }
            None => None,
        },
        otlp_headers: raw.telemetry.otlp_headers.into_iter().map(|(k, v)| (k, Secret::new(v))).collect(),
        service_name: raw.telemetry.service_name.unwrap_or_else(|| "gensetd".into()),
        trace_sample_ratio: match raw.telemetry.trace_sample_ratio {
            Some(r) if !(0.0..=1.0).contains(&r) => {
                return Err(ConfigError::new("telemetry.trace_sample_ratio", "must be between 0 and 1"));
            }
            Some(r) => r,
            None => 1.0,
        },
    };

    let failover = failover::validate(raw.failover)?;
    let e = &raw.evaluation;
    let evaluation = EvaluationConfig {
        enabled: e.enabled,
        interval: duration("evaluation.interval", &e.interval)?,
        replays_per_round: e.replays_per_round,
        window: duration("evaluation.window", &e.window)?,
        timeout: duration("evaluation.timeout", &e.timeout)?,
        webhook: match &e.webhook {
            Some(u) => {
                let parsed =
                    reqwest::Url::parse(u).map_err(|err| ConfigError::new("evaluation.webhook", format!("not an absolute URL ({err})")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(ConfigError::new("evaluation.webhook", "must be an http:// or https:// URL"));
                }
                Some(u.clone())
            }
            None => None,
        },
        judge: match &e.judge {
            None => None,
            Some(j) => {
                let Some(u) = upstreams.iter().find(|u| u.name == j.upstream) else {
                    return Err(ConfigError::new("evaluation.judge.upstream", format!("no upstream named {:?}", j.upstream)));
                };
                if u.api_key.is_none() {
                    return Err(ConfigError::new(
                        "evaluation.judge.upstream",
                        format!("upstream {:?} holds no key of its own (api_key_env / api_key_file)", j.upstream),
                    ));
                }
                if !(0.0..=1.0).contains(&j.sample) {
                    return Err(ConfigError::new("evaluation.judge.sample", "must be between 0 and 1"));
                }
                Some(JudgeConfig {
                    upstream: j.upstream.clone(),
                    model: j.model.clone(),
                    rubric: j.rubric.clone(),
                    sample: j.sample,
                    daily_tokens: j.daily_tokens,
                })
            }
        },
        embedding_model: match &e.embedding_model {
            Some(m) if !raw.models.iter().any(|x| &x.name == m) => {
                return Err(ConfigError::new("evaluation.embedding_model", format!("no local model named {m:?} ([[models]])")));
            }
            other => other.clone(),
        },
    };
    let uc_names: Vec<String> = use_cases.iter().map(|u: &UseCaseConfig| u.name.clone()).collect();
    let (drills, drill_verdict, reports) = drills::validate(raw.drills, raw.drill_verdict, raw.reports, raw.pricing, &uc_names)?;
    let by_name = |n: &str| upstreams.iter().position(|u| u.name == n);
    let default_chain =
        raw.routing.default_chain.as_ref().map(|c| failover::chain("routing.default_chain", c, &by_name, &raw.models)).transpose()?;

    Ok(Config {
        drills,
        drill_verdict,
        reports,
        evaluation,
        failover,
        default_chain,
        source: source.to_path_buf(),
        proxy,
        admin,
        store,
        recording,
        upstreams,
        use_cases,
        default_openai,
        default_anthropic,
        models: raw.models,
        telemetry,
    })
}

fn compile_rule(path: &str, m: raw::RawMatch) -> Result<MatchRule, ConfigError> {
    let header = match (m.header, m.value) {
        (Some(h), Some(v)) => Some((h.to_ascii_lowercase(), v)),
        (Some(_), None) => return Err(ConfigError::new(format!("{path}.value"), "a header rule needs a value")),
        (None, Some(_)) => return Err(ConfigError::new(format!("{path}.header"), "a value needs a header to compare with")),
        (None, None) => None,
    };
    let system_prompt = match m.system_prompt {
        Some(re) => Some(
            Regex::new(&re).map_err(|e| ConfigError::new(format!("{path}.system_prompt"), format!("invalid regular expression: {e}")))?,
        ),
        None => None,
    };
    if let Some(h) = &m.api_key_sha256
        && (h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(ConfigError::new(format!("{path}.api_key_sha256"), "must be 64 hex digits (sha256 of the key)"));
    }
    let rule = MatchRule {
        header,
        model: m.model.map(Glob),
        path: m.path,
        system_prompt,
        api_key_sha256: m.api_key_sha256.map(|h| h.to_ascii_lowercase()),
    };
    if rule.header.is_none() && rule.model.is_none() && rule.path.is_none() && rule.system_prompt.is_none() && rule.api_key_sha256.is_none()
    {
        return Err(ConfigError::new(
            path,
            "an empty rule would match everything; give header, model, path, system_prompt or api_key_sha256",
        ));
    }
    Ok(rule)
}

fn read_secret_file(f: &Path) -> Result<String, String> {
    let s = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    Ok(s.trim().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn err(toml: &str) -> String {
        Config::from_toml(toml, Path::new("t.toml")).expect_err("should fail").to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_toml("", Path::new("t.toml")).unwrap();
        assert_eq!(c.proxy.max_body, 8 * 1024 * 1024);
        assert_eq!(c.recording.redact, RedactMode::Pii);
        assert_eq!(c.recording.retention, Duration::from_secs(30 * 86400));
        assert_eq!(c.admin.audit_retention, Duration::from_secs(365 * 86400));
        assert_eq!(c.admin.login_attempts_retention, Duration::from_secs(90 * 86400));
        assert!(c.admin.trusted_proxies.is_empty());
        assert_eq!(c.admin.forwarded_header, ForwardedHeader::XForwardedFor);
        let toml = "[admin]\ntrusted_proxies = [\"127.0.0.1\", \"fd00::/8\"]\nforwarded_header = \"Forwarded\"";
        let c = Config::from_toml(toml, Path::new("t.toml")).unwrap();
        assert_eq!(c.admin.trusted_proxies.iter().map(|c| c.to_string()).collect::<Vec<_>>(), ["127.0.0.1/32", "fd00::/8"]);
        assert_eq!(c.admin.forwarded_header, ForwardedHeader::Forwarded);
    }

    #[test]
    fn errors_name_the_key() {
        for (toml, key) in [
            ("[proxy]\nmax_body = \"8XB\"", "proxy.max_body"),
            ("[proxy]\nlisten = \"nope\"", "proxy.listen"),
            ("[proxy]\nbogus = 1", "proxy"),
            ("[recording]\nredact = \"all\"", "recording.redact"),
            ("[recording]\nretention = \"forever\"", "recording.retention"),
            ("[[upstreams]]\nname = \"a\"\napi = \"openai\"\nbase_url = \"api.openai.com\"", "upstreams[0].base_url"),
            ("[[upstreams]]\nname = \"a\"\napi = \"gemini\"\nbase_url = \"http://x\"", "upstreams[0].api"),
            (
                "[[upstreams]]\nname = \"a\"\napi = \"openai\"\nbase_url = \"http://x\"\napi_key_env = \"GENSET_SURELY_UNSET_VAR\"",
                "upstreams[0].api_key_env",
            ),
            ("[[use_cases]]\nname = \"x\"\nmatch = { system_prompt = \"(\" }", "use_cases[0].match.system_prompt"),
            ("[[use_cases]]\nname = \"x\"\nmatch = [{ model = \"a\" }, { header = \"h\" }]", "use_cases[0].match[1].value"),
            ("[[use_cases]]\nname = \"x\"\nupstream = \"nope\"", "use_cases[0].upstream"),
            ("[[use_cases]]\nname = \"unclassified\"", "use_cases[0].name"),
            ("[store]\nurl = \"mysql://x\"", "store.url"),
            ("[admin]\naudit_retention = \"a year\"", "admin.audit_retention"),
            ("[admin]\naudit_retention = \"1h\"", "admin.audit_retention"),
            ("[admin]\nlogin_attempts_retention = \"10m\"", "admin.login_attempts_retention"),
            ("[admin]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.local\"]", "admin.trusted_proxies[1]"),
            ("[admin]\nforwarded_header = \"x-real-ip\"", "admin.forwarded_header"),
        ] {
            let e = err(toml);
            assert!(e.starts_with(key), "{toml:?} gave {e:?}, expected key {key}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("512 KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn globs() {
        let g = Glob("gpt-4o*".into());
        assert!(g.matches("gpt-4o-mini"));
        assert!(g.matches("gpt-4o"));
        assert!(!g.matches("gpt-4"));
        assert!(Glob("*mini".into()).matches("gpt-4o-mini"));
    }
}
