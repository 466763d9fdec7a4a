//! Reads over the ledger, and the request and response shapes that the
//! projector and the query service exchange. Most answers are the JSON the
//! HTTP API returns, which the query service passes through; a trend crosses
//! as its period totals ([`TrendTotals`]), from which the query service
//! computes the trend with [`trend_json_from_totals`].
//!
//! Every read costs in proportion to what it returns (periods, cohorts,
//! principles), never to the number of events stored.
//!
//! - `request`: what a read asks for, valid once built;
//! - `answer`: what it answers;
//! - `metric`: the metrics of a trend and how each is computed;
//! - `totals`: a trend's period totals and their binary form;
//! - `json`: a trend written as JSON without serde's map machinery;
//! - [`suppression`]: small numbers hidden from evaluators.

mod answer;
mod changes;
mod evidence;
mod hour_value;
mod json;
mod metric;
mod request;
mod stickiness;
pub mod suppression;
#[cfg(test)]
mod tests;
mod totals;

use chrono::NaiveDate;
use serde_json::Value;

pub use crate::ledger::CohortMode;
pub use answer::{
    Cohort, Cohorts, ComparedMovement, Comparison, MovementList, MovementSummary, PeriodValue, PrincipleFigures,
    Principles, Status, Trend, TrendRow,
};
pub use changes::{Change, Changes, changes};
pub use evidence::{Indicator, PrincipleEvidence};
pub use hour_value::{HourValueBasis, VolunteerHourValue};
use json::{RowHead, write_row, write_trend};
use metric::Figure;
pub use metric::Metric;
pub use request::{
    CohortRequest, CompareRequest, ComparedMovements, ComparedMovementsError, DateRange, EARLIEST_DATE, LATEST_DATE,
    MOVEMENT_ID_PATTERN, MOVEMENTS_PER_COMPARISON_MAX, MovementId, NotAMovementId, PERIODS_PER_TREND_MAX, Periods,
    PrinciplesRequest, RangeEnd, RangeError, ReadSettings, TrendRequest,
};
pub use stickiness::{
    ActivitiesDone, PeriodsActive, STICKINESS_WINDOW_MAX, Stickiness, StickinessRequest, stickiness,
    suppress as suppress_stickiness,
};
pub use totals::{CellTotals, SplitTotals, TotalsEncoding, TrendTotals, UnreadableTotals};

use crate::event::Principle;
use crate::ledger::Selection;
use crate::ledger::{Ledger, MOMENTUM_WINDOW_PERIODS, MovementLedger, PeriodTotals};
use crate::selection::{Filter, Split, SplitValue};

/// Why a read could not be answered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The movement named has no events; holds its id.
    #[error("movement {0:?} has no events")]
    UnknownMovement(String),
    /// The totals given do not fit the request (another number of periods, or of movements); holds why.
    #[error("{0}")]
    Invalid(String),
}

/// What a read over `filter`'s facts from `from` until (before) `until`
/// counts: everything it selects when `split` is `None`, otherwise each
/// value it is split into with what that value counts.
fn cells(
    facts: &MovementLedger,
    filter: &Filter,
    split: Option<Split>,
    from: NaiveDate,
    until: NaiveDate,
) -> Vec<(Option<SplitValue>, Selection)> {
    let selection = facts.select(filter);
    let Some(split) = split else { return vec![(None, selection)] };
    facts
        .split(&selection, split, from, until)
        .into_iter()
        .map(|cell| (Some(SplitValue { by: split.by(), value: cell.value }), cell.selection))
        .collect()
}

/// The watermark a read answers at: the projection's, or the sequence it
/// reads as of. The projector waits until it covers that sequence before
/// it reads (a partition's own last event may be earlier than what it
/// covers, so the ledger's watermark is not the measure).
fn read_watermark(ledger: &Ledger, filter: &Filter) -> u64 {
    filter.as_of_seq.unwrap_or_else(|| ledger.watermark())
}

/// The facts of the movement a read names: it must have events (by the
/// sequence the read is as of, if it says).
fn facts<'a>(ledger: &'a Ledger, movement: &MovementId, filter: &Filter) -> Result<&'a MovementLedger, ReadError> {
    ledger
        .movement(movement.as_str())
        .filter(|facts| filter.as_of_seq.is_none_or(|as_of| facts.existed_at(as_of)))
        .ok_or_else(|| ReadError::UnknownMovement(movement.to_string()))
}

