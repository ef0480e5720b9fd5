//! authz: a client's Authorization Services — the desired state built from `spec.authorizationSettings`,
//! the observed state read from Keycloak's name-based export, a pure plan, and its apply through the
//! dedicated authz endpoints (a client PUT ignores `authorizationSettings`).
//!
//! Everything is compared by name, in the export's own shape (role names, group paths, usernames,
//! clientIds, policy/resource/scope names), so an idle resync needs one read: the export.

use std::collections::{BTreeMap, BTreeSet};

use kco_api::{
    AggregatePolicy, AuthorizationSettings, AuthzPermissions, AuthzPolicies, AuthzResource, AuthzScope, ClientPolicy,
    DecisionStrategy, GroupPolicy, JavaScriptPolicy, KeycloakClientSpec, Logic, PolicyEnforcementMode, RegexPolicy,
    ResourcePermission, RolePolicy, ScopePermission, TimePolicy, UserPolicy,
};
use kco_keycloak::{Error, KeycloakAdmin};

use crate::error::EngineError;
use serde_json::{Map, Value, json};

const AUTHZ: &str = "authorizationSettings";
/// Page size of the authz list endpoints (Keycloak's own default).
pub const PAGE: usize = 100;

// ---- Settings kco has to turn on -------------------------------------------------------------

/// Client settings Keycloak needs for Authorization Services that the spec did not ask for, as
/// (field, value, why). Keycloak 26.7 answers a client with authorization but no service account
/// with HTTP 500 ("Client does not have a service account"), refuses authorization on a bearer-only
/// client ("Only confidential clients are allowed to set authorization settings") and silently drops
/// the resource server when bearerOnly is switched on later. The admin console turns on client
/// authentication and the service account when authorization is switched on; kco does the same and
/// says so in status.
pub fn implied_settings(spec: &KeycloakClientSpec) -> Vec<(&'static str, bool, &'static str)> {
    let mut out = Vec::new();
    if !spec.settings.authorization_services_enabled {
        return out;
    }
    if !spec.settings.service_accounts_enabled {
        out.push(("serviceAccountsEnabled", true, "Authorization Services need a service account"));
    }
    if spec.bearer_only {
        out.push((
            "bearerOnly",
            false,
            "Keycloak refuses Authorization Services on a bearer-only client; with the login flows off the client still never starts a login",
        ));
    }
    out
}

/// The status note for [`implied_settings`]; `None` when kco changed nothing.
pub fn implied_settings_note(spec: &KeycloakClientSpec) -> Option<String> {
    let parts: Vec<String> = implied_settings(spec)
        .iter()
        .map(|(field, value, why)| {
            let verb = if *value { "turned on" } else { "turned off" };
            format!("kco {verb} {field} because {why}")
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

// ---- Desired state ----------------------------------------------------------------------------

/// Which list of authorization objects an object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuthzKind {
    Scope,
    Resource,
    Policy,
    Permission,
}

impl AuthzKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthzKind::Scope => "scope",
            AuthzKind::Resource => "resource",
            AuthzKind::Policy => "policy",
            AuthzKind::Permission => "permission",
        }
    }

    /// The spec field an operation on this kind changes (for Events).
    pub fn field(self) -> &'static str {
        match self {
            AuthzKind::Scope => "authorizationSettings.scopes",
            AuthzKind::Resource => "authorizationSettings.resources",
            AuthzKind::Policy => "authorizationSettings.policies",
            AuthzKind::Permission => "authorizationSettings.permissions",
        }
    }
}

/// A name the spec uses that must exist in the realm (looked up before any authz write).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    RealmRole(String),
    ClientRole {
        client_id: String,
        role: String,
    },
    Group(String),
    User(String),
    Client(String),
    /// A JavaScript policy: a script deployed on the server under this policy's name.
    Script(String),
}

impl Subject {
    pub fn describe(&self) -> String {
        match self {
            Subject::RealmRole(r) => format!("realm role {r:?}"),
            Subject::ClientRole { client_id, role } => format!("client role {client_id}/{role}"),
            Subject::Group(g) => format!("group {g:?}"),
            Subject::User(u) => format!("user {u:?}"),
            Subject::Client(c) => format!("client {c:?}"),
            Subject::Script(s) => format!("deployed script policy {s:?}"),
        }
    }
}

/// One authorization object the spec declares, in Keycloak's generic (export/import) shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    pub kind: AuthzKind,
    pub name: String,
    /// Where it is declared, e.g. `authorizationSettings.policies.rolePolicies[0]`.
    pub field: String,
    pub representation: Value,
    /// Realm objects it names, with the field naming each.
    pub subjects: Vec<(String, Subject)>,
    /// Other authorization objects it names: (field, kind, name).
    pub refs: Vec<(String, AuthzKind, String)>,
}

/// The managed part of a resource server. `None` lists are not managed.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredAuthz {
    pub settings: Value,
    pub scopes: Option<Vec<DesiredObject>>,
    pub resources: Option<Vec<DesiredObject>>,
    /// Policies in dependency order: plain ones first, then aggregates after what they include.
    pub policies: Option<Vec<DesiredObject>>,
    pub permissions: Option<Vec<DesiredObject>>,
}

fn logic(l: Logic) -> &'static str {
    match l {
        Logic::Positive => "POSITIVE",
        Logic::Negative => "NEGATIVE",
    }
}

fn strategy(d: DecisionStrategy) -> &'static str {
    match d {
        DecisionStrategy::Unanimous => "UNANIMOUS",
        DecisionStrategy::Affirmative => "AFFIRMATIVE",
        DecisionStrategy::Consensus => "CONSENSUS",
    }
}

fn enforcement(m: PolicyEnforcementMode) -> &'static str {
    match m {
        PolicyEnforcementMode::Enforcing => "ENFORCING",
        PolicyEnforcementMode::Permissive => "PERMISSIVE",
        PolicyEnforcementMode::Disabled => "DISABLED",
    }
}

/// Keycloak keeps list-valued policy config as a JSON string.
fn json_string(v: Value) -> Value {
    Value::String(v.to_string())
}

fn policy_rep(
    name: &str,
    type_: &str,
    description: &Option<String>,
    l: Logic,
    d: DecisionStrategy,
    config: Map<String, Value>,
) -> Value {
    let mut rep = Map::new();
    rep.insert("name".into(), json!(name));
    rep.insert("type".into(), json!(type_));
    if let Some(desc) = description.as_ref().filter(|d| !d.is_empty()) {
        rep.insert("description".into(), json!(desc));
    }
    rep.insert("logic".into(), json!(logic(l)));
    rep.insert("decisionStrategy".into(), json!(strategy(d)));
    rep.insert("config".into(), Value::Object(config));
    Value::Object(rep)
}

impl DesiredObject {
    /// An object that names neither realm objects nor other authorization objects (yet).
    fn new(kind: AuthzKind, name: &str, field: String, representation: Value) -> Self {
        Self { kind, name: name.to_string(), field, representation, subjects: vec![], refs: vec![] }
    }
}

/// `build(field, item)` for each item of the list at `authorizationSettings.{list}`.
fn indexed<T>(items: &[T], list: &str, build: impl Fn(String, &T) -> DesiredObject) -> Vec<DesiredObject> {
    items.iter().enumerate().map(|(i, item)| build(format!("{AUTHZ}.{list}[{i}]"), item)).collect()
}

