//! The resource types the server serves: a few built-in kinds with the parts of their
//! schemas that server-side apply needs, and Velero's kinds read from its real CRDs.

use std::path::Path;

use serde_json::{Value, json};

use crate::ssa::ObjectSchema;

/// The verbs every served resource allows (no `deletecollection`: nothing here uses it).
pub const VERBS: [&str; 7] = [
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// One printer column of a resource's table view.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: String,
    pub json_path: String,
    pub description: String,
}

/// A resource type: where it lives in the API and how its objects are checked.
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// The schema field ownership follows.
    pub ownership: ObjectSchema,
    /// A CRD's structural schema (pruning, defaults, validation); `None` for built-ins.
    pub structural: Option<Value>,
    pub columns: Vec<Column>,
    /// Whether `metadata.generation` tracks changes (CRDs, Deployments).
    pub has_generation: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group`, as Kubernetes names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn is_custom(&self) -> bool {
        self.structural.is_some()
    }
}

/// Everything served, in discovery order.
pub struct Registry {
    pub resources: Vec<Resource>,
}

#[derive(Debug)]
pub struct CrdError(pub String);

impl std::fmt::Display for CrdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CrdError {}

impl Registry {
    /// The built-in kinds plus every CRD (`*.yaml`) in `crd_dir`.
    pub fn load(crd_dir: &Path) -> Result<Registry, CrdError> {
        let mut resources = builtins();
        let mut files: Vec<_> = std::fs::read_dir(crd_dir)
            .map_err(|e| CrdError(format!("cannot read CRDs in {}: {e}", crd_dir.display())))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CrdError(format!("cannot read {}: {e}", path.display())))?;
            let crd: Value = serde_saphyr::from_str(&text)
                .map_err(|e| CrdError(format!("{} is not YAML: {e}", path.display())))?;
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            resources.push(from_crd(&crd).ok_or_else(|| {
                CrdError(format!(
                    "{} is not a CRD this server can serve",
                    path.display()
                ))
            })?);
        }
        Ok(Registry { resources })
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.resources
            .iter()
            .position(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.resources
            .iter()
            .position(|r| r.api_version() == api_version && r.kind == kind)
    }

    /// The groups other than the core group, in order of first appearance.
    pub fn groups(&self) -> Vec<(&str, &str)> {
        let mut groups: Vec<(&str, &str)> = Vec::new();
        for r in &self.resources {
            if !r.group.is_empty() && !groups.iter().any(|(g, _)| *g == r.group) {
                groups.push((&r.group, &r.version));
            }
        }
        groups
    }
}

fn from_crd(crd: &Value) -> Option<Resource> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let version = spec["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"] == true)
        .or_else(|| spec["versions"].get(0))?;
    let schema = version["schema"]["openAPIV3Schema"].clone();
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let columns = version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| Column {
            name: c["name"].as_str().unwrap_or_default().to_string(),
            kind: c["type"].as_str().unwrap_or("string").to_string(),
            json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
            description: c["description"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    Some(Resource {
        group: spec["group"].as_str()?.to_string(),
        version: version["name"].as_str()?.to_string(),
        kind: names["kind"].as_str()?.to_string(),
        list_kind: names["listKind"].as_str()?.to_string(),
        plural: names["plural"].as_str()?.to_string(),
        singular: names["singular"].as_str()?.to_string(),
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        namespaced: spec["scope"] == "Namespaced",
        ownership: ObjectSchema::new(&schema),
        structural: Some(schema),
        columns,
        has_generation: true,
    })
}

struct Builtin {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    has_generation: bool,
    /// Top-level fields besides apiVersion, kind and metadata.
    fields: Value,
}

fn builtins() -> Vec<Resource> {
    let untyped = json!({});
    let containers = json!({"type": "array", "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "image": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}},
            "command": {"type": "array", "items": {"type": "string"}},
            "env": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "string"}, "valueFrom": {}}}},
            "volumeMounts": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mountPath"], "items": {}},
            "ports": {}, "resources": {}, "securityContext": {}, "imagePullPolicy": {"type": "string"}}}});
    let list = [
        Builtin {
            group: "",
            kind: "Namespace",
            plural: "namespaces",
            short_names: &["ns"],
            namespaced: false,
            has_generation: false,
            fields: json!({"spec": untyped, "status": untyped}),
        },
        Builtin {
            group: "",
            kind: "Secret",
            plural: "secrets",
            short_names: &[],
            namespaced: true,
            has_generation: false,
            fields: json!({
                "type": {"type": "string"},
                "immutable": {"type": "boolean"},
                "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                "stringData": {"type": "object", "additionalProperties": {"type": "string"}}}),
        },
        Builtin {
            group: "",
            kind: "Node",
            plural: "nodes",
            short_names: &["no"],
            namespaced: false,
            has_generation: false,
            fields: json!({"spec": untyped, "status": untyped}),
        },
        Builtin {
            group: "",
            kind: "PersistentVolume",
            plural: "persistentvolumes",
            short_names: &["pv"],
            namespaced: false,
            has_generation: false,
            fields: json!({"spec": untyped, "status": untyped}),
        },
        Builtin {
            group: "apps",
            kind: "Deployment",
            plural: "deployments",
            short_names: &["deploy"],
            namespaced: true,
            has_generation: true,
            fields: json!({"spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"}, "selector": {}, "strategy": {},
                "template": {"type": "object", "properties": {"metadata": {}, "spec": {
                    "type": "object", "properties": {
                        "containers": containers, "initContainers": containers,
                        "serviceAccountName": {"type": "string"}, "volumes": {"type": "array",
                            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {}}},
                    "additionalProperties": {}}}}},
                "additionalProperties": {}}, "status": untyped}),
        },
        Builtin {
            group: "coordination.k8s.io",
            kind: "Lease",
            plural: "leases",
            short_names: &[],
            namespaced: true,
            has_generation: false,
            fields: json!({"spec": {"type": "object", "properties": {
                "holderIdentity": {"type": "string"}, "leaseDurationSeconds": {"type": "integer"},
                "acquireTime": {"type": "string"}, "renewTime": {"type": "string"},
                "leaseTransitions": {"type": "integer"}}}}),
        },
    ];
    list.into_iter()
        .map(|b| {
            let mut properties = json!({
                "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}});
            for (key, value) in b.fields.as_object().into_iter().flatten() {
                properties[key] = value.clone();
            }
            let schema = json!({"type": "object", "properties": properties});
            Resource {
                group: b.group.to_string(),
                version: "v1".to_string(),
                kind: b.kind.to_string(),
                list_kind: format!("{}List", b.kind),
                plural: b.plural.to_string(),
                singular: b.kind.to_lowercase(),
                short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
                categories: Vec::new(),
                namespaced: b.namespaced,
                ownership: ObjectSchema::new(&schema),
                structural: None,
                columns: Vec::new(),
                has_generation: b.has_generation,
            }
        })
        .collect()
}
