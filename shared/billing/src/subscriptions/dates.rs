//! Renewal date arithmetic, pure and in UTC.
//!
//! Intervals are whole calendar months: a month, or a year (12 months, so a
//! Feb 29 start renews on Feb 28 in common years and Feb 29 in leap years).
//!
//! A subscription renews on its *anchor day*, the day of the month it started
//! on. Months shorter than the anchor day renew on their last day, and the
//! next month goes back to the anchor: Jan 31 → Feb 28 (29 in a leap year) →
//! Mar 31 → Apr 30. The time of day is kept. Because every renewal date is
//! computed from the anchor (never from the previous, clamped date), dates
//! never drift towards the start of the month.

use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime, UtcOffset};

/// How long a `past_due` subscription is retried before it expires.
pub const GRACE_PERIOD: Duration = Duration::days(7);

/// The day of the month a subscription renews on (1..=31).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AnchorDay(u8);

impl AnchorDay {
    pub fn new(day: u8) -> Option<AnchorDay> {
        (1..=31).contains(&day).then_some(AnchorDay(day))
    }

    /// The anchor of a subscription that starts at `start`.
    pub fn of(start: OffsetDateTime) -> AnchorDay {
        AnchorDay(start.to_offset(UtcOffset::UTC).day())
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// How often a subscription renews.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interval {
    Month,
    Year,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }

    pub fn parse(text: &str) -> Option<Interval> {
        match text {
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }

    pub fn months(self) -> u32 {
        match self {
            Interval::Month => 1,
            Interval::Year => 12,
        }
    }
}

/// `at` moved `months` calendar months on, onto the anchor day clamped to the
/// length of the target month, same time of day (UTC). `None` past year 9999.
pub fn add_months(at: OffsetDateTime, anchor: AnchorDay, months: u32) -> Option<OffsetDateTime> {
    shift_months(at, anchor, i64::from(months))
}

/// Like [`add_months`], backwards or forwards.
pub fn shift_months(at: OffsetDateTime, anchor: AnchorDay, months: i64) -> Option<OffsetDateTime> {
    let at = at.to_offset(UtcOffset::UTC);
    let index = i64::from(at.year()) * 12 + i64::from(u8::from(at.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    if !(1..=9999).contains(&year) {
        return None;
    }
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = anchor.get().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(date.with_time(at.time()).assume_utc())
}

/// The monthly renewal date after `due`.
pub fn next_renewal(due: OffsetDateTime, anchor: AnchorDay) -> Option<OffsetDateTime> {
    add_months(due, anchor, 1)
}

/// The renewal date one `interval` after `due`.
pub fn next_due(
    due: OffsetDateTime,
    anchor: AnchorDay,
    interval: Interval,
) -> Option<OffsetDateTime> {
    add_months(due, anchor, interval.months())
}

/// When the period ending at `due` began.
pub fn period_start(
    due: OffsetDateTime,
    anchor: AnchorDay,
    interval: Interval,
) -> Option<OffsetDateTime> {
    shift_months(due, anchor, -i64::from(interval.months()))
}

/// When a subscription that became `past_due` at `since` expires.
pub fn grace_end(since: OffsetDateTime) -> Option<OffsetDateTime> {
    since.checked_add(GRACE_PERIOD)
}

/// Names one renewal period by its due date (`2024-02-29`): with the
/// subscription id it is the exactly-once key of that period's charge.
pub fn period_id(due: OffsetDateTime) -> String {
    let due = due.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}",
        due.year(),
        u8::from(due.month()),
        due.day()
    )
}

/// Millisecond precision, UTC: the precision stored, so a time survives
/// a round trip through an item unchanged.
pub fn to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    at.replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .unwrap_or(at)
}

/// The stored form: RFC 3339 UTC with milliseconds (sorts as text in time order).
pub fn format_time(at: OffsetDateTime) -> String {
    ledger::format_rfc3339(at)
}

