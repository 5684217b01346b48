//! A child process for a test: its stdout and stderr read line by line into memory (so it never
//! blocks on a full pipe and a failing test can show what it said), SIGTERM on request, and
//! SIGKILL when dropped, so a failing test leaves nothing running.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parking_lot::{Condvar, Mutex};

/// Lines of stderr kept (the newest): enough to see why a process failed.
const STDERR_TAIL: usize = 400;

#[derive(Default)]
struct Output {
    stdout: Vec<String>,
    stderr: VecDeque<String>,
    /// Lines printed on stderr since the start, kept or not.
    stderr_lines: u64,
    /// Both pipes closed.
    closed: usize,
}

/// A running child process, killed when dropped.
pub struct Process {
    name: String,
    child: Child,
    output: Arc<(Mutex<Output>, Condvar)>,
}

impl Process {
    /// Starts `command` with piped stdout and stderr; `name` labels it in errors.
    pub fn spawn(name: impl Into<String>, mut command: Command) -> anyhow::Result<Process> {
        let name = name.into();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        read_lines(stdout, Arc::clone(&output), false);
        read_lines(stderr, Arc::clone(&output), true);
        Ok(Process {
            name,
            child,
            output,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.output.0.lock().stdout.clone()
    }

    /// The last lines printed on stderr.
    pub fn stderr_tail(&self) -> String {
        let output = self.output.0.lock();
        output.stderr.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Waits until a stdout line satisfies `matches` and returns it; fails if the process
    /// exits or `timeout` passes first, showing what it printed.
    pub fn wait_for_stdout(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let mut looked = 0;
        self.wait_for(what, timeout, |output| {
            let found = output.stdout[looked..].iter().find(|l| matches(l)).cloned();
            looked = output.stdout.len();
            found
        })
    }

    /// How many lines it has printed on stderr so far: a mark for [`Process::wait_for_stderr`].
    pub fn stderr_lines(&self) -> u64 {
        self.output.0.lock().stderr_lines
    }

    /// Waits until a stderr line printed after the first `after` satisfies `matches` and
    /// returns it; fails if the process exits or `timeout` passes first.
    pub fn wait_for_stderr(
        &self,
        after: u64,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        self.wait_for(what, timeout, |output| {
            let first_kept = output.stderr_lines - output.stderr.len() as u64;
            let skip = after.saturating_sub(first_kept) as usize;
            output
                .stderr
                .iter()
                .skip(skip)
                .find(|l| matches(l))
                .cloned()
        })
    }

    /// Waits until `find` finds a line in what the process printed, checking again at every
    /// new line; fails if the process exits or `timeout` passes first, showing its output.
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut find: impl FnMut(&Output) -> Option<String>,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.output;
        let mut output = lock.lock();
        loop {
            if let Some(line) = find(&output) {
                return Ok(line);
            }
            let ended = if output.closed == 2 {
                "exited before printing"
            } else if ready.wait_until(&mut output, deadline).timed_out() {
                "did not print in time"
            } else {
                continue;
            };
            bail!(
                "{} {ended} {what} (waited up to {timeout:?}); stdout:\n{}\nstderr:\n{}",
                self.name,
                output.stdout.join("\n"),
                output.stderr.iter().cloned().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.pid());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM; stderr:\n{}",
                    self.name,
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its exit status if it has ended, without waiting.
    pub fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_lines(pipe: impl Read + Send + 'static, output: Arc<(Mutex<Output>, Condvar)>, err: bool) {
    std::thread::spawn(move || {
        let (lock, ready) = &*output;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut output = lock.lock();
            if err {
                if output.stderr.len() == STDERR_TAIL {
                    output.stderr.pop_front();
                }
                output.stderr.push_back(line);
                output.stderr_lines += 1;
            } else {
                output.stdout.push(line);
            }
            ready.notify_all();
        }
        lock.lock().closed += 1;
        ready.notify_all();
    });
}
