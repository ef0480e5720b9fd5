//! Credentials against the real Keycloak and kube-apiserver: consumer formats, scheduled rotation in
//! a non-UTC zone, crash safety of rotation, user-owned secrets, and regenerate-once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::time::Duration;

use kco_testing::{Env, Operator, client, confidential, event_notes, wait_for};
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const READY: Duration = Duration::from_secs(120);

async fn setup(prefix: &str, resync: &str) -> (Env, String, Operator) {
    kco_testing::setup(KCO, prefix, resync).await
}

#[tokio::test]
async fn every_consumer_format_gets_a_working_token() {
    let (env, ns, _op) = setup("fmt", "5m").await;
    env.apply(&ns, client("svc", confidential("svc", json!({"additionalSecrets": [
        {"name": "svc-mlflow", "format": "mlflow"},
        {"name": "svc-phoenix", "format": "phoenix"},
        {"name": "svc-otel", "format": "otel-collector", "labels": {"team": "obs"}},
        {"name": "svc-custom", "keys": {"ID": "{{clientId}}", "SECRET": "{{ clientSecret }}", "URL": "{{tokenEndpoint}}"}}
    ]})))).await;
    env.wait_phase(&ns, "svc", "Ready", READY).await;
    let main = env.secret_data(&ns, "svc-credentials").await.unwrap();
    let token_url = main["token-endpoint"].clone();

    let m = env.secret_data(&ns, "svc-mlflow").await.unwrap();
    assert_eq!(m.keys().collect::<Vec<_>>(), ["OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_TOKEN_URL"]);
    let claims =
        env.client_credentials(&m["OIDC_TOKEN_URL"], &m["OIDC_CLIENT_ID"], &m["OIDC_CLIENT_SECRET"]).await.unwrap();
    assert_eq!(claims["azp"], "svc");

    let p = env.secret_data(&ns, "svc-phoenix").await.unwrap();
    assert_eq!(p.keys().collect::<Vec<_>>(), ["PHOENIX_OAUTH2_CLIENT_ID", "PHOENIX_OAUTH2_CLIENT_SECRET"]);
    let claims = env
        .client_credentials(&token_url, &p["PHOENIX_OAUTH2_CLIENT_ID"], &p["PHOENIX_OAUTH2_CLIENT_SECRET"])
        .await
        .unwrap();
    assert_eq!(claims["azp"], "svc");

    let o = env.secret_data(&ns, "svc-otel").await.unwrap();
    assert_eq!(o.keys().collect::<Vec<_>>(), ["MLFLOW_CLIENT_ID", "MLFLOW_CLIENT_SECRET"]);
    let claims = env.client_credentials(&token_url, &o["MLFLOW_CLIENT_ID"], &o["MLFLOW_CLIENT_SECRET"]).await.unwrap();
    assert_eq!(claims["azp"], "svc");
    let otel = env.get(&ns, "v1", "Secret", "svc-otel").await.unwrap();
    assert_eq!(otel["metadata"]["labels"]["team"], "obs");

    let c = env.secret_data(&ns, "svc-custom").await.unwrap();
    let claims = env.client_credentials(&c["URL"], &c["ID"], &c["SECRET"]).await.unwrap();
    assert_eq!(claims["azp"], "svc");
}

