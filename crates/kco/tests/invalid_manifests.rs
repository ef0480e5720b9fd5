//! The corpus `tests/invalid/`: every manifest there is invalid, and says in its leading comments
//! who refuses it and with what message:
//!
//! ```text
//! # expect: <text the refusal message contains>
//! # refused-by: apiserver|operator
//! # first-apply-patch: <JSON merge patch>   (optional: apply the patched manifest first, then this one)
//! ```
//!
//! - `apiserver`: the real kube-apiserver refuses the server-side apply (schema, CEL) with the message.
//! - `operator`: the apiserver accepts it; the operator sets phase Failed, reason InvalidSpec, the
//!   message, and makes no Keycloak request at all.
//!
//! And, without a cluster: the Rust validation (what the CLI and the operator share) refuses every
//! manifest of the corpus too, so no rule lives only in the CRD.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kco_api::KeycloakClientSpec;
use kco_testing::{Env, Operator, wait_for};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const FIELD_MANAGER: &str = "kco-tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefusedBy {
    Apiserver,
    Operator,
}

#[derive(Debug)]
struct Case {
    file: String,
    name: String,
    expect: String,
    by: RefusedBy,
    first_apply_patch: Option<Value>,
    manifest: Value,
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/invalid")
}

/// Every manifest of the corpus, sorted by file name; panics on a malformed one.
fn corpus() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/invalid exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files.iter().map(parse_case).collect()
}

