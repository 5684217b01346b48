//! Drift: someone edits or deletes an owned object with kubectl. In `correct` mode the agent
//! re-applies it and reports the drift; in `report` mode it only reports, once.

use crate::support::sim as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_agent::{DriftMode, Event};
use serde_json::json;
use support::*;

#[tokio::test]
async fn kubectl_edits_and_deletes_are_corrected() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;
    let objects = vec![
        config_map("a", "1"),
        config_map("b", "1"),
        deployment("web", 2, json!({})),
    ];
    engine.apply(revision("shop", "r1", objects))?;
    applied(&mut reports, "shop", "r1").await?;

    let patch = r#"{"data":{"key":"tampered"}}"#;
    let edited = kubectl(
        &kubeconfig,
        &[
            "-n",
            "app",
            "patch",
            "configmap",
            "a",
            "--type",
            "merge",
            "-p",
            patch,
        ],
    )
    .await?;
    if edited.is_none() {
        return Ok(());
    }
    kubectl(
        &kubeconfig,
        &["-n", "app", "scale", "deployment", "web", "--replicas=5"],
    )
    .await?;
    kubectl(&kubeconfig, &["-n", "app", "delete", "configmap", "b"]).await?;

    let mut detected = Vec::new();
    let mut corrected = Vec::new();
    while corrected.len() < 3 {
        let event = wait_for(&mut reports, "shop", |r| match &r.event {
            Event::DriftDetected { .. } | Event::DriftCorrected { .. } => Some(r.event.clone()),
            _ => None,
        })
        .await?;
        match event {
            Event::DriftDetected { objects } => detected.extend(objects),
            Event::DriftCorrected { objects } => corrected.extend(objects),
            _ => {}
        }
    }
    corrected.sort();
    assert_eq!(
        corrected,
        [
            "ConfigMap app/a",
            "ConfigMap app/b",
            "apps/Deployment app/web"
        ]
    );
    let said = |object: &str| {
        detected
            .iter()
            .find(|m| m.object == object)
            .map(|m| m.message.clone())
    };
    assert_eq!(
        said("ConfigMap app/a").as_deref(),
        Some("data.key changed (by kubectl-patch)")
    );
    assert_eq!(said("ConfigMap app/b").as_deref(), Some("deleted"));
    assert_eq!(
        said("apps/Deployment app/web").as_deref(),
        Some("spec.replicas changed (by kubectl)")
    );

    let a = get(&client, "v1", "ConfigMap", Some("app"), "a")
        .await?
        .expect("a exists");
    assert_eq!(a["data"]["key"], "1");
    assert!(
        get(&client, "v1", "ConfigMap", Some("app"), "b")
            .await?
            .is_some(),
        "b was recreated"
    );
    let web = get(&client, "apps/v1", "Deployment", Some("app"), "web")
        .await?
        .expect("web exists");
    assert_eq!(web["spec"]["replicas"], 2);
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn changes_to_fields_flotilla_does_not_manage_are_not_drift() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let (engine, mut reports) = engine(&sim, None)?;
    engine.apply(revision("shop", "r1", vec![config_map("a", "1")]))?;
    applied(&mut reports, "shop", "r1").await?;

    if kubectl(
        &kubeconfig,
        &["-n", "app", "label", "configmap", "a", "team=payments"],
    )
    .await?
    .is_none()
    {
        return Ok(());
    }
    // A managed change after the unmanaged one: the first drift reported must be this one.
    kubectl(
        &kubeconfig,
        &[
            "-n",
            "app",
            "patch",
            "configmap",
            "a",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"key":"2"}}"#,
        ],
    )
    .await?;
    let objects = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::DriftDetected { objects } => Some(objects.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(objects.len(), 1);
    assert_eq!(
        objects[0].message, "data.key changed (by kubectl-patch)",
        "the new label is not drift"
    );
    engine.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn report_mode_reports_drift_once_and_leaves_it() -> Result<()> {
    let sim = sim(Duration::from_millis(100)).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let client = client(&sim)?;
    let (engine, mut reports) = engine(&sim, None)?;
    let mut bundle = revision("shop", "r1", vec![config_map("a", "1")]);
    bundle.drift = DriftMode::Report;
    engine.apply(bundle)?;
    applied(&mut reports, "shop", "r1").await?;

    let patch = r#"{"data":{"key":"tampered"}}"#;
    if kubectl(
        &kubeconfig,
        &[
            "-n",
            "app",
            "patch",
            "configmap",
            "a",
            "--type",
            "merge",
            "-p",
            patch,
        ],
    )
    .await?
    .is_none()
    {
        return Ok(());
    }
    let objects = wait_for(&mut reports, "shop", |r| match &r.event {
        Event::DriftDetected { objects } => Some(objects.clone()),
        Event::DriftCorrected { .. } => panic!("report mode must not correct"),
        _ => None,
    })
    .await?;
    assert_eq!(objects[0].object, "ConfigMap app/a");
    // Another unrelated change re-triggers a check, but the same drift is not reported again.
    kubectl(
        &kubeconfig,
        &["-n", "app", "label", "configmap", "a", "touched=yes"],
    )
    .await?;
    kubectl(
        &kubeconfig,
        &[
            "-n",
            "app",
            "patch",
            "configmap",
            "a",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"other":"x"}}"#,
        ],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut again = 0;
    while let Ok(report) = reports.try_recv() {
        eprintln!("{report}");
        if matches!(report.event, Event::DriftDetected { .. }) {
            again += 1;
        }
        assert!(!matches!(report.event, Event::DriftCorrected { .. }));
    }
    assert_eq!(again, 0, "the same drift is reported once");
    let a = get(&client, "v1", "ConfigMap", Some("app"), "a")
        .await?
        .expect("a exists");
    assert_eq!(
        a["data"]["key"], "tampered",
        "report mode leaves the drift in place"
    );
    engine.shutdown().await;
    Ok(())
}
