//! Stickiness: of the participants of a window of periods, how many took
//! part in exactly 1, 2, … of its periods, and how many in exactly n
//! activities (the frequency).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::request::{MovementId, Periods};
use std::collections::BTreeMap;

use super::{ReadError, cells, facts};
use crate::ledger::Ledger;
use crate::period::Interval;
use crate::selection::SplitValue;

/// The longest window a stickiness read may cover, in periods: two years of
/// weeks.
pub const STICKINESS_WINDOW_MAX: u32 = 104;

/// A stickiness read: the movement and the window's periods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickinessRequest {
    /// The movement read.
    pub movement: MovementId,
    /// The window: at most [`STICKINESS_WINDOW_MAX`] periods.
    #[serde(flatten)]
    pub periods: Periods,
    /// The events counted.
    #[serde(flatten)]
    pub filter: crate::selection::Filter,
    /// How the read is split, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<crate::selection::Split>,
    /// The reader's date today, which says whether the window's last period is over; absent, the answer does not
    /// say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today: Option<NaiveDate>,
}

/// Participants of the window by how many of its periods they took part in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeriodsActive {
    /// The number of the window's periods, from 1 to the window's length.
    pub periods: u32,
    /// In a split read, the value the row is for.
    #[serde(flatten)]
    pub split: Option<SplitValue>,
    /// Distinct participants active in exactly that many periods; `null`
    /// only where small numbers are suppressed.
    pub participants: Option<i64>,
}

/// Participants of the window by how many activities they took part in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivitiesDone {
    /// The number of activities (meetings, actions, hour logs); only
    /// numbers someone had appear.
    pub activities: u64,
    /// In a split read, the value the row is for.
    #[serde(flatten)]
    pub split: Option<SplitValue>,
    /// Distinct participants with exactly that many activities in the window;
    /// `null` only where small numbers are suppressed.
    pub participants: Option<i64>,
}

/// A movement's stickiness over a window of periods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stickiness {
    /// The movement read.
    pub movement: String,
    /// The length of a period.
    pub interval: Interval,
    /// The first day of the window's first period.
    pub from: NaiveDate,
    /// The last date asked for, in the window's last period.
    pub to: NaiveDate,
    /// The number of periods in the window.
    pub window: u32,
    /// The last stream sequence these figures include.
    pub watermark: u64,
    /// One row for every number of periods, from 1 to the window's length.
    pub periods_active: Vec<PeriodsActive>,
    /// One row for every number of activities someone had, in increasing order.
    pub frequency: Vec<ActivitiesDone>,
    /// Whether the window's last period was over on the day of the read; absent when the request did not say which
    /// day that was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// Set when counts of people below this were replaced by `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_below: Option<u64>,
}

/// The movement's stickiness over the request's periods.
pub fn stickiness(ledger: &Ledger, request: &StickinessRequest) -> Result<Stickiness, ReadError> {
    let starts = request.periods.starts();
    if starts.len() > STICKINESS_WINDOW_MAX as usize {
        return Err(ReadError::Invalid(format!("a window holds at most {STICKINESS_WINDOW_MAX} periods")));
    }
    let watermark = super::read_watermark(ledger, &request.filter);
    let facts = facts(ledger, &request.movement, &request.filter)?;
    let interval = request.periods.interval();
    let until = interval.next_period(starts[starts.len() - 1]);
    let (mut periods_active, mut frequency) = (Vec::new(), Vec::new());
    for (split, selection) in cells(facts, &request.filter, request.split, starts[0], until) {
        let (by_periods, by_activities) = facts.stickiness(interval, &starts, &selection);
        periods_active.extend((1..).zip(by_periods).map(|(periods, participants)| PeriodsActive {
            periods,
            split: split.clone(),
            participants: Some(participants),
        }));
        frequency.extend(by_activities.into_iter().map(|(activities, participants)| ActivitiesDone {
            activities,
            split: split.clone(),
            participants: Some(participants),
        }));
    }
    // Tidy rows: by the count, then each value in the split's order (a
    // stable sort keeps it).
    periods_active.sort_by_key(|row| row.periods);
    frequency.sort_by_key(|row| row.activities);
    Ok(Stickiness {
        movement: request.movement.to_string(),
        interval: request.periods.interval(),
        from: starts.first().copied().unwrap_or(request.periods.from()),
        to: request.periods.to(),
        window: u32::try_from(starts.len()).expect("a window is at most STICKINESS_WINDOW_MAX periods"),
        watermark,
        periods_active,
        frequency,
        complete: request.today.map(|today| interval.is_complete(starts[starts.len() - 1], today)),
        suppressed_below: None,
    })
}

