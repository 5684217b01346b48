//! The inventory controller: registers the clusters of a file given at start (core's
//! `ClusterInventory` format) and gives registered ones the file's labels. Clusters missing from
//! the file are left alone: removing a cluster is an operator's act (`flotilla cluster remove`).
//! It reconciles once per term, then waits.

use flotilla_core::inventory::Cluster;
use futures::future::BoxFuture;

use crate::controller::{Controller, ControllerContext};
use crate::state::Command;

/// Registers the clusters of an inventory.
pub struct InventoryController {
    clusters: Vec<Cluster>,
}

impl InventoryController {
    /// A controller for these (validated) clusters.
    pub fn new(clusters: Vec<Cluster>) -> Self {
        InventoryController { clusters }
    }
}

impl Controller for InventoryController {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let clusters = self.clusters.clone();
        Box::pin(async move {
            let commands: Vec<Command> = {
                let state = context.node.state();
                clusters
                    .into_iter()
                    .filter_map(|cluster| match state.clusters.get(&cluster.name) {
                        None => Some(Command::RegisterCluster {
                            name: cluster.name,
                            labels: cluster.labels,
                            at: context.clock.now(),
                        }),
                        Some(known) if known.labels != cluster.labels => {
                            Some(Command::RelabelCluster {
                                name: cluster.name,
                                labels: cluster.labels,
                                at: context.clock.now(),
                            })
                        }
                        Some(_) => None,
                    })
                    .collect()
            };
            for command in commands {
                if let Err(e) = context.node.propose(&command).await {
                    // Ending the run makes the supervisor start it again shortly.
                    tracing::warn!(command = command.kind(), error = %e, "inventory not applied");
                    return;
                }
            }
            context.stop.cancelled().await;
        })
    }
}
