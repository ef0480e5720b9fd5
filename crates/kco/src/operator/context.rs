//! Shared operator state: the kube client, Keycloak admin clients per instance, metrics, events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kco_api::{KeycloakInstance, KeycloakRealm};
use kco_keycloak::RequestMetrics;
use kube::Client;
use kube::api::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Why a Keycloak counts as back: `restarted` (its uptime shows a new start) or `answered_again`
/// (it answered after refusing connections).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Read-only caches the watches keep: a reconcile looks realms, instances and Secrets up here
/// instead of asking the apiserver (objects outside the watched namespaces are still read).
pub struct Stores {
    pub realms: Store<KeycloakRealm>,
    pub instances: Store<KeycloakInstance>,
    /// Metadata only (never values) of the Secrets in the watched namespaces.
    pub secrets: Store<PartialObjectMeta<Secret>>,
}

/// How many watches fill [`Stores`].
const CACHES: usize = 3;

/// Events one Recorder publishes before kco starts a fresh one.
const EVENTS_PER_RECORDER: usize = 64;

/// How many reconciles may be writing their Secrets, status and Event at once: as many as the
/// Kubernetes client has requests in flight (`KUBE_REQUESTS_IN_FLIGHT`), one each.
const PUBLISHING: usize = 16;

/// A value handed out for at most `limit` uses, then made afresh. For kube's event Recorder: it keeps
/// every Event it published for 6 minutes, to fold a repeat into a series, and scans them all on each
/// publish; after a mass create that is one Event per object (about 3 KiB each: 15 MiB after 5,000).
/// With a fresh Recorder every 64 Events, a repeat of an older Event starts a new series instead of
/// counting on, and memory stays bounded.
pub struct Rolling<T> {
    limit: usize,
    make: Box<dyn Fn() -> T + Send + Sync>,
    current: std::sync::Mutex<(T, usize)>,
}

impl<T: Clone> Rolling<T> {
    pub fn new(limit: usize, make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        let first = make();
        Self { limit: limit.max(1), make: Box::new(make), current: std::sync::Mutex::new((first, 0)) }
    }

    /// The current value, counting one use; a fresh one once the current has had `limit` uses.
    pub fn get(&self) -> T {
        let Ok(mut current) = self.current.lock() else { return (self.make)() };
        if current.1 >= self.limit {
            *current = ((self.make)(), 0);
        }
        current.1 += 1;
        current.0.clone()
    }
}

