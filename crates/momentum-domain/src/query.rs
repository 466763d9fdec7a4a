//! Reads over the projection, and the request and response shapes that the
//! projector and the query service exchange. Most answers are the JSON the
//! HTTP API returns, which the query service passes through; a trend crosses
//! as its period totals ([`TrendTotals`]), from which the query service
//! computes the trend with [`trend_json_from_totals`].
//!
//! Every read costs in proportion to what it returns (periods, cohorts,
//! principles), never to the number of events stored.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Principle;
use crate::ledger::{Ledger, MOMENTUM_WINDOW_PERIODS, MovementLedger, PeriodTotals};
use crate::period::Interval;

/// The ledger's reads: figures computed from a movement's facts
/// ([`crate::ledger::MovementLedger`]), each in proportion to the facts of
/// the periods it covers.
pub trait ProjectionRead {
    type Error;
    /// The last stream sequence folded in.
    fn watermark(&self) -> Result<u64, Self::Error>;
    /// The movement's count of distinct accepted events; `None` for a
    /// movement without any.
    fn movement_events(&self, movement: &str) -> Result<Option<u64>, Self::Error>;
    /// Every movement with at least one event, in id order.
    fn movement_list(&self) -> Result<Vec<MovementSummary>, Self::Error>;
    /// The totals of each of `starts` (consecutive periods, in order),
    /// zeros where nothing happened.
    fn period_totals(
        &self,
        movement: &str,
        interval: Interval,
        starts: &[NaiveDate],
    ) -> Result<Vec<PeriodTotals>, Self::Error>;
    /// For each of `periods` (consecutive, in order) as a cohort, how many
    /// of its members took part in it and in each later period of
    /// `periods`: `[c][k]` for cohort `c` in period `c + k`.
    fn cohort_activity(
        &self,
        movement: &str,
        interval: Interval,
        periods: &[NaiveDate],
    ) -> Result<Vec<Vec<i64>>, Self::Error>;
    /// Each principle's tagged activities from `from` to `to` (inclusive),
    /// and their distinct participants, in [`Principle::ALL`]'s order.
    fn principle_figures(
        &self,
        movement: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<[(u64, u64); Principle::ALL.len()], Self::Error>;
}

impl ProjectionRead for Ledger {
    type Error = std::convert::Infallible;

    fn watermark(&self) -> Result<u64, Self::Error> {
        Ok(Ledger::watermark(self))
    }

    fn movement_events(&self, movement: &str) -> Result<Option<u64>, Self::Error> {
        Ok(self.movement(movement).map(MovementLedger::accepted_events))
    }

    fn movement_list(&self) -> Result<Vec<MovementSummary>, Self::Error> {
        Ok(self
            .movements()
            .map(|(movement, ledger)| MovementSummary {
                movement: movement.to_owned(),
                events: ledger.accepted_events(),
            })
            .collect())
    }

    fn period_totals(
        &self,
        movement: &str,
        interval: Interval,
        starts: &[NaiveDate],
    ) -> Result<Vec<PeriodTotals>, Self::Error> {
        Ok(match self.movement(movement) {
            Some(ledger) => ledger.period_totals(interval, starts),
            None => vec![PeriodTotals::default(); starts.len()],
        })
    }

    fn cohort_activity(
        &self,
        movement: &str,
        interval: Interval,
        periods: &[NaiveDate],
    ) -> Result<Vec<Vec<i64>>, Self::Error> {
        Ok(match self.movement(movement) {
            Some(ledger) => ledger.cohort_activity(interval, periods),
            None => (0..periods.len()).map(|cohort| vec![0; periods.len() - cohort]).collect(),
        })
    }

    fn principle_figures(
        &self,
        movement: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<[(u64, u64); Principle::ALL.len()], Self::Error> {
        Ok(self.movement(movement).map_or([(0, 0); Principle::ALL.len()], |ledger| ledger.principle_figures(from, to)))
    }
}

/// The most periods one trend may return: ten years of days.
pub const PERIODS_PER_TREND_MAX: usize = 3660;

/// The dates a read may name: wide enough for any record, narrow enough to
/// keep period arithmetic far from the limits of the calendar types.
pub const EARLIEST_DATE: NaiveDate = date_or_panic(1900, 1, 1);
pub const LATEST_DATE: NaiveDate = date_or_panic(2999, 12, 31);

const fn date_or_panic(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("not a date"),
    }
}
/// The most movements one comparison may name.
pub const MOVEMENTS_PER_COMPARISON_MAX: usize = 20;

/// Whether a read of `interval` periods from `from` to `to` is within
/// [`PERIODS_PER_TREND_MAX`]; the query service checks this before asking.
pub fn range_is_readable(interval: Interval, from: NaiveDate, to: NaiveDate) -> bool {
    interval.periods(from, to).nth(PERIODS_PER_TREND_MAX).is_none()
}

/// Every metric a trend can carry; the names are the API's field names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ActiveParticipants,
    NewParticipants,
    ReturningParticipants,
    RetainedParticipants,
    RetentionRate,
    Joined,
    Meetings,
    Attendances,
    VolunteerHours,
    Volunteers,
    SocialValueGbp,
    CollectiveActions,
    ActionParticipants,
    PeopleReached,
    Organisers,
    CitizenLedShare,
    Partners,
    Areas,
    Momentum,
}

/// Names each metric once, for both [`Metric::as_str`] and the JSON key a
/// trend row writes before its figure.
macro_rules! metric_names {
    ($($metric:ident => $name:literal,)*) => {
        impl Metric {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Metric::$metric => $name,)*
                }
            }

            /// `,"<name>":`, as a trend row writes it before the figure.
            fn json_key(self) -> &'static str {
                match self {
                    $(Metric::$metric => concat!(",\"", $name, "\":"),)*
                }
            }
        }
    };
}

metric_names! {
    ActiveParticipants => "active_participants",
    NewParticipants => "new_participants",
    ReturningParticipants => "returning_participants",
    RetainedParticipants => "retained_participants",
    RetentionRate => "retention_rate",
    Joined => "joined",
    Meetings => "meetings",
    Attendances => "attendances",
    VolunteerHours => "volunteer_hours",
    Volunteers => "volunteers",
    SocialValueGbp => "social_value_gbp",
    CollectiveActions => "collective_actions",
    ActionParticipants => "action_participants",
    PeopleReached => "people_reached",
    Organisers => "organisers",
    CitizenLedShare => "citizen_led_share",
    Partners => "partners",
    Areas => "areas",
    Momentum => "momentum",
}

impl Metric {
    pub const ALL: [Metric; 19] = [
        Metric::ActiveParticipants,
        Metric::NewParticipants,
        Metric::ReturningParticipants,
        Metric::RetainedParticipants,
        Metric::RetentionRate,
        Metric::Joined,
        Metric::Meetings,
        Metric::Attendances,
        Metric::VolunteerHours,
        Metric::Volunteers,
        Metric::SocialValueGbp,
        Metric::CollectiveActions,
        Metric::ActionParticipants,
        Metric::PeopleReached,
        Metric::Organisers,
        Metric::CitizenLedShare,
        Metric::Partners,
        Metric::Areas,
        Metric::Momentum,
    ];

