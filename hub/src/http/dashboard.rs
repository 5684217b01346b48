//! The dashboard: one self-contained page (inline CSS and script, nothing to build). It asks
//! for an API token (sign-in, `session.rs`), then follows the fleet through server-sent events
//! (`live.rs`) and draws the overview, the clusters needing attention and a filtered, sorted
//! page of clusters, with the stage actions the signed-in role allows (`actions.rs`); its
//! detail views (a cluster, a stage, a bundle across the fleet, a commit's timeline) read
//! `detail.rs` and `GET /api/status`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;

use super::HttpContext;
use super::session::{HttpError, reader};
use crate::api::view;
use crate::state::health::{Health, SyncState};
use crate::status::{ClusterQuery, FleetStatus, Sort};

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// `GET /`.
pub(super) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Which clusters `GET /api/status` lists: `stage`, `cluster` (a name, or a prefix ending in
/// `*`), `selector` (`key=value,…`, every one must match), `problems=true`, `bundle` (clusters
/// with it, each shown with it alone), `sync` and `health` (a bundle in that state), `sort`
/// (`name`, `problems`, `stage`, `lastSeen`), `offset`, `limit`. None: every cluster.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct StatusParams {
    stage: Option<String>,
    cluster: Option<String>,
    selector: Option<String>,
    #[serde(default)]
    problems: bool,
    bundle: Option<String>,
    sync: Option<String>,
    health: Option<String>,
    #[serde(default)]
    sort: Sort,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

impl StatusParams {
    pub(crate) fn query(self) -> Result<ClusterQuery, String> {
        let mut labels = std::collections::BTreeMap::new();
        for pair in self.selector.iter().flat_map(|s| s.split(',')) {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("selector `{pair}`: write key=value"))?;
            labels.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        let sync = match self.sync.filter(|s| !s.is_empty()) {
            None => None,
            Some(sync) => Some(
                SyncState::ALL
                    .into_iter()
                    .find(|s| s.as_str() == sync)
                    .ok_or_else(|| {
                        format!(
                            "sync `{sync}`: write one of {}",
                            SyncState::ALL.map(SyncState::as_str).join(", ")
                        )
                    })?,
            ),
        };
        let health = match self.health.filter(|h| !h.is_empty()) {
            Some(health) if health.parse::<Health>().is_err() => {
                return Err(format!(
                    "health `{health}`: write one of Healthy, Progressing, Degraded, \
                     Suspended, Missing, Unknown"
                ));
            }
            health => health,
        };
        Ok(ClusterQuery {
            stage: self.stage.filter(|s| !s.is_empty()),
            cluster: self.cluster.filter(|s| !s.is_empty()),
            labels,
            problems: self.problems,
            bundle: self.bundle.filter(|b| !b.is_empty()),
            sync,
            health,
            sort: self.sort,
            offset: self.offset,
            // 0 is "all", as for the Admin API and the CLI.
            limit: self.limit.filter(|limit| *limit > 0),
        })
    }
}

/// `GET /api/status`: the fleet status of this node's replica as JSON, as much of it as the
/// caller may view, with the clusters the query parameters select (`clusterPage` says which);
/// a bad parameter is a 400 naming it, no token a 401.
pub(super) async fn status(
    State(context): State<HttpContext>,
    headers: HeaderMap,
    params: Result<Query<StatusParams>, QueryRejection>,
) -> Result<Json<FleetStatus>, HttpError> {
    let caller = reader(&context.hub, &headers)?;
    let bad = |why: String| HttpError::new(StatusCode::BAD_REQUEST, why);
    let Query(params) = params.map_err(|e| bad(e.body_text()))?;
    let query = params.query().map_err(bad)?;
    // A viewer of some stages sees those stages only, as over the Admin API.
    Ok(Json(view(&caller, &context.hub.status(), &query)))
}
