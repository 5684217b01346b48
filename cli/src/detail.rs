//! `flotilla cluster get NAME` and `flotilla bundle get NAME [--stage S] [--problems]`: one
//! cluster with every object of its bundles, or one bundle across the fleet, each object with
//! its own sync state, health and message — what the dashboard's cluster page and bundle view
//! show. JSON and YAML are the hub's answer as its HTTP API gives it.

use clap::{Args, Subcommand};
use flotilla_proto::v1::{AdminBundleDetailRequest, AdminClusterDetailRequest};
use serde_json::Value;

use crate::hub::HubArgs;
use crate::output::{OutputFormat, Table, emit, or_dash, print_structured, short};

/// Arguments of `flotilla bundle`.
#[derive(Debug, Args)]
pub(crate) struct BundleArgs {
    #[command(subcommand)]
    action: BundleAction,
}

#[derive(Debug, Subcommand)]
enum BundleAction {
    /// Show a bundle on every cluster holding it, each object with its state: clusters that
    /// need attention first.
    Get {
        /// The bundle's name in flotilla.yaml.
        name: String,
        /// Only clusters of this stage.
        #[arg(long)]
        stage: Option<String>,
        /// Only clusters where it is not Synced and Healthy.
        #[arg(long)]
        problems: bool,
        /// At most this many clusters (0: the hub's default, 100; at most 1000).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[arg(skip = crate::global::hub())]
        hub: HubArgs,
        #[arg(skip = crate::global::output())]
        output: OutputFormat,
    },
}

/// Runs `flotilla bundle …`.
pub(crate) async fn run_bundle(args: &BundleArgs) -> anyhow::Result<()> {
    let BundleAction::Get {
        name,
        stage,
        problems,
        limit,
        hub,
        output,
    } = &args.action;
    let mut admin = hub.connect().await?;
    let reply = admin
        .bundle_detail(AdminBundleDetailRequest {
            name: name.clone(),
            stage: stage.clone().unwrap_or_default(),
            problems: *problems,
            limit: *limit,
        })
        .await
        .map_err(|s| hub.call_error(&format!("reading bundle `{name}`"), s))?
        .into_inner();
    let mut detail: Value = serde_json::from_str(&reply.json)?;
    if *output != OutputFormat::Table {
        times_as_text(&mut detail);
        return print_structured(&detail, *output);
    }
    let clusters = detail["clusters"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "BUNDLE   {name}: {} clusters{}\n\n",
        detail["matched"],
        if clusters.len() < detail["matched"].as_u64().unwrap_or(0) as usize {
            format!(" ({} shown; --limit shows more)", clusters.len())
        } else {
            String::new()
        }
    );
    let mut table = Table::new(&[
        "CLUSTER",
        "STAGE",
        "SYNC",
        "HEALTH",
        "APPLIED",
        "OBJECT",
        "OBJECT SYNC",
        "OBJECT HEALTH",
        "MESSAGE",
    ]);
    for cluster in &clusters {
        let head = vec![
            text(&cluster["cluster"]),
            or_dash(&text(&cluster["stage"])),
            text(&cluster["syncState"]),
            text(&cluster["health"]),
            or_dash(short(&text(&cluster["appliedRevision"]))),
        ];
        let objects = cluster["objects"].as_array().cloned().unwrap_or_default();
        if objects.is_empty() {
            table.row(head.clone());
        }
        for (i, object) in objects.iter().enumerate() {
            let mut row = if i == 0 {
                head.clone()
            } else {
                vec![String::new(); 5]
            };
            row.extend(object_cells(object));
            table.row(row);
        }
    }
    out.push_str(&table.render());
    emit(&out)
}

/// Shows one cluster in detail.
pub(crate) async fn cluster_get(
    name: &str,
    hub: &HubArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let mut admin = hub.connect().await?;
    let reply = admin
        .cluster_detail(AdminClusterDetailRequest {
            name: name.to_owned(),
        })
        .await
        .map_err(|s| hub.call_error(&format!("reading cluster `{name}`"), s))?
        .into_inner();
    let mut detail: Value = serde_json::from_str(&reply.json)?;
    if output != OutputFormat::Table {
        times_as_text(&mut detail);
        return print_structured(&detail, output);
    }
    let labels: Vec<String> = detail["labels"]
        .as_object()
        .map(|l| l.iter().map(|(k, v)| format!("{k}={}", text(v))).collect())
        .unwrap_or_default();
    let api = match detail["apiReachable"].as_bool() {
        Some(true) => "reachable".to_owned(),
        Some(false) => format!("UNREACHABLE: {}", text(&detail["apiError"])),
        None => "unknown".to_owned(),
    };
    let mut out = format!(
        "CLUSTER  {name}\nSTAGE    {}\nLABELS   {}\nAGENT    {}{}\nAPI      {api}{}\nREVISION {}\n\n",
        or_dash(&text(&detail["stage"])),
        or_dash(&labels.join(",")),
        if detail["online"].as_bool() == Some(true) {
            "online"
        } else {
            "OFFLINE"
        },
        match text(&detail["agentVersion"]) {
            v if v.is_empty() => String::new(),
            v => format!(" (version {v})"),
        },
        match text(&detail["kubeVersion"]) {
            v if v.is_empty() => String::new(),
            v => format!(" (Kubernetes {v})"),
        },
        or_dash(short(&text(&detail["assignedRevision"]))),
    );
    let mut bundles = Table::new(&["BUNDLE", "SYNC", "HEALTH", "DESIRED", "APPLIED", "MESSAGE"]);
    for bundle in detail["bundles"].as_array().into_iter().flatten() {
        bundles.row(vec![
            text(&bundle["name"]),
            text(&bundle["syncState"]),
            text(&bundle["health"]),
            or_dash(short(&text(&bundle["desiredRevision"]))),
            or_dash(short(&text(&bundle["appliedRevision"]))),
            or_dash(&text(&bundle["message"])),
        ]);
    }
    out.push_str(&bundles.render());
    let mut objects = Table::new(&["BUNDLE", "OBJECT", "SYNC", "HEALTH", "MESSAGE"]);
    for object in detail["objects"].as_array().into_iter().flatten() {
        let mut row = vec![text(&object["bundle"])];
        row.extend(object_cells(object));
        objects.row(row);
    }
    out.push('\n');
    out.push_str(&objects.render());
    emit(&out)
}

/// The hub's times (milliseconds, as its HTTP API gives them) as the CLI prints every time:
/// RFC 3339 in UTC. A time is a number under a key ending in `At`, `Seen` or `Since`.
fn times_as_text(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let time = key.ends_with("At") || key.ends_with("Seen") || key.ends_with("Since");
                match value.as_i64() {
                    Some(ms) if time => {
                        *value = crate::time::rfc3339(ms).map_or(Value::Null, Value::String);
                    }
                    _ => times_as_text(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(times_as_text),
        _ => {}
    }
}

fn object_cells(object: &Value) -> Vec<String> {
    vec![
        text(&object["object"]),
        text(&object["syncState"]),
        text(&object["health"]),
        or_dash(&text(&object["message"])),
    ]
}

/// A JSON string's text; other values as JSON; null as nothing.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
