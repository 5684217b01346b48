//! A nemesis over real processes and a real network: three `flotilla-hub` nodes (mutual TLS, a
//! group CA, as in production), each in a network namespace of its own, and a simulator with four
//! `flotilla-agent` processes in a fifth, all bridged (`flotilla_testkit::netns`). While commits
//! roll out through waves with soak and clients create and list API tokens with the `flotilla`
//! CLI, a seeded schedule partitions hubs from each other (both ways and one way) and from the
//! agents, drops a share of a host's packets, stalls a hub with SIGSTOP, jumps the leader's wall
//! clock (libfaketime) and SIGKILLs the leader mid-rollout. Each fault is checked to have taken
//! effect (a refused connection, dropped-packet counters, a stopped process, a skewed
//! timestamp). After healing: the last commit reaches every cluster, every hub holds the same
//! state, the clients' history is linearizable per token name, no acknowledged token is lost,
//! and every entry of every node's raft log keeps the rollout invariants.
//!
//! `FLOTILLA_NEMESIS_SEED=S` runs seed S; `FLOTILLA_NEMESIS_SEEDS=N` the first N of a fixed
//! list; by default one seed, for CI (docs/testing.md, "Nemesis on a real network").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use flotilla_hub::node::GroupClient;
use flotilla_hub::server::DEFAULT_BOOTSTRAP_TOKEN_TTL;
use flotilla_hub::state::audit::{AuditClass, AuditEvent, Outcome};
use flotilla_hub::state::rollout::{RolloutStatus, invariants};
use flotilla_hub::state::{Command, State, Timestamp};
use flotilla_hub::sync::register::IssuedBootstrapToken;
use flotilla_proto::v1::GroupStatus;
use flotilla_testkit::binaries;
use flotilla_testkit::cli::Flotilla;
use flotilla_testkit::fleet::rollout_problems;
use flotilla_testkit::git::GitRepo;
use flotilla_testkit::linearizable::{Operation, SetInput, SetModel, SetOutput, check_by_key};
use flotilla_testkit::netns::{self, GroupOperator, Network};
use flotilla_testkit::process::Process;
use flotilla_testkit::raft_log;
use flotilla_testkit::wait::{self, Probe};
use tempfile::TempDir;

mod processes;

use processes::{Fleet, Hubs};

/// Seeds `FLOTILLA_NEMESIS_SEEDS=N` runs the first N of; CI runs the first.
const SEEDS: &[u64] = &[1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233];
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const HUBS: u64 = 3;
const CLUSTERS: usize = 4;
const PEER_PORT: u16 = 7000;
const API_PORT: u16 = 7071;
const SIM_PORT: u16 = 6443;
/// How far the wall-clock fault moves the leader's clock ahead.
const CLOCK_JUMP_S: u64 = 30;
/// Longest a client waits for an answer before it records the outcome as unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The node that never compacts: its log replays whole, every entry of the run.
const ARCHIVE: u64 = 1;
/// `--compact-after` of the other nodes for the last fault, the kill mid-snapshot: far more
/// entries than commit while node 1 is paused, so the new leader cannot compact past it then.
const COMPACT_AFTER: u64 = 300;

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    track: {branch: main}
    rollout:
      waves:
        - {name: first, clusterSelector: {matchLabels: {wave: one}}, soak: 2s}
        - {name: second, clusterSelector: {matchLabels: {wave: two}}, soak: 2s}
      maxUnavailable: 1
      healthTimeout: 10m
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {release: \"0\"}
";

const APP: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: app
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
data:
  release: \"${release}\"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: \"example/web:${release}\"}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_real_network_keeps_writes_and_rollout_rules() -> Result<()> {
    let missing = requirements();
    // Never a silent skip: without root, iptables or libfaketime this test cannot run, and says
    // so by failing (.ci/run installs both).
    ensure!(
        missing.is_empty(),
        "the nemesis needs {} (docs/testing.md, \"Nemesis on a real network\")",
        missing.join(", ")
    );
    let mut failed = Vec::new();
    for seed in seeds()? {
        let started = Instant::now();
        match run(seed).await {
            Ok(()) => eprintln!("seed {seed} passed in {:.1?}", started.elapsed()),
            Err(e) => {
                eprintln!("seed {seed} failed after {:.1?}: {e:#}", started.elapsed());
                failed.push(seed);
            }
        }
    }
    ensure!(
        failed.is_empty(),
        "seeds {failed:?} failed (above); replay one with: FLOTILLA_NEMESIS_SEED={} \
         cargo nextest run -p flotilla-tests --test integration nemesis_real_network",
        failed.first().copied().unwrap_or_default()
    );
    Ok(())
}