    pub fn parse(text: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.as_str() == text)
    }

    /// The metric's value for period P, from the totals of P, P-1 and P-4.
    #[inline]
    fn figure(
        self,
        current: &PeriodTotals,
        previous: &PeriodTotals,
        four_back: &PeriodTotals,
        hour_value_gbp: f64,
    ) -> Figure {
        let ratio = |numerator: i64, denominator: i64| {
            if denominator == 0 { Figure::Undefined } else { Figure::Fraction(numerator as f64 / denominator as f64) }
        };
        match self {
            Metric::ActiveParticipants => Figure::Count(current.active_participants),
            Metric::NewParticipants => Figure::Count(current.new_participants),
            Metric::ReturningParticipants => {
                Figure::Count(current.active_participants.saturating_sub(current.new_participants))
            }
            Metric::RetainedParticipants => Figure::Count(current.retained_participants),
            Metric::RetentionRate => ratio(current.retained_participants, previous.active_participants),
            Metric::Joined => Figure::Count(current.joined),
            Metric::Meetings => Figure::Count(current.meetings),
            Metric::Attendances => Figure::Count(current.attendances),
            Metric::VolunteerHours => Figure::decimal(current.volunteer_millihours, 3),
            Metric::Volunteers => Figure::Count(current.volunteers),
            Metric::SocialValueGbp => {
                let pence = (current.volunteer_millihours as f64 * hour_value_gbp / 10.0).round();
                // Whole pence are written as a decimal while they are exact
                // integers, as every real total is.
                if pence.abs() < Figure::DECIMAL_UNITS_BOUND as f64 {
                    Figure::decimal(pence as i64, 2)
                } else {
                    Figure::Fraction(pence / 100.0)
                }
            }
            Metric::CollectiveActions => Figure::Count(current.collective_actions),
            Metric::ActionParticipants => Figure::Count(current.action_participants),
            Metric::PeopleReached => Figure::Count(current.people_reached),
            Metric::Organisers => Figure::Count(current.organisers),
            Metric::CitizenLedShare => {
                ratio(current.citizen_led, current.meetings.saturating_add(current.collective_actions))
            }
            Metric::Partners => Figure::Count(current.partners),
            Metric::Areas => Figure::Count(current.areas),
            Metric::Momentum => {
                // Saturating: totals that crossed NATS are not trusted not to overflow.
                ratio(
                    current.window_participants.saturating_sub(four_back.window_participants),
                    four_back.window_participants,
                )
            }
        }
    }
}

/// One figure of a trend: a count, a fraction, or undefined (a ratio with
/// a zero divisor), which JSON writes as `null`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Figure {
    Count(i64),
    Fraction(f64),
    /// `units` / 10^`places`: whole milli-hours as hours, whole pence as
    /// pounds. Its value is the float `Fraction` would hold; it is only
    /// written without a float formatter (a fifth of a trend's figures).
    Decimal {
        units: i64,
        places: u32,
    },
    Undefined,
}

impl Figure {
    /// Below this many units (15 digits) the decimal is exactly the
    /// shortest text of its float: two decimals of at most 15 significant
    /// digits never round to the same `f64`.
    const DECIMAL_UNITS_BOUND: u64 = 1_000_000_000_000_000;

    fn decimal(units: i64, places: u32) -> Figure {
        debug_assert!(places <= 3, "only milli-hours and pence are decimals");
        if units.unsigned_abs() < Figure::DECIMAL_UNITS_BOUND {
            Figure::Decimal { units, places }
        } else {
            Figure::Fraction(units as f64 / 10f64.powi(places as i32))
        }
    }
}

impl From<Figure> for Value {
    fn from(figure: Figure) -> Value {
        match figure {
            Figure::Count(count) => Value::from(count),
            // A fraction that is not finite becomes null, as serde_json writes it.
            Figure::Fraction(fraction) => Value::from(fraction),
            Figure::Decimal { units, places } => Value::from(units as f64 / 10f64.powi(places as i32)),
            Figure::Undefined => Value::Null,
        }
    }
}

/// Settings of reads that are not part of the stored projection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadSettings {
    /// The value of one volunteer hour in pounds, for `social_value_gbp`.
    pub volunteer_hour_value_gbp: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendRequest {
    pub movement: String,
    pub interval: Interval,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The metrics wanted; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<Metric>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trend {
    pub movement: String,
    pub interval: Interval,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The last stream sequence these figures include.
    pub watermark: u64,
    /// The value of a volunteer hour `social_value_gbp` was computed with.
    pub volunteer_hour_value_gbp: f64,
    pub series: Vec<TrendRow>,
    /// Set when counts of people below this were replaced by `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

/// One period of a trend: its first local date and the requested metrics,
/// in the order of [`Metric::ALL`]; a ratio with a zero divisor is `null`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrendRow {
    pub period: NaiveDate,
    pub values: Vec<(Metric, Value)>,
}

impl TrendRow {
    pub fn get(&self, metric: Metric) -> Option<&Value> {
        self.values.iter().find(|(name, _)| *name == metric).map(|(_, value)| value)
    }
}

impl Trend {
    /// The trend as JSON: byte for byte what `serde_json::to_vec` writes,
    /// written directly. A three-year weekly trend holds about 3 000
    /// figures, and serde's map serialiser escaped every metric name of every
    /// row again; that was a third of a trend read's CPU in the projector.
    pub fn to_json(&self) -> Vec<u8> {
        write_trend(self, self.series.len(), |out, index| {
            let row = &self.series[index];
            write_row(out, row.period, row.values.iter().map(|(metric, value)| (*metric, value)));
        })
    }
}

/// Writes `header` (a trend's fields but its series) with `rows` rows,
/// each written by `write_row`.
fn write_trend(header: &Trend, rows: usize, mut write_row: impl FnMut(&mut Vec<u8>, usize)) -> Vec<u8> {
    // About 600 bytes a row with every metric.
    let mut out = Vec::with_capacity(256 + rows * (16 + 32 * Metric::ALL.len()));
    write_field(&mut out, "{\"movement\":", &header.movement);
    write_field(&mut out, ",\"interval\":", &header.interval);
    write_field(&mut out, ",\"from\":", &header.from);
    write_field(&mut out, ",\"to\":", &header.to);
    write_field(&mut out, ",\"watermark\":", &header.watermark);
    write_field(&mut out, ",\"volunteer_hour_value_gbp\":", &header.volunteer_hour_value_gbp);
    out.extend_from_slice(b",\"series\":[");
    for index in 0..rows {
        if index > 0 {
            out.push(b',');
        }
        write_row(&mut out, index);
    }
    out.push(b']');
    if let Some(below) = header.suppressed_below {
        write_field(&mut out, ",\"suppressed_below\":", &below);
    }
    out.push(b'}');
    out
}

/// Writes one row: its period, then each metric's figure.
fn write_row<F: WriteFigure>(out: &mut Vec<u8>, period: NaiveDate, figures: impl Iterator<Item = (Metric, F)>) {
    out.extend_from_slice(b"{\"period\":");
    write_date(out, period);
    for (metric, figure) in figures {
        // Metric names are ASCII identifiers: nothing to escape.
        out.extend_from_slice(metric.json_key().as_bytes());
        figure.write(out);
    }
    out.push(b'}');
}

/// A figure as serde_json writes it, with the formatters it uses (`itoa`
/// for integers, `zmij` for floats); the property tests hold the text to
/// serde_json's.
trait WriteFigure {
    fn write(self, out: &mut Vec<u8>);
}

impl WriteFigure for Figure {
    #[inline]
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Figure::Count(count) => write_integer(out, count),
            // The formatter serde_json writes finite floats with.
            Figure::Fraction(fraction) if fraction.is_finite() => {
                out.extend_from_slice(zmij::Buffer::new().format_finite(fraction).as_bytes());
            }
            Figure::Fraction(_) | Figure::Undefined => out.extend_from_slice(b"null"),
            // What zmij writes for the float: fixed notation, at least one
            // digit after the point, no trailing zeros.
            Figure::Decimal { units, places } => {
                if units < 0 {
                    out.push(b'-');
                }
                let scale = 10u64.pow(places);
                let (whole, mut fraction) = (units.unsigned_abs() / scale, units.unsigned_abs() % scale);
                write_integer(out, whole as i64);
                out.push(b'.');
                if fraction == 0 {
                    out.push(b'0');
                    return;
                }
                let mut digits = places;
                while fraction % 10 == 0 {
                    (fraction, digits) = (fraction / 10, digits - 1);
                }
                let mut text = [b'0'; 3];
                for position in (0..digits as usize).rev() {
                    text[position] = b'0' + (fraction % 10) as u8;
                    fraction /= 10;
                }
                out.extend_from_slice(&text[..digits as usize]);
            }
        }
    }
}

