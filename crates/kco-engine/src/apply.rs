//! apply: carry out a plan against the Keycloak Admin API, one idempotent request per operation.

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

/// Apply `plan` to the client `existing_id` (or create it). Scope names are resolved to ids only when
/// the plan touches scopes.
pub async fn apply_plan(
    kc: &KeycloakAdmin,
    realm: &str,
    plan: &ClientPlan,
    existing_id: Option<&str>,
) -> Result<ApplyOutcome, Error> {
    let mut id = existing_id.map(str::to_string);
    let mut created = false;
    let mut scope_ids: Option<BTreeMap<String, String>> = None;
    for op in &plan.operations {
        match op {
            ClientOperation::CreateClient { representation } => {
                id = Some(kc.create_client(realm, representation).await?);
                created = true;
            }
            ClientOperation::UpdateClient { representation, .. } => {
                kc.update_client(realm, need(&id)?, representation).await?;
            }
            ClientOperation::AddDefaultScope(name)
            | ClientOperation::RemoveDefaultScope(name)
            | ClientOperation::AddOptionalScope(name)
            | ClientOperation::RemoveOptionalScope(name) => {
                if scope_ids.is_none() {
                    scope_ids = Some(realm_scope_ids(kc, realm).await?);
                }
                let scope_id = scope_ids.as_ref().and_then(|m| m.get(name)).ok_or_else(|| Error {
                    kind: ErrorKind::BadRequest,
                    what: format!("client scope {name:?}"),
                    detail: format!(
                        "realm {realm:?} has no client scope named {name:?}; create it or remove it from the spec"
                    ),
                })?;
                let client = need(&id)?;
                let (list, add) = match op {
                    ClientOperation::AddDefaultScope(_) => ("default-client-scopes", true),
                    ClientOperation::RemoveDefaultScope(_) => ("default-client-scopes", false),
                    ClientOperation::AddOptionalScope(_) => ("optional-client-scopes", true),
                    _ => ("optional-client-scopes", false),
                };
                let path = [realm, "clients", client, list, scope_id.as_str()];
                if add {
                    kc.put(&path, &Value::Null, "client-scope-link").await?;
                } else {
                    kc.delete(&path, None, "client-scope-link").await?;
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
