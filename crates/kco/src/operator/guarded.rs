//! A KeycloakClient read through a guard: the watch never fails on one object that does not match
//! the Rust types (stored under an older schema, say), so one bad object cannot stall the others.
//! The object's metadata is always kept; its typed form or the reason it has none travels with it.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use kco_api::{Endpoints, KeycloakClient, KeycloakClientSpec, KeycloakClientStatus};
use kube::Resource;
use kube::api::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A KeycloakClient as the watch delivers it: parsed, or (malformed) its metadata and where it broke.
/// One copy of each object: no raw JSON beside the parsed one, and no managedFields or
/// last-applied annotation (see [`compact`]).
#[derive(Clone, Debug)]
pub struct GuardedClient {
    metadata: ObjectMeta,
    /// The typed spec and status (the metadata above is the one copy), or where and why the object
    /// failed to parse (e.g. `spec.settings: invalid type …`).
    pub parsed: Result<Parsed, String>,
}

/// A KeycloakClient's spec and status as cached: packed into one compact JSON string, beside the
/// few fields the watches' mappers and the gate read for every object (its realmRef, the Secret
/// named by `spec.clientSecret`, the grace rule, and the status's phase, generation and realm). The
/// typed spec and status cost about 3 KiB of heap per object in a hundred small allocations; packed,
/// about half, in one (#11: memory at 5,000 objects). A reconcile unpacks its object once
/// ([`GuardedClient::client`]), a few microseconds beside its Keycloak requests. `status.endpoints`
/// is packed as its issuer alone when the other five are the issuer's standard paths (as kco
/// writes them); unpacking gives them back.
#[derive(Clone, Debug)]
pub struct Parsed {
    realm_ref: kco_api::ObjectRef,
    client_secret: Option<String>,
    grace_rule: Option<String>,
    phase: Option<kco_api::Phase>,
    observed_generation: Option<i64>,
    realm: Option<String>,
    /// `[spec, status]`, serialized from the typed parse (so it unpacks again).
    packed: Box<str>,
    endpoints_from_issuer: bool,
}

impl Parsed {
    /// The Keycloak realm name the status records.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    /// The grace rule its `spec.secretRotation` asks the realm for, if any.
    pub fn grace_rule(&self) -> Option<&str> {
        self.grace_rule.as_deref()
    }

    fn pack(kc: KeycloakClient) -> Result<Self, String> {
        let mut status = kc.status;
        let mut endpoints_from_issuer = false;
        if let Some(e) = status.as_mut().and_then(|s| s.endpoints.as_mut())
            && *e == Endpoints::for_issuer(e.issuer.clone())
        {
            *e = Endpoints { issuer: std::mem::take(&mut e.issuer), ..Endpoints::default() };
            endpoints_from_issuer = true;
        }
        let spec = kc.spec;
        let packed = lean_spec(&spec)
            .and_then(|lean| serde_json::to_string(&(lean, &status)))
            .map_err(|e| format!("cannot cache the object: {e}"))?;
        Ok(Self {
            grace_rule: spec.secret_rotation.as_ref().and_then(kco_engine::desired::grace_rule),
            client_secret: spec.client_secret.map(|r| r.name),
            realm_ref: spec.realm_ref,
            phase: status.as_ref().and_then(|s| s.phase),
            observed_generation: status.as_ref().and_then(|s| s.observed_generation),
            realm: status.and_then(|s| s.realm),
            packed: packed.into_boxed_str(),
            endpoints_from_issuer,
        })
    }

    fn unpack(&self) -> Result<(KeycloakClientSpec, Option<KeycloakClientStatus>), String> {
        let (spec, mut status): (KeycloakClientSpec, Option<KeycloakClientStatus>) =
            serde_json::from_str(&self.packed).map_err(|e| format!("cannot read the cached object back: {e}"))?;
        if self.endpoints_from_issuer
            && let Some(e) = status.as_mut().and_then(|s| s.endpoints.as_mut())
        {
            *e = Endpoints::for_issuer(std::mem::take(&mut e.issuer));
        }
        Ok((spec, status))
    }
}

/// The spec's fields at their default values, as JSON: a spec of only its required fields, parsed
/// and serialized again.
fn spec_defaults() -> Option<&'static Value> {
    static DEFAULTS: std::sync::OnceLock<Option<Value>> = std::sync::OnceLock::new();
    DEFAULTS
        .get_or_init(|| {
            let minimal = serde_json::json!({"clientId": "", "realmRef": {"name": ""}});
            let spec: KeycloakClientSpec = serde_json::from_value(minimal).ok()?;
            serde_json::to_value(spec).ok()
        })
        .as_ref()
}

