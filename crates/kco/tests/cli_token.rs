//! `kco token`: the client-credentials grant against the real Keycloak, and each usual failure
//! explained from Keycloak's real answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::path::PathBuf;
use std::process::{Command, Output};

use kco_testing::{Env, unique};
use serde_json::Value;

const KCO: &str = env!("CARGO_BIN_EXE_kco");

fn kco(args: &[&str]) -> Output {
    Command::new(KCO).args(args).env_remove("KCO_CLIENT_SECRET").output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A realm with three confidential clients, applied with `kco apply`: `svc` (service accounts, audience
/// `api`), `nosa` (service accounts off) — and their credentials as JSON lines, in manifest order.
struct Fixture {
    realm: String,
    dir: PathBuf,
    creds: Vec<Value>,
}

fn fixture() -> Fixture {
    let realm = format!("cli-token-{}", unique());
    let dir = std::env::temp_dir().join(format!("kco-cli-token-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let client = |name: &str, sa: bool, extra: &str| {
        format!(
            "---\napiVersion: kco.dev/v1\nkind: KeycloakClient\nmetadata:\n  name: {name}\nspec:\n  clientId: {name}\n\
             \x20 realmRef:\n    name: realm\n  settings:\n    serviceAccountsEnabled: {sa}\n    standardFlowEnabled: {}\n{extra}",
            !sa
        )
    };
    let yaml = format!(
        "apiVersion: kco.dev/v1\nkind: KeycloakRealm\nmetadata:\n  name: realm\nspec:\n  realmName: {realm}\n  instanceRef:\n    name: local\n{}{}",
        client("svc", true, "  audiences: [api]\n"),
        client("nosa", false, "  redirectUris: [\"https://nosa.example.com/cb\"]\n"),
    );
    let file = dir.join("clients.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = kco(&["apply", "-f", file.to_str().unwrap(), "--output", "json"]);
    let (stdout, stderr) = text_of(&out);
    assert!(out.status.success(), "{stderr}");
    let creds = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    Fixture { realm, dir, creds }
}

fn text_of(o: &Output) -> (String, String) {
    text(o)
}

fn token(f: &Fixture, client_id: &str, secret: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["token", "--realm", &f.realm, "--client-id", client_id, "--client-secret", secret];
    args.extend_from_slice(extra);
    let out = kco(&args);
    let (o, e) = text(&out);
    (out.status.code(), o, e)
}

#[tokio::test]
async fn a_token_with_its_claims_and_the_expected_audience() {
    let _env = Env::connect().await;
    let f = fixture();
    let secret = f.creds[0]["client-secret"].as_str().unwrap();
    let (code, stdout, stderr) = token(&f, "svc", secret, &["--expect-audience", "api"]);
    assert_eq!(code, Some(0), "{stderr}");
    let claims: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(claims["azp"], "svc");
    assert!(stderr.contains("signature NOT verified"), "{stderr}");
    assert!(stderr.contains("audience \"api\" is present"), "{stderr}");

    // The same from the file `kco apply --output json` writes.
    let file = f.dir.join("svc.json");
    std::fs::write(&file, f.creds[0].to_string()).unwrap();
    let out = kco(&["token", "--secret-file", file.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[tokio::test]
async fn service_accounts_off_is_named_as_such() {
    let _env = Env::connect().await;
    let f = fixture();
    let secret = f.creds[1]["client-secret"].as_str().unwrap();
    let (code, _, stderr) = token(&f, "nosa", secret, &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("service accounts are off for client nosa"), "{stderr}");
    assert!(stderr.contains("serviceAccountsEnabled: true"), "{stderr}");
    assert!(stderr.contains("unauthorized_client"), "Keycloak's own answer is shown: {stderr}");
}

#[tokio::test]
async fn a_wrong_secret_is_named_as_such() {
    let _env = Env::connect().await;
    let f = fixture();
    let (code, _, stderr) = token(&f, "svc", "not-the-secret", &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("wrong secret: client svc exists but the secret does not match"), "{stderr}");
}

#[tokio::test]
async fn an_unknown_client_is_named_as_such() {
    let _env = Env::connect().await;
    let f = fixture();
    let (code, _, stderr) = token(&f, "ghost", "whatever", &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown client"), "{stderr}");
    assert!(stderr.contains("\"ghost\""), "{stderr}");
}

#[tokio::test]
async fn a_missing_audience_is_named_with_the_fix() {
    let _env = Env::connect().await;
    let f = fixture();
    let secret = f.creds[0]["client-secret"].as_str().unwrap();
    let (code, stdout, stderr) = token(&f, "svc", secret, &["--expect-audience", "billing"]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("\"azp\""), "the claims are still shown: {stdout}");
    assert!(stderr.contains("missing audience"), "{stderr}");
    assert!(stderr.contains("spec.audiences"), "{stderr}");
}

#[tokio::test]
async fn a_token_from_the_secret_kco_apply_wrote() {
    let env = Env::connect().await;
    let f = fixture();
    let ns = env.namespace("cli-token").await;
    let manifest = f.dir.join("clients.yaml");
    let only_svc = f.dir.join("svc.yaml");
    // The first two documents: the realm and svc.
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    let docs: Vec<&str> = yaml.split("---\n").collect();
    std::fs::write(&only_svc, format!("{}---\n{}", docs[0], docs[1])).unwrap();
    let target = format!("{ns}/svc-credentials");
    let out = kco(&["apply", "-f", only_svc.to_str().unwrap(), "--to-secret", &target]);
    assert!(out.status.success(), "{:?}", text_of(&out));
    let out = kco(&["token", "--from-secret", &target, "--expect-audience", "api"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\"azp\": \"svc\""), "{stdout}");
}
