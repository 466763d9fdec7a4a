//! Small-number suppression: counts of people from 1 to `below - 1` are
//! replaced by `null`, so a published figure cannot single a person out.
//! Zero stays (it singles nobody out). Ratios built on counts of people
//! (`retention_rate`, `pulse`, `momentum`) are `null` wherever a count
//! they are made of is suppressed, and so is any figure that would give a
//! suppressed one away.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::answer::{Cohorts, Principles, Trend};
use super::metric::{Figure, Metric};
use super::totals::TrendTotals;
use crate::event::Principle;
use crate::ledger::{MOMENTUM_WINDOW_PERIODS, PeriodTotals};

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
    hidden_in(&totals.totals, index, below)
}

/// The count of people of `metric` in the row `index` of `all` (totals
/// from [`MOMENTUM_WINDOW_PERIODS`] before the first row); 0 for a metric
/// that is not a count.
fn row_count(all: &[PeriodTotals], index: usize, metric: Metric) -> i64 {
    let lookback = MOMENTUM_WINDOW_PERIODS as usize;
    match metric.figure(&all[index + lookback], &all[index + lookback - 1], &all[index], 0.0) {
        Figure::Count(count) => count,
        Figure::Fraction(_) | Figure::Decimal { .. } | Figure::Undefined => 0,
    }
}

/// [`hidden_figures`] of one row of `all`.
fn hidden_in(all: &[PeriodTotals], index: usize, below: u64) -> BTreeSet<Metric> {
    let lookback = MOMENTUM_WINDOW_PERIODS as usize;
    let (current, previous, four_back) = (&all[index + lookback], &all[index + lookback - 1], &all[index]);
    let mut hidden: BTreeSet<Metric> = Metric::ALL
        .iter()
        .copied()
        .filter(|metric| metric.counts_people() && is_small(row_count(all, index, *metric), below))
        .collect();
    let small = |count: i64| is_small(count, below);
    if small(previous.active_participants) {
        hidden.insert(Metric::DormantParticipants);
    }
    let actives_small = small(current.active_participants) || small(previous.active_participants);
    if actives_small {
        hidden.insert(Metric::RetentionRate);
    }
    if actives_small || small(current.window_participants) || small(four_back.window_participants) {
        hidden.insert(Metric::Momentum);
    }
    close(&mut hidden);
    hidden
}

