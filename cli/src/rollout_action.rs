//! `flotilla pause STAGE`, `flotilla resume STAGE` and `flotilla approve STAGE`: act on a
//! stage's active rollout. A paused rollout gives no further cluster its revision; resuming
//! gives every cluster still on its way a fresh health timeout and soaks the current wave again.
//! Approving lets a rollout that waits for approval (`approval: manual`, or held by the deletion
//! guard) run.

use clap::Args;
use flotilla_proto::v1::AdminStageActionRequest;

use crate::hub::HubArgs;
use crate::output::OutputFormat;
use crate::rollout::print_action;

/// Arguments of `flotilla pause`, `resume` and `approve`.
#[derive(Debug, Args)]
pub(crate) struct StageActionArgs {
    /// The stage whose rollout to act on.
    stage: String,
    /// Why, for the stage's history.
    #[arg(long, default_value = "")]
    reason: String,
    /// The rollout meant (`flotilla rollout status STAGE` shows its id): refused when the
    /// stage's active rollout is another, so approving what was reviewed never lets a newer one
    /// run.
    #[arg(long)]
    rollout: Option<u64>,
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

/// What to do to the rollout.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    /// Stop giving clusters the revision.
    Pause,
    /// Go on.
    Resume,
    /// Let a rollout awaiting approval run.
    Approve,
}

/// Runs `flotilla pause|resume|approve`.
pub(crate) async fn run(args: &StageActionArgs, action: Action) -> anyhow::Result<()> {
    let mut admin = args.hub.connect().await?;
    let request = AdminStageActionRequest {
        stage: args.stage.clone(),
        reason: args.reason.clone(),
        rollout: args.rollout.unwrap_or(0),
    };
    let (verb, reply) = match action {
        Action::Pause => ("pausing", admin.pause(request).await),
        Action::Resume => ("resuming", admin.resume(request).await),
        Action::Approve => ("approving", admin.approve(request).await),
    };
    let reply = reply
        .map_err(|s| {
            args.hub
                .call_error(&format!("{verb} the rollout of stage `{}`", args.stage), s)
        })?
        .into_inner();
    print_action(reply, args.output)
}
