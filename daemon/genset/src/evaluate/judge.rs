//! The optional judge: in normal times, a cloud model grades a sample of local answers
//! against its own recorded answer, with a configured rubric, within a daily token budget
//! that is enforced before each call and reported (`GET /api/v1/evaluations/judge`).
//!
//! The grade is stored with the evaluation (`detail.judge`: score 0..1, reason, tokens); the
//! automatic scorers still decide readiness, the judge is a second opinion people can read.

use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::error::Flavor;
use crate::config::{JudgeConfig, UpstreamConfig};
use crate::record::now_ms;

const DAY_MS: i64 = 86_400_000;

/// What the judge used today (UTC) against its budget.
#[derive(Debug, Clone, Serialize, Default)]
pub struct JudgeUsage {
    /// Days since 1970-01-01, UTC.
    pub day: i64,
    pub tokens_used: u64,
    pub daily_budget: u64,
    pub graded: u64,
    pub failed: u64,
    /// Grades skipped because the day's budget was spent.
    pub skipped_for_budget: u64,
}

/// One grade.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Grade {
    /// 0..1 (the judge answers 0..10).
    pub score: f64,
    pub reason: String,
    pub tokens: u64,
}

pub struct Judge {
    usage: Mutex<JudgeUsage>,
    client: reqwest::Client,
}

impl Judge {
    pub fn new() -> Judge {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).no_proxy().build().unwrap_or_default();
        Judge { usage: Mutex::new(JudgeUsage::default()), client }
    }

    pub fn usage(&self, budget: u64) -> JudgeUsage {
        let mut u = self.usage.lock();
        roll(&mut u, budget);
        u.clone()
    }

    /// Whether this exchange is in the judged sample (deterministic by id).
    pub fn sampled(cfg: &JudgeConfig, exchange_id: i64) -> bool {
        let h = (exchange_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        (h as f64 / (1u64 << 53) as f64) < cfg.sample
    }

    /// Grade `local` against the cloud's `reference` for `question`. `Ok(None)`: skipped,
    /// the day's budget is spent.
    pub async fn grade(
        &self,
        cfg: &JudgeConfig,
        up: &UpstreamConfig,
        question: &str,
        reference: &str,
        local: &str,
    ) -> Result<Option<Grade>, String> {
        {
            let mut u = self.usage.lock();
            roll(&mut u, cfg.daily_tokens);
            if u.tokens_used >= cfg.daily_tokens {
                u.skipped_for_budget += 1;
                return Ok(None);
            }
        }
        let result = self.call(cfg, up, question, reference, local).await;
        let mut u = self.usage.lock();
        roll(&mut u, cfg.daily_tokens);
        match &result {
            Ok(g) => {
                u.tokens_used += g.tokens;
                u.graded += 1;
            }
            Err(_) => u.failed += 1,
        }
        result.map(Some)
    }

    async fn call(&self, cfg: &JudgeConfig, up: &UpstreamConfig, question: &str, reference: &str, local: &str) -> Result<Grade, String> {
        let key = up.api_key.as_ref().ok_or("the judge's upstream holds no key of its own")?;
        let system = format!(
            "You grade a candidate answer against a reference answer to the same request. Rubric: {}\n\
             Reply with JSON only: {{\"score\": <integer 0-10>, \"reason\": \"<one sentence>\"}}",
            cfg.rubric
        );
        let user = format!("Request:\n{}\n\nReference answer:\n{}\n\nCandidate answer:\n{}", clip(question), clip(reference), clip(local));
        let openai = json!({
            "model": cfg.model,
            "temperature": 0,
            "max_tokens": 200,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        });
        let root = up.base_url.strip_suffix("/v1").unwrap_or(&up.base_url);
        let rb = match up.api {
            Flavor::OpenAi => self.client.post(format!("{root}/v1/chat/completions")).bearer_auth(key.expose()).json(&openai),
            Flavor::Anthropic => {
                let body = genset_translate::translate_request(
                    &openai,
                    genset_translate::Api::OpenAi,
                    genset_translate::Api::Anthropic,
                    &cfg.model,
                    &genset_translate::RequestOptions::default(),
                )
                .map_err(|e| e.to_string())?;
                self.client
                    .post(format!("{root}/v1/messages"))
                    .header("x-api-key", key.expose())
                    .header("anthropic-version", &up.anthropic_version)
                    .json(&body)
            }
        };
        let resp = rb.send().await.map_err(|e| format!("the judge's upstream failed: {}", crate::util::error_chain(&e)))?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| format!("the judge's answer is not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!("the judge's upstream answered {status}"));
        }
        let (text, tokens) = match up.api {
            Flavor::OpenAi => (
                v["choices"][0]["message"]["content"].as_str().unwrap_or("").to_string(),
                v["usage"]["total_tokens"].as_u64().unwrap_or_else(|| {
                    v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) + v["usage"]["completion_tokens"].as_u64().unwrap_or(0)
                }),
            ),
            Flavor::Anthropic => (
                v["content"][0]["text"].as_str().unwrap_or("").to_string(),
                v["usage"]["input_tokens"].as_u64().unwrap_or(0) + v["usage"]["output_tokens"].as_u64().unwrap_or(0),
            ),
        };
        let (score, reason) = parse_grade(&text).ok_or_else(|| format!("the judge's reply holds no grade: {:?}", clip(&text)))?;
        Ok(Grade { score, reason, tokens })
    }
}

impl Default for Judge {
    fn default() -> Self {
        Judge::new()
    }
}

/// A new UTC day starts a new budget.
fn roll(u: &mut JudgeUsage, budget: u64) {
    let day = now_ms().div_euclid(DAY_MS);
    if u.day != day {
        *u = JudgeUsage { day, daily_budget: budget, ..Default::default() };
    }
    u.daily_budget = budget;
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(4000) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The grade in a judge's reply: the first JSON object with a numeric `score` 0..10.
pub fn parse_grade(text: &str) -> Option<(f64, String)> {
    let mut from = 0;
    while let Some(start) = text[from..].find('{').map(|i| i + from) {
        let mut de = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        if let Some(Ok(v)) = de.next()
            && let Some(score) = v["score"].as_f64()
            && (0.0..=10.0).contains(&score)
        {
            return Some((score / 10.0, v["reason"].as_str().unwrap_or("").to_string()));
        }
        from = start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, want: Option<(f64, &str)>) {
        assert_eq!(parse_grade(text), want.map(|(s, r)| (s, r.to_string())), "{text:?}");
    }

    #[test]
    fn grades_are_read_from_the_reply() {
        check(r#"{"score": 7, "reason": "close"}"#, Some((0.7, "close")));
        check("Here you go:\n```json\n{\"score\": 10, \"reason\": \"same\"}\n```", Some((1.0, "same")));
        check(r#"{"note": 1} then {"score": 3}"#, Some((0.3, "")));
        check(r#"{"score": 11}"#, None);
        check("no grade at all", None);
    }
}
