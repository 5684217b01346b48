use std::collections::BTreeMap;

use super::*;
use crate::state::source::Blob;
use crate::state::{Labels, RenderOutcome};

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: dev
bundles:
  - name: app
    path: app
";

fn labels(env: &str) -> Labels {
    [("env".to_owned(), env.to_owned())].into_iter().collect()
}

fn apply(state: &mut State, command: Command) {
    let kind = command.kind();
    state
        .apply(&command)
        .unwrap_or_else(|e| panic!("{kind} rejected: {e}"));
}

fn source() -> SourceConfig {
    SourceConfig::new("file:///repo", "main")
}

fn rev(commit: &str) -> RevisionRef {
    RevisionRef {
        source: "origin".into(),
        commit: commit.into(),
    }
}

/// Fetches `commit` and renders it for `clusters` with `spec`, or fails it.
fn fetch_and_render(state: &mut State, commit: &str, clusters: &[&str], spec: Option<&str>) {
    apply(
        state,
        Command::RecordFetch {
            source: "origin".into(),
            url: "file:///repo".into(),
            commit: commit.into(),
            at: Timestamp(1),
        },
    );
    let outcome = match spec {
        None => RenderOutcome::Failed {
            error: crate::state::source::RenderError {
                file: "app/x.yaml".into(),
                line: Some(1),
                message: "broken".into(),
            },
        },
        Some(spec) => {
            let mut bundles = BTreeMap::new();
            let mut blobs = Vec::new();
            for cluster in clusters {
                let blob = Blob::from_content(format!("{commit} {cluster}").as_bytes())
                    .expect("compressible");
                bundles.insert(
                    (*cluster).to_owned(),
                    BTreeMap::from([("app".to_owned(), blob.hash)]),
                );
                blobs.push(blob);
            }
            RenderOutcome::Rendered {
                bundles,
                blobs,
                spec: spec.to_owned(),
            }
        }
    };
    apply(
        state,
        Command::RecordRender {
            revision: rev(commit),
            outcome,
            at: Timestamp(2),
        },
    );
}

fn fleet() -> State {
    let mut state = State::bootstrap(BTreeMap::from([(1, "127.0.0.1:1".to_owned())]));
    for (name, env) in [("dev-1", "dev"), ("prod-1", "prod")] {
        apply(
            &mut state,
            Command::RegisterCluster {
                name: name.into(),
                labels: labels(env),
                at: Timestamp(0),
            },
        );
    }
    state
}

/// Plans and applies until nothing is left to do; returns every command applied.
fn settle(state: &mut State) -> Vec<Command> {
    let mut all = Vec::new();
    for _ in 0..5 {
        let commands = plan(state, &source(), &mut HashMap::new(), Timestamp(3));
        if commands.is_empty() {
            return all;
        }
        for command in commands {
            apply(state, command.clone());
            all.push(command);
        }
    }
    panic!("the plan does not settle: {all:?}");
}

fn assigned(state: &State, cluster: &str) -> Option<String> {
    state.clusters[cluster]
        .assigned
        .as_ref()
        .map(|r| r.commit.clone())
}

#[test]
fn the_first_good_revision_pins_every_stage_and_assigns_every_cluster() {
    let mut state = fleet();
    fetch_and_render(&mut state, "c1", &["dev-1", "prod-1"], Some(SPEC));
    settle(&mut state);
    for stage in ["dev", "prod"] {
        assert_eq!(state.stages[stage].pinned, Some(rev("c1")), "{stage}");
    }
    assert_eq!(assigned(&state, "dev-1").as_deref(), Some("c1"));
    assert_eq!(assigned(&state, "prod-1").as_deref(), Some("c1"));
}

