//! The CLI: `validate`, `crd`, `schema` need nothing; `apply`, `diff`, `delete` and `token` talk to
//! Keycloak (and Kubernetes only for Secrets).

pub mod apply;
pub mod convert;
pub mod keycloak;
pub mod manifests;
pub mod output;
pub mod token;

use std::io::Write;

/// `kco crd`: every CRD as one multi-document YAML stream (what is committed under deploy/crds/).
pub fn print_crds() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, crd) in kco_api::crds().iter().enumerate() {
        if i > 0 {
            writeln!(out, "---")?;
        }
        write!(out, "{}", serde_saphyr::to_string(crd)?)?;
    }
    Ok(())
}

/// `kco validate FILE|DIR…`: check KeycloakClient manifests with the same rules the operator applies
/// (the CRD's schema rules run in the apiserver; these are the rest). Other kinds are skipped.
/// Both `kco.dev/v1` and the reference's `vriesdemichael.github.io/v1` are accepted.
/// Returns whether every manifest passed.
pub fn validate_files(files: &[std::path::PathBuf]) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut out = std::io::stdout().lock();
    let mut expanded = Vec::new();
    for file in files {
        manifests::collect(file, &mut expanded)?;
    }
    for file in &expanded {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| anyhow::anyhow!("{}: not YAML: {e}", file.display()))?;
        for doc in docs.iter().filter(|d| d.get("kind").and_then(|k| k.as_str()) == Some("KeycloakClient")) {
            let name = doc.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("(unnamed)");
            // A panic in the rules is kco's bug: this manifest is reported, the rest are still checked.
            let errors = std::panic::catch_unwind(|| validate_manifest(doc)).unwrap_or_else(|p| {
                vec![format!(
                    "kco hit an internal error checking this manifest ({}); this is a bug in kco, please report it",
                    crate::panic_message(p.as_ref())
                )]
            });
            if errors.is_empty() {
                writeln!(out, "{}: KeycloakClient {name}: valid", file.display())?;
            } else {
                ok = false;
                for e in errors {
                    writeln!(out, "{}: KeycloakClient {name}: {e}", file.display())?;
                }
            }
        }
    }
    Ok(ok)
}

fn validate_manifest(doc: &serde_json::Value) -> Vec<String> {
    let api_version = doc.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default();
    let known = [format!("{}/v1", kco_api::GROUP), format!("{}/v1", kco_api::LEGACY_GROUP)];
    if !known.iter().any(|k| k == api_version) {
        return vec![format!("apiVersion {api_version:?} is not one kco serves; use kco.dev/v1")];
    }
    let spec = doc.get("spec").cloned().unwrap_or_default();
    match serde_path_to_error::deserialize::<_, kco_api::KeycloakClientSpec>(spec) {
        Ok(spec) => kco_engine::validate_client(&spec).iter().map(ToString::to_string).collect(),
        Err(e) => vec![format!("spec.{}: {}", e.path(), e.inner())],
    }
}

/// `kco schema`: JSON Schemas of the resources, taken from the CRDs' openAPIV3Schema, so an editor's
/// `# yaml-language-server: $schema=./keycloakclient.json` line can point at a local file. The
/// `apiVersion` accepts the reference's group too, as kco does.
pub fn schemas() -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let mut out = Vec::new();
    for crd in kco_api::crds() {
        let kind = crd.spec.names.kind.clone();
        let Some(schema) =
            crd.spec.versions.first().and_then(|v| v.schema.as_ref()).and_then(|s| s.open_api_v3_schema.as_ref())
        else {
            anyhow::bail!("CRD {kind} has no openAPIV3Schema");
        };
        let mut schema = serde_json::to_value(schema)?;
        if let Some(obj) = schema.as_object_mut() {
            obj.insert("$schema".into(), "http://json-schema.org/draft-07/schema#".into());
            obj.insert("title".into(), kind.clone().into());
            if let Some(props) = obj.get_mut("properties").and_then(serde_json::Value::as_object_mut) {
                let versions = [format!("{}/v1", kco_api::GROUP), format!("{}/v1", kco_api::LEGACY_GROUP)];
                props.insert("apiVersion".into(), serde_json::json!({"type": "string", "enum": versions}));
                props.insert("kind".into(), serde_json::json!({"type": "string", "enum": [kind]}));
            }
        }
        out.push((kind.to_lowercase(), schema));
    }
    Ok(out)
}

/// Write `<kind>.json` for every resource into `dir`, or print the one named `kind` to stdout.
pub fn print_schemas(dir: Option<&std::path::Path>, kind: Option<&str>) -> anyhow::Result<()> {
    let all = schemas()?;
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("--dir {}: {e}", dir.display()))?;
        for (name, schema) in &all {
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, serde_json::to_string_pretty(schema)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            println!("{}", path.display());
        }
        return Ok(());
    }
    let want = kind.unwrap_or("keycloakclient").to_lowercase();
    let Some((_, schema)) = all.iter().find(|(n, _)| *n == want) else {
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        anyhow::bail!("no resource {want:?}; kinds: {}", names.join(", "));
    };
    println!("{}", serde_json::to_string_pretty(schema)?);
    Ok(())
}
