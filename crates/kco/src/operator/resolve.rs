//! The read step's Kubernetes half: a KeycloakClient's realm object, the grant check, and the
//! KeycloakInstance's admin client (built once per instance, rebuilt when its settings change).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kco_api::{KeycloakClient, KeycloakInstance, KeycloakRealm};
use kco_keycloak::{AdminCredentials, KeycloakAdmin, KeycloakAdminConfig};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use secrecy::SecretString;

use super::guarded::GuardedClient;
use super::{Context, ReconcileError};

/// The realm object a client points at; `None` when it does not exist. From the cache; read from
/// the apiserver only when it lives outside the watched namespaces.
pub async fn realm_of(ctx: &Context, kc: &KeycloakClient) -> Result<Option<KeycloakRealm>, ReconcileError> {
    let ns = kc.namespace().unwrap_or_default();
    let realm_ns = kc.spec.realm_ref.namespace_or(&ns);
    cached_or_get(ctx, &ctx.stores.realms, realm_ns, &kc.spec.realm_ref.name).await
}

/// Object `ns/name` from `store` when `ns` is watched (after the caches' initial lists), else
/// read from the apiserver.
async fn cached_or_get<K>(ctx: &Context, store: &Store<K>, ns: &str, name: &str) -> Result<Option<K>, ReconcileError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if ctx.in_scope(ns) {
        ctx.caches_synced().await;
        return Ok(store.get(&ObjectRef::new(name).within(ns)).map(|o| (*o).clone()));
    }
    Ok(Api::<K>::namespaced(ctx.kube.clone(), ns).get_opt(name).await?)
}

/// The gate (instance key: `kco_keycloak::base_url_of` its URL) a client's reconcile waits at, from the caches
/// alone and without waiting for them: `None` when the object does not parse, or its realm or
/// instance is not cached (yet, or outside the watched namespaces); `converge` and `cleanup` then
/// wait themselves. Also `None` for an object that is refused before any Keycloak call (invalid spec,
/// namespace not granted, more than the realm allows): it takes no slot, so invalid objects at volume
/// do not slow valid ones.
pub fn gate_of(ctx: &Context, guarded: &GuardedClient) -> Option<String> {
    gate_key(&ctx.stores.realms, &ctx.stores.instances, guarded)
}

fn gate_key(
    realms: &Store<KeycloakRealm>,
    instances: &Store<KeycloakInstance>,
    guarded: &GuardedClient,
) -> Option<String> {
    let realm_ref = guarded.realm_ref()?;
    let ns = guarded.namespace().unwrap_or_default();
    let realm_ns = realm_ref.namespace_or(&ns);
    let realm = realms.get(&ObjectRef::new(&realm_ref.name).within(realm_ns))?;
    let deleting = kube::Resource::meta(guarded).deletion_timestamp.is_some();
    // Without kco's finalizer the reconcile only adds it (a Kubernetes write): no Keycloak call.
    if !deleting && !guarded.finalizers().iter().any(|f| f == kco_api::CLIENT_FINALIZER) {
        return None;
    }
    let spec = guarded.spec()?;
    let refused = kco_engine::converge::check_spec(&spec).is_err()
        || !realm.spec.grants(&ns)
        || !kco_engine::guard::check_against_realm(&spec, &realm.spec).is_empty();
    if refused && !deleting {
        return None;
    }
    let realm_ns = realm.namespace().unwrap_or_default();
    let ins_ns = realm.spec.instance_ref.namespace_or(&realm_ns);
    let instance = instances.get(&ObjectRef::new(&realm.spec.instance_ref.name).within(ins_ns))?;
    kco_keycloak::base_url_of(&instance.spec.url).ok()
}

/// Whether the client's namespace may use `realm`, with the sentence status reports either way.
pub fn grant(realm: &KeycloakRealm, client_ns: &str) -> (bool, String) {
    let realm_ref = format!("{}/{}", realm.namespace().unwrap_or_default(), realm.name_any());
    if realm.spec.grants(client_ns) {
        (true, format!("namespace {client_ns} is granted by KeycloakRealm {realm_ref}"))
    } else {
        (
            false,
            format!(
                "namespace {client_ns} is not in spec.clientAuthorizationGrants of KeycloakRealm {realm_ref}; \
                 add it there to allow this client"
            ),
        )
    }
}

