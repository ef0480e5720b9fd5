//! apply: carry out a plan against the Keycloak Admin API, one idempotent request per operation;
//! names (scopes, roles, clients) are resolved to ids only when an operation needs them.

use std::collections::BTreeMap;

use std::collections::BTreeSet;

use kco_keycloak::{Error, ErrorKind, KeycloakAdmin};
use serde_json::Value;

use crate::error::EngineError;
use crate::guard;
use crate::plan::{ClientOperation, ClientPlan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Keycloak's internal id of the client.
    pub internal_id: String,
    pub created: bool,
    /// Managed fields that were changed on an existing client.
    pub changed_fields: Vec<String>,
}

/// Apply `plan` to the client `existing_id` (or create it). Unless `allow_admin_role_grants`, a
/// service-account grant whose roles reach realm administration through composites is refused
/// before it is made (the names themselves were checked by `guard::check_against_realm`).
pub async fn apply_plan(
    kc: &KeycloakAdmin,
    realm: &str,
    plan: &ClientPlan,
    existing_id: Option<&str>,
    allow_admin_role_grants: bool,
) -> Result<ApplyOutcome, EngineError> {
    let mut id = existing_id.map(str::to_string);
    let mut created = false;
    let mut applier = Applier { kc, realm, allow_admin_role_grants, scope_ids: None, sa_user: None };
    for op in &plan.operations {
        if let ClientOperation::CreateClient { representation } = op {
            id = Some(kc.create_client(realm, representation).await?);
            created = true;
            continue;
        }
        applier.apply(need(&id)?, op).await?;
    }
    let internal_id = id.ok_or_else(|| Error::new(ErrorKind::Protocol, "apply", "no client id after apply"))?;
    Ok(ApplyOutcome { internal_id, created, changed_fields: if created { vec![] } else { plan.changed_fields() } })
}

/// One client's operations against one realm, with the lookups they share (the realm's scope ids,
/// the service-account user) made once.
struct Applier<'a> {
    kc: &'a KeycloakAdmin,
    realm: &'a str,
    allow_admin_role_grants: bool,
    scope_ids: Option<BTreeMap<String, String>>,
    sa_user: Option<String>,
}

