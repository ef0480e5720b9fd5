//! Moving over from the reference operator: a Keycloak client it created (marked
//! `io.kubernetes.managed-by: keycloak-operator` with its KeycloakClient's namespace and name) is
//! taken over only when the KeycloakClient of the same namespace and name asks (`kco.dev/adopt`),
//! keeps its id and its secret, and a consumer's token request with that secret works throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use kco_testing::{client, confidential, setup, wait_for};
use reqwest::Method;
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const READY: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_reference_operators_client_is_taken_over_without_recreating_it_or_changing_its_secret() {
    let (env, ns, op) = setup(KCO, "takeover", "5m").await;
    wait_for("KeycloakRealm Ready", READY, || async {
        let r = env.get(&ns, "kco.dev/v1", "KeycloakRealm", "realm").await?;
        (r["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    // As the reference operator left it: its marks, a secret a consumer holds.
    let secret = "reference-held-secret-4f1c9a";
    env.keycloak_send(
        Method::POST,
        &format!("{ns}/clients"),
        Some(json!({"clientId": "legacy", "secret": secret, "publicClient": false, "serviceAccountsEnabled": true,
            "standardFlowEnabled": false, "directAccessGrantsEnabled": false,
            "attributes": {"io.kubernetes.managed-by": "keycloak-operator", "io.kubernetes.operator-instance": "ref",
                "io.kubernetes.cr-namespace": ns, "io.kubernetes.cr-name": "legacy"}})),
    )
    .await;
    let found = env.keycloak_get(&format!("{ns}/clients?clientId=legacy")).await.unwrap();
    let id = found[0]["id"].as_str().unwrap().to_string();
    let token_url = format!("{}/realms/{ns}/protocol/openid-connect/token", env.keycloak_url);
    env.client_credentials(&token_url, "legacy", secret).await.unwrap();

    // Not asked: refused, naming the reference operator's object; nothing written to the client.
    let spec = confidential("legacy", json!({}));
    env.apply(&ns, client("legacy", spec.clone())).await;
    let s = env.wait_phase(&ns, "legacy", "Failed", READY).await;
    assert_eq!(s["reason"], "Conflict", "{s}");
    assert!(
        s["message"].as_str().unwrap().contains(&format!("reference operator's KeycloakClient {ns}/legacy")),
        "{s}"
    );
    assert_eq!(op.counter("kco_keycloak_requests", &[("method", "PUT"), ("kind", "client")]).await, 0);

    // Asked: taken over in place.
    let mut adopting = client("legacy", spec);
    adopting["metadata"]["annotations"] = json!({"kco.dev/adopt": "true"});
    env.apply(&ns, adopting).await;
    let s = env.wait_phase(&ns, "legacy", "Ready", READY).await;
    assert_eq!(s["internalId"], id.as_str(), "the client was not re-created");
    let data = env.secret_data(&ns, "legacy-credentials").await.unwrap();
    assert_eq!(data["client-secret"], secret, "the managed Secret holds the secret consumers already hold");
    env.client_credentials(&token_url, "legacy", secret).await.unwrap();
    let c = env.keycloak_get(&format!("{ns}/clients/{id}")).await.unwrap();
    assert!(c["attributes"]["kco.dev/owner"].as_str().unwrap().starts_with(&format!("{ns}/legacy/")), "{c}");
    assert_eq!(op.counter("kco_keycloak_requests", &[("method", "POST"), ("kind", "client-secret")]).await, 0);
}
