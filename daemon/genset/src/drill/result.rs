//! A drill's figures and verdict, from observations (one per client request served during a
//! live drill, or per replayed request). Pure.

use serde::{Deserialize, Serialize};

use crate::config::{Config, UseCaseConfig};

/// One request of a drill.
#[derive(Debug, Clone)]
pub struct Observation {
    pub use_case: String,
    pub ts_ms: i64,
    /// Answered completely by a local model.
    pub ok: bool,
    /// Served by a local model (ok or not).
    pub local: bool,
    pub latency_ms: f64,
    /// Score against the cloud's recorded answer to the same prompt, when there is one.
    pub quality: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct UseCaseResult {
    pub use_case: String,
    pub requests: u64,
    pub succeeded: u64,
    pub p95_ms: Option<f64>,
    /// The use case's latency SLO (`readiness.p95_latency_ms`).
    pub slo_p95_ms: Option<u64>,
    pub quality: Option<f64>,
    pub quality_n: u64,
}

/// Replay: what the local engine carried against the recorded peak.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Capacity {
    /// Busiest 60 s of the replayed traffic as recorded, in requests per minute.
    pub recorded_peak_per_min: f64,
    /// The replay speed (1 = as recorded).
    pub speed: f64,
    /// Busiest 60 s of successful local answers during the replay (per minute; for a replay
    /// shorter than a minute, scaled from its duration).
    pub served_peak_per_min: f64,
    /// served / recorded peak: 1.0 means it carried the recorded peak.
    pub headroom: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct DrillResult {
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub served_locally: u64,
    pub success_rate: Option<f64>,
    /// Live: time from the start of the drill to the first local answer.
    pub rto_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Mean score of the local answers against the cloud's recorded answers.
    pub quality: Option<f64>,
    pub quality_n: u64,
    pub per_use_case: Vec<UseCaseResult>,
    pub capacity: Option<Capacity>,
    /// The time range the figures cover.
    pub window_ms: Option<(i64, i64)>,
    /// passed | passed-with-findings | failed
    pub verdict: String,
    /// Everything found, the failing ones first.
    pub findings: Vec<String>,
    /// The findings that fail the drill.
    pub failures: Vec<String>,
}

/// `failed` with any failure, `passed-with-findings` with any finding, else `passed`.
pub fn verdict_of(failures: &[String], findings: &[String]) -> String {
    if !failures.is_empty() {
        "failed".into()
    } else if !findings.is_empty() {
        "passed-with-findings".into()
    } else {
        "passed".into()
    }
}

fn percentile(v: &[f64], p: f64) -> Option<f64> {
    genset_eval::stats::percentile(v, p)
}

/// Score one local answer against the cloud's with the use case's scorer.
pub fn score(uc: &UseCaseConfig, cloud: &str, local: &str) -> f64 {
    let opts = genset_eval::ScoreOptions { labels: &uc.eval.labels, ..Default::default() };
    genset_eval::score(uc.eval.kind, cloud, local, &opts).value
}

impl DrillResult {
    /// A finding that fails the drill.
    pub fn fail(&mut self, msg: &str) {
        self.failures.push(msg.to_string());
        self.findings.insert(self.failures.len() - 1, msg.to_string());
        self.verdict = verdict_of(&self.failures, &self.findings);
    }

    /// A finding that does not fail it.
    pub fn note(&mut self, msg: &str) {
        self.findings.push(msg.to_string());
        self.verdict = verdict_of(&self.failures, &self.findings);
    }

    /// The figures and the verdict of a drill from its observations. `started_ms` (live
    /// drills) is what the RTO is measured from.
    pub fn from_observations(obs: &[Observation], started_ms: Option<i64>, cfg: &Config, use_cases: &[String]) -> DrillResult {
        let mut r = DrillResult { requests: obs.len() as u64, ..Default::default() };
        r.succeeded = obs.iter().filter(|o| o.ok).count() as u64;
        r.failed = r.requests - r.succeeded;
        r.served_locally = obs.iter().filter(|o| o.local).count() as u64;
        r.success_rate = (r.requests > 0).then(|| r.succeeded as f64 / r.requests as f64);
        if let Some(s) = started_ms {
            r.rto_ms = obs.iter().filter(|o| o.ok).map(|o| o.ts_ms).min().map(|t| (t - s).max(0) as f64);
        }
        let lat: Vec<f64> = obs.iter().filter(|o| o.ok).map(|o| o.latency_ms).collect();
        r.p50_ms = percentile(&lat, 50.0);
        r.p95_ms = percentile(&lat, 95.0);
        r.max_ms = lat.iter().copied().reduce(f64::max);
        let q: Vec<f64> = obs.iter().filter_map(|o| o.quality).collect();
        r.quality = genset_eval::stats::mean(&q);
        r.quality_n = q.len() as u64;
        for u in use_cases {
            let mine: Vec<&Observation> = obs.iter().filter(|o| &o.use_case == u).collect();
            let lat: Vec<f64> = mine.iter().filter(|o| o.ok).map(|o| o.latency_ms).collect();
            let q: Vec<f64> = mine.iter().filter_map(|o| o.quality).collect();
            r.per_use_case.push(UseCaseResult {
                use_case: u.clone(),
                requests: mine.len() as u64,
                succeeded: mine.iter().filter(|o| o.ok).count() as u64,
                p95_ms: percentile(&lat, 95.0),
                slo_p95_ms: cfg.use_cases.iter().find(|c| &c.name == u).and_then(|c| c.eval.thresholds.p95_latency_ms),
                quality: genset_eval::stats::mean(&q),
                quality_n: q.len() as u64,
            });
        }
        r.judge(cfg, started_ms.is_some());
        r
    }

