//! The engine both fronts share: validate (pure) → plan (pure) → apply (Keycloak calls).
//! Kubernetes stays outside: the operator and the CLI hand in a spec and take back credentials.
#![forbid(unsafe_code)]

pub mod apply;
pub mod authz;
pub mod converge;
pub mod desired;
pub mod drift;
pub mod error;
pub mod formats;
pub mod grace;
pub mod guard;
pub mod kube_names;
pub mod observe;
pub mod plan;
pub mod schedule;
pub mod secret;
pub mod validate;

pub use apply::{ApplyOutcome, apply_plan};
pub use desired::{DesiredClient, Owner};
pub use error::EngineError;
pub use observe::observe_client;
pub use plan::{ClientOperation, ClientPlan, ObservedClient, plan_client};
pub use validate::{ValidationError, validate_client};

/// Client attribute naming the KeycloakClient that owns a Keycloak client: `namespace/name/uid`.
pub const OWNER_ATTRIBUTE: &str = "kco.dev/owner";
