//! The `notifications` key: where the hub sends its notices (`state::notice`), checked as the
//! hub starts so a bad receiver stops it with the item and field named.
//!
//! ```yaml
//! notifications:
//!   - name: ops                      # unique; the delivery cursor is kept under it
//!     type: webhook                  # webhook (JSON), slack, or github (commit statuses)
//!     url: https://ops.example/flotilla    # or urlFile: a file holding it (Slack's is secret)
//!     secretFile: /etc/flotilla/notify-ops.key   # HMAC-SHA256 of each body
//!     events: [rolloutFailed, rolloutRolledBack] # default: every kind
//!     stages: [prod]                             # default: every stage
//!   - name: github
//!     type: github
//!     repository: acme/fleet         # statuses go to this repository's commits
//!     tokenFile: /etc/flotilla/github-token
//!     url: https://api.github.com    # the default; GitHub Enterprise: https://HOST/api/v3
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::state::notice::NoticeKind;

/// Longest a receiver's name may be.
const NAME_CHARS: usize = 64;

/// Default attempts per notice before it is given up on.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// Default longest wait for one delivery's answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where GitHub's REST API is, unless `url` says otherwise.
pub const GITHUB_API: &str = "https://api.github.com";

/// One item of `notifications` as the file spells it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReceiverFile {
    /// Its name.
    pub name: String,
    /// `webhook`, `slack` or `github`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where to send (GitHub: the API's base URL).
    pub url: Option<String>,
    /// File holding `url`, for a URL that is itself a secret (Slack's).
    pub url_file: Option<PathBuf>,
    /// GitHub: `owner/name`.
    pub repository: Option<String>,
    /// GitHub: file holding the token.
    pub token_file: Option<PathBuf>,
    /// File holding the HMAC key.
    pub secret_file: Option<PathBuf>,
    /// CA certificate (PEM) trusted for it, beside the system's.
    pub ca_file: Option<PathBuf>,
    /// Kinds sent (default: all).
    #[serde(default)]
    pub events: Vec<String>,
    /// Stages whose notices are sent (default: all).
    #[serde(default)]
    pub stages: Vec<String>,
    /// Longest wait for one answer, like `10s`.
    pub timeout: Option<String>,
    /// Attempts per notice.
    pub max_attempts: Option<u32>,
    /// The dashboard's address, for links in what is sent.
    pub dashboard_url: Option<String>,
}

/// What is sent, and how.
#[derive(Clone, PartialEq, Eq)]
pub enum ReceiverKind {
    /// Each notice as JSON.
    Webhook,
    /// Slack's incoming-webhook body (`{"text": …}`), which Mattermost and others accept too.
    Slack,
    /// A commit status on the notice's commit.
    GitHub {
        /// `owner/name`.
        repository: String,
        /// The token statuses are posted with.
        token: String,
    },
}

/// One receiver, checked. Its `Debug` shows no secret: not the key, the token, nor the URL's
/// path (Slack's holds its secret).
#[derive(Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Its name.
    pub name: String,
    /// What is sent.
    pub kind: ReceiverKind,
    /// Where.
    pub url: String,
    /// HMAC-SHA256 key: each body is signed in `X-Flotilla-Signature-256`.
    pub secret: Option<Vec<u8>>,
    /// Extra CA certificate (PEM).
    pub ca: Option<Vec<u8>>,
    /// Kinds sent; empty: all.
    pub events: BTreeSet<NoticeKind>,
    /// Stages whose notices are sent; empty: all.
    pub stages: BTreeSet<String>,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// Attempts per notice (at least 1).
    pub max_attempts: u32,
    /// The dashboard's address, for links.
    pub dashboard_url: Option<String>,
}

impl std::fmt::Debug for ReceiverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReceiverKind::Webhook => f.write_str("Webhook"),
            ReceiverKind::Slack => f.write_str("Slack"),
            ReceiverKind::GitHub { repository, .. } => f
                .debug_struct("GitHub")
                .field("repository", repository)
                .finish_non_exhaustive(),
        }
    }
}

impl std::fmt::Debug for ReceiverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &redacted(&self.url))
            .field("signed", &self.secret.is_some())
            .field("events", &self.events)
            .field("stages", &self.stages)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// A URL as logs and errors may show it: scheme and host, no path or query (which may hold a
