use std::collections::BTreeMap;

use super::access::{Role, RoleBinding};
use super::audit::{AuditClass, AuditEvent, Outcome, PRIVILEGED_LIMIT};
use super::health::{Health, HealthKey, HealthReport};
use super::source::{Blob, BlobHash, BlobIndex, RenderError, RevisionRef, RevisionStatus, Staged};
use super::stage::StageChange;
use super::*;

pub(super) fn t(ms: u64) -> Timestamp {
    Timestamp(ms)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn rev(commit: &str) -> RevisionRef {
    RevisionRef {
        source: "main".into(),
        commit: commit.into(),
    }
}

pub(super) fn apply_ok(state: &mut State, command: Command) {
    let kind = command.kind();
    state
        .apply(&command)
        .unwrap_or_else(|e| panic!("{kind} rejected: {e}"));
}

/// Applies a command that must be rejected, and checks the state did not change.
pub(super) fn apply_err(state: &mut State, command: Command) -> CommandError {
    let before = state.clone();
    let err = state.apply(&command).expect_err("command was accepted");
    assert_eq!(
        *state,
        before,
        "a rejected {} changed the state",
        command.kind()
    );
    err
}

pub(super) fn register(state: &mut State, name: &str) {
    apply_ok(
        state,
        Command::RegisterCluster {
            name: name.into(),
            labels: labels(&[("env", "dev")]),
            at: t(1),
        },
    );
}

/// A rendered bundle's blob: one ConfigMap per name in namespace `app`, each holding `data`,
/// so two revisions' blobs differ by `data` while naming the same objects.
pub(crate) fn bundle_blob(bundle: &str, names: &[&str], data: &str) -> Blob {
    let objects = names
        .iter()
        .map(|name| {
            let object = serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "app"},
                "data": {"value": data},
            });
            flotilla_core::render::RenderedObject {
                id: flotilla_core::ObjectId::of(&object).expect("an object"),
                object,
            }
        })
        .collect();
    let rendered = flotilla_core::RenderedBundle {
        bundle: bundle.to_owned(),
        drift: flotilla_core::spec::DriftMode::Correct,
        depends_on: Vec::new(),
        objects,
        allow: flotilla_core::spec::Allow::default(),
        create_namespace: None,
    };
    Blob::from_content(&rendered.to_blob()).expect("blob")
}

/// The pipeline every fixture revision carries: one stage, `prod`, holding every cluster
/// labelled `env: dev`, tracking `main`.
pub(super) const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: prod
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
bundles:
  - name: app
    path: app
";

/// Fetches and renders `commit` for `clusters`, each with one bundle `app` whose content names
/// the commit and cluster.
pub(super) fn render(state: &mut State, commit: &str, clusters: &[&str]) {
    render_with(state, commit, clusters, |cluster| {
        format!("{commit} {cluster}")
    });
}

/// Fetches and renders `commit` for `clusters`, each with one bundle `app` holding `data` of
/// the cluster.
pub(super) fn render_with(
    state: &mut State,
    commit: &str,
    clusters: &[&str],
    data: impl Fn(&str) -> String,
) {
    apply_ok(
        state,
        Command::RecordFetch {
            source: "main".into(),
            url: "file:///repo".into(),
            commit: commit.into(),
            at: t(10),
        },
    );
    let mut bundles = BTreeMap::new();
    let mut blobs = Vec::new();
    for cluster in clusters {
        let blob = bundle_blob("app", &["app"], &data(cluster));
        bundles.insert(
            (*cluster).to_owned(),
            BTreeMap::from([("app".to_owned(), blob.hash)]),
        );
        blobs.push(blob);
    }
    apply_ok(
        state,
        Command::RecordRender {
            revision: rev(commit),
            outcome: RenderOutcome::Rendered {
                bundles,
                index: crate::state::source::test_index(&blobs),
                staged: None,
                spec: SPEC.to_owned(),
                charts: Default::default(),
            },
            at: t(11),
        },
    );
}

pub(super) fn fleet() -> State {
    let mut state = State::bootstrap(BTreeMap::from([(1, "127.0.0.1:1".to_owned())]));
    for name in ["a", "b", "c"] {
        register(&mut state, name);
    }
    render(&mut state, "c1", &["a", "b", "c"]);
    render(&mut state, "c2", &["a", "b", "c"]);
    apply_ok(
        &mut state,
        Command::PinStage {
            stage: "prod".into(),
            revision: rev("c1"),
            change: StageChange::Track,
            by: "alice".into(),
            reason: "first".into(),
            at: t(20),
        },
    );
    apply_ok(
        &mut state,
        Command::AssignRevision {
            clusters: vec!["a".into(), "b".into(), "c".into()],
            revision: rev("c1"),
            at: t(21),
        },
    );
    state
}

