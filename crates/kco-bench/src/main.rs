//! `kco-bench`: the parts of `dev/bench` that bash does badly — creating KeycloakClients C at a time
//! while watching for Ready, timing one client's way to Ready, and the baselines kco is measured
//! against: the same Keycloak end state by the fewest Admin API calls (a), plus the fewest
//! Kubernetes writes any operator must make per object (b). Every subcommand prints one JSON object.
//!
//! Environment: KUBECONFIG, KEYCLOAK_URL, KEYCLOAK_ADMIN_USER, KEYCLOAK_ADMIN_PASSWORD (as exported
//! by `.testenv/env.sh`).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kco_api::{KeycloakClient, Phase};
use kco_keycloak::{AdminCredentials, KeycloakAdmin, KeycloakAdminConfig, RequestMetrics};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// The realm role every bench client's service account is granted (created by `setup`).
const REALM_ROLE: &str = "bench-reader";
/// The client every bench client names as its audience (created by `setup`).
const AUDIENCE: &str = "bench-api";
/// The client role every bench client defines.
const CLIENT_ROLE: &str = "reader";
/// The finalizer the baseline (b) adds and, after timing, removes again (nothing else serves it).
const BASELINE_FINALIZER: &str = "bench.kco.dev/baseline";

#[derive(Parser)]
#[command(about = "dev/bench's helper; every subcommand prints one JSON object")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create Keycloak realm REALM (when missing) with realm role bench-reader and client bench-api.
    Setup {
        #[arg(long)]
        realm: String,
        /// With admin events on (Keycloak records each Admin API change; kco's resyncs use them).
        #[arg(long)]
        admin_events: bool,
    },
    /// Delete Keycloak realm REALM (a missing realm counts as deleted).
    Teardown {
        #[arg(long)]
        realm: String,
    },
    /// Print the versions of Keycloak and the kube-apiserver.
    Versions,
    /// Create COUNT KeycloakClients `<prefix>-<i>` in NAMESPACE, CONCURRENCY at a time, and wait
    /// until all are Ready (the operator does the work).
    Provision {
        #[command(flatten)]
        set: ClientSet,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Time RUNS single KeycloakClients `<prefix>-<i>` from create to Ready, one after the other.
    Latency {
        #[command(flatten)]
        set: ClientSet,
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// Check the end state of clients `<prefix>-0..COUNT` (and `<prefix>-0..EXTRA` of a second prefix)
    /// object by object in Keycloak realm REALM and the namespace: client present, its client role,
    /// the realm role granted to its service account, the audience mapper, and its managed Secret
    /// holding Keycloak's current secret. Read-only; CONCURRENCY at a time.
    Audit {
        #[command(flatten)]
        set: ClientSet,
        #[arg(long)]
        realm: String,
        /// A second set of names checked the same way (the latency runs' `lat-0..RUNS`), as PREFIX=COUNT.
        #[arg(long)]
        also: Option<String>,
    },
    /// The same Keycloak end state as `provision` by the fewest Admin API calls, in Keycloak realm
    /// REALM; with --kubernetes also the objects and the fewest Kubernetes writes per object.
    Baseline {
        #[command(flatten)]
        set: ClientSet,
        #[arg(long)]
        realm: String,
        /// Also create the KeycloakClient objects and make the writes any operator must make.
        #[arg(long)]
        kubernetes: bool,
    },
}

#[derive(clap::Args, Clone)]
struct ClientSet {
    #[arg(long)]
    namespace: String,
    /// KeycloakRealm object the clients reference.
    #[arg(long, default_value = "realm")]
    realm_ref: String,
    #[arg(long, default_value = "svc")]
    prefix: String,
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let out = match Cli::parse().command {
        Command::Setup { realm, admin_events } => setup(&realm, admin_events).await?,
        Command::Teardown { realm } => teardown(&realm).await?,
        Command::Versions => versions().await?,
        Command::Provision { set, timeout } => provision(&set, Duration::from_secs(timeout)).await?,
        Command::Latency { set, runs } => latency(&set, runs).await?,
        Command::Baseline { set, realm, kubernetes } => baseline(&set, &realm, kubernetes).await?,
        Command::Audit { set, realm, also } => audit(&set, &realm, also.as_deref()).await?,
    };
    println!("{out}");
    Ok(())
}

fn env(var: &str) -> anyhow::Result<String> {
    std::env::var(var).with_context(|| format!("{var} is not set; source .testenv/env.sh first"))
}

fn admin(metrics: RequestMetrics, timeout: Duration) -> anyhow::Result<KeycloakAdmin> {
    let config = KeycloakAdminConfig {
        url: env("KEYCLOAK_URL")?,
        admin_realm: "master".into(),
        credentials: AdminCredentials::Password {
            username: env("KEYCLOAK_ADMIN_USER")?,
            password: SecretString::from(env("KEYCLOAK_ADMIN_PASSWORD")?),
        },
        ca_pem: None,
        timeout,
    };
    Ok(KeycloakAdmin::new(config, metrics)?)
}

/// Sum of every `kco_keycloak_requests_total` series in `registry` (tokens included, as kco's are).
fn requests(registry: &prometheus_client::registry::Registry) -> anyhow::Result<u64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("kco_keycloak_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

async fn setup(realm: &str, admin_events: bool) -> anyhow::Result<Value> {
    let kc = admin(RequestMetrics::default(), Duration::from_secs(60))?;
    let body = json!({"realm": realm, "enabled": true, "adminEventsEnabled": admin_events,
        "roles": {"realm": [{"name": REALM_ROLE}]}});
    match kc.post(&[], &body, "realm").await {
        Ok(_) => {}
        Err(e) if e.kind == kco_keycloak::ErrorKind::Conflict => {}
        Err(e) => return Err(e.into()),
    }
    if kc.find_client(realm, AUDIENCE).await?.is_none() {
        kc.create_client(realm, &json!({"clientId": AUDIENCE, "bearerOnly": true})).await?;
    }
    Ok(json!({"realm": realm}))
}

async fn teardown(realm: &str) -> anyhow::Result<Value> {
    let kc = admin(RequestMetrics::default(), Duration::from_secs(600))?;
    match kc.delete(&[realm], None, "realm").await {
        Err(e) if !e.is_not_found() => return Err(e.into()),
        _ => {}
    }
    Ok(json!({"deleted": realm}))
}

async fn versions() -> anyhow::Result<Value> {
    let kc = admin(RequestMetrics::default(), Duration::from_secs(60))?;
    let keycloak = kc.server_version().await?;
    let kube = Client::try_default().await?.apiserver_version().await?;
    Ok(json!({"keycloak": keycloak, "kube_apiserver": kube.git_version}))
}

fn name(set: &ClientSet, i: usize) -> String {
    format!("{}-{i}", set.prefix)
}

/// The KeycloakClient every scenario creates: confidential, service account, one client role, one
/// realm role for the service account, one audience, managed Secret (the default).
fn client_object(set: &ClientSet, i: usize) -> anyhow::Result<KeycloakClient> {
    let name = name(set, i);
    Ok(serde_json::from_value(json!({
        "apiVersion": "kco.dev/v1",
        "kind": "KeycloakClient",
        "metadata": {"name": name, "namespace": set.namespace},
        "spec": {
            "clientId": name,
            "realmRef": {"name": set.realm_ref},
            "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false},
            "clientRoles": [CLIENT_ROLE],
            "serviceAccountRoles": {"realmRoles": [REALM_ROLE]},
            "audiences": [AUDIENCE],
        }
    }))?)
}

fn is_ready(kc: &KeycloakClient) -> bool {
    kc.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready)
}

/// Watch the namespace's KeycloakClients named `<prefix>-*` until `count` of them are Ready.
async fn wait_ready(api: Api<KeycloakClient>, prefix: String, count: usize, wanted: HashSet<String>) -> Instant {
    let mut ready = HashSet::new();
    let prefix = format!("{prefix}-");
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let objs = match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
            _ => continue,
        };
        for o in objs {
            let n = o.name_any();
            if n.starts_with(&prefix) && (wanted.is_empty() || wanted.contains(&n)) && is_ready(&o) {
                ready.insert(n);
            }
        }
        if ready.len() >= count {
            break;
        }
    }
    Instant::now()
}

