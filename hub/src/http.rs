//! The HTTP listener: webhooks that trigger a fetch, the dashboard with its sign-in, JSON and
//! actions, Prometheus metrics and a liveness probe. Served by every node from its own replica.
//!
//! Everything under `/api/` needs an API token (a session cookie or `Authorization: Bearer`)
//! unless the hub runs `--insecure`; `/metrics` and `/healthz` are for scrapers and probes and
//! need none, as Argo CD's and Flux's are.

use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use flotilla_consensus::transport::listener::ListenerLimits;
use flotilla_consensus::transport::net;

use crate::context::HubContext;

mod actions;
pub mod dashboard;
mod detail;
mod live;
pub mod session;
pub mod webhook;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpContext {
    /// The hub.
    pub hub: HubContext,
    /// Shared secret webhooks must be signed with; `None` accepts every webhook.
    pub webhook_secret: Option<String>,
    /// The webhook deliveries this node acted on recently, to ignore them when replayed.
    pub deliveries: Arc<webhook::Deliveries>,
}

/// The HTTP routes.
pub fn router(context: HttpContext) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/api/status", get(dashboard::status))
        .route("/api/watch", get(live::watch))
        .route(
            "/api/session",
            get(session::current)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .route("/api/clusters/{name}", get(detail::cluster))
        .route("/api/commits/{commit}", get(detail::commit))
        .route("/api/stages/{stage}", get(detail::stage))
        .route("/api/stages/{stage}/history", get(actions::history))
        .route("/api/stages/{stage}/{action}", post(actions::act))
        .route("/webhook", post(webhook::receive))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(context)
}

/// Serves the HTTP routes on `listener` with `limits` until `stop` is cancelled: HTTPS with
/// `tls`, plain HTTP under `--insecure`.
pub async fn serve(
    context: HttpContext,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: ListenerLimits,
    stop: CancellationToken,
) {
    // A request that outlives the limit is answered here: the listener only enforces it.
    let routes = router(context).layer(
        tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                StatusCode::REQUEST_TIMEOUT
            }))
            .timeout(limits.request_timeout),
    );
    net::serve_http(routes, listener, tls, limits, stop).await;
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(context): State<HttpContext>) -> Response {
    let stats = context.hub.sync.stats();
    let streams = crate::metrics::StreamCounts {
        live: stats.streams_live,
        opened: stats.streams_opened,
        refused: stats.streams_refused,
        timed_out: stats.streams_timed_out,
        bundles_sent: stats.bundles_sent,
        bundle_bytes_sent: stats.bundle_bytes_sent,
        reports_received: stats.reports_received,
    };
    let fleet = context.hub.status();
    let scraped = context
        .hub
        .metrics
        .scrape(
            &context.hub.node,
            Some(&fleet),
            streams,
            context.hub.clock.now(),
        )
        .await;
    match scraped {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}
