//! Push webhooks: GitHub (`X-GitHub-Event: push`), GitLab (`X-Gitlab-Event: Push Hook`) and a
//! generic POST. A verified push to the tracked branch asks the leader to fetch now.
//!
//! Verification, when the hub has a webhook secret: GitHub's `X-Hub-Signature-256`
//! (`sha256=` HMAC-SHA256 of the body), GitLab's `X-Gitlab-Token` (the secret itself), and for
//! the generic hook `X-Flotilla-Signature` (same form as GitHub's; `X-Hub-Signature-256` is
//! accepted too). Comparisons take constant time. A bad or missing signature is 401 and
//! nothing is fetched. Without a secret every webhook is accepted (the hub warns at start).
//!
//! A verified delivery seen within the last ten minutes (by its delivery id or its signed
//! content, see [`deliveries`]) is answered 200 "duplicate delivery, ignored": no fetch, no
//! audit event, only the `webhook_duplicates` counter.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::HttpContext;
use crate::audit::{Entry, UNAUTHENTICATED_ACTOR};
use crate::controller::source::{RequestFetchError, request_fetch};
use crate::state::audit::{AuditClass, Outcome};

pub mod deliveries;

pub use deliveries::{Claim, Deliveries, DeliveryKeys};

type HmacSha256 = Hmac<Sha256>;

/// Who sent a webhook, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// GitHub, with its event name.
    GitHub(String),
    /// GitLab, with its event name.
    GitLab(String),
    /// Anything else.
    Generic,
}

impl Sender {
    /// Reads the sender from the request headers.
    pub fn of(headers: &HeaderMap) -> Sender {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let Some(event) = header("x-github-event") {
            Sender::GitHub(event)
        } else if let Some(event) = header("x-gitlab-event") {
            Sender::GitLab(event)
        } else {
            Sender::Generic
        }
    }

    /// `github`, `gitlab` or `generic`, as audit events name the sender.
    pub fn name(&self) -> &'static str {
        match self {
            Sender::GitHub(_) => "github",
            Sender::GitLab(_) => "gitlab",
            Sender::Generic => "generic",
        }
    }
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature header is absent.
    #[error(
        "missing {0} header; configure the webhook's secret to match the hub's --webhook-secret"
    )]
    Missing(&'static str),
    /// The signature does not match.
    #[error(
        "{0} does not match; check that the webhook's secret equals the hub's --webhook-secret"
    )]
    Mismatch(&'static str),
}

/// Checks a webhook's signature against `secret`; `None` accepts every webhook.
pub fn verify(
    sender: &Sender,
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&str>,
) -> Result<(), VerifyError> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(VerifyError::Missing(name))
    };
    match sender {
        Sender::GitLab(_) => {
            let token = header("x-gitlab-token")?;
            // HMACs of both under one key compare in constant time whatever their lengths.
            let mut mac = keyed(secret);
            mac.update(token.as_bytes());
            let mut expected = keyed(secret);
            expected.update(secret.as_bytes());
            expected
                .verify_slice(&mac.finalize().into_bytes())
                .map_err(|_| VerifyError::Mismatch("x-gitlab-token"))
        }
        Sender::GitHub(_) => verify_hmac(
            header("x-hub-signature-256")?,
            "x-hub-signature-256",
            secret,
            body,
        ),
        Sender::Generic => match header("x-flotilla-signature") {
            Ok(signature) => verify_hmac(signature, "x-flotilla-signature", secret, body),
            Err(_) => verify_hmac(
                header("x-hub-signature-256")
                    .map_err(|_| VerifyError::Missing("x-flotilla-signature"))?,
                "x-hub-signature-256",
                secret,
                body,
            ),
        },
    }
}

fn keyed(secret: &str) -> HmacSha256 {
    // HMAC takes keys of any length.
    <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!())
}

fn verify_hmac(
    signature: &str,
    header: &'static str,
    secret: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    let digest = signature
        .strip_prefix("sha256=")
        .and_then(|hex_digits| hex::decode(hex_digits).ok())
        .ok_or(VerifyError::Mismatch(header))?;
    let mut mac = keyed(secret);
    mac.update(body);
    mac.verify_slice(&digest)
        .map_err(|_| VerifyError::Mismatch(header))
}

