//! Additive drift: fields another field manager adds to objects a bundle owns (`kubectl label`
//! on a ConfigMap, a second `containerPort` patched into a Deployment) are reported with the
//! manager that added them, are never corrected (no re-apply, so no correction loop), and are
//! reported cleared once removed; on the simulator and on a real cluster.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use flotilla_agent::report::ObjectMessage;
use flotilla_agent::{Event, Report};
use flotilla_testkit::on_sim_and_real;
use flotilla_testkit::real::Target;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::support::engine::{applied, config_map, engine, get, revision, wait_for};

on_sim_and_real!(Duration::from_millis(200);
    added_label_and_port_are_reported_never_corrected_and_cleared,
);

const HINT: &str = "not in Git and not removed by Flotilla — remove it or add it to the bundle";

async fn added_label_and_port_are_reported_never_corrected_and_cleared(
    target: &Target,
) -> Result<()> {
    let (engine, mut reports) = engine(target)?;
    let ns = target.name("app");
    let web = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "main", "image": "example/web:1",
                    "ports": [{"containerPort": 8080}]
                }]}
            }
        }
    });
    engine.apply(revision(
        &ns,
        "shop",
        "r1",
        vec![config_map("settings", "1"), web],
    ))?;
    applied(&mut reports, "shop", "r1").await?;

    let started = Instant::now();
    kubectl(
        target,
        &ns,
        &["label", "configmap", "settings", "team=payments"],
    )
    .await?;
    let port = r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","ports":[{"containerPort":9090}]}]}}}}"#;
    kubectl(target, &ns, &["patch", "deployment", "web", "-p", port]).await?;

    let config_map_id = format!("ConfigMap {ns}/settings");
    let deployment_id = format!("apps/Deployment {ns}/web");
    let both = added_until(&mut reports, |objects| objects.len() == 2).await?;
    let found = started.elapsed();
    eprintln!(
        "added fields reported {:.1} s after kubectl label",
        found.as_secs_f64()
    );
    assert_eq!(
        both,
        [
            ObjectMessage {
                object: config_map_id.clone(),
                message: format!("metadata.labels.team added by kubectl-label; {HINT}"),
            },
            ObjectMessage {
                object: deployment_id.clone(),
                message: format!(
                    "spec.template.spec.containers[name=main].ports[containerPort=9090] \
                     added by kubectl-patch; {HINT}"
                ),
            },
        ]
    );

    // Never corrected: nothing is re-applied, the object's generation stays put and the port
    // and label stay where they were put.
    let client = target.client();
    let generation = |d: &Value| d["metadata"]["generation"].as_i64();
    let before = get(&client, "apps/v1", "deployments", &ns, "web")
        .await?
        .context("web is gone")?;
    let quiet = Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + quiet;
    while let Ok(report) = tokio::time::timeout_at(deadline, reports.recv()).await {
        let report = report?;
        eprintln!("{report}");
        ensure!(
            !matches!(
                report.event,
                Event::DriftDetected { .. } | Event::DriftCorrected { .. } | Event::Applying { .. }
            ),
            "additive drift must never cause drift handling or a re-apply: {report}"
        );
        ensure!(
            !matches!(report.event, Event::FieldsAdded { .. }),
            "the same added fields are reported once: {report}"
        );
    }
    let after = get(&client, "apps/v1", "deployments", &ns, "web")
        .await?
        .context("web is gone")?;
    assert_eq!(
        generation(&after),
        generation(&before),
        "no correction loop over {quiet:?}"
    );
    let ports = &after["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(2), "{ports}");
    let settings = get(&client, "v1", "configmaps", &ns, "settings")
        .await?
        .context("settings is gone")?;
    assert_eq!(settings["metadata"]["labels"]["team"], "payments");

    let removed = Instant::now();
    kubectl(target, &ns, &["label", "configmap", "settings", "team-"]).await?;
    let left = added_until(&mut reports, |objects| objects.len() < 2).await?;
    eprintln!(
        "label removal reported {:.1} s after kubectl label team-",
        removed.elapsed().as_secs_f64()
    );
    assert_eq!(
        left.iter().map(|m| m.object.as_str()).collect::<Vec<_>>(),
        [deployment_id.as_str()],
        "only the port is left"
    );
    engine.shutdown().await;
    Ok(())
}

/// Waits for a `FieldsAdded` report of bundle `shop` whose list `accept` accepts.
async fn added_until(
    reports: &mut broadcast::Receiver<Report>,
    accept: impl Fn(&[ObjectMessage]) -> bool,
) -> Result<Vec<ObjectMessage>> {
    wait_for(reports, "shop", |r| match &r.event {
        Event::FieldsAdded { objects } if accept(objects) => Some(objects.clone()),
        Event::DriftCorrected { .. } => panic!("additive drift must never be corrected: {r}"),
        _ => None,
    })
    .await
}

/// Runs kubectl against the target in namespace `ns`, as a person would.
async fn kubectl(target: &Target, ns: &str, args: &[&str]) -> Result<String> {
    let kubeconfig = target.kubeconfig().to_string_lossy().into_owned();
    let output = tokio::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            &kubeconfig,
            "--context",
            target.context(),
            "-n",
            ns,
        ])
        .args(args)
        .output()
        .await
        .context("running kubectl")?;
    ensure!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
