//! The verbs on objects: get, list, create, update, patch, apply, delete and
//! deletecollection, with the API server's rules for metadata, generation, status,
//! finalizers, propagation and dry-run.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::apply::{Applier, track_update};
use crate::catalog::{Builtin, ResourceType};
use crate::cluster::{ClusterState, ObjectKey, Reconcile, Step, is_controlled};
use crate::fieldset::Scope;
use crate::patch::{PatchType, patch};
use crate::pointer::At;
use crate::schema::default_merge_keys;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, success};
use crate::validation::{FieldValidation, check_schema, crd_causes, name_causes, rule_causes};

/// The resource (and object) a request addresses.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The resource type.
    pub(crate) rt: Arc<ResourceType>,
    /// The version the request uses.
    pub(crate) version: String,
    /// The namespace in the URL.
    pub(crate) namespace: Option<String>,
    /// The object name in the URL.
    pub(crate) name: Option<String>,
    /// `status` or `scale`.
    pub(crate) subresource: Option<String>,
}

impl Target {
    fn api_version(&self) -> String {
        self.rt.api_version(&self.version)
    }

    fn key(&self, name: &str) -> ObjectKey {
        let ns = if self.rt.namespaced {
            self.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        };
        (ns, name.to_string())
    }

    fn scope(&self) -> Scope {
        if self.subresource.as_deref() == Some("status") {
            Scope::Status
        } else {
            Scope::Main
        }
    }
}

/// Options shared by every write.
#[derive(Clone, Debug)]
pub(crate) struct WriteOpts {
    /// `dryRun=All`: validate and answer, store nothing.
    pub(crate) dry_run: bool,
    /// `fieldManager`, or the one derived from the User-Agent.
    pub(crate) manager: String,
    /// Whether the manager was given explicitly.
    pub(crate) manager_given: bool,
    /// `force=true` for apply.
    pub(crate) force: bool,
    /// `fieldValidation`.
    pub(crate) validation: FieldValidation,
    /// Timestamp of the write.
    pub(crate) now: String,
}

/// A successful write.
#[derive(Debug)]
pub(crate) struct Written {
    /// 200 or 201.
    pub(crate) code: u16,
    /// The object as stored (or as it would be, on dry-run).
    pub(crate) object: Arc<Value>,
    /// Its stored serialization, when it was stored.
    pub(crate) json: Option<bytes::Bytes>,
    /// `Warning` headers.
    pub(crate) warnings: Vec<String>,
}

/// Everything a list or watch filters by.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    /// `labelSelector`.
    pub(crate) labels: LabelSelector,
    /// `fieldSelector`.
    pub(crate) fields: FieldSelector,
}

impl Filter {
    /// Whether the filter lets everything pass.
    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether an object passes.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// Whether an object stored as JSON passes: without field selectors only its labels are
    /// read from the text, not the whole object. Text that does not parse never passes.
    pub(crate) fn matches_json(&self, json: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        struct Labelled {
            #[serde(default)]
            metadata: Metadata,
        }
        #[derive(Default, serde::Deserialize)]
        struct Metadata {
            #[serde(default)]
            labels: Option<Map<String, Value>>,
        }
        if !self.fields.is_empty() {
            return serde_json::from_slice::<Value>(json).is_ok_and(|obj| self.matches(&obj));
        }
        serde_json::from_slice::<Labelled>(json)
            .is_ok_and(|obj| self.labels.matches_labels(obj.metadata.labels.as_ref()))
    }
}

/// Checks the namespace part of a target: namespaced types need one that exists,
/// cluster-scoped ones must not have one.
pub(crate) fn check_namespace(
    state: &ClusterState,
    t: &Target,
    creating: bool,
    name: &str,
) -> Result<(), ApiError> {
    if !t.rt.namespaced {
        return if t.namespace.is_some() {
            Err(ApiError::no_resource())
        } else {
            Ok(())
        };
    }
    let Some(ns) = &t.namespace else {
        return Err(ApiError::method_not_allowed("POST"));
    };
    let Some(namespace) = state.namespace(ns) else {
        return Err(ApiError::namespace_not_found(ns));
    };
    if creating && namespace.at("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::namespace_terminating(&t.rt, name, ns));
    }
    Ok(())
}

