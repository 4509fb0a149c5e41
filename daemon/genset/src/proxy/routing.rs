//! The routing snapshot: everything derived from configuration that the request path reads,
//! swapped whole on reload so a request sees one consistent configuration.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, RateLimiter};

use crate::api::error::{ApiError, ErrorKind, Flavor};
use crate::auth::VirtualKey;
use crate::classify::Classifier;
use crate::config::{ChainStep, Config, FailoverConfig, UpstreamConfig};
use crate::control::{Controller, Health};
use crate::proxy::client::{Client, Error, Tls};

/// A cloud upstream. Each proxy worker thread gets its own connection pool for it (see
/// [`Upstream::client`]): a pooled connection is driven by the runtime that opened it, so a
/// pool shared across workers would hop threads on every request.
pub struct Upstream {
    pub config: Arc<UpstreamConfig>,
    /// Unique per `Upstream` value, keys the per-thread client cache.
    id: u64,
    /// `cloud:<name>`, the served-by tag.
    pub tag: Arc<str>,
    /// The URL that inbound `/v1/...` paths are appended to, without `/v1`.
    api_root: String,
    /// The parsed URL of each inbound route's path here (URL parsing is measurable per request).
    urls: Vec<(&'static str, http::Uri)>,
    /// Its breaker and failover state (kept across reloads by the controller).
    pub health: Arc<Health>,
    tls: Tls,
}

impl Upstream {
    pub fn new(config: Arc<UpstreamConfig>, health: Arc<Health>) -> Result<Self, Error> {
        // Fail at configuration time, not on the first request.
        let tls = Tls::platform()?;
        // OpenAI's convention puts the version in the base URL (".../v1"); Anthropic's SDK
        // base URL has none. Either way inbound "/v1/x" maps to "<root>/v1/x".
        let api_root = config.base_url.strip_suffix("/v1").unwrap_or(&config.base_url).to_string();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let urls = crate::proxy::ENDPOINTS
            .iter()
            .filter_map(|(_, ep)| parse_uri(&format!("{api_root}{}", ep.path)).map(|u| (ep.path, u)))
            .collect();
        Ok(Upstream { tag: Arc::from(format!("cloud:{}", config.name)), config, id, api_root, urls, health, tls })
    }

    /// This thread's client (connection pool) for this upstream.
    pub fn client(&self) -> Client {
        CLIENTS.with(|c| {
            let mut map = c.borrow_mut();
            if let Some(client) = map.get(&self.id) {
                return client.clone();
            }
            if map.len() > 256 {
                // Upstreams replaced by many reloads: start afresh rather than grow.
                map.clear();
            }
            let client = Client::new(&self.tls, self.config.connect_timeout, self.config.read_timeout);
            map.insert(self.id, client.clone());
            client
        })
    }

