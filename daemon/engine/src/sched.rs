//! The continuous-batching scheduler: queueing, priorities, admission, cancellation, prefix
//! reuse and the composition of every batch.
//!
//! It drives a model through the small [`Backend`] trait, so it runs (and is tested) without a
//! model: the llama.cpp backend lives in `crate::llama`, a fake one in the tests below.
//!
//! One engine thread owns the backend and loops:
//! 1. under the lock: expire queued requests past `max_wait`, admit queued requests into free
//!    slots (highest priority first, FIFO within a priority), or sleep when there is no work
//!    (woken from that sleep, first gather the rest of a burst: [`Burst`]);
//! 2. place each admitted request in the free slot whose cached tokens share the longest prefix
//!    with its prompt when that prefix is worth reusing (bringing that slot's tokens back from
//!    host memory if they were moved there), otherwise in an empty or the least recently used
//!    slot ([`choose_slot`]), and drop the rest of that slot's cache;
//! 3. drop sequences whose [`crate::Generation`] was dropped;
//! 4. share prefixes between sequences ([`share_prefixes`]): a prompt takes what another
//!    slot's KV already holds of it (a running sequence's or an idle slot's), or waits a step
//!    for an earlier prompt that is about to compute a long prefix they share (a burst with
//!    one system prompt computes it once);
//! 5. build one batch: one token for every decoding sequence, then prompt chunks (oldest first)
//!    up to `n_batch`; then move the KV of idle slots out of the KV cache to host memory while
//!    any sequence is active (after step 4, so that they can lend a prefix first);
//! 6. decode it, sample every sequence that produced logits, stream text, finish sequences.
//!
//! **Architecture Invariant:** a slot's `cache` mirrors exactly the tokens in that sequence's
//! KV cache (positions `0..cache.len()`); every change to one is made to the other. A slot's
//! `saved` tokens are not in the KV cache at all (its sequence there is empty). In a model with
//! sliding-window layers (Gemma 3: 512 tokens) those layers may hold only `first..cache.len()`
//! of a sequence ([`Backend::first_pos`]): cells that left the window get overwritten, and a
//! copy to host memory leaves them out. A sequence is continued at a position, and a prefix
//! shared from another, only when no position the next token attends to is missing
//! ([`continues_at`]); otherwise the prompt is computed.
//!
//! Why idle slots leave the KV cache: all slots share one unified KV buffer, and every ubatch
//! attends over the used range of that buffer (masked per sequence), so the cached tokens of
//! idle slots made every prompt and decode step of the active ones pay for them. A 520-token
//! prompt right after four concurrent streams took ~1600 ms with their caches in place and
//! ~1420 ms with them moved out (2 threads, test model); llama-server does the same
//! (`--cache-idle-slots`, on by default: 1430 vs 1580 ms without it). The copy is ~18 KB per
//! token for the test model (a 540-token slot: ~6 ms out, ~1.6 ms back), made once per idle
//! period; the copies are bounded by the KV cache's own size (one per slot, at most `context`
//! tokens each).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::{mpsc, oneshot};

use crate::text::{Push, TextStream};
use crate::{EngineError, FinishReason, GenerateEvent, Generation, ModelTotals, Priority, Usage};

pub(crate) type Token = i32;

/// One token of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchItem {
    pub token: Token,
    pub pos: u32,
    pub slot: usize,
    /// Whether logits are wanted for this token (the last prompt token, every decode token).
    pub logits: bool,
}

/// What the scheduler needs from a model. Slots are llama.cpp sequence ids.
pub(crate) trait Backend {
    /// Per-request sampling state, built at submission.
    type Sampler: Send;
    /// One sequence's KV, copied to host memory.
    type Saved;