/// What this machine lacks for the test.
fn requirements() -> Vec<String> {
    let mut missing = netns::missing_requirements();
    if !Path::new(LIBFAKETIME).is_file() {
        missing.push(format!(
            "libfaketime ({LIBFAKETIME}; apt-get install faketime)"
        ));
    }
    missing
}

fn seeds() -> Result<Vec<u64>> {
    if let Ok(seed) = std::env::var("FLOTILLA_NEMESIS_SEED") {
        return Ok(vec![seed.parse().context("FLOTILLA_NEMESIS_SEED")?]);
    }
    let count = match std::env::var("FLOTILLA_NEMESIS_SEEDS") {
        Ok(n) => n.parse().context("FLOTILLA_NEMESIS_SEEDS")?,
        Err(_) => 1,
    };
    Ok((0..count)
        .map(|i| SEEDS.get(i).copied().unwrap_or(1000 + i as u64))
        .collect())
}

/// One seeded run, start to checks.
async fn run(seed: u64) -> Result<()> {
    let mut rng = Rng(seed);
    let names: Vec<String> = (0..CLUSTERS).map(|i| format!("sim-{i}")).collect();
    let mut hosts: Vec<String> = (1..=HUBS).map(hub).collect();
    hosts.push("agents".into());
    let net = Arc::new(Network::new(
        &hosts.iter().map(String::as_str).collect::<Vec<_>>(),
    )?);
    let repo = GitRepo::new()?;
    repo.write("flotilla.yaml", &release(0))?;
    repo.write("bundles/app/app.yaml", APP)?;
    let mut commit = repo.commit("release 0")?;
    let mut hubs = Hubs::start(&net, &repo.url())?;
    let fleet = Fleet::start(&net, &hubs, &names).await?;
    let (cli, token) = hubs.operator_cli().await?;
    wait_rolled_out(&cli, &commit, &names, &hubs).await?;

    // The clients, in the agents' namespace: the faults between agents and hubs hit them too.
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = Arc::new(Recorder::new());
    let pool: Vec<String> = (0..6).map(|i| format!("nemesis-{seed}-{i}")).collect();
    let mut clients = Clients {
        stop: stop.clone(),
        tasks: (0..3)
            .map(|client| {
                let caller = Caller::new(&net, &hubs, &token);
                let (pool, stop, recorder) = (pool.clone(), stop.clone(), recorder.clone());
                let seed = rng.next() ^ client;
                tokio::spawn(
                    async move { caller.work(client, seed, &pool, &stop, &recorder).await },
                )
            })
            .collect(),
    };

    let mut releases = 0;
    for (step, fault) in schedule(&mut rng).into_iter().enumerate() {
        if step % 2 == 0 || matches!(fault, Fault::KillLeader | Fault::KillLeaderMidSnapshot) {
            releases += 1;
            repo.write("flotilla.yaml", &release(releases))?;
            commit = repo.commit(&format!("release {releases}"))?;
        }
        let hold = Duration::from_millis(1500 + rng.below(2000));
        let evidence = inject(&fault, hold, &net, &mut hubs, &commit, &recorder.quiet)
            .await
            .with_context(|| format!("step {step}: {fault:?}"))?;
        eprintln!("seed {seed} step {step}: {fault:?} for {hold:?}: {evidence}");
    }
    net.heal()?;
    hubs.resume_all(&net)?;

    // Every check runs and reports, so one failure does not hide another.
    let mut failures = Vec::new();
    if let Err(e) = wait_rolled_out(&cli, &commit, &names, &hubs).await {
        failures.push(format!("after healing: {e:#}"));
    }
    stop.store(true, Ordering::Relaxed);
    for task in std::mem::take(&mut clients.tasks) {
        task.await?;
    }
    drop(fleet);
    let (mut history, served_by) = recorder.take();
    match hubs.converge().await {
        Ok((index, state)) => {
            let kept: BTreeSet<String> = state
                .access
                .tokens
                .values()
                .filter(|t| t.revoked_at.is_none())
                .map(|t| t.name.clone())
                .collect();
            // The converged state, read last, is part of what the history must explain.
            let end = recorder.now();
            history.extend(pool.iter().map(|name| Operation {
                client: u64::MAX,
                input: SetInput::Contains(name.clone()),
                output: Some(SetOutput::Contains(kept.contains(name))),
                call: end,
                ret: end,
            }));
            let lost = lost_writes(&history, &kept);
            if !lost.is_empty() {
                failures.push(format!("acknowledged tokens lost: {lost:?}"));
            }
            let mut rollouts: BTreeMap<&str, usize> = BTreeMap::new();
            for rollout in state.rollouts.values() {
                *rollouts.entry(rollout.status.name()).or_default() += 1;
            }
            eprintln!("seed {seed}: every hub converged at entry {index}; rollouts {rollouts:?}");
        }
        Err(e) => failures.push(format!("the hubs did not converge: {e:#}")),
    }
    if let Err(e) = check_history(&history, &served_by) {
        failures.push(format!("{e:#}"));
    }
    let applied = hubs.applied().await;
    hubs.stop_all();
    for id in 1..=HUBS {
        if let Err(e) = check_log(&hubs, id, applied.get(&id).copied().unwrap_or(0)) {
            failures.push(format!("{e:#}"));
        }
    }
    let known = history
        .iter()
        .filter(|op| op.output.is_some() && !matches!(op.input, SetInput::Contains(_)))
        .count();
    eprintln!(
        "seed {seed}: {} operations ({known} writes with a known outcome), {releases} releases",
        history.len(),
    );
    ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

/// `flotilla.yaml` at release `n`.
fn release(n: u32) -> String {
    SPEC.replace("release: \"0\"", &format!("release: \"{n}\""))
}

fn hub(id: u64) -> String {
    format!("hub{id}")
}

/// One fault of the schedule.
#[derive(Debug, Clone)]
enum Fault {
    /// Hubs `a` and `b` cannot reach each other.
    Partition(u64, u64),
    /// What the leader sends another hub is lost (`true`), or what another hub sends the
    /// leader; which other hub, counted on from the leader by 1 + the second field.
    OneWay(bool, u64),
    /// The agents (and the clients) cannot reach hub `a`, nor it them.
    AgentsCut(u64),
    /// A share (percent) of what a host sends is lost.
    Loss(String, u64),
    /// Hub `a` stalls (SIGSTOP), then goes on (SIGCONT).
    Pause(u64),
    /// The leader's wall clock jumps ahead.
    ClockJump,
    /// SIGKILL of the leader while a rollout runs, then a restart.
    KillLeader,
    /// SIGKILL of the leader while it uploads a snapshot to a follower that fell behind its
    /// compacted log, then a restart.
    KillLeaderMidSnapshot,
}

/// Every kind of fault once, in a seeded order and with seeded targets.
fn schedule(rng: &mut Rng) -> Vec<Fault> {
    let a = 1 + rng.below(HUBS);
    let b = 1 + (a + rng.below(HUBS - 1)) % HUBS;
    let lossy = match rng.below(HUBS + 1) {
        0 => "agents".to_owned(),
        n => hub(n),
    };
    let mut faults = vec![
        Fault::Partition(a, b),
        Fault::OneWay(rng.below(2) == 0, rng.below(HUBS - 1)),
        Fault::AgentsCut(1 + rng.below(HUBS)),
        Fault::Loss(lossy, 20 + rng.below(30)),
        Fault::Pause(1 + rng.below(HUBS)),
        Fault::ClockJump,
        Fault::KillLeader,
    ];
    for i in (1..faults.len()).rev() {
        faults.swap(i, rng.below(i as u64 + 1) as usize);
    }
    // Last: from it on, nodes other than the archive compact their logs.
    faults.push(Fault::KillLeaderMidSnapshot);
    faults
}

/// Applies `fault` for `hold`, checks that it took effect and lifts it; returns what showed
/// it took effect.
async fn inject(
    fault: &Fault,
    hold: Duration,
    net: &Arc<Network>,
    hubs: &mut Hubs,
    commit: &str,
    quiet: &AtomicBool,
) -> Result<String> {
    let evidence = match fault {
        Fault::Partition(a, b) => {
            net.partition(&hub(*a), &hub(*b))?;
            let cut = !connects(net, hub(*a), hub(*b), PEER_PORT).await?
                && !connects(net, hub(*b), hub(*a), PEER_PORT).await?;
            ensure!(cut, "hub{a} and hub{b} still connect");
            tokio::time::sleep(hold).await;
            format!(
                "no connection either way; {} packets dropped",
                net.dropped(&hub(*a))? + net.dropped(&hub(*b))?
            )
        }
        Fault::OneWay(from_leader, offset) => {
            let leader = hubs.leader(Duration::from_secs(30)).await?;
            let other = 1 + (leader + offset) % HUBS;
            let (a, b) = match *from_leader {
                true => (leader, other),
                false => (other, leader),
            };
            net.cut_one_way(&hub(a), &hub(b))?;
            ensure!(
                !connects(net, hub(a), hub(b), PEER_PORT).await?,
                "hub{a} still connects to hub{b}"
            );
            tokio::time::sleep(hold).await;
            format!(
                "{} packets hub{a} sent hub{b} dropped (hub{leader} leads)",
                net.dropped(&hub(a))?
            )
        }
        Fault::AgentsCut(a) => {
            net.partition("agents", &hub(*a))?;
            ensure!(
                !connects(net, "agents".into(), hub(*a), API_PORT).await?,
                "the agents still reach hub{a}"
            );
            tokio::time::sleep(hold).await;
            format!(
                "agents cannot connect; {} packets dropped",
                net.dropped("agents")? + net.dropped(&hub(*a))?
            )
        }
        Fault::Loss(host, percent) => {
            net.lose(host, *percent as f64 / 100.0)?;
            tokio::time::sleep(hold).await;
            let dropped = net.dropped(host)?;
            ensure!(dropped > 0, "{host} lost no packet");
            format!("{dropped} packets dropped")
        }
        Fault::Pause(a) => {
            hubs.signal(*a, "STOP")?;
            // The signal is delivered asynchronously.
            wait::until(
                &format!("hub{a} stopped"),
                Duration::from_secs(2),
                || async {
                    Ok(match hubs.process_state(*a)? {
                        'T' => Probe::Done(()),
                        state => Probe::NotYet(format!("state {state}")),
                    })
                },
            )
            .await?;
            tokio::time::sleep(hold).await;
            hubs.signal(*a, "CONT")?;
            "process stopped (state T), then continued".to_owned()
        }
        Fault::ClockJump => {
            let leader = hubs.leader(Duration::from_secs(30)).await?;
            std::fs::write(hubs.clock_file(leader), format!("+{CLOCK_JUMP_S}s"))?;
            tokio::time::sleep(hold).await;
            // The node a request reaches stamps the command it proposes with its clock.
            let probe = format!("clock-probe-{}", std::process::id());
            hubs.cli(leader)
                .run(&["token", "create", &probe, "--role", "viewer", "-o", "json"])
                .await?;
            let skew = hubs
                .created_skew(leader, &probe)
                .await?
                .with_context(|| format!("hub{leader}: the clock probe token was not created"))?;
            // The jump took effect: the hub's clock, not only the file, moved.
            ensure!(
                skew >= CLOCK_JUMP_S as f64 - 5.0,
                "hub{leader}'s clock did not jump: it stamped a token {skew:+.1} s off"
            );
            format!(
                "hub{leader} (leader) +{CLOCK_JUMP_S}s: it stamped a token {skew:+.1} s off \
                 this machine's clock"
            )
        }
        Fault::KillLeader => {
            hubs.wait_state(&format!("a rollout of {commit} running"), |s| {
                s.rollouts
                    .values()
                    .rev()
                    .find(|r| r.stage == "prod")
                    .is_some_and(|r| r.to.commit == commit && r.status == RolloutStatus::Running)
            })
            .await?;
            let leader = hubs.leader(Duration::from_secs(30)).await?;
            hubs.kill(leader);
            tokio::time::sleep(hold).await;
            let next = hubs.leader(Duration::from_secs(30)).await?;
            hubs.spawn(net, leader)?;
            format!("hub{leader} killed mid-rollout, hub{next} took over, hub{leader} restarted")
        }
        Fault::KillLeaderMidSnapshot => kill_leader_mid_snapshot(net, hubs, quiet).await?,
    };
    net.heal()?;
    Ok(evidence)
}

/// The leader must be uploading a snapshot when it dies: the nodes other than the archive are
/// restarted compacting their logs, one of them leads (the archive is paused if it led), the
/// other is killed until the leader has compacted past its log, then restarted behind a lossy
/// link; the leader is killed as soon as it logs the upload's start, and must not have logged
/// its end (the follower's answer). Whether the bytes had all reached the follower is shown,
/// not required: both are crashes mid-snapshot, and either must leave the group safe. The
/// archive stays in every quorum meanwhile, so it holds every committed entry and never needs
/// a snapshot: its log still replays whole.
async fn kill_leader_mid_snapshot(
    net: &Arc<Network>,
    hubs: &mut Hubs,
    quiet: &AtomicBool,
) -> Result<String> {
    let compacting: Vec<u64> = (1..=HUBS).filter(|id| *id != ARCHIVE).collect();
    for id in &compacting {
        hubs.kill(*id);
        hubs.compact_after.insert(*id, COMPACT_AFTER);
        hubs.spawn(net, *id)?;
        hubs.wait_caught_up(*id).await?;
    }
    let mut leader = hubs.leader(Duration::from_secs(30)).await?;
    if leader == ARCHIVE {
        // The clients hold their writes meanwhile, so few entries commit while node 1 is
        // paused: the new leader must not compact past it.
        quiet.store(true, Ordering::Relaxed);
        hubs.signal(ARCHIVE, "STOP")?;
        leader = wait::until(
            "a compacting node leading",
            Duration::from_secs(30),
            || async {
                for id in &compacting {
                    if let Ok(status) = hubs.status(*id).await
                        && status.role == "leader"
                    {
                        return Ok(Probe::Done(*id));
                    }
                }
                Ok(Probe::NotYet(String::new()))
            },
        )
        .await?;
        hubs.signal(ARCHIVE, "CONT")?;
        hubs.wait_caught_up(ARCHIVE).await?;
        quiet.store(false, Ordering::Relaxed);
        let first = hubs.status(ARCHIVE).await?.first_index;
        ensure!(
            first <= raft_log::FOUNDING_SNAPSHOT + 1,
            "node {ARCHIVE} needed a snapshot after its pause (its log starts at {first}): the \
             new leader compacted past it, so its log no longer replays whole"
        );
    }
    let behind = *compacting
        .iter()
        .find(|id| **id != leader)
        .context("no second compacting node")?;
    // Down, not cut off: over a partition the leader's stream only stalls, and TCP delivers
    // every append once it heals; a dead peer's stream breaks and raft must probe it again.
    let had = hubs.status(behind).await?.last_index;
    hubs.kill(behind);
    let compacted = fill_until_compacted(hubs, leader, had).await?;

    let mark = hubs.processes[&leader].stderr_lines();
    // A lossy link (and filler entries of some size) stretch the upload from milliseconds
    // to a good part of a second.
    net.lose(&hub(behind), 0.5)?;
    hubs.spawn(net, behind)?;
    let wanted = format!("to={behind}");
    let process = &hubs.processes[&leader];
    // Blocking: the kill must follow the line at once.
    let started = tokio::task::block_in_place(|| {
        process.wait_for_stderr(mark, "a snapshot upload", Duration::from_secs(60), |line| {
            line.contains("sending snapshot") && line.contains(&wanted)
        })
    });
    let mut killed = hubs
        .processes
        .remove(&leader)
        .context("the leader is not running")?;
    killed.kill();
    let started = started.with_context(|| {
        format!("hub{leader} compacted through {compacted}, hub{behind} had {had}")
    })?;
    let applied = hubs.status(behind).await?.applied;
    net.heal()?;
    // What the leader printed up to its death.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let finished = killed
        .stderr_tail()
        .lines()
        .any(|line| line.contains("snapshot sent") && line.contains(&wanted));
    ensure!(
        !finished,
        "hub{leader} finished uploading the snapshot to hub{behind} before it was killed"
    );
    drop(killed);
    hubs.spawn(net, leader)?;
    let next = hubs.leader(Duration::from_secs(30)).await?;
    hubs.wait_caught_up(behind).await?;
    let bytes = started
        .split("bytes=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?");
    let arrived = match applied >= compacted {
        true => "it had arrived and applied",
        false => "it had not arrived",
    };
    Ok(format!(
        "hub{leader} compacted through {compacted} past hub{behind}'s log end {had}, was \
         killed uploading a {bytes}-byte snapshot to it ({arrived}: hub{behind} at {applied}); \
         hub{next} took over and hub{behind} caught up"
    ))
}

/// Proposes filler entries through `leader` until it has compacted its log past `index`;
/// returns the index it compacted through.
async fn fill_until_compacted(hubs: &Hubs, leader: u64, index: u64) -> Result<u64> {
    let mut client = hubs.client(leader)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        let status: GroupStatus = hubs.status(leader).await?;
        let compacted = status.first_index.saturating_sub(1);
        if compacted > index {
            return Ok(compacted);
        }
        ensure!(
            Instant::now() < deadline,
            "hub{leader} compacted only through {compacted}, not past {index}, within 60 s"
        );
        let filler = Command::RecordAudit {
            event: AuditEvent {
                actor: "nemesis".into(),
                action: "fill".into(),
                target: format!("hub{leader}"),
                detail: format!("{i}: {}", "x".repeat(3 * 1024)),
                at: Timestamp(0),
                outcome: Outcome::Succeeded,
                class: AuditClass::Unprivileged,
                count: 1,
            },
        };
        tokio::time::timeout(CALL_TIMEOUT, client.propose(&filler))
            .await
            .context("a filler entry timed out")??;
    }
    unreachable!("the loop returns")
}

