//! `decide` driven against the real state machine with a clock the test moves: agents are
//! simulated by health reports for whatever each cluster is assigned.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::Health;

use super::*;
use crate::state::health::{HealthKey, HealthReport};
use crate::state::rollout::OnFailure;
use crate::state::tests::bundle_blob;
use crate::state::{CommandError, Labels, RenderOutcome};

/// dev tracks main; prod promotes from dev with a canary wave, one cluster at a time.
const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: dev
    rollout:
      waves:
        - {name: canary, clusterSelector: {matchLabels: {canary: 'yes'}}, soak: 10s}
      maxUnavailable: 1
      healthTimeout: 1m
      soak: 5s
      failureAction: rollback
bundles:
  - name: app
    path: app
";

const SETTLE_MS: u64 = 1_000;

/// A bundle a cluster gets from a commit: its name and the names of its objects.
type Bundle = (&'static str, Vec<&'static str>);
const TICK_MS: u64 = 250;

fn rev(commit: &str) -> RevisionRef {
    RevisionRef {
        source: "origin".into(),
        commit: commit.into(),
    }
}

fn source() -> Followed<'static> {
    Followed {
        name: "origin",
        branch: "main",
    }
}

/// A fleet in the real state machine, a clock, and simulated agents.
struct Fleet {
    state: State,
    now: u64,
    specs: SpecCache,
    /// Per stage, the most clusters ever seen unavailable after any applied command.
    worst: BTreeMap<String, usize>,
    applied: Vec<Command>,
}

impl Fleet {
    fn new(clusters: &[(&str, &[(&str, &str)])]) -> Self {
        let mut fleet = Fleet {
            state: State::bootstrap(BTreeMap::from([(1, "127.0.0.1:1".to_owned())])),
            now: 1_000,
            specs: SpecCache::default(),
            worst: BTreeMap::new(),
            applied: Vec::new(),
        };
        for (name, labels) in clusters {
            let labels: Labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            fleet.apply(Command::RegisterCluster {
                name: (*name).to_owned(),
                labels,
                at: Timestamp(0),
            });
            fleet.set_online(name, true);
        }
        fleet
    }

    fn apply(&mut self, command: Command) {
        let kind = command.kind();
        self.state
            .apply(&command)
            .unwrap_or_else(|e| panic!("{kind} rejected: {e}"));
        self.applied.push(command);
        for stage in ["dev", "prod"] {
            let count = self.unavailable(stage);
            let worst = self.worst.entry(stage.to_owned()).or_default();
            *worst = (*worst).max(count);
        }
    }

    /// Clusters of the stage offline, or not Healthy at what they are assigned.
    fn unavailable(&self, stage: &str) -> usize {
        let Some(spec) = pipeline::current(&self.state, "origin").map(|(_, s)| s) else {
            return 0;
        };
        stage_clusters(&self.state, &spec, stage)
            .iter()
            .filter(|c| crate::state::rollout::readiness::available(&self.state, c).is_err())
            .count()
    }

    fn set_online(&mut self, cluster: &str, online: bool) {
        let at = Timestamp(self.now);
        self.apply(Command::SetLiveness {
            cluster: cluster.into(),
            online,
            at,
        });
    }

    /// Fetches `commit` (the new head) and renders it for every cluster: one bundle `app`
    /// holding one object, whose content names the commit.
    fn commit(&mut self, commit: &str, spec: &str) {
        self.commit_with(commit, spec, &|_| vec![("app", vec!["app"])]);
    }

    /// Fetches `commit` and renders it: `bundles` gives each cluster its bundles, each with the
    /// names of its objects (ConfigMaps whose content names the commit and cluster).
    fn commit_with(&mut self, commit: &str, spec: &str, bundles: &dyn Fn(&str) -> Vec<Bundle>) {
        self.apply(Command::RecordFetch {
            source: "origin".into(),
            url: "file:///repo".into(),
            commit: commit.into(),
            at: Timestamp(self.now),
        });
        let mut rendered = BTreeMap::new();
        let mut blobs = Vec::new();
        for cluster in self.state.clusters.keys() {
            let mut of_cluster = BTreeMap::new();
            for (bundle, objects) in bundles(cluster) {
                let blob = bundle_blob(bundle, &objects, &format!("{commit} {cluster}"));
                of_cluster.insert(bundle.to_owned(), blob.hash);
                blobs.push(blob);
            }
            rendered.insert(cluster.clone(), of_cluster);
        }
        self.apply(Command::RecordRender {
            revision: rev(commit),
            outcome: RenderOutcome::Rendered {
                bundles: rendered,
                index: crate::state::source::test_index(&blobs),
                staged: None,
                spec: spec.to_owned(),
                charts: Default::default(),
            },
            at: Timestamp(self.now),
        });
    }

