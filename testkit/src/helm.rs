//! The pinned helm that `scripts/k8s-build` builds (chart bundles render with it). A test
//! rendering a chart asks for it with [`helm_or_skip`]: missing, it fails under `CI=true` and
//! is skipped loudly otherwise. Processes a test starts get it on their `PATH` through
//! [`path_with_helm`] whenever it is built.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The directory holding the built helm, or why there is none (`scripts/k8s-build --check
/// helm`, which never builds), found once per process.
pub fn helm_dir() -> Result<&'static Path, &'static str> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(find)
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(String::as_str)
}

fn find() -> Result<PathBuf, String> {
    crate::built::built_dir("helm")
}

/// The pinned helm, or `None` after saying loudly why `test` is skipped. Under `CI=true` a
/// missing helm fails the test instead.
pub fn helm_or_skip(test: &str) -> Option<PathBuf> {
    match helm_dir() {
        Ok(dir) => Some(dir.join("helm")),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: {why}, and CI=true requires it")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// This process's `PATH` with the built helm's directory first, when it is built.
pub fn path_with_helm() -> OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Ok(dir) = helm_dir() else {
        return path;
    };
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs).unwrap_or(path)
}

/// The render tools with the built helm, when it is built (else helm on `PATH`, if any).
pub fn render_tools() -> flotilla_core::Tools {
    let tools = flotilla_core::Tools::discover();
    match helm_dir() {
        Ok(dir) => tools.with_helm(flotilla_core::Helm::Binary(dir.join("helm"))),
        Err(_) => tools,
    }
}

/// Whether the example fleet can be rendered here: its `cache` bundle is a kustomization
/// (kubectl or kustomize on `PATH`) and its `status` bundle a chart (the built helm). When
/// not, says loudly why `test` is skipped; under `CI=true` it fails the test instead.
pub fn example_renders_or_skip(test: &str) -> bool {
    let kustomize = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join("kubectl").is_file() || dir.join("kustomize").is_file());
    let missing = match (kustomize, helm_dir()) {
        (true, Ok(_)) => return true,
        (false, _) => "neither kubectl nor kustomize is on PATH".to_owned(),
        (true, Err(why)) => why.to_owned(),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {missing}, and CI=true requires it");
    }
    eprintln!("SKIPPED {test}: {missing}");
    false
}
