//! schedule: when a client secret is next rotated, from `secretRotation` and the last rotation. Pure:
//! the caller hands in `now`, so the operator requeues at the answer instead of sleeping per object.

use jiff::civil::{Date, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use kco_api::SecretRotation;

const ROTATION_PERIOD: &str = "secretRotation.rotationPeriod";
const ROTATION_TIME: &str = "secretRotation.rotationTime";
const TIMEZONE: &str = "secretRotation.timezone";
const GRACE_PERIOD: &str = "secretRotation.gracePeriod";

/// Longest accepted period. Anything longer is almost surely a typo, and the cap keeps
/// `last_rotation + period` far inside the range a timestamp can hold.
const MAX_PERIOD_SECS: i64 = 36_500 * 86_400;

/// A `secretRotation` field that cannot be used: the field (path from `spec`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct ScheduleError {
    pub field: &'static str,
    pub message: String,
}

impl ScheduleError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

/// `rotationPeriod`: a positive integer and one unit `s`, `m`, `h` or `d`. A day is 24 hours of
/// elapsed time, not a calendar day, so a period spanning a DST change is still exactly that long.
pub fn parse_period(s: &str) -> Result<SignedDuration, ScheduleError> {
    parse_duration(ROTATION_PERIOD, s, "like 90d or 12h")
}

/// `gracePeriod`: the same grammar as `rotationPeriod`.
pub fn parse_grace_period(s: &str) -> Result<SignedDuration, ScheduleError> {
    parse_duration(GRACE_PERIOD, s, "like 1h or 30m")
}

/// An interval outside a spec (the operator's `--resync`), in the same grammar as `rotationPeriod`:
/// one parser for every duration kco reads.
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    parse_duration("interval", s, "like 30s or 5m").map(|d| d.unsigned_abs()).map_err(|e| e.message)
}

fn parse_duration(field: &'static str, s: &str, example: &str) -> Result<SignedDuration, ScheduleError> {
    let fix = format!("use a number and a unit s, m, h or d, {example}");
    let not_a_duration = || ScheduleError::new(field, format!("{s:?} is not a duration; {fix}"));
    if s.is_empty() {
        return Err(ScheduleError::new(field, format!("must not be empty; {fix}")));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(ScheduleError::new(
            field,
            format!("{s:?} contains whitespace; write the number and the unit together, {example}"),
        ));
    }
    if s.starts_with('-') {
        return Err(ScheduleError::new(field, format!("{s:?} is negative; {fix}")));
    }
    let Some((unit_at, unit)) = s.char_indices().last() else {
        return Err(not_a_duration());
    };
    let number = s.get(..unit_at).unwrap_or_default();
    if unit.is_ascii_digit() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScheduleError::new(field, format!("{s:?} has no unit; {fix}")));
    }
    let unit_secs: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(not_a_duration()),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_duration());
    }
    let too_long = || {
        ScheduleError::new(
            field,
            format!("{s:?} is longer than the maximum of 36500d (100 years); use a shorter one, {example}"),
        )
    };
    let mut n: i64 = 0;
    for b in number.bytes() {
        n = n.checked_mul(10).and_then(|n| n.checked_add(i64::from(b - b'0'))).ok_or_else(too_long)?;
    }
    if n == 0 {
        return Err(ScheduleError::new(field, format!("{s:?} is zero; use a positive number, {example}")));
    }
    let secs = n.checked_mul(unit_secs).filter(|&secs| secs <= MAX_PERIOD_SECS).ok_or_else(too_long)?;
    Ok(SignedDuration::from_secs(secs))
}

/// `rotationTime`: exactly `HH:MM`, two digits each, 00-23 and 00-59. Strict so that `7:00` or `0700`
/// is reported instead of being read as something the user did not mean.
pub fn parse_rotation_time(s: &str) -> Result<Time, ScheduleError> {
    let err = || {
        ScheduleError::new(
            ROTATION_TIME,
            format!("{s:?} is not a time of day; use HH:MM with hours 00-23 and minutes 00-59, like 02:00"),
        )
    };
    let [h1, h2, b':', m1, m2] = *s.as_bytes() else {
        return Err(err());
    };
    if ![h1, h2, m1, m2].iter().all(u8::is_ascii_digit) {
        return Err(err());
    }
    let hour = (h1 - b'0') * 10 + (h2 - b'0');
    let minute = (m1 - b'0') * 10 + (m2 - b'0');
    if hour > 23 || minute > 59 {
        return Err(err());
    }
    Time::new(hour as i8, minute as i8, 0, 0).map_err(|_| err())
}

