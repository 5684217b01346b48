//! The `flotilla-demo` executable itself (the one `flotilla demo` runs): it describes its
//! options and refuses an unknown one with the usage, before starting anything. Being
//! an integration test of this package, it also makes `cargo nextest run --workspace` build
//! the executable that the end-to-end demo tests run.

use std::process::Command;

fn demo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla-demo"))
        .args(args)
        .output()
        .expect("flotilla-demo runs")
}

#[test]
fn help_describes_the_options() {
    let output = demo(&["--help"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for option in ["--real", "--data-dir", "--keep", "--api-listen"] {
        assert!(text.contains(option), "{text}");
    }
}

#[test]
fn an_unknown_option_is_refused_with_the_usage() {
    let output = demo(&["--no-such-option"]);
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text.contains("--no-such-option"), "{text}");
    assert!(text.contains("Usage: flotilla-demo [OPTIONS]"), "{text}");
}