impl WriteFigure for &Value {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Value::Number(number) if number.is_i64() => {
                Figure::Count(number.as_i64().expect("checked to be an i64")).write(out);
            }
            Value::Null => out.extend_from_slice(b"null"),
            other => write_serde(out, other),
        }
    }
}

/// Writes an integer as itoa does. Most figures of a trend are below a
/// thousand: their digits are pushed one by one, cheaper than copying
/// itoa's buffer out (a tenth of a trend's writing).
#[inline]
fn write_integer(out: &mut Vec<u8>, value: i64) {
    let digit = |value: i64| b'0' + value as u8;
    match value {
        0..10 => out.push(digit(value)),
        10..100 => out.extend_from_slice(&[digit(value / 10), digit(value % 10)]),
        100..1000 => out.extend_from_slice(&[digit(value / 100), digit(value / 10 % 10), digit(value % 10)]),
        _ => out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes()),
    }
}

/// Writes `key` (already JSON) and the value as serde_json writes it.
fn write_field<T: Serialize>(out: &mut Vec<u8>, key: &str, value: &T) {
    out.extend_from_slice(key.as_bytes());
    write_serde(out, value);
}

fn write_serde<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("trend fields always serialise");
}

/// Writes a date as serde (chrono's `%Y-%m-%d`) does, without the
/// formatting machinery for the four-digit years every period has.
fn write_date(out: &mut Vec<u8>, date: NaiveDate) {
    use chrono::Datelike;
    let (year, month, day) = (date.year(), date.month(), date.day());
    if !(0..=9999).contains(&year) {
        write_serde(out, &date);
        return;
    }
    let digit = |value: u32| b'0' + value as u8;
    let year = year as u32;
    out.extend_from_slice(&[
        b'"',
        digit(year / 1000),
        digit(year / 100 % 10),
        digit(year / 10 % 10),
        digit(year % 10),
        b'-',
        digit(month / 10),
        digit(month % 10),
        b'-',
        digit(day / 10),
        digit(day % 10),
        b'"',
    ]);
}

