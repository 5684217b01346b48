//! A `flotilla-hub` process serves TLS on every listener by default: it writes its CA to
//! `<data-dir>/ca.crt`, a client trusting that CA gets answers, and plaintext clients get
//! none. Under `--insecure` it says so loudly at every start. Keys at rest: the data dir is
//! owner-only whatever the umask, and the CA's private key stays in `ca.key`, never in the log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_proto::v1::AdminListClustersRequest;
use flotilla_proto::v1::admin_client::AdminClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a hub on free ports; returns it with its API and HTTP addresses and its stderr lines
/// up to the moment it printed them.
fn start(data: &Path, extra: &[&str]) -> Result<(Killed, String, String, Lines)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla-hub"))
        .args(["--id", "1", "--listen", "127.0.0.1:0"])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let child = Killed(child);
    let lines = Lines::default();
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            collected.0.lock().push(line);
        }
    });
    let (mut api, mut http) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("api listening on ") {
            api = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("http listening on ") {
            http = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    let (Some(api), Some(http)) = (api, http) else {
        bail!("flotilla-hub exited before printing its addresses");
    };
    Ok((child, api, http, lines))
}

/// A process's stderr lines, collected as they come.
#[derive(Clone, Default)]
struct Lines(Arc<parking_lot::Mutex<Vec<String>>>);

impl Lines {
    /// Whether a line containing `text` arrives within `within`.
    fn wait_for(&self, text: &str, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.0.lock().iter().any(|l| l.contains(text)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

async fn https_get(ca_file: &Path, address: &str, path: &str) -> Result<String> {
    let ca = std::fs::read_to_string(ca_file)?;
    let mut config = flotilla_pki::client_config(&flotilla_pki::TrustRoot::from_pem(&ca)?, None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from("127.0.0.1")?, tcp)
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut answer)).await??;
    Ok(answer)
}

#[tokio::test]
async fn every_listener_speaks_tls_and_refuses_plaintext() -> Result<()> {
    flotilla_pki::install_crypto_provider();
    let data = tempfile::tempdir()?;
    let (_hub, api, http, _) = start(data.path(), &[])?;
    let ca_file = data.path().join("ca.crt");
    assert!(ca_file.is_file(), "no ca.crt in the data dir");

    let page = https_get(&ca_file, &http, "/healthz").await?;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    // The node certificate's expiry, for alerting: about 90 days from now.
    let metrics = https_get(&ca_file, &http, "/metrics").await?;
    let expiry: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("flotilla_node_certificate_expiry_timestamp_seconds "))
        .with_context(|| format!("no certificate expiry in the metrics:\n{metrics}"))?
        .trim()
        .parse()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let days = (expiry.saturating_sub(now.as_secs())) / 86_400;
    assert!((89..=90).contains(&days), "expires in {days} days");

    // Plain HTTP on the HTTP listener: no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(&http).await?;
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "plain HTTP was answered"
    );

    // Plaintext gRPC on the API listener: refused.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{api}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let listed = AdminClient::new(channel)
            .list_clusters(AdminListClustersRequest {})
            .await;
        assert!(listed.is_err(), "a plaintext gRPC call was answered");
    }
    Ok(())
}

#[tokio::test]
async fn an_insecure_hub_warns_at_every_start() -> Result<()> {
    let data = tempfile::tempdir()?;
    for start_number in 1..=2 {
        let (hub, _, _, stderr) = start(data.path(), &["--insecure"])?;
        assert!(
            stderr.wait_for("WARNING: --insecure", Duration::from_secs(10)),
            "start {start_number} did not warn: {:?}",
            stderr.0.lock()
        );
        drop(hub);
    }
    assert!(
        !data.path().join("ca.crt").exists(),
        "an insecure hub wrote a CA"
    );
    Ok(())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

#[tokio::test]
async fn keys_at_rest_are_owner_only_and_the_ca_key_never_enters_the_log() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    flotilla_pki::install_crypto_provider();
    let parent = tempfile::tempdir()?;
    let data = parent.path().join("data");
    // A data dir someone left open to everyone is narrowed, not trusted as it is.
    std::fs::create_dir(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))?;
    let (hub, _, http, stderr) = start(&data, &[])?;
    assert_eq!(mode(&data), 0o700, "data dir");
    assert!(
        stderr.wait_for("narrowed to its owner", Duration::from_secs(10)),
        "no warning about the open data dir: {:?}",
        stderr.0.lock()
    );
    assert_eq!(mode(&data.join("raft.redb")), 0o600, "raft.redb");
    assert_eq!(mode(&data.join("ca.key")), 0o600, "ca.key");
    let key = std::fs::read_to_string(data.join("ca.key"))?;
    assert!(key.contains("PRIVATE KEY"), "ca.key holds the key");
    // Neither the log, nor a snapshot, nor anything else but ca.key holds the key.
    let key_body: String = key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let first_line = key.lines().nth(1).context("key body")?.to_owned();
    for file in files_under(&data) {
        if file.ends_with("ca.key") {
            continue;
        }
        // A file written aside and renamed into place may be gone by now: its final form is
        // listed too.
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(&first_line),
            "{} holds the CA key",
            file.display()
        );
    }
    assert!(!key_body.is_empty());
    drop(hub);

    // A restart takes the key from ca.key and the certificate from the state: same CA.
    let ca_before = std::fs::read_to_string(data.join("ca.crt"))?;
    let (_hub, _, http_again, _) = start(&data, &[])?;
    let ca_after = std::fs::read_to_string(data.join("ca.crt"))?;
    assert_eq!(ca_before, ca_after, "the group kept its CA");
    let page = https_get(&data.join("ca.crt"), &http_again, "/healthz").await?;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let _ = http;
    Ok(())
}

#[tokio::test]
async fn a_node_without_its_ca_key_refuses_to_start_and_says_how_to_fix_it() -> Result<()> {
    flotilla_pki::install_crypto_provider();
    let data = tempfile::tempdir()?;
    let (hub, _, _, _) = start(data.path(), &[])?;
    drop(hub);
    std::fs::remove_file(data.path().join("ca.key"))?;
    let output = Command::new(env!("CARGO_BIN_EXE_flotilla-hub"))
        .args(["--id", "1", "--listen", "127.0.0.1:0"])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ca.key") && stderr.contains("--ca-cert and --ca-key"),
        "{stderr}"
    );
    Ok(())
}
