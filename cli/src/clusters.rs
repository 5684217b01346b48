//! `flotilla clusters`: the registered clusters, their stage, liveness and revision.

use std::collections::BTreeMap;

use clap::Args;
use flotilla_proto::v1::AdminListClustersRequest;
use serde::Serialize;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, Table, emit, or_dash, print_structured, short};
use crate::time::rfc3339;

/// Arguments of `flotilla clusters`.
#[derive(Debug, Args)]
pub(crate) struct ClustersArgs {
    #[arg(skip = crate::global::hub())]
    hub: HubArgs,
    /// Output format.
    #[arg(skip = crate::global::output())]
    output: OutputFormat,
}

/// A cluster as printed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterView {
    name: String,
    stage: Option<String>,
    labels: BTreeMap<String, String>,
    online: bool,
    assigned_revision: Option<String>,
    registered_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct ClusterList {
    clusters: Vec<ClusterView>,
}

/// Lists the clusters.
pub(crate) async fn run(args: &ClustersArgs) -> anyhow::Result<()> {
    let mut admin = args.hub.connect().await?;
    let list = admin
        .list_clusters(AdminListClustersRequest {})
        .await
        .map_err(|s| args.hub.call_error("listing clusters", s))?
        .into_inner();
    let clusters: Vec<ClusterView> = list
        .clusters
        .into_iter()
        .map(|c| ClusterView {
            name: c.name,
            stage: Some(c.stage).filter(|s| !s.is_empty()),
            labels: c.labels.into_iter().collect(),
            online: c.online,
            assigned_revision: Some(c.assigned_revision).filter(|s| !s.is_empty()),
            registered_at: rfc3339(c.registered_at_ms),
        })
        .collect();
    match args.output {
        OutputFormat::Table => emit(&table(&clusters)),
        format => print_structured(&ClusterList { clusters }, format),
    }
}

fn table(clusters: &[ClusterView]) -> String {
    if clusters.is_empty() {
        return "No clusters registered. Add one with `flotilla cluster add NAME --labels k=v`.\n"
            .to_owned();
    }
    let mut table = Table::new(&["NAME", "STAGE", "ONLINE", "REVISION", "LABELS"]);
    for c in clusters {
        table.row(vec![
            c.name.clone(),
            or_dash(c.stage.as_deref().unwrap_or_default()),
            if c.online { "yes" } else { "no" }.to_owned(),
            or_dash(short(c.assigned_revision.as_deref().unwrap_or_default())),
            c.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    table.render()
}
