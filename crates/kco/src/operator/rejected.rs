//! A Keycloak 5xx in answer to kco's own write, again and again, is not an outage: Keycloak cannot
//! handle that request (it answered 500 to an authorization client without a service account, for
//! instance). After a few tries it becomes Failed with a message that says what to change, instead of
//! an endless Degraded retry that only says "consult the server log".

use kco_keycloak::ErrorKind;

use super::ReconcileError;

/// Reason of the Failed status kco writes for such a request.
pub const REJECTED_REASON: &str = "KeycloakRejectedRequest";

/// Failures in a row after which a 5xx on a write counts as caused by the request.
const TRIES: u32 = 3;

/// `Some(Failed error)` when `err` is a 5xx on a write, the reconcile has failed `consecutive` times
/// before, the last time with a 5xx too (or it was already reported so), else `None` (keep retrying
/// as Degraded).
pub fn rejected_request(
    err: &ReconcileError,
    consecutive: u32,
    previous_reason: Option<&str>,
    client_id: &str,
) -> Option<ReconcileError> {
    let ReconcileError::Keycloak(e) = err else { return None };
    let write = ["POST ", "PUT ", "DELETE "].iter().any(|m| e.what.starts_with(m));
    if e.kind != ErrorKind::Server || !write {
        return None;
    }
    // The attempt before this one must have ended the same way (its status reason says so).
    let again = previous_reason == Some(ErrorKind::Server.category()) && consecutive + 1 >= TRIES;
    if !again && previous_reason != Some(REJECTED_REASON) {
        return None;
    }
    Some(ReconcileError::blocked(
        REJECTED_REASON,
        format!(
            "Keycloak failed {} for client {client_id} {TRIES} times in a row with a server error ({}) while \
             answering kco's reads: the request itself is what Keycloak cannot handle. Change the combination of \
             settings this object asks for (the Keycloak server log names the cause); kco retries when the \
             object changes and at each resync",
            e.what, e.detail
        ),
    ))
}
