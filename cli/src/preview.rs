//! `flotilla preview --base REF --head REF [--repo PATH] [--clusters FILE] [--charts DIR]`:
//! offline, what merging a branch would do to the fleet. Both refs of a local Git repository
//! are rendered for every cluster of the inventory, as the hub would render them; the clusters
//! whose objects change are listed, those with identical changes together, and per stage what
//! it would do with the head: whether it tracks the branch the head lands on or is promoted
//! later, whether it waits for approval, and whether the deletion guard would hold its rollout.
//!
//! Exit 0 when nothing changes, 1 when something does, 2 on an error (a ref that is not
//! there, a head that does not render): a CI job comments the Markdown (`-o markdown`) on the
//! pull request and may gate on the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use flotilla_core::diff::{BundleDiff, Change, diff_cluster};
use flotilla_core::inventory::{Cluster, load_inventory};
use flotilla_core::render::{FleetRender, ObjectKey, RenderedBundle, render_fleet};
use flotilla_core::spec::{Approval, FleetSpec, StageSource};
use flotilla_core::{Limits, Repository};
use serde::Serialize;

use crate::output::{OutputFormat, emit, print_structured, short};

/// Arguments of `flotilla preview`.
#[derive(Debug, Args)]
pub(crate) struct PreviewArgs {
    /// The ref the change starts from: the pull request's target (`origin/main`, a commit).
    #[arg(long)]
    base: String,
    /// The ref with the change: the pull request's head (`HEAD`, a branch, a commit).
    #[arg(long)]
    head: String,
    /// The Git repository (a working copy or a bare repository) holding both refs.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Inventory of clusters and their labels (default: `clusters.yaml` at the head).
    #[arg(long, value_name = "FILE")]
    clusters: Option<PathBuf>,
    /// Packaged charts (`NAME-VERSION.tgz`) for chart bundles whose chart comes from a chart
    /// repository or registry, so the preview stays offline.
    #[arg(long, value_name = "DIR")]
    charts: Option<PathBuf>,
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

/// What a preview found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Preview {
    base: Side,
    head: Side,
    /// Whether any cluster's objects change.
    changed: bool,
    /// Clusters of the inventory.
    clusters: usize,
    /// Clusters whose objects change.
    changed_clusters: usize,
    /// Clusters with identical changes, with those changes once.
    groups: Vec<Group>,
    /// Per stage of the head's pipeline, what it would do.
    stages: Vec<StagePreview>,
}

/// One side of the preview.
#[derive(Debug, Serialize)]
struct Side {
    /// The ref as given.
    r#ref: String,
    /// The commit it names.
    commit: String,
}

/// Clusters whose changes are identical.
#[derive(Debug, Serialize)]
struct Group {
    clusters: Vec<String>,
    bundles: Vec<BundleDiff>,
}

/// What a stage would do with the head.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StagePreview {
    stage: String,
    /// `track BRANCH` or `promoteFrom STAGE`.
    source: String,
    /// Clusters it selects at the head.
    clusters: usize,
    /// Of those, clusters whose objects change.
    changed_clusters: usize,
    /// What happens, in words.
    action: String,
    /// Whether its rollout waits for a person (`approval: manual`, or the deletion guard).
    awaits_approval: bool,
    /// What the deletion guard would hold the rollout for; empty when nothing.
    deletion_guard: Vec<String>,
}

