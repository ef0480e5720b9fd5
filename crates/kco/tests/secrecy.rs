//! Credentials stay secret: with every log at trace level, a workload that creates, rotates,
//! regenerates and copies secrets leaves no secret value in the operator's log, in any Event, or in
//! any status. The test greps for every value it saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kco_testing::{Env, Operator, wait_for};
use kube::Api;
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const READY: Duration = Duration::from_secs(120);

fn client(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn no_secret_value_reaches_logs_events_or_status() {
    let env = Env::connect().await;
    let ns = env.namespace("secrecy").await;
    env.keycloak_setup(&ns, &ns).await;
    let op = Operator::start_with_env(KCO, &ns, &["--resync", "2s"], &[("RUST_LOG", "trace")]).await;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    seen.insert(env.admin_password.clone());

    let user_value = "user-owned-value-5f3a9c1e7b";
    seen.insert(user_value.to_string());
    env.apply(
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "own", "labels": {"kco.dev/client-secret": "true"}}, "stringData": {"v": user_value}}),
    )
    .await;
    let sa = json!({"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false});
    env.apply(
        &ns,
        client(
            "rot",
            json!({"clientId": "rot", "realmRef": {"name": "realm"}, "settings": sa,
        "secretRotation": {"enabled": true, "rotationPeriod": "6s", "gracePeriod": "5s"},
        "additionalSecrets": [{"name": "rot-mlflow", "format": "mlflow"}]}),
        ),
    )
    .await;
    env.apply(
        &ns,
        client(
            "own",
            json!({"clientId": "own", "realmRef": {"name": "realm"}, "settings": sa,
        "clientSecret": {"name": "own", "key": "v"}}),
        ),
    )
    .await;
    env.apply(
        &ns,
        client(
            "regen",
            json!({"clientId": "regen", "realmRef": {"name": "realm"}, "settings": sa,
        "regenerateSecret": true}),
        ),
    )
    .await;
    for name in ["rot", "own", "regen"] {
        env.wait_phase(&ns, name, "Ready", READY).await;
    }
    // Collect secrets across two rotations of "rot".
    for _ in 0..2 {
        let current = env.secret_data(&ns, "rot-credentials").await.unwrap()["client-secret"].clone();
        seen.insert(current.clone());
        wait_for("a rotation", Duration::from_secs(30), || async {
            let v = env.secret_data(&ns, "rot-credentials").await?["client-secret"].clone();
            (v != current).then_some(())
        })
        .await;
    }
    for name in ["rot-credentials", "own-credentials", "regen-credentials", "rot-mlflow"] {
        for (k, v) in env.secret_data(&ns, name).await.unwrap() {
            if k.contains("SECRET") || k == "client-secret" {
                seen.insert(v);
            }
        }
    }
    assert!(seen.len() >= 5, "too few secrets collected: {}", seen.len());
    let log_path = op.log.clone();
    op.stop().await;

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("TRACE"), "the operator did not log at trace level");
    let events: Api<Event> = Api::namespaced(env.kube.clone(), &ns);
    let events = serde_json::to_string(&events.list(&Default::default()).await.unwrap().items).unwrap();
    let mut statuses = String::new();
    for name in ["rot", "own", "regen"] {
        statuses.push_str(&env.client_status(&ns, name).await.to_string());
    }
    for secret in &seen {
        assert!(!log.contains(secret.as_str()), "a secret value appears in the operator log");
        assert!(!events.contains(secret.as_str()), "a secret value appears in an Event");
        assert!(!statuses.contains(secret.as_str()), "a secret value appears in a status");
    }
}
