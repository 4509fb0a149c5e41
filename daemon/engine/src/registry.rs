//! Building engines from `[[models]]` and finding them by name.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::llama::LlamaEngine;
use crate::remote::RemoteEngine;
use crate::{Engine, EngineError, ModelConfig, ModelKind, ModelStats};

/// How models are loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Where sha256 verdicts are cached. `None`: a `<model>.sha256-verified` file beside the
    /// model (skipped with a warning when that directory is read-only).
    pub verdict_dir: Option<PathBuf>,
}

/// Why a model did not load.
#[derive(Debug, Clone, thiserror::Error)]
#[error("models[{index}] ({name}): {error}")]
pub struct LoadError {
    pub index: usize,
    pub name: String,
    pub error: EngineError,
}

/// The loaded models, in configuration order.
#[derive(Clone, Default)]
pub struct EngineRegistry {
    engines: Vec<Arc<dyn Engine>>,
}

impl std::fmt::Debug for EngineRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.engines.iter().map(|e| e.name())).finish()
    }
}

impl EngineRegistry {
    pub fn empty() -> Self {
        EngineRegistry::default()
    }

    /// A registry over engines built elsewhere (fakes in tests).
    pub fn from_engines(engines: Vec<Arc<dyn Engine>>) -> Self {
        EngineRegistry { engines }
    }

    /// Verify and load every model, one after the other, on blocking threads. Stops at the
    /// first model that fails: the daemon must not start with a model missing.
    pub async fn load(configs: &[ModelConfig], opts: &LoadOptions) -> Result<Self, LoadError> {
        let mut engines = Vec::with_capacity(configs.len());
        for (index, cfg) in configs.iter().enumerate() {
            let (cfg2, opts2) = (cfg.clone(), opts.clone());
            let engine = tokio::task::spawn_blocking(move || build(&cfg2, &opts2))
                .await
                .map_err(|e| EngineError::Internal(format!("the loading thread failed: {e}")))
                .and_then(|r| r)
                .map_err(|error| LoadError { index, name: cfg.name.clone(), error })?;
            engines.push(engine);
        }
        Ok(EngineRegistry { engines })
    }

