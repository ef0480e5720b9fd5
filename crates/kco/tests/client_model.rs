//! The client model against the real Keycloak and kube-apiserver: the reference's examples, drift,
//! audiences, ownership conflicts, tenancy grants, orphaning, and deletion while Keycloak is down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::time::{Duration, Instant};

use kco_testing::{Env, Operator, TlsProxy, Toxiproxy, client, event_notes, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const READY: Duration = Duration::from_secs(120);

async fn setup(prefix: &str) -> (Env, String, Operator) {
    kco_testing::setup(KCO, prefix, "2s").await
}

async fn keycloak_client(env: &Env, realm: &str, status: &Value) -> Value {
    let id = status["internalId"].as_str().unwrap();
    env.keycloak_get(&format!("{realm}/clients/{id}")).await.expect("client in Keycloak")
}

#[tokio::test]
async fn reference_examples_reach_ready_as_declared() {
    let (env, ns, _op) = setup("ref").await;
    // The reference's minimal example (apiVersion changed, realmRef namespace pointing at our realm).
    env.apply(&ns, client("webapp", json!({"clientId": "webapp", "realmRef": {"name": "realm", "namespace": ns}})))
        .await;
    // The reference's "SPA with PKCE" example.
    env.apply(
        &ns,
        client(
            "spa",
            json!({"clientId": "spa", "realmRef": {"name": "realm"}, "publicClient": true,
            "redirectUris": ["https://spa.example.com/*"], "webOrigins": ["https://spa.example.com"],
            "settings": {"standardFlowEnabled": true, "implicitFlowEnabled": false,
                         "directAccessGrantsEnabled": false, "pkceCodeChallengeMethod": "S256"}}),
        ),
    )
    .await;
    // The reference's confidential web app (rotation aside), with descriptions and lifespans.
    env.apply(
        &ns,
        client(
            "portal",
            json!({"clientId": "portal", "clientName": "Team A Web App", "description": "the portal",
            "realmRef": {"name": "realm"}, "rootUrl": "https://app.example.com",
            "redirectUris": ["https://app.example.com/callback"], "webOrigins": ["https://app.example.com"],
            "postLogoutRedirectUris": ["https://app.example.com"],
            "settings": {"standardFlowEnabled": true, "directAccessGrantsEnabled": false, "consentRequired": true,
                         "accessTokenLifespan": 600, "fullScopeAllowed": false},
            "defaultClientScopes": ["profile", "email", "basic"], "optionalClientScopes": ["offline_access"],
            "clientRoles": ["viewer", "editor"], "attributes": {"custom.flag": "on"}}),
        ),
    )
    .await;

    let s = env.wait_phase(&ns, "webapp", "Ready", READY).await;
    let c = keycloak_client(&env, &ns, &s).await;
    assert_eq!(c["clientId"], "webapp");
    assert_eq!(c["protocol"], "openid-connect");
    assert_eq!(c["publicClient"], false);
    assert_eq!(c["standardFlowEnabled"], true, "reference default");
    assert_eq!(c["directAccessGrantsEnabled"], true, "reference default");
    assert_eq!(c["serviceAccountsEnabled"], false);
    assert_eq!(c["frontchannelLogout"], true);
    assert!(env.secret_data(&ns, "webapp-credentials").await.unwrap().contains_key("client-secret"));

    let s = env.wait_phase(&ns, "spa", "Ready", READY).await;
    let c = keycloak_client(&env, &ns, &s).await;
    assert_eq!(c["publicClient"], true);
    assert_eq!(c["redirectUris"], json!(["https://spa.example.com/*"]));
    assert_eq!(c["webOrigins"], json!(["https://spa.example.com"]));
    assert_eq!(c["standardFlowEnabled"], true);
    assert_eq!(c["implicitFlowEnabled"], false);
    assert_eq!(c["directAccessGrantsEnabled"], false);
    assert_eq!(c["attributes"]["pkce.code.challenge.method"], "S256");
    assert_eq!(s["publicClient"], true);
    let spa_secret = env.secret_data(&ns, "spa-credentials").await.unwrap();
    assert!(!spa_secret.contains_key("client-secret"), "public clients get no secret key");
    assert_eq!(spa_secret["client-id"], "spa");

    let s = env.wait_phase(&ns, "portal", "Ready", READY).await;
    let c = keycloak_client(&env, &ns, &s).await;
    assert_eq!(c["name"], "Team A Web App");
    assert_eq!(c["description"], "the portal");
    assert_eq!(c["rootUrl"], "https://app.example.com");
    assert_eq!(c["consentRequired"], true);
    assert_eq!(c["fullScopeAllowed"], false);
    assert_eq!(c["attributes"]["access.token.lifespan"], "600");
    assert_eq!(c["attributes"]["post.logout.redirect.uris"], "https://app.example.com");
    assert_eq!(c["attributes"]["custom.flag"], "on");
    let mut scopes: Vec<String> = serde_json::from_value(c["defaultClientScopes"].clone()).unwrap();
    scopes.sort();
    assert_eq!(scopes, ["basic", "email", "profile"]);
    assert_eq!(c["optionalClientScopes"], json!(["offline_access"]));
    let roles = env.keycloak_get(&format!("{ns}/clients/{}/roles", s["internalId"].as_str().unwrap())).await.unwrap();
    let mut names: Vec<&str> = roles.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["editor", "viewer"]);
    assert_eq!(s["createdRoles"], json!(["viewer", "editor"]));
}

