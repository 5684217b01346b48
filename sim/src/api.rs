//! The Kubernetes REST API of one virtual cluster: routing of a request under
//! `/clusters/{name}/` to discovery, the object verbs and watches.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::ResourceType;
use crate::cluster::Cluster;
use crate::discovery;
use crate::fleet::{Fleet, timestamp};
use crate::objects::{self, DeleteOpts, Filter, Target, WriteOpts, Written};
use crate::patch::PatchType;
use crate::pointer::At;
use crate::render::{ListBody, Served, warning_header};
use crate::route::{ResourcePath, Route};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::table::{IncludeObject, Rendering, metadata_of, table};
use crate::validation::FieldValidation;
use crate::watch::{self, WatchParams};

/// The API server's request body limit.
pub(crate) const MAX_BODY: usize = 3 * 1024 * 1024;

const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Query parameters, in order.
pub(crate) struct Query(pub(crate) Vec<(String, String)>);

impl Query {
    /// The first value of a parameter.
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a boolean parameter is set (`true` or `1`).
    pub(crate) fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

/// A parsed request to a cluster.
pub(crate) struct ApiRequest {
    /// The method.
    pub(crate) method: Method,
    /// Where the path below `/clusters/{name}` leads.
    pub(crate) route: Route,
    /// Query parameters.
    pub(crate) query: Query,
    /// Headers.
    pub(crate) headers: HeaderMap,
    /// The body, not yet read.
    pub(crate) body: Body,
}

/// JSON response with a status code and `Warning` headers.
pub(crate) fn json_response<T: Serialize>(code: u16, body: &T, warnings: &[String]) -> Response {
    json_response_typed(code, body, warnings, "application/json")
}

fn json_response_typed<T: Serialize>(
    code: u16,
    body: &T,
    warnings: &[String],
    content_type: &str,
) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, content_type)
        .header("Audit-Id", uuid::Uuid::new_v4().to_string())
        .header("Cache-Control", "no-cache, private");
    for w in warnings {
        builder = builder.header("Warning", warning_header(w));
    }
    builder
        .body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn raw_json_response(code: u16, json: bytes::Bytes, warnings: &[String]) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "application/json")
        .header("Audit-Id", uuid::Uuid::new_v4().to_string())
        .header("Cache-Control", "no-cache, private");
    for w in warnings {
        builder = builder.header("Warning", warning_header(w));
    }
    builder
        .body(Body::from(json))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A `Status` response for a failure.
pub(crate) fn error_response(e: &ApiError) -> Response {
    if e.is_plain() {
        let mut response = Response::new(Body::from(format!("{}\n", e.message)));
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return response;
    }
    json_response(e.code, &e.to_status(), &[])
}

