//! The listener: one address for every virtual cluster (`/clusters/{name}/...`) and the
//! admin API (`/admin/...`), served with hyper so a fault can drop a connection.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::Fault;
use crate::api::{self, ApiRequest, error_response, json_response};
use crate::fleet::Fleet;
use crate::route::{self, Verb};
use crate::status::ApiError;

/// Marks a response whose connection is dropped instead of answered.
#[derive(Clone, Copy, Debug)]
struct DropConnection;

/// The error that makes hyper close a connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped: the virtual cluster is unreachable")]
struct Dropped;

/// Serves until `shutdown` turns true, then drains connections for a few seconds.
pub(crate) async fn run(
    listener: TcpListener,
    fleet: Arc<Fleet>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(fleet);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        let response = match app.oneshot(req.map(Body::new)).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        };
                        if response.extensions().get::<DropConnection>().is_some() {
                            return Err(Dropped);
                        }
                        Ok::<_, Dropped>(response)
                    }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // A client going away mid-request is no failure of the simulator.
                    let _ = conn.await;
                });
            }
            _ = crate::fleet::stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 5 s; closing them");
    }
}

fn router(fleet: Arc<Fleet>) -> Router {
    Router::new()
        .route("/clusters/{cluster}/{*rest}", any(cluster_api))
        .route("/clusters/{cluster}", any(cluster_root))
        .route("/admin/clusters", get(list_clusters).post(add_cluster))
        .route(
            "/admin/clusters/{name}",
            get(cluster_detail).delete(remove_cluster),
        )
        .route(
            "/admin/clusters/{name}/fault",
            post(set_fault).delete(clear_fault),
        )
        .route("/admin/clusters/{name}/compact", post(compact))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { error_response(&ApiError::no_resource()) })
        .with_state(fleet)
}

async fn cluster_root() -> Response {
    error_response(&ApiError::no_resource())
}

async fn cluster_api(
    State(fleet): State<Arc<Fleet>>,
    Path((name, rest)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(cluster) = fleet.get(&name) else {
        return error_response(&ApiError::no_resource());
    };
    let route = route::route(&rest);
    let query = api::Query(query);
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let verb = Verb::of(&route, &method, query.flag("watch"), content_type);
    let dry_run = query.get("dryRun") == Some("All")
        && !matches!(verb, Verb::Get | Verb::List | Verb::Watch | Verb::Other);
    let fault = cluster.fault();
    if fault == Some(Fault::Unreachable) {
        // A dead host: hold the request, then close the connection unanswered.
        let mut changes = cluster.fault_changes();
        let mut removal = cluster.removal();
        let mut shutdown = fleet.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(fleet.config.unreachable_hold) => {}
            _ = changes.changed() => {}
            _ = removal.changed() => {}
            _ = crate::fleet::stopped(&mut shutdown) => {}
        }
        let mut r = Response::new(Body::empty());
        r.extensions_mut().insert(DropConnection);
        return r;
    }
    cluster.requests().record(verb, dry_run);
    match fault {
        Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
        Some(Fault::ServerErrors) => {
            return error_response(&ApiError::internal(
                "Internal error occurred: simulated server error",
            ));
        }
        Some(Fault::Unreachable | Fault::LaggingCustomResources(_)) | None => {}
    }
    if *fleet.shutdown.borrow() {
        return error_response(&ApiError::unavailable("the simulator is shutting down"));
    }
    let req = ApiRequest {
        method,
        route,
        query,
        headers,
        body,
    };
    api::serve(fleet.clone(), cluster, req).await
}

/// Body of `POST /admin/clusters/{name}/fault`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum FaultRequest {
    Unreachable,
    Latency { millis: u64 },
    ServerErrors,
    LaggingCustomResources { millis: u64 },
}

/// Body of `POST /admin/clusters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddCluster {
    name: String,
}

fn admin_error(code: StatusCode, message: String) -> Response {
    (code, axum::Json(json!({"error": message}))).into_response()
}

