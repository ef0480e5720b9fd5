//! `KeycloakClient`: one OAuth2/OIDC (or SAML, docker-v2) client in a Keycloak realm, and its credentials.
//! Field names and meaning follow the reference CRD; omitted lists and maps are not managed.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel;
use crate::realm::default_true;
use crate::{Condition, KeyRef, ObjectRef};

/// A Keycloak client declared as code.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kco.dev",
    version = "v1",
    kind = "KeycloakClient",
    namespaced,
    shortname = "kcc",
    status = "KeycloakClientStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Client ID","type":"string","jsonPath":".spec.clientId"}"#,
    printcolumn = r#"{"name":"Realm","type":"string","jsonPath":".status.realm"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.credentialsSecret"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(transform = cel::client_spec_rules())]
#[serde(rename_all = "camelCase")]
pub struct KeycloakClientSpec {
    /// The client's unique identifier in its realm (`client_id` in OAuth2). Immutable once created.
    #[schemars(transform = cel::client_id())]
    pub client_id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The KeycloakRealm object this client belongs to; its namespace defaults to this object's.
    /// Immutable once created.
    #[schemars(transform = cel::realm_ref())]
    pub realm_ref: ObjectRef,
    #[serde(default)]
    pub protocol: Protocol,
    /// Public clients (SPA, mobile, CLI) have no secret.
    #[serde(default)]
    pub public_client: bool,
    /// An API that validates tokens but never starts a login.
    #[serde(default)]
    pub bearer_only: bool,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::redirect_uris("spec.redirectUris", false))]
    pub redirect_uris: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::web_origins())]
    pub web_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::redirect_uris("spec.postLogoutRedirectUris", true))]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::url("spec.rootUrl", false))]
    pub root_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::url("spec.adminUrl", true))]
    pub admin_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::url("spec.baseUrl", true))]
    pub base_url: Option<String>,

    #[serde(default)]
    pub settings: ClientSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_flows: Option<AuthenticationFlows>,

    /// Client scopes added to every token; an explicit empty list removes all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::bounded_name_set())]
    pub default_client_scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::bounded_name_set())]
    pub optional_client_scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::bounded_named_list())]
    pub protocol_mappers: Option<Vec<ProtocolMapper>>,
    /// Client ids whose name tokens of this client carry in `aud` (an audience mapper per entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::name_set())]
    pub audiences: Option<Vec<String>>,
    /// Role names defined on this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::name_set())]
    pub client_roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_roles: Option<ServiceAccountRoles>,
    /// Extra Keycloak client attributes; omitted = not managed. A key dropped from the map (every key,
    /// with `{}`) is removed from Keycloak; attributes kco did not set from this map are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::attributes())]
    pub attributes: Option<BTreeMap<String, String>>,
    // Boxed: rarely set, and 300 bytes in place in every cached KeycloakClient otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_settings: Option<Box<AuthorizationSettings>>,

    /// Write the credentials to a Kubernetes Secret.
    #[serde(default = "default_true")]
    pub manage_secret: bool,
    /// Name of the managed Secret; defaults to `<metadata.name>-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::object_name("spec.secretName"))]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_metadata: Option<SecretMetadata>,
    /// Regenerate the client secret once (see the docs for how to ask again).
    #[serde(default)]
    pub regenerate_secret: bool,
    /// Use this user-owned Secret key as the client secret instead of a generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_rotation: Option<SecretRotation>,
    /// More Secrets with the same credentials under the key names a consumer expects (presets or
    /// templates). Written beside the managed Secret and updated with it on every rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::additional_secrets())]
    pub additional_secrets: Option<Vec<AdditionalSecret>>,
    /// `Delete` (default) removes the Keycloak client with this object; `Orphan` keeps it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    #[default]
    #[serde(rename = "openid-connect")]
    OpenIdConnect,
    #[serde(rename = "saml")]
    Saml,
    #[serde(rename = "docker-v2")]
    DockerV2,
}

