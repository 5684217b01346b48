//! The engine: keeps every bundle it is given applied, pruned, free of drift and judged for
//! health, and reports what happens. This is the agent's library API: the hub connection
//! (and `flotilla-agent run`) hands it bundle revisions and forwards its reports.
//!
//! Each bundle has its own task (see `worker`), so bundles apply concurrently and a slow or
//! failing bundle does not hold up the others. Watches are shared per kind.

mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{OnceCell, broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::api_probe::ApiReachability;
use crate::bundle::{BundleRevision, HeldBundle, InvalidBundle, is_dns_label};
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::cluster_identity::ClusterUid;
use crate::health::BundleHealth;
use crate::inventory::{Inventory, InventoryError, InventoryStore};
use crate::owners::Owners;
use crate::report::{ObjectMessage, Report};
use crate::retry::RetryPolicy;
use crate::state::{BundleState, StateDir, StateError};
use crate::watch::{Routes, Watches};
use flotilla_core::clock::Clock;

/// How long `shutdown` lets a bundle task finish what it is doing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the engine works.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where desired state is kept across restarts; `None` keeps nothing (one-shot use).
    pub state_dir: Option<PathBuf>,
    /// The agent's namespace, where inventories live. Created if missing.
    pub agent_namespace: String,
    /// Objects applied, dry-run or deleted at a time within one bundle.
    pub concurrency: usize,
    /// How long to gather drift events before correcting them.
    pub drift_debounce: Duration,
    /// Retries of single API calls.
    pub retry: RetryPolicy,
    /// First delay before re-applying a revision that failed transiently; doubled per failure.
    pub revision_retry_initial: Duration,
    /// Longest delay between re-applies of a revision that keeps failing transiently.
    pub revision_retry_max: Duration,
    /// Delay before re-applying a revision that failed permanently (refused by the API
    /// server): nothing in Git changed, but the cause may lie outside it (a namespace or RBAC
    /// rule created by hand, a CRD installed meanwhile), as Flux retries at its interval.
    pub permanent_retry: Duration,
    /// How long to wait for a bundle's CRDs to be established.
    pub establish_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            state_dir: None,
            agent_namespace: "flotilla-system".into(),
            concurrency: 8,
            drift_debounce: Duration::from_millis(500),
            retry: RetryPolicy::default(),
            revision_retry_initial: Duration::from_secs(1),
            revision_retry_max: Duration::from_secs(60),
            permanent_retry: Duration::from_secs(300),
            establish_timeout: Duration::from_secs(60),
        }
    }
}

/// Errors of the engine's API.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The revision is not acceptable as given.
    #[error(transparent)]
    Invalid(#[from] InvalidBundle),
    /// The state directory could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The inventories could not be read from the cluster.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// No bundle of that name is held or recorded in the cluster.
    #[error("no bundle named {0:?} is held by this agent or recorded in the cluster")]
    UnknownBundle(String),
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
}

/// Where a bundle stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    /// Bundle name.
    pub name: String,
    /// The desired revision.
    pub revision: String,
    /// Its content hash.
    pub content_hash: String,
    /// The revision last applied completely, if any.
    pub applied_revision: Option<String>,
    /// Its content hash.
    pub applied_hash: Option<String>,
    /// What the engine is doing with the bundle.
    pub phase: Phase,
    /// Errors of the last failed apply, while the desired revision is not applied.
    pub errors: Vec<ObjectMessage>,
    /// Health of the applied objects, once known.
    pub health: Option<BundleHealth>,
    /// Objects with fields other managers added (additive drift, reported and never
    /// corrected), each with the fields and their managers.
    pub added: Vec<ObjectMessage>,
}

/// What the engine is doing with a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Waiting to apply (e.g. for the cluster's inventories to be read).
    Pending,
    /// Applying the desired revision.
    Applying,
    /// The desired revision is applied; drift is being corrected or reported.
    Applied,
    /// The desired revision failed and waits for a new one.
    Failed,
    /// The desired revision failed transiently and will be tried again.
    Retrying,
    /// Everything the bundle owned is being pruned.
    Removing,
}

/// State shared by the engine and its bundle tasks.
struct Shared {
    cluster: Cluster,
    catalog: Catalog,
    inventories: InventoryStore,
    loaded: OnceCell<Mutex<HashMap<String, Inventory>>>,
    owners: Owners,
    watches: Watches,
    routes: Routes,
    reports: broadcast::Sender<Report>,
    state: Option<StateDir>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
}

impl Shared {
    /// The inventories recorded in the cluster, read once (retried until it succeeds).
    async fn inventories(&self) -> Result<&Mutex<HashMap<String, Inventory>>, InventoryError> {
        self.loaded
            .get_or_try_init(|| async {
                self.inventories.ensure_namespace().await?;
                let all = self.inventories.load_all().await?;
                for inventory in &all {
                    self.owners.set(&inventory.bundle, inventory.objects.keys());
                }
                Ok(Mutex::new(
                    all.into_iter().map(|i| (i.bundle.clone(), i)).collect(),
                ))
            })
            .await
    }