/// The trend of one movement: one row for every period in range, zeros
/// where nothing happened.
pub fn trend(ledger: &Ledger, request: &TrendRequest, settings: &ReadSettings) -> Result<Trend, ReadError> {
    trend_from_totals(request, &trend_totals(ledger, request, settings)?)
}

/// Reads the totals of a trend: the watermark, then one range scan.
pub fn trend_totals(
    ledger: &Ledger,
    request: &TrendRequest,
    settings: &ReadSettings,
) -> Result<TrendTotals, ReadError> {
    let periods = request.periods.starts();
    // Read the watermark first: rows written after it only make the answer
    // newer than it says, never older.
    let watermark = read_watermark(ledger, &request.filter);
    let facts = facts(ledger, &request.movement, &request.filter)?;
    let starts = with_lookback(request, &periods);
    let interval = request.periods.interval();
    let selection = facts.select(&request.filter);
    let totals = facts.period_totals(interval, &starts, &selection);
    let split = request.split.map(|split| {
        let (first, last) = (periods[0], periods[periods.len() - 1]);
        let cells = facts
            .split(&selection, split, first, interval.next_period(last))
            .into_iter()
            .map(|cell| CellTotals {
                totals: facts.period_totals(interval, &starts, &cell.selection),
                value: cell.value,
            })
            .collect();
        SplitTotals { by: split.by(), cells }
    });
    let hour_value = settings.volunteer_hour_value;
    Ok(TrendTotals {
        watermark,
        volunteer_hour_value_gbp: hour_value.value_gbp,
        volunteer_hour_basis: hour_value.basis,
        totals,
        split,
    })
}

/// The periods whose totals a trend over `periods` needs: the four before
/// the first, then `periods`.
fn with_lookback(request: &TrendRequest, periods: &[NaiveDate]) -> Vec<NaiveDate> {
    let first = periods.first().copied().unwrap_or(request.periods.from());
    let interval = request.periods.interval();
    let mut starts: Vec<NaiveDate> =
        (1..=MOMENTUM_WINDOW_PERIODS).rev().map(|back| interval.shift(first, -back)).collect();
    starts.extend(periods);
    starts
}

/// Computes the trend `request` asks for from its totals: pure, so the
/// query service runs it as the projector would.
pub fn trend_from_totals(request: &TrendRequest, totals: &TrendTotals) -> Result<Trend, ReadError> {
    let (periods, metrics) = fit_totals(request, totals)?;
    let mut trend = trend_header(request, totals);
    let hour_value = totals.volunteer_hour_value_gbp;
    let interval = request.periods.interval();
    let labels: Vec<String> = periods.iter().map(|start| interval.label(*start)).collect();
    let row = |index: usize, split: Option<SplitValue>, all: &[PeriodTotals]| {
        let values =
            metrics.iter().map(|metric| (*metric, row_figure(all, hour_value, index, *metric).into())).collect();
        let period = periods[index];
        let complete = request.today.map(|today| interval.is_complete(period, today));
        TrendRow { period, label: labels[index].clone(), complete, split, values }
    };
    trend.series = match &totals.split {
        None => (0..periods.len()).map(|index| row(index, None, &totals.totals)).collect(),
        // One row per (period, value): the tidy layout.
        Some(split) => (0..periods.len())
            .flat_map(|index| {
                split.cells.iter().map(move |cell| {
                    let value = SplitValue { by: split.by, value: cell.value.clone() };
                    (index, value, &cell.totals)
                })
            })
            .map(|(index, value, all)| row(index, Some(value), all))
            .collect(),
    };
    Ok(trend)
}

/// The JSON of the trend `request` asks for, written straight from its
/// totals: what `trend_from_totals(..)?.to_json()` writes, without building
/// rows of values first, which was a large share of the query service's CPU
/// per trend read. Query uses it for answers in which nothing is suppressed.
pub fn trend_json_from_totals(request: &TrendRequest, totals: &TrendTotals) -> Result<Vec<u8>, ReadError> {
    if totals.split.is_some() {
        return Ok(trend_from_totals(request, totals)?.to_json());
    }
    let (periods, metrics) = fit_totals(request, totals)?;
    let header = trend_header(request, totals);
    let (all, hour_value) = (&totals.totals, totals.volunteer_hour_value_gbp);
    let interval = request.periods.interval();
    Ok(write_trend(&header, periods.len(), |out, index| {
        let figures = metrics.iter().map(|metric| (*metric, row_figure(all, hour_value, index, *metric)));
        let period = periods[index];
        let label = interval.label(period);
        let complete = request.today.map(|today| interval.is_complete(period, today));
        write_row(out, &RowHead { period, label: &label, complete, split: None }, figures)
    }))
}

