//! The first-admin controller: a group with no API token yet gets one, so the operator who
//! started it can call the Admin API. The leader creates the token `initial-admin` (admin of
//! every stage) and writes its secret to `<data-dir>/admin-token` (mode 0600) on its own
//! machine; the log names the file, never the secret. It runs once per term and does nothing
//! once any token exists (revoked ones too), so revoking `initial-admin` retires it for good.
//!
//! The secret is written (durably, to `admin-token.pending`) before the token is proposed, and
//! the file is renamed to `admin-token` once the token is committed, so whoever sees the file
//! can use the token at once: a crash before the proposal leaves a pending file whose token
//! does not exist, and the next leader (with still no token) writes a fresh one; a crash after
//! the commit and before the rename is finished when this node leads again (the pending
//! secret's token is in the state). The other order could commit a token whose secret no one
//! has. A proposal that surely did not apply (another leader's token won, a later leader
//! overwrote it) removes the pending file; one in doubt (a timeout) keeps it until the token
//! shows up.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use crate::auth::NewToken;
use crate::auth::token::{INITIAL_ADMIN, api_token_id};
use crate::controller::{Controller, ControllerContext};
use crate::node::ProposeError;
use crate::state::Command;
use crate::state::access::{Role, RoleBinding};

/// The file, in the data directory, the first admin token's secret is written to.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Where the secret waits until its token is committed.
const PENDING_FILE: &str = "admin-token.pending";

/// Creates the first admin token of a group that has none.
pub struct FirstAdminController {
    file: PathBuf,
    pending: PathBuf,
}

impl FirstAdminController {
    /// A controller writing the secret into `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        FirstAdminController {
            file: data_dir.join(ADMIN_TOKEN_FILE),
            pending: data_dir.join(PENDING_FILE),
        }
    }
}

impl Controller for FirstAdminController {
    fn name(&self) -> &'static str {
        "first-admin"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let (file, pending) = (self.file.clone(), self.pending.clone());
        Box::pin(async move {
            if context.node.state().access.tokens.is_empty() {
                create(&context, &file, &pending).await;
            } else {
                finish(&context, &file, &pending);
            }
            context.stop.cancelled().await;
        })
    }
}

/// A pending secret: published if its token was committed (and not revoked), removed if not.
fn finish(context: &ControllerContext, file: &Path, pending: &Path) {
    let Ok(secret) = std::fs::read_to_string(pending) else {
        return;
    };
    // Committed and not revoked since: only then is the secret worth an operator's reading.
    let committed = api_token_id(&secret).is_some_and(|id| {
        context
            .node
            .state()
            .access
            .tokens
            .get(id)
            .is_some_and(|token| token.revoked_at.is_none())
    });
    let outcome = match committed {
        true => publish(pending, file),
        false => std::fs::remove_file(pending),
    };
    if let Err(e) = outcome {
        tracing::error!(file = %pending.display(), error = %e, "cannot finish the first admin token's file");
    }
}

/// Renames the pending file to the one operators read, durably.
fn publish(pending: &Path, file: &Path) -> std::io::Result<()> {
    std::fs::rename(pending, file)?;
    if let Some(directory) = file.parent() {
        std::fs::File::open(directory)?.sync_all()?;
    }
    Ok(())
}

async fn create(context: &ControllerContext, file: &Path, pending: &Path) {
    let token = NewToken::generate(&mut rand::rng());
    if let Err(e) = write_secret(pending, token.reveal()) {
        tracing::error!(
            file = %pending.display(),
            error = %e,
            "cannot write the first admin token; fix the data directory's permissions and restart"
        );
        return;
    }
    let command = Command::CreateToken {
        name: INITIAL_ADMIN.to_owned(),
        id: token.id.clone(),
        secret_hash: token.secret_hash.clone(),
        bindings: vec![RoleBinding {
            role: Role::Admin,
            stages: Vec::new(),
        }],
        expires: None,
        by: ControllerContext::actor("first-admin"),
        at: context.clock.now(),
    };
    match context.node.propose(&command).await {
        Ok(_) => match publish(pending, file) {
            Ok(()) => tracing::warn!(
                file = %file.display(),
                "created the first admin token `{INITIAL_ADMIN}`; its secret is in the file named here (pass it with --token or FLOTILLA_TOKEN, create named tokens with `flotilla token create`, then revoke it)"
            ),
            Err(e) => tracing::error!(
                file = %pending.display(),
                error = %e,
                "created the first admin token `{INITIAL_ADMIN}` but cannot rename the file holding its secret to {ADMIN_TOKEN_FILE}; its secret is in the file named here"
            ),
        },
        Err(e) if surely_not_applied(&e) => {
            // Another leader's token won, or this one was overwritten: the file is stale.
            let _ = std::fs::remove_file(pending);
            tracing::info!(error = %e, "first admin token not created");
        }
        Err(e) => {
            // It may still apply: keep the secret, and publish it once the token shows up
            // (or, if this term ends first, when this node leads again: `finish`).
            tracing::warn!(error = %e, "first admin token in doubt; waiting to see it applied");
            let mut applied = context.node.watch_applied();
            loop {
                if context.node.state().access.tokens.contains_key(&token.id) {
                    finish(context, file, pending);
                    return;
                }
                tokio::select! {
                    _ = context.stop.cancelled() => return,
                    changed = applied.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}

/// Whether a failed proposal certainly did not apply, so its secret may be thrown away.
fn surely_not_applied(error: &ProposeError) -> bool {
    matches!(
        error,
        ProposeError::Superseded { .. }
            | ProposeError::Rejected { .. }
            | ProposeError::Refused(_)
            | ProposeError::Encode(_)
    )
}

/// Writes `secret` to `file`, readable by the owner only, replacing the file atomically.
fn write_secret(file: &Path, secret: &str) -> std::io::Result<()> {
    let directory = file.parent().unwrap_or(Path::new("."));
    let mut temporary = tempfile::NamedTempFile::new_in(directory)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temporary
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(temporary, "{secret}")?;
    temporary.as_file().sync_all()?;
    temporary.persist(file).map_err(|e| e.error)?;
    Ok(())
}
