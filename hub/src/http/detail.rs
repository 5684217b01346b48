//! Detail reads for the dashboard: one cluster, one stage, one commit's timeline. Each needs a
//! token like every `/api/` read, and shows only what the caller may view: a cluster or stage
//! it may not view reads as unknown (404), a timeline holds only its stages.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};

use super::HttpContext;
use super::session::{HttpError, reader};
use crate::api::caller::Caller;
use crate::status::{ClusterDetail, StageDetail, Timeline, TimelineError};

/// Whether `caller` may view what belongs to `stage` ([`Caller::may_view`]).
fn may_view(caller: &Caller, stage: Option<&str>) -> bool {
    caller.may_view(stage)
}

fn not_found(what: String) -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, what)
}

/// `GET /api/clusters/{name}`.
pub(super) async fn cluster(
    State(context): State<HttpContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<ClusterDetail>, HttpError> {
    let caller = reader(&context.hub, &headers)?;
    context
        .hub
        .cluster_detail(&name)
        .filter(|detail| may_view(&caller, detail.status.stage.as_deref()))
        .map(Json)
        .ok_or_else(|| {
            not_found(format!(
                "cluster '{name}' is not registered (or not on a stage you may view)"
            ))
        })
}

/// `GET /api/stages/{stage}`.
pub(super) async fn stage(
    State(context): State<HttpContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<StageDetail>, HttpError> {
    let caller = reader(&context.hub, &headers)?;
    if !may_view(&caller, Some(&name)) {
        return Err(not_found(format!(
            "stage '{name}' is unknown (or not one you may view)"
        )));
    }
    let mut detail = context
        .hub
        .stage_detail(&name)
        .ok_or_else(|| not_found(format!("stage '{name}' is unknown")))?;
    detail
        .pipeline
        .retain(|stage| may_view(&caller, Some(stage)));
    Ok(Json(detail))
}

/// The page of a timeline's clusters: `offset`, `limit` (none or 0: all).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Page {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// `GET /api/commits/{commit}`: the commit (a prefix of at least 4 hexadecimal digits) across
/// the fleet.
pub(super) async fn commit(
    State(context): State<HttpContext>,
    headers: HeaderMap,
    Path(prefix): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Timeline>, HttpError> {
    let caller = reader(&context.hub, &headers)?;
    let Query(page) = page.map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = page.limit.filter(|limit| *limit > 0);
    context
        .hub
        .timeline(
            &prefix,
            |stage| may_view(&caller, stage),
            page.offset,
            limit,
        )
        .map(Json)
        .map_err(|e| match e {
            TimelineError::Malformed(_) => HttpError::new(StatusCode::BAD_REQUEST, e.to_string()),
            TimelineError::Unknown(_) => not_found(e.to_string()),
            TimelineError::Ambiguous(..) => HttpError::new(StatusCode::CONFLICT, e.to_string()),
        })
}
