//! The pipeline a hub runs: the stages declared by the newest good revision's `flotilla.yaml`.
//!
//! Stage definitions (selectors, sources, rollout policies) are taken from the newest revision
//! that rendered — the source head when it rendered, else the newest rendered one — while each
//! stage's *content* is the revision it is pinned to. So a commit that changes a selector moves
//! clusters between stages once it renders, and a broken commit changes nothing.

use flotilla_core::Limits;
use flotilla_core::spec::{FleetSpec, SPEC_FILE};

use crate::state::State;
use crate::state::source::{RevisionRef, RevisionStatus};

/// The revision whose `flotilla.yaml` defines the pipeline of `source`.
pub fn current_revision(state: &State, source: &str) -> Option<RevisionRef> {
    head_if_rendered(state, source).or_else(|| {
        state
            .revisions
            .iter()
            .filter(|(r, rev)| {
                r.source == source && matches!(rev.status, RevisionStatus::Rendered { .. })
            })
            .max_by_key(|(_, rev)| rev.seq)
            .map(|(r, _)| r.clone())
    })
}

/// The source's head, when it rendered.
pub fn head_if_rendered(state: &State, source: &str) -> Option<RevisionRef> {
    let commit = state.sources.get(source)?.head.clone()?;
    let revision = RevisionRef {
        source: source.to_owned(),
        commit,
    };
    matches!(
        state.revisions.get(&revision)?.status,
        RevisionStatus::Rendered { .. }
    )
    .then_some(revision)
}

/// The parsed `flotilla.yaml` of a rendered revision. It parsed when the revision rendered, so a
/// failure here means a newer hub wrote it; it is logged and treated as absent.
pub fn spec_of(state: &State, revision: &RevisionRef) -> Option<FleetSpec> {
    let text = state.revisions.get(revision)?.spec()?;
    match FleetSpec::parse(text, SPEC_FILE, &Limits::default()) {
        Ok(spec) => Some(spec),
        Err(e) => {
            tracing::error!(%revision, error = %e, "a rendered revision's flotilla.yaml does not parse");
            None
        }
    }
}

/// The current pipeline of `source`, with the revision it comes from.
pub fn current(state: &State, source: &str) -> Option<(RevisionRef, FleetSpec)> {
    let revision = current_revision(state, source)?;
    let spec = spec_of(state, &revision)?;
    Some((revision, spec))
}

/// A commit id shortened for messages and tables.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
