//! `flotilla`, the operator command line. Each command lives in its own module with its
//! arguments and a `run` function; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod lint;
mod output;

/// Flotilla: GitOps for fleets of Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a repository offline: parse flotilla.yaml and render every bundle for every
    /// cluster of an inventory. Exits 1 when anything is wrong, for CI.
    Lint(lint::LintArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Lint(args) => lint::run(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
