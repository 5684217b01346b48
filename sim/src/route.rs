//! Where a request below `/clusters/{name}` goes: discovery, OpenAPI, health, or a
//! resource (collection, object or subresource), and which API verb it is.

use http::Method;

/// The destination of a request to a cluster.
pub(crate) enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`.
    Api,
    /// `/apis`.
    Apis,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    GroupVersion(String, String),
    /// `/openapi/v3[/...]`, with what follows `v3`.
    OpenApi(String),
    /// A collection, an object or a subresource.
    Resource(ResourcePath),
    /// Nothing the API server serves.
    NotFound,
}

/// The parts of a resource URL.
pub(crate) struct ResourcePath {
    /// API group; empty for the core group.
    pub(crate) group: String,
    /// API version.
    pub(crate) version: String,
    /// Namespace segment, if any.
    pub(crate) namespace: Option<String>,
    /// Plural resource name.
    pub(crate) resource: String,
    /// Object name, absent for collections.
    pub(crate) name: Option<String>,
    /// Subresource such as `status` or `scale`.
    pub(crate) subresource: Option<String>,
}

/// Parses a path below the cluster prefix.
pub(crate) fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["openapi", "v3", rest @ ..] => Route::OpenApi(rest.join("/")),
        ["api"] => Route::Api,
        ["api", "v1"] => Route::GroupVersion(String::new(), "v1".to_string()),
        ["api", "v1", rest @ ..] => resource_path("", "v1", rest),
        ["apis"] => Route::Apis,
        ["apis", g] => Route::Group(g.to_string()),
        ["apis", g, v] => Route::GroupVersion(g.to_string(), v.to_string()),
        ["apis", g, v, rest @ ..] => resource_path(g, v, rest),
        _ => Route::NotFound,
    }
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> Route {
    let p = |ns: Option<&str>, res: &str, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: ns.map(str::to_string),
            resource: res.to_string(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    let core = group.is_empty();
    match rest {
        ["namespaces", ns, "status" | "finalize"] if core => {
            p(None, "namespaces", Some(ns), rest.get(2).copied())
        }
        ["namespaces", ns, res] => p(Some(ns), res, None, None),
        ["namespaces", ns, res, name] => p(Some(ns), res, Some(name), None),
        ["namespaces", ns, res, name, sub] => p(Some(ns), res, Some(name), Some(sub)),
        [res] => p(None, res, None, None),
        [res, name] => p(None, res, Some(name), None),
        [res, name, sub] => p(None, res, Some(name), Some(sub)),
        _ => Route::NotFound,
    }
}

/// The API verb of a request, as the API server's request metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    /// GET of one object or subresource.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH other than server-side apply.
    Patch,
    /// PATCH with `application/apply-patch+yaml`.
    Apply,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
    /// Anything that is not a resource: discovery, OpenAPI, version, health, unknown paths.
    Other,
}

impl Verb {
    /// The verb of a request to `route` with this method, query and content type.
    pub(crate) fn of(route: &Route, method: &Method, watch: bool, content_type: &str) -> Verb {
        let Route::Resource(p) = route else {
            return Verb::Other;
        };
        let named = p.name.is_some();
        match *method {
            Method::GET if named => Verb::Get,
            Method::GET if watch => Verb::Watch,
            Method::GET => Verb::List,
            Method::POST => Verb::Create,
            Method::PUT => Verb::Update,
            Method::PATCH if content_type.starts_with("application/apply-patch") => Verb::Apply,
            Method::PATCH => Verb::Patch,
            Method::DELETE if named => Verb::Delete,
            Method::DELETE => Verb::DeleteCollection,
            _ => Verb::Other,
        }
    }
}
