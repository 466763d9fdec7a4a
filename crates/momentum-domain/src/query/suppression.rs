//! Small-number suppression: counts of people from 1 to `below - 1` are
//! replaced by `null`, so a published figure cannot single a person out.
//! Zero stays (it singles nobody out). Ratios built on counts of people
//! (`retention_rate`, `pulse`, `momentum`) are `null` wherever a count
//! they are made of is suppressed, and so is any figure that would give a
//! suppressed one away.

use std::collections::BTreeSet;

use serde_json::Value;

use super::answer::{Cohorts, Principles, Trend};
use super::metric::{Figure, Metric};
use super::totals::TrendTotals;
use crate::ledger::MOMENTUM_WINDOW_PERIODS;

impl Metric {
    /// Whether the metric counts people (not events, hours or places).
    pub fn counts_people(self) -> bool {
        matches!(
            self,
            Metric::ActiveParticipants
                | Metric::NewParticipants
                | Metric::ReturningParticipants
                | Metric::RetainedParticipants
                | Metric::ResurrectingParticipants
                | Metric::DormantParticipants
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
/// - where any of new, returning, retained and resurrecting is hidden, all
///   four: active = new + returning and returning = retained +
///   resurrecting, so any one of them follows from the others and the
///   active count (a small active count has a small part, so it hides them
///   all too);
/// - dormant and retained together, since they add up to the previous
///   period's active count (shown in the row before); and dormant when that
///   previous count is small, which the two would otherwise give away;
/// - pulse when new, resurrecting or dormant is hidden;
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
    let small = |count: i64| is_small(count, below);
    if small(previous.active_participants) {
        hidden.insert(Metric::DormantParticipants);
    }
    let lifecycle = [
        Metric::NewParticipants,
        Metric::ReturningParticipants,
        Metric::RetainedParticipants,
        Metric::ResurrectingParticipants,
    ];
    // Each rule may hide what the other looks at: apply both until neither
    // hides more.
    loop {
        let before = hidden.len();
        if lifecycle.iter().any(|metric| hidden.contains(metric)) {
            hidden.extend(lifecycle);
        }
        if hidden.contains(&Metric::RetainedParticipants) || hidden.contains(&Metric::DormantParticipants) {
            hidden.extend([Metric::RetainedParticipants, Metric::DormantParticipants]);
        }
        if hidden.len() == before {
            break;
        }
    }
    let pulse_parts = [Metric::NewParticipants, Metric::ResurrectingParticipants, Metric::DormantParticipants];
    if pulse_parts.iter().any(|metric| hidden.contains(metric)) {
        hidden.insert(Metric::Pulse);
    }
    let actives_small = small(current.active_participants) || small(previous.active_participants);
    if actives_small || hidden.contains(&Metric::RetainedParticipants) {
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

/// Suppresses cohorts: each size and active count from 1 to `below - 1` becomes `null`.
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

/// Suppresses the principles panel: each participant count from 1 to `below - 1` becomes `null`;
/// activity counts stay.
pub fn principles(principles: &mut Principles, below: u64) {
    for figures in &mut principles.principles {
        if figures.participants.is_some_and(|count| is_small(count as i64, below)) {
            figures.participants = None;
        }
    }
    principles.suppressed_below = Some(below);
}
