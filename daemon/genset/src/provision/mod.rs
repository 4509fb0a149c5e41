//! `gensetctl provision BUNDLE`: install a provisioning bundle (models, use cases, upstream
//! chain, canaries) on an appliance that may have no internet, all or nothing.
//!
//! The steps, in order; the first failure stops everything and leaves the previous
//! provisioning (configuration file and installed models) exactly as it was:
//!
//! 1. read the bundle ([`bundle`]: a directory or a tar stream) and its [`manifest`];
//! 2. check the host against the bundle's requirements ([`host`]);
//! 3. render the new configuration ([`render`]) and validate it with [`Config::from_toml`],
//!    before any byte is copied;
//! 4. copy each model into a staging folder in the models directory while hashing it; a
//!    size or checksum mismatch stops here; then move each into its own folder, named by
//!    its checksum, so no file of the previous provisioning is ever overwritten;
//! 5. load each model and run a smoke generation, then the canaries ([`checks`]);
//! 6. commit: write the configuration to a temporary file, keep the old one as
//!    `genset.toml.bak`, rename the new one into place; then record the bundle's manifest
//!    (canaries, policies) and the report under `<state>/provisioning/`.
//!
//! Until step 6 every new folder is removed again on failure ([`Rollback`]). `--dry-run`
//! runs steps 1-3 and the checksum pass of 4 without writing anything.

pub mod bundle;
pub mod checks;
pub mod host;
pub mod manifest;
pub mod progress;
pub mod render;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde::Serialize;

use self::bundle::Bundle;
use self::checks::{ModelChecks, StepResult};
use self::host::{HostCheck, HostFacts, Verdict};
use self::manifest::{Manifest, normalize};
use self::progress::{Progress, human_bytes};
use crate::config::Config;

/// `gensetctl provision` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ProvisionArgs {
    /// The bundle: a directory holding manifest.toml, or a .tar / .tar.gz of one.
    pub bundle: PathBuf,
    /// Where models are installed, one folder per file checksum.
    #[arg(long, default_value = "/var/lib/genset/models")]
    pub models_dir: PathBuf,
    /// Check the host, verify every checksum and validate the resulting configuration;
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go on when a host check fails (the failures stay in the report).
    #[arg(long)]
    pub ignore_host_checks: bool,
    /// Do not load the models for a smoke generation, nor run the canaries (for hosts
    /// without the memory to hold the models twice while gensetd runs).
    #[arg(long)]
    pub no_smoke: bool,
}

/// Everything provisioning needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub bundle: PathBuf,
    /// The configuration file to rewrite (it may not exist yet).
    pub config: PathBuf,
    pub models_dir: PathBuf,
    /// Where the bundle's manifest and the report are kept (default: beside the models
    /// directory, `/var/lib/genset/provisioning`).
    pub record_dir: PathBuf,
    pub dry_run: bool,
    pub ignore_host_checks: bool,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Options {
    pub fn new(args: &ProvisionArgs, config: &Path) -> anyhow::Result<Options> {
        let abs = |p: &Path| -> anyhow::Result<PathBuf> {
            Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().context("current directory")?.join(p) })
        };
        let models_dir = abs(&args.models_dir)?;
        let record_dir =
            models_dir.parent().map(|p| p.join("provisioning")).unwrap_or_else(|| PathBuf::from("/var/lib/genset/provisioning"));
        Ok(Options {
            bundle: abs(&args.bundle)?,
            config: abs(config)?,
            models_dir,
            record_dir,
            dry_run: args.dry_run,
            ignore_host_checks: args.ignore_host_checks,
            progress: true,
        })
    }
}

/// What was done (or, with `--dry-run`, what would be).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bundle: String,
    pub version: String,
    pub source: String,
    pub dry_run: bool,
    pub host: Vec<HostCheck>,
    pub models: Vec<ModelReport>,
    pub config: PathBuf,
    pub backup: Option<PathBuf>,
    pub upstreams: Vec<String>,
    pub use_cases: Vec<String>,
    pub unchecked_credentials: Vec<String>,
    pub kept_aside: Vec<String>,
    pub smoke: Vec<StepResult>,
    pub canaries: Vec<StepResult>,
    pub record: Option<PathBuf>,
    /// Model folders of earlier provisionings that the new configuration no longer uses.
    pub unreferenced: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub name: String,
    pub licence: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    /// `copied`, `already installed` or `verified` (dry run).
    pub action: &'static str,
    pub bytes_per_s: f64,
}

