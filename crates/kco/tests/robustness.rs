//! No single object may take kco down or slip past its guards (issue #8), against the real Keycloak
//! and kube-apiserver: a hostile object fails alone while a valid one beside it reaches Ready; a grant
//! that reaches realm administration through a composite role is refused; Keycloak's own refusals of
//! a spec name the field; throttled and garbled answers are told apart and Retry-After is honoured;
//! /readyz waits for the watches; the rotation grace policies are one per rule and go when unused.
//! And from issue #14: a client deleted after its realm, instance and admin Secret still leaves
//! Keycloak; names built to escape the granted realm are kept verbatim in it or refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use kco_testing::{Env, Operator, client, confidential, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const READY: Duration = Duration::from_secs(120);

async fn setup(prefix: &str, resync: &str) -> (Env, String, Operator) {
    kco_testing::setup(KCO, prefix, resync).await
}

async fn realm_ready(env: &Env, ns: &str) {
    wait_for("KeycloakRealm Ready", READY, || async {
        let r = env.get(ns, "kco.dev/v1", "KeycloakRealm", "realm").await?;
        (r["status"]["phase"] == "Ready").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_hostile_object_fails_alone_while_a_valid_one_beside_it_reaches_ready() {
    let (env, ns, mut op) = setup("hostile", "5m").await;
    let key = "€".repeat(100);
    env.apply(
        &ns,
        client(
            "hostile",
            confidential(
                "hostile",
                json!({"additionalSecrets": [{"name": "hostile-oidc", "keys": {key.clone(): "{{clientId}}"}}]}),
            ),
        ),
    )
    .await;
    env.apply(&ns, client("valid", confidential("valid", json!({})))).await;
    let s = env.wait_phase(&ns, "hostile", "Failed", READY).await;
    assert_eq!(s["reason"], "InvalidSpec", "{s}");
    let msg = s["message"].as_str().unwrap();
    assert!(msg.starts_with("spec.additionalSecrets[0].keys: key name \"€€€"), "{msg}");
    assert!(msg.contains("use letters, digits"), "the message says what to do: {msg}");
    env.wait_phase(&ns, "valid", "Ready", READY).await;
    assert_eq!(op.exit_code(), None, "the operator exited");
    assert_eq!(op.counter("kco_reconciliations", &[("result", "panic")]).await, 0);

    // The CLI front gives the same message, and no panic or backtrace.
    let dir = std::env::temp_dir().join(format!("kco-hostile-{}", kco_testing::unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hostile.yaml");
    let manifest =
        client("hostile", confidential("hostile", json!({"additionalSecrets": [{"name": "x", "keys": {key: "v"}}]})));
    std::fs::write(&file, serde_json::to_string(&manifest).unwrap()).unwrap();
    let out = std::process::Command::new(KCO).arg("validate").arg(&file).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("is 300 bytes long"), "{stdout}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

#[tokio::test]
async fn a_panic_in_one_reconcile_fails_that_object_and_the_operator_serves_the_others() {
    if !cfg!(feature = "fault-injection") {
        panic!("this test needs the operator's fault hook: run it with --features kco/fault-injection (dev/test does)");
    }
    let env = Env::connect().await;
    let ns = env.namespace("panic").await;
    env.keycloak_setup(&ns, &ns).await;
    let mut op = Operator::start_with_env(KCO, &ns, &["--resync", "5m"], &[("KCO_FAULT_PANIC_ON", "boom")]).await;
    env.apply(&ns, client("boom", confidential("boom", json!({})))).await;
    env.apply(&ns, client("fine", confidential("fine", json!({})))).await;
    let s = env.wait_phase(&ns, "boom", "Failed", READY).await;
    assert_eq!(s["reason"], "InternalError", "{s}");
    let msg = s["message"].as_str().unwrap();
    assert!(msg.contains(&format!("KeycloakClient {ns}/boom")) && msg.contains("bug in kco"), "{msg}");
    env.wait_phase(&ns, "fine", "Ready", READY).await;
    assert_eq!(op.exit_code(), None, "the operator exited");
    assert!(op.counter("kco_reconciliations", &[("result", "panic")]).await >= 1);
}

#[tokio::test]
async fn a_composite_role_reaching_realm_admin_is_not_granted_without_the_realms_allowance() {
    let (env, ns, op) = setup("composite", "5m").await;
    realm_ready(&env, &ns).await;
    // A harmless-looking realm role that contains realm-management/realm-admin, two levels down.
    env.keycloak_send(Method::POST, &format!("{ns}/roles"), Some(json!({"name": "ops-inner"}))).await;
    env.keycloak_send(Method::POST, &format!("{ns}/roles"), Some(json!({"name": "ops"}))).await;
    let rm = env.keycloak_get(&format!("{ns}/clients?clientId=realm-management")).await.unwrap();
    let rm_id = rm[0]["id"].as_str().unwrap();
    let admin = env.keycloak_get(&format!("{ns}/clients/{rm_id}/roles/realm-admin")).await.unwrap();
    env.keycloak_send(Method::POST, &format!("{ns}/roles/ops-inner/composites"), Some(json!([admin]))).await;
    let inner = env.keycloak_get(&format!("{ns}/roles/ops-inner")).await.unwrap();
    env.keycloak_send(Method::POST, &format!("{ns}/roles/ops/composites"), Some(json!([inner]))).await;

    env.apply(&ns, client("sneaky", confidential("sneaky", json!({"serviceAccountRoles": {"realmRoles": ["ops"]}}))))
        .await;
    let s = env.wait_phase(&ns, "sneaky", "Failed", READY).await;
    assert_eq!(s["reason"], "NotAllowed", "{s}");
    let msg = s["message"].as_str().unwrap();
    assert!(
        msg.starts_with("spec.serviceAccountRoles.realmRoles: role \"ops\" includes \"realm-management/realm-admin\""),
        "{msg}"
    );
    assert!(msg.contains("allowAdminRoleGrants: true"), "{msg}");
    let id = env.keycloak_get(&format!("{ns}/clients?clientId=sneaky")).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sa = env.keycloak_get(&format!("{ns}/clients/{id}/service-account-user")).await.unwrap();
    let uid = sa["id"].as_str().unwrap();
    let granted = env.keycloak_get(&format!("{ns}/users/{uid}/role-mappings/realm")).await.unwrap();
    assert!(!granted.as_array().unwrap().iter().any(|r| r["name"] == "ops"), "ops was granted: {granted}");

    // A second client asking for the same role, which kco has read before: refused the same way.
    env.apply(&ns, client("sneaky2", confidential("sneaky2", json!({"serviceAccountRoles": {"realmRoles": ["ops"]}}))))
        .await;
    let s = env.wait_phase(&ns, "sneaky2", "Failed", READY).await;
    assert_eq!(s["reason"], "NotAllowed", "{s}");
    assert!(s["message"].as_str().unwrap().contains("includes \"realm-management/realm-admin\""), "{s}");

    // With the realm's explicit allowance the same grant is made.
    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "realm"},
        "spec": {"realmName": ns, "instanceRef": {"name": "local"}, "clientAuthorizationGrants": [ns],
                 "allowAdminRoleGrants": true}}),
    )
    .await;
    env.wait_phase(&ns, "sneaky", "Ready", READY).await;
    let granted = env.keycloak_get(&format!("{ns}/users/{uid}/role-mappings/realm")).await.unwrap();
    assert!(granted.as_array().unwrap().iter().any(|r| r["name"] == "ops"), "{granted}");
    drop(op);
}

#[tokio::test]
async fn a_scope_keycloak_lacks_fails_naming_the_field_and_is_not_retried_as_transient() {
    let (env, ns, _op) = setup("noscope", "5m").await;
    env.apply(
        &ns,
        client("scoped", confidential("scoped", json!({"defaultClientScopes": ["profile", "no-such-scope"]}))),
    )
    .await;
    let s = env.wait_phase(&ns, "scoped", "Failed", READY).await;
    assert_eq!(s["reason"], "InvalidSpec", "{s}");
    let msg = s["message"].as_str().unwrap();
    assert!(msg.starts_with("spec.defaultClientScopes: realm"), "{msg}");
    assert!(msg.contains("\"no-such-scope\""), "{msg}");
}

/// A stand-in for what sits in front of Keycloak in a cluster (a gateway, a proxy) when Keycloak is
/// overloaded or broken: it answers every request with one fixed answer, chosen by `mode`
/// (0: HTTP 429 with Retry-After: 3; 1: HTTP 200 with an HTML page). Not a fake Keycloak: it tests how
/// kco treats such answers, not a Keycloak feature.
async fn fixed_answers(mode: Arc<AtomicU8>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mode = mode.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let answer = if mode.load(Ordering::SeqCst) == 0 {
                    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                } else {
                    let body = "<html><body>502 upstream sad</body></html>";
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn throttled_and_garbled_answers_are_told_apart_and_retry_after_is_honoured() {
    let (env, ns, op) = setup("throttle", "5m").await;
    let mode = Arc::new(AtomicU8::new(0));
    let port = fixed_answers(mode.clone()).await;
    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakInstance", "metadata": {"name": "busy"},
               "spec": {"url": format!("http://127.0.0.1:{port}"), "adminSecretRef": {"name": "keycloak-admin"}}}),
    )
    .await;
    env.apply(
        &ns,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "busy"},
               "spec": {"realmName": "busy", "instanceRef": {"name": "busy"}, "clientAuthorizationGrants": [ns]}}),
    )
    .await;
    let mut spec = confidential("waits", json!({}));
    spec["realmRef"] = json!({"name": "busy"});
    env.apply(&ns, client("waits", spec)).await;
    let s = env.wait_phase(&ns, "waits", "Degraded", READY).await;
    assert_eq!(s["reason"], "KeycloakThrottled", "{s}");
    assert!(s["message"].as_str().unwrap().contains("HTTP 429"), "{s}");
    // The requeue follows Keycloak's Retry-After, not kco's own 2 s first backoff.
    let log = op.log.clone();
    wait_for("the retry honours Retry-After", Duration::from_secs(30), || async {
        let text = strip_ansi(&std::fs::read_to_string(&log).ok()?);
        text.lines()
            .any(|l| l.contains("object=") && l.contains(&ns) && l.contains("retry_after=Some(3s)"))
            .then_some(())
    })
    .await;

    // A garbled answer is its own kind: not "unreachable", not throttled.
    mode.store(1, Ordering::SeqCst);
    let s = wait_for("KeycloakDecodeError", Duration::from_secs(60), || async {
        let s = env.client_status(&ns, "waits").await;
        (s["reason"] == "KeycloakDecodeError").then_some(s)
    })
    .await;
    assert_eq!(s["phase"], "Degraded", "{s}");
}

