//! Keycloak errors, told apart by what the caller should do about them.

/// What went wrong, coarse enough to decide retry vs. fail and to label metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No answer: connection refused, DNS, TLS, timeout.
    Unreachable,
    /// 401: the admin credentials are wrong or expired.
    Unauthorized,
    /// 403: the admin account lacks a permission.
    Forbidden,
    NotFound,
    /// 409: a duplicate (client id, role, policy name).
    Conflict,
    /// Other 4xx: Keycloak refused the request as malformed.
    BadRequest,
    /// 5xx.
    Server,
    /// The answer was not what the API documents.
    Protocol,
}

impl ErrorKind {
    /// Whether retrying the same request later can succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unreachable | ErrorKind::Server | ErrorKind::Conflict)
    }

    /// A short fixed name, used as a metric label and an event reason.
    pub fn category(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "KeycloakUnreachable",
            ErrorKind::Unauthorized => "KeycloakUnauthorized",
            ErrorKind::Forbidden => "KeycloakForbidden",
            ErrorKind::NotFound => "KeycloakNotFound",
            ErrorKind::Conflict => "KeycloakConflict",
            ErrorKind::BadRequest => "KeycloakBadRequest",
            ErrorKind::Server => "KeycloakServerError",
            ErrorKind::Protocol => "KeycloakProtocolError",
        }
    }
}

/// A failed Keycloak request: its kind, what was asked, and Keycloak's own words (never a credential).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct Error {
    pub kind: ErrorKind,
    pub what: String,
    pub detail: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind, what: what.into(), detail: detail.into() }
    }

    pub(crate) fn from_status(status: u16, what: String, body: &str) -> Self {
        let kind = match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::BadRequest,
        };
        let hint = match kind {
            ErrorKind::Unauthorized => "; check the admin credentials in the KeycloakInstance's adminSecretRef",
            ErrorKind::Forbidden => "; the admin account needs realm administration rights (e.g. the realm-admin role)",
            _ => "",
        };
        Self::new(kind, what, format!("HTTP {status}: {}{hint}", summarize_body(body)))
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

/// Keycloak's error bodies are JSON with `error`/`errorMessage`; keep them short in messages.
fn summarize_body(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["errorMessage", "error_description", "error"] {
            if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
                return s.to_string();
            }
        }
    }
    let mut s: String = body.chars().take(200).collect();
    if s.is_empty() {
        s = "(empty body)".to_string();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_told_apart_and_only_passing_ones_retry() {
        let kind = |code| Error::from_status(code, "GET x".into(), "").kind;
        assert_eq!(kind(401), ErrorKind::Unauthorized);
        assert_eq!(kind(403), ErrorKind::Forbidden);
        assert_eq!(kind(404), ErrorKind::NotFound);
        assert_eq!(kind(409), ErrorKind::Conflict);
        assert_eq!(kind(400), ErrorKind::BadRequest);
        assert_eq!(kind(503), ErrorKind::Server);
        for k in [ErrorKind::Unreachable, ErrorKind::Server, ErrorKind::Conflict] {
            assert!(k.is_transient(), "{k:?}");
        }
        for k in [ErrorKind::Unauthorized, ErrorKind::Forbidden, ErrorKind::NotFound, ErrorKind::BadRequest] {
            assert!(!k.is_transient(), "{k:?}");
        }
    }

    #[test]
    fn messages_say_what_to_fix() {
        let e = Error::from_status(401, "GET /admin/realms/r".into(), r#"{"error":"invalid_grant"}"#);
        assert!(e.to_string().contains("adminSecretRef"), "{e}");
        assert!(e.to_string().contains("invalid_grant"), "{e}");
        let e = Error::from_status(403, "GET x".into(), "");
        assert!(e.to_string().contains("realm-admin"), "{e}");
    }
}
