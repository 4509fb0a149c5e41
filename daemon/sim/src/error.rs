//! Every error an API route can answer, rendered in exactly one place into
//! the status, headers and body of the API whose route was hit.

use std::borrow::Cow;

use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER};
use serde::Serialize;

use crate::body::{Resp, json_value, with_request_id};
use crate::ids::Id;
use crate::route::Flavor;

/// The context window the `context_length` fault pretends to have.
const OPENAI_CONTEXT: u64 = 128_000;
const ANTHROPIC_CONTEXT: u64 = 200_000;

#[derive(Debug)]
pub(crate) enum ApiError {
    /// The body is not JSON, or not the JSON this route expects.
    BadJson(String),
    InvalidRequest {
        message: Cow<'static, str>,
        param: Option<&'static str>,
    },
    MissingKey,
    InvalidKey {
        masked: String,
    },
    Forbidden,
    NotFound {
        method: String,
        path: String,
    },
    ModelNotFound(String),
    MethodNotAllowed,
    TooLarge,
    /// 500, 502, 503 or 529.
    Server {
        status: u16,
        retry_after: Option<u64>,
    },
    RateLimited {
        model: String,
        retry_after: u64,
    },
    Quota,
    ContextLength {
        prompt_tokens: u64,
    },
    ContentPolicy,
    PrefillUnsupported,
    Internal(String),
}

/// What the error looks like in each API.
struct Parts<'a> {
    status: StatusCode,
    message: Cow<'a, str>,
    openai_type: &'static str,
    openai_code: Option<&'static str>,
    param: Option<&'static str>,
    anthropic_type: &'static str,
}

