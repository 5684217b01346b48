//! `flotilla promote STAGE [--revision R] [--force]`: start a rollout of a revision into a stage.
//!
//! Without `--revision` the stage takes the newest revision its upstream stage passed (for a
//! tracking stage, the branch head). A revision the upstream stage has not passed is refused
//! unless an admin gives `--force`, which the hub audits. A rollout already active in the stage
//! is replaced; with `approval: manual`, promoting is the approval.

use clap::Args;
use flotilla_proto::v1::AdminPromoteRequest;

use crate::hub::HubArgs;
use crate::output::OutputFormat;
use crate::rollout::print_action;

/// Arguments of `flotilla promote`.
#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// The stage to promote into.
    stage: String,
    /// A commit or a unique prefix of at least 4 hex digits (`flotilla revisions`).
    #[arg(long)]
    revision: Option<String>,
    /// Promote even a revision the upstream stage has not passed (admins only; audited).
    #[arg(long)]
    force: bool,
    /// Why, for the stage's history.
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

/// Runs `flotilla promote`.
pub(crate) async fn run(args: &PromoteArgs) -> anyhow::Result<()> {
    let mut admin = args.hub.connect().await?;
    let reply = admin
        .promote(AdminPromoteRequest {
            stage: args.stage.clone(),
            revision: args.revision.clone().unwrap_or_default(),
            force: args.force,
            reason: args.reason.clone(),
        })
        .await
        .map_err(|s| {
            args.hub
                .call_error(&format!("promoting to stage `{}`", args.stage), s)
        })?
        .into_inner();
    print_action(reply, args.output)
}
