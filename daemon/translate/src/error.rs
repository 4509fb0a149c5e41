//! The crate's error type and the neutral classification of API errors.

use crate::Api;

/// Why a body or a stream event could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The input uses a feature the target API cannot express without changing the answer
    /// (`n > 1`, `logprobs`, JSON mode, server tools...). The caller should skip this step of the
    /// chain rather than answer something else.
    #[error("`{field}` cannot be translated to {to}: {reason}")]
    Unsupported {
        /// Path of the offending field, e.g. `messages[2].content[0].type`.
        field: String,
        /// The API we were translating to.
        to: Api,
        /// Human-readable reason.
        reason: String,
    },
    /// The input is not a valid body of its own API (wrong type, missing field).
    #[error("`{path}`: {message}")]
    Invalid {
        /// Path of the offending field; empty for the whole body.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A stream event is malformed JSON, has an unexpected shape or breaks the protocol's order.
    #[error("malformed {api} stream event: {message}")]
    Malformed {
        /// The API whose stream it is.
        api: Api,
        /// What is wrong with it.
        message: String,
    },
    /// A continuation was asked for, but the partial answer already used the whole output budget.
    #[error("the partial answer already used the whole output budget of {max_tokens} tokens")]
    BudgetExhausted {
        /// The request's output budget.
        max_tokens: u64,
    },
}

/// Neutral classification of an API error, mapped from either API's `type`/`code` strings or
/// from the HTTP status, and rendered back as either API's error `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or not acceptable (400).
    InvalidRequest,
    /// Missing or wrong credentials (401).
    Authentication,
    /// The credentials may not do this (403).
    Permission,
    /// Unknown model or route (404).
    NotFound,
    /// The request body is too large (413).
    RequestTooLarge,
    /// Rate limit or quota (429).
    RateLimit,
    /// The upstream is overloaded (Anthropic 529, OpenAI 503).
    Overloaded,
    /// The upstream timed out (504).
    Timeout,
    /// Any other server-side failure (500).
    Server,
}

impl ErrorKind {
    /// Classifies an HTTP status.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 => Self::Authentication,
            403 => Self::Permission,
            404 => Self::NotFound,
            408 | 504 => Self::Timeout,
            413 => Self::RequestTooLarge,
            429 => Self::RateLimit,
            503 | 529 => Self::Overloaded,
            500..=599 => Self::Server,
            _ => Self::InvalidRequest,
        }
    }

    /// Classifies an error `type` or `code` string of either API; `None` if unknown.
    pub fn from_type(kind: &str) -> Option<Self> {
        Some(match kind {
            "invalid_request_error" | "invalid_request" | "bad_request" => Self::InvalidRequest,
            "authentication_error" | "invalid_api_key" | "unauthorized" => Self::Authentication,
            "permission_error" | "permission_denied" | "forbidden" | "billing_error" => Self::Permission,
            "not_found_error" | "not_found" | "model_not_found" => Self::NotFound,
            "request_too_large" | "payload_too_large" => Self::RequestTooLarge,
            "rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota" | "requests" | "tokens" => Self::RateLimit,
            "overloaded_error" | "overloaded" | "server_overloaded" | "unavailable" => Self::Overloaded,
            "timeout_error" | "timeout" => Self::Timeout,
            "api_error" | "server_error" | "internal_error" | "internal_server_error" => Self::Server,
            _ => return None,
        })
    }

    /// Classifies an error from its status and (optional) type string: a specific status wins,
    /// a generic one (400, 500, anything unknown) defers to the type.
    pub fn classify(status: u16, kind: Option<&str>) -> Self {
        let by_status = Self::from_status(status);
        match by_status {
            Self::InvalidRequest | Self::Server => kind.and_then(Self::from_type).unwrap_or(by_status),
            specific => specific,
        }
    }

    /// The error `type` an OpenAI client sees.
    pub fn openai_type(self) -> &'static str {
        match self {
            Self::InvalidRequest | Self::RequestTooLarge => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::RateLimit => "rate_limit_error",
            Self::Overloaded | Self::Timeout | Self::Server => "server_error",
        }
    }

    /// The error `code` an OpenAI client sees, where OpenAI has a conventional one.
    pub fn openai_code(self) -> Option<&'static str> {
        match self {
            Self::Authentication => Some("invalid_api_key"),
            Self::NotFound => Some("model_not_found"),
            Self::RequestTooLarge => Some("request_too_large"),
            Self::RateLimit => Some("rate_limit_exceeded"),
            Self::Overloaded => Some("overloaded"),
            Self::Timeout => Some("timeout"),
            Self::InvalidRequest | Self::Permission | Self::Server => None,
        }
    }

    /// The error `type` an Anthropic client sees.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::RequestTooLarge => "request_too_large",
            Self::RateLimit => "rate_limit_error",
            Self::Overloaded => "overloaded_error",
            Self::Timeout => "timeout_error",
            Self::Server => "api_error",
        }
    }

    /// The HTTP status a client of `api` expects for this kind of error.
    pub fn status(self, api: Api) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Authentication => 401,
            Self::Permission => 403,
            Self::NotFound => 404,
            Self::RequestTooLarge => 413,
            Self::RateLimit => 429,
            Self::Overloaded => match api {
                Api::OpenAi => 503,
                Api::Anthropic => 529,
            },
            Self::Timeout => 504,
            Self::Server => 500,
        }
    }
}