#[test]
fn commands_round_trip_through_their_envelope() {
    let command = Command::RegisterCluster {
        name: "edge-1".into(),
        labels: labels(&[("region", "eu")]),
        at: t(42),
    };
    let bytes = command.encode().expect("encode");
    assert_eq!(&bytes[..4], &COMMAND_VERSION.to_le_bytes());
    assert_eq!(Command::decode(&bytes).expect("decode"), command);
}

#[test]
fn a_command_from_a_newer_version_is_an_error_not_a_panic() {
    let mut bytes = Command::RemoveCluster {
        name: "x".into(),
        at: t(1),
    }
    .encode()
    .expect("encode");
    bytes[..4].copy_from_slice(&(COMMAND_VERSION + 1).to_le_bytes());
    let err = Command::decode(&bytes).expect_err("decoded a future version");
    assert!(matches!(err, DecodeError::UnknownVersion { found } if found == COMMAND_VERSION + 1));
    assert!(err.to_string().contains("upgrade"), "{err}");
    assert!(matches!(
        Command::decode(&[1, 0]),
        Err(DecodeError::Truncated(2))
    ));
    let garbage = [COMMAND_VERSION.to_le_bytes().as_slice(), &[0xff; 3]].concat();
    assert!(matches!(
        Command::decode(&garbage),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn clusters_register_relabel_and_leave_with_their_health() {
    let mut state = State::default();
    register(&mut state, "a");
    let err = apply_err(
        &mut state,
        Command::RegisterCluster {
            name: "a".into(),
            labels: Labels::new(),
            at: t(2),
        },
    );
    assert_eq!(err, CommandError::ClusterExists("a".into()));
    apply_ok(
        &mut state,
        Command::RelabelCluster {
            name: "a".into(),
            labels: labels(&[("env", "prod")]),
            at: t(3),
        },
    );
    assert_eq!(state.clusters["a"].labels, labels(&[("env", "prod")]));
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![report("a", Health::Healthy, 5)],
        },
    );
    apply_ok(
        &mut state,
        Command::RemoveCluster {
            name: "a".into(),
            at: t(6),
        },
    );
    assert!(state.clusters.is_empty());
    assert!(
        state.health.is_empty(),
        "health of a removed cluster was kept"
    );
    apply_err(
        &mut state,
        Command::RemoveCluster {
            name: "a".into(),
            at: t(7),
        },
    );
}

#[test]
fn liveness_records_only_transitions() {
    let mut state = State::default();
    register(&mut state, "a");
    let online = |at| Command::SetLiveness {
        cluster: "a".into(),
        online: true,
        at: t(at),
    };
    apply_ok(&mut state, online(5));
    apply_ok(&mut state, online(9));
    assert!(state.clusters["a"].online);
    assert_eq!(state.clusters["a"].liveness_changed_at, Some(t(5)));
    apply_err(
        &mut state,
        Command::SetLiveness {
            cluster: "zz".into(),
            online: false,
            at: t(10),
        },
    );
}

#[test]
fn rendered_revisions_give_each_cluster_its_bundles() {
    let state = fleet();
    let desired = state.desired_bundles("b");
    let hash = &desired["app"];
    assert_eq!(*hash, bundle_blob("app", &["app"], "c1 b").hash);
    assert!(state.blobs.contains_key(hash), "the blob is indexed");
    assert!(state.desired_bundles("unknown").is_empty());
}

#[test]
fn a_render_naming_an_unindexed_blob_or_object_set_is_rejected() {
    let mut state = fleet();
    apply_ok(
        &mut state,
        Command::RecordFetch {
            source: "main".into(),
            url: "file:///repo".into(),
            commit: "c3".into(),
            at: t(30),
        },
    );
    let blob = Blob::from_content(b"apiVersion: v1").expect("blob");
    let bundles = BTreeMap::from([(
        "a".to_owned(),
        BTreeMap::from([("app".to_owned(), blob.hash)]),
    )]);
    let mut index = crate::state::source::test_index(std::slice::from_ref(&blob));
    index.blobs[0].objects = 5;
    let err = apply_err(
        &mut state,
        Command::RecordRender {
            revision: rev("c3"),
            outcome: RenderOutcome::Rendered {
                bundles: bundles.clone(),
                index,
                staged: None,
                spec: String::new(),
                charts: Default::default(),
            },
            at: t(31),
        },
    );
    assert!(matches!(err, CommandError::Invalid(_)), "{err}");
    let err = apply_err(
        &mut state,
        Command::RecordRender {
            revision: rev("c3"),
            outcome: RenderOutcome::Rendered {
                bundles,
                index: BlobIndex::default(),
                staged: None,
                spec: String::new(),
                charts: Default::default(),
            },
            at: t(31),
        },
    );
    assert_eq!(err, CommandError::MissingBlob(blob.hash));
}

/// `commit` fetched and its render for clusters `a` and `b` split into a staged part (a) and
/// the final entry (b), the blob of each introduced with its cluster.
fn staged_render(state: &mut State, commit: &str, attempt: u64) -> (Command, Command) {
    apply_ok(
        state,
        Command::RecordFetch {
            source: "main".into(),
            url: "file:///repo".into(),
            commit: commit.into(),
            at: t(40),
        },
    );
    let part = |cluster: &str| {
        let blob = bundle_blob("app", &["app"], &format!("{commit} {cluster} staged"));
        let bundles = BTreeMap::from([(
            cluster.to_owned(),
            BTreeMap::from([("app".to_owned(), blob.hash)]),
        )]);
        (bundles, crate::state::source::test_index(&[blob]))
    };
    let (first, first_index) = part("a");
    let (last, last_index) = part("b");
    let stage = Command::StageRender {
        revision: rev(commit),
        attempt,
        part: 0,
        bundles: first,
        errors: BTreeMap::new(),
        index: first_index,
        at: t(41),
    };
    let record = Command::RecordRender {
        revision: rev(commit),
        outcome: RenderOutcome::Rendered {
            bundles: last,
            index: last_index,
            staged: Some(Staged { attempt, parts: 1 }),
            spec: SPEC.to_owned(),
            charts: Default::default(),
        },
        at: t(42),
    };
    (stage, record)
}

#[test]
fn a_render_in_parts_is_rendered_only_when_its_final_entry_takes_in_every_part() {
    let mut state = fleet();
    let (stage, record) = staged_render(&mut state, "c4", 7);
    // The final entry without its part is refused, and changes nothing.
    let before = state.clone();
    let err = apply_err(&mut state, record.clone());
    assert!(matches!(err, CommandError::Outdated(_)), "{err}");
    assert_eq!(state, before);
    // A part that does not follow (part 1 first) is refused.
    let Command::StageRender {
        revision,
        bundles,
        errors,
        index,
        at,
        ..
    } = stage.clone()
    else {
        unreachable!()
    };
    let err = apply_err(
        &mut state,
        Command::StageRender {
            revision: revision.clone(),
            attempt: 7,
            part: 1,
            bundles: bundles.clone(),
            errors: errors.clone(),
            index: index.clone(),
            at,
        },
    );
    assert!(matches!(err, CommandError::Outdated(_)), "{err}");
    apply_ok(&mut state, stage);
    assert!(matches!(
        state.revisions[&rev("c4")].status,
        RevisionStatus::Fetched
    ));
    assert_eq!(state.referenced_blobs().count(), state.blobs.len() + 1);
    apply_ok(&mut state, record);
    let rendered = &state.revisions[&rev("c4")];
    assert!(rendered.bundles_for("a").is_some() && rendered.bundles_for("b").is_some());
    assert!(state.pending_renders.is_empty());
    for cluster in ["a", "b"] {
        let hash = rendered.bundles_for(cluster).expect("rendered")["app"];
        let info = state.blobs[&hash];
        assert!(state.object_sets[&info.objects].len() == 1, "{cluster}");
    }
}

#[test]
fn a_new_attempt_drops_the_parts_of_the_last_and_its_final_entry_is_refused() {
    let mut state = fleet();
    let (stage, record) = staged_render(&mut state, "c5", 1);
    apply_ok(&mut state, stage.clone());
    let Command::StageRender {
        revision,
        bundles,
        errors,
        index,
        at,
        ..
    } = stage
    else {
        unreachable!()
    };
    apply_ok(
        &mut state,
        Command::StageRender {
            revision,
            attempt: 2,
            part: 0,
            bundles,
            errors,
            index,
            at,
        },
    );
    let err = apply_err(&mut state, record);
    assert!(matches!(err, CommandError::Outdated(_)), "{err}");
    assert_eq!(state.pending_renders[&rev("c5")].attempt, 2);
    // Forgetting the revision drops its staged parts.
    apply_ok(
        &mut state,
        Command::ForgetRevision {
            revision: rev("c5"),
            at: t(50),
        },
    );
    assert!(state.pending_renders.is_empty());
}

#[test]
fn a_failed_render_never_reaches_a_stage_or_cluster() {
    let mut state = fleet();
    apply_ok(
        &mut state,
        Command::RecordFetch {
            source: "main".into(),
            url: "file:///repo".into(),
            commit: "bad".into(),
            at: t(30),
        },
    );
    apply_ok(
        &mut state,
        Command::RecordRender {
            revision: rev("bad"),
            outcome: RenderOutcome::Failed {
                error: RenderError {
                    file: "apps/web/deploy.yaml".into(),
                    line: Some(7),
                    message: "undefined variable ${cluster.labels.zone}".into(),
                },
            },
            at: t(31),
        },
    );
    assert!(matches!(
        &state.revisions[&rev("bad")].status,
        RevisionStatus::Failed { error, .. } if error.line == Some(7)
    ));
    let notice = state.notices.recent.back().expect("a notice");
    assert_eq!(notice.kind, super::notice::NoticeKind::RenderFailed);
    assert_eq!(notice.commit.as_deref(), Some("bad"));
    assert_eq!(notice.stage, None);
    assert!(
        notice.message.contains("apps/web/deploy.yaml"),
        "{}",
        notice.message
    );
    let err = apply_err(
        &mut state,
        Command::PinStage {
            stage: "prod".into(),
            revision: rev("bad"),
            change: StageChange::Promote,
            by: "bob".into(),
            reason: "try".into(),
            at: t(32),
        },
    );
    assert_eq!(err, CommandError::RevisionNotRendered(rev("bad")));
    apply_err(
        &mut state,
        Command::AssignRevision {
            clusters: vec!["a".into()],
            revision: rev("bad"),
            at: t(33),
        },
    );
    let err = apply_err(
        &mut state,
        Command::RecordRender {
            revision: rev("bad"),
            outcome: RenderOutcome::Failed {
                error: RenderError {
                    file: "x".into(),
                    line: None,
                    message: "again".into(),
                },
            },
            at: t(34),
        },
    );
    assert_eq!(err, CommandError::AlreadyRendered(rev("bad")));
}

#[test]
fn forgetting_a_revision_refuses_while_used_and_collects_its_blobs() {
    let mut state = fleet();
    let err = apply_err(
        &mut state,
        Command::ForgetRevision {
            revision: rev("c1"),
            at: t(40),
        },
    );
    assert!(matches!(err, CommandError::RevisionInUse { .. }), "{err}");
    let c2_blobs: Vec<_> = state.revisions[&rev("c2")]
        .bundles_for("a")
        .expect("c2 rendered")
        .values()
        .cloned()
        .collect();
    apply_ok(
        &mut state,
        Command::ForgetRevision {
            revision: rev("c2"),
            at: t(41),
        },
    );
    assert!(!state.revisions.contains_key(&rev("c2")));
    assert!(c2_blobs.iter().all(|h| !state.blobs.contains_key(h)));
    assert!(
        !state.desired_bundles("a").is_empty(),
        "c1's blobs were collected"
    );
}

#[test]
fn stage_pins_keep_who_when_and_why() {
    let mut state = fleet();
    apply_ok(
        &mut state,
        Command::PinStage {
            stage: "prod".into(),
            revision: rev("c2"),
            change: StageChange::Promote,
            by: "bob".into(),
            reason: "release 2".into(),
            at: t(50),
        },
    );
    let stage = &state.stages["prod"];
    assert_eq!(stage.pinned, Some(rev("c2")));
    let last = stage.history.last().expect("history");
    assert_eq!(
        (last.by.as_str(), last.reason.as_str(), last.at),
        ("bob", "release 2", t(50))
    );
    assert_eq!(stage.history.len(), 2);
}

fn report(cluster: &str, health: Health, at: u64) -> HealthReport {
    HealthReport {
        failed: None,
        last_drift: None,
        drift_corrections: 0,
        added: Vec::new(),
        key: HealthKey {
            cluster: cluster.into(),
            bundle: "app".into(),
        },
        applied: None,
        health,
        message: String::new(),
        drifted: Vec::new(),
        at: t(at),
    }
}

#[test]
fn health_keeps_the_newest_report_and_drops_unknown_clusters() {
    let mut state = fleet();
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![
                report("a", Health::Degraded, 100),
                report("a", Health::Healthy, 90),
                report("gone", Health::Healthy, 100),
            ],
        },
    );
    assert_eq!(state.health.len(), 1);
    let key = HealthKey {
        cluster: "a".into(),
        bundle: "app".into(),
    };
    assert_eq!(state.health[&key].health, Health::Degraded);
}