    /// Takes a bundle's recorded inventory (or an empty one) for its task to own.
    async fn take_inventory(&self, bundle: &str) -> Result<Inventory, InventoryError> {
        let loaded = self.inventories().await?;
        Ok(loaded.lock().remove(bundle).unwrap_or_default())
    }

    fn report(&self, report: Report) {
        tracing::debug!(%report, "report");
        // Nobody listening is fine: reports are also reflected in `status`.
        let _ = self.reports.send(report);
    }

    fn save(&self, state: &BundleState) -> Result<(), StateError> {
        match &self.state {
            Some(dir) => dir.save(state),
            None => Ok(()),
        }
    }
}

/// What the engine keeps about a bundle's task.
struct Handle {
    state: Arc<Mutex<BundleState>>,
    status: Arc<Mutex<BundleStatus>>,
    wake: mpsc::UnboundedSender<worker::Command>,
    task: JoinHandle<()>,
}

/// The apply/prune/drift/health engine of one cluster.
pub struct Engine {
    shared: Arc<Shared>,
    bundles: Arc<Mutex<HashMap<String, Handle>>>,
    /// The cluster's client, for reading its identity.
    client: Client,
    /// Whether the cluster's API server answers, and the task probing it.
    api: tokio::sync::watch::Receiver<ApiReachability>,
    probe: JoinHandle<()>,
    /// What the cluster serves, and the task reading it.
    capabilities: tokio::sync::watch::Receiver<Option<crate::capabilities::Capabilities>>,
    capabilities_reader: JoinHandle<()>,
}

