#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"c1"}"#;

fn github(delivery: &str, body: &[u8]) -> DeliveryKeys {
    let headers = headers(&[
        ("x-github-event", "push"),
        ("x-github-delivery", delivery),
        (
            "x-hub-signature-256",
            &crate::http::webhook::sign("s", body),
        ),
    ]);
    DeliveryKeys::of(&Sender::of(&headers), &headers, body)
}

#[test]
fn a_delivery_id_seen_in_the_window_is_a_duplicate_whatever_the_body() {
    let deliveries = Deliveries::default();
    let now = Instant::now();
    assert_eq!(deliveries.claim(&github("d-1", BODY), now), Claim::New);
    let retried = github("d-1", br#"{"ref":"refs/heads/main","after":"c2"}"#);
    assert_eq!(deliveries.claim(&retried, now), Claim::Duplicate);
    assert_eq!(deliveries.claim(&github("d-2", b"{}"), now), Claim::New);
}

#[test]
fn the_same_signed_body_is_a_duplicate_whatever_delivery_id_it_carries() {
    let deliveries = Deliveries::default();
    let now = Instant::now();
    assert_eq!(deliveries.claim(&github("d-1", BODY), now), Claim::New);
    for replay in 0..1_000 {
        let forged_id = format!("replay-{replay}");
        assert_eq!(
            deliveries.claim(&github(&forged_id, BODY), now),
            Claim::Duplicate
        );
    }
}

#[test]
fn without_an_id_the_signature_and_body_identify_a_delivery() {
    let deliveries = Deliveries::default();
    let now = Instant::now();
    let generic = |body: &[u8]| {
        let headers = headers(&[(
            "x-flotilla-signature",
            &crate::http::webhook::sign("s", body),
        )]);
        DeliveryKeys::of(&Sender::Generic, &headers, body)
    };
    assert_eq!(deliveries.claim(&generic(BODY), now), Claim::New);
    assert_eq!(deliveries.claim(&generic(BODY), now), Claim::Duplicate);
    assert_eq!(
        deliveries.claim(&generic(br#"{"ref":"refs/heads/main","after":"c2"}"#), now),
        Claim::New
    );
    // The same body from another sender is another delivery.
    let gitlab = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "s")]);
    let from_gitlab = DeliveryKeys::of(&Sender::of(&gitlab), &gitlab, BODY);
    assert_eq!(deliveries.claim(&from_gitlab, now), Claim::New);
}

#[test]
fn gitlab_and_generic_delivery_ids_are_read_from_their_headers() {
    let deliveries = Deliveries::default();
    let now = Instant::now();
    let gitlab = |uuid: &str, body: &[u8]| {
        let headers = headers(&[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "s"),
            ("x-gitlab-event-uuid", uuid),
        ]);
        DeliveryKeys::of(&Sender::of(&headers), &headers, body)
    };
    assert_eq!(deliveries.claim(&gitlab("u-1", BODY), now), Claim::New);
    assert_eq!(
        deliveries.claim(&gitlab("u-1", b"{}"), now),
        Claim::Duplicate
    );
    let generic = |id: &str, body: &[u8]| {
        let headers = headers(&[("idempotency-key", id)]);
        DeliveryKeys::of(&Sender::Generic, &headers, body)
    };
    assert_eq!(deliveries.claim(&generic("k-1", b"a"), now), Claim::New);
    assert_eq!(
        deliveries.claim(&generic("k-1", b"b"), now),
        Claim::Duplicate
    );
}

#[test]
fn a_delivery_is_forgotten_after_the_window_or_when_released() {
    let deliveries = Deliveries::default();
    let now = Instant::now();
    let first = github("d-1", BODY);
    assert_eq!(deliveries.claim(&first, now), Claim::New);
    let almost = now + DELIVERY_WINDOW - Duration::from_secs(1);
    assert_eq!(deliveries.claim(&first, almost), Claim::Duplicate);
    assert_eq!(deliveries.claim(&first, now + DELIVERY_WINDOW), Claim::New);

    // A delivery whose fetch could not be requested is acted on when the sender retries.
    let failed = github("d-2", b"{}");
    assert_eq!(deliveries.claim(&failed, now), Claim::New);
    deliveries.release(&failed);
    assert_eq!(deliveries.claim(&failed, now), Claim::New);
}

#[test]
fn memory_is_bounded_oldest_forgotten_first() {
    let deliveries = Deliveries::new(DELIVERY_WINDOW, 100);
    let now = Instant::now();
    let keys: Vec<DeliveryKeys> = (0..200)
        .map(|i| github(&format!("d-{i}"), format!("{{\"n\":{i}}}").as_bytes()))
        .collect();
    for delivery in &keys {
        assert_eq!(deliveries.claim(delivery, now), Claim::New);
    }
    assert!(deliveries.seen.lock().order.len() <= 100);
    assert!(deliveries.seen.lock().claimed.len() <= 100);
    assert_eq!(deliveries.claim(&keys[199], now), Claim::Duplicate);
    assert_eq!(deliveries.claim(&keys[0], now), Claim::New);
}
