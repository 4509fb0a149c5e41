//! The bundle's `manifest.toml`: what a provisioning bundle contains and needs. Parsed
//! strictly (unknown keys are errors, named by their key path), then checked as a whole
//! (references between models, use cases, canaries and upstreams; safe relative paths).
//! The format is documented in `docs/provisioning.md`.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The manifest format this gensetctl reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version; must be [`FORMAT`].
    pub format: u32,
    pub bundle: BundleInfo,
    #[serde(default)]
    pub requirements: Requirements,
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    /// `[[upstreams]]` tables exactly as in genset.toml; replace the config's when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<toml::Table>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    #[serde(default)]
    pub use_cases: Vec<UseCase>,
    #[serde(default)]
    pub canaries: Vec<Canary>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInfo {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
}

/// What the host must offer. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// CPU flags that must appear in /proc/cpuinfo (e.g. `["avx2", "fma"]`).
    #[serde(default)]
    pub cpu_features: Vec<String>,
    /// Fewest CPUs (as the process sees them).
    pub min_cpus: Option<usize>,
    /// Least total memory, e.g. `"4GiB"`.
    pub min_ram: Option<String>,
    /// Free space needed in the models directory beyond the model files themselves.
    pub min_disk: Option<String>,
    /// `none`, `optional` (the default) or `required` (an NVIDIA GPU seen by nvidia-smi).
    #[serde(default)]
    pub gpu: GpuNeed,
    /// Least memory of the largest GPU, e.g. `"8GiB"` (implies a GPU is needed).
    pub min_gpu_memory: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuNeed {
    None,
    #[default]
    Optional,
    Required,
}

/// A GGUF model shipped in the bundle.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The model's name in genset (`local/<name>`).
    pub name: String,
    /// Path of the file inside the bundle.
    pub file: PathBuf,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes; when given it is checked before the (long) checksum.
    pub size: Option<u64>,
    /// The model's licence, for people (e.g. "Apache-2.0", "Gemma Terms of Use").
    pub licence: String,
    /// Path inside the bundle of the licence text, installed beside the model.
    pub licence_file: Option<PathBuf>,
    /// Tokens per sequence (prompt + completion).
    pub context: u32,
    /// Recommended concurrent sequences.
    pub parallel: u32,
    pub chat_template: Option<String>,
    pub gpu_layers: Option<u32>,
    pub threads: Option<u32>,
    pub batch: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Default upstream for OpenAI-style traffic no use case claims.
    pub openai: Option<String>,
    /// Default upstream for Anthropic-style traffic no use case claims.
    pub anthropic: Option<String>,
    /// The default fallback chain: upstream names, then `local:<model>` steps.
    #[serde(default)]
    pub chain: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UseCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// How local answers are scored: classification, extraction, generation or custom.
    pub kind: UseCaseKind,
    /// The classification rules, exactly as `match` in genset.toml (one table or a list).
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub match_: Option<toml::Value>,
    /// The upstream for this use case's cloud traffic.
    pub upstream: Option<String>,
    /// The local model that serves this use case when it is served locally.
    pub model: Option<String>,
    /// This use case's fallback chain (default: `routing.chain`).
    #[serde(default)]
    pub chain: Vec<String>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub thresholds: Thresholds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UseCaseKind {
    Classification,
    Extraction,
    Generation,
    Custom,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// What happens when the cloud is cut off.
    #[serde(default)]
    pub on_cutoff: OnCutoff,
    /// Where traffic goes in normal times.
    #[serde(default)]
    pub routing: RoutingPolicy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnCutoff {
    ServeLocal,
    #[default]
    Reject,
    Queue,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingPolicy {
    #[default]
    CloudFirst,
    LocalFirst,
    LocalOnly,
}

/// Readiness thresholds: scores in [0, 1].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default = "default_ready")]
    pub ready: f64,
    #[serde(default = "default_marginal")]
    pub marginal: f64,
    /// Local p95 latency the use case tolerates, e.g. `"3s"`.
    pub p95_latency: Option<String>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { ready: default_ready(), marginal: default_marginal(), p95_latency: None }
    }
}

