//! The cluster's API catalog: which kinds exist, under which resource names, and whether they
//! are namespaced. Read with aggregated discovery (two requests), cached, and read again when
//! a bundle names a kind the cache does not know, e.g. one a CRD has just added.

use std::collections::HashMap;

use kube::Client;
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use parking_lot::RwLock;

use crate::retry::{ApiError, RetryPolicy, retrying};

/// One kind the API server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    /// Group, version, kind and plural resource name.
    pub resource: ApiResource,
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
}

#[derive(Default)]
struct Index {
    /// By `(apiVersion, kind)`.
    exact: HashMap<(String, String), Kind>,
    /// By `(group, kind)`, at the group's preferred version.
    preferred: HashMap<(String, String), Kind>,
    /// Namespaced kinds that can be listed, at their preferred versions.
    listable_namespaced: Vec<Kind>,
}

/// Cached discovery.
pub struct Catalog {
    client: Client,
    policy: RetryPolicy,
    index: RwLock<Index>,
}

impl Catalog {
    /// An empty catalog; call [`Catalog::refresh`] before looking anything up.
    pub fn new(client: Client, policy: RetryPolicy) -> Catalog {
        Catalog {
            client,
            policy,
            index: RwLock::new(Index::default()),
        }
    }

    /// Reads the whole catalog from the API server again.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let discovery = retrying(&self.policy, || async {
            match Discovery::new(self.client.clone()).run_aggregated().await {
                Ok(discovery) => Ok(discovery),
                // API servers older than 1.26 do not serve aggregated discovery.
                Err(kube::Error::Api(status)) if matches!(status.code, 404 | 406) => {
                    Discovery::new(self.client.clone()).run().await
                }
                Err(error) => Err(error),
            }
        })
        .await?;
        let mut index = Index::default();
        for group in discovery.groups() {
            for version in group.versions() {
                for (resource, caps) in group.versioned_resources(version) {
                    let kind = Kind {
                        namespaced: caps.scope == Scope::Namespaced,
                        resource,
                    };
                    let key = (
                        kind.resource.api_version.clone(),
                        kind.resource.kind.clone(),
                    );
                    index.exact.insert(key, kind);
                }
            }
            for (resource, caps) in group.recommended_resources() {
                let kind = Kind {
                    namespaced: caps.scope == Scope::Namespaced,
                    resource,
                };
                if kind.namespaced && caps.supports_operation(verbs::LIST) {
                    index.listable_namespaced.push(kind.clone());
                }
                let key = (kind.resource.group.clone(), kind.resource.kind.clone());
                index.preferred.insert(key, kind);
            }
        }
        *self.index.write() = index;
        Ok(())
    }

    /// The kind served at `api_version`, if the cache knows it.
    pub fn lookup(&self, api_version: &str, kind: &str) -> Option<Kind> {
        let key = (api_version.to_owned(), kind.to_owned());
        self.index.read().exact.get(&key).cloned()
    }

    /// The kind at its group's preferred version, if the cache knows it.
    pub fn lookup_preferred(&self, group: &str, kind: &str) -> Option<Kind> {
        let key = (group.to_owned(), kind.to_owned());
        self.index.read().preferred.get(&key).cloned()
    }

    /// Every namespaced kind that can be listed, at its preferred version.
    pub fn listable_namespaced(&self) -> Vec<Kind> {
        self.index.read().listable_namespaced.clone()
    }

    /// Whether the cache has been filled.
    pub fn is_empty(&self) -> bool {
        self.index.read().exact.is_empty()
    }
}
