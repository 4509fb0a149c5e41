//! The route plan: from the mode, the use case's chain and policies and each upstream's
//! health, the ordered steps a request may take. Pure, apart from reading the health atomics.

use std::sync::Arc;

use crate::api::error::{ApiError, ErrorKind, Flavor};
use crate::auth::VirtualKey;
use crate::config::{OnCutoff, RoutingPolicy};
use crate::control::{Mode, ReadinessVerdict};
use crate::proxy::routing::{Policy, Routing, Step};

/// What the plan decided.
pub enum Planned {
    /// Try these, in order. `cut_off`: no cloud step of the chain is routable (or the mode
    /// forces local); `local_first`: local steps lead by policy.
    Steps { steps: Vec<Step>, cut_off: bool, local_first: bool },
    /// `on_cutoff = "queue"` and the cloud is cut off: wait for it, then plan again.
    Queue,
}

/// Whether a step can serve this request at all (API, endpoint).
pub fn step_fits(step: &Step, flavor: Flavor, path: &str) -> bool {
    match step {
        Step::Cloud(u) => u.config.api == flavor || is_chat(path),
        Step::Local(_) => crate::local::LocalEndpoint::from_path(path).is_some(),
    }
}

/// Chat endpoints translate between the two APIs; the others stay with their own API.
pub fn is_chat(path: &str) -> bool {
    path == "/v1/chat/completions" || path == "/v1/messages"
}

pub struct Input<'a> {
    pub routing: &'a Routing,
    pub mode: Mode,
    pub flavor: Flavor,
    pub path: &'a str,
    pub use_case: Option<usize>,
    pub use_case_name: &'a str,
    pub virtual_key: Option<&'a VirtualKey>,
    /// The evaluator's verdict for this use case, if it has one.
    pub readiness: Option<crate::control::ReadinessVerdict>,
    /// The live drill holding this use case (`mode` is then ForceLocal), if one does.
    pub drill: Option<&'a str>,
}

/// What decides whether a cut-off hands a use case to its local model: its policies and
/// the operator's `local_ready`. The request path applies it; a live drill checks it before
/// it starts, so a drill never holds traffic that a real cut-off would reject.
#[derive(Debug, Clone, Copy)]
pub struct LocalGate {
    pub on_cutoff: OnCutoff,
    pub routing: RoutingPolicy,
    pub local_ready: bool,
    pub serve_marginal: bool,
}

impl LocalGate {
    pub fn of(u: &crate::config::UseCaseConfig) -> LocalGate {
        LocalGate { on_cutoff: u.on_cutoff, routing: u.routing, local_ready: u.local_ready, serve_marginal: u.eval.serve_marginal }
    }

    /// Whether its local model may serve: the operator's `local_ready = true`, or a measured
    /// `ready` (or `marginal` with `on_marginal = "serve"`).
    fn ready(&self, r: Option<&ReadinessVerdict>) -> bool {
        use genset_eval::Verdict;
        self.local_ready
            || match r.map(|r| r.verdict) {
                Some(Verdict::Ready) => true,
                Some(Verdict::Marginal) => self.serve_marginal,
                _ => false,
            }
    }

    /// Whether a cut-off hands it to its local model: a local routing policy always does;
    /// cloud-first, `on_cutoff = "serve-local"` with its readiness allowing it.
    pub fn serves_locally(&self, r: Option<&ReadinessVerdict>) -> bool {
        self.routing != RoutingPolicy::CloudFirst || (self.on_cutoff == OnCutoff::ServeLocal && self.ready(r))
    }

    /// Why a cut-off would not serve it locally, or `None` when it would.
    pub fn refusal(&self, r: Option<&ReadinessVerdict>) -> Option<String> {
        if self.serves_locally(r) {
            return None;
        }
        Some(match (self.on_cutoff, r) {
            (OnCutoff::Reject, _) => "its policy is on_cutoff = \"reject\"".into(),
            (OnCutoff::Queue, _) => "its policy is on_cutoff = \"queue\" (it waits for the cloud)".into(),
            (OnCutoff::ServeLocal, Some(r)) => format!("its local model's readiness is {} ({})", r.verdict, r.reason),
            (OnCutoff::ServeLocal, None) => "its local model has no readiness verdict yet and local_ready is not set".into(),
        })
    }
}

