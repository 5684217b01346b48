//! kube-rs against the simulator: discovery (aggregated and legacy), dynamic objects
//! with server-side apply, list and delete, metadata-only requests, and the runtime
//! watcher including its recovery from 410 Gone.

use crate::support::harness as support;

use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::discovery::{Discovery, Scope};
use kube::runtime::watcher;
use serde_json::json;
use support::{client, start};

type Events =
    futures::stream::BoxStream<'static, Result<watcher::Event<DynamicObject>, watcher::Error>>;

async fn next(stream: &mut Events) -> Result<watcher::Event<DynamicObject>, watcher::Error> {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("watcher ended"),
        Err(_) => panic!("no watcher event within 10 s"),
    }
}

fn configmaps(c: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    Api::namespaced_with(c.clone(), "default", &ar)
}

async fn apply_cm(api: &Api<DynamicObject>, name: &str, value: &str) -> DynamicObject {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "t"}}, "data": {"k": value}});
    match api
        .patch(name, &PatchParams::apply("test"), &Patch::Apply(&obj))
        .await
    {
        Ok(o) => o,
        Err(e) => panic!("apply {name}: {e}"),
    }
}

#[tokio::test]
async fn kube_discovery_aggregated_and_legacy_find_builtins_and_crds() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let crds: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    if let Err(e) = crds
        .patch(
            "gadgets.example.com",
            &PatchParams::apply("test"),
            &Patch::Apply(&crd),
        )
        .await
    {
        panic!("creating CRD: {e}");
    }

    let aggregated = match Discovery::new(c.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(e) => panic!("aggregated discovery: {e}"),
    };
    let legacy = match Discovery::new(c.clone()).run().await {
        Ok(d) => d,
        Err(e) => panic!("legacy discovery: {e}"),
    };
    for d in [&aggregated, &legacy] {
        let (ar, caps) = d
            .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .unwrap_or_else(|| panic!("Deployment not discovered"));
        assert_eq!(ar.plural, "deployments");
        assert_eq!(caps.scope, Scope::Namespaced);
        assert!(
            caps.subresources
                .iter()
                .any(|(s, _)| s.plural == "status" || s.plural == "deployments/status")
        );
        let (ar, caps) = d
            .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Gadget"))
            .unwrap_or_else(|| panic!("CRD type not discovered"));
        assert_eq!(ar.plural, "gadgets");
        assert_eq!(caps.scope, Scope::Cluster);
        assert!(d.has_group("rbac.authorization.k8s.io"));
        let (ns, _) = d
            .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
            .unwrap_or_else(|| panic!("Namespace not discovered"));
        assert_eq!(ns.plural, "namespaces");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_dynamic_apply_list_delete() {
    let sim = start(2).await;
    let c = client(&sim, "sim-0");
    let api = configmaps(&c);
    let created = apply_cm(&api, "one", "1").await;
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.data["data"]["k"], "1");
    apply_cm(&api, "two", "2").await;
    let again = apply_cm(&api, "one", "1").await;
    assert_eq!(
        again.metadata.resource_version, created.metadata.resource_version,
        "a no-op apply changed the object"
    );

    let list = match api.list(&ListParams::default().labels("app=t")).await {
        Ok(l) => l,
        Err(e) => panic!("list: {e}"),
    };
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["one", "two"]);

    // Paging with limit/continue.
    let page = match api.list(&ListParams::default().limit(1)).await {
        Ok(l) => l,
        Err(e) => panic!("list page: {e}"),
    };
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.clone().unwrap_or_default();
    assert!(!token.is_empty());
    let rest = match api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
    {
        Ok(l) => l,
        Err(e) => panic!("list continue: {e}"),
    };
    assert_eq!(rest.items[0].metadata.name.as_deref(), Some("two"));

    // Metadata-only list and get, as kube-rs asks for them.
    let metas = match api.list_metadata(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => panic!("list_metadata: {e}"),
    };
    assert_eq!(metas.items.len(), 2);
    assert!(metas.items.iter().all(|m| m.metadata.uid.is_some()));
    let meta = match api.get_metadata("one").await {
        Ok(m) => m,
        Err(e) => panic!("get_metadata: {e}"),
    };
    assert_eq!(
        meta.metadata
            .labels
            .unwrap_or_default()
            .get("app")
            .map(String::as_str),
        Some("t")
    );

    match api.delete("one", &DeleteParams::default()).await {
        Ok(either) => assert!(
            either.is_right(),
            "an object without finalizers is gone at once"
        ),
        Err(e) => panic!("delete: {e}"),
    }
    let err = api
        .get("one")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("configmaps \"one\" not found"), "{err}");

    // Clusters are independent.
    let other = configmaps(&client(&sim, "sim-1"));
    let empty = match other.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => panic!("list other cluster: {e}"),
    };
    assert!(empty.items.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_watcher_sees_changes_and_recovers_after_410() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let api = configmaps(&c);
    apply_cm(&api, "before", "0").await;
    let mut stream: Events = watcher(api.clone(), watcher::Config::default()).boxed();

    let name = |o: &DynamicObject| o.metadata.name.clone().unwrap_or_default();

    // Initial list.
    let mut seen_initial = Vec::new();
    loop {
        match next(&mut stream).await {
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitApply(o)) => seen_initial.push(name(&o)),
            Ok(watcher::Event::InitDone) => break,
            other => panic!("unexpected during init: {other:?}"),
        }
    }
    assert_eq!(seen_initial, vec!["before"]);

    apply_cm(&api, "live", "1").await;
    match next(&mut stream).await {
        Ok(watcher::Event::Apply(o)) => assert_eq!(
            (name(&o), o.data["data"]["k"].clone()),
            ("live".to_string(), json!("1"))
        ),
        other => panic!("expected Apply(live): {other:?}"),
    }
    apply_cm(&api, "live", "2").await;
    match next(&mut stream).await {
        Ok(watcher::Event::Apply(o)) => assert_eq!(o.data["data"]["k"], "2"),
        other => panic!("expected Apply(live v2): {other:?}"),
    }
    if let Err(e) = api.delete("live", &DeleteParams::default()).await {
        panic!("delete: {e}");
    }
    match next(&mut stream).await {
        Ok(watcher::Event::Delete(o)) => assert_eq!(name(&o), "live"),
        other => panic!("expected Delete(live): {other:?}"),
    }

    // Compaction ends the watch with 410 Gone; the watcher lists again and goes on.
    assert!(sim.compact("sim-0"));
    match next(&mut stream).await {
        Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
        other => panic!("expected a 410 watch error: {other:?}"),
    }
    let mut relisted = Vec::new();
    loop {
        match next(&mut stream).await {
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitApply(o)) => relisted.push(name(&o)),
            Ok(watcher::Event::InitDone) => break,
            other => panic!("unexpected during re-list: {other:?}"),
        }
    }
    assert_eq!(relisted, vec!["before"]);
    apply_cm(&api, "after", "3").await;
    match next(&mut stream).await {
        Ok(watcher::Event::Apply(o)) => assert_eq!(name(&o), "after"),
        other => panic!("expected Apply(after): {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_streaming_list_watcher_gets_initial_events_end_bookmark() {
    let sim = start(1).await;
    let c = client(&sim, "sim-0");
    let api = configmaps(&c);
    apply_cm(&api, "a", "0").await;
    apply_cm(&api, "b", "0").await;
    let mut stream = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        let ev = match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(ev)) => ev,
            other => panic!("streaming list stalled: {other:?}"),
        };
        match ev {
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitApply(o)) => initial.push(o.metadata.name.unwrap_or_default()),
            Ok(watcher::Event::InitDone) => break,
            other => panic!("unexpected: {other:?}"),
        }
    }
    initial.sort();
    assert_eq!(initial, vec!["a", "b"]);
    apply_cm(&api, "c", "1").await;
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(watcher::Event::Apply(o)))) => assert_eq!(o.metadata.name.as_deref(), Some("c")),
        other => panic!("expected Apply(c): {other:?}"),
    }
    sim.shutdown().await;
}