/// secret, as Slack's do).
pub fn redacted(url: &str) -> String {
    match url.parse::<axum::http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}/…"),
            _ => "(not a URL)".to_owned(),
        },
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Checks every item of `notifications`.
pub fn receivers(files: &[ReceiverFile]) -> Result<Vec<ReceiverConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut receivers = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            field: "notifications",
            problem: format!("item {} (`{}`): {field}: {problem}", index + 1, file.name),
        };
        let receiver = receiver(file, &invalid)?;
        if !names.insert(receiver.name.clone()) {
            return Err(invalid("name", "another receiver has this name".into()));
        }
        receivers.push(receiver);
    }
    Ok(receivers)
}

fn receiver(
    file: &ReceiverFile,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<ReceiverConfig, ConfigError> {
    let name_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if file.name.is_empty() || file.name.len() > NAME_CHARS || !file.name.chars().all(name_ok) {
        return Err(invalid(
            "name",
            format!("give 1 to {NAME_CHARS} lowercase letters, digits or `-`"),
        ));
    }
    let read = |field: &str, path: &Path| {
        std::fs::read(path).map_err(|e| invalid(field, format!("{}: {e}", path.display())))
    };
    let secret = match &file.secret_file {
        Some(path) => {
            let key = read("secretFile", path)?;
            let key = key.trim_ascii().to_vec();
            if key.is_empty() {
                return Err(invalid(
                    "secretFile",
                    format!("{} is empty", path.display()),
                ));
            }
            Some(key)
        }
        None => None,
    };
    let kind = match file.kind.as_str() {
        "webhook" | "slack" => {
            if file.repository.is_some() || file.token_file.is_some() {
                return Err(invalid(
                    "repository / tokenFile",
                    "only a `github` receiver takes them".into(),
                ));
            }
            if file.kind == "webhook" {
                ReceiverKind::Webhook
            } else {
                ReceiverKind::Slack
            }
        }
        "github" => {
            let repository = file.repository.clone().unwrap_or_default();
            let parts: Vec<&str> = repository.split('/').collect();
            let part_ok = |p: &&str| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            if parts.len() != 2 || !parts.iter().all(part_ok) {
                return Err(invalid(
                    "repository",
                    format!("`{repository}` is not OWNER/NAME, like `acme/fleet`"),
                ));
            }
            let Some(path) = &file.token_file else {
                return Err(invalid(
                    "tokenFile",
                    "a github receiver needs a token allowed to write commit statuses".into(),
                ));
            };
            let token = String::from_utf8(read("tokenFile", path)?)
                .map_err(|_| invalid("tokenFile", format!("{} is not text", path.display())))?
                .trim()
                .to_owned();
            if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid(
                    "tokenFile",
                    format!("{} holds no token on one line", path.display()),
                ));
            }
            ReceiverKind::GitHub { repository, token }
        }
        other => {
            return Err(invalid(
                "type",
                format!("`{other}` is not one of webhook, slack, github"),
            ));
        }
    };
    let url = match (&file.url, &file.url_file, &kind) {
        (Some(_), Some(_), _) => {
            return Err(invalid(
                "url / urlFile",
                "give the URL or the file holding it, not both".into(),
            ));
        }
        (Some(url), None, _) => url.trim().trim_end_matches('/').to_owned(),
        (None, Some(path), _) => String::from_utf8(read("urlFile", path)?)
            .map_err(|_| invalid("urlFile", format!("{} is not text", path.display())))?
            .trim()
            .trim_end_matches('/')
            .to_owned(),
        (None, None, ReceiverKind::GitHub { .. }) => GITHUB_API.to_owned(),
        (None, None, _) => {
            return Err(invalid(
                "url",
                "where to send is required (`url`, or `urlFile` for a secret one)".into(),
            ));
        }
    };
    check_url(&url).map_err(|problem| invalid("url", problem))?;
    if let Some(dashboard) = &file.dashboard_url {
        check_url(dashboard).map_err(|problem| invalid("dashboardUrl", problem))?;
    }
    let ca = match &file.ca_file {
        Some(path) => Some(read("caFile", path)?),
        None => None,
    };
    let mut events = BTreeSet::new();
    for name in &file.events {
        let kind = NoticeKind::parse(name).ok_or_else(|| {
            let known: Vec<&str> = NoticeKind::ALL.iter().map(|k| k.name()).collect();
            invalid(
                "events",
                format!("`{name}` is not one of {}", known.join(", ")),
            )
        })?;
        events.insert(kind);
    }
    let timeout = match &file.timeout {
        Some(text) => text
            .parse::<flotilla_core::spec::Duration>()
            .map(|d| d.as_std())
            .map_err(|problem| invalid("timeout", problem.to_string()))?,
        None => DEFAULT_TIMEOUT,
    };
    if timeout.is_zero() {
        return Err(invalid("timeout", "must be positive".into()));
    }
    let max_attempts = file.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if max_attempts == 0 {
        return Err(invalid("maxAttempts", "must be at least 1".into()));
    }
    Ok(ReceiverConfig {
        name: file.name.clone(),
        kind,
        url,
        secret,
        ca,
        events,
        stages: file.stages.iter().cloned().collect(),
        timeout,
        max_attempts,
        dashboard_url: file
            .dashboard_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
    })
}

