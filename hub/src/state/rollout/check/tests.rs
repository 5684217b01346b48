//! Decisions racing the fleet: the rollout controller decides on the state it read, and before
//! each of its commands applies, seeded random entries commit in between — agents reporting
//! Healthy, Progressing or Degraded, going offline and coming back, losing their cluster's API —
//! as on a real group where the leader's proposals and the agents' reports interleave in the
//! log. After every entry of that log the rollout invariants (`invariants.rs`, written apart from
//! the judgement apply uses) are checked on the states around it:
//!
//! - an assignment never takes a stage past `maxUnavailable` (offline, unreachable, unsettled
//!   and unhealthy clusters counted as the entry applies);
//! - a wave's soak begins, and a wave passes, only with every cluster given the target in it
//!   Healthy at the target for the settle period, and none of the rollout Degraded;
//! - marks say what is true: healthy only when Healthy, unhealthy only when not;
//! - waves go in order, and nothing is assigned by a rollout that is not running;
//! - a rollout by promotion starts only at a revision its upstream stage passed;
//! - no cluster planned in a paused rollout changes revision but by a rollback.
//!
//! Without the checks in `check.rs` this test fails within the first seeds (the budget is
//! overrun when an offline cluster comes back between decision and apply, and a soak begins
//! on a cluster that just went Degraded).

use std::collections::BTreeMap;

use flotilla_core::Health;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::state::fleet::ApiReachability;
use crate::state::health::{HealthKey, HealthReport};
use crate::state::rollout::decide::{Followed, SETTLE, SpecCache, decide};
use crate::state::rollout::invariants;
use crate::state::source::RevisionRef;
use crate::state::tests::bundle_blob;
use crate::state::{Command, CommandError, Labels, RenderOutcome, State, Timestamp, millis};

/// dev tracks main, two clusters at a time; prod promotes from dev: a canary, then the rest one
/// at a time, pausing on failure so paused rollouts are met too.
const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
    rollout:
      maxUnavailable: 2
      healthTimeout: 20s
      failureAction: rollback
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: dev
    rollout:
      waves:
        - {name: canary, clusterSelector: {matchLabels: {canary: 'yes'}}, soak: 2s}
      maxUnavailable: 1
      healthTimeout: 20s
      soak: 1s
      failureAction: pause
bundles:
  - name: app
    path: app
";

const CLUSTERS: &[(&str, &[(&str, &str)])] = &[
    ("dev-1", &[("env", "dev")]),
    ("dev-2", &[("env", "dev")]),
    ("dev-3", &[("env", "dev")]),
    ("prod-1", &[("env", "prod"), ("canary", "yes")]),
    ("prod-2", &[("env", "prod")]),
    ("prod-3", &[("env", "prod")]),
    ("prod-4", &[("env", "prod")]),
    ("prod-5", &[("env", "prod")]),
];

const TICK_MS: u64 = 250;

fn source() -> Followed<'static> {
    Followed {
        name: "origin",
        branch: "main",
    }
}

fn rev(commit: &str) -> RevisionRef {
    RevisionRef {
        source: "origin".into(),
        commit: commit.into(),
    }
}

/// One seeded run: the state, the log applied so far, and what is waiting to be proposed.
struct Race {
    rng: StdRng,
    state: State,
    now: u64,
    specs: SpecCache,
    /// The controller's commands decided on an older state, not yet in the log.
    pending: Vec<Command>,
    commits: u64,
    entries: u64,
    refused: u64,
    violations: Vec<String>,
}

impl Race {
    fn new(seed: u64) -> Self {
        let mut race = Race {
            rng: StdRng::seed_from_u64(seed),
            state: State::bootstrap(BTreeMap::from([(1, "127.0.0.1:1".to_owned())])),
            now: 1_000,
            specs: SpecCache::default(),
            pending: Vec::new(),
            commits: 0,
            entries: 0,
            refused: 0,
            violations: Vec::new(),
        };
        for (name, labels) in CLUSTERS {
            let labels: Labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let _ = race.log(Command::RegisterCluster {
                name: (*name).to_owned(),
                labels,
                at: Timestamp(0),
            });
            let _ = race.log(Command::SetLiveness {
                cluster: (*name).to_owned(),
                online: true,
                at: Timestamp(0),
            });
        }
        race
    }

    fn at(&self) -> Timestamp {
        Timestamp(self.now)
    }

    /// Appends one entry to the log: applies it and checks the invariants around it.
    fn log(&mut self, command: Command) -> Result<(), CommandError> {
        let before = self.state.clone();
        let result = self.state.apply(&command);
        self.entries += 1;
        if result.is_ok() {
            let found = invariants::violations(&before, &self.state, &command);
            self.violations.extend(
                found
                    .into_iter()
                    .map(|v| format!("entry {}: {}: {v}", self.entries, command.kind())),
            );
        } else if self.state != before {
            self.violations
                .push(format!("a refused {} changed the state", command.kind()));
        }
        result
    }

