//! `flotilla`, the operator command line. Each command lives in its own module with its
//! arguments and a `run` function; this file only dispatches.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod audit;
mod cluster;
mod clusters;
mod contexts;
mod demo;
mod detail;
mod diff;
mod global;
mod history;
mod hub;
mod lint;
mod login;
mod output;
mod preview;
mod promote;
mod render;
mod revisions;
mod rollback;
mod rollout;
mod rollout_action;
mod status;
mod time;
mod token;

/// Flotilla: GitOps for fleets of Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: global::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a repository offline: parse flotilla.yaml and render every bundle for every
    /// cluster of an inventory. Exits 1 when anything is wrong, for CI.
    Lint(lint::LintArgs),
    /// Print, offline, exactly the objects one cluster would receive from a repository's
    /// working tree: every bundle targeting it, as the agent applies it.
    Render(render::RenderArgs),
    /// List the registered clusters with their stage, liveness and revision.
    Clusters(clusters::ClustersArgs),
    /// Add, label, show (`get`) or remove a cluster.
    Cluster(cluster::ClusterArgs),
    /// Show a bundle across the fleet (`get`): per cluster, every object with its state.
    Bundle(detail::BundleArgs),
    /// List the revisions the hub keeps, newest first, with render errors.
    Revisions(revisions::RevisionsArgs),
    /// Show the fleet: per stage, cluster and bundle, desired and applied revision and health.
    Status(status::StatusArgs),
    /// Show what changes, per cluster, from one revision to another.
    Diff(diff::DiffArgs),
    /// Offline, what merging a branch would do: render two refs of a local repository for
    /// every cluster, list which clusters change which objects (alike ones together) and what
    /// each stage would do. Exits 0 when nothing changes, 1 when something does, 2 on errors;
    /// `-o markdown` for a pull request's comment.
    Preview(preview::PreviewArgs),
    /// Start a rollout of a revision into a stage (default: the newest its upstream passed).
    Promote(promote::PromoteArgs),
    /// Return a stage to an earlier revision at once.
    Rollback(rollback::RollbackArgs),
    /// Pause a stage's running rollout: no further cluster gets its revision.
    Pause(rollout_action::StageActionArgs),
    /// Resume a stage's paused rollout.
    Resume(rollout_action::StageActionArgs),
    /// Let a stage's rollout awaiting approval run.
    Approve(rollout_action::StageActionArgs),
    /// Show how a stage got where it is: pins with who, when and why, failures, audit events.
    History(history::HistoryArgs),
    /// Follow a stage's rollout: waves, clusters done / in progress / failed / waiting.
    Rollout(rollout::RolloutArgs),
    /// Create, list or revoke API tokens (admins).
    Token(token::TokenArgs),
    /// List audit events, newest first: who did what, when, and how it ended.
    Audit(audit::AuditArgs),
    /// Run a whole fleet on this machine: a hub following an example repository, five
    /// simulated clusters and an agent for each. Prints what to try; Ctrl-C stops it. Runs the
    /// `flotilla-demo` binary (beside this one, else on PATH); `flotilla demo --help` shows its
    /// options.
    #[command(disable_help_flag = true)]
    Demo(demo::DemoArgs),
    /// Save a hub's address, CA and token as a context and make it current, so later commands
    /// need no flags (checks that the hub answers and takes the token first).
    Login(login::LoginArgs),
    /// Show and switch the contexts `flotilla login` saved.
    Config(contexts::ConfigArgs),
    /// Print a shell completion script: `source <(flotilla completion bash)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    flotilla_pki::install_crypto_provider();
    let cli = match parse() {
        Ok(cli) => cli,
        Err((error, code)) => {
            eprintln!("error: {error:#}");
            return code;
        }
    };
    // `diff --exit-code` says "they differ" with 1, so its failures need another code.
    let failure = match &cli.command {
        Command::Diff(args) if args.exit_code => ExitCode::from(2),
        Command::Preview(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    let outcome = match cli.command {
        Command::Lint(args) => lint::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Clusters(args) => clusters::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Cluster(args) => cluster::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Bundle(args) => detail::run_bundle(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Revisions(args) => revisions::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Status(args) => status::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Diff(args) => diff::run(&args).await,
        Command::Preview(args) => preview::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Promote(args) => promote::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Rollback(args) => rollback::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Pause(args) => rollout_action::run(&args, rollout_action::Action::Pause)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Resume(args) => rollout_action::run(&args, rollout_action::Action::Resume)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Approve(args) => rollout_action::run(&args, rollout_action::Action::Approve)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::History(args) => history::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Rollout(args) => rollout::run(&args).await,
        Command::Token(args) => token::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => audit::run(&args).await.map(|()| ExitCode::SUCCESS),
        Command::Login(args) => login::run(&args, &cli.global)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Config(args) => contexts::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "flotilla", &mut script);
            output::emit(&String::from_utf8_lossy(&script)).map(|()| ExitCode::SUCCESS)
        }
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            failure
        }
    }
}

/// Parses the command line: the global flags first, resolved against the contexts (so that a
/// command's `#[arg(skip = …)]` fields read the settings in force), then the command.
fn parse() -> Result<Cli, (anyhow::Error, ExitCode)> {
    let matches = Cli::command().get_matches();
    // A command whose exit code 1 means something (`diff --exit-code`: they differ;
    // `preview`: something changes) fails with 2, here as after.
    let failure = match matches.subcommand() {
        Some(("diff", diff)) if diff.get_flag("exit_code") => ExitCode::from(2),
        Some(("preview", _)) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    let global = global::Global::from_arg_matches(&matches).map_err(|e| e.exit())?;
    // Commands that talk to no hub, and `login` and `config`, which work on the contexts
    // themselves: no context (nor a broken or unknown one) bears on them.
    let own = matches!(
        matches.subcommand_name(),
        Some("login" | "config" | "completion" | "lint" | "render" | "demo" | "preview")
    );
    let contexts = if own || !global.needs_contexts() {
        contexts::Contexts::default()
    } else {
        contexts::Contexts::load().map_err(|e| (e, failure))?
    };
    global.resolve(&contexts, own).map_err(|e| (e, failure))?;
    Cli::from_arg_matches(&matches).map_err(|e| e.exit())
}
