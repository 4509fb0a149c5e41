//! Provisioning against bundles in temporary folders: a fake model for the all-or-nothing
//! behaviour, the real test model for the checksum and the engine steps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::checks::{EngineChecks, ModelChecks, SkipChecks, StepResult, StepStatus};
use super::manifest::Manifest;
use super::*;

const OLD_CONFIG: &str = r#"# the operator's comment, kept
[proxy]
listen = "127.0.0.1:18080"   # inline comment, kept

[admin]
listen = "127.0.0.1:18081"

[[upstreams]]
name = "openai"
api = "openai"
base_url = "https://api.openai.com/v1"

[[use_cases]]
name = "old-case"
match = { header = "x-genset-use-case", value = "old" }
"#;

const FAKE_MODEL: &[u8] = b"GGUF\x03\x00\x00\x00 not really a model, but bytes with a checksum";

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    bundle: PathBuf,
    config: PathBuf,
    models: PathBuf,
}

impl Fixture {
    /// A bundle folder with `models/fake.gguf` declared with `declared_sha`.
    fn new(declared_sha: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let bundle = root.join("bundle");
        fs::create_dir_all(bundle.join("models")).unwrap();
        fs::create_dir_all(bundle.join("licences")).unwrap();
        fs::write(bundle.join("models/fake.gguf"), FAKE_MODEL).unwrap();
        fs::write(bundle.join("licences/FAKE.txt"), "do what you like\n").unwrap();
        fs::write(bundle.join("manifest.toml"), manifest("models/fake.gguf", declared_sha, Some(FAKE_MODEL.len() as u64))).unwrap();
        let etc = root.join("etc");
        fs::create_dir_all(&etc).unwrap();
        let config = etc.join("genset.toml");
        fs::write(&config, OLD_CONFIG).unwrap();
        Fixture { root: root.clone(), bundle, config, models: root.join("state/models"), _tmp: tmp }
    }

    fn opts(&self, dry_run: bool) -> Options {
        Options {
            bundle: self.bundle.clone(),
            config: self.config.clone(),
            models_dir: self.models.clone(),
            record_dir: self.root.join("state/provisioning"),
            dry_run,
            ignore_host_checks: false,
            progress: false,
        }
    }

