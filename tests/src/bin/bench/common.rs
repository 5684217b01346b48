//! What several benchmarks share: finding the hub binary, the host's load, timings, and the
//! bundle the protocol benchmarks stream.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use flotilla_core::render::{ObjectId, RenderedBundle, RenderedObject};
use flotilla_core::spec::DriftMode;
use serde_json::{Value, json};

/// `flotilla-hub` next to the running `bench`, or an error saying how to build it.
pub(crate) fn default_hub_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name("flotilla-hub");
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p flotilla-hub`, or pass --hub-bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// The 1-minute load average, reported beside each figure.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Milliseconds since `started`, to a tenth.
pub(crate) fn millis_since(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

/// A bundle named `bench`: a Namespace and `objects` ConfigMaps, each holding `data` and its
/// index.
pub(crate) fn config_maps(objects: usize, data: &Value) -> anyhow::Result<RenderedBundle> {
    let mut values = vec![json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "bench"}})];
    for i in 0..objects {
        let mut fields = data.clone();
        fields["index"] = json!(i.to_string());
        values.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": "bench"},
            "data": fields}));
    }
    let mut objects = values
        .into_iter()
        .map(|object| {
            let object = flotilla_core::hash::canonical_json(object);
            let id = ObjectId::of(&object).map_err(anyhow::Error::msg)?;
            Ok(RenderedObject { id, object })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    objects.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(RenderedBundle {
        bundle: "bench".into(),
        drift: DriftMode::Correct,
        depends_on: Vec::new(),
        objects,
        allow: flotilla_core::Allow::default(),
        create_namespace: None,
    })
}

/// A worker process of a benchmark; killed when dropped.
pub(crate) struct Worker {
    child: std::process::Child,
}

impl Worker {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bench SUBCOMMAND` with `plan` as one JSON line on its stdin; each JSON line it
/// prints comes to `lines` with `index`.
pub(crate) fn spawn_worker(
    subcommand: &str,
    index: usize,
    plan: &impl serde::Serialize,
    lines: tokio::sync::mpsc::UnboundedSender<(usize, Value)>,
) -> anyhow::Result<Worker> {
    use std::io::{BufRead, Write};
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg(subcommand)
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting bench {subcommand}: {e}"))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    writeln!(stdin, "{}", serde_json::to_string(plan)?)?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = lines.send((index, value));
            }
        }
    });
    Ok(Worker { child })
}

/// Prints one JSON line on stdout, as a worker tells its coordinator.
pub(crate) fn emit(line: &Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
