//! The differential corpus: request scenarios (`tests/differential/*.yaml`) sent to the
//! simulator and to a real API server, each answer normalised (uids, timestamps,
//! resourceVersions, generated names, the scenario's own namespace) into a [`Transcript`], and
//! the two transcripts compared ([`compare`]). A difference either is listed in
//! `tests/differential/accepted.yaml`, with why, or fails the test; the simulator fixes the
//! corpus found are listed in `tests/differential/fixed.yaml` and shown in the report.
//!
//! A scenario runs in a namespace of its own (`{ns}` in its paths and bodies; `{group}` is an
//! API group of its own for CRDs), created before its first step and deleted after its last,
//! so the corpus shares a real cluster with other tests.

mod compare;
mod normalise;
mod report;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

pub use compare::{Accepted, Difference, Outcome, compare};
pub use report::{Fix, Report};

/// Longest a step may wait for its answer (a watch's `timeoutSeconds` comes on top).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a step with `until_status` retries.
const UNTIL_PATIENCE: Duration = Duration::from_secs(30);

/// One named sequence of requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Unique across the corpus; names the scenario in differences and the report.
    pub name: String,
    /// The corpus file it comes from (its stem), set when loading.
    #[serde(skip)]
    pub area: String,
    /// The requests, in order.
    pub steps: Vec<Step>,
    /// Requests sent after the last step whatever happened, never compared (CRDs, cluster
    /// scoped objects); the namespace is deleted without being listed here.
    #[serde(default)]
    pub cleanup: Vec<Step>,
}

/// One request of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// HTTP method, GET when absent.
    #[serde(default = "get")]
    pub method: String,
    /// Path with query, below the cluster's URL; placeholders allowed.
    pub path: String,
    /// JSON body (written as YAML); placeholders allowed in its strings.
    #[serde(default)]
    pub body: Option<Value>,
    /// A body sent as it is (malformed input); placeholders allowed.
    #[serde(default)]
    pub raw_body: Option<String>,
    /// Content type, or one of `merge`, `json-patch`, `strategic`, `apply`; JSON by default
    /// (merge patch for PATCH).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Accept header; `application/json` by default.
    #[serde(default)]
    pub accept: Option<String>,
    /// Only the status code is compared (preparation whose answer is not the point).
    #[serde(default)]
    pub setup: bool,
    /// Compare only these JSON pointers of the body; a segment `[key=value]` picks the array
    /// item whose `key` is `value`.
    #[serde(default)]
    pub only: Vec<String>,
    /// Leave these JSON pointers of the body out of the comparison (what controllers race to
    /// write, for instance).
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Repeat the request until it is answered with this status (for what a real server does
    /// asynchronously: a namespace's removal, a new CRD's discovery).
    #[serde(default)]
    pub until_status: Option<u16>,
    /// Repeat the request until these pointers of the answer hold these values (`[key=value]`
    /// segments allowed, as in `only`).
    #[serde(default)]
    pub until: BTreeMap<String, Value>,
    /// Placeholders set from this answer's body: name → JSON pointer.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
}

fn get() -> String {
    "GET".into()
}

/// The normalised answers of one scenario on one server.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// The scenario's name.
    pub scenario: String,
    /// One record per step: `{"request", "status", "body", "warnings"}`.
    pub steps: Vec<Value>,
    /// Why the scenario could not run to its end (no answer, a timeout), if it could not.
    pub broken: Option<String>,
}

/// Reads every `*.yaml` corpus file of `dir` but `accepted.yaml` and `fixed.yaml`, in name
/// order; scenario names must be unique.
pub fn load_corpus(dir: &Path) -> anyhow::Result<Vec<Scenario>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .filter(|path| {
            !matches!(
                path.file_stem().and_then(|s| s.to_str()),
                Some("accepted" | "fixed")
            )
        })
        .collect();
    files.sort();
    let mut corpus: Vec<Scenario> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let scenarios: Vec<Scenario> =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let area = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        for mut scenario in scenarios {
            if corpus.iter().any(|s| s.name == scenario.name) {
                bail!("scenario {} is named twice", scenario.name);
            }
            scenario.area = area.clone();
            corpus.push(scenario);
        }
    }
    Ok(corpus)
}

/// Runs every scenario on `client`, `parallel` at a time; `namespace` names scenario `i`'s
/// namespace. Transcripts come back in corpus order.
pub async fn run_corpus(
    client: &kube::Client,
    corpus: &[Scenario],
    parallel: usize,
    namespace: impl Fn(usize) -> String,
) -> Vec<Transcript> {
    let runs = corpus
        .iter()
        .enumerate()
        .map(|(i, scenario)| run_scenario(client, scenario, namespace(i)));
    futures::stream::iter(runs)
        .buffered(parallel)
        .collect()
        .await
}

