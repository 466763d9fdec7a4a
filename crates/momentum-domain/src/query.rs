//! Reads over the projection, and the request and response shapes that the
//! projector and the query service exchange (the same JSON the HTTP API
//! returns, so the query service passes it through unchanged).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::period::Interval;
use crate::projection::{PeriodTotals, StateRead, keys, watermark};

/// The most periods one trend may return: ten years of days. A trend's
/// cost is in proportion to its periods, so this bounds the cost of a read.
pub const PERIODS_PER_TREND_MAX: usize = 3660;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendRequest {
    pub movement: String,
    pub interval: Interval,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub movement: String,
    pub interval: Interval,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The last stream sequence these figures include.
    pub watermark: u64,
    pub series: Vec<TrendRow>,
}

/// One period of a trend. Field names are the API's metric names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendRow {
    /// The period's first local date.
    pub period: NaiveDate,
    /// Distinct participants who took part in the period.
    pub active_participants: i64,
    /// `participant.joined` events in the period.
    pub joined: i64,
    /// `meeting.held` events in the period.
    pub meetings: i64,
    /// Sum over the period's meetings of their distinct attendees and organisers.
    pub attendances: i64,
    /// Sum of `hours` logged in the period, to the nearest milli-hour.
    pub volunteer_hours: f64,
    /// `collective_action.taken` events in the period.
    pub collective_actions: i64,
    /// Sum of the `reach` of the period's collective actions.
    pub people_reached: i64,
}

impl TrendRow {
    fn new(period: NaiveDate, totals: PeriodTotals) -> TrendRow {
        TrendRow {
            period,
            active_participants: totals.active_participants,
            joined: totals.joined,
            meetings: totals.meetings,
            attendances: totals.attendances,
            volunteer_hours: totals.volunteer_millihours as f64 / 1000.0,
            collective_actions: totals.collective_actions,
            people_reached: totals.people_reached,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovementList {
    pub watermark: u64,
    pub movements: Vec<MovementSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovementSummary {
    pub movement: String,
    /// Distinct events accepted for the movement, retractions included.
    pub events: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The last stream sequence the projection has applied.
    pub watermark: u64,
    /// Stream messages this projector process has read since it started:
    /// after a restart it counts only what came after the checkpoint.
    pub applied_since_start: u64,
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
    #[error("the store could not be read")]
    Store(E),
}

/// The trend of one movement: one row for every period in range, zeros
/// where nothing happened.
pub fn trend<S: StateRead>(state: &S, request: &TrendRequest) -> Result<Trend, QueryError<S::Error>> {
    if request.to < request.from {
        return Err(QueryError::RangeReversed { from: request.from, to: request.to });
    }
    let periods = request.interval.periods(request.from, request.to).take(PERIODS_PER_TREND_MAX + 1);
    let periods: Vec<NaiveDate> = periods.collect();
    if periods.len() > PERIODS_PER_TREND_MAX {
        let periods = request.interval.periods(request.from, request.to).count();
        return Err(QueryError::RangeTooLong { periods });
    }
    // Read the watermark first: rows written after it only make the answer
    // newer than it says, never older.
    let watermark = watermark(state).map_err(QueryError::Store)?;
    if state.get(&keys::movement(&request.movement)).map_err(QueryError::Store)?.is_none() {
        return Err(QueryError::UnknownMovement(request.movement.clone()));
    }
    let mut series = Vec::with_capacity(periods.len());
    for start in periods {
        let key = keys::period(&request.movement, request.interval, start);
        let totals = state.get(&key).map_err(QueryError::Store)?.map(|bytes| PeriodTotals::decode(&bytes));
        series.push(TrendRow::new(start, totals.unwrap_or_default()));
    }
    Ok(Trend {
        movement: request.movement.clone(),
        interval: request.interval,
        from: request.from,
        to: request.to,
        watermark,
        series,
    })
}

/// Every movement with at least one event, in id order.
pub fn movements<S: StateRead>(state: &S) -> Result<MovementList, QueryError<S::Error>> {
    let watermark = watermark(state).map_err(QueryError::Store)?;
    let entries = state.scan_prefix(&[keys::MOVEMENT]).map_err(QueryError::Store)?;
    let movements = entries
        .into_iter()
        .map(|(key, value)| MovementSummary {
            movement: String::from_utf8_lossy(&key[1..]).into_owned(),
            events: crate::projection::decode_u64(&value),
        })
        .collect();
    Ok(MovementList { watermark, movements })
}
