//! The Helm chart (charts/kco) against the real, RBAC-enforcing apiserver: `helm lint`, `helm template`
//! applied with `--dry-run=server`, `helm install`, `kubectl auth can-i` for exactly what the operator
//! needs (namespaced and cluster-wide modes), and `helm uninstall` leaving KeycloakClients, the CRDs and the Keycloak clients.
//! Fails (never skips) when helm or kubectl is missing: `dev/testenv tools` builds helm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use kco_testing::{Env, Operator, unique};
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../charts/kco");

fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    kco_testing::run_tool(tool, args, stdin, &[])
}

fn ok(tool: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (success, out) = run(tool, args, stdin);
    assert!(success, "{tool} {args:?} failed:\n{out}");
    out
}

/// `kubectl auth can-i VERB RESOURCE [-n NS | -A]` as the ServiceAccount. `RESOURCE/NAME` names one
/// object; `RESOURCE:SUB` a subresource.
fn can(sa: &str, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    let sub;
    let mut args = vec!["auth", "can-i", verb];
    match resource.split_once(':') {
        Some((res, s)) => {
            sub = format!("--subresource={s}");
            args.extend([res, sub.as_str()]);
        }
        None => args.push(resource),
    }
    args.extend(["--as", sa]);
    match ns {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let (_, out) = run("kubectl", &args, None);
    match out.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl {args:?}: {other}"),
    }
}

fn assert_can(sa: &str, checks: &[(&str, &str, Option<&str>, bool)]) {
    let wrong: Vec<String> = checks
        .iter()
        .filter(|(verb, res, ns, want)| can(sa, verb, res, *ns) != *want)
        .map(|(verb, res, ns, want)| format!("{verb} {res} in {}: expected {want}", ns.unwrap_or("all namespaces")))
        .collect();
    assert!(wrong.is_empty(), "RBAC of {sa}:\n{}", wrong.join("\n"));
}

#[test]
fn helm_lint_passes() {
    ok("helm", &["lint", "--strict", CHART], None);
    ok("helm", &["lint", "--strict", CHART, "--set", "watchNamespaces={team-a}", "--set", "replicaCount=1"], None);
    ok("helm", &["lint", "--strict", CHART, "--set", "metrics.serviceMonitor.enabled=true"], None);
    let (success, out) = run("helm", &["template", "x", CHART, "--set", "watchNamespaces={a,b}"], None);
    assert!(!success && out.contains("at most one"), "two watched namespaces must be refused: {out}");
}

