//! The agent's least-privilege RBAC from `deploy/agent`, on a real cluster: applied as
//! rendered, the ServiceAccount's own token (TokenRequest) may do what the agent needs and none
//! of the cluster-wide machinery, an agent running with that token applies an ordinary bundle
//! and reports it Healthy, and a bundle granting itself cluster-admin fails its dry run with
//! the API server's Forbidden message, nothing of it written.
//!
//! Real clusters only: the simulator does not authorize. The manifests' names are fixed
//! (namespace `flotilla-system`, ClusterRole and ClusterRoleBinding `flotilla-agent`); no other
//! test of this binary applies them to a real cluster and applying them again changes nothing,
//! so the test shares the binary's cluster and keeps its bundles and namespaces apart by name.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_agent::Event;
use flotilla_agent::health::Health;
use flotilla_testkit::manifests::{Rendered, kubectl};
use flotilla_testkit::real::{Target, TargetKind};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::support::engine::{
    applied, config_map, deployment, engine_with, get, get_cluster, health_until, quick_config,
    revision, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_s_service_account_applies_workloads_and_cannot_escalate() -> Result<()> {
    flotilla_testkit::real::run(
        TargetKind::Real,
        "the_agent_s_service_account_applies_workloads_and_cannot_escalate",
        Duration::from_millis(200),
        async |target: &Target| body(target).await,
    )
    .await
}

async fn body(target: &Target) -> Result<()> {
    let account = apply_agent_rbac(target)?;
    let client = client_as(target, &account).await?;
    let ns = target.name("rbac");

    // What the agent needs: server-side apply, pruning, its inventories, namespaces, the
    // cluster's identity, watches for drift and health, discovery.
    let agent_ns = account.namespace.as_str();
    let allowed = [
        ("create", "apps", "deployments", Some(ns.as_str()), None),
        ("patch", "", "configmaps", Some(agent_ns), None),
        ("delete", "", "services", Some(ns.as_str()), None),
        ("create", "", "namespaces", None, None),
        ("get", "", "namespaces", None, Some("kube-system")),
        ("watch", "", "pods", None, None),
        ("list", "apps", "replicasets", None, None),
    ];
    for (verb, group, resource, namespace, name) in allowed {
        let attributes = resource_attributes(verb, group, resource, namespace, name);
        ensure!(
            may(&client, resource_review(attributes.clone())).await?,
            "{account} may not {attributes:?}"
        );
    }
    for path in ["/api", "/apis", "/apis/apps/v1", "/version"] {
        ensure!(
            may(&client, path_review(path)).await?,
            "{account} may not get {path}"
        );
    }
    // What only an opt-in component grants.
    let refused = [
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
        ),
        (
            "create",
            "rbac.authorization.k8s.io",
            "roles",
            Some(ns.as_str()),
        ),
        (
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
        (
            "create",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            None,
        ),
    ];
    for (verb, group, resource, namespace) in refused {
        let attributes = resource_attributes(verb, group, resource, namespace, None);
        ensure!(
            !may(&client, resource_review(attributes.clone())).await?,
            "{account} may {attributes:?}"
        );
    }

    let (engine, mut reports) = engine_with(client, quick_config(account.namespace.clone()))?;
    let shop = target.name("shop");
    let namespace =
        |name: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let objects = vec![
        namespace(&ns),
        config_map("settings", "1"),
        deployment("web", 1),
    ];
    engine.apply(revision(&ns, &shop, "r1", objects))?;
    applied(&mut reports, &shop, "r1").await?;
    let healthy = health_until(&mut reports, &shop, |h| h.health == Health::Healthy).await?;
    assert!(healthy.unhealthy.is_empty(), "{healthy:?}");

    let admin = target.client();
    let grabby = target.name("grabby");
    let binding = target.name("agent-is-admin");
    let objects = vec![
        namespace(&grabby),
        config_map("settings", "1"),
        deployment("web", 1),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": account.name,
                          "namespace": account.namespace}]
        }),
    ];
    engine.apply(revision(&grabby, &grabby, "r1", objects))?;
    let (errors, nothing_written) = wait_for(&mut reports, &grabby, |r| match &r.event {
        Event::ApplyFailed {
            errors,
            nothing_written,
            ..
        } => Some((errors.clone(), *nothing_written)),
        _ => None,
    })
    .await?;
    assert!(nothing_written, "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].object,
        format!("rbac.authorization.k8s.io/ClusterRoleBinding {binding}")
    );
    let forbidden = format!(
        "clusterrolebindings.rbac.authorization.k8s.io \"{binding}\" is forbidden: User \
         \"{account}\" cannot patch resource \"clusterrolebindings\" in API group \
         \"rbac.authorization.k8s.io\" at the cluster scope"
    );
    assert!(
        errors[0].message.contains(&forbidden),
        "the API server's Forbidden message: {errors:?}"
    );
    let crbs = "clusterrolebindings";
    let rbac = "rbac.authorization.k8s.io/v1";
    assert!(get_cluster(&admin, rbac, crbs, &binding).await?.is_none());
    assert!(
        get_cluster(&admin, "v1", "namespaces", &grabby)
            .await?
            .is_none()
    );
    assert!(
        get(&admin, "v1", "configmaps", &grabby, "settings")
            .await?
            .is_none()
    );
    engine.shutdown().await;
    Ok(())
}

