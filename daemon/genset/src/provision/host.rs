//! Host checks: what this machine offers (CPU flags, CPUs, memory, free disk, NVIDIA GPUs)
//! against what the bundle needs. Gathering facts touches the system; judging them is a pure
//! function, tested with made-up hosts.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::manifest::{GpuNeed, Requirements};
use super::progress::human_bytes;
use crate::config::parse_size;

/// What this machine offers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostFacts {
    pub arch: String,
    pub cpu_flags: Vec<String>,
    pub cpus: usize,
    pub mem_total: Option<u64>,
    pub mem_available: Option<u64>,
    /// Free bytes (for unprivileged users) on the models directory's filesystem.
    pub disk_free: Option<u64>,
    pub gpus: Vec<Gpu>,
    /// Why nvidia-smi gave no answer (not installed, failed), when it did not.
    pub gpu_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    pub name: String,
    pub memory: u64,
    pub driver: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostCheck {
    pub check: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

impl HostFacts {
    /// Look at this machine. `models_dir` may not exist yet: its nearest existing ancestor
    /// tells the filesystem.
    pub fn gather(models_dir: &Path) -> HostFacts {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let (gpus, gpu_note) = nvidia_smi();
        HostFacts {
            arch: std::env::consts::ARCH.to_string(),
            cpu_flags: cpu_flags(&cpuinfo),
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            mem_total: meminfo_kib(&meminfo, "MemTotal").map(|k| k * 1024),
            mem_available: meminfo_kib(&meminfo, "MemAvailable").map(|k| k * 1024),
            disk_free: disk_free(models_dir),
            gpus,
            gpu_note,
        }
    }
}

/// The flags of the first processor in /proc/cpuinfo (`flags` on x86, `Features` on ARM).
pub fn cpu_flags(cpuinfo: &str) -> Vec<String> {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "flags" | "Features").then(|| v.split_whitespace().map(str::to_string).collect())
        })
        .unwrap_or_default()
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn disk_free(dir: &Path) -> Option<u64> {
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.exists() {
            let st = rustix::fs::statvfs(d).ok()?;
            return Some(st.f_bavail.saturating_mul(st.f_frsize));
        }
        p = d.parent();
    }
    None
}

/// GPUs as nvidia-smi reports them; none (with a note) when it is absent or fails.
fn nvidia_smi() -> (Vec<Gpu>, Option<String>) {
    let out = Command::new("nvidia-smi").args(["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"]).output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (vec![], Some("nvidia-smi not installed".into())),
        Err(e) => (vec![], Some(format!("nvidia-smi: {e}"))),
        Ok(o) if !o.status.success() => {
            let msg = String::from_utf8_lossy(&o.stdout).trim().to_string();
            (vec![], Some(format!("nvidia-smi failed: {}", if msg.is_empty() { o.status.to_string() } else { msg })))
        }
        Ok(o) => (parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)), None),
    }
}

/// Lines like `NVIDIA H100 80GB HBM3, 81559, 550.54.15` (memory in MiB).
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split(',').map(str::trim);
            let name = parts.next()?.to_string();
            let mib: u64 = parts.next()?.parse().ok()?;
            let driver = parts.next().unwrap_or("").to_string();
            Some(Gpu { name, memory: mib << 20, driver })
        })
        .collect()
}