/// Paths created by this run, removed again unless the run commits.
struct Rollback {
    paths: Vec<PathBuf>,
    committed: bool,
}

impl Rollback {
    fn new() -> Self {
        Rollback { paths: Vec::new(), committed: false }
    }
    fn add(&mut self, p: PathBuf) {
        self.paths.push(p);
    }
    fn commit(&mut self) {
        self.committed = true;
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for p in self.paths.iter().rev() {
            let r = if p.is_dir() { fs::remove_dir_all(p) } else { fs::remove_file(p) };
            if let Err(e) = r
                && e.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("gensetctl: rollback: cannot remove {}: {e}", p.display());
            }
        }
    }
}

/// One bundle file to install: where it comes from, where it goes, what it must hash to.
struct Planned {
    source: PathBuf,
    /// The folder (named by checksum) in the models directory.
    dir: PathBuf,
    dest: PathBuf,
    sha256: Option<String>,
    size: u64,
    model: Option<usize>,
}

fn step(opts: &Options, n: usize, what: &str) {
    if opts.progress {
        eprintln!("[{n}/6] {what}");
    }
}

/// The folder a model is installed in: the models directory, then the first 16 hex digits
/// of its checksum (content-addressed: a new provisioning never overwrites an old file).
pub fn model_dir(models_dir: &Path, sha256: &str) -> PathBuf {
    models_dir.join(sha256.to_ascii_lowercase().get(..16).unwrap_or(sha256))
}