/// The instance behind `realm` and its admin client; `None` when the instance object does not exist.
pub async fn admin_of(
    ctx: &Context,
    realm: &KeycloakRealm,
) -> Result<Option<(KeycloakInstance, Arc<KeycloakAdmin>)>, ReconcileError> {
    let realm_ns = realm.namespace().unwrap_or_default();
    let ins_ns = realm.spec.instance_ref.namespace_or(&realm_ns).to_string();
    let ins_name = &realm.spec.instance_ref.name;
    let found = cached_or_get(ctx, &ctx.stores.instances, &ins_ns, ins_name).await?;
    let Some(instance) = found else {
        return Ok(None);
    };
    let admin = admin_for(ctx, &instance).await?;
    Ok(Some((instance, admin)))
}

/// The instance behind `realm` and its admin client, refusing a missing instance and a realm the
/// instance does not grant (see `guard::check_instance_grant`). No Keycloak call is made.
pub async fn instance_for_realm(
    ctx: &Context,
    realm: &KeycloakRealm,
) -> Result<(KeycloakInstance, Arc<KeycloakAdmin>), ReconcileError> {
    let realm_ns = realm.namespace().unwrap_or_default();
    let Some((instance, admin)) = admin_of(ctx, realm).await? else {
        return Err(ReconcileError::blocked(
            "InstanceNotFound",
            format!(
                "KeycloakRealm {realm_ns}/{}: spec.instanceRef names KeycloakInstance {}/{}, which does not exist",
                realm.name_any(),
                realm.spec.instance_ref.namespace_or(&realm_ns),
                realm.spec.instance_ref.name
            ),
        ));
    };
    kco_engine::guard::check_instance_grant(
        &realm_ns,
        &realm.spec.realm_name,
        &instance.namespace().unwrap_or_default(),
        &instance.name_any(),
        &instance.spec,
    )
    .map_err(|why| ReconcileError::blocked("NotAuthorized", why))?;
    Ok((instance, admin))
}

/// The admin client of `instance`, from the cache unless its URL, credentials or CA changed.
/// Whether they changed is known without a read when the instance's generation and the
/// resourceVersions of its admin Secret and CA Secret (from the Secret cache) are as when the
/// client was built; otherwise (first use, a change, a CA in a ConfigMap, a Secret outside the
/// watched namespaces) the Secret and CA are read and the client is rebuilt only if they differ.
pub async fn admin_for(ctx: &Context, instance: &KeycloakInstance) -> Result<Arc<KeycloakAdmin>, ReconcileError> {
    let ins_ns = instance.namespace().unwrap_or_default();
    let key = format!("{ins_ns}/{}", instance.name_any());
    let version = sources_version(instance, ctx.in_scope(&ins_ns), |name| {
        let meta = ctx.stores.secrets.get(&ObjectRef::new(name).within(&ins_ns))?;
        meta.metadata.resource_version.clone()
    });
    if let Some(version) = &version
        && let Some(entry) = ctx.admins.lock().await.get(&key)
        && entry.version.as_ref() == Some(version)
    {
        return Ok(entry.admin.clone());
    }

    let (credentials, data) = admin_credentials(ctx, instance, &ins_ns, &key).await?;
    let ca_pem = ca_bundle(ctx, instance, &ins_ns).await?;

    let mut h = DefaultHasher::new();
    (&instance.spec.url, &instance.spec.admin_realm, &data, &ca_pem).hash(&mut h);
    let fingerprint = h.finish();
    let mut cache = ctx.admins.lock().await;
    if let Some(entry) = cache.get_mut(&key)
        && entry.fingerprint == fingerprint
    {
        entry.version = version;
        return Ok(entry.admin.clone());
    }
    let admin = Arc::new(
        KeycloakAdmin::new(
            KeycloakAdminConfig {
                url: instance.spec.url.clone(),
                admin_realm: instance.spec.admin_realm.clone(),
                credentials,
                ca_pem,
                timeout: Duration::from_secs(30),
            },
            ctx.keycloak_metrics.clone(),
        )
        .map_err(|e| ReconcileError::blocked("InstanceInvalid", format!("KeycloakInstance {key}: {e}")))?,
    );
    if let Some(earlier) = cache.get(&key) {
        admin.inherit(&earlier.admin);
    }
    cache.insert(key, CachedAdmin { version, fingerprint, admin: admin.clone() });
    Ok(admin)
}

