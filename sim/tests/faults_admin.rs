//! Faults per virtual cluster (unreachable, slow, failing) through the library and the
//! admin HTTP API, and clusters added at run time.

#[path = "support/harness.rs"]
mod support;

use std::time::{Duration, Instant};

use flotilla_sim::{Fault, SimConfig};
use serde_json::{Value, json};
use support::{client, get, start, start_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 exchange; returns what the server sent before closing (maybe nothing).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

fn json_body(resp: &str) -> Value {
    resp.split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn unreachable_cluster_drops_connections_and_only_that_cluster() {
    let sim = start_with(SimConfig {
        clusters: 2,
        unreachable_hold: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    assert!(sim.set_fault("sim-0", Fault::Unreachable));
    let resp = http(sim.addr(), "GET", "/clusters/sim-0/api/v1/namespaces", "").await;
    assert_eq!(resp, "", "an unreachable cluster answers nothing");
    let resp = http(sim.addr(), "GET", "/clusters/sim-1/api/v1/namespaces", "").await;
    assert!(status_line(&resp).contains("200"), "{resp}");

    let c = client(&sim, "sim-0");
    let err = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
        .list(&Default::default())
        .await;
    assert!(err.is_err(), "kube-rs reached an unreachable cluster");

    assert!(sim.clear_fault("sim-0"));
    let resp = http(sim.addr(), "GET", "/clusters/sim-0/api/v1/namespaces", "").await;
    assert!(status_line(&resp).contains("200"), "{resp}");
    assert!(!sim.set_fault("nope", Fault::ServerErrors));
    sim.shutdown().await;
}

#[tokio::test]
async fn unreachable_fault_cuts_open_watches() {
    let sim = start(1).await;
    let addr = sim.addr();
    let watch = tokio::spawn(async move {
        http(
            addr,
            "GET",
            "/clusters/sim-0/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=30",
            "",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    sim.set_fault("sim-0", Fault::Unreachable);
    let out = tokio::time::timeout(Duration::from_secs(10), watch).await;
    assert!(
        out.is_ok(),
        "the watch stayed open on an unreachable cluster"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_and_server_error_faults() {
    let sim = start(2).await;
    let c = client(&sim, "sim-0");
    sim.set_fault("sim-0", Fault::Latency(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(get(&c, "/api/v1/namespaces").await.status.as_u16(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "latency fault added no delay"
    );

    sim.set_fault("sim-0", Fault::ServerErrors);
    let r = get(&c, "/api/v1/namespaces").await;
    assert_eq!(r.status.as_u16(), 500);
    assert_eq!(r.body["reason"], "InternalError");
    assert_eq!(
        get(&client(&sim, "sim-1"), "/api/v1/namespaces")
            .await
            .status
            .as_u16(),
        200
    );
    sim.clear_fault("sim-0");
    assert_eq!(get(&c, "/api/v1/namespaces").await.status.as_u16(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn admin_api_adds_clusters_and_sets_faults() {
    let sim = start(1).await;
    let addr = sim.addr();
    let resp = http(
        addr,
        "POST",
        "/admin/clusters",
        &json!({"name": "edge-7"}).to_string(),
    )
    .await;
    assert!(status_line(&resp).contains("201"), "{resp}");
    assert_eq!(
        json_body(&resp)["url"],
        format!("http://{addr}/clusters/edge-7")
    );
    assert!(sim.cluster_names().contains(&"edge-7".to_string()));
    assert!(sim.kubeconfig_yaml().contains("/clusters/edge-7"));
    let ns = http(
        addr,
        "GET",
        "/clusters/edge-7/api/v1/namespaces/kube-system",
        "",
    )
    .await;
    assert!(status_line(&ns).contains("200"), "{ns}");

    assert!(
        status_line(
            &http(
                addr,
                "POST",
                "/admin/clusters",
                &json!({"name": "edge-7"}).to_string()
            )
            .await
        )
        .contains("409")
    );
    assert!(
        status_line(
            &http(
                addr,
                "POST",
                "/admin/clusters",
                &json!({"name": "Bad_Name"}).to_string()
            )
            .await
        )
        .contains("422")
    );
    assert!(status_line(&http(addr, "POST", "/admin/clusters", "{}").await).contains("400"));

    let set = http(
        addr,
        "POST",
        "/admin/clusters/edge-7/fault",
        &json!({"type": "ServerErrors"}).to_string(),
    )
    .await;
    assert!(status_line(&set).contains("204"), "{set}");
    assert!(
        status_line(&http(addr, "GET", "/clusters/edge-7/api/v1/namespaces", "").await)
            .contains("500")
    );
    let list = json_body(&http(addr, "GET", "/admin/clusters", "").await);
    let edge = list["clusters"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "edge-7"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(edge["fault"]["type"], "ServerErrors");
    let latency = http(
        addr,
        "POST",
        "/admin/clusters/edge-7/fault",
        &json!({"type": "Latency", "millis": 50}).to_string(),
    )
    .await;
    assert!(status_line(&latency).contains("204"), "{latency}");
    assert!(
        status_line(&http(addr, "DELETE", "/admin/clusters/edge-7/fault", "").await)
            .contains("204")
    );
    assert!(
        status_line(&http(addr, "GET", "/clusters/edge-7/api/v1/namespaces", "").await)
            .contains("200")
    );
    assert!(
        status_line(
            &http(
                addr,
                "POST",
                "/admin/clusters/nope/fault",
                &json!({"type": "Unreachable"}).to_string()
            )
            .await
        )
        .contains("404")
    );
    assert!(
        status_line(
            &http(
                addr,
                "POST",
                "/admin/clusters/edge-7/fault",
                &json!({"type": "Broken"}).to_string()
            )
            .await
        )
        .contains("400")
    );

    assert!(sim.add_cluster("lib-added").is_ok());
    assert!(sim.add_cluster("lib-added").is_err());
    assert!(sim.add_cluster("UPPER").is_err());
    sim.shutdown().await;
}
