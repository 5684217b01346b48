//! Sending notices (`state::notice`) to the receivers `config::notifications` names: what each
//! kind of receiver is sent, how it is signed, and how an answer is judged. Which notices go
//! out, in what order and how often they are tried is the notify controller's
//! (`controller::notify`).
//!
//! Every request carries the notice's id (`X-Flotilla-Delivery`: the group's name, when its
//! state recorded its first notice, and the notice's number — the same from every hub node) and, with a secret, the HMAC-SHA256 of its
//! body (`X-Flotilla-Signature-256: sha256=HEX`). A receiver that may see a notice twice — once
//! from a leader that died before it recorded the delivery, once from the next — drops the
//! second by its id.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use crate::config::notifications::{ReceiverConfig, ReceiverKind};
use crate::state::notice::{Notice, NoticeKind};

/// Most characters of a GitHub status description (GitHub's own limit).
const GITHUB_DESCRIPTION_CHARS: usize = 140;

/// Most bytes of a receiver's answer kept for the log.
const ANSWER_BYTES: usize = 512;

/// A receiver, ready to send.
pub struct Receiver {
    /// How it was configured.
    pub config: ReceiverConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    group: String,
}

/// One request to a receiver.
#[derive(Debug, Clone)]
pub struct Message {
    /// Where it goes.
    pub url: String,
    /// Headers besides `Content-Type` and `User-Agent`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it (2xx).
    Delivered,
    /// Worth another try: no answer, a timeout, 408, 429 or 5xx.
    Retry(String),
    /// Another try would be answered alike: another 4xx, a redirect.
    Refused(String),
}

/// Why a receiver cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("notification receiver `{receiver}`: {problem}")]
pub struct ReceiverError {
    receiver: String,
    problem: String,
}

impl Receiver {
    /// A receiver for `config`, for a hub group named `group`. Trusts the system's CAs and the
    /// receiver's `caFile`.
    pub fn new(config: ReceiverConfig, group: &str) -> Result<Self, ReceiverError> {
        let fail = |problem: String| ReceiverError {
            receiver: config.name.clone(),
            problem,
        };
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = &config.ca {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| fail(format!("caFile holds no PEM certificate: {e}")))?;
            if certs.is_empty() {
                return Err(fail("caFile holds no PEM certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| fail(format!("caFile: {e}")))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(flotilla_pki::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Receiver {
            config,
            client,
            group: group.to_owned(),
        })
    }

    /// Whether the notice is for this receiver: a kind it takes, a stage it takes (a notice
    /// of no stage only when it takes every stage), and something it can say (a commit status
    /// needs a commit and a rollout or render).
    pub fn wants(&self, notice: &Notice, stage: Option<&str>) -> bool {
        let kind = self.config.events.is_empty() || self.config.events.contains(&notice.kind);
        let stage =
            self.config.stages.is_empty() || stage.is_some_and(|s| self.config.stages.contains(s));
        let sayable = match self.config.kind {
            ReceiverKind::GitHub { .. } => {
                notice.commit.is_some() && github_state(notice.kind).is_some()
            }
            _ => true,
        };
        kind && stage && sayable
    }

    /// The request telling this receiver about `notice`, whose stage is `stage`.
    pub fn message(&self, notice: &Notice, stage: Option<&str>) -> Message {
        let id = notice.id(&self.group);
        let link = self.link(notice, stage);
        let (url, mut headers, body) = match &self.config.kind {
            ReceiverKind::Webhook => {
                let body = json!({
                    "id": id,
                    "group": self.group,
                    "seq": notice.seq,
                    "type": notice.kind.name(),
                    "summary": notice.kind.describe(),
                    "at": notice.at.rfc3339(),
                    "stage": stage,
                    "cluster": notice.cluster,
                    "commit": notice.commit,
                    "rollout": notice.rollout,
                    "message": notice.message,
                    "url": link,
                });
                (self.config.url.clone(), Vec::new(), body)
            }
            ReceiverKind::Slack => {
                let body = json!({ "text": slack_text(notice, stage, link.as_deref()) });
                (self.config.url.clone(), Vec::new(), body)
            }
            ReceiverKind::GitHub { repository, token } => {
                let commit = notice.commit.clone().unwrap_or_default();
                let context = match (notice.kind, stage) {
                    (NoticeKind::RenderFailed, _) | (_, None) => "flotilla/render".to_owned(),
                    (_, Some(stage)) => format!("flotilla/{stage}"),
                };
                let mut body = json!({
                    "state": github_state(notice.kind).unwrap_or("error"),
                    "context": context,
                    "description": cut(&notice.message, GITHUB_DESCRIPTION_CHARS),
                });
                if let Some(link) = &link {
                    body["target_url"] = json!(link);
                }
                let url = format!("{}/repos/{repository}/statuses/{commit}", self.config.url);
                let headers = vec![
                    ("Authorization", format!("Bearer {token}")),
                    ("Accept", "application/vnd.github+json".to_owned()),
                    ("X-GitHub-Api-Version", "2022-11-28".to_owned()),
                ];
                (url, headers, body)
            }
        };
        let body = serde_json::to_vec(&body).expect("a JSON value serialises");
        headers.push(("X-Flotilla-Event", notice.kind.name().to_owned()));
        headers.push(("X-Flotilla-Delivery", id));
        if let Some(secret) = &self.config.secret {
            headers.push(("X-Flotilla-Signature-256", sign(secret, &body)));
        }
        Message { url, headers, body }
    }

    /// One attempt at sending `message`.
    pub async fn send(&self, message: &Message) -> Outcome {
        let mut request = hyper::Request::post(&message.url)
            .header("Content-Type", "application/json")
            .header(
                "User-Agent",
                concat!("flotilla-hub/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in &message.headers {
            request = request.header(*name, value);
        }
        let request = match request.body(Full::new(Bytes::from(message.body.clone()))) {
            Ok(request) => request,
            Err(e) => return Outcome::Refused(format!("cannot build the request: {e}")),
        };
        let answer = tokio::time::timeout(self.config.timeout, async {
            let response = self.client.request(request).await?;
            let status = response.status();
            // Only the start of an answer is kept; a receiver streaming more is cut off.
            let body = http_body_util::Limited::new(response.into_body(), ANSWER_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes());
            Ok::<_, hyper_util::client::legacy::Error>((status, body.unwrap_or_default()))
        })
        .await;
        match answer {
            Err(_) => Outcome::Retry(format!(
                "no answer within {}s",
                self.config.timeout.as_secs_f64()
            )),
            Ok(Err(e)) => Outcome::Retry(describe_send_error(&e)),
            Ok(Ok((status, _))) if status.is_success() => Outcome::Delivered,
            Ok(Ok((status, body))) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(ANSWER_BYTES)])
                    .trim()
                    .to_owned();
                let said = format!("answered {status}: {text}");
                if status.is_server_error()
                    || status == hyper::StatusCode::REQUEST_TIMEOUT
                    || status == hyper::StatusCode::TOO_MANY_REQUESTS
                {
                    Outcome::Retry(said)
                } else if status.is_redirection() {
                    Outcome::Refused(format!("{said} (redirects are not followed)"))
                } else {
                    Outcome::Refused(said)
                }
            }
        }
    }

    /// Where the dashboard shows what the notice is about.
    fn link(&self, notice: &Notice, stage: Option<&str>) -> Option<String> {
        let base = self.config.dashboard_url.as_ref()?;
        let fragment = match (&notice.commit, &notice.cluster, stage) {
            (Some(commit), _, _) => format!("commit/{}", path_segment(commit)),
            (None, Some(cluster), _) => format!("cluster/{}", path_segment(cluster)),
            (None, None, Some(stage)) => format!("stage/{}", path_segment(stage)),
            (None, None, None) => return Some(format!("{base}/")),
        };
        Some(format!("{base}/#/{fragment}"))
    }
}

