//! Every applied field against the real Keycloak, through the operator: set it, read Keycloak back,
//! change it, read again, remove it, read again. Several fields share one KeycloakClient and one
//! operator per test, so the file runs in a couple of minutes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::time::Duration;

use kco_api::KeycloakClient;
use kco_testing::{Env, Operator, client, wait_for};
use kube::Api;
use kube::api::PostParams;
use reqwest::Method;
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const READY: Duration = Duration::from_secs(120);

async fn setup(prefix: &str) -> (Env, String, Operator) {
    kco_testing::setup(KCO, prefix, "2s").await
}

/// Make `spec` the spec of KeycloakClient `name` (created, or replaced whole) and wait until kco
/// reconciled that generation to Ready (panics with status's message when it reconciles it to anything
/// else). A replace, not a server-side apply: an apply of `{}` or `[]` over items the same manager set
/// is stored as null or dropped by the apiserver, which kco cannot tell from an omitted field.
async fn converge(env: &Env, ns: &str, name: &str, spec: Value) -> Value {
    let api: Api<KeycloakClient> = Api::namespaced(env.kube.clone(), ns);
    match api.get_opt(name).await.unwrap() {
        None => env.apply(ns, client(name, spec)).await,
        Some(mut kc) => {
            kc.spec = serde_json::from_value(spec).unwrap();
            api.replace(name, &PostParams::default(), &kc).await.unwrap();
        }
    }
    let generation = env.get(ns, "kco.dev/v1", "KeycloakClient", name).await.unwrap()["metadata"]["generation"].clone();
    wait_for(&format!("{ns}/{name} generation {generation} Ready"), READY, || async {
        let s = env.client_status(ns, name).await;
        if s["observedGeneration"] != generation {
            return None;
        }
        match s["phase"].as_str() {
            Some("Ready") => Some(s),
            Some("Failed") => panic!("{ns}/{name} failed: {s}"),
            _ => None,
        }
    })
    .await
}

async fn keycloak_client(env: &Env, realm: &str, status: &Value) -> Value {
    let id = status["internalId"].as_str().unwrap();
    env.keycloak_get(&format!("{realm}/clients/{id}")).await.expect("client in Keycloak")
}

/// Keycloak leaves out (or empties) a field or attribute that is not set.
fn unset(v: &Value) -> bool {
    v.is_null() || v == "" || v == &json!([]) || v == &json!({})
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().into_iter().flatten().map(|s| s.as_str().unwrap().to_string()).collect();
    out.sort();
    out
}

fn mapper<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["protocolMappers"].as_array().into_iter().flatten().find(|m| m["name"] == name)
}

async fn flow_id(env: &Env, realm: &str, alias: &str) -> String {
    let flows = env.keycloak_get(&format!("{realm}/authentication/flows")).await.unwrap();
    flows.as_array().unwrap().iter().find(|f| f["alias"] == alias).unwrap()["id"].as_str().unwrap().to_string()
}

/// Two more successful reconciles of the operator make no Keycloak write.
async fn idle_writes_nothing(op: &Operator) {
    let writes = op.keycloak_writes().await;
    let n = op.counter("kco_reconciliations", &[("result", "ok")]).await;
    wait_for("two more reconciles", Duration::from_secs(60), || async {
        (op.counter("kco_reconciliations", &[("result", "ok")]).await >= n + 2).then_some(())
    })
    .await;
    assert_eq!(op.keycloak_writes().await, writes, "an idle resync wrote to Keycloak");
}

