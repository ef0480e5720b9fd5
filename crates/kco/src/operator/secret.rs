//! The managed Secret: written with server-side apply only when its content differs, never taken
//! from someone else. Secrets in other namespaces are written only with the receiving namespace's
//! consent (a KeycloakCredentialsGrant there named after the sender's namespace); they carry labels
//! instead of an owner reference, and are deleted by key from status and spec.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kco_api::{
    FIELD_MANAGER, KeycloakClient, KeycloakCredentialsGrant, MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_ANNOTATION,
    OWNER_UID_LABEL,
};
use kco_engine::secret::SecretData;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::{Context, ReconcileError};

/// A Secret kco writes: its name and the labels and annotations the spec asks for.
pub struct OutputSecret<'a> {
    pub name: &'a str,
    /// Its namespace: the KeycloakClient's own, or another that consented.
    pub namespace: &'a str,
    /// The spec field that names it, for the message when the name is taken.
    pub field: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Make Secret `out` hold `data`, owned by `kc`. Reads it first and writes only when something
/// differs; refuses to touch a Secret this KeycloakClient does not own. Returns whether it wrote.
pub async fn ensure_secret(
    ctx: &Context,
    kc: &KeycloakClient,
    out: &OutputSecret<'_>,
    data: &SecretData,
) -> Result<bool, ReconcileError> {
    let wanted = Wanted::new(kc, out, data);
    let (ns, name) = (out.namespace, out.name);
    // Unchanged since kco wrote (or last checked) it, with the same content wanted: no read.
    let key = format!("{ns}/{name}");
    let want = content_hash(&wanted.uid, &wanted.data, &wanted.labels, &wanted.annotations);
    if unchanged_since_written(ctx, ns, name, &key, want) {
        return Ok(false);
    }
    let remember = |rv: Option<String>| {
        if let (Some(rv), Ok(mut w)) = (rv, ctx.written_secrets.lock()) {
            w.insert(key.clone(), (rv, want));
        }
    };
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), ns);
    let existing = api.get_opt(name).await?;
    if let Some(s) = &existing {
        if !owned_by(s, &wanted.uid, wanted.remote) {
            return Err(ReconcileError::blocked(
                "SecretConflict",
                format!(
                    "Secret {ns}/{name} exists and is not managed by this KeycloakClient; kco will not overwrite it. \
                     Set {} to another name, or delete that Secret",
                    out.field
                ),
            ));
        }
        if wanted.held_by(s) {
            remember(s.metadata.resource_version.clone());
            return Ok(false);
        }
    }
    let secret = wanted.into_secret(kc, ns, name);
    // The watch may deliver this write before its answer arrives: while it is in flight, its events
    // are kco's own echo (a hand edit in those milliseconds is caught by the next resync).
    let in_flight = ctx.secret_write(&key);
    let written = api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret)).await?;
    remember(written.metadata.resource_version);
    drop(in_flight);
    ctx.count_write("secret");
    Ok(true)
}

/// What kco wants in one managed Secret.
struct Wanted {
    uid: String,
    /// In another namespace than the KeycloakClient's (no owner reference; an owner label instead).
    remote: bool,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    data: BTreeMap<String, ByteString>,
}