#[tokio::test]
async fn rotation_happens_at_the_wall_clock_time_of_a_non_utc_zone() {
    let (env, ns, op) = setup("rot", "5m").await;
    // A target minute 30-90 s from now, written as Tokyo wall-clock time (UTC+9).
    let target = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(90))
        .unwrap()
        .round(jiff::TimestampRound::new().smallest(jiff::Unit::Minute).mode(jiff::RoundMode::Trunc))
        .unwrap();
    let tokyo = target.in_tz("Asia/Tokyo").unwrap();
    let hhmm = format!("{:02}:{:02}", tokyo.hour(), tokyo.minute());
    env.apply(
        &ns,
        client(
            "svc",
            confidential(
                "svc",
                json!({"secretRotation":
        {"enabled": true, "rotationPeriod": "10s", "rotationTime": hhmm, "timezone": "Asia/Tokyo"}}),
            ),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "svc", "Ready", READY).await;
    assert_eq!(s["nextRotation"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap(), target, "{s}");
    let before = env.secret_data(&ns, "svc-credentials").await.unwrap();
    let token_url = before["token-endpoint"].clone();

    // Well before the target the secret stays; after it, it has changed.
    let rotated = wait_for("rotation", Duration::from_secs(150), || async {
        let now = env.secret_data(&ns, "svc-credentials").await?;
        (now["client-secret"] != before["client-secret"]).then_some((now, jiff::Timestamp::now()))
    })
    .await;
    assert!(rotated.1 >= target, "rotated at {} before the target {target}", rotated.1);
    let after = rotated.0;
    env.client_credentials(&token_url, "svc", &after["client-secret"]).await.unwrap();
    assert!(
        env.client_credentials(&token_url, "svc", &before["client-secret"]).await.is_err(),
        "old secret still works"
    );
    let s = env.wait_phase(&ns, "svc", "Ready", Duration::from_secs(10)).await;
    let last: jiff::Timestamp = s["lastRotation"].as_str().unwrap().parse().unwrap();
    assert!(last >= target, "lastRotation {last} before {target}");
    let next: jiff::Timestamp = s["nextRotation"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        next,
        target.checked_add(jiff::SignedDuration::from_hours(24)).unwrap(),
        "next is the same time tomorrow"
    );
    assert_eq!(op.counter("kco_keycloak_requests", &[("method", "POST"), ("kind", "client-secret")]).await, 1);
}

#[tokio::test]
async fn a_crash_between_rotation_and_secret_write_heals_without_rotating_again() {
    if !cfg!(feature = "fault-injection") {
        panic!("this test needs the operator's fault hook: run it with --features kco/fault-injection (dev/test does)");
    }
    let env = Env::connect().await;
    let ns = env.namespace("crash").await;
    env.keycloak_setup(&ns, &ns).await;
    let mut op =
        Operator::start_with_env(KCO, &ns, &["--resync", "5m"], &[("KCO_FAULT_EXIT_AFTER_ROTATION", "1")]).await;
    env.apply(
        &ns,
        client("svc", confidential("svc", json!({"secretRotation": {"enabled": true, "rotationPeriod": "15s"}}))),
    )
    .await;
    let s = env.wait_phase(&ns, "svc", "Ready", READY).await;
    let before = env.secret_data(&ns, "svc-credentials").await.unwrap();
    // The operator dies right after Keycloak rotated: the Secret still holds the old, now dead, secret.
    let died = std::time::Instant::now();
    while op.exit_code().is_none() {
        assert!(died.elapsed() < Duration::from_secs(60), "the operator did not exit after rotating");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stale = env.secret_data(&ns, "svc-credentials").await.unwrap();
    assert_eq!(stale["client-secret"], before["client-secret"]);
    assert!(env.client_credentials(&stale["token-endpoint"], "svc", &stale["client-secret"]).await.is_err());

    let op = Operator::start(KCO, &ns, &["--resync", "5m"]).await;
    let healed = wait_for("the Secret healed", Duration::from_secs(30), || async {
        let d = env.secret_data(&ns, "svc-credentials").await?;
        (d["client-secret"] != before["client-secret"]).then_some(d)
    })
    .await;
    env.client_credentials(&healed["token-endpoint"], "svc", &healed["client-secret"]).await.unwrap();
    let id = s["internalId"].as_str().unwrap();
    let current = env.keycloak_get(&format!("{ns}/clients/{id}/client-secret")).await.unwrap();
    assert_eq!(current["value"].as_str().unwrap(), healed["client-secret"], "the Secret holds Keycloak's secret");
    assert_eq!(
        op.counter("kco_keycloak_requests", &[("method", "POST"), ("kind", "client-secret")]).await,
        0,
        "the restarted operator rotated again"
    );
}

#[tokio::test]
async fn a_user_owned_secret_reaches_keycloak_within_seconds() {
    let (env, ns, op) = setup("own", "5m").await;
    // Without the opt-in label the Secret is not used: Failed, naming the label; nothing sent.
    env.apply(
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-own"},
        "stringData": {"secret": "first-value-0123456789"}}),
    )
    .await;
    env.apply(&ns, client("svc", confidential("svc", json!({"clientSecret": {"name": "my-own", "key": "secret"}}))))
        .await;
    let s = env.wait_phase(&ns, "svc", "Failed", READY).await;
    assert_eq!(s["reason"], "ClientSecretNotOptedIn", "{s}");
    assert!(s["message"].as_str().unwrap().contains("kco.dev/client-secret=true"), "{s}");
    assert_eq!(op.counter("kco_keycloak_requests", &[("kind", "client-secret")]).await, 0, "nothing sent");
    // Whoever may write the Secret opts it in; the label's event reaches kco within seconds.
    env.apply(
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "my-own", "labels": {"kco.dev/client-secret": "true"}},
        "stringData": {"secret": "first-value-0123456789"}}),
    )
    .await;
    env.wait_phase(&ns, "svc", "Ready", READY).await;
    let d = env.secret_data(&ns, "svc-credentials").await.unwrap();
    assert_eq!(d["client-secret"], "first-value-0123456789");
    env.client_credentials(&d["token-endpoint"], "svc", "first-value-0123456789").await.unwrap();

    let changed_at = std::time::Instant::now();
    env.apply(
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "my-own", "labels": {"kco.dev/client-secret": "true"}},
        "stringData": {"secret": "second-value-9876543210"}}),
    )
    .await;
    wait_for("Keycloak takes the new value", Duration::from_secs(20), || async {
        env.client_credentials(&d["token-endpoint"], "svc", "second-value-9876543210").await.ok()
    })
    .await;
    assert!(changed_at.elapsed() < Duration::from_secs(10), "took {:?}", changed_at.elapsed());
    assert!(env.client_credentials(&d["token-endpoint"], "svc", "first-value-0123456789").await.is_err());
    let d = env.secret_data(&ns, "svc-credentials").await.unwrap();
    assert_eq!(d["client-secret"], "second-value-9876543210");
}

