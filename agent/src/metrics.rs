//! The agent's Prometheus metrics, served with a liveness probe on `--metrics-listen`
//! (`GET /metrics`, `GET /healthz`): what its engine did (applies and their durations, prunes,
//! drift, health changes, read from the engine's reports), every request to the cluster's API
//! server by verb and answer (a layer on the API client), whether the API server answers its
//! readiness probe, the build and the process. Names follow Prometheus' conventions, prefix
//! `flotilla_agent_`; the process's own use is `process_*`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::report::{Event, Report};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The agent's metrics.
pub struct AgentMetrics {
    registry: Registry,
    applies: Family<Labels, Counter>,
    apply_duration: Histogram,
    objects_applied: Counter,
    objects_pruned: Counter,
    prune_failures: Counter,
    drift_detected: Counter,
    drift_corrected: Counter,
    drift_correction_failures: Counter,
    health_changes: Family<Labels, Counter>,
    bundle_health: Family<Labels, Gauge>,
    kube_requests: Family<Labels, Counter>,
    kube_request_duration: Family<Labels, Histogram>,
    api_reachable: Gauge,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentMetrics")
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Fresh metrics, registered.
    pub fn new() -> AgentMetrics {
        let mut registry = Registry::with_prefix("flotilla_agent");
        let applies = Family::<Labels, Counter>::default();
        let apply_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let objects_applied = Counter::default();
        let objects_pruned = Counter::default();
        let prune_failures = Counter::default();
        let drift_detected = Counter::default();
        let drift_corrected = Counter::default();
        let drift_correction_failures = Counter::default();
        let health_changes = Family::<Labels, Counter>::default();
        let bundle_health = Family::<Labels, Gauge>::default();
        let kube_requests = Family::<Labels, Counter>::default();
        let kube_request_duration = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 14))) as fn() -> Histogram,
        );
        let api_reachable = Gauge::default();
        let build_info = Family::<Labels, Gauge>::default();
        build_info
            .get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))]))
            .set(1);
        registry.register(
            "build_info",
            "1, labelled with the agent's version",
            build_info,
        );
        registry.register(
            "applies",
            "Revisions of bundles applied (`result=\"applied\"`) or not (`result=\"refused\"`: the \
             API server refused them, only a new revision helps; `result=\"failed\"`: a \
             transient failure the engine retries)",
            applies.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "From starting to apply a revision of a bundle until it was applied or failed",
            apply_duration.clone(),
        );
        registry.register(
            "objects_applied",
            "Objects applied by server-side apply as part of a revision",
            objects_applied.clone(),
        );
        registry.register(
            "objects_pruned",
            "Objects deleted because they left their bundle, or their bundle was removed",
            objects_pruned.clone(),
        );
        registry.register(
            "prune_failures",
            "Objects whose deletion failed (tried again)",
            prune_failures.clone(),
        );
        registry.register(
            "drift_detected",
            "Objects found changed or deleted by someone else",
            drift_detected.clone(),
        );
        registry.register(
            "drift_corrections",
            "Drifted objects re-applied",
            drift_corrected.clone(),
        );
        registry.register(
            "drift_correction_failures",
            "Drifted objects whose re-apply failed",
            drift_correction_failures.clone(),
        );
        registry.register(
            "health_changes",
            "Changes of a bundle's health, by the health it changed to",
            health_changes.clone(),
        );
        registry.register(
            "bundle_health",
            "1, labelled with each bundle's current health (one series per bundle)",
            bundle_health.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests to the cluster's API server, by verb and HTTP status (`error`: no answer)",
            kube_requests.clone(),
        );
        registry.register(
            "kube_request_duration_seconds",
            "Time to the API server's answer (a watch: until its stream opened), by verb",
            kube_request_duration.clone(),
        );
        registry.register(
            "api_reachable",
            "0 once the cluster's API server failed the agent's readiness probe twice in a row, \
             until it answers again; 1 otherwise (also before the first probe)",
            api_reachable.clone(),
        );
        AgentMetrics {
            registry,
            applies,
            apply_duration,
            objects_applied,
            objects_pruned,
            prune_failures,
            drift_detected,
            drift_corrected,
            drift_correction_failures,
            health_changes,
            bundle_health,
            kube_requests,
            kube_request_duration,
            api_reachable,
        }
    }

    /// Counts what one engine report says; `started` keeps when each bundle began to apply.
    pub fn observe(&self, report: &Report, started: &mut HashMap<String, i64>) {
        let took = |started: &mut HashMap<String, i64>| {
            started
                .remove(&report.bundle)
                .map(|at| (report.at_ms.saturating_sub(at)).max(0) as f64 / 1000.0)
        };
        match &report.event {
            Event::Applying { .. } => {
                started.insert(report.bundle.clone(), report.at_ms);
            }
            Event::Applied { applied, pruned } => {
                self.applies
                    .get_or_create(&labels(&[("result", "applied")]))
                    .inc();
                // Its `pruned` were counted by the `Pruned` report that came first.
                let _ = pruned;
                self.objects_applied.inc_by(*applied as u64);
                if let Some(seconds) = took(started) {
                    self.apply_duration.observe(seconds);
                }
            }
            Event::ApplyFailed { retry_in, .. } => {
                let result = if retry_in.is_some() {
                    "failed"
                } else {
                    "refused"
                };
                self.applies
                    .get_or_create(&labels(&[("result", result)]))
                    .inc();
                if let Some(seconds) = took(started) {
                    self.apply_duration.observe(seconds);
                }
            }
            Event::Pruned {
                objects, failed, ..
            } => {
                self.objects_pruned.inc_by(objects.len() as u64);
                self.prune_failures.inc_by(failed.len() as u64);
            }
            // Its objects were counted by the `Pruned` report that came first.
            Event::Removed { .. } => {
                started.remove(&report.bundle);
                for health in flotilla_core::Health::ALL {
                    self.bundle_health.remove(&labels(&[
                        ("bundle", &report.bundle),
                        ("health", health.as_str()),
                    ]));
                }
            }
            Event::HealthChanged(health) => {
                let now = health.health.as_str();
                self.health_changes
                    .get_or_create(&labels(&[("health", now)]))
                    .inc();
                // One series per bundle, its current health: a change moves it.
                for each in flotilla_core::Health::ALL {
                    let key = labels(&[("bundle", &report.bundle), ("health", each.as_str())]);
                    if each.as_str() == now {
                        self.bundle_health.get_or_create(&key).set(1);
                    } else {
                        self.bundle_health.remove(&key);
                    }
                }
            }
            Event::DriftDetected { objects } => {
                self.drift_detected.inc_by(objects.len() as u64);
            }
            Event::DriftCorrected { objects } => {
                self.drift_corrected.inc_by(objects.len() as u64);
            }
            Event::DriftCorrectionFailed { errors } => {
                self.drift_correction_failures.inc_by(errors.len() as u64);
            }
            Event::FieldsAdded { .. } => {}
        }
    }

    /// Records whether the API server answers the readiness probe.
    pub fn set_api_reachable(&self, reachable: bool) {
        self.api_reachable.set(i64::from(reachable));
    }

    fn kube_request(&self, verb: &str, code: &str, took: Duration) {
        self.kube_requests
            .get_or_create(&labels(&[("verb", verb), ("code", code)]))
            .inc();
        self.kube_request_duration
            .get_or_create(&labels(&[("verb", verb)]))
            .observe(took.as_secs_f64());
    }

    /// Everything, in the text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)?;
        text.push_str(&process_text());
        encode_eof(&mut text)?;
        Ok(text)
    }
}

