//! How many requests each virtual cluster has served, by verb: the server-side count a
//! benchmark reads instead of trusting its client.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::route::Verb;

/// Requests a virtual cluster has answered since it was created, by verb. The counts only
/// grow: read them before and after a step and subtract.
///
/// A watch counts once, when it is opened. Requests answered with an error (including a
/// `ServerErrors` fault) count; requests dropped by an `Unreachable` fault do not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// Every request answered.
    pub total: u64,
    /// GETs of one object or subresource.
    pub get: u64,
    /// GETs of a collection.
    pub list: u64,
    /// Watches opened.
    pub watch: u64,
    /// POSTs.
    pub create: u64,
    /// PUTs.
    pub update: u64,
    /// PATCHes other than server-side apply.
    pub patch: u64,
    /// Server-side applies (PATCH with `application/apply-patch+yaml`).
    pub apply: u64,
    /// DELETEs of one object.
    pub delete: u64,
    /// DELETEs of a collection.
    pub delete_collection: u64,
    /// Requests that are not for a resource: discovery, OpenAPI, version, health.
    pub other: u64,
    /// Of the writes above, those with `dryRun=All`.
    pub dry_run: u64,
}

impl RequestCounts {
    /// What was served between `earlier` and this reading.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            total: self.total.saturating_sub(earlier.total),
            get: self.get.saturating_sub(earlier.get),
            list: self.list.saturating_sub(earlier.list),
            watch: self.watch.saturating_sub(earlier.watch),
            create: self.create.saturating_sub(earlier.create),
            update: self.update.saturating_sub(earlier.update),
            patch: self.patch.saturating_sub(earlier.patch),
            apply: self.apply.saturating_sub(earlier.apply),
            delete: self.delete.saturating_sub(earlier.delete),
            delete_collection: self
                .delete_collection
                .saturating_sub(earlier.delete_collection),
            other: self.other.saturating_sub(earlier.other),
            dry_run: self.dry_run.saturating_sub(earlier.dry_run),
        }
    }
}

const VERBS: usize = 10;

fn slot(verb: Verb) -> usize {
    match verb {
        Verb::Get => 0,
        Verb::List => 1,
        Verb::Watch => 2,
        Verb::Create => 3,
        Verb::Update => 4,
        Verb::Patch => 5,
        Verb::Apply => 6,
        Verb::Delete => 7,
        Verb::DeleteCollection => 8,
        Verb::Other => 9,
    }
}

/// One cluster's counters: atomics, so counting never takes the cluster's lock.
#[derive(Debug, Default)]
pub(crate) struct RequestCounters {
    by_verb: [AtomicU64; VERBS],
    dry_run: AtomicU64,
}

impl RequestCounters {
    /// Counts one answered request.
    pub(crate) fn record(&self, verb: Verb, dry_run: bool) {
        self.by_verb[slot(verb)].fetch_add(1, Ordering::Relaxed);
        if dry_run {
            self.dry_run.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts now.
    pub(crate) fn snapshot(&self) -> RequestCounts {
        let n = |verb: Verb| self.by_verb[slot(verb)].load(Ordering::Relaxed);
        let mut c = RequestCounts {
            total: 0,
            get: n(Verb::Get),
            list: n(Verb::List),
            watch: n(Verb::Watch),
            create: n(Verb::Create),
            update: n(Verb::Update),
            patch: n(Verb::Patch),
            apply: n(Verb::Apply),
            delete: n(Verb::Delete),
            delete_collection: n(Verb::DeleteCollection),
            other: n(Verb::Other),
            dry_run: self.dry_run.load(Ordering::Relaxed),
        };
        c.total = c.get
            + c.list
            + c.watch
            + c.create
            + c.update
            + c.patch
            + c.apply
            + c.delete
            + c.delete_collection
            + c.other;
        c
    }
}
