//! The desired Keycloak client representation built from a spec: only the fields the spec manages.

use std::collections::BTreeMap;

use kco_api::{ClientSettings, KeycloakClientSpec};
use serde_json::{Map, Value, json};

use crate::OWNER_ATTRIBUTE;

/// Who owns a Keycloak client, written into its attributes so no other object takes it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn attribute_value(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.name, self.uid)
    }
}

/// Top-level fields compared as unordered sets (Keycloak keeps them as sets).
pub const SET_FIELDS: &[&str] = &["redirectUris", "webOrigins"];

/// The managed part of a Keycloak client: top-level representation fields and attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredClient {
    pub client_id: String,
    /// Top-level fields of the ClientRepresentation that the spec manages.
    pub fields: Map<String, Value>,
    /// Attributes the spec manages (Keycloak stores every attribute as a string).
    pub attributes: BTreeMap<String, String>,
    /// Scope lists, when managed (at creation they go in the POST; later through their own endpoints).
    pub default_client_scopes: Option<Vec<String>>,
    pub optional_client_scopes: Option<Vec<String>>,
    /// Protocol mappers kco manages: all with `spec.protocolMappers`, else only its audience mappers.
    pub protocol_mappers: MapperSet,
    pub client_roles: Option<Vec<String>>,
    /// Realm roles of the service-account user (`default-roles-<realm>` is never revoked).
    pub service_account_realm_roles: Option<Vec<String>>,
    /// Client id → roles of that client granted to the service-account user: the whole set (see plan).
    pub service_account_client_roles: Option<BTreeMap<String, Vec<String>>>,
}

/// Which mappers on the client kco manages: all of them when `spec.protocolMappers` is given, else only
/// the audience mappers it made for `spec.audiences` (recognised by name prefix).
#[derive(Debug, Clone, PartialEq)]
pub struct MapperSet {
    pub mappers: Vec<DesiredMapper>,
    /// `None`: every mapper on the client is managed; `Some(prefix)`: only those whose name starts with it.
    pub only_prefix: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredMapper {
    pub name: String,
    pub protocol: String,
    pub protocol_mapper: String,
    /// Only these keys are compared: Keycloak adds defaults of its own to a mapper's config.
    pub config: BTreeMap<String, String>,
}

impl DesiredMapper {
    pub fn representation(&self) -> Value {
        json!({"name": self.name, "protocol": self.protocol, "protocolMapper": self.protocol_mapper, "config": self.config})
    }
}

pub use crate::grace::GRACE_ATTRIBUTE;

/// Client attribute recording which attribute keys kco set from `spec.attributes` (a JSON array of
/// the keys). Only these are ever removed when they leave the map: attributes Keycloak or anyone else
/// set stay, and so do kco's own (owner, grace) and those of typed settings.
pub const MANAGED_ATTRIBUTES: &str = "kco.dev/attributes";

/// The value of [`MANAGED_ATTRIBUTES`] for these keys.
pub fn managed_attributes_value<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let keys: Vec<&String> = keys.collect();
    serde_json::to_string(&keys).unwrap_or_default()
}

/// The keys a client's [`MANAGED_ATTRIBUTES`] records (none when absent or unreadable).
pub fn recorded_attributes(attributes: &Map<String, Value>) -> Vec<String> {
    attributes
        .get(MANAGED_ATTRIBUTES)
        .and_then(Value::as_str)
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .unwrap_or_default()
}

/// Name prefix of the audience mappers kco makes for `spec.audiences`.
pub const AUDIENCE_MAPPER_PREFIX: &str = "kco-audience-";

fn audience_mapper(client_id: &str) -> DesiredMapper {
    DesiredMapper {
        name: format!("{AUDIENCE_MAPPER_PREFIX}{client_id}"),
        protocol: "openid-connect".into(),
        protocol_mapper: "oidc-audience-mapper".into(),
        config: BTreeMap::from([
            ("included.client.audience".to_string(), client_id.to_string()),
            ("access.token.claim".to_string(), "true".to_string()),
            ("id.token.claim".to_string(), "false".to_string()),
            ("introspection.token.claim".to_string(), "true".to_string()),
        ]),
    }
}