/// `sha256=<hex>`: the signature header value for `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = keyed(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The branch ref a push is about, when the payload names one.
fn pushed_ref(body: &[u8]) -> Option<String> {
    let payload: serde_json::Value = serde_json::from_slice(body).ok()?;
    payload.get("ref")?.as_str().map(str::to_owned)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// `POST /webhook`.
pub(super) async fn receive(
    State(context): State<HttpContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sender = Sender::of(&headers);
    if let Err(e) = verify(&sender, &headers, &body, context.webhook_secret.as_deref()) {
        tracing::warn!(sender = sender.name(), error = %e, "webhook refused");
        let actor = format!("{UNAUTHENTICATED_ACTOR} webhook:{}", sender.name());
        audit_fetch(
            &context,
            &actor,
            String::new(),
            Outcome::Denied(e.to_string()),
        )
        .await;
        return answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": e.to_string()}),
        );
    }
    match &sender {
        Sender::GitHub(event) if event == "ping" => {
            return answer(StatusCode::OK, serde_json::json!({"pong": true}));
        }
        Sender::GitHub(event) if event != "push" => {
            return ignored(format!("GitHub event `{event}` is not a push"));
        }
        Sender::GitLab(event) if event != "Push Hook" => {
            return ignored(format!("GitLab event `{event}` is not a push"));
        }
        _ => {}
    }
    let Some(source) = context.hub.source.as_ref() else {
        return answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": RequestFetchError::NoSource.to_string()}),
        );
    };
    let tracked = format!("refs/heads/{}", source.branch);
    let pushed = pushed_ref(&body);
    if let Some(pushed) = &pushed
        && *pushed != tracked
    {
        return ignored(format!("{pushed} is not the tracked branch {tracked}"));
    }
    let hub = &context.hub;
    let delivery = DeliveryKeys::of(&sender, &headers, &body);
    if context.deliveries.claim(&delivery, Instant::now()) == Claim::Duplicate {
        hub.metrics.webhook_duplicates.inc();
        tracing::debug!(sender = sender.name(), "duplicate webhook delivery ignored");
        return answer(
            StatusCode::OK,
            serde_json::json!({"ignored": "duplicate delivery, ignored"}),
        );
    }
    let reason = format!(
        "webhook {} push {}",
        sender.name(),
        pushed.as_deref().unwrap_or(&tracked)
    );
    let fetched = request_fetch(&hub.node, hub.clock.as_ref(), hub.source.as_ref(), &reason).await;
    if fetched.is_err() {
        context.deliveries.release(&delivery);
    }
    let outcome = match &fetched {
        Ok(_) => Outcome::Succeeded,
        Err(e) => Outcome::Failed(e.to_string()),
    };
    let actor = format!("webhook:{}", sender.name());
    audit_fetch(&context, &actor, reason.clone(), outcome).await;
    match fetched {
        Ok(index) => {
            hub.metrics.webhooks.inc();
            tracing::info!(%reason, index, "fetch requested");
            answer(
                StatusCode::ACCEPTED,
                serde_json::json!({"fetch": "requested", "source": source.name, "index": index}),
            )
        }
        Err(e) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}

/// Records a webhook's fetch request, or its refusal, in the audit log.
async fn audit_fetch(context: &HttpContext, actor: &str, detail: String, outcome: Outcome) {
    let target = format!(
        "source/{}",
        context
            .hub
            .source
            .as_ref()
            .map_or("none", |s| s.name.as_str())
    );
    let entry = Entry {
        actor,
        action: "fetch",
        target: &target,
        detail,
        outcome,
        // Whoever holds a signed body can send it: nothing a role was needed for.
        class: AuditClass::Unprivileged,
    };
    context.hub.record_audit(entry).await;
}

fn ignored(why: String) -> Response {
    answer(StatusCode::ACCEPTED, serde_json::json!({"ignored": why}))
}

#[cfg(test)]
mod tests;
