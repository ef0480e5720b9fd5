//! What goes into a managed Secret: the reference's keys, rendered from the client's credentials.

use std::collections::BTreeMap;

use kco_api::Endpoints;
use secrecy::{ExposeSecret, SecretString};

/// Credentials a consumer needs. The secret is absent for public clients.
pub struct Credentials {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub endpoints: Endpoints,
}

/// Rendered Secret data. Its `Debug` never shows values.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretData(pub BTreeMap<String, String>);

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The managed Secret's keys: `client-id`, `client-secret` (confidential clients only), `issuer`,
/// `token-endpoint`, `auth-endpoint`, `userinfo-endpoint`, `jwks-endpoint`, `end-session-endpoint`.
pub fn render_credentials(c: &Credentials) -> SecretData {
    let mut m = BTreeMap::new();
    m.insert("client-id".to_string(), c.client_id.clone());
    if let Some(s) = &c.client_secret {
        m.insert("client-secret".to_string(), s.expose_secret().to_string());
    }
    m.insert("issuer".to_string(), c.endpoints.issuer.clone());
    m.insert("token-endpoint".to_string(), c.endpoints.token.clone());
    m.insert("auth-endpoint".to_string(), c.endpoints.auth.clone());
    m.insert("userinfo-endpoint".to_string(), c.endpoints.userinfo.clone());
    m.insert("jwks-endpoint".to_string(), c.endpoints.jwks.clone());
    m.insert("end-session-endpoint".to_string(), c.endpoints.logout.clone());
    SecretData(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidential_client_gets_every_reference_key() {
        let d = render_credentials(&Credentials {
            client_id: "svc".into(),
            client_secret: Some(SecretString::from("s3cr3t-value")),
            endpoints: Endpoints::for_realm("https://kc.example.com/", "team-a"),
        });
        assert_eq!(d.0["client-id"], "svc");
        assert_eq!(d.0["client-secret"], "s3cr3t-value");
        assert_eq!(d.0["issuer"], "https://kc.example.com/realms/team-a");
        assert_eq!(d.0["token-endpoint"], "https://kc.example.com/realms/team-a/protocol/openid-connect/token");
        assert_eq!(d.0["auth-endpoint"], "https://kc.example.com/realms/team-a/protocol/openid-connect/auth");
        assert_eq!(d.0["end-session-endpoint"], "https://kc.example.com/realms/team-a/protocol/openid-connect/logout");
        assert!(!format!("{d:?}").contains("s3cr3t-value"), "Debug must not show values");
    }

    #[test]
    fn public_client_has_no_secret_key() {
        let d = render_credentials(&Credentials {
            client_id: "spa".into(),
            client_secret: None,
            endpoints: Endpoints::for_realm("http://127.0.0.1:8080", "r"),
        });
        assert!(!d.0.contains_key("client-secret"));
        assert_eq!(d.0.len(), 7);
    }
}
