//! Rendered content lives outside the raft log: the log carries hashes and object ids in
//! entries under 1 MiB, the snapshot does not grow with the content, and every node — a
//! follower, a node restarted after missing a render, and a node added later (from a snapshot)
//! — holds and serves the very bytes the leader rendered, fetched from peers and checked.

use crate::support::group as support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use flotilla_hub::node::NodeHandle;
use flotilla_hub::state::source::{Blob, BlobHash, RevisionRef};
use flotilla_hub::state::{Command, Timestamp};
use flotilla_testkit::protocol::{bundle, config_map_of, noise, render_entries};
use support::{TestGroup, register};

const MIB: usize = 1024 * 1024;

/// Revision `commit` rendered for `clusters` × `bundles`, each blob its own (per-cluster
/// values) and `noise` bytes of incompressible data: the blobs and the entries recording them.
fn render(
    commit: &str,
    clusters: usize,
    bundles: usize,
    noise_bytes: usize,
) -> Result<(Vec<Blob>, Vec<Command>)> {
    let revision = RevisionRef {
        source: "origin".into(),
        commit: commit.into(),
    };
    let mut blobs = Vec::new();
    let mut per_cluster = BTreeMap::new();
    for c in 0..clusters {
        let cluster = format!("cluster-{c:04}");
        let mut hashes = BTreeMap::new();
        for b in 0..bundles {
            let name = format!("bundle-{b}");
            let seed = (c * bundles + b) as u64 + commit.len() as u64 * 7_919;
            let data = noise(seed, noise_bytes);
            let rendered = bundle(
                &name,
                vec![config_map_of(
                    &cluster,
                    &name,
                    &[("commit", commit), ("data", &data)],
                )],
            )?;
            let blob = Blob::from_content(&rendered.to_blob())?;
            hashes.insert(name, blob.hash);
            blobs.push(blob);
        }
        per_cluster.insert(cluster, hashes);
    }
    let mut entries = vec![Command::RecordFetch {
        source: "origin".into(),
        url: "file:///fleet".into(),
        commit: commit.into(),
        at: Timestamp(1),
    }];
    entries.extend(render_entries(
        &revision,
        per_cluster,
        &blobs,
        Timestamp(2),
    )?);
    Ok((blobs, entries))
}