fn mapper_set(spec: &KeycloakClientSpec) -> MapperSet {
    let audiences = spec.audiences.iter().flatten().map(|a| audience_mapper(a));
    match &spec.protocol_mappers {
        Some(list) => {
            let mut mappers: Vec<DesiredMapper> = list
                .iter()
                .map(|m| DesiredMapper {
                    name: m.name.clone(),
                    protocol: m.protocol.clone(),
                    protocol_mapper: m.protocol_mapper.clone(),
                    config: m.config.clone(),
                })
                .collect();
            mappers.extend(audiences);
            MapperSet { mappers, only_prefix: None }
        }
        // kco's own audience mappers are always kco's to manage: dropping `audiences` removes them.
        None => MapperSet { mappers: audiences.collect(), only_prefix: Some(AUDIENCE_MAPPER_PREFIX) },
    }
}

impl DesiredClient {
    pub fn from_spec(spec: &KeycloakClientSpec, owner: Option<&Owner>) -> Self {
        Self {
            client_id: spec.client_id.clone(),
            fields: client_fields(spec),
            attributes: client_attributes(spec, owner),
            default_client_scopes: spec.default_client_scopes.clone(),
            optional_client_scopes: spec.optional_client_scopes.clone(),
            protocol_mappers: mapper_set(spec),
            client_roles: spec.client_roles.clone(),
            service_account_realm_roles: spec.service_account_roles.as_ref().and_then(|r| r.realm_roles.clone()),
            service_account_client_roles: spec.service_account_roles.as_ref().and_then(|r| r.client_roles.clone()),
        }
    }

    /// The full representation for a POST that creates the client.
    pub fn create_representation(&self) -> Value {
        let mut rep = self.fields.clone();
        // An empty attribute is how an unset setting is written; a new client simply lacks it.
        let attributes: BTreeMap<&String, &String> = self.attributes.iter().filter(|(_, v)| !v.is_empty()).collect();
        rep.insert("attributes".into(), json!(attributes));
        if let Some(v) = &self.default_client_scopes {
            rep.insert("defaultClientScopes".into(), json!(v));
        }
        if let Some(v) = &self.optional_client_scopes {
            rep.insert("optionalClientScopes".into(), json!(v));
        }
        if !self.protocol_mappers.mappers.is_empty() {
            let reps: Vec<Value> = self.protocol_mappers.mappers.iter().map(DesiredMapper::representation).collect();
            rep.insert("protocolMappers".into(), Value::Array(reps));
        }
        Value::Object(rep)
    }
}

/// The client's own fields (not its attributes) the spec manages.
fn client_fields(spec: &KeycloakClientSpec) -> Map<String, Value> {
    let s = &spec.settings;
    let mut f = Map::new();
    f.insert("clientId".into(), json!(spec.client_id));
    f.insert("enabled".into(), json!(true));
    f.insert("protocol".into(), json!(spec.protocol.as_str()));
    f.insert("publicClient".into(), json!(spec.public_client));
    f.insert("bearerOnly".into(), json!(spec.bearer_only));
    // Scalars are always managed: an omitted one is empty, which is Keycloak's own default.
    for (key, value) in [
        ("name", &spec.client_name),
        ("description", &spec.description),
        ("rootUrl", &spec.root_url),
        ("adminUrl", &spec.admin_url),
        ("baseUrl", &spec.base_url),
    ] {
        f.insert(key.into(), json!(value.clone().unwrap_or_default()));
    }
    // Lists: omitted means unmanaged.
    put_opt(&mut f, "redirectUris", spec.redirect_uris.as_ref().map(|v| json!(v)));
    put_opt(&mut f, "webOrigins", spec.web_origins.as_ref().map(|v| json!(v)));
    f.insert("alwaysDisplayInConsole".into(), json!(s.always_display_in_console));
    f.insert("clientAuthenticatorType".into(), json!(s.client_authenticator_type.as_str()));
    f.insert("standardFlowEnabled".into(), json!(s.standard_flow_enabled));
    f.insert("implicitFlowEnabled".into(), json!(s.implicit_flow_enabled));
    f.insert("directAccessGrantsEnabled".into(), json!(s.direct_access_grants_enabled));
    f.insert("serviceAccountsEnabled".into(), json!(s.service_accounts_enabled));
    f.insert("consentRequired".into(), json!(s.consent_required));
    f.insert("frontchannelLogout".into(), json!(s.frontchannel_logout));
    f.insert("fullScopeAllowed".into(), json!(s.full_scope_allowed));
    f.insert("authorizationServicesEnabled".into(), json!(s.authorization_services_enabled));
    // What Keycloak needs for Authorization Services; status says kco turned it on.
    for (field, value, _) in crate::authz::implied_settings(spec) {
        f.insert(field.into(), json!(value));
    }
    f
}

