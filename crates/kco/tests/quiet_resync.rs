//! Quiet resyncs (#11): in a realm that keeps admin events, a resync reads back only the clients an
//! event since their last full check may concern. What these tests show against the real Keycloak:
//! an idle client is not read at its resyncs; a change made by hand to its settings, its roles or its
//! service account's grants is still reverted at the next resync, its deleted Secret made again; a realm without admin events (or
//! one that turns them off) has every client read at every resync; `--full-resync` reads idle
//! clients whole anyway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::time::Duration;

use kco_testing::{AUDIT_CLIENT_ROLE, AUDIT_REALM_ROLE, Env, Operator, audited_client, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");

/// Reads of the client itself (`GET client`) so far.
async fn client_reads(op: &Operator) -> u64 {
    op.counter("kco_keycloak_requests", &[("method", "GET"), ("kind", "client")]).await
}

/// Reads of the client over `window`.
async fn reads_over(op: &Operator, window: Duration) -> u64 {
    let before = client_reads(op).await;
    tokio::time::sleep(window).await;
    client_reads(op).await - before
}

/// Wait until `op` reads no client over `window` (several resyncs).
async fn until_quiet(op: &Operator, window: Duration) {
    wait_for("resyncs that read nothing", Duration::from_secs(60), || async {
        (reads_over(op, window).await == 0).then_some(())
    })
    .await;
}

/// Turn on the client's direct access grants by hand (the spec says off), and wait until kco has
/// turned them off again.
async fn drift_and_wait_reverted(env: &Env, path: &str, what: &str) {
    let mut rep: Value = env.keycloak_get(path).await.unwrap();
    assert_eq!(rep["directAccessGrantsEnabled"], false);
    rep["directAccessGrantsEnabled"] = json!(true);
    env.keycloak_send(Method::PUT, path, Some(rep)).await;
    wait_for(what, Duration::from_secs(30), || async {
        let rep = env.keycloak_get(path).await?;
        (rep["directAccessGrantsEnabled"] == false).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_idle_client_is_not_read_and_a_change_by_hand_is_still_reverted() {
    let env = Env::connect().await;
    let ns = env.namespace("quiet").await;
    env.audited_realm(&ns).await;
    env.keycloak_setup(&ns, &ns).await;
    let op = Operator::start(KCO, &ns, &["--resync", "2s"]).await;
    env.apply(&ns, audited_client("svc")).await;
    let status = env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(120)).await;
    let id = status["internalId"].as_str().unwrap().to_string();
    let path = format!("{ns}/clients/{id}");
    // One resync reads the client back after kco created it, then resyncs read nothing.
    until_quiet(&op, Duration::from_secs(5)).await;

    // 1. A setting the spec manages, changed in the console.
    drift_and_wait_reverted(&env, &path, "the setting reverted").await;
    until_quiet(&op, Duration::from_secs(5)).await;

    // 2. The service account's realm role, revoked by hand.
    let user =
        env.keycloak_get(&format!("{path}/service-account-user")).await.unwrap()["id"].as_str().unwrap().to_string();
    let role = env.keycloak_get(&format!("{ns}/roles/{AUDIT_REALM_ROLE}")).await.unwrap();
    env.keycloak_send(Method::DELETE, &format!("{ns}/users/{user}/role-mappings/realm"), Some(json!([role]))).await;
    assert!(!env.realm_roles_of(&ns, &user).await.contains(&AUDIT_REALM_ROLE.to_string()));
    wait_for("the grant made again", Duration::from_secs(30), || async {
        env.realm_roles_of(&ns, &user).await.contains(&AUDIT_REALM_ROLE.to_string()).then_some(())
    })
    .await;
    until_quiet(&op, Duration::from_secs(5)).await;

    // 3. The client role, deleted by hand (a realm-wide event: every client is read again once).
    env.keycloak_send(Method::DELETE, &format!("{path}/roles/{AUDIT_CLIENT_ROLE}"), None).await;
    wait_for("the client role made again", Duration::from_secs(30), || async {
        env.keycloak_get(&format!("{path}/roles/{AUDIT_CLIENT_ROLE}")).await
    })
    .await;
    until_quiet(&op, Duration::from_secs(5)).await;

    // 4. Its managed Secret deleted by hand (Kubernetes, no admin event): made again at once.
    let before = env.secret_data(&ns, "svc-credentials").await.unwrap();
    env.delete(&ns, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "svc-credentials"}})).await;
    let again =
        wait_for("the Secret made again", Duration::from_secs(30), || env.secret_data(&ns, "svc-credentials")).await;
    assert_eq!(again.get("client-secret"), before.get("client-secret"), "the same secret, read from Keycloak");
    until_quiet(&op, Duration::from_secs(5)).await;

    // 5. Admin events turned off, then a change that leaves no event: every resync reads again, and
    //    the change is reverted.
    env.keycloak_send(Method::PUT, &format!("{ns}/events/config"), Some(json!({"adminEventsEnabled": false}))).await;
    drift_and_wait_reverted(&env, &path, "the setting reverted without events").await;
    assert!(reads_over(&op, Duration::from_secs(5)).await >= 2, "without admin events every resync reads the client");
    env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(30)).await;
    op.stop().await;
}

#[tokio::test]
async fn without_admin_events_or_at_the_full_resync_every_client_is_read() {
    let env = Env::connect().await;
    // A realm with admin events off (Keycloak's default).
    let ns = env.namespace("quiet").await;
    env.audited_realm(&ns).await;
    env.keycloak_send(Method::PUT, &format!("{ns}/events/config"), Some(json!({"adminEventsEnabled": false}))).await;
    env.keycloak_setup(&ns, &ns).await;
    let op = Operator::start(KCO, &ns, &["--resync", "2s"]).await;
    env.apply(&ns, audited_client("svc")).await;
    env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(120)).await;
    assert!(reads_over(&op, Duration::from_secs(7)).await >= 2, "no admin events: every resync reads the client");
    op.stop().await;

    // Admin events on, with a full read every 4 s whatever they say.
    let ns = env.namespace("quiet").await;
    env.audited_realm(&ns).await;
    env.keycloak_setup(&ns, &ns).await;
    let op = Operator::start(KCO, &ns, &["--resync", "2s", "--full-resync", "4s"]).await;
    env.apply(&ns, audited_client("svc")).await;
    env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(120)).await;
    let reads = reads_over(&op, Duration::from_secs(13)).await;
    assert!((2..=5).contains(&reads), "a full read every 4 s, not at every 2 s resync: {reads} in 13 s");
    op.stop().await;

    // And with --admin-events=false, events on the realm are not used.
    let ns = env.namespace("quiet").await;
    env.audited_realm(&ns).await;
    env.keycloak_setup(&ns, &ns).await;
    let op = Operator::start(KCO, &ns, &["--resync", "2s", "--admin-events=false"]).await;
    env.apply(&ns, audited_client("svc")).await;
    env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(120)).await;
    assert!(reads_over(&op, Duration::from_secs(7)).await >= 2, "--admin-events=false: every resync reads the client");
    op.stop().await;
}