fn parse_case(path: &PathBuf) -> Case {
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let (mut expect, mut by, mut first_apply_patch) = (None, None, None);
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let line = line.trim_start_matches('#').trim();
        if let Some(v) = line.strip_prefix("expect:") {
            expect = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("refused-by:") {
            by = Some(match v.trim() {
                "apiserver" => RefusedBy::Apiserver,
                "operator" => RefusedBy::Operator,
                other => panic!("{file}: refused-by must be apiserver or operator, not {other:?}"),
            });
        } else if let Some(v) = line.strip_prefix("first-apply-patch:") {
            first_apply_patch =
                Some(serde_json::from_str(v.trim()).unwrap_or_else(|e| panic!("{file}: first-apply-patch: {e}")));
        }
    }
    let manifest: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
    let name = manifest["metadata"]["name"].as_str().unwrap_or_else(|| panic!("{file}: no metadata.name")).to_string();
    assert_eq!(manifest["kind"], "KeycloakClient", "{file}");
    assert_eq!(format!("{name}.yaml"), file, "{file}: metadata.name must match the file name");
    Case {
        expect: expect.unwrap_or_else(|| panic!("{file}: no `# expect:` line")),
        by: by.unwrap_or_else(|| panic!("{file}: no `# refused-by:` line")),
        file,
        name,
        first_apply_patch,
        manifest,
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

// ---- Without a cluster -------------------------------------------------------------------------

#[test]
fn corpus_is_well_formed_and_large_enough() {
    let cases = corpus();
    let apiserver = cases.iter().filter(|c| c.by == RefusedBy::Apiserver).count();
    let operator = cases.len() - apiserver;
    assert!(cases.len() >= 60, "the corpus has {} manifests; it needs at least 60", cases.len());
    assert!(apiserver > 0 && operator > 0, "apiserver {apiserver}, operator {operator}");
    for c in &cases {
        assert!(!c.expect.is_empty(), "{}: empty expect", c.file);
        if c.by == RefusedBy::Operator {
            assert!(c.expect.contains("spec.") || c.expect.len() > 20, "{}: name the field in expect", c.file);
            assert!(c.first_apply_patch.is_none(), "{}: first-apply-patch only for apiserver cases", c.file);
        }
    }
}

/// The Rust rules (shared by the CLI and the operator) refuse every manifest too: by failing to parse it
/// (wrong types, enum values, missing fields) or by a validation error. For operator cases the
/// validation message is exactly the expected one. Transition rules (first-apply-patch) need the old
/// object, which only the apiserver has.
#[test]
fn rust_validation_refuses_the_whole_corpus() {
    let mut failures = Vec::new();
    for c in corpus() {
        if c.first_apply_patch.is_some() {
            continue;
        }
        let spec: KeycloakClientSpec = match serde_json::from_value(c.manifest["spec"].clone()) {
            Ok(s) => s,
            Err(e) => {
                if c.by == RefusedBy::Operator {
                    failures.push(format!("{}: the operator cannot even parse it ({e})", c.file));
                }
                continue;
            }
        };
        let errors: Vec<String> = kco_engine::validate_client(&spec).iter().map(ToString::to_string).collect();
        if errors.is_empty() {
            failures.push(format!("{}: Rust validation accepts it", c.file));
        } else if c.by == RefusedBy::Operator && !errors.iter().any(|e| e.contains(&c.expect)) {
            failures.push(format!("{}: no error contains {:?}; got {errors:?}", c.file, c.expect));
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

/// Manifests right at the edge of the rules (the reference's examples among them): the schema's CEL
/// must not be stricter than the rules, so the apiserver and Rust both accept every one.
fn valid_specs() -> Vec<(&'static str, Value)> {
    let authz = json!({
        "policyEnforcementMode": "ENFORCING", "decisionStrategy": "UNANIMOUS",
        "scopes": [{"name": "read"}, {"name": "write"}],
        "resources": [{"name": "documents", "uris": ["/api/documents/*"], "scopes": ["read", "write"]}],
        "policies": {
            "rolePolicies": [{"name": "document-editors", "roles": [{"name": "editor"}, {"name": "billing/admin"}]}],
            "groupPolicies": [{"name": "finance-team", "groups": ["/finance"]}],
            "userPolicies": [{"name": "alice", "users": ["alice"]}],
            "clientPolicies": [{"name": "cli", "clients": ["cli"]}],
            "timePolicies": [{"name": "office-hours", "hour": 9, "hourEnd": 17, "notBefore": "2026-01-01 00:00:00"}],
            "regexPolicies": [{"name": "example-mail", "targetClaim": "email", "pattern": ".*@example\\.com"}],
            "aggregatePolicies": [{"name": "editors-or-finance", "decisionStrategy": "AFFIRMATIVE",
                                   "policies": ["document-editors", "finance-team"]}]
        },
        "permissions": {
            "resourcePermissions": [{"name": "all-documents", "resourceType": "urn:documents", "policies": ["alice"]}],
            "scopePermissions": [
                {"name": "documents-read", "resources": ["documents"], "scopes": ["read"], "policies": ["finance-team"]},
                {"name": "documents-write", "resources": ["documents"], "scopes": ["write"], "policies": ["editors-or-finance"]}
            ]
        }
    });
    vec![
        (
            "reference-webapp",
            json!({
                "clientName": "Team A Web App",
                "redirectUris": ["https://app.example.com/callback"], "webOrigins": ["https://app.example.com"],
                "postLogoutRedirectUris": ["https://app.example.com"],
                "settings": {"standardFlowEnabled": true, "directAccessGrantsEnabled": false},
                "secretRotation": {"enabled": true, "rotationPeriod": "30d", "rotationTime": "02:00", "timezone": "UTC"}
            }),
        ),
        (
            "reference-spa",
            json!({
                "publicClient": true, "redirectUris": ["https://spa.example.com/*"], "webOrigins": ["https://spa.example.com"],
                "settings": {"standardFlowEnabled": true, "implicitFlowEnabled": false, "directAccessGrantsEnabled": false,
                             "pkceCodeChallengeMethod": "S256"}
            }),
        ),
        (
            "reference-documents-api",
            json!({
                "bearerOnly": true,
                "settings": {"standardFlowEnabled": false, "directAccessGrantsEnabled": false,
                             "serviceAccountsEnabled": false, "authorizationServicesEnabled": true},
                "authorizationSettings": authz
            }),
        ),
        (
            "edge-uris",
            json!({
                "publicClient": true,
                "redirectUris": ["myapp://callback", "myapp:*", "com.example.app:/oauth2redirect", "/relative/*",
                                 "http://localhost:8080/cb", "https://app.example.com/cb?x=1"],
                "postLogoutRedirectUris": ["+", "https://app.example.com/logged-out"],
                "webOrigins": ["+", "*", "http://localhost:3000", "capacitor://localhost"],
                "rootUrl": "${authBaseUrl}", "adminUrl": "", "baseUrl": "/app/#/home"
            }),
        ),
        (
            "edge-secrets",
            json!({
                "settings": {"serviceAccountsEnabled": true, "accessTokenLifespan": 0, "clientSessionMaxLifespan": 2147483647},
                "serviceAccountRoles": {"realmRoles": ["offline_access"], "clientRoles": {"realm-management": ["view-users"]}},
                "defaultClientScopes": ["profile"], "optionalClientScopes": ["email"],
                "protocolMappers": [{"name": "audience", "protocolMapper": "oidc-audience-mapper",
                                     "config": {"included.client.audience": "api"}}],
                "audiences": ["api"], "clientRoles": ["viewer", "editor"],
                "attributes": {"post.logout.redirect.uris": "https://edge.example.com"},
                "secretName": "edge.credentials-1", "secretMetadata": {"labels": {"app.kubernetes.io/part-of": "edge"}},
                "secretRotation": {"enabled": true, "rotationPeriod": "36500d", "gracePeriod": "1h", "timezone": "Europe/Amsterdam"},
                "additionalSecrets": [{"name": "edge-oidc", "format": "mlflow", "keys": {"REALM": "{{realm}}"}},
                                      {"name": "edge-remote", "namespace": "mlflow", "format": "otel-collector"}]
            }),
        ),
    ]
}

#[test]
fn rust_validation_accepts_the_valid_edge_cases() {
    for (name, extra) in valid_specs() {
        let spec: KeycloakClientSpec = serde_json::from_value(with_identity(name, extra)["spec"].clone()).unwrap();
        let errors = kco_engine::validate_client(&spec);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

fn with_identity(name: &str, extra: Value) -> Value {
    let mut spec = json!({"clientId": name, "realmRef": {"name": "realm"}});
    merge_patch(&mut spec, &extra);
    json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": name}, "spec": spec})
}

// ---- Against the real apiserver ----------------------------------------------------------------

async fn client_api(kube: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("kco.dev", "v1", "KeycloakClient");
    let (ar, _) = kube::discovery::pinned_kind(kube, &gvk).await.unwrap();
    Api::namespaced_with(kube.clone(), ns, &ar)
}

/// Server-side apply; the apiserver's refusal message on failure.
async fn apply(api: &Api<DynamicObject>, obj: &Value, dry_run: bool) -> Result<(), String> {
    let name = obj["metadata"]["name"].as_str().unwrap();
    let mut pp = PatchParams::apply(FIELD_MANAGER).force();
    pp.dry_run = dry_run;
    match api.patch(name, &pp, &Patch::Apply(obj)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.message.clone()),
        Err(e) => panic!("apply {name}: not an apiserver refusal: {e}"),
    }
}

/// Install this build's CRDs and wait until the apiserver enforces this build's CEL rules. The
/// apiserver is shared: a test binary built from other sources may have installed other CRDs meanwhile.
async fn install_crds_and_wait(kube: &Client, api: &Api<DynamicObject>) {
    let crds: Api<CustomResourceDefinition> = Api::all(kube.clone());
    for crd in kco_api::crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd)).await.unwrap();
    }
    let probe = json!({
        "apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "schema-probe"},
        "spec": {"clientId": "probe", "realmRef": {"name": "realm"}, "redirectUris": ["*"]}
    });
    wait_for("the apiserver to serve this build's KeycloakClient schema", Duration::from_secs(60), || async {
        apply(api, &probe, true)
            .await
            .err()
            .filter(|m| m.contains("a bare \"*\" allows redirects anywhere"))
            .map(|_| ())
    })
    .await;
}

#[tokio::test]
async fn apiserver_refuses_its_part_of_the_corpus() {
    let env = Env::connect().await;
    let ns = env.namespace("invalid-api").await;
    let api = client_api(&env.kube, &ns).await;
    install_crds_and_wait(&env.kube, &api).await;
    let started = Instant::now();
    let cases: Vec<Case> = corpus().into_iter().filter(|c| c.by == RefusedBy::Apiserver).collect();
    let mut failures = Vec::new();
    for c in &cases {
        if let Some(patch) = &c.first_apply_patch {
            let mut first = c.manifest.clone();
            merge_patch(&mut first, patch);
            if let Err(m) = apply(&api, &first, false).await {
                failures.push(format!("{}: the first apply (before the change) was refused: {m}", c.file));
                continue;
            }
        }
        let mut outcome = apply(&api, &c.manifest, false).await;
        if outcome.is_ok() {
            // Perhaps another test binary swapped the CRD: put this build's back and try once more.
            install_crds_and_wait(&env.kube, &api).await;
            outcome = apply(&api, &c.manifest, false).await;
        }
        match outcome {
            Ok(()) => failures.push(format!("{}: the apiserver accepted it", c.file)),
            Err(m) if !m.contains(&c.expect) => {
                failures.push(format!("{}: refused, but the message lacks {:?}:\n    {m}", c.file, c.expect))
            }
            Err(_) => {}
        }
    }
    eprintln!("{} apiserver-refused manifests checked in {:?}", cases.len(), started.elapsed());
    assert!(failures.is_empty(), "{} of {} failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[tokio::test]
async fn apiserver_accepts_the_valid_edge_cases() {
    let env = Env::connect().await;
    let ns = env.namespace("valid-api").await;
    let api = client_api(&env.kube, &ns).await;
    install_crds_and_wait(&env.kube, &api).await;
    let mut failures = Vec::new();
    for (name, extra) in valid_specs() {
        if let Err(m) = apply(&api, &with_identity(name, extra), true).await {
            failures.push(format!("{name}: refused: {m}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn operator_refuses_its_part_of_the_corpus_with_invalid_spec_and_no_keycloak_call() {
    let env = Env::connect().await;
    let ns = env.namespace("invalid-op").await;
    let realm = ns.clone();
    // A real instance and realm: had validation let anything through, the operator would call Keycloak.
    env.keycloak_setup(&ns, &realm).await;
    let api = client_api(&env.kube, &ns).await;
    install_crds_and_wait(&env.kube, &api).await;
    let op = Operator::start(KCO, &ns, &[]).await;
    // The operator checks the KeycloakInstance itself (token, server info); those requests are not the
    // clients'. Let that check finish and settle, then count from there.
    wait_for("KeycloakInstance local reachable", Duration::from_secs(60), || async {
        let ins = env.get(&ns, "kco.dev/v1", "KeycloakInstance", "local").await?;
        (ins["status"]["reachable"] == true).then_some(())
    })
    .await;
    let baseline = settled_keycloak_requests(&op).await;
    let started = Instant::now();
    let cases: Vec<Case> = corpus().into_iter().filter(|c| c.by == RefusedBy::Operator).collect();

    let mut failures = Vec::new();
    for c in &cases {
        if let Err(m) = apply(&api, &c.manifest, false).await {
            failures.push(format!("{}: the apiserver refused it, but it is marked refused-by: operator: {m}", c.file));
        }
    }
    for c in &cases {
        if failures.iter().any(|f| f.starts_with(&format!("{}:", c.file))) {
            continue;
        }
        let what = format!("KeycloakClient {ns}/{} to settle (Failed, Ready or Degraded)", c.name);
        let status = wait_for(&what, Duration::from_secs(60), || async {
            let s = env.client_status(&ns, &c.name).await;
            ["Failed", "Ready", "Degraded"].iter().any(|p| s["phase"] == *p).then_some(s)
        })
        .await;
        let message = status["message"].as_str().unwrap_or_default();
        if status["phase"] != "Failed" || status["reason"] != "InvalidSpec" {
            failures.push(format!(
                "{}: phase {} reason {} (message {message:?}), not Failed/InvalidSpec",
                c.file, status["phase"], status["reason"]
            ));
        } else if !message.contains(&c.expect) {
            failures.push(format!("{}: the message lacks {:?}:\n    {message}", c.file, c.expect));
        }
    }

    // Every client here is invalid, so the operator must not have sent one request to Keycloak for them —
    // (the realm and instance status checks aside). The metric must exist for that zero to mean anything.
    // Wait for the count to settle (requests still in flight would land after the verdicts).
    let settled = settled_keycloak_requests(&op).await;
    let metrics = keycloak_request_lines(&op).await;
    assert!(!metrics.is_empty(), "the operator does not export kco_keycloak_requests");
    let requests = settled - baseline;
    eprintln!("{} operator-refused manifests checked in {:?}", cases.len(), started.elapsed());
    op.stop().await;
    assert!(failures.is_empty(), "{} of {} failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert_eq!(
        requests,
        0,
        "the operator made {requests} Keycloak requests for invalid clients:\n{}",
        metrics.join("\n")
    );
}

async fn keycloak_request_lines(op: &Operator) -> Vec<String> {
    let text = reqwest::get(&op.metrics_url).await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.contains("kco_keycloak_requests")).map(str::to_string).collect()
}

/// The client-side Keycloak request count once it has not moved for two seconds.
async fn settled_keycloak_requests(op: &Operator) -> u64 {
    let mut last = op.client_keycloak_requests().await;
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stable_since.elapsed() < Duration::from_secs(2) {
        assert!(Instant::now() < deadline, "Keycloak requests never settled: {:?}", keycloak_request_lines(op).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = op.client_keycloak_requests().await;
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    last
}
