//! authz: a client's Authorization Services — the desired state built from `spec.authorizationSettings`,
//! the observed state read from Keycloak's name-based export, a pure plan, and its apply through the
//! dedicated authz endpoints (a client PUT ignores `authorizationSettings`).
//!
//! Everything is compared by name, in the export's own shape (role names, group paths, usernames,
//! clientIds, policy/resource/scope names), so an idle resync needs one read: the export.

use std::collections::{BTreeMap, BTreeSet};

use kco_api::{
    AuthorizationSettings, AuthzPolicies, DecisionStrategy, KeycloakClientSpec, Logic, PolicyEnforcementMode,
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

impl DesiredAuthz {
    /// `None` unless the spec enables Authorization Services and declares `authorizationSettings`.
    pub fn from_spec(spec: &KeycloakClientSpec) -> Option<Self> {
        if !spec.settings.authorization_services_enabled {
            return None;
        }
        spec.authorization_settings.as_ref().map(Self::from_settings)
    }

    pub fn from_settings(a: &AuthorizationSettings) -> Self {
        let settings = json!({
            "policyEnforcementMode": enforcement(a.policy_enforcement_mode),
            "decisionStrategy": strategy(a.decision_strategy),
            "allowRemoteResourceManagement": a.allow_remote_resource_management,
        });
        let scopes = a.scopes.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut rep = Map::new();
                    rep.insert("name".into(), json!(s.name));
                    if let Some(d) = &s.display_name {
                        rep.insert("displayName".into(), json!(d));
                    }
                    if let Some(u) = &s.icon_uri {
                        rep.insert("iconUri".into(), json!(u));
                    }
                    DesiredObject {
                        kind: AuthzKind::Scope,
                        name: s.name.clone(),
                        field: format!("{AUTHZ}.scopes[{i}]"),
                        representation: Value::Object(rep),
                        subjects: vec![],
                        refs: vec![],
                    }
                })
                .collect()
        });
        let resources = a.resources.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, r)| {
                    let field = format!("{AUTHZ}.resources[{i}]");
                    let mut rep = Map::new();
                    rep.insert("name".into(), json!(r.name));
                    if let Some(d) = &r.display_name {
                        rep.insert("displayName".into(), json!(d));
                    }
                    if let Some(t) = &r.type_ {
                        rep.insert("type".into(), json!(t));
                    }
                    rep.insert("uris".into(), json!(r.uris));
                    let scopes: Vec<Value> = r.scopes.iter().map(|s| json!({ "name": s })).collect();
                    rep.insert("scopes".into(), Value::Array(scopes));
                    rep.insert("ownerManagedAccess".into(), json!(r.owner_managed_access));
                    rep.insert("attributes".into(), json!(r.attributes));
                    let refs =
                        r.scopes.iter().map(|s| (format!("{field}.scopes"), AuthzKind::Scope, s.clone())).collect();
                    DesiredObject {
                        kind: AuthzKind::Resource,
                        name: r.name.clone(),
                        field,
                        representation: Value::Object(rep),
                        subjects: vec![],
                        refs,
                    }
                })
                .collect()
        });
        let policies = a.policies.as_ref().map(desired_policies);
        let permissions = a.permissions.as_ref().map(|p| {
            let mut out = Vec::new();
            for (i, rp) in p.resource_permissions.iter().enumerate() {
                let field = format!("{AUTHZ}.permissions.resourcePermissions[{i}]");
                let mut config = Map::new();
                config.insert("resources".into(), json_string(json!(rp.resources)));
                config.insert("applyPolicies".into(), json_string(json!(rp.policies)));
                if let Some(t) = &rp.resource_type {
                    config.insert("defaultResourceType".into(), json!(t));
                }
                let mut refs: Vec<_> = rp
                    .resources
                    .iter()
                    .map(|r| (format!("{field}.resources"), AuthzKind::Resource, r.clone()))
                    .collect();
                refs.extend(rp.policies.iter().map(|p| (format!("{field}.policies"), AuthzKind::Policy, p.clone())));
                out.push(DesiredObject {
                    kind: AuthzKind::Permission,
                    name: rp.name.clone(),
                    representation: policy_rep(
                        &rp.name,
                        "resource",
                        &rp.description,
                        Logic::Positive,
                        rp.decision_strategy,
                        config,
                    ),
                    field,
                    subjects: vec![],
                    refs,
                });
            }
            for (i, sp) in p.scope_permissions.iter().enumerate() {
                let field = format!("{AUTHZ}.permissions.scopePermissions[{i}]");
                let mut config = Map::new();
                config.insert("resources".into(), json_string(json!(sp.resources)));
                config.insert("scopes".into(), json_string(json!(sp.scopes)));
                config.insert("applyPolicies".into(), json_string(json!(sp.policies)));
                if let Some(t) = &sp.resource_type {
                    config.insert("defaultResourceType".into(), json!(t));
                }
                let mut refs: Vec<_> = sp
                    .resources
                    .iter()
                    .map(|r| (format!("{field}.resources"), AuthzKind::Resource, r.clone()))
                    .collect();
                refs.extend(sp.scopes.iter().map(|s| (format!("{field}.scopes"), AuthzKind::Scope, s.clone())));
                refs.extend(sp.policies.iter().map(|p| (format!("{field}.policies"), AuthzKind::Policy, p.clone())));
                out.push(DesiredObject {
                    kind: AuthzKind::Permission,
                    name: sp.name.clone(),
                    representation: policy_rep(
                        &sp.name,
                        "scope",
                        &sp.description,
                        Logic::Positive,
                        sp.decision_strategy,
                        config,
                    ),
                    field,
                    subjects: vec![],
                    refs,
                });
            }
            out
        });
        Self { settings, scopes, resources, policies, permissions }
    }

    /// Every declared object, in create/update order: scopes, policies, resources, permissions.
    pub fn objects(&self) -> impl Iterator<Item = &DesiredObject> {
        [&self.scopes, &self.policies, &self.resources, &self.permissions].into_iter().flatten().flatten()
    }
}

