//! Talking to a hub's Admin API: where it is (`--hub`, `FLOTILLA_HUB`), who we are
//! (`--token`, `FLOTILLA_TOKEN`, sent as a bearer token), and errors that say what to do.

use std::time::Duration;

use anyhow::anyhow;
use flotilla_proto::v1::admin_client::AdminClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// The hub's API address when neither `--hub` nor `FLOTILLA_HUB` is set.
pub(crate) const DEFAULT_HUB: &str = "127.0.0.1:7071";

/// Largest message accepted from the hub (a fleet status of many clusters).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How to reach the hub, as `global` resolved it from the flags, the environment and the
/// context.
#[derive(Debug, Clone)]
pub(crate) struct HubArgs {
    /// The hub's API address (HOST:PORT).
    pub(crate) hub: String,
    /// The API token (flt_...).
    pub(crate) token: Option<String>,
    /// The hub's CA certificate file: connect with TLS trusting it alone.
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// The hub's CA certificate (PEM) from the context, when no file is given.
    pub(crate) ca_pem: Option<String>,
    /// Speak plain HTTP/2 to a hub started with --insecure.
    pub(crate) insecure: bool,
}

impl Default for HubArgs {
    fn default() -> Self {
        HubArgs {
            hub: DEFAULT_HUB.to_owned(),
            token: None,
            ca_file: None,
            ca_pem: None,
            insecure: false,
        }
    }
}

/// An Admin API client bound to one hub.
pub(crate) type Admin = AdminClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` when `--token` or `FLOTILLA_TOKEN` is set.
#[derive(Clone)]
pub(crate) struct Bearer {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

impl HubArgs {
    /// The address without a scheme.
    fn address(&self) -> &str {
        self.hub
            .trim()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// Connects to the hub, or says why not and what to do.
    pub(crate) async fn connect(&self) -> anyhow::Result<Admin> {
        let address = self.address();
        let scheme = if self.tls()?.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{address}")).map_err(|e| {
            anyhow!("--hub `{}` is not HOST:PORT ({e}); set --hub or FLOTILLA_HUB to the hub's API address", self.hub)
        })?;
        let endpoint = match self.tls()? {
            Some(tls) => endpoint
                .tls_config(tls)
                .map_err(|e| anyhow!("TLS settings for {address}: {e}"))?,
            None => endpoint,
        };
        let channel = endpoint
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| self.connect_error(&e))?;
        let header = self.bearer_header()?;
        Ok(AdminClient::with_interceptor(channel, Bearer { header })
            .max_decoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// TLS trusting `--ca-file` alone, or `None` under `--insecure`. Without either, the
    /// error says where the CA file is.
    fn tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        if self.insecure {
            return Ok(None);
        }
        let pem = match (&self.ca_file, &self.ca_pem) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|e| anyhow!("cannot read the CA file {}: {e}", path.display()))?,
            (None, Some(pem)) => pem.clone(),
            (None, None) => {
                return Err(anyhow!(
                    "the hub speaks TLS: pass --ca-file (or set FLOTILLA_CA_FILE) to the hub's CA \
                     certificate, `<data-dir>/ca.crt` on a hub node, or `flotilla login` once; for \
                     a hub started with --insecure, pass --insecure (or FLOTILLA_INSECURE=1)"
                ));
            }
        };
        let host = match self.address().rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => self.address(),
        };
        Ok(Some(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem))
                .domain_name(host),
        ))
    }

    /// The `authorization` header for `--token` / `FLOTILLA_TOKEN`, if one is set.
    fn bearer_header(&self) -> anyhow::Result<Option<MetadataValue<tonic::metadata::Ascii>>> {
        let Some(token) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(None);
        };
        let header = format!("Bearer {token}").parse().map_err(|_| {
            anyhow!("--token / FLOTILLA_TOKEN holds characters a header cannot carry; paste the token as `flotilla token create` printed it")
        })?;
        Ok(Some(header))
    }

    /// A failed call as an error naming the hub and what to do.
    pub(crate) fn call_error(&self, what: &str, status: Status) -> anyhow::Error {
        let address = self.address();
        match status.code() {
            Code::Unavailable if status.message().contains("transport") => {
                match std::error::Error::source(&status) {
                    Some(source) => self.connect_error(source),
                    None => unreachable_hub(address, status.message()),
                }
            }
            Code::Cancelled | Code::Unknown | Code::Internal
                if self.insecure
                    && (status.code() != Code::Internal
                        || status.message().contains("protocol error")) =>
            {
                anyhow!(
                    "{what}: the hub at {address} ended the call ({}); a hub that speaks TLS \
                     does that to a client using --insecure: pass --ca-file instead",
                    status.message()
                )
            }
            Code::Unauthenticated if self.token.is_none() => anyhow!(
                "{what}: the hub at {address} needs a token: {}; pass --token or set FLOTILLA_TOKEN (a new hub writes its first admin token to <data-dir>/admin-token)",
                status.message()
            ),
            Code::Unauthenticated => anyhow!(
                "{what}: the hub at {address} did not accept the token: {}",
                status.message()
            ),
            Code::PermissionDenied => anyhow!(
                "{what}: the hub at {address} refused: {}; use a token with that role (an admin creates one with `flotilla token create`)",
                status.message()
            ),
            Code::Unimplemented => anyhow!(
                "{what}: {address} does not serve the Admin API; is it a hub's API address (not its peer or HTTP address)?"
            ),
            _ => anyhow!("{what}: {}", status.message()),
        }
    }
}

impl HubArgs {
    /// Why connecting failed, named: a TLS failure says it is one (an unknown CA, a name the
    /// certificate does not hold, a hub that does not speak TLS), with what to do.
    fn connect_error(&self, error: &(dyn std::error::Error + 'static)) -> anyhow::Error {
        let address = self.address();
        let deepest = match flotilla_pki::tls::cause_of(error) {
            Ok(tls) => return tls_error(address, tls),
            Err(deepest) => deepest,
        };
        if self.insecure && (deepest.contains("canceled") || deepest.contains("closed")) {
            return anyhow!(
                "cannot talk to the hub at {address} without TLS ({deepest}): it speaks TLS; \
                 pass --ca-file with its CA certificate instead of --insecure"
            );
        }
        unreachable_hub(address, &deepest)
    }
}

/// A TLS failure as people can act on it.
fn tls_error(address: &str, error: &rustls::Error) -> anyhow::Error {
    use rustls::{CertificateError, Error};
    let hint = match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the hub's certificate is not signed by the CA in --ca-file (or the context's, from \
             `flotilla login`): pass the CA of this hub's group (`<data-dir>/ca.crt` on one of \
             its nodes), or `flotilla login` again"
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            "the hub's certificate does not hold the name you dialled: use an address it was \
             issued for (`flotilla-hub` `--tls-san` adds names)"
        }
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => {
            "the hub's certificate has expired: its node renews it while it runs; check the \
             node's clock and log"
        }
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            "the hub did not answer in TLS: is it started with --insecure (then pass --insecure), \
             or is this not its API address?"
        }
        _ => "check --ca-file and --hub",
    };
    anyhow!("TLS handshake with the hub at {address} failed: {error}; {hint}")
}

fn unreachable_hub(address: &str, detail: &str) -> anyhow::Error {
    anyhow!(
        "cannot reach the hub at {address} ({detail}); start one with `flotilla-hub`, or set --hub or FLOTILLA_HUB to its API address (it prints `api listening on HOST:PORT`)"
    )
}
