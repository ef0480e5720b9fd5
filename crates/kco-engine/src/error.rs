//! Why the engine could not finish: Keycloak failed, or the spec asks for something that only
//! Keycloak could reveal as impossible (a scope, role, client or group it names does not exist; a
//! grant that reaches realm administration through a composite role). The second kind needs the user.

/// An engine failure. `Spec` carries a fixed CamelCase reason for status and a message that starts
/// with the spec field (`spec.defaultClientScopes: …`) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Keycloak(#[from] kco_keycloak::Error),
    #[error("{message}")]
    Spec { reason: &'static str, message: String },
}

impl EngineError {
    /// A spec problem found in Keycloak: `field` is the path below `spec`.
    pub fn spec(reason: &'static str, field: &str, message: impl std::fmt::Display) -> Self {
        EngineError::Spec { reason, message: format!("spec.{field}: {message}") }
    }

    /// A spec problem in the default category: the spec names something Keycloak lacks.
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::spec(INVALID_SPEC, field, message)
    }
}

/// The reason of every spec problem a person must fix in the object itself.
pub const INVALID_SPEC: &str = "InvalidSpec";
