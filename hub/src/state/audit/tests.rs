#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::*;

fn event(actor: &str, action: &str, outcome: Outcome, at: u64) -> AuditEvent {
    AuditEvent {
        actor: actor.into(),
        action: action.into(),
        target: "stage/prod".into(),
        detail: at.to_string(),
        at: Timestamp(at),
        class: AuditClass::of(&outcome),
        outcome,
        count: 1,
    }
}

fn denied(at: u64) -> AuditEvent {
    event(
        "token:snoop",
        "pause",
        Outcome::Denied("needs the deployer role".into()),
        at,
    )
}

#[test]
fn a_flood_of_refusals_never_pushes_a_privileged_event_out() {
    let mut log = AuditLog::default();
    log.push(event("token:root", "token.create", Outcome::Succeeded, 1));
    log.push(event("token:ci", "promote", Outcome::Succeeded, 2));
    for at in 3..(3 + 3 * UNPRIVILEGED_LIMIT as u64) {
        log.push(denied(at));
    }
    assert_eq!(log.kept(AuditClass::Privileged), 2);
    assert_eq!(log.kept(AuditClass::Unprivileged), UNPRIVILEGED_LIMIT);
    let kept: Vec<(u64, &str)> = log
        .since(0)
        .take(3)
        .map(|(seq, e)| (seq, e.action.as_str()))
        .collect();
    let first_refusal = 2 + 2 * UNPRIVILEGED_LIMIT as u64;
    assert_eq!(
        kept,
        [
            (0, "token.create"),
            (1, "promote"),
            (first_refusal, "pause")
        ]
    );
}

#[test]
fn each_ring_drops_only_its_own_oldest_beyond_its_limit() {
    let mut log = AuditLog::default();
    log.push(denied(0));
    for at in 1..=(PRIVILEGED_LIMIT as u64 + 1) {
        log.push(event("token:ci", "promote", Outcome::Succeeded, at));
    }
    assert_eq!(log.kept(AuditClass::Privileged), PRIVILEGED_LIMIT);
    assert_eq!(log.kept(AuditClass::Unprivileged), 1);
    let (seq, oldest) = log.since(0).next().unwrap();
    assert_eq!((seq, oldest.action.as_str()), (0, "pause"));
    let (seq, next) = log.since(1).next().unwrap();
    assert_eq!((seq, next.detail.as_str()), (2, "2"), "seq 1 was dropped");
}

#[test]
fn both_classes_read_in_sequence_order_both_ways() {
    let mut log = AuditLog::default();
    log.push(event("token:ci", "promote", Outcome::Succeeded, 0));
    log.push(denied(1));
    log.push(denied(2));
    log.push(event("token:ci", "pause", Outcome::Succeeded, 3));
    log.push(denied(4));
    let oldest_first: Vec<u64> = log.since(0).map(|(seq, _)| seq).collect();
    assert_eq!(oldest_first, [0, 1, 2, 3, 4]);
    let newest_first: Vec<u64> = log.newest_first().map(|(seq, _)| seq).collect();
    assert_eq!(newest_first, [4, 3, 2, 1, 0]);
    let from_two: Vec<u64> = log.since(2).map(|(seq, _)| seq).collect();
    assert_eq!(from_two, [2, 3, 4]);
    assert_eq!(log.next_seq(), 5);
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_event_is_exported_as_one_complete_json_line_at_the_audit_target() {
    let mut log = AuditLog::default();
    log.push(event("token:ci", "promote", Outcome::Succeeded, 7));
    log.push(AuditEvent {
        detail: "line one\nline two".into(),
        count: 10_500,
        ..denied(8)
    });
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || export(&log, 1));

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "only the events from seq 1 on: {text}");
    let (prefix, json) = lines[0].split_once("flotilla::audit: ").unwrap();
    assert!(prefix.contains("INFO"), "{prefix}");
    let exported: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        exported,
        serde_json::json!({
            "seq": 1,
            "atMs": 8,
            "actor": "token:snoop",
            "action": "pause",
            "target": "stage/prod",
            "outcome": "denied",
            "reason": "needs the deployer role",
            "detail": "line one\nline two",
            "class": "unprivileged",
            "count": 10_500,
        })
    );
}
