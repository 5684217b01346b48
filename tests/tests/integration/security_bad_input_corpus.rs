//! The bad-input corpus, against a live hub process with TLS and tokens: hostile and malformed
//! repositories (links and paths leaving the repository, a billion laughs, an oversized file,
//! too many files and objects, deep nesting, an undefined variable, a bad spec, broken YAML, an
//! emptied `bundles:` list that the deletion guard holds),
//! forged webhooks (GitHub HMAC, GitLab token, generic HMAC), replayed signed webhooks (as they
//! were, or under a new delivery id: answered, nothing fetched), API tokens that are missing,
//! garbage, unknown, revoked, expired or of the wrong role, an oversized gRPC message, and
//! agents with a replayed or misused bootstrap token, a forged or missing certificate, a real
//! certificate claiming another cluster, a real certificate (or a bootstrap token) used from
//! another Kubernetes cluster than the one the name is bound to, a malformed cluster identity,
//! and a second agent instance while the first streams. Each
//! gets a clear error — naming the file or field where there is one — and afterwards no
//! cluster's desired state (its assigned revision, every bundle's desired revision, every
//! stage's pin) has changed. Refused API calls and webhooks are in the audit log.

use std::path::Path;
use std::process::Output;

use anyhow::{Context, Result, bail, ensure};
use flotilla_proto::v1::admin_client::AdminClient;
use flotilla_proto::v1::agent_sync_client::AgentSyncClient;
use flotilla_proto::v1::{
    AdminAddClusterRequest, AgentMessage, ClusterIdentity, Hello, HubMessage, RegisterRequest,
    agent_message,
};
use flotilla_testkit::binaries;
use flotilla_testkit::git::GitRepo;
use flotilla_testkit::hub::{HubOptions, HubProcess};
use flotilla_testkit::small_fleet;
use flotilla_testkit::wait::{PATIENCE, Probe, until};
use serde_json::Value;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const WEBHOOK_SECRET: &str = "corpus-webhook-secret";

/// A hub following the small fleet, fetching only when a signed webhook says so.
struct Corpus {
    hub: HubProcess,
    repo: GitRepo,
    ca_file: std::path::PathBuf,
    admin: String,
    _inventory: tempfile::TempDir,
}

/// What must never change: every cluster's assigned revision and desired bundle revisions, and
/// every stage's pin.
fn desired_state(status: &Value) -> Value {
    let clusters: Vec<Value> = status["clusters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let bundles: Vec<Value> = c["bundles"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|b| serde_json::json!([b["name"], b["desiredRevision"]]))
                .collect();
            serde_json::json!({"name": c["name"], "assigned": c["assignedRevision"], "bundles": bundles})
        })
        .collect();
    let stages: Vec<Value> = status["stages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| serde_json::json!([s["name"], s["pinnedRevision"]]))
        .collect();
    serde_json::json!({"clusters": clusters, "stages": stages})
}

impl Corpus {
    async fn start() -> Result<(Corpus, Value)> {
        let (repo, good) = small_fleet::repository()?;
        let inventory = tempfile::tempdir()?;
        let clusters_file = inventory.path().join("clusters.yaml");
        std::fs::write(&clusters_file, small_fleet::INVENTORY)?;
        let hub = HubProcess::start(&HubOptions {
            repo_url: repo.url(),
            clusters_file,
            poll_interval: "1h".into(),
            webhook_secret: Some(WEBHOOK_SECRET.into()),
            insecure: false,
        })?;
        let credentials = hub
            .credentials()
            .context("a hub with TLS has credentials")?;
        let corpus = Corpus {
            ca_file: credentials.ca_file.clone(),
            admin: credentials.token.clone(),
            hub,
            repo,
            _inventory: inventory,
        };
        let baseline = until(
            "every cluster assigned the first commit",
            PATIENCE,
            || async {
                let status = corpus.json(&["status"]).await?;
                let state = desired_state(&status);
                let assigned = state["clusters"].as_array().is_some_and(|clusters| {
                    clusters.len() == 3 && clusters.iter().all(|c| c["assigned"] == good.as_str())
                });
                Ok(match assigned {
                    true => Probe::Done(state),
                    false => Probe::NotYet(state.to_string()),
                })
            },
        )
        .await?;
        Ok((corpus, baseline))
    }

    /// `flotilla ARGS` with the hub's CA and `token` (none: no token at all).
    async fn flotilla(&self, token: Option<&str>, args: &[&str]) -> Result<Output> {
        let mut command = tokio::process::Command::new(binaries::FLOTILLA.path()?);
        command
            .args(args)
            .env("FLOTILLA_CONFIG", "/nonexistent/flotilla/config.yaml")
            .env("FLOTILLA_HUB", self.hub.api())
            .env("FLOTILLA_CA_FILE", &self.ca_file)
            .env_remove("FLOTILLA_INSECURE")
            .env_remove("FLOTILLA_TOKEN");
        if let Some(token) = token {
            command.env("FLOTILLA_TOKEN", token);
        }
        Ok(command.output().await?)
    }

