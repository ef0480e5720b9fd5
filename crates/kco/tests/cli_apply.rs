//! `kco apply`, `kco diff` and `kco delete` against the real Keycloak (and the apiserver for
//! `--to-secret`), running the built binary as a person or a pipeline would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kco_testing::{Env, unique};
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");

fn kco(args: &[&str]) -> Output {
    Command::new(KCO).args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("kco-cli-apply-{}", unique()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A KeycloakRealm (createRealm by default) and a confidential client of the reference's group,
/// exactly as a manifest written for the reference operator looks.
fn manifests(dir: &Path, realm: &str, client_id: &str, extra: &str) -> PathBuf {
    let file = dir.join("client.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: vriesdemichael.github.io/v1\nkind: KeycloakRealm\nmetadata:\n  name: realm\n  namespace: team-a\n\
             spec:\n  realmName: {realm}\n  instanceRef:\n    name: local\n  clientAuthorizationGrants: [team-a]\n---\n\
             apiVersion: vriesdemichael.github.io/v1\nkind: KeycloakClient\nmetadata:\n  name: svc\n  namespace: team-a\n\
             spec:\n  clientId: {client_id}\n  realmRef:\n    name: realm\n  settings:\n    serviceAccountsEnabled: true\n\
             \x20   standardFlowEnabled: false\n    directAccessGrantsEnabled: false\n{extra}"
        ),
    )
    .unwrap();
    file
}

/// "Keycloak: R reads, W writes" from the closing summary.
fn writes(stderr: &str) -> u64 {
    let line = stderr.lines().find(|l| l.starts_with("Keycloak: ")).unwrap_or_else(|| panic!("no counts in {stderr}"));
    line.split(", ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn apply_creates_then_reports_unchanged_with_zero_writes_and_hands_out_working_credentials() {
    let env = Env::connect().await;
    let realm = format!("cli-{}", unique());
    let d = dir();
    let file = manifests(&d, &realm, "svc", "");
    let out_file = d.join("creds.env");

    let first =
        kco(&["apply", "-f", file.to_str().unwrap(), "--output", "env", "--output-file", out_file.to_str().unwrap()]);
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("KeycloakClient team-a/svc: created"), "{stderr}");
    assert!(stdout.is_empty(), "credentials went to the file, not stdout: {stdout}");
    let mode = std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials file mode {mode:o}");
    let creds = std::fs::read_to_string(&out_file).unwrap();
    let get = |k: &str| {
        creds.lines().find_map(|l| l.strip_prefix(&format!("{k}='"))).unwrap().trim_end_matches('\'').to_string()
    };
    let claims =
        env.client_credentials(&get("TOKEN_ENDPOINT"), &get("CLIENT_ID"), &get("CLIENT_SECRET")).await.unwrap();
    assert_eq!(claims["azp"], "svc");

    // The client carries the operator's owner attribute, with the CLI's owner identity.
    let found = env.keycloak_get(&format!("{realm}/clients?clientId=svc")).await.unwrap();
    assert_eq!(found[0]["attributes"]["kco.dev/owner"], "team-a/svc/cli");

    let second = kco(&["apply", "-f", file.to_str().unwrap(), "--output", "json"]);
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("KeycloakClient team-a/svc: unchanged"), "{stderr}");
    assert_eq!(writes(&stderr), 0, "a second apply must make no Keycloak write: {stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["client-secret"], get("CLIENT_SECRET"), "the secret must not change");

    // As a Secret manifest: the name and namespace the operator would give it.
    let third = kco(&["apply", "-f", file.to_str().unwrap(), "--output", "secret-yaml"]);
    let (stdout, stderr) = text(&third);
    assert_eq!(writes(&stderr), 0, "{stderr}");
    let secret: serde_json::Value = serde_saphyr::from_str(&stdout).unwrap();
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["name"], "svc-credentials");
    assert_eq!(secret["metadata"]["namespace"], "team-a");
    assert_eq!(secret["data"]["client-id"], "c3Zj", "base64 of svc");
}

