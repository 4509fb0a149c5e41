//! genset's local inference engine.
//!
//! The rest of the daemon sees one small boundary: [`Engine`] (object safe, used as
//! `Arc<dyn Engine>`), built from `[[models]]` config entries ([`ModelConfig`]) by the
//! [`EngineRegistry`]. Two implementations sit behind it:
//!
//! - `kind = "gguf"`: a GGUF model run in-process through llama.cpp (`llama-cpp-2`). One engine
//!   thread owns the llama.cpp context and runs a continuous-batching loop (`sched`):
//!   requests join the running batch between steps, prompt chunks and decode tokens share a
//!   batch, each sequence has its own sampler, and each slot keeps its KV cache as a prefix
//!   cache for the next request.
//! - `kind = "openai-compatible"`: an external server (vLLM, llama-server, Ollama) reached over
//!   HTTP, for sites that scale past one process.
//!
//! The scheduler (`sched`: queueing, priorities, admission, cancellation, batching decisions)
//! is written against a small internal `Backend` trait and tested with a fake model.
//!
//! # Building the GPU variant
//! `cargo build --release -p genset --features genset-engine/cuda` builds llama.cpp with CUDA
//! (the CUDA toolkit and `nvcc` must be installed; set `CUDA_PATH` if it is not in the default
//! place). Then give a model `gpu_layers = 999` to offload all its layers. CI builds and tests
//! the CPU variant only.
//!
//! **Architecture Invariant:** the engine thread never blocks on a client: events go through
//! unbounded per-request channels whose size is bounded by `max_tokens`, and a dropped
//! [`Generation`] frees its slot at the next step.
//!
//! **Architecture Invariant:** every [`Generation`] ends with exactly one terminal event
//! ([`GenerateEvent::Done`] or [`GenerateEvent::Error`]), even when the engine thread dies.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod config;
mod llama;
mod registry;
mod remote;
mod sched;
mod text;
mod types;

pub use config::{ModelConfig, ModelKind, validate_models};
pub use registry::{EngineRegistry, LoadError, LoadOptions, build, verify_sha256};
pub use types::*;

use std::future::Future;
use std::pin::Pin;

/// A boxed future, so that [`Engine`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A loaded model that can generate text. Implementations: the in-process llama.cpp engine and
/// the `openai-compatible` client.
pub trait Engine: Send + Sync {
    /// The configured model name (`[[models]].name`).
    fn name(&self) -> &str;

    /// Where the model runs.
    fn kind(&self) -> ModelKind;

    /// Admit a request. Admission errors come back immediately: a full queue
    /// ([`EngineError::Overloaded`]), a prompt longer than the context
    /// ([`EngineError::ContextTooLong`]) or a feature the model cannot honour
    /// ([`EngineError::Unsupported`]). Later errors (queue timeout, engine failure) arrive as
    /// [`GenerateEvent::Error`]. Dropping the returned [`Generation`] cancels the sequence.
    fn submit(&self, request: GenerateRequest) -> Result<Generation, EngineError>;

    /// Embed each input (L2-normalized vectors, one per input, in order).
    fn embed(&self, input: Vec<String>) -> BoxFuture<'_, Result<Embeddings, EngineError>>;

    /// How many prompt tokens `prompt` would take (after the chat template).
    fn count_tokens(&self, prompt: &Prompt) -> Result<usize, EngineError>;

    /// [`Engine::count_tokens`] for engines that must ask someone: a remote
    /// (`openai-compatible`) model asks its server's `/tokenize`. The default answers with
    /// `count_tokens`. The API layer calls this one.
    fn count_tokens_async<'a>(&'a self, prompt: &'a Prompt) -> BoxFuture<'a, Result<usize, EngineError>> {
        Box::pin(std::future::ready(self.count_tokens(prompt)))
    }

    /// A snapshot of the model's capacity and activity.
    fn stats(&self) -> ModelStats;
}