/// GET of one object.
pub(crate) fn get(state: &ClusterState, t: &Target) -> Result<Arc<Value>, ApiError> {
    let name = t.name.as_deref().unwrap_or_default();
    if t.rt.namespaced
        && let Some(ns) = &t.namespace
        && state.namespace(ns).is_none()
    {
        return Err(ApiError::not_found(&t.rt, name));
    }
    state
        .get(&t.rt.key(), &t.key(name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt, name))
}

/// GET of one object's stored JSON.
pub(crate) fn get_json(state: &ClusterState, t: &Target) -> Result<bytes::Bytes, ApiError> {
    get(state, t)?;
    let name = t.name.as_deref().unwrap_or_default();
    state
        .get_json(&t.rt.key(), &t.key(name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt, name))
}

/// A page of a list.
pub(crate) struct Page {
    /// The objects.
    pub(crate) items: Vec<Arc<Value>>,
    /// The list's resourceVersion.
    pub(crate) rv: u64,
    /// Continue token, when more remain.
    pub(crate) continue_token: Option<String>,
    /// How many remain after this page.
    pub(crate) remaining: usize,
}

/// LIST, with selectors and limit/continue.
pub(crate) fn list(
    state: &ClusterState,
    t: &Target,
    filter: &Filter,
    limit: Option<usize>,
    continue_token: Option<&str>,
) -> Result<Page, ApiError> {
    let (list_rv, start) = match continue_token {
        Some(tok) => decode_continue(tok, state.floor())?,
        None => (state.rv(), None),
    };
    let namespace = if t.rt.namespaced {
        t.namespace.as_deref()
    } else {
        None
    };
    let mut items = Vec::new();
    let mut remaining = 0;
    let mut last_key = None;
    for (key, obj) in state.list(&t.rt.key(), namespace) {
        if let Some((sns, sname)) = &start
            && (&key.0, &key.1) <= (sns, sname)
        {
            continue;
        }
        if !filter.matches(obj) {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            remaining += 1;
            continue;
        }
        last_key = Some(key.clone());
        items.push(obj.clone());
    }
    let continue_token = (remaining > 0)
        .then(|| last_key.map(|k| encode_continue(list_rv, &k)))
        .flatten();
    Ok(Page {
        items,
        rv: list_rv,
        continue_token,
        remaining,
    })
}

fn encode_continue(rv: u64, key: &ObjectKey) -> String {
    use base64::Engine;
    let start = if key.0.is_empty() {
        key.1.clone()
    } else {
        format!("{}/{}", key.0, key.1)
    };
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(tok: &str, floor: u64) -> Result<(u64, Option<ObjectKey>), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if rv < floor {
        return Err(ApiError::expired(
            "The provided continue parameter is too old to display a consistent list result. \
             You can start a new list without the continue parameter, or use the continue token \
             in this response to retrieve the remainder of the results. Continuing with the \
             provided token results in an inconsistent list - objects that were created, \
             modified, or deleted between the time the first chunk was returned and now may \
             show up in the list.",
        ));
    }
    let key = match start.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), start.to_string()),
    };
    Ok((rv, Some(key)))
}

/// Parses a request body: JSON, or YAML for apply.
pub(crate) fn parse_body(body: &[u8], yaml: bool) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if !yaml || first == Some(b'{') {
        return serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: json: {e}")));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("error decoding YAML: invalid UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// Removes dropped unknown fields (`spec.foo`) from every managedFields entry: the API server
/// records ownership of the object it stores, not of the request.
fn disown(obj: &mut Value, unknown: &[String]) {
    let Some(Value::Array(entries)) = obj.at_mut("/metadata/managedFields") else {
        return;
    };
    for entry in entries.iter_mut() {
        let Some(fields) = entry.get_mut("fieldsV1") else {
            continue;
        };
        for path in unknown.iter().filter(|p| !p.contains('[')) {
            let segments: Vec<String> = path
                .split('.')
                .map(|f| format!("f:{}", f.replace('~', "~0").replace('/', "~1")))
                .collect();
            if let Some((last, parents)) = segments.split_last() {
                let parent = parents.iter().map(|p| format!("/{p}")).collect::<String>();
                if let Some(map) = fields.at_mut(&parent).and_then(Value::as_object_mut) {
                    map.shift_remove(&last.replace("~1", "/").replace("~0", "~"));
                }
            }
        }
    }
    entries.retain(|e| {
        e.get("fieldsV1")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
    });
    if entries.is_empty()
        && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.shift_remove("managedFields");
    }
}