impl Protocol {
    /// Its name in manifests and in Keycloak (the serde rename).
    pub fn as_str(self) -> &'static str {
        crate::wire_name(&self)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Orphan,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClientAuthenticatorType {
    #[default]
    #[serde(rename = "client-secret")]
    ClientSecret,
    #[serde(rename = "client-jwt")]
    ClientJwt,
    #[serde(rename = "client-secret-jwt")]
    ClientSecretJwt,
    #[serde(rename = "client-x509")]
    ClientX509,
}

impl ClientAuthenticatorType {
    /// Its name in manifests and in Keycloak (the serde rename).
    pub fn as_str(self) -> &'static str {
        crate::wire_name(&self)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PkceMethod {
    S256,
    #[serde(rename = "plain")]
    Plain,
    #[serde(rename = "")]
    None,
}

impl PkceMethod {
    /// Its name in manifests and in Keycloak (the serde rename).
    pub fn as_str(self) -> &'static str {
        crate::wire_name(&self)
    }
}

/// The bulk of a client's behaviour. Defaults are materialised, so these are always managed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSettings {
    #[serde(default)]
    pub always_display_in_console: bool,
    #[serde(default)]
    pub client_authenticator_type: ClientAuthenticatorType,
    #[serde(default = "default_true")]
    pub standard_flow_enabled: bool,
    #[serde(default)]
    pub implicit_flow_enabled: bool,
    #[serde(default = "default_true")]
    pub direct_access_grants_enabled: bool,
    #[serde(default)]
    pub service_accounts_enabled: bool,
    #[serde(default)]
    pub consent_required: bool,
    #[serde(default = "default_true")]
    pub display_on_consent_screen: bool,
    #[serde(default = "default_true")]
    pub include_in_token_scope: bool,
    #[serde(default = "default_true")]
    pub frontchannel_logout: bool,
    #[serde(default = "default_true")]
    pub full_scope_allowed: bool,
    #[serde(default)]
    pub authorization_services_enabled: bool,
    /// Seconds; omitted means the realm's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::seconds())]
    pub access_token_lifespan: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::seconds())]
    pub refresh_token_lifespan: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::seconds())]
    pub client_session_idle_timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::seconds())]
    pub client_session_max_lifespan: Option<i64>,
    /// Seconds an offline session of this client may live at most (Keycloak's "Client Offline
    /// Session Max"); omitted means the realm's value. A kco addition to the reference's fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::seconds())]
    pub offline_session_max_lifespan: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkce_code_challenge_method: Option<PkceMethod>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            always_display_in_console: false,
            client_authenticator_type: ClientAuthenticatorType::ClientSecret,
            standard_flow_enabled: true,
            implicit_flow_enabled: false,
            direct_access_grants_enabled: true,
            service_accounts_enabled: false,
            consent_required: false,
            display_on_consent_screen: true,
            include_in_token_scope: true,
            frontchannel_logout: true,
            full_scope_allowed: true,
            authorization_services_enabled: false,
            access_token_lifespan: None,
            refresh_token_lifespan: None,
            client_session_idle_timeout: None,
            client_session_max_lifespan: None,
            offline_session_max_lifespan: None,
            pkce_code_challenge_method: None,
        }
    }
}

