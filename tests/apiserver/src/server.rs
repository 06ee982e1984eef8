//! The HTTP side: discovery, the verbs, watches, tables, and the test hooks around
//! them. Runs on its own thread and runtime so sync and async tests can both use it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::hooks::{Effect, Fault, Hooks, Request, Verb};
use crate::resources::{Registry, Resource, VERBS};
use crate::selector::{FieldSelector, LabelSelector};
use crate::ssa::{self, Owner, Writer};
use crate::status::{self, Failure};
use crate::store::{EventType, Key, Store};
use crate::structural;

/// How the server is started.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where Velero's CRDs are (`*.yaml`).
    pub crd_dir: PathBuf,
    /// 0 picks a free port.
    pub port: u16,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Namespaces that exist from the start (besides the usual four).
    pub namespaces: Vec<String>,
    pub simulator: Option<crate::simulator::Settings>,
}

impl Config {
    pub fn new(crd_dir: impl Into<PathBuf>) -> Config {
        Config {
            crd_dir: crd_dir.into(),
            port: 0,
            bookmark_interval: Duration::from_secs(1),
            namespaces: Vec::new(),
            simulator: None,
        }
    }
}

/// Shared by every request.
pub struct Shared {
    pub registry: Registry,
    store: Mutex<Store>,
    pub hooks: Hooks,
    bookmark_interval: Duration,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A running server; stops when dropped.
pub struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(config: Config) -> Result<TestServer, StartError> {
        let registry = Registry::load(&config.crd_dir).map_err(|e| StartError(e.to_string()))?;
        let shared = Arc::new(Shared {
            registry,
            store: Mutex::new(Store::new()),
            hooks: Hooks::default(),
            bookmark_interval: config.bookmark_interval,
        });
        for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"]
            .into_iter()
            .map(str::to_string)
            .chain(config.namespaces.iter().cloned())
        {
            seed_namespace(&shared, &namespace);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| StartError(format!("cannot start a runtime: {e}")))?;
        // Bound here, not in the runtime, so that async tests can start a server too.
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| StartError(format!("cannot listen on 127.0.0.1:{}: {e}", config.port)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(shared.clone());
        let simulator = config.simulator.clone();
        let for_simulator = shared.clone();
        let thread = std::thread::Builder::new()
            .name("test-apiserver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Some(settings) = simulator {
                        tokio::spawn(crate::simulator::run(for_simulator, settings));
                    }
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    // Not a graceful shutdown: clients' pooled connections and open
                    // watches would keep it waiting. Stopping drops them all.
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| StartError(format!("cannot start the server thread: {e}")))?;
        Ok(TestServer {
            shared,
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hooks(&self) -> &Hooks {
        &self.shared.hooks
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.hooks.inject(fault);
    }

    /// A kubeconfig for this server, with `namespace` as the context's namespace.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stowage-test\n  cluster:\n    server: {url}\ncontexts:\n- name: stowage-test\n  context:\n    cluster: stowage-test\n    user: stowage-test\n    namespace: {namespace}\ncurrent-context: stowage-test\nusers:\n- name: stowage-test\n  user:\n    token: stowage-test-token\n",
            url = self.url()
        )
    }

    /// Stores an object directly, as if created by `manager` (an Update entry, like
    /// `kubectl create` or a controller would leave). Returns the stored object.
    pub fn seed(&self, object: Value, manager: &str) -> Result<Value, Failure> {
        let (index, namespace) = self.locate(&object)?;
        let request =
            Incoming::in_process(index, namespace, None, manager, "application/json", &object);
        create(&self.shared, &request).map(|r| r.body)
    }

    /// Writes as another client would with a JSON merge patch (e.g. `kubectl edit`).
    pub fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
        manager: &str,
    ) -> Result<Value, Failure> {
        let index = self
            .shared
            .registry
            .by_kind(api_version, kind)
            .ok_or_else(status::route_not_found)?;
        let request = Incoming::in_process(
            index,
            namespace.map(str::to_string),
            Some(name.to_string()),
            manager,
            "application/merge-patch+json",
            &patch,
        );
        patch_or_apply(&self.shared, &request).map(|r| r.body)
    }

    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let index = self.shared.registry.by_kind(api_version, kind)?;
        let key = (index, namespace.unwrap_or("").to_string(), name.to_string());
        self.shared.store().get(&key).cloned()
    }

    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        match self.shared.registry.by_kind(api_version, kind) {
            Some(index) => self.shared.store().list(index, namespace),
            None => Vec::new(),
        }
    }

    /// Forgets the watch history: older resource versions now get 410 Gone.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    pub fn revision(&self) -> u64 {
        self.shared.store().revision()
    }

    fn locate(&self, object: &Value) -> Result<(usize, Option<String>), Failure> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let index = self
            .shared
            .registry
            .by_kind(api_version, kind)
            .ok_or_else(|| {
                status::bad_request(format!(
                    "no kind {kind:?} is registered for version {api_version:?}"
                ))
            })?;
        let namespaced = self.shared.registry.resources[index].namespaced;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .filter(|_| namespaced)
            .map(str::to_string)
            .or_else(|| namespaced.then(|| "default".to_string()));
        Ok((index, namespace))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn seed_namespace(shared: &Shared, name: &str) {
    let Some(index) = shared.registry.by_kind("v1", "Namespace") else {
        return;
    };
    let mut store = shared.store();
    let key = (index, String::new(), name.to_string());
    if store.get(&key).is_some() {
        return;
    }
    let uid = store.new_uid();
    let object = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "uid": uid, "creationTimestamp": now(),
                     "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
    store.put(key, object, EventType::Added);
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

// ---------------------------------------------------------------------------------
// Requests

#[derive(Debug, Clone, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Result<Query, Failure> {
        match raw {
            None | Some("") => Ok(Query::default()),
            Some(raw) => serde_urlencoded::from_str(raw)
                .map(Query)
                .map_err(|e| status::bad_request(format!("invalid query: {e}"))),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// A request for a resource, parsed from its path.
struct Incoming {
    resource: usize,
    namespace: Option<String>,
    name: Option<String>,
    query: Query,
    user_agent: String,
    content_type: String,
    body: Bytes,
}

impl Incoming {
    /// A write made by the test itself, not over HTTP (seeds, simulated clients).
    fn in_process(
        resource: usize,
        namespace: Option<String>,
        name: Option<String>,
        manager: &str,
        content_type: &str,
        body: &Value,
    ) -> Incoming {
        Incoming {
            resource,
            namespace,
            name,
            query: Query::default(),
            user_agent: manager.to_string(),
            content_type: content_type.to_string(),
            body: Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
        }
    }

    /// The field manager of a non-apply write (§3).
    fn manager(&self) -> String {
        if let Some(manager) = self.query.get("fieldManager") {
            return manager.to_string();
        }
        let agent: String = self
            .user_agent
            .split('/')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect();
        if agent.is_empty() {
            "unknown".to_string()
        } else {
            agent
        }
    }
}

enum Target {
    Discovery(Value),
    Resource {
        resource: usize,
        namespace: Option<String>,
        name: Option<String>,
    },
    NotFound,
}

fn route(shared: &Shared, path: &str) -> Target {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let registry = &shared.registry;
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => {
            return Target::Discovery(json!({
                "major": "1", "minor": "36", "gitVersion": "v1.36.0-stowage-test",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
                "platform": "linux/amd64"}));
        }
        ["healthz" | "readyz" | "livez"] => return Target::Discovery(json!("ok")),
        ["openapi", "v3"] => return Target::Discovery(openapi_root(registry)),
        ["openapi", "v3", "api", version] => return openapi_group_version(registry, "", version),
        ["openapi", "v3", "apis", group, version] => {
            return openapi_group_version(registry, group, version);
        }
        ["api"] => {
            return Target::Discovery(json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}));
        }
        ["apis"] => {
            let groups: Vec<Value> = registry
                .groups()
                .iter()
                .map(|(g, v)| group_json(g, v))
                .collect();
            return Target::Discovery(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            );
        }
        ["apis", group] => {
            return match registry.groups().iter().find(|(g, _)| g == group) {
                Some((g, v)) => {
                    let mut body = group_json(g, v);
                    body["kind"] = json!("APIGroup");
                    body["apiVersion"] = json!("v1");
                    Target::Discovery(body)
                }
                None => Target::NotFound,
            };
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Target::NotFound,
    };
    if rest.is_empty() {
        let resources: Vec<Value> = registry
            .resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .map(resource_json)
            .collect();
        if resources.is_empty() {
            return Target::NotFound;
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        return Target::Discovery(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group_version, "resources": resources}));
    }
    let (namespace, plural, name) = match rest {
        ["namespaces", namespace, plural, name @ ..] if name.len() <= 1 => {
            (Some(namespace.to_string()), *plural, name.first())
        }
        [plural, name @ ..] if name.len() <= 1 => (None, *plural, name.first()),
        _ => return Target::NotFound,
    };
    let Some(resource) = registry.find(group, version, plural) else {
        return Target::NotFound;
    };
    let namespaced = registry.resources[resource].namespaced;
    if namespace.is_some() && !namespaced {
        return Target::NotFound;
    }
    if namespace.is_none() && namespaced && name.is_some() {
        return Target::NotFound;
    }
    Target::Resource {
        resource,
        namespace,
        name: name.map(|n| n.to_string()),
    }
}

