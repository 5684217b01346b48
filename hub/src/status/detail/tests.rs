use std::collections::BTreeMap;

use super::*;
use crate::state::Command;
use crate::state::delivery::Problem;
use crate::state::health::Health;
use crate::status::BundleStatus;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn objects_are_named_as_the_agent_names_them() {
    let key = |group: &str, kind: &str, ns: Option<&str>, name: &str| {
        (
            group.to_owned(),
            kind.to_owned(),
            ns.map(str::to_owned),
            name.to_owned(),
        )
    };
    assert_eq!(
        object_name(&key("apps", "Deployment", Some("web"), "api")),
        "apps/Deployment web/api"
    );
    assert_eq!(
        object_name(&key("", "ConfigMap", Some("web"), "settings")),
        "ConfigMap web/settings"
    );
    assert_eq!(
        object_name(&key("", "Namespace", None, "web")),
        "Namespace web"
    );
}

#[test]
fn unhealthy_lines_are_split_by_object_even_when_a_message_holds_semicolons() {
    let objects = names(&[
        "apps/Deployment web/api",
        "apps/Deployment web/worker",
        "Service web/api",
    ]);
    let message = "apply failed: Service web/api: spec.ports: Invalid; \
                   apps/Deployment web/api: Degraded: pods crash; back-off 5m; \
                   apps/Deployment web/worker: Progressing: 1 of 3 updated";
    let lines = unhealthy_lines(message, &objects);
    assert_eq!(
        lines.get("apps/Deployment web/api"),
        Some(&("Degraded".to_owned(), "pods crash; back-off 5m".to_owned()))
    );
    assert_eq!(
        lines.get("apps/Deployment web/worker"),
        Some(&("Progressing".to_owned(), "1 of 3 updated".to_owned()))
    );
    // An apply error names its object too, but opens with no health.
    assert_eq!(lines.get("Service web/api"), None);
}

fn record(applied: Option<BlobHash>, health: Health, message: &str) -> HealthRecord {
    HealthRecord {
        applied,
        health,
        message: message.to_owned(),
        drifted: Vec::new(),
        failed: None,
        drift_log: Vec::new(),
        drift_corrections: 0,
        added: Vec::new(),
        at: Timestamp(1),
    }
}

fn bundle(
    sync: SyncState,
    health: &str,
    desired: BlobHash,
    applied: Option<BlobHash>,
) -> BundleStatus {
    BundleStatus {
        name: "app".into(),
        desired_revision: Some("c1".into()),
        desired_hash: Some(desired),
        applied_revision: None,
        applied_hash: applied,
        sync_state: sync,
        health: health.into(),
        drifted: Vec::new(),
        added: Vec::new(),
        message: String::new(),
        updated_at: None,
    }
}

use crate::state::source::BlobHash;

#[test]
fn each_object_gets_its_own_sync_state_health_and_message() {
    let hash = BlobHash::of(b"c1");
    let objects = names(&[
        "apps/Deployment web/api",
        "ConfigMap web/settings",
        "Service web/api",
    ]);
    let mut degraded = record(
        Some(hash),
        Health::Degraded,
        "apps/Deployment web/api: Degraded: pods crash",
    );
    // As the hub records them: the drifted objects by name, what changed in the drift log.
    degraded.drifted = vec!["ConfigMap web/settings".into()];
    degraded.drift_log = vec![crate::state::health::DriftNote {
        objects: vec!["ConfigMap web/settings: data.level (by kubectl-edit)".into()],
        kind: crate::state::health::DriftKind::Found,
        at: Timestamp(1),
    }];
    let shown = bundle_objects(
        &bundle(SyncState::OutOfSync, "Degraded", hash, Some(hash)),
        Some(&degraded),
        &objects,
    );
    let by: BTreeMap<&str, &ObjectStatus> = shown.iter().map(|o| (o.object.as_str(), o)).collect();
    let api = by["apps/Deployment web/api"];
    assert_eq!(
        (api.sync_state, api.health.as_str()),
        (SyncState::Synced, "Degraded")
    );
    assert_eq!(api.message, "pods crash");
    let settings = by["ConfigMap web/settings"];
    assert_eq!(
        (settings.sync_state, settings.health.as_str()),
        (SyncState::OutOfSync, "Healthy")
    );
    assert_eq!(settings.message, "drifted: data.level (by kubectl-edit)");
    assert_eq!(by["Service web/api"].health, "Healthy");

    // A refused apply: the object the API server refused is ApplyFailed with its message;
    // nothing is Healthy, since the content is not applied.
    let mut refused = record(
        None,
        Health::Unknown,
        "apply failed: Service web/api: spec.ports: Invalid",
    );
    refused.failed = Some(crate::state::health::ApplyFailure {
        content: Some(hash),
        errors: vec!["Service web/api: spec.ports: Invalid".into()],
        permanent: true,
    });
    let shown = bundle_objects(
        &bundle(SyncState::ApplyFailed, "Unknown", hash, None),
        Some(&refused),
        &objects,
    );
    let service = shown
        .iter()
        .find(|o| o.object == "Service web/api")
        .expect("listed");
    assert_eq!(service.sync_state, SyncState::ApplyFailed);
    assert_eq!(service.message, "apply failed: spec.ports: Invalid");
    assert!(shown.iter().all(|o| o.health == "Unknown"), "{shown:?}");
    assert!(
        shown
            .iter()
            .filter(|o| o.object != "Service web/api")
            .all(|o| o.sync_state == SyncState::Applying)
    );

    // Right after an apply the agent judges health: no object is named yet, none is Healthy.
    let judging = bundle_objects(
        &bundle(SyncState::Synced, "Progressing", hash, Some(hash)),
        Some(&record(
            Some(hash),
            Health::Progressing,
            "applied; its health is being judged",
        )),
        &objects,
    );
    assert!(judging.iter().all(|o| o.health == "Unknown"), "{judging:?}");

    // While the agent's reports are not current, nothing is known of any object.
    let shown = bundle_objects(
        &bundle(SyncState::Unknown, "Unknown", hash, Some(hash)),
        Some(&degraded),
        &objects,
    );
    assert!(
        shown
            .iter()
            .all(|o| o.sync_state == SyncState::Unknown && o.health == "Unknown")
    );

    // With five objects named unhealthy, one not named may be unhealthy too: Unknown.
    let many: Vec<String> = (0..7).map(|i| format!("ConfigMap web/c{i}")).collect();
    let message = (0..5)
        .map(|i| format!("ConfigMap web/c{i}: Missing: gone"))
        .collect::<Vec<_>>()
        .join("; ");
    let shown = bundle_objects(
        &bundle(SyncState::Synced, "Missing", hash, Some(hash)),
        Some(&record(Some(hash), Health::Missing, &message)),
        &many,
    );
    assert_eq!(shown[0].health, "Missing");
    assert_eq!(shown[6].health, "Unknown");
}

