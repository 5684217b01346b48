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

// The log on a simulated disk: power loss and disk faults.

fn bootstrapped_on(dir: &Path, disk: &SimulatedDisk) -> RaftStore {
    let mut store = RaftStore::open_on(dir, &identity(1), Some(disk)).expect("open");
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = 1;
    snap.mut_metadata().term = 1;
    snap.mut_metadata()
        .set_conf_state(ConfState::from((vec![1], vec![])));
    snap.data = b"image".to_vec().into();
    store.apply_snapshot(&snap).expect("bootstrap");
    store
}

fn reopen(dir: &Path, disk: &SimulatedDisk) -> RaftStore {
    RaftStore::open_on(dir, &identity(1), Some(disk)).expect("reopen")
}

fn hard_state(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: 1,
        commit,
        ..HardState::default()
    }
}

/// Every entry of the log, read back from disk.
fn all_entries(store: &RaftStore) -> Vec<Entry> {
    let (first, last) = (store.first(), store.last());
    store
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .expect("entries")
}

#[test]
fn durable_appends_and_hard_state_survive_a_power_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SimulatedDisk::new();
    let mut store = bootstrapped_on(dir.path(), &disk);
    store
        .append(&[entry(2, 1), entry(3, 1)], true)
        .expect("append");
    // The ready's pattern: a non-durable append made durable by the hard state's sync.
    store.append(&[entry(4, 2)], false).expect("append");
    store
        .set_hard_state(&hard_state(2, 3), true)
        .expect("hard state");
    assert_eq!(
        disk.unsynced_bytes(),
        0,
        "a durable commit left writes unsynced"
    );
    disk.power_cut();
    drop(store);

    let store = reopen(dir.path(), &disk);
    assert!(store.is_initialized());
    assert_eq!(
        all_entries(&store),
        vec![entry(2, 1), entry(3, 1), entry(4, 2)]
    );
    let hs = store.hard_state();
    assert_eq!((hs.term, hs.vote, hs.commit), (2, 1, 3));
    assert!(
        !dir.path().join(DB_FILE).exists(),
        "the log went to the data dir"
    );
}

#[test]
fn a_non_durable_append_is_lost_by_a_power_cut_and_the_log_still_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SimulatedDisk::new();
    let mut store = bootstrapped_on(dir.path(), &disk);
    store
        .append(&[entry(2, 1), entry(3, 1)], true)
        .expect("append");
    store
        .append(&[entry(4, 1), entry(5, 1)], false)
        .expect("append");
    assert_eq!(store.last(), 5);
    disk.power_cut();
    drop(store);

    let store = reopen(dir.path(), &disk);
    assert_eq!(all_entries(&store), vec![entry(2, 1), entry(3, 1)]);
}

#[test]
fn a_store_cut_off_by_a_power_cut_writes_nothing_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SimulatedDisk::new();
    let mut store = bootstrapped_on(dir.path(), &disk);
    store.append(&[entry(2, 1)], true).expect("append");
    disk.power_cut();
    let err = store
        .append(&[entry(3, 1)], true)
        .expect_err("a write after the power cut succeeded");
    assert!(err.needs_reopen(), "{err}");
    // The old process's lock died with it: the next open does not wait for it to go.
    let reopened = reopen(dir.path(), &disk);
    drop(store);
    assert_eq!(all_entries(&reopened), vec![entry(2, 1)]);
}

#[test]
fn a_second_open_of_the_same_simulated_disk_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SimulatedDisk::new();
    let first = bootstrapped_on(dir.path(), &disk);
    let err = RaftStore::open_on(dir.path(), &identity(1), Some(&disk))
        .err()
        .expect("opened twice");
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    drop(first);
    assert!(reopen(dir.path(), &disk).is_initialized());
}

#[test]
fn a_torn_power_cut_never_loses_durable_writes_nor_damages_the_log() {
    let durable = [entry(2, 1), entry(3, 1), entry(4, 1), entry(5, 1)];
    let everything: Vec<Entry> = (2..=8).map(|i| entry(i, 1)).collect();
    for seed in 0..200 {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = SimulatedDisk::new();
        let mut store = bootstrapped_on(dir.path(), &disk);
        store.append(&durable[..2], true).expect("append");
        store
            .set_hard_state(&hard_state(1, 3), true)
            .expect("hard state");
        store.append(&durable[2..3], false).expect("append");
        store.append(&durable[3..], true).expect("append");
        store
            .append(&[entry(6, 1), entry(7, 1)], false)
            .expect("append");
        store.set_commit(7).expect("commit");
        // A commit whose sync fails leaves all its writes unsynced for the cut to tear.
        disk.fail_next_sync();
        store
            .append(&[entry(8, 1)], true)
            .expect_err("the failed sync was not reported");
        assert!(
            disk.unsynced_bytes() > 0,
            "seed {seed}: nothing left to tear"
        );
        disk.power_cut_torn(seed);
        drop(store);

        let store = RaftStore::open_on(dir.path(), &identity(1), Some(&disk))
            .unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"));
        let entries = all_entries(&store);
        assert!(
            entries.len() >= durable.len() && everything.starts_with(&entries),
            "seed {seed}: log {:?}",
            entries.iter().map(|e| e.index).collect::<Vec<_>>()
        );
        let hs = store.hard_state();
        assert!(
            hs.commit >= 3 && hs.commit <= store.last() && hs.term == 1,
            "seed {seed}: hard state {hs:?}"
        );
        assert_eq!(store.snapshot_data().expect("snapshot"), b"image");
    }
}

