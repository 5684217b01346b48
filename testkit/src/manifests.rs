//! The Kubernetes manifests of `deploy/` as tests read them: bases rendered with
//! `kubectl kustomize`, a pod template's container as a pod would run it (arguments with
//! `$(VAR)` resolved from downward-API fields and ConfigMap/Secret values), volume mount paths
//! mapped to local directories, and probes made as kubelet makes them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::Value;

use crate::binaries;
use crate::process::Process;

/// The bases, as folders of `deploy/`.
pub const BASES: [&str; 2] = ["hub", "agent"];

/// Whether kubectl can be run: under CI=true a missing kubectl fails the test; elsewhere the
/// test is skipped, loudly.
pub fn kubectl_or_skip(test: &str) -> bool {
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: kubectl is not on PATH, and CI=true requires it");
    }
    eprintln!("SKIPPED {test}: kubectl is not on PATH (install kubectl to run it)");
    false
}

/// The folder of a base.
pub fn deploy_dir(base: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join(base)
}

/// Runs kubectl with `args`, feeding `stdin`; its stdout, or an error with its stderr.
pub fn kubectl(args: &[&str], stdin: &[u8]) -> Result<String> {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting kubectl {}", args.join(" ")))?;
    child
        .stdin
        .take()
        .context("no stdin pipe")?
        .write_all(stdin)?;
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "kubectl {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A base rendered by `kubectl kustomize`: the YAML and its objects.
pub struct Rendered {
    /// The base's folder in `deploy/`.
    pub base: &'static str,
    /// The rendered YAML, as `kubectl apply -f -` takes it.
    pub yaml: String,
    /// Its objects, in order.
    pub objects: Vec<Value>,
}

impl Rendered {
    /// Renders `deploy/<base>`.
    pub fn render(base: &'static str) -> Result<Rendered> {
        let dir = deploy_dir(base);
        let yaml = kubectl(&["kustomize", &dir.to_string_lossy()], b"")?;
        let objects: Vec<Value> = serde_saphyr::from_multiple(&yaml)
            .with_context(|| format!("parsing the rendered deploy/{base}"))?;
        ensure!(!objects.is_empty(), "deploy/{base} renders no objects");
        Ok(Rendered {
            base,
            yaml,
            objects,
        })
    }

    /// The one object of `kind`.
    pub fn only(&self, kind: &str) -> Result<&Value> {
        let mut found = self.objects.iter().filter(|o| o["kind"] == kind);
        let object = found
            .next()
            .with_context(|| format!("deploy/{} renders no {kind}", self.base))?;
        ensure!(
            found.next().is_none(),
            "deploy/{} renders several {kind}s",
            self.base
        );
        Ok(object)
    }

    /// The object of `kind` named `name`.
    pub fn named(&self, kind: &str, name: &str) -> Result<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .with_context(|| format!("deploy/{} renders no {kind} {name}", self.base))
    }
}

/// A JSON string, or an error naming `what`.
pub fn text<'a>(value: &'a Value, what: &str) -> Result<&'a str> {
    value
        .as_str()
        .with_context(|| format!("{what} is not a string: {value}"))
}

