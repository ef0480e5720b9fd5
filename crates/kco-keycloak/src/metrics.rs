//! `kco_keycloak_requests_total{method, kind, outcome}`: every Admin API request kco makes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// What the request is about: `client`, `client-secret`, `realm`, `token`, … (never an id).
    pub kind: String,
}

/// Request counters, shared by every [`crate::KeycloakAdmin`] of one process.
#[derive(Clone, Debug, Default)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
}

impl RequestMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kco_keycloak_requests",
            "Keycloak Admin API requests made, by HTTP method and kind of object",
            self.requests.clone(),
        );
    }

    pub(crate) fn inc(&self, method: &str, kind: &str) {
        self.requests.get_or_create(&RequestLabels { method: method.to_string(), kind: kind.to_string() }).inc();
    }
}
