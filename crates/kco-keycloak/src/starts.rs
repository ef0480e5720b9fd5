//! When Keycloak started, from the uptime its server info reports: a start kco has not seen before
//! means Keycloak restarted (or a new replica joined) since kco last looked, even when no request of
//! kco's ever failed meanwhile (a restart between two checks, or one hidden behind an ingress that
//! answered 502/503 instead of refusing connections).

/// The start times seen, each as a window of wall-clock milliseconds since the Unix epoch: the
/// uptime is read somewhere between sending the request and reading its answer, so the start lies
/// between `sent - uptime` and `answered - uptime`. Several windows, because a Keycloak with
/// several replicas behind one URL answers with each replica's uptime in turn.
#[derive(Clone, Debug, Default)]
pub struct Starts {
    /// Most recently seen last.
    seen: Vec<(i64, i64)>,
}

/// How far two windows may lie apart and still be one start (clock resolution, rounding).
const SLACK_MS: i64 = 2_000;
/// Windows kept: more replicas than this behind one URL make old starts look new again (a round
/// of reads, no writes), nothing worse.
const KEPT: usize = 16;

impl Starts {
    /// Note one server info answer: request sent and answer read at these wall-clock milliseconds,
    /// with this uptime. Returns whether it shows a start not seen before while an earlier one was
    /// known (the first answer only records). Arithmetic saturates: an absurd uptime cannot panic.
    pub fn observe(&mut self, sent_ms: i64, answered_ms: i64, uptime_ms: u64) -> bool {
        let uptime = i64::try_from(uptime_ms).unwrap_or(i64::MAX);
        let (lo, hi) = (sent_ms.saturating_sub(uptime), answered_ms.max(sent_ms).saturating_sub(uptime));
        let same = |&(l, h): &(i64, i64)| lo <= h.saturating_add(SLACK_MS) && hi.saturating_add(SLACK_MS) >= l;
        if let Some(i) = self.seen.iter().position(same) {
            // Keep the narrower window of the two (the same start, measured more or less tightly).
            let (l, h) = self.seen.remove(i);
            self.seen.push(if hi.saturating_sub(lo) < h.saturating_sub(l) { (lo, hi) } else { (l, h) });
            return false;
        }
        let restarted = !self.seen.is_empty();
        self.seen.push((lo, hi));
        if self.seen.len() > KEPT {
            self.seen.remove(0);
        }
        restarted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn the_first_answer_records_and_the_same_start_later_is_no_restart() {
        let mut s = Starts::default();
        // Started at t = 1,000,000 ms; looked at a minute apart, answers taking up to 3 s.
        assert!(!s.observe(1_000_000 + MIN, 1_000_000 + MIN + 40, 60_000));
        assert!(!s.observe(1_000_000 + 2 * MIN, 1_000_000 + 2 * MIN + 3_000, 121_500));
        assert!(!s.observe(1_000_000 + 3 * MIN, 1_000_000 + 3 * MIN + 10, 180_000));
    }

    #[test]
    fn a_younger_keycloak_than_expected_restarted_once() {
        let mut s = Starts::default();
        assert!(!s.observe(10 * MIN, 10 * MIN + 50, 5 * MIN as u64));
        // A minute later it has been up for 20 s: it started again.
        assert!(s.observe(11 * MIN, 11 * MIN + 50, 20_000));
        assert!(!s.observe(12 * MIN, 12 * MIN + 50, 80_000), "the new start is known now");
    }

    #[test]
    fn replicas_answering_in_turn_are_not_restarts() {
        let mut s = Starts::default();
        let (a, b) = (0_i64, 3 * MIN); // two replicas' start times
        let up = |now: i64, start: i64| (now - start) as u64;
        assert!(!s.observe(10 * MIN, 10 * MIN, up(10 * MIN, a)));
        // The second replica seen for the first time: a start kco did not know (one round of reads).
        assert!(s.observe(11 * MIN, 11 * MIN, up(11 * MIN, b)));
        for k in 12..40 {
            let start = if k % 2 == 0 { a } else { b };
            assert!(!s.observe(k * MIN, k * MIN + 100, up(k * MIN, start)), "minute {k}");
        }
    }

    #[test]
    fn odd_answers_cannot_panic() {
        let mut s = Starts::default();
        for (sent, answered, up) in [
            (0, 0, u64::MAX),
            (i64::MIN, i64::MAX, 0),
            (i64::MAX, i64::MIN, u64::MAX),
            (5, 4, 1),
            (i64::MIN, i64::MIN, u64::MAX),
        ] {
            let _ = s.observe(sent, answered, up);
        }
        for k in 0..100 {
            let _ = s.observe(k * MIN, k * MIN, 0);
        }
        assert!(s.seen.len() <= KEPT);
    }
}
