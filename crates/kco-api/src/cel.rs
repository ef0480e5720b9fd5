//! Schema additions the derive cannot spell: CEL `x-kubernetes-validations`, bounds that keep the CEL
//! cost estimate inside the apiserver's budget, and list types. Each helper returns a schemars transform
//! used as `#[schemars(transform = ...)]` on a field; the rules mirror `kco_engine::validate`, which
//! holds the full set (CEL cannot check an IANA zone, references between authorization objects, …).
//!
//! Every message starts with the field's path so `kubectl apply` says what to fix.

use schemars::Schema;
use serde_json::{Map, Value, json};

/// RFC 3986 scheme followed by `:`, as a CEL regex fragment.
const SCHEME: &str = "[a-zA-Z][a-zA-Z0-9+.-]*:";
use crate::limits::{MAX_ADDITIONAL_SECRETS, MAX_ITEMS, MAX_NAME, MAX_URI};
/// DNS-1123 subdomain (object names such as a Secret's).
pub(crate) const DNS1123_SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// DNS-1123 label (namespace names).
pub(crate) const DNS1123_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A key of a Secret or ConfigMap.
pub(crate) const DATA_KEY: &str = "^[-._a-zA-Z0-9]+$";

pub(crate) fn rule(rule: &str, message: &str) -> Value {
    json!({"rule": rule, "message": message})
}

fn rule_at(rule: &str, message: &str, field_path: &str) -> Value {
    json!({"rule": rule, "message": message, "fieldPath": field_path})
}

/// A transform that deep-merges `patch` into the schema: objects merge key by key, rule lists are
/// appended, anything else replaces.
pub(crate) fn merge(patch: Value) -> impl FnMut(&mut Schema) {
    move |schema: &mut Schema| merge_into(schema.ensure_object(), &patch)
}