/// An `https://` URL, or `http://` to this machine (a receiver beside the hub): a notice's body
/// and a GitHub token never cross a network in the clear.
fn check_url(url: &str) -> Result<(), String> {
    let shown = redacted(url);
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| format!("{shown} is not a URL: {e}"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1") => Ok(()),
        Some("http") => Err(format!(
            "`{shown}` is plain HTTP to another machine; use https:// (plain http:// only to \
             localhost)"
        )),
        _ => Err(format!("`{shown}` is not an https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> Vec<ReceiverFile> {
        serde_saphyr::from_str(yaml).expect("test set-up")
    }

    fn problem(yaml: &str) -> String {
        receivers(&file(yaml)).expect_err("an error").to_string()
    }

    #[test]
    fn a_webhook_with_filters() {
        let dir = tempfile::tempdir().expect("test set-up");
        let key = dir.path().join("key");
        std::fs::write(&key, "s3cret\n").expect("test set-up");
        let yaml = format!(
            "- name: ops\n  type: webhook\n  url: https://ops.example/hook/\n  secretFile: {}\n  \
             events: [rolloutFailed]\n  stages: [prod]\n  maxAttempts: 3\n  timeout: 2s\n",
            key.display()
        );
        let receivers = receivers(&file(&yaml)).expect("test set-up");
        let ops = &receivers[0];
        assert_eq!(ops.kind, ReceiverKind::Webhook);
        assert_eq!(ops.url, "https://ops.example/hook");
        assert_eq!(ops.secret.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(
            ops.events.iter().copied().collect::<Vec<_>>(),
            [NoticeKind::RolloutFailed]
        );
        assert_eq!(ops.max_attempts, 3);
        assert_eq!(ops.timeout, Duration::from_secs(2));
    }

    #[test]
    fn mistakes_name_the_item_and_field() {
        let cases = [
            (
                "- {name: ops, type: webhook, url: 'http://ops.example/x'}",
                "item 1 (`ops`): url: `http://ops.example/…` is plain HTTP",
            ),
            (
                "- {name: ops, type: webhook}",
                "item 1 (`ops`): url: where to send is required",
            ),
            (
                "- {name: ops, type: email, url: 'https://x'}",
                "type: `email` is not one of webhook, slack, github",
            ),
            (
                "- {name: ops, type: webhook, url: 'https://x', events: [rolloutFailure]}",
                "events: `rolloutFailure` is not one of renderFailed",
            ),
            (
                "- {name: a, type: slack, url: 'https://x'}\n- {name: a, type: slack, url: 'https://y'}",
                "item 2 (`a`): name: another receiver has this name",
            ),
            (
                "- {name: gh, type: github, repository: acme}",
                "repository: `acme` is not OWNER/NAME",
            ),
            (
                "- {name: gh, type: github, repository: acme/fleet}",
                "tokenFile: a github receiver needs a token",
            ),
            (
                "- {name: Ops, type: slack, url: 'https://x'}",
                "name: give 1 to 64 lowercase letters",
            ),
            (
                "- {name: ops, type: slack, url: 'https://x', secretFile: /nonexistent/key}",
                "secretFile: /nonexistent/key:",
            ),
        ];
        for (yaml, expected) in cases {
            let problem = problem(yaml);
            assert!(problem.starts_with("notifications: "), "{problem}");
            assert!(problem.contains(expected), "{yaml}: {problem}");
        }
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://[::1]:80/").is_ok());
        assert!(check_url("http://10.0.0.1/hook").is_err());
        assert!(check_url("ftp://x/").is_err());
    }
}