/// The API server's answer to an applied configuration of another type than the URL's.
fn invalid_object_type(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("invalid object type: {group}/{version}, Kind={kind}")
}

/// Checks `apiVersion` and `kind` of a body against the URL, filling them when absent.
fn check_type_meta(t: &Target, obj: &mut Value, apply: bool) -> Result<(), ApiError> {
    let expected = t.api_version();
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    };
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != expected => {
            return Err(ApiError::bad_request(if apply {
                let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
                invalid_object_type(v, kind)
            } else {
                format!(
                    "the API version in the data ({v}) does not match the expected API version ({expected})"
                )
            }));
        }
        Some(_) => {}
        None if apply => {
            return Err(ApiError::bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: , expected: {expected}"
            )));
        }
        None => {
            map.insert("apiVersion".to_string(), json!(expected));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k != t.rt.kind && apply => {
            Err(ApiError::bad_request(invalid_object_type(&expected, k)))
        }
        Some(k) if k != t.rt.kind => Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            t.rt.kind
        ))),
        Some(_) => Ok(()),
        None => {
            map.insert("kind".to_string(), json!(t.rt.kind));
            Ok(())
        }
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Checks name and namespace in the body against the URL.
fn check_identity(t: &Target, obj: &mut Value, url_name: Option<&str>) -> Result<String, ApiError> {
    let body_ns = meta_str(obj, "namespace").map(str::to_string);
    if t.rt.namespaced {
        if let (Some(b), Some(u)) = (&body_ns, &t.namespace)
            && b != u
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if let Some(ns) = &t.namespace {
            meta_mut(obj).insert("namespace".to_string(), json!(ns));
        }
    } else if body_ns.is_some() {
        meta_mut(obj).shift_remove("namespace");
    }
    let body_name = meta_str(obj, "name").map(str::to_string);
    match (url_name, body_name) {
        (Some(u), Some(b)) if u != b => Err(ApiError::bad_request(format!(
            "the name of the object ({b}) does not match the name on the URL ({u})"
        ))),
        (Some(u), _) => {
            meta_mut(obj).insert("name".to_string(), json!(u));
            Ok(u.to_string())
        }
        (None, Some(b)) if !b.is_empty() => Ok(b),
        (None, _) => {
            let generate = meta_str(obj, "generateName").map(str::to_string);
            match generate {
                Some(prefix) => {
                    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_string();
                    let name = format!("{prefix}{suffix}");
                    meta_mut(obj).insert("name".to_string(), json!(name));
                    Ok(name)
                }
                None => Ok(String::new()),
            }
        }
    }
}

/// Whether anything besides metadata and status differs: what bumps `generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(old) != strip(new)
}

/// What kind of write produced a candidate object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteKind {
    Create,
    Update,
    Apply,
}

