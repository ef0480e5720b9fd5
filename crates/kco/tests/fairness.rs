//! Fairness between namespaces: one namespace applying many KeycloakClients at once does not starve
//! another, and invalid objects at volume do not slow valid ones. The operator watches every
//! namespace here, narrowed by `--selector` to this test's clients (other tests' objects are left
//! alone). Sizes: `KCO_FAIRNESS_CLIENTS` busy clients (default 300; `dev/test --long`: 2,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use kco_testing::{Env, Operator, confidential, unique, wait_for};
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const LABEL: &str = "kco.dev/test-shard";

fn labelled(name: &str, shard: &str, spec: Value) -> Value {
    json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
           "metadata": {"name": name, "labels": {LABEL: shard}}, "spec": spec})
}

async fn phase_count(env: &Env, ns: &str, phase: &str) -> usize {
    env.phases(ns).await.values().filter(|p| *p == phase).count()
}

#[tokio::test]
async fn a_busy_namespace_does_not_starve_a_quiet_one() {
    let n: usize = std::env::var("KCO_FAIRNESS_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let env = Env::connect().await;
    let shard = unique();
    let busy = env.namespace("busy").await;
    let quiet = env.namespace("quiet").await;
    let broken = env.namespace("broken").await;
    for ns in [&busy, &quiet, &broken] {
        env.keycloak_setup(ns, ns).await;
    }
    let selector = format!("{LABEL}={shard}");
    let op =
        Operator::start_all_namespaces(KCO, &["--selector", &selector, "--resync", "30m", "--concurrency", "4"]).await;

    // Invalid objects at volume first: each is refused by validation (Failed), before any Keycloak work.
    let invalid = n / 2; // 1,000 with --long
    for i in 0..invalid {
        let spec = json!({"clientId": format!("bad-{i}"), "realmRef": {"name": "realm"},
                          "additionalSecrets": [{"name": "app-oidc", "keys": {"CLIENT ID": "{{clientId}}"}}]});
        env.apply(&broken, labelled(&format!("bad-{i}"), &shard, spec)).await;
    }
    let started = Instant::now();
    for i in 0..n {
        let name = format!("svc-{i}");
        env.apply(&busy, labelled(&name, &shard, confidential(&name, json!({})))).await;
    }
    eprintln!("applied {invalid} invalid and {n} valid clients in {:?}", started.elapsed());
    wait_for("the busy namespace under way", Duration::from_secs(300), || async {
        (phase_count(&env, &busy, "Ready").await >= 10).then_some(())
    })
    .await;
    let backlog = n - phase_count(&env, &busy, "Ready").await;

    let t = Instant::now();
    env.apply(&quiet, labelled("one", &shard, confidential("one", json!({})))).await;
    env.wait_phase(&quiet, "one", "Ready", Duration::from_secs(120)).await;
    let waited = t.elapsed();
    let still = n - phase_count(&env, &busy, "Ready").await;
    eprintln!(
        "quiet namespace: Ready in {waited:?} while the busy one had {backlog} clients not Ready ({still} after)"
    );
    assert!(
        still >= 10,
        "the busy namespace finished too soon ({still} left) to show anything; raise KCO_FAIRNESS_CLIENTS"
    );
    assert!(waited <= Duration::from_secs(5), "the quiet namespace waited {waited:?} behind {backlog} busy clients");

    // Every invalid object says why, and the busy namespace completes.
    wait_for("every invalid object Failed", Duration::from_secs(300), || async {
        (phase_count(&env, &broken, "Failed").await == invalid).then_some(())
    })
    .await;
    wait_for("the busy namespace all Ready", Duration::from_secs(1800), || async {
        (phase_count(&env, &busy, "Ready").await == n).then_some(())
    })
    .await;
    eprintln!("all {n} busy clients Ready after {:?}", started.elapsed());
    drop(op);
}
