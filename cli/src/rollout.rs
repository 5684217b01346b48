//! `flotilla rollout status STAGE [--watch]`: a stage's rollout wave by wave — clusters done,
//! in progress, failed and waiting, the soak, what is unavailable and what blocks — as the hub's
//! rollout controller judges it.
//!
//! With `--watch` the hub streams the rollout as it changes until it ends or stops for an
//! operator: exit 0 when completed or superseded, 1 when rolled back, abandoned or paused by a
//! failed health gate (an operator's pause is watched on). A terminal gets a live progress bar
//! per wave, anything else one plain line per change, each starting with the time (RFC 3339,
//! UTC) (JSON: one document per line; YAML: separated by `---`).

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Args, Subcommand};
use flotilla_proto::v1::{AdminDeletionHold, AdminRolloutProgress, AdminRolloutStatusRequest};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, Table, emit, or_dash, print_structured, short, words};
use crate::time::rfc3339;

/// Arguments of `flotilla rollout`.
#[derive(Debug, Args)]
pub(crate) struct RolloutArgs {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// Show a stage's rollout: waves, clusters done / in progress / failed / waiting.
    Status(StatusArgs),
}

/// Arguments of `flotilla rollout status`.
#[derive(Debug, Args)]
struct StatusArgs {
    /// The stage.
    stage: String,
    /// A rollout id (`flotilla history STAGE` lists them); default the stage's newest.
    #[arg(long)]
    rollout: Option<u64>,
    /// Follow the rollout until it ends.
    #[arg(short, long)]
    watch: bool,
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

/// A rollout as the CLI prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RolloutView {
    id: u64,
    stage: String,
    from_revision: Option<String>,
    to_revision: String,
    status: String,
    status_reason: Option<String>,
    /// Who paused it, while paused (`controller:rollout` when its health gate failed).
    paused_by: Option<String>,
    change: String,
    by: String,
    reason: String,
    created_at: Option<String>,
    started_at: Option<String>,
    updated_at: Option<String>,
    max_unavailable: u32,
    health_timeout: String,
    failure_action: String,
    current_wave: u32,
    clusters: Counts,
    waves: Vec<WaveView>,
    unavailable: Vec<UnavailableView>,
    blocked: Option<String>,
    deletion_hold: Option<DeletionHoldView>,
    #[serde(skip)]
    now_ms: i64,
}

/// What the deletion guard held the rollout for.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeletionHoldView {
    findings: Vec<String>,
    clusters: u32,
    pruning: Vec<PruningView>,
    pruning_clusters: u32,
    removals: Vec<RemovalView>,
    no_bundles: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PruningView {
    cluster: String,
    pruned: u32,
    of: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct RemovalView {
    bundle: String,
    clusters: u32,
    named: Vec<String>,
}

impl DeletionHoldView {
    fn of(hold: AdminDeletionHold) -> Self {
        DeletionHoldView {
            findings: hold.findings,
            clusters: hold.clusters,
            pruning: hold
                .pruning
                .into_iter()
                .map(|p| PruningView {
                    cluster: p.cluster,
                    pruned: p.pruned,
                    of: p.of,
                })
                .collect(),
            pruning_clusters: hold.pruning_clusters,
            removals: hold
                .removals
                .into_iter()
                .map(|r| RemovalView {
                    bundle: r.bundle,
                    clusters: r.clusters,
                    named: r.named,
                })
                .collect(),
            no_bundles: hold.no_bundles,
        }
    }
}

/// Clusters per phase.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Counts {
    done: usize,
    in_progress: usize,
    failed: usize,
    waiting: usize,
    skipped: usize,
}