    /// `flotilla ARGS -o json` as the admin.
    async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let output = self.flotilla(Some(&self.admin), &all).await?;
        ensure!(
            output.status.success(),
            "flotilla {all:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Runs `flotilla ARGS` with `token`, expecting a refusal; returns its error text.
    async fn refused(&self, token: Option<&str>, args: &[&str]) -> Result<String> {
        let output = self.flotilla(token, args).await?;
        ensure!(
            !output.status.success(),
            "flotilla {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        Ok(String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// Sends a webhook to the hub; returns its status code and body.
    async fn webhook(&self, headers: &[(&str, &str)], body: &[u8]) -> Result<(u16, String)> {
        let url = format!("https://{}/webhook", self.hub.http());
        let answer = flotilla_testkit::http::request_tls(
            &self.ca_file,
            "POST",
            &url,
            headers,
            body.to_vec(),
        )
        .await?;
        Ok((answer.status, answer.body))
    }

    /// A correctly signed push of `commit`: the hub fetches now. Returns the body sent.
    async fn push(&self, commit: &str) -> Result<Vec<u8>> {
        let body = format!(r#"{{"ref":"refs/heads/main","after":"{commit}"}}"#).into_bytes();
        let signature = flotilla_hub::http::webhook::sign(WEBHOOK_SECRET, &body);
        let (status, answer) = self
            .webhook(&[("x-flotilla-signature", &signature)], &body)
            .await?;
        ensure!(status == 202, "signed webhook answered {status}: {answer}");
        Ok(body)
    }

    /// Waits until `flotilla revisions` shows `commit` failed; returns its error.
    async fn failed(&self, commit: &str) -> Result<Value> {
        until(&format!("{commit} failed"), PATIENCE, || async {
            let revisions = self.json(&["revisions"]).await?;
            let found = revisions["revisions"]
                .as_array()
                .and_then(|list| list.iter().find(|r| r["commit"] == commit))
                .cloned();
            Ok(match found {
                Some(r) if r["status"] == "failed" => Probe::Done(r["error"].clone()),
                Some(r) => Probe::NotYet(r.to_string()),
                None => Probe::NotYet(format!("{commit} not fetched")),
            })
        })
        .await
    }

    /// Waits until `flotilla status` shows the rollout of `stage` to `commit` held by the
    /// deletion guard; returns why.
    async fn held(&self, stage: &str, commit: &str) -> Result<String> {
        until(&format!("{commit} held on {stage}"), PATIENCE, || async {
            let status = self.json(&["status"]).await?;
            let held = status["rollouts"].as_array().and_then(|list| {
                list.iter().find(|r| {
                    r["stage"] == stage
                        && r["toRevision"] == commit
                        && r["status"] == "awaitingApproval"
                })
            });
            Ok(match held.and_then(|r| r["deletionHold"].as_str()) {
                Some(why) => Probe::Done(why.to_owned()),
                None => Probe::NotYet(status["rollouts"].to_string()),
            })
        })
        .await
    }

    async fn assert_unchanged(&self, baseline: &Value, case: &str) -> Result<()> {
        let now = desired_state(&self.json(&["status"]).await?);
        if now != *baseline {
            bail!("{case}: the desired state changed:\nbefore {baseline}\nafter  {now}");
        }
        Ok(())
    }

    /// A token created by the admin; returns its secret.
    async fn token(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["token", "create"];
        all.extend(args);
        let created = self.json(&all).await?;
        created["secret"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no secret in {created}"))
    }
}

/// A hostile or malformed commit, what the revision's error must name, and how to undo it.
struct BadCommit {
    what: &'static str,
    apply: fn(&GitRepo, &Path) -> Result<()>,
    undo: fn(&GitRepo) -> Result<()>,
    /// The file the error names.
    file: &'static str,
    /// The line the error names, where the case pins it: the error must then be exactly this
    /// file, line and message (`says` whole).
    line: Option<u64>,
    /// Words the message must contain (the whole message where `line` is given).
    says: &'static str,
}

fn restore_config(repo: &GitRepo) -> Result<()> {
    repo.write("bundles/app/config.yaml", small_fleet::CONFIG)
}

fn restore_spec(repo: &GitRepo) -> Result<()> {
    repo.write("flotilla.yaml", small_fleet::SPEC)
}

fn billion_laughs() -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for level in 1..10 {
        let previous = format!("*a{}", level - 1);
        let items = [previous.as_str(); 10].join(", ");
        text.push_str(&format!("  a{level}: &a{level} [{items}]\n"));
    }
    text
}

fn deep_nesting() -> String {
    let depth = 200;
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\nextra: {}1{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn many_objects(prefix: usize) -> String {
    (0..700)
        .map(|i| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: many-{prefix}-{i}}}\n")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A kustomization building the small fleet's app bundle, with `extra` fields appended.
fn kustomization(extra: &str) -> String {
    format!("resources:\n- namespace.yaml\n- config.yaml\n- deployment.yaml\n{extra}")
}

fn bad_commits() -> Vec<BadCommit> {
    vec![
        BadCommit {
            what: "symbolic link leaving the repository",
            apply: |repo, outside| repo.symlink(outside, "bundles/app/stolen.yaml"),
            undo: |repo| repo.remove("bundles/app/stolen.yaml"),
            file: "bundles/app/stolen.yaml",
            line: None,
            says: "leads outside the repository",
        },
        BadCommit {
            what: "bundle path traversal",
            apply: |repo, _| repo.edit("flotilla.yaml", "path: bundles/app", "path: ../../etc"),
            undo: restore_spec,
            file: "flotilla.yaml",
            line: None,
            says: "outside the repository",
        },
        BadCommit {
            what: "billion laughs",
            apply: |repo, _| repo.write("bundles/app/lol.yaml", &billion_laughs()),
            undo: |repo| repo.remove("bundles/app/lol.yaml"),
            file: "bundles/app/lol.yaml",
            line: None,
            says: "alias bomb",
        },
        BadCommit {
            what: "oversized file",
            apply: |repo, _| {
                let big = format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  blob: \"{}\"\n",
                    "x".repeat(5 * 1024 * 1024)
                );
                repo.write("bundles/app/big.yaml", &big)
            },
            undo: |repo| repo.remove("bundles/app/big.yaml"),
            file: "bundles/app/big.yaml",
            line: None,
            says: "over the limit",
        },
        BadCommit {
            what: "too many files",
            apply: |repo, _| {
                for i in 0..1_001 {
                    repo.write(&format!("bundles/app/many/{i}.yaml"), "")?;
                }
                Ok(())
            },
            undo: |repo| repo.remove("bundles/app/many"),
            file: "bundles/app",
            line: None,
            says: "manifest files",
        },
        BadCommit {
            what: "too many objects in a bundle",
            apply: |repo, _| {
                for i in 0..3 {
                    repo.write(&format!("bundles/app/objects-{i}.yaml"), &many_objects(i))?;
                }
                Ok(())
            },
            undo: |repo| {
                (0..3).try_for_each(|i| repo.remove(&format!("bundles/app/objects-{i}.yaml")))
            },
            file: "bundles/app",
            line: None,
            says: "objects",
        },
        BadCommit {
            what: "deep nesting",
            apply: |repo, _| repo.write("bundles/app/deep.yaml", &deep_nesting()),
            undo: |repo| repo.remove("bundles/app/deep.yaml"),
            file: "bundles/app/deep.yaml",
            line: None,
            says: "nesting deeper than the limit",
        },
        BadCommit {
            what: "undefined variable",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/config.yaml",
                    &format!("{}  farewell: ${{farewell}}\n", small_fleet::CONFIG),
                )
            },
            undo: restore_config,
            file: "bundles/app/config.yaml",
            line: None,
            says: "undefined variable `farewell`",
        },
        BadCommit {
            what: "bad spec field",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "    track: {branch: main}\n",
                    "    track: {branch: main}\n    rollot: {}\n",
                )
            },
            undo: restore_spec,
            file: "flotilla.yaml",
            line: None,
            says: "rollot",
        },
        BadCommit {
            what: "kustomize generator reading a URL (instance metadata credentials)",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization(
                        "configMapGenerator:\n- name: loot\n  options: {disableNameSuffixHash: true}\n  files: [\"creds=http://127.0.0.1:18999/latest/meta-data/iam/security-credentials/role\"]\n",
                    ),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "remote resource `http://127.0.0.1:18999/",
        },
        BadCommit {
            what: "kustomize patch from a URL",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization("patches:\n- path: https://example.com/patch.yaml\n"),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "remote resource `https://example.com/patch.yaml`",
        },
        BadCommit {
            what: "kustomize transformer configuration naming a URL",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization("transformers: [patch.yaml]\n"),
                )?;
                repo.write(
                    "bundles/app/patch.yaml",
                    "apiVersion: builtin\nkind: PatchTransformer\nmetadata: {name: p}\npath: http://169.254.169.254/latest/user-data\n",
                )
            },
            undo: |repo| {
                repo.remove("bundles/app/kustomization.yaml")?;
                repo.remove("bundles/app/patch.yaml")
            },
            file: "bundles/app/patch.yaml",
            line: None,
            says: "remote resource `http://169.254.169.254/latest/user-data`",
        },
        BadCommit {
            what: "kustomize OpenAPI schema from a file outside the repository",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization("openapi:\n  path: /etc/hostname\n"),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "leads outside the repository",
        },
        BadCommit {
            what: "bundle writing to kube-system outside its allowed namespaces",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "    namespace: app\n",
                    "    namespace: app\n    allow: {namespaces: [app], clusterScoped: false}\n",
                )?;
                repo.write(
                    "bundles/app/hijack.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: coredns, namespace: kube-system}\ndata: {Corefile: hijacked}\n",
                )
            },
            undo: |repo| {
                restore_spec(repo)?;
                repo.remove("bundles/app/hijack.yaml")
            },
            file: "bundles/app/hijack.yaml",
            line: None,
            says: "namespace `kube-system` is not in the bundle's allow.namespaces",
        },
        BadCommit {
            what: "bundle binding cluster-admin while cluster-scoped objects are not allowed",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "    namespace: app\n",
                    "    namespace: app\n    allow: {namespaces: [app], clusterScoped: false}\n",
                )?;
                repo.write(
                    "bundles/app/admin.yaml",
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: pwn}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: default, namespace: app}]\n",
                )
            },
            undo: |repo| {
                restore_spec(repo)?;
                repo.remove("bundles/app/admin.yaml")
            },
            file: "bundles/app/admin.yaml",
            line: None,
            says: "allow.clusterScoped: false",
        },
        BadCommit {
            what: "two bundles owning one object",
            apply: |repo, _| {
                repo.write(
                    "flotilla.yaml",
                    &format!(
                        "{}  - name: rival\n    path: bundles/rival\n    namespace: app\n",
                        small_fleet::SPEC
                    ),
                )?;
                repo.write(
                    "bundles/rival/config.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {owner: rival}\n",
                )
            },
            undo: |repo| {
                restore_spec(repo)?;
                repo.remove("bundles/rival")
            },
            file: "bundles/rival/config.yaml",
            line: None,
            says: "is also rendered by bundle `app`",
        },
        BadCommit {
            what: "kustomize CRDs from a URL",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization("crds:\n- https://example.com/crd.yaml\n"),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "remote resource `https://example.com/crd.yaml`",
        },
        BadCommit {
            what: "kustomize configurations from a URL",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization("configurations:\n- http://10.0.0.1/config.yaml\n"),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "remote resource `http://10.0.0.1/config.yaml`",
        },
        BadCommit {
            what: "kustomize secret generator reading a host file",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization(
                        "secretGenerator:\n- name: loot\n  env: ../../../../../../etc/hostname\n",
                    ),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "leads outside the repository",
        },
        BadCommit {
            what: "kustomize replacement source outside the repository",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization("replacements:\n- path: /etc/hostname\n"),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "leads outside the repository",
        },
        BadCommit {
            what: "kustomize inline transformer naming a URL",
            apply: |repo, _| {
                repo.write("bundles/app/kustomization.yaml", &kustomization("transformers:\n- |-\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata: {name: p}\n  path: http://169.254.169.254/latest/user-data\n"))
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "remote resource `http://169.254.169.254/latest/user-data`",
        },
        BadCommit {
            what: "kustomize remote git base",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    "resources:\n- namespace.yaml\n- git@github.com:example/repo.git//deploy\n",
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "remote resource `git@github.com:example/repo.git//deploy`",
        },
        BadCommit {
            what: "allow kind that is not a kind",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "    namespace: app\n",
                    "    namespace: app\n    allow: {kinds: [deployments]}\n",
                )
            },
            undo: restore_spec,
            file: "flotilla.yaml",
            line: None,
            says: "not a kind",
        },
        BadCommit {
            what: "allow namespace that is not a name",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "    namespace: app\n",
                    "    namespace: app\n    allow: {namespaces: [Kube_System]}\n",
                )
            },
            undo: restore_spec,
            file: "flotilla.yaml",
            line: None,
            says: "allow.namespaces[0]",
        },
        BadCommit {
            what: "dependency on a bundle that does not exist",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "    namespace: app\n",
                    "    namespace: app\n    dependsOn: [database]\n",
                )
            },
            undo: restore_spec,
            file: "flotilla.yaml",
            line: None,
            says: "dependsOn",
        },
        BadCommit {
            what: "stage promoting from a stage that does not exist",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "    track: {branch: main}\nbundles:",
                    "    promoteFrom: staging\nbundles:",
                )
            },
            undo: restore_spec,
            file: "flotilla.yaml",
            line: None,
            says: "promoteFrom",
        },
        BadCommit {
            what: "kustomize component from a URL",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization("components:\n- https://example.com/components/evil\n"),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "remote resource `https://example.com/components/evil`",
        },
        BadCommit {
            what: "kustomize validator from a URL",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization("validators:\n- http://203.0.113.9/validator.yaml\n"),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "remote resource `http://203.0.113.9/validator.yaml`",
        },
        BadCommit {
            what: "kustomize patch read from outside the repository",
            apply: |repo, _| {
                repo.write(
                    "bundles/app/kustomization.yaml",
                    &kustomization("patches:\n- path: /etc/hostname\n"),
                )
            },
            undo: |repo| repo.remove("bundles/app/kustomization.yaml"),
            file: "bundles/app/kustomization.yaml",
            line: None,
            says: "leads outside the repository",
        },
        BadCommit {
            what: "overlay path leaving the repository",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "        variables: {replicas: 2}\n",
                    "        variables: {replicas: 2}\n        path: ../../../../etc\n",
                )
            },
            undo: restore_spec,
            file: "flotilla.yaml",
            line: None,
            says: "outside the repository",
        },
        BadCommit {
            what: "misspelled field in a bundle's allow",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "    namespace: app\n",
                    "    namespace: app\n    allow: {namespace: [app]}\n",
                )
            },
            undo: restore_spec,
            file: "flotilla.yaml",
            line: None,
            says: "unknown field `namespace`",
        },
        BadCommit {
            what: "allow kind written as a resource name",
            apply: |repo, _| {
                repo.edit(
                    "flotilla.yaml",
                    "    namespace: app\n",
                    "    namespace: app\n    allow: {kinds: [apps/deployments]}\n",
                )
            },
            undo: restore_spec,
            file: "flotilla.yaml",
            line: None,
            says: "not a kind",
        },
        BadCommit {
            what: "YAML syntax error",
            // `data: [unclosed` opens a flow list on line 5 that the block mapping below it
            // cannot continue: the parser stops at the `:` of `cluster:` on line 6.
            apply: |repo, _| {
                repo.edit(
                    "bundles/app/config.yaml",
                    "\ndata:\n",
                    "\ndata: [unclosed\n",
                )
            },
            undo: restore_config,
            file: "bundles/app/config.yaml",
            line: Some(6),
            says: "bundle `app`: illegal placement of ':' indicator (clusters dev-1, prod-eu-1, prod-us-1)",
        },
    ]
}

