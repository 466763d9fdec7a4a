//! Which of a movement's events a read counts: filters by area, partner,
//! role and kind (docs/metrics.md, "Filters and breakdowns").
//!
//! A filtered read is the same read over the events that match, so every
//! figure keeps its definition: a filtered `new_participants` counts
//! those whose first matching participation falls in the period. Filters
//! combine with "and".

use serde::{Deserialize, Serialize};

use crate::event::Role;

/// The longest text a filter may name: the longest area, org id or label an event may carry.
pub const FILTER_VALUE_LENGTH_MAX: usize = 64;

/// A text a filter matches: an area, a partner's org id, or a kind, as
/// events carry them (1 to [`FILTER_VALUE_LENGTH_MAX`] characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FilterValue(String);

/// A text no event could carry, so no filter matches it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {FILTER_VALUE_LENGTH_MAX} characters, as events carry it")]
pub struct NotAFilterValue;

impl FilterValue {
    /// The value, if an event could carry it.
    pub fn new(text: &str) -> Result<FilterValue, NotAFilterValue> {
        let length = text.chars().count();
        if length == 0 || length > FILTER_VALUE_LENGTH_MAX {
            return Err(NotAFilterValue);
        }
        Ok(FilterValue(text.to_owned()))
    }

    /// The text matched.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FilterValue {
    type Error = NotAFilterValue;

    fn try_from(text: String) -> Result<FilterValue, NotAFilterValue> {
        FilterValue::new(&text)
    }
}

impl From<FilterValue> for String {
    fn from(value: FilterValue) -> String {
        value.0
    }
}

/// The part a person had in an event: an organiser's role, or the part of
/// everyone else in it. A sign-up's person has the role they signed up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ParticipantRole {
    /// An organiser in the role `citizen`, or a sign-up as one.
    Citizen,
    /// An organiser in the role `professional`, or a sign-up as one.
    Professional,
    /// An organiser in the role `partner_staff`, or a sign-up as one.
    PartnerStaff,
    /// An attendee of a meeting who did not organise it.
    Attendee,
    /// The participant of an hour log.
    Volunteer,
    /// A participant of a collective action who did not organise it.
    ActionParticipant,
}

impl ParticipantRole {
    /// Every role, in the order answers list them.
    pub const ALL: [ParticipantRole; 6] = [
        ParticipantRole::Citizen,
        ParticipantRole::Professional,
        ParticipantRole::PartnerStaff,
        ParticipantRole::Attendee,
        ParticipantRole::Volunteer,
        ParticipantRole::ActionParticipant,
    ];

    /// The role's name in requests and answers, such as `partner_staff`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantRole::Citizen => "citizen",
            ParticipantRole::Professional => "professional",
            ParticipantRole::PartnerStaff => "partner_staff",
            ParticipantRole::Attendee => "attendee",
            ParticipantRole::Volunteer => "volunteer",
            ParticipantRole::ActionParticipant => "action_participant",
        }
    }

    /// The role a name stands for; `None` for any other text.
    pub fn parse(text: &str) -> Option<ParticipantRole> {
        ParticipantRole::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// The participant role of an organiser's or a sign-up's role.
    pub fn of(role: Role) -> ParticipantRole {
        match role {
            Role::Citizen => ParticipantRole::Citizen,
            Role::Professional => ParticipantRole::Professional,
            Role::PartnerStaff => ParticipantRole::PartnerStaff,
        }
    }

    /// Its place in [`ParticipantRole::ALL`].
    pub fn index(self) -> usize {
        ParticipantRole::ALL.iter().position(|role| *role == self).expect("every role is in ALL")
    }
}

/// The filters of a read; each one absent matches every event. With
/// `as_of_seq`, the read counts the events as the projection stood when it
/// had applied the stream up to that sequence (docs/metrics.md, "As it
/// stood").
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Filter {
    /// Only what the stream held up to this sequence: later events and
    /// later retractions are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of_seq: Option<u64>,
    /// Only events in this `area`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<FilterValue>,
    /// Only meetings and actions naming this org id among their `partners`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<FilterValue>,
    /// Only the people who had this part in an event, and the events where someone had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ParticipantRole>,
    /// Only meetings and actions of this `kind`, and hour logs of this `activity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FilterValue>,
}

impl Filter {
    /// Whether it matches every event.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }
}

/// A dimension a read can be split by (`by=`): each row of a split read
/// is the read over the events with one value of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Breakdown {
    /// An event's `area`.
    Area,
    /// Each org id a meeting or action names in `partners`.
    Partner,
    /// The part each person had ([`ParticipantRole`]).
    Role,
    /// A meeting's or action's `kind`, an hour log's `activity`.
    Kind,
    /// A sign-up's `channel`.
    Channel,
    /// Each principle an activity is tagged with.
    Principle,
}

impl Breakdown {
    /// Every dimension, in the order the documents list them.
    pub const ALL: [Breakdown; 6] = [
        Breakdown::Area,
        Breakdown::Partner,
        Breakdown::Role,
        Breakdown::Kind,
        Breakdown::Channel,
        Breakdown::Principle,
    ];

    /// The dimension's name, in `by=` and as the field of a split row.
    pub fn as_str(self) -> &'static str {
        match self {
            Breakdown::Area => "area",
            Breakdown::Partner => "partner",
            Breakdown::Role => "role",
            Breakdown::Kind => "kind",
            Breakdown::Channel => "channel",
            Breakdown::Principle => "principle",
        }
    }

    /// The dimension a name stands for; `None` for any other text.
    pub fn parse(text: &str) -> Option<Breakdown> {
        Breakdown::ALL.into_iter().find(|dimension| dimension.as_str() == text)
    }
}

