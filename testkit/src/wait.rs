//! Waiting for a condition that a real system reaches in its own time.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;

/// How long end-to-end waits last before a test fails: generous, since debug builds of several
/// processes share a small machine; a passing test goes on as soon as the condition holds.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// What a probe saw.
pub enum Probe<T> {
    /// The condition holds; here is what the test wanted.
    Done(T),
    /// Not yet: what was seen instead, for the error if it never holds.
    NotYet(String),
}

/// Runs `probe` every 100 ms until it is done, for up to `timeout`. A probe's error counts as
/// "not yet" (a process may still be starting); the failure names `what` and the last thing
/// seen.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Probe<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Probe::Done(value)) => return Ok(value),
            Ok(Probe::NotYet(seen)) => seen,
            Err(e) => format!("error: {e:#}"),
        };
        if tokio::time::Instant::now() > deadline {
            bail!("waited {timeout:?} for {what}; last seen:\n{last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
