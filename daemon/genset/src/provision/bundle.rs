//! Where a bundle's bytes come from: a directory, or a tar file (optionally gzip-compressed)
//! read as a stream, never extracted whole: the manifest is found in a first pass, then
//! the listed files are read in one more pass in whatever order the archive has them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::manifest::{Manifest, normalize};

/// The most bytes a manifest may have.
const MAX_MANIFEST: u64 = 4 << 20;

pub enum Bundle {
    Dir(PathBuf),
    Tar { path: PathBuf, gzip: bool },
}

impl Bundle {
    /// Open a bundle: a directory holding `manifest.toml`, or a `.tar`/`.tar.gz`/`.tgz` file.
    pub fn open(path: &Path) -> anyhow::Result<Bundle> {
        let meta = std::fs::metadata(path).with_context(|| format!("bundle {}: cannot open", path.display()))?;
        if meta.is_dir() {
            return Ok(Bundle::Dir(path.to_path_buf()));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let gzip = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            true
        } else if name.ends_with(".tar") {
            false
        } else {
            // Sniff: gzip magic, else assume tar.
            let mut magic = [0u8; 2];
            let n = File::open(path)?.read(&mut magic)?;
            n == 2 && magic == [0x1f, 0x8b]
        };
        Ok(Bundle::Tar { path: path.to_path_buf(), gzip })
    }

    pub fn describe(&self) -> String {
        match self {
            Bundle::Dir(p) => format!("directory {}", p.display()),
            Bundle::Tar { path, gzip: true } => format!("tar.gz {}", path.display()),
            Bundle::Tar { path, gzip: false } => format!("tar {}", path.display()),
        }
    }

    fn tar(path: &Path, gzip: bool) -> anyhow::Result<tar::Archive<Box<dyn Read>>> {
        let f = BufReader::with_capacity(1 << 20, File::open(path).with_context(|| format!("bundle {}: cannot open", path.display()))?);
        let r: Box<dyn Read> = if gzip { Box::new(flate2::read::MultiGzDecoder::new(f)) } else { Box::new(f) };
        Ok(tar::Archive::new(r))
    }

    /// The manifest's text.
    pub fn manifest_text(&self) -> anyhow::Result<String> {
        match self {
            Bundle::Dir(d) => {
                let p = d.join("manifest.toml");
                let f = File::open(&p).with_context(|| format!("bundle: cannot read {}", p.display()))?;
                read_limited(f, &p.display().to_string())
            }
            Bundle::Tar { path, gzip } => {
                let mut ar = Self::tar(path, *gzip)?;
                for entry in ar.entries().context("bundle: not a tar archive")? {
                    let entry = entry.context("bundle: reading the tar archive")?;
                    let p = entry.path().context("bundle: an entry's name")?.into_owned();
                    if normalize(&p) == Path::new("manifest.toml") {
                        return read_limited(entry, "manifest.toml");
                    }
                }
                bail!("bundle {}: no manifest.toml in the archive", path.display())
            }
        }
    }

    pub fn manifest(&self) -> anyhow::Result<Manifest> {
        Ok(Manifest::parse(&self.manifest_text()?)?)
    }

    /// Size of each wanted file (by normalized bundle path), without reading contents.
    pub fn sizes(&self, wanted: &[PathBuf]) -> anyhow::Result<HashMap<PathBuf, u64>> {
        let mut out = HashMap::new();
        match self {
            Bundle::Dir(d) => {
                for w in wanted {
                    let p = d.join(w);
                    let m = std::fs::metadata(&p).with_context(|| format!("bundle: {} is missing", w.display()))?;
                    if !m.is_file() {
                        bail!("bundle: {} is not a regular file", w.display());
                    }
                    out.insert(normalize(w), m.len());
                }
            }
            Bundle::Tar { path, gzip } => {
                let want: Vec<PathBuf> = wanted.iter().map(|w| normalize(w)).collect();
                let mut ar = Self::tar(path, *gzip)?;
                for entry in ar.entries().context("bundle: not a tar archive")? {
                    let entry = entry.context("bundle: reading the tar archive")?;
                    let p = normalize(&entry.path().context("bundle: an entry's name")?);
                    if want.contains(&p) && entry.header().entry_type().is_file() {
                        out.insert(p, entry.size());
                    }
                }
                for w in &want {
                    if !out.contains_key(w) {
                        bail!("bundle: {} is missing from the archive", w.display());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Call `f(path, reader)` once for each wanted file (normalized bundle paths), in the
    /// bundle's order. A wanted file that is missing is an error.
    pub fn for_each(&self, wanted: &[PathBuf], mut f: impl FnMut(&Path, &mut dyn Read) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let want: Vec<PathBuf> = wanted.iter().map(|w| normalize(w)).collect();
        match self {
            Bundle::Dir(d) => {
                for w in &want {
                    let p = d.join(w);
                    let mut file = File::open(&p).with_context(|| format!("bundle: cannot open {}", w.display()))?;
                    f(w, &mut file)?;
                }
            }
            Bundle::Tar { path, gzip } => {
                let mut seen = Vec::new();
                let mut ar = Self::tar(path, *gzip)?;
                for entry in ar.entries().context("bundle: not a tar archive")? {
                    let mut entry = entry.context("bundle: reading the tar archive")?;
                    let p = normalize(&entry.path().context("bundle: an entry's name")?);
                    if want.contains(&p) && entry.header().entry_type().is_file() && !seen.contains(&p) {
                        f(&p, &mut entry)?;
                        seen.push(p);
                    }
                }
                for w in &want {
                    if !seen.contains(w) {
                        bail!("bundle: {} is missing from the archive", w.display());
                    }
                }
            }
        }
        Ok(())
    }
}

fn read_limited(r: impl Read, what: &str) -> anyhow::Result<String> {
    let mut s = String::new();
    r.take(MAX_MANIFEST + 1).read_to_string(&mut s).with_context(|| format!("bundle: cannot read {what} as UTF-8 text"))?;
    if s.len() as u64 > MAX_MANIFEST {
        bail!("bundle: {what} is larger than {} MiB", MAX_MANIFEST >> 20);
    }
    Ok(s)
}

/// Copy everything from `r` to `w` (or nowhere), hashing it, reporting progress. Returns
/// the byte count and the hex SHA-256.
pub fn copy_hashing(
    r: &mut dyn Read,
    mut w: Option<&mut dyn io::Write>,
    progress: &mut super::progress::Progress,
) -> io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..k]);
        if let Some(w) = w.as_mut() {
            w.write_all(&buf[..k])?;
        }
        n += k as u64;
        progress.set(n);
    }
    progress.finish(n);
    Ok((n, hex::encode(h.finalize())))
}