/// Serves one request to a cluster.
pub(crate) async fn serve(fleet: Arc<Fleet>, cluster: Arc<Cluster>, req: ApiRequest) -> Response {
    match dispatch(&fleet, &cluster, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn dispatch(
    fleet: &Arc<Fleet>,
    cluster: &Arc<Cluster>,
    mut req: ApiRequest,
) -> Result<Response, ApiError> {
    let accept = req
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let aggregated = accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2");
    // The route moves out; the rest of the request goes on to the resource handlers.
    match std::mem::replace(&mut req.route, Route::NotFound) {
        Route::Version => Ok(json_response(200, &discovery::version(), &[])),
        Route::Health => Ok(Response::new(Body::from("ok"))),
        Route::OpenApi(rest) => {
            let types = cluster.read().resource_types();
            if rest.is_empty() {
                let base = format!("/clusters/{}", cluster.name());
                return Ok(json_response(
                    200,
                    &crate::openapi::root(&types, &base),
                    &[],
                ));
            }
            crate::openapi::group_version(&types, &rest)
                .map(|v| json_response(200, &v, &[]))
                .ok_or_else(ApiError::no_resource)
        }
        Route::NotFound => Err(ApiError::no_resource()),
        Route::Api if aggregated => {
            let types = cluster.read().resource_types();
            Ok(json_response_typed(
                200,
                &discovery::aggregated(&types, true),
                &[],
                AGGREGATED_CONTENT_TYPE,
            ))
        }
        Route::Api => {
            let server = fleet.config.listen.to_string();
            Ok(json_response(200, &discovery::core_versions(&server), &[]))
        }
        Route::Apis if aggregated => {
            let types = cluster.read().resource_types();
            Ok(json_response_typed(
                200,
                &discovery::aggregated(&types, false),
                &[],
                AGGREGATED_CONTENT_TYPE,
            ))
        }
        Route::Apis => {
            let types = cluster.read().resource_types();
            Ok(json_response(200, &discovery::group_list(&types), &[]))
        }
        Route::Group(g) => {
            let types = cluster.read().resource_types();
            discovery::group(&types, &g)
                .map(|v| json_response(200, &v, &[]))
                .ok_or_else(ApiError::page_not_found)
        }
        Route::GroupVersion(g, v) => {
            let types = cluster.read().resource_types();
            discovery::resource_list(&types, &g, &v)
                .map(|v| json_response(200, &v, &[]))
                .ok_or_else(ApiError::page_not_found)
        }
        Route::Resource(p) => resource(fleet, cluster, p, req, &accept).await,
    }
}

fn target(cluster: &Cluster, p: ResourcePath) -> Result<Target, ApiError> {
    let rt = {
        let state = cluster.read();
        let rt = state
            .find_type(&p.group, &p.resource)
            .filter(|rt| rt.serves(&p.version))
            .ok_or_else(|| {
                // Only a group-version someone serves answers with a Status.
                let served = |rt: &Arc<ResourceType>| rt.group == p.group && rt.serves(&p.version);
                if state.resource_types().iter().any(served) {
                    ApiError::no_resource()
                } else {
                    ApiError::page_not_found()
                }
            })?;
        if let Some(crate::Fault::LaggingCustomResources(lag)) = cluster.fault()
            && state
                .registered_at(&rt.key())
                .is_some_and(|at| at.elapsed() < lag)
        {
            return Err(ApiError::no_resource());
        }
        rt
    };
    if let Some(sub) = &p.subresource {
        let ok = match sub.as_str() {
            "status" => rt.status_subresource,
            "scale" => rt.scale_subresource,
            "finalize" => rt.plural == "namespaces" && rt.group.is_empty(),
            _ => false,
        };
        if !ok {
            return Err(ApiError::no_resource());
        }
    }
    if rt.namespaced && p.namespace.is_none() && p.name.is_some() {
        // A namespaced object is only found under its namespace.
        return Err(ApiError::no_resource());
    }
    if p.namespace.is_some() && !rt.namespaced {
        // No namespaced route exists for a cluster-scoped resource.
        return Err(ApiError::page_not_found());
    }
    Ok(Target {
        rt,
        version: p.version,
        namespace: p.namespace,
        name: p.name,
        subresource: p.subresource.map(|s| {
            if s == "finalize" {
                "status".to_string()
            } else {
                s
            }
        }),
    })
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(MAX_BODY))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body failed: {e}"
        ))),
    }
}

fn filter(q: &Query, rt: &ResourceType) -> Result<Filter, ApiError> {
    Ok(Filter {
        labels: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), rt)?,
    })
}

/// `dryRun`; `options` names the request's options kind (`CreateOptions`, ...) for errors.
fn dry_run(q: &Query, options: &str) -> Result<bool, ApiError> {
    match q.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::invalid_options(
            options,
            "dryRun",
            &format!("Unsupported value: [\"{other}\"]: supported values: \"All\""),
        )),
    }
}

fn write_opts(q: &Query, headers: &HeaderMap, options: &str) -> Result<WriteOpts, ApiError> {
    let given = q.get("fieldManager").filter(|m| !m.is_empty());
    if let Some(m) = given
        && m.len() > 128
    {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "fieldManager",
            "Too long: may not be more than 128 bytes",
        ));
    }
    // Like the API server: the User-Agent up to its first '/' names an unnamed manager.
    let derived = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    Ok(WriteOpts {
        dry_run: dry_run(q, options)?,
        manager: given.map(str::to_string).unwrap_or(derived),
        manager_given: given.is_some(),
        force: q.flag("force"),
        validation: FieldValidation::parse(q.get("fieldValidation"))?,
        now: timestamp(),
    })
}