#[tokio::test]
async fn hand_edits_to_managed_fields_are_reverted_at_resync() {
    let (env, ns, op) = setup("drift").await;
    // kco creates the realm with the first client; the role to grant is made by hand after that.
    env.apply(&ns, client("first", json!({"clientId": "first", "realmRef": {"name": "realm"}}))).await;
    env.wait_phase(&ns, "first", "Ready", READY).await;
    env.keycloak_send(Method::POST, &format!("{ns}/roles"), Some(json!({"name": "reporter"}))).await;
    env.apply(
        &ns,
        client(
            "svc",
            json!({"clientId": "svc", "realmRef": {"name": "realm"}, "redirectUris": ["https://svc.example.com/cb"],
            "settings": {"serviceAccountsEnabled": true},
            "serviceAccountRoles": {"realmRoles": ["reporter"]}}),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "svc", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap().to_string();
    let sa = env.keycloak_get(&format!("{ns}/clients/{id}/service-account-user")).await.unwrap();
    let uid = sa["id"].as_str().unwrap().to_string();
    let has_reporter = |roles: Value| roles.as_array().unwrap().iter().any(|r| r["name"] == "reporter");
    assert!(has_reporter(env.keycloak_get(&format!("{ns}/users/{uid}/role-mappings/realm")).await.unwrap()));

    // By hand: disable the client, add a redirect URI, remove the service-account role, and set
    // webOrigins, a list the spec leaves out (so does not manage).
    let mut c = env.keycloak_get(&format!("{ns}/clients/{id}")).await.unwrap();
    c["enabled"] = json!(false);
    c["redirectUris"] = json!(["https://svc.example.com/cb", "https://evil.example.com/cb"]);
    c["webOrigins"] = json!(["https://hand-made.example.com"]);
    env.keycloak_send(Method::PUT, &format!("{ns}/clients/{id}"), Some(c)).await;
    let role = env.keycloak_get(&format!("{ns}/roles/reporter")).await.unwrap();
    env.keycloak_send(Method::DELETE, &format!("{ns}/users/{uid}/role-mappings/realm"), Some(json!([role]))).await;

    wait_for("drift reverted", Duration::from_secs(30), || async {
        let c = env.keycloak_get(&format!("{ns}/clients/{id}")).await?;
        let roles = env.keycloak_get(&format!("{ns}/users/{uid}/role-mappings/realm")).await?;
        (c["enabled"] == true && c["redirectUris"] == json!(["https://svc.example.com/cb"]) && has_reporter(roles))
            .then_some(())
    })
    .await;
    let c = env.keycloak_get(&format!("{ns}/clients/{id}")).await.unwrap();
    assert_eq!(c["webOrigins"], json!(["https://hand-made.example.com"]), "an unmanaged field changed by hand stays");
    // The hand edits may straddle a resync, so the reverts may be told in more than one Event, and
    // each Event is published just after its write: wait for them.
    wait_for("DriftReverted events naming every reverted field", Duration::from_secs(30), || async {
        let events = event_notes(&env, &ns, "svc").await;
        let drift: Vec<&String> = events.iter().filter(|(r, _)| r == "DriftReverted").map(|(_, n)| n).collect();
        ["enabled", "redirectUris", "serviceAccountRoles.realmRoles"]
            .iter()
            .all(|field| drift.iter().any(|n| n.contains(field)))
            .then_some(())
    })
    .await;
    // And once reverted, resyncs are quiet again.
    let writes = op.keycloak_writes().await;
    let n = op.counter("kco_reconciliations", &[("result", "ok")]).await;
    wait_for("two more reconciles", Duration::from_secs(30), || async {
        (op.counter("kco_reconciliations", &[("result", "ok")]).await >= n + 2).then_some(())
    })
    .await;
    assert_eq!(op.keycloak_writes().await, writes);
}

#[tokio::test]
async fn audiences_put_the_named_client_in_aud() {
    let (env, ns, _op) = setup("aud").await;
    env.apply(
        &ns,
        client(
            "orders-api",
            json!({"clientId": "orders-api", "realmRef": {"name": "realm"}, "bearerOnly": true,
        "settings": {"standardFlowEnabled": false, "directAccessGrantsEnabled": false}}),
        ),
    )
    .await;
    env.apply(&ns, client("partner-x", json!({"clientId": "partner-x", "realmRef": {"name": "realm"},
        "audiences": ["orders-api"],
        "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false}}))).await;
    env.wait_phase(&ns, "orders-api", "Ready", READY).await;
    let s = env.wait_phase(&ns, "partner-x", "Ready", READY).await;
    assert_eq!(s["appliedMappers"], json!(["kco-audience-orders-api"]));
    let data = env.secret_data(&ns, "partner-x-credentials").await.unwrap();
    let claims = env.client_credentials(&data["token-endpoint"], "partner-x", &data["client-secret"]).await.unwrap();
    let aud: Vec<String> = match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        other => serde_json::from_value(other.clone()).unwrap(),
    };
    assert!(aud.contains(&"orders-api".to_string()), "aud {aud:?} lacks orders-api");
}

#[tokio::test]
async fn a_client_someone_else_owns_is_never_taken_over() {
    let (env, ns, op) = setup("own").await;
    env.apply(&ns, client("first", json!({"clientId": "shared", "realmRef": {"name": "realm"}}))).await;
    let first = env.wait_phase(&ns, "first", "Ready", READY).await;
    env.apply(
        &ns,
        client("second", json!({"clientId": "shared", "realmRef": {"name": "realm"}, "clientName": "mine"})),
    )
    .await;
    let s = env.wait_phase(&ns, "second", "Failed", READY).await;
    assert_eq!(s["reason"], "Conflict");
    assert!(s["message"].as_str().unwrap().contains(&format!("KeycloakClient {ns}/first")), "{s}");
    let c = keycloak_client(&env, &ns, &first).await;
    assert!(c.get("name").is_none_or(|n| n != "mine"), "the second object changed the first one's client");

    // A client made by hand in Keycloak is not adopted without the annotation, then is with it.
    env.keycloak_send(Method::POST, &format!("{ns}/clients"), Some(json!({"clientId": "legacy", "enabled": false})))
        .await;
    env.apply(&ns, client("legacy", json!({"clientId": "legacy", "realmRef": {"name": "realm"}}))).await;
    let s = env.wait_phase(&ns, "legacy", "Failed", READY).await;
    assert_eq!(s["reason"], "Conflict");
    assert!(s["message"].as_str().unwrap().contains("created outside kco"));
    assert!(s["message"].as_str().unwrap().contains("kco.dev/adopt"));
    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
        "metadata": {"name": "legacy", "annotations": {"kco.dev/adopt": "true"}},
        "spec": {"clientId": "legacy", "realmRef": {"name": "realm"}}}),
    )
    .await;
    let s = env.wait_phase(&ns, "legacy", "Ready", READY).await;
    assert_eq!(keycloak_client(&env, &ns, &s).await["enabled"], true);

    // Deleting the losing object never deletes the winner's client.
    env.delete(&ns, client("second", json!({}))).await;
    wait_for("second gone", Duration::from_secs(30), || async {
        env.get(&ns, "kco.dev/v1", "KeycloakClient", "second").await.is_none().then_some(())
    })
    .await;
    assert!(env.keycloak_get(&format!("{ns}/clients/{}", first["internalId"].as_str().unwrap())).await.is_some());
    drop(op);
}

#[tokio::test]
async fn a_namespace_without_a_grant_waits_and_proceeds_once_granted() {
    let env = Env::connect().await;
    let ns = env.namespace("grant").await;
    env.keycloak_setup(&ns, &ns).await;
    // Take the grant away before the operator starts.
    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "realm"},
        "spec": {"realmName": ns, "instanceRef": {"name": "local"}, "clientAuthorizationGrants": ["someone-else"]}}),
    )
    .await;
    let op = Operator::start(KCO, &ns, &["--resync", "5m"]).await;
    env.apply(&ns, client("svc", json!({"clientId": "svc", "realmRef": {"name": "realm"}}))).await;
    let s = env.wait_phase(&ns, "svc", "Failed", READY).await;
    assert_eq!(s["reason"], "NotAuthorized");
    assert_eq!(s["authorizationGranted"], false);
    assert!(s["authorizationMessage"].as_str().unwrap().contains("clientAuthorizationGrants"));
    // The instance's and the realm's own status checks talk to Keycloak; the client makes no call.
    assert_eq!(op.client_keycloak_requests().await, 0, "no Keycloak call for a client without a grant");

    // Granting it reconciles the waiting client within seconds (the realm is watched), no restart.
    let granted_at = Instant::now();
    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "realm"},
        "spec": {"realmName": ns, "instanceRef": {"name": "local"}, "clientAuthorizationGrants": [ns]}}),
    )
    .await;
    let s = env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(30)).await;
    assert!(granted_at.elapsed() < Duration::from_secs(15), "took {:?}", granted_at.elapsed());
    assert_eq!(s["authorizationGranted"], true);

    // Revoking it stops further changes and says so.
    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "realm"},
        "spec": {"realmName": ns, "instanceRef": {"name": "local"}, "clientAuthorizationGrants": []}}),
    )
    .await;
    let s = env.wait_phase(&ns, "svc", "Failed", Duration::from_secs(30)).await;
    assert_eq!(s["reason"], "NotAuthorized");
    assert_eq!(s["authorizationGranted"], false);
}