/// The elements of a JSON array; none for anything else.
pub fn items(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// Reads `object` back from the cluster with kube-rs; `None` when it does not exist.
pub async fn read_back(client: &kube::Client, object: &Value) -> Result<Option<DynamicObject>> {
    let api_version = text(&object["apiVersion"], "apiVersion")?;
    let kind = text(&object["kind"], "kind")?;
    let name = text(&object["metadata"]["name"], "metadata.name")?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {api_version} {kind}"))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            let namespace = text(&object["metadata"]["namespace"], "metadata.namespace")?;
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    Ok(api.get_opt(name).await?)
}

/// A container of a pod template as the pod `pod_name` (number `ordinal` of its workload) in
/// `namespace` would run it: `$(VAR)` references in its arguments resolved from its environment
/// (downward API fields, literal values, and `values` for keys of ConfigMaps and Secrets).
pub struct PodContainer {
    /// `command`, resolved.
    pub command: Vec<String>,
    /// `args`, resolved.
    pub args: Vec<String>,
    /// The environment variables that have a value.
    pub env: BTreeMap<String, String>,
}

impl PodContainer {
    /// Resolves `container` for the pod; `values` holds (object name, key) → value for the
    /// ConfigMap and Secret keys the environment refers to.
    pub fn resolve(
        container: &Value,
        pod_name: &str,
        namespace: &str,
        ordinal: u64,
        values: &BTreeMap<(String, String), String>,
    ) -> Result<PodContainer> {
        let mut env = BTreeMap::new();
        for variable in items(&container["env"]) {
            let name = text(&variable["name"], "env name")?.to_owned();
            let source = &variable["valueFrom"];
            let value = if let Some(value) = variable["value"].as_str() {
                Some(value.to_owned())
            } else if let Some(path) = source["fieldRef"]["fieldPath"].as_str() {
                Some(match path {
                    "metadata.name" => pod_name.to_owned(),
                    "metadata.namespace" => namespace.to_owned(),
                    "metadata.labels['apps.kubernetes.io/pod-index']" => ordinal.to_string(),
                    other => bail!("env {name}: the test does not know the field {other}"),
                })
            } else {
                let reference = [&source["configMapKeyRef"], &source["secretKeyRef"]]
                    .into_iter()
                    .find(|r| r.is_object())
                    .with_context(|| format!("env {name}: no value and no known source"))?;
                let key = (
                    text(&reference["name"], "key reference name")?.to_owned(),
                    text(&reference["key"], "key reference key")?.to_owned(),
                );
                match values.get(&key) {
                    Some(value) => Some(value.clone()),
                    None if reference["optional"] == true => None,
                    None => bail!("env {name}: {key:?} is required and the test has no value"),
                }
            };
            if let Some(value) = value {
                env.insert(name, value);
            }
        }
        let expand = |arg: &Value| -> Result<String> {
            let mut arg = text(arg, "argument")?.to_owned();
            for (name, value) in &env {
                arg = arg.replace(&format!("$({name})"), value);
            }
            ensure!(
                !arg.contains("$("),
                "argument {arg} refers to an unset variable"
            );
            Ok(arg)
        };
        Ok(PodContainer {
            command: items(&container["command"])
                .map(expand)
                .collect::<Result<_>>()?,
            args: items(&container["args"])
                .map(expand)
                .collect::<Result<_>>()?,
            env,
        })
    }

    /// The value of `--flag=VALUE` in the arguments.
    pub fn flag(&self, flag: &str) -> Result<&str> {
        let prefix = format!("{flag}=");
        self.args
            .iter()
            .find_map(|a| a.strip_prefix(&prefix))
            .with_context(|| format!("no {flag}=VALUE in {:?}", self.args))
    }
}

/// The container port named `name`.
pub fn container_port(container: &Value, name: &str) -> Result<u64> {
    items(&container["ports"])
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .with_context(|| format!("no container port named {name}"))
}

/// The port of a `HOST:PORT` address.
pub fn port_of(address: &str) -> Result<u64> {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .with_context(|| format!("{address} is not HOST:PORT"))
}

/// The mount path of the volume named `volume` in `container`.
pub fn mount_path<'a>(container: &'a Value, volume: &str) -> Result<&'a str> {
    items(&container["volumeMounts"])
        .find(|m| m["name"] == volume)
        .and_then(|m| m["mountPath"].as_str())
        .with_context(|| format!("volume {volume} is not mounted"))
}

/// `text` with the value of each top-level `key:` line replaced, every key present once.
pub fn with_values(text: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut seen = vec![0; values.len()];
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            for (i, (key, value)) in values.iter().enumerate() {
                if line.starts_with(&format!("{key}:")) {
                    seen[i] += 1;
                    return format!("{key}: {value}");
                }
            }
            line.to_owned()
        })
        .collect();
    for ((key, _), count) in values.iter().zip(seen) {
        ensure!(count == 1, "the config sets {key} {count} times, not once");
    }
    Ok(lines.join("\n") + "\n")
}

/// Maps paths inside a container (volume mount paths) to local directories.
pub struct Mounts(pub Vec<(String, PathBuf)>);

