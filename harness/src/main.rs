//! The `dare` binary: parse, run, and turn any error into one line on stderr.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = dare_harness::cli::Cli::parse();
    match dare_harness::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context and its causes, joined.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("dare: error: {}", msg.join(": "));
            dare_harness::exit_code(&e)
        }
    }
}
