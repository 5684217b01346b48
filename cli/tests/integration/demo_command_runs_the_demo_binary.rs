//! `flotilla demo` runs the `flotilla-demo` binary: the one beside `flotilla`, else the one on
//! PATH, with every argument as given, exiting with its code; without one it fails naming the
//! command that builds it. A stand-in script plays the demo, so no demo is started.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// A copy of `flotilla` alone in a directory of its own (a hard link: the same file system),
/// so that what lies beside it is up to the test.
fn lone_flotilla() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let flotilla = dir.path().join("flotilla");
    std::fs::hard_link(env!("CARGO_BIN_EXE_flotilla"), &flotilla).unwrap();
    (dir, flotilla)
}

/// A stand-in `flotilla-demo` in `dir` that prints its arguments, one a line, and exits with 7.
fn stand_in_demo(dir: &Path) {
    let demo = dir.join("flotilla-demo");
    std::fs::write(&demo, "#!/bin/sh\nprintf '%s\\n' \"$@\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run(flotilla: &Path, path: &Path, args: &[&str]) -> Output {
    Command::new(flotilla)
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap()
}

const ARGS: [&str; 6] = ["demo", "--real", "--data-dir", "a dir", "--help", "--"];

#[test]
fn demo_runs_the_demo_beside_flotilla_with_its_arguments_and_exit_code() {
    let (dir, flotilla) = lone_flotilla();
    stand_in_demo(dir.path());
    let nothing = tempfile::tempdir().unwrap();

    let output = run(&flotilla, nothing.path(), &ARGS);

    assert_eq!(output.status.code(), Some(7), "{output:?}");
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(said.lines().collect::<Vec<_>>(), &ARGS[1..], "{said}");
}

#[test]
fn demo_runs_the_demo_on_path_when_none_is_beside_flotilla() {
    let (_dir, flotilla) = lone_flotilla();
    let on_path = tempfile::tempdir().unwrap();
    stand_in_demo(on_path.path());

    let output = run(&flotilla, on_path.path(), &["demo", "--keep"]);

    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "--keep\n");
}

#[test]
fn demo_without_the_demo_binary_fails_saying_how_to_build_it() {
    let (_dir, flotilla) = lone_flotilla();
    let nothing = tempfile::tempdir().unwrap();

    let output = run(&flotilla, nothing.path(), &["demo"]);

    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("`flotilla-demo`"), "{said}");
    assert!(said.contains("-p flotilla-demo`"), "{said}");
}