/// Whether `from` opens a TCP connection to `to`'s `port`, off the async threads.
async fn connects(net: &Arc<Network>, from: String, to: String, port: u16) -> Result<bool> {
    let net = net.clone();
    tokio::task::spawn_blocking(move || net.connects(&from, &to, port)).await?
}

/// Waits until `flotilla status` shows `commit` healthy on every cluster.
async fn wait_rolled_out(
    cli: &Flotilla,
    commit: &str,
    names: &[String],
    hubs: &Hubs,
) -> Result<()> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    wait::until(
        &format!("{commit} rolled out everywhere"),
        Duration::from_secs(60),
        || async {
            let status = cli.status().await?;
            let problems = rollout_problems(&status, commit, &names);
            Ok(match problems.is_empty() {
                true => Probe::Done(()),
                false => Probe::NotYet(problems.join("\n")),
            })
        },
    )
    .await
    .map_err(|e| e.context(hubs.log_tails()))
}

/// The clients' history, with times in ns since it began.
struct Recorder {
    start: Instant,
    /// Each operation and the hub it was sent to.
    operations: std::sync::Mutex<Vec<(Operation<SetInput, SetOutput>, String)>>,
    /// While set, the clients send nothing.
    quiet: AtomicBool,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            operations: Default::default(),
            quiet: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The operations, and the hub each was sent to.
    fn take(&self) -> (Vec<Operation<SetInput, SetOutput>>, Vec<String>) {
        std::mem::take(&mut *self.operations.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .unzip()
    }
}

/// The clients' tasks, stopped when dropped: a run that fails half-way leaves none behind.
struct Clients {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A client running `flotilla` in the agents' namespace against a hub of its choice.
struct Caller {
    net: Arc<Network>,
    apis: Vec<String>,
    ca: PathBuf,
    token: String,
}

impl Caller {
    fn new(net: &Arc<Network>, hubs: &Hubs, token: &str) -> Caller {
        Caller {
            net: net.clone(),
            apis: hubs.apis.values().cloned().collect(),
            ca: hubs.ca_file(),
            token: token.to_owned(),
        }
    }

