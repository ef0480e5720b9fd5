//! Authorization Services against the real Keycloak and kube-apiserver: the reference's two
//! authorization examples, Keycloak's own decision per policy and permission type, removal and
//! renaming, unresolved references, drift, JavaScript policies, and quiet resyncs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use kco_testing::{Env, Operator, client, event_notes, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const READY: Duration = Duration::from_secs(120);

async fn setup(prefix: &str) -> (Env, String, Operator) {
    kco_testing::setup(KCO, prefix, "2s").await
}

/// `setup`, plus a plain client `probe` whose reconcile creates the Keycloak realm, so a test can seed
/// users, roles and groups before its resource server is applied.
async fn setup_with_realm(prefix: &str) -> (Env, String, Operator) {
    let (env, ns, op) = setup(prefix).await;
    env.apply(&ns, client("probe", json!({"clientId": "probe", "realmRef": {"name": "realm"}}))).await;
    wait_for("realm created", READY, || async { env.keycloak_get(&ns).await }).await;
    (env, ns, op)
}

/// Create `what` (e.g. a user) in the realm.
async fn post(env: &Env, path: &str, body: Value) {
    env.keycloak_send(Method::POST, path, Some(body)).await;
}

async fn user(env: &Env, realm: &str, username: &str) -> String {
    // A complete profile and a password, so the user can also log in (for RPT requests).
    let body = json!({"username": username, "enabled": true, "email": format!("{username}@example.com"),
        "emailVerified": true, "firstName": username, "lastName": "Test",
        "credentials": [{"type": "password", "value": "pw", "temporary": false}]});
    post(env, &format!("{realm}/users"), body).await;
    let v = env.keycloak_get(&format!("{realm}/users?username={username}&exact=true")).await.unwrap();
    v[0]["id"].as_str().unwrap().to_string()
}

async fn realm_role(env: &Env, realm: &str, role: &str) {
    post(env, &format!("{realm}/roles"), json!({"name": role})).await;
}

async fn grant_role(env: &Env, realm: &str, user_id: &str, role: &str) {
    let r = env.keycloak_get(&format!("{realm}/roles/{role}")).await.unwrap();
    post(env, &format!("{realm}/users/{user_id}/role-mappings/realm"), json!([r])).await;
}

async fn group(env: &Env, realm: &str, name: &str) -> String {
    post(env, &format!("{realm}/groups"), json!({"name": name})).await;
    let g = env.keycloak_get(&format!("{realm}/group-by-path/{name}")).await.unwrap();
    g["id"].as_str().unwrap().to_string()
}

async fn join(env: &Env, realm: &str, user_id: &str, group_id: &str) {
    env.keycloak_send(Method::PUT, &format!("{realm}/users/{user_id}/groups/{group_id}"), None).await;
}

/// Keycloak's name-based export of the client's resource server.
async fn export(env: &Env, realm: &str, id: &str) -> Value {
    env.keycloak_get(&format!("{realm}/clients/{id}/authz/resource-server/settings")).await.unwrap()
}

/// The export, or `None` when Keycloak fails it: 26.7 answers the export with HTTP 500 (a
/// NullPointerException) when objects are deleted while it is being built, so polls during kco's
/// writes use this.
async fn try_export(env: &Env, realm: &str, id: &str) -> Option<Value> {
    let token = env.keycloak_admin_token().await;
    let url = format!("{}/admin/realms/{realm}/clients/{id}/authz/resource-server/settings", env.keycloak_url);
    let resp = env.http.get(url).bearer_auth(token).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

fn names(export: &Value, list: &str) -> Vec<String> {
    let mut v: Vec<String> =
        export[list].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

fn policy<'a>(export: &'a Value, name: &str) -> &'a Value {
    export["policies"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name}"))
}

/// A config entry that Keycloak keeps as a JSON string, decoded and sorted (lists).
fn config(p: &Value, key: &str) -> Value {
    let s = p["config"][key].as_str().unwrap_or_else(|| panic!("{key} in {p}"));
    let mut v: Value = serde_json::from_str(s).unwrap_or(json!(s));
    if let Some(a) = v.as_array_mut() {
        a.sort_by_key(|x| x.to_string());
    }
    v
}

/// Keycloak's own decision (its policy evaluation endpoint) for `user_id` asking `scope` (or the
/// whole resource when `None`) of `resource`, in the context of client `context_client` (internal id).
async fn decide(
    env: &Env,
    realm: &str,
    id: &str,
    context_client: &str,
    user_id: &str,
    resource: &str,
    scope: Option<&str>,
) -> String {
    let token = env.keycloak_admin_token().await;
    let scopes: Vec<Value> = scope.iter().map(|s| json!({"name": s})).collect();
    let body = json!({"userId": user_id, "clientId": context_client, "roleIds": [], "context": {"attributes": {}},
                      "resources": [{"name": resource, "scopes": scopes}]});
    let url = format!("{}/admin/realms/{realm}/clients/{id}/authz/resource-server/policy/evaluate", env.keycloak_url);
    let resp = env.http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
    assert!(resp.status().is_success(), "evaluate: {}", resp.status());
    let v: Value = resp.json().await.unwrap();
    v["status"].as_str().unwrap().to_string()
}

