//! Commits signed by the real `git`, with `ssh-keygen` (gpg.format=ssh) and `gpg`
//! (gpg.format=openpgp), verified by `signing::verify_commit` on what libgit2's
//! `extract_signature` returns, as the hub does.
//!
//! Needs `git`, `ssh-keygen` and `gpg` on PATH: under CI=true a missing tool fails the test,
//! elsewhere the test says so and stops.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use flotilla_core::signing::{SignatureError, verify_commit};
use flotilla_core::spec::{SigningKey, SigningKeyMaterial};

/// Whether every tool is on PATH; fails under CI=true when one is not.
fn tools_present(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            Command::new(tool)
                .arg("--version")
                .output()
                .map(|_| false)
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {missing:?} not found on PATH"
    );
    eprintln!("SKIPPED: {missing:?} not found on PATH");
    false
}

fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// A repository whose git reads no configuration but its own.
struct Repo {
    dir: PathBuf,
    gnupg: Option<PathBuf>,
}

impl Repo {
    fn init(dir: &Path) -> Result<Self> {
        let repo = Repo {
            dir: dir.join("repo"),
            gnupg: None,
        };
        std::fs::create_dir_all(&repo.dir)?;
        run(repo.git().args(["init", "-q", "-b", "main"]))?;
        for (key, value) in [
            ("user.name", "Release"),
            ("user.email", "release@example.com"),
        ] {
            run(repo.git().args(["config", key, value]))?;
        }
        Ok(repo)
    }

    fn git(&self) -> Command {
        let mut command = Command::new("git");
        command
            .current_dir(&self.dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1");
        if let Some(gnupg) = &self.gnupg {
            command.env("GNUPGHOME", gnupg);
        }
        command
    }

    /// Commits a file; signed when `sign`.
    fn commit(&self, message: &str, sign: bool) -> Result<git2::Oid> {
        std::fs::write(self.dir.join("flotilla.yaml"), message)?;
        run(self.git().args(["add", "flotilla.yaml"]))?;
        let sign = if sign { "-S" } else { "--no-gpg-sign" };
        run(self.git().args(["commit", "-q", sign, "-m", message]))?;
        let head = run(self.git().args(["rev-parse", "HEAD"]))?;
        Ok(git2::Oid::from_str(head.trim())?)
    }

    /// The signature and signed payload of a commit, as the hub reads them.
    fn extract(&self, commit: git2::Oid) -> Result<(Option<Vec<u8>>, Vec<u8>)> {
        let repository = git2::Repository::open(&self.dir)?;
        match repository.extract_signature(&commit, None) {
            Ok((signature, payload)) => Ok((Some(signature.to_vec()), payload.to_vec())),
            Err(error) if error.code() == git2::ErrorCode::NotFound => {
                let odb = repository.odb()?;
                let object = odb.read(commit)?;
                Ok((None, object.data().to_vec()))
            }
            Err(error) => Err(error.into()),
        }
    }
}

#[test]
fn a_commit_signed_by_git_with_an_ssh_key_verifies() -> Result<()> {
    if !tools_present(&["git", "ssh-keygen"]) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("release");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "release", "-f"])
        .arg(&key))?;
    let intruder = dir.path().join("intruder");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&intruder))?;
    let keys = [SigningKey {
        name: "release".into(),
        key: SigningKeyMaterial::Ssh(std::fs::read_to_string(key.with_extension("pub"))?),
    }];

    let repo = Repo::init(dir.path())?;
    run(repo.git().args(["config", "gpg.format", "ssh"]))?;
    run(repo.git().args(["config", "user.signingkey"]).arg(&key))?;

    let signed = repo.commit("signed", true)?;
    let (signature, payload) = repo.extract(signed)?;
    let signature = signature.context("git wrote no signature")?;
    assert!(signature.starts_with(b"-----BEGIN SSH SIGNATURE-----"));
    let verified = verify_commit(&payload, Some(&signature), &keys)?;
    assert_eq!(verified.key.name, "release");

    // The same signature over a rewritten commit (another message) fails.
    let forged = String::from_utf8(payload.clone())?.replace("signed", "forged!");
    assert_eq!(
        verify_commit(forged.as_bytes(), Some(&signature), &keys),
        Err(SignatureError::BadSignature {
            key: "release".into()
        })
    );

    let unsigned = repo.commit("unsigned", false)?;
    let (signature, payload) = repo.extract(unsigned)?;
    assert_eq!(signature, None);
    assert!(matches!(
        verify_commit(&payload, None, &keys),
        Err(SignatureError::Unsigned(_))
    ));

    run(repo
        .git()
        .args(["config", "user.signingkey"])
        .arg(&intruder))?;
    let intruding = repo.commit("intruding", true)?;
    let (signature, payload) = repo.extract(intruding)?;
    assert!(matches!(
        verify_commit(&payload, signature.as_deref(), &keys),
        Err(SignatureError::UnknownKey { .. })
    ));
    Ok(())
}

/// Stops the gpg-agent the test's GNUPGHOME started.
struct Agent(PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.0)
            .output();
    }
}

#[test]
fn a_commit_signed_by_git_with_a_gpg_subkey_verifies() -> Result<()> {
    if !tools_present(&["git", "gpg", "gpgconf"]) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let gnupg = dir.path().join("g");
    std::fs::create_dir(&gnupg)?;
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let _agent = Agent(gnupg.clone());
    let gpg = || {
        let mut command = Command::new("gpg");
        command.env("GNUPGHOME", &gnupg).args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        command
    };
    // A certify-only primary key with a signing subkey, as gpg users commonly have.
    run(gpg().args([
        "--quick-gen-key",
        "Release <release@example.com>",
        "ed25519",
        "cert",
        "never",
    ]))?;
    let listing = run(gpg().args(["--list-keys", "--with-colons", "release@example.com"]))?;
    let primary = listing
        .lines()
        .find_map(|line| {
            line.strip_prefix("fpr:")
                .map(|rest| rest.trim_matches(':').to_owned())
        })
        .context("no fingerprint listed")?;
    run(gpg().args(["--quick-add-key", &primary, "ed25519", "sign", "never"]))?;
    let public = run(gpg().args(["--armor", "--export", &primary]))?;
    let keys = [SigningKey {
        name: "release".into(),
        key: SigningKeyMaterial::OpenPgp(public),
    }];

    let mut repo = Repo::init(dir.path())?;
    repo.gnupg = Some(gnupg.clone());
    run(repo.git().args(["config", "gpg.format", "openpgp"]))?;
    run(repo.git().args(["config", "user.signingkey", &primary]))?;

    let signed = repo.commit("signed", true)?;
    let (signature, payload) = repo.extract(signed)?;
    let signature = signature.context("git wrote no signature")?;
    assert!(signature.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
    let verified = verify_commit(&payload, Some(&signature), &keys)?;
    assert_eq!(verified.key.name, "release");
    // gpg signs with the subkey, not the certify-only primary key.
    assert_ne!(verified.fingerprint, primary.to_lowercase());

    let forged = String::from_utf8(payload)?.replace("signed", "forged!");
    assert_eq!(
        verify_commit(forged.as_bytes(), Some(&signature), &keys),
        Err(SignatureError::BadSignature {
            key: "release".into()
        })
    );
    Ok(())
}