#[test]
fn tokens_are_created_once_and_revoked() {
    let mut state = State::default();
    let create = Command::CreateToken {
        name: "ci".into(),
        id: "tok1".into(),
        secret_hash: "ab12".into(),
        bindings: vec![RoleBinding {
            role: Role::Deployer,
            stages: vec!["staging".into()],
        }],
        expires: None,
        by: "admin".into(),
        at: t(1),
    };
    apply_ok(&mut state, create.clone());
    assert_eq!(
        apply_err(&mut state, create),
        CommandError::TokenExists("ci".into())
    );
    apply_ok(
        &mut state,
        Command::RevokeToken {
            id: "tok1".into(),
            at: t(2),
        },
    );
    assert_eq!(state.access.tokens["tok1"].revoked_at, Some(t(2)));
}

#[test]
fn a_bootstrap_token_works_once_and_not_after_expiry() {
    let mut state = fleet();
    let issue = |hash: &str| Command::IssueBootstrapToken {
        cluster: "a".into(),
        token_hash: hash.into(),
        expires: t(1_000),
        at: t(100),
    };
    let consume = |hash: &str, at| Command::ConsumeBootstrapToken {
        token_hash: hash.into(),
        request: format!("csr-{at}"),
        at: t(at),
    };
    apply_ok(&mut state, issue("h1"));
    apply_ok(&mut state, consume("h1", 500));
    assert_eq!(
        apply_err(&mut state, consume("h1", 501)),
        CommandError::BootstrapTokenRefused("already used".into())
    );
    apply_ok(&mut state, issue("h2"));
    assert_eq!(
        apply_err(&mut state, consume("h2", 1_000)),
        CommandError::BootstrapTokenRefused("expired".into())
    );
    assert_eq!(
        apply_err(&mut state, consume("nope", 10)),
        CommandError::BootstrapTokenRefused("unknown".into())
    );
    apply_ok(
        &mut state,
        Command::RemoveCluster {
            name: "a".into(),
            at: t(2_000),
        },
    );
    assert!(state.access.bootstrap.is_empty());
}