/// Adds to `hidden` what its figures would give away: the rules of
/// [`hidden_figures`] that follow from what is hidden, not from the counts.
fn close(hidden: &mut BTreeSet<Metric>) {
    let lifecycle = [
        Metric::NewParticipants,
        Metric::ReturningParticipants,
        Metric::RetainedParticipants,
        Metric::ResurrectingParticipants,
    ];
    // Each rule may hide what the other looks at: apply both until neither
    // hides more. A hidden active count hides its parts too, which add up
    // to it (a split read hides one that is not small).
    loop {
        let before = hidden.len();
        if hidden.contains(&Metric::ActiveParticipants) || lifecycle.iter().any(|metric| hidden.contains(metric)) {
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
    if hidden.contains(&Metric::RetainedParticipants) {
        hidden.insert(Metric::RetentionRate);
    }
}

/// Where exactly one of a group of cells is hidden, and the others and a
/// total would give it away, hides a second: the smallest other count
/// above zero (the first of equals). `hidden[i]` says whether cell `i`,
/// of count `counts[i]`, is hidden; gives the cell it hid, if any.
pub(crate) fn hide_a_second(hidden: &[bool], counts: &[i64]) -> Option<usize> {
    if hidden.iter().filter(|hidden| **hidden).count() != 1 {
        return None;
    }
    (0..counts.len()).filter(|cell| !hidden[*cell] && counts[*cell] > 0).min_by_key(|cell| counts[*cell])
}

/// Suppresses a trend computed from `totals` (the same request's). In a
/// split trend, each row is suppressed by its own value's totals, and
/// then, in each period, a count of people hidden in one value's row
/// alone is hidden in a second row too ([`hide_a_second`]): otherwise the
/// trend without the split, less the other rows, could give it away.
pub fn trend(trend: &mut Trend, totals: &TrendTotals, below: u64) {
    let lookback = MOMENTUM_WINDOW_PERIODS as usize;
    let cells: Vec<&[PeriodTotals]> = match &totals.split {
        None => vec![&totals.totals],
        Some(split) => split.cells.iter().map(|cell| cell.totals.as_slice()).collect(),
    };
    let periods = totals.totals.len() - lookback;
    assert_eq!(trend.series.len(), periods * cells.len(), "a trend is suppressed by its own totals");
    // Whose active count the period before hid: the next period's retained
    // and dormant add up to it, so they are hidden too.
    let mut active_hidden_before = vec![false; cells.len()];
    for index in 0..periods {
        let mut hidden: Vec<BTreeSet<Metric>> = cells.iter().map(|all| hidden_in(all, index, below)).collect();
        for (row, hidden_before) in hidden.iter_mut().zip(&active_hidden_before) {
            if *hidden_before {
                row.insert(Metric::DormantParticipants);
                close(row);
            }
        }
        // Each second cell hidden may hide more of its row: go on until
        // no count is hidden in one row alone.
        loop {
            let mut changed = false;
            for metric in Metric::ALL.into_iter().filter(|metric| metric.counts_people()) {
                let hides: Vec<bool> = hidden.iter().map(|row| row.contains(&metric)).collect();
                let counts: Vec<i64> = cells.iter().map(|all| row_count(all, index, metric)).collect();
                if cells.len() > 1
                    && let Some(second) = hide_a_second(&hides, &counts)
                {
                    hidden[second].insert(metric);
                    close(&mut hidden[second]);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for (cell, hidden) in hidden.iter().enumerate() {
            for (metric, value) in &mut trend.series[index * cells.len() + cell].values {
                if hidden.contains(metric) {
                    *value = Value::Null;
                }
            }
        }
        active_hidden_before = hidden.iter().map(|row| row.contains(&Metric::ActiveParticipants)).collect();
    }
    trend.suppressed_below = Some(below);
}

/// Suppresses cohorts: each size and active count from 1 to `below - 1` becomes `null`.
pub fn cohorts(cohorts: &mut Cohorts, below: u64) {
    // In a split read, the values' sizes of a cohort are a group, and so
    // are their counts at each offset.
    let mut counts = Vec::new();
    let mut groups: BTreeMap<(chrono::NaiveDate, usize), Vec<usize>> = BTreeMap::new();
    for cohort in &cohorts.cohorts {
        for (slot, count) in std::iter::once(cohort.size).chain(cohort.active.iter().copied()).enumerate() {
            if cohort.split.is_some() {
                groups.entry((cohort.cohort, slot)).or_default().push(counts.len());
            }
            counts.push(count);
        }
    }
    hide_in_groups(&mut counts, &groups.into_values().collect::<Vec<_>>(), below);
    let mut counts = counts.into_iter();
    for cohort in &mut cohorts.cohorts {
        for count in std::iter::once(&mut cohort.size).chain(cohort.active.iter_mut()) {
            *count = counts.next().expect("one count each");
        }
        // A share with its count or the size gives the other away.
        for (share, active) in cohort.shares.iter_mut().zip(&cohort.active) {
            if active.is_none() || cohort.size.is_none() {
                *share = None;
            }
        }
    }
    cohorts.suppressed_below = Some(below);
}

/// Suppresses the principles panel: each participant count from 1 to `below - 1` becomes `null`;
/// activity counts stay. In a split read, a principle's rows are a group.
pub fn principles(principles: &mut Principles, below: u64) {
    let mut counts: Vec<Option<i64>> =
        principles.principles.iter().map(|figures| figures.participants.map(|count| count as i64)).collect();
    let mut groups: BTreeMap<Principle, Vec<usize>> = BTreeMap::new();
    for (row, figures) in principles.principles.iter().enumerate().filter(|(_, figures)| figures.split.is_some()) {
        groups.entry(figures.principle).or_default().push(row);
    }
    hide_in_groups(&mut counts, &groups.into_values().collect::<Vec<_>>(), below);
    for (figures, count) in principles.principles.iter_mut().zip(counts) {
        figures.participants = count.map(|count| count as u64);
    }
    // Evidence made of counts of people: a small count, or one that a
    // split's other rows would give away, hides the indicator whole.
    let mut counts: Vec<Option<i64>> = principles.evidence.iter().map(|evidence| evidence.numerator).collect();
    let mut groups: BTreeMap<super::Indicator, Vec<usize>> = BTreeMap::new();
    for (row, evidence) in principles.evidence.iter().enumerate() {
        if !evidence.indicator.counts_people() {
            counts[row] = None;
        } else if evidence.split.is_some() {
            groups.entry(evidence.indicator).or_default().push(row);
        }
    }
    hide_in_groups(&mut counts, &groups.into_values().collect::<Vec<_>>(), below);
    for (evidence, count) in principles.evidence.iter_mut().zip(counts) {
        let small_denominator = evidence.denominator.is_some_and(|count| is_small(count, below));
        // A share of people also shows the rest: those not counted.
        let is_share = evidence.indicator != super::Indicator::Momentum;
        let small_rest = is_share
            && evidence.denominator.zip(evidence.numerator).is_some_and(|(all, some)| is_small(all - some, below));
        if evidence.indicator.counts_people() && (count.is_none() || small_denominator || small_rest) {
            (evidence.value, evidence.numerator, evidence.denominator) = (Value::Null, None, None);
        }
    }
    principles.suppressed_below = Some(below);
}

/// Hides each count from 1 to `below - 1`; then, in each group of cells
/// whose sum a reader may know (a table's total, or the figure of a read
/// without the split), a second cell where one alone is hidden
/// ([`hide_a_second`]), until no group hides exactly one.
pub(crate) fn hide_in_groups(counts: &mut [Option<i64>], groups: &[Vec<usize>], below: u64) {
    let shown: Vec<i64> = counts.iter().map(|count| count.unwrap_or(0)).collect();
    for count in counts.iter_mut() {
        if count.is_some_and(|count| is_small(count, below)) {
            *count = None;
        }
    }
    loop {
        let mut changed = false;
        for group in groups {
            let hidden: Vec<bool> = group.iter().map(|cell| counts[*cell].is_none()).collect();
            let group_counts: Vec<i64> = group.iter().map(|cell| shown[*cell]).collect();
            if let Some(second) = hide_a_second(&hidden, &group_counts) {
                counts[group[second]] = None;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}
