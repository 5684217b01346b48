//! `flotilla audit [--since 1h] [--actor X] [--stage S] [--limit N]`: who did what, when, and
//! how it ended, newest first — refused attempts too.

use chrono::Utc;
use clap::Args;
use flotilla_proto::v1::{AdminAuditEvent, AdminListAuditRequest};
use serde::Serialize;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, Table, emit, or_dash, print_structured};
use crate::time::{parse_duration, rfc3339};

/// Arguments of `flotilla audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only events of the last DURATION, like 30m, 1h or 7d.
    #[arg(long)]
    since: Option<String>,
    /// Only events by this actor, e.g. token:ci, controller:rollout, webhook:github.
    #[arg(long)]
    actor: Option<String>,
    /// Only events about this stage.
    #[arg(long)]
    stage: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

/// An event as `-o json|yaml` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventView {
    seq: u64,
    at: Option<String>,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    reason: String,
    detail: String,
    /// 1, or more for an aggregate of refusals not recorded one by one.
    count: u64,
}

impl From<AdminAuditEvent> for EventView {
    fn from(event: AdminAuditEvent) -> Self {
        EventView {
            seq: event.seq,
            at: rfc3339(event.at_ms),
            actor: event.actor,
            action: event.action,
            target: event.target,
            outcome: event.outcome,
            reason: event.reason,
            detail: event.detail,
            count: event.count,
        }
    }
}

/// Lists audit events.
pub(crate) async fn run(args: &AuditArgs) -> anyhow::Result<()> {
    let since_ms = match &args.since {
        None => 0,
        Some(text) => {
            let window = parse_duration(text).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            Utc::now().timestamp_millis().saturating_sub(window).max(1)
        }
    };
    let mut admin = args.hub.connect().await?;
    let events: Vec<EventView> = admin
        .list_audit(AdminListAuditRequest {
            since_ms,
            actor: args.actor.clone().unwrap_or_default(),
            stage: args.stage.clone().unwrap_or_default(),
            limit: args.limit,
        })
        .await
        .map_err(|s| args.hub.call_error("listing audit events", s))?
        .into_inner()
        .events
        .into_iter()
        .map(EventView::from)
        .collect();
    match args.output {
        OutputFormat::Table => {
            let mut table = Table::new(&["TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"]);
            for event in &events {
                let detail = match (event.reason.is_empty(), event.detail.is_empty()) {
                    (true, _) => event.detail.clone(),
                    (false, true) => event.reason.clone(),
                    (false, false) => format!("{} ({})", event.reason, event.detail),
                };
                table.row(vec![
                    event.at.clone().unwrap_or_default(),
                    event.actor.clone(),
                    event.action.clone(),
                    event.target.clone(),
                    match event.count {
                        0 | 1 => event.outcome.clone(),
                        count => format!("{} ×{count}", event.outcome),
                    },
                    or_dash(&detail),
                ]);
            }
            emit(&table.render())
        }
        format => print_structured(&events, format),
    }
}
