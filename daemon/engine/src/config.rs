//! `[[models]]` entries of the daemon's TOML configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A GGUF file run in-process through llama.cpp.
    #[default]
    Gguf,
    /// An external OpenAI-compatible server (vLLM, llama-server, Ollama).
    OpenaiCompatible,
}

impl ModelKind {
    pub fn label(self) -> &'static str {
        match self {
            ModelKind::Gguf => "gguf",
            ModelKind::OpenaiCompatible => "openai-compatible",
        }
    }
}

/// One `[[models]]` entry, as written in the config file.
///
/// ```toml
/// [[models]]
/// name = "gemma-270m"
/// path = "/var/lib/genset/models/gemma-3-270m-q4_k_m.gguf"
/// sha256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
/// context = 4096        # tokens per sequence (prompt + completion)
/// parallel = 4          # concurrent sequences (slots); KV cache = context x parallel
/// chat_template = "gemma"
///
/// [[models]]
/// name = "big"
/// kind = "openai-compatible"
/// base_url = "http://10.0.0.5:8000/v1"
/// api_key_env = "VLLM_API_KEY"
/// remote_model = "Qwen/Qwen2.5-72B-Instruct"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients use (`local/<name>`) and the `model` field of answers.
    pub name: String,
    #[serde(default)]
    pub kind: ModelKind,
    /// The GGUF file (kind `gguf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Expected SHA-256 of the GGUF file, hex (kind `gguf`, required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Tokens per sequence: the longest prompt plus completion one request may use.
    #[serde(default = "default_context")]
    pub context: u32,
    /// Concurrent sequences (slots). The KV cache holds `context x parallel` tokens.
    #[serde(default = "default_parallel")]
    pub parallel: u32,
    /// CPU threads for llama.cpp; default: the physical cores of this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Layers to offload to the GPU (GPU builds only); 0 = CPU only, 999 = all.
    #[serde(default)]
    pub gpu_layers: u32,
    /// A llama.cpp built-in template name (`gemma`, `chatml`, `llama3`, ...) or the path of a
    /// Jinja template file. Default: the GGUF's own `tokenizer.chat_template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Tokens per llama.cpp batch (prompt chunks and decode tokens together).
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Requests that may wait for a slot; beyond that callers get `Overloaded`.
    #[serde(default = "default_max_queue")]
    pub max_queue: u32,
    /// The longest a request waits for a slot before it fails (humantime: `30s`, `2m`).
    #[serde(default = "default_max_wait", deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub max_wait: Duration,
    /// Base URL of the OpenAI-compatible API, `/v1` included (kind `openai-compatible`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The environment variable holding the remote server's API key, if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The model name to send to the remote server (default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_model: Option<String>,
}