impl Serialize for TrendRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + self.values.len()))?;
        map.serialize_entry("period", &self.period)?;
        for (metric, value) in &self.values {
            map.serialize_entry(metric.as_str(), value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for TrendRow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TrendRow, D::Error> {
        let mut fields = serde_json::Map::deserialize(deserializer)?;
        let period = fields.remove("period").ok_or_else(|| serde::de::Error::missing_field("period"))?;
        let period = serde_json::from_value(period).map_err(serde::de::Error::custom)?;
        let values = Metric::ALL
            .into_iter()
            .filter_map(|metric| fields.remove(metric.as_str()).map(|value| (metric, value)))
            .collect();
        Ok(TrendRow { period, values })
    }
}

/// The schema of a trend row for the API document: it is written by hand
/// because the row is serialised by hand, one property per metric.
#[cfg(feature = "openapi")]
mod trend_row_schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
    use utoipa::openapi::{RefOr, schema::SchemaType};

    use super::{Metric, TrendRow};

    impl Metric {
        /// The JSON type of the metric's values: counts are integers and
        /// hours, pounds and ratios numbers; counts of people may be `null`
        /// (suppressed) and ratios `null` (undefined, or suppressed).
        fn value_schema(self) -> ObjectBuilder {
            // Counts of people may be suppressed, ratios undefined: both `null`.
            let whole = !matches!(
                self,
                Metric::VolunteerHours
                    | Metric::SocialValueGbp
                    | Metric::RetentionRate
                    | Metric::CitizenLedShare
                    | Metric::Momentum
            );
            let nullable = self.counts_people()
                || matches!(self, Metric::RetentionRate | Metric::CitizenLedShare | Metric::Momentum);
            let number = if whole { Type::Integer } else { Type::Number };
            let schema_type =
                if nullable { SchemaType::from_iter([number, Type::Null]) } else { SchemaType::new(number) };
            ObjectBuilder::new().schema_type(schema_type)
        }
    }

    impl utoipa::PartialSchema for TrendRow {
        fn schema() -> RefOr<Schema> {
            let date = ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)));
            let mut row = ObjectBuilder::new()
                .description(Some(
                    "One period: its first local date and one property per metric asked for (every metric \
                     when `metrics` is not given), in the order of the metrics list; see docs/metrics.md.",
                ))
                .property("period", date.description(Some("The first local date of the period.")))
                .required("period");
            for metric in Metric::ALL {
                row = row.property(metric.as_str(), metric.value_schema());
            }
            row.into()
        }
    }

    impl utoipa::ToSchema for TrendRow {}
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MovementList {
    pub watermark: u64,
    pub movements: Vec<MovementSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MovementSummary {
    pub movement: String,
    /// Distinct events accepted for the movement, retractions included.
    pub events: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// The last stream sequence the projection has applied.
    pub watermark: u64,
    /// Stream messages this projector process has read since it started:
    /// after a restart it counts only what came after the checkpoint.
    pub applied_since_start: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortRequest {
    pub movement: String,
    pub interval: Interval,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cohorts {
    pub movement: String,
    pub interval: Interval,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub watermark: u64,
    pub cohorts: Vec<Cohort>,
    /// Set when counts of people below this were replaced by `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

/// The participants whose first participation falls in one period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cohort {
    /// The period's first local date.
    pub cohort: NaiveDate,
    /// `None` only where small numbers are suppressed.
    pub size: Option<i64>,
    /// How many of them took part in the cohort's period, the next, and so
    /// on to the last period in range; `None` only where suppressed.
    pub active: Vec<Option<i64>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrinciplesRequest {
    pub movement: String,
    /// First local date, inclusive.
    pub from: NaiveDate,
    /// Last local date, inclusive.
    pub to: NaiveDate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Principles {
    pub movement: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub watermark: u64,
    pub principles: Vec<PrincipleFigures>,
    /// Set when counts of people below this were replaced by `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrincipleFigures {
    pub principle: Principle,
    /// Meetings, actions and hour logs tagged with the principle.
    pub activities: u64,
    /// Distinct participants of those activities; `None` only where suppressed.
    pub participants: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareRequest {
    pub movements: Vec<String>,
    pub metric: Metric,
    pub interval: Interval,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comparison {
    pub metric: Metric,
    pub interval: Interval,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub watermark: u64,
    pub volunteer_hour_value_gbp: f64,
    pub series: Vec<ComparedMovement>,
    /// Set when counts of people below this were replaced by `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComparedMovement {
    pub movement: String,
    pub values: Vec<PeriodValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeriodValue {
    pub period: NaiveDate,
    /// The metric's value; `null` where a ratio is undefined or a count suppressed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required = true))]
    pub value: Value,
}

/// Why a read could not be answered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError<E> {
    #[error("movement {0:?} has no events")]
    UnknownMovement(String),
    #[error("`to` ({to}) is before `from` ({from})")]
    RangeReversed { from: NaiveDate, to: NaiveDate },
    #[error("the range has {periods} periods; at most {PERIODS_PER_TREND_MAX} can be read at once")]
    RangeTooLong { periods: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("the store could not be read")]
    Store(E),
}

fn check_range<E>(interval: Interval, from: NaiveDate, to: NaiveDate) -> Result<Vec<NaiveDate>, QueryError<E>> {
    // The query service checks this too, for a clear error naming the
    // parameter; here it guards the projector against any other requester.
    if from < EARLIEST_DATE || to > LATEST_DATE {
        return Err(QueryError::Invalid(format!("dates must be between {EARLIEST_DATE} and {LATEST_DATE}")));
    }
    if to < from {
        return Err(QueryError::RangeReversed { from, to });
    }
    let periods: Vec<NaiveDate> = interval.periods(from, to).take(PERIODS_PER_TREND_MAX + 1).collect();
    if periods.len() > PERIODS_PER_TREND_MAX {
        return Err(QueryError::RangeTooLong { periods: interval.periods(from, to).count() });
    }
    Ok(periods)
}

fn check_movement<R: ProjectionRead + ?Sized>(projection: &R, movement: &str) -> Result<(), QueryError<R::Error>> {
    match projection.movement_events(movement).map_err(QueryError::Store)? {
        Some(_) => Ok(()),
        None => Err(QueryError::UnknownMovement(movement.to_owned())),
    }
}

/// The trend of one movement: one row for every period in range, zeros
/// where nothing happened.
pub fn trend<R: ProjectionRead + ?Sized>(
    projection: &R,
    request: &TrendRequest,
    settings: &ReadSettings,
) -> Result<Trend, QueryError<R::Error>> {
    trend_from_totals(request, &trend_totals(projection, request, settings)?)
}

/// What a trend is computed from: the stored totals of every period in
/// range and of the four before the first, which retention and momentum
/// look back to. The query service asks for these rather than the trend:
/// three years of weekly totals are about 10 KB of JSON, the trend with
/// every metric about 95 KB, and those bytes crossed NATS twice per read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendTotals {
    /// The last stream sequence these totals include.
    pub watermark: u64,
    /// The projector's value of a volunteer hour, so that every reader
    /// computes `social_value_gbp` alike.
    pub volunteer_hour_value_gbp: f64,
    /// [`MOMENTUM_WINDOW_PERIODS`] periods before the range, then each
    /// period in range, in order.
    pub totals: Vec<PeriodTotals>,
}

/// How the projector encodes a `trend_totals` answer. JSON unless the
/// asker names [`TotalsEncoding::Binary`]: the query service does, and
/// reads either, so that a query service and a projector of different
/// versions still understand each other during an upgrade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotalsEncoding {
    /// [`TrendTotals::to_binary`]: reading three years of weekly totals as
    /// JSON was a quarter of the query service's work for a trend
    /// (docs/benchmarks.md).
    Binary,
    /// JSON, as every other answer. Also what an encoding this version
    /// does not know reads as, so that a newer query service asking for
    /// one still gets an answer it can read.
    #[default]
    #[serde(other)]
    Json,
}

/// The first byte of [`TrendTotals::to_binary`]'s form; JSON's is `{`.
const TOTALS_BINARY_VERSION: u8 = 1;

/// The version byte, the watermark, the hour value and the period count.
const TOTALS_HEADER_BYTES: usize = 1 + 8 + 8 + 4;

/// The periods binary totals may hold, so that a damaged count cannot make
/// the reader reserve memory without bound.
const TOTALS_PERIODS_MAX: usize = PERIODS_PER_TREND_MAX + MOMENTUM_WINDOW_PERIODS as usize;

/// Totals that are neither JSON nor binary totals this version can read.
#[derive(Debug, thiserror::Error)]
#[error("trend totals cannot be read: {0}")]
pub struct UnreadableTotals(String);

impl TrendTotals {
    /// A compact form: the version byte, the watermark (u64) and hour value
    /// (f64), little-endian, the number of periods (u32), then for each
    /// period the count of its fields up to the last that is not zero (one
    /// byte) and those fields, each zigzag-encoded as a LEB128 varint.
    /// Three years of weekly totals take about a third of their JSON.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(TOTALS_HEADER_BYTES + self.totals.len() * 24);
        bytes.push(TOTALS_BINARY_VERSION);
        bytes.extend_from_slice(&self.watermark.to_le_bytes());
        bytes.extend_from_slice(&self.volunteer_hour_value_gbp.to_le_bytes());
        let periods = u32::try_from(self.totals.len()).expect("a trend has at most TOTALS_PERIODS_MAX periods");
        bytes.extend_from_slice(&periods.to_le_bytes());
        for totals in &self.totals {
            let fields = totals.fields();
            let length = fields.iter().rposition(|field| *field != 0).map_or(0, |last| last + 1);
            bytes.push(u8::try_from(length).expect("a period has 16 fields"));
            for field in &fields[..length] {
                let mut zigzag = ((field << 1) ^ (field >> 63)) as u64;
                while zigzag >= 0x80 {
                    bytes.push((zigzag as u8) | 0x80);
                    zigzag >>= 7;
                }
                bytes.push(zigzag as u8);
            }
        }
        bytes
    }

    /// Reads a projector's answer, JSON or [`TrendTotals::to_binary`]'s
    /// form. As with stored totals, a period with fewer fields reads with
    /// zeros for the rest, and fields a newer writer appended are skipped.
    pub fn from_answer(bytes: &[u8]) -> Result<TrendTotals, UnreadableTotals> {
        match bytes.first() {
            Some(&TOTALS_BINARY_VERSION) => TrendTotals::from_binary(&bytes[1..]),
            _ => serde_json::from_slice(bytes).map_err(|error| UnreadableTotals(error.to_string())),
        }
    }

    fn from_binary(bytes: &[u8]) -> Result<TrendTotals, UnreadableTotals> {
        let mut reader = BinaryReader { rest: bytes };
        let watermark = u64::from_le_bytes(reader.take()?);
        let volunteer_hour_value_gbp = f64::from_le_bytes(reader.take()?);
        let periods = u32::from_le_bytes(reader.take()?) as usize;
        if periods > TOTALS_PERIODS_MAX {
            return Err(UnreadableTotals(format!("{periods} periods, more than a trend holds")));
        }
        let mut totals = Vec::with_capacity(periods);
        for _ in 0..periods {
            let [length] = reader.take()?;
            let mut period = PeriodTotals::default();
            let mut fields = period.fields_mut().into_iter();
            for _ in 0..length {
                let value = reader.varint()?;
                if let Some(field) = fields.next() {
                    *field = value;
                }
            }
            drop(fields);
            totals.push(period);
        }
        if !reader.rest.is_empty() {
            return Err(UnreadableTotals(format!("{} bytes after the last period", reader.rest.len())));
        }
        Ok(TrendTotals { watermark, volunteer_hour_value_gbp, totals })
    }
}

/// Reads [`TrendTotals::to_binary`]'s form, refusing to read past its end.
struct BinaryReader<'a> {
    rest: &'a [u8],
}

impl BinaryReader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], UnreadableTotals> {
        let (taken, rest) =
            self.rest.split_first_chunk::<N>().ok_or_else(|| UnreadableTotals("cut short".to_owned()))?;
        self.rest = rest;
        Ok(*taken)
    }

    /// A zigzag LEB128 varint of at most ten bytes.
    fn varint(&mut self) -> Result<i64, UnreadableTotals> {
        let mut zigzag = 0u64;
        let mut shift = 0;
        loop {
            let [byte] = self.take()?;
            // The tenth byte carries the 64th bit only: anything more, a
            // continuation included, is not a u64.
            if shift == 63 && byte > 1 {
                return Err(UnreadableTotals("a number beyond 64 bits".to_owned()));
            }
            zigzag |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64));
            }
            shift += 7;
        }
    }
}

/// Reads the totals of a trend: the watermark, then one range scan.
pub fn trend_totals<R: ProjectionRead + ?Sized>(
    projection: &R,
    request: &TrendRequest,
    settings: &ReadSettings,
) -> Result<TrendTotals, QueryError<R::Error>> {
    let periods = check_range(request.interval, request.from, request.to)?;
    // Read the watermark first: rows written after it only make the answer
    // newer than it says, never older.
    let watermark = projection.watermark().map_err(QueryError::Store)?;
    check_movement(projection, &request.movement)?;
    let starts = with_lookback(request, &periods);
    let totals = projection.period_totals(&request.movement, request.interval, &starts).map_err(QueryError::Store)?;
    Ok(TrendTotals { watermark, volunteer_hour_value_gbp: settings.volunteer_hour_value_gbp, totals })
}