#[test]
fn chart_crds_equal_kco_crd() {
    let chart = std::fs::read_to_string(format!("{CHART}/crds/kco.yaml")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kco")).arg("crd").output().unwrap();
    assert_eq!(chart, String::from_utf8(out.stdout).unwrap(), "charts/kco/crds/kco.yaml is stale: kco crd > it");
}

#[tokio::test]
async fn namespaced_install_grants_only_the_watched_namespace() {
    let env = Env::connect().await;
    let release_ns = env.namespace("helm").await;
    let watched = env.namespace("helmw").await;
    let other = env.namespace("helmo").await;
    let release = format!("kco-{}", unique());
    let set_ns = format!("watchNamespaces={{{watched}}}");
    let sa = format!("system:serviceaccount:{release_ns}:{release}");

    let manifest = ok("helm", &["template", &release, CHART, "-n", &release_ns, "--set", &set_ns], None);
    ok("kubectl", &["apply", "--dry-run=server", "-f", "-"], Some(&manifest));

    ok("helm", &["install", &release, CHART, "-n", &release_ns, "--set", &set_ns], None);
    for (kind, ns) in [
        ("deployment", &release_ns),
        ("serviceaccount", &release_ns),
        ("service", &release_ns),
        ("poddisruptionbudget", &release_ns),
        ("role", &watched),
        ("rolebinding", &watched),
    ] {
        let name = if kind == "service" { format!("{release}-metrics") } else { release.clone() };
        ok("kubectl", &["get", kind, &name, "-n", ns], None);
    }
    ok("kubectl", &["get", "role", &format!("{release}-leader-election"), "-n", &release_ns], None);
    let (cluster_role, _) = run("kubectl", &["get", "clusterrole", &release], None);
    assert!(!cluster_role, "namespaced mode must not create a ClusterRole");

    let w = Some(watched.as_str());
    let o = Some(other.as_str());
    let r = Some(release_ns.as_str());
    assert_can(
        &sa,
        &[
            // What kco needs in the watched namespace.
            ("list", "keycloakclients.kco.dev", w, true),
            ("watch", "keycloakclients.kco.dev", w, true),
            ("patch", "keycloakclients.kco.dev", w, true),
            ("patch", "keycloakclients.kco.dev:status", w, true),
            ("patch", "keycloakinstances.kco.dev:status", w, true),
            ("patch", "keycloakrealms.kco.dev:status", w, true),
            ("update", "keycloakclients.kco.dev:status", w, false),
            ("list", "keycloakrealms.kco.dev", w, true),
            ("list", "keycloakinstances.kco.dev", w, true),
            ("get", "secrets", w, true),
            ("list", "secrets", w, true),
            ("create", "secrets", w, true),
            ("patch", "secrets", w, true),
            ("get", "configmaps", w, true),
            ("create", "events.events.k8s.io", w, true),
            ("create", "leases.coordination.k8s.io", r, true),
            ("update", "leases.coordination.k8s.io/kco-leader", r, true),
            // Nothing more.
            ("delete", "secrets", w, false),
            ("get", "keycloakcredentialsgrants.kco.dev", w, false),
            ("update", "keycloakclients.kco.dev", w, false),
            ("delete", "keycloakclients.kco.dev", w, false),
            ("list", "configmaps", w, false),
            ("get", "secrets", o, false),
            ("get", "secrets", r, false),
            ("list", "secrets", None, false),
            ("list", "keycloakclients.kco.dev", None, false),
            ("list", "keycloakclients.kco.dev", o, false),
            ("get", "configmaps", o, false),
            ("update", "leases.coordination.k8s.io/other", r, false),
            ("create", "leases.coordination.k8s.io", w, false),
            ("create", "pods", w, false),
            ("create", "clusterroles.rbac.authorization.k8s.io", None, false),
        ],
    );

    // Uninstall removes the operator's objects, never the KeycloakClients, the CRDs (crds/ is
    // installed once and left alone by Helm) or anything in Keycloak. This apiserver runs no pods,
    // so the operator the release would run is started here, creates the client, and stops as the
    // release's pod would on uninstall.
    env.keycloak_setup(&watched, &watched).await;
    let op = Operator::start(KCO, &watched, &[]).await;
    env.apply(
        &watched,
        json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": "kept"},
        "spec": {"clientId": "kept", "realmRef": {"name": "realm"}}}),
    )
    .await;
    let s = env.wait_phase(&watched, "kept", "Ready", Duration::from_secs(60)).await;
    let id = s["internalId"].as_str().unwrap().to_string();
    op.stop().await;
    ok("helm", &["uninstall", &release, "-n", &release_ns, "--wait", "--timeout", "60s"], None);
    assert!(
        env.keycloak_get(&format!("{watched}/clients/{id}")).await.is_some(),
        "helm uninstall left the Keycloak client in place"
    );
    let (deployment, _) = run("kubectl", &["get", "deployment", &release, "-n", &release_ns], None);
    assert!(!deployment, "helm uninstall removes the Deployment");
    let (role, _) = run("kubectl", &["get", "role", &release, "-n", &watched], None);
    assert!(!role, "helm uninstall removes the Role");
    assert!(env.get(&watched, "kco.dev/v1", "KeycloakClient", "kept").await.is_some(), "KeycloakClient kept");
    ok("kubectl", &["get", "crd", "keycloakclients.kco.dev"], None);
}

#[tokio::test]
async fn cluster_wide_install_grants_what_kco_needs_everywhere() {
    let env = Env::connect().await;
    let release_ns = env.namespace("helmc").await;
    let other = env.namespace("helmco").await;
    let release = format!("kco-{}", unique());
    let sa = format!("system:serviceaccount:{release_ns}:{release}");

    let manifest = ok("helm", &["template", &release, CHART, "-n", &release_ns], None);
    ok("kubectl", &["apply", "--dry-run=server", "-f", "-"], Some(&manifest));
    ok("helm", &["install", &release, CHART, "-n", &release_ns], None);
    ok("kubectl", &["get", "clusterrole", &release], None);
    ok("kubectl", &["get", "clusterrolebinding", &release], None);
    let o = Some(other.as_str());
    assert_can(
        &sa,
        &[
            ("list", "keycloakclients.kco.dev", None, true),
            ("list", "secrets", None, true),
            ("create", "secrets", o, true),
            ("patch", "keycloakclients.kco.dev:status", o, true),
            ("update", "leases.coordination.k8s.io/kco-leader", Some(&release_ns), true),
            // Credentials for other namespaces: the receiver's consent (by key) and cleanup.
            ("get", "keycloakcredentialsgrants.kco.dev", o, true),
            ("delete", "secrets", o, true),
            ("list", "keycloakcredentialsgrants.kco.dev", None, false),
            ("create", "keycloakcredentialsgrants.kco.dev", o, false),
            ("list", "configmaps", None, false),
            ("update", "leases.coordination.k8s.io/kco-leader", o, false),
            ("create", "pods", o, false),
            ("delete", "keycloakclients.kco.dev", o, false),
        ],
    );
    ok("helm", &["uninstall", &release, "-n", &release_ns, "--wait", "--timeout", "60s"], None);
    let (cr, _) = run("kubectl", &["get", "clusterrole", &release], None);
    assert!(!cr, "helm uninstall removes the ClusterRole");
}