    /// Set the findings and the verdict against `[drill_verdict]`.
    pub fn judge(&mut self, cfg: &Config, live: bool) {
        let v = &cfg.drill_verdict;
        self.findings.clear();
        self.failures.clear();
        if self.requests == 0 {
            self.note(if live {
                "no traffic for these use cases during the drill: nothing was tested"
            } else {
                "no recorded traffic to replay in the window"
            });
        }
        if let Some(s) = self.success_rate
            && s < v.min_success_rate
        {
            self.fail(&format!(
                "success rate {:.2}% is below {:.2}% ({} of {} requests failed)",
                s * 100.0,
                v.min_success_rate * 100.0,
                self.failed,
                self.requests
            ));
        }
        if live && self.requests > 0 {
            match self.rto_ms {
                Some(rto) if rto > v.max_rto.as_millis() as f64 => {
                    self.fail(&format!("time to serve locally {:.1} s is above {:.1} s", rto / 1000.0, v.max_rto.as_secs_f64()));
                }
                None => self.fail("no request was answered locally"),
                Some(_) => {}
            }
        }
        if let Some(c) = &self.capacity
            && c.headroom < v.min_headroom
        {
            let msg = format!(
                "capacity headroom {:.2}x is below {:.2}x: {:.1} answers/min served against a recorded peak of {:.1} requests/min",
                c.headroom, v.min_headroom, c.served_peak_per_min, c.recorded_peak_per_min
            );
            self.fail(&msg);
        }
        for u in self.per_use_case.clone() {
            if let (Some(p95), Some(slo)) = (u.p95_ms, u.slo_p95_ms)
                && p95 > slo as f64
            {
                self.note(&format!("{}: p95 latency {p95:.0} ms is above the SLO {slo} ms", u.use_case));
            }
            if let Some(q) = u.quality
                && q < v.min_quality
            {
                self.note(&format!(
                    "{}: quality {q:.3} against the cloud's answers is below {:.3} ({} compared)",
                    u.use_case, v.min_quality, u.quality_n
                ));
            }
        }
        if self.succeeded > 0 && self.quality_n == 0 {
            self.note("quality not measured: no recorded cloud answer to the same prompts");
        }
        self.verdict = verdict_of(&self.failures, &self.findings);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::Path;

    fn cfg(extra: &str) -> Config {
        let toml =
            format!("[[use_cases]]\nname = \"support\"\nmatch = {{ model = \"x\" }}\nreadiness = {{ p95_latency_ms = 1000 }}\n{extra}");
        Config::from_toml(&toml, Path::new("t.toml")).unwrap()
    }

    fn o(ts_ms: i64, ok: bool, latency_ms: f64, quality: Option<f64>) -> Observation {
        Observation { use_case: "support".into(), ts_ms, ok, local: true, latency_ms, quality }
    }

    #[test]
    fn verdicts() {
        let c = cfg("[drill_verdict]\nmin_success_rate = 0.75\nmax_rto = \"2s\"\nmin_quality = 0.5\n");
        let u = vec!["support".to_string()];
        // 4 requests, 3 ok (75%: passes), first ok answer 1.5 s after the start.
        let obs =
            [o(1500, true, 400.0, Some(0.9)), o(1600, true, 500.0, Some(0.7)), o(1700, false, 50.0, None), o(1800, true, 1200.0, None)];
        let r = DrillResult::from_observations(&obs, Some(0), &c, &u);
        assert_eq!((r.requests, r.succeeded, r.failed), (4, 3, 1));
        assert_eq!(r.rto_ms, Some(1500.0));
        assert_eq!(r.p50_ms, Some(500.0));
        assert_eq!(r.p95_ms, Some(1200.0));
        assert_eq!(r.quality, Some(0.8));
        assert_eq!(r.verdict, "passed-with-findings");
        assert_eq!(r.findings, vec!["support: p95 latency 1200 ms is above the SLO 1000 ms".to_string()]);

        // Slow to serve locally and too many failures: fail, failures first.
        let obs = [o(2500, true, 400.0, Some(0.9)), o(2600, false, 50.0, None)];
        let r = DrillResult::from_observations(&obs, Some(0), &c, &u);
        assert_eq!(r.verdict, "failed");
        assert_eq!(r.failures.len(), 2);
        assert!(r.findings[0].starts_with("success rate 50.00% is below 75.00%"), "{:?}", r.findings);
        assert!(r.findings[1].starts_with("time to serve locally 2.5 s is above 2.0 s"));

        // No traffic: nothing tested, a finding.
        let r = DrillResult::from_observations(&[], Some(0), &c, &u);
        assert_eq!(r.verdict, "passed-with-findings");

        // Clean pass.
        let obs = [o(100, true, 400.0, Some(0.9))];
        let r = DrillResult::from_observations(&obs, Some(0), &c, &u);
        assert_eq!(r.verdict, "passed", "{:?}", r.findings);

        // Capacity below the recorded peak fails a replay.
        let mut r = DrillResult::from_observations(&obs, None, &c, &u);
        r.capacity = Some(Capacity { recorded_peak_per_min: 10.0, speed: 1.0, served_peak_per_min: 8.0, headroom: 0.8 });
        r.judge(&c, false);
        assert_eq!(r.verdict, "failed");
        assert!(r.findings[0].starts_with("capacity headroom 0.80x is below 1.00x"));
    }
}
