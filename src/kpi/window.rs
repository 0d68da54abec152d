//! KPI windows: rolling Prometheus durations and calendar periods, resolved to a PromQL range.
//!
//! Calendar windows are what CX teams report on ("NPS this quarter"), and Prometheus has no
//! notion of them: they are resolved at evaluation time, from `now` (passed in, so this stays
//! pure), to the seconds elapsed since the start of the month or quarter, in UTC.
//!
//! The *previous cycle* (MALMA's "gaps against the previous cycle's measurements") is the
//! previous measurement window, not the previous evaluation tick: for a rolling window the same
//! length one window earlier (PromQL `offset <window>`), for a calendar window the whole
//! previous month or quarter ([`WindowSpec::previous`]).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::civil::Date;
use k8s_openapi::jiff::tz::TimeZone;

use super::KpiError;

/// A KPI window, parsed from `spec.window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowSpec {
    /// A rolling duration ending now, such as `7d` or `90m`.
    Rolling {
        /// The duration as written, reused verbatim in the PromQL range so queries read like the
        /// manifest.
        text: String,
        /// Its length.
        duration: Duration,
    },
    /// From local midnight of the first day of the current month, in the zone, to now.
    CalendarMonth(TimeZone),
    /// From local midnight of the first day of the current quarter (January, April, July,
    /// October), in the zone, to now.
    CalendarQuarter(TimeZone),
}

/// A window placed in time: the PromQL range `[range]` ending `offset` before the evaluation
/// time (`offset` zero: ending at it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// What goes between `[` and `]`.
    pub range: String,
    /// The range's length.
    pub length: Duration,
    /// How long before the evaluation time the range ends.
    pub offset: Duration,
}

impl Span {
    /// ` offset <offset>` for a selector, empty when the span ends at the evaluation time.
    pub fn offset_modifier(&self) -> String {
        offset_modifier(self.offset)
    }

    /// ` offset <offset + length>`: the modifier that reads a counter at the span's start.
    pub fn start_modifier(&self) -> String {
        offset_modifier(self.offset + self.length)
    }
}

/// ` offset <d>`, or nothing for zero.
fn offset_modifier(offset: Duration) -> String {
    if offset.is_zero() {
        String::new()
    } else {
        format!(" offset {}", promql_duration(offset))
    }
}

/// A duration in PromQL's syntax, in the largest unit that divides it (`14d`, `90m`, `1500ms`).
pub fn promql_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let seconds = millis / 1000;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds > 0 && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

impl WindowSpec {
    /// The current cycle at `now`: the window ending now.
    pub fn current(&self, now: Timestamp) -> Span {
        Span {
            range: self.range(now),
            length: self.duration(now),
            offset: Duration::ZERO,
        }
    }

    /// The previous cycle at `now`: a rolling window one window earlier; the whole previous
    /// calendar month or quarter (UTC), ending where the current one starts.
    pub fn previous(&self, now: Timestamp) -> Span {
        let months = match self {
            WindowSpec::Rolling { text, duration } => {
                return Span {
                    range: text.clone(),
                    length: *duration,
                    offset: *duration,
                };
            }
            WindowSpec::CalendarMonth(zone) => (1, zone),
            WindowSpec::CalendarQuarter(zone) => (3, zone),
        };
        let (months, zone) = months;
        let start = calendar_start(now.as_second(), months, zone);
        let previous_start = calendar_start(start - 1, months, zone);
        let length = Duration::from_secs((start - previous_start).unsigned_abs());
        let elapsed = now.as_second().saturating_sub(start).max(0);
        Span {
            range: format!("{}s", length.as_secs()),
            length,
            offset: Duration::from_secs(elapsed.unsigned_abs()),
        }
    }

    /// Reads a window: a Prometheus duration (`30s`, `90m`, `7d`, `1w2d`; units in decreasing
    /// order, as Prometheus requires) or `calendar-month` / `calendar-quarter`.
    pub fn parse(window: &str) -> Result<WindowSpec, KpiError> {
        Self::parse_in(window, None)
    }