#[tokio::test]
async fn apply_to_secret_writes_a_kubernetes_secret_once_in_a_consumer_format() {
    let env = Env::connect().await;
    let ns = env.namespace("cli-secret").await;
    let realm = format!("cli-{}", unique());
    let d = dir();
    let file = manifests(&d, &realm, "mlflow", "");
    let target = format!("{ns}/mlflow-oauth");
    let run = || kco(&["apply", "-f", file.to_str().unwrap(), "--to-secret", &target, "--format", "mlflow"]);
    let first = run();
    let (_, stderr) = text(&first);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("Secret {target}: written")), "{stderr}");
    let data = env.secret_data(&ns, "mlflow-oauth").await.unwrap();
    assert_eq!(data["OIDC_CLIENT_ID"], "mlflow");
    env.client_credentials(&data["OIDC_TOKEN_URL"], "mlflow", &data["OIDC_CLIENT_SECRET"]).await.unwrap();

    let second = run();
    let (_, stderr) = text(&second);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("Secret {target}: unchanged")), "{stderr}");
    assert_eq!(writes(&stderr), 0, "{stderr}");

    // A Secret kco did not write is never overwritten.
    env.apply(
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "theirs"}, "stringData": {"a": "b"}}),
    )
    .await;
    let refused = kco(&["apply", "-f", file.to_str().unwrap(), "--to-secret", &format!("{ns}/theirs")]);
    let (_, stderr) = text(&refused);
    assert!(!refused.status.success());
    assert!(stderr.contains("was not written by kco"), "{stderr}");
    assert_eq!(env.secret_data(&ns, "theirs").await.unwrap()["a"], "b");
}

