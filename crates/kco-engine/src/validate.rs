//! validate: every rule on a KeycloakClient spec, in one place, shared by the operator and the CLI.
//! Pure. The CRD schema repeats the rules CEL can express (so the apiserver refuses at once); this
//! module is the full set, including what CEL cannot say: IANA time zones, references between
//! authorization objects, names unique across policy kinds, real calendar dates, Secret key templates.
//! Every error names the field (path from `spec`) and what to do.

use std::collections::{BTreeMap, BTreeSet};

use kco_api::{
    AdditionalSecret, AuthorizationSettings, AuthzPolicies, GroupPolicy, KeyRef, KeycloakClientSpec, Protocol,
    ProtocolMapper, RegexPolicy, RolePolicy, SecretRotation, TimePolicy,
};

use crate::desired::AUDIENCE_MAPPER_PREFIX;
use crate::kube_names::is_dns_label;
pub use crate::kube_names::{check_data_key, check_label_value, check_object_name, check_qualified_name};
use crate::{OWNER_ATTRIBUTE, formats, schedule};

/// One broken rule: the field (JSON path from `spec`) and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

pub use kco_api::limits::{MAX_ADDITIONAL_SECRETS, MAX_ITEMS, MAX_NAME, MAX_URI};

#[derive(Default)]
struct Errors(Vec<ValidationError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError::new(field, message));
    }
}

/// All rule violations of `spec` (empty when valid).
pub fn validate_client(spec: &KeycloakClientSpec) -> Vec<ValidationError> {
    let mut e = Errors::default();
    identity(spec, &mut e);
    confidentiality(spec, &mut e);
    uris(spec, &mut e);
    names(spec, &mut e);
    settings(spec, &mut e);
    attributes(spec, &mut e);
    managed_secrets(spec, &mut e);
    if let Some(r) = &spec.secret_rotation {
        rotation(r, &mut e);
    }
    if let Some(a) = &spec.authorization_settings {
        authorization(a, &mut e);
    }
    e.0
}

fn identity(spec: &KeycloakClientSpec, e: &mut Errors) {
    if spec.client_id.trim().is_empty() {
        e.push("clientId", "must not be empty or blank; set the OAuth2 client_id");
    } else if spec.client_id.chars().count() > MAX_NAME {
        e.push("clientId", format!("must be at most {MAX_NAME} characters"));
    }
    if spec.realm_ref.name.trim().is_empty() {
        e.push("realmRef.name", "must name a KeycloakRealm object");
    } else if let Err(why) = check_object_name(&spec.realm_ref.name) {
        e.push("realmRef.name", why);
    }
    if let Some(ns) = &spec.realm_ref.namespace
        && !is_dns_label(ns)
    {
        e.push("realmRef.namespace", format!("{ns:?} is not a namespace name (DNS-1123 label)"));
    }
}

/// The reference's secret constraints and Keycloak's confidential-only features.
fn confidentiality(spec: &KeycloakClientSpec, e: &mut Errors) {
    let rotating = spec.secret_rotation.as_ref().is_some_and(|r| r.enabled);
    let s = &spec.settings;
    if spec.public_client && spec.client_secret.is_some() {
        e.push(
            "clientSecret",
            "cannot be used with publicClient: true (public clients have no secret); remove one of them",
        );
    }
    if spec.public_client && s.service_accounts_enabled {
        e.push(
            "settings.serviceAccountsEnabled",
            "cannot be true with publicClient: true (a public client has no service account); set publicClient: false for the client-credentials flow",
        );
    }
    if spec.public_client && s.authorization_services_enabled {
        e.push(
            "settings.authorizationServicesEnabled",
            "cannot be true with publicClient: true (authorization services need a confidential client)",
        );
    }
    if spec.public_client && rotating {
        e.push(
            "secretRotation.enabled",
            "cannot be true with publicClient: true (a public client has no secret to rotate)",
        );
    }
    if spec.client_secret.is_some() && rotating {
        e.push(
            "clientSecret",
            "cannot be combined with secretRotation.enabled: true (kco cannot rotate a secret it does not own); remove one of them",
        );
    }
    if spec.client_secret.is_some() && spec.regenerate_secret {
        e.push("regenerateSecret", "cannot be used with clientSecret (kco does not own that secret)");
    }
    if let Some(r) = &spec.client_secret {
        key_ref("clientSecret", r, e);
    }
    if spec.authorization_settings.is_some() && !s.authorization_services_enabled {
        e.push("authorizationSettings", "requires settings.authorizationServicesEnabled: true");
    }
    if spec.service_account_roles.is_some() && !s.service_accounts_enabled {
        e.push("serviceAccountRoles", "requires settings.serviceAccountsEnabled: true");
    }
}

fn key_ref(field: &str, r: &KeyRef, e: &mut Errors) {
    if let Err(why) = check_object_name(&r.name) {
        e.push(format!("{field}.name"), why);
    }
    if let Err(why) = check_data_key(&r.key) {
        e.push(format!("{field}.key"), why);
    }
}

fn uris(spec: &KeycloakClientSpec, e: &mut Errors) {
    for (field, list, plus) in [
        ("redirectUris", &spec.redirect_uris, false),
        ("postLogoutRedirectUris", &spec.post_logout_redirect_uris, true),
    ] {
        let list = list.as_deref().unwrap_or_default();
        too_many(field, list.len(), MAX_ITEMS, e);
        for (i, uri) in list.iter().enumerate() {
            let checked = if plus { check_post_logout_redirect_uri(uri) } else { check_redirect_uri(uri) };
            if let Err(why) = checked {
                e.push(format!("{field}[{i}]"), format!("{}: {why}", shown(uri)));
            }
        }
    }
    let origins = spec.web_origins.as_deref().unwrap_or_default();
    too_many("webOrigins", origins.len(), MAX_ITEMS, e);
    for (i, o) in origins.iter().enumerate() {
        if let Err(why) = check_web_origin(o) {
            e.push(format!("webOrigins[{i}]"), format!("{}: {why}", shown(o)));
        }
    }
    for (field, url, relative) in
        [("rootUrl", &spec.root_url, false), ("adminUrl", &spec.admin_url, true), ("baseUrl", &spec.base_url, true)]
    {
        if let Some(u) = url
            && let Err(why) = check_url(u, relative)
        {
            e.push(field, format!("{}: {why}", shown(u)));
        }
    }
}

