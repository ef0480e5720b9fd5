//! Quiet resyncs (#11): a KeycloakClient that kco checked whole and found as declared, and that
//! nothing touched since, is not read again at its resync. "Nothing touched" means: the object is
//! the version kco last checked (or wrote status to) and no trigger came for it since (its Secret,
//! realm or instance changed; its Keycloak came back), its realm's admin events show no change that
//! may concern it (see `kco_engine::drift`), no rotation is due, and its last full check is younger
//! than `--full-resync`. Without admin events on the realm, every resync reads the client whole, as
//! before. A check that wrote to Keycloak is not recorded: the next resync reads the client back.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kco_api::{KeycloakClient, Phase};
use kco_engine::drift::{Feed, Id, Mark};
use kco_keycloak::KeycloakAdmin;
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

/// What a full check that changed nothing leaves for the next resync.
#[derive(Debug, Clone)]
pub struct CleanCheck {
    /// Where the realm's admin events stood when the check started.
    pub mark: Mark,
    /// [`Quiet::ticket`] when the check started: a trigger since then voids it.
    pub ticket: u64,
    /// The Keycloak client's internal id, and its service account user when its grants were read.
    pub client: Id,
    pub user: Option<Id>,
    /// The internal ids of the other clients whose roles its service account is granted.
    pub others: Vec<Id>,
    /// Whether it has authorization settings.
    pub authorization: bool,
    /// The Secrets it writes in its own namespace as the Secret cache held them (see
    /// [`secrets_version`]): one changed or gone since is a reason to check whole.
    pub secrets: Option<u64>,
    /// The next rotation the check scheduled, if any: a resync from then on is a full one.
    pub next_rotation: Option<Timestamp>,
}

impl CleanCheck {
    fn checked(&self) -> kco_engine::drift::Checked<'_> {
        kco_engine::drift::Checked {
            client: self.client,
            others: &self.others,
            user: self.user,
            authorization: self.authorization,
        }
    }
}

#[derive(Debug)]
struct Checked {
    /// Hash of the object's uid and resourceVersion as checked (or as kco's status write left it).
    version: u64,
    at: Instant,
    check: CleanCheck,
}

type SharedSlot = Arc<tokio::sync::Mutex<Slot>>;

#[derive(Default)]
struct Slot {
    feed: Feed,
    looked: Option<Instant>,
    /// The last look failed: until one works, clients are read whole.
    failed: bool,
}