    /// One controller pass, its commands applied; returns them.
    fn pass(&mut self) -> Decision {
        let decision = decide(
            &self.state,
            source(),
            &mut self.specs,
            Timestamp(self.now),
            SETTLE_MS,
        );
        for command in &decision.commands {
            self.apply(command.clone());
        }
        decision
    }

    /// Passes until one proposes nothing.
    fn settle(&mut self) {
        for _ in 0..50 {
            if self.pass().commands.is_empty() {
                return;
            }
        }
        panic!("the controller does not settle");
    }

    /// Every online cluster's agent reports what it is assigned with the health `health` gives.
    fn agents(&mut self, health: &dyn Fn(&str, &str) -> Health) {
        let mut reports = Vec::new();
        for (name, cluster) in &self.state.clusters {
            let Some(assigned) = &cluster.assigned else {
                continue;
            };
            if !cluster.online {
                continue;
            }
            for (bundle, hash) in self.state.desired_bundles(name) {
                let key = HealthKey {
                    cluster: name.clone(),
                    bundle,
                };
                let health = health(name, &assigned.commit);
                let current = self.state.health.get(&key);
                if current.is_some_and(|r| r.applied == Some(hash) && r.health == health) {
                    continue;
                }
                reports.push(HealthReport {
                    key,
                    applied: Some(hash),
                    health,
                    message: format!("{health}"),
                    drifted: Vec::new(),
                    failed: None,
                    last_drift: None,
                    drift_corrections: 0,
                    added: Vec::new(),
                    at: Timestamp(self.now),
                });
            }
        }
        if !reports.is_empty() {
            self.apply(Command::RecordHealth { reports });
        }
    }

    /// Runs controller and agents for `ms` of simulated time.
    fn run_for(&mut self, ms: u64, health: &dyn Fn(&str, &str) -> Health) {
        let end = self.now + ms;
        while self.now < end {
            self.settle();
            self.agents(health);
            self.settle();
            self.now += TICK_MS;
        }
    }

    fn assigned(&self, cluster: &str) -> Option<&str> {
        self.state.clusters[cluster]
            .assigned
            .as_ref()
            .map(|r| r.commit.as_str())
    }

    fn pinned(&self, stage: &str) -> Option<&str> {
        self.state.stages[stage]
            .pinned
            .as_ref()
            .map(|r| r.commit.as_str())
    }

    fn rollout(&self, stage: &str) -> (u64, &Rollout) {
        self.state
            .rollouts
            .iter()
            .rev()
            .find(|(_, r)| r.stage == stage)
            .map(|(id, r)| (*id, r))
            .expect("a rollout of the stage")
    }

    /// Clusters that were ever assigned `commit`, in order.
    fn ever_assigned(&self, commit: &str) -> Vec<String> {
        let mut seen = Vec::new();
        for command in &self.applied {
            let clusters = match command {
                Command::AssignRevision {
                    clusters, revision, ..
                } if revision.commit == commit => clusters.clone(),
                Command::RolloutStep {
                    rollout,
                    step: RolloutStep::Assign { clusters, .. },
                    ..
                } if self.state.rollouts[rollout].to.commit == commit => clusters.clone(),
                _ => continue,
            };
            for cluster in clusters {
                if !seen.contains(&cluster) {
                    seen.push(cluster);
                }
            }
        }
        seen
    }
}

fn healthy(_: &str, _: &str) -> Health {
    Health::Healthy
}

fn prod_fleet() -> Fleet {
    Fleet::new(&[
        ("dev-1", &[("env", "dev")]),
        ("prod-1", &[("env", "prod"), ("canary", "yes")]),
        ("prod-2", &[("env", "prod")]),
        ("prod-3", &[("env", "prod")]),
    ])
}

/// The fleet on c1 everywhere, healthy, then c2 pushed.
fn at_c1_then_c2(spec: &str) -> Fleet {
    let mut fleet = prod_fleet();
    fleet.commit("c1", spec);
    fleet.run_for(2_000, &healthy);
    for cluster in ["dev-1", "prod-1", "prod-2", "prod-3"] {
        assert_eq!(fleet.assigned(cluster), Some("c1"), "{cluster}");
    }
    // The first revision went everywhere at once; from here on the gate counts.
    fleet.worst.clear();
    fleet.commit("c2", spec);
    fleet
}

#[test]
fn the_first_good_revision_pins_every_stage_and_assigns_every_cluster_at_once() {
    let mut fleet = prod_fleet();
    fleet.commit("c1", SPEC);
    fleet.settle();
    assert_eq!(fleet.pinned("dev"), Some("c1"));
    assert_eq!(fleet.pinned("prod"), Some("c1"));
    assert!(fleet.state.rollouts.is_empty(), "nothing to gate yet");
    assert_eq!(fleet.assigned("prod-3"), Some("c1"));
}