/// Install a bundle (see the module documentation for the steps).
pub fn provision(opts: &Options, checks: &dyn ModelChecks) -> anyhow::Result<Report> {
    // 1. the bundle
    step(opts, 1, &format!("reading the bundle {}", opts.bundle.display()));
    let bundle = Bundle::open(&opts.bundle)?;
    let manifest_text = bundle.manifest_text()?;
    let m = Manifest::parse(&manifest_text)?;
    let mut warnings = Vec::new();

    let mut planned: Vec<Planned> = Vec::new();
    let mut model_paths = Vec::new();
    for (i, e) in m.models.iter().enumerate() {
        let dir = model_dir(&opts.models_dir, &e.sha256);
        let base = e.file.file_name().context("a model file without a name")?;
        model_paths.push(dir.join(base));
        let mut add = |p: Planned| {
            // Two entries with the same content land in the same place: install it once.
            if !planned.iter().any(|q| q.dest == p.dest) {
                planned.push(p);
            }
        };
        add(Planned {
            source: normalize(&e.file),
            dest: dir.join(base),
            dir: dir.clone(),
            sha256: Some(e.sha256.to_ascii_lowercase()),
            size: 0,
            model: Some(i),
        });
        if let Some(l) = &e.licence_file {
            let base = l.file_name().context("a licence file without a name")?;
            add(Planned { source: normalize(l), dest: dir.join(base), dir, sha256: None, size: 0, model: None });
        }
    }
    let wanted: Vec<PathBuf> = planned.iter().map(|p| p.source.clone()).collect();
    let sizes = bundle.sizes(&wanted)?;
    for p in &mut planned {
        p.size = sizes.get(&p.source).copied().unwrap_or(0);
        if let Some(i) = p.model
            && let Some(declared) = m.models[i].size
            && declared != p.size
        {
            bail!("models[{i}] ({}): {} has {} bytes, the manifest says {declared}", m.models[i].name, p.source.display(), p.size);
        }
    }
    // Models already installed by an earlier provisioning (same checksum, same size) are
    // verified in place instead of copied.
    let installed: Vec<bool> = planned.iter().map(|p| fs::metadata(&p.dest).is_ok_and(|md| md.is_file() && md.len() == p.size)).collect();
    let model_bytes: u64 = planned.iter().filter(|p| p.model.is_some()).map(|p| p.size).sum();
    let copy_bytes: u64 = planned.iter().zip(&installed).filter(|(_, i)| !**i).map(|(p, _)| p.size).sum();

    // 2. the host
    step(opts, 2, "checking the host");
    let facts = HostFacts::gather(&opts.models_dir);
    let host = host::judge(&m.requirements, &facts, copy_bytes, model_bytes);
    if opts.progress {
        for c in &host {
            eprintln!("  {:<4} {:<13} {}", verdict_label(c.verdict), c.check, c.detail);
        }
    }
    let failed: Vec<String> = host.iter().filter(|c| c.verdict == Verdict::Fail).map(|c| format!("{}: {}", c.check, c.detail)).collect();
    if !failed.is_empty() {
        if opts.ignore_host_checks {
            warnings.push(format!("host checks failed and were ignored: {}", failed.join("; ")));
        } else {
            bail!("this host does not meet the bundle's requirements: {} (--ignore-host-checks to go on anyway)", failed.join("; "));
        }
    }

    // 3. the new configuration, validated before anything is copied
    step(opts, 3, &format!("validating the new configuration for {}", opts.config.display()));
    let current = match fs::read_to_string(&opts.config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", opts.config.display())),
    };
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let rendered = render::render(&current, &m, &model_paths, &stamp)?;
    let new_cfg = Config::from_toml(&rendered.validation_text, &opts.config)
        .map_err(|e| anyhow::anyhow!("the configuration this bundle would produce is invalid: {e}"))?;

    // 4. checksums, and the copy into place
    step(opts, 4, if opts.dry_run { "verifying checksums (dry run: nothing is copied)" } else { "verifying checksums and copying models" });
    let mut rollback = Rollback::new();
    let _lock = if opts.dry_run { None } else { Some(lock(&opts.models_dir, &mut rollback)?) };
    if !opts.dry_run {
        remove_stale_staging(&opts.models_dir);
    }
    let owner = fs::metadata(&opts.models_dir).map(|md| (md.uid(), md.gid())).ok();
    let mut model_reports = Vec::new();
    // Verify the installed copies first: a damaged one is copied again.
    let mut todo: Vec<usize> = Vec::new();
    for (k, p) in planned.iter().enumerate() {
        if installed[k] {
            if let Some(want) = &p.sha256 {
                let mut f = File::open(&p.dest).with_context(|| format!("cannot read {}", p.dest.display()))?;
                let mut pr = Progress::new(format!("verify {}", display_name(p)), p.size, opts.progress);
                let (n, got) = bundle::copy_hashing(&mut f, None, &mut pr)?;
                if &got == want {
                    model_reports.push((k, ModelReport::new(&m, p, "already installed", pr.rate(n))));
                    continue;
                }
                warnings.push(format!("{} was damaged (sha256 {got}); copied again", p.dest.display()));
            } else {
                continue;
            }
        }
        todo.push(k);
    }
    let staging = opts.models_dir.join(format!(".provision-{}", std::process::id()));
    if !opts.dry_run && !todo.is_empty() {
        fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
        rollback.add(staging.clone());
    }
    let mut wanted: Vec<PathBuf> = Vec::new();
    for k in &todo {
        if !wanted.contains(&planned[*k].source) {
            wanted.push(planned[*k].source.clone());
        }
    }
    bundle.for_each(&wanted, |src, r| {
        // A bundle file may be installed in several places (one licence for two models):
        // read it once, then copy the staged file.
        let ks: Vec<usize> = todo.iter().copied().filter(|k| planned[*k].source == src).collect();
        let Some(&first) = ks.first() else { return Ok(()) };
        let p = &planned[first];
        let mut pr = Progress::new(format!("{} {}", if opts.dry_run { "verify" } else { "copy" }, display_name(p)), p.size, opts.progress);
        let staged = staging.join(format!("{first}"));
        let (n, got) = if opts.dry_run {
            bundle::copy_hashing(r, None, &mut pr)?
        } else {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&staged)
                .with_context(|| format!("cannot create {}", staged.display()))?;
            let res = bundle::copy_hashing(r, Some(&mut f), &mut pr).with_context(|| format!("copying {}", src.display()))?;
            f.sync_all()?;
            res
        };
        if n != p.size {
            bail!("{}: read {n} bytes, expected {}", src.display(), p.size);
        }
        if let Some(want) = &p.sha256
            && &got != want
        {
            bail!("checksum mismatch for {}: the manifest says sha256 {want}, the file has {got}; nothing was installed", src.display());
        }
        let action = if opts.dry_run { "verified" } else { "copied" };
        for &k in &ks {
            if k != first && !opts.dry_run {
                fs::copy(&staged, staging.join(format!("{k}")))?;
            }
            model_reports.push((k, ModelReport::new(&m, &planned[k], action, pr.rate(n))));
        }
        Ok(())
    })?;
    if !opts.dry_run {
        for &k in &todo {
            let p = &planned[k];
            let staged = staging.join(format!("{k}"));
            if !staged.exists() {
                continue;
            }
            if !p.dir.exists() {
                fs::create_dir_all(&p.dir).with_context(|| format!("cannot create {}", p.dir.display()))?;
                fs::set_permissions(&p.dir, fs::Permissions::from_mode(0o750))?;
                rollback.add(p.dir.clone());
                chown(&p.dir, owner);
            }
            chown(&staged, owner);
            fs::rename(&staged, &p.dest).with_context(|| format!("cannot move {} into place", p.dest.display()))?;
            if let Some(sha) = &p.sha256 {
                // The verdict the engine reads (`<model>.verified`: "<sha256> <mtime s>"), so
                // gensetd does not hash the file again at its next start.
                write_verified(&p.dest, sha, owner);
            }
        }
        if staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
    }
    model_reports.sort_by_key(|(k, _)| *k);
    let models: Vec<ModelReport> = model_reports.into_iter().filter(|(k, _)| planned[*k].model.is_some()).map(|(_, r)| r).collect();

    // 5. the engine: smoke generation and canaries
    let (smoke, canaries) = if opts.dry_run {
        (vec![], vec![])
    } else {
        step(opts, 5, "loading the models (smoke generation) and running the canaries");
        let smoke = checks.smoke(&new_cfg, &m);
        let canaries = checks.canaries(&new_cfg, &m);
        if opts.progress {
            for s in smoke.iter().chain(&canaries) {
                eprintln!("  {} {}: {}", status_label(s), s.name, s.detail);
            }
        }
        if let Some(f) = smoke.iter().chain(&canaries).find(|s| s.blocks()) {
            bail!("{} failed: {}; nothing was changed", f.name, f.detail);
        }
        (smoke, canaries)
    };

    let referenced: HashSet<PathBuf> = model_paths.iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
    let unreferenced = old_model_dirs(&opts.models_dir, &referenced);
    let mut report = Report {
        bundle: m.bundle.name.clone(),
        version: m.bundle.version.clone(),
        source: bundle.describe(),
        dry_run: opts.dry_run,
        host,
        models,
        config: opts.config.clone(),
        backup: None,
        upstreams: new_cfg.upstreams.iter().map(|u| u.name.clone()).collect(),
        use_cases: new_cfg.use_cases.iter().map(|u| u.name.clone()).collect(),
        unchecked_credentials: rendered.unchecked_credentials,
        kept_aside: rendered.kept_aside,
        smoke,
        canaries,
        record: None,
        unreferenced,
        warnings,
    };
    if opts.dry_run {
        return Ok(report);
    }

    // 6. commit
    step(opts, 6, &format!("writing {}", opts.config.display()));
    report.backup = write_config(&opts.config, &rendered.text)?;
    rollback.commit();
    match write_record(&opts.record_dir, &manifest_text, &report, owner) {
        Ok(()) => report.record = Some(opts.record_dir.clone()),
        Err(e) => report.warnings.push(format!("the provisioning record was not written: {e:#}")),
    }
    Ok(report)
}