#[test]
fn the_audit_log_keeps_the_newest_events_with_stable_sequence_numbers() {
    let mut state = State::default();
    for i in 0..(PRIVILEGED_LIMIT as u64 + 5) {
        apply_ok(
            &mut state,
            Command::RecordAudit {
                event: AuditEvent {
                    actor: "alice".into(),
                    action: "promote".into(),
                    target: "stage/prod".into(),
                    detail: i.to_string(),
                    at: t(i),
                    outcome: Outcome::Succeeded,
                    class: AuditClass::Privileged,
                    count: 1,
                },
            },
        );
    }
    assert_eq!(state.audit.len(), PRIVILEGED_LIMIT);
    let (seq, first) = state.audit.since(0).next().expect("events");
    assert_eq!((seq, first.detail.as_str()), (5, "5"));
    let (seq, event) = state
        .audit
        .since(PRIVILEGED_LIMIT as u64 + 4)
        .next()
        .expect("last");
    assert_eq!(
        (seq, event.detail.as_str()),
        (PRIVILEGED_LIMIT as u64 + 4, "10004")
    );
}

#[test]
fn replicas_applying_the_same_commands_have_the_same_hash_and_snapshot() {
    let a = fleet();
    let b = fleet();
    assert_eq!(a.hash().expect("hash"), b.hash().expect("hash"));
    let image = a.to_snapshot().expect("snapshot");
    let restored = State::from_snapshot(&image).expect("restore");
    assert_eq!(restored, a);
    assert_eq!(restored.hash().expect("hash"), a.hash().expect("hash"));
    let mut c = fleet();
    register(&mut c, "d");
    assert_ne!(c.hash().expect("hash"), a.hash().expect("hash"));
}