pub struct Context {
    pub kube: Client,
    pub stores: Stores,
    /// How many of the [`Stores`] hold their initial list.
    caches: tokio::sync::watch::Sender<usize>,
    /// What kco last wrote to each managed Secret (`ns/name`): the resourceVersion the write
    /// returned and a hash of the content, so an unchanged Secret is not read again.
    pub written_secrets: std::sync::Mutex<HashMap<String, (String, u64)>>,
    /// Managed Secrets (`ns/name`) kco is writing at this moment.
    secret_writes_in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
    /// KeycloakClients (by uid) whose client this operator sent a create for without a lookup and
    /// whose status does not record it yet: their next try looks the client up first, even when the
    /// cached status lags behind (a watch that missed kco's own status write). See `client::never_created`.
    creates_sent: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Publishes Events; a fresh Recorder every [`EVENTS_PER_RECORDER`] Events (see [`Rolling`]).
    pub recorder: Rolling<Recorder>,
    pub resync: Duration,
    /// How often each KeycloakInstance is checked (`--keycloak-check`, at most the resync).
    pub keycloak_check: Duration,
    /// How long a Keycloak write may take before status says it is under way (`--progress-after`).
    pub progress_after: Duration,
    pub keycloak_metrics: RequestMetrics,
    /// Writes kco makes to the Kubernetes API, by kind (status, secret, event, finalizer).
    pub kube_writes: Family<KindLabel, Counter>,
    pub reconciles: Family<ResultLabel, Counter>,
    /// Reconciles past their Keycloak work that may write to the apiserver at once ([`PUBLISHING`]).
    /// A reconcile hands its Keycloak turn on only once it holds one of these: when the apiserver is
    /// slower than Keycloak, the gate's queue waits instead of hundreds of reconciles, each with its
    /// 20 KiB of state, waiting in front of the apiserver (1,000 creates at once peaked 24 MiB higher
    /// that way once they no longer wrote a Provisioning phase inside their turn).
    pub publishing: Arc<tokio::sync::Semaphore>,
    /// KeycloakClient reconciles finished, whatever their result (what `trim` watches for bursts).
    pub finished: Arc<std::sync::atomic::AtomicU64>,
    /// Admin API client per KeycloakInstance (`ns/name`), rebuilt when its URL or credentials change.
    pub admins: Mutex<HashMap<String, super::resolve::CachedAdmin>>,
    /// Consecutive failures per KeycloakClient, for backoff.
    pub failures: std::sync::Mutex<HashMap<String, u32>>,
    /// Every KeycloakClient this operator watches (set once the controller exists).
    pub clients: std::sync::OnceLock<Store<super::GuardedClient>>,
    /// What /readyz answers: every watch has its initial list (or, with leader election, this
    /// operator serves as a standby).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// The one namespace this operator watches; `None`: all of them.
    pub watched_namespace: Option<String>,
    /// How many reconciles may talk to one Keycloak instance at once, served fairly by namespace.
    pub gates: super::gate::Gates,
    /// One lock per Keycloak realm, for read-modify-write of realm-wide settings (client policies).
    realm_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Bumped each time a Keycloak came back (see [`Context::note_keycloak_comeback`]); the
    /// instances concerned wait in `instances_back` until the client controller takes them.
    pub keycloak_back: tokio::sync::watch::Sender<u64>,
    instances_back: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
    keycloak_comebacks: Family<CauseLabel, Counter>,
    /// Bumped at every KeycloakRealm or KeycloakInstance event the client controller maps: a client
    /// reconcile that fails while it moved may have missed the trigger meant for it (see
    /// `client::apply`).
    pub others_changed: std::sync::atomic::AtomicU64,
    /// The realms' admin events and the clients checked whole since: which resyncs may skip Keycloak.
    pub quiet: super::quiet::Quiet,
}

impl Context {
    /// Note that a create is about to be sent for the KeycloakClient `uid`; false when one was sent
    /// before and not yet recorded in its status (the caller then looks the client up instead).
    pub fn first_create(&self, uid: &str) -> bool {
        self.creates_sent.lock().is_ok_and(|mut sent| sent.insert(uid.to_string()))
    }

    /// The KeycloakClient `uid`'s client is recorded in its status (or the object is gone).
    pub fn create_settled(&self, uid: &str) {
        if let Ok(mut sent) = self.creates_sent.lock() {
            sent.remove(uid);
        }
    }

    /// Whether kco itself wrote this version (resourceVersion `rv`) of Secret `ns/name`, or is writing
    /// it right now: its watch event is then an echo of kco's own write, not a reason to reconcile.
    pub fn wrote_secret_version(&self, ns: &str, name: &str, rv: Option<&str>) -> bool {
        let key = format!("{ns}/{name}");
        if self.secret_writes_in_flight.lock().is_ok_and(|w| w.contains(&key)) {
            return true;
        }
        let Some(rv) = rv else { return false };
        self.written_secrets.lock().is_ok_and(|w| w.get(&key).is_some_and(|(r, _)| r == rv))
    }

