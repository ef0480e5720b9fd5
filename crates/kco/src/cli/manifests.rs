//! Reading `-f FILE|DIR|-`: every KeycloakClient and KeycloakRealm manifest, of kco's group or the
//! reference's (`vriesdemichael.github.io/v1`, unchanged). Other kinds are skipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use kco_api::KeycloakClientSpec;
use serde_json::Value;

/// One KeycloakClient manifest, parsed; `spec` is the error to report when it does not parse.
pub struct ClientManifest {
    /// Where it came from (`FILE` or `-`), for messages.
    pub source: String,
    pub name: String,
    /// `metadata.namespace`, else the `--namespace` default.
    pub namespace: String,
    pub spec: Result<KeycloakClientSpec, String>,
    pub adopt: bool,
}

impl ClientManifest {
    /// `KeycloakClient NS/NAME`, as every message names it.
    pub fn key(&self) -> String {
        format!("KeycloakClient {}/{}", self.namespace, self.name)
    }
}

/// A KeycloakRealm manifest: only what the CLI uses of it.
#[derive(Clone, Debug)]
pub struct RealmManifest {
    pub name: String,
    pub namespace: String,
    pub spec: kco_api::KeycloakRealmSpec,
}

#[derive(Default)]
pub struct Manifests {
    pub clients: Vec<ClientManifest>,
    pub realms: Vec<RealmManifest>,
}

/// Read every file named (directories: their `.yaml`, `.yml` and `.json` files, recursively, in name
/// order; `-`: standard input).
pub fn load(paths: &[PathBuf], default_ns: &str) -> anyhow::Result<Manifests> {
    let mut out = Manifests::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            parse_into(&mut out, "-", &text, default_ns)?;
            continue;
        }
        let mut files = Vec::new();
        collect(path, &mut files)?;
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
            parse_into(&mut out, &file.display().to_string(), &text, default_ns)?;
        }
    }
    Ok(out)
}

/// `path` itself, or a directory's manifest files (recursively, in name order).
pub fn collect(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let manifest = entry.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if entry.is_dir() || manifest {
            collect(&entry, files)?;
        }
    }
    Ok(())
}

fn parse_into(out: &mut Manifests, source: &str, text: &str, default_ns: &str) -> anyhow::Result<()> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| anyhow::anyhow!("{source}: not YAML: {e}"))?;
    for doc in docs {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        let str_at = |p: &str| doc.pointer(p).and_then(Value::as_str).map(str::to_string);
        let name = str_at("/metadata/name").unwrap_or_else(|| "(unnamed)".to_string());
        let namespace = str_at("/metadata/namespace").unwrap_or_else(|| default_ns.to_string());
        match kind {
            "KeycloakClient" => {
                let adopt = doc
                    .pointer(&format!("/metadata/annotations/{}", kco_api::ADOPT_ANNOTATION.replace('/', "~1")))
                    .and_then(Value::as_str)
                    == Some("true");
                let spec = check_api_version(&doc).and_then(|()| {
                    let spec = doc.get("spec").cloned().unwrap_or_default();
                    serde_path_to_error::deserialize::<_, KeycloakClientSpec>(spec)
                        .map_err(|e| format!("spec.{}: {}", e.path(), e.inner()))
                });
                out.clients.push(ClientManifest { source: source.to_string(), name, namespace, spec, adopt });
            }
            "KeycloakRealm" => {
                check_api_version(&doc)
                    .map_err(|e| anyhow::anyhow!("{source}: KeycloakRealm {namespace}/{name}: {e}"))?;
                let spec =
                    realm_spec(&doc).map_err(|e| anyhow::anyhow!("{source}: KeycloakRealm {namespace}/{name}: {e}"))?;
                out.realms.push(RealmManifest { name, namespace, spec });
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_api_version(doc: &Value) -> Result<(), String> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let known = [format!("{}/v1", kco_api::GROUP), format!("{}/v1", kco_api::LEGACY_GROUP)];
    if known.iter().any(|k| k == api_version) {
        Ok(())
    } else {
        Err(format!("apiVersion {api_version:?} is not one kco serves; use kco.dev/v1"))
    }
}

/// The realm's name and the settings the CLI honours (createRealm, allowAdminRoleGrants,
/// allowScriptMappers). The reference's realm objects carry other fields; those are not read.
fn realm_spec(doc: &Value) -> Result<kco_api::KeycloakRealmSpec, String> {
    let spec = doc.get("spec").cloned().unwrap_or_default();
    let realm_name = spec
        .get("realmName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("spec.realmName is missing; set it to the realm's name in Keycloak")?
        .to_string();
    let flag = |k: &str, default: bool| spec.get(k).and_then(Value::as_bool).unwrap_or(default);
    Ok(kco_api::KeycloakRealmSpec {
        realm_name,
        instance_ref: kco_api::ObjectRef { name: String::new(), namespace: None },
        client_authorization_grants: Vec::new(),
        create_realm: flag("createRealm", true),
        allow_admin_role_grants: flag("allowAdminRoleGrants", false),
        allow_script_mappers: flag("allowScriptMappers", false),
    })
}

impl Manifests {
    /// The realm a client goes to: its realmRef among the manifests, else `--realm`.
    pub fn realm_for(
        &self,
        client: &ClientManifest,
        spec: &KeycloakClientSpec,
        fallback: Option<&str>,
    ) -> Result<kco_api::KeycloakRealmSpec, String> {
        let ns = spec.realm_ref.namespace_or(&client.namespace);
        if let Some(r) = self.realms.iter().find(|r| r.name == spec.realm_ref.name && r.namespace == ns) {
            return Ok(r.spec.clone());
        }
        match fallback {
            Some(name) => Ok(kco_api::KeycloakRealmSpec {
                realm_name: name.to_string(),
                instance_ref: kco_api::ObjectRef { name: String::new(), namespace: None },
                client_authorization_grants: Vec::new(),
                // A realm named on the command line must exist: kco does not create realms by surprise.
                create_realm: false,
                allow_admin_role_grants: false,
                allow_script_mappers: false,
            }),
            None => Err(format!(
                "spec.realmRef names KeycloakRealm {ns}/{}, which is not among the manifests; add it to -f, or pass \
                 --realm REALM to name the Keycloak realm",
                spec.realm_ref.name
            )),
        }
    }
}