impl ModelReport {
    fn new(m: &Manifest, p: &Planned, action: &'static str, rate: f64) -> ModelReport {
        let e = p.model.map(|i| &m.models[i]);
        ModelReport {
            name: e.map(|e| e.name.clone()).unwrap_or_default(),
            licence: e.map(|e| e.licence.clone()).unwrap_or_default(),
            path: p.dest.clone(),
            bytes: p.size,
            sha256: p.sha256.clone().unwrap_or_default(),
            action,
            bytes_per_s: rate,
        }
    }
}

fn display_name(p: &Planned) -> String {
    p.source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn status_label(s: &StepResult) -> &'static str {
    match (s.status, s.required) {
        (checks::StepStatus::Passed, _) => "passed ",
        (checks::StepStatus::Skipped, _) => "skipped",
        (checks::StepStatus::Failed, true) => "FAILED ",
        (checks::StepStatus::Failed, false) => "failed (not required)",
    }
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "ok",
        Verdict::Warn => "warn",
        Verdict::Fail => "FAIL",
    }
}

/// One provisioning at a time per models directory.
fn lock(models_dir: &Path, rollback: &mut Rollback) -> anyhow::Result<File> {
    if !models_dir.exists() {
        fs::create_dir_all(models_dir).with_context(|| format!("cannot create the models directory {}", models_dir.display()))?;
        fs::set_permissions(models_dir, fs::Permissions::from_mode(0o750))?;
        rollback.add(models_dir.to_path_buf());
    }
    let path = models_dir.join(".provision.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| anyhow::anyhow!("another gensetctl provision is running ({} is locked)", path.display()))?;
    Ok(f)
}

fn write_verified(path: &Path, sha: &str, owner: Option<(u32, u32)>) {
    let Some(mtime) = fs::metadata(path).ok().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
    else {
        return;
    };
    let side = PathBuf::from(format!("{}.verified", path.display()));
    if fs::write(&side, format!("{sha} {}\n", mtime.as_secs())).is_ok() {
        chown(&side, owner);
    }
}

/// Staging folders left by runs that were killed (we hold the lock: none is running).
fn remove_stale_staging(models_dir: &Path) {
    let Ok(rd) = fs::read_dir(models_dir) else { return };
    for e in rd.filter_map(Result::ok) {
        if e.file_name().to_string_lossy().starts_with(".provision-") && e.path().is_dir() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Give a new file or folder the models directory's owner (genset), when we are root.
fn chown(p: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
    }
}

/// Replace the configuration file atomically: a temporary file beside it (same owner and
/// mode), fsync, the old file kept as `<name>.bak`, rename, fsync the folder.
fn write_config(path: &Path, text: &str) -> anyhow::Result<Option<PathBuf>> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("the configuration path has no file name")?.to_string_lossy().into_owned();
    let old = fs::metadata(path).ok();
    let mode = old.as_ref().map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    let tmp = dir.join(format!("{name}.provision-{}", std::process::id()));
    let result = (|| -> anyhow::Result<Option<PathBuf>> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        if let Some(m) = &old {
            chown(&tmp, Some((m.uid(), m.gid())));
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        let backup = if old.is_some() {
            let bak = dir.join(format!("{name}.bak"));
            let bak_tmp = dir.join(format!("{name}.bak.provision-{}", std::process::id()));
            let _ = fs::remove_file(&bak_tmp);
            fs::hard_link(path, &bak_tmp)
                .or_else(|_| fs::copy(path, &bak_tmp).map(|_| ()))
                .with_context(|| format!("cannot keep a backup of {}", path.display()))?;
            fs::rename(&bak_tmp, &bak)?;
            Some(bak)
        } else {
            None
        };
        fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
        File::open(dir).and_then(|d| d.sync_all()).ok();
        Ok(backup)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Keep the bundle's manifest (canaries, policies, thresholds) and the report for the
/// daemon and for people; the previous record moves to `<dir>.previous`.
fn write_record(dir: &Path, manifest: &str, report: &Report, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    let new = dir.with_extension("new");
    let prev = dir.with_extension("previous");
    let _ = fs::remove_dir_all(&new);
    fs::create_dir_all(&new)?;
    fs::write(new.join("manifest.toml"), manifest)?;
    fs::write(new.join("report.json"), serde_json::to_string_pretty(report)?)?;
    for p in [new.clone(), new.join("manifest.toml"), new.join("report.json")] {
        chown(&p, owner);
    }
    if dir.exists() {
        let _ = fs::remove_dir_all(&prev);
        fs::rename(dir, &prev)?;
    }
    fs::rename(&new, dir)?;
    Ok(())
}

/// Checksum-named folders in the models directory that `keep` does not contain.
fn old_model_dirs(models_dir: &Path, keep: &HashSet<PathBuf>) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(models_dir) else { return vec![] };
    let mut out: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.len() == 16 && n.chars().all(|c| c.is_ascii_hexdigit()))
                && !keep.contains(p)
        })
        .collect();
    out.sort();
    out
}