    /// Reads a window whose calendar periods are those of `time_zone` (an IANA name such as
    /// `Europe/Rome`; `None`: UTC). An unknown zone is an invalid window, named.
    pub fn parse_in(window: &str, time_zone: Option<&str>) -> Result<WindowSpec, KpiError> {
        let invalid = |message: String| KpiError::InvalidWindow {
            window: window.to_owned(),
            message,
        };
        if matches!(window, "calendar-month" | "calendar-quarter") {
            let zone = match time_zone {
                None => TimeZone::UTC,
                Some(name) => TimeZone::get(name).map_err(|_| KpiError::InvalidTimeZone {
                    zone: name.to_owned(),
                })?,
            };
            return Ok(if window == "calendar-month" {
                WindowSpec::CalendarMonth(zone)
            } else {
                WindowSpec::CalendarQuarter(zone)
            });
        }
        // promql-parser also accepts a bare number of seconds ("300"), Prometheus ranges do not.
        // Digits and unit letters only: promql-parser reads anything `f64` parses ("inf", "1e400")
        // as seconds, and panics on an infinite number.
        if window.is_empty()
            || !window
                .bytes()
                .all(|b| b.is_ascii_digit() || b"ywdhms".contains(&b))
        {
            return Err(invalid(
                "expected a duration such as 7d, 28d or 90m, or calendar-month / calendar-quarter"
                    .into(),
            ));
        }
        if window.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "a duration needs a unit (ms, s, m, h, d, w or y), e.g. 7d".into(),
            ));
        }
        let duration = promql_parser::util::parse_duration(window).map_err(invalid)?;
        if duration.is_zero() {
            return Err(invalid("the window must be longer than zero".into()));
        }
        Ok(WindowSpec::Rolling {
            text: window.to_owned(),
            duration,
        })
    }

    /// The PromQL range (what goes between `[` and `]`) at `now`: a rolling window as written, a
    /// calendar window as the whole seconds since its start (at least `1s`: a range cannot be
    /// empty, and the first second of a month has next to no data anyway).
    pub fn range(&self, now: Timestamp) -> String {
        match self {
            WindowSpec::Rolling { text, .. } => text.clone(),
            _ => format!("{}s", self.duration(now).as_secs()),
        }
    }

    /// The window's length at `now` (whole seconds for calendar windows).
    pub fn duration(&self, now: Timestamp) -> Duration {
        let start = match self {
            WindowSpec::Rolling { duration, .. } => return *duration,
            WindowSpec::CalendarMonth(zone) => calendar_start(now.as_second(), 1, zone),
            WindowSpec::CalendarQuarter(zone) => calendar_start(now.as_second(), 3, zone),
        };
        let elapsed = now.as_second().saturating_sub(start).max(1);
        Duration::from_secs(elapsed.unsigned_abs())
    }
}

/// Why a KPI's window cannot measure what it says, as a (reason, message) for its `WindowValid`
/// condition; `None` when it can. `retention` is Prometheus' (unknown: not checked).
/// - a rolling window shorter than the interval: answers between two evaluations are never in
///   any measured window;
/// - a window longer than the retention: the value covers only what Prometheus still holds;
/// - a previous cycle reaching back beyond the retention: `previousValue` covers part of it.
pub fn window_problem(
    window: &WindowSpec,
    window_text: &str,
    interval: Duration,
    retention: Option<Duration>,
    now: Timestamp,
) -> Option<(&'static str, String)> {
    if let WindowSpec::Rolling { duration, .. } = window
        && *duration < interval
    {
        return Some((
            "WindowShorterThanInterval",
            format!(
                "window {window_text} is shorter than the interval {}: answers between two evaluations are never measured; make the window at least the interval",
                promql_duration(interval)
            ),
        ));
    }
    let retention = retention?;
    let length = match window {
        WindowSpec::Rolling { duration, .. } => *duration,
        // A whole period: the current one grows to it.
        _ => window.previous(now).length,
    };
    if length > retention {
        return Some((
            "WindowBeyondRetention",
            format!(
                "window {window_text} ({}) is longer than Prometheus' retention ({}): the value covers only the data Prometheus still holds",
                promql_duration(length),
                promql_duration(retention)
            ),
        ));
    }
    let previous = window.previous(now);
    let reach = previous.offset + previous.length;
    if reach > retention {
        return Some((
            "PreviousCycleBeyondRetention",
            format!(
                "the previous cycle of window {window_text} reaches back {}, beyond Prometheus' retention ({}): previousValue covers only part of it",
                promql_duration(reach),
                promql_duration(retention)
            ),
        ));
    }
    None
}