/// A TLS channel to the hub's API listener presenting `identity` (certificate and key PEM).
async fn agent_channel(
    corpus: &Corpus,
    identity: Option<(&str, &str)>,
) -> Result<tonic::transport::Channel> {
    let ca = std::fs::read_to_string(&corpus.ca_file)?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((certificate, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(certificate, key));
    }
    Ok(
        Endpoint::from_shared(format!("https://{}", corpus.hub.api()))?
            .tls_config(tls)?
            .connect()
            .await?,
    )
}

/// Registers with `token` asking for a certificate naming `cluster`.
async fn register(
    corpus: &Corpus,
    token: &str,
    cluster: &str,
) -> Result<Result<(String, String), tonic::Status>> {
    register_from(corpus, token, cluster, None).await
}

/// Registers with `token` for `cluster`, from the Kubernetes cluster `identity` says.
async fn register_from(
    corpus: &Corpus,
    token: &str,
    cluster: &str,
    identity: Option<ClusterIdentity>,
) -> Result<Result<(String, String), tonic::Status>> {
    let key = flotilla_pki::AgentKey::generate()?;
    let request = RegisterRequest {
        bootstrap_token: token.into(),
        csr_pem: key.csr_pem(cluster)?,
        identity,
    };
    let answer = AgentSyncClient::new(agent_channel(corpus, None).await?)
        .register(request)
        .await;
    Ok(answer.map(|a| (a.into_inner().certificate_pem, key.private_key_pem())))
}

