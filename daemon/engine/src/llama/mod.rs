//! The in-process llama.cpp engine (`kind = "gguf"`).

mod sampler;
mod template;

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaStateSeqFlags, LogOptions, SeqState, send_logs_to_tracing};
use parking_lot::Mutex;

use crate::sched::{self, Backend, BatchItem, JobSpec, SchedConfig, Token};
use crate::{BoxFuture, Embeddings, Engine, EngineError, GenerateRequest, Generation, ModelConfig, ModelKind, ModelStats, Prompt};
use sampler::SeqSampler;
use template::ChatTemplate;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The process-wide llama.cpp backend, initialized once, with llama.cpp's logs sent to
/// `tracing` (targets `llama.cpp` and `ggml`).
pub(crate) fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| format!("llama.cpp backend init failed: {e}"))
        })
        .as_ref()
        .map_err(|e| EngineError::Unavailable(e.clone()))
}

/// A GGUF model served by one engine thread.
pub(crate) struct LlamaEngine {
    name: String,
    model: Arc<LlamaModel>,
    template: Option<ChatTemplate>,
    handle: sched::Handle<SeqSampler>,
    thread: Mutex<Option<JoinHandle<()>>>,
    bos_text: String,
    file_size: u64,
    memory_bytes: u64,
    parallel: usize,
    max_queue: usize,
}