#[tokio::test]
async fn regenerate_secret_regenerates_once_per_request() {
    let (env, ns, op) = setup("regen", "2s").await;
    env.apply(&ns, client("svc", confidential("svc", json!({})))).await;
    env.wait_phase(&ns, "svc", "Ready", READY).await;
    let s0 = env.secret_data(&ns, "svc-credentials").await.unwrap()["client-secret"].clone();
    let posts = || op.counter("kco_keycloak_requests", &[("method", "POST"), ("kind", "client-secret")]);

    env.apply(&ns, client("svc", confidential("svc", json!({"regenerateSecret": true})))).await;
    let s1 = wait_for("regenerated", Duration::from_secs(30), || async {
        let v = env.secret_data(&ns, "svc-credentials").await?["client-secret"].clone();
        (v != s0).then_some(v)
    })
    .await;
    // Several resyncs later it has not regenerated again.
    let n = op.counter("kco_reconciliations", &[("result", "ok")]).await;
    wait_for("three more reconciles", Duration::from_secs(30), || async {
        (op.counter("kco_reconciliations", &[("result", "ok")]).await >= n + 3).then_some(())
    })
    .await;
    assert_eq!(posts().await, 1);
    assert_eq!(env.secret_data(&ns, "svc-credentials").await.unwrap()["client-secret"], s1);

    // Asking again: set it back to false, then true.
    env.apply(&ns, client("svc", confidential("svc", json!({"regenerateSecret": false})))).await;
    wait_for("request cleared", Duration::from_secs(30), || async {
        env.client_status(&ns, "svc").await.get("regeneratedGeneration").is_none().then_some(())
    })
    .await;
    assert_eq!(posts().await, 1);
    env.apply(&ns, client("svc", confidential("svc", json!({"regenerateSecret": true})))).await;
    wait_for("regenerated again", Duration::from_secs(30), || async {
        let v = env.secret_data(&ns, "svc-credentials").await?["client-secret"].clone();
        (v != s1).then_some(())
    })
    .await;
    assert_eq!(posts().await, 2);
    let regenerations =
        event_notes(&env, &ns, "svc").await.into_iter().filter(|(r, _)| r == "SecretRegenerated").count();
    assert!(regenerations >= 1);
}

