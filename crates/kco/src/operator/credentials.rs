//! The client secret's life: taken from a user-owned Secret, regenerated once on request, or rotated on
//! schedule — then written to the managed Secret and every additional Secret. Keycloak's own
//! `client.secret.creation.time` is the record of the last rotation, so a crash between rotating and
//! writing status can never cause a second rotation.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kco_api::KeycloakClient;
use kco_engine::grace::ensure_grace_policy;
use kco_engine::schedule::{next_rotation_at, parse_grace_period, parse_period, rotation_due};
use kco_keycloak::KeycloakAdmin;
use kube::{Api, ResourceExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::resolve::secret_strings;
use super::{Context, ReconcileError};

/// Keycloak attribute holding when the current secret was made (epoch seconds).
const CREATION_TIME: &str = "client.secret.creation.time";

#[derive(Default)]
pub struct SecretOutcome {
    pub secret: Option<SecretString>,
    /// An Event to publish: (reason, note).
    pub event: Option<(&'static str, String)>,
    pub last_rotation: Option<Timestamp>,
    pub next_rotation: Option<Timestamp>,
    pub regenerated_generation: Option<i64>,
}

/// The Keycloak client whose secret is being decided, as this reconcile knows it.
pub struct TargetClient<'a> {
    pub admin: &'a KeycloakAdmin,
    pub realm: &'a str,
    pub id: &'a str,
    /// The representation as last read (for the creation time attribute).
    pub representation: Option<&'a Value>,
    /// The secret read with it, only when this reconcile changed nothing on the client since: then
    /// `representation` is also the client as it is (saves a request each).
    pub current: Option<SecretString>,
}

/// Decide and carry out what happens to the client secret in this reconcile.
pub async fn client_secret(
    ctx: &Context,
    kc: &KeycloakClient,
    target: TargetClient<'_>,
    now: Timestamp,
) -> Result<SecretOutcome, ReconcileError> {
    if kc.spec.public_client {
        return Ok(SecretOutcome::default());
    }
    if let Some(src) = &kc.spec.client_secret {
        return from_user_secret(ctx, kc, &target, &src.name, &src.key).await;
    }
    let mut out = SecretOutcome::default();
    let status = kc.status.clone().unwrap_or_default();
    // regenerateSecret: honoured once per false → true change (see status.regeneratedGeneration).
    if kc.spec.regenerate_secret {
        out.regenerated_generation = status.regenerated_generation;
        if status.regenerated_generation.is_none() {
            out.secret = Some(regenerate(ctx, kc, &target, now).await?);
            out.regenerated_generation = kc.metadata.generation;
            out.event = Some(("SecretRegenerated", "regenerated the client secret as requested".into()));
        }
    }
    if let Some(rotation) = kc.spec.secret_rotation.as_ref().filter(|r| r.enabled) {
        rotate_on_schedule(ctx, kc, &target, rotation, now, &mut out).await?;
    }
    if out.secret.is_none() {
        out.secret = Some(current_secret(&target).await?);
    }
    Ok(out)
}

/// `spec.clientSecret`: Keycloak is made to hold the user's value.
async fn from_user_secret(
    ctx: &Context,
    kc: &KeycloakClient,
    target: &TargetClient<'_>,
    name: &str,
    key: &str,
) -> Result<SecretOutcome, ReconcileError> {
    let mut out = SecretOutcome::default();
    let wanted = user_secret(ctx, kc, name, key).await?;
    let current = current_secret(target).await?;
    if wanted.expose_secret() != current.expose_secret() {
        // The representation read with the current secret is still the client as it is.
        let read = target.current.as_ref().and(target.representation);
        target.admin.set_client_secret(target.realm, target.id, &wanted, read).await?;
        out.event = Some(("SecretUpdated", format!("client secret set from Secret {name} key {key}")));
    }
    out.secret = Some(wanted);
    Ok(out)
}

/// The secret Keycloak holds now: as read with the client this reconcile, else read.
async fn current_secret(target: &TargetClient<'_>) -> Result<SecretString, ReconcileError> {
    match &target.current {
        Some(c) => Ok(c.clone()),
        None => Ok(target.admin.client_secret(target.realm, target.id).await?),
    }
}

/// A new secret from Keycloak. With a grace period, first the realm policy that keeps the previous
/// secret working that long (realm policies are rewritten whole: one writer per realm at a time).
async fn regenerate(
    ctx: &Context,
    kc: &KeycloakClient,
    target: &TargetClient<'_>,
    now: Timestamp,
) -> Result<SecretString, ReconcileError> {
    let (admin, realm) = (target.admin, target.realm);
    let rotation = kc.spec.secret_rotation.as_ref();
    let grace = rotation
        .and_then(|r| r.grace_period.as_deref())
        .map(parse_grace_period)
        .transpose()
        .map_err(|e| ReconcileError::blocked("InvalidSpec", e.to_string()))?;
    if let Some(g) = grace {
        let lock = ctx.realm_lock(&format!("{}/{realm}", admin.base_url()));
        let _held = lock.lock().await;
        let period = rotation.and_then(|r| parse_period(&r.rotation_period).ok());
        let period_secs = period.map_or(90 * 86_400, |p| p.as_secs());
        ensure_grace_policy(admin, realm, g.as_secs(), period_secs, now.as_second()).await?;
    }
    Ok(admin.regenerate_client_secret(realm, target.id).await?)
}

/// `secretRotation`: rotate when due (unless this reconcile already made a new secret), and record
/// the last and next rotation. The last one is Keycloak's own secret creation time.
async fn rotate_on_schedule(
    ctx: &Context,
    kc: &KeycloakClient,
    target: &TargetClient<'_>,
    rotation: &kco_api::SecretRotation,
    now: Timestamp,
    out: &mut SecretOutcome,
) -> Result<(), ReconcileError> {
    let status = kc.status.clone().unwrap_or_default();
    let created = target
        .representation
        .and_then(|c| c.pointer(&format!("/attributes/{}", CREATION_TIME.replace('/', "~1"))))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|secs| Timestamp::from_second(secs).ok());
    let object_created = kc.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let last = match out.secret {
        Some(_) => Some(now),
        None => created.or(status.last_rotation.as_deref().and_then(|s| s.parse().ok())),
    };
    let invalid = |e: kco_engine::schedule::ScheduleError| ReconcileError::blocked("InvalidSpec", e.to_string());
    if out.secret.is_none() && rotation_due(last, object_created, rotation, now).map_err(invalid)? {
        out.secret = Some(regenerate(ctx, kc, target, now).await?);
        // Fault injection for the crash-safety test: die after Keycloak rotated, before any Secret
        // or status write. Compiled only with the test-only `fault-injection` feature.
        #[cfg(feature = "fault-injection")]
        if std::env::var_os("KCO_FAULT_EXIT_AFTER_ROTATION").is_some() {
            tracing::warn!("KCO_FAULT_EXIT_AFTER_ROTATION is set: exiting right after a rotation");
            std::process::exit(75);
        }
        out.event = Some(("SecretRotated", "rotated the client secret on schedule".into()));
        out.last_rotation = Some(now);
    } else {
        out.last_rotation = last;
    }
    let from = out.last_rotation.unwrap_or(object_created);
    out.next_rotation = Some(next_rotation_at(from, rotation).map_err(invalid)?);
    Ok(())
}

async fn user_secret(
    ctx: &Context,
    kc: &KeycloakClient,
    name: &str,
    key: &str,
) -> Result<SecretString, ReconcileError> {
    let ns = kc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), &ns);
    let missing = |what: String| {
        ReconcileError::blocked(
            "ClientSecretMissing",
            format!("spec.clientSecret: {what}; create it, or remove spec.clientSecret to let Keycloak generate one"),
        )
    };
    let secret = api.get_opt(name).await?.ok_or_else(|| missing(format!("Secret {ns}/{name} does not exist")))?;
    let label = kco_api::CLIENT_SECRET_OPT_IN_LABEL;
    if secret.labels().get(label).map(String::as_str) != Some("true") {
        return Err(ReconcileError::blocked(
            "ClientSecretNotOptedIn",
            format!(
                "spec.clientSecret: Secret {ns}/{name} does not carry the label {label}: \"true\"; whoever may write \
                 that Secret opts it in with: kubectl label secret -n {ns} {name} {label}=true"
            ),
        ));
    }
    let value = secret_strings(&secret)
        .remove(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing(format!("Secret {ns}/{name} has no non-empty key {key:?}")))?;
    Ok(SecretString::from(value))
}
