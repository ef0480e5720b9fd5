//! Leader election (`kco run --leader-election`): of two operators on the same Lease exactly one
//! writes; a SIGKILLed leader is replaced within the lease duration plus a reconcile; a SIGTERMed
//! leader releases the Lease and hands over in under 2 s. Prints the measured times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use kco_testing::{Env, Operator, wait_for};
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const LEASE_SECS: u64 = 6;

async fn candidate(ns: &str, id: &str) -> Operator {
    let lease = format!("{LEASE_SECS}s");
    Operator::start(
        KCO,
        ns,
        &["--leader-election", "--lease-namespace", ns, "--lease-duration", &lease, "--leader-id", id],
    )
    .await
}

async fn is_leader(op: &Operator) -> bool {
    op.counter("kco_leader", &[]).await == 1
}

fn client(name: &str) -> serde_json::Value {
    json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": name},
        "spec": {"clientId": name, "realmRef": {"name": "realm"},
                 "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false}}})
}

#[tokio::test]
async fn one_leader_writes_and_failover_is_bounded() {
    let env = Env::connect().await;
    let ns = env.namespace("leader").await;
    env.keycloak_setup(&ns, &ns).await;

    let a = candidate(&ns, "a").await;
    wait_for("a leads", Duration::from_secs(20), || async { is_leader(&a).await.then_some(()) }).await;
    // A standby is Ready too (it serves /readyz), so it is counted by rollouts and the PDB.
    let b = candidate(&ns, "b").await;
    assert!(!is_leader(&b).await, "b must be a standby while a leads");

    env.apply(&ns, client("one")).await;
    env.wait_phase(&ns, "one", "Ready", Duration::from_secs(120)).await;
    assert!(a.keycloak_writes().await > 0 && a.kubernetes_writes().await > 0, "the leader wrote");
    assert_eq!(b.keycloak_writes().await, 0, "the standby made no Keycloak write");
    assert_eq!(b.kubernetes_writes().await, 0, "the standby made no Kubernetes write");
    assert_eq!(b.counter("kco_reconciliations", &[]).await, 0, "the standby reconciled nothing");

    // SIGKILL: no release; b takes over once the Lease expires.
    a.stop().await;
    let killed = Instant::now();
    env.apply(&ns, client("two")).await;
    env.wait_phase(&ns, "two", "Ready", Duration::from_secs(LEASE_SECS + 60)).await;
    let failover = killed.elapsed();
    println!("failover after SIGKILL of the leader: {:.2}s (lease {LEASE_SECS}s)", failover.as_secs_f64());
    assert!(is_leader(&b).await);
    assert!(failover < Duration::from_secs(LEASE_SECS + 30), "failover took {failover:?}");

    // SIGTERM: the leader releases the Lease; the standby leads at its next poll.
    let c = candidate(&ns, "c").await;
    assert!(!is_leader(&c).await);
    let pid = b.pid().unwrap();
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let termed = Instant::now();
    wait_for("c leads after SIGTERM of b", Duration::from_secs(10), || async { is_leader(&c).await.then_some(()) })
        .await;
    let handover = termed.elapsed();
    println!("handover after SIGTERM of the leader: {:.2}s", handover.as_secs_f64());
    assert!(handover < Duration::from_secs(2), "handover took {handover:?}");
    env.apply(&ns, client("three")).await;
    env.wait_phase(&ns, "three", "Ready", Duration::from_secs(120)).await;
    c.stop().await;
}