/// `process_*` as Prometheus' client libraries name them (none where `/proc` is missing).
fn process_text() -> String {
    let Some(p) = flotilla_core::process::ProcessStats::read() else {
        return String::new();
    };
    let mut text = String::new();
    let mut one = |name: &str, kind: &str, help: &str, value: f64| {
        let sample = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        };
        text.push_str(&format!(
            "# HELP {name} {help}.\n# TYPE {name} {kind}\n{sample} {value}\n"
        ));
    };
    one(
        "process_cpu_seconds",
        "counter",
        "Total user and system CPU time spent in seconds",
        p.cpu_seconds,
    );
    one(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes",
        p.resident_bytes as f64,
    );
    one(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes",
        p.virtual_bytes as f64,
    );
    one(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors",
        p.open_fds as f64,
    );
    one(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors",
        p.max_fds as f64,
    );
    one(
        "process_threads",
        "gauge",
        "Number of OS threads in the process",
        p.threads as f64,
    );
    one(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds",
        p.start_time_seconds,
    );
    text
}

/// The Kubernetes verb of a request: `watch` for a GET with `watch=true`, else the method's
/// (`get` for any other GET — reads of one object and lists alike —, `patch` for server-side
/// apply, `create`, `update`, `delete`).
fn verb<B>(request: &http::Request<B>) -> &'static str {
    let watching = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    match *request.method() {
        http::Method::GET if watching => "watch",
        http::Method::GET => "get",
        http::Method::PATCH => "patch",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// A layer on the API client counting every request by verb and answer.
#[derive(Clone)]
pub struct CountRequests(pub Arc<AgentMetrics>);

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

/// The API client's service, counted.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<AgentMetrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let verb = verb(&request);
        let metrics = Arc::clone(&self.metrics);
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            let code = match &answer {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "error".to_owned(),
            };
            metrics.kube_request(verb, &code, started.elapsed());
            answer
        })
    }
}

/// Most connections the metrics listener serves at once (a scraper and a probe need two).
const MAX_CONNECTIONS: usize = 16;

/// Longest one connection may stay open: scrapers reconnect.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves `GET /metrics` and `GET /healthz` on `listener` until the task is dropped: plain
/// HTTP/1.1 for a scraper and a kubelet probe inside the cluster.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<AgentMetrics>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    // Bounded: a flood of connections must not take the descriptors the agent needs for its
    // hub stream and its API client. Dropped with this task, the connections end with it.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: waiting beats spinning.
                tracing::warn!(error = %e, "metrics listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        connections.spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let metrics = Arc::clone(&metrics);
                async move {
                    let (status, content_type, body) = match request.uri().path() {
                        "/metrics" => match metrics.encode() {
                            Ok(text) => (
                                200,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                text,
                            ),
                            Err(_) => (500, "text/plain", "cannot encode metrics\n".to_owned()),
                        },
                        "/healthz" => (200, "text/plain", "ok\n".to_owned()),
                        _ => (404, "text/plain", "GET /metrics or /healthz\n".to_owned()),
                    };
                    hyper::Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .body(Full::new(Bytes::from(body)))
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

#[cfg(test)]
mod tests;
