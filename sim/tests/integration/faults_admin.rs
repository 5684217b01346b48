//! Faults per virtual cluster (unreachable, slow, failing) through the library and the
//! admin HTTP API, clusters added and removed at run time, and the requests each cluster
//! served.

use crate::support::harness as support;

use std::time::{Duration, Instant};

use flotilla_sim::{Fault, RequestCounts, SimConfig};
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

/// Polls a cluster's counts until `check` holds, or panics after five seconds.
async fn counts_until(
    sim: &flotilla_sim::Sim,
    cluster: &str,
    what: &str,
    check: impl Fn(&RequestCounts) -> bool,
) -> RequestCounts {
    support::eventually(5, what, || async {
        sim.request_counts(cluster).filter(|c| check(c))
    })
    .await
}

#[tokio::test]
async fn request_counts_count_every_answered_request_by_verb() {
    let sim = start_with(SimConfig {
        clusters: 2,
        unreachable_hold: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let addr = sim.addr();
    assert_eq!(sim.request_count("sim-0"), Some(0));
    assert_eq!(sim.request_count("nope"), None);

    // A watch counts once when it opens, however many events it then carries.
    let watch = tokio::spawn(async move {
        http(
            addr,
            "GET",
            "/clusters/sim-0/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
            "",
        )
        .await
    });
    counts_until(&sim, "sim-0", "the watch to open", |c| c.watch == 1).await;

    let c = client(&sim, "sim-0");
    let cm = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"v": v}});
    let apply = |query: &'static str, body: Value| {
        let c = c.clone();
        async move {
            support::raw(
                &c,
                "PATCH",
                &format!("/api/v1/namespaces/default/configmaps/x?fieldManager=t{query}"),
                "application/apply-patch+yaml",
                body.to_string(),
            )
            .await
            .status
            .as_u16()
        }
    };
    assert_eq!(apply("&dryRun=All", cm("1")).await, 201);
    assert_eq!(apply("", cm("1")).await, 201);
    assert_eq!(apply("", cm("2")).await, 200);
    let merge = support::raw(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/x",
        "application/merge-patch+json",
        json!({"data": {"w": "3"}}).to_string(),
    )
    .await;
    assert_eq!(merge.status.as_u16(), 200);
    assert_eq!(
        get(&c, "/api/v1/namespaces/default/configmaps/x")
            .await
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        get(&c, "/api/v1/namespaces/default/configmaps")
            .await
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        get(&c, "/api/v1/namespaces/default/configmaps/missing")
            .await
            .status
            .as_u16(),
        404
    );
    assert_eq!(get(&c, "/api").await.status.as_u16(), 200);
    let deleted = support::raw(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/x",
        "application/json",
        Vec::new(),
    )
    .await;
    assert_eq!(deleted.status.as_u16(), 200);
    let watched = watch.await.unwrap_or_default();
    assert!(
        watched.contains("\"DELETED\""),
        "the watch saw the changes: {watched}"
    );
    // Answered with a fault's 500: counted. Dropped unanswered: not counted.
    sim.set_fault("sim-0", Fault::ServerErrors);
    assert_eq!(get(&c, "/api/v1/namespaces").await.status.as_u16(), 500);
    sim.set_fault("sim-0", Fault::Unreachable);
    assert_eq!(
        http(addr, "GET", "/clusters/sim-0/api/v1/namespaces", "").await,
        ""
    );
    sim.clear_fault("sim-0");

    let counts = sim.request_counts("sim-0").unwrap_or_default();
    assert_eq!(
        counts,
        RequestCounts {
            total: 11,
            get: 2,
            list: 2,
            watch: 1,
            apply: 3,
            patch: 1,
            delete: 1,
            other: 1,
            dry_run: 1,
            ..Default::default()
        }
    );
    assert_eq!(sim.request_count("sim-0"), Some(11));
    assert_eq!(
        sim.request_count("sim-1"),
        Some(0),
        "counts are per cluster"
    );

    // The admin API reports the same counts, and a later reading minus an earlier one is
    // what happened in between.
    let detail = json_body(&http(addr, "GET", "/admin/clusters/sim-0", "").await);
    assert_eq!(detail["name"], "sim-0");
    assert_eq!(detail["requests"]["total"], 11);
    assert_eq!(detail["requests"]["dry_run"], 1);
    assert_eq!(detail["objects"], sim.object_count("sim-0").unwrap_or(0));
    get(&c, "/api/v1/namespaces").await;
    let later = sim.request_counts("sim-0").unwrap_or_default();
    assert_eq!(
        later.since(&counts),
        RequestCounts {
            total: 1,
            list: 1,
            ..Default::default()
        }
    );
    assert!(status_line(&http(addr, "GET", "/admin/clusters/nope", "").await).contains("404"));
    sim.shutdown().await;
}