/// The authorization objects of `kind` an object names in its list `key`.
fn refs_to(field: &str, key: &str, kind: AuthzKind, names: &[String]) -> Vec<(String, AuthzKind, String)> {
    names.iter().map(|n| (format!("{field}.{key}"), kind, n.clone())).collect()
}

/// The realm objects a policy names in its list `key`.
fn subjects_in(field: &str, key: &str, names: &[String], subject: fn(String) -> Subject) -> Vec<(String, Subject)> {
    names.iter().map(|n| (format!("{field}.{key}"), subject(n.clone()))).collect()
}

impl DesiredAuthz {
    /// `None` unless the spec enables Authorization Services and declares `authorizationSettings`.
    pub fn from_spec(spec: &KeycloakClientSpec) -> Option<Self> {
        if !spec.settings.authorization_services_enabled {
            return None;
        }
        spec.authorization_settings.as_deref().map(Self::from_settings)
    }

    pub fn from_settings(a: &AuthorizationSettings) -> Self {
        Self {
            settings: json!({
                "policyEnforcementMode": enforcement(a.policy_enforcement_mode),
                "decisionStrategy": strategy(a.decision_strategy),
                "allowRemoteResourceManagement": a.allow_remote_resource_management,
            }),
            scopes: a.scopes.as_ref().map(|list| indexed(list, "scopes", desired_scope)),
            resources: a.resources.as_ref().map(|list| indexed(list, "resources", desired_resource)),
            policies: a.policies.as_ref().map(desired_policies),
            permissions: a.permissions.as_ref().map(desired_permissions),
        }
    }

    /// Every declared object, in create/update order: scopes, policies, resources, permissions.
    pub fn objects(&self) -> impl Iterator<Item = &DesiredObject> {
        [&self.scopes, &self.policies, &self.resources, &self.permissions].into_iter().flatten().flatten()
    }
}

/// The start of a scope's or resource's representation: its name and, when set, its display name.
fn named(name: &str, display_name: &Option<String>) -> Map<String, Value> {
    let mut rep = Map::new();
    rep.insert("name".into(), json!(name));
    if let Some(d) = display_name {
        rep.insert("displayName".into(), json!(d));
    }
    rep
}

fn desired_scope(field: String, s: &AuthzScope) -> DesiredObject {
    let mut rep = named(&s.name, &s.display_name);
    if let Some(u) = &s.icon_uri {
        rep.insert("iconUri".into(), json!(u));
    }
    DesiredObject::new(AuthzKind::Scope, &s.name, field, Value::Object(rep))
}

fn desired_resource(field: String, r: &AuthzResource) -> DesiredObject {
    let mut rep = named(&r.name, &r.display_name);
    if let Some(t) = &r.type_ {
        rep.insert("type".into(), json!(t));
    }
    rep.insert("uris".into(), json!(r.uris));
    let scopes: Vec<Value> = r.scopes.iter().map(|s| json!({ "name": s })).collect();
    rep.insert("scopes".into(), Value::Array(scopes));
    rep.insert("ownerManagedAccess".into(), json!(r.owner_managed_access));
    rep.insert("attributes".into(), json!(r.attributes));
    let refs = refs_to(&field, "scopes", AuthzKind::Scope, &r.scopes);
    DesiredObject { refs, ..DesiredObject::new(AuthzKind::Resource, &r.name, field, Value::Object(rep)) }
}

fn desired_permissions(p: &AuthzPermissions) -> Vec<DesiredObject> {
    let mut out = indexed(&p.resource_permissions, "permissions.resourcePermissions", resource_permission);
    out.extend(indexed(&p.scope_permissions, "permissions.scopePermissions", scope_permission));
    out
}

fn resource_permission(field: String, rp: &ResourcePermission) -> DesiredObject {
    let lists = (rp.resources.as_slice(), None, rp.policies.as_slice());
    permission(field, &rp.name, ("resource", &rp.description, rp.decision_strategy), lists, &rp.resource_type)
}

fn scope_permission(field: String, sp: &ScopePermission) -> DesiredObject {
    let lists = (sp.resources.as_slice(), Some(sp.scopes.as_slice()), sp.policies.as_slice());
    permission(field, &sp.name, ("scope", &sp.description, sp.decision_strategy), lists, &sp.resource_type)
}

/// A permission. `head`: its type, description and decision strategy; `lists`: the resources, the scopes
/// (scope permissions only) and the policies it names.
fn permission(
    field: String,
    name: &str,
    head: (&str, &Option<String>, DecisionStrategy),
    lists: (&[String], Option<&[String]>, &[String]),
    resource_type: &Option<String>,
) -> DesiredObject {
    let ((type_, description, decision_strategy), (resources, scopes, policies)) = (head, lists);
    let mut config = Map::new();
    config.insert("resources".into(), json_string(json!(resources)));
    let mut refs = refs_to(&field, "resources", AuthzKind::Resource, resources);
    if let Some(scopes) = scopes {
        config.insert("scopes".into(), json_string(json!(scopes)));
        refs.extend(refs_to(&field, "scopes", AuthzKind::Scope, scopes));
    }
    config.insert("applyPolicies".into(), json_string(json!(policies)));
    refs.extend(refs_to(&field, "policies", AuthzKind::Policy, policies));
    if let Some(t) = resource_type {
        config.insert("defaultResourceType".into(), json!(t));
    }
    let rep = policy_rep(name, type_, description, Logic::Positive, decision_strategy, config);
    DesiredObject { refs, ..DesiredObject::new(AuthzKind::Permission, name, field, rep) }
}

/// Placeholder type of a JavaScript policy until the deployed script is looked up (`script-…`).
pub const SCRIPT_TYPE: &str = "script-";

/// Policies in dependency order: each plain type in turn, then the aggregates.
fn desired_policies(p: &AuthzPolicies) -> Vec<DesiredObject> {
    let mut out = indexed(&p.role_policies, "policies.rolePolicies", role_policy);
    out.extend(indexed(&p.user_policies, "policies.userPolicies", user_policy));
    out.extend(indexed(&p.group_policies, "policies.groupPolicies", group_policy));
    out.extend(indexed(&p.client_policies, "policies.clientPolicies", client_policy));
    out.extend(indexed(&p.time_policies, "policies.timePolicies", time_policy));
    out.extend(indexed(&p.regex_policies, "policies.regexPolicies", regex_policy));
    out.extend(indexed(&p.javascript_policies, "policies.javascriptPolicies", javascript_policy));
    let placed = out.iter().map(|o| o.name.clone()).collect();
    out.extend(aggregates_in_order(&p.aggregate_policies, placed));
    out
}

/// A plain (not aggregate) policy: Keycloak keeps their decision strategy at UNANIMOUS.
fn plain_policy(
    field: String,
    name: &str,
    rep: (&str, &Option<String>, Logic),
    config: Map<String, Value>,
) -> DesiredObject {
    let (type_, description, logic) = rep;
    let rep = policy_rep(name, type_, description, logic, DecisionStrategy::Unanimous, config);
    DesiredObject::new(AuthzKind::Policy, name, field, rep)
}

fn role_policy(field: String, r: &RolePolicy) -> DesiredObject {
    let roles: Vec<Value> = r.roles.iter().map(|x| json!({"id": x.name, "required": x.required})).collect();
    let mut config = Map::new();
    config.insert("roles".into(), json_string(Value::Array(roles)));
    config.insert("fetchRoles".into(), json!(r.fetch_roles.to_string()));
    let subjects = r.roles.iter().map(|x| (format!("{field}.roles"), role_subject(&x.name))).collect();
    DesiredObject { subjects, ..plain_policy(field, &r.name, ("role", &r.description, r.logic), config) }
}

