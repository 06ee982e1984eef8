//! The file's backup template ⇄ Velero's `BackupSpec`: the same fields, from the
//! file's spelling to Velero's type and back (for `import`), one by one (a field
//! either side gains fails to compile here until it is mapped both ways).

use crate::config::model as file;
use crate::crd;

/// The spec a Schedule's backups get: `template` as declared, going to `storage_location`
/// and kept for `ttl` (each of the entry's copies has its own).
pub(super) fn backup_spec(
    template: &file::BackupTemplate,
    storage_location: Option<&str>,
    ttl: Option<&str>,
) -> crd::BackupSpec {
    let file::BackupTemplate {
        metadata,
        included_namespaces,
        excluded_namespaces,
        included_resources,
        excluded_resources,
        include_cluster_resources,
        included_cluster_scoped_resources,
        excluded_cluster_scoped_resources,
        included_namespace_scoped_resources,
        excluded_namespace_scoped_resources,
        label_selector,
        or_label_selectors,
        snapshot_volumes,
        default_volumes_to_fs_backup,
        default_volumes_to_restic,
        snapshot_move_data,
        datamover,
        uploader_config,
        ttl: _,
        csi_snapshot_timeout,
        item_operation_timeout,
        storage_location: _,
        volume_snapshot_locations,
        volume_group_snapshot_label_key,
        hooks,
        ordered_resources,
        resource_policy,
    } = template;
    crd::BackupSpec {
        metadata: metadata.as_ref().map(|metadata| crd::BackupMetadata {
            labels: metadata.labels.clone(),
        }),
        included_namespaces: included_namespaces.clone(),
        excluded_namespaces: excluded_namespaces.clone(),
        included_resources: included_resources.clone(),
        excluded_resources: excluded_resources.clone(),
        include_cluster_resources: *include_cluster_resources,
        included_cluster_scoped_resources: included_cluster_scoped_resources.clone(),
        excluded_cluster_scoped_resources: excluded_cluster_scoped_resources.clone(),
        included_namespace_scoped_resources: included_namespace_scoped_resources.clone(),
        excluded_namespace_scoped_resources: excluded_namespace_scoped_resources.clone(),
        label_selector: label_selector.as_ref().map(selector),
        or_label_selectors: or_label_selectors
            .as_ref()
            .map(|selectors| selectors.iter().map(selector).collect()),
        snapshot_volumes: *snapshot_volumes,
        default_volumes_to_fs_backup: *default_volumes_to_fs_backup,
        default_volumes_to_restic: *default_volumes_to_restic,
        snapshot_move_data: *snapshot_move_data,
        datamover: datamover.clone(),
        uploader_config: uploader_config.as_ref().map(|config| crd::UploaderConfig {
            parallel_files_upload: config.parallel_files_upload,
        }),
        ttl: ttl.map(str::to_string),
        csi_snapshot_timeout: csi_snapshot_timeout.clone(),
        item_operation_timeout: item_operation_timeout.clone(),
        storage_location: storage_location.map(str::to_string),
        volume_snapshot_locations: volume_snapshot_locations.clone(),
        volume_group_snapshot_label_key: volume_group_snapshot_label_key.clone(),
        hooks: hooks.as_ref().map(|hooks| crd::BackupHooks {
            resources: hooks.resources.iter().map(resource_hook).collect(),
        }),
        ordered_resources: ordered_resources.clone(),
        resource_policy: resource_policy
            .as_ref()
            .map(|policy| crd::ResourcePolicyRef {
                kind: policy.kind.clone(),
                name: policy.name.clone(),
                api_group: policy.api_group.clone(),
            }),
    }
}

fn selector(selector: &file::LabelSelector) -> crd::LabelSelector {
    crd::LabelSelector {
        match_labels: selector.match_labels.clone(),
        match_expressions: selector
            .match_expressions
            .iter()
            .map(|requirement| crd::LabelSelectorRequirement {
                key: requirement.key.clone(),
                operator: requirement.operator.clone(),
                values: requirement.values.clone(),
            })
            .collect(),
    }
}

