//! Scheduler tests against a fake model: no llama.cpp involved.

use std::collections::HashMap;
use std::thread::JoinHandle;

use super::*;
use crate::{Completion, GenerateEvent};

const EOG: Token = 0;

/// Pauses the fake's `decode` while set, so tests can line requests up deterministically.
#[derive(Default)]
struct Gate {
    paused: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn set(&self, paused: bool) {
        *self.paused.lock() = paused;
        self.cv.notify_all();
    }
    fn wait(&self) {
        let mut p = self.paused.lock();
        while *p {
            self.cv.wait(&mut p);
        }
    }
}

/// (src, dst, from, to) of a shared prefix.
type Share = (usize, usize, usize, usize);

#[derive(Default, Clone)]
struct Log {
    batches: Arc<Mutex<Vec<Vec<BatchItem>>>>,
    truncates: Arc<Mutex<Vec<(usize, usize)>>>,
    /// Slots copied to host memory, in order.
    saves: Arc<Mutex<Vec<usize>>>,
    /// (slot, tokens) brought back.
    restores: Arc<Mutex<Vec<(usize, usize)>>>,
    /// The fake KV cache: each slot's tokens by position.
    kv: Arc<Mutex<HashMap<usize, Vec<Token>>>>,
    /// Every shared prefix.
    shares: Arc<Mutex<Vec<Share>>>,
    /// The lowest position each slot's KV still holds (absent: 0). A test raises it to stand
    /// for a sliding window's cells that other tokens overwrote.
    first: Arc<Mutex<HashMap<usize, usize>>>,
}

struct Fake {
    log: Log,
    gate: Arc<Gate>,
    step_delay: Duration,
    pieces: HashMap<Token, Vec<u8>>,
    /// Tokens (by position in the batch) that make `decode` panic.
    panic_on: Option<Token>,
    fail_on: Option<Token>,
    /// Whether `save` works (a backend may not be able to copy a sequence out).
    can_save: bool,
    /// A sliding window, as in Gemma 3: `save` leaves out the positions that left it, and
    /// `decode` refuses a token that would attend over a hole.
    window: Option<usize>,
}

impl Fake {
    fn first_of(&self, slot: usize) -> Option<usize> {
        let len = self.log.kv.lock().get(&slot).map_or(0, Vec::len);
        let first = self.log.first.lock().get(&slot).copied().unwrap_or(0);
        (first < len).then_some(first)
    }
}

/// Emits `script`, then counts up from its last token; `EOG` ends the turn.
struct FakeSampler {
    script: Vec<Token>,
    n: usize,
}

impl FakeSampler {
    fn counting() -> Self {
        FakeSampler { script: vec![100], n: 0 }
    }
    fn script(tokens: &[Token]) -> Self {
        FakeSampler { script: tokens.to_vec(), n: 0 }
    }
}

impl Backend for Fake {
    type Sampler = FakeSampler;
    /// The tokens, and the first position the copy holds.
    type Saved = (Vec<Token>, usize);

