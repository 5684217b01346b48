//! The leader's local bare mirror of a source: fetched with git2 (https, ssh, file://), read by
//! the render controller. No `git` binary is involved.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{AutotagOption, Cred, CredentialType, FetchOptions, Oid, RemoteCallbacks, Repository};
use tokio::sync::watch;

use super::{GitCredentials, SourceConfig};

/// The ref the tracked branch is fetched into. The refspec is forced (`+`), so a force-pushed
/// branch simply moves it: fetch and reset, never merge.
const TRACKED_REF: &str = "refs/flotilla/tracked";

/// Why a mirror operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The mirror directory could not be created or opened.
    #[error("cannot open the local mirror {path}: {source}")]
    Open {
        /// The mirror.
        path: PathBuf,
        /// What git2 said.
        source: git2::Error,
    },
    /// Fetching the branch failed.
    #[error(
        "cannot fetch branch `{branch}` from {url}: {message}; check the URL, that the branch exists, and the hub's credentials"
    )]
    Fetch {
        /// The repository.
        url: String,
        /// The branch.
        branch: String,
        /// What git2 said.
        message: String,
    },
    /// A commit id is malformed or the commit is not in the mirror.
    #[error("commit {commit} is not in the repository: {message}")]
    MissingCommit {
        /// The commit.
        commit: String,
        /// What git2 said.
        message: String,
    },
    /// The commit's tree holds something the hub will not check out: a submodule, a file or a
    /// tree too large.
    #[error("commit {commit}: `{path}` {problem}")]
    Unsupported {
        /// The commit.
        commit: String,
        /// The path in the repository.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// Writing the commit's tree to a directory failed.
    #[error("cannot check out commit {commit}: {message}")]
    Checkout {
        /// The commit.
        commit: String,
        /// What git2 said.
        message: String,
    },
}

/// A bare repository under the data dir holding what was fetched from one source.
pub struct SourceMirror {
    path: PathBuf,
    fetches: watch::Sender<u64>,
}

impl SourceMirror {
    /// Opens (creating when absent) the mirror of `source` under `data_dir/sources/`.
    pub fn open(data_dir: &Path, source: &SourceConfig) -> Result<Self, MirrorError> {
        let path = data_dir
            .join("sources")
            .join(format!("{}.git", source.name));
        let opened = if path.join("HEAD").exists() {
            Repository::open_bare(&path)
        } else {
            Repository::init_bare(&path)
        };
        opened.map_err(|source| MirrorError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(SourceMirror {
            path,
            fetches: watch::channel(0).0,
        })
    }

    /// The mirror's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts successful fetches since this process started.
    pub fn watch_fetches(&self) -> watch::Receiver<u64> {
        self.fetches.subscribe()
    }

    fn repository(&self) -> Result<Repository, MirrorError> {
        Repository::open_bare(&self.path).map_err(|source| MirrorError::Open {
            path: self.path.clone(),
            source,
        })
    }

    /// Fetches the tracked branch (forced) and returns the commit it points at. Blocking.
    pub fn fetch(&self, source: &SourceConfig) -> Result<String, MirrorError> {
        let repo = self.repository()?;
        let fetch_error = |e: git2::Error| MirrorError::Fetch {
            url: source.url.clone(),
            branch: source.branch.clone(),
            message: e.message().to_owned(),
        };
        let mut remote = repo.remote_anonymous(&source.url).map_err(fetch_error)?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks(&source.credentials));
        options.download_tags(AutotagOption::None);
        let refspec = format!("+refs/heads/{}:{TRACKED_REF}", source.branch);
        remote
            .fetch(&[refspec.as_str()], Some(&mut options), None)
            .map_err(fetch_error)?;
        // libgit2 fetches nothing, without an error, for a branch the remote lacks, which would
        // leave the tracked ref where it was: check what the remote advertised (still listed
        // after the fetch disconnected).
        let wanted = format!("refs/heads/{}", source.branch);
        let advertised = remote
            .list()
            .map_err(fetch_error)?
            .iter()
            .any(|head| head.name() == wanted);
        if !advertised {
            return Err(MirrorError::Fetch {
                url: source.url.clone(),
                branch: source.branch.clone(),
                message: "the repository has no such branch".to_owned(),
            });
        }
        let commit = repo
            .find_reference(TRACKED_REF)
            .and_then(|r| r.peel_to_commit())
            .map_err(fetch_error)?;
        self.fetches.send_modify(|n| *n += 1);
        Ok(commit.id().to_string())
    }

    /// Whether the mirror holds `commit`.
    pub fn has_commit(&self, commit: &str) -> bool {
        let Ok(repo) = self.repository() else {
            return false;
        };
        Oid::from_str(commit).is_ok_and(|oid| repo.find_commit(oid).is_ok())
    }

    /// The signature of `commit` and what it signs, or `None` when it is unsigned. Blocking.
    pub fn signature(
        &self,
        commit: &str,
    ) -> Result<Option<crate::state::signature::CommitSignature>, MirrorError> {
        let repo = self.repository()?;
        let missing = |e: git2::Error| MirrorError::MissingCommit {
            commit: commit.to_owned(),
            message: e.message().to_owned(),
        };
        let oid = Oid::from_str(commit).map_err(missing)?;
        repo.find_commit(oid).map_err(missing)?;
        match repo.extract_signature(&oid, None) {
            Ok((signature, payload)) => Ok(Some(crate::state::signature::CommitSignature {
                signature: String::from_utf8_lossy(&signature).into_owned(),
                payload: String::from_utf8_lossy(&payload).into_owned(),
            })),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(missing(e)),
        }
    }

