//! `flotilla status [--watch]`: the fleet by stage, then one row per cluster — its desired and
//! applied revision, sync state, health and drift over its bundles (`cluster get` shows each),
//! with liveness — the latest revision and its error, and the bundles counted by sync state and
//! health per stage and for the fleet.
//!
//! With `--watch` the hub streams a new status whenever it changes: a terminal is redrawn,
//! anything else gets one document after another (JSON: one per line; YAML and tables:
//! separated by `---`).

use std::collections::BTreeMap;
use std::io::IsTerminal;

use clap::Args;
use flotilla_proto::v1::{AdminFleetStatus, AdminFleetStatusRequest};
use serde::Serialize;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, Table, emit, or_dash, print_structured, short};
use crate::revisions::{ErrorView, RevisionView, SourceView};
use crate::time::{ago, rfc3339};

/// Arguments of `flotilla status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
    /// Keep printing the status as it changes, until interrupted.
    #[arg(short, long)]
    watch: bool,
    /// Only clusters of this stage (`-`: clusters no stage selects).
    #[arg(long)]
    stage: Option<String>,
    /// Only this cluster, or with a trailing `*` those whose name starts with the rest.
    #[arg(long)]
    cluster: Option<String>,
    /// Only clusters with these labels: `key=value,key=value`.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Only clusters that need attention: agent offline, API unreachable, not rendered, an
    /// identity conflict, or a bundle not Synced and Healthy.
    #[arg(long)]
    problems: bool,
    /// At most this many clusters (default: 50 in a table, every one in JSON and YAML; 0: all).
    #[arg(long)]
    limit: Option<u32>,
    /// Skip this many matching clusters (in name order): the next page.
    #[arg(long, default_value_t = 0)]
    offset: u32,
}

/// Clusters a table shows unless `--limit` says otherwise.
const TABLE_LIMIT: u32 = 50;