/// Keycloak's decision through the UMA token endpoint (an RPT request with `response_mode=decision`)
/// for `username` asking `permission` (`resource#scope`) of resource server `audience`. The user's
/// token comes from a public client `cli` with the password grant (made on first use).
async fn rpt_decision(env: &Env, realm: &str, username: &str, audience: &str, permission: &str) -> bool {
    if env.keycloak_get(&format!("{realm}/clients?clientId=cli")).await.unwrap().as_array().unwrap().is_empty() {
        post(
            env,
            &format!("{realm}/clients"),
            json!({"clientId": "cli", "publicClient": true, "directAccessGrantsEnabled": true}),
        )
        .await;
    }
    let token_url = format!("{}/realms/{realm}/protocol/openid-connect/token", env.keycloak_url);
    let form = [("grant_type", "password"), ("client_id", "cli"), ("username", username), ("password", "pw")];
    let v: Value = env.http.post(&token_url).form(&form).send().await.unwrap().json().await.unwrap();
    let token = v["access_token"].as_str().unwrap_or_else(|| panic!("token for {username}: {v}"));
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:uma-ticket"),
        ("audience", audience),
        ("permission", permission),
        ("response_mode", "decision"),
    ];
    let resp = env.http.post(&token_url).bearer_auth(token).form(&form).send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    match status.as_u16() {
        200 => v["result"] == true,
        403 => false,
        other => panic!("RPT request: HTTP {other} {v}"),
    }
}

/// Wait for a reconcile, then for `n` more that find nothing to do; returns the Keycloak writes they
/// made and the Keycloak requests (not counting the admin token and the instance's and realm's own
/// checks) per reconcile. The operator watches one namespace, so these are its clients' reconciles.
async fn quiet_reconciles(op: &Operator, n: u64) -> (u64, u64) {
    let ok = || op.counter("kco_reconciliations", &[("result", "ok")]);
    let first = ok().await;
    wait_for("a reconcile", Duration::from_secs(30), || async { (ok().await > first).then_some(()) }).await;
    let (w0, r0) = (op.keycloak_writes().await, op.client_keycloak_requests().await);
    let start = ok().await;
    let (done, w1, r1) = wait_for("more reconciles", Duration::from_secs(60), || async {
        let now = ok().await;
        let counts = (op.keycloak_writes().await, op.client_keycloak_requests().await);
        // Counters read between two reconciles (the next is ~2 s away) belong to whole reconciles.
        (now >= start + n && ok().await == now).then_some((now - start, counts.0, counts.1))
    })
    .await;
    (w1 - w0, (r1 - r0) / done)
}

fn resource_server_example(ns: &str) -> Value {
    // The reference's "Resource server with authorization services", verbatim but for apiVersion and realmRef.
    client(
        "documents-api",
        json!({"clientId": "documents-api", "realmRef": {"name": "realm", "namespace": ns}, "bearerOnly": true,
        "settings": {"standardFlowEnabled": false, "directAccessGrantsEnabled": false,
                     "serviceAccountsEnabled": false, "authorizationServicesEnabled": true},
        "authorizationSettings": {"policyEnforcementMode": "ENFORCING", "decisionStrategy": "UNANIMOUS",
            "scopes": [{"name": "read"}, {"name": "write"}],
            "resources": [{"name": "documents", "uris": ["/api/documents/*"], "scopes": ["read", "write"]}],
            "policies": {"rolePolicies": [{"name": "editors", "roles": [{"name": "editor"}]}]},
            "permissions": {"scopePermissions": [{"name": "edit-documents", "resources": ["documents"],
                "scopes": ["write"], "policies": ["editors"]}]}}}),
    )
}

