//! plan: desired vs. observed Keycloak state → the ordered operations that converge them.
//! Pure: no IO, no clock. An empty plan means a reconcile makes no writes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::OWNER_ATTRIBUTE;
use crate::desired::{DesiredClient, MANAGED_ATTRIBUTES, Owner, SET_FIELDS, recorded_attributes};

#[derive(Debug, Clone, PartialEq)]
pub enum ClientOperation {
    CreateClient {
        representation: Value,
    },
    /// GET-merge-PUT: `representation` is the observed client with the managed fields overlaid.
    UpdateClient {
        changed: Vec<String>,
        representation: Value,
    },
    AddDefaultScope(String),
    RemoveDefaultScope(String),
    AddOptionalScope(String),
    RemoveOptionalScope(String),
    CreateMapper(Value),
    UpdateMapper {
        id: String,
        representation: Value,
    },
    DeleteMapper {
        id: String,
        name: String,
    },
    CreateClientRole(String),
    DeleteClientRole(String),
    GrantRealmRoles(Vec<String>),
    RevokeRealmRoles(Vec<String>),
    GrantClientRoles {
        client_id: String,
        roles: Vec<String>,
    },
    RevokeClientRoles {
        client_id: String,
        roles: Vec<String>,
    },
}

impl ClientOperation {
    /// The spec field an operation on an existing client changes (for Events and logs).
    fn field(&self) -> Option<&'static str> {
        use ClientOperation::*;
        Some(match self {
            CreateClient { .. } | UpdateClient { .. } => return None,
            AddDefaultScope(_) | RemoveDefaultScope(_) => "defaultClientScopes",
            AddOptionalScope(_) | RemoveOptionalScope(_) => "optionalClientScopes",
            CreateMapper(_) | UpdateMapper { .. } | DeleteMapper { .. } => "protocolMappers",
            CreateClientRole(_) | DeleteClientRole(_) => "clientRoles",
            GrantRealmRoles(_) | RevokeRealmRoles(_) => "serviceAccountRoles.realmRoles",
            GrantClientRoles { .. } | RevokeClientRoles { .. } => "serviceAccountRoles.clientRoles",
        })
    }
}

/// What kco read from Keycloak about one existing client. The role lists are read only when the
/// spec manages them (empty otherwise).
#[derive(Debug, Clone, Default)]
pub struct ObservedClient {
    /// `GET /clients/{id}`: includes protocolMappers and the default/optional scope names. The
    /// `secret` field is taken out (into `secret`) so no plan or Debug output can carry it.
    pub representation: Value,
    /// The client's current secret, as the same GET returned it.
    pub secret: Option<secrecy::SecretString>,
    pub client_roles: Vec<String>,
    pub service_account_realm_roles: Vec<String>,
    /// Client id → roles of that client the service-account user has (for the clients the spec lists).
    pub service_account_client_roles: BTreeMap<String, Vec<String>>,
    /// The service-account user's id, when its grants were read (apply reuses it).
    pub service_account_user: Option<String>,
    /// clientId → internal id of the clients whose roles the grants name (apply reuses them).
    pub client_ids: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientPlan {
    pub operations: Vec<ClientOperation>,
}

impl ClientPlan {
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// Names of the managed fields this plan changes on an existing client (for drift Events).
    pub fn changed_fields(&self) -> Vec<String> {
        distinct(self.operations.iter().flat_map(|op| match op {
            ClientOperation::UpdateClient { changed, .. } => changed.clone(),
            other => other.field().map(|f| vec![f.to_string()]).unwrap_or_default(),
        }))
    }
}

/// Each name once, in the order first seen (a plan's changed fields).
pub(crate) fn distinct(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Why an existing Keycloak client may not be managed by this object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Ours (or adopted on request): go ahead.
    Owned,
    /// Someone else's; the string names the owner (or says it was made outside kco).
    Foreign(String),
}

/// Clients Keycloak makes in every realm (and `<realm>-realm` in master): never kco's to take.
const BUILT_IN_CLIENTS: &[&str] =
    &["account", "account-console", "admin-cli", "broker", "realm-management", "security-admin-console"];

/// The reference operator's marks on a client it created: `io.kubernetes.managed-by` says
/// `keycloak-operator`, and `io.kubernetes.cr-namespace`/`cr-name` name its KeycloakClient.
pub const REFERENCE_MANAGED_BY: (&str, &str) = ("io.kubernetes.managed-by", "keycloak-operator");
const REFERENCE_CR_NAMESPACE: &str = "io.kubernetes.cr-namespace";
const REFERENCE_CR_NAME: &str = "io.kubernetes.cr-name";

/// `namespace/name` of the reference operator's KeycloakClient that made `observed`, if it did.
fn reference_owner(observed: &Value) -> Option<(String, String)> {
    let attributes = observed.get("attributes")?;
    let text = |k: &str| attributes.get(k).and_then(Value::as_str);
    (text(REFERENCE_MANAGED_BY.0)? == REFERENCE_MANAGED_BY.1).then(|| {
        (text(REFERENCE_CR_NAMESPACE).unwrap_or_default().into(), text(REFERENCE_CR_NAME).unwrap_or_default().into())
    })
}

/// Decide whether `observed` may be managed by `owner`. A client without an owner attribute was made
/// outside kco; it is taken over only with the adopt annotation, and never when it belongs to another
/// KeycloakClient or is one of Keycloak's built-in clients. A client the reference operator made is
/// taken over (with the annotation) only by the KeycloakClient of the same namespace and name as the
/// one that made it: moving over keeps the client, its id and its secret, and no tenant takes another's.
pub fn ownership(observed: &Value, owner: &Owner, adopt: bool) -> Ownership {
    let recorded = observed.pointer("/attributes").and_then(|a| a.get(OWNER_ATTRIBUTE)).and_then(Value::as_str);
    let client_id = observed.get("clientId").and_then(Value::as_str).unwrap_or_default();
    let built_in = BUILT_IN_CLIENTS.contains(&client_id) || client_id.ends_with("-realm");
    match (recorded, reference_owner(observed)) {
        (Some(v), _) if v == owner.attribute_value() => Ownership::Owned,
        (Some(v), _) if !v.is_empty() => Ownership::Foreign(format!("KeycloakClient {}", display_owner(v))),
        _ if built_in => Ownership::Foreign(format!("Keycloak itself ({client_id} is a built-in client)")),
        (_, Some((ns, name))) if adopt && ns == owner.namespace && name == owner.name => Ownership::Owned,
        (_, Some((ns, name))) => Ownership::Foreign(format!(
            "the reference operator's KeycloakClient {ns}/{name} (only the KeycloakClient {ns}/{name} may take it over)"
        )),
        _ if adopt => Ownership::Owned,
        _ => Ownership::Foreign("a client created outside kco".to_string()),
    }
}

fn display_owner(v: &str) -> String {
    let mut parts = v.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(name), Some(uid)) => format!("{ns}/{name} (uid {uid})"),
        _ => v.to_string(),
    }
}