    /// Keep only positions `0..keep` of `slot`'s sequence. `false` when the backend cannot
    /// remove part of a sequence (the scheduler then clears it).
    fn truncate(&mut self, slot: usize, keep: usize) -> bool;
    /// Remove all of `slot`'s sequence.
    fn clear(&mut self, slot: usize);
    /// Copy `slot`'s sequence out of the KV cache (the caller then clears it). `None` when the
    /// backend cannot (the sequence then stays where it is).
    fn save(&mut self, slot: usize) -> Option<Self::Saved>;
    /// Load a copy made by [`Backend::save`] into `slot`, whose sequence is empty. `false` on
    /// failure (the sequence is then empty).
    fn restore(&mut self, slot: usize, saved: &Self::Saved) -> bool;
    /// Make positions `from..to` of `src`'s sequence part of `dst`'s as well, without
    /// computing them: `dst` holds exactly positions `0..from`, the same tokens as `src`'s.
    /// `false` when the backend cannot (the scheduler then computes those tokens).
    fn share(&mut self, src: usize, dst: usize, from: usize, to: usize) -> bool;
    /// The lowest position of `slot`'s sequence that every layer's KV still holds (`None`:
    /// none). Sliding-window layers give up the cells that have left a sequence's window
    /// (other tokens overwrite them) and a copy to host memory leaves them out, so for such a
    /// model a sequence's KV can start above 0; the positions from there up are all present.
    fn first_pos(&self, slot: usize) -> Option<usize>;
    /// The model's attention window in tokens, when some of its layers attend over one.
    fn window(&self) -> Option<usize>;
    fn decode(&mut self, batch: &[BatchItem]) -> Result<(), String>;
    /// Sample (and accept) the next token from the logits of batch entry `batch_index`.
    fn sample(&mut self, sampler: &mut Self::Sampler, batch_index: usize) -> Result<Token, String>;
    /// Append the bytes of `token` to `out`.
    fn piece(&self, token: Token, out: &mut Vec<u8>);
    fn is_eog(&self, token: Token) -> bool;
    /// Pooled, normalized embeddings of each input.
    fn embed(&mut self, inputs: &[Vec<Token>]) -> Result<Vec<Vec<f32>>, EngineError>;
}

#[derive(Debug, Clone)]
pub(crate) struct SchedConfig {
    pub slots: usize,
    pub n_batch: usize,
    /// Tokens per sequence.
    pub context: usize,
    pub max_queue: usize,
    pub max_wait: Duration,
    /// How a burst is gathered when the engine is idle; see [`Burst`].
    pub burst: Burst,
}

/// When a request wakes an idle engine, the engine waits until no other request has arrived
/// for `quiet` (at most `max` in all, and not once every slot has a request) before its first
/// step, so that requests sent together are admitted together and share one prompt batch.
///
/// Without it the first request of a burst was decoded alone and the rest, arriving a
/// fraction of a millisecond to a few ms later, waited for that whole step and then for their
/// own: the streams started apart and the first one decoded alone meanwhile (4 simultaneous
/// streams, 2 threads, test model: aggregate decode 87 tok/s, 94 gathered). The trade: that
/// first request now waits for the whole burst's prompts (mean TTFT of the 4 streams 366 ms
/// alone-first, 444 ms gathered; llama-server, which ends up gathering them by its own
/// latency, 466 ms). A request that arrives alone at an idle engine waits `quiet` (1 ms); an
/// engine that is already running never waits, its next step takes whatever has arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Burst {
    pub quiet: Duration,
    pub max: Duration,
}

impl Burst {
    pub(crate) const DEFAULT: Burst = Burst { quiet: Duration::from_millis(1), max: Duration::from_millis(5) };
    /// No waiting (tests that line requests up themselves).
    #[cfg(test)]
    pub(crate) const OFF: Burst = Burst { quiet: Duration::ZERO, max: Duration::ZERO };
}

/// A tokenized request, ready to queue.
pub(crate) struct JobSpec<S> {
    pub tokens: Vec<Token>,
    pub max_tokens: Option<u32>,
    pub stops: Vec<String>,
    pub sampler: S,
    pub priority: Priority,
}

struct Job<S> {
    tokens: Vec<Token>,
    max_tokens: usize,
    stops: Vec<String>,
    sampler: S,
    priority: Priority,
    enqueued: Instant,
    tx: mpsc::UnboundedSender<GenerateEvent>,
}

struct EmbedJob {
    inputs: Vec<Vec<Token>>,
    tx: oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>>,
}

const PRIORITIES: [Priority; 3] = [Priority::Live, Priority::Drill, Priority::Evaluation];
const RATE_WINDOW: Duration = Duration::from_secs(5);

struct Step {
    start: Instant,
    end: Instant,
    decode: u32,
    prompt: u32,
}

struct State<S> {
    /// One FIFO per priority, indexed by `Priority as usize`.
    queues: [VecDeque<Job<S>>; 3],
    embeds: VecDeque<EmbedJob>,
    shutdown: bool,
    dead: Option<String>,
    /// Slots with a sequence (set by the engine thread).
    active: usize,
    /// Slots holding cached tokens.
    used: usize,
    totals: ModelTotals,
    steps: VecDeque<Step>,
    /// Moving average of request durations, for Retry-After.
    avg_request_secs: f64,
}