fn default_context() -> u32 {
    4096
}
fn default_parallel() -> u32 {
    4
}
fn default_batch() -> u32 {
    512
}
fn default_max_queue() -> u32 {
    64
}
fn default_max_wait() -> Duration {
    Duration::from_secs(30)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("not a duration like \"30s\" or \"2m\": {e}")))
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl ModelConfig {
    /// A gguf entry with defaults, for tests and tools.
    pub fn gguf(name: impl Into<String>, path: impl Into<PathBuf>, sha256: impl Into<String>) -> Self {
        ModelConfig {
            name: name.into(),
            kind: ModelKind::Gguf,
            path: Some(path.into()),
            sha256: Some(sha256.into()),
            context: default_context(),
            parallel: default_parallel(),
            threads: None,
            gpu_layers: 0,
            chat_template: None,
            batch: default_batch(),
            max_queue: default_max_queue(),
            max_wait: default_max_wait(),
            base_url: None,
            api_key_env: None,
            remote_model: None,
        }
    }

    /// An openai-compatible entry with defaults.
    pub fn openai_compatible(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        ModelConfig {
            kind: ModelKind::OpenaiCompatible,
            path: None,
            sha256: None,
            base_url: Some(base_url.into()),
            ..ModelConfig::gguf(name, "", "")
        }
    }

    /// Threads to give llama.cpp: the configured count or the physical cores.
    pub fn effective_threads(&self) -> u32 {
        self.threads.unwrap_or_else(physical_cores)
    }

    /// Check the entry; `index` is its position in `models`, used to name keys in messages
    /// ("models[0].context: must be > 0").
    pub fn validate(&self, index: usize) -> Result<(), String> {
        let mut errs = Vec::new();
        let key = |k: &str| format!("models[{index}].{k}");
        if self.name.is_empty() {
            errs.push(format!("{}: must not be empty", key("name")));
        } else if !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)) {
            errs.push(format!("{}: \"{}\" may only contain letters, digits, '.', '_', ':' and '-'", key("name"), self.name));
        }
        if self.context == 0 {
            errs.push(format!("{}: must be > 0", key("context")));
        }
        if self.parallel == 0 || self.parallel > 256 {
            errs.push(format!("{}: must be between 1 and 256", key("parallel")));
        }
        if self.max_wait.is_zero() {
            errs.push(format!("{}: must be > 0", key("max_wait")));
        }
        match self.kind {
            ModelKind::Gguf => {
                match &self.path {
                    None => errs.push(format!("{}: required for kind \"gguf\"", key("path"))),
                    Some(p) if p.as_os_str().is_empty() => errs.push(format!("{}: must not be empty", key("path"))),
                    Some(_) => {}
                }
                match &self.sha256 {
                    None => errs.push(format!("{}: required for kind \"gguf\" (64 hex characters; `sha256sum` prints it)", key("sha256"))),
                    Some(s) if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) => {
                        errs.push(format!("{}: must be 64 hex characters", key("sha256")))
                    }
                    Some(_) => {}
                }
                if self.threads == Some(0) {
                    errs.push(format!("{}: must be > 0", key("threads")));
                }
                if self.batch < 8 {
                    errs.push(format!("{}: must be >= 8", key("batch")));
                } else if self.batch < self.parallel {
                    errs.push(format!("{}: must be >= parallel ({})", key("batch"), self.parallel));
                }
                if u64::from(self.context) * u64::from(self.parallel) > 1 << 24 {
                    errs.push(format!("{}: context x parallel is too large", key("context")));
                }
                if let Some(t) = &self.chat_template
                    && t.trim().is_empty()
                {
                    errs.push(format!("{}: must not be empty", key("chat_template")));
                }
                for (k, set) in [
                    ("base_url", self.base_url.is_some()),
                    ("api_key_env", self.api_key_env.is_some()),
                    ("remote_model", self.remote_model.is_some()),
                ] {
                    if set {
                        errs.push(format!("{}: only for kind \"openai-compatible\"", key(k)));
                    }
                }
            }
            ModelKind::OpenaiCompatible => {
                match &self.base_url {
                    None => errs.push(format!("{}: required for kind \"openai-compatible\"", key("base_url"))),
                    Some(u) => match reqwest::Url::parse(u) {
                        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {}
                        _ => errs.push(format!("{}: not an absolute http(s) URL", key("base_url"))),
                    },
                }
                if let Some(env) = &self.api_key_env
                    && (env.is_empty() || env.contains('='))
                {
                    errs.push(format!("{}: not an environment variable name", key("api_key_env")));
                }
                for (k, set) in [
                    ("path", self.path.is_some()),
                    ("sha256", self.sha256.is_some()),
                    ("chat_template", self.chat_template.is_some()),
                    ("threads", self.threads.is_some()),
                    ("gpu_layers", self.gpu_layers != 0),
                ] {
                    if set {
                        errs.push(format!("{}: only for kind \"gguf\"", key(k)));
                    }
                }
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs.join("; ")) }
    }
}

