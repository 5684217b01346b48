//! Whether the agent reaches its cluster's API server: a probe of `/readyz` every
//! [`PROBE_INTERVAL`], which every authenticated client may read (Kubernetes'
//! `system:public-info-viewer`). Two failures in a row make the cluster unreachable, so a lone
//! slow answer does not flap it; one success makes it reachable again. The hub shows it beside
//! the agent's own liveness, within about ten seconds of the API failing.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use flotilla_core::clock::Clock;

/// How often the API server is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Failures in a row that make the cluster unreachable.
const FAILURES: u32 = 2;

/// Whether the API server answers, since when, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiReachability {
    /// Whether `/readyz` answered OK.
    pub reachable: bool,
    /// Since when, in milliseconds since the Unix epoch.
    pub since_ms: i64,
    /// While unreachable: the probe's error.
    pub error: String,
}

/// Starts probing; the receiver sees every change.
pub(crate) fn start(
    client: Client,
    clock: Arc<dyn Clock>,
) -> (watch::Receiver<ApiReachability>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(ApiReachability {
        reachable: true,
        since_ms: clock.now().signed_millis(),
        error: String::new(),
    });
    let task = tokio::spawn(async move {
        let mut failures = 0;
        let mut interval = tokio::time::interval(PROBE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let outcome = probe(&client).await;
            let reachable = tx.borrow().reachable;
            match outcome {
                Ok(()) => {
                    failures = 0;
                    if !reachable {
                        tracing::info!("the cluster's API server answers again");
                        let _ = tx.send(ApiReachability {
                            reachable: true,
                            since_ms: clock.now().signed_millis(),
                            error: String::new(),
                        });
                    }
                }
                Err(error) => {
                    failures += 1;
                    if reachable && failures >= FAILURES {
                        tracing::warn!(%error, "the cluster's API server is unreachable");
                        let _ = tx.send(ApiReachability {
                            reachable: false,
                            since_ms: clock.now().signed_millis(),
                            error,
                        });
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    (rx, task)
}

/// One probe of `/readyz`.
async fn probe(client: &Client) -> Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(PROBE_TIMEOUT, client.request_text(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("GET /readyz: {error}")),
        Err(_) => Err(format!("GET /readyz: no answer within {PROBE_TIMEOUT:?}")),
    }
}
