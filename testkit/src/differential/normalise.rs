//! What two servers may not agree on by design, replaced by markers: uids, resourceVersions,
//! timestamps, continue tokens, cluster IPs, generated name suffixes, and the scenario's own
//! names (every server runs it in a namespace named differently). What is left must match.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Answer, Step};

/// Fields holding a time: every one set by the server when it happened.
const TIMES: &[&str] = &[
    "creationTimestamp",
    "deletionTimestamp",
    "time",
    "lastTransitionTime",
    "lastUpdateTime",
    "lastProbeTime",
    "lastHeartbeatTime",
    "startTime",
    "completionTime",
    "eventTime",
    "firstTimestamp",
    "lastTimestamp",
];

/// The step's record: request, status, content type (without parameters), warnings and the
/// normalised body, narrowed to `only` and without `ignore` unless the answer is an error.
pub(super) fn record(step: &Step, values: &BTreeMap<String, String>, answer: Answer) -> Value {
    let mut body = answer.body;
    normalise(&mut body, values);
    // An error answer is compared whole: `only` and `ignore` narrow successful answers.
    let failed = answer.status >= 400;
    if step.setup {
        body = Value::Null;
    } else if !step.only.is_empty() && !failed {
        let mut kept = Map::new();
        for pointer in &step.only {
            kept.insert(
                pointer.clone(),
                select(&body, pointer).cloned().unwrap_or(Value::Null),
            );
        }
        body = Value::Object(kept);
    }
    for pointer in step.ignore.iter().filter(|_| !failed) {
        remove(&mut body, pointer);
    }
    let media_type = answer
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut warnings: Vec<Value> = answer
        .warnings
        .iter()
        .map(|w| json!(unname(w, values)))
        .collect();
    warnings.sort_by_key(|w| w.to_string());
    json!({
        "request": answer.request,
        "status": answer.status,
        "contentType": if step.setup { Value::Null } else { json!(media_type) },
        "warnings": warnings,
        "body": body,
    })
}

/// Replaces in place what differs between servers by design.
pub(super) fn normalise(value: &mut Value, values: &BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            normalise_generated_name(map);
            map.remove("selfLink");
            // Entries are ordered by their times, which two servers never share.
            if let Some(Value::Array(entries)) = map.get_mut("managedFields") {
                entries.sort_by_key(|e| {
                    ["operation", "manager", "apiVersion", "subresource"].map(|k| {
                        e.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    })
                });
            }
            for (key, field) in map.iter_mut() {
                match (key.as_str(), &*field) {
                    ("uid", Value::String(_)) => *field = json!("<uid>"),
                    ("resourceVersion", Value::String(rv)) if !rv.is_empty() && rv != "0" => {
                        *field = json!("<rv>")
                    }
                    ("continue", Value::String(token)) if !token.is_empty() => {
                        *field = json!("<continue>")
                    }
                    ("clusterIP", Value::String(ip)) if ip != "None" && !ip.is_empty() => {
                        *field = json!("<ip>")
                    }
                    ("clusterIPs", Value::Array(_)) => {
                        if let Value::Array(ips) = field {
                            for ip in ips.iter_mut().filter(|ip| *ip != "None") {
                                *ip = json!("<ip>");
                            }
                        }
                    }
                    (key, Value::String(_)) if TIMES.contains(&key) => *field = json!("<time>"),
                    _ => normalise(field, values),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| normalise(item, values)),
        Value::String(text) => *text = unname(text, values),
        _ => {}
    }
}

/// A name made from `generateName` keeps its prefix; the random suffix becomes `<random>`.
fn normalise_generated_name(map: &mut Map<String, Value>) {
    let Some(Value::String(prefix)) = map.get("generateName").cloned() else {
        return;
    };
    if let Some(Value::String(name)) = map.get_mut("name")
        && name.starts_with(&prefix)
        && name.len() > prefix.len()
    {
        *name = format!("{prefix}<random>");
    }
}

/// `text` with the scenario's placeholders put back (its namespace becomes `{ns}`), and the
/// numbers of a message about resource versions (which differ between servers) as `N`.
fn unname(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut text = text.to_owned();
    // Longest first: the group contains the namespace.
    let mut names: Vec<(&String, &String)> = values
        .iter()
        .filter(|(_, value)| value.len() >= 4)
        .collect();
    names.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
    for (name, value) in names {
        text = text.replace(value.as_str(), &format!("{{{name}}}"));
    }
    if text.to_ascii_lowercase().contains("resource version") {
        text = numbers_as_n(&text);
    }
    text
}

fn numbers_as_n(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// What `pointer` names, where a segment `[key=value]` picks the array item whose `key` is
/// `value` (a discovery document's resources by name, say).
pub(super) fn select<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    pointer
        .split('/')
        .skip(1)
        .try_fold(value, |value, segment| {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            match (
                value,
                segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')),
            ) {
                (Value::Array(items), Some(pick)) => {
                    let (key, wanted) = pick.split_once('=')?;
                    items
                        .iter()
                        .find(|item| item.get(key).and_then(Value::as_str) == Some(wanted))
                }
                (Value::Array(items), None) => items.get(segment.parse::<usize>().ok()?),
                (Value::Object(map), _) => map.get(&segment),
                _ => None,
            }
        })
}

/// Removes what `pointer` names, if it is there.
fn remove(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}
