//! `kco run`: the operator. Watches KeycloakClients (and the realms and Secrets they depend on) and
//! reconciles each through the engine: read → validate → plan → apply → Secret → status.

mod client;
mod context;
mod credentials;
mod gate;
mod guarded;
mod instance;
mod leader;
mod quiet;
mod realm;
mod rejected;
mod resolve;
mod secret;
mod status;
mod trim;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{SinkExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kco_api::{GROUP, KeycloakClient, KeycloakInstance, KeycloakRealm};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use context::{Context, ReconcileError, Stores};
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
    #[arg(long, env = "KCO_RESYNC", default_value = "5m", value_parser = kco_engine::schedule::parse_interval)]
    pub resync: Duration,
    /// How often each KeycloakInstance is checked (Admin API login and server info), at most the
    /// resync. A Keycloak that restarted since the last check (its uptime says so) has its clients
    /// read again at once: it may have lost writes it had acknowledged.
    #[arg(long, env = "KCO_KEYCLOAK_CHECK", default_value = "1m", value_parser = kco_engine::schedule::parse_interval)]
    pub keycloak_check: Duration,
    /// Use the admin events of realms that keep them (adminEventsEnabled) to tell which clients
    /// changed: a resync then reads back only those, instead of every client. Realms without admin
    /// events are read whole at every resync either way.
    #[arg(long, env = "KCO_ADMIN_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub admin_events: bool,
    /// How often every client is read whole from Keycloak even when its realm's admin events show
    /// no change: catches what leaves no event (a database edit, an import). At least the resync.
    #[arg(long, env = "KCO_FULL_RESYNC", default_value = "1h", value_parser = kco_engine::schedule::parse_interval)]
    pub full_resync: Duration,
    /// How long a create or update of a Keycloak client may take before status says it is under way
    /// (phase Provisioning or Updating); 0s says so at once. One that is done sooner goes straight to
    /// its final phase: one Kubernetes write less per create.
    #[arg(long, env = "KCO_PROGRESS_AFTER", default_value = "1s", value_parser = parse_delay)]
    pub progress_after: Duration,
    /// Log format: text or json. The level comes from RUST_LOG (default info).
    #[arg(long, env = "KCO_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Most KeycloakClient reconciles talking to one Keycloak instance at once (0: no limit). When
    /// more are waiting, the next slot goes to the next namespace in turn, so one namespace applying
    /// thousands of clients cannot starve another.
    #[arg(long, env = "KCO_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Only KeycloakClients whose labels match this selector (e.g. `kco.dev/shard=a`), so operators
    /// can split the clients between them. Realms, instances and Secrets are watched whole.
    #[arg(long, env = "KCO_SELECTOR")]
    pub selector: Option<String>,
    #[command(flatten)]
    pub leader: leader::LeaderArgs,
}

