//! The resource types a virtual cluster serves: the built-in kinds and those CRDs register.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::pointer::At;

/// A built-in kind the simulator knows more about than its name: how to validate it
/// against the k8s-openapi types and which simulated controller drives its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    Namespace,
    Node,
    ConfigMap,
    Secret,
    Service,
    ServiceAccount,
    Pod,
    Event,
    PersistentVolumeClaim,
    PersistentVolume,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    Role,
    RoleBinding,
    ClusterRole,
    ClusterRoleBinding,
    Ingress,
    NetworkPolicy,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    CustomResourceDefinition,
}

/// Which rule an object's name must follow, as the real API server applies per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// RFC 1123 subdomain: most kinds.
    Subdomain,
    /// RFC 1123 label: namespaces.
    Label,
    /// RFC 1035 label: services.
    Dns1035,
    /// Any path segment: RBAC kinds.
    PathSegment,
    /// `<plural>.<group>`: CustomResourceDefinitions.
    CrdName,
}

/// One resource type served by a cluster, version-agnostic (objects are stored once and
/// served in every version, as a CRD with conversion strategy `None` does).
#[derive(Clone, Debug)]
pub(crate) struct ResourceType {
    /// API group; empty for the core group.
    pub(crate) group: String,
    /// Served versions, the preferred (storage) one first.
    pub(crate) versions: Vec<String>,
    /// Kind of the objects.
    pub(crate) kind: String,
    /// Plural resource name, the URL segment.
    pub(crate) plural: String,
    /// Singular resource name.
    pub(crate) singular: String,
    /// Whether objects live in namespaces.
    pub(crate) namespaced: bool,
    /// kubectl short names.
    pub(crate) short_names: Vec<String>,
    /// Categories such as `all`.
    pub(crate) categories: Vec<String>,
    /// Whether `/status` is a subresource (then main-resource writes keep the old status).
    pub(crate) status_subresource: bool,
    /// Whether `/scale` is a subresource.
    pub(crate) scale_subresource: bool,
    /// Whether `metadata.generation` is tracked for spec changes.
    pub(crate) tracks_generation: bool,
    /// The built-in kind, `None` for custom resources.
    pub(crate) builtin: Option<Builtin>,
    /// Name rule for `metadata.name`.
    pub(crate) name_rule: NameRule,
    /// For custom resources: the openAPIV3Schema per served version.
    pub(crate) schemas: Vec<(String, Value)>,
    /// For custom resources: `additionalPrinterColumns` of the storage version.
    pub(crate) printer_columns: Vec<Value>,
}

impl ResourceType {
    /// Store key: `plural` for the core group, `plural.group` otherwise (the CRD naming).
    pub(crate) fn key(&self) -> String {
        type_key(&self.group, &self.plural)
    }

    /// `apiVersion` for a version: `v1` or `apps/v1`.
    pub(crate) fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// `plural` or `plural.group`, as the real API server names a resource in messages.
    pub(crate) fn qualified_resource(&self) -> String {
        self.key()
    }

    /// `Kind` or `Kind.group`, as the real API server names a kind in validation messages.
    pub(crate) fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether a version is served.
    pub(crate) fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// The openAPIV3Schema of a custom resource version, if the CRD gave one.
    pub(crate) fn schema(&self, version: &str) -> Option<&Value> {
        self.schemas
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, s)| s)
    }

    /// Builds the resource type a CustomResourceDefinition declares, or `None` when the
    /// definition lacks what registration needs (validation reports that separately).
    pub(crate) fn from_crd(crd: &Value) -> Option<ResourceType> {
        let spec = crd.get("spec")?;
        let names = spec.get("names")?;
        let group = spec.get("group")?.as_str()?.to_string();
        let kind = names.get("kind")?.as_str()?.to_string();
        let plural = names.get("plural")?.as_str()?.to_string();
        let singular = names
            .get("singular")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase());
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut versions = Vec::new();
        let mut schemas = Vec::new();
        let mut status_subresource = false;
        let mut scale_subresource = false;
        let mut storage = None;
        let mut printer_columns = Vec::new();
        for v in spec.get("versions")?.as_array()? {
            let name = v.get("name")?.as_str()?.to_string();
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if v.get("storage").and_then(Value::as_bool) == Some(true) {
                storage = Some(name.clone());
                printer_columns = v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
            }
            if let Some(sub) = v.get("subresources") {
                status_subresource |= sub.get("status").is_some();
                scale_subresource |= sub.get("scale").is_some();
            }
            if let Some(schema) = v.at("/schema/openAPIV3Schema") {
                schemas.push((name.clone(), schema.clone()));
            }
            versions.push(name);
        }
        // Discovery lists the storage version first, as the preferred one.
        if let Some(storage) = storage
            && let Some(pos) = versions.iter().position(|v| *v == storage)
        {
            let v = versions.remove(pos);
            versions.insert(0, v);
        }
        if versions.is_empty() {
            return None;
        }
        Some(ResourceType {
            group,
            versions,
            kind,
            plural,
            singular,
            namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            status_subresource,
            scale_subresource,
            tracks_generation: true,
            builtin: None,
            name_rule: NameRule::Subdomain,
            schemas,
            printer_columns,
        })
    }

    /// The CRD status the API server reports once names are accepted and the type is served.
    pub(crate) fn crd_status(crd: &Value, rt: &ResourceType, now: &str) -> Value {
        let mut accepted = crd.at("/spec/names").cloned().unwrap_or(json!({}));
        if let Some(names) = accepted.as_object_mut() {
            names
                .entry("singular")
                .or_insert_with(|| json!(rt.singular));
            names
                .entry("listKind")
                .or_insert_with(|| json!(format!("{}List", rt.kind)));
        }
        json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
                 "reason": "NoConflicts", "message": "no conflicts found"},
                {"type": "Established", "status": "True", "lastTransitionTime": now,
                 "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
            ],
            "acceptedNames": accepted,
            "storedVersions": [rt.versions[0]],
        })
    }
}

