//! Helpers for integration tests against the real environment of `dev/testenv`: a kube client, the
//! Keycloak admin API, fresh namespaces, the operator as a child process, and token checks.
//! Nothing here fakes Keycloak or Kubernetes; when the environment is missing, tests fail loudly.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// The environment `dev/testenv up` started, read from the variables `.testenv/env.sh` exports.
#[derive(Clone)]
pub struct Env {
    pub kube: Client,
    pub keycloak_url: String,
    pub admin_user: String,
    pub admin_password: String,
    pub http: reqwest::Client,
}

static CRDS: OnceCell<()> = OnceCell::const_new();

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: integration tests need the real environment. Run `dev/testenv up` and \
             `. .testenv/env.sh` first (dev/test does both). These tests fail rather than skip."
        )
    })
}

impl Env {
    /// Connect to the environment and make sure it answers; panics with the reason when it does not.
    pub async fn connect() -> Env {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        required("KUBECONFIG");
        let keycloak_url = required("KEYCLOAK_URL").trim_end_matches('/').to_string();
        let env = Env {
            kube: Client::try_default().await.expect("build a kube client from KUBECONFIG"),
            keycloak_url,
            admin_user: required("KEYCLOAK_ADMIN_USER"),
            admin_password: required("KEYCLOAK_ADMIN_PASSWORD"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        };
        env.kube.apiserver_version().await.unwrap_or_else(|e| {
            panic!("kube-apiserver from KUBECONFIG does not answer ({e}); is `dev/testenv up` running?")
        });
        env.keycloak_admin_token().await;
        CRDS.get_or_init(|| env.install_crds()).await;
        env
    }

    /// The same environment with `dev/testenv`'s second Keycloak (`KEYCLOAK_DOCKER_URL`), which runs
    /// with Keycloak's `docker` feature, as its Keycloak: every Keycloak helper of the returned `Env`,
    /// [`Env::keycloak_setup`] included, talks to it. Same admin credentials.
    pub async fn docker_keycloak(&self) -> Env {
        let env =
            Env { keycloak_url: required("KEYCLOAK_DOCKER_URL").trim_end_matches('/').to_string(), ..self.clone() };
        env.keycloak_admin_token().await;
        env
    }

    /// Apply every kco CRD with server-side apply and wait until each is Established.
    async fn install_crds(&self) {
        let api: Api<CustomResourceDefinition> = Api::all(self.kube.clone());
        for crd in kco_api::crds() {
            let name = crd.metadata.name.clone().unwrap();
            api.patch(&name, &PatchParams::apply("kco-tests").force(), &Patch::Apply(&crd)).await.unwrap();
            wait_for(&format!("CRD {name} Established"), Duration::from_secs(30), || async {
                let c = api.get(&name).await.ok()?;
                let established = c.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            })
            .await;
        }
    }

    /// A master-realm admin token for the test's own Keycloak checks.
    pub async fn keycloak_admin_token(&self) -> String {
        let url = format!("{}/realms/master/protocol/openid-connect/token", self.keycloak_url);
        let resp = self
            .http
            .post(&url)
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", &self.admin_user),
                ("password", &self.admin_password),
            ])
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("Keycloak at {} does not answer ({e}); is `dev/testenv up` running?", self.keycloak_url)
            });
        assert!(resp.status().is_success(), "admin login to Keycloak failed: {}", resp.status());
        let v: Value = resp.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    /// GET an Admin API path (below /admin/realms); `None` on 404.
    pub async fn keycloak_get(&self, path: &str) -> Option<Value> {
        let token = self.keycloak_admin_token().await;
        let resp = self
            .http
            .get(format!("{}/admin/realms/{}", self.keycloak_url, path.trim_start_matches('/')))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        Some(resp.json().await.unwrap())
    }

    /// Send an Admin API request with a JSON body (below /admin/realms); panics unless it succeeds.
    pub async fn keycloak_send(&self, method: reqwest::Method, path: &str, body: Option<Value>) {
        let token = self.keycloak_admin_token().await;
        let mut req = self
            .http
            .request(method.clone(), format!("{}/admin/realms/{}", self.keycloak_url, path.trim_start_matches('/')))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        assert!(
            resp.status().is_success(),
            "{method} {path}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }

    /// Create a fresh namespace `<prefix>-<unique>`; tests never wait for namespace deletion.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", unique());
        let api: Api<Namespace> = Api::all(self.kube.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &ns).await.unwrap();
        name
    }

    /// In `ns`: the admin Secret, a KeycloakInstance `local` and a KeycloakRealm `realm` for Keycloak
    /// realm `realm_name`, granting `ns`.
    pub async fn keycloak_setup(&self, ns: &str, realm_name: &str) {
        self.keycloak_setup_via(ns, realm_name, &self.keycloak_url.clone()).await;
    }

    /// As [`Env::keycloak_setup`], with kco reaching Keycloak's Admin API at `admin_url` (a fault
    /// proxy); the endpoints consumers get stay the real Keycloak's.
    pub async fn keycloak_setup_via(&self, ns: &str, realm_name: &str, admin_url: &str) {
        let mut spec = json!({"url": admin_url, "adminSecretRef": {"name": "keycloak-admin"}});
        if admin_url != self.keycloak_url {
            spec["publicUrl"] = json!(self.keycloak_url);
        }
        self.apply(
            ns,
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keycloak-admin"},
                "stringData": {"username": self.admin_user, "password": self.admin_password}
            }),
        )
        .await;
        self.apply(
            ns,
            json!({
                "apiVersion": "kco.dev/v1", "kind": "KeycloakInstance", "metadata": {"name": "local"},
                "spec": spec
            }),
        )
        .await;
        self.apply(
            ns,
            json!({
                "apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "realm"},
                "spec": {"realmName": realm_name, "instanceRef": {"name": "local"}, "clientAuthorizationGrants": [ns]}
            }),
        )
        .await;
    }

    /// Server-side apply of any namespaced object given as JSON.
    pub async fn apply(&self, ns: &str, obj: Value) {
        let (api, name) = self.dynamic(ns, &obj).await;
        api.patch(&name, &PatchParams::apply("kco-tests").force(), &Patch::Apply(&obj))
            .await
            .unwrap_or_else(|e| panic!("apply {} {ns}/{name}: {e}", obj["kind"]));
    }

    /// Server-side apply that reports the apiserver's refusal instead of panicking.
    pub async fn try_apply(&self, ns: &str, obj: &Value) -> Result<(), String> {
        let (api, name) = self.dynamic(ns, obj).await;
        api.patch(&name, &PatchParams::apply("kco-tests").force(), &Patch::Apply(obj))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Delete a namespaced object given as JSON (kind, apiVersion, metadata.name).
    pub async fn delete(&self, ns: &str, obj: Value) {
        let (api, name) = self.dynamic(ns, &obj).await;
        api.delete(&name, &Default::default()).await.unwrap();
    }

    async fn dynamic(&self, ns: &str, obj: &Value) -> (Api<kube::api::DynamicObject>, String) {
        let gvk = kube::api::GroupVersionKind::try_from(&kube::api::TypeMeta {
            api_version: obj["apiVersion"].as_str().unwrap().to_string(),
            kind: obj["kind"].as_str().unwrap().to_string(),
        })
        .unwrap();
        let (ar, _) = kube::discovery::pinned_kind(&self.kube, &gvk).await.unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        (Api::namespaced_with(self.kube.clone(), ns, &ar), name)
    }

    /// The object as JSON, or `None` when it does not exist.
    pub async fn get(&self, ns: &str, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        let obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
        let (api, _) = self.dynamic(ns, &obj).await;
        api.get_opt(name).await.unwrap().map(|o| serde_json::to_value(o).unwrap())
    }

    pub async fn client_status(&self, ns: &str, name: &str) -> Value {
        self.get(ns, "kco.dev/v1", "KeycloakClient", name).await.map(|o| o["status"].clone()).unwrap_or(Value::Null)
    }

    /// The phase of every KeycloakClient in `ns` by name (empty string: no phase yet), from one list.
    pub async fn phases(&self, ns: &str) -> std::collections::HashMap<String, String> {
        let api: kube::Api<kube::core::DynamicObject> = kube::Api::namespaced_with(
            self.kube.clone(),
            ns,
            &kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
                "kco.dev",
                "v1",
                "KeycloakClient",
            )),
        );
        let list = api.list(&kube::api::ListParams::default()).await.expect("list KeycloakClients");
        list.items
            .iter()
            .map(|o| {
                let phase = o.data["status"]["phase"].as_str().unwrap_or_default().to_string();
                (o.metadata.name.clone().unwrap_or_default(), phase)
            })
            .collect()
    }

    /// Wait until the KeycloakClient reaches `phase`; returns its status.
    pub async fn wait_phase(&self, ns: &str, name: &str, phase: &str, timeout: Duration) -> Value {
        let what = format!("KeycloakClient {ns}/{name} phase {phase}");
        wait_for(&what, timeout, || async {
            let s = self.client_status(ns, name).await;
            (s["phase"] == phase).then_some(s)
        })
        .await
    }

    /// The Secret's data, decoded.
    pub async fn secret_data(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), ns);
        let s = api.get_opt(name).await.unwrap()?;
        Some(s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect())
    }

    /// Wait until every KeycloakClient `names` in `ns` is Ready, all within `timeout`.
    pub async fn wait_all_ready(&self, ns: &str, names: &[String], timeout: Duration) {
        let start = Instant::now();
        for name in names {
            let left = timeout.saturating_sub(start.elapsed()).max(Duration::from_secs(1));
            self.wait_phase(ns, name, "Ready", left).await;
        }
    }

    /// A client-credentials grant with HTTP Basic auth, as a consumer would make it.
    pub async fn client_credentials(
        &self,
        token_endpoint: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<Value, String> {
        let resp = self
            .http
            .post(token_endpoint)
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        Ok(jwt_claims(body["access_token"].as_str().ok_or("no access_token")?))
    }
}

