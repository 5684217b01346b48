//! What the cluster serves: its Kubernetes version and API group versions, read at start and
//! every [`READ_INTERVAL`]. The hub renders chart bundles against it, as `helm install` would
//! (`.Capabilities.KubeVersion`, `.Capabilities.APIVersions.Has`): a chart that checks for a
//! CRD's API gets the answer this cluster would give.

use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use flotilla_core::inventory::Capabilities;

/// How often the version and API groups are read again (an upgrade, a CRD installed by
/// someone else).
pub const READ_INTERVAL: Duration = Duration::from_secs(60);

/// Starts reading; the receiver sees every change. `None` until the first read succeeds.
pub(crate) fn start(client: Client) -> (watch::Receiver<Option<Capabilities>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut interval = tokio::time::interval(READ_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match read(&client).await {
                Ok(read) => {
                    tx.send_if_modified(|held| {
                        let changed = held.as_ref() != Some(&read);
                        if changed {
                            tracing::info!(
                                kube_version = %read.kube_version,
                                api_versions = read.api_versions.len(),
                                "the cluster's capabilities"
                            );
                            *held = Some(read);
                        }
                        changed
                    });
                }
                // Kept as last read: the API probe reports the cluster unreachable.
                Err(error) => tracing::debug!(%error, "cannot read the cluster's capabilities"),
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    (rx, task)
}

/// The version and served group versions, read now.
pub async fn read(client: &Client) -> Result<Capabilities, kube::Error> {
    let version = client.apiserver_version().await?;
    let mut api_versions: Vec<String> = client.list_core_api_versions().await?.versions;
    for group in client.list_api_groups().await?.groups {
        api_versions.extend(group.versions.into_iter().map(|v| v.group_version));
    }
    api_versions.sort();
    api_versions.dedup();
    Ok(Capabilities {
        kube_version: version.git_version,
        api_versions,
    })
}
