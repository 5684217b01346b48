//! The Helm chart `deploy/helm/flotilla` is the second way to install what the kustomize bases
//! in `deploy/hub` and `deploy/agent` install, so it is held to them: it lints and renders for
//! the value combinations operators use, its schema refuses values of the wrong type, it renders
//! the bases' objects field for field (only the differences docs/deploy.md lists are allowed),
//! a real Kubernetes API server accepts and stores every object it renders, and the containers
//! it renders start our real binaries.
//!
//! What is proven: `helm lint --strict` and `helm template` (the pinned helm from
//! `scripts/k8s-build --check helm`); the schema's messages; the structural equality with the
//! bases rendered by `kubectl kustomize` (kinds, names, namespaces, RBAC rules, container
//! arguments, environment, ports, probes, mounts, volumes, the hub's config file), with the
//! chart's switches equal to the bases' kustomize components; on a real control plane
//! (kube-apiserver, controller-manager and scheduler from `scripts/k8s-up`) a server-side dry
//! run that writes nothing, a server-side apply after which every rendered field is stored as
//! rendered, and the StatefulSet controller naming the hub's pods 1..3 with their pod-index
//! label, which the hub's `--id` reads; a real `flotilla-hub` started from the rendered
//! arguments, environment and config answering every probe's path and scheme with 200, and a
//! real `flotilla-agent` started from the rendered arguments, environment and the chart's own
//! ConfigMap and Secret (as the simulator stores them) registering with a real hub and applying
//! its cluster's bundle.
//!
//! What is not: no container runtime runs here, so no kubelet runs the pods, the image is not
//! pulled, volumes are not mounted (the test maps mount paths to local directories, and only
//! those, the CA and the listen ports change for running outside a pod) and probes are made by
//! the test, not by a kubelet; `helm install` itself (release records, upgrades) is not run.
//!
//! Without helm (not built by `scripts/k8s-build`), kubectl or real clusters a test says
//! SKIPPED and why, and fails under `CI=true`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_sim::{Sim, SimConfig};
use flotilla_testkit::binaries;
use flotilla_testkit::hub::{HubOptions, HubProcess};
use flotilla_testkit::manifests::{
    Mounts, PodContainer, Rendered, deploy_dir, hub_statefulset_answers_its_probes, items, kubectl,
    kubectl_or_skip, mount_path, read_back, text,
};
use flotilla_testkit::process::Process;
use flotilla_testkit::real::RealClusters;
use flotilla_testkit::small_fleet;
use flotilla_testkit::wait;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams};
use serde_json::Value;

/// The release and namespace that give the chart's objects the names of the bases' objects.
const RELEASE: &str = "flotilla";
const NAMESPACE: &str = "flotilla-system";

/// The chart's folder.
fn chart_dir() -> PathBuf {
    deploy_dir("helm").join("flotilla")
}

/// The pinned helm: the last stdout line of `scripts/k8s-build --check helm` is the folder
/// holding it. `None` when it is not built, after saying SKIPPED; under `CI=true` an error.
fn helm_or_skip(test: &str) -> Result<Option<PathBuf>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/k8s-build");
    let missing = match Command::new(&script)
        .args(["--check", "helm"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) => format!("running scripts/k8s-build --check helm: {e}"),
        Ok(out) if !out.status.success() => format!(
            "helm is not built; run scripts/k8s-build helm (Go 1.26 and the module proxy \
             needed): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let helm = Path::new(stdout.lines().last().unwrap_or_default().trim()).join("helm");
            if helm.is_file() {
                return Ok(Some(helm));
            }
            format!(
                "scripts/k8s-build --check helm names no helm ({})",
                helm.display()
            )
        }
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        bail!("{test}: helm is required under CI=true: {missing}");
    }
    eprintln!("SKIPPED {test}: {missing}");
    Ok(None)
}

