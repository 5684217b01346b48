//! gRPC over Flotilla's TLS: a tonic server fed by `TlsListener` reads the caller's identity
//! from `Request::peer_certs()`, and tonic clients configured with PEMs (the agent's and the
//! CLI's way) connect to it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use flotilla_pki::{
    AgentKey, ClientAuth, GroupCa, TlsListener, install_crypto_provider, peer_certificate,
    server_config,
};
use flotilla_proto::v1::hub_group_client::HubGroupClient;
use flotilla_proto::v1::hub_group_server::{HubGroup, HubGroupServer};
use flotilla_proto::v1::{
    GroupAddMemberRequest, GroupMembershipChanged, GroupProposeRequest, GroupProposed,
    GroupReadStateRequest, GroupRemoveMemberRequest, GroupStateImage, GroupStatus,
    GroupStatusRequest,
};
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server};
use tonic::{Request, Response, Status};

const HOUR: Duration = Duration::from_secs(3600);

/// Answers `Status` with the caller's identity in `group`; nothing else.
struct WhoAmI;

#[tonic::async_trait]
impl HubGroup for WhoAmI {
    async fn status(
        &self,
        request: Request<GroupStatusRequest>,
    ) -> Result<Response<GroupStatus>, Status> {
        let certs = request.peer_certs();
        let group = match peer_certificate(certs.as_deref().map(Vec::as_slice)) {
            Ok(peer) => peer.identity.to_string(),
            Err(error) => format!("anonymous: {error}"),
        };
        Ok(Response::new(GroupStatus {
            group,
            ..GroupStatus::default()
        }))
    }

    async fn add_member(
        &self,
        _: Request<GroupAddMemberRequest>,
    ) -> Result<Response<GroupMembershipChanged>, Status> {
        Err(Status::unimplemented("test server"))
    }

    async fn remove_member(
        &self,
        _: Request<GroupRemoveMemberRequest>,
    ) -> Result<Response<GroupMembershipChanged>, Status> {
        Err(Status::unimplemented("test server"))
    }

    async fn propose(
        &self,
        _: Request<GroupProposeRequest>,
    ) -> Result<Response<GroupProposed>, Status> {
        Err(Status::unimplemented("test server"))
    }

    async fn read_state(
        &self,
        _: Request<GroupReadStateRequest>,
    ) -> Result<Response<GroupStateImage>, Status> {
        Err(Status::unimplemented("test server"))
    }
}

/// Starts the server on a loopback port; returns the CA and the port.
async fn start(client_auth: ClientAuth) -> Result<(GroupCa, u16)> {
    install_crypto_provider();
    let ca = GroupCa::generate("test", SystemTime::now())?;
    let node = ca
        .issue_node_certificate(1, &["localhost".into()], HOUR, SystemTime::now())?
        .tls_identity()?;
    let config = server_config(&node, &ca.trust_root(), client_auth)?;
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let port = tcp.local_addr()?.port();
    let incoming = TlsListener::new(tcp, Arc::new(config)).into_stream();
    tokio::spawn(Server::builder().serve_with_incoming(HubGroupServer::new(WhoAmI), incoming));
    Ok((ca, port))
}

async fn connect(port: u16, tls: ClientTlsConfig) -> Result<HubGroupClient<Channel>> {
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))?
        .tls_config(tls.domain_name("localhost"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(HubGroupClient::new(channel))
}

/// An agent's identity as tonic wants it: certificate and key PEM.
fn agent_identity(ca: &GroupCa, cluster: &str) -> Result<Identity> {
    let key = AgentKey::generate()?;
    let issued = ca.sign_agent_csr(&key.csr_pem(cluster)?, cluster, HOUR, SystemTime::now())?;
    Ok(Identity::from_pem(
        issued.certificate_pem,
        key.private_key_pem(),
    ))
}

#[tokio::test]
async fn the_server_reads_the_agents_cluster_from_its_certificate() -> Result<()> {
    let (ca, port) = start(ClientAuth::Optional).await?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.certificate_pem()))
        .identity(agent_identity(&ca, "prod-eu-1")?);
    let mut client = connect(port, tls).await?;
    let status = client
        .status(GroupStatusRequest::default())
        .await?
        .into_inner();
    assert_eq!(status.group, "cluster prod-eu-1");
    Ok(())
}

#[tokio::test]
async fn a_client_without_certificate_is_anonymous_where_optional() -> Result<()> {
    let (ca, port) = start(ClientAuth::Optional).await?;
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.certificate_pem()));
    let mut client = connect(port, tls).await?;
    let status = client
        .status(GroupStatusRequest::default())
        .await?
        .into_inner();
    assert_eq!(status.group, "anonymous: the peer presented no certificate");
    Ok(())
}

#[tokio::test]
async fn a_client_with_another_cas_certificate_gets_no_answer() -> Result<()> {
    let (ca, port) = start(ClientAuth::Optional).await?;
    let other = GroupCa::generate("test", SystemTime::now())?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.certificate_pem()))
        .identity(agent_identity(&other, "prod-eu-1")?);
    let answer = match connect(port, tls).await {
        Ok(mut client) => client
            .status(GroupStatusRequest::default())
            .await
            .map(|_| ())
            .map_err(anyhow::Error::from),
        Err(error) => Err(error),
    };
    assert!(answer.is_err(), "another CA's agent got an answer");
    Ok(())
}

#[tokio::test]
async fn a_client_refuses_a_hub_whose_ca_it_does_not_trust() -> Result<()> {
    let (_, port) = start(ClientAuth::Optional).await?;
    let impostor_ca = GroupCa::generate("test", SystemTime::now())?;
    let tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(impostor_ca.certificate_pem()));
    let outcome = match connect(port, tls).await {
        Ok(mut client) => client
            .status(GroupStatusRequest::default())
            .await
            .map(|_| ())
            .map_err(anyhow::Error::from),
        Err(error) => Err(error),
    };
    assert!(outcome.is_err(), "the client trusted a hub of another CA");
    Ok(())
}