impl StatusArgs {
    /// The request for the clusters these arguments select.
    fn request(&self) -> anyhow::Result<AdminFleetStatusRequest> {
        let mut labels = std::collections::HashMap::new();
        for pair in self.selector.iter().flat_map(|s| s.split(',')) {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let Some((key, value)) = pair.split_once('=') else {
                anyhow::bail!("-l {pair}: write labels as key=value, separated by commas");
            };
            labels.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        let limit = match (self.limit, self.output) {
            (Some(limit), _) => limit,
            (None, OutputFormat::Table) => TABLE_LIMIT,
            (None, _) => 0,
        };
        Ok(AdminFleetStatusRequest {
            stage: self.stage.clone().unwrap_or_default(),
            cluster: self.cluster.clone().unwrap_or_default(),
            labels,
            problems: self.problems,
            offset: self.offset,
            limit,
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    node: u64,
    leader: u64,
    applied_index: u64,
    source: Option<SourceView>,
    latest_revision: Option<RevisionView>,
    stages: Vec<StageView>,
    clusters: Vec<ClusterView>,
    /// Bundles on every cluster, counted by sync state and by health.
    counts: CountsView,
    rollouts: Vec<RolloutView>,
    events: Vec<EventView>,
    /// Which clusters `clusters` holds, when filters or a limit chose them.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_page: Option<PageView>,
}

/// Which clusters a status lists.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PageView {
    /// Registered clusters (that the token may view).
    total: u32,
    /// Clusters the filters matched.
    matched: u32,
    /// Matching clusters skipped before those listed.
    offset: u32,
    /// Where the next page starts (`--offset`); none on the last.
    next_offset: Option<u32>,
}

/// Bundles (one per cluster and bundle) counted by sync state and by health.
#[derive(Debug, Default, Serialize)]
struct CountsView {
    sync: BTreeMap<String, u32>,
    health: BTreeMap<String, u32>,
}

impl CountsView {
    fn of(counts: Option<flotilla_proto::v1::AdminCounts>) -> Self {
        let counts = counts.unwrap_or_default();
        CountsView {
            sync: counts.sync.into_iter().collect(),
            health: counts.health.into_iter().collect(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StageView {
    name: String,
    source: String,
    pinned_revision: Option<String>,
    clusters: Vec<String>,
    /// Why the next revision cannot enter it (an unsigned or wrongly signed commit).
    blocked: Option<String>,
    /// Bundles on its clusters, counted by sync state and by health.
    counts: CountsView,
    /// Idle, Rolling, AwaitingApproval, Paused, PausedByFailure, RolledBack or Blocked.
    phase: String,
    phase_reason: Option<String>,
    /// Its active rollout, else its newest.
    rollout: Option<u64>,
    /// A newer revision it would take but has not started.
    waiting_revision: Option<String>,
    /// What to run to move it on.
    next: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterView {
    name: String,
    stage: Option<String>,
    labels: BTreeMap<String, String>,
    online: bool,
    /// Whether its agent reaches the cluster's API server; none before the agent said.
    api_reachable: Option<bool>,
    /// Since when it does or does not (RFC 3339).
    api_since: Option<String>,
    /// While unreachable: why.
    api_error: Option<String>,
    /// The Kubernetes version its agent read; none before it said.
    kube_version: Option<String>,
    last_seen: Option<String>,
    assigned_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    render_error: Option<ErrorView>,
    bundles: Vec<BundleView>,
    /// The kube-system UID bound to the name; none before its first agent said hello.
    kube_system_uid: Option<String>,
    /// Agents of another Kubernetes cluster refused for the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_conflict: Option<IdentityConflictView>,
    #[serde(skip)]
    last_seen_ms: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IdentityConflictView {
    kube_system_uid: String,
    first_at: Option<String>,
    last_at: Option<String>,
    message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BundleView {
    name: String,
    desired_revision: Option<String>,
    applied_revision: Option<String>,
    /// Synced, Applying, OutOfSync, ApplyFailed or Unknown.
    sync_state: String,
    health: String,
    drifted: Vec<String>,
    /// Fields other managers added (reported, never corrected), one line per object.
    added: Vec<String>,
    message: String,
    desired_hash: Option<String>,
    applied_hash: Option<String>,
    updated_at: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RolloutView {
    id: u64,
    stage: String,
    from_revision: Option<String>,
    to_revision: String,
    status: String,
    waves_started: u32,
    waves: u32,
    /// Why the deletion guard held it for an approval, if it did.
    deletion_hold: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventView {
    at: Option<String>,
    kind: String,
    subject: String,
    message: String,
}

fn some(text: String) -> Option<String> {
    Some(text).filter(|t| !t.is_empty())
}

impl StatusView {
    fn of(status: AdminFleetStatus) -> Self {
        StatusView {
            node: status.node,
            leader: status.leader,
            applied_index: status.applied_index,
            source: status.source.map(SourceView::of),
            latest_revision: status.latest_revision.map(RevisionView::of),
            stages: status
                .stages
                .into_iter()
                .map(|s| StageView {
                    name: s.name,
                    source: s.source,
                    pinned_revision: some(s.pinned_revision),
                    clusters: s.clusters,
                    blocked: some(s.blocked),
                    counts: CountsView::of(s.counts),
                    phase: s.phase,
                    phase_reason: some(s.phase_reason),
                    rollout: Some(s.rollout).filter(|id| *id != 0),
                    waiting_revision: some(s.waiting_revision),
                    next: some(s.next),
                })
                .collect(),
            clusters: status
                .clusters
                .into_iter()
                .map(|c| ClusterView {
                    name: c.name,
                    stage: some(c.stage),
                    labels: c.labels.into_iter().collect(),
                    online: c.online,
                    api_reachable: match c.api.as_str() {
                        "reachable" => Some(true),
                        "unreachable" => Some(false),
                        _ => None,
                    },
                    api_since: rfc3339(c.api_since_ms),
                    api_error: some(c.api_error),
                    kube_version: some(c.kube_version),
                    last_seen: rfc3339(c.last_seen_ms),
                    assigned_revision: some(c.assigned_revision),
                    render_error: c.render_error.map(ErrorView::of),
                    bundles: c
                        .bundles
                        .into_iter()
                        .map(|b| BundleView {
                            name: b.name,
                            desired_revision: some(b.desired_revision),
                            applied_revision: some(b.applied_revision),
                            sync_state: b.sync_state,
                            health: b.health,
                            drifted: b.drifted,
                            added: b.added,
                            message: b.message,
                            desired_hash: some(b.desired_hash),
                            applied_hash: some(b.applied_hash),
                            updated_at: rfc3339(b.updated_at_ms),
                        })
                        .collect(),
                    kube_system_uid: some(c.kube_system_uid),
                    identity_conflict: c.identity_conflict.map(|conflict| IdentityConflictView {
                        kube_system_uid: conflict.kube_system_uid,
                        first_at: rfc3339(conflict.first_at_ms),
                        last_at: rfc3339(conflict.last_at_ms),
                        message: conflict.message,
                    }),
                    last_seen_ms: c.last_seen_ms,
                })
                .collect(),
            counts: CountsView::of(status.counts),
            cluster_page: status.cluster_page.map(|page| PageView {
                total: page.total,
                matched: page.matched,
                offset: page.offset,
                next_offset: page.next_offset,
            }),
            rollouts: status
                .rollouts
                .into_iter()
                .map(|r| RolloutView {
                    id: r.id,
                    stage: r.stage,
                    from_revision: some(r.from_revision),
                    to_revision: r.to_revision,
                    status: r.status,
                    waves_started: r.waves_started,
                    waves: r.waves,
                    deletion_hold: some(r.deletion_hold),
                })
                .collect(),
            events: status
                .events
                .into_iter()
                .map(|e| EventView {
                    at: rfc3339(e.at_ms),
                    kind: e.kind,
                    subject: e.subject,
                    message: e.message,
                })
                .collect(),
        }
    }
}

/// Prints the fleet status, once or as it changes.
pub(crate) async fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let request = args.request()?;
    let mut admin = args.hub.connect().await?;
    if !args.watch {
        let status = admin
            .fleet_status(request)
            .await
            .map_err(|s| args.hub.call_error("reading the fleet status", s))?
            .into_inner();
        return print(&StatusView::of(status), args.output);
    }
    let mut stream = admin
        .watch_fleet_status(request)
        .await
        .map_err(|s| args.hub.call_error("watching the fleet status", s))?
        .into_inner();
    let terminal = std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        let next = tokio::select! {
            next = stream.message() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(status) = next.map_err(|s| args.hub.call_error("watching the fleet status", s))?
        else {
            anyhow::bail!(
                "the hub at {} ended the watch (it may be shutting down); run the command again",
                args.hub.hub
            );
        };
        let view = StatusView::of(status);
        match args.output {
            OutputFormat::Json => emit(&format!("{}\n", serde_json::to_string(&view)?))?,
            OutputFormat::Table if terminal => emit(&format!("\x1b[2J\x1b[H{}", table(&view)))?,
            format => {
                if !first {
                    emit("---\n")?;
                }
                print(&view, format)?;
            }
        }
        first = false;
    }
}

fn print(view: &StatusView, format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => emit(&table(view)),
        format => print_structured(view, format),
    }
}

/// What a table that lists only some clusters says about the rest: how many, where the next
/// page starts, and how many bundles of the whole fleet are not Synced and Healthy.
fn page_note(page: &PageView, view: &StatusView) -> Option<String> {
    let shown = view.clusters.len() as u32;
    if page.offset == 0 && shown == page.total {
        return None;
    }
    let mut note = format!(
        "\nclusters {}–{} of {} matching ({} registered)",
        page.offset + 1,
        page.offset + shown,
        page.matched,
        page.total
    );
    if let Some(next) = page.next_offset {
        note.push_str(&format!("; next page: --offset {next}"));
    }
    note.push('\n');
    let unsynced: u32 = view
        .counts
        .sync
        .iter()
        .filter(|(state, _)| state.as_str() != "Synced")
        .map(|(_, n)| *n)
        .sum();
    let unhealthy: u32 = view
        .counts
        .health
        .iter()
        .filter(|(health, _)| !matches!(health.as_str(), "Healthy" | "Suspended"))
        .map(|(_, n)| *n)
        .sum();
    if unsynced + unhealthy > 0 {
        note.push_str(&format!(
            "fleet-wide: {unsynced} bundles not Synced, {unhealthy} not Healthy — \
             `flotilla status --problems` lists their clusters\n"
        ));
    }
    Some(note)
}

/// The objects of a bundle someone changed or added fields to, each once.
/// What `value` says of a cluster's bundles: the one value when they agree, else each value
/// with how many bundles have it (`Synced 2, ApplyFailed 1`); `-` without bundles.
fn summarize(bundles: &[BundleView], value: impl Fn(&BundleView) -> String) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for bundle in bundles {
        let v = value(bundle);
        match counts.iter_mut().find(|(seen, _)| *seen == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    match counts.as_slice() {
        [] => "-".to_owned(),
        [(one, _)] => one.clone(),
        many => many
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn changed_objects(bundle: &BundleView) -> Vec<String> {
    let mut objects = bundle.drifted.clone();
    for line in &bundle.added {
        let object = line.split_once(": ").map_or(line.as_str(), |(o, _)| o);
        if !objects.iter().any(|known| known == object) {
            objects.push(object.to_owned());
        }
    }
    objects
}

fn table(view: &StatusView) -> String {
    let now = chrono::Utc::now();
    let mut out = String::new();
    match &view.source {
        Some(source) => out.push_str(&format!("SOURCE   {}\n", source.describe())),
        None => {
            out.push_str("SOURCE   none: the hub follows no repository (flotilla-hub --repo URL)\n")
        }
    }
    match &view.latest_revision {
        None => out.push_str("LATEST   no revision fetched yet\n"),
        Some(latest) => match &latest.error {
            Some(error) => out.push_str(&format!(
                "LATEST   {} FAILED  {}\n         nothing from it reaches any cluster; every stage stays on its last good revision\n",
                short(&latest.commit),
                error.describe()
            )),
            None => out.push_str(&format!("LATEST   {} {}\n", short(&latest.commit), latest.status)),
        },
    }
    out.push('\n');
    if !view.stages.is_empty() {
        let mut stages = Table::new(&[
            "STAGE", "CLUSTERS", "PINNED", "PHASE", "SYNC", "WAITING", "NEXT",
        ]);
        for stage in &view.stages {
            let phase = match &stage.phase_reason {
                Some(reason) => format!("{} ({reason})", stage.phase),
                None => stage.phase.clone(),
            };
            let sync = stage
                .counts
                .sync
                .iter()
                .map(|(state, n)| format!("{state} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            stages.row(vec![
                stage.name.clone(),
                stage.clusters.len().to_string(),
                or_dash(short(stage.pinned_revision.as_deref().unwrap_or_default())),
                phase,
                or_dash(&sync),
                or_dash(short(stage.waiting_revision.as_deref().unwrap_or_default())),
                or_dash(stage.next.as_deref().unwrap_or_default()),
            ]);
        }
        out.push_str(&stages.render());
        out.push('\n');
    }
    if let Some(page) = &view.cluster_page
        && page.total > 0
        && view.clusters.is_empty()
    {
        if page.matched > 0 {
            out.push_str(&format!(
                "--offset {} is past the {} matching clusters.\n",
                page.offset, page.matched
            ));
        } else {
            out.push_str(&format!(
                "No cluster of the {} registered matches.\n",
                page.total
            ));
        }
        return out;
    }
    if view.clusters.is_empty() {
        out.push_str(
            "No clusters registered. Add one with `flotilla cluster add NAME --labels k=v`.\n",
        );
        return out;
    }
    // One row per cluster (`flotilla cluster get NAME` shows its bundles and objects one by
    // one); a column whose bundles disagree counts them.
    let mut table = Table::new(&[
        "STAGE",
        "CLUSTER",
        "AGENT",
        "API",
        "LAST SEEN",
        "DESIRED",
        "APPLIED",
        "BUNDLES",
        "SYNC",
        "HEALTH",
        "DRIFT",
    ]);
    let mut ordered: Vec<&ClusterView> = Vec::new();
    for stage in &view.stages {
        ordered.extend(
            view.clusters
                .iter()
                .filter(|c| c.stage.as_deref() == Some(stage.name.as_str())),
        );
    }
    ordered.extend(view.clusters.iter().filter(|c| c.stage.is_none()));
    for cluster in ordered {
        let drift: Vec<String> = cluster
            .bundles
            .iter()
            .flat_map(|b| {
                changed_objects(b)
                    .into_iter()
                    .map(move |o| format!("{}:{o}", b.name))
            })
            .collect();
        table.row(vec![
            or_dash(cluster.stage.as_deref().unwrap_or_default()),
            cluster.name.clone(),
            if cluster.online { "online" } else { "offline" }.to_owned(),
            match cluster.api_reachable {
                Some(true) => "ok",
                Some(false) => "UNREACHABLE",
                None => "-",
            }
            .to_owned(),
            ago(cluster.last_seen_ms, now),
            summarize(&cluster.bundles, |b| {
                short(b.desired_revision.as_deref().unwrap_or("-")).to_owned()
            }),
            summarize(&cluster.bundles, |b| {
                short(b.applied_revision.as_deref().unwrap_or("-")).to_owned()
            }),
            cluster.bundles.len().to_string(),
            summarize(&cluster.bundles, |b| b.sync_state.clone()),
            summarize(&cluster.bundles, |b| b.health.clone()),
            or_dash(&drift.join(",")),
        ]);
    }
    out.push_str(&table.render());
    if let Some(note) = view
        .cluster_page
        .as_ref()
        .and_then(|page| page_note(page, view))
    {
        out.push_str(&note);
    }
    let failing: Vec<String> = view
        .clusters
        .iter()
        .flat_map(|c| c.bundles.iter().map(move |b| (c, b)))
        .filter(|(_, b)| matches!(b.sync_state.as_str(), "ApplyFailed" | "OutOfSync"))
        .map(|(c, b)| {
            let why = match b.sync_state.as_str() {
                "OutOfSync" if b.added.is_empty() => {
                    format!("changed in the cluster: {}", b.drifted.join(", "))
                }
                "OutOfSync" if b.drifted.is_empty() => {
                    format!("added in the cluster: {}", b.added.join(" | "))
                }
                "OutOfSync" => format!(
                    "changed in the cluster: {}; added in the cluster: {}",
                    b.drifted.join(", "),
                    b.added.join(" | ")
                ),
                _ => b.message.clone(),
            };
            format!("  {}/{} {}: {why}", c.name, b.name, b.sync_state)
        })
        .collect();
    if !failing.is_empty() {
        out.push_str(&format!(
            "\nNOT IN SYNC (the hub's objects are not what the cluster holds)\n{}\n",
            failing.join("\n")
        ));
    }
    let unreachable: Vec<String> = view
        .clusters
        .iter()
        .filter(|c| c.api_reachable == Some(false))
        .map(|c| {
            format!(
                "  {}: since {}: {}",
                c.name,
                c.api_since.as_deref().unwrap_or("-"),
                c.api_error.as_deref().unwrap_or("-")
            )
        })
        .collect();
    if !unreachable.is_empty() {
        out.push_str(&format!(
            "\nCLUSTER API UNREACHABLE (its agent is connected but cannot reach the API server)\n{}\n",
            unreachable.join("\n")
        ));
    }
    let errors: Vec<String> = view
        .clusters
        .iter()
        .filter_map(|c| {
            c.render_error
                .as_ref()
                .map(|e| format!("  {}: {}", c.name, e.describe()))
        })
        .collect();
    if !errors.is_empty() {
        out.push_str(&format!("\nNOT RENDERED FOR\n{}\n", errors.join("\n")));
    }
    let conflicts: Vec<String> = view
        .clusters
        .iter()
        .filter_map(|c| {
            let conflict = c.identity_conflict.as_ref()?;
            Some(format!(
                "  {}: {} (last {})",
                c.name,
                conflict.message,
                conflict.last_at.as_deref().unwrap_or("-")
            ))
        })
        .collect();
    if !conflicts.is_empty() {
        out.push_str(&format!(
            "\nIDENTITY CONFLICT (agents of another cluster refused)\n{}\n",
            conflicts.join("\n")
        ));
    }
    let blocked: Vec<String> = view
        .stages
        .iter()
        .filter_map(|s| s.blocked.as_ref().map(|why| format!("  {}: {why}", s.name)))
        .collect();
    if !blocked.is_empty() {
        out.push_str(&format!("\nBLOCKED (signature)\n{}\n", blocked.join("\n")));
    }
    let held: Vec<String> = view
        .rollouts
        .iter()
        .filter(|r| r.status == "awaitingApproval")
        .filter_map(|r| {
            let why = r.deletion_hold.as_ref()?;
            Some(format!(
                "  {}: rollout {} to {}: {why}; `flotilla approve {} --rollout {}` releases it",
                r.stage,
                r.id,
                short(&r.to_revision),
                r.stage,
                r.id
            ))
        })
        .collect();
    if !held.is_empty() {
        out.push_str(&format!(
            "\nHELD BY THE DELETION GUARD\n{}\n",
            held.join("\n")
        ));
    }
    if !view.rollouts.is_empty() {
        let mut rollouts = Table::new(&["ROLLOUT", "STAGE", "FROM", "TO", "STATUS", "WAVES"]);
        for r in &view.rollouts {
            rollouts.row(vec![
                r.id.to_string(),
                r.stage.clone(),
                or_dash(short(r.from_revision.as_deref().unwrap_or_default())),
                short(&r.to_revision).to_owned(),
                crate::output::words(&r.status),
                format!("{}/{}", r.waves_started, r.waves),
            ]);
        }
        out.push('\n');
        out.push_str(&rollouts.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use flotilla_proto::v1::{AdminClusterStatus, AdminFleetStatus, AdminIdentityConflict};

    use super::{StatusView, table};

    fn fleet_with_conflict() -> AdminFleetStatus {
        AdminFleetStatus {
            clusters: vec![AdminClusterStatus {
                name: "dev-1".into(),
                kube_system_uid: "uid-a".into(),
                identity_conflict: Some(AdminIdentityConflict {
                    kube_system_uid: "uid-b".into(),
                    first_at_ms: 1_700_000_000_000,
                    last_at_ms: 1_700_000_060_000,
                    message: "run `flotilla cluster reset-identity dev-1` if it was rebuilt".into(),
                }),
                ..AdminClusterStatus::default()
            }],
            ..AdminFleetStatus::default()
        }
    }

    #[test]
    fn an_identity_conflict_is_in_the_json_and_the_table() {
        let view = StatusView::of(fleet_with_conflict());
        let json = serde_json::to_value(&view).expect("json");
        let cluster = &json["clusters"][0];
        assert_eq!(cluster["kubeSystemUid"], "uid-a");
        assert_eq!(cluster["identityConflict"]["kubeSystemUid"], "uid-b");
        assert!(
            cluster["identityConflict"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("reset-identity dev-1")),
            "{json}"
        );
        let shown = table(&view);
        assert!(shown.contains("IDENTITY CONFLICT"), "{shown}");
        assert!(
            shown.contains("dev-1: run `flotilla cluster reset-identity dev-1`"),
            "{shown}"
        );
    }

    #[test]
    fn a_cluster_without_a_conflict_shows_none() {
        let mut fleet = fleet_with_conflict();
        fleet.clusters[0].identity_conflict = None;
        let view = StatusView::of(fleet);
        let json = serde_json::to_value(&view).expect("json");
        assert!(
            json["clusters"][0].get("identityConflict").is_none(),
            "{json}"
        );
        assert!(!table(&view).contains("IDENTITY CONFLICT"));
    }
}