    /// Creates and lists tokens named from `pool` until `stop`, recording each call.
    async fn work(
        &self,
        client: u64,
        seed: u64,
        pool: &[String],
        stop: &AtomicBool,
        log: &Recorder,
    ) {
        let mut rng = Rng(seed);
        while !stop.load(Ordering::Relaxed) {
            if log.quiet.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let target = rng.below(self.apis.len() as u64) as usize;
            let (api, served_by) = (&self.apis[target], hub(target as u64 + 1));
            let name = &pool[rng.below(pool.len() as u64) as usize];
            let input = match rng.below(5) {
                0 | 1 => SetInput::Add(name.clone()),
                2 => SetInput::Remove(name.clone()),
                _ => SetInput::Contains(name.clone()),
            };
            let args: Vec<&str> = match &input {
                SetInput::Add(_) => vec!["token", "create", name, "--role", "viewer", "-o", "json"],
                SetInput::Remove(_) => vec!["token", "revoke", name, "-o", "json"],
                SetInput::Contains(_) => vec!["token", "list", "-o", "json"],
            };
            let call = log.now();
            let answer = self.call(api, &args).await;
            let ret = log.now();
            let mut operations = log.operations.lock().unwrap_or_else(|e| e.into_inner());
            let output = match (&input, answer) {
                (SetInput::Add(_), Answer::Done(_)) => Some(SetOutput::Added),
                (SetInput::Add(_), Answer::Refused(e)) if e.contains("already exists") => {
                    Some(SetOutput::AlreadyPresent)
                }
                (SetInput::Remove(_), Answer::Done(_)) => Some(SetOutput::Removed),
                (SetInput::Remove(_), Answer::Refused(e)) if e.contains("no unrevoked token") => {
                    Some(SetOutput::Absent)
                }
                (SetInput::Contains(_), Answer::Done(listed)) => {
                    let listed: BTreeSet<&str> = listed
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|t| t["revoked"].is_null())
                        .filter_map(|t| t["name"].as_str())
                        .collect();
                    for name in pool {
                        let operation = Operation {
                            client,
                            input: SetInput::Contains(name.clone()),
                            output: Some(SetOutput::Contains(listed.contains(name.as_str()))),
                            call,
                            ret,
                        };
                        operations.push((operation, served_by.clone()));
                    }
                    continue;
                }
                // A read that failed changed nothing and told nothing.
                (SetInput::Contains(_), _) => continue,
                _ => None,
            };
            let operation = Operation {
                client,
                input,
                output,
                call,
                ret,
            };
            operations.push((operation, served_by));
        }
    }

