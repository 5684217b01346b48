//! `flotilla rollback STAGE [--to R]`: return a stage to an earlier revision at once.
//!
//! Without `--to`, the stage returns to where its active rollout began, or else to the revision
//! it was pinned to before. Every cluster of the stage is assigned that revision at once, the
//! active rollout ends, and what the stage moves away from is marked failed for it (never
//! promoted to it automatically again).

use clap::Args;
use flotilla_proto::v1::AdminRollbackRequest;

use crate::hub::HubArgs;
use crate::output::OutputFormat;
use crate::rollout::print_action;

/// Arguments of `flotilla rollback`.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The stage to roll back.
    stage: String,
    /// A commit or a unique prefix of at least 4 hex digits the stage ran before
    /// (`flotilla history STAGE`).
    #[arg(long)]
    to: Option<String>,
    /// Why, for the stage's history.
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

/// Runs `flotilla rollback`.
pub(crate) async fn run(args: &RollbackArgs) -> anyhow::Result<()> {
    let mut admin = args.hub.connect().await?;
    let reply = admin
        .rollback(AdminRollbackRequest {
            stage: args.stage.clone(),
            to_revision: args.to.clone().unwrap_or_default(),
            reason: args.reason.clone(),
        })
        .await
        .map_err(|s| {
            args.hub
                .call_error(&format!("rolling back stage `{}`", args.stage), s)
        })?
        .into_inner();
    print_action(reply, args.output)
}