/// The periods whose totals a trend over `periods` needs: the four before
/// the first, then `periods`.
fn with_lookback(request: &TrendRequest, periods: &[NaiveDate]) -> Vec<NaiveDate> {
    let first = periods.first().copied().unwrap_or(request.from);
    let mut starts: Vec<NaiveDate> =
        (1..=MOMENTUM_WINDOW_PERIODS).rev().map(|back| request.interval.shift(first, -back)).collect();
    starts.extend(periods);
    starts
}

/// Computes the trend `request` asks for from its totals: pure, so the
/// query service runs it as the projector would.
pub fn trend_from_totals<E>(request: &TrendRequest, totals: &TrendTotals) -> Result<Trend, QueryError<E>> {
    let (periods, metrics) = fit_totals(request, totals)?;
    let mut trend = trend_header(request, totals);
    trend.series = periods
        .iter()
        .enumerate()
        .map(|(index, start)| {
            let values = metrics.iter().map(|metric| (*metric, row_figure(totals, index, *metric).into())).collect();
            TrendRow { period: *start, values }
        })
        .collect();
    Ok(trend)
}

/// The JSON of the trend `request` asks for, written straight from its
/// totals: what `trend_from_totals(..)?.to_json()` writes, without building
/// rows of values first (that was a fifth of the query service's CPU per
/// trend read). Query uses it for answers in which nothing is suppressed.
pub fn trend_json_from_totals<E>(request: &TrendRequest, totals: &TrendTotals) -> Result<Vec<u8>, QueryError<E>> {
    let (periods, metrics) = fit_totals(request, totals)?;
    let header = trend_header(request, totals);
    Ok(write_trend(&header, periods.len(), |out, index| {
        write_row(out, periods[index], metrics.iter().map(|metric| (*metric, row_figure(totals, index, *metric))))
    }))
}

/// The periods and metrics of a trend, once its totals are known to fit.
fn fit_totals<E>(request: &TrendRequest, totals: &TrendTotals) -> Result<(Vec<NaiveDate>, Vec<Metric>), QueryError<E>> {
    let periods = check_range(request.interval, request.from, request.to)?;
    if totals.totals.len() != periods.len() + MOMENTUM_WINDOW_PERIODS as usize {
        return Err(QueryError::Invalid(format!(
            "{} period totals do not fit a range of {} periods",
            totals.totals.len(),
            periods.len()
        )));
    }
    let metrics = match &request.metrics {
        Some(wanted) => Metric::ALL.into_iter().filter(|metric| wanted.contains(metric)).collect(),
        None => Metric::ALL.to_vec(),
    };
    Ok((periods, metrics))
}

/// A trend without its rows.
fn trend_header(request: &TrendRequest, totals: &TrendTotals) -> Trend {
    Trend {
        movement: request.movement.clone(),
        interval: request.interval,
        from: request.from,
        to: request.to,
        watermark: totals.watermark,
        volunteer_hour_value_gbp: totals.volunteer_hour_value_gbp,
        series: Vec::new(),
        suppressed_below: None,
    }
}

/// The figure of `metric` in the `index`th period of the range, whose
/// totals follow the [`MOMENTUM_WINDOW_PERIODS`] before the range.
#[inline]
fn row_figure(totals: &TrendTotals, index: usize, metric: Metric) -> Figure {
    let lookback = MOMENTUM_WINDOW_PERIODS as usize;
    let position = index + lookback;
    let all = &totals.totals;
    metric.figure(&all[position], &all[position - 1], &all[position - lookback], totals.volunteer_hour_value_gbp)
}

/// Cohorts by first participation, with the activity of each over the
/// following periods in range.
pub fn cohorts<R: ProjectionRead + ?Sized>(
    projection: &R,
    request: &CohortRequest,
) -> Result<Cohorts, QueryError<R::Error>> {
    let periods = check_range(request.interval, request.from, request.to)?;
    let watermark = projection.watermark().map_err(QueryError::Store)?;
    check_movement(projection, &request.movement)?;
    let sizes = projection.period_totals(&request.movement, request.interval, &periods).map_err(QueryError::Store)?;
    let activity =
        projection.cohort_activity(&request.movement, request.interval, &periods).map_err(QueryError::Store)?;
    let cohorts = periods
        .iter()
        .zip(sizes.iter().zip(activity))
        .filter(|(_, (totals, _))| totals.new_participants != 0)
        .map(|(cohort, (totals, active))| Cohort {
            cohort: *cohort,
            size: Some(totals.new_participants),
            active: active.into_iter().map(Some).collect(),
        })
        .collect();
    Ok(Cohorts {
        movement: request.movement.clone(),
        interval: request.interval,
        from: request.from,
        to: request.to,
        watermark,
        cohorts,
        suppressed_below: None,
    })
}

/// The eight-principles panel over a range of local dates.
pub fn principles<R: ProjectionRead + ?Sized>(
    projection: &R,
    request: &PrinciplesRequest,
) -> Result<Principles, QueryError<R::Error>> {
    check_range::<R::Error>(Interval::Day, request.from, request.to)?;
    let watermark = projection.watermark().map_err(QueryError::Store)?;
    check_movement(projection, &request.movement)?;
    let figures =
        projection.principle_figures(&request.movement, request.from, request.to).map_err(QueryError::Store)?;
    let figures = Principle::ALL
        .into_iter()
        .zip(figures)
        .map(|(principle, (activities, participants))| PrincipleFigures {
            principle,
            activities,
            participants: Some(participants),
        })
        .collect();
    Ok(Principles {
        movement: request.movement.clone(),
        from: request.from,
        to: request.to,
        watermark,
        principles: figures,
        suppressed_below: None,
    })
}

/// One metric for several movements over the same periods.
pub fn compare<R: ProjectionRead + ?Sized>(
    projection: &R,
    request: &CompareRequest,
    settings: &ReadSettings,
) -> Result<Comparison, QueryError<R::Error>> {
    if request.movements.is_empty() || request.movements.len() > MOVEMENTS_PER_COMPARISON_MAX {
        return Err(QueryError::Invalid(format!(
            "name between 1 and {MOVEMENTS_PER_COMPARISON_MAX} movements to compare"
        )));
    }
    let totals = request
        .movements
        .iter()
        .map(|movement| {
            let trend_request = TrendRequest {
                movement: movement.clone(),
                interval: request.interval,
                from: request.from,
                to: request.to,
                metrics: None,
            };
            trend_totals(projection, &trend_request, settings)
        })
        .collect::<Result<Vec<_>, _>>()?;
    comparison_from_totals(request, &totals, None)
}

/// A comparison from each movement's trend totals (`totals[i]` of
/// `request.movements[i]`), with small numbers suppressed exactly as each
/// movement's trend would be when `below` is given. The projector answers
/// comparisons with it, and the query service builds suppressed ones.
pub fn comparison_from_totals<E>(
    request: &CompareRequest,
    totals: &[TrendTotals],
    below: Option<u64>,
) -> Result<Comparison, QueryError<E>> {
    if totals.len() != request.movements.len() {
        return Err(QueryError::Invalid(format!(
            "{} movements compared but the totals of {}",
            request.movements.len(),
            totals.len()
        )));
    }
    let mut series = Vec::with_capacity(request.movements.len());
    for (movement, totals) in request.movements.iter().zip(totals) {
        let trend_request = TrendRequest {
            movement: movement.clone(),
            interval: request.interval,
            from: request.from,
            to: request.to,
            // Suppression looks at every figure of a period.
            metrics: if below.is_some() { None } else { Some(vec![request.metric]) },
        };
        let mut trend = trend_from_totals(&trend_request, totals)?;
        if let Some(below) = below {
            suppression::trend(&mut trend, totals, below);
        }
        let values = trend
            .series
            .into_iter()
            .map(|row| PeriodValue {
                period: row.period,
                value: row.get(request.metric).cloned().unwrap_or(Value::Null),
            })
            .collect();
        series.push(ComparedMovement { movement: movement.clone(), values });
    }
    Ok(Comparison {
        metric: request.metric,
        interval: request.interval,
        from: request.from,
        to: request.to,
        // Each movement's totals read the watermark before their periods.
        watermark: totals.iter().map(|totals| totals.watermark).min().unwrap_or(0),
        volunteer_hour_value_gbp: totals.first().map_or(0.0, |totals| totals.volunteer_hour_value_gbp),
        series,
        suppressed_below: below,
    })
}

