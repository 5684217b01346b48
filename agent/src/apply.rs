//! Applying one revision as a unit.
//!
//! 1. Resolve every kind (reading discovery again if one is unknown) and plan the revision.
//! 2. Claim its objects; an object owned by another bundle fails the revision.
//! 3. Dry-run every object that can be checked now. Any failure: nothing is written.
//! 4. If custom resources need a CRD of this revision, or objects a namespace that does not
//!    exist yet: apply the CRDs and Namespaces, wait for the CRDs to be established, and
//!    dry-run those objects. Any failure: only CRDs and Namespaces were written. An API
//!    server may answer 404 for a custom resource for a moment after its CRD is established
//!    (on a control plane of several API servers, the one answering may not serve the type
//!    yet): objects of kinds this revision's CRDs define are tried again on 404 until the
//!    establish timeout, counted from applying the CRDs, has passed; then the 404 is final.
//! 5. Record the union of old and new objects in the inventory, so a crash from here on leaks
//!    nothing; then apply tier by tier, in parallel within a tier.
//! 6. Only when every object applied: prune what left the bundle, and record the new
//!    inventory. A failure before this point never prunes anything.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::bundle::BundleRevision;
use crate::catalog::{Catalog, Kind};
use crate::cluster::{Cluster, ObjectFailure};
use crate::inventory::{Entry, Inventory, InventoryError, InventoryStore};
use crate::object::{FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ObjectRef, Tier};
use crate::owners::Owners;
use crate::plan::{Plan, PlannedObject, by_tier, kinds_named, plan};
use crate::prune::{PruneOutcome, prune};
use crate::report::ObjectMessage;
use crate::retry::ApiError;

/// What applying needs from the engine.
pub struct ApplyContext<'a> {
    /// API calls on objects.
    pub cluster: &'a Cluster,
    /// Discovery cache.
    pub catalog: &'a Catalog,
    /// Inventory storage.
    pub inventories: &'a InventoryStore,
    /// Ownership across bundles.
    pub owners: &'a Owners,
    /// Objects applied or deleted at a time.
    pub concurrency: usize,
    /// How long to wait for CRDs to be established.
    pub establish_timeout: Duration,
}

/// A revision applied completely.
#[derive(Debug)]
pub struct Applied {
    /// The plan that was applied.
    pub plan: Plan,
    /// The API server's answer for each object: the live object right after applying.
    pub answers: HashMap<ObjectRef, Value>,
    /// What pruning did.
    pub pruned: PruneOutcome,
}

/// A revision that was not applied.
#[derive(Debug)]
pub struct Failed {
    /// Each failing object with the API server's message, or bundle-wide errors.
    pub errors: Vec<ObjectMessage>,
    /// Nothing at all was written to the cluster.
    pub nothing_written: bool,
    /// Every error may pass by itself: trying again later makes sense.
    pub transient: bool,
}

impl Failed {
    fn permanent(errors: Vec<ObjectMessage>, nothing_written: bool) -> Failed {
        Failed {
            errors,
            nothing_written,
            transient: false,
        }
    }

    fn from_api(error: &ApiError, context: &str, nothing_written: bool) -> Failed {
        Failed {
            errors: vec![ObjectMessage::bundle(format!("{context}: {error}"))],
            nothing_written,
            transient: error.is_transient(),
        }
    }

    fn from_inventory(error: &InventoryError, nothing_written: bool) -> Failed {
        Failed {
            errors: vec![ObjectMessage::bundle(error.to_string())],
            nothing_written,
            transient: error.is_transient(),
        }
    }

    fn from_objects(failures: Vec<ObjectFailure>, nothing_written: bool) -> Failed {
        let transient = failures.iter().all(|(_, e)| e.is_transient());
        Failed {
            errors: failures
                .iter()
                .map(|(id, error)| ObjectMessage::new(id, error.to_string()))
                .collect(),
            nothing_written,
            transient,
        }
    }
}