    /// Secret `key` (`ns/name`) is being written by kco until the returned guard is dropped (also
    /// when the reconcile is cancelled mid-write, so no Secret stays marked for ever).
    pub fn secret_write(&self, key: &str) -> SecretWrite<'_> {
        if let Ok(mut w) = self.secret_writes_in_flight.lock() {
            w.insert(key.to_string());
        }
        SecretWrite { ctx: self, key: key.to_string() }
    }

    pub fn new(
        kube: Client,
        resync: Duration,
        watched_namespace: Option<String>,
        stores: Stores,
        per_instance: usize,
        registry: &mut Registry,
    ) -> Self {
        let keycloak_metrics = RequestMetrics::default();
        keycloak_metrics.register(registry);
        let kube_writes = Family::<KindLabel, Counter>::default();
        registry.register(
            "kco_kubernetes_writes",
            "Writes kco made to the Kubernetes API, by kind",
            kube_writes.clone(),
        );
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register("kco_reconciliations", "KeycloakClient reconciliations, by result", reconciles.clone());
        let keycloak_comebacks = Family::<CauseLabel, Counter>::default();
        registry.register(
            "kco_keycloak_comebacks",
            "Times a Keycloak came back, by cause: restarted (its uptime shows a start kco had not seen) or answered_again (it answers after refusing connections); its clients are then read again",
            keycloak_comebacks.clone(),
        );
        let events_client = kube.clone();
        let recorder = Rolling::new(EVENTS_PER_RECORDER, move || {
            Recorder::new(events_client.clone(), Reporter { controller: "kco".into(), instance: None })
        });
        Self {
            kube,
            stores,
            caches: tokio::sync::watch::Sender::new(0),
            written_secrets: std::sync::Mutex::new(HashMap::new()),
            secret_writes_in_flight: std::sync::Mutex::new(std::collections::HashSet::new()),
            creates_sent: std::sync::Mutex::new(std::collections::HashSet::new()),
            recorder,
            resync,
            keycloak_check: resync.min(Duration::from_secs(60)),
            progress_after: Duration::from_secs(1),
            keycloak_metrics,
            kube_writes,
            reconciles,
            finished: Arc::default(),
            publishing: Arc::new(tokio::sync::Semaphore::new(PUBLISHING)),
            admins: Mutex::new(HashMap::new()),
            failures: std::sync::Mutex::new(HashMap::new()),
            gates: super::gate::Gates::new(per_instance),
            realm_locks: std::sync::Mutex::new(HashMap::new()),
            clients: std::sync::OnceLock::new(),
            ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            watched_namespace,
            keycloak_back: tokio::sync::watch::Sender::new(0),
            instances_back: std::sync::Mutex::new(Default::default()),
            keycloak_comebacks,
            others_changed: std::sync::atomic::AtomicU64::new(0),
            quiet: super::quiet::Quiet::new(true, resync, Duration::from_secs(3600)),
        }
    }

    /// After kco talked to `admin`, the client of KeycloakInstance `instance` (namespace, name): if
    /// that Keycloak came back (it answered again after refusing connections, or its uptime shows a
    /// start kco had not seen), reconcile every KeycloakClient of that instance's realms once more. A
    /// Keycloak that was down may have lost writes it acknowledged just before (restored from a
    /// backup, or a database that had not flushed them); clients that were Ready before would
    /// otherwise wait for the next resync to be repaired. Reads only for a client that is as
    /// declared. Several comebacks before the controller gets to them make one round.
    pub fn note_keycloak_comeback(&self, admin: &kco_keycloak::KeycloakAdmin, instance: (&str, &str)) {
        if let Some(cause) = admin.take_comeback() {
            tracing::info!(
                keycloak = admin.base_url(),
                instance = format!("{}/{}", instance.0, instance.1),
                cause = cause.as_str(),
                "Keycloak is back (it restarted, or answers again after refusing connections); reconciling its clients"
            );
            self.keycloak_comebacks.get_or_create(&CauseLabel { cause: cause.as_str().to_string() }).inc();
            if let Ok(mut back) = self.instances_back.lock() {
                back.insert((instance.0.to_string(), instance.1.to_string()));
            }
            self.keycloak_back.send_modify(|n| *n += 1);
        }
    }

    /// The instances that came back since the last call (see [`Context::note_keycloak_comeback`]).
    pub fn take_instances_back(&self) -> Vec<(String, String)> {
        self.instances_back.lock().map(|mut b| std::mem::take(&mut *b).into_iter().collect()).unwrap_or_default()
    }

    /// The admin client last built for KeycloakInstance `ns/name`, whatever changed since: for
    /// deleting clients after the instance or its Secret is gone.
    pub async fn cached_admin(&self, instance: &str) -> Option<Arc<kco_keycloak::KeycloakAdmin>> {
        self.admins.lock().await.get(instance).map(super::resolve::CachedAdmin::admin)
    }

    /// One of the [`Stores`] holds its initial list.
    pub fn cache_synced(&self) {
        self.caches.send_modify(|n| *n += 1);
    }

    /// Wait until every one of the [`Stores`] holds its initial list: before that, "not in the
    /// cache" would not mean "does not exist" (and a restart would write wrong statuses).
    pub async fn caches_synced(&self) {
        let mut rx = self.caches.subscribe();
        // Err only when the sender is gone, i.e. the Context itself, which this borrows.
        let _ = rx.wait_for(|n| *n >= CACHES).await;
    }

    /// Whether objects of namespace `ns` are in the [`Stores`].
    pub fn in_scope(&self, ns: &str) -> bool {
        self.watched_namespace.as_deref().is_none_or(|w| w == ns)
    }

    pub fn realm_lock(&self, key: &str) -> Arc<Mutex<()>> {
        match self.realm_locks.lock() {
            Ok(mut m) => m.entry(key.to_string()).or_default().clone(),
            // Poisoned only after a panic, which kco's code never raises; then this caller goes
            // without exclusion rather than failing the reconcile.
            Err(_) => Arc::new(Mutex::new(())),
        }
    }

    pub fn count_write(&self, kind: &str) {
        self.kube_writes.get_or_create(&KindLabel { kind: kind.to_string() }).inc();
    }
}

