//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas can run and exactly
//! one reconciles and writes.
//!
//! Hand-written over `Api<Lease>` (about 150 lines): `kube-lease-manager` is not in the offline crate
//! cache of this build machine, and the protocol is small. Every write is a `replace` carrying the
//! resourceVersion that was read, so two candidates racing for the same Lease cannot both win (the
//! loser gets 409 Conflict).
//!
//! - A candidate polls every [`RETRY`] and takes the Lease when it is free (no holder, released) or
//!   expired (`renewTime + leaseDurationSeconds` in the past).
//! - The leader renews every third of the lease duration. When it cannot renew for two thirds of the
//!   duration, or finds another holder, it stops (the process exits with an error and is restarted as
//!   a candidate), so a partitioned leader has stepped down before anyone else may take over.
//! - On SIGTERM the controllers shut down gracefully and then the Lease is released (holder cleared),
//!   so a standby takes over at its next poll (under [`RETRY`]) instead of after the lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How often a standby checks whether the Lease is free.
const RETRY: Duration = Duration::from_millis(500);
const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[derive(clap::Args, Debug, Clone)]
pub struct LeaderArgs {
    /// Elect one active operator among several replicas with a Lease; only the leader reconciles.
    #[arg(
        long,
        env = "KCO_LEADER_ELECTION",
        default_value = "false",
        default_missing_value = "true",
        num_args = 0..=1,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "KCO_LEASE_NAME", default_value = "kco-leader")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's own, read from the service account mount).
    #[arg(long, env = "KCO_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a leader that stopped renewing keeps the Lease, e.g. 15s.
    #[arg(long, env = "KCO_LEASE_DURATION", default_value = "15s", value_parser = kco_engine::schedule::parse_interval)]
    pub lease_duration: Duration,
    /// This candidate's identity (default: $POD_NAME, else hostname-pid).
    #[arg(long, env = "KCO_LEADER_ID")]
    pub leader_id: Option<String>,
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    id: String,
    duration: Duration,
    leader: Gauge,
}

impl Elector {
    /// `None` when leader election is off. Registers `kco_leader` (1 while this process leads).
    pub fn new(client: &Client, args: &LeaderArgs, registry: &mut Registry) -> anyhow::Result<Option<Self>> {
        if !args.leader_election {
            return Ok(None);
        }
        let ns = match &args.lease_namespace {
            Some(ns) => ns.clone(),
            None => std::fs::read_to_string(SA_NAMESPACE_FILE)
                .map(|s| s.trim().to_string())
                .map_err(|e| anyhow::anyhow!("--lease-namespace is not set and {SA_NAMESPACE_FILE}: {e}"))?,
        };
        let id = args.leader_id.clone().or_else(|| std::env::var("POD_NAME").ok()).unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let leader = Gauge::default();
        registry.register("kco_leader", "1 while this operator holds the leader Lease", leader.clone());
        tracing::info!(lease = %format!("{ns}/{}", args.lease_name), identity = %id, "leader election on");
        Ok(Some(Self {
            api: Api::namespaced(client.clone(), &ns),
            name: args.lease_name.clone(),
            id,
            duration: args.lease_duration,
            leader,
        }))
    }

    /// Wait until this process holds the Lease. `false` when a shutdown signal came first.
    pub async fn acquire(&self) -> bool {
        let mut told = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    self.leader.set(1);
                    tracing::info!(identity = %self.id, "acquired the leader Lease; reconciling");
                    return true;
                }
                Ok(false) if !told => {
                    told = true;
                    tracing::info!(identity = %self.id, "standby: another operator holds the leader Lease");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: cannot read or write the Lease"),
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = shutdown_signal() => return false,
            }
        }
    }

    /// Run `work` while renewing the Lease. Ends with an error when leadership is lost (the caller
    /// exits; a restart rejoins as a candidate); when `work` ends (graceful shutdown) the Lease is
    /// released for a fast handover.
    pub async fn lead<F: Future<Output = ()>>(&self, work: F) -> anyhow::Result<()> {
        tokio::select! {
            () = work => {
                self.release().await;
                Ok(())
            }
            () = self.hold() => {
                self.leader.set(0);
                anyhow::bail!("lost the leader Lease; exiting so that only one operator writes")
            }
        }
    }

    /// Renew until that fails; returns when leadership is lost.
    async fn hold(&self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the leader Lease");
                    if renewed.elapsed() >= self.duration * 2 / 3 {
                        return;
                    }
                }
            }
        }
    }

    /// Give the Lease up (holder cleared) when this process still holds it.
    async fn release(&self) {
        self.leader.set(0);
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.id.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!("released the leader Lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the leader Lease; it expires on its own"),
        }
    }

    /// One round: take the Lease when free or expired, renew it when ours. `Ok(false)`: someone else
    /// holds it (or won the race).
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = jiff::Timestamp::now();
        let secs = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.id.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.id;
        if !mine && !holder.is_empty() {
            let held_for = jiff::SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).into());
            let expires = spec.renew_time.as_ref().and_then(|t| t.0.checked_add(held_for).ok());
            if expires.is_some_and(|e| now < e) {
                return Ok(false);
            }
        }
        if !mine {
            spec.holder_identity = Some(self.id.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(secs);
        conflict_is_false(self.api.replace(&self.name, &PostParams::default(), &lease).await)
    }
}

fn conflict_is_false(res: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match res {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