/// Runs `flotilla preview`.
pub(crate) fn run(args: &PreviewArgs) -> anyhow::Result<ExitCode> {
    let preview = match preview(args) {
        Ok(preview) => preview,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let printed = match args.output {
        OutputFormat::Table => emit(&table(&preview)),
        OutputFormat::Markdown => emit(&markdown(&preview)),
        format => print_structured(&preview, format),
    };
    if let Err(error) = printed {
        eprintln!("error: {error:#}");
        return Ok(ExitCode::from(2));
    }
    Ok(if preview.changed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A ref's tree, checked out into a temporary directory.
struct Checkout {
    dir: tempfile::TempDir,
    commit: String,
}

fn checkout(repo: &git2::Repository, name: &str, flag: &str) -> anyhow::Result<Checkout> {
    let commit = repo
        .revparse_single(name)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| {
            anyhow!(
                "{flag} `{name}` names no commit of the repository: {}",
                e.message()
            )
        })?;
    let dir = tempfile::tempdir().context("a temporary directory for the checkout")?;
    let mut options = git2::build::CheckoutBuilder::new();
    options
        .target_dir(dir.path())
        .update_index(false)
        .force()
        .recreate_missing(true);
    repo.checkout_tree(commit.as_object(), Some(&mut options))
        .map_err(|e| anyhow!("checking out {flag} `{name}`: {}", e.message()))?;
    Ok(Checkout {
        dir,
        commit: commit.id().to_string(),
    })
}

/// Loads and renders one side for `clusters`; the first problems are the error.
fn render(
    side: &Checkout,
    flag: &str,
    clusters: &[Cluster],
    tools: &flotilla_core::render::Tools,
    limits: &Limits,
) -> anyhow::Result<(FleetSpec, FleetRender)> {
    let repo = Repository::load(side.dir.path(), limits.clone()).map_err(|errors| {
        let listed: Vec<String> = errors.errors.iter().map(|e| e.to_string()).collect();
        anyhow!(
            "{flag} ({}) does not load: {}",
            short(&side.commit),
            listed.join("; ")
        )
    })?;
    let rendered = render_fleet(&repo, clusters, tools);
    let failed: Vec<String> = rendered
        .errors()
        .take(5)
        .map(|(cluster, bundle, error)| format!("{cluster}/{bundle}: {error}"))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{flag} ({}) does not render: {}",
            short(&side.commit),
            failed.join("; ")
        );
    }
    Ok((repo.spec().clone(), rendered))
}

/// A cluster's bundles as rendered, by name.
type Bundles = BTreeMap<String, RenderedBundle>;

/// Per cluster, its bundles at the base and at the head.
type Holdings = BTreeMap<String, (Bundles, Bundles)>;

/// Per cluster, its bundles as rendered.
fn bundles_of(rendered: &FleetRender, cluster: &str) -> BTreeMap<String, RenderedBundle> {
    rendered
        .clusters
        .get(cluster)
        .into_iter()
        .flatten()
        .filter_map(|(bundle, outcome)| {
            let hash = outcome.as_ref().ok()?;
            Some((bundle.clone(), rendered.blobs.get(hash)?.clone()))
        })
        .collect()
}

