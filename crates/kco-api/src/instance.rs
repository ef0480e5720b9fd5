//! `KeycloakInstance`: where a Keycloak server is and how kco authenticates to its Admin API.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// A Keycloak server that kco administers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kco.dev",
    version = "v1",
    kind = "KeycloakInstance",
    namespaced,
    shortname = "kci",
    status = "KeycloakInstanceStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Reachable","type":"boolean","jsonPath":".status.reachable"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KeycloakInstanceSpec {
    /// Base URL of Keycloak's Admin API as kco reaches it, e.g. `http://keycloak.keycloak.svc:8080`.
    pub url: String,
    /// Base URL that token consumers use (issuer, endpoints). Defaults to `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Secret in this namespace with keys `username` + `password`, or `client-id` + `client-secret`.
    pub admin_secret_ref: AdminSecretRef,
    /// Realm the admin credentials belong to.
    #[serde(default = "default_admin_realm")]
    pub admin_realm: String,
    /// Namespaces whose KeycloakRealms may use this instance, besides the instance's own. A realm
    /// elsewhere gets NotAuthorized: only namespaces the Keycloak owner trusts may define realms.
    #[serde(default)]
    pub realm_authorization_grants: Vec<String>,
    /// Allow KeycloakRealms to manage clients in the admin realm (`adminRealm`, usually `master`).
    #[serde(default)]
    pub allow_admin_realm: bool,
    /// A PEM CA bundle to trust for `url`, from a ConfigMap or Secret key in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleRef>,
}

fn default_admin_realm() -> String {
    "master".to_string()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AdminSecretRef {
    pub name: String,
}

/// Where a CA bundle lives: exactly one of `configMapKeyRef` or `secretKeyRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<crate::KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<crate::KeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeycloakInstanceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
