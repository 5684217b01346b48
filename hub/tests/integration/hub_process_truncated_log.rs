//! A node whose log lost committed entries must never rejoin with a silently shorter log: it
//! refuses to start, exiting with status 1 and one error line that names its data dir, what is
//! damaged, and the way out. Meanwhile the other two nodes, a majority, go on acknowledging
//! writes. The way out — remove the member, move its dir away, start it with `--join`, add it
//! back — is then followed with the real `flotilla-hub member` commands, and the node comes
//! back a member holding exactly the group's state.
//!
//! Three ways to lose the tail: the data file truncated after a SIGKILL at a page boundary, as
//! a file system that loses whole blocks leaves it (the database finds pages missing), or in
//! the middle of a page (the database refuses the file's length), and the log's committed
//! entries gone from a file that is otherwise whole (the log's own check refuses it: it ends
//! before its commit index).

use crate::support::process as support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_consensus::storage::{Identity, RaftStore};
use flotilla_hub::config::DEFAULT_GROUP;
use raft::{GetEntriesContext, Storage};
use support::{ProcessGroup, hub_bin, missing, write_all};

/// What the refusal says after the detail, word for word: the way out.
const WAY_OUT: &str = "); this node cannot rejoin safely with it: remove the node from the group \
                       (`flotilla-hub member remove`), move the data dir away, and add the node \
                       back with an empty data dir so it catches up from its peers";

