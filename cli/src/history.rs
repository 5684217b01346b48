//! `flotilla history STAGE`: how a stage got where it is — every pin with who, when, why and
//! the rollout that carried it — the revisions that failed or passed there, and the audit
//! events about it (promotions, approvals, pauses, resumes, failures, rollbacks).

use clap::Args;
use flotilla_proto::v1::{AdminStageHistory, AdminStageHistoryRequest};
use serde::Serialize;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, Table, emit, or_dash, print_structured, short};
use crate::time::rfc3339;

/// Arguments of `flotilla history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The stage.
    stage: String,
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryView {
    stage: String,
    source: String,
    pinned_revision: Option<String>,
    pins: Vec<PinView>,
    failed_revisions: Vec<String>,
    passed_revisions: Vec<String>,
    events: Vec<EventView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PinView {
    at: Option<String>,
    revision: String,
    change: String,
    by: String,
    reason: String,
    rollout: Option<u64>,
    rollout_status: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventView {
    at: Option<String>,
    actor: String,
    action: String,
    detail: String,
    /// `succeeded`, `denied` or `failed`.
    outcome: String,
    /// Why it was denied or failed.
    reason: String,
}

impl HistoryView {
    fn of(history: AdminStageHistory) -> Self {
        HistoryView {
            stage: history.stage,
            source: history.source,
            pinned_revision: Some(history.pinned_revision).filter(|r| !r.is_empty()),
            pins: history
                .pins
                .into_iter()
                .map(|p| PinView {
                    at: rfc3339(p.at_ms),
                    revision: p.revision,
                    change: p.change,
                    by: p.by,
                    reason: p.reason,
                    rollout: Some(p.rollout_id).filter(|id| *id != 0),
                    rollout_status: Some(p.rollout_status).filter(|s| !s.is_empty()),
                })
                .collect(),
            failed_revisions: history.failed_revisions,
            passed_revisions: history.passed_revisions,
            events: history
                .events
                .into_iter()
                .map(|e| EventView {
                    at: rfc3339(e.at_ms),
                    actor: e.actor,
                    action: e.action,
                    detail: e.detail,
                    outcome: e.outcome,
                    reason: e.reason,
                })
                .collect(),
        }
    }

    fn table(&self) -> String {
        let mut out = format!(
            "STAGE    {} ({})\nPINNED   {}\n\n",
            self.stage,
            or_dash(&self.source),
            or_dash(short(self.pinned_revision.as_deref().unwrap_or_default()))
        );
        let mut pins = Table::new(&["AT", "CHANGE", "REVISION", "BY", "ROLLOUT", "REASON"]);
        for pin in &self.pins {
            pins.row(vec![
                or_dash(pin.at.as_deref().unwrap_or_default()),
                crate::output::words(&pin.change),
                short(&pin.revision).to_owned(),
                pin.by.clone(),
                match (pin.rollout, &pin.rollout_status) {
                    (Some(id), Some(status)) => format!("{id} {}", crate::output::words(status)),
                    (Some(id), None) => id.to_string(),
                    _ => "-".to_owned(),
                },
                or_dash(&pin.reason),
            ]);
        }
        out.push_str(&pins.render());
        let list = |revisions: &[String]| {
            revisions
                .iter()
                .map(|r| short(r).to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.failed_revisions.is_empty() {
            out.push_str(&format!(
                "\nFAILED   {} (never promoted here automatically)\n",
                list(&self.failed_revisions)
            ));
        }
        if !self.passed_revisions.is_empty() {
            out.push_str(&format!("PASSED   {}\n", list(&self.passed_revisions)));
        }
        if !self.events.is_empty() {
            let mut events = Table::new(&["AT", "ACTION", "BY", "OUTCOME", "DETAIL"]);
            for event in &self.events {
                let detail = match event.reason.is_empty() {
                    true => event.detail.clone(),
                    false => event.reason.clone(),
                };
                events.row(vec![
                    or_dash(event.at.as_deref().unwrap_or_default()),
                    event.action.clone(),
                    event.actor.clone(),
                    or_dash(&event.outcome),
                    or_dash(&detail),
                ]);
            }
            out.push('\n');
            out.push_str(&events.render());
        }
        out
    }
}

/// Runs `flotilla history`.
pub(crate) async fn run(args: &HistoryArgs) -> anyhow::Result<()> {
    let mut admin = args.hub.connect().await?;
    let history = admin
        .stage_history(AdminStageHistoryRequest {
            stage: args.stage.clone(),
        })
        .await
        .map_err(|s| {
            args.hub
                .call_error(&format!("reading the history of stage `{}`", args.stage), s)
        })?
        .into_inner();
    let view = HistoryView::of(history);
    match args.output {
        OutputFormat::Table => emit(&view.table()),
        format => print_structured(&view, format),
    }
}
