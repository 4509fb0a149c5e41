//! gensetd: the genset daemon. Parses its command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the request path allocates and frees many short-lived
/// buffers and futures, some over glibc's per-thread cache limit, and glibc's arena locking,
/// consolidation and trimming cost the proxy about an eighth of its throughput (measured in
/// docs/benchmarks.md). SQLite allocates through it too (`genset::store`'s `sqlite_lib`);
/// llama.cpp keeps the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gensetd", version, about = "genset daemon: inline LLM API proxy with local failover")]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "GENSET_CONFIG", default_value = "/etc/genset/genset.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration and exit: 0 when valid, 1 with the key path when not.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    genset::install_crypto_provider();
    let cfg = match genset::config::Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gensetd: invalid configuration: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        eprintln!(
            "gensetd: configuration {} is valid ({} upstreams, {} use cases, {} models)",
            cli.config.display(),
            cfg.upstreams.len(),
            cfg.use_cases.len(),
            cfg.models.len()
        );
        return ExitCode::SUCCESS;
    }
    genset::daemon::init_logging(&cfg.telemetry);
    // The console (crate genset-admin-ui) rides on the admin listener.
    let ext = genset_admin_ui::extensions(&cfg);
    let result = actix_web::rt::System::new().block_on(genset::daemon::serve_with(&cli.config, cfg, ext));
    genset::telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gensetd: {e:#}");
            ExitCode::from(1)
        }
    }
}
