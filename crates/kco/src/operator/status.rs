//! Status: built from what the reconcile learned, written with one server-side apply patch, and only
//! when something other than the timestamps changed.

use k8s_openapi::jiff::Timestamp;
use kco_api::{Condition, FIELD_MANAGER, KeycloakClient, KeycloakClientStatus, Phase};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::Context;

/// Write `status` unless it equals the current one (ignoring lastUpdated). Returns whether it wrote.
pub async fn write_status(
    ctx: &Context,
    kc: &KeycloakClient,
    status: KeycloakClientStatus,
) -> Result<bool, kube::Error> {
    let current = kc.status.clone().unwrap_or_default();
    let Some(status) = status_to_write(&current, status, &Timestamp::now().to_string()) else {
        return Ok(false);
    };
    let api: Api<KeycloakClient> = Api::namespaced(ctx.kube.clone(), &kc.namespace().unwrap_or_default());
    let patch = json!({ "apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "status": status });
    api.patch_status(&kc.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    ctx.count_write("status");
    Ok(true)
}

/// The status to write at time `now`, with its Ready condition, or `None` when it says nothing
/// `current` does not: the timestamps (lastUpdated, lastHealthCheck, and the condition's transition
/// time while the Ready status stays the same) never make a write on their own.
fn status_to_write(
    current: &KeycloakClientStatus,
    mut status: KeycloakClientStatus,
    now: &str,
) -> Option<KeycloakClientStatus> {
    // Keep the Ready condition's transition time unless its status flips.
    let ready = status.phase == Some(Phase::Ready);
    let cond_status = if ready { "True" } else { "False" };
    let previous = current.conditions.iter().find(|c| c.type_ == "Ready");
    let transition = match previous {
        Some(p) if p.status == cond_status => p.last_transition_time.clone(),
        _ => now.to_string(),
    };
    status.conditions = vec![Condition {
        type_: "Ready".into(),
        status: cond_status.into(),
        reason: status.reason.clone().unwrap_or_else(|| if ready { "Reconciled".into() } else { "NotReady".into() }),
        message: status.message.clone().unwrap_or_default(),
        observed_generation: status.observed_generation,
        last_transition_time: transition,
    }];
    status.last_updated = current.last_updated.clone();
    status.last_health_check = current.last_health_check.clone();
    if status == *current {
        return None;
    }
    status.last_updated = Some(now.to_string());
    status.last_health_check = Some(now.to_string());
    Some(status)
}

/// Write `status` on `obj` (a kco resource of `kind`) with server-side apply, unless it equals
/// `current`. Returns whether it wrote.
pub async fn apply_status_if_changed<K, S>(
    ctx: &Context,
    obj: &K,
    kind: &str,
    current: Option<&S>,
    status: &S,
) -> Result<bool, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: PartialEq + serde::Serialize,
{
    if current == Some(status) {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "kco.dev/v1", "kind": kind, "status": status});
    api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    ctx.count_write("status");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(message: &str) -> KeycloakClientStatus {
        KeycloakClientStatus {
            phase: Some(Phase::Ready),
            reason: Some("Reconciled".into()),
            message: Some(message.into()),
            observed_generation: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn the_same_status_again_is_not_written_whatever_the_time() {
        let written = status_to_write(&KeycloakClientStatus::default(), ready("in sync"), "t1").expect("first write");
        assert_eq!(written.last_updated.as_deref(), Some("t1"));
        assert_eq!(written.last_health_check.as_deref(), Some("t1"));
        let [c] = written.conditions.as_slice() else { panic!("one condition: {:?}", written.conditions) };
        assert_eq!((c.type_.as_str(), c.status.as_str(), c.reason.as_str()), ("Ready", "True", "Reconciled"));
        assert_eq!((c.message.as_str(), c.last_transition_time.as_str()), ("in sync", "t1"));
        assert_eq!(status_to_write(&written, ready("in sync"), "t2"), None);
    }

    #[test]
    fn a_change_is_written_and_the_transition_time_moves_only_when_ready_flips() {
        let first = status_to_write(&KeycloakClientStatus::default(), ready("in sync"), "t1").expect("first write");
        // Still Ready, another message: written, the condition keeps its transition time.
        let second = status_to_write(&first, ready("in sync again"), "t2").expect("message changed");
        assert_eq!(second.last_updated.as_deref(), Some("t2"));
        assert_eq!(second.conditions[0].last_transition_time, "t1");
        assert_eq!(second.conditions[0].message, "in sync again");
        // Failed: the condition flips to False with the status's reason, at this time.
        let failed = KeycloakClientStatus {
            phase: Some(Phase::Failed),
            reason: Some("RealmNotFound".into()),
            ..ready("no realm")
        };
        let third = status_to_write(&second, failed, "t3").expect("phase changed");
        let c = &third.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.last_transition_time.as_str()),
            ("False", "RealmNotFound", "t3")
        );
        // Not ready without a reason: NotReady.
        let degraded = KeycloakClientStatus { phase: Some(Phase::Degraded), reason: None, ..ready("x") };
        let fourth = status_to_write(&third, degraded, "t4").expect("changed");
        assert_eq!(
            (fourth.conditions[0].reason.as_str(), fourth.conditions[0].last_transition_time.as_str()),
            ("NotReady", "t3")
        );
    }
}