/// Every movement with at least one event, in id order.
pub fn movements<R: ProjectionRead + ?Sized>(projection: &R) -> Result<MovementList, QueryError<R::Error>> {
    let watermark = projection.watermark().map_err(QueryError::Store)?;
    let movements = projection.movement_list().map_err(QueryError::Store)?;
    Ok(MovementList { watermark, movements })
}

/// Small-number suppression: counts of people from 1 to `below - 1` are
/// replaced by `null`, so a published figure cannot single a person out.
/// Zero stays (it singles nobody out). Ratios built on counts of people
/// (`retention_rate`, `momentum`) are `null` wherever the active count of
/// their period or the one before is suppressed or unknown.
pub mod suppression {
    use super::*;

    impl Metric {
        /// Whether the metric counts people (not events, hours or places).
        pub fn counts_people(self) -> bool {
            matches!(
                self,
                Metric::ActiveParticipants
                    | Metric::NewParticipants
                    | Metric::ReturningParticipants
                    | Metric::RetainedParticipants
                    | Metric::Joined
                    | Metric::Volunteers
                    | Metric::ActionParticipants
                    | Metric::Organisers
            )
        }
    }

    fn is_small(count: i64, below: u64) -> bool {
        count > 0 && (count as u64) < below
    }

    /// The figures of people of one trend row (`index`, from the first
    /// period asked for) that may not be published:
    /// - every count of people from 1 to `below - 1`;
    /// - where that hides exactly one of the active, new and returning
    ///   counts, the smaller of the other two as well, since any two of them
    ///   give the third (active = new + returning);
    /// - retention when the retained count, or the active count of the
    ///   period or the one before, is hidden as small; momentum when either
    ///   of its window counts is small, or either active count.
    pub fn hidden_figures(totals: &TrendTotals, index: usize, below: u64) -> BTreeSet<Metric> {
        let lookback = MOMENTUM_WINDOW_PERIODS as usize;
        let all = &totals.totals;
        let (current, previous, four_back) = (&all[index + lookback], &all[index + lookback - 1], &all[index]);
        let count = |metric: Metric| match metric.figure(current, previous, four_back, 0.0) {
            Figure::Count(count) => count,
            Figure::Fraction(_) | Figure::Decimal { .. } | Figure::Undefined => 0,
        };
        let mut hidden: BTreeSet<Metric> = Metric::ALL
            .iter()
            .copied()
            .filter(|metric| metric.counts_people() && is_small(count(*metric), below))
            .collect();
        let related = [Metric::ActiveParticipants, Metric::NewParticipants, Metric::ReturningParticipants];
        if related.iter().filter(|metric| hidden.contains(metric)).count() == 1 {
            let shown = related.iter().copied().filter(|metric| !hidden.contains(metric));
            if let Some(smaller) = shown.min_by_key(|metric| count(*metric)) {
                hidden.insert(smaller);
            }
        }
        let small = |count: i64| is_small(count, below);
        let actives_small = small(current.active_participants) || small(previous.active_participants);
        if actives_small || small(current.retained_participants) {
            hidden.insert(Metric::RetentionRate);
        }
        if actives_small || small(current.window_participants) || small(four_back.window_participants) {
            hidden.insert(Metric::Momentum);
        }
        hidden
    }

    /// Suppresses a trend computed from `totals` (the same request's).
    pub fn trend(trend: &mut Trend, totals: &TrendTotals, below: u64) {
        let lookback = MOMENTUM_WINDOW_PERIODS as usize;
        assert_eq!(trend.series.len() + lookback, totals.totals.len(), "a trend is suppressed by its own totals");
        for (index, row) in trend.series.iter_mut().enumerate() {
            let hidden = hidden_figures(totals, index, below);
            for (metric, value) in &mut row.values {
                if hidden.contains(metric) {
                    *value = Value::Null;
                }
            }
        }
        trend.suppressed_below = Some(below);
    }

    pub fn cohorts(cohorts: &mut Cohorts, below: u64) {
        for cohort in &mut cohorts.cohorts {
            for count in std::iter::once(&mut cohort.size).chain(cohort.active.iter_mut()) {
                if count.is_some_and(|count| is_small(count, below)) {
                    *count = None;
                }
            }
        }
        cohorts.suppressed_below = Some(below);
    }