    /// A new head, rendered for every cluster.
    fn commit(&mut self) {
        self.commits += 1;
        let commit = format!("c{}", self.commits);
        self.log(Command::RecordFetch {
            source: "origin".into(),
            url: "file:///repo".into(),
            commit: commit.clone(),
            at: self.at(),
        })
        .expect("fetch");
        let mut bundles = BTreeMap::new();
        let mut blobs = Vec::new();
        for (cluster, _) in CLUSTERS {
            let blob = bundle_blob("app", &["app"], &format!("{commit} {cluster}"));
            bundles.insert(
                (*cluster).to_owned(),
                BTreeMap::from([("app".to_owned(), blob.hash)]),
            );
            blobs.push(blob);
        }
        self.log(Command::RecordRender {
            revision: rev(&commit),
            outcome: RenderOutcome::Rendered {
                bundles,
                index: crate::state::source::test_index(&blobs),
                staged: None,
                spec: SPEC.to_owned(),
                charts: Default::default(),
            },
            at: self.at(),
        })
        .expect("render");
    }

    /// One thing happening in the fleet: an agent reports, goes away or comes back, or loses
    /// its cluster's API. Most reports say Healthy, so rollouts make progress.
    fn fleet_event(&mut self) {
        let (cluster, _) = *CLUSTERS.choose(&mut self.rng).expect("clusters");
        let at = self.at();
        let roll = self.rng.random_range(0..100);
        let command = match roll {
            0..=69 => {
                let health = match self.rng.random_range(0..20) {
                    0..=15 => Health::Healthy,
                    16..=18 => Health::Progressing,
                    _ => Health::Degraded,
                };
                let reports: Vec<HealthReport> = self
                    .state
                    .desired_bundles(cluster)
                    .into_iter()
                    .map(|(bundle, hash)| HealthReport {
                        key: HealthKey {
                            cluster: cluster.to_owned(),
                            bundle,
                        },
                        applied: Some(hash),
                        health,
                        message: health.to_string(),
                        drifted: Vec::new(),
                        failed: None,
                        last_drift: None,
                        drift_corrections: 0,
                        added: Vec::new(),
                        at,
                    })
                    .collect();
                if reports.is_empty() {
                    return;
                }
                Command::RecordHealth { reports }
            }
            70..=89 => Command::SetLiveness {
                cluster: cluster.to_owned(),
                online: self.rng.random_bool(0.6),
                at,
            },
            _ => Command::SetClusterApi {
                cluster: cluster.to_owned(),
                api: ApiReachability {
                    reachable: self.rng.random_bool(0.6),
                    since: at,
                    error: "connection refused".into(),
                },
            },
        };
        let _ = self.log(command);
    }

    /// One tick: the controller decides when it has nothing waiting; its commands, and fleet
    /// events, then commit in a random interleaving, and time moves on.
    fn tick(&mut self) {
        if self.pending.is_empty() {
            let now = self.at();
            let decision = decide(&self.state, source(), &mut self.specs, now, millis(SETTLE));
            self.pending = decision.commands;
            self.pending.reverse();
        }
        for _ in 0..self.rng.random_range(1..6) {
            if !self.pending.is_empty() && self.rng.random_bool(0.5) {
                let command = self.pending.pop().expect("pending");
                match self.log(command) {
                    // The controller stops at a refusal and decides again.
                    Err(CommandError::Outdated(_)) => {
                        self.refused += 1;
                        self.pending.clear();
                    }
                    Err(_) => self.pending.clear(),
                    Ok(()) => {}
                }
            } else {
                self.fleet_event();
            }
        }
        self.now += TICK_MS;
    }
}

/// Runs one seed; its violations, and what it did (entries, rollouts, refused decisions).
fn run(seed: u64, ticks: u64) -> (Vec<String>, u64, usize, u64) {
    let mut race = Race::new(seed);
    race.commit();
    for tick in 0..ticks {
        if tick % 60 == 30 {
            race.commit();
        }
        race.tick();
    }
    (
        race.violations,
        race.entries,
        race.state.rollouts.len(),
        race.refused,
    )
}

#[test]
fn decisions_racing_health_and_liveness_never_break_a_rollout_rule() {
    let seeds: u64 = std::env::var("FLOTILLA_RACE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let (mut entries, mut rollouts, mut refused, mut completed) = (0, 0, 0, 0);
    for seed in 0..seeds {
        let (found, e, r, x) = run(seed, 240);
        assert!(
            found.is_empty(),
            "seed {seed} broke rollout rules:\n{}\nreplay: FLOTILLA_RACE_SEEDS={} cargo nextest \
             run -p flotilla-hub --lib decisions_racing",
            found.join("\n"),
            seed + 1
        );
        entries += e;
        rollouts += r;
        refused += x;
        completed += 1;
    }
    eprintln!(
        "{completed} seeds: {entries} entries, {rollouts} rollouts, {refused} decisions refused \
         as outdated"
    );
    // The races happen: decisions were refused, and rollouts ran.
    assert!(
        refused >= seeds / 4,
        "only {refused} refusals in {seeds} seeds"
    );
    assert!(rollouts as u64 > seeds, "only {rollouts} rollouts");
}

#[test]
fn the_judgement_apply_uses_is_the_controllers() {
    // Same state, same time: a decision the controller makes now is never refused.
    let mut race = Race::new(7);
    race.commit();
    for _ in 0..200 {
        let now = race.at();
        let decision = decide(&race.state, source(), &mut race.specs, now, millis(SETTLE));
        for command in decision.commands {
            let kind = command.kind();
            race.log(command)
                .unwrap_or_else(|e| panic!("a fresh {kind} was refused: {e}"));
        }
        race.fleet_event();
        race.now += TICK_MS;
    }
    assert!(race.violations.is_empty(), "{:#?}", race.violations);
}
