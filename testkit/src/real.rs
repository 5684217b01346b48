//! Real Kubernetes clusters for tests (`scripts/k8s-up`, see k8s/README.md), and [`Target`]: one
//! test body run against the simulator and against a real cluster alike.
//!
//! Starting clusters takes 10 to 15 s and about 530 MiB each, so the tests of one test binary
//! share one set ([`RealClusters::shared`]) and keep apart by names ([`Target::name`]): each
//! test has its own namespaces, agent namespace, bundle names and CRD groups. nextest runs
//! every test in a process of its own, so the set is shared across processes: the first
//! process starts it under a lock, every process registers its pid, and a reaper process
//! (outside the test's process group, so it outlives a killed test) stops the clusters once
//! no registered process has been alive for a few seconds. A test that panics or is killed
//! therefore never leaves clusters running.
//!
//! Real clusters need the scripts, kubectl, openssl and the Kubernetes binaries built by
//! `scripts/k8s-build` (about 17 minutes cold, so a test never builds them itself). When any
//! is missing a test is skipped, saying SKIPPED and why, unless `CI=true`, where it fails.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Seconds the shared clusters outlive their last user, so that nextest's next test process
/// (started milliseconds later) finds them up.
const SHARED_GRACE_SECONDS: u32 = 8;

/// The reaper: `sh -c REAPER DIR ROOT GRACE`. It polls the pids registered in DIR/users and,
/// once none has been alive for GRACE seconds, takes DIR/lock (so no test registers meanwhile)
/// and stops the clusters. It ends early when the kubeconfig is gone (stopped by a `Drop`).
const REAPER: &str = r#"
dir=$1 root=$2 grace=$3 idle=0
while [ -e "$dir/kubeconfig" ]; do
  alive=0
  for f in "$dir"/users/*; do
    [ -e "$f" ] || continue
    if kill -0 "${f##*/}" 2>/dev/null; then alive=1; else rm -f "$f"; fi
  done
  if [ "$alive" = 1 ]; then idle=0; else idle=$((idle + 1)); fi
  if [ "$idle" -ge "$grace" ]; then
    exec 9>"$dir/lock"
    flock 9
    alive=0
    for f in "$dir"/users/*; do
      [ -e "$f" ] && kill -0 "${f##*/}" 2>/dev/null && alive=1
    done
    if [ "$alive" = 0 ]; then
      [ -e "$dir/kubeconfig" ] && "$root/scripts/k8s-down" "$dir/kubeconfig"
      rm -f "$dir/kubeconfig" "$dir/reaper.pid"
      exit 0
    fi
    exec 9>&-
    idle=0
  fi
  sleep 1
done
"#;

/// Real clusters started by `scripts/k8s-up`, with contexts `k8s-0` … `k8s-(n-1)`.
pub struct RealClusters {
    dir: PathBuf,
    kubeconfig: PathBuf,
    contexts: Vec<String>,
    /// Set for clusters this value started for itself: they stop when it is dropped.
    owned: Option<TempDir>,
}

impl RealClusters {
    /// Starts `n` clusters for the caller alone; they stop when the value is dropped (also when
    /// a test panics) or, should the process be killed, when the reaper sees it gone.
    /// Call [`RealClusters::available`] first: this fails when clusters cannot start here.
    pub fn start(n: usize) -> anyhow::Result<RealClusters> {
        if let Err(missing) = prerequisites() {
            bail!("real clusters cannot start: {missing}");
        }
        let root = repository_root();
        let dir = tempfile::Builder::new()
            .prefix("flotilla-real-")
            .tempdir()?;
        let lock = lock(dir.path())?;
        up(&root, dir.path(), n, 1)?;
        register(dir.path())?;
        drop(lock);
        Ok(RealClusters {
            dir: dir.path().to_path_buf(),
            kubeconfig: dir.path().join("kubeconfig"),
            contexts: contexts(n),
            owned: Some(dir),
        })
    }

    /// The `n` clusters every test of this test binary shares (started on first use), or `None`
    /// when real clusters cannot run here: then the test is skipped with SKIPPED and the reason
    /// printed, and under `CI=true` this is an error instead.
    pub fn shared(test: &str, n: usize) -> anyhow::Result<Option<Arc<RealClusters>>> {
        static SHARED: OnceLock<parking_lot::Mutex<Vec<Arc<RealClusters>>>> = OnceLock::new();
        if !RealClusters::available(test)? {
            return Ok(None);
        }
        let mut sets = SHARED
            .get_or_init(|| parking_lot::Mutex::new(Vec::new()))
            .lock();
        if let Some(set) = sets.iter().find(|set| set.contexts.len() == n) {
            return Ok(Some(Arc::clone(set)));
        }
        let set = Arc::new(RealClusters::join_or_start(n)?);
        sets.push(Arc::clone(&set));
        Ok(Some(set))
    }

