//! The flags every command takes, before or after its name (`flotilla -o json status` and
//! `flotilla status -o json` are the same): where the hub is and who we are (`--hub`,
//! `--token`, `--ca-file`, `--insecure`, `--context`) and how to print (`-o`).
//!
//! Each setting comes from, first to last: the flag, its environment variable (`FLOTILLA_HUB`,
//! `FLOTILLA_TOKEN`, `FLOTILLA_CA_FILE`, `FLOTILLA_INSECURE`), the context (`--context`,
//! `FLOTILLA_CONTEXT`, else the config file's current context; `flotilla login` writes them,
//! see `contexts`), the default (`127.0.0.1:7071`, table).
//!
//! Commands read the resolved settings through their `#[arg(skip = …)]` fields: `main` resolves
//! them from the parsed flags before it builds the command, so every command keeps its own
//! `hub` and `output` as before.

use std::path::PathBuf;
use std::sync::OnceLock;

use clap::Args;

use crate::contexts::Contexts;
use crate::hub::{DEFAULT_HUB, HubArgs};
use crate::output::OutputFormat;

/// The flags every command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// The hub's API address (HOST:PORT), as `flotilla-hub` prints it (`api listening on ...`).
    #[arg(long, global = true, env = "FLOTILLA_HUB", value_name = "HOST:PORT")]
    hub: Option<String>,
    /// The API token (flt_...), as `flotilla token create` printed it; a new hub writes its
    /// first admin token to `<data-dir>/admin-token`.
    #[arg(long, global = true, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The hub's CA certificate (its `<data-dir>/ca.crt`): connect with TLS trusting it alone.
    #[arg(long, global = true, env = "FLOTILLA_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Speak plain HTTP/2 to a hub started with --insecure.
    #[arg(long, global = true, env = "FLOTILLA_INSECURE", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    insecure: bool,
    /// The context (from `flotilla login`) to use instead of the current one.
    #[arg(long, global = true, env = "FLOTILLA_CONTEXT")]
    context: Option<String>,
    /// Output format: table (for people), json or yaml (for scripts); `preview` also takes
    /// markdown (a pull request's comment).
    #[arg(short, long, global = true, value_enum)]
    output: Option<OutputFormat>,
}

/// The settings in force, resolved once before a command is built.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Where the hub is and how to reach it.
    pub(crate) hub: HubArgs,
    /// `-o`, if given.
    pub(crate) output: Option<OutputFormat>,
}

static RESOLVED: OnceLock<Resolved> = OnceLock::new();

impl Global {
    /// The hub settings given by flag or environment only (no context, no default): what
    /// `flotilla login` records.
    pub(crate) fn given(&self) -> (Option<String>, Option<String>, Option<PathBuf>, bool) {
        (
            self.hub.clone(),
            self.token.clone(),
            self.ca_file.clone(),
            self.insecure,
        )
    }

    /// Whether the config file could matter: a context is named, or the hub is not given.
    pub(crate) fn needs_contexts(&self) -> bool {
        self.context.is_some() || self.hub.is_none()
    }

    /// Resolves the settings against the contexts (none when `ignore_context`) and records
    /// them for the commands.
    pub(crate) fn resolve(
        &self,
        contexts: &Contexts,
        ignore_context: bool,
    ) -> anyhow::Result<Resolved> {
        let (_, context) = match ignore_context {
            true => (None, None),
            false => contexts.select(self.context.as_deref())?,
        };
        // A context's token, CA and transport go only to its own hub: a hub given by flag or
        // environment that is another takes nothing from the context.
        let context = context.filter(|c| self.hub.as_ref().is_none_or(|hub| *hub == c.hub));
        let hub = HubArgs {
            hub: self
                .hub
                .clone()
                .or_else(|| context.map(|c| c.hub.clone()))
                .unwrap_or_else(|| DEFAULT_HUB.to_owned()),
            token: self
                .token
                .clone()
                .or_else(|| context.and_then(|c| c.token.clone())),
            // A CA file given wins over the context's CA, and --insecure over both.
            ca_file: self.ca_file.clone(),
            ca_pem: match self.ca_file {
                Some(_) => None,
                None => context.and_then(|c| c.ca.clone()),
            },
            insecure: self.insecure
                || (self.ca_file.is_none() && context.is_some_and(|c| c.insecure)),
        };
        let resolved = Resolved {
            hub,
            output: self.output,
        };
        let _ = RESOLVED.set(resolved.clone());
        Ok(resolved)
    }
}

fn resolved() -> Resolved {
    RESOLVED.get().cloned().unwrap_or_else(|| Resolved {
        hub: HubArgs::default(),
        output: None,
    })
}

/// The hub settings in force (for `#[arg(skip = …)]`).
pub(crate) fn hub() -> HubArgs {
    resolved().hub
}

/// `-o`, table when not given (for `#[arg(skip = …)]`).
pub(crate) fn output() -> OutputFormat {
    resolved().output.unwrap_or(OutputFormat::Table)
}

/// `-o` as given, if given.
pub(crate) fn output_given() -> Option<OutputFormat> {
    resolved().output
}
