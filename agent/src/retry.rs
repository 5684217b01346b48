//! Calls to the API server, retried with backoff when the failure is transient.
//!
//! Server errors (5xx), throttling (429), timeouts and connection failures are retried; any
//! other answer from the API server is final and is reported with its message. One 500 is
//! final too: a real API server answers a server-side apply whose object does not fit its
//! schema (a string where an integer belongs, an undeclared field) with 500 "failed to create
//! typed patch object" rather than 422, and retrying it only delays the report.

use std::future::Future;
use std::time::Duration;

/// How API calls are retried and how long each may take.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per call, including the first.
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub initial_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Longest a single request may take before it counts as a timeout.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based): exponential, capped.
    pub fn delay(&self, retry: u32) -> Duration {
        self.initial_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay)
    }
}

/// A failed API call.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// The API server answered with an error status.
    #[error("{message}")]
    Status {
        /// HTTP status code.
        code: u16,
        /// Machine-readable reason, e.g. `Invalid`, `NotFound`.
        reason: String,
        /// The API server's message.
        message: String,
    },
    /// The API server could not be reached, timed out or kept failing.
    #[error("{detail} (gave up after {attempts} attempts)")]
    Unavailable {
        /// The last failure.
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The API server's answer could not be understood.
    #[error("unexpected answer from the API server: {0}")]
    Unexpected(String),
}

impl ApiError {
    /// Whether the failure may pass by itself, so trying again later makes sense.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unavailable { .. } => true,
            ApiError::Status { code, message, .. } => is_transient_status(*code, message),
            ApiError::Unexpected(_) => false,
        }
    }

    /// Whether the API server said the object (or its namespace) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { code: 404, .. })
    }

    /// Whether the API server said the object already exists or changed meanwhile.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Status { code: 409, .. })
    }
}

/// What a real API server's 500 says when a server-side apply patch does not fit the schema.
const TYPED_PATCH_FAILURE: &str = "failed to create typed patch object";

fn is_transient_status(code: u16, message: &str) -> bool {
    (code == 429 || code >= 500) && !message.contains(TYPED_PATCH_FAILURE)
}

/// Whether a client error is worth retrying.
fn transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => is_transient_status(status.code, &status.message),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

fn final_error(error: kube::Error, attempts: u32) -> ApiError {
    match error {
        kube::Error::Api(status) if !is_transient_status(status.code, &status.message) => {
            ApiError::Status {
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            }
        }
        kube::Error::Api(status) => ApiError::Unavailable {
            detail: format!(
                "API server answered {} {}: {}",
                status.code, status.reason, status.message
            ),
            attempts,
        },
        error if transient(&error) => ApiError::Unavailable {
            detail: format!("cannot reach the API server: {}", root_cause(&error)),
            attempts,
        },
        error => ApiError::Unexpected(root_cause(&error)),
    }
}

/// The innermost error's text: hyper and tower wrap the useful part several layers deep.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// Runs `call` until it succeeds, fails for good, or runs out of attempts.
pub(crate) async fn retrying<T, F, Fut>(policy: &RetryPolicy, mut call: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let attempts = policy.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match tokio::time::timeout(policy.request_timeout, call()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) if transient(&error) && attempt < attempts => None,
            Ok(Err(error)) => Some(final_error(error, attempt)),
            Err(_) if attempt < attempts => None,
            Err(_) => Some(ApiError::Unavailable {
                detail: format!(
                    "no answer from the API server within {:.1}s",
                    policy.request_timeout.as_secs_f64()
                ),
                attempts: attempt,
            }),
        };
        if let Some(error) = error {
            return Err(error);
        }
        tokio::time::sleep(policy.delay(attempt - 1)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: "R".into(),
            message: format!("m{code}"),
            ..Default::default()
        }))
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            request_timeout: Duration::from_millis(50),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(0), Duration::from_millis(200));
        assert_eq!(policy.delay(2), Duration::from_millis(800));
        assert_eq!(policy.delay(10), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_reported_as_unavailable() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retrying(&fast(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(status(500)) }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let error = result.expect_err("keeps failing");
        assert!(error.is_transient());
        assert!(error.to_string().contains("500"), "{error}");
        assert!(error.to_string().contains("3 attempts"), "{error}");
    }

    #[tokio::test]
    async fn a_transient_failure_followed_by_success_succeeds() {
        let calls = AtomicU32::new(0);
        let result = retrying(&fast(), || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n == 0 { Err(status(503)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result, Ok(1));
    }

    #[tokio::test]
    async fn rejections_are_final_and_keep_the_api_message() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retrying(&fast(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(status(422)) }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let error = result.expect_err("rejected");
        assert!(!error.is_transient());
        assert_eq!(error.to_string(), "m422");
    }

    #[tokio::test]
    async fn a_patch_that_does_not_fit_the_schema_is_final_though_answered_500() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retrying(&fast(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(kube::Error::Api(Box::new(kube::core::Status {
                    code: 500,
                    message: "failed to create typed patch object (app/web; apps/v1, \
                              Kind=Deployment): .spec.replicas: expected numeric (int or \
                              float), got string"
                        .into(),
                    ..Default::default()
                })))
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let error = result.expect_err("rejected");
        assert!(!error.is_transient());
        assert!(error.to_string().contains(".spec.replicas"), "{error}");
    }

    #[tokio::test]
    async fn slow_calls_time_out_and_are_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retrying(&fast(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending()
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(
            result
                .expect_err("times out")
                .to_string()
                .contains("no answer")
        );
    }
}