impl LlamaEngine {
    /// Load the model and start its engine thread. Slow and blocking: call it from a blocking
    /// thread. The sha256 must have been verified by the caller.
    pub(crate) fn load(cfg: &ModelConfig) -> Result<Self, EngineError> {
        let path = cfg.path.as_deref().ok_or_else(|| EngineError::InvalidRequest("path is required".into()))?;
        let backend = backend()?;
        let file_size = std::fs::metadata(path).map_err(|e| EngineError::Unavailable(format!("{}: {e}", path.display())))?.len();
        let params = LlamaModelParams::default().with_n_gpu_layers(cfg.gpu_layers);
        let started = std::time::Instant::now();
        let model = LlamaModel::load_from_file(backend, path, &params)
            .map_err(|e| EngineError::Unavailable(format!("llama.cpp could not load {} ({e}); see the llama.cpp log", path.display())))?;
        let model = Arc::new(model);
        let template = ChatTemplate::resolve(&model, cfg.chat_template.as_deref())
            .map_err(|e| EngineError::InvalidRequest(format!("chat_template: {e}")))?;
        match &template {
            Some(t) => tracing::info!(model = %cfg.name, template = %t.describe(), "chat template"),
            None => tracing::warn!(
                model = %cfg.name,
                "the model has no chat template and none is configured: chat requests will be refused (set chat_template)"
            ),
        }
        let n_ctx_train = model.n_ctx_train();
        if cfg.context > n_ctx_train && n_ctx_train > 0 {
            tracing::warn!(model = %cfg.name, context = cfg.context, n_ctx_train, "context exceeds the model's training context");
        }
        let vocab = model.vocab();
        let bos_text = if vocab.should_add_bos() {
            String::from_utf8_lossy(&vocab.token_to_piece(vocab.bos(), true, None)).into_owned()
        } else {
            String::new()
        };
        let parallel = cfg.parallel as usize;
        let context = cfg.context as usize;
        let threads = cfg.effective_threads();
        let memory_bytes = file_size + kv_bytes(&model, context * parallel) + compute_bytes(&model, cfg);

        let (handle, runner) = sched::new::<SeqSampler>(SchedConfig {
            slots: parallel,
            n_batch: cfg.batch as usize,
            context,
            max_queue: cfg.max_queue as usize,
            max_wait: cfg.max_wait,
            burst: sched::Burst::DEFAULT,
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
        let thread_model = model.clone();
        let batch = cfg.batch;
        let thread = std::thread::Builder::new()
            .name(format!("engine-{}", cfg.name))
            .spawn(move || {
                let model = thread_model;
                match LlamaRunner::new(backend, &model, context, parallel, batch, threads) {
                    Ok(r) => {
                        let _ = ready_tx.send(Ok(()));
                        runner.run(r);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| EngineError::Internal(format!("cannot start the engine thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(EngineError::Unavailable(e));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(EngineError::Unavailable("the engine thread died while starting".into()));
            }
        }
        tracing::info!(
            model = %cfg.name,
            path = %path.display(),
            file_size,
            memory_bytes,
            context,
            parallel,
            threads,
            batch,
            load_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(LlamaEngine {
            name: cfg.name.clone(),
            model,
            template,
            handle,
            thread: Mutex::new(Some(thread)),
            bos_text,
            file_size,
            memory_bytes,
            parallel,
            max_queue: cfg.max_queue as usize,
        })
    }

    fn tokenize(&self, prompt: &Prompt) -> Result<Vec<Token>, EngineError> {
        let text = match prompt {
            Prompt::Chat { messages, tools } => {
                let t = self
                    .template
                    .as_ref()
                    .ok_or_else(|| EngineError::Unsupported("chat: the model has no chat template (configure chat_template)".into()))?;
                // A trailing assistant turn is a prefill: the answer continues it (how genset
                // rescues a stream cut mid-answer, and Anthropic's prefill semantics).
                match messages.split_last() {
                    Some((last, rest)) if last.role == "assistant" && !rest.is_empty() && last.tool_calls.is_none() => {
                        let mut text = t.render(&self.model, rest, tools)?;
                        text.push_str(&last.content);
                        text
                    }
                    _ => t.render(&self.model, messages, tools)?,
                }
            }
            Prompt::Text(t) => t.clone(),
        };
        // A template that writes the BOS token itself must not get a second one.
        let add_bos = self.bos_text.is_empty() || !text.starts_with(&self.bos_text);
        let tokens = self.model.vocab().tokenize(text.as_bytes(), add_bos, true);
        Ok(tokens.into_iter().map(|t| t.0).collect())
    }
}

impl Drop for LlamaEngine {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Engine for LlamaEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Gguf
    }

    fn submit(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        let tokens = self.tokenize(&request.prompt)?;
        // Refuse an over-long prompt before building its sampler (a grammar costs time).
        self.handle.admission_check(tokens.len())?;
        let sampler = SeqSampler::new(&self.model, &request.sampling, &tokens)?;
        self.handle.submit(JobSpec {
            tokens,
            max_tokens: request.sampling.max_tokens,
            stops: request.sampling.stop,
            sampler,
            priority: request.priority,
        })
    }

    fn embed(&self, input: Vec<String>) -> BoxFuture<'_, Result<Embeddings, EngineError>> {
        let context = embed_limit(self.handle.config().context);
        let tokenized: Result<Vec<Vec<Token>>, EngineError> = input
            .iter()
            .map(|s| {
                let toks: Vec<Token> = self.model.vocab().tokenize(s.as_bytes(), true, false).into_iter().map(|t| t.0).collect();
                if toks.len() > context { Err(EngineError::ContextTooLong { prompt_tokens: toks.len(), context }) } else { Ok(toks) }
            })
            .collect();
        Box::pin(async move {
            let tokens = tokenized?;
            if tokens.is_empty() {
                return Ok(Embeddings { vectors: vec![], prompt_tokens: 0 });
            }
            let prompt_tokens = tokens.iter().map(Vec::len).sum();
            let vectors = self.handle.embed(tokens).await.map_err(|_| EngineError::Unavailable("the engine stopped".into()))??;
            Ok(Embeddings { vectors, prompt_tokens })
        })
    }

    fn count_tokens(&self, prompt: &Prompt) -> Result<usize, EngineError> {
        self.tokenize(prompt).map(|t| t.len())
    }

    fn stats(&self) -> ModelStats {
        let s = self.handle.snapshot();
        ModelStats {
            name: self.name.clone(),
            kind: ModelKind::Gguf,
            file_size: self.file_size,
            memory_bytes: self.memory_bytes,
            context: self.handle.config().context,
            parallel: self.parallel,
            active_slots: s.active_slots,
            used_slots: s.used_slots,
            queue_depth: s.queue_depth,
            queue_capacity: self.max_queue,
            decode_tokens_per_second: s.decode_tps,
            prompt_tokens_per_second: s.prompt_tps,
            totals: s.totals,
        }
    }
}

/// The longest input embeddings take: pooling needs the whole input in one batch, so the
/// (lazily created) embedding context's batch is this large.
fn embed_limit(context: usize) -> usize {
    context.min(2048)
}

/// KV cache bytes for `cells` tokens (f16 K and V, every layer full size).
fn kv_bytes(model: &LlamaModel, cells: usize) -> u64 {
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    let n_head = u64::from(model.n_head().max(1));
    let head_dim = (model.n_embd().max(0) as u64) / n_head;
    let meta = |k: &str| model.meta_val_str(&format!("{arch}.attention.{k}")).ok().and_then(|v| v.parse::<u64>().ok());
    let k_dim = meta("key_length").unwrap_or(head_dim);
    let v_dim = meta("value_length").unwrap_or(head_dim);
    let per_token = u64::from(model.n_layer()) * u64::from(model.n_head_kv()) * (k_dim + v_dim) * 2;
    per_token * cells as u64
}

/// Output and compute buffers, roughly: logits for every slot plus the batch's activations.
fn compute_bytes(model: &LlamaModel, cfg: &ModelConfig) -> u64 {
    let n_vocab = model.n_vocab().max(0) as u64;
    let n_embd = model.n_embd().max(0) as u64;
    n_vocab * 4 * u64::from(cfg.parallel) + n_embd * 4 * u64::from(cfg.batch) * 16 + n_vocab * 4 * 2
}

/// The [`Backend`] over a llama.cpp context, owned by the engine thread.
struct LlamaRunner<'m> {
    backend: &'static LlamaBackend,
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    embed_ctx: Option<(LlamaContext<'m>, LlamaBatch<'static>)>,
    context: usize,
    threads: u32,
    /// The sliding-window layers' window (GGUF `<arch>.attention.sliding_window`), if any.
    window: Option<usize>,
}

impl<'m> LlamaRunner<'m> {
    fn new(
        backend: &'static LlamaBackend,
        model: &'m LlamaModel,
        context: usize,
        parallel: usize,
        batch: u32,
        threads: u32,
    ) -> Result<Self, String> {
        let n_ctx = u32::try_from(context * parallel).map_err(|_| "context x parallel is too large".to_string())?;
        // One unified KV buffer shared by all slots (any mix of sequences decodes in one
        // ubatch), full-size for sliding-window layers so that a slot's prefix can be reused.
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(batch)
            .with_n_ubatch(batch)
            .with_n_seq_max(parallel as u32)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32)
            .with_kv_unified(true)
            .with_swa_full(true);
        let ctx = model.new_context(backend, params).map_err(|e| format!("llama.cpp could not create a context of {n_ctx} tokens: {e}"))?;
        let arch = model.meta_val_str("general.architecture").unwrap_or_default();
        let window =
            model.meta_val_str(&format!("{arch}.attention.sliding_window")).ok().and_then(|v| v.parse::<usize>().ok()).filter(|&w| w > 0);
        Ok(LlamaRunner { backend, model, ctx, batch: LlamaBatch::new(batch as usize, 1), embed_ctx: None, context, threads, window })
    }

    fn embed_one(&mut self, tokens: &[Token]) -> Result<Vec<f32>, EngineError> {
        let limit = embed_limit(self.context);
        if tokens.len() > limit {
            return Err(EngineError::ContextTooLong { prompt_tokens: tokens.len(), context: limit });
        }
        if self.embed_ctx.is_none() {
            let n = u32::try_from(limit).unwrap_or(u32::MAX);
            let params = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(n))
                .with_n_batch(n)
                .with_n_ubatch(n)
                .with_n_seq_max(1)
                .with_n_threads(self.threads as i32)
                .with_n_threads_batch(self.threads as i32)
                .with_embeddings(true)
                .with_pooling_type(LlamaPoolingType::Mean);
            let ctx = self
                .model
                .new_context(self.backend, params)
                .map_err(|e| EngineError::Internal(format!("cannot create the embedding context: {e}")))?;
            self.embed_ctx = Some((ctx, LlamaBatch::new(limit, 1)));
        }
        let Some((ctx, batch)) = self.embed_ctx.as_mut() else {
            return Err(EngineError::Internal("no embedding context".into()));
        };
        ctx.clear_kv_cache();
        batch.clear();
        for (i, &t) in tokens.iter().enumerate() {
            batch.add(LlamaToken(t), i as i32, &[0], true).map_err(|e| EngineError::Internal(e.to_string()))?;
        }
        ctx.decode(batch).map_err(|e| EngineError::Internal(format!("embedding decode failed: {e}")))?;
        let v = ctx.embeddings_seq_ith(0).map_err(|_| EngineError::Internal("no pooled embedding".into()))?;
        let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
        Ok(if norm > 0.0 { v.iter().map(|x| (f64::from(*x) / norm) as f32).collect() } else { v.to_vec() })
    }
}

impl Backend for LlamaRunner<'_> {
    type Sampler = SeqSampler;
    type Saved = SeqState;

    fn truncate(&mut self, slot: usize, keep: usize) -> bool {
        self.ctx.kv_cache_seq_rm(slot as i32, Some(keep as u32), None).is_ok()
    }

    fn clear(&mut self, slot: usize) {
        let _ = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
    }

    fn save(&mut self, slot: usize) -> Option<SeqState> {
        match self.ctx.state_seq_get(slot as i32, LlamaStateSeqFlags::empty()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(slot, error = %e, "cannot copy an idle slot's KV to host memory; it stays in the KV cache");
                None
            }
        }
    }

