//! gensetctl: operate a running genset daemon.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = genset::ctl::Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gensetctl: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(genset::ctl::run(cli)) {
        Ok(out) => {
            #[allow(clippy::print_stdout)]
            {
                print!("{out}");
                if !out.ends_with('\n') {
                    println!();
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gensetctl: {e:#}");
            ExitCode::from(1)
        }
    }
}