/// The operations that make Keycloak match `desired`. `observed` is `None` when the client does not
/// exist yet; then it is created with everything its POST can carry, and roles follow.
pub fn plan_client(desired: &DesiredClient, observed: Option<&ObservedClient>) -> ClientPlan {
    let empty = ObservedClient::default();
    let mut ops = Vec::new();
    let obs = match observed {
        None => {
            ops.push(ClientOperation::CreateClient { representation: desired.create_representation() });
            &empty
        }
        Some(o) => {
            plan_fields(desired, &o.representation, &mut ops);
            make_way_for_protocol_change(&o.representation, &mut ops);
            plan_scopes(desired, &o.representation, &mut ops);
            plan_mappers(desired, &o.representation, &mut ops);
            o
        }
    };
    plan_roles(desired, obs, &mut ops);
    ClientPlan { operations: ops }
}

fn plan_fields(desired: &DesiredClient, observed: &Value, ops: &mut Vec<ClientOperation>) {
    let mut changed = Vec::new();
    for (key, want) in &desired.fields {
        let have = observed.get(key).unwrap_or(&Value::Null);
        if !field_equal(key, want, have) {
            changed.push(key.clone());
        }
    }
    let empty = Map::new();
    let have_attrs = observed.get("attributes").and_then(Value::as_object).unwrap_or(&empty);
    for (key, want) in &wanted_attributes(desired, have_attrs) {
        let have = have_attrs.get(key).and_then(Value::as_str);
        if !attribute_equal(want, have) {
            changed.push(format!("attributes.{key}"));
        }
    }
    if !changed.is_empty() {
        ops.push(ClientOperation::UpdateClient { changed, representation: merge(desired, observed) });
    }
}

/// The name of the mapper Keycloak adds to a client (any protocol) when its `docker` feature is on,
/// at creation and again at every protocol change.
pub(crate) const DOCKER_BUILTIN_MAPPER: &str = "docker-v2-allow-all-mapper";

/// With its `docker` feature on, Keycloak (26.7.3) adds its mapper `docker-v2-allow-all-mapper` to a
/// client whose protocol changes, and answers 409 "Client already exists" when the client still has a
/// mapper of that name (which it gave the client at creation). So before an update that changes the
/// protocol, that mapper is deleted; Keycloak puts it back as part of the change.
fn make_way_for_protocol_change(observed: &Value, ops: &mut Vec<ClientOperation>) {
    let Some(update) = ops.iter().position(
        |op| matches!(op, ClientOperation::UpdateClient { changed, .. } if changed.iter().any(|f| f == "protocol")),
    ) else {
        return;
    };
    let mappers = observed.get("protocolMappers").and_then(Value::as_array).into_iter().flatten();
    let deletes: Vec<ClientOperation> = mappers
        .filter(|m| m.get("name").and_then(Value::as_str) == Some(DOCKER_BUILTIN_MAPPER))
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .map(|id| ClientOperation::DeleteMapper { id: id.to_string(), name: DOCKER_BUILTIN_MAPPER.to_string() })
        .collect();
    ops.splice(update..update, deletes);
}

/// The attributes to compare and write: the desired ones, plus an empty value (which makes Keycloak
/// drop the attribute) for every key kco recorded having set from `spec.attributes` that the map no
/// longer holds. Only while the spec manages `attributes`; never kco's own keys nor a typed setting's.
fn wanted_attributes(desired: &DesiredClient, have: &Map<String, Value>) -> BTreeMap<String, String> {
    let mut want = desired.attributes.clone();
    if want.contains_key(MANAGED_ATTRIBUTES) {
        for key in recorded_attributes(have) {
            if !key.starts_with("kco.dev/") && !want.contains_key(&key) {
                want.insert(key, String::new());
            }
        }
    }
    want
}

/// Removals from both lists come before any addition: a scope moving from default to optional must
/// be unlinked before Keycloak will link it the other way.
fn plan_scopes(desired: &DesiredClient, observed: &Value, ops: &mut Vec<ClientOperation>) {
    let mut adds = Vec::new();
    if let Some(want) = &desired.default_client_scopes {
        let (add, remove) = set_diff(want, &string_set(observed.get("defaultClientScopes")));
        ops.extend(remove.into_iter().map(ClientOperation::RemoveDefaultScope));
        adds.extend(add.into_iter().map(ClientOperation::AddDefaultScope));
    }
    if let Some(want) = &desired.optional_client_scopes {
        let (add, remove) = set_diff(want, &string_set(observed.get("optionalClientScopes")));
        ops.extend(remove.into_iter().map(ClientOperation::RemoveOptionalScope));
        adds.extend(add.into_iter().map(ClientOperation::AddOptionalScope));
    }
    ops.extend(adds);
}

