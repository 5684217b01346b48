//! `flotilla lint`'s schema check against a real API server: every object of the corpus
//! (`tests/lint/corpus.yaml`) is judged by the shipped schemas of the cluster's Kubernetes
//! version and by the API server (server-side apply, dry run, strict field validation), and
//! both must give the verdict the corpus writes. An object lint refuses that the server takes
//! would fail a good commit; one the server refuses that lint passes is a gap in the check.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use flotilla_core::validate::{self, CustomResources, Verdict};
use flotilla_testkit::real::RealClusters;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Corpus {
    crds: Vec<Value>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    valid: bool,
    object: Value,
}

/// Runs kubectl against the cluster; `Ok(Err(stderr))` when kubectl refused.
fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<std::result::Result<(), String>> {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .context("running kubectl")?;
    Ok(if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_matches_a_real_api_server() -> Result<()> {
    let test = "lint_matches_a_real_api_server";
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("lint/corpus.yaml");
    let corpus: Corpus = serde_saphyr::from_str(&std::fs::read_to_string(&file)?)?;
    let Some(real) = RealClusters::shared(test, 1)? else {
        return Ok(());
    };
    let kubeconfig = real.kubeconfig().to_owned();
    let work = tempfile::tempdir()?;
    let write = |name: &str, object: &Value| -> Result<String> {
        let path = work.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(object)?)?;
        Ok(path.display().to_string())
    };
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "lint-corpus"}});
    let mut setup = vec![write("namespace", &namespace)?];
    for (i, crd) in corpus.crds.iter().enumerate() {
        setup.push(write(&format!("crd-{i}"), crd)?);
    }
    for path in &setup {
        if let Err(e) = kubectl(&kubeconfig, &["apply", "--server-side", "-f", path])? {
            bail!("setting up the corpus: {e}");
        }
    }
    for crd in &corpus.crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        if let Err(e) = kubectl(
            &kubeconfig,
            &[
                "wait",
                "--for",
                "condition=Established",
                "--timeout",
                "30s",
                &format!("crd/{name}"),
            ],
        )? {
            bail!("CRD {name} not established: {e}");
        }
    }

    let version = validate::SHIPPED_VERSIONS[validate::SHIPPED_VERSIONS.len() - 1];
    let schemas = validate::shipped(version)?;
    let crds = CustomResources::from_objects(&corpus.crds);
    let mut disagreements = Vec::new();
    let (mut refused_by_both, mut accepted_by_both) = (0, 0);
    for case in &corpus.cases {
        let path = write(&case.name, &case.object)?;
        let server = kubectl(
            &kubeconfig,
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--validate=strict",
                "--field-manager=flotilla-lint-corpus",
                "-f",
                &path,
            ],
        )?;
        let lint = schemas.validate(&case.object, &crds);
        let lint_valid = match &lint {
            Verdict::Valid => true,
            Verdict::Invalid(_) => false,
            Verdict::Unchecked(why) => {
                disagreements.push(format!("{}: lint did not check it: {why}", case.name));
                continue;
            }
        };
        if server.is_ok() != case.valid || lint_valid != case.valid {
            disagreements.push(format!(
                "{}: expected {}, the API server {}, lint {}",
                case.name,
                if case.valid { "valid" } else { "invalid" },
                match &server {
                    Ok(()) => "accepted it".to_owned(),
                    Err(e) => format!("refused it ({e})"),
                },
                match &lint {
                    Verdict::Invalid(violations) => format!(
                        "refused it ({})",
                        violations
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    _ => "accepted it".to_owned(),
                }
            ));
        } else if case.valid {
            accepted_by_both += 1;
        } else {
            refused_by_both += 1;
        }
    }
    eprintln!(
        "{} cases against Kubernetes {version}: {accepted_by_both} accepted by both, \
         {refused_by_both} refused by both, {} disagreements",
        corpus.cases.len(),
        disagreements.len()
    );
    if !disagreements.is_empty() {
        bail!(
            "lint and the API server disagree:\n{}",
            disagreements.join("\n")
        );
    }
    Ok(())
}