#[test]
fn a_snapshot_from_a_newer_version_is_refused() {
    let mut image = fleet().to_snapshot().expect("snapshot");
    image[..4].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_le_bytes());
    assert!(matches!(
        State::from_snapshot(&image),
        Err(SnapshotError::UnknownVersion(v)) if v == SNAPSHOT_VERSION + 1
    ));
}

fn one_bundle(
    cluster: &str,
    content: &str,
) -> (BTreeMap<String, BTreeMap<String, BlobHash>>, Blob) {
    let blob = Blob::from_content(content.as_bytes()).expect("blob");
    let bundles = BTreeMap::from([(
        cluster.to_owned(),
        BTreeMap::from([("app".to_owned(), blob.hash)]),
    )]);
    (bundles, blob)
}

#[test]
fn an_amended_render_replaces_entries_records_errors_and_collects_blobs() {
    let mut state = fleet();
    let old = state.revisions[&rev("c1")]
        .bundles_for("a")
        .cloned()
        .expect("a rendered");
    let (bundles, blob) = one_bundle("a", "kind: ConfigMap # relabelled a");
    let error = RenderError {
        file: "app/config.yaml".into(),
        line: Some(3),
        message: "the cluster has no label `zone`".into(),
    };
    apply_ok(
        &mut state,
        Command::AmendRender {
            revision: rev("c1"),
            bundles: bundles.clone(),
            errors: BTreeMap::from([("b".to_owned(), error.clone())]),
            index: crate::state::source::test_index(std::slice::from_ref(&blob)),
            staged: None,
            at: t(50),
        },
    );
    let c1 = &state.revisions[&rev("c1")];
    assert_eq!(c1.bundles_for("a"), bundles.get("a"));
    assert_eq!(c1.error_for("b"), Some(&error));
    assert!(
        c1.bundles_for("b").is_some(),
        "a failed cluster keeps its entry"
    );
    assert!(state.blobs.contains_key(&blob.hash));
    assert!(
        old.values().all(|h| !state.blobs.contains_key(h)),
        "a's old blob is referenced by nothing and must be collected"
    );
    // Rendering b successfully later clears its error.
    let (bundles, blob) = one_bundle("b", "kind: ConfigMap # b again");
    apply_ok(
        &mut state,
        Command::AmendRender {
            revision: rev("c1"),
            bundles,
            errors: BTreeMap::new(),
            index: crate::state::source::test_index(&[blob]),
            staged: None,
            at: t(51),
        },
    );
    assert_eq!(state.revisions[&rev("c1")].error_for("b"), None);
}

