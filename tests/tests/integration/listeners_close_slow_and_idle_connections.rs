//! A hub process with short timeouts — HTTP/1 headers within 1 s, HTTP requests answered within
//! 3 s, idle connections closed after 2 s on the HTTP and API listeners, API pings every
//! 500 ms — closes a connection that keeps trickling request headers once the header read
//! timeout passes, answers a request whose body trickles in with a 408 once the request
//! timeout passes, and closes connections that say nothing after their TLS handshake once the
//! idle timeout passes. Quiet but live connections
//! stay: an HTTP/2 connection that sends no request but answers the hub's pings, and a
//! `WatchFleetStatus` stream that hears nothing for three idle timeouts and then gets the next
//! change. The closures are logged as counts, not one line each.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_proto::v1::admin_client::AdminClient;
use flotilla_proto::v1::{AdminAddClusterRequest, AdminFleetStatusRequest};
use flotilla_testkit::attacker::{self, Alpn, Ended, TlsClient};
use flotilla_testkit::hub::{HubOptions, HubProcess};
use flotilla_testkit::small_fleet;
use tokio::sync::watch;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const HEADER_READ: Duration = Duration::from_secs(1);
const REQUEST: Duration = Duration::from_secs(3);
const IDLE: Duration = Duration::from_secs(2);
/// Allowance for a busy test machine in how late a timeout is seen.
const SLACK: Duration = Duration::from_secs(3);

const CONFIG: &str = "\
connections:
  http: {headerReadTimeout: 1s, requestTimeout: 3s, idleTimeout: 2s}
  api: {idleTimeout: 2s, keepaliveInterval: 500ms, keepaliveTimeout: 1s}
";

/// Fails unless `ended` is a close by the hub between `timeout` (less a tenth, for when the
/// two ends started their clocks) and `timeout` plus [`SLACK`].
fn closed_after(what: &str, ended: Ended, timeout: Duration) -> Result<Duration> {
    match ended {
        Ended::ClosedByServer(after) if after >= timeout * 9 / 10 && after < timeout + SLACK => {
            Ok(after)
        }
        other => bail!("{what}: expected a close after about {timeout:?}, got {other:?}"),
    }
}

/// Opens a `WatchFleetStatus` stream as the admin, takes its first update, hears nothing
/// (or only updates) for `quiet`, then adds a cluster and expects the update on the same
/// stream.
async fn watch_survives(hub: &HubProcess, quiet: Duration) -> Result<()> {
    let credentials = hub.credentials().context("a hub with TLS")?;
    let ca = std::fs::read_to_string(&credentials.ca_file)?;
    let channel = Endpoint::from_shared(format!("https://{}", hub.api()))?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )?
        .connect()
        .await?;
    let header: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", credentials.token).parse()?;
    let mut admin =
        AdminClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
            Ok(request)
        });
    let mut updates = admin
        .watch_fleet_status(AdminFleetStatusRequest::default())
        .await?
        .into_inner();
    updates.message().await?.context("no first update")?;
    let quiet_until = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(quiet_until, updates.message()).await {
            Err(_) => break,
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => bail!("the hub ended a quiet watch stream"),
            Ok(Err(status)) => bail!("the hub broke a quiet watch stream: {status}"),
        }
    }
    admin
        .add_cluster(AdminAddClusterRequest {
            name: "watched".into(),
            labels: [("stage".to_owned(), "dev".to_owned())].into(),
        })
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let update = tokio::time::timeout_at(deadline, updates.message())
            .await
            .context("no update after a change")??
            .context("the watch stream ended")?;
        if update.clusters.iter().any(|c| c.name == "watched") {
            return Ok(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_connections_are_closed_and_quiet_live_ones_kept() -> Result<()> {
    let (repo, _) = small_fleet::repository()?;
    let inventory = tempfile::tempdir()?;
    let clusters_file = inventory.path().join("clusters.yaml");
    std::fs::write(&clusters_file, small_fleet::INVENTORY)?;
    let hub = HubProcess::start_with_config(
        &HubOptions {
            repo_url: repo.url(),
            clusters_file,
            poll_interval: "1h".into(),
            webhook_secret: None,
            insecure: false,
        },
        Some(CONFIG),
    )?;
    let ca_file = hub.credentials().context("a hub with TLS")?.ca_file.clone();
    let client = TlsClient::trusting(&ca_file)?;
    let http: SocketAddr = hub.http().parse()?;
    let api: SocketAddr = hub.api().parse()?;
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    let (stop, stopped) = watch::channel(false);

    let quiet_for = IDLE * 3;
    // Each connection's clock starts when its handshake completes, so all connect at once.
    let (trickled, slow_body, silent_http, silent_api, pinged, watched) = tokio::join!(
        async {
            let stream = client.connect(local, http, Alpn::Http1).await?;
            anyhow::Ok(attacker::trickle_headers(stream, HEADER_READ / 4, stopped.clone()).await)
        },
        async {
            let stream = client.connect(local, http, Alpn::Http1).await?;
            anyhow::Ok(attacker::trickle_body(stream, HEADER_READ / 4, stopped.clone()).await)
        },
        async {
            let stream = client.connect(local, http, Alpn::Http2).await?;
            anyhow::Ok(attacker::stay_silent(stream, stopped.clone()).await)
        },
        async {
            let stream = client.connect(local, api, Alpn::Http2).await?;
            anyhow::Ok(attacker::stay_silent(stream, stopped.clone()).await)
        },
        async {
            let stream = client.connect(local, api, Alpn::Http2).await?;
            let stop = stop.clone();
            let timer = async move {
                tokio::time::sleep(quiet_for).await;
                let _ = stop.send(true);
            };
            tokio::join!(attacker::hold_http2(stream, stopped.clone()), timer).0
        },
        watch_survives(&hub, quiet_for),
    );

    let trickled = trickled?;
    let lines = trickled.pieces;
    let header_closed = closed_after(
        "a connection trickling headers",
        trickled.ended,
        HEADER_READ,
    )?;
    ensure!(
        lines >= 2,
        "the trickling connection sent {lines} header lines before the close: bytes kept \
         flowing, so the idle timeout was not what closed it"
    );
    let slow_body = slow_body?;
    let body_closed = closed_after("a request trickling its body", slow_body.ended, REQUEST)?;
    ensure!(
        slow_body.answer.starts_with("HTTP/1.1 408"),
        "a request trickling its body was answered {:?}",
        slow_body.answer
    );
    let idle_http = closed_after("a silent HTTP connection", silent_http?, IDLE)?;
    let idle_api = closed_after("a silent API connection", silent_api?, IDLE)?;
    ensure!(
        pinged? == Ended::Stopped,
        "an HTTP/2 connection answering pings was closed within {quiet_for:?}"
    );
    watched.context("a quiet WatchFleetStatus stream")?;
    eprintln!(
        "closed: trickling headers after {header_closed:?} ({lines} lines sent), trickling a \
         body after {body_closed:?} ({} bytes sent, answered 408), silent HTTP after {idle_http:?}, silent API after {idle_api:?}; kept for {quiet_for:?}: an HTTP/2 \
         connection without requests and a quiet watch stream",
        slow_body.pieces
    );

    // Each listener logs its closures once per 10 s.
    let mut log = String::new();
    for _ in 0..30 {
        log = hub.log_tail();
        if log.contains("that sent no complete request headers within 1 s")
            && log.matches("idle for 2 s").count() >= 2
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the closures were not logged:\n{log}")
}