/// Store key of a resource type: `plural` or `plural.group`.
pub(crate) fn type_key(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

struct BuiltinDef {
    builtin: Builtin,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    all: bool,
    status: bool,
    scale: bool,
    generation: bool,
    name_rule: NameRule,
}

#[rustfmt::skip]
const BUILTINS: &[BuiltinDef] = &[
    def(Builtin::Namespace, "", "v1", "Namespace", "namespaces", false, &["ns"], false, true, false, false, NameRule::Label),
    def(Builtin::Node, "", "v1", "Node", "nodes", false, &["no"], false, true, false, false, NameRule::Subdomain),
    def(Builtin::ConfigMap, "", "v1", "ConfigMap", "configmaps", true, &["cm"], false, false, false, false, NameRule::Subdomain),
    def(Builtin::Secret, "", "v1", "Secret", "secrets", true, &[], false, false, false, false, NameRule::Subdomain),
    def(Builtin::Service, "", "v1", "Service", "services", true, &["svc"], true, true, false, false, NameRule::Dns1035),
    def(Builtin::ServiceAccount, "", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], false, false, false, false, NameRule::Subdomain),
    def(Builtin::Pod, "", "v1", "Pod", "pods", true, &["po"], true, true, false, true, NameRule::Subdomain),
    def(Builtin::Event, "", "v1", "Event", "events", true, &["ev"], false, false, false, false, NameRule::Subdomain),
    def(Builtin::PersistentVolumeClaim, "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"], false, true, false, false, NameRule::Subdomain),
    def(Builtin::PersistentVolume, "", "v1", "PersistentVolume", "persistentvolumes", false, &["pv"], false, true, false, false, NameRule::Subdomain),
    def(Builtin::Deployment, "apps", "v1", "Deployment", "deployments", true, &["deploy"], true, true, true, true, NameRule::Subdomain),
    def(Builtin::StatefulSet, "apps", "v1", "StatefulSet", "statefulsets", true, &["sts"], true, true, true, true, NameRule::Subdomain),
    def(Builtin::DaemonSet, "apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], true, true, false, true, NameRule::Subdomain),
    def(Builtin::ReplicaSet, "apps", "v1", "ReplicaSet", "replicasets", true, &["rs"], true, true, true, true, NameRule::Subdomain),
    def(Builtin::Job, "batch", "v1", "Job", "jobs", true, &[], true, true, false, true, NameRule::Subdomain),
    def(Builtin::CronJob, "batch", "v1", "CronJob", "cronjobs", true, &["cj"], true, true, false, true, NameRule::Subdomain),
    def(Builtin::Role, "rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[], false, false, false, false, NameRule::PathSegment),
    def(Builtin::RoleBinding, "rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, &[], false, false, false, false, NameRule::PathSegment),
    def(Builtin::ClusterRole, "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, &[], false, false, false, false, NameRule::PathSegment),
    def(Builtin::ClusterRoleBinding, "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, &[], false, false, false, false, NameRule::PathSegment),
    def(Builtin::Ingress, "networking.k8s.io", "v1", "Ingress", "ingresses", true, &["ing"], false, true, false, true, NameRule::Subdomain),
    def(Builtin::NetworkPolicy, "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, &["netpol"], false, false, false, true, NameRule::Subdomain),
    def(Builtin::PodDisruptionBudget, "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, &["pdb"], false, true, false, true, NameRule::Subdomain),
    def(Builtin::HorizontalPodAutoscaler, "autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, &["hpa"], true, true, false, true, NameRule::Subdomain),
    def(Builtin::CustomResourceDefinition, "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, &["crd", "crds"], false, true, false, true, NameRule::CrdName),
];

#[allow(clippy::too_many_arguments)]
const fn def(
    builtin: Builtin,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    all: bool,
    status: bool,
    scale: bool,
    generation: bool,
    name_rule: NameRule,
) -> BuiltinDef {
    BuiltinDef {
        builtin,
        group,
        version,
        kind,
        plural,
        namespaced,
        short_names,
        all,
        status,
        scale,
        generation,
        name_rule,
    }
}

/// The built-in resource types every virtual cluster serves, in discovery order.
pub(crate) fn builtins() -> Vec<Arc<ResourceType>> {
    BUILTINS
        .iter()
        .map(|d| {
            Arc::new(ResourceType {
                group: d.group.to_string(),
                versions: vec![d.version.to_string()],
                kind: d.kind.to_string(),
                plural: d.plural.to_string(),
                singular: d.kind.to_lowercase(),
                namespaced: d.namespaced,
                short_names: d.short_names.iter().map(|s| s.to_string()).collect(),
                categories: match d.builtin {
                    _ if d.all => vec!["all".to_string()],
                    Builtin::CustomResourceDefinition => vec!["api-extensions".to_string()],
                    _ => vec![],
                },
                status_subresource: d.status,
                scale_subresource: d.scale,
                tracks_generation: d.generation,
                builtin: Some(d.builtin),
                name_rule: d.name_rule,
                schemas: Vec::new(),
                printer_columns: Vec::new(),
            })
        })
        .collect()
}
