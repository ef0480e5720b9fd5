//! plan: desired vs. observed Keycloak state → the ordered operations that converge them.
//! Pure: no IO, no clock. An empty plan means a reconcile makes no writes.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::OWNER_ATTRIBUTE;
use crate::desired::{DesiredClient, Owner, SET_FIELDS};

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
        let mut out = Vec::new();
        for op in &self.operations {
            match op {
                ClientOperation::UpdateClient { changed, .. } => out.extend(changed.iter().cloned()),
                ClientOperation::AddDefaultScope(_) | ClientOperation::RemoveDefaultScope(_) => {
                    out.push("defaultClientScopes".to_string())
                }
                ClientOperation::AddOptionalScope(_) | ClientOperation::RemoveOptionalScope(_) => {
                    out.push("optionalClientScopes".to_string())
                }
                ClientOperation::CreateClient { .. } => {}
            }
        }
        out.dedup();
        out
    }

    pub fn creates(&self) -> bool {
        self.operations.iter().any(|o| matches!(o, ClientOperation::CreateClient { .. }))
    }
}

/// Why an existing Keycloak client may not be managed by this object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Ours (or adopted on request): go ahead.
    Owned,
    /// Someone else's; the string names the owner (or says it was made outside kco).
    Foreign(String),
}

/// Decide whether `observed` may be managed by `owner`. A client without an owner attribute was made
/// outside kco; it is taken over only with the adopt annotation.
pub fn ownership(observed: &Value, owner: &Owner, adopt: bool) -> Ownership {
    let recorded = observed.pointer("/attributes").and_then(|a| a.get(OWNER_ATTRIBUTE)).and_then(Value::as_str);
    match recorded {
        Some(v) if v == owner.attribute_value() => Ownership::Owned,
        _ if adopt => Ownership::Owned,
        Some(v) => Ownership::Foreign(format!("KeycloakClient {}", display_owner(v))),
        None => Ownership::Foreign("a client created outside kco".to_string()),
    }
}

fn display_owner(v: &str) -> String {
    let mut parts = v.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(name), Some(uid)) => format!("{ns}/{name} (uid {uid})"),
        _ => v.to_string(),
    }
}

/// The operations that make Keycloak match `desired`. `observed` is the client as Keycloak returns it
/// from `GET /clients/{id}`, or `None` when it does not exist.
pub fn plan_client(desired: &DesiredClient, observed: Option<&Value>) -> ClientPlan {
    let Some(observed) = observed else {
        return ClientPlan {
            operations: vec![ClientOperation::CreateClient { representation: desired.create_representation() }],
        };
    };
    let mut ops = Vec::new();
    let mut changed = Vec::new();
    for (key, want) in &desired.fields {
        let have = observed.get(key).unwrap_or(&Value::Null);
        if !field_equal(key, want, have) {
            changed.push(key.clone());
        }
    }
    let empty = Map::new();
    let have_attrs = observed.get("attributes").and_then(Value::as_object).unwrap_or(&empty);
    for (key, want) in &desired.attributes {
        let have = have_attrs.get(key).and_then(Value::as_str);
        if !attribute_equal(want, have) {
            changed.push(format!("attributes.{key}"));
        }
    }
    if !changed.is_empty() {
        ops.push(ClientOperation::UpdateClient { changed, representation: merge(desired, observed) });
    }
    if let Some(want) = &desired.default_client_scopes {
        let (add, remove) = set_diff(want, observed.get("defaultClientScopes"));
        ops.extend(remove.into_iter().map(ClientOperation::RemoveDefaultScope));
        ops.extend(add.into_iter().map(ClientOperation::AddDefaultScope));
    }
    if let Some(want) = &desired.optional_client_scopes {
        let (add, remove) = set_diff(want, observed.get("optionalClientScopes"));
        ops.extend(remove.into_iter().map(ClientOperation::RemoveOptionalScope));
        ops.extend(add.into_iter().map(ClientOperation::AddOptionalScope));
    }
    ClientPlan { operations: ops }
}

/// Observed representation with the managed fields overlaid; lists managed elsewhere are dropped so
/// the PUT cannot disturb them.
fn merge(desired: &DesiredClient, observed: &Value) -> Value {
    let mut rep = observed.as_object().cloned().unwrap_or_default();
    for (k, v) in &desired.fields {
        rep.insert(k.clone(), v.clone());
    }
    let mut attrs = rep.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default();
    for (k, v) in &desired.attributes {
        attrs.insert(k.clone(), json!(v));
    }
    rep.insert("attributes".into(), Value::Object(attrs));
    for k in ["protocolMappers", "defaultClientScopes", "optionalClientScopes", "authorizationSettings", "access"] {
        rep.remove(k);
    }
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

fn set_diff(want: &[String], have: Option<&Value>) -> (Vec<String>, Vec<String>) {
    let want: BTreeSet<String> = want.iter().cloned().collect();
    let have = string_set(have);
    (want.difference(&have).cloned().collect(), have.difference(&want).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kco_api::KeycloakClientSpec;

    fn spec(yaml_json: Value) -> KeycloakClientSpec {
        serde_json::from_value(yaml_json).unwrap()
    }

    fn owner() -> Owner {
        Owner { namespace: "team-a".into(), name: "svc".into(), uid: "u-1".into() }
    }

    /// What Keycloak would hand back after creating `desired` (plus fields it adds on its own).
    fn as_keycloak_returns(desired: &DesiredClient) -> Value {
        let mut rep = desired.create_representation();
        let o = rep.as_object_mut().unwrap();
        o.insert("id".into(), json!("0b5c"));
        o.insert("surrogateAuthRequired".into(), json!(false));
        o.insert("protocolMappers".into(), json!([]));
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
        assert!(plan_client(&d, Some(&observed)).is_empty());
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
        let plan = plan_client(&d, Some(&observed));
        assert_eq!(plan.changed_fields(), vec!["enabled", "redirectUris"]);
        let ClientOperation::UpdateClient { representation, .. } = &plan.operations[0] else { panic!() };
        assert_eq!(representation["enabled"], true);
        assert_eq!(representation["redirectUris"], json!(["https://a/cb"]));
        // Fields kco does not manage survive the merge.
        assert_eq!(representation["surrogateAuthRequired"], false);
        assert_eq!(representation["attributes"]["client.secret.creation.time"], "1700000000");
        assert!(representation.get("protocolMappers").is_none());
    }

    #[test]
    fn unmanaged_fields_changed_by_hand_stay_changed() {
        let d = DesiredClient::from_spec(&spec(json!({"clientId": "svc", "realmRef": {"name": "r"}})), Some(&owner()));
        let mut observed = as_keycloak_returns(&d);
        observed["redirectUris"] = json!(["https://hand-made/cb"]);
        observed["rootUrl"] = json!("https://hand-made");
        observed["attributes"]["custom"] = json!("x");
        assert!(plan_client(&d, Some(&observed)).is_empty());
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
        let plan = plan_client(&d, Some(&observed));
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
        let plan = plan_client(&d, Some(&observed));
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
        assert_eq!(ownership(&ours, &other, true), Ownership::Owned);
        let hand_made = json!({"clientId": "svc", "attributes": {}});
        assert_eq!(ownership(&hand_made, &owner(), false), Ownership::Foreign("a client created outside kco".into()));
    }
}
