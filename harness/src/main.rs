//! The `dare` binary: parse, run, and turn any error into one line on stderr and an exit
//! status (see `dare --help`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = dare_cli::cli::Cli::parse();
    match dare_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`dare get b/x | head -c 10`): stop quietly, as ripgrep does.
        Err(e) if dare_cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "dare: error: {}", dare_cli::one_line(&e));
            dare_cli::exit_code(&e)
        }
    }
}