/// The commit status a notice sets: none for notices that are not about a commit's way
/// through a stage.
fn github_state(kind: NoticeKind) -> Option<&'static str> {
    match kind {
        NoticeKind::RenderFailed => Some("error"),
        NoticeKind::RolloutStarted
        | NoticeKind::RolloutAwaitingApproval
        | NoticeKind::DeletionGuardHolding => Some("pending"),
        NoticeKind::RolloutCompleted => Some("success"),
        NoticeKind::RolloutFailed | NoticeKind::RolloutRolledBack => Some("failure"),
        // It never finished in the stage: not a failure of the commit, but not pending either.
        NoticeKind::RolloutSuperseded | NoticeKind::RolloutAbandoned => Some("error"),
        NoticeKind::ClusterOffline
        | NoticeKind::ClusterUnreachable
        | NoticeKind::ClusterBack
        | NoticeKind::DriftCorrected => None,
    }
}

fn slack_text(notice: &Notice, stage: Option<&str>, link: Option<&str>) -> String {
    let mark = match notice.kind {
        NoticeKind::RenderFailed
        | NoticeKind::RolloutFailed
        | NoticeKind::RolloutRolledBack
        | NoticeKind::ClusterOffline
        | NoticeKind::ClusterUnreachable => ":red_circle:",
        NoticeKind::RolloutAwaitingApproval | NoticeKind::DeletionGuardHolding => ":raised_hand:",
        NoticeKind::RolloutCompleted | NoticeKind::ClusterBack => ":large_green_circle:",
        NoticeKind::RolloutStarted | NoticeKind::DriftCorrected => ":large_blue_circle:",
        NoticeKind::RolloutSuperseded | NoticeKind::RolloutAbandoned => ":white_circle:",
    };
    let mut about = Vec::new();
    if let Some(stage) = stage {
        about.push(format!("stage `{}`", slack_escape(stage)));
    }
    if let Some(cluster) = &notice.cluster {
        about.push(format!("cluster `{}`", slack_escape(cluster)));
    }
    if let Some(commit) = &notice.commit {
        about.push(format!("commit `{}`", slack_escape(&cut(commit, 12))));
    }
    let mut text = format!("{mark} *{}*", notice.kind.describe());
    if !about.is_empty() {
        text.push_str(&format!(" ({})", about.join(", ")));
    }
    // What agents, committers and operators wrote: escaped, so it can neither mention
    // (`<!channel>`) nor hide a link (`<https://…|text>`).
    text.push_str(&format!(": {}", slack_escape(&notice.message)));
    if let Some(link) = link {
        text.push_str(&format!(" <{link}|open>"));
    }
    text
}

/// Text as Slack's markup takes it literally: `&`, `<` and `>` escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `sha256=HEX` of the HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `text` with everything but letters, digits, `-`, `_` and `.` percent-encoded.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

/// What went wrong below HTTP, named: a TLS failure says so, with rustls' reason.
fn describe_send_error(error: &hyper_util::client::legacy::Error) -> String {
    match flotilla_pki::tls::cause_of(error) {
        Ok(tls) => format!("TLS: {tls}"),
        Err(deepest) => format!("cannot send: {deepest}"),
    }
}

/// Receivers set up from their configs.
pub fn receivers(
    configs: &[ReceiverConfig],
    group: &str,
) -> Result<Vec<Arc<Receiver>>, ReceiverError> {
    configs
        .iter()
        .map(|c| Receiver::new(c.clone(), group).map(Arc::new))
        .collect()
}

#[cfg(test)]
mod tests;