fn default_ready() -> f64 {
    0.9
}
fn default_marginal() -> f64 {
    0.75
}

/// A provisioned test case for a use case, run after provisioning and by the evaluator.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub name: String,
    pub use_case: String,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
    /// Every assertion given must hold.
    #[serde(default)]
    pub expect: Expect,
    /// When true, a failing canary makes provisioning fail (and roll back).
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub equals: Option<String>,
    pub contains: Option<String>,
    pub regex: Option<String>,
    /// The answer, trimmed and lower-cased, is one of these labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_in: Vec<String>,
    /// The answer is JSON valid against this schema (inline JSON Schema as a TOML table).
    pub json_schema: Option<toml::Table>,
    /// Longest acceptable time for the whole answer, e.g. `"5s"`.
    pub max_latency: Option<String>,
}

/// A manifest problem, naming its key path.
#[derive(Debug, thiserror::Error)]
#[error("manifest.toml: {path}: {message}")]
pub struct ManifestError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError { path: path.into(), message: message.into() }
}

fn is_name(s: &str, extra: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra.contains(c))
}

/// A path inside the bundle: relative, without `..`, not empty.
pub fn check_bundle_path(key: &str, p: &Path) -> Result<(), ManifestError> {
    if p.as_os_str().is_empty() {
        return Err(err(key, "must not be empty"));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(err(key, format!("{:?} must be a relative path inside the bundle, without '..'", p.display().to_string()))),
        }
    }
    Ok(())
}

