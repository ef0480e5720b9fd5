//! `KeycloakRealm`: a realm in a KeycloakInstance and the namespaces allowed to put clients in it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Condition, ObjectRef};

/// A Keycloak realm, and which namespaces may have KeycloakClients in it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kco.dev",
    version = "v1",
    kind = "KeycloakRealm",
    namespaced,
    shortname = "kcr",
    status = "KeycloakRealmStatus",
    printcolumn = r#"{"name":"Realm","type":"string","jsonPath":".spec.realmName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KeycloakRealmSpec {
    /// The realm's name in Keycloak.
    pub realm_name: String,
    /// The KeycloakInstance that serves this realm.
    pub instance_ref: ObjectRef,
    /// Namespaces whose KeycloakClients may use this realm (the realm's own namespace too must be listed).
    #[serde(default)]
    pub client_authorization_grants: Vec<String>,
    /// Create the realm in Keycloak when it does not exist.
    #[serde(default = "default_true")]
    pub create_realm: bool,
    /// Allow service-account grants of realm administration roles (realm-management, admin).
    #[serde(default)]
    pub allow_admin_role_grants: bool,
    /// Allow script-based protocol mappers on clients of this realm.
    #[serde(default)]
    pub allow_script_mappers: bool,
}

pub(crate) fn default_true() -> bool {
    true
}

impl KeycloakRealmSpec {
    /// Whether KeycloakClients in `namespace` may use this realm.
    pub fn grants(&self, namespace: &str) -> bool {
        self.client_authorization_grants.iter().any(|g| g == namespace)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeycloakRealmStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
