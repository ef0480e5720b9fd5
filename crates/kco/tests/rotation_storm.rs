//! Rotation storm: many clients due at the same instant (`rotationTime` set to the same minute).
//! Measures the time until every Secret holds a working new secret, while consumers keep taking
//! tokens with whatever their Secret holds: none may be refused (the grace period covers the old
//! secret until the Secret is rewritten). Keycloak's admin events show one rotation per client.
//! Size: `KCO_STORM_CLIENTS` (50; 200 with `dev/test --long`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kco_testing::{Env, Operator, audited_client};
use serde_json::json;

const KCO: &str = env!("CARGO_BIN_EXE_kco");

#[tokio::test]
async fn a_rotation_storm_keeps_every_consumer_working() {
    let n: usize = std::env::var("KCO_STORM_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let env = Env::connect().await;
    let ns = env.namespace("storm").await;
    env.audited_realm(&ns).await;
    env.keycloak_setup(&ns, &ns).await;
    let op = Operator::start(KCO, &ns, &["--resync", "30m"]).await;
    // The first whole minute at least 150 s away: every client is created before it is due
    // (eligible 45 s after creation), and all are due at that same instant.
    let now = jiff::Timestamp::now();
    let due = jiff::Timestamp::from_second((now.as_second() + 150).div_euclid(60) * 60 + 60).unwrap();
    let hhmm = due.to_zoned(jiff::tz::TimeZone::UTC).strftime("%H:%M").to_string();
    let names: Vec<String> = (0..n).map(|i| format!("storm-{i}")).collect();
    for name in &names {
        let mut obj = audited_client(name);
        obj["spec"]["secretRotation"] = json!({"enabled": true, "rotationPeriod": "90s", "gracePeriod": "30s",
                                                "rotationTime": hhmm, "timezone": "UTC"});
        env.apply(&ns, obj).await;
    }
    let mut old = BTreeMap::new();
    for name in &names {
        let s = env.wait_phase(&ns, name, "Ready", Duration::from_secs(600)).await;
        let next: jiff::Timestamp = s["nextRotation"].as_str().unwrap().parse().unwrap();
        assert_eq!(next, due, "{name} is not due at {due}: {s}");
        old.insert(name.clone(), env.secret_data(&ns, &format!("{name}-credentials")).await.unwrap());
    }
    assert!(jiff::Timestamp::now() < due, "clients took too long to become Ready for the storm to be at {due}");

    // Consumers: each round, every client's consumer takes a token with what its Secret holds.
    let refused = Arc::new(AtomicU64::new(0));
    let tokens = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumers = {
        let (env, ns, names) = (env.clone(), ns.clone(), names.clone());
        let (refused, tokens, stop) = (refused.clone(), tokens.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for name in &names {
                    let d = env.secret_data(&ns, &format!("{name}-credentials")).await.unwrap();
                    match env.client_credentials(&d["token-endpoint"], name, &d["client-secret"]).await {
                        Ok(_) => tokens.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("consumer of {name} refused: {e}");
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }
        })
    };

    // Until every Secret holds a new secret that works.
    let mut done: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
    while done.len() < n {
        assert!(
            jiff::Timestamp::now().as_second() < due.as_second() + 600,
            "{} of {n} Secrets rotated 10 minutes after {due}",
            done.len()
        );
        for name in &names {
            if done.contains_key(name) {
                continue;
            }
            let d = env.secret_data(&ns, &format!("{name}-credentials")).await.unwrap();
            if d["client-secret"] != old[name]["client-secret"]
                && env.client_credentials(&d["token-endpoint"], name, &d["client-secret"]).await.is_ok()
            {
                done.insert(name.clone(), jiff::Timestamp::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Keep consuming a little past the storm, inside the 30 s grace period of the last rotation.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    consumers.await.unwrap();
    let last = done.values().max().unwrap();
    let storm = last.duration_since(due);
    eprintln!(
        "rotation storm: {n} clients due at {due}; every Secret held a working new secret {:.1} s later; \
         {} tokens taken meanwhile, {} refused; Keycloak writes by the operator: {}",
        storm.as_secs_f64(),
        tokens.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        op.keycloak_writes().await
    );
    assert_eq!(refused.load(Ordering::Relaxed), 0, "a consumer was refused a token during the storm");
    // One rotation per client, by Keycloak's own record.
    let events = env.admin_events(&ns).await;
    for name in &names {
        let id = env.client_status(&ns, name).await["internalId"].as_str().unwrap().to_string();
        let rotations = events
            .iter()
            .filter(|(op, _, path)| op == "ACTION" && *path == format!("clients/{id}/client-secret"))
            .count();
        assert_eq!(rotations, 1, "{name} rotated {rotations} times");
    }
}
