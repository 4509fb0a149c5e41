//! A progress line on stderr for long reads: percent, bytes, bytes/s. Redrawn in place on a
//! terminal (at most 10 times a second); one line per 10% otherwise, so logs stay short.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: u64,
    started: Instant,
    last_draw: Option<Instant>,
    last_decile: u64,
    tty: bool,
    enabled: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: u64, enabled: bool) -> Progress {
        Progress {
            label: label.into(),
            total,
            started: Instant::now(),
            last_draw: None,
            last_decile: 0,
            tty: std::io::stderr().is_terminal(),
            enabled,
        }
    }

    pub fn set(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        if self.tty {
            let now = Instant::now();
            if self.last_draw.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
                return;
            }
            self.last_draw = Some(now);
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K{}", self.line(done));
            let _ = e.flush();
        } else if let Some(decile) = done.saturating_mul(10).checked_div(self.total)
            && decile > self.last_decile
            && decile < 10
        {
            self.last_decile = decile;
            eprintln!("{}", self.line(done));
        }
    }

    pub fn finish(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{}", self.line(done));
    }

    /// Bytes per second so far.
    pub fn rate(&self, done: u64) -> f64 {
        let s = self.started.elapsed().as_secs_f64();
        if s > 0.0 { done as f64 / s } else { 0.0 }
    }

    fn line(&self, done: u64) -> String {
        let pct = if self.total > 0 { (done as f64 * 100.0 / self.total as f64).min(100.0) } else { 100.0 };
        format!(
            "  {}  {:>5.1}%  {} / {}  {}/s",
            self.label,
            pct,
            human_bytes(done),
            human_bytes(self.total),
            human_bytes(self.rate(done) as u64)
        )
    }
}

/// `253113024` -> `241.4 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_like_people_write_them() {
        for (n, s) in [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (253_113_024, "241.4 MiB"), (8 << 30, "8.0 GiB")] {
            assert_eq!(human_bytes(n), s);
        }
    }
}