/// Judge the host against the bundle. `copy_bytes`: what provisioning will write into the
/// models directory; `model_bytes`: all the bundle's models (they must fit in memory).
pub fn judge(req: &Requirements, facts: &HostFacts, copy_bytes: u64, model_bytes: u64) -> Vec<HostCheck> {
    let mut out = Vec::new();
    let mut push = |check, verdict, detail: String| out.push(HostCheck { check, verdict, detail });

    if !req.cpu_features.is_empty() {
        let missing: Vec<&str> = req.cpu_features.iter().filter(|f| !facts.cpu_flags.iter().any(|h| h == *f)).map(String::as_str).collect();
        if missing.is_empty() {
            push("cpu features", Verdict::Pass, format!("{} present", req.cpu_features.join(", ")));
        } else {
            push("cpu features", Verdict::Fail, format!("missing {} ({} CPU)", missing.join(", "), facts.arch));
        }
    }

    match req.min_cpus {
        Some(n) if facts.cpus < n => push("cpus", Verdict::Fail, format!("{} available, the bundle needs {n}", facts.cpus)),
        Some(n) => push("cpus", Verdict::Pass, format!("{} available (needs {n})", facts.cpus)),
        None => push("cpus", Verdict::Pass, format!("{} available", facts.cpus)),
    }

    let min_ram = req.min_ram.as_deref().and_then(|s| parse_size(s).ok()).map(|v| v as u64);
    // The weights are mapped into memory; KV caches and the daemon come on top.
    let estimate = model_bytes + (512 << 20);
    match facts.mem_total {
        None => push("memory", Verdict::Warn, "cannot read /proc/meminfo".into()),
        Some(total) => match min_ram {
            Some(need) if total < need => {
                push("memory", Verdict::Fail, format!("{} total, the bundle needs {}", human_bytes(total), human_bytes(need)))
            }
            _ if total < estimate => push(
                "memory",
                Verdict::Warn,
                format!("{} total; the models alone take {}: expect swapping", human_bytes(total), human_bytes(model_bytes)),
            ),
            Some(need) => push("memory", Verdict::Pass, format!("{} total (needs {})", human_bytes(total), human_bytes(need))),
            None => push("memory", Verdict::Pass, format!("{} total (models: {})", human_bytes(total), human_bytes(model_bytes))),
        },
    }

    let extra = req.min_disk.as_deref().and_then(|s| parse_size(s).ok()).unwrap_or(0) as u64;
    let need = copy_bytes + extra + (64 << 20);
    match facts.disk_free {
        None => push("disk", Verdict::Warn, "cannot tell the free space of the models directory".into()),
        Some(free) if free < need => push(
            "disk",
            Verdict::Fail,
            format!("{} free in the models directory, provisioning needs {}", human_bytes(free), human_bytes(need)),
        ),
        Some(free) => push("disk", Verdict::Pass, format!("{} free (needs {})", human_bytes(free), human_bytes(need))),
    }

    let min_gpu = req.min_gpu_memory.as_deref().and_then(|s| parse_size(s).ok()).map(|v| v as u64);
    let gpu_needed = req.gpu == GpuNeed::Required || min_gpu.is_some();
    let best = facts.gpus.iter().map(|g| g.memory).max();
    let seen = if facts.gpus.is_empty() {
        facts.gpu_note.clone().unwrap_or_else(|| "no NVIDIA GPU".into())
    } else {
        facts.gpus.iter().map(|g| format!("{} ({}, driver {})", g.name, human_bytes(g.memory), g.driver)).collect::<Vec<_>>().join("; ")
    };
    match (gpu_needed, best, min_gpu) {
        (true, None, _) => push("gpu", Verdict::Fail, format!("the bundle needs an NVIDIA GPU: {seen}")),
        (_, Some(have), Some(need)) if have < need => {
            push("gpu", Verdict::Fail, format!("{seen}; the bundle needs {} of GPU memory", human_bytes(need)))
        }
        (_, _, _) if req.gpu == GpuNeed::None => push("gpu", Verdict::Pass, format!("not used ({seen})")),
        _ => push("gpu", Verdict::Pass, seen),
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn host() -> HostFacts {
        HostFacts {
            arch: "x86_64".into(),
            cpu_flags: cpu_flags("processor: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"),
            cpus: 4,
            mem_total: Some(8 << 30),
            mem_available: Some(6 << 30),
            disk_free: Some(10 << 30),
            gpus: vec![],
            gpu_note: Some("nvidia-smi not installed".into()),
        }
    }

    /// Requirements as TOML, the expected verdict of the named check.
    fn check(req: &str, facts: HostFacts, copy: u64, name: &str, want: Verdict) {
        let req: Requirements = toml::from_str(req).unwrap();
        let got = judge(&req, &facts, copy, copy);
        let c = got.iter().find(|c| c.check == name).unwrap_or_else(|| panic!("no {name} check in {got:?}"));
        assert_eq!(c.verdict, want, "{req:?}: {c:?}");
    }

    #[test]
    fn verdicts() {
        check("cpu_features = [\"avx2\", \"fma\"]", host(), 0, "cpu features", Verdict::Pass);
        check("cpu_features = [\"avx512f\"]", host(), 0, "cpu features", Verdict::Fail);
        check("min_cpus = 8", host(), 0, "cpus", Verdict::Fail);
        check("min_ram = \"16GiB\"", host(), 0, "memory", Verdict::Fail);
        check("min_ram = \"4GiB\"", host(), 0, "memory", Verdict::Pass);
        check("", host(), 9 << 30, "memory", Verdict::Warn);
        check("", host(), 11 << 30, "disk", Verdict::Fail);
        check("min_disk = \"1GiB\"", host(), 9 << 30, "disk", Verdict::Fail);
        check("", host(), 1 << 30, "disk", Verdict::Pass);
        check("gpu = \"required\"", host(), 0, "gpu", Verdict::Fail);
        check("", host(), 0, "gpu", Verdict::Pass);
        let mut with_gpu = host();
        with_gpu.gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559, 550.54.15\n");
        check("gpu = \"required\"\nmin_gpu_memory = \"40GiB\"", with_gpu.clone(), 0, "gpu", Verdict::Pass);
        check("min_gpu_memory = \"96GiB\"", with_gpu, 0, "gpu", Verdict::Fail);
    }

    #[test]
    fn parses_proc_files() {
        assert_eq!(meminfo_kib("MemTotal:       16314736 kB\nMemFree: 1 kB\n", "MemTotal"), Some(16314736));
        assert_eq!(cpu_flags("Features\t: fp asimd evtstrm\n"), vec!["fp", "asimd", "evtstrm"]);
        let g = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559, 550.54.15\n");
        assert_eq!(g[0].memory, 81559 << 20);
    }
}
