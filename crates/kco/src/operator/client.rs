//! Reconcile of one KeycloakClient: apply (read → validate → plan → apply → Secret → status) and
//! cleanup (delete the Keycloak client unless told to orphan it).

use std::collections::BTreeSet;
use std::sync::Arc;

use kco_api::{
    ADOPT_ANNOTATION, CLIENT_FINALIZER, DeletionPolicy, Endpoints, KeycloakClient, KeycloakClientStatus, KeycloakRealm,
    Phase,
};
use kco_engine::formats::render_additional;
use kco_engine::grace::GRACE_ATTRIBUTE;
use kco_engine::plan::{Ownership, ownership};
use kco_engine::secret::{Credentials, render_credentials};
use kco_engine::{DesiredClient, ObservedClient, Owner, apply_plan};
use kco_keycloak::{ErrorKind, KeycloakAdmin};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::Value;

use super::context::ResultLabel;
use super::credentials::{TargetClient, client_secret};
use super::guarded::GuardedClient;
use super::quiet::CleanCheck;
use super::resolve::{admin_of, ensure_realm, grant, instance_for_realm, realm_of};
use super::secret::{OutputSecret, ensure_secret};
use super::status::write_status;
use super::{Context, ReconcileError, backoff};

pub async fn reconcile(
    guarded: Arc<GuardedClient>,
    ctx: Arc<Context>,
) -> Result<Action, kube::runtime::finalizer::Error<ReconcileError>> {
    let key = format!("{}/{}", guarded.namespace().unwrap_or_default(), guarded.name_any());
    // Wait for this object's turn at its Keycloak instance before the reconcile's state exists: a
    // running reconcile is a future of about 20 KiB, and a namespace that applies thousands of
    // objects queues thousands of them here (unlimited controller concurrency, so the gate can be fair
    // between namespaces). Queued, each costs this small future; the rest is allocated once it runs.
    let turn = match super::resolve::gate_of(&ctx, &guarded) {
        Some(instance) => ctx.gates.enter(&instance, &guarded.namespace().unwrap_or_default()).await,
        None => None,
    };
    // Logged inside the controller's span, which names what triggered this reconcile.
    tracing::debug!(object = key, "reconcile starts");
    // Without a turn from the caches (realm or instance not known yet), converge waits for one itself.
    let turn = Turn { held: turn.is_some() || ctx.gates.unlimited(), permit: turn };
    let result = super::catch_panic(&key, Box::pin(reconcile_object(guarded.clone(), ctx.clone(), turn))).await;
    match result {
        Ok(result) => result,
        Err(panic) => {
            // Boxed: a queued reconcile's future keeps room for its largest step.
            Box::pin(internal_error(&guarded, &panic, &ctx)).await.map_err(kube::runtime::finalizer::Error::ApplyFailed)
        }
    }
}

/// A reconcile's turn at its Keycloak instance's gate (see `gate`): taken in `reconcile` from the
/// caches when they name the instance (`held`), else waited for once the instance is resolved.
pub struct Turn {
    held: bool,
    permit: Option<super::gate::Permit>,
}

impl Turn {
    /// The slot to hold while talking to Keycloak at `instance`; `None` without a limit.
    async fn wait(self, ctx: &Context, instance: &str, tenant: &str) -> Option<super::gate::Permit> {
        if self.held { self.permit } else { ctx.gates.enter(instance, tenant).await }
    }
}

async fn reconcile_object(
    guarded: Arc<GuardedClient>,
    ctx: Arc<Context>,
    turn: Turn,
) -> Result<Action, kube::runtime::finalizer::Error<ReconcileError>> {
    // Test hook: a reconcile of the named object panics, to show it fails alone.
    #[cfg(feature = "fault-injection")]
    #[allow(clippy::panic)]
    if std::env::var("KCO_FAULT_PANIC_ON").is_ok_and(|n| n == guarded.name_any()) {
        panic!("KCO_FAULT_PANIC_ON is set for {}", guarded.name_any());
    }
    let ns = guarded.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", guarded.name_any());
    let kc = match guarded.client() {
        Ok(kc) => Arc::new(kc),
        Err(why) => return malformed(&guarded, &why, &ctx).await.map_err(kube::runtime::finalizer::Error::ApplyFailed),
    };
    let api: Api<KeycloakClient> = Api::namespaced(ctx.kube.clone(), &ns);
    let result = finalizer(&api, CLIENT_FINALIZER, kc, |event| async {
        match event {
            Finalizer::Apply(kc) => apply(&kc, &ctx, turn).await,
            Finalizer::Cleanup(kc) => cleanup(&kc, &ctx, turn).await,
        }
    })
    .await;
    let label = if result.is_ok() { "ok" } else { "error" };
    ctx.reconciles.get_or_create(&ResultLabel { result: label.into() }).inc();
    ctx.finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if result.is_ok()
        && let Ok(mut f) = ctx.failures.lock()
    {
        f.remove(&key);
    }
    result
}

/// An object that does not parse: say where in status and an Event, touch nothing in Keycloak, and
/// wait for the user to fix it. Deleting it releases kco's finalizer (kco cannot know what it named).
async fn malformed(obj: &GuardedClient, why: &str, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<KeycloakClient> = Api::namespaced(ctx.kube.clone(), &ns);
    let name = obj.name_any();
    if obj.meta().deletion_timestamp.is_some() {
        let keep: Vec<String> = obj.finalizers().iter().filter(|f| *f != CLIENT_FINALIZER).cloned().collect();
        let patch = serde_json::json!({"metadata": {"finalizers": keep}});
        api.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await?;
        return Ok(Action::await_change());
    }
    let message = format!("{why}; fix the object so it matches the KeycloakClient schema");
    // A merge patch: server-side apply cannot build its typed view of an object that breaks the schema.
    let status = serde_json::json!({
        "status": {"phase": "Failed", "reason": "InvalidSpec", "message": message,
                   "observedGeneration": obj.meta().generation}
    });
    api.patch_status(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status)).await?;
    ctx.count_write("status");
    tracing::warn!(object = %format!("{ns}/{name}"), reason = %why, "KeycloakClient does not parse");
    Ok(Action::await_change())
}

/// A reconcile that panicked (a bug in kco): only this object fails, with a status that asks for a
/// bug report; the operator keeps serving every other object. Retried at resync or on change.
async fn internal_error(obj: &GuardedClient, panic: &str, ctx: &Context) -> Result<Action, ReconcileError> {
    ctx.reconciles.get_or_create(&ResultLabel { result: "panic".into() }).inc();
    ctx.finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let message = format!(
        "kco hit an internal error while reconciling KeycloakClient {ns}/{name}: {panic}. This is a bug in kco, not in \
         your object: please report it with this message and the operator log. kco retries when the object \
         changes and at each resync; other objects are not affected"
    );
    let api: Api<KeycloakClient> = Api::namespaced(ctx.kube.clone(), &ns);
    // A merge patch: the typed status may be what broke.
    let status = serde_json::json!({
        "status": {"phase": "Failed", "reason": "InternalError", "message": message,
                   "observedGeneration": obj.meta().generation}
    });
    api.patch_status(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status)).await?;
    ctx.count_write("status");
    Ok(Action::requeue(ctx.resync))
}

