//! `hvctl`: see the library's documentation and docs/management.md.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match hvctl::run(hvctl::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
