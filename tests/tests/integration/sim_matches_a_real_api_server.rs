//! The differential corpus (`tests/differential/`): every scenario sent to the simulator and to
//! a real API server, their normalised answers compared. Any difference not listed in
//! `tests/differential/accepted.yaml` fails the test, all of them printed.
//!
//! `FLOTILLA_DIFF_REPORT=docs/SIMULATOR-differential.md` (relative to the repository) writes the
//! report; `FLOTILLA_DIFF_ONLY=PREFIX` runs only the scenarios whose name starts with PREFIX.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use flotilla_testkit::differential::{self, Accepted, Fix, Report};
use flotilla_testkit::real::{Target, TargetKind};

/// Scenarios in flight at once on each server.
const PARALLEL: usize = 12;

/// The command that writes the report, as the report names it.
const COMMAND: &str = "FLOTILLA_DIFF_REPORT=docs/SIMULATOR-differential.md \
    cargo nextest run -p flotilla-tests sim_matches_a_real_api_server";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_matches_a_real_api_server() -> Result<()> {
    let test = "sim_matches_a_real_api_server";
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("differential");
    let mut corpus = differential::load_corpus(&dir)?;
    if let Ok(prefix) = std::env::var("FLOTILLA_DIFF_ONLY") {
        corpus.retain(|s| s.name.starts_with(&prefix));
    }
    let accepted = Accepted::load(&dir.join("accepted.yaml"))?;
    let fixes = Fix::load(&dir.join("fixed.yaml"))?;
    let Some(real) = Target::start(TargetKind::Real, test, Duration::from_millis(200)).await?
    else {
        return Ok(());
    };
    let Some(sim) = Target::start(TargetKind::Sim, test, Duration::from_millis(200)).await? else {
        bail!("the simulator always starts");
    };
    let started = Instant::now();
    let (sim_client, real_client) = (sim.client(), real.client());
    let (on_sim, on_real) = tokio::join!(
        differential::run_corpus(&sim_client, &corpus, PARALLEL, |i| sim
            .name(&format!("d{i}"))),
        differential::run_corpus(&real_client, &corpus, PARALLEL, |i| real
            .name(&format!("d{i}"))),
    );
    eprintln!(
        "{} scenarios on both servers in {:.1} s",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
    let outcomes: Vec<_> = corpus
        .iter()
        .zip(on_sim.iter().zip(&on_real))
        .map(|(scenario, (s, r))| differential::compare(&scenario.area, s, r, &accepted))
        .collect();
    let report = Report {
        outcomes: &outcomes,
        fixes: &fixes,
    };
    if let Ok(file) = std::env::var("FLOTILLA_DIFF_REPORT") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::write(root.join(file), report.markdown(COMMAND))?;
    }
    let unaccepted: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.unaccepted())
        .map(|d| d.to_string())
        .collect();
    if std::env::var("FLOTILLA_DIFF_DUMP").is_ok() {
        for (s, r) in on_sim.iter().zip(&on_real) {
            eprintln!(
                "== {}\nsim:  {:#?}\nreal: {:#?}",
                s.scenario, s.steps, r.steps
            );
        }
    }
    eprintln!(
        "{} scenarios, {} identical, {} with differences",
        outcomes.len(),
        report.identical(),
        outcomes.iter().filter(|o| !o.identical()).count()
    );
    if !unaccepted.is_empty() {
        bail!(
            "{} differences the corpus does not accept:\n{}",
            unaccepted.len(),
            unaccepted.join("\n")
        );
    }
    if std::env::var("FLOTILLA_DIFF_ONLY").is_err() {
        report.check_fixes()?;
    }
    Ok(())
}