async fn provision(set: &ClientSet, timeout: Duration) -> anyhow::Result<Value> {
    let client = Client::try_default().await?;
    let api: Api<KeycloakClient> = Api::namespaced(client, &set.namespace);
    let waiter = tokio::spawn(wait_ready(api.clone(), set.prefix.clone(), set.count, HashSet::new()));
    // Give the watch its initial list before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    futures::stream::iter(0..set.count)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &client_object(set, i)?).await.map_err(anyhow::Error::from) }
        })
        .buffer_unordered(set.concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let created = start.elapsed();
    let done = tokio::time::timeout(timeout, waiter)
        .await
        .with_context(|| format!("not all {} clients Ready within {timeout:?}", set.count))??;
    let seconds = done.duration_since(start).as_secs_f64();
    Ok(json!({
        "clients": set.count,
        "concurrency": set.concurrency,
        "seconds_to_create_objects": created.as_secs_f64(),
        "seconds_until_all_ready": seconds,
        "clients_per_second": set.count as f64 / seconds,
    }))
}

async fn latency(set: &ClientSet, runs: usize) -> anyhow::Result<Value> {
    let client = Client::try_default().await?;
    let api: Api<KeycloakClient> = Api::namespaced(client, &set.namespace);
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let n = name(set, i);
        let waiter = tokio::spawn(wait_ready(api.clone(), set.prefix.clone(), 1, HashSet::from([n.clone()])));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        api.create(&PostParams::default(), &client_object(set, i)?).await?;
        let done = tokio::time::timeout(Duration::from_secs(120), waiter)
            .await
            .with_context(|| format!("{n} not Ready within 120 s"))??;
        ms.push(done.duration_since(start).as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        let idx = ((ms.len() as f64 * p).ceil() as usize).saturating_sub(1);
        ms.get(idx).copied().unwrap_or(0.0)
    };
    Ok(json!({"runs": runs, "p50_ms": pct(0.5), "p95_ms": pct(0.95), "max_ms": pct(1.0), "all_ms": ms}))
}

