//! Which Keycloak the CLI talks to, and as whom: flags and environment, never a password on the
//! command line (it would show in `ps` and shell history).

use std::path::PathBuf;
use std::time::Duration;

use kco_keycloak::{AdminCredentials, KeycloakAdmin, KeycloakAdminConfig, RequestMetrics};
use secrecy::SecretString;

#[derive(clap::Args, Debug)]
pub struct KeycloakArgs {
    /// Keycloak's base URL (without /admin).
    #[arg(long, env = "KEYCLOAK_URL")]
    pub keycloak_url: String,
    /// URL consumers reach Keycloak at, for the endpoints in the credentials (default: --keycloak-url).
    #[arg(long, env = "KEYCLOAK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Realm of the admin account.
    #[arg(long, env = "KEYCLOAK_ADMIN_REALM", default_value = "master")]
    pub admin_realm: String,
    /// Admin user (password grant through admin-cli); its password comes from KEYCLOAK_ADMIN_PASSWORD
    /// or --admin-password-file.
    #[arg(long, env = "KEYCLOAK_ADMIN_USER")]
    pub admin_user: Option<String>,
    /// File holding the admin password (instead of KEYCLOAK_ADMIN_PASSWORD); one trailing newline is ignored.
    #[arg(long)]
    pub admin_password_file: Option<PathBuf>,
    /// Admin service-account client (client-credentials grant) instead of a user; its secret comes
    /// from KEYCLOAK_ADMIN_CLIENT_SECRET.
    #[arg(long, env = "KEYCLOAK_ADMIN_CLIENT_ID")]
    pub admin_client_id: Option<String>,
    /// Extra PEM CA certificates to trust for Keycloak's TLS.
    #[arg(long, env = "KEYCLOAK_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl KeycloakArgs {
    pub fn admin(&self, metrics: RequestMetrics) -> anyhow::Result<KeycloakAdmin> {
        let credentials = match (&self.admin_client_id, &self.admin_user) {
            (Some(id), _) => {
                let secret = std::env::var("KEYCLOAK_ADMIN_CLIENT_SECRET").map_err(|_| {
                    anyhow::anyhow!(
                        "--admin-client-id is set but KEYCLOAK_ADMIN_CLIENT_SECRET is not; export the client's secret"
                    )
                })?;
                AdminCredentials::ClientCredentials { client_id: id.clone(), client_secret: SecretString::from(secret) }
            }
            (None, Some(user)) => {
                let password = match &self.admin_password_file {
                    Some(file) => {
                        let text = std::fs::read_to_string(file)
                            .map_err(|e| anyhow::anyhow!("--admin-password-file {}: {e}", file.display()))?;
                        text.strip_suffix('\n').unwrap_or(&text).to_string()
                    }
                    None => std::env::var("KEYCLOAK_ADMIN_PASSWORD").map_err(|_| {
                        anyhow::anyhow!(
                            "no admin password: export KEYCLOAK_ADMIN_PASSWORD or pass --admin-password-file FILE"
                        )
                    })?,
                };
                AdminCredentials::Password { username: user.clone(), password: SecretString::from(password) }
            }
            (None, None) => anyhow::bail!(
                "no Keycloak admin credentials: export KEYCLOAK_ADMIN_USER and KEYCLOAK_ADMIN_PASSWORD (or pass \
                 --admin-user and --admin-password-file), or --admin-client-id with KEYCLOAK_ADMIN_CLIENT_SECRET"
            ),
        };
        let ca_pem = read_ca(self.ca_file.as_ref())?;
        let config = KeycloakAdminConfig {
            url: self.keycloak_url.clone(),
            admin_realm: self.admin_realm.clone(),
            credentials,
            ca_pem,
            timeout: Duration::from_secs(30),
        };
        KeycloakAdmin::new(config, metrics).map_err(|e| anyhow::anyhow!("--keycloak-url {}: {e}", self.keycloak_url))
    }
}

pub fn read_ca(file: Option<&PathBuf>) -> anyhow::Result<Option<Vec<u8>>> {
    file.map(|f| std::fs::read(f).map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", f.display()))).transpose()
}

/// (reads, writes) the Admin API was sent, from the same `kco_keycloak_requests` counters the
/// operator exports; the admin token's POST is neither.
pub fn request_counts(metrics: &RequestMetrics) -> (u64, u64) {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        return (0, 0);
    }
    let (mut reads, mut writes) = (0, 0);
    for line in text.lines().filter(|l| l.starts_with("kco_keycloak_requests_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let n = value.parse::<f64>().unwrap_or(0.0) as u64;
        if labels.contains("kind=\"token\"") {
            continue;
        }
        if labels.contains("method=\"GET\"") {
            reads += n;
        } else {
            writes += n;
        }
    }
    (reads, writes)
}