pub fn plan(i: &Input<'_>) -> Result<Planned, ApiError> {
    let policy: Option<&Policy> = i.use_case.and_then(|u| i.routing.policies.get(u));
    let chain = chain(i)?;
    let fits: Vec<Step> = chain.into_iter().filter(|s| step_fits(s, i.flavor, i.path)).collect();
    let (cloud, local): (Vec<Step>, Vec<Step>) = fits.into_iter().partition(|s| matches!(s, Step::Cloud(_)));
    let routable: Vec<Step> = cloud.iter().filter(|s| matches!(s, Step::Cloud(u) if u.health.routable())).cloned().collect();
    let routing_policy = policy.map_or(RoutingPolicy::CloudFirst, |p| p.gate.routing);
    let on_cutoff = policy.map_or(OnCutoff::ServeLocal, |p| p.gate.on_cutoff);
    // May local models take this use case's traffic when the cloud is gone?
    // (Unclassified traffic reaches local steps only if the default chain names them.)
    let local_ok = !local.is_empty() && policy.is_none_or(|p| p.gate.serves_locally(i.readiness.as_ref()));
    let steps = |v: Vec<Step>, cut_off: bool, local_first: bool| Ok(Planned::Steps { steps: v, cut_off, local_first });

    match i.mode {
        Mode::ForceCloud => {
            // Routable first, then the others (forced: try the cloud even if it looks down).
            let mut v = routable.clone();
            v.extend(cloud.iter().filter(|s| matches!(s, Step::Cloud(u) if !u.health.routable())).cloned());
            if v.is_empty() {
                return Err(no_step(i, "genset is forced to the cloud (mode force-cloud) and no cloud upstream serves this request"));
            }
            steps(v, false, false)
        }
        Mode::ForceLocal => {
            if local_ok {
                steps(local, true, false)
            } else {
                let what = match i.drill {
                    Some(id) => format!("failover drill {id} is serving this use case as in a cut-off"),
                    None => "genset is in forced local mode".to_string(),
                };
                Err(cutoff_error(i, policy, &what, true))
            }
        }
        Mode::Auto => match routing_policy {
            RoutingPolicy::LocalOnly => {
                if local.is_empty() {
                    return Err(no_step(i, "this use case is local-only and no local model serves this endpoint"));
                }
                steps(local, false, true)
            }
            RoutingPolicy::LocalFirst if policy.is_some_and(|p| p.gate.ready(i.readiness.as_ref())) && !local.is_empty() => {
                let mut v = local;
                v.extend(routable);
                steps(v, false, true)
            }
            _ => {
                if routable.is_empty() {
                    if cloud.is_empty() && !local_ok {
                        return Err(no_step(i, "no upstream is configured for this request"));
                    }
                    return match on_cutoff {
                        OnCutoff::Queue => Ok(Planned::Queue),
                        OnCutoff::ServeLocal if local_ok => steps(local, true, false),
                        _ => Err(cutoff_error(i, policy, "the cloud is cut off", false)),
                    };
                }
                let mut v = routable;
                if local_ok {
                    v.extend(local);
                }
                steps(v, false, false)
            }
        },
    }
}

/// The use case's chain, the default chain, or the API's default upstream; a virtual key's
/// upstream goes first.
fn chain(i: &Input<'_>) -> Result<Vec<Step>, ApiError> {
    let r = i.routing;
    let policy = i.use_case.and_then(|u| r.policies.get(u));
    let policy_chain = policy.filter(|p| !p.default_cloud).map(|p| &p.chain).filter(|c| !c.is_empty());
    let mut chain: Vec<Step> = match policy_chain.or(r.default_chain.as_ref()) {
        Some(c) => c.clone(),
        None => match r.pick_upstream(i.flavor, i.use_case, None) {
            Ok(u) => vec![Step::Cloud(u)],
            Err(e) => {
                // No cloud upstream for this API: a use case may still have local steps.
                let locals: Vec<Step> = i.use_case.and_then(|u| r.policies.get(u)).map(|p| p.chain.clone()).unwrap_or_default();
                if locals.is_empty() {
                    return Err(e);
                }
                locals
            }
        },
    };
    // A use case that named no cloud steps: the routing default's, then its local model.
    if let Some(p) = policy.filter(|p| p.default_cloud) {
        for s in &p.chain {
            if !chain.iter().any(|c| same_step(c, s)) {
                chain.push(s.clone());
            }
        }
    }
    if let Some(name) = i.virtual_key.and_then(|v| v.upstream.as_deref())
        && let Some(u) = r.upstreams.iter().find(|u| u.config.name == name)
    {
        chain.retain(|s| !matches!(s, Step::Cloud(x) if Arc::ptr_eq(x, u)));
        chain.insert(0, Step::Cloud(u.clone()));
    }
    Ok(chain)
}

fn same_step(a: &Step, b: &Step) -> bool {
    match (a, b) {
        (Step::Cloud(x), Step::Cloud(y)) => Arc::ptr_eq(x, y),
        (Step::Local(x), Step::Local(y)) => x == y,
        _ => false,
    }
}

fn no_step(i: &Input<'_>, why: &str) -> ApiError {
    ApiError::new(ErrorKind::UpstreamUnavailable, format!("{why} (use case {:?}, {})", i.use_case_name, i.path)).with_code("no_route")
}

fn cutoff_error(i: &Input<'_>, policy: Option<&Policy>, what: &str, forced: bool) -> ApiError {
    let why = match policy {
        None => "traffic of no use case is not served locally".to_string(),
        Some(p) => p.gate.refusal(i.readiness.as_ref()).unwrap_or_else(|| "no local model serves this endpoint".to_string()),
    };
    let down: Vec<String> = i
        .routing
        .upstreams
        .iter()
        .filter(|u| !u.health.routable())
        .map(|u| format!("{} ({})", u.config.name, u.health.state().as_str()))
        .collect();
    let mut msg = format!("{what}: use case {:?} is not served locally because {why}", i.use_case_name);
    if !down.is_empty() && !forced {
        msg.push_str(&format!("; unavailable upstreams: {}", down.join(", ")));
    }
    msg.push_str(". Retry later.");
    ApiError::new(ErrorKind::CutOff, msg).with_code("cloud_cut_off").with_retry_after(i.routing.failover.breaker.open_base)
}