/// The admin credentials in the instance's admin Secret, and that Secret's values (for the
/// fingerprint).
async fn admin_credentials(
    ctx: &Context,
    instance: &KeycloakInstance,
    ins_ns: &str,
    key: &str,
) -> Result<(AdminCredentials, BTreeMap<String, String>), ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), ins_ns);
    let secret_name = &instance.spec.admin_secret_ref.name;
    let Some(secret) = secrets.get_opt(secret_name).await? else {
        return Err(ReconcileError::blocked(
            "AdminSecretMissing",
            format!(
                "KeycloakInstance {key}: spec.adminSecretRef names Secret {ins_ns}/{secret_name}, which does not exist; create it with keys username + password or client-id + client-secret"
            ),
        ));
    };
    let data = secret_strings(&secret);
    let credentials = match (
        data.get("username"),
        data.get("password"),
        data.get("client-id"),
        data.get("client-secret"),
    ) {
        (_, _, Some(id), Some(s)) => {
            AdminCredentials::ClientCredentials { client_id: id.clone(), client_secret: SecretString::from(s.clone()) }
        }
        (Some(u), Some(p), _, _) => {
            AdminCredentials::Password { username: u.clone(), password: SecretString::from(p.clone()) }
        }
        _ => {
            return Err(ReconcileError::blocked(
                "AdminSecretInvalid",
                format!(
                    "KeycloakInstance {key}: Secret {ins_ns}/{secret_name} needs keys username + password, or client-id + client-secret"
                ),
            ));
        }
    };
    Ok((credentials, data))
}

/// An admin client and what it was built from.
pub struct CachedAdmin {
    /// The sources' versions when known from the caches (see [`sources_version`]).
    version: Option<String>,
    /// Hash of URL, admin realm, credentials and CA.
    fingerprint: u64,
    admin: Arc<KeycloakAdmin>,
}

impl CachedAdmin {
    pub fn admin(&self) -> Arc<KeycloakAdmin> {
        self.admin.clone()
    }
}

/// `generation/adminSecretRV/caSecretRV` of an instance's sources, when every one is known: the
/// instance's namespace is watched (`in_scope`) and `rv` (the Secret cache) has each Secret.
fn sources_version(instance: &KeycloakInstance, in_scope: bool, rv: impl Fn(&str) -> Option<String>) -> Option<String> {
    if !in_scope {
        return None;
    }
    let ca = match &instance.spec.ca_bundle {
        None => String::new(),
        Some(ca) if ca.config_map_key_ref.is_some() => return None,
        Some(ca) => match &ca.secret_key_ref {
            Some(r) => rv(&r.name)?,
            None => String::new(),
        },
    };
    Some(format!("{}/{}/{ca}", instance.metadata.generation?, rv(&instance.spec.admin_secret_ref.name)?))
}