#[test]
fn an_amended_render_is_refused_for_unknown_clusters_and_unrendered_revisions() {
    let mut state = fleet();
    let (bundles, blob) = one_bundle("ghost", "kind: ConfigMap # ghost");
    let err = apply_err(
        &mut state,
        Command::AmendRender {
            revision: rev("c1"),
            bundles,
            errors: BTreeMap::new(),
            index: crate::state::source::test_index(std::slice::from_ref(&blob)),
            staged: None,
            at: t(50),
        },
    );
    assert_eq!(err, CommandError::UnknownCluster("ghost".into()));
    apply_ok(
        &mut state,
        Command::RecordFetch {
            source: "main".into(),
            url: "file:///repo".into(),
            commit: "c9".into(),
            at: t(52),
        },
    );
    let (bundles, blob) = one_bundle("a", "kind: ConfigMap # c9");
    let err = apply_err(
        &mut state,
        Command::AmendRender {
            revision: rev("c9"),
            bundles,
            errors: BTreeMap::new(),
            index: crate::state::source::test_index(&[blob]),
            staged: None,
            at: t(53),
        },
    );
    assert_eq!(err, CommandError::RevisionNotRendered(rev("c9")));
}

#[test]
fn fetch_requests_are_counted_per_source() {
    let mut state = State::default();
    for at in [1, 2] {
        apply_ok(
            &mut state,
            Command::RequestFetch {
                source: "origin".into(),
                url: "https://git.example/fleet.git".into(),
                reason: "webhook github push refs/heads/main".into(),
                at: t(at),
            },
        );
    }
    let source = &state.sources["origin"];
    assert_eq!(source.fetch_requests, 2);
    assert_eq!(source.requested_at, Some(t(2)));
    assert_eq!(source.head, None);
}

#[test]
fn revisions_are_numbered_in_order_of_arrival_and_refetching_keeps_the_number() {
    let mut state = fleet();
    assert_eq!(state.revisions[&rev("c1")].seq, 1);
    assert_eq!(state.revisions[&rev("c2")].seq, 2);
    apply_ok(
        &mut state,
        Command::RecordFetch {
            source: "main".into(),
            url: "file:///repo".into(),
            commit: "c1".into(),
            at: t(60),
        },
    );
    assert_eq!(state.revisions[&rev("c1")].seq, 1);
    assert_eq!(state.sources["main"].head.as_deref(), Some("c1"));
    assert_eq!(state.sources["main"].revisions_recorded, 2);
}

#[test]
fn removing_a_cluster_drops_its_rendered_entries_and_their_blobs() {
    let mut state = fleet();
    let c_blobs: Vec<BlobHash> = ["c1", "c2"]
        .iter()
        .flat_map(|c| {
            state.revisions[&rev(c)]
                .bundles_for("c")
                .cloned()
                .unwrap_or_default()
                .into_values()
        })
        .collect();
    assert_eq!(c_blobs.len(), 2);
    apply_ok(
        &mut state,
        Command::RemoveCluster {
            name: "c".into(),
            at: t(70),
        },
    );
    for commit in ["c1", "c2"] {
        assert!(state.revisions[&rev(commit)].bundles_for("c").is_none());
    }
    assert!(c_blobs.iter().all(|h| !state.blobs.contains_key(h)));
    assert!(!state.desired_bundles("a").is_empty());
}

#[test]
fn an_older_cluster_api_report_never_replaces_a_newer_one() {
    let mut state = State::default();
    register(&mut state, "dev-1");
    apply_ok(
        &mut state,
        Command::SetLiveness {
            cluster: "dev-1".into(),
            online: true,
            at: t(2),
        },
    );
    let api = |reachable: bool, since: u64| Command::SetClusterApi {
        cluster: "dev-1".into(),
        api: super::fleet::ApiReachability {
            reachable,
            since: t(since),
            error: if reachable {
                String::new()
            } else {
                "GET /readyz: 500".into()
            },
        },
    };
    // The agent said unreachable at 10, then reachable at 20; the two commit out of order.
    apply_ok(&mut state, api(true, 20));
    apply_ok(&mut state, api(false, 10));
    let known = state.clusters["dev-1"].api.clone().expect("recorded");
    assert!(known.reachable, "{known:?}");
    assert!(state.clusters["dev-1"].reporting());
    apply_ok(&mut state, api(false, 30));
    assert!(!state.clusters["dev-1"].reporting());
    // Reachable at 20 was no news (the first word); the late 10 changed nothing; 30 did.
    let kinds: Vec<_> = state
        .notices
        .recent
        .iter()
        .map(|n| (n.kind, n.at))
        .collect();
    assert_eq!(
        kinds,
        [(super::notice::NoticeKind::ClusterUnreachable, t(30))]
    );
    assert!(state.notices.recent[0].message.contains("GET /readyz: 500"));
    apply_ok(&mut state, api(true, 40));
    assert_eq!(
        state.notices.recent[1].kind,
        super::notice::NoticeKind::ClusterBack
    );
}

