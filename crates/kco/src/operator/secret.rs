//! The managed Secret: written with server-side apply only when its content differs, never taken
//! from someone else.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kco_api::{FIELD_MANAGER, KeycloakClient, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use kco_engine::secret::SecretData;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use super::{Context, ReconcileError};

/// Make the managed Secret hold `data`. Returns whether a write happened.
pub async fn ensure_secret(
    ctx: &Context,
    kc: &KeycloakClient,
    existing: Option<&Secret>,
    data: &SecretData,
) -> Result<bool, ReconcileError> {
    let ns = kc.namespace().unwrap_or_default();
    let name = kc.secret_name();
    let uid = kc.uid().unwrap_or_default();
    if let Some(s) = existing {
        let ours = s.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true));
        if !ours {
            return Err(ReconcileError::blocked(
                "SecretConflict",
                format!(
                    "Secret {ns}/{name} exists and is not managed by this KeycloakClient; kco will not overwrite it. \
                     Set spec.secretName to another name, or delete that Secret"
                ),
            ));
        }
    }
    let mut labels = BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())]);
    let mut annotations = BTreeMap::new();
    if let Some(m) = &kc.spec.secret_metadata {
        labels.extend(m.labels.clone().unwrap_or_default());
        annotations.extend(m.annotations.clone().unwrap_or_default());
    }
    let bytes: BTreeMap<String, ByteString> =
        data.0.iter().map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec()))).collect();
    if let Some(s) = existing {
        let same_data = s.data.as_ref() == Some(&bytes);
        let has = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
            want.iter().all(|(k, v)| have.get(k) == Some(v))
        };
        if same_data && has(s.labels(), &labels) && has(s.annotations(), &annotations) {
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
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), &ns);
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret)).await?;
    ctx.count_write("secret");
    Ok(true)
}
