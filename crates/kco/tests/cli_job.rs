//! examples/job/: the Job's own command, run as the Job would run it — with its ServiceAccount's
//! token and nothing else (the apiserver enforces RBAC) — provisions the client in the real Keycloak
//! and writes its Secret into the other namespace; anywhere else it is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::process::Command;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kco_testing::{Env, unique};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

const KCO: &str = env!("CARGO_BIN_EXE_kco");

#[tokio::test]
async fn the_jobs_command_with_only_its_service_accounts_rbac_writes_the_secret_in_the_other_namespace() {
    let env = Env::connect().await;
    let job_ns = env.namespace("cli-job").await;
    let target_ns = env.namespace("cli-target").await;
    let other_ns = env.namespace("cli-other").await;
    let realm = format!("cli-job-{}", unique());

    // The example, with this test's namespaces and realm.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/job/job.yaml")).unwrap();
    let example = example
        .replace("namespace: keycloak\n", &format!("namespace: {job_ns}\n"))
        .replace("kagenti-system", &target_ns)
        .replace("realmName: demo", &format!("realmName: {realm}"));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&example).unwrap();
    let of = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap().clone();
    for kind in ["ServiceAccount", "ConfigMap", "Role", "RoleBinding"] {
        let doc = of(kind);
        let ns = doc["metadata"]["namespace"].as_str().unwrap().to_string();
        env.apply(&ns, doc).await;
    }

    // The ServiceAccount's own kubeconfig: same server and CA, its token instead of the admin's cert.
    let sa = of("ServiceAccount")["metadata"]["name"].as_str().unwrap().to_string();
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = Api::<ServiceAccount>::namespaced(env.kube.clone(), &job_ns)
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let admin_config = std::env::var("KUBECONFIG").unwrap();
    let mut config: Value = serde_saphyr::from_str(&std::fs::read_to_string(&admin_config).unwrap()).unwrap();
    config["users"] = json!([{"name": "job", "user": {"token": token}}]);
    config["contexts"][0]["context"]["user"] = json!("job");
    let dir = std::env::temp_dir().join(format!("kco-cli-job-{}", unique()));
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let sa_config = dir.join("kubeconfig");
    std::fs::write(&sa_config, serde_json::to_string(&config).unwrap()).unwrap();

    // The ConfigMap's files where the Job mounts them; the Job's command and arguments as written.
    for (name, text) in of("ConfigMap")["data"].as_object().unwrap() {
        std::fs::write(manifests.join(name), text.as_str().unwrap()).unwrap();
    }
    let container = &of("Job")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"], json!(["kco"]));
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace(mount, manifests.to_str().unwrap()))
        .collect();
    let run = |args: &[String]| {
        // The Job's environment: Keycloak's URL (here the test's) and the admin Secret's values.
        Command::new(KCO)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("KUBECONFIG", &sa_config)
            .env("KEYCLOAK_URL", &env.keycloak_url)
            .env("KEYCLOAK_ADMIN_USER", &env.admin_user)
            .env("KEYCLOAK_ADMIN_PASSWORD", &env.admin_password)
            .output()
            .unwrap()
    };

    let out = run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("KeycloakClient {job_ns}/my-service: created")), "{stderr}");
    assert!(stderr.contains(&format!("Secret {target_ns}/my-service-oauth-secret: written")), "{stderr}");
    let data = env.secret_data(&target_ns, "my-service-oauth-secret").await.unwrap();
    assert_eq!(data["OIDC_CLIENT_ID"], "my-service");
    let claims =
        env.client_credentials(&data["OIDC_TOKEN_URL"], "my-service", &data["OIDC_CLIENT_SECRET"]).await.unwrap();
    assert_eq!(claims["azp"], "my-service");

    // A re-run (the Job retried, or the next install) changes nothing.
    let again = run(&args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("my-service: unchanged") && stderr.contains("0 writes"), "{stderr}");
    assert!(stderr.contains("my-service-oauth-secret: unchanged"), "{stderr}");

    // The same ServiceAccount may not write Secrets anywhere else.
    let elsewhere: Vec<String> = args.iter().map(|a| a.replace(&target_ns, &other_ns)).collect();
    let refused = run(&elsewhere);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("forbidden"), "{stderr}");
    assert!(env.secret_data(&other_ns, "my-service-oauth-secret").await.is_none());
}
