//! Contexts: named hubs with their CA and token, kept in the CLI's config file so that
//! `flotilla status` needs no flags, as kubectl's kubeconfig does. `flotilla login` adds one
//! and makes it current; `flotilla config get-contexts | use-context | current-context |
//! delete-context` manage them.
//!
//! The file is `$FLOTILLA_CONFIG`, else `$XDG_CONFIG_HOME/flotilla/config.yaml`, else
//! `~/.config/flotilla/config.yaml`; it holds tokens, so it is written with mode 0600 (and a
//! file others may read is warned about).
//!
//! ```yaml
//! currentContext: prod
//! contexts:
//!   prod:
//!     hub: hub.example:7071
//!     ca: |
//!       -----BEGIN CERTIFICATE-----
//!       ...
//!     token: flt_...
//!   local: {hub: 127.0.0.1:7071, insecure: true}
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::output::{OutputFormat, Table, emit, print_structured};

/// The config file's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Contexts {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub(crate) contexts: BTreeMap<String, HubContext>,
}

/// One hub.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HubContext {
    /// Its API address.
    pub(crate) hub: String,
    /// Its CA certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca: Option<String>,
    /// The token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    /// Plain HTTP/2 (a hub started with --insecure).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) insecure: bool,
}

/// Where the config file is.
pub(crate) fn path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FLOTILLA_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("flotilla").join("config.yaml"))
}

impl Contexts {
    /// Reads the config file; none (or no home) is an empty config.
    pub(crate) fn load() -> anyhow::Result<Contexts> {
        match path() {
            Some(path) => Self::load_from(&path),
            None => Ok(Contexts::default()),
        }
    }

    /// Reads `path`; a missing file is an empty config.
    pub(crate) fn load_from(path: &Path) -> anyhow::Result<Contexts> {
        warn_if_readable_by_others(path);
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contexts::default()),
            Err(e) => bail!("cannot read the config file {}: {e}", path.display()),
        };
        if text.trim().is_empty() {
            return Ok(Contexts::default());
        }
        serde_saphyr::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "config file {}: {e}; fix it, or move it away and `flotilla login` again",
                path.display()
            )
        })
    }

    /// Writes `path` whole through a temporary file of its own (mode 0600, as `tempfile`
    /// creates them), renamed over it: a reader never sees half a file, and two writers never
    /// share a temporary file.
    pub(crate) fn save_to(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = serde_saphyr::to_string(self).context("encoding the config")?;
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("writing a temporary file in {}", dir.display()))?;
        file.write_all(text.as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(path)
            .map_err(|e| anyhow::anyhow!("replacing {}: {}", path.display(), e.error))?;
        Ok(())
    }

    /// The context to use: `named`, else the current one, else none. A name that is not there
    /// is an error listing those that are.
    pub(crate) fn select(
        &self,
        named: Option<&str>,
    ) -> anyhow::Result<(Option<String>, Option<&HubContext>)> {
        let name = match named {
            Some(name) => name,
            None => match &self.current_context {
                Some(name) => name.as_str(),
                None => return Ok((None, None)),
            },
        };
        match self.contexts.get(name) {
            Some(context) => Ok((Some(name.to_owned()), Some(context))),
            None => bail!(
                "context `{name}` is not in {}; {}",
                path().map(|p| p.display().to_string()).unwrap_or_default(),
                self.known()
            ),
        }
    }

    fn known(&self) -> String {
        if self.contexts.is_empty() {
            "there are none yet: `flotilla login HOST:PORT --ca-file FILE --token TOKEN` adds one"
                .to_owned()
        } else {
            let names: Vec<&str> = self.contexts.keys().map(String::as_str).collect();
            format!("known: {}", names.join(", "))
        }
    }
}

/// Says so when the config file (which holds tokens) is readable by others; the next write
/// makes it 0600.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: {} holds tokens but others may read it; `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Arguments of `flotilla config`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// List the contexts; `*` marks the current one.
    GetContexts {
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
    /// Make a context the current one.
    UseContext {
        /// The context.
        name: String,
    },
    /// Print the current context's name.
    CurrentContext,
    /// Remove a context (and its token) from the config file.
    DeleteContext {
        /// The context.
        name: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContextView<'a> {
    name: &'a str,
    current: bool,
    hub: &'a str,
    tls: bool,
    token: bool,
}

/// Runs `flotilla config …`.
pub(crate) fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    let path = path().context("no config file: set FLOTILLA_CONFIG or HOME")?;
    let mut contexts = Contexts::load_from(&path)?;
    match &args.action {
        ConfigAction::GetContexts { output } => {
            let views: Vec<ContextView> = contexts
                .contexts
                .iter()
                .map(|(name, c)| ContextView {
                    name,
                    current: contexts.current_context.as_deref() == Some(name.as_str()),
                    hub: &c.hub,
                    tls: !c.insecure,
                    token: c.token.is_some(),
                })
                .collect();
            if *output != OutputFormat::Table {
                return print_structured(&views, *output);
            }
            let mut table = Table::new(&["CURRENT", "NAME", "HUB", "TLS", "TOKEN"]);
            for view in &views {
                let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
                table.row(vec![
                    if view.current { "*" } else { "" }.to_owned(),
                    view.name.to_owned(),
                    view.hub.to_owned(),
                    yes(view.tls),
                    yes(view.token),
                ]);
            }
            emit(&table.render())
        }
        ConfigAction::UseContext { name } => {
            contexts.select(Some(name))?;
            contexts.current_context = Some(name.clone());
            contexts.save_to(&path)?;
            emit(&format!("switched to context `{name}`\n"))
        }
        ConfigAction::CurrentContext => match &contexts.current_context {
            Some(name) => emit(&format!("{name}\n")),
            None => bail!(
                "no current context; `flotilla login` or `flotilla config use-context NAME` sets one"
            ),
        },
        ConfigAction::DeleteContext { name } => {
            if contexts.contexts.remove(name).is_none() {
                bail!(
                    "context `{name}` is not in {}; {}",
                    path.display(),
                    contexts.known()
                );
            }
            if contexts.current_context.as_deref() == Some(name.as_str()) {
                contexts.current_context = None;
            }
            contexts.save_to(&path)?;
            emit(&format!("deleted context `{name}`\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_round_trip_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("sub/config.yaml");
        let mut contexts = Contexts::default();
        contexts.contexts.insert(
            "prod".into(),
            HubContext {
                hub: "hub.example:7071".into(),
                ca: Some("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n".into()),
                token: Some("flt_x".into()),
                insecure: false,
            },
        );
        contexts.current_context = Some("prod".into());
        contexts.save_to(&path).expect("saved");
        let mode = std::fs::metadata(&path)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Contexts::load_from(&path).expect("read"), contexts);
        let (name, context) = contexts.select(None).expect("the current one");
        assert_eq!(name.as_deref(), Some("prod"));
        assert_eq!(context.map(|c| c.hub.as_str()), Some("hub.example:7071"));
        let unknown = contexts.select(Some("staging")).expect_err("unknown");
        assert!(unknown.to_string().contains("known: prod"), "{unknown}");
    }

    #[test]
    fn a_missing_file_is_empty_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("config.yaml");
        assert_eq!(
            Contexts::load_from(&path).expect("empty"),
            Contexts::default()
        );
        std::fs::write(&path, "contexts: {prod: {hub: x, tokn: y}}\n").expect("written");
        let error = Contexts::load_from(&path)
            .expect_err("unknown key")
            .to_string();
        assert!(
            error.contains("config.yaml") && error.contains("tokn"),
            "{error}"
        );
    }
}
