//! Figures computed from a movement's facts when they are read.
//!
//! Each read is one pass over the facts of the days it covers, in day
//! order, plus the look-back its figures need (three periods before the
//! first, for the rolling window of `momentum`). Distinct counts mark each
//! person, area and partner with the last period they were counted in, so
//! a pass costs in proportion to the facts it walks (and one mark a person
//! of the movement), never to the movement's whole history. Answers are
//! kept until the movement's facts change.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use chrono::NaiveDate;

use super::select::Selection;
use super::{FactKind, MOMENTUM_WINDOW_PERIODS, MovementLedger, Part, Taking};
use crate::event::Principle;
use crate::period::Interval;

/// The figures of one period of one movement that every trend metric is
/// computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeriodTotals {
    /// Distinct participants who took part in the period.
    pub active_participants: i64,
    /// `participant.joined` events in the period (sign-ups, not participation).
    pub joined: i64,
    /// `meeting.held` events in the period.
    pub meetings: i64,
    /// People at the period's meetings, each meeting counting its distinct attendees and organisers.
    pub attendances: i64,
    /// Hours logged in the period, in milli-hours (thousandths of an hour), each log rounded to the nearest one.
    pub volunteer_millihours: i64,
    /// `collective_action.taken` events in the period.
    pub collective_actions: i64,
    /// The sum of the reach of the period's actions.
    pub people_reached: i64,
    /// Participants whose first participation ever falls in the period.
    pub new_participants: i64,
    /// Participants who took part in this period and the one before.
    pub retained_participants: i64,
    /// Distinct participants with hours logged in the period.
    pub volunteers: i64,
    /// Distinct participants and organisers of the period's actions.
    pub action_participants: i64,
    /// Distinct participants who organised a meeting or an action in the period.
    pub organisers: i64,
    /// Meetings and actions with at least one citizen organiser.
    pub citizen_led: i64,
    /// Distinct partner org ids named by the period's meetings and actions.
    pub partners: i64,
    /// Distinct `area` values of the period's events, of any type that has one.
    pub areas: i64,
    /// Distinct participants who took part in any of this period and the
    /// three before it: U(P) of the momentum metric.
    pub window_participants: i64,
}

impl PeriodTotals {
    pub(crate) const FIELD_COUNT: usize = 16;

    /// The fields in their fixed, append-only wire order.
    pub(crate) fn fields(self) -> [i64; Self::FIELD_COUNT] {
        let mut copy = self;
        copy.fields_mut().map(|field| *field)
    }

    pub(crate) fn fields_mut(&mut self) -> [&mut i64; Self::FIELD_COUNT] {
        [
            &mut self.active_participants,
            &mut self.joined,
            &mut self.meetings,
            &mut self.attendances,
            &mut self.volunteer_millihours,
            &mut self.collective_actions,
            &mut self.people_reached,
            &mut self.new_participants,
            &mut self.retained_participants,
            &mut self.volunteers,
            &mut self.action_participants,
            &mut self.organisers,
            &mut self.citizen_led,
            &mut self.partners,
            &mut self.areas,
            &mut self.window_participants,
        ]
    }
}

/// In a JSON `trend_totals` answer (the projector's default; the query
/// service asks for `TrendTotals::to_binary`'s form), totals travel as a
/// JSON array of the fields in wire order without its trailing zeros, so a
/// period where nothing happened is `[]`; a shorter array reads with zeros
/// and fields a newer writer appended are ignored.
impl serde::Serialize for PeriodTotals {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.fields();
        let length = fields.iter().rposition(|field| *field != 0).map_or(0, |last| last + 1);
        serializer.collect_seq(&fields[..length])
    }
}

impl<'de> serde::Deserialize<'de> for PeriodTotals {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PeriodTotals, D::Error> {
        // Read straight into the fields: a trend's totals are thousands of
        // numbers, read on every trend request.
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = PeriodTotals;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an array of integers")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut sequence: A) -> Result<PeriodTotals, A::Error> {
                let mut totals = PeriodTotals::default();
                let mut ended = false;
                for field in totals.fields_mut() {
                    match sequence.next_element::<i64>()? {
                        Some(value) => *field = value,
                        None => {
                            ended = true;
                            break;
                        }
                    }
                }
                while !ended && sequence.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(totals)
            }
        }
        deserializer.deserialize_seq(Fields)
    }
}

/// How many answers a movement keeps between changes; past it they are
/// all dropped, so a movement's cache never holds more.
const CACHED_ANSWERS_MAX: usize = 64;

/// What a read asked, as a cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Question {
    PeriodTotals { interval: Interval, first: NaiveDate, periods: usize, selection: Selection },
}