impl<S> State<S> {
    fn queued(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    fn pop(&mut self) -> Option<Job<S>> {
        PRIORITIES.iter().find_map(|p| self.queues[*p as usize].pop_front())
    }

    fn retry_after(&self, slots: usize) -> Duration {
        let per_slot = self.avg_request_secs.max(1.0) * (self.queued() as f64 + 1.0) / slots.max(1) as f64;
        Duration::from_secs(per_slot.ceil().clamp(1.0, 60.0) as u64)
    }

    fn rates(&self, now: Instant) -> (f64, f64) {
        let recent = self.steps.iter().filter(|s| now.duration_since(s.end) <= RATE_WINDOW);
        let (mut start, mut decode, mut prompt) = (now, 0u64, 0u64);
        for s in recent {
            start = start.min(s.start);
            decode += u64::from(s.decode);
            prompt += u64::from(s.prompt);
        }
        let span = now.duration_since(start).as_secs_f64();
        if span <= 0.0 {
            return (0.0, 0.0);
        }
        (decode as f64 / span, prompt as f64 / span)
    }
}

struct Shared<S> {
    cfg: SchedConfig,
    state: Mutex<State<S>>,
    wake: Condvar,
}

/// What [`Handle::snapshot`] reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub active_slots: usize,
    pub used_slots: usize,
    pub queue_depth: usize,
    pub decode_tps: f64,
    pub prompt_tps: f64,
    pub totals: ModelTotals,
}

/// The submitting side of a scheduler; cheap to clone.
pub(crate) struct Handle<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for Handle<S> {
    fn clone(&self) -> Self {
        Handle { shared: self.shared.clone() }
    }
}

impl<S: Send> Handle<S> {
    pub(crate) fn config(&self) -> &SchedConfig {
        &self.shared.cfg
    }

    /// Refuse a prompt of `n_prompt` tokens that cannot fit (counted as a rejected request).
    pub(crate) fn admission_check(&self, n_prompt: usize) -> Result<(), EngineError> {
        if n_prompt == 0 {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        let context = self.shared.cfg.context;
        if n_prompt >= context {
            let mut st = self.shared.state.lock();
            st.totals.requests += 1;
            st.totals.rejected += 1;
            return Err(EngineError::ContextTooLong { prompt_tokens: n_prompt, context });
        }
        Ok(())
    }

    /// Queue a request, or refuse it now.
    pub(crate) fn submit(&self, spec: JobSpec<S>) -> Result<Generation, EngineError> {
        let cfg = &self.shared.cfg;
        let n_prompt = spec.tokens.len();
        self.admission_check(n_prompt)?;
        if spec.max_tokens == Some(0) {
            return Err(EngineError::InvalidRequest("max_tokens must be at least 1".into()));
        }
        let room = cfg.context - n_prompt;
        let max_tokens = spec.max_tokens.map_or(room, |m| (m as usize).min(room));
        let (tx, generation) = Generation::channel();
        let job = Job {
            tokens: spec.tokens,
            max_tokens,
            stops: spec.stops,
            sampler: spec.sampler,
            priority: spec.priority,
            enqueued: Instant::now(),
            tx,
        };
        let mut st = self.shared.state.lock();
        if let Some(why) = &st.dead {
            return Err(EngineError::Unavailable(why.clone()));
        }
        st.totals.requests += 1;
        let capacity = cfg.max_queue + cfg.slots.saturating_sub(st.active);
        if st.queued() >= capacity {
            // Make room by evicting the newest request of a lower priority, if any.
            let victim = PRIORITIES.iter().rev().filter(|p| **p < job.priority).find_map(|p| st.queues[*p as usize].pop_back());
            let retry_after = st.retry_after(cfg.slots);
            st.totals.rejected += 1;
            match victim {
                Some(v) => {
                    let _ = v.tx.send(GenerateEvent::Error(EngineError::Overloaded { retry_after }));
                }
                None => return Err(EngineError::Overloaded { retry_after }),
            }
        }
        st.queues[job.priority as usize].push_back(job);
        drop(st);
        self.shared.wake.notify_one();
        Ok(generation)
    }

    pub(crate) fn embed(&self, inputs: Vec<Vec<Token>>) -> oneshot::Receiver<Result<Vec<Vec<f32>>, EngineError>> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.shared.state.lock();
        if let Some(why) = &st.dead {
            let _ = tx.send(Err(EngineError::Unavailable(why.clone())));
        } else {
            st.embeds.push_back(EmbedJob { inputs, tx });
        }
        drop(st);
        self.shared.wake.notify_one();
        rx
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let st = self.shared.state.lock();
        let (decode_tps, prompt_tps) = st.rates(Instant::now());
        Snapshot {
            active_slots: st.active,
            used_slots: st.used,
            queue_depth: st.queued(),
            decode_tps,
            prompt_tps,
            totals: st.totals.clone(),
        }
    }

    /// Ask the engine thread to stop: queued and running requests get an error.
    pub(crate) fn shutdown(&self) {
        self.shared.state.lock().shutdown = true;
        self.shared.wake.notify_all();
    }
}

/// The engine-thread side: owns nothing but the shared state until [`Runner::run`] gets a
/// backend.
pub(crate) struct Runner<S> {
    shared: Arc<Shared<S>>,
}