/// OpenAPI v3's index: one document per group/version. kubectl reads it to learn that
/// the server validates fields itself (`fieldValidation` on PATCH).
fn openapi_root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for resource in &registry.resources {
        let gv = if resource.group.is_empty() {
            format!("api/{}", resource.version)
        } else {
            format!("apis/{}/{}", resource.group, resource.version)
        };
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}")}),
        );
    }
    json!({"paths": paths})
}

/// One group/version's OpenAPI document: each resource's PATCH and its parameters.
fn openapi_group_version(registry: &Registry, group: &str, version: &str) -> Target {
    let mut paths = Map::new();
    for resource in registry
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let scope = if resource.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let parameters: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|name| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
            .collect();
        let gvk = json!({"group": group, "version": version, "kind": resource.kind});
        paths.insert(
            format!("{prefix}{scope}/{}/{{name}}", resource.plural),
            json!({"patch": {"operationId": format!("patch{}", resource.kind), "parameters": parameters,
                             "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                             "responses": {"200": {"description": "OK"}}}}),
        );
    }
    if paths.is_empty() {
        return Target::NotFound;
    }
    Target::Discovery(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.36.0"},
                              "paths": paths, "components": {"schemas": {}}}),
    )
}

fn group_json(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

fn resource_json(resource: &Resource) -> Value {
    let mut body = json!({"name": resource.plural, "singularName": resource.singular,
        "namespaced": resource.namespaced, "kind": resource.kind, "verbs": VERBS});
    if !resource.short_names.is_empty() {
        body["shortNames"] = json!(resource.short_names);
    }
    if !resource.categories.is_empty() {
        body["categories"] = json!(resource.categories);
    }
    body
}

fn verb_of(method: &Method, target: &Target, query: &Query, content_type: &str) -> Verb {
    match (method, target) {
        (_, Target::Discovery(_) | Target::NotFound) => Verb::Discovery,
        (&Method::GET, Target::Resource { name: Some(_), .. }) => Verb::Get,
        (&Method::GET, _) if query.flag("watch") => Verb::Watch,
        (&Method::GET, _) => Verb::List,
        (&Method::POST, _) => Verb::Create,
        (&Method::PUT, _) => Verb::Update,
        (&Method::PATCH, _) if content_type.starts_with("application/apply-patch") => Verb::Apply,
        (&Method::PATCH, _) => Verb::Patch,
        (&Method::DELETE, _) => Verb::Delete,
        _ => Verb::Discovery,
    }
}

fn verb_word(verb: Verb) -> &'static str {
    match verb {
        Verb::Get => "get",
        Verb::List => "list",
        Verb::Watch => "watch",
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Patch | Verb::Apply => "patch",
        Verb::Delete => "delete",
        Verb::Discovery => "get",
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let accept = header_text(header::ACCEPT);
    let user_agent = header_text(header::USER_AGENT);
    let target = route(&shared, uri.path());
    let query = match Query::parse(uri.query()) {
        Ok(query) => query,
        Err(failure) => return respond_failure(&failure),
    };
    let verb = verb_of(&method, &target, &query, &content_type);
    let (resource_name, namespace, name) = match &target {
        Target::Resource {
            resource,
            namespace,
            name,
        } => (
            Some(shared.registry.resources[*resource].plural.clone()),
            namespace.clone(),
            name.clone(),
        ),
        _ => (None, None, None),
    };
    let mut record = Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        verb,
        resource: resource_name,
        namespace: namespace.clone(),
        name,
        user_agent: user_agent.clone(),
        status: 0,
    };
    let mut drop_watch_after = None;
    let mut delay_answer = None;
    match shared.hooks.take_fault(&record) {
        Some(Effect::Status(code)) => {
            let resource = match &target {
                Target::Resource { resource, .. } => Some(&shared.registry.resources[*resource]),
                _ => None,
            };
            let failure = status::injected(code, verb_word(verb), resource, namespace.as_deref());
            record.status = failure.code;
            shared.hooks.record(record);
            return respond_failure(&failure);
        }
        Some(Effect::TooManyRequests {
            retry_after_seconds,
        }) => {
            let failure = status::too_many_requests(retry_after_seconds);
            record.status = 429;
            shared.hooks.record(record);
            return respond_failure(&failure);
        }
        Some(Effect::Latency(delay)) => delay_answer = Some(delay),
        Some(Effect::DropWatch { after_events }) => drop_watch_after = Some(after_events),
        None => {}
    }
    let response = match target {
        Target::Discovery(Value::String(text)) => plain(200, text),
        Target::Discovery(body) if method == Method::GET => json_response(200, &body),
        Target::Discovery(_) => respond_failure(&status::method_not_allowed(method.as_str())),
        Target::NotFound => respond_failure(&status::route_not_found()),
        Target::Resource {
            resource,
            namespace,
            name,
        } => {
            let request = Incoming {
                resource,
                namespace,
                name,
                query,
                user_agent,
                content_type,
                body,
            };
            serve(&shared, verb, &request, &accept, drop_watch_after)
        }
    };
    record.status = response.status().as_u16();
    shared.hooks.record(record);
    // The work is done and logged; only the answer is late, so a client that gives up
    // has to cope with a write that happened anyway.
    if let Some(delay) = delay_answer {
        tokio::time::sleep(delay).await;
    }
    response
}

