//! `kco convert`: every example manifest of the reference (tests/reference/, from seed 002), converted
//! to kco.dev/v1, reaches Ready under the operator against the real Keycloak and apiserver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::process::Command;
use std::time::Duration;

use kco_testing::{setup, wait_for};
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");

#[tokio::test]
async fn every_reference_example_converted_reaches_ready_under_the_operator() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/reference");
    let out = Command::new(KCO).args(["convert", "-f", dir]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{report}");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(docs.len(), 4);
    for d in &docs {
        assert_eq!(d["apiVersion"], "kco.dev/v1");
        let name = d["metadata"]["name"].as_str().unwrap();
        assert!(report.contains(&format!("KeycloakClient team-a/{name}: changed apiVersion")), "{report}");
    }

    let (env, ns, _op) = setup(KCO, "cli-conv", "10s").await;
    for (i, mut doc) in docs.into_iter().enumerate() {
        // Only the namespace and the realm are this test's own.
        doc["metadata"]["namespace"] = json!(ns);
        doc["spec"]["realmRef"] = json!({"name": "realm"});
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        if name == "documents-api" {
            // The example's role policy names realm role `editor`; the realm must have it.
            env.keycloak_send(reqwest::Method::POST, &format!("{ns}/roles"), Some(json!({"name": "editor"}))).await;
        }
        env.apply(&ns, doc).await;
        // Ready for this very generation (the minimal example and the rotation one are both `webapp`).
        let what = format!("example {i} ({name}) Ready at its generation");
        wait_for(&what, Duration::from_secs(120), || async {
            let obj = env.get(&ns, "kco.dev/v1", "KeycloakClient", &name).await?;
            (obj["status"]["phase"] == "Ready" && obj["status"]["observedGeneration"] == obj["metadata"]["generation"])
                .then_some(())
        })
        .await;
    }
}