impl Manifest {
    /// Parse and check manifest text.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let de = toml::Deserializer::parse(text).map_err(|e| err("(file)", e.to_string().trim().to_string()))?;
        let m: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let p = e.path().to_string();
            let msg = e.into_inner().message().trim().to_string();
            err(if p == "." { "(file)".to_string() } else { p }, msg)
        })?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT {
            return Err(err("format", format!("this gensetctl reads manifest format {FORMAT}, the bundle has {}", self.format)));
        }
        if !is_name(&self.bundle.name, ".") {
            return Err(err("bundle.name", "must be non-empty and use only letters, digits, '-', '_' and '.'"));
        }
        if self.bundle.version.trim().is_empty() {
            return Err(err("bundle.version", "must not be empty"));
        }
        let r = &self.requirements;
        for (k, v) in [
            ("requirements.min_ram", &r.min_ram),
            ("requirements.min_disk", &r.min_disk),
            ("requirements.min_gpu_memory", &r.min_gpu_memory),
        ] {
            if let Some(s) = v {
                crate::config::parse_size(s).map_err(|m| err(k, m))?;
            }
        }
        if r.gpu == GpuNeed::None && r.min_gpu_memory.is_some() {
            return Err(err("requirements.min_gpu_memory", "contradicts gpu = \"none\""));
        }
        for (i, f) in r.cpu_features.iter().enumerate() {
            if !is_name(f, ".") {
                return Err(err(format!("requirements.cpu_features[{i}]"), format!("{f:?} is not a CPU flag name as in /proc/cpuinfo")));
            }
        }

        let mut models = HashSet::new();
        let mut files = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let k = |f: &str| format!("models[{i}].{f}");
            if !is_name(&m.name, ".:") {
                return Err(err(k("name"), "must be non-empty and use only letters, digits, '.', '_', ':' and '-'"));
            }
            if !models.insert(m.name.as_str()) {
                return Err(err(k("name"), format!("duplicate model name {:?}", m.name)));
            }
            check_bundle_path(&k("file"), &m.file)?;
            if !files.insert(normalize(&m.file)) {
                return Err(err(k("file"), "another model already uses this file"));
            }
            if m.sha256.len() != 64 || !m.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(err(k("sha256"), "must be 64 hex characters (`sha256sum FILE` prints it)"));
            }
            if m.licence.trim().is_empty() {
                return Err(err(k("licence"), "must name the model's licence"));
            }
            if let Some(l) = &m.licence_file {
                check_bundle_path(&k("licence_file"), l)?;
            }
            if m.context == 0 {
                return Err(err(k("context"), "must be > 0"));
            }
            if m.parallel == 0 || m.parallel > 256 {
                return Err(err(k("parallel"), "must be between 1 and 256"));
            }
        }

        let mut upstreams = HashSet::new();
        if let Some(us) = &self.upstreams {
            for (i, u) in us.iter().enumerate() {
                match u.get("name").and_then(|v| v.as_str()) {
                    Some(n) => {
                        upstreams.insert(n.to_string());
                    }
                    None => return Err(err(format!("upstreams[{i}].name"), "required")),
                }
                if u.contains_key("api_key") {
                    return Err(err(
                        format!("upstreams[{i}].api_key"),
                        "keys never travel in a bundle: use api_key_credential (a systemd credential)",
                    ));
                }
            }
        }
        let check_chain = |key: &str, chain: &[String]| -> Result<(), ManifestError> {
            for (j, step) in chain.iter().enumerate() {
                if let Some(model) = step.strip_prefix("local:") {
                    if !models.contains(model) {
                        return Err(err(format!("{key}[{j}]"), format!("no model named {model:?} in this bundle")));
                    }
                } else if self.upstreams.is_some() && !upstreams.contains(step) {
                    return Err(err(format!("{key}[{j}]"), format!("no upstream named {step:?} in this bundle")));
                }
            }
            Ok(())
        };
        if let Some(r) = &self.routing {
            check_chain("routing.chain", &r.chain)?;
        }

        let mut use_cases = HashSet::new();
        for (i, u) in self.use_cases.iter().enumerate() {
            let k = |f: &str| format!("use_cases[{i}].{f}");
            if !is_name(&u.name, "") {
                return Err(err(k("name"), "must be non-empty and use only letters, digits, '-' and '_'"));
            }
            if !use_cases.insert(u.name.as_str()) {
                return Err(err(k("name"), format!("duplicate use case name {:?}", u.name)));
            }
            if let Some(m) = &u.model
                && !models.contains(m.as_str())
            {
                return Err(err(k("model"), format!("no model named {m:?} in this bundle")));
            }
            check_chain(&k("chain"), &u.chain)?;
            let t = &u.thresholds;
            if !(0.0..=1.0).contains(&t.ready) || !(0.0..=1.0).contains(&t.marginal) || t.marginal > t.ready {
                return Err(err(k("thresholds"), "need 0 <= marginal <= ready <= 1"));
            }
            if let Some(l) = &t.p95_latency {
                humantime::parse_duration(l).map_err(|e| err(k("thresholds.p95_latency"), format!("not a duration ({e}): {l:?}")))?;
            }
            if u.policy.on_cutoff == OnCutoff::ServeLocal || u.policy.routing != RoutingPolicy::CloudFirst {
                let has_local = u.model.is_some() || u.chain.iter().any(|s| s.starts_with("local:"));
                if !has_local {
                    return Err(err(k("policy"), "serving locally needs a `model` (or a `local:` step in `chain`)"));
                }
            }
        }

        let mut canaries = HashSet::new();
        for (i, c) in self.canaries.iter().enumerate() {
            let k = |f: &str| format!("canaries[{i}].{f}");
            if !is_name(&c.name, ".") {
                return Err(err(k("name"), "must be non-empty and use only letters, digits, '-', '_' and '.'"));
            }
            if !canaries.insert((c.use_case.as_str(), c.name.as_str())) {
                return Err(err(k("name"), format!("duplicate canary {:?} for use case {:?}", c.name, c.use_case)));
            }
            if !use_cases.contains(c.use_case.as_str()) {
                return Err(err(k("use_case"), format!("no use case named {:?} in this bundle", c.use_case)));
            }
            if c.messages.is_empty() {
                return Err(err(k("messages"), "at least one message"));
            }
            for (j, m) in c.messages.iter().enumerate() {
                if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                    return Err(err(format!("canaries[{i}].messages[{j}].role"), "must be system, user or assistant"));
                }
            }
            if let Some(re) = &c.expect.regex {
                regex::Regex::new(re).map_err(|e| err(k("expect.regex"), format!("invalid regular expression: {e}")))?;
            }
            if let Some(l) = &c.expect.max_latency {
                humantime::parse_duration(l).map_err(|e| err(k("expect.max_latency"), format!("not a duration ({e}): {l:?}")))?;
            }
        }
        Ok(())
    }

    /// Bytes of all model files, when the manifest gives their sizes.
    pub fn declared_model_bytes(&self) -> Option<u64> {
        self.models.iter().map(|m| m.size).sum()
    }
}

