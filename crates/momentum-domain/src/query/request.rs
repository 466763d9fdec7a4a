//! What a read asks for. Every part of a request is checked when it is
//! built, by its constructor or when it is read from JSON, so a request
//! that exists is one the reads can answer: a movement id that is one,
//! dates in order within the readable years, a range of at most
//! [`PERIODS_PER_TREND_MAX`] periods, 1 to [`MOVEMENTS_PER_COMPARISON_MAX`]
//! distinct movements to compare.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::hour_value::VolunteerHourValue;
use super::metric::Metric;
use crate::ledger::CohortMode;
use crate::period::Interval;
use crate::selection::{Filter, Split};

/// The most periods one read may cover: ten years of days.
pub const PERIODS_PER_TREND_MAX: usize = 3660;

/// The dates a read may name: wide enough for any record, narrow enough to
/// keep period arithmetic far from the limits of the calendar types.
pub const EARLIEST_DATE: NaiveDate = date_or_panic(1900, 1, 1);
/// The last date a read may name.
pub const LATEST_DATE: NaiveDate = date_or_panic(2999, 12, 31);

const fn date_or_panic(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("not a date"),
    }
}

/// The most movements one comparison may name.
pub const MOVEMENTS_PER_COMPARISON_MAX: usize = 20;

/// Settings of reads that are not part of the stored projection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadSettings {
    /// The value of one volunteer hour, for `social_value_gbp`, and its basis.
    pub volunteer_hour_value: VolunteerHourValue,
}

/// A movement id: 1 to 63 lower-case letters, digits and hyphens, starting
/// with a letter or digit (what the envelope schema says of `subject`).
/// Such an id is safe as one token of a NATS subject.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MovementId(String);

