//! The query parameters of the reads, and their conversion into the
//! domain's requests.
//!
//! Each read declares its parameters as one struct of text fields (the
//! document gives each its real type); `TryFrom` turns them, with the
//! movement of the path and today's date, into the domain request, whose
//! invalid states cannot be built. Every refusal is a 400 naming the
//! parameter at fault.

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDate, Utc};
use momentum_domain::Interval;
use momentum_domain::query::{DateRange, Metric, MovementId, Periods, RangeError};
use momentum_domain::selection::{
    Breakdown, Filter, FilterValue, ParticipantRole, SPLIT_TOP_DEFAULT, Split, TopOutOfRange,
};
use momentum_runtime::Problem;

use crate::tables::{Format, requested_format};

/// Declares a read's query parameters: its own, then `from` and `to` when
/// it covers a range of dates (`@range`), the filters when it reads a
/// movement's figures (`@range` and `@filtered`), then `min_seq`, `format`
/// and `layout`, which every read takes. Unknown parameters are refused.
macro_rules! read_parameters {
    (@range $(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident,)* }) => {
        read_parameters! { @filtered $(#[$meta])* $name {
            $($(#[$field_meta])* $field,)*
            /// The first date of the range (default: a year before `to`).
            #[param(value_type = Option<crate::openapi::LocalDate>)]
            from,
            /// The last date of the range (default: today, in `MOMENTUM_TIMEZONE`); not before `from`.
            #[param(value_type = Option<crate::openapi::LocalDate>)]
            to,
        } }
    };
    (@filtered $(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident,)* }) => {
        read_parameters! { $(#[$meta])* $name {
            $($(#[$field_meta])* $field,)*
            /// Only events in this `area`.
            #[param(value_type = Option<String>, min_length = 1, max_length = 64)]
            area,
            /// Only meetings and actions naming this org id among their `partners`.
            #[param(value_type = Option<String>, min_length = 1, max_length = 64)]
            partner,
            /// Only the people who had this part in an event (docs/metrics.md, "Role"), and the events where
            /// someone had it.
            #[param(value_type = Option<momentum_domain::selection::ParticipantRole>)]
            role,
            /// Only meetings and actions of this `kind`, and hour logs of this `activity`.
            #[param(value_type = Option<String>, min_length = 1, max_length = 64)]
            kind,
            /// The figures as they stood when the projection had applied the stream up to this sequence: later
            /// events and retractions are left out (docs/metrics.md, "As it stood"). The read waits for the
            /// projection to reach it, as with `min_seq`.
            #[param(value_type = Option<crate::openapi::SequenceNumber>)]
            as_of_seq,
            /// The same at the last sequence the stream had stored by this time (RFC 3339, e.g.
            /// `2026-03-31T17:00:00Z`), by the stream's own timestamps. Not with `as_of_seq`.
            #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
            as_of,
            /// Split the read by this dimension: one row per value (and per period, cohort or principle), with
            /// the value in a field named after the dimension (docs/metrics.md, "Breakdowns").
            #[param(value_type = Option<momentum_domain::selection::Breakdown>)]
            by,
            /// With `by`: how many values to keep, those with the most events (or for `role`, parts taken) over
            /// the range; the rest are merged into the value `(other)` (default 10, at most 100).
            #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
            top,
        } }

        impl $name {
            /// The events the read counts.
            pub(crate) fn filter(&self) -> Result<momentum_domain::selection::Filter, momentum_runtime::Problem> {
                let mut filter = $crate::routes::parameters::filter(
                    self.area.as_deref(),
                    self.partner.as_deref(),
                    self.role.as_deref(),
                    self.kind.as_deref(),
                )?;
                filter.as_of_seq = $crate::routes::parameters::sequence(self.as_of_seq.as_deref(), "as_of_seq")?;
                Ok(filter)
            }

            /// The time the read is as of, if it says one.
            pub(crate) fn as_of_time(
                &self,
            ) -> Result<Option<chrono::DateTime<chrono::Utc>>, momentum_runtime::Problem> {
                $crate::routes::parameters::as_of_time(self.as_of.as_deref(), self.as_of_seq.is_some())
            }

            /// How the read is split, if it is, when each value has `rows` rows.
            pub(crate) fn split(
                &self,
                rows: usize,
            ) -> Result<Option<momentum_domain::selection::Split>, momentum_runtime::Problem> {
                $crate::routes::parameters::split(self.by.as_deref(), self.top.as_deref(), rows)
            }
        }
    };
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub(crate) struct $name {
            $($(#[$field_meta])* pub(crate) $field: Option<String>,)*
            /// Wait (at most the projector's `MOMENTUM_QUERY_WAIT_MS_MAX`, 5 s by default) until the projection
            /// includes this stream sequence (a `seq` or `max_seq` ingest answered), so a client reads its own
            /// writes; 503 if it does not in time.
            #[param(value_type = Option<crate::openapi::SequenceNumber>)]
            pub(crate) min_seq: Option<String>,
            /// `csv` for `text/csv`, `parquet` for Parquet, `json` for JSON; without it, `Accept: text/csv` asks for CSV
            /// and `Accept: application/vnd.apache.parquet` for Parquet.
            #[param(value_type = Option<crate::openapi::Format>)]
            pub(crate) format: Option<String>,
            /// The layout of a CSV or Parquet answer: `wide` (default) or `long` (`period,movement,metric,value`).
            #[param(value_type = Option<crate::openapi::Layout>)]
            pub(crate) layout: Option<String>,
        }

        impl $name {
            /// What every read takes besides its request: the sequence to
            /// wait for and the format to answer in.
            pub(crate) fn reading(
                &self,
                headers: &axum::http::HeaderMap,
            ) -> Result<$crate::routes::parameters::Reading, momentum_runtime::Problem> {
                $crate::routes::parameters::Reading::new(
                    self.min_seq.as_deref(),
                    self.format.as_deref(),
                    self.layout.as_deref(),
                    headers,
                )
            }
        }
    };
}

pub(crate) use read_parameters;

/// How a read is answered, whatever it asks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    pub min_seq: Option<u64>,
    pub format: Format,
}

impl Reading {
    pub(crate) fn new(
        min_seq: Option<&str>,
        format: Option<&str>,
        layout: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Reading, Problem> {
        Ok(Reading { min_seq: self::min_seq(min_seq)?, format: requested_format(format, layout, headers)? })
    }

    /// The same reading, waiting also for `seq` (the sequence a read is as
    /// of, which the projection must have applied to answer it).
    pub(crate) fn waiting_for(self, seq: Option<u64>) -> Reading {
        Reading { min_seq: self.min_seq.max(seq), ..self }
    }
}

/// A read's parameters with what else its request is made from: the
/// movement its path names (`()` for reads without one), and today's date
/// in the service's time zone, where a range without `to` ends.
pub(crate) struct RequestParts<P, M = MovementId> {
    pub parameters: P,
    pub movement: M,
    pub today: NaiveDate,
}

pub(crate) fn min_seq(text: Option<&str>) -> Result<Option<u64>, Problem> {
    sequence(text, "min_seq")
}

/// A stream sequence named by `parameter`.
pub(crate) fn sequence(text: Option<&str>, parameter: &str) -> Result<Option<u64>, Problem> {
    text.map(|text| text.parse::<u64>().map_err(|_| Problem::bad_parameter(parameter, "must be a whole number ≥ 0")))
        .transpose()
}

pub(crate) fn date(text: Option<&str>, name: &str) -> Result<Option<NaiveDate>, Problem> {
    let Some(text) = text else { return Ok(None) };
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| Problem::bad_parameter(name, format!("must be a date as YYYY-MM-DD, got {text:?}")))
}

/// The interval of a read, `week` when not given, one of `allowed`.
pub(crate) fn interval(text: Option<&str>, allowed: &[Interval]) -> Result<Interval, Problem> {
    let text = text.unwrap_or("week");
    Interval::parse(text).filter(|interval| allowed.contains(interval)).ok_or_else(|| {
        let valid: Vec<&str> = allowed.iter().map(|interval| interval.as_str()).collect();
        Problem::bad_parameter("interval", format!("must be one of {}, got {text:?}", valid.join(", ")))
    })
}

/// The dates of a read. Without `to` it ends `today`; without `from` it
/// starts a year before `to`.
pub(crate) fn date_range(from: Option<&str>, to: Option<&str>, today: NaiveDate) -> Result<DateRange, Problem> {
    let to = date(to, "to")?.unwrap_or(today);
    let from = date(from, "from")?.unwrap_or(to - chrono::Months::new(12));
    DateRange::new(from, to).map_err(range_problem)
}

/// The periods of `interval` that a read's dates cover.
pub(crate) fn periods(
    interval: Interval,
    from: Option<&str>,
    to: Option<&str>,
    today: NaiveDate,
) -> Result<Periods, Problem> {
    Periods::new(interval, date_range(from, to, today)?).map_err(range_problem)
}

pub(crate) fn range_problem(error: RangeError) -> Problem {
    Problem::bad_parameter(error.end().as_str(), error.to_string())
}

pub(crate) fn movement(text: &str, parameter: &str) -> Result<MovementId, Problem> {
    MovementId::parse(text).map_err(|error| Problem::bad_parameter(parameter, error.to_string()))
}

pub(crate) fn metric(text: &str, parameter: &str) -> Result<Metric, Problem> {
    Metric::parse(text).ok_or_else(|| {
        let valid: Vec<&str> = Metric::ALL.iter().map(|metric| metric.as_str()).collect();
        Problem::bad_parameter(parameter, format!("unknown metric {text:?}; valid metrics are {}", valid.join(", ")))
    })
}

/// The filters of a read, each checked as events' values are.
pub(crate) fn filter(
    area: Option<&str>,
    partner: Option<&str>,
    role: Option<&str>,
    kind: Option<&str>,
) -> Result<Filter, Problem> {
    let value = |text: Option<&str>, parameter: &str| {
        text.map(|text| FilterValue::new(text).map_err(|error| Problem::bad_parameter(parameter, error.to_string())))
            .transpose()
    };
    let role = role
        .map(|text| {
            ParticipantRole::parse(text).ok_or_else(|| {
                let valid: Vec<&str> = ParticipantRole::ALL.iter().map(|role| role.as_str()).collect();
                Problem::bad_parameter("role", format!("must be one of {}, got {text:?}", valid.join(", ")))
            })
        })
        .transpose()?;
    let (area, partner, kind) = (value(area, "area")?, value(partner, "partner")?, value(kind, "kind")?);
    Ok(Filter { area, partner, role, kind, as_of_seq: None })
}

/// The most rows a split read answers: its values (and `(other)`) times
/// the rows of each, so that its totals fit in a NATS message.
pub(crate) const SPLIT_ROWS_MAX: usize = 20_000;

/// How a read is split: by `by`, keeping `top` values, each with `rows`
/// rows, at most [`SPLIT_ROWS_MAX`] in all. A `top` without a `by` is
/// refused, not ignored.
pub(crate) fn split(by: Option<&str>, top: Option<&str>, rows: usize) -> Result<Option<Split>, Problem> {
    let Some(by) = by else {
        return match top {
            Some(_) => Err(Problem::bad_parameter("top", "is only taken with by")),
            None => Ok(None),
        };
    };
    let by = Breakdown::parse(by).ok_or_else(|| {
        let valid: Vec<&str> = Breakdown::ALL.iter().map(|by| by.as_str()).collect();
        Problem::bad_parameter("by", format!("must be one of {}, got {by:?}", valid.join(", ")))
    })?;
    let top = match top {
        None => SPLIT_TOP_DEFAULT,
        Some(text) => text.parse::<usize>().map_err(|_| Problem::bad_parameter("top", TopOutOfRange.to_string()))?,
    };
    let split = Split::new(by, top).map_err(|error| Problem::bad_parameter("top", error.to_string()))?;
    if rows.saturating_mul(top + 1) > SPLIT_ROWS_MAX {
        let most = (SPLIT_ROWS_MAX / rows.max(1)).saturating_sub(1);
        let detail = format!(
            "a split of {rows} rows a value answers at most {SPLIT_ROWS_MAX} rows: keep {most} values or fewer, or shorten the range"
        );
        return Err(Problem::bad_parameter("top", detail));
    }
    Ok(Some(split))
}

/// The time of `as_of`, an RFC 3339 date and time; refused beside `as_of_seq`.
pub(crate) fn as_of_time(text: Option<&str>, with_seq: bool) -> Result<Option<DateTime<Utc>>, Problem> {
    let Some(text) = text else { return Ok(None) };
    if with_seq {
        return Err(Problem::bad_parameter("as_of", "give as_of or as_of_seq, not both"));
    }
    let time = DateTime::parse_from_rfc3339(text).map(|time| time.with_timezone(&Utc)).map_err(|_| {
        Problem::bad_parameter(
            "as_of",
            format!("must be an RFC 3339 date and time such as 2026-03-31T17:00:00Z, got {text:?}"),
        )
    })?;
    // What the stream will hold at a time to come is not known yet.
    if time > Utc::now() {
        return Err(Problem::bad_parameter("as_of", "must not be later than now"));
    }
    Ok(Some(time))
}

/// The non-empty, trimmed items of a comma-separated parameter.
pub(crate) fn comma_list(text: Option<&str>) -> impl Iterator<Item = &str> {
    text.unwrap_or("").split(',').map(str::trim).filter(|item| !item.is_empty())
}

/// Examples of the problems above, for the API document.
pub(crate) mod examples {
    use super::*;

    pub(crate) fn bad_min_seq() -> Problem {
        min_seq(Some("-1")).expect_err("negative")
    }

    pub(crate) fn bad_format() -> Problem {
        requested_format(Some("xml"), None, &HeaderMap::new()).expect_err("not a format")
    }

    pub(crate) fn bad_interval(allowed: &[Interval]) -> Problem {
        interval(Some("decade"), allowed).expect_err("not an interval")
    }

    pub(crate) fn bad_date() -> Problem {
        date(Some("2026-02-30"), "from").expect_err("not a date")
    }

    pub(crate) fn bad_movement(parameter: &str) -> Problem {
        movement("Leeds Walks", parameter).expect_err("not a movement id")
    }

    pub(crate) fn bad_metric(parameter: &str) -> Problem {
        metric("hapiness", parameter).expect_err("not a metric")
    }

    pub(crate) fn bad_role() -> Problem {
        filter(None, None, Some("organiser"), None).expect_err("not a role")
    }

    pub(crate) fn bad_area() -> Problem {
        filter(Some(""), None, None, None).expect_err("empty")
    }

    pub(crate) fn bad_as_of() -> Problem {
        as_of_time(Some("31/03/2026"), false).expect_err("not RFC 3339")
    }

    pub(crate) fn bad_by() -> Problem {
        split(Some("postcode"), None, 1).expect_err("not a dimension")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 9).expect("a date")
    }

    #[test]
    fn a_range_without_dates_is_the_year_to_today() {
        let range = date_range(None, None, today()).unwrap();
        assert_eq!((range.from().to_string(), range.to().to_string()), ("2025-03-09".into(), "2026-03-09".into()));
    }

    #[test]
    fn each_filter_refusal_names_its_parameter() {
        let refused =
            |area, partner, role, kind| filter(area, partner, role, kind).unwrap_err().errors[0].pointer.clone();
        assert_eq!(refused(Some(""), None, None, None), "area");
        let too_long = "x".repeat(65);
        assert_eq!(refused(None, Some(&too_long), None, None), "partner");
        assert_eq!(refused(None, None, Some("organiser"), None), "role");
        assert_eq!(refused(None, None, None, Some("")), "kind");
        let all = filter(Some("E01000001"), Some("nhs"), Some("partner_staff"), Some("walk")).unwrap();
        assert_eq!(all.role, Some(ParticipantRole::PartnerStaff));
        assert_eq!(all.area.unwrap().as_str(), "E01000001");
    }

    #[test]
    fn a_split_takes_a_dimension_and_1_to_100_values_and_top_only_with_by() {
        let refused = |by, top| split(by, top, 53).unwrap_err().errors[0].pointer.clone();
        assert_eq!(refused(Some("postcode"), None), "by");
        assert_eq!(refused(Some("area"), Some("0")), "top");
        assert_eq!(refused(Some("area"), Some("101")), "top");
        assert_eq!(refused(Some("area"), Some("ten")), "top");
        assert_eq!(refused(None, Some("5")), "top", "top alone is refused, not ignored");
        assert_eq!(split(None, None, 53).unwrap(), None);
        let kept = split(Some("partner"), None, 53).unwrap().unwrap();
        assert_eq!((kept.by(), kept.top()), (Breakdown::Partner, SPLIT_TOP_DEFAULT));
        assert!(split(Some("area"), Some("9"), SPLIT_ROWS_MAX / 10).is_ok(), "nine values and (other)");
        let too_many = split(Some("area"), Some("10"), SPLIT_ROWS_MAX / 10).unwrap_err();
        assert_eq!(too_many.errors[0].pointer, "top");
        assert!(too_many.detail.as_deref().unwrap_or("").contains("keep 9 values or fewer"), "{too_many:?}");
    }

    #[test]
    fn each_range_refusal_names_the_end_a_client_would_change() {
        let refused = |from, to, interval| periods(interval, from, to, today()).unwrap_err().errors[0].pointer.clone();
        assert_eq!(refused(Some("2026-03-10"), None, Interval::Week), "to");
        assert_eq!(refused(Some("1899-12-31"), None, Interval::Week), "from");
        assert_eq!(refused(None, Some("3000-01-01"), Interval::Week), "to");
        assert_eq!(refused(Some("2000-01-01"), None, Interval::Day), "from");
        assert_eq!(refused(Some("2026-02-30"), None, Interval::Day), "from");
    }
}