/// Runs helm; its stdout, or an error with its stderr.
fn helm(helm: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(helm)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting helm {}", args.join(" ")))?;
    ensure!(
        output.status.success(),
        "helm {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `helm template RELEASE CHART -n NAMESPACE VALUES…`, parsed.
fn template(bin: &Path, release: &str, namespace: &str, values: &[&str]) -> Result<Rendered> {
    let chart = chart_dir().to_string_lossy().into_owned();
    let mut args = vec!["template", release, chart.as_str(), "-n", namespace];
    args.extend(values);
    let yaml = helm(bin, &args)?;
    let objects: Vec<Value> = serde_saphyr::from_multiple::<Value>(&yaml)
        .with_context(|| format!("parsing helm template with {values:?}"))?
        .into_iter()
        .filter(|o| !o.is_null())
        .collect();
    ensure!(
        !objects.is_empty(),
        "the chart renders nothing with {values:?}"
    );
    Ok(Rendered {
        base: "helm/flotilla",
        yaml,
        objects,
    })
}

/// The stderr of `helm template` with `values`, which must fail.
fn template_refused(bin: &Path, values: &[&str]) -> Result<String> {
    let chart = chart_dir().to_string_lossy().into_owned();
    let mut args = vec!["template", RELEASE, chart.as_str()];
    args.extend(values);
    let output = Command::new(bin).args(&args).output()?;
    ensure!(
        !output.status.success(),
        "helm template with {values:?} was not refused"
    );
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The (kind, name, namespace) of every object.
fn identities(objects: &[Value]) -> BTreeSet<(String, String, String)> {
    objects
        .iter()
        .map(|o| {
            let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                field(&o["kind"]),
                field(&o["metadata"]["name"]),
                field(&o["metadata"]["namespace"]),
            )
        })
        .collect()
}

fn kinds(rendered: &Rendered) -> BTreeSet<&str> {
    rendered
        .objects
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect()
}

#[test]
fn the_chart_lints_renders_and_refuses_wrong_values() -> Result<()> {
    let Some(bin) = helm_or_skip("the_chart_lints_renders_and_refuses_wrong_values")? else {
        return Ok(());
    };
    let chart = chart_dir();
    helm(&bin, &["lint", "--strict", &chart.to_string_lossy()])?;

    // Chart bundles with `lookup` or hooks are refused by Flotilla; its own chart has neither.
    for entry in std::fs::read_dir(chart.join("templates"))? {
        let path = entry?.path();
        let source = std::fs::read_to_string(&path)?;
        for word in ["lookup", "helm.sh/hook"] {
            ensure!(!source.contains(word), "{} uses {word}", path.display());
        }
    }
    let chart_yaml: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart.join("Chart.yaml"))?)?;
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["name"], "flotilla");
    assert_eq!(
        chart_yaml["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "appVersion is the workspace's version"
    );

    let all = template(&bin, RELEASE, NAMESPACE, &[])?;
    for kind in [
        "StatefulSet",
        "Deployment",
        "ClusterRole",
        "PodDisruptionBudget",
    ] {
        all.only(kind)?;
    }
    let image = format!(
        "ghcr.io/flotilla-dev/flotilla:{}",
        env!("CARGO_PKG_VERSION")
    );
    for workload in all
        .objects
        .iter()
        .filter(|o| o["spec"]["template"].is_object())
    {
        for container in items(&workload["spec"]["template"]["spec"]["containers"]) {
            assert_eq!(container["image"], image.as_str());
        }
    }
    // Nothing secret is made up: without values the pods mount the Secrets the operator makes.
    assert!(!kinds(&all).contains("Secret"));
    assert!(
        all.only("ConfigMap").is_err(),
        "a hub and an agent ConfigMap"
    );
    assert!(
        all.named("ConfigMap", "flotilla-agent")?["data"]["cluster"].is_null(),
        "no cluster name is invented: the agent waits for agent.cluster"
    );

    let hub_only = template(&bin, RELEASE, NAMESPACE, &["--set", "agent.enabled=false"])?;
    assert_eq!(
        kinds(&hub_only),
        BTreeSet::from([
            "ConfigMap",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
            "StatefulSet"
        ])
    );
    let agent_only = template(
        &bin,
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "hub.enabled=false",
            "--set",
            "agent.cluster=prod-eu-1",
            "--set",
            "agent.hubs={hub-1.example:7071,hub-2.example:7071}",
        ],
    )?;
    assert_eq!(
        kinds(&agent_only),
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "ServiceAccount"
        ])
    );
    let data = &agent_only.only("ConfigMap")?["data"];
    assert_eq!(data["cluster"], "prod-eu-1");
    assert_eq!(data["hub"], "hub-1.example:7071,hub-2.example:7071");

    let admin = template(
        &bin,
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "hub.enabled=false",
            "--set",
            "agent.rbac.clusterAdmin=true",
        ],
    )?;
    let binding = admin.named("ClusterRoleBinding", "flotilla-agent-cluster-admin")?;
    assert_eq!(binding["roleRef"]["name"], "cluster-admin");
    assert_eq!(binding["subjects"][0]["name"], "flotilla-agent");
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);

    // Existing Secrets: referenced by name, none rendered.
    let existing = template(
        &bin,
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "hub.ca.existingSecret=group-ca",
            "--set",
            "hub.webhook.existingSecret=hooks",
            "--set",
            "agent.bootstrap.existingSecret=join",
        ],
    )?;
    assert!(!kinds(&existing).contains("Secret"));
    let hub_pod = &existing.only("StatefulSet")?["spec"]["template"]["spec"];
    let agent_pod = &existing.only("Deployment")?["spec"]["template"]["spec"];
    let secret_of = |pod: &Value, volume: &str| {
        items(&pod["volumes"])
            .find(|v| v["name"] == volume)
            .map(|v| v["secret"]["secretName"].clone())
    };
    assert_eq!(secret_of(hub_pod, "ca"), Some("group-ca".into()));
    assert_eq!(secret_of(agent_pod, "bootstrap"), Some("join".into()));
    let env_secret = |pod: &Value, name: &str| {
        items(&pod["containers"][0]["env"])
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["secretKeyRef"]["name"].clone())
    };
    assert_eq!(
        env_secret(hub_pod, "FLOTILLA_WEBHOOK_SECRET"),
        Some("hooks".into())
    );
    assert_eq!(
        env_secret(agent_pod, "FLOTILLA_BOOTSTRAP_TOKEN"),
        Some("join".into())
    );

    // Secrets from values: the names and keys the kustomize bases expect.
    let dir = tempfile::tempdir()?;
    let (cert, key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
    std::fs::write(&cert, "CERTIFICATE\n")?;
    std::fs::write(&key, "KEY\n")?;
    let cert_arg = format!("hub.ca.cert={}", cert.display());
    let key_arg = format!("hub.ca.key={}", key.display());
    let secrets = template(
        &bin,
        RELEASE,
        NAMESPACE,
        &[
            "--set-file",
            &cert_arg,
            "--set-file",
            &key_arg,
            "--set",
            "hub.webhook.secret=hooks",
            "--set",
            "agent.bootstrap.token=fltb_example",
        ],
    )?;
    let keys = |name: &str| -> Result<Vec<String>> {
        Ok(secrets.named("Secret", name)?["data"]
            .as_object()
            .map(|data| data.keys().cloned().collect())
            .unwrap_or_default())
    };
    assert_eq!(keys("flotilla-hub-ca")?, ["ca.crt", "ca.key"]);
    assert_eq!(keys("flotilla-hub-webhook")?, ["secret"]);
    assert_eq!(keys("flotilla-agent-bootstrap")?, ["ca.crt", "token"]);
    assert_eq!(
        secrets.named("Secret", "flotilla-agent-bootstrap")?["data"]["ca.crt"],
        secrets.named("Secret", "flotilla-hub-ca")?["data"]["ca.crt"],
        "the agent trusts the group's CA given once"
    );

    // The schema refuses a wrong type, and says where and what.
    let refused = template_refused(&bin, &["--set", "hub.replicas=three"])?;
    assert!(
        refused.contains("values don't meet the specifications of the schema")
            && refused.contains("/hub/replicas")
            && refused.contains("got string, want integer"),
        "unexpected refusal:\n{refused}"
    );
    let refused = template_refused(&bin, &["--set", "agent.hubs=hub:7071"])?;
    assert!(
        refused.contains("/agent/hubs") && refused.contains("got string, want array"),
        "unexpected refusal:\n{refused}"
    );
    let refused = template_refused(&bin, &["--set", "hub.replica=3"])?;
    assert!(
        refused.contains("additional properties 'replica' not allowed"),
        "a misspelt key is refused:\n{refused}"
    );
    let refused = template_refused(&bin, &["--set", "hub.config.peers=x"])?;
    assert!(
        refused.contains("hub.config.peers is set by the chart"),
        "unexpected refusal:\n{refused}"
    );
    Ok(())
}

