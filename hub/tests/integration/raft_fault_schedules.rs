//! Seeded, reproducible fault schedules against in-process groups over real loopback sockets:
//! symmetric and one-way partitions, dropped and delayed messages (and lost answers to forwarded
//! proposals), power cuts and restarts of any node (the leader, and nodes in the middle of
//! catching up by snapshot), while proposals flow on random nodes. Every node's raft log is on a
//! simulated disk (`SimulatedDisk`): a crash is a power cut that loses everything not synced —
//! every other one on a disk that reorders writes, keeping a seeded subset of them — so a node
//! never gets to flush what it had in flight.
//!
//! Invariants checked for every seed: at most one leader per term; no acknowledged write lost;
//! every write answered as not applied (`Superseded`, `NotLeader`, `NoLeader`, `Refused`) absent
//! from every replica, and no write refused as a duplicate of itself; every replica's state
//! identical (same applied index, same state hash) after healing; at least
//! [`MIN_ACKED_PER_SEED`] writes acknowledged (a regression where every proposal times out
//! fails); every crash "during a snapshot" hit a node that really needed one (the leader had
//! compacted past it), and across a test's seeds some crashes landed before the snapshot was
//! installed.
//!
//! The schedule (which faults, in which order, for how long) is a pure function of the seed;
//! thread and socket timing is not, so a replay reproduces the schedule, not every interleaving.
//! A failing seed prints the command that replays it.

use crate::support::group as support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use flotilla_hub::config::Timing;
use flotilla_hub::node::{NodeHandle, ProposeError};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use support::{TestGroup, register};
use tokio::task::JoinHandle;

/// Seeds per test function; the functions run in parallel under nextest.
const SEEDS_PER_TEST: u64 = 15;

/// Fewest acknowledged writes a seed must see. Under faults a seed may commit few (a schedule
/// of partitions and crashes can leave no quorum most of the time), so the writers also run for
/// [`HEALED_WRITES`] once the healed group has a leader, where a working group commits dozens.
const MIN_ACKED_PER_SEED: usize = 5;

/// How long the writers go on once the group healed and elected a leader.
const HEALED_WRITES: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
enum Step {
    Partition(Vec<u64>, Vec<u64>),
    OneWay(u64, u64),
    Drop(f64),
    Delay(f64, u64),
    /// A power cut of the node.
    Crash(u64),
    /// A power cut of the leader.
    CrashLeader,
    Restart(u64),
    /// Crash a node, write past a compaction so it needs a snapshot, restart it, and crash it
    /// again after `ms` — usually while the snapshot is in flight or being installed.
    CrashDuringSnapshot(u64, u64),
    Heal,
}

#[derive(Debug, Clone)]
struct Schedule {
    seed: u64,
    size: u64,
    compact_after: u64,
    steps: Vec<(Step, u64)>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} nodes, compaction every {} entries",
            self.seed, self.size, self.compact_after
        )?;
        for (i, (step, ms)) in self.steps.iter().enumerate() {
            writeln!(f, "  {i:2}. {step:?}, then run {ms} ms")?;
        }
        Ok(())
    }
}

