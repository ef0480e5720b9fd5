//! deploy/rbac.yaml is enough: the operator, running as ServiceAccount kco-system/kco with exactly
//! that ClusterRole (the apiserver enforces RBAC), brings a confidential client to Ready.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kco_testing::{Env, Operator};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");

/// Server-side apply of every document in a YAML file, namespaced or cluster-scoped.
async fn apply_file(env: &Env, path: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    for doc in docs {
        let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
        let gvk = kube::api::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
        let (ar, caps) = kube::discovery::pinned_kind(&env.kube, &gvk).await.unwrap();
        let api: Api<DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => {
                Api::namespaced_with(env.kube.clone(), obj.namespace().as_deref().unwrap(), &ar)
            }
            kube::discovery::Scope::Cluster => Api::all_with(env.kube.clone(), &ar),
        };
        api.patch(&obj.name_any(), &PatchParams::apply("kco-tests").force(), &Patch::Apply(&doc)).await.unwrap();
    }
}

#[tokio::test]
async fn the_operator_needs_no_more_than_deploy_rbac() {
    let env = Env::connect().await;
    apply_file(&env, concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/rbac.yaml")).await;
    let sa: Api<ServiceAccount> = Api::namespaced(env.kube.clone(), "kco-system");
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = sa.create_token_request("kco", &PostParams::default(), &request).await.unwrap().status.unwrap().token;

    // A kubeconfig for the ServiceAccount: same server and CA, its token instead of the admin cert.
    let admin_config = std::env::var("KUBECONFIG").unwrap();
    let dir = std::path::Path::new(&admin_config).parent().unwrap();
    let mut config: Value = serde_saphyr::from_str(&std::fs::read_to_string(&admin_config).unwrap()).unwrap();
    config["users"] = json!([{"name": "kco", "user": {"token": token}}]);
    config["contexts"][0]["context"]["user"] = json!("kco");
    let sa_config = dir.join(format!("kubeconfig-kco-sa-{}", kco_testing::unique()));
    std::fs::write(&sa_config, serde_json::to_string(&config).unwrap()).unwrap();

    let ns = env.namespace("rbac").await;
    env.keycloak_setup(&ns, &ns).await;
    let _op =
        Operator::start_with_env(KCO, &ns, &["--resync", "5m"], &[("KUBECONFIG", sa_config.to_str().unwrap())]).await;
    env.apply(&ns, json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "svc"},
        "spec": {"clientId": "svc", "realmRef": {"name": "realm"},
                 "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false}}}))
    .await;
    let s = env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(120)).await;
    assert_eq!(s["credentialsSecret"], "svc-credentials");
    let data = env.secret_data(&ns, "svc-credentials").await.unwrap();
    env.client_credentials(&data["token-endpoint"], "svc", &data["client-secret"]).await.unwrap();
    let _ = std::fs::remove_file(&sa_config);
}
