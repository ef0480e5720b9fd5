//! `kco convert -f`: reference manifests (`vriesdemichael.github.io/v1`) rewritten to `kco.dev/v1`,
//! reporting every field changed and why. kco's fields follow the reference's names, so most
//! manifests change only their apiVersion; a field kco's schema does not have is dropped (and named),
//! a field kco requires but the manifest lacks is named with what to add. Other kinds pass through.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Manifest files or directories; `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

/// One change made (or needed), for the report.
pub struct Change {
    pub object: String,
    pub field: String,
    pub why: String,
    /// A change kco could not make itself: the manifest needs a person.
    pub needs_fix: bool,
}

/// Converted documents (as YAML, `---` separated) on stdout, the report on stderr; exit 1 when a
/// manifest still needs a fix or is invalid under kco's rules.
pub fn convert(args: &ConvertArgs) -> anyhow::Result<i32> {
    let mut docs = Vec::new();
    for path in &args.files {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            docs.extend(parse(&text, "-")?);
            continue;
        }
        let mut files = Vec::new();
        super::manifests::collect(path, &mut files)?;
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            docs.extend(parse(&text, &f.display().to_string())?);
        }
    }
    let schemas: BTreeMap<String, Value> = super::schemas()?.into_iter().collect();
    let mut out = String::new();
    let mut changes = Vec::new();
    for (i, mut doc) in docs.into_iter().enumerate() {
        changes.extend(convert_doc(&mut doc, &schemas));
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(&doc)?);
    }
    super::output::emit(&out, None)?;
    for c in &changes {
        let mark = if c.needs_fix { "NEEDS FIX" } else { "changed" };
        eprintln!("{}: {mark} {}: {}", c.object, c.field, c.why);
    }
    Ok(i32::from(changes.iter().any(|c| c.needs_fix)))
}

fn parse(text: &str, source: &str) -> anyhow::Result<Vec<Value>> {
    serde_saphyr::from_multiple(text).map_err(|e| anyhow::anyhow!("{source}: not YAML: {e}"))
}

/// Convert one document in place; returns what changed or still needs a fix.
pub fn convert_doc(doc: &mut Value, schemas: &BTreeMap<String, Value>) -> Vec<Change> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(schema) = schemas.get(&kind.to_lowercase()) else { return Vec::new() };
    let legacy = format!("{}/v1", kco_api::LEGACY_GROUP);
    if doc.get("apiVersion").and_then(Value::as_str) != Some(legacy.as_str()) {
        return Vec::new();
    }
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("(unnamed)");
    let ns = doc.pointer("/metadata/namespace").and_then(Value::as_str).map(|n| format!("{n}/")).unwrap_or_default();
    let object = format!("{kind} {ns}{name}");
    let mut changes = vec![Change {
        object: object.clone(),
        field: "apiVersion".into(),
        why: format!("{legacy} → kco.dev/v1: kco's operator watches its own group (the CLI reads both)"),
        needs_fix: false,
    }];
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("apiVersion".into(), Value::String(format!("{}/v1", kco_api::GROUP)));
    }
    if let (Some(spec), Some(spec_schema)) = (doc.get_mut("spec"), schema.pointer("/properties/spec")) {
        walk(spec, spec_schema, "spec", &object, &mut changes);
    }
    // Status belongs to whoever reconciles; the reference's status means nothing to kco.
    if doc.as_object_mut().and_then(|o| o.remove("status")).is_some() {
        changes.push(Change {
            object: object.clone(),
            field: "status".into(),
            why: "removed: status is written by the operator, not declared".into(),
            needs_fix: false,
        });
    }
    if kind == "KeycloakClient" {
        let spec = doc.get("spec").cloned().unwrap_or_default();
        match serde_path_to_error::deserialize::<_, kco_api::KeycloakClientSpec>(spec) {
            Ok(spec) => changes.extend(kco_engine::validate_client(&spec).into_iter().map(|e| Change {
                object: object.clone(),
                field: "spec".into(),
                why: format!("invalid under kco's rules: {e}"),
                needs_fix: true,
            })),
            Err(e) => changes.push(Change {
                object: object.clone(),
                field: format!("spec.{}", e.path()),
                why: e.inner().to_string(),
                needs_fix: true,
            }),
        }
    }
    changes
}

/// Drop fields `schema` does not have (reporting each), and name required fields that are missing.
fn walk(value: &mut Value, schema: &Value, path: &str, object: &str, changes: &mut Vec<Change>) {
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                // A map (additionalProperties) or free-form object: every key is allowed.
                if let Some(items) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                    for (k, v) in map.iter_mut() {
                        walk(v, items, &format!("{path}.{k}"), object, changes);
                    }
                }
                return;
            };
            let unknown: Vec<String> = map.keys().filter(|k| !props.contains_key(*k)).cloned().collect();
            for k in unknown {
                map.remove(&k);
                changes.push(Change {
                    object: object.to_string(),
                    field: format!("{path}.{k}"),
                    why: "removed: kco has no such field (the operator would ignore it); check nothing relied on it"
                        .into(),
                    needs_fix: false,
                });
            }
            for (k, v) in map.iter_mut() {
                if let Some(s) = props.get(k) {
                    walk(v, s, &format!("{path}.{k}"), object, changes);
                }
            }
            for r in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    let what = props.get(r).and_then(|p| p.get("description")).and_then(Value::as_str).unwrap_or("");
                    changes.push(Change {
                        object: object.to_string(),
                        field: format!("{path}.{r}"),
                        why: format!("required by kco and missing; add it ({what})"),
                        needs_fix: true,
                    });
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(v, s, &format!("{path}[{i}]"), object, changes);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> BTreeMap<String, Value> {
        crate::cli::schemas().unwrap_or_default().into_iter().collect()
    }

    #[test]
    fn a_reference_client_changes_its_api_version_and_drops_unknown_fields_by_name() {
        let mut doc = serde_json::json!({
            "apiVersion": "vriesdemichael.github.io/v1", "kind": "KeycloakClient",
            "metadata": {"name": "spa", "namespace": "team-a"},
            "spec": {"clientId": "spa", "realmRef": {"name": "team-a"}, "publicClient": true,
                     "redirectUris": ["https://spa.example.com/*"], "someReferenceOnlyField": 1,
                     "settings": {"pkceCodeChallengeMethod": "S256", "legacyKnob": true}},
            "status": {"phase": "Ready"}
        });
        let changes = convert_doc(&mut doc, &schemas());
        assert_eq!(doc["apiVersion"], "kco.dev/v1");
        assert!(doc.get("status").is_none());
        assert!(doc["spec"].get("someReferenceOnlyField").is_none());
        assert!(doc["spec"]["settings"].get("legacyKnob").is_none());
        assert_eq!(doc["spec"]["settings"]["pkceCodeChallengeMethod"], "S256");
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["apiVersion", "spec.someReferenceOnlyField", "spec.settings.legacyKnob", "status"]);
        assert!(changes.iter().all(|c| !c.needs_fix));
    }

    #[test]
    fn kco_manifests_and_other_kinds_pass_untouched() {
        let mut doc = serde_json::json!({"apiVersion": "kco.dev/v1", "kind": "KeycloakClient", "spec": {"x": 1}});
        let before = doc.clone();
        assert!(convert_doc(&mut doc, &schemas()).is_empty());
        assert_eq!(doc, before);
        let mut cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert!(convert_doc(&mut cm, &schemas()).is_empty());
    }
}
