//! Label and field selectors of list and watch requests.

use serde_json::Value;

use crate::catalog::{Builtin, ResourceType};
use crate::pointer::At;
use crate::status::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

impl LabelSelector {
    /// Parses equality-based (`a=b`, `a==b`, `a!=b`) and set-based (`a in (x,y)`,
    /// `a notin (x)`, `a`, `!a`) requirements, comma-separated.
    pub(crate) fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let found =
                |token: &str| format!("found '{token}', expected: in, notin, =, ==, !=, gt, lt");
            let req = parse_requirement(part).map_err(|token| match token {
                Unparsed::Token(token) => found(&token),
                Unparsed::Message(message) => message,
                Unparsed::Whole => found(part),
            });
            reqs.push(req.map_err(|message| {
                ApiError::bad_request(format!("unable to parse requirement: {message}"))
            })?);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether the selector has no requirements.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's labels satisfy the selector.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.matches_labels(labels)
    }

    /// Whether labels (`None`: none at all) satisfy the selector.
    pub(crate) fn matches_labels(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
            LabelReq::Gt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelReq::Lt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Why a requirement did not parse, as the API server's selector lexer words it.
enum Unparsed {
    /// An unexpected token.
    Token(String),
    /// A message of its own.
    Message(String),
    /// Nothing more precise than the whole requirement.
    Whole,
}

fn parse_requirement(part: &str) -> Result<LabelReq, Unparsed> {
    let whole = |ok: bool| if ok { Ok(()) } else { Err(Unparsed::Whole) };
    if let Some(key) = part.strip_prefix('!') {
        whole(valid_key(key.trim()))?;
        return Ok(LabelReq::NotExists(key.trim().to_string()));
    }
    for (op, build) in [
        ("!=", LabelReq::NotEq as fn(String, String) -> LabelReq),
        ("==", LabelReq::Eq),
        ("=", LabelReq::Eq),
    ] {
        if let Some((k, v)) = part.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            whole(valid_key(k))?;
            if v.starts_with(['=', '!']) {
                return Err(Unparsed::Message(format!(
                    "found '{}', expected: identifier",
                    &v[..1]
                )));
            }
            return Ok(build(k.to_string(), v.to_string()));
        }
    }
    for (op, gt) in [(">", true), ("<", false)] {
        if let Some((k, v)) = part.split_once(op) {
            let n = v.trim().parse::<i64>().map_err(|_| Unparsed::Whole)?;
            let k = k.trim().to_string();
            return Ok(if gt {
                LabelReq::Gt(k, n)
            } else {
                LabelReq::Lt(k, n)
            });
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default().trim();
    let rest = words.next().map(str::trim).unwrap_or("");
    if rest.is_empty() {
        whole(valid_key(key))?;
        return Ok(LabelReq::Exists(key.to_string()));
    }
    let word = rest
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or_default();
    if !matches!(word, "in" | "notin") {
        return Err(Unparsed::Token(word.to_string()));
    }
    let Some((op, values)) = rest.split_once('(') else {
        let next = rest[word.len()..].trim();
        return Err(Unparsed::Message(format!("found '{next}' expected: '('")));
    };
    let values = values.trim_end().strip_suffix(')').ok_or(Unparsed::Whole)?;
    let values: Vec<String> = values
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    match op.trim() {
        "in" => Ok(LabelReq::In(key.to_string(), values)),
        "notin" => Ok(LabelReq::NotIn(key.to_string(), values)),
        _ => Err(Unparsed::Whole),
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A parsed `fieldSelector` on the fields the API server supports for a kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `field=value`, `field==value`, `field!=value`, comma-separated, refusing
    /// fields the real API server does not index for this kind.
    pub(crate) fn parse(s: &str, rt: &ResourceType) -> Result<FieldSelector, ApiError> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !supported_field(rt, field) {
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                )));
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether the selector has no requirements.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object satisfies the selector.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = match obj.at(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *eq
        })
    }
}

fn supported_field(rt: &ResourceType, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    let extra: &[&str] = match rt.builtin {
        Some(Builtin::Pod) => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Some(Builtin::Event) => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        Some(Builtin::Secret) => &["type"],
        Some(Builtin::Namespace) => &["status.phase"],
        Some(Builtin::Job) => &["status.successful"],
        Some(Builtin::ReplicaSet) => &["status.replicas"],
        _ => &[],
    };
    extra.contains(&field)
}

#[cfg(test)]
mod tests;
