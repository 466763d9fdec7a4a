//! What reads answer: the JSON of the HTTP API.

use chrono::NaiveDate;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::evidence::PrincipleEvidence;
use super::hour_value::VolunteerHourValue;
use super::metric::Metric;
use crate::event::Principle;
use crate::ledger::CohortMode;
use crate::period::Interval;
use crate::selection::{Breakdown, SplitValue};

/// A movement's trend: the metrics asked for in every period from the one containing `from` to the one containing
/// `to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trend {
    /// The movement's id.
    pub movement: String,
    /// The length of each period.
    pub interval: Interval,
    /// The first local date of the range asked for; the first period is the one containing it.
    pub from: NaiveDate,
    /// The last local date of the range asked for; the last period is the one containing it.
    pub to: NaiveDate,
    /// The last stream sequence these figures include.
    pub watermark: u64,
    /// The value of a volunteer hour `social_value_gbp` was computed with.
    pub volunteer_hour_value_gbp: f64,
    /// That value with its basis, year and source.
    pub volunteer_hour_value: VolunteerHourValue,
    /// One row for every period in range, in order; zeros where nothing happened.
    pub series: Vec<TrendRow>,
    /// Set when counts of people below this were replaced by `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

/// One period of a trend: its first local date and the requested metrics,
/// in the order of [`Metric::ALL`]; a ratio with a zero divisor is `null`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrendRow {
    /// The first local date of the period.
    pub period: NaiveDate,
    /// The period's name for people ([`Interval::label`]).
    pub label: String,
    /// Whether the period was over on the day the reader asked
    /// ([`Interval::is_complete`]); absent when the request did not say which day that was.
    pub complete: Option<bool>,
    /// In a split trend, the value the row is for.
    pub split: Option<SplitValue>,
    /// Each metric asked for with its value in the period: a number, or `null`.
    pub values: Vec<(Metric, Value)>,
}

impl TrendRow {
    /// The value of `metric` in this period, or `None` when the row does not hold it (it was not asked for).
    pub fn get(&self, metric: Metric) -> Option<&Value> {
        self.values.iter().find(|(name, _)| *name == metric).map(|(_, value)| value)
    }
}

impl Serialize for TrendRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + self.values.len()))?;
        map.serialize_entry("period", &self.period)?;
        map.serialize_entry("label", &self.label)?;
        if let Some(complete) = self.complete {
            map.serialize_entry("complete", &complete)?;
        }
        if let Some(split) = &self.split {
            map.serialize_entry(split.by.as_str(), &split.value)?;
        }
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
        let label = match fields.remove("label") {
            Some(Value::String(label)) => label,
            Some(_) => return Err(serde::de::Error::custom("a label is a string")),
            None => return Err(serde::de::Error::missing_field("label")),
        };
        let complete = fields
            .remove("complete")
            .map(|complete| complete.as_bool())
            .map(|complete| complete.ok_or_else(|| serde::de::Error::custom("complete is true or false")));
        let complete = complete.transpose()?;
        let values = Metric::ALL
            .into_iter()
            .filter_map(|metric| fields.remove(metric.as_str()).map(|value| (metric, value)))
            .collect();
        let split = Breakdown::ALL.into_iter().find_map(|by| {
            let value = fields.remove(by.as_str())?;
            Some(serde_json::from_value(value).map(|value| SplitValue { by, value }))
        });
        let split = split.transpose().map_err(serde::de::Error::custom)?;
        Ok(TrendRow { period, label, complete, split, values })
    }
}

/// The schema of a trend row for the API document: it is written by hand
/// because the row is serialised by hand, one property per metric.
#[cfg(feature = "openapi")]
mod trend_row_schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
    use utoipa::openapi::{RefOr, schema::SchemaType};

    use super::{Breakdown, Metric, TrendRow};

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
                    | Metric::Pulse
                    | Metric::CitizenLedShare
                    | Metric::Momentum
            );
            let nullable = self.counts_people()
                || matches!(self, Metric::RetentionRate | Metric::Pulse | Metric::CitizenLedShare | Metric::Momentum);
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
                .required("period")
                .property(
                    "label",
                    ObjectBuilder::new().schema_type(Type::String).description(Some(
                        "The period's name for people: 2026-03-02, 2026-W10, 2026-03, 2026 Q2, 2026, 2026-27, \
                         2026-27 Q1.",
                    )),
                )
                .required("label")
                .property(
                    "complete",
                    ObjectBuilder::new().schema_type(Type::Boolean).description(Some(
                        "Whether the period was over on the day of the read, in MOMENTUM_TIMEZONE: false for the \
                         period still under way, whose figures are still growing.",
                    )),
                );
            for by in Breakdown::ALL {
                let value = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("In a trend split by this dimension, the value the row is for."));
                row = row.property(by.as_str(), value);
            }
            for metric in Metric::ALL {
                row = row.property(metric.as_str(), metric.value_schema());
            }
            row.into()
        }
    }

    impl utoipa::ToSchema for TrendRow {}
}