/// A role policy's role: `clientId/role` is a client role, any other name a realm role.
fn role_subject(name: &str) -> Subject {
    match name.split_once('/') {
        Some((client_id, role)) => Subject::ClientRole { client_id: client_id.to_string(), role: role.to_string() },
        None => Subject::RealmRole(name.to_string()),
    }
}

fn user_policy(field: String, u: &UserPolicy) -> DesiredObject {
    let config = Map::from_iter([("users".to_string(), json_string(json!(u.users)))]);
    let subjects = subjects_in(&field, "users", &u.users, Subject::User);
    DesiredObject { subjects, ..plain_policy(field, &u.name, ("user", &u.description, u.logic), config) }
}

fn group_policy(field: String, g: &GroupPolicy) -> DesiredObject {
    let groups: Vec<Value> = g.groups.iter().map(|x| json!({"path": x, "extendChildren": false})).collect();
    let mut config = Map::new();
    config.insert("groups".into(), json_string(Value::Array(groups)));
    config.insert("groupsClaim".into(), json!(g.groups_claim));
    let subjects = subjects_in(&field, "groups", &g.groups, Subject::Group);
    DesiredObject { subjects, ..plain_policy(field, &g.name, ("group", &g.description, g.logic), config) }
}

fn client_policy(field: String, c: &ClientPolicy) -> DesiredObject {
    let config = Map::from_iter([("clients".to_string(), json_string(json!(c.clients)))]);
    let subjects = subjects_in(&field, "clients", &c.clients, Subject::Client);
    DesiredObject { subjects, ..plain_policy(field, &c.name, ("client", &c.description, c.logic), config) }
}

fn time_policy(field: String, t: &TimePolicy) -> DesiredObject {
    let n = |v: Option<i32>| v.map(|x| x.to_string());
    let bounds = [
        ("nbf", t.not_before.clone()),
        ("noa", t.not_on_or_after.clone()),
        ("dayMonth", n(t.day_month)),
        ("dayMonthEnd", n(t.day_month_end)),
        ("month", n(t.month)),
        ("monthEnd", n(t.month_end)),
        ("year", n(t.year)),
        ("yearEnd", n(t.year_end)),
        ("hour", n(t.hour)),
        ("hourEnd", n(t.hour_end)),
        ("minute", n(t.minute)),
        ("minuteEnd", n(t.minute_end)),
    ];
    let config = bounds.into_iter().filter_map(|(k, v)| Some((k.to_string(), json!(v?)))).collect();
    plain_policy(field, &t.name, ("time", &t.description, t.logic), config)
}

fn regex_policy(field: String, r: &RegexPolicy) -> DesiredObject {
    let mut config = Map::new();
    config.insert("targetClaim".into(), json!(r.target_claim));
    config.insert("pattern".into(), json!(r.pattern));
    config.insert("targetContextAttributes".into(), json!("false"));
    plain_policy(field, &r.name, ("regex", &r.description, r.logic), config)
}

fn javascript_policy(field: String, j: &JavaScriptPolicy) -> DesiredObject {
    let subjects = vec![(field.clone(), Subject::Script(j.name.clone()))];
    DesiredObject { subjects, ..plain_policy(field, &j.name, (SCRIPT_TYPE, &j.description, j.logic), Map::new()) }
}

/// Aggregates after everything they include (validation refuses cycles; a leftover is appended).
/// `placed`: the names of the policies already in order.
fn aggregates_in_order(list: &[AggregatePolicy], mut placed: BTreeSet<String>) -> Vec<DesiredObject> {
    let mut out = Vec::new();
    let mut pending: Vec<(usize, &AggregatePolicy)> = list.iter().enumerate().collect();
    while !pending.is_empty() {
        let aggregates: BTreeSet<&str> = pending.iter().map(|(_, a)| a.name.as_str()).collect();
        let (ready, wait): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(_, a)| a.policies.iter().all(|x| placed.contains(x) || !aggregates.contains(x.as_str())));
        let stuck = ready.is_empty();
        let batch = if stuck { wait.clone() } else { ready };
        pending = if stuck { Vec::new() } else { wait };
        for (i, a) in batch {
            placed.insert(a.name.clone());
            out.push(aggregate_policy(format!("{AUTHZ}.policies.aggregatePolicies[{i}]"), a));
        }
    }
    out
}

fn aggregate_policy(field: String, a: &AggregatePolicy) -> DesiredObject {
    let mut config = Map::new();
    config.insert("applyPolicies".into(), json_string(json!(a.policies)));
    let rep = policy_rep(&a.name, "aggregate", &a.description, a.logic, a.decision_strategy, config);
    let refs = refs_to(&field, "policies", AuthzKind::Policy, &a.policies);
    DesiredObject { refs, ..DesiredObject::new(AuthzKind::Policy, &a.name, field, rep) }
}

// ---- Observed state ---------------------------------------------------------------------------

/// What Keycloak's export (`GET …/authz/resource-server/settings`) says, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedAuthz {
    pub settings: Value,
    pub scopes: BTreeMap<String, Value>,
    /// Only resources the resource server owns; user-owned (UMA) resources are never kco's.
    pub resources: BTreeMap<String, Value>,
    /// Policies and permissions (Keycloak keeps them in one list, told apart by type).
    pub policies: BTreeMap<String, Value>,
}

/// Policy types kco declares; other types (uma, client-scope, …) are left alone.
fn managed_policy_type(t: &str) -> bool {
    matches!(t, "role" | "user" | "group" | "client" | "time" | "regex" | "aggregate" | "js")
        || t.starts_with(SCRIPT_TYPE)
}

fn is_permission_type(t: &str) -> bool {
    matches!(t, "resource" | "scope")
}

impl ObservedAuthz {
    /// Parse the export. `client_id` identifies resources owned by the resource server itself.
    pub fn from_export(export: &Value, client_id: &str) -> Self {
        let list = |k: &str| export.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
        let name_of = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_string);
        let mut o = ObservedAuthz {
            settings: json!({
                "policyEnforcementMode": export.get("policyEnforcementMode").cloned().unwrap_or(Value::Null),
                "decisionStrategy": export.get("decisionStrategy").cloned().unwrap_or(Value::Null),
                "allowRemoteResourceManagement": export.get("allowRemoteResourceManagement").cloned().unwrap_or(Value::Null),
            }),
            ..Default::default()
        };
        for s in list("scopes") {
            if let Some(n) = name_of(&s) {
                o.scopes.insert(n, s);
            }
        }
        for r in list("resources") {
            let owner = r.get("owner").and_then(|o| o.get("name").or(Some(o))).and_then(Value::as_str);
            if owner.is_some_and(|o| o != client_id) {
                continue;
            }
            if let Some(n) = name_of(&r) {
                o.resources.insert(n, r);
            }
        }
        for p in list("policies") {
            if let Some(n) = name_of(&p) {
                o.policies.insert(n, p);
            }
        }
        o
    }
}

// ---- Canonical form ---------------------------------------------------------------------------