/// The agent's ServiceAccount, as `deploy/agent` names it.
struct Account {
    namespace: String,
    name: String,
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

/// Applies the Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding of the rendered
/// `deploy/agent` with the cluster's admin credentials (the workload itself is not needed).
fn apply_agent_rbac(target: &Target) -> Result<Account> {
    let rendered = Rendered::render("agent")?;
    let kinds = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ];
    let items: Vec<&Value> = rendered
        .objects
        .iter()
        .filter(|o| kinds.iter().any(|k| o["kind"] == *k))
        .collect();
    ensure!(items.len() == kinds.len(), "deploy/agent renders {items:?}");
    let account = rendered.only("ServiceAccount")?;
    let account = Account {
        namespace: text(account, "/metadata/namespace")?,
        name: text(account, "/metadata/name")?,
    };
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let cache = tempfile::tempdir()?;
    let mut args = admin_args(target, cache.path());
    args.extend(["apply", "--server-side", "-f", "-"].map(String::from));
    kubectl(&as_strs(&args), &serde_json::to_vec(&list)?)
        .context("applying deploy/agent's RBAC")?;
    Ok(account)
}

/// A client authenticated by a token of `account` from the TokenRequest API
/// (`kubectl create token`), through a kubeconfig holding nothing else of the admin's.
async fn client_as(target: &Target, account: &Account) -> Result<kube::Client> {
    let cache = tempfile::tempdir()?;
    let mut args = admin_args(target, cache.path());
    args.extend(
        [
            "create",
            "token",
            &account.name,
            "--namespace",
            &account.namespace,
            "--duration",
            "10m",
        ]
        .map(String::from),
    );
    let token = kubectl(&as_strs(&args), b"")?.trim().to_owned();
    let mut args = admin_args(target, cache.path());
    args.extend(["config", "view", "--raw", "--minify", "-o", "json"].map(String::from));
    let mut kubeconfig: Value = serde_json::from_str(&kubectl(&as_strs(&args), b"")?)?;
    let users = kubeconfig["users"]
        .as_array_mut()
        .context("a kubeconfig has users")?;
    ensure!(users.len() == 1, "the minified kubeconfig has one user");
    users[0]["user"] = json!({"token": token});
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn admin_args(target: &Target, cache: &std::path::Path) -> Vec<String> {
    vec![
        "--kubeconfig".into(),
        target.kubeconfig().to_string_lossy().into_owned(),
        "--context".into(),
        target.context().into(),
        "--cache-dir".into(),
        cache.to_string_lossy().into_owned(),
    ]
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn text(object: &Value, pointer: &str) -> Result<String> {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{pointer} of {object}"))
}

fn resource_attributes(
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> ResourceAttributes {
    ResourceAttributes {
        verb: Some(verb.into()),
        group: Some(group.into()),
        resource: Some(resource.into()),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        ..Default::default()
    }
}

fn resource_review(attributes: ResourceAttributes) -> SelfSubjectAccessReview {
    SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(attributes),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn path_review(path: &str) -> SelfSubjectAccessReview {
    SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.into()),
                verb: Some("get".into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Whether the client's own identity may do what `review` asks (SelfSubjectAccessReview).
async fn may(client: &kube::Client, review: SelfSubjectAccessReview) -> Result<bool> {
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
