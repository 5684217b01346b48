//! `flotilla demo`: the demo is a binary of its own, `flotilla-demo`, so that this CLI links
//! none of the hub, the agent or the simulator it runs. This command keeps `flotilla demo` working:
//! it runs the `flotilla-demo` beside this executable (a cargo build puts both in one target
//! directory), else the one on `PATH`, with the arguments as given, and exits with its code.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Args;

/// The demo's executable name.
const DEMO: &str = "flotilla-demo";

/// Arguments of `flotilla demo`: all of them are `flotilla-demo`'s.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Passed to `flotilla-demo` as given; `flotilla demo --help` lists them.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<OsString>,
}

/// Runs `flotilla-demo` with the arguments; returns its exit code. On Unix it replaces this
/// process, so signals (Ctrl-C, SIGTERM) reach the demo itself.
pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the running executable")?;
    let bin_dir = exe.parent().unwrap_or(Path::new("."));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let demo = find(bin_dir, &path).ok_or_else(|| missing(bin_dir))?;
    let mut command = Command::new(&demo);
    command.args(&args.args);
    exec(command, &demo)
}

/// `flotilla-demo` beside this executable, else the first on `path`.
fn find(bin_dir: &Path, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::iter::once(bin_dir.to_path_buf())
        .chain(std::env::split_paths(path))
        .map(|dir| dir.join(DEMO))
        .find(|candidate| candidate.is_file())
}

/// The error when no `flotilla-demo` is found, saying how to build it beside this executable.
fn missing(bin_dir: &Path) -> anyhow::Error {
    let release = if bin_dir.file_name().is_some_and(|n| n == "debug") {
        ""
    } else {
        " --release"
    };
    anyhow::anyhow!(
        "the demo is its own binary, `{DEMO}`, found neither beside this `flotilla` in {} nor \
         on PATH: build it with `cargo build{release} -p flotilla-demo`, or build and run it at \
         once with `cargo run{release} -p flotilla-demo`",
        bin_dir.display()
    )
}

#[cfg(unix)]
fn exec(mut command: Command, demo: &Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    // Its usage line then reads `flotilla demo`, the command the user typed.
    command.arg0("flotilla demo");
    let error = command.exec();
    Err(error).with_context(|| format!("running {}", demo.display()))
}

#[cfg(not(unix))]
fn exec(mut command: Command, demo: &Path) -> anyhow::Result<ExitCode> {
    let status = command
        .status()
        .with_context(|| format!("running {}", demo.display()))?;
    let code = status.code().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
