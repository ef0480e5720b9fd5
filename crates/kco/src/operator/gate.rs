//! A fair gate in front of each Keycloak instance: at most `capacity` reconciles talk to one
//! Keycloak at once, and when one finishes its slot goes to the next namespace in turn (round
//! robin), not to whichever reconcile queued first. So a namespace that applies 2,000 clients at
//! once makes Keycloak work through them at its own pace while a single client in another namespace
//! is served after at most one turn.
//!
//! Written by hand: tokio's Semaphore is first-come first-served, and no well-kept crate offers a
//! semaphore fair between keys.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Gates by Keycloak instance (its admin URL as `KeycloakAdmin::base_url` gives it, which
/// `kco_keycloak::base_url_of` computes from a cached KeycloakInstance), made on first use.
#[derive(Default)]
pub struct Gates {
    capacity: usize,
    gates: Mutex<BTreeMap<String, Arc<FairGate>>>,
}

impl Gates {
    /// `capacity` slots per instance; 0 means no limit.
    pub fn new(capacity: usize) -> Gates {
        Gates { capacity, gates: Mutex::new(BTreeMap::new()) }
    }

    /// Whether there is no limit (capacity 0).
    pub fn unlimited(&self) -> bool {
        self.capacity == 0
    }

    /// Wait for a slot of `instance`'s gate on behalf of namespace `tenant`; `None` without a limit.
    pub async fn enter(&self, instance: &str, tenant: &str) -> Option<Permit> {
        if self.capacity == 0 {
            return None;
        }
        let gate = {
            let mut gates = lock(&self.gates);
            gates.entry(instance.to_string()).or_insert_with(|| Arc::new(FairGate::new(self.capacity))).clone()
        };
        Some(gate.enter(tenant).await)
    }
}

pub struct FairGate {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    in_use: usize,
    /// Reconciles waiting, by namespace, in arrival order.
    waiting: BTreeMap<String, VecDeque<oneshot::Sender<()>>>,
    /// The namespace served last: the next slot goes to the first waiting namespace after it.
    last: Option<String>,
}

/// A slot of a gate; dropping it hands the slot on.
pub struct Permit {
    gate: Arc<FairGate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// A queued wait; dropped before it is served, it leaves no trace, and dropped after being handed a
/// slot it never used, it hands that slot on.
struct Waiting {
    rx: Option<oneshot::Receiver<()>>,
    gate: Arc<FairGate>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the state half-updated in a way that matters
    // more than stopping every reconcile would: keep going with what is there.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FairGate {
    pub fn new(capacity: usize) -> FairGate {
        FairGate { capacity: capacity.max(1), state: Mutex::new(State::default()) }
    }

    pub async fn enter(self: &Arc<Self>, tenant: &str) -> Permit {
        let rx = {
            let mut s = lock(&self.state);
            if s.in_use < self.capacity && s.waiting.is_empty() {
                s.in_use += 1;
                s.last = Some(tenant.to_string());
                return Permit { gate: self.clone() };
            }
            let (tx, rx) = oneshot::channel();
            s.waiting.entry(tenant.to_string()).or_default().push_back(tx);
            rx
        };
        let mut waiting = Waiting { rx: Some(rx), gate: self.clone() };
        if let Some(rx) = waiting.rx.as_mut() {
            // The sender is only dropped after a successful send (or with the gate): either way,
            // this wait is over and the slot, if any, is ours.
            let _ = rx.await;
        }
        waiting.rx = None;
        Permit { gate: self.clone() }
    }

    /// Hand a finished slot to the next waiting namespace after the last one served, or free it.
    fn release(&self) {
        let mut s = lock(&self.state);
        loop {
            let after_last = s.last.as_ref().and_then(|last| {
                let from = (std::ops::Bound::Excluded(last.clone()), std::ops::Bound::Unbounded);
                s.waiting.range::<String, _>(from).next().map(|(k, _)| k.clone())
            });
            let next = after_last.or_else(|| s.waiting.keys().next().cloned());
            let Some(tenant) = next else {
                s.in_use = s.in_use.saturating_sub(1);
                return;
            };
            let sender = s.waiting.get_mut(&tenant).and_then(VecDeque::pop_front);
            if s.waiting.get(&tenant).is_some_and(VecDeque::is_empty) {
                s.waiting.remove(&tenant);
            }
            s.last = Some(tenant);
            if let Some(tx) = sender
                && tx.send(()).is_ok()
            {
                return;
            }
            // That waiter gave up (its reconcile was cancelled): try the next one.
        }
    }

    #[cfg(test)]
    fn in_use(&self) -> usize {
        lock(&self.state).in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    type Served = tokio::sync::mpsc::UnboundedSender<(&'static str, oneshot::Sender<()>)>;

    /// Enter `gate` for `tenant` in a task that, once served, reports its name and a way to end it
    /// on `log`, then holds the slot until ended.
    fn queue(gate: &Arc<FairGate>, tenant: &'static str, log: &Served) {
        let (gate, log) = (gate.clone(), log.clone());
        tokio::spawn(async move {
            let _permit = gate.enter(tenant).await;
            let (done, wait) = oneshot::channel::<()>();
            let _ = log.send((tenant, done));
            let _ = wait.await;
        });
    }

    #[tokio::test]
    async fn a_newcomer_namespace_is_served_before_the_backlog_of_another() {
        let gate = Arc::new(FairGate::new(1));
        let (log, mut served) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..6 {
            queue(&gate, "busy", &log);
        }
        settle().await;
        queue(&gate, "quiet", &log);
        settle().await;
        let mut order = Vec::new();
        for _ in 0..7 {
            let Some((tenant, done)) = served.recv().await else { break };
            order.push(tenant);
            let _ = done.send(());
        }
        // The first busy reconcile held the slot; the next went to quiet, not to busy's backlog.
        assert_eq!(order, ["busy", "quiet", "busy", "busy", "busy", "busy", "busy"]);
    }

    #[tokio::test]
    async fn capacity_is_never_exceeded_and_slots_are_freed() {
        let gate = Arc::new(FairGate::new(3));
        let (log, mut served) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..10 {
            queue(&gate, if i % 2 == 0 { "a" } else { "b" }, &log);
        }
        settle().await;
        assert_eq!(gate.in_use(), 3);
        let mut held = Vec::new();
        while let Ok((_, done)) = served.try_recv() {
            held.push(done);
        }
        assert_eq!(held.len(), 3, "three served at once");
        let mut ended = 0;
        while let Some(done) = held.pop() {
            let _ = done.send(());
            ended += 1;
            settle().await;
            assert!(gate.in_use() <= 3);
            while let Ok((_, done)) = served.try_recv() {
                held.push(done);
            }
        }
        assert_eq!(ended, 10);
        assert_eq!(gate.in_use(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_does_not_lose_its_slot() {
        let gate = Arc::new(FairGate::new(1));
        let held = gate.enter("a").await;
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _p = gate.enter("b").await;
                std::future::pending::<()>().await;
            })
        };
        settle().await;
        waiter.abort();
        settle().await;
        drop(held);
        // The aborted waiter's turn is skipped or handed on: the gate is free again.
        let free = tokio::time::timeout(Duration::from_secs(1), gate.enter("c")).await;
        assert!(free.is_ok(), "the slot was lost to a cancelled waiter");
    }
}
