//! Status: built from what the reconcile learned, written with one JSON merge patch, and only when
//! something other than the timestamps changed.
//!
//! kco owns the whole status of its objects, so each write replaces it. A merge patch keeps what it
//! leaves out, so [`status_patch`] names every property the CRD schema declares, with null for the
//! ones the new status lacks. A merge patch rather than server-side apply: the apiserver needs no
//! managed-fields bookkeeping for it, and at 1,000 creates at once the apiserver's CPU sets the pace
//! (`dev/bench provision`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use k8s_openapi::jiff::Timestamp;
use kco_api::{Condition, KeycloakClient, KeycloakClientStatus, Phase};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::Context;

/// Write `status` unless it equals the current one (ignoring lastUpdated). Returns the
/// resourceVersion the write left (empty when the answer had none), `None` when it did not write.
pub async fn write_status(
    ctx: &Context,
    kc: &KeycloakClient,
    status: KeycloakClientStatus,
) -> Result<Option<String>, kube::Error> {
    let current = kc.status.clone().unwrap_or_default();
    let Some(status) = status_to_write(&current, status, &Timestamp::now().to_string()) else {
        return Ok(None);
    };
    apply_status_if_changed(ctx, kc, None, &status).await
}

/// The status to write at time `now`, with its Ready condition, or `None` when it says nothing
/// `current` does not: the timestamps (lastUpdated, lastHealthCheck, and the condition's transition
/// time while the Ready status stays the same) never make a write on their own.
fn status_to_write(
    current: &KeycloakClientStatus,
    mut status: KeycloakClientStatus,
    now: &str,
) -> Option<KeycloakClientStatus> {
    // Keep the Ready condition's transition time unless its status flips.
    let ready = status.phase == Some(Phase::Ready);
    let cond_status = if ready { "True" } else { "False" };
    let previous = current.conditions.iter().find(|c| c.type_ == "Ready");
    let transition = match previous {
        Some(p) if p.status == cond_status => p.last_transition_time.clone(),
        _ => now.to_string(),
    };
    status.conditions = vec![Condition {
        type_: "Ready".into(),
        status: cond_status.into(),
        reason: status.reason.clone().unwrap_or_else(|| if ready { "Reconciled".into() } else { "NotReady".into() }),
        message: status.message.clone().unwrap_or_default(),
        observed_generation: status.observed_generation,
        last_transition_time: transition,
    }];
    status.last_updated = current.last_updated.clone();
    status.last_health_check = current.last_health_check.clone();
    if status == *current {
        return None;
    }
    status.last_updated = Some(now.to_string());
    status.last_health_check = Some(now.to_string());
    Some(status)
}

