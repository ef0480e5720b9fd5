//! The Keycloak side of one client, as both fronts run it: check the spec → find the client (by the
//! internal id last recorded, else by clientId) → build the desired state → refuse a client that is
//! not ours → observe → plan → apply → Authorization Services. The operator adds Kubernetes (status,
//! Secrets, the realm's lock, rotation) around these steps; the CLI adds files and flags.

use kco_api::{AuthenticationFlows, KeycloakClientSpec};
use kco_keycloak::{ErrorKind, KeycloakAdmin};
use serde_json::Value;

use crate::authz::{DesiredAuthz, apply_authz, observe_authz, plan_authz, plan_problem_reason};
use crate::desired::{DesiredClient, Owner};
use crate::error::{EngineError, INVALID_SPEC};
use crate::plan::{ClientPlan, ObservedClient, Ownership, ownership, plan_client};
use crate::{ApplyOutcome, apply_plan, observe_client, validate_client};

/// Step 1: every rule of the spec, before anything is read; one error listing every violation.
pub fn check_spec(spec: &KeycloakClientSpec) -> Result<(), EngineError> {
    let errors = validate_client(spec);
    if errors.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(EngineError::Spec { reason: INVALID_SPEC, message: list.join("; ") })
}

/// The client as it is now, by the internal id last recorded (when it still carries `client_id`),
/// else by clientId. Reads only; an error of kind NotFound means the realm itself is missing.
pub async fn find_existing(
    admin: &KeycloakAdmin,
    realm: &str,
    client_id: &str,
    recorded_id: Option<&str>,
) -> Result<Option<Value>, kco_keycloak::Error> {
    if let Some(id) = recorded_id {
        match admin.get_client(realm, id).await {
            Ok(Some(c)) if c.get("clientId").and_then(Value::as_str) == Some(client_id) => return Ok(Some(c)),
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    admin.find_client(realm, client_id).await
}

/// The desired client; flow aliases become the realm's flow ids (one read, only when the spec
/// manages overrides).
pub async fn desired_client(
    admin: &KeycloakAdmin,
    realm: &str,
    spec: &KeycloakClientSpec,
    owner: &Owner,
) -> Result<DesiredClient, EngineError> {
    let mut desired = DesiredClient::from_spec(spec, Some(owner));
    if let Some(flows) = &spec.authentication_flows {
        let overrides = flow_overrides(admin, realm, flows).await?;
        desired.fields.insert("authenticationFlowBindingOverrides".into(), overrides);
    }
    Ok(desired)
}

/// Refuse a client that belongs to someone else (another owner, Keycloak itself, or made outside
/// kco without `adopt`), naming the owner and the way out.
pub fn check_ownership(
    existing: &Value,
    owner: &Owner,
    adopt: bool,
    client_id: &str,
    realm: &str,
) -> Result<(), EngineError> {
    if let Ownership::Foreign(who) = ownership(existing, owner, adopt) {
        return Err(EngineError::Spec {
            reason: "Conflict",
            message: format!(
                "client {client_id:?} already exists in realm {realm} and belongs to {who}; kco will not take it over. \
                 Choose another clientId, or annotate this object {}=true to adopt it",
                kco_api::ADOPT_ANNOTATION
            ),
        });
    }
    Ok(())
}

/// What the plan step saw and decided.
#[derive(Debug)]
pub struct Prepared {
    pub desired: DesiredClient,
    /// The client as read before any change (with its roles and secret), when it exists.
    pub observed: Option<ObservedClient>,
    pub existing_id: Option<String>,
    pub plan: ClientPlan,
}

/// Ownership check, observe and plan (reads only): what `apply` would do to `existing`.
pub async fn prepare(
    admin: &KeycloakAdmin,
    realm: &str,
    desired: DesiredClient,
    existing: Option<Value>,
    owner: &Owner,
    adopt: bool,
) -> Result<Prepared, EngineError> {
    if let Some(o) = &existing {
        check_ownership(o, owner, adopt, &desired.client_id, realm)?;
    }
    let existing_id = existing.as_ref().and_then(|o| o.get("id")).and_then(Value::as_str).map(str::to_string);
    let observed = match existing {
        Some(rep) => Some(observe_client(admin, realm, &desired, rep).await?),
        None => None,
    };
    let plan = plan_client(&desired, observed.as_ref());
    Ok(Prepared { desired, observed, existing_id, plan })
}

/// Carry out a prepared plan (no request when it is empty), then Authorization Services. Returns
/// the outcome with the authorization fields changed added to `changed_fields`.
pub async fn apply_prepared(
    admin: &KeycloakAdmin,
    realm: &str,
    spec: &KeycloakClientSpec,
    prepared: &Prepared,
    allow_admin_role_grants: bool,
) -> Result<ApplyOutcome, EngineError> {
    let mut outcome = apply_plan(
        admin,
        realm,
        &prepared.plan,
        prepared.existing_id.as_deref(),
        prepared.observed.as_ref(),
        allow_admin_role_grants,
    )
    .await?;
    if let Some(authz) = DesiredAuthz::from_spec(spec) {
        let changed = sync_authz(admin, realm, &outcome.internal_id, &spec.client_id, &authz).await?;
        outcome.changed_fields.extend(changed);
    }
    Ok(outcome)
}

/// Bring the resource server of client `id` in line with `desired`; returns the spec fields changed.
/// One read of the export; nothing is written when the plan is empty or has problems.
pub async fn sync_authz(
    admin: &KeycloakAdmin,
    realm: &str,
    id: &str,
    client_id: &str,
    desired: &DesiredAuthz,
) -> Result<Vec<String>, EngineError> {
    let observed = observe_authz(admin, realm, id, client_id).await?;
    let plan = plan_authz(desired, &observed).map_err(|problems| {
        let hint = if problems.iter().any(|p| p.missing) { "; declare them or create them in Keycloak" } else { "" };
        problems_error(
            &problems,
            format!("authorization of client {client_id} in realm {realm} not applied (nothing was written): "),
            hint,
        )
    })?;
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    tracing::info!(client = %client_id, realm = %realm, operations = plan.operations.len(), "applying authorization plan");
    apply_authz(admin, realm, id, client_id, &plan).await?;
    Ok(plan.changed_fields())
}

/// The authorization changes `desired` would make (reads only), for a dry run; `None` when the
/// client does not exist yet (everything would be created).
pub async fn plan_authz_changes(
    admin: &KeycloakAdmin,
    realm: &str,
    id: &str,
    client_id: &str,
    desired: &DesiredAuthz,
) -> Result<Vec<String>, EngineError> {
    let observed = observe_authz(admin, realm, id, client_id).await?;
    match plan_authz(desired, &observed) {
        Ok(plan) => Ok(plan.changed_fields()),
        Err(problems) => Err(problems_error(&problems, String::new(), "")),
    }
}

/// Why an authorization plan cannot be made, as a spec error: `before`, every problem, `after`.
fn problems_error(problems: &[crate::authz::PlanProblem], before: String, after: &str) -> EngineError {
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    EngineError::Spec { reason: plan_problem_reason(problems), message: format!("{before}{}{after}", list.join("; ")) }
}

/// `authenticationFlows` aliases → the client's flow binding overrides (flow ids). An unset binding is
/// sent empty, which is how Keycloak removes an override. One read of the realm's flows.
async fn flow_overrides(admin: &KeycloakAdmin, realm: &str, flows: &AuthenticationFlows) -> Result<Value, EngineError> {
    let all = admin.get(&[realm, "authentication", "flows"], &[], "authentication-flow").await?;
    let id_of = |field: &str, alias: &Option<String>| -> Result<String, EngineError> {
        let Some(alias) = alias else { return Ok(String::new()) };
        all.as_array()
            .into_iter()
            .flatten()
            .find(|f| f.get("alias").and_then(Value::as_str) == Some(alias))
            .and_then(|f| f.get("id").and_then(Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| EngineError::Spec {
                reason: "FlowNotFound",
                message: format!(
                    "spec.authenticationFlows.{field}: realm {realm} has no authentication flow {alias:?}; create it or fix the alias"
                ),
            })
    };
    Ok(serde_json::json!({
        "browser": id_of("browserFlow", &flows.browser_flow)?,
        "direct_grant": id_of("directGrantFlow", &flows.direct_grant_flow)?,
    }))
}
