//! Connecting to the cluster the agent serves: an explicit kubeconfig and context, or whatever
//! kube infers (`$KUBECONFIG`, `~/.kube/config`, or the in-cluster service account).

use std::path::{Path, PathBuf};

/// The cluster's client configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the cluster's client configuration{}: {detail}", from_file(.kubeconfig))]
pub struct ConnectError {
    /// The kubeconfig file, if one was given.
    pub kubeconfig: Option<PathBuf>,
    /// What went wrong.
    pub detail: String,
}

fn from_file(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" from {}", p.display()))
        .unwrap_or_default()
}

/// A client for the cluster named by `kubeconfig` and `context`; either may be left to the
/// usual defaults.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, ConnectError> {
    let config = config(kubeconfig, context).await?;
    kube::Client::try_from(config).map_err(|e| ConnectError {
        kubeconfig: kubeconfig.map(Path::to_path_buf),
        detail: e.to_string(),
    })
}

/// As [`connect`], every request counted in `metrics` by verb and answer.
pub async fn connect_counted(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    metrics: std::sync::Arc<crate::metrics::AgentMetrics>,
) -> Result<kube::Client, ConnectError> {
    let failed = |detail: String| ConnectError {
        kubeconfig: kubeconfig.map(Path::to_path_buf),
        detail,
    };
    let config = config(kubeconfig, context).await?;
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| failed(e.to_string()))?;
    Ok(builder
        .with_layer(&crate::metrics::CountRequests(metrics))
        .build())
}

async fn config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Config, ConnectError> {
    let failed = |detail: String| ConnectError {
        kubeconfig: kubeconfig.map(Path::to_path_buf),
        detail,
    };
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let file =
                kube::config::Kubeconfig::read_from(path).map_err(|e| failed(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| failed(e.to_string()))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| failed(e.to_string()))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| failed(e.to_string()))?,
    };
    Ok(config)
}