/// Rebuild objects with sorted keys so serialisation is stable whatever the map implementation.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let b: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
            let mut out = Map::new();
            for (k, v) in b {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// A list compared as a set: sorted by serialisation.
fn as_set(items: impl Iterator<Item = Value>) -> Value {
    let mut v: Vec<(String, Value)> = items
        .map(|x| {
            let x = sorted(&x);
            (x.to_string(), x)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.dedup_by(|a, b| a.0 == b.0);
    Value::Array(v.into_iter().map(|(_, x)| x).collect())
}

fn text(v: Option<&Value>) -> Value {
    match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() => json!(s),
        _ => Value::Null,
    }
}

/// Config keys kco manages per policy type; Keycloak's other keys are ignored.
fn config_keys(t: &str) -> &'static [&'static str] {
    match t {
        "role" => &["roles", "fetchRoles"],
        "user" => &["users"],
        "group" => &["groups", "groupsClaim"],
        "client" => &["clients"],
        "time" => &[
            "nbf",
            "noa",
            "dayMonth",
            "dayMonthEnd",
            "month",
            "monthEnd",
            "year",
            "yearEnd",
            "hour",
            "hourEnd",
            "minute",
            "minuteEnd",
        ],
        "regex" => &["targetClaim", "pattern", "targetContextAttributes"],
        "aggregate" => &["applyPolicies"],
        "resource" => &["resources", "applyPolicies", "defaultResourceType"],
        "scope" => &["resources", "scopes", "applyPolicies", "defaultResourceType"],
        _ => &[],
    }
}

/// The comparable form of a scope, resource, policy or permission, from either side.
pub fn canonical(kind: AuthzKind, rep: &Value) -> Value {
    match kind {
        AuthzKind::Scope => json!({
            "name": rep.get("name"),
            "displayName": text(rep.get("displayName")),
            "iconUri": text(rep.get("iconUri")),
        }),
        AuthzKind::Resource => canonical_resource(rep),
        AuthzKind::Policy | AuthzKind::Permission => canonical_policy(rep),
    }
}

fn canonical_resource(rep: &Value) -> Value {
    let strings = |k: &str| {
        as_set(
            rep.get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().or_else(|| x.get("name").and_then(Value::as_str)).map(|s| json!(s))),
        )
    };
    let attributes: BTreeMap<String, Value> = rep
        .get("attributes")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    json!({
        "name": rep.get("name"),
        "displayName": text(rep.get("displayName")),
        "type": text(rep.get("type")),
        "uris": strings("uris"),
        "scopes": strings("scopes"),
        "ownerManagedAccess": rep.get("ownerManagedAccess").and_then(Value::as_bool).unwrap_or(false),
        "attributes": sorted(&json!(attributes)),
    })
}

fn canonical_policy(rep: &Value) -> Value {
    let t = type_of(rep);
    // A deployed script's type is only known once looked up: any script type matches.
    let type_ = if t.starts_with(SCRIPT_TYPE) || t == "js" { SCRIPT_TYPE } else { t };
    let mut config = BTreeMap::new();
    let observed = rep.get("config").and_then(Value::as_object);
    for key in config_keys(t) {
        let Some(v) = observed.and_then(|c| c.get(*key)).and_then(Value::as_str) else {
            continue;
        };
        // List-valued entries are JSON strings: compare them as sets; an empty list is absent.
        let v = match serde_json::from_str::<Value>(v) {
            Ok(Value::Array(a)) if a.is_empty() => continue,
            Ok(Value::Array(a)) => as_set(a.into_iter()),
            _ => json!(v),
        };
        config.insert(*key, v);
    }
    json!({
        "name": rep.get("name"),
        "type": type_,
        "description": text(rep.get("description")),
        "logic": rep.get("logic").and_then(Value::as_str).unwrap_or("POSITIVE"),
        "decisionStrategy": rep.get("decisionStrategy").and_then(Value::as_str).unwrap_or("UNANIMOUS"),
        "config": config,
    })
}

/// A policy's or permission's type, from either side (`""` when it has none).
fn type_of(rep: &Value) -> &str {
    rep.get("type").and_then(Value::as_str).unwrap_or_default()
}

// ---- Plan -------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum AuthzOperation {
    /// PUT the resource server's own settings.
    UpdateSettings(Value),
    Create(DesiredObject),
    Update(DesiredObject),
    /// Delete by name (the id is looked up when applied).
    Delete {
        kind: AuthzKind,
        name: String,
    },
}

impl AuthzOperation {
    pub fn field(&self) -> &'static str {
        match self {
            AuthzOperation::UpdateSettings(_) => "authorizationSettings",
            AuthzOperation::Create(o) | AuthzOperation::Update(o) => o.kind.field(),
            AuthzOperation::Delete { kind, .. } => kind.field(),
        }
    }
}

/// Why the plan cannot be made: a name that is neither declared nor present in Keycloak, or a name
/// Keycloak already holds with another type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlanProblem {
    pub field: String,
    pub message: String,
    /// A missing reference (else: a type conflict).
    pub missing: bool,
}

impl PlanProblem {
    fn missing(field: &str, what: String) -> Self {
        Self { field: field.to_string(), message: format!("{what} does not exist"), missing: true }
    }
}

impl std::fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spec.{}: {}", self.field, self.message)
    }
}

/// The status reason for a refused plan.
pub fn plan_problem_reason(problems: &[PlanProblem]) -> &'static str {
    if problems.iter().any(|p| p.missing) { "AuthorizationReferenceNotFound" } else { "AuthorizationTypeConflict" }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthzPlan {
    pub operations: Vec<AuthzOperation>,
}

impl AuthzPlan {
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    pub fn changed_fields(&self) -> Vec<String> {
        crate::plan::distinct(self.operations.iter().map(|op| op.field().to_string()))
    }
}

/// Desired vs. observed → operations: the settings, then creates and updates (scopes → policies,
/// aggregates after what they include → resources → permissions), then deletes of what a managed list
/// no longer declares (permissions → resources → aggregates → policies → scopes). Deleting last means
/// no permission is ever left pointing at a policy that is gone. A permission or aggregate that names
/// an authorization object which neither the spec nor Keycloak has is refused: the plan is not made.
pub fn plan_authz(desired: &DesiredAuthz, observed: &ObservedAuthz) -> Result<AuthzPlan, Vec<PlanProblem>> {
    refuse(missing_references(desired, observed))?;
    refuse(type_conflicts(desired, observed))?;
    let mut operations = Vec::new();
    if sorted(&desired.settings) != sorted(&observed.settings) {
        operations.push(AuthzOperation::UpdateSettings(desired.settings.clone()));
    }
    operations.extend(object_operations(desired, observed));
    Ok(AuthzPlan { operations })
}

fn refuse(problems: BTreeSet<PlanProblem>) -> Result<(), Vec<PlanProblem>> {
    if problems.is_empty() { Ok(()) } else { Err(problems.into_iter().collect()) }
}

/// The observed permissions (`permission`), or the observed policies of the types kco declares.
fn observed_policies(observed: &ObservedAuthz, permission: bool) -> BTreeMap<&String, &Value> {
    observed
        .policies
        .iter()
        .filter(|(_, v)| if permission { is_permission_type(type_of(v)) } else { managed_policy_type(type_of(v)) })
        .collect()
}

