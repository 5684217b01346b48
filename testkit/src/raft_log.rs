//! A stopped node's raft log replayed entry by entry through the real state machine: every
//! state the node applied, in order, for tests whose invariant must hold at every instant and
//! not only at the moments a poll happened to look.
//!
//! A replay never skips: it starts from the state of the stored snapshot and applies every
//! entry after it up to the last one known committed, and fails, naming the missing indexes,
//! if any entry in between is not there or is out of place. The last one known committed is
//! the stored commit index or, when the caller read it from the node before it stopped, the
//! index the node had applied: the stored commit index is written without an fsync and lags
//! behind after a SIGKILL, so the log may hold committed entries past it. Entries the snapshot
//! covers are not in the log any more; [`Replayed::whole`] tells a test that needs them whether
//! any were compacted away.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_consensus::storage::{Identity, RaftStore};
use flotilla_consensus::{RequestId, StateMachine};
use flotilla_hub::config::DEFAULT_GROUP;
use flotilla_hub::state::{Command, State};
use raft::eraftpb::{Entry, EntryType};
use raft::{GetEntriesContext, Storage};

/// Index of the founding snapshot a group starts from (see `bootstrap_snapshot`): a log whose
/// snapshot is still this one has lost no entry to compaction.
pub const FOUNDING_SNAPSHOT: u64 = 1;

/// What a replay went through.
#[derive(Debug)]
pub struct Replayed {
    /// Index of the snapshot the replay started from: entries up to it were not replayed.
    pub snapshot: u64,
    /// The state at the snapshot, before the first replayed entry.
    pub at_snapshot: State,
    /// The commit index stored in the log.
    pub commit: u64,
    /// The last entry replayed: the stored commit index or the applied index the caller gave,
    /// whichever is greater.
    pub last: u64,
    /// Entries replayed: every one in `snapshot + 1..=last`.
    pub entries: u64,
    /// The state after the last entry.
    pub state: State,
}

impl Replayed {
    /// Fails unless the replay covered the whole log from the group's founding, that is unless
    /// no entry had been compacted into a snapshot.
    pub fn whole(&self) -> Result<()> {
        if self.snapshot > FOUNDING_SNAPSHOT {
            bail!(
                "entries {}..={} were compacted into the snapshot at {} and not replayed \
                 (raise --compact-after)",
                FOUNDING_SNAPSHOT + 1,
                self.snapshot,
                self.snapshot
            );
        }
        Ok(())
    }
}

/// Checks that `entries` are exactly `snapshot + 1..=last`, in order; names the first gap.
pub fn contiguous(snapshot: u64, last: u64, entries: &[Entry]) -> Result<()> {
    let mut previous = snapshot;
    for entry in entries {
        let expected = previous + 1;
        if entry.index != expected {
            let what = if previous == snapshot {
                format!("the log after the snapshot at {snapshot}")
            } else {
                format!("after entry {previous} the log")
            };
            bail!(
                "entries {expected}..{} were skipped: {what} goes on at entry {}",
                entry.index,
                entry.index
            );
        }
        previous = entry.index;
    }
    if previous != last {
        bail!(
            "entries {}..={last} were skipped: the log read ends at entry {previous} but \
             entry {last} was committed",
            previous + 1
        );
    }
    Ok(())
}

/// Replays the committed log of node `node_id` stored in `dir`, from its snapshot on, calling
/// `each(index, command, state after it)` for every command (refused ones too: the state is
/// then unchanged; and copies of a write already applied, which the state machine recognises
/// by the request id in the entry's context and applies as no-ops, as the node did). `applied` is an index the node had applied, read from it before it
/// stopped (0 if unknown): the replay goes at least that far. The node must have stopped (its
/// log is a file only one process opens).
pub fn replay_log(
    dir: &Path,
    node_id: u64,
    applied: u64,
    mut each: impl FnMut(u64, &Command, &State),
) -> Result<Replayed> {
    replay_with(dir, node_id, applied, |index, command, request, state| {
        // As the node applies it: through the state machine, with the entry's request id.
        let _ = state.apply_command(command, request);
        each(index, command, state);
    })
}

/// One entry of a replay, with the states around it.
pub struct Step<'a> {
    /// The entry's index.
    pub index: u64,
    /// Its command.
    pub command: &'a Command,
    /// The state before it.
    pub before: &'a State,
    /// The state after it (equal to `before` unless it took effect).
    pub after: &'a State,
    /// Whether it took effect: neither refused by the state machine nor a copy of a write
    /// already applied.
    pub took_effect: bool,
}

/// [`replay_log`] showing each entry with the state before it as well, for checks of what an
/// entry may change (`flotilla_hub::state::rollout::invariants`).
pub fn replay_steps(
    dir: &Path,
    node_id: u64,
    applied: u64,
    mut each: impl FnMut(Step<'_>),
) -> Result<Replayed> {
    replay_with(dir, node_id, applied, |index, command, request, state| {
        let before = state.clone();
        let copy = request.is_some_and(|r| before.request_outcome(r).is_some());
        let accepted = state.apply_command(command, request).is_ok();
        each(Step {
            index,
            command,
            before: &before,
            after: state,
            took_effect: accepted && !copy,
        });
    })
}

/// Opens the log and hands every committed command, in order, to `apply` with its request id
/// and the state to apply it to.
fn replay_with(
    dir: &Path,
    node_id: u64,
    applied: u64,
    mut apply: impl FnMut(u64, &Command, Option<RequestId>, &mut State),
) -> Result<Replayed> {
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
    let at_snapshot = match snapshot {
        0 => State::default(),
        _ => State::from_snapshot(&store.snapshot_data()?)?,
    };
    let commit = store.hard_state().commit.max(snapshot);
    let last = commit.max(applied);
    let stored = store.last_index()?;
    if last > stored {
        bail!(
            "entries {}..={last} were skipped: node {node_id} applied up to {last} but its log \
             ends at entry {stored}",
            stored + 1
        );
    }
    let entries = match last > snapshot {
        true => store
            .entries(
                snapshot + 1,
                last + 1,
                None,
                GetEntriesContext::empty(false),
            )
            .with_context(|| format!("reading entries {}..={last} of the log", snapshot + 1))?,
        false => Vec::new(),
    };
    contiguous(snapshot, last, &entries)?;
    let mut state = at_snapshot.clone();
    for entry in &entries {
        if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
            continue;
        }
        let command = Command::decode(&entry.data)?;
        apply(
            entry.index,
            &command,
            RequestId::from_context(&entry.context),
            &mut state,
        );
    }
    Ok(Replayed {
        snapshot,
        at_snapshot,
        commit,
        last,
        entries: entries.len() as u64,
        state,
    })
}

/// [`replay_log`] up to the stored commit index, returning the final state.
pub fn replay(dir: &Path, node_id: u64, each: impl FnMut(u64, &Command, &State)) -> Result<State> {
    Ok(replay_log(dir, node_id, 0, each)?.state)
}