fn resource_hook(hook: &file::BackupResourceHook) -> crd::BackupResourceHook {
    let steps = |steps: &[file::BackupHook]| {
        steps
            .iter()
            .map(|step| crd::BackupHook {
                exec: crd::ExecHook {
                    container: step.exec.container.clone(),
                    command: step.exec.command.clone(),
                    on_error: step.exec.on_error.map(|mode| match mode {
                        file::HookErrorMode::Continue => crd::HookErrorMode::Continue,
                        file::HookErrorMode::Fail => crd::HookErrorMode::Fail,
                    }),
                    timeout: step.exec.timeout.clone(),
                },
            })
            .collect()
    };
    crd::BackupResourceHook {
        name: hook.name.clone(),
        included_namespaces: hook.included_namespaces.clone(),
        excluded_namespaces: hook.excluded_namespaces.clone(),
        included_resources: hook.included_resources.clone(),
        excluded_resources: hook.excluded_resources.clone(),
        label_selector: hook.label_selector.as_ref().map(selector),
        pre: steps(&hook.pre),
        post: steps(&hook.post),
    }
}

/// The inverse of [`backup_spec`], for `import`: the template a file writes for a
/// Velero `spec`, its `ttl` and `storage_location` included (the entry's or a copy's,
/// as `import` decides).
pub fn backup_template(spec: &crd::BackupSpec) -> file::BackupTemplate {
    let crd::BackupSpec {
        metadata,
        included_namespaces,
        excluded_namespaces,
        included_resources,
        excluded_resources,
        include_cluster_resources,
        included_cluster_scoped_resources,
        excluded_cluster_scoped_resources,
        included_namespace_scoped_resources,
        excluded_namespace_scoped_resources,
        label_selector,
        or_label_selectors,
        snapshot_volumes,
        default_volumes_to_fs_backup,
        default_volumes_to_restic,
        snapshot_move_data,
        datamover,
        uploader_config,
        ttl,
        csi_snapshot_timeout,
        item_operation_timeout,
        storage_location,
        volume_snapshot_locations,
        volume_group_snapshot_label_key,
        hooks,
        ordered_resources,
        resource_policy,
    } = spec;
    file::BackupTemplate {
        metadata: metadata.as_ref().map(|metadata| file::TemplateMetadata {
            labels: metadata.labels.clone(),
        }),
        included_namespaces: included_namespaces.clone(),
        excluded_namespaces: excluded_namespaces.clone(),
        included_resources: included_resources.clone(),
        excluded_resources: excluded_resources.clone(),
        include_cluster_resources: *include_cluster_resources,
        included_cluster_scoped_resources: included_cluster_scoped_resources.clone(),
        excluded_cluster_scoped_resources: excluded_cluster_scoped_resources.clone(),
        included_namespace_scoped_resources: included_namespace_scoped_resources.clone(),
        excluded_namespace_scoped_resources: excluded_namespace_scoped_resources.clone(),
        label_selector: label_selector.as_ref().map(file_selector),
        or_label_selectors: or_label_selectors
            .as_ref()
            .map(|selectors| selectors.iter().map(file_selector).collect()),
        snapshot_volumes: *snapshot_volumes,
        default_volumes_to_fs_backup: *default_volumes_to_fs_backup,
        default_volumes_to_restic: *default_volumes_to_restic,
        snapshot_move_data: *snapshot_move_data,
        datamover: datamover.clone(),
        uploader_config: uploader_config.as_ref().map(|config| file::UploaderConfig {
            parallel_files_upload: config.parallel_files_upload,
        }),
        ttl: ttl.clone(),
        csi_snapshot_timeout: csi_snapshot_timeout.clone(),
        item_operation_timeout: item_operation_timeout.clone(),
        storage_location: storage_location.clone(),
        volume_snapshot_locations: volume_snapshot_locations.clone(),
        volume_group_snapshot_label_key: volume_group_snapshot_label_key.clone(),
        hooks: hooks.as_ref().map(|hooks| file::BackupHooks {
            resources: hooks.resources.iter().map(file_resource_hook).collect(),
        }),
        ordered_resources: ordered_resources.clone(),
        resource_policy: resource_policy
            .as_ref()
            .map(|policy| file::ResourcePolicyRef {
                kind: policy.kind.clone(),
                name: policy.name.clone(),
                api_group: policy.api_group.clone(),
            }),
    }
}