pub fn error_policy(
    kc: Arc<GuardedClient>,
    err: &kube::runtime::finalizer::Error<ReconcileError>,
    ctx: Arc<Context>,
) -> Action {
    let key = format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any());
    let n = match ctx.failures.lock() {
        Ok(mut f) => {
            let n = f.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        }
        Err(_) => 1,
    };
    let asked = match err {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
            e.retry_after()
        }
        _ => None,
    };
    tracing::warn!(object = %key, failures = n, error = %err, retry_after = ?asked, "reconcile failed; will retry");
    // Keycloak's Retry-After wins over kco's own backoff: it knows when it can take more.
    match asked {
        Some(d) => Action::requeue(d.max(std::time::Duration::from_secs(1))),
        None => backoff(n),
    }
}

/// The facts status is built from; filled in as the reconcile learns them.
#[derive(Default)]
struct StatusFacts {
    realm: Option<String>,
    instance: Option<String>,
    internal_id: Option<String>,
    endpoints: Option<Endpoints>,
    granted: Option<(bool, String)>,
    secret: Option<String>,
    roles: Option<Vec<String>>,
    mappers: Option<Vec<String>>,
    last_rotation: Option<jiff::Timestamp>,
    next_rotation: Option<jiff::Timestamp>,
    /// `None`: not decided in this reconcile (keep what status has).
    regenerated_generation: Option<Option<i64>>,
    /// Set when this reconcile changed something in Keycloak or a Secret.
    changed_at: Option<jiff::Timestamp>,
    /// The in-progress status (Provisioning, Updating) this reconcile wrote, if any: the final status
    /// is compared against it, not against the status the reconcile started from.
    progress: Option<KeycloakClientStatus>,
    /// Secrets in other namespaces kco answers for after this reconcile (`namespace/name`).
    remote_secrets: Option<Vec<String>>,
}

impl StatusFacts {
    /// Say in status what is happening (phase Provisioning or Updating), sent alongside a Keycloak
    /// write; a reconcile that writes nothing never calls this, so idle resyncs stay silent. The
    /// final status is compared against this one even when its answer was lost (it may have landed).
    async fn progress(
        &mut self,
        ctx: &Context,
        kc: &KeycloakClient,
        phase: Phase,
        message: String,
    ) -> Result<(), ReconcileError> {
        let reason = if phase == Phase::Provisioning { "Provisioning" } else { "Updating" };
        let status = self.status(kc, phase, reason, message);
        let current = self.current(kc);
        self.progress = Some(status.clone());
        write_status(ctx, &current, status).await?;
        Ok(())
    }

    /// The object as the next status write should compare against.
    fn current(&self, kc: &KeycloakClient) -> KeycloakClient {
        let mut kc = kc.clone();
        if let Some(p) = &self.progress {
            kc.status = Some(p.clone());
        }
        kc
    }

    fn status(&self, kc: &KeycloakClient, phase: Phase, reason: &str, message: String) -> KeycloakClientStatus {
        let prev = kc.status.clone().unwrap_or_default();
        KeycloakClientStatus {
            phase: Some(phase),
            reason: Some(reason.to_string()),
            message: Some(message),
            observed_generation: kc.metadata.generation,
            client_id: Some(kc.spec.client_id.clone()),
            internal_id: self.internal_id.clone().or(prev.internal_id),
            realm: self.realm.clone().or(prev.realm),
            public_client: Some(kc.spec.public_client),
            keycloak_instance: self.instance.clone().or(prev.keycloak_instance),
            credentials_secret: self.secret.clone(),
            endpoints: self.endpoints.clone().or(prev.endpoints),
            authorization_granted: self.granted.as_ref().map(|g| g.0).or(prev.authorization_granted),
            authorization_message: self.granted.as_ref().map(|g| g.1.clone()).or(prev.authorization_message),
            created_roles: self.roles.clone().or(prev.created_roles),
            applied_mappers: self.mappers.clone().or(prev.applied_mappers),
            last_health_check: prev.last_health_check,
            last_updated: prev.last_updated,
            last_reconcile_event_time: self.changed_at.map(|t| t.to_string()).or(prev.last_reconcile_event_time),
            last_rotation: self.last_rotation.map(|t| t.to_string()).or(prev.last_rotation),
            next_rotation: if kc.spec.secret_rotation.as_ref().is_some_and(|r| r.enabled) {
                self.next_rotation.map(|t| t.to_string()).or(prev.next_rotation)
            } else {
                None
            },
            regenerated_generation: match self.regenerated_generation {
                Some(g) => g,
                None => prev.regenerated_generation,
            },
            conditions: prev.conditions,
            remote_secrets: self.remote_secrets.clone().unwrap_or(prev.remote_secrets),
        }
    }
}

async fn apply(kc: &KeycloakClient, ctx: &Context, turn: Turn) -> Result<Action, ReconcileError> {
    let mut facts = StatusFacts::default();
    let others_before = ctx.others_changed.load(std::sync::atomic::Ordering::Relaxed);
    match converge(kc, ctx, &mut facts, turn).await {
        Ok(done) if done.quiet => Ok(Action::requeue(done.requeue.map_or(ctx.resync, |r| r.min(ctx.resync)))),
        Ok(done) => {
            let _publishing = done.publishing;
            let mut message = format!("client {} is in sync with Keycloak", kc.spec.client_id);
            if kc.spec.authentication_flows.as_ref().is_some_and(|f| f.client_authentication_flow.is_some()) {
                // Keycloak binds client authentication per realm only; say so rather than pretend.
                message.push_str(
                    "; note: spec.authenticationFlows.clientAuthenticationFlow is not applied (Keycloak has no \
                     per-client override for client authentication; bind the flow on the realm)",
                );
            }
            if let Some(note) = kco_engine::authz::implied_settings_note(&kc.spec) {
                message.push_str("; note: ");
                message.push_str(&note);
            }
            let key = format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any());
            let written =
                write_status(ctx, &facts.current(kc), facts.status(kc, Phase::Ready, "Reconciled", message)).await;
            let written = written.inspect_err(|_| ctx.quiet.forget(&key))?;
            if let Some(clean) = done.clean {
                ctx.quiet.record(&key, kc, written.as_deref(), clean);
            }
            ctx.create_settled(&kc.uid().unwrap_or_default());
            if let Some((reason, note)) = done.event {
                publish(ctx, kc, EventType::Normal, reason, note).await;
            }
            Ok(Action::requeue(done.requeue.map_or(ctx.resync, |r| r.min(ctx.resync))))
        }
        Err(e) => {
            let key = format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any());
            ctx.quiet.forget(&key);
            let tries = ctx.failures.lock().map(|f| f.get(&key).copied().unwrap_or(0)).unwrap_or(0);
            let previous = kc.status.as_ref().and_then(|s| s.reason.as_deref());
            let e = super::rejected::rejected_request(&e, tries, previous, &kc.spec.client_id).unwrap_or(e);
            let phase = error_phase(&e);
            let message = e.to_string();
            let wrote =
                write_status(ctx, &facts.current(kc), facts.status(kc, phase, e.reason(), message.clone())).await?;
            if wrote.is_some() {
                publish(ctx, kc, EventType::Warning, e.reason(), message).await;
            }
            // A realm or instance changed while this ran: the trigger meant for a failed client may
            // have passed it by (its Failed status was not in the cache yet), so look once more soon.
            if ctx.others_changed.load(std::sync::atomic::Ordering::Relaxed) != others_before {
                return Ok(super::backoff(1));
            }
            // Failed: retried when the object, its realm or its Secret changes, and at resync; Degraded:
            // with backoff (or Keycloak's Retry-After), see `error_policy`.
            if phase == Phase::Failed { Ok(Action::requeue(ctx.resync)) } else { Err(e) }
        }
    }
}

