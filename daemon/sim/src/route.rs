//! Which API route a request is for, and which API's formats it speaks.

use http::{HeaderMap, Method};

/// The API whose formats (errors, auth header) a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    OpenAi,
    Anthropic,
}

impl Flavor {
    /// For routes both APIs share (`/v1/models`) and for unknown paths:
    /// Anthropic clients send `anthropic-version` or `x-api-key`.
    pub(crate) fn sniff(headers: &HeaderMap) -> Self {
        if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") { Flavor::Anthropic } else { Flavor::OpenAi }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Models,
    Model,
    Messages,
    CountTokens,
}

/// How a request path resolved.
pub(crate) enum Resolved<'p> {
    Api(Route, Option<&'p str>),
    WrongMethod(Route),
    NotFound,
}

impl Route {
    pub(crate) const COUNT: usize = 8;
    pub(crate) const ALL: [Route; Route::COUNT] = [
        Route::ChatCompletions,
        Route::Completions,
        Route::Embeddings,
        Route::Responses,
        Route::Models,
        Route::Model,
        Route::Messages,
        Route::CountTokens,
    ];

    /// The key under which hits are counted in the stats.
    pub(crate) fn stats_key(self) -> &'static str {
        match self {
            Route::ChatCompletions => "/v1/chat/completions",
            Route::Completions => "/v1/completions",
            Route::Embeddings => "/v1/embeddings",
            Route::Responses => "/v1/responses",
            Route::Models => "/v1/models",
            Route::Model => "/v1/models/{id}",
            Route::Messages => "/v1/messages",
            Route::CountTokens => "/v1/messages/count_tokens",
        }
    }

    fn method(self) -> Method {
        match self {
            Route::Models | Route::Model => Method::GET,
            _ => Method::POST,
        }
    }

    pub(crate) fn flavor(self, headers: &HeaderMap) -> Flavor {
        match self {
            Route::ChatCompletions | Route::Completions | Route::Embeddings | Route::Responses => Flavor::OpenAi,
            Route::Messages | Route::CountTokens => Flavor::Anthropic,
            Route::Models | Route::Model => Flavor::sniff(headers),
        }
    }

    /// Resolves a path (query string already removed). A trailing slash is
    /// tolerated.
    pub(crate) fn resolve<'p>(method: &Method, path: &'p str) -> Resolved<'p> {
        let trimmed = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
        let (route, param) = match trimmed {
            "/v1/chat/completions" => (Route::ChatCompletions, None),
            "/v1/completions" => (Route::Completions, None),
            "/v1/embeddings" => (Route::Embeddings, None),
            "/v1/responses" => (Route::Responses, None),
            "/v1/models" => (Route::Models, None),
            "/v1/messages" => (Route::Messages, None),
            "/v1/messages/count_tokens" => (Route::CountTokens, None),
            other => match other.strip_prefix("/v1/models/") {
                Some(id) if !id.is_empty() => (Route::Model, Some(id)),
                _ => return Resolved::NotFound,
            },
        };
        if *method == route.method() { Resolved::Api(route, param) } else { Resolved::WrongMethod(route) }
    }
}