/// An interval as `--resync` takes it, or zero (`0s`).
fn parse_delay(s: &str) -> Result<Duration, String> {
    if matches!(s, "0" | "0s") { Ok(Duration::ZERO) } else { kco_engine::schedule::parse_interval(s) }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let (client, leader_client) = counted_clients(&mut registry).await?;
    check_crds_installed(&client, args.namespace.as_deref()).await?;
    // The realms, instances and Secrets (metadata only) the reconciles read come from these caches,
    // filled by one watch each; the same watches trigger the controllers (see `shared_watch`).
    let (realms, realm_writer) = reflector::store::<KeycloakRealm>();
    let (instances, instance_writer) = reflector::store::<KeycloakInstance>();
    let (secrets, secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
    let stores = Stores { realms: realms.clone(), instances: instances.clone(), secrets };
    let per_instance = usize::from(args.concurrency);
    let mut ctx =
        Context::new(client.clone(), args.resync, args.namespace.clone(), stores, per_instance, &mut registry);
    ctx.keycloak_check = args.keycloak_check.min(args.resync);
    ctx.quiet = quiet::Quiet::new(args.admin_events, args.resync, args.full_resync);
    ctx.progress_after = args.progress_after;
    let ctx = Arc::new(ctx);
    let elector = leader::Elector::new(&leader_client, &args.leader, &mut registry)?;
    let ready = ctx.ready.clone();
    let http = tokio::spawn(crate::http::serve(args.metrics_addr, Arc::new(registry), ready.clone()));
    let trim = tokio::spawn(trim::run(ctx.finished.clone()));
    if let Some(elector) = &elector {
        // A standby is Ready (it serves and can take over), so rollouts and the PDB count it;
        // who leads is the kco_leader metric. Without election, ready waits for the watches.
        ready.store(true, Ordering::Relaxed);
        if !elector.acquire().await {
            http.abort();
            trim.abort();
            return Ok(());
        }
    }
    #[cfg(feature = "fault-injection")]
    if let Some(delay) = std::env::var("KCO_FAULT_DELAY_WATCH_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        // Test hook: hold the watches back, to show /readyz waits for them.
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }

    let ns = args.namespace.as_deref();
    tracing::info!(namespace = ns.unwrap_or("(all)"), resync = ?args.resync, "kco operator starting");
    // Ready once every watch has listed what exists: before that, a probe would route work (or a
    // rollout) to an operator that does not know the objects yet.
    let synced = Synced { ready: ready.clone(), count: Arc::new(AtomicUsize::new(0)), of: 4, caches: ctx.clone() };
    let (realm_watch, [realm_events, realm_events_for_clients]) =
        shared_watch(watcher(scoped::<KeycloakRealm>(&client, ns), watcher::Config::default()), realm_writer, &synced);
    let (instance_watch, [instance_events, instance_events_for_clients]) = shared_watch(
        watcher(scoped::<KeycloakInstance>(&client, ns), watcher::Config::default()),
        instance_writer,
        &synced,
    );
    let (secret_watch, [secret_events, secret_events_for_instances]) = shared_watch(
        watcher(scoped::<PartialObjectMeta<Secret>>(&client, ns), watcher::Config::default()),
        secret_writer,
        &synced,
    );

    let instance_controller = instance_controller(instance_events, instances, secret_events_for_instances, ctx.clone());
    let realm_controller = realm_controller(realm_events, realms, ctx.clone());
    // No limit here: the per-instance gates (`Context::gates`) bound the Keycloak work, fairly by
    // namespace; a limit at this level would serve the queue first come, first served.
    let mut watch = watcher::Config::default();
    if let Some(selector) = &args.selector {
        watch = watch.labels(selector);
    }
    let controller = synced_controller(scoped::<GuardedClient>(&client, ns), watch, synced);
    let _ = ctx.clients.set(controller.store());
    let client_controller =
        client_controller(controller, secret_events, realm_events_for_clients, instance_events_for_clients, ctx);
    // The controllers end on SIGTERM/SIGINT (after their running reconciles); the watches feeding
    // them never end on their own, so they stop with the controllers (a leader must get to release
    // its Lease).
    let controllers = async {
        let watches = async { futures::join!(realm_watch, instance_watch, secret_watch) };
        let run = async { futures::join!(client_controller, instance_controller, realm_controller) };
        futures::pin_mut!(watches, run);
        futures::future::select(run, watches).await;
    };
    let result = match &elector {
        Some(elector) => elector.lead(controllers).await,
        None => {
            controllers.await;
            Ok(())
        }
    };
    http.abort();
    trim.abort();
    result?;
    tracing::info!("kco operator stopped");
    Ok(())
}

/// The KeycloakInstance controller: each instance is checked (and its admin client built), again within
/// seconds when its admin Secret (a rotated password) or CA Secret changes.
fn instance_controller(
    events: impl Stream<Item = watcher::Result<KeycloakInstance>> + Send + 'static,
    instances: reflector::Store<KeycloakInstance>,
    secret_events: impl Stream<Item = watcher::Result<PartialObjectMeta<Secret>>> + Send + 'static,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> + Send {
    let instance_store = instances.clone();
    Controller::for_stream(events, instances)
        .watches_stream(secret_events, move |secret| instances_using(&instance_store, &secret))
        .shutdown_on_signal()
        .run(|o, c| panic_is_internal("KeycloakInstance", o, c, instance::reconcile), instance::error_policy, ctx)
        .for_each(|_| async {})
}

/// The KeycloakRealm controller.
fn realm_controller(
    events: impl Stream<Item = watcher::Result<KeycloakRealm>> + Send + 'static,
    realms: reflector::Store<KeycloakRealm>,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> + Send {
    Controller::for_stream(events, realms)
        .shutdown_on_signal()
        .run(|o, c| panic_is_internal("KeycloakRealm", o, c, realm::reconcile), realm::error_policy, ctx)
        .for_each(|_| async {})
}

/// `reconcile` of `o` under [`catch_panic`]: a panic fails that object with an internal error.
async fn panic_is_internal<K, F>(
    kind: &str,
    o: Arc<K>,
    ctx: Arc<Context>,
    reconcile: fn(Arc<K>, Arc<Context>) -> F,
) -> Result<Action, ReconcileError>
where
    K: ResourceExt,
    F: std::future::Future<Output = Result<Action, ReconcileError>>,
{
    let key = format!("{kind} {}/{}", o.namespace().unwrap_or_default(), o.name_any());
    catch_panic(&key, reconcile(o, ctx)).await.unwrap_or_else(|m| Err(ReconcileError::Internal(m)))
}

/// The KeycloakClients of the instances that came back, each time [`Context::keycloak_back`]
/// changes (comebacks meanwhile fold into one round per instance).
fn comebacks(
    ctx: Arc<Context>,
    realms: reflector::Store<KeycloakRealm>,
    clients: reflector::Store<GuardedClient>,
) -> impl Stream<Item = ObjectRef<GuardedClient>> + Send + 'static {
    let rx = ctx.keycloak_back.subscribe();
    futures::stream::unfold((rx, ctx), move |(mut rx, ctx)| {
        let (realms, clients) = (realms.clone(), clients.clone());
        async move {
            rx.changed().await.ok()?;
            let refs: Vec<_> = ctx
                .take_instances_back()
                .iter()
                .flat_map(|(ns, name)| clients_of_instance(&realms, &clients, ns, name, |_| true))
                .collect();
            let refs = forgotten(&ctx, refs);
            Some((futures::stream::iter(refs), (rx, ctx)))
        }
    })
    .flatten()
}

/// The KeycloakClient controller, and what else triggers a client's reconcile.
fn client_controller(
    controller: Controller<GuardedClient>,
    secret_events: impl Stream<Item = watcher::Result<PartialObjectMeta<Secret>>> + Send + 'static,
    realm_events: impl Stream<Item = watcher::Result<KeycloakRealm>> + Send + 'static,
    instance_events: impl Stream<Item = watcher::Result<KeycloakInstance>> + Send + 'static,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> + Send {
    let store = controller.store();
    let secret_store = store.clone();
    let all_clients = store.clone();
    let realms = ctx.stores.realms.clone();
    let (realm_specs, instance_specs) = (SpecsSeen::default(), SpecsSeen::default());
    let (realm_ctx, instance_ctx) = (ctx.clone(), ctx.clone());
    let came_back = comebacks(ctx.clone(), realms.clone(), store.clone());
    let echoes = ctx.clone();
    controller
        // A Secret event re-reconciles the client that owns it (a managed Secret edited or deleted by
        // hand is put back) and every client that takes its secret from it (spec.clientSecret), so a
        // change to a user-owned secret reaches Keycloak within seconds. The echo of kco's own write
        // is not a change. Metadata only: the mapper needs names and owners, never the values.
        .watches_stream(secret_events, move |secret| {
            let (ns, rv) = (secret.namespace().unwrap_or_default(), secret.resource_version());
            if echoes.wrote_secret_version(&ns, &secret.name_any(), rv.as_deref()) {
                return Vec::new();
            }
            forgotten(&echoes, clients_of_secret(&secret_store, &secret))
        })
        // A realm's spec change (a grant added or revoked) re-reconciles every client that uses the
        // realm; a change of its status alone (Ready at last, say) only the clients whose last
        // reconcile ended Failed or Degraded, waiting for it. Not the others: a client on its way
        // (queued behind hundreds at its Keycloak) would be reconciled a second time once through,
        // for nothing (every client of a 500-client apply was, when the realm's status was written).
        .watches_stream(realm_events, move |realm: KeycloakRealm| {
            realm_ctx.others_changed.fetch_add(1, Ordering::Relaxed);
            let all = realm_specs.changed(&realm);
            forgotten(&realm_ctx, clients_of_realm(&store, &realm, |c| all || c.failed_for_current_spec()))
        })
        // The same for an instance: a spec change (grants, URL, credentials) re-reconciles the
        // clients of the realms that use it (found in the caches); a change of its status alone
        // (reachability flipping) only those that failed, so a Keycloak that answers again is
        // noticed at once instead of at the next backoff. Not the Ready ones: a one-off failed check
        // (a reset connection) must not send every client back to Keycloak. A Keycloak that may
        // have lost their writes is a comeback (below).
        .watches_stream(instance_events, move |instance: KeycloakInstance| {
            instance_ctx.others_changed.fetch_add(1, Ordering::Relaxed);
            let all = instance_specs.changed(&instance);
            let (ns, name) = (instance.namespace().unwrap_or_default(), instance.name_any());
            forgotten(
                &instance_ctx,
                clients_of_instance(&realms, &all_clients, &ns, &name, |c| all || c.failed_for_current_spec()),
            )
        })
        // A Keycloak that came back (answering again after refusing connections, or restarted since
        // kco last looked) may have lost recent writes: the clients of that instance are reconciled
        // once more (see `Context::note_keycloak_comeback`).
        .reconcile_on(came_back)
        .shutdown_on_signal()
        .run(client::reconcile, client::error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile failed"),
            }
        })
}