/// `timezone`: an IANA name from jiff's bundled database, so the answer does not depend on the
/// tzdata installed in the operator's image.
pub fn parse_timezone(s: &str) -> Result<TimeZone, ScheduleError> {
    let err = || {
        ScheduleError::new(
            TIMEZONE,
            format!("{s:?} is not a known IANA time zone; use a name like UTC, Europe/Amsterdam or America/New_York"),
        )
    };
    // jiff maps "Etc/Unknown" to a placeholder zone rather than failing; it is never what a user meant.
    if s.eq_ignore_ascii_case("Etc/Unknown") {
        return Err(err());
    }
    TimeZone::get(s).map_err(|_| err())
}

/// Every problem in `rotation`, for validation (empty when usable).
pub fn check_rotation(rotation: &SecretRotation) -> Vec<ScheduleError> {
    let mut errs = Vec::new();
    errs.extend(parse_period(&rotation.rotation_period).err());
    if let Some(t) = &rotation.rotation_time {
        errs.extend(parse_rotation_time(t).err());
    }
    errs.extend(parse_timezone(&rotation.timezone).err());
    if let Some(g) = &rotation.grace_period {
        errs.extend(parse_grace_period(g).err());
    }
    errs
}

/// When the secret last rotated at `last_rotation` is rotated next (ignores `enabled`).
///
/// The secret becomes eligible at `last_rotation + period`. Without `rotationTime` that is the answer.
/// With it, eligibility comes earlier by a slack of half the period, at most a minute — a rotation that
/// ran a moment after its 02:00 slot (reconcile latency) must not push a daily 02:00 rotation to the
/// day after next — and the answer is the first instant at or after eligibility whose wall clock in
/// `timezone` reads HH:MM. When HH:MM is skipped by a DST gap, the time is taken as if the clock had not moved
/// (jiff's "compatible", RFC 5545): 02:30 in a 02:00→03:00 gap means 03:30. When HH:MM happens twice,
/// the earlier occurrence is used unless it is already before eligibility.
pub fn next_rotation_at(last_rotation: Timestamp, rotation: &SecretRotation) -> Result<Timestamp, ScheduleError> {
    let period = parse_period(&rotation.rotation_period)?;
    let out_of_range = || {
        ScheduleError::new(
            ROTATION_PERIOD,
            format!("{:?} puts the next rotation beyond the year 9999; use a shorter period", rotation.rotation_period),
        )
    };
    let Some(time) = rotation.rotation_time.as_deref() else {
        return last_rotation.checked_add(period).map_err(|_| out_of_range());
    };
    let time = parse_rotation_time(time)?;
    let tz = parse_timezone(&rotation.timezone)?;
    let slack = (period / 2).min(SignedDuration::from_mins(1));
    let eligible = last_rotation.checked_add(period - slack).map_err(|_| out_of_range())?;

    // Start a day early: where a zone falls back across midnight, the previous local date recurs
    // after `eligible`. Four days cover that and a local date skipped entirely (Samoa, 2011).
    let mut day = tz.to_datetime(eligible).date().yesterday().map_err(|_| out_of_range())?;
    for _ in 0..4 {
        for at in wall_clock_instants(&tz, day, time).ok_or_else(out_of_range)? {
            if at >= eligible {
                return Ok(at);
            }
        }
        day = day.tomorrow().map_err(|_| out_of_range())?;
    }
    Err(ScheduleError::new(
        ROTATION_TIME,
        format!("{time} never occurs in {} around {eligible}; pick another rotationTime", rotation.timezone),
    ))
}

/// The instants, in order, at which the wall clock in `tz` reads `time` on `day`: one normally, two in
/// a fold, and in a gap the one jiff's "compatible" disambiguation gives.
fn wall_clock_instants(tz: &TimeZone, day: Date, time: Time) -> Option<Vec<Timestamp>> {
    let at = tz.to_ambiguous_timestamp(day.to_datetime(time));
    Some(match at.offset() {
        AmbiguousOffset::Fold { .. } => vec![at.earlier().ok()?, at.later().ok()?],
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Gap { .. } => vec![at.compatible().ok()?],
    })
}