impl Applier<'_> {
    /// Carry out `op` on the existing client `client` (its internal id).
    async fn apply(&mut self, client: &str, op: &ClientOperation) -> Result<(), EngineError> {
        use ClientOperation::*;
        let (kc, realm) = (self.kc, self.realm);
        match op {
            CreateClient { .. } => {}
            UpdateClient { representation, .. } => kc.update_client(realm, client, representation).await?,
            AddDefaultScope(name) => self.scope_link(client, "default-client-scopes", name, true).await?,
            RemoveDefaultScope(name) => self.scope_link(client, "default-client-scopes", name, false).await?,
            AddOptionalScope(name) => self.scope_link(client, "optional-client-scopes", name, true).await?,
            RemoveOptionalScope(name) => self.scope_link(client, "optional-client-scopes", name, false).await?,
            CreateMapper(rep) => {
                kc.post(&[realm, "clients", client, "protocol-mappers", "models"], rep, "protocol-mapper").await?;
            }
            UpdateMapper { id: mapper, representation } => {
                let path = [realm, "clients", client, "protocol-mappers", "models", mapper.as_str()];
                kc.put(&path, representation, "protocol-mapper").await?;
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
            GrantRealmRoles(names) => self.realm_roles(client, names, true).await?,
            RevokeRealmRoles(names) => self.realm_roles(client, names, false).await?,
            GrantClientRoles { client_id, roles } => self.client_roles(client, client_id, roles, true).await?,
            RevokeClientRoles { client_id, roles } => self.client_roles(client, client_id, roles, false).await?,
        }
        Ok(())
    }

    /// Link (`add`) or unlink the realm's client scope `name` in `list` (`default-client-scopes`
    /// or `optional-client-scopes`).
    async fn scope_link(&mut self, client: &str, list: &str, name: &str, add: bool) -> Result<(), EngineError> {
        let (kc, realm) = (self.kc, self.realm);
        if self.scope_ids.is_none() {
            self.scope_ids = Some(realm_scope_ids(kc, realm).await?);
        }
        let field = if list == "default-client-scopes" { "defaultClientScopes" } else { "optionalClientScopes" };
        let scope_id = self.scope_ids.as_ref().and_then(|m| m.get(name)).ok_or_else(|| {
            EngineError::invalid(
                field,
                format!("realm {realm} has no client scope named {name:?}; create it or remove it from the spec"),
            )
        })?;
        let path = [realm, "clients", client, list, scope_id.as_str()];
        if add {
            kc.put(&path, &Value::Null, "client-scope-link").await?;
        } else {
            kc.delete(&path, None, "client-scope-link").await?;
        }
        Ok(())
    }

    /// Grant (or revoke) realm roles `names` to the client's service account.
    async fn realm_roles(&mut self, client: &str, names: &[String], grant: bool) -> Result<(), EngineError> {
        let (kc, realm) = (self.kc, self.realm);
        let user = service_account_user(kc, realm, client, &mut self.sa_user).await?;
        let field = "serviceAccountRoles.realmRoles";
        let mut reps = Vec::new();
        for name in names {
            reps.push(kc.get(&[realm, "roles", name], &[], "role").await.map_err(|e| {
                missing(e, field, format!("realm {realm} has no role {name:?}; create it or remove it from the list"))
            })?);
        }
        let path = [realm, "users", user.as_str(), "role-mappings", "realm"];
        self.role_mapping(&path, field, reps, grant).await
    }

    /// Grant (or revoke) roles `roles` of client `client_id` to the client's service account.
    async fn client_roles(
        &mut self,
        client: &str,
        client_id: &str,
        roles: &[String],
        grant: bool,
    ) -> Result<(), EngineError> {
        let (kc, realm) = (self.kc, self.realm);
        let user = service_account_user(kc, realm, client, &mut self.sa_user).await?;
        let target = target_client(kc, realm, client_id).await?;
        let field = format!("serviceAccountRoles.clientRoles.{client_id}");
        let mut reps = Vec::new();
        for name in roles {
            let rep = kc.get(&[realm, "clients", &target, "roles", name], &[], "client-role").await;
            reps.push(rep.map_err(|e| {
                missing(
                    e,
                    &field,
                    format!("client {client_id} has no role {name:?}; create it or remove it from the list"),
                )
            })?);
        }
        let path = [realm, "users", user.as_str(), "role-mappings", "clients", target.as_str()];
        self.role_mapping(&path, &field, reps, grant).await
    }

    /// Post (grant) or delete (revoke) role representations `reps` at a role-mapping `path`;
    /// a grant reaching realm administration through composites is refused first (see
    /// [`apply_plan`]).
    async fn role_mapping(&self, path: &[&str], field: &str, reps: Vec<Value>, grant: bool) -> Result<(), EngineError> {
        if grant && !self.allow_admin_role_grants {
            refuse_admin_composites(self.kc, self.realm, field, &reps).await?;
        }
        let body = Value::Array(reps);
        if grant {
            self.kc.post(path, &body, "role-mapping").await?;
        } else {
            self.kc.delete(path, Some(&body), "role-mapping").await?;
        }
        Ok(())
    }
}

fn need(id: &Option<String>) -> Result<&str, Error> {
    id.as_deref().ok_or_else(|| {
        Error::new(ErrorKind::Protocol, "apply", "an update was planned for a client that does not exist")
    })
}

/// A 404 on a name the user wrote is their mistake to fix: say which name and where.
fn missing(e: Error, field: &str, message: String) -> EngineError {
    if e.is_not_found() { EngineError::invalid(field, message) } else { e.into() }
}

/// Most roles visited when expanding composites; a deeper tree is refused rather than half-checked.
const MAX_EXPANDED_ROLES: usize = 1000;

