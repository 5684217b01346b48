//! What the demo prints once it runs: where everything is, the environment another terminal
//! needs, and a few commands to try, including making a commit and watching it roll out.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the banner shows.
pub(super) struct Banner {
    /// The hub's API listener.
    pub(super) api: SocketAddr,
    /// The hub's HTTP listener.
    pub(super) http: SocketAddr,
    /// The hub's CA certificate, which clients trust.
    pub(super) ca_file: PathBuf,
    /// The hub's first admin token.
    pub(super) token: String,
    /// Kubeconfig of the clusters.
    pub(super) kubeconfig: PathBuf,
    /// The repository the hub follows.
    pub(super) repo: PathBuf,
    /// How often the hub fetches it.
    pub(super) poll_interval: Duration,
    /// The clusters.
    pub(super) clusters: Vec<String>,
    /// Whether they are real Kubernetes clusters rather than simulated ones.
    pub(super) real: bool,
    /// The data directory.
    pub(super) data_dir: PathBuf,
    /// Whether the data directory goes when the demo stops.
    pub(super) removed_on_exit: bool,
    /// The log of the hub, agents and simulator.
    pub(super) log: PathBuf,
    /// The directory of this binary, where cargo builds the `flotilla` CLI too, so the other
    /// terminal can find it.
    pub(super) bin_dir: Option<PathBuf>,
    /// Things the user should know (ports chosen, bundles left out, a slow start).
    pub(super) notes: Vec<String>,
}

impl Banner {
    /// The variables another terminal exports to use the demo with `flotilla` and `kubectl`.
    pub(super) fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FLOTILLA_HUB", self.api.to_string()),
            ("FLOTILLA_CA_FILE", self.ca_file.display().to_string()),
            ("FLOTILLA_TOKEN", self.token.clone()),
            ("KUBECONFIG", self.kubeconfig.display().to_string()),
        ]
    }

    /// The banner's text.
    pub(super) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nFlotilla demo is running: a hub, {} {} clusters and an agent for each, in this process.\n",
            self.clusters.len(),
            if self.real {
                "real Kubernetes"
            } else {
                "simulated"
            }
        );
        let removal = if self.removed_on_exit {
            "removed when the demo stops; --keep keeps it"
        } else {
            "kept when the demo stops"
        };
        let rows = [
            ("hub API", self.api.to_string()),
            (
                "dashboard",
                format!(
                    "https://{}/  (trust the hub CA; sign in with FLOTILLA_TOKEN below)",
                    self.http
                ),
            ),
            ("metrics", format!("https://{}/metrics", self.http)),
            ("hub CA", self.ca_file.display().to_string()),
            (
                "repository",
                format!(
                    "{}  (branch main; the hub fetches it every {}s)",
                    self.repo.display(),
                    self.poll_interval.as_secs()
                ),
            ),
            ("clusters", self.clusters.join(", ")),
            ("data", format!("{}  ({removal})", self.data_dir.display())),
            ("log", self.log.display().to_string()),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<12} {value}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nNote: {note}.");
        }

        let _ = writeln!(out, "\nIn another terminal:\n");
        for (name, value) in self.environment() {
            let _ = writeln!(out, "  export {name}={}", shell_quote(&value));
        }
        if let Some(dir) = self.bin_dir_missing_from_path() {
            let _ = writeln!(
                out,
                "  export PATH={}:\"$PATH\"",
                shell_quote(&dir.display().to_string())
            );
        }
        let context = self
            .clusters
            .iter()
            .find(|c| c.starts_with("prod"))
            .or(self.clusters.first())
            .cloned()
            .unwrap_or_default();
        let commands = [
            (
                "flotilla status".to_owned(),
                "every stage, cluster and bundle: revisions and health",
            ),
            (
                "flotilla revisions".to_owned(),
                "the commits the hub fetched, with any render error",
            ),
            (
                "flotilla clusters".to_owned(),
                "the clusters and their agents",
            ),
            (
                format!("kubectl --context {context} get deployments -A"),
                "what the agent applied there",
            ),
        ];
        let _ = writeln!(out);
        for (command, what) in commands {
            let _ = writeln!(out, "  {command:<48} # {what}");
        }

        let _ = writeln!(
            out,
            "\nMake a commit and watch it roll out, as the example's flotilla.yaml says: dev tracks\n\
             main, staging promotes from dev on its own after dev's soak, prod waits for approval\n\
             and then goes wave by wave:\n"
        );
        let _ = writeln!(
            out,
            "  cd {}",
            shell_quote(&self.repo.display().to_string())
        );
        let steps = [
            "sed -i.bak 's/Hello from/Hi from/' bundles/web/configmap.yaml && rm bundles/web/configmap.yaml.bak",
            "git commit -am \"web: say hi\"",
            "flotilla status --watch",
            "flotilla rollout status staging --watch",
            "flotilla approve prod",
            "flotilla rollout status prod --watch",
        ];
        for step in steps {
            let _ = writeln!(out, "  {step}");
        }
        let _ = writeln!(
            out,
            "\nChanges show up below as they happen. Ctrl-C stops everything."
        );
        out
    }

    /// The directory of this binary, unless `PATH` already leads to it.
    fn bin_dir_missing_from_path(&self) -> Option<PathBuf> {
        let dir = self.bin_dir.clone()?;
        let path = std::env::var_os("PATH").unwrap_or_default();
        let same = |other: &Path| {
            other == dir
                || other
                    .canonicalize()
                    .is_ok_and(|o| dir.canonicalize().is_ok_and(|d| o == d))
        };
        (!std::env::split_paths(&path).any(|p| same(&p))).then_some(dir)
    }
}

/// A note saying how to get the `flotilla` CLI the banner's commands use, when it is neither
/// beside this binary in `bin_dir` nor on `PATH`: the demo is a binary of its own, and
/// `cargo run -p flotilla-demo` builds only it.
pub(super) fn missing_cli_note(bin_dir: &Path, path: &std::ffi::OsStr) -> Option<String> {
    let found = |dir: &Path| dir.join(CLI).is_file();
    if found(bin_dir) || std::env::split_paths(path).any(|d| found(&d)) {
        return None;
    }
    let how = match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "`cargo build -p flotilla-cli` in the repository builds it there",
        Some("release") => {
            "`cargo build --release -p flotilla-cli` in the repository builds it there"
        }
        _ => "put it on PATH (`cargo install --path cli` in the repository installs it)",
    };
    Some(format!(
        "the commands below use the `flotilla` CLI, which is neither beside this demo in {} nor \
         on PATH; {how}",
        bin_dir.display()
    ))
}

/// The operator CLI's executable name.
const CLI: &str = "flotilla";

/// `value` as one shell word.
pub(super) fn shell_quote(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c);
    if !value.is_empty() && value.chars().all(safe) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}
