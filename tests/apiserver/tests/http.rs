//! kube::Client round trips against the test API server: every verb, paging, label
//! selectors, optimistic concurrency, server-side apply with conflicts and force, CRD
//! schema checks, watches (resumed after a drop, bookmarks, 410), and the test hooks.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Error};
use serde_json::{Value, json};
use stowage_test_apiserver::{Config, Effect, Fault, Route, TestServer, Verb};

async fn start() -> (TestServer, Client) {
    let mut config = Config::new(stowage_test_apiserver::velero_crds());
    config.namespaces = vec!["velero".to_string()];
    config.bookmark_interval = Duration::from_millis(200);
    let server = TestServer::start(config).expect("test API server starts");
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&server.kubeconfig("velero")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    (server, Client::try_from(config).unwrap())
}

fn bsl_api(client: &Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation"),
        "backupstoragelocations",
    );
    Api::namespaced_with(client.clone(), "velero", &resource)
}

fn secret_api(client: &Client) -> Api<k8s_openapi::api::core::v1::Secret> {
    Api::namespaced(client.clone(), "velero")
}

fn bsl(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
        "metadata": {"name": name, "namespace": "velero"}, "spec": spec}),
    )
    .unwrap()
}

fn aws(bucket: &str) -> Value {
    json!({"provider": "aws", "objectStorage": {"bucket": bucket}, "config": {"region": "us-east-1"}})
}

fn status_of(error: Error) -> kube::core::Status {
    match error {
        Error::Api(status) => *status,
        other => panic!("expected an API status, got {other:?}"),
    }
}

fn fields_v1(object: &DynamicObject, manager: &str) -> Value {
    let entry = object
        .metadata
        .managed_fields
        .as_ref()
        .and_then(|m| m.iter().find(|e| e.manager.as_deref() == Some(manager)))
        .unwrap_or_else(|| panic!("no managedFields entry for {manager}"));
    entry.fields_v1.as_ref().unwrap().0.clone()
}

#[tokio::test]
async fn discovery_lists_the_served_kinds_with_short_names() {
    let (_server, client) = start().await;
    let groups = client.list_api_groups().await.unwrap();
    let names: Vec<&str> = groups.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["apps", "coordination.k8s.io", "velero.io"]);
    let velero = client
        .list_api_group_resources("velero.io/v1")
        .await
        .unwrap();
    let bsl = velero
        .resources
        .iter()
        .find(|r| r.name == "backupstoragelocations")
        .unwrap();
    assert_eq!(bsl.kind, "BackupStorageLocation");
    assert_eq!(bsl.short_names.as_deref(), Some(&["bsl".to_string()][..]));
    assert!(bsl.namespaced);
    assert!(bsl.verbs.iter().any(|v| v == "watch"));
    let core = client.list_core_api_resources("v1").await.unwrap();
    let core_names: Vec<&str> = core.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        core_names,
        ["namespaces", "secrets", "nodes", "persistentvolumes"]
    );
    let discovery = kube::discovery::Discovery::new(client).run().await.unwrap();
    assert!(discovery.has_group("velero.io"));
}

