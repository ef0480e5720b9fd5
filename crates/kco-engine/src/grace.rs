//! The rotation grace period in Keycloak: a realm client profile with Keycloak's `secret-rotation`
//! executor keeps the previous secret working for a while after a regeneration, and a realm client
//! policy applies that profile to the clients whose attribute `kco.dev/secret-grace` names its rule.
//!
//! One profile and one policy per distinct rule (grace period and rotation period), both named
//! `kco-secret-grace-<rule>` and matched by the attribute value `<rule>`; removed when no
//! KeycloakClient of the realm asks for the rule any more.
//!
//! Keycloak replaces a realm's profiles (or policies) as one document and offers no version to write
//! against. kco therefore reads the document right before each write, writes back exactly what it read
//! plus its own change, and reads again to check that the change landed; when another writer raced it
//! (its change is missing), it starts over. What no client can prevent without a version check: a
//! person who saves the same document within the few milliseconds between kco's read and write loses
//! that save. kco writes only when a rule appears or disappears, which keeps that window rare.

use std::collections::BTreeSet;

use kco_keycloak::KeycloakAdmin;
use serde_json::{Map, Value, json};

use crate::error::EngineError;

/// Client attribute naming the grace rule a client follows (empty: none).
pub const GRACE_ATTRIBUTE: &str = "kco.dev/secret-grace";
/// Name prefix of kco's client profiles and policies.
pub const NAME_PREFIX: &str = "kco-secret-grace-";
/// Attempts of one read-modify-write before giving up (the reconcile then retries with backoff).
const ATTEMPTS: usize = 5;

/// The rule id of a grace period and a rotation period (seconds): the attribute value, and the suffix
/// of the profile's and policy's name.
pub fn rule_id(grace_secs: i64, period_secs: i64) -> String {
    format!("{grace_secs}s-{period_secs}s")
}

/// The profile's `expiration-period`: Keycloak must not expire the secret before kco rotates it, and
/// creation time + expiration must stay inside Keycloak's 32-bit seconds: twice the rotation period
/// plus the grace, at least 400 days, capped below 2038 with a year spare.
pub fn expiration_secs(grace_secs: i64, period_secs: i64, now_secs: i64) -> i64 {
    let cap = i64::from(i32::MAX) - now_secs - 365 * 86_400;
    period_secs.saturating_mul(2).saturating_add(grace_secs).max(400 * 86_400).min(cap).max(1)
}

/// Make sure the profile and policy of rule (`grace_secs`, `period_secs`) exist in `realm`. Called
/// right before kco regenerates a secret, so a policy lost to a concurrent writer is back before it
/// is needed.
pub async fn ensure_grace_policy(
    kc: &KeycloakAdmin,
    realm: &str,
    grace_secs: i64,
    period_secs: i64,
    now_secs: i64,
) -> Result<(), EngineError> {
    let rule = rule_id(grace_secs, period_secs);
    let name = format!("{NAME_PREFIX}{rule}");
    let profile = json!({
        "name": name,
        "description": "kco: keep the previous client secret after a rotation (gracePeriod)",
        "executors": [{"executor": "secret-rotation", "configuration": {
            // Keycloak must not expire or rotate the secret by itself before kco does.
            "expiration-period": expiration_secs(grace_secs, period_secs, now_secs).to_string(),
            "rotated-expiration-period": grace_secs.to_string(),
            "remaining-rotation-period": "1"
        }}]
    });
    let attributes = json!([{"key": GRACE_ATTRIBUTE, "value": rule}]);
    let policy = json!({
        "name": name,
        "description": "kco: applies the secret-grace profile of the same name",
        "enabled": true,
        "conditions": [{"condition": "client-attributes", "configuration": {
            "is_negative_logic": false,
            // Keycloak wants this list as a JSON string.
            "attributes": attributes.to_string()
        }}],
        "profiles": [name]
    });
    // The profile first: a policy naming a missing profile is refused.
    update_document(kc, realm, "profiles", |list| add_named(list, &profile)).await?;
    update_document(kc, realm, "policies", |list| add_named(list, &policy)).await
}

/// Remove kco's grace policies (and their profiles) whose rule is not in `in_use`: the rules of every
/// KeycloakClient that may live in `realm`. Keycloak cannot be asked which clients carry an attribute
/// (it refuses attribute search on clients unless the server is configured for it), so the caller
/// decides from the objects it watches. One read of the policies; writes only when something goes.
pub async fn remove_unused_grace_policies(
    kc: &KeycloakAdmin,
    realm: &str,
    in_use: &BTreeSet<String>,
) -> Result<Vec<String>, EngineError> {
    let doc = kc.get(&[realm, "client-policies", "policies"], &[], "client-policy").await?;
    let unused: Vec<String> = doc
        .get("policies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p.get("name").and_then(Value::as_str).filter(|n| n.starts_with(NAME_PREFIX))?;
            let value = matched_value(p)?;
            (!in_use.contains(&value)).then(|| name.to_string())
        })
        .collect();
    if unused.is_empty() {
        return Ok(unused);
    }
    // Policies first: a profile still named by a policy cannot go.
    update_document(kc, realm, "policies", |list| remove_named(list, &unused)).await?;
    update_document(kc, realm, "profiles", |list| remove_named(list, &unused)).await?;
    Ok(unused)
}

