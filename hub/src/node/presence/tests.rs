use std::time::Duration;

use tokio::time::Instant;

use super::{ClaimRefused, PresenceBoard};

fn streams(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(c, i)| ((*c).to_owned(), (*i).to_owned()))
        .collect()
}

fn clusters(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| (*c).to_owned()).collect()
}

#[test]
fn a_claim_for_a_cluster_another_node_streams_from_another_instance_is_refused() {
    let board = PresenceBoard::default();
    let now = Instant::now();
    board.record(2, &clusters(&["dev-1"]), &streams(&[("dev-1", "a")]), now);
    assert_eq!(
        board.claim(3, "dev-1", "b", now),
        Err(ClaimRefused { holder: 2 })
    );
    // The same instance failing over to another node is let through.
    assert_eq!(board.claim(3, "dev-1", "a", now), Ok(()));
    // So is any claim on the node that holds the stream: it decides locally.
    board.record(2, &clusters(&["dev-2"]), &streams(&[("dev-2", "a")]), now);
    assert_eq!(board.claim(2, "dev-2", "b", now), Ok(()));
}

#[test]
fn of_two_claims_at_once_the_second_is_refused() {
    let board = PresenceBoard::default();
    let now = Instant::now();
    assert_eq!(board.claim(1, "dev-1", "a", now), Ok(()));
    assert_eq!(
        board.claim(2, "dev-1", "b", now),
        Err(ClaimRefused { holder: 1 })
    );
    // A report computed before the claim does not drop it.
    board.record(1, &[], &[], now);
    assert_eq!(
        board.claim(2, "dev-1", "b", now),
        Err(ClaimRefused { holder: 1 })
    );
}

#[test]
fn a_stream_is_free_once_its_node_stops_naming_it_or_goes_quiet() {
    let board = PresenceBoard::default();
    board.set_holder_ttl(Duration::from_secs(3));
    let now = Instant::now();
    board.record(2, &clusters(&["dev-1"]), &streams(&[("dev-1", "a")]), now);
    board.record(2, &[], &[], now + Duration::from_millis(100));
    assert_eq!(board.claim(3, "dev-1", "b", now), Ok(()));

    board.record(4, &clusters(&["dev-2"]), &streams(&[("dev-2", "a")]), now);
    assert_eq!(
        board.claim(3, "dev-2", "b", now + Duration::from_secs(2)),
        Err(ClaimRefused { holder: 4 })
    );
    assert_eq!(
        board.claim(3, "dev-2", "b", now + Duration::from_secs(3)),
        Ok(())
    );
}

#[test]
fn streams_of_a_node_that_names_no_instance_match_none() {
    let board = PresenceBoard::default();
    let now = Instant::now();
    board.record(2, &clusters(&["dev-1"]), &[], now);
    assert_eq!(
        board.claim(3, "dev-1", "a", now),
        Err(ClaimRefused { holder: 2 })
    );
    // Liveness still sees the cluster.
    assert!(board.last_seen().contains_key("dev-1"));
}

#[test]
fn a_new_term_forgets_every_holder() {
    let board = PresenceBoard::default();
    let now = Instant::now();
    board.record(2, &clusters(&["dev-1"]), &streams(&[("dev-1", "a")]), now);
    board.reset();
    assert_eq!(board.claim(3, "dev-1", "b", now), Ok(()));
}
