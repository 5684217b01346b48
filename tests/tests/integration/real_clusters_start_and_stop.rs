//! The test support for real clusters keeps its promise: clusters started for one test serve
//! their contexts and stop when dropped, also when the test panics, so no test leaves API
//! servers running.

use std::time::Duration;

use anyhow::Result;
use flotilla_testkit::real::RealClusters;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_serve_their_contexts_and_stop_when_dropped_even_on_panic() -> Result<()> {
    let test = "clusters_serve_their_contexts_and_stop_when_dropped_even_on_panic";
    if !RealClusters::available(test)? {
        return Ok(());
    }
    let clusters = tokio::task::spawn_blocking(|| RealClusters::start(1)).await??;
    assert_eq!(clusters.contexts(), ["k8s-0"]);
    let kubeconfig = clusters.kubeconfig().to_path_buf();
    let client = clusters.client("k8s-0").await?;
    let node = Api::<Node>::all(client.clone()).get("kwok-node-0").await?;
    assert!(node.status.is_some(), "kwok runs the fake node");

    // A test that panics holding the clusters drops them while unwinding.
    let unwound = tokio::task::spawn_blocking(move || {
        let _clusters = clusters;
        panic!("a failing test");
    })
    .await;
    assert!(unwound.is_err_and(|e| e.is_panic()));
    assert!(!kubeconfig.exists(), "k8s-down removes the kubeconfig");
    let gone = tokio::time::timeout(
        Duration::from_secs(10),
        Api::<Node>::all(client).get("kwok-node-0"),
    )
    .await;
    assert!(
        !matches!(gone, Ok(Ok(_))),
        "the API server still answers after the clusters were dropped"
    );
    Ok(())
}
