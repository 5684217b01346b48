//! Identity of Kubernetes objects and the order the agent applies them in.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use flotilla_core::render::{
    BUNDLE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PRUNE_ANNOTATION,
};
/// Field manager name used for every server-side apply.
pub const FIELD_MANAGER: &str = "flotilla";

/// The identity of one object: group, kind, namespace and name.
///
/// The version is not part of the identity: `apps/v1` and `apps/v1beta2` Deployments with the
/// same name are the same object to the API server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// API group, empty for the core group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace, `None` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// Whether this object is a CustomResourceDefinition.
    pub fn is_crd(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.kind == "CustomResourceDefinition"
    }

    /// Whether this object is a Namespace.
    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.kind == "Namespace"
    }
}

impl fmt::Display for ObjectRef {
    /// Formats as `apps/Deployment web/api`, `ConfigMap web/settings` or `Namespace web`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.group.is_empty() {
            write!(f, "{}/", self.group)?;
        }
        write!(f, "{} ", self.kind)?;
        if let Some(namespace) = &self.namespace {
            write!(f, "{namespace}/")?;
        }
        f.write_str(&self.name)
    }
}

/// Apply tiers, in the order objects are applied. Pruning walks them backwards, except that
/// namespaces go last so that nothing is deleted from under a namespace still being emptied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    /// CustomResourceDefinitions, which must be Established before their resources exist.
    Crds,
    /// Namespaces, which must exist before anything is created in them.
    Namespaces,
    /// Other cluster-scoped objects: ClusterRoles, StorageClasses, webhooks, ...
    ClusterScoped,
    /// Identity and configuration that workloads read at start-up.
    Config,
    /// Workloads: Deployments, StatefulSets, DaemonSets, Jobs, Pods, ...
    Workloads,
    /// Everything else: Services, Ingresses, custom resources, ...
    Rest,
}

impl Tier {
    /// All tiers in apply order.
    pub const APPLY_ORDER: [Tier; 6] = [
        Tier::Crds,
        Tier::Namespaces,
        Tier::ClusterScoped,
        Tier::Config,
        Tier::Workloads,
        Tier::Rest,
    ];

    /// All tiers in prune order: the reverse of apply order, with namespaces last.
    pub const PRUNE_ORDER: [Tier; 6] = [
        Tier::Rest,
        Tier::Workloads,
        Tier::Config,
        Tier::ClusterScoped,
        Tier::Crds,
        Tier::Namespaces,
    ];

    /// The tier of an object, from its identity and whether its kind is namespaced.
    pub fn of(object: &ObjectRef, namespaced: bool) -> Tier {
        if object.is_crd() {
            return Tier::Crds;
        }
        if object.is_namespace() {
            return Tier::Namespaces;
        }
        if !namespaced {
            return Tier::ClusterScoped;
        }
        match (object.group.as_str(), object.kind.as_str()) {
            ("", "ServiceAccount" | "ConfigMap" | "Secret" | "LimitRange" | "ResourceQuota")
            | ("rbac.authorization.k8s.io", "Role" | "RoleBinding") => Tier::Config,
            ("", "PersistentVolumeClaim" | "Pod" | "ReplicationController")
            | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
            | ("batch", "Job" | "CronJob") => Tier::Workloads,
            _ => Tier::Rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(group: &str, kind: &str, namespace: Option<&str>) -> ObjectRef {
        ObjectRef {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.map(Into::into),
            name: "x".into(),
        }
    }

    #[test]
    fn display_names_group_kind_namespace_and_name() {
        assert_eq!(
            object("apps", "Deployment", Some("web")).to_string(),
            "apps/Deployment web/x"
        );
        assert_eq!(object("", "Namespace", None).to_string(), "Namespace x");
    }

    #[test]
    fn tiers_follow_dependency_order() {
        let crd = object("apiextensions.k8s.io", "CustomResourceDefinition", None);
        assert_eq!(Tier::of(&crd, false), Tier::Crds);
        assert_eq!(
            Tier::of(&object("", "Namespace", None), false),
            Tier::Namespaces
        );
        let role = object("rbac.authorization.k8s.io", "ClusterRole", None);
        assert_eq!(Tier::of(&role, false), Tier::ClusterScoped);
        let binding = object("rbac.authorization.k8s.io", "RoleBinding", Some("a"));
        assert_eq!(Tier::of(&binding, true), Tier::Config);
        assert_eq!(
            Tier::of(&object("", "Secret", Some("a")), true),
            Tier::Config
        );
        let deploy = object("apps", "Deployment", Some("a"));
        assert_eq!(Tier::of(&deploy, true), Tier::Workloads);
        assert_eq!(
            Tier::of(&object("", "Service", Some("a")), true),
            Tier::Rest
        );
        assert_eq!(
            Tier::of(&object("example.com", "Widget", Some("a")), true),
            Tier::Rest
        );
    }

    #[test]
    fn prune_order_puts_namespaces_last() {
        assert_eq!(Tier::PRUNE_ORDER.last(), Some(&Tier::Namespaces));
        assert_eq!(Tier::PRUNE_ORDER.first(), Some(&Tier::Rest));
    }
}