impl Engine {
    /// Starts an engine on `client`'s cluster. With a state directory, every bundle kept there
    /// is enforced again at once, hub or no hub.
    pub fn start(
        client: Client,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, EngineError> {
        let state = config
            .state_dir
            .as_deref()
            .map(StateDir::open)
            .transpose()?;
        let persisted = match &state {
            Some(dir) => dir.load()?,
            None => Vec::new(),
        };
        let routes: Routes = Arc::default();
        let (reports, _) = broadcast::channel(4096);
        let (api, probe) = crate::api_probe::start(client.clone(), Arc::clone(&clock));
        let (capabilities, capabilities_reader) = crate::capabilities::start(client.clone());
        let shared = Arc::new(Shared {
            cluster: Cluster::new(client.clone(), config.retry.clone(), config.concurrency),
            catalog: Catalog::new(client.clone(), config.retry.clone()),
            inventories: InventoryStore::new(
                client.clone(),
                &config.agent_namespace,
                config.retry.clone(),
            ),
            loaded: OnceCell::new(),
            owners: Owners::default(),
            watches: Watches::new(client.clone(), Arc::clone(&routes)),
            routes,
            reports,
            state,
            clock,
            config,
        });
        let engine = Engine {
            shared,
            bundles: Arc::default(),
            client,
            api,
            probe,
            capabilities,
            capabilities_reader,
        };
        {
            let mut bundles = engine.bundles.lock();
            for state in persisted {
                let name = state.desired.name.clone();
                let handle = engine.spawn(state);
                bundles.insert(name, handle);
            }
        }
        Ok(engine)
    }

    /// The identity of the cluster the engine works on (see [`ClusterUid`]), read now.
    pub async fn cluster_identity(&self) -> ClusterUid {
        ClusterUid::read(&self.client).await
    }

    /// Whether the cluster's API server answers (probed every
    /// [`crate::api_probe::PROBE_INTERVAL`]); the receiver sees every change.
    pub fn api_reachability(&self) -> tokio::sync::watch::Receiver<ApiReachability> {
        self.api.clone()
    }

    /// What the cluster serves (read every [`crate::capabilities::READ_INTERVAL`]; `None`
    /// until first read); the receiver sees every change.
    pub fn capabilities(
        &self,
    ) -> tokio::sync::watch::Receiver<Option<crate::capabilities::Capabilities>> {
        self.capabilities.clone()
    }

    /// Reports from now on: every apply, prune, drift and health change of every bundle.
    pub fn subscribe(&self) -> broadcast::Receiver<Report> {
        self.shared.reports.subscribe()
    }

    /// Makes `revision` the desired state of its bundle. Returns once it is persisted (so the
    /// hub may count it as held); applying goes on in the background and is reported.
    pub fn apply(&self, revision: BundleRevision) -> Result<(), EngineError> {
        revision.validate()?;
        let mut bundles = self.bundles.lock();
        if let Some(handle) = bundles.get(&revision.name) {
            let mut state = handle.state.lock();
            let same = state.desired == revision && !state.removing;
            if !same {
                state.desired = revision;
                state.removing = false;
                self.shared.save(&state)?;
                let _ = handle.wake.send(worker::Command::DesiredChanged);
            }
            return Ok(());
        }
        let state = BundleState {
            desired: revision,
            last_applied: None,
            removing: false,
        };
        self.shared.save(&state)?;
        let name = state.desired.name.clone();
        let handle = self.spawn(state);
        bundles.insert(name, handle);
        Ok(())
    }

    /// Removes a bundle: prunes everything it owns, then forgets it. Works for bundles recorded
    /// in the cluster's inventories that this agent does not hold, too.
    pub async fn remove(&self, bundle: &str) -> Result<(), EngineError> {
        {
            let bundles = self.bundles.lock();
            if let Some(handle) = bundles.get(bundle) {
                let mut state = handle.state.lock();
                if !state.removing {
                    state.removing = true;
                    self.shared.save(&state)?;
                    let _ = handle.wake.send(worker::Command::Remove);
                }
                return Ok(());
            }
        }
        if !is_dns_label(bundle) {
            return Err(EngineError::UnknownBundle(bundle.to_owned()));
        }
        let loaded = self.shared.inventories().await?;
        let recorded = loaded.lock().get(bundle).cloned();
        let Some(inventory) = recorded else {
            return Err(EngineError::UnknownBundle(bundle.to_owned()));
        };
        // A bundle known only from its inventory: its task prunes from the inventory alone.
        let state = BundleState {
            desired: BundleRevision {
                allow: Default::default(),
                name: bundle.to_owned(),
                revision: inventory.revision.clone(),
                content_hash: inventory.content_hash.clone(),
                namespace: "default".into(),
                drift: crate::bundle::DriftMode::Report,
                objects: Vec::new(),
            },
            last_applied: None,
            removing: true,
        };
        self.shared.save(&state)?;
        let mut bundles = self.bundles.lock();
        if !bundles.contains_key(bundle) {
            let handle = self.spawn(state);
            bundles.insert(bundle.to_owned(), handle);
        }
        Ok(())
    }

    /// The bundles held, with the content hash of their desired revision, for the hub's hello.
    pub fn held(&self) -> Vec<HeldBundle> {
        let mut held: Vec<HeldBundle> = self
            .bundles
            .lock()
            .values()
            .map(|h| h.state.lock())
            .filter(|s| !s.removing)
            .map(|s| s.desired.held())
            .collect();
        held.sort_by(|a, b| a.name.cmp(&b.name));
        held
    }

    /// Where every bundle stands.
    pub fn status(&self) -> Vec<BundleStatus> {
        let mut status: Vec<BundleStatus> = self
            .bundles
            .lock()
            .values()
            .map(|h| h.status.lock().clone())
            .collect();
        status.sort_by(|a, b| a.name.cmp(&b.name));
        status
    }

    /// Names of the bundles whose inventories are recorded in the cluster, held or not. Waits
    /// for the inventories to be read.
    pub async fn inventoried(&self) -> Result<Vec<String>, EngineError> {
        let loaded = self.shared.inventories().await?;
        let mut names: Vec<String> = loaded.lock().keys().cloned().collect();
        names.extend(self.bundles.lock().keys().cloned());
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Stops every bundle task and watch. Bundles are left as they are in the cluster. A task
    /// in the middle of an apply gets a few seconds to finish it, then is stopped where it is
    /// (the inventory already lists whatever it wrote).
    pub async fn shutdown(self) {
        self.probe.abort();
        self.capabilities_reader.abort();
        let handles: Vec<Handle> = self.bundles.lock().drain().map(|(_, h)| h).collect();
        for handle in &handles {
            let _ = handle.wake.send(worker::Command::Shutdown);
        }
        for mut handle in handles {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut handle.task)
                .await
                .is_err()
            {
                handle.task.abort();
            }
        }
        self.shared.watches.stop();
    }

    fn spawn(&self, state: BundleState) -> Handle {
        let status = Arc::new(Mutex::new(BundleStatus {
            name: state.desired.name.clone(),
            revision: state.desired.revision.clone(),
            content_hash: state.desired.content_hash.clone(),
            applied_revision: None,
            applied_hash: None,
            phase: Phase::Pending,
            errors: Vec::new(),
            health: None,
            added: Vec::new(),
        }));
        let (wake, commands) = mpsc::unbounded_channel();
        let (observations_tx, observations) = mpsc::unbounded_channel();
        self.shared
            .routes
            .lock()
            .insert(state.desired.name.clone(), observations_tx);
        let removing = state.removing;
        let state = Arc::new(Mutex::new(state));
        let task = tokio::spawn(worker::run(worker::Worker::new(
            Arc::clone(&self.shared),
            Arc::clone(&self.bundles),
            Arc::clone(&state),
            Arc::clone(&status),
            commands,
            observations,
        )));
        if removing {
            let _ = wake.send(worker::Command::Remove);
        }
        Handle {
            state,
            status,
            wake,
            task,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.probe.abort();
        self.capabilities_reader.abort();
        for (_, handle) in self.bundles.lock().drain() {
            handle.task.abort();
        }
        self.shared.watches.stop();
    }
}
