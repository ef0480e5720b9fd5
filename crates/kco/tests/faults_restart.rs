//! The servers themselves fail in the middle of a run: Keycloak SIGKILLed and restarted while
//! clients are being created, and kube-apiserver restarted mid-run. These restart the servers every
//! test shares (`dev/testenv restart`), so they live in their own test binary (Cargo runs test
//! binaries one at a time) and run one after the other. The end state is checked object by object
//! against Keycloak's own record (`Env::audit`). Sizes grow with `KCO_FAULT_CLIENTS`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use kco_testing::{Env, Operator, audited_client};

const KCO: &str = env!("CARGO_BIN_EXE_kco");

/// One restart at a time: both tests restart servers the other one uses.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn clients(default: usize) -> usize {
    std::env::var("KCO_FAULT_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `dev/testenv restart NAME --kill`: SIGKILL the server, start it again with its data, wait until ready.
async fn restart(name: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/testenv");
    let out = tokio::process::Command::new(script).args(["restart", name, "--kill"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "dev/testenv restart {name} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn audited_namespace(env: &Env, prefix: &str) -> String {
    let ns = env.namespace(prefix).await;
    env.audited_realm(&ns).await;
    env.keycloak_setup(&ns, &ns).await;
    ns
}

async fn ready_count(env: &Env, ns: &str, names: &[String]) -> usize {
    let phases = env.phases(ns).await;
    names.iter().filter(|n| phases.get(*n).is_some_and(|p| p == "Ready")).count()
}

#[tokio::test]
async fn keycloak_killed_while_clients_are_created_then_restarted() {
    let _serial = SERIAL.lock().await;
    let n = clients(60);
    let env = Env::connect().await;
    let ns = audited_namespace(&env, "kcdown").await;
    let names: Vec<String> = (0..n).map(|i| format!("kcdown-{i}")).collect();
    // Every object first, then the operator: it works through all of them at Keycloak's pace, so the
    // kill lands mid-run at any size (applied one by one beside a running operator, 500 clients were
    // all Ready before the last was applied).
    for name in &names {
        env.apply(&ns, audited_client(name)).await;
    }
    let _op = Operator::start(KCO, &ns, &["--resync", "30m"]).await;
    // Mid-run: some clients are Ready, most are not.
    kco_testing::wait_for("the first clients Ready", Duration::from_secs(300), || async {
        (ready_count(&env, &ns, &names).await >= n / 6).then_some(())
    })
    .await;
    let before = ready_count(&env, &ns, &names).await;
    assert!(before < n, "every client was Ready before Keycloak was killed: the test did not test a kill mid-run");
    restart("keycloak").await;
    env.wait_all_ready(&ns, &names, Duration::from_secs(600 + 2 * n as u64)).await;
    env.audit(&ns, &ns, "kcdown-", &names).await;
    eprintln!("Keycloak SIGKILLed with {before}/{n} clients Ready, restarted; all {n} Ready, nothing lost");
}

#[tokio::test]
async fn kube_apiserver_restarted_mid_run() {
    let _serial = SERIAL.lock().await;
    let n = clients(60);
    let env = Env::connect().await;
    let ns = audited_namespace(&env, "apidown").await;
    let op = Operator::start(KCO, &ns, &["--resync", "30m"]).await;
    let names: Vec<String> = (0..n).map(|i| format!("apidown-{i}")).collect();
    let (first, second) = names.split_at(n / 2);
    for name in first {
        env.apply(&ns, audited_client(name)).await;
    }
    kco_testing::wait_for("the first clients Ready", Duration::from_secs(300), || async {
        (ready_count(&env, &ns, first).await >= first.len() / 3).then_some(())
    })
    .await;
    restart("apiserver").await;
    // Watches resume: objects made after the restart are seen without waiting for a resync.
    let env = Env::connect().await;
    for name in second {
        env.apply(&ns, audited_client(name)).await;
    }
    env.wait_all_ready(&ns, &names, Duration::from_secs(300 + 2 * n as u64)).await;
    env.audit(&ns, &ns, "apidown-", &names).await;
    // No duplicate writes: each client costs kco three Keycloak writes (client, role, grant).
    let writes = op.keycloak_writes().await;
    assert!(writes <= 3 * n as u64, "{writes} Keycloak writes for {n} clients");
}
