//! `skiffctl`: the command-line client, with kubectl's verbs and habits.
//!
//! [`cli`] parses the command line, [`commands`] runs a verb against the API server through
//! a [`session::Session`], and [`printers`] with [`columns`] turn objects into tables, YAML,
//! JSON or names. Errors end up on stderr as one line each, and the exit code is 1 (for
//! `exec`, the command's own).

mod age;
mod cli;
mod columns;
mod commands;
mod config;
mod error;
mod input;
mod printers;
mod session;
mod target;

use std::process::ExitCode;

use clap::Parser;

use crate::error::CtlError;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // A blocking read of stdin (exec -i on a terminal) must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CtlError::Reported) => ExitCode::FAILURE,
        Err(CtlError::Exit(code)) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
