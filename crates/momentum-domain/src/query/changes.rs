//! What changed in a movement's figures since a stream sequence: the trend
//! as it stood then against the trend now, period by period and metric by
//! metric. It makes late data visible: "March changed because events dated
//! March arrived in April".

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::answer::Trend;
use super::metric::Metric;
use super::request::TrendRequest;
use super::{ReadError, TrendTotals, suppression, trend_from_totals};
use crate::ledger::MOMENTUM_WINDOW_PERIODS;
use crate::period::Interval;

/// One figure that moved: its period, metric, and values then and now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// The first local date of the period.
    pub period: NaiveDate,
    /// The period's name for people.
    pub label: String,
    /// Whether the period was over on the day of the read; absent when the request did not say which day that was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// The metric that moved.
    pub metric: Metric,
    /// Its value as the projection stood at `since_seq`; `null` where undefined or suppressed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required = true))]
    pub before: Value,
    /// Its value now; `null` where undefined or suppressed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required = true))]
    pub after: Value,
}

/// Every figure of a movement's trend that moved since a stream sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Changes {
    /// The movement's id.
    pub movement: String,
    /// The length of each period.
    pub interval: Interval,
    /// The first local date of the range compared.
    pub from: NaiveDate,
    /// The last local date of the range compared.
    pub to: NaiveDate,
    /// The sequence the figures before are as of.
    pub since_seq: u64,
    /// The last stream sequence the figures after include.
    pub watermark: u64,
    /// Each figure that moved, by period, then in the order of the metrics list.
    pub changes: Vec<Change>,
    /// Set when counts of people below this were replaced by `null`, before and after alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

/// The changes between the trend `request` asks for as it stood at
/// `since_seq` (`before`; `None` when the movement had no events then, so
/// every figure was zero) and as it stands (`after`), each suppressed below
/// `below` when given, as a trend read would be.
pub fn changes(
    request: &TrendRequest,
    since_seq: u64,
    before: Option<&TrendTotals>,
    after: &TrendTotals,
    below: Option<u64>,
) -> Result<Changes, ReadError> {
    let nothing;
    let before = match before {
        Some(before) => before,
        None => {
            let periods = request.periods.starts().len() + MOMENTUM_WINDOW_PERIODS as usize;
            nothing = TrendTotals {
                watermark: since_seq,
                volunteer_hour_value_gbp: after.volunteer_hour_value_gbp,
                volunteer_hour_basis: after.volunteer_hour_basis,
                totals: vec![Default::default(); periods],
                split: None,
            };
            &nothing
        }
    };
    let trend = |totals: &TrendTotals| -> Result<Trend, ReadError> {
        let mut trend = trend_from_totals(request, totals)?;
        if let Some(below) = below {
            suppression::trend(&mut trend, totals, below);
        }
        Ok(trend)
    };
    let (then, now) = (trend(before)?, trend(after)?);
    let mut changes = Vec::new();
    for (old, new) in then.series.iter().zip(&now.series) {
        for ((metric, before), (_, after)) in old.values.iter().zip(&new.values) {
            if before != after {
                let (before, after) = (before.clone(), after.clone());
                let (period, label, complete) = (new.period, new.label.clone(), new.complete);
                changes.push(Change { period, label, complete, metric: *metric, before, after });
            }
        }
    }
    Ok(Changes {
        movement: request.movement.to_string(),
        interval: request.periods.interval(),
        from: request.periods.from(),
        to: request.periods.to(),
        since_seq,
        watermark: after.watermark,
        changes,
        suppressed_below: below,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::PeriodTotals;
    use crate::query::{DateRange, HourValueBasis, MovementId, Periods};
    use crate::selection::Filter;

    fn request() -> TrendRequest {
        let day = |text: &str| text.parse::<NaiveDate>().unwrap();
        let range = DateRange::new(day("2026-03-02"), day("2026-03-09")).unwrap();
        TrendRequest {
            movement: MovementId::parse("leeds").unwrap(),
            periods: Periods::new(Interval::Week, range).unwrap(),
            metrics: Some(vec![Metric::Meetings, Metric::ActiveParticipants]),
            filter: Filter::default(),
            split: None,
            today: None,
        }
    }

    fn totals(watermark: u64, weeks: [PeriodTotals; 2]) -> TrendTotals {
        let mut totals = vec![PeriodTotals::default(); MOMENTUM_WINDOW_PERIODS as usize];
        totals.extend(weeks);
        TrendTotals {
            watermark,
            volunteer_hour_value_gbp: 10.0,
            volunteer_hour_basis: HourValueBasis::Custom,
            totals,
            split: None,
        }
    }

    #[test]
    fn only_the_figures_that_moved_are_listed_with_their_values_then_and_now() {
        let week = |meetings, active| PeriodTotals { meetings, active_participants: active, ..Default::default() };
        let before = totals(5, [week(1, 7), week(0, 0)]);
        let after = totals(9, [week(2, 7), week(0, 3)]);
        let answer = changes(&request(), 5, Some(&before), &after, None).unwrap();
        let moved: Vec<(String, Metric, Value, Value)> = answer
            .changes
            .iter()
            .map(|change| (change.period.to_string(), change.metric, change.before.clone(), change.after.clone()))
            .collect();
        assert_eq!(
            moved,
            [
                ("2026-03-02".to_owned(), Metric::Meetings, Value::from(1), Value::from(2)),
                ("2026-03-09".to_owned(), Metric::ActiveParticipants, Value::from(0), Value::from(3)),
            ]
        );
        assert_eq!((answer.since_seq, answer.watermark), (5, 9));
        let new = changes(&request(), 2, None, &after, None).unwrap();
        assert_eq!(new.changes.len(), 3, "a movement without events then moved from zero: {:?}", new.changes);
        let hidden = changes(&request(), 5, Some(&before), &after, Some(5)).unwrap();
        assert_eq!(hidden.changes.len(), 2, "3 active is hidden now, 0 was shown: {:?}", hidden.changes);
        assert_eq!(hidden.changes[1].after, Value::Null);
    }
}
