//! Confining renderers (kustomize today) so that rendering depends on the commit alone: no
//! network at all, a read-only view of the checkout, a scrubbed environment, and CPU, memory,
//! file-size and descriptor limits.
//!
//! The confinement is built from util-linux's `unshare` and `prlimit`, so no code of ours runs
//! between fork and exec:
//!
//! ```text
//! prlimit --as=M --cpu=S --fsize=0 --nofile=N --
//!   unshare --net --mount [--user --map-root-user] --
//!     sh -c 'mount --bind -o ro "$1" "$1" && shift && exec "$@"' sh ROOT TOOL ARGS...
//! ```
//!
//! A new network namespace has only a loopback interface, down: every connection fails with
//! "network is unreachable", including to the host's own metadata endpoints. As root the
//! namespaces are created directly; otherwise inside a user namespace mapping the caller to
//! root (unprivileged user namespaces). Which of the two works is probed once per process.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// How strictly renderers are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Every render runs without network and with a read-only checkout; when the host cannot
    /// provide that, rendering fails with an error saying why. The hub's default.
    #[default]
    Required,
    /// Confined when the host allows it, else run with resource limits only (offline `lint`
    /// on a developer machine, the demo).
    Preferred,
    /// Resource limits only: the static checks of each renderer are the only guard against
    /// remote references. For hosts that forbid namespaces, chosen knowingly.
    Off,
}

impl SandboxMode {
    /// Parses `required`, `preferred` or `off`.
    pub fn parse(text: &str) -> Result<SandboxMode, String> {
        match text {
            "required" => Ok(SandboxMode::Required),
            "preferred" => Ok(SandboxMode::Preferred),
            "off" => Ok(SandboxMode::Off),
            other => Err(format!(
                "unknown sandbox mode `{other}`; use required, preferred or off"
            )),
        }
    }
}

/// The script run inside the new namespaces: make the checkout read-only, then become the tool.
/// Paths arrive as positional arguments, never inside the script text.
const INNER_SCRIPT: &str = r#"mount --bind -o ro "$1" "$1" && shift && exec "$@""#;

/// How this process can create the namespaces, found once.
#[derive(Debug, Clone)]
struct Isolation {
    unshare: PathBuf,
    /// Whether a user namespace is needed (not root).
    user_namespace: bool,
}

fn isolation() -> &'static Result<Isolation, String> {
    static PROBED: OnceLock<Result<Isolation, String>> = OnceLock::new();
    PROBED.get_or_init(probe)
}

fn probe() -> Result<Isolation, String> {
    let unshare = find_on_path("unshare")
        .ok_or_else(|| "`unshare` (util-linux) is not on PATH; install util-linux".to_owned())?;
    let scratch = std::env::temp_dir();
    let mut last_error = String::new();
    for user_namespace in [false, true] {
        let isolation = Isolation {
            unshare: unshare.clone(),
            user_namespace,
        };
        let mut command = isolation.command(&scratch, OsStr::new("true"), &[]);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match command.output() {
            Ok(output) if output.status.success() => return Ok(isolation),
            Ok(output) => {
                last_error = String::from_utf8_lossy(&output.stderr).trim().to_owned();
                if last_error.is_empty() {
                    last_error = format!("exited with {}", output.status);
                }
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(format!(
        "cannot create network and mount namespaces ({last_error}); allow unprivileged user namespaces or give the process CAP_SYS_ADMIN"
    ))
}

impl Isolation {
    fn command(&self, root: &Path, program: &OsStr, args: &[OsString]) -> Command {
        let mut command = Command::new(&self.unshare);
        command.args(["--net", "--mount"]);
        if self.user_namespace {
            command.args(["--user", "--map-root-user"]);
        }
        command
            .args(["--", "sh", "-c", INNER_SCRIPT, "sh"])
            .arg(root)
            .arg(program)
            .args(args);
        command
    }
}

/// Checks that renders can be confined as `mode` asks; the hub calls it at start so that an
/// unusable sandbox is a start-up error, not a failed revision later.
pub fn check(mode: SandboxMode) -> Result<(), String> {
    match (mode, isolation()) {
        (SandboxMode::Required, Err(reason)) => Err(reason.clone()),
        _ => Ok(()),
    }
}

/// Whether renders are confined in namespaces under `mode` on this host, and if not, why.
pub fn describe(mode: SandboxMode) -> String {
    match (mode, isolation()) {
        (SandboxMode::Off, _) => "off: resource limits only".to_owned(),
        (_, Ok(isolation)) if isolation.user_namespace => {
            "no network, read-only checkout (user namespace)".to_owned()
        }
        (_, Ok(_)) => "no network, read-only checkout".to_owned(),
        (_, Err(reason)) => format!("unavailable: {reason}"),
    }
}

/// The resource bounds of one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) memory_bytes: u64,
    pub(crate) cpu_seconds: u64,
}

/// Descriptors a renderer may hold: plenty for reading a repository, few enough to stop a
/// runaway one from taking the host's.
const MAX_DESCRIPTORS: u32 = 1024;

/// Wraps `program args` run in `root` (the checkout) in the sandbox `mode` asks for. The
/// returned command has a scrubbed environment (`PATH` only) and `root` as its directory.
pub(crate) fn confine(
    mode: SandboxMode,
    bounds: Bounds,
    root: &Path,
    program: &Path,
    args: &[OsString],
) -> Result<Command, String> {
    let inner = match (mode, isolation()) {
        (SandboxMode::Off, _) | (SandboxMode::Preferred, Err(_)) => None,
        (_, Ok(isolation)) => Some(isolation.command(root, program.as_os_str(), args)),
        (SandboxMode::Required, Err(reason)) => return Err(reason.clone()),
    };
    let mut command = match find_on_path("prlimit") {
        Some(prlimit) => {
            let mut command = Command::new(prlimit);
            command
                .arg(format!("--as={}", bounds.memory_bytes))
                .arg(format!("--cpu={}", bounds.cpu_seconds.max(1)))
                .arg("--fsize=0")
                .arg(format!("--nofile={MAX_DESCRIPTORS}"))
                .arg("--");
            match &inner {
                Some(inner) => command.arg(inner.get_program()).args(inner.get_args()),
                None => command.arg(program).args(args),
            };
            command
        }
        None if mode == SandboxMode::Required => {
            return Err("`prlimit` (util-linux) is not on PATH; install util-linux".to_owned());
        }
        None => match inner {
            Some(inner) => inner,
            None => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
        },
    };
    command
        .current_dir(root)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    Ok(command)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests;