    async fn call(&self, api: &str, args: &[&str]) -> Answer {
        let Ok(bin) = binaries::FLOTILLA.path() else {
            return Answer::Unknown;
        };
        let mut command = self.net.command("agents", bin);
        command
            .args(args)
            .env("FLOTILLA_CONFIG", "/nonexistent/flotilla/config.yaml")
            .env("FLOTILLA_HUB", api)
            .env("FLOTILLA_CA_FILE", &self.ca)
            .env("FLOTILLA_TOKEN", &self.token)
            .env_remove("FLOTILLA_INSECURE");
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        match tokio::time::timeout(CALL_TIMEOUT, command.output()).await {
            Ok(Ok(output)) if output.status.success() => {
                match serde_json::from_slice(&output.stdout) {
                    Ok(value) => Answer::Done(value),
                    Err(_) => Answer::Unknown,
                }
            }
            Ok(Ok(output)) => Answer::Refused(String::from_utf8_lossy(&output.stderr).into()),
            _ => Answer::Unknown,
        }
    }
}

/// What a call came back with.
enum Answer {
    /// Success, and what it printed.
    Done(serde_json::Value),
    /// An error, as the CLI printed it: a refusal, or an outcome it could not know.
    Refused(String),
    /// No answer in time.
    Unknown,
}

/// The history, per token name, against a set; `served_by` names the hub each operation was
/// sent to (the final reads have none).
fn check_history(history: &[Operation<SetInput, SetOutput>], served_by: &[String]) -> Result<()> {
    check_by_key(&SetModel, history, |input| input.name().to_owned()).map_err(|violation| {
        // The operations around the culprit, which come last in call order.
        let shown = violation.ops.len().saturating_sub(12);
        let sent: Vec<String> = violation.ops[shown..]
            .iter()
            .map(|&op| {
                let hub = served_by
                    .get(op)
                    .map_or("the converged state", String::as_str);
                format!("#{op} → {hub}")
            })
            .collect();
        anyhow::anyhow!(
            "the Admin API history is not linearizable:\n{violation}\nlast ones sent to: {}",
            sent.join(", ")
        )
    })
}

/// Names a create acknowledged after every revoke of it had returned, yet absent from `kept`.
fn lost_writes(history: &[Operation<SetInput, SetOutput>], kept: &BTreeSet<String>) -> Vec<String> {
    let mut lost = BTreeSet::new();
    for added in history
        .iter()
        .filter(|op| op.output == Some(SetOutput::Added))
    {
        let name = added.input.name();
        let revoked_later = history.iter().any(|op| {
            op.input == SetInput::Remove(name.to_owned())
                && (op.output.is_none() || op.ret >= added.call)
        });
        if !revoked_later && !kept.contains(name) {
            lost.insert(name.to_owned());
        }
    }
    lost.into_iter().collect()
}

/// Replays node `id`'s log (it has stopped) and checks the rollout invariants at every entry.
fn check_log(hubs: &Hubs, id: u64, applied: u64) -> Result<()> {
    let mut broken = Vec::new();
    let replayed = raft_log::replay_steps(&hubs.data_dir(id), id, applied, |step| {
        if !step.took_effect {
            return;
        }
        for violation in invariants::violations(step.before, step.after, step.command) {
            broken.push(format!(
                "entry {} ({}): {violation}",
                step.index,
                step.command.kind()
            ));
        }
    })?;
    if id == ARCHIVE {
        replayed.whole()?;
    }
    ensure!(
        broken.is_empty(),
        "node {id}'s log breaks the rollout invariants:\n{}",
        broken.join("\n")
    );
    let from = match replayed.snapshot {
        0 | raft_log::FOUNDING_SNAPSHOT => String::new(),
        at => format!(" after its snapshot at {at}"),
    };
    eprintln!(
        "node {id}: {} entries{from} replayed through {}, every rollout invariant kept",
        replayed.entries, replayed.last
    );
    Ok(())
}

/// splitmix64: a seeded schedule replays the same on any machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