/// `refs`, each read whole at its next reconcile (see `quiet`): something it depends on changed.
fn forgotten(ctx: &Context, refs: Vec<ObjectRef<GuardedClient>>) -> Vec<ObjectRef<GuardedClient>> {
    ctx.quiet.forget_all(&refs);
    refs
}

/// The KeycloakInstances of the Secret's namespace that use it (admin credentials or CA bundle).
fn instances_using(
    instances: &reflector::Store<KeycloakInstance>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<KeycloakInstance>> {
    let name = secret.name_any();
    in_namespace(instances, secret, |i| instance::uses_secret(i, &name))
}

/// The KeycloakClients a Secret concerns: the one that owns it and those that take their secret from it.
fn clients_of_secret(
    clients: &reflector::Store<GuardedClient>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<GuardedClient>> {
    let name = secret.name_any();
    let owners: Vec<String> = secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == "KeycloakClient" && o.api_version.starts_with(GROUP))
        .map(|o| o.uid.clone())
        .collect();
    in_namespace(clients, secret, |c| {
        c.uid().is_some_and(|u| owners.contains(&u)) || c.client_secret_name().is_some_and(|n| n == name)
    })
}

/// The objects of `store` in the namespace of `of` that `keep` accepts.
fn in_namespace<K>(store: &reflector::Store<K>, of: &impl ResourceExt, keep: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let ns = of.namespace().unwrap_or_default();
    let here = |o: &K| o.namespace().as_deref() == Some(ns.as_str());
    store.state().into_iter().filter(|o| here(o) && keep(o)).map(|o| ObjectRef::from_obj(&*o)).collect()
}

/// The KeycloakClients whose realmRef names the realm, of those `keep` accepts.
fn clients_of_realm(
    clients: &reflector::Store<GuardedClient>,
    realm: &KeycloakRealm,
    keep: impl Fn(&GuardedClient) -> bool,
) -> Vec<ObjectRef<GuardedClient>> {
    let realm_ns = realm.namespace().unwrap_or_default();
    let realm_name = realm.name_any();
    clients
        .state()
        .into_iter()
        .filter(|c| {
            let ns = c.namespace().unwrap_or_default();
            c.realm_ref().is_some_and(|r| r.name == realm_name && r.namespace_or(&ns) == realm_ns) && keep(c)
        })
        .map(|c| ObjectRef::from_obj(&*c))
        .collect()
}

/// The uid and generation last seen of each KeycloakRealm or KeycloakInstance (by namespace/name):
/// whether an event carries a spec change or only a status write. Kept here rather than read from
/// `status.observedGeneration`, which a watch that relisted after both the spec change and the
/// status write would show as already caught up; keyed by name so that an object deleted and
/// created again (even unseen, within a relist) shows as a new uid.
#[derive(Default)]
struct SpecsSeen(std::sync::Mutex<std::collections::HashMap<(String, String), UidAndGeneration>>);

type UidAndGeneration = (Option<String>, Option<i64>);

impl SpecsSeen {
    /// Whether `obj` changed spec, uid or generation since the last call, or is going away (a
    /// deletion timestamp; [`shared_watch`] gives deleted objects one); it is then forgotten. One
    /// seen for the first time is no change: at start every client is reconciled anyway, and a
    /// client that waited for a realm or instance created after it ended Failed (see
    /// [`GuardedClient::failed_for_current_spec`]).
    fn changed(&self, obj: &impl kube::Resource) -> bool {
        let m = obj.meta();
        let key = (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default());
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.deletion_timestamp.is_some() {
            seen.remove(&key);
            return true;
        }
        let now = (m.uid.clone(), m.generation);
        seen.insert(key, now.clone()).is_some_and(|was| was != now)
    }
}

/// The KeycloakClients of every cached KeycloakRealm whose instanceRef names the instance: an
/// instance change concerns only them (with many tenants' instances, re-reconciling every client at
/// each instance's status change made thousands of reconciles of unrelated objects).
fn clients_of_instance(
    realms: &reflector::Store<KeycloakRealm>,
    clients: &reflector::Store<GuardedClient>,
    ins_ns: &str,
    ins_name: &str,
    keep: impl Fn(&GuardedClient) -> bool,
) -> Vec<ObjectRef<GuardedClient>> {
    realms
        .state()
        .iter()
        .filter(|r| {
            let realm_ns = r.namespace().unwrap_or_default();
            r.spec.instance_ref.name == ins_name && r.spec.instance_ref.namespace_or(&realm_ns) == ins_ns
        })
        .flat_map(|r| clients_of_realm(clients, r, &keep))
        .collect()
}

/// Run one reconcile so that a panic in it fails that object instead of the process: the panic's
/// message comes back as `Err` (shortened; it never holds a credential, which kco never slices or
/// indexes), and is logged once with the object.
pub async fn catch_panic<T>(object: &str, fut: impl std::future::Future<Output = T>) -> Result<T, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(fut).catch_unwind().await.map_err(|panic| {
        let message = crate::panic_message(panic.as_ref());
        tracing::error!(object, panic = %message, "reconcile panicked; this object fails, the operator goes on");
        message
    })
}