impl Schedule {
    fn generate(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let size = if seed.is_multiple_of(4) { 5 } else { 3 };
        let ids: Vec<u64> = (1..=size).collect();
        let mut steps = Vec::new();
        for _ in 0..rng.random_range(6..=9) {
            let step = match rng.random_range(0..9) {
                0 => {
                    let mut shuffled = ids.clone();
                    rand::seq::SliceRandom::shuffle(shuffled.as_mut_slice(), &mut rng);
                    let cut = rng.random_range(1..size as usize);
                    Step::Partition(shuffled[..cut].to_vec(), shuffled[cut..].to_vec())
                }
                1 => {
                    let from = *ids.choose(&mut rng).unwrap_or(&1);
                    let to = *ids
                        .iter()
                        .filter(|i| **i != from)
                        .collect::<Vec<_>>()
                        .choose(&mut rng)
                        .map_or(&1, |v| *v);
                    Step::OneWay(from, to)
                }
                2 => Step::Drop(rng.random_range(0.05..0.3)),
                3 => Step::Delay(rng.random_range(0.1..0.5), rng.random_range(2..30)),
                4 => Step::Crash(*ids.choose(&mut rng).unwrap_or(&1)),
                5 => Step::CrashLeader,
                6 => Step::Restart(*ids.choose(&mut rng).unwrap_or(&1)),
                7 => Step::CrashDuringSnapshot(
                    *ids.choose(&mut rng).unwrap_or(&1),
                    rng.random_range(0..40),
                ),
                _ => Step::Heal,
            };
            steps.push((step, rng.random_range(60..250)));
        }
        Schedule {
            seed,
            size,
            compact_after: rng.random_range(12..40),
            steps,
        }
    }
}

/// Running nodes, shared with the writers; each start of a node is a new incarnation.
type Live = Arc<Mutex<BTreeMap<u64, NodeHandle>>>;

#[derive(Default)]
struct Violations(Mutex<Vec<String>>);

impl Violations {
    fn report(&self, what: String) {
        self.0.lock().push(what);
    }
}

/// Watches one incarnation: its applied index must never decrease, and the leader it believes
/// in for a term must be the only one anybody believes in for that term.
fn watch_incarnation(
    node: &NodeHandle,
    leaders: Arc<Mutex<BTreeMap<u64, BTreeSet<u64>>>>,
    violations: Arc<Violations>,
) {
    let id = node.id();
    let mut applied = node.watch_applied();
    let seen = violations.clone();
    tokio::spawn(async move {
        let mut last = *applied.borrow_and_update();
        while applied.changed().await.is_ok() {
            let now = *applied.borrow_and_update();
            if now < last {
                seen.report(format!(
                    "node {id}: applied index went back from {last} to {now}"
                ));
            }
            last = now;
        }
    });
    let mut leadership = node.watch_leadership();
    tokio::spawn(async move {
        loop {
            let now = *leadership.borrow_and_update();
            if let Some(leader) = now.leader {
                let mut leaders = leaders.lock();
                let known = leaders.entry(now.term).or_default();
                known.insert(leader);
                if known.len() > 1 {
                    violations.report(format!(
                        "term {}: several leaders {known:?} (seen by node {id})",
                        now.term
                    ));
                }
            }
            if leadership.changed().await.is_err() {
                break;
            }
        }
    });
}

/// What writers learned of their writes.
#[derive(Debug, Default)]
struct Outcomes {
    /// Answered as applied.
    acked: BTreeSet<String>,
    /// Answered as not applied, with the answer: must be absent everywhere.
    absent: BTreeMap<String, String>,
    /// Answered with an error that cannot be (a unique name refused).
    wrong: Vec<String>,
}

fn spawn_writer(
    live: Live,
    seed: u64,
    writer: usize,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Outcomes> {
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed ^ (writer as u64) << 32);
        let mut outcomes = Outcomes::default();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let node = {
                let live = live.lock();
                let nodes: Vec<_> = live.values().cloned().collect();
                nodes.choose(&mut rng).cloned()
            };
            let Some(node) = node else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let name = format!("w{writer}-{i}");
            i += 1;
            match node.propose(&register(&name)).await {
                Ok(_) => {
                    outcomes.acked.insert(name);
                }
                Err(
                    e @ (ProposeError::Superseded { .. }
                    | ProposeError::NotLeader { .. }
                    | ProposeError::NoLeader
                    | ProposeError::Refused(_)),
                ) => {
                    outcomes.absent.insert(name, e.to_string());
                }
                Err(e @ ProposeError::Rejected { .. }) => {
                    outcomes.wrong.push(format!("{name}: {e}"));
                }
                // Timeout, Unknown, Stopped: it may or may not have applied.
                Err(_) => {}
            }
        }
        outcomes
    })
}