/// What a movement id must match: the envelope schema's `subject` pattern
/// (a test in ingest checks that they agree).
pub const MOVEMENT_ID_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for MovementId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(MOVEMENT_ID_PATTERN))
            .description(Some(
                "A movement id: 1 to 63 lower-case letters, digits and hyphens, not starting with a hyphen.",
            ))
            .examples(["bristol-befriending"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for MovementId {}

/// Text that is not a movement id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a movement id: 1 to 63 lower-case letters, digits and hyphens, starting with a letter or digit")]
pub struct NotAMovementId(pub String);

impl MovementId {
    /// `text` as a movement id, or [`NotAMovementId`] when it is not one.
    pub fn parse(text: &str) -> Result<MovementId, NotAMovementId> {
        if crate::event::is_movement_id(text) {
            Ok(MovementId(text.to_owned()))
        } else {
            Err(NotAMovementId(text.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MovementId {
    type Error = NotAMovementId;

    fn try_from(text: String) -> Result<MovementId, NotAMovementId> {
        if crate::event::is_movement_id(&text) { Ok(MovementId(text)) } else { Err(NotAMovementId(text)) }
    }
}

impl From<MovementId> for String {
    fn from(movement: MovementId) -> String {
        movement.0
    }
}

impl std::fmt::Display for MovementId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Which end of a range a [`RangeError`] is about, named as the requests
/// and the HTTP API name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeEnd {
    /// The first date of the range, `from`.
    From,
    /// The last date of the range, `to`.
    To,
}

impl RangeEnd {
    /// The end's name: `from` or `to`.
    pub fn as_str(self) -> &'static str {
        match self {
            RangeEnd::From => "from",
            RangeEnd::To => "to",
        }
    }
}

/// Why dates do not make a readable range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// A date is before [`EARLIEST_DATE`] or after [`LATEST_DATE`]; holds which end it is.
    #[error("must be between {EARLIEST_DATE} and {LATEST_DATE}")]
    OutOfBounds(RangeEnd),
    /// The last date is before the first.
    #[error("must not be before from ({from})")]
    Reversed {
        /// The first date asked for.
        from: NaiveDate,
        /// The last date asked for, before `from`.
        to: NaiveDate,
    },
    /// The range holds more than [`PERIODS_PER_TREND_MAX`] periods of its interval.
    #[error(
        "the range holds more than {PERIODS_PER_TREND_MAX} periods of a {}; narrow it or use a longer interval",
        interval.as_str()
    )]
    TooLong {
        /// The interval whose periods were counted.
        interval: Interval,
    },
}

impl RangeError {
    /// The end of the range a client would change.
    pub fn end(&self) -> RangeEnd {
        match self {
            RangeError::OutOfBounds(end) => *end,
            RangeError::Reversed { .. } => RangeEnd::To,
            RangeError::TooLong { .. } => RangeEnd::From,
        }
    }
}

/// Local dates from `from` to `to`, both included: in order, within
/// [`EARLIEST_DATE`] and [`LATEST_DATE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DateRangeFields", into = "DateRangeFields")]
pub struct DateRange {
    from: NaiveDate,
    to: NaiveDate,
}

#[derive(Serialize, Deserialize)]
struct DateRangeFields {
    from: NaiveDate,
    to: NaiveDate,
}

impl DateRange {
    /// The dates from `from` to `to`, both included, or why they do not make a readable range.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<DateRange, RangeError> {
        for (date, end) in [(from, RangeEnd::From), (to, RangeEnd::To)] {
            if !(EARLIEST_DATE..=LATEST_DATE).contains(&date) {
                return Err(RangeError::OutOfBounds(end));
            }
        }
        if to < from {
            return Err(RangeError::Reversed { from, to });
        }
        Ok(DateRange { from, to })
    }

    /// The first date, included.
    pub fn from(&self) -> NaiveDate {
        self.from
    }

    /// The last date, included.
    pub fn to(&self) -> NaiveDate {
        self.to
    }
}

impl TryFrom<DateRangeFields> for DateRange {
    type Error = RangeError;

    fn try_from(fields: DateRangeFields) -> Result<DateRange, RangeError> {
        DateRange::new(fields.from, fields.to)
    }
}

impl From<DateRange> for DateRangeFields {
    fn from(range: DateRange) -> DateRangeFields {
        DateRangeFields { from: range.from, to: range.to }
    }
}

/// The periods of one interval from the one holding a range's first date
/// to the one holding its last: at most [`PERIODS_PER_TREND_MAX`] of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PeriodsFields", into = "PeriodsFields")]
pub struct Periods {
    interval: Interval,
    range: DateRange,
}

#[derive(Serialize, Deserialize)]
struct PeriodsFields {
    interval: Interval,
    from: NaiveDate,
    to: NaiveDate,
}

impl Periods {
    /// The periods of `interval` that cover `range`, or [`RangeError::TooLong`] when there are more than
    /// [`PERIODS_PER_TREND_MAX`].
    pub fn new(interval: Interval, range: DateRange) -> Result<Periods, RangeError> {
        if interval.periods(range.from, range.to).nth(PERIODS_PER_TREND_MAX).is_some() {
            return Err(RangeError::TooLong { interval });
        }
        Ok(Periods { interval, range })
    }

    /// The length of each period.
    pub fn interval(&self) -> Interval {
        self.interval
    }

    /// The dates asked for.
    pub fn range(&self) -> DateRange {
        self.range
    }

    /// The first date asked for; the first period is the one containing it.
    pub fn from(&self) -> NaiveDate {
        self.range.from
    }

    /// The last date asked for; the last period is the one containing it.
    pub fn to(&self) -> NaiveDate {
        self.range.to
    }

    /// The first date of each period, in order.
    pub fn starts(&self) -> Vec<NaiveDate> {
        self.interval.periods(self.range.from, self.range.to).collect()
    }
}

impl TryFrom<PeriodsFields> for Periods {
    type Error = RangeError;

    fn try_from(fields: PeriodsFields) -> Result<Periods, RangeError> {
        Periods::new(fields.interval, DateRange::new(fields.from, fields.to)?)
    }
}

impl From<Periods> for PeriodsFields {
    fn from(periods: Periods) -> PeriodsFields {
        PeriodsFields { interval: periods.interval, from: periods.range.from, to: periods.range.to }
    }
}

/// A trend read: the metrics of one movement in every period of a range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendRequest {
    /// The movement whose trend is read.
    pub movement: MovementId,
    /// The periods of the trend; on the wire, `interval`, `from` and `to` beside the other fields.
    #[serde(flatten)]
    pub periods: Periods,
    /// The metrics wanted; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<Metric>>,
    /// The events counted; on the wire, `area`, `partner`, `role` and `kind` beside the other fields.
    #[serde(flatten)]
    pub filter: Filter,
    /// How the read is split, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// The reader's date today, which says which periods are over (`complete`); absent, rows do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today: Option<NaiveDate>,
}

