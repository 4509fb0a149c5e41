//! genset-sim: a fault-injecting simulator of the OpenAI and Anthropic
//! cloud APIs, for genset's demo, integration tests and benchmarks.
//!
//! Answers are deterministic functions of the request (see
//! [Answers](#answers)), faults can be switched at run time through
//! `/_sim/` control endpoints or in-process through [`SimHandle`], and the
//! default mode adds no delay at all.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use genset_sim::{Fault, FaultMode, SimOptions};
//! let sim = genset_sim::start(SimOptions::default()).await?;
//! let base = sim.base_url(); // http://127.0.0.1:PORT
//! sim.set_fault(Fault::new(FaultMode::RateLimit).count(1)).await?;
//! // ... drive requests at `base` ...
//! assert_eq!(sim.stats().status(429), 1);
//! sim.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Answers
//! The last user message `say:TEXT` makes the answer exactly `TEXT`
//! (trimmed); otherwise it is a 12–24 word sentence chosen by a hash of the
//! model and all message texts. A trailing assistant message is a prefill
//! that the answer continues. Tokens are whitespace-separated words (plus one
//! per prompt message). See the crate README for the full rules.
//!
//! # Threads
//! The simulator runs on its own thread(s) and Tokio runtime, so it keeps
//! answering whatever the caller's runtime is doing (a `current_thread` test
//! runtime blocked on a client included).

mod answer;
mod api;
mod body;
mod control;
mod error;
mod fault;
mod ids;
mod route;
mod server;
mod state;
mod stats;
mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::oneshot;

pub use crate::fault::{Fault, FaultMode};
use crate::state::Shared;
pub use crate::stats::{RecordedRequest, SimStats};

/// How to start the simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// API address; port 0 picks a free port. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// A separate address for the `/_sim/` control endpoints, which stays
    /// open while the `refuse` fault closes the API port.
    pub control_listen: Option<SocketAddr>,
    /// Runtime worker threads; 1 (the default) runs everything on one
    /// thread, which is the fastest choice on small machines.
    pub workers: usize,
    /// Accepted API keys; `None` accepts any non-empty key.
    pub keys: Option<Vec<String>>,
    /// Delay before each content chunk of a stream (default none).
    pub token_delay: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            control_listen: None,
            workers: 1,
            keys: None,
            token_delay: Duration::ZERO,
        }
    }
}

/// A running simulator. Dropping it stops the simulator (without waiting);
/// [`SimHandle::stop`] stops it and waits.
pub struct SimHandle {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.shared.api_addr)
            .field("control_addr", &self.shared.control_addr)
            .finish_non_exhaustive()
    }
}

/// Binds the listeners and starts serving on a dedicated thread.
pub async fn start(opts: SimOptions) -> anyhow::Result<SimHandle> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("genset-sim".to_owned())
        .spawn(move || run(opts, ready_tx, stop_rx, done_tx))
        .context("spawning the simulator thread")?;
    let shared = ready_rx.await.context("the simulator thread exited during startup")??;
    Ok(SimHandle { shared, stop: Some(stop_tx), done: Some(done_rx) })
}

fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).thread_name("genset-sim-worker").enable_all().build()
    }
}

fn run(opts: SimOptions, ready: oneshot::Sender<anyhow::Result<Arc<Shared>>>, stop: oneshot::Receiver<()>, done: oneshot::Sender<()>) {
    let rt = match runtime(opts.workers) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(anyhow::Error::new(e).context("building the simulator runtime")));
            return;
        }
    };
    let setup = rt.block_on(async {
        let api = server::bind(opts.listen).with_context(|| format!("cannot listen on {}", opts.listen))?;
        let control = match opts.control_listen {
            Some(addr) => Some(server::bind(addr).with_context(|| format!("cannot listen on {addr}"))?),
            None => None,
        };
        let control_addr = control.as_ref().map(|c| c.local_addr()).transpose()?;
        let shared = Arc::new(Shared::new(api.local_addr()?, control_addr, opts.keys, opts.token_delay));
        server::spawn(shared.clone(), api, control);
        anyhow::Ok(shared)
    });
    let started = setup.is_ok();
    if ready.send(setup).is_ok() && started {
        rt.block_on(async {
            // Sent by stop(), or an error when the handle was dropped.
            let _ = stop.await;
        });
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    let _ = done.send(());
}

impl SimHandle {
    /// The API address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.api_addr
    }

    /// `http://HOST:PORT`: the Anthropic SDK's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared.api_addr)
    }

    /// `http://HOST:PORT/v1`: the OpenAI SDK's `base_url`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.shared.api_addr)
    }

    /// The separate control address, when one was configured.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.shared.control_addr
    }

    /// Where the `/_sim/` endpoints are reachable even during `refuse`
    /// (the API address when there is no separate control address).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.shared.control_addr.unwrap_or(self.shared.api_addr))
    }

    /// Sets the active fault, replacing any other. For `refuse` it returns
    /// once the port refuses connections; after a `refuse`, once the port
    /// accepts them again. Also releases requests held by `hang` or an
    /// open-ended `stall_mid_stream`.
    pub async fn set_fault(&self, fault: impl Into<Fault>) -> anyhow::Result<()> {
        self.shared.set_fault(Some(fault.into())).await
    }

    /// Clears the active fault (see [`SimHandle::set_fault`] for what it
    /// waits for).
    pub async fn clear_fault(&self) -> anyhow::Result<()> {
        self.shared.set_fault(None).await
    }

    /// The active fault, with `count` showing what is left of it.
    pub fn fault(&self) -> Option<Fault> {
        self.shared.faults.current()
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats.snapshot()
    }

    /// Clears the fault, the counters and the revoked keys.
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.shared.reset().await
    }

    /// Makes a key invalid from now on (until [`SimHandle::reset`]).
    pub fn revoke_key(&self, key: &str) {
        self.shared.revoke(key);
    }

    /// Sets the delay before each content chunk of a stream.
    pub fn set_token_delay(&self, delay: Duration) {
        self.shared.set_token_delay(delay);
    }

    /// Stops serving, closes the ports and waits until the simulator's
    /// thread is done.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
