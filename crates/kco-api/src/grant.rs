//! `KeycloakCredentialsGrant`: a namespace's consent to receive KeycloakClient credentials from another.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel;

/// Consent of the namespace it lives in to receive credentials from KeycloakClients of another
/// namespace, which it is named after: KeycloakCredentialsGrant `platform` in namespace `mlflow` lets
/// KeycloakClients of `platform` write their `additionalSecrets` with `namespace: mlflow`. It is the
/// receiver's to make (whoever may create objects in the receiving namespace); kco only reads it, and
/// deleting it stops further writes there.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kco.dev",
    version = "v1",
    kind = "KeycloakCredentialsGrant",
    namespaced,
    shortname = "kccg",
    printcolumn = r#"{"name":"Clients","type":"string","jsonPath":".spec.clients"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KeycloakCredentialsGrantSpec {
    /// Names of the KeycloakClients (in the sending namespace) whose credentials are accepted;
    /// omitted: every KeycloakClient of that namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::name_set())]
    pub clients: Option<Vec<String>>,
}

impl KeycloakCredentialsGrantSpec {
    /// Whether KeycloakClient `name` of the sending namespace may write here.
    pub fn accepts(&self, name: &str) -> bool {
        self.clients.as_ref().is_none_or(|c| c.iter().any(|n| n == name))
    }
}