/// The periods and metrics of a trend, once its totals are known to fit.
fn fit_totals(request: &TrendRequest, totals: &TrendTotals) -> Result<(Vec<NaiveDate>, Vec<Metric>), ReadError> {
    let periods = request.periods.starts();
    let expected = periods.len() + MOMENTUM_WINDOW_PERIODS as usize;
    let cells = totals.split.iter().flat_map(|split| split.cells.iter().map(|cell| &cell.totals));
    if let Some(unfit) = std::iter::once(&totals.totals).chain(cells).find(|totals| totals.len() != expected) {
        return Err(ReadError::Invalid(format!(
            "{} period totals do not fit a range of {} periods",
            unfit.len(),
            periods.len()
        )));
    }
    if totals.split.as_ref().map(|split| split.by) != request.split.map(|split| split.by()) {
        return Err(ReadError::Invalid("the totals are not split as the trend asks".to_owned()));
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
        movement: request.movement.to_string(),
        interval: request.periods.interval(),
        from: request.periods.from(),
        to: request.periods.to(),
        watermark: totals.watermark,
        volunteer_hour_value_gbp: totals.volunteer_hour_value_gbp,
        volunteer_hour_value: totals.hour_value(),
        series: Vec::new(),
        suppressed_below: None,
    }
}

/// The figure of `metric` in the `index`th period of the range, whose
/// totals follow the [`MOMENTUM_WINDOW_PERIODS`] before the range.
#[inline]
fn row_figure(all: &[PeriodTotals], hour_value: f64, index: usize, metric: Metric) -> Figure {
    let lookback = MOMENTUM_WINDOW_PERIODS as usize;
    let position = index + lookback;
    metric.figure(&all[position], &all[position - 1], &all[position - lookback], hour_value)
}

/// Cohorts by first participation, with the activity of each over the
/// following periods in range.
pub fn cohorts(ledger: &Ledger, request: &CohortRequest) -> Result<Cohorts, ReadError> {
    let periods = request.periods.starts();
    let interval = request.periods.interval();
    let watermark = read_watermark(ledger, &request.filter);
    let facts = facts(ledger, &request.movement, &request.filter)?;
    let until = interval.next_period(periods[periods.len() - 1]);
    let mut cohorts = Vec::new();
    for (split, selection) in cells(facts, &request.filter, request.split, periods[0], until) {
        let sizes = facts.period_totals(interval, &periods, &selection);
        let activity = facts.cohort_activity(interval, &periods, &selection, request.mode);
        cohorts.extend(
            periods.iter().zip(sizes.iter().zip(activity)).filter(|(_, (totals, _))| totals.new_participants != 0).map(
                |(cohort, (totals, active))| Cohort {
                    cohort: *cohort,
                    label: interval.label(*cohort),
                    complete: request.today.map(|today| interval.is_complete(*cohort, today)),
                    split: split.clone(),
                    size: Some(totals.new_participants),
                    shares: active.iter().map(|count| Some(*count as f64 / totals.new_participants as f64)).collect(),
                    active: active.into_iter().map(Some).collect(),
                },
            ),
        );
    }
    // Tidy rows: by cohort, then each value in the split's order.
    cohorts.sort_by_key(|cohort| cohort.cohort);
    Ok(Cohorts {
        movement: request.movement.to_string(),
        interval,
        mode: request.mode,
        from: request.periods.from(),
        to: request.periods.to(),
        watermark,
        cohorts,
        suppressed_below: None,
    })
}