/// Carries server-owned fields over and validates; the single path every write takes
/// before it is stored.
fn finish(
    state: &mut ClusterState,
    t: &Target,
    old: Option<&Arc<Value>>,
    mut new: Value,
    kind: WriteKind,
    opts: &WriteOpts,
) -> Result<Written, ApiError> {
    let name = meta_str(&new, "name").unwrap_or_default().to_string();
    let scope = t.scope();
    if scope == Scope::Status {
        // Status writes change status only; everything else stays as it was.
        let Some(old) = old else {
            return Err(ApiError::not_found(&t.rt, &name));
        };
        let status = new.get("status").cloned();
        let managed = new.at("/metadata/managedFields").cloned();
        // Built-in kinds' status strategies reset the spec but keep metadata changes (the
        // apps workloads reset labels too); a custom resource's keeps nothing but status.
        let kept_metadata: Vec<(&str, Option<Value>)> = match t.rt.builtin {
            None => vec![],
            Some(
                Builtin::Deployment
                | Builtin::StatefulSet
                | Builtin::DaemonSet
                | Builtin::ReplicaSet,
            ) => vec![("annotations", new.at("/metadata/annotations").cloned())],
            Some(_) => ["labels", "annotations"]
                .into_iter()
                .map(|f| (f, new.at(&format!("/metadata/{f}")).cloned()))
                .collect(),
        };
        new = (**old).clone();
        for (field, value) in kept_metadata {
            match value {
                Some(v) => {
                    meta_mut(&mut new).insert(field.to_string(), v);
                }
                None => {
                    meta_mut(&mut new).shift_remove(field);
                }
            }
        }
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.shift_remove("status");
                }
            }
        }
        if let Some(m) = managed {
            meta_mut(&mut new).insert("managedFields".to_string(), m);
        }
    } else if t.rt.status_subresource {
        // Main-resource writes never change status when it is a subresource.
        let map = new.as_object_mut();
        if let Some(map) = map {
            match old.and_then(|o| o.get("status")) {
                Some(s) => {
                    map.insert("status".to_string(), s.clone());
                }
                None => {
                    map.shift_remove("status");
                }
            }
        }
    }
    new["apiVersion"] = json!(t.api_version());
    new["kind"] = json!(t.rt.kind);
    default_merge_keys(&t.rt, &mut new);
    if scope == Scope::Main {
        crate::defaults::apply(&t.rt, old.map(|o| &**o), &mut new, &name);
    }

    let meta = meta_mut(&mut new);
    meta.shift_remove("resourceVersion");
    meta.shift_remove("selfLink");
    match old {
        Some(old) => {
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old.at(&format!("/metadata/{f}")) {
                    Some(v) => {
                        meta.insert(f.to_string(), v.clone());
                    }
                    None => {
                        meta.shift_remove(f);
                    }
                }
            }
        }
        None => {
            meta.insert("uid".to_string(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".to_string(), json!(opts.now));
            meta.shift_remove("deletionTimestamp");
            meta.shift_remove("deletionGracePeriodSeconds");
            meta.shift_remove("generation");
            if t.rt.tracks_generation {
                meta.insert("generation".to_string(), json!(1));
            }
        }
    }
    if let Some(old) = old
        && t.rt.tracks_generation
        && (spec_changed(old, &new)
            || (t.rt.builtin == Some(Builtin::Deployment)
                && old.at("/metadata/annotations") != new.at("/metadata/annotations")))
    {
        let g = old
            .at("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".to_string(), json!(g + 1));
    }
    if kind != WriteKind::Apply {
        track_update(
            &t.rt,
            old.map(|o| &**o),
            &mut new,
            &opts.manager,
            &t.api_version(),
            scope,
            &opts.now,
        );
    }

    let mut causes = name_causes(&t.rt, &name, &new);
    causes.extend(rule_causes(&t.rt, old.map(|o| &**o), &new));
    if t.rt.builtin == Some(Builtin::CustomResourceDefinition) {
        causes.extend(crd_causes(&new));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(&t.rt, &name, causes));
    }
    let checked = check_schema(&t.rt, &name, new)?;
    let mut warnings = Vec::new();
    if !checked.unknown.is_empty() {
        match opts.validation {
            FieldValidation::Strict => {
                let list: Vec<String> = checked
                    .unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{}\" cannot be handled as a {kind}: strict decoding error: {}",
                    t.version,
                    list.join(", "),
                    kind = t.rt.kind,
                )));
            }
            FieldValidation::Warn => {
                warnings = checked
                    .unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
            }
            FieldValidation::Ignore => {}
        }
    }
    let mut new = checked.object;
    disown(&mut new, &checked.unknown);

    if let Some(old) = old {
        // Compared with the old resourceVersion in place: a no-op write stores nothing.
        if let Some(rv) = old.at("/metadata/resourceVersion") {
            meta_mut(&mut new).insert("resourceVersion".to_string(), rv.clone());
        }
        let same = new == **old;
        meta_mut(&mut new).shift_remove("resourceVersion");
        if same {
            return Ok(Written {
                code: 200,
                object: old.clone(),
                json: state.get_json(&t.rt.key(), &t.key(&name)).cloned(),
                warnings,
            });
        }
    }
    let code = if old.is_some() { 200 } else { 201 };
    let key = t.key(&name);
    let type_key = t.rt.key();
    let finalizers_gone = new
        .at("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if opts.dry_run {
        if let Some(old) = old {
            meta_mut(&mut new).insert(
                "resourceVersion".to_string(),
                old.at("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(json!("")),
            );
        }
        return Ok(Written {
            code,
            object: Arc::new(new),
            json: None,
            warnings,
        });
    }
    if new.at("/metadata/deletionTimestamp").is_some() && finalizers_gone {
        // The last finalizer is gone: the deletion completes now, and the answer is the
        // object as this write left it, as the API server answers.
        remove_object(state, &type_key, &key);
        meta_mut(&mut new).insert("resourceVersion".to_string(), json!(state.rv().to_string()));
        return Ok(Written {
            code,
            object: Arc::new(new),
            json: None,
            warnings,
        });
    }
    if t.rt.builtin == Some(Builtin::CustomResourceDefinition) {
        register_crd(state, &mut new, &opts.now);
    }
    let generation_changed =
        old.and_then(|o| o.at("/metadata/generation")) != new.at("/metadata/generation");
    let stored = state.put(&type_key, key.clone(), new);
    if is_controlled(&t.rt)
        && scope == Scope::Main
        && (old.is_none() || generation_changed || fault_flipped(old, &stored))
    {
        let uid = meta_str(&stored, "uid").unwrap_or_default().to_string();
        state.pending.push(Reconcile {
            type_key,
            object: key,
            uid,
            step: Step::Observe,
            delay: std::time::Duration::ZERO,
        });
    }
    let json = state.get_json(&t.rt.key(), &t.key(&name)).cloned();
    Ok(Written {
        code,
        object: stored,
        json,
        warnings,
    })
}