#[test]
fn a_drift_correction_is_a_notice_once() {
    let mut state = fleet();
    let corrected = |at: u64| super::health::DriftNote {
        objects: vec!["ConfigMap app/app: data.greeting (by kubectl)".into()],
        kind: super::health::DriftKind::Corrected,
        at: t(at),
    };
    let mut first = report("a", Health::Healthy, 100);
    first.last_drift = Some(corrected(99));
    let mut again = report("a", Health::Healthy, 101);
    again.last_drift = Some(corrected(99));
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![first],
        },
    );
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![again],
        },
    );
    let drift: Vec<_> = state
        .notices
        .recent
        .iter()
        .filter(|n| n.kind == super::notice::NoticeKind::DriftCorrected)
        .collect();
    assert_eq!(
        drift.len(),
        1,
        "the same correction reported twice is one notice"
    );
    assert_eq!(drift[0].cluster.as_deref(), Some("a"));
    assert!(
        drift[0]
            .message
            .contains("bundle app: re-applied ConfigMap app/app"),
        "{}",
        drift[0].message
    );
    // The same objects corrected again later (something keeps changing them): one notice.
    let mut later = report("a", Health::Healthy, 200);
    later.last_drift = Some(corrected(199));
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![later],
        },
    );
    // Other objects: a new notice.
    let mut other = report("a", Health::Healthy, 300);
    other.last_drift = Some(super::health::DriftNote {
        objects: vec!["Deployment app/app: spec.replicas (by kubectl)".into()],
        ..corrected(299)
    });
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![other],
        },
    );
    assert_eq!(
        state
            .notices
            .recent
            .iter()
            .filter(|n| n.kind == super::notice::NoticeKind::DriftCorrected)
            .count(),
        2,
        "a correction of other objects is a new notice, the same again is not"
    );
}

#[test]
fn what_a_cluster_serves_is_kept_newest_first() {
    let mut state = State::default();
    register(&mut state, "dev-1");
    let said = |version: &str, at: u64| Command::SetClusterCapabilities {
        cluster: "dev-1".into(),
        capabilities: flotilla_core::inventory::Capabilities {
            kube_version: version.into(),
            api_versions: vec!["apps/v1".into(), "v1".into()],
        },
        agent_version: format!("agent for {version}"),
        at: t(at),
    };
    // Heard v1.36 at 10, then v1.37 (an upgrade) at 20; the two commit out of order.
    apply_ok(&mut state, said("v1.37.2", 20));
    apply_ok(&mut state, said("v1.36.4", 10));
    let known = state.clusters["dev-1"]
        .capabilities
        .clone()
        .expect("recorded");
    assert_eq!(known.read.kube_version, "v1.37.2");
    assert_eq!(known.agent_version, "agent for v1.37.2");
    assert!(state.apply(&said("v1.37.2", 30)).is_ok());
    assert!(matches!(
        state.apply(&Command::SetClusterCapabilities {
            cluster: "nope".into(),
            capabilities: Default::default(),
            agent_version: String::new(),
            at: t(40),
        }),
        Err(CommandError::UnknownCluster(_))
    ));
}

#[test]
fn a_report_that_is_not_current_is_shown_unknown_and_gates_nothing_as_healthy() {
    use super::health::{ApplyFailure, current_health};
    use crate::state::rollout::readiness::{Readiness, at_revision};
    let mut state = fleet();
    for cluster in ["a", "b"] {
        apply_ok(
            &mut state,
            Command::SetLiveness {
                cluster: cluster.into(),
                online: true,
                at: t(30),
            },
        );
    }
    let (hash_a, hash_b) = (
        state.desired_bundles("a")["app"],
        state.desired_bundles("b")["app"],
    );
    let healthy = |cluster: &str, hash: BlobHash| HealthReport {
        applied: Some(hash),
        ..report(cluster, Health::Healthy, 40)
    };
    let mut failed = healthy("b", hash_b);
    failed.applied = None;
    failed.health = Health::Unknown;
    failed.failed = Some(ApplyFailure {
        content: Some(hash_b),
        errors: vec!["v1/ConfigMap app/app: data: Invalid value".into()],
        permanent: true,
    });
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![healthy("a", hash_a), failed],
        },
    );
    let key = |cluster: &str| HealthKey {
        cluster: cluster.into(),
        bundle: "app".into(),
    };
    let record_a = state.health.get(&key("a")).cloned();
    assert_eq!(
        current_health(&state.clusters["a"], record_a.as_ref()),
        Health::Healthy
    );
    assert_eq!(at_revision(&state, "a", &rev("c1")), Readiness::Healthy);
    assert!(
        matches!(at_revision(&state, "b", &rev("c1")), Readiness::ApplyFailed(ref why) if why.contains("Invalid value")),
        "{:?}",
        at_revision(&state, "b", &rev("c1"))
    );

    // The API unreachable: the last report stays, but is neither shown nor counted as Healthy.
    apply_ok(
        &mut state,
        Command::SetClusterApi {
            cluster: "a".into(),
            api: super::fleet::ApiReachability {
                reachable: false,
                since: t(50),
                error: "GET /readyz: 500".into(),
            },
        },
    );
    assert_eq!(
        current_health(&state.clusters["a"], record_a.as_ref()),
        Health::Unknown
    );
    assert_eq!(
        at_revision(&state, "a", &rev("c1")),
        Readiness::Unreachable("GET /readyz: 500".into())
    );
    // Offline: the same.
    apply_ok(
        &mut state,
        Command::SetLiveness {
            cluster: "a".into(),
            online: false,
            at: t(60),
        },
    );
    assert_eq!(
        current_health(&state.clusters["a"], record_a.as_ref()),
        Health::Unknown
    );
    assert_eq!(at_revision(&state, "a", &rev("c1")), Readiness::Offline);
}