/// A new scheduler: the handle for submitters and the runner for the engine thread.
pub(crate) fn new<S>(cfg: SchedConfig) -> (Handle<S>, Runner<S>) {
    let shared = Arc::new(Shared {
        cfg,
        state: Mutex::new(State {
            queues: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            embeds: VecDeque::new(),
            shutdown: false,
            dead: None,
            active: 0,
            used: 0,
            totals: ModelTotals::default(),
            steps: VecDeque::new(),
            avg_request_secs: 0.0,
        }),
        wake: Condvar::new(),
    });
    (Handle { shared: shared.clone() }, Runner { shared })
}

/// Marks the scheduler dead and fails everything queued when the engine thread ends, by return
/// or by panic.
struct DeadGuard<'a, S>(&'a Shared<S>);

impl<S> Drop for DeadGuard<'_, S> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        let why = if std::thread::panicking() { "the engine thread failed".to_string() } else { "the engine has shut down".to_string() };
        st.dead = Some(why.clone());
        st.active = 0;
        for q in &mut st.queues {
            for job in q.drain(..) {
                let _ = job.tx.send(GenerateEvent::Error(EngineError::Unavailable(why.clone())));
            }
        }
        for e in st.embeds.drain(..) {
            let _ = e.tx.send(Err(EngineError::Unavailable(why.clone())));
        }
    }
}

struct Seq<S> {
    tokens: Vec<Token>,
    /// Index of the next prompt token to feed.
    next_prompt: usize,
    /// A sampled token to feed at the next step.
    pending: Option<Token>,
    generated: usize,
    max_tokens: usize,
    cached_tokens: usize,
    sampler: S,
    text: TextStream,
    tx: mpsc::UnboundedSender<GenerateEvent>,
    admitted: u64,
    started: Instant,
}

impl<S> Seq<S> {
    fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.tokens.len(), cached_tokens: self.cached_tokens, completion_tokens: self.generated }
    }
}

struct Slot<S, V> {
    /// Tokens in this sequence's KV cache, in position order.
    cache: Vec<Token>,
    /// An idle slot's tokens and their KV, moved to host memory (`cache` is then empty).
    saved: Option<(Vec<Token>, V)>,
    seq: Option<Seq<S>>,
    last_used: u64,
}

impl<S, V> Slot<S, V> {
    /// The tokens this slot can offer as a prefix: in the KV cache or saved.
    fn cached(&self) -> &[Token] {
        match &self.saved {
            Some((tokens, _)) => tokens,
            None => &self.cache,
        }
    }

    fn holds_tokens(&self) -> bool {
        !self.cache.is_empty() || self.saved.is_some()
    }
}

/// Whether bringing back `saved` tokens of which `reused` are a prefix of the new prompt beats
/// recomputing those: a restore costs ~3 µs per saved token (test model), a prompt token
/// ~1-3 ms of compute, so it pays unless almost nothing of a long sequence is reused.
fn worth_restoring(reused: usize, saved: usize) -> bool {
    reused > 0 && reused.saturating_mul(256) >= saved
}

/// Whether a sequence whose KV holds positions `first..` (see [`Backend::first_pos`]) can take
/// its next token at position `pos`: every earlier position that token attends to is there.
/// With a sliding window of `w` tokens, a token at `pos` attends back to `pos - w + 1`; a
/// model without one (or whose window is unknown) needs them all.
fn continues_at(first: Option<usize>, window: Option<usize>, pos: usize) -> bool {
    match first {
        None => pos == 0,
        Some(p) => p == 0 || window.is_some_and(|w| p + w <= pos),
    }
}

/// A prompt waits for an earlier one that is about to compute a prefix they share (rather than
/// compute it twice) only when the prefix is at least this long: below, waiting a step costs
/// the later prompt more than the few tokens it would save.
const MIN_SHARED_WAIT: usize = 32;

/// Length of the common prefix of two token lists.
pub(crate) fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A cached prefix this long is always worth reusing (a system prompt, a conversation so far).
const MIN_REUSE: usize = 32;

/// Whether a slot holding `cached` tokens, `lcp` of which begin a new `prompt`, is worth taking
/// for that prompt: the shared part is at least a tenth of the prompt (llama-server's
/// `--slot-prompt-similarity`) and it is long, or the whole prompt (a repeated request), or no
/// shorter than what the slot would discard. A chat template's few opening tokens are none of
/// these: a new system prompt must not throw away another use case's cached one to save them.
fn worth_reusing(lcp: usize, cached: usize, prompt: usize) -> bool {
    lcp > 0 && lcp.saturating_mul(10) >= prompt && (lcp >= MIN_REUSE || lcp >= prompt || lcp >= cached.saturating_sub(lcp))
}