/// Name lists: scopes, roles, audiences, protocol mappers, service-account roles.
fn names(spec: &KeycloakClientSpec, e: &mut Errors) {
    if let Some(list) = &spec.default_client_scopes {
        name_set("defaultClientScopes", list, Some(MAX_ITEMS), e);
    }
    if let Some(list) = &spec.optional_client_scopes {
        name_set("optionalClientScopes", list, Some(MAX_ITEMS), e);
    }
    if let (Some(default), Some(optional)) = (&spec.default_client_scopes, &spec.optional_client_scopes) {
        for (i, s) in optional.iter().enumerate() {
            if default.contains(s) {
                e.push(
                    format!("optionalClientScopes[{i}]"),
                    format!(
                        "{s:?} is also in defaultClientScopes; must not repeat a scope of spec.defaultClientScopes (a scope is either default or optional)"
                    ),
                );
            }
        }
    }
    if let Some(list) = &spec.client_roles {
        name_set("clientRoles", list, None, e);
    }
    if let Some(list) = &spec.audiences {
        name_set("audiences", list, None, e);
        if spec.protocol != Protocol::OpenIdConnect && !list.is_empty() {
            e.push("audiences", "audience mappers exist only for protocol openid-connect");
        }
    }
    if let Some(mappers) = &spec.protocol_mappers {
        protocol_mappers(spec, mappers, e);
    }
    if let Some(roles) = &spec.service_account_roles {
        if let Some(list) = &roles.realm_roles {
            name_set("serviceAccountRoles.realmRoles", list, None, e);
        }
        for (client, list) in roles.client_roles.iter().flatten() {
            if client.trim().is_empty() {
                e.push("serviceAccountRoles.clientRoles", "client ids (keys) must not be empty");
            }
            name_set(&format!("serviceAccountRoles.clientRoles.{client}"), list, None, e);
        }
    }
}

/// `spec.protocolMappers`: at most [`MAX_ITEMS`], names unique and not kco's own, each valid.
fn protocol_mappers(spec: &KeycloakClientSpec, mappers: &[ProtocolMapper], e: &mut Errors) {
    too_many("protocolMappers", mappers.len(), MAX_ITEMS, e);
    let mut seen = BTreeSet::new();
    for (i, m) in mappers.iter().enumerate() {
        let at = format!("protocolMappers[{i}]");
        if let Err(why) = check_name(&m.name) {
            e.push(format!("{at}.name"), why);
        } else if !seen.insert(m.name.as_str()) {
            e.push(format!("{at}.name"), format!("duplicate mapper name {:?}; mapper names must be unique", m.name));
        }
        protocol_mapper(spec, &at, m, e);
    }
}

/// One protocol mapper, beyond its name: not named like kco's own, its protocol the client's, its type
/// a name, no empty config key.
fn protocol_mapper(spec: &KeycloakClientSpec, at: &str, m: &ProtocolMapper, e: &mut Errors) {
    if m.name.starts_with(AUDIENCE_MAPPER_PREFIX) {
        e.push(
            format!("{at}.name"),
            format!(
                "must not start with {AUDIENCE_MAPPER_PREFIX} (kco names the mappers of spec.audiences so); rename it"
            ),
        );
    }
    if !["openid-connect", "saml", "docker-v2"].contains(&m.protocol.as_str()) {
        e.push(
            format!("{at}.protocol"),
            format!("{:?} is not a protocol; use openid-connect, saml or docker-v2", m.protocol),
        );
    } else if m.protocol != spec.protocol.as_str() {
        e.push(
            format!("{at}.protocol"),
            format!("{:?}: every mapper's protocol must equal spec.protocol ({})", m.protocol, spec.protocol.as_str()),
        );
    }
    if let Err(why) = check_name(&m.protocol_mapper) {
        e.push(format!("{at}.protocolMapper"), format!("{why}; name the mapper type, e.g. oidc-audience-mapper"));
    }
    for k in m.config.keys() {
        if k.trim().is_empty() {
            e.push(format!("{at}.config"), "keys must not be empty");
        }
    }
}

fn settings(spec: &KeycloakClientSpec, e: &mut Errors) {
    for (_, field, v) in crate::desired::seconds_settings(&spec.settings) {
        match v {
            Some(n) if n < 0 => {
                e.push(field, format!("{n} is negative; give seconds (>= 0), or omit it for the realm's value"))
            }
            Some(n) if n > i64::from(i32::MAX) => {
                e.push(field, format!("{n} is too large; at most {} seconds", i32::MAX))
            }
            _ => {}
        }
    }
    if let Some(flows) = &spec.authentication_flows {
        for (field, alias) in [
            ("authenticationFlows.browserFlow", &flows.browser_flow),
            ("authenticationFlows.directGrantFlow", &flows.direct_grant_flow),
            ("authenticationFlows.clientAuthenticationFlow", &flows.client_authentication_flow),
        ] {
            if alias.as_deref().is_some_and(|a| a.trim().is_empty()) {
                e.push(field, "must name a flow alias of the realm, or be omitted");
            }
        }
    }
}

/// `spec.attributes`: not kco's owner record, and not a key a typed field already manages.
fn attributes(spec: &KeycloakClientSpec, e: &mut Errors) {
    let Some(attrs) = &spec.attributes else {
        return;
    };
    let typed = crate::desired::typed_attributes(spec);
    for key in attrs.keys() {
        if key.trim().is_empty() {
            e.push("attributes", "keys must not be empty");
        } else if key == OWNER_ATTRIBUTE {
            e.push(
                format!("attributes.{key}"),
                format!("must not set {OWNER_ATTRIBUTE}; kco records the owning KeycloakClient there"),
            );
        } else if key.starts_with("kco.dev/") {
            e.push(format!("attributes.{key}"), "must not use the kco.dev/ prefix; kco keeps its own records there");
        } else if let Some((_, field, _)) = typed.iter().find(|(k, _, value)| *k == key && value.is_some()) {
            e.push(
                format!("attributes.{key}"),
                format!(
                    "conflicts with spec.{field}, which manages the same Keycloak attribute; set only spec.{field}"
                ),
            );
        }
    }
}

