//! Running one evaluation request on a local engine without taking capacity from live traffic.
//!
//! The engine's priority queue admits live requests before evaluations, but a sequence that
//! already holds a slot keeps decoding in the same batches as the live ones, and a long
//! evaluation prompt chunk delays every live token of that step. So the evaluator also steps
//! aside itself: it submits only when the engine is idle (no active slot, nothing queued),
//! and while its answer is generated it watches the engine; as soon as anyone else is active
//! or queued it drops its generation (the engine frees the slot at the next step) and tries
//! again later. Latencies are therefore those of an idle engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use genset_engine::{Engine, EngineError, FinishReason, GenerateEvent, GenerateRequest};
use tokio_util::sync::CancellationToken;

/// How often the engine is looked at while waiting or generating.
pub const POLL: Duration = Duration::from_millis(5);
/// How many times one evaluation steps aside for live traffic before it is given up this round.
pub const MAX_YIELDS: u32 = 200;

/// A local answer.
#[derive(Debug, Clone)]
pub struct LocalAnswer {
    pub text: String,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub completion_tokens: usize,
    pub finish: FinishReason,
    /// How many times it stepped aside for live traffic first.
    pub yields: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// The engine failed the request (counts against the model: it could not answer).
    Engine(EngineError),
    /// It took longer than `evaluation.timeout` (counts against the model).
    Timeout { after_ms: u64 },
    /// Live traffic kept the engine busy (not the model's fault; try next round).
    Deferred,
    /// The round was stopped: shutdown, or genset started serving a cut-off.
    Stopped,
}

/// Whether evaluations must stop now (a cut-off is being served, or shutdown).
pub trait Gate: Send + Sync {
    fn stop(&self) -> bool;
}

/// Run `request` on `engine`, stepping aside for live traffic. `timeout` bounds the
/// generation itself (not the waits for an idle engine, which are bounded by `wait`).
pub async fn run(
    engine: &Arc<dyn Engine>,
    request: GenerateRequest,
    timeout: Duration,
    wait: Duration,
    gate: &dyn Gate,
    cancel: &CancellationToken,
) -> Result<LocalAnswer, RunError> {
    let waited_since = Instant::now();
    let mut yields = 0u32;
    loop {
        // 1. An idle engine.
        loop {
            if cancel.is_cancelled() || gate.stop() {
                return Err(RunError::Stopped);
            }
            let s = engine.stats();
            if s.active_slots == 0 && s.queue_depth == 0 {
                break;
            }
            if waited_since.elapsed() > wait {
                return Err(RunError::Deferred);
            }
            tokio::time::sleep(POLL).await;
        }
        // 2. Generate, watching for anyone else.
        let started = Instant::now();
        let mut g = match engine.submit(request.clone()) {
            Ok(g) => g,
            Err(EngineError::Overloaded { .. }) => {
                yields += 1;
                if yields > MAX_YIELDS {
                    return Err(RunError::Deferred);
                }
                continue;
            }
            Err(e) => return Err(RunError::Engine(e)),
        };
        let mut text = String::new();
        let mut ttft = None;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            tokio::select! {
                ev = g.next() => match ev {
                    Some(GenerateEvent::Text(t)) => {
                        if ttft.is_none() {
                            ttft = Some(started.elapsed().as_millis() as u64);
                        }
                        text.push_str(&t);
                    }
                    Some(GenerateEvent::Started { .. }) => {}
                    Some(GenerateEvent::Done { finish, usage }) => break Ok((finish, usage.completion_tokens)),
                    Some(GenerateEvent::Error(e)) => break Err(e),
                    None => break Err(EngineError::Internal("the generation ended without a terminal event".into())),
                },
                _ = tick.tick() => {
                    if cancel.is_cancelled() || gate.stop() {
                        return Err(RunError::Stopped);
                    }
                    if started.elapsed() > timeout {
                        return Err(RunError::Timeout { after_ms: started.elapsed().as_millis() as u64 });
                    }
                    let s = engine.stats();
                    // Our own sequence is one of them (queued or active).
                    if s.active_slots + s.queue_depth > 1 {
                        break Err(EngineError::Overloaded { retry_after: Duration::ZERO });
                    }
                }
            }
        };
        match outcome {
            Ok((finish, completion_tokens)) => {
                return Ok(LocalAnswer {
                    text,
                    latency_ms: started.elapsed().as_millis() as u64,
                    ttft_ms: ttft,
                    completion_tokens,
                    finish,
                    yields,
                });
            }
            // Someone else needs the engine (or it was full): step aside, try again.
            Err(EngineError::Overloaded { .. } | EngineError::QueueTimeout { .. }) => {
                drop(g);
                yields += 1;
                if yields > MAX_YIELDS || waited_since.elapsed() > wait {
                    return Err(RunError::Deferred);
                }
            }
            Err(e) => return Err(RunError::Engine(e)),
        }
    }
}
