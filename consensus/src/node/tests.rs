use tokio::sync::oneshot;

use super::EntryOutcome;
use super::waiters::{EntryKind, Proposals, Proposed, Reads};
use crate::RequestId;

/// A state machine's rejection, as far as the waiters care: anything cloneable.
type Rejection = String;

/// A state machine that remembers no request.
fn none(_: RequestId) -> Option<Result<(), Rejection>> {
    None
}

fn command(index: u64, term: u64) -> Proposed {
    Proposed {
        index,
        term,
        request: Some(RequestId([index as u8; 16])),
        conf_change: false,
    }
}

fn waiter() -> (
    oneshot::Sender<EntryOutcome<Rejection>>,
    oneshot::Receiver<EntryOutcome<Rejection>>,
) {
    oneshot::channel()
}

#[test]
fn a_proposal_is_answered_by_the_entry_at_its_index_and_term() {
    let mut proposals = Proposals::<Rejection>::default();
    let (tx, mut rx) = waiter();
    proposals.register(command(5, 2), tx, 4, none);
    assert!(rx.try_recv().is_err(), "answered before its entry applied");
    proposals.resolve(5, 2, EntryKind::Command, EntryOutcome::Applied, none);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Applied)));
}

#[test]
fn an_entry_of_another_term_at_the_index_supersedes_the_proposal() {
    let mut proposals = Proposals::<Rejection>::default();
    let (tx, mut rx) = waiter();
    proposals.register(command(5, 2), tx, 4, none);
    proposals.resolve(5, 3, EntryKind::Command, EntryOutcome::Applied, none);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Superseded)));
}

#[test]
fn a_rejection_reaches_the_proposer() {
    let mut proposals = Proposals::<Rejection>::default();
    let (tx, mut rx) = waiter();
    proposals.register(command(7, 1), tx, 0, none);
    let error: Rejection = "cluster x is not registered".into();
    proposals.resolve(
        7,
        1,
        EntryKind::Command,
        EntryOutcome::Rejected(error.clone()),
        none,
    );
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Rejected(e)) if e == error));
}

#[test]
fn a_conf_change_replaced_by_an_empty_entry_is_refused() {
    let mut proposals = Proposals::<Rejection>::default();
    let (tx, mut rx) = waiter();
    proposals.register(
        Proposed {
            conf_change: true,
            request: None,
            ..command(9, 4)
        },
        tx,
        8,
        none,
    );
    proposals.resolve(9, 4, EntryKind::Empty, EntryOutcome::Applied, none);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Refused(_))));
}

#[test]
fn a_late_registration_is_answered_from_recent_outcomes() {
    let mut proposals = Proposals::<Rejection>::default();
    proposals.resolve(3, 1, EntryKind::Command, EntryOutcome::Applied, none);
    let (tx, mut rx) = waiter();
    proposals.register(command(3, 1), tx, 3, none);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Applied)));
    let (tx, mut rx) = waiter();
    proposals.register(command(2, 1), tx, 3, none);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Unknown)));
}

#[test]
fn a_snapshot_over_waiting_proposals_leaves_their_outcome_unknown() {
    let mut proposals = Proposals::<Rejection>::default();
    let (early, mut early_rx) = waiter();
    let (late, mut late_rx) = waiter();
    proposals.register(command(4, 1), early, 1, none);
    proposals.register(command(12, 1), late, 1, none);
    proposals.unknown_through(10, none);
    assert!(matches!(early_rx.try_recv(), Ok(EntryOutcome::Unknown)));
    assert!(
        late_rx.try_recv().is_err(),
        "a proposal beyond the snapshot was answered"
    );
    proposals.resolve(12, 1, EntryKind::Command, EntryOutcome::Applied, none);
    assert!(matches!(late_rx.try_recv(), Ok(EntryOutcome::Applied)));
}

#[test]
fn a_superseded_or_unknown_copy_of_a_write_learns_what_another_copy_did() {
    let mut proposals = Proposals::<Rejection>::default();
    let request = RequestId([1; 16]);
    let copy = |index| Proposed {
        request: Some(request),
        ..command(index, 2)
    };
    // Another copy of the same write applied: the superseded one says applied.
    let applied = |r: RequestId| (r == request).then_some(Ok(()));
    let (tx, mut rx) = waiter();
    proposals.register(copy(5), tx, 4, none);
    proposals.resolve(5, 3, EntryKind::Command, EntryOutcome::Applied, applied);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Applied)));
    // It was refused: the refusal, not "superseded" or "unknown".
    let refused = |r: RequestId| (r == request).then(|| Err("exists".to_owned()));
    let (tx, mut rx) = waiter();
    proposals.register(copy(20), tx, 4, none);
    proposals.unknown_through(30, refused);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Rejected(e)) if e == "exists"));
    // Nothing known of it: superseded stays superseded.
    let (tx, mut rx) = waiter();
    proposals.register(copy(40), tx, 31, none);
    proposals.resolve(40, 3, EntryKind::Command, EntryOutcome::Applied, none);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Superseded)));
}

#[test]
fn a_read_is_answered_once_applied_reaches_its_confirmed_index() {
    let mut reads = Reads::default();
    let (tx, mut rx) = oneshot::channel();
    reads.add(1, tx, 0);
    reads.release(100);
    assert!(
        rx.try_recv().is_err(),
        "answered before the leader confirmed an index"
    );
    reads.confirmed(1, 20);
    reads.release(19);
    assert!(
        rx.try_recv().is_err(),
        "answered before applying the read index"
    );
    reads.release(20);
    assert_eq!(rx.try_recv().ok(), Some(20));
}

#[test]
fn an_unconfirmed_read_is_reissued_and_an_abandoned_one_forgotten() {
    let mut reads = Reads::default();
    let (tx, rx) = oneshot::channel();
    reads.add(7, tx, 10);
    assert!(reads.due(11, 4).is_empty());
    assert_eq!(reads.due(14, 4), vec![7]);
    assert!(
        reads.due(15, 4).is_empty(),
        "re-issued again before its interval"
    );
    drop(rx);
    reads.release(0);
    assert!(reads.due(100, 4).is_empty(), "an abandoned read was kept");
}
