//! A node whose data file lost its tail (truncated after a SIGKILL) must never rejoin with a
//! silently shorter log: it either refuses to start with an error naming the data dir and the
//! way out, or it starts and converges to exactly the group's state. The way out — remove the
//! member, wipe its dir, start it with `--join`, add it back — is then followed with the real
//! `flotilla-hub member` commands.

use crate::support::process as support;

use std::process::{Command as Process, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use support::{ProcessGroup, hub_bin, missing, write_all};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_log_lost_its_tail_never_diverges_silently() -> Result<()> {
    let mut group = ProcessGroup::start(3).await?;
    let within = Duration::from_secs(20);
    let leader = group.leader(within).await?;
    let mut acked = write_all(&group, (0..80).map(|i| format!("c{i}"))).await;
    assert_eq!(acked.len(), 80);
    group.converged(within).await?;

    let victim = *group
        .addresses
        .keys()
        .find(|id| **id != leader)
        .context("follower")?;
    group.kill(victim)?;
    let file = group.data_dir(victim).join("raft.redb");
    let len = std::fs::metadata(&file)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)?
        .set_len(len / 2)?;
    acked.extend(write_all(&group, (0..20).map(|i| format!("d{i}"))).await);

    let mut restarted = group.command(victim).stderr(Stdio::piped()).spawn()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let exited = loop {
        if let Some(status) = restarted.try_wait()? {
            break Some(status);
        }
        if tokio::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    match exited {
        Some(status) => {
            let output = restarted.wait_with_output()?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!status.success(), "a damaged node exited cleanly: {stderr}");
            let dir = group.data_dir(victim).display().to_string();
            assert!(
                stderr.contains(&dir),
                "error does not name the data dir: {stderr}"
            );
            assert!(stderr.contains("damaged"), "{stderr}");
            assert!(
                stderr.contains("member remove"),
                "error does not say what to do: {stderr}"
            );

            eprintln!("the damaged node refused to start: {stderr}");

            // The way out the error names.
            let hub = group.addresses[&leader].clone();
            let id = victim.to_string();
            cli(&["member", "remove", "--hub", &hub, "--id", &id])?;
            std::fs::remove_dir_all(group.data_dir(victim))?;
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
            .arg(group.data_dir(victim))
            .arg("--listen")
            .arg(&group.addresses[&victim])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            group.children.insert(victim, join.spawn()?);
            let address = group.addresses[&victim].clone();
            cli(&[
                "member",
                "add",
                "--hub",
                &hub,
                "--id",
                &id,
                "--address",
                &address,
            ])?;
        }
        None => {
            // It started: it must hold exactly what the others hold.
            eprintln!("the damaged node started; checking it converges to the group's state");
            group.children.insert(victim, restarted);
        }
    }
    acked.extend(write_all(&group, (0..10).map(|i| format!("e{i}"))).await);
    let state = group.converged(within).await?;
    let lost = missing(&state, &acked);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let status = cli(&["status", "--hub", &group.addresses[&victim]])?;
    assert!(status.contains(&format!("node {victim} ")), "{status}");
    Ok(())
}