/// The realm role and client role every [`audited_client`] asks for.
pub const AUDIT_REALM_ROLE: &str = "reader";
pub const AUDIT_CLIENT_ROLE: &str = "orders:read";

impl Env {
    /// Create Keycloak realm `realm` with admin events on (before kco sees it), the realm role
    /// [`AUDIT_REALM_ROLE`] and the audience client `orders-api`: the events are Keycloak's own
    /// record of every change kco makes.
    pub async fn audited_realm(&self, realm: &str) {
        let token = self.keycloak_admin_token().await;
        let body = json!({"realm": realm, "enabled": true, "adminEventsEnabled": true,
            "roles": {"realm": [{"name": AUDIT_REALM_ROLE}]},
            "clients": [{"clientId": "orders-api", "bearerOnly": true}]});
        let resp = self
            .http
            .post(format!("{}/admin/realms", self.keycloak_url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "create realm {realm}: {}", resp.status());
    }

    /// The names of the realm roles user `user` of `realm` is granted directly.
    pub async fn realm_roles_of(&self, realm: &str, user: &str) -> Vec<String> {
        let granted = self.keycloak_get(&format!("{realm}/users/{user}/role-mappings/realm")).await.unwrap();
        granted.as_array().unwrap().iter().filter_map(|r| r["name"].as_str().map(str::to_string)).collect()
    }

    /// Keycloak's admin events of `realm` as (operation, resource type, resource path).
    pub async fn admin_events(&self, realm: &str) -> Vec<(String, String, String)> {
        let v = self.keycloak_get(&format!("{realm}/admin-events?max=1000000")).await.unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (f("operationType"), f("resourceType"), f("resourcePath"))
            })
            .collect()
    }

    /// Nothing lost, duplicated, orphaned or changed twice, object by object, after a fault test:
    /// every KeycloakClient `names[i]` in `ns` (made by [`audited_client`]) is Ready; Keycloak holds
    /// exactly one client of that clientId, the one status names, owned by that object, with its
    /// client role and its service account's realm role; the managed Secret holds Keycloak's current
    /// secret; Keycloak's admin events show each client created once and no secret ever
    /// regenerated; the realm holds no other client with `prefix`. Panics naming the first object
    /// that breaks a rule.
    pub async fn audit(&self, ns: &str, realm: &str, prefix: &str, names: &[String]) {
        let events = self.admin_events(realm).await;
        let creates: Vec<&str> = events
            .iter()
            .filter(|(op, ty, path)| op == "CREATE" && ty == "CLIENT" && path.matches('/').count() == 1)
            .map(|(_, _, path)| path.trim_start_matches("clients/"))
            .collect();
        let regenerated: Vec<&String> = events
            .iter()
            .filter(|(op, _, path)| op == "ACTION" && path.ends_with("/client-secret"))
            .map(|e| &e.2)
            .collect();
        assert!(regenerated.is_empty(), "secrets regenerated (nobody asked): {regenerated:?}");
        let deleted: Vec<&String> =
            events.iter().filter(|(op, ty, _)| op == "DELETE" && ty == "CLIENT").map(|e| &e.2).collect();
        assert!(deleted.is_empty(), "clients deleted during the run: {deleted:?}");
        let mut ids = Vec::new();
        for name in names {
            let st = self.client_status(ns, name).await;
            assert_eq!(st["phase"], "Ready", "{ns}/{name} is not Ready: {st}");
            let id = st["internalId"].as_str().unwrap_or_else(|| panic!("{ns}/{name}: no internalId")).to_string();
            let found = self.keycloak_get(&format!("{realm}/clients?clientId={name}")).await.unwrap();
            let found = found.as_array().unwrap();
            assert_eq!(found.len(), 1, "{ns}/{name}: Keycloak holds {} clients of that clientId", found.len());
            assert_eq!(found[0]["id"], id.as_str(), "{ns}/{name}: status names another client than Keycloak's");
            let owner = found[0]["attributes"]["kco.dev/owner"].as_str().unwrap_or_default();
            assert!(owner.starts_with(&format!("{ns}/{name}/")), "{ns}/{name}: client owned by {owner:?}");
            assert_eq!(creates.iter().filter(|c| **c == id).count(), 1, "{ns}/{name}: created {id} not exactly once");
            let roles = self.keycloak_get(&format!("{realm}/clients/{id}/roles")).await.unwrap();
            assert!(
                roles.as_array().unwrap().iter().any(|r| r["name"] == AUDIT_CLIENT_ROLE),
                "{ns}/{name} is Ready but its client role {AUDIT_CLIENT_ROLE} is missing: {roles}"
            );
            let user = self.keycloak_get(&format!("{realm}/clients/{id}/service-account-user")).await.unwrap();
            let uid = user["id"].as_str().unwrap();
            let granted = self.keycloak_get(&format!("{realm}/users/{uid}/role-mappings/realm")).await.unwrap();
            assert!(
                granted.as_array().unwrap().iter().any(|r| r["name"] == AUDIT_REALM_ROLE),
                "{ns}/{name} is Ready but its service account lacks realm role {AUDIT_REALM_ROLE}: {granted}"
            );
            let secret = self.keycloak_get(&format!("{realm}/clients/{id}/client-secret")).await.unwrap();
            let data = self.secret_data(ns, &format!("{name}-credentials")).await;
            let data = data.unwrap_or_else(|| panic!("{ns}/{name}: no managed Secret"));
            assert_eq!(
                data.get("client-secret").map(String::as_str),
                secret["value"].as_str(),
                "{ns}/{name}: the managed Secret does not hold Keycloak's current secret"
            );
            ids.push(id);
        }
        assert_eq!(creates.len(), names.len(), "client CREATE events in {realm}: {creates:?}");
        let all = self.keycloak_get(&format!("{realm}/clients?first=0&max=100000")).await.unwrap();
        let ours =
            all.as_array().unwrap().iter().filter(|c| c["clientId"].as_str().is_some_and(|c| c.starts_with(prefix)));
        assert_eq!(ours.count(), names.len(), "clients in {realm} with prefix {prefix}: orphans or duplicates");
    }
}