#[test]
fn later_revisions_move_tracking_stages_only() {
    let mut state = fleet();
    fetch_and_render(&mut state, "c1", &["dev-1", "prod-1"], Some(SPEC));
    settle(&mut state);
    fetch_and_render(&mut state, "c2", &["dev-1", "prod-1"], Some(SPEC));
    let applied = settle(&mut state);
    assert_eq!(state.stages["dev"].pinned, Some(rev("c2")));
    assert_eq!(state.stages["prod"].pinned, Some(rev("c1")));
    assert_eq!(assigned(&state, "dev-1").as_deref(), Some("c2"));
    assert_eq!(assigned(&state, "prod-1").as_deref(), Some("c1"));
    let pins = applied
        .iter()
        .filter(|c| matches!(c, Command::PinStage { .. }))
        .count();
    assert_eq!(pins, 1, "{applied:?}");
}

#[test]
fn a_failed_head_changes_no_pin_and_no_assignment() {
    let mut state = fleet();
    fetch_and_render(&mut state, "c1", &["dev-1", "prod-1"], Some(SPEC));
    settle(&mut state);
    fetch_and_render(&mut state, "bad", &[], None);
    assert!(settle(&mut state).is_empty());
    assert_eq!(state.stages["dev"].pinned, Some(rev("c1")));
    assert_eq!(assigned(&state, "dev-1").as_deref(), Some("c1"));
}

#[test]
fn nothing_is_pinned_before_a_revision_renders() {
    let mut state = fleet();
    fetch_and_render(&mut state, "bad", &[], None);
    assert!(settle(&mut state).is_empty());
    assert!(state.stages.is_empty());
}

#[test]
fn a_stage_tracking_another_branch_is_not_moved() {
    let mut state = fleet();
    let spec = SPEC.replace("track: {branch: main}", "track: {branch: release}");
    fetch_and_render(&mut state, "c1", &["dev-1", "prod-1"], Some(&spec));
    settle(&mut state);
    fetch_and_render(&mut state, "c2", &["dev-1", "prod-1"], Some(&spec));
    assert!(settle(&mut state).is_empty());
    assert_eq!(state.stages["dev"].pinned, Some(rev("c1")));
}

#[test]
fn a_cluster_waits_for_its_render_and_a_new_stage_starts_at_its_upstream() {
    let mut state = fleet();
    fetch_and_render(&mut state, "c1", &["dev-1", "prod-1"], Some(SPEC));
    settle(&mut state);
    fetch_and_render(&mut state, "c2", &["dev-1", "prod-1"], Some(SPEC));
    settle(&mut state);
    apply(
        &mut state,
        Command::RegisterCluster {
            name: "qa-1".into(),
            labels: labels("qa"),
            at: Timestamp(4),
        },
    );
    // A third commit declares a qa stage promoting from dev, and renders for qa-1.
    let spec = format!(
        "{}  - name: qa\n    clusterSelector: {{matchLabels: {{env: qa}}}}\n    promoteFrom: dev\n",
        SPEC.split("bundles:").next().unwrap_or_default()
    ) + "bundles:\n  - name: app\n    path: app\n";
    fetch_and_render(&mut state, "c3", &["dev-1", "prod-1"], Some(&spec));
    settle(&mut state);
    assert_eq!(
        state.stages["qa"].pinned,
        Some(rev("c3")),
        "qa starts where dev is"
    );
    assert_eq!(
        assigned(&state, "qa-1"),
        None,
        "c3 has no bundles for qa-1 yet, so it is not assigned"
    );
    let blob = Blob::from_content(b"c3 qa-1").expect("compressible");
    apply(
        &mut state,
        Command::AmendRender {
            revision: rev("c3"),
            bundles: BTreeMap::from([(
                "qa-1".to_owned(),
                BTreeMap::from([("app".to_owned(), blob.hash)]),
            )]),
            errors: BTreeMap::new(),
            blobs: vec![blob],
            at: Timestamp(5),
        },
    );
    settle(&mut state);
    assert_eq!(assigned(&state, "qa-1").as_deref(), Some("c3"));
    assert_eq!(assigned(&state, "prod-1").as_deref(), Some("c1"));
}
