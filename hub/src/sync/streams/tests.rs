use std::time::Duration;

use tokio::time::Instant;

use super::{Liveness, Streams};

const ALLOWANCE: Duration = Duration::from_secs(3);

fn silent_for(liveness: &Liveness, silence: Duration) {
    if let Some(then) = Instant::now().checked_sub(silence) {
        *liveness.heard.lock() = then;
    }
}

#[test]
fn another_instance_is_refused_while_the_first_stream_lives() {
    let streams = Streams::default();
    let first = streams
        .open("dev-1", "agent-a", Liveness::new(ALLOWANCE))
        .expect("the first stream");
    let held = streams
        .open("dev-1", "agent-b", Liveness::new(ALLOWANCE))
        .err()
        .expect("a second instance refused");
    assert!(held.heard_ago < ALLOWANCE, "{held:?}");
    assert!(!first.replaced.is_cancelled());
    assert_eq!(
        streams.streams(),
        [("dev-1".to_owned(), "agent-a".to_owned())]
    );
    // Other clusters are not affected.
    let _other = streams
        .open("dev-2", "agent-b", Liveness::new(ALLOWANCE))
        .expect("another cluster's stream");
}

#[test]
fn the_same_instance_reconnecting_takes_over_at_once() {
    let streams = Streams::default();
    let old = streams
        .open("dev-1", "agent-a", Liveness::new(ALLOWANCE))
        .expect("the first stream");
    let new = streams
        .open("dev-1", "agent-a", Liveness::new(ALLOWANCE))
        .expect("the reconnect");
    assert!(old.replaced.is_cancelled());
    // The old stream ending later does not unregister the new one.
    drop(old);
    assert_eq!(streams.clusters(), ["dev-1"]);
    drop(new);
    assert!(streams.clusters().is_empty());
}

#[test]
fn a_silent_stream_gives_way_to_any_instance() {
    let streams = Streams::default();
    let liveness = Liveness::new(ALLOWANCE);
    let old = streams
        .open("dev-1", "agent-a", liveness.clone())
        .expect("the first stream");
    silent_for(&liveness, ALLOWANCE + Duration::from_secs(1));
    let _new = streams
        .open("dev-1", "agent-b", Liveness::new(ALLOWANCE))
        .expect("a new instance after the old went silent");
    assert!(old.replaced.is_cancelled());
    assert_eq!(
        streams.streams(),
        [("dev-1".to_owned(), "agent-b".to_owned())]
    );
}

#[test]
fn agents_without_an_instance_never_match_one_another() {
    let streams = Streams::default();
    let _old = streams
        .open("dev-1", "", Liveness::new(ALLOWANCE))
        .expect("the first stream");
    assert!(streams.open("dev-1", "", Liveness::new(ALLOWANCE)).is_err());
}
