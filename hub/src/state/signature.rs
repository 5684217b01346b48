//! Signed commits: a stage's `requireSignedBy` keys, and the check every revision passes before
//! it may enter such a stage.
//!
//! Which keys: those the stage declares in the `flotilla.yaml` of the revision it runs now —
//! never in the candidate's own, or anyone who can push could name their own key. Only when the
//! stage's current revision requires nothing do the candidate's keys apply, so the commit that
//! turns signing on must itself be signed by a key it names; a stage with no revision yet takes
//! the candidate's keys (trust on first use). Changing or dropping the keys thus takes a commit
//! signed by a key trusted now.
//!
//! The check runs when commands apply (a rollout starting, a stage pinned), so every path —
//! tracking, promotion by the controller or by hand, forced promotion, approval — meets it;
//! verification is pure, so every replica reaches the same verdict. Rolling back is exempt: it
//! returns to a revision the stage already ran.

use flotilla_core::Limits;
use flotilla_core::signing::verify_commit;
use flotilla_core::spec::{FleetSpec, SPEC_FILE, SigningKey};
use serde::{Deserialize, Serialize};

use super::source::{RevisionRef, RevisionStatus};
use super::{CommandError, State};

/// Longest signature (armored) recorded; real ones are a few kilobytes at most.
pub const MAX_SIGNATURE_BYTES: usize = 64 * 1024;

/// Longest signed payload (the commit object without its signature) recorded.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// A commit's signature as git stores it (`git2::Repository::extract_signature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSignature {
    /// The armored signature (`SSH SIGNATURE` or `PGP SIGNATURE`).
    pub signature: String,
    /// The commit object without its `gpgsig` header: what was signed.
    pub payload: String,
}

pub(super) fn record(
    state: &mut State,
    revision: &RevisionRef,
    signature: &CommitSignature,
) -> Result<(), CommandError> {
    if signature.signature.len() > MAX_SIGNATURE_BYTES
        || signature.payload.len() > MAX_PAYLOAD_BYTES
    {
        return Err(CommandError::Invalid(format!(
            "signature of {revision} is larger than {MAX_SIGNATURE_BYTES} bytes or signs more than {MAX_PAYLOAD_BYTES}"
        )));
    }
    let recorded = state
        .revisions
        .get_mut(revision)
        .ok_or_else(|| CommandError::UnknownRevision(revision.clone()))?;
    recorded.signature = Some(signature.clone());
    Ok(())
}

/// What a stage requires of a revision's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The stage requires no signature.
    NotRequired,
    /// Signed by one of the stage's keys.
    SignedBy {
        /// The key's name in `requireSignedBy`.
        key: String,
        /// Its fingerprint.
        fingerprint: String,
    },
}

/// The keys `stage` requires of `candidate` (see the module for which revision's apply).
pub fn required_keys(state: &State, stage: &str, candidate: &RevisionRef) -> Vec<SigningKey> {
    let running = state
        .stages
        .get(stage)
        .and_then(|s| s.pinned.as_ref())
        .map(|pinned| keys_in(state, pinned, stage))
        .unwrap_or_default();
    if running.is_empty() {
        keys_in(state, candidate, stage)
    } else {
        running
    }
}

/// The `requireSignedBy` keys of `stage` in a rendered revision's `flotilla.yaml`.
fn keys_in(state: &State, revision: &RevisionRef, stage: &str) -> Vec<SigningKey> {
    let Some(RevisionStatus::Rendered { spec, .. }) =
        state.revisions.get(revision).map(|r| &r.status)
    else {
        return Vec::new();
    };
    FleetSpec::parse(spec, SPEC_FILE, &Limits::default())
        .ok()
        .and_then(|spec| spec.stage(stage).map(|s| s.require_signed_by.clone()))
        .unwrap_or_default()
}

/// Whether `candidate` may enter `stage` as far as signatures go, and if not, why.
pub fn check(state: &State, stage: &str, candidate: &RevisionRef) -> Result<Verdict, String> {
    let keys = required_keys(state, stage, candidate);
    if keys.is_empty() {
        return Ok(Verdict::NotRequired);
    }
    let signature = state
        .revisions
        .get(candidate)
        .and_then(|r| r.signature.as_ref());
    let verified = verify_commit(
        signature.map_or(&[][..], |s| s.payload.as_bytes()),
        signature.map(|s| s.signature.as_bytes()),
        &keys,
    )
    .map_err(|e| e.to_string())?;
    Ok(Verdict::SignedBy {
        key: verified.key.name.clone(),
        fingerprint: verified.fingerprint,
    })
}

/// [`check`] as a command error.
pub(super) fn require(
    state: &State,
    stage: &str,
    candidate: &RevisionRef,
) -> Result<(), CommandError> {
    check(state, stage, candidate)
        .map(|_| ())
        .map_err(|reason| CommandError::SignatureRequired {
            stage: stage.to_owned(),
            revision: candidate.clone(),
            reason,
        })
}
