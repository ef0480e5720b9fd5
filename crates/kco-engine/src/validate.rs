//! validate: rules on a KeycloakClient spec that the CRD schema cannot express. Pure; one place per
//! rule, shared by the operator and the CLI. Every error names the field and what to do.

use kco_api::KeycloakClientSpec;

/// One broken rule: the field (JSON path from `spec`) and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// All rule violations of `spec` (empty when valid).
pub fn validate_client(spec: &KeycloakClientSpec) -> Vec<ValidationError> {
    let mut errs = Vec::new();
    if spec.client_id.trim().is_empty() {
        errs.push(ValidationError::new("clientId", "must not be empty; set the OAuth2 client_id"));
    }
    if spec.realm_ref.name.trim().is_empty() {
        errs.push(ValidationError::new("realmRef.name", "must name a KeycloakRealm object"));
    }
    if spec.public_client && spec.client_secret.is_some() {
        errs.push(ValidationError::new(
            "clientSecret",
            "cannot be used with publicClient: true (public clients have no secret); remove one of them",
        ));
    }
    if spec.public_client && spec.settings.service_accounts_enabled {
        errs.push(ValidationError::new(
            "settings.serviceAccountsEnabled",
            "a public client cannot have a service account; set publicClient: false for the client-credentials flow",
        ));
    }
    if spec.client_secret.is_some() && spec.secret_rotation.as_ref().is_some_and(|r| r.enabled) {
        errs.push(ValidationError::new(
            "clientSecret",
            "cannot be combined with secretRotation.enabled: true (kco cannot rotate a secret it does not own); remove one of them",
        ));
    }
    for (field, uris) in
        [("redirectUris", &spec.redirect_uris), ("postLogoutRedirectUris", &spec.post_logout_redirect_uris)]
    {
        for (i, uri) in uris.iter().flatten().enumerate() {
            if let Err(why) = check_redirect_uri(uri) {
                errs.push(ValidationError::new(format!("{field}[{i}]"), format!("{uri:?}: {why}")));
            }
        }
    }
    errs
}

/// The reference's redirect URI rules: bare `*` refused; a wildcard only at the end of a path; none in
/// the host; custom schemes (`myapp://callback`, `myapp:*`) accepted.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if uri == "*" {
        return Err("a bare \"*\" allows redirects anywhere; list the exact URIs or end a path with /*".into());
    }
    let Some(star) = uri.find('*') else {
        return Ok(());
    };
    if star != uri.len() - 1 {
        return Err("a wildcard is only allowed as the last character, e.g. https://app.example.com/*".into());
    }
    if let Some((_, rest)) = uri.split_once("://") {
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('*') {
            return Err(
                "a wildcard in the host is not allowed; name the host and put the wildcard at the end of the path"
                    .into(),
            );
        }
    }
    Ok(())
}