/// Opens a Sync stream saying hello as `cluster`; the hub's answer or refusal.
async fn hello(
    channel: tonic::transport::Channel,
    cluster: &str,
) -> Result<Option<HubMessage>, tonic::Status> {
    let hello = Hello {
        cluster: cluster.into(),
        agent_version: "corpus".into(),
        heartbeat_interval_ms: 200,
        ..Hello::default()
    };
    hold(channel, hello).await.map(|(_, first)| first)
}

/// The identity of the Kubernetes cluster whose kube-system namespace has `uid`.
fn kube_system(uid: &str) -> ClusterIdentity {
    ClusterIdentity {
        kube_system_uid: uid.into(),
        unreadable: String::new(),
    }
}

/// A hello as `cluster` from agent `instance` of the Kubernetes cluster `identity`, with slow
/// heartbeats (the corpus sends none).
fn hello_from(cluster: &str, instance: &str, identity: ClusterIdentity) -> Hello {
    Hello {
        cluster: cluster.into(),
        agent_version: "corpus".into(),
        heartbeat_interval_ms: 30_000,
        identity: Some(identity),
        instance: instance.into(),
        ..Hello::default()
    }
}

/// Opens a Sync stream with `hello` and keeps the agent's side open while the returned sender
/// lives; the hub's first answer, or its refusal.
async fn hold(
    channel: tonic::transport::Channel,
    hello: Hello,
) -> Result<
    (
        futures::channel::mpsc::UnboundedSender<AgentMessage>,
        Option<HubMessage>,
    ),
    tonic::Status,