impl Wanted {
    fn new(kc: &KeycloakClient, out: &OutputSecret<'_>, data: &SecretData) -> Self {
        let own_ns = kc.namespace().unwrap_or_default();
        let remote = out.namespace != own_ns;
        let uid = kc.uid().unwrap_or_default();
        let mut labels = BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())]);
        labels.extend(out.labels.clone().unwrap_or_default());
        let mut annotations = out.annotations.clone().unwrap_or_default();
        if remote {
            labels.insert(OWNER_UID_LABEL.into(), uid.clone());
            annotations.insert(OWNER_ANNOTATION.into(), format!("{own_ns}/{}", kc.name_any()));
        }
        let data = data.0.iter().map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec()))).collect();
        Self { uid, remote, labels, annotations, data }
    }

    /// Whether `s` already holds it. Only kco's keys count: server-side apply leaves keys of other
    /// field managers alone, so a full comparison would write on every reconcile once anyone added one.
    fn held_by(&self, s: &Secret) -> bool {
        let same_data = self.data.iter().all(|(k, v)| s.data.as_ref().and_then(|d| d.get(k)) == Some(v));
        let has = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
            want.iter().all(|(k, v)| have.get(k) == Some(v))
        };
        same_data && has(s.labels(), &self.labels) && has(s.annotations(), &self.annotations)
    }

    fn into_secret(self, kc: &KeycloakClient, ns: &str, name: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                labels: Some(self.labels),
                annotations: (!self.annotations.is_empty()).then_some(self.annotations),
                // An owner reference cannot cross namespaces: a remote Secret is found by its label.
                owner_references: if self.remote { None } else { kc.controller_owner_ref(&()).map(|o| vec![o]) },
                ..Default::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(self.data),
            ..Default::default()
        }
    }
}

/// Whether Secret `ns/name` is, by the Secret cache's resourceVersion, still what kco wrote (or last
/// checked) with content hash `want`: then it needs neither a read nor a write.
fn unchanged_since_written(ctx: &Context, ns: &str, name: &str, key: &str, want: u64) -> bool {
    if !ctx.in_scope(ns) {
        return false;
    }
    let seen = ctx.stores.secrets.get(&ObjectRef::new(name).within(ns));
    let Some(rv) = seen.and_then(|m| m.metadata.resource_version.clone()) else {
        return false;
    };
    ctx.written_secrets.lock().is_ok_and(|w| w.get(key) == Some(&(rv, want)))
}

/// Hash of what kco wants in a managed Secret (owner, data, labels, annotations).
fn content_hash(
    owner_uid: &str,
    data: &BTreeMap<String, ByteString>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    owner_uid.hash(&mut h);
    for (k, v) in data {
        (k, &v.0).hash(&mut h);
    }
    (labels, annotations).hash(&mut h);
    h.finish()
}

/// Whether Secret `s` is this KeycloakClient's (uid `uid`): by controller owner reference in its own
/// namespace, by the owner-uid label in another.
fn owned_by(s: &Secret, uid: &str, remote: bool) -> bool {
    if remote {
        s.labels().get(OWNER_UID_LABEL).is_some_and(|v| v == uid)
    } else {
        s.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true))
    }
}

/// `None` when namespace `receiver` accepts credentials from `kc`, else the reason it does not
/// (naming the grant it needs). One read, by key.
pub async fn consent(ctx: &Context, kc: &KeycloakClient, receiver: &str) -> Result<Option<String>, ReconcileError> {
    let sender = kc.namespace().unwrap_or_default();
    let name = kc.name_any();
    let api: Api<KeycloakCredentialsGrant> = Api::namespaced(ctx.kube.clone(), receiver);
    let found = match api.get_opt(&sender).await {
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Ok(Some(format!(
                "kco may not read KeycloakCredentialsGrants in namespace {receiver} (its RBAC does not reach that \
                 namespace; install kco cluster-wide, or give it a Role there to get keycloakcredentialsgrants and \
                 write secrets)"
            )));
        }
        other => other?,
    };
    Ok(match found {
        Some(g) if g.spec.accepts(&name) => None,
        Some(_) => Some(format!(
            "KeycloakCredentialsGrant {receiver}/{sender} does not list KeycloakClient {name} in spec.clients; \
             someone who owns namespace {receiver} must add it there"
        )),
        None => Some(format!(
            "namespace {receiver} has not accepted credentials from namespace {sender}: someone who owns {receiver} \
             must create a KeycloakCredentialsGrant named {sender} in namespace {receiver} (spec.clients: [{name}], or \
             spec: {{}} for every KeycloakClient of {sender})"
        )),
    })
}