fn serve(
    shared: &Arc<Shared>,
    verb: Verb,
    request: &Incoming,
    accept: &str,
    drop_watch_after: Option<usize>,
) -> Response {
    let table = accept.contains("as=Table");
    let result = match verb {
        Verb::Get => get(shared, request).map(|object| {
            let body = if table {
                table_of(shared, request, &[object], None)
            } else {
                object
            };
            reply(200, body)
        }),
        Verb::List => list(shared, request).map(|body| {
            let body = if table {
                let items = body["items"].as_array().cloned().unwrap_or_default();
                table_of(shared, request, &items, Some(&body["metadata"]))
            } else {
                body
            };
            reply(200, body)
        }),
        Verb::Watch => return watch(shared, request, drop_watch_after),
        Verb::Create => create(shared, request),
        Verb::Update => update(shared, request),
        Verb::Patch | Verb::Apply => patch_or_apply(shared, request),
        Verb::Delete => delete(shared, request),
        Verb::Discovery => Err(status::route_not_found()),
    };
    match result {
        Ok(Reply {
            code,
            body,
            dropped,
        }) => {
            let mut response = json_response(code, &body);
            for field in dropped {
                let warning = format!("299 - \"unknown field \\\"{field}\\\"\"");
                if let Ok(value) = HeaderValue::from_str(&warning) {
                    response.headers_mut().append(header::WARNING, value);
                }
            }
            response
        }
        Err(failure) => respond_failure(&failure),
    }
}

fn plain(code: u16, text: String) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(text))
        .unwrap_or_default()
}

fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap_or_default()
}

fn respond_failure(failure: &Failure) -> Response {
    let mut response = json_response(failure.code, &failure.body);
    if let Some(seconds) = failure.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

// ---------------------------------------------------------------------------------
// Reads

fn resource<'a>(shared: &'a Shared, request: &Incoming) -> &'a Resource {
    &shared.registry.resources[request.resource]
}

fn key(request: &Incoming, name: &str) -> Key {
    (
        request.resource,
        request.namespace.clone().unwrap_or_default(),
        name.to_string(),
    )
}

fn get(shared: &Shared, request: &Incoming) -> Result<Value, Failure> {
    let name = request.name.as_deref().unwrap_or_default();
    shared
        .store()
        .get(&key(request, name))
        .cloned()
        .ok_or_else(|| status::not_found(resource(shared, request), name))
}

fn selectors(request: &Incoming) -> Result<(LabelSelector, FieldSelector), Failure> {
    let labels = LabelSelector::parse(request.query.get("labelSelector").unwrap_or(""))
        .map_err(status::bad_request)?;
    let fields = FieldSelector::parse(request.query.get("fieldSelector").unwrap_or(""))
        .map_err(status::bad_request)?;
    Ok((labels, fields))
}