    fn truncate(&mut self, slot: usize, keep: usize) -> bool {
        self.log.truncates.lock().push((slot, keep));
        self.log.kv.lock().entry(slot).or_default().truncate(keep);
        // What the window held from `keep` on is gone too: new tokens start it again there.
        if let Some(first) = self.log.first.lock().get_mut(&slot) {
            *first = (*first).min(keep);
        }
        true
    }
    fn clear(&mut self, slot: usize) {
        self.log.kv.lock().remove(&slot);
        self.log.first.lock().remove(&slot);
    }
    fn save(&mut self, slot: usize) -> Option<(Vec<Token>, usize)> {
        if !self.can_save {
            return None;
        }
        self.log.saves.lock().push(slot);
        let tokens = self.log.kv.lock().get(&slot).cloned().unwrap_or_default();
        // Like llama.cpp's sequence copy: the cells outside the window stay behind.
        let first = self.first_of(slot).unwrap_or(0).max(self.window.map_or(0, |w| tokens.len().saturating_sub(w)));
        Some((tokens, first))
    }
    fn restore(&mut self, slot: usize, saved: &(Vec<Token>, usize)) -> bool {
        let mut kv = self.log.kv.lock();
        assert!(kv.get(&slot).is_none_or(Vec::is_empty), "restore into a non-empty sequence");
        kv.insert(slot, saved.0.clone());
        self.log.first.lock().insert(slot, saved.1);
        self.log.restores.lock().push((slot, saved.0.len()));
        true
    }
    fn share(&mut self, src: usize, dst: usize, from: usize, to: usize) -> bool {
        let src_first = self.first_of(src);
        assert!(src_first.is_some_and(|f| f <= from), "slot {src} holds positions from {src_first:?}: a hole in slot {dst} at {from}");
        if from == 0 {
            self.log.first.lock().remove(&dst);
        }
        let mut kv = self.log.kv.lock();
        let have = kv.get(&src).cloned().unwrap_or_default();
        let mine = kv.entry(dst).or_default();
        assert_eq!(mine.len(), from, "slot {dst} must hold exactly positions 0..{from}");
        assert!(have.len() >= to, "slot {src} holds {} positions, not {to}", have.len());
        assert_eq!(mine[..], have[..from], "slots {src} and {dst} differ before {from}");
        mine.extend_from_slice(&have[from..to]);
        self.log.shares.lock().push((src, dst, from, to));
        true
    }
    fn decode(&mut self, batch: &[BatchItem]) -> Result<(), String> {
        self.gate.wait();
        if batch.iter().any(|b| Some(b.token) == self.panic_on) {
            panic!("fake model blew up");
        }
        if batch.iter().any(|b| Some(b.token) == self.fail_on) {
            return Err("fake decode failure".into());
        }
        // A token attends back over its window (all earlier tokens without one): none of
        // those positions may be missing.
        let mut seen = Vec::new();
        for b in batch {
            if !seen.contains(&b.slot) {
                seen.push(b.slot);
                let first = self.first_of(b.slot);
                assert!(
                    continues_at(first, self.window, b.pos as usize),
                    "slot {} goes on at {} but holds positions from {first:?} only (window {:?})",
                    b.slot,
                    b.pos,
                    self.window
                );
            }
        }
        // The scheduler's mirror of the KV cache must match it: every token goes at the end.
        let mut kv = self.log.kv.lock();
        for b in batch {
            let seq = kv.entry(b.slot).or_default();
            assert_eq!(b.pos as usize, seq.len(), "token {b:?} is not at the end of slot {}'s sequence", b.slot);
            seq.push(b.token);
        }
        drop(kv);
        self.log.batches.lock().push(batch.to_vec());
        if !self.step_delay.is_zero() {
            std::thread::sleep(self.step_delay);
        }
        Ok(())
    }
    fn first_pos(&self, slot: usize) -> Option<usize> {
        self.first_of(slot)
    }
    fn window(&self) -> Option<usize> {
        self.window
    }
    fn sample(&mut self, s: &mut FakeSampler, _batch_index: usize) -> Result<Token, String> {
        let tok = match s.script.get(s.n) {
            Some(t) => *t,
            None => s.script.last().copied().unwrap_or(100) + (s.n - s.script.len()) as Token + 1,
        };
        s.n += 1;
        Ok(tok)
    }
    fn piece(&self, token: Token, out: &mut Vec<u8>) {
        match self.pieces.get(&token) {
            Some(p) => out.extend_from_slice(p),
            None => out.extend_from_slice(format!("t{token} ").as_bytes()),
        }
    }
    fn is_eog(&self, token: Token) -> bool {
        token == EOG
    }
    fn embed(&mut self, inputs: &[Vec<Token>]) -> Result<Vec<Vec<f32>>, EngineError> {
        Ok(inputs.iter().map(|t| vec![t.len() as f32, 1.0]).collect())
    }
}

