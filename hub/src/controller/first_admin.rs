//! The first-admin controller: a group with no API token yet gets one, so the operator who
//! started it can call the Admin API. The leader creates the token `initial-admin` (admin of
//! every stage) and writes its secret to `<data-dir>/admin-token` (mode 0600) on its own
//! machine; the log names the file, never the secret. It runs once per term and does nothing
//! once any token exists (revoked ones too), so revoking `initial-admin` retires it for good.
//!
//! The file is written before the token is proposed: a crash in between leaves a file whose
//! token does not exist, and the next leader (with still no token) writes a fresh one; the other
//! order could commit a token whose secret no one has. A refused proposal (another leader's
//! token won) removes the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use crate::auth::NewToken;
use crate::auth::token::INITIAL_ADMIN;
use crate::controller::{Controller, ControllerContext};
use crate::state::Command;
use crate::state::access::{Role, RoleBinding};

/// The file, in the data directory, the first admin token's secret is written to.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Creates the first admin token of a group that has none.
pub struct FirstAdminController {
    file: PathBuf,
}

impl FirstAdminController {
    /// A controller writing the secret into `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        FirstAdminController {
            file: data_dir.join(ADMIN_TOKEN_FILE),
        }
    }
}

impl Controller for FirstAdminController {
    fn name(&self) -> &'static str {
        "first-admin"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let file = self.file.clone();
        Box::pin(async move {
            if context.node.state().access.tokens.is_empty() {
                create(&context, &file).await;
            }
            context.stop.cancelled().await;
        })
    }
}

async fn create(context: &ControllerContext, file: &Path) {
    let token = NewToken::generate(&mut rand::rng());
    if let Err(e) = write_secret(file, token.reveal()) {
        tracing::error!(
            file = %file.display(),
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
        Ok(_) => tracing::warn!(
            file = %file.display(),
            "created the first admin token `{INITIAL_ADMIN}`; its secret is in the file named here (pass it with --token or FLOTILLA_TOKEN, create named tokens with `flotilla token create`, then revoke it)"
        ),
        Err(e) => {
            // Another leader's token won, or this one was never committed: the file is stale.
            let _ = std::fs::remove_file(file);
            tracing::info!(error = %e, "first admin token not created");
        }
    }
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