struct Run {
    group: TestGroup,
    live: Live,
    leaders: Arc<Mutex<BTreeMap<u64, BTreeSet<u64>>>>,
    violations: Arc<Violations>,
    /// Crashes during a snapshot that landed before the node had installed it.
    snapshot_crashes_in_flight: u64,
    /// Power cuts so far; every other one is torn, seeded by the schedule's seed and this count.
    cuts: u64,
    seed: u64,
}

impl Run {
    /// The highest index a running node's log was compacted through (its snapshot).
    async fn compacted_index(&self) -> u64 {
        let mut highest = 0;
        for node in self.group.live() {
            if let Ok(status) = node.status().await {
                highest = highest.max(status.first_index.saturating_sub(1));
            }
        }
        highest
    }

    /// Cuts the node's power: whatever it had not synced is lost (or torn).
    async fn crash(&mut self, id: u64) -> Result<()> {
        self.live.lock().remove(&id);
        self.cuts += 1;
        if self.cuts.is_multiple_of(2) {
            self.group
                .power_cut_torn(id, self.seed.wrapping_mul(1_000).wrapping_add(self.cuts))
                .await
        } else {
            self.group.power_cut(id).await
        }
    }

    async fn restart(&mut self, id: u64) -> Result<()> {
        if self.group.node(id).is_ok() {
            return Ok(());
        }
        self.group.restart(id).await?;
        let node = self.group.node(id)?.clone();
        watch_incarnation(&node, self.leaders.clone(), self.violations.clone());
        self.live.lock().insert(id, node);
        Ok(())
    }

    async fn step(&mut self, step: &Step) -> Result<()> {
        let faults = self.group.faults.clone();
        match step {
            Step::Partition(a, b) => faults.partition(a, b),
            Step::OneWay(from, to) => faults.block(*from, *to),
            Step::Drop(p) => faults.set_drop_probability(*p),
            Step::Delay(p, ms) => {
                faults.set_delay(*p, Duration::from_millis(1)..Duration::from_millis(*ms))
            }
            Step::Crash(id) => {
                // Keep at least one node running so writes have somewhere to go.
                if self.live.lock().len() > 1 {
                    self.crash(*id).await?;
                }
            }
            Step::CrashLeader => {
                let leader = self
                    .live
                    .lock()
                    .values()
                    .find(|n| n.is_leader())
                    .map(|n| n.id());
                if let Some(leader) = leader {
                    self.crash(leader).await?;
                }
            }
            Step::Restart(id) => self.restart(*id).await?,
            Step::CrashDuringSnapshot(id, ms) => {
                // The others must form a quorum, or nothing compacts while the node is down.
                faults.heal();
                for other in (1..=self.group.addresses.len() as u64).filter(|o| o != id) {
                    self.restart(other).await?;
                }
                // What the node's log holds when it crashes: it must be running to know, and
                // cut off so that nothing reaches its log between the look and the crash.
                self.restart(*id).await?;
                let others: Vec<u64> = (1..=self.group.addresses.len() as u64)
                    .filter(|o| o != id)
                    .collect();
                faults.partition(&[*id], &others);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let had = self.group.node(*id)?.status().await?.last_index;
                self.crash(*id).await?;
                faults.heal();
                // Write until the others compacted past everything the node holds, so it
                // needs a snapshot when it comes back.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
                let mut i = 0;
                while self.compacted_index().await <= had {
                    if tokio::time::Instant::now() > deadline {
                        bail!(
                            "crash during snapshot: the group did not compact past node {id}'s \
                             index {had} within 15 s of healing"
                        );
                    }
                    let writer = self.live.lock().values().next().cloned();
                    if let Some(writer) = writer {
                        let command = register(&format!("snap-{id}-{i}"));
                        let write = writer.propose(&command);
                        let _ = tokio::time::timeout(Duration::from_millis(500), write).await;
                    }
                    i += 1;
                }
                // Confirm the node needs a snapshot: the others compacted past its log.
                // It comes back cut off, so what it reports is its own log, not a snapshot
                // the leader already sent it.
                let compacted = self.compacted_index().await;
                faults.partition(&[*id], &others);
                self.restart(*id).await?;
                let node = self.group.node(*id)?.clone();
                let restarted_at = node.status().await?.last_index;
                faults.heal();
                if compacted <= restarted_at {
                    bail!(
                        "crash during snapshot: node {id} restarted with its log at index \
                         {restarted_at}, but the group compacted only through {compacted}: no \
                         snapshot was needed"
                    );
                }
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                if node.applied_index() < compacted {
                    self.snapshot_crashes_in_flight += 1;
                }
                self.crash(*id).await?;
                self.restart(*id).await?;
            }
            Step::Heal => faults.heal(),
        }
        Ok(())
    }
}

