//! Health of Services, Ingresses, volumes and autoscalers as the agent reports it, on the
//! simulator and on a real cluster, where the API server allocates addresses, the real
//! PersistentVolume controller binds claims and the real HPA controller runs without a metrics
//! server. A real cluster here has no cloud provider, ingress controller or volume provisioner:
//! objects waiting for one say so and stay Progressing (the simulator is made to behave the same
//! with its fail annotation); see k8s/README.md.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_agent::health::{BundleHealth, Health};
use flotilla_testkit::on_sim_and_real;
use flotilla_testkit::real::Target;
use serde_json::{Value, json};

use crate::support::engine::{applied, deployment, engine, get, health_until, revision};

on_sim_and_real!(Duration::from_millis(200);
    a_cluster_ip_service_is_healthy_while_a_load_balancer_and_an_ingress_wait_for_an_address,
    a_claim_bound_to_a_matching_volume_is_healthy_and_an_unmatched_one_waits,
    autoscalers_that_cannot_read_metrics_are_degraded_and_one_scaled_to_zero_is_suspended,
    two_autoscalers_on_one_workload_are_degraded,
);

async fn a_cluster_ip_service_is_healthy_while_a_load_balancer_and_an_ingress_wait_for_an_address(
    target: &Target,
) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let mut lb = service("lb", "LoadBalancer");
    lb["metadata"]["annotations"] = json!({(flotilla_sim::FAIL_ANNOTATION): "true"});
    let objects = vec![
        deployment("web", 1),
        service("web", "ClusterIP"),
        lb,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "annotations": {(flotilla_sim::FAIL_ANNOTATION): "true"}},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]
            }
        }),
    ];
    engine.apply(revision(&ns, "front", "r1", objects))?;
    applied(&mut reports, "front", "r1").await?;
    let waiting = health_until(&mut reports, "front", |h| {
        h.unhealthy.len() == 2
            && h.unhealthy.iter().all(|(id, o)| {
                matches!(id.kind.as_str(), "Service" | "Ingress") && o.health == Health::Progressing
            })
    })
    .await?;
    assert_eq!(waiting.health, Health::Progressing, "{waiting:?}");
    assert_eq!(
        verdicts(&waiting),
        [
            (
                "Service lb".to_string(),
                Health::Progressing,
                "waiting for a load balancer controller to publish an address".to_string()
            ),
            (
                "Ingress web".to_string(),
                Health::Progressing,
                "waiting for the controller of ingress class \"nginx\" to publish an address"
                    .to_string()
            ),
        ]
    );

    let client = target.client();
    let web = get(&client, "v1", "services", &ns, "web")
        .await?
        .context("service web was not written")?;
    let ip: Ipv4Addr = web["spec"]["clusterIP"]
        .as_str()
        .context("the API server allocates a cluster IP")?
        .parse()?;
    assert_eq!(
        ip.octets()[..2],
        [10, 96],
        "in the Service range 10.96.0.0/16"
    );
    let lb = get(&client, "v1", "services", &ns, "lb")
        .await?
        .context("service lb was not written")?;
    assert_eq!(lb["status"]["loadBalancer"], json!({}), "{lb}");
    engine.shutdown().await;
    Ok(())
}

/// A real cluster binds a claim to a static volume of its storage class (the PV controller of
/// kube-controller-manager); nothing provisions volumes, so a claim no volume matches stays
/// Pending. The storage class is this test's own, so no other claim takes its volume.
async fn a_claim_bound_to_a_matching_volume_is_healthy_and_an_unmatched_one_waits(
    target: &Target,
) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let class = target.name("manual");
    let volume = target.name("pv");
    let mut unbound = claim("unbound", &class, "5Gi");
    unbound["metadata"]["annotations"] = json!({(flotilla_sim::FAIL_ANNOTATION): "true"});
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": class, "hostPath": {"path": format!("/data/{volume}")}
        }
    });
    // The volume before its claim, as storage is provided before it is claimed: the PV
    // controller matches a new claim against the volumes it has seen, and looks again for one
    // it missed only at its next resync, 15 s later.
    engine.apply(revision(&ns, "storage", "r1", vec![pv.clone()]))?;
    applied(&mut reports, "storage", "r1").await?;
    let objects = vec![pv, claim("data", &class, "1Gi"), unbound];
    engine.apply(revision(&ns, "storage", "r2", objects))?;
    applied(&mut reports, "storage", "r2").await?;
    let waiting = health_until(&mut reports, "storage", |h| {
        h.unhealthy.len() == 1
            && h.unhealthy[0].0.name == "unbound"
            && h.unhealthy[0].1.health == Health::Progressing
    })
    .await?;
    assert_eq!(
        verdicts(&waiting),
        [(
            "PersistentVolumeClaim unbound".to_string(),
            Health::Progressing,
            format!(
                "waiting for a volume of storage class {class:?} to bind the claim (a matching \
                 one, or one its provisioner makes)"
            )
        )]
    );
    let data = get(
        &target.client(),
        "v1",
        "persistentvolumeclaims",
        &ns,
        "data",
    )
    .await?
    .context("claim data was not written")?;
    assert_eq!(data["status"]["phase"], "Bound", "{data}");
    engine.shutdown().await;
    Ok(())
}