fn list(shared: &Shared, request: &Incoming) -> Result<Value, Failure> {
    let resource = resource(shared, request);
    let limit = request
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut store = shared.store();
    let (revision, items, offset) = match request.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (id, offset) = decode_continue(token).ok_or_else(|| {
                status::bad_request("continue key is not valid: illegal base64 data")
            })?;
            let (revision, items) = store.snapshot(id).ok_or_else(|| {
                status::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response to get a consistent snapshot.")
            })?;
            (revision, items, offset)
        }
        None => {
            let (labels, fields) = selectors(request)?;
            let items: Vec<Value> = store
                .list(request.resource, request.namespace.as_deref())
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            (store.revision(), Arc::new(items), 0)
        }
    };
    let end = limit.map_or(items.len(), |l| (offset + l).min(items.len()));
    let page: Vec<Value> = items[offset.min(end)..end].to_vec();
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if end < items.len() {
        let id = match request.query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => decode_continue(token).map(|(id, _)| id).unwrap_or_default(),
            None => store.keep_snapshot(items.to_vec()),
        };
        metadata["continue"] = json!(encode_continue(id, end));
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    Ok(
        json!({"kind": resource.list_kind, "apiVersion": resource.api_version(),
              "metadata": metadata, "items": page}),
    )
}

fn encode_continue(id: u64, offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"s\":{id},\"o\":{offset}}}"))
}

fn decode_continue(token: &str) -> Option<(u64, usize)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    Some((value["s"].as_u64()?, value["o"].as_u64()? as usize))
}

/// The table `kubectl get` asks for: the CRD's printer columns, or name and age.
fn table_of(
    shared: &Shared,
    request: &Incoming,
    items: &[Value],
    list_meta: Option<&Value>,
) -> Value {
    let resource = resource(shared, request);
    let mut definitions = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    let columns: Vec<(String, String, String, String)> = if resource.columns.is_empty() {
        vec![(
            "Age".into(),
            "date".into(),
            ".metadata.creationTimestamp".into(),
            String::new(),
        )]
    } else {
        resource
            .columns
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.kind.clone(),
                    c.json_path.clone(),
                    c.description.clone(),
                )
            })
            .collect()
    };
    for (name, kind, _, description) in &columns {
        definitions.push(json!({"name": name, "type": kind, "format": "",
            "description": description, "priority": 0}));
    }
    let include_object = request.query.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut cells = vec![item["metadata"]["name"].clone()];
            for (_, kind, path, _) in &columns {
                let value = json_path(item, path);
                cells.push(match (kind.as_str(), value) {
                    ("date", Some(Value::String(time))) => json!(age(time)),
                    (_, Some(value)) => value.clone(),
                    (_, None) => Value::Null,
                });
            }
            let object = match include_object {
                "Object" => item.clone(),
                "None" => Value::Null,
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": item["metadata"]}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let metadata = list_meta
        .cloned()
        .unwrap_or_else(|| json!({"resourceVersion": items.first().map(|i| i["metadata"]["resourceVersion"].clone())}));
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
           "columnDefinitions": definitions, "rows": rows})
}

fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = object;
    for part in path.trim_start_matches('.').split('.') {
        node = node.get(part)?;
    }
    (!node.is_null()).then_some(node)
}