/// Counts of what the baseline sends to the apiserver.
#[derive(Default)]
struct KubeCounts {
    creates: AtomicU64,
    writes: AtomicU64,
}

struct Baseline {
    kc: KeycloakAdmin,
    realm: String,
    /// The realm role representation, read once per run.
    role: Value,
    kube: Option<(Api<KeycloakClient>, Api<Secret>)>,
    counts: KubeCounts,
}

impl Baseline {
    /// One client: the Keycloak calls (a), between the Kubernetes writes (b) when asked for.
    async fn one(&self, set: &ClientSet, i: usize) -> anyhow::Result<()> {
        let client_id = name(set, i);
        let mut owner = None;
        if let Some((kcc, _)) = &self.kube {
            let obj = kcc.create(&PostParams::default(), &client_object(set, i)?).await?;
            self.counts.creates.fetch_add(1, Ordering::Relaxed);
            let patch = json!({"metadata": {"finalizers": [BASELINE_FINALIZER]}});
            kcc.patch(&client_id, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            self.counts.writes.fetch_add(1, Ordering::Relaxed);
            owner = obj.controller_owner_ref(&());
        }
        let rep = json!({
            "clientId": client_id,
            "protocol": "openid-connect",
            "publicClient": false,
            "serviceAccountsEnabled": true,
            "standardFlowEnabled": false,
            "directAccessGrantsEnabled": false,
            "protocolMappers": [{
                "name": format!("kco-audience-{AUDIENCE}"),
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": {
                    "included.client.audience": AUDIENCE,
                    "access.token.claim": "true",
                    "id.token.claim": "false",
                    "introspection.token.claim": "true",
                },
            }],
        });
        let realm = self.realm.as_str();
        // Keycloak's client representation has no roles field (a POST with one is a 400).
        let id = self.kc.create_client(realm, &rep).await?;
        self.kc.post(&[realm, "clients", &id, "roles"], &json!({"name": CLIENT_ROLE}), "role").await?;
        let user = self.kc.get(&[realm, "clients", &id, "service-account-user"], &[], "user").await?;
        let uid = user.get("id").and_then(Value::as_str).context("service-account user without id")?;
        self.kc.post(&[realm, "users", uid, "role-mappings", "realm"], &json!([self.role]), "role-mapping").await?;
        let secret = self.kc.client_secret(realm, &id).await?;
        if let Some((kcc, secrets)) = &self.kube {
            let base = format!("{}/realms/{realm}", self.kc.base_url());
            let data: BTreeMap<String, String> = [
                ("client-id", client_id.clone()),
                ("client-secret", secret.expose_secret().to_string()),
                ("issuer", base.clone()),
                ("token-endpoint", format!("{base}/protocol/openid-connect/token")),
                ("auth-endpoint", format!("{base}/protocol/openid-connect/auth")),
                ("userinfo-endpoint", format!("{base}/protocol/openid-connect/userinfo")),
                ("jwks-endpoint", format!("{base}/protocol/openid-connect/certs")),
                ("end-session-endpoint", format!("{base}/protocol/openid-connect/logout")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let s = Secret {
                metadata: ObjectMeta {
                    name: Some(format!("{client_id}-credentials")),
                    owner_references: owner.map(|o: OwnerReference| vec![o]),
                    ..Default::default()
                },
                string_data: Some(data),
                ..Default::default()
            };
            secrets.create(&PostParams::default(), &s).await?;
            self.counts.writes.fetch_add(1, Ordering::Relaxed);
            let status = json!({"status": {
                "phase": "Ready",
                "observedGeneration": 1,
                "clientId": client_id,
                "internalId": id,
                "realm": realm,
                "credentialsSecret": format!("{client_id}-credentials"),
                "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}],
            }});
            kcc.patch_status(&client_id, &PatchParams::default(), &Patch::Merge(&status)).await?;
            self.counts.writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

async fn baseline(set: &ClientSet, realm: &str, kubernetes: bool) -> anyhow::Result<Value> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = RequestMetrics::default();
    metrics.register(&mut registry);
    let kc = admin(metrics, Duration::from_secs(60))?;
    let role = kc.get(&[realm, "roles", REALM_ROLE], &[], "role").await?;
    let kube = if kubernetes {
        let client = Client::try_default().await?;
        Some((Api::namespaced(client.clone(), &set.namespace), Api::namespaced(client, &set.namespace)))
    } else {
        None
    };
    let b = Arc::new(Baseline { kc, realm: realm.to_string(), role, kube, counts: KubeCounts::default() });
    let before = requests(&registry)?;
    let start = Instant::now();
    futures::stream::iter(0..set.count)
        .map(|i| {
            let b = b.clone();
            async move { b.one(set, i).await.with_context(|| format!("baseline client {i}")) }
        })
        .buffer_unordered(set.concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let seconds = start.elapsed().as_secs_f64();
    let kc_requests = requests(&registry)? - before;
    if let Some((kcc, _)) = &b.kube {
        // Untimed: take the baseline's finalizer off again so that the namespace can be deleted.
        let patch = json!({"metadata": {"finalizers": null}});
        futures::stream::iter(0..set.count)
            .map(|i| {
                let kcc = kcc.clone();
                let patch = patch.clone();
                async move { kcc.patch(&name(set, i), &PatchParams::default(), &Patch::Merge(&patch)).await }
            })
            .buffer_unordered(set.concurrency.max(1))
            .try_collect::<Vec<_>>()
            .await?;
    }
    if set.count == 0 {
        bail!("--count must be at least 1");
    }
    let n = set.count as f64;
    Ok(json!({
        "clients": set.count,
        "concurrency": set.concurrency,
        "kubernetes": kubernetes,
        "seconds": seconds,
        "clients_per_second": n / seconds,
        "keycloak_requests": kc_requests,
        "keycloak_requests_per_client": kc_requests as f64 / n,
        "kubernetes_creates": b.counts.creates.load(Ordering::Relaxed),
        "kubernetes_writes": b.counts.writes.load(Ordering::Relaxed),
        "kubernetes_writes_per_client": b.counts.writes.load(Ordering::Relaxed) as f64 / n,
    }))
}

/// What is wrong with one client's end state, if anything (empty when it is as declared).
async fn audit_one(
    kc: &KeycloakAdmin,
    secrets: &Api<Secret>,
    realm: &str,
    client_id: &str,
) -> anyhow::Result<Vec<&'static str>> {
    let mut wrong = Vec::new();
    let Some(client) = kc.find_client(realm, client_id).await? else {
        return Ok(vec!["no client in Keycloak"]);
    };
    let id = client.get("id").and_then(Value::as_str).context("client without id")?;
    let audience = client.get("protocolMappers").and_then(Value::as_array).is_some_and(|ms| {
        ms.iter().any(|m| m.pointer("/config/included.client.audience").and_then(Value::as_str) == Some(AUDIENCE))
    });
    if !audience {
        wrong.push("no audience mapper");
    }
    let roles = kc.get(&[realm, "clients", id, "roles"], &[], "client-role").await?;
    if !roles.as_array().is_some_and(|rs| rs.iter().any(|r| r.get("name").and_then(Value::as_str) == Some(CLIENT_ROLE)))
    {
        wrong.push("client role missing");
    }
    let user = kc.get(&[realm, "clients", id, "service-account-user"], &[], "service-account-user").await?;
    let uid = user.get("id").and_then(Value::as_str).context("service-account user without id")?;
    let granted = kc.get(&[realm, "users", uid, "role-mappings", "realm"], &[], "role-mapping").await?;
    if !granted
        .as_array()
        .is_some_and(|rs| rs.iter().any(|r| r.get("name").and_then(Value::as_str) == Some(REALM_ROLE)))
    {
        wrong.push("realm role not granted");
    }
    let secret = kc.client_secret(realm, id).await?;
    let held = secrets.get_opt(&format!("{client_id}-credentials")).await?;
    let held = held.as_ref().and_then(|s| s.data.as_ref()).and_then(|d| d.get("client-secret"));
    match held {
        None => wrong.push("managed Secret missing"),
        Some(v) if v.0 != secret.expose_secret().as_bytes() => wrong.push("managed Secret differs from Keycloak"),
        Some(_) => {}
    }
    Ok(wrong)
}

async fn audit(set: &ClientSet, realm: &str, also: Option<&str>) -> anyhow::Result<Value> {
    let kc = admin(RequestMetrics::default(), Duration::from_secs(60))?;
    let secrets: Api<Secret> = Api::namespaced(Client::try_default().await?, &set.namespace);
    let mut names: Vec<String> = (0..set.count).map(|i| name(set, i)).collect();
    if let Some(extra) = also {
        let (prefix, count) = extra.split_once('=').context("--also wants PREFIX=COUNT")?;
        names.extend((0..count.parse::<usize>()?).map(|i| format!("{prefix}-{i}")));
    }
    let start = Instant::now();
    let results: Vec<(String, Vec<&'static str>)> = futures::stream::iter(names)
        .map(|n| {
            let (kc, secrets) = (&kc, &secrets);
            async move { audit_one(kc, secrets, realm, &n).await.map(|w| (n, w)) }
        })
        .buffer_unordered(set.concurrency.max(1))
        .try_collect()
        .await?;
    let mut by_problem: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong: Vec<Value> = Vec::new();
    for (n, problems) in &results {
        for p in problems {
            *by_problem.entry(p).or_default() += 1;
        }
        if !problems.is_empty() && wrong.len() < 20 {
            wrong.push(json!({"client": n, "problems": problems}));
        }
    }
    let not_as_declared = results.iter().filter(|(_, p)| !p.is_empty()).count();
    Ok(json!({
        "clients_checked": results.len(),
        "not_as_declared": not_as_declared,
        "by_problem": by_problem,
        "first_wrong": wrong,
        "seconds": start.elapsed().as_secs_f64(),
    }))
}
