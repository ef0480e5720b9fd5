//! `kco token`: the client-credentials grant a consumer makes (HTTP Basic, seed 001), its claims, and
//! the usual failures told in plain words from Keycloak's own answer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// The client's clientId.
    #[arg(long)]
    pub client_id: Option<String>,
    /// The client's secret (prefer KCO_CLIENT_SECRET or a Secret: a flag shows in `ps`).
    #[arg(long, env = "KCO_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Token endpoint; default: KEYCLOAK_URL/realms/REALM/protocol/openid-connect/token.
    #[arg(long)]
    pub token_url: Option<String>,
    #[arg(long, env = "KEYCLOAK_URL")]
    pub keycloak_url: Option<String>,
    #[arg(long)]
    pub realm: Option<String>,
    /// Read client-id, client-secret and token-endpoint from this Kubernetes Secret (the managed
    /// Secret kco writes, or one in a consumer format).
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with = "secret_file")]
    pub from_secret: Option<String>,
    /// The same from a file: a Secret manifest, a JSON object or env lines (what `kco apply --output` writes).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Ask for these scopes (space separated, as OAuth2 sends them).
    #[arg(long)]
    pub scope: Option<String>,
    /// Fail unless the token's `aud` claim holds this audience.
    #[arg(long)]
    pub expect_audience: Option<String>,
    /// Extra PEM CA certificates to trust.
    #[arg(long, env = "KEYCLOAK_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Returns the exit code: 0 with a token (and the expected audience), 1 otherwise.
pub async fn token(args: TokenArgs) -> anyhow::Result<i32> {
    let mut found: BTreeMap<&str, String> = BTreeMap::new();
    if let Some(r) = &args.from_secret {
        let (ns, name) = super::output::parse_ref(r, "--from-secret")?;
        let kube = kube::Client::try_default()
            .await
            .map_err(|e| anyhow::anyhow!("--from-secret: no Kubernetes client ({e}); set KUBECONFIG"))?;
        let secret = Api::<Secret>::namespaced(kube, &ns)
            .get_opt(&name)
            .await
            .map_err(|e| anyhow::anyhow!("--from-secret: read Secret {ns}/{name}: {e}"))?
            .ok_or_else(|| anyhow::anyhow!("--from-secret: Secret {ns}/{name} does not exist"))?;
        let mut values = BTreeMap::new();
        for (k, v) in secret.data.iter().flatten() {
            values.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
        }
        values.extend(secret.string_data.unwrap_or_default());
        pick(&values, &mut found);
    }
    if let Some(f) = &args.secret_file {
        let text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("--secret-file {}: {e}", f.display()))?;
        pick(&file_values(&text).map_err(|e| anyhow::anyhow!("--secret-file {}: {e}", f.display()))?, &mut found);
    }
    // Flags win over what a Secret says.
    if let Some(v) = &args.client_id {
        found.insert("client-id", v.clone());
    }
    if let Some(v) = &args.client_secret {
        found.insert("client-secret", v.clone());
    }
    let token_url = match (&args.token_url, &args.keycloak_url, &args.realm, found.get("token-endpoint")) {
        (Some(u), ..) => u.clone(),
        (None, Some(base), Some(realm), _) => kco_api::Endpoints::for_realm(base, realm).token,
        (None, _, _, Some(u)) => u.clone(),
        _ => anyhow::bail!(
            "no token endpoint: pass --token-url, or --keycloak-url with --realm, or a Secret that has one"
        ),
    };
    let client_id = found
        .get("client-id")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no client id: pass --client-id, --from-secret or --secret-file"))?;
    let Some(secret) = found.get("client-secret").cloned() else {
        anyhow::bail!(
            "no client secret for {client_id}: pass --from-secret, --secret-file or KCO_CLIENT_SECRET (a public client \
             has no secret and cannot use the client-credentials grant)"
        );
    };

    let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(pem) = super::keycloak::read_ca(args.ca_file.as_ref())? {
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| anyhow::anyhow!("--ca-file: {e}"))? {
            http = http.add_root_certificate(cert);
        }
    }
    let http = http.build()?;
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if let Some(s) = &args.scope {
        form.push(("scope", s.clone()));
    }
    let resp = http
        .post(&token_url)
        .basic_auth(&client_id, Some(&secret))
        .form(&form)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the token endpoint {token_url}: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let error = body.get("error").and_then(Value::as_str).unwrap_or_default();
        let description = body.get("error_description").and_then(Value::as_str).unwrap_or_default();
        eprintln!("kco token: {}", explain(status.as_u16(), error, description, &client_id, &token_url));
        eprintln!("Keycloak answered {status}: {body}");
        return Ok(1);
    }
    let access = body.get("access_token").and_then(Value::as_str).unwrap_or_default();
    let claims =
        claims(access).map_err(|e| anyhow::anyhow!("Keycloak's access token is not a JWT kco can read: {e}"))?;
    println!("{}", serde_json::to_string_pretty(&claims)?);
    eprintln!("got a token for {client_id} (claims decoded, signature NOT verified: this shows what Keycloak issued)");
    if let Some(want) = &args.expect_audience {
        let aud: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        if !aud.contains(want) {
            let now =
                if aud.is_empty() { "has no aud claim".to_string() } else { format!("is for {}", aud.join(", ")) };
            eprintln!(
                "kco token: missing audience: the token {now}, not {want:?}. A service that checks its audience will \
                 refuse it. Add {want:?} to the client's spec.audiences (kco adds an audience mapper), then apply again"
            );
            return Ok(1);
        }
        eprintln!("audience {want:?} is present");
    }
    Ok(0)
}

