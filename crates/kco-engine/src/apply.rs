//! apply: carry out a plan against the Keycloak Admin API, one idempotent request per operation;
//! names (scopes, roles, clients) are resolved to ids only when an operation needs them.

use std::collections::BTreeMap;

use kco_keycloak::{Error, ErrorKind, KeycloakAdmin};
use serde_json::Value;

use crate::plan::{ClientOperation, ClientPlan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Keycloak's internal id of the client.
    pub internal_id: String,
    pub created: bool,
    /// Managed fields that were changed on an existing client.
    pub changed_fields: Vec<String>,
}

/// Apply `plan` to the client `existing_id` (or create it).
pub async fn apply_plan(
    kc: &KeycloakAdmin,
    realm: &str,
    plan: &ClientPlan,
    existing_id: Option<&str>,
) -> Result<ApplyOutcome, Error> {
    let mut id = existing_id.map(str::to_string);
    let mut created = false;
    let mut scope_ids: Option<BTreeMap<String, String>> = None;
    let mut sa_user: Option<String> = None;
    for op in &plan.operations {
        use ClientOperation::*;
        if let CreateClient { representation } = op {
            id = Some(kc.create_client(realm, representation).await?);
            created = true;
            continue;
        }
        let client = need(&id)?;
        match op {
            CreateClient { .. } => {}
            UpdateClient { representation, .. } => kc.update_client(realm, client, representation).await?,
            AddDefaultScope(name) | RemoveDefaultScope(name) | AddOptionalScope(name) | RemoveOptionalScope(name) => {
                if scope_ids.is_none() {
                    scope_ids = Some(realm_scope_ids(kc, realm).await?);
                }
                let scope_id = scope_ids.as_ref().and_then(|m| m.get(name)).ok_or_else(|| {
                    user_error(
                        format!("client scope {name:?}"),
                        format!(
                            "realm {realm} has no client scope named {name:?}; create it or remove it from the spec"
                        ),
                    )
                })?;
                let (list, add) = match op {
                    AddDefaultScope(_) => ("default-client-scopes", true),
                    RemoveDefaultScope(_) => ("default-client-scopes", false),
                    AddOptionalScope(_) => ("optional-client-scopes", true),
                    _ => ("optional-client-scopes", false),
                };
                let path = [realm, "clients", client, list, scope_id.as_str()];
                if add {
                    kc.put(&path, &Value::Null, "client-scope-link").await?;
                } else {
                    kc.delete(&path, None, "client-scope-link").await?;
                }
            }
            CreateMapper(rep) => {
                kc.post(&[realm, "clients", client, "protocol-mappers", "models"], rep, "protocol-mapper").await?;
            }
            UpdateMapper { id: mapper, representation } => {
                kc.put(
                    &[realm, "clients", client, "protocol-mappers", "models", mapper],
                    representation,
                    "protocol-mapper",
                )
                .await?;
            }
            DeleteMapper { id: mapper, .. } => {
                kc.delete(&[realm, "clients", client, "protocol-mappers", "models", mapper], None, "protocol-mapper")
                    .await?;
            }
            CreateClientRole(name) => {
                kc.post(&[realm, "clients", client, "roles"], &serde_json::json!({ "name": name }), "client-role")
                    .await?;
            }
            DeleteClientRole(name) => {
                kc.delete(&[realm, "clients", client, "roles", name], None, "client-role").await?
            }
            GrantRealmRoles(names) | RevokeRealmRoles(names) => {
                let user = service_account_user(kc, realm, client, &mut sa_user).await?;
                let mut reps = Vec::new();
                for name in names {
                    reps.push(kc.get(&[realm, "roles", name], &[], "role").await.map_err(|e| {
                        missing(e, format!("realm role {name:?}"), format!("realm {realm} has no role {name:?}; create it or remove it from serviceAccountRoles.realmRoles"))
                    })?);
                }
                let path = [realm, "users", user.as_str(), "role-mappings", "realm"];
                let body = Value::Array(reps);
                if matches!(op, GrantRealmRoles(_)) {
                    kc.post(&path, &body, "role-mapping").await?;
                } else {
                    kc.delete(&path, Some(&body), "role-mapping").await?;
                }
            }
            GrantClientRoles { client_id, roles } | RevokeClientRoles { client_id, roles } => {
                let user = service_account_user(kc, realm, client, &mut sa_user).await?;
                let target = target_client(kc, realm, client_id).await?;
                let mut reps = Vec::new();
                for name in roles {
                    reps.push(kc.get(&[realm, "clients", &target, "roles", name], &[], "client-role").await.map_err(|e| {
                        missing(e, format!("client role {client_id}/{name}"), format!("client {client_id} has no role {name:?}; create it or remove it from serviceAccountRoles.clientRoles"))
                    })?);
                }
                let path = [realm, "users", user.as_str(), "role-mappings", "clients", target.as_str()];
                let body = Value::Array(reps);
                if matches!(op, GrantClientRoles { .. }) {
                    kc.post(&path, &body, "role-mapping").await?;
                } else {
                    kc.delete(&path, Some(&body), "role-mapping").await?;
                }
            }
        }
    }
    let internal_id = id.ok_or_else(|| Error {
        kind: ErrorKind::Protocol,
        what: "apply".into(),
        detail: "no client id after apply".into(),
    })?;
    Ok(ApplyOutcome { internal_id, created, changed_fields: if created { vec![] } else { plan.changed_fields() } })
}