/// The log without terminal colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn readyz_waits_until_the_watches_have_listed_what_exists() {
    if !cfg!(feature = "fault-injection") {
        panic!("this test needs the operator's fault hook: run it with --features kco/fault-injection (dev/test does)");
    }
    let env = Env::connect().await;
    let ns = env.namespace("readyz").await;
    // The hook holds the watches back for 4 s; health answers at once, readiness must not.
    let op = Operator::launch(KCO, &ns, &[], &[("KCO_FAULT_DELAY_WATCH_MS", "4000")]);
    wait_for("/healthz", Duration::from_secs(30), || async { (op.probe("/healthz").await == Some(200)).then_some(()) })
        .await;
    assert_eq!(op.probe("/readyz").await, Some(503), "ready before the watches synced");
    wait_for("/readyz", Duration::from_secs(30), || async { (op.probe("/readyz").await == Some(200)).then_some(()) })
        .await;
    let log = strip_ansi(&std::fs::read_to_string(&op.log).unwrap());
    assert!(log.contains("initial lists synced; ready"), "{log}");
    drop(env);
}

/// kco's grace policies in the realm: (policy names, profile names).
async fn grace_policies(env: &Env, realm: &str) -> (Vec<String>, Vec<String>) {
    let names = |v: Option<Value>, key: &str| -> Vec<String> {
        let mut n: Vec<String> = v.unwrap()[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().filter(|n| n.starts_with("kco-secret-grace-")).map(str::to_string))
            .collect();
        n.sort();
        n
    };
    (
        names(env.keycloak_get(&format!("{realm}/client-policies/policies")).await, "policies"),
        names(env.keycloak_get(&format!("{realm}/client-policies/profiles")).await, "profiles"),
    )
}

