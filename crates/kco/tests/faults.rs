//! Faults between kco and Keycloak, and in kco itself, with the end state checked object by object
//! against Keycloak's own record (`Env::audit`: admin events, clients, roles, grants, secrets):
//! a slow and flaky network (Toxiproxy from `dev/testenv`), a create whose answer is lost after
//! Keycloak committed it, and the operator SIGKILLed at random points of a run. Sizes grow with
//! `KCO_FAULT_CLIENTS` (`dev/test --long` sets it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use kco_testing::{Env, Operator, Toxiproxy, audited_client, event_notes, wait_for};
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");

/// Clients per fault run: `KCO_FAULT_CLIENTS`, else `default`.
fn clients(default: usize) -> usize {
    std::env::var("KCO_FAULT_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A namespace whose Keycloak realm (same name) has admin events on, reached by kco at `admin_url`
/// (the real Keycloak when `None`).
async fn audited_namespace(env: &Env, prefix: &str, admin_url: Option<&str>) -> String {
    let ns = env.namespace(prefix).await;
    env.audited_realm(&ns).await;
    env.keycloak_setup_via(&ns, &ns, admin_url.unwrap_or(&env.keycloak_url)).await;
    ns
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn apply_all(env: &Env, ns: &str, names: &[String]) {
    for name in names {
        env.apply(ns, audited_client(name)).await;
    }
}

#[tokio::test]
async fn slow_and_flaky_keycloak_converges_with_bounded_retries() {
    let n = clients(16);
    let env = Env::connect().await;
    let proxy = Toxiproxy::keycloak(&env).await;
    // 2 s on every request toward Keycloak, and 1 % of connections reset.
    proxy
        .add(json!({"name": "latency", "type": "latency", "stream": "upstream", "attributes": {"latency": 2000}}))
        .await;
    proxy
        .add(json!({"name": "resets", "type": "reset_peer", "stream": "upstream", "toxicity": 0.01,
                     "attributes": {"timeout": 0}}))
        .await;
    let ns = audited_namespace(&env, "slow", Some(&proxy.url())).await;
    let op = Operator::start(KCO, &ns, &["--resync", "30m"]).await;
    let names = names("slow", n);
    apply_all(&env, &ns, &names).await;
    // Every request takes 2 s and kco talks to one Keycloak 8 reconciles at a time.
    env.wait_all_ready(&ns, &names, Duration::from_secs(120 + 4 * n as u64)).await;
    env.audit(&ns, &ns, "slow-", &names).await;

    // Bounded: a healthy create of this client takes about 10 Keycloak requests; retries after
    // resets add some, a hot loop would add without end. Once the last answers are in, kco is idle.
    let mut requests = op.client_keycloak_requests().await;
    let quiet = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let now = op.client_keycloak_requests().await;
        if now == requests {
            break;
        }
        assert!(quiet.elapsed() < Duration::from_secs(180), "Keycloak requests still coming 3 minutes after Ready");
        requests = now;
    }
    let per_client = requests as f64 / n as f64;
    assert!(per_client <= 30.0, "{requests} Keycloak requests for {n} clients ({per_client:.1} each)");
    eprintln!("slow and flaky Keycloak: {n} clients Ready, {requests} Keycloak requests ({per_client:.1} per client)");
}

#[tokio::test]
async fn a_lost_create_response_is_recovered_through_the_owner_mark() {
    let env = Env::connect().await;
    let ns = audited_namespace(&env, "lost", None).await;
    let lost = 3;
    let op = Operator::start_with_env(
        KCO,
        &ns,
        &["--resync", "30m"],
        &[("KCO_FAULT_LOSE_CREATE_RESPONSES", &lost.to_string())],
    )
    .await;
    let names = names("lost", 5);
    apply_all(&env, &ns, &names).await;
    env.wait_all_ready(&ns, &names, Duration::from_secs(300)).await;
    // The fault happened: kco lost the answers to `lost` creations Keycloak had committed…
    let log = std::fs::read_to_string(&op.log).unwrap();
    assert_eq!(log.matches("losing the answer to a client creation").count(), lost, "log: {}", op.log.display());
    // …and found its own clients by their owner mark: each created once, never a Conflict.
    env.audit(&ns, &ns, "lost-", &names).await;
    for name in &names {
        let events = event_notes(&env, &ns, name).await;
        assert!(!events.iter().any(|(reason, _)| reason == "Conflict"), "{name}: {events:?}");
    }
}

/// A small deterministic generator, so a failing seed can be rerun.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[tokio::test]
async fn operator_sigkilled_at_random_points_converges() {
    let n = clients(30);
    let env = Env::connect().await;
    for seed in [1u64, 2, 3] {
        let prefix = format!("kill{seed}");
        let ns = audited_namespace(&env, &prefix, None).await;
        let names = names(&prefix, n);
        apply_all(&env, &ns, &names).await;
        let mut state = seed;
        let mut kills = Vec::new();
        for _ in 0..3 {
            let op = Operator::launch(KCO, &ns, &["--resync", "30m"], &[]);
            let after = Duration::from_millis(300 + next(&mut state) % 4000);
            tokio::time::sleep(after).await;
            op.stop().await; // SIGKILL
            kills.push(after);
        }
        let _op = Operator::start(KCO, &ns, &["--resync", "30m"]).await;
        env.wait_all_ready(&ns, &names, Duration::from_secs(300 + n as u64)).await;
        env.audit(&ns, &ns, &format!("{prefix}-"), &names).await;
        eprintln!("seed {seed}: {n} clients, SIGKILL after {kills:?} of each run; converged, nothing lost");
    }
}

#[tokio::test]
async fn cut_answers_and_an_unreachable_keycloak_converge() {
    let env = Env::connect().await;
    let proxy = Toxiproxy::keycloak(&env).await;
    let ns = audited_namespace(&env, "cut", Some(&proxy.url())).await;
    let op = Operator::start(KCO, &ns, &["--resync", "30m"]).await;
    let names = names("cut", 10);
    let (first, second) = names.split_at(5);
    // 30 % of connections cut after the first 64 bytes of an answer: requests fail mid-flight.
    proxy
        .add(json!({"name": "cut", "type": "limit_data", "stream": "downstream", "toxicity": 0.3,
                     "attributes": {"bytes": 64}}))
        .await;
    apply_all(&env, &ns, first).await;
    env.wait_all_ready(&ns, first, Duration::from_secs(300)).await;
    proxy.remove("cut").await;

    // Keycloak unreachable: new clients fail (and say so), and converge once it is back.
    proxy.set_enabled(false).await;
    let failures = op.counter("kco_reconciliations", &[("result", "error")]).await;
    apply_all(&env, &ns, second).await;
    for name in second {
        env.wait_phase(&ns, name, "Degraded", Duration::from_secs(120)).await;
    }
    // The counter moves when a reconcile returns, a moment after its Degraded status is visible.
    let want = failures + second.len() as u64;
    wait_for("an error reconcile counted per new client", Duration::from_secs(30), || async {
        (op.counter("kco_reconciliations", &[("result", "error")]).await >= want).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    proxy.set_enabled(true).await;
    env.wait_all_ready(&ns, &names, Duration::from_secs(600)).await;
    env.audit(&ns, &ns, "cut-", &names).await;
}