/// Applies `revision`, updating `inventory` (the bundle's, as recorded in the cluster) as it
/// goes.
pub async fn apply_revision(
    cx: &ApplyContext<'_>,
    revision: &BundleRevision,
    inventory: &mut Inventory,
) -> Result<Applied, Failed> {
    let plan = resolve_and_plan(cx, revision).await?;
    let ids: Vec<ObjectRef> = plan.objects.iter().map(|o| o.id.clone()).collect();
    if let Err(taken) = cx.owners.claim(&revision.name, ids.iter()) {
        let errors = taken
            .iter()
            .map(|(id, owner)| {
                ObjectMessage::new(
                    id,
                    format!(
                        "already belongs to bundle {owner}; an object may belong to one bundle only"
                    ),
                )
            })
            .collect();
        return Err(Failed::permanent(errors, true));
    }
    let result = apply_planned(cx, revision, plan, inventory).await;
    // Claims on objects that were never recorded are dropped, so another bundle may take them.
    let unrecorded = ids.iter().filter(|id| !inventory.objects.contains_key(*id));
    cx.owners.release(&revision.name, unrecorded);
    result
}

async fn resolve_and_plan(
    cx: &ApplyContext<'_>,
    revision: &BundleRevision,
) -> Result<Plan, Failed> {
    let unknown = kinds_named(revision)
        .iter()
        .any(|(api_version, kind)| cx.catalog.lookup(api_version, kind).is_none());
    if unknown || cx.catalog.is_empty() {
        cx.catalog
            .refresh()
            .await
            .map_err(|e| Failed::from_api(&e, "reading the cluster's API catalog", true))?;
    }
    plan(revision, |api_version, kind| {
        cx.catalog.lookup(api_version, kind)
    })
    .map_err(|errors| Failed::permanent(errors, true))
}

async fn apply_planned(
    cx: &ApplyContext<'_>,
    revision: &BundleRevision,
    plan: Plan,
    inventory: &mut Inventory,
) -> Result<Applied, Failed> {
    let missing = missing_namespaces(cx, revision, &plan).await?;
    let (now, later): (Vec<&PlannedObject>, Vec<&PlannedObject>) =
        plan.objects.iter().partition(|o| {
            !o.awaits_crd
                && !o
                    .id
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| missing.contains(ns))
        });

    let (checked, failures) = cx.cluster.apply(&now, true).await;
    if !failures.is_empty() {
        return Err(Failed::from_objects(failures, true));
    }
    let mut adopted = adopted_objects(&checked, inventory);
    let mut applied: HashMap<ObjectRef, Value> = HashMap::new();
    // Until when a 404 for a kind this revision's CRDs define may mean "not served yet".
    let mut served_by = None;

    if !later.is_empty() {
        record(cx, revision, inventory, &plan, &adopted, true).await?;
        let foundation: Vec<&PlannedObject> = plan
            .objects
            .iter()
            .filter(|o| matches!(o.tier, Tier::Crds | Tier::Namespaces))
            .collect();
        served_by = Some(Instant::now() + cx.establish_timeout);
        applied.extend(apply_tiers(cx, &foundation, None).await?);
        create_default_namespace(cx, revision, &plan, &missing).await?;
        let crds: Vec<&PlannedObject> = plan.tier(Tier::Crds).collect();
        if !crds.is_empty() {
            cx.cluster
                .wait_established(&crds, cx.establish_timeout)
                .await
                .map_err(|f| Failed::from_objects(f, false))?;
            cx.catalog
                .refresh()
                .await
                .map_err(|e| Failed::from_api(&e, "reading the cluster's API catalog", false))?;
        }
        let (checked, failures) = apply_served(cx, &later, true, served_by).await;
        if !failures.is_empty() {
            return Err(Failed::from_objects(failures, false));
        }
        adopted.extend(adopted_objects(&checked, inventory));
    }

    record(cx, revision, inventory, &plan, &adopted, applied.is_empty()).await?;
    let rest: Vec<&PlannedObject> = plan
        .objects
        .iter()
        .filter(|o| !applied.contains_key(&o.id))
        .collect();
    applied.extend(apply_tiers(cx, &rest, served_by).await?);

    let leaving: Vec<Entry> = inventory
        .objects
        .values()
        .filter(|e| plan.get(&e.id).is_none())
        .cloned()
        .collect();
    let pruned = prune(
        cx.cluster,
        cx.catalog,
        &revision.name,
        leaving,
        cx.concurrency,
    )
    .await;
    for id in pruned
        .deleted
        .iter()
        .chain(pruned.kept.iter().map(|(id, _)| id))
    {
        inventory.objects.remove(id);
    }
    inventory.revision.clone_from(&revision.revision);
    inventory.content_hash.clone_from(&revision.content_hash);
    cx.inventories
        .write(inventory)
        .await
        .map_err(|e| Failed::from_inventory(&e, false))?;
    cx.owners.set(&revision.name, inventory.objects.keys());
    Ok(Applied {
        plan,
        answers: applied,
        pruned,
    })
}

