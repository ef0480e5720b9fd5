//! One KeycloakClient stored in a shape kco cannot read (written while the CRD was looser, as after a
//! schema change) must not delay a valid one beside it. Its own binary: it swaps the CRD for a moment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kco_testing::{Env, Operator, wait_for};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");

#[tokio::test]
async fn a_malformed_object_does_not_delay_a_valid_one() {
    let env = Env::connect().await;
    let ns = env.namespace("malformed").await;
    env.keycloak_setup(&ns, &ns).await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.kube.clone());
    let real = kco_api::crds().into_iter().find(|c| c.spec.names.kind == "KeycloakClient").unwrap();
    let name = real.metadata.name.clone().unwrap();

    // Loosen the schema, store a bad object, put the real schema back.
    let mut loose = serde_json::to_value(&real).unwrap();
    loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
    let pp = PatchParams::apply("kco-tests").force();
    crds.patch(&name, &pp, &Patch::Apply(&loose)).await.unwrap();
    let bad = json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "bad"},
        "spec": {"clientId": "bad", "realmRef": {"name": "realm"}, "settings": {"standardFlowEnabled": "yes"}}});
    // The apiserver takes a moment to serve the loosened schema.
    wait_for("the loosened CRD to accept the object", Duration::from_secs(30), || async {
        env.try_apply(&ns, &bad).await.map_err(|e| eprintln!("not yet accepted: {e}")).ok()
    })
    .await;
    crds.patch(&name, &pp, &Patch::Apply(&real)).await.unwrap();

    let _op = Operator::start(KCO, &ns, &[]).await;
    let started = Instant::now();
    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "good"},
        "spec": {"clientId": "good", "realmRef": {"name": "realm"}}}),
    )
    .await;
    env.wait_phase(&ns, "good", "Ready", Duration::from_secs(60)).await;
    let took = started.elapsed();
    let s = env.wait_phase(&ns, "bad", "Failed", Duration::from_secs(30)).await;
    assert_eq!(s["reason"], "InvalidSpec");
    assert!(s["message"].as_str().unwrap().contains("spec.settings.standardFlowEnabled"), "{s}");
    assert!(took < Duration::from_secs(30), "the valid client took {took:?}");
}