impl ApiError {
    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>, param: &'static str) -> Self {
        ApiError::InvalidRequest { message: message.into(), param: Some(param) }
    }

    fn parts(&self, flavor: Flavor) -> Parts<'_> {
        let openai = flavor == Flavor::OpenAi;
        let p = |status: u16, message: Cow<'static, str>, ot, oc, at| Parts {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
            openai_type: ot,
            openai_code: oc,
            param: None,
            anthropic_type: at,
        };
        match self {
            ApiError::BadJson(detail) => {
                let message = if openai {
                    format!("We could not parse the JSON body of your request: {detail}")
                } else {
                    format!("There was an error parsing the body of your request: {detail}")
                };
                p(400, message.into(), "invalid_request_error", None, "invalid_request_error")
            }
            ApiError::InvalidRequest { message, param } => {
                Parts { param: *param, ..p(400, message.clone(), "invalid_request_error", None, "invalid_request_error") }
            }
            ApiError::MissingKey => {
                let message = if openai {
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                } else {
                    "x-api-key header is required"
                };
                p(401, message.into(), "invalid_request_error", Some("invalid_api_key"), "authentication_error")
            }
            ApiError::InvalidKey { masked } => {
                let message = if openai {
                    format!(
                        "Incorrect API key provided: {masked}. You can find your API key at \
                         https://platform.openai.com/account/api-keys."
                    )
                } else {
                    "invalid x-api-key".to_owned()
                };
                p(401, message.into(), "invalid_request_error", Some("invalid_api_key"), "authentication_error")
            }
            ApiError::Forbidden => p(
                403,
                if openai {
                    "You have insufficient permissions for this operation."
                } else {
                    "Your API key does not have permission to use the specified resource."
                }
                .into(),
                "permission_error",
                Some("insufficient_permissions"),
                "permission_error",
            ),
            ApiError::NotFound { method, path } => p(
                404,
                if openai { format!("Invalid URL ({method} {path})").into() } else { "Not Found".into() },
                "invalid_request_error",
                None,
                "not_found_error",
            ),
            ApiError::ModelNotFound(model) => Parts {
                param: Some("model"),
                ..p(
                    404,
                    if openai {
                        format!("The model `{model}` does not exist or you do not have access to it.")
                    } else {
                        format!("model: {model}")
                    }
                    .into(),
                    "invalid_request_error",
                    Some("model_not_found"),
                    "not_found_error",
                )
            },
            ApiError::MethodNotAllowed => p(405, "Method Not Allowed".into(), "invalid_request_error", None, "invalid_request_error"),
            ApiError::TooLarge => {
                p(413, "Request exceeds the maximum allowed number of bytes.".into(), "invalid_request_error", None, "request_too_large")
            }
            ApiError::Server { status, .. } => {
                let (openai_msg, anthropic_msg, anthropic_type) = match status {
                    502 => ("Bad gateway.", "Bad gateway", "api_error"),
                    503 => ("The server is overloaded or not ready yet.", "Service unavailable", "api_error"),
                    529 => ("The server is currently overloaded, please try again later.", "Overloaded", "overloaded_error"),
                    _ => ("The server had an error while processing your request. Sorry about that!", "Internal server error", "api_error"),
                };
                p(*status, if openai { openai_msg } else { anthropic_msg }.into(), "server_error", None, anthropic_type)
            }
            ApiError::RateLimited { model, retry_after } => p(
                429,
                if openai {
                    format!(
                        "Rate limit reached for {model} in organization org-genset-sim on requests per min \
                         (RPM): Limit 500, Used 500, Requested 1. Please try again in {retry_after}s."
                    )
                } else {
                    "This request would exceed the rate limit for your organization of 50 requests per \
                     minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."
                        .to_owned()
                }
                .into(),
                "requests",
                Some("rate_limit_exceeded"),
                "rate_limit_error",
            ),
            // Anthropic answers credit exhaustion with a 400
            // invalid_request_error ("Your credit balance is too low…"), not
            // with a 402 or a billing_error type: this is what the real API
            // returns and what clients in the wild match on.
            ApiError::Quota => {
                if openai {
                    p(
                        429,
                        "You exceeded your current quota, please check your plan and billing details. \
                         For more information on this error, read the docs: \
                         https://platform.openai.com/docs/guides/error-codes/api-errors."
                            .into(),
                        "insufficient_quota",
                        Some("insufficient_quota"),
                        "invalid_request_error",
                    )
                } else {
                    p(
                        400,
                        "Your credit balance is too low to access the Anthropic API. Please go to Plans & \
                         Billing to upgrade or purchase credits."
                            .into(),
                        "insufficient_quota",
                        Some("insufficient_quota"),
                        "invalid_request_error",
                    )
                }
            }
            ApiError::ContextLength { prompt_tokens } => {
                let message = if openai {
                    format!(
                        "This model's maximum context length is {OPENAI_CONTEXT} tokens. However, your \
                         messages resulted in {} tokens. Please reduce the length of the messages.",
                        OPENAI_CONTEXT + prompt_tokens.max(&1)
                    )
                } else {
                    format!("prompt is too long: {} tokens > {ANTHROPIC_CONTEXT} maximum", ANTHROPIC_CONTEXT + prompt_tokens.max(&1))
                };
                Parts {
                    param: Some("messages"),
                    ..p(400, message.into(), "invalid_request_error", Some("context_length_exceeded"), "invalid_request_error")
                }
            }
            ApiError::ContentPolicy => Parts {
                param: openai.then_some("prompt"),
                ..p(
                    400,
                    if openai {
                        "Your request was rejected as a result of our safety system. Your prompt may \
                         contain text that is not allowed by our safety system."
                    } else {
                        "Output blocked by content filtering policy"
                    }
                    .into(),
                    "invalid_request_error",
                    Some("content_policy_violation"),
                    "invalid_request_error",
                )
            },
            ApiError::PrefillUnsupported => Parts {
                param: Some("messages"),
                ..p(
                    400,
                    "assistant message prefill is not supported for this model".into(),
                    "invalid_request_error",
                    None,
                    "invalid_request_error",
                )
            },
            ApiError::Internal(detail) => p(500, format!("internal simulator error: {detail}").into(), "server_error", None, "api_error"),
        }
    }

    pub(crate) fn into_response(self, flavor: Flavor) -> Resp {
        #[derive(Serialize)]
        struct OpenAiBody<'a> {
            error: OpenAiError<'a>,
        }
        #[derive(Serialize)]
        struct OpenAiError<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct AnthropicBody<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            error: AnthropicError<'a>,
            request_id: Id,
        }
        #[derive(Serialize)]
        struct AnthropicError<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            message: &'a str,
        }

        let parts = self.parts(flavor);
        let mut resp = match flavor {
            Flavor::OpenAi => json_value(
                parts.status,
                &OpenAiBody {
                    error: OpenAiError { message: &parts.message, kind: parts.openai_type, param: parts.param, code: parts.openai_code },
                },
            ),
            Flavor::Anthropic => json_value(
                parts.status,
                &AnthropicBody {
                    kind: "error",
                    error: AnthropicError { kind: parts.anthropic_type, message: &parts.message },
                    request_id: Id::new("req_011C", 20),
                },
            ),
        };
        let headers = resp.headers_mut();
        let retry_after = match &self {
            ApiError::Server { retry_after, .. } => *retry_after,
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        if let Some(secs) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let ApiError::RateLimited { retry_after, .. } = &self {
            match flavor {
                Flavor::OpenAi => {
                    headers.insert("x-ratelimit-limit-requests", HeaderValue::from(500u32));
                    headers.insert("x-ratelimit-remaining-requests", HeaderValue::from(0u32));
                    if let Ok(v) = HeaderValue::from_str(&format!("{retry_after}s")) {
                        headers.insert("x-ratelimit-reset-requests", v);
                    }
                }
                Flavor::Anthropic => {
                    headers.insert("anthropic-ratelimit-requests-limit", HeaderValue::from(50u32));
                    headers.insert("anthropic-ratelimit-requests-remaining", HeaderValue::from(0u32));
                }
            }
        }
        with_request_id(resp, flavor)
    }
}

/// Shows a key the way OpenAI does in its error message: the first three
/// and last four characters.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}