#[tokio::test]
async fn oidc_settings_mappers_scopes_attributes_and_flows_set_change_and_remove() {
    let (env, ns, op) = setup("fields").await;
    let base =
        || json!({"clientId": "web", "realmRef": {"name": "realm"}, "redirectUris": ["https://web.example.com/*"]});
    let with = |extra: Value| {
        let mut spec = base();
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    };

    // Set.
    let s = converge(
        &env,
        &ns,
        "web",
        with(json!({
            "clientName": "Web", "adminUrl": "https://web.example.com/admin", "baseUrl": "/home",
            "settings": {"clientAuthenticatorType": "client-jwt", "consentRequired": true,
                "displayOnConsentScreen": false, "includeInTokenScope": false,
                "accessTokenLifespan": 300, "clientSessionIdleTimeout": 600, "clientSessionMaxLifespan": 3600,
                "refreshTokenLifespan": 1200, "offlineSessionMaxLifespan": 7200, "pkceCodeChallengeMethod": "S256"},
            "protocolMappers": [{"name": "tenant", "protocolMapper": "oidc-hardcoded-claim-mapper",
                "config": {"claim.name": "tenant", "claim.value": "a", "access.token.claim": "true", "jsonType.label": "String"}}],
            "defaultClientScopes": ["profile"], "optionalClientScopes": ["email"],
            "attributes": {"team": "a", "tier": "gold"},
            "authenticationFlows": {"directGrantFlow": "direct grant"}
        })),
    )
    .await;
    let c = keycloak_client(&env, &ns, &s).await;
    let a = &c["attributes"];
    assert_eq!(
        (c["name"].as_str(), c["adminUrl"].as_str(), c["baseUrl"].as_str()),
        (Some("Web"), Some("https://web.example.com/admin"), Some("/home"))
    );
    assert_eq!(c["clientAuthenticatorType"], "client-jwt");
    assert_eq!(c["consentRequired"], true);
    assert_eq!(a["display.on.consent.screen"], "false");
    assert_eq!(a["include.in.token.scope"], "false");
    assert_eq!(a["access.token.lifespan"], "300");
    assert_eq!(a["client.session.idle.timeout"], "600");
    assert_eq!(a["client.session.max.lifespan"], "3600");
    assert_eq!(a["client.offline.session.idle.timeout"], "1200");
    assert_eq!(a["client.offline.session.max.lifespan"], "7200");
    assert_eq!(a["pkce.code.challenge.method"], "S256");
    assert_eq!((a["team"].as_str(), a["tier"].as_str()), (Some("a"), Some("gold")));
    let m = mapper(&c, "tenant").expect("mapper tenant");
    assert_eq!(m["protocolMapper"], "oidc-hardcoded-claim-mapper");
    assert_eq!(m["config"]["claim.value"], "a");
    assert_eq!(sorted(&c["defaultClientScopes"]), ["profile"]);
    assert_eq!(sorted(&c["optionalClientScopes"]), ["email"]);
    assert_eq!(c["authenticationFlowBindingOverrides"]["direct_grant"], flow_id(&env, &ns, "direct grant").await);

    // By hand: an attribute kco never set (must survive `attributes: {}`), and a second direct-grant flow.
    let id = s["internalId"].as_str().unwrap().to_string();
    let mut hand = c.clone();
    hand["attributes"]["hand.made"] = json!("x");
    env.keycloak_send(Method::PUT, &format!("{ns}/clients/{id}"), Some(hand)).await;
    env.keycloak_send(
        Method::POST,
        &format!("{ns}/authentication/flows/direct%20grant/copy"),
        Some(json!({"newName": "direct-grant-2"})),
    )
    .await;

    // Change.
    let s = converge(
        &env,
        &ns,
        "web",
        with(json!({
            "clientName": "Web 2", "adminUrl": "https://web2.example.com/admin", "baseUrl": "/start",
            "settings": {"clientAuthenticatorType": "client-secret-jwt", "consentRequired": false,
                "displayOnConsentScreen": true, "includeInTokenScope": true,
                "accessTokenLifespan": 301, "clientSessionIdleTimeout": 601, "clientSessionMaxLifespan": 3601,
                "refreshTokenLifespan": 1201, "offlineSessionMaxLifespan": 7201, "pkceCodeChallengeMethod": "plain"},
            "protocolMappers": [
                {"name": "tenant", "protocolMapper": "oidc-hardcoded-claim-mapper",
                 "config": {"claim.name": "tenant", "claim.value": "b", "access.token.claim": "true", "jsonType.label": "String"}},
                {"name": "email", "protocolMapper": "oidc-usermodel-property-mapper",
                 "config": {"user.attribute": "email", "claim.name": "email", "access.token.claim": "true", "jsonType.label": "String"}}],
            "defaultClientScopes": ["profile", "email"], "optionalClientScopes": ["offline_access"],
            "attributes": {"team": "b"},
            "authenticationFlows": {"directGrantFlow": "direct-grant-2"}
        })),
    )
    .await;
    let c = keycloak_client(&env, &ns, &s).await;
    let a = &c["attributes"];
    assert_eq!(
        (c["name"].as_str(), c["adminUrl"].as_str(), c["baseUrl"].as_str()),
        (Some("Web 2"), Some("https://web2.example.com/admin"), Some("/start"))
    );
    assert_eq!(c["clientAuthenticatorType"], "client-secret-jwt");
    assert_eq!(c["consentRequired"], false);
    assert_eq!(a["display.on.consent.screen"], "true");
    assert_eq!(a["include.in.token.scope"], "true");
    assert_eq!(a["access.token.lifespan"], "301");
    assert_eq!(a["client.session.idle.timeout"], "601");
    assert_eq!(a["client.session.max.lifespan"], "3601");
    assert_eq!(a["client.offline.session.idle.timeout"], "1201");
    assert_eq!(a["client.offline.session.max.lifespan"], "7201");
    assert_eq!(a["pkce.code.challenge.method"], "plain");
    assert_eq!(a["team"], "b");
    assert!(unset(&a["tier"]), "a key dropped from spec.attributes is removed: {a}");
    assert_eq!(a["hand.made"], "x");
    assert_eq!(mapper(&c, "tenant").unwrap()["config"]["claim.value"], "b");
    assert_eq!(mapper(&c, "email").unwrap()["protocolMapper"], "oidc-usermodel-property-mapper");
    assert_eq!(sorted(&c["defaultClientScopes"]), ["email", "profile"]);
    assert_eq!(sorted(&c["optionalClientScopes"]), ["offline_access"]);
    assert_eq!(c["authenticationFlowBindingOverrides"]["direct_grant"], flow_id(&env, &ns, "direct-grant-2").await);

    // Remove: scalars go back to Keycloak's defaults; explicit empty lists and maps empty what kco manages.
    let s = converge(
        &env,
        &ns,
        "web",
        with(json!({"protocolMappers": [], "defaultClientScopes": [], "optionalClientScopes": [],
            "attributes": {}, "authenticationFlows": {}})),
    )
    .await;
    let c = keycloak_client(&env, &ns, &s).await;
    let a = &c["attributes"];
    for field in ["name", "adminUrl", "baseUrl"] {
        assert!(unset(&c[field]), "{field} stays set: {}", c[field]);
    }
    assert_eq!(c["clientAuthenticatorType"], "client-secret");
    assert_eq!(c["consentRequired"], false);
    assert_eq!(a["display.on.consent.screen"], "true");
    assert_eq!(a["include.in.token.scope"], "true");
    for key in [
        "access.token.lifespan",
        "client.session.idle.timeout",
        "client.session.max.lifespan",
        "client.offline.session.idle.timeout",
        "client.offline.session.max.lifespan",
        "pkce.code.challenge.method",
        "team",
    ] {
        assert!(unset(&a[key]), "attribute {key} stays set: {a}");
    }
    assert_eq!(a["hand.made"], "x", "attributes kco did not set survive attributes: {{}}");
    assert!(a["kco.dev/owner"].as_str().unwrap().starts_with(&format!("{ns}/web/")), "the owner mark stays");
    assert!(unset(&c["protocolMappers"]), "mappers stay: {}", c["protocolMappers"]);
    assert!(unset(&c["defaultClientScopes"]) && unset(&c["optionalClientScopes"]));
    assert!(unset(&c["authenticationFlowBindingOverrides"]["direct_grant"]));
    idle_writes_nothing(&op).await;
}