#[test]
fn a_good_revision_goes_wave_by_wave_with_soak_and_at_most_one_cluster_unavailable() {
    let mut fleet = at_c1_then_c2(SPEC);
    fleet.run_for(2_000, &healthy);
    assert_eq!(fleet.assigned("dev-1"), Some("c2"));
    assert_eq!(fleet.rollout("dev").1.status, RolloutStatus::Completed);
    assert!(fleet.state.stages["dev"].passed.contains(&rev("c2")));
    // prod took c2 as soon as dev passed it; its canary holds c2 for the 10 s soak.
    let (_, prod) = fleet.rollout("prod");
    assert_eq!(prod.to, rev("c2"));
    assert_eq!(fleet.pinned("prod"), Some("c2"));
    assert_eq!(fleet.assigned("prod-1"), Some("c2"));
    assert_eq!(
        fleet.assigned("prod-2"),
        Some("c1"),
        "the canary soaks first"
    );
    fleet.run_for(8_000, &healthy);
    assert_eq!(fleet.assigned("prod-2"), Some("c1"), "still soaking");
    fleet.run_for(15_000, &healthy);
    let (_, prod) = fleet.rollout("prod");
    assert_eq!(prod.status, RolloutStatus::Completed);
    assert_eq!(
        prod.waves
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        ["canary", "remaining"]
    );
    for cluster in ["prod-1", "prod-2", "prod-3"] {
        assert_eq!(fleet.assigned(cluster), Some("c2"), "{cluster}");
    }
    assert_eq!(
        fleet.worst["prod"], 1,
        "maxUnavailable 1 held at every step"
    );
    assert_eq!(
        fleet.ever_assigned("c2"),
        ["dev-1", "prod-1", "prod-2", "prod-3"],
        "one at a time, canary first"
    );
    assert!(fleet.state.stages["prod"].passed.contains(&rev("c2")));
}

#[test]
fn a_degraded_canary_rolls_back_and_the_revision_is_never_promoted_again() {
    let mut fleet = at_c1_then_c2(SPEC);
    let bad = |cluster: &str, commit: &str| {
        if cluster == "prod-1" && commit == "c2" {
            Health::Degraded
        } else {
            Health::Healthy
        }
    };
    fleet.run_for(10_000, &bad);
    let (_, prod) = fleet.rollout("prod");
    assert!(
        matches!(&prod.status, RolloutStatus::RolledBack { reason } if reason.contains("prod-1 is Degraded")),
        "{:?}",
        prod.status
    );
    assert_eq!(fleet.pinned("prod"), Some("c1"));
    assert_eq!(fleet.assigned("prod-1"), Some("c1"), "the canary came back");
    assert_eq!(
        fleet.ever_assigned("c2"),
        ["dev-1", "prod-1"],
        "no other prod cluster saw c2"
    );
    assert!(fleet.state.stages["prod"].failed.contains(&rev("c2")));
    let audited: Vec<&str> = fleet
        .state
        .audit
        .since(0)
        .map(|(_, e)| e)
        .filter(|e| e.target == "stage/prod")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(audited, ["promote", "rollout.fail", "rollback"]);
    let rollouts = fleet.state.rollouts.len();
    fleet.run_for(30_000, &bad);
    assert_eq!(
        fleet.state.rollouts.len(),
        rollouts,
        "c2 is not promoted to prod again"
    );
    // A newer revision that passes dev is promoted.
    fleet.commit("c3", SPEC);
    fleet.run_for(2_000, &bad);
    assert_eq!(fleet.rollout("prod").1.to, rev("c3"));
}

#[test]
fn a_cluster_that_never_becomes_healthy_times_out_and_pauses_by_policy() {
    let spec = SPEC.replace("failureAction: rollback", "failureAction: pause");
    let mut fleet = at_c1_then_c2(&spec);
    let stuck = |cluster: &str, commit: &str| {
        if cluster == "prod-1" && commit == "c2" {
            Health::Progressing
        } else {
            Health::Healthy
        }
    };
    fleet.run_for(50_000, &stuck);
    assert_eq!(
        fleet.rollout("prod").1.status,
        RolloutStatus::Running,
        "within 1m"
    );
    fleet.run_for(15_000, &stuck);
    let (id, prod) = fleet.rollout("prod");
    assert!(
        matches!(&prod.status, RolloutStatus::Paused { reason, .. }
            if reason.contains("prod-1 was not Healthy at c2 within 1m")),
        "{:?}",
        prod.status
    );
    assert_eq!(prod.gate.on_failure, OnFailure::Pause);
    assert_eq!(
        fleet.assigned("prod-1"),
        Some("c2"),
        "pause leaves clusters where they are"
    );
    assert_eq!(fleet.assigned("prod-2"), Some("c1"));
    // Resumed, the cluster has a fresh minute; it recovers and the rollout completes.
    fleet.apply(Command::SetRolloutStatus {
        rollout: id,
        action: RolloutAction::Resume,
        by: "alice".into(),
        reason: "fixed the node".into(),
        at: Timestamp(fleet.now),
    });
    fleet.run_for(30_000, &healthy);
    assert_eq!(fleet.rollout("prod").1.status, RolloutStatus::Completed);
}