fn render_one(t: &Target, obj: &Value, rendering: Rendering, q: &Query) -> Value {
    match rendering {
        Rendering::Metadata => metadata_of(obj),
        Rendering::Table => table(
            &t.rt,
            &[obj],
            obj.at("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            IncludeObject::parse(q.get("includeObject")),
        ),
        Rendering::Full => {
            let mut o = obj.clone();
            if o.get("kind").and_then(Value::as_str) != Some("Status")
                && o.get("kind").and_then(Value::as_str) != Some("Scale")
            {
                o["apiVersion"] = json!(t.rt.api_version(&t.version));
            }
            o
        }
    }
}

async fn resource(
    fleet: &Arc<Fleet>,
    cluster: &Arc<Cluster>,
    p: ResourcePath,
    req: ApiRequest,
    accept: &str,
) -> Result<Response, ApiError> {
    let t = target(cluster, p)?;
    let q = &req.query;
    let rendering = Rendering::from_accept(accept);
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let protobuf = content_type.starts_with("application/vnd.kubernetes.protobuf");
    if content_type.contains("cbor") || (protobuf && req.method != Method::POST) {
        // Only JSON and YAML bodies (and protobuf creates) are understood.
        return Err(ApiError::unsupported_body(&content_type));
    }
    match (req.method.clone(), t.name.is_some()) {
        (Method::GET, true)
            if rendering == Rendering::Full
                && t.subresource.is_none()
                && t.rt.versions.len() == 1 =>
        {
            // The stored serialization is the answer: no copy, no re-encoding.
            let json = objects::get_json(&cluster.read(), &t)?;
            Ok(raw_json_response(200, json, &[]))
        }
        (Method::GET, true) => {
            let obj = objects::get(&cluster.read(), &t)?;
            if t.subresource.as_deref() == Some("scale") {
                return Ok(json_response(200, &objects::scale_of(&obj), &[]));
            }
            Ok(json_response(200, &render_one(&t, &obj, rendering, q), &[]))
        }
        (Method::GET, false) if q.flag("watch") => {
            let f = filter(q, &t.rt)?;
            let timeout = q
                .get("timeoutSeconds")
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_secs(1800));
            if t.rt.namespaced
                && let Some(ns) = &t.namespace
                && cluster.read().namespace(ns).is_none()
            {
                return Err(ApiError::namespace_not_found(ns));
            }
            let params = WatchParams {
                resource_version: q.get("resourceVersion").map(str::to_string),
                bookmarks: q.flag("allowWatchBookmarks"),
                timeout,
                send_initial_events: q.flag("sendInitialEvents"),
                rendering,
                include: IncludeObject::parse(q.get("includeObject")),
                bookmark_interval: fleet.config.bookmark_interval,
            };
            let stream = watch::start(cluster.clone(), t, f, params, fleet.shutdown.clone())?;
            Ok(Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .header("Cache-Control", "no-cache, private")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| Response::new(Body::empty())))
        }
        (Method::GET, false) => list(cluster, &t, q, rendering),
        (Method::POST, false) => {
            let body = read_body(req.body).await?;
            let obj = if protobuf {
                crate::protobuf::decode(&body)?
            } else {
                objects::parse_body(&body, content_type.contains("yaml"))?
            };
            let opts = write_opts(q, &req.headers, "CreateOptions")?;
            let written = write(fleet, cluster, |s| objects::create(s, &t, obj, &opts))?;
            Ok(written_response(&t, written, rendering, q))
        }
        (Method::PUT, true) => {
            let body = read_body(req.body).await?;
            let obj = objects::parse_body(&body, content_type.contains("yaml"))?;
            let opts = write_opts(q, &req.headers, "UpdateOptions")?;
            let written = write(fleet, cluster, |s| objects::update(s, &t, obj, &opts))?;
            Ok(written_response(&t, written, rendering, q))
        }
        (Method::PATCH, true) => {
            let kind = PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let body = read_body(req.body).await?;
            let opts = write_opts(q, &req.headers, "PatchOptions")?;
            if kind != PatchType::Apply && (q.get("force").is_some()) {
                return Err(ApiError::invalid_options(
                    "PatchOptions",
                    "force",
                    "Forbidden: may not be specified for non-apply patch",
                ));
            }
            let written = write(fleet, cluster, |s| {
                objects::patch_object(s, &t, kind, &body, &opts)
            })?;
            Ok(written_response(&t, written, rendering, q))
        }
        (Method::DELETE, true) => {
            let body = read_body(req.body).await?;
            let opts = DeleteOpts::parse(
                q.get("propagationPolicy"),
                dry_run(q, "DeleteOptions")?,
                &body,
                timestamp(),
            )?;
            let (code, obj) = write(fleet, cluster, |s| objects::delete(s, &t, &opts))?;
            Ok(json_response(
                code,
                &render_one(&t, &obj, Rendering::Full, q),
                &[],
            ))
        }
        (Method::DELETE, false) => {
            let body = read_body(req.body).await?;
            let opts = DeleteOpts::parse(
                q.get("propagationPolicy"),
                dry_run(q, "DeleteOptions")?,
                &body,
                timestamp(),
            )?;
            let f = filter(q, &t.rt)?;
            let deleted = write(fleet, cluster, |s| {
                objects::delete_collection(s, &t, &f, &opts)
            })?;
            let api_version = t.rt.api_version(&t.version);
            let kind = format!("{}List", t.rt.kind);
            // Typed lists carry no apiVersion and kind per item; unstructured ones do.
            let items: Vec<Served> = deleted
                .iter()
                .map(|o| Served {
                    obj: o,
                    api_version: &api_version,
                    omit_type: t.rt.builtin.is_some(),
                })
                .collect();
            let rv = cluster.read().rv().to_string();
            Ok(json_response(
                200,
                &ListBody {
                    kind: &kind,
                    api_version: &api_version,
                    metadata: json!({"resourceVersion": rv}),
                    items,
                },
                &[],
            ))
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// Runs a write under the cluster's lock and hands the controller work on.
fn write<T>(
    fleet: &Fleet,
    cluster: &Arc<Cluster>,
    f: impl FnOnce(&mut crate::cluster::ClusterState) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let (out, pending) = cluster.write(f);
    fleet.schedule(cluster, pending);
    out
}

fn written_response(t: &Target, w: Written, rendering: Rendering, q: &Query) -> Response {
    if let Some(json) = w.json
        && rendering == Rendering::Full
        && t.subresource.as_deref() != Some("scale")
        && t.rt.versions.len() == 1
    {
        return raw_json_response(w.code, json, &w.warnings);
    }
    let body = render_one(t, &w.object, rendering, q);
    json_response(w.code, &body, &w.warnings)
}

fn list(
    cluster: &Cluster,
    t: &Target,
    q: &Query,
    rendering: Rendering,
) -> Result<Response, ApiError> {
    let f = filter(q, &t.rt)?;
    if q.get("resourceVersionMatch").is_some_and(|m| !m.is_empty())
        && q.get("resourceVersion").is_none_or(str::is_empty)
    {
        return Err(ApiError::invalid_options(
            "ListOptions",
            "resourceVersionMatch",
            "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let state = cluster.read();
    if t.rt.namespaced
        && let Some(ns) = &t.namespace
        && state.namespace(ns).is_none()
    {
        // A real API server lists an empty result for a namespace that does not exist.
        drop(state);
        let api_version = t.rt.api_version(&t.version);
        let kind = format!("{}List", t.rt.kind);
        return Ok(json_response(
            200,
            &ListBody {
                kind: &kind,
                api_version: &api_version,
                metadata: json!({"resourceVersion": cluster.read().rv().to_string()}),
                items: vec![],
            },
            &[],
        ));
    }
    let page = objects::list(
        &state,
        t,
        &f,
        limit,
        q.get("continue").filter(|c| !c.is_empty()),
    )?;
    drop(state);
    let mut metadata = json!({"resourceVersion": page.rv.to_string()});
    if t.rt.builtin.is_none() {
        // A custom resource list is unstructured there: an empty token is still written.
        metadata["continue"] = json!("");
    }
    if let Some(c) = &page.continue_token {
        metadata["continue"] = json!(c);
        // With a selector the server cannot count what is left, and does not say.
        if f.labels.is_empty() && f.fields.is_empty() {
            metadata["remainingItemCount"] = json!(page.remaining);
        }
    }
    match rendering {
        Rendering::Table => {
            let objs: Vec<&Value> = page.items.iter().map(|o| &**o).collect();
            let mut tab = table(
                &t.rt,
                &objs,
                Some(page.rv.to_string()),
                IncludeObject::parse(q.get("includeObject")),
            );
            tab["metadata"] = metadata;
            Ok(json_response(200, &tab, &[]))
        }
        Rendering::Metadata => {
            let metas: Vec<Value> = page.items.iter().map(|o| metadata_of(o)).collect();
            let items: Vec<Served> = metas
                .iter()
                .map(|m| Served {
                    obj: m,
                    api_version: "meta.k8s.io/v1",
                    omit_type: false,
                })
                .collect();
            Ok(json_response(
                200,
                &ListBody {
                    kind: "PartialObjectMetadataList",
                    api_version: "meta.k8s.io/v1",
                    metadata,
                    items,
                },
                &[],
            ))
        }
        Rendering::Full => {
            let api_version = t.rt.api_version(&t.version);
            let kind = format!("{}List", t.rt.kind);
            // Lists of built-in kinds carry no apiVersion/kind per item; custom ones do.
            let omit = t.rt.builtin.is_some();
            let items: Vec<Served> = page
                .items
                .iter()
                .map(|o| Served {
                    obj: o,
                    api_version: &api_version,
                    omit_type: omit,
                })
                .collect();
            Ok(json_response(
                200,
                &ListBody {
                    kind: &kind,
                    api_version: &api_version,
                    metadata,
                    items,
                },
                &[],
            ))
        }
    }
}