#[tokio::test]
async fn saml_docker_bearer_only_and_service_account_client_roles() {
    let (env, ns, op) = setup("proto").await;
    // The API the service account is granted roles of; bearer-only, and the first client (kco makes the realm).
    let s = converge(
        &env,
        &ns,
        "api",
        json!({"clientId": "api", "realmRef": {"name": "realm"}, "bearerOnly": true, "clientRoles": ["read", "write"]}),
    )
    .await;
    let c = keycloak_client(&env, &ns, &s).await;
    assert_eq!(c["bearerOnly"], true);
    let api_id = s["internalId"].as_str().unwrap().to_string();

    // Set: a SAML client with a SAML mapper, and a service account granted one role of `api`.
    let saml = |extra: Value| {
        let mut spec = json!({"clientId": "saml-app", "realmRef": {"name": "realm"}, "manageSecret": false,
            "redirectUris": ["https://saml.example.com/*"]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    };
    let role_list = |single: &str| {
        json!([{"name": "roles", "protocol": "saml", "protocolMapper": "saml-role-list-mapper",
            "config": {"single": single, "attribute.name": "Role", "attribute.nameformat": "Basic"}}])
    };
    let svc = |roles: Value| {
        json!({"clientId": "svc", "realmRef": {"name": "realm"},
            "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false},
            "serviceAccountRoles": {"clientRoles": roles}})
    };
    let (saml_status, svc_status) = tokio::join!(
        converge(
            &env,
            &ns,
            "saml-app",
            saml(
                json!({"protocol": "saml", "adminUrl": "https://saml.example.com/saml", "protocolMappers": role_list("true")})
            )
        ),
        converge(&env, &ns, "svc", svc(json!({"api": ["read"]}))),
    );
    let c = keycloak_client(&env, &ns, &saml_status).await;
    assert_eq!(c["protocol"], "saml");
    assert_eq!(c["adminUrl"], "https://saml.example.com/saml");
    assert_eq!(mapper(&c, "roles").unwrap()["config"]["single"], "true");
    let svc_id = svc_status["internalId"].as_str().unwrap().to_string();
    let user = env.keycloak_get(&format!("{ns}/clients/{svc_id}/service-account-user")).await.unwrap();
    let uid = user["id"].as_str().unwrap().to_string();
    let granted = || async {
        let v = env.keycloak_get(&format!("{ns}/users/{uid}/role-mappings/clients/{api_id}")).await.unwrap();
        let mut names: Vec<String> =
            v.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(granted().await, ["read"]);

    // docker-v2 needs Keycloak's `docker` feature, which this Keycloak (like a default one) lacks:
    // Keycloak refuses the protocol and kco says so, naming it, without retrying in a loop.
    env.apply(
        &ns,
        client("registry", json!({"clientId": "registry", "realmRef": {"name": "realm"}, "protocol": "docker-v2"})),
    )
    .await;
    let failed = env.wait_phase(&ns, "registry", "Failed", READY).await;
    assert!(failed["message"].as_str().unwrap().contains("docker-v2"), "{failed}");

    // Change.
    let (saml_status, _) = tokio::join!(
        converge(
            &env,
            &ns,
            "saml-app",
            saml(
                json!({"protocol": "saml", "adminUrl": "https://saml.example.com/saml2", "protocolMappers": role_list("false")})
            )
        ),
        converge(&env, &ns, "svc", svc(json!({"api": ["write"]}))),
    );
    let c = keycloak_client(&env, &ns, &saml_status).await;
    assert_eq!(c["protocol"], "saml");
    assert_eq!(c["adminUrl"], "https://saml.example.com/saml2");
    assert_eq!(mapper(&c, "roles").unwrap()["config"]["single"], "false");
    assert_eq!(granted().await, ["write"]);

    // Remove: protocol back to its default (openid-connect), bearerOnly to false, grants emptied.
    env.delete(&ns, client("registry", json!({}))).await;
    let (saml_status, _, api_status) = tokio::join!(
        converge(&env, &ns, "saml-app", saml(json!({"protocolMappers": []}))),
        converge(&env, &ns, "svc", svc(json!({}))),
        converge(
            &env,
            &ns,
            "api",
            json!({"clientId": "api", "realmRef": {"name": "realm"}, "clientRoles": ["read", "write"]})
        ),
    );
    let c = keycloak_client(&env, &ns, &saml_status).await;
    assert_eq!(c["protocol"], "openid-connect");
    assert!(unset(&c["adminUrl"]));
    assert!(unset(&c["protocolMappers"]));
    assert_eq!(granted().await, Vec::<String>::new(), "serviceAccountRoles.clientRoles: {{}} empties the grants");
    assert_eq!(keycloak_client(&env, &ns, &api_status).await["bearerOnly"], false);
    wait_for("registry gone", READY, || async {
        env.get(&ns, "kco.dev/v1", "KeycloakClient", "registry").await.is_none().then_some(())
    })
    .await;
    idle_writes_nothing(&op).await;
}

/// Every phase the object passes through, in order (consecutive repeats folded), from a watch that
/// is established when this returns.
async fn record_phases(env: &Env, ns: &str, name: &str) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use futures::StreamExt;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (started, watching) = tokio::sync::oneshot::channel();
    let mut started = Some(started);
    let api: Api<KeycloakClient> = Api::namespaced(env.kube.clone(), ns);
    let config = kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut stream = kube::runtime::watcher(api, config).boxed();
        while let Some(ev) = stream.next().await {
            let objs = match ev {
                Ok(kube::runtime::watcher::Event::Apply(o) | kube::runtime::watcher::Event::InitApply(o)) => vec![o],
                Ok(kube::runtime::watcher::Event::InitDone) => {
                    if let Some(s) = started.take() {
                        let _ = s.send(());
                    }
                    continue;
                }
                _ => continue,
            };
            for o in objs {
                let Some(phase) = o.status.and_then(|s| s.phase) else { continue };
                let phase = format!("{phase:?}");
                let mut seen = out.lock().unwrap();
                if seen.last() != Some(&phase) {
                    seen.push(phase);
                }
            }
        }
    });
    watching.await.unwrap();
    seen
}