/// The report for people.
pub fn render_report(r: &Report) -> String {
    let mut o = String::new();
    let head = if r.dry_run { "dry run: nothing was changed" } else { "provisioned" };
    let _ = writeln!(o, "{head}: bundle {} {} ({})", r.bundle, r.version, r.source);
    let _ = writeln!(o, "\nhost");
    for c in &r.host {
        let _ = writeln!(o, "  {:<4} {:<13} {}", verdict_label(c.verdict), c.check, c.detail);
    }
    let _ = writeln!(o, "\nmodels");
    if r.models.is_empty() {
        let _ = writeln!(o, "  (none in this bundle; the configured models are kept)");
    }
    for mr in &r.models {
        let _ = writeln!(
            o,
            "  {}  {}  {}  sha256 ok  {} ({}/s)\n      {}  licence: {}",
            mr.name,
            human_bytes(mr.bytes),
            &mr.sha256[..mr.sha256.len().min(16)],
            mr.action,
            human_bytes(mr.bytes_per_s as u64),
            mr.path.display(),
            mr.licence
        );
    }
    let _ = writeln!(o, "\nconfiguration  {}", r.config.display());
    let _ = writeln!(o, "  upstreams: {}", if r.upstreams.is_empty() { "-".into() } else { r.upstreams.join(", ") });
    let _ = writeln!(o, "  use cases: {}", if r.use_cases.is_empty() { "-".into() } else { r.use_cases.join(", ") });
    match (&r.backup, r.dry_run) {
        (_, true) => {
            let _ = writeln!(o, "  valid; would be written (the current file kept as {}.bak)", r.config.display());
        }
        (Some(b), false) => {
            let _ = writeln!(o, "  written; the previous file is {}", b.display());
        }
        (None, false) => {
            let _ = writeln!(o, "  written (there was no previous file)");
        }
    }
    for c in &r.unchecked_credentials {
        let _ = writeln!(o, "  note: {c}");
    }
    if !r.kept_aside.is_empty() {
        let _ = writeln!(o, "  kept in the provisioning record for the evaluator and failover policy (not in genset.toml yet):");
        for k in &r.kept_aside {
            let _ = writeln!(o, "    {k}");
        }
    }
    if !r.dry_run {
        let _ = writeln!(o, "\nsmoke generation and canaries");
        if r.smoke.is_empty() && r.canaries.is_empty() {
            let _ = writeln!(o, "  (nothing to run)");
        }
        for s in r.smoke.iter().chain(&r.canaries) {
            let _ = writeln!(o, "  {} {}: {}", status_label(s), s.name, s.detail);
        }
    }
    if let Some(rec) = &r.record {
        let _ = writeln!(o, "\nrecord  {}/manifest.toml, report.json", rec.display());
    }
    if !r.unreferenced.is_empty() {
        let _ = writeln!(o, "\nno longer used (remove them once the new models have proven themselves):");
        for p in &r.unreferenced {
            let _ = writeln!(o, "  {}", p.display());
        }
    }
    for w in &r.warnings {
        let _ = writeln!(o, "\nwarning: {w}");
    }
    if !r.dry_run {
        let _ = writeln!(
            o,
            "\nnext: systemctl restart gensetd   (models load at start; `systemctl reload` applies use cases and upstreams only)"
        );
    }
    o
}

/// `gensetctl provision`: runs on a blocking thread (the engine hooks may `block_on`).
pub async fn run_cli(args: ProvisionArgs, config: PathBuf, json: bool) -> anyhow::Result<String> {
    let opts = Options::new(&args, &config)?;
    let report = tokio::task::spawn_blocking(move || {
        if args.no_smoke { provision(&opts, &checks::SkipChecks) } else { provision(&opts, &checks::EngineChecks::default()) }
    })
    .await
    .context("provisioning panicked")??;
    if json { Ok(serde_json::to_string_pretty(&report)?) } else { Ok(render_report(&report)) }
}

#[cfg(test)]
mod tests;