    /// Writes the tree of `commit` into `target` (an empty directory), byte for byte: no
    /// line-ending or other filters. libgit2 refuses tree entries that would leave `target`
    /// (`..`, `.git`, absolute names); links are written as links, and the repository loader
    /// refuses any that point outside. Blocking.
    pub fn checkout(&self, commit: &str, target: &Path) -> Result<(), MirrorError> {
        let repo = self.repository()?;
        let missing = |e: git2::Error| MirrorError::MissingCommit {
            commit: commit.to_owned(),
            message: e.message().to_owned(),
        };
        let oid = Oid::from_str(commit).map_err(missing)?;
        let tree = repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(missing)?;
        check_tree(&repo, &tree, commit)?;
        let mut checkout = CheckoutBuilder::new();
        checkout
            .target_dir(target)
            .force()
            .update_index(false)
            .disable_filters(true);
        repo.checkout_tree(tree.as_object(), Some(&mut checkout))
            .map_err(|e| MirrorError::Checkout {
                commit: commit.to_owned(),
                message: e.message().to_owned(),
            })
    }
}

/// Largest file the hub checks out: manifests are read with a 4 MiB bound, so anything far
/// beyond is not configuration, and libgit2 would hold it in memory whole while writing it.
pub(crate) const MAX_CHECKOUT_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Largest tree the hub checks out, all files together.
pub(crate) const MAX_CHECKOUT_BYTES: u64 = 512 * 1024 * 1024;

/// Looks at every entry of `tree` before anything is written: submodules (which a bare
/// mirror cannot check out, and whose content would come from another repository) and files
/// over the size bounds are refused, naming the path. Sizes come from object headers, so a
/// large blob is never read here.
fn check_tree(repo: &Repository, tree: &git2::Tree<'_>, commit: &str) -> Result<(), MirrorError> {
    let odb = repo.odb().map_err(|e| MirrorError::Checkout {
        commit: commit.to_owned(),
        message: e.message().to_owned(),
    })?;
    let mut total: u64 = 0;
    let mut problem: Option<(String, String)> = None;
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        let path = format!("{dir}{}", entry.name().unwrap_or("?"));
        match entry.kind() {
            Some(git2::ObjectType::Commit) => {
                problem = Some((
                    path,
                    "is a git submodule; the hub renders one repository and does not fetch \
                     submodules: vendor its files into the repository instead"
                        .to_owned(),
                ));
                git2::TreeWalkResult::Abort
            }
            Some(git2::ObjectType::Blob) => {
                let size = odb
                    .read_header(entry.id())
                    .map_or(0, |(size, _)| size as u64);
                total = total.saturating_add(size);
                if size > MAX_CHECKOUT_FILE_BYTES {
                    problem = Some((
                        path,
                        format!(
                            "is {size} bytes, over the {MAX_CHECKOUT_FILE_BYTES}-byte bound of a \
                             file the hub checks out; keep large files out of the repository it \
                             follows (the bound is fixed)"
                        ),
                    ));
                    git2::TreeWalkResult::Abort
                } else if total > MAX_CHECKOUT_BYTES {
                    problem = Some((
                        path,
                        format!(
                            "takes the repository past {MAX_CHECKOUT_BYTES} bytes, the most the \
                             hub checks out; slim the repository it follows (the bound is fixed)"
                        ),
                    ));
                    git2::TreeWalkResult::Abort
                } else {
                    git2::TreeWalkResult::Ok
                }
            }
            _ => git2::TreeWalkResult::Ok,
        }
    });
    if let Some((path, problem)) = problem {
        return Err(MirrorError::Unsupported {
            commit: commit.to_owned(),
            path,
            problem,
        });
    }
    walked.map_err(|e| MirrorError::Checkout {
        commit: commit.to_owned(),
        message: e.message().to_owned(),
    })
}

/// Credentials for fetching: an ssh key file or the ssh agent, and https basic auth. Each kind
/// is offered once: libgit2 asks again after a refusal, and offering the same again would loop.
fn callbacks(credentials: &GitCredentials) -> RemoteCallbacks<'_> {
    let mut callbacks = RemoteCallbacks::new();
    let tried_ssh = Cell::new(false);
    let tried_password = Cell::new(false);
    let tried_username = Cell::new(false);
    callbacks.credentials(move |_url, username, allowed| {
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) && !tried_ssh.replace(true) {
            return match &credentials.ssh_key {
                Some(key) => Cred::ssh_key(user, None, key, None),
                None => Cred::ssh_key_from_agent(user),
            };
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && !tried_password.replace(true)
            && let Some(password) = &credentials.password
        {
            let user = credentials.username.as_deref().or(username).unwrap_or("git");
            return Cred::userpass_plaintext(user, password);
        }
        if allowed.contains(CredentialType::USERNAME) && !tried_username.replace(true) {
            return Cred::username(user);
        }
        Err(git2::Error::from_str(
            "authentication failed or no credentials configured (--ssh-key, or FLOTILLA_GIT_USERNAME and FLOTILLA_GIT_PASSWORD)",
        ))
    });
    callbacks
}
