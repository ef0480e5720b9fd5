//! Authorization Services of one reconciled client: observe (one read of the export) → plan → apply,
//! with the engine's errors turned into reconcile errors that say what to fix.

use kco_engine::authz::{DesiredAuthz, apply_authz, observe_authz, plan_authz, plan_problem_reason};
use kco_keycloak::KeycloakAdmin;

use super::ReconcileError;

/// Bring the resource server of client `id` in line with `desired`; returns the spec fields changed.
pub async fn sync_authz(
    admin: &KeycloakAdmin,
    realm: &str,
    id: &str,
    client_id: &str,
    desired: &DesiredAuthz,
) -> Result<Vec<String>, ReconcileError> {
    let observed = observe_authz(admin, realm, id, client_id).await?;
    let plan = plan_authz(desired, &observed).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let reason = plan_problem_reason(&problems);
        let hint = if problems.iter().any(|p| p.missing) { "; declare them or create them in Keycloak" } else { "" };
        ReconcileError::blocked(
            reason,
            format!(
                "authorization of client {client_id} in realm {realm} not applied (nothing was written): {}{hint}",
                list.join("; ")
            ),
        )
    })?;
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    tracing::info!(client = %client_id, realm = %realm, operations = plan.operations.len(), "applying authorization plan");
    apply_authz(admin, realm, id, client_id, &plan).await?;
    Ok(plan.changed_fields())
}
