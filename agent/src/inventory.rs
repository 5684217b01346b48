//! Inventories: what each bundle owns, recorded in the cluster so that a restarted or replaced
//! agent knows it without local state.
//!
//! One ConfigMap per bundle, `flotilla-bundle-<name>` in the agent's namespace, lists the exact
//! objects the bundle owns. Pruning is then a difference of two lists: no list calls over every
//! kind, and nothing absent from the list (so nothing Flotilla did not create) can be pruned.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use crate::object::{FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ObjectRef};
use crate::retry::{ApiError, RetryPolicy, retrying};

/// Label on inventory ConfigMaps naming their bundle.
pub const INVENTORY_LABEL: &str = "flotilla.dev/inventory";
/// Prefix of inventory ConfigMap names.
const NAME_PREFIX: &str = "flotilla-bundle-";

/// One object a bundle owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The object.
    #[serde(flatten)]
    pub id: ObjectRef,
    /// The `apiVersion` it was applied at, to address it when pruning.
    pub api_version: String,
    /// The object existed, created by someone else, before the bundle first applied it: the
    /// bundle manages it but never deletes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
}

/// What a bundle owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Bundle name.
    pub bundle: String,
    /// Last revision applied completely (empty while the first apply is under way).
    pub revision: String,
    /// Content hash of that revision.
    pub content_hash: String,
    /// The objects, by identity.
    pub objects: BTreeMap<ObjectRef, Entry>,
}

/// Reads and writes inventories in the agent's namespace.
#[derive(Clone)]
pub struct InventoryStore {
    api: Api<ConfigMap>,
    namespaces: Api<Namespace>,
    namespace: String,
    policy: RetryPolicy,
}

impl InventoryStore {
    /// A store in `namespace`.
    pub fn new(client: Client, namespace: &str, policy: RetryPolicy) -> InventoryStore {
        InventoryStore {
            api: Api::namespaced(client.clone(), namespace),
            namespaces: Api::all(client),
            namespace: namespace.to_owned(),
            policy,
        }
    }

    /// Creates the agent's namespace if it does not exist yet.
    pub async fn ensure_namespace(&self) -> Result<(), ApiError> {
        let existing = retrying(&self.policy, || self.namespaces.get_opt(&self.namespace)).await?;
        if existing.is_some() {
            return Ok(());
        }
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(self.namespace.clone()),
                labels: Some([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let params = PostParams::default();
        let created = retrying(&self.policy, || self.namespaces.create(&params, &namespace)).await;
        match created {
            Ok(_) => Ok(()),
            // Someone else created it meanwhile, which is all we wanted.
            Err(error) if error.is_conflict() => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Every inventory in the namespace.
    pub async fn load_all(&self) -> Result<Vec<Inventory>, InventoryError> {
        let params = ListParams::default().labels(INVENTORY_LABEL);
        let list = retrying(&self.policy, || self.api.list(&params)).await?;
        list.items.iter().map(decode).collect()
    }

    /// Writes (creates or replaces) a bundle's inventory.
    pub async fn write(&self, inventory: &Inventory) -> Result<(), InventoryError> {
        let config_map = encode(inventory)?;
        let name = config_map_name(&inventory.bundle);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&config_map);
        retrying(&self.policy, || self.api.patch(&name, &params, &patch)).await?;
        Ok(())
    }

    /// Deletes a bundle's inventory; absent is fine.
    pub async fn delete(&self, bundle: &str) -> Result<(), ApiError> {
        let name = config_map_name(bundle);
        let params = DeleteParams::default();
        match retrying(&self.policy, || self.api.delete(&name, &params)).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Errors reading or writing an inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The API call failed.
    #[error("inventory: {0}")]
    Api(#[from] ApiError),
    /// An inventory ConfigMap does not hold what Flotilla writes there.
    #[error(
        "inventory ConfigMap {name} is damaged ({detail}); delete it only if you know what the \
         bundle owns, since the agent cannot prune without it"
    )]
    Damaged {
        /// ConfigMap name.
        name: String,
        /// What is wrong.
        detail: String,
    },
}

impl InventoryError {
    /// Whether trying again later makes sense.
    pub fn is_transient(&self) -> bool {
        matches!(self, InventoryError::Api(error) if error.is_transient())
    }
}

fn config_map_name(bundle: &str) -> String {
    format!("{NAME_PREFIX}{bundle}")
}

fn encode(inventory: &Inventory) -> Result<ConfigMap, InventoryError> {
    let entries: Vec<&Entry> = inventory.objects.values().collect();
    let objects = serde_json::to_string(&entries).map_err(|e| InventoryError::Damaged {
        name: config_map_name(&inventory.bundle),
        detail: e.to_string(),
    })?;
    let data: BTreeMap<String, String> = [
        ("bundle".to_owned(), inventory.bundle.clone()),
        ("revision".to_owned(), inventory.revision.clone()),
        ("contentHash".to_owned(), inventory.content_hash.clone()),
        ("objects".to_owned(), objects),
    ]
    .into();
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&inventory.bundle)),
            labels: Some(
                [
                    (INVENTORY_LABEL.to_owned(), inventory.bundle.clone()),
                    (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    })
}

fn decode(config_map: &ConfigMap) -> Result<Inventory, InventoryError> {
    let name = config_map.metadata.name.clone().unwrap_or_default();
    let damaged = |detail: String| InventoryError::Damaged {
        name: name.clone(),
        detail,
    };
    let empty = BTreeMap::new();
    let data = config_map.data.as_ref().unwrap_or(&empty);
    let field = |key: &str| data.get(key).cloned().unwrap_or_default();
    let bundle = field("bundle");
    if bundle.is_empty() || config_map_name(&bundle) != name {
        return Err(damaged(format!(
            "its bundle field {bundle:?} does not match its name"
        )));
    }
    let entries: Vec<Entry> =
        serde_json::from_str(&field("objects")).map_err(|e| damaged(format!("objects: {e}")))?;
    Ok(Inventory {
        bundle,
        revision: field("revision"),
        content_hash: field("contentHash"),
        objects: entries.into_iter().map(|e| (e.id.clone(), e)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        let id = ObjectRef {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: Some("web".into()),
            name: "api".into(),
        };
        let entry = Entry {
            id: id.clone(),
            api_version: "apps/v1".into(),
            adopted: true,
        };
        Inventory {
            bundle: "web".into(),
            revision: "r1".into(),
            content_hash: "h1".into(),
            objects: [(id, entry)].into(),
        }
    }

    #[test]
    fn inventories_round_trip_through_their_config_map() {
        let config_map = encode(&inventory()).expect("encodes");
        assert_eq!(
            config_map.metadata.name.as_deref(),
            Some("flotilla-bundle-web")
        );
        let labels = config_map.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(INVENTORY_LABEL).map(String::as_str), Some("web"));
        assert_eq!(decode(&config_map).expect("decodes"), inventory());
    }

    #[test]
    fn a_damaged_inventory_is_an_error_naming_it() {
        let mut config_map = encode(&inventory()).expect("encodes");
        if let Some(data) = config_map.data.as_mut() {
            data.insert("objects".into(), "[{".into());
        }
        let error = decode(&config_map).expect_err("damaged").to_string();
        assert!(error.contains("flotilla-bundle-web"), "{error}");
    }
}