#[test]
fn a_paused_rollout_gives_no_cluster_the_target_until_resumed() {
    let mut fleet = at_c1_then_c2(SPEC);
    fleet.run_for(2_000, &healthy);
    let (id, _) = fleet.rollout("prod");
    fleet.apply(Command::SetRolloutStatus {
        rollout: id,
        action: RolloutAction::Pause,
        by: "alice".into(),
        reason: "holiday".into(),
        at: Timestamp(fleet.now),
    });
    fleet.run_for(60_000, &healthy);
    assert!(matches!(
        fleet.rollout("prod").1.status,
        RolloutStatus::Paused { .. }
    ));
    assert_eq!(fleet.ever_assigned("c2"), ["dev-1", "prod-1"]);
    fleet.apply(Command::SetRolloutStatus {
        rollout: id,
        action: RolloutAction::Resume,
        by: "alice".into(),
        reason: "back".into(),
        at: Timestamp(fleet.now),
    });
    fleet.run_for(30_000, &healthy);
    assert_eq!(fleet.rollout("prod").1.status, RolloutStatus::Completed);
}

#[test]
fn a_manual_stage_waits_for_approval_and_a_newer_candidate_replaces_the_waiting_one() {
    let spec = SPEC.replace(
        "failureAction: rollback",
        "failureAction: rollback\n      approval: manual",
    );
    let mut fleet = at_c1_then_c2(&spec);
    fleet.run_for(5_000, &healthy);
    let (first, prod) = fleet.rollout("prod");
    assert_eq!(prod.status, RolloutStatus::AwaitingApproval);
    assert_eq!(fleet.pinned("prod"), Some("c1"));
    assert_eq!(fleet.ever_assigned("c2"), ["dev-1"]);
    fleet.commit("c3", &spec);
    fleet.run_for(3_000, &healthy);
    let (second, prod) = fleet.rollout("prod");
    assert_eq!(prod.to, rev("c3"));
    assert_eq!(prod.status, RolloutStatus::AwaitingApproval);
    assert_eq!(
        fleet.state.rollouts[&first].status,
        RolloutStatus::Superseded { by: second }
    );
    fleet.apply(Command::SetRolloutStatus {
        rollout: second,
        action: RolloutAction::Approve,
        by: "alice".into(),
        reason: "ship it".into(),
        at: Timestamp(fleet.now),
    });
    fleet.run_for(30_000, &healthy);
    assert_eq!(fleet.rollout("prod").1.status, RolloutStatus::Completed);
    assert_eq!(fleet.assigned("prod-3"), Some("c3"));
}

#[test]
fn a_newer_revision_waits_for_the_running_rollout_by_default() {
    let mut fleet = at_c1_then_c2(SPEC);
    fleet.run_for(3_000, &healthy);
    let (first, _) = fleet.rollout("prod");
    // c3 passes dev while prod's canary soaks c2.
    fleet.commit("c3", SPEC);
    fleet.run_for(3_000, &healthy);
    assert!(fleet.state.stages["dev"].passed.contains(&rev("c3")));
    assert_eq!(fleet.rollout("prod").0, first, "c2 keeps going");
    fleet.run_for(25_000, &healthy);
    assert_eq!(
        fleet.state.rollouts[&first].status,
        RolloutStatus::Completed
    );
    let (second, prod) = fleet.rollout("prod");
    assert!(second > first);
    assert_eq!(prod.to, rev("c3"), "then c3 starts");
    assert_eq!(prod.from, Some(rev("c2")));
    fleet.run_for(30_000, &healthy);
    assert_eq!(fleet.rollout("prod").1.status, RolloutStatus::Completed);
}

#[test]
fn a_newer_revision_supersedes_the_running_rollout_when_the_stage_says_so() {
    let spec = SPEC.replace(
        "failureAction: rollback",
        "failureAction: rollback\n      supersede: immediate",
    );
    let mut fleet = at_c1_then_c2(&spec);
    fleet.run_for(3_000, &healthy);
    let (first, _) = fleet.rollout("prod");
    fleet.commit("c3", &spec);
    fleet.run_for(3_000, &healthy);
    let (second, prod) = fleet.rollout("prod");
    assert_eq!(
        fleet.state.rollouts[&first].status,
        RolloutStatus::Superseded { by: second }
    );
    assert_eq!(prod.to, rev("c3"));
    assert_eq!(
        prod.from,
        Some(rev("c1")),
        "a rollback would return to where c2 began"
    );
    fleet.run_for(30_000, &healthy);
    assert_eq!(fleet.rollout("prod").1.status, RolloutStatus::Completed);
    assert!(
        !fleet.ever_assigned("c2").contains(&"prod-2".to_owned()),
        "c2 went no further"
    );
    for cluster in ["prod-1", "prod-2", "prod-3"] {
        assert_eq!(fleet.assigned(cluster), Some("c3"), "{cluster}");
    }
}