#[test]
fn a_failed_sync_fails_the_append_and_a_power_cut_keeps_the_log_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SimulatedDisk::new();
    let mut store = bootstrapped_on(dir.path(), &disk);
    store
        .append(&[entry(2, 1), entry(3, 1)], true)
        .expect("append");
    store
        .set_hard_state(&hard_state(1, 3), true)
        .expect("hard state");
    let syncs = disk.syncs();
    disk.fail_next_sync();
    let err = store
        .append(&[entry(4, 1)], true)
        .expect_err("a failed sync went unreported");
    assert!(err.needs_reopen(), "{err}");
    assert_eq!(disk.syncs(), syncs, "the failed sync counted as done");
    assert_eq!(
        store.last(),
        3,
        "the store counts the failed append as written"
    );
    disk.power_cut();
    drop(store);

    let store = reopen(dir.path(), &disk);
    assert_eq!(all_entries(&store), vec![entry(2, 1), entry(3, 1)]);
    assert_eq!(store.hard_state().commit, 3);
}

/// Like Linux after a failed fsync: the written pages are still what reads see, so a reopen
/// without power loss may find an append that was reported as failed.
#[test]
fn a_reopen_without_power_loss_may_find_the_append_whose_sync_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SimulatedDisk::new();
    let mut store = bootstrapped_on(dir.path(), &disk);
    store.append(&[entry(2, 1)], true).expect("append");
    disk.fail_next_sync();
    store
        .append(&[entry(3, 1)], true)
        .expect_err("a failed sync went unreported");
    drop(store);
    assert_eq!(
        all_entries(&reopen(dir.path(), &disk)),
        vec![entry(2, 1), entry(3, 1)]
    );
}

#[test]
fn after_an_io_error_the_open_log_refuses_writes_until_it_is_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SimulatedDisk::new();
    let mut store = bootstrapped_on(dir.path(), &disk);
    store.append(&[entry(2, 1)], true).expect("append");
    disk.fail_next_sync();
    store
        .append(&[entry(3, 1)], true)
        .expect_err("a failed sync went unreported");
    let err = store
        .append(&[entry(3, 1)], true)
        .expect_err("redb took a write after an I/O error");
    assert!(
        matches!(&err, StoreError::Db { source, .. } if matches!(**source, redb::Error::PreviousIo)),
        "{err}"
    );
    assert!(err.needs_reopen());
    drop(store);

    let mut store = reopen(dir.path(), &disk);
    store
        .append(&[entry(3, 1)], true)
        .expect("append after reopen");
    disk.power_cut();
    drop(store);
    assert_eq!(
        all_entries(&reopen(dir.path(), &disk)),
        vec![entry(2, 1), entry(3, 1)]
    );
}

fn big_entry(index: u64) -> Entry {
    Entry {
        index,
        term: 1,
        data: vec![index as u8; 4 << 20].into(),
        ..Entry::default()
    }
}

#[test]
fn a_full_disk_fails_a_growing_append_with_disk_full_and_a_reopen_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SimulatedDisk::new();
    let mut store = bootstrapped_on(dir.path(), &disk);
    store.append(&[entry(2, 1)], true).expect("append");
    disk.set_full(true);
    let err = store
        .append(&[big_entry(3)], true)
        .expect_err("a full disk took 4 MiB");
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert!(err.needs_reopen());
    disk.set_full(false);
    let same = store.append(&[big_entry(3)], true);
    assert!(
        matches!(&same, Err(StoreError::Db { source, .. }) if matches!(**source, redb::Error::PreviousIo)),
        "the same open log after space was freed: {same:?}"
    );
    drop(store);

    let mut store = reopen(dir.path(), &disk);
    assert_eq!(all_entries(&store), vec![entry(2, 1)]);
    store
        .append(&[big_entry(3)], true)
        .expect("append after space was freed");
    disk.power_cut();
    drop(store);
    assert_eq!(
        all_entries(&reopen(dir.path(), &disk)),
        vec![entry(2, 1), big_entry(3)]
    );
}

#[test]
fn opening_on_a_full_disk_says_the_disk_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SimulatedDisk::new();
    disk.set_full(true);
    let err = RaftStore::open_on(dir.path(), &identity(1), Some(&disk))
        .err()
        .expect("opened on a full disk");
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
}

#[test]
fn a_full_disk_takes_writes_within_its_length_and_refuses_growth() {
    use redb::StorageBackend;
    let disk = SimulatedDisk::new();
    let backend = disk.backend();
    backend.set_len(8).expect("grow");
    disk.set_full(true);
    backend.write(4, b"abcd").expect("write within the length");
    let err = backend.write(6, b"abcd").expect_err("grew a full disk");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    let err = backend.set_len(9).expect_err("grew a full disk");
    assert_eq!(err.raw_os_error(), Some(28));
    backend.set_len(4).expect("shrinking needs no space");
    assert_eq!(backend.len().expect("len"), 4);
}

#[test]
fn a_torn_power_cut_keeps_each_unsynced_write_or_not_by_its_seed() {
    use redb::StorageBackend;
    let survivors = |seed| {
        let disk = SimulatedDisk::new();
        let backend = disk.backend();
        backend.write(0, &[0; 64]).expect("write");
        backend.sync_data().expect("sync");
        for i in 0..64 {
            backend.write(i, &[1]).expect("write");
        }
        assert_eq!(disk.unsynced_bytes(), 64);
        disk.power_cut_torn(seed);
        assert!(backend.len().is_err(), "a backend outlived the power cut");
        let mut image = [0; 64];
        disk.backend().read(0, &mut image).expect("read");
        image
    };
    let torn = survivors(7);
    assert_eq!(torn, survivors(7), "the same seed tore differently");
    assert_ne!(torn, survivors(8), "the seed changed nothing");
    let kept = torn.iter().filter(|&&b| b == 1).count();
    assert!(kept > 0 && kept < 64, "{kept} of 64 writes survived");
}
