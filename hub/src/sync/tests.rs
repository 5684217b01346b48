use std::collections::BTreeMap;

use flotilla_core::{ContentHash, Health};
use flotilla_proto::v1 as proto;
use flotilla_proto::v1::hub_message;
use prost::Message as _;

use super::chunk::{OVERHEAD_BYTES, chunk_size, chunks};
use super::reports::BundleReports;
use crate::state::health::{DriftKind, HealthKey, HealthReport};
use crate::state::source::Blob;
use crate::state::{Command, State, Timestamp};

fn registered(names: &[&str]) -> State {
    let mut state = State::default();
    for name in names {
        state
            .apply(&Command::RegisterCluster {
                name: (*name).to_owned(),
                labels: BTreeMap::new(),
                at: Timestamp(1),
            })
            .expect("registered");
    }
    state
}

/// Bytes zstd cannot shrink much, so the compressed blob is about as large as the content.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn chunk_size_stays_below_the_agents_limit_and_the_hubs_maximum() {
    assert_eq!(chunk_size(1 << 20, 0), 1 << 20, "no limit declared: 4 MiB");
    assert_eq!(chunk_size(1 << 20, 64 * 1024), 64 * 1024 - OVERHEAD_BYTES);
    assert_eq!(chunk_size(8 * 1024, 64 * 1024), 8 * 1024);
}

#[test]
fn chunks_fit_the_limit_and_reassemble_to_the_blob() {
    let blob = Blob::from_content(&noise(300 * 1024)).expect("blob");
    let limit = 64 * 1024;
    let messages = chunks("web", "abc123", &blob, 7, chunk_size(1 << 20, limit));
    assert!(messages.len() >= 5, "{} chunks", messages.len());
    let mut whole = Vec::new();
    for message in &messages {
        assert!(message.encoded_len() <= limit, "{}", message.encoded_len());
        let Some(hub_message::Kind::Chunk(chunk)) = &message.kind else {
            panic!("not a chunk");
        };
        assert_eq!(chunk.offset, whole.len() as u64);
        assert_eq!(chunk.total_bytes, blob.compressed.len() as u64);
        assert_eq!(chunk.uncompressed_bytes, blob.size);
        assert_eq!(chunk.content_hash, blob.hash.to_string());
        assert_eq!(chunk.index, 7);
        whole.extend_from_slice(&chunk.data);
    }
    assert_eq!(whole, blob.compressed);
}

#[test]
fn an_empty_blob_is_one_complete_chunk() {
    let blob = Blob {
        hash: ContentHash::of(b""),
        size: 0,
        compressed: Vec::new(),
    };
    let messages = chunks("web", "abc", &blob, 1, 1024);
    assert_eq!(messages.len(), 1);
}

fn report(bundle: &str, hash: &str, at_ms: i64, event: proto::report::Event) -> proto::Report {
    proto::Report {
        bundle: bundle.into(),
        revision: "abc".into(),
        content_hash: hash.into(),
        at_ms,
        event: Some(event),
        cluster: String::new(),
    }
}

fn health(name: &str, unhealthy: &[(&str, &str)]) -> proto::report::Event {
    proto::report::Event::Health(proto::HealthReport {
        health: name.into(),
        unhealthy: unhealthy
            .iter()
            .map(|(object, message)| proto::ObjectMessage {
                object: (*object).into(),
                message: (*message).into(),
            })
            .collect(),
    })
}

fn applied_ok() -> proto::report::Event {
    proto::report::Event::Apply(proto::ApplyResult {
        permanent: false,
        ok: true,
        errors: Vec::new(),
        applied: 3,
        pruned: 0,
    })
}