/// The free slot to place `tokens` in, and how many of its cached tokens begin them: the
/// longest cached prefix when it is worth reusing (ties: the least recently used, then the
/// lowest index); otherwise a slot that holds nothing, or else the least recently used one.
fn choose_slot<S, V>(slots: &[Slot<S, V>], tokens: &[Token]) -> Option<(usize, usize)> {
    let free = || slots.iter().enumerate().filter(|(_, s)| s.seq.is_none());
    let (best, lcp) = free()
        .map(|(i, s)| (i, common_prefix(s.cached(), tokens), s.last_used))
        .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)).then(b.0.cmp(&a.0)))
        .map(|(i, lcp, _)| (i, lcp))?;
    if worth_reusing(lcp, slots[best].cached().len(), tokens.len()) {
        return Some((best, lcp));
    }
    free().min_by_key(|(i, s)| (s.holds_tokens(), s.last_used, *i)).map(|(i, s)| (i, common_prefix(s.cached(), tokens)))
}

/// Prefixes shared between sequences, for the prompts still to compute (`prompting`: their
/// slots, oldest admission first). A prompt takes, at no compute, whatever another sequence's
/// KV already holds of it (the unified KV cache's cells gain a sequence id). And a prompt
/// whose first [`MIN_SHARED_WAIT`]+ tokens an earlier prompt of this list is about to compute
/// (the same system prompt, in a burst) waits for it instead of computing them too: the
/// slots it returns skip this step. An earlier prompt never waits for a later one, so every
/// wait ends; a cancelled leader leaves the list, and its followers compute for themselves.
///
/// This is what makes a failover flip cheap: the requests of a use case arrive together at
/// cold slots, all with its system prompt, and it is computed once instead of once per slot.
fn share_prefixes<B: Backend>(
    backend: &mut B,
    slots: &mut [Slot<B::Sampler, B::Saved>],
    prompting: &[(u64, usize)],
    t: &mut StepTotals,
) -> Vec<usize> {
    let mut waiting = Vec::new();
    if prompting.is_empty() || slots.len() < 2 {
        return waiting;
    }
    for (n, &(_, i)) in prompting.iter().enumerate() {
        let Some(seq) = slots[i].seq.as_ref() else { continue };
        let mut have = slots[i].cache.len();
        // At least the last prompt token is computed here, for its logits.
        let want = seq.tokens.len() - 1;
        if have >= want {
            continue;
        }
        // A donor whose KV no longer reaches down to `have` (a sliding window gave up its
        // first positions) would leave a gap in this sequence: it is passed over.
        let donor = slots
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, s)| (j, common_prefix(&s.cache, &seq.tokens).min(want)))
            .filter(|&(j, q)| q > have && backend.first_pos(j).is_some_and(|p| p <= have))
            .max_by_key(|&(j, q)| (q, std::cmp::Reverse(j)));
        if let Some((j, q)) = donor
            && backend.share(j, i, have, q)
        {
            let shared = q - have;
            let slot = &mut slots[i];
            if let Some(seq) = slot.seq.as_mut() {
                slot.cache.extend_from_slice(&seq.tokens[have..q]);
                seq.next_prompt = q;
                seq.cached_tokens += shared;
            }
            t.cached_tokens += shared as u64;
            tracing::trace!(slot = i, from = j, tokens = shared, "engine shared prefix");
            have = q;
        }
        let Some(seq) = slots[i].seq.as_ref() else { continue };
        let leads = prompting[..n].iter().any(|&(_, k)| {
            slots[k].seq.as_ref().is_some_and(|lead| {
                let q = common_prefix(&lead.tokens, &seq.tokens).min(want);
                q >= have + MIN_SHARED_WAIT && slots[k].cache.len() < q
            })
        });
        if leads {
            waiting.push(i);
        }
    }
    waiting
}

enum Outcome {
    Continue,
    Finish(FinishReason),
    Cancelled,
}

#[derive(Default)]
struct StepTotals {
    completed: u64,
    cancelled: u64,
    failed: u64,
    timed_out: u64,
    prompt_tokens: u64,
    cached_tokens: u64,
    completion_tokens: u64,
    durations: Vec<f64>,
}

