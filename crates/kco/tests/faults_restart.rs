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
    restart_with(name, &["--kill"]).await;
}

/// `dev/testenv restart NAME ARGS…`.
async fn restart_with(name: &str, args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/testenv");
    let out = tokio::process::Command::new(script).args(["restart", name]).args(args).output().await.unwrap();
    assert!(
        out.status.success(),
        "dev/testenv restart {name} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether every KeycloakClient in `ns` is Ready and its status names a client that Keycloak holds
/// (two list calls).
async fn all_held(env: &Env, ns: &str) -> bool {
    let api: kube::Api<kco_api::KeycloakClient> = kube::Api::namespaced(env.kube.clone(), ns);
    let Ok(list) = api.list(&Default::default()).await else { return false };
    let Some(held) = env.keycloak_get(&format!("{ns}/clients?first=0&max=100000&briefRepresentation=true")).await
    else {
        return false;
    };
    let ids: std::collections::HashSet<&str> =
        held.as_array().into_iter().flatten().filter_map(|c| c["id"].as_str()).collect();
    list.items.iter().all(|kc| {
        let status = kc.status.as_ref();
        status.and_then(|s| s.phase.as_ref()).is_some_and(|p| format!("{p:?}") == "Ready")
            && status.and_then(|s| s.internal_id.as_deref()).is_some_and(|id| ids.contains(id))
    })
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
    let op = Operator::start(KCO, &ns, &["--resync", "30m"]).await;
    // Mid-run: some clients are Ready, most are not.
    kco_testing::wait_for("the first clients Ready", Duration::from_secs(300), || async {
        (ready_count(&env, &ns, &names).await >= n / 6).then_some(())
    })
    .await;
    let before = ready_count(&env, &ns, &names).await;
    assert!(before < n, "every client was Ready before Keycloak was killed: the test did not test a kill mid-run");
    restart("keycloak").await;
    env.wait_all_ready(&ns, &names, Duration::from_secs(600 + 2 * n as u64)).await;
    // Keycloak's dev-mode H2 database can lose the writes of the last moment before a SIGKILL, though
    // it acknowledged them: a client kco saw created (and made Ready) is then gone. kco noticed that
    // Keycloak refused connections and answered again, and reconciles every client once more, which
    // creates the lost ones anew (without waiting for the 30-minute resync).
    assert!(op.counter("kco_keycloak_comebacks", &[]).await >= 1, "kco did not notice Keycloak coming back");
    kco_testing::wait_for("every client's status naming a client Keycloak holds", Duration::from_secs(300), || async {
        all_held(&env, &ns).await.then_some(())
    })
    .await;
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

/// A Keycloak that comes back without a client kco had made (a write its database lost in the crash,
/// or a restore from an older backup) gets it back as soon as it answers, not at the next resync
/// (30 minutes here). The client is deleted by hand to stand in for the lost write; Keycloak is
/// stopped (SIGTERM, so its database keeps that deletion: a SIGKILL right after it can undo it) while
/// kco has work for it, so kco sees connections refused and then answered.
#[tokio::test]
async fn a_client_keycloak_lost_while_down_is_made_again_when_it_answers() {
    let _serial = SERIAL.lock().await;
    let env = Env::connect().await;
    let ns = audited_namespace(&env, "kclost").await;
    let op = Operator::start(KCO, &ns, &["--resync", "30m"]).await;
    env.apply(&ns, audited_client("lost")).await;
    let before = env.wait_phase(&ns, "lost", "Ready", Duration::from_secs(120)).await;
    let old_id = before["internalId"].as_str().unwrap().to_string();
    env.keycloak_send(reqwest::Method::DELETE, &format!("{ns}/clients/{old_id}"), None).await;

    // Keycloak down; meanwhile more work arrives, which kco cannot do until Keycloak answers.
    let restarting = tokio::spawn(restart_with("keycloak", &[]));
    let addr = env.keycloak_url.trim_start_matches("http://").to_string();
    kco_testing::wait_for("Keycloak refusing connections", Duration::from_secs(60), || async {
        tokio::net::TcpStream::connect(&addr).await.is_err().then_some(())
    })
    .await;
    let busy: Vec<String> = (0..5).map(|i| format!("busy-{i}")).collect();
    for name in &busy {
        env.apply(&ns, audited_client(name)).await;
    }
    restarting.await.unwrap();
    env.wait_all_ready(&ns, &busy, Duration::from_secs(300)).await;
    let status = kco_testing::wait_for("the lost client made again", Duration::from_secs(120), || async {
        let s = env.client_status(&ns, "lost").await;
        (s["phase"] == "Ready" && s["internalId"].as_str().is_some_and(|id| id != old_id)).then_some(s)
    })
    .await;
    assert!(op.counter("kco_keycloak_comebacks", &[]).await >= 1, "kco did not notice Keycloak coming back");
    let id = status["internalId"].as_str().unwrap();
    let client = env.keycloak_get(&format!("{ns}/clients/{id}")).await.expect("the new client in Keycloak");
    assert_eq!(client["clientId"], "lost");
    let secret = env.keycloak_get(&format!("{ns}/clients/{id}/client-secret")).await.unwrap();
    kco_testing::wait_for("the managed Secret holding the new client's secret", Duration::from_secs(30), || async {
        let data = env.secret_data(&ns, "lost-credentials").await?;
        (data.get("client-secret").map(String::as_str) == secret["value"].as_str()).then_some(())
    })
    .await;
}

/// A Keycloak restarted while kco had nothing to ask it (kco never saw a refused connection: here
/// the operator is stopped meanwhile, as if the restart fell between two checks or hid behind an
/// ingress answering 502) is noticed by the uptime in its server info at the next instance check,
/// and the clients of that instance are read again: one that Keycloak lost is made again long before
/// the resync (30 minutes here).
#[tokio::test]
async fn a_keycloak_restarted_while_kco_is_idle_is_noticed_by_its_uptime() {
    let _serial = SERIAL.lock().await;
    let env = Env::connect().await;
    let ns = audited_namespace(&env, "kcquiet").await;
    let op = Operator::start(KCO, &ns, &["--resync", "30m", "--keycloak-check", "2s"]).await;
    env.apply(&ns, audited_client("quiet")).await;
    let before = env.wait_phase(&ns, "quiet", "Ready", Duration::from_secs(120)).await;
    let old_id = before["internalId"].as_str().unwrap().to_string();
    // Let at least one instance check see the running Keycloak's uptime.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let pid = op.pid().unwrap().to_string();
    let signal = |sig: &'static str| {
        let pid = pid.clone();
        async move {
            let ok = tokio::process::Command::new("kill").args([sig, &pid]).status().await.unwrap().success();
            assert!(ok, "kill {sig} {pid}");
        }
    };
    signal("-STOP").await;
    env.keycloak_send(reqwest::Method::DELETE, &format!("{ns}/clients/{old_id}"), None).await;
    restart_with("keycloak", &[]).await;
    signal("-CONT").await;

    let status = kco_testing::wait_for("the lost client made again", Duration::from_secs(90), || async {
        let s = env.client_status(&ns, "quiet").await;
        (s["phase"] == "Ready" && s["internalId"].as_str().is_some_and(|id| id != old_id)).then_some(s)
    })
    .await;
    // Told by its uptime: the operator was stopped while Keycloak was down, so no refused connection.
    assert!(
        op.counter("kco_keycloak_comebacks", &[("cause", "restarted")]).await >= 1,
        "kco did not notice the restart by Keycloak's uptime"
    );
    let id = status["internalId"].as_str().unwrap();
    let client = env.keycloak_get(&format!("{ns}/clients/{id}")).await.expect("the new client in Keycloak");
    assert_eq!(client["clientId"], "quiet");
    let secret = env.keycloak_get(&format!("{ns}/clients/{id}/client-secret")).await.unwrap();
    kco_testing::wait_for("the managed Secret holding the new client's secret", Duration::from_secs(30), || async {
        let data = env.secret_data(&ns, "quiet-credentials").await?;
        (data.get("client-secret").map(String::as_str) == secret["value"].as_str()).then_some(())
    })
    .await;
}
