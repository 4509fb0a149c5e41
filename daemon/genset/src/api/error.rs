//! The one error type of the inbound API boundary, rendered in exactly one place in the
//! format of the API the client spoke (OpenAI or Anthropic).

use std::borrow::Cow;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};

/// Which API dialect a route speaks; decides the error body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    OpenAi,
    Anthropic,
}

/// Whose fault an error is: failover and health decisions read this, never message strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The request itself is wrong (bad JSON, too large, bad key).
    Downstream,
    /// The upstream (cloud or local engine) failed.
    Upstream,
    /// genset itself failed.
    Internal,
}

/// What went wrong, mapped exhaustively to an HTTP status and each API's error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RequestTooLarge,
    UnsupportedMediaType,
    RateLimited,
    Overloaded,
    UpstreamUnavailable,
    /// The cloud is cut off and this request may not be served otherwise (503).
    CutOff,
    Timeout,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::Permission => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            ErrorKind::CutOff => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::RequestTooLarge | ErrorKind::UnsupportedMediaType => {
                "invalid_request_error"
            }
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::UpstreamUnavailable | ErrorKind::Timeout => "upstream_error",
            ErrorKind::CutOff => "service_unavailable",
            ErrorKind::Internal => "server_error",
        }
    }

    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::UnsupportedMediaType => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::UpstreamUnavailable | ErrorKind::CutOff | ErrorKind::Timeout | ErrorKind::Internal => "api_error",
        }
    }

    /// A low-cardinality label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Authentication => "authentication",
            ErrorKind::Permission => "permission",
            ErrorKind::NotFound => "not_found",
            ErrorKind::RequestTooLarge => "too_large",
            ErrorKind::UnsupportedMediaType => "media_type",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::CutOff => "cloud_cut_off",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error answered to an API client. Never carries secrets: messages are written by genset.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: Cow<'static, str>,
    pub param: Option<Cow<'static, str>>,
    pub code: Option<&'static str>,
    pub retry_after: Option<Duration>,
    pub source: ErrorSource,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        let source = match kind {
            ErrorKind::UpstreamUnavailable | ErrorKind::CutOff | ErrorKind::Timeout => ErrorSource::Upstream,
            ErrorKind::Internal | ErrorKind::Overloaded => ErrorSource::Internal,
            _ => ErrorSource::Downstream,
        };
        ApiError { kind, message: message.into(), param: None, code: None, retry_after: None, source }
    }
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }
    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }
    pub fn with_source(mut self, source: ErrorSource) -> Self {
        self.source = source;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The error body in the given API's own format.
    pub fn body(&self, flavor: Flavor) -> serde_json::Value {
        match flavor {
            Flavor::OpenAi => serde_json::json!({
                "error": {
                    "message": self.message,
                    "type": self.kind.openai_type(),
                    "param": self.param,
                    "code": self.code,
                }
            }),
            Flavor::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": self.kind.anthropic_type(), "message": self.message }
            }),
        }
    }

    /// Render as an HTTP response: the single place errors become bytes.
    pub fn render(&self, flavor: Flavor) -> HttpResponse {
        let mut b = HttpResponseBuilder::new(self.status());
        if let Some(ra) = self.retry_after {
            b.insert_header(("retry-after", ra.as_secs().max(1).to_string()));
        }
        b.insert_header(("x-genset-error", self.kind.label()));
        b.json(self.body(flavor))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.label(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_and_anthropic_shapes() {
        let e = ApiError::invalid("bad").with_code("invalid_json");
        let o = e.body(Flavor::OpenAi);
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["code"], "invalid_json");
        assert_eq!(o["error"]["message"], "bad");
        let a = e.body(Flavor::Anthropic);
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "invalid_request_error");
        assert_eq!(ApiError::new(ErrorKind::RequestTooLarge, "x").status(), 413);
    }
}