#[tokio::test]
async fn create_get_update_patch_delete() {
    let (_server, client) = start().await;
    let api = bsl_api(&client);
    let created = api
        .create(&PostParams::default(), &bsl("primary", aws("velero-clean")))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1 = created.metadata.resource_version.clone().unwrap();

    let fetched = api.get("primary").await.unwrap();
    assert_eq!(fetched.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        fetched.data["spec"]["objectStorage"]["bucket"],
        "velero-clean"
    );

    // A second create of the same name is refused.
    let again = status_of(
        api.create(&PostParams::default(), &bsl("primary", aws("x")))
            .await
            .unwrap_err(),
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    // PUT with the current resourceVersion: generation moves on.
    let mut changed = fetched.clone();
    changed.data["spec"]["objectStorage"]["bucket"] = json!("velero-prefixed");
    let replaced = api
        .replace("primary", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_ne!(
        replaced.metadata.resource_version.as_deref(),
        Some(rv1.as_str())
    );

    // PUT based on the old version: 409, nothing written.
    let stale = status_of(
        api.replace("primary", &PostParams::default(), &fetched)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(stale.message.contains("the object has been modified"));

    // A label-only merge patch does not move generation.
    let patched = api
        .patch(
            "primary",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "gold"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["tier"], "gold");

    // dryRun writes nothing.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    api.create(&dry, &bsl("ghost", aws("velero-clean")))
        .await
        .unwrap();
    assert!(api.get_opt("ghost").await.unwrap().is_none());

    let deleted = api
        .delete("primary", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        deleted.is_left(),
        "a custom resource's delete returns the object"
    );
    let missing = status_of(api.get("primary").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        missing.message,
        "backupstoragelocations.velero.io \"primary\" not found"
    );
}

#[tokio::test]
async fn lists_page_consistently_and_filter_by_label() {
    let (server, client) = start().await;
    let api = bsl_api(&client);
    for i in 0..7 {
        let mut object = bsl(&format!("loc-{i}"), aws("velero-clean"));
        object.metadata.labels = Some(
            [(
                "parity".to_string(),
                (if i % 2 == 0 { "even" } else { "odd" }).to_string(),
            )]
            .into(),
        );
        api.create(&PostParams::default(), &object).await.unwrap();
    }
    let first = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().unwrap();
    // A write between pages does not show up in the pages of this list.
    api.create(&PostParams::default(), &bsl("loc-9", aws("velero-clean")))
        .await
        .unwrap();
    let mut names: Vec<String> = first
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    let mut next = Some(token);
    while let Some(token) = next {
        let page = api
            .list(&ListParams::default().limit(3).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version,
            first.metadata.resource_version
        );
        names.extend(page.items.iter().map(|o| o.metadata.name.clone().unwrap()));
        next = page.metadata.continue_.filter(|t| !t.is_empty());
    }
    assert_eq!(
        names,
        (0..7).map(|i| format!("loc-{i}")).collect::<Vec<_>>()
    );

    let even = api
        .list(&ListParams::default().labels("parity=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 4);
    let labelled = api
        .list(&ListParams::default().labels("parity in (odd),parity"))
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 3);
    assert_eq!(
        server.hooks().count(Verb::List, "backupstoragelocations"),
        5
    );

    // A continue token from before a compaction is too old.
    server.compact();
    let expired = status_of(
        api.list(
            &ListParams::default()
                .limit(3)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((expired.code, expired.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn server_side_apply_ownership_conflicts_and_force() {
    let (server, client) = start().await;
    let api = bsl_api(&client);
    let stowage = PatchParams::apply("stowage");
    let mut spec = aws("velero-clean");
    spec["default"] = json!(true);
    let created = api
        .patch("main", &stowage, &Patch::Apply(bsl("main", spec.clone())))
        .await
        .unwrap();
    assert_eq!(
        fields_v1(&created, "stowage"),
        json!({"f:spec": {"f:config": {"f:region": {}}, "f:default": {},
                          "f:objectStorage": {"f:bucket": {}}, "f:provider": {}}})
    );

    // Re-applying the same config changes nothing, not even the resourceVersion.
    let again = api
        .patch("main", &stowage, &Patch::Apply(bsl("main", spec.clone())))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );

    // Velero's controller flips `default` with an Update: it now owns the field.
    server
        .merge_patch(
            "velero.io/v1",
            "BackupStorageLocation",
            Some("velero"),
            "main",
            json!({"spec": {"default": false}}),
            "velero-server",
        )
        .unwrap();
    let conflict = status_of(
        api.patch("main", &stowage, &Patch::Apply(bsl("main", spec.clone())))
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        "Apply failed with 1 conflict: conflict with \"velero-server\" using velero.io/v1: .spec.default"
    );
    let cause = &conflict.details.as_ref().unwrap().causes[0];
    assert_eq!(cause.reason, "FieldManagerConflict");
    assert_eq!(cause.field, ".spec.default");

    // The same value is shared, not a conflict; force takes the field over.
    let mut shared = spec.clone();
    shared["default"] = json!(false);
    let co_owned = api
        .patch("main", &stowage, &Patch::Apply(bsl("main", shared)))
        .await
        .unwrap();
    assert!(
        fields_v1(&co_owned, "velero-server")["f:spec"]
            .get("f:default")
            .is_some()
    );
    let forced = api
        .patch(
            "main",
            &stowage.clone().force(),
            &Patch::Apply(bsl("main", spec.clone())),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["default"], true);
    assert!(
        forced
            .metadata
            .managed_fields
            .as_ref()
            .unwrap()
            .iter()
            .all(|e| e.manager.as_deref() != Some("velero-server")),
        "velero-server owned only the forced field, so its entry goes"
    );

    // A field the applier stops applying is removed.
    let mut fewer = spec.clone();
    fewer.as_object_mut().unwrap().remove("config");
    let pruned = api
        .patch("main", &stowage, &Patch::Apply(bsl("main", fewer)))
        .await
        .unwrap();
    assert!(pruned.data["spec"].get("config").is_none());

    // An apply without a field manager is refused as Kubernetes refuses it.
    let no_manager = status_of(
        api.patch(
            "main",
            &PatchParams::default(),
            &Patch::Apply(bsl("main", spec)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (no_manager.code, no_manager.reason.as_str()),
        (422, "Invalid")
    );
}

#[tokio::test]
async fn secret_data_keys_are_owned_one_by_one() {
    let (_server, client) = start().await;
    let secrets = secret_api(&client);
    let secret = |data: Value| -> k8s_openapi::api::core::v1::Secret {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "velero"}, "data": data}))
        .unwrap()
    };
    secrets
        .patch(
            "creds",
            &PatchParams::apply("stowage"),
            &Patch::Apply(secret(json!({"cloud": "YQ=="}))),
        )
        .await
        .unwrap();
    let both = secrets
        .patch(
            "creds",
            &PatchParams::apply("other"),
            &Patch::Apply(secret(json!({"extra": "Yg=="}))),
        )
        .await
        .unwrap();
    let data = both.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["cloud", "extra"]);
    // stringData is folded into data on write.
    let folded = secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"plain": "text"}})),
        )
        .await
        .unwrap();
    assert_eq!(folded.data.unwrap()["plain"].0, b"text");
    assert!(folded.string_data.is_none());
}