#[tokio::test]
async fn with_a_grace_period_the_old_secret_works_until_it_ends() {
    let (env, ns, _op) = setup("grace", "5m").await;
    env.apply(
        &ns,
        client(
            "svc",
            confidential(
                "svc",
                json!({"secretRotation":
        {"enabled": true, "rotationPeriod": "20s", "gracePeriod": "10s"}}),
            ),
        ),
    )
    .await;
    let s = env.wait_phase(&ns, "svc", "Ready", READY).await;
    let path = format!("{ns}/clients/{}", s["internalId"].as_str().unwrap());
    let before = env.secret_data(&ns, "svc-credentials").await.unwrap();
    let url = before["token-endpoint"].clone();
    let old = before["client-secret"].clone();
    let new = wait_for("rotation", Duration::from_secs(60), || async {
        let d = env.secret_data(&ns, "svc-credentials").await?;
        (d["client-secret"] != old).then(|| d["client-secret"].clone())
    })
    .await;
    // The instants Keycloak recorded (epoch seconds), not when this test noticed the Secret change:
    // the new secret's creation (the rotation) and the end of the previous secret's grace period.
    let attrs = env.keycloak_get(&path).await.expect("the Keycloak client")["attributes"].clone();
    let epoch = |k: &str| -> i64 {
        attrs[k].as_str().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("attribute {k} missing: {attrs}"))
    };
    let rotated = epoch("client.secret.creation.time");
    let grace_end = epoch("client.secret.rotated.expiration.time");
    assert!((grace_end - rotated - 10).abs() <= 1, "grace period is not 10s: rotated {rotated}, ends {grace_end}");
    if let Some(last) = env.client_status(&ns, "svc").await["lastRotation"].as_str() {
        let last: jiff::Timestamp = last.parse().unwrap();
        assert!(
            (last.as_second() - rotated).abs() <= 5,
            "status.lastRotation {last} is not Keycloak's rotation {rotated}"
        );
    }
    let now = || jiff::Timestamp::now().as_second();
    // During the grace period both secrets get tokens (checked, and finished, before it ends).
    let checked_from = now();
    env.client_credentials(&url, "svc", &new).await.unwrap();
    env.client_credentials(&url, "svc", &old).await.expect("the previous secret works during the grace period");
    let checked_until = now();
    assert!(
        checked_from >= rotated && checked_until < grace_end,
        "checked at {checked_from}..{checked_until}, outside the grace period {rotated}..{grace_end}"
    );
    // The previous secret keeps working up to the recorded end and stops right after it (Keycloak's
    // clock has whole seconds: one second of slack either side).
    let stopped = wait_for("the previous secret stops working", Duration::from_secs(30), || async {
        let asked = now();
        let works = env.client_credentials(&url, "svc", &old).await.is_ok();
        let answered = now();
        if works {
            assert!(
                answered <= grace_end + 1,
                "the previous secret outlived its grace period: works at {answered}, ended {grace_end}"
            );
            None
        } else {
            Some(asked)
        }
    })
    .await;
    assert!(
        stopped >= grace_end - 1,
        "the previous secret stopped at {stopped}, before its grace period ended ({grace_end})"
    );
    env.client_credentials(&url, "svc", &new).await.unwrap();
}

#[tokio::test]
async fn secret_name_metadata_and_manage_secret_false_are_honoured() {
    let (env, ns, _op) = setup("meta", "5m").await;
    env.apply(
        &ns,
        client(
            "named",
            confidential(
                "named",
                json!({"secretName": "custom-name",
        "secretMetadata": {"labels": {"app": "orders"}, "annotations": {"reloader.stakater.com/match": "true"}}}),
            ),
        ),
    )
    .await;
    env.apply(&ns, client("unmanaged", confidential("unmanaged", json!({"manageSecret": false})))).await;
    let s = env.wait_phase(&ns, "named", "Ready", READY).await;
    assert_eq!(s["credentialsSecret"], "custom-name");
    let secret = env.get(&ns, "v1", "Secret", "custom-name").await.expect("Secret under spec.secretName");
    assert_eq!(secret["metadata"]["labels"]["app"], "orders");
    assert_eq!(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kco");
    assert_eq!(secret["metadata"]["annotations"]["reloader.stakater.com/match"], "true");
    assert!(env.get(&ns, "v1", "Secret", "named-credentials").await.is_none(), "the default name was written too");

    let s = env.wait_phase(&ns, "unmanaged", "Ready", READY).await;
    assert!(s.get("credentialsSecret").is_none(), "status claims a Secret: {s}");
    assert!(env.get(&ns, "v1", "Secret", "unmanaged-credentials").await.is_none());
}

#[tokio::test]
async fn a_secret_that_is_not_kcos_is_never_overwritten() {
    let (env, ns, _op) = setup("taken", "5m").await;
    env.apply(
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "svc-credentials"},
        "stringData": {"client-secret": "hand-made"}}),
    )
    .await;
    env.apply(&ns, client("svc", confidential("svc", json!({})))).await;
    let s = env.wait_phase(&ns, "svc", "Failed", READY).await;
    assert_eq!(s["reason"], "SecretConflict");
    assert!(s["message"].as_str().unwrap().contains("secretName"), "{s}");
    assert_eq!(env.secret_data(&ns, "svc-credentials").await.unwrap()["client-secret"], "hand-made");
}