/// Without a metrics server (real) or with its metrics made to fail (simulator), the HPA
/// controller cannot compute a replica count: `ScalingActive=False`, with the reason of the
/// metric's source, after `AbleToScale=True`. A target scaled to zero switches it off.
async fn autoscalers_that_cannot_read_metrics_are_degraded_and_one_scaled_to_zero_is_suspended(
    target: &Target,
) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let cpu = json!([{"type": "Resource", "resource": {"name": "cpu",
                      "target": {"type": "Utilization", "averageUtilization": 50}}}]);
    let queue = json!([{"type": "External", "external": {"metric": {"name": "queue_depth"},
                        "target": {"type": "AverageValue", "averageValue": "10"}}}]);
    let objects = vec![
        deployment("web", 1),
        deployment("worker", 1),
        deployment("idle", 0),
        autoscaler("web", cpu.clone(), true),
        autoscaler("worker", queue, true),
        autoscaler("idle", cpu, false),
    ];
    engine.apply(revision(&ns, "scaling", "r1", objects))?;
    applied(&mut reports, "scaling", "r1").await?;
    let settled = health_until(&mut reports, "scaling", |h| {
        let reason = |name: &str, prefix: &str| {
            h.unhealthy
                .iter()
                .any(|(id, o)| id.name == name && o.message.starts_with(prefix))
        };
        h.unhealthy.len() == 3
            && reason("web", "FailedGetResourceMetric")
            && reason("worker", "FailedGetExternalMetric")
            && reason("idle", "ScalingDisabled")
    })
    .await?;
    assert_eq!(settled.health, Health::Degraded);
    let verdicts = verdicts(&settled);
    let health: Vec<(&str, Health)> = verdicts.iter().map(|(o, h, _)| (o.as_str(), *h)).collect();
    assert_eq!(
        health,
        [
            ("HorizontalPodAutoscaler web", Health::Degraded),
            ("HorizontalPodAutoscaler worker", Health::Degraded),
            ("HorizontalPodAutoscaler idle", Health::Suspended),
        ]
    );
    let unable = "the HPA was unable to compute the replica count: ";
    assert!(
        verdicts[0].2.starts_with(&format!(
            "FailedGetResourceMetric: {unable}failed to get cpu utilization: unable to get \
             metrics for resource cpu: "
        )),
        "{verdicts:?}"
    );
    assert!(
        verdicts[1].2.starts_with(&format!(
            "FailedGetExternalMetric: {unable}unable to get external metric \
             {ns}/queue_depth/nil: "
        )),
        "{verdicts:?}"
    );
    assert_eq!(
        verdicts[2].2,
        "ScalingDisabled: scaling is disabled since the replica count of the target is zero"
    );
    engine.shutdown().await;
    Ok(())
}

/// A second HPA scaling a Deployment one already scales: the controller refuses to autoscale
/// with it (`AmbiguousSelector`), and with the first too from its next pass. Neither is ever
/// Healthy. The second comes in a later revision, once the controller has seen the first: two
/// HPAs it meets at once first fail on their metrics (real cluster) and see each other only at
/// their next pass, 15 s later.
async fn two_autoscalers_on_one_workload_are_degraded(target: &Target) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let cpu = json!([{"type": "Resource", "resource": {"name": "cpu",
                      "target": {"type": "Utilization", "averageUtilization": 50}}}]);
    let first = autoscaler("web", cpu.clone(), false);
    let mut second = autoscaler("web", cpu, false);
    second["metadata"]["name"] = json!("web-too");
    let objects = vec![deployment("web", 1), first.clone()];
    engine.apply(revision(&ns, "scaling", "r1", objects))?;
    applied(&mut reports, "scaling", "r1").await?;
    // Seen by the controller: conditions written, whatever they say.
    health_until(&mut reports, "scaling", |h| {
        h.unhealthy
            .iter()
            .all(|(_, o)| !o.message.starts_with("waiting"))
    })
    .await?;
    let objects = vec![deployment("web", 1), first, second];
    engine.apply(revision(&ns, "scaling", "r2", objects))?;
    applied(&mut reports, "scaling", "r2").await?;
    let settled = health_until(&mut reports, "scaling", |h| {
        h.unhealthy.len() == 2
            && h.unhealthy
                .iter()
                .all(|(_, o)| o.health == Health::Degraded)
            && h.unhealthy
                .iter()
                .any(|(_, o)| o.message.starts_with("AmbiguousSelector: "))
    })
    .await?;
    let ambiguous = settled
        .unhealthy
        .iter()
        .find(|(_, o)| o.message.starts_with("AmbiguousSelector: "))
        .map(|(_, o)| o.message.clone())
        .unwrap_or_default();
    assert!(
        ambiguous.starts_with(
            "AmbiguousSelector: pods by selector app=web are controlled by more than one HPA"
        ),
        "{settled:?}"
    );
    engine.shutdown().await;
    Ok(())
}

/// Each unhealthy object as "Kind name", its health and message, in the report's order.
fn verdicts(health: &BundleHealth) -> Vec<(String, Health, String)> {
    health
        .unhealthy
        .iter()
        .map(|(id, o)| {
            (
                format!("{} {}", id.kind, id.name),
                o.health,
                o.message.clone(),
            )
        })
        .collect()
}

fn service(name: &str, kind: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": kind, "selector": {"app": "web"}, "ports": [{"port": 80}]}
    })
}

fn claim(name: &str, class: &str, size: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {
            "storageClassName": class, "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}
        }
    })
}

/// An HPA on the Deployment `name`, its metrics made to fail on the simulator when `fail`.
fn autoscaler(name: &str, metrics: Value, fail: bool) -> Value {
    let mut hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1, "maxReplicas": 3, "metrics": metrics
        }
    });
    if fail {
        hpa["metadata"]["annotations"] = json!({(flotilla_sim::FAIL_ANNOTATION): "true"});
    }
    hpa
}
