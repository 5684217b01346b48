#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Bounds, SandboxMode, confine};

const BOUNDS: Bounds = Bounds {
    memory_bytes: 2 * 1024 * 1024 * 1024,
    cpu_seconds: 10,
};

/// The sandbox is a hard requirement of the hub; under CI it must be available.
fn sandbox_or_skip(test: &str) -> bool {
    match super::check(SandboxMode::Required) {
        Ok(()) => true,
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: the render sandbox is unavailable and CI=true requires it: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED {test}: the render sandbox is unavailable: {reason}");
            false
        }
    }
}

fn kubectl() -> PathBuf {
    super::find_on_path("kubectl").expect("kubectl on PATH")
}

/// A TCP listener on loopback that counts the connections it accepts and answers each with an
/// HTTP 200.
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    (address, accepted)
}

/// Runs `kubectl get --raw /healthz` against `address` in the sandbox `mode`.
fn reach(mode: SandboxMode, root: &Path, address: &str) -> std::process::Output {
    let args: Vec<OsString> = [
        format!("--server=http://{address}"),
        "--request-timeout=3s".to_owned(),
        "get".to_owned(),
        "--raw".to_owned(),
        "/healthz".to_owned(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    confine(mode, BOUNDS, root, &kubectl(), &args)
        .unwrap()
        .output()
        .unwrap()
}

#[test]
fn a_confined_renderer_reaches_no_address_not_even_loopback() {
    if !sandbox_or_skip("a_confined_renderer_reaches_no_address_not_even_loopback") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (address, accepted) = counting_listener();

    let unconfined = reach(SandboxMode::Off, root.path(), &address);
    assert!(
        unconfined.status.success(),
        "the listener answers an unconfined client: {}",
        String::from_utf8_lossy(&unconfined.stderr)
    );
    let reached = accepted.load(Ordering::SeqCst);
    assert!(reached >= 1);

    let confined = reach(SandboxMode::Required, root.path(), &address);
    assert!(!confined.status.success());
    let stderr = String::from_utf8_lossy(&confined.stderr);
    assert!(stderr.contains("network is unreachable"), "{stderr}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        reached,
        "no new connection"
    );
}

#[test]
fn a_confined_renderer_cannot_write_to_the_checkout_and_sees_no_environment() {
    if !sandbox_or_skip("a_confined_renderer_cannot_write_to_the_checkout_and_sees_no_environment")
    {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let script = |mode| {
        let args: Vec<OsString> = vec![
            "-c".into(),
            r#"(: > "$0/written"); env"#.into(),
            root.path().into(),
        ];
        confine(mode, BOUNDS, root.path(), Path::new("/bin/sh"), &args)
            .unwrap()
            .output()
            .unwrap()
    };
    let confined = script(SandboxMode::Required);
    let stderr = String::from_utf8_lossy(&confined.stderr);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!root.path().join("written").exists());
    // Only PATH crosses (and what the shell sets itself): no credentials of the host's
    // environment, no HOME with its kubeconfig or cloud profiles.
    let names: Vec<String> = String::from_utf8_lossy(&confined.stdout)
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.to_owned()))
        .collect();
    assert!(names.contains(&"PATH".to_owned()), "{names:?}");
    for name in &names {
        assert!(
            ["PATH", "PWD", "OLDPWD", "SHLVL", "_"].contains(&name.as_str()),
            "{name} reached the renderer"
        );
    }

    script(SandboxMode::Off);
    assert!(
        root.path().join("written").exists(),
        "the control run writes"
    );
}

#[test]
fn modes_parse_from_their_names() {
    assert_eq!(SandboxMode::parse("required"), Ok(SandboxMode::Required));
    assert_eq!(SandboxMode::parse("preferred"), Ok(SandboxMode::Preferred));
    assert_eq!(SandboxMode::parse("off"), Ok(SandboxMode::Off));
    assert!(
        SandboxMode::parse("on")
            .unwrap_err()
            .contains("required, preferred or off")
    );
}
