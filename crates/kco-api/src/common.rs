//! Small shapes shared by the three resources: references and status conditions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to a namespaced object by name; the namespace defaults to the referring object's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ObjectRef {
    #[schemars(transform = crate::cel::k8s_name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::cel::k8s_namespace())]
    pub namespace: Option<String>,
}

impl ObjectRef {
    /// The namespace this reference points into, given the namespace of the object that holds it.
    pub fn namespace_or<'a>(&'a self, own: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(own)
    }
}

/// A key in a Secret or ConfigMap of the referring object's namespace (or the one given).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct KeyRef {
    #[schemars(transform = crate::cel::k8s_name())]
    pub name: String,
    #[schemars(transform = crate::cel::data_key())]
    pub key: String,
}

/// A Kubernetes-style status condition (API conventions: type, status, reason, message).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
}
