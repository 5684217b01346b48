//! The dashboard's actions on a stage — approve, promote, pause, resume, roll back — as
//! `POST /api/stages/{stage}/{action}` with a JSON body. Each is the Admin API call of the same
//! name made with the caller's own token, so it is refused, checked and audited exactly as
//! `flotilla` would be; the page adds only the confirmation and the reason, which is required.
//! The body must be JSON, and a write carried by the session cookie needs the CSRF header.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use flotilla_proto::v1::admin_server::Admin;
use flotilla_proto::v1::{
    AdminPromoteRequest, AdminRollbackRequest, AdminStageActionReply, AdminStageActionRequest,
    AdminStageHistoryRequest,
};
use serde::{Deserialize, Serialize};
use tonic::{Code, Request, Status};

use super::HttpContext;
use super::session::{HttpError, csrf_if_cookie, is_json, token};
use crate::api::AdminService;
use crate::api::caller::identify_token;
use crate::auth::Action;

/// The body of an action.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ActionBody {
    /// Why: recorded in the audit log. Required.
    reason: String,
    /// promote: the commit (empty: what the upstream stage passed); rollback: the commit to go
    /// back to (empty: where the active rollout began, else the previous pin).
    revision: String,
    /// approve, pause, resume: the rollout the user reviewed (0: the stage's active one).
    rollout: u64,
    /// promote: promote a revision the upstream stage has not passed (admins only).
    force: bool,
}

/// What an action did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ActionReply {
    stage: String,
    /// The commit the stage is pinned to afterwards.
    pinned_revision: String,
    /// What happened, for people.
    message: String,
}

impl From<AdminStageActionReply> for ActionReply {
    fn from(reply: AdminStageActionReply) -> ActionReply {
        ActionReply {
            stage: reply.stage,
            pinned_revision: reply.pinned_revision,
            message: reply.message,
        }
    }
}

fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Status> for HttpError {
    fn from(status: Status) -> HttpError {
        HttpError::new(http_status(status.code()), status.message().to_owned())
    }
}

/// An Admin API request carrying the caller's token, as `flotilla` sends it.
fn authorized<T>(message: T, bearer: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = bearer.and_then(|bearer| bearer.parse().ok()) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// `POST /api/stages/{stage}/{action}`.
pub(super) async fn act(
    State(context): State<HttpContext>,
    Path((stage, action)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<ActionReply>, HttpError> {
    // JSON only: a cross-site page cannot send it without a preflight this listener never
    // answers, which matters on an insecure hub, where no token is needed.
    if !is_json(&headers) {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the action as JSON (Content-Type: application/json)",
        ));
    }
    // A write carried by the session cookie needs its CSRF value; who the caller is, and
    // whether it may, is the Admin API call's to decide and audit (refusals included).
    csrf_if_cookie(&method, &headers)?;
    let body: ActionBody = serde_json::from_slice(&body).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body: {e}; send JSON {{\"reason\": \"…\"}} (with \"revision\" for promote \
                 and rollback, \"rollout\" for approve, pause and resume)"
            ),
        )
    })?;
    let reason = body.reason.trim().to_owned();
    let needs = match action.as_str() {
        "approve" => Some(Action::Promote),
        "pause" | "resume" => Some(Action::Pause),
        "promote" if body.force => Some(Action::ForcePromote),
        "promote" => Some(Action::Promote),
        "rollback" => Some(Action::Rollback),
        _ => None,
    };
    // Without a reason an action is refused as bad input — only for a caller who may take it:
    // anyone else gets the Admin API's refusal, audited.
    let may = needs.is_some_and(|needs| {
        identify_token(&context.hub, token(&headers))
            .is_ok_and(|caller| caller.can(needs, Some(&stage)))
    });
    if reason.is_empty() && may {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "give a reason: it is recorded in the audit log",
        ));
    }
    let admin = AdminService::new(context.hub.clone());
    let bearer = token(&headers).map(|token| format!("Bearer {token}"));
    let bearer = bearer.as_deref();
    let step = AdminStageActionRequest {
        stage: stage.clone(),
        reason: reason.clone(),
        rollout: body.rollout,
    };
    let reply = match action.as_str() {
        "approve" => admin.approve(authorized(step, bearer)).await,
        "pause" => admin.pause(authorized(step, bearer)).await,
        "resume" => admin.resume(authorized(step, bearer)).await,
        "promote" => {
            let request = AdminPromoteRequest {
                stage,
                revision: body.revision,
                force: body.force,
                reason,
            };
            admin.promote(authorized(request, bearer)).await
        }
        "rollback" => {
            let request = AdminRollbackRequest {
                stage,
                to_revision: body.revision,
                reason,
            };
            admin.rollback(authorized(request, bearer)).await
        }
        other => {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                format!("no action `{other}`; use approve, promote, pause, resume or rollback"),
            ));
        }
    }?;
    Ok(Json(reply.into_inner().into()))
}

/// One pin of a stage's history, for the page's revision picker.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Pin {
    revision: String,
    /// track, promote, forcePromote or rollback.
    change: String,
    by: String,
    reason: String,
    /// Milliseconds since the Unix epoch.
    at: i64,
    rollout_status: String,
}

/// A stage's pins and the revisions that passed or failed it, newest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct History {
    stage: String,
    pinned_revision: String,
    pins: Vec<Pin>,
    passed_revisions: Vec<String>,
    failed_revisions: Vec<String>,
}

/// `GET /api/stages/{stage}/history`: the Admin API's stage history with the caller's token
/// (a viewer of the stage may read it), for the page to offer revisions to roll back to.
pub(super) async fn history(
    State(context): State<HttpContext>,
    Path(stage): Path<String>,
    headers: HeaderMap,
) -> Result<Json<History>, HttpError> {
    let admin = AdminService::new(context.hub.clone());
    let bearer = token(&headers).map(|token| format!("Bearer {token}"));
    let reply = admin
        .stage_history(authorized(
            AdminStageHistoryRequest { stage },
            bearer.as_deref(),
        ))
        .await?
        .into_inner();
    Ok(Json(History {
        stage: reply.stage,
        pinned_revision: reply.pinned_revision,
        pins: reply
            .pins
            .into_iter()
            .map(|p| Pin {
                revision: p.revision,
                change: p.change,
                by: p.by,
                reason: p.reason,
                at: p.at_ms,
                rollout_status: p.rollout_status,
            })
            .collect(),
        passed_revisions: reply.passed_revisions,
        failed_revisions: reply.failed_revisions,
    }))
}