#[test]
fn an_offline_cluster_counts_as_unavailable_and_blocks_until_the_timeout() {
    let mut fleet = at_c1_then_c2(SPEC);
    fleet.set_online("prod-3", false);
    fleet.run_for(30_000, &healthy);
    // prod-3, offline, takes the one unavailable slot: even the canary must wait.
    assert_eq!(
        fleet.assigned("prod-1"),
        Some("c1"),
        "maxUnavailable 1 is taken by prod-3"
    );
    let (_, prod) = fleet.rollout("prod");
    assert_eq!(prod.status, RolloutStatus::Running);
    fleet.run_for(40_000, &healthy);
    let (_, prod) = fleet.rollout("prod");
    assert!(
        matches!(&prod.status, RolloutStatus::RolledBack { reason }
            if reason.contains("blocked for 1m") && reason.contains("prod-3 offline")),
        "{:?}",
        prod.status
    );
    assert!(fleet.ever_assigned("c2").iter().all(|c| c == "dev-1"));
}

#[test]
fn an_offline_cluster_of_the_current_wave_is_given_the_target_and_holds_the_wave() {
    let mut fleet = at_c1_then_c2(SPEC);
    fleet.set_online("prod-1", false);
    fleet.run_for(3_000, &healthy);
    assert_eq!(
        fleet.assigned("prod-1"),
        Some("c2"),
        "it was unavailable already"
    );
    assert_eq!(fleet.assigned("prod-2"), Some("c1"));
    fleet.set_online("prod-1", true);
    fleet.run_for(30_000, &healthy);
    assert_eq!(fleet.rollout("prod").1.status, RolloutStatus::Completed);
}

#[test]
fn a_cluster_joining_a_stage_mid_rollout_gets_its_start_then_the_pin() {
    let mut fleet = at_c1_then_c2(SPEC);
    fleet.run_for(3_000, &healthy);
    fleet.apply(Command::RegisterCluster {
        name: "prod-4".into(),
        labels: [("env".to_owned(), "prod".to_owned())]
            .into_iter()
            .collect(),
        at: Timestamp(fleet.now),
    });
    fleet.set_online("prod-4", true);
    // The render controller would amend c1 and c2 for the newcomer.
    for commit in ["c1", "c2"] {
        let blob = bundle_blob("app", &["app"], &format!("{commit} prod-4"));
        fleet.apply(Command::AmendRender {
            revision: rev(commit),
            bundles: BTreeMap::from([(
                "prod-4".to_owned(),
                BTreeMap::from([("app".to_owned(), blob.hash)]),
            )]),
            errors: BTreeMap::new(),
            index: crate::state::source::test_index(&[blob]),
            staged: None,
            at: Timestamp(fleet.now),
        });
    }
    fleet.settle();
    assert_eq!(fleet.assigned("prod-4"), Some("c1"));
    fleet.run_for(40_000, &healthy);
    assert_eq!(fleet.rollout("prod").1.status, RolloutStatus::Completed);
    assert_eq!(fleet.assigned("prod-4"), Some("c2"));
}

#[test]
fn a_failed_head_changes_nothing() {
    let mut fleet = prod_fleet();
    fleet.commit("c1", SPEC);
    fleet.run_for(1_000, &healthy);
    fleet.apply(Command::RecordFetch {
        source: "origin".into(),
        url: "file:///repo".into(),
        commit: "bad".into(),
        at: Timestamp(fleet.now),
    });
    fleet.apply(Command::RecordRender {
        revision: rev("bad"),
        outcome: RenderOutcome::Failed {
            error: crate::state::source::RenderError {
                file: "app/x.yaml".into(),
                line: Some(1),
                message: "broken".into(),
            },
        },
        at: Timestamp(fleet.now),
    });
    assert!(fleet.pass().commands.is_empty());
    assert_eq!(fleet.pinned("dev"), Some("c1"));
}

#[test]
fn the_decision_says_when_to_look_again() {
    let mut fleet = at_c1_then_c2(SPEC);
    fleet.run_for(3_000, &healthy);
    // prod's canary is soaking: nothing to do now, but something at the end of the soak.
    let decision = fleet.pass();
    assert!(decision.commands.is_empty(), "{:?}", decision.commands);
    let wake = decision.wake_at.expect("a time to look again");
    assert!(
        wake.0 > fleet.now && wake.0 <= fleet.now + 10_000,
        "{wake:?}"
    );
}