/// Counts the watches whose initial list is in; `ready` turns true when all `of` are. The shared
/// caches' watches also count toward `caches` (see [`Context::caches_synced`]).
#[derive(Clone)]
struct Synced {
    ready: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    of: usize,
    caches: Arc<Context>,
}

impl Synced {
    /// `events` put into `writer`'s store, then this watch's first InitDone counted (and, for a
    /// cache, reported to `caches`).
    fn track<K, S>(
        &self,
        events: S,
        writer: reflector::store::Writer<K>,
        cache: bool,
    ) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + use<K, S>
    where
        K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
        S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
    {
        let synced = self.clone();
        reflect_then(events, writer, move || {
            if cache {
                synced.caches.cache_synced();
            }
            if synced.count.fetch_add(1, Ordering::SeqCst) + 1 == synced.of {
                tracing::info!("initial lists synced; ready");
                synced.ready.store(true, Ordering::Relaxed);
            }
        })
    }
}

/// `events` applied to `writer`'s store, and `listed` called at the first InitDone, once the store
/// holds the initial list. The store takes the list in only at InitDone: counting the watch synced
/// before that let a reconcile find the cache "synced" and still empty (a client failed with
/// RealmNotFound right after a restart, and stayed so until the next resync).
fn reflect_then<K, S>(
    events: S,
    writer: reflector::store::Writer<K>,
    mut listed: impl FnMut() + Send,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
{
    let mut done = false;
    events.reflect(writer).inspect_ok(move |event| {
        if !done && matches!(event, watcher::Event::InitDone) {
            done = true;
            listed();
        }
    })
}

/// A Controller over `api` whose watch also reports to `synced` when its initial list is complete.
/// (kube's `Store::wait_until_ready` wakes only one waiter, and the Controller is already one.)
fn synced_controller<K>(api: Api<K>, config: watcher::Config, synced: Synced) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = synced
        .track(watcher(api, config).default_backoff(), writer, false)
        .applied_objects()
        .predicate_filter(reconcile_worthy, kube::runtime::PredicateConfig::default());
    Controller::for_stream(stream, reader)
}