impl<S: Send> Runner<S> {
    /// Run the loop on the calling (engine) thread until shutdown.
    pub(crate) fn run<B: Backend<Sampler = S>>(self, mut backend: B) {
        let shared = &*self.shared;
        let _guard = DeadGuard(shared);
        let cfg = shared.cfg.clone();
        let mut slots: Vec<Slot<S, B::Saved>> =
            (0..cfg.slots).map(|_| Slot { cache: Vec::new(), saved: None, seq: None, last_used: 0 }).collect();
        let mut tick: u64 = 0;
        let mut batch: Vec<BatchItem> = Vec::with_capacity(cfg.n_batch);
        let mut outputs: Vec<(usize, usize)> = Vec::with_capacity(cfg.slots);
        let mut piece = Vec::with_capacity(32);
        let mut t = StepTotals::default();
        let mut prof = Profile::default();
        let window = backend.window();

        loop {
            tick += 1;
            let mut admitted: Vec<Job<S>> = Vec::new();
            let embed_job = {
                let mut st = shared.state.lock();
                // Fold the last step's counters in.
                fold_totals(&mut st, &mut t);
                loop {
                    if st.shutdown {
                        for slot in &mut slots {
                            if let Some(seq) = slot.seq.take() {
                                let _ = seq.tx.send(GenerateEvent::Error(EngineError::Unavailable("the engine is shutting down".into())));
                            }
                        }
                        return;
                    }
                    // Drop queued requests nobody waits for; expire those that waited too long.
                    let now = Instant::now();
                    for q in &mut st.queues {
                        q.retain(|job| {
                            if job.tx.is_closed() {
                                t.cancelled += 1;
                                return false;
                            }
                            let waited = now.duration_since(job.enqueued);
                            if waited < cfg.max_wait {
                                return true;
                            }
                            let _ = job
                                .tx
                                .send(GenerateEvent::Error(EngineError::QueueTimeout { waited, retry_after: Duration::from_secs(1) }));
                            t.timed_out += 1;
                            false
                        });
                    }
                    let active = slots.iter().filter(|s| s.seq.is_some()).count();
                    if active == 0 {
                        gather_burst(shared, &mut st);
                    }
                    let free = cfg.slots - active;
                    while admitted.len() < free {
                        match st.pop() {
                            Some(job) if job.tx.is_closed() => t.cancelled += 1,
                            Some(job) => admitted.push(job),
                            None => break,
                        }
                    }
                    st.active = active + admitted.len();
                    let embed_job = st.embeds.pop_front();
                    if st.active > 0 || embed_job.is_some() {
                        break embed_job;
                    }
                    fold_totals(&mut st, &mut t);
                    st.used = slots.iter().filter(|s| s.holds_tokens()).count();
                    shared.wake.wait(&mut st);
                }
            };

            // Place admitted requests, reusing the longest cached prefix worth reusing.
            for job in admitted {
                let Some((i, lcp)) = choose_slot(&slots, &job.tokens) else {
                    // Cannot happen: we admitted at most the free slots. Fail loudly, not silently.
                    let _ = job.tx.send(GenerateEvent::Error(EngineError::Internal("no free slot".into())));
                    t.failed += 1;
                    continue;
                };
                let slot = &mut slots[i];
                let n_prompt = job.tokens.len();
                // A saved slot's tokens come back only when enough of them are reused.
                if let Some((tokens, saved)) = slot.saved.take()
                    && worth_restoring(lcp.min(n_prompt - 1), tokens.len())
                {
                    let restored = Instant::now();
                    if backend.restore(i, &saved) {
                        slot.cache = tokens;
                    } else {
                        backend.clear(i);
                    }
                    tracing::trace!(slot = i, tokens = slot.cache.len(), us = restored.elapsed().as_micros() as u64, "engine restore");
                }
                // At least the last prompt token is recomputed, to get its logits.
                let mut keep = lcp.min(n_prompt - 1).min(slot.cache.len());
                // A prefix whose first positions a sliding window gave up cannot be continued
                // (the next tokens would attend over a hole): the prompt is computed again.
                if keep > 0 && !continues_at(backend.first_pos(i), window, keep) {
                    tracing::debug!(slot = i, keep, first = ?backend.first_pos(i), "engine: cached prefix incomplete, computing it again");
                    keep = 0;
                }
                if keep < slot.cache.len() {
                    if !backend.truncate(i, keep) {
                        backend.clear(i);
                        keep = 0;
                    }
                    slot.cache.truncate(keep);
                }
                slot.last_used = tick;
                let started = GenerateEvent::Started { prompt_tokens: n_prompt, cached_tokens: keep };
                if job.tx.send(started).is_err() {
                    t.cancelled += 1;
                    continue;
                }
                tracing::trace!(
                    slot = i,
                    prompt_tokens = n_prompt,
                    cached_tokens = keep,
                    queued_us = job.enqueued.elapsed().as_micros() as u64,
                    "engine admit"
                );
                t.prompt_tokens += n_prompt as u64;
                t.cached_tokens += keep as u64;
                slot.seq = Some(Seq {
                    next_prompt: keep,
                    tokens: job.tokens,
                    pending: None,
                    generated: 0,
                    max_tokens: job.max_tokens,
                    cached_tokens: keep,
                    sampler: job.sampler,
                    text: TextStream::new(job.stops),
                    tx: job.tx,
                    admitted: tick,
                    started: job.enqueued,
                });
            }

            if let Some(job) = embed_job {
                let _ = job.tx.send(backend.embed(&job.inputs));
            }

            // Drop sequences nobody listens to any more; their KV stays as prefix cache.
            for slot in &mut slots {
                if slot.seq.as_ref().is_some_and(|s| s.tx.is_closed()) {
                    slot.seq = None;
                    t.cancelled += 1;
                }
            }

            // Compose the batch: decode tokens first, then prompt chunks, oldest first.
            batch.clear();
            outputs.clear();
            for (i, slot) in slots.iter().enumerate() {
                if let Some(tok) = slot.seq.as_ref().and_then(|s| s.pending) {
                    if batch.len() == cfg.n_batch {
                        break;
                    }
                    outputs.push((i, batch.len()));
                    batch.push(BatchItem { token: tok, pos: slot.cache.len() as u32, slot: i, logits: true });
                }
            }
            let n_decode = batch.len();
            let mut prompting: Vec<(u64, usize)> = slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.seq.as_ref().filter(|q| q.next_prompt < q.tokens.len()).map(|q| (q.admitted, i)))
                .collect();
            prompting.sort_unstable();
            let waiting = share_prefixes(&mut backend, &mut slots, &prompting, &mut t);
            for (_, i) in prompting {
                let room = cfg.n_batch - batch.len();
                if room == 0 {
                    break;
                }
                if waiting.contains(&i) {
                    continue;
                }
                let slot = &slots[i];
                let Some(seq) = slot.seq.as_ref() else { continue };
                let n = (seq.tokens.len() - seq.next_prompt).min(room);
                for k in 0..n {
                    let p = seq.next_prompt + k;
                    let last = p + 1 == seq.tokens.len();
                    if last {
                        outputs.push((i, batch.len()));
                    }
                    batch.push(BatchItem { token: seq.tokens[p], pos: (slot.cache.len() + k) as u32, slot: i, logits: last });
                }
            }
            // Idle slots leave the KV cache only now: a new prompt could take its first tokens
            // from one of them (above), and what it took stays when the idle slot's copy goes.
            offload_idle(&mut backend, &mut slots);
            if batch.is_empty() {
                continue;
            }

            let step_start = Instant::now();
            if let Err(msg) = backend.decode(&batch) {
                tracing::error!(error = %msg, tokens = batch.len(), "llama.cpp decode failed");
                let mut involved: Vec<usize> = batch.iter().map(|b| b.slot).collect();
                involved.sort_unstable();
                involved.dedup();
                for i in involved {
                    if let Some(seq) = slots[i].seq.take() {
                        let _ = seq.tx.send(GenerateEvent::Error(EngineError::Internal(format!("decode failed: {msg}"))));
                        t.failed += 1;
                    }
                    backend.clear(i);
                    slots[i].cache.clear();
                }
                continue;
            }
            for item in &batch {
                let slot = &mut slots[item.slot];
                slot.cache.push(item.token);
                if let Some(seq) = slot.seq.as_mut()
                    && seq.pending.take().is_none()
                {
                    seq.next_prompt += 1;
                }
            }

            let decoded_at = Instant::now();
            for &(i, bi) in &outputs {
                let slot = &mut slots[i];
                let Some(seq) = slot.seq.as_mut() else { continue };
                let outcome = match backend.sample(&mut seq.sampler, bi) {
                    Err(msg) => {
                        let _ = seq.tx.send(GenerateEvent::Error(EngineError::Internal(format!("sampling failed: {msg}"))));
                        slot.seq = None;
                        t.failed += 1;
                        continue;
                    }
                    Ok(tok) => {
                        seq.generated += 1;
                        t.completion_tokens += 1;
                        step_token(&backend, seq, tok, &mut piece)
                    }
                };
                match outcome {
                    Outcome::Continue => {}
                    Outcome::Cancelled => {
                        slot.seq = None;
                        t.cancelled += 1;
                    }
                    Outcome::Finish(finish) => {
                        if let Some(seq) = slot.seq.take() {
                            let _ = seq.tx.send(GenerateEvent::Done { finish, usage: seq.usage() });
                            t.completed += 1;
                            t.durations.push(seq.started.elapsed().as_secs_f64());
                        }
                        slot.last_used = tick;
                    }
                }
            }

            let now = Instant::now();
            tracing::trace!(
                decode_tokens = n_decode,
                prompt_tokens = batch.len() - n_decode,
                outputs = outputs.len(),
                decode_us = decoded_at.duration_since(step_start).as_micros() as u64,
                sample_us = now.duration_since(decoded_at).as_micros() as u64,
                "engine step"
            );
            prof.record(step_start, decoded_at, now, n_decode, batch.len() - n_decode);
            let mut st = shared.state.lock();
            st.steps.push_back(Step { start: step_start, end: now, decode: n_decode as u32, prompt: (batch.len() - n_decode) as u32 });
            while st.steps.front().is_some_and(|s| now.duration_since(s.end) > RATE_WINDOW) {
                st.steps.pop_front();
            }
            st.active = slots.iter().filter(|s| s.seq.is_some()).count();
            st.used = slots.iter().filter(|s| s.holds_tokens()).count();
        }
    }
}