/// Adds every planned object to the inventory and writes it if that changed it, before the
/// objects are applied.
async fn record(
    cx: &ApplyContext<'_>,
    revision: &BundleRevision,
    inventory: &mut Inventory,
    plan: &Plan,
    adopted: &BTreeSet<ObjectRef>,
    nothing_written: bool,
) -> Result<(), Failed> {
    let before = inventory.clone();
    inventory.bundle.clone_from(&revision.name);
    for object in &plan.objects {
        let previous_adopted = inventory.objects.get(&object.id).is_some_and(|e| e.adopted);
        let entry = Entry {
            id: object.id.clone(),
            api_version: object.api_version().to_owned(),
            adopted: previous_adopted || adopted.contains(&object.id),
        };
        inventory.objects.insert(object.id.clone(), entry);
    }
    if *inventory != before {
        cx.inventories
            .write(inventory)
            .await
            .map_err(|e| Failed::from_inventory(&e, nothing_written))?;
    }
    Ok(())
}

/// Applies objects tier by tier, stopping at the first tier with a failure.
async fn apply_tiers(
    cx: &ApplyContext<'_>,
    objects: &[&PlannedObject],
    served_by: Option<Instant>,
) -> Result<HashMap<ObjectRef, Value>, Failed> {
    let mut answers = HashMap::new();
    for (_, tier) in by_tier(objects.iter().copied()) {
        let (applied, failures) = apply_served(cx, &tier, false, served_by).await;
        answers.extend(applied);
        if !failures.is_empty() {
            return Err(Failed::from_objects(failures, false));
        }
    }
    Ok(answers)
}

/// How often objects whose kind is not served yet are tried again.
const SERVED_POLL: Duration = Duration::from_millis(250);

/// Applies (or dry-runs) `objects`. While every failure is a 404 for an object whose kind a
/// CRD of this revision defines, and `served_by` has not passed, those objects are tried
/// again: the API server has not served their kind yet. Any other failure is answered at once.
async fn apply_served(
    cx: &ApplyContext<'_>,
    objects: &[&PlannedObject],
    dry_run: bool,
    served_by: Option<Instant>,
) -> (Vec<(ObjectRef, Value)>, Vec<ObjectFailure>) {
    let mut answers = Vec::new();
    let mut pending: Vec<&PlannedObject> = objects.to_vec();
    loop {
        let (done, failures) = cx.cluster.apply(&pending, dry_run).await;
        answers.extend(done);
        let not_served_yet = |(id, error): &ObjectFailure| {
            error.is_not_found() && pending.iter().any(|o| o.id == *id && o.awaits_crd)
        };
        let may_wait = served_by.is_some_and(|deadline| Instant::now() + SERVED_POLL < deadline);
        if failures.is_empty() || !may_wait || !failures.iter().all(not_served_yet) {
            return (answers, failures);
        }
        tracing::debug!(
            objects = failures.len(),
            "the API server does not serve these custom resources yet; trying again"
        );
        pending.retain(|o| failures.iter().any(|(id, _)| *id == o.id));
        tokio::time::sleep(SERVED_POLL).await;
    }
}