#[tokio::test]
async fn removed_cluster_drops_its_state_cuts_its_watches_and_answers_404() {
    let sim = start(2).await;
    let addr = sim.addr();
    let c = client(&sim, "sim-1");
    let created = support::raw(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "doomed"}})
            .to_string(),
    )
    .await;
    assert_eq!(created.status.as_u16(), 201);
    let before = sim.object_count("sim-1").unwrap_or(0);
    // The watch is read as it streams, so the cluster is removed while it is open.
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let request = "GET /clusters/sim-1/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=30 HTTP/1.1\r\nHost: sim\r\n\r\n";
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"doomed\"") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no initial event within 5 s"))
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert!(n > 0, "the watch ended before its first event");
        seen.extend_from_slice(&buf[..n]);
    }

    let started = Instant::now();
    let removed = http(addr, "DELETE", "/admin/clusters/sim-1", "").await;
    assert!(status_line(&removed).contains("204"), "{removed}");
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut seen)).await;
    assert!(rest.is_ok(), "the watch stayed open on a removed cluster");
    let cut = String::from_utf8_lossy(&seen).into_owned();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !cut.ends_with("0\r\n\r\n"),
        "the watch was ended cleanly instead of cut: {cut}"
    );

    let gone = http(
        addr,
        "GET",
        "/clusters/sim-1/api/v1/namespaces/default/configmaps",
        "",
    )
    .await;
    assert!(status_line(&gone).contains("404"), "{gone}");
    assert_eq!(sim.cluster_names(), vec!["sim-0".to_string()]);
    assert!(!sim.kubeconfig_yaml().contains("/clusters/sim-1"));
    assert_eq!(sim.request_count("sim-1"), None);
    assert_eq!(sim.object_count("sim-1"), None);
    let listed = json_body(&http(addr, "GET", "/admin/clusters", "").await);
    assert_eq!(listed["clusters"].as_array().map(Vec::len), Some(1));
    assert!(status_line(&http(addr, "DELETE", "/admin/clusters/sim-1", "").await).contains("404"));
    assert!(!sim.remove_cluster("sim-1"));

    // A cluster of the same name comes back empty, with fresh counts.
    assert!(sim.add_cluster("sim-1").is_ok());
    assert!(sim.object_count("sim-1").unwrap_or(0) < before);
    assert_eq!(sim.request_count("sim-1"), Some(0));
    let back = get(
        &client(&sim, "sim-1"),
        "/api/v1/namespaces/default/configmaps/doomed",
    )
    .await;
    assert_eq!(back.status.as_u16(), 404);

    // The library call does the same.
    assert!(sim.remove_cluster("sim-0"));
    assert!(!sim.cluster_names().contains(&"sim-0".to_string()));
    sim.shutdown().await;
}

/// The UID of a cluster's kube-system namespace, which agents report as the cluster's identity.
async fn kube_system_uid(sim: &flotilla_sim::Sim, cluster: &str) -> String {
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client(sim, cluster));
    let namespace = namespaces
        .get("kube-system")
        .await
        .unwrap_or_else(|e| panic!("kube-system of {cluster}: {e}"));
    namespace
        .metadata
        .uid
        .unwrap_or_else(|| panic!("kube-system of {cluster} has no uid"))
}

#[tokio::test]
async fn every_cluster_has_its_own_kube_system_uid_and_a_rebuilt_one_a_new_one() {
    let sim = start(3).await;
    let mut uids = Vec::new();
    for cluster in ["sim-0", "sim-1", "sim-2"] {
        let uid = kube_system_uid(&sim, cluster).await;
        // Stable while the cluster lives.
        assert_eq!(kube_system_uid(&sim, cluster).await, uid);
        uids.push(uid);
    }
    let distinct: std::collections::BTreeSet<&String> = uids.iter().collect();
    assert_eq!(distinct.len(), 3, "{uids:?}");

    assert!(sim.remove_cluster("sim-1"));
    assert!(sim.add_cluster("sim-1").is_ok());
    let rebuilt = kube_system_uid(&sim, "sim-1").await;
    assert!(
        !uids.contains(&rebuilt),
        "a rebuilt cluster kept an old uid"
    );
    sim.shutdown().await;
}
