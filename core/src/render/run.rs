//! Running a renderer: its input written, its output bounded, its time limited, and a
//! cancelled render stopped.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::repository::Cancel;

const MAX_STDERR_BYTES: u64 = 16 * 1024;

/// Why a run produced no output.
pub(crate) enum RunFailure {
    Spawn(String),
    Failed(String),
    Timeout,
    TooLarge,
    Cancelled,
}

/// How often a run waiting for its tool looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Runs a command, writing `stdin` to it (when given), reading at most `max_stdout` bytes
/// of output, killing it after `timeout`.
pub(crate) fn run_bounded(
    mut command: Command,
    stdin: Option<Vec<u8>>,
    max_stdout: u64,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<Vec<u8>, RunFailure> {
    let deadline = Instant::now() + timeout;
    let mut child = command
        .spawn()
        .map_err(|e| RunFailure::Spawn(e.to_string()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits without reading all of it closes the pipe: its exit status says
        // what went wrong, not the write.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (stdout_tx, stdout_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(stdout) = stdout {
            let _ = stdout.take(max_stdout + 1).read_to_end(&mut bytes);
        }
        let _ = stdout_tx.send(bytes);
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(stderr) = stderr {
            let _ = stderr.take(MAX_STDERR_BYTES).read_to_end(&mut bytes);
        }
        bytes
    });
    let received = loop {
        if cancel.is_cancelled() {
            break Err(RunFailure::Cancelled);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(RunFailure::Timeout);
        }
        match stdout_rx.recv_timeout(left.min(CANCEL_POLL)) {
            Ok(bytes) => break Ok(bytes),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(RunFailure::Timeout),
        }
    };
    let outcome = match received {
        Ok(bytes) if bytes.len() as u64 > max_stdout => Err(RunFailure::TooLarge),
        Ok(bytes) => wait_until(&mut child, deadline).map(|status| (status, bytes)),
        Err(failure) => Err(failure),
    };
    if outcome.is_err() {
        // The process may be blocked writing or still working: stop it.
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = stderr_reader.join().unwrap_or_default();
    let (status, stdout) = outcome?;
    if status.success() {
        return Ok(stdout);
    }
    let message = String::from_utf8_lossy(&stderr).trim().to_owned();
    Err(RunFailure::Failed(if message.is_empty() {
        format!("exited with {status}")
    } else {
        message
    }))
}

fn wait_until(child: &mut Child, deadline: Instant) -> Result<ExitStatus, RunFailure> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => return Err(RunFailure::Timeout),
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(RunFailure::Spawn(e.to_string())),
        }
    }
}