/// `SPEC` without the prod stage.
fn spec_without_prod() -> String {
    let start = SPEC.find("  - name: prod").expect("prod in SPEC");
    let end = SPEC.find("bundles:").expect("bundles in SPEC");
    format!("{}{}", &SPEC[..start], &SPEC[end..])
}

#[test]
fn a_stage_removed_mid_rollout_is_abandoned_and_declared_again_rolls_out_gated() {
    let mut fleet = at_c1_then_c2(SPEC);
    fleet.run_for(3_000, &healthy);
    let (first, prod) = fleet.rollout("prod");
    assert_eq!(prod.status, RolloutStatus::Running, "the canary soaks");
    assert_eq!(fleet.assigned("prod-1"), Some("c2"));

    // prod leaves flotilla.yaml: its rollout ends, its pin goes back to the start, and no
    // other prod cluster is given c2.
    fleet.commit("c3", &spec_without_prod());
    fleet.run_for(30_000, &healthy);
    assert!(
        matches!(&fleet.state.rollouts[&first].status, RolloutStatus::Abandoned { reason }
            if reason.contains("stage `prod` is not declared")),
        "{:?}",
        fleet.state.rollouts[&first].status
    );
    assert_eq!(fleet.pinned("prod"), Some("c1"));
    assert!(!fleet.state.stages["prod"].failed.contains(&rev("c2")));
    assert_eq!(fleet.ever_assigned("c2"), ["dev-1", "prod-1"]);
    assert_eq!(
        fleet.assigned("prod-1"),
        Some("c2"),
        "clusters keep what they hold"
    );
    assert_eq!(fleet.assigned("prod-2"), Some("c1"));
    assert!(
        fleet
            .state
            .audit
            .since(0)
            .any(|(_, e)| e.action == "rollout.abandon"
                && e.target == "stage/prod"
                && e.detail.starts_with(&format!("rollout {first}:")))
    );
    assert_eq!(fleet.rollout("dev").1.status, RolloutStatus::Completed);

    // prod is declared again: what dev passed meanwhile (c3) comes in by a new rollout from
    // the pin, canary first, within maxUnavailable; then c4 the same way.
    fleet.worst.clear();
    fleet.commit("c4", SPEC);
    fleet.run_for(90_000, &healthy);
    let after: Vec<&Rollout> = fleet
        .state
        .rollouts
        .range(first + 1..)
        .map(|(_, r)| r)
        .filter(|r| r.stage == "prod")
        .collect();
    assert_eq!(
        after
            .iter()
            .map(|r| (r.from.clone(), r.to.clone(), r.status.clone()))
            .collect::<Vec<_>>(),
        [
            (Some(rev("c1")), rev("c3"), RolloutStatus::Completed),
            (Some(rev("c3")), rev("c4"), RolloutStatus::Completed),
        ]
    );
    assert_eq!(fleet.ever_assigned("c3")[..2], ["dev-1", "prod-1"]);
    for cluster in ["prod-1", "prod-2", "prod-3"] {
        assert_eq!(fleet.assigned(cluster), Some("c4"), "{cluster}");
    }
    assert_eq!(fleet.worst["prod"], 1);
}

#[test]
fn a_stage_selecting_no_cluster_holds_its_rollout_and_promotes_nothing_downstream() {
    let typo = SPEC.replace("{env: dev}}\n    track", "{env: devv}}\n    track");
    let mut fleet = prod_fleet();
    fleet.commit("c1", SPEC);
    fleet.run_for(2_000, &healthy);
    fleet.commit("c2", &typo);
    fleet.run_for(30_000, &healthy);
    let (_, dev) = fleet.rollout("dev");
    assert_eq!(dev.to, rev("c2"));
    assert_eq!(
        dev.status,
        RolloutStatus::Running,
        "never passes on nothing"
    );
    assert!(!fleet.state.stages["dev"].passed.contains(&rev("c2")));
    assert_eq!(fleet.pinned("prod"), Some("c1"), "prod promotes nothing");
    assert!(fleet.ever_assigned("c2").is_empty());
    let clusters = BTreeSet::new();
    let scope = StageScope {
        clusters: &clusters,
        allow_empty: false,
    };
    let judgement = judge(&fleet.state, dev, scope, Timestamp(fleet.now), SETTLE_MS);
    let blocked = judgement.blocked.unwrap_or_default();
    assert!(
        blocked.contains("selects no registered cluster"),
        "{blocked}"
    );
    assert!(blocked.contains("allowEmpty"), "{blocked}");
}

#[test]
fn a_stage_allowed_to_be_empty_passes_with_no_cluster() {
    let empty = SPEC.replace(
        "{env: dev}}\n    track: {branch: main}\n",
        "{env: none}}\n    track: {branch: main}\n    allowEmpty: true\n",
    );
    assert!(empty.contains("allowEmpty"));
    let mut fleet = prod_fleet();
    fleet.commit("c1", SPEC);
    fleet.run_for(2_000, &healthy);
    fleet.commit("c2", &empty);
    fleet.run_for(30_000, &healthy);
    assert!(fleet.state.stages["dev"].passed.contains(&rev("c2")));
    assert_eq!(fleet.pinned("prod"), Some("c2"));
}

