//! `flotilla cluster add NAME --labels k=v,...`, `cluster label NAME k=v k2-`, `cluster token NAME`,
//! `cluster reset-identity NAME [--uid UID]`, `cluster get NAME` (`detail`) and
//! `cluster remove NAME`.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Args, Subcommand};
use flotilla_proto::v1::{
    AdminAddClusterRequest, AdminCluster, AdminIssueBootstrapTokenRequest,
    AdminLabelClusterRequest, AdminRemoveClusterRequest, AdminResetClusterIdentityRequest,
};
use serde::Serialize;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, emit, print_structured};

/// Arguments of `flotilla cluster`.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    action: ClusterAction,
}

#[derive(Debug, Subcommand)]
enum ClusterAction {
    /// Register a cluster with its labels; stages and bundles select it by them.
    Add {
        /// Cluster name (DNS-1123 label, e.g. prod-eu-1).
        name: String,
        /// Labels as k=v,k2=v2.
        #[arg(long, default_value = "")]
        labels: String,
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
        /// Output format.
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
    /// Set labels (KEY=VALUE) and remove them (KEY-) on a registered cluster, all or nothing;
    /// stages, waves and bundles select it by its new labels (a cluster listed in the hub's
    /// clusters file takes its labels from that file instead).
    Label {
        /// Cluster name.
        name: String,
        /// KEY=VALUE to set, KEY- to remove.
        #[arg(required = true)]
        labels: Vec<String>,
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
        /// Output format.
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
    /// A new one-time bootstrap token for a registered cluster's agent (one from the hub's
    /// clusters file, or one whose token expired unused).
    Token {
        /// Cluster name.
        name: String,
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
        /// Output format.
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
    /// Forget the Kubernetes cluster (kube-system namespace UID) bound to a cluster's name, when
    /// that cluster was really rebuilt: its agent is refused until then. The next agent to
    /// connect binds its own, or the UID given is bound at once.
    ResetIdentity {
        /// Cluster name.
        name: String,
        /// The rebuilt cluster's kube-system UID (`kubectl get namespace kube-system -o
        /// jsonpath='{.metadata.uid}'`), so that no other cluster's agent can bind first.
        #[arg(long)]
        uid: Option<String>,
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
        /// Output format.
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
    /// Show a cluster: its agent and API, its bundles, and every object of them with its own
    /// sync state, health and message.
    Get {
        /// Cluster name.
        name: String,
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
    /// Remove a cluster: it is assigned nothing more, its agent's certificates are revoked and
    /// its stream is closed.
    Remove {
        /// Cluster name.
        name: String,
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Added {
    name: String,
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bootstrap_token: Option<BootstrapToken>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Labelled {
    name: String,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    name: String,
    /// None: the next agent's hello binds its cluster.
    kube_system_uid: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BootstrapToken {
    token: String,
    expires: String,
    agent_command: String,
}

impl BootstrapToken {
    /// The token of an Admin API answer, with the agent command line that uses it.
    fn from_answer(cluster: &AdminCluster, hub: &HubArgs) -> Option<Self> {
        if cluster.bootstrap_token.is_empty() {
            return None;
        }
        let ca_file = hub
            .ca_file
            .as_ref()
            .map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone()))
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| "ca.crt".into());
        Some(BootstrapToken {
            token: cluster.bootstrap_token.clone(),
            expires: crate::time::rfc3339(cluster.bootstrap_token_expires_ms).unwrap_or_default(),
            // The token goes in the environment, not on the command line that every local
            // user can read in the process list.
            agent_command: format!(
                "FLOTILLA_BOOTSTRAP_TOKEN={} flotilla-agent run --hub {} --cluster {} --ca-file \
                 {ca_file} --state-dir /var/lib/flotilla-agent",
                cluster.bootstrap_token, hub.hub, cluster.name
            ),
        })
    }

    fn table(&self) -> String {
        format!(
            "bootstrap token (works once, until {}; shown only now):\n  {}\nstart the agent with:\n  {}\n",
            self.expires, self.token, self.agent_command
        )
    }
}

/// Parses `k=v,k2=v2` (empty: no labels).
pub(crate) fn parse_labels(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            bail!("--labels: `{item}` is not KEY=VALUE; write --labels env=prod,region=eu");
        };
        if labels
            .insert(key.trim().to_owned(), value.trim().to_owned())
            .is_some()
        {
            bail!("--labels: label `{}` is given twice", key.trim());
        }
    }
    Ok(labels)
}

/// Splits `KEY=VALUE` and `KEY-` arguments into labels to set and keys to remove.
fn parse_label_changes(
    items: &[String],
) -> anyhow::Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for item in items {
        if let Some((key, value)) = item.split_once('=') {
            if set.insert(key.to_owned(), value.to_owned()).is_some() {
                bail!("label `{key}` is given twice");
            }
        } else if let Some(key) = item.strip_suffix('-').filter(|k| !k.is_empty()) {
            remove.push(key.to_owned());
        } else {
            bail!("`{item}` is neither KEY=VALUE (set a label) nor KEY- (remove one)");
        }
    }
    Ok((set, remove))
}

fn label_list(labels: &BTreeMap<String, String>) -> String {
    let list: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    list.join(",")
}

/// Adds or removes a cluster.
pub(crate) async fn run(args: &ClusterArgs) -> anyhow::Result<()> {
    match &args.action {
        ClusterAction::Add {
            name,
            labels,
            hub,
            output,
        } => {
            let labels = parse_labels(labels)?;
            let mut admin = hub.connect().await?;
            let added = admin
                .add_cluster(AdminAddClusterRequest {
                    name: name.clone(),
                    labels: labels.clone().into_iter().collect(),
                })
                .await
                .map_err(|s| hub.call_error(&format!("adding cluster `{name}`"), s))?
                .into_inner();
            let added = Added {
                bootstrap_token: BootstrapToken::from_answer(&added, hub),
                name: added.name,
                labels: added.labels.into_iter().collect(),
            };
            match output {
                OutputFormat::Table => emit(&format!(
                    "cluster {} added{}\n{}",
                    added.name,
                    if added.labels.is_empty() {
                        String::new()
                    } else {
                        format!(" with labels {}", label_list(&added.labels))
                    },
                    added
                        .bootstrap_token
                        .as_ref()
                        .map(BootstrapToken::table)
                        .unwrap_or_default()
                )),
                format => print_structured(&added, *format),
            }
        }
        ClusterAction::Label {
            name,
            labels,
            hub,
            output,
        } => {
            let (set, remove) = parse_label_changes(labels)?;
            let mut admin = hub.connect().await?;
            let answer = admin
                .label_cluster(AdminLabelClusterRequest {
                    name: name.clone(),
                    set: set.into_iter().collect(),
                    remove,
                })
                .await
                .map_err(|s| hub.call_error(&format!("labelling cluster `{name}`"), s))?
                .into_inner();
            let labelled = Labelled {
                name: answer.name,
                labels: answer.labels.into_iter().collect(),
            };
            match output {
                OutputFormat::Table => emit(&format!(
                    "cluster {} labels: {}\n",
                    labelled.name,
                    label_list(&labelled.labels)
                )),
                format => print_structured(&labelled, *format),
            }
        }
        ClusterAction::Token { name, hub, output } => {
            let mut admin = hub.connect().await?;
            let answer = admin
                .issue_bootstrap_token(AdminIssueBootstrapTokenRequest { name: name.clone() })
                .await
                .map_err(|s| hub.call_error(&format!("issuing a token for cluster `{name}`"), s))?
                .into_inner();
            let Some(token) = BootstrapToken::from_answer(&answer, hub) else {
                bail!("the hub issued no token for cluster `{name}`");
            };
            match output {
                OutputFormat::Table => emit(&token.table()),
                format => print_structured(&token, *format),
            }
        }
        ClusterAction::ResetIdentity {
            name,
            uid,
            hub,
            output,
        } => {
            let mut admin = hub.connect().await?;
            let answer = admin
                .reset_cluster_identity(AdminResetClusterIdentityRequest {
                    name: name.clone(),
                    kube_system_uid: uid.clone().unwrap_or_default(),
                })
                .await
                .map_err(|s| hub.call_error(&format!("resetting the identity of `{name}`"), s))?
                .into_inner();
            let identity = Identity {
                name: answer.name,
                kube_system_uid: Some(answer.kube_system_uid).filter(|uid| !uid.is_empty()),
            };
            match output {
                OutputFormat::Table => emit(&match &identity.kube_system_uid {
                    Some(uid) => format!(
                        "cluster {} bound to the Kubernetes cluster whose kube-system UID is {uid}\n",
                        identity.name
                    ),
                    None => format!(
                        "cluster {} is bound to no Kubernetes cluster: the next agent to connect \
                         binds its own\n",
                        identity.name
                    ),
                }),
                format => print_structured(&identity, *format),
            }
        }
        ClusterAction::Get { name, hub, output } => {
            crate::detail::cluster_get(name, hub, *output).await
        }
        ClusterAction::Remove { name, hub } => {
            let mut admin = hub.connect().await?;
            admin
                .remove_cluster(AdminRemoveClusterRequest { name: name.clone() })
                .await
                .map_err(|s| hub.call_error(&format!("removing cluster `{name}`"), s))?;
            emit(&format!("cluster {name} removed\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_label_changes, parse_labels};

    #[test]
    fn label_changes_set_and_remove_and_bad_items_are_named() {
        let items = ["wave=canary", "region-", "note=a=b"].map(String::from);
        let (set, remove) = parse_label_changes(&items).expect("valid changes");
        assert_eq!(set["wave"], "canary");
        assert_eq!(set["note"], "a=b");
        assert_eq!(remove, ["region"]);
        let error = parse_label_changes(&["region".to_owned()])
            .expect_err("neither")
            .to_string();
        assert!(error.contains("`region` is neither KEY=VALUE"), "{error}");
        assert!(parse_label_changes(&["-".to_owned()]).is_err());
        assert!(parse_label_changes(&["a=1".to_owned(), "a=2".to_owned()]).is_err());
    }

    #[test]
    fn labels_parse_and_bad_items_are_named() {
        let labels = parse_labels("env=prod, region=eu").expect("valid labels");
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["region"], "eu");
        assert!(parse_labels("").expect("no labels").is_empty());
        let error = parse_labels("env").expect_err("no `=`").to_string();
        assert!(error.contains("`env` is not KEY=VALUE"), "{error}");
        assert!(parse_labels("a=1,a=2").is_err());
    }
}