/// Whether the fault annotation changed, which the controllers react to.
fn fault_flipped(old: Option<&Arc<Value>>, new: &Value) -> bool {
    let get = |v: &Value| {
        v.at("/metadata/annotations")
            .and_then(|a| a.get(crate::controllers::FAIL_ANNOTATION))
            .cloned()
    };
    old.is_some_and(|o| get(o) != get(new))
}

fn register_crd(state: &mut ClusterState, crd: &mut Value, now: &str) {
    if let Some(rt) = ResourceType::from_crd(crd) {
        crd["status"] = ResourceType::crd_status(crd, &rt, now);
        state.register(rt);
    }
}

/// POST: create.
pub(crate) fn create(
    state: &mut ClusterState,
    t: &Target,
    mut obj: Value,
    opts: &WriteOpts,
) -> Result<Written, ApiError> {
    if t.subresource.is_some() {
        return Err(ApiError::method_not_allowed("POST"));
    }
    check_type_meta(t, &mut obj, false)?;
    let name = check_identity(t, &mut obj, None)?;
    if name.is_empty() {
        return Err(ApiError::invalid(&t.rt, "", name_causes(&t.rt, "", &obj)));
    }
    check_namespace(state, t, true, &name)?;
    if state.get(&t.rt.key(), &t.key(&name)).is_some() {
        return Err(ApiError::already_exists(&t.rt, &name));
    }
    if crate::apply::has_managed_fields(&obj) {
        // managedFields on create are taken as given by the real server only for
        // migrations; they are recomputed here.
        meta_mut(&mut obj).shift_remove("managedFields");
    }
    finish(state, t, None, obj, WriteKind::Create, opts)
}

/// PUT: update with optimistic concurrency.
pub(crate) fn update(
    state: &mut ClusterState,
    t: &Target,
    mut obj: Value,
    opts: &WriteOpts,
) -> Result<Written, ApiError> {
    let url_name = t.name.clone().unwrap_or_default();
    if t.subresource.as_deref() == Some("scale") {
        return update_scale(state, t, obj, opts);
    }
    check_type_meta(t, &mut obj, false)?;
    check_identity(t, &mut obj, Some(&url_name))?;
    check_namespace(state, t, false, &url_name)?;
    let old = state
        .get(&t.rt.key(), &t.key(&url_name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt, &url_name))?;
    if let Some(rv) = meta_str(&obj, "resourceVersion")
        && !rv.is_empty()
        && Some(rv) != meta_str(&old, "resourceVersion")
    {
        return Err(ApiError::stale(&t.rt, &url_name));
    }
    if let Some(uid) = meta_str(&obj, "uid")
        && Some(uid) != meta_str(&old, "uid")
    {
        return Err(ApiError::precondition(
            &t.rt,
            &url_name,
            format!(
                "Precondition failed: UID in precondition: {}, UID in object meta: {uid}",
                meta_str(&old, "uid").unwrap_or_default()
            ),
        ));
    }
    meta_mut(&mut obj).shift_remove("managedFields");
    if let Some(m) = old.at("/metadata/managedFields") {
        meta_mut(&mut obj).insert("managedFields".to_string(), m.clone());
    }
    finish(state, t, Some(&old), obj, WriteKind::Update, opts)
}