impl Counts {
    fn of<'a>(phases: impl Iterator<Item = &'a str>) -> Self {
        let mut counts = Counts::default();
        for phase in phases {
            match phase {
                "done" => counts.done += 1,
                "inProgress" => counts.in_progress += 1,
                "failed" => counts.failed += 1,
                "waiting" => counts.waiting += 1,
                _ => counts.skipped += 1,
            }
        }
        counts
    }

    fn total(&self) -> usize {
        self.done + self.in_progress + self.failed + self.waiting
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct WaveView {
    name: String,
    phase: String,
    soak: String,
    soak_until: Option<String>,
    started_at: Option<String>,
    done_at: Option<String>,
    counts: Counts,
    clusters: Vec<ClusterView>,
    #[serde(skip)]
    soak_until_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterView {
    name: String,
    phase: String,
    detail: String,
    assigned_at: Option<String>,
    deadline: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct UnavailableView {
    cluster: String,
    why: String,
}

fn some(text: String) -> Option<String> {
    Some(text).filter(|t| !t.is_empty())
}

/// `1m30s` from milliseconds.
fn duration(ms: i64) -> String {
    let std = std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    flotilla_core::spec::Duration(std).to_string()
}

impl RolloutView {
    /// The view of a progress message.
    pub(crate) fn of(p: AdminRolloutProgress) -> Self {
        let waves: Vec<WaveView> = p
            .waves
            .into_iter()
            .map(|w| WaveView {
                counts: Counts::of(w.clusters.iter().map(|c| c.phase.as_str())),
                name: w.name,
                phase: w.phase,
                soak: duration(w.soak_ms),
                soak_until: rfc3339(w.soak_until_ms),
                started_at: rfc3339(w.started_at_ms),
                done_at: rfc3339(w.done_at_ms),
                soak_until_ms: w.soak_until_ms,
                clusters: w
                    .clusters
                    .into_iter()
                    .map(|c| ClusterView {
                        name: c.name,
                        phase: c.phase,
                        detail: c.detail,
                        assigned_at: rfc3339(c.assigned_at_ms),
                        deadline: rfc3339(c.deadline_ms),
                    })
                    .collect(),
            })
            .collect();
        RolloutView {
            id: p.id,
            stage: p.stage,
            from_revision: some(p.from_revision),
            to_revision: p.to_revision,
            status: p.status,
            status_reason: some(p.status_reason),
            paused_by: some(p.paused_by),
            change: p.change,
            by: p.by,
            reason: p.reason,
            created_at: rfc3339(p.created_at_ms),
            started_at: rfc3339(p.started_at_ms),
            updated_at: rfc3339(p.updated_at_ms),
            max_unavailable: p.max_unavailable,
            health_timeout: duration(p.health_timeout_ms),
            failure_action: p.failure_action,
            current_wave: p.current_wave,
            clusters: Counts::of(
                waves
                    .iter()
                    .flat_map(|w| w.clusters.iter().map(|c| c.phase.as_str())),
            ),
            waves,
            unavailable: p
                .unavailable
                .into_iter()
                .map(|u| UnavailableView {
                    cluster: u.cluster,
                    why: u.why,
                })
                .collect(),
            blocked: some(p.blocked),
            deletion_hold: p.deletion_hold.map(DeletionHoldView::of),
            now_ms: p.now_ms,
        }
    }

    /// Whether the rollout has ended, or stopped where only an operator moves it on: paused
    /// because its health gate failed (`failureAction: pause`). A watch ends on either, so a
    /// CI job waiting on it never hangs.
    fn ended(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "rolledBack" | "superseded" | "abandoned"
        ) || self.paused_by_failure()
    }

    /// Paused by the controller because the health gate failed, not by an operator.
    fn paused_by_failure(&self) -> bool {
        self.status == "paused"
            && self
                .paused_by
                .as_deref()
                .is_some_and(|by| by.starts_with("controller:"))
    }

    /// Whether the target did not reach the stage: rolled back, abandoned, or stopped by a
    /// failed health gate.
    fn failed(&self) -> bool {
        matches!(self.status.as_str(), "rolledBack" | "abandoned") || self.paused_by_failure()
    }

    /// One line: `rollout 7 prod abc → def: running; canary done 1/1, remaining in progress 1/2`.
    pub(crate) fn line(&self) -> String {
        let waves: Vec<String> = self
            .waves
            .iter()
            .map(|w| {
                let mut text = format!(
                    "{} {} {}/{}",
                    w.name,
                    self.wave_phase(w),
                    w.counts.done,
                    w.counts.total()
                );
                if w.counts.failed > 0 {
                    text.push_str(&format!(" ({} failed)", w.counts.failed));
                }
                text
            })
            .collect();
        let mut line = format!(
            "rollout {} {} {} -> {}: {}",
            self.id,
            self.stage,
            or_dash(short(self.from_revision.as_deref().unwrap_or_default())),
            short(&self.to_revision),
            words(&self.status)
        );
        if let Some(reason) = &self.status_reason {
            line.push_str(&format!(" ({reason})"));
        }
        if !waves.is_empty() {
            line.push_str("; ");
            line.push_str(&waves.join(", "));
        }
        if let Some(blocked) = &self.blocked {
            line.push_str(&format!("; blocked: {blocked}"));
        }
        line
    }

    fn wave_phase(&self, wave: &WaveView) -> String {
        if wave.phase == "soaking" {
            let left = (wave.soak_until_ms - self.now_ms).max(0);
            format!("soaking ({} left)", duration(left - left % 1000))
        } else {
            words(&wave.phase)
        }
    }

    /// The rollout as a few lines and two tables.
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "ROLLOUT  {} of stage {}: {} -> {} ({} by {}: {})\nSTATUS   {}{}\nGATE     maxUnavailable {}, healthTimeout {}, on failure {}\n\n",
            self.id,
            self.stage,
            or_dash(short(self.from_revision.as_deref().unwrap_or_default())),
            short(&self.to_revision),
            words(&self.change),
            self.by,
            self.reason,
            words(&self.status),
            self.status_reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
            self.max_unavailable,
            self.health_timeout,
            self.failure_action,
        );
        let mut waves = Table::new(&[
            "WAVE",
            "PHASE",
            "DONE",
            "IN PROGRESS",
            "FAILED",
            "WAITING",
            "SOAK",
        ]);
        for wave in &self.waves {
            waves.row(vec![
                wave.name.clone(),
                self.wave_phase(wave),
                format!("{}/{}", wave.counts.done, wave.counts.total()),
                wave.counts.in_progress.to_string(),
                wave.counts.failed.to_string(),
                wave.counts.waiting.to_string(),
                wave.soak.clone(),
            ]);
        }
        out.push_str(&waves.render());
        let mut clusters = Table::new(&["CLUSTER", "WAVE", "PHASE", "DETAIL"]);
        for wave in &self.waves {
            for cluster in &wave.clusters {
                clusters.row(vec![
                    cluster.name.clone(),
                    wave.name.clone(),
                    words(&cluster.phase),
                    or_dash(&cluster.detail),
                ]);
            }
        }
        out.push('\n');
        out.push_str(&clusters.render());
        if !self.unavailable.is_empty() {
            let list: Vec<String> = self
                .unavailable
                .iter()
                .map(|u| format!("{} ({})", u.cluster, u.why))
                .collect();
            out.push_str(&format!("\nUNAVAILABLE  {}\n", list.join(", ")));
        }
        if let Some(blocked) = &self.blocked {
            out.push_str(&format!("BLOCKED      {blocked}\n"));
        }
        if let Some(hold) = &self.deletion_hold {
            let state = if self.status == "awaitingApproval" {
                format!(
                    "holds it until `flotilla approve {} --rollout {}`",
                    self.stage, self.id
                )
            } else {
                "held it; it was approved".to_owned()
            };
            out.push_str(&format!("\nDELETION GUARD {state}:\n"));
            for finding in &hold.findings {
                out.push_str(&format!("  {finding}\n"));
            }
        }
        out
    }
}