/// A cohorts read: one movement's participants grouped by the period of their first participation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortRequest {
    /// The movement whose cohorts are read.
    pub movement: MovementId,
    /// The periods of the cohorts and of their activity; on the wire, `interval`, `from` and `to` beside `movement`.
    #[serde(flatten)]
    pub periods: Periods,
    /// What a cohort's activity in a later period counts.
    #[serde(default)]
    pub mode: CohortMode,
    /// The events counted.
    #[serde(flatten)]
    pub filter: Filter,
    /// How the read is split, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// The reader's date today, which says which periods are over (`complete`); absent, rows do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today: Option<NaiveDate>,
}

/// The principles read covers days, at most [`PERIODS_PER_TREND_MAX`] of
/// them, as a daily trend would.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PrinciplesFields", into = "PrinciplesFields")]
pub struct PrinciplesRequest {
    /// The movement whose principles are read.
    pub movement: MovementId,
    days: Periods,
    /// The events counted.
    pub filter: Filter,
    /// How the read is split, if it is.
    pub split: Option<Split>,
}

#[derive(Serialize, Deserialize)]
struct PrinciplesFields {
    movement: MovementId,
    from: NaiveDate,
    to: NaiveDate,
    #[serde(flatten)]
    filter: Filter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    split: Option<Split>,
}

impl PrinciplesRequest {
    /// A read of `movement` over the days of `range`, or [`RangeError::TooLong`] when there are more than
    /// [`PERIODS_PER_TREND_MAX`].
    pub fn new(movement: MovementId, range: DateRange) -> Result<PrinciplesRequest, RangeError> {
        Ok(PrinciplesRequest {
            movement,
            days: Periods::new(Interval::Day, range)?,
            filter: Filter::default(),
            split: None,
        })
    }

    /// The local dates the read covers, both included.
    pub fn range(&self) -> DateRange {
        self.days.range
    }
}

impl TryFrom<PrinciplesFields> for PrinciplesRequest {
    type Error = RangeError;

    fn try_from(fields: PrinciplesFields) -> Result<PrinciplesRequest, RangeError> {
        let request = PrinciplesRequest::new(fields.movement, DateRange::new(fields.from, fields.to)?)?;
        Ok(PrinciplesRequest { filter: fields.filter, split: fields.split, ..request })
    }
}

impl From<PrinciplesRequest> for PrinciplesFields {
    fn from(request: PrinciplesRequest) -> PrinciplesFields {
        PrinciplesFields {
            movement: request.movement,
            from: request.days.from(),
            to: request.days.to(),
            filter: request.filter,
            split: request.split,
        }
    }
}

/// 1 to [`MOVEMENTS_PER_COMPARISON_MAX`] movements, each named once, in
/// the order first named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<MovementId>", into = "Vec<MovementId>")]
pub struct ComparedMovements(Vec<MovementId>);

/// No movements to compare, or too many.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("name 1 to {MOVEMENTS_PER_COMPARISON_MAX} movements to compare, separated by commas")]
pub struct ComparedMovementsError;

impl ComparedMovements {
    /// The movements, a repeated one kept where first named (naming one
    /// twice gave two identical CSV columns).
    pub fn new(named: Vec<MovementId>) -> Result<ComparedMovements, ComparedMovementsError> {
        let mut movements: Vec<MovementId> = Vec::with_capacity(named.len());
        for movement in named {
            if !movements.contains(&movement) {
                movements.push(movement);
            }
        }
        if movements.is_empty() || movements.len() > MOVEMENTS_PER_COMPARISON_MAX {
            return Err(ComparedMovementsError);
        }
        Ok(ComparedMovements(movements))
    }

    /// The movements, in the order first named.
    pub fn as_slice(&self) -> &[MovementId] {
        &self.0
    }
}

impl TryFrom<Vec<MovementId>> for ComparedMovements {
    type Error = ComparedMovementsError;

    fn try_from(movements: Vec<MovementId>) -> Result<ComparedMovements, ComparedMovementsError> {
        ComparedMovements::new(movements)
    }
}

impl From<ComparedMovements> for Vec<MovementId> {
    fn from(movements: ComparedMovements) -> Vec<MovementId> {
        movements.0
    }
}

/// A comparison read: one trend metric of several movements over the same periods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareRequest {
    /// The movements compared.
    pub movements: ComparedMovements,
    /// The trend metric compared.
    pub metric: Metric,
    /// The periods compared; on the wire, `interval`, `from` and `to` beside the other fields.
    #[serde(flatten)]
    pub periods: Periods,
    /// The events counted, in every movement compared.
    #[serde(flatten)]
    pub filter: Filter,
    /// How the read is split, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// The reader's date today, which says which periods are over (`complete`); absent, rows do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today: Option<NaiveDate>,
}