/// Names of `kind` that will exist after the plan: a managed list's declared names (for policies,
/// plus those of types kco does not declare: they stay, and can be named), else what Keycloak has.
fn names_after(desired: &DesiredAuthz, observed: &ObservedAuthz, kind: AuthzKind) -> BTreeSet<String> {
    let (declared, present): (&Option<Vec<DesiredObject>>, Vec<&String>) = match kind {
        AuthzKind::Scope => (&desired.scopes, observed.scopes.keys().collect()),
        AuthzKind::Resource => (&desired.resources, observed.resources.keys().collect()),
        AuthzKind::Policy => (&desired.policies, observed.policies.keys().collect()),
        AuthzKind::Permission => (&desired.permissions, observed_policies(observed, true).into_keys().collect()),
    };
    let Some(list) = declared else {
        return present.into_iter().cloned().collect();
    };
    let mut names: BTreeSet<String> = list.iter().map(|o| o.name.clone()).collect();
    if kind == AuthzKind::Policy {
        let foreign = observed.policies.iter().filter(|(_, v)| {
            let t = type_of(v);
            !managed_policy_type(t) && !is_permission_type(t)
        });
        names.extend(foreign.map(|(n, _)| n.clone()));
    }
    names
}

/// Every authorization object a declared one names that neither the spec nor Keycloak will have.
fn missing_references(desired: &DesiredAuthz, observed: &ObservedAuthz) -> BTreeSet<PlanProblem> {
    let existing: BTreeMap<AuthzKind, BTreeSet<String>> = [AuthzKind::Scope, AuthzKind::Resource, AuthzKind::Policy]
        .into_iter()
        .map(|k| (k, names_after(desired, observed, k)))
        .collect();
    let mut missing = BTreeSet::new();
    for o in desired.objects() {
        for (field, kind, name) in &o.refs {
            if !existing.get(kind).is_some_and(|s| s.contains(name)) {
                missing.insert(PlanProblem::missing(field, format!("{} {name:?}", kind.as_str())));
            }
        }
    }
    missing
}

/// Keycloak cannot change a policy's type in place, and deleting it takes the permissions that rely
/// on it with it (a resource without permissions is then granted in PERMISSIVE mode): a name Keycloak
/// holds with another type is refused, never replaced.
fn type_conflicts(desired: &DesiredAuthz, observed: &ObservedAuthz) -> BTreeSet<PlanProblem> {
    let mut conflicts = BTreeSet::new();
    for o in [&desired.policies, &desired.permissions].into_iter().flatten().flatten() {
        let Some(have) = observed.policies.get(&o.name) else { continue };
        let t = type_of(have);
        if canonical(o.kind, have).get("type") != canonical(o.kind, &o.representation).get("type") {
            let managed = managed_policy_type(t) || is_permission_type(t);
            let message = format!(
                "{} {:?} already exists in Keycloak as a {t:?} policy; Keycloak cannot change a policy's type, and \
                 replacing it would delete the permissions that rely on it. {}",
                o.kind.as_str(),
                o.name,
                if managed {
                    "Give it a new name: kco creates the new one, points the permissions at it, then deletes the old one"
                } else {
                    "Choose another name, or delete that policy in Keycloak"
                }
            );
            conflicts.insert(PlanProblem { field: o.field.clone(), message, missing: false });
        }
    }
    conflicts
}

/// Creates and updates in list order, then deletes in the reverse order of the lists.
fn object_operations(desired: &DesiredAuthz, observed: &ObservedAuthz) -> Vec<AuthzOperation> {
    let mut deletes = Vec::new();
    let mut upserts = Vec::new();
    for (kind, list, present) in [
        // Policies before resources: a write that fails part-way never leaves a new resource behind
        // without the permission meant to guard it.
        (AuthzKind::Scope, &desired.scopes, observed.scopes.iter().collect::<BTreeMap<_, _>>()),
        (AuthzKind::Policy, &desired.policies, observed_policies(observed, false)),
        (AuthzKind::Resource, &desired.resources, observed.resources.iter().collect()),
        (AuthzKind::Permission, &desired.permissions, observed_policies(observed, true)),
    ] {
        let Some(list) = list else { continue };
        upserts.extend(list.iter().filter_map(|o| upsert(kind, o, present.get(&o.name).copied())));
        deletes.push((kind, undeclared(list, &present)));
    }
    let mut ops = upserts;
    for (kind, names) in deletes.into_iter().rev() {
        ops.extend(names.into_iter().map(|name| AuthzOperation::Delete { kind, name }));
    }
    ops
}

fn upsert(kind: AuthzKind, o: &DesiredObject, have: Option<&Value>) -> Option<AuthzOperation> {
    match have {
        None => Some(AuthzOperation::Create(o.clone())),
        Some(have) if canonical(kind, have) != canonical(kind, &o.representation) => {
            Some(AuthzOperation::Update(o.clone()))
        }
        Some(_) => None,
    }
}

/// What Keycloak has that the list no longer declares; aggregates go before the policies they include.
fn undeclared(list: &[DesiredObject], present: &BTreeMap<&String, &Value>) -> Vec<String> {
    let declared: BTreeSet<&str> = list.iter().map(|o| o.name.as_str()).collect();
    let mut gone: Vec<(bool, &String)> = present
        .iter()
        .filter(|(n, _)| !declared.contains(n.as_str()))
        .map(|(n, v)| (type_of(v) == "aggregate", *n))
        .collect();
    gone.sort_by_key(|(aggregate, n)| (!aggregate, (*n).clone()));
    gone.into_iter().map(|(_, n)| n.clone()).collect()
}

// ---- Observe and apply ------------------------------------------------------------------------

/// The export of the client's resource server: one read.
pub async fn observe_authz(kc: &KeycloakAdmin, realm: &str, id: &str, client_id: &str) -> Result<ObservedAuthz, Error> {
    let v = kc.get(&[realm, "clients", id, "authz", "resource-server", "settings"], &[], "authz-settings").await?;
    Ok(ObservedAuthz::from_export(&v, client_id))
}

fn missing_error(client_id: &str, realm: &str, missing: &[PlanProblem]) -> EngineError {
    let scripts = missing.iter().filter(|m| m.message.starts_with("deployed script")).count();
    let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
    let mut message = format!(
        "authorization of client {client_id} in realm {realm} not applied (nothing was written): {}",
        list.join("; ")
    );
    if scripts > 0 {
        message.push_str(
            "; Keycloak no longer accepts JavaScript policy code through its API (since Keycloak 18): deploy the \
             script in a JAR under the server's providers/ directory, listed in META-INF/keycloak-scripts.json \
             under the policy's name, and restart Keycloak",
        );
    }
    let reason =
        if scripts == missing.len() { "JavaScriptPolicyNotDeployed" } else { "AuthorizationReferenceNotFound" };
    if scripts == missing.len() {
        message.push('.');
    } else {
        message.push_str("; create them in Keycloak or fix the spec.");
    }
    EngineError::Spec { reason, message }
}