    /// Starts `n` clusters for `test` alone (see [`RealClusters::start`]), off the runtime's
    /// threads, or `None` when the test is skipped (see [`RealClusters::available`]).
    pub async fn start_for(test: &str, n: usize) -> anyhow::Result<Option<RealClusters>> {
        if !RealClusters::available(test)? {
            return Ok(None);
        }
        Ok(Some(
            tokio::task::spawn_blocking(move || RealClusters::start(n)).await??,
        ))
    }

    /// Whether real clusters can start here. When they cannot, `test` is skipped: false, with
    /// SKIPPED and the reason printed; under `CI=true` this is an error instead.
    pub fn available(test: &str) -> anyhow::Result<bool> {
        match prerequisites() {
            Ok(()) => Ok(true),
            Err(missing) if std::env::var("CI").as_deref() == Ok("true") => {
                bail!("{test}: real clusters cannot start, and CI=true requires them: {missing}")
            }
            Err(missing) => {
                eprintln!("SKIPPED {test} on real clusters: {missing}");
                Ok(false)
            }
        }
    }

    /// Joins the set another process of this test binary started, or starts it.
    fn join_or_start(n: usize) -> anyhow::Result<RealClusters> {
        let root = repository_root();
        let executable = std::env::current_exe().context("the test executable's path")?;
        let key = hex::encode(&Sha256::digest(executable.as_os_str().as_encoded_bytes())[..8]);
        let dir = std::env::temp_dir().join(format!("flotilla-real-{key}-{n}"));
        std::fs::create_dir_all(dir.join("users"))?;
        let lock = lock(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        if !(kubeconfig.exists() && reaper_alive(&dir)) {
            if kubeconfig.exists() {
                // Left by a reaper that was killed: stop whatever still runs before starting anew.
                let _ = Command::new(root.join("scripts/k8s-down"))
                    .arg(&kubeconfig)
                    .status();
            }
            up(&root, &dir, n, SHARED_GRACE_SECONDS)?;
        }
        register(&dir)?;
        drop(lock);
        Ok(RealClusters {
            dir,
            kubeconfig,
            contexts: contexts(n),
            owned: None,
        })
    }

    /// The kubeconfig, with one context per cluster.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The contexts, `k8s-0` first.
    pub fn contexts(&self) -> &[String] {
        &self.contexts
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the kube-apiserver of context `k8s-i`: frozen, it
    /// accepts connections and answers nothing, as an overloaded or partitioned one does.
    pub fn freeze_apiserver(&self, i: usize, frozen: bool) -> anyhow::Result<()> {
        let mut data = self.kubeconfig.clone().into_os_string();
        data.push(".d");
        let pid_file = PathBuf::from(data).join(format!("pids/k8s-{i}-kube-apiserver.pid"));
        let pid = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?;
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, pid.trim()]).status()?;
        anyhow::ensure!(status.success(), "kill {signal} {} failed", pid.trim());
        Ok(())
    }

    /// A kube-rs client for one context.
    pub async fn client(&self, context: &str) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let options = kube::config::KubeConfigOptions {
            context: Some(context.to_owned()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for RealClusters {
    fn drop(&mut self) {
        if self.owned.is_none() {
            return;
        }
        let root = repository_root();
        let status = Command::new(root.join("scripts/k8s-down"))
            .arg(&self.kubeconfig)
            .stdout(Stdio::null())
            .status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!(
                "scripts/k8s-down {} failed: {status:?}",
                self.kubeconfig.display()
            );
        }
        let _ = std::fs::remove_file(self.dir.join("kubeconfig"));
    }
}

/// The repository, two levels above this crate's manifest.
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn contexts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k8s-{i}")).collect()
}

/// Why real clusters cannot start here, if they cannot: a missing script or tool, or
/// Kubernetes binaries not built yet (`scripts/k8s-build --check`, which never builds).
fn prerequisites() -> Result<(), String> {
    let root = repository_root();
    for script in ["k8s-up", "k8s-down", "k8s-build"] {
        if !root.join("scripts").join(script).exists() {
            return Err(format!("scripts/{script} is missing"));
        }
    }
    for tool in ["kubectl", "openssl", "flock", "setsid", "go"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!("{tool} is not on PATH"));
        }
    }
    let check = Command::new(root.join("scripts/k8s-build"))
        .arg("--check")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running scripts/k8s-build --check: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "the Kubernetes binaries are not built; run scripts/k8s-build (about 17 minutes \
             cold, Go 1.26 and the module proxy needed): {}",
            String::from_utf8_lossy(&check.stderr).trim()
        ));
    }
    Ok(())
}

/// Holds `dir/lock` until dropped: one process at a time starts, joins or stops the clusters.
fn lock(dir: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    file.lock()?;
    Ok(file)
}

