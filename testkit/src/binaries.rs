//! The workspace's binaries, found next to the running test or bench executable: a test of
//! another package cannot use `env!("CARGO_BIN_EXE_…")`, but cargo puts every binary of a build
//! in the same target directory (`target/debug` for tests, whose executables live one level
//! down in `deps/`; `target/release` for a release `bench`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// `flotilla-sim`, the Kubernetes API simulator.
pub const SIM: Binary = Binary {
    name: "flotilla-sim",
    package: "flotilla-sim",
};
/// `flotilla-hub`, a hub node.
pub const HUB: Binary = Binary {
    name: "flotilla-hub",
    package: "flotilla-hub",
};
/// `flotilla-agent`, the agent.
pub const AGENT: Binary = Binary {
    name: "flotilla-agent",
    package: "flotilla-agent",
};
/// `flotilla`, the CLI.
pub const FLOTILLA: Binary = Binary {
    name: "flotilla",
    package: "flotilla-cli",
};

/// `flotilla-demo`, the demo (`flotilla demo` runs it).
pub const DEMO: Binary = Binary {
    name: "flotilla-demo",
    package: "flotilla-demo",
};

/// `bench`, the benchmarks.
pub const BENCH: Binary = Binary {
    name: "bench",
    package: "flotilla-tests",
};

/// A binary of the workspace and the package that builds it.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// The executable's name.
    pub name: &'static str,
    /// The package to build for it.
    pub package: &'static str,
}

impl Binary {
    /// Its path in the running executable's target directory, or an error saying how to build
    /// it.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe().context("finding the running executable")?;
        let dir = exe
            .parent()
            .context("the running executable has no directory")?;
        let candidates: Vec<PathBuf> = [Some(dir), dir.parent()]
            .into_iter()
            .flatten()
            .map(|d: &Path| d.join(self.name))
            .collect();
        if let Some(found) = candidates.iter().find(|c| c.is_file()) {
            return Ok(found.clone());
        }
        bail!(
            "{} is missing (looked for {}): build it with `cargo build -p {}` — \
             `cargo nextest run --workspace` and `cargo test --workspace` build every binary first",
            self.name,
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            self.package
        )
    }
}
