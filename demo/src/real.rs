//! `flotilla demo --real`: the demo's clusters as real Kubernetes clusters, started by the
//! project's `scripts/k8s-up` (a kube-apiserver, controller-manager, scheduler and kwok per
//! cluster, built from Kubernetes' Go modules; k8s/README.md) instead of the simulator.
//!
//! The scripts and the Go modules they build are embedded in this binary and written into the
//! demo's data directory, so `--real` works wherever the binary runs. What it needs there: Go
//! (the first build takes about 17 minutes on two cores; the binaries are then cached under
//! `~/.cache/flotilla/k8s` and every later start takes seconds), openssl and kubectl.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use include_dir::{Dir, include_dir};
use kube::config::Kubeconfig;

/// The scripts that start, stop and build the clusters.
static SCRIPTS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../scripts");

/// The Go modules the clusters' binaries are built from, and kwok's stages.
static MODULES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../k8s");

/// Real clusters started for the demo; [`RealClusters::stop`] stops them and removes their
/// data.
pub(super) struct RealClusters {
    kit: PathBuf,
    /// The kubeconfig `k8s-up` wrote (contexts `k8s-0` …); its data dir is beside it.
    raw_kubeconfig: PathBuf,
}

impl RealClusters {
    /// Writes the scripts under `root`, ready to start clusters. Whoever holds the value stops
    /// them ([`RealClusters::stop`]), also when [`RealClusters::start`] failed half-way.
    pub(super) fn prepare(root: &Path) -> anyhow::Result<RealClusters> {
        let kit = root.join("k8s-kit");
        write_kit(&kit)?;
        Ok(RealClusters {
            kit,
            raw_kubeconfig: root.join("k8s").join("kubeconfig"),
        })
    }

    /// The command that stops clusters a killed demo left running under `root`.
    pub(super) fn down_command(root: &Path) -> String {
        format!(
            "{} {}",
            root.join("k8s-kit/scripts/k8s-down").display(),
            root.join("k8s/kubeconfig").display()
        )
    }

    /// Starts one real cluster per name in `clusters`, appending the scripts' output to `log`,
    /// and writes `kubeconfig` with a context per cluster named after it.
    pub(super) async fn start(
        &self,
        clusters: &[String],
        kubeconfig: &Path,
        log: &Path,
    ) -> anyhow::Result<()> {
        self.script("k8s-up", &[&clusters.len().to_string()], log)
            .await
            .with_context(|| {
                format!(
                    "starting {} real Kubernetes clusters (scripts/k8s-up; what it printed is \
                     in {}); they need Go for their first build, openssl and kubectl",
                    clusters.len(),
                    log.display()
                )
            })?;
        self.write_kubeconfig(clusters, kubeconfig)
    }

    /// Stops the clusters (whatever of them started) and removes their data.
    pub(super) async fn stop(self, log: &Path) -> anyhow::Result<()> {
        if !self.data_dir().exists() {
            return Ok(());
        }
        self.down(log).await
    }

    async fn down(&self, log: &Path) -> anyhow::Result<()> {
        self.script("k8s-down", &[], log).await.with_context(|| {
            format!(
                "stopping the real clusters of {} (scripts/k8s-down; see {})",
                self.raw_kubeconfig.display(),
                log.display()
            )
        })
    }

    /// `k8s-up`'s data dir: certificates, etcd data, logs, pids.
    fn data_dir(&self) -> PathBuf {
        let mut dir = self.raw_kubeconfig.clone().into_os_string();
        dir.push(".d");
        PathBuf::from(dir)
    }

    /// Runs `scripts/NAME ARGS... KUBECONFIG`, its output appended to `log`.
    async fn script(&self, name: &str, args: &[&str], log: &Path) -> anyhow::Result<()> {
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let status = tokio::process::Command::new(self.kit.join("scripts").join(name))
            .args(args)
            .arg(&self.raw_kubeconfig)
            .stdin(Stdio::null())
            // Interrupted (Ctrl-C while it starts): the script dies, and `stop` stops what it
            // had started from the pid files it wrote.
            .kill_on_drop(true)
            .stdout(output.try_clone()?)
            .stderr(output)
            .status()
            .await
            .with_context(|| format!("running scripts/{name}"))?;
        anyhow::ensure!(status.success(), "scripts/{name} ended with {status}");
        Ok(())
    }

    /// The kubeconfig `k8s-up` wrote, its contexts renamed after the demo's clusters in order,
    /// so that `kubectl --context dev-1` reaches dev-1 as it does on the simulator.
    fn write_kubeconfig(&self, clusters: &[String], kubeconfig: &Path) -> anyhow::Result<()> {
        let mut config = Kubeconfig::read_from(&self.raw_kubeconfig)
            .with_context(|| format!("reading {}", self.raw_kubeconfig.display()))?;
        for (i, name) in clusters.iter().enumerate() {
            let context = format!("k8s-{i}");
            let named = config
                .contexts
                .iter_mut()
                .find(|c| c.name == context)
                .with_context(|| {
                    format!("no context {context} in {}", self.raw_kubeconfig.display())
                })?;
            named.name = name.clone();
        }
        config.current_context = clusters.first().cloned();
        let yaml = serde_saphyr::to_string(&config).context("writing the demo's kubeconfig")?;
        std::fs::write(kubeconfig, yaml)
            .with_context(|| format!("writing {}", kubeconfig.display()))
    }
}

/// Writes the embedded scripts and modules under `kit` (`scripts/`, `k8s/`), as in the
/// repository, the scripts executable.
fn write_kit(kit: &Path) -> anyhow::Result<()> {
    let scripts = kit.join("scripts");
    let modules = kit.join("k8s");
    for dir in [&scripts, &modules] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    SCRIPTS
        .extract(&scripts)
        .with_context(|| format!("writing the cluster scripts to {}", scripts.display()))?;
    MODULES
        .extract(&modules)
        .with_context(|| format!("writing the cluster modules to {}", modules.display()))?;
    for file in SCRIPTS.files() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = scripts.join(file.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", path.display()))?;
    }
    Ok(())
}