    fn restore(&mut self, slot: usize, saved: &SeqState) -> bool {
        match self.ctx.state_seq_set(saved, slot as i32) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(slot, error = %e, "cannot restore a saved slot; its prompt is computed again");
                false
            }
        }
    }

    fn share(&mut self, src: usize, dst: usize, from: usize, to: usize) -> bool {
        // The KV cache is unified (one stream for all sequences): the cells of `src` in the
        // range gain `dst`'s id, nothing is copied. (Across streams llama.cpp would copy the
        // whole stream, which the scheduler never wants.)
        let (Ok(from), Ok(to)) = (u32::try_from(from), u32::try_from(to)) else { return false };
        self.ctx.copy_kv_cache_seq(src as i32, dst as i32, Some(from), Some(to)).is_ok()
    }

    fn first_pos(&self, slot: usize) -> Option<usize> {
        usize::try_from(self.ctx.kv_cache_seq_pos_min(slot as i32)).ok()
    }

    fn window(&self) -> Option<usize> {
        self.window
    }

    fn decode(&mut self, batch: &[BatchItem]) -> Result<(), String> {
        self.batch.clear();
        for item in batch {
            self.batch.add(LlamaToken(item.token), item.pos as i32, &[item.slot as i32], item.logits).map_err(|e| e.to_string())?;
        }
        self.ctx.decode(&mut self.batch).map_err(|e| e.to_string())
    }

    fn sample(&mut self, sampler: &mut SeqSampler, batch_index: usize) -> Result<Token, String> {
        let logits = self.ctx.get_logits_ith(batch_index as i32);
        sampler.sample(logits)
    }

    fn piece(&self, token: Token, out: &mut Vec<u8>) {
        self.model.vocab().token_to_piece_into(LlamaToken(token), out, false, None);
    }

    fn is_eog(&self, token: Token) -> bool {
        self.model.vocab().is_eog(LlamaToken(token))
    }

    fn embed(&mut self, inputs: &[Vec<Token>]) -> Result<Vec<Vec<f32>>, EngineError> {
        inputs
            .iter()
            .map(|t| {
                if t.is_empty() {
                    return Err(EngineError::InvalidRequest("input: empty strings cannot be embedded".into()));
                }
                self.embed_one(t)
            })
            .collect()
    }
}
