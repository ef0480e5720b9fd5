//! guard: what a KeycloakClient may ask for, given the realm it lives in. Refuses realm
//! administration grants and script mappers unless the KeycloakRealm explicitly allows them.

use kco_api::{KeycloakClientSpec, KeycloakInstanceSpec, KeycloakRealmSpec};

use crate::ValidationError;

/// Realm roles that administer the realm itself.
const ADMIN_REALM_ROLES: &[&str] = &["admin", "create-realm"];

/// Roles of the `realm-management` client (and the master realm's `<realm>-realm` clients) that
/// hand out control of users, clients or the realm.
const ADMIN_CLIENT_ROLES: &[&str] = &[
    "realm-admin",
    "manage-realm",
    "manage-users",
    "manage-clients",
    "manage-authorization",
    "manage-identity-providers",
    "manage-events",
    "impersonation",
    "create-client",
];

/// Status reason when a spec asks for more than its realm allows.
pub const NOT_ALLOWED: &str = "NotAllowed";

/// Whether realm role `name` administers the realm.
pub fn is_admin_realm_role(name: &str) -> bool {
    ADMIN_REALM_ROLES.contains(&name)
}

/// Whether role `role` of client `client_id` administers a realm: the admin roles of
/// `realm-management`, or of the master realm's `<realm>-realm` clients.
pub fn is_admin_client_role(client_id: &str, role: &str) -> bool {
    (client_id == "realm-management" || client_id.ends_with("-realm")) && ADMIN_CLIENT_ROLES.contains(&role)
}

/// Mapper types that run scripts inside Keycloak.
fn is_script_mapper(kind: &str) -> bool {
    kind.starts_with("script-") || kind.contains("javascript") || kind == "oidc-script-based-protocol-mapper"
}

/// Whether KeycloakRealm `realm_ns`/`realm_name` may use `instance` (in `instance_ns`): its namespace
/// must be the instance's or granted by it, and the admin realm needs the instance's explicit allowance.
pub fn check_instance_grant(
    realm_ns: &str,
    realm_name: &str,
    instance_ns: &str,
    instance_name: &str,
    instance: &KeycloakInstanceSpec,
) -> Result<(), String> {
    if realm_ns != instance_ns && !instance.realm_authorization_grants.iter().any(|g| g == realm_ns) {
        return Err(format!(
            "KeycloakRealm {realm_ns}/{realm_name} may not use KeycloakInstance {instance_ns}/{instance_name}: \
             add {realm_ns} to the instance's spec.realmAuthorizationGrants"
        ));
    }
    if realm_name == instance.admin_realm && !instance.allow_admin_realm {
        return Err(format!(
            "realm {realm_name} is the admin realm of KeycloakInstance {instance_ns}/{instance_name}; \
             set allowAdminRealm: true on the instance to manage clients there"
        ));
    }
    Ok(())
}

/// Rules that depend on the realm: every violation, naming the field and the realm setting to change.
pub fn check_against_realm(spec: &KeycloakClientSpec, realm: &KeycloakRealmSpec) -> Vec<ValidationError> {
    let mut errs = Vec::new();
    if !realm.allow_admin_role_grants
        && let Some(sa) = &spec.service_account_roles
    {
        for (i, role) in sa.realm_roles.iter().flatten().enumerate() {
            if is_admin_realm_role(role) {
                errs.push(ValidationError::new(
                    format!("serviceAccountRoles.realmRoles[{i}]"),
                    format!(
                        "{role:?} administers the realm; granting it needs allowAdminRoleGrants: true on KeycloakRealm for realm {}",
                        realm.realm_name
                    ),
                ));
            }
        }
        for (client, roles) in sa.client_roles.iter().flatten() {
            for role in roles {
                if is_admin_client_role(client, role) {
                    errs.push(ValidationError::new(
                        format!("serviceAccountRoles.clientRoles.{client}"),
                        format!(
                            "{client}/{role} administers the realm; granting it needs allowAdminRoleGrants: true on KeycloakRealm for realm {}",
                            realm.realm_name
                        ),
                    ));
                }
            }
        }
    }
    if !realm.allow_script_mappers {
        for (i, m) in spec.protocol_mappers.iter().flatten().enumerate() {
            if is_script_mapper(&m.protocol_mapper) {
                errs.push(ValidationError::new(
                    format!("protocolMappers[{i}].protocolMapper"),
                    format!(
                        "{:?} runs a script inside Keycloak; it needs allowScriptMappers: true on KeycloakRealm for realm {}",
                        m.protocol_mapper, realm.realm_name
                    ),
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn realm(extra: serde_json::Value) -> KeycloakRealmSpec {
        let mut v = json!({"realmName": "r", "instanceRef": {"name": "i"}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn spec(extra: serde_json::Value) -> KeycloakClientSpec {
        let mut v = json!({"clientId": "c", "realmRef": {"name": "r"}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn admin_grants_are_refused_unless_the_realm_allows_them() {
        let s = spec(json!({"serviceAccountRoles": {"realmRoles": ["reader", "admin"],
            "clientRoles": {"realm-management": ["view-users", "realm-admin", "impersonation"], "orders": ["manage-users"]}}}));
        let errs = check_against_realm(&s, &realm(json!({})));
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "serviceAccountRoles.realmRoles[1]",
                "serviceAccountRoles.clientRoles.realm-management",
                "serviceAccountRoles.clientRoles.realm-management"
            ]
        );
        assert!(errs[0].message.contains("allowAdminRoleGrants: true"));
        assert!(check_against_realm(&s, &realm(json!({"allowAdminRoleGrants": true}))).is_empty());
    }

    #[test]
    fn script_mappers_are_refused_unless_the_realm_allows_them() {
        let s = spec(json!({"protocolMappers": [
            {"name": "ok", "protocolMapper": "oidc-hardcoded-claim-mapper"},
            {"name": "js", "protocolMapper": "script-my-mapper.js"}]}));
        let errs = check_against_realm(&s, &realm(json!({})));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "protocolMappers[1].protocolMapper");
        assert!(check_against_realm(&s, &realm(json!({"allowScriptMappers": true}))).is_empty());
    }

    #[test]
    fn only_granted_namespaces_may_use_an_instance_and_never_its_admin_realm_by_default() {
        let ins: KeycloakInstanceSpec =
            serde_json::from_value(json!({"url": "http://kc", "adminSecretRef": {"name": "a"},
            "realmAuthorizationGrants": ["team-a"]}))
            .unwrap();
        assert!(check_instance_grant("kco-system", "platform", "kco-system", "kc", &ins).is_ok());
        assert!(check_instance_grant("team-a", "team-a", "kco-system", "kc", &ins).is_ok());
        let err = check_instance_grant("team-b", "team-a", "kco-system", "kc", &ins).unwrap_err();
        assert!(err.contains("add team-b to the instance's spec.realmAuthorizationGrants"), "{err}");
        let err = check_instance_grant("team-a", "master", "kco-system", "kc", &ins).unwrap_err();
        assert!(err.contains("allowAdminRealm: true"), "{err}");
        let open: KeycloakInstanceSpec =
            serde_json::from_value(json!({"url": "http://kc", "adminSecretRef": {"name": "a"},
            "allowAdminRealm": true}))
            .unwrap();
        assert!(check_instance_grant("kco-system", "master", "kco-system", "kc", &open).is_ok());
    }
}
