//! Keycloak errors, told apart by what the caller should do about them.

use std::time::Duration;

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
    /// 429, 408, 503: Keycloak (or a proxy in front of it) asks to come back later.
    Throttled,
    /// Other 4xx: Keycloak refused the request as malformed.
    BadRequest,
    /// Other 5xx.
    Server,
    /// The answer's body could not be read as the JSON the API documents (a proxy's error page, a
    /// truncated answer).
    Decode,
    /// The answer was well-formed but lacked what the API documents (an id, a Location header).
    Protocol,
}

impl ErrorKind {
    /// Whether retrying the same request later can succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Unreachable | ErrorKind::Server | ErrorKind::Conflict | ErrorKind::Throttled | ErrorKind::Decode
        )
    }

    /// A short fixed name, used as a metric label and an event reason.
    pub fn category(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "KeycloakUnreachable",
            ErrorKind::Unauthorized => "KeycloakUnauthorized",
            ErrorKind::Forbidden => "KeycloakForbidden",
            ErrorKind::NotFound => "KeycloakNotFound",
            ErrorKind::Conflict => "KeycloakConflict",
            ErrorKind::Throttled => "KeycloakThrottled",
            ErrorKind::BadRequest => "KeycloakBadRequest",
            ErrorKind::Server => "KeycloakServerError",
            ErrorKind::Decode => "KeycloakDecodeError",
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
    /// How long Keycloak asked kco to wait (`Retry-After`), for throttled answers.
    pub retry_after: Option<Duration>,
}

/// The longest `Retry-After` kco honours; a larger one is taken as this (a reconcile still comes back).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

impl Error {
    pub fn new(kind: ErrorKind, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind, what: what.into(), detail: detail.into(), retry_after: None }
    }

    pub(crate) fn from_status(status: u16, what: String, body: &str) -> Self {
        let kind = match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            408 | 429 | 503 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::BadRequest,
        };
        let hint = match kind {
            ErrorKind::Unauthorized => "; check the admin credentials in the KeycloakInstance's adminSecretRef",
            ErrorKind::Forbidden => "; the admin account needs realm administration rights (e.g. the realm-admin role)",
            ErrorKind::Throttled => "; kco waits and retries",
            _ => "",
        };
        Self::new(kind, what, format!("HTTP {status}: {}{hint}", summarize_body(body)))
    }

    /// Record the `Retry-After` header of a throttled answer (delay-seconds; an HTTP date or junk is
    /// ignored and the usual backoff applies).
    pub(crate) fn with_retry_after(mut self, header: Option<&str>) -> Self {
        if self.kind == ErrorKind::Throttled {
            self.retry_after = parse_retry_after(header);
        }
        self
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

fn parse_retry_after(header: Option<&str>) -> Option<Duration> {
    let secs: u64 = header?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Keycloak's error bodies are JSON with `error`/`errorMessage`; keep them short in messages.
fn summarize_body(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["errorMessage", "error_description", "error"] {
            if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
                return s.chars().take(200).collect();
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
        assert_eq!(kind(500), ErrorKind::Server);
        assert_eq!(kind(502), ErrorKind::Server);
        for code in [408, 429, 503] {
            assert_eq!(kind(code), ErrorKind::Throttled, "{code}");
        }
        for k in
            [ErrorKind::Unreachable, ErrorKind::Server, ErrorKind::Conflict, ErrorKind::Throttled, ErrorKind::Decode]
        {
            assert!(k.is_transient(), "{k:?}");
        }
        for k in [ErrorKind::Unauthorized, ErrorKind::Forbidden, ErrorKind::NotFound, ErrorKind::BadRequest] {
            assert!(!k.is_transient(), "{k:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_for_throttled_answers_only_and_bounded() {
        let e = |code, h| Error::from_status(code, "GET x".into(), "").with_retry_after(h).retry_after;
        assert_eq!(e(429, Some("7")), Some(Duration::from_secs(7)));
        assert_eq!(e(503, Some(" 120 ")), Some(Duration::from_secs(120)));
        assert_eq!(e(429, Some("86400")), Some(MAX_RETRY_AFTER));
        assert_eq!(e(429, Some("Wed, 21 Oct 2026 07:28:00 GMT")), None);
        assert_eq!(e(429, Some("-1")), None);
        assert_eq!(e(429, None), None);
        assert_eq!(e(400, Some("7")), None);
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
