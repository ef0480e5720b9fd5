//! What a [`crate::KeycloakAdmin`] remembers between reconciles so the same thing is not read again
//! every time: the user behind each client's service account, and the id of each role kco granted.
//! Both are ids that change only when Keycloak replaces the object (a service account turned off and
//! on again gets a new user; a role deleted and made again a new id), and a request that uses a
//! replaced one answers 404: the caller then forgets it, reads it again and retries once.
//!
//! Bounded: a map that reaches [`MAX_ENTRIES`] is emptied (re-reading is always correct, only slower).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Most entries each map holds before it starts over.
pub const MAX_ENTRIES: usize = 10_000;

/// How long a role's id is trusted without a request proving it.
pub const ROLE_TTL: Duration = Duration::from_secs(60);

/// (realm, client internal id).
type ClientKey = (String, String);
/// (realm, role container: empty for the realm's roles, else the client's internal id, role name).
type RoleKey = (String, String, String);

#[derive(Debug, Default)]
pub(crate) struct Memo {
    service_account_users: Mutex<HashMap<ClientKey, String>>,
    roles: Mutex<HashMap<RoleKey, (Value, Instant)>>,
}

impl Memo {
    pub(crate) fn service_account_user(&self, realm: &str, client: &str) -> Option<String> {
        let users = self.service_account_users.lock().ok()?;
        users.get(&(realm.to_string(), client.to_string())).cloned()
    }

    pub(crate) fn remember_service_account_user(&self, realm: &str, client: &str, user: &str) {
        if let Ok(mut users) = self.service_account_users.lock() {
            if users.len() >= MAX_ENTRIES {
                users.clear();
            }
            users.insert((realm.to_string(), client.to_string()), user.to_string());
        }
    }

    pub(crate) fn forget_service_account_user(&self, realm: &str, client: &str) {
        if let Ok(mut users) = self.service_account_users.lock() {
            users.remove(&(realm.to_string(), client.to_string()));
        }
    }

    pub(crate) fn role(&self, realm: &str, container: &str, name: &str, now: Instant) -> Option<Value> {
        let mut roles = self.roles.lock().ok()?;
        let key = (realm.to_string(), container.to_string(), name.to_string());
        match roles.get(&key) {
            Some((rep, at)) if now.saturating_duration_since(*at) < ROLE_TTL => Some(rep.clone()),
            Some(_) => {
                roles.remove(&key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn remember_role(&self, realm: &str, container: &str, name: &str, rep: Value, now: Instant) {
        if let Ok(mut roles) = self.roles.lock() {
            if roles.len() >= MAX_ENTRIES {
                roles.clear();
            }
            roles.insert((realm.to_string(), container.to_string(), name.to_string()), (rep, now));
        }
    }

    pub(crate) fn forget_role(&self, realm: &str, container: &str, name: &str) {
        if let Ok(mut roles) = self.roles.lock() {
            roles.remove(&(realm.to_string(), container.to_string(), name.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_account_user_is_remembered_per_realm_and_client_until_forgotten() {
        let m = Memo::default();
        m.remember_service_account_user("r", "c1", "u1");
        assert_eq!(m.service_account_user("r", "c1").as_deref(), Some("u1"));
        assert_eq!(m.service_account_user("r", "c2"), None);
        assert_eq!(m.service_account_user("other", "c1"), None);
        m.remember_service_account_user("r", "c1", "u2");
        assert_eq!(m.service_account_user("r", "c1").as_deref(), Some("u2"), "a new user replaces the old");
        m.forget_service_account_user("r", "c1");
        assert_eq!(m.service_account_user("r", "c1"), None);
    }

    #[test]
    fn the_maps_never_grow_past_their_bound() {
        let m = Memo::default();
        let now = Instant::now();
        for i in 0..MAX_ENTRIES + 5 {
            m.remember_service_account_user("r", &i.to_string(), "u");
            m.remember_role("r", "", &i.to_string(), json!({"id": "x"}), now);
        }
        assert!(m.service_account_users.lock().unwrap().len() <= MAX_ENTRIES);
        assert!(m.roles.lock().unwrap().len() <= MAX_ENTRIES);
        let last = (MAX_ENTRIES + 4).to_string();
        assert_eq!(m.service_account_user("r", &last).as_deref(), Some("u"), "the newest entry is kept");
    }

    #[test]
    fn a_role_is_trusted_for_a_while_per_container_then_read_again() {
        let m = Memo::default();
        let t0 = Instant::now();
        m.remember_role("r", "", "reader", json!({"id": "1", "name": "reader"}), t0);
        assert_eq!(m.role("r", "", "reader", t0 + ROLE_TTL / 2), Some(json!({"id": "1", "name": "reader"})));
        assert_eq!(m.role("r", "client-1", "reader", t0), None, "a client's role is another role");
        assert_eq!(m.role("r", "", "reader", t0 + ROLE_TTL), None, "expired");
        m.remember_role("r", "", "reader", json!({"id": "1"}), t0);
        m.forget_role("r", "", "reader");
        assert_eq!(m.role("r", "", "reader", t0), None);
    }
}
