use tokio::sync::oneshot;

use super::EntryOutcome;
use super::waiters::{EntryKind, Proposals, Reads};

/// A state machine's rejection, as far as the waiters care: anything cloneable.
type Rejection = String;

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
    proposals.register(5, 2, false, tx, 4);
    assert!(rx.try_recv().is_err(), "answered before its entry applied");
    proposals.resolve(5, 2, EntryKind::Command, EntryOutcome::Applied);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Applied)));
}

#[test]
fn an_entry_of_another_term_at_the_index_supersedes_the_proposal() {
    let mut proposals = Proposals::<Rejection>::default();
    let (tx, mut rx) = waiter();
    proposals.register(5, 2, false, tx, 4);
    proposals.resolve(5, 3, EntryKind::Command, EntryOutcome::Applied);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Superseded)));
}

#[test]
fn a_rejection_reaches_the_proposer() {
    let mut proposals = Proposals::<Rejection>::default();
    let (tx, mut rx) = waiter();
    proposals.register(7, 1, false, tx, 0);
    let error: Rejection = "cluster x is not registered".into();
    proposals.resolve(
        7,
        1,
        EntryKind::Command,
        EntryOutcome::Rejected(error.clone()),
    );
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Rejected(e)) if e == error));
}

#[test]
fn a_conf_change_replaced_by_an_empty_entry_is_refused() {
    let mut proposals = Proposals::<Rejection>::default();
    let (tx, mut rx) = waiter();
    proposals.register(9, 4, true, tx, 8);
    proposals.resolve(9, 4, EntryKind::Empty, EntryOutcome::Applied);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Refused(_))));
}

#[test]
fn a_late_registration_is_answered_from_recent_outcomes() {
    let mut proposals = Proposals::<Rejection>::default();
    proposals.resolve(3, 1, EntryKind::Command, EntryOutcome::Applied);
    let (tx, mut rx) = waiter();
    proposals.register(3, 1, false, tx, 3);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Applied)));
    let (tx, mut rx) = waiter();
    proposals.register(2, 1, false, tx, 3);
    assert!(matches!(rx.try_recv(), Ok(EntryOutcome::Unknown)));
}

#[test]
fn a_snapshot_over_waiting_proposals_leaves_their_outcome_unknown() {
    let mut proposals = Proposals::<Rejection>::default();
    let (early, mut early_rx) = waiter();
    let (late, mut late_rx) = waiter();
    proposals.register(4, 1, false, early, 1);
    proposals.register(12, 1, false, late, 1);
    proposals.unknown_through(10);
    assert!(matches!(early_rx.try_recv(), Ok(EntryOutcome::Unknown)));
    assert!(
        late_rx.try_recv().is_err(),
        "a proposal beyond the snapshot was answered"
    );
    proposals.resolve(12, 1, EntryKind::Command, EntryOutcome::Applied);
    assert!(matches!(late_rx.try_recv(), Ok(EntryOutcome::Applied)));
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