/// Work queued at an idle engine: wait for the rest of a burst (see [`Burst`]).
fn gather_burst<S>(shared: &Shared<S>, st: &mut parking_lot::MutexGuard<'_, State<S>>) {
    let burst = shared.cfg.burst;
    if burst.quiet.is_zero() || st.queued() == 0 {
        return;
    }
    let start = Instant::now();
    let mut seen = st.queued();
    while seen < shared.cfg.slots && !st.shutdown {
        let deadline = (Instant::now() + burst.quiet).min(start + burst.max);
        if shared.wake.wait_until(st, deadline).timed_out() {
            // Woken by nothing: quiet for long enough, or the window is over.
            if st.queued() == seen || Instant::now() >= start + burst.max {
                break;
            }
        }
        seen = st.queued();
    }
}

/// While any sequence is active, move the KV of idle slots to host memory (see the module
/// documentation): the active sequences then attend over their own tokens only.
fn offload_idle<B: Backend>(backend: &mut B, slots: &mut [Slot<B::Sampler, B::Saved>]) {
    if !slots.iter().any(|s| s.seq.is_some()) {
        return;
    }
    for (i, slot) in slots.iter_mut().enumerate() {
        if slot.seq.is_some() || slot.cache.is_empty() {
            continue;
        }
        let started = Instant::now();
        let Some(saved) = backend.save(i) else { continue };
        backend.clear(i);
        let tokens = std::mem::take(&mut slot.cache);
        tracing::trace!(slot = i, tokens = tokens.len(), us = started.elapsed().as_micros() as u64, "engine offload");
        slot.saved = Some((tokens, saved));
    }
}