/// Unix second at which the current period of `months_per_period` months (1: month, 3: quarter)
/// started: local midnight of its first day in `zone` (a midnight that daylight saving skips is
/// the first instant after the gap, as jiff's compatible disambiguation gives).
fn calendar_start(unix_seconds: i64, months_per_period: u32, zone: &TimeZone) -> i64 {
    if *zone != TimeZone::UTC
        && let Ok(at) = Timestamp::from_second(unix_seconds)
    {
        let local = at.to_zoned(zone.clone()).date();
        let period = i8::try_from(months_per_period).unwrap_or(1);
        let first_month = (local.month() - 1) / period * period + 1;
        if let Ok(first) =
            Date::new(local.year(), first_month, 1).and_then(|d| d.to_zoned(zone.clone()))
        {
            return first.timestamp().as_second();
        }
    }
    let days = unix_seconds.div_euclid(86_400);
    let (year, month, _) = civil_from_days(days);
    let first_month = (month - 1) / months_per_period * months_per_period + 1;
    days_from_civil(year, first_month, 1) * 86_400
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a number of days since 1970-01-01 (`civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn rolling_windows_parse_and_keep_their_text() {
        for (text, seconds) in [
            ("7d", 7 * 86_400),
            ("28d", 28 * 86_400),
            ("90m", 5_400),
            ("1h30m", 5_400),
            ("1w", 7 * 86_400),
            ("30s", 30),
        ] {
            let window = WindowSpec::parse(text).expect(text);
            assert_eq!(window.range(at("2026-11-03T10:15:00Z")), text);
            assert_eq!(
                window.duration(at("2026-11-03T10:15:00Z")),
                Duration::from_secs(seconds),
                "{text}"
            );
        }
    }

    #[test]
    fn invalid_windows_are_refused_with_a_reason() {
        for (text, needle) in [
            ("", "expected a duration"),
            ("7 d", "expected a duration"),
            ("300", "needs a unit"),
            ("7x", "expected a duration"),
            ("inf", "expected a duration"),
            ("1e400", "expected a duration"),
            ("30m1h", "not a valid duration"),
            ("1m1m", "not a valid duration"),
            ("0d", "greater than 0"),
            ("calendar-year", "expected a duration"),
        ] {
            let error = WindowSpec::parse(text).expect_err(text);
            assert_eq!(error.reason(), "InvalidWindow");
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn calendar_windows_run_from_the_start_of_the_period_in_utc() {
        let cases = [
            // (now, month seconds, quarter seconds)
            (
                "2026-11-03T10:15:00Z",
                2 * 86_400 + 36_900,
                33 * 86_400 + 36_900,
            ),
            ("2026-01-01T00:00:30Z", 30, 30),
            // The very first second of a period is still a valid (1s) range.
            ("2026-04-01T00:00:00Z", 1, 1),
            ("2026-06-30T23:59:59Z", 30 * 86_400 - 1, 91 * 86_400 - 1),
            // Leap day, and the quarter starting in a leap year's January.
            ("2028-03-01T00:00:00Z", 1, (31 + 29) * 86_400),
            (
                "2028-02-29T12:00:00Z",
                28 * 86_400 + 43_200,
                (31 + 28) * 86_400 + 43_200,
            ),
            // Sub-second precision is dropped.
            (
                "2026-12-31T23:59:59.900Z",
                30 * 86_400 + 86_399,
                91 * 86_400 + 86_399,
            ),
        ];
        for (now, month, quarter) in cases {
            let now = at(now);
            assert_eq!(
                WindowSpec::CalendarMonth(TimeZone::UTC).range(now),
                format!("{month}s"),
                "month at {now}"
            );
            assert_eq!(
                WindowSpec::CalendarQuarter(TimeZone::UTC).range(now),
                format!("{quarter}s"),
                "quarter at {now}"
            );
        }
        assert_eq!(
            WindowSpec::parse("calendar-quarter").expect("valid"),
            WindowSpec::CalendarQuarter(TimeZone::UTC)
        );
    }

    #[test]
    fn previous_cycles_are_the_previous_window_or_calendar_period() {
        let now = at("2026-11-03T10:15:00Z");
        let rolling = WindowSpec::parse("7d").expect("window");
        assert_eq!(
            rolling.current(now),
            Span {
                range: "7d".into(),
                length: Duration::from_secs(7 * 86_400),
                offset: Duration::ZERO
            }
        );
        let previous = rolling.previous(now);
        assert_eq!(previous.range, "7d");
        assert_eq!(previous.offset_modifier(), " offset 7d");
        assert_eq!(previous.start_modifier(), " offset 14d");
        assert_eq!(rolling.current(now).offset_modifier(), "");
        assert_eq!(rolling.current(now).start_modifier(), " offset 7d");
        // October: 31 days, ending at 2026-11-01T00:00:00Z, 2 days 10:15 before now.
        let month = WindowSpec::CalendarMonth(TimeZone::UTC).previous(now);
        assert_eq!(month.range, format!("{}s", 31 * 86_400));
        assert_eq!(month.offset, Duration::from_secs(2 * 86_400 + 36_900));
        // Q3: July to September, 92 days, ending at 2026-10-01.
        let quarter = WindowSpec::CalendarQuarter(TimeZone::UTC).previous(now);
        assert_eq!(quarter.range, format!("{}s", 92 * 86_400));
        assert_eq!(quarter.offset, Duration::from_secs(33 * 86_400 + 36_900));
        // January's previous month is the last December; February of a leap year has 29 days.
        let january = WindowSpec::CalendarMonth(TimeZone::UTC).previous(at("2026-01-10T00:00:00Z"));
        assert_eq!(january.range, format!("{}s", 31 * 86_400));
        let march = WindowSpec::CalendarMonth(TimeZone::UTC).previous(at("2028-03-01T00:00:00Z"));
        assert_eq!(
            (march.range.as_str(), march.offset),
            ("2505600s", Duration::ZERO)
        );
        for (duration, text) in [
            (Duration::from_secs(1_209_600), "14d"),
            (Duration::from_secs(5_400), "90m"),
            (Duration::from_secs(7_200), "2h"),
            (Duration::from_secs(90_061), "90061s"),
            (Duration::from_millis(1_500), "1500ms"),
        ] {
            assert_eq!(promql_duration(duration), text);
        }
    }

    #[test]
    fn windows_shorter_than_the_interval_or_beyond_retention_are_named() {
        let now = at("2026-11-03T10:15:00Z");
        let five_minutes = Duration::from_secs(300);
        let fifteen_days = Some(Duration::from_secs(15 * 86_400));
        let check = |text: &str, retention| {
            let window = WindowSpec::parse(text).expect(text);
            window_problem(&window, text, five_minutes, retention, now)
        };
        let (reason, message) = check("1m", fifteen_days).expect("too short");
        assert_eq!(reason, "WindowShorterThanInterval");
        assert_eq!(
            message,
            "window 1m is shorter than the interval 5m: answers between two evaluations are never measured; make the window at least the interval"
        );
        assert_eq!(check("5m", fifteen_days), None);
        assert_eq!(
            check("7d", fifteen_days),
            None,
            "7d and its previous 7d fit in 15d"
        );
        let (reason, message) = check("10d", fifteen_days).expect("previous beyond");
        assert_eq!(reason, "PreviousCycleBeyondRetention");
        assert!(
            message.contains("reaches back 20d, beyond Prometheus' retention (15d)"),
            "{message}"
        );
        let (reason, message) = check("28d", fifteen_days).expect("beyond");
        assert_eq!(reason, "WindowBeyondRetention");
        assert!(
            message.contains("window 28d (28d) is longer than Prometheus' retention (15d)"),
            "{message}"
        );
        // A month is longer than 15 days; unknown retention: only the interval is checked.
        assert_eq!(
            check("calendar-month", fifteen_days).map(|p| p.0),
            Some("WindowBeyondRetention")
        );
        assert_eq!(check("calendar-quarter", None), None);
        // October (31 days) ended 2 days 10:15 ago: 33 days 10:15 back, within 90 days.
        assert_eq!(
            check("calendar-month", Some(Duration::from_secs(90 * 86_400))),
            None
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-719_468, -1, 0, 59, 60, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    /// Europe/Rome: CET (+01:00) in winter, CEST (+02:00) from the last Sunday of March to the
    /// last Sunday of October. Periods start at local midnight, so the month around each switch
    /// is an hour shorter or longer than its days.
    #[test]
    fn calendar_windows_follow_the_company_time_zone_across_both_daylight_saving_switches() {
        let rome = |window: &str| WindowSpec::parse_in(window, Some("Europe/Rome")).expect("zone");
        let hours = |span: &Span| span.length.as_secs() as f64 / 3600.0;

        // Spring: March 2026 (switch on the 29th) has 31 days less one hour.
        let april = at("2026-04-10T12:00:00Z");
        let month = rome("calendar-month");
        // April starts at 2026-04-01T00:00+02:00 = 2026-03-31T22:00Z.
        let current = month.current(april);
        assert_eq!(
            current.length.as_secs(),
            (at("2026-04-10T12:00:00Z").as_second() - at("2026-03-31T22:00:00Z").as_second())
                as u64
        );
        let previous = month.previous(april);
        assert_eq!(hours(&previous), 31.0 * 24.0 - 1.0, "March in Rome");
        assert_eq!(previous.offset, current.length, "ends where April starts");

        // Autumn: October 2026 (switch on the 25th) has 31 days and one hour.
        let november = at("2026-11-05T00:00:00Z");
        let previous = month.previous(november);
        assert_eq!(hours(&previous), 31.0 * 24.0 + 1.0, "October in Rome");
        // November starts at 2026-11-01T00:00+01:00 = 2026-10-31T23:00Z.
        assert_eq!(
            month.current(november).length.as_secs(),
            (november.as_second() - at("2026-10-31T23:00:00Z").as_second()) as u64
        );

        // Just after local midnight on the 1st it is already the new month in Rome, still the
        // old one in UTC.
        let just_after = at("2026-03-31T22:30:00Z");
        assert_eq!(month.current(just_after).length.as_secs(), 30 * 60);
        assert_eq!(
            WindowSpec::parse("calendar-month")
                .expect("utc")
                .current(just_after)
                .length
                .as_secs(),
            (30 * 24 + 22) * 3600 + 30 * 60,
            "UTC: still March"
        );

        // A quarter holding the spring switch: Q2 2026 starts 2026-04-01T00:00+02:00, and the
        // previous quarter (January to March) holds 90 days less one hour.
        let quarter = rome("calendar-quarter");
        assert_eq!(hours(&quarter.previous(april)), 90.0 * 24.0 - 1.0);
        // UTC is the default, and an unknown zone is an invalid window that names it.
        assert_eq!(
            WindowSpec::parse_in("calendar-month", None).expect("utc"),
            WindowSpec::CalendarMonth(TimeZone::UTC)
        );
        let unknown = WindowSpec::parse_in("calendar-month", Some("Europe/Atlantis"))
            .expect_err("no such zone");
        assert!(unknown.to_string().contains("Europe/Atlantis"), "{unknown}");
        assert_eq!(unknown.reason(), "InvalidTimeZone");
        // A rolling window ignores the zone.
        assert_eq!(
            WindowSpec::parse_in("7d", Some("Europe/Rome")).expect("rolling"),
            WindowSpec::parse("7d").expect("rolling")
        );
    }
}
