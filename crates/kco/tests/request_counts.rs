//! Keycloak requests per client, counted by kind (#11): creating a client with a client role, a realm
//! role granted to its service account and an audience costs what its end state needs, and a resync
//! that finds nothing to do reads each thing once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::collections::BTreeMap;
use std::time::Duration;

use kco_testing::{AUDIT_REALM_ROLE, Env, Operator, audited_client, wait_for};
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");

/// The instance's and the realm's own checks (and its admin events), not made for a client.
const NOT_CLIENT: &[&str] = &["token", "serverinfo", "realm", "admin-event"];

/// From one scrape: the successful client reconciles, and the client Keycloak requests by
/// "METHOD kind".
async fn snapshot(op: &Operator) -> (u64, BTreeMap<String, u64>) {
    let text = reqwest::get(&op.metrics_url).await.unwrap().text().await.unwrap();
    let mut reconciles = 0;
    let mut requests = BTreeMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let value = value.parse::<f64>().unwrap_or(0.0) as u64;
        let label = |name: &str| {
            let start = series.find(&format!("{name}=\""))? + name.len() + 2;
            let rest = &series[start..];
            Some(rest[..rest.find('"')?].to_string())
        };
        if series.starts_with("kco_reconciliations_total{") && label("result").as_deref() == Some("ok") {
            reconciles += value;
        }
        if series.starts_with("kco_keycloak_requests_total{") {
            let (method, kind) = (label("method").unwrap(), label("kind").unwrap());
            if !NOT_CLIENT.contains(&kind.as_str()) {
                *requests.entry(format!("{method} {kind}")).or_insert(0) += value;
            }
        }
    }
    (reconciles, requests)
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0))).filter(|(_, v)| *v > 0).collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn keycloak_requests_per_create_and_per_resync() {
    let env = Env::connect().await;
    let ns = env.namespace("rq").await;
    env.audited_realm(&ns).await;
    env.keycloak_setup(&ns, &ns).await;
    // --progress-after 1m: no create here takes that long, so none says Provisioning first.
    let op = Operator::start(KCO, &ns, &["--resync", "5s", "--progress-after", "1m"]).await;
    let status_writes = || op.counter("kco_kubernetes_writes", &[("kind", "status")]);
    // The realm and instance first: their becoming Ready re-reconciles every client of theirs.
    wait_for("KeycloakInstance reachable and KeycloakRealm Ready", Duration::from_secs(30), || async {
        let instance = env.get(&ns, "kco.dev/v1", "KeycloakInstance", "local").await?;
        let realm = env.get(&ns, "kco.dev/v1", "KeycloakRealm", "realm").await?;
        (instance["status"]["reachable"] == true && realm["status"]["phase"] == "Ready").then_some(())
    })
    .await;
    let (none, before) = snapshot(&op).await;
    assert_eq!((none, before.values().sum::<u64>()), (0, 0), "no client yet");
    let statuses_before = status_writes().await;
    env.apply(&ns, audited_client("svc")).await;
    env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(120)).await;
    // Settled: no request counted for a second (a reconcile that follows the create is over).
    let (reconciles, created) = loop {
        let first = snapshot(&op).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = snapshot(&op).await;
        if first == second {
            break second;
        }
    };
    eprintln!("create ({reconciles} reconciles): {created:?}");
    // The first reconcile only adds kco's finalizer; the second creates the client. Nothing else:
    // kco's own status and Secret writes are not reasons to reconcile again.
    assert_eq!(reconciles, 2, "reconciles to create the client: {created:?}");
    let create = counts(&[
        ("POST client", 1), // create at once (no lookup: the status records no client), with the audience mapper
        ("POST client-role", 1), // the client role
        ("GET service-account-user", 1), // the service account to grant to
        ("GET role", 1),    // the realm role, fresh: the admin-role guard checks composites
        ("POST role-mapping", 1), // the grant
        ("GET client-secret", 1), // the secret for the managed Secret
    ]);
    let resync = counts(&[
        ("GET client", 1),       // the client, with its secret and protocol mappers
        ("GET client-role", 1),  // its roles
        ("GET role-mapping", 1), // its service account's realm roles (the user is remembered)
    ]);
    assert_eq!(created, create, "Keycloak requests to create the client");
    assert_eq!(status_writes().await - statuses_before, 1, "a quick create writes its status once: Ready");

    let resynced = wait_for("one more reconcile", Duration::from_secs(30), || async {
        let (n, requests) = snapshot(&op).await;
        (n == reconciles + 1).then_some(requests)
    })
    .await;
    let resynced_all = resynced.clone();
    let resynced = diff(&resynced, &created);
    eprintln!("resync: {resynced:?}");
    assert_eq!(resynced, resync, "Keycloak requests of a resync with nothing to do");
    // That resync found the client as declared and the realm keeps admin events: the next one reads
    // nothing for the client (the realm's look at its events is counted apart, once per realm).
    let kube_writes = op.kubernetes_writes().await;
    let quiet = wait_for("a second resync", Duration::from_secs(30), || async {
        let (n, requests) = snapshot(&op).await;
        (n == reconciles + 2).then_some(requests)
    })
    .await;
    let quiet = diff(&quiet, &resynced_all);
    assert_eq!(quiet, counts(&[]), "Keycloak requests of a resync after a clean one, with nothing changed");
    assert_eq!(op.kubernetes_writes().await, kube_writes, "a quiet resync writes nothing to Kubernetes");
    op.stop().await;
}

