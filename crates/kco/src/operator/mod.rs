//! `kco run`: the operator. Watches KeycloakClients (and the realms and Secrets they depend on) and
//! reconciles each through the engine: read → validate → plan → apply → Secret → status.

mod client;
mod context;
mod credentials;
mod guarded;
mod instance;
mod leader;
mod realm;
mod resolve;
mod secret;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kco_api::{GROUP, KeycloakClient, KeycloakInstance, KeycloakRealm};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;

pub use context::{Context, ReconcileError};
use guarded::GuardedClient;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "KCO_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "KCO_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// How often every client is re-checked against Keycloak to revert drift, e.g. 5m, 30s.
    #[arg(long, env = "KCO_RESYNC", default_value = "5m", value_parser = parse_duration)]
    pub resync: Duration,
    /// Log format: text or json. The level comes from RUST_LOG (default info).
    #[arg(long, env = "KCO_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Most KeycloakClients reconciled at once (0: no limit).
    #[arg(long, env = "KCO_CONCURRENCY", default_value_t = 0)]
    pub concurrency: u16,
    #[command(flatten)]
    pub leader: leader::LeaderArgs,
}

/// `90s`, `5m`, `1h`, `2d` → Duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a number followed by s, m, h or d"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    check_crds_installed(&client, args.namespace.as_deref()).await?;
    let mut registry = Registry::default();
    let ctx = Arc::new(Context::new(client.clone(), args.resync, &mut registry));
    let elector = leader::Elector::new(&client, &args.leader, &mut registry)?;
    let ready = Arc::new(AtomicBool::new(false));
    let http = tokio::spawn(crate::http::serve(args.metrics_addr, Arc::new(registry), ready.clone()));
    if let Some(elector) = &elector {
        // A standby is Ready (it serves and can take over), so rollouts and the PDB count it;
        // who leads is the kco_leader metric.
        ready.store(true, Ordering::Relaxed);
        if !elector.acquire().await {
            http.abort();
            return Ok(());
        }
    }

    let ns = args.namespace.as_deref();
    tracing::info!(namespace = ns.unwrap_or("(all)"), resync = ?args.resync, "kco operator starting");
    let instance_controller = Controller::new(scoped::<KeycloakInstance>(&client, ns), watcher::Config::default())
        .shutdown_on_signal()
        .run(instance::reconcile, instance::error_policy, ctx.clone())
        .for_each(|_| async {});
    let realm_controller = Controller::new(scoped::<KeycloakRealm>(&client, ns), watcher::Config::default())
        .shutdown_on_signal()
        .run(realm::reconcile, realm::error_policy, ctx.clone())
        .for_each(|_| async {});
    let (clients, realms, secrets) = (
        scoped::<GuardedClient>(&client, ns),
        scoped::<KeycloakRealm>(&client, ns),
        scoped::<PartialObjectMeta<Secret>>(&client, ns),
    );
    let controller = Controller::new(clients, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(args.concurrency));
    let store = controller.store();
    ready.store(true, Ordering::Relaxed);
    let secret_store = store.clone();
    let instance_store = store.clone();
    let client_controller = controller
        // A Secret event re-reconciles the client that owns it (a managed Secret edited or deleted by
        // hand is put back) and every client that takes its secret from it (spec.clientSecret), so a
        // change to a user-owned secret reaches Keycloak within seconds.
        // Metadata only: the mapper needs names and owners, never the values of every Secret.
        .watches(secrets, watcher::Config::default(), move |secret: PartialObjectMeta<Secret>| {
            let ns = secret.namespace().unwrap_or_default();
            let name = secret.name_any();
            let owners: Vec<String> = secret
                .owner_references()
                .iter()
                .filter(|o| o.kind == "KeycloakClient" && o.api_version.starts_with(GROUP))
                .map(|o| o.uid.clone())
                .collect();
            secret_store
                .state()
                .into_iter()
                .filter(move |c| {
                    c.namespace().as_deref() == Some(ns.as_str())
                        && (c.uid().is_some_and(|u| owners.contains(&u))
                            || c.spec().and_then(|s| s.client_secret.as_ref()).is_some_and(|r| r.name == name))
                })
                .map(|c| ObjectRef::from_obj(&*c))
        })
        // A realm change (a grant added or revoked) re-reconciles every client that uses the realm.
        .watches(realms, watcher::Config::default(), move |realm: KeycloakRealm| {
            let realm_ns = realm.namespace().unwrap_or_default();
            let realm_name = realm.name_any();
            store
                .state()
                .into_iter()
                .filter(move |c| {
                    let ns = c.namespace().unwrap_or_default();
                    c.spec()
                        .is_some_and(|s| s.realm_ref.name == realm_name && s.realm_ref.namespace_or(&ns) == realm_ns)
                })
                .map(|c| ObjectRef::from_obj(&*c))
        })
        // An instance change (grants, URL, credentials, or reachability flipping in its status)
        // re-reconciles every client: which realms use the instance is not indexed, and such changes
        // are rare. A Keycloak that comes back is thus noticed at once instead of at the next backoff.
        .watches(scoped::<KeycloakInstance>(&client, ns), watcher::Config::default(), move |_: KeycloakInstance| {
            instance_store.state().into_iter().map(|c| ObjectRef::from_obj(&*c))
        })
        .shutdown_on_signal()
        .run(client::reconcile, client::error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile failed"),
            }
        });
    let controllers = async {
        futures::join!(client_controller, instance_controller, realm_controller);
    };
    let result = match &elector {
        Some(elector) => elector.lead(controllers).await,
        None => {
            controllers.await;
            Ok(())
        }
    };
    http.abort();
    result?;
    tracing::info!("kco operator stopped");
    Ok(())
}

/// An Api over one namespace, or all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Exit early with a hint when the CRDs are missing, instead of failing every watch forever.
/// Listed where kco watches: in namespaced mode it may list nothing cluster-wide.
async fn check_crds_installed(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    let api: Api<KeycloakClient> = scoped(client, namespace);
    if let Err(e) = api.list(&kube::api::ListParams::default().limit(1)).await {
        anyhow::bail!(
            "cannot list KeycloakClients ({e}); are the CRDs installed? Run: kco crd | kubectl apply --server-side -f -"
        );
    }
    Ok(())
}

/// Requeue delay after `failures` consecutive failures: 2s, 4s, … capped at 5 minutes.
pub fn backoff(failures: u32) -> Action {
    let secs = 2u64.saturating_pow(failures.clamp(1, 9)).min(300);
    Action::requeue(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Action::requeue(Duration::from_secs(2)));
        assert_eq!(backoff(3), Action::requeue(Duration::from_secs(8)));
        assert_eq!(backoff(30), Action::requeue(Duration::from_secs(300)));
    }
}
