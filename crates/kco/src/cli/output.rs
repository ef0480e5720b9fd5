//! Where `kco apply` puts credentials: stdout or a file created 0600 (`--output env|json|secret-yaml`),
//! or a Kubernetes Secret (`--to-secret NS/NAME`). Keys are the managed Secret's, or a consumer's
//! preset (`--format`), rendered by the engine exactly as the operator renders them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kco_api::{AdditionalSecret, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecretFormat};
use kco_engine::formats::render_additional;
use kco_engine::secret::{Credentials, SecretData, render_credentials};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, ResourceExt};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// `KEY='value'` lines (keys upper-cased, `-` → `_`), ready for `source` or `--env-file`.
    Env,
    /// One JSON object per client, one per line.
    Json,
    /// A Kubernetes Secret manifest per client (the name the operator would give it).
    SecretYaml,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatKind {
    Mlflow,
    Phoenix,
    OtelCollector,
}

impl FormatKind {
    fn preset(self) -> SecretFormat {
        match self {
            FormatKind::Mlflow => SecretFormat::Mlflow,
            FormatKind::Phoenix => SecretFormat::Phoenix,
            FormatKind::OtelCollector => SecretFormat::OtelCollector,
        }
    }
}

/// The credential keys: the managed Secret's, or the preset's.
pub fn render(creds: &Credentials, realm: &str, format: Option<FormatKind>) -> anyhow::Result<SecretData> {
    match format {
        None => Ok(render_credentials(creds)),
        Some(f) => {
            let spec = AdditionalSecret {
                name: "kco-cli".into(),
                format: Some(f.preset()),
                keys: None,
                labels: None,
                annotations: None,
                namespace: None,
            };
            render_additional(&spec, creds, realm).map_err(|e| anyhow::anyhow!("--format: {e}"))
        }
    }
}

/// One client's credentials, ready to print.
pub struct Rendered {
    pub namespace: String,
    /// The Secret name the operator would use (`spec.secretName`, else `<name>-credentials`).
    pub secret_name: String,
    pub data: SecretData,
}

/// Every client's credentials as `kind` text.
pub fn to_text(kind: OutputKind, all: &[Rendered]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, r) in all.iter().enumerate() {
        match kind {
            OutputKind::Env => {
                for (k, v) in &r.data.0 {
                    let key: String = k
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
                        .collect();
                    out.push_str(&format!("{key}='{}'\n", v.replace('\'', r"'\''")));
                }
            }
            OutputKind::Json => {
                out.push_str(&serde_json::to_string(&r.data.0)?);
                out.push('\n');
            }
            OutputKind::SecretYaml => {
                if i > 0 {
                    out.push_str("---\n");
                }
                let secret = secret_object(&r.namespace, &r.secret_name, &r.data);
                out.push_str(&serde_saphyr::to_string(&secret)?);
            }
        }
    }
    Ok(out)
}

fn secret_object(ns: &str, name: &str, data: &SecretData) -> Secret {
    let bytes: BTreeMap<String, ByteString> =
        data.0.iter().map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec()))).collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())])),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(bytes),
        ..Default::default()
    }
}

/// Write `text` to stdout, or to `file` created (or truncated) with mode 0600 before any byte lands.
pub fn emit(text: &str, file: Option<&Path>) -> anyhow::Result<()> {
    match file {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        Some(path) => {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| anyhow::anyhow!("--output-file {}: {e}", path.display()))?;
            // An existing file keeps its mode on open: narrow it before writing the secret.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

/// `--to-secret NS/NAME` → (namespace, name).
pub fn parse_ref(s: &str, flag: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            kco_engine::kube_names::check_object_name(name).map_err(|e| anyhow::anyhow!("{flag} {s}: {e}"))?;
            Ok((ns.to_string(), name.to_string()))
        }
        _ => anyhow::bail!("{flag} {s:?}: expected NAMESPACE/NAME"),
    }
}

/// Make Secret `ns/name` hold `data` (server-side apply, field manager kco), only when it differs.
/// A Secret kco did not write (no `app.kubernetes.io/managed-by: kco`) is never overwritten.
/// Returns whether it wrote.
pub async fn write_secret(kube: &kube::Client, ns: &str, name: &str, data: &SecretData) -> anyhow::Result<bool> {
    let api: Api<Secret> = Api::namespaced(kube.clone(), ns);
    let existing = api.get_opt(name).await.map_err(|e| anyhow::anyhow!("read Secret {ns}/{name}: {e}"))?;
    let wanted = secret_object(ns, name, data);
    if let Some(s) = &existing {
        if s.labels().get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE) {
            anyhow::bail!(
                "Secret {ns}/{name} exists and was not written by kco (no label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}); \
                 kco will not overwrite it. Pick another --to-secret name, or delete that Secret"
            );
        }
        let same = wanted.data.iter().flatten().all(|(k, v)| s.data.as_ref().and_then(|d| d.get(k)) == Some(v));
        if same {
            return Ok(false);
        }
    }
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&wanted))
        .await
        .map_err(|e| anyhow::anyhow!("write Secret {ns}/{name}: {e}"))?;
    Ok(true)
}