/// PATCH: merge, JSON, strategic or apply.
pub(crate) fn patch_object(
    state: &mut ClusterState,
    t: &Target,
    kind: PatchType,
    body: &[u8],
    opts: &WriteOpts,
) -> Result<Written, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    if kind == PatchType::Apply {
        return apply(state, t, body, opts);
    }
    check_namespace(state, t, false, &name)?;
    let old = state
        .get(&t.rt.key(), &t.key(&name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt, &name))?;
    if t.subresource.as_deref() == Some("scale") {
        let scale = scale_of(&old);
        let patched = patch(&t.rt, kind, &scale, body)?;
        return update_scale(state, t, patched, opts);
    }
    let mut patched = patch(&t.rt, kind, &old, body)?;
    check_type_meta(t, &mut patched, false)?;
    check_identity(t, &mut patched, Some(&name))?;
    if let Some(rv) = meta_str(&patched, "resourceVersion")
        && Some(rv) != meta_str(&old, "resourceVersion")
    {
        return Err(ApiError::stale(&t.rt, &name));
    }
    finish(state, t, Some(&old), patched, WriteKind::Update, opts)
}

/// Server-side apply (PATCH with `application/apply-patch+yaml`).
fn apply(
    state: &mut ClusterState,
    t: &Target,
    body: &[u8],
    opts: &WriteOpts,
) -> Result<Written, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    if !opts.manager_given {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "fieldManager",
            "Required value: is required for apply patch",
        ));
    }
    let mut applied = parse_body(body, true)?;
    if crate::apply::has_managed_fields(&applied) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    check_type_meta(t, &mut applied, true)?;
    check_identity(t, &mut applied, Some(&name))?;
    let old = state.get(&t.rt.key(), &t.key(&name)).cloned();
    if old.is_none() {
        if t.subresource.is_some() {
            return Err(ApiError::not_found(&t.rt, &name));
        }
        check_namespace(state, t, true, &name)?;
    }
    if let (Some(rv), Some(old)) = (meta_str(&applied, "resourceVersion"), &old)
        && Some(rv) != meta_str(old, "resourceVersion")
    {
        return Err(ApiError::stale(&t.rt, &name));
    }
    let applier = Applier {
        rt: &t.rt,
        manager: &opts.manager,
        api_version: &t.api_version(),
        scope: t.scope(),
        force: opts.force,
        now: &opts.now,
    };
    let merged = applier
        .apply(old.as_deref(), &applied)
        .map_err(|causes| ApiError::apply_conflicts(&t.rt, &name, causes))?;
    finish(state, t, old.as_ref(), merged, WriteKind::Apply, opts)
}