/// The row of a split read that merges every value past the top ones.
pub const OTHER_VALUE: &str = "(other)";

/// The row of a split read for events that name no value of the dimension
/// (an event without an `area`, an activity tagged with no principle).
pub const NO_VALUE: &str = "(none)";

/// The values a split read keeps when it does not say (`top`).
pub const SPLIT_TOP_DEFAULT: usize = 10;

/// The most values a split read may keep, so that an answer stays a few
/// thousand rows per period at most.
pub const SPLIT_TOP_MAX: usize = 100;

/// How a read is split: by one dimension, keeping the `top` values with
/// the most volume over the read's range and merging the rest into
/// [`OTHER_VALUE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "SplitFields", into = "SplitFields")]
pub struct Split {
    by: Breakdown,
    top: usize,
}

#[derive(Serialize, Deserialize)]
struct SplitFields {
    by: Breakdown,
    top: usize,
}

/// A `top` out of its bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be a whole number from 1 to {SPLIT_TOP_MAX}")]
pub struct TopOutOfRange;

impl Split {
    /// A split by `by` keeping `top` values: 1 to [`SPLIT_TOP_MAX`].
    pub fn new(by: Breakdown, top: usize) -> Result<Split, TopOutOfRange> {
        if top == 0 || top > SPLIT_TOP_MAX {
            return Err(TopOutOfRange);
        }
        Ok(Split { by, top })
    }

    /// The dimension split by.
    pub fn by(self) -> Breakdown {
        self.by
    }

    /// How many values are kept.
    pub fn top(self) -> usize {
        self.top
    }
}

impl TryFrom<SplitFields> for Split {
    type Error = TopOutOfRange;

    fn try_from(fields: SplitFields) -> Result<Split, TopOutOfRange> {
        Split::new(fields.by, fields.top)
    }
}

impl From<Split> for SplitFields {
    fn from(split: Split) -> SplitFields {
        SplitFields { by: split.by, top: split.top }
    }
}

/// The value of the dimension a row of a split read is for: in JSON, one
/// field named after the dimension, such as `"area": "E01000001"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SplitValue {
    /// The dimension.
    pub by: Breakdown,
    /// Its value: as events carry it, a role's or a principle's name,
    /// [`NO_VALUE`] or [`OTHER_VALUE`].
    pub value: String,
}

impl Serialize for SplitValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.by.as_str(), &self.value)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for SplitValue {
    /// Reads the first field named after a dimension, ignoring any other;
    /// an error when there is none, so that a row flattened into with
    /// `Option<SplitValue>` reads as unsplit.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SplitValue, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = SplitValue;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a field named after a dimension")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SplitValue, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    match Breakdown::parse(&key) {
                        Some(by) if found.is_none() => found = Some(SplitValue { by, value: map.next_value()? }),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                found.ok_or_else(|| serde::de::Error::custom("no dimension"))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for SplitValue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut object = ObjectBuilder::new().description(Some(
            "In a split read (`by`), the value of the dimension the row is for, in a field named after it.",
        ));
        for by in Breakdown::ALL {
            object = object.property(by.as_str(), ObjectBuilder::new().schema_type(Type::String));
        }
        object.into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for SplitValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_value_is_what_an_event_could_carry() {
        assert!(FilterValue::new("E01000001").is_ok());
        assert_eq!(FilterValue::new(""), Err(NotAFilterValue));
        assert!(FilterValue::new(&"é".repeat(FILTER_VALUE_LENGTH_MAX)).is_ok(), "characters, not bytes");
        assert_eq!(FilterValue::new(&"a".repeat(FILTER_VALUE_LENGTH_MAX + 1)), Err(NotAFilterValue));
        assert!(serde_json::from_str::<Filter>(r#"{"area":""}"#).is_err(), "read from JSON as built");
    }

    #[test]
    fn a_split_keeps_1_to_the_most_values() {
        assert!(Split::new(Breakdown::Area, 1).is_ok());
        assert!(Split::new(Breakdown::Area, SPLIT_TOP_MAX).is_ok());
        assert_eq!(Split::new(Breakdown::Area, 0), Err(TopOutOfRange));
        assert_eq!(Split::new(Breakdown::Area, SPLIT_TOP_MAX + 1), Err(TopOutOfRange));
        assert!(serde_json::from_str::<Split>(r#"{"by":"area","top":0}"#).is_err(), "read from JSON as built");
    }

    #[test]
    fn a_split_value_is_a_field_named_after_its_dimension() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Row {
            period: String,
            #[serde(flatten)]
            split: Option<SplitValue>,
        }
        let split = Row {
            period: "2026-03-02".into(),
            split: Some(SplitValue { by: Breakdown::Area, value: "E01000001".into() }),
        };
        let json = serde_json::to_value(&split).unwrap();
        assert_eq!(json, serde_json::json!({ "period": "2026-03-02", "area": "E01000001" }));
        assert_eq!(serde_json::from_value::<Row>(json).unwrap(), split);
        let unsplit = Row { period: "2026-03-02".into(), split: None };
        let json = serde_json::to_value(&unsplit).unwrap();
        assert_eq!(json, serde_json::json!({ "period": "2026-03-02" }));
        assert_eq!(serde_json::from_value::<Row>(json).unwrap(), unsplit);
    }

    #[test]
    fn every_role_reads_back_from_its_name() {
        for role in ParticipantRole::ALL {
            assert_eq!(ParticipantRole::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
            assert_eq!(ParticipantRole::ALL[role.index()], role);
        }
        assert_eq!(ParticipantRole::parse("organiser"), None);
    }
}