struct Harness {
    handle: Handle<FakeSampler>,
    gate: Arc<Gate>,
    log: Log,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.gate.set(false);
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn cfg(slots: usize) -> SchedConfig {
    SchedConfig { slots, n_batch: 64, context: 256, max_queue: 16, max_wait: Duration::from_secs(30), burst: Burst::OFF }
}

fn start(cfg: SchedConfig, tweak: impl FnOnce(&mut Fake)) -> Harness {
    let gate = Arc::new(Gate::default());
    let log = Log::default();
    let mut fake = Fake {
        log: log.clone(),
        gate: gate.clone(),
        step_delay: Duration::ZERO,
        pieces: HashMap::new(),
        panic_on: None,
        fail_on: None,
        can_save: true,
        window: None,
    };
    tweak(&mut fake);
    let (handle, runner) = new::<FakeSampler>(cfg);
    let thread = std::thread::spawn(move || runner.run(fake));
    Harness { handle, gate, log, thread: Some(thread) }
}

fn job(tokens: Vec<Token>, max_tokens: u32, sampler: FakeSampler) -> JobSpec<FakeSampler> {
    JobSpec { tokens, max_tokens: Some(max_tokens), stops: vec![], sampler, priority: Priority::Live }
}

fn prio(mut j: JobSpec<FakeSampler>, p: Priority) -> JobSpec<FakeSampler> {
    j.priority = p;
    j
}

async fn started(g: &mut Generation) -> (usize, usize) {
    match g.next().await {
        Some(GenerateEvent::Started { prompt_tokens, cached_tokens }) => (prompt_tokens, cached_tokens),
        other => panic!("expected Started, got {other:?}"),
    }
}

/// The order in which prompts (identified by their first token) first entered a batch.
fn prompt_order(log: &Log) -> Vec<Token> {
    let mut seen = Vec::new();
    for b in log.batches.lock().iter() {
        for item in b {
            if item.pos == 0 && !seen.contains(&item.token) {
                seen.push(item.token);
            }
        }
    }
    seen
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("condition not reached in time");
}

#[tokio::test]
async fn generates_with_usage_and_length() {
    let h = start(cfg(2), |_| {});
    let g = h.handle.submit(job(vec![1, 2, 3], 5, FakeSampler::counting())).unwrap();
    let c: Completion = g.collect().await.unwrap();
    assert_eq!(c.finish, FinishReason::Length);
    assert_eq!(c.usage, Usage { prompt_tokens: 3, cached_tokens: 0, completion_tokens: 5 });
    assert_eq!(c.text, "t100 t101 t102 t103 t104 ");
    wait_until(|| {
        let t = h.handle.snapshot().totals;
        t.completed == 1 && t.completion_tokens == 5 && t.prompt_tokens == 3
    })
    .await;
}

#[tokio::test]
async fn eog_stops_and_stop_sequences_are_honoured() {
    let h = start(cfg(1), |f| {
        f.pieces.insert(7, b"hello ".to_vec());
        f.pieces.insert(8, b"wor".to_vec());
        f.pieces.insert(9, b"ld!".to_vec());
    });
    let c = h.handle.submit(job(vec![1], 50, FakeSampler::script(&[7, 8, EOG]))).unwrap().collect().await.unwrap();
    assert_eq!(c.finish, FinishReason::Stop);
    assert_eq!(c.text, "hello wor");
    assert_eq!(c.usage.completion_tokens, 3);

    let mut j = job(vec![1], 50, FakeSampler::script(&[7, 8, 9, 7]));
    j.stops = vec!["world".into()];
    let c = h.handle.submit(j).unwrap().collect().await.unwrap();
    assert_eq!(c.finish, FinishReason::StopSequence("world".into()));
    assert_eq!(c.text, "hello ");
}

#[tokio::test]
async fn context_and_max_tokens_admission() {
    let h = start(cfg(1), |_| {});
    let long: Vec<Token> = (1..=256).collect();
    match h.handle.submit(job(long, 5, FakeSampler::counting())) {
        Err(EngineError::ContextTooLong { prompt_tokens: 256, context: 256 }) => {}
        other => panic!("expected ContextTooLong, got {other:?}"),
    }
    assert!(matches!(h.handle.submit(job(vec![], 5, FakeSampler::counting())), Err(EngineError::InvalidRequest(_))));
    // max_tokens is clamped to what the context has left.
    let prompt: Vec<Token> = (1..=250).collect();
    let c = h.handle.submit(job(prompt, 1000, FakeSampler::counting())).unwrap().collect().await.unwrap();
    assert_eq!(c.finish, FinishReason::Length);
    assert_eq!(c.usage.completion_tokens, 6);
}

#[tokio::test]
async fn priority_order_live_before_drill_before_evaluation() {
    let h = start(cfg(1), |_| {});
    h.gate.set(true);
    let mut first = h.handle.submit(job(vec![1], 3, FakeSampler::counting())).unwrap();
    started(&mut first).await;
    // The engine is now stuck in decode for request 1; line up the others.
    let e = h.handle.submit(prio(job(vec![2], 2, FakeSampler::counting()), Priority::Evaluation)).unwrap();
    let d = h.handle.submit(prio(job(vec![3], 2, FakeSampler::counting()), Priority::Drill)).unwrap();
    let l = h.handle.submit(prio(job(vec![4], 2, FakeSampler::counting()), Priority::Live)).unwrap();
    let l2 = h.handle.submit(prio(job(vec![5], 2, FakeSampler::counting()), Priority::Live)).unwrap();
    assert_eq!(h.handle.snapshot().queue_depth, 4);
    h.gate.set(false);
    for g in [first, e, d, l, l2] {
        g.collect().await.unwrap();
    }
    assert_eq!(prompt_order(&h.log), vec![1, 4, 5, 3, 2]);
}

#[tokio::test]
async fn full_queue_is_overloaded_and_live_evicts_lower_priority() {
    let mut c = cfg(1);
    c.max_queue = 2;
    let h = start(c, |_| {});
    h.gate.set(true);
    let mut first = h.handle.submit(job(vec![1], 2, FakeSampler::counting())).unwrap();
    started(&mut first).await;
    let q1 = h.handle.submit(prio(job(vec![2], 2, FakeSampler::counting()), Priority::Evaluation)).unwrap();
    let q2 = h.handle.submit(prio(job(vec![3], 2, FakeSampler::counting()), Priority::Live)).unwrap();
    // Full: another evaluation request is refused outright...
    match h.handle.submit(prio(job(vec![4], 2, FakeSampler::counting()), Priority::Evaluation)) {
        Err(EngineError::Overloaded { retry_after }) => assert!(retry_after >= Duration::from_secs(1)),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    // ...but a live one takes the evaluation request's place.
    let q3 = h.handle.submit(job(vec![5], 2, FakeSampler::counting())).unwrap();
    h.gate.set(false);
    assert!(matches!(q1.collect().await, Err(EngineError::Overloaded { .. })));
    first.collect().await.unwrap();
    q2.collect().await.unwrap();
    q3.collect().await.unwrap();
    assert_eq!(h.handle.snapshot().totals.rejected, 2);
    wait_until(|| h.handle.snapshot().totals.completed == 3).await;
}

#[tokio::test]
async fn max_wait_times_out_queued_requests() {
    let mut c = cfg(1);
    c.max_wait = Duration::from_millis(50);
    let h = start(c, |f| f.step_delay = Duration::from_millis(5));
    let mut long = h.handle.submit(job(vec![1], 100, FakeSampler::counting())).unwrap();
    started(&mut long).await;
    let waiting = h.handle.submit(job(vec![2], 2, FakeSampler::counting())).unwrap();
    match waiting.collect().await {
        Err(EngineError::QueueTimeout { waited, .. }) => assert!(waited >= Duration::from_millis(50)),
        other => panic!("expected QueueTimeout, got {other:?}"),
    }
    drop(long);
    wait_until(|| h.handle.snapshot().totals.timed_out == 1).await;
}

#[tokio::test]
async fn dropping_a_generation_frees_its_slot() {
    let h = start(cfg(1), |f| f.step_delay = Duration::from_millis(1));
    let mut long = h.handle.submit(job(vec![1], 10_000, FakeSampler::counting())).unwrap();
    started(&mut long).await;
    assert!(matches!(long.next().await, Some(GenerateEvent::Text(_))));
    let next = h.handle.submit(job(vec![2], 3, FakeSampler::counting())).unwrap();
    assert_eq!(h.handle.snapshot().active_slots, 1);
    drop(long);
    let c = next.collect().await.unwrap();
    assert_eq!(c.usage.completion_tokens, 3);
    wait_until(|| h.handle.snapshot().totals.cancelled == 1).await;
    wait_until(|| h.handle.snapshot().active_slots == 0).await;
}

#[tokio::test]
async fn requests_join_a_running_batch() {
    let h = start(cfg(4), |f| f.step_delay = Duration::from_millis(2));
    let mut a = h.handle.submit(job(vec![1, 1, 1], 200, FakeSampler::counting())).unwrap();
    started(&mut a).await;
    assert!(matches!(a.next().await, Some(GenerateEvent::Text(_))));
    let b = h.handle.submit(job(vec![2, 2, 2, 2], 3, FakeSampler::counting())).unwrap();
    b.collect().await.unwrap();
    drop(a);
    // Some batch mixed a decode token of A (slot 0) with B's whole prompt (slot 1).
    let batches = h.log.batches.lock();
    let mixed = batches.iter().find(|b| b.iter().any(|i| i.token == 2)).unwrap();
    assert!(mixed.iter().any(|i| i.slot != mixed.last().unwrap().slot && i.logits), "{mixed:?}");
    assert_eq!(mixed.iter().filter(|i| i.token == 2).count(), 4);
    // Only the last prompt token asks for logits.
    assert_eq!(mixed.iter().filter(|i| i.token == 2 && i.logits).count(), 1);
}

#[tokio::test]
async fn long_prompts_are_chunked_by_n_batch() {
    let mut c = cfg(1);
    c.n_batch = 8;
    let h = start(c, |_| {});
    let prompt: Vec<Token> = (1..=20).collect();
    h.handle.submit(job(prompt, 2, FakeSampler::counting())).unwrap().collect().await.unwrap();
    let batches = h.log.batches.lock();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![8, 8, 4, 1]);
    let positions: Vec<u32> = batches.iter().flatten().map(|b| b.pos).collect();
    assert_eq!(positions, (0..21).collect::<Vec<u32>>());
}

#[tokio::test]
async fn prefix_cache_reuses_the_longest_match() {
    let h = start(cfg(2), |_| {});
    let system: Vec<Token> = (1..=40).collect();
    let mut p1 = system.clone();
    p1.extend([200, 201]);
    let c = h.handle.submit(job(p1.clone(), 4, FakeSampler::counting())).unwrap().collect().await.unwrap();
    assert_eq!(c.usage.cached_tokens, 0);
    // Same system prompt, another question: the 40 shared tokens are reused.
    let mut p2 = system.clone();
    p2.extend([300, 301, 302]);
    let mut g = h.handle.submit(job(p2.clone(), 4, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut g).await, (43, 40));
    let c = g.collect().await.unwrap();
    assert_eq!(c.usage, Usage { prompt_tokens: 43, cached_tokens: 40, completion_tokens: 4 });
    // The identical prompt again: all but the last token come from the cache.
    let mut g = h.handle.submit(job(p2.clone(), 2, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut g).await, (43, 42));
    g.collect().await.unwrap();
    // Only the uncached tokens were decoded.
    {
        let batches = h.log.batches.lock();
        let last_prompt_batch = &batches[batches.len() - 2];
        assert_eq!(last_prompt_batch.len(), 1);
        assert_eq!(last_prompt_batch[0].pos, 42);
        assert!(h.log.truncates.lock().contains(&(0, 40)));
    }
    wait_until(|| h.handle.snapshot().totals.cached_tokens == 82).await;
}

#[tokio::test]
async fn prefix_choice_picks_the_matching_slot() {
    let h = start(cfg(2), |_| {});
    let a: Vec<Token> = (1..=30).collect();
    let b: Vec<Token> = (101..=130).collect();
    // Fill both slots at once, so A and B land in different slots.
    let ga = h.handle.submit(job(a.clone(), 2, FakeSampler::counting())).unwrap();
    let gb = h.handle.submit(job(b.clone(), 2, FakeSampler::counting())).unwrap();
    ga.collect().await.unwrap();
    gb.collect().await.unwrap();
    let mut b2 = b.clone();
    b2.push(999);
    let mut g = h.handle.submit(job(b2, 2, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut g).await, (31, 30));
    let mut a2 = a.clone();
    a2.push(999);
    let mut g2 = h.handle.submit(job(a2, 2, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut g2).await, (31, 30));
    g.collect().await.unwrap();
    g2.collect().await.unwrap();
}

#[tokio::test]
async fn a_new_system_prompt_takes_a_free_slot_instead_of_evicting_another_cache() {
    let h = start(cfg(2), |_| {});
    // Two use cases' prompts: the same chat-template opening (2 tokens), different system prompts.
    let uc = |system: Token, question: Token| -> Vec<Token> {
        let mut p = vec![1, 2];
        p.extend((0..40).map(|k| system + k));
        p.push(question);
        p
    };
    // One request to completion: (prompt tokens, cached tokens) as it started.
    let ask = async |prompt: Vec<Token>| {
        let mut g = h.handle.submit(job(prompt, 2, FakeSampler::counting())).unwrap();
        let s = started(&mut g).await;
        g.collect().await.unwrap();
        s
    };
    assert_eq!(ask(uc(100, 7)).await, (43, 0));
    // B shares only the template's opening with A's cached slot: it goes to the empty slot.
    assert_eq!(ask(uc(500, 7)).await, (43, 0));
    // Both use cases keep their system prompt cached: each follow-up reuses its own.
    assert_eq!(ask(uc(100, 8)).await, (43, 42));
    assert_eq!(ask(uc(500, 8)).await, (43, 42));
    // A third use case, with every slot holding a cache, evicts the least recently used (A's).
    assert_eq!(ask(uc(900, 7)).await, (43, 2));
    assert_eq!(ask(uc(500, 9)).await, (43, 42));
    assert!(h.log.truncates.lock().contains(&(0, 2)), "A's slot (0) was the one reused for C");
}

#[test]
fn reuse_needs_a_real_share_of_the_prompt() {
    assert!(worth_reusing(474, 490, 486), "the same system prompt, another question");
    assert!(worth_reusing(474, 974, 774), "the same system prompt after a long exchange");
    assert!(worth_reusing(12, 16, 12), "a short prompt repeated");
    assert!(worth_reusing(15, 39, 15), "a short prompt repeated after a long answer");
    assert!(!worth_reusing(9, 520, 516), "only the template's opening");
    assert!(!worth_reusing(12, 520, 15), "a short prompt would throw away a long cache");
    assert!(!worth_reusing(0, 0, 10));
}

/// A: a long prompt that completes; B: another prompt that runs while A's slot is idle.
fn a_prompt() -> Vec<Token> {
    (1..=40).collect()
}

#[tokio::test]
async fn idle_slots_leave_the_kv_cache_and_come_back_on_a_prefix_hit() {
    let h = start(cfg(2), |f| f.step_delay = Duration::from_millis(1));
    h.handle.submit(job(a_prompt(), 3, FakeSampler::counting())).unwrap().collect().await.unwrap();
    // Nothing else runs: A's tokens stay in the KV cache.
    assert!(h.log.saves.lock().is_empty());
    assert_eq!(h.log.kv.lock().get(&0).map(Vec::len), Some(42));
    // B runs in the other slot: A's slot leaves the KV cache while it does.
    let mut b = h.handle.submit(job((101..=110).collect(), 50, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut b).await, (10, 0));
    wait_until(|| h.log.saves.lock().contains(&0)).await;
    assert!(h.log.kv.lock().get(&0).is_none_or(Vec::is_empty));
    wait_until(|| h.handle.snapshot().used_slots == 2).await;
    // A follow-up of A finds its prefix in the saved copy and gets it back.
    let mut a2 = a_prompt();
    a2.extend([500, 501]);
    let mut g = h.handle.submit(job(a2, 2, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut g).await, (42, 40));
    g.collect().await.unwrap();
    assert_eq!(h.log.restores.lock().as_slice(), &[(0, 42)]);
    assert!(h.log.truncates.lock().contains(&(0, 40)));
    b.collect().await.unwrap();
}

#[test]
fn a_prefix_continues_only_over_a_complete_window() {
    assert!(continues_at(None, None, 0));
    assert!(!continues_at(None, Some(16), 5), "nothing held");
    assert!(continues_at(Some(0), None, 40));
    assert!(!continues_at(Some(3), None, 40), "no window: every position is needed");
    assert!(continues_at(Some(26), Some(16), 42), "positions 26..42 are the window of a token at 42");
    assert!(!continues_at(Some(26), Some(16), 40), "a token at 40 attends back to 25");
}

/// Gemma 3's sliding-window layers keep a sequence's last window only: a saved copy of a slot
/// that outgrew it comes back for a prompt that goes on from all of it (a conversation's next
/// turn), and a prompt that branches off earlier is computed again, not continued over the hole.
#[tokio::test]
async fn a_saved_slot_past_the_window_is_reused_only_where_it_can_go_on() {
    let h = start(cfg(2), |f| {
        f.step_delay = Duration::from_millis(1);
        f.window = Some(16);
    });
    h.handle.submit(job(a_prompt(), 3, FakeSampler::counting())).unwrap().collect().await.unwrap();
    let mut b = h.handle.submit(job((101..=110).collect(), 200, FakeSampler::counting())).unwrap();
    started(&mut b).await;
    wait_until(|| h.log.saves.lock().contains(&0)).await;
    // The conversation goes on from all of it: prompt, answer (t100 t101), a new turn. The
    // copy holds positions 26..42, the window of a token at 42.
    let mut next = a_prompt();
    next.extend([100, 101, 500]);
    let mut g = h.handle.submit(job(next, 2, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut g).await, (43, 42));
    g.collect().await.unwrap();
    wait_until(|| h.log.saves.lock().iter().filter(|&&s| s == 0).count() == 2).await;
    // The same 40-token prompt with another ending: its token at 40 would attend back to 25,
    // and the copy (44 tokens now) holds 28.. only.
    let mut other = a_prompt();
    other.extend([500, 501]);
    let mut g = h.handle.submit(job(other, 2, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut g).await, (42, 0));
    g.collect().await.unwrap();
    drop(b);
}

/// A prompt sharing its first 20 tokens with a running sequence, whose cells of positions
/// 0..10 other tokens took over (they had left its window) when `moved_on`: what it got
/// from that sequence (cached tokens, prefixes shared).
async fn prefix_from_a_running_sequence(moved_on: bool) -> (usize, usize) {
    let h = start(cfg(2), |f| {
        f.step_delay = Duration::from_millis(1);
        f.window = Some(16);
    });
    let mut a = h.handle.submit(job(a_prompt(), 200, FakeSampler::counting())).unwrap();
    started(&mut a).await;
    wait_until(|| h.log.kv.lock().get(&0).map_or(0, Vec::len) >= 50).await;
    if moved_on {
        h.log.first.lock().insert(0, 10);
    }
    let mut q: Vec<Token> = (1..=20).collect();
    q.push(900);
    let c = h.handle.submit(job(q, 2, FakeSampler::counting())).unwrap().collect().await.unwrap();
    let cached = c.usage.cached_tokens;
    let shares = h.log.shares.lock().len();
    drop(a);
    (cached, shares)
}

/// A prompt does not take a prefix from a sequence whose KV no longer starts at the shared
/// part: the cells would leave a hole at the start of its own (llama.cpp then refused the
/// next batch, or with an empty window answered from a context with a hole in it).
#[tokio::test]
async fn a_donor_whose_window_moved_on_shares_nothing() {
    assert_eq!(prefix_from_a_running_sequence(false).await, (20, 1));
    assert_eq!(prefix_from_a_running_sequence(true).await, (0, 0));
}

/// A prompt that shares too little with an idle slot to take that slot over (it would
/// discard the slot's cached prompt) still takes the shared tokens from it, before the slot
/// leaves the KV cache for host memory.
#[tokio::test]
async fn an_idle_slot_lends_its_prefix_before_it_leaves_the_kv_cache() {
    let h = start(cfg(2), |f| f.step_delay = Duration::from_millis(1));
    h.handle.submit(job(a_prompt(), 3, FakeSampler::counting())).unwrap().collect().await.unwrap();
    let mut b: Vec<Token> = (1..=5).collect();
    b.extend(201..=220);
    let c = h.handle.submit(job(b, 2, FakeSampler::counting())).unwrap().collect().await.unwrap();
    assert_eq!(c.usage.cached_tokens, 5);
    assert_eq!(h.log.shares.lock().as_slice(), &[(0, 1, 0, 5)]);
    assert!(h.log.saves.lock().contains(&0), "the idle slot still left the KV cache");
    // Its copy is whole: the follow-up of A gets all of it back.
    let mut a2 = a_prompt();
    a2.push(500);
    let c = h.handle.submit(job(a2, 2, FakeSampler::counting())).unwrap().collect().await.unwrap();
    assert_eq!(c.usage.cached_tokens, 40);
}

#[tokio::test]
async fn a_saved_slot_with_a_tiny_shared_prefix_is_not_restored() {
    let mut c = cfg(2);
    c.context = 1024;
    let h = start(c, |f| f.step_delay = Duration::from_millis(1));
    let long: Vec<Token> = (1..=600).collect();
    h.handle.submit(job(long, 1, FakeSampler::counting())).unwrap().collect().await.unwrap();
    let mut b = h.handle.submit(job((1001..=1010).collect(), 50, FakeSampler::counting())).unwrap();
    started(&mut b).await;
    wait_until(|| h.log.saves.lock().contains(&0)).await;
    // Shares one token with the 601 saved ones: recomputing it beats copying them back.
    let mut g = h.handle.submit(job(vec![1, 7, 7, 7], 2, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut g).await, (4, 0));
    g.collect().await.unwrap();
    assert!(h.log.restores.lock().is_empty());
    b.collect().await.unwrap();
}

#[tokio::test]
async fn without_save_idle_slots_stay_in_the_kv_cache() {
    let h = start(cfg(2), |f| {
        f.step_delay = Duration::from_millis(1);
        f.can_save = false;
    });
    h.handle.submit(job(a_prompt(), 3, FakeSampler::counting())).unwrap().collect().await.unwrap();
    let b = h.handle.submit(job((101..=110).collect(), 5, FakeSampler::counting())).unwrap();
    b.collect().await.unwrap();
    assert_eq!(h.log.kv.lock().get(&0).map(Vec::len), Some(42));
    let mut a2 = a_prompt();
    a2.push(500);
    let mut g = h.handle.submit(job(a2, 2, FakeSampler::counting())).unwrap();
    assert_eq!(started(&mut g).await, (41, 40));
    g.collect().await.unwrap();
}

#[tokio::test]
async fn a_burst_at_an_idle_engine_shares_the_first_batch() {
    let mut c = cfg(4);
    c.burst = Burst { quiet: Duration::from_millis(50), max: Duration::from_secs(5) };
    let h = start(c, |_| {});
    // Three requests a few ms apart (as concurrent clients' requests arrive), then a pause.
    let mut gens = Vec::new();
    for p in 1..=3 {
        gens.push(h.handle.submit(job(vec![p, p, p], 2, FakeSampler::counting())).unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }
    for g in gens {
        g.collect().await.unwrap();
    }
    let batches = h.log.batches.lock();
    let first: Vec<Token> = batches[0].iter().map(|b| b.token).collect();
    assert_eq!(first, vec![1, 1, 1, 2, 2, 2, 3, 3, 3]);
}

#[tokio::test]
async fn a_full_set_of_slots_ends_the_gathering_at_once() {
    let mut c = cfg(2);
    // A window far longer than the test's patience: filling both slots must end it.
    c.burst = Burst { quiet: Duration::from_secs(60), max: Duration::from_secs(60) };
    let h = start(c, |_| {});
    let a = h.handle.submit(job(vec![1], 2, FakeSampler::counting())).unwrap();
    let b = h.handle.submit(job(vec![2], 2, FakeSampler::counting())).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        a.collect().await.unwrap();
        b.collect().await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn decode_failure_fails_the_sequences_in_the_batch_only() {
    let h = start(cfg(2), |f| f.fail_on = Some(66));
    let bad = h.handle.submit(job(vec![66], 3, FakeSampler::counting())).unwrap();
    assert!(matches!(bad.collect().await, Err(EngineError::Internal(_))));
    let good = h.handle.submit(job(vec![1], 3, FakeSampler::counting())).unwrap();
    assert_eq!(good.collect().await.unwrap().usage.completion_tokens, 3);
    wait_until(|| h.handle.snapshot().totals.failed == 1).await;
}

#[tokio::test]
async fn a_dead_engine_thread_fails_everything_honestly() {
    let h = start(cfg(1), |f| f.panic_on = Some(666));
    h.gate.set(true);
    let boom = h.handle.submit(job(vec![666], 3, FakeSampler::counting())).unwrap();
    let queued = h.handle.submit(job(vec![1], 3, FakeSampler::counting())).unwrap();
    h.gate.set(false);
    assert!(matches!(boom.collect().await, Err(EngineError::Unavailable(_))));
    assert!(matches!(queued.collect().await, Err(EngineError::Unavailable(_))));
    assert!(matches!(h.handle.submit(job(vec![1], 3, FakeSampler::counting())), Err(EngineError::Unavailable(_))));
}

#[tokio::test]
async fn a_request_dropped_while_queued_leaves_the_queue() {
    let mut c = cfg(1);
    c.max_queue = 1;
    let h = start(c, |f| f.step_delay = Duration::from_millis(1));
    let mut running = h.handle.submit(job(vec![1], 10_000, FakeSampler::counting())).unwrap();
    started(&mut running).await;
    let queued = h.handle.submit(job(vec![2], 2, FakeSampler::counting())).unwrap();
    assert!(matches!(h.handle.submit(job(vec![3], 2, FakeSampler::counting())), Err(EngineError::Overloaded { .. })));
    drop(queued);
    wait_until(|| h.handle.snapshot().queue_depth == 0).await;
    // Its place is free again.
    let next = h.handle.submit(job(vec![4], 2, FakeSampler::counting())).unwrap();
    drop(running);
    assert_eq!(next.collect().await.unwrap().usage.completion_tokens, 2);
    assert_eq!(prompt_order(&h.log), vec![1, 4]);
}

#[tokio::test]
async fn embeddings_go_through_the_engine_thread() {
    let h = start(cfg(1), |_| {});
    let out = h.handle.embed(vec![vec![1, 2, 3], vec![4]]).await.unwrap().unwrap();
    assert_eq!(out, vec![vec![3.0, 1.0], vec![1.0, 1.0]]);
}

#[tokio::test]
async fn shutdown_ends_running_generations_with_an_error() {
    let h = start(cfg(1), |f| f.step_delay = Duration::from_millis(1));
    let mut g = h.handle.submit(job(vec![1], 10_000, FakeSampler::counting())).unwrap();
    started(&mut g).await;
    h.handle.shutdown();
    assert!(matches!(g.collect().await, Err(EngineError::Unavailable(_))));
}

#[test]
fn common_prefix_lengths() {
    assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
    assert_eq!(common_prefix(&[], &[1]), 0);
    assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
}

/// `n` tokens of a shared system prompt followed by a request's own `tail`.
fn with_system(n: Token, tail: &[Token]) -> Vec<Token> {
    let mut t: Vec<Token> = (1..=n).collect();
    t.extend_from_slice(tail);
    t
}

/// Prompt tokens each slot computed (entries of every batch, decode tokens excluded).
fn computed_prompt_tokens(log: &Log, slot: usize, prompt_len: usize) -> usize {
    log.batches.lock().iter().flatten().filter(|b| b.slot == slot && (b.pos as usize) < prompt_len).count()
}

#[tokio::test]
async fn a_burst_with_one_system_prompt_computes_it_once() {
    let mut c = cfg(5);
    c.n_batch = 256;
    let h = start(c, |_| {});
    // A blocker holds the engine in its first decode while the burst lines up, so all four
    // are admitted in one step whatever the machine's load.
    h.gate.set(true);
    let mut blocker = h.handle.submit(job(vec![9000], 1, FakeSampler::counting())).unwrap();
    started(&mut blocker).await;
    // Four requests of one use case: a 100-token system prompt each, then their own two.
    let prompts: Vec<Vec<Token>> = (0..4).map(|i| with_system(100, &[1000 + i, 2000 + i])).collect();
    let gens: Vec<_> = prompts.iter().map(|p| h.handle.submit(job(p.clone(), 3, FakeSampler::counting())).unwrap()).collect();
    h.gate.set(false);
    blocker.collect().await.unwrap();
    let mut done = Vec::new();
    for g in gens {
        done.push(g.collect().await.unwrap());
    }
    // One of them computes the system prompt; the other three take it from its KV and compute
    // their own two tokens (the fake checks every position was in place).
    let shares = h.log.shares.lock().clone();
    assert_eq!(shares.len(), 3, "{shares:?}");
    let leader = shares[0].0;
    assert!(shares.iter().all(|&(src, _, from, to)| src == leader && from == 0 && to == 100), "{shares:?}");
    assert_eq!(computed_prompt_tokens(&h.log, leader, 102), 102);
    for &(_, follower, _, _) in &shares {
        assert_eq!(computed_prompt_tokens(&h.log, follower, 102), 2, "slot {follower}");
    }
    // Usage says so: the shared tokens are cached tokens.
    let mut cached: Vec<usize> = done.iter().map(|c| c.usage.cached_tokens).collect();
    cached.sort_unstable();
    assert_eq!(cached, vec![0, 100, 100, 100]);
    assert!(done.iter().all(|c| c.usage.prompt_tokens == 102));
    // Same answers as unshared (the fake counts up from 100 whatever the prompt).
    assert!(done.iter().all(|c| c.text == "t100 t101 t102 "));
}

#[tokio::test]
async fn a_running_sequence_lends_its_prefix_to_a_new_one() {
    let mut c = cfg(2);
    c.context = 4096;
    let h = start(c, |f| f.step_delay = Duration::from_millis(1));
    // A runs for seconds (4000 tokens at >= 1 ms a step): still running when B arrives.
    let mut a = h.handle.submit(job(with_system(60, &[7]), 4000, FakeSampler::counting())).unwrap();
    started(&mut a).await;
    wait_until(|| h.log.kv.lock().get(&0).is_some_and(|kv| kv.len() > 62)).await;
    // B arrives while A decodes: its system prompt comes from A's KV at once, no wait.
    let b = h.handle.submit(job(with_system(60, &[8, 9]), 2, FakeSampler::counting())).unwrap();
    let c = b.collect().await.unwrap();
    assert_eq!(c.usage.cached_tokens, 60);
    assert_eq!(h.log.shares.lock().as_slice(), &[(0, 1, 0, 60)]);
    assert_eq!(computed_prompt_tokens(&h.log, 1, 62), 2);
    drop(a);
}

#[tokio::test]
async fn short_shared_prefixes_do_not_make_prompts_wait() {
    let h = start(cfg(4), |_| {});
    h.gate.set(true);
    let mut blocker = h.handle.submit(job(vec![9000], 1, FakeSampler::counting())).unwrap();
    started(&mut blocker).await;
    // A chat template's few tokens in common: computing them again is cheaper than a step.
    let gens: Vec<_> =
        (0..3).map(|i| h.handle.submit(job(with_system(5, &[100 + i, 200 + i, 300 + i]), 2, FakeSampler::counting())).unwrap()).collect();
    h.gate.set(false);
    blocker.collect().await.unwrap();
    for g in gens {
        g.collect().await.unwrap();
    }
    let batches = h.log.batches.lock();
    assert_eq!(batches[0].len(), 1, "the blocker alone");
    assert_eq!(batches[1].len(), 24, "all three prompts in one batch: {:?}", batches[1]);
    assert!(h.log.shares.lock().is_empty());
}

#[tokio::test]
async fn a_follower_whose_leader_is_cancelled_computes_the_prefix_itself() {
    let mut c = cfg(2);
    c.n_batch = 16;
    c.context = 4096;
    let h = start(c, |f| f.step_delay = Duration::from_millis(2));
    h.gate.set(true);
    // A blocker holds the engine so both requests are admitted in the same step.
    let mut blocker = h.handle.submit(job(vec![9000], 1, FakeSampler::counting())).unwrap();
    started(&mut blocker).await;
    // The leader would run for seconds: it is cancelled while running, whatever the load.
    let lead = h.handle.submit(job(with_system(80, &[1]), 3000, FakeSampler::counting())).unwrap();
    let follow = h.handle.submit(job(with_system(80, &[2]), 2, FakeSampler::counting())).unwrap();
    h.gate.set(false);
    blocker.collect().await.unwrap();
    // The leader computes the prefix 16 tokens a step; cancel it part way.
    wait_until(|| h.log.kv.lock().values().any(|kv| kv.len() >= 32)).await;
    drop(lead);
    let c = follow.collect().await.unwrap();
    assert_eq!(c.finish, FinishReason::Length);
    assert_eq!(c.usage.prompt_tokens, 81);
    wait_until(|| h.handle.snapshot().totals.cancelled == 1).await;
}