/// The `autoscaling/v1` Scale of an object.
pub(crate) fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .at("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.at("/metadata/name"),
            "namespace": obj.at("/metadata/namespace"),
            "uid": obj.at("/metadata/uid"),
            "resourceVersion": obj.at("/metadata/resourceVersion"),
            "creationTimestamp": obj.at("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": obj.at("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.at("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn update_scale(
    state: &mut ClusterState,
    t: &Target,
    scale: Value,
    opts: &WriteOpts,
) -> Result<Written, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let old = state
        .get(&t.rt.key(), &t.key(&name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt, &name))?;
    let replicas = scale
        .at("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("spec.replicas: Required value"))?;
    let mut new = (*old).clone();
    new["spec"]["replicas"] = json!(replicas);
    let main = Target {
        subresource: None,
        ..t.clone()
    };
    let written = finish(state, &main, Some(&old), new, WriteKind::Update, opts)?;
    Ok(Written {
        code: written.code,
        object: Arc::new(scale_of(&written.object)),
        json: None,
        warnings: written.warnings,
    })
}

/// Propagation of a delete to dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Propagation {
    /// Dependents lose their ownerReference.
    Orphan,
    /// Dependents are deleted (here: synchronously, before the owner).
    Background,
    /// Dependents are deleted before the owner.
    Foreground,
}

/// Options of a delete.
#[derive(Clone, Debug)]
pub(crate) struct DeleteOpts {
    /// Propagation policy.
    pub(crate) propagation: Propagation,
    /// Required uid.
    pub(crate) uid: Option<String>,
    /// Required resourceVersion.
    pub(crate) rv: Option<String>,
    /// dryRun=All.
    pub(crate) dry_run: bool,
    /// Timestamp.
    pub(crate) now: String,
}

impl DeleteOpts {
    /// Reads DeleteOptions from the query and an optional JSON body.
    pub(crate) fn parse(
        query_policy: Option<&str>,
        query_dry_run: bool,
        body: &[u8],
        now: String,
    ) -> Result<DeleteOpts, ApiError> {
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
        };
        let policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(query_policy);
        let orphan = body.get("orphanDependents").and_then(Value::as_bool);
        let propagation = match (policy, orphan) {
            (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
            (Some("Foreground"), _) => Propagation::Foreground,
            (Some("Background") | None, _) => Propagation::Background,
            (Some(other), _) => {
                return Err(ApiError::bad_request(format!(
                    "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                )));
            }
        };
        let dry_run = query_dry_run
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        Ok(DeleteOpts {
            propagation,
            uid: body
                .at("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            rv: body
                .at("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run,
            now,
        })
    }
}

/// DELETE of one object: the object with a deletionTimestamp while finalizers remain,
/// else a `Status` of success.
pub(crate) fn delete(
    state: &mut ClusterState,
    t: &Target,
    opts: &DeleteOpts,
) -> Result<(u16, Value), ApiError> {
    let name = t.name.clone().unwrap_or_default();
    check_namespace(state, t, false, &name)?;
    let key = t.key(&name);
    let obj = state
        .get(&t.rt.key(), &key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt, &name))?;
    let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
    if let Some(want) = &opts.uid
        && *want != uid
    {
        return Err(ApiError::precondition(
            &t.rt,
            &name,
            format!(
                "the UID in the precondition ({want}) does not match the UID in record ({uid}). \
                 The object might have been deleted and then recreated"
            ),
        ));
    }
    if let Some(want) = &opts.rv
        && Some(want.as_str()) != meta_str(&obj, "resourceVersion")
    {
        return Err(ApiError::precondition(
            &t.rt,
            &name,
            format!(
                "the ResourceVersion in the precondition ({want}) does not match the \
                 ResourceVersion in record ({}). The object might have been modified",
                meta_str(&obj, "resourceVersion").unwrap_or_default()
            ),
        ));
    }
    if opts.dry_run {
        return Ok((200, success(&t.rt, &name, &uid)));
    }
    let deleting = deleting(&t.rt, &obj, opts);
    match delete_in(state, &t.rt, &key, opts) {
        Some(pending) => Ok((200, (*pending).clone())),
        None => Ok((200, deleting.unwrap_or_else(|| success(&t.rt, &name, &uid)))),
    }
}

/// What the API server answers a delete with when a controller finishes the deletion: the
/// object marked for deletion, with the finalizer that controller removes. The simulator
/// finishes at once, but answers the same, so clients see what they see on a cluster.
fn deleting(rt: &ResourceType, obj: &Value, opts: &DeleteOpts) -> Option<Value> {
    let finalizer = match (rt.builtin, &opts.propagation) {
        (Some(Builtin::Namespace), _) => None,
        (Some(Builtin::CustomResourceDefinition), _) => {
            Some("customresourcecleanup.apiextensions.k8s.io")
        }
        (_, Propagation::Foreground) => Some("foregroundDeletion"),
        (_, Propagation::Orphan) => Some("orphan"),
        (_, Propagation::Background) => return None,
    };
    if obj.at("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    let mut marked = obj.clone();
    let meta = meta_mut(&mut marked);
    meta.insert("deletionTimestamp".to_string(), json!(opts.now));
    if let Some(finalizer) = finalizer {
        meta.insert("deletionGracePeriodSeconds".to_string(), json!(0));
        let finalizers = meta
            .entry("finalizers")
            .or_insert_with(|| json!([]))
            .as_array_mut();
        if let Some(finalizers) = finalizers {
            finalizers.push(json!(finalizer));
        }
    } else {
        marked["status"] = json!({"phase": "Terminating"});
    }
    Some(marked)
}

/// Deletes an object with propagation; returns the object if finalizers keep it.
fn delete_in(
    state: &mut ClusterState,
    rt: &ResourceType,
    key: &ObjectKey,
    opts: &DeleteOpts,
) -> Option<Arc<Value>> {
    let type_key = rt.key();
    let obj = state.get(&type_key, key)?.clone();
    let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
    for (dep_type, dep_key) in state.dependents(&uid) {
        match opts.propagation {
            Propagation::Orphan => {
                if let Some(dep) = state.get(&dep_type, &dep_key) {
                    let mut dep = (**dep).clone();
                    if let Some(refs) = dep
                        .at_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(&uid));
                    }
                    state.put(&dep_type, dep_key, dep);
                }
            }
            Propagation::Background | Propagation::Foreground => {
                if let Some(dep_rt) = find_by_key(state, &dep_type) {
                    let nested = DeleteOpts {
                        propagation: Propagation::Background,
                        ..opts.clone()
                    };
                    delete_in(state, &dep_rt, &dep_key, &nested);
                }
            }
        }
    }
    if rt.builtin == Some(Builtin::Namespace) {
        return delete_namespace(state, key, opts);
    }
    let has_finalizers = obj
        .at("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if obj.at("/metadata/deletionTimestamp").is_some() {
            return Some(obj);
        }
        let mut marked = (*obj).clone();
        let meta = meta_mut(&mut marked);
        meta.insert("deletionTimestamp".to_string(), json!(opts.now));
        meta.insert("deletionGracePeriodSeconds".to_string(), json!(0));
        return Some(state.put(&type_key, key.clone(), marked));
    }
    if rt.builtin == Some(Builtin::CustomResourceDefinition)
        && let Some(custom) = ResourceType::from_crd(&obj)
    {
        state.unregister(&custom.key());
    }
    remove_object(state, &type_key, key);
    None
}

fn find_by_key(state: &ClusterState, type_key: &str) -> Option<Arc<ResourceType>> {
    state
        .resource_types()
        .into_iter()
        .find(|rt| rt.key() == type_key)
}

/// A namespace turns Terminating, its contents are deleted, and it goes once empty.
fn delete_namespace(
    state: &mut ClusterState,
    key: &ObjectKey,
    opts: &DeleteOpts,
) -> Option<Arc<Value>> {
    let ns = key.1.clone();
    let obj = state.get("namespaces", key)?.clone();
    if obj.at("/metadata/deletionTimestamp").is_none() {
        let mut marked = (*obj).clone();
        meta_mut(&mut marked).insert("deletionTimestamp".to_string(), json!(opts.now));
        marked["status"] = json!({"phase": "Terminating"});
        state.put("namespaces", key.clone(), marked);
    }
    for (type_key, k) in state.namespace_contents(&ns) {
        if let Some(rt) = find_by_key(state, &type_key) {
            delete_in(state, &rt, &k, opts);
        }
    }
    finish_namespace(state, &ns);
    state.get("namespaces", key).cloned()
}

/// Removes a terminating namespace once nothing is left in it.
fn finish_namespace(state: &mut ClusterState, ns: &str) {
    let key = (String::new(), ns.to_string());
    let Some(obj) = state.get("namespaces", &key) else {
        return;
    };
    let terminating = obj.at("/metadata/deletionTimestamp").is_some();
    let held = obj
        .at("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if terminating && !held && state.namespace_is_empty(ns) {
        state.remove("namespaces", &key);
    }
}

/// Removes an object and completes its namespace's termination if it was the last.
fn remove_object(state: &mut ClusterState, type_key: &str, key: &ObjectKey) -> Option<Arc<Value>> {
    let last = state.remove(type_key, key);
    if !key.0.is_empty() {
        finish_namespace(state, &key.0);
    }
    last
}

/// DELETE on a collection: deletes every object the selectors match.
pub(crate) fn delete_collection(
    state: &mut ClusterState,
    t: &Target,
    filter: &Filter,
    opts: &DeleteOpts,
) -> Result<Vec<Arc<Value>>, ApiError> {
    if t.rt.namespaced
        && let Some(ns) = &t.namespace
        && state.namespace(ns).is_none()
    {
        return Err(ApiError::namespace_not_found(ns));
    }
    let namespace = if t.rt.namespaced {
        t.namespace.as_deref()
    } else {
        None
    };
    let matched: Vec<(ObjectKey, Arc<Value>)> = state
        .list(&t.rt.key(), namespace)
        .filter(|(_, o)| filter.matches(o))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    let mut out = Vec::new();
    for (key, obj) in matched {
        if opts.dry_run {
            out.push(obj);
            continue;
        }
        match delete_in(state, &t.rt, &key, opts) {
            Some(pending) => out.push(pending),
            None => out.push(obj),
        }
    }
    Ok(out)
}