#[tokio::test]
async fn bad_velero_objects_are_refused_as_the_real_server_refuses_them() {
    let (_server, client) = start().await;
    let api = bsl_api(&client);
    let mut bogus = aws("velero-clean");
    bogus["accessMode"] = json!("Bogus");
    let invalid = status_of(
        api.create(&PostParams::default(), &bsl("bad", bogus))
            .await
            .unwrap_err(),
    );
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        invalid.message,
        "BackupStorageLocation.velero.io \"bad\" is invalid: spec.accessMode: Unsupported value: \"Bogus\": supported values: \"ReadOnly\", \"ReadWrite\""
    );
    let no_bucket = json!({"provider": "aws", "objectStorage": {"prefix": "p"}});
    let missing = status_of(
        api.patch(
            "bad",
            &PatchParams::apply("stowage"),
            &Patch::Apply(bsl("bad", no_bucket)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(missing.code, 422);
    let cause = &missing.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldValueRequired", "spec.objectStorage.bucket")
    );

    // A misspelt field is pruned by default and refused under Strict.
    let mut misspelt = aws("velero-clean");
    misspelt["acessMode"] = json!("ReadOnly");
    let kept = api
        .create(&PostParams::default(), &bsl("typo", misspelt.clone()))
        .await
        .unwrap();
    assert!(kept.data["spec"].get("acessMode").is_none());
    let strict = PatchParams::apply("stowage").validation_strict();
    let refused = status_of(
        api.patch("typo", &strict, &Patch::Apply(bsl("typo", misspelt)))
            .await
            .unwrap_err(),
    );
    assert_eq!((refused.code, refused.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        refused.message,
        ".spec.acessMode: field not declared in schema"
    );
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<DynamicObject>>> + Unpin),
) -> Option<WatchEvent<DynamicObject>> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5 s")
        .map(|e| e.unwrap())
}

fn describe(event: &WatchEvent<DynamicObject>) -> String {
    match event {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.as_deref().unwrap_or("")),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.as_deref().unwrap_or("")),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.as_deref().unwrap_or("")),
        WatchEvent::Bookmark(_) => "BOOKMARK".to_string(),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}

