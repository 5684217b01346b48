//! Fixtures for the agent protocol's tests: rendered revisions proposed straight into the real
//! state machine (the commands the source and render controllers would propose), in-process
//! hubs, and simulated clusters each with an agent engine and its hub link.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_agent::hub::{Backoff, FixedRandom, HubLink, LinkConfig};
use flotilla_agent::retry::RetryPolicy;
use flotilla_agent::{Engine, EngineConfig, SystemClock};
use flotilla_core::render::{ObjectId, RenderedBundle, RenderedObject};
use flotilla_core::spec::DriftMode;
use flotilla_hub::config::{NodeConfig, Timing};
use flotilla_hub::server::{Hub, HubConfig};
use flotilla_hub::state::source::{Blob, BlobHash, BlobIndex, RevisionRef};
use flotilla_hub::state::{Command, RenderOutcome, Timestamp};
use flotilla_hub::sync::{LivenessConfig, SyncConfig};
use flotilla_sim::{Sim, SimConfig};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use tempfile::TempDir;

/// Longest a test waits for anything before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The source every test revision comes from.
pub const SOURCE: &str = "origin";

/// A ConfigMap in namespace `app` with the given data.
pub fn config_map(name: &str, data: &[(&str, &str)]) -> Value {
    config_map_of("app", name, data)
}

/// A ConfigMap in `namespace` with the given data.
pub fn config_map_of(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    })
}

/// Text zstd cannot shrink much (a xorshift stream over 62 symbols), the same for a seed.
pub fn noise(seed: u64, len: usize) -> String {
    const SYMBOLS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            SYMBOLS[(x % SYMBOLS.len() as u64) as usize] as char
        })
        .collect()
}

/// The namespace test bundles put their objects in.
pub fn namespace() -> Value {
    namespace_named("app")
}

/// A Namespace.
pub fn namespace_named(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A Deployment in namespace `app`.
pub fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "app"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": format!("example/{name}:1")}]}
            }
        }
    })
}

/// A rendered bundle of `objects`, as the render controller would produce it.
pub fn bundle(name: &str, objects: Vec<Value>) -> Result<RenderedBundle> {
    let mut objects = objects
        .into_iter()
        .map(|object| {
            let object = flotilla_core::hash::canonical_json(object);
            let id = ObjectId::of(&object).map_err(anyhow::Error::msg)?;
            Ok(RenderedObject { id, object })
        })
        .collect::<Result<Vec<_>>>()?;
    objects.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(RenderedBundle {
        bundle: name.to_owned(),
        drift: DriftMode::Correct,
        depends_on: Vec::new(),
        objects,
        allow: flotilla_core::Allow::default(),
        create_namespace: None,
    })
}

/// The revision `commit` of the test source.
pub fn revision(commit: &str) -> RevisionRef {
    RevisionRef {
        source: SOURCE.to_owned(),
        commit: commit.to_owned(),
    }
}

/// Registers a cluster.
pub fn register(name: &str) -> Command {
    Command::RegisterCluster {
        name: name.to_owned(),
        labels: BTreeMap::from([("env".to_owned(), "test".to_owned())]),
        at: Timestamp(1),
    }
}

/// A rendered revision as the render controller would record it: the blobs its leader stores on
/// a majority of the group first, then the commands naming them.
pub struct Release {
    /// The rendered bundles, compressed.
    pub blobs: Vec<Blob>,
    /// Fetch, render and assignment.
    pub commands: Vec<Command>,
}

/// Stores a release's blobs on the hub's group (as the render controller does before it
/// proposes), then proposes its commands.
pub async fn publish(hub: &Hub, release: Release) -> Result<()> {
    hub.node()
        .replicate(release.blobs)
        .await
        .context("storing the release's blobs")?;
    propose_all(hub, release.commands).await
}

/// Stores blobs in the content store of the hub node at `address` (its peer listener), over
/// `security`: how a test that drives hub processes directly stands in for a leader's render.
pub async fn put_content(
    address: &str,
    security: &flotilla_consensus::transport::net::Security,
    group: &str,
    blobs: &[Blob],
) -> Result<()> {
    use flotilla_proto::v1::hub_content_client::HubContentClient;
    use flotilla_proto::v1::{ContentBlob, ContentPut};
    let channel = flotilla_consensus::transport::net::channel(address, security)?;
    let mut client = HubContentClient::new(channel)
        .max_encoding_message_size(flotilla_consensus::transport::net::MAX_MESSAGE_BYTES);
    for batch in blobs.chunks(64) {
        let request = ContentPut {
            group: group.to_owned(),
            from: 0,
            blobs: batch
                .iter()
                .map(|b| ContentBlob {
                    hash: b.hash.as_bytes().to_vec(),
                    size: b.size,
                    compressed: b.compressed.clone(),
                })
                .collect(),
        };
        client
            .put(request)
            .await
            .with_context(|| format!("storing content on the node at {address}"))?;
    }
    Ok(())
}