/// Where the engine thread's time goes, logged at debug level every few hundred steps: the
/// share outside llama.cpp's decode is the scheduler's and sampler's overhead.
#[derive(Default)]
struct Profile {
    steps: u32,
    decode: Duration,
    sample: Duration,
    decode_tokens: usize,
    prompt_tokens: usize,
}

impl Profile {
    const EVERY: u32 = 256;

    fn record(&mut self, start: Instant, decoded: Instant, end: Instant, decode_tokens: usize, prompt_tokens: usize) {
        self.steps += 1;
        self.decode += decoded.duration_since(start);
        self.sample += end.duration_since(decoded);
        self.decode_tokens += decode_tokens;
        self.prompt_tokens += prompt_tokens;
        if self.steps == Self::EVERY {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(self.steps);
            tracing::debug!(
                steps = self.steps,
                decode_ms_per_step = ms(self.decode),
                sample_ms_per_step = ms(self.sample),
                decode_tokens = self.decode_tokens,
                prompt_tokens = self.prompt_tokens,
                "engine step profile"
            );
            *self = Profile::default();
        }
    }
}

fn fold_totals<S>(st: &mut State<S>, t: &mut StepTotals) {
    let tot = &mut st.totals;
    tot.completed += t.completed;
    tot.cancelled += t.cancelled;
    tot.failed += t.failed;
    tot.timed_out += t.timed_out;
    tot.prompt_tokens += t.prompt_tokens;
    tot.cached_tokens += t.cached_tokens;
    tot.completion_tokens += t.completion_tokens;
    for d in t.durations.drain(..) {
        st.avg_request_secs = if st.avg_request_secs == 0.0 { d } else { 0.8 * st.avg_request_secs + 0.2 * d };
    }
    *t = StepTotals::default();
}

/// Handle one sampled token of `seq`: stream its text and decide whether the sequence ends.
fn step_token<B: Backend>(backend: &B, seq: &mut Seq<B::Sampler>, tok: Token, piece: &mut Vec<u8>) -> Outcome {
    let (mut emit, mut finish) = if backend.is_eog(tok) {
        (seq.text.finish(), Some(FinishReason::Stop))
    } else {
        piece.clear();
        backend.piece(tok, piece);
        match seq.text.push(piece) {
            Push::Emit(s) => (s, None),
            Push::Stopped { emit, stop } => (emit, Some(FinishReason::StopSequence(stop))),
        }
    };
    if finish.is_none() && seq.generated >= seq.max_tokens {
        emit.push_str(&seq.text.finish());
        finish = Some(FinishReason::Length);
    }
    if !emit.is_empty() && seq.tx.send(GenerateEvent::Text(emit)).is_err() {
        return Outcome::Cancelled;
    }
    match finish {
        Some(f) => Outcome::Finish(f),
        None => {
            seq.pending = Some(tok);
            Outcome::Continue
        }
    }
}

#[cfg(test)]
mod tests;