/// A movement's answers computed since its facts last changed.
#[derive(Debug, Default)]
pub(super) struct Cache {
    totals: HashMap<Question, Arc<Vec<PeriodTotals>>>,
}

impl Cache {
    pub(super) fn clear(&mut self) {
        self.totals.clear();
    }
}

/// The counts behind the principles' evidence, over a range of days.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvidenceCounts {
    /// Meetings, actions and hour logs.
    pub activities: i64,
    /// Meetings.
    pub meetings: i64,
    /// Collective actions.
    pub actions: i64,
    /// Meetings and actions with at least one organiser in the role `citizen`.
    pub citizen_led: i64,
    /// Activities naming at least one partner.
    pub with_partner: i64,
    /// Distinct partners named.
    pub partners: i64,
    /// Activities naming an area.
    pub with_area: i64,
    /// Distinct areas named.
    pub areas: i64,
    /// People at the meetings, each meeting counting its distinct attendees and organisers.
    pub attendances: i64,
    /// Distinct participants.
    pub participants: i64,
    /// Participants whose first participation falls in the range.
    pub new_participants: i64,
    /// Participants who took part in two or more ISO weeks of the range.
    pub repeat_participants: i64,
    /// Distinct organisers of meetings and actions.
    pub organisers: i64,
    /// Organisers who organised at least once as a citizen.
    pub citizen_organisers: i64,
}

/// What a cohort's activity in a later period counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CohortMode {
    /// Members who took part in that period.
    #[default]
    On,
    /// Members who took part in that period or any later one in range.
    OnOrAfter,
}

impl CohortMode {
    /// Both modes.
    pub const ALL: [CohortMode; 2] = [CohortMode::On, CohortMode::OnOrAfter];

    /// The mode's name in requests and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            CohortMode::On => "on",
            CohortMode::OnOrAfter => "on_or_after",
        }
    }

    /// The mode a name stands for; `None` for any other text.
    pub fn parse(text: &str) -> Option<CohortMode> {
        CohortMode::ALL.into_iter().find(|mode| mode.as_str() == text)
    }
}

/// No period yet: the mark of a person, area or partner not counted.
const UNMARKED: u32 = u32::MAX;

/// Consecutive periods from `first`, with the start of the one after the
/// last: `bounds[k]..bounds[k + 1]` is period `k`.
fn period_bounds(interval: Interval, first: NaiveDate, periods: usize) -> Vec<NaiveDate> {
    std::iter::successors(Some(first), |start| Some(interval.next_period(*start))).take(periods + 1).collect()
}

impl MovementLedger {
    /// The totals of each of `starts`, consecutive periods in order, of the
    /// facts and people `selection` counts; zeros where nothing happened.
    pub fn period_totals(&self, interval: Interval, starts: &[NaiveDate], selection: &Selection) -> Vec<PeriodTotals> {
        let Some(first) = starts.first() else { return Vec::new() };
        debug_assert!(starts.windows(2).all(|pair| pair[1] == interval.next_period(pair[0])), "consecutive periods");
        let question =
            Question::PeriodTotals { interval, first: *first, periods: starts.len(), selection: selection.clone() };
        let cached = self.cache.lock().unwrap_or_else(PoisonError::into_inner).totals.get(&question).cloned();
        if let Some(totals) = cached {
            return totals.to_vec();
        }
        let totals = Arc::new(self.compute_period_totals(interval, *first, starts.len(), selection));
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.totals.len() >= CACHED_ANSWERS_MAX {
            cache.clear();
        }
        cache.totals.insert(question, totals.clone());
        totals.to_vec()
    }