/// The managed Secret's name and metadata, and the additional Secrets.
fn managed_secrets(spec: &KeycloakClientSpec, e: &mut Errors) {
    if let Some(n) = &spec.secret_name
        && let Err(why) = check_object_name(n)
    {
        e.push("secretName", why);
    }
    if let Some(meta) = &spec.secret_metadata {
        for (k, v) in meta.labels.iter().flatten() {
            if let Err(why) = check_qualified_name(k) {
                e.push(format!("secretMetadata.labels.{k}"), format!("key {k:?}: {why}"));
            }
            if let Err(why) = check_label_value(v) {
                e.push(format!("secretMetadata.labels.{k}"), why);
            }
        }
        for k in meta.annotations.iter().flatten().map(|(k, _)| k) {
            if let Err(why) = check_qualified_name(k) {
                e.push(format!("secretMetadata.annotations.{k}"), format!("key {k:?}: {why}"));
            }
        }
    }
    if let Some(list) = &spec.additional_secrets {
        too_many("additionalSecrets", list.len(), MAX_ADDITIONAL_SECRETS, e);
        let mut seen = BTreeSet::new();
        for (i, s) in list.iter().enumerate() {
            additional_secret(spec, i, s, &mut seen, e);
        }
    }
}

/// One `additionalSecrets` entry: its own rules live in [`formats`] (shared with rendering); here what
/// spans entries (unique names, not the managed Secret) and its metadata.
fn additional_secret<'a>(
    spec: &KeycloakClientSpec,
    index: usize,
    s: &'a AdditionalSecret,
    seen: &mut BTreeSet<&'a str>,
    e: &mut Errors,
) {
    let at = format!("additionalSecrets[{index}]");
    for err in formats::validate_additional(s, index, spec.public_client) {
        e.push(err.field, err.message);
    }
    if !seen.insert(s.name.as_str()) {
        e.push(
            format!("{at}.name"),
            format!("duplicate Secret name {:?}; each additional Secret needs its own", s.name),
        );
    } else if spec.secret_name.as_deref() == Some(s.name.as_str()) {
        e.push(
            format!("{at}.name"),
            format!("{:?} is the managed Secret (spec.secretName); choose another name", s.name),
        );
    }
    if let Some(ns) = &s.namespace
        && !crate::kube_names::is_dns_label(ns)
    {
        e.push(
            format!("{at}.namespace"),
            format!("{ns:?} is not a namespace name (lowercase letters, digits and '-', at most 63 characters)"),
        );
    }
    for (k, v) in s.labels.iter().flatten() {
        if let Err(why) = check_qualified_name(k) {
            e.push(format!("{at}.labels.{k}"), format!("key {k:?}: {why}"));
        }
        if let Err(why) = check_label_value(v) {
            e.push(format!("{at}.labels.{k}"), why);
        }
    }
    for k in s.annotations.iter().flatten().map(|(k, _)| k) {
        if let Err(why) = check_qualified_name(k) {
            e.push(format!("{at}.annotations.{k}"), format!("key {k:?}: {why}"));
        }
    }
}

/// `secretRotation`: the grammar lives in [`schedule`] (shared with the scheduler); here also the
/// relation between the grace period and the period.
fn rotation(r: &SecretRotation, e: &mut Errors) {
    for err in schedule::check_rotation(r) {
        e.push(err.field, err.message);
    }
    if let (Ok(period), Some(Ok(grace))) =
        (schedule::parse_period(&r.rotation_period), r.grace_period.as_deref().map(schedule::parse_grace_period))
        && grace >= period
    {
        e.push(
            "secretRotation.gracePeriod",
            format!(
                "{:?} must be shorter than rotationPeriod ({:?}); the previous secret would outlive the next rotation",
                r.grace_period.as_deref().unwrap_or_default(),
                r.rotation_period
            ),
        );
    }
}

// ---- Authorization Services -------------------------------------------------------------------

const AUTHZ: &str = "authorizationSettings";

fn authorization(a: &AuthorizationSettings, e: &mut Errors) {
    let scope_names = a.scopes.as_ref().map(|scopes| {
        let mut seen = BTreeSet::new();
        for (i, s) in scopes.iter().enumerate() {
            unique_name(&format!("{AUTHZ}.scopes[{i}].name"), &s.name, &mut seen, "scope", e);
        }
        seen
    });
    let resource_names = a.resources.as_ref().map(|resources| {
        let mut seen = BTreeSet::new();
        for (i, r) in resources.iter().enumerate() {
            let at = format!("{AUTHZ}.resources[{i}]");
            unique_name(&format!("{at}.name"), &r.name, &mut seen, "resource", e);
            let mut uris = BTreeSet::new();
            for (j, uri) in r.uris.iter().enumerate() {
                if uri.trim().is_empty() || uri.len() > MAX_URI {
                    e.push(
                        format!("{at}.uris[{j}]"),
                        format!("must be a non-empty path of at most {MAX_URI} characters"),
                    );
                } else if !uris.insert(uri.as_str()) {
                    e.push(format!("{at}.uris[{j}]"), format!("duplicate {uri:?}; list each entry once"));
                }
            }
            name_set(&format!("{at}.scopes"), &r.scopes, None, e);
            known(&format!("{at}.scopes"), &r.scopes, scope_names.as_ref(), "scope", "authorizationSettings.scopes", e);
        }
        seen
    });
    // Keycloak keeps policies and permissions in one namespace per client: names are unique across both.
    let mut all_names = BTreeSet::new();
    let policy_names = a.policies.as_ref().map(|p| policies(p, &mut all_names, e));
    let Some(perms) = &a.permissions else {
        return;
    };
    for (i, p) in perms.resource_permissions.iter().enumerate() {
        let at = format!("{AUTHZ}.permissions.resourcePermissions[{i}]");
        unique_name(&format!("{at}.name"), &p.name, &mut all_names, "policy or permission", e);
        if p.resources.is_empty() == p.resource_type.is_none() {
            e.push(at.clone(), "set either resources or resourceType (exactly one)");
        }
        if p.resource_type.as_deref().is_some_and(|t| t.trim().is_empty()) {
            e.push(format!("{at}.resourceType"), "must not be empty");
        }
        permission_refs(&at, &p.resources, &p.policies, resource_names.as_ref(), policy_names.as_ref(), e);
    }
    for (i, p) in perms.scope_permissions.iter().enumerate() {
        let at = format!("{AUTHZ}.permissions.scopePermissions[{i}]");
        unique_name(&format!("{at}.name"), &p.name, &mut all_names, "policy or permission", e);
        if p.scopes.is_empty() {
            e.push(format!("{at}.scopes"), "must name at least one scope");
        }
        if p.resource_type.as_deref().is_some_and(|t| t.trim().is_empty()) {
            e.push(format!("{at}.resourceType"), "must not be empty");
        }
        name_set(&format!("{at}.scopes"), &p.scopes, None, e);
        known(&format!("{at}.scopes"), &p.scopes, scope_names.as_ref(), "scope", "authorizationSettings.scopes", e);
        permission_refs(&at, &p.resources, &p.policies, resource_names.as_ref(), policy_names.as_ref(), e);
    }
}