async fn ca_bundle(ctx: &Context, instance: &KeycloakInstance, ns: &str) -> Result<Option<Vec<u8>>, ReconcileError> {
    let Some(ca) = &instance.spec.ca_bundle else {
        return Ok(None);
    };
    let missing = |what: String| {
        ReconcileError::blocked(
            "CaBundleMissing",
            format!("KeycloakInstance {ns}/{}: spec.caBundle: {what}", instance.name_any()),
        )
    };
    if let Some(r) = &ca.config_map_key_ref {
        let api: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), ns);
        let cm = api.get_opt(&r.name).await?.ok_or_else(|| missing(format!("ConfigMap {ns}/{} not found", r.name)))?;
        let v = cm
            .data
            .and_then(|d| d.get(&r.key).cloned())
            .ok_or_else(|| missing(format!("ConfigMap {ns}/{} has no key {}", r.name, r.key)))?;
        return Ok(Some(v.into_bytes()));
    }
    if let Some(r) = &ca.secret_key_ref {
        let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), ns);
        let s = api.get_opt(&r.name).await?.ok_or_else(|| missing(format!("Secret {ns}/{} not found", r.name)))?;
        let v = s
            .data
            .and_then(|d| d.get(&r.key).map(|b| b.0.clone()))
            .ok_or_else(|| missing(format!("Secret {ns}/{} has no key {}", r.name, r.key)))?;
        return Ok(Some(v));
    }
    Ok(None)
}