> {
    let (out, rx) = futures::channel::mpsc::unbounded();
    let hello = AgentMessage {
        kind: Some(agent_message::Kind::Hello(hello)),
    };
    out.unbounded_send(hello)
        .map_err(|_| tonic::Status::internal("the queue closed"))?;
    // Bounded: a hub that never answers fails the case with a message, not the run's timeout.
    let answer = async {
        let mut inbound = AgentSyncClient::new(channel).sync(rx).await?.into_inner();
        let first = inbound.message().await?;
        Ok::<_, tonic::Status>((inbound, first))
    };
    let (mut inbound, first) = tokio::time::timeout(std::time::Duration::from_secs(30), answer)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer to the hello within 30 s"))??;
    // The stream stays open while `out` and `inbound` live: keep reading in the background.
    tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
    Ok((out, first))
}

async fn agent_cases(corpus: &Corpus, baseline: &Value) -> Result<usize> {
    let token = corpus.hub.bootstrap_token("dev-1")?;
    let (certificate, key) = register(corpus, &token, "dev-1")
        .await?
        .map_err(|s| anyhow::anyhow!("first registration refused: {s:?}"))?;
    let replay = register(corpus, &token, "dev-1")
        .await?
        .expect_err("replayed");
    assert_eq!(replay.code(), tonic::Code::PermissionDenied, "{replay:?}");
    assert!(replay.message().contains("already used"), "{replay:?}");
    corpus
        .assert_unchanged(baseline, "replayed bootstrap token")
        .await?;

    let other = corpus.hub.bootstrap_token("dev-1")?;
    let stolen = register(corpus, &other, "prod-eu-1")
        .await?
        .expect_err("other cluster");
    assert_eq!(stolen.code(), tonic::Code::InvalidArgument, "{stolen:?}");
    assert!(stolen.message().contains("prod-eu-1"), "{stolen:?}");
    corpus
        .assert_unchanged(baseline, "bootstrap token for another cluster")
        .await?;

    let garbage = register(corpus, "fltb_guess", "dev-1")
        .await?
        .expect_err("garbage");
    assert!(garbage.message().contains("bootstrap token"), "{garbage:?}");
    corpus
        .assert_unchanged(baseline, "garbage bootstrap token")
        .await?;

    // A certificate for prod-eu-1 from a CA that is not the group's: the TLS handshake is
    // refused, as the hub logs it (its API listener logs failed handshakes once per 10 s, with
    // the last reason), and the client's connection is closed under it, never answered by
    // the API. (With TLS 1.3 the client finishes its side of the handshake before the hub
    // checks its certificate, so the client sees a closed connection, not the reason.)
    let handshake_refused = "TLS handshakes from 127.0.0.1 failed in the last 10 s (last: \
                             invalid peer certificate: UnknownIssuer)";
    let logged = |log: String| {
        log.lines()
            .filter(|l| l.contains(handshake_refused))
            .count()
    };
    let before = logged(corpus.hub.log_tail());
    let forger = flotilla_pki::GroupCa::generate("flotilla", std::time::SystemTime::now())?;
    let forged_key = flotilla_pki::AgentKey::generate()?;
    let forged = forger.sign_agent_csr(
        &forged_key.csr_pem("prod-eu-1")?,
        "prod-eu-1",
        std::time::Duration::from_secs(3600),
        std::time::SystemTime::now(),
    )?;
    let forged_key_pem = forged_key.private_key_pem();
    match agent_channel(corpus, Some((&forged.certificate_pem, &forged_key_pem))).await {
        // The hub's alert came before the channel was up.
        Err(error) => eprintln!("forged certificate: no channel: {error:#}"),
        Ok(channel) => match hello(channel, "prod-eu-1").await {
            Ok(answer) => bail!("a forged certificate was served: {answer:?}"),
            Err(status) => {
                // A transport failure, not an answer of the API (which would mean the
                // certificate got through TLS and only the application refused it).
                // TLS 1.3 sends the alert after the client's handshake completed, so the client
                // sees either a closed connection or the alert itself, with whatever code the
                // transport maps it to: what matters is that it failed in transport, not in the
                // API, and that an alert that came through was about the certificate.
                let transport = std::error::Error::source(&status)
                    .is_some_and(|e| e.is::<tonic::transport::Error>());
                let chain = format!("{status:?}");
                let wrong_alert = chain.contains("alert") && !chain.contains("UnknownCA");
                assert!(
                    transport && !wrong_alert,
                    "the forged certificate was not refused by TLS: {status:?}"
                );
            }
        },
    }
    until(
        "the hub logging the forged certificate's refused handshake",
        PATIENCE,
        || async {
            let log = corpus.hub.log_tail();
            Ok(match logged(log.clone()) > before {
                true => Probe::Done(()),
                false => Probe::NotYet(
                    log.lines()
                        .filter(|l| l.contains("TLS handshakes"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
            })
        },
    )
    .await?;
    corpus
        .assert_unchanged(baseline, "forged agent certificate")
        .await?;

    // No certificate at all.
    let anonymous = hello(agent_channel(corpus, None).await?, "prod-eu-1")
        .await
        .expect_err("no certificate");
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous:?}"
    );
    corpus
        .assert_unchanged(baseline, "agent without a certificate")
        .await?;

    // dev-1's real certificate, saying hello as prod-eu-1.
    let impostor = hello(
        agent_channel(corpus, Some((&certificate, &key))).await?,
        "prod-eu-1",
    )
    .await
    .expect_err("another cluster's hello");
    assert_eq!(
        impostor.code(),
        tonic::Code::PermissionDenied,
        "{impostor:?}"
    );
    assert!(impostor.message().contains("dev-1"), "{impostor:?}");
    corpus
        .assert_unchanged(baseline, "agent claiming another cluster")
        .await?;
    Ok(6 + identity_cases(corpus, baseline, (&certificate, &key)).await?)
}

/// dev-1's real certificate used from the Kubernetes cluster it is bound to, from another one,
/// with a malformed identity, and by a second agent instance at once.
async fn identity_cases(
    corpus: &Corpus,
    baseline: &Value,
    credentials: (&str, &str),
) -> Result<usize> {
    const BOUND: &str = "6c1f0b2e-9a57-4d2e-8f0a-3b1d2c4e5f60";
    const OTHER: &str = "0d9e8c7b-6a5f-4e3d-9c2b-1a0f9e8d7c6b";
    let channel = || agent_channel(corpus, Some(credentials));
    // The first hello from a cluster binds dev-1 to it; its stream stays open.
    let (_rightful, welcome) = hold(
        channel().await?,
        hello_from("dev-1", "rightful", kube_system(BOUND)),
    )
    .await
    .map_err(|s| anyhow::anyhow!("the rightful agent was refused: {s:?}"))?;
    ensure!(welcome.is_some(), "no welcome for the rightful agent");

    // The same certificate from another cluster.
    let elsewhere = hold(
        channel().await?,
        hello_from("dev-1", "copy", kube_system(OTHER)),
    )
    .await
    .err()
    .context("dev-1's credentials were served from another cluster")?;
    assert_eq!(
        elsewhere.code(),
        tonic::Code::PermissionDenied,
        "{elsewhere:?}"
    );
    let message = elsewhere.message();
    assert!(
        message.contains(BOUND)
            && message.contains(OTHER)
            && message.contains("flotilla cluster reset-identity dev-1"),
        "{message}"
    );
    corpus
        .assert_unchanged(baseline, "credentials used from another cluster")
        .await?;

    // A registration from another cluster, with a valid token: refused, the token kept.
    let token = corpus.hub.bootstrap_token("dev-1")?;
    let registration = register_from(corpus, &token, "dev-1", Some(kube_system(OTHER)))
        .await?
        .expect_err("registered from another cluster");
    assert_eq!(
        registration.code(),
        tonic::Code::PermissionDenied,
        "{registration:?}"
    );
    register_from(corpus, &token, "dev-1", Some(kube_system(BOUND)))
        .await?
        .map_err(|s| anyhow::anyhow!("the token was spent by a refused registration: {s:?}"))?;
    corpus
        .assert_unchanged(baseline, "registration from another cluster")
        .await?;

    // A malformed identity is refused as such and never reaches the state or the logs.
    let malformed = hold(
        channel().await?,
        hello_from("dev-1", "odd", kube_system("'; drop table clusters; --")),
    )
    .await
    .err()
    .context("a malformed identity was served")?;
    assert_eq!(
        malformed.code(),
        tonic::Code::InvalidArgument,
        "{malformed:?}"
    );
    corpus
        .assert_unchanged(baseline, "malformed cluster identity")
        .await?;

    // A second agent of dev-1 itself while the first streams.
    let second = hold(
        channel().await?,
        hello_from("dev-1", "second", kube_system(BOUND)),
    )
    .await
    .err()
    .context("a second agent streamed for dev-1")?;
    assert_eq!(second.code(), tonic::Code::AlreadyExists, "{second:?}");
    corpus
        .assert_unchanged(baseline, "second agent of a cluster")
        .await?;
    Ok(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_a_clear_error_and_changes_no_cluster() -> Result<()> {
    let (corpus, baseline) = Corpus::start().await?;
    let mut cases = 0;

    // Hostile and malformed repositories.
    let outside = tempfile::tempdir()?;
    let secret = outside.path().join("secret.yaml");
    std::fs::write(
        &secret,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\nstringData: {key: value}\n",
    )?;
    let mut last_push = Vec::new();
    for bad in bad_commits() {
        (bad.apply)(&corpus.repo, &secret)?;
        let commit = corpus.repo.commit(bad.what)?;
        last_push = corpus.push(&commit).await?;
        let error = corpus.failed(&commit).await?;
        match bad.line {
            Some(line) => assert_eq!(
                error,
                serde_json::json!({"file": bad.file, "line": line, "message": bad.says}),
                "{}",
                bad.what
            ),
            None => {
                let file = error["file"].as_str().unwrap_or_default();
                let message = error["message"].as_str().unwrap_or_default();
                assert!(
                    file.starts_with(bad.file) && !message.is_empty() && message.contains(bad.says),
                    "{}: {error}",
                    bad.what
                );
            }
        }
        corpus.assert_unchanged(&baseline, bad.what).await?;
        (bad.undo)(&corpus.repo)?;
        cases += 1;
    }

    // A commit that renders but would delete everything: every stage holds it for an approval,
    // with the reason, whatever its own approval policy.
    let bundles = small_fleet::SPEC
        .find("bundles:")
        .context("the small fleet declares bundles")?;
    corpus.repo.write(
        "flotilla.yaml",
        &format!("{}bundles: []\n", &small_fleet::SPEC[..bundles]),
    )?;
    let emptied = corpus.repo.commit("bundles: []")?;
    corpus.push(&emptied).await?;
    for stage in ["dev", "prod"] {
        let held = corpus.held(stage, &emptied).await?;
        assert!(held.contains("with no bundle at all"), "{stage}: {held}");
    }
    corpus
        .assert_unchanged(&baseline, "bundles emptied")
        .await?;
    restore_spec(&corpus.repo)?;
    cases += 1;

    // Forged webhooks: 401, and the pending commit is not fetched.
    corpus.repo.write(
        "bundles/app/config.yaml",
        &format!("{}  pending: \"yes\"\n", small_fleet::CONFIG),
    )?;
    let pending = corpus.repo.commit("pending good commit")?;
    let body = br#"{"ref":"refs/heads/main"}"#;
    let forged_signature = flotilla_hub::http::webhook::sign("not-the-secret", body);
    // Each is refused naming the header at fault and whether it is missing or does not match.
    // A malformed signature is reported as one that does not match, like a wrong one: the
    // answer does not tell a prober which part of a forgery was wrong.
    let mismatch = |header: &str| {
        format!(
            "{header} does not match; check that the webhook's secret equals the hub's --webhook-secret"
        )
    };
    /// What is sent, its headers, and the error the hub must answer.
    type Forgery<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);
    let forgeries: [Forgery; 5] = [
        (
            "GitHub push with a wrong HMAC",
            vec![
                ("x-github-event", "push"),
                ("x-hub-signature-256", &forged_signature),
            ],
            mismatch("x-hub-signature-256"),
        ),
        (
            "GitHub push without a signature",
            vec![("x-github-event", "push")],
            "missing x-hub-signature-256 header; configure the webhook's secret to match the hub's --webhook-secret".into(),
        ),
        (
            "GitLab push with a wrong token",
            vec![("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "guess")],
            mismatch("x-gitlab-token"),
        ),
        (
            "generic hook with a wrong HMAC",
            vec![("x-flotilla-signature", &forged_signature)],
            mismatch("x-flotilla-signature"),
        ),
        (
            "generic hook with a malformed signature",
            vec![("x-flotilla-signature", "sha256=zz")],
            mismatch("x-flotilla-signature"),
        ),
    ];
    for (what, headers, says) in &forgeries {
        let (status, answer) = corpus.webhook(headers, body).await?;
        assert_eq!(status, 401, "{what}: {answer}");
        let answer: Value = serde_json::from_str(&answer)
            .with_context(|| format!("{what}: the answer is not JSON: {answer}"))?;
        assert_eq!(answer, serde_json::json!({"error": says}), "{what}");
        let revisions = corpus.json(&["revisions"]).await?;
        assert!(
            !revisions.to_string().contains(&pending),
            "{what}: the pending commit was fetched"
        );
        corpus.assert_unchanged(&baseline, what).await?;
        cases += 1;
    }

    // Replayed webhooks: a signed delivery sent again, as it was or under a new delivery id,
    // is answered but fetches nothing (and is not audited again).
    let signature = flotilla_hub::http::webhook::sign(WEBHOOK_SECRET, &last_push);
    let replays: [(&str, Vec<(&str, &str)>); 2] = [
        (
            "signed webhook replayed",
            vec![("x-flotilla-signature", &signature)],
        ),
        (
            "signed webhook replayed under a new delivery id",
            vec![
                ("x-flotilla-signature", &signature),
                ("x-flotilla-delivery", "never-seen-before"),
            ],
        ),
    ];
    for (what, headers) in &replays {
        let (status, answer) = corpus.webhook(headers, &last_push).await?;
        assert_eq!(status, 200, "{what}: {answer}");
        assert!(
            answer.contains("duplicate delivery, ignored"),
            "{what}: {answer}"
        );
        let revisions = corpus.json(&["revisions"]).await?;
        assert!(
            !revisions.to_string().contains(&pending),
            "{what}: the pending commit was fetched"
        );
        corpus.assert_unchanged(&baseline, what).await?;
        cases += 1;
    }

    // API tokens: missing, garbage, unknown, revoked, expired. Each is refused with its own
    // reason, as the whole of what the CLI prints, naming the hub and (where there is one)
    // the token's id, never its secret.
    let api = corpus.hub.api().to_owned();
    let not_accepted = |why: String| {
        format!(
            "error: removing cluster `dev-1`: the hub at {api} did not accept the token: {why}\n"
        )
    };
    // `flt_<id>_<secret>`: the id the hub names a token by.
    let id_of = |secret: &str| -> Result<String> {
        secret
            .split('_')
            .nth(1)
            .map(str::to_owned)
            .with_context(|| format!("no id in {secret}"))
    };
    let no_token = corpus.refused(None, &["clusters"]).await?;
    assert_eq!(
        no_token,
        format!(
            "error: listing clusters: the hub at {api} needs a token: no bearer token; pass one \
             with --token or FLOTILLA_TOKEN (`flotilla token create` makes one); pass --token or \
             set FLOTILLA_TOKEN (a new hub writes its first admin token to \
             <data-dir>/admin-token)\n"
        ),
        "missing token"
    );
    corpus.assert_unchanged(&baseline, "missing token").await?;
    let garbage = corpus
        .refused(Some("hunter2"), &["cluster", "remove", "dev-1"])
        .await?;
    assert_eq!(
        garbage,
        not_accepted(
            "not a Flotilla API token (expected flt_<id>_<secret>, as `flotilla token create` \
             prints it)"
                .into()
        ),
        "garbage token"
    );
    corpus.assert_unchanged(&baseline, "garbage token").await?;
    let unknown = format!("flt_{}_{}", "0".repeat(16), "a".repeat(64));
    let refused_unknown = corpus
        .refused(Some(&unknown), &["cluster", "remove", "dev-1"])
        .await?;
    assert_eq!(
        refused_unknown,
        not_accepted(format!(
            "token {} is unknown; check --token / FLOTILLA_TOKEN (`flotilla token list` shows \
             the tokens)",
            id_of(&unknown)?
        )),
        "unknown token"
    );
    corpus.assert_unchanged(&baseline, "unknown token").await?;
    let leaver = corpus.token(&["leaver", "--role", "admin"]).await?;
    corpus.json(&["token", "revoke", "leaver"]).await?;
    let revoked = corpus
        .refused(Some(&leaver), &["cluster", "remove", "dev-1"])
        .await?;
    assert_eq!(
        revoked,
        not_accepted(format!(
            "token {} was revoked; ask an admin for a new one (`flotilla token create`)",
            id_of(&leaver)?
        )),
        "revoked token"
    );
    corpus.assert_unchanged(&baseline, "revoked token").await?;
    let brief = corpus
        .token(&["brief", "--role", "admin", "--expires", "1ms"])
        .await?;
    let expired = corpus
        .refused(Some(&brief), &["cluster", "remove", "dev-1"])
        .await?;
    assert_eq!(
        expired,
        not_accepted(format!(
            "token {} has expired; create a new one with `flotilla token create`",
            id_of(&brief)?
        )),
        "expired token"
    );
    corpus.assert_unchanged(&baseline, "expired token").await?;
    cases += 5;
    let tokens = corpus.json(&["token", "list"]).await?;
    let listed = tokens.to_string();
    assert!(
        listed.contains("initial-admin")
            && listed.contains("\"revoked\"")
            && !listed.contains(&leaver[4..]),
        "the list names the tokens and never a secret: {tokens}"
    );

    // Tokens of the wrong role or stage.
    let viewer = corpus.token(&["watcher", "--role", "viewer"]).await?;
    let dev_deployer = corpus
        .token(&["dev-ci", "--role", "deployer", "--stage", "dev"])
        .await?;
    let wrong_roles: [(&str, &str, Vec<&str>, &str); 4] = [
        (
            "viewer rolls back",
            &viewer,
            vec!["rollback", "dev"],
            "needs the deployer role",
        ),
        (
            "deployer of dev rolls back prod",
            &dev_deployer,
            vec!["rollback", "prod"],
            "may not roll back on stage `prod`",
        ),
        (
            "deployer removes a cluster",
            &dev_deployer,
            vec!["cluster", "remove", "prod-eu-1"],
            "may not manage clusters",
        ),
        (
            "deployer mints an admin token",
            &dev_deployer,
            vec!["token", "create", "mine", "--role", "admin"],
            "may not manage tokens",
        ),
    ];
    for (what, token, args, says) in &wrong_roles {
        let refusal = corpus.refused(Some(token), args).await?;
        assert!(refusal.contains(says), "{what}: {refusal}");
        corpus.assert_unchanged(&baseline, what).await?;
        cases += 1;
    }

    // An oversized gRPC message, from a caller holding the admin token.
    flotilla_pki::install_crypto_provider();
    let ca = std::fs::read_to_string(&corpus.ca_file)?;
    let channel = Endpoint::from_shared(format!("https://{}", corpus.hub.api()))?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )?
        .connect()
        .await?;
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {}", corpus.admin).parse()?;
    let mut admin =
        AdminClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
            Ok(request)
        })
        .max_encoding_message_size(64 * 1024 * 1024);
    let huge = AdminAddClusterRequest {
        name: "huge".into(),
        labels: [("blob".to_owned(), "x".repeat(20 * 1024 * 1024))].into(),
    };
    let status = admin.add_cluster(huge).await.expect_err("too large");
    assert!(
        status.message().contains("message length too large")
            || status.message().contains("too large"),
        "{status:?}"
    );
    corpus
        .assert_unchanged(&baseline, "oversized message")
        .await?;
    cases += 1;

    // Agents: a replayed bootstrap token, a token for another cluster, a garbage token, a
    // certificate from another CA, no certificate, a real certificate saying it is another
    // cluster, used from another Kubernetes cluster or with a malformed identity, a
    // registration from another Kubernetes cluster, and a second agent at once.
    cases += agent_cases(&corpus, &baseline).await?;

    // Refusals are audited: who tried, and that it was denied.
    let audit = corpus.json(&["audit", "--limit", "1000"]).await?;
    let events = audit.as_array().context("audit list")?;
    let denied = |actor: &str, action: &str| {
        events
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["outcome"] == "denied")
    };
    assert!(denied("token:watcher", "rollback"), "{audit}");
    assert!(denied("token:dev-ci", "cluster.remove"), "{audit}");
    assert!(denied("token:dev-ci", "token.create"), "{audit}");
    assert!(denied("unauthenticated", "cluster.remove"), "{audit}");
    assert!(denied("unauthenticated webhook:github", "fetch"), "{audit}");
    assert!(denied("unauthenticated webhook:gitlab", "fetch"), "{audit}");
    assert!(denied("agent:cluster dev-1", "agent.sync"), "{audit}");
    assert!(denied("agent:cluster dev-1", "agent.register"), "{audit}");
    let pushes: u64 = events
        .iter()
        .filter(|e| e["actor"] == "webhook:generic" && e["action"] == "fetch")
        .map(|e| e["count"].as_u64().unwrap_or(1))
        .sum();
    // Each signed push is audited once and its replays not at all; past the per-actor limit
    // (10 a window) the rest of a window's pushes arrive later, as one aggregate event.
    // The emptied `bundles:` commit is one more push.
    let commits = bad_commits().len() as u64 + 1;
    assert!(
        (commits.min(10)..=commits).contains(&pushes),
        "{pushes} push events for {commits} pushes: {audit}"
    );

    // The hub still works: the pending commit goes through once a real push announces it.
    corpus.push(&pending).await?;
    until("the pending commit rendered", PATIENCE, || async {
        let revisions = corpus.json(&["revisions"]).await?;
        let rendered = revisions["revisions"]
            .as_array()
            .and_then(|list| list.iter().find(|r| r["commit"] == pending.as_str()))
            .is_some_and(|r| r["status"] == "rendered");
        Ok(match rendered {
            true => Probe::Done(()),
            false => Probe::NotYet(revisions.to_string()),
        })
    })
    .await?;
    eprintln!("{cases} bad inputs, each refused with a clear error and nothing changed");
    assert!(cases >= 60, "{cases} cases");
    Ok(())
}