/// Every movement with at least one event, with its number of events; the query service leaves out those the token
/// may not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MovementList {
    /// The last stream sequence these counts include.
    pub watermark: u64,
    /// The movements, in id order.
    pub movements: Vec<MovementSummary>,
}

/// One movement of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MovementSummary {
    /// The movement's id.
    pub movement: String,
    /// Distinct events accepted for the movement, retractions included.
    pub events: u64,
}

/// How far the projection has applied the event stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// The last stream sequence the projection has applied.
    pub watermark: u64,
    /// Stream messages this projector process has read since it started:
    /// after a restart it counts only what came after the checkpoint.
    pub applied_since_start: u64,
}

/// A movement's participants grouped by the period of their first participation, with how many of each group took
/// part in each period after it in range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cohorts {
    /// The movement's id.
    pub movement: String,
    /// The length of each period, and so of each cohort.
    pub interval: Interval,
    /// What `active` counts: members active in each period (`on`), or in it or any later one in range
    /// (`on_or_after`).
    pub mode: CohortMode,
    /// The first local date of the range asked for; the first period is the one containing it.
    pub from: NaiveDate,
    /// The last local date of the range asked for; the last period is the one containing it.
    pub to: NaiveDate,
    /// The last stream sequence these figures include.
    pub watermark: u64,
    /// One cohort for every period in range that has members, in period order.
    pub cohorts: Vec<Cohort>,
    /// Set when counts of people below this were replaced by `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

/// The participants whose first participation falls in one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cohort {
    /// The period's first local date.
    pub cohort: NaiveDate,
    /// The period's name for people.
    pub label: String,
    /// Whether the cohort's period was over on the day of the read; absent when the request did not say which day
    /// that was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// In a split read, the value the row is for.
    #[serde(flatten)]
    pub split: Option<SplitValue>,
    /// `None` only where small numbers are suppressed.
    pub size: Option<i64>,
    /// How many of them took part in the cohort's period, the next, and so
    /// on to the last period in range (or, in mode `on_or_after`, in it or a
    /// later one); `None` only where suppressed.
    pub active: Vec<Option<i64>>,
    /// Each of `active` as a share of `size`; `None` where either is suppressed.
    pub shares: Vec<Option<f64>>,
}

/// A movement's figures for each of the eight principles over a range of local dates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Principles {
    /// The movement's id.
    pub movement: String,
    /// The first local date of the range, included.
    pub from: NaiveDate,
    /// The last local date of the range, included.
    pub to: NaiveDate,
    /// The last stream sequence these figures include.
    pub watermark: u64,
    /// One entry for each of the eight principles, always in the same order.
    pub principles: Vec<PrincipleFigures>,
    /// Behavioural indicators of each principle, with the numbers behind them (docs/metrics.md).
    pub evidence: Vec<PrincipleEvidence>,
    /// Set when counts of people below this were replaced by `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

/// The activities tagged with one principle in the range, and their distinct participants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrincipleFigures {
    /// Which of the eight principles these figures are for.
    pub principle: Principle,
    /// In a split read, the value the row is for.
    #[serde(flatten)]
    pub split: Option<SplitValue>,
    /// Meetings, actions and hour logs tagged with the principle.
    pub activities: u64,
    /// Distinct participants of those activities; `None` only where suppressed.
    pub participants: Option<u64>,
}

/// One trend metric for several movements over the same periods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Comparison {
    /// The metric compared.
    pub metric: Metric,
    /// The length of each period.
    pub interval: Interval,
    /// The first local date of the range asked for; the first period is the one containing it.
    pub from: NaiveDate,
    /// The last local date of the range asked for; the last period is the one containing it.
    pub to: NaiveDate,
    /// The last stream sequence the figures of every movement include: the lowest of the movements' watermarks.
    pub watermark: u64,
    /// The value of a volunteer hour `social_value_gbp` was computed with.
    pub volunteer_hour_value_gbp: f64,
    /// That value with its basis, year and source.
    pub volunteer_hour_value: VolunteerHourValue,
    /// One entry for each movement, in the order the movements were first named.
    pub series: Vec<ComparedMovement>,
    /// Set when counts of people below this were replaced by `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

/// One movement's values of the compared metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComparedMovement {
    /// The movement's id.
    pub movement: String,
    /// The metric's value in every period in range, in order.
    pub values: Vec<PeriodValue>,
}

/// The compared metric's value in one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeriodValue {
    /// The first local date of the period.
    pub period: NaiveDate,
    /// The period's name for people.
    pub label: String,
    /// Whether the period was over on the day of the read; absent when the request did not say which day that was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// In a split comparison, the value the row is for.
    #[serde(flatten)]
    pub split: Option<SplitValue>,
    /// The metric's value; `null` where a ratio is undefined or a count suppressed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required = true))]
    pub value: Value,
}