#[tokio::test]
async fn grace_policies_are_one_per_rule_matched_by_name_and_removed_when_no_client_needs_them() {
    let (env, ns, _op) = setup("gracegc", "5m").await;
    realm_ready(&env, &ns).await;
    // A policy of someone else's in the same realm must survive everything below.
    env.keycloak_send(
        Method::PUT,
        &format!("{ns}/client-policies/profiles"),
        Some(json!({"profiles": [{"name": "theirs", "executors": []}]})),
    )
    .await;
    let rotation = |grace: &str| {
        json!({"regenerateSecret": true,
               "secretRotation": {"enabled": true, "rotationPeriod": "30d", "gracePeriod": grace}})
    };
    env.apply(&ns, client("a", confidential("a", rotation("1h")))).await;
    env.apply(&ns, client("b", confidential("b", rotation("1h")))).await;
    for n in ["a", "b"] {
        env.wait_phase(&ns, n, "Ready", READY).await;
    }
    let rule = "kco-secret-grace-3600s-2592000s".to_string();
    assert_eq!(grace_policies(&env, &ns).await, (vec![rule.clone()], vec![rule.clone()]), "one rule, one policy");
    let c = env.keycloak_get(&format!("{ns}/clients?clientId=a")).await.unwrap();
    assert_eq!(c[0]["attributes"]["kco.dev/secret-grace"], "3600s-2592000s", "matched by the rule's name");
    let policies = env.keycloak_get(&format!("{ns}/client-policies/policies")).await.unwrap();
    let ours = policies["policies"].as_array().unwrap().iter().find(|p| p["name"] == rule.as_str()).unwrap();
    assert!(ours["conditions"][0]["configuration"]["attributes"].as_str().unwrap().contains("3600s-2592000s"));

    // a moves to another rule: the old one stays while b needs it.
    let mut spec = confidential("a", rotation("2h"));
    spec["regenerateSecret"] = json!(false);
    env.apply(&ns, client("a", spec)).await;
    wait_for("a follows the new rule", READY, || async {
        let c = env.keycloak_get(&format!("{ns}/clients?clientId=a")).await?;
        (c[0]["attributes"]["kco.dev/secret-grace"] == "7200s-2592000s").then_some(())
    })
    .await;
    assert_eq!(grace_policies(&env, &ns).await.0, vec![rule.clone()], "b still needs the old rule");

    // b is deleted: nobody follows the old rule, so it goes; the other writer's profile stays.
    env.delete(&ns, client("b", json!({}))).await;
    wait_for("the unused rule removed", READY, || async { grace_policies(&env, &ns).await.0.is_empty().then_some(()) })
        .await;
    assert!(grace_policies(&env, &ns).await.1.is_empty(), "the profile went with its policy");
    let profiles = env.keycloak_get(&format!("{ns}/client-policies/profiles")).await.unwrap();
    assert!(profiles["profiles"].as_array().unwrap().iter().any(|p| p["name"] == "theirs"), "{profiles}");
}