/// Objects that existed before this bundle first applied them, so someone else created them:
/// the inventory does not list them (it lists every object before the bundle writes it), yet
/// the dry-run answer shows an existing object (a resource version, or fields another manager
/// set).
fn adopted_objects(answers: &[(ObjectRef, Value)], inventory: &Inventory) -> BTreeSet<ObjectRef> {
    answers
        .iter()
        .filter(|(id, _)| !inventory.objects.contains_key(id))
        .filter(|(_, answer)| existed(answer))
        .map(|(id, _)| id.clone())
        .collect()
}

fn existed(answer: &Value) -> bool {
    let versioned = answer
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty());
    let managed_by_others = answer
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|fields| {
            fields
                .iter()
                .any(|f| f.get("manager").and_then(Value::as_str) != Some(FIELD_MANAGER))
        });
    versioned || managed_by_others
}

/// Namespaces the plan's objects live in that do not exist yet. Each must be created by the
/// revision itself or be its default namespace; any other is an error.
async fn missing_namespaces(
    cx: &ApplyContext<'_>,
    revision: &BundleRevision,
    plan: &Plan,
) -> Result<BTreeSet<String>, Failed> {
    let used: BTreeSet<&String> = plan
        .objects
        .iter()
        .filter_map(|o| o.id.namespace.as_ref())
        .collect();
    if used.is_empty() {
        return Ok(BTreeSet::new());
    }
    let kind = namespace_kind(cx.catalog)?;
    let mut missing = BTreeSet::new();
    let mut errors = Vec::new();
    for namespace in used {
        let id = ObjectRef {
            group: String::new(),
            kind: "Namespace".into(),
            namespace: None,
            name: namespace.clone(),
        };
        let exists =
            cx.cluster.get(&kind, &id).await.map_err(|e| {
                Failed::from_api(&e, &format!("reading namespace {namespace}"), true)
            })?;
        if exists.is_some() {
            continue;
        }
        if plan.get(&id).is_none() && *namespace != revision.namespace {
            let users: Vec<String> = plan
                .objects
                .iter()
                .filter(|o| o.id.namespace.as_ref() == Some(namespace))
                .map(|o| o.id.to_string())
                .collect();
            errors.push(ObjectMessage::bundle(format!(
                "namespace {namespace} does not exist and the bundle does not define it \
                 (used by {}); add a Namespace object to the bundle",
                users.join(", ")
            )));
        }
        missing.insert(namespace.clone());
    }
    if !errors.is_empty() {
        return Err(Failed::permanent(errors, true));
    }
    Ok(missing)
}

/// Creates the revision's default namespace when objects need it and neither the cluster nor
/// the bundle has it. It is not owned by the bundle, so it is never pruned: it may hold
/// objects of other bundles or people.
async fn create_default_namespace(
    cx: &ApplyContext<'_>,
    revision: &BundleRevision,
    plan: &Plan,
    missing: &BTreeSet<String>,
) -> Result<(), Failed> {
    let id = ObjectRef {
        group: String::new(),
        kind: "Namespace".into(),
        namespace: None,
        name: revision.namespace.clone(),
    };
    if !missing.contains(&revision.namespace) || plan.get(&id).is_some() {
        return Ok(());
    }
    let kind = namespace_kind(cx.catalog)?;
    let namespace = PlannedObject {
        body: serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": revision.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            },
        }),
        tier: Tier::Namespaces,
        id,
        kind,
        awaits_crd: false,
    };
    cx.cluster
        .apply_one(&namespace, false)
        .await
        .map(drop)
        .map_err(|e| {
            Failed::from_api(
                &e,
                &format!("creating namespace {}", revision.namespace),
                false,
            )
        })
}

fn namespace_kind(catalog: &Catalog) -> Result<Kind, Failed> {
    catalog.lookup("v1", "Namespace").ok_or_else(|| {
        Failed::permanent(
            vec![ObjectMessage::bundle(
                "the cluster does not serve v1 Namespaces",
            )],
            true,
        )
    })
}