/// What in an object starts a reconcile when it changes: the spec (generation), labels,
/// annotations, finalizers and deletion. Not its status: kco writes that itself, and reconciling
/// again after each of its own status writes would double every create's Keycloak reads. (Drift is
/// caught by the resync, Secrets, realms and instances by their own watches.)
fn reconcile_worthy<K: kube::Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let m = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&m.uid, m.generation, &m.labels, &m.annotations, &m.finalizers, m.deletion_timestamp.is_some()).hash(&mut h);
    Some(h.finish())
}

/// Room for this many events per consumer before a shared watch waits for the slowest one.
const FAN_OUT_BUFFER: usize = 256;

/// One watch kept in `writer`'s cache (compacted: no managedFields, no last-applied copy), each
/// changed or deleted object handed to `N` consumers (the controllers it triggers). kube's own
/// shared streams pass on no deletions, which the mappers need (a managed Secret deleted by hand).
/// The returned future drives the watch; it must run alongside the consumers.
fn shared_watch<K, S, const N: usize>(
    events: S,
    writer: reflector::store::Writer<K>,
    synced: &Synced,
) -> (
    impl std::future::Future<Output = ()> + Send + use<K, S, N>,
    [impl Stream<Item = watcher::Result<K>> + Send + use<K, S, N>; N],
)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
{
    let mut senders = Vec::with_capacity(N);
    let consumers = std::array::from_fn(|_| {
        let (tx, rx) = futures::channel::mpsc::channel::<K>(FAN_OUT_BUFFER);
        senders.push(tx);
        rx.map(Ok)
    });
    let root = synced
        .track(events.default_backoff().modify(|o: &mut K| guarded::compact(o.meta_mut())), writer, true)
        .for_each(move |event| {
            let mut senders = senders.clone();
            async move {
                let obj = match event {
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => obj,
                    Ok(watcher::Event::Delete(obj)) => deleted(obj),
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => return,
                    Err(e) => return tracing::warn!(error = %e, "watch failed; it retries with backoff"),
                };
                for tx in &mut senders {
                    // A consumer that is gone (shutting down) needs nothing more.
                    let _ = tx.send(obj.clone()).await;
                }
            }
        });
    (root, consumers)
}