/// Checks every policy; returns the policy names (for references). `all_names` collects them too.
fn policies<'a>(p: &'a AuthzPolicies, all_names: &mut BTreeSet<&'a str>, e: &mut Errors) -> BTreeSet<&'a str> {
    let base = format!("{AUTHZ}.policies");
    if !p.javascript_policies.is_empty() && !p.allow_java_script_policies {
        e.push(
            format!("{base}.javascriptPolicies"),
            "requires allowJavaScriptPolicies: true (JavaScript policies need a security review; opt in explicitly)",
        );
    }
    let mut named = |list: &str, i: usize, name: &'a str, e: &mut Errors| {
        let at = format!("{base}.{list}[{i}]");
        unique_name(&format!("{at}.name"), name, all_names, "policy or permission", e);
        at
    };
    for (i, r) in p.role_policies.iter().enumerate() {
        let at = named("rolePolicies", i, &r.name, e);
        role_policy(&at, r, e);
    }
    for (i, u) in p.user_policies.iter().enumerate() {
        let at = named("userPolicies", i, &u.name, e);
        subjects(&format!("{at}.users"), &u.users, "user", e);
    }
    for (i, g) in p.group_policies.iter().enumerate() {
        let at = named("groupPolicies", i, &g.name, e);
        group_policy(&at, g, e);
    }
    for (i, c) in p.client_policies.iter().enumerate() {
        let at = named("clientPolicies", i, &c.name, e);
        subjects(&format!("{at}.clients"), &c.clients, "client", e);
    }
    for (i, t) in p.time_policies.iter().enumerate() {
        let at = named("timePolicies", i, &t.name, e);
        time_policy(&at, t, e);
    }
    for (i, r) in p.regex_policies.iter().enumerate() {
        let at = named("regexPolicies", i, &r.name, e);
        regex_policy(&at, r, e);
    }
    for (i, j) in p.javascript_policies.iter().enumerate() {
        let at = named("javascriptPolicies", i, &j.name, e);
        if j.code.trim().is_empty() {
            e.push(format!("{at}.code"), "must not be empty");
        }
    }
    for (i, a) in p.aggregate_policies.iter().enumerate() {
        named("aggregatePolicies", i, &a.name, e);
    }
    let names: BTreeSet<&str> = policy_names(p);
    aggregate_policies(&base, p, &names, e);
    names
}

fn role_policy(at: &str, r: &RolePolicy, e: &mut Errors) {
    if r.roles.is_empty() {
        e.push(format!("{at}.roles"), "must name at least one role");
    }
    let mut seen = BTreeSet::new();
    for (j, role) in r.roles.iter().enumerate() {
        let field = format!("{at}.roles[{j}].name");
        if let Err(why) = check_policy_role(&role.name) {
            e.push(field, why);
        } else if !seen.insert(role.name.as_str()) {
            e.push(field, format!("duplicate role {:?}; list each role once", role.name));
        }
    }
}

fn group_policy(at: &str, g: &GroupPolicy, e: &mut Errors) {
    subjects(&format!("{at}.groups"), &g.groups, "group", e);
    for (j, path) in g.groups.iter().enumerate() {
        if !path.starts_with('/') || path.len() < 2 {
            e.push(format!("{at}.groups[{j}]"), format!("{path:?} is not a group path; write it like /finance"));
        }
    }
    if g.groups_claim.trim().is_empty() {
        e.push(format!("{at}.groupsClaim"), "must not be empty; the default is groups");
    }
}

fn regex_policy(at: &str, r: &RegexPolicy, e: &mut Errors) {
    if r.target_claim.trim().is_empty() {
        e.push(format!("{at}.targetClaim"), "must name the claim the pattern is matched against");
    }
    if r.pattern.is_empty() {
        e.push(format!("{at}.pattern"), "must not be empty");
    }
}

/// What each aggregate includes: known policies, not itself, no cycle. `names`: every policy's name.
fn aggregate_policies(base: &str, p: &AuthzPolicies, names: &BTreeSet<&str>, e: &mut Errors) {
    for (i, a) in p.aggregate_policies.iter().enumerate() {
        let at = format!("{base}.aggregatePolicies[{i}].policies");
        subjects(&at, &a.policies, "policy", e);
        known(&at, &a.policies, Some(names), "policy", "authorizationSettings.policies", e);
        if a.policies.contains(&a.name) {
            e.push(at, format!("aggregate policy {:?} must not include itself", a.name));
        }
    }
    aggregate_cycles(p, e);
}

fn policy_names(p: &AuthzPolicies) -> BTreeSet<&str> {
    let mut names = BTreeSet::new();
    names.extend(p.role_policies.iter().map(|x| x.name.as_str()));
    names.extend(p.user_policies.iter().map(|x| x.name.as_str()));
    names.extend(p.group_policies.iter().map(|x| x.name.as_str()));
    names.extend(p.client_policies.iter().map(|x| x.name.as_str()));
    names.extend(p.time_policies.iter().map(|x| x.name.as_str()));
    names.extend(p.regex_policies.iter().map(|x| x.name.as_str()));
    names.extend(p.aggregate_policies.iter().map(|x| x.name.as_str()));
    names.extend(p.javascript_policies.iter().map(|x| x.name.as_str()));
    names
}