impl Mounts {
    /// `path` with its longest mounted prefix replaced by the local directory.
    pub fn local(&self, path: &str) -> Result<PathBuf> {
        self.0
            .iter()
            .filter_map(|(mount, local)| {
                let rest = path.strip_prefix(mount.as_str())?;
                let rest = rest.strip_prefix('/').unwrap_or(rest);
                let local = match rest {
                    "" => local.clone(),
                    rest => local.join(rest),
                };
                (rest.len() < path.len()).then_some((mount.len(), local))
            })
            .max_by_key(|(length, _)| *length)
            .map(|(_, local)| local)
            .with_context(|| format!("{path} is on no volume the test provides"))
    }
}

/// GET `path` from `address` as a kubelet probe does (`scheme` HTTP or HTTPS); HTTPS is
/// verified against `ca` (kubelet does not verify, so this checks more than it needs).
pub async fn probe(scheme: &str, address: &str, path: &str, ca: &Path) -> Result<u16> {
    use http_body_util::Empty;
    use hyper_util::rt::TokioIo;
    use tokio_rustls::rustls::pki_types::ServerName;

    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    let request = http::Request::get(path)
        .header("host", address)
        .body(Empty::<bytes::Bytes>::new())?;
    let status = match scheme {
        "HTTP" => {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(connection);
            sender.send_request(request).await?.status()
        }
        "HTTPS" => {
            let roots = flotilla_pki::TrustRoot::from_pem(&std::fs::read_to_string(ca)?)?;
            let config = flotilla_pki::client_config(&roots, None)?;
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            let name = ServerName::try_from(host.to_owned())?;
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {address}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(connection);
            sender.send_request(request).await?.status()
        }
        other => bail!("probe scheme {other} is neither HTTP nor HTTPS"),
    };
    Ok(status.as_u16())
}