/// Delete the Secrets `keys` (`namespace/name`) in other namespaces that this KeycloakClient wrote
/// (by the owner-uid label; anything else is left alone). Returns the ones deleted.
pub async fn delete_remote_secrets(
    ctx: &Context,
    kc: &KeycloakClient,
    keys: &[String],
) -> Result<Vec<String>, ReconcileError> {
    let uid = kc.uid().unwrap_or_default();
    let mut deleted = Vec::new();
    for key in keys {
        let Some((ns, name)) = key.split_once('/') else { continue };
        let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), ns);
        let s = match api.get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            // Out of kco's reach: it could not have written there either.
            Err(kube::Error::Api(e)) if e.code == 403 => {
                tracing::warn!(secret = %key, "kco may not read Secrets there; leaving it");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if !owned_by(&s, &uid, true) {
            continue;
        }
        match api.delete(name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
        ctx.count_write("secret");
        deleted.push(key.clone());
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kc() -> KeycloakClient {
        serde_json::from_value(json!({
            "apiVersion": "kco.dev/v1", "kind": "KeycloakClient",
            "metadata": {"name": "svc", "namespace": "team-a", "uid": "u-1"},
            "spec": {"clientId": "svc", "realmRef": {"name": "realm"}}
        }))
        .unwrap()
    }

    fn out(ns: &str) -> OutputSecret<'_> {
        OutputSecret {
            name: "svc-credentials",
            namespace: ns,
            field: "spec.secretName".into(),
            labels: None,
            annotations: None,
        }
    }

    fn data() -> SecretData {
        SecretData(BTreeMap::from([("client-secret".to_string(), "s3cr3t".to_string())]))
    }

    #[test]
    fn a_secret_holding_kcos_keys_needs_no_write_whatever_else_it_holds() {
        let wanted = Wanted::new(&kc(), &out("team-a"), &data());
        let mut s = wanted_secret();
        assert!(wanted.held_by(&s));
        // Someone else's key beside kco's: still held (server-side apply leaves it alone).
        s.data.get_or_insert_default().insert("extra".into(), ByteString(b"x".to_vec()));
        assert!(wanted.held_by(&s));
        // kco's value changed by hand: not held.
        s.data.get_or_insert_default().insert("client-secret".into(), ByteString(b"other".to_vec()));
        assert!(!wanted.held_by(&s));
    }

    fn wanted_secret() -> Secret {
        Wanted::new(&kc(), &out("team-a"), &data()).into_secret(&kc(), "team-a", "svc-credentials")
    }

    #[test]
    fn a_local_secret_is_owned_by_reference_a_remote_one_by_label() {
        let local = Wanted::new(&kc(), &out("team-a"), &data());
        assert!(!local.remote);
        let s = local.into_secret(&kc(), "team-a", "svc-credentials");
        assert!(owned_by(&s, "u-1", false));
        assert!(!owned_by(&s, "u-2", false));
        let remote = Wanted::new(&kc(), &out("mlflow"), &data());
        assert!(remote.remote);
        assert_eq!(remote.labels.get(OWNER_UID_LABEL).map(String::as_str), Some("u-1"));
        let s = remote.into_secret(&kc(), "mlflow", "svc-credentials");
        assert!(s.metadata.owner_references.is_none(), "no owner reference across namespaces");
        assert!(owned_by(&s, "u-1", true));
    }

    #[test]
    fn the_content_hash_changes_with_owner_data_labels_and_annotations() {
        let w = Wanted::new(&kc(), &out("team-a"), &data());
        let base = content_hash(&w.uid, &w.data, &w.labels, &w.annotations);
        assert_eq!(base, content_hash(&w.uid, &w.data, &w.labels, &w.annotations));
        assert_ne!(base, content_hash("u-2", &w.data, &w.labels, &w.annotations));
        let mut labels = w.labels.clone();
        labels.insert("team".into(), "a".into());
        assert_ne!(base, content_hash(&w.uid, &w.data, &labels, &w.annotations));
        let mut other = w.data.clone();
        other.insert("client-id".into(), ByteString(b"svc".to_vec()));
        assert_ne!(base, content_hash(&w.uid, &other, &w.labels, &w.annotations));
    }
}
