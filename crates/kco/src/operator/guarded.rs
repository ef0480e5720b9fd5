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

#[derive(Clone, Debug)]
pub struct GuardedClient {
    metadata: ObjectMeta,
    raw: Value,
    /// The typed object, or where and why it failed to parse (e.g. `spec.settings: invalid type …`).
    pub parsed: Result<KeycloakClient, String>,
}

impl GuardedClient {
    pub fn spec(&self) -> Option<&kco_api::KeycloakClientSpec> {
        self.parsed.as_ref().ok().map(|k| &k.spec)
    }
}

impl<'de> Deserialize<'de> for GuardedClient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let metadata: ObjectMeta = serde_json::from_value(raw.get("metadata").cloned().unwrap_or_default())
            .map_err(serde::de::Error::custom)?;
        let parsed = serde_path_to_error::deserialize::<_, KeycloakClient>(&raw)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()));
        Ok(Self { metadata, raw, parsed })
    }
}

impl Serialize for GuardedClient {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut raw = self.raw.clone();
        if let (Some(obj), Ok(meta)) = (raw.as_object_mut(), serde_json::to_value(&self.metadata)) {
            obj.insert("metadata".into(), meta);
        }
        raw.serialize(s)
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