/// Aggregate policies that include each other in a loop (longer than a self-reference).
fn aggregate_cycles(p: &AuthzPolicies, e: &mut Errors) {
    let graph: BTreeMap<&str, Vec<&str>> = p
        .aggregate_policies
        .iter()
        .map(|a| (a.name.as_str(), a.policies.iter().map(String::as_str).collect()))
        .collect();
    for (i, a) in p.aggregate_policies.iter().enumerate() {
        // Depth-first from each aggregate's children; a path back to it is a cycle.
        let mut stack: Vec<&str> = a.policies.iter().map(String::as_str).filter(|x| *x != a.name).collect();
        let mut visited = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if n == a.name {
                e.push(
                    format!("{AUTHZ}.policies.aggregatePolicies[{i}].policies"),
                    format!(
                        "aggregate policy {:?} includes itself through other aggregate policies; break the cycle",
                        a.name
                    ),
                );
                break;
            }
            if visited.insert(n)
                && let Some(children) = graph.get(n)
            {
                stack.extend(children.iter().copied());
            }
        }
    }
}

fn time_policy(at: &str, t: &TimePolicy, e: &mut Errors) {
    let any = t.not_before.is_some()
        || t.not_on_or_after.is_some()
        || t.day_month.is_some()
        || t.month.is_some()
        || t.year.is_some()
        || t.hour.is_some()
        || t.minute.is_some();
    if !any {
        e.push(at.to_string(), "set at least one of notBefore, notOnOrAfter, dayMonth, month, year, hour, minute");
    }
    let ranges = [
        ("dayMonth", "dayMonthEnd", t.day_month, t.day_month_end, 1, 31),
        ("month", "monthEnd", t.month, t.month_end, 1, 12),
        ("year", "yearEnd", t.year, t.year_end, 1, 9999),
        ("hour", "hourEnd", t.hour, t.hour_end, 0, 23),
        ("minute", "minuteEnd", t.minute, t.minute_end, 0, 59),
    ];
    for (start_field, end_field, start, end, min, max) in ranges {
        for (field, v) in [(start_field, start), (end_field, end)] {
            if let Some(v) = v
                && !(min..=max).contains(&v)
            {
                e.push(format!("{at}.{field}"), format!("{v} is out of range; use {min} to {max}"));
            }
        }
        match (start, end) {
            (None, Some(_)) => {
                e.push(format!("{at}.{end_field}"), format!("needs {start_field} and must not be before it"))
            }
            (Some(s), Some(x)) if x < s => e.push(
                format!("{at}.{end_field}"),
                format!("needs {start_field} and must not be before it ({x} < {s})"),
            ),
            _ => {}
        }
    }
    let mut parsed = Vec::new();
    for (field, v) in [("notBefore", &t.not_before), ("notOnOrAfter", &t.not_on_or_after)] {
        if let Some(v) = v {
            match jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", v) {
                Ok(dt) => parsed.push(dt),
                Err(_) => e.push(
                    format!("{at}.{field}"),
                    format!("{v:?} is not a date and time; write it as yyyy-MM-dd HH:mm:ss, like 2026-01-31 08:00:00"),
                ),
            }
        }
    }
    if let (Some(_), Some(_), [before, after]) = (&t.not_before, &t.not_on_or_after, parsed.as_slice())
        && after <= before
    {
        e.push(format!("{at}.notOnOrAfter"), "must be after notBefore");
    }
}

fn subjects(field: &str, list: &[String], what: &str, e: &mut Errors) {
    if list.is_empty() {
        e.push(field, format!("must name at least one {what}"));
    }
    name_set(field, list, None, e);
}

/// A role of a role policy: a realm role `name`, or a client role `clientId/role`.
fn check_policy_role(name: &str) -> Result<(), String> {
    check_name(name)?;
    if let Some((client, role)) = name.split_once('/')
        && (client.trim().is_empty() || role.trim().is_empty())
    {
        return Err(format!("{name:?}: write a realm role as its name, a client role as clientId/role"));
    }
    Ok(())
}

fn unique_name<'a>(field: &str, name: &'a str, seen: &mut BTreeSet<&'a str>, what: &str, e: &mut Errors) {
    if let Err(why) = check_name(name) {
        e.push(field, why);
    } else if !seen.insert(name) {
        e.push(field, format!("duplicate {what} name {name:?}; names must be unique"));
    }
}

/// A permission's `resources` and `policies`: each listed once, each naming something defined.
fn permission_refs(
    at: &str,
    resources: &[String],
    policies: &[String],
    resource_names: Option<&BTreeSet<&str>>,
    policy_names: Option<&BTreeSet<&str>>,
    e: &mut Errors,
) {
    name_set(&format!("{at}.resources"), resources, None, e);
    known(&format!("{at}.resources"), resources, resource_names, "resource", "authorizationSettings.resources", e);
    name_set(&format!("{at}.policies"), policies, None, e);
    known(&format!("{at}.policies"), policies, policy_names, "policy", "authorizationSettings.policies", e);
}

/// Every entry of `refs` names something in `known` (when that list is managed by this spec).
fn known(field: &str, refs: &[String], known: Option<&BTreeSet<&str>>, what: &str, list: &str, e: &mut Errors) {
    let Some(known) = known else {
        return;
    };
    for (i, r) in refs.iter().enumerate() {
        if !r.is_empty() && !known.contains(r.as_str()) {
            e.push(format!("{field}[{i}]"), format!("unknown {what} {r:?}; it must be declared in spec.{list}"));
        }
    }
}

// ---- Shared checks ----------------------------------------------------------------------------

fn too_many(field: &str, n: usize, max: usize, e: &mut Errors) {
    if n > max {
        e.push(field, format!("has {n} entries; at most {max} are allowed"));
    }
}