/// Waits until `node` has applied `index` and holds every blob its state references, each
/// byte-identical to `expected`; returns how long it took.
async fn holds_all(
    node: &NodeHandle,
    index: u64,
    expected: &BTreeMap<BlobHash, Blob>,
    within: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    node.wait_applied(index).await?;
    loop {
        let referenced: Vec<BlobHash> = node.state().referenced_blobs().copied().collect();
        let store = node.content().store();
        let missing = referenced.iter().filter(|h| !store.holds(h)).count();
        if missing == 0 {
            for hash in &referenced {
                let held = store.get(hash)?.context("held blob unreadable")?;
                let want = expected
                    .get(hash)
                    .context("a blob the test did not render")?;
                ensure!(held == *want, "node {}: blob {hash} differs", node.id());
                held.content()?;
            }
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!(
                "node {}: {missing} of {} referenced blobs still missing after {within:?}",
                node.id(),
                referenced.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn propose_render(leader: &NodeHandle, blobs: Vec<Blob>, entries: &[Command]) -> Result<u64> {
    leader.replicate(blobs).await?;
    let mut index = 0;
    for entry in entries {
        index = leader.propose(entry).await?.index;
    }
    Ok(index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_restarted_and_new_nodes_serve_the_leaders_bytes_from_outside_the_log()
-> Result<()> {
    support::init_tracing();
    let within = Duration::from_secs(20);
    let mut group = TestGroup::start(3, 11, 20).await?;
    let leader_id = group.leader(within).await?;
    let leader = group.node(leader_id)?.clone();
    let empty = leader.state().to_snapshot()?.len();

    // 1,200 clusters × 5 bundles of 2 KB that zstd cannot shrink: 12 MB of content.
    let (blobs, entries) = render("first", 1_200, 5, 2_000)?;
    let content: usize = blobs.iter().map(|b| b.compressed.len()).sum();
    let sizes: Vec<usize> = entries[1..]
        .iter()
        .map(|e| e.encode().map(|b| b.len()))
        .collect::<Result<_, _>>()?;
    ensure!(
        sizes.len() > 1,
        "the render was meant to need several entries: {sizes:?}"
    );
    ensure!(
        sizes.iter().all(|s| *s <= MIB),
        "an entry over 1 MiB: {sizes:?}"
    );
    let mut expected: BTreeMap<BlobHash, Blob> =
        blobs.iter().map(|b| (b.hash, b.clone())).collect();
    let index = propose_render(&leader, blobs, &entries).await?;
    // The snapshot holds per blob its hash, size and object ids, whatever its content: the
    // same fleet with 50 bytes of data per bundle instead of 2,000 gives a snapshot of the
    // same size (but for the sizes' varints).
    let snapshot = leader.state().to_snapshot()?.len();
    let per_blob = (snapshot - empty) / expected.len();
    ensure!(
        per_blob <= 256,
        "the snapshot grew by {} bytes ({per_blob} per blob) for {content} bytes of content",
        snapshot - empty
    );
    let (_, small) = render("first", 1_200, 5, 50)?;
    let mut offline = flotilla_hub::state::State::default();
    for entry in &small {
        offline.apply(entry)?;
    }
    let small_growth =
        offline.to_snapshot()?.len() - flotilla_hub::state::State::default().to_snapshot()?.len();
    let growth = snapshot - empty;
    ensure!(
        growth.abs_diff(small_growth) <= expected.len() * 2,
        "snapshot growth {growth} bytes with 2 KB per bundle, {small_growth} with 50 bytes"
    );
    for node in group.live() {
        holds_all(&node, index, &expected, within).await?;
    }

    // A follower misses a render while down; restarted, it fetches what it lacks.
    let down = *group
        .live_ids()
        .iter()
        .find(|id| **id != leader_id)
        .context("a follower")?;
    group.crash(down).await?;
    let (blobs, entries) = render("second", 100, 2, 2_000)?;
    expected.extend(blobs.iter().map(|b| (b.hash, b.clone())));
    let index = propose_render(&leader, blobs, &entries).await?;
    // Enough entries for every node to compact: the joiner below starts from a snapshot.
    for i in 0..30 {
        leader.propose(&register(&format!("filler-{i}"))).await?;
    }
    group.restart(down).await?;
    let restarted = group.node(down)?.clone();
    let took = holds_all(&restarted, index, &expected, within).await?;
    tracing::info!(?took, "restarted node holds every blob");

    // A new node joins from a snapshot and fetches every blob from its peers.
    group.start_joiner(4).await?;
    let address = group.addresses[&4].clone();
    leader.add_member(4, &address).await?;
    let joiner = group.node(4)?.clone();
    let index = leader.applied_index();
    let took = holds_all(&joiner, index, &expected, within).await?;
    tracing::info!(?took, "new node holds every blob");
    // And serves them: through the path agents are served by, and to a peer that asks.
    let some: Vec<BlobHash> = joiner
        .state()
        .referenced_blobs()
        .take(20)
        .copied()
        .collect();
    for hash in &some {
        ensure!(
            joiner.blob(hash).await? == expected[hash],
            "blob {hash} served differently"
        );
    }

    // Forgetting a revision leaves its blobs unreferenced: a node's collection removes them
    // (here without the grace a proposal in flight needs) and keeps the rest.
    let first = RevisionRef {
        source: "origin".into(),
        commit: "first".into(),
    };
    leader
        .propose(&Command::ForgetRevision {
            revision: first,
            at: Timestamp(3),
        })
        .await?;
    joiner.wait_applied(leader.applied_index()).await?;
    let live: BTreeSet<BlobHash> = joiner.state().referenced_blobs().copied().collect();
    ensure!(
        live.len() == 200,
        "{} blobs referenced after forgetting",
        live.len()
    );
    let store = joiner.content().store().clone();
    let still_dead = |candidates: &[BlobHash]| {
        let state = joiner.state();
        candidates
            .iter()
            .filter(|h| !state.references_blob(h))
            .copied()
            .collect()
    };
    let collected = store.collect(&|h| live.contains(h), &still_dead, Duration::ZERO)?;
    ensure!(
        collected == 6_000,
        "collected {collected} blobs, not the first revision's 6000"
    );
    ensure!(
        live.iter().all(|h| store.holds(h)),
        "a live blob was collected"
    );
    group.shutdown().await;
    Ok(())
}
