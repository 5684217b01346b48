//! Leader-only controllers: loops that read the replicated state and propose commands, run by
//! the node that currently leads and by no other.
//!
//! Every controller has the same shape, so a reader who knows one knows all: a file
//! `controller/<name>.rs` holding a struct that implements [`Controller`] (its configuration) and
//! a private `Run` that owns what the controller remembers during one term of leadership; unit
//! tests, when it has them, in `controller/<name>/tests.rs`. `run` reconciles once at start and
//! again whenever something it watches changes (the applied index, a timer, a trigger), until the
//! context's `stop` token is cancelled.
//!
//! The [`Supervisor`] starts a fresh run of every controller when this node becomes leader —
//! once it has applied everything committed before its term (a read index: the leader has
//! committed an entry of its own term, and applied through it), so no controller ever decides
//! on a state older than what the previous leader acted on — and cancels them all when it stops leading (or the term changes, or the hub stops). Nothing a
//! controller remembers survives a term: a new leader starts from the replicated state, so a
//! failover never depends on what the old leader had in memory. A run that ends while the node
//! still leads (an error it could not handle, a panic) is restarted after a short pause.
//!
//! Commands proposed by a run that is being cancelled may still apply; every command is checked
//! against the state when it applies, so a late one is refused or harmless.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::node::{Leadership, NodeHandle};

/// Pause before restarting a controller run that ended while this node still leads.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// How long cancelled runs get to finish before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(2);

pub mod charts;
pub mod first_admin;
pub mod inventory;
pub mod liveness;
pub mod notify;
pub mod render;
pub mod retention;
pub mod rollout;
pub mod source;

/// A leader-only control loop.
pub trait Controller: Send + Sync + 'static {
    /// Short name for logs, metrics and the `controller:<name>` actor in commands.
    fn name(&self) -> &'static str;

    /// One run for one term of leadership: returns when `context.stop` is cancelled.
    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()>;
}

/// What a controller run gets.
#[derive(Clone)]
pub struct ControllerContext {
    /// The node: state to read, commands to propose.
    pub node: NodeHandle,
    /// Time for the commands it proposes.
    pub clock: Arc<dyn Clock>,
    /// The term this run leads in.
    pub term: u64,
    /// Cancelled when leadership is lost or the hub stops.
    pub stop: CancellationToken,
}

/// Why a controller woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The applied index moved: the state may have changed.
    Applied,
    /// The timer ran out.
    Timer,
    /// The run must end.
    Stop,
}

impl ControllerContext {
    /// Who a controller's commands are attributed to.
    pub fn actor(controller: &str) -> String {
        format!("controller:{controller}")
    }

    /// Waits for the state to change, `timeout` to pass, or the run to be stopped.
    pub async fn wait(&self, applied: &mut watch::Receiver<u64>, timeout: Duration) -> Wake {
        tokio::select! {
            _ = self.stop.cancelled() => Wake::Stop,
            changed = applied.changed() => match changed {
                Ok(()) => Wake::Applied,
                Err(_) => Wake::Stop,
            },
            _ = tokio::time::sleep(timeout) => Wake::Timer,
        }
    }

    /// Sleeps for `pause` unless stopped first; returns false when stopped.
    pub async fn pause(&self, pause: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(pause) => true,
        }
    }
}

/// Which controllers run on this node right now, and in which term.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// The term they lead in (0 when none run).
    pub term: u64,
    /// The applied index when they started: at least everything committed before the term.
    pub from_index: u64,
    /// Names of the controllers running.
    pub controllers: BTreeSet<&'static str>,
}

/// Starts the controllers when this node leads, stops them when it does not.
pub struct Supervisor {
    node: NodeHandle,
    clock: Arc<dyn Clock>,
    controllers: Vec<Arc<dyn Controller>>,
    running: Arc<watch::Sender<Running>>,
}

impl Supervisor {
    /// A supervisor for these controllers on this node.
    pub fn new(
        node: NodeHandle,
        clock: Arc<dyn Clock>,
        controllers: Vec<Arc<dyn Controller>>,
    ) -> Self {
        Supervisor {
            node,
            clock,
            controllers,
            running: Arc::new(watch::channel(Running::default()).0),
        }
    }

    /// Notified whenever the set of running controllers changes.
    pub fn watch_running(&self) -> watch::Receiver<Running> {
        self.running.subscribe()
    }

    /// Supervises until `stop` is cancelled.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(stop))
    }

    async fn run(self, stop: CancellationToken) {
        let id = self.node.id();
        let mut leadership = self.node.watch_leadership();
        loop {
            let leads = |l: &Leadership| l.leader == Some(id);
            let term = tokio::select! {
                _ = stop.cancelled() => return,
                led = leadership.wait_for(leads) => match led {
                    Ok(l) => l.term,
                    Err(_) => return,
                },
            };
            let lost_term = |l: &Leadership| l.leader != Some(id) || l.term != term;
            let caught_up = tokio::select! {
                _ = stop.cancelled() => return,
                _ = leadership.wait_for(lost_term) => None,
                index = self.caught_up() => Some(index),
            };
            let Some(from_index) = caught_up else {
                continue;
            };
            tracing::info!(node = id, term, from_index, "leading: starting controllers");
            self.running.send_replace(Running {
                term,
                from_index,
                controllers: self.controllers.iter().map(|c| c.name()).collect(),
            });
            let lost = stop.child_token();
            let mut tasks = JoinSet::new();
            for controller in &self.controllers {
                let context = ControllerContext {
                    node: self.node.clone(),
                    clock: self.clock.clone(),
                    term,
                    stop: lost.clone(),
                };
                tasks.spawn(keep_running(
                    controller.clone(),
                    context,
                    self.running.clone(),
                ));
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = leadership.wait_for(lost_term) => {}
            }
            tracing::info!(node = id, term, "no longer leading: stopping controllers");
            lost.cancel();
            let drained = tokio::time::timeout(STOP_GRACE, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
            self.running.send_replace(Running::default());
        }
    }
}

impl Supervisor {
    /// Waits until this node applied everything committed before now, as a read index
    /// confirms it (retried until it does); returns the applied index.
    async fn caught_up(&self) -> u64 {
        loop {
            match self.node.read_index().await {
                Ok(index) => match self.node.wait_applied(index).await {
                    Ok(applied) => return applied,
                    Err(e) => tracing::debug!(error = %e, "waiting to apply before leading"),
                },
                Err(e) => tracing::debug!(error = %e, "no read index yet before leading"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs one controller for one term, restarting runs that end early.
async fn keep_running(
    controller: Arc<dyn Controller>,
    context: ControllerContext,
    running: Arc<watch::Sender<Running>>,
) {
    let name = controller.name();
    loop {
        running.send_modify(|r| {
            r.term = context.term;
            r.controllers.insert(name);
        });
        // Caught here rather than in a task of its own, so aborting this task ends the run too.
        let outcome = AssertUnwindSafe(controller.run(context.clone()))
            .catch_unwind()
            .await;
        running.send_modify(|r| {
            r.controllers.remove(name);
        });
        if context.stop.is_cancelled() {
            return;
        }
        match outcome {
            Ok(()) => tracing::warn!(controller = name, "controller ended early; restarting"),
            Err(_) => tracing::error!(controller = name, "controller panicked; restarting"),
        }
        if !context.pause(RESTART_PAUSE).await {
            return;
        }
    }
}