    /// One pass over the facts from three periods before `first` (the
    /// rolling window of the first period looks back that far) to the
    /// end of the last period.
    fn compute_period_totals(
        &self,
        interval: Interval,
        first: NaiveDate,
        periods: usize,
        selection: &Selection,
    ) -> Vec<PeriodTotals> {
        let lookback = (MOMENTUM_WINDOW_PERIODS - 1) as usize;
        let count = periods + lookback;
        let bounds = period_bounds(interval, interval.shift(first, -(lookback as i32)), count);
        let seen_before = self.seen_before(bounds[0], selection);
        let mut narrowed = Vec::new();
        let mut totals = vec![PeriodTotals::default(); count];
        // The last period each person was counted in as active, volunteer,
        // action participant and organiser.
        let mut people = vec![[UNMARKED; 4]; self.person_count()];
        let mut areas = vec![UNMARKED; self.areas.len() as usize];
        let mut partners = vec![UNMARKED; self.partners.len() as usize];
        let mut period = 0;
        for (day, facts) in self.facts.range(bounds[0]..bounds[count]) {
            while *day >= bounds[period + 1] {
                period += 1;
            }
            let mark = period as u32;
            for fact in facts.facts() {
                let Some(fact) = selection.admit(fact, &mut narrowed) else { continue };
                let here = &mut totals[period];
                match fact.kind {
                    FactKind::Joined => here.joined += 1,
                    FactKind::MeetingHeld => {
                        here.meetings += 1;
                        here.attendances += fact.people.len() as i64;
                        here.citizen_led += i64::from(fact.citizen_led);
                    }
                    FactKind::VolunteerHoursLogged => here.volunteer_millihours += fact.measure,
                    FactKind::CollectiveActionTaken => {
                        here.collective_actions += 1;
                        here.people_reached += fact.measure;
                        here.citizen_led += i64::from(fact.citizen_led);
                    }
                }
                if let Some(area) = fact.area
                    && std::mem::replace(&mut areas[area as usize], mark) != mark
                {
                    here.areas += 1;
                }
                for partner in fact.partners {
                    if std::mem::replace(&mut partners[*partner as usize], mark) != mark {
                        here.partners += 1;
                    }
                }
                if !fact.kind.is_participation() {
                    continue;
                }
                for taking in fact.people {
                    let marks = &mut people[taking.person as usize];
                    let here = &mut totals[period];
                    let mut count_in = |slot: usize, field: &mut i64| {
                        if std::mem::replace(&mut marks[slot], mark) != mark {
                            *field += 1;
                        }
                    };
                    match (fact.kind, taking.part) {
                        (FactKind::VolunteerHoursLogged, _) => count_in(1, &mut here.volunteers),
                        (FactKind::CollectiveActionTaken, _) => count_in(2, &mut here.action_participants),
                        _ => {}
                    }
                    if matches!(taking.part, Part::Organiser(_)) {
                        count_in(3, &mut here.organisers);
                    }
                    let before = marks[0];
                    if before == mark {
                        continue;
                    }
                    marks[0] = mark;
                    here.active_participants += 1;
                    if before != UNMARKED && before + 1 == mark {
                        here.retained_participants += 1;
                    }
                    let new = match &seen_before {
                        // Their first participation is this period's when
                        // it is their first in the pass, and none came before.
                        Some(seen) => before == UNMARKED && !seen[taking.person as usize],
                        None => self
                            .first_day(taking.person)
                            .is_some_and(|first_day| bounds[period] <= first_day && first_day < bounds[period + 1]),
                    };
                    if new {
                        here.new_participants += 1;
                    }
                    // The windows this period opens for them: those not
                    // already counting their activity in an earlier period.
                    let window = MOMENTUM_WINDOW_PERIODS as usize;
                    let from = if before == UNMARKED { period } else { period.max(before as usize + window) };
                    for later in totals.iter_mut().take((period + window).min(count)).skip(from) {
                        later.window_participants += 1;
                    }
                }
            }
        }
        totals.drain(..lookback);
        totals
    }

