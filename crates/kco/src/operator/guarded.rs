//! A KeycloakClient read through a guard: the watch never fails on one object that does not match
//! the Rust types (stored under an older schema, say), so one bad object cannot stall the others.
//! The object's metadata is always kept; its typed form or the reason it has none travels with it.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use kco_api::KeycloakClient;
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
    /// The typed object (its own metadata left empty: `metadata` above is the one copy), or where
    /// and why it failed to parse (e.g. `spec.settings: invalid type …`).
    pub parsed: Result<KeycloakClient, String>,
}

impl GuardedClient {
    pub fn spec(&self) -> Option<&kco_api::KeycloakClientSpec> {
        self.parsed.as_ref().ok().map(|k| &k.spec)
    }

    /// The typed object with its metadata, for a reconcile.
    pub fn client(&self) -> Result<KeycloakClient, &str> {
        match &self.parsed {
            Ok(kc) => Ok(KeycloakClient { metadata: self.metadata.clone(), ..kc.clone() }),
            Err(why) => Err(why),
        }
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
            .map_err(|e| format!("{}: {}", e.path(), e.inner()));
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
    fn a_good_object_parses() {
        let g: GuardedClient = serde_json::from_value(json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
            "metadata": {"name": "ok", "namespace": "a"}, "spec": {"clientId": "x", "realmRef": {"name": "r"}}
        }))
        .unwrap();
        assert_eq!(g.spec().unwrap().client_id, "x");
    }
}