/// Leave out of `value` every field equal to its default in `defaults`, at any depth of objects
/// (never `clientId` and `realmRef`, which a spec must carry).
fn strip_defaults(value: &mut Value, defaults: &Value, top: bool) {
    let (Value::Object(map), Value::Object(defaults)) = (value, defaults) else { return };
    map.retain(|k, v| (top && matches!(k.as_str(), "clientId" | "realmRef")) || defaults.get(k) != Some(v));
    for (k, v) in map.iter_mut() {
        if let Some(d) = defaults.get(k) {
            strip_defaults(v, d, false);
        }
    }
}

/// `spec` as JSON without the fields that hold their default value (parsing fills them in again):
/// about half of a typical spec's packed size. Used only when it parses back to the same spec;
/// otherwise the whole spec.
fn lean_spec(spec: &KeycloakClientSpec) -> Result<Value, serde_json::Error> {
    let full = serde_json::to_value(spec)?;
    let Some(defaults) = spec_defaults() else { return Ok(full) };
    let mut lean = full.clone();
    strip_defaults(&mut lean, defaults, true);
    let back = serde_json::from_value::<KeycloakClientSpec>(lean.clone()).and_then(serde_json::to_value);
    Ok(if back.is_ok_and(|b| b == full) { lean } else { full })
}

impl GuardedClient {
    /// The typed spec (unpacked: a reconcile's, not a mapper's, to call).
    pub fn spec(&self) -> Option<KeycloakClientSpec> {
        self.parsed.as_ref().ok().and_then(|p| p.unpack().ok()).map(|(spec, _)| spec)
    }

    /// `spec.realmRef`, when the object parsed.
    pub fn realm_ref(&self) -> Option<&kco_api::ObjectRef> {
        self.parsed.as_ref().ok().map(|p| &p.realm_ref)
    }

    /// The Secret `spec.clientSecret` names, if any.
    pub fn client_secret_name(&self) -> Option<&str> {
        self.parsed.as_ref().ok().and_then(|p| p.client_secret.as_deref())
    }

    /// Whether its status says a reconcile of its current spec ended Failed or Degraded: one that
    /// waits for something else to change (a realm made Ready, a Keycloak reachable again). A client
    /// without such a status is Ready or on its way (its own events reconcile it), and a request
    /// for it would only queue a second reconcile behind the one it has coming.
    pub fn failed_for_current_spec(&self) -> bool {
        self.parsed.as_ref().ok().is_some_and(|p| {
            matches!(p.phase, Some(kco_api::Phase::Failed | kco_api::Phase::Degraded))
                && p.observed_generation == self.metadata.generation
        })
    }

    /// The typed object with its metadata, for a reconcile; or why there is none.
    pub fn client(&self) -> Result<KeycloakClient, String> {
        let parsed = self.parsed.as_ref().map_err(Clone::clone)?;
        let (spec, status) = parsed.unpack()?;
        Ok(KeycloakClient { metadata: self.metadata.clone(), spec, status })
    }
}

/// The last-applied annotation kubectl writes: a second full copy of the object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drop what kco never reads from a cached object's metadata: managedFields and kubectl's
/// last-applied copy (together often larger than the object itself).
pub fn compact(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

impl<'de> Deserialize<'de> for GuardedClient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut raw = Value::deserialize(d)?;
        // Take the metadata out (kept once, compacted) and leave an empty one for the typed parse.
        let meta_value = raw
            .as_object_mut()
            .and_then(|o| o.insert("metadata".to_string(), Value::Object(Default::default())))
            .unwrap_or_default();
        let mut metadata: ObjectMeta = serde_json::from_value(meta_value).map_err(serde::de::Error::custom)?;
        compact(&mut metadata);
        let parsed = serde_path_to_error::deserialize::<_, KeycloakClient>(raw)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))
            .and_then(Parsed::pack);
        Ok(Self { metadata, parsed })
    }
}

impl Serialize for GuardedClient {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.client() {
            Ok(kc) => kc.serialize(s),
            Err(_) => serde_json::json!({
                "apiVersion": KeycloakClient::api_version(&()),
                "kind": KeycloakClient::kind(&()),
                "metadata": self.metadata,
            })
            .serialize(s),
        }
    }
}

