//! Shared test support: an in-process simulator, kube clients for its clusters, raw
//! HTTP requests, and kubectl (which must exist under CI=true).

#![allow(unreachable_pub)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use flotilla_sim::{Sim, SimConfig};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

/// A simulator with `clusters` clusters and fast simulated controllers.
pub async fn start(clusters: usize) -> Sim {
    start_with(SimConfig {
        clusters,
        rollout_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await
}

/// A simulator with a given configuration.
pub async fn start_with(config: SimConfig) -> Sim {
    match Sim::start(config).await {
        Ok(sim) => sim,
        Err(e) => panic!("simulator failed to start: {e}"),
    }
}

/// A kube client for one virtual cluster.
pub fn client(sim: &Sim, cluster: &str) -> kube::Client {
    // kube's TLS stack needs a process-wide provider even for plain HTTP; a second
    // install in the same process is refused, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url: http::Uri = match sim.cluster_url(cluster).parse() {
        Ok(u) => u,
        Err(e) => panic!("cluster URL does not parse: {e}"),
    };
    let mut config = kube::Config::new(url);
    config.read_timeout = Some(Duration::from_secs(20));
    match kube::Client::try_from(config) {
        Ok(c) => c,
        Err(e) => panic!("kube client: {e}"),
    }
}

/// A raw response: status, headers and the body parsed as JSON (Null if it is not).
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

/// Sends a raw request to a cluster through a kube client (path below the cluster URL).
pub async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> Raw {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(kube::client::Body::from(body.into()));
    let req = match req {
        Ok(r) => r,
        Err(e) => panic!("building request: {e}"),
    };
    let resp = match client.send(req).await {
        Ok(r) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => panic!("reading body of {method} {path}: {e}"),
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Raw {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    }
}

/// GET as JSON.
pub async fn get(client: &kube::Client, path: &str) -> Raw {
    raw(client, "GET", path, "application/json", Vec::new()).await
}

/// Whether the real kubectl can be run. Under CI=true a missing kubectl fails the test;
/// elsewhere the test is skipped, loudly.
pub fn kubectl_or_skip(test: &str) -> bool {
    let found = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: kubectl is required under CI=true but was not found on PATH");
    }
    eprintln!("SKIPPED {test}: kubectl not found on PATH (install kubectl to run it)");
    false
}

/// kubectl against the simulator: a kubeconfig and a private cache directory.
pub struct Kubectl {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// Writes the simulator's kubeconfig into a fresh directory.
    pub fn new(sim: &Sim) -> Kubectl {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let kubeconfig = dir.path().join("kubeconfig");
        if let Err(e) = sim.write_kubeconfig(&kubeconfig) {
            panic!("writing kubeconfig: {e}");
        }
        Kubectl { dir, kubeconfig }
    }

    /// A file in the private directory with this content.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Err(e) = std::fs::write(&p, content) {
            panic!("writing {name}: {e}");
        }
        p
    }

    /// A kubectl command against a context, not yet run.
    pub fn command(&self, context: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--context")
            .arg(context)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl to completion.
    pub async fn run(&self, context: &str, args: &[&str]) -> Output {
        match tokio::time::timeout(
            Duration::from_secs(60),
            self.command(context, args).output(),
        )
        .await
        {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("running kubectl {args:?}: {e}"),
            Err(_) => panic!("kubectl {args:?} did not finish in 60 s"),
        }
    }

    /// Runs kubectl and requires success; returns stdout.
    pub async fn ok(&self, context: &str, args: &[&str]) -> String {
        let out = self.run(context, args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl and parses its stdout as JSON.
    pub async fn json(&self, context: &str, args: &[&str]) -> Value {
        let out = self.ok(context, args).await;
        match serde_json::from_str(&out) {
            Ok(v) => v,
            Err(e) => panic!("kubectl {args:?} printed no JSON ({e}): {out}"),
        }
    }
}

/// Polls until `check` returns Some, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
