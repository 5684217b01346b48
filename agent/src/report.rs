//! Report events: what the engine tells the hub (and the person running it) about each bundle.

use std::fmt;
use std::time::Duration;

use flotilla_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use crate::health::{BundleHealth, Health};
use crate::object::ObjectRef;

/// One event about one bundle revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Bundle name.
    pub bundle: String,
    /// Revision id the event is about.
    pub revision: String,
    /// Content hash of that revision.
    pub content_hash: String,
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What happened.
    pub event: Event,
}

/// A message about one object, or about the bundle as a whole when `object` is empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMessage {
    /// The object, formatted like `apps/Deployment web/api`; empty for the whole bundle.
    pub object: String,
    /// What is wrong with it, or what happened to it.
    pub message: String,
}

impl ObjectMessage {
    /// A message about one object.
    pub fn new(object: &ObjectRef, message: impl Into<String>) -> Self {
        ObjectMessage {
            object: object.to_string(),
            message: message.into(),
        }
    }

    /// A message about the bundle as a whole.
    pub fn bundle(message: impl Into<String>) -> Self {
        ObjectMessage {
            object: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ObjectMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.object.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.object, self.message)
        }
    }
}

/// What happened to a bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Event {
    /// Applying a revision started.
    Applying {
        /// Objects in the revision.
        objects: usize,
    },
    /// Every object of the revision was applied and what left the bundle was pruned.
    Applied {
        /// Objects applied.
        applied: usize,
        /// Objects pruned because they left the bundle.
        pruned: usize,
    },
    /// The revision was not applied. Nothing was pruned.
    ApplyFailed {
        /// Each failing object with the API server's message, or bundle-wide errors.
        errors: Vec<ObjectMessage>,
        /// Whether the failure was written before anything was, so the cluster is unchanged
        /// (apart from CRDs and Namespaces the revision's custom resources needed).
        nothing_written: bool,
        /// When the engine tries again by itself: for transient failures (server errors,
        /// timeouts, an unreachable cluster). `None` for errors only a new revision fixes.
        retry_in: Option<Duration>,
    },
    /// Objects that left the bundle were deleted.
    Pruned {
        /// The objects deleted.
        objects: Vec<String>,
        /// Objects that left the bundle but were kept: `flotilla.dev/prune: "false"`, taken
        /// over by someone else, or not created by Flotilla.
        kept: Vec<ObjectMessage>,
        /// Objects whose deletion failed; they stay in the inventory and are tried again.
        failed: Vec<ObjectMessage>,
    },
    /// The bundle's health changed.
    HealthChanged(BundleHealth),
    /// Someone changed a managed field of, or deleted, an object of the bundle.
    DriftDetected {
        /// The objects and what changed in each.
        objects: Vec<ObjectMessage>,
    },
    /// Drifted objects were re-applied.
    DriftCorrected {
        /// The objects re-applied.
        objects: Vec<String>,
    },
    /// Re-applying drifted objects failed; the engine tries again at the next change or retry.
    DriftCorrectionFailed {
        /// Each failing object with the API server's message.
        errors: Vec<ObjectMessage>,
    },
    /// The fields other managers added to the bundle's objects changed: additive drift, which
    /// is reported and never corrected (server-side apply cannot remove another manager's
    /// fields, and removing them would fight whoever added them).
    FieldsAdded {
        /// Every object with added fields now, each with the fields and their managers; empty
        /// when none is left.
        objects: Vec<ObjectMessage>,
    },
    /// The bundle was removed and everything it owned was pruned.
    Removed {
        /// Objects pruned.
        pruned: usize,
    },
}

