//! observe: read what the plan compares against — the client and, only when the spec manages them,
//! its roles and its service account's grants. Reads only; never lists every client.

use std::collections::BTreeMap;

use kco_keycloak::KeycloakAdmin;
use serde_json::Value;

use crate::apply::{read_service_account_user, service_account_user, target_client};
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
        // One read of the grants: the realm's alone, or every grant (realm and each client's) when
        // client roles are managed: that map is the whole set (see plan).
        let all = desired.service_account_client_roles.is_some();
        let read = |user: String| async move {
            let mut path = vec![realm, "users", user.as_str(), "role-mappings"];
            if !all {
                path.push("realm");
            }
            kc.get(&path, &[], "role-mapping").await
        };
        let mut user = service_account_user(kc, realm, &id).await?;
        let grants = match read(user.id.clone()).await {
            // A remembered user that is gone was replaced (service account turned off and on).
            Err(e) if e.is_not_found() && !user.checked => {
                kc.forget_service_account_user(realm, &id);
                user = read_service_account_user(kc, realm, &id).await?;
                read(user.id.clone()).await?
            }
            other => other?,
        };
        observed.service_account_user = Some(user.id);
        if desired.service_account_realm_roles.is_some() {
            let realm_grants = if all { grants.get("realmMappings").unwrap_or(&Value::Null) } else { &grants };
            observed.service_account_realm_roles = names(realm_grants);
        }
        if let Some(wanted) = &desired.service_account_client_roles {
            let mut by_client = BTreeMap::new();
            for (client_id, m) in grants.get("clientMappings").and_then(Value::as_object).into_iter().flatten() {
                by_client.insert(client_id.clone(), names(m.get("mappings").unwrap_or(&Value::Null)));
                if let Some(internal) = m.get("id").and_then(Value::as_str) {
                    observed.client_ids.insert(client_id.clone(), internal.to_string());
                }
            }
            // A listed client must exist (its grants are made by id): say so before planning.
            for client_id in wanted.keys().filter(|c| !by_client.contains_key(*c)) {
                let internal = target_client(kc, realm, client_id).await?;
                observed.client_ids.insert(client_id.clone(), internal);
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