/// Runs one scenario in namespace `ns` (created first, deleted last) and normalises its
/// answers.
pub async fn run_scenario(client: &kube::Client, scenario: &Scenario, ns: String) -> Transcript {
    let mut transcript = Transcript {
        scenario: scenario.name.clone(),
        ..Transcript::default()
    };
    let mut values = BTreeMap::from([
        ("ns".to_owned(), ns.clone()),
        ("group".to_owned(), format!("{ns}.example.com")),
    ]);
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    let created = send_json(client, "POST", "/api/v1/namespaces", &namespace).await;
    match created {
        Ok(201) => {}
        other => {
            transcript.broken = Some(format!("creating namespace {ns}: {other:?}"));
            return transcript;
        }
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        match run_step(client, step, &values).await {
            Ok(answer) => {
                for (name, pointer) in &step.capture {
                    let captured = answer.body.pointer(pointer).map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    values.insert(name.clone(), captured.unwrap_or_default());
                }
                transcript
                    .steps
                    .push(normalise::record(step, &values, answer));
            }
            Err(e) => {
                transcript.broken =
                    Some(format!("step {i} ({} {}): {e:#}", step.method, step.path));
                break;
            }
        }
    }
    for step in &scenario.cleanup {
        let _ = run_step(client, step, &values).await;
    }
    let _ = send_json(
        client,
        "DELETE",
        &format!("/api/v1/namespaces/{ns}"),
        &json!({}),
    )
    .await;
    transcript
}

/// A server's answer to one step, its body parsed: JSON, a watch's events as an array, or a
/// string when it is neither.
#[derive(Debug)]
struct Answer {
    request: String,
    status: u16,
    content_type: String,
    warnings: Vec<String>,
    body: Value,
}

async fn run_step(
    client: &kube::Client,
    step: &Step,
    values: &BTreeMap<String, String>,
) -> anyhow::Result<Answer> {
    let started = Instant::now();
    loop {
        let answer = send_step(client, step, values).await?;
        let status = step.until_status.is_none_or(|s| s == answer.status);
        let body = step
            .until
            .iter()
            .all(|(pointer, value)| normalise::select(&answer.body, pointer) == Some(value));
        if status && body {
            return Ok(answer);
        }
        if started.elapsed() > UNTIL_PATIENCE {
            bail!(
                "after {UNTIL_PATIENCE:?} still {}: {}",
                answer.status,
                answer.body
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn send_step(
    client: &kube::Client,
    step: &Step,
    values: &BTreeMap<String, String>,
) -> anyhow::Result<Answer> {
    let path = substitute(&step.path, values);
    let body = match (&step.body, &step.raw_body) {
        (Some(body), _) => substitute(&serde_json::to_string(body)?, values).into_bytes(),
        (None, Some(raw)) => substitute(raw, values).into_bytes(),
        (None, None) => Vec::new(),
    };
    let content_type = match step.content_type.as_deref() {
        Some("merge") => "application/merge-patch+json",
        Some("json-patch") => "application/json-patch+json",
        Some("strategic") => "application/strategic-merge-patch+json",
        Some("apply") => "application/apply-patch+yaml",
        Some(other) => other,
        None if step.method == "PATCH" => "application/merge-patch+json",
        None => "application/json",
    };
    let mut request = http::Request::builder()
        .method(step.method.as_str())
        .uri(&path)
        .header(
            http::header::ACCEPT,
            step.accept.as_deref().unwrap_or("application/json"),
        );
    if !body.is_empty() {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    let watch = path.contains("watch=true") || path.contains("watch=1");
    let timeout = STEP_TIMEOUT
        + if watch {
            watch_seconds(&path)?
        } else {
            Duration::ZERO
        };
    let exchange = async {
        let response = client.send(request.body(body.into())?).await?;
        let status = response.status().as_u16();
        let header = |name: http::header::HeaderName| {
            response
                .headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        let content_type = header(http::header::CONTENT_TYPE).join(", ");
        let warnings = header(http::header::WARNING);
        let bytes = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, content_type, warnings, bytes))
    };
    let (status, content_type, warnings, bytes) =
        tokio::time::timeout(timeout, exchange)
            .await
            .with_context(|| format!("no answer within {timeout:?}"))??;
    let text = String::from_utf8_lossy(&bytes);
    let body = if watch && status == 200 {
        Value::Array(
            text.lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| serde_json::from_str(line).unwrap_or_else(|_| json!(line)))
                .collect(),
        )
    } else if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.trim().to_owned()))
    };
    Ok(Answer {
        request: format!("{} {}", step.method, step.path),
        status,
        content_type,
        warnings,
        body,
    })
}

/// A watch must end by itself: its `timeoutSeconds`, which the step's deadline then allows for.
fn watch_seconds(path: &str) -> anyhow::Result<Duration> {
    let seconds = path
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("timeoutSeconds="))
        .with_context(|| format!("a watch step needs timeoutSeconds: {path}"))?;
    Ok(Duration::from_secs(seconds.parse()?))
}

fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    values.iter().fold(text.to_owned(), |text, (name, value)| {
        text.replace(&format!("{{{name}}}"), value)
    })
}

async fn send_json(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<u16> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body)?.into())?;
    let response = client.send(request).await?;
    Ok(response.status().as_u16())
}