fn age(time: &str) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(time) else {
        return "<invalid>".to_string();
    };
    let seconds = (chrono::Utc::now() - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

// ---------------------------------------------------------------------------------
// Watch

fn watch(shared: &Arc<Shared>, request: &Incoming, drop_after: Option<usize>) -> Response {
    let (labels, fields) = match selectors(request) {
        Ok(s) => s,
        Err(failure) => return respond_failure(&failure),
    };
    let resource = resource(shared, request);
    let bookmarks = request.query.flag("allowWatchBookmarks");
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let namespace = request.namespace.clone();
    let from = request
        .query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
        .map(|rv| rv.parse::<u64>().unwrap_or(0));
    let start = {
        let store = shared.store();
        match from {
            None => WatchStart::Events {
                backlog: store
                    .list(request.resource, namespace.as_deref())
                    .into_iter()
                    .map(|o| (EventType::Added, o))
                    .collect(),
                receiver: store.subscribe(),
                revision: store.revision(),
            },
            Some(revision) => match store.watch_from(request.resource, revision) {
                Some((past, receiver)) => WatchStart::Events {
                    backlog: past
                        .into_iter()
                        .filter(|e| namespace.as_ref().is_none_or(|ns| &e.namespace == ns))
                        .map(|e| (e.kind, (*e.object).clone()))
                        .collect(),
                    receiver,
                    revision: store.revision(),
                },
                None => WatchStart::Gone(
                    status::expired(format!(
                        "too old resource version: {revision} ({})",
                        store.compacted()
                    ))
                    .body,
                ),
            },
        }
    };
    let (sender, mut events) = tokio::sync::mpsc::channel::<Bytes>(256);
    let kind = resource.kind.clone();
    let api_version = resource.api_version();
    let resource_index = request.resource;
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        let line = |kind: &str, object: &Value| {
            let mut text =
                serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
            text.push(b'\n');
            Bytes::from(text)
        };
        let (backlog, mut receiver, mut last_revision) = match start {
            // A too-old watch is answered, like the real server's, with 200 and one
            // ERROR event carrying the 410.
            WatchStart::Gone(status) => {
                let _ = sender.send(line("ERROR", &status)).await;
                return;
            }
            WatchStart::Events {
                backlog,
                receiver,
                revision,
            } => (backlog, receiver, revision),
        };
        let mut sent = 0usize;
        let over = |sent: usize| drop_after.is_some_and(|n| sent >= n);
        for (event, object) in backlog {
            if labels.matches(&object) && fields.matches(&object) {
                if over(sent) || sender.send(line(event.as_str(), &object)).await.is_err() {
                    return;
                }
                sent += 1;
            }
            if let Some(rv) = revision_of(&object) {
                last_revision = last_revision.max(rv);
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = ticker.tick(), if bookmarks => {
                    let bookmark = json!({"kind": kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": last_revision.to_string()}});
                    if sender.send(line("BOOKMARK", &bookmark)).await.is_err() {
                        return;
                    }
                }
                event = receiver.recv() => {
                    let Ok(event) = event else { return };
                    if event.revision <= last_revision {
                        continue;
                    }
                    last_revision = event.revision;
                    if event.resource != resource_index
                        || namespace.as_ref().is_some_and(|ns| &event.namespace != ns)
                        || !(labels.matches(&event.object) && fields.matches(&event.object))
                    {
                        continue;
                    }
                    if over(sent) || sender.send(line(event.kind.as_str(), &event.object)).await.is_err() {
                        return;
                    }
                    sent += 1;
                }
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        events
            .poll_recv(cx)
            .map(|b| b.map(Ok::<Bytes, std::io::Error>))
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

enum WatchStart {
    Gone(Value),
    Events {
        backlog: Vec<(EventType, Value)>,
        receiver: tokio::sync::broadcast::Receiver<crate::store::Event>,
        revision: u64,
    },
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn revision_of(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

// ---------------------------------------------------------------------------------
// Writes

fn parse_body(request: &Incoming) -> Result<Value, Failure> {
    if let Ok(value) = serde_json::from_slice::<Value>(&request.body) {
        return Ok(value);
    }
    if request.content_type.contains("yaml") {
        let text = std::str::from_utf8(&request.body)
            .map_err(|_| status::bad_request("the body is not UTF-8"))?;
        return serde_saphyr::from_str(text)
            .map_err(|e| status::bad_request(format!("error decoding YAML: {e}")));
    }
    Err(status::bad_request(
        "the body of the request is not valid JSON".to_string(),
    ))
}

fn check_type(resource: &Resource, body: &Value) -> Result<(), Failure> {
    let api_version = body["apiVersion"].as_str().unwrap_or_default();
    let kind = body["kind"].as_str().unwrap_or_default();
    if api_version != resource.api_version() || kind != resource.kind {
        return Err(status::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            resource.api_version()
        ))
        .tap_kind(kind, &resource.kind));
    }
    Ok(())
}

trait KindMessage {
    fn tap_kind(self, kind: &str, expected: &str) -> Self;
}

impl KindMessage for Failure {
    fn tap_kind(mut self, kind: &str, expected: &str) -> Self {
        if kind != expected {
            self.body["message"] =
                json!(format!("invalid object type: {kind}, expected {expected}"));
        }
        self
    }
}

/// Namespace in the body must match the URL; an empty one takes the URL's.
fn settle_namespace(
    resource: &Resource,
    request: &Incoming,
    body: &mut Value,
) -> Result<(), Failure> {
    if !resource.namespaced {
        if let Some(meta) = body["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        return Ok(());
    }
    let url = request.namespace.as_deref().unwrap_or_default();
    match body["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() && ns != url => Err(status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            body["metadata"]["namespace"] = json!(url);
            Ok(())
        }
    }
}

fn namespace_exists(shared: &Shared, store: &Store, namespace: &str) -> bool {
    shared
        .registry
        .by_kind("v1", "Namespace")
        .is_some_and(|ns| {
            store
                .get(&(ns, String::new(), namespace.to_string()))
                .is_some()
        })
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// What the server does to every written object before storing it: Secret
/// `stringData` folded into `data`, a CRD's pruning, defaults and validation.
fn prepare(
    resource: &Resource,
    name: &str,
    object: &mut Value,
    strict: bool,
) -> Result<Vec<String>, Failure> {
    let mut errors = Vec::new();
    if !is_dns_subdomain(name) {
        errors.push(structural::FieldError {
            reason: "FieldValueInvalid",
            field: "metadata.name".to_string(),
            message: format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
        });
    }
    let mut pruned = Vec::new();
    if resource.kind == "Secret" && resource.group.is_empty() {
        fold_string_data(object);
        if object.get("type").is_none_or(Value::is_null) {
            object["type"] = json!("Opaque");
        }
        for key in object["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                errors.push(structural::FieldError {
                    reason: "FieldValueInvalid",
                    field: format!("data[{key}]"),
                    message: format!("Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
                });
            }
        }
    }
    if let Some(schema) = &resource.structural {
        pruned = structural::prune(schema, object);
        if strict && !pruned.is_empty() {
            let unknown: Vec<String> = pruned
                .iter()
                .map(|p| format!("unknown field \"{p}\""))
                .collect();
            return Err(status::bad_request(format!(
                "strict decoding error: {}",
                unknown.join(", ")
            )));
        }
        structural::default(schema, object);
        errors.extend(structural::validate(schema, object));
    }
    if !errors.is_empty() {
        return Err(status::invalid(resource, name, &errors));
    }
    Ok(pruned)
}

fn fold_string_data(object: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(string_data)) =
        object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !object["data"].is_object() {
        object["data"] = json!({});
    }
    for (key, value) in string_data {
        let text = value.as_str().unwrap_or_default();
        object["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// A successful answer; `dropped` lists the unknown fields a non-strict write pruned,
/// which the real server reports in `Warning` headers.
struct Reply {
    code: u16,
    body: Value,
    dropped: Vec<String>,
}

fn reply(code: u16, body: Value) -> Reply {
    Reply {
        code,
        body,
        dropped: Vec::new(),
    }
}

fn strict(request: &Incoming) -> bool {
    request.query.get("fieldValidation") == Some("Strict")
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    object
}

/// Owners compared without their timestamps: a write that only moves times is no write.
fn same_owners(a: &[Owner], b: &[Owner]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.manager == y.manager
                && x.operation == y.operation
                && x.api_version == y.api_version
                && x.fields == y.fields
        })
}

/// Everything but metadata differs: what bumps `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
        }
        v
    };
    strip(old) != strip(new)
}

fn create(shared: &Shared, request: &Incoming) -> Result<Reply, Failure> {
    let resource = resource(shared, request);
    let mut body = parse_body(request)?;
    check_type(resource, &body)?;
    settle_namespace(resource, request, &mut body)?;
    if body["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        match body["metadata"]["generateName"].as_str() {
            Some(prefix) => {
                let suffix = shared.store().new_uid();
                body["metadata"]["name"] =
                    json!(format!("{prefix}{}", &suffix[suffix.len() - 5..]));
            }
            None => {
                return Err(status::invalid(
                    resource,
                    "",
                    &[structural::FieldError {
                        reason: "FieldValueRequired",
                        field: "metadata.name".to_string(),
                        message: "Required value: name or generateName is required".to_string(),
                    }],
                ));
            }
        }
    }
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pruned = prepare(resource, &name, &mut body, strict(request))?;
    let base = ssa::from_managed_fields(body["metadata"].get("managedFields"));
    let mut store = shared.store();
    if let Some(ns) = &request.namespace
        && !namespace_exists(shared, &store, ns)
    {
        return Err(status::namespace_not_found(ns));
    }
    let key = key(request, &name);
    if store.get(&key).is_some() {
        return Err(status::already_exists(resource, &name));
    }
    let meta = body["metadata"]
        .as_object_mut()
        .ok_or_else(|| status::bad_request("metadata must be an object"))?;
    for field in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "managedFields",
        "selfLink",
    ] {
        meta.remove(field);
    }
    let api_version = resource.api_version();
    let time = now();
    let owners = ssa::update(
        &json!({}),
        &body,
        &base,
        Writer {
            manager: &request.manager(),
            api_version: &api_version,
            now: &time,
        },
        &resource.ownership,
    );
    body["metadata"]["uid"] = json!(store.new_uid());
    body["metadata"]["creationTimestamp"] = json!(time);
    if resource.has_generation {
        body["metadata"]["generation"] = json!(1);
    }
    if !owners.is_empty() {
        body["metadata"]["managedFields"] = ssa::to_managed_fields(&owners);
    }
    let body = if request.query.dry_run() {
        body
    } else {
        store.put(key, body, EventType::Added)
    };
    Ok(Reply {
        code: 201,
        body,
        dropped: pruned,
    })
}

