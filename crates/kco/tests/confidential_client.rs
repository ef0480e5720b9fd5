//! The seed how-to's confidential client, end to end against the real Keycloak and kube-apiserver:
//! created in Keycloak, credentials in a Secret that really gets a token, status, no-op resync,
//! deletion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::time::Duration;

use kco_testing::{Env, Operator, wait_for};
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");

#[tokio::test]
async fn confidential_client_end_to_end() {
    let env = Env::connect().await;
    let ns = env.namespace("cc").await;
    let realm = ns.clone();
    env.keycloak_setup(&ns, &realm).await;
    let op = Operator::start(KCO, &ns, &["--resync", "2s"]).await;

    env.apply(&ns, json!({
        "apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "my-service"},
        "spec": {
            "clientId": "my-service", "clientName": "My Service Client",
            "realmRef": {"name": "realm"},
            "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false}
        }
    }))
    .await;
    let status = env.wait_phase(&ns, "my-service", "Ready", Duration::from_secs(120)).await;

    // Status tells the truth.
    let internal_id = status["internalId"].as_str().expect("internalId").to_string();
    let issuer = format!("{}/realms/{realm}", env.keycloak_url);
    assert_eq!(status["clientId"], "my-service");
    assert_eq!(status["realm"], realm.as_str());
    assert_eq!(status["credentialsSecret"], "my-service-credentials");
    assert_eq!(status["endpoints"]["issuer"], issuer.as_str());
    assert_eq!(status["keycloakInstance"], format!("{ns}/local"));
    assert_eq!(status["authorizationGranted"], true);
    let obj = env.get(&ns, "kco.dev/v1", "KeycloakClient", "my-service").await.unwrap();
    assert_eq!(status["observedGeneration"], obj["metadata"]["generation"]);
    assert!(obj["metadata"]["finalizers"].as_array().unwrap().iter().any(|f| f == "kco.dev/cleanup"));
    let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "True");
    let realm_status = wait_for("KeycloakRealm Ready", Duration::from_secs(30), || async {
        let r = env.get(&ns, "kco.dev/v1", "KeycloakRealm", "realm").await?;
        (r["status"]["phase"] == "Ready").then(|| r["status"].clone())
    })
    .await;
    assert!(realm_status["message"].as_str().unwrap().contains(&realm), "{realm_status}");

    // Keycloak has the client exactly as the confidential-client pattern needs it.
    let c = env.keycloak_get(&format!("{realm}/clients/{internal_id}")).await.expect("client exists in Keycloak");
    assert_eq!(c["clientId"], "my-service");
    assert_eq!(c["name"], "My Service Client");
    assert_eq!(c["enabled"], true);
    assert_eq!(c["publicClient"], false);
    assert_eq!(c["serviceAccountsEnabled"], true);
    assert_eq!(c["standardFlowEnabled"], false);
    assert_eq!(c["directAccessGrantsEnabled"], false);
    assert_eq!(
        c["attributes"]["kco.dev/owner"].as_str().unwrap(),
        format!("{ns}/my-service/{}", obj["metadata"]["uid"].as_str().unwrap())
    );

    // The Secret works: a client-credentials grant with exactly its values returns a token for this client.
    let data = env.secret_data(&ns, "my-service-credentials").await.expect("managed Secret");
    for key in ["client-id", "client-secret", "issuer", "token-endpoint", "auth-endpoint"] {
        assert!(data.contains_key(key), "Secret lacks {key}");
    }
    assert_eq!(data["client-id"], "my-service");
    assert_eq!(data["issuer"], issuer);
    let claims =
        env.client_credentials(&data["token-endpoint"], &data["client-id"], &data["client-secret"]).await.unwrap();
    assert_eq!(claims["azp"], "my-service");
    assert_eq!(claims["iss"], data["issuer"].as_str());
    let secret = env.get(&ns, "v1", "Secret", "my-service-credentials").await.unwrap();
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "KeycloakClient");
    assert_eq!(owner["uid"], obj["metadata"]["uid"]);

    // Nothing to do → no writes, to Keycloak or Kubernetes, and no apiserver reads (realm,
    // instance, admin Secret and managed Secret come from the watches' caches), across several resyncs.
    let kc_writes = op.keycloak_writes().await;
    let kube_writes = op.kubernetes_writes().await;
    let kube_gets = op.counter("kco_kubernetes_requests", &[("kind", "get")]).await;
    assert!(kube_gets > 0, "the request counter counts (the initial lists are GETs)");
    let reconciles = op.counter("kco_reconciliations", &[("result", "ok")]).await;
    wait_for("two more reconciles", Duration::from_secs(30), || async {
        (op.counter("kco_reconciliations", &[("result", "ok")]).await >= reconciles + 2).then_some(())
    })
    .await;
    assert_eq!(op.keycloak_writes().await, kc_writes, "a no-op resync wrote to Keycloak");
    assert_eq!(op.kubernetes_writes().await, kube_writes, "a no-op resync wrote to Kubernetes");
    assert_eq!(
        op.counter("kco_kubernetes_requests", &[("kind", "get")]).await,
        kube_gets,
        "a no-op resync read from the apiserver"
    );
    // The admin token is fetched once and reused (refreshed only near its 60 s expiry), not per request.
    let tokens = op.counter("kco_keycloak_requests", &[("kind", "token")]).await;
    let requests = op.counter("kco_keycloak_requests", &[]).await;
    assert!(tokens <= 2 && requests >= 10 * tokens, "{tokens} admin tokens for {requests} requests");

    // Deleting the object deletes the Keycloak client, then releases the finalizer.
    env.delete(&ns, json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "my-service"}}))
        .await;
    wait_for("KeycloakClient gone", Duration::from_secs(60), || async {
        env.get(&ns, "kco.dev/v1", "KeycloakClient", "my-service").await.is_none().then_some(())
    })
    .await;
    assert!(env.keycloak_get(&format!("{realm}/clients/{internal_id}")).await.is_none(), "client still in Keycloak");
    op.stop().await;
}
