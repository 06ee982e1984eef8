//! A proxy between stowage and the real API server, for what a real server cannot be
//! asked for: it logs every request (verb, resource, name, status) and injects faults
//! into the ones that match a route — an error status without serving the request, a
//! 429 with Retry-After, an answer delayed after the request was served, a watch cut
//! after some events. Everything else is forwarded as it came, and the real server's
//! answer is streamed back.
//!
//! stowage talks plain HTTP to the proxy; the proxy talks TLS to the API server as the
//! stack's admin.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request as AxumRequest, State};
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::json;

use crate::hooks::{Effect, Fault, Hooks, Request, Verb};
use crate::stack::{Stack, admin_config};

pub struct Proxy {
    url: String,
    hooks: Arc<Hooks>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Upstream {
    client: kube::Client,
    hooks: Arc<Hooks>,
    /// Impersonation headers sent with every request: the server then authorizes,
    /// and audits, each request as that user.
    impersonate: Vec<(String, String)>,
    /// Answers to reads, by URL, for `Effect::Remote`.
    recordings: std::sync::Mutex<std::collections::HashMap<String, Recorded>>,
}

#[derive(Clone)]
struct Recorded {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Proxy {
    /// Starts a proxy to the stack's API server on its own thread and runtime.
    pub fn start(stack: &'static Stack) -> Proxy {
        Proxy::start_with(stack, Vec::new())
    }

    /// A proxy that sends every request as the ServiceAccount `name` of `namespace`
    /// (impersonated by the admin), so RBAC and the audit log see that account.
    pub fn start_as_service_account(stack: &'static Stack, namespace: &str, name: &str) -> Proxy {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let mut headers = vec![("Impersonate-User".to_string(), user)];
        for group in [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_string(),
        ] {
            headers.push(("Impersonate-Group".to_string(), group));
        }
        Proxy::start_with(stack, headers)
    }

    fn start_with(stack: &'static Stack, impersonate: Vec<(String, String)>) -> Proxy {
        let hooks = Arc::new(Hooks::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_hooks = hooks.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the proxy's runtime");
            runtime.block_on(async move {
                let client = kube::Client::try_from(admin_config(stack).await)
                    .expect("a client for the API server");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("a port for the proxy");
                let address = listener.local_addr().expect("the proxy's address");
                let state = Arc::new(Upstream {
                    client,
                    hooks: thread_hooks,
                    impersonate,
                    recordings: Default::default(),
                });
                let app = Router::new().fallback(forward).with_state(state);
                ready_tx
                    .send(format!("http://{address}"))
                    .expect("the test waits for the proxy");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = shutdown_rx.await;
                    })
                    .await
                    .expect("the proxy serves");
            });
        });
        let url = ready_rx.recv().expect("the proxy started");
        Proxy {
            url,
            hooks,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    pub fn inject(&self, fault: Fault) {
        self.hooks.inject(fault);
    }

    /// A kubeconfig that reaches the API server through this proxy, defaulting to
    /// `namespace`. It carries no credentials: the proxy authenticates upstream.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        let config = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy", "namespace": namespace}}],
            "current-context": "proxy",
        });
        serde_json::to_string_pretty(&config).expect("JSON")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Long-running watches keep a graceful shutdown waiting; the thread is left to
        // end with the test process rather than block the test.
        drop(self.thread.take());
    }
}

/// What a request is, from its method, path, query and content type.
pub fn classify(
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
) -> (Verb, Option<String>, Option<String>, Option<String>) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        other => (None, other),
    };
    let (resource, name) = match rest {
        [] => return (Verb::Discovery, None, None, None),
        [resource] => (Some(resource.to_string()), None),
        [resource, name, ..] => (Some(resource.to_string()), Some(name.to_string())),
    };
    let watching = query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    let verb = match *method {
        Method::GET if name.is_some() => Verb::Get,
        Method::GET if watching => Verb::Watch,
        Method::GET => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH if content_type.starts_with("application/apply-patch") => Verb::Apply,
        Method::PATCH => Verb::Patch,
        Method::DELETE => Verb::Delete,
        _ => Verb::Discovery,
    };
    (verb, resource, namespace, name)
}