/// A namespace deletion removes objects in no fixed order. Deleting the KeycloakRealm, the
/// KeycloakInstance and the admin Secret before the KeycloakClient still deletes the Keycloak client
/// (from what status recorded and the admin client kco holds), and releases the finalizer.
#[tokio::test]
async fn a_client_deleted_after_its_realm_instance_and_admin_secret_is_still_removed_from_keycloak() {
    let (env, ns, _op) = setup("orderless", "5m").await;
    env.apply(&ns, client("svc", confidential("svc", json!({})))).await;
    let s = env.wait_phase(&ns, "svc", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap().to_string();
    assert!(env.keycloak_get(&format!("{ns}/clients/{id}")).await.is_some());

    for (api_version, kind, name) in [
        ("kco.dev/v1", "KeycloakRealm", "realm"),
        ("kco.dev/v1", "KeycloakInstance", "local"),
        ("v1", "Secret", "keycloak-admin"),
    ] {
        env.delete(&ns, json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}})).await;
        wait_for(&format!("{kind} gone"), Duration::from_secs(30), || async {
            env.get(&ns, api_version, kind, name).await.is_none().then_some(())
        })
        .await;
    }
    env.delete(&ns, json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "svc"}})).await;
    wait_for("the KeycloakClient gone (finalizer released)", Duration::from_secs(60), || async {
        env.get(&ns, "kco.dev/v1", "KeycloakClient", "svc").await.is_none().then_some(())
    })
    .await;
    assert!(env.keycloak_get(&format!("{ns}/clients/{id}")).await.is_none(), "the Keycloak client was left behind");
}