/// Starts the real `flotilla-hub` as the first pod of `hub`'s StatefulSet would (its command,
/// arguments, environment and config file, with only places on disk and ports made local) and
/// checks what the manifests must agree on (ports, founders, the advertised stable name) and
/// that the node answers its three probes. The kustomize base and the chart both run it.
pub async fn hub_statefulset_answers_its_probes(hub: &Rendered) -> Result<()> {
    let set = hub.only("StatefulSet")?;
    let spec = &set["spec"];
    let pod_spec = &spec["template"]["spec"];
    let container = items(&pod_spec["containers"])
        .find(|c| c["name"] == "hub")
        .context("the StatefulSet has no container named hub")?;
    let namespace = text(&set["metadata"]["namespace"], "namespace")?;
    let ordinal = spec["ordinals"]["start"].as_u64().unwrap_or(0);
    let replicas = spec["replicas"].as_u64().context("no replicas")?;
    let pod_name = format!("{}-{ordinal}", text(&set["metadata"]["name"], "name")?);
    let pod = PodContainer::resolve(container, &pod_name, namespace, ordinal, &BTreeMap::new())?;

    // The config file, from the ConfigMap the `config` volume mounts.
    let config_map_name = items(&pod_spec["volumes"])
        .find(|v| v["name"] == "config")
        .map(|v| &v["configMap"]["name"])
        .context("no config volume")?;
    let config_map = hub.named("ConfigMap", text(config_map_name, "configMap name")?)?;
    let config_dir = mount_path(container, "config")?;
    let config_path = pod.flag("--config")?;
    let file_name = config_path
        .strip_prefix(config_dir)
        .map(|rest| rest.trim_start_matches('/'))
        .with_context(|| format!("--config={config_path} is not in {config_dir}"))?;
    let config_text = text(&config_map["data"][file_name], "the config file")?;
    let config: Value = serde_saphyr::from_str(config_text)?;

    // What the manifests must agree on.
    for (key, port) in [
        ("listen", "peer"),
        ("apiListen", "api"),
        ("httpListen", "http"),
    ] {
        assert_eq!(
            port_of(text(&config[key], key)?)?,
            container_port(container, port)?,
            "{key} listens on the container port named {port}"
        );
    }
    assert_eq!(config["dataDir"], mount_path(container, "data")?);
    let peers = config["peers"]
        .as_object()
        .context("the config founds no group (no peers)")?;
    let ids: Vec<String> = (ordinal..ordinal + replicas)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(
        peers.keys().cloned().collect::<Vec<_>>(),
        ids,
        "the founders are the pods"
    );
    assert_eq!(pod.flag("--id")?, ordinal.to_string());
    let service = text(&spec["serviceName"], "serviceName")?;
    assert_eq!(
        peers[&ordinal.to_string()],
        format!(
            "{pod_name}.{service}.{namespace}.svc:{}",
            container_port(container, "peer")?
        ),
        "a founder's address in the config is its pod's stable name, which it advertises"
    );
    assert_eq!(peers[&ordinal.to_string()], pod.flag("--advertise")?);
    assert_eq!(hub.named("Service", service)?["spec"]["clusterIP"], "None");
    for object in hub.objects.iter().filter(|o| o["kind"] == "Service") {
        for port in items(&object["spec"]["ports"]) {
            container_port(container, text(&port["targetPort"], "targetPort")?)?;
        }
    }

    // The CA as an operator makes it (`flotilla-hub ca create`) and the Secret mounts it.
    let root = tempfile::tempdir()?;
    let hub_binary = binaries::HUB.path()?;
    let ca_dir = root.path().join("ca");
    let created = Command::new(&hub_binary)
        .args(["ca", "create", "--out"])
        .arg(&ca_dir)
        .output()?;
    ensure!(
        created.status.success(),
        "flotilla-hub ca create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mounts = Mounts(vec![
        (config_dir.to_owned(), root.path().join("config")),
        (mount_path(container, "ca")?.to_owned(), ca_dir.clone()),
        (
            mount_path(container, "data")?.to_owned(),
            root.path().join("data"),
        ),
    ]);
    let local = |key: &str| -> Result<String> {
        Ok(mounts
            .local(text(&config[key], key)?)?
            .to_string_lossy()
            .into_owned())
    };
    let ca_cert = local("caCert")?;
    ensure!(
        Path::new(&ca_cert).is_file() && Path::new(&local("caKey")?).is_file(),
        "the config's caCert and caKey are the files `flotilla-hub ca create` writes"
    );
    // Only what cannot be the same outside a pod changes: places on disk and free ports.
    let local_config = with_values(
        config_text,
        &[
            ("dataDir", &local("dataDir")?),
            ("caCert", &ca_cert),
            ("caKey", &local("caKey")?),
            ("listen", "127.0.0.1:0"),
            ("apiListen", "127.0.0.1:0"),
            ("httpListen", "127.0.0.1:0"),
        ],
    )?;
    let config_file = mounts.local(config_path)?;
    std::fs::create_dir_all(root.path().join("config"))?;
    std::fs::write(&config_file, local_config)?;

    let command = pod
        .command
        .first()
        .context("the container sets no command")?;
    assert!(
        command.ends_with("/flotilla-hub"),
        "the container runs flotilla-hub, not {command}"
    );
    let args: Vec<String> = pod
        .args
        .iter()
        .map(|a| match a.strip_prefix("--config=") {
            Some(_) => format!("--config={}", config_file.display()),
            None => a.clone(),
        })
        .collect();
    let mut node = Command::new(&hub_binary);
    node.args(&args)
        .envs(&pod.env)
        .env_remove("FLOTILLA_HUB_CONFIG")
        .env_remove("FLOTILLA_WEBHOOK_SECRET");
    let node = Process::spawn("flotilla-hub", node)?;
    let line = node.wait_for_stdout("its HTTP address", Duration::from_secs(60), |l| {
        l.starts_with("http listening on ")
    })?;
    let http = line
        .trim_start_matches("http listening on ")
        .split_whitespace()
        .next()
        .context("no address on the http line")?;

    for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &container[kind]["httpGet"];
        ensure!(get.is_object(), "the hub has no {kind} with httpGet");
        assert_eq!(get["port"], "http", "{kind} probes the HTTP listener");
        let scheme = get["scheme"].as_str().unwrap_or("HTTP");
        let path = text(&get["path"], "probe path")?;
        let status = probe(scheme, http, path, Path::new(&ca_cert))
            .await
            .with_context(|| {
                format!("{kind}: {scheme} {path}; hub log:\n{}", node.stderr_tail())
            })?;
        assert_eq!(status, 200, "{kind} {scheme} {path} answers 200");
    }
    Ok(())
}
