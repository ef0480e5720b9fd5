//! apply: carry out a plan against the Keycloak Admin API, one idempotent request per operation;
//! names (scopes, roles, clients) are resolved to ids only when an operation needs them.

use std::collections::{BTreeMap, BTreeSet};

use kco_keycloak::{Error, ErrorKind, KeycloakAdmin};
use serde_json::Value;

use crate::error::EngineError;
use crate::guard;
use crate::plan::{ClientOperation, ClientPlan, DOCKER_BUILTIN_MAPPER, ObservedClient};

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
/// before it is made (the names themselves were checked by `guard::check_against_realm`). What
/// `observed` (this reconcile's read of the client) learnt on the way is not read again: its
/// service-account user and the ids of the clients whose roles it holds.
pub async fn apply_plan(
    kc: &KeycloakAdmin,
    realm: &str,
    plan: &ClientPlan,
    existing_id: Option<&str>,
    observed: Option<&ObservedClient>,
    allow_admin_role_grants: bool,
) -> Result<ApplyOutcome, EngineError> {
    let mut id = existing_id.map(str::to_string);
    let mut created = false;
    let mut applier = Applier {
        kc,
        realm,
        allow_admin_role_grants,
        scope_ids: None,
        sa_user: observed
            .and_then(|o| o.service_account_user.clone())
            .map(|id| ServiceAccountUser { id, checked: true }),
        client_ids: observed.map(|o| o.client_ids.clone()).unwrap_or_default(),
    };
    // Keycloak's docker mapper, deleted to make way for a protocol change (see plan).
    let mut made_way = false;
    for op in &plan.operations {
        if let ClientOperation::CreateClient { representation } = op {
            // Keycloak drops a scope it does not know from a create's body without a word: check
            // them first, so such a spec fails (InvalidSpec) instead of a client Ready without it.
            for (field, list) in [("defaultClientScopes", "default-client-scopes"), ("optionalClientScopes", "")] {
                for name in representation.get(field).and_then(serde_json::Value::as_array).into_iter().flatten() {
                    applier.scope_id(list, name.as_str().unwrap_or_default()).await?;
                }
            }
            id = Some(kc.create_client(realm, representation).await?);
            created = true;
            continue;
        }
        let client = need(&id)?;
        let result = applier.apply(client, op).await;
        match op {
            ClientOperation::DeleteMapper { name, .. } if name == DOCKER_BUILTIN_MAPPER => made_way = result.is_ok(),
            ClientOperation::UpdateClient { .. } if made_way && result.is_err() => {
                // The protocol did not change, so Keycloak did not add its mapper back: put it back,
                // as it was (best effort; the error that matters is the update's).
                let path = [realm, "clients", client, "protocol-mappers", "models"];
                let _ = kc.post(&path, &docker_builtin_mapper(), "protocol-mapper").await;
            }
            _ => {}
        }
        result?;
    }
    let internal_id = id.ok_or_else(|| Error::new(ErrorKind::Protocol, "apply", "no client id after apply"))?;
    Ok(ApplyOutcome { internal_id, created, changed_fields: if created { vec![] } else { plan.changed_fields() } })
}

/// With its `docker` feature on, Keycloak answers 409 "Client already exists" to an update that changes
/// a client's protocol while the client has a mapper named like one Keycloak adds with the change (the
/// plan deletes Keycloak's own `docker-v2-allow-all-mapper` first, so this is left for other causes).
/// A conflict on an update that changes `protocol` says so and what to do; any other error passes through.
fn protocol_refused(e: Error, changed: &[String]) -> EngineError {
    if e.kind != ErrorKind::Conflict || !changed.iter().any(|f| f == "protocol") {
        return e.into();
    }
    EngineError::spec(
        "ProtocolChange",
        "protocol",
        format!(
            "Keycloak refused to change the protocol of the existing client ({}: {}). With its docker feature on, \
             Keycloak does so when the client has a mapper of a name it adds with the change (kco removes its \
             docker-v2-allow-all-mapper first). Remove the conflicting mapper, set spec.protocol back to the client's \
             current protocol, or delete this KeycloakClient and create it again (a new client, with new credentials)",
            e.what, e.detail
        ),
    )
}

/// Keycloak's own mapper of a client while its docker feature is on, as Keycloak makes it.
fn docker_builtin_mapper() -> serde_json::Value {
    serde_json::json!({"name": DOCKER_BUILTIN_MAPPER, "protocol": "docker-v2",
        "protocolMapper": DOCKER_BUILTIN_MAPPER, "config": {}})
}

/// One client's operations against one realm, with the lookups they share (the realm's scope ids,
/// the service-account user, other clients' ids) made once.
struct Applier<'a> {
    kc: &'a KeycloakAdmin,
    realm: &'a str,
    allow_admin_role_grants: bool,
    scope_ids: Option<BTreeMap<String, String>>,
    sa_user: Option<ServiceAccountUser>,
    /// clientId → internal id of the clients whose roles are granted or revoked.
    client_ids: BTreeMap<String, String>,
}