/// Runs `scripts/k8s-up n DIR/kubeconfig` and starts the reaper.
fn up(root: &Path, dir: &Path, n: usize, grace: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("users"))?;
    let started = Instant::now();
    let output = Command::new(root.join("scripts/k8s-up"))
        .arg(n.to_string())
        .arg(dir.join("kubeconfig"))
        .stdin(Stdio::null())
        .output()
        .context("running scripts/k8s-up")?;
    if !output.status.success() {
        bail!(
            "scripts/k8s-up {n} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!(
        "started {n} real cluster(s) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // setsid: a test killed with its process group must not take the reaper with it.
    let reaper = Command::new("setsid")
        .args(["sh", "-c", REAPER, "reaper"])
        .arg(dir)
        .arg(root)
        .arg(grace.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("reaper.log"))?)
        .spawn()
        .context("starting the clusters' reaper")?;
    std::fs::write(dir.join("reaper.pid"), reaper.id().to_string())?;
    Ok(())
}

/// Records this process as a user of the clusters in `dir`.
fn register(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join("users").join(std::process::id().to_string()), "")?;
    Ok(())
}

fn reaper_alive(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("reaper.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Where a test body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// The in-process simulator, one cluster of its own per test.
    Sim,
    /// A real cluster shared by the tests of this binary.
    Real,
}

/// A cluster a test body runs against, simulated or real, with a client, a kubeconfig and
/// its context.
pub struct Target {
    kind: TargetKind,
    client: kube::Client,
    kubeconfig: PathBuf,
    context: String,
    prefix: String,
    _keep: Keep,
}

/// What keeps a target's cluster up for as long as the target lives.
enum Keep {
    Sim {
        _sim: flotilla_sim::Sim,
        _kubeconfig: TempDir,
    },
    Real {
        _clusters: Arc<RealClusters>,
    },
}

impl Target {
    /// A cluster of `kind` for `test`, or `None` when the test is skipped (see
    /// [`RealClusters::shared`]). Simulated workloads roll out after `rollout_delay`.
    pub async fn start(
        kind: TargetKind,
        test: &str,
        rollout_delay: Duration,
    ) -> anyhow::Result<Option<Target>> {
        static TESTS: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "t{}-{}",
            std::process::id(),
            TESTS.fetch_add(1, Ordering::SeqCst)
        );
        match kind {
            TargetKind::Sim => {
                let sim = flotilla_sim::Sim::start(flotilla_sim::SimConfig {
                    clusters: 1,
                    rollout_delay,
                    ..flotilla_sim::SimConfig::default()
                })
                .await?;
                let context = sim
                    .cluster_names()
                    .into_iter()
                    .next()
                    .context("the simulator serves no cluster")?;
                let dir = tempfile::tempdir()?;
                let kubeconfig = dir.path().join("kubeconfig");
                sim.write_kubeconfig(&kubeconfig)?;
                let url = sim.cluster_url(&context).parse()?;
                let client = kube::Client::try_from(kube::Config::new(url))?;
                Ok(Some(Target {
                    kind,
                    client,
                    kubeconfig,
                    context,
                    prefix,
                    _keep: Keep::Sim {
                        _sim: sim,
                        _kubeconfig: dir,
                    },
                }))
            }
            TargetKind::Real => {
                // Starting clusters blocks for seconds: off the runtime's threads.
                let name = test.to_owned();
                let Some(clusters) =
                    tokio::task::spawn_blocking(move || RealClusters::shared(&name, 1)).await??
                else {
                    return Ok(None);
                };
                let context = clusters.contexts()[0].clone();
                let client = clusters.client(&context).await?;
                Ok(Some(Target {
                    kind,
                    client,
                    kubeconfig: clusters.kubeconfig().to_path_buf(),
                    context,
                    prefix,
                    _keep: Keep::Real {
                        _clusters: clusters,
                    },
                }))
            }
        }
    }

    /// Simulated or real.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// A client for the cluster.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kubeconfig reaching the cluster through [`Target::context`].
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster's context in the kubeconfig.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// `base` made unique to this test (a DNS label), for anything a cluster shared with other
    /// tests holds once: namespaces, bundles, CRD groups.
    pub fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.prefix)
    }
}

/// Declares, for each `async fn NAME(target: &Target) -> anyhow::Result<()>` named, a module
/// `NAME` with two tests, `sim` and `real`, running it against the simulator and a real
/// cluster. The real one is skipped (or fails under `CI=true`) where clusters cannot start.
#[macro_export]
macro_rules! on_sim_and_real {
    ($rollout_delay:expr; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sim() -> anyhow::Result<()> {
                $crate::real::run(
                    $crate::real::TargetKind::Sim, stringify!($name), $rollout_delay, super::$name,
                ).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() -> anyhow::Result<()> {
                $crate::real::run(
                    $crate::real::TargetKind::Real, stringify!($name), $rollout_delay, super::$name,
                ).await
            }
        }
    )*};
}

/// Runs `body` against a target of `kind`; used by [`on_sim_and_real!`].
pub async fn run<F>(
    kind: TargetKind,
    test: &str,
    rollout_delay: Duration,
    body: F,
) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Target) -> anyhow::Result<()>,
{
    let Some(target) = Target::start(kind, test, rollout_delay).await? else {
        return Ok(());
    };
    let started = Instant::now();
    let result = body(&target).await;
    eprintln!(
        "{test} on {kind:?}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}
