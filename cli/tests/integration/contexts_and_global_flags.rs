//! The CLI as a kubectl user expects it, against a real TLS hub process with tokens:
//! `flotilla login` checks the hub and the token, then saves a context (mode 0600) that later
//! commands use with no flags; a wrong token saves nothing; `-o` and the hub flags work before
//! or after the command; a wrong CA and `--insecure` against a TLS hub are named as TLS
//! problems with what to do; `flotilla completion` prints scripts for the shells.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result};
use flotilla_testkit::hub::{HubOptions, HubProcess};
use flotilla_testkit::small_fleet;

/// `flotilla ARGS` with none of the hub's settings in its environment, the config file at
/// `config`, and `stdin` as its input.
fn flotilla(config: &std::path::Path, args: &[&str], stdin: &str) -> Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .env("FLOTILLA_CONFIG", config)
        .env_remove("FLOTILLA_HUB")
        .env_remove("FLOTILLA_TOKEN")
        .env_remove("FLOTILLA_CA_FILE")
        .env_remove("FLOTILLA_INSECURE")
        .env_remove("FLOTILLA_CONTEXT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    Ok(child.wait_with_output()?)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn login_saves_a_context_and_flags_go_anywhere() -> Result<()> {
    let (repo, _) = small_fleet::repository()?;
    let dir = tempfile::tempdir()?;
    let clusters_file = dir.path().join("clusters.yaml");
    std::fs::write(&clusters_file, small_fleet::INVENTORY)?;
    let hub = HubProcess::start(&HubOptions {
        repo_url: repo.url(),
        clusters_file,
        poll_interval: "200ms".into(),
        webhook_secret: None,
        insecure: false,
    })?;
    let credentials = hub.credentials().context("a TLS hub")?.clone();
    let ca = credentials.ca_file.display().to_string();
    let config = dir.path().join("home/.config/flotilla/config.yaml");

    // A wrong token: refused, and nothing saved.
    let refused = flotilla(
        &config,
        &["login", hub.api(), "--ca-file", &ca, "--token-stdin"],
        "flt_wrong.token\n",
    )?;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("did not accept the token"),
        "{}",
        stderr(&refused)
    );
    assert!(!config.exists(), "a refused login saves nothing");

    // The right one.
    let login = flotilla(
        &config,
        &[
            "login",
            hub.api(),
            "--ca-file",
            &ca,
            "--token-stdin",
            "--name",
            "prod",
        ],
        &format!("{}\n", credentials.token),
    )?;
    assert!(login.status.success(), "{}", stderr(&login));
    let mode = std::fs::metadata(&config)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the config file holds a token");
    let saved = std::fs::read_to_string(&config)?;
    assert!(saved.contains("currentContext: prod"), "{saved}");
    assert!(
        saved.contains("BEGIN CERTIFICATE"),
        "the CA is kept: {saved}"
    );

    // No flags at all now; `-o` before or after the command.
    for args in [
        &["-o", "json", "status"][..],
        &["status", "-o", "json"],
        &["status", "--output=json", "--context", "prod"],
    ] {
        let output = flotilla(&config, args, "")?;
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let status: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("{args:?} prints JSON"))?;
        assert!(status["stages"].is_array(), "{args:?}: {status}");
    }
    let contexts = flotilla(&config, &["config", "get-contexts"], "")?;
    let table = String::from_utf8_lossy(&contexts.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with('*') && l.contains("prod") && l.contains(hub.api())),
        "{table}"
    );
    let unknown = flotilla(&config, &["status", "--context", "staging"], "")?;
    assert!(
        stderr(&unknown).contains("context `staging` is not in")
            && stderr(&unknown).contains("known: prod"),
        "{}",
        stderr(&unknown)
    );

    // A CA of another group: a TLS failure, named, with what to do.
    let other = flotilla_pki::GroupCa::generate("other", std::time::SystemTime::now())?;
    let other_ca = dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, other.certificate_pem())?;
    let other_ca = other_ca.display().to_string();
    let wrong = flotilla(&config, &["--ca-file", &other_ca, "status"], "")?;
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains(&format!(
            "TLS handshake with the hub at {} failed",
            hub.api()
        )) && stderr(&wrong).contains("not signed by the CA in --ca-file"),
        "{}",
        stderr(&wrong)
    );
    // Plain HTTP/2 to a hub that speaks TLS.
    let plain = flotilla(&config, &["status", "--insecure"], "")?;
    assert_eq!(plain.status.code(), Some(1));
    assert!(
        (stderr(&plain).contains("speaks TLS") || stderr(&plain).contains("that speaks TLS"))
            && stderr(&plain).contains("--ca-file"),
        "{}",
        stderr(&plain)
    );

    // A context named in the environment bears on no command that talks to no hub, nor on
    // `config`; a hub given by flag that is not the context's gets none of its token.
    let lint = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["lint", "/nonexistent-repository"])
        .env("FLOTILLA_CONFIG", &config)
        .env("FLOTILLA_CONTEXT", "staging")
        .output()?;
    assert!(
        !stderr(&lint).contains("context `staging`"),
        "{}",
        stderr(&lint)
    );
    let other = flotilla(&config, &["status", "--hub", "127.0.0.1:1"], "")?;
    assert!(
        stderr(&other).contains("the hub speaks TLS: pass --ca-file"),
        "{}",
        stderr(&other)
    );

    // Completion scripts.
    for shell in ["bash", "zsh", "fish"] {
        let script = flotilla(&config, &["completion", shell], "")?;
        assert!(script.status.success(), "{shell}: {}", stderr(&script));
        let text = String::from_utf8_lossy(&script.stdout);
        assert!(
            text.contains("flotilla") && text.contains("rollback"),
            "{shell}"
        );
    }
    Ok(())
}
