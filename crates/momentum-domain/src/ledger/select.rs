//! Which facts, and which of their people, a read counts: a read's filters
//! (and, for a split read, one of its values) in the movement's numbers.

use super::day::FactView;
use super::{FactKind, Labels, MovementLedger, Part, Taking};
use crate::event::Principle;
use std::collections::HashMap;

use chrono::NaiveDate;

use crate::selection::{self, Breakdown, Filter, FilterValue, ParticipantRole, Split};

/// A fact's value in a dimension it names nothing of: the row `(none)`.
pub(super) const NO_VALUE: u32 = u32::MAX;

/// The value of a text the movement never met: no fact has it.
const NEVER_MET: u32 = u32::MAX - 1;

/// The values of one dimension a fact must have one of.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Values {
    /// This one.
    Only(u32),
    /// Any but these (in ascending order).
    Outside(Box<[u32]>),
}

impl Values {
    fn admits(&self, value: u32) -> bool {
        match self {
            Values::Only(only) => value == *only,
            Values::Outside(outside) => outside.binary_search(&value).is_err(),
        }
    }
}

/// The facts and people a read counts. The empty selection counts every one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selection {
    /// A fact counts when, in each dimension listed (never
    /// [`Breakdown::Role`]), it has one of the values.
    facts: Vec<(Breakdown, Values)>,
    /// The roles counted, bit `i` for [`ParticipantRole::ALL`]`[i]`; every
    /// role when `None`. A fact counts when someone in it had one of them,
    /// and only they count among its people.
    roles: Option<u8>,
    /// Count the facts as they stood at this sequence: those that had
    /// arrived and were not yet retracted. `None` counts those not
    /// retracted now.
    as_of: Option<u64>,
}

impl Selection {
    /// Whether it counts every fact and person.
    pub(super) fn is_all(&self) -> bool {
        self.facts.is_empty() && self.roles.is_none() && self.as_of.is_none()
    }

    /// The fact as the read counts it, with its people narrowed to the
    /// roles counted (into `people`); `None` when it does not count.
    pub(super) fn admit<'a>(&self, fact: FactView<'a>, people: &'a mut Vec<Taking>) -> Option<FactView<'a>> {
        let counts = match self.as_of {
            None => fact.retracted_at.is_none(),
            Some(as_of) => fact.seq <= as_of && fact.retracted_at.is_none_or(|retraction| retraction > as_of),
        };
        if !counts {
            return None;
        }
        for (dimension, values) in &self.facts {
            if !any_value(*dimension, &fact, |value| values.admits(value)) {
                return None;
            }
        }
        let Some(roles) = self.roles else { return Some(fact) };
        people.clear();
        people.extend(fact.people.iter().filter(|taking| roles & role_bit(role_of(taking.part)) != 0));
        if people.is_empty() {
            return None;
        }
        Some(FactView { people: people.as_slice(), ..fact })
    }
}

fn role_bit(role: ParticipantRole) -> u8 {
    1 << role.index()
}

/// Every role's bit.
const EVERY_ROLE: u8 = (1 << ParticipantRole::ALL.len()) - 1;

/// One row of a split read: the value it is for, and the facts and people
/// it counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitCell {
    /// The value, as answers name it.
    pub value: String,
    /// What the cell counts: the read's own selection, and this value.
    pub selection: Selection,
}

/// The role a part in a fact stands for.
pub(super) fn role_of(part: Part) -> ParticipantRole {
    match part {
        Part::Joined(role) | Part::Organiser(role) => ParticipantRole::of(role),
        Part::Attendee => ParticipantRole::Attendee,
        Part::Volunteer => ParticipantRole::Volunteer,
        Part::ActionParticipant => ParticipantRole::ActionParticipant,
    }
}

/// Whether any of the fact's values in `dimension` passes `test`; a fact
/// with none has the one value [`NO_VALUE`]. A principle's value is its
/// place in [`Principle::ALL`].
pub(super) fn any_value(dimension: Breakdown, fact: &FactView<'_>, mut test: impl FnMut(u32) -> bool) -> bool {
    let joined = fact.kind == FactKind::Joined;
    match dimension {
        Breakdown::Area => test(fact.area.unwrap_or(NO_VALUE)),
        Breakdown::Partner if fact.partners.is_empty() => test(NO_VALUE),
        Breakdown::Partner => fact.partners.iter().any(|partner| test(*partner)),
        Breakdown::Kind => test(if joined { NO_VALUE } else { fact.label.unwrap_or(NO_VALUE) }),
        Breakdown::Channel => test(if joined { fact.label.unwrap_or(NO_VALUE) } else { NO_VALUE }),
        Breakdown::Principle if fact.principles == 0 => test(NO_VALUE),
        Breakdown::Principle => {
            (0..Principle::ALL.len() as u32).filter(|bit| fact.principles & (1 << bit) != 0).any(test)
        }
        Breakdown::Role => fact.people.iter().any(|taking| test(role_of(taking.part).index() as u32)),
    }
}

