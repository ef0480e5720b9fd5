//! Keycloak Admin REST API access for kco: one authenticated client per Keycloak instance, an admin
//! token cached and refreshed before it expires, errors told apart by kind, every request counted.
//!
//! Written over reqwest + serde_json rather than the generated `keycloak` crate: kco updates clients
//! by GET → merge → PUT, and a typed model would silently drop every field it does not know on the
//! way back, which is exactly the clobbering kco promises not to do.
#![forbid(unsafe_code)]

mod admin;
mod error;
mod memo;
mod metrics;
mod starts;

pub use admin::{
    AdminCredentials, Comeback, KeycloakAdmin, KeycloakAdminConfig, SECRET_RECORD_PREFIX, ServerInfo, base_url_of,
    is_plain_segment, strip_for_put,
};
pub use error::{Error, ErrorKind};
pub use metrics::RequestMetrics;