    /// For each period of `periods` (consecutive, in order) taken as a
    /// cohort, how many of those whose first participation falls in it
    /// took part in it and in each period after it in `periods`, as `mode`
    /// counts: `activity[c][k]` for cohort `c` in period `c + k`.
    pub fn cohort_activity(
        &self,
        interval: Interval,
        periods: &[NaiveDate],
        selection: &Selection,
        mode: CohortMode,
    ) -> Vec<Vec<i64>> {
        let Some(first) = periods.first() else { return Vec::new() };
        let count = periods.len();
        let bounds = period_bounds(interval, *first, count);
        let mut activity: Vec<Vec<i64>> = (0..count).map(|cohort| vec![0; count - cohort]).collect();
        let mut marks = vec![UNMARKED; self.person_count()];
        // Where the index of first days does not answer (a selection's first
        // participations are not its), each person's cohort: the period they
        // are first met in, unless they took part before the range.
        let seen_before = self.seen_before(bounds[0], selection);
        let mut cohorts = vec![UNMARKED; if seen_before.is_some() { self.person_count() } else { 0 }];
        // For `OnOrAfter`: each person's cohort and last period active.
        let mut latest = vec![(UNMARKED, 0u32); if mode == CohortMode::OnOrAfter { self.person_count() } else { 0 }];
        let mut narrowed = Vec::new();
        let mut period = 0;
        for (day, facts) in self.facts.range(bounds[0]..bounds[count]) {
            while *day >= bounds[period + 1] {
                period += 1;
            }
            for fact in facts.facts().filter(|fact| fact.kind.is_participation()) {
                let Some(fact) = selection.admit(fact, &mut narrowed) else { continue };
                for taking in fact.people {
                    let person = taking.person as usize;
                    if std::mem::replace(&mut marks[person], period as u32) == period as u32 {
                        continue;
                    }
                    let cohort = match &seen_before {
                        Some(seen) if seen[person] => continue,
                        Some(_) => {
                            if cohorts[person] == UNMARKED {
                                cohorts[person] = period as u32;
                            }
                            cohorts[person] as usize
                        }
                        None => {
                            let Some(first_day) = self.first_day(taking.person) else { continue };
                            if first_day < bounds[0] {
                                continue;
                            }
                            // Their first day is on or before this one.
                            bounds.partition_point(|start| *start <= first_day) - 1
                        }
                    };
                    match mode {
                        CohortMode::On => activity[cohort][period - cohort] += 1,
                        // Periods only increase: the last one set is the latest.
                        CohortMode::OnOrAfter => latest[person] = (cohort as u32, period as u32),
                    }
                }
            }
        }
        if mode == CohortMode::OnOrAfter {
            // Count each person once at their last offset, then sum from the
            // end: active at offset k or later.
            for (cohort, last) in latest.into_iter().filter(|(cohort, _)| *cohort != UNMARKED) {
                activity[cohort as usize][(last - cohort) as usize] += 1;
            }
            for row in &mut activity {
                for offset in (0..row.len().saturating_sub(1)).rev() {
                    row[offset] += row[offset + 1];
                }
            }
        }
        activity
    }

    /// For a selection that is not every fact, whether each person took
    /// part, in a fact it counts, before `day`: `None` for every fact, whose
    /// first participations the index of first days holds. This looks at
    /// the whole history before `day`.
    fn seen_before(&self, day: NaiveDate, selection: &Selection) -> Option<Vec<bool>> {
        if selection.is_all() {
            return None;
        }
        let mut seen = vec![false; self.person_count()];
        let mut narrowed: Vec<Taking> = Vec::new();
        for facts in self.facts.range(..day).map(|(_, facts)| facts) {
            for fact in facts.facts().filter(|fact| fact.kind.is_participation()) {
                let Some(fact) = selection.admit(fact, &mut narrowed) else { continue };
                for taking in fact.people {
                    seen[taking.person as usize] = true;
                }
            }
        }
        Some(seen)
    }

    /// Over the consecutive `periods` (in order): how many people took part
    /// in exactly 1, 2, … of them (`[k - 1]` for k periods), and how many
    /// took part in exactly n activities (meetings, actions, hour logs: the
    /// facts of participation), as (n, people) in increasing n.
    pub fn stickiness(
        &self,
        interval: Interval,
        periods: &[NaiveDate],
        selection: &Selection,
    ) -> (Vec<i64>, Vec<(u64, i64)>) {
        let Some(first) = periods.first() else { return (Vec::new(), Vec::new()) };
        let count = periods.len();
        let bounds = period_bounds(interval, *first, count);
        // Per person: the last period and the last fact counted, and the
        // numbers of periods and of activities.
        let people = self.person_count();
        let (mut last_period, mut last_fact) = (vec![UNMARKED; people], vec![u64::MAX; people]);
        let (mut periods_active, mut activities) = (vec![0u32; people], vec![0u64; people]);
        let (mut period, mut fact_number) = (0, 0u64);
        let mut narrowed = Vec::new();
        for (day, facts) in self.facts.range(bounds[0]..bounds[count]) {
            while *day >= bounds[period + 1] {
                period += 1;
            }
            for fact in facts.facts().filter(|fact| fact.kind.is_participation()) {
                let Some(fact) = selection.admit(fact, &mut narrowed) else { continue };
                fact_number += 1;
                for taking in fact.people {
                    let person = taking.person as usize;
                    if std::mem::replace(&mut last_fact[person], fact_number) == fact_number {
                        continue;
                    }
                    activities[person] += 1;
                    if std::mem::replace(&mut last_period[person], period as u32) != period as u32 {
                        periods_active[person] += 1;
                    }
                }
            }
        }
        let mut by_periods = vec![0i64; count];
        let mut by_activities = std::collections::BTreeMap::<u64, i64>::new();
        for (active, done) in periods_active.iter().zip(&activities).filter(|(active, _)| **active > 0) {
            by_periods[*active as usize - 1] += 1;
            *by_activities.entry(*done).or_default() += 1;
        }
        (by_periods, by_activities.into_iter().collect())
    }