/// A list of names: each non-empty, at most [`MAX_NAME`] characters, listed once.
fn name_set(field: &str, list: &[String], max_items: Option<usize>, e: &mut Errors) {
    if let Some(max) = max_items {
        too_many(field, list.len(), max, e);
    }
    let mut seen = BTreeSet::new();
    for (i, n) in list.iter().enumerate() {
        if let Err(why) = check_name(n) {
            e.push(format!("{field}[{i}]"), why);
        } else if !seen.insert(n.as_str()) {
            e.push(format!("{field}[{i}]"), format!("duplicate {n:?}; list each entry once"));
        }
    }
}

fn check_name(n: &str) -> Result<(), String> {
    if n.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if n.chars().count() > MAX_NAME {
        return Err(format!("must be at most {MAX_NAME} characters"));
    }
    // Names travel in Admin API paths: "." and ".." would leave their place in the path.
    if !kco_keycloak::is_plain_segment(n) {
        return Err("must not be \".\" or \"..\" or contain control characters".into());
    }
    Ok(())
}

/// A long value shortened for a message.
fn shown(s: &str) -> String {
    if s.chars().count() > 80 {
        let head: String = s.chars().take(77).collect();
        format!("{:?}", format!("{head}..."))
    } else {
        format!("{s:?}")
    }
}

/// An absolute URI parsed by the `url` crate (WHATWG rules), or why it is not one. A path starting
/// with `/` (relative to rootUrl) is not parsed here.
fn absolute(uri: &str) -> Result<url::Url, url::ParseError> {
    url::Url::parse(uri)
}

/// The host of an absolute `scheme://host…` URI as written (`None` without `//`). The `url` crate
/// forgives `http:///x` (host `x`) and `http:x`; a host-less http(s) URI must still be refused.
fn written_host(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once("://")?;
    rest.split(['/', '?', '#']).next()
}

fn uri_basics(uri: &str) -> Result<(), String> {
    if uri.is_empty() {
        return Err("must not be empty".into());
    }
    if uri.len() > MAX_URI {
        return Err(format!("must be at most {MAX_URI} characters"));
    }
    if uri.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    if absolute(uri).is_ok_and(|u| matches!(u.scheme(), "javascript" | "data")) {
        return Err("must not use the javascript: or data: scheme".into());
    }
    Ok(())
}

fn is_http(u: &url::Url) -> bool {
    matches!(u.scheme(), "http" | "https")
}

/// The reference's redirect URI rules: bare `*` refused; a wildcard only as the last character of a
/// path, never in the host (nor the query); custom schemes (`myapp://callback`, `myapp:*`) accepted; a
/// path starting with `/` is relative to rootUrl; no fragment (OAuth 2.0 forbids one).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri == "*" {
        return Err("a bare \"*\" allows redirects anywhere; list the exact URIs or end a path with /*".into());
    }
    uri_basics(uri)?;
    let parsed = if uri.starts_with('/') {
        None
    } else {
        Some(absolute(uri).map_err(|e| {
            format!(
                "each entry must be an absolute URI with a scheme (https://app.example.com/callback, myapp://callback, myapp:*) or a path relative to rootUrl starting with / ({e})"
            )
        })?)
    };
    if parsed.as_ref().and_then(url::Url::host_str).is_some_and(|h| h.contains('*')) {
        return Err(
            "a wildcard in the host is not allowed; name the host and put the wildcard at the end of the path".into()
        );
    }
    if let Some(star) = uri.find('*')
        && star != uri.len() - 1
    {
        return Err("a wildcard is only allowed as the last character, e.g. https://app.example.com/*".into());
    }
    if uri.ends_with('*') && uri.contains('?') {
        return Err("a wildcard is only allowed at the end of a path, not in the query".into());
    }
    if uri.contains('#') {
        return Err("a redirect URI must not contain a fragment (#)".into());
    }
    if parsed.as_ref().is_some_and(is_http) && written_host(uri).is_none_or(str::is_empty) {
        return Err("an http(s) URI needs a host, e.g. https://app.example.com/callback".into());
    }
    Ok(())
}

/// `postLogoutRedirectUris`: the redirect URI rules, plus `+` ("the same as redirectUris").
pub fn check_post_logout_redirect_uri(uri: &str) -> Result<(), String> {
    if uri == "+" { Ok(()) } else { check_redirect_uri(uri) }
}

/// `webOrigins`: `+` (the redirect URIs' origins), `*`, or an origin: scheme, host and optional port.
pub fn check_web_origin(origin: &str) -> Result<(), String> {
    if origin == "+" || origin == "*" {
        return Ok(());
    }
    uri_basics(origin)?;
    let bad = || {
        "each entry must be \"+\" (the redirect URIs' origins), \"*\" or an origin like https://app.example.com (scheme, host and optional port; no path, no trailing slash, no wildcard)"
            .to_string()
    };
    let u = absolute(origin).map_err(|_| bad())?;
    let host = written_host(origin).ok_or_else(bad)?;
    // Nothing after the host (and port) as written: no path, no trailing slash, no query.
    let only_origin = origin.split_once("://").is_some_and(|(_, rest)| rest == host);
    if host.is_empty() || host.contains('*') || host.contains('@') || !only_origin || u.host_str().is_none() {
        return Err(bad());
    }
    Ok(())
}