    /// [`EngineRegistry::load`] for callers without a runtime (CLI tools, tests).
    pub fn load_blocking(configs: &[ModelConfig], opts: &LoadOptions) -> Result<Self, LoadError> {
        let engines = configs
            .iter()
            .enumerate()
            .map(|(index, cfg)| build(cfg, opts).map_err(|error| LoadError { index, name: cfg.name.clone(), error }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EngineRegistry { engines })
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Engine>> {
        self.engines.iter().find(|e| e.name() == name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<dyn Engine>> {
        self.engines.clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.engines.iter().map(|e| e.name().to_owned()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.engines.is_empty()
    }

    pub fn stats(&self) -> Vec<ModelStats> {
        self.engines.iter().map(|e| e.stats()).collect()
    }
}

/// Build one engine (blocking).
pub fn build(cfg: &ModelConfig, opts: &LoadOptions) -> Result<Arc<dyn Engine>, EngineError> {
    match cfg.kind {
        ModelKind::Gguf => {
            let path = cfg.path.as_deref().ok_or_else(|| EngineError::InvalidRequest("path: required".into()))?;
            let sha = cfg.sha256.as_deref().ok_or_else(|| EngineError::InvalidRequest("sha256: required".into()))?;
            verify_sha256(path, sha, opts)?;
            Ok(Arc::new(LlamaEngine::load(cfg)?))
        }
        ModelKind::OpenaiCompatible => Ok(Arc::new(RemoteEngine::new(cfg)?)),
    }
}

/// Check `path` against `expected` (hex sha256). The verdict is cached by path, size and
/// modification time, so an unchanged file is hashed once.
pub fn verify_sha256(path: &Path, expected: &str, opts: &LoadOptions) -> Result<(), EngineError> {
    let expected = expected.to_ascii_lowercase();
    let meta = std::fs::metadata(path).map_err(|e| EngineError::Unavailable(format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(EngineError::Unavailable(format!("{}: not a file", path.display())));
    }
    let size = meta.len();
    let mtime = meta.modified().ok().and_then(|m| m.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
    let stamp = format!("size={size}\nmtime={}.{:09}\npath={}\n", mtime.as_secs(), mtime.subsec_nanos(), path.display());
    let sidecar = verdict_path(path, opts);

    let cached = std::fs::read_to_string(&sidecar).ok().and_then(|s| {
        let (sha_line, rest) = s.split_once('\n')?;
        let sha = sha_line.strip_prefix("sha256=")?;
        (rest == stamp).then(|| sha.to_owned())
    });
    // The provisioning script's own verdict: "<sha256> <mtime seconds>".
    let provisioned = || {
        let s = std::fs::read_to_string(format!("{}.verified", path.display())).ok()?;
        let (sha, secs) = s.trim().split_once(' ')?;
        (secs == mtime.as_secs().to_string()).then(|| sha.to_ascii_lowercase())
    };
    let actual = match cached.or_else(provisioned) {
        Some(sha) => sha,
        None => {
            let started = std::time::Instant::now();
            let sha = hash_file(path)?;
            tracing::info!(path = %path.display(), size, ms = started.elapsed().as_millis() as u64, "sha256 computed");
            let record = format!("sha256={sha}\n{stamp}");
            if let Err(e) = write_atomically(&sidecar, &record) {
                tracing::warn!(path = %sidecar.display(), error = %e, "cannot cache the sha256 verdict");
            }
            sha
        }
    };
    if actual != expected {
        return Err(EngineError::InvalidRequest(format!(
            "sha256 mismatch for {}: expected {expected}, the file has {actual}; refusing to load it",
            path.display()
        )));
    }
    Ok(())
}

fn verdict_path(path: &Path, opts: &LoadOptions) -> PathBuf {
    match &opts.verdict_dir {
        Some(dir) => {
            let key = hex::encode(Sha256::digest(path.to_string_lossy().as_bytes()));
            let stem = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            dir.join(format!("{stem}.{}.sha256-verified", &key[..16]))
        }
        None => PathBuf::from(format!("{}.sha256-verified", path.display())),
    }
}

fn hash_file(path: &Path) -> Result<String, EngineError> {
    let mut f = std::fs::File::open(path).map_err(|e| EngineError::Unavailable(format!("{}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| EngineError::Unavailable(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = PathBuf::from(format!("{}.tmp{}", path.display(), std::process::id()));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn verdicts_are_cached_and_invalidated_by_changes() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"weights v1").unwrap();
        let opts = LoadOptions::default();
        verify_sha256(&model, &sha(b"weights v1").to_uppercase(), &opts).unwrap();
        let sidecar = dir.path().join("m.gguf.sha256-verified");
        assert!(std::fs::read_to_string(&sidecar).unwrap().starts_with(&format!("sha256={}", sha(b"weights v1"))));
        // A cached verdict answers a wrong expectation without hashing again, and refuses.
        let e = verify_sha256(&model, &sha(b"other"), &opts).unwrap_err();
        assert!(e.to_string().contains("sha256 mismatch"), "{e}");
        assert!(e.to_string().contains("refusing to load"), "{e}");
        // Changing the file invalidates the verdict.
        std::fs::write(&model, b"weights v2!").unwrap();
        let e = verify_sha256(&model, &sha(b"weights v1"), &opts).unwrap_err();
        assert!(e.to_string().contains(&sha(b"weights v2!")), "{e}");
        verify_sha256(&model, &sha(b"weights v2!"), &opts).unwrap();
    }

    #[test]
    fn a_forged_stale_verdict_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"abc").unwrap();
        std::fs::write(dir.path().join("m.gguf.sha256-verified"), format!("sha256={}\nsize=3\nmtime=1.0\npath=x\n", sha(b"zzz"))).unwrap();
        verify_sha256(&model, &sha(b"abc"), &LoadOptions::default()).unwrap();
    }

    #[test]
    fn verdict_dir_option() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"abc").unwrap();
        let opts = LoadOptions { verdict_dir: Some(cache.clone()) };
        verify_sha256(&model, &sha(b"abc"), &opts).unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        assert!(!dir.path().join("m.gguf.sha256-verified").exists());
    }

    #[test]
    fn missing_file() {
        let e = verify_sha256(Path::new("/nonexistent/m.gguf"), &"0".repeat(64), &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, EngineError::Unavailable(_)));
    }
}