/// Whether the secret should be rotated at `now`. A secret never rotated counts from `created`.
pub fn rotation_due(
    last_rotation: Option<Timestamp>,
    created: Timestamp,
    rotation: &SecretRotation,
    now: Timestamp,
) -> Result<bool, ScheduleError> {
    if !rotation.enabled {
        return Ok(false);
    }
    Ok(next_rotation_at(last_rotation.unwrap_or(created), rotation)? <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rot(period: &str, time: Option<&str>, tz: &str) -> SecretRotation {
        SecretRotation {
            enabled: true,
            rotation_period: period.into(),
            rotation_time: time.map(Into::into),
            timezone: tz.into(),
            grace_period: None,
        }
    }

    fn next(last: &str, period: &str, time: Option<&str>, tz: &str) -> Timestamp {
        next_rotation_at(ts(last), &rot(period, time, tz)).unwrap()
    }

    fn local(at: Timestamp, tz: &str) -> String {
        at.to_zoned(TimeZone::get(tz).unwrap()).datetime().to_string()
    }

    // ---- parse_period ----

    #[test]
    fn period_seconds() {
        assert_eq!(parse_period("10s").unwrap(), SignedDuration::from_secs(10));
    }

    #[test]
    fn period_minutes() {
        assert_eq!(parse_period("30m").unwrap(), SignedDuration::from_mins(30));
    }

    #[test]
    fn period_hours() {
        assert_eq!(parse_period("24h").unwrap(), SignedDuration::from_hours(24));
    }

    #[test]
    fn period_days_are_24_hours() {
        assert_eq!(parse_period("90d").unwrap(), SignedDuration::from_hours(90 * 24));
    }

    #[test]
    fn period_maximum_is_accepted() {
        assert_eq!(parse_period("36500d").unwrap(), SignedDuration::from_hours(36_500 * 24));
    }

    #[test]
    fn period_error_display_names_field_and_fix() {
        assert_eq!(
            parse_period("5x").unwrap_err().to_string(),
            "spec.secretRotation.rotationPeriod: \"5x\" is not a duration; use a number and a unit s, m, h or d, \
             like 90d or 12h"
        );
    }

    fn assert_bad_period(s: &str, says: &str) {
        let e = parse_period(s).unwrap_err();
        assert_eq!(e.field, "secretRotation.rotationPeriod", "{s:?}");
        let shown = e.to_string();
        assert!(shown.starts_with("spec.secretRotation.rotationPeriod: "), "{s:?}: {shown}");
        assert!(shown.contains(says), "{s:?}: {shown}");
        assert!(shown.contains("like "), "{s:?} gives no example: {shown}");
    }

    #[test]
    fn period_rejects_empty() {
        assert_bad_period("", "must not be empty");
    }

    #[test]
    fn period_rejects_zero() {
        assert_bad_period("0d", "is zero");
        assert_bad_period("0s", "is zero");
        assert_bad_period("000h", "is zero");
    }

    #[test]
    fn period_rejects_negative() {
        assert_bad_period("-5d", "is negative");
    }

    #[test]
    fn period_rejects_plus_sign() {
        assert_bad_period("+5d", "is not a duration");
    }

    #[test]
    fn period_rejects_missing_unit() {
        assert_bad_period("90", "has no unit");
    }

    #[test]
    fn period_rejects_missing_number() {
        assert_bad_period("d", "is not a duration");
    }

    #[test]
    fn period_rejects_unknown_unit() {
        assert_bad_period("5x", "is not a duration");
        assert_bad_period("5w", "is not a duration");
        assert_bad_period("5ms", "is not a duration");
    }

    #[test]
    fn period_rejects_uppercase_unit() {
        assert_bad_period("5D", "is not a duration");
    }

    #[test]
    fn period_rejects_two_units() {
        assert_bad_period("1h30m", "is not a duration");
    }

    #[test]
    fn period_rejects_fraction() {
        assert_bad_period("1.5h", "is not a duration");
    }

    #[test]
    fn period_rejects_non_ascii_digits() {
        assert_bad_period("٣d", "is not a duration");
    }

    #[test]
    fn period_rejects_whitespace() {
        for s in ["90 d", " 90d", "90d ", "9 0d", "90\td"] {
            assert_bad_period(s, "contains whitespace");
        }
    }

    #[test]
    fn period_rejects_overflow() {
        assert_bad_period("99999999999999999999d", "longer than the maximum");
        assert_bad_period("9223372036854775807d", "longer than the maximum");
    }

    #[test]
    fn period_rejects_more_than_100_years() {
        assert_bad_period("36501d", "longer than the maximum");
    }

    // ---- parse_grace_period ----

    #[test]
    fn grace_period_parses_like_period() {
        assert_eq!(parse_grace_period("1h").unwrap(), SignedDuration::from_hours(1));
    }

    #[test]
    fn grace_period_errors_name_grace_period() {
        for s in ["", "0s", "1 h", "1x", "1"] {
            let e = parse_grace_period(s).unwrap_err();
            assert_eq!(e.field, "secretRotation.gracePeriod");
            assert!(e.to_string().starts_with("spec.secretRotation.gracePeriod: "), "{e}");
        }
    }

    // ---- parse_rotation_time ----

    #[test]
    fn rotation_time_valid() {
        assert_eq!(parse_rotation_time("00:00").unwrap(), Time::midnight());
        assert_eq!(parse_rotation_time("07:05").unwrap(), Time::constant(7, 5, 0, 0));
        assert_eq!(parse_rotation_time("23:59").unwrap(), Time::constant(23, 59, 0, 0));
    }

    #[test]
    fn rotation_time_rejects_every_bad_form() {
        for s in
            ["24:00", "7:00", "07:60", "0700", "", "07:00:00", " 07:00", "07:00 ", "07-00", "aa:bb", "7:5", "-1:00"]
        {
            let e = parse_rotation_time(s).unwrap_err();
            assert_eq!(e.field, "secretRotation.rotationTime", "{s:?}");
            let shown = e.to_string();
            assert!(shown.starts_with("spec.secretRotation.rotationTime: "), "{shown}");
            assert!(shown.contains("like 02:00"), "{shown}");
        }
    }

    // ---- parse_timezone ----

    #[test]
    fn timezone_known_names() {
        for s in ["UTC", "Europe/Amsterdam", "America/New_York"] {
            assert!(parse_timezone(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn timezone_unknown_is_rejected() {
        for s in ["Mars/Olympus", "", "Etc/Unknown", "Europe/Amsterdam "] {
            let e = parse_timezone(s).unwrap_err();
            assert_eq!(e.field, "secretRotation.timezone");
            let shown = e.to_string();
            assert!(shown.starts_with("spec.secretRotation.timezone: "), "{shown}");
            assert!(shown.contains("Europe/Amsterdam"), "{shown}");
        }
    }

    // ---- check_rotation ----

    #[test]
    fn check_rotation_reports_every_bad_field() {
        let mut r = rot("5x", Some("24:00"), "Mars/Olympus");
        r.grace_period = Some("0s".into());
        let fields: Vec<_> = check_rotation(&r).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "secretRotation.rotationPeriod",
                "secretRotation.rotationTime",
                "secretRotation.timezone",
                "secretRotation.gracePeriod"
            ]
        );
    }

    #[test]
    fn check_rotation_accepts_reference_example() {
        assert!(check_rotation(&rot("30d", Some("02:00"), "UTC")).is_empty());
    }

    // ---- next_rotation_at without rotationTime ----

    #[test]
    fn no_rotation_time_is_exactly_eligible_days() {
        assert_eq!(next("2026-01-01T00:00:00Z", "90d", None, "UTC"), ts("2026-04-01T00:00:00Z"));
    }

    #[test]
    fn no_rotation_time_is_exactly_eligible_hours() {
        assert_eq!(next("2026-05-01T10:15:00Z", "24h", None, "UTC"), ts("2026-05-02T10:15:00Z"));
    }

    #[test]
    fn no_rotation_time_is_exactly_eligible_minutes() {
        assert_eq!(next("2026-05-01T10:15:00Z", "30m", None, "UTC"), ts("2026-05-01T10:45:00Z"));
    }

    #[test]
    fn ten_seconds_without_rotation_time() {
        assert_eq!(next("2026-05-01T10:15:55Z", "10s", None, "UTC"), ts("2026-05-01T10:16:05Z"));
    }

    #[test]
    fn no_rotation_time_ignores_timezone() {
        assert_eq!(next("2026-05-01T10:15:00Z", "1h", None, "Europe/Amsterdam"), ts("2026-05-01T11:15:00Z"));
    }

    // ---- next_rotation_at with rotationTime ----

    #[test]
    fn ten_seconds_with_rotation_time_before_the_time() {
        assert_eq!(next("2026-05-01T01:59:40Z", "10s", Some("02:00"), "UTC"), ts("2026-05-01T02:00:00Z"));
    }

    #[test]
    fn ten_seconds_with_rotation_time_just_past_the_time_waits_a_day() {
        // The slack is half of 10s: eligible at 02:00:01, just past the slot.
        assert_eq!(next("2026-05-01T01:59:56Z", "10s", Some("02:00"), "UTC"), ts("2026-05-02T02:00:00Z"));
    }

    #[test]
    fn utc_eligible_before_time_same_day() {
        assert_eq!(next("2026-05-01T00:00:00Z", "1d", Some("02:00"), "UTC"), ts("2026-05-02T02:00:00Z"));
    }

    #[test]
    fn utc_eligible_after_time_next_day() {
        assert_eq!(next("2026-05-01T03:00:00Z", "1d", Some("02:00"), "UTC"), ts("2026-05-03T02:00:00Z"));
    }

    #[test]
    fn utc_eligible_exactly_at_time() {
        assert_eq!(next("2026-05-01T02:00:00Z", "1d", Some("02:00"), "UTC"), ts("2026-05-02T02:00:00Z"));
    }

    #[test]
    fn amsterdam_summer_eligible_before_time_same_day() {
        // Eligible 2026-06-02 02:00 CEST; 03:00 CEST is 01:00Z.
        assert_eq!(next("2026-06-01T00:00:00Z", "1d", Some("03:00"), "Europe/Amsterdam"), ts("2026-06-02T01:00:00Z"));
    }

    #[test]
    fn amsterdam_summer_eligible_after_time_next_day() {
        // Eligible 2026-06-02 02:00 CEST, 01:00 has passed: 2026-06-03 01:00 CEST.
        assert_eq!(next("2026-06-01T00:00:00Z", "1d", Some("01:00"), "Europe/Amsterdam"), ts("2026-06-02T23:00:00Z"));
    }

    #[test]
    fn amsterdam_winter_uses_cet() {
        assert_eq!(next("2026-01-10T00:00:00Z", "1d", Some("02:00"), "Europe/Amsterdam"), ts("2026-01-11T01:00:00Z"));
    }

    #[test]
    fn new_york_eligible_before_time_same_day() {
        // Eligible 07:00 EST.
        assert_eq!(next("2026-01-10T12:00:00Z", "1d", Some("09:00"), "America/New_York"), ts("2026-01-11T14:00:00Z"));
    }

    #[test]
    fn new_york_eligible_after_time_next_day() {
        assert_eq!(next("2026-01-10T12:00:00Z", "1d", Some("06:00"), "America/New_York"), ts("2026-01-12T11:00:00Z"));
    }

    #[test]
    fn new_york_local_day_differs_from_utc_day() {
        // Eligible 2026-01-11T03:00Z is still 2026-01-10 22:00 in New York.
        assert_eq!(next("2026-01-10T03:00:00Z", "1d", Some("23:00"), "America/New_York"), ts("2026-01-11T04:00:00Z"));
    }

    #[test]
    fn spring_forward_missing_time_runs_after_the_gap() {
        // Amsterdam 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist; it maps to
        // 03:30 CEST (01:30Z), the "compatible" reading.
        let at = next("2026-03-28T00:00:00Z", "1d", Some("02:30"), "Europe/Amsterdam");
        assert_eq!(at, ts("2026-03-29T01:30:00Z"));
        assert_eq!(local(at, "Europe/Amsterdam"), "2026-03-29T03:30:00");
    }

    #[test]
    fn spring_forward_eligible_after_the_gap_waits_a_day() {
        // Eligible 03:40 CEST, after the shifted 03:30: the next 02:30 is on 2026-03-30.
        assert_eq!(next("2026-03-28T01:40:00Z", "1d", Some("02:30"), "Europe/Amsterdam"), ts("2026-03-30T00:30:00Z"));
    }

    #[test]
    fn spring_forward_day_other_times_are_normal() {
        // 04:00 exists on the spring-forward day: 04:00 CEST = 02:00Z.
        assert_eq!(next("2026-03-28T00:00:00Z", "1d", Some("04:00"), "Europe/Amsterdam"), ts("2026-03-29T02:00:00Z"));
    }

    #[test]
    fn fall_back_repeated_time_takes_the_earlier() {
        // Amsterdam 2026-10-25: 02:30 happens at 00:30Z (CEST) and again at 01:30Z (CET).
        assert_eq!(next("2026-10-24T00:00:00Z", "1d", Some("02:30"), "Europe/Amsterdam"), ts("2026-10-25T00:30:00Z"));
    }

    #[test]
    fn fall_back_eligible_between_occurrences_takes_the_second() {
        assert_eq!(next("2026-10-24T00:45:00Z", "1d", Some("02:30"), "Europe/Amsterdam"), ts("2026-10-25T01:30:00Z"));
    }

    #[test]
    fn fall_back_eligible_after_both_waits_a_day() {
        assert_eq!(next("2026-10-24T01:45:00Z", "1d", Some("02:30"), "Europe/Amsterdam"), ts("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn month_end_jan_31_plus_one_day() {
        assert_eq!(next("2026-01-31T12:00:00Z", "1d", None, "UTC"), ts("2026-02-01T12:00:00Z"));
        assert_eq!(next("2026-01-31T12:00:00Z", "1d", Some("02:00"), "UTC"), ts("2026-02-02T02:00:00Z"));
    }

    #[test]
    fn month_end_feb_28_non_leap_year() {
        assert_eq!(next("2026-02-28T12:00:00Z", "1d", None, "UTC"), ts("2026-03-01T12:00:00Z"));
        assert_eq!(next("2026-02-27T12:00:00Z", "1d", Some("02:00"), "UTC"), ts("2026-03-01T02:00:00Z"));
    }

    #[test]
    fn month_end_feb_29_leap_year() {
        assert_eq!(next("2028-02-28T12:00:00Z", "1d", None, "UTC"), ts("2028-02-29T12:00:00Z"));
        assert_eq!(next("2028-02-27T12:00:00Z", "1d", Some("02:00"), "UTC"), ts("2028-02-29T02:00:00Z"));
        assert_eq!(next("2028-02-29T12:00:00Z", "1d", None, "UTC"), ts("2028-03-01T12:00:00Z"));
    }

    #[test]
    fn year_end_without_rotation_time() {
        assert_eq!(next("2026-12-31T23:00:00Z", "2h", None, "UTC"), ts("2027-01-01T01:00:00Z"));
    }

    #[test]
    fn year_end_with_rotation_time() {
        assert_eq!(next("2026-12-31T23:00:00Z", "30m", Some("00:30"), "UTC"), ts("2027-01-01T00:30:00Z"));
        // 2026-12-31 23:30 in Amsterdam is 22:30Z; 00:30 local on New Year's Day is 23:30Z.
        assert_eq!(next("2026-12-31T22:00:00Z", "30m", Some("00:30"), "Europe/Amsterdam"), ts("2026-12-31T23:30:00Z"));
    }

    #[test]
    fn thirty_days_across_dst_is_elapsed_time() {
        // 02:00 CET on 03-15; 30*24h later the wall clock says 03:00 CEST.
        let at = next("2026-03-15T01:00:00Z", "30d", None, "Europe/Amsterdam");
        assert_eq!(at, ts("2026-04-14T01:00:00Z"));
        assert_eq!(at.duration_since(ts("2026-03-15T01:00:00Z")), SignedDuration::from_hours(30 * 24));
        assert_eq!(local(at, "Europe/Amsterdam"), "2026-04-14T03:00:00");
    }

    #[test]
    fn thirty_days_across_dst_with_rotation_time_keeps_wall_clock() {
        let at = next("2026-03-15T01:00:00Z", "30d", Some("04:00"), "Europe/Amsterdam");
        assert_eq!(at, ts("2026-04-14T02:00:00Z"));
        assert_eq!(local(at, "Europe/Amsterdam"), "2026-04-14T04:00:00");
        // 02:00 local has passed when eligible (03:00 CEST), so the next day.
        let at = next("2026-03-15T01:00:00Z", "30d", Some("02:00"), "Europe/Amsterdam");
        assert_eq!(local(at, "Europe/Amsterdam"), "2026-04-15T02:00:00");
    }

    #[test]
    fn thirty_days_across_fall_back_in_new_york() {
        let at = next("2026-10-20T13:00:00Z", "30d", Some("09:00"), "America/New_York");
        assert_eq!(local(at, "America/New_York"), "2026-11-19T09:00:00");
        assert_eq!(at, ts("2026-11-19T14:00:00Z"));
    }

    #[test]
    fn next_rotation_reports_bad_fields() {
        let e = next_rotation_at(ts("2026-01-01T00:00:00Z"), &rot("90", None, "UTC")).unwrap_err();
        assert_eq!(e.field, "secretRotation.rotationPeriod");
        let e = next_rotation_at(ts("2026-01-01T00:00:00Z"), &rot("1d", Some("7:00"), "UTC")).unwrap_err();
        assert_eq!(e.field, "secretRotation.rotationTime");
        let e = next_rotation_at(ts("2026-01-01T00:00:00Z"), &rot("1d", Some("07:00"), "Mars/Olympus")).unwrap_err();
        assert_eq!(e.field, "secretRotation.timezone");
    }

    #[test]
    fn next_rotation_beyond_representable_time_is_an_error() {
        let e = next_rotation_at(Timestamp::MAX, &rot("1d", None, "UTC")).unwrap_err();
        assert_eq!(e.field, "secretRotation.rotationPeriod");
        assert!(e.to_string().contains("beyond the year 9999"), "{e}");
    }

    // ---- rotation_due ----

    #[test]
    fn due_counts_from_created_when_never_rotated() {
        let r = rot("1h", None, "UTC");
        let created = ts("2026-05-01T10:00:00Z");
        assert!(!rotation_due(None, created, &r, ts("2026-05-01T10:59:59Z")).unwrap());
        assert!(rotation_due(None, created, &r, ts("2026-05-01T11:00:00Z")).unwrap());
    }

    #[test]
    fn due_counts_from_last_rotation_when_present() {
        let r = rot("1h", None, "UTC");
        let created = ts("2026-01-01T00:00:00Z");
        let last = Some(ts("2026-05-01T10:00:00Z"));
        assert!(!rotation_due(last, created, &r, ts("2026-05-01T10:30:00Z")).unwrap());
        assert!(rotation_due(last, created, &r, ts("2026-05-01T11:00:01Z")).unwrap());
    }

    #[test]
    fn due_waits_for_rotation_time() {
        let r = rot("1h", Some("02:00"), "UTC");
        let last = Some(ts("2026-05-01T10:00:00Z"));
        assert!(!rotation_due(last, ts("2026-01-01T00:00:00Z"), &r, ts("2026-05-01T23:00:00Z")).unwrap());
        assert!(rotation_due(last, ts("2026-01-01T00:00:00Z"), &r, ts("2026-05-02T02:00:00Z")).unwrap());
    }

    #[test]
    fn not_due_when_disabled() {
        let mut r = rot("10s", None, "UTC");
        r.enabled = false;
        assert!(!rotation_due(None, ts("2020-01-01T00:00:00Z"), &r, ts("2026-05-01T00:00:00Z")).unwrap());
    }

    #[test]
    fn due_reports_bad_period_when_enabled() {
        let r = rot("soon", None, "UTC");
        let e = rotation_due(None, ts("2026-01-01T00:00:00Z"), &r, ts("2026-05-01T00:00:00Z")).unwrap_err();
        assert_eq!(e.field, "secretRotation.rotationPeriod");
    }

    #[test]
    fn a_rotation_that_ran_late_keeps_the_daily_slot() {
        let r = rot("1d", Some("02:00"), "Europe/Amsterdam");
        // Rotated one second after the 02:00 slot (reconcile latency): next is 02:00 the next day.
        let next = next_rotation_at(ts("2026-06-10T00:00:01Z"), &r).unwrap();
        assert_eq!(next, ts("2026-06-11T00:00:00Z"));
        // Rotated more than the slack after the slot: a whole period has not passed by the next one.
        let next = next_rotation_at(ts("2026-06-10T00:01:01Z"), &r).unwrap();
        assert_eq!(next, ts("2026-06-12T00:00:00Z"));
    }
}