/// The realm roles granted to the service account of client `id`, and that user's id.
async fn service_account_grants(env: &Env, realm: &str, id: &str) -> (String, Vec<String>) {
    let user = env.keycloak_get(&format!("{realm}/clients/{id}/service-account-user")).await.unwrap();
    let user = user["id"].as_str().unwrap().to_string();
    let names = env.realm_roles_of(realm, &user).await;
    (user, names)
}

/// kco remembers each client's service-account user between reconciles; a service account turned
/// off and on again in Keycloak is a new user, which kco finds (the old one answers 404) and grants
/// the spec's roles to again.
#[tokio::test]
async fn a_replaced_service_account_user_is_found_and_granted_again() {
    let env = Env::connect().await;
    let ns = env.namespace("rq").await;
    env.audited_realm(&ns).await;
    env.keycloak_setup(&ns, &ns).await;
    let op = Operator::start(KCO, &ns, &["--resync", "3s"]).await;
    env.apply(&ns, audited_client("svc")).await;
    let status = env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(120)).await;
    let id = status["internalId"].as_str().unwrap().to_string();
    let (old_user, granted) = service_account_grants(&env, &ns, &id).await;
    assert!(granted.iter().any(|r| r == AUDIT_REALM_ROLE), "{granted:?}");

    let reads = op.counter("kco_keycloak_requests", &[("kind", "service-account-user")]).await;
    // By hand, in Keycloak: service accounts off, then on again.
    let path = format!("{ns}/clients/{id}");
    for enabled in [false, true] {
        let mut rep: Value = env.keycloak_get(&path).await.unwrap();
        rep["serviceAccountsEnabled"] = json!(enabled);
        env.keycloak_send(reqwest::Method::PUT, &path, Some(rep)).await;
    }
    let (new_user, _) = service_account_grants(&env, &ns, &id).await;
    assert_ne!(new_user, old_user, "Keycloak made a new service-account user");
    assert!(env.keycloak_get(&format!("{ns}/users/{old_user}")).await.is_none(), "the old user is gone");

    wait_for("the new service-account user granted the realm role", Duration::from_secs(30), || async {
        let (user, granted) = service_account_grants(&env, &ns, &id).await;
        (user == new_user && granted.iter().any(|r| r == AUDIT_REALM_ROLE)).then_some(())
    })
    .await;
    env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(30)).await;
    assert_eq!(
        op.counter("kco_keycloak_requests", &[("kind", "service-account-user")]).await,
        reads + 1,
        "the user is read again once, when the remembered one answered 404"
    );
    op.stop().await;
}

/// Where no admin-role guard needs each granted role's composites fresh (allowAdminRoleGrants),
/// a role's id is remembered: the second client's grant reads nothing. A role deleted and made
/// again has a new id; the grant with the old one answers 404, and kco reads the role once more.
#[tokio::test]
async fn a_granted_role_is_read_once_and_again_when_it_was_replaced() {
    let env = Env::connect().await;
    let ns = env.namespace("rq").await;
    env.audited_realm(&ns).await;
    env.keycloak_setup(&ns, &ns).await;
    env.apply(
        &ns,
        json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "realm"},
            "spec": {"realmName": ns, "instanceRef": {"name": "local"}, "clientAuthorizationGrants": [ns],
                     "allowAdminRoleGrants": true}
        }),
    )
    .await;
    let op = Operator::start(KCO, &ns, &["--resync", "10m"]).await;
    let role_reads = || op.counter("kco_keycloak_requests", &[("method", "GET"), ("kind", "role")]);
    let grants = || op.counter("kco_keycloak_requests", &[("method", "POST"), ("kind", "role-mapping")]);
    let has_role = |name: &'static str| {
        let (env, ns) = (&env, &ns);
        async move {
            let st = env.client_status(ns, name).await;
            let (_, granted) = service_account_grants(env, ns, st["internalId"].as_str().unwrap()).await;
            granted.iter().any(|r| r == AUDIT_REALM_ROLE)
        }
    };

    env.apply(&ns, audited_client("first")).await;
    env.wait_phase(&ns, "first", "Ready", Duration::from_secs(120)).await;
    assert!(has_role("first").await);
    assert_eq!((role_reads().await, grants().await), (1, 1), "the first grant reads the role");

    env.apply(&ns, audited_client("second")).await;
    env.wait_phase(&ns, "second", "Ready", Duration::from_secs(120)).await;
    assert!(has_role("second").await);
    assert_eq!((role_reads().await, grants().await), (1, 2), "the second grant reuses the role's id");

    // By hand, in Keycloak: the role deleted and made again (same name, new id).
    let old = env.keycloak_get(&format!("{ns}/roles/{AUDIT_REALM_ROLE}")).await.unwrap();
    env.keycloak_send(reqwest::Method::DELETE, &format!("{ns}/roles/{AUDIT_REALM_ROLE}"), None).await;
    env.keycloak_send(reqwest::Method::POST, &format!("{ns}/roles"), Some(json!({"name": AUDIT_REALM_ROLE}))).await;
    let new = env.keycloak_get(&format!("{ns}/roles/{AUDIT_REALM_ROLE}")).await.unwrap();
    assert_ne!(old["id"], new["id"]);

    env.apply(&ns, audited_client("third")).await;
    env.wait_phase(&ns, "third", "Ready", Duration::from_secs(120)).await;
    assert!(has_role("third").await);
    assert_eq!(
        (role_reads().await, grants().await),
        (2, 4),
        "the grant with the old id answered 404; the role was read again and the grant made with its new id"
    );
    op.stop().await;
}