impl MovementLedger {
    /// The selection of the facts and people that match `filter`.
    pub fn select(&self, filter: &Filter) -> Selection {
        let number = |labels: &Labels, value: &FilterValue| labels.find(value.as_str()).unwrap_or(NEVER_MET);
        let mut facts = Vec::new();
        if let Some(area) = &filter.area {
            facts.push((Breakdown::Area, Values::Only(number(&self.areas, area))));
        }
        if let Some(partner) = &filter.partner {
            facts.push((Breakdown::Partner, Values::Only(number(&self.partners, partner))));
        }
        if let Some(kind) = &filter.kind {
            facts.push((Breakdown::Kind, Values::Only(number(&self.labels, kind))));
        }
        Selection { facts, roles: filter.role.map(role_bit), as_of: filter.as_of_seq }
    }

    /// The cells of a read that counts `selection` split by `split`: the
    /// values with the most volume on the days from `from` until (before)
    /// `until`, most first (ties in name order), then [`selection::OTHER_VALUE`]
    /// for the rest when they have any. A value's volume is the number of
    /// facts it is a value of, or for roles the number of parts taken in
    /// it. A value named as the two rows that merge values are is never
    /// kept, so a row's name always says what it holds.
    pub fn split(&self, selection: &Selection, split: Split, from: NaiveDate, until: NaiveDate) -> Vec<SplitCell> {
        let by = split.by();
        let mut volumes: HashMap<u32, u64> = HashMap::new();
        let mut narrowed = Vec::new();
        for facts in self.facts.range(from..until).map(|(_, facts)| facts) {
            for fact in facts.facts() {
                let Some(fact) = selection.admit(fact, &mut narrowed) else { continue };
                if by == Breakdown::Role {
                    for taking in fact.people {
                        *volumes.entry(role_of(taking.part).index() as u32).or_default() += 1;
                    }
                } else {
                    any_value(by, &fact, |value| {
                        *volumes.entry(value).or_default() += 1;
                        false
                    });
                }
            }
        }
        let mut ranked: Vec<(u64, String, u32)> =
            volumes.iter().map(|(value, volume)| (*volume, self.value_name(by, *value), *value)).collect();
        ranked.sort_by(|left, right| right.0.cmp(&left.0).then_with(|| left.1.cmp(&right.1)));
        let (mut kept, mut rest) = (Vec::new(), false);
        for (_, name, value) in ranked {
            let merged_name = name == selection::OTHER_VALUE || (name == selection::NO_VALUE && value != NO_VALUE);
            if kept.len() < split.top() && !merged_name {
                kept.push((name, value));
            } else {
                rest = true;
            }
        }
        let mut cells: Vec<SplitCell> = kept
            .iter()
            .map(|(name, value)| SplitCell { value: name.clone(), selection: selection.with(by, Values::Only(*value)) })
            .collect();
        if rest {
            let mut outside: Vec<u32> = kept.iter().map(|(_, value)| *value).collect();
            outside.sort_unstable();
            let selection = selection.with(by, Values::Outside(outside.into()));
            cells.push(SplitCell { value: selection::OTHER_VALUE.to_owned(), selection });
        }
        cells
    }

    /// The name of a value of `by` as [`any_value`] numbers it.
    fn value_name(&self, by: Breakdown, value: u32) -> String {
        if value == NO_VALUE {
            return selection::NO_VALUE.to_owned();
        }
        let labels = match by {
            Breakdown::Area => &self.areas,
            Breakdown::Partner => &self.partners,
            Breakdown::Kind | Breakdown::Channel => &self.labels,
            Breakdown::Principle => return Principle::ALL[value as usize].as_str().to_owned(),
            Breakdown::Role => return ParticipantRole::ALL[value as usize].as_str().to_owned(),
        };
        labels.texts[value as usize].to_string()
    }
}

impl Selection {
    /// This selection, narrowed to the facts (or for roles, the people)
    /// with one of `values` of `by`.
    fn with(&self, by: Breakdown, values: Values) -> Selection {
        let mut narrowed = self.clone();
        if by == Breakdown::Role {
            let bits = (0..ParticipantRole::ALL.len() as u32)
                .filter(|role| values.admits(*role))
                .fold(0u8, |bits, role| bits | 1 << role);
            narrowed.roles = Some(self.roles.unwrap_or(EVERY_ROLE) & bits);
        } else {
            narrowed.facts.push((by, values));
        }
        narrowed
    }
}
