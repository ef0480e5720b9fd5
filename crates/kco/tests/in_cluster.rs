//! The image (dev/image) run the way a pod runs it: podman on the host network, the ServiceAccount's
//! token, CA and namespace mounted at /var/run/secrets/kubernetes.io/serviceaccount,
//! KUBERNETES_SERVICE_HOST/PORT set, a read-only root filesystem, no capabilities, UID 65532, and only
//! the chart's RBAC (namespaced mode, leader election on) on the RBAC-enforcing apiserver. A client
//! reaches Ready. Fails (never skips) without podman or the image: run dev/image first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kco_testing::{Env, unique, wait_for};
use serde_json::json;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../charts/kco");
const CONTAINERS_CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/containers.conf");

fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    kco_testing::run_tool(tool, args, stdin, &[("CONTAINERS_CONF", CONTAINERS_CONF)])
}

fn ok(tool: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (success, out) = run(tool, args, stdin);
    assert!(success, "{tool} {args:?} failed:\n{out}");
    out
}

/// Removes the container when the test ends, pass or fail, after printing its log.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let (_, logs) = run("podman", &["logs", &self.0], None);
        eprintln!("--- container log ---\n{logs}");
        let _ = run("podman", &["rm", "-f", "-t", "5", &self.0], None);
    }
}

#[tokio::test]
async fn the_image_runs_in_cluster_with_the_charts_rbac_only() {
    let image = std::env::var("KCO_IMAGE").unwrap_or_else(|_| format!("localhost/kco:{}", env!("CARGO_PKG_VERSION")));
    let (exists, _) = run("podman", &["image", "exists", &image], None);
    assert!(exists, "image {image} not found: build it with dev/image");

    let env = Env::connect().await;
    let release_ns = env.namespace("pod").await;
    let watched = env.namespace("podw").await;
    env.keycloak_setup(&watched, &watched).await;
    let release = format!("kco-{}", unique());

    // Only the chart's ServiceAccount and RBAC.
    let set_ns = format!("watchNamespaces={{{watched}}}");
    let rbac = ok(
        "helm",
        &[
            "template",
            &release,
            CHART,
            "-n",
            &release_ns,
            "--set",
            &set_ns,
            "--set",
            "replicaCount=2",
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ],
        None,
    );
    ok("kubectl", &["apply", "-f", "-"], Some(&rbac));

    // What the kubelet mounts into a pod.
    let token = ok("kubectl", &["create", "token", &release, "-n", &release_ns, "--duration", "1h"], None);
    let ca = ok(
        "kubectl",
        &["config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority}"],
        None,
    );
    let server = ok("kubectl", &["config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.server}"], None);
    let (host, port) = server.trim().trim_start_matches("https://").rsplit_once(':').unwrap();
    let dir = std::env::temp_dir().join(format!("kco-sa-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), token.trim()).unwrap();
    std::fs::copy(ca.trim(), dir.join("ca.crt")).unwrap();
    std::fs::write(dir.join("namespace"), &release_ns).unwrap();
    let mount = format!("{}:/var/run/secrets/kubernetes.io/serviceaccount:ro", dir.display());
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let name = format!("kco-it-{}", unique());

    ok(
        "podman",
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-v",
            &mount,
            "-e",
            &format!("KUBERNETES_SERVICE_HOST={host}"),
            "-e",
            &format!("KUBERNETES_SERVICE_PORT={port}"),
            "-e",
            &format!("KCO_NAMESPACE={watched}"),
            "-e",
            &format!("KCO_METRICS_ADDR=127.0.0.1:{metrics_port}"),
            "-e",
            "KCO_LEADER_ELECTION=true",
            "-e",
            "KCO_LOG_FORMAT=json",
            "-e",
            &format!("POD_NAME={name}"),
            &image,
        ],
        None,
    );
    let container = Container(name);
    let user = ok("podman", &["inspect", "--format", "{{.Config.User}}", &container.0], None);
    assert_eq!(user.trim(), "65532:65532");

    let http = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{metrics_port}/readyz");
    wait_for("the container's /readyz", Duration::from_secs(60), || async {
        http.get(&ready).send().await.ok()?.status().is_success().then_some(())
    })
    .await;
    env.apply(&watched, json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "svc"},
        "spec": {"clientId": "svc", "realmRef": {"name": "realm"},
                 "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false}}}))
    .await;
    env.wait_phase(&watched, "svc", "Ready", Duration::from_secs(120)).await;
    let data = env.secret_data(&watched, "svc-credentials").await.unwrap();
    env.client_credentials(&data["token-endpoint"], "svc", &data["client-secret"]).await.unwrap();
    let lease = ok(
        "kubectl",
        &["get", "lease", "kco-leader", "-n", &release_ns, "-o", "jsonpath={.spec.holderIdentity}"],
        None,
    );
    assert_eq!(lease.trim(), container.0, "the container holds the Lease in its own namespace");
    // JSON lines; every line logged inside the client's reconcile names it (span field object.ref).
    let (_, logs) = run("podman", &["logs", &container.0], None);
    let object = format!("KeycloakClient.v1.kco.dev/svc.{watched}");
    let mut in_reconcile = 0;
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v.get("span").and_then(|s| s.get("name")).and_then(|n| n.as_str()) == Some("reconciling object")
            && v.to_string().contains("KeycloakClient.")
        {
            in_reconcile += 1;
            assert!(v.to_string().contains(&object), "a reconcile line without the object: {line}");
        }
    }
    assert!(in_reconcile > 0, "no log line from the client's reconcile:\n{logs}");
    drop(container);
    let _ = std::fs::remove_dir_all(&dir);
}
