//! The source controller: keeps the leader's mirror of the Git repository up to date and records
//! each new head of the tracked branch as a revision.
//!
//! It fetches when its run starts (a new leader catches up at once), every poll interval, and
//! whenever a `RequestFetch` command (a webhook on any node) raises the source's request count.
//! A fetch moves the tracked ref by force, so a force-pushed branch is followed like any other
//! push. Only changes are proposed: a new head (`RecordFetch`), or a new fetch error
//! (`RecordFetchError`, which leaves the head and every cluster as they are).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::controller::{Controller, ControllerContext, Wake};
use crate::metrics::Metrics;
use crate::state::Command;

mod mirror;
#[cfg(test)]
mod tests;

pub use mirror::{MirrorError, SourceMirror};

/// Name of the source the hub follows when none is given.
pub const DEFAULT_SOURCE: &str = "origin";
/// Default branch.
pub const DEFAULT_BRANCH: &str = "main";
/// Default time between polls.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// The repository a hub follows.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Name in the replicated state (revisions are `name@commit`).
    pub name: String,
    /// Repository URL: `https://…`, `ssh://…`, `git@host:path` or `file://…`.
    pub url: String,
    /// The branch followed.
    pub branch: String,
    /// Time between polls; webhooks trigger a fetch sooner.
    pub poll_interval: Duration,
    /// How to authenticate.
    pub credentials: GitCredentials,
    /// Bounds and confinement of every render of this source's commits.
    pub render_limits: flotilla_core::Limits,
    /// The kustomize and helm its renders run.
    pub render_tools: flotilla_core::Tools,
    /// The chart repositories and registries its chart bundles may fetch from.
    pub chart_sources: Vec<crate::controller::charts::ChartSource>,
    /// Longest one chart fetch may take.
    pub chart_fetch_timeout: Duration,
}

impl SourceConfig {
    /// What status shows of it (no credentials).
    pub fn view(&self) -> crate::status::SourceView {
        crate::status::SourceView {
            name: self.name.clone(),
            url: self.url.clone(),
            branch: self.branch.clone(),
        }
    }

    /// A source with the default name and poll interval, without credentials.
    pub fn new(url: impl Into<String>, branch: impl Into<String>) -> Self {
        SourceConfig {
            name: DEFAULT_SOURCE.to_owned(),
            url: url.into(),
            branch: branch.into(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            credentials: GitCredentials::default(),
            render_limits: flotilla_core::Limits::default(),
            render_tools: flotilla_core::Tools::discover(),
            chart_sources: Vec::new(),
            chart_fetch_timeout: crate::controller::charts::DEFAULT_FETCH_TIMEOUT,
        }
    }
}

/// Credentials for a source. Without any, ssh uses the ssh agent.
#[derive(Clone, Default)]
pub struct GitCredentials {
    /// Private key file for ssh URLs.
    pub ssh_key: Option<PathBuf>,
    /// User name for https basic auth (default: the URL's, else `git`).
    pub username: Option<String>,
    /// Password or token for https basic auth.
    pub password: Option<String>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("ssh_key", &self.ssh_key)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Fetches the source into the mirror and records new heads.
pub struct SourceController {
    source: SourceConfig,
    mirror: Arc<SourceMirror>,
    metrics: Arc<Metrics>,
}

impl SourceController {
    /// A controller fetching `source` into `mirror`.
    pub fn new(source: SourceConfig, mirror: Arc<SourceMirror>, metrics: Arc<Metrics>) -> Self {
        SourceController {
            source,
            mirror,
            metrics,
        }
    }
}

impl Controller for SourceController {
    fn name(&self) -> &'static str {
        "source"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let run = Run {
            source: self.source.clone(),
            mirror: self.mirror.clone(),
            metrics: self.metrics.clone(),
            context,
        };
        Box::pin(run.run())
    }
}

struct Run {
    source: SourceConfig,
    mirror: Arc<SourceMirror>,
    metrics: Arc<Metrics>,
    context: ControllerContext,
}

impl Run {
    async fn run(self) {
        let mut applied = self.context.node.watch_applied();
        let mut handled = self.requests();
        loop {
            self.fetch_and_record().await;
            let next_poll = Instant::now() + self.source.poll_interval;
            loop {
                let requests = self.requests();
                if requests > handled {
                    handled = requests;
                    break;
                }
                let left = next_poll.saturating_duration_since(Instant::now());
                match self.context.wait(&mut applied, left).await {
                    Wake::Stop => return,
                    Wake::Timer => break,
                    Wake::Applied => {}
                }
            }
        }
    }

    /// Fetches asked for so far, as the replicated state counts them.
    fn requests(&self) -> u64 {
        self.context
            .node
            .state()
            .sources
            .get(&self.source.name)
            .map_or(0, |s| s.fetch_requests)
    }

    async fn fetch_and_record(&self) {
        let started = Instant::now();
        tracing::debug!(source = %self.source.name, "fetching");
        let (mirror, source) = (self.mirror.clone(), self.source.clone());
        let fetched = tokio::task::spawn_blocking(move || mirror.fetch(&source)).await;
        self.metrics
            .fetch_duration
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(source = %self.source.name, elapsed = ?started.elapsed(), "fetch done");
        let fetched = match fetched {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the fetch task failed: {e}")),
        };
        let command = {
            let state = self.context.node.state();
            let known = state.sources.get(&self.source.name);
            match &fetched {
                Ok(commit) => {
                    let unchanged = known.is_some_and(|s| {
                        s.head.as_deref() == Some(commit.as_str()) && s.last_error.is_none()
                    });
                    (!unchanged).then(|| Command::RecordFetch {
                        source: self.source.name.clone(),
                        url: self.source.url.clone(),
                        commit: commit.clone(),
                        at: self.context.clock.now(),
                    })
                }
                Err(error) => {
                    self.metrics.fetch_errors.inc();
                    tracing::warn!(source = %self.source.name, %error, "fetch failed");
                    let repeated =
                        known.is_some_and(|s| s.last_error.as_deref() == Some(error.as_str()));
                    (!repeated).then(|| Command::RecordFetchError {
                        source: self.source.name.clone(),
                        url: self.source.url.clone(),
                        error: error.clone(),
                        at: self.context.clock.now(),
                    })
                }
            }
        };
        if let Some(command) = command {
            if let Err(e) = self.context.node.propose(&command).await {
                tracing::warn!(source = %self.source.name, error = %e, "cannot record the fetch");
            } else if let Ok(commit) = &fetched {
                tracing::info!(source = %self.source.name, %commit, "new head fetched");
            }
        }
    }
}

/// Why a fetch could not be requested.
#[derive(Debug, thiserror::Error)]
pub enum RequestFetchError {
    /// The hub was started without a repository.
    #[error("this hub follows no repository; start it with --repo URL")]
    NoSource,
    /// The request could not be recorded.
    #[error("cannot record the fetch request: {0}")]
    Propose(#[from] crate::node::ProposeError),
}

/// Asks the leader's source controller to fetch now, from any node: the request is a replicated
/// command, so it reaches the leader however leadership moves, and survives a failover. Returns
/// the log index it applied at.
pub async fn request_fetch(
    node: &crate::node::NodeHandle,
    clock: &dyn crate::clock::Clock,
    source: Option<&SourceConfig>,
    reason: &str,
) -> Result<u64, RequestFetchError> {
    let source = source.ok_or(RequestFetchError::NoSource)?;
    let command = Command::RequestFetch {
        source: source.name.clone(),
        url: source.url.clone(),
        reason: reason.to_owned(),
        at: clock.now(),
    };
    Ok(node.propose(&command).await?.index)
}