/// Keycloak's answer in plain words, with what to do.
fn explain(status: u16, error: &str, description: &str, client_id: &str, url: &str) -> String {
    let d = description.to_ascii_lowercase();
    if d.contains("not enabled to retrieve service account")
        || (error == "invalid_grant" && d.contains("service account"))
    {
        return format!(
            "service accounts are off for client {client_id}: the client-credentials grant needs them. Set \
             settings.serviceAccountsEnabled: true on its KeycloakClient (serviceAccountsEnabled in Keycloak)"
        );
    }
    if d.contains("public client") {
        return format!(
            "client {client_id} is public: public clients cannot use the client-credentials grant; set publicClient: false"
        );
    }
    if error == "unauthorized_client" && d.contains("invalid client credentials") {
        return format!(
            "wrong secret: client {client_id} exists but the secret does not match. Take it from the client's \
             Secret again (it may have been rotated or regenerated)"
        );
    }
    if error == "invalid_client" {
        return format!(
            "unknown client: the realm of {url} has no client {client_id:?} (or it is disabled). Check the clientId \
             and the realm"
        );
    }
    if status == 404 || d.contains("realm does not exist") || error.contains("realm does not exist") {
        return format!("the realm does not exist: {url} names a realm Keycloak does not have; check the realm name");
    }
    format!("Keycloak refused the grant ({error}: {description})")
}

/// The JWT's payload. The signature is not checked: this is a debugging aid for a token kco just
/// received from Keycloak over the connection it chose.
fn claims(token: &str) -> Result<Value, String> {
    let payload = token.split('.').nth(1).ok_or("no payload part")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Values of a Secret file: a Secret manifest (data base64, stringData), a flat JSON/YAML object, or
/// `KEY=value` lines.
fn file_values(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if let Ok(Value::Object(doc)) = serde_saphyr::from_str::<Value>(text) {
        if doc.get("kind").and_then(Value::as_str) == Some("Secret") {
            for (k, v) in doc.get("data").and_then(Value::as_object).into_iter().flatten() {
                let raw = v.as_str().unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .map_err(|e| format!("data.{k} is not base64: {e}"))?;
                out.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
            }
            for (k, v) in doc.get("stringData").and_then(Value::as_object).into_iter().flatten() {
                out.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        } else {
            for (k, v) in doc {
                if let Some(s) = v.as_str() {
                    out.insert(k, s.to_string());
                }
            }
        }
        return Ok(out);
    }
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(v);
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            out.insert(k.trim().to_string(), v.replace(r"'\''", "'"));
        }
    }
    if out.is_empty() {
        return Err("no keys found; expected a Secret manifest, a JSON object or KEY=value lines".into());
    }
    Ok(out)
}

/// client-id / client-secret / token-endpoint under any of the names kco writes (managed Secret,
/// env output, mlflow, phoenix, otel-collector).
fn pick(values: &BTreeMap<String, String>, found: &mut BTreeMap<&'static str, String>) {
    for (k, v) in values {
        let norm = k.to_ascii_lowercase().replace('_', "-");
        let what = if norm.ends_with("client-id") {
            "client-id"
        } else if norm.ends_with("client-secret") {
            "client-secret"
        } else if norm == "token-endpoint" || norm.ends_with("token-url") {
            "token-endpoint"
        } else {
            continue;
        };
        found.entry(what).or_insert_with(|| v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_kco_writes_is_read_back() {
        let env =
            file_values("CLIENT_ID='svc'\nCLIENT_SECRET='a'\\''b'\nTOKEN_ENDPOINT='http://t'\n").unwrap_or_default();
        let mut found = BTreeMap::new();
        pick(&env, &mut found);
        assert_eq!(found.get("client-id").map(String::as_str), Some("svc"));
        assert_eq!(found.get("client-secret").map(String::as_str), Some("a'b"));
        assert_eq!(found.get("token-endpoint").map(String::as_str), Some("http://t"));
        let json =
            file_values(r#"{"OIDC_CLIENT_ID":"m","OIDC_CLIENT_SECRET":"s","OIDC_TOKEN_URL":"u"}"#).unwrap_or_default();
        let mut found = BTreeMap::new();
        pick(&json, &mut found);
        assert_eq!(found.len(), 3);
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\ndata:\n  client-id: c3Zj\n";
        assert_eq!(file_values(yaml).unwrap_or_default().get("client-id").map(String::as_str), Some("svc"));
    }
}