/// A KeycloakClient `name` whose end state [`Env::audit`] checks: confidential with a service
/// account, one client role, one realm role granted to the service account, one audience.
pub fn audited_client(name: &str) -> Value {
    client(
        name,
        confidential(
            name,
            json!({"clientRoles": [AUDIT_CLIENT_ROLE], "serviceAccountRoles": {"realmRoles": [AUDIT_REALM_ROLE]},
                   "audiences": ["orders-api"]}),
        ),
    )
}

/// A KeycloakClient manifest named `name` with `spec`.
pub fn client(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": {"name": name}, "spec": spec})
}

/// The seed's confidential client-credentials spec in KeycloakRealm `realm`, with `extra`'s fields set.
pub fn confidential(client_id: &str, extra: Value) -> Value {
    let mut spec = json!({"clientId": client_id, "realmRef": {"name": "realm"},
        "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

/// A fresh namespace with a KeycloakInstance, a KeycloakRealm `realm` (Keycloak realm = namespace
/// name) and an operator (`bin`) watching it with `--resync resync`.
pub async fn setup(bin: &str, prefix: &str, resync: &str) -> (Env, String, Operator) {
    let env = Env::connect().await;
    let ns = env.namespace(prefix).await;
    env.keycloak_setup(&ns, &ns).await;
    let op = Operator::start(bin, &ns, &["--resync", resync]).await;
    (env, ns, op)
}

/// The claims of a JWT (not verified: the test got it straight from Keycloak).
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A short unique suffix for names, unique across test processes.
pub fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() % 100_000_000;
    format!("{}{:x}{}", t, std::process::id() % 4096, N.fetch_add(1, Ordering::Relaxed))
}

/// Poll `f` every 250 ms until it yields `Some`, or panic after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The operator (`kco run`) as a child process watching one namespace; killed when dropped.
pub struct Operator {
    child: tokio::process::Child,
    pub metrics_url: String,
    pub log: PathBuf,
    http: reqwest::Client,
}

impl Operator {
    /// Start `bin run --namespace ns` plus `args`; waits until /readyz answers.
    pub async fn start(bin: &str, ns: &str, args: &[&str]) -> Operator {
        Self::start_with_env(bin, ns, args, &[]).await
    }

    /// The process id (None once it has been reaped), e.g. to send it SIGTERM.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has exited (and with which code).
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child.try_wait().ok().flatten().map(|s| s.code().unwrap_or(-1))
    }

    /// As [`Operator::start`], with extra environment variables.
    pub async fn start_with_env(bin: &str, ns: &str, args: &[&str], envs: &[(&str, &str)]) -> Operator {
        let op = Self::launch(bin, ns, args, envs);
        op.wait_ready().await;
        op
    }

    /// The HTTP status of one of the operator's endpoints (`/healthz`, `/readyz`), `None` while it
    /// does not answer.
    pub async fn probe(&self, path: &str) -> Option<u16> {
        let url = self.metrics_url.replace("/metrics", path);
        Some(self.http.get(&url).send().await.ok()?.status().as_u16())
    }

    /// Start the operator for every namespace (`args` should narrow it, e.g. with `--selector`, so
    /// it leaves other tests' objects alone); waits until /readyz answers.
    pub async fn start_all_namespaces(bin: &str, args: &[&str]) -> Operator {
        let op = Self::spawn(bin, "all", &[], args, &[]);
        op.wait_ready().await;
        op
    }

    /// Start the operator without waiting for anything.
    pub fn launch(bin: &str, ns: &str, args: &[&str], envs: &[(&str, &str)]) -> Operator {
        Self::spawn(bin, ns, &["--namespace", ns], args, envs)
    }

    async fn wait_ready(&self) {
        let ready = self.metrics_url.replace("/metrics", "/readyz");
        wait_for("operator /readyz", Duration::from_secs(30), || async {
            let r = self.http.get(&ready).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }

    fn spawn(bin: &str, log_name: &str, scope: &[&str], args: &[&str], envs: &[(&str, &str)]) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.testenv/logs/operator");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{log_name}-{}.log", unique()));
        let file = std::fs::File::create(&log).unwrap();
        let addr = format!("127.0.0.1:{port}");
        let child = tokio::process::Command::new(bin)
            .arg("run")
            .args(scope)
            .args(["--metrics-addr", &addr])
            .args(args)
            .env("RUST_LOG", std::env::var("KCO_TEST_LOG").unwrap_or_else(|_| "info,kco=debug".into()))
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Operator { child, metrics_url: format!("http://{addr}/metrics"), log, http: reqwest::Client::new() }
    }

    /// Sum of a counter over the series whose labels include all of `labels`.
    pub async fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counter_where(name, |lbls| labels.iter().all(|(k, v)| lbls.contains(&format!("{k}=\"{v}\"")))).await
    }

    /// Keycloak requests made for clients, from one scrape: every request but the instance's and the
    /// realm's own checks (admin token, server info, realm lookups, the look at its admin events).
    pub async fn client_keycloak_requests(&self) -> u64 {
        let checks = ["kind=\"token\"", "kind=\"serverinfo\"", "kind=\"realm\"", "kind=\"admin-event\""];
        self.counter_where("kco_keycloak_requests", |lbls| !checks.iter().any(|c| lbls.contains(c))).await
    }

    /// Sum of a counter over the series whose label text satisfies `keep`, from one scrape.
    async fn counter_where(&self, name: &str, keep: impl Fn(&str) -> bool) -> u64 {
        let text = self.http.get(&self.metrics_url).send().await.unwrap().text().await.unwrap();
        let mut total = 0.0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let rest = rest.strip_prefix("_total").unwrap_or(rest);
            let (lbls, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let Some((l, v)) = r.split_once('}') else {
                        continue;
                    };
                    (l, v)
                }
                None if rest.starts_with(' ') => ("", rest),
                None => continue,
            };
            if keep(lbls) {
                total += value.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
        total as u64
    }

    /// Keycloak writes so far (POST, PUT, DELETE on anything but the admin token).
    pub async fn keycloak_writes(&self) -> u64 {
        let mut n = 0;
        for m in ["POST", "PUT", "DELETE"] {
            n += self.counter("kco_keycloak_requests", &[("method", m)]).await;
        }
        n - self.counter("kco_keycloak_requests", &[("method", "POST"), ("kind", "token")]).await
    }

    pub async fn kubernetes_writes(&self) -> u64 {
        self.counter("kco_kubernetes_writes", &[]).await
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A Toxiproxy proxy (from `dev/testenv`) in front of the real Keycloak: a test points its
/// KeycloakInstance at [`Toxiproxy::url`] and adds faults (latency, resets, cut responses) or makes
/// Keycloak unreachable, without touching the Keycloak other tests share. Each test has its own
/// proxy on a fresh loopback port; it is deleted when dropped.
pub struct Toxiproxy {
    api: String,
    pub name: String,
    /// `host:port` the proxy listens on.
    pub listen: String,
    http: reqwest::Client,
}

impl Toxiproxy {
    /// A new proxy to `env`'s Keycloak.
    pub async fn keycloak(env: &Env) -> Toxiproxy {
        let api = required("TOXIPROXY_URL").trim_end_matches('/').to_string();
        let upstream = env.keycloak_url.trim_start_matches("http://").to_string();
        let name = format!("kco-{}", unique());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let body = json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true});
        let resp = http
            .post(format!("{api}/proxies"))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("toxiproxy at {api} does not answer ({e}); is `dev/testenv up` running?"));
        assert!(resp.status().is_success(), "toxiproxy refused proxy {name}: {}", resp.text().await.unwrap());
        let created: Value = resp.json().await.unwrap();
        let listen = created["listen"].as_str().unwrap().to_string();
        Toxiproxy { api, name, listen, http }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Add a toxic (`{"name", "type", "stream", "toxicity", "attributes"}`, as Toxiproxy's API takes it).
    pub async fn add(&self, toxic: Value) {
        let url = format!("{}/proxies/{}/toxics", self.api, self.name);
        let resp = self.http.post(url).json(&toxic).send().await.unwrap();
        assert!(resp.status().is_success(), "toxiproxy refused toxic {toxic}: {}", resp.text().await.unwrap());
    }

    /// Remove the toxic named `name`.
    pub async fn remove(&self, name: &str) {
        let url = format!("{}/proxies/{}/toxics/{name}", self.api, self.name);
        let resp = self.http.delete(url).send().await.unwrap();
        assert!(resp.status().is_success(), "toxiproxy did not remove toxic {name}");
    }

    /// Close the port and cut every open connection (`false`): Keycloak is unreachable through the
    /// proxy; `true` listens again on the same port.
    pub async fn set_enabled(&self, enabled: bool) {
        let url = format!("{}/proxies/{}", self.api, self.name);
        let resp = self.http.post(url).json(&json!({"enabled": enabled})).send().await.unwrap();
        assert!(resp.status().is_success(), "toxiproxy did not set enabled={enabled}");
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        // Best effort, without a runtime: a plain HTTP DELETE on the API's socket.
        use std::io::Write;
        let host = self.api.trim_start_matches("http://").to_string();
        if let Ok(mut s) = std::net::TcpStream::connect(&host) {
            let req = format!("DELETE /proxies/{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n", self.name);
            let _ = s.write_all(req.as_bytes());
            let _ = std::io::Read::read(&mut s, &mut [0u8; 64]);
        }
    }
}

