//! CLI subcommands that need no cluster.

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

/// `kco validate FILE…`: check KeycloakClient manifests with the same rules the operator applies
/// (the CRD's schema rules run in the apiserver; these are the rest). Other kinds are skipped.
/// Both `kco.dev/v1` and the reference's `vriesdemichael.github.io/v1` are accepted.
/// Returns whether every manifest passed.
pub fn validate_files(files: &[std::path::PathBuf]) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut out = std::io::stdout().lock();
    for file in files {
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