fn cli(args: &[&str]) -> Result<String> {
    // The group runs without TLS (see support/process.rs).
    let output = Process::new(hub_bin())
        .args(args)
        .arg("--insecure")
        .output()?;
    if !output.status.success() {
        bail!(
            "flotilla-hub {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// redb's page size (the default, which the hub keeps).
const PAGE: u64 = 4096;

/// How the stopped node's log loses its tail.
enum Damage {
    /// The data file cut to about half its length, at a page boundary.
    TruncatedAtPageBoundary,
    /// The data file cut to about half its length, in the middle of a page.
    TruncatedMidPage,
    /// Every log entry after the first one past the snapshot deleted, the hard state (and so
    /// the commit index) kept.
    CommittedTailLost,
}

/// Deletes the entries of node `id`'s log (in `dir`, the node stopped) after the first one
/// past its snapshot, through the log's own API; returns the detail the node's refusal must
/// give.
fn lose_committed_tail(dir: &Path, id: u64) -> Result<String> {
    let identity = Identity {
        group: DEFAULT_GROUP.to_owned(),
        node_id: id,
    };
    let mut store = RaftStore::open(dir, &identity)?;
    let commit = store.hard_state().commit;
    let keep = store.first_index()?;
    ensure!(
        commit > keep,
        "node {id}'s log holds no committed entry past {keep} to lose (commit {commit})"
    );
    let first = store.entries(keep, keep + 1, None, GetEntriesContext::empty(false))?;
    // Appending entry `keep` again replaces everything from `keep` on: the log now ends there.
    store.append(&first, true)?;
    ensure!(store.last_index()? == keep, "the tail is still there");
    Ok(format!(
        "the log ends at entry {keep} but entry {commit} was committed: its tail was lost"
    ))
}

async fn a_node_that_lost_committed_entries_refuses_to_start(damage: Damage) -> Result<()> {
    let mut group = ProcessGroup::start(3).await?;
    let within = Duration::from_secs(20);
    let leader = group.leader(within).await?;
    let mut acked = write_all(&group, (0..80).map(|i| format!("c{i}"))).await;
    assert_eq!(acked.len(), 80, "a healthy group refused writes");
    group.converged(within).await?;

    let victim = *group
        .addresses
        .keys()
        .find(|id| **id != leader)
        .context("follower")?;
    group.kill(victim)?;
    let dir = group.data_dir(victim);
    let truncate = |to: u64| -> Result<Option<String>> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("raft.redb"))?
            .set_len(to)?;
        Ok(None)
    };
    let len = std::fs::metadata(dir.join("raft.redb"))?.len();
    let detail = match damage {
        Damage::TruncatedAtPageBoundary => truncate(len / 2 / PAGE * PAGE)?,
        Damage::TruncatedMidPage => truncate(len / 2 / PAGE * PAGE + PAGE / 2)?,
        Damage::CommittedTailLost => Some(lose_committed_tail(&dir, victim)?),
    };
    // The two others are a majority: every write goes on being acknowledged.
    let during = write_all(&group, (0..20).map(|i| format!("d{i}"))).await;
    assert_eq!(
        during.len(),
        20,
        "the two healthy nodes stopped acknowledging writes; acknowledged only {during:?}"
    );
    acked.extend(during);

    // The damaged node refuses to start: it exits on its own, at once.
    let mut restarted = group.command(victim).stderr(Stdio::piped()).spawn()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = restarted.try_wait()? {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = restarted.kill();
            let output = restarted.wait_with_output()?;
            bail!(
                "the node whose log lost committed entries was still running 10 s after it \
                 started; it must refuse to start. stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = restarted.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(1), "exit status {status}: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    let [error] = errors[..] else {
        panic!("not exactly one error line: {stderr}");
    };
    let named = format!("error: data dir {} is damaged (", dir.display());
    let said = error
        .strip_prefix(&named)
        .and_then(|rest| rest.strip_suffix(WAY_OUT))
        .with_context(|| {
            format!("the error does not name the data dir {named:?} and the way out: {error}")
        })?;
    match &detail {
        Some(expected) => assert_eq!(said, expected, "{error}"),
        None => assert!(
            !said.is_empty(),
            "the error says nothing of the damage: {error}"
        ),
    }
    eprintln!("the damaged node refused to start: {error}");

    // The group meanwhile still counts it as a member, and goes on without it.
    let members = |status: &flotilla_proto::v1::GroupStatus| -> BTreeSet<u64> {
        status.members.iter().map(|m| m.id).collect()
    };
    assert_eq!(
        members(&group.status(leader).await?),
        BTreeSet::from([1, 2, 3])
    );

    // The way out the error names.
    let hub = group.addresses[&leader].clone();
    let id = victim.to_string();
    let removed = cli(&["member", "remove", "--hub", &hub, "--id", &id])?;
    assert!(
        removed.starts_with(&format!("node {victim} removed at index ")),
        "{removed}"
    );
    let remaining: BTreeSet<u64> = group.running().into_iter().collect();
    let deadline = tokio::time::Instant::now() + within;
    while members(&group.status(leader).await?) != remaining {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "node {victim} still a member after `member remove`"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::rename(&dir, dir.with_extension("damaged"))?;
    let mut join = Process::new(hub_bin());
    join.args([
        "--id",
        &id,
        "--join",
        "--tick-ms",
        "20",
        "--election-ticks",
        "10",
        "--insecure",
    ])
    .args([
        "--api-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(&dir)
    .arg("--listen")
    .arg(&group.addresses[&victim])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    group.children.insert(victim, join.spawn()?);
    let address = group.addresses[&victim].clone();
    let added = cli(&[
        "member",
        "add",
        "--hub",
        &hub,
        "--id",
        &id,
        "--address",
        &address,
    ])?;
    assert!(
        added.starts_with(&format!("node {victim} added at index ")),
        "{added}"
    );
    // Writes go round the running nodes, the one back included: wait until it serves and
    // knows the leader (it was started just before `member add` and may still be opening).
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(status) = group.status(victim).await
            && status.leader != 0
        {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "node {victim} did not rejoin within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let after = write_all(&group, (0..10).map(|i| format!("e{i}"))).await;
    assert_eq!(after.len(), 10, "writes refused after the node came back");
    acked.extend(after);
    // Every node, the one back from an empty dir included, holds exactly what was acknowledged.
    let state = group.converged(within).await?;
    let lost = missing(&state, &acked);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let held: BTreeSet<String> = state.clusters.keys().cloned().collect();
    assert_eq!(held, acked);
    let agreed = group.leader(within).await?;
    let status = group.status(victim).await?;
    assert_eq!(status.leader, agreed);
    assert_eq!(members(&status), BTreeSet::from([1, 2, 3]));
    let shown = cli(&["status", "--hub", &group.addresses[&victim]])?;
    assert!(shown.starts_with(&format!("node {victim} ")), "{shown}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_data_file_lost_whole_pages_refuses_to_start() -> Result<()> {
    a_node_that_lost_committed_entries_refuses_to_start(Damage::TruncatedAtPageBoundary).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_data_file_ends_mid_page_refuses_to_start() -> Result<()> {
    a_node_that_lost_committed_entries_refuses_to_start(Damage::TruncatedMidPage).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_log_lost_committed_entries_refuses_to_start() -> Result<()> {
    a_node_that_lost_committed_entries_refuses_to_start(Damage::CommittedTailLost).await
}