fn state_with_deliveries() -> State {
    let mut state = State::default();
    for name in ["a", "b", "c"] {
        state
            .apply(&Command::RegisterCluster {
                name: name.into(),
                labels: BTreeMap::new(),
                at: Timestamp(1),
            })
            .expect("registered");
    }
    let delivery = |commit: &str, given: u64| Delivery {
        commit: commit.into(),
        given_at: Timestamp(given),
        applied_at: None,
        healthy_at: None,
        problem: None,
    };
    let a = &mut state.clusters.get_mut("a").expect("a").deliveries;
    a.push(Delivery {
        applied_at: Some(Timestamp(110)),
        healthy_at: Some(Timestamp(120)),
        ..delivery("abcd1111", 100)
    });
    a.push(delivery("abcd2222", 200));
    let b = &mut state.clusters.get_mut("b").expect("b").deliveries;
    b.push(Delivery {
        problem: Some(Problem {
            at: Timestamp(130),
            message: "bundle app: apply failed: nope".into(),
        }),
        ..delivery("abcd1111", 90)
    });
    state
}

#[test]
fn a_commit_is_named_by_a_unique_prefix() {
    let state = state_with_deliveries();
    assert_eq!(resolve_commit(&state, "ABCD1").as_deref(), Ok("abcd1111"));
    assert!(matches!(
        resolve_commit(&state, "abcd"),
        Err(TimelineError::Ambiguous(..))
    ));
    assert!(matches!(
        resolve_commit(&state, "abc"),
        Err(TimelineError::Malformed(_))
    ));
    assert!(matches!(
        resolve_commit(&state, "zzzz"),
        Err(TimelineError::Malformed(_))
    ));
    assert!(matches!(
        resolve_commit(&state, "ffff"),
        Err(TimelineError::Unknown(_))
    ));
}

#[test]
fn a_timeline_lists_each_cluster_given_the_commit_with_how_far_it_got() {
    let state = state_with_deliveries();
    let all = |_: Option<&str>| true;
    let line = timeline(&state, None, "abcd1111", all, 0, None);
    assert_eq!(
        line.counts,
        DeliveryCounts {
            given: 2,
            applied: 1,
            healthy: 1,
            failed: 1
        }
    );
    // Ordered by when they were given it (no stage: no pipeline order to follow).
    let names: Vec<&str> = line.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["b", "a"]);
    let a = &line.clusters[1].delivery;
    assert_eq!(
        (a.applied_at, a.healthy_at),
        (Some(Timestamp(110)), Some(Timestamp(120)))
    );
    assert_eq!(a.replaced_by.as_deref(), Some("abcd2222"));
    assert_eq!(a.replaced_at, Some(Timestamp(200)));
    let b = &line.clusters[0].delivery;
    assert_eq!(b.problem.as_deref(), Some("bundle app: apply failed: nope"));
    assert_eq!(b.replaced_by, None);

    let page = timeline(&state, None, "abcd1111", all, 1, Some(1));
    assert_eq!((page.matched, page.offset, page.next_offset), (2, 1, None));
    assert_eq!(page.clusters[0].name, "a");
    let first = timeline(&state, None, "abcd1111", all, 0, Some(1));
    assert_eq!(first.next_offset, Some(1));

    // A caller who may view no cluster without a stage sees none of them.
    let none = timeline(&state, None, "abcd1111", |stage| stage.is_some(), 0, None);
    assert_eq!((none.matched, none.counts.given), (0, 0));
}
