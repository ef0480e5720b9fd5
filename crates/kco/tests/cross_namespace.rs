//! Seed 000's layout end to end: one KeycloakClient in `platform`, its credentials delivered to
//! `mlflow` (MLflow keys) and `observability` (collector keys) only once each namespace consented with
//! a KeycloakCredentialsGrant; rotation reaches both, revoking consent stops writes there, deletion
//! removes them (no owner references across namespaces).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::time::Duration;

use kco_testing::{Env, Operator, client, confidential, wait_for};
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const READY: Duration = Duration::from_secs(120);

fn grant(sender: &str, spec: Value) -> Value {
    json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakCredentialsGrant", "metadata": {"name": sender}, "spec": spec})
}

async fn secret(env: &Env, ns: &str, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
    env.secret_data(ns, name).await
}

#[tokio::test]
async fn credentials_reach_other_namespaces_only_with_their_consent() {
    let env = Env::connect().await;
    let platform = env.namespace("platform").await;
    let mlflow = env.namespace("mlflow").await;
    let observability = env.namespace("observability").await;
    env.keycloak_setup(&platform, &platform).await;
    let op = Operator::start(KCO, &platform, &["--resync", "2s"]).await;

    let spec = |regenerate: bool| {
        confidential(
            "mlflow-auth",
            json!({"regenerateSecret": regenerate, "additionalSecrets": [
                {"name": "mlflow-oidc", "namespace": mlflow, "format": "mlflow"},
                {"name": "collector-oidc", "namespace": observability, "format": "otel-collector"}]}),
        )
    };
    env.apply(&platform, client("mlflow-auth", spec(false))).await;

    // No consent yet: Failed, naming the grant each namespace needs; nothing written there.
    let s = wait_for("Failed naming both grants", READY, || async {
        let s = env.client_status(&platform, "mlflow-auth").await;
        (s["phase"] == "Failed" && s["message"].as_str()?.contains(&observability)).then_some(s)
    })
    .await;
    assert_eq!(s["reason"], "CredentialsNotAccepted");
    let message = s["message"].as_str().unwrap();
    for ns in [&mlflow, &observability] {
        assert!(
            message.contains(&format!("create a KeycloakCredentialsGrant named {platform} in namespace {ns}")),
            "{message}"
        );
        assert!(secret(&env, ns, if ns == &mlflow { "mlflow-oidc" } else { "collector-oidc" }).await.is_none());
    }
    // The sender's own Secret is written regardless.
    let own = secret(&env, &platform, "mlflow-auth-credentials").await.unwrap();

    // Both receivers consent (one for this client by name, one for every client of platform).
    env.apply(&mlflow, grant(&platform, json!({"clients": ["mlflow-auth"]}))).await;
    env.apply(&observability, grant(&platform, json!({}))).await;
    env.wait_phase(&platform, "mlflow-auth", "Ready", READY).await;
    let token_url = own["token-endpoint"].clone();
    let m = secret(&env, &mlflow, "mlflow-oidc").await.unwrap();
    let o = secret(&env, &observability, "collector-oidc").await.unwrap();
    assert_eq!(m["OIDC_TOKEN_URL"], token_url);
    env.client_credentials(&m["OIDC_TOKEN_URL"], &m["OIDC_CLIENT_ID"], &m["OIDC_CLIENT_SECRET"]).await.unwrap();
    env.client_credentials(&token_url, &o["MLFLOW_CLIENT_ID"], &o["MLFLOW_CLIENT_SECRET"]).await.unwrap();
    // Labels, not owner references, tie them to the KeycloakClient.
    let raw = env.get(&mlflow, "v1", "Secret", "mlflow-oidc").await.unwrap();
    assert!(raw["metadata"]["ownerReferences"].is_null(), "{raw}");
    let uid =
        env.get(&platform, "kco.dev/v1", "KeycloakClient", "mlflow-auth").await.unwrap()["metadata"]["uid"].clone();
    assert_eq!(raw["metadata"]["labels"]["kco.dev/owner-uid"], uid);
    assert_eq!(raw["metadata"]["annotations"]["kco.dev/owner"], format!("{platform}/mlflow-auth"));

    // Rotation (a requested regeneration) updates both.
    let old = m["OIDC_CLIENT_SECRET"].clone();
    env.apply(&platform, client("mlflow-auth", spec(true))).await;
    let rotated = wait_for("both Secrets rotated", READY, || async {
        let m = secret(&env, &mlflow, "mlflow-oidc").await?;
        let o = secret(&env, &observability, "collector-oidc").await?;
        (m["OIDC_CLIENT_SECRET"] != old && o["MLFLOW_CLIENT_SECRET"] == m["OIDC_CLIENT_SECRET"])
            .then(|| m["OIDC_CLIENT_SECRET"].clone())
    })
    .await;
    env.client_credentials(&token_url, "mlflow-auth", &rotated).await.unwrap();
    env.client_credentials(&token_url, "mlflow-auth", &old).await.unwrap_err();
    env.apply(&platform, client("mlflow-auth", spec(false))).await;
    wait_for("regeneration record cleared", READY, || async {
        let s = env.client_status(&platform, "mlflow-auth").await;
        (s["phase"] == "Ready" && s["regeneratedGeneration"].is_null()).then_some(())
    })
    .await;

    // observability revokes its consent: the next rotation reaches mlflow only, and says why.
    env.delete(&observability, grant(&platform, json!({}))).await;
    env.apply(&platform, client("mlflow-auth", spec(true))).await;
    let s = wait_for("Failed after the revoke", READY, || async {
        let s = env.client_status(&platform, "mlflow-auth").await;
        let regenerated = !s["regeneratedGeneration"].is_null();
        (s["phase"] == "Failed" && s["reason"] == "CredentialsNotAccepted" && regenerated).then_some(s)
    })
    .await;
    assert!(!s["message"].as_str().unwrap().contains(&format!("namespace {mlflow}:")), "{s}");
    let m = secret(&env, &mlflow, "mlflow-oidc").await.unwrap();
    assert_ne!(m["OIDC_CLIENT_SECRET"], rotated, "the consenting namespace still gets the rotation");
    assert_eq!(secret(&env, &observability, "collector-oidc").await.unwrap()["MLFLOW_CLIENT_SECRET"], rotated);
    env.client_credentials(&token_url, "mlflow-auth", &m["OIDC_CLIENT_SECRET"]).await.unwrap();

    // Deleting the KeycloakClient removes its Secrets everywhere, consent or not.
    env.delete(&platform, client("mlflow-auth", json!({}))).await;
    wait_for("remote Secrets deleted", READY, || async {
        let gone = secret(&env, &mlflow, "mlflow-oidc").await.is_none()
            && secret(&env, &observability, "collector-oidc").await.is_none();
        gone.then_some(())
    })
    .await;
    drop(op);
}