/// The phase an error leaves: Degraded when retrying without any change can help, Failed when someone
/// must act first.
fn error_phase(e: &ReconcileError) -> Phase {
    if e.is_transient() { Phase::Degraded } else { Phase::Failed }
}

/// Bring Keycloak and the Secret in line with the spec, step by step: validate → resolve → find the
/// client (creating the realm when it is missing) → build the desired state → plan and apply →
/// Authorization Services → credentials → Secrets. Each step records what status should say in `facts`.
/// `turn`: this reconcile's turn at the instance's gate (see `reconcile`), handed on after the last
/// Keycloak call: the Kubernetes writes that follow (Secrets, status, Events) take no slot.
async fn converge(
    kc: &KeycloakClient,
    ctx: &Context,
    facts: &mut StatusFacts,
    turn: Turn,
) -> Result<Converged, ReconcileError> {
    check_spec(kc)?;
    let target = resolve(ctx, kc, facts).await?;
    // From here on this reconcile talks to Keycloak: wait for its turn (see `gate`).
    let turn = turn.wait(ctx, target.admin.base_url(), &kc.namespace().unwrap_or_default()).await;
    // A resync of a client checked whole since, that nothing touched (its realm's admin events say
    // so), reads nothing (see `quiet`).
    let key = format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any());
    let at = jiff::Timestamp::now();
    let quiet = ctx.quiet.is_quiet(&key, kc, &ctx.stores.secrets, &target.admin, &target.realm_name, at).await;
    if let Some(next_rotation) = quiet {
        drop(turn);
        return Ok(Converged {
            event: None,
            requeue: until(next_rotation, at),
            clean: None,
            quiet: true,
            publishing: None,
        });
    }
    // Create at once when kco never tried before; otherwise, or when that create is refused, look
    // the client up first (see `never_created`).
    let mut guess = never_created(kc) && ctx.first_create(&kc.uid().unwrap_or_default());
    // Where the realm's admin events stand before anything is read: a check that finds the client
    // as declared is quiet until an event after this concerns it. A create writes anyway.
    let ticket = ctx.quiet.ticket();
    let mark = if guess { None } else { ctx.quiet.mark(&target.admin, &target.realm_name).await };
    let (desired, mut applied) = loop {
        let existing = if guess { None } else { look_up(ctx, kc, &target).await? };
        let tried = desire_and_apply(ctx, kc, &target, existing, facts).await;
        if guess {
            ctx.note_keycloak_comeback(&target.admin, (&target.instance.0, &target.instance.1));
        }
        match tried {
            Err(e) if guess && create_refused(&e) => {
                tracing::debug!(client = %kc.spec.client_id, error = %e, "the create was refused; looking the client up");
                guess = false;
            }
            other => break other?,
        }
    };
    facts.internal_id = Some(applied.internal_id.clone());
    facts.roles = desired.client_roles.clone();
    facts.mappers = Some(desired.protocol_mappers.mappers.iter().map(|m| m.name.clone()).collect());
    // Step 5b: Authorization Services go through their own endpoints, once the client exists.
    if let Some(authz) = kco_engine::authz::DesiredAuthz::from_spec(&kc.spec) {
        let (id, client_id) = (&applied.internal_id, &kc.spec.client_id);
        let changed =
            kco_engine::converge::sync_authz(&target.admin, &target.realm_name, id, client_id, &authz).await?;
        applied.changed_fields.extend(changed);
    }
    let mut event = applied.event(kc, &target.realm_name);

    let now = jiff::Timestamp::now();
    let rep = applied.observed.as_ref().map(|o| &o.representation);
    // A secret read with the client is only current if this reconcile did not change the client.
    let current = applied.observed.as_ref().filter(|_| !applied.wrote).and_then(|o| o.secret.clone());
    let secret_of = TargetClient {
        admin: &target.admin,
        realm: &target.realm_name,
        id: &applied.internal_id,
        representation: rep,
        current,
    };
    let creds = client_secret(ctx, kc, secret_of, now).await?;
    // The turn goes to the next reconcile only when there is room to write to the apiserver: when
    // the apiserver is the slower of the two, reconciles wait here holding their turn (so Keycloak
    // work slows to the apiserver's pace) instead of piling up, hundreds at once, each with its
    // state, in front of the Kubernetes writes (see `Context::publishing`).
    let publishing = ctx.publishing.clone().acquire_owned().await.ok();
    drop(turn);
    let wrote = applied.wrote || !applied.changed_fields.is_empty() || creds.event.is_some();
    let next_rotation = creds.next_rotation;
    facts.last_rotation = creds.last_rotation;
    facts.next_rotation = creds.next_rotation;
    facts.regenerated_generation = Some(creds.regenerated_generation);
    if let Some(ev) = creds.event {
        event = Some(ev);
    }
    let credentials = Credentials {
        client_id: kc.spec.client_id.clone(),
        client_secret: creds.secret,
        endpoints: target.endpoints.clone(),
    };
    let written = publish_secrets(ctx, kc, &target.realm_name, &credentials, facts).await?;
    // Nothing written to Keycloak, and no Secret elsewhere (their consent is not watched): quiet
    // until something concerns it (see `quiet`).
    let remote = facts.remote_secrets.as_ref().is_some_and(|r| !r.is_empty());
    let clean = mark.filter(|_| !wrote && !remote).map(|mark| CleanCheck {
        mark,
        ticket,
        client: kco_engine::drift::id(&applied.internal_id),
        user: applied.observed.as_ref().and_then(|o| o.service_account_user.as_deref()).map(kco_engine::drift::id),
        others: applied.observed.iter().flat_map(|o| o.client_ids.values()).map(|c| kco_engine::drift::id(c)).collect(),
        authorization: kco_engine::authz::DesiredAuthz::from_spec(&kc.spec).is_some(),
        secrets: super::quiet::secrets_version(kc, &ctx.stores.secrets),
        next_rotation,
    });
    if !written.is_empty() && event.is_none() {
        event = Some(("SecretWritten", format!("wrote credentials to Secret {}", written.join(", "))));
    }
    if event.is_some() {
        facts.changed_at = Some(now);
    }
    let mut requeue = until(creds.next_rotation, now);
    // A protocol change makes Keycloak add mappers of its own (the docker feature's): look again
    // shortly, so a declared mapper list holds without waiting for the resync.
    if applied.changed_fields.iter().any(|f| f == "protocol") {
        let soon = std::time::Duration::from_secs(2);
        requeue = Some(requeue.map_or(soon, |r| r.min(soon)));
    }
    Ok(Converged { event, requeue, clean, quiet: false, publishing })
}

