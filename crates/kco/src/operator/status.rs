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
    mut status: KeycloakClientStatus,
) -> Result<bool, kube::Error> {
    let current = kc.status.clone().unwrap_or_default();
    let now = Timestamp::now().to_string();
    // Keep the Ready condition's transition time unless its status flips.
    let ready = status.phase == Some(Phase::Ready);
    let cond_status = if ready { "True" } else { "False" };
    let previous = current.conditions.iter().find(|c| c.type_ == "Ready");
    let transition = match previous {
        Some(p) if p.status == cond_status => p.last_transition_time.clone(),
        _ => now.clone(),
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
    if status == current {
        return Ok(false);
    }
    status.last_updated = Some(now.clone());
    status.last_health_check = Some(now);
    let api: Api<KeycloakClient> = Api::namespaced(ctx.kube.clone(), &kc.namespace().unwrap_or_default());
    let patch = json!({ "apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "status": status });
    api.patch_status(&kc.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    ctx.count_write("status");
    Ok(true)
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