async fn list_clusters(State(fleet): State<Arc<Fleet>>) -> Response {
    let clusters: Vec<serde_json::Value> = fleet
        .names()
        .iter()
        .filter_map(|n| fleet.get(n))
        .map(|c| json!({"name": c.name(), "url": fleet.cluster_url(c.name()), "fault": fault_json(c.fault())}))
        .collect();
    json_response(200, &json!({"clusters": clusters}), &[])
}

fn fault_json(fault: Option<Fault>) -> serde_json::Value {
    match fault {
        None => json!(null),
        Some(Fault::Unreachable) => json!({"type": "Unreachable"}),
        Some(Fault::Latency(d)) => json!({"type": "Latency", "millis": d.as_millis() as u64}),
        Some(Fault::ServerErrors) => json!({"type": "ServerErrors"}),
        Some(Fault::LaggingCustomResources(d)) => {
            json!({"type": "LaggingCustomResources", "millis": d.as_millis() as u64})
        }
    }
}

/// `GET /admin/clusters/{name}`: the cluster, its object count and the requests it served.
async fn cluster_detail(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>) -> Response {
    let Some(c) = fleet.get(&name) else {
        return admin_error(StatusCode::NOT_FOUND, format!("no cluster named {name:?}"));
    };
    let objects = c.read().object_count();
    json_response(
        200,
        &json!({
            "name": c.name(),
            "url": fleet.cluster_url(c.name()),
            "fault": fault_json(c.fault()),
            "objects": objects,
            "requests": c.requests().snapshot(),
        }),
        &[],
    )
}

/// `DELETE /admin/clusters/{name}`: decommissions the cluster.
async fn remove_cluster(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>) -> Response {
    if fleet.remove(&name) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(StatusCode::NOT_FOUND, format!("no cluster named {name:?}"))
    }
}

async fn add_cluster(State(fleet): State<Arc<Fleet>>, body: axum::body::Bytes) -> Response {
    let req: AddCluster = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"name\": \"<dns-1123 label>\"}}: {e}"),
            );
        }
    };
    match fleet.add(&req.name) {
        Ok(c) => json_response(
            201,
            &json!({"name": c.name(), "url": fleet.cluster_url(c.name())}),
            &[],
        ),
        Err(e @ crate::SimError::ClusterExists(_)) => {
            admin_error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e) => admin_error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

async fn set_fault(
    State(fleet): State<Arc<Fleet>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"type\": \"Unreachable\"}}, {{\"type\": \"Latency\", \"millis\": N}}, {{\"type\": \"ServerErrors\"}} or {{\"type\": \"LaggingCustomResources\", \"millis\": N}}: {e}"
                ),
            );
        }
    };
    let fault = match req {
        FaultRequest::Unreachable => Fault::Unreachable,
        FaultRequest::Latency { millis } => Fault::Latency(Duration::from_millis(millis)),
        FaultRequest::ServerErrors => Fault::ServerErrors,
        FaultRequest::LaggingCustomResources { millis } => {
            Fault::LaggingCustomResources(Duration::from_millis(millis))
        }
    };
    match fleet.get(&name) {
        Some(c) => {
            c.set_fault(Some(fault));
            StatusCode::NO_CONTENT.into_response()
        }
        None => admin_error(StatusCode::NOT_FOUND, format!("no cluster named {name:?}")),
    }
}

async fn clear_fault(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>) -> Response {
    match fleet.get(&name) {
        Some(c) => {
            c.set_fault(None);
            StatusCode::NO_CONTENT.into_response()
        }
        None => admin_error(StatusCode::NOT_FOUND, format!("no cluster named {name:?}")),
    }
}

async fn compact(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>) -> Response {
    match fleet.get(&name) {
        Some(c) => {
            c.write(|s| s.compact());
            StatusCode::NO_CONTENT.into_response()
        }
        None => admin_error(StatusCode::NOT_FOUND, format!("no cluster named {name:?}")),
    }
}