/// kco updates a client from what it read a moment before. When the secret rotated in between (kco
/// on another path, `kco apply`, a person in the admin console), the update must not undo that
/// rotation: Keycloak's record of the previous secret (kept for the grace period, which consumers
/// still holding it rely on) and of the rotation time stay as the rotation left them.
#[tokio::test]
async fn an_update_from_a_read_before_a_rotation_leaves_the_rotation_alone() {
    use kco_engine::{DesiredClient, Owner, apply_plan, grace, observe_client, plan_client};
    use kco_keycloak::{AdminCredentials, KeycloakAdmin, KeycloakAdminConfig, RequestMetrics};

    let (env, ns, _op) = setup("stale", "30m").await;
    let spec = confidential(
        "svc",
        json!({"secretRotation":
        {"enabled": true, "rotationPeriod": "30d", "gracePeriod": "5m"}}),
    );
    env.apply(&ns, client("svc", spec.clone())).await;
    let status = env.wait_phase(&ns, "svc", "Ready", READY).await;
    let id = status["internalId"].as_str().unwrap().to_string();
    let admin = KeycloakAdmin::new(
        KeycloakAdminConfig {
            url: env.keycloak_url.clone(),
            admin_realm: "master".into(),
            credentials: AdminCredentials::Password {
                username: env.admin_user.clone(),
                password: env.admin_password.clone().into(),
            },
            ca_pem: None,
            timeout: Duration::from_secs(30),
        },
        RequestMetrics::default(),
    )
    .unwrap();
    // Two rotations with the grace rule kco set up for this client; the read in between is stale.
    let (grace_secs, period_secs) = (300, 30 * 86_400);
    grace::ensure_grace_policy(&admin, &ns, grace_secs, period_secs, jiff::Timestamp::now().as_second()).await.unwrap();
    admin.regenerate_client_secret(&ns, &id).await.unwrap();
    let mut stale = admin.get(&[&ns, "clients", &id], &[], "client").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later second for the creation time
    let current = admin.regenerate_client_secret(&ns, &id).await.unwrap();
    let previous = stale["secret"].as_str().unwrap().to_string();
    let rotated = env.keycloak_get(&format!("{ns}/clients/{id}")).await.unwrap()["attributes"].clone();
    assert_eq!(rotated["client.secret.rotated"], previous.as_str(), "the second rotation kept the first's secret");

    // An update planned from the stale read (a hand edit of the description to revert), applied now.
    stale["description"] = json!("edited by hand");
    let spec: kco_api::KeycloakClientSpec = serde_json::from_value(spec).unwrap();
    let api: kube::Api<kco_api::KeycloakClient> = kube::Api::namespaced(env.kube.clone(), &ns);
    let uid = api.get("svc").await.unwrap().metadata.uid.unwrap();
    let desired = DesiredClient::from_spec(&spec, Some(&Owner { namespace: ns.clone(), name: "svc".into(), uid }));
    let observed = observe_client(&admin, &ns, &desired, stale).await.unwrap();
    let plan = plan_client(&desired, Some(&observed));
    assert!(!plan.is_empty(), "the hand edit is reverted");
    apply_plan(&admin, &ns, &plan, Some(&id), Some(&observed), false).await.unwrap();

    let after = env.keycloak_get(&format!("{ns}/clients/{id}")).await.unwrap();
    assert_ne!(after["description"], "edited by hand");
    for key in ["client.secret.creation.time", "client.secret.rotated", "client.secret.rotated.expiration.time"] {
        assert_eq!(after["attributes"][key], rotated[key], "{key} changed by the update");
    }
    let url = env.secret_data(&ns, "svc-credentials").await.unwrap()["token-endpoint"].clone();
    use secrecy::ExposeSecret;
    env.client_credentials(&url, "svc", current.expose_secret()).await.expect("the current secret works");
    env.client_credentials(&url, "svc", &previous).await.expect("the previous secret works in its grace period");
}