/// dev (two clusters) and prod (three), every cluster with bundles `app` (four objects) and
/// `web` (two), all at c1 and healthy.
fn guarded_fleet(spec: &str) -> Fleet {
    let mut fleet = Fleet::new(&[
        ("dev-1", &[("env", "dev")]),
        ("dev-2", &[("env", "dev")]),
        ("prod-1", &[("env", "prod"), ("canary", "yes")]),
        ("prod-2", &[("env", "prod")]),
        ("prod-3", &[("env", "prod")]),
    ]);
    fleet.commit_with("c1", spec, &|_| both_bundles());
    fleet.run_for(2_000, &healthy);
    for cluster in ["dev-1", "dev-2", "prod-1", "prod-2", "prod-3"] {
        assert_eq!(fleet.assigned(cluster), Some("c1"), "{cluster}");
        assert_eq!(fleet.state.desired_bundles(cluster).len(), 2, "{cluster}");
    }
    fleet
}

fn both_bundles() -> Vec<Bundle> {
    vec![
        ("app", vec!["app-1", "app-2", "app-3", "app-4"]),
        ("web", vec!["web-1", "web-2"]),
    ]
}

/// `SPEC` whose `bundles:` was replaced by `bundles: []`.
fn spec_without_bundles(spec: &str) -> String {
    let start = spec.find("bundles:").expect("bundles in the spec");
    format!("{}bundles: []\n", &spec[..start])
}

fn approve(fleet: &mut Fleet, rollout: u64, action: RolloutAction) -> Result<(), CommandError> {
    let command = Command::SetRolloutStatus {
        rollout,
        action,
        by: "alice".into(),
        reason: "the bundles move to another repository".into(),
        at: Timestamp(fleet.now),
    };
    fleet.state.apply(&command)?;
    fleet.applied.push(command);
    Ok(())
}

#[test]
fn an_emptied_bundle_list_is_held_on_dev_and_prunes_nothing_until_approved() {
    let mut fleet = guarded_fleet(SPEC);
    let empty = spec_without_bundles(SPEC);
    fleet.commit_with("c2", &empty, &|_| Vec::new());
    fleet.run_for(30_000, &healthy);

    let (id, dev) = fleet.rollout("dev");
    assert_eq!(dev.to, rev("c2"));
    assert_eq!(
        dev.status,
        RolloutStatus::AwaitingApproval,
        "held though dev approves automatically"
    );
    let hold = dev
        .deletion_hold
        .clone()
        .expect("held by the deletion guard");
    assert!(hold.no_bundles, "{hold:?}");
    assert_eq!(hold.pruning_clusters, 2);
    assert_eq!((hold.pruning[0].pruned, hold.pruning[0].of), (6, 6));
    let removed: Vec<(&str, u32)> = hold
        .removals
        .iter()
        .map(|r| (r.bundle.as_str(), r.clusters))
        .collect();
    assert_eq!(removed, [("app", 2), ("web", 2)]);
    let summary = hold.summary();
    assert!(
        summary.contains("would leave all 2 clusters of the stage with no bundle"),
        "{summary}"
    );
    assert!(
        summary.contains("would prune more than 50% of the objects of 2 clusters: dev-1 6 of 6"),
        "{summary}"
    );
    assert_eq!(fleet.pinned("dev"), Some("c1"));
    assert!(fleet.ever_assigned("c2").is_empty(), "no cluster given c2");
    for cluster in ["dev-1", "dev-2", "prod-1", "prod-2", "prod-3"] {
        assert_eq!(fleet.state.desired_bundles(cluster).len(), 2, "{cluster}");
    }
    assert!(
        fleet
            .state
            .audit
            .since(0)
            .any(|(_, e)| e.action == "rollout.hold"
                && e.target == "stage/dev"
                && e.detail.contains("held by the deletion guard"))
    );

    // Only a person releases it: the policy's own approval is refused as it applies.
    let refused = approve(&mut fleet, id, RolloutAction::ApproveByPolicy);
    assert!(
        matches!(refused, Err(CommandError::HeldByDeletionGuard { rollout, .. }) if rollout == id),
        "{refused:?}"
    );
    approve(&mut fleet, id, RolloutAction::Approve).expect("approved");
    fleet.run_for(5_000, &healthy);
    assert_eq!(fleet.rollout("dev").1.status, RolloutStatus::Completed);
    for cluster in ["dev-1", "dev-2"] {
        assert_eq!(fleet.assigned(cluster), Some("c2"), "{cluster}");
        assert!(fleet.state.desired_bundles(cluster).is_empty(), "{cluster}");
    }
    assert!(
        fleet
            .state
            .audit
            .since(0)
            .any(|(_, e)| e.action == "approve"
                && e.target == "stage/dev"
                && e.detail.contains("released the deletion guard's hold"))
    );

    // dev passed c2, and prod, approving automatically too, holds it for its own approval.
    let (_, prod) = fleet.rollout("prod");
    assert_eq!(prod.to, rev("c2"));
    assert_eq!(prod.status, RolloutStatus::AwaitingApproval);
    assert!(prod.deletion_hold.as_ref().is_some_and(|h| h.no_bundles));
    for cluster in ["prod-1", "prod-2", "prod-3"] {
        assert_eq!(fleet.assigned(cluster), Some("c1"), "{cluster}");
    }
}

