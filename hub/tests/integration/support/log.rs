//! A stopped node's raft log replayed entry by entry through the real state machine: every
//! state the node applied, in order, for tests whose invariant must hold at every instant and
//! not only at the moments a poll happened to look.
#![allow(unreachable_pub)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_consensus::storage::{Identity, RaftStore};
use flotilla_hub::config::DEFAULT_GROUP;
use flotilla_hub::state::{Command, State};
use raft::eraftpb::EntryType;
use raft::{GetEntriesContext, Storage};

/// Replays the committed log of node `node_id` stored in `dir`, from its snapshot on, calling
/// `each(index, command, state after it)` for every command (refused ones too: the state is
/// then unchanged). Returns the final state. The node must have stopped (its log is a file
/// only one process opens).
pub fn replay(
    dir: &Path,
    node_id: u64,
    mut each: impl FnMut(u64, &Command, &State),
) -> Result<State> {
    let identity = Identity {
        group: DEFAULT_GROUP.to_owned(),
        node_id,
    };
    let mut store = None;
    for _ in 0..50 {
        match RaftStore::open(dir, &identity) {
            Ok(opened) => {
                store = Some(opened);
                break;
            }
            // The stopping node may still hold the file for a moment.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let store = store.with_context(|| format!("opening the raft log in {}", dir.display()))?;
    let snapshot = store.snapshot_metadata().index;
    let mut state = match snapshot {
        0 => State::default(),
        _ => State::from_snapshot(&store.snapshot_data()?)?,
    };
    let commit = store.hard_state().commit;
    if commit <= snapshot {
        return Ok(state);
    }
    let entries = store
        .entries(
            snapshot + 1,
            commit + 1,
            None,
            GetEntriesContext::empty(false),
        )
        .context("reading the log (was it compacted? raise --compact-after)")?;
    for (expected, entry) in (snapshot + 1..).zip(entries) {
        if entry.index != expected {
            bail!("log entry {} where {expected} was expected", entry.index);
        }
        if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
            continue;
        }
        let command = Command::decode(&entry.data)?;
        let _ = state.apply(&command);
        each(entry.index, &command, &state);
    }
    Ok(state)
}