/// Refuse a grant of `roles` (full role representations) when one of them reaches a realm
/// administration role through composite roles, realm or client. Only composite roles cost requests:
/// one to list each composite's members, one per client that owns a member role (by id, cached).
async fn refuse_admin_composites(
    kc: &KeycloakAdmin,
    realm: &str,
    field: &str,
    roles: &[Value],
) -> Result<(), EngineError> {
    let mut client_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // (role, the role of the grant it was reached from)
    let mut queue: Vec<(Value, String)> = Vec::new();
    for r in roles {
        let name = str_field(r, "name").to_string();
        queue.push((r.clone(), name));
    }
    while let Some((role, granted)) = queue.pop() {
        let id = str_field(&role, "id").to_string();
        if !seen.insert(id.clone()) {
            continue;
        }
        if seen.len() > MAX_EXPANDED_ROLES {
            return Err(EngineError::spec(
                guard::NOT_ALLOWED,
                field,
                format!(
                    "role {granted:?} is a composite of more than {MAX_EXPANDED_ROLES} roles; kco cannot check that it does not administer realm {realm}, so it does not grant it"
                ),
            ));
        }
        if let Some(admin) = admin_role(kc, realm, &role, &mut client_ids).await? {
            return Err(EngineError::spec(
                guard::NOT_ALLOWED,
                field,
                format!(
                    "role {granted:?} includes {admin:?} through composite roles and so administers realm {realm}; granting it needs allowAdminRoleGrants: true on the KeycloakRealm"
                ),
            ));
        }
        if role.get("composite").and_then(Value::as_bool) == Some(true) && !id.is_empty() {
            let members = kc.get(&[realm, "roles-by-id", &id, "composites"], &[], "role").await?;
            for m in members.as_array().into_iter().flatten() {
                queue.push((m.clone(), granted.clone()));
            }
        }
    }
    Ok(())
}

/// The realm administration role `role` is (`clientId/role` for a client role), if it is one.
/// `client_ids`: the clientId of each role container looked up so far, by container id.
async fn admin_role(
    kc: &KeycloakAdmin,
    realm: &str,
    role: &Value,
    client_ids: &mut BTreeMap<String, String>,
) -> Result<Option<String>, Error> {
    let name = str_field(role, "name");
    if role.get("clientRole").and_then(Value::as_bool) != Some(true) {
        return Ok(guard::is_admin_realm_role(name).then(|| name.to_string()));
    }
    let container = str_field(role, "containerId").to_string();
    let client_id = match client_ids.get(&container) {
        Some(c) => c.clone(),
        None => {
            let c = kc.get_client(realm, &container).await?;
            let c = c.as_ref().map(|c| str_field(c, "clientId").to_string()).unwrap_or_default();
            client_ids.insert(container, c.clone());
            c
        }
    };
    Ok(guard::is_admin_client_role(&client_id, name).then(|| format!("{client_id}/{name}")))
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
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
) -> Result<String, EngineError> {
    if let Some(u) = cached {
        return Ok(u.clone());
    }
    let v = kc.get(&[realm, "clients", client, "service-account-user"], &[], "service-account-user").await.map_err(|e| {
        if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::NotFound) {
            EngineError::invalid(
                "serviceAccountRoles",
                "the client has no service account; set settings.serviceAccountsEnabled: true or remove serviceAccountRoles",
            )
        } else {
            e.into()
        }
    })?;
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::new(ErrorKind::Protocol, "service-account-user", "no id in the answer"))?;
    *cached = Some(id.clone());
    Ok(id)
}

/// Internal id of another client of the realm, by clientId.
pub async fn target_client(kc: &KeycloakAdmin, realm: &str, client_id: &str) -> Result<String, EngineError> {
    let found = kc.find_client(realm, client_id).await?;
    found.and_then(|c| c.get("id").and_then(Value::as_str).map(str::to_string)).ok_or_else(|| {
        EngineError::invalid(
            &format!("serviceAccountRoles.clientRoles.{client_id}"),
            format!("realm {realm} has no client {client_id:?}; create it or remove it from the map"),
        )
    })
}