/// Proposes `register("final")` until it is applied or `within` passes.
async fn final_write(node: &NodeHandle, within: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let outcome = node.propose(&register("final")).await;
        if outcome.is_ok() || node.state().clusters.contains_key("final") {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the healed group did not accept a write within {within:?}: {outcome:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a seed did: acknowledged writes, and crashes during a snapshot (all, in flight).
struct Ran {
    acked: usize,
    snapshot_crashes: u64,
    in_flight: u64,
}

async fn run_schedule(schedule: &Schedule) -> Result<Ran> {
    // Short request deadlines: writers blocked by a partition give up quickly.
    let timing = Timing {
        request_timeout: Duration::from_secs(1),
        ..support::test_timing()
    };
    let group = TestGroup::start_on_simulated_disks(
        schedule.size,
        schedule.seed,
        schedule.compact_after,
        timing,
    )
    .await?;
    let mut run = Run {
        live: Arc::new(Mutex::new(BTreeMap::new())),
        leaders: Arc::new(Mutex::new(BTreeMap::new())),
        violations: Arc::new(Violations::default()),
        snapshot_crashes_in_flight: 0,
        cuts: 0,
        seed: schedule.seed,
        group,
    };
    for node in run.group.live() {
        watch_incarnation(&node, run.leaders.clone(), run.violations.clone());
        run.live.lock().insert(node.id(), node);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| spawn_writer(run.live.clone(), schedule.seed, w, stop.clone()))
        .collect();

    let t0 = std::time::Instant::now();
    for (step, ms) in &schedule.steps {
        eprintln!("{:?} step {step:?}", t0.elapsed());
        run.step(step).await?;
        tokio::time::sleep(Duration::from_millis(*ms)).await;
    }

    // Heal everything, bring every node back, and let the writers finish.
    run.group.faults.heal();
    for id in 1..=schedule.size {
        run.restart(id).await?;
    }
    run.group.leader(Duration::from_secs(30)).await?;
    eprintln!("{:?} healed", t0.elapsed());
    tokio::time::sleep(HEALED_WRITES).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Outcomes::default();
    for writer in writers {
        let mine = writer.await?;
        outcomes.acked.extend(mine.acked);
        outcomes.absent.extend(mine.absent);
        outcomes.wrong.extend(mine.wrong);
    }
    let mut acked = outcomes.acked;
    if !outcomes.wrong.is_empty() {
        bail!(
            "writes refused as duplicates of themselves: {:?}",
            outcomes.wrong
        );
    }
    if acked.len() < MIN_ACKED_PER_SEED {
        bail!(
            "only {} writes acknowledged (at least {MIN_ACKED_PER_SEED} expected)",
            acked.len()
        );
    }
    // One more write through the healed group proves it is live again. On a loaded machine the
    // healed group may need a few election rounds first, so the write is retried until a
    // deadline; a retry after an unknown outcome may find the first attempt already applied.
    let any = run.group.live().into_iter().next();
    if let Some(node) = any {
        final_write(&node, Duration::from_secs(30)).await?;
        acked.insert("final".into());
    }
    eprintln!("{:?} final write", t0.elapsed());
    let (applied, hash) = run.group.converged(Duration::from_secs(30)).await?;
    for node in run.group.live() {
        let state = node.state();
        let missing: Vec<_> = acked
            .iter()
            .filter(|n| !state.clusters.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            bail!("node {} lost acknowledged writes: {missing:?}", node.id());
        }
        let present: Vec<_> = outcomes
            .absent
            .iter()
            .filter(|(n, _)| state.clusters.contains_key(*n))
            .collect();
        if !present.is_empty() {
            bail!(
                "node {} holds writes answered as not applied: {present:?}",
                node.id()
            );
        }
    }
    let violations = run.violations.0.lock().clone();
    run.group.shutdown().await;
    if !violations.is_empty() {
        bail!("invariants violated: {violations:#?}");
    }
    let snapshot_crashes = schedule
        .steps
        .iter()
        .filter(|(s, _)| matches!(s, Step::CrashDuringSnapshot(..)))
        .count() as u64;
    eprintln!(
        "seed {}: {} acknowledged writes, {} answered not applied and absent, {}/{} snapshot \
         crashes in flight, converged at index {applied} with state {}",
        schedule.seed,
        acked.len(),
        outcomes.absent.len(),
        run.snapshot_crashes_in_flight,
        snapshot_crashes,
        &hash[..12]
    );
    Ok(Ran {
        acked: acked.len(),
        snapshot_crashes,
        in_flight: run.snapshot_crashes_in_flight,
    })
}

/// Runs seeds `first..first + SEEDS_PER_TEST`, or only `FLOTILLA_SEED` when it is set.
async fn run_seeds(first: u64, test: &str) -> Result<()> {
    support::init_tracing();
    let seeds: Vec<u64> = match std::env::var("FLOTILLA_SEED") {
        Ok(seed) => vec![seed.trim().parse()?],
        Err(_) => (first..first + SEEDS_PER_TEST).collect(),
    };
    let (mut snapshot_crashes, mut in_flight, mut acked) = (0, 0, 0);
    let replaying = seeds.len() == 1;
    for seed in seeds {
        let schedule = Schedule::generate(seed);
        match run_schedule(&schedule).await {
            Ok(ran) => {
                snapshot_crashes += ran.snapshot_crashes;
                in_flight += ran.in_flight;
                acked += ran.acked;
            }
            Err(e) => bail!(
                "{e:#}\n{schedule}\nreplay with: FLOTILLA_SEED={seed} cargo nextest run -p flotilla-hub --test integration raft_fault_schedules::{test}"
            ),
        }
    }
    eprintln!(
        "{test}: {acked} acknowledged writes; {in_flight} of {snapshot_crashes} crashes during a \
         snapshot landed before it was installed"
    );
    // The schedules mean to crash nodes with a snapshot in flight: some must have.
    if !replaying && snapshot_crashes > 0 && in_flight == 0 {
        bail!("none of {snapshot_crashes} crashes during a snapshot landed before its install");
    }
    Ok(())
}

macro_rules! seed_tests {
    ($($name:ident => $first:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> Result<()> {
                run_seeds($first, stringify!($name)).await
            }
        )*
    };
}

seed_tests! {
    invariants_hold_for_seeds_0_to_14 => 0,
    invariants_hold_for_seeds_15_to_29 => 15,
    invariants_hold_for_seeds_30_to_44 => 30,
    invariants_hold_for_seeds_45_to_59 => 45,
    invariants_hold_for_seeds_60_to_74 => 60,
    invariants_hold_for_seeds_75_to_89 => 75,
    invariants_hold_for_seeds_90_to_104 => 90,
    invariants_hold_for_seeds_105_to_119 => 105,
}
