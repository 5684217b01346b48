//! Signing in to the dashboard, and who calls the HTTP API.
//!
//! A user signs in with an API token (`flotilla token create`); the hub answers with two
//! cookies: the session (`flotilla_session`: the token itself, `HttpOnly; Secure;
//! SameSite=Strict`, so scripts never read it and other sites never send it) and a CSRF value
//! (`flotilla_csrf`, readable by the page). Every request is checked against this node's replica
//! as an Admin API call is — a revoked or expired token stops working at once, on every node,
//! and a session survives a failover because nothing about it is stored. A write that
//! authenticates with the session cookie must echo the CSRF value in `X-Flotilla-CSRF`; one
//! with `Authorization: Bearer` needs none (no browser sends that header by itself).

use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::HttpContext;
use crate::api::caller::{Caller, Refused, identify_token};
use crate::auth::{self, Action};
use crate::context::HubContext;

/// The session cookie: the API token the user signed in with.
pub const SESSION_COOKIE: &str = "flotilla_session";
/// The CSRF cookie: a random value the page echoes in [`CSRF_HEADER`] on writes.
pub const CSRF_COOKIE: &str = "flotilla_csrf";
/// The header a cookie-authenticated write carries the CSRF value in.
pub const CSRF_HEADER: &str = "x-flotilla-csrf";
/// How long a browser keeps a session (the token's own expiry still applies).
const SESSION_SECONDS: u64 = 12 * 60 * 60;

/// An HTTP API error: a status and a message for people, as JSON `{"message": …}`.
#[derive(Debug)]
pub struct HttpError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to do.
    pub message: String,
}

impl HttpError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }
}

impl From<Refused> for HttpError {
    fn from(refused: Refused) -> HttpError {
        let status = match refused {
            Refused::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refused::Denied { .. } => StatusCode::FORBIDDEN,
        };
        HttpError::new(status, refused.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// `Authorization: Bearer`.
    Header,
    /// The session cookie.
    Cookie,
    /// Nothing (an insecure hub, or a refused request).
    Nothing,
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The API token a request presents, and how: the `Authorization` header first, then the
/// session cookie.
fn presented(headers: &HeaderMap) -> (Option<&str>, By) {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(auth::bearer_token);
    match (header, cookie(headers, SESSION_COOKIE)) {
        (Some(token), _) => (Some(token), By::Header),
        (None, Some(token)) => (Some(token), By::Cookie),
        (None, None) => (None, By::Nothing),
    }
}

/// The token a request presents, if any, for calls made on its behalf.
pub fn token(headers: &HeaderMap) -> Option<&str> {
    presented(headers).0
}

/// Identifies the caller of a read: an API token in the `Authorization` header or the session
/// cookie, checked as the Admin API checks it. On an insecure hub everyone may read.
pub fn reader(hub: &HubContext, headers: &HeaderMap) -> Result<Caller, HttpError> {
    let caller = identify_token(hub, presented(headers).0)?;
    Ok(caller)
}

/// A write that authenticates with the session cookie must carry the CSRF cookie's value in
/// [`CSRF_HEADER`]; one with a bearer header (or no token) needs none.
pub fn csrf_if_cookie(method: &Method, headers: &HeaderMap) -> Result<(), HttpError> {
    let (_, by) = presented(headers);
    if by == By::Cookie && !matches!(*method, Method::GET | Method::HEAD) {
        check_csrf(headers)?;
    }
    Ok(())
}

fn check_csrf(headers: &HeaderMap) -> Result<(), HttpError> {
    let expected = cookie(headers, CSRF_COOKIE);
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok());
    match (expected, sent) {
        // blake3's hashes compare in constant time.
        (Some(expected), Some(sent))
            if blake3::hash(expected.as_bytes()) == blake3::hash(sent.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "a write from a signed-in page must carry the value of the flotilla_csrf cookie in \
             the X-Flotilla-CSRF header; reload the page, or call with Authorization: Bearer",
        )),
    }
}

/// Whether a request's body is JSON: a cross-site form or `no-cors` fetch cannot send that
/// without a preflight, which this listener never answers.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// `POST /api/session`'s body.
#[derive(Debug, Deserialize)]
pub(super) struct SignIn {
    token: String,
}

/// Who is signed in, and what they may do, for the page to show only what the role allows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Session {
    /// Whether a usable token came with the request; the rest is empty when not.
    signed_in: bool,
    /// Why a token that came was refused (revoked, expired, unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
    /// `token:NAME`, or the insecure hub's anonymous admin.
    name: String,
    /// The hub checks no tokens.
    insecure: bool,
    /// The stages the caller may view, with what it may do on each.
    stages: Vec<StageGrants>,
    /// Whether it may act on the fleet as a whole (clusters, tokens, the group).
    fleet_admin: bool,
}