#[test]
fn a_commit_removing_one_bundle_from_every_cluster_is_held_until_a_fix_replaces_it() {
    let mut fleet = guarded_fleet(SPEC);
    fleet.commit_with("c2", SPEC, &|_| vec![both_bundles().remove(0)]);
    fleet.run_for(10_000, &healthy);
    let (held, dev) = fleet.rollout("dev");
    assert_eq!(dev.status, RolloutStatus::AwaitingApproval);
    let hold = dev
        .deletion_hold
        .clone()
        .expect("held by the deletion guard");
    // Two of six objects is within 50%: the bundle leaving both clusters holds it.
    assert_eq!((hold.pruning_clusters, hold.no_bundles), (0, false));
    assert_eq!(hold.removals.len(), 1, "{hold:?}");
    assert_eq!(
        (hold.removals[0].bundle.as_str(), hold.removals[0].clusters),
        ("web", 2)
    );
    assert!(
        hold.summary()
            .contains("would remove bundle `web` from 2 of 2 clusters (more than 1): dev-1, dev-2"),
        "{}",
        hold.summary()
    );
    assert!(fleet.ever_assigned("c2").is_empty());

    // A newer commit that keeps `web` replaces the held rollout and rolls out by itself.
    fleet.commit_with("c3", SPEC, &|_| both_bundles());
    fleet.run_for(40_000, &healthy);
    assert_eq!(
        fleet.state.rollouts[&held].status,
        RolloutStatus::Superseded {
            by: fleet.rollout("dev").0
        }
    );
    assert!(fleet.ever_assigned("c2").is_empty());
    for cluster in ["dev-1", "dev-2", "prod-1", "prod-2", "prod-3"] {
        assert_eq!(fleet.assigned(cluster), Some("c3"), "{cluster}");
    }
}

#[test]
fn a_commit_changing_content_and_pruning_little_is_not_held() {
    let mut fleet = guarded_fleet(SPEC);
    // Every object's content changes, `app-4` goes everywhere (1 of 6) and `web` leaves one
    // cluster only (3 of 6 there).
    fleet.commit_with("c2", SPEC, &|cluster| {
        let mut bundles = vec![("app", vec!["app-1", "app-2", "app-3"])];
        if cluster != "dev-1" {
            bundles.push(("web", vec!["web-1", "web-2"]));
        }
        bundles
    });
    fleet.run_for(40_000, &healthy);
    for stage in ["dev", "prod"] {
        let (_, rollout) = fleet.rollout(stage);
        assert_eq!(rollout.status, RolloutStatus::Completed, "{stage}");
        assert_eq!(rollout.deletion_hold, None, "{stage}");
    }
    for cluster in ["dev-1", "dev-2", "prod-1", "prod-2", "prod-3"] {
        assert_eq!(fleet.assigned(cluster), Some("c2"), "{cluster}");
    }
    assert_eq!(fleet.state.desired_bundles("dev-1").len(), 1);
}

#[test]
fn a_stage_whose_guard_is_disabled_is_not_held() {
    let unguarded = SPEC.replace(
        "    track: {branch: main}\n",
        "    track: {branch: main}\n    rollout:\n      deletionGuard: {enabled: false}\n",
    );
    assert!(unguarded.contains("enabled: false"));
    let mut fleet = guarded_fleet(&unguarded);
    fleet.commit_with("c2", &spec_without_bundles(&unguarded), &|_| Vec::new());
    fleet.run_for(10_000, &healthy);
    let (_, dev) = fleet.rollout("dev");
    assert_eq!(dev.status, RolloutStatus::Completed);
    assert_eq!(dev.deletion_hold, None);
    for cluster in ["dev-1", "dev-2"] {
        assert!(fleet.state.desired_bundles(cluster).is_empty(), "{cluster}");
    }
    // prod keeps its guard.
    let (_, prod) = fleet.rollout("prod");
    assert_eq!(prod.status, RolloutStatus::AwaitingApproval);
    assert!(prod.deletion_hold.is_some());
    assert_eq!(fleet.assigned("prod-1"), Some("c1"));
}