/// Parses RFC 3339 (any offset), returned in UTC at millisecond precision.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(to_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn anchor(day: u8) -> AnchorDay {
        AnchorDay::new(day).unwrap()
    }

    #[test]
    fn month_ends_clamp_and_return_to_the_anchor() {
        let start = datetime!(2024-01-31 09:30:00 UTC);
        let a = AnchorDay::of(start);
        let feb = next_renewal(start, a).unwrap();
        assert_eq!(feb, datetime!(2024-02-29 09:30:00 UTC), "leap year");
        let mar = next_renewal(feb, a).unwrap();
        assert_eq!(
            mar,
            datetime!(2024-03-31 09:30:00 UTC),
            "back to the anchor"
        );
        let apr = next_renewal(mar, a).unwrap();
        assert_eq!(apr, datetime!(2024-04-30 09:30:00 UTC));
        assert_eq!(
            next_renewal(apr, a).unwrap(),
            datetime!(2024-05-31 09:30:00 UTC)
        );
    }

    #[test]
    fn february_in_common_and_leap_years() {
        let a = anchor(31);
        assert_eq!(
            next_renewal(datetime!(2023-01-31 00:00 UTC), a).unwrap(),
            datetime!(2023-02-28 00:00 UTC)
        );
        assert_eq!(
            next_renewal(datetime!(2100-01-31 00:00 UTC), a).unwrap(),
            datetime!(2100-02-28 00:00 UTC),
            "2100 is not a leap year"
        );
        assert_eq!(
            next_renewal(datetime!(2000-01-31 00:00 UTC), a).unwrap(),
            datetime!(2000-02-29 00:00 UTC),
            "2000 is"
        );
        let a = anchor(29);
        let feb = next_renewal(datetime!(2024-01-29 00:00 UTC), a).unwrap();
        assert_eq!(feb, datetime!(2024-02-29 00:00 UTC));
        // A Feb 29 start renews on the 29th, or the 28th in common years.
        let leap_start = datetime!(2024-02-29 12:00 UTC);
        let a = AnchorDay::of(leap_start);
        assert_eq!(
            add_months(leap_start, a, 1).unwrap(),
            datetime!(2024-03-29 12:00 UTC)
        );
        assert_eq!(
            add_months(leap_start, a, 12).unwrap(),
            datetime!(2025-02-28 12:00 UTC)
        );
        assert_eq!(
            add_months(leap_start, a, 48).unwrap(),
            datetime!(2028-02-29 12:00 UTC)
        );
    }

    #[test]
    fn yearly_from_february_29() {
        let start = datetime!(2024-02-29 12:00 UTC);
        let a = AnchorDay::of(start);
        let y = Interval::Year;
        let first = next_due(start, a, y).unwrap();
        assert_eq!(first, datetime!(2025-02-28 12:00 UTC));
        let second = next_due(first, a, y).unwrap();
        assert_eq!(second, datetime!(2026-02-28 12:00 UTC));
        let third = next_due(second, a, y).unwrap();
        let fourth = next_due(third, a, y).unwrap();
        assert_eq!(fourth, datetime!(2028-02-29 12:00 UTC), "back to the 29th");
        assert_eq!(period_start(first, a, y).unwrap(), start);
        assert_eq!(
            period_start(datetime!(2024-03-31 00:00 UTC), anchor(31), Interval::Month).unwrap(),
            datetime!(2024-02-29 00:00 UTC)
        );
        assert_eq!(Interval::parse("year"), Some(Interval::Year));
        assert_eq!(Interval::parse("week"), None);
    }

    #[test]
    fn year_rolls_over_and_day_30_clamps() {
        assert_eq!(
            next_renewal(datetime!(2024-12-15 23:59:59.999 UTC), anchor(15)).unwrap(),
            datetime!(2025-01-15 23:59:59.999 UTC)
        );
        assert_eq!(
            next_renewal(datetime!(2025-01-30 00:00 UTC), anchor(30)).unwrap(),
            datetime!(2025-02-28 00:00 UTC)
        );
        assert_eq!(
            next_renewal(datetime!(2025-02-28 00:00 UTC), anchor(30)).unwrap(),
            datetime!(2025-03-30 00:00 UTC)
        );
        assert!(next_renewal(datetime!(9999-12-01 00:00 UTC), anchor(1)).is_none());
    }

    #[test]
    fn offsets_are_read_in_utc() {
        // 2024-02-01T01:00+02:00 is Jan 31 in UTC.
        let start = parse_time("2024-02-01T01:00:00+02:00").unwrap();
        assert_eq!(AnchorDay::of(start), anchor(31));
        assert_eq!(
            next_renewal(start, anchor(31)).unwrap(),
            datetime!(2024-02-29 23:00 UTC)
        );
    }

    #[test]
    fn grace_and_periods() {
        assert_eq!(
            grace_end(datetime!(2024-02-25 10:00 UTC)).unwrap(),
            datetime!(2024-03-03 10:00 UTC)
        );
        assert_eq!(period_id(datetime!(2024-02-29 23:59 UTC)), "2024-02-29");
    }

    #[test]
    fn times_round_trip_through_their_stored_form() {
        let at = datetime!(2024-02-29 09:30:15.123456789 UTC);
        let stored = format_time(at);
        assert_eq!(stored, "2024-02-29T09:30:15.123Z");
        assert_eq!(parse_time(&stored).unwrap(), to_millis(at));
        assert_eq!(format_time(parse_time(&stored).unwrap()), stored);
        assert!(parse_time("2024-02-30T00:00:00Z").is_none());
        assert!(parse_time("yesterday").is_none());
        assert!(AnchorDay::new(0).is_none() && AnchorDay::new(32).is_none());
    }

    fn any_time() -> impl Strategy<Value = OffsetDateTime> {
        // 1970 .. 9000, millisecond precision.
        (0i64..220_000_000_000i64).prop_map(|ms| {
            to_millis(
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
            )
        })
    }

    proptest! {
        #[test]
        fn one_month_on_lands_on_the_clamped_anchor(start in any_time(), day in 1u8..=31) {
            let a = anchor(day);
            let next = next_renewal(start, a).unwrap();
            let months = |t: OffsetDateTime| i64::from(t.year()) * 12 + i64::from(u8::from(t.month()));
            prop_assert_eq!(months(next), months(start) + 1);
            prop_assert_eq!(next.day(), day.min(next.month().length(next.year())));
            prop_assert_eq!(next.time(), start.time());
            prop_assert_eq!(format_time(next).len(), 24);
        }

        #[test]
        fn renewing_month_by_month_never_drifts(start in any_time(), steps in 1u32..40) {
            // Renewal k, reached one month at a time, equals start + k months.
            let a = AnchorDay::of(start);
            let mut due = start;
            for k in 1..=steps {
                due = next_renewal(due, a).unwrap();
                prop_assert_eq!(due, add_months(start, a, k).unwrap());
                prop_assert_eq!(due.day(), a.get().min(due.month().length(due.year())));
            }
        }

        #[test]
        fn periods_are_28_to_31_days_and_sort_as_text(start in any_time()) {
            let a = AnchorDay::of(start);
            let next = next_renewal(start, a).unwrap();
            let days = (next - start).whole_days();
            prop_assert!((28..=31).contains(&days), "{days} days");
            prop_assert!(format_time(start) < format_time(next));
            prop_assert!(period_id(start) < period_id(next));
        }
    }
}
