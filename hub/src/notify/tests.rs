use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::state::Timestamp;

fn config(kind: ReceiverKind) -> ReceiverConfig {
    ReceiverConfig {
        name: "ops".into(),
        kind,
        url: "https://ops.example/hook".into(),
        secret: Some(b"key".to_vec()),
        ca: None,
        events: BTreeSet::new(),
        stages: BTreeSet::new(),
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        dashboard_url: Some("https://flotilla.example".into()),
    }
}

fn notice(kind: NoticeKind) -> Notice {
    Notice {
        seq: 7,
        epoch: Timestamp(1_600_000_000_000),
        kind,
        at: Timestamp(1_700_000_000_000),
        stage: Some("prod".into()),
        cluster: None,
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        rollout: Some(3),
        message: "rollout 3 failed: cluster-a Degraded".into(),
    }
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn a_webhook_gets_the_notice_as_signed_json() {
    let receiver = Receiver::new(config(ReceiverKind::Webhook), "flotilla").expect("test set-up");
    let message = receiver.message(&notice(NoticeKind::RolloutFailed), Some("prod"));
    assert_eq!(message.url, "https://ops.example/hook");
    let body: serde_json::Value = serde_json::from_slice(&message.body).expect("test set-up");
    assert_eq!(body["id"], "flotilla-1600000000000-7");
    assert_eq!(body["type"], "rolloutFailed");
    assert_eq!(body["stage"], "prod");
    assert_eq!(body["rollout"], 3);
    assert_eq!(body["at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(
        body["url"],
        "https://flotilla.example/#/commit/0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        header(&message, "X-Flotilla-Delivery"),
        Some("flotilla-1600000000000-7")
    );
    assert_eq!(header(&message, "X-Flotilla-Event"), Some("rolloutFailed"));
    // The signature is the HMAC of exactly these bytes under the key.
    assert_eq!(
        header(&message, "X-Flotilla-Signature-256"),
        Some(sign(b"key", &message.body).as_str())
    );
    assert_ne!(sign(b"key", &message.body), sign(b"other", &message.body));
}

#[tokio::test]
async fn slack_gets_one_line_of_text() {
    let receiver = Receiver::new(config(ReceiverKind::Slack), "flotilla").expect("test set-up");
    let message = receiver.message(&notice(NoticeKind::RolloutFailed), Some("prod"));
    let body: serde_json::Value = serde_json::from_slice(&message.body).expect("test set-up");
    let text = body["text"].as_str().expect("test set-up");
    assert!(
        text.starts_with(":red_circle: *rollout failed* (stage `prod`, commit `0123456789ab`)"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "<https://flotilla.example/#/commit/0123456789abcdef0123456789abcdef01234567|open>"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn github_gets_a_commit_status_per_stage() {
    let kind = ReceiverKind::GitHub {
        repository: "acme/fleet".into(),
        token: "ghp_x".into(),
    };
    let mut config = config(kind);
    config.url = "https://api.github.com".into();
    let receiver = Receiver::new(config, "flotilla").expect("test set-up");
    let message = receiver.message(&notice(NoticeKind::RolloutCompleted), Some("prod"));
    assert_eq!(
        message.url,
        "https://api.github.com/repos/acme/fleet/statuses/0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(header(&message, "Authorization"), Some("Bearer ghp_x"));
    let body: serde_json::Value = serde_json::from_slice(&message.body).expect("test set-up");
    assert_eq!(body["state"], "success");
    assert_eq!(body["context"], "flotilla/prod");
    let render = receiver.message(&notice(NoticeKind::RenderFailed), None);
    let body: serde_json::Value = serde_json::from_slice(&render.body).expect("test set-up");
    assert_eq!(
        (body["state"].as_str(), body["context"].as_str()),
        (Some("error"), Some("flotilla/render"))
    );
    // A cluster's notice has no commit status to set.
    let mut offline = notice(NoticeKind::ClusterOffline);
    offline.commit = None;
    assert!(!receiver.wants(&offline, Some("prod")));
    assert!(receiver.wants(&notice(NoticeKind::RolloutFailed), Some("prod")));
}

#[tokio::test]
async fn filters_by_kind_and_stage() {
    let mut config = config(ReceiverKind::Webhook);
    config.events = [NoticeKind::RolloutFailed].into();
    config.stages = ["prod".to_owned()].into();
    let receiver = Receiver::new(config, "flotilla").expect("test set-up");
    assert!(receiver.wants(&notice(NoticeKind::RolloutFailed), Some("prod")));
    assert!(!receiver.wants(&notice(NoticeKind::RolloutFailed), Some("staging")));
    assert!(!receiver.wants(&notice(NoticeKind::RolloutFailed), None));
    assert!(!receiver.wants(&notice(NoticeKind::RolloutCompleted), Some("prod")));
}

#[tokio::test]
async fn a_ca_file_without_a_certificate_is_refused() {
    let mut config = config(ReceiverKind::Webhook);
    config.ca = Some(b"not a certificate".to_vec());
    let error = Receiver::new(config, "flotilla")
        .err()
        .expect("an error")
        .to_string();
    assert!(
        error.contains("receiver `ops`: caFile holds no PEM certificate"),
        "{error}"
    );
}

/// Answers every request with `status`, counting them.
async fn answering(status: u16) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test set-up");
    let url = format!(
        "http://{}/hook",
        listener.local_addr().expect("test set-up")
    );
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.expect("test set-up");
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let mut response = hyper::Response::new(Full::new(Bytes::from("nope")));
                        *response.status_mut() =
                            hyper::StatusCode::from_u16(status).expect("test set-up");
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn answers_are_judged_for_another_try() {
    for (status, expected) in [
        (200, "delivered"),
        (204, "delivered"),
        (500, "retry"),
        (503, "retry"),
        (429, "retry"),
        (408, "retry"),
        (400, "refused"),
        (401, "refused"),
        (404, "refused"),
        (302, "refused"),
    ] {
        let (url, count) = answering(status).await;
        let mut config = config(ReceiverKind::Webhook);
        config.url = url;
        let receiver = Receiver::new(config, "flotilla").expect("test set-up");
        let message = receiver.message(&notice(NoticeKind::RolloutFailed), Some("prod"));
        let outcome = receiver.send(&message).await;
        let judged = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry(_) => "retry",
            Outcome::Refused(_) => "refused",
        };
        assert_eq!(judged, expected, "{status}: {outcome:?}");
        if let Outcome::Retry(said) | Outcome::Refused(said) = &outcome {
            assert!(
                said.contains(&status.to_string()) && said.contains("nope"),
                "{said}"
            );
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn no_listener_and_a_tls_failure_are_worth_another_try_and_named() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("test set-up");
        listener.local_addr().expect("test set-up")
    };
    let mut plain = config(ReceiverKind::Webhook);
    plain.url = format!("http://{closed}/hook");
    let receiver = Receiver::new(plain, "flotilla").expect("test set-up");
    let message = receiver.message(&notice(NoticeKind::RolloutFailed), None);
    let Outcome::Retry(said) = receiver.send(&message).await else {
        panic!("a closed port is worth another try");
    };
    assert!(said.starts_with("cannot send:"), "{said}");
    // A plain HTTP server answering a TLS client: the TLS layer fails, and says so.
    let (url, _) = answering(200).await;
    let mut tls = config(ReceiverKind::Webhook);
    tls.url = url
        .replace("http://", "https://")
        .replace("127.0.0.1", "localhost");
    let receiver = Receiver::new(tls, "flotilla").expect("test set-up");
    let message = receiver.message(&notice(NoticeKind::RolloutFailed), None);
    let Outcome::Retry(said) = receiver.send(&message).await else {
        panic!("a TLS failure is worth another try");
    };
    assert!(said.starts_with("TLS: "), "{said}");
}