/// Runs `flotilla rollout ...`.
pub(crate) async fn run(args: &RolloutArgs) -> anyhow::Result<std::process::ExitCode> {
    match &args.command {
        RolloutCommand::Status(args) => status(args).await,
    }
}

async fn status(args: &StatusArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut admin = args.hub.connect().await?;
    let request = AdminRolloutStatusRequest {
        stage: args.stage.clone(),
        rollout: args.rollout.unwrap_or(0),
    };
    let what = format!("reading the rollout of stage `{}`", args.stage);
    if !args.watch {
        let progress = admin
            .rollout_status(request)
            .await
            .map_err(|s| args.hub.call_error(&what, s))?
            .into_inner();
        let view = RolloutView::of(progress);
        match args.output {
            OutputFormat::Table => emit(&view.table())?,
            format => print_structured(&view, format)?,
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let mut stream = admin
        .watch_rollout_status(request)
        .await
        .map_err(|s| args.hub.call_error(&what, s))?
        .into_inner();
    let mut display = Display::new(args.output);
    loop {
        let next = tokio::select! {
            next = stream.message() => next,
            _ = tokio::signal::ctrl_c() => return Ok(std::process::ExitCode::SUCCESS),
        };
        let Some(progress) = next.map_err(|s| args.hub.call_error(&what, s))? else {
            anyhow::bail!(
                "the hub at {} ended the watch (it may be shutting down); run the command again",
                args.hub.hub
            );
        };
        let view = RolloutView::of(progress);
        display.show(&view)?;
        if view.ended() {
            display.finish(&view)?;
            return Ok(if view.failed() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            });
        }
    }
}

/// How a watched rollout is shown: live bars on a terminal, else one line or document per
/// change.
enum Display {
    Bars(Bars),
    Plain { format: OutputFormat, first: bool },
}

impl Display {
    fn new(format: OutputFormat) -> Self {
        if format == OutputFormat::Table && std::io::stdout().is_terminal() {
            Display::Bars(Bars::new())
        } else {
            Display::Plain {
                format,
                first: true,
            }
        }
    }

    fn show(&mut self, view: &RolloutView) -> anyhow::Result<()> {
        match self {
            Display::Bars(bars) => {
                bars.show(view);
                Ok(())
            }
            Display::Plain { format, first } => {
                match format {
                    // One time format on this surface: RFC 3339, UTC, to the second.
                    OutputFormat::Table => emit(&format!(
                        "{} {}\n",
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        view.line()
                    ))?,
                    OutputFormat::Json => emit(&format!("{}\n", serde_json::to_string(view)?))?,
                    OutputFormat::Yaml => {
                        if !*first {
                            emit("---\n")?;
                        }
                        print_structured(view, OutputFormat::Yaml)?;
                    }
                    OutputFormat::Markdown => print_structured(view, OutputFormat::Markdown)?,
                }
                *first = false;
                Ok(())
            }
        }
    }

    fn finish(&mut self, view: &RolloutView) -> anyhow::Result<()> {
        if let Display::Bars(bars) = self {
            // Printed above the bars, which stay drawn below it.
            bars.multi
                .println(view.line())
                .context("writing to the terminal")?;
            bars.finish();
        }
        Ok(())
    }
}

/// One bar for the rollout's status, and one per wave counting its clusters done.
struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    waves: Vec<ProgressBar>,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.enable_steady_tick(std::time::Duration::from_millis(120));
        Bars {
            multi,
            header,
            waves: Vec::new(),
        }
    }

    fn show(&mut self, view: &RolloutView) {
        self.header.set_message(format!(
            "rollout {} of stage {}: {} -> {}  {}{}",
            view.id,
            view.stage,
            or_dash(short(view.from_revision.as_deref().unwrap_or_default())),
            short(&view.to_revision),
            words(&view.status),
            view.blocked
                .as_ref()
                .map(|b| format!("  (blocked: {b})"))
                .unwrap_or_default()
        ));
        let style = ProgressStyle::with_template("  {prefix:<14} [{bar:30}] {pos}/{len} {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        while self.waves.len() < view.waves.len() {
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_style(style.clone());
            self.waves.push(bar);
        }
        for (bar, wave) in self.waves.iter().zip(&view.waves) {
            bar.set_prefix(wave.name.clone());
            bar.set_length(wave.counts.total() as u64);
            bar.set_position(wave.counts.done as u64);
            let mut message = view.wave_phase(wave);
            if wave.counts.in_progress > 0 {
                message.push_str(&format!(", {} in progress", wave.counts.in_progress));
            }
            if wave.counts.failed > 0 {
                message.push_str(&format!(", {} failed", wave.counts.failed));
            }
            bar.set_message(message);
        }
    }

    fn finish(&self) {
        for bar in &self.waves {
            bar.finish();
        }
        self.header.finish_and_clear();
    }
}

/// What a stage action (promote, rollback, pause, resume, approve) answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActionView {
    stage: String,
    pinned_revision: Option<String>,
    message: String,
    rollout: Option<RolloutView>,
}

/// Prints a stage action's answer: the message and the rollout it concerns.
pub(crate) fn print_action(
    reply: flotilla_proto::v1::AdminStageActionReply,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let view = ActionView {
        stage: reply.stage,
        pinned_revision: some(reply.pinned_revision),
        message: reply.message,
        rollout: reply.rollout.map(RolloutView::of),
    };
    match format {
        OutputFormat::Table => {
            let mut text = format!("{}\n", view.message);
            if let Some(rollout) = &view.rollout {
                text.push_str(&format!("{}\n", rollout.line()));
                text.push_str(&format!(
                    "follow it with `flotilla rollout status {} --watch`\n",
                    view.stage
                ));
            }
            emit(&text)
        }
        format => print_structured(&view, format),
    }
}

#[cfg(test)]
mod tests;
