//! Real processes: a full-group restart keeps every acknowledged write and the same state, and
//! a data dir is only ever opened as the node it belongs to.

use crate::support::process as support;

use std::time::Duration;

use anyhow::Result;
use support::{ProcessGroup, missing, write_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_group_restart_after_sigkill_keeps_all_state() -> Result<()> {
    let mut group = ProcessGroup::start(3).await?;
    let within = Duration::from_secs(20);
    group.leader(within).await?;
    // Enough writes to cross a compaction (every 50 entries): state comes back from the
    // snapshot plus the log after it.
    let acked = write_all(&group, (0..120).map(|i| format!("c{i}"))).await;
    assert_eq!(acked.len(), 120);
    let before = group.converged(within).await?;

    for id in group.running() {
        group.kill(id)?;
    }
    for id in 1..=3 {
        group.spawn(id)?;
    }
    group.leader(within).await?;
    let after = group.converged(within).await?;
    assert!(
        missing(&after, &acked).is_empty(),
        "writes lost across a full restart"
    );
    assert_eq!(
        after.hash()?,
        before.hash()?,
        "state changed across a restart"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_node_is_refused_with_a_clear_error() -> Result<()> {
    let mut group = ProcessGroup::start(1).await?;
    group.leader(Duration::from_secs(20)).await?;
    group.kill(1)?;

    let dir = group.data_dir(1);
    let start = |id: &str, group_name: &str| -> Result<std::process::Command> {
        let mut command = std::process::Command::new(support::hub_bin());
        command
            .args(["--id", id, "--group", group_name])
            .args([
                "--api-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--listen",
            ])
            .arg(support::free_address()?)
            .arg("--data-dir")
            .arg(&dir);
        Ok(command)
    };
    let output = group.run_to_exit(start("2", "flotilla")?)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started on another node's data dir"
    );
    let shown = dir.display().to_string();
    assert!(
        stderr.contains(&shown),
        "error does not name the data dir: {stderr}"
    );
    assert!(stderr.contains("belongs to node 1"), "{stderr}");
    assert!(
        stderr.contains("--id 1"),
        "error does not say what to do: {stderr}"
    );

    let output = group.run_to_exit(start("1", "staging-hub")?)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started on another group's data dir"
    );
    assert!(stderr.contains("group 'flotilla'"), "{stderr}");
    Ok(())
}