fn found(r: Result<Value, Error>) -> Result<bool, Error> {
    match r {
        Ok(v) => Ok(!v.is_null()),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a realm object exists, by one targeted lookup (never a listing).
async fn subject_exists(
    kc: &KeycloakAdmin,
    realm: &str,
    s: &Subject,
    scripts: &mut Option<Vec<Value>>,
    authz: &[&str],
) -> Result<Option<String>, Error> {
    Ok(match s {
        Subject::RealmRole(r) => found(kc.get(&[realm, "roles", r], &[], "role").await)?.then(String::new),
        Subject::ClientRole { client_id, role } => match kc.find_client(realm, client_id).await? {
            Some(c) => {
                let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
                found(kc.get(&[realm, "clients", id, "roles", role], &[], "client-role").await)?.then(String::new)
            }
            None => None,
        },
        Subject::Group(path) => {
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let mut p = vec![realm, "group-by-path"];
            p.extend(segments);
            found(kc.get(&p, &[], "group").await)?.then(String::new)
        }
        Subject::User(u) => {
            let v = kc.get(&[realm, "users"], &[("username", u), ("exact", "true")], "user").await?;
            v.as_array().is_some_and(|a| !a.is_empty()).then(String::new)
        }
        Subject::Client(c) => kc.find_client(realm, c).await?.map(|_| String::new()),
        Subject::Script(name) => {
            if scripts.is_none() {
                let mut path = authz.to_vec();
                path.extend(["policy", "providers"]);
                let v = kc.get(&path, &[], "authz-policy").await?;
                *scripts = Some(v.as_array().cloned().unwrap_or_default());
            }
            let candidates = [format!("{SCRIPT_TYPE}{name}"), format!("{SCRIPT_TYPE}{name}.js")];
            scripts.iter().flatten().find_map(|p| {
                let t = p.get("type").and_then(Value::as_str)?;
                let n = p.get("name").and_then(Value::as_str);
                (t.starts_with(SCRIPT_TYPE) && (candidates.iter().any(|c| c == t) || n == Some(name.as_str())))
                    .then(|| t.to_string())
            })
        }
    })
}

/// Apply `plan` to the resource server of client `id`. First every realm object the written policies
/// name is looked up (and deployed scripts found); when any is missing nothing is written and the
/// error names each. Ids are looked up only for what is updated or deleted, one paged listing per kind.
pub async fn apply_authz(
    kc: &KeycloakAdmin,
    realm: &str,
    id: &str,
    client_id: &str,
    plan: &AuthzPlan,
) -> Result<(), EngineError> {
    let authz = [realm, "clients", id, "authz", "resource-server"];
    let (missing, script_types) = look_up_subjects(kc, realm, &authz, plan).await?;
    if !missing.is_empty() {
        let list: Vec<PlanProblem> = missing.into_iter().collect();
        return Err(missing_error(client_id, realm, &list));
    }
    let mut writer = Writer { kc, authz, id, client_id, script_types, ids: BTreeMap::new() };
    for op in &plan.operations {
        writer.apply(op).await?;
    }
    Ok(())
}

/// Looks up each realm object the created or updated objects name, once: the problems for those
/// missing, and the type of the deployed script each JavaScript policy names (by policy name).
async fn look_up_subjects(
    kc: &KeycloakAdmin,
    realm: &str,
    authz: &[&str],
    plan: &AuthzPlan,
) -> Result<(BTreeSet<PlanProblem>, BTreeMap<String, String>), Error> {
    let mut missing = BTreeSet::new();
    let mut script_types: BTreeMap<String, String> = BTreeMap::new();
    let mut providers = None;
    let mut checked: BTreeMap<Subject, Option<String>> = BTreeMap::new();
    for op in &plan.operations {
        let (AuthzOperation::Create(o) | AuthzOperation::Update(o)) = op else { continue };
        for (field, s) in &o.subjects {
            let hit = match checked.get(s) {
                Some(h) => h.clone(),
                None => {
                    let h = subject_exists(kc, realm, s, &mut providers, authz).await?;
                    checked.insert(s.clone(), h.clone());
                    h
                }
            };
            match hit {
                None => {
                    missing.insert(PlanProblem::missing(field, s.describe()));
                }
                Some(t) if matches!(s, Subject::Script(_)) => {
                    script_types.insert(o.name.clone(), t);
                }
                Some(_) => {}
            }
        }
    }
    Ok((missing, script_types))
}

/// Writes a plan's operations to one resource server, looking ids up as it goes.
struct Writer<'a> {
    kc: &'a KeycloakAdmin,
    /// The resource server's path.
    authz: [&'a str; 5],
    /// The client's id.
    id: &'a str,
    client_id: &'a str,
    /// The deployed script's type for each JavaScript policy, by policy name.
    script_types: BTreeMap<String, String>,
    /// Ids by kind and name, from one listing per kind.
    ids: BTreeMap<AuthzKind, BTreeMap<String, String>>,
}

impl Writer<'_> {
    async fn apply(&mut self, op: &AuthzOperation) -> Result<(), EngineError> {
        match op {
            AuthzOperation::UpdateSettings(settings) => {
                let mut body = Map::new();
                if let Some(s) = settings.as_object() {
                    body.extend(s.clone());
                }
                body.insert("clientId".into(), json!(self.id));
                self.kc.put(&self.authz, &Value::Object(body), "authz-settings").await?;
            }
            AuthzOperation::Create(o) => {
                let rep = with_script_type(o, &self.script_types);
                let mut path = self.authz.to_vec();
                path.push(endpoint(o.kind));
                if let Some(t) = self.script_types.get(&o.name) {
                    // A deployed script is created through its own typed endpoint.
                    path.push(t);
                }
                self.kc.post(&path, &rep, &request_kind(o.kind)).await?;
            }
            AuthzOperation::Update(o) => {
                let object_id = self.id_of(o.kind, &o.name).await?;
                let mut rep = with_script_type(o, &self.script_types);
                if let Some(m) = rep.as_object_mut() {
                    let key = if o.kind == AuthzKind::Resource { "_id" } else { "id" };
                    m.insert(key.into(), json!(object_id));
                }
                self.kc.put(&self.object_path(o.kind, &object_id), &rep, &request_kind(o.kind)).await?;
            }
            AuthzOperation::Delete { kind, name } => {
                let object_id = self.id_of(*kind, name).await?;
                match self.kc.delete(&self.object_path(*kind, &object_id), None, &request_kind(*kind)).await {
                    Err(e) if e.is_not_found() => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }

    fn object_path<'p>(&'p self, kind: AuthzKind, object_id: &'p str) -> Vec<&'p str> {
        let mut path = self.authz.to_vec();
        path.extend([endpoint(kind), object_id]);
        path
    }

    /// Id of the named object, from one listing of its kind per apply.
    async fn id_of(&mut self, kind: AuthzKind, name: &str) -> Result<String, EngineError> {
        // Policies and permissions share one listing.
        let key = if kind == AuthzKind::Permission { AuthzKind::Policy } else { kind };
        if let std::collections::btree_map::Entry::Vacant(slot) = self.ids.entry(key) {
            slot.insert(list_ids(self.kc, &self.authz, key, self.client_id).await?);
        }
        self.ids.get(&key).and_then(|m| m.get(name)).cloned().ok_or_else(|| EngineError::Spec {
            reason: "AuthorizationOutOfSync",
            message: format!(
                "authorization {} {name:?} is in Keycloak's export but not in its list; kco retries at the next resync",
                kind.as_str()
            ),
        })
    }
}

/// The request kind the Admin API client counts an authz request under.
fn request_kind(kind: AuthzKind) -> String {
    format!("authz-{}", kind.as_str())
}

fn endpoint(kind: AuthzKind) -> &'static str {
    match kind {
        AuthzKind::Scope => "scope",
        AuthzKind::Resource => "resource",
        // Permissions are policies to the generic endpoint.
        AuthzKind::Policy | AuthzKind::Permission => "policy",
    }
}

fn with_script_type(o: &DesiredObject, script_types: &BTreeMap<String, String>) -> Value {
    let mut rep = o.representation.clone();
    if let (Some(t), Some(m)) = (script_types.get(&o.name), rep.as_object_mut()) {
        m.insert("type".into(), json!(t));
        m.remove("config");
    }
    rep
}

/// Ids by name of the resource server's own objects of `kind`, by one paged listing (`first`/`max`,
/// 100 a page; policies and permissions share one).
async fn list_ids(
    kc: &KeycloakAdmin,
    authz: &[&str],
    kind: AuthzKind,
    client_id: &str,
) -> Result<BTreeMap<String, String>, Error> {
    let mut all = BTreeMap::new();
    let mut first = 0usize;
    loop {
        let mut path = authz.to_vec();
        path.push(endpoint(kind));
        let (f, m) = (first.to_string(), PAGE.to_string());
        let mut query = vec![("first", f.as_str()), ("max", m.as_str())];
        if kind == AuthzKind::Resource {
            query.push(("deep", "false"));
        }
        let page = kc.get(&path, &query, &request_kind(kind)).await?;
        let items = page.as_array().cloned().unwrap_or_default();
        for item in &items {
            let own = item.get("owner").and_then(|o| o.get("name")).and_then(Value::as_str);
            if own.is_some_and(|o| o != client_id) {
                continue;
            }
            let id = item.get("_id").or_else(|| item.get("id")).and_then(Value::as_str);
            if let (Some(n), Some(i)) = (item.get("name").and_then(Value::as_str), id) {
                all.insert(n.to_string(), i.to_string());
            }
        }
        if items.len() < PAGE {
            return Ok(all);
        }
        first += PAGE;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    fn settings(v: Value) -> AuthorizationSettings {
        serde_json::from_value(v).unwrap()
    }

    fn desired(v: Value) -> DesiredAuthz {
        DesiredAuthz::from_settings(&settings(v))
    }

    fn example() -> Value {
        json!({
            "scopes": [{"name": "read"}, {"name": "write"}],
            "resources": [{"name": "documents", "uris": ["/api/documents/*"], "scopes": ["read", "write"]}],
            "policies": {
                "rolePolicies": [{"name": "editors", "roles": [{"name": "editor"}, {"name": "app/admin", "required": true}]}],
                "groupPolicies": [{"name": "finance", "groups": ["/finance"]}],
                "aggregatePolicies": [{"name": "either", "decisionStrategy": "AFFIRMATIVE", "policies": ["editors", "finance"]}]
            },
            "permissions": {"scopePermissions": [
                {"name": "edit", "resources": ["documents"], "scopes": ["write"], "policies": ["either"]}]}
        })
    }

    /// What Keycloak 26.7's export says once `example()` is applied (orders shuffled as Keycloak does).
    fn example_export() -> Value {
        json!({
            "allowRemoteResourceManagement": true, "policyEnforcementMode": "ENFORCING", "decisionStrategy": "UNANIMOUS",
            "scopes": [{"name": "write"}, {"name": "read"}],
            "resources": [{"name": "documents", "ownerManagedAccess": false, "attributes": {},
                           "uris": ["/api/documents/*"], "scopes": [{"name": "write"}, {"name": "read"}]}],
            "policies": [
                {"name": "editors", "type": "role", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS",
                 "config": {"fetchRoles": "true", "roles": "[{\"id\":\"app/admin\",\"required\":true},{\"id\":\"editor\",\"required\":false}]"}},
                {"name": "finance", "type": "group", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS",
                 "config": {"groups": "[{\"path\":\"/finance\",\"extendChildren\":false}]", "groupsClaim": "groups"}},
                {"name": "either", "type": "aggregate", "logic": "POSITIVE", "decisionStrategy": "AFFIRMATIVE",
                 "config": {"applyPolicies": "[\"finance\",\"editors\"]"}},
                {"name": "edit", "type": "scope", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS",
                 "config": {"resources": "[\"documents\"]", "scopes": "[\"write\"]", "applyPolicies": "[\"either\"]"}}
            ]
        })
    }

    fn observed(export: Value) -> ObservedAuthz {
        ObservedAuthz::from_export(&export, "api")
    }

    fn summary(plan: &AuthzPlan) -> Vec<String> {
        plan.operations
            .iter()
            .map(|op| match op {
                AuthzOperation::UpdateSettings(_) => "settings".to_string(),
                AuthzOperation::Create(o) => format!("create {} {}", o.kind.as_str(), o.name),
                AuthzOperation::Update(o) => format!("update {} {}", o.kind.as_str(), o.name),
                AuthzOperation::Delete { kind, name } => format!("delete {} {name}", kind.as_str()),
            })
            .collect()
    }

    #[test]
    fn what_keycloak_exports_after_an_apply_plans_nothing() {
        let plan = plan_authz(&desired(example()), &observed(example_export())).unwrap();
        assert!(plan.is_empty(), "{:?}", summary(&plan));
    }

    #[test]
    fn an_empty_resource_server_is_filled_in_dependency_order() {
        let empty = json!({"allowRemoteResourceManagement": true, "policyEnforcementMode": "ENFORCING",
                           "decisionStrategy": "UNANIMOUS", "scopes": [], "resources": [], "policies": []});
        let plan = plan_authz(&desired(example()), &observed(empty)).unwrap();
        assert_eq!(
            summary(&plan),
            [
                "create scope read",
                "create scope write",
                "create policy editors",
                "create policy finance",
                "create policy either",
                "create resource documents",
                "create permission edit"
            ]
        );
    }

    #[test]
    fn aggregates_come_after_the_aggregates_they_include() {
        let d = desired(json!({"policies": {
            "userPolicies": [{"name": "u", "users": ["alice"]}],
            "aggregatePolicies": [{"name": "outer", "policies": ["inner"]}, {"name": "inner", "policies": ["u"]}]}}));
        let names: Vec<&str> = d.policies.iter().flatten().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["u", "inner", "outer"]);
    }

    #[test]
    fn undeclared_objects_are_deleted_after_the_writes_permissions_first() {
        let mut export = example_export();
        let extra = json!([
            {"name": "old-perm", "type": "resource", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS", "config": {}},
            {"name": "old-aggr", "type": "aggregate", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS", "config": {}},
            {"name": "a-old-user", "type": "user", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS", "config": {}},
            {"name": "uma-thing", "type": "uma", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS", "config": {}}
        ]);
        export["policies"].as_array_mut().unwrap().extend(extra.as_array().unwrap().clone());
        export["resources"].as_array_mut().unwrap().push(json!({"name": "old-res", "uris": []}));
        export["resources"].as_array_mut().unwrap().push(json!({"name": "alice-album", "owner": {"name": "alice"}}));
        export["scopes"].as_array_mut().unwrap().push(json!({"name": "old-scope"}));
        let mut d = example();
        d["resources"][0]["uris"] = json!(["/v2/*"]);
        let plan = plan_authz(&desired(d), &observed(export)).unwrap();
        assert_eq!(
            summary(&plan),
            [
                "update resource documents",
                "delete permission old-perm",
                "delete resource old-res",
                "delete policy old-aggr",
                "delete policy a-old-user",
                "delete scope old-scope"
            ],
            "user-owned resources and policy types kco does not declare (uma) are left alone"
        );
    }

    #[test]
    fn omitted_lists_are_not_managed() {
        let mut export = example_export();
        export["scopes"].as_array_mut().unwrap().push(json!({"name": "hand-made"}));
        export["policies"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "hand-made-policy", "type": "time", "config": {"hour": "1"}}));
        let mut d = example();
        d.as_object_mut().unwrap().remove("scopes");
        d.as_object_mut().unwrap().remove("policies");
        let plan = plan_authz(&desired(d), &observed(export)).unwrap();
        assert!(plan.is_empty(), "{:?}", summary(&plan));
    }

    #[test]
    fn older_keycloaks_default_objects_go_when_the_spec_manages_those_lists() {
        // Keycloak before 26.5 made these when authorization was switched on.
        let mut export = example_export();
        export["resources"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "Default Resource", "type": "urn:api:resources:default", "uris": ["/*"]}));
        export["policies"].as_array_mut().unwrap().extend([
            json!({"name": "Default Policy", "type": "js", "logic": "POSITIVE", "decisionStrategy": "AFFIRMATIVE", "config": {}}),
            json!({"name": "Default Permission", "type": "resource", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS",
                   "config": {"defaultResourceType": "urn:api:resources:default", "applyPolicies": "[\"Default Policy\"]"}}),
        ]);
        let plan = plan_authz(&desired(example()), &observed(export)).unwrap();
        assert_eq!(
            summary(&plan),
            [
                "delete permission Default Permission",
                "delete resource Default Resource",
                "delete policy Default Policy"
            ]
        );
    }

    #[test]
    fn a_permission_naming_a_policy_that_exists_nowhere_is_refused_with_every_name() {
        let d = desired(json!({
            "resources": [{"name": "r"}],
            "permissions": {"resourcePermissions": [{"name": "p", "resources": ["r", "gone-res"], "policies": ["ghost", "kept"]}]}
        }));
        let mut export = example_export();
        export["policies"].as_array_mut().unwrap().push(json!({"name": "kept", "type": "user", "config": {}}));
        let missing = plan_authz(&d, &observed(export)).unwrap_err();
        let text: Vec<String> = missing.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "spec.authorizationSettings.permissions.resourcePermissions[0].policies: policy \"ghost\" does not exist",
                "spec.authorizationSettings.permissions.resourcePermissions[0].resources: resource \"gone-res\" does not exist"
            ],
            "an unmanaged policy that exists in Keycloak (kept) may be named"
        );
    }

    #[test]
    fn a_name_keycloak_holds_with_another_type_is_refused_not_replaced() {
        let mut d = example();
        d["policies"]["groupPolicies"] = json!([]);
        d["policies"]["userPolicies"] = json!([{"name": "finance", "users": ["fin"]}]);
        d["policies"]["regexPolicies"] = json!([{"name": "edit", "targetClaim": "x", "pattern": "y"}]);
        let mut export = example_export();
        export["policies"].as_array_mut().unwrap().push(json!({"name": "someones", "type": "uma", "config": {}}));
        d["policies"]["clientPolicies"] = json!([{"name": "someones", "clients": ["app"]}]);
        let problems = plan_authz(&desired(d), &observed(export)).unwrap_err();
        assert_eq!(plan_problem_reason(&problems), "AuthorizationTypeConflict");
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].starts_with("spec.authorizationSettings.policies.clientPolicies[0]: policy \"someones\" already exists in Keycloak as a \"uma\" policy"), "{text:?}");
        assert!(text[0].ends_with("Choose another name, or delete that policy in Keycloak"), "{text:?}");
        assert!(text[1].contains("policy \"edit\" already exists in Keycloak as a \"scope\" policy"), "{text:?}");
        assert!(text[2].contains("\"group\" policy") && text[2].contains("Give it a new name"), "{text:?}");
    }

    #[test]
    fn drift_in_config_and_settings_is_seen() {
        let mut export = example_export();
        export["policyEnforcementMode"] = json!("PERMISSIVE");
        export["policies"][3]["config"]["applyPolicies"] = json!("[]");
        export["policies"][0]["logic"] = json!("NEGATIVE");
        let plan = plan_authz(&desired(example()), &observed(export)).unwrap();
        assert_eq!(summary(&plan), ["settings", "update policy editors", "update permission edit"]);
        assert_eq!(
            plan.changed_fields(),
            ["authorizationSettings", "authorizationSettings.policies", "authorizationSettings.permissions"]
        );
    }

    #[test]
    fn every_policy_type_is_written_in_keycloaks_generic_shape() {
        let d = desired(json!({"policies": {
            "allowJavaScriptPolicies": true,
            "userPolicies": [{"name": "u", "users": ["alice"], "logic": "NEGATIVE", "description": "not alice"}],
            "clientPolicies": [{"name": "c", "clients": ["app"]}],
            "timePolicies": [{"name": "t", "notBefore": "2020-01-01 00:00:00", "hour": 8, "hourEnd": 17}],
            "regexPolicies": [{"name": "x", "targetClaim": "email", "pattern": ".*@example.com"}],
            "javascriptPolicies": [{"name": "js", "code": "$evaluation.grant();"}]}}));
        let reps: BTreeMap<&str, &DesiredObject> = d.policies.iter().flatten().map(|o| (o.name.as_str(), o)).collect();
        assert_eq!(
            reps["u"].representation,
            json!({"name": "u", "type": "user", "description": "not alice", "logic": "NEGATIVE",
                   "decisionStrategy": "UNANIMOUS", "config": {"users": "[\"alice\"]"}})
        );
        assert_eq!(
            reps["u"].subjects,
            [("authorizationSettings.policies.userPolicies[0].users".to_string(), Subject::User("alice".into()))]
        );
        assert_eq!(reps["c"].subjects[0].1, Subject::Client("app".into()));
        assert_eq!(
            reps["t"].representation["config"],
            json!({"nbf": "2020-01-01 00:00:00", "hour": "8", "hourEnd": "17"})
        );
        assert_eq!(reps["x"].representation["config"]["pattern"], ".*@example.com");
        assert_eq!(reps["js"].subjects[0].1, Subject::Script("js".into()));
        // A deployed script policy of any script type matches the JavaScript policy of that name.
        let export = json!({"policies": [{"name": "js", "type": "script-js.js", "logic": "POSITIVE", "decisionStrategy": "UNANIMOUS"}]});
        assert_eq!(
            canonical(AuthzKind::Policy, &export["policies"][0]),
            canonical(AuthzKind::Policy, &reps["js"].representation)
        );
    }

    #[test]
    fn client_roles_are_told_from_realm_roles() {
        let d = desired(example());
        let editors = d.policies.iter().flatten().find(|o| o.name == "editors").unwrap();
        let subjects: Vec<&Subject> = editors.subjects.iter().map(|(_, s)| s).collect();
        assert_eq!(
            subjects,
            [
                &Subject::RealmRole("editor".into()),
                &Subject::ClientRole { client_id: "app".into(), role: "admin".into() }
            ]
        );
    }

    #[test]
    fn authorization_turns_on_what_keycloak_needs_and_says_so() {
        let spec: KeycloakClientSpec = serde_json::from_value(json!({
            "clientId": "documents-api", "realmRef": {"name": "r"}, "bearerOnly": true,
            "settings": {"serviceAccountsEnabled": false, "authorizationServicesEnabled": true}}))
        .unwrap();
        let fields: Vec<(&str, bool)> = implied_settings(&spec).iter().map(|(f, v, _)| (*f, *v)).collect();
        assert_eq!(fields, [("serviceAccountsEnabled", true), ("bearerOnly", false)]);
        let note = implied_settings_note(&spec).unwrap();
        assert!(
            note.contains("kco turned on serviceAccountsEnabled") && note.contains("kco turned off bearerOnly"),
            "{note}"
        );
        let d = crate::DesiredClient::from_spec(&spec, None);
        assert_eq!(d.fields["serviceAccountsEnabled"], true);
        assert_eq!(d.fields["bearerOnly"], false);
        let plain: KeycloakClientSpec =
            serde_json::from_value(json!({"clientId": "x", "realmRef": {"name": "r"}, "bearerOnly": true})).unwrap();
        assert!(implied_settings_note(&plain).is_none());
    }
}