impl Applier<'_> {
    /// Carry out `op` on the existing client `client` (its internal id).
    async fn apply(&mut self, client: &str, op: &ClientOperation) -> Result<(), EngineError> {
        use ClientOperation::*;
        let (kc, realm) = (self.kc, self.realm);
        match op {
            CreateClient { .. } => {}
            UpdateClient { representation, changed } => {
                kc.update_client(realm, client, representation).await.map_err(|e| protocol_refused(e, changed))?
            }
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
            GrantRealmRoles(names) => self.service_account_roles(client, None, names, true).await?,
            RevokeRealmRoles(names) => self.service_account_roles(client, None, names, false).await?,
            GrantClientRoles { client_id, roles } => {
                self.service_account_roles(client, Some(client_id), roles, true).await?
            }
            RevokeClientRoles { client_id, roles } => {
                self.service_account_roles(client, Some(client_id), roles, false).await?
            }
        }
        Ok(())
    }

    /// The id of the realm's client scope `name`, for `list` (`default-client-scopes` or another:
    /// the optional ones); a name the realm lacks is an invalid spec.
    async fn scope_id(&mut self, list: &str, name: &str) -> Result<String, EngineError> {
        let (kc, realm) = (self.kc, self.realm);
        if self.scope_ids.is_none() {
            self.scope_ids = Some(realm_scope_ids(kc, realm).await?);
        }
        let field = if list == "default-client-scopes" { "defaultClientScopes" } else { "optionalClientScopes" };
        self.scope_ids.as_ref().and_then(|m| m.get(name)).cloned().ok_or_else(|| {
            EngineError::invalid(
                field,
                format!("realm {realm} has no client scope named {name:?}; create it or remove it from the spec"),
            )
        })
    }

    /// Link (`add`) or unlink the realm's client scope `name` in `list` (`default-client-scopes`
    /// or `optional-client-scopes`).
    async fn scope_link(&mut self, client: &str, list: &str, name: &str, add: bool) -> Result<(), EngineError> {
        let (kc, realm) = (self.kc, self.realm);
        let scope_id = self.scope_id(list, name).await?;
        let path = [realm, "clients", client, list, scope_id.as_str()];
        if add {
            kc.put(&path, &Value::Null, "client-scope-link").await?;
        } else {
            kc.delete(&path, None, "client-scope-link").await?;
        }
        Ok(())
    }

    /// Grant (or revoke) roles `names` of the realm (`client_id` `None`) or of client `client_id` to
    /// the service account of `client`. The user and the roles' ids may be remembered from an
    /// earlier reconcile: when the mapping request answers 404 one of them was replaced since, and
    /// both are read again for one more try.
    async fn service_account_roles(
        &mut self,
        client: &str,
        client_id: Option<&str>,
        names: &[String],
        grant: bool,
    ) -> Result<(), EngineError> {
        let (kc, realm) = (self.kc, self.realm);
        let field = match client_id {
            None => "serviceAccountRoles.realmRoles".to_string(),
            Some(c) => format!("serviceAccountRoles.clientRoles.{c}"),
        };
        let mut user = self.service_account_user(client).await?;
        let target = match client_id {
            Some(c) => Some(self.client_id_of(c).await?),
            None => None,
        };
        let container = target.as_deref();
        // A grant the admin-role guard checks needs each role's composites as they are now.
        let mut fresh = grant && !self.allow_admin_role_grants;
        loop {
            let mut reps = Vec::new();
            let mut remembered = false;
            for name in names {
                let rep = match kc.remembered_role(realm, container, name).filter(|_| !fresh) {
                    Some(rep) => {
                        remembered = true;
                        rep
                    }
                    None => read_role(kc, realm, client_id.zip(container), name, &field).await?,
                };
                reps.push(rep);
            }
            let mut path = vec![realm, "users", user.id.as_str(), "role-mappings"];
            path.extend(match container {
                None => vec!["realm"],
                Some(t) => vec!["clients", t],
            });
            let known = client_id.zip(container).map(|(c, t)| (t.to_string(), c.to_string())).into_iter().collect();
            match self.role_mapping(&path, &field, reps, grant, known).await {
                Ok(()) => {
                    user.checked = true;
                    self.sa_user = Some(user);
                    return Ok(());
                }
                Err(EngineError::Keycloak(e)) if e.is_not_found() && (remembered || !user.checked) => {
                    tracing::debug!(realm = %realm, field = %field, "role mapping answered 404 with remembered ids; reading them again");
                    for name in names {
                        kc.forget_role(realm, container, name);
                    }
                    if !user.checked {
                        kc.forget_service_account_user(realm, client);
                        self.sa_user = None;
                        user = self.service_account_user(client).await?;
                    }
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The service-account user: as this reconcile learnt it, else remembered, else read.
    async fn service_account_user(&mut self, client: &str) -> Result<ServiceAccountUser, EngineError> {
        if let Some(u) = &self.sa_user {
            return Ok(u.clone());
        }
        let u = service_account_user(self.kc, self.realm, client).await?;
        self.sa_user = Some(u.clone());
        Ok(u)
    }

    /// The internal id of client `client_id`: as this reconcile learnt it, else looked up.
    async fn client_id_of(&mut self, client_id: &str) -> Result<String, EngineError> {
        if let Some(id) = self.client_ids.get(client_id) {
            return Ok(id.clone());
        }
        let id = target_client(self.kc, self.realm, client_id).await?;
        self.client_ids.insert(client_id.to_string(), id.clone());
        Ok(id)
    }

    /// Post (grant) or delete (revoke) role representations `reps` at a role-mapping `path`;
    /// a grant reaching realm administration through composites is refused first (see
    /// [`apply_plan`]). `clients`: internal id → clientId of clients already known.
    async fn role_mapping(
        &self,
        path: &[&str],
        field: &str,
        reps: Vec<Value>,
        grant: bool,
        clients: BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        if grant && !self.allow_admin_role_grants {
            refuse_admin_composites(self.kc, self.realm, field, &reps, clients).await?;
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

/// Read role `name` of the realm, or of client `(clientId, internal id)`, and remember its id.
async fn read_role(
    kc: &KeycloakAdmin,
    realm: &str,
    client: Option<(&str, &str)>,
    name: &str,
    field: &str,
) -> Result<Value, EngineError> {
    let rep = match client {
        None => kc.get(&[realm, "roles", name], &[], "role").await.map_err(|e| {
            missing(e, field, format!("realm {realm} has no role {name:?}; create it or remove it from the list"))
        })?,
        Some((client_id, target)) => {
            kc.get(&[realm, "clients", target, "roles", name], &[], "client-role").await.map_err(|e| {
                missing(
                    e,
                    field,
                    format!("client {client_id} has no role {name:?}; create it or remove it from the list"),
                )
            })?
        }
    };
    kc.remember_role(realm, client.map(|c| c.1), name, &rep);
    Ok(rep)
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
    known_clients: BTreeMap<String, String>,
) -> Result<(), EngineError> {
    // Container id → clientId, starting with the clients the caller already knows.
    let mut client_ids = known_clients;
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

/// The client's service-account user as a reconcile knows it. `checked` once this reconcile read it
/// or a request with it succeeded; else it is remembered from an earlier reconcile and may have been
/// replaced since (a service account turned off and on again gets a new user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountUser {
    pub id: String,
    pub checked: bool,
}

/// The id of client `client`'s service-account user: remembered from an earlier reconcile, else read.
pub async fn service_account_user(
    kc: &KeycloakAdmin,
    realm: &str,
    client: &str,
) -> Result<ServiceAccountUser, EngineError> {
    match kc.remembered_service_account_user(realm, client) {
        Some(id) => Ok(ServiceAccountUser { id, checked: false }),
        None => read_service_account_user(kc, realm, client).await,
    }
}

/// Read the id of client `client`'s service-account user (one request), and remember it.
pub async fn read_service_account_user(
    kc: &KeycloakAdmin,
    realm: &str,
    client: &str,
) -> Result<ServiceAccountUser, EngineError> {
    let v = kc.get(&[realm, "clients", client, "service-account-user"], &[], "service-account-user").await.map_err(|e| {
        if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::NotFound) {
            kc.forget_service_account_user(realm, client);
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
    kc.remember_service_account_user(realm, client, &id);
    Ok(ServiceAccountUser { id, checked: true })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_on_a_protocol_change_says_what_keycloak_refused_and_what_to_do() {
        let conflict = || Error::new(ErrorKind::Conflict, "PUT /admin/realms/r/clients/1", "Client already exists");
        let changed = vec!["description".to_string(), "protocol".to_string()];
        let EngineError::Spec { reason, message } = protocol_refused(conflict(), &changed) else {
            panic!("a protocol change refused with 409 is a spec problem")
        };
        assert_eq!(reason, "ProtocolChange");
        assert!(message.starts_with("spec.protocol: Keycloak refused"), "{message}");
        assert!(message.contains("Client already exists") && message.contains("docker feature"), "{message}");
        // Any other conflict, or any other error on a protocol change, is what it was.
        let other = protocol_refused(conflict(), &["description".to_string()]);
        assert!(matches!(other, EngineError::Keycloak(e) if e.kind == ErrorKind::Conflict));
        let server = protocol_refused(Error::new(ErrorKind::Server, "PUT x", "boom"), &changed);
        assert!(matches!(server, EngineError::Keycloak(e) if e.kind == ErrorKind::Server));
    }
}