/// A deleted object as the consumers of [`shared_watch`] get it: with a deletion timestamp (the
/// last state a watch gives of an object deleted without finalizers has none), so a mapper can
/// tell a deletion from a change.
fn deleted<K: kube::Resource>(mut obj: K) -> K {
    let meta = obj.meta_mut();
    if meta.deletion_timestamp.is_none() {
        meta.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    }
    obj
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

/// At most this many Kubernetes requests of the controllers wait for their response headers at once
/// (a watch holds a place only until its stream starts). Without a bound, a thousand new objects
/// made about 80 HTTP/1 connections to the apiserver at once, each with its TLS state and buffers:
/// 2 to 3 MiB that the heap keeps after the apiserver closes the idle connections 90 s later
/// (heaptrack, 2026-12-05).
const KUBE_REQUESTS_IN_FLIGHT: usize = 16;

/// How long one of those places may wait for response headers: a request stuck on a dead connection
/// must not hold a place (and, with 16 of them, all Kubernetes traffic) until the 295 s read timeout.
const KUBE_HEADERS_TIMEOUT: Duration = Duration::from_secs(30);

/// The Kubernetes clients, counting every request they make in `kco_kubernetes_requests_total` by
/// kind (`watch`, `get` — which includes lists —, `patch`, `post`, `put`, `delete`): the proof that a
/// reconcile reads from the caches, not from the apiserver. The first, for the controllers, is
/// bounded ([`KUBE_REQUESTS_IN_FLIGHT`]); the second, for leader election, is not: a Lease renewal
/// must never queue behind a burst of writes (the lease would run out while this replica still
/// writes).
async fn counted_clients(registry: &mut Registry) -> anyhow::Result<(Client, Client)> {
    let requests = Family::<context::KindLabel, Counter>::default();
    registry.register("kco_kubernetes_requests", "Requests kco made to the Kubernetes API, by kind", requests.clone());
    let count = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        let watch = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let kind = if watch { "watch".to_string() } else { req.method().as_str().to_ascii_lowercase() };
        requests.get_or_create(&context::KindLabel { kind }).inc();
        req
    });
    let config = kube::Config::infer().await?;
    let timeout = tower::timeout::TimeoutLayer::new(KUBE_HEADERS_TIMEOUT);
    let limit = tower::limit::ConcurrencyLimitLayer::new(KUBE_REQUESTS_IN_FLIGHT);
    let bounded = kube::client::ClientBuilder::try_from(config.clone())?
        .with_layer(&count)
        .with_layer(&timeout)
        .with_layer(&limit)
        .build();
    let unbounded = kube::client::ClientBuilder::try_from(config)?.with_layer(&count).build();
    Ok((bounded, unbounded))
}

/// Exit early with a hint when the CRDs are missing, instead of failing every watch forever.
/// Listed where kco watches (in namespaced mode it may list nothing cluster-wide), metadata only:
/// one malformed object must not stop the operator from starting.
async fn check_crds_installed(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    let api: Api<KeycloakClient> = scoped(client, namespace);
    if let Err(e) = api.list_metadata(&kube::api::ListParams::default().limit(1)).await {
        anyhow::bail!(
            "cannot list KeycloakClients ({e}); are the CRDs installed? Run: kco crd | kubectl apply --server-side -f -"
        );
    }
    Ok(())
}

/// Requeue delay after `failures` consecutive failures: 2s, 4s, … capped at 5 minutes, each spread
/// by up to ±20 % so that objects which failed together (Keycloak down) do not retry together.
pub fn backoff(failures: u32) -> Action {
    Action::requeue(jittered(backoff_base(failures), fastrand::f64()))
}

fn backoff_base(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(failures.clamp(1, 9)).min(300))
}