/// Write `status` on `obj` (a kco resource) in place of its status, unless it equals `current`.
/// Returns the resourceVersion the write left (empty when the answer had none), `None` when it did
/// not write.
pub async fn apply_status_if_changed<K, S>(
    ctx: &Context,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<Option<String>, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: PartialEq + serde::Serialize,
{
    if current == Some(status) {
        return Ok(None);
    }
    let api: Api<K> = Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = status_patch(&K::kind(&()), status)?;
    let mut written = api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    ctx.count_write("status");
    // The version the write left stands for the object as this reconcile saw it only when nothing
    // that starts a reconcile changed meanwhile (a label or annotation set while it ran).
    super::guarded::compact(written.meta_mut());
    let same = super::reconcile_worthy(&written) == super::reconcile_worthy(obj);
    Ok(Some(if same { written.resource_version().unwrap_or_default() } else { String::new() }))
}

/// The properties of an object in a CRD schema, each with its own (empty for a scalar or a list).
#[derive(Debug, Default, PartialEq)]
struct Shape(BTreeMap<String, Shape>);

impl Shape {
    fn of(schema: &JSONSchemaProps) -> Shape {
        Shape(schema.properties.iter().flatten().map(|(k, v)| (k.clone(), Shape::of(v))).collect())
    }
}

/// The status shape of each kind kco serves, from the CRDs it generates.
static STATUS_SHAPES: LazyLock<BTreeMap<String, Shape>> = LazyLock::new(|| {
    kco_api::crds()
        .iter()
        .filter_map(|crd| {
            let schema = crd.spec.versions.first()?.schema.as_ref()?.open_api_v3_schema.as_ref()?;
            let status = schema.properties.as_ref()?.get("status")?;
            Some((crd.spec.names.kind.clone(), Shape::of(status)))
        })
        .collect()
});

/// The merge patch that makes `status` the whole status of an object of `kind`.
fn status_patch(kind: &str, status: &impl serde::Serialize) -> Result<Value, kube::Error> {
    let mut value = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    if let Some(shape) = STATUS_SHAPES.get(kind) {
        null_absent(shape, &mut value);
    }
    Ok(json!({ "status": value }))
}

/// Add null for each property of `shape` that object `value` lacks, at every depth: in a merge patch
/// null removes the field, so nothing from an earlier status survives that the new one leaves out.
/// (A list is replaced whole by a merge patch; a map's keys would be merged, and the CRDs' statuses
/// have none: see the test `every_status_property_is_a_scalar_a_list_or_an_object_with_properties`.)
fn null_absent(shape: &Shape, value: &mut Value) {
    let Value::Object(map) = value else { return };
    for (name, inner) in &shape.0 {
        match map.get_mut(name) {
            Some(v) => null_absent(inner, v),
            None => {
                map.insert(name.clone(), Value::Null);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(message: &str) -> KeycloakClientStatus {
        KeycloakClientStatus {
            phase: Some(Phase::Ready),
            reason: Some("Reconciled".into()),
            message: Some(message.into()),
            observed_generation: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn a_status_patch_names_every_property_and_nulls_the_absent_ones_at_every_depth() {
        let status = KeycloakClientStatus {
            endpoints: Some(kco_api::Endpoints { issuer: "https://kc/realms/r".into(), ..Default::default() }),
            ..ready("in sync")
        };
        let patch = status_patch("KeycloakClient", &status).expect("serializes");
        let s = &patch["status"];
        assert_eq!((s["phase"].as_str(), s["observedGeneration"].as_i64()), (Some("Ready"), Some(1)));
        for gone in ["internalId", "credentialsSecret", "lastRotation", "conditions", "remoteSecrets", "createdRoles"] {
            assert_eq!(s.get(gone), Some(&Value::Null), "{gone}: {patch}");
        }
        assert_eq!(s["endpoints"]["issuer"], "https://kc/realms/r");
        // Nothing but the status, and every status property the schema declares is named.
        assert_eq!(patch.as_object().map(|o| o.len()), Some(1));
        let shape = STATUS_SHAPES.get("KeycloakClient").expect("the KeycloakClient status shape");
        assert!(shape.0.len() >= 20, "{shape:?}");
        for name in shape.0.keys() {
            assert!(s.get(name).is_some(), "{name} missing from {patch}");
        }
        // A kind kco does not know: the status as it is, nothing added.
        let other = status_patch("Other", &ready("x")).expect("serializes");
        assert_eq!(other["status"].get("internalId"), None);
    }

    #[test]
    fn nested_objects_get_their_absent_properties_nulled_and_scalars_are_left_alone() {
        let leaf = || Shape::default();
        let shape = Shape(BTreeMap::from([
            ("a".to_string(), leaf()),
            ("o".to_string(), Shape(BTreeMap::from([("x".to_string(), leaf()), ("y".to_string(), leaf())]))),
        ]));
        let mut v = json!({"o": {"x": 1}, "extra": true});
        null_absent(&shape, &mut v);
        assert_eq!(v, json!({"a": null, "o": {"x": 1, "y": null}, "extra": true}));
        let mut scalar = json!("s");
        null_absent(&shape, &mut scalar);
        assert_eq!(scalar, json!("s"));
    }

    /// A merge patch merges a map's keys instead of replacing the map: with a map in a status an old
    /// key would survive. None of kco's statuses has one; a new one must be handled before it lands.
    #[test]
    fn every_status_property_is_a_scalar_a_list_or_an_object_with_properties() {
        fn check(path: &str, schema: &JSONSchemaProps) {
            assert!(schema.additional_properties.is_none(), "{path} is a map");
            assert_ne!(schema.x_kubernetes_preserve_unknown_fields, Some(true), "{path} keeps unknown fields");
            for (k, v) in schema.properties.iter().flatten() {
                check(&format!("{path}.{k}"), v);
            }
        }
        let mut kinds = 0;
        for crd in kco_api::crds() {
            let schema = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
            if let Some(status) = schema.and_then(|s| s.properties.as_ref()).and_then(|p| p.get("status")) {
                check(&format!("{}.status", crd.spec.names.kind), status);
                kinds += 1;
                assert!(STATUS_SHAPES.contains_key(&crd.spec.names.kind));
            }
        }
        assert!(kinds >= 3, "statuses of KeycloakInstance, KeycloakRealm, KeycloakClient");
    }

    #[test]
    fn the_same_status_again_is_not_written_whatever_the_time() {
        let written = status_to_write(&KeycloakClientStatus::default(), ready("in sync"), "t1").expect("first write");
        assert_eq!(written.last_updated.as_deref(), Some("t1"));
        assert_eq!(written.last_health_check.as_deref(), Some("t1"));
        let [c] = written.conditions.as_slice() else { panic!("one condition: {:?}", written.conditions) };
        assert_eq!((c.type_.as_str(), c.status.as_str(), c.reason.as_str()), ("Ready", "True", "Reconciled"));
        assert_eq!((c.message.as_str(), c.last_transition_time.as_str()), ("in sync", "t1"));
        assert_eq!(status_to_write(&written, ready("in sync"), "t2"), None);
    }

    #[test]
    fn a_change_is_written_and_the_transition_time_moves_only_when_ready_flips() {
        let first = status_to_write(&KeycloakClientStatus::default(), ready("in sync"), "t1").expect("first write");
        // Still Ready, another message: written, the condition keeps its transition time.
        let second = status_to_write(&first, ready("in sync again"), "t2").expect("message changed");
        assert_eq!(second.last_updated.as_deref(), Some("t2"));
        assert_eq!(second.conditions[0].last_transition_time, "t1");
        assert_eq!(second.conditions[0].message, "in sync again");
        // Failed: the condition flips to False with the status's reason, at this time.
        let failed = KeycloakClientStatus {
            phase: Some(Phase::Failed),
            reason: Some("RealmNotFound".into()),
            ..ready("no realm")
        };
        let third = status_to_write(&second, failed, "t3").expect("phase changed");
        let c = &third.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.last_transition_time.as_str()),
            ("False", "RealmNotFound", "t3")
        );
        // Not ready without a reason: NotReady.
        let degraded = KeycloakClientStatus { phase: Some(Phase::Degraded), reason: None, ..ready("x") };
        let fourth = status_to_write(&third, degraded, "t4").expect("changed");
        assert_eq!(
            (fourth.conditions[0].reason.as_str(), fourth.conditions[0].last_transition_time.as_str()),
            ("NotReady", "t3")
        );
    }
}