    pub fn principles(principles: &mut Principles, below: u64) {
        for figures in &mut principles.principles {
            if figures.participants.is_some_and(|count| is_small(count as i64, below)) {
                figures.participants = None;
            }
        }
        principles.suppressed_below = Some(below);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn figure() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (-1_000_000i64..1_000_000).prop_map(|pence| Value::from(pence as f64 / 100.0)),
        ]
    }

    fn date() -> impl Strategy<Value = NaiveDate> {
        // Mostly the dates periods have, sometimes years serde writes with a sign.
        prop_oneof![
            (0i64..4_000_000).prop_map(|days| NaiveDate::MIN + chrono::Days::new(days as u64)),
            (-400_000i64..400_000).prop_map(|days| {
                NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date") + chrono::Duration::days(days)
            }),
        ]
    }

    fn trend() -> impl Strategy<Value = Trend> {
        let row =
            (date(), proptest::collection::vec((0..Metric::ALL.len(), figure()), 0..6)).prop_map(|(period, values)| {
                TrendRow {
                    period,
                    values: values.into_iter().map(|(index, value)| (Metric::ALL[index], value)).collect(),
                }
            });
        (
            ".*",
            0..Interval::ALL.len(),
            date(),
            date(),
            any::<u64>(),
            any::<f64>(),
            proptest::collection::vec(row, 0..5),
            any::<Option<u64>>(),
        )
            .prop_map(|(movement, interval, from, to, watermark, hour_value, series, suppressed_below)| {
                Trend {
                    movement,
                    interval: Interval::ALL[interval],
                    from,
                    to,
                    watermark,
                    volunteer_hour_value_gbp: hour_value,
                    series,
                    suppressed_below,
                }
            })
    }

    proptest! {
        #[test]
        fn a_trend_written_directly_is_the_json_serde_writes(trend in trend()) {
            let expected = serde_json::to_vec(&trend).expect("a trend serialises");
            prop_assert_eq!(String::from_utf8(trend.to_json()).expect("utf-8"), String::from_utf8(expected).expect("utf-8"));
        }
    }

    fn period_totals() -> impl Strategy<Value = PeriodTotals> {
        // Zeros, the sizes real totals have, either side of the largest
        // exact decimal, and anything at all.
        let field = prop_oneof![Just(0i64), -10_000i64..10_000_000, -10i64.pow(16)..10i64.pow(16), any::<i64>()];
        proptest::collection::vec(field, 16).prop_map(|fields| {
            let mut totals = PeriodTotals::default();
            for (field, value) in totals.fields_mut().into_iter().zip(fields) {
                *field = value;
            }
            totals
        })
    }

    proptest! {
        #[test]
        fn period_totals_read_back_from_json_whole(totals in period_totals()) {
            let json = serde_json::to_string(&totals).expect("totals serialise");
            prop_assert_eq!(serde_json::from_str::<PeriodTotals>(&json).expect("totals read back"), totals);
        }
    }

    fn request_and_totals() -> impl Strategy<Value = (TrendRequest, TrendTotals)> {
        let request = (
            0..Interval::ALL.len(),
            0i64..3000,
            0i64..40,
            proptest::option::of(proptest::sample::subsequence(Metric::ALL.to_vec(), 0..=Metric::ALL.len())),
        )
            .prop_map(|(interval, start, days, metrics)| {
                let from = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + chrono::Duration::days(start);
                TrendRequest {
                    movement: "bristol-befriending".to_owned(),
                    interval: Interval::ALL[interval],
                    from,
                    to: from + chrono::Duration::days(days),
                    metrics,
                }
            });
        (request, any::<u64>(), -100.0f64..100.0).prop_flat_map(|(request, watermark, hour_value)| {
            let count = request.interval.periods(request.from, request.to).count() + MOMENTUM_WINDOW_PERIODS as usize;
            proptest::collection::vec(period_totals(), count).prop_map(move |totals| {
                (request.clone(), TrendTotals { watermark, volunteer_hour_value_gbp: hour_value, totals })
            })
        })
    }

    proptest! {
        #[test]
        fn a_decimal_figure_is_written_as_serde_writes_its_float(
            units in prop_oneof![-100_000i64..100_000, any::<i64>(), -10i64.pow(16)..10i64.pow(16)],
            places in 2u32..=3,
        ) {
            let figure = Figure::decimal(units, places);
            let mut written = Vec::new();
            figure.write(&mut written);
            let serde = serde_json::to_string(&Value::from(figure)).expect("a value serialises");
            prop_assert_eq!(String::from_utf8(written).unwrap(), serde);
        }
    }

    #[test]
    fn hours_and_pounds_are_written_as_their_shortest_decimals() {
        let written = |units, places| {
            let mut out = Vec::new();
            Figure::decimal(units, places).write(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(written(1500, 3), "1.5");
        assert_eq!(written(1, 3), "0.001");
        assert_eq!(written(0, 3), "0.0");
        assert_eq!(written(-1234, 3), "-1.234");
        assert_eq!(written(120_050, 2), "1200.5");
        assert_eq!(written(999_999_999_999_999, 3), "999999999999.999");
        assert!(matches!(Figure::decimal(1_000_000_000_000_000, 3), Figure::Fraction(_)));
    }

    proptest! {
        #[test]
        fn a_trend_written_from_its_totals_is_the_trend_computed_then_written((request, totals) in request_and_totals()) {
            let computed = trend_from_totals::<()>(&request, &totals).expect("the totals fit").to_json();
            let written = trend_json_from_totals::<()>(&request, &totals).expect("the totals fit");
            prop_assert_eq!(String::from_utf8(written).unwrap(), String::from_utf8(computed).unwrap());
        }
    }

    proptest! {
        #[test]
        fn trend_totals_read_back_whole_from_binary_and_from_json((_request, totals) in request_and_totals()) {
            prop_assert_eq!(&TrendTotals::from_answer(&totals.to_binary()).expect("binary reads back"), &totals);
            let json = serde_json::to_vec(&totals).expect("totals serialise");
            prop_assert_eq!(&TrendTotals::from_answer(&json).expect("json reads back"), &totals);
        }
    }

    #[test]
    fn binary_totals_cut_short_or_too_long_or_too_many_are_refused_not_misread() {
        let totals = TrendTotals {
            watermark: 7,
            volunteer_hour_value_gbp: 11.5,
            totals: vec![
                PeriodTotals { active_participants: 300, meetings: -2, ..PeriodTotals::default() },
                PeriodTotals::default(),
                PeriodTotals { window_participants: i64::MIN, ..PeriodTotals::default() },
            ],
        };
        let bytes = totals.to_binary();
        for cut in 1..bytes.len() {
            assert!(TrendTotals::from_answer(&bytes[..cut]).is_err(), "cut to {cut} bytes");
        }
        assert!(TrendTotals::from_answer(&[bytes.as_slice(), &[0]].concat()).is_err(), "a byte after the end");
        let count_at = TOTALS_HEADER_BYTES - 4..TOTALS_HEADER_BYTES;
        let mut too_many = bytes.clone();
        too_many[count_at.clone()].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(TrendTotals::from_answer(&too_many).is_err());
        let number = |tail: &[u8]| {
            let mut one = bytes[..TOTALS_HEADER_BYTES].to_vec();
            one[count_at.clone()].copy_from_slice(&1u32.to_le_bytes());
            one.push(1);
            one.extend([0xff; 9]);
            one.extend(tail);
            TrendTotals::from_answer(&one)
        };
        assert_eq!(number(&[0x01]).unwrap().totals[0].active_participants, i64::MIN, "the largest zigzag number");
        assert!(number(&[0x02]).is_err(), "a tenth byte beyond the 64th bit");
        assert!(number(&[0x81, 0x00]).is_err(), "a tenth byte that goes on to an eleventh");
    }

    #[test]
    fn binary_totals_hold_the_longest_trend_and_refuse_one_period_more() {
        let longest = TrendTotals {
            watermark: 1,
            volunteer_hour_value_gbp: 1.0,
            totals: vec![PeriodTotals { meetings: 1, ..PeriodTotals::default() }; TOTALS_PERIODS_MAX],
        };
        assert_eq!(TrendTotals::from_answer(&longest.to_binary()).unwrap(), longest);
        let mut one_more = longest.clone();
        one_more.totals.push(PeriodTotals::default());
        assert!(TrendTotals::from_answer(&one_more.to_binary()).is_err());
    }

    #[test]
    fn an_encoding_this_version_does_not_know_reads_as_json() {
        let encoding: TotalsEncoding = serde_json::from_str(r#""compressed""#).unwrap();
        assert_eq!(encoding, TotalsEncoding::Json);
        assert_eq!(serde_json::from_str::<TotalsEncoding>(r#""binary""#).unwrap(), TotalsEncoding::Binary);
    }

    #[test]
    fn binary_totals_with_fields_appended_by_a_newer_projector_read_the_known_ones() {
        let mut bytes = vec![1];
        bytes.extend(3u64.to_le_bytes());
        bytes.extend(10.0f64.to_le_bytes());
        bytes.extend(1u32.to_le_bytes());
        // 18 fields, each zigzag 2 (the number 1); two more than this version knows.
        bytes.push(18);
        bytes.extend([2; 18]);
        let read = TrendTotals::from_answer(&bytes).unwrap();
        assert_eq!(read.totals.len(), 1);
        assert_eq!(read.totals[0].fields(), [1; 16]);
        assert_eq!((read.watermark, read.volunteer_hour_value_gbp), (3, 10.0));
    }

    #[test]
    fn period_totals_travel_without_trailing_zeros_and_read_missing_fields_as_zero() {
        assert_eq!(serde_json::to_string(&PeriodTotals::default()).unwrap(), "[]");
        let totals = PeriodTotals { active_participants: 3, meetings: -2, ..PeriodTotals::default() };
        assert_eq!(serde_json::to_string(&totals).unwrap(), "[3,0,-2]");
        assert_eq!(serde_json::from_str::<PeriodTotals>("[3,0,-2]").unwrap(), totals);
        // A newer projector's appended field is ignored by an older reader.
        let longer = format!("[{}]", ["1"; 17].join(","));
        assert_eq!(serde_json::from_str::<PeriodTotals>(&longer).unwrap().window_participants, 1);
    }

    /// A request for every metric of movement `m` from one (year, month,
    /// day) to another.
    fn request_of(interval: Interval, from: (i32, u32, u32), to: (i32, u32, u32)) -> TrendRequest {
        let date = |(year, month, day)| NaiveDate::from_ymd_opt(year, month, day).expect("a date");
        TrendRequest { movement: "m".to_owned(), interval, from: date(from), to: date(to), metrics: None }
    }

    #[test]
    fn a_trend_is_computed_alike_from_totals_that_crossed_json() {
        let request = request_of(Interval::Week, (2026, 3, 2), (2026, 3, 16));
        let periods = 3 + MOMENTUM_WINDOW_PERIODS as usize;
        let totals = TrendTotals {
            watermark: 9,
            volunteer_hour_value_gbp: 11.27,
            totals: (0..periods as i64)
                .map(|index| PeriodTotals {
                    active_participants: 10 + index,
                    retained_participants: index,
                    volunteer_millihours: 1500 * index,
                    window_participants: 20 + 3 * index,
                    ..PeriodTotals::default()
                })
                .collect(),
        };
        let travelled: TrendTotals = serde_json::from_slice(&serde_json::to_vec(&totals).unwrap()).unwrap();
        let trend = trend_from_totals::<()>(&request, &travelled).unwrap();
        assert_eq!(trend, trend_from_totals::<()>(&request, &totals).unwrap());
        assert_eq!(trend.series.len(), 3);
        let last = &trend.series[2];
        assert_eq!(last.get(Metric::ActiveParticipants), Some(&Value::from(16)));
        assert_eq!(last.get(Metric::RetentionRate), Some(&Value::from(6.0 / 15.0)));
        assert_eq!(last.get(Metric::Momentum), Some(&Value::from((38.0 - 26.0) / 26.0)));
        assert_eq!(last.get(Metric::SocialValueGbp), Some(&Value::from(101.43)));
    }

    #[test]
    fn reads_naming_dates_outside_the_readable_years_are_refused_not_computed() {
        // The calendar's own limits: period arithmetic on them overflows.
        let cases = [(NaiveDate::MIN, LATEST_DATE), (EARLIEST_DATE, NaiveDate::MAX), (NaiveDate::MIN, NaiveDate::MAX)];
        let state = crate::ledger::Ledger::default();
        let settings = ReadSettings { volunteer_hour_value_gbp: 11.27 };
        let refused = |outcome: Result<(), QueryError<std::convert::Infallible>>| matches!(outcome, Err(QueryError::Invalid(message)) if message.contains("1900-01-01"));
        for (from, to) in cases {
            for interval in Interval::ALL {
                let trend = TrendRequest { movement: "m".to_owned(), interval, from, to, metrics: None };
                assert!(refused(trend_totals(&state, &trend, &settings).map(drop)), "{from} {to}");
                let cohort = CohortRequest { movement: "m".to_owned(), interval, from, to };
                assert!(refused(cohorts(&state, &cohort).map(drop)), "{from} {to}");
                let comparison = CompareRequest {
                    movements: vec!["m".to_owned()],
                    metric: Metric::ActiveParticipants,
                    interval,
                    from,
                    to,
                };
                assert!(refused(compare(&state, &comparison, &settings).map(drop)), "{from} {to}");
            }
            let principle = PrinciplesRequest { movement: "m".to_owned(), from, to };
            assert!(refused(principles(&state, &principle).map(drop)), "{from} {to}");
        }
        let edges = TrendRequest {
            movement: "m".to_owned(),
            interval: Interval::Month,
            from: EARLIEST_DATE,
            to: EARLIEST_DATE,
            metrics: None,
        };
        assert!(
            matches!(trend_totals(&state, &edges, &settings), Err(QueryError::UnknownMovement(_))),
            "the earliest date itself is readable"
        );
    }

    /// Totals of one period asked for, after the four looked back on.
    fn one_period(previous: PeriodTotals, current: PeriodTotals, four_back_window: i64) -> TrendTotals {
        let four_back = PeriodTotals { window_participants: four_back_window, ..PeriodTotals::default() };
        TrendTotals {
            watermark: 1,
            volunteer_hour_value_gbp: 11.27,
            totals: vec![four_back, PeriodTotals::default(), PeriodTotals::default(), previous, current],
        }
    }

    #[test]
    fn hiding_one_of_active_new_and_returning_hides_the_smaller_of_the_other_two() {
        use Metric::*;
        let previous = PeriodTotals { active_participants: 40, ..PeriodTotals::default() };
        let period = |active, new| PeriodTotals {
            active_participants: active,
            new_participants: new,
            retained_participants: 20,
            window_participants: 50,
            ..PeriodTotals::default()
        };
        let hidden = |current| suppression::hidden_figures(&one_period(previous, current, 50), 0, 5);
        // 12 active, 3 new, 9 returning: 12 - 9 would give the 3.
        assert_eq!(hidden(period(12, 3)), BTreeSet::from([NewParticipants, ReturningParticipants]));
        // 12 active, 10 new, 2 returning: 12 - 10 would give the 2.
        assert_eq!(hidden(period(12, 10)), BTreeSet::from([NewParticipants, ReturningParticipants]));
        // Two small already hide each other; none small hides nothing.
        assert_eq!(hidden(period(7, 4)), BTreeSet::from([NewParticipants, ReturningParticipants]));
        assert!(hidden(period(30, 10)).is_empty());
        // A small active count hides the ratios over it too.
        let small = hidden(period(4, 0));
        assert!(small.is_superset(&BTreeSet::from([ActiveParticipants, ReturningParticipants, RetentionRate])));
    }

    #[test]
    fn a_suppressed_comparison_hides_what_the_movements_trend_hides() {
        let previous = PeriodTotals { active_participants: 40, ..PeriodTotals::default() };
        // 12 active, 3 new: returning (9) is shown alone but hidden with the 3.
        let current = PeriodTotals {
            active_participants: 12,
            new_participants: 3,
            window_participants: 50,
            ..PeriodTotals::default()
        };
        let totals = one_period(previous, current, 50);
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).expect("a date");
        let request = |metric| CompareRequest {
            movements: vec!["m".to_owned()],
            metric,
            interval: Interval::Day,
            from: day,
            to: day,
        };
        let value = |metric, below| {
            let comparison =
                comparison_from_totals::<()>(&request(metric), std::slice::from_ref(&totals), below).unwrap();
            assert_eq!(comparison.suppressed_below, below);
            comparison.series[0].values[0].value.clone()
        };
        assert_eq!(value(Metric::ReturningParticipants, None), Value::from(9));
        assert_eq!(value(Metric::ReturningParticipants, Some(5)), Value::Null);
        assert_eq!(value(Metric::ActiveParticipants, Some(5)), Value::from(12));
        let mismatched = comparison_from_totals::<()>(&request(Metric::Meetings), &[], None);
        assert!(matches!(mismatched, Err(QueryError::Invalid(_))));
    }

    #[test]
    fn ratios_are_hidden_when_a_count_they_are_made_of_is_small() {
        use Metric::*;
        let previous = PeriodTotals { active_participants: 10, ..PeriodTotals::default() };
        let current = PeriodTotals {
            active_participants: 8,
            new_participants: 6,
            retained_participants: 2,
            window_participants: 20,
            ..PeriodTotals::default()
        };
        // 2 retained of 10 would show as a rate of 0.2, and 0.2 × 10 = 2.
        let hidden = suppression::hidden_figures(&one_period(previous, current, 20), 0, 5);
        assert!(hidden.contains(&RetainedParticipants) && hidden.contains(&RetentionRate), "{hidden:?}");
        assert!(!hidden.contains(&Momentum), "{hidden:?}");
        // Momentum over a window of 3 people four periods back.
        let hidden = suppression::hidden_figures(&one_period(previous, current, 3), 0, 5);
        assert!(hidden.contains(&Momentum), "{hidden:?}");
        // The retained count hidden, nothing else about the ratio is small.
        let retained = PeriodTotals { retained_participants: 9, ..current };
        let hidden = suppression::hidden_figures(&one_period(previous, retained, 20), 0, 5);
        assert!(!hidden.contains(&RetentionRate) && !hidden.contains(&Momentum), "{hidden:?}");
    }

    #[test]
    fn totals_that_do_not_fit_the_range_are_refused() {
        let request = request_of(Interval::Day, (2026, 3, 2), (2026, 3, 3));
        let totals =
            TrendTotals { watermark: 1, volunteer_hour_value_gbp: 1.0, totals: vec![PeriodTotals::default(); 3] };
        assert!(matches!(trend_from_totals::<()>(&request, &totals), Err(QueryError::Invalid(_))));
    }

    #[test]
    fn metric_names_need_no_escaping_in_json() {
        for metric in Metric::ALL {
            assert_eq!(serde_json::to_string(metric.as_str()).expect("a string"), format!("\"{}\"", metric.as_str()));
        }
    }
}