/// A bundle path in the form tar entries are compared with: no `./` parts.
pub fn normalize(p: &Path) -> PathBuf {
    p.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const GOOD: &str = r#"
format = 1
[bundle]
name = "t"
version = "1"
[[models]]
name = "m"
file = "models/m.gguf"
sha256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
licence = "Apache-2.0"
context = 2048
parallel = 2
[[use_cases]]
name = "triage"
kind = "classification"
match = { header = "x-genset-use-case", value = "triage" }
model = "m"
policy = { on_cutoff = "serve-local" }
[[canaries]]
name = "c1"
use_case = "triage"
messages = [{ role = "user", content = "hi" }]
expect = { label_in = ["a", "b"] }
"#;

    /// Replace `from` by `to` in the good manifest and check the error names `key`.
    fn check(from: &str, to: &str, key: &str) {
        assert!(GOOD.contains(from), "{from:?} not in the good manifest");
        let e = Manifest::parse(&GOOD.replacen(from, to, 1)).expect_err("should fail").to_string();
        assert!(e.starts_with(&format!("manifest.toml: {key}")), "{from:?} -> {to:?} gave {e:?}, expected key {key}");
    }

    #[test]
    fn good_manifest_parses() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.models[0].parallel, 2);
        assert_eq!(m.use_cases[0].policy.on_cutoff, OnCutoff::ServeLocal);
        assert_eq!(m.use_cases[0].thresholds.ready, 0.9);
    }

    #[test]
    fn errors_name_the_key() {
        for (from, to, key) in [
            ("format = 1", "format = 2", "format"),
            ("name = \"t\"", "name = \"a b\"", "bundle.name"),
            ("file = \"models/m.gguf\"", "file = \"../m.gguf\"", "models[0].file"),
            ("file = \"models/m.gguf\"", "file = \"/etc/passwd\"", "models[0].file"),
            ("sha256 = \"a5fd", "sha256 = \"zzfd", "models[0].sha256"),
            ("licence = \"Apache-2.0\"", "licence = \" \"", "models[0].licence"),
            ("parallel = 2", "parallel = 0", "models[0].parallel"),
            ("parallel = 2", "parallel = 2\nbogus = 1", "models[0]"),
            ("kind = \"classification\"", "kind = \"vibes\"", "use_cases[0].kind"),
            ("model = \"m\"", "model = \"nope\"", "use_cases[0].model"),
            ("model = \"m\"\n", "", "use_cases[0].policy"),
            ("use_case = \"triage\"", "use_case = \"nope\"", "canaries[0].use_case"),
            ("role = \"user\"", "role = \"robot\"", "canaries[0].messages[0].role"),
            ("[bundle]", "[requirements]\nmin_ram = \"lots\"\n[bundle]", "requirements.min_ram"),
        ] {
            check(from, to, key);
        }
    }

    #[test]
    fn chains_must_resolve() {
        let t = GOOD.replace("model = \"m\"", "chain = [\"local:other\"]");
        let e = Manifest::parse(&t).expect_err("bad chain").to_string();
        assert!(e.contains("use_cases[0].chain[0]"), "{e}");
    }

    #[test]
    fn keys_never_travel_in_bundles() {
        let t = format!("{GOOD}\n[[upstreams]]\nname = \"o\"\napi = \"openai\"\nbase_url = \"https://x\"\napi_key = \"sk-123\"\n");
        let e = Manifest::parse(&t).expect_err("inline key").to_string();
        assert!(e.contains("upstreams[0].api_key"), "{e}");
    }
}
