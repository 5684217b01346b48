//! Talking to a hub's Admin API: where it is (`--hub`, `FLOTILLA_HUB`), who we are
//! (`--token`, `FLOTILLA_TOKEN`, sent as a bearer token), and errors that say what to do.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
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

/// How to reach the hub; flattened into every command that talks to one.
#[derive(Debug, Clone, Args)]
pub(crate) struct HubArgs {
    /// The hub's API address (HOST:PORT), as `flotilla-hub` prints it (`api listening on ...`).
    #[arg(long, env = "FLOTILLA_HUB", default_value = DEFAULT_HUB)]
    pub(crate) hub: String,
    /// The API token (flt_...), as `flotilla token create` printed it; a new hub writes its
    /// first admin token to `<data-dir>/admin-token`.
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// The hub's CA certificate (its `<data-dir>/ca.crt`): connect with TLS trusting it alone.
    #[arg(long, env = "FLOTILLA_CA_FILE", value_name = "FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// Speak plain HTTP/2 to a hub started with --insecure.
    #[arg(long, env = "FLOTILLA_INSECURE", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub(crate) insecure: bool,
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
            .map_err(|e| unreachable_hub(address, &e.to_string()))?;
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
        let Some(path) = &self.ca_file else {
            return Err(anyhow!(
                "the hub speaks TLS: pass --ca-file (or set FLOTILLA_CA_FILE) to the hub's CA \
                 certificate, `<data-dir>/ca.crt` on a hub node; for a hub started with \
                 --insecure, pass --insecure (or FLOTILLA_INSECURE=1)"
            ));
        };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read the CA file {}: {e}", path.display()))?;
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
                unreachable_hub(address, status.message())
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

fn unreachable_hub(address: &str, detail: &str) -> anyhow::Error {
    anyhow!(
        "cannot reach the hub at {address} ({detail}); start one with `flotilla-hub`, or set --hub or FLOTILLA_HUB to its API address (it prints `api listening on HOST:PORT`)"
    )
}