/// The attribute value a kco policy's condition matches (its rule id, or a grace in seconds for
/// policies written by earlier kco versions).
fn matched_value(policy: &Value) -> Option<String> {
    policy.get("conditions")?.as_array()?.iter().find_map(|c| {
        let list = c.pointer("/configuration/attributes")?;
        // Either the JSON string Keycloak stores, or an already-decoded list.
        let list: Value = match list {
            Value::String(s) => serde_json::from_str(s).ok()?,
            other => other.clone(),
        };
        list.as_array()?.iter().find_map(|a| {
            (a.get("key")?.as_str()? == GRACE_ATTRIBUTE).then(|| a.get("value")?.as_str().map(str::to_string))?
        })
    })
}

/// `change` edits the list `which` (`profiles` or `policies`) and says whether it changed anything.
/// Read, change, write back what was read plus the change, read again to check the change holds.
async fn update_document(
    kc: &KeycloakAdmin,
    realm: &str,
    which: &str,
    change: impl Fn(&mut Vec<Value>) -> bool,
) -> Result<(), EngineError> {
    let path = [realm, "client-policies", which];
    for _ in 0..ATTEMPTS {
        let doc = kc.get(&path, &[], "client-policy").await?;
        let mut doc: Map<String, Value> = match doc {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let mut list = doc.get(which).and_then(Value::as_array).cloned().unwrap_or_default();
        if !change(&mut list) {
            return Ok(());
        }
        doc.insert(which.to_string(), Value::Array(list));
        kc.put(&path, &Value::Object(doc), "client-policy").await?;
        let after = kc.get(&path, &[], "client-policy").await?;
        let mut after = after.get(which).and_then(Value::as_array).cloned().unwrap_or_default();
        if !change(&mut after) {
            return Ok(());
        }
        tracing::debug!(realm, which, "client-policies document changed under kco's write; trying again");
    }
    Err(kco_keycloak::Error::new(
        kco_keycloak::ErrorKind::Conflict,
        format!("update client {which} of realm {realm}"),
        format!("another writer changed the document {ATTEMPTS} times in a row; kco tries again later"),
    )
    .into())
}

fn name_of(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

fn add_named(list: &mut Vec<Value>, item: &Value) -> bool {
    if list.iter().any(|p| name_of(p) == name_of(item)) {
        return false;
    }
    list.push(item.clone());
    true
}

fn remove_named(list: &mut Vec<Value>, names: &[String]) -> bool {
    let before = list.len();
    list.retain(|p| !name_of(p).is_some_and(|n| names.iter().any(|x| x == n)));
    list.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_one_name_one_matched_value() {
        assert_eq!(rule_id(3600, 2_592_000), "3600s-2592000s");
        assert_ne!(rule_id(3600, 2_592_000), rule_id(3600, 86_400), "the period is part of the rule");
    }

    #[test]
    fn the_matched_value_is_read_from_the_condition_in_either_encoding() {
        let p = json!({"name": "kco-secret-grace-1s-2s", "conditions": [{"condition": "client-attributes",
            "configuration": {"attributes": "[{\"key\":\"kco.dev/secret-grace\",\"value\":\"1s-2s\"}]"}}]});
        assert_eq!(matched_value(&p).as_deref(), Some("1s-2s"));
        let old =
            json!({"conditions": [{"configuration": {"attributes": [{"key": GRACE_ATTRIBUTE, "value": "3600"}]}}]});
        assert_eq!(matched_value(&old).as_deref(), Some("3600"));
        assert_eq!(matched_value(&json!({"conditions": [{"configuration": {"attributes": "not json"}}]})), None);
        assert_eq!(matched_value(&json!("not a policy")), None);
    }

    #[test]
    fn adding_and_removing_touch_only_the_named_entries() {
        let mut list = vec![json!({"name": "theirs"}), json!({"name": "kco-secret-grace-1s-2s"})];
        assert!(!add_named(&mut list, &json!({"name": "theirs", "x": 1})), "present by name: no write");
        assert!(add_named(&mut list, &json!({"name": "kco-secret-grace-3s-4s"})));
        assert!(remove_named(&mut list, &["kco-secret-grace-1s-2s".to_string()]));
        assert_eq!(list, vec![json!({"name": "theirs"}), json!({"name": "kco-secret-grace-3s-4s"})]);
        assert!(!remove_named(&mut list, &["absent".to_string()]));
    }

    #[test]
    fn expiration_outlasts_the_rotation_and_stays_inside_32_bit_seconds() {
        let now = 1_795_000_000;
        assert_eq!(expiration_secs(3600, 86_400, now), 400 * 86_400);
        assert_eq!(expiration_secs(3600, 300 * 86_400, now), 600 * 86_400 + 3600);
        let huge = expiration_secs(0, i64::MAX, now);
        assert!(now + huge <= i64::from(i32::MAX), "{huge}");
        assert_eq!(expiration_secs(0, 1, i64::from(i32::MAX)), 1);
    }
}
