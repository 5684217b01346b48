//! The dashboard: one self-contained page (inline CSS and script, nothing to build) that polls
//! `/api/status` every two seconds and draws stages × clusters × bundles colored by health, the
//! latest revision and its error, rollouts and recent events.

use axum::Json;
use axum::extract::State;
use axum::response::Html;

use super::HttpContext;
use crate::status::FleetStatus;

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// `GET /`.
pub(super) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// `GET /api/status`: the fleet status of this node's replica as JSON.
pub(super) async fn status(State(context): State<HttpContext>) -> Json<FleetStatus> {
    Json(context.hub.status())
}
