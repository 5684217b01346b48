use raft::Storage;
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use super::*;

fn identity(id: u64) -> Identity {
    Identity {
        group: "test".into(),
        node_id: id,
    }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry {index}@{term}").into_bytes().into(),
        ..Entry::default()
    }
}

fn bootstrapped(dir: &Path) -> RaftStore {
    let mut store = RaftStore::open(dir, &identity(1)).expect("open");
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = 1;
    snap.mut_metadata().term = 1;
    snap.mut_metadata()
        .set_conf_state(ConfState::from((vec![1], vec![])));
    snap.data = b"image".to_vec().into();
    store.apply_snapshot(&snap).expect("bootstrap");
    store
}

#[test]
fn appended_entries_and_hard_state_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = bootstrapped(dir.path());
        store
            .append(&[entry(2, 1), entry(3, 1), entry(4, 2)], false)
            .expect("append");
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 3,
            ..HardState::default()
        };
        store.set_hard_state(&hs, true).expect("hard state");
    }
    let store = RaftStore::open(dir.path(), &identity(1)).expect("reopen");
    assert!(store.is_initialized());
    assert_eq!(store.first_index().expect("first"), 2);
    assert_eq!(store.last_index().expect("last"), 4);
    assert_eq!(store.term(4).expect("term"), 2);
    assert_eq!(store.term(1).expect("snapshot term"), 1);
    let state = store.initial_state().expect("state");
    assert_eq!(
        (
            state.hard_state.term,
            state.hard_state.vote,
            state.hard_state.commit
        ),
        (2, 1, 3)
    );
    assert_eq!(state.conf_state.voters, vec![1]);
    let entries = store
        .entries(2, 5, None, GetEntriesContext::empty(false))
        .expect("entries");
    assert_eq!(entries, vec![entry(2, 1), entry(3, 1), entry(4, 2)]);
}

#[test]
fn append_replaces_the_conflicting_suffix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = bootstrapped(dir.path());
    store
        .append(&[entry(2, 1), entry(3, 1), entry(4, 1), entry(5, 1)], true)
        .expect("append");
    store.append(&[entry(3, 2)], true).expect("overwrite");
    assert_eq!(store.last_index().expect("last"), 3);
    assert_eq!(store.term(3).expect("term"), 2);
    drop(store);
    let store = RaftStore::open(dir.path(), &identity(1)).expect("reopen");
    assert_eq!(
        store.last_index().expect("last"),
        3,
        "stale suffix came back after reopen"
    );
    let entries = store
        .entries(2, 4, None, GetEntriesContext::empty(false))
        .expect("entries");
    assert_eq!(entries, vec![entry(2, 1), entry(3, 2)]);
}

#[test]
fn append_with_a_gap_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = bootstrapped(dir.path());
    let err = store
        .append(&[entry(5, 1)], true)
        .expect_err("gap accepted");
    assert!(err.to_string().contains("gap"), "{err}");
}

#[test]
fn compaction_keeps_the_snapshot_and_drops_covered_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = bootstrapped(dir.path());
    store
        .append(&[entry(2, 1), entry(3, 1), entry(4, 2), entry(5, 2)], true)
        .expect("append");
    let mut meta = SnapshotMetadata {
        index: 4,
        term: 2,
        ..SnapshotMetadata::default()
    };
    meta.set_conf_state(ConfState::from((vec![1, 2], vec![])));
    store.compact(&meta, b"state at 4").expect("compact");
    assert_eq!(store.first_index().expect("first"), 5);
    assert_eq!(store.term(4).expect("term"), 2);
    assert!(matches!(
        store.entries(3, 5, None, GetEntriesContext::empty(false)),
        Err(raft::Error::Store(StorageError::Compacted))
    ));
    drop(store);
    let store = RaftStore::open(dir.path(), &identity(1)).expect("reopen");
    let snap = store.snapshot(0, 2).expect("snapshot");
    assert_eq!(snap.get_metadata().index, 4);
    assert_eq!(&snap.data[..], b"state at 4");
    assert_eq!(
        store.initial_state().expect("state").conf_state.voters,
        vec![1, 2]
    );
    assert_eq!(store.last_index().expect("last"), 5);
}

#[test]
fn a_snapshot_request_beyond_the_stored_one_is_remembered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = bootstrapped(dir.path());
    assert!(matches!(
        store.snapshot(7, 1),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    ));
    assert_eq!(store.wanted_snapshot(), Some(7));
}

#[test]
fn a_snapshot_for_a_peer_missing_from_its_configuration_is_retaken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = bootstrapped(dir.path());
    assert!(store.snapshot(0, 1).is_ok());
    assert!(matches!(
        store.snapshot(0, 4),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    ));
    assert_eq!(store.wanted_snapshot(), Some(2));
}

#[test]
fn a_data_dir_of_another_node_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(bootstrapped(dir.path()));
    let err = RaftStore::open(dir.path(), &identity(2))
        .err()
        .expect("opened as node 2");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::WrongIdentity { found_id: 1, .. }),
        "{text}"
    );
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("--id 1"), "{text}");
    let other_group = Identity {
        group: "other".into(),
        node_id: 1,
    };
    let err = RaftStore::open(dir.path(), &other_group)
        .err()
        .expect("opened for other group");
    assert!(err.to_string().contains("group 'test'"), "{err}");
}

#[test]
fn a_log_missing_committed_entries_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = bootstrapped(dir.path());
        store
            .append(&[entry(2, 1), entry(3, 1)], true)
            .expect("append");
        let hs = HardState {
            term: 1,
            commit: 6,
            ..HardState::default()
        };
        store.set_hard_state(&hs, true).expect("hard state");
    }
    let err = RaftStore::open(dir.path(), &identity(1))
        .err()
        .expect("opened");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Damaged { .. }), "{text}");
    assert!(text.contains("tail was lost"), "{text}");
    assert!(text.contains("member remove"), "{text}");
}

#[test]
fn a_second_open_of_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = bootstrapped(dir.path());
    let err = RaftStore::open(dir.path(), &identity(1))
        .err()
        .expect("opened twice");
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
}
