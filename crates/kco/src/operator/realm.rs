//! KeycloakRealm status: whether the realm may use its instance and exists in Keycloak (created
//! when missing and allowed). Status is written only when it changes.

use std::sync::Arc;
use std::time::Duration;

use kco_api::{KeycloakRealm, KeycloakRealmStatus};
use kube::runtime::controller::Action;

use super::resolve::{ensure_realm, instance_for_realm};
use super::status::apply_status_if_changed;
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
    apply_status_if_changed(&ctx, &*realm, realm.status.as_ref(), &status).await?;
    Ok(Action::requeue(if checked.is_ok() { ctx.resync } else { ctx.resync.min(Duration::from_secs(30)) }))
}

async fn check(realm: &KeycloakRealm, ctx: &Context) -> Result<String, ReconcileError> {
    let name = &realm.spec.realm_name;
    let (_, admin) = instance_for_realm(ctx, realm).await?;
    // One message whether it was just created or already there: no second status write.
    ensure_realm(ctx, &admin, realm).await?;
    Ok(format!("realm {name} exists in Keycloak"))
}

pub fn error_policy(_: Arc<KeycloakRealm>, err: &ReconcileError, _: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "KeycloakRealm check failed");
    Action::requeue(Duration::from_secs(30))
}
