use std::collections::BTreeMap;

use super::*;
use crate::state::source::ObjectKey;

/// A fleet of `clusters` × `bundles` whose every cluster renders its own blobs (per-cluster
/// values), each holding three objects in the cluster's namespace.
fn fleet(
    clusters: usize,
    bundles: usize,
) -> (BTreeMap<String, BTreeMap<String, BlobHash>>, BlobIndex) {
    let mut per_cluster = BTreeMap::new();
    let mut entries = Vec::new();
    for c in 0..clusters {
        let cluster = format!("cluster-{c:05}");
        let mut hashes = BTreeMap::new();
        for b in 0..bundles {
            let bundle = format!("bundle-{b:02}");
            let hash = BlobHash::of(format!("{cluster}/{bundle}").as_bytes());
            let keys: Vec<ObjectKey> = ["config", "secret", "web"]
                .iter()
                .map(|name| {
                    (
                        String::new(),
                        "ConfigMap".to_owned(),
                        Some(cluster.clone()),
                        format!("{bundle}-{name}"),
                    )
                })
                .collect();
            entries.push((hash, 4096, keys));
            hashes.insert(bundle, hash);
        }
        per_cluster.insert(cluster, hashes);
    }
    (per_cluster, BlobIndex::of(entries))
}

fn record(bundles: BTreeMap<String, BTreeMap<String, BlobHash>>, index: BlobIndex) -> Vec<Command> {
    record_with_spec(bundles, index, "stages: []\n".into())
}

fn record_with_spec(
    bundles: BTreeMap<String, BTreeMap<String, BlobHash>>,
    index: BlobIndex,
    spec: String,
) -> Vec<Command> {
    let revision = RevisionRef {
        source: "origin".into(),
        commit: "c1".into(),
    };
    render_entries(
        &revision,
        bundles,
        BTreeMap::new(),
        index,
        42,
        Timestamp(2),
        spec.len(),
        |last, staged| Command::RecordRender {
            revision: revision.clone(),
            outcome: RenderOutcome::Rendered {
                bundles: last.bundles,
                index: last.index,
                spec,
                charts: BTreeMap::new(),
                staged,
            },
            at: Timestamp(2),
        },
    )
}

fn fetched() -> State {
    let mut state = State::default();
    state
        .apply(&Command::RecordFetch {
            source: "origin".into(),
            url: "file:///fleet".into(),
            commit: "c1".into(),
            at: Timestamp(1),
        })
        .expect("fetch");
    state
}

#[test]
fn a_large_render_splits_into_entries_under_a_mebibyte_that_record_it_whole() {
    let (bundles, index) = fleet(3_000, 10);
    let entries = record(bundles.clone(), index.clone());
    let sizes: Vec<usize> = entries
        .iter()
        .map(|e| e.encode().expect("encode").len())
        .collect();
    assert!(entries.len() > 1, "{sizes:?}");
    assert!(sizes.iter().all(|s| *s <= 1024 * 1024), "{sizes:?}");
    let mut parts = fetched();
    for entry in &entries {
        parts.apply(entry).expect("entry applies");
    }
    // The same render in one entry gives the same state.
    let mut whole = fetched();
    whole
        .apply(&Command::RecordRender {
            revision: RevisionRef {
                source: "origin".into(),
                commit: "c1".into(),
            },
            outcome: RenderOutcome::Rendered {
                bundles,
                index,
                spec: "stages: []\n".into(),
                charts: BTreeMap::new(),
                staged: None,
            },
            at: Timestamp(2),
        })
        .expect("one entry applies");
    assert_eq!(parts.revisions, whole.revisions);
    assert_eq!(parts.blobs, whole.blobs);
    assert_eq!(parts.object_sets, whole.object_sets);
    assert!(parts.pending_renders.is_empty());
}

#[test]
fn a_small_render_is_one_entry() {
    let (bundles, index) = fleet(20, 3);
    let entries = record(bundles, index);
    assert_eq!(entries.len(), 1);
    assert!(matches!(
        &entries[0],
        Command::RecordRender {
            outcome: RenderOutcome::Rendered { staged: None, .. },
            ..
        }
    ));
}

#[test]
fn the_last_entry_leaves_room_for_a_large_flotilla_yaml() {
    let (bundles, index) = fleet(1_000, 10);
    let spec = format!("# {}\n", "x".repeat(600 * 1024));
    let entries = record_with_spec(bundles, index, spec);
    let sizes: Vec<usize> = entries
        .iter()
        .map(|e| e.encode().expect("encode").len())
        .collect();
    assert!(sizes.iter().all(|s| *s <= 1024 * 1024), "{sizes:?}");
}