    /// Files under the models folder, relative, sorted (lock file included).
    fn model_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.models, &self.models, &mut out);
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(base, &p, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

fn manifest(file: &str, sha256: &str, size: Option<u64>) -> String {
    let size = size.map(|s| format!("size = {s}\n")).unwrap_or_default();
    format!(
        r#"format = 1
[bundle]
name = "test-bundle"
version = "1.0"

[requirements]
min_cpus = 1

[[models]]
name = "fake"
file = "{file}"
sha256 = "{sha256}"
{size}licence = "WTFPL"
licence_file = "licences/FAKE.txt"
context = 2048
parallel = 2
chat_template = "gemma"

[[upstreams]]
name = "openai"
api = "openai"
base_url = "https://api.openai.com/v1"

[[upstreams]]
name = "anthropic"
api = "anthropic"
base_url = "https://api.anthropic.com"
api_key_credential = "anthropic-key"

[routing]
openai = "openai"
chain = ["openai", "anthropic", "local:fake"]

[[use_cases]]
name = "triage"
kind = "classification"
match = {{ header = "x-genset-use-case", value = "triage" }}
model = "fake"
policy = {{ on_cutoff = "serve-local" }}

[[use_cases]]
name = "invoices"
kind = "extraction"
match = [{{ system_prompt = "(?i)invoice" }}, {{ model = "gpt-4o-mini*" }}]
upstream = "openai"

[[canaries]]
name = "refund"
use_case = "triage"
messages = [{{ role = "user", content = "I want my money back" }}]
expect = {{ label_in = ["refund", "billing"] }}
"#
    )
}

/// Engine steps that pass or fail on demand, without a model.
struct Fake(bool);

impl ModelChecks for Fake {
    fn smoke(&self, _cfg: &Config, m: &Manifest) -> Vec<StepResult> {
        m.models
            .iter()
            .map(|e| if self.0 { StepResult::passed(&e.name, "fake ok") } else { StepResult::failed(&e.name, "fake failure") })
            .collect()
    }
    fn canaries(&self, _cfg: &Config, _m: &Manifest) -> Vec<StepResult> {
        vec![]
    }
}

#[test]
fn a_good_bundle_installs() {
    let fx = Fixture::new(&sha(FAKE_MODEL));
    let r = provision(&fx.opts(false), &Fake(true)).unwrap();
    let dir = model_dir(&fx.models, &sha(FAKE_MODEL));
    let installed = dir.join("fake.gguf");
    assert_eq!(fs::read(&installed).unwrap(), FAKE_MODEL);
    assert!(dir.join("FAKE.txt").is_file(), "the licence is installed beside the model");
    assert_eq!(r.models.len(), 1);
    assert_eq!(r.models[0].action, "copied");
    assert_eq!(r.models[0].path, installed);

    // The new file: valid, with the bundle's sections and the operator's other ones.
    let text = fs::read_to_string(&fx.config).unwrap();
    let cfg = Config::from_toml(&text.replace("api_key_credential = \"anthropic-key\"", ""), &fx.config).unwrap();
    assert_eq!(cfg.proxy.listen.port(), 18080);
    assert_eq!(cfg.use_cases.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["triage", "invoices"]);
    assert_eq!(cfg.upstreams.len(), 2);
    assert_eq!(cfg.models.len(), 1);
    assert_eq!(cfg.models[0].path.as_deref(), Some(installed.as_path()));
    assert_eq!(cfg.models[0].sha256.as_deref(), Some(sha(FAKE_MODEL).as_str()));
    assert_eq!(cfg.models[0].context, 2048);
    assert!(text.contains("# the operator's comment, kept") && text.contains("# inline comment, kept"), "{text}");
    assert!(text.contains("provisioned from bundle test-bundle 1.0"), "{text}");
    assert!(!text.contains("old-case"));

    // The old file is kept; the record holds the whole manifest; the report says what was
    // left for later and which credential the service checks.
    assert_eq!(fs::read_to_string(fx.config.with_extension("toml.bak")).unwrap(), OLD_CONFIG);
    assert_eq!(r.backup.as_deref(), Some(fx.config.with_extension("toml.bak").as_path()));
    let rec = fx.root.join("state/provisioning");
    assert_eq!(fs::read_to_string(rec.join("manifest.toml")).unwrap(), fs::read_to_string(fx.bundle.join("manifest.toml")).unwrap());
    assert!(rec.join("report.json").is_file());
    assert!(r.kept_aside.iter().any(|k| k.starts_with("routing.chain")), "{:?}", r.kept_aside);
    assert!(r.kept_aside.iter().any(|k| k.starts_with("use case triage: kind, model")), "{:?}", r.kept_aside);
    assert!(r.unchecked_credentials.iter().any(|c| c.contains("anthropic-key")), "{:?}", r.unchecked_credentials);
    // No staging left behind; the engine's verdict is written beside the model.
    assert!(!fx.model_files().iter().any(|f| f.starts_with(".provision-")), "{:?}", fx.model_files());
    assert!(fx.model_files().iter().any(|f| f.ends_with("fake.gguf.verified")));
    let text_report = render_report(&r);
    assert!(text_report.contains("provisioned: bundle test-bundle 1.0"), "{text_report}");

    // Again: the model is verified in place, not copied; the backup is the first result.
    let first = fs::read_to_string(&fx.config).unwrap();
    let r2 = provision(&fx.opts(false), &Fake(true)).unwrap();
    assert_eq!(r2.models[0].action, "already installed");
    assert_eq!(fs::read_to_string(fx.config.with_extension("toml.bak")).unwrap(), first);
    assert!(fx.root.join("state/provisioning.previous/manifest.toml").is_file());
}

#[test]
fn a_checksum_mismatch_changes_nothing() {
    let wrong = sha(b"something else");
    let fx = Fixture::new(&wrong);
    let e = provision(&fx.opts(false), &Fake(true)).expect_err("must refuse").to_string();
    assert!(e.contains("checksum mismatch") && e.contains(&wrong), "{e}");
    assert_eq!(fs::read_to_string(&fx.config).unwrap(), OLD_CONFIG);
    assert!(!fx.config.with_extension("toml.bak").exists());
    assert!(!fx.models.exists(), "the models folder it created is removed: {:?}", fx.model_files());
    assert!(!fx.root.join("state/provisioning").exists());
}

#[test]
fn a_failure_keeps_the_previous_provisioning() {
    // A first provisioning, then a second bundle whose smoke test fails.
    let fx = Fixture::new(&sha(FAKE_MODEL));
    provision(&fx.opts(false), &Fake(true)).unwrap();
    let before_config = fs::read_to_string(&fx.config).unwrap();
    let before_files = fx.model_files();

    let other: &[u8] = b"GGUF another model";
    fs::write(fx.bundle.join("models/fake.gguf"), other).unwrap();
    fs::write(fx.bundle.join("manifest.toml"), manifest("models/fake.gguf", &sha(other), None)).unwrap();
    let e = provision(&fx.opts(false), &Fake(false)).expect_err("smoke fails").to_string();
    assert!(e.contains("fake failure"), "{e}");
    assert_eq!(fs::read_to_string(&fx.config).unwrap(), before_config);
    assert_eq!(fx.model_files(), before_files, "the new model's folder is removed, the old one untouched");

    // A wrong checksum on the second bundle: the same.
    fs::write(fx.bundle.join("manifest.toml"), manifest("models/fake.gguf", &sha(FAKE_MODEL), None)).unwrap();
    provision(&fx.opts(false), &Fake(true)).expect_err("checksum");
    assert_eq!(fs::read_to_string(&fx.config).unwrap(), before_config);
    assert_eq!(fx.model_files(), before_files);
}

#[test]
fn a_dry_run_changes_nothing() {
    let fx = Fixture::new(&sha(FAKE_MODEL));
    let r = provision(&fx.opts(true), &Fake(false)).unwrap();
    assert!(r.dry_run);
    assert_eq!(r.models[0].action, "verified");
    assert_eq!(fs::read_to_string(&fx.config).unwrap(), OLD_CONFIG);
    assert!(!fx.models.exists());
    assert!(!fx.config.with_extension("toml.bak").exists());
    assert!(render_report(&r).starts_with("dry run: nothing was changed"));

    // And it still catches a bad checksum.
    let bad = Fixture::new(&sha(b"x"));
    assert!(provision(&bad.opts(true), &Fake(true)).unwrap_err().to_string().contains("checksum mismatch"));
}

#[test]
fn refusals_before_any_copy() {
    for (what, edit, expect) in [
        ("a wrong declared size", ("size = ", "size = 1"), "the manifest says"),
        ("an invalid resulting config", ("upstream = \"openai\"", "upstream = \"nope\""), "use_cases[1].upstream"),
        ("an unmet host requirement", ("min_cpus = 1", "min_cpus = 100000"), "does not meet the bundle's requirements"),
        ("a missing file", ("file = \"models/fake.gguf\"", "file = \"models/missing.gguf\""), "missing"),
    ] {
        let fx = Fixture::new(&sha(FAKE_MODEL));
        let m = fs::read_to_string(fx.bundle.join("manifest.toml")).unwrap();
        let m = if edit.0 == "size = " {
            m.replace(&format!("size = {}", FAKE_MODEL.len()), edit.1)
        } else {
            assert!(m.contains(edit.0), "{what}");
            m.replace(edit.0, edit.1)
        };
        fs::write(fx.bundle.join("manifest.toml"), m).unwrap();
        let e = format!("{:#}", provision(&fx.opts(false), &Fake(true)).expect_err(what));
        assert!(e.contains(expect), "{what}: {e}");
        assert_eq!(fs::read_to_string(&fx.config).unwrap(), OLD_CONFIG, "{what}");
        assert!(!fx.models.exists(), "{what}: nothing copied");
    }
}

#[test]
fn tar_bundles_install_like_folders() {
    for gzip in [false, true] {
        let fx = Fixture::new(&sha(FAKE_MODEL));
        let name = if gzip { "bundle.tar.gz" } else { "bundle.tar" };
        let tar_path = fx.root.join(name);
        let f = fs::File::create(&tar_path).unwrap();
        let w: Box<dyn std::io::Write> =
            if gzip { Box::new(flate2::write::GzEncoder::new(f, flate2::Compression::fast())) } else { Box::new(f) };
        let mut b = tar::Builder::new(w);
        // Model first, manifest last: the reader must not depend on the order.
        for f in ["models/fake.gguf", "licences/FAKE.txt", "manifest.toml"] {
            let name = if gzip { format!("./{f}") } else { f.to_string() };
            b.append_path_with_name(fx.bundle.join(f), name).unwrap();
        }
        b.into_inner().unwrap().flush().unwrap();
        let mut opts = fx.opts(false);
        opts.bundle = tar_path;
        let r = provision(&opts, &Fake(true)).unwrap();
        assert_eq!(r.models[0].action, "copied", "{name}");
        assert_eq!(fs::read(&r.models[0].path).unwrap(), FAKE_MODEL, "{name}");
        assert!(r.source.starts_with(if gzip { "tar.gz" } else { "tar " }), "{}", r.source);
    }
}

#[test]
fn a_missing_config_file_is_created() {
    let fx = Fixture::new(&sha(FAKE_MODEL));
    fs::remove_file(&fx.config).unwrap();
    let r = provision(&fx.opts(false), &SkipChecks).unwrap();
    assert!(r.backup.is_none());
    assert!(r.smoke.iter().all(|s| s.status == StepStatus::Skipped));
    let text = fs::read_to_string(&fx.config).unwrap();
    assert!(text.contains("[[models]]"), "{text}");
}

/// The test model: `$GENSET_TEST_MODEL`, else where provisioning/fetch-test-model.sh puts it.
/// Fails (never skips) when missing.
fn test_model() -> PathBuf {
    let path = match std::env::var_os("GENSET_TEST_MODEL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/genset/models/gemma-3-270m-q4_k_m.gguf"),
    };
    assert!(
        path.is_file(),
        "the test model is missing at {}: run provisioning/fetch-test-model.sh or set GENSET_TEST_MODEL",
        path.display()
    );
    path
}