/// rootUrl (`relative` false), adminUrl and baseUrl (`relative` true): empty, an absolute URL with a
/// host, one starting with `${authBaseUrl}`/`${authAdminUrl}`, or (relative) a path starting with `/`.
pub fn check_url(url: &str, relative: bool) -> Result<(), String> {
    if url.is_empty() {
        return Ok(());
    }
    uri_basics(url)?;
    if url.contains('*') {
        return Err("must not contain a wildcard (*)".into());
    }
    let placeholder = url.starts_with("${authBaseUrl}") || url.starts_with("${authAdminUrl}");
    let absolute = absolute(url).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()))
        && written_host(url).is_some_and(|h| !h.is_empty());
    if !(placeholder || absolute || (relative && url.starts_with('/'))) {
        let rel = if relative { ", a path starting with /" } else { "" };
        return Err(format!(
            "must be an absolute URL with a host like https://app.example.com{rel} or start with ${{authBaseUrl}}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> KeycloakClientSpec {
        let mut base = json!({"clientId": "app", "realmRef": {"name": "realm"}});
        if let (Some(b), Some(x)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    fn errors(extra: serde_json::Value) -> Vec<String> {
        validate_client(&spec(extra)).iter().map(ToString::to_string).collect()
    }

    #[track_caller]
    fn refused(extra: serde_json::Value, says: &str) {
        let errs = errors(extra);
        assert!(errs.iter().any(|e| e.contains(says)), "expected an error containing {says:?}, got {errs:?}");
    }

    #[track_caller]
    fn accepted(extra: serde_json::Value) {
        let errs = errors(extra);
        assert!(errs.is_empty(), "expected no errors, got {errs:?}");
    }

    #[test]
    fn minimal_spec_is_valid() {
        accepted(json!({}));
    }

    #[test]
    fn reference_examples_are_valid() {
        accepted(json!({
            "clientName": "Team A Web App",
            "redirectUris": ["https://app.example.com/callback"],
            "webOrigins": ["https://app.example.com"],
            "postLogoutRedirectUris": ["https://app.example.com"],
            "settings": {"standardFlowEnabled": true, "directAccessGrantsEnabled": false},
            "secretRotation": {"enabled": true, "rotationPeriod": "30d", "rotationTime": "02:00", "timezone": "UTC"}
        }));
        accepted(json!({
            "publicClient": true,
            "redirectUris": ["https://spa.example.com/*"],
            "webOrigins": ["https://spa.example.com"],
            "settings": {"standardFlowEnabled": true, "implicitFlowEnabled": false, "pkceCodeChallengeMethod": "S256"}
        }));
        accepted(json!({
            "bearerOnly": true,
            "settings": {"standardFlowEnabled": false, "authorizationServicesEnabled": true},
            "authorizationSettings": {
                "scopes": [{"name": "read"}, {"name": "write"}],
                "resources": [{"name": "documents", "uris": ["/api/documents/*"], "scopes": ["read", "write"]}],
                "policies": {
                    "rolePolicies": [{"name": "document-editors", "roles": [{"name": "editor"}]}],
                    "groupPolicies": [{"name": "finance-team", "groups": ["/finance"]}]
                },
                "permissions": {"scopePermissions": [
                    {"name": "documents-read", "resources": ["documents"], "scopes": ["read"], "policies": ["finance-team"]},
                    {"name": "documents-write", "resources": ["documents"], "scopes": ["write"], "policies": ["document-editors"]}
                ]}
            }
        }));
    }

    #[test]
    fn redirect_uris_follow_the_reference() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com/*",
            "myapp://callback",
            "myapp:*",
            "/relative/*",
            "http://localhost:8080/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("*", "bare"),
            ("https://*.example.com/cb", "wildcard in the host"),
            ("https://app.example.com*", "wildcard in the host"),
            ("https://app.example.com/*/cb", "only allowed as the last character"),
            ("https://app.example.com/cb?x=*", "not in the query"),
            ("https://app.example.com/cb#frag", "fragment"),
            ("app.example.com/cb", "absolute URI with a scheme"),
            ("https:/cb", "needs a host"),
            ("javascript:alert(1)", "javascript"),
            ("https://app.example.com/a b", "whitespace"),
            ("", "must not be empty"),
        ] {
            let got = check_redirect_uri(bad);
            assert!(got.as_ref().is_err_and(|e| e.contains(says)), "{bad:?}: {got:?}");
        }
        assert_eq!(check_post_logout_redirect_uri("+"), Ok(()));
        assert!(check_redirect_uri("+").is_err());
    }

    #[test]
    fn uris_the_url_parser_would_forgive_are_still_refused() {
        // WHATWG parsing turns `http:///x` into host `x`; kco wants the host written.
        assert!(check_redirect_uri("http:///x").unwrap_err().contains("needs a host"));
        assert!(check_redirect_uri("https://app.example.com:99999/cb").unwrap_err().contains("invalid port"));
        assert!(check_web_origin("https://user:pw@app.example.com").is_err());
        assert!(check_web_origin("https://app.example.com/").is_err());
        assert!(check_web_origin("https://app.example.com:8443").is_ok());
        assert!(check_web_origin("https://app.example.com?x=1").is_err());
        assert!(check_url("http:///x", false).is_err());
        assert!(check_url("https://€.example.com/app", false).is_ok());
        assert!(check_redirect_uri("myapp:*").is_ok());
    }

    #[test]
    fn web_origins_and_urls() {
        for ok in ["+", "*", "https://app.example.com", "http://localhost:3000", "capacitor://localhost"] {
            assert_eq!(check_web_origin(ok), Ok(()), "{ok}");
        }
        for bad in ["https://app.example.com/", "https://app.example.com/path", "https://*.example.com", "app", ""] {
            assert!(check_web_origin(bad).is_err(), "{bad}");
        }
        assert_eq!(check_url("", false), Ok(()));
        assert_eq!(check_url("${authBaseUrl}", false), Ok(()));
        assert_eq!(check_url("https://app.example.com/#/home", false), Ok(()));
        assert_eq!(check_url("/admin", true), Ok(()));
        assert!(check_url("/admin", false).is_err());
        assert!(check_url("https://app.example.com/*", false).is_err());
        assert!(check_url("app.example.com", true).is_err());
    }

    #[test]
    fn secret_rules() {
        refused(
            json!({"publicClient": true, "clientSecret": {"name": "s", "key": "k"}}),
            "cannot be used with publicClient: true",
        );
        refused(
            json!({"clientSecret": {"name": "s", "key": "k"}, "secretRotation": {"enabled": true}}),
            "cannot be combined with secretRotation.enabled: true",
        );
        accepted(json!({"clientSecret": {"name": "s", "key": "k"}, "secretRotation": {"enabled": false}}));
        refused(json!({"clientSecret": {"name": "S_x", "key": "k"}}), "spec.clientSecret.name");
        refused(json!({"secretName": "Bad_Name"}), "spec.secretName");
        refused(json!({"publicClient": true, "secretRotation": {"enabled": true}}), "no secret to rotate");
        refused(json!({"clientSecret": {"name": "s", "key": "k"}, "regenerateSecret": true}), "spec.regenerateSecret");
    }

    #[test]
    fn rotation_uses_the_schedule_grammar() {
        refused(json!({"secretRotation": {"rotationPeriod": "90"}}), "spec.secretRotation.rotationPeriod");
        refused(json!({"secretRotation": {"rotationTime": "7:00"}}), "spec.secretRotation.rotationTime");
        refused(json!({"secretRotation": {"timezone": "Mars/Olympus"}}), "spec.secretRotation.timezone");
        refused(
            json!({"secretRotation": {"rotationPeriod": "1h", "gracePeriod": "2h"}}),
            "shorter than rotationPeriod",
        );
        accepted(
            json!({"secretRotation": {"enabled": true, "rotationPeriod": "1d", "gracePeriod": "1h", "timezone": "Europe/Amsterdam"}}),
        );
    }

    #[test]
    fn names_are_non_empty_and_unique() {
        refused(json!({"clientRoles": ["a", "a"]}), "spec.clientRoles[1]: duplicate");
        refused(json!({"clientRoles": [""]}), "spec.clientRoles[0]: must not be empty");
        refused(json!({"defaultClientScopes": ["x"], "optionalClientScopes": ["x"]}), "must not repeat a scope");
        refused(
            json!({"protocolMappers": [
                {"name": "m", "protocolMapper": "oidc-audience-mapper"},
                {"name": "m", "protocolMapper": "oidc-audience-mapper"}
            ]}),
            "duplicate mapper name",
        );
        refused(json!({"protocolMappers": [{"name": "", "protocolMapper": "x"}]}), "protocolMappers[0].name");
        refused(json!({"protocolMappers": [{"name": "kco-audience-x", "protocolMapper": "x"}]}), "kco-audience-");
        refused(
            json!({"protocolMappers": [{"name": "m", "protocol": "saml", "protocolMapper": "x"}]}),
            "must equal spec.protocol",
        );
    }

    #[test]
    fn attributes_and_lifespans() {
        refused(json!({"attributes": {"kco.dev/owner": "x"}}), "kco.dev/owner");
        refused(
            json!({"settings": {"pkceCodeChallengeMethod": "S256"}, "attributes": {"pkce.code.challenge.method": "plain"}}),
            "conflicts with spec.settings.pkceCodeChallengeMethod",
        );
        // Scalar settings are always managed (omitted = Keycloak's default), so the map may not set them.
        refused(
            json!({"attributes": {"pkce.code.challenge.method": "S256"}}),
            "conflicts with spec.settings.pkceCodeChallengeMethod",
        );
        refused(json!({"attributes": {"kco.dev/attributes": "[]"}}), "must not use the kco.dev/ prefix");
        refused(
            json!({"additionalSecrets": [{"name": "x", "namespace": "Not_A_Namespace", "format": "mlflow"}]}),
            "additionalSecrets[0].namespace",
        );
        accepted(json!({"additionalSecrets": [{"name": "x", "namespace": "mlflow", "format": "mlflow"}]}));
        // The list postLogoutRedirectUris is unmanaged when omitted: the raw attribute is the user's.
        accepted(json!({"attributes": {"post.logout.redirect.uris": "https://a"}}));
        refused(json!({"settings": {"accessTokenLifespan": -1}}), "spec.settings.accessTokenLifespan: -1 is negative");
        refused(
            json!({"settings": {"offlineSessionMaxLifespan": -5}}),
            "spec.settings.offlineSessionMaxLifespan: -5 is negative",
        );
        refused(
            json!({"settings": {"offlineSessionMaxLifespan": 60},
                   "attributes": {"client.offline.session.max.lifespan": "90"}}),
            "conflicts with spec.settings.offlineSessionMaxLifespan",
        );
    }

    #[test]
    fn authorization_references() {
        let base = |perms: serde_json::Value, policies: serde_json::Value| {
            json!({
                "settings": {"authorizationServicesEnabled": true},
                "authorizationSettings": {
                    "scopes": [{"name": "read"}],
                    "resources": [{"name": "docs", "scopes": ["read"]}],
                    "policies": policies,
                    "permissions": perms
                }
            })
        };
        let editors = json!({"rolePolicies": [{"name": "editors", "roles": [{"name": "editor"}]}]});
        refused(
            base(
                json!({"scopePermissions": [{"name": "p", "scopes": ["write"], "policies": ["editors"]}]}),
                editors.clone(),
            ),
            "unknown scope \"write\"",
        );
        refused(
            base(
                json!({"scopePermissions": [{"name": "p", "scopes": ["read"], "policies": ["nobody"]}]}),
                editors.clone(),
            ),
            "unknown policy \"nobody\"",
        );
        refused(
            base(
                json!({"resourcePermissions": [{"name": "p", "resources": ["files"], "policies": ["editors"]}]}),
                editors.clone(),
            ),
            "unknown resource \"files\"",
        );
        refused(
            base(
                json!({"resourcePermissions": [{"name": "editors", "resources": ["docs"], "policies": ["editors"]}]}),
                editors.clone(),
            ),
            "duplicate policy or permission name",
        );
        refused(
            base(json!({}), json!({"javascriptPolicies": [{"name": "js", "code": "$evaluation.grant()"}]})),
            "requires allowJavaScriptPolicies: true",
        );
        refused(
            base(
                json!({}),
                json!({"aggregatePolicies": [
                    {"name": "a", "policies": ["b"]}, {"name": "b", "policies": ["a"]}
                ]}),
            ),
            "break the cycle",
        );
        refused(base(json!({}), json!({"timePolicies": [{"name": "t"}]})), "set at least one of");
        refused(
            base(json!({}), json!({"timePolicies": [{"name": "t", "notBefore": "2026-02-30 00:00:00"}]})),
            "is not a date and time",
        );
        refused(json!({"authorizationSettings": {}}), "requires settings.authorizationServicesEnabled: true");
    }

    #[test]
    fn every_error_names_a_spec_field() {
        let errs = validate_client(&spec(json!({
            "clientId": " ", "redirectUris": ["*"], "clientRoles": [""], "secretName": "X",
            "secretRotation": {"timezone": "Nowhere"}
        })));
        assert!(errs.len() >= 5, "{errs:?}");
        for e in errs {
            assert!(!e.field.is_empty() && e.to_string().starts_with("spec."), "{e}");
        }
    }
}
