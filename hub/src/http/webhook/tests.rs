#![allow(clippy::unwrap_used)]

use axum::http::{HeaderMap, HeaderValue};

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;

#[test]
fn github_signature_over_the_body_is_verified() {
    let good = headers(&[
        ("x-github-event", "push"),
        ("x-hub-signature-256", &sign("s3cret", BODY)),
    ]);
    let sender = Sender::of(&good);
    assert_eq!(sender, Sender::GitHub("push".into()));
    assert_eq!(verify(&sender, &good, BODY, Some("s3cret")), Ok(()));
    assert_eq!(
        verify(
            &sender,
            &good,
            b"{\"ref\":\"refs/heads/evil\"}",
            Some("s3cret")
        ),
        Err(VerifyError::Mismatch("x-hub-signature-256"))
    );
    assert_eq!(
        verify(&sender, &good, BODY, Some("other")),
        Err(VerifyError::Mismatch("x-hub-signature-256"))
    );
    let unsigned = headers(&[("x-github-event", "push")]);
    assert_eq!(
        verify(&Sender::of(&unsigned), &unsigned, BODY, Some("s3cret")),
        Err(VerifyError::Missing("x-hub-signature-256"))
    );
    let malformed = headers(&[
        ("x-github-event", "push"),
        ("x-hub-signature-256", "sha1=abc"),
    ]);
    assert!(verify(&Sender::of(&malformed), &malformed, BODY, Some("s3cret")).is_err());
}

#[test]
fn gitlab_token_must_equal_the_secret() {
    let good = headers(&[
        ("x-gitlab-event", "Push Hook"),
        ("x-gitlab-token", "s3cret"),
    ]);
    assert_eq!(
        verify(&Sender::of(&good), &good, BODY, Some("s3cret")),
        Ok(())
    );
    let bad = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "s3cre")]);
    assert_eq!(
        verify(&Sender::of(&bad), &bad, BODY, Some("s3cret")),
        Err(VerifyError::Mismatch("x-gitlab-token"))
    );
}

#[test]
fn generic_hooks_take_either_signature_header() {
    let flotilla = headers(&[("x-flotilla-signature", &sign("k", BODY))]);
    assert_eq!(Sender::of(&flotilla), Sender::Generic);
    assert_eq!(verify(&Sender::Generic, &flotilla, BODY, Some("k")), Ok(()));
    let github_style = headers(&[("x-hub-signature-256", &sign("k", BODY))]);
    assert_eq!(
        verify(&Sender::Generic, &github_style, BODY, Some("k")),
        Ok(())
    );
    assert_eq!(
        verify(&Sender::Generic, &HeaderMap::new(), BODY, Some("k")),
        Err(VerifyError::Missing("x-flotilla-signature"))
    );
}

#[test]
fn without_a_secret_everything_is_accepted() {
    assert_eq!(
        verify(&Sender::Generic, &HeaderMap::new(), BODY, None),
        Ok(())
    );
}

#[test]
fn the_pushed_ref_is_read_from_the_payload() {
    assert_eq!(pushed_ref(BODY).as_deref(), Some("refs/heads/main"));
    assert_eq!(pushed_ref(b""), None);
    assert_eq!(pushed_ref(b"{\"after\":\"abc\"}"), None);
}