/// Why a reconcile did not finish. `Blocked` needs the user to act; the rest may pass on their own.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A problem only the user can fix: the reason is a fixed CamelCase word, the message says what to do.
    #[error("{message}")]
    Blocked { reason: &'static str, message: String },
    #[error("Keycloak: {0}")]
    Keycloak(#[from] kco_keycloak::Error),
    /// The operator itself failed (a bug): reported as InternalError, never retried in a loop.
    #[error("{0}")]
    Internal(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl From<kco_engine::EngineError> for ReconcileError {
    fn from(e: kco_engine::EngineError) -> Self {
        match e {
            kco_engine::EngineError::Keycloak(e) => ReconcileError::Keycloak(e),
            kco_engine::EngineError::Spec { reason, message } => ReconcileError::Blocked { reason, message },
        }
    }
}

impl ReconcileError {
    /// How long Keycloak asked to wait before the next try, when it said so.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ReconcileError::Keycloak(e) => e.retry_after,
            _ => None,
        }
    }

    pub fn blocked(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Blocked { reason, message: message.into() }
    }

    /// A short fixed word for status.reason, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Blocked { reason, .. } => reason,
            ReconcileError::Keycloak(e) => e.kind.category(),
            ReconcileError::Kube(_) => "KubernetesError",
            ReconcileError::Internal(_) => "InternalError",
        }
    }

    /// Whether retrying without any change can help.
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Blocked { .. } | ReconcileError::Internal(_) => false,
            ReconcileError::Keycloak(e) => e.kind.is_transient(),
            // Refusals (bad request, forbidden, invalid) need a fix; the rest (conflicts, timeouts,
            // server errors) pass on their own.
            ReconcileError::Kube(kube::Error::Api(s)) => !matches!(s.code, 400 | 403 | 422),
            ReconcileError::Kube(_) => true,
        }
    }
}

/// A managed Secret write in flight; see [`Context::secret_write`].
pub struct SecretWrite<'a> {
    ctx: &'a Context,
    key: String,
}

impl Drop for SecretWrite<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.ctx.secret_writes_in_flight.lock() {
            w.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rolling;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_rolling_value_is_shared_for_limit_uses_then_made_afresh() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let rolling = Rolling::new(3, move || Arc::new(counter.fetch_add(1, Ordering::SeqCst)));
        let uses: Vec<usize> = (0..7).map(|_| *rolling.get()).collect();
        assert_eq!(uses, [0, 0, 0, 1, 1, 1, 2]);
        assert_eq!(made.load(Ordering::SeqCst), 3);
    }
}
