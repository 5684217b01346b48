use std::time::Duration;

use flotilla_core::render::{ObjectId, RenderedBundle, RenderedObject};
use flotilla_core::spec::DriftMode as SpecDriftMode;
use flotilla_proto::v1::BundleChunk;
use serde_json::json;

use super::assembly::Assembler;
use super::backoff::{Backoff, FixedRandom};
use super::outbox::{OUTBOX_LIMIT, Outbox, to_wire};
use super::run::parse_duration;
use crate::bundle::DriftMode;
use crate::report::{Event, Report};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn backoff_doubles_per_failure_up_to_the_maximum_within_its_jitter() {
    let backoff = Backoff {
        initial: ms(200),
        max: ms(1000),
    };
    let low = FixedRandom(0.0);
    let high = FixedRandom(1.0);
    assert_eq!(backoff.delay(0, &low), ms(100));
    assert!(backoff.delay(0, &high) <= ms(200));
    assert!(backoff.delay(0, &high) > ms(199));
    assert_eq!(backoff.delay(1, &low), ms(200));
    assert_eq!(backoff.delay(2, &low), ms(400));
    assert_eq!(
        backoff.delay(3, &low),
        ms(500),
        "capped at max, halved by jitter"
    );
    assert_eq!(backoff.delay(60, &low), ms(500), "no overflow");
    let mid = backoff.delay(1, &FixedRandom(0.5));
    assert_eq!(mid, ms(300));
}

fn rendered(name: &str, objects: usize, payload: usize) -> RenderedBundle {
    let objects = (0..objects)
        .map(|i| {
            let object = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "namespace": "app"},
                "data": {"key": "x".repeat(payload)},
            });
            RenderedObject {
                id: ObjectId::of(&object).expect("identity"),
                object,
            }
        })
        .collect();
    RenderedBundle {
        bundle: name.into(),
        drift: SpecDriftMode::Report,
        depends_on: Vec::new(),
        objects,
        allow: flotilla_core::Allow::default(),
        create_namespace: None,
    }
}

/// The chunks a hub would send for `bundle`, `size` bytes of compressed blob each.
fn chunks_of(bundle: &RenderedBundle, size: usize) -> Vec<BundleChunk> {
    let content = bundle.to_blob();
    let compressed = zstd::bulk::compress(&content, 3).expect("compress");
    let hash = bundle.hash().to_string();
    let mut out = Vec::new();
    let mut offset = 0u64;
    for piece in compressed.chunks(size) {
        out.push(BundleChunk {
            bundle: bundle.bundle.clone(),
            revision: "abc123".into(),
            content_hash: hash.clone(),
            total_bytes: compressed.len() as u64,
            uncompressed_bytes: content.len() as u64,
            offset,
            data: piece.to_vec(),
            index: 9,
        });
        offset += piece.len() as u64;
    }
    out
}

#[test]
fn chunks_reassemble_into_the_bundle_revision() {
    let bundle = rendered("web", 20, 200);
    let chunks = chunks_of(&bundle, 64);
    assert!(chunks.len() > 2, "{} chunks", chunks.len());
    let mut assembler = Assembler::new(1 << 20);
    let mut done = None;
    for chunk in chunks {
        assert!(done.is_none(), "complete before the last chunk");
        done = assembler.add(chunk).expect("accepted");
    }
    let received = done.expect("complete after the last chunk");
    assert_eq!(received.revision.name, "web");
    assert_eq!(received.revision.revision, "abc123");
    assert_eq!(received.revision.content_hash, bundle.hash().to_string());
    assert_eq!(received.revision.drift, DriftMode::Report);
    assert_eq!(received.revision.objects.len(), 20);
}

#[test]
fn a_corrupt_bundle_is_refused_without_breaking_the_stream() {
    let bundle = rendered("web", 3, 10);
    let mut chunks = chunks_of(&bundle, 1 << 20);
    chunks[0].content_hash = rendered("web", 4, 10).hash().to_string();
    let mut assembler = Assembler::new(1 << 20);
    let err = assembler
        .add(chunks.remove(0))
        .expect_err("hash mismatch accepted");
    assert!(!err.breaks_stream());
    assert!(err.to_string().contains("web"), "{err}");
    let next = chunks_of(&bundle, 1 << 20);
    let received = assembler
        .add(next.into_iter().next().expect("one chunk"))
        .expect("accepted");
    assert!(received.is_some(), "the next bundle starts afresh");
}

#[test]
fn a_chunk_out_of_order_breaks_the_stream() {
    let bundle = rendered("web", 20, 200);
    let chunks = chunks_of(&bundle, 64);
    let mut assembler = Assembler::new(1 << 20);
    assembler.add(chunks[0].clone()).expect("first chunk");
    let err = assembler.add(chunks[2].clone()).expect_err("gap accepted");
    assert!(err.breaks_stream(), "{err}");
}

#[test]
fn a_bundle_over_the_limit_is_refused_and_its_chunks_skipped() {
    let big = rendered("big", 20, 200);
    let mut assembler = Assembler::new(256);
    let mut chunks = chunks_of(&big, 64).into_iter();
    let err = assembler
        .add(chunks.next().expect("chunks"))
        .expect_err("too large accepted");
    assert!(!err.breaks_stream());
    for chunk in chunks {
        assert!(assembler.add(chunk).expect("skipped").is_none());
    }
    let small = rendered("small", 1, 1);
    let received = assembler
        .add(chunks_of(&small, 1 << 20).remove(0))
        .expect("accepted");
    assert!(received.is_some());
}

fn report(bundle: &str, event: Event) -> Report {
    Report {
        bundle: bundle.into(),
        revision: "r1".into(),
        content_hash: "h1".into(),
        at_ms: 5,
        event,
    }
}

#[test]
fn a_removal_is_reported_as_a_removal_not_an_apply() {
    use flotilla_proto::v1::report::Event as Wire;
    let wire = to_wire(&report("web", Event::Removed { pruned: 4 })).expect("reported");
    assert!(
        matches!(wire.event, Some(Wire::Removed(ref r)) if r.pruned == 4),
        "{wire:?}"
    );
    assert!(to_wire(&report("web", Event::Applying { objects: 3 })).is_none());
}

#[test]
fn the_outbox_keeps_the_newest_events_when_full() {
    let mut outbox = Outbox::default();
    let mut dropped = 0;
    for i in 0..OUTBOX_LIMIT + 10 {
        dropped += outbox.push(&report(
            &format!("b{i}"),
            Event::Applied {
                applied: 1,
                pruned: 0,
            },
        ));
    }
    assert_eq!(dropped, 10);
    let first = outbox.take_batch();
    assert_eq!(first[0].bundle, "b10");
}

#[test]
fn durations_parse_with_units_and_name_the_problem() {
    assert_eq!(parse_duration("250ms"), Ok(ms(250)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
    assert!(parse_duration("2 weeks").is_err());
    assert!(parse_duration("soon").is_err());
}