fn file_selector(selector: &crd::LabelSelector) -> file::LabelSelector {
    file::LabelSelector {
        match_labels: selector.match_labels.clone(),
        match_expressions: selector
            .match_expressions
            .iter()
            .map(|requirement| file::LabelSelectorRequirement {
                key: requirement.key.clone(),
                operator: requirement.operator.clone(),
                values: requirement.values.clone(),
            })
            .collect(),
    }
}

fn file_resource_hook(hook: &crd::BackupResourceHook) -> file::BackupResourceHook {
    let steps = |steps: &[crd::BackupHook]| {
        steps
            .iter()
            .map(|step| file::BackupHook {
                exec: file::ExecHook {
                    container: step.exec.container.clone(),
                    command: step.exec.command.clone(),
                    on_error: step.exec.on_error.map(|mode| match mode {
                        crd::HookErrorMode::Continue => file::HookErrorMode::Continue,
                        crd::HookErrorMode::Fail => file::HookErrorMode::Fail,
                    }),
                    timeout: step.exec.timeout.clone(),
                },
            })
            .collect()
    };
    file::BackupResourceHook {
        name: hook.name.clone(),
        included_namespaces: hook.included_namespaces.clone(),
        excluded_namespaces: hook.excluded_namespaces.clone(),
        included_resources: hook.included_resources.clone(),
        excluded_resources: hook.excluded_resources.clone(),
        label_selector: hook.label_selector.as_ref().map(file_selector),
        pre: steps(&hook.pre),
        post: steps(&hook.post),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of Velero's BackupSpec, each with a value of its own, so that a
    /// field mapped onto another one's place shows.
    fn every_field() -> serde_json::Value {
        let hook = serde_json::json!({
            "name": "freeze",
            "includedNamespaces": ["hook-in-ns"],
            "excludedNamespaces": ["hook-ex-ns"],
            "includedResources": ["pods"],
            "excludedResources": ["jobs"],
            "labelSelector": {"matchLabels": {"hook": "yes"}},
            "pre": [{"exec": {"container": "db", "command": ["fsfreeze", "-f"],
                "onError": "Fail", "timeout": "30s"}}],
            "post": [{"exec": {"command": ["fsfreeze", "-u"], "onError": "Continue"}}]
        });
        let mut every = serde_json::json!({
            "metadata": {"labels": {"team": "a"}},
            "includedNamespaces": ["in-ns"],
            "excludedNamespaces": ["ex-ns"],
            "includedResources": ["in-res"],
            "excludedResources": ["ex-res"],
            "includeClusterResources": true,
            "includedClusterScopedResources": ["in-cluster"],
            "excludedClusterScopedResources": ["ex-cluster"],
            "includedNamespaceScopedResources": ["in-scoped"],
            "excludedNamespaceScopedResources": ["ex-scoped"],
            "labelSelector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]},
            "orLabelSelectors": [{"matchLabels": {"or": "one"}}, {"matchLabels": {"or": "two"}}],
            "snapshotVolumes": false,
            "defaultVolumesToFsBackup": true,
            "defaultVolumesToRestic": false,
            "snapshotMoveData": true,
            "datamover": "velero",
            "uploaderConfig": {"parallelFilesUpload": 4},
            "ttl": "720h",
            "csiSnapshotTimeout": "10m",
            "itemOperationTimeout": "4h",
            "storageLocation": "primary",
            "volumeSnapshotLocations": ["ebs"],
            "volumeGroupSnapshotLabelKey": "group",
            "orderedResources": {"pods": "ns/a,ns/b"},
            "resourcePolicy": {"kind": "configmap", "name": "policy", "apiGroup": "v1"}
        });
        every["hooks"] = serde_json::json!({"resources": [hook]});
        every
    }

    #[test]
    fn import_s_template_renders_back_to_the_same_spec() {
        let written = every_field();
        let spec: crd::BackupSpec = serde_json::from_value(written.clone()).unwrap();
        // The fixture names every field the type has, and the type reads all of it.
        assert_eq!(serde_json::to_value(&spec).unwrap(), written);
        let template = backup_template(&spec);
        let again = backup_spec(
            &template,
            template.storage_location.as_deref(),
            template.ttl.as_deref(),
        );
        assert_eq!(again, spec);
    }
}