/// Placeholder type of a JavaScript policy until the deployed script is looked up (`script-…`).
pub const SCRIPT_TYPE: &str = "script-";

fn desired_policies(p: &AuthzPolicies) -> Vec<DesiredObject> {
    let base = format!("{AUTHZ}.policies");
    let mut out = Vec::new();
    let pol = |name: &str, field: String, rep: Value, subjects: Vec<(String, Subject)>| DesiredObject {
        kind: AuthzKind::Policy,
        name: name.to_string(),
        field,
        representation: rep,
        subjects,
        refs: vec![],
    };
    for (i, r) in p.role_policies.iter().enumerate() {
        let field = format!("{base}.rolePolicies[{i}]");
        let roles: Vec<Value> = r.roles.iter().map(|x| json!({"id": x.name, "required": x.required})).collect();
        let mut config = Map::new();
        config.insert("roles".into(), json_string(Value::Array(roles)));
        config.insert("fetchRoles".into(), json!(r.fetch_roles.to_string()));
        let subjects = r
            .roles
            .iter()
            .map(|x| {
                let s = match x.name.split_once('/') {
                    Some((client_id, role)) => {
                        Subject::ClientRole { client_id: client_id.to_string(), role: role.to_string() }
                    }
                    None => Subject::RealmRole(x.name.clone()),
                };
                (format!("{field}.roles"), s)
            })
            .collect();
        let rep = policy_rep(&r.name, "role", &r.description, r.logic, DecisionStrategy::Unanimous, config);
        out.push(pol(&r.name, field, rep, subjects));
    }
    for (i, u) in p.user_policies.iter().enumerate() {
        let field = format!("{base}.userPolicies[{i}]");
        let mut config = Map::new();
        config.insert("users".into(), json_string(json!(u.users)));
        let subjects = u.users.iter().map(|x| (format!("{field}.users"), Subject::User(x.clone()))).collect();
        let rep = policy_rep(&u.name, "user", &u.description, u.logic, DecisionStrategy::Unanimous, config);
        out.push(pol(&u.name, field, rep, subjects));
    }
    for (i, g) in p.group_policies.iter().enumerate() {
        let field = format!("{base}.groupPolicies[{i}]");
        let groups: Vec<Value> = g.groups.iter().map(|x| json!({"path": x, "extendChildren": false})).collect();
        let mut config = Map::new();
        config.insert("groups".into(), json_string(Value::Array(groups)));
        config.insert("groupsClaim".into(), json!(g.groups_claim));
        let subjects = g.groups.iter().map(|x| (format!("{field}.groups"), Subject::Group(x.clone()))).collect();
        let rep = policy_rep(&g.name, "group", &g.description, g.logic, DecisionStrategy::Unanimous, config);
        out.push(pol(&g.name, field, rep, subjects));
    }
    for (i, c) in p.client_policies.iter().enumerate() {
        let field = format!("{base}.clientPolicies[{i}]");
        let mut config = Map::new();
        config.insert("clients".into(), json_string(json!(c.clients)));
        let subjects = c.clients.iter().map(|x| (format!("{field}.clients"), Subject::Client(x.clone()))).collect();
        let rep = policy_rep(&c.name, "client", &c.description, c.logic, DecisionStrategy::Unanimous, config);
        out.push(pol(&c.name, field, rep, subjects));
    }
    for (i, t) in p.time_policies.iter().enumerate() {
        let field = format!("{base}.timePolicies[{i}]");
        let mut config = Map::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                config.insert(k.into(), json!(v));
            }
        };
        put("nbf", t.not_before.clone());
        put("noa", t.not_on_or_after.clone());
        let n = |v: Option<i32>| v.map(|x| x.to_string());
        put("dayMonth", n(t.day_month));
        put("dayMonthEnd", n(t.day_month_end));
        put("month", n(t.month));
        put("monthEnd", n(t.month_end));
        put("year", n(t.year));
        put("yearEnd", n(t.year_end));
        put("hour", n(t.hour));
        put("hourEnd", n(t.hour_end));
        put("minute", n(t.minute));
        put("minuteEnd", n(t.minute_end));
        let rep = policy_rep(&t.name, "time", &t.description, t.logic, DecisionStrategy::Unanimous, config);
        out.push(pol(&t.name, field, rep, vec![]));
    }
    for (i, r) in p.regex_policies.iter().enumerate() {
        let field = format!("{base}.regexPolicies[{i}]");
        let mut config = Map::new();
        config.insert("targetClaim".into(), json!(r.target_claim));
        config.insert("pattern".into(), json!(r.pattern));
        config.insert("targetContextAttributes".into(), json!("false"));
        let rep = policy_rep(&r.name, "regex", &r.description, r.logic, DecisionStrategy::Unanimous, config);
        out.push(pol(&r.name, field, rep, vec![]));
    }
    for (i, j) in p.javascript_policies.iter().enumerate() {
        let field = format!("{base}.javascriptPolicies[{i}]");
        let rep = policy_rep(&j.name, SCRIPT_TYPE, &j.description, j.logic, DecisionStrategy::Unanimous, Map::new());
        out.push(pol(&j.name, field.clone(), rep, vec![(field, Subject::Script(j.name.clone()))]));
    }
    // Aggregates after everything they include (validation refuses cycles; a leftover is appended).
    let mut pending: Vec<(usize, &kco_api::AggregatePolicy)> = p.aggregate_policies.iter().enumerate().collect();
    let mut placed: BTreeSet<String> = out.iter().map(|o| o.name.clone()).collect();
    while !pending.is_empty() {
        let aggregates: BTreeSet<&str> = pending.iter().map(|(_, a)| a.name.as_str()).collect();
        let (ready, wait): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(_, a)| a.policies.iter().all(|x| placed.contains(x) || !aggregates.contains(x.as_str())));
        let stuck = ready.is_empty();
        let batch = if stuck { wait.clone() } else { ready };
        pending = if stuck { Vec::new() } else { wait };
        for (i, a) in batch {
            let field = format!("{base}.aggregatePolicies[{i}]");
            let mut config = Map::new();
            config.insert("applyPolicies".into(), json_string(json!(a.policies)));
            let rep = policy_rep(&a.name, "aggregate", &a.description, a.logic, a.decision_strategy, config);
            let refs = a.policies.iter().map(|x| (format!("{field}.policies"), AuthzKind::Policy, x.clone())).collect();
            placed.insert(a.name.clone());
            out.push(DesiredObject {
                kind: AuthzKind::Policy,
                name: a.name.clone(),
                field,
                representation: rep,
                subjects: vec![],
                refs,
            });
        }
    }
    out
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
        AuthzKind::Resource => {
            let strings =
                |k: &str| {
                    as_set(
                        rep.get(k).and_then(Value::as_array).into_iter().flatten().filter_map(|x| {
                            x.as_str().or_else(|| x.get("name").and_then(Value::as_str)).map(|s| json!(s))
                        }),
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
        AuthzKind::Policy | AuthzKind::Permission => {
            let t = rep.get("type").and_then(Value::as_str).unwrap_or_default();
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
    }
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
        let mut out: Vec<String> = Vec::new();
        for op in &self.operations {
            let f = op.field().to_string();
            if !out.contains(&f) {
                out.push(f);
            }
        }
        out
    }
}

/// Desired vs. observed → operations: the settings, then creates and updates (scopes → policies,
/// aggregates after what they include → resources → permissions), then deletes of what a managed list
/// no longer declares (permissions → resources → aggregates → policies → scopes). Deleting last means
/// no permission is ever left pointing at a policy that is gone. A permission or aggregate that names
/// an authorization object which neither the spec nor Keycloak has is refused: the plan is not made.
pub fn plan_authz(desired: &DesiredAuthz, observed: &ObservedAuthz) -> Result<AuthzPlan, Vec<PlanProblem>> {
    let mut ops = Vec::new();
    if sorted(&desired.settings) != sorted(&observed.settings) {
        ops.push(AuthzOperation::UpdateSettings(desired.settings.clone()));
    }
    let observed_policies = |permission: bool| -> BTreeMap<&String, &Value> {
        observed
            .policies
            .iter()
            .filter(|(_, v)| {
                let t = v.get("type").and_then(Value::as_str).unwrap_or_default();
                if permission { is_permission_type(t) } else { managed_policy_type(t) }
            })
            .collect()
    };
    let observed_plain = observed_policies(false);
    let observed_perms = observed_policies(true);

    // Names that will exist after the plan, per kind.
    let will_exist = |kind: AuthzKind| -> BTreeSet<String> {
        let (declared, present): (&Option<Vec<DesiredObject>>, Vec<&String>) = match kind {
            AuthzKind::Scope => (&desired.scopes, observed.scopes.keys().collect()),
            AuthzKind::Resource => (&desired.resources, observed.resources.keys().collect()),
            AuthzKind::Policy => (&desired.policies, observed.policies.keys().collect()),
            AuthzKind::Permission => (&desired.permissions, observed_perms.keys().copied().collect()),
        };
        match declared {
            Some(list) => {
                let mut names: BTreeSet<String> = list.iter().map(|o| o.name.clone()).collect();
                if kind == AuthzKind::Policy {
                    // Policies of types kco does not declare stay, and can be named.
                    names.extend(
                        observed
                            .policies
                            .iter()
                            .filter(|(_, v)| {
                                let t = v.get("type").and_then(Value::as_str).unwrap_or_default();
                                !managed_policy_type(t) && !is_permission_type(t)
                            })
                            .map(|(n, _)| n.clone()),
                    );
                }
                names
            }
            None => present.into_iter().cloned().collect(),
        }
    };
    let mut missing = BTreeSet::new();
    let existing: BTreeMap<AuthzKind, BTreeSet<String>> =
        [AuthzKind::Scope, AuthzKind::Resource, AuthzKind::Policy].into_iter().map(|k| (k, will_exist(k))).collect();
    for o in desired.objects() {
        for (field, kind, name) in &o.refs {
            if !existing.get(kind).is_some_and(|s| s.contains(name)) {
                missing.insert(PlanProblem::missing(field, format!("{} {name:?}", kind.as_str())));
            }
        }
    }
    if !missing.is_empty() {
        return Err(missing.into_iter().collect());
    }

    // Keycloak cannot change a policy's type in place, and deleting it takes the permissions that rely
    // on it with it (a resource without permissions is then granted in PERMISSIVE mode): a name Keycloak holds with
    // another type is refused, never replaced.
    for o in [&desired.policies, &desired.permissions].into_iter().flatten().flatten() {
        let Some(have) = observed.policies.get(&o.name) else { continue };
        let t = have.get("type").and_then(Value::as_str).unwrap_or_default();
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
            missing.insert(PlanProblem { field: o.field.clone(), message, missing: false });
        }
    }
    if !missing.is_empty() {
        return Err(missing.into_iter().collect());
    }

    let mut deletes = Vec::new();
    let mut upserts = Vec::new();
    for (kind, list, present) in [
        // Policies before resources: a write that fails part-way never leaves a new resource behind
        // without the permission meant to guard it.
        (AuthzKind::Scope, &desired.scopes, observed.scopes.iter().collect::<BTreeMap<_, _>>()),
        (AuthzKind::Policy, &desired.policies, observed_plain.clone()),
        (AuthzKind::Resource, &desired.resources, observed.resources.iter().collect()),
        (AuthzKind::Permission, &desired.permissions, observed_perms.clone()),
    ] {
        let Some(list) = list else { continue };
        for o in list {
            match present.get(&o.name) {
                None => upserts.push(AuthzOperation::Create(o.clone())),
                Some(have) if canonical(kind, have) != canonical(kind, &o.representation) => {
                    upserts.push(AuthzOperation::Update(o.clone()))
                }
                Some(_) => {}
            }
        }
        let declared: BTreeSet<&str> = list.iter().map(|o| o.name.as_str()).collect();
        let mut gone: Vec<(bool, &String)> = present
            .iter()
            .filter(|(n, _)| !declared.contains(n.as_str()))
            .map(|(n, v)| (v.get("type").and_then(Value::as_str) == Some("aggregate"), *n))
            .collect();
        // Aggregates go before the policies they include.
        gone.sort_by_key(|(aggregate, n)| (!aggregate, (*n).clone()));
        deletes.push((kind, gone.into_iter().map(|(_, n)| n.clone()).collect::<Vec<_>>()));
    }
    ops.extend(upserts);
    for (kind, names) in deletes.into_iter().rev() {
        ops.extend(names.into_iter().map(|name| AuthzOperation::Delete { kind, name }));
    }
    Ok(AuthzPlan { operations: ops })
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
                    let h = subject_exists(kc, realm, s, &mut providers, &authz).await?;
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
    if !missing.is_empty() {
        let list: Vec<PlanProblem> = missing.into_iter().collect();
        return Err(missing_error(client_id, realm, &list));
    }
    let mut ids: BTreeMap<AuthzKind, BTreeMap<String, String>> = BTreeMap::new();
    for op in &plan.operations {
        match op {
            AuthzOperation::UpdateSettings(settings) => {
                let mut body = Map::new();
                if let Some(s) = settings.as_object() {
                    body.extend(s.clone());
                }
                body.insert("clientId".into(), json!(id));
                kc.put(&authz, &Value::Object(body), "authz-settings").await?;
            }
            AuthzOperation::Create(o) => {
                let rep = with_script_type(o, &script_types);
                let mut path = authz.to_vec();
                let segment = endpoint(o.kind);
                path.push(segment);
                let typed;
                if let Some(t) = script_types.get(&o.name) {
                    // A deployed script is created through its own typed endpoint.
                    typed = t.clone();
                    path.push(&typed);
                }
                kc.post(&path, &rep, &format!("authz-{}", o.kind.as_str())).await?;
            }
            AuthzOperation::Update(o) => {
                let object_id = id_of(kc, &authz, &mut ids, o.kind, &o.name, client_id).await?;
                let mut rep = with_script_type(o, &script_types);
                if let Some(m) = rep.as_object_mut() {
                    let key = if o.kind == AuthzKind::Resource { "_id" } else { "id" };
                    m.insert(key.into(), json!(object_id));
                }
                let mut path = authz.to_vec();
                path.push(endpoint(o.kind));
                path.push(&object_id);
                kc.put(&path, &rep, &format!("authz-{}", o.kind.as_str())).await?;
            }
            AuthzOperation::Delete { kind, name } => {
                let object_id = id_of(kc, &authz, &mut ids, *kind, name, client_id).await?;
                let mut path = authz.to_vec();
                path.push(endpoint(*kind));
                path.push(&object_id);
                match kc.delete(&path, None, &format!("authz-{}", kind.as_str())).await {
                    Err(e) if e.is_not_found() => {}
                    other => other?,
                }
            }
        }
    }
    Ok(())
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

/// Id of the named object, from one paged listing of its kind per apply (`first`/`max`, 100 a page).
async fn id_of(
    kc: &KeycloakAdmin,
    authz: &[&str],
    ids: &mut BTreeMap<AuthzKind, BTreeMap<String, String>>,
    kind: AuthzKind,
    name: &str,
    client_id: &str,
) -> Result<String, EngineError> {
    // Policies and permissions share one listing.
    let key = if kind == AuthzKind::Permission { AuthzKind::Policy } else { kind };
    if let std::collections::btree_map::Entry::Vacant(slot) = ids.entry(key) {
        let mut all = BTreeMap::new();
        let mut first = 0usize;
        loop {
            let mut path = authz.to_vec();
            path.push(endpoint(key));
            let (f, m) = (first.to_string(), PAGE.to_string());
            let mut query = vec![("first", f.as_str()), ("max", m.as_str())];
            if key == AuthzKind::Resource {
                query.push(("deep", "false"));
            }
            let page = kc.get(&path, &query, &format!("authz-{}", key.as_str())).await?;
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
                break;
            }
            first += PAGE;
        }
        slot.insert(all);
    }
    ids.get(&key).and_then(|m| m.get(name)).cloned().ok_or_else(|| EngineError::Spec {
        reason: "AuthorizationOutOfSync",
        message: format!(
            "authorization {} {name:?} is in Keycloak's export but not in its list; kco retries at the next resync",
            kind.as_str()
        ),
    })
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