    /// The upstream URL for an inbound path and query, parsed once per path.
    pub fn url(&self, path: &str, query: Option<&str>) -> Option<http::Uri> {
        if query.is_none()
            && let Some((_, u)) = self.urls.iter().find(|(p, _)| *p == path)
        {
            return Some(u.clone());
        }
        let mut s = self.url_for(path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        parse_uri(&s)
    }

    /// The upstream URL for an inbound path such as `/v1/chat/completions`.
    pub fn url_for(&self, path: &str) -> String {
        let mut s = String::with_capacity(self.api_root.len() + path.len() + 16);
        s.push_str(&self.api_root);
        s.push_str(path);
        s
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static CLIENTS: RefCell<HashMap<u64, Client>> = RefCell::new(HashMap::new());
}

/// An absolute URL as the client sends it. A query the strict URI grammar refuses (a raw
/// space or quote a lenient client left in) is percent-encoded the way a browser would,
/// rather than failing the request.
fn parse_uri(s: &str) -> Option<http::Uri> {
    s.parse().ok().or_else(|| reqwest::Url::parse(s).ok()?.as_str().parse().ok())
}

/// One step of a resolved fallback chain.
#[derive(Clone)]
pub enum Step {
    Cloud(Arc<Upstream>),
    /// A local model by name.
    Local(Arc<str>),
}

/// A use case's failover policy, resolved.
pub struct Policy {
    /// Empty: the routing default.
    pub chain: Vec<Step>,
    /// The cloud steps are the routing default's; `chain` adds its local steps after them.
    pub default_cloud: bool,
    pub gate: crate::route::plan::LocalGate,
    pub on_context_overflow: Option<String>,
    pub local_limit: Option<DefaultDirectRateLimiter>,
}

pub struct Routing {
    pub classifier: Classifier,
    /// Per use case (the classifier's index).
    pub policies: Vec<Policy>,
    /// `[routing] default_chain`.
    pub default_chain: Option<Vec<Step>>,
    pub failover: FailoverConfig,
    /// Local serving limit per client key (virtual key id or key hash).
    pub local_limit_per_key: Option<DefaultKeyedRateLimiter<String>>,
    pub upstreams: Vec<Arc<Upstream>>,
    /// Per use case (same index as the classifier's), its upstream if configured.
    use_case_upstream: Vec<Option<usize>>,
    default_openai: Option<usize>,
    default_anthropic: Option<usize>,
    pub max_body: usize,
    /// The served-by tag of answers genset gives itself.
    pub genset_tag: Arc<str>,
}

impl Routing {
    pub fn new(cfg: &Config, controller: &Controller) -> Result<Self, Error> {
        let upstreams = cfg
            .upstreams
            .iter()
            .map(|u| {
                let health = controller.health(&u.name).unwrap_or_else(|| unreachable_health(u));
                Upstream::new(u.clone(), health).map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resolve = |chain: &[ChainStep]| -> Vec<Step> {
            chain
                .iter()
                .filter_map(|s| match s {
                    ChainStep::Upstream(i) => upstreams.get(*i).cloned().map(Step::Cloud),
                    ChainStep::Local(m) => Some(Step::Local(Arc::from(m.as_str()))),
                })
                .collect()
        };
        let policies = cfg
            .use_cases
            .iter()
            .map(|u| Policy {
                chain: resolve(&u.chain),
                default_cloud: u.default_cloud,
                gate: crate::route::plan::LocalGate::of(u),
                on_context_overflow: u.on_context_overflow.clone(),
                local_limit: u.local_rate.map(|r| RateLimiter::direct(r.quota())),
            })
            .collect();
        Ok(Routing {
            policies,
            default_chain: cfg.default_chain.as_deref().map(resolve),
            failover: cfg.failover.clone(),
            local_limit_per_key: cfg.failover.local_rate_per_key.map(|r| RateLimiter::keyed(r.quota())),
            classifier: Classifier::new(cfg),
            upstreams,
            use_case_upstream: cfg.use_cases.iter().map(|u| u.upstream).collect(),
            default_openai: cfg.default_openai,
            default_anthropic: cfg.default_anthropic,
            max_body: cfg.proxy.max_body,
            genset_tag: Arc::from("genset"),
        })
    }

    /// The upstream for a request: the virtual key's, else the use case's, else the API's default,
    /// each only if it speaks the request's API.
    pub fn pick_upstream(&self, flavor: Flavor, use_case: Option<usize>, vk: Option<&VirtualKey>) -> Result<Arc<Upstream>, ApiError> {
        let speaks = |i: &usize| self.upstreams.get(*i).is_some_and(|u| u.config.api == flavor);
        let by_key = vk.and_then(|v| v.upstream.as_deref()).and_then(|n| self.upstreams.iter().position(|u| u.config.name == n));
        let by_use_case = use_case.and_then(|i| self.use_case_upstream.get(i).copied().flatten());
        let default = match flavor {
            Flavor::OpenAi => self.default_openai,
            Flavor::Anthropic => self.default_anthropic,
        };
        by_key.filter(speaks).or(by_use_case.filter(speaks)).or(default).and_then(|i| self.upstreams.get(i).cloned()).ok_or_else(|| {
            let api = match flavor {
                Flavor::OpenAi => "OpenAI",
                Flavor::Anthropic => "Anthropic",
            };
            ApiError::new(ErrorKind::UpstreamUnavailable, format!("no upstream is configured for {api}-style requests"))
                .with_code("no_upstream")
        })
    }
}

/// A health for an upstream the controller does not know (cannot happen when the controller
/// was built from the same configuration); never routable.
fn unreachable_health(u: &Arc<UpstreamConfig>) -> Arc<Health> {
    tracing::error!(upstream = %u.name, "no health state for this upstream; treating it as down");
    Health::detached(u.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::parse_uri;

    #[test]
    fn a_query_the_uri_grammar_refuses_is_percent_encoded() {
        let plain = parse_uri("http://127.0.0.1:9/v1/chat/completions?api-version=1").expect("a valid URL parses");
        assert_eq!(plain.query(), Some("api-version=1"));
        let lenient = parse_uri("https://api.example.com/v1/models?q=a b\"c").expect("encoded instead of refused");
        assert_eq!(lenient.query(), Some("q=a%20b%22c"));
        assert_eq!(lenient.host(), Some("api.example.com"));
    }
}