/// `d` scaled by a factor in [0.8, 1.2), picked by `r` in [0, 1).
fn jittered(d: Duration, r: f64) -> Duration {
    d.mul_f64(0.8 + 0.4 * r.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_after_takes_zero_and_any_interval() {
        assert_eq!(parse_delay("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_delay("0"), Ok(Duration::ZERO));
        assert_eq!(parse_delay("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_delay("-1s").is_err());
        assert!(parse_delay("soon").is_err());
    }

    #[tokio::test]
    async fn a_watch_counts_as_listed_only_once_its_store_holds_the_list() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let (reader, writer) = reflector::store::<ConfigMap>();
        let realm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("realm".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let events = futures::stream::iter([
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(realm)),
            Ok(watcher::Event::InitDone),
        ]);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = {
            let (reader, seen) = (reader.clone(), seen.clone());
            move || {
                let held = reader.get(&ObjectRef::new("realm").within("ns")).is_some();
                if let Ok(mut s) = seen.lock() {
                    s.push(held);
                }
            }
        };
        let n = reflect_then(events, writer, record).count().await;
        assert_eq!(n, 3);
        assert_eq!(*seen.lock().unwrap(), [true], "listed once, with the object already in the store");
    }

    #[test]
    fn durations_parse_with_the_one_grammar_of_every_kco_duration() {
        use kco_engine::schedule::parse_interval;
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("2d"), Ok(Duration::from_secs(172_800)));
        for bad in ["5 minutes", "m", "90", "0s", "-5m", "99999999999999999999d"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    fn store_of<K>(objects: Vec<serde_json::Value>) -> reflector::Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + 'static,
    {
        let (reader, mut writer) = reflector::store::<K>();
        for o in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(serde_json::from_value(o).expect("an object")));
        }
        reader
    }

    fn client(ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")}, "spec": spec})
    }

    fn names<K: kube::Resource<DynamicType = ()>>(refs: Vec<ObjectRef<K>>) -> Vec<String> {
        let mut v: Vec<String> =
            refs.into_iter().map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name)).collect();
        v.sort();
        v
    }

    fn secret(ns: &str, name: &str, owner_uid: Option<&str>) -> PartialObjectMeta<Secret> {
        let owners = owner_uid.map(
            |uid| serde_json::json!([{"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "name": "x", "uid": uid}]),
        );
        serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": owners}}))
        .expect("a Secret's metadata")
    }

    #[test]
    fn a_secret_triggers_its_owner_and_the_clients_that_take_their_secret_from_it_in_its_namespace() {
        let realm = serde_json::json!({"name": "r"});
        let clients: reflector::Store<GuardedClient> = store_of(vec![
            client("a", "owner", serde_json::json!({"clientId": "o", "realmRef": realm})),
            client(
                "a",
                "user",
                serde_json::json!({"clientId": "u", "realmRef": realm, "clientSecret": {"name": "s", "key": "k"}}),
            ),
            client(
                "b",
                "elsewhere",
                serde_json::json!({"clientId": "e", "realmRef": realm, "clientSecret": {"name": "s", "key": "k"}}),
            ),
            client("a", "other", serde_json::json!({"clientId": "x", "realmRef": realm})),
        ]);
        assert_eq!(names(clients_of_secret(&clients, &secret("a", "s", Some("uid-owner")))), ["a/owner", "a/user"]);
        assert_eq!(names(clients_of_secret(&clients, &secret("a", "unrelated", None))), Vec::<String>::new());
        assert_eq!(names(clients_of_secret(&clients, &secret("b", "s", Some("uid-owner")))), ["b/elsewhere"]);
    }

    #[test]
    fn a_realm_triggers_the_clients_whose_realm_ref_names_it() {
        let clients: reflector::Store<GuardedClient> = store_of(vec![
            client("a", "same-ns", serde_json::json!({"clientId": "1", "realmRef": {"name": "r"}})),
            client("b", "cross-ns", serde_json::json!({"clientId": "2", "realmRef": {"name": "r", "namespace": "a"}})),
            client("b", "own-ns", serde_json::json!({"clientId": "3", "realmRef": {"name": "r"}})),
            client("a", "other-realm", serde_json::json!({"clientId": "4", "realmRef": {"name": "q"}})),
        ]);
        let realm: KeycloakRealm = serde_json::from_value(serde_json::json!({"apiVersion": "kco.dev/v1",
            "kind": "KeycloakRealm", "metadata": {"name": "r", "namespace": "a"},
            "spec": {"realmName": "r", "instanceRef": {"name": "kc"}}}))
        .expect("a KeycloakRealm");
        assert_eq!(names(clients_of_realm(&clients, &realm, |_| true)), ["a/same-ns", "b/cross-ns"]);
    }

    #[test]
    fn an_instance_triggers_the_clients_of_the_realms_that_use_it() {
        let clients: reflector::Store<GuardedClient> = store_of(vec![
            client("a", "uses", serde_json::json!({"clientId": "1", "realmRef": {"name": "r"}})),
            client("b", "other-realm", serde_json::json!({"clientId": "2", "realmRef": {"name": "q"}})),
            client("c", "cross-ns", serde_json::json!({"clientId": "3", "realmRef": {"name": "p"}})),
        ]);
        let realm = |ns: &str, name: &str, instance_ref: serde_json::Value| -> serde_json::Value {
            serde_json::json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm",
                "metadata": {"name": name, "namespace": ns}, "spec": {"realmName": name, "instanceRef": instance_ref}})
        };
        let realms: reflector::Store<KeycloakRealm> = store_of(vec![
            realm("a", "r", serde_json::json!({"name": "kc"})),
            realm("b", "q", serde_json::json!({"name": "kc"})),
            realm("c", "p", serde_json::json!({"name": "kc", "namespace": "a"})),
        ]);
        let mut got = names(clients_of_instance(&realms, &clients, "a", "kc", |_| true));
        got.sort();
        assert_eq!(got, ["a/uses", "c/cross-ns"], "b's realm names its own namespace's instance kc");
    }

    #[test]
    fn a_status_change_of_an_instance_concerns_only_the_clients_that_failed() {
        let with = |name: &str, phase: &str, generation: i64, observed: i64| {
            let mut c = client("a", name, serde_json::json!({"clientId": name, "realmRef": {"name": "r"}}));
            c["metadata"]["generation"] = generation.into();
            c["status"] = serde_json::json!({"phase": phase, "observedGeneration": observed});
            c
        };
        let clients: reflector::Store<GuardedClient> = store_of(vec![
            with("ready", "Ready", 1, 1),
            with("degraded", "Degraded", 1, 1),
            with("failed", "Failed", 3, 3),
            // Its own event reconciles it: it is on its way.
            with("failed-then-edited", "Failed", 2, 1),
            with("provisioning", "Provisioning", 1, 1),
            client("a", "new", serde_json::json!({"clientId": "n", "realmRef": {"name": "r"}})),
        ]);
        let realms: reflector::Store<KeycloakRealm> = store_of(vec![serde_json::json!({"apiVersion": "kco.dev/v1",
            "kind": "KeycloakRealm", "metadata": {"name": "r", "namespace": "a"},
            "spec": {"realmName": "r", "instanceRef": {"name": "kc"}}})]);
        let got = names(clients_of_instance(&realms, &clients, "a", "kc", GuardedClient::failed_for_current_spec));
        assert_eq!(got, ["a/degraded", "a/failed"]);
    }

    #[test]
    fn a_spec_change_is_told_from_a_status_write_by_the_generation_seen() {
        let object = |uid: &str, generation: i64| -> KeycloakInstance {
            serde_json::from_value(serde_json::json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakInstance",
                "metadata": {"name": "kc", "namespace": "a", "uid": uid, "generation": generation},
                "spec": {"url": "https://kc", "adminSecretRef": {"name": "admin"}}}))
            .unwrap_or_else(|e| unreachable!("{e}"))
        };
        let seen = SpecsSeen::default();
        assert!(!seen.changed(&object("u1", 1)), "first seen (the initial list, or created)");
        assert!(!seen.changed(&object("u1", 1)), "a status write");
        assert!(seen.changed(&object("u1", 2)), "the spec changed");
        assert!(!seen.changed(&object("u1", 2)));
        assert!(seen.changed(&object("u2", 2)), "deleted and created again unseen (a relist): a new uid");
        assert!(!seen.changed(&object("u2", 2)));
        assert!(seen.changed(&deleted(object("u2", 2))), "a deletion concerns every client");
        assert!(!seen.changed(&object("u3", 1)), "forgotten once deleted: the next one is new");
    }

    #[test]
    fn only_changes_kco_did_not_write_start_a_reconcile() {
        let base: KeycloakRealm = serde_json::from_value(serde_json::json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakRealm",
            "metadata": {"name": "r", "namespace": "n", "uid": "u", "generation": 1},
            "spec": {"realmName": "r", "instanceRef": {"name": "i"}}
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let same = reconcile_worthy(&base);
        let mut status_only = base.clone();
        status_only.metadata.resource_version = Some("2".into());
        status_only.status = Some(Default::default());
        assert_eq!(reconcile_worthy(&status_only), same, "a status write is not a reason");
        for change in [
            |o: &mut KeycloakRealm| o.metadata.generation = Some(2),
            |o: &mut KeycloakRealm| o.metadata.finalizers = Some(vec!["kco.dev/cleanup".into()]),
            |o: &mut KeycloakRealm| o.metadata.annotations = Some([("kco.dev/adopt".into(), "true".into())].into()),
            |o: &mut KeycloakRealm| o.metadata.labels = Some([("team".into(), "a".into())].into()),
            |o: &mut KeycloakRealm| {
                o.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH))
            },
        ] {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(reconcile_worthy(&changed), same);
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_base(1), Duration::from_secs(2));
        assert_eq!(backoff_base(3), Duration::from_secs(8));
        assert_eq!(backoff_base(30), Duration::from_secs(300));
        assert_eq!(jittered(Duration::from_secs(10), 0.0), Duration::from_secs(8));
        assert_eq!(jittered(Duration::from_secs(10), 0.5), Duration::from_secs(10));
        assert!(jittered(Duration::from_secs(10), 0.999) < Duration::from_secs(12));
        // Two objects failing together are spread apart (with overwhelming probability over 20 draws).
        let delays: std::collections::BTreeSet<String> = (0..20).map(|_| format!("{:?}", backoff(5))).collect();
        assert!(delays.len() > 1, "no jitter: {delays:?}");
    }
}
