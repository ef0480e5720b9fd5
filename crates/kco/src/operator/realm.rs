//! KeycloakRealm status: whether the realm may use its instance and exists in Keycloak (created
//! when missing and allowed). Status is written only when it changes.

use std::sync::Arc;
use std::time::Duration;

use kco_api::{FIELD_MANAGER, KeycloakRealm, KeycloakRealmStatus};
use kco_keycloak::ErrorKind;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::resolve::admin_of;
use super::{Context, ReconcileError};

pub async fn reconcile(realm: Arc<KeycloakRealm>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let checked = check(&realm, &ctx).await;
    let (phase, message) = match &checked {
        Ok(m) => ("Ready", m.clone()),
        Err(e) if e.is_transient() => ("Degraded", e.to_string()),
        Err(e) => ("Failed", e.to_string()),
    };
    let status = KeycloakRealmStatus {
        phase: Some(phase.to_string()),
        message: Some(message),
        observed_generation: realm.metadata.generation,
        conditions: vec![],
    };
    if realm.status.as_ref() != Some(&status) {
        let api: Api<KeycloakRealm> = Api::namespaced(ctx.kube.clone(), &realm.namespace().unwrap_or_default());
        let patch = json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakRealm", "status": status});
        api.patch_status(&realm.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
        ctx.count_write("status");
    }
    Ok(Action::requeue(if checked.is_ok() { ctx.resync } else { ctx.resync.min(Duration::from_secs(30)) }))
}

async fn check(realm: &KeycloakRealm, ctx: &Context) -> Result<String, ReconcileError> {
    let ns = realm.namespace().unwrap_or_default();
    let name = &realm.spec.realm_name;
    let Some((instance, admin)) = admin_of(ctx, realm).await? else {
        return Err(ReconcileError::blocked(
            "InstanceNotFound",
            format!(
                "spec.instanceRef: KeycloakInstance {}/{} does not exist",
                realm.spec.instance_ref.namespace_or(&ns),
                realm.spec.instance_ref.name
            ),
        ));
    };
    kco_engine::guard::check_instance_grant(
        &ns,
        name,
        &instance.namespace().unwrap_or_default(),
        &instance.name_any(),
        &instance.spec,
    )
    .map_err(|why| ReconcileError::blocked("NotAuthorized", why))?;
    if admin.realm_exists(name).await? {
        return Ok(format!("realm {name} exists in Keycloak"));
    }
    if !realm.spec.create_realm {
        return Err(ReconcileError::blocked(
            "RealmMissingInKeycloak",
            format!("realm {name} does not exist in Keycloak; create it there or set createRealm: true"),
        ));
    }
    let lock = ctx.realm_lock(&format!("{}/{name}", admin.base_url()));
    let _held = lock.lock().await;
    match admin.create_realm(name).await {
        Err(e) if e.kind == ErrorKind::Conflict => {}
        other => other?,
    }
    Ok(format!("realm {name} created in Keycloak"))
}

pub fn error_policy(_: Arc<KeycloakRealm>, err: &ReconcileError, _: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "KeycloakRealm check failed");
    Action::requeue(Duration::from_secs(30))
}