/// The example bundle of `provisioning/example-bundle`, with the real test model linked in.
fn example_bundle(root: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../provisioning/example-bundle");
    let b = root.join("example-bundle");
    fs::create_dir_all(b.join("models")).unwrap();
    fs::create_dir_all(b.join("licences")).unwrap();
    fs::copy(src.join("manifest.toml"), b.join("manifest.toml")).unwrap();
    fs::copy(src.join("licences/GEMMA-NOTICE.txt"), b.join("licences/GEMMA-NOTICE.txt")).unwrap();
    std::os::unix::fs::symlink(test_model(), b.join("models/gemma-3-270m-q4_k_m.gguf")).unwrap();
    b
}

#[test]
fn the_example_bundle_verifies_with_the_real_model() {
    let fx = Fixture::new(&sha(FAKE_MODEL));
    let mut opts = fx.opts(true);
    opts.bundle = example_bundle(&fx.root);
    opts.ignore_host_checks = true; // CPU flags of CI machines are not this test's concern
    let r = provision(&opts, &Fake(true)).unwrap();
    assert_eq!(r.models.len(), 1);
    assert_eq!(r.models[0].sha256, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818");
    assert_eq!(r.models[0].bytes, 253_113_024);
    assert_eq!(fs::read_to_string(&fx.config).unwrap(), OLD_CONFIG);
}

#[test]
fn the_example_bundle_installs_loads_and_runs_its_canaries() {
    let fx = Fixture::new(&sha(FAKE_MODEL));
    let mut opts = fx.opts(false);
    opts.bundle = example_bundle(&fx.root);
    opts.ignore_host_checks = true;
    let r = provision(&opts, &EngineChecks::default()).unwrap();
    assert_eq!(r.smoke.len(), 1);
    assert_eq!(r.smoke[0].status, StepStatus::Passed, "{:?}", r.smoke);
    assert!(!r.canaries.is_empty());
    assert!(r.canaries.iter().all(|c| c.status != StepStatus::Skipped || !c.required), "{:?}", r.canaries);
    let cfg = Config::load(&fx.config).unwrap();
    assert_eq!(cfg.models[0].name, "gemma-270m");
    assert!(cfg.models[0].path.as_ref().unwrap().starts_with(&fx.models));
}

#[test]
fn the_shipped_config_and_the_example_manifest_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = fs::read_to_string(root.join("packaging/config/genset.toml")).unwrap();
    let cfg = Config::from_toml(&text, Path::new("/etc/genset/genset.toml")).unwrap();
    assert_eq!(cfg.store.url, "sqlite:///var/lib/genset/genset.db");
    assert_eq!(cfg.admin.token_file, Path::new("/etc/genset/admin.token"));
    assert_eq!(cfg.upstreams.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["openai", "anthropic"]);
    assert!(cfg.upstreams.iter().all(|u| u.api_key.is_none()), "no secrets in the shipped file");
    let m = Manifest::parse(&fs::read_to_string(root.join("provisioning/example-bundle/manifest.toml")).unwrap()).unwrap();
    assert_eq!(m.models[0].sha256, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818");
}
