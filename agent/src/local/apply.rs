//! `flotilla-agent apply --dir DIR --bundle NAME`: apply a directory once, as a bundle, and
//! optionally wait until it is healthy.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::Limits;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{ClusterArgs, LocalError, manifests};
use crate::bundle::DriftMode;
use crate::connect::connect;
use crate::engine::{Engine, EngineConfig};
use crate::health::Health;
use crate::report::{Event, Report};
use flotilla_core::clock::SystemClock;

/// Arguments of `flotilla-agent apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// Directory of manifests (YAML or JSON, read recursively).
    #[arg(long)]
    pub dir: PathBuf,
    /// Bundle name: the objects' owner label and the inventory's name. Applying another
    /// directory under the same name prunes what this one applied and the other does not.
    #[arg(long)]
    pub bundle: String,
    /// Namespace given to namespaced objects that name none; created if missing.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Where the cluster is.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// After applying, wait until every object is Healthy.
    #[arg(long)]
    pub wait: bool,
    /// Longest to wait for the apply (through transient failures) and, with `--wait`, for
    /// health; e.g. `90s` or `5m`.
    #[arg(long, default_value = "5m", value_parser = crate::hub::run::parse_duration)]
    pub timeout: Duration,
}

/// How an apply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (and Healthy, with `--wait`).
    Done,
    /// The revision was refused; the errors were printed.
    Failed,
    /// Time ran out: still retrying, or not yet healthy.
    TimedOut,
}

/// Applies the directory, printing every report about the bundle on stdout.
pub async fn apply(args: ApplyArgs) -> Result<Outcome, LocalError> {
    let objects = manifests::load_dir(&args.dir, &Limits::default())?;
    // Drift is only watched while the command runs, so correcting it is all that makes sense.
    let revision = manifests::revision(&args.bundle, &args.namespace, DriftMode::Correct, objects);
    revision
        .validate()
        .map_err(crate::engine::EngineError::from)?;
    let client = connect(
        args.cluster.kubeconfig.as_deref(),
        args.cluster.context.as_deref(),
    )
    .await?;
    let config = EngineConfig {
        agent_namespace: args.cluster.agent_namespace.clone(),
        ..EngineConfig::default()
    };
    let engine = Engine::start(client, config, Arc::new(SystemClock))?;
    let mut reports = engine.subscribe();
    let id = revision.revision.clone();
    engine.apply(revision)?;
    let deadline = Instant::now() + args.timeout;
    let mut outcome = until_applied(&mut reports, &args.bundle, &id, deadline).await;
    if outcome == Outcome::Done && args.wait {
        let healthy = engine.status().iter().any(|s| {
            s.name == args.bundle
                && s.health
                    .as_ref()
                    .is_some_and(|h| h.health == Health::Healthy)
        });
        if !healthy {
            outcome = until_healthy(&mut reports, &args.bundle, deadline).await;
        }
    }
    if outcome == Outcome::TimedOut {
        println!(
            "{}: timed out after {:.0}s; the last reports above say where it stands",
            args.bundle,
            args.timeout.as_secs_f64()
        );
    }
    engine.shutdown().await;
    Ok(outcome)
}

async fn next(
    reports: &mut broadcast::Receiver<Report>,
    bundle: &str,
    deadline: Instant,
) -> Option<Report> {
    loop {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Ok(report)) if report.bundle == bundle => {
                println!("{report}");
                return Some(report);
            }
            Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return None,
        }
    }
}

async fn until_applied(
    reports: &mut broadcast::Receiver<Report>,
    bundle: &str,
    revision: &str,
    deadline: Instant,
) -> Outcome {
    while let Some(report) = next(reports, bundle, deadline).await {
        if report.revision != revision {
            continue;
        }
        match report.event {
            Event::Applied { .. } => return Outcome::Done,
            Event::ApplyFailed { retry_in: None, .. } => return Outcome::Failed,
            _ => {}
        }
    }
    Outcome::TimedOut
}

async fn until_healthy(
    reports: &mut broadcast::Receiver<Report>,
    bundle: &str,
    deadline: Instant,
) -> Outcome {
    while let Some(report) = next(reports, bundle, deadline).await {
        if report.health() == Some(Health::Healthy) {
            return Outcome::Done;
        }
    }
    Outcome::TimedOut
}
