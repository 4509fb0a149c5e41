//! `genset-sim`: parse flags, start the simulator, print where it listens,
//! wait for a signal.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use genset_sim::SimOptions;

/// A fault-injecting simulator of the OpenAI and Anthropic APIs.
///
/// Prints one line, `genset-sim listening on http://HOST:PORT`, to stdout
/// once it listens; logs go to stderr (RUST_LOG filters them).
#[derive(Debug, Parser)]
#[command(name = "genset-sim", version)]
struct Cli {
    /// API address (port 0 picks a free port).
    #[arg(long, env = "GENSET_SIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// A separate address for the /_sim/ control endpoints, which stays
    /// open while the `refuse` fault closes the API port. Its URL is also
    /// given by GET /_sim/health on the API port.
    #[arg(long, env = "GENSET_SIM_CONTROL_LISTEN")]
    control_listen: Option<SocketAddr>,

    /// Worker threads.
    #[arg(long, env = "GENSET_SIM_WORKERS", default_value_t = 1)]
    workers: usize,

    /// Comma-separated API keys to accept (default: any non-empty key).
    #[arg(long, env = "GENSET_SIM_KEYS", value_delimiter = ',')]
    keys: Option<Vec<String>>,

    /// Delay before each content chunk of a stream, in milliseconds.
    #[arg(long, env = "GENSET_SIM_TOKEN_DELAY_MS", default_value_t = 0)]
    token_delay_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let opts = SimOptions {
        listen: cli.listen,
        control_listen: cli.control_listen,
        workers: cli.workers.max(1),
        keys: cli.keys.filter(|k| !k.is_empty()),
        token_delay: Duration::from_millis(cli.token_delay_ms),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let sim = genset_sim::start(opts).await?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "genset-sim listening on {}", sim.base_url())?;
            out.flush()?;
        }
        if let Some(control) = sim.control_addr() {
            tracing::info!("control endpoints on http://{control}/_sim/");
        }
        tracing::info!(api = %sim.base_url(), "ready");
        shutdown_signal().await?;
        tracing::info!("stopping");
        sim.stop().await;
        Ok(())
    })
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
