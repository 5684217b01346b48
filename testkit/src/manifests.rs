//! The Kubernetes manifests of `deploy/` as tests read them: bases rendered with
//! `kubectl kustomize`, a pod template's container as a pod would run it (arguments with
//! `$(VAR)` resolved from downward-API fields and ConfigMap/Secret values), volume mount paths
//! mapped to local directories, and probes made as kubelet makes them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::Value;

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