#[tokio::test]
async fn resource_server_example_reaches_ready_and_keycloak_decides_as_declared() {
    let (env, ns, op) = setup("authz-rs").await;
    env.apply(&ns, resource_server_example(&ns)).await;
    // The realm has no role `editor` yet: reported by name, nothing written; fixed by creating it.
    let s = env.wait_phase(&ns, "documents-api", "Failed", READY).await;
    assert_eq!(s["reason"], "AuthorizationReferenceNotFound", "{s}");
    assert!(s["message"].as_str().unwrap().contains("realm role \"editor\""), "{s}");
    realm_role(&env, &ns, "editor").await;
    let alice = user(&env, &ns, "alice").await;
    let bob = user(&env, &ns, "bob").await;
    grant_role(&env, &ns, &alice, "editor").await;

    let s = env.wait_phase(&ns, "documents-api", "Ready", READY).await;
    let msg = s["message"].as_str().unwrap();
    assert!(msg.contains("kco turned on serviceAccountsEnabled"), "{msg}");
    assert!(msg.contains("kco turned off bearerOnly"), "{msg}");
    let id = s["internalId"].as_str().unwrap();
    let c = env.keycloak_get(&format!("{ns}/clients/{id}")).await.unwrap();
    assert_eq!(c["authorizationServicesEnabled"], true);
    assert_eq!(c["serviceAccountsEnabled"], true);
    assert_eq!(c["bearerOnly"], false);
    assert_eq!(c["publicClient"], false);
    assert_eq!(c["standardFlowEnabled"], false);
    assert_eq!(c["directAccessGrantsEnabled"], false);

    // GET by GET, through the dedicated endpoints.
    let base = format!("{ns}/clients/{id}/authz/resource-server");
    let rs = env.keycloak_get(&base).await.unwrap();
    assert_eq!(rs["policyEnforcementMode"], "ENFORCING");
    assert_eq!(rs["decisionStrategy"], "UNANIMOUS");
    assert_eq!(rs["allowRemoteResourceManagement"], true);
    let scopes = env.keycloak_get(&format!("{base}/scope")).await.unwrap();
    let mut sn: Vec<&str> = scopes.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    sn.sort();
    assert_eq!(sn, ["read", "write"]);
    let res = env.keycloak_get(&format!("{base}/resource?name=documents&exactName=true")).await.unwrap();
    assert_eq!(res.as_array().unwrap().len(), 1, "{res}");
    assert_eq!(res[0]["uris"], json!(["/api/documents/*"]));
    let res_scopes: Vec<&str> =
        res[0]["scopes"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(res_scopes.len(), 2, "{res}");
    let p = env.keycloak_get(&format!("{base}/policy/search?name=editors")).await.unwrap();
    let role = env.keycloak_get(&format!("{base}/policy/role/{}", p["id"].as_str().unwrap())).await.unwrap();
    let editor = env.keycloak_get(&format!("{ns}/roles/editor")).await.unwrap();
    assert_eq!(role["roles"][0]["id"], editor["id"]);
    assert_eq!(role["logic"], "POSITIVE");
    let perm = env.keycloak_get(&format!("{base}/policy/search?name=edit-documents")).await.unwrap();
    assert_eq!(perm["type"], "scope");
    let pid = perm["id"].as_str().unwrap();
    let assoc = env.keycloak_get(&format!("{base}/policy/{pid}/associatedPolicies")).await.unwrap();
    assert_eq!(assoc[0]["name"], "editors");
    let on = env.keycloak_get(&format!("{base}/policy/{pid}/resources")).await.unwrap();
    assert_eq!(on[0]["name"], "documents");
    let sc = env.keycloak_get(&format!("{base}/policy/{pid}/scopes")).await.unwrap();
    assert_eq!(sc[0]["name"], "write");

    // Keycloak decides as declared: an editor may write documents, someone else may not.
    assert_eq!(decide(&env, &ns, id, id, &alice, "documents", Some("write")).await, "PERMIT");
    assert_eq!(decide(&env, &ns, id, id, &bob, "documents", Some("write")).await, "DENY");
    // And the same through the token endpoint (an RPT request), as an application would ask.
    assert!(rpt_decision(&env, &ns, "alice", "documents-api", "documents#write").await);
    assert!(!rpt_decision(&env, &ns, "bob", "documents-api", "documents#write").await);

    // A resync with nothing to change writes nothing and reads a fixed number of times.
    let (writes, reads_per_reconcile) = quiet_reconciles(&op, 3).await;
    assert_eq!(writes, 0, "an idle resync wrote to Keycloak");
    println!("idle resync of a resource server: {reads_per_reconcile} Keycloak requests per reconcile");
    // GET the client by id, and the resource server's export: nothing else, however many objects.
    assert_eq!(reads_per_reconcile, 2, "idle resync made {reads_per_reconcile} requests per reconcile");
    assert!(op.counter("kco_keycloak_requests", &[("kind", "authz-settings"), ("method", "GET")]).await > 0);
}

#[tokio::test]
async fn fine_grained_example_reaches_ready_and_keycloak_decides_as_declared() {
    let (env, ns, _op) = setup_with_realm("authz-fg").await;
    realm_role(&env, &ns, "editor").await;
    let finance = group(&env, &ns, "finance").await;
    let ed = user(&env, &ns, "eddie").await;
    let fin = user(&env, &ns, "finn").await;
    let nobody = user(&env, &ns, "nobody").await;
    grant_role(&env, &ns, &ed, "editor").await;
    join(&env, &ns, &fin, &finance).await;
    // The example of the reference's "Fine-Grained Authorization" section, on a confidential client.
    env.apply(
        &ns,
        client(
            "docs",
            json!({"clientId": "docs", "realmRef": {"name": "realm"},
            "settings": {"authorizationServicesEnabled": true},
            "authorizationSettings": {"policyEnforcementMode": "ENFORCING", "decisionStrategy": "UNANIMOUS",
                "scopes": [{"name": "read"}, {"name": "write"}],
                "resources": [{"name": "documents", "uris": ["/api/documents/*"], "scopes": ["read", "write"]}],
                "policies": {"rolePolicies": [{"name": "document-editors", "roles": [{"name": "editor"}]}],
                             "groupPolicies": [{"name": "finance-team", "groups": ["/finance"]}]},
                "permissions": {"scopePermissions": [
                    {"name": "documents-read", "resources": ["documents"], "scopes": ["read"], "policies": ["finance-team"]},
                    {"name": "documents-write", "resources": ["documents"], "scopes": ["write"], "policies": ["document-editors"]}]}}}),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "docs", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap();
    let e = export(&env, &ns, id).await;
    assert_eq!(names(&e, "scopes"), ["read", "write"]);
    assert_eq!(names(&e, "resources"), ["documents"]);
    assert_eq!(names(&e, "policies"), ["document-editors", "documents-read", "documents-write", "finance-team"]);
    assert_eq!(config(policy(&e, "finance-team"), "groups"), json!([{"path": "/finance", "extendChildren": false}]));
    assert_eq!(config(policy(&e, "document-editors"), "roles"), json!([{"id": "editor", "required": false}]));
    assert_eq!(config(policy(&e, "documents-read"), "applyPolicies"), json!(["finance-team"]));
    assert_eq!(config(policy(&e, "documents-read"), "scopes"), json!(["read"]));
    assert_eq!(config(policy(&e, "documents-write"), "applyPolicies"), json!(["document-editors"]));

    assert_eq!(decide(&env, &ns, id, id, &fin, "documents", Some("read")).await, "PERMIT");
    assert_eq!(decide(&env, &ns, id, id, &nobody, "documents", Some("read")).await, "DENY");
    assert_eq!(decide(&env, &ns, id, id, &ed, "documents", Some("write")).await, "PERMIT");
    assert_eq!(decide(&env, &ns, id, id, &fin, "documents", Some("write")).await, "DENY");
}

/// One client whose resource `guarded` is protected by a resource permission naming policy `p`.
/// Returns (env, ns, internal id, op).
async fn guarded_by(
    prefix: &str,
    policies: Value,
    seed: impl AsyncFnOnce(&Env, &str),
) -> (Env, String, String, Operator) {
    let (env, ns, op) = setup_with_realm(prefix).await;
    seed(&env, &ns).await;
    env.apply(
        &ns,
        client(
            "api",
            json!({"clientId": "api", "realmRef": {"name": "realm"},
            "settings": {"authorizationServicesEnabled": true, "standardFlowEnabled": false},
            "authorizationSettings": {"resources": [{"name": "guarded", "uris": ["/guarded/*"]}],
                "policies": policies,
                "permissions": {"resourcePermissions": [{"name": "guard", "resources": ["guarded"], "policies": ["p"]}]}}}),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "api", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap().to_string();
    (env, ns, id, op)
}

async fn uid(env: &Env, realm: &str, username: &str) -> String {
    env.keycloak_get(&format!("{realm}/users?username={username}&exact=true")).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `guarded_by` with users alice and bob (and whatever `seed` adds): Keycloak must permit alice and
/// deny bob.
async fn permits_alice_denies_bob(prefix: &str, policies: Value, seed: impl AsyncFnOnce(&Env, &str, &str)) {
    let (env, ns, id, _op) = guarded_by(prefix, policies, async |env, ns| {
        let alice = user(env, ns, "alice").await;
        user(env, ns, "bob").await;
        seed(env, ns, &alice).await;
    })
    .await;
    let (a, b) = (uid(&env, &ns, "alice").await, uid(&env, &ns, "bob").await);
    assert_eq!(decide(&env, &ns, &id, &id, &a, "guarded", None).await, "PERMIT");
    assert_eq!(decide(&env, &ns, &id, &id, &b, "guarded", None).await, "DENY");
}

#[tokio::test]
async fn role_policy_with_resource_permission_permits_the_role_only() {
    let policies = json!({"rolePolicies": [{"name": "p", "roles": [{"name": "auditor"}]}]});
    permits_alice_denies_bob("authz-role", policies, async |env, ns, alice| {
        realm_role(env, ns, "auditor").await;
        grant_role(env, ns, alice, "auditor").await;
    })
    .await;
}

#[tokio::test]
async fn role_policy_with_a_client_role_permits_its_holders_only() {
    let policies = json!({"rolePolicies": [{"name": "p", "roles": [{"name": "probe/approver", "required": true}]}]});
    permits_alice_denies_bob("authz-crole", policies, async |env, ns, alice| {
        let probe = env.keycloak_get(&format!("{ns}/clients?clientId=probe")).await.unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        post(env, &format!("{ns}/clients/{probe}/roles"), json!({"name": "approver"})).await;
        let role = env.keycloak_get(&format!("{ns}/clients/{probe}/roles/approver")).await.unwrap();
        post(env, &format!("{ns}/users/{alice}/role-mappings/clients/{probe}"), json!([role])).await;
    })
    .await;
}

#[tokio::test]
async fn user_policy_permits_the_named_user_only() {
    let policies = json!({"userPolicies": [{"name": "p", "users": ["alice"]}]});
    permits_alice_denies_bob("authz-user", policies, async |_, _, _| {}).await;
}

#[tokio::test]
async fn group_policy_permits_members_only() {
    let policies = json!({"groupPolicies": [{"name": "p", "groups": ["/ops"]}]});
    permits_alice_denies_bob("authz-group", policies, async |env, ns, alice| {
        let g = group(env, ns, "ops").await;
        join(env, ns, alice, &g).await;
    })
    .await;
}

#[tokio::test]
async fn client_policy_permits_the_named_client_only() {
    let (env, ns, id, _op) = guarded_by(
        "authz-client",
        json!({"clientPolicies": [{"name": "p", "clients": ["probe"]}]}),
        async |env, ns| {
            user(env, ns, "alice").await;
        },
    )
    .await;
    let a = uid(&env, &ns, "alice").await;
    let probe =
        env.keycloak_get(&format!("{ns}/clients?clientId=probe")).await.unwrap()[0]["id"].as_str().unwrap().to_string();
    assert_eq!(decide(&env, &ns, &id, &probe, &a, "guarded", None).await, "PERMIT");
    assert_eq!(decide(&env, &ns, &id, &id, &a, "guarded", None).await, "DENY");
}

#[tokio::test]
async fn time_policy_permits_inside_its_window_only() {
    let (env, ns, id, _op) = guarded_by(
        "authz-time",
        json!({"timePolicies": [{"name": "p", "notBefore": "2020-01-01 00:00:00"},
                                {"name": "past", "notOnOrAfter": "2021-01-01 00:00:00"}]}),
        async |env, ns| {
            user(env, ns, "alice").await;
        },
    )
    .await;
    let a = uid(&env, &ns, "alice").await;
    let e = export(&env, &ns, &id).await;
    assert_eq!(policy(&e, "p")["config"]["nbf"], "2020-01-01 00:00:00");
    assert_eq!(policy(&e, "past")["config"]["noa"], "2021-01-01 00:00:00");
    assert_eq!(decide(&env, &ns, &id, &id, &a, "guarded", None).await, "PERMIT");
    // The same resource guarded by the window that closed in 2021 is denied.
    let (env2, ns2) = (env.clone(), ns.clone());
    env2.apply(
        &ns2,
        client(
            "api",
            json!({"clientId": "api", "realmRef": {"name": "realm"},
            "settings": {"authorizationServicesEnabled": true, "standardFlowEnabled": false},
            "authorizationSettings": {"resources": [{"name": "guarded", "uris": ["/guarded/*"]}],
                "policies": {"timePolicies": [{"name": "p", "notBefore": "2020-01-01 00:00:00"},
                                              {"name": "past", "notOnOrAfter": "2021-01-01 00:00:00"}]},
                "permissions": {"resourcePermissions": [{"name": "guard", "resources": ["guarded"], "policies": ["past"]}]}}}),
        ),
    )
    .await;
    wait_for("permission now names past", READY, || async {
        let e = try_export(&env, &ns, &id).await?;
        (config(policy(&e, "guard"), "applyPolicies") == json!(["past"])).then_some(())
    })
    .await;
    assert_eq!(decide(&env, &ns, &id, &id, &a, "guarded", None).await, "DENY");
}

#[tokio::test]
async fn regex_policy_permits_matching_claims_only() {
    let policies = json!({"regexPolicies": [{"name": "p", "targetClaim": "preferred_username", "pattern": "^ali.*"}]});
    permits_alice_denies_bob("authz-regex", policies, async |_, _, _| {}).await;
}

#[tokio::test]
async fn aggregate_policy_combines_its_policies_with_its_strategy() {
    let (env, ns, id, _op) = guarded_by(
        "authz-aggr",
        json!({"rolePolicies": [{"name": "auditors", "roles": [{"name": "auditor"}]}],
               "userPolicies": [{"name": "carol-only", "users": ["carol"]}],
               "aggregatePolicies": [{"name": "p", "decisionStrategy": "AFFIRMATIVE", "policies": ["auditors", "carol-only"]}]}),
        async |env, ns| {
            realm_role(env, ns, "auditor").await;
            let a = user(env, ns, "alice").await;
            user(env, ns, "bob").await;
            user(env, ns, "carol").await;
            grant_role(env, ns, &a, "auditor").await;
        },
    )
    .await;
    let e = export(&env, &ns, &id).await;
    assert_eq!(policy(&e, "p")["decisionStrategy"], "AFFIRMATIVE");
    assert_eq!(config(policy(&e, "p"), "applyPolicies"), json!(["auditors", "carol-only"]));
    let (a, b, c) = (uid(&env, &ns, "alice").await, uid(&env, &ns, "bob").await, uid(&env, &ns, "carol").await);
    assert_eq!(decide(&env, &ns, &id, &id, &a, "guarded", None).await, "PERMIT");
    assert_eq!(decide(&env, &ns, &id, &id, &c, "guarded", None).await, "PERMIT");
    assert_eq!(decide(&env, &ns, &id, &id, &b, "guarded", None).await, "DENY");
}

#[tokio::test]
async fn scope_permission_applies_to_its_scope_only() {
    let (env, ns, op) = setup_with_realm("authz-scope").await;
    let alice = user(&env, &ns, "alice").await;
    let bob = user(&env, &ns, "bob").await;
    env.apply(
        &ns,
        client(
            "api",
            json!({"clientId": "api", "realmRef": {"name": "realm"},
            "settings": {"authorizationServicesEnabled": true},
            "authorizationSettings": {"scopes": [{"name": "view", "displayName": "View", "iconUri": "https://icons.example.com/view.png"}, {"name": "delete"}],
                "resources": [{"name": "album", "displayName": "Album", "type": "urn:api:album", "uris": ["/album/*"],
                               "scopes": ["view", "delete"], "ownerManagedAccess": false,
                               "attributes": {"tier": ["gold"]}}],
                "policies": {"userPolicies": [{"name": "alice", "users": ["alice"]}],
                             "regexPolicies": [{"name": "anyone", "targetClaim": "preferred_username", "pattern": ".*"}]},
                "permissions": {"scopePermissions": [
                    {"name": "view-albums", "resources": ["album"], "scopes": ["view"], "policies": ["anyone"]},
                    {"name": "delete-albums", "resources": ["album"], "scopes": ["delete"], "policies": ["alice"],
                     "description": "only alice deletes", "decisionStrategy": "AFFIRMATIVE"}],
                    "resourcePermissions": [{"name": "typed", "resourceType": "urn:api:album", "policies": ["anyone"]}]}}}),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "api", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap();
    let e = export(&env, &ns, id).await;
    let album = &e["resources"][0];
    assert_eq!(album["displayName"], "Album");
    assert_eq!(album["type"], "urn:api:album");
    assert_eq!(album["attributes"], json!({"tier": ["gold"]}));
    assert_eq!(e["scopes"].as_array().unwrap().iter().find(|s| s["name"] == "view").unwrap()["displayName"], "View");
    assert_eq!(decide(&env, &ns, id, id, &alice, "album", Some("delete")).await, "PERMIT");
    assert_eq!(decide(&env, &ns, id, id, &bob, "album", Some("delete")).await, "DENY");
    assert_eq!(decide(&env, &ns, id, id, &bob, "album", Some("view")).await, "PERMIT");
    let typed = policy(&e, "typed");
    assert_eq!(typed["config"]["defaultResourceType"], "urn:api:album");
    assert_eq!(policy(&e, "delete-albums")["description"], "only alice deletes");
    assert_eq!(policy(&e, "delete-albums")["decisionStrategy"], "AFFIRMATIVE");
    let view = e["scopes"].as_array().unwrap().iter().find(|s| s["name"] == "view").unwrap();
    assert_eq!(view["iconUri"], "https://icons.example.com/view.png");
    // Every one of these fields reads back as written: nothing to change, nothing written.
    let (writes, _) = quiet_reconciles(&op, 2).await;
    assert_eq!(writes, 0);
}

#[tokio::test]
async fn removing_and_renaming_leave_nothing_behind_and_a_second_reconcile_writes_nothing() {
    let (env, ns, op) = setup_with_realm("authz-rm").await;
    let alice = user(&env, &ns, "alice").await;
    let spec = |policies: Value, perm_policy: &str| {
        json!({"clientId": "api", "realmRef": {"name": "realm"},
            "settings": {"authorizationServicesEnabled": true},
            "authorizationSettings": {"resources": [{"name": "r", "uris": ["/r"]}], "policies": policies,
                "permissions": {"resourcePermissions": [{"name": "perm", "resources": ["r"], "policies": [perm_policy]}]}}})
    };
    env.apply(
        &ns,
        client(
            "api",
            spec(json!({"userPolicies": [{"name": "old-name", "users": ["alice"]}, {"name": "extra", "users": ["alice"]}]}), "old-name"),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "api", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap().to_string();
    assert_eq!(names(&export(&env, &ns, &id).await, "policies"), ["extra", "old-name", "perm"]);

    // Rename old-name → new-name and drop extra.
    env.apply(
        &ns,
        client("api", spec(json!({"userPolicies": [{"name": "new-name", "users": ["alice"]}]}), "new-name")),
    )
    .await;
    wait_for("renamed", READY, || async {
        let e = try_export(&env, &ns, &id).await?;
        (names(&e, "policies") == ["new-name", "perm"]).then_some(())
    })
    .await;
    let e = export(&env, &ns, &id).await;
    assert_eq!(config(policy(&e, "perm"), "applyPolicies"), json!(["new-name"]));
    assert_eq!(decide(&env, &ns, &id, &id, &alice, "r", None).await, "PERMIT");
    env.wait_phase(&ns, "api", "Ready", READY).await;
    let (writes, _) = quiet_reconciles(&op, 2).await;
    assert_eq!(writes, 0, "a second reconcile wrote to Keycloak");

    // Omitted lists are not managed: a hand-made scope survives, and dropping `policies` keeps them.
    env.keycloak_send(
        Method::POST,
        &format!("{ns}/clients/{id}/authz/resource-server/scope"),
        Some(json!({"name": "hand-made"})),
    )
    .await;
    let (writes, _) = quiet_reconciles(&op, 2).await;
    assert_eq!(writes, 0);
    assert_eq!(names(&export(&env, &ns, &id).await, "scopes"), ["hand-made"]);
}

#[tokio::test]
async fn unresolved_references_are_reported_by_name_and_grant_nothing() {
    let (env, ns, _op) = setup_with_realm("authz-ref").await;
    env.apply(
        &ns,
        client(
            "api",
            json!({"clientId": "api", "realmRef": {"name": "realm"},
            "settings": {"authorizationServicesEnabled": true},
            "authorizationSettings": {"resources": [{"name": "r", "uris": ["/r"]}],
                "policies": {"rolePolicies": [{"name": "by-role", "roles": [{"name": "ghost-role"}, {"name": "probe/ghost-client-role"}]}],
                             "userPolicies": [{"name": "by-user", "users": ["ghost-user"]}],
                             "groupPolicies": [{"name": "by-group", "groups": ["/ghost-group"]}],
                             "clientPolicies": [{"name": "by-client", "clients": ["ghost-client"]}]},
                "permissions": {"resourcePermissions": [{"name": "perm", "resources": ["r"],
                    "policies": ["by-role", "by-user", "by-group", "by-client"]}]}}}),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "api", "Failed", READY).await;
    assert_eq!(s["reason"], "AuthorizationReferenceNotFound", "{s}");
    let msg = s["message"].as_str().unwrap();
    for name in ["ghost-role", "probe/ghost-client-role", "ghost-user", "/ghost-group", "ghost-client"] {
        assert!(msg.contains(name), "{name} not named in {msg}");
    }
    assert!(msg.contains("rolePolicies[0].roles"), "{msg}");
    // Nothing was written: no resource, policy or permission exists that could grant anything.
    let id = s["internalId"].as_str().unwrap();
    let e = export(&env, &ns, id).await;
    assert!(e["policies"].as_array().unwrap().is_empty(), "{e}");
    assert!(e["resources"].as_array().unwrap().is_empty(), "{e}");
}

#[tokio::test]
async fn drift_in_authorization_objects_is_reverted_with_an_event() {
    let (env, ns, _op) = setup_with_realm("authz-drift").await;
    user(&env, &ns, "alice").await;
    env.apply(
        &ns,
        client(
            "api",
            json!({"clientId": "api", "realmRef": {"name": "realm"},
            "settings": {"authorizationServicesEnabled": true},
            "authorizationSettings": {"resources": [{"name": "r", "uris": ["/r"]}],
                "policies": {"userPolicies": [{"name": "alice", "users": ["alice"]}]},
                "permissions": {"resourcePermissions": [{"name": "perm", "resources": ["r"], "policies": ["alice"]}]}}}),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "api", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap().to_string();
    let base = format!("{ns}/clients/{id}/authz/resource-server");
    // By hand: delete the policy, widen the resource's URIs, add an unlisted permission.
    let p = env.keycloak_get(&format!("{base}/policy/search?name=alice")).await.unwrap();
    env.keycloak_send(Method::DELETE, &format!("{base}/policy/{}", p["id"].as_str().unwrap()), None).await;
    let r = env.keycloak_get(&format!("{base}/resource/search?name=r")).await.unwrap();
    let mut r2 = r.clone();
    r2["uris"] = json!(["/*"]);
    env.keycloak_send(Method::PUT, &format!("{base}/resource/{}", r["_id"].as_str().unwrap()), Some(r2)).await;
    wait_for("drift reverted", READY, || async {
        let e = try_export(&env, &ns, &id).await?;
        let ok = names(&e, "policies") == ["alice", "perm"]
            && e["resources"][0]["uris"] == json!(["/r"])
            && config(policy(&e, "perm"), "applyPolicies") == json!(["alice"]);
        ok.then_some(())
    })
    .await;
    // The Event follows the revert (status first, then the Event): wait for it rather than race it.
    wait_for("DriftReverted events naming both fields", Duration::from_secs(30), || async {
        let events = event_notes(&env, &ns, "api").await;
        let drift: Vec<&String> = events.iter().filter(|(r, _)| r == "DriftReverted").map(|(_, n)| n).collect();
        ["authorizationSettings.policies", "authorizationSettings.resources"]
            .iter()
            .all(|field| drift.iter().any(|n| n.contains(field)))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn javascript_policies_need_opt_in_and_a_deployed_script() {
    let (env, ns, _op) = setup("authz-js").await;
    let spec = |allow: bool| {
        json!({"clientId": "api", "realmRef": {"name": "realm"},
            "settings": {"authorizationServicesEnabled": true},
            "authorizationSettings": {"policies": {"allowJavaScriptPolicies": allow,
                "javascriptPolicies": [{"name": "my-script", "code": "$evaluation.grant();"}]}}})
    };
    // Refused without the opt-in, by the CRD's own rule (the same rule kco checks).
    let refused = env.try_apply(&ns, &client("api", spec(false))).await.unwrap_err();
    assert!(refused.contains("allowJavaScriptPolicies"), "{refused}");

    env.apply(&ns, client("api", spec(true))).await;
    let s = wait_for("not deployed", READY, || async {
        let s = env.client_status(&ns, "api").await;
        (s["reason"] == "JavaScriptPolicyNotDeployed").then_some(s)
    })
    .await;
    assert_eq!(s["phase"], "Failed");
    let msg = s["message"].as_str().unwrap();
    assert!(msg.contains("my-script") && msg.contains("JAR"), "{msg}");
}

#[tokio::test]
async fn a_server_error_caused_by_the_request_ends_as_failed_with_what_to_change() {
    let (env, ns, op) = setup("authz-500").await;
    // Keycloak 26.7 answers HTTP 500 to a client whose name does not fit its database column.
    let long_name = "n".repeat(300);
    env.apply(&ns, client("api", json!({"clientId": "api", "realmRef": {"name": "realm"}, "clientName": long_name})))
        .await;
    let s = env.wait_phase(&ns, "api", "Failed", READY).await;
    assert_eq!(s["reason"], "KeycloakRejectedRequest", "{s}");
    let msg = s["message"].as_str().unwrap();
    assert!(msg.contains("POST") && msg.contains("Change the combination of settings"), "{msg}");
    // It stays Failed (not back to an endless Degraded) across more attempts at resync.
    let n = op.counter("kco_reconciliations", &[("result", "ok")]).await;
    wait_for("two more attempts", READY, || async {
        (op.counter("kco_reconciliations", &[("result", "ok")]).await >= n + 2).then_some(())
    })
    .await;
    let s = env.client_status(&ns, "api").await;
    assert_eq!(s["phase"], "Failed", "{s}");
    assert_eq!(s["reason"], "KeycloakRejectedRequest", "{s}");
}

/// The objects of a resource server as comparable values: (name, type, config) of each policy, and
/// the resource and scope names.
fn shape(e: &Value) -> Value {
    let mut policies: Vec<Value> = e["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let keys: Vec<&String> = p["config"].as_object().unwrap().keys().collect();
            let config: Vec<Value> = keys.iter().map(|k| json!([k, config(p, k)])).collect();
            json!({"name": p["name"], "type": p["type"], "config": config})
        })
        .collect();
    policies.sort_by_key(|p| p["name"].to_string());
    json!({"policies": policies, "resources": names(e, "resources"), "scopes": names(e, "scopes")})
}

#[tokio::test]
async fn default_objects_of_older_keycloaks_end_as_the_spec_says() {
    let (env, ns, _op) = setup_with_realm("authz-old").await;
    user(&env, &ns, "alice").await;
    // A client as Keycloak before 26.5 left it when authorization was switched on: a default resource,
    // a policy that grants everyone (there it was JavaScript; 26.7 can no longer make one, a regex
    // matching anything stands in) and a permission joining them.
    post(
        &env,
        &format!("{ns}/clients"),
        json!({"clientId": "legacy", "serviceAccountsEnabled": true,
        "authorizationServicesEnabled": true, "standardFlowEnabled": false}),
    )
    .await;
    let legacy = env.keycloak_get(&format!("{ns}/clients?clientId=legacy")).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("{ns}/clients/{legacy}/authz/resource-server");
    post(
        &env,
        &format!("{base}/resource"),
        json!({"name": "Default Resource", "type": "urn:legacy:resources:default", "uris": ["/*"]}),
    )
    .await;
    post(
        &env,
        &format!("{base}/policy/regex"),
        json!({"name": "Default Policy", "targetClaim": "preferred_username", "pattern": ".*"}),
    )
    .await;
    post(
        &env,
        &format!("{base}/permission/resource"),
        json!({"name": "Default Permission",
        "resourceType": "urn:legacy:resources:default", "policies": ["Default Policy"]}),
    )
    .await;
    let authz = json!({"resources": [{"name": "r", "uris": ["/r"]}],
        "policies": {"userPolicies": [{"name": "alice", "users": ["alice"]}]},
        "permissions": {"resourcePermissions": [{"name": "perm", "resources": ["r"], "policies": ["alice"]}]}});
    let spec = |client_id: &str| {
        json!({"clientId": client_id, "realmRef": {"name": "realm"},
               "settings": {"authorizationServicesEnabled": true, "standardFlowEnabled": false},
               "authorizationSettings": authz})
    };
    let mut adopted = client("legacy", spec("legacy"));
    adopted["metadata"]["annotations"] = json!({"kco.dev/adopt": "true"});
    env.apply(&ns, adopted).await;
    env.apply(&ns, client("fresh", spec("fresh"))).await;
    let old = env.wait_phase(&ns, "legacy", "Ready", READY).await;
    let new = env.wait_phase(&ns, "fresh", "Ready", READY).await;
    let old = export(&env, &ns, old["internalId"].as_str().unwrap()).await;
    let new = export(&env, &ns, new["internalId"].as_str().unwrap()).await;
    assert_eq!(shape(&old), shape(&new), "the defaults are gone and both hold what the spec declares");
    assert_eq!(names(&old, "policies"), ["alice", "perm"]);
}

#[tokio::test]
async fn more_objects_than_a_page_are_synced_and_an_idle_resync_still_reads_twice() {
    let (env, ns, op) = setup("authz-page").await;
    let spec = |n: usize, label: &str| {
        let scopes: Vec<Value> =
            (0..n).map(|i| json!({"name": format!("s{i:03}"), "displayName": format!("{label} {i}")})).collect();
        json!({"clientId": "api", "realmRef": {"name": "realm"},
               "settings": {"authorizationServicesEnabled": true},
               "authorizationSettings": {"policyEnforcementMode": "PERMISSIVE", "decisionStrategy": "AFFIRMATIVE",
                   "allowRemoteResourceManagement": false, "scopes": scopes}})
    };
    env.apply(&ns, client("api", spec(130, "v1"))).await;
    let s = env.wait_phase(&ns, "api", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap().to_string();
    let rs = env.keycloak_get(&format!("{ns}/clients/{id}/authz/resource-server")).await.unwrap();
    assert_eq!(rs["policyEnforcementMode"], "PERMISSIVE");
    assert_eq!(rs["decisionStrategy"], "AFFIRMATIVE");
    assert_eq!(rs["allowRemoteResourceManagement"], false);
    assert_eq!(export(&env, &ns, &id).await["scopes"].as_array().unwrap().len(), 130);
    let (writes, reads) = quiet_reconciles(&op, 2).await;
    assert_eq!((writes, reads), (0, 2), "idle resync of 130 scopes: writes, requests per reconcile");

    // Updating and deleting needs ids from the paged listing (the last ones are on its second page).
    env.apply(&ns, client("api", spec(120, "v2"))).await;
    wait_for("page two updated", READY, || async {
        let e = try_export(&env, &ns, &id).await?;
        let scopes = e["scopes"].as_array().unwrap();
        let ok = scopes.len() == 120
            && scopes.iter().all(|s| s["displayName"].as_str().unwrap().starts_with("v2 "))
            && scopes.iter().any(|s| s["name"] == "s119");
        ok.then_some(())
    })
    .await;
    let pages = op.counter("kco_keycloak_requests", &[("kind", "authz-scope"), ("method", "GET")]).await;
    assert_eq!(pages, 2, "one paged listing of 130 scopes: two pages of 100");
}
