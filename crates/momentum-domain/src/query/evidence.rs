//! Behavioural evidence for each of the eight principles: indicators
//! computed from what people did, each with the numbers behind it, never a
//! bare score. docs/metrics.md gives each mapping and its reasoning.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::metric::{Figure, Metric};
use crate::event::Principle;
use crate::ledger::{EvidenceCounts, PeriodTotals};
use crate::selection::SplitValue;

/// The indicators the principles' evidence holds, one or more a principle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Indicator {
    /// Mobilise citizens: participants whose first participation falls in the range.
    NewParticipants,
    /// Shift control: organisers who organised as citizens, of all organisers.
    CitizenOrganiserShare,
    /// Collaborate widely: activities naming a partner, of all activities.
    PartneredActivityShare,
    /// Collaborate widely: distinct partners named.
    DistinctPartners,
    /// Share power: meetings and actions with a citizen organiser, of all meetings and actions.
    CitizenLedShare,
    /// Change culture: participants who came in two or more weeks of the range, of all participants.
    RepeatParticipantShare,
    /// Grow from local: activities naming an area, of all activities.
    LocalActivityShare,
    /// Grow from local: distinct areas named.
    DistinctAreas,
    /// Build momentum: the momentum of the week containing `to`.
    Momentum,
    /// Bring people together: people at meetings, per meeting.
    AttendancesPerMeeting,
}

impl Indicator {
    /// The principle the indicator is evidence for.
    pub fn principle(self) -> Principle {
        match self {
            Indicator::NewParticipants => Principle::MobiliseCitizens,
            Indicator::CitizenOrganiserShare => Principle::ShiftControl,
            Indicator::PartneredActivityShare | Indicator::DistinctPartners => Principle::CollaborateWidely,
            Indicator::CitizenLedShare => Principle::SharePower,
            Indicator::RepeatParticipantShare => Principle::ChangeCulture,
            Indicator::LocalActivityShare | Indicator::DistinctAreas => Principle::GrowFromLocal,
            Indicator::Momentum => Principle::BuildMomentum,
            Indicator::AttendancesPerMeeting => Principle::BringPeopleTogether,
        }
    }

    /// Whether the indicator is made of counts of people, which small-number suppression hides.
    pub fn counts_people(self) -> bool {
        matches!(
            self,
            Indicator::NewParticipants
                | Indicator::CitizenOrganiserShare
                | Indicator::RepeatParticipantShare
                | Indicator::Momentum
        )
    }
}

/// One indicator of a principle, with the numbers it is made of: `value` is
/// `numerator` for a count, `numerator / denominator` for a share or a rate
/// (and for momentum `(numerator − denominator) / denominator`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrincipleEvidence {
    /// The principle it is evidence for.
    pub principle: Principle,
    /// In a split read, the value the row is for.
    #[serde(flatten)]
    pub split: Option<SplitValue>,
    /// What is measured.
    pub indicator: Indicator,
    /// The indicator; `null` when its denominator is zero or it is suppressed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, required = true))]
    pub value: Value,
    /// The count it is made of; `null` only where suppressed.
    pub numerator: Option<i64>,
    /// What the count is divided by, for a share or a rate; `null` for a count, or where suppressed.
    pub denominator: Option<i64>,
}

/// The evidence of every principle from `counts` and the weekly totals of
/// the week containing the range's last day and the four before it
/// (`weeks`, oldest first), in the order of [`Principle::ALL`].
pub(super) fn evidence(
    counts: &EvidenceCounts,
    weeks: &[PeriodTotals; 5],
    split: Option<&SplitValue>,
) -> Vec<PrincipleEvidence> {
    let share = |indicator, numerator: i64, denominator: i64| {
        let value = if denominator == 0 { Value::Null } else { Value::from(numerator as f64 / denominator as f64) };
        (indicator, value, numerator, Some(denominator))
    };
    let count = |indicator, count: i64| (indicator, Value::from(count), count, None);
    let momentum = match Metric::Momentum.figure(&weeks[4], &weeks[3], &weeks[0], 0.0) {
        Figure::Fraction(value) => Value::from(value),
        _ => Value::Null,
    };
    let (now, before) = (weeks[4].window_participants, weeks[0].window_participants);
    let mut indicators = vec![
        count(Indicator::NewParticipants, counts.new_participants),
        share(Indicator::CitizenOrganiserShare, counts.citizen_organisers, counts.organisers),
        share(Indicator::PartneredActivityShare, counts.with_partner, counts.activities),
        count(Indicator::DistinctPartners, counts.partners),
        share(Indicator::CitizenLedShare, counts.citizen_led, counts.meetings + counts.actions),
        share(Indicator::RepeatParticipantShare, counts.repeat_participants, counts.participants),
        share(Indicator::LocalActivityShare, counts.with_area, counts.activities),
        count(Indicator::DistinctAreas, counts.areas),
        (Indicator::Momentum, momentum, now, Some(before)),
        share(Indicator::AttendancesPerMeeting, counts.attendances, counts.meetings),
    ];
    indicators.sort_by_key(|(indicator, ..)| indicator.principle());
    indicators
        .into_iter()
        .map(|(indicator, value, numerator, denominator)| PrincipleEvidence {
            principle: indicator.principle(),
            split: split.cloned(),
            indicator,
            value,
            numerator: Some(numerator),
            denominator,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_principle_has_evidence_with_the_numbers_behind_it() {
        let counts = EvidenceCounts {
            activities: 10,
            meetings: 4,
            actions: 2,
            citizen_led: 3,
            with_partner: 5,
            partners: 2,
            with_area: 0,
            attendances: 30,
            organisers: 4,
            citizen_organisers: 1,
            participants: 20,
            repeat_participants: 5,
            new_participants: 7,
            ..EvidenceCounts::default()
        };
        let week = |window| PeriodTotals { window_participants: window, ..PeriodTotals::default() };
        let evidence = evidence(&counts, &[week(8), week(0), week(0), week(0), week(10)], None);
        let covered: std::collections::BTreeSet<Principle> = evidence.iter().map(|e| e.principle).collect();
        assert_eq!(covered.len(), Principle::ALL.len(), "every principle has evidence");
        let find = |indicator| evidence.iter().find(|e| e.indicator == indicator).unwrap();
        let shared = find(Indicator::CitizenLedShare);
        assert_eq!((shared.value.as_f64(), shared.numerator, shared.denominator), (Some(0.5), Some(3), Some(6)));
        assert_eq!(find(Indicator::AttendancesPerMeeting).value, Value::from(7.5));
        assert_eq!(find(Indicator::LocalActivityShare).value, Value::from(0.0));
        let momentum = find(Indicator::Momentum);
        assert_eq!(
            (momentum.value.as_f64(), momentum.numerator, momentum.denominator),
            (Some(0.25), Some(10), Some(8))
        );
        assert_eq!(find(Indicator::NewParticipants).value, Value::from(7));
        let nothing = super::evidence(&EvidenceCounts::default(), &[PeriodTotals::default(); 5], None);
        assert!(nothing.iter().filter(|e| e.denominator.is_some()).all(|e| e.value.is_null()), "no denominator");
    }
}
