//! `flotilla`, the operator command line. Each command lives in its own module with its
//! arguments and a `run` function; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cluster;
mod clusters;
mod demo;
mod diff;
mod hub;
mod lint;
mod output;
mod revisions;
mod status;
mod time;

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
    /// List the registered clusters with their stage, liveness and revision.
    Clusters(clusters::ClustersArgs),
    /// Add or remove a cluster.
    Cluster(cluster::ClusterArgs),
    /// List the revisions the hub keeps, newest first, with render errors.
    Revisions(revisions::RevisionsArgs),
    /// Show the fleet: per stage, cluster and bundle, desired and applied revision and health.
    Status(status::StatusArgs),
    /// Show what changes, per cluster, from one revision to another.
    Diff(diff::DiffArgs),
    /// Run a whole fleet on this machine: a hub following an example repository, five
    /// simulated clusters and an agent for each. Prints what to try; Ctrl-C stops it.
    Demo(demo::DemoArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Lint(args) => lint::run(&args),
        Command::Clusters(args) => clusters::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Cluster(args) => cluster::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Revisions(args) => revisions::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Status(args) => status::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Diff(args) => diff::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::run(&args).await.map(|()| ExitCode::SUCCESS),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
