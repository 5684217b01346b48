//! Health of CustomResourceDefinitions and of custom resources.

use serde_json::Value;

use super::{Health, ObjectHealth, conditions, int};

pub(super) fn definition(live: &Value) -> ObjectHealth {
    let conditions = conditions(live);
    if conditions.is_empty() {
        return ObjectHealth::new(Health::Progressing, "waiting for status conditions");
    }
    let find = |kind: &str| conditions.iter().find(|c| c.kind == kind);
    if let Some(c) = find("Terminating").filter(|c| c.status == "True") {
        return ObjectHealth::new(Health::Progressing, format!("being deleted: {}", c.message));
    }
    if let Some(c) = find("NamesAccepted").filter(|c| c.status == "False") {
        return ObjectHealth::new(
            Health::Degraded,
            format!("names not accepted: {}", c.message),
        );
    }
    match find("Established") {
        Some(c) if c.status == "True" => {}
        Some(c) => {
            return ObjectHealth::new(Health::Degraded, format!("not established: {}", c.message));
        }
        None => return ObjectHealth::new(Health::Degraded, "not established"),
    }
    if let Some(c) = find("NonStructuralSchema").filter(|c| c.status == "True") {
        return ObjectHealth::new(
            Health::Degraded,
            format!("schema violations: {}", c.message),
        );
    }
    ObjectHealth::healthy()
}

/// Custom resources follow kstatus: a controller that has not seen the latest generation is
/// still working; `Stalled` means it gave up, `Reconciling` that it is working; `Ready` says
/// the rest. A resource with none of these is taken to be current.
pub(super) fn resource(live: &Value) -> ObjectHealth {
    if let (Some(generation), Some(observed)) = (
        int(live, "/metadata/generation"),
        int(live, "/status/observedGeneration"),
    ) && observed != generation
    {
        return ObjectHealth::new(
            Health::Progressing,
            format!("generation {generation} not yet observed (observed {observed})"),
        );
    }
    let conditions = conditions(live);
    let find = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.kind == kind && c.status == "True")
    };
    if let Some(c) = find("Stalled") {
        return ObjectHealth::new(Health::Degraded, reason_and_message(c.reason, c.message));
    }
    if let Some(c) = find("Reconciling") {
        return ObjectHealth::new(Health::Progressing, reason_and_message(c.reason, c.message));
    }
    match conditions.iter().find(|c| c.kind == "Ready") {
        Some(c) if c.status == "True" => ObjectHealth::healthy(),
        Some(c) => ObjectHealth::new(
            Health::Progressing,
            format!("not ready: {}", reason_and_message(c.reason, c.message)),
        ),
        None => ObjectHealth::healthy(),
    }
}

fn reason_and_message(reason: &str, message: &str) -> String {
    match (reason.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => reason.to_string(),
        (true, false) => message.to_string(),
        (false, false) => format!("{reason}: {message}"),
    }
}