/// What a caller may do on one stage.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StageGrants {
    stage: String,
    /// Approve a waiting rollout, promote a revision the upstream stage passed.
    promote: bool,
    /// Promote a revision the upstream stage has not passed.
    force_promote: bool,
    /// Pause or resume the stage's rollout.
    pause: bool,
    /// Roll the stage back.
    rollback: bool,
}

fn session_of(hub: &HubContext, caller: &Caller) -> Session {
    let state = hub.node.state();
    let stages = state
        .stages
        .keys()
        .filter(|stage| caller.can(Action::View, Some(stage)))
        .map(|stage| StageGrants {
            stage: stage.clone(),
            promote: caller.can(Action::Promote, Some(stage)),
            force_promote: caller.can(Action::ForcePromote, Some(stage)),
            pause: caller.can(Action::Pause, Some(stage)),
            rollback: caller.can(Action::Rollback, Some(stage)),
        })
        .collect();
    Session {
        signed_in: true,
        refused: None,
        name: caller.name.clone(),
        insecure: hub.insecure,
        stages,
        fleet_admin: caller.can(Action::ManageHub, None),
    }
}

/// `GET /api/session`: who is signed in, or `signedIn: false` (with why a token that came was
/// refused) — the page asks on load, so nobody signed in is an answer, not an error. It reveals
/// nothing of the fleet.
pub(super) async fn current(
    State(context): State<HttpContext>,
    headers: HeaderMap,
) -> Json<Session> {
    let (token, _) = presented(&headers);
    Json(match identify_token(&context.hub, token) {
        Ok(caller) => session_of(&context.hub, &caller),
        Err(refused) => Session {
            signed_in: false,
            refused: token.map(|_| refused.to_string()),
            name: String::new(),
            insecure: false,
            stages: Vec::new(),
            fleet_admin: false,
        },
    })
}

/// `POST /api/session` with `{"token": "flt_…"}`: checks the token and sets the session and
/// CSRF cookies. The body must be JSON, which a cross-site form cannot send.
pub(super) async fn sign_in(
    State(context): State<HttpContext>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    if !is_json(&headers) {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "sign in with a JSON body: {\"token\": \"flt_…\"}",
        ));
    }
    let SignIn { token } = serde_json::from_slice(&body).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            format!("sign in with a JSON body {{\"token\": \"flt_…\"}}: {e}"),
        )
    })?;
    let token = token.trim();
    // A token is ASCII without separators; anything else could not be stored in a cookie.
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "that is not an API token (flt_…); `flotilla token create` makes one",
        ));
    }
    let caller = identify_token(&context.hub, Some(token))?;
    let session = session_of(&context.hub, &caller);
    let mut csrf = [0u8; 32];
    rand::rng().fill_bytes(&mut csrf);
    let csrf = hex::encode(csrf);
    let mut response = Json(session).into_response();
    let cookies = response.headers_mut();
    for value in [
        format!(
            "{SESSION_COOKIE}={token}; Path=/; Max-Age={SESSION_SECONDS}; HttpOnly; Secure; \
             SameSite=Strict"
        ),
        format!("{CSRF_COOKIE}={csrf}; Path=/; Max-Age={SESSION_SECONDS}; Secure; SameSite=Strict"),
    ] {
        let value = HeaderValue::from_str(&value).map_err(|_| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "that token cannot be kept in a cookie",
            )
        })?;
        cookies.append(SET_COOKIE, value);
    }
    Ok(response)
}

/// `DELETE /api/session`: forgets the session in this browser.
pub(super) async fn sign_out() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        let value = format!("{name}=; Path=/; Max-Age=0; Secure; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::http::header::{AUTHORIZATION, COOKIE};
    use axum::http::{HeaderMap, HeaderValue};

    use super::{By, cookie, presented};

    #[test]
    fn reads_the_token_from_the_header_first_then_the_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers), (None, By::Nothing));
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; flotilla_session=flt_x_y ; other=2"),
        );
        assert_eq!(presented(&headers), (Some("flt_x_y"), By::Cookie));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer flt_h_z"));
        assert_eq!(presented(&headers), (Some("flt_h_z"), By::Header));
        headers.append(COOKIE, HeaderValue::from_static("flotilla_csrf=abc"));
        assert_eq!(cookie(&headers, "flotilla_csrf"), Some("abc"));
        assert_eq!(cookie(&headers, "flotilla_sessio"), None);
    }
}