#[tokio::test]
async fn phases_tell_creation_and_update_apart_and_idle_resyncs_write_none() {
    let env = Env::connect().await;
    let ns = env.namespace("phases").await;
    env.keycloak_setup(&ns, &ns).await;
    // --progress-after 0s: every create and update says so first, however quick.
    let op = Operator::start(KCO, &ns, &["--resync", "2s", "--progress-after", "0s"]).await;
    let phases = record_phases(&env, &ns, "web").await;
    let spec = |url: &str| json!({"clientId": "web", "realmRef": {"name": "realm"}, "adminUrl": url});
    converge(&env, &ns, "web", spec("https://a.example.com")).await;
    idle_writes_nothing(&op).await;
    let kube_writes = op.kubernetes_writes().await;
    idle_writes_nothing(&op).await;
    assert_eq!(op.kubernetes_writes().await, kube_writes, "an idle resync wrote to Kubernetes");
    assert_eq!(*phases.lock().unwrap(), ["Provisioning", "Ready"]);

    converge(&env, &ns, "web", spec("https://b.example.com")).await;
    let s = env.client_status(&ns, "web").await;
    assert_eq!(s["phase"], "Ready");
    wait_for("the watch saw Ready again", Duration::from_secs(10), || async {
        (phases.lock().unwrap().len() >= 4).then_some(())
    })
    .await;
    assert_eq!(*phases.lock().unwrap(), ["Provisioning", "Ready", "Updating", "Ready"]);
}