/// How long from `now` until `next` (at least a second), if there is a next.
fn until(next: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Option<std::time::Duration> {
    let secs = next?.as_second().saturating_sub(now.as_second()).max(1);
    Some(std::time::Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Step 1: every rule of the spec, before anything is read.
fn check_spec(kc: &KeycloakClient) -> Result<(), ReconcileError> {
    Ok(kco_engine::converge::check_spec(&kc.spec)?)
}

/// Where the client goes: its realm object (granted to this namespace, allowing what the spec asks),
/// the instance and its admin client. No Keycloak call.
struct Target {
    owner: Owner,
    realm: KeycloakRealm,
    realm_name: String,
    admin: Arc<KeycloakAdmin>,
    /// The KeycloakInstance's namespace and name.
    instance: (String, String),
    endpoints: Endpoints,
}

/// Step 2: resolve the realm, the grant, the realm's guards and the instance.
async fn resolve(ctx: &Context, kc: &KeycloakClient, facts: &mut StatusFacts) -> Result<Target, ReconcileError> {
    let ns = kc.namespace().unwrap_or_default();
    let Some(realm) = realm_of(ctx, kc).await? else {
        return Err(ReconcileError::blocked(
            "RealmNotFound",
            format!(
                "spec.realmRef: KeycloakRealm {}/{} does not exist; create it or fix realmRef",
                kc.spec.realm_ref.namespace_or(&ns),
                kc.spec.realm_ref.name
            ),
        ));
    };
    let realm_name = realm.spec.realm_name.clone();
    facts.realm = Some(realm_name.clone());
    let (granted, why) = grant(&realm, &ns);
    facts.granted = Some((granted, why.clone()));
    if !granted {
        return Err(ReconcileError::blocked("NotAuthorized", why));
    }
    let over_reach = kco_engine::guard::check_against_realm(&kc.spec, &realm.spec);
    if !over_reach.is_empty() {
        let list: Vec<String> = over_reach.iter().map(ToString::to_string).collect();
        return Err(ReconcileError::blocked(kco_engine::guard::NOT_ALLOWED, list.join("; ")));
    }
    let (instance, admin) = instance_for_realm(ctx, &realm).await?;
    let public_url = instance.spec.public_url.clone().unwrap_or_else(|| instance.spec.url.clone());
    let endpoints = Endpoints::for_realm(&public_url, &realm_name);
    let instance = (instance.namespace().unwrap_or_default(), instance.name_any());
    facts.instance = Some(format!("{}/{}", instance.0, instance.1));
    facts.endpoints = Some(endpoints.clone());
    let owner = Owner { namespace: ns, name: kc.name_any(), uid: kc.uid().unwrap_or_default() };
    Ok(Target { owner, realm, realm_name, admin, instance, endpoints })
}

/// Step 4: the desired client (the engine's, shared with the CLI).
async fn desired_client(kc: &KeycloakClient, target: &Target) -> Result<DesiredClient, ReconcileError> {
    Ok(kco_engine::converge::desired_client(&target.admin, &target.realm_name, &kc.spec, &target.owner).await?)
}

/// What applying the plan did.
struct Applied {
    internal_id: String,
    /// The client as read before the changes (with its roles and secret), when it existed.
    observed: Option<ObservedClient>,
    created: bool,
    /// Whether this reconcile wrote to the client at all.
    wrote: bool,
    /// Managed fields changed on an existing client (client and authorization).
    changed_fields: Vec<String>,
}

impl Applied {
    /// The Event a change deserves: Created, Updated (the spec changed) or DriftReverted.
    fn event(&self, kc: &KeycloakClient, realm: &str) -> Option<(&'static str, String)> {
        if self.created {
            return Some(("Created", format!("created client {} in realm {realm}", kc.spec.client_id)));
        }
        if self.changed_fields.is_empty() {
            return None;
        }
        let spec_changed = kc.status.as_ref().and_then(|s| s.observed_generation) != kc.metadata.generation;
        let (reason, verb) =
            if spec_changed { ("Updated", "updated") } else { ("DriftReverted", "reverted hand-made changes to") };
        Some((reason, format!("{verb} {}", self.changed_fields.join(", "))))
    }
}

/// Step 5: refuse a client that is not ours, read what the plan compares, plan (pure), apply; then
/// the realm-wide leftovers (grace rules).
async fn apply_client(
    ctx: &Context,
    kc: &KeycloakClient,
    target: &Target,
    desired: &DesiredClient,
    existing: Option<Value>,
    facts: &mut StatusFacts,
) -> Result<Applied, ReconcileError> {
    let (admin, realm_name) = (&target.admin, &target.realm_name);
    let adopt = kc.annotations().get(ADOPT_ANNOTATION).is_some_and(|v| v == "true");
    let prepared =
        kco_engine::converge::prepare(admin, realm_name, desired.clone(), existing, &target.owner, adopt).await?;
    let kco_engine::converge::Prepared { observed, existing_id, plan, .. } = prepared;
    // A retry of the same generation after a failure keeps saying Failed or Degraded (and why) until it
    // succeeds, rather than flipping the phase on every attempt.
    let retry = kc.status.as_ref().is_some_and(|s| {
        matches!(s.phase, Some(Phase::Failed | Phase::Degraded)) && s.observed_generation == kc.metadata.generation
    });
    let progress = (!plan.is_empty() && !retry).then(|| match &observed {
        None => (Phase::Provisioning, format!("creating client {} in realm {realm_name}", kc.spec.client_id)),
        Some(_) => (
            Phase::Updating,
            format!("applying changes to client {}: {}", kc.spec.client_id, plan.changed_fields().join(", ")),
        ),
    });
    let allow_admin = target.realm.spec.allow_admin_role_grants;
    // The in-progress phase is said only when the plan takes Keycloak longer than `--progress-after`
    // (a quick create goes straight to Ready: one Kubernetes write less per create, #11). Then it
    // goes to the apiserver while the plan goes on in Keycloak, and the final status is written only
    // after both, so a watcher sees Provisioning (or Updating) before Ready. Keycloak's answer comes
    // first when both fail: it says more about the client. When only the status write failed, what
    // Keycloak did stands and the reconcile goes on: its Event and final status say so (an error now
    // would hide the change, and the retry would find nothing left to do).
    let apply = apply_plan(admin, realm_name, &plan, existing_id.as_deref(), observed.as_ref(), allow_admin);
    let (said, outcome) = match progress {
        None => (Ok(()), apply.await),
        // 0s: said for every write, however quick (a zero sleep would still race the write).
        Some((phase, message)) if ctx.progress_after.is_zero() => {
            tokio::join!(facts.progress(ctx, kc, phase, message), apply)
        }
        Some((phase, message)) => {
            tokio::pin!(apply);
            tokio::select! {
                biased;
                outcome = &mut apply => (Ok(()), outcome),
                () = tokio::time::sleep(ctx.progress_after) => {
                    tokio::join!(facts.progress(ctx, kc, phase, message), apply)
                }
            }
        }
    };
    let outcome = outcome?;
    if let Err(e) = said {
        tracing::warn!(object = %format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any()), error = %e,
            "could not write the in-progress phase; going on to the final status");
    }
    if !plan.is_empty() {
        tracing::info!(client = %kc.spec.client_id, realm = %realm_name, created = outcome.created,
            changed = ?outcome.changed_fields, operations = plan.operations.len(), "applied plan");
    }
    // A grace rule the client no longer follows may have been its realm's last user of that rule.
    let had_rule = observed.as_ref().and_then(|o| o.representation.pointer("/attributes")).and_then(grace_rule_of);
    if had_rule.is_some() && had_rule.as_deref() != desired.attributes.get(GRACE_ATTRIBUTE).map(String::as_str) {
        remove_unused_grace_rules(ctx, admin, &target.realm).await?;
    }
    Ok(Applied {
        changed_fields: outcome.changed_fields,
        internal_id: outcome.internal_id,
        observed,
        created: outcome.created,
        wrote: !plan.is_empty(),
    })
}

/// Step 7: the managed Secret and the consumer-format Secrets; returns the names written.
async fn publish_secrets(
    ctx: &Context,
    kc: &KeycloakClient,
    realm_name: &str,
    credentials: &Credentials,
    facts: &mut StatusFacts,
) -> Result<Vec<String>, ReconcileError> {
    let mut written = Vec::new();
    let own_ns = kc.namespace().unwrap_or_default();
    if kc.spec.manage_secret {
        let (secret_name, wrote) = publish_managed_secret(ctx, kc, &own_ns, credentials).await?;
        if wrote {
            written.push(secret_name.clone());
        }
        facts.secret = Some(secret_name);
    }
    // Consumer-format Secrets are written even with manageSecret: false: asking for them is explicit.
    // One in another namespace only with that namespace's consent; the others are written regardless,
    // so a refusal there never leaves this namespace's Secrets behind a rotation.
    let mut refused = Vec::new();
    let mut remote = Vec::new();
    for (i, extra) in kc.spec.additional_secrets.iter().flatten().enumerate() {
        let data = render_additional(extra, credentials, realm_name)
            .map_err(|e| ReconcileError::blocked(kco_engine::error::INVALID_SPEC, e.to_string()))?;
        let ns = extra.namespace.as_deref().unwrap_or(&own_ns);
        if ns != own_ns {
            remote.push(format!("{ns}/{}", extra.name));
            if let Some(why) = super::secret::consent(ctx, kc, ns).await? {
                refused.push(format!("spec.additionalSecrets[{i}] (Secret {ns}/{}): {why}", extra.name));
                continue;
            }
        }
        let out = OutputSecret {
            name: &extra.name,
            namespace: ns,
            field: format!("spec.additionalSecrets[{i}].name"),
            labels: extra.labels.clone(),
            annotations: extra.annotations.clone(),
        };
        if ensure_secret(ctx, kc, &out, &data).await? {
            written.push(if ns == own_ns { extra.name.clone() } else { format!("{ns}/{}", extra.name) });
        }
    }
    // Secrets kco wrote elsewhere that the spec no longer names are deleted (the consent they were
    // written under does not cover keeping stale credentials).
    let prev = kc.status.as_ref().map(|s| s.remote_secrets.clone()).unwrap_or_default();
    let stale: Vec<String> = prev.into_iter().filter(|k| !remote.contains(k)).collect();
    if !stale.is_empty() {
        super::secret::delete_remote_secrets(ctx, kc, &stale).await?;
    }
    facts.remote_secrets = Some(remote);
    if !refused.is_empty() {
        return Err(ReconcileError::blocked("CredentialsNotAccepted", refused.join("; ")));
    }
    Ok(written)
}

/// The managed Secret (`spec.secretName`, in the object's namespace): its name and whether kco wrote it.
async fn publish_managed_secret(
    ctx: &Context,
    kc: &KeycloakClient,
    own_ns: &str,
    credentials: &Credentials,
) -> Result<(String, bool), ReconcileError> {
    let secret_name = kc.secret_name();
    let meta = kc.spec.secret_metadata.clone().unwrap_or_default();
    let out = OutputSecret {
        name: &secret_name,
        namespace: own_ns,
        field: "spec.secretName".into(),
        labels: meta.labels,
        annotations: meta.annotations,
    };
    let wrote = ensure_secret(ctx, kc, &out, &render_credentials(credentials)).await?;
    Ok((secret_name, wrote))
}

/// What a successful converge leaves for the caller: an Event to publish, and how soon the next
/// rotation is due (the requeue is the earlier of this and the resync period).
struct Converged {
    event: Option<(&'static str, String)>,
    requeue: Option<std::time::Duration>,
    /// A full check that found the client as declared (see `quiet`).
    clean: Option<CleanCheck>,
    /// A quiet resync: nothing was read, so the status (Ready, as the last full check left it) stays.
    quiet: bool,
    /// Room to write to the apiserver, held until the status is written (see `Context::publishing`).
    publishing: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Step 3: the client as it is now (see [`find_existing`]), creating the realm when it is missing.
async fn look_up(ctx: &Context, kc: &KeycloakClient, target: &Target) -> Result<Option<Value>, ReconcileError> {
    let existing = find_existing(kc, target).await;
    ctx.note_keycloak_comeback(&target.admin, (&target.instance.0, &target.instance.1));
    match existing {
        Err(e) if e.kind == ErrorKind::NotFound => {
            ensure_realm(ctx, &target.admin, &target.realm).await?;
            Ok(None)
        }
        other => Ok(other?),
    }
}

/// Steps 4 and 5: the desired client, applied to `existing` (`None`: create it).
async fn desire_and_apply(
    ctx: &Context,
    kc: &KeycloakClient,
    target: &Target,
    existing: Option<Value>,
    facts: &mut StatusFacts,
) -> Result<(DesiredClient, Applied), ReconcileError> {
    let desired = desired_client(kc, target).await?;
    let applied = apply_client(ctx, kc, target, &desired, existing, facts).await?;
    Ok((desired, applied))
}

/// Whether, as far as the status tells, kco never tried to make this object's Keycloak client: no
/// client recorded, and no phase beyond Pending (a first reconcile only adds the finalizer and
/// writes no status). Such a client most likely does not exist yet, so the reconcile creates it
/// without looking it up first (one Keycloak read less per create, #11), and looks it up only when
/// the create is refused (see [`create_refused`]): the clientId is taken (another owner's, which
/// the ownership check then refuses as always), or the realm is missing. Every later try looks the
/// client up first, so a create is not sent twice: a Failed or Degraded retry, a Provisioning whose
/// end was not recorded, and, in this process, any object it sent a create for whose status does
/// not record it yet (`Context::creates_sent`: a quick create writes no Provisioning, see
/// `--progress-after`). After a restart without any of these, the create's 409 sends it to the
/// lookup, which finds kco's own client.
fn never_created(kc: &KeycloakClient) -> bool {
    kc.status.as_ref().is_none_or(|s| s.internal_id.is_none() && matches!(s.phase, None | Some(Phase::Pending)))
}

/// Whether an error of a create tried without a lookup (see [`never_created`]) calls for the
/// lookup: Keycloak answered 409 (the clientId is taken) or 404 (the realm is missing), or a
/// Keycloak-side spec check failed (a missing realm shows as a missing flow or scope). Transient
/// failures are returned as they are; the next try looks the client up first.
fn create_refused(e: &ReconcileError) -> bool {
    match e {
        ReconcileError::Keycloak(e) => matches!(e.kind, ErrorKind::Conflict | ErrorKind::NotFound),
        ReconcileError::Blocked { .. } => true,
        ReconcileError::Internal(_) | ReconcileError::Kube(_) => false,
    }
}

/// Step 3: the Keycloak client as it is now, by the internal id kco recorded, else by clientId.
/// Reads only; an error of kind NotFound means the realm itself is missing.
async fn find_existing(kc: &KeycloakClient, target: &Target) -> Result<Option<Value>, kco_keycloak::Error> {
    let status = kc.status.as_ref();
    let recorded = status
        .filter(|s| s.realm.as_deref() == Some(target.realm_name.as_str()))
        .and_then(|s| s.internal_id.as_deref());
    kco_engine::converge::find_existing(&target.admin, &target.realm_name, &kc.spec.client_id, recorded).await
}

async fn cleanup(kc: &KeycloakClient, ctx: &Context, turn: Turn) -> Result<Action, ReconcileError> {
    ctx.quiet.gone(&format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any()));
    ctx.create_settled(&kc.uid().unwrap_or_default());
    let ns = kc.namespace().unwrap_or_default();
    // Secrets in other namespaces have no owner reference to collect them: delete them here, like
    // Kubernetes deletes the local ones (whatever deletionPolicy says about the Keycloak client).
    let mut remote = kc.status.as_ref().map(|s| s.remote_secrets.clone()).unwrap_or_default();
    for extra in kc.spec.additional_secrets.iter().flatten() {
        if let Some(other) = extra.namespace.as_deref().filter(|n| *n != ns) {
            remote.push(format!("{other}/{}", extra.name));
        }
    }
    super::secret::delete_remote_secrets(ctx, kc, &remote).await?;
    if kc.spec.deletion_policy == DeletionPolicy::Orphan {
        tracing::info!(object = %format!("{ns}/{}", kc.name_any()), "deletionPolicy Orphan: keeping the Keycloak client");
        return Ok(Action::await_change());
    }
    // No grant is needed to delete: only a client this very object owns is deleted, which can only
    // take access away. The KeycloakRealm, KeycloakInstance and admin Secret may already be gone (a
    // namespace deletion removes objects in no fixed order): what deletion needs was recorded in
    // status, and the admin client is kept in memory.
    let Some((realm_name, admin)) = cleanup_target(ctx, kc).await? else {
        return Ok(Action::await_change());
    };
    let realm_name = &realm_name;
    let _turn = turn.wait(ctx, admin.base_url(), &ns).await;
    let owner = Owner { namespace: ns.clone(), name: kc.name_any(), uid: kc.uid().unwrap_or_default() };
    let found = match admin.find_client(realm_name, &kc.spec.client_id).await {
        Ok(found) => found,
        Err(e) if e.kind == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    // Only a client this object owns is deleted; a conflicting object never deletes the other's client.
    if let Some(c) = found
        && ownership(&c, &owner, false) == Ownership::Owned
        && let Some(id) = c.get("id").and_then(Value::as_str)
    {
        admin.delete_client(realm_name, id).await?;
        tracing::info!(client = %kc.spec.client_id, realm = %realm_name, "deleted Keycloak client");
        if c.get("attributes").and_then(grace_rule_of).is_some()
            && let Some(realm) = realm_of(ctx, kc).await?
        {
            remove_unused_grace_rules(ctx, &admin, &realm).await?;
        }
    }
    Ok(Action::await_change())
}

/// The Keycloak realm and admin client to delete `kc`'s Keycloak client with; `None` when kco never
/// recorded one (nothing was created). From the KeycloakRealm and KeycloakInstance while they exist,
/// else from status (`realm`, `keycloakInstance`) and the admin client last used for that instance.
async fn cleanup_target(
    ctx: &Context,
    kc: &KeycloakClient,
) -> Result<Option<(String, Arc<kco_keycloak::KeycloakAdmin>)>, ReconcileError> {
    let status = kc.status.clone().unwrap_or_default();
    let realm = realm_of(ctx, kc).await?;
    let Some(realm_name) = realm.as_ref().map(|r| r.spec.realm_name.clone()).or(status.realm) else {
        return Ok(None);
    };
    let live = match &realm {
        Some(realm) => admin_of(ctx, realm).await,
        None => Ok(None),
    };
    let instance = status.keycloak_instance.unwrap_or_default();
    match live {
        Ok(Some((_, admin))) => Ok(Some((realm_name, admin))),
        failed => match ctx.cached_admin(&instance).await {
            Some(admin) => Ok(Some((realm_name, admin))),
            None => Err(failed.err().unwrap_or_else(|| {
                ReconcileError::blocked(
                    "CleanupBlocked",
                    format!(
                        "cannot delete Keycloak client {} in realm {realm_name}: KeycloakInstance {instance} \
                         and its admin credentials are gone and kco holds no admin client for it; recreate \
                         them, or set deletionPolicy: Orphan to keep the Keycloak client and let this object go",
                        kc.spec.client_id
                    ),
                )
            })),
        },
    }
}

/// The grace rule recorded on a Keycloak client's attributes (non-empty), if any.
fn grace_rule_of(attributes: &Value) -> Option<String> {
    attributes.get(GRACE_ATTRIBUTE).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string)
}

/// Drop the realm's grace policies no KeycloakClient asks for any more (under the realm's lock, like
/// their creation, so this operator never removes a rule it is adding). Only when this operator sees
/// every namespace the KeycloakRealm grants: otherwise a client it cannot see may need the rule.
async fn remove_unused_grace_rules(
    ctx: &Context,
    admin: &KeycloakAdmin,
    realm: &KeycloakRealm,
) -> Result<(), ReconcileError> {
    let name = &realm.spec.realm_name;
    let Some(in_use) = grace_rules_in_use(ctx, realm) else {
        tracing::debug!(realm = %name, "not every granted namespace is watched here; unused grace policies stay");
        return Ok(());
    };
    let lock = ctx.realm_lock(&format!("{}/{name}", admin.base_url()));
    let _held = lock.lock().await;
    let removed = kco_engine::grace::remove_unused_grace_policies(admin, name, &in_use).await?;
    if !removed.is_empty() {
        tracing::info!(realm = %name, policies = ?removed, "removed client policies no client uses any more");
    }
    Ok(())
}

/// The grace rules of every KeycloakClient that is or may be in `realm` (status not yet written
/// counts as maybe), leaving out objects being deleted; `None` when this operator does not watch every
/// namespace the realm grants.
fn grace_rules_in_use(ctx: &Context, realm: &KeycloakRealm) -> Option<BTreeSet<String>> {
    let store = ctx.clients.get()?;
    if let Some(ns) = &ctx.watched_namespace
        && realm.spec.client_authorization_grants.iter().any(|g| g != ns)
    {
        return None;
    }
    let name = &realm.spec.realm_name;
    let rules = store
        .state()
        .iter()
        .filter(|c| c.meta().deletion_timestamp.is_none())
        .filter_map(|c| c.parsed.as_ref().ok())
        .filter(|c| c.realm().is_none_or(|r| r == name))
        .filter_map(|c| c.grace_rule().map(str::to_string))
        .collect();
    Some(rules)
}

/// An Event's action. kube's Recorder folds Events of one object with the same reason and action
/// into a series that keeps the first note, so two drift reverts (or updates) of different fields
/// within minutes would show only the first: their action names the fields (at most 128 characters, the
/// API's limit). Every other Event's action is `Reconcile`: a repeated one is rightly a series.
fn event_action(reason: &str, note: &str) -> String {
    let (verb, what) = match reason {
        "DriftReverted" => ("Revert", note.strip_prefix("reverted hand-made changes to ").unwrap_or(note)),
        "Updated" => ("Update", note.strip_prefix("updated ").unwrap_or(note)),
        _ => return "Reconcile".to_string(),
    };
    format!("{verb} {what}").chars().take(128).collect()
}

async fn publish(ctx: &Context, kc: &KeycloakClient, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        action: event_action(reason, &note),
        note: Some(note),
        secondary: None,
    };
    let reference = kc.object_ref(&());
    match ctx.recorder.get().publish(&ev, &reference).await {
        Ok(()) => ctx.count_write("event"),
        Err(e) => tracing::warn!(error = %e, "could not publish an Event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A KeycloakClient at generation 2 whose status says what an earlier reconcile found.
    fn with_status(status: Value, rotation: bool) -> KeycloakClient {
        serde_json::from_value(json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
            "metadata": {"name": "svc", "namespace": "team-a", "generation": 2},
            "spec": {"clientId": "svc", "realmRef": {"name": "realm"},
                     "secretRotation": {"enabled": rotation, "rotationPeriod": "30d"}},
            "status": status,
        }))
        .expect("a KeycloakClient")
    }

    #[test]
    fn only_a_client_never_created_and_not_retrying_is_created_without_a_lookup() {
        assert!(never_created(&with_status(Value::Null, false)), "no status yet");
        assert!(never_created(&with_status(json!({"phase": "Pending"}), false)), "pending");
        // A try whose end was not recorded (the Ready status write failed) may have created it.
        assert!(!never_created(&with_status(json!({"phase": "Provisioning"}), false)), "a try in progress");
        assert!(!never_created(&with_status(earlier(), false)), "a client recorded");
        for phase in ["Failed", "Degraded"] {
            assert!(!never_created(&with_status(json!({"phase": phase, "reason": "Conflict"}), false)), "{phase}");
        }
        let kc = |kind| ReconcileError::Keycloak(kco_keycloak::Error::new(kind, "POST clients", "x"));
        assert!(create_refused(&kc(ErrorKind::Conflict)), "clientId taken");
        assert!(create_refused(&kc(ErrorKind::NotFound)), "realm missing");
        assert!(create_refused(&ReconcileError::blocked("InvalidSpec", "spec.defaultClientScopes: no scope")));
        for kind in [ErrorKind::Unreachable, ErrorKind::Server, ErrorKind::Throttled] {
            assert!(!create_refused(&kc(kind)), "{kind:?} is retried as it is");
        }
        assert!(!create_refused(&ReconcileError::Internal("bug".into())));
    }

    fn earlier() -> Value {
        json!({
            "phase": "Ready", "reason": "Reconciled", "message": "in sync", "observedGeneration": 1,
            "internalId": "id-1", "realm": "realm", "keycloakInstance": "kc/main", "credentialsSecret": "svc-credentials",
            "endpoints": Endpoints::for_realm("https://kc", "realm"),
            "authorizationGranted": true, "authorizationMessage": "granted", "createdRoles": ["reader"],
            "appliedMappers": ["m"], "lastHealthCheck": "t0", "lastUpdated": "t0", "lastReconcileEventTime": "t0",
            "lastRotation": "2026-01-01T00:00:00Z", "nextRotation": "2026-01-31T00:00:00Z", "regeneratedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "in sync",
                            "lastTransitionTime": "t0"}],
            "remoteSecrets": ["mlflow/svc"],
        })
    }

    #[test]
    fn status_keeps_what_this_reconcile_did_not_learn() {
        let kc = with_status(earlier(), true);
        let prev = kc.status.clone().expect("status");
        let s = StatusFacts::default().status(&kc, Phase::Failed, "RealmNotFound", "no realm".into());
        assert_eq!(
            (s.phase, s.reason.as_deref(), s.message.as_deref()),
            (Some(Phase::Failed), Some("RealmNotFound"), Some("no realm"))
        );
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!((s.client_id.as_deref(), s.public_client), (Some("svc"), Some(false)));
        assert_eq!(s.internal_id, prev.internal_id);
        assert_eq!(s.realm, prev.realm);
        assert_eq!(s.keycloak_instance, prev.keycloak_instance);
        assert_eq!(s.endpoints, prev.endpoints);
        assert_eq!((s.authorization_granted, &s.authorization_message), (Some(true), &prev.authorization_message));
        assert_eq!((&s.created_roles, &s.applied_mappers), (&prev.created_roles, &prev.applied_mappers));
        assert_eq!((&s.last_health_check, &s.last_updated), (&prev.last_health_check, &prev.last_updated));
        assert_eq!(s.last_reconcile_event_time, prev.last_reconcile_event_time);
        assert_eq!((&s.last_rotation, &s.next_rotation), (&prev.last_rotation, &prev.next_rotation));
        assert_eq!(s.regenerated_generation, Some(1));
        assert_eq!((&s.conditions, &s.remote_secrets), (&prev.conditions, &prev.remote_secrets));
        // The managed Secret is named only when this reconcile wrote or checked it.
        assert_eq!(s.credentials_secret, None);
    }

    #[test]
    fn status_says_what_this_reconcile_learned() {
        let kc = with_status(earlier(), true);
        let next = "2026-03-01T02:00:00Z".parse().expect("a timestamp");
        let facts = StatusFacts {
            realm: Some("other".into()),
            internal_id: Some("id-2".into()),
            granted: Some((false, "not granted".into())),
            secret: Some("svc-credentials".into()),
            roles: Some(vec![]),
            next_rotation: Some(next),
            regenerated_generation: Some(Some(2)),
            changed_at: Some(next),
            remote_secrets: Some(vec![]),
            ..Default::default()
        };
        let s = facts.status(&kc, Phase::Ready, "Reconciled", "in sync".into());
        assert_eq!((s.realm.as_deref(), s.internal_id.as_deref()), (Some("other"), Some("id-2")));
        assert_eq!((s.authorization_granted, s.authorization_message.as_deref()), (Some(false), Some("not granted")));
        assert_eq!(s.credentials_secret.as_deref(), Some("svc-credentials"));
        assert_eq!(s.created_roles, Some(vec![]));
        assert_eq!(s.next_rotation.as_deref(), Some("2026-03-01T02:00:00Z"));
        assert_eq!(s.last_reconcile_event_time.as_deref(), Some("2026-03-01T02:00:00Z"));
        assert_eq!(s.regenerated_generation, Some(2));
        assert!(s.remote_secrets.is_empty());
    }

    #[test]
    fn next_rotation_is_cleared_when_rotation_is_off_and_regenerated_generation_only_by_a_decision() {
        let kc = with_status(earlier(), false);
        let next = "2026-03-01T02:00:00Z".parse().expect("a timestamp");
        let facts = StatusFacts { next_rotation: Some(next), ..Default::default() };
        let s = facts.status(&kc, Phase::Ready, "Reconciled", "in sync".into());
        assert_eq!(s.next_rotation, None, "no next rotation while rotation is disabled");
        assert_eq!(s.last_rotation.as_deref(), Some("2026-01-01T00:00:00Z"), "the last one stays");
        // `None`: not decided here, keep; `Some(None)`: decided that no regeneration is recorded.
        assert_eq!(s.regenerated_generation, Some(1));
        let facts = StatusFacts { regenerated_generation: Some(None), ..Default::default() };
        assert_eq!(facts.status(&kc, Phase::Ready, "Reconciled", "in sync".into()).regenerated_generation, None);
    }

    fn applied(created: bool, changed: &[&str]) -> Applied {
        Applied {
            internal_id: "id-1".into(),
            observed: None,
            created,
            wrote: created || !changed.is_empty(),
            changed_fields: changed.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_event_of_an_apply_created_updated_drift_or_none() {
        let generation_2 = with_status(json!({"observedGeneration": 2}), false);
        let generation_1 = with_status(json!({"observedGeneration": 1}), false);
        assert_eq!(
            applied(true, &[]).event(&generation_2, "realm"),
            Some(("Created", "created client svc in realm realm".to_string()))
        );
        assert_eq!(applied(false, &[]).event(&generation_1, "realm"), None, "nothing changed: no Event");
        assert_eq!(
            applied(false, &["rootUrl", "redirectUris"]).event(&generation_1, "realm"),
            Some(("Updated", "updated rootUrl, redirectUris".to_string())),
            "the spec changed since status was written"
        );
        assert_eq!(
            applied(false, &["rootUrl"]).event(&generation_2, "realm"),
            Some(("DriftReverted", "reverted hand-made changes to rootUrl".to_string())),
            "same generation: someone changed Keycloak"
        );
        let fresh = with_status(Value::Null, false);
        assert_eq!(applied(false, &["rootUrl"]).event(&fresh, "realm").map(|e| e.0), Some("Updated"));
    }

    #[test]
    fn transient_errors_leave_the_object_degraded_the_rest_failed() {
        use kco_keycloak::{Error, ErrorKind};
        let keycloak = |kind| ReconcileError::Keycloak(Error::new(kind, "GET client", "x"));
        let kube = |code: u16| {
            let status: kube::core::Status = serde_json::from_value(json!({"code": code})).expect("a Status");
            ReconcileError::Kube(kube::Error::Api(Box::new(status)))
        };
        assert_eq!(error_phase(&ReconcileError::blocked("RealmNotFound", "no realm")), Phase::Failed);
        assert_eq!(error_phase(&ReconcileError::Internal("bug".into())), Phase::Failed);
        assert_eq!(error_phase(&keycloak(ErrorKind::Unreachable)), Phase::Degraded);
        assert_eq!(error_phase(&keycloak(ErrorKind::Throttled)), Phase::Degraded);
        assert_eq!(error_phase(&keycloak(ErrorKind::Forbidden)), Phase::Failed);
        assert_eq!(error_phase(&kube(409)), Phase::Degraded);
        assert_eq!(error_phase(&kube(422)), Phase::Failed);
    }

    #[test]
    fn events_about_different_fields_get_different_actions() {
        let a = event_action("DriftReverted", "reverted hand-made changes to enabled, redirectUris");
        assert_eq!(a, "Revert enabled, redirectUris");
        assert_ne!(a, event_action("DriftReverted", "reverted hand-made changes to serviceAccountRoles.realmRoles"));
        assert_eq!(event_action("Updated", "updated rootUrl"), "Update rootUrl");
        assert_eq!(event_action("SecretRotated", "rotated"), "Reconcile");
        assert_eq!(event_action("DriftReverted", &"€".repeat(300)).chars().count(), 128);
    }
}
