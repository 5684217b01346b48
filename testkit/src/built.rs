//! The tools `scripts/k8s-build` builds from pinned Go modules (helm, the registry, promtool,
//! the Kubernetes components): where they are once built, and the rule every test needing one
//! follows — missing, it fails under `CI=true` and is skipped loudly otherwise. Nothing here
//! builds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory `scripts/k8s-build` builds `tool` (`helm`, `registry` or `promtool`) into,
/// once it is built and current; else why not. Never builds.
pub fn built_dir(tool: &str) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(root.join("scripts/k8s-build"))
        .args(["--check", tool])
        .output()
        .map_err(|e| format!("cannot run scripts/k8s-build --check {tool}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last() {
        Some(bin) if output.status.success() && Path::new(bin).join(tool).is_file() => {
            Ok(PathBuf::from(bin))
        }
        _ => Err(format!(
            "{tool} is not built; run scripts/k8s-build {tool}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// The pinned `tool` `scripts/k8s-build` builds, or `None` after saying loudly why `test` is
/// skipped. Under `CI=true` a missing tool fails the test instead.
pub fn built_or_skip(test: &str, tool: &str) -> Option<PathBuf> {
    match built_dir(tool) {
        Ok(dir) => Some(dir.join(tool)),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: {why}, and CI=true requires it")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}