impl Resource for GuardedClient {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        KeycloakClient::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        KeycloakClient::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        KeycloakClient::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        KeycloakClient::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_malformed_object_keeps_its_metadata_and_says_where_it_broke() {
        let g: GuardedClient = serde_json::from_value(json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
            "metadata": {"name": "bad", "namespace": "a"},
            "spec": {"clientId": "x", "realmRef": {"name": "r"}, "settings": {"standardFlowEnabled": "yes"}}
        }))
        .unwrap();
        assert_eq!(g.metadata.name.as_deref(), Some("bad"));
        let err = g.parsed.unwrap_err();
        assert!(err.starts_with("spec.settings.standardFlowEnabled: invalid type"), "{err}");
    }

    #[test]
    fn standard_endpoints_are_cached_as_the_issuer_and_given_back_whole() {
        let endpoints = Endpoints::for_realm("https://kc.example.com/", "team-a");
        let object = |endpoints: &Endpoints| {
            json!({
                "apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
                "metadata": {"name": "ok", "namespace": "a"},
                "spec": {"clientId": "x", "realmRef": {"name": "r"}},
                "status": {"phase": "Ready", "endpoints": endpoints}
            })
        };
        let g: GuardedClient = serde_json::from_value(object(&endpoints)).unwrap();
        let packed = &g.parsed.as_ref().unwrap().packed;
        assert!(packed.contains("https://kc.example.com/realms/team-a") && !packed.contains("/token"), "{packed}");
        let kc = g.client().unwrap();
        assert_eq!(kc.status.unwrap().endpoints.unwrap(), endpoints);
        assert_eq!(serde_json::to_value(&g).unwrap()["status"]["endpoints"]["jwks"], json!(endpoints.jwks));
        // Endpoints someone wrote otherwise are kept as they are.
        let odd = Endpoints { token: "https://elsewhere/token".into(), ..endpoints.clone() };
        let g: GuardedClient = serde_json::from_value(object(&odd)).unwrap();
        assert_eq!(g.client().unwrap().status.unwrap().endpoints.unwrap(), odd);
    }

    #[test]
    fn a_packed_object_unpacks_to_the_typed_parse_and_keeps_what_mappers_read() {
        let object = json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
            "metadata": {"name": "ok", "namespace": "a", "generation": 3, "uid": "u-1"},
            "spec": {"clientId": "żółw-☃", "realmRef": {"name": "r", "namespace": "realms"},
                     "clientSecret": {"name": "preset", "key": "secret"},
                     "clientRoles": ["reader", "writer"], "audiences": ["api"],
                     "serviceAccountRoles": {"realmRoles": ["bench-reader"], "clientRoles": {"api": ["x"]}},
                     "attributes": {"a": "b"}, "redirectUris": ["https://x/*"],
                     "secretRotation": {"enabled": true, "rotationPeriod": "30d", "gracePeriod": "1h"}},
            "status": {"phase": "Degraded", "observedGeneration": 3, "realm": "team-a", "internalId": "id-1",
                       "endpoints": Endpoints::for_realm("https://kc", "team-a"), "createdRoles": ["reader"],
                       "conditions": [{"type": "Ready", "status": "False", "reason": "X", "message": "m",
                                       "observedGeneration": 3, "lastTransitionTime": "t0"}],
                       "remoteSecrets": ["b/s"]}
        });
        let typed: KeycloakClient = serde_json::from_value(object.clone()).unwrap();
        // Defaults are left out of the packed spec, values that differ from them kept.
        let mut with_defaults = object.clone();
        with_defaults["spec"]["settings"] = json!({"standardFlowEnabled": true, "displayOnConsentScreen": false});
        with_defaults["spec"]["deletionPolicy"] = json!("Delete");
        let typed_d: KeycloakClient = serde_json::from_value(with_defaults.clone()).unwrap();
        let g: GuardedClient = serde_json::from_value(with_defaults).unwrap();
        let packed = &g.parsed.as_ref().unwrap().packed;
        assert!(!packed.contains("standardFlowEnabled") && !packed.contains("deletionPolicy"), "{packed}");
        assert!(packed.contains(r#""displayOnConsentScreen":false"#), "{packed}");
        let kc = g.client().unwrap();
        assert_eq!(serde_json::to_value(&kc.spec).unwrap(), serde_json::to_value(&typed_d.spec).unwrap());

        let g: GuardedClient = serde_json::from_value(object).unwrap();
        let kc = g.client().unwrap();
        assert_eq!(serde_json::to_value(&kc.spec).unwrap(), serde_json::to_value(&typed.spec).unwrap());
        assert_eq!(kc.status, typed.status);
        assert_eq!(serde_json::to_value(g.spec().unwrap()).unwrap(), serde_json::to_value(&typed.spec).unwrap());
        assert_eq!(g.realm_ref().map(|r| (r.name.as_str(), r.namespace.as_deref())), Some(("r", Some("realms"))));
        assert_eq!(g.client_secret_name(), Some("preset"));
        let p = g.parsed.as_ref().unwrap();
        assert_eq!(p.realm(), Some("team-a"));
        assert!(p.grace_rule().is_some(), "a grace period makes a rule");
        assert!(g.failed_for_current_spec(), "Degraded at the current generation");
    }

    #[test]
    fn a_good_object_parses() {
        let g: GuardedClient = serde_json::from_value(json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
            "metadata": {"name": "ok", "namespace": "a"}, "spec": {"clientId": "x", "realmRef": {"name": "r"}}
        }))
        .unwrap();
        assert_eq!(g.spec().unwrap().client_id, "x");
    }
}