#[tokio::test]
async fn orphan_policy_keeps_the_keycloak_client() {
    let (env, ns, _op) = setup("orphan").await;
    env.apply(
        &ns,
        client("keep", json!({"clientId": "keep", "realmRef": {"name": "realm"}, "deletionPolicy": "Orphan"})),
    )
    .await;
    let s = env.wait_phase(&ns, "keep", "Ready", READY).await;
    env.delete(&ns, client("keep", json!({}))).await;
    wait_for("object gone", Duration::from_secs(30), || async {
        env.get(&ns, "kco.dev/v1", "KeycloakClient", "keep").await.is_none().then_some(())
    })
    .await;
    assert!(env.keycloak_get(&format!("{ns}/clients/{}", s["internalId"].as_str().unwrap())).await.is_some());
}

#[tokio::test]
async fn deletion_waits_for_an_unreachable_keycloak() {
    let env = Env::connect().await;
    let ns = env.namespace("down").await;
    env.keycloak_setup(&ns, &ns).await;
    let proxy = Toxiproxy::keycloak(&env).await;
    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakInstance", "metadata": {"name": "local"},
        "spec": {"url": proxy.url(), "publicUrl": env.keycloak_url, "adminSecretRef": {"name": "keycloak-admin"}}}),
    )
    .await;
    let op = Operator::start(KCO, &ns, &["--resync", "5m"]).await;
    env.apply(&ns, client("svc", json!({"clientId": "svc", "realmRef": {"name": "realm"}}))).await;
    let s = env.wait_phase(&ns, "svc", "Ready", READY).await;
    let path = format!("{ns}/clients/{}", s["internalId"].as_str().unwrap());

    // Keycloak requests the cleanup makes (or the admin token it would need first), counted when sent,
    // so requests that never reach Keycloak count too.
    let attempts = || async {
        op.counter("kco_keycloak_requests", &[("method", "GET"), ("kind", "client")]).await
            + op.counter("kco_keycloak_requests", &[("method", "DELETE"), ("kind", "client")]).await
            + op.counter("kco_keycloak_requests", &[("method", "POST"), ("kind", "token")]).await
    };
    proxy.set_enabled(false).await;
    let errors_before = op.counter("kco_reconciliations", &[("result", "error")]).await;
    let attempts_before = attempts().await;
    env.delete(&ns, client("svc", json!({}))).await;
    // Proof that the operator tried while Keycloak was unreachable: the object's only reconciles now
    // are cleanups, and at least two of them (the first and a retry after backoff) failed after trying
    // to reach Keycloak.
    wait_for("two failed cleanups while Keycloak is unreachable", Duration::from_secs(60), || async {
        let errors = op.counter("kco_reconciliations", &[("result", "error")]).await - errors_before;
        let tried = attempts().await - attempts_before;
        (errors >= 2 && tried >= 2).then_some(())
    })
    .await;
    let obj = env.get(&ns, "kco.dev/v1", "KeycloakClient", "svc").await.expect("finalizer holds the object");
    assert!(obj["metadata"]["deletionTimestamp"].is_string());
    assert!(
        obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()),
        "kco's finalizer is still there: {}",
        obj["metadata"]
    );
    assert!(env.keycloak_get(&path).await.is_some(), "client must still exist: nothing was deleted yet");

    proxy.set_enabled(true).await;
    wait_for("deletion completes once Keycloak is back", Duration::from_secs(60), || async {
        env.get(&ns, "kco.dev/v1", "KeycloakClient", "svc").await.is_none().then_some(())
    })
    .await;
    assert!(env.keycloak_get(&path).await.is_none(), "the Keycloak client was deleted");
}