fn update(shared: &Shared, request: &Incoming) -> Result<Reply, Failure> {
    let mut body = parse_body(request)?;
    write_whole(shared, request, &mut body, None)
}

/// A PUT, or the result of a merge or JSON patch: the writer owns what it changed.
fn write_whole(
    shared: &Shared,
    request: &Incoming,
    body: &mut Value,
    patched_from: Option<&Value>,
) -> Result<Reply, Failure> {
    let resource = resource(shared, request);
    check_type(resource, body)?;
    settle_namespace(resource, request, body)?;
    let name = request.name.clone().unwrap_or_default();
    if body["metadata"]["name"].as_str() != Some(name.as_str()) {
        return Err(status::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            body["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    let pruned = prepare(resource, &name, body, strict(request))?;
    let mut store = shared.store();
    let key = key(request, &name);
    let live = store
        .get(&key)
        .cloned()
        .ok_or_else(|| status::not_found(resource, &name))?;
    match body["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
    {
        Some(rv) if Some(rv) != live["metadata"]["resourceVersion"].as_str() => {
            return Err(status::stale(resource, &name));
        }
        None if patched_from.is_none() && resource.is_custom() => {
            return Err(status::invalid(
                resource,
                &name,
                &[structural::FieldError {
                    reason: "FieldValueInvalid",
                    field: "metadata.resourceVersion".to_string(),
                    message: "Invalid value: 0x0: must be specified for an update".to_string(),
                }],
            ));
        }
        _ => {}
    }
    let body_owners = body["metadata"].get("managedFields").cloned();
    let reset = body_owners
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|list| list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty));
    let base = match ssa::from_managed_fields(body_owners.as_ref()) {
        owners if !owners.is_empty() => owners,
        _ => ssa::from_managed_fields(live["metadata"].get("managedFields")),
    };
    // Server-owned metadata comes from the live object, whatever the body says.
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "resourceVersion",
    ] {
        match live["metadata"].get(field) {
            Some(value) => body["metadata"][field] = value.clone(),
            None => {
                if let Some(meta) = body["metadata"].as_object_mut() {
                    meta.remove(field);
                }
            }
        }
    }
    let old = without_managed_fields(&live);
    let mut new = without_managed_fields(body);
    let api_version = resource.api_version();
    let time = now();
    let owners = if reset {
        Vec::new()
    } else {
        ssa::update(
            &old,
            &new,
            &base,
            Writer {
                manager: &request.manager(),
                api_version: &api_version,
                now: &time,
            },
            &resource.ownership,
        )
    };
    if resource.has_generation && spec_changed(&old, &new) {
        let generation = live["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        new["metadata"]["generation"] = json!(generation);
    }
    let live_owners = ssa::from_managed_fields(live["metadata"].get("managedFields"));
    if new == old && same_owners(&owners, &live_owners) {
        return Ok(Reply {
            code: 200,
            body: live,
            dropped: pruned,
        });
    }
    if !owners.is_empty() {
        new["metadata"]["managedFields"] = ssa::to_managed_fields(&owners);
    }
    let body = if request.query.dry_run() {
        new
    } else {
        store_or_finish_deleting(&mut store, key, new)
    };
    Ok(Reply {
        code: 200,
        body,
        dropped: pruned,
    })
}

/// An object being deleted whose last finalizer went is removed, not stored.
fn store_or_finish_deleting(store: &mut Store, key: Key, object: Value) -> Value {
    let deleting = object["metadata"].get("deletionTimestamp").is_some();
    let finalizers = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if deleting && !finalizers {
        store.put(key.clone(), object, EventType::Modified);
        return store.remove(&key).unwrap_or_default();
    }
    store.put(key, object, EventType::Modified)
}

fn patch_or_apply(shared: &Shared, request: &Incoming) -> Result<Reply, Failure> {
    let content_type = request
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let resource = resource(shared, request);
    if content_type != "application/apply-patch+yaml" && request.query.get("force").is_some() {
        return Err(status::invalid_options(
            "PatchOptions.meta.k8s.io",
            "force",
            "FieldValueForbidden",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    let name = request.name.clone().unwrap_or_default();
    match content_type {
        "application/apply-patch+yaml" => apply(shared, request),
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            if content_type.starts_with("application/strategic") && resource.is_custom() {
                return Err(status::unsupported_media_type(content_type));
            }
            let patch = parse_body(request)?;
            let live = get(shared, request)?;
            let mut merged = merge_patch(&live, &patch);
            write_whole(shared, request, &mut merged, Some(&live))
        }
        "application/json-patch+json" => {
            let patch = parse_body(request)?;
            let live = get(shared, request)?;
            let mut patched = json_patch(&live, &patch).map_err(|e| {
                status::invalid(
                    resource,
                    &name,
                    &[structural::FieldError {
                        reason: "FieldValueInvalid",
                        field: String::new(),
                        message: e,
                    }],
                )
            })?;
            write_whole(shared, request, &mut patched, Some(&live))
        }
        other => Err(status::unsupported_media_type(other)),
    }
}

/// RFC 7386.
fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch_map) = patch else {
        return patch.clone();
    };
    let mut result = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch_map {
        if value.is_null() {
            result.remove(key);
        } else {
            let merged = merge_patch(result.get(key).unwrap_or(&Value::Null), value);
            result.insert(key.clone(), merged);
        }
    }
    Value::Object(result)
}

/// RFC 6902, the operations kubectl and controllers use.
fn json_patch(target: &Value, patch: &Value) -> Result<Value, String> {
    let mut document = target.clone();
    for operation in patch.as_array().ok_or("a JSON patch must be a list")? {
        let op = operation["op"].as_str().unwrap_or_default();
        let path = operation["path"]
            .as_str()
            .ok_or("a JSON patch operation needs a path")?;
        let (parent_path, last) = path.rsplit_once('/').ok_or("invalid JSON pointer")?;
        let last = last.replace("~1", "/").replace("~0", "~");
        match op {
            "test" => {
                if document.pointer(path) != Some(&operation["value"]) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "add" | "replace" => {
                let parent = document
                    .pointer_mut(parent_path)
                    .ok_or_else(|| format!("missing path {parent_path}"))?;
                match parent {
                    Value::Object(map) => {
                        if op == "replace" && !map.contains_key(&last) {
                            return Err(format!(
                                "replace operation does not apply: doc is missing key: {path}"
                            ));
                        }
                        map.insert(last, operation["value"].clone());
                    }
                    Value::Array(items) => {
                        let value = operation["value"].clone();
                        if last == "-" {
                            items.push(value);
                        } else {
                            let index: usize =
                                last.parse().map_err(|_| format!("bad index in {path}"))?;
                            match (op, index <= items.len()) {
                                ("add", true) => items.insert(index, value),
                                ("replace", _) if index < items.len() => items[index] = value,
                                _ => return Err(format!("index out of range in {path}")),
                            }
                        }
                    }
                    _ => return Err(format!("cannot add under {parent_path}")),
                }
            }
            "remove" => {
                let parent = document
                    .pointer_mut(parent_path)
                    .ok_or_else(|| format!("missing path {parent_path}"))?;
                let removed = match parent {
                    Value::Object(map) => map.remove(&last).is_some(),
                    Value::Array(items) => match last.parse::<usize>() {
                        Ok(i) if i < items.len() => {
                            items.remove(i);
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !removed {
                    return Err(format!(
                        "remove operation does not apply: doc is missing path: {path}"
                    ));
                }
            }
            other => return Err(format!("unsupported JSON patch operation {other:?}")),
        }
    }
    Ok(document)
}

fn apply(shared: &Shared, request: &Incoming) -> Result<Reply, Failure> {
    let resource = resource(shared, request);
    let Some(manager) = request.query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(status::invalid_options(
            "PatchOptions.meta.k8s.io",
            "fieldManager",
            "FieldValueRequired",
            "Required value: is required for apply patch",
        ));
    };
    let force = request.query.flag("force");
    let mut config = parse_body(request)?;
    check_type(resource, &config)?;
    if config["metadata"]
        .get("managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(status::bad_request("metadata.managedFields must be nil"));
    }
    let name = request.name.clone().unwrap_or_default();
    if config["metadata"]["name"].as_str() != Some(name.as_str()) {
        return Err(status::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            config["metadata"]["name"].as_str().unwrap_or_default()
        )));
    }
    settle_namespace(resource, request, &mut config)?;
    if let Some(schema) = &resource.structural {
        let mut probe = config.clone();
        let unknown = structural::prune(schema, &mut probe);
        if let Some(first) = unknown.first() {
            let path = format!(".{first}");
            return Err(if strict(request) {
                status::bad_request(format!("{path}: field not declared in schema"))
            } else {
                status::internal(format!(
                    "failed to create typed patch object ({}, Kind={}): {path}: field not declared in schema",
                    resource.api_version(),
                    resource.kind
                ))
            });
        }
    }
    let mut store = shared.store();
    let key = key(request, &name);
    let live = store.get(&key).cloned();
    if live.is_none()
        && let Some(ns) = &request.namespace
        && !namespace_exists(shared, &store, ns)
    {
        return Err(status::namespace_not_found(ns));
    }
    if let Some(uid) = config["metadata"]["uid"].as_str() {
        let live_uid = live
            .as_ref()
            .and_then(|l| l["metadata"]["uid"].as_str())
            .unwrap_or_default();
        if uid != live_uid {
            return Err(status::precondition(resource, &name, "UID", uid, live_uid));
        }
    }
    if let Some(rv) = config["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
        && live
            .as_ref()
            .and_then(|l| l["metadata"]["resourceVersion"].as_str())
            != Some(rv)
    {
        return Err(status::stale(resource, &name));
    }
    let base = live
        .as_ref()
        .map(without_managed_fields)
        .unwrap_or_else(|| json!({}));
    let owners = ssa::from_managed_fields(
        live.as_ref()
            .and_then(|l| l["metadata"].get("managedFields")),
    );
    let api_version = resource.api_version();
    let time = now();
    let applied = ssa::apply(
        &base,
        &owners,
        &config,
        Writer {
            manager,
            api_version: &api_version,
            now: &time,
        },
        force,
        &resource.ownership,
    )
    .map_err(|conflicts| status::apply_conflict(&conflicts))?;
    let mut object = applied.object;
    prepare(resource, &name, &mut object, false)?;
    match &live {
        None => {
            object["metadata"]["uid"] = json!(store.new_uid());
            object["metadata"]["creationTimestamp"] = json!(time);
            if resource.has_generation {
                object["metadata"]["generation"] = json!(1);
            }
        }
        Some(live) if resource.has_generation && spec_changed(&base, &object) => {
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            object["metadata"]["generation"] = json!(generation);
        }
        Some(_) => {}
    }
    if let Some(live) = &live
        && object == base
        && same_owners(&applied.owners, &owners)
    {
        return Ok(reply(200, live.clone()));
    }
    if !applied.owners.is_empty() {
        object["metadata"]["managedFields"] = ssa::to_managed_fields(&applied.owners);
    }
    let code = if live.is_some() { 200 } else { 201 };
    if request.query.dry_run() {
        return Ok(reply(code, object));
    }
    let kind = if live.is_some() {
        EventType::Modified
    } else {
        EventType::Added
    };
    Ok(reply(code, store.put(key, object, kind)))
}

fn delete(shared: &Shared, request: &Incoming) -> Result<Reply, Failure> {
    let resource = resource(shared, request);
    let name = request.name.clone().unwrap_or_default();
    let options: Value = if request.body.is_empty() {
        json!({})
    } else {
        parse_body(request)?
    };
    let mut store = shared.store();
    let key = key(request, &name);
    let live = store
        .get(&key)
        .cloned()
        .ok_or_else(|| status::not_found(resource, &name))?;
    for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(wanted) = options["preconditions"][field].as_str() {
            let actual = live["metadata"][field].as_str().unwrap_or_default();
            if wanted != actual {
                return Err(status::precondition(resource, &name, what, wanted, actual));
            }
        }
    }
    let dry_run = request.query.dry_run()
        || options["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    let finalizers = live["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if finalizers {
        if live["metadata"].get("deletionTimestamp").is_some() || dry_run {
            return Ok(reply(200, live));
        }
        let mut marked = live.clone();
        marked["metadata"]["deletionTimestamp"] = json!(now());
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        return Ok(reply(200, store.put(key, marked, EventType::Modified)));
    }
    if dry_run {
        return Ok(reply(200, live));
    }
    if resource.kind == "Namespace" && resource.group.is_empty() {
        let doomed: Vec<Key> = shared
            .registry
            .resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.namespaced)
            .flat_map(|(index, _)| {
                let namespace = name.clone();
                store
                    .list(index, Some(&name))
                    .into_iter()
                    .map(move |o| (index, namespace.clone(), name_of(&o)))
            })
            .collect();
        for key in doomed {
            store.remove(&key);
        }
    }
    let removed = store.remove(&key).unwrap_or(live);
    if resource.is_custom() {
        Ok(reply(200, removed))
    } else {
        Ok(reply(
            200,
            status::deleted(resource, &name, &removed["metadata"]["uid"]),
        ))
    }
}

/// Writes an object on the server's behalf (the Velero simulator): an Update by
/// `manager` of the object as `change` leaves it; nothing is written if it is unchanged.
pub(crate) fn write_as(
    shared: &Shared,
    key: &Key,
    manager: &str,
    change: impl FnOnce(&mut Value),
) -> Option<Value> {
    let resource = &shared.registry.resources[key.0];
    let mut store = shared.store();
    let live = store.get(key)?.clone();
    let old = without_managed_fields(&live);
    let mut new = old.clone();
    change(&mut new);
    if new == old {
        return None;
    }
    let api_version = resource.api_version();
    let time = now();
    let owners = ssa::update(
        &old,
        &new,
        &ssa::from_managed_fields(live["metadata"].get("managedFields")),
        Writer {
            manager,
            api_version: &api_version,
            now: &time,
        },
        &resource.ownership,
    );
    if resource.has_generation && spec_changed(&old, &new) {
        let generation = live["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        new["metadata"]["generation"] = json!(generation);
    }
    if !owners.is_empty() {
        new["metadata"]["managedFields"] = ssa::to_managed_fields(&owners);
    }
    Some(store.put(key.clone(), new, EventType::Modified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        let patch = json!({"a": "z", "c": {"f": null}});
        assert_eq!(
            merge_patch(&target, &patch),
            json!({"a": "z", "c": {"d": "e"}})
        );
    }

    #[test]
    fn json_patch_operations() {
        let target = json!({"spec": {"list": [1, 2], "x": 1}});
        let patch = json!([
            {"op": "test", "path": "/spec/x", "value": 1},
            {"op": "replace", "path": "/spec/x", "value": 2},
            {"op": "add", "path": "/spec/list/-", "value": 3},
            {"op": "remove", "path": "/spec/list/0"},
            {"op": "add", "path": "/spec/y", "value": "new"}
        ]);
        assert_eq!(
            json_patch(&target, &patch).unwrap(),
            json!({"spec": {"list": [2, 3], "x": 2, "y": "new"}})
        );
        assert!(
            json_patch(
                &target,
                &json!([{"op": "test", "path": "/spec/x", "value": 9}])
            )
            .is_err()
        );
    }

    #[test]
    fn continue_tokens_round_trip() {
        assert_eq!(decode_continue(&encode_continue(7, 500)), Some((7, 500)));
        assert_eq!(decode_continue("not base64!"), None);
    }
}
