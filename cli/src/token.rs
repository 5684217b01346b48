//! `flotilla token create NAME --role R [--stage S ...] [--expires 30d]`, `flotilla token list`
//! and `flotilla token revoke NAME`: the hub's API tokens (admins of every stage only).

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use flotilla_proto::v1::{
    AdminCreateTokenRequest, AdminListTokensRequest, AdminRevokeTokenRequest, AdminToken,
};
use serde::Serialize;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, Table, emit, or_dash, print_structured};
use crate::time::{parse_duration, rfc3339};

/// Arguments of `flotilla token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token and print it once; the hub keeps only its hash.
    Create {
        /// Name (1-63 of a-z, 0-9, '-', '_', '.'), unique among unrevoked tokens.
        name: String,
        /// viewer (read), deployer (promote, roll back, pause, resume, approve) or admin
        /// (everything, incl. clusters, tokens and forced promotions).
        #[arg(long)]
        role: String,
        /// A stage the role is for; repeat for several. None: every stage.
        #[arg(long = "stage")]
        stages: Vec<String>,
        /// How long it works, like 30d or 12h. None: until revoked.
        #[arg(long)]
        expires: Option<String>,
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
        /// Output format.
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
    /// List the tokens (never their secrets).
    List {
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
        /// Output format.
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's name.
        name: String,
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
        /// Output format.
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
}

/// A token as `-o json|yaml` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView {
    name: String,
    id: String,
    role: String,
    /// Empty: every stage.
    stages: Vec<String>,
    expires: Option<String>,
    created_by: String,
    created: Option<String>,
    revoked: Option<String>,
    #[serde(skip)]
    expires_ms: i64,
}

impl From<AdminToken> for TokenView {
    fn from(token: AdminToken) -> Self {
        let time = rfc3339;
        TokenView {
            expires_ms: token.expires_at_ms,
            name: token.name,
            id: token.id,
            role: token.role,
            stages: token.stages,
            expires: time(token.expires_at_ms),
            created_by: token.created_by,
            created: time(token.created_at_ms),
            revoked: time(token.revoked_at_ms),
        }
    }
}

/// What `token create -o json` prints: the token and its secret.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    #[serde(flatten)]
    token: TokenView,
    secret: String,
}

/// Creates, lists or revokes tokens.
pub(crate) async fn run(args: &TokenArgs) -> anyhow::Result<()> {
    match &args.action {
        TokenAction::Create {
            name,
            role,
            stages,
            expires,
            hub,
            output,
        } => {
            let expires_in_ms = match expires {
                None => 0,
                Some(text) => {
                    let duration =
                        parse_duration(text).map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
                    if duration.is_zero() {
                        anyhow::bail!("--expires must be longer than 0, like 30d");
                    }
                    i64::try_from(duration.as_millis()).context("--expires is too long")?
                }
            };
            let mut admin = hub.connect().await?;
            let created = admin
                .create_token(AdminCreateTokenRequest {
                    name: name.clone(),
                    role: role.clone(),
                    stages: stages.clone(),
                    expires_in_ms,
                })
                .await
                .map_err(|s| hub.call_error(&format!("creating token `{name}`"), s))?
                .into_inner();
            let token = TokenView::from(created.token.unwrap_or_default());
            match output {
                OutputFormat::Table => emit(&format!(
                    "token {} created: {} on {}{}\n\n{}\n\nThis is the only time the token is shown; pass it with --token or FLOTILLA_TOKEN.\n",
                    token.name,
                    token.role,
                    scope(&token.stages),
                    token
                        .expires
                        .as_deref()
                        .map(|e| format!(", expires {e}"))
                        .unwrap_or_default(),
                    created.secret
                )),
                format => print_structured(
                    &Created {
                        token,
                        secret: created.secret,
                    },
                    *format,
                ),
            }
        }
        TokenAction::List { hub, output } => {
            let mut admin = hub.connect().await?;
            let tokens: Vec<TokenView> = admin
                .list_tokens(AdminListTokensRequest {})
                .await
                .map_err(|s| hub.call_error("listing tokens", s))?
                .into_inner()
                .tokens
                .into_iter()
                .map(TokenView::from)
                .collect();
            match output {
                OutputFormat::Table => emit(&token_table(&tokens)),
                format => print_structured(&tokens, *format),
            }
        }
        TokenAction::Revoke { name, hub, output } => {
            let mut admin = hub.connect().await?;
            let token = admin
                .revoke_token(AdminRevokeTokenRequest { name: name.clone() })
                .await
                .map_err(|s| hub.call_error(&format!("revoking token `{name}`"), s))?
                .into_inner();
            let token = TokenView::from(token);
            match output {
                OutputFormat::Table => emit(&format!("token {} revoked\n", token.name)),
                format => print_structured(&token, *format),
            }
        }
    }
}

fn scope(stages: &[String]) -> String {
    if stages.is_empty() {
        "every stage".to_owned()
    } else {
        stages.join(", ")
    }
}

fn token_table(tokens: &[TokenView]) -> String {
    let now = Utc::now().timestamp_millis();
    let mut table = Table::new(&[
        "NAME",
        "ID",
        "ROLE",
        "STAGES",
        "EXPIRES",
        "STATE",
        "CREATED BY",
    ]);
    for token in tokens {
        let state = match &token.revoked {
            Some(_) => "revoked",
            None if token.expires_ms > 0 && token.expires_ms <= now => "expired",
            None => "active",
        };
        table.row(vec![
            token.name.clone(),
            token.id.clone(),
            token.role.clone(),
            scope(&token.stages),
            or_dash(token.expires.as_deref().unwrap_or("")),
            state.to_owned(),
            token.created_by.clone(),
        ]);
    }
    table.render()
}