fn preview(args: &PreviewArgs) -> anyhow::Result<Preview> {
    let repo = git2::Repository::discover(&args.repo).map_err(|e| {
        anyhow!(
            "--repo {}: not a Git repository: {}",
            args.repo.display(),
            e.message()
        )
    })?;
    let base = checkout(&repo, &args.base, "--base")?;
    let head = checkout(&repo, &args.head, "--head")?;
    // Offline on developer machines and CI runners, where namespaces may be forbidden; the
    // static checks refuse remote references either way (as `lint`).
    let limits = Limits {
        render_sandbox: flotilla_core::SandboxMode::Preferred,
        ..Limits::default()
    };
    let inventory = match &args.clusters {
        Some(file) => file.clone(),
        None => {
            let file = head.dir.path().join("clusters.yaml");
            if !file.is_file() {
                bail!("the head has no clusters.yaml: name the inventory with --clusters FILE");
            }
            file
        }
    };
    let clusters = load_inventory(&inventory, &limits).map_err(|errors| {
        let listed: Vec<String> = errors.errors.iter().map(|e| e.to_string()).collect();
        anyhow!(
            "inventory {}: {}",
            display(&inventory, &head),
            listed.join("; ")
        )
    })?;
    let tools = crate::lint::tools(args.charts.as_deref());
    let (_, before) = render(&base, "--base", &clusters, &tools, &limits)?;
    let (spec, after) = render(&head, "--head", &clusters, &tools, &limits)?;

    let mut changes: BTreeMap<String, Vec<BundleDiff>> = BTreeMap::new();
    let mut holdings: Holdings = BTreeMap::new();
    for cluster in &clusters {
        let from = bundles_of(&before, &cluster.name);
        let to = bundles_of(&after, &cluster.name);
        let diff = diff_cluster(&from, &to);
        if !diff.is_empty() {
            changes.insert(cluster.name.clone(), diff);
        }
        holdings.insert(cluster.name.clone(), (from, to));
    }
    let stages = spec
        .stages
        .iter()
        .map(|stage| {
            let members: Vec<&Cluster> = clusters
                .iter()
                .filter(|c| stage.cluster_selector.matches(&c.labels))
                .collect();
            let changed = members.iter().filter(|c| changes.contains_key(&c.name)).count();
            let guard = guard_findings(stage, &members, &holdings);
            let manual = stage.rollout.approval == Approval::Manual;
            let awaits_approval = changed > 0 && (manual || !guard.is_empty());
            let (source, when) = match &stage.source {
                StageSource::Track { branch } => (
                    format!("track {branch}"),
                    format!("rolls out when the head reaches `{branch}`"),
                ),
                StageSource::PromoteFrom { stage } => (
                    format!("promoteFrom {stage}"),
                    format!("is promoted once `{stage}` passes it (or by `flotilla promote`)"),
                ),
            };
            let action = match (changed, awaits_approval) {
                (0, _) => "nothing changes".to_owned(),
                (n, false) => format!("{when}: {n} of {} clusters change", members.len()),
                (n, true) => format!(
                    "{when}, then waits for approval (`flotilla approve {}`): {n} of {} clusters change",
                    stage.name,
                    members.len()
                ),
            };
            StagePreview {
                stage: stage.name.clone(),
                source,
                clusters: members.len(),
                changed_clusters: changed,
                action,
                awaits_approval,
                deletion_guard: guard,
            }
        })
        .collect();
    Ok(Preview {
        base: Side {
            r#ref: args.base.clone(),
            commit: base.commit.clone(),
        },
        head: Side {
            r#ref: args.head.clone(),
            commit: head.commit.clone(),
        },
        changed: !changes.is_empty(),
        clusters: clusters.len(),
        changed_clusters: changes.len(),
        groups: crate::output::group_alike(&changes)
            .into_iter()
            .map(|(clusters, bundles)| Group { clusters, bundles })
            .collect(),
        stages,
    })
}

