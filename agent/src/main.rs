//! `flotilla-agent`: applies bundles of Kubernetes objects to one cluster.
//!
//! ```text
//! flotilla-agent run --hub hub-1:7071,hub-2:7071,hub-3:7071 --cluster prod-eu-1 \
//!     --state-dir /var/lib/flotilla-agent --ca-file ca.crt --bootstrap-token-file TOKEN_FILE \
//!     [--kubeconfig FILE --context NAME]              # the token only at the first start
//!                                                      # (or FLOTILLA_BOOTSTRAP_TOKEN)
//! flotilla-agent run --source-dir bundles/ [--state-dir DIR] [--kubeconfig FILE --context NAME]
//! flotilla-agent apply --dir manifests/ --bundle web [--namespace NS] [--wait] [--timeout 5m]
//! ```
//!
//! `apply` exits 0 when the bundle is applied (and Healthy, with `--wait`), 1 when it was
//! refused or cannot start (errors printed), 3 when `--timeout` passed first.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flotilla_agent::hub::run::{RunArgs, run};
use flotilla_agent::local::apply::{ApplyArgs, Outcome, apply};

#[derive(Parser)]
#[command(name = "flotilla-agent", version, about = "Flotilla agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keep the cluster in the hub's desired state: the agent's normal mode. With
    /// `--source-dir` instead of `--hub`, keep each subfolder of a directory applied.
    Run(RunArgs),
    /// Apply a directory of manifests once, as a bundle.
    Apply(ApplyArgs),
}

/// mimalloc, not the system allocator: glibc's malloc took about a third of the agents' and
/// the simulator's CPU at 1,000 clusters (docs/BENCHMARKS.md, `bench e2e`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    flotilla_pki::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colour only on a terminal: a pipe, a file or a log collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args, shutdown_signal()).await,
            Command::Apply(args) => {
                return match apply(args).await {
                    Ok(Outcome::Done) => Ok(ExitCode::SUCCESS),
                    Ok(Outcome::Failed) => Ok(ExitCode::FAILURE),
                    Ok(Outcome::TimedOut) => Ok(ExitCode::from(3)),
                    Err(e) => {
                        eprintln!("error: {e}");
                        Ok(ExitCode::FAILURE)
                    }
                };
            }
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