/// How many of `blobs` the hub node at `address` does not serve byte for byte
/// (`HubContent.Get` on its peer listener).
pub async fn content_missing(
    address: &str,
    security: &flotilla_consensus::transport::net::Security,
    group: &str,
    blobs: &[Blob],
) -> Result<Vec<BlobHash>> {
    use flotilla_proto::v1::ContentWanted;
    use flotilla_proto::v1::hub_content_client::HubContentClient;
    let channel = flotilla_consensus::transport::net::channel(address, security)?;
    let mut client = HubContentClient::new(channel)
        .max_decoding_message_size(flotilla_consensus::transport::net::MAX_MESSAGE_BYTES);
    let mut missing = Vec::new();
    for batch in blobs.chunks(512) {
        let mut left: BTreeMap<Vec<u8>, &Blob> = batch
            .iter()
            .map(|b| (b.hash.as_bytes().to_vec(), b))
            .collect();
        while !left.is_empty() {
            let reply = client
                .get(ContentWanted {
                    group: group.to_owned(),
                    hashes: left.keys().cloned().collect(),
                })
                .await
                .with_context(|| format!("reading content from the node at {address}"))?
                .into_inner();
            for hash in reply.missing {
                if let Some(want) = left.remove(&hash) {
                    missing.push(want.hash);
                }
            }
            if reply.blobs.is_empty() {
                break;
            }
            for served in reply.blobs {
                if let Some(want) = left.remove(&served.hash)
                    && (served.size != want.size || served.compressed != want.compressed)
                {
                    missing.push(want.hash);
                }
            }
        }
        missing.extend(left.values().map(|b| b.hash));
    }
    Ok(missing)
}

/// The raft entries recording `per_cluster` as `revision`'s render (attempt `at`), split as
/// the render controller splits them (each under 1 MiB); `blobs` are what the entries
/// introduce.
pub fn render_entries(
    revision: &RevisionRef,
    per_cluster: BTreeMap<String, BTreeMap<String, BlobHash>>,
    blobs: &[Blob],
    at: Timestamp,
) -> Result<Vec<Command>> {
    let index = BlobIndex::describe(blobs)?;
    Ok(flotilla_hub::controller::render::render_entries(
        revision,
        per_cluster,
        BTreeMap::new(),
        index,
        at.0,
        at,
        0,
        |last, staged| Command::RecordRender {
            revision: revision.clone(),
            outcome: RenderOutcome::Rendered {
                bundles: last.bundles,
                index: last.index,
                spec: String::new(),
                charts: BTreeMap::new(),
                staged,
            },
            at,
        },
    ))
}

/// The blobs and commands that record `commit` as fetched and rendered, with `bundles` per
/// cluster, and assign it to those clusters.
pub fn release(commit: &str, bundles: &BTreeMap<&str, Vec<RenderedBundle>>) -> Result<Release> {
    let mut per_cluster = BTreeMap::new();
    let mut blobs = BTreeMap::new();
    for (cluster, rendered) in bundles {
        let mut hashes = BTreeMap::new();
        for bundle in rendered {
            let blob = Blob::from_content(&bundle.to_blob())?;
            hashes.insert(bundle.bundle.clone(), blob.hash);
            blobs.insert(blob.hash, blob);
        }
        per_cluster.insert((*cluster).to_owned(), hashes);
    }
    let blobs: Vec<Blob> = blobs.into_values().collect();
    let index = BlobIndex::describe(&blobs)?;
    let commands = vec![
        Command::RecordFetch {
            source: SOURCE.to_owned(),
            url: "file:///fleet".to_owned(),
            commit: commit.to_owned(),
            at: Timestamp(10),
        },
        Command::RecordRender {
            revision: revision(commit),
            outcome: RenderOutcome::Rendered {
                bundles: per_cluster,
                index,
                spec: String::new(),
                charts: Default::default(),
                staged: None,
            },
            at: Timestamp(11),
        },
        Command::AssignRevision {
            clusters: bundles.keys().map(|c| (*c).to_owned()).collect(),
            revision: revision(commit),
            at: Timestamp(12),
        },
    ];
    Ok(Release { blobs, commands })
}