/// A Kubernetes `Status` body for an injected failure; a 404 as the real server
/// answers for a resource it does not serve (plain text, no Status).
fn failure(code: u16, retry_after: Option<u64>) -> Response {
    if code == 404 {
        let mut response = Response::new(Body::from("404 page not found\n"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return response;
    }
    let (reason, message) = match code {
        409 => ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again".to_string()),
        429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later".to_string()),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request".to_string()),
        504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request".to_string()),
        code => ("InternalError", format!("Internal error occurred: injected fault ({code})")),
    };
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    if let Some(seconds) = retry_after {
        body["details"] = json!({"retryAfterSeconds": seconds});
    }
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Headers that belong to one connection, not to the request or answer.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    [
        header::CONNECTION,
        header::HOST,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
        header::AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

async fn forward(State(upstream): State<Arc<Upstream>>, request: AxumRequest) -> Response {
    // Frozen: held until the thaw, then answered 504 without being served, as across
    // a partition: whatever a client sent into a freeze never lands later, so a test
    // sees exactly what the client's own timeouts and fences did.
    if let Some(until) = upstream.hooks.frozen_until() {
        tokio::time::sleep_until(until.into()).await;
        return failure(504, None);
    }
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let (verb, resource, namespace, name) = classify(&parts.method, &path, &query, &content_type);
    let mut record = Request {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        verb,
        resource,
        namespace,
        name,
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        status: 0,
    };
    let mut delay = None;
    let mut cut_watch_after = None;
    let mut remote = false;
    match upstream.hooks.take_fault(&record) {
        Some(Effect::Status(code)) => {
            record.status = code;
            upstream.hooks.record(record);
            return failure(code, None);
        }
        Some(Effect::TooManyRequests {
            retry_after_seconds,
        }) => {
            record.status = 429;
            upstream.hooks.record(record);
            return failure(429, Some(retry_after_seconds));
        }
        Some(Effect::Latency(d)) => delay = Some(d),
        Some(Effect::Stall(d)) => {
            tokio::time::sleep(d).await;
            record.status = 504;
            upstream.hooks.record(record);
            return failure(504, None);
        }
        Some(Effect::DropWatch { after_events }) => cut_watch_after = Some(after_events),
        Some(Effect::Remote(d)) => {
            delay = Some(d);
            remote = parts.method == Method::GET && record.verb != Verb::Watch;
        }
        None => {}
    }
    let url = format!("{path}?{query}");
    let recorded = remote
        .then(|| {
            upstream
                .recordings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&url)
                .cloned()
        })
        .flatten();
    if let Some(recorded) = recorded {
        record.status = recorded.status.as_u16();
        upstream.hooks.record(record);
        let mut response = Response::new(Body::from(recorded.body));
        *response.status_mut() = recorded.status;
        *response.headers_mut() = recorded.headers;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        return response;
    }
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return failure(400, None),
    };
    let target = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let mut outgoing = http::Request::builder()
        .method(parts.method.clone())
        .uri(target);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    for (name, value) in &upstream.impersonate {
        outgoing = outgoing.header(name.as_str(), value.as_str());
    }
    let outgoing = match outgoing.body(kube::client::Body::from(body.to_vec())) {
        Ok(request) => request,
        Err(_) => return failure(400, None),
    };
    let answer = match upstream.client.send(outgoing).await {
        Ok(answer) => answer,
        Err(_) => {
            record.status = 502;
            upstream.hooks.record(record);
            return failure(502, None);
        }
    };
    record.status = answer.status().as_u16();
    upstream.hooks.record(record);
    let (answer_parts, answer_body) = answer.into_parts();
    let body = if remote {
        let Ok(bytes) = axum::body::to_bytes(Body::new(answer_body), usize::MAX).await else {
            return failure(502, None);
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in &answer_parts.headers {
            if !hop_by_hop(name) {
                headers.append(name, value.clone());
            }
        }
        upstream
            .recordings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                url,
                Recorded {
                    status: answer_parts.status,
                    headers,
                    body: bytes.clone(),
                },
            );
        Body::from(bytes)
    } else {
        Body::new(answer_body)
    };
    let body = match cut_watch_after {
        // Watch events arrive one JSON document per line; end the stream after the
        // n-th, as a dropped connection would.
        Some(events) => Body::from_stream(cut_after_lines(body, events)),
        None => body,
    };
    let mut response = Response::new(body);
    *response.status_mut() = answer_parts.status;
    for (name, value) in &answer_parts.headers {
        if !hop_by_hop(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    // The request was served; only the answer is late, so a client that gives up has
    // to cope with a write that happened anyway.
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    response
}

fn cut_after_lines(
    body: Body,
    lines: usize,
) -> impl futures::Stream<Item = Result<Bytes, axum::Error>> + Send {
    let mut seen = 0usize;
    body.into_data_stream()
        .map(move |chunk| {
            let chunk = chunk?;
            let mut end = chunk.len();
            for (i, byte) in chunk.iter().enumerate() {
                if *byte == b'\n' {
                    seen += 1;
                    if seen == lines {
                        end = i + 1;
                        break;
                    }
                }
            }
            Ok::<_, axum::Error>((chunk.slice(..end), seen >= lines))
        })
        .scan(false, |done, item| {
            if *done {
                return futures::future::ready(None);
            }
            let item = item.map(|(bytes, finished)| {
                *done = finished;
                bytes
            });
            futures::future::ready(Some(item))
        })
}
