//! A `flotilla-sim` process serving clusters named as a test wants them (added through its
//! admin API), a kubeconfig with a context per cluster, and kube-rs clients to read what the
//! agents applied.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::binaries;
use crate::process::Process;

/// A running simulator.
pub struct SimProcess {
    process: Process,
    address: String,
    clusters: Vec<String>,
    kubeconfig: PathBuf,
    _dir: TempDir,
}

impl SimProcess {
    /// Starts a simulator serving `clusters` (DNS labels), whose workloads roll out after
    /// `rollout_delay`.
    pub async fn start(clusters: &[&str], rollout_delay: Duration) -> anyhow::Result<SimProcess> {
        let dir = tempfile::tempdir()?;
        let first = dir.path().join("sim.kubeconfig");
        let mut command = Command::new(binaries::SIM.path()?);
        command
            .args(["--listen", "127.0.0.1:0", "--clusters", "1"])
            .arg("--kubeconfig")
            .arg(&first)
            .arg("--rollout-delay-ms")
            .arg(rollout_delay.as_millis().to_string());
        let process = Process::spawn("flotilla-sim", command)?;
        // The kubeconfig is written once the listener serves; its one cluster tells the port.
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = loop {
            if let Ok(text) = std::fs::read_to_string(&first)
                && let Some(address) = server_address(&text)
            {
                break address;
            }
            if Instant::now() > deadline {
                bail!(
                    "flotilla-sim wrote no kubeconfig within 30 s; stderr:\n{}",
                    process.stderr_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let kubeconfig = dir.path().join("kubeconfig");
        let mut sim = SimProcess {
            process,
            address,
            clusters: Vec::new(),
            kubeconfig,
            _dir: dir,
        };
        for cluster in clusters {
            sim.add_cluster(cluster).await?;
        }
        Ok(sim)
    }

    /// Adds a cluster through the admin API and rewrites the kubeconfig.
    pub async fn add_cluster(&mut self, name: &str) -> anyhow::Result<()> {
        let answer = crate::http::request(
            "POST",
            &format!("http://{}/admin/clusters", self.address),
            &[("content-type", "application/json")],
            serde_json::to_vec(&json!({ "name": name }))?,
        )
        .await?;
        if answer.status != 201 {
            bail!(
                "adding cluster {name} to the simulator: {}: {}",
                answer.status,
                answer.body
            );
        }
        self.clusters.push(name.to_owned());
        self.write_kubeconfig()
    }

    /// Injects a fault into a cluster through the admin API: `fault` is its JSON, e.g.
    /// `{"type": "ServerErrors"}`; `None` clears it.
    pub async fn set_fault(&self, cluster: &str, fault: Option<Value>) -> anyhow::Result<()> {
        let url = format!("http://{}/admin/clusters/{cluster}/fault", self.address);
        let answer = match fault {
            Some(fault) => {
                crate::http::request(
                    "POST",
                    &url,
                    &[("content-type", "application/json")],
                    serde_json::to_vec(&fault)?,
                )
                .await?
            }
            None => crate::http::request("DELETE", &url, &[], Vec::new()).await?,
        };
        if !(200..300).contains(&answer.status) {
            bail!(
                "setting a fault on {cluster}: {}: {}",
                answer.status,
                answer.body
            );
        }
        Ok(())
    }

    /// Decommissions a cluster and adds a new one under the same name and address, as a
    /// cluster rebuilt behind the same API endpoint: empty, with a new kube-system UID.
    pub async fn rebuild_cluster(&mut self, name: &str) -> anyhow::Result<()> {
        let url = format!("http://{}/admin/clusters/{name}", self.address);
        let answer = crate::http::request("DELETE", &url, &[], Vec::new()).await?;
        if answer.status != 204 {
            bail!(
                "removing cluster {name} from the simulator: {}: {}",
                answer.status,
                answer.body
            );
        }
        self.clusters.retain(|c| c != name);
        self.add_cluster(name).await
    }

    /// The UID of a cluster's kube-system namespace: the identity its agent reports.
    pub async fn kube_system_uid(&self, cluster: &str) -> anyhow::Result<String> {
        let namespace = self
            .get(cluster, "v1", "Namespace", None, "kube-system")
            .await?
            .with_context(|| format!("{cluster} has no kube-system namespace"))?;
        namespace["metadata"]["uid"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{cluster}'s kube-system namespace has no uid"))
    }

    /// A kubeconfig with a context per added cluster (kubectl and kube-rs read JSON too).
    fn write_kubeconfig(&self) -> anyhow::Result<()> {
        let clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|name| json!({"name": name, "cluster": {"server": self.url(name)}}))
            .collect();
        let contexts: Vec<Value> = self
            .clusters
            .iter()
            .map(|name| json!({"name": name, "context": {"cluster": name, "user": "sim"}}))
            .collect();
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": clusters,
            "contexts": contexts,
            "users": [{"name": "sim", "user": {}}],
            "current-context": self.clusters.first(),
        });
        let temporary = self.kubeconfig.with_extension("new");
        std::fs::write(&temporary, serde_json::to_vec_pretty(&config)?)?;
        std::fs::rename(&temporary, &self.kubeconfig)?;
        Ok(())
    }

    /// The API server URL of a cluster.
    pub fn url(&self, cluster: &str) -> String {
        format!("http://{}/clusters/{cluster}", self.address)
    }

    /// The kubeconfig file: one context per cluster, named after it.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kube-rs client for a cluster.
    pub fn client(&self, cluster: &str) -> anyhow::Result<kube::Client> {
        let config = kube::Config::new(self.url(cluster).parse()?);
        Ok(kube::Client::try_from(config)?)
    }

    /// An object as JSON, or `None` when it does not exist.
    pub async fn get(
        &self,
        cluster: &str,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Option<Value>> {
        let api = self.api(cluster, api_version, kind, namespace)?;
        let object = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading {kind} {name} in {cluster}"))?;
        Ok(object.map(serde_json::to_value).transpose()?)
    }

    /// The cluster's resourceVersion: every write anywhere in the cluster moves it.
    pub async fn resource_version(&self, cluster: &str) -> anyhow::Result<String> {
        let api = self.api(cluster, "v1", "Namespace", None)?;
        let list = api
            .list_metadata(&ListParams::default())
            .await
            .with_context(|| format!("listing namespaces in {cluster}"))?;
        list.metadata
            .resource_version
            .context("a list without a resourceVersion")
    }

    /// Every object of the given kinds (`(apiVersion, kind)`) in `cluster` carrying the label
    /// `flotilla.dev/bundle`, keyed as `flotilla diff` names objects: `apps/v1 Deployment
    /// web/web`, `v1 Namespace web`.
    pub async fn owned_objects(
        &self,
        cluster: &str,
        kinds: &[(&str, &str)],
    ) -> anyhow::Result<std::collections::BTreeMap<String, Value>> {
        let mut objects = std::collections::BTreeMap::new();
        for (api_version, kind) in kinds {
            let api = self.api(cluster, api_version, kind, None)?;
            let list = api
                .list(&ListParams::default().labels("flotilla.dev/bundle"))
                .await
                .with_context(|| format!("listing {kind} in {cluster}"))?;
            for object in list.items {
                let name = object.metadata.name.clone().unwrap_or_default();
                let key = match &object.metadata.namespace {
                    Some(namespace) => format!("{api_version} {kind} {namespace}/{name}"),
                    None => format!("{api_version} {kind} {name}"),
                };
                objects.insert(key, serde_json::to_value(object)?);
            }
        }
        Ok(objects)
    }

    fn api(
        &self,
        cluster: &str,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> anyhow::Result<Api<DynamicObject>> {
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        let resource = ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            plural: plural(kind),
        };
        let client = self.client(cluster)?;
        Ok(match namespace {
            Some(namespace) => Api::namespaced_with(client, namespace, &resource),
            None => Api::all_with(client, &resource),
        })
    }

    /// The simulator's process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// The address in the first cluster's server URL of a kubeconfig (`http://ADDR/clusters/NAME`).
fn server_address(kubeconfig: &str) -> Option<String> {
    let config = kube::config::Kubeconfig::from_yaml(kubeconfig).ok()?;
    let server = config.clusters.first()?.cluster.as_ref()?.server.clone()?;
    let rest = server.strip_prefix("http://")?;
    Some(rest.split('/').next()?.to_owned())
}

fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}
