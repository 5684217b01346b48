//! A notification receiver for tests: an HTTP server on loopback — HTTPS with a certificate
//! from a CA of its own, whose PEM a hub is given as the receiver's `caFile` — that records
//! every request and answers as the test says (a status, or never: the request hangs, as a
//! receiver whose answer is lost when the sending hub dies).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path and query.
    pub path: String,
    /// Headers, names lowercase.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// The status it was answered with; none while held (or never answered).
    pub answered: Option<u16>,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body as JSON (null when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The delivery id (`X-Flotilla-Delivery`).
    pub fn delivery(&self) -> &str {
        self.header("x-flotilla-delivery").unwrap_or_default()
    }

    /// Whether `X-Flotilla-Signature-256` is the HMAC-SHA256 of the body under `secret`.
    pub fn signed_with(&self, secret: &[u8]) -> bool {
        use hmac::Mac;
        let Some(signature) = self
            .header("x-flotilla-signature-256")
            .and_then(|s| s.strip_prefix("sha256="))
            .and_then(|s| hex::decode(s).ok())
        else {
            return false;
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key size");
        mac.update(&self.body);
        mac.verify_slice(&signature).is_ok()
    }
}

/// How to answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// With this status.
    Status(u16),
    /// Never: the request hangs until the sender gives up or dies.
    Hold,
}

/// Decides the answer from the request and how many requests with its delivery id came before.
pub type Policy = Arc<dyn Fn(&Received, usize) -> Answer + Send + Sync>;

/// A running receiver; stops when dropped.
pub struct ReceiverServer {
    /// Where a hub sends to (`…/hook`).
    pub url: String,
    /// The CA the HTTPS receiver's certificate is signed by (PEM); none for plain HTTP.
    pub ca_pem: Option<String>,
    seen: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Drop for ReceiverServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReceiverServer {
    /// A receiver answering 200 to everything.
    pub async fn start(tls: bool) -> anyhow::Result<ReceiverServer> {
        Self::with_policy(tls, Arc::new(|_, _| Answer::Status(200))).await
    }

    /// A receiver answering as `policy` says; with `tls`, over HTTPS for `127.0.0.1`.
    pub async fn with_policy(tls: bool, policy: Policy) -> anyhow::Result<ReceiverServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (acceptor, ca_pem) = if tls {
            let ca = flotilla_pki::GroupCa::generate("receiver", SystemTime::now())?;
            let credentials = ca.issue_node_certificate(
                1,
                &["127.0.0.1".to_owned(), "localhost".to_owned()],
                Duration::from_secs(24 * 3600),
                SystemTime::now(),
            )?;
            let identity = flotilla_pki::tls::TlsIdentity::from_pem(
                &credentials.certificate_pem,
                &credentials.private_key_pem,
            )?;
            let mut config = flotilla_pki::tls::server_config(
                &identity,
                &ca.trust_root(),
                flotilla_pki::tls::ClientAuth::Off,
            )?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                Some(ca.certificate_pem().to_owned()),
            )
        } else {
            (None, None)
        };
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{address}/hook");
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, policy, acceptor) = (recorder.clone(), policy.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        answer(request, seen.clone(), policy.clone())
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let io = hyper_util::rt::TokioIo::new(stream);
                                let _ = builder.serve_connection(io, service).await;
                            }
                        }
                        None => {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = builder.serve_connection(io, service).await;
                        }
                    }
                });
            }
        });
        Ok(ReceiverServer {
            url,
            ca_pem,
            seen,
            task,
        })
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.seen.lock().clone()
    }

    /// Waits until `done` holds of the requests so far; returns them.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> anyhow::Result<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let received = self.received();
            if done(&received) {
                return Ok(received);
            }
            if tokio::time::Instant::now() >= deadline {
                let seen: Vec<String> = received
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} {:?}: {}",
                            r.path,
                            r.delivery(),
                            r.answered,
                            String::from_utf8_lossy(&r.body)
                        )
                    })
                    .collect();
                anyhow::bail!(
                    "receiver: {what} not seen within {within:?}; saw:\n{}",
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<Received>>>,
    policy: Policy,
) -> anyhow::Result<hyper::Response<Full<Bytes>>> {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .context("reading a notification's body")?
        .to_bytes()
        .to_vec();
    let mut received = Received {
        path,
        headers,
        body,
        answered: None,
    };
    let before = seen
        .lock()
        .iter()
        .filter(|r| r.delivery() == received.delivery())
        .count();
    // Called without the lock held, so a policy may look at what was received.
    let answer = policy(&received, before);
    if let Answer::Status(status) = answer {
        received.answered = Some(status);
    }
    seen.lock().push(received);
    match answer {
        Answer::Status(status) => {
            let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
            *response.status_mut() = hyper::StatusCode::from_u16(status)?;
            Ok(response)
        }
        Answer::Hold => {
            std::future::pending::<()>().await;
            unreachable!("a held request is never answered")
        }
    }
}