#[tokio::test]
async fn authentication_flow_overrides_point_at_realm_flows() {
    let (env, ns, _op) = setup("flows").await;
    env.apply(&ns, client("first", json!({"clientId": "first", "realmRef": {"name": "realm"}}))).await;
    env.wait_phase(&ns, "first", "Ready", READY).await;
    env.keycloak_send(
        Method::POST,
        &format!("{ns}/authentication/flows/browser/copy"),
        Some(json!({"newName": "browser-with-otp"})),
    )
    .await;
    env.apply(
        &ns,
        client(
            "web",
            json!({"clientId": "web", "realmRef": {"name": "realm"},
        "authenticationFlows": {"browserFlow": "browser-with-otp"}}),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "web", "Ready", READY).await;
    let flows = env.keycloak_get(&format!("{ns}/authentication/flows")).await.unwrap();
    let id = flows.as_array().unwrap().iter().find(|f| f["alias"] == "browser-with-otp").unwrap()["id"].clone();
    let c = keycloak_client(&env, &ns, &s).await;
    assert_eq!(c["authenticationFlowBindingOverrides"]["browser"], id);
    assert!(c["authenticationFlowBindingOverrides"].get("direct_grant").is_none_or(|v| v == ""));

    // An alias the realm lacks is a spec error naming the field.
    env.apply(
        &ns,
        client(
            "bad",
            json!({"clientId": "bad", "realmRef": {"name": "realm"},
        "authenticationFlows": {"directGrantFlow": "no-such-flow"}}),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "bad", "Failed", READY).await;
    assert_eq!(s["reason"], "FlowNotFound");
    assert!(s["message"].as_str().unwrap().contains("spec.authenticationFlows.directGrantFlow"));
}

#[tokio::test]
async fn instance_status_reports_reachability_and_wrong_credentials_are_told_apart() {
    let (env, ns, _op) = setup("inst").await;
    let s = wait_for("instance reachable", READY, || async {
        let o = env.get(&ns, "kco.dev/v1", "KeycloakInstance", "local").await?;
        (o["status"]["reachable"] == true).then(|| o["status"].clone())
    })
    .await;
    assert!(s["version"].as_str().unwrap().starts_with("26."), "{s}");

    // Wrong admin password: the instance says so, and clients fail with a 401-specific reason.
    env.apply(
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keycloak-admin"},
        "stringData": {"username": env.admin_user, "password": "wrong"}}),
    )
    .await;
    env.apply(&ns, client("svc", json!({"clientId": "svc", "realmRef": {"name": "realm"}}))).await;
    let s = wait_for("client fails as unauthorized", READY, || async {
        let s = env.client_status(&ns, "svc").await;
        (s["reason"] == "KeycloakUnauthorized").then_some(s)
    })
    .await;
    assert!(s["message"].as_str().unwrap().contains("adminSecretRef"), "{s}");
    let s = wait_for("instance reports the failed login", Duration::from_secs(30), || async {
        let o = env.get(&ns, "kco.dev/v1", "KeycloakInstance", "local").await?;
        (o["status"]["reachable"] == false).then(|| o["status"].clone())
    })
    .await;
    assert!(s["message"].as_str().unwrap().contains("HTTP 401"), "{s}");

    // The right password again (a rotated admin Secret): the Secret's watch event rebuilds the admin
    // client at once, and the client reaches Ready within seconds, not at the next resync (5m).
    let fixed_at = std::time::Instant::now();
    env.apply(
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keycloak-admin"},
        "stringData": {"username": env.admin_user, "password": env.admin_password}}),
    )
    .await;
    env.wait_phase(&ns, "svc", "Ready", READY).await;
    let took = fixed_at.elapsed();
    println!("admin Secret fixed → client Ready in {:.1}s", took.as_secs_f64());
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test]
async fn realm_administration_grants_need_the_realms_explicit_allowance() {
    let (env, ns, op) = setup("guard").await;
    env.apply(
        &ns,
        client(
            "greedy",
            json!({"clientId": "greedy", "realmRef": {"name": "realm"},
        "settings": {"serviceAccountsEnabled": true},
        "serviceAccountRoles": {"clientRoles": {"realm-management": ["realm-admin"]}}}),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "greedy", "Failed", READY).await;
    assert_eq!(s["reason"], "NotAllowed");
    assert!(s["message"].as_str().unwrap().contains("allowAdminRoleGrants"), "{s}");
    let client_calls = op.counter("kco_keycloak_requests", &[("kind", "client")]).await;
    assert_eq!(client_calls, 0, "a refused client must not reach Keycloak");

    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "realm"},
        "spec": {"realmName": ns, "instanceRef": {"name": "local"}, "clientAuthorizationGrants": [ns],
                 "allowAdminRoleGrants": true}}),
    )
    .await;
    let s = env.wait_phase(&ns, "greedy", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap();
    let sa = env.keycloak_get(&format!("{ns}/clients/{id}/service-account-user")).await.unwrap();
    let rm = env.keycloak_get(&format!("{ns}/clients?clientId=realm-management")).await.unwrap();
    let rm_id = rm[0]["id"].as_str().unwrap();
    let roles = env
        .keycloak_get(&format!("{ns}/users/{}/role-mappings/clients/{rm_id}", sa["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert!(roles.as_array().unwrap().iter().any(|r| r["name"] == "realm-admin"));
}

#[tokio::test]
async fn a_realm_may_only_use_an_instance_that_grants_its_namespace() {
    let env = Env::connect().await;
    let platform = env.namespace("platform").await;
    let tenant = env.namespace("tenant").await;
    env.keycloak_setup(&platform, &platform).await;
    let op = Operator::start(KCO, &tenant, &["--resync", "5m"]).await;
    // A tenant's realm pointing at the platform's instance, without the instance's grant.
    env.apply(
        &tenant,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "mine"},
        "spec": {"realmName": tenant, "instanceRef": {"name": "local", "namespace": platform},
                 "clientAuthorizationGrants": [tenant]}}),
    )
    .await;
    env.apply(&tenant, client("svc", json!({"clientId": "svc", "realmRef": {"name": "mine"}}))).await;
    let s = env.wait_phase(&tenant, "svc", "Failed", READY).await;
    assert_eq!(s["reason"], "NotAuthorized");
    assert!(s["message"].as_str().unwrap().contains("realmAuthorizationGrants"), "{s}");
    assert_eq!(op.counter("kco_keycloak_requests", &[("kind", "client")]).await, 0);
    // Nor may it reach the admin realm.
    env.apply(
        &tenant,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "master"},
        "spec": {"realmName": "master", "instanceRef": {"name": "local", "namespace": platform},
                 "clientAuthorizationGrants": [tenant]}}),
    )
    .await;
    env.apply(
        &platform,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakInstance", "metadata": {"name": "local"},
        "spec": {"url": env.keycloak_url, "adminSecretRef": {"name": "keycloak-admin"},
                 "realmAuthorizationGrants": [tenant]}}),
    )
    .await;
    env.apply(&tenant, client("root", json!({"clientId": "root", "realmRef": {"name": "master"}}))).await;
    let s = env.wait_phase(&tenant, "root", "Failed", READY).await;
    assert_eq!(s["reason"], "NotAuthorized");
    assert!(s["message"].as_str().unwrap().contains("allowAdminRealm"), "{s}");
    // With the instance's grant the tenant's own realm works. (This operator watches only the
    // tenant's namespace, so it learns of the platform's change at the client's next reconcile.)
    env.apply(&tenant, client("svc", json!({"clientId": "svc", "realmRef": {"name": "mine"}, "clientName": "now"})))
        .await;
    env.wait_phase(&tenant, "svc", "Ready", READY).await;
}

