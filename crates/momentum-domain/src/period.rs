//! Time buckets. A period is named by its first local date; which local
//! date an event falls on depends on the configured time zone, so that an
//! event at 23:30Z on a summer Sunday counts in Monday's week in London.

use chrono::{DateTime, Datelike, Duration, FixedOffset, Months, NaiveDate};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The length of a period in a trend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Interval {
    /// A local calendar day.
    Day,
    /// An ISO week, starting on Monday.
    Week,
    /// A calendar month.
    Month,
    /// A calendar quarter: January to March, April to June, and so on.
    Quarter,
    /// A quarter of the UK public-sector financial year: April to June, July
    /// to September, October to December, January to March.
    FiscalQuarter,
    /// A calendar year.
    Year,
    /// The UK public-sector financial year, from 1 April to 31 March, as NHS
    /// commissioners report.
    FiscalYear,
}

impl Interval {
    /// Every interval, from the shortest to the longest.
    pub const ALL: [Interval; 7] = [
        Interval::Day,
        Interval::Week,
        Interval::Month,
        Interval::Quarter,
        Interval::FiscalQuarter,
        Interval::Year,
        Interval::FiscalYear,
    ];

    /// The interval's name as requests and answers spell it: `day`, `week`,
    /// `month`, `quarter`, `year`, `fiscal_quarter` or `fiscal_year`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
            Interval::Quarter => "quarter",
            Interval::Year => "year",
            Interval::FiscalQuarter => "fiscal_quarter",
            Interval::FiscalYear => "fiscal_year",
        }
    }

    /// For intervals made of whole months: their length in months and the
    /// month (0 for January) a period may start in, the others following
    /// every length months; `None` for days and weeks.
    fn months(self) -> Option<(u32, u32)> {
        match self {
            Interval::Day | Interval::Week => None,
            Interval::Month => Some((1, 0)),
            Interval::Quarter => Some((3, 0)),
            Interval::Year => Some((12, 0)),
            // The financial year begins in April.
            Interval::FiscalQuarter => Some((3, 3)),
            Interval::FiscalYear => Some((12, 3)),
        }
    }

    /// The interval named `text` (as [`Interval::as_str`] spells it), or `None` for any other text.
    pub fn parse(text: &str) -> Option<Interval> {
        Interval::ALL.into_iter().find(|interval| interval.as_str() == text)
    }

    /// The first date of the period containing `date`.
    pub fn period_start(self, date: NaiveDate) -> NaiveDate {
        match self.months() {
            None if self == Interval::Day => date,
            None => date - Duration::days(i64::from(date.weekday().num_days_from_monday())),
            Some((length, anchor)) => {
                // Months since the anchor month of year 0, then back to the
                // first month of the period holding it.
                let months = i64::from(date.year()) * 12 + i64::from(date.month0()) - i64::from(anchor);
                let first = months - months.rem_euclid(i64::from(length)) + i64::from(anchor);
                let (year, month0) = (first.div_euclid(12), first.rem_euclid(12));
                NaiveDate::from_ymd_opt(year as i32, month0 as u32 + 1, 1).expect("a period starts on a real day")
            }
        }
    }

    /// The first date of the period after the one starting at `start`.
    pub fn next_period(self, start: NaiveDate) -> NaiveDate {
        self.shift(start, 1)
    }

    /// The first date of the period `count` periods after (or, if negative,
    /// before) the one starting at `start`.
    pub fn shift(self, start: NaiveDate, count: i32) -> NaiveDate {
        match self.months() {
            None if self == Interval::Day => start + Duration::days(i64::from(count)),
            None => start + Duration::days(7 * i64::from(count)),
            Some((length, _)) if count >= 0 => start + Months::new(length * count.unsigned_abs()),
            Some((length, _)) => start - Months::new(length * count.unsigned_abs()),
        }
    }

    /// The name people give the period starting at `start`: `2026-03-02`
    /// for a day, `2026-W10` for an ISO week, `2026-03` for a month, `2026
    /// Q2` for a quarter, `2026` for a year, `2026-27` for a financial year
    /// and `2026-27 Q1` for its first quarter.
    pub fn label(self, start: NaiveDate) -> String {
        let fiscal_year = |date: NaiveDate| {
            let first = if date.month() >= 4 { date.year() } else { date.year() - 1 };
            format!("{first}-{:02}", (first + 1).rem_euclid(100))
        };
        match self {
            Interval::Day => start.to_string(),
            Interval::Week => {
                let week = start.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Interval::Month => format!("{}-{:02}", start.year(), start.month()),
            Interval::Quarter => format!("{} Q{}", start.year(), start.month0() / 3 + 1),
            Interval::Year => start.year().to_string(),
            Interval::FiscalQuarter => format!("{} Q{}", fiscal_year(start), (start.month0() + 9) % 12 / 3 + 1),
            Interval::FiscalYear => fiscal_year(start),
        }
    }

    /// Whether the period starting at `start` is over on `today`: false for
    /// the period containing today, whose figures are still growing, and
    /// for any after it.
    pub fn is_complete(self, start: NaiveDate, today: NaiveDate) -> bool {
        self.next_period(start) <= today
    }

    /// The first dates of every period from the one containing `from` to the
    /// one containing `to`, inclusive; empty when `to` is before `from`.
    pub fn periods(self, from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = NaiveDate> {
        let last = self.period_start(to);
        std::iter::successors(Some(self.period_start(from)), move |start| Some(self.next_period(*start)))
            .take_while(move |start| *start <= last)
    }
}

/// The calendar date on which `time` falls in `time_zone`.
pub fn local_date(time: DateTime<FixedOffset>, time_zone: Tz) -> NaiveDate {
    time.with_timezone(&time_zone).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_week_starts_on_the_monday_on_or_before_the_date() {
        assert_eq!(Interval::Week.period_start(date("2026-03-04")), date("2026-03-02"));
        assert_eq!(Interval::Week.period_start(date("2026-03-02")), date("2026-03-02"));
        assert_eq!(Interval::Week.period_start(date("2026-03-01")), date("2026-02-23"));
    }

    #[test]
    fn quarters_and_years_start_in_january_and_fiscal_ones_in_april() {
        for (interval, day, start, next) in [
            (Interval::Quarter, "2026-05-17", "2026-04-01", "2026-07-01"),
            (Interval::Quarter, "2026-01-01", "2026-01-01", "2026-04-01"),
            (Interval::Year, "2026-12-31", "2026-01-01", "2027-01-01"),
            (Interval::FiscalQuarter, "2026-03-31", "2026-01-01", "2026-04-01"),
            (Interval::FiscalQuarter, "2026-04-01", "2026-04-01", "2026-07-01"),
            (Interval::FiscalYear, "2026-03-31", "2025-04-01", "2026-04-01"),
            (Interval::FiscalYear, "2026-04-01", "2026-04-01", "2027-04-01"),
            (Interval::FiscalYear, "1900-01-01", "1899-04-01", "1900-04-01"),
        ] {
            assert_eq!(interval.period_start(date(day)), date(start), "{interval:?} of {day}");
            assert_eq!(interval.next_period(date(start)), date(next), "{interval:?} after {start}");
            assert_eq!(interval.shift(date(next), -1), date(start), "{interval:?} before {next}");
        }
        assert_eq!(Interval::FiscalYear.periods(date("2025-03-01"), date("2026-06-30")).count(), 3);
    }

    #[test]
    fn every_period_has_a_label_people_use() {
        for (interval, start, label) in [
            (Interval::Day, "2026-03-02", "2026-03-02"),
            (Interval::Week, "2026-03-02", "2026-W10"),
            (Interval::Week, "2024-12-30", "2025-W01"),
            (Interval::Month, "2026-03-01", "2026-03"),
            (Interval::Quarter, "2026-04-01", "2026 Q2"),
            (Interval::Year, "2026-01-01", "2026"),
            (Interval::FiscalYear, "2026-04-01", "2026-27"),
            (Interval::FiscalYear, "1999-04-01", "1999-00"),
            (Interval::FiscalQuarter, "2026-04-01", "2026-27 Q1"),
            (Interval::FiscalQuarter, "2026-10-01", "2026-27 Q3"),
            (Interval::FiscalQuarter, "2027-01-01", "2026-27 Q4"),
        ] {
            assert_eq!(interval.label(date(start)), label, "{interval:?} from {start}");
        }
    }

    #[test]
    fn a_period_is_complete_once_today_is_past_its_last_day() {
        let week = date("2026-03-02");
        assert!(!Interval::Week.is_complete(week, date("2026-03-08")), "its Sunday is still in it");
        assert!(Interval::Week.is_complete(week, date("2026-03-09")));
        assert!(!Interval::Week.is_complete(date("2026-03-16"), date("2026-03-09")), "a later week");
        // The financial year 2025-26 ends on 31 March.
        assert!(!Interval::FiscalYear.is_complete(date("2025-04-01"), date("2026-03-31")));
        assert!(Interval::FiscalYear.is_complete(date("2025-04-01"), date("2026-04-01")));
    }

    #[test]
    fn a_month_starts_on_its_first_day() {
        assert_eq!(Interval::Month.period_start(date("2024-02-29")), date("2024-02-01"));
        assert_eq!(Interval::Month.next_period(date("2024-01-01")), date("2024-02-01"));
    }

    #[test]
    fn late_on_a_summer_sunday_in_utc_is_monday_in_london() {
        let time = DateTime::parse_from_rfc3339("2026-06-07T23:30:00Z").unwrap();
        let local = local_date(time, chrono_tz::Europe::London);
        assert_eq!(local, date("2026-06-08"));
        assert_eq!(Interval::Week.period_start(local), date("2026-06-08"));
        let winter = DateTime::parse_from_rfc3339("2026-01-04T23:30:00Z").unwrap();
        assert_eq!(local_date(winter, chrono_tz::Europe::London), date("2026-01-04"));
    }

    #[test]
    fn late_on_31_march_in_utc_is_the_next_financial_year_in_london() {
        // British Summer Time began on 29 March 2026.
        let time = DateTime::parse_from_rfc3339("2026-03-31T23:30:00Z").unwrap();
        let local = local_date(time, chrono_tz::Europe::London);
        assert_eq!(local, date("2026-04-01"));
        assert_eq!(Interval::FiscalYear.period_start(local), date("2026-04-01"));
        assert_eq!(Interval::FiscalYear.label(Interval::FiscalYear.period_start(local)), "2026-27");
        assert_eq!(Interval::FiscalQuarter.label(Interval::FiscalQuarter.period_start(local)), "2026-27 Q1");
        let before = DateTime::parse_from_rfc3339("2026-03-31T22:59:59Z").unwrap();
        let local = local_date(before, chrono_tz::Europe::London);
        assert_eq!(Interval::FiscalYear.label(Interval::FiscalYear.period_start(local)), "2025-26");
        assert_eq!(Interval::FiscalQuarter.label(Interval::FiscalQuarter.period_start(local)), "2025-26 Q4");
    }

    #[test]
    fn shifting_moves_by_whole_periods_both_ways() {
        assert_eq!(Interval::Month.shift(date("2026-01-01"), -1), date("2025-12-01"));
        assert_eq!(Interval::Month.shift(date("2026-01-01"), 14), date("2027-03-01"));
        assert_eq!(Interval::Week.shift(date("2026-03-02"), -4), date("2026-02-02"));
        assert_eq!(Interval::Day.shift(date("2026-03-01"), -1), date("2026-02-28"));
    }

    #[test]
    fn periods_cover_the_range_inclusively_and_densely() {
        let weeks: Vec<_> = Interval::Week.periods(date("2026-03-04"), date("2026-03-16")).collect();
        assert_eq!(weeks, vec![date("2026-03-02"), date("2026-03-09"), date("2026-03-16")]);
        assert_eq!(Interval::Day.periods(date("2026-03-04"), date("2026-03-03")).count(), 0);
        assert_eq!(Interval::Month.periods(date("2025-11-30"), date("2026-02-01")).count(), 4);
    }
}