fn display(path: &Path, head: &Checkout) -> String {
    match path.strip_prefix(head.dir.path()) {
        Ok(inside) => inside.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// The objects' identities as the deletion guard counts them (a new API version of the same
/// object is not a deletion).
fn identities(bundles: &Bundles) -> BTreeSet<ObjectKey> {
    bundles
        .values()
        .flat_map(|b| &b.objects)
        .map(|o| o.id.key())
        .collect()
}

/// What the stage's deletion guard would hold a rollout of the head for, judged as the hub
/// judges it when the rollout starts (`state::rollout::guard`), the base standing for the
/// stage's pin: objects one cluster would lose, clusters one bundle would leave, every cluster
/// left with no bundle.
fn guard_findings(
    stage: &flotilla_core::spec::Stage,
    members: &[&Cluster],
    holdings: &Holdings,
) -> Vec<String> {
    let guard = &stage.rollout.deletion_guard;
    if !guard.enabled || members.is_empty() {
        return Vec::new();
    }
    let mut findings = Vec::new();
    let (mut before, mut after) = (false, false);
    let mut removed: BTreeMap<&String, Vec<&str>> = BTreeMap::new();
    let mut pruning = Vec::new();
    for cluster in members {
        let Some((from, to)) = holdings.get(&cluster.name) else {
            continue;
        };
        before |= !from.is_empty();
        after |= !to.is_empty();
        for bundle in from.keys().filter(|b| !to.contains_key(*b)) {
            removed.entry(bundle).or_default().push(&cluster.name);
        }
        let held = identities(from);
        let kept = identities(to);
        let pruned = held.difference(&kept).count() as u64;
        if pruned > 0
            && guard
                .max_pruned_objects
                .exceeded_by(pruned, held.len() as u64)
        {
            pruning.push(format!("{} {pruned} of {}", cluster.name, held.len()));
        }
    }
    if !guard.allow_no_bundles && before && !after {
        findings.push(format!(
            "would leave all {} clusters of the stage with no bundle at all",
            members.len()
        ));
    }
    if !pruning.is_empty() {
        findings.push(format!(
            "would prune more than {} of the objects of {}",
            guard.max_pruned_objects,
            pruning.join(", ")
        ));
    }
    let allowed = guard.max_bundle_removals.allowance(members.len() as u64);
    for (bundle, from) in removed {
        if from.len() as u64 > allowed {
            findings.push(format!(
                "would remove bundle `{bundle}` from {} of {} clusters (more than {allowed}): {}",
                from.len(),
                members.len(),
                from.join(", ")
            ));
        }
    }
    findings
}

fn mark(change: Change) -> &'static str {
    match change {
        Change::Added => "+",
        Change::Removed => "-",
        Change::Changed => "~",
    }
}

/// The changes of a group as lines (`~ bundle web (changed)` …), each with `indent`.
fn change_lines(bundles: &[BundleDiff]) -> Vec<String> {
    let mut lines = Vec::new();
    for bundle in bundles {
        lines.push(format!(
            "{} bundle {} ({})",
            mark(bundle.change),
            bundle.bundle,
            bundle.change.as_str()
        ));
        for object in &bundle.objects {
            lines.push(format!("  {} {}", mark(object.change), object.object));
            for field in &object.fields {
                let value = |v: &Option<serde_json::Value>| {
                    v.as_ref().map_or("(none)".to_owned(), |v| v.to_string())
                };
                let text = match field.change {
                    Change::Added => format!("{}: {}", field.path, value(&field.to)),
                    Change::Removed => format!("{}: {}", field.path, value(&field.from)),
                    Change::Changed => {
                        format!(
                            "{}: {} → {}",
                            field.path,
                            value(&field.from),
                            value(&field.to)
                        )
                    }
                };
                lines.push(format!("      {} {text}", mark(field.change)));
            }
        }
    }
    lines
}

fn heading(preview: &Preview) -> String {
    format!(
        "{} ({}) → {} ({}): {} of {} clusters change",
        preview.base.r#ref,
        short(&preview.base.commit),
        preview.head.r#ref,
        short(&preview.head.commit),
        preview.changed_clusters,
        preview.clusters
    )
}

fn clusters_line(group: &Group) -> String {
    match group.clusters.len() {
        1 => format!("cluster {}", group.clusters[0]),
        n => format!("clusters {} ({n})", group.clusters.join(", ")),
    }
}

fn table(preview: &Preview) -> String {
    let mut out = format!("{}\n", heading(preview));
    for group in &preview.groups {
        out.push_str(&format!("\n{}\n", clusters_line(group)));
        for line in change_lines(&group.bundles) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str("\nSTAGES\n");
    for stage in &preview.stages {
        out.push_str(&format!(
            "  {} ({}): {}\n",
            stage.stage, stage.source, stage.action
        ));
        for finding in &stage.deletion_guard {
            out.push_str(&format!("    deletion guard holds it: {finding}\n"));
        }
    }
    out
}

/// For a pull request's comment: a summary, the stages, and each group's changes folded.
fn markdown(preview: &Preview) -> String {
    let mut out = format!("### Flotilla preview\n\n{}\n\n", heading(preview));
    out.push_str("| stage | source | clusters changing | what happens |\n|---|---|---|---|\n");
    for stage in &preview.stages {
        let mut action = stage.action.replace('|', "\\|");
        for finding in &stage.deletion_guard {
            action.push_str(&format!(
                "<br>**deletion guard holds it:** {}",
                finding.replace('|', "\\|")
            ));
        }
        out.push_str(&format!(
            "| {} | {} | {} of {} | {} |\n",
            stage.stage, stage.source, stage.changed_clusters, stage.clusters, action
        ));
    }
    for group in &preview.groups {
        out.push_str(&format!(
            "\n<details><summary>{}</summary>\n\n```diff\n",
            clusters_line(group)
        ));
        for line in change_lines(&group.bundles) {
            out.push_str(&line.replace("```", "ʼʼʼ"));
            out.push('\n');
        }
        out.push_str("```\n</details>\n");
    }
    if preview.groups.is_empty() {
        out.push_str("\nNo cluster's objects change.\n");
    }
    out
}
