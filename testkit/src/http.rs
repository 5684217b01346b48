//! HTTP requests (the simulator's admin API) and HTTPS requests trusting one CA (the hub's
//! webhook and dashboard), over hyper.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// An answer: status code, cookies set and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Each `Set-Cookie` header, as sent.
    pub set_cookies: Vec<String>,
    /// The body, as text.
    pub body: String,
}

fn set_cookies(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect()
}

/// Sends `method url` with `headers` and `body`; any answer is returned, only failing to get
/// one is an error.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client
        .request(builder.body(Full::new(Bytes::from(body)))?)
        .await
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let set_cookies = set_cookies(response.headers());
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        set_cookies,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends `method url` over HTTPS (HTTP/1.1), trusting only the CA certificate in `ca_file`,
/// as a Git host or a browser given the hub's CA does. Any answer is returned.
pub async fn request_tls(
    ca_file: &std::path::Path,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    use anyhow::Context;

    let uri: http::Uri = url.parse()?;
    let host = uri.host().context("the URL names no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let ca = std::fs::read_to_string(ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?;
    let mut config = flotilla_pki::client_config(&flotilla_pki::TrustRoot::from_pem(&ca)?, None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {host}:{port}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header("host", format!("{host}:{port}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::from(body)))?)
        .await
        .map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let set_cookies = set_cookies(response.headers());
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        set_cookies,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// How a push webhook reaches a hub's HTTP listener.
#[derive(Debug, Clone)]
pub enum WebhookAccess {
    /// Plain HTTP, unsigned (an `--insecure` hub without a webhook secret).
    Plain,
    /// HTTPS trusting the hub's CA, signed with the hub's webhook secret as GitHub signs.
    Tls {
        /// The hub's CA certificate file.
        ca_file: std::path::PathBuf,
        /// The webhook secret.
        secret: String,
    },
}

/// GitHub's `X-Hub-Signature-256` of `body` with `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> anyhow::Result<String> {
    use hmac::Mac;

    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// POSTs a GitHub-style push of `commit` to `main` to the hub's `/webhook` and checks it was
/// accepted (202), on a new connection as a Git host opens one. The body names the commit, as a
/// Git host's does: the hub ignores a body it acted on in the last minutes as a replay.
pub async fn push_webhook(
    address: std::net::SocketAddr,
    access: &WebhookAccess,
    commit: &str,
) -> anyhow::Result<()> {
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{commit}"}}"#);
    let body = body.as_bytes();
    let answer = match access {
        WebhookAccess::Plain => {
            request(
                "POST",
                &format!("http://{address}/webhook"),
                &[
                    ("content-type", "application/json"),
                    ("x-github-event", "push"),
                ],
                body.to_vec(),
            )
            .await?
        }
        WebhookAccess::Tls { ca_file, secret } => {
            request_tls(
                ca_file,
                "POST",
                &format!("https://{address}/webhook"),
                &[
                    ("content-type", "application/json"),
                    ("x-github-event", "push"),
                    ("x-hub-signature-256", &github_signature(secret, body)?),
                ],
                body.to_vec(),
            )
            .await?
        }
    };
    if answer.status != 202 {
        anyhow::bail!("webhook refused: {} {}", answer.status, answer.body);
    }
    Ok(())
}
