//! What a cluster's controllers do to kco's objects, with the real kube-controller-manager that
//! `dev/testenv` runs (garbage collector and namespace controller): a managed Secret is garbage
//! collected with its KeycloakClient, and deleting a namespace with many KeycloakClients in it (and
//! their realm, instance and admin Secret, deleted in no fixed order) leaves nothing in Keycloak.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kco_testing::{Env, Operator, confidential, wait_for};
use kube::Api;
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const READY: Duration = Duration::from_secs(300);

fn client(name: &str) -> serde_json::Value {
    kco_testing::client(name, confidential(name, json!({})))
}

#[tokio::test]
async fn deleting_a_namespace_deletes_every_keycloak_client_it_held() {
    let n: usize = std::env::var("KCO_NAMESPACE_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let env = Env::connect().await;
    let ns = env.namespace("nsdel").await;
    env.keycloak_setup(&ns, &ns).await;
    let op = Operator::start(KCO, &ns, &["--resync", "5m"]).await;
    for i in 0..n {
        env.apply(&ns, client(&format!("svc-{i}"))).await;
    }
    let mut ids = Vec::new();
    for i in 0..n {
        let s = env.wait_phase(&ns, &format!("svc-{i}"), "Ready", READY).await;
        ids.push(s["internalId"].as_str().unwrap().to_string());
    }

    // Garbage collection is real here: a deleted KeycloakClient's managed Secret goes with it.
    env.delete(&ns, json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "svc-0"}})).await;
    wait_for("svc-0's managed Secret garbage-collected", Duration::from_secs(60), || async {
        env.get(&ns, "v1", "Secret", "svc-0-credentials").await.is_none().then_some(())
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(env.kube.clone());
    let started = Instant::now();
    namespaces.delete(&ns, &Default::default()).await.unwrap();
    wait_for("the namespace gone", READY, || async { namespaces.get_opt(&ns).await.unwrap().is_none().then_some(()) })
        .await;
    println!("namespace with {n} KeycloakClients deleted in {:.1}s", started.elapsed().as_secs_f64());
    let mut left = Vec::new();
    for id in &ids {
        if env.keycloak_get(&format!("{ns}/clients/{id}")).await.is_some() {
            left.push(id.clone());
        }
    }
    assert!(left.is_empty(), "{} of {n} Keycloak clients left behind: {left:?}", left.len());
    drop(op);
}