/// Reasons of the Events recorded about an object in `ns` named `name`.
pub async fn event_notes(env: &Env, ns: &str, name: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.kube.clone(), ns);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// An HTTPS front on 127.0.0.1 for the real Keycloak: TLS with the given PEM certificate and key,
/// plain HTTP to `target`. Lets a test show a KeycloakInstance that needs a CA bundle.
pub struct TlsProxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    pub async fn start(target: &str, cert_pem: &std::path::Path, key_pem: &std::path::Path) -> TlsProxy {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert_pem).unwrap().collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(key_pem).unwrap();
        let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = target.to_string();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let target = target.clone();
                conns.spawn(async move {
                    // A client that refuses our certificate ends the handshake: nothing to forward.
                    let Ok(mut tls) = acceptor.accept(inbound).await else { return };
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                    }
                });
            }
        });
        TlsProxy { port, task }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Run a command-line tool (helm, kubectl, podman, …) with extra environment `envs` and `stdin`;
/// `(success, stdout + stderr)`. Panics with a hint when the tool cannot be started.
pub fn run_tool(tool: &str, args: &[&str], stdin: Option<&str>, envs: &[(&str, &str)]) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(tool)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool} ({e}); `dev/testenv tools` installs it, `. .testenv/env.sh` puts it on PATH")
        });
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