/// Names and values built to escape: path segments, `..`, URL-encoded slashes, header injection,
/// unicode confusables and bidi controls. Each is refused with a message naming its field, or kept
/// verbatim in the granted realm; nothing reaches another realm (master's clients and roles are
/// unchanged). Prints how many were tried.
#[tokio::test]
async fn hostile_names_stay_in_the_granted_realm_or_are_refused() {
    let (env, ns, _op) = setup("escape", "5m").await;
    // master holds one client per realm the tests made: look names up instead of listing them.
    let in_master = |client_id: &'static str| {
        let env = &env;
        async move {
            let path = format!("master/clients?clientId={}&first=0&max=5", urlencode(client_id));
            env.keycloak_get(&path).await.unwrap().as_array().unwrap().len()
        }
    };
    assert_eq!(in_master("../../master/clients").await, 0);
    let master_roles = env.keycloak_get("master/roles").await.unwrap().as_array().unwrap().len();

    // Kept verbatim: names Keycloak allows, which kco must send as one path segment or a JSON value.
    let kept_roles = [
        "a/../../master",
        "%2e%2e",
        "..%2F..%2Fmaster",
        "x?y#z",
        "role;drop",
        "ｒｅａｌｍ-admin",
        "admin\u{202E}nimda",
        "ключ-€-🔑",
        "...",
    ];
    env.apply(
        &ns,
        client(
            "kept",
            json!({"clientId": "../../master/clients", "realmRef": {"name": "realm"},
                   "description": "line one\r\nX-Injected: 1",
                   "clientRoles": kept_roles}),
        ),
    )
    .await;
    // Refused: names that would leave their place in a path, a control character, a confusable of
    // an admin role that does not exist in the realm, and a header injection in a URI.
    let refused = [
        ("dots", json!({"clientRoles": [".."]}), "spec.clientRoles[0]"),
        ("dot", json!({"clientRoles": ["."]}), "spec.clientRoles[0]"),
        ("control", json!({"clientRoles": ["bad\u{7}bell"]}), "spec.clientRoles[0]"),
        (
            "confusable",
            json!({"settings": {"serviceAccountsEnabled": true}, "serviceAccountRoles": {"realmRoles": ["ｒｅａｌｍ-admin"]}}),
            "ｒｅａｌｍ-admin",
        ),
        ("inject", json!({"redirectUris": ["https://app.example.com/cb\r\nX-Injected: 1"]}), "spec.redirectUris[0]"),
    ];
    // Refused by the apiserver (CEL) at once, or by the operator (Failed): either names the field.
    let mut by_operator = vec![];
    for (name, extra, says) in &refused {
        let mut spec = json!({"clientId": format!("hostile-{name}"), "realmRef": {"name": "realm"}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        match env.try_apply(&ns, &client(name, spec)).await {
            Ok(()) => by_operator.push((*name, *says)),
            Err(e) => assert!(e.contains(says), "{name}: {e}"),
        }
    }

    let s = env.wait_phase(&ns, "kept", "Ready", READY).await;
    let id = s["internalId"].as_str().unwrap();
    let c = env.keycloak_get(&format!("{ns}/clients/{id}")).await.unwrap();
    assert_eq!(c["clientId"], "../../master/clients");
    assert_eq!(c["description"], "line one\r\nX-Injected: 1");
    let roles = env.keycloak_get(&format!("{ns}/clients/{id}/roles")).await.unwrap();
    let mut names: Vec<String> =
        roles.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    let mut want: Vec<String> = kept_roles.iter().map(|r| r.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "every role kept verbatim in the granted realm");

    for (name, says) in &by_operator {
        let s = env.wait_phase(&ns, name, "Failed", READY).await;
        let message = s["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message}");
    }
    assert_eq!(in_master("../../master/clients").await, 0, "a client in master");
    assert_eq!(env.keycloak_get("master/roles").await.unwrap().as_array().unwrap().len(), master_roles);
    println!(
        "hostile names tried: {} kept verbatim, {} refused ({} by the apiserver, {} by the operator), 0 reached another realm",
        kept_roles.len() + 2,
        refused.len(),
        refused.len() - by_operator.len(),
        by_operator.len()
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