/// Compares `chart` with `base` field by field: whatever `base` has, `chart` has with the same
/// value (arrays element by element, in order). Fields only `chart` has are collected in
/// `extra`, differences in `differ`.
fn compare(
    chart: &Value,
    base: &Value,
    path: &str,
    extra: &mut Vec<String>,
    differ: &mut Vec<String>,
) {
    match (chart, base) {
        (Value::Object(c), Value::Object(b)) => {
            for (key, b_value) in b {
                let at = format!("{path}.{key}");
                match c.get(key) {
                    Some(c_value) => compare(c_value, b_value, &at, extra, differ),
                    None => differ.push(format!("{at}: missing in the chart (bases: {b_value})")),
                }
            }
            for key in c.keys().filter(|k| !b.contains_key(*k)) {
                extra.push(format!("{path}.{key}"));
            }
        }
        (Value::Array(c), Value::Array(b)) if c.len() == b.len() => {
            for (i, (c_value, b_value)) in c.iter().zip(b).enumerate() {
                compare(c_value, b_value, &format!("{path}[{i}]"), extra, differ);
            }
        }
        _ if chart == base => {}
        _ => differ.push(format!("{path}: chart {chart}, bases {base}")),
    }
}

/// The fields the chart may add to the bases' objects (docs/deploy.md, "Helm chart"): Helm's
/// labels, the release in selectors, the config checksum, the pull policy, the Service type.
fn intended(kind: &str, path: &str) -> bool {
    path.starts_with(".metadata.labels.")
        || path == ".spec.template.metadata.annotations"
        || path.ends_with("matchLabels.app.kubernetes.io/instance")
        || path == ".spec.template.metadata.labels.app.kubernetes.io/instance"
        || (kind == "Service"
            && (path == ".spec.selector.app.kubernetes.io/instance" || path == ".spec.type"))
        || (path.starts_with(".spec.template.spec.containers[")
            && path.ends_with("].imagePullPolicy"))
}

