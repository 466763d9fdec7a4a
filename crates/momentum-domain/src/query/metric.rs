//! The metrics of a trend, and how each period's figure is computed from
//! its totals and those of the periods before.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ledger::PeriodTotals;

/// Every metric a trend can carry; the names are the API's field names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Distinct participants who took part in the period.
    ActiveParticipants,
    /// Distinct participants whose earliest participation in the movement, over all time, falls in
    /// the period.
    NewParticipants,
    /// Active participants who are not new: `active_participants` − `new_participants`.
    ReturningParticipants,
    /// Distinct participants who took part both in the period and in the one before.
    RetainedParticipants,
    /// Distinct participants who took part in the period, not in the one before, but in some period
    /// before that: `active_participants` − `new_participants` − `retained_participants`.
    ResurrectingParticipants,
    /// Distinct participants who took part in the period before and not in this one.
    DormantParticipants,
    /// The share of the previous period's participants who took part again in this one: retained /
    /// previous active; `null` when the previous period had none.
    RetentionRate,
    /// Who came (new and resurrecting participants) for each who went dormant; `null` when nobody
    /// went dormant.
    Pulse,
    /// `participant.joined` events in the period.
    Joined,
    /// `meeting.held` events in the period.
    Meetings,
    /// People at the period's meetings, each meeting counting its distinct attendees and
    /// organisers.
    Attendances,
    /// Hours logged in the period, each log counted to the nearest thousandth of an hour.
    VolunteerHours,
    /// Distinct participants with hours logged in the period.
    Volunteers,
    /// The replacement-cost value of the period's volunteer hours, in pounds: the hours times the
    /// hourly value, rounded to the penny.
    SocialValueGbp,
    /// `collective_action.taken` events in the period.
    CollectiveActions,
    /// Distinct participants and organisers of the period's collective actions.
    ActionParticipants,
    /// The reach of the period's collective actions, summed.
    PeopleReached,
    /// Distinct refs that organised a meeting or an action in the period.
    Organisers,
    /// The share of the period's meetings and actions with at least one organiser in the role
    /// `citizen`; `null` when there are none.
    CitizenLedShare,
    /// Distinct org ids named in `partners` of the period's meetings and actions.
    Partners,
    /// Distinct `area` values of the period's events, of any type that has one.
    Areas,
    /// Growth of distinct participation over a rolling window of four periods: (U(P) − U(P−4)) /
    /// U(P−4), where U(P) counts distinct participants in P−3 to P; `null` when U(P−4) is 0.
    Momentum,
}

/// Names each metric once, for both [`Metric::as_str`] and the JSON key a
/// trend row writes before its figure.
macro_rules! metric_names {
    ($($metric:ident => $name:literal,)*) => {
        impl Metric {
            /// The metric's name in the API, such as `active_participants`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Metric::$metric => $name,)*
                }
            }

            /// `,"<name>":`, as a trend row writes it before the figure.
            pub(super) fn json_key(self) -> &'static str {
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
    ResurrectingParticipants => "resurrecting_participants",
    DormantParticipants => "dormant_participants",
    RetentionRate => "retention_rate",
    Pulse => "pulse",
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
    /// Every metric, in the order a trend row lists its figures.
    pub const ALL: [Metric; 22] = [
        Metric::ActiveParticipants,
        Metric::NewParticipants,
        Metric::ReturningParticipants,
        Metric::RetainedParticipants,
        Metric::ResurrectingParticipants,
        Metric::DormantParticipants,
        Metric::RetentionRate,
        Metric::Pulse,
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

    /// Whether the metric counts something (a whole number); otherwise it
    /// is a rate, a share, hours or pounds. The test
    /// `a_metric_is_a_count_exactly_when_its_figure_is_one` ties this to
    /// [`Metric::figure`].
    pub fn is_count(self) -> bool {
        !matches!(
            self,
            Metric::RetentionRate
                | Metric::Pulse
                | Metric::VolunteerHours
                | Metric::SocialValueGbp
                | Metric::CitizenLedShare
                | Metric::Momentum
        )
    }

    /// The metric an API name stands for; `None` for any other text.
    pub fn parse(text: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.as_str() == text)
    }

    /// The metric's value for period P, from the totals of P, P-1 and P-4.
    #[inline]
    pub(super) fn figure(
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
            Metric::ResurrectingParticipants => Figure::Count(resurrecting(current)),
            Metric::DormantParticipants => Figure::Count(dormant(current, previous)),
            Metric::RetentionRate => ratio(current.retained_participants, previous.active_participants),
            Metric::Pulse => {
                ratio(current.new_participants.saturating_add(resurrecting(current)), dormant(current, previous))
            }
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

/// Active in P, not in P−1, not new in P: what is left of the active once
/// the new and the retained are taken away (they are disjoint: the new
/// took part in no earlier period, the retained in P−1). Saturating:
/// totals that crossed NATS are not trusted to be consistent.
fn resurrecting(current: &PeriodTotals) -> i64 {
    current.active_participants.saturating_sub(current.new_participants).saturating_sub(current.retained_participants)
}

/// Active in P−1 and not in P: P−1's active less those retained in P.
fn dormant(current: &PeriodTotals, previous: &PeriodTotals) -> i64 {
    previous.active_participants.saturating_sub(current.retained_participants)
}

/// One figure of a trend: a count, a fraction, or undefined (a ratio with
/// a zero divisor), which JSON writes as `null`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Figure {
    Count(i64),
    Fraction(f64),
    /// `units` / 10^`places`: whole milli-hours as hours, whole pence as
    /// pounds. Its value is the float `Fraction` would hold; it is only
    /// written without a float formatter (hours and pounds are many of a
    /// trend's figures).
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
    pub(super) const DECIMAL_UNITS_BOUND: u64 = 1_000_000_000_000_000;

    pub(super) fn decimal(units: i64, places: u32) -> Figure {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_a_count_exactly_when_its_figure_is_one() {
        let totals = PeriodTotals::default();
        for metric in Metric::ALL {
            let figure = metric.figure(&totals, &totals, &totals, 18.64);
            assert_eq!(matches!(figure, Figure::Count(_)), metric.is_count(), "{}", metric.as_str());
        }
    }
}