fn plan_mappers(desired: &DesiredClient, observed: &Value, ops: &mut Vec<ClientOperation>) {
    let set = &desired.protocol_mappers;
    let have: Vec<&Value> =
        observed.get("protocolMappers").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let name_of = |m: &Value| m.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    // A mapper already deleted to make way for a protocol change is gone (and Keycloak adds it anew).
    let gone: BTreeSet<String> = ops
        .iter()
        .filter_map(|op| match op {
            ClientOperation::DeleteMapper { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    let is_gone = |m: &Value| m.get("id").and_then(Value::as_str).is_some_and(|id| gone.contains(id));
    for m in &have {
        if is_gone(m) {
            continue;
        }
        let name = name_of(m);
        let managed = set.only_prefix.is_none_or(|p| name.starts_with(p));
        if managed && !set.mappers.iter().any(|d| d.name == name) {
            let id = m.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            ops.push(ClientOperation::DeleteMapper { id, name });
        }
    }
    for want in &set.mappers {
        match have.iter().find(|m| name_of(m) == want.name) {
            None => ops.push(ClientOperation::CreateMapper(want.representation())),
            // Keycloak adds it anew with the protocol change; the next reconcile compares it.
            Some(m) if is_gone(m) => {}
            Some(m) => {
                let same_type = m.get("protocolMapper").and_then(Value::as_str) == Some(want.protocol_mapper.as_str())
                    && m.get("protocol").and_then(Value::as_str) == Some(want.protocol.as_str());
                let config = m.get("config").and_then(Value::as_object);
                let same_config = want
                    .config
                    .iter()
                    .all(|(k, v)| config.and_then(|c| c.get(k)).and_then(Value::as_str) == Some(v.as_str()));
                let id = m.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                if !same_type {
                    // A mapper's type cannot change in place: replace it.
                    ops.push(ClientOperation::DeleteMapper { id, name: want.name.clone() });
                    ops.push(ClientOperation::CreateMapper(want.representation()));
                } else if !same_config {
                    let mut rep = m.as_object().cloned().unwrap_or_default();
                    let mut merged = config.cloned().unwrap_or_default();
                    for (k, v) in &want.config {
                        merged.insert(k.clone(), json!(v));
                    }
                    rep.insert("config".into(), Value::Object(merged));
                    let rep = Value::Object(rep);
                    ops.push(ClientOperation::UpdateMapper { id, representation: rep });
                }
            }
        }
    }
}

fn plan_roles(desired: &DesiredClient, observed: &ObservedClient, ops: &mut Vec<ClientOperation>) {
    if let Some(want) = &desired.client_roles {
        // Keycloak makes uma_protection itself for clients with authorization services.
        let ours = |r: &&String| r.as_str() != "uma_protection";
        let have: BTreeSet<String> = observed.client_roles.iter().filter(ours).cloned().collect();
        let want: Vec<String> = want.iter().filter(ours).cloned().collect();
        let (add, remove) = set_diff(&want, &have);
        ops.extend(remove.into_iter().map(ClientOperation::DeleteClientRole));
        ops.extend(add.into_iter().map(ClientOperation::CreateClientRole));
    }
    if let Some(want) = &desired.service_account_realm_roles {
        // Keycloak gives every user the realm's composite default role; it is not kco's to take away.
        let ours = |r: &&String| !r.starts_with("default-roles-");
        let have: BTreeSet<String> = observed.service_account_realm_roles.iter().filter(ours).cloned().collect();
        let want: Vec<String> = want.iter().filter(ours).cloned().collect();
        let (add, remove) = set_diff(&want, &have);
        if !remove.is_empty() {
            ops.push(ClientOperation::RevokeRealmRoles(remove));
        }
        if !add.is_empty() {
            ops.push(ClientOperation::GrantRealmRoles(add));
        }
    }
    // The map is the whole set of client-role grants: a client left out (or every client, with `{}`)
    // loses its grants. Keycloak's own grant of this client's uma_protection (Authorization Services)
    // is not kco's to take away.
    let Some(want_all) = &desired.service_account_client_roles else {
        return;
    };
    let clients: BTreeSet<&String> = want_all.keys().chain(observed.service_account_client_roles.keys()).collect();
    for client_id in clients {
        let ours = |r: &&String| !(client_id == &desired.client_id && r.as_str() == "uma_protection");
        let have: BTreeSet<String> =
            observed.service_account_client_roles.get(client_id).into_iter().flatten().filter(ours).cloned().collect();
        let want: Vec<String> = want_all.get(client_id).into_iter().flatten().filter(ours).cloned().collect();
        let (add, remove) = set_diff(&want, &have);
        if !remove.is_empty() {
            ops.push(ClientOperation::RevokeClientRoles { client_id: client_id.clone(), roles: remove });
        }
        if !add.is_empty() {
            ops.push(ClientOperation::GrantClientRoles { client_id: client_id.clone(), roles: add });
        }
    }
}

/// Observed representation with the managed fields overlaid; lists managed elsewhere are dropped so
/// the PUT cannot disturb them.
fn merge(desired: &DesiredClient, observed: &Value) -> Value {
    let empty = Map::new();
    let observed_attrs = observed.get("attributes").and_then(Value::as_object).unwrap_or(&empty);
    let mut rep = observed.as_object().cloned().unwrap_or_default();
    // What was read and is not kco's to send (the secret's records among it) stays out of the PUT:
    // Keycloak keeps it, where a stale copy could undo a rotation made since the read.
    kco_keycloak::strip_for_put(&mut rep);
    for (k, v) in &desired.fields {
        rep.insert(k.clone(), v.clone());
    }
    let mut attrs = rep.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default();
    for (k, v) in wanted_attributes(desired, observed_attrs) {
        attrs.insert(k, json!(v));
    }
    rep.insert("attributes".into(), Value::Object(attrs));
    Value::Object(rep)
}

fn field_equal(key: &str, want: &Value, have: &Value) -> bool {
    if SET_FIELDS.contains(&key) {
        return string_set(Some(want)) == string_set(Some(have));
    }
    // Keycloak omits some fields at their zero value (authorizationServicesEnabled: false, empty
    // strings): treat those and absent alike.
    match (want, have) {
        (Value::String(w), Value::Null) => w.is_empty(),
        (Value::Bool(false), Value::Null) => true,
        // Maps such as authenticationFlowBindingOverrides: an empty value is how a key is removed.
        (Value::Object(w), Value::Object(_) | Value::Null) => {
            let non_empty = |m: &Map<String, Value>| -> Map<String, Value> {
                m.iter().filter(|(_, v)| *v != &json!("")).map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            non_empty(w) == have.as_object().map(non_empty).unwrap_or_default()
        }
        _ => want == have,
    }
}

fn attribute_equal(want: &str, have: Option<&str>) -> bool {
    match have {
        Some(h) => h == want,
        None => want.is_empty(),
    }
}

fn string_set(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// (to add, to remove) to turn `have` into `want`.
fn set_diff(want: &[String], have: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let want: BTreeSet<String> = want.iter().cloned().collect();
    (want.difference(have).cloned().collect(), have.difference(&want).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kco_api::KeycloakClientSpec;

    fn spec(yaml_json: Value) -> KeycloakClientSpec {
        serde_json::from_value(yaml_json).unwrap()
    }

    fn obs(rep: &Value) -> ObservedClient {
        ObservedClient { representation: rep.clone(), ..Default::default() }
    }

    fn owner() -> Owner {
        Owner { namespace: "team-a".into(), name: "svc".into(), uid: "u-1".into() }
    }

    /// What Keycloak would hand back after creating `desired` (plus fields it adds on its own).
    /// Keycloak's answer is data from outside: every odd shape plans without a panic (issue #8:
    /// index-assignment on a mapper that was not an object used to panic).
    #[test]
    fn odd_keycloak_answers_plan_without_a_panic() {
        let spec: kco_api::KeycloakClientSpec = serde_json::from_value(json!({
            "clientId": "c", "realmRef": {"name": "r"}, "audiences": ["api"], "clientRoles": ["a"],
            "defaultClientScopes": ["profile"],
            "protocolMappers": [{"name": "m", "protocolMapper": "oidc-hardcoded-claim-mapper", "config": {"k": "v"}}]
        }))
        .unwrap();
        let d = DesiredClient::from_spec(&spec, Some(&owner()));
        for odd in [
            json!(null),
            json!("a string"),
            json!([1, 2]),
            json!({"protocolMappers": "not a list", "attributes": 7, "defaultClientScopes": {"x": 1}}),
            json!({"protocolMappers": [null, 5, "m", {"name": 5}, {"name": "m", "protocolMapper": "oidc-hardcoded-claim-mapper",
                "protocol": "openid-connect", "config": "not a map"}]}),
            json!({"protocolMappers": [{"name": "m", "protocolMapper": "oidc-hardcoded-claim-mapper", "protocol": "openid-connect",
                "config": {"k": 1}}], "redirectUris": [1, null], "attributes": {"kco.dev/owner": []}}),
        ] {
            let plan = plan_client(&d, Some(&obs(&odd)));
            assert!(!plan.is_empty(), "{odd}");
        }
    }

    fn as_keycloak_returns(desired: &DesiredClient) -> Value {
        let mut rep = desired.create_representation();
        let o = rep.as_object_mut().unwrap();
        o.insert("id".into(), json!("0b5c"));
        o.insert("surrogateAuthRequired".into(), json!(false));
        // Keycloak gives mappers ids and adds config defaults of its own.
        let mut mappers = o.get("protocolMappers").cloned().unwrap_or(json!([]));
        for (i, m) in mappers.as_array_mut().unwrap().iter_mut().enumerate() {
            m["id"] = json!(format!("m-{i}"));
            m["config"]["userinfo.token.claim"] = json!("false");
        }
        o.insert("protocolMappers".into(), mappers);
        // Keycloak leaves authorizationServicesEnabled out of the answer when it is false.
        if o["authorizationServicesEnabled"] == json!(false) {
            o.remove("authorizationServicesEnabled");
        }
        o.get_mut("attributes")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("client.secret.creation.time".into(), json!("1700000000"));
        rep
    }

    #[test]
    fn missing_client_is_created_with_every_managed_field() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"},
                "settings": {"serviceAccountsEnabled": true, "standardFlowEnabled": false, "directAccessGrantsEnabled": false}})),
            Some(&owner()),
        );
        let plan = plan_client(&d, None);
        assert_eq!(plan.operations.len(), 1);
        let ClientOperation::CreateClient { representation } = &plan.operations[0] else { panic!("not a create") };
        assert_eq!(representation["clientId"], "svc");
        assert_eq!(representation["serviceAccountsEnabled"], true);
        assert_eq!(representation["standardFlowEnabled"], false);
        assert_eq!(representation["directAccessGrantsEnabled"], false);
        assert_eq!(representation["publicClient"], false);
        assert_eq!(representation["attributes"][OWNER_ATTRIBUTE], "team-a/svc/u-1");
        assert!(representation.get("redirectUris").is_none(), "omitted list is not managed");
    }

    #[test]
    fn unchanged_client_plans_nothing() {
        let d = DesiredClient::from_spec(
            &spec(
                json!({"clientId": "svc", "realmRef": {"name": "r"}, "redirectUris": ["https://a/cb", "https://b/*"],
                "defaultClientScopes": ["profile", "email"]}),
            ),
            Some(&owner()),
        );
        let mut observed = as_keycloak_returns(&d);
        // Keycloak may return set-like lists in another order.
        observed["redirectUris"] = json!(["https://b/*", "https://a/cb"]);
        observed["defaultClientScopes"] = json!(["email", "profile"]);
        assert!(plan_client(&d, Some(&obs(&observed))).is_empty());
    }

    #[test]
    fn drift_in_managed_fields_is_reverted_and_named() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "redirectUris": ["https://a/cb"]})),
            Some(&owner()),
        );
        let mut observed = as_keycloak_returns(&d);
        observed["enabled"] = json!(false);
        observed["redirectUris"] = json!(["https://a/cb", "https://evil/cb"]);
        let plan = plan_client(&d, Some(&obs(&observed)));
        assert_eq!(plan.changed_fields(), vec!["enabled", "redirectUris"]);
        let ClientOperation::UpdateClient { representation, .. } = &plan.operations[0] else { panic!() };
        assert_eq!(representation["enabled"], true);
        assert_eq!(representation["redirectUris"], json!(["https://a/cb"]));
        // Fields kco does not manage survive the merge.
        assert_eq!(representation["surrogateAuthRequired"], false);
        assert!(representation.get("protocolMappers").is_none());
        // The secret's records are Keycloak's: left out, so a rotation since the read stays.
        assert!(representation["attributes"].get("client.secret.creation.time").is_none());
        assert_eq!(representation["attributes"]["display.on.consent.screen"], "true");
    }

    #[test]
    fn a_put_never_carries_the_secret_or_its_records_read_before() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "description": "new"})),
            Some(&owner()),
        );
        let mut observed = as_keycloak_returns(&d);
        observed["description"] = json!("old");
        let attrs = observed["attributes"].as_object_mut().unwrap();
        for (k, v) in [
            ("client.secret.rotated", "previous"),
            ("client.secret.rotated.creation.time", "1699990000"),
            ("client.secret.rotated.expiration.time", "1700000020"),
            ("client.secret.expiration.time", "1734560000"),
        ] {
            attrs.insert(k.into(), json!(v));
        }
        observed["secret"] = json!("read-before");
        let plan = plan_client(&d, Some(&obs(&observed)));
        let ClientOperation::UpdateClient { representation, .. } = &plan.operations[0] else { panic!() };
        assert_eq!(representation["description"], "new");
        assert!(representation.get("secret").is_none());
        let sent: Vec<&String> = representation["attributes"].as_object().unwrap().keys().collect();
        assert!(sent.iter().all(|k| !k.starts_with("client.secret.")), "{sent:?}");

        // Unless the spec sets one itself: then it is sent like any other attribute.
        let own = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"},
                         "attributes": {"client.secret.expiration.time": "1800000000"}})),
            Some(&owner()),
        );
        let plan = plan_client(&own, Some(&obs(&observed)));
        let ClientOperation::UpdateClient { representation, .. } = &plan.operations[0] else { panic!() };
        assert_eq!(representation["attributes"]["client.secret.expiration.time"], "1800000000");
        assert!(representation["attributes"].get("client.secret.rotated").is_none());
    }

    #[test]
    fn unmanaged_fields_changed_by_hand_stay_changed() {
        let d = DesiredClient::from_spec(&spec(json!({"clientId": "svc", "realmRef": {"name": "r"}})), Some(&owner()));
        let mut observed = as_keycloak_returns(&d);
        observed["redirectUris"] = json!(["https://hand-made/cb"]);
        observed["surrogateAuthRequired"] = json!(true);
        observed["attributes"]["custom"] = json!("x");
        assert!(plan_client(&d, Some(&obs(&observed))).is_empty());
    }

    #[test]
    fn explicit_empty_list_empties() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "webOrigins": [], "optionalClientScopes": []})),
            Some(&owner()),
        );
        let mut observed = as_keycloak_returns(&d);
        observed["webOrigins"] = json!(["https://x"]);
        observed["optionalClientScopes"] = json!(["offline_access"]);
        let plan = plan_client(&d, Some(&obs(&observed)));
        assert_eq!(plan.changed_fields(), vec!["webOrigins", "optionalClientScopes"]);
        assert!(plan.operations.contains(&ClientOperation::RemoveOptionalScope("offline_access".into())));
    }

    #[test]
    fn scope_changes_add_and_remove_only_the_difference() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "defaultClientScopes": ["profile", "api"]})),
            Some(&owner()),
        );
        let mut observed = as_keycloak_returns(&d);
        observed["defaultClientScopes"] = json!(["profile", "email"]);
        let plan = plan_client(&d, Some(&obs(&observed)));
        assert_eq!(
            plan.operations,
            vec![ClientOperation::RemoveDefaultScope("email".into()), ClientOperation::AddDefaultScope("api".into())]
        );
    }

    #[test]
    fn ownership_is_checked_by_attribute() {
        let d = DesiredClient::from_spec(&spec(json!({"clientId": "svc", "realmRef": {"name": "r"}})), Some(&owner()));
        let ours = as_keycloak_returns(&d);
        assert_eq!(ownership(&ours, &owner(), false), Ownership::Owned);
        let other = Owner { namespace: "team-b".into(), name: "svc".into(), uid: "u-2".into() };
        assert_eq!(ownership(&ours, &other, false), Ownership::Foreign("KeycloakClient team-a/svc (uid u-1)".into()));
        let hand_made = json!({"clientId": "svc", "attributes": {}});
        assert_eq!(ownership(&hand_made, &owner(), false), Ownership::Foreign("a client created outside kco".into()));
        assert_eq!(ownership(&hand_made, &owner(), true), Ownership::Owned);
        // Adoption never takes another KeycloakClient's client, nor Keycloak's own.
        assert!(matches!(ownership(&ours, &other, true), Ownership::Foreign(_)));
        let built_in = json!({"clientId": "admin-cli", "attributes": {}});
        assert!(matches!(ownership(&built_in, &owner(), true), Ownership::Foreign(_)));
        let master_realm_client = json!({"clientId": "team-a-realm"});
        assert!(matches!(ownership(&master_realm_client, &owner(), true), Ownership::Foreign(_)));
    }

    #[test]
    fn a_reference_operator_client_is_taken_over_only_by_its_own_keycloakclient_and_only_on_request() {
        let made_by_reference = |ns: &str, name: &str| {
            json!({"clientId": "svc", "attributes": {"io.kubernetes.managed-by": "keycloak-operator",
                "io.kubernetes.cr-namespace": ns, "io.kubernetes.cr-name": name}})
        };
        let theirs = made_by_reference("team-a", "svc");
        assert_eq!(ownership(&theirs, &owner(), true), Ownership::Owned);
        let Ownership::Foreign(who) = ownership(&theirs, &owner(), false) else { panic!() };
        assert!(who.contains("reference operator's KeycloakClient team-a/svc"), "{who}");
        // Another namespace's (or another name's) KeycloakClient never takes it, annotation or not.
        assert!(matches!(ownership(&made_by_reference("team-b", "svc"), &owner(), true), Ownership::Foreign(_)));
        assert!(matches!(ownership(&made_by_reference("team-a", "other"), &owner(), true), Ownership::Foreign(_)));
    }

    #[test]
    fn audiences_become_audience_mappers_and_only_those_are_managed() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "partner-x", "realmRef": {"name": "r"}, "audiences": ["orders-api"]})),
            Some(&owner()),
        );
        let ClientOperation::CreateClient { representation } = &plan_client(&d, None).operations[0] else { panic!() };
        let m = &representation["protocolMappers"][0];
        assert_eq!(m["name"], "kco-audience-orders-api");
        assert_eq!(m["protocolMapper"], "oidc-audience-mapper");
        assert_eq!(m["config"]["included.client.audience"], "orders-api");
        assert_eq!(m["config"]["access.token.claim"], "true");

        let mut observed = as_keycloak_returns(&d);
        // A hand-made mapper is left alone: without spec.protocolMappers only kco's audience mappers are managed.
        observed["protocolMappers"].as_array_mut().unwrap().push(json!({"id": "h", "name": "hand-made",
            "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-claim-mapper", "config": {}}));
        assert!(plan_client(&d, Some(&obs(&observed))).is_empty());

        // Dropping an audience deletes its mapper.
        let fewer = DesiredClient::from_spec(
            &spec(json!({"clientId": "partner-x", "realmRef": {"name": "r"}, "audiences": []})),
            Some(&owner()),
        );
        let plan = plan_client(&fewer, Some(&obs(&observed)));
        assert_eq!(
            plan.operations,
            vec![ClientOperation::DeleteMapper { id: "m-0".into(), name: "kco-audience-orders-api".into() }]
        );
    }

    #[test]
    fn protocol_mappers_are_created_updated_and_removed() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "protocolMappers": [
                {"name": "tenant", "protocolMapper": "oidc-hardcoded-claim-mapper",
                 "config": {"claim.name": "tenant", "claim.value": "a"}}]})),
            Some(&owner()),
        );
        let mut observed = as_keycloak_returns(&d);
        assert!(plan_client(&d, Some(&obs(&observed))).is_empty(), "extra config keys from Keycloak are no drift");
        observed["protocolMappers"][0]["config"]["claim.value"] = json!("b");
        observed["protocolMappers"].as_array_mut().unwrap().push(json!({"id": "x", "name": "extra",
            "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-claim-mapper", "config": {}}));
        let plan = plan_client(&d, Some(&obs(&observed)));
        assert_eq!(plan.operations.len(), 2);
        assert_eq!(plan.operations[0], ClientOperation::DeleteMapper { id: "x".into(), name: "extra".into() });
        let ClientOperation::UpdateMapper { id, representation } = &plan.operations[1] else { panic!() };
        assert_eq!(id, "m-0");
        assert_eq!(representation["config"]["claim.value"], "a");
        assert_eq!(representation["config"]["userinfo.token.claim"], "false", "Keycloak's own keys are kept");
        assert_eq!(plan.changed_fields(), vec!["protocolMappers"]);
    }

    #[test]
    fn roles_and_service_account_grants_converge() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "clientRoles": ["read", "write"],
                "settings": {"serviceAccountsEnabled": true},
                "serviceAccountRoles": {"realmRoles": ["reporter"], "clientRoles": {"orders-api": ["orders:read"]}}})),
            Some(&owner()),
        );
        // On create: the client, then its roles, then the grants.
        let ops = plan_client(&d, None).operations;
        assert!(matches!(ops[0], ClientOperation::CreateClient { .. }));
        assert_eq!(
            ops[1..],
            [
                ClientOperation::CreateClientRole("read".into()),
                ClientOperation::CreateClientRole("write".into()),
                ClientOperation::GrantRealmRoles(vec!["reporter".into()]),
                ClientOperation::GrantClientRoles { client_id: "orders-api".into(), roles: vec!["orders:read".into()] },
            ]
        );
        // In sync (the default composite role is ignored).
        let mut o = ObservedClient {
            representation: as_keycloak_returns(&d),
            client_roles: vec!["write".into(), "read".into()],
            service_account_realm_roles: vec!["default-roles-r".into(), "reporter".into()],
            service_account_client_roles: BTreeMap::from([("orders-api".into(), vec!["orders:read".into()])]),
            secret: None,
            ..Default::default()
        };
        assert!(plan_client(&d, Some(&o)).is_empty());
        // Hand edits: a grant removed, a role added.
        o.service_account_realm_roles = vec!["default-roles-r".into(), "admin".into()];
        o.client_roles.push("hand-made".into());
        let plan = plan_client(&d, Some(&o));
        assert_eq!(
            plan.operations,
            vec![
                ClientOperation::DeleteClientRole("hand-made".into()),
                ClientOperation::RevokeRealmRoles(vec!["admin".into()]),
                ClientOperation::GrantRealmRoles(vec!["reporter".into()]),
            ]
        );
        assert_eq!(plan.changed_fields(), vec!["clientRoles", "serviceAccountRoles.realmRoles"]);
    }

    #[test]
    fn naming_the_default_role_or_uma_protection_in_the_spec_is_no_perpetual_write() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "clientRoles": ["uma_protection", "read"],
                "settings": {"serviceAccountsEnabled": true},
                "serviceAccountRoles": {"realmRoles": ["default-roles-r", "reporter"]}})),
            Some(&owner()),
        );
        let o = ObservedClient {
            representation: as_keycloak_returns(&d),
            client_roles: vec!["read".into(), "uma_protection".into()],
            service_account_realm_roles: vec!["default-roles-r".into(), "reporter".into()],
            ..Default::default()
        };
        let plan = plan_client(&d, Some(&o));
        assert!(plan.is_empty(), "{plan:?}");
        // And kco never deletes Keycloak's own uma_protection role.
        let o = ObservedClient { client_roles: vec!["uma_protection".into()], ..o };
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "clientRoles": []})),
            Some(&owner()),
        );
        assert!(
            !plan_client(&d, Some(&o)).operations.iter().any(|op| matches!(op, ClientOperation::DeleteClientRole(_)))
        );
    }

    #[test]
    fn dropping_audiences_removes_kcos_audience_mappers() {
        let with = DesiredClient::from_spec(
            &spec(json!({"clientId": "p", "realmRef": {"name": "r"}, "audiences": ["orders-api"]})),
            Some(&owner()),
        );
        let observed = as_keycloak_returns(&with);
        let without =
            DesiredClient::from_spec(&spec(json!({"clientId": "p", "realmRef": {"name": "r"}})), Some(&owner()));
        assert_eq!(
            plan_client(&without, Some(&obs(&observed))).operations,
            vec![ClientOperation::DeleteMapper { id: "m-0".into(), name: "kco-audience-orders-api".into() }]
        );
    }

    #[test]
    fn a_protocol_change_first_deletes_the_mapper_keycloaks_docker_feature_adds_back() {
        let docker = DesiredClient::from_spec(
            &spec(json!({"clientId": "reg", "realmRef": {"name": "r"}, "protocol": "docker-v2"})),
            Some(&owner()),
        );
        let builtin = json!({"id": "b-1", "name": "docker-v2-allow-all-mapper", "protocol": "docker-v2",
            "protocolMapper": "docker-v2-allow-all-mapper", "config": {}});
        let mut observed = as_keycloak_returns(&docker);
        observed["protocolMappers"] = json!([builtin]);
        assert!(plan_client(&docker, Some(&obs(&observed))).is_empty(), "no protocol change, the mapper stays");

        // Protocol removed from the spec (back to openid-connect): the mapper goes first, then the PUT.
        let oidc =
            DesiredClient::from_spec(&spec(json!({"clientId": "reg", "realmRef": {"name": "r"}})), Some(&owner()));
        let plan = plan_client(&oidc, Some(&obs(&observed)));
        assert_eq!(
            plan.operations[0],
            ClientOperation::DeleteMapper { id: "b-1".into(), name: "docker-v2-allow-all-mapper".into() }
        );
        assert!(
            matches!(&plan.operations[1], ClientOperation::UpdateClient { changed, .. } if changed == &["protocol"])
        );
        assert_eq!(plan.operations.len(), 2);

        // With a declared mapper list that leaves it out, or that names it: still one delete, no create
        // (Keycloak adds it back with the change; the next reconcile compares it).
        for mappers in [
            json!([]),
            json!([{"name": "docker-v2-allow-all-mapper", "protocol": "docker-v2",
            "protocolMapper": "docker-v2-allow-all-mapper", "config": {}}]),
        ] {
            let d = DesiredClient::from_spec(
                &spec(json!({"clientId": "reg", "realmRef": {"name": "r"}, "protocolMappers": mappers})),
                Some(&owner()),
            );
            let ops = plan_client(&d, Some(&obs(&observed))).operations;
            let deletes = ops.iter().filter(|o| matches!(o, ClientOperation::DeleteMapper { .. })).count();
            let creates = ops.iter().filter(|o| matches!(o, ClientOperation::CreateMapper(_))).count();
            assert_eq!((deletes, creates), (1, 0), "{ops:?}");
        }
    }

    #[test]
    fn removing_a_scalar_setting_restores_keycloaks_default() {
        let with = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "adminUrl": "https://a/admin",
                "baseUrl": "/home", "clientName": "Svc",
                "settings": {"accessTokenLifespan": 600, "pkceCodeChallengeMethod": "S256",
                             "clientSessionIdleTimeout": 60}})),
            Some(&owner()),
        );
        let observed = as_keycloak_returns(&with);
        assert!(plan_client(&with, Some(&obs(&observed))).is_empty());
        let without =
            DesiredClient::from_spec(&spec(json!({"clientId": "svc", "realmRef": {"name": "r"}})), Some(&owner()));
        let plan = plan_client(&without, Some(&obs(&observed)));
        assert_eq!(
            plan.changed_fields(),
            vec![
                "adminUrl",
                "baseUrl",
                "name",
                "attributes.access.token.lifespan",
                "attributes.client.session.idle.timeout",
                "attributes.pkce.code.challenge.method"
            ]
        );
        let ClientOperation::UpdateClient { representation, .. } = &plan.operations[0] else { panic!() };
        // An empty value is how Keycloak is told to drop a client attribute (the realm's value applies).
        assert_eq!(representation["attributes"]["access.token.lifespan"], "");
        assert_eq!(representation["attributes"]["pkce.code.challenge.method"], "");
        assert_eq!(representation["adminUrl"], "");
        // Once Keycloak dropped them (absent or empty), nothing more to do.
        let mut after = observed.clone();
        for k in ["access.token.lifespan", "pkce.code.challenge.method", "client.session.idle.timeout"] {
            after["attributes"].as_object_mut().unwrap().remove(k);
        }
        for k in ["adminUrl", "baseUrl", "name"] {
            after.as_object_mut().unwrap().remove(k);
        }
        assert!(plan_client(&without, Some(&obs(&after))).is_empty());
    }

    #[test]
    fn empty_attributes_remove_only_the_keys_kco_set() {
        let with = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "attributes": {"a": "1", "b": "2"}})),
            Some(&owner()),
        );
        let ClientOperation::CreateClient { representation } = &plan_client(&with, None).operations[0] else {
            panic!()
        };
        assert_eq!(representation["attributes"][MANAGED_ATTRIBUTES], r#"["a","b"]"#);
        let mut observed = as_keycloak_returns(&with);
        observed["attributes"]["hand.made"] = json!("x");

        // Dropping one key removes that key only.
        let fewer = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "attributes": {"a": "1"}})),
            Some(&owner()),
        );
        let plan = plan_client(&fewer, Some(&obs(&observed)));
        assert_eq!(plan.changed_fields(), vec!["attributes.b", "attributes.kco.dev/attributes"]);

        // `{}` empties what kco set; the owner mark, typed settings, Keycloak's and hand-made keys stay.
        let none = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "attributes": {}})),
            Some(&owner()),
        );
        let plan = plan_client(&none, Some(&obs(&observed)));
        let ClientOperation::UpdateClient { representation, .. } = &plan.operations[0] else { panic!() };
        let attrs = &representation["attributes"];
        assert_eq!((attrs["a"].as_str(), attrs["b"].as_str()), (Some(""), Some("")));
        assert_eq!(attrs[MANAGED_ATTRIBUTES], "[]");
        assert_eq!(attrs["hand.made"], "x");
        assert_eq!(attrs[OWNER_ATTRIBUTE], "team-a/svc/u-1");
        assert_eq!(attrs["display.on.consent.screen"], "true");
        assert!(attrs.get("client.secret.creation.time").is_none(), "Keycloak keeps it; not sent");

        // Omitted: unmanaged, nothing removed.
        let omitted =
            DesiredClient::from_spec(&spec(json!({"clientId": "svc", "realmRef": {"name": "r"}})), Some(&owner()));
        assert!(plan_client(&omitted, Some(&obs(&observed))).is_empty());
    }

    #[test]
    fn empty_service_account_client_roles_revoke_every_client_grant_but_keycloaks_own() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "settings": {"serviceAccountsEnabled": true},
                "serviceAccountRoles": {"clientRoles": {}}})),
            Some(&owner()),
        );
        let o = ObservedClient {
            representation: as_keycloak_returns(&d),
            service_account_client_roles: BTreeMap::from([
                ("orders-api".into(), vec!["orders:read".into()]),
                ("svc".into(), vec!["uma_protection".into()]),
            ]),
            ..Default::default()
        };
        assert_eq!(
            plan_client(&d, Some(&o)).operations,
            vec![ClientOperation::RevokeClientRoles {
                client_id: "orders-api".into(),
                roles: vec!["orders:read".into()]
            }]
        );
        // Omitted: unmanaged.
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "settings": {"serviceAccountsEnabled": true}})),
            Some(&owner()),
        );
        assert!(plan_client(&d, Some(&o)).is_empty());
    }

    #[test]
    fn a_scope_moving_between_lists_is_unlinked_before_it_is_linked() {
        let d = DesiredClient::from_spec(
            &spec(json!({"clientId": "svc", "realmRef": {"name": "r"}, "defaultClientScopes": ["profile"],
                "optionalClientScopes": ["email"]})),
            Some(&owner()),
        );
        let mut observed = as_keycloak_returns(&d);
        observed["defaultClientScopes"] = json!(["profile", "email"]);
        observed["optionalClientScopes"] = json!([]);
        assert_eq!(
            plan_client(&d, Some(&obs(&observed))).operations,
            vec![
                ClientOperation::RemoveDefaultScope("email".into()),
                ClientOperation::AddOptionalScope("email".into())
            ]
        );
    }
}