    /// The counts the principles' evidence is computed from, over the
    /// facts from `from` to `to` (local dates, inclusive) that `selection`
    /// counts. One pass, and for `new_participants` (outside the index's
    /// reach) one over the history before `from`.
    pub fn evidence_counts(&self, from: NaiveDate, to: NaiveDate, selection: &Selection) -> EvidenceCounts {
        let mut counts = EvidenceCounts::default();
        if from > to {
            return counts;
        }
        let seen_before = self.seen_before(from, selection);
        // Per person: the last ISO week they were active in (to count the
        // weeks they came in), whether they count as active, as repeat,
        // as organiser and as citizen organiser.
        let people = self.person_count();
        let mut last_week = vec![None::<NaiveDate>; people];
        let mut flags = vec![0u8; people];
        const ACTIVE: u8 = 1;
        const REPEAT: u8 = 2;
        const ORGANISER: u8 = 4;
        const CITIZEN_ORGANISER: u8 = 8;
        const NEW: u8 = 16;
        let mut areas = vec![false; self.areas.len() as usize];
        let mut partners = vec![false; self.partners.len() as usize];
        let mut narrowed = Vec::new();
        for (day, facts) in self.facts.range(from..=to) {
            let week = Interval::Week.period_start(*day);
            for fact in facts.facts() {
                let Some(fact) = selection.admit(fact, &mut narrowed) else { continue };
                if !fact.kind.is_participation() {
                    continue;
                }
                counts.activities += 1;
                match fact.kind {
                    FactKind::MeetingHeld => {
                        counts.meetings += 1;
                        counts.attendances += fact.people.len() as i64;
                    }
                    FactKind::CollectiveActionTaken => counts.actions += 1,
                    FactKind::Joined | FactKind::VolunteerHoursLogged => {}
                }
                counts.citizen_led += i64::from(fact.citizen_led);
                if let Some(area) = fact.area {
                    counts.with_area += 1;
                    areas[area as usize] = true;
                }
                if !fact.partners.is_empty() {
                    counts.with_partner += 1;
                }
                for partner in fact.partners {
                    partners[*partner as usize] = true;
                }
                for taking in fact.people {
                    let person = taking.person as usize;
                    let flag = &mut flags[person];
                    if *flag & ACTIVE == 0 {
                        *flag |= ACTIVE;
                        let new = match &seen_before {
                            Some(seen) => !seen[person],
                            None => self.first_day(taking.person).is_some_and(|first| from <= first && first <= to),
                        };
                        if new {
                            *flag |= NEW;
                        }
                    }
                    match last_week[person] {
                        Some(last) if last != week => *flag |= REPEAT,
                        _ => {}
                    }
                    last_week[person] = Some(week);
                    if let Part::Organiser(role) = taking.part {
                        *flag |= ORGANISER;
                        if role == crate::event::Role::Citizen {
                            *flag |= CITIZEN_ORGANISER;
                        }
                    }
                }
            }
        }
        for flag in flags {
            let count = |bit: u8| i64::from(flag & bit != 0);
            counts.participants += count(ACTIVE);
            counts.new_participants += count(NEW);
            counts.repeat_participants += count(REPEAT);
            counts.organisers += count(ORGANISER);
            counts.citizen_organisers += count(CITIZEN_ORGANISER);
        }
        counts.areas = areas.into_iter().filter(|seen| *seen).count() as i64;
        counts.partners = partners.into_iter().filter(|seen| *seen).count() as i64;
        counts
    }

    /// For each of [`Principle::ALL`], the activities from `from` to `to`
    /// (local dates, inclusive) tagged with it, and their distinct
    /// participants.
    pub fn principle_figures(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        selection: &Selection,
    ) -> [(u64, u64); Principle::ALL.len()] {
        let mut figures = [(0, 0); Principle::ALL.len()];
        if from > to {
            return figures;
        }
        // The principles each person was counted under, as bits.
        let mut counted = vec![0u8; self.person_count()];
        let mut narrowed = Vec::new();
        for facts in self.facts.range(from..=to).map(|(_, facts)| facts) {
            for fact in facts.facts().filter(|fact| fact.principles != 0) {
                let Some(fact) = selection.admit(fact, &mut narrowed) else { continue };
                for (bit, figure) in figures.iter_mut().enumerate() {
                    if fact.principles & (1 << bit) == 0 {
                        continue;
                    }
                    figure.0 += 1;
                    for taking in fact.people {
                        let bits = &mut counted[taking.person as usize];
                        if *bits & (1 << bit) == 0 {
                            *bits |= 1 << bit;
                            figure.1 += 1;
                        }
                    }
                }
            }
        }
        figures
    }
}