fn merge_into(target: &mut Map<String, Value>, patch: &Value) {
    let Value::Object(patch) = patch else {
        return;
    };
    for (k, v) in patch {
        match (target.get_mut(k), v) {
            (Some(Value::Object(t)), Value::Object(_)) => merge_into(t, v),
            (Some(Value::Array(t)), Value::Array(more)) if k == "x-kubernetes-validations" => {
                t.extend(more.iter().cloned())
            }
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Rules shared by every kind of URI: bounded, no whitespace, no `javascript:`/`data:` scheme.
fn uri_basics(field: &str) -> Vec<Value> {
    vec![
        rule("!self.matches('[[:space:]]')", &format!("{field} must not contain whitespace")),
        rule(
            "!self.matches('(?i)^(javascript|data):')",
            &format!("{field} must not use the javascript: or data: scheme"),
        ),
    ]
}

/// The reference's redirect URI rules (redirectUris, postLogoutRedirectUris): bare `*` refused; a
/// wildcard only as the last character of a path, never in the host; custom schemes accepted; a path
/// starting with `/` is relative to rootUrl; no fragment. `allow_plus`: `+` ("same as redirectUris").
pub(crate) fn redirect_uris(field: &'static str, allow_plus: bool) -> impl FnMut(&mut Schema) {
    let plus = if allow_plus { "self == '+' || " } else { "" };
    let plus_hint = if allow_plus { ", \"+\" (the redirect URIs)" } else { "" };
    let mut rules = vec![
        rule(
            "self != '*'",
            &format!("{field}: a bare \"*\" allows redirects anywhere; list the exact URIs or end a path with /*"),
        ),
        rule(
            &format!("{plus}self.matches('^({SCHEME}|/)')"),
            &format!(
                "{field}: each entry must be an absolute URI with a scheme (https://app.example.com/callback, myapp://callback, myapp:*){plus_hint} or a path relative to rootUrl starting with /"
            ),
        ),
        rule(
            "self.matches('^[^*]*[*]?$')",
            &format!("{field}: a wildcard is only allowed as the last character, e.g. https://app.example.com/*"),
        ),
        rule(
            &format!("!self.matches('^{SCHEME}//[^/?#]*[*]')"),
            &format!(
                "{field}: a wildcard in the host is not allowed; name the host and put the wildcard at the end of the path"
            ),
        ),
        rule(
            "!self.matches('[?][^*]*[*]$')",
            &format!("{field}: a wildcard is only allowed at the end of a path, not in the query"),
        ),
        rule("!self.contains('#')", &format!("{field}: a redirect URI must not contain a fragment (#)")),
        rule(
            "!self.matches('(?i)^https?:') || self.matches('(?i)^https?://[^/?#]+')",
            &format!("{field}: an http(s) URI needs a host, e.g. https://app.example.com/callback"),
        ),
    ];
    rules.extend(uri_basics(field));
    merge(json!({
        "maxItems": MAX_ITEMS,
        "items": {"minLength": 1, "maxLength": MAX_URI, "x-kubernetes-validations": rules},
    }))
}

/// webOrigins: `+` (the redirect URIs' origins), `*`, or an origin (scheme, host, optional port).
pub(crate) fn web_origins() -> impl FnMut(&mut Schema) {
    let field = "spec.webOrigins";
    let rules = vec![rule(
        &format!("self == '+' || self == '*' || self.matches('^{SCHEME}//[^/?#*[:space:]]+$')"),
        &format!(
            "{field}: each entry must be \"+\" (the redirect URIs' origins), \"*\" or an origin like https://app.example.com (scheme, host and optional port; no path, no trailing slash, no wildcard)"
        ),
    )];
    merge(json!({
        "maxItems": MAX_ITEMS,
        "items": {"minLength": 1, "maxLength": MAX_URI, "x-kubernetes-validations": rules},
    }))
}

/// rootUrl: empty, an absolute URL with a host, or one starting with `${authBaseUrl}`/`${authAdminUrl}`;
/// adminUrl and baseUrl (`relative`) may also be a path starting with `/` (resolved against rootUrl).
pub(crate) fn url(field: &'static str, relative: bool) -> impl FnMut(&mut Schema) {
    let rel = if relative { "|/" } else { "" };
    let rel_hint = if relative { ", a path starting with /" } else { "" };
    let mut rules = vec![
        rule(
            &format!(
                "self == '' || self.matches('^({SCHEME}//[^/?#*[:space:]]+|[$][{{]auth(Base|Admin)Url[}}]{rel})')"
            ),
            &format!(
                "{field} must be an absolute URL with a host like https://app.example.com{rel_hint} or start with ${{authBaseUrl}}"
            ),
        ),
        rule("!self.contains('*')", &format!("{field} must not contain a wildcard (*)")),
    ];
    rules.extend(uri_basics(field));
    merge(json!({"maxLength": MAX_URI, "x-kubernetes-validations": rules}))
}

/// A list of names that must be non-empty and unique (scopes, roles, audiences).
pub(crate) fn name_set() -> impl FnMut(&mut Schema) {
    merge(json!({
        "x-kubernetes-list-type": "set",
        "items": {"minLength": 1, "maxLength": MAX_NAME},
    }))
}

/// A bounded list of names that must be non-empty and unique (iterated by a cross-field rule).
pub(crate) fn bounded_name_set() -> impl FnMut(&mut Schema) {
    merge(json!({
        "maxItems": MAX_ITEMS,
        "x-kubernetes-list-type": "set",
        "items": {"minLength": 1, "maxLength": MAX_NAME},
    }))
}

/// A list of objects keyed by their unique `name`.
pub(crate) fn named_list() -> impl FnMut(&mut Schema) {
    merge(json!({
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    }))
}

/// A bounded list of objects keyed by their unique `name` (its items carry CEL rules).
pub(crate) fn bounded_named_list() -> impl FnMut(&mut Schema) {
    merge(json!({
        "maxItems": MAX_ITEMS,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    }))
}

/// Additional Secrets: at most 16, keyed by their unique `name`.
pub(crate) fn additional_secrets() -> impl FnMut(&mut Schema) {
    merge(json!({
        "maxItems": MAX_ADDITIONAL_SECRETS,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    }))
}

/// A non-empty name of at most [`MAX_NAME`] characters.
pub(crate) fn name() -> impl FnMut(&mut Schema) {
    merge(json!({"minLength": 1, "maxLength": MAX_NAME}))
}

/// A Kubernetes object name (DNS-1123 subdomain).
pub(crate) fn object_name(field: &'static str) -> impl FnMut(&mut Schema) {
    merge(json!({
        "maxLength": 253,
        "x-kubernetes-validations": [rule(
            &format!("self.matches('{DNS1123_SUBDOMAIN}')"),
            &format!("{field} must be a valid object name (DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"),
        )],
    }))
}

/// The name of a referenced object (DNS-1123 subdomain), as an OpenAPI pattern.
pub(crate) fn k8s_name() -> impl FnMut(&mut Schema) {
    merge(json!({"minLength": 1, "maxLength": 253, "pattern": DNS1123_SUBDOMAIN}))
}

/// A namespace name (DNS-1123 label), as an OpenAPI pattern.
pub(crate) fn k8s_namespace() -> impl FnMut(&mut Schema) {
    merge(json!({"minLength": 1, "maxLength": 63, "pattern": DNS1123_LABEL}))
}

/// A key of a Secret or ConfigMap, as an OpenAPI pattern.
pub(crate) fn data_key() -> impl FnMut(&mut Schema) {
    merge(json!({"minLength": 1, "maxLength": 253, "pattern": DATA_KEY}))
}

/// A duration like `90d`, `24h`, `30m`, `10s` (the grammar of `kco_engine::schedule`).
pub(crate) fn duration(field: &'static str) -> impl FnMut(&mut Schema) {
    merge(json!({
        "maxLength": 32,
        "x-kubernetes-validations": [
            rule(
                "self.matches('^[0-9]+[smhd]$')",
                &format!("{field} must be a number and a unit s, m, h or d, like 90d or 12h"),
            ),
            rule("!self.matches('^0+[smhd]$')", &format!("{field} must be positive")),
        ],
    }))
}

/// The client's immutable id.
pub(crate) fn client_id() -> impl FnMut(&mut Schema) {
    merge(json!({
        "minLength": 1,
        "maxLength": MAX_NAME,
        "x-kubernetes-validations": [
            rule("self == oldSelf", "spec.clientId is immutable once created; create a new KeycloakClient for another client id"),
            rule("self.matches('[^[:space:]]')", "spec.clientId must not be empty or blank"),
        ],
    }))
}

/// The realm a client lives in: moving it would leave the old client behind in the old realm.
pub(crate) fn realm_ref() -> impl FnMut(&mut Schema) {
    merge(json!({
        "x-kubernetes-validations": [
            rule("self == oldSelf", "spec.realmRef is immutable once created; create a new KeycloakClient for another realm"),
        ],
    }))
}

/// `spec`-level rules between fields (the reference's constraints and Keycloak's own).
pub(crate) fn client_spec_rules() -> impl FnMut(&mut Schema) {
    let rules = vec![
        rule_at(
            "!self.publicClient || !has(self.clientSecret)",
            "spec.clientSecret cannot be used with publicClient: true (a public client has no secret)",
            ".clientSecret",
        ),
        rule_at(
            "!has(self.clientSecret) || !has(self.secretRotation) || !self.secretRotation.enabled",
            "spec.clientSecret cannot be combined with secretRotation.enabled: true (kco cannot rotate a secret it does not own)",
            ".clientSecret",
        ),
        rule_at(
            "!has(self.clientSecret) || !self.regenerateSecret",
            "spec.regenerateSecret cannot be used with clientSecret (kco does not own that secret)",
            ".regenerateSecret",
        ),
        rule_at(
            "!self.publicClient || !has(self.secretRotation) || !self.secretRotation.enabled",
            "spec.secretRotation.enabled cannot be true with publicClient: true (a public client has no secret to rotate)",
            ".secretRotation",
        ),
        rule_at(
            "!self.publicClient || !self.settings.serviceAccountsEnabled",
            "spec.settings.serviceAccountsEnabled cannot be true with publicClient: true (a public client has no service account)",
            ".settings",
        ),
        rule_at(
            "!self.publicClient || !self.settings.authorizationServicesEnabled",
            "spec.settings.authorizationServicesEnabled cannot be true with publicClient: true (authorization services need a confidential client)",
            ".settings",
        ),
        rule_at(
            "!has(self.authorizationSettings) || self.settings.authorizationServicesEnabled",
            "spec.authorizationSettings requires settings.authorizationServicesEnabled: true",
            ".authorizationSettings",
        ),
        rule_at(
            "!has(self.serviceAccountRoles) || self.settings.serviceAccountsEnabled",
            "spec.serviceAccountRoles requires settings.serviceAccountsEnabled: true",
            ".serviceAccountRoles",
        ),
        rule_at(
            "!has(self.defaultClientScopes) || !has(self.optionalClientScopes) || self.optionalClientScopes.all(s, !(s in self.defaultClientScopes))",
            "spec.optionalClientScopes must not repeat a scope of spec.defaultClientScopes; a scope is either default or optional",
            ".optionalClientScopes",
        ),
        rule_at(
            "!has(self.protocolMappers) || self.protocolMappers.all(m, m.protocol == self.protocol)",
            "spec.protocolMappers: every mapper's protocol must equal spec.protocol",
            ".protocolMappers",
        ),
    ];
    merge(json!({"x-kubernetes-validations": rules}))
}

/// `spec.attributes`: the owner attribute is kco's own.
pub(crate) fn attributes() -> impl FnMut(&mut Schema) {
    merge(json!({
        "x-kubernetes-validations": [
            rule("!('kco.dev/owner' in self)", "spec.attributes must not set kco.dev/owner; kco records the owning KeycloakClient there"),
            rule("self.all(k, !k.startsWith('kco.dev/'))", "spec.attributes must not use the kco.dev/ prefix; kco keeps its own records there"),
        ],
    }))
}

/// A lifespan or timeout in seconds.
pub(crate) fn seconds() -> impl FnMut(&mut Schema) {
    merge(json!({"minimum": 0, "maximum": i32::MAX}))
}

/// `spec.protocolMappers[]`.
pub(crate) fn protocol_mapper_name() -> impl FnMut(&mut Schema) {
    merge(json!({
        "minLength": 1,
        "maxLength": MAX_NAME,
        "x-kubernetes-validations": [rule(
            "!self.startsWith('kco-audience-')",
            "spec.protocolMappers[].name must not start with kco-audience- (kco names the mappers of spec.audiences so)",
        )],
    }))
}

pub(crate) fn protocol_enum() -> impl FnMut(&mut Schema) {
    merge(json!({"enum": ["openid-connect", "saml", "docker-v2"]}))
}

/// `authorizationSettings.policies`: JavaScript policies are opt-in.
pub(crate) fn authz_policies_rules() -> impl FnMut(&mut Schema) {
    merge(json!({
        "x-kubernetes-validations": [rule_at(
            "size(self.javascriptPolicies) == 0 || self.allowJavaScriptPolicies",
            "spec.authorizationSettings.policies.javascriptPolicies requires allowJavaScriptPolicies: true (JavaScript policies need a security review; opt in explicitly)",
            ".javascriptPolicies",
        )],
    }))
}

/// A non-empty list of non-empty strings (the subjects of a policy).
pub(crate) fn subjects() -> impl FnMut(&mut Schema) {
    merge(json!({"minItems": 1, "x-kubernetes-list-type": "set", "items": {"minLength": 1, "maxLength": MAX_NAME}}))
}

/// Group paths of a group policy: `/finance`, `/parent/child`.
pub(crate) fn group_paths() -> impl FnMut(&mut Schema) {
    merge(json!({"minItems": 1, "x-kubernetes-list-type": "set", "items": {"pattern": "^/.+", "maxLength": 1024}}))
}

/// A `yyyy-MM-dd HH:mm:ss` time of a time policy.
pub(crate) fn policy_datetime() -> impl FnMut(&mut Schema) {
    merge(json!({"pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"}))
}

pub(crate) fn int_range(min: i32, max: i32) -> impl FnMut(&mut Schema) {
    merge(json!({"minimum": min, "maximum": max}))
}

/// `timePolicies[]`: at least one condition, and no range that ends before it starts.
pub(crate) fn time_policy_rules() -> impl FnMut(&mut Schema) {
    let field = "spec.authorizationSettings.policies.timePolicies[]";
    let mut rules = vec![rule(
        "has(self.notBefore) || has(self.notOnOrAfter) || has(self.dayMonth) || has(self.month) || has(self.year) || has(self.hour) || has(self.minute)",
        &format!("{field}: set at least one of notBefore, notOnOrAfter, dayMonth, month, year, hour, minute"),
    )];
    for (start, end) in [
        ("dayMonth", "dayMonthEnd"),
        ("month", "monthEnd"),
        ("year", "yearEnd"),
        ("hour", "hourEnd"),
        ("minute", "minuteEnd"),
    ] {
        rules.push(rule(
            &format!("!has(self.{end}) || (has(self.{start}) && self.{start} <= self.{end})"),
            &format!("{field}.{end} needs {start} and must not be before it"),
        ));
    }
    merge(json!({"x-kubernetes-validations": rules}))
}

/// `resourcePermissions[]`: resources or a resource type, not both.
pub(crate) fn resource_permission_rules() -> impl FnMut(&mut Schema) {
    merge(json!({
        "x-kubernetes-validations": [rule(
            "(size(self.resources) > 0) != has(self.resourceType)",
            "spec.authorizationSettings.permissions.resourcePermissions[]: set either resources or resourceType (exactly one)",
        )],
    }))
}

/// `scopePermissions[]`: at least one scope (the list defaults to empty, so the rule sits here).
pub(crate) fn scope_permission_rules() -> impl FnMut(&mut Schema) {
    merge(json!({
        "x-kubernetes-validations": [rule_at(
            "size(self.scopes) > 0",
            "spec.authorizationSettings.permissions.scopePermissions[].scopes must name at least one scope",
            ".scopes",
        )],
    }))
}

/// A non-empty string.
pub(crate) fn non_empty() -> impl FnMut(&mut Schema) {
    merge(json!({"minLength": 1}))
}

/// `serviceAccountRoles.clientRoles`: client id → unique, non-empty role names.
pub(crate) fn role_map() -> impl FnMut(&mut Schema) {
    merge(json!({
        "additionalProperties": {"x-kubernetes-list-type": "set", "items": {"minLength": 1, "maxLength": MAX_NAME}},
    }))
}

/// `additionalSecrets[]`: a preset, custom keys, or both.
pub(crate) fn additional_secret_rules() -> impl FnMut(&mut Schema) {
    merge(json!({
        "x-kubernetes-validations": [rule(
            "has(self.format) || (has(self.keys) && size(self.keys) > 0)",
            "spec.additionalSecrets[]: set format, keys, or both",
        )],
    }))
}

/// `secretRotation.rotationTime`: `HH:MM` on a 24-hour clock.
pub(crate) fn rotation_time() -> impl FnMut(&mut Schema) {
    merge(json!({
        "maxLength": 5,
        "x-kubernetes-validations": [rule(
            "self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')",
            "spec.secretRotation.rotationTime must be HH:MM with hours 00-23 and minutes 00-59, like 02:00",
        )],
    }))
}

/// `secretRotation.timezone`: non-empty here; kco checks the IANA name (CEL has no zone database).
pub(crate) fn timezone() -> impl FnMut(&mut Schema) {
    merge(json!({"minLength": 1, "maxLength": 64}))
}

/// `resources[].uris`: non-empty, unique paths.
pub(crate) fn resource_uris() -> impl FnMut(&mut Schema) {
    merge(json!({"x-kubernetes-list-type": "set", "items": {"minLength": 1, "maxLength": MAX_URI}}))
}

/// `rolePolicies[].roles`: at least one, keyed by role name.
pub(crate) fn policy_roles() -> impl FnMut(&mut Schema) {
    merge(json!({"minItems": 1, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_appends_rules_and_merges_objects() {
        let mut s =
            Schema::try_from(json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [1]}))
                .unwrap_or_default();
        merge(json!({"items": {"minLength": 1}, "x-kubernetes-validations": [2], "maxItems": 3}))(&mut s);
        assert_eq!(
            s.to_value(),
            json!({"type": "array", "items": {"type": "string", "minLength": 1}, "x-kubernetes-validations": [1, 2], "maxItems": 3})
        );
    }
}