#[test]
fn reports_fold_into_the_bundles_latest_state() {
    let state = registered(&["a"]);
    let hash = ContentHash::of(b"v1");
    let mut reports = BundleReports::new("a", &state);

    let folded = reports
        .fold(&report("web", &hash.to_string(), 10, applied_ok()))
        .expect("folds");
    assert_eq!(folded.applied, Some(hash));
    assert_eq!(
        folded.health,
        Health::Progressing,
        "just applied, no health judged yet: not Unknown"
    );

    let folded = reports
        .fold(&report(
            "web",
            &hash.to_string(),
            20,
            health(
                "Progressing",
                &[("apps/Deployment web/api", "1 of 3 ready")],
            ),
        ))
        .expect("folds");
    assert_eq!(folded.applied, Some(hash), "health keeps the applied hash");
    assert_eq!(folded.health, Health::Progressing);
    assert!(
        folded.message.contains("1 of 3 ready"),
        "{}",
        folded.message
    );

    let drift = proto::report::Event::Drift(proto::DriftReport {
        objects: vec![proto::ObjectMessage {
            object: "v1/ConfigMap web/settings".into(),
            message: "data.key changed".into(),
        }],
        corrected: false,
        added: false,
        correction_failed: false,
    });
    let folded = reports
        .fold(&report("web", &hash.to_string(), 30, drift))
        .expect("folds");
    assert_eq!(folded.drifted, vec!["v1/ConfigMap web/settings".to_owned()]);
    let corrected = proto::report::Event::Drift(proto::DriftReport {
        objects: Vec::new(),
        corrected: true,
        added: false,
        correction_failed: false,
    });
    let folded = reports
        .fold(&report("web", &hash.to_string(), 40, corrected))
        .expect("folds");
    assert!(folded.drifted.is_empty());
    assert_eq!(folded.at, Timestamp(40));
    assert_eq!(folded.key.cluster, "a");
}

#[test]
fn fields_others_added_are_out_of_sync_noted_once_and_cleared_when_gone() {
    let state = registered(&["a"]);
    let hash = ContentHash::of(b"v1");
    let mut reports = BundleReports::new("a", &state);
    reports
        .fold(&report("web", &hash.to_string(), 10, applied_ok()))
        .expect("folds");
    let added = |objects: Vec<proto::ObjectMessage>| {
        proto::report::Event::Drift(proto::DriftReport {
            objects,
            corrected: false,
            added: true,
            correction_failed: false,
        })
    };
    let label = proto::ObjectMessage {
        object: "ConfigMap web/settings".into(),
        message: "metadata.labels.team added by kubectl-label".into(),
    };
    let folded = reports
        .fold(&report(
            "web",
            &hash.to_string(),
            20,
            added(vec![label.clone()]),
        ))
        .expect("folds");
    let line = "ConfigMap web/settings: metadata.labels.team added by kubectl-label".to_owned();
    assert_eq!(folded.added, vec![line.clone()]);
    assert!(folded.drifted.is_empty(), "nothing to correct");
    let note = folded
        .last_drift
        .clone()
        .expect("a drift note, so an event");
    assert_eq!(
        (note.objects, note.kind, note.at),
        (vec![line.clone()], DriftKind::Added, Timestamp(20))
    );

    // The same list again (a reconnecting agent sends it whole) is not a new event.
    let again = reports
        .fold(&report("web", &hash.to_string(), 30, added(vec![label])))
        .expect("folds");
    assert_eq!(again.last_drift, folded.last_drift);
    // A correction of other drift leaves the added fields listed.
    let corrected = reports
        .fold(&report(
            "web",
            &hash.to_string(),
            40,
            proto::report::Event::Drift(proto::DriftReport {
                objects: Vec::new(),
                corrected: true,
                added: false,
                correction_failed: false,
            }),
        ))
        .expect("folds");
    assert_eq!(corrected.added, vec![line]);

    let cleared = reports
        .fold(&report("web", &hash.to_string(), 50, added(Vec::new())))
        .expect("folds");
    assert!(cleared.added.is_empty());
}

#[test]
fn new_content_applied_forgets_the_health_judged_for_the_old_until_its_own_arrives() {
    let state = registered(&["a"]);
    let v1 = ContentHash::of(b"v1");
    let v2 = ContentHash::of(b"v2");
    let mut reports = BundleReports::new("a", &state);
    reports
        .fold(&report("web", &v1.to_string(), 10, applied_ok()))
        .expect("folds");
    let healthy = reports
        .fold(&report("web", &v1.to_string(), 20, health("Healthy", &[])))
        .expect("folds");
    assert_eq!(healthy.health, Health::Healthy);

    let same = reports
        .fold(&report("web", &v1.to_string(), 30, applied_ok()))
        .expect("folds");
    assert_eq!(
        same.health,
        Health::Healthy,
        "re-applying v1 keeps its verdict"
    );

    let next = reports
        .fold(&report("web", &v2.to_string(), 40, applied_ok()))
        .expect("folds");
    assert_eq!(next.applied, Some(v2));
    assert_eq!(
        next.health,
        Health::Progressing,
        "v1's Healthy says nothing of v2, which is being judged"
    );
    let judged = reports
        .fold(&report("web", &v2.to_string(), 50, health("Healthy", &[])))
        .expect("folds");
    assert_eq!((judged.applied, judged.health), (Some(v2), Health::Healthy));
}