#[tokio::test]
async fn a_watch_resumes_after_a_drop_without_missing_events() {
    let (server, client) = start().await;
    let api = bsl_api(&client);
    let start_rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    server.inject(Fault {
        route: Route::verb(Verb::Watch).on("backupstoragelocations"),
        times: 1,
        effect: Effect::DropWatch { after_events: 2 },
    });
    let mut stream = api
        .watch(&WatchParams::default().disable_bookmarks(), &start_rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &bsl("a", aws("velero-clean")))
        .await
        .unwrap();
    api.create(&PostParams::default(), &bsl("b", aws("velero-clean")))
        .await
        .unwrap();
    api.create(&PostParams::default(), &bsl("c", aws("velero-clean")))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut last_rv = start_rv.clone();
    while let Some(event) = next_event(&mut stream).await {
        if let WatchEvent::Added(o) = &event {
            last_rv = o.metadata.resource_version.clone().unwrap();
        }
        seen.push(describe(&event));
    }
    assert_eq!(
        seen,
        ["ADDED a", "ADDED b"],
        "the dropped stream ends after two events"
    );

    // Resumed from the last version seen: the rest arrives, then live changes.
    let mut resumed = api
        .watch(&WatchParams::default().disable_bookmarks(), &last_rv)
        .await
        .unwrap()
        .boxed();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let rest = [
        next_event(&mut resumed).await.unwrap(),
        next_event(&mut resumed).await.unwrap(),
    ];
    assert_eq!(
        rest.iter().map(describe).collect::<Vec<_>>(),
        ["ADDED c", "DELETED a"]
    );
}

#[tokio::test]
async fn watches_get_bookmarks_and_410_for_a_compacted_version() {
    let (server, client) = start().await;
    let api = bsl_api(&client);
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let event = next_event(&mut stream).await.unwrap();
    assert_eq!(describe(&event), "BOOKMARK");

    api.create(&PostParams::default(), &bsl("x", aws("velero-clean")))
        .await
        .unwrap();
    server.compact();
    let mut old = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    let gone = next_event(&mut old).await.unwrap();
    assert_eq!(describe(&gone), "ERROR 410");
    assert!(next_event(&mut old).await.is_none());

    // kube's watcher re-lists on 410 and carries on.
    let events = kube::runtime::watcher(api.clone(), Default::default());
    let first = tokio::time::timeout(Duration::from_secs(5), events.boxed().try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, Some(kube::runtime::watcher::Event::Init)));
}

#[tokio::test]
async fn faults_answer_with_kubernetes_statuses_and_requests_are_counted() {
    let (server, client) = start().await;
    let api = bsl_api(&client);
    server.inject(Fault {
        route: Route::verb(Verb::List).on("backupstoragelocations"),
        times: 1,
        effect: Effect::Status(500),
    });
    let failed = status_of(api.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    server.inject(Fault {
        route: Route::verb(Verb::Get)
            .on("backupstoragelocations")
            .named("x"),
        times: 1,
        effect: Effect::Status(403),
    });
    let denied = status_of(api.get("x").await.unwrap_err());
    assert_eq!(denied.code, 403);
    assert!(denied.message.contains("cannot get resource \"backupstoragelocations\" in API group \"velero.io\" in the namespace \"velero\""));
    server.inject(Fault {
        route: Route::verb(Verb::List),
        times: 1,
        effect: Effect::TooManyRequests {
            retry_after_seconds: 1,
        },
    });
    // kube's client retries a 429 itself, after the Retry-After the server gave.
    api.list(&ListParams::default()).await.unwrap();
    let lists = server.hooks().count(Verb::List, "backupstoragelocations");
    assert_eq!(
        lists, 3,
        "two faulted lists and one served, each counted once"
    );
    let statuses: Vec<u16> = server
        .hooks()
        .requests()
        .iter()
        .filter(|r| r.resource.as_deref() == Some("backupstoragelocations"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 403, 429, 200]);
}

#[tokio::test]
async fn creating_in_a_missing_namespace_is_refused() {
    let (_server, client) = start().await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        "nowhere",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation"),
            "backupstoragelocations",
        ),
    );
    let mut object = bsl("x", aws("velero-clean"));
    object.metadata.namespace = Some("nowhere".into());
    let refused = status_of(
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_err(),
    );
    assert_eq!(refused.code, 404);
    assert_eq!(refused.message, "namespaces \"nowhere\" not found");
}