fn need(id: &Option<String>) -> Result<&str, Error> {
    id.as_deref().ok_or_else(|| Error {
        kind: ErrorKind::Protocol,
        what: "apply".into(),
        detail: "an update was planned for a client that does not exist".into(),
    })
}

fn user_error(what: String, detail: String) -> Error {
    Error { kind: ErrorKind::BadRequest, what, detail }
}

/// A 404 on a name the user wrote is their mistake to fix: say which name and where.
fn missing(e: Error, what: String, detail: String) -> Error {
    if e.is_not_found() { user_error(what, detail) } else { e }
}

async fn realm_scope_ids(kc: &KeycloakAdmin, realm: &str) -> Result<BTreeMap<String, String>, Error> {
    let v = kc.get(&[realm, "client-scopes"], &[], "client-scope").await?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s.get("name")?.as_str()?.to_string(), s.get("id")?.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// The id of the client's service-account user, looked up once per apply.
pub async fn service_account_user(
    kc: &KeycloakAdmin,
    realm: &str,
    client: &str,
    cached: &mut Option<String>,
) -> Result<String, Error> {
    if let Some(u) = cached {
        return Ok(u.clone());
    }
    let v = kc.get(&[realm, "clients", client, "service-account-user"], &[], "service-account-user").await.map_err(|e| {
        if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::NotFound) {
            user_error(
                "serviceAccountRoles".into(),
                "the client has no service account; set settings.serviceAccountsEnabled: true or remove serviceAccountRoles".into(),
            )
        } else {
            e
        }
    })?;
    let id = v.get("id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| Error {
        kind: ErrorKind::Protocol,
        what: "service-account-user".into(),
        detail: "no id in the answer".into(),
    })?;
    *cached = Some(id.clone());
    Ok(id)
}

/// Internal id of another client of the realm, by clientId.
pub async fn target_client(kc: &KeycloakAdmin, realm: &str, client_id: &str) -> Result<String, Error> {
    let found = kc.find_client(realm, client_id).await?;
    found.and_then(|c| c.get("id").and_then(Value::as_str).map(str::to_string)).ok_or_else(|| {
        user_error(
            format!("client {client_id:?}"),
            format!(
                "realm {realm} has no client {client_id:?}; create it or remove it from serviceAccountRoles.clientRoles"
            ),
        )
    })
}

/// Make Keycloak keep the previous secret for `grace_secs` after a regeneration, for clients whose
/// attribute `kco.dev/secret-grace` says so: a client profile with Keycloak's `secret-rotation`
/// executor and a client policy that applies it by that attribute. Realm policies are replaced as a
/// whole by Keycloak's API, so this reads, appends what is missing, and writes back; others' entries
/// are kept.
///
/// The profile's expiration period must outlast kco's own rotation period (Keycloak refuses an
/// expired secret), and creation time + period must stay inside Keycloak's 32-bit seconds: it is
/// twice the rotation period plus the grace, at least 400 days, capped below 2038 with a year spare.
pub async fn ensure_grace_policy(
    kc: &KeycloakAdmin,
    realm: &str,
    grace_secs: i64,
    period_secs: i64,
    now_secs: i64,
) -> Result<(), Error> {
    let name = format!("kco-secret-grace-{grace_secs}-{period_secs}");
    let cap = i64::from(i32::MAX) - now_secs - 365 * 86_400;
    let expiry = (period_secs.saturating_mul(2).saturating_add(grace_secs)).max(400 * 86_400).min(cap).max(1);
    let mut profiles = kc.get(&[realm, "client-policies", "profiles"], &[], "client-policy").await?;
    if !named(&profiles["profiles"], &name) {
        let profile = serde_json::json!({
            "name": name,
            "description": "kco: keep the previous client secret after a rotation (gracePeriod)",
            "executors": [{"executor": "secret-rotation", "configuration": {
                // Keycloak must not expire or rotate the secret by itself before kco does.
                "expiration-period": expiry.to_string(),
                "rotated-expiration-period": grace_secs.to_string(),
                "remaining-rotation-period": "1"
            }}]
        });
        push(&mut profiles, "profiles", profile);
        kc.put(&[realm, "client-policies", "profiles"], &profiles, "client-policy").await?;
    }
    let mut policies = kc.get(&[realm, "client-policies", "policies"], &[], "client-policy").await?;
    if !named(&policies["policies"], &name) {
        let attributes = serde_json::json!([{"key": crate::desired::GRACE_ATTRIBUTE, "value": grace_secs.to_string()}]);
        let policy = serde_json::json!({
            "name": name,
            "description": "kco: applies the matching secret-grace profile",
            "enabled": true,
            "conditions": [{"condition": "client-attributes", "configuration": {
                "is_negative_logic": false,
                // Keycloak wants this list as a JSON string.
                "attributes": attributes.to_string()
            }}],
            "profiles": [name]
        });
        push(&mut policies, "policies", policy);
        kc.put(&[realm, "client-policies", "policies"], &policies, "client-policy").await?;
    }
    Ok(())
}

fn named(list: &Value, name: &str) -> bool {
    list.as_array().is_some_and(|a| a.iter().any(|p| p.get("name").and_then(Value::as_str) == Some(name)))
}

fn push(doc: &mut Value, key: &str, item: Value) {
    if !doc.is_object() {
        *doc = serde_json::json!({});
    }
    match doc.get_mut(key).and_then(Value::as_array_mut) {
        Some(a) => a.push(item),
        None => doc[key] = Value::Array(vec![item]),
    }
}