impl fmt::Display for Report {
    /// One readable line (or a few, for per-object lists) per report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let revision = short(&self.revision);
        write!(f, "{} @{revision}: ", self.bundle)?;
        match &self.event {
            Event::Applying { objects } => write!(f, "applying {objects} objects"),
            Event::Applied { applied, pruned } => {
                write!(f, "applied {applied} objects, pruned {pruned}")
            }
            Event::ApplyFailed {
                errors,
                nothing_written,
                retry_in,
            } => {
                f.write_str("apply failed")?;
                if *nothing_written {
                    f.write_str(", nothing written")?;
                }
                match retry_in {
                    Some(delay) => write!(f, "; retrying in {:.1}s", delay.as_secs_f64())?,
                    None => f.write_str("; waiting for a new revision")?,
                }
                list(f, errors)
            }
            Event::Pruned {
                objects,
                kept,
                failed,
            } => {
                write!(f, "pruned {} objects", objects.len())?;
                list(f, objects)?;
                if !kept.is_empty() {
                    write!(f, "\n  kept {}:", kept.len())?;
                    list(f, kept)?;
                }
                if !failed.is_empty() {
                    write!(f, "\n  failed to prune {}:", failed.len())?;
                    list(f, failed)?;
                }
                Ok(())
            }
            Event::HealthChanged(health) => {
                write!(f, "health {}", health.health)?;
                for (object, h) in &health.unhealthy {
                    write!(f, "\n  {object}: {}", h.health)?;
                    if !h.message.is_empty() {
                        write!(f, ": {}", h.message)?;
                    }
                }
                Ok(())
            }
            Event::DriftDetected { objects } => {
                write!(f, "drift detected in {} objects", objects.len())?;
                list(f, objects)
            }
            Event::DriftCorrected { objects } => {
                write!(f, "drift corrected: re-applied {} objects", objects.len())?;
                list(f, objects)
            }
            Event::DriftCorrectionFailed { errors } => {
                f.write_str("drift correction failed")?;
                list(f, errors)
            }
            Event::FieldsAdded { objects } if objects.is_empty() => {
                f.write_str("no fields added by others are left")
            }
            Event::FieldsAdded { objects } => {
                write!(f, "fields added by others in {} objects", objects.len())?;
                list(f, objects)
            }
            Event::Removed { pruned } => write!(f, "removed; pruned {pruned} objects"),
        }
    }
}

fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for item in items {
        write!(f, "\n  {item}")?;
    }
    Ok(())
}

/// The first 12 characters of a revision id, as Git prints commits.
fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

impl Report {
    /// The protocol message for this report, or `None` for events the hub does not record
    /// (`Applying`, and `Pruned`, whose count the following `Applied` carries).
    pub fn to_proto(&self) -> Option<proto::Report> {
        use proto::report::Event as Wire;
        let messages = |items: &[ObjectMessage]| -> Vec<proto::ObjectMessage> {
            items.iter().map(ObjectMessage::to_proto).collect()
        };
        let names = |items: &[String]| -> Vec<proto::ObjectMessage> {
            items
                .iter()
                .map(|object| proto::ObjectMessage {
                    object: object.clone(),
                    message: String::new(),
                })
                .collect()
        };
        let event = match &self.event {
            Event::Applying { .. } | Event::Pruned { .. } => return None,
            Event::Applied { applied, pruned } => Wire::Apply(proto::ApplyResult {
                ok: true,
                errors: Vec::new(),
                applied: count(*applied),
                pruned: count(*pruned),
                permanent: false,
            }),
            Event::ApplyFailed {
                errors, retry_in, ..
            } => Wire::Apply(proto::ApplyResult {
                ok: false,
                errors: messages(errors),
                applied: 0,
                pruned: 0,
                permanent: retry_in.is_none(),
            }),
            Event::Removed { pruned } => Wire::Apply(proto::ApplyResult {
                ok: true,
                errors: Vec::new(),
                applied: 0,
                pruned: count(*pruned),
                permanent: false,
            }),
            Event::HealthChanged(health) => Wire::Health(proto::HealthReport {
                health: health.health.to_string(),
                unhealthy: health
                    .unhealthy
                    .iter()
                    .map(|(object, h)| proto::ObjectMessage {
                        object: object.to_string(),
                        message: format!("{}: {}", h.health, h.message),
                    })
                    .collect(),
            }),
            Event::DriftDetected { objects } => Wire::Drift(proto::DriftReport {
                objects: messages(objects),
                corrected: false,
                added: false,
                correction_failed: false,
            }),
            Event::DriftCorrected { objects } => Wire::Drift(proto::DriftReport {
                objects: names(objects),
                corrected: true,
                added: false,
                correction_failed: false,
            }),
            Event::DriftCorrectionFailed { errors } => Wire::Drift(proto::DriftReport {
                objects: messages(errors),
                corrected: false,
                added: false,
                correction_failed: true,
            }),
            Event::FieldsAdded { objects } => Wire::Drift(proto::DriftReport {
                objects: messages(objects),
                corrected: false,
                added: true,
                correction_failed: false,
            }),
        };
        Some(proto::Report {
            bundle: self.bundle.clone(),
            revision: self.revision.clone(),
            content_hash: self.content_hash.clone(),
            at_ms: self.at_ms,
            event: Some(event),
            // The stream's cluster: the hub knows it from the agent's certificate.
            cluster: String::new(),
        })
    }

    /// The bundle health this report carries, if it is a health report.
    pub fn health(&self) -> Option<Health> {
        match &self.event {
            Event::HealthChanged(h) => Some(h.health),
            _ => None,
        }
    }
}

impl ObjectMessage {
    fn to_proto(&self) -> proto::ObjectMessage {
        proto::ObjectMessage {
            object: self.object.clone(),
            message: self.message.clone(),
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