/// Realm flow aliases that override the realm's bindings for this client.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationFlows {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_flow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_grant_flow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_authentication_flow: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMapper {
    #[schemars(transform = cel::protocol_mapper_name())]
    pub name: String,
    #[serde(default = "default_protocol_name")]
    #[schemars(transform = cel::protocol_enum())]
    pub protocol: String,
    /// Mapper type, e.g. `oidc-audience-mapper`, `oidc-hardcoded-claim-mapper`.
    #[schemars(transform = cel::name())]
    pub protocol_mapper: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn default_protocol_name() -> String {
    "openid-connect".to_string()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRoles {
    /// Realm role names granted to the service-account user; omitted = not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::name_set())]
    pub realm_roles: Option<Vec<String>>,
    /// Client id → role names granted: the whole set of the service account's client-role grants (a
    /// client left out loses its grants; `{}` revokes all); omitted = not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::role_map())]
    pub client_roles: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A consumer-format Secret: a preset `format`, or custom `keys` templates, or both (keys win).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(transform = cel::additional_secret_rules())]
pub struct AdditionalSecret {
    /// Name of the Secret (unique across the list, whatever its namespace).
    #[schemars(transform = cel::object_name("spec.additionalSecrets[].name"))]
    pub name: String,
    /// Namespace of the Secret; omitted: the KeycloakClient's own. Another namespace must consent
    /// with a KeycloakCredentialsGrant there named after this KeycloakClient's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::k8s_namespace())]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SecretFormat>,
    /// Key → template; placeholders: `{{clientId}}`, `{{clientSecret}}`, `{{issuer}}`, `{{tokenEndpoint}}`,
    /// `{{authEndpoint}}`, `{{userinfoEndpoint}}`, `{{jwksEndpoint}}`, `{{endSessionEndpoint}}`, `{{realm}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Key-name presets of common consumers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SecretFormat {
    /// OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_TOKEN_URL.
    #[serde(rename = "mlflow")]
    Mlflow,
    /// PHOENIX_OAUTH2_CLIENT_ID, PHOENIX_OAUTH2_CLIENT_SECRET.
    #[serde(rename = "phoenix")]
    Phoenix,
    /// MLFLOW_CLIENT_ID, MLFLOW_CLIENT_SECRET.
    #[serde(rename = "otel-collector")]
    OtelCollector,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotation {
    #[serde(default)]
    pub enabled: bool,
    /// Interval such as `90d`, `24h`, `30m` or `10s`.
    #[serde(default = "default_rotation_period")]
    #[schemars(transform = cel::duration("spec.secretRotation.rotationPeriod"))]
    pub rotation_period: String,
    /// Optional `HH:MM` wall-clock time at which a due rotation happens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::rotation_time())]
    pub rotation_time: Option<String>,
    /// IANA time zone of `rotationTime`.
    #[serde(default = "default_timezone")]
    #[schemars(transform = cel::timezone())]
    pub timezone: String,
    /// How long the previous secret keeps working after a rotation, e.g. `1h`. Omitted: it stops at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::duration("spec.secretRotation.gracePeriod"))]
    pub grace_period: Option<String>,
}

fn default_rotation_period() -> String {
    "90d".to_string()
}

fn default_timezone() -> String {
    "UTC".to_string()
}

// ---- Authorization Services -------------------------------------------------------------------

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PolicyEnforcementMode {
    #[default]
    Enforcing,
    Permissive,
    Disabled,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionStrategy {
    #[default]
    Unanimous,
    Affirmative,
    Consensus,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Logic {
    #[default]
    Positive,
    Negative,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationSettings {
    #[serde(default)]
    pub policy_enforcement_mode: PolicyEnforcementMode,
    #[serde(default)]
    pub decision_strategy: DecisionStrategy,
    #[serde(default = "default_true")]
    pub allow_remote_resource_management: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::named_list())]
    pub scopes: Option<Vec<AuthzScope>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::named_list())]
    pub resources: Option<Vec<AuthzResource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<AuthzPolicies>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<AuthzPermissions>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthzScope {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_uri: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthzResource {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default)]
    #[schemars(transform = cel::resource_uris())]
    pub uris: Vec<String>,
    #[serde(default)]
    #[schemars(transform = cel::name_set())]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub owner_managed_access: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = cel::authz_policies_rules())]
#[serde(rename_all = "camelCase")]
pub struct AuthzPolicies {
    #[serde(default)]
    pub allow_java_script_policies: bool,
    #[serde(default)]
    #[schemars(transform = cel::named_list())]
    pub role_policies: Vec<RolePolicy>,
    #[serde(default)]
    #[schemars(transform = cel::named_list())]
    pub user_policies: Vec<UserPolicy>,
    #[serde(default)]
    #[schemars(transform = cel::named_list())]
    pub group_policies: Vec<GroupPolicy>,
    #[serde(default)]
    #[schemars(transform = cel::named_list())]
    pub client_policies: Vec<ClientPolicy>,
    #[serde(default)]
    #[schemars(transform = cel::bounded_named_list())]
    pub time_policies: Vec<TimePolicy>,
    #[serde(default)]
    #[schemars(transform = cel::named_list())]
    pub regex_policies: Vec<RegexPolicy>,
    #[serde(default)]
    #[schemars(transform = cel::named_list())]
    pub aggregate_policies: Vec<AggregatePolicy>,
    #[serde(default)]
    #[schemars(transform = cel::named_list())]
    pub javascript_policies: Vec<JavaScriptPolicy>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolePolicy {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub logic: Logic,
    #[schemars(transform = cel::policy_roles())]
    pub roles: Vec<RolePolicyRole>,
    #[serde(default = "default_true")]
    pub fetch_roles: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct RolePolicyRole {
    /// A realm role name, or a client role written `clientId/role`.
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default)]
    pub required: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct UserPolicy {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub logic: Logic,
    #[schemars(transform = cel::subjects())]
    pub users: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupPolicy {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub logic: Logic,
    #[schemars(transform = cel::group_paths())]
    pub groups: Vec<String>,
    #[serde(default = "default_groups_claim")]
    #[schemars(transform = cel::name())]
    pub groups_claim: String,
}

fn default_groups_claim() -> String {
    "groups".to_string()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ClientPolicy {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub logic: Logic,
    #[schemars(transform = cel::subjects())]
    pub clients: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(transform = cel::time_policy_rules())]
#[serde(rename_all = "camelCase")]
pub struct TimePolicy {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub logic: Logic,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::policy_datetime())]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::policy_datetime())]
    pub not_on_or_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(1, 31))]
    pub day_month: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(1, 31))]
    pub day_month_end: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(1, 12))]
    pub month: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(1, 12))]
    pub month_end: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(1, 9999))]
    pub year: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(1, 9999))]
    pub year_end: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(0, 23))]
    pub hour: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(0, 23))]
    pub hour_end: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(0, 59))]
    pub minute: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::int_range(0, 59))]
    pub minute_end: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegexPolicy {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub logic: Logic,
    #[schemars(transform = cel::name())]
    pub target_claim: String,
    #[schemars(transform = cel::non_empty())]
    pub pattern: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregatePolicy {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub logic: Logic,
    #[serde(default)]
    pub decision_strategy: DecisionStrategy,
    #[schemars(transform = cel::subjects())]
    pub policies: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct JavaScriptPolicy {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub logic: Logic,
    #[schemars(transform = cel::non_empty())]
    pub code: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthzPermissions {
    #[serde(default)]
    #[schemars(transform = cel::bounded_named_list())]
    pub resource_permissions: Vec<ResourcePermission>,
    #[serde(default)]
    #[schemars(transform = cel::bounded_named_list())]
    pub scope_permissions: Vec<ScopePermission>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(transform = cel::resource_permission_rules())]
#[serde(rename_all = "camelCase")]
pub struct ResourcePermission {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub decision_strategy: DecisionStrategy,
    #[serde(default)]
    #[schemars(transform = cel::name_set())]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::name())]
    pub resource_type: Option<String>,
    #[schemars(transform = cel::name_set())]
    pub policies: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(transform = cel::scope_permission_rules())]
#[serde(rename_all = "camelCase")]
pub struct ScopePermission {
    #[schemars(transform = cel::name())]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub decision_strategy: DecisionStrategy,
    #[serde(default)]
    #[schemars(transform = cel::name_set())]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = cel::name())]
    pub resource_type: Option<String>,
    #[serde(default)]
    #[schemars(transform = cel::name_set())]
    pub scopes: Vec<String>,
    #[schemars(transform = cel::name_set())]
    pub policies: Vec<String>,
}

// ---- Status -----------------------------------------------------------------------------------

/// What kco last observed and did. Every field here is declared in the CRD schema.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeycloakClientStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Keycloak's internal id (UUID) of the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_client: Option<bool>,
    /// `namespace/name` of the KeycloakInstance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keycloak_instance: Option<String>,
    /// Name of the managed Secret, when one is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_granted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_mappers: Option<Vec<String>>,
    /// When kco last checked the client against Keycloak and recorded a result. Checks that find
    /// nothing new do not move it: a resync with nothing to do writes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_health_check: Option<String>,
    /// When this status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    /// Drift watermark: when kco last changed the client in Keycloak (create, update, drift revert,
    /// secret change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_event_time: Option<String>,
    /// RFC 3339 time of the last secret rotation kco made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<String>,
    /// The generation at which `regenerateSecret: true` was honoured; cleared when it is set back to
    /// false, so setting it to true again asks for one more regeneration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regenerated_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Secrets kco wrote in other namespaces (`namespace/name`), so that it can delete them when they
    /// leave the spec or the KeycloakClient is deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_secrets: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Provisioning,
    Reconciling,
    Ready,
    Updating,
    Degraded,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Endpoints {
    pub issuer: String,
    pub auth: String,
    pub token: String,
    pub userinfo: String,
    pub jwks: String,
    pub logout: String,
}

impl Endpoints {
    /// The OIDC endpoints of `realm` as seen by consumers at `public_url`.
    pub fn for_realm(public_url: &str, realm: &str) -> Self {
        Self::for_issuer(format!("{}/realms/{}", public_url.trim_end_matches('/'), realm))
    }

    /// The OIDC endpoints of the realm whose issuer is `issuer` (each is the issuer plus a path).
    pub fn for_issuer(issuer: String) -> Self {
        let oidc = format!("{issuer}/protocol/openid-connect");
        Self {
            auth: format!("{oidc}/auth"),
            token: format!("{oidc}/token"),
            userinfo: format!("{oidc}/userinfo"),
            jwks: format!("{oidc}/certs"),
            logout: format!("{oidc}/logout"),
            issuer,
        }
    }
}

impl KeycloakClient {
    /// Name of the managed Secret.
    pub fn secret_name(&self) -> String {
        match &self.spec.secret_name {
            Some(n) => n.clone(),
            None => format!("{}-credentials", kube::ResourceExt::name_any(self)),
        }
    }
}

impl SecretFormat {
    /// Its name in manifests (the serde rename).
    pub fn as_str(self) -> &'static str {
        crate::wire_name(&self)
    }
}

#[cfg(test)]
mod wire_name_tests {
    use super::*;

    #[test]
    fn enum_strings_are_the_serde_names() {
        assert_eq!(Protocol::OpenIdConnect.as_str(), "openid-connect");
        assert_eq!(Protocol::DockerV2.as_str(), "docker-v2");
        assert_eq!(ClientAuthenticatorType::ClientSecretJwt.as_str(), "client-secret-jwt");
        assert_eq!(PkceMethod::S256.as_str(), "S256");
        assert_eq!(PkceMethod::None.as_str(), "");
        assert_eq!(SecretFormat::OtelCollector.as_str(), "otel-collector");
        for f in [SecretFormat::Mlflow, SecretFormat::Phoenix, SecretFormat::OtelCollector] {
            assert_eq!(serde_json::to_value(f).ok(), Some(serde_json::Value::from(f.as_str())));
        }
    }
}
