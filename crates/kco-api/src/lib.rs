//! The kco custom resources: `KeycloakClient`, `KeycloakRealm` and `KeycloakInstance` (group `kco.dev`, v1).
//! Types, defaults and schema only; no IO lives here.
#![forbid(unsafe_code)]

mod cel;
mod client;
mod common;
mod grant;
mod instance;
mod realm;

pub use client::*;
pub use common::*;
pub use grant::*;
pub use instance::*;
pub use realm::*;

/// Size limits of the spec: the CRD's schema (so the apiserver refuses at once, and CEL's cost
/// stays bounded) and kco's own validation both take them from here.
pub mod limits {
    /// Longest URI kco accepts in a list or URL field.
    pub const MAX_URI: usize = 2048;
    /// Most entries of a URI list, scope list or protocol mapper list.
    pub const MAX_ITEMS: usize = 256;
    /// Longest name of a role, scope, mapper, policy, ….
    pub const MAX_NAME: usize = 255;
    /// Most additional Secrets.
    pub const MAX_ADDITIONAL_SECRETS: usize = 16;
}

/// The string a unit enum variant has in manifests, taken from its serde name (the one place each
/// is written), e.g. `Protocol::OpenIdConnect` → `"openid-connect"`.
pub fn wire_name<T: serde::Serialize>(value: &T) -> &'static str {
    // Fails only for a value that is not a unit variant, which no caller passes.
    serde_variant::to_variant_name(value).unwrap_or_default()
}

/// The API group of every kco resource.
pub const GROUP: &str = "kco.dev";
/// The group the reference operator used; the CLI accepts it as an alias of [`GROUP`].
pub const LEGACY_GROUP: &str = "vriesdemichael.github.io";
/// Finalizer that kco holds on a KeycloakClient while the Keycloak client exists.
pub const CLIENT_FINALIZER: &str = "kco.dev/cleanup";
/// Field manager used for every server-side apply kco makes.
pub const FIELD_MANAGER: &str = "kco";
/// Label put on every object kco writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "kco";
/// Label a Secret must carry (value `"true"`) before a KeycloakClient's `spec.clientSecret` may use
/// it: set by whoever may write that Secret, so that permission to create KeycloakClients is not
/// permission to push any Secret of the namespace into Keycloak (and read it back).
pub const CLIENT_SECRET_OPT_IN_LABEL: &str = "kco.dev/client-secret";
/// Label on a Secret kco wrote in another namespace: the uid of the KeycloakClient it belongs to (no
/// owner reference can cross namespaces; cleanup finds it by this).
pub const OWNER_UID_LABEL: &str = "kco.dev/owner-uid";
/// Annotation on such a Secret: `namespace/name` of that KeycloakClient.
pub const OWNER_ANNOTATION: &str = "kco.dev/owner";
/// Annotation that lets a KeycloakClient take over a Keycloak client it did not create.
pub const ADOPT_ANNOTATION: &str = "kco.dev/adopt";

/// Every CRD kco serves, in a stable order.
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![KeycloakInstance::crd(), KeycloakRealm::crd(), KeycloakClient::crd(), KeycloakCredentialsGrant::crd()]
}