/// A Secret's values as strings (data, then stringData).
pub fn secret_strings(secret: &Secret) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        if let Ok(s) = String::from_utf8(v.0.clone()) {
            out.insert(k.clone(), s);
        }
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Make sure realm `name` exists in Keycloak, creating it when `realm` allows. Clients of a new realm
/// and its KeycloakRealm arrive together: under the realm's lock one creates it, the others find it.
pub async fn ensure_realm(ctx: &Context, admin: &KeycloakAdmin, realm: &KeycloakRealm) -> Result<(), ReconcileError> {
    let name = &realm.spec.realm_name;
    let lock = ctx.realm_lock(&format!("{}/{name}", admin.base_url()));
    let _held = lock.lock().await;
    if admin.realm_exists(name).await? {
        return Ok(());
    }
    if !realm.spec.create_realm {
        return Err(ReconcileError::blocked(
            "RealmMissingInKeycloak",
            format!(
                "realm {name} does not exist in Keycloak and the KeycloakRealm has createRealm: false; create the realm or set createRealm: true"
            ),
        ));
    }
    match admin.create_realm(name).await {
        Err(e) if e.kind == kco_keycloak::ErrorKind::Conflict => Ok(()),
        Err(e) => Err(e.into()),
        Ok(()) => {
            tracing::info!(realm = %name, "created realm in Keycloak");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance(spec: serde_json::Value) -> KeycloakInstance {
        serde_json::from_value(json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakInstance",
            "metadata": {"name": "kc", "namespace": "ops", "generation": 3}, "spec": spec
        }))
        .unwrap()
    }

    fn rvs(name: &str) -> Option<String> {
        match name {
            "admin" => Some("10".into()),
            "ca" => Some("11".into()),
            _ => None,
        }
    }

    fn store_of<K>(objects: Vec<serde_json::Value>) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + 'static,
    {
        let (reader, mut writer) = kube::runtime::reflector::store::<K>();
        for o in objects {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(serde_json::from_value(o).unwrap()));
        }
        reader
    }

    #[test]
    fn the_gate_comes_from_the_caches_and_refused_objects_take_none() {
        let realms: Store<KeycloakRealm> = store_of(vec![json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "realm", "namespace": "team-a"},
            "spec": {"realmName": "apps", "instanceRef": {"name": "kc", "namespace": "ops"}, "clientAuthorizationGrants": ["team-a", "team-c"]}
        })]);
        let instances: Store<KeycloakInstance> = store_of(vec![
            serde_json::to_value(instance(json!({"url": "HTTPS://KC.example/", "adminSecretRef": {"name": "admin"}})))
                .unwrap(),
        ]);
        let client = |ns: &str, spec: serde_json::Value, deleting: bool| -> GuardedClient {
            let mut meta = json!({"name": "svc", "namespace": ns, "finalizers": [kco_api::CLIENT_FINALIZER]});
            if deleting {
                meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            serde_json::from_value(
                json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "metadata": meta, "spec": spec}),
            )
            .unwrap()
        };
        let valid = json!({"clientId": "svc", "realmRef": {"name": "realm"}});
        let key = |c: &GuardedClient| gate_key(&realms, &instances, c);
        assert_eq!(key(&client("team-a", valid.clone(), false)).as_deref(), Some("https://kc.example"));
        // Its first reconcile only adds kco's finalizer: no slot.
        let mut fresh = client("team-a", valid.clone(), false);
        kube::Resource::meta_mut(&mut fresh).finalizers = None;
        assert_eq!(key(&fresh), None);
        // Not cached (the realm is in another namespace than the client looks): converge waits itself.
        assert_eq!(key(&client("team-b", valid.clone(), false)), None);
        // Refused before any Keycloak call: an invalid spec takes no slot; deleting it still does.
        let invalid = json!({"clientId": "svc", "realmRef": {"name": "realm"}, "redirectUris": ["not a uri"]});
        assert_eq!(key(&client("team-a", invalid.clone(), false)), None);
        assert_eq!(key(&client("team-a", invalid, true)).as_deref(), Some("https://kc.example"));
        // A namespace the realm does not grant is refused too.
        let other_ns = json!({"clientId": "svc", "realmRef": {"name": "realm", "namespace": "team-a"}});
        assert_eq!(key(&client("team-c", other_ns.clone(), false)).as_deref(), Some("https://kc.example"));
        assert_eq!(key(&client("team-d", other_ns, false)), None);
    }

    #[test]
    fn sources_version_is_known_only_when_every_source_is_cached() {
        let plain = instance(json!({"url": "https://kc", "adminSecretRef": {"name": "admin"}}));
        assert_eq!(sources_version(&plain, true, rvs).as_deref(), Some("3/10/"));
        // Outside the watched namespaces nothing is cached: read.
        assert_eq!(sources_version(&plain, false, rvs), None);
        // A Secret not (yet) in the cache: read.
        let missing = instance(json!({"url": "https://kc", "adminSecretRef": {"name": "other"}}));
        assert_eq!(sources_version(&missing, true, rvs), None);
        let ca = instance(json!({"url": "https://kc", "adminSecretRef": {"name": "admin"},
            "caBundle": {"secretKeyRef": {"name": "ca", "key": "ca.crt"}}}));
        assert_eq!(sources_version(&ca, true, rvs).as_deref(), Some("3/10/11"));
        // ConfigMaps are not watched: a CA from one is read every time.
        let cm = instance(json!({"url": "https://kc", "adminSecretRef": {"name": "admin"},
            "caBundle": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}}));
        assert_eq!(sources_version(&cm, true, rvs), None);
    }

    #[test]
    fn a_rotated_admin_secret_changes_the_version() {
        let plain = instance(json!({"url": "https://kc", "adminSecretRef": {"name": "admin"}}));
        let before = sources_version(&plain, true, rvs);
        let after = sources_version(&plain, true, |n| (n == "admin").then(|| "12".to_string()));
        assert_ne!(before, after);
    }

    #[test]
    fn grant_says_which_field_to_change() {
        let realm: KeycloakRealm = serde_json::from_value(json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "metadata": {"name": "r", "namespace": "ops"},
            "spec": {"realmName": "apps", "instanceRef": {"name": "kc"}, "clientAuthorizationGrants": ["team-a"]}
        }))
        .unwrap();
        assert!(grant(&realm, "team-a").0);
        let (ok, why) = grant(&realm, "team-b");
        assert!(!ok);
        assert!(why.contains("spec.clientAuthorizationGrants of KeycloakRealm ops/r"), "{why}");
    }

    #[test]
    fn secret_strings_prefer_string_data_and_skip_binary() {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "data": {"username": "YWRtaW4=", "blob": "/w==", "password": "b2xk"},
            "stringData": {"password": "new"}
        }))
        .unwrap();
        let s = secret_strings(&secret);
        assert_eq!(s.get("username").map(String::as_str), Some("admin"));
        assert_eq!(s.get("password").map(String::as_str), Some("new"));
        assert!(!s.contains_key("blob"), "not UTF-8");
    }
}