/// The admin events followed per realm, and the last clean full check per KeycloakClient.
pub struct Quiet {
    /// Whether to use admin events at all (`--admin-events`).
    pub enabled: bool,
    /// How often a client is read whole whatever the events say (`--full-resync`).
    pub full_every: Duration,
    /// How old a realm's last look at its events may be when a resync relies on it.
    pub look_every: Duration,
    /// By (Keycloak URL, realm).
    feeds: std::sync::Mutex<HashMap<(String, String), SharedSlot>>,
    checked: std::sync::Mutex<Records>,
    /// Counts triggers ([`Quiet::forget`]); see [`Quiet::ticket`].
    triggers: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Records {
    /// By [`key_id`] of `ns/name` (8 bytes a key; two keys with one hash only cost a read).
    clean: HashMap<u64, Checked>,
    /// The trigger count at each key's last trigger, until a check that started after it is recorded.
    triggered: HashMap<u64, u64>,
}

/// The Secrets `kc` writes in its own namespace (the managed one when `manageSecret`, the local
/// consumer-format ones) as the Secret cache holds them: a hash of their names and
/// resourceVersions, `None` when one is not in the cache.
pub fn secrets_version(kc: &KeycloakClient, secrets: &Store<PartialObjectMeta<Secret>>) -> Option<u64> {
    let own = kc.namespace().unwrap_or_default();
    let managed = kc.spec.manage_secret.then(|| kc.secret_name());
    let extra = kc.spec.additional_secrets.iter().flatten();
    let local = extra.filter(|e| e.namespace.as_deref().is_none_or(|ns| ns == own)).map(|e| e.name.clone());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for name in managed.into_iter().chain(local) {
        let rv = secrets.get(&ObjectRef::new(&name).within(&own))?.resource_version();
        (name, rv).hash(&mut h);
    }
    Some(h.finish())
}

/// The key of `ns/name` in [`Records`].
fn key_id(key: &str) -> u64 {
    kco_engine::drift::id(key)
}

fn version_of(kc: &KeycloakClient, resource_version: Option<&str>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (kc.uid(), resource_version).hash(&mut h);
    h.finish()
}

impl Quiet {
    /// Events looked at every tenth of the resync (1 s to 30 s), every client read whole every
    /// `full_every` (at least each resync).
    pub fn new(enabled: bool, resync: Duration, full_every: Duration) -> Self {
        Self {
            enabled,
            full_every: full_every.max(resync),
            look_every: (resync / 10).clamp(Duration::from_secs(1), Duration::from_secs(30)),
            feeds: std::sync::Mutex::new(HashMap::new()),
            checked: std::sync::Mutex::new(Records::default()),
            triggers: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn slot(&self, admin: &KeycloakAdmin, realm: &str) -> Option<SharedSlot> {
        let mut feeds = self.feeds.lock().ok()?;
        Some(feeds.entry((admin.base_url().to_string(), realm.to_string())).or_default().clone())
    }

    /// The realm's feed, looked at again when its last look is older than `look_every`; `None`
    /// when events are not used, or the look failed (the caller then reads the client whole).
    async fn looked_at(&self, admin: &KeycloakAdmin, realm: &str) -> Option<tokio::sync::OwnedMutexGuard<Slot>> {
        if !self.enabled {
            return None;
        }
        let mut slot = self.slot(admin, realm)?.lock_owned().await;
        if slot.looked.is_none_or(|t| t.elapsed() >= self.look_every) {
            // Events must be kept longer than a quiet client may go unread, with room for a look.
            let keep = i64::try_from(self.full_every.as_secs()).unwrap_or(i64::MAX).saturating_add(600);
            let looked = kco_engine::drift::refresh(admin, realm, &mut slot.feed, keep).await;
            // Tried now, whatever came of it: a failing look is tried again after `look_every`, not at
            // every reconcile (a failed look loses nothing: the next starts from the same place).
            slot.looked = Some(Instant::now());
            if let Err(e) = looked {
                slot.failed = true;
                tracing::debug!(realm, error = %e, "could not read the realm's admin events; reading clients whole");
                return None;
            }
            slot.failed = false;
        }
        (!slot.failed).then_some(slot)
    }

    /// Where realm `realm`'s events stand, for a full check about to start; `None` when they are
    /// not used (off on the realm, or unreadable).
    pub async fn mark(&self, admin: &KeycloakAdmin, realm: &str) -> Option<Mark> {
        let mark = self.looked_at(admin, realm).await?.feed.mark();
        tracing::debug!(realm, followed = mark.is_some(), "full check starts");
        mark
    }

    /// Whether this resync of `kc` (key `ns/name`) may skip Keycloak: see the module comment.
    /// Returns the next rotation to requeue for.
    pub async fn is_quiet(
        &self,
        key: &str,
        kc: &KeycloakClient,
        secrets: &Store<PartialObjectMeta<Secret>>,
        admin: &KeycloakAdmin,
        realm: &str,
        now: Timestamp,
    ) -> Option<Option<Timestamp>> {
        if !self.enabled {
            return None;
        }
        let ready = kc.status.as_ref().is_some_and(|s| {
            s.phase == Some(Phase::Ready)
                && s.observed_generation == kc.metadata.generation
                && s.realm.as_deref() == Some(realm)
        });
        if !ready {
            return None;
        }
        let check = {
            let checked = self.checked.lock().ok()?;
            let Some(c) = checked.clean.get(&key_id(key)) else {
                tracing::debug!(object = key, "full check: none recorded since the last change");
                return None;
            };
            let fresh = c.version == version_of(kc, kc.metadata.resource_version.as_deref())
                && c.at.elapsed() < self.full_every
                && c.check.next_rotation.is_none_or(|t| t > now);
            if !fresh {
                tracing::debug!(
                    object = key,
                    "full check: the object changed, a rotation is due or --full-resync is up"
                );
                return None;
            }
            c.check.clone()
        };
        // Its Secrets as the check left them (the cache: no request): one edited or deleted since,
        // even when its event passed by (kco writing it at that moment), is put back.
        if check.secrets.is_none() || secrets_version(kc, secrets) != check.secrets {
            tracing::debug!(object = key, "full check: one of its Secrets changed");
            return None;
        }
        let slot = self.looked_at(admin, realm).await?;
        let quiet = slot.feed.quiet_since(check.mark, &check.checked());
        tracing::debug!(object = key, quiet, "resync: admin events since the last full check");
        quiet.then_some(check.next_rotation)
    }

    /// Taken when a full check starts, and given back with its [`CleanCheck`]: a trigger for the
    /// object after this (its Secret deleted while the check ran, say) keeps the check from being
    /// recorded, so the reconcile the trigger queued checks whole.
    pub fn ticket(&self) -> u64 {
        self.triggers.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A full check of `kc` found everything as declared and wrote nothing to Keycloak; kco's status
    /// write (if any) left the object at `resource_version` (`None`: not written).
    pub fn record(&self, key: &str, kc: &KeycloakClient, resource_version: Option<&str>, check: CleanCheck) {
        let version = version_of(kc, resource_version.or(kc.metadata.resource_version.as_deref()));
        if let Ok(mut checked) = self.checked.lock() {
            let key = key_id(key);
            if checked.triggered.get(&key).is_some_and(|t| *t > check.ticket) {
                return;
            }
            checked.triggered.remove(&key);
            checked.clean.insert(key, Checked { version, at: Instant::now(), check });
        }
    }

    /// The next reconcile of `key` (`ns/name`) reads the client whole: something it depends on
    /// changed, or it failed.
    pub fn forget(&self, key: &str) {
        self.forget_keys(std::iter::once(key.to_string()));
    }

    /// [`Quiet::forget`] for every object `refs` names.
    pub fn forget_all<K: kube::Resource>(&self, refs: &[kube::runtime::reflector::ObjectRef<K>]) {
        if !refs.is_empty() {
            self.forget_keys(refs.iter().map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name)));
        }
    }

    fn forget_keys(&self, keys: impl Iterator<Item = String>) {
        let n = self.triggers.fetch_add(1, std::sync::atomic::Ordering::SeqCst).wrapping_add(1);
        if let Ok(mut checked) = self.checked.lock() {
            for key in keys {
                let key = key_id(&key);
                checked.clean.remove(&key);
                checked.triggered.insert(key, n);
            }
        }
    }

    /// The object `key` is gone: nothing of it is kept.
    pub fn gone(&self, key: &str) {
        if let Ok(mut checked) = self.checked.lock() {
            checked.clean.remove(&key_id(key));
            checked.triggered.remove(&key_id(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(rv: &str) -> KeycloakClient {
        let mut kc: KeycloakClient = serde_json::from_value(serde_json::json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
            "metadata": {"name": "svc", "namespace": "ns", "uid": "u1", "resourceVersion": rv},
            "spec": {"clientId": "svc", "realmRef": {"name": "realm"}}
        }))
        .unwrap();
        kc.metadata.resource_version = Some(rv.to_string());
        kc
    }

    fn check(ticket: u64) -> CleanCheck {
        let mut feed = Feed::default();
        feed.start(Instant::now());
        CleanCheck {
            mark: feed.mark().unwrap(),
            ticket,
            client: 1,
            user: None,
            others: vec![],
            authorization: false,
            secrets: Some(0),
            next_rotation: None,
        }
    }

    fn recorded(quiet: &Quiet, key: &str) -> bool {
        quiet.checked.lock().is_ok_and(|c| c.clean.contains_key(&key_id(key)))
    }

    #[test]
    fn a_trigger_during_a_check_keeps_it_from_being_recorded() {
        let quiet = Quiet::new(true, Duration::from_secs(60), Duration::from_secs(3600));
        let kc = client("1");
        let ticket = quiet.ticket();
        quiet.forget("ns/svc"); // its Secret deleted while the check ran
        quiet.record("ns/svc", &kc, None, check(ticket));
        assert!(!recorded(&quiet, "ns/svc"), "the reconcile the trigger queued must check whole");
        quiet.forget("ns/other");
        let ticket = quiet.ticket();
        quiet.record("ns/svc", &kc, None, check(ticket));
        assert!(recorded(&quiet, "ns/svc"), "a check that started after the trigger counts");
        quiet.forget_all(&[kube::runtime::reflector::ObjectRef::<KeycloakClient>::new("svc").within("ns")]);
        assert!(!recorded(&quiet, "ns/svc"), "forget_all names objects as ns/name");
        quiet.gone("ns/svc");
        assert!(
            quiet.checked.lock().is_ok_and(|c| !c.triggered.contains_key(&key_id("ns/svc"))),
            "nothing kept of a gone object"
        );
    }

    #[test]
    fn the_version_checked_is_the_one_kco_wrote_or_read() {
        let quiet = Quiet::new(true, Duration::from_secs(60), Duration::from_secs(3600));
        let kc = client("1");
        quiet.record("ns/svc", &kc, Some("2"), check(quiet.ticket()));
        let version = quiet.checked.lock().ok().and_then(|c| c.clean.get(&key_id("ns/svc")).map(|c| c.version));
        assert_eq!(version, Some(version_of(&client("2"), Some("2"))), "the status write's version");
        quiet.record("ns/svc", &kc, None, check(quiet.ticket()));
        let version = quiet.checked.lock().ok().and_then(|c| c.clean.get(&key_id("ns/svc")).map(|c| c.version));
        assert_eq!(version, Some(version_of(&kc, Some("1"))), "not written: the version read");
        assert_ne!(version_of(&kc, Some("1")), version_of(&kc, Some("3")));
    }

    #[test]
    fn full_every_is_at_least_the_resync_and_looks_come_every_tenth_of_it_within_1s_to_30s() {
        let q = Quiet::new(true, Duration::from_secs(300), Duration::from_secs(60));
        assert_eq!((q.full_every, q.look_every), (Duration::from_secs(300), Duration::from_secs(30)));
        let q = Quiet::new(true, Duration::from_secs(2), Duration::from_secs(3600));
        assert_eq!(q.look_every, Duration::from_secs(1));
    }
}
