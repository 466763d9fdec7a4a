//! Stickiness: of the participants of a window of periods, how many took
//! part in exactly 1, 2, … of its periods, and how many in exactly n
//! activities (the frequency).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::request::{MovementId, Periods};
use super::{ReadError, facts};
use crate::ledger::Ledger;
use crate::period::Interval;

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
}

/// Participants of the window by how many of its periods they took part in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeriodsActive {
    /// The number of the window's periods, from 1 to the window's length.
    pub periods: u32,
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
    let watermark = ledger.watermark();
    let facts = facts(ledger, &request.movement)?;
    let (by_periods, by_activities) =
        facts.stickiness(request.periods.interval(), &starts, &facts.select(&request.filter));
    Ok(Stickiness {
        movement: request.movement.to_string(),
        interval: request.periods.interval(),
        from: starts.first().copied().unwrap_or(request.periods.from()),
        to: request.periods.to(),
        window: u32::try_from(starts.len()).expect("a window is at most STICKINESS_WINDOW_MAX periods"),
        watermark,
        periods_active: (1..)
            .zip(by_periods)
            .map(|(periods, participants)| PeriodsActive { periods, participants: Some(participants) })
            .collect(),
        frequency: by_activities
            .into_iter()
            .map(|(activities, participants)| ActivitiesDone { activities, participants: Some(participants) })
            .collect(),
        suppressed_below: None,
    })
}

/// Hides counts of people from 1 to `below - 1`. Both tables add up to the
/// number of people active in the window, so one hidden cell would follow
/// from the other table's sum: where a table hides exactly one cell, its
/// smallest other count above zero is hidden too.
pub fn suppress(stickiness: &mut Stickiness, below: u64) {
    fn hide<'a>(cells: impl Iterator<Item = &'a mut Option<i64>>, below: u64) {
        let mut cells: Vec<&mut Option<i64>> = cells.collect();
        let small = |count: i64| count > 0 && (count as u64) < below;
        let mut hidden = 0;
        for cell in cells.iter_mut() {
            if cell.is_some_and(small) {
                **cell = None;
                hidden += 1;
            }
        }
        if hidden == 1
            && let Some(smallest) =
                cells.iter_mut().filter(|cell| cell.is_some_and(|count| count > 0)).min_by_key(|cell| cell.unwrap_or(0))
        {
            **smallest = None;
        }
    }
    hide(stickiness.periods_active.iter_mut().map(|row| &mut row.participants), below);
    hide(stickiness.frequency.iter_mut().map(|row| &mut row.participants), below);
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
                .map(|(periods, count)| PeriodsActive { periods, participants: Some(*count) })
                .collect(),
            frequency: frequency
                .iter()
                .map(|(activities, count)| ActivitiesDone { activities: *activities, participants: Some(*count) })
                .collect(),
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
