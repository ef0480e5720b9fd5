//! observe: read what the plan compares against — the client and, only when the spec manages them,
//! its roles and its service account's grants. Reads only; never lists every client.

use std::collections::BTreeMap;

use kco_keycloak::KeycloakAdmin;
use serde_json::Value;

use crate::apply::{service_account_user, target_client};
use crate::desired::DesiredClient;
use crate::error::EngineError;
use crate::plan::ObservedClient;

/// Complete `representation` (from `GET /clients/{id}`) with the role state `desired` manages.
pub async fn observe_client(
    kc: &KeycloakAdmin,
    realm: &str,
    desired: &DesiredClient,
    representation: Value,
) -> Result<ObservedClient, EngineError> {
    let id = representation.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut representation = representation;
    let secret = representation
        .as_object_mut()
        .and_then(|o| o.remove("secret"))
        .and_then(|v| v.as_str().map(|s| secrecy::SecretString::from(s.to_string())));
    let mut observed = ObservedClient { representation, secret, ..Default::default() };
    if desired.client_roles.is_some() {
        observed.client_roles = names(&kc.get(&[realm, "clients", &id, "roles"], &[], "client-role").await?);
    }
    let sa_managed = desired.service_account_realm_roles.is_some() || desired.service_account_client_roles.is_some();
    let sa_enabled = observed.representation.get("serviceAccountsEnabled").and_then(Value::as_bool) == Some(true);
    if sa_managed && sa_enabled {
        let user = service_account_user(kc, realm, &id, &mut None).await?;
        if desired.service_account_realm_roles.is_some() {
            let v = kc.get(&[realm, "users", &user, "role-mappings", "realm"], &[], "role-mapping").await?;
            observed.service_account_realm_roles = names(&v);
        }
        if let Some(wanted) = &desired.service_account_client_roles {
            // Every client's grants in one read: the map is the whole set (see plan).
            let v = kc.get(&[realm, "users", &user, "role-mappings"], &[], "role-mapping").await?;
            let mut by_client = BTreeMap::new();
            for (client_id, m) in v.get("clientMappings").and_then(Value::as_object).into_iter().flatten() {
                by_client.insert(client_id.clone(), names(m.get("mappings").unwrap_or(&Value::Null)));
            }
            // A listed client must exist (its grants are made by id): say so before planning.
            for client_id in wanted.keys().filter(|c| !by_client.contains_key(*c)) {
                target_client(kc, realm, client_id).await?;
            }
            observed.service_account_client_roles = by_client;
        }
    }
    Ok(observed)
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|r| r.get("name").and_then(Value::as_str).map(str::to_string)).collect())
        .unwrap_or_default()
}