#[test]
fn every_drift_note_is_kept_as_an_event_up_to_the_log_length() {
    use super::health::{DRIFT_LOG_LEN, DriftKind, DriftNote};
    let mut state = fleet();
    let note = |kind: DriftKind, at: u64| DriftNote {
        objects: vec![format!("v1/ConfigMap app/app: data.value changed ({at})")],
        kind,
        at: t(at),
    };
    let with = |at: u64, drift: DriftNote| HealthReport {
        last_drift: Some(drift),
        ..report("a", Health::Healthy, at)
    };
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![with(100, note(DriftKind::Found, 100))],
        },
    );
    // The same note again (a later report carrying it) is not a second entry.
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![
                with(101, note(DriftKind::Found, 100)),
                with(102, note(DriftKind::CorrectionFailed, 102)),
                with(103, note(DriftKind::Corrected, 103)),
            ],
        },
    );
    let key = HealthKey {
        cluster: "a".into(),
        bundle: "app".into(),
    };
    let kinds: Vec<DriftKind> = state.health[&key]
        .drift_log
        .iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            DriftKind::Found,
            DriftKind::CorrectionFailed,
            DriftKind::Corrected
        ]
    );
    for at in 200..230 {
        apply_ok(
            &mut state,
            Command::RecordHealth {
                reports: vec![with(at, note(DriftKind::Found, at))],
            },
        );
    }
    let log = &state.health[&key].drift_log;
    assert_eq!(log.len(), DRIFT_LOG_LEN);
    assert_eq!(log.last().map(|n| n.at), Some(t(229)), "newest kept");
}

#[test]
fn a_request_applies_once_and_every_copy_answers_its_first_outcome() {
    use flotilla_consensus::{RequestId, StateMachine};
    let mut state = fleet();
    let first = RequestId([1; 16]);
    let command = Command::RegisterCluster {
        name: "d".into(),
        labels: labels(&[("env", "dev")]),
        at: t(5),
    };
    assert_eq!(state.apply_command(&command, Some(first)), Ok(()));
    let after = state.clone();
    // The same write again (a retry whose first copy applied): nothing changes, same answer.
    assert_eq!(state.apply_command(&command, Some(first)), Ok(()));
    assert_eq!(state, after, "a duplicate changed the state");
    assert_eq!(state.request_outcome(first), Some(Ok(())));
    // Another write of the same cluster is refused as it always was, and so are its copies.
    let second = RequestId([2; 16]);
    let refused = Err(CommandError::ClusterExists("d".into()));
    assert_eq!(state.apply_command(&command, Some(second)), refused);
    assert_eq!(state.apply_command(&command, Some(second)), refused);
    // Without an id (an entry from before ids) a command applies as it always did.
    assert_eq!(state.apply_command(&command, None), refused);
    // Only the newest requests are remembered, in the order they applied.
    for i in 0..requests::REQUEST_LOG_LEN as u32 {
        let mut id = [0xff; 16];
        id[..4].copy_from_slice(&i.to_le_bytes());
        state.requests.record(RequestId(id), Ok(()));
    }
    assert_eq!(state.requests.len(), requests::REQUEST_LOG_LEN);
    assert_eq!(
        state.request_outcome(first),
        None,
        "the oldest was forgotten"
    );
}

#[test]
fn a_token_is_revoked_once() {
    let mut state = fleet();
    apply_ok(
        &mut state,
        Command::CreateToken {
            name: "ci".into(),
            id: "t1".into(),
            secret_hash: "00".into(),
            bindings: Vec::new(),
            expires: None,
            by: "alice".into(),
            at: t(5),
        },
    );
    apply_ok(
        &mut state,
        Command::RevokeToken {
            id: "t1".into(),
            at: t(6),
        },
    );
    // A second revoke (another caller's, decided on the same state) is refused: of two
    // concurrent revokes exactly one is told it revoked the token.
    let again = apply_err(
        &mut state,
        Command::RevokeToken {
            id: "t1".into(),
            at: t(7),
        },
    );
    assert_eq!(again, CommandError::UnknownToken("t1".into()));
    assert_eq!(state.access.tokens["t1"].revoked_at, Some(t(6)));
}
