//! A stopped node's raft log replayed entry by entry: the code lives in
//! `flotilla_testkit::raft_log`, shared with the workspace's end-to-end tests; these tests of
//! its gap detection stay with the hub's tests, which rely on it most.
#![allow(unreachable_pub)]

pub use flotilla_testkit::raft_log::*;

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn at(indexes: &[u64]) -> Vec<Entry> {
        indexes
            .iter()
            .map(|&index| Entry {
                index,
                ..Entry::default()
            })
            .collect()
    }

    #[test]
    fn a_whole_log_passes() {
        contiguous(1, 4, &at(&[2, 3, 4])).expect("whole");
        contiguous(5, 5, &[]).expect("nothing committed after the snapshot");
    }

    #[test]
    fn every_gap_is_named() {
        let gap = |snapshot, commit, indexes: &[u64]| {
            contiguous(snapshot, commit, &at(indexes))
                .expect_err("a gap")
                .to_string()
        };
        assert_eq!(
            gap(1, 5, &[3, 4, 5]),
            "entries 2..3 were skipped: the log after the snapshot at 1 goes on at entry 3"
        );
        assert_eq!(
            gap(1, 6, &[2, 3, 6]),
            "entries 4..6 were skipped: after entry 3 the log goes on at entry 6"
        );
        assert_eq!(
            gap(1, 6, &[2, 3, 4]),
            "entries 5..=6 were skipped: the log read ends at entry 4 but entry 6 was committed"
        );
        assert_eq!(
            gap(10, 12, &[]),
            "entries 11..=12 were skipped: the log read ends at entry 10 but entry 12 was committed"
        );
    }
}