#[test]
fn a_failed_apply_keeps_the_last_applied_hash_and_says_why() {
    let state = registered(&["a"]);
    let v1 = ContentHash::of(b"v1");
    let v2 = ContentHash::of(b"v2");
    let mut reports = BundleReports::new("a", &state);
    reports
        .fold(&report("web", &v1.to_string(), 10, applied_ok()))
        .expect("folds");
    let failed = proto::report::Event::Apply(proto::ApplyResult {
        permanent: false,
        ok: false,
        errors: vec![proto::ObjectMessage {
            object: "apps/Deployment web/api".into(),
            message: "spec.replicas: Invalid value".into(),
        }],
        applied: 0,
        pruned: 0,
    });
    let folded = reports
        .fold(&report("web", &v2.to_string(), 20, failed))
        .expect("folds");
    assert_eq!(folded.applied, Some(v1));
    assert!(
        folded
            .message
            .starts_with("apply failed: apps/Deployment web/api"),
        "{}",
        folded.message
    );
}

#[test]
fn a_state_snapshot_replaces_what_the_hub_knew() {
    let mut state = registered(&["a"]);
    let old = ContentHash::of(b"old");
    let new = ContentHash::of(b"new");
    state
        .apply(&Command::RecordHealth {
            reports: vec![HealthReport {
                failed: None,
                last_drift: None,
                drift_corrections: 0,
                added: Vec::new(),
                key: HealthKey {
                    cluster: "a".into(),
                    bundle: "web".into(),
                },
                applied: Some(old),
                health: Health::Degraded,
                message: "broken".into(),
                drifted: vec!["v1/ConfigMap web/x".into()],
                at: Timestamp(5),
            }],
        })
        .expect("recorded");
    let mut reports = BundleReports::new("a", &state);
    let snapshot = proto::report::Event::State(proto::BundleState {
        errors_permanent: false,
        applied_hash: new.to_string(),
        health: "Healthy".into(),
        unhealthy: Vec::new(),
        errors: Vec::new(),
    });
    let folded = reports
        .fold(&report("web", &new.to_string(), 50, snapshot))
        .expect("folds");
    assert_eq!(folded.applied, Some(new));
    assert_eq!(folded.health, Health::Healthy);
    assert_eq!(folded.message, "");
    assert_eq!(
        folded.drifted,
        vec!["v1/ConfigMap web/x".to_owned()],
        "drift is known only from drift events, so it stays until one says otherwise"
    );
}

#[test]
fn malformed_reports_are_refused_with_the_bundle_named() {
    let state = registered(&["a"]);
    let mut reports = BundleReports::new("a", &state);
    let err = reports
        .fold(&report("web", "not-a-hash", 1, applied_ok()))
        .expect_err("bad hash accepted");
    assert!(err.to_string().contains("web"), "{err}");
    let err = reports
        .fold(&report("web", "", 1, health("Sparkly", &[])))
        .expect_err("bad health accepted");
    assert!(err.to_string().contains("Sparkly"), "{err}");
}

#[test]
fn only_changes_other_than_time_are_worth_recording() {
    let mut state = registered(&["a"]);
    let key = HealthKey {
        cluster: "a".into(),
        bundle: "web".into(),
    };
    let base = HealthReport {
        failed: None,
        last_drift: None,
        drift_corrections: 0,
        added: Vec::new(),
        key: key.clone(),
        applied: Some(ContentHash::of(b"v1")),
        health: Health::Healthy,
        message: String::new(),
        drifted: Vec::new(),
        at: Timestamp(10),
    };
    assert!(
        super::reports::changes(&state, &base),
        "nothing recorded yet"
    );
    state
        .apply(&Command::RecordHealth {
            reports: vec![base.clone()],
        })
        .expect("recorded");
    let later = HealthReport {
        at: Timestamp(99),
        ..base.clone()
    };
    assert!(!super::reports::changes(&state, &later), "time alone");
    let degraded = HealthReport {
        health: Health::Degraded,
        ..later.clone()
    };
    assert!(super::reports::changes(&state, &degraded));
    let older = HealthReport {
        at: Timestamp(1),
        ..degraded.clone()
    };
    assert!(
        !super::reports::changes(&state, &older),
        "older than recorded"
    );
    let elsewhere = HealthReport {
        failed: None,
        last_drift: None,
        drift_corrections: 0,
        added: Vec::new(),
        key: HealthKey {
            cluster: "gone".into(),
            bundle: "web".into(),
        },
        ..degraded
    };
    assert!(!super::reports::changes(&state, &elsewhere), "unregistered");
}
