//! Talking to a hub's Admin API: where it is (`--hub`, `FLOTILLA_HUB`), who we are
//! (`FLOTILLA_TOKEN`, sent as a bearer token), and errors that say what to do.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use flotilla_proto::v1::admin_client::AdminClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
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
}

/// An Admin API client bound to one hub.
pub(crate) type Admin = AdminClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` when `FLOTILLA_TOKEN` is set.
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
        let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| {
            anyhow!("--hub `{}` is not HOST:PORT ({e}); set --hub or FLOTILLA_HUB to the hub's API address", self.hub)
        })?;
        let channel = endpoint
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| unreachable_hub(address, &e.to_string()))?;
        let token = std::env::var("FLOTILLA_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        let header =
            match token {
                Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| {
                    anyhow!("FLOTILLA_TOKEN holds characters a header cannot carry")
                })?),
                None => None,
            };
        Ok(AdminClient::with_interceptor(channel, Bearer { header })
            .max_decoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// A failed call as an error naming the hub and what to do.
    pub(crate) fn call_error(&self, what: &str, status: Status) -> anyhow::Error {
        let address = self.address();
        match status.code() {
            Code::Unavailable if status.message().contains("transport") => {
                unreachable_hub(address, status.message())
            }
            Code::Unauthenticated | Code::PermissionDenied => anyhow!(
                "{what}: the hub at {address} refused: {}; set FLOTILLA_TOKEN to a token with the right role",
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
