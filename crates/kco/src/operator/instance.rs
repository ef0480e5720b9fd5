//! KeycloakInstance status: whether kco can reach and log in to the Admin API, and Keycloak's
//! version. Checked on change and every `--keycloak-check` (a restart is noticed by Keycloak's
//! uptime); status is written only when it changes.

use std::sync::Arc;
use std::time::Duration;

use kco_api::{KeycloakInstance, KeycloakInstanceStatus};
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::resolve::admin_for;
use super::status::apply_status_if_changed;
use super::{Context, ReconcileError};

pub async fn reconcile(ins: Arc<KeycloakInstance>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let checked = match admin_for(&ctx, &ins).await {
        Ok(admin) => {
            let info = admin.server_info().await.map_err(ReconcileError::from);
            // Restarted since the last check (a start kco had not seen), or answering again after
            // refusing connections: its clients are read again (Keycloak may have lost writes).
            ctx.note_keycloak_comeback(&admin, (&ins.namespace().unwrap_or_default(), &ins.name_any()));
            info.map(|i| i.version)
        }
        Err(e) => Err(e),
    };
    let status = match &checked {
        Ok(version) => KeycloakInstanceStatus {
            reachable: Some(true),
            version: Some(version.clone()),
            message: Some(format!("Admin API at {} answers", ins.spec.url)),
            observed_generation: ins.metadata.generation,
            conditions: vec![],
        },
        Err(e) => KeycloakInstanceStatus {
            reachable: Some(false),
            version: ins.status.as_ref().and_then(|s| s.version.clone()),
            message: Some(e.to_string()),
            observed_generation: ins.metadata.generation,
            conditions: vec![],
        },
    };
    let was = ins.status.as_ref().and_then(|s| s.reachable);
    let key = format!("{}/{}", ins.namespace().unwrap_or_default(), ins.name_any());
    match (&checked, was) {
        (Err(e), Some(true)) => tracing::warn!(instance = key, error = %e, "KeycloakInstance no longer reachable"),
        (Ok(_), Some(false)) => tracing::info!(instance = key, "KeycloakInstance reachable again"),
        _ => {}
    }
    apply_status_if_changed(&ctx, &*ins, ins.status.as_ref(), &status).await?;
    // Checked every `--keycloak-check` (at most the resync): a restart is noticed by the uptime
    // within that time even when kco had nothing to do meanwhile.
    Ok(Action::requeue(if checked.is_ok() {
        ctx.keycloak_check
    } else {
        ctx.keycloak_check.min(Duration::from_secs(30))
    }))
}

pub fn error_policy(_: Arc<KeycloakInstance>, err: &ReconcileError, _: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "KeycloakInstance status check failed");
    Action::requeue(std::time::Duration::from_secs(30))
}

/// Whether `instance` reads Secret `name` of its namespace (admin credentials or CA bundle).
pub fn uses_secret(instance: &KeycloakInstance, name: &str) -> bool {
    instance.spec.admin_secret_ref.name == name
        || instance.spec.ca_bundle.as_ref().and_then(|c| c.secret_key_ref.as_ref()).is_some_and(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_uses_its_admin_and_ca_secrets_only() {
        let ins: KeycloakInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakInstance", "metadata": {"name": "kc", "namespace": "ops"},
            "spec": {"url": "https://kc", "adminSecretRef": {"name": "admin"},
                     "caBundle": {"secretKeyRef": {"name": "ca", "key": "ca.crt"}}}
        }))
        .unwrap();
        assert!(uses_secret(&ins, "admin"));
        assert!(uses_secret(&ins, "ca"));
        assert!(!uses_secret(&ins, "app-credentials"));
    }
}