#[tokio::test]
async fn diff_exits_0_when_in_sync_2_when_changes_are_pending_and_1_on_error() {
    let _env = Env::connect().await;
    let realm = format!("cli-{}", unique());
    let d = dir();
    let file = manifests(&d, &realm, "svc", "");
    let f = file.to_str().unwrap();
    let pending = kco(&["diff", "-f", f]);
    assert_eq!(pending.status.code(), Some(2), "{:?}", text(&pending));
    assert!(text(&pending).0.contains(&format!("+ client \"svc\" in realm {realm}")), "{:?}", text(&pending));
    assert!(kco(&["apply", "-f", f]).status.success());

    let clean = kco(&["diff", "-f", f]);
    assert_eq!(clean.status.code(), Some(0), "{:?}", text(&clean));
    assert!(text(&clean).0.contains("no changes"));
    assert_eq!(writes(&text(&clean).1), 0);

    let changed = manifests(&d, &realm, "svc", "  redirectUris: [\"https://svc.example.com/cb\"]\n");
    let pending = kco(&["diff", "-f", changed.to_str().unwrap()]);
    let (stdout, stderr) = text(&pending);
    assert_eq!(pending.status.code(), Some(2), "{stdout}{stderr}");
    // The value now is whatever Keycloak gave the new client (redirectUris is unmanaged while unset).
    assert!(stdout.contains("- redirectUris: "), "{stdout}");
    assert!(stdout.contains("+ redirectUris: [\"https://svc.example.com/cb\"]"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "piped output is plain: {stdout:?}");
    assert_eq!(writes(&stderr), 0, "diff never writes: {stderr}");

    let broken = manifests(&d, &realm, "svc", "  redirectUris: [\"not a uri\"]\n");
    let error = kco(&["diff", "-f", broken.to_str().unwrap()]);
    assert_eq!(error.status.code(), Some(1), "{:?}", text(&error));
    assert!(text(&error).0.contains("spec.redirectUris[0]"), "{:?}", text(&error));
}

#[tokio::test]
async fn delete_removes_only_clients_kco_owns() {
    let env = Env::connect().await;
    let realm = format!("cli-{}", unique());
    let d = dir();
    let file = manifests(&d, &realm, "svc", "");
    assert!(kco(&["apply", "-f", file.to_str().unwrap()]).status.success());
    // A client made outside kco, with the clientId another manifest names.
    env.keycloak_send(reqwest::Method::POST, &format!("{realm}/clients"), Some(json!({"clientId": "by-hand"}))).await;
    let foreign = d.join("foreign.yaml");
    std::fs::write(
        &foreign,
        "apiVersion: kco.dev/v1\nkind: KeycloakClient\nmetadata:\n  name: by-hand\n  namespace: team-a\nspec:\n  clientId: by-hand\n\
         \x20 realmRef:\n    name: other\n  publicClient: true\n",
    )
    .unwrap();

    // apply refuses to take it over; delete refuses to delete it.
    let refused = kco(&["apply", "-f", foreign.to_str().unwrap(), "--realm", &realm]);
    let (_, stderr) = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a client created outside kco; kco will not take it over"), "{stderr}");
    let refused = kco(&["delete", "-f", foreign.to_str().unwrap(), "--realm", &realm]);
    let (_, stderr) = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("kco deletes only clients it owns"), "{stderr}");
    assert!(env.keycloak_get(&format!("{realm}/clients?clientId=by-hand")).await.unwrap()[0].is_object());

    let deleted = kco(&["delete", "-f", file.to_str().unwrap()]);
    let (_, stderr) = text(&deleted);
    assert!(deleted.status.success(), "{stderr}");
    assert!(stderr.contains("KeycloakClient team-a/svc: deleted"), "{stderr}");
    assert_eq!(env.keycloak_get(&format!("{realm}/clients?clientId=svc")).await.unwrap(), json!([]));
    let again = kco(&["delete", "-f", file.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(text(&again).1.contains("nothing to delete"));
}

#[tokio::test]
async fn a_realm_that_is_neither_in_the_manifests_nor_named_is_a_clear_error() {
    let _env = Env::connect().await;
    let d = dir();
    let file = d.join("lonely.yaml");
    std::fs::write(
        &file,
        "apiVersion: kco.dev/v1\nkind: KeycloakClient\nmetadata:\n  name: lonely\nspec:\n  clientId: lonely\n  realmRef:\n    name: nowhere\n  publicClient: true\n",
    )
    .unwrap();
    let out = kco(&["apply", "-f", file.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("spec.realmRef names KeycloakRealm default/nowhere"), "{stderr}");
    assert!(stderr.contains("--realm"), "{stderr}");
}

/// Moving over from the reference operator with `kco apply`: its client (its marks name the
/// KeycloakClient team-a/svc) is refused without `kco.dev/adopt`, and taken over in place with it:
/// same id, same secret, and the consumer's token request keeps working.
#[tokio::test]
async fn apply_takes_over_a_reference_operators_client_only_on_request_keeping_id_and_secret() {
    let env = Env::connect().await;
    let realm = format!("cli-{}", unique());
    let d = dir();
    // The realm, made by applying another client.
    let seed = manifests(&d, &realm, "seed", "");
    assert!(kco(&["apply", "-f", seed.to_str().unwrap()]).status.success());
    let secret = "reference-held-secret-9d2e71";
    env.keycloak_send(
        reqwest::Method::POST,
        &format!("{realm}/clients"),
        Some(json!({"clientId": "legacy", "secret": secret, "publicClient": false, "serviceAccountsEnabled": true,
            "standardFlowEnabled": false, "directAccessGrantsEnabled": false,
            "attributes": {"io.kubernetes.managed-by": "keycloak-operator",
                "io.kubernetes.cr-namespace": "team-a", "io.kubernetes.cr-name": "svc"}})),
    )
    .await;
    let id = env.keycloak_get(&format!("{realm}/clients?clientId=legacy")).await.unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token_url = format!("{}/realms/{realm}/protocol/openid-connect/token", env.keycloak_url);
    env.client_credentials(&token_url, "legacy", secret).await.unwrap();

    let file = manifests(&d, &realm, "legacy", "");
    let refused = kco(&["apply", "-f", file.to_str().unwrap()]);
    let (_, stderr) = text(&refused);
    assert!(!refused.status.success());
    assert!(stderr.contains("reference operator's KeycloakClient team-a/svc"), "{stderr}");

    let text_now = std::fs::read_to_string(&file).unwrap();
    let annotated = text_now.replacen(
        "kind: KeycloakClient\nmetadata:\n  name: svc\n",
        "kind: KeycloakClient\nmetadata:\n  name: svc\n  annotations:\n    kco.dev/adopt: \"true\"\n",
        1,
    );
    assert_ne!(annotated, text_now);
    std::fs::write(&file, annotated).unwrap();
    let taken = kco(&["apply", "-f", file.to_str().unwrap()]);
    let (_, stderr) = text(&taken);
    assert!(taken.status.success(), "{stderr}");
    let found = env.keycloak_get(&format!("{realm}/clients?clientId=legacy")).await.unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], id.as_str(), "not re-created");
    let held = env.keycloak_get(&format!("{realm}/clients/{id}/client-secret")).await.unwrap();
    assert_eq!(held["value"], secret, "the secret consumers hold is kept");
    env.client_credentials(&token_url, "legacy", secret).await.unwrap();
}
