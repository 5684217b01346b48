//! The Admin API of an in-process hub that checks bearer tokens: its first admin token, clients
//! presenting a token, and tokens created through the API.

use std::time::Duration;

use anyhow::Result;
use flotilla_hub::controller::first_admin::ADMIN_TOKEN_FILE;
use flotilla_hub::server::HubConfig;
use flotilla_proto::v1::AdminCreateTokenRequest;
use flotilla_proto::v1::admin_client::AdminClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::fleet::{GitRepo, TestHub, rendered, with_fleet};

/// Adds the bearer header to every call.
type Bearer = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;

/// An Admin API client presenting a token (or none).
pub type Client = AdminClient<InterceptedService<Channel, Bearer>>;

/// An Admin API client that presents `token` (none: no header).
pub async fn client(hub: &TestHub, token: Option<&str>) -> Result<Client> {
    let channel = Channel::from_shared(format!("http://{}", hub.hub.api_address()))?
        .connect()
        .await?;
    let header: Option<MetadataValue<_>> =
        token.map(|t| format!("Bearer {t}").parse()).transpose()?;
    let interceptor: Bearer = Box::new(move |mut request: Request<()>| {
        if let Some(header) = &header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    });
    Ok(AdminClient::with_interceptor(channel, interceptor))
}

/// A hub that checks tokens, following the small fleet, with its first revision rendered;
/// `configure` adjusts its config first.
pub async fn secured_hub(
    configure: impl FnOnce(&mut HubConfig),
) -> Result<(GitRepo, TestHub, String)> {
    let (repo, commit) = with_fleet()?;
    let hub = TestHub::start(&repo.url(), |config| {
        config.authenticate = true;
        configure(config);
    })
    .await?;
    hub.wait_for("first render", Duration::from_secs(20), |s| {
        rendered(s, &commit) && s.stages.get("dev").is_some_and(|d| d.pinned.is_some())
    })
    .await?;
    Ok((repo, hub, commit))
}

/// The first admin token, as the hub wrote it.
pub async fn admin_token(hub: &TestHub) -> Result<String> {
    let file = hub.data.path().join(ADMIN_TOKEN_FILE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && hub
                .hub
                .node()
                .state()
                .access
                .token_named("initial-admin")
                .is_some()
        {
            return Ok(text.trim().to_owned());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no {file:?} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a token `name` with `role` on `stages` (none: every stage), expiring after
/// `expires_ms` (0: never); returns its secret.
pub async fn create(
    admin: &mut Client,
    name: &str,
    role: &str,
    stages: &[&str],
    expires_ms: i64,
) -> Result<String> {
    let reply = admin
        .create_token(AdminCreateTokenRequest {
            name: name.into(),
            role: role.into(),
            stages: stages.iter().map(|s| s.to_string()).collect(),
            expires_in_ms: expires_ms,
        })
        .await?
        .into_inner();
    Ok(reply.secret)
}
