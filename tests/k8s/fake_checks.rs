//! The fake API server answers like the real one where our tests rely on it: server-side apply
//! conflicts and ownership, 404/409/422 answers, label selectors. If these fail, the lifecycle
//! tests prove nothing.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::fake_api::FakeApi;

fn config_map(name: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

async fn with_namespace() -> (FakeApi, Api<ConfigMap>) {
    let fake = FakeApi::new();
    let namespaces: Api<Namespace> = Api::all(fake.client());
    namespaces
        .patch(
            "ns",
            &PatchParams::apply("test"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}),
            ),
        )
        .await
        .unwrap();
    let api = Api::namespaced(fake.client(), "ns");
    (fake, api)
}

fn code(error: kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("not an API answer: {other}"),
    }
}

#[tokio::test]
async fn apply_conflicts_with_another_manager_unless_forced() {
    let (fake, api) = with_namespace().await;
    api.patch(
        "cm",
        &PatchParams::apply("alice"),
        &Patch::Apply(config_map("cm", json!({"a": "1", "b": "2"}))),
    )
    .await
    .unwrap();
    let err = api
        .patch(
            "cm",
            &PatchParams::apply("bob"),
            &Patch::Apply(config_map("cm", json!({"a": "changed"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), 409);
    // The same value is shared ownership, not a conflict.
    api.patch(
        "cm",
        &PatchParams::apply("bob"),
        &Patch::Apply(config_map("cm", json!({"b": "2"}))),
    )
    .await
    .unwrap();
    // Forced: bob takes `a` over; alice dropping `a` later no longer removes it.
    api.patch(
        "cm",
        &PatchParams::apply("bob").force(),
        &Patch::Apply(config_map("cm", json!({"a": "changed", "b": "2"}))),
    )
    .await
    .unwrap();
    api.patch(
        "cm",
        &PatchParams::apply("alice"),
        &Patch::Apply(config_map("cm", json!({"c": "3"}))),
    )
    .await
    .unwrap();
    let stored = fake.get("configmaps", Some("ns"), "cm").unwrap();
    assert_eq!(stored["data"], json!({"a": "changed", "b": "2", "c": "3"}));
}

#[tokio::test]
async fn create_get_list_and_delete_answer_like_the_api_server() {
    let (fake, api) = with_namespace().await;
    let cm: ConfigMap = serde_json::from_value(config_map("one", json!({"k": "v"}))).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(
        code(api.create(&PostParams::default(), &cm).await.unwrap_err()),
        409
    );
    assert!(api.get_opt("missing").await.unwrap().is_none());
    assert_eq!(code(api.get("missing").await.unwrap_err()), 404);
    let mut labelled = cm.clone();
    labelled.metadata.name = Some("two".into());
    labelled.metadata.labels = Some([("app".to_owned(), "x".to_owned())].into());
    api.create(&PostParams::default(), &labelled).await.unwrap();
    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
    let selected = api
        .list(&ListParams::default().labels("app=x"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    assert_eq!(selected.items[0].metadata.name.as_deref(), Some("two"));
    let everywhere: Api<ConfigMap> = Api::all(fake.client());
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    api.delete("one", &Default::default()).await.unwrap();
    assert_eq!(
        code(api.delete("one", &Default::default()).await.unwrap_err()),
        404
    );
}

#[tokio::test]
async fn invalid_names_and_long_labels_are_rejected() {
    let (_fake, api) = with_namespace().await;
    let err = api
        .patch(
            "Upper",
            &PatchParams::apply("t"),
            &Patch::Apply(config_map("Upper", json!({}))),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), 422);
    let long = "x".repeat(64);
    let mut body = config_map("ok", json!({}));
    body["metadata"]["labels"] = json!({"tenant": long});
    let err = api
        .patch("ok", &PatchParams::apply("t"), &Patch::Apply(body))
        .await
        .unwrap_err();
    assert_eq!(code(err), 422);
    // A merge patch is not what etl sends, and the fake says so rather than guessing.
    let err = api
        .patch("ok", &PatchParams::default(), &Patch::Merge(json!({})))
        .await
        .unwrap_err();
    assert_eq!(code(err), 415);
}