impl CompareRequest {
    /// The trend request of one of the compared movements.
    pub fn trend_of(&self, movement: &MovementId, metrics: Option<Vec<Metric>>) -> TrendRequest {
        TrendRequest {
            movement: movement.clone(),
            periods: self.periods,
            metrics,
            filter: self.filter.clone(),
            split: self.split,
            today: self.today,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("a date")
    }

    #[test]
    fn a_range_is_built_only_in_order_and_within_the_readable_years() {
        assert!(DateRange::new(date(2026, 3, 2), date(2026, 3, 2)).is_ok());
        assert_eq!(
            DateRange::new(date(2026, 3, 3), date(2026, 3, 2)).unwrap_err().end(),
            RangeEnd::To,
            "a reversed range is the fault of `to`"
        );
        assert_eq!(DateRange::new(date(1899, 12, 31), date(2026, 3, 2)), Err(RangeError::OutOfBounds(RangeEnd::From)));
        assert_eq!(DateRange::new(date(2026, 3, 2), date(3000, 1, 1)), Err(RangeError::OutOfBounds(RangeEnd::To)));
    }

    #[test]
    fn periods_hold_at_most_the_most_a_read_covers() {
        let from = date(2000, 1, 1);
        let longest = Interval::Day.shift(from, PERIODS_PER_TREND_MAX as i32 - 1);
        let range = DateRange::new(from, longest).unwrap();
        assert_eq!(Periods::new(Interval::Day, range).unwrap().starts().len(), PERIODS_PER_TREND_MAX);
        let one_more = DateRange::new(from, longest + chrono::Days::new(1)).unwrap();
        assert_eq!(Periods::new(Interval::Day, one_more), Err(RangeError::TooLong { interval: Interval::Day }));
        assert!(Periods::new(Interval::Week, one_more).is_ok());
    }

    #[test]
    fn requests_read_from_json_are_checked_as_built() {
        let trend = r#"{"movement":"leeds","interval":"week","from":"2026-03-09","to":"2026-03-02"}"#;
        let error = serde_json::from_str::<TrendRequest>(trend).unwrap_err().to_string();
        assert!(error.contains("must not be before from"), "{error}");
        let bad_id = r#"{"movement":"Leeds Walks","from":"2026-03-02","to":"2026-03-02"}"#;
        assert!(serde_json::from_str::<PrinciplesRequest>(bad_id).is_err());
        let none = r#"{"movements":[],"metric":"meetings","interval":"week","from":"2026-03-02","to":"2026-03-02"}"#;
        assert!(serde_json::from_str::<CompareRequest>(none).is_err());
        let names: Vec<String> = (0..=MOVEMENTS_PER_COMPARISON_MAX).map(|n| format!("m{n}")).collect();
        let too_many = serde_json::json!({
            "movements": names, "metric": "meetings", "interval": "week", "from": "2026-03-02", "to": "2026-03-02",
        });
        assert!(serde_json::from_value::<CompareRequest>(too_many).is_err(), "21 movements");
        let days = r#"{"movement":"leeds","interval":"day","from":"2000-01-01","to":"2010-01-08"}"#;
        let error = serde_json::from_str::<TrendRequest>(days).unwrap_err().to_string();
        assert!(error.contains("more than 3660 periods"), "{error}");
        let good = r#"{"movement":"leeds","interval":"week","from":"2026-03-02","to":"2026-03-09"}"#;
        let request: TrendRequest = serde_json::from_str(good).unwrap();
        assert_eq!(serde_json::to_string(&request).unwrap(), good, "the wire form is unchanged");
    }

    #[test]
    fn a_movement_named_twice_is_compared_once_in_the_order_first_named() {
        let id = |text: &str| MovementId::parse(text).unwrap();
        let movements = ComparedMovements::new(vec![id("b"), id("a"), id("b")]).unwrap();
        assert_eq!(movements.as_slice(), [id("b"), id("a")]);
        let too_many = (0..=MOVEMENTS_PER_COMPARISON_MAX).map(|n| id(&format!("m{n}"))).collect();
        assert_eq!(ComparedMovements::new(too_many), Err(ComparedMovementsError));
    }
}