/// docker-v2 against dev/testenv's second Keycloak, which runs with the `docker` feature. That feature
/// gives every new client a mapper `docker-v2-allow-all-mapper`, adds it again at every protocol change,
/// and answers 409 to a protocol change while the client still has it; kco deletes it first. Set (created
/// as docker-v2), change (other fields follow the spec), remove (back to openid-connect), set again, and
/// a change to saml with an explicit empty mapper list (which ends without Keycloak's mapper). A
/// protocol change Keycloak refuses puts its mapper back.
#[tokio::test]
async fn docker_v2_set_change_and_remove_with_the_docker_feature() {
    let env = Env::connect().await.docker_keycloak().await;
    let ns = env.namespace("docker").await;
    env.keycloak_setup(&ns, &ns).await;
    let op = kco_testing::Operator::start(KCO, &ns, &["--resync", "2s"]).await;
    let registry = |extra: Value| {
        let mut spec = json!({"clientId": "registry", "realmRef": {"name": "realm"}, "manageSecret": false});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    };
    let builtin = |c: &Value| mapper(c, "docker-v2-allow-all-mapper").is_some();

    // Set.
    let s = converge(&env, &ns, "registry", registry(json!({"protocol": "docker-v2", "clientName": "Registry"}))).await;
    let id = s["internalId"].clone();
    let c = keycloak_client(&env, &ns, &s).await;
    assert_eq!((c["protocol"].as_str(), c["name"].as_str()), (Some("docker-v2"), Some("Registry")));
    assert!(builtin(&c), "Keycloak's docker feature gave the client its mapper: {}", c["protocolMappers"]);

    // Change: the other fields of a docker-v2 client follow the spec.
    let changed = registry(
        json!({"protocol": "docker-v2", "clientName": "Registry 2", "baseUrl": "https://registry.example.com"}),
    );
    let s = converge(&env, &ns, "registry", changed.clone()).await;
    let c = keycloak_client(&env, &ns, &s).await;
    assert_eq!(c["protocol"], "docker-v2");
    assert_eq!((c["name"].as_str(), c["baseUrl"].as_str()), (Some("Registry 2"), Some("https://registry.example.com")));
    idle_writes_nothing(&op).await;

    // A protocol change Keycloak refuses for another reason (here an attribute it will not take): kco
    // deleted Keycloak's mapper to make way for the change, and puts it back as it was, so the
    // client keeps its protocol and its mapper; the status says what Keycloak refused.
    let refused =
        registry(json!({"clientName": "Registry 2", "attributes": {"backchannel.logout.url": "javascript:x"}}));
    let api: Api<KeycloakClient> = Api::namespaced(env.kube.clone(), &ns);
    let mut kc = api.get("registry").await.unwrap();
    kc.spec = serde_json::from_value(refused).unwrap();
    api.replace("registry", &PostParams::default(), &kc).await.unwrap();
    let s = wait_for("the refused protocol change in status", READY, || async {
        let s = env.client_status(&ns, "registry").await;
        let said = s["message"].as_str().is_some_and(|m| m.contains("illegal scheme"));
        (said && s["phase"] != "Ready").then_some(s)
    })
    .await;
    // Polled: each retry deletes the mapper again for a moment before Keycloak refuses once more.
    wait_for("the docker-v2 client with Keycloak's mapper, once", Duration::from_secs(30), || async {
        let c = keycloak_client(&env, &ns, &s).await;
        assert_eq!(c["protocol"], "docker-v2", "the refused change left the protocol as it was");
        let mappers = c["protocolMappers"].as_array().into_iter().flatten();
        (mappers.filter(|m| m["name"] == "docker-v2-allow-all-mapper").count() == 1).then_some(())
    })
    .await;

    // Remove: the protocol falls back to openid-connect although the client has Keycloak's mapper.
    let s = converge(&env, &ns, "registry", registry(json!({"clientName": "Registry 2"}))).await;
    assert_eq!(s["internalId"], id, "the same client, not a new one");
    let c = keycloak_client(&env, &ns, &s).await;
    assert_eq!(c["protocol"], "openid-connect");
    assert!(builtin(&c), "Keycloak added its mapper back with the change: {}", c["protocolMappers"]);

    // Set again, then saml with the mapper list emptied: the change is made, and the mapper Keycloak
    // adds with it is removed by the next reconcile.
    let s = converge(&env, &ns, "registry", changed).await;
    assert_eq!(keycloak_client(&env, &ns, &s).await["protocol"], "docker-v2");
    let s = converge(&env, &ns, "registry", registry(json!({"protocol": "saml", "protocolMappers": []}))).await;
    assert_eq!(s["internalId"], id);
    wait_for("saml client without mappers", READY, || async {
        let c = keycloak_client(&env, &ns, &s).await;
        (c["protocol"] == "saml" && unset(&c["protocolMappers"])).then_some(())
    })
    .await;
    idle_writes_nothing(&op).await;
}