/// `deploy/agent` with every kustomize component an overlay may list.
fn agent_with_components() -> Result<Rendered> {
    let overlay = tempfile::tempdir()?;
    // kustomize takes no absolute paths: climb from the overlay to `/`.
    let up = "../".repeat(overlay.path().components().count() - 1);
    let agent = deploy_dir("agent").canonicalize()?;
    let agent = format!("{up}{}", agent.to_string_lossy().trim_start_matches('/'));
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "resources: [{agent}]\ncomponents:\n  - {agent}/components/custom-resources\n  - \
             {agent}/components/rbac\n  - {agent}/components/cluster-admin\n"
        ),
    )?;
    let yaml = kubectl(&["kustomize", &overlay.path().to_string_lossy()], b"")?;
    Ok(Rendered {
        base: "agent",
        objects: serde_saphyr::from_multiple(&yaml)?,
        yaml,
    })
}

#[test]
fn the_chart_renders_what_the_kustomize_bases_do() -> Result<()> {
    let test = "the_chart_renders_what_the_kustomize_bases_do";
    if !kubectl_or_skip(test) {
        return Ok(());
    }
    let Some(bin) = helm_or_skip(test)? else {
        return Ok(());
    };
    // The bases' placeholder cluster name, so that their agent ConfigMaps compare too.
    let chart = template(
        &bin,
        RELEASE,
        NAMESPACE,
        &["--set", "agent.cluster=CHANGE-ME"],
    )?;
    let mut base_objects = Vec::new();
    for base in ["hub", "agent"] {
        base_objects.extend(Rendered::render(base)?.objects);
    }
    // kustomize names generated ConfigMaps NAME-HASH; the chart rolls pods with a checksum.
    let mut renamed = BTreeMap::new();
    for config_map in base_objects.iter().filter(|o| o["kind"] == "ConfigMap") {
        let hashed = text(&config_map["metadata"]["name"], "name")?;
        let (name, hash) = hashed
            .rsplit_once('-')
            .with_context(|| format!("{hashed} has no hash suffix"))?;
        ensure!(hash.len() == 10, "{hashed} has no kustomize hash suffix");
        renamed.insert(format!("\"{hashed}\""), format!("\"{name}\""));
    }
    let base_objects: Vec<Value> = base_objects
        .iter()
        .filter(|o| o["kind"] != "Namespace")
        .map(|o| -> Result<Value> {
            let mut json = serde_json::to_string(o)?;
            for (hashed, name) in &renamed {
                json = json.replace(hashed, name);
            }
            Ok(serde_json::from_str(&json)?)
        })
        .collect::<Result<_>>()?;
    assert_eq!(
        identities(&chart.objects),
        identities(&base_objects),
        "the same kinds, names and namespaces (the chart makes no Namespace)"
    );

    let mut problems = Vec::new();
    for base in &base_objects {
        let kind = text(&base["kind"], "kind")?;
        let chart_object = chart.named(kind, text(&base["metadata"]["name"], "name")?)?;
        let (mut chart_object, mut base) = (chart_object.clone(), base.clone());
        if kind == "ConfigMap" {
            // The config file is compared parsed: the chart's comments are its own.
            for object in [&mut chart_object, &mut base] {
                if let Some(file) = object["data"]["hub.yaml"].as_str() {
                    object["data"]["hub.yaml"] = serde_saphyr::from_str(file)?;
                }
            }
        }
        let (mut extra, mut differ) = (Vec::new(), Vec::new());
        compare(&chart_object, &base, "", &mut extra, &mut differ);
        let name = &base["metadata"]["name"];
        problems.extend(differ.into_iter().map(|d| format!("{kind} {name}{d}")));
        problems.extend(
            extra
                .into_iter()
                .filter(|path| !intended(kind, path))
                .map(|path| format!("{kind} {name}{path}: only in the chart")),
        );
    }
    ensure!(
        problems.is_empty(),
        "the chart differs from the bases:\n{}",
        problems.join("\n")
    );

    // What matters most, said once more explicitly: RBAC and the containers.
    let base = |kind: &str| {
        base_objects
            .iter()
            .find(|o| o["kind"] == kind)
            .with_context(|| format!("the bases render no {kind}"))
    };
    assert_eq!(
        chart.only("ClusterRole")?["rules"],
        base("ClusterRole")?["rules"]
    );
    for kind in ["StatefulSet", "Deployment"] {
        let chart_container = &chart.only(kind)?["spec"]["template"]["spec"]["containers"][0];
        let base_container = &base(kind)?["spec"]["template"]["spec"]["containers"][0];
        for field in [
            "command",
            "args",
            "env",
            "ports",
            "startupProbe",
            "readinessProbe",
            "livenessProbe",
            "resources",
            "securityContext",
            "volumeMounts",
        ] {
            assert_eq!(
                chart_container[field], base_container[field],
                "{kind}: {field}"
            );
        }
    }

    // The chart's switches are the bases' components.
    let components = agent_with_components()?;
    let switched = template(
        &bin,
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "hub.enabled=false",
            "--set",
            "agent.rbac.customResources.enabled=true",
            "--set",
            "agent.rbac.customResources.groups={example.com}",
            "--set",
            "agent.rbac.manageRbac=true",
            "--set",
            "agent.rbac.clusterAdmin=true",
        ],
    )?;
    assert_eq!(
        switched.only("ClusterRole")?["rules"],
        components.only("ClusterRole")?["rules"],
        "customResources and manageRbac add the rules of components/custom-resources and rbac"
    );
    let name = "flotilla-agent-cluster-admin";
    let (chart_binding, base_binding) = (
        switched.named("ClusterRoleBinding", name)?,
        components.named("ClusterRoleBinding", name)?,
    );
    assert_eq!(chart_binding["roleRef"], base_binding["roleRef"]);
    assert_eq!(chart_binding["subjects"], base_binding["subjects"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_applies_to_a_real_cluster() -> Result<()> {
    let test = "the_chart_applies_to_a_real_cluster";
    let Some(bin) = helm_or_skip(test)? else {
        return Ok(());
    };
    let name = test.to_owned();
    let Some(clusters) =
        tokio::task::spawn_blocking(move || RealClusters::shared(&name, 1)).await??
    else {
        return Ok(());
    };
    let context = clusters.contexts()[0].clone();
    let client = clusters.client(&context).await?;
    // The cluster is shared with this binary's other tests: a release (and so names and a
    // namespace) of its own, never the bases' fixed names.
    let release = format!("flotilla-chart-{}", std::process::id());
    let dir = tempfile::tempdir()?;
    let (cert, key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
    std::fs::write(&cert, "CERTIFICATE\n")?;
    std::fs::write(&key, "KEY\n")?;
    let (cert_arg, key_arg) = (
        format!("hub.ca.cert={}", cert.display()),
        format!("hub.ca.key={}", key.display()),
    );
    let chart = template(
        &bin,
        &release,
        &release,
        &[
            "--set",
            "agent.cluster=dev-1",
            "--set-file",
            &cert_arg,
            "--set-file",
            &key_arg,
            "--set",
            "agent.bootstrap.token=fltb_example",
            "--set",
            "hub.webhook.secret=hooks",
        ],
    )?;
    let kubeconfig = clusters.kubeconfig().to_string_lossy().into_owned();
    let cache = dir.path().join("cache").to_string_lossy().into_owned();
    let cluster_args = [
        "--kubeconfig",
        &kubeconfig,
        "--context",
        &context,
        "--cache-dir",
        &cache,
    ];
    let run = |args: &[&str], input: &[u8]| {
        let mut all = cluster_args.to_vec();
        all.extend(args);
        kubectl(&all, input)
    };
    // `helm install --create-namespace` makes the namespace; the chart holds none.
    run(&["create", "namespace", &release], b"")?;
    let result = apply_and_read_back(&run, &client, &chart, &release).await;
    let _ = run(&["delete", "namespace", &release, "--wait=false"], b"");
    let selector = format!("app.kubernetes.io/instance={release}");
    let _ = run(
        &["delete", "clusterrole,clusterrolebinding", "-l", &selector],
        b"",
    );
    result
}

/// kubectl against the real cluster: arguments and stdin, its stdout.
type Kubectl<'a> = &'a dyn Fn(&[&str], &[u8]) -> Result<String>;

/// Dry run, apply and read back the chart's objects, then the hub's pods as the StatefulSet
/// controller makes them.
async fn apply_and_read_back(
    run: Kubectl<'_>,
    client: &kube::Client,
    chart: &Rendered,
    release: &str,
) -> Result<()> {
    let out = run(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        chart.yaml.as_bytes(),
    )
    .context("server dry run of the chart")?;
    let dry = out
        .lines()
        .filter(|l| l.ends_with("(server dry run)"))
        .count();
    assert_eq!(dry, chart.objects.len(), "every object passes:\n{out}");
    for object in &chart.objects {
        assert!(
            read_back(client, object).await?.is_none(),
            "the dry run wrote {} {}",
            object["kind"],
            object["metadata"]["name"]
        );
    }

    run(
        &["apply", "--server-side", "-f", "-"],
        chart.yaml.as_bytes(),
    )
    .context("applying the chart")?;
    let mut problems = Vec::new();
    for object in &chart.objects {
        let kind = text(&object["kind"], "kind")?;
        let stored = read_back(client, object).await?.with_context(|| {
            format!(
                "{kind} {} was applied but is not stored",
                object["metadata"]["name"]
            )
        })?;
        let stored = serde_json::to_value(&stored)?;
        // The API server adds defaults and metadata; everything rendered is stored as is.
        let (mut extra, mut differ) = (Vec::new(), Vec::new());
        compare(&stored, object, "", &mut extra, &mut differ);
        let name = &object["metadata"]["name"];
        problems.extend(differ.into_iter().map(|d| format!("{kind} {name}{d}")));
    }
    ensure!(
        problems.is_empty(),
        "the API server stored other values than the chart rendered:\n{}",
        problems.join("\n")
    );

    // The StatefulSet controller numbers the hub's pods from 1 and labels each with its index,
    // which the hub's `--id=$(POD_INDEX)` reads (the pods are not run: no kubelet).
    let set = chart.only("StatefulSet")?;
    let set_name = text(&set["metadata"]["name"], "name")?;
    let replicas = set["spec"]["replicas"].as_u64().context("replicas")?;
    let expected: BTreeMap<String, String> = (1..=replicas)
        .map(|i| (format!("{set_name}-{i}"), i.to_string()))
        .collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), release);
    let selector =
        format!("app.kubernetes.io/instance={release},app.kubernetes.io/name=flotilla-hub");
    let deadline = tokio::time::Instant::now() + wait::PATIENCE;
    loop {
        let found: BTreeMap<String, String> = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .map(|pod| {
                let index = pod
                    .metadata
                    .labels
                    .unwrap_or_default()
                    .get("apps.kubernetes.io/pod-index")
                    .cloned()
                    .unwrap_or_default();
                (pod.metadata.name.unwrap_or_default(), index)
            })
            .collect();
        if found == expected {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the StatefulSet's pods are {found:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_s_hub_starts_a_node_that_answers_its_probes() -> Result<()> {
    let Some(bin) = helm_or_skip("the_chart_s_hub_starts_a_node_that_answers_its_probes")? else {
        return Ok(());
    };
    let chart = template(&bin, RELEASE, NAMESPACE, &["--set", "agent.enabled=false"])?;
    hub_statefulset_answers_its_probes(&chart).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_s_agent_registers_and_applies_its_cluster_s_bundle() -> Result<()> {
    let test = "the_chart_s_agent_registers_and_applies_its_cluster_s_bundle";
    if !kubectl_or_skip(test) {
        return Ok(());
    }
    let Some(bin) = helm_or_skip(test)? else {
        return Ok(());
    };
    // A real hub, and the values an operator gives the chart for it: the cluster's name, the
    // hub's address, the group's CA certificate and a bootstrap token.
    let root = tempfile::tempdir()?;
    let (repo, _) = small_fleet::repository()?;
    let clusters_file = root.path().join("clusters.yaml");
    std::fs::write(&clusters_file, small_fleet::INVENTORY)?;
    let hub = HubProcess::start(&HubOptions {
        repo_url: repo.url(),
        clusters_file,
        poll_interval: "1h".to_owned(),
        webhook_secret: None,
        insecure: false,
    })?;
    let credentials = hub.credentials().context("the hub runs with TLS")?;
    let cluster = "dev-1";
    let token = hub.bootstrap_token(cluster)?;
    let ca_arg = format!("agent.bootstrap.caCert={}", credentials.ca_file.display());
    let (cluster_arg, hubs_arg, token_arg) = (
        format!("agent.cluster={cluster}"),
        format!("agent.hubs={{{}}}", hub.api()),
        format!("agent.bootstrap.token={token}"),
    );
    let chart = template(
        &bin,
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "hub.enabled=false",
            "--set",
            &cluster_arg,
            "--set",
            &hubs_arg,
            "--set-file",
            &ca_arg,
            "--set",
            &token_arg,
        ],
    )?;
    let deployment = chart.only("Deployment")?;
    assert_eq!(deployment["spec"]["replicas"], 1, "one agent per cluster");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod_spec = &deployment["spec"]["template"]["spec"];
    let container = items(&pod_spec["containers"])
        .find(|c| c["name"] == "agent")
        .context("the Deployment has no container named agent")?;
    let state = items(&pod_spec["volumes"])
        .find(|v| v["name"] == "state")
        .context("no state volume")?;
    chart.named(
        "PersistentVolumeClaim",
        text(&state["persistentVolumeClaim"]["claimName"], "state claim")?,
    )?;

    // The cluster: the simulator. The chart is applied to it, and the ConfigMap and Secret the
    // pod would read are taken back from it, decoded as the kubelet decodes them.
    let sim = Sim::start(SimConfig::default()).await?;
    let kubeconfig = root.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let kubeconfig_arg = kubeconfig.to_string_lossy().into_owned();
    let cache = root.path().join("cache").to_string_lossy().into_owned();
    let base_args = [
        "--kubeconfig",
        kubeconfig_arg.as_str(),
        "--cache-dir",
        cache.as_str(),
    ];
    let mut create = base_args.to_vec();
    create.extend(["create", "namespace", NAMESPACE]);
    kubectl(&create, b"")?;
    let mut apply = base_args.to_vec();
    apply.extend(["apply", "--server-side", "-f", "-"]);
    kubectl(&apply, chart.yaml.as_bytes()).context("applying the chart to the simulator")?;
    let client = kube::Client::try_from(kube::Config::new(sim.cluster_url("sim-0").parse()?))?;
    let mut values = BTreeMap::new();
    let mut files = BTreeMap::new();
    for object in chart.objects.iter().filter(|o| o["kind"] == "ConfigMap") {
        let name = text(&object["metadata"]["name"], "name")?;
        let stored = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
            .get(name)
            .await?;
        for (key, value) in stored.data.unwrap_or_default() {
            values.insert((name.to_owned(), key), value);
        }
    }
    for object in chart.objects.iter().filter(|o| o["kind"] == "Secret") {
        let name = text(&object["metadata"]["name"], "name")?;
        let stored = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
            .get(name)
            .await?;
        for (key, value) in stored.data.unwrap_or_default() {
            files.insert((name.to_owned(), key.clone()), value.0.clone());
            values.insert((name.to_owned(), key), String::from_utf8(value.0)?);
        }
    }
    let namespace = text(&deployment["metadata"]["namespace"], "namespace")?;
    let pod = PodContainer::resolve(container, "flotilla-agent-0", namespace, 0, &values)?;
    assert_eq!(
        pod.env.get("FLOTILLA_CLUSTER").map(String::as_str),
        Some(cluster)
    );
    assert_eq!(pod.env.get("FLOTILLA_BOOTSTRAP_TOKEN"), Some(&token));

    // The bootstrap volume: the Secret's items, as the kubelet writes them.
    let bootstrap = items(&pod_spec["volumes"])
        .find(|v| v["name"] == "bootstrap")
        .context("no bootstrap volume")?;
    let secret_name = text(&bootstrap["secret"]["secretName"], "secretName")?;
    let secret_dir = root.path().join("bootstrap");
    std::fs::create_dir_all(&secret_dir)?;
    for item in items(&bootstrap["secret"]["items"]) {
        let key = text(&item["key"], "item key")?;
        let bytes = files
            .get(&(secret_name.to_owned(), key.to_owned()))
            .with_context(|| format!("the Secret {secret_name} has no {key}"))?;
        std::fs::write(secret_dir.join(text(&item["path"], "item path")?), bytes)?;
    }
    let state_dir = root.path().join("state");
    let mounts = Mounts(vec![
        (
            mount_path(container, "state")?.to_owned(),
            state_dir.clone(),
        ),
        (mount_path(container, "bootstrap")?.to_owned(), secret_dir),
    ]);
    let args: Vec<String> = pod
        .args
        .iter()
        .map(|arg| -> Result<String> {
            Ok(match arg.split_once('=') {
                Some((flag, path)) if path.starts_with('/') => {
                    format!("{flag}={}", mounts.local(path)?.display())
                }
                _ => arg.clone(),
            })
        })
        .collect::<Result<_>>()?;
    let command = pod
        .command
        .first()
        .context("the container sets no command")?;
    assert!(
        command.ends_with("/flotilla-agent"),
        "the container runs {command}"
    );
    assert_eq!(args.first().map(String::as_str), Some("run"));

    let mut run = Command::new(binaries::AGENT.path()?);
    run.args(&args)
        .env_clear()
        .envs(&pod.env)
        .env("KUBECONFIG", &kubeconfig)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    let mut process = Process::spawn("flotilla-agent", run)?;

    // Registered, streaming, and applying its cluster's bundle: the small fleet's ConfigMap
    // app/app, whose `cluster` is the cluster's name.
    let configs: Api<ConfigMap> = Api::namespaced(client, "app");
    let deadline = tokio::time::Instant::now() + wait::PATIENCE;
    let applied = loop {
        if let Some(config) = configs.get_opt("app").await? {
            break config;
        }
        if let Some(status) = process.try_exit()? {
            bail!(
                "flotilla-agent {args:?} stopped ({status}):\n{}",
                process.stderr_tail()
            );
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the agent applied nothing within {:?}:\n{}",
            wait::PATIENCE,
            process.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        applied
            .data
            .unwrap_or_default()
            .get("cluster")
            .map(String::as_str),
        Some(cluster)
    );
    assert!(
        state_dir.join("credentials.pem").is_file(),
        "the agent keeps its key and certificate in its state volume"
    );
    sim.shutdown().await;
    Ok(())
}
