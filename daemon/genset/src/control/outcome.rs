//! What one upstream attempt says about the upstream's health. The classification is what
//! decides: a cut-off opens the breaker fast, transients count towards a failure rate, and a
//! request's own fault (context too long, content policy, unknown model) never counts.

use std::time::Duration;

/// The verdict on one attempt (or probe).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The upstream answered (any 2xx, or a 4xx that is the request's own fault when probing).
    Success,
    /// The provider is gone for us: refused, reset before headers, no answer in time, quota
    /// exhausted, the appliance's own key rejected.
    CutOff(String),
    /// A blip: rate limited (honour `retry_after`), sporadic 5xx/529.
    Transient { cause: String, retry_after: Option<Duration> },
    /// The request's own fault; goes back to the client unchanged, never retried on the same model.
    NotCounted(Refusal),
    /// A client's own (passthrough) key was rejected: that client's problem, unless several
    /// keys the cloud accepted before are rejected together (see `Health`).
    ClientKeyRejected,
}

/// Why a request was refused for its own sake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ContextLength,
    ContentPolicy,
    UnknownModel,
    Other,
}

impl Outcome {
    /// A short label for metrics and the recorded attempt.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::CutOff(_) => "cut-off",
            Outcome::Transient { .. } => "transient",
            Outcome::NotCounted(_) => "not-counted",
            Outcome::ClientKeyRejected => "client-key-rejected",
        }
    }

    pub fn cause(&self) -> String {
        match self {
            Outcome::Success => "success".into(),
            Outcome::CutOff(c) | Outcome::Transient { cause: c, .. } => c.clone(),
            Outcome::NotCounted(r) => format!("{r:?}"),
            Outcome::ClientKeyRejected => "client key rejected".into(),
        }
    }

    /// Whether the next step of the chain may take the request (before the first byte).
    pub fn fails_over(&self) -> bool {
        matches!(self, Outcome::CutOff(_) | Outcome::Transient { .. })
    }
}

/// Classify an upstream's HTTP answer. `own_key`: the appliance's credential was used.
pub fn classify_status(status: u16, retry_after: Option<Duration>, body: &[u8], own_key: bool) -> Outcome {
    let text = || String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    match status {
        200..=399 => Outcome::Success,
        401 | 403 => {
            if own_key {
                Outcome::CutOff(format!("the appliance's key was rejected ({status})"))
            } else {
                Outcome::ClientKeyRejected
            }
        }
        429 => {
            let t = text();
            if t.contains("insufficient_quota") || t.contains("exceeded your current quota") {
                Outcome::CutOff("quota exhausted (429 insufficient_quota)".into())
            } else {
                Outcome::Transient { cause: "rate limited (429)".into(), retry_after }
            }
        }
        400 | 402 => {
            let t = text();
            if t.contains("credit balance is too low") || t.contains("insufficient_quota") || t.contains("billing") {
                Outcome::CutOff(format!("quota exhausted ({status}: credit balance)"))
            } else if is_context_length(&t) {
                Outcome::NotCounted(Refusal::ContextLength)
            } else if is_content_policy(&t) {
                Outcome::NotCounted(Refusal::ContentPolicy)
            } else {
                Outcome::NotCounted(Refusal::Other)
            }
        }
        404 => Outcome::NotCounted(Refusal::UnknownModel),
        408 | 500 | 502 | 503 | 504 | 520..=529 => Outcome::Transient { cause: format!("upstream error {status}"), retry_after },
        _ if status >= 500 => Outcome::Transient { cause: format!("upstream error {status}"), retry_after },
        _ => Outcome::NotCounted(Refusal::Other),
    }
}

fn is_context_length(t: &str) -> bool {
    t.contains("context_length_exceeded") || t.contains("prompt is too long") || t.contains("maximum context length")
}

fn is_content_policy(t: &str) -> bool {
    t.contains("content_policy") || t.contains("content filtering") || t.contains("content_filter") || t.contains("safety system")
}

/// Classify a failure before any response headers arrived (`timeout`: nothing came in time;
/// `connect`: no connection was made).
pub fn classify_transport(timeout: bool, connect: bool, e: &dyn std::error::Error) -> Outcome {
    let chain = crate::util::error_chain(e);
    if timeout {
        Outcome::CutOff(format!("no response in time ({chain})"))
    } else if connect {
        Outcome::CutOff(format!("connection failed ({chain})"))
    } else {
        Outcome::CutOff(format!("failed before answering ({chain})"))
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from these APIs and treated as absent).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, body: &str, own_key: bool, want: &str) {
        let got = classify_status(status, None, body.as_bytes(), own_key);
        assert_eq!(got.label(), want, "{status} {body:?} own_key={own_key}: {got:?}");
    }

    #[test]
    fn classification_table() {
        check(200, "{}", true, "success");
        check(401, r#"{"error":{"code":"invalid_api_key"}}"#, true, "cut-off");
        check(401, r#"{"error":{"code":"invalid_api_key"}}"#, false, "client-key-rejected");
        check(403, r#"{"type":"error","error":{"type":"permission_error"}}"#, true, "cut-off");
        check(429, r#"{"error":{"code":"insufficient_quota","type":"insufficient_quota"}}"#, false, "cut-off");
        check(429, r#"{"error":{"code":"rate_limit_exceeded"}}"#, true, "transient");
        check(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#,
            true,
            "cut-off",
        );
        check(400, r#"{"error":{"code":"context_length_exceeded"}}"#, true, "not-counted");
        check(400, r#"{"type":"error","error":{"message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#, true, "not-counted");
        check(400, r#"{"error":{"code":"content_policy_violation"}}"#, true, "not-counted");
        check(404, r#"{"error":{"code":"model_not_found"}}"#, true, "not-counted");
        check(500, "", true, "transient");
        check(503, "", true, "transient");
        check(529, r#"{"type":"error","error":{"type":"overloaded_error"}}"#, true, "transient");
        assert_eq!(
            classify_status(400, None, br#"{"error":{"code":"context_length_exceeded"}}"#, true),
            Outcome::NotCounted(Refusal::ContextLength)
        );
        assert_eq!(
            classify_status(400, None, br#"{"error":{"code":"content_policy_violation"}}"#, true),
            Outcome::NotCounted(Refusal::ContentPolicy)
        );
    }
}