/// The eight-principles panel over a range of local dates.
pub fn principles(ledger: &Ledger, request: &PrinciplesRequest) -> Result<Principles, ReadError> {
    let range = request.range();
    let watermark = read_watermark(ledger, &request.filter);
    let facts = facts(ledger, &request.movement, &request.filter)?;
    let until = range.to().succ_opt().unwrap_or(range.to());
    let mut figures = Vec::new();
    let mut evidence = Vec::new();
    // The week of the range's last day and the four before: momentum's.
    let last_week = crate::period::Interval::Week.period_start(range.to());
    let weeks: Vec<NaiveDate> = (-4..=0).map(|back| crate::period::Interval::Week.shift(last_week, back)).collect();
    for (split, selection) in cells(facts, &request.filter, request.split, range.from(), until) {
        let counts = facts.principle_figures(range.from(), range.to(), &selection);
        figures.extend(Principle::ALL.into_iter().zip(counts).map(|(principle, (activities, participants))| {
            PrincipleFigures { principle, split: split.clone(), activities, participants: Some(participants) }
        }));
        let weekly = facts.period_totals(crate::period::Interval::Week, &weeks, &selection);
        let weekly: [PeriodTotals; 5] = weekly.try_into().expect("five weeks asked for");
        let counts = facts.evidence_counts(range.from(), range.to(), &selection);
        evidence.extend(evidence::evidence(&counts, &weekly, split.as_ref()));
    }
    // Tidy rows: by principle, then each value in the split's order.
    figures.sort_by_key(|figures| figures.principle);
    evidence.sort_by_key(|evidence| evidence.principle);
    Ok(Principles {
        movement: request.movement.to_string(),
        from: range.from(),
        to: range.to(),
        watermark,
        principles: figures,
        evidence,
        suppressed_below: None,
    })
}

/// One metric for several movements over the same periods.
pub fn compare(ledger: &Ledger, request: &CompareRequest, settings: &ReadSettings) -> Result<Comparison, ReadError> {
    let totals = request
        .movements
        .as_slice()
        .iter()
        .map(|movement| trend_totals(ledger, &request.trend_of(movement, None), settings))
        .collect::<Result<Vec<_>, _>>()?;
    comparison_from_totals(request, &totals, None)
}

/// A comparison from each movement's trend totals (`totals[i]` of
/// `request.movements[i]`), with small numbers suppressed exactly as each
/// movement's trend would be when `below` is given. The projector answers
/// comparisons with it, and the query service builds suppressed ones.
pub fn comparison_from_totals(
    request: &CompareRequest,
    totals: &[TrendTotals],
    below: Option<u64>,
) -> Result<Comparison, ReadError> {
    let movements = request.movements.as_slice();
    if totals.len() != movements.len() {
        return Err(ReadError::Invalid(format!(
            "{} movements compared but the totals of {}",
            movements.len(),
            totals.len()
        )));
    }
    let mut series = Vec::with_capacity(movements.len());
    for (movement, totals) in movements.iter().zip(totals) {
        // Suppression looks at every figure of a period.
        let metrics = if below.is_some() { None } else { Some(vec![request.metric]) };
        let trend_request = request.trend_of(movement, metrics);
        let mut trend = trend_from_totals(&trend_request, totals)?;
        if let Some(below) = below {
            suppression::trend(&mut trend, totals, below);
        }
        let values = trend
            .series
            .into_iter()
            .map(|row| PeriodValue {
                value: row.get(request.metric).cloned().unwrap_or(Value::Null),
                period: row.period,
                label: row.label,
                complete: row.complete,
                split: row.split,
            })
            .collect();
        series.push(ComparedMovement { movement: movement.to_string(), values });
    }
    Ok(Comparison {
        metric: request.metric,
        interval: request.periods.interval(),
        from: request.periods.from(),
        to: request.periods.to(),
        // Each movement's totals read the watermark before their periods.
        watermark: totals.iter().map(|totals| totals.watermark).min().unwrap_or(0),
        volunteer_hour_value_gbp: totals.first().map_or(0.0, |totals| totals.volunteer_hour_value_gbp),
        volunteer_hour_value: totals.first().map_or(VolunteerHourValue::custom(0.0), TrendTotals::hour_value),
        series,
        suppressed_below: below,
    })
}

/// The version of each of `movements` (0 for one without events): the
/// stream sequence of the last entry folded into it.
pub fn versions(ledger: &Ledger, movements: &[MovementId]) -> Vec<u64> {
    movements.iter().map(|movement| ledger.movement(movement.as_str()).map_or(0, MovementLedger::version)).collect()
}

/// Every movement with at least one event, in id order.
pub fn movements(ledger: &Ledger) -> MovementList {
    let movements = ledger
        .movements()
        .map(|(movement, facts)| MovementSummary { movement: movement.to_owned(), events: facts.accepted_events() })
        .collect();
    MovementList { watermark: ledger.watermark(), movements }
}
