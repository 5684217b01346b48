//! The agent's local state directory: the last desired revision of every bundle, so a
//! restarted agent goes on enforcing it without a hub.
//!
//! One JSON file per bundle, `bundles/<name>.json`, replaced atomically (written to a temporary
//! file in the same directory, synced, renamed over the old one, and the directory synced), so
//! a crash leaves either the old or the new file, never a torn one.
//!
//! `cluster-uid` records which Kubernetes cluster (its kube-system namespace's UID) the stored
//! bundles are that cluster's desired state: a directory copied to an agent of another cluster,
//! or an agent pointed at a rebuilt one, must not enforce them there ([`StateDir::claim_for`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{BundleRevision, is_dns_label};

/// Version of the state file format.
const FORMAT: u32 = 1;

/// The file naming the cluster whose desired state the directory holds.
const CLUSTER_FILE: &str = "cluster-uid";

/// What the agent keeps about one bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleState {
    /// The revision to enforce.
    pub desired: BundleRevision,
    /// The last revision applied successfully; enforced after a restart if `desired` cannot
    /// be applied.
    pub last_applied: Option<BundleRevision>,
    /// The bundle is being removed: pruning everything it owned has not finished.
    pub removing: bool,
}

/// The file format. The last applied revision is usually the desired one; then it is not
/// written twice.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateFile {
    format: u32,
    desired: BundleRevision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_applied: Option<BundleRevision>,
    #[serde(default)]
    desired_applied: bool,
    #[serde(default)]
    removing: bool,
}

impl StateFile {
    fn new(state: &BundleState) -> StateFile {
        let desired_applied = state.last_applied.as_ref() == Some(&state.desired);
        StateFile {
            format: FORMAT,
            desired: state.desired.clone(),
            last_applied: state.last_applied.clone().filter(|_| !desired_applied),
            desired_applied,
            removing: state.removing,
        }
    }

    fn into_state(self) -> BundleState {
        let last_applied = if self.desired_applied {
            Some(self.desired.clone())
        } else {
            self.last_applied
        };
        BundleState {
            desired: self.desired,
            last_applied,
            removing: self.removing,
        }
    }
}

/// Errors reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or directory could not be read or written.
    #[error("state directory: {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A state file is not valid JSON of the expected shape.
    #[error("state file {path}: {source}; move it away to start that bundle afresh")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A state file was written by a newer agent.
    #[error("state file {path} has format {found}, this agent reads format {FORMAT}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The format found.
        found: u32,
    },
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
    bundles: PathBuf,
}

/// What [`StateDir::claim_for`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The stored bundles are that cluster's.
    Same,
    /// Nothing was recorded (a new directory, or one from an agent that did not record it): the
    /// cluster is recorded now and the stored bundles taken as its own.
    Recorded,
    /// The stored bundles are another cluster's: moved aside, never to be enforced here.
    SetAside {
        /// The UID they were recorded for.
        other: String,
        /// Where they are now.
        moved_to: PathBuf,
    },
}

impl StateDir {
    /// Opens (creating if needed) a state directory.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        let bundles = root.join("bundles");
        // Desired state and the agent's key live here: owner only, whatever the umask, and an
        // existing directory open to others is narrowed.
        let private = |dir: &Path| -> std::io::Result<()> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        };
        private(root)
            .and_then(|()| private(&bundles))
            .map_err(|source| StateError::Io {
                path: bundles.clone(),
                source,
            })?;
        Ok(StateDir {
            root: root.to_owned(),
            bundles,
        })
    }

    /// The kube-system UID of the cluster the stored bundles belong to, if recorded.
    pub fn cluster_uid(&self) -> Result<Option<String>, StateError> {
        let path = self.root.join(CLUSTER_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|uid| !uid.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Makes the directory the desired state of the cluster whose kube-system UID is `uid`:
    /// bundles stored for another cluster are moved to `bundles.of-<their uid>` (kept for an
    /// operator to look at, never loaded) before `uid` is recorded.
    pub fn claim_for(&self, uid: &str) -> Result<Claimed, StateError> {
        let claimed = match self.cluster_uid()? {
            Some(recorded) if recorded == uid => return Ok(Claimed::Same),
            None => Claimed::Recorded,
            Some(other) => {
                // The recorded text names a directory: only the characters a UID has.
                let name: String = other
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .take(64)
                    .collect();
                let moved_to = self.root.join(format!("bundles.of-{name}"));
                let io = |source| StateError::Io {
                    path: moved_to.clone(),
                    source,
                };
                if moved_to.exists() {
                    std::fs::remove_dir_all(&moved_to).map_err(io)?;
                }
                std::fs::rename(&self.bundles, &moved_to).map_err(io)?;
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&self.bundles)
                    .map_err(|source| StateError::Io {
                        path: self.bundles.clone(),
                        source,
                    })?;
                Claimed::SetAside { other, moved_to }
            }
        };
        let path = self.root.join(CLUSTER_FILE);
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.root)
            .map_err(io)?;
        temp.write_all(format!("{uid}\n").as_bytes()).map_err(io)?;
        temp.as_file().sync_all().map_err(io)?;
        temp.persist(&path).map_err(|e| io(e.error))?;
        std::fs::File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
        Ok(claimed)
    }

    /// Every bundle's state, sorted by name. Temporary files left by a crash are ignored.
    pub fn load(&self) -> Result<Vec<BundleState>, StateError> {
        let io = |source| StateError::Io {
            path: self.bundles.clone(),
            source,
        };
        let mut states = Vec::new();
        for entry in std::fs::read_dir(&self.bundles).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(bundle) = name.strip_suffix(".json") else {
                continue;
            };
            if !is_dns_label(bundle) {
                continue;
            }
            states.push(read(&path)?);
        }
        states.sort_by(|a, b| a.desired.name.cmp(&b.desired.name));
        Ok(states)
    }

    /// Replaces a bundle's state atomically.
    pub fn save(&self, state: &BundleState) -> Result<(), StateError> {
        let path = self.path(&state.desired.name);
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let file = StateFile::new(state);
        let bytes = serde_json::to_vec(&file).map_err(|e| io(std::io::Error::other(e)))?;
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.bundles)
            .map_err(io)?;
        temp.write_all(&bytes).map_err(io)?;
        temp.as_file().sync_all().map_err(io)?;
        temp.persist(&path).map_err(|e| io(e.error))?;
        self.sync_dir()
    }

    /// Forgets a bundle.
    pub fn remove(&self, name: &str) -> Result<(), StateError> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.bundles.join(format!("{name}.json"))
    }

    /// Makes a rename durable: the directory entry is data too.
    fn sync_dir(&self) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: self.bundles.clone(),
            source,
        };
        std::fs::File::open(&self.bundles)
            .and_then(|dir| dir.sync_all())
            .map_err(io)
    }
}