/// Fast raft timers.
pub fn fast_timing() -> Timing {
    Timing {
        tick: Duration::from_millis(10),
        election_ticks: 10,
        heartbeat_ticks: 2,
        request_timeout: Duration::from_secs(3),
    }
}

/// Sync timing fit for tests: quick heartbeats, batches, presence and liveness.
pub fn fast_sync() -> SyncConfig {
    SyncConfig {
        heartbeat_interval: Duration::from_millis(200),
        report_batch_interval: Duration::from_millis(100),
        presence_interval: Duration::from_millis(200),
        liveness: LivenessConfig {
            offline_after: Duration::from_secs(1),
            check_interval: Duration::from_millis(100),
        },
        ..SyncConfig::default()
    }
}

/// A single-node hub in this process, on free ports (or on `api_listen` when given).
pub async fn single_hub(data_dir: &Path, api_listen: Option<&str>) -> Result<Hub> {
    let mut node = NodeConfig::new(1, data_dir, "127.0.0.1:0");
    node.timing = fast_timing();
    let mut config = HubConfig::new(node);
    config.api_listen = api_listen.unwrap_or("127.0.0.1:0").to_owned();
    config.http_listen = "127.0.0.1:0".to_owned();
    config.sync = fast_sync();
    // A restarted hub may find its old port not yet released.
    let mut last = None;
    for _ in 0..50 {
        match Hub::start(config.clone()).await {
            Ok(hub) => return Ok(hub),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("hub did not start: {last:?}")
}

/// Proposes commands in order through an in-process hub.
pub async fn propose_all(hub: &Hub, commands: Vec<Command>) -> Result<()> {
    for command in commands {
        let kind = command.kind();
        hub.node()
            .propose(&command)
            .await
            .with_context(|| format!("proposing {kind}"))?;
    }
    Ok(())
}

/// A simulator with `clusters` clusters whose Deployments become ready after `rollout_delay`.
pub async fn sim(clusters: usize, rollout_delay: Duration) -> Result<Sim> {
    Ok(Sim::start(SimConfig {
        clusters,
        rollout_delay,
        ..SimConfig::default()
    })
    .await?)
}

/// A link config fit for tests: quick heartbeats and reconnects, no randomness.
pub fn test_link(hubs: Vec<String>, cluster: &str) -> LinkConfig {
    let mut config = LinkConfig::new(hubs, cluster);
    config.heartbeat_interval = Duration::from_millis(200);
    config.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    config.report_flush = Duration::from_millis(50);
    config
}

/// An agent in this process: an engine on a simulated cluster and its link to the hub.
pub struct Agent {
    /// The engine applying to the simulated cluster.
    pub engine: Arc<Engine>,
    /// The engine's stream to the hub.
    pub link: HubLink,
    /// A client of the simulated cluster, to look at what was applied.
    pub client: kube::Client,
    /// The agent's state directory (its identity and held bundles).
    pub state: TempDir,
}

/// Starts an agent for `cluster` of `sim`.
pub fn agent(sim: &Sim, cluster: &str, link: LinkConfig) -> Result<Agent> {
    let url = sim.cluster_url(cluster).parse().context("cluster url")?;
    let client = kube::Client::try_from(kube::Config::new(url))?;
    let state = tempfile::tempdir()?;
    let engine = Arc::new(Engine::start(
        client.clone(),
        EngineConfig {
            state_dir: Some(state.path().to_path_buf()),
            drift_debounce: Duration::from_millis(100),
            retry: RetryPolicy {
                attempts: 3,
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
                request_timeout: Duration::from_secs(2),
            },
            revision_retry_initial: Duration::from_millis(200),
            revision_retry_max: Duration::from_secs(1),
            ..EngineConfig::default()
        },
        Arc::new(SystemClock),
    )?);
    let link = HubLink::start(
        engine.clone(),
        link,
        Arc::new(FixedRandom(0.5)),
        Arc::new(SystemClock),
    )?;
    Ok(Agent {
        engine,
        link,
        client,
        state,
    })
}

/// A ConfigMap of namespace `app`, or `None`.
pub async fn config_map_in(client: &kube::Client, name: &str) -> Result<Option<ConfigMap>> {
    config_map_at(client, "app", name).await
}

/// A ConfigMap of `namespace`, or `None`.
pub async fn config_map_at(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ConfigMap>> {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), namespace);
    Ok(api.get_opt(name).await?)
}

/// Polls `check` until it returns `Some`, failing after `PATIENCE` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("gave up after {PATIENCE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tracing output for a failing test, when `RUST_LOG` asks for it.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