/// The client attributes kco manages: the typed settings' ([`typed_attributes`]), `spec.attributes`
/// with the list of their keys, the owner, the grace rule.
fn client_attributes(spec: &KeycloakClientSpec, owner: Option<&Owner>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    for (key, _, value) in typed_attributes(spec) {
        if let Some(v) = value {
            a.insert(key.to_string(), v);
        }
    }
    if let Some(extra) = &spec.attributes {
        for (k, v) in extra {
            a.insert(k.clone(), v.clone());
        }
        // The keys kco set from spec.attributes, so that a key dropped from the map (or every key,
        // with `attributes: {}`) is removed from Keycloak later; see [`crate::plan`].
        a.insert(MANAGED_ATTRIBUTES.into(), managed_attributes_value(extra.keys()));
    }
    if let Some(o) = owner {
        a.insert(OWNER_ATTRIBUTE.into(), o.attribute_value());
    }
    if let Some(rotation) = &spec.secret_rotation {
        // Matched by kco's realm client policy, which makes Keycloak keep the previous secret that
        // long after a rotation; empty (no grace) matches no policy. Invalid values are refused by
        // validation before this runs.
        a.insert(GRACE_ATTRIBUTE.into(), grace_rule(rotation).unwrap_or_default());
    }
    a
}

fn put_opt(f: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        f.insert(key.into(), v);
    }
}

/// The grace rule a rotation spec asks for (see [`crate::grace`]): its grace period and its rotation
/// period (the default 90 days when the period does not parse; validation refuses that first).
pub fn grace_rule(rotation: &kco_api::SecretRotation) -> Option<String> {
    let grace = crate::schedule::parse_grace_period(rotation.grace_period.as_deref()?).ok()?;
    let period = crate::schedule::parse_period(&rotation.rotation_period).map_or(90 * 86_400, |p| p.as_secs());
    Some(crate::grace::rule_id(grace.as_secs(), period))
}

/// The Keycloak client attributes that typed spec fields manage: (attribute, spec field, the value the
/// spec asks for — `None` when the field is unmanaged). The one table for building the client and for
/// refusing the same attribute in `spec.attributes`; a new attribute-backed setting is one row here
/// (one in [`seconds_settings`] when it is a number of seconds).
///
/// Scalar settings are always managed: an omitted one is the empty value, which Keycloak reads as
/// "not set on the client" (the realm's lifespan applies, no PKCE), so removing a setting from the spec
/// restores Keycloak's default. Only the list `postLogoutRedirectUris` is unmanaged when omitted.
pub fn typed_attributes(spec: &KeycloakClientSpec) -> Vec<(&'static str, &'static str, Option<String>)> {
    let s = &spec.settings;
    let mut rows = vec![
        ("display.on.consent.screen", "settings.displayOnConsentScreen", Some(s.display_on_consent_screen.to_string())),
        ("include.in.token.scope", "settings.includeInTokenScope", Some(s.include_in_token_scope.to_string())),
        (
            "pkce.code.challenge.method",
            "settings.pkceCodeChallengeMethod",
            Some(s.pkce_code_challenge_method.map(|m| m.as_str().to_string()).unwrap_or_default()),
        ),
        (
            "post.logout.redirect.uris",
            "postLogoutRedirectUris",
            spec.post_logout_redirect_uris.as_ref().map(|u| u.join("##")),
        ),
    ];
    let secs = |v: Option<i64>| Some(v.map(|v| v.to_string()).unwrap_or_default());
    rows.extend(seconds_settings(s).into_iter().map(|(attribute, field, v)| (attribute, field, secs(v))));
    rows
}

/// The settings that are a number of seconds, as (attribute, spec field, value): rows of
/// [`typed_attributes`], and the fields `validate` checks the range of (0 to `i32::MAX`).
pub fn seconds_settings(s: &ClientSettings) -> [(&'static str, &'static str, Option<i64>); 5] {
    [
        ("access.token.lifespan", "settings.accessTokenLifespan", s.access_token_lifespan),
        // Keycloak has no per-client refresh-token lifespan of its own; the offline-session idle
        // timeout is the client-level knob that bounds how long a refresh token stays usable.
        ("client.offline.session.idle.timeout", "settings.refreshTokenLifespan", s.refresh_token_lifespan),
        ("client.session.idle.timeout", "settings.clientSessionIdleTimeout", s.client_session_idle_timeout),
        ("client.session.max.lifespan", "settings.clientSessionMaxLifespan", s.client_session_max_lifespan),
        ("client.offline.session.max.lifespan", "settings.offlineSessionMaxLifespan", s.offline_session_max_lifespan),
    ]
}