fn read(path: &Path) -> Result<BundleState, StateError> {
    let bytes = std::fs::read(path).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })?;
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    if file.format != FORMAT {
        return Err(StateError::Format {
            path: path.to_owned(),
            found: file.format,
        });
    }
    Ok(file.into_state())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bundle::DriftMode;

    fn state(name: &str, hash: &str) -> BundleState {
        BundleState {
            desired: BundleRevision {
                allow: Default::default(),
                name: name.into(),
                revision: "r".into(),
                content_hash: hash.into(),
                namespace: "default".into(),
                drift: DriftMode::Report,
                objects: vec![
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
                ],
            },
            last_applied: None,
            removing: false,
        }
    }

    #[test]
    fn saved_states_load_back_sorted_and_replacements_win() {
        let dir = tempfile::tempdir().expect("temp dir");
        let states = StateDir::open(dir.path()).expect("open");
        states.save(&state("web", "h1")).expect("save");
        states.save(&state("db", "h1")).expect("save");
        states.save(&state("web", "h2")).expect("save");
        let reopened = StateDir::open(dir.path()).expect("reopen");
        let loaded = reopened.load().expect("load");
        assert_eq!(loaded, vec![state("db", "h1"), state("web", "h2")]);
        reopened.remove("db").expect("remove");
        reopened.remove("db").expect("removing twice is fine");
        assert_eq!(reopened.load().expect("load"), vec![state("web", "h2")]);
    }

    #[test]
    fn bundles_stored_for_another_cluster_are_set_aside_and_never_loaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let states = StateDir::open(dir.path()).expect("open");
        states.save(&state("web", "h1")).expect("save");
        // A directory from before clusters were recorded keeps its bundles.
        assert_eq!(states.claim_for("uid-a").expect("claim"), Claimed::Recorded);
        assert_eq!(states.claim_for("uid-a").expect("claim"), Claimed::Same);
        assert_eq!(states.load().expect("load"), vec![state("web", "h1")]);
        // The same directory, now on another cluster.
        let claimed = states.claim_for("uid-b").expect("claim");
        let Claimed::SetAside { other, moved_to } = claimed else {
            panic!("not set aside: {claimed:?}");
        };
        assert_eq!(other, "uid-a");
        assert!(
            moved_to.join("web.json").is_file(),
            "{}",
            moved_to.display()
        );
        assert!(states.load().expect("load").is_empty());
        assert_eq!(
            states.cluster_uid().expect("read"),
            Some("uid-b".to_owned())
        );
        // New bundles are stored for the new cluster as usual.
        states.save(&state("db", "h1")).expect("save");
        assert_eq!(states.load().expect("load"), vec![state("db", "h1")]);
    }

    #[test]
    fn the_last_applied_revision_survives_whether_or_not_it_is_the_desired_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let states = StateDir::open(dir.path()).expect("open");
        let mut web = state("web", "h2");
        web.last_applied = Some(web.desired.clone());
        states.save(&web).expect("save");
        let text = std::fs::read_to_string(dir.path().join("bundles/web.json")).expect("read");
        assert_eq!(text.matches("ConfigMap").count(), 1, "written once: {text}");
        let mut db = state("db", "h2");
        db.last_applied = Some(state("db", "h1").desired);
        states.save(&db).expect("save");
        assert_eq!(states.load().expect("load"), vec![db, web]);
    }

    #[test]
    fn leftover_temporary_files_are_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let states = StateDir::open(dir.path()).expect("open");
        std::fs::write(dir.path().join("bundles/.tmp-abc"), b"{torn").expect("write");
        assert_eq!(states.load().expect("load"), vec![]);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let states = StateDir::open(dir.path()).expect("open");
        std::fs::write(dir.path().join("bundles/web.json"), b"{torn").expect("write");
        let error = states.load().expect_err("corrupt").to_string();
        assert!(error.contains("web.json"), "{error}");
    }

    #[test]
    fn the_state_dir_is_owner_only_even_when_it_existed_open() {
        let parent = tempfile::tempdir().expect("temporary dir");
        let root = parent.path().join("state");
        std::fs::create_dir(&root).expect("create");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        StateDir::open(&root).expect("open");
        for dir in [root.clone(), root.join("bundles")] {
            let mode = std::fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
    }
}
