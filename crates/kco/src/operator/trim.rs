//! Hands the heap's free pages back to the system once a burst of reconciles is over.
//!
//! glibc gives freed memory back only from the top of its heap. A burst (a thousand clients applied
//! at once, a restart that checks every client) allocates far more than stays live, and the pages
//! it freed below the allocations that do stay (the cached objects, updated with their new status)
//! stay resident: on 2026-12-07, after provisioning 1,000 clients, the operator's heap held 20 MiB
//! resident of which `malloc_trim` gave back 11 (`/proc/PID/smaps`, gdb calling it by hand). So a
//! few seconds after the reconciles stop, kco asks glibc for them back, once per burst. Elsewhere
//! (musl, the `mimalloc` feature) this does nothing: those allocators give memory back themselves.
//!
//! Written by hand: no well-kept crate wraps the one glibc call, and the call is the only unsafe
//! code in kco (the workspace denies it everywhere else).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the reconcile count is looked at.
const TICK: Duration = Duration::from_secs(5);
/// Trim even while reconciles go on, after this many ticks of them (a steady trickle never pauses).
const BUSY_TICKS: u32 = 12;

/// When to trim, from the count of finished reconciles seen at each tick.
#[derive(Debug, Default)]
pub struct Settle {
    seen: u64,
    /// Ticks since the first reconcile after the last trim; `None`: none since.
    busy_for: Option<u32>,
}

impl Settle {
    /// Whether to trim now, given the count of finished reconciles: some finished since the last
    /// trim, and none during the last tick or they have gone on for [`BUSY_TICKS`] ticks.
    pub fn tick(&mut self, count: u64) -> bool {
        let moved = count != self.seen;
        self.seen = count;
        let trim = match (self.busy_for, moved) {
            (None, false) => false,
            (None, true) => {
                self.busy_for = Some(1);
                false
            }
            (Some(_), false) => true,
            (Some(n), true) if n + 1 >= BUSY_TICKS => true,
            (Some(n), true) => {
                self.busy_for = Some(n + 1);
                false
            }
        };
        if trim {
            self.busy_for = None;
        }
        trim
    }
}

/// Runs for as long as the operator: trims after each burst of the reconciles `finished` counts.
pub async fn run(finished: Arc<AtomicU64>) {
    let mut settle = Settle::default();
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if settle.tick(finished.load(Ordering::Relaxed)) {
            // It holds the allocator's lock while it walks the heap: say how long that took.
            let started = std::time::Instant::now();
            let released = release();
            tracing::debug!(released, took = ?started.elapsed(), "gave the heap's free pages back to the system after a burst of reconciles");
        }
    }
}

/// glibc's `malloc_trim(0)`: every arena's free pages go back to the system. Whether any did.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
#[allow(unsafe_code)]
fn release() -> bool {
    // SAFETY: malloc_trim takes no pointers and touches only glibc's own free lists, under the
    // arena locks every allocation takes; glibc allows it from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"))))]
fn release() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_happened_nothing_to_trim() {
        let mut s = Settle::default();
        assert!(!(0..100).any(|_| s.tick(0)));
    }

    #[test]
    fn a_burst_is_trimmed_once_after_it_stops() {
        let mut s = Settle::default();
        assert!(!s.tick(10));
        assert!(!s.tick(500));
        assert!(!s.tick(1000));
        assert!(s.tick(1000), "the first quiet tick trims");
        assert!(!s.tick(1000), "and only once");
        assert!(!s.tick(1000));
        assert!(!s.tick(1001), "a new burst starts");
        assert!(s.tick(1001));
    }

    #[test]
    fn a_steady_trickle_is_trimmed_every_busy_ticks() {
        let mut s = Settle::default();
        let trims: Vec<u64> = (1..=40u64).filter(|i| s.tick(*i)).collect();
        assert_eq!(trims, vec![12, 24, 36]);
    }

    #[test]
    fn trimming_is_harmless_at_any_time() {
        let v: Vec<Vec<u8>> = (0..1000).map(|i| vec![0u8; 100 + i]).collect();
        drop(v);
        let _ = release();
        let again: Vec<u8> = vec![1; 4096];
        assert_eq!(again.iter().map(|b| u64::from(*b)).sum::<u64>(), 4096);
    }
}