/// Hides counts of people from 1 to `below - 1`. Both tables add up to the
/// number of people active in the window, so one hidden cell would follow
/// from the other table's sum: where a table hides exactly one cell, its
/// smallest other count above zero is hidden too. In a split read, each
/// value's rows are such a table, and the values' rows of one number of
/// periods (or of activities) are a group where one hidden cell would
/// follow from the read without the split.
pub fn suppress(stickiness: &mut Stickiness, below: u64) {
    let mut counts: Vec<Option<i64>> = Vec::new();
    let mut groups: BTreeMap<(bool, Option<&str>), Vec<usize>> = BTreeMap::new();
    let mut across: BTreeMap<(bool, u64), Vec<usize>> = BTreeMap::new();
    let rows =
        stickiness.periods_active.iter().map(|row| (false, u64::from(row.periods), &row.split, row.participants));
    let rows = rows.chain(stickiness.frequency.iter().map(|row| (true, row.activities, &row.split, row.participants)));
    for (table, key, split, count) in rows {
        groups.entry((table, split.as_ref().map(|split| split.value.as_str()))).or_default().push(counts.len());
        if split.is_some() {
            across.entry((table, key)).or_default().push(counts.len());
        }
        counts.push(count);
    }
    let groups: Vec<Vec<usize>> = groups.into_values().chain(across.into_values()).collect();
    super::suppression::hide_in_groups(&mut counts, &groups, below);
    let mut counts = counts.into_iter();
    let cells = stickiness.periods_active.iter_mut().map(|row| &mut row.participants);
    for cell in cells.chain(stickiness.frequency.iter_mut().map(|row| &mut row.participants)) {
        *cell = counts.next().expect("one count each");
    }
    stickiness.suppressed_below = Some(below);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(periods: &[i64], frequency: &[(u64, i64)]) -> Stickiness {
        Stickiness {
            movement: "m".to_owned(),
            interval: Interval::Week,
            from: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 3, 15).unwrap(),
            window: periods.len() as u32,
            watermark: 1,
            periods_active: (1..)
                .zip(periods)
                .map(|(periods, count)| PeriodsActive { periods, split: None, participants: Some(*count) })
                .collect(),
            frequency: frequency
                .iter()
                .map(|(activities, count)| ActivitiesDone {
                    activities: *activities,
                    split: None,
                    participants: Some(*count),
                })
                .collect(),
            complete: None,
            suppressed_below: None,
        }
    }

    #[test]
    fn one_small_cell_hides_the_smallest_other_of_its_table_as_well() {
        let mut stickiness = answer(&[20, 3, 9, 0], &[(1, 12), (2, 10), (5, 10)]);
        suppress(&mut stickiness, 5);
        let periods: Vec<Option<i64>> = stickiness.periods_active.iter().map(|row| row.participants).collect();
        assert_eq!(periods, [Some(20), None, None, Some(0)], "3 hidden, so the next smallest, 9, too; 0 shown");
        let frequency: Vec<Option<i64>> = stickiness.frequency.iter().map(|row| row.participants).collect();
        assert_eq!(frequency, [Some(12), Some(10), Some(10)], "nothing small");
        assert_eq!(stickiness.suppressed_below, Some(5));
    }
}