#[tokio::test]
async fn an_instance_behind_tls_needs_its_ca_bundle_and_public_url_sets_the_issuer() {
    let env = Env::connect().await;
    let ns = env.namespace("tls").await;
    env.keycloak_setup(&ns, &ns).await;
    // An HTTPS front for Keycloak with a certificate from the test environment's own CA.
    let pki = std::path::Path::new(&std::env::var("KUBECONFIG").unwrap()).parent().unwrap().join("pki");
    let target = env.keycloak_url.trim_start_matches("http://").to_string();
    let proxy = TlsProxy::start(&target, &pki.join("apiserver.crt"), &pki.join("apiserver.key")).await;
    let instance = |ca: Value| {
        let mut spec =
            json!({"url": proxy.url(), "publicUrl": env.keycloak_url, "adminSecretRef": {"name": "keycloak-admin"}});
        if !ca.is_null() {
            spec["caBundle"] = ca;
        }
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakInstance", "metadata": {"name": "local"}, "spec": spec})
    };
    env.apply(&ns, instance(Value::Null)).await;
    let _op = Operator::start(KCO, &ns, &["--resync", "5m"]).await;
    env.apply(&ns, client("svc", json!({"clientId": "svc", "realmRef": {"name": "realm"},
        "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false}})))
    .await;
    // Without the CA the certificate is not trusted: Keycloak is unreachable, and status says so.
    let s = wait_for("the untrusted certificate to show", READY, || async {
        let s = env.client_status(&ns, "svc").await;
        (s["reason"] == "KeycloakUnreachable").then_some(s)
    })
    .await;
    assert_eq!(s["phase"], "Degraded");

    // The CA bundle from a ConfigMap key (the trusted CA bundle case of the how-to).
    let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    env.apply(
        &ns,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "trusted-ca"},
        "data": {"ca-bundle.crt": ca}}),
    )
    .await;
    env.apply(&ns, instance(json!({"configMapKeyRef": {"name": "trusted-ca", "key": "ca-bundle.crt"}}))).await;
    let s = env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(90)).await;
    // Endpoints and the Secret use the public URL, and tokens from there carry that issuer.
    let issuer = format!("{}/realms/{ns}", env.keycloak_url);
    assert_eq!(s["endpoints"]["issuer"], issuer.as_str());
    let data = env.secret_data(&ns, "svc-credentials").await.unwrap();
    assert_eq!(data["issuer"], issuer);
    let claims = env.client_credentials(&data["token-endpoint"], "svc", &data["client-secret"]).await.unwrap();
    assert_eq!(claims["iss"], issuer.as_str());
}
