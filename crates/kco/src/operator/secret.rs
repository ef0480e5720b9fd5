//! The managed Secret: written with server-side apply only when its content differs, never taken
//! from someone else.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kco_api::{FIELD_MANAGER, KeycloakClient, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use kco_engine::secret::SecretData;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::{Context, ReconcileError};

/// A Secret kco writes: its name and the labels and annotations the spec asks for.
pub struct OutputSecret<'a> {
    pub name: &'a str,
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
    let ns = kc.namespace().unwrap_or_default();
    let name = out.name.to_string();
    let uid = kc.uid().unwrap_or_default();
    let mut labels = BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())]);
    labels.extend(out.labels.clone().unwrap_or_default());
    let annotations = out.annotations.clone().unwrap_or_default();
    let bytes: BTreeMap<String, ByteString> =
        data.0.iter().map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec()))).collect();
    // Unchanged since kco wrote (or last checked) it, with the same content wanted: no read.
    let key = format!("{ns}/{name}");
    let want = content_hash(&uid, &bytes, &labels, &annotations);
    if ctx.in_scope(&ns) {
        let seen = ctx.stores.secrets.get(&ObjectRef::new(&name).within(&ns));
        let rv = seen.and_then(|m| m.metadata.resource_version.clone());
        if let Some(rv) = rv
            && ctx.written_secrets.lock().is_ok_and(|w| w.get(&key) == Some(&(rv, want)))
        {
            return Ok(false);
        }
    }
    let remember = |rv: Option<String>| {
        if let (Some(rv), Ok(mut w)) = (rv, ctx.written_secrets.lock()) {
            w.insert(key.clone(), (rv, want));
        }
    };
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), &ns);
    let existing = api.get_opt(&name).await?;
    if let Some(s) = &existing {
        let ours = s.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true));
        if !ours {
            return Err(ReconcileError::blocked(
                "SecretConflict",
                format!(
                    "Secret {ns}/{name} exists and is not managed by this KeycloakClient; kco will not overwrite it. \
                     Set {} to another name, or delete that Secret",
                    out.field
                ),
            ));
        }
    }
    if let Some(s) = &existing {
        // Only kco's keys count: server-side apply leaves keys of other field managers alone, so a
        // full comparison would write on every reconcile once anyone added a key.
        let same_data = bytes.iter().all(|(k, v)| s.data.as_ref().and_then(|d| d.get(k)) == Some(v));
        let has = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
            want.iter().all(|(k, v)| have.get(k) == Some(v))
        };
        if same_data && has(s.labels(), &labels) && has(s.annotations(), &annotations) {
            remember(s.metadata.resource_version.clone());
            return Ok(false);
        }
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: kc.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(bytes),
        ..Default::default()
    };
    let written = api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret)).await?;
    ctx.count_write("secret");
    remember(written.metadata.resource_version);
    Ok(true)
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
