//! The `cx-conductor` binary: a thin shell over the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cx_conductor::cli::Cli::parse();
    cx_conductor::cli::run(cli)
}