/// Validate every entry and the uniqueness of names; all problems, one per line.
pub fn validate_models(models: &[ModelConfig]) -> Result<(), Vec<String>> {
    let mut errs: Vec<String> = Vec::new();
    for (i, m) in models.iter().enumerate() {
        if let Err(e) = m.validate(i) {
            errs.extend(e.split("; ").map(str::to_owned));
        }
        if let Some(j) = models[..i].iter().position(|o| o.name == m.name) {
            errs.push(format!("models[{i}].name: \"{}\" is already used by models[{j}]", m.name));
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Physical CPU cores (distinct core ids per package), falling back to the logical count.
pub(crate) fn physical_cores() -> u32 {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let physical = std::fs::read_to_string("/proc/cpuinfo").ok().map(|info| {
        let mut cores = std::collections::HashSet::new();
        let mut phys = "";
        for line in info.lines() {
            if let Some((k, v)) = line.split_once(':') {
                match k.trim() {
                    "physical id" => phys = v.trim(),
                    "core id" => {
                        cores.insert((phys.to_owned(), v.trim().to_owned()));
                    }
                    _ => {}
                }
            }
        }
        cores.len()
    });
    // Containers and cgroup limits can give fewer CPUs than the machine has cores.
    let n = match physical {
        Some(p) if p > 0 => p.min(logical),
        _ => logical,
    };
    u32::try_from(n.max(1)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_src: &str) -> Result<ModelConfig, String> {
        #[derive(Deserialize)]
        struct Wrap {
            models: Vec<ModelConfig>,
        }
        let w: Wrap = serde_json::from_value(toml_like(toml_src)).map_err(|e| e.to_string())?;
        w.models.into_iter().next().ok_or_else(|| "no model".to_string())
    }

    // The engine crate has no TOML dependency; tests write the config as JSON.
    fn toml_like(src: &str) -> serde_json::Value {
        serde_json::from_str(src).unwrap_or(serde_json::Value::Null)
    }

    #[test]
    fn defaults_and_duration() {
        let m = parse(r#"{"models":[{"name":"g","path":"/m.gguf","sha256":"00","max_wait":"2m"}]}"#).unwrap();
        assert_eq!(m.kind, ModelKind::Gguf);
        assert_eq!(m.context, 4096);
        assert_eq!(m.parallel, 4);
        assert_eq!(m.batch, 512);
        assert_eq!(m.max_wait, Duration::from_secs(120));
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["max_wait"], "2m");
    }

    #[test]
    fn unknown_fields_and_bad_duration_are_rejected() {
        let e = parse(r#"{"models":[{"name":"g","contxt":5}]}"#).unwrap_err();
        assert!(e.contains("contxt"), "{e}");
        let e = parse(r#"{"models":[{"name":"g","max_wait":"soon"}]}"#).unwrap_err();
        assert!(e.contains("duration"), "{e}");
        let e = parse(r#"{"models":[{"name":"g","kind":"onnx"}]}"#).unwrap_err();
        assert!(e.contains("onnx"), "{e}");
    }

    #[test]
    fn validate_names_keys() {
        let sha = "a".repeat(64);
        let mut m = ModelConfig::gguf("g", "/m.gguf", sha.clone());
        assert_eq!(m.validate(0), Ok(()));
        m.context = 0;
        assert_eq!(m.validate(3).unwrap_err(), "models[3].context: must be > 0");
        m.context = 10;
        m.sha256 = Some("xyz".into());
        assert!(m.validate(0).unwrap_err().contains("models[0].sha256"));
        m.sha256 = Some(sha);
        m.base_url = Some("http://x/v1".into());
        assert!(m.validate(1).unwrap_err().contains("models[1].base_url: only for kind \"openai-compatible\""));

        let mut r = ModelConfig::openai_compatible("r", "ftp://x");
        assert!(r.validate(2).unwrap_err().contains("models[2].base_url: not an absolute http(s) URL"));
        r.base_url = Some("http://127.0.0.1:8000/v1".into());
        assert_eq!(r.validate(2), Ok(()));
        r.chat_template = Some("gemma".into());
        assert!(r.validate(2).unwrap_err().contains("models[2].chat_template"));
    }

    #[test]
    fn duplicate_names() {
        let a = ModelConfig::openai_compatible("a", "http://x/v1");
        let errs = validate_models(&[a.clone(), a]).unwrap_err();
        assert_eq!(errs, vec!["models[1].name: \"a\" is already used by models[0]".to_string()]);
    }

    #[test]
    fn cores() {
        assert!(physical_cores() >= 1);
    }
}
