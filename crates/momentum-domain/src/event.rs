//! The event contract: CloudEvents 1.0 envelopes whose `data` depends on
//! the `type`. The JSON Schemas under `schemas/` are the definition; these
//! types are how Rust reads an event after it has passed them.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// The kinds of event momentum accepts, named in the past tense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// `participant.joined`: someone signed up to the movement; a sign-up, not participation.
    #[serde(rename = "participant.joined")]
    ParticipantJoined,
    /// `meeting.held`: a meeting took place.
    #[serde(rename = "meeting.held")]
    MeetingHeld,
    /// `volunteer.hours_logged`: a participant gave time as a volunteer.
    #[serde(rename = "volunteer.hours_logged")]
    VolunteerHoursLogged,
    /// `collective_action.taken`: people acted together, such as in a campaign, a clean-up or a
    /// petition.
    #[serde(rename = "collective_action.taken")]
    CollectiveActionTaken,
    /// `event.retracted`: an earlier event of the same `source` and `subject` is withdrawn.
    #[serde(rename = "event.retracted")]
    EventRetracted,
    /// Written only by ingest's erasure endpoint, never posted by partners,
    /// so it is not in [`EventType::ALL`] and has no partner schema.
    #[serde(rename = "participant.erased")]
    ParticipantErased,
}

impl EventType {
    /// The types partners post.
    pub const ALL: [EventType; 5] = [
        EventType::ParticipantJoined,
        EventType::MeetingHeld,
        EventType::VolunteerHoursLogged,
        EventType::CollectiveActionTaken,
        EventType::EventRetracted,
    ];

    /// The CloudEvents `type` attribute, which is also the schema's file stem.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ParticipantJoined => "participant.joined",
            EventType::MeetingHeld => "meeting.held",
            EventType::VolunteerHoursLogged => "volunteer.hours_logged",
            EventType::CollectiveActionTaken => "collective_action.taken",
            EventType::EventRetracted => "event.retracted",
            EventType::ParticipantErased => "participant.erased",
        }
    }

    /// The type a CloudEvents `type` names, among the types partners post ([`EventType::ALL`]);
    /// `None` for any other text.
    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// The role a participant has in the movement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A member of the public; an organiser in this role makes a meeting or an action citizen-led.
    Citizen,
    /// Someone taking part in a professional capacity.
    Professional,
    /// A member of staff of a partner organisation.
    PartnerStaff,
}

/// Someone who organised a meeting or an action, and in which role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organiser {
    /// The organiser's participant ref: as the partner posted it, a pseudonym once ingest has
    /// stored the event.
    pub participant: String,
    /// The role they organised in.
    pub role: Role,
}

/// A validated event as it is kept in the event store.
///
/// Field names and layout are the CloudEvents structured JSON form, so the
/// stored payload is still a CloudEvent any tool can read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// The CloudEvents spec version; always `1.0`.
    pub specversion: String,
    /// The event's id, unique per `source` (1 to 128 characters); a repeat of a (`source`, `id`) is
    /// the same event.
    pub id: String,
    /// The partner system that wrote the event, as a URI-reference.
    pub source: String,
    /// The event's `type`, which says what `data` holds.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The movement id.
    pub subject: String,
    /// When it happened, with the offset it was given in; its local date decides the period it
    /// counts in.
    pub time: DateTime<FixedOffset>,
    /// What happened, in the form its `type` prescribes.
    pub data: EventData,
}

impl Event {
    /// Reads an event from its stored JSON form, using `type` to read `data`.
    pub fn from_json(bytes: &[u8]) -> Result<Event, serde_json::Error> {
        let raw: RawEvent = serde_json::from_slice(bytes)?;
        let data = EventData::from_raw(raw.kind, raw.data)?;
        Ok(Event {
            specversion: raw.specversion,
            id: raw.id,
            source: raw.source,
            kind: raw.kind,
            subject: raw.subject,
            time: raw.time,
            data,
        })
    }

    /// The stored JSON form: the CloudEvents structured form, which [`Event::from_json`] reads
    /// back.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serialises")
    }

    /// The distinct participant refs that took part through this event.
    ///
    /// `participant.joined` is a sign-up, not participation, and a retraction
    /// is nobody's participation, so both give none.
    pub fn participants(&self) -> Vec<&str> {
        let mut refs: Vec<&str> = match &self.data {
            EventData::MeetingHeld(data) => data
                .attendees
                .iter()
                .map(String::as_str)
                .chain(data.organisers.iter().map(|o| o.participant.as_str()))
                .collect(),
            EventData::VolunteerHoursLogged(data) => vec![data.participant.as_str()],
            EventData::CollectiveActionTaken(data) => data
                .participants
                .iter()
                .map(String::as_str)
                .chain(data.organisers.iter().map(|o| o.participant.as_str()))
                .collect(),
            EventData::ParticipantJoined(_) | EventData::EventRetracted(_) | EventData::ParticipantErased(_) => {
                Vec::new()
            }
        };
        refs.sort_unstable();
        refs.dedup();
        refs
    }
}

/// Whether `text` is a movement id: 1 to 63 lower-case letters, digits and
/// hyphens, starting with a letter or digit. The envelope schema says the
/// same for `subject`; this is for ids that arrive elsewhere, such as URLs.
/// Such ids are safe as one token of a NATS subject.
pub fn is_movement_id(text: &str) -> bool {
    let mut characters = text.chars();
    characters.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text.len() <= 63
        && characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Calls `rewrite` on every participant ref in the `data` of an event of
/// type `kind`, as posted: attendees, action participants, organisers and
/// the participant of a sign-up or an hour log. Ingest pseudonymises refs
/// through this, so it is the one list of where personal refs sit.
pub fn rewrite_participant_refs(kind: EventType, data: &mut serde_json::Value, mut rewrite: impl FnMut(&mut String)) {
    let mut rewrite_text = |value: &mut serde_json::Value| {
        if let serde_json::Value::String(text) = value {
            rewrite(text);
        }
    };
    let rewrite_list = |value: Option<&mut serde_json::Value>, rewrite_text: &mut dyn FnMut(&mut serde_json::Value)| {
        if let Some(serde_json::Value::Array(items)) = value {
            items.iter_mut().for_each(rewrite_text);
        }
    };
    match kind {
        EventType::ParticipantJoined | EventType::VolunteerHoursLogged => {
            if let Some(participant) = data.get_mut("participant") {
                rewrite_text(participant);
            }
        }
        EventType::MeetingHeld | EventType::CollectiveActionTaken => {
            let list = if kind == EventType::MeetingHeld { "attendees" } else { "participants" };
            rewrite_list(data.get_mut(list), &mut rewrite_text);
            if let Some(serde_json::Value::Array(organisers)) = data.get_mut("organisers") {
                for organiser in organisers {
                    if let Some(participant) = organiser.get_mut("participant") {
                        rewrite_text(participant);
                    }
                }
            }
        }
        EventType::EventRetracted | EventType::ParticipantErased => {}
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    kind: EventType,
    subject: String,
    time: DateTime<FixedOffset>,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// The `data` of each event type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    /// The `data` of a `participant.joined`.
    ParticipantJoined(ParticipantJoined),
    /// The `data` of a `meeting.held`.
    MeetingHeld(MeetingHeld),
    /// The `data` of a `volunteer.hours_logged`.
    VolunteerHoursLogged(VolunteerHoursLogged),
    /// The `data` of a `collective_action.taken`.
    CollectiveActionTaken(CollectiveActionTaken),
    /// The `data` of an `event.retracted`.
    EventRetracted(EventRetracted),
    /// The `data` of a `participant.erased`, which only ingest's erasure endpoint writes.
    ParticipantErased(ParticipantErased),
}

impl EventData {
    /// Reads `data` of an event of type `kind` from its JSON text (the
    /// projector's way: no `Value` tree is built first).
    pub fn from_raw(kind: EventType, data: &serde_json::value::RawValue) -> serde_json::Result<EventData> {
        EventData::deserialize(kind, &mut serde_json::Deserializer::from_str(data.get()))
    }

    /// Reads `data` of an event of type `kind` from a parsed value (the
    /// validator's way, which has checked it against the schema).
    pub fn from_value(kind: EventType, value: serde_json::Value) -> serde_json::Result<EventData> {
        EventData::deserialize(kind, value)
    }

    fn deserialize<'de, D: serde::Deserializer<'de>>(kind: EventType, data: D) -> Result<EventData, D::Error> {
        Ok(match kind {
            EventType::ParticipantJoined => EventData::ParticipantJoined(Deserialize::deserialize(data)?),
            EventType::MeetingHeld => EventData::MeetingHeld(Deserialize::deserialize(data)?),
            EventType::VolunteerHoursLogged => EventData::VolunteerHoursLogged(Deserialize::deserialize(data)?),
            EventType::CollectiveActionTaken => EventData::CollectiveActionTaken(Deserialize::deserialize(data)?),
            EventType::EventRetracted => EventData::EventRetracted(Deserialize::deserialize(data)?),
            EventType::ParticipantErased => EventData::ParticipantErased(Deserialize::deserialize(data)?),
        })
    }
}

/// The `data` of `participant.joined`: someone signed up to the movement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantJoined {
    /// The participant's ref: as the partner posted it, a pseudonym once ingest has stored the
    /// event.
    pub participant: String,
    /// The role they signed up in.
    pub role: Role,
    /// A place name or area code (1 to 64 characters), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// A short free-text label of the channel they joined through (1 to 64 characters), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// The `data` of `meeting.held`: a meeting took place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingHeld {
    /// The attendees' participant refs (at most 1 000): as the partner posted them, pseudonyms once
    /// ingest has stored the event.
    pub attendees: Vec<String>,
    /// Who organised the meeting, each with their role (at most 100).
    pub organisers: Vec<Organiser>,
    /// The org ids of partner organisations involved (at most 100); empty when none is named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<String>,
    /// Where the meeting was: a place name or area code (1 to 64 characters), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// A short free-text label of the kind of meeting (1 to 64 characters), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The names of the principles the meeting is tagged with (at most the eight, each once); empty
    /// when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principles: Vec<String>,
    /// How long the meeting lasted, in minutes (1 to 1 440), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u32>,
}

/// The `data` of `volunteer.hours_logged`: a participant gave time as a volunteer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolunteerHoursLogged {
    /// The volunteer's participant ref: as the partner posted it, a pseudonym once ingest has
    /// stored the event.
    pub participant: String,
    /// The hours given, more than 0 and at most 24; figures count them to the nearest thousandth of
    /// an hour.
    pub hours: f64,
    /// A short free-text label of what they did (1 to 64 characters), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// Where they volunteered: a place name or area code (1 to 64 characters), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// The names of the principles the hours are tagged with (at most the eight, each once); empty
    /// when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principles: Vec<String>,
}

/// The `data` of `collective_action.taken`: people acted together, such as in a campaign, a
/// clean-up or a petition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectiveActionTaken {
    /// The participant refs of the people who took part (at most 1 000): as the partner posted
    /// them, pseudonyms once ingest has stored the event.
    pub participants: Vec<String>,
    /// Who organised the action, each with their role (at most 100).
    pub organisers: Vec<Organiser>,
    /// How many people the action reached, as the partner reports it (0 to 100 000 000).
    pub reach: u64,
    /// A short free-text label of the kind of action (1 to 64 characters), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The org ids of partner organisations involved (at most 100); empty when none is named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<String>,
    /// Where the action took place: a place name or area code (1 to 64 characters), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// The names of the principles the action is tagged with (at most the eight, each once); empty
    /// when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principles: Vec<String>,
}

/// The `data` of `event.retracted`: an earlier event of the same `source` and `subject` is
/// withdrawn, whether it arrived before or after the retraction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRetracted {
    /// The `id` of the event withdrawn.
    pub event_id: String,
    /// Why it was withdrawn, in words (at most 500 characters), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An admin erased one participant of a movement: the fold removes the
/// records it keeps per participant for these pseudonyms (one per key
/// version the participant was seen under) and ignores them from then on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantErased {
    /// The participant's pseudonyms in the movement, one per key version they were seen under.
    pub pseudonyms: Vec<String>,
}

/// The eight principles of NHS England's Health as a Social Movement programme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Principle {
    /// Mobilise citizens (`mobilise_citizens`).
    MobiliseCitizens,
    /// Shift control (`shift_control`).
    ShiftControl,
    /// Collaborate widely (`collaborate_widely`).
    CollaborateWidely,
    /// Share power (`share_power`).
    SharePower,
    /// Change culture (`change_culture`).
    ChangeCulture,
    /// Grow from local (`grow_from_local`).
    GrowFromLocal,
    /// Build momentum (`build_momentum`).
    BuildMomentum,
    /// Bring people together (`bring_people_together`).
    BringPeopleTogether,
}

impl Principle {
    /// The eight principles, in the order answers list them; a principle's place here is its bit in
    /// a ledger fact.
    pub const ALL: [Principle; 8] = [
        Principle::MobiliseCitizens,
        Principle::ShiftControl,
        Principle::CollaborateWidely,
        Principle::SharePower,
        Principle::ChangeCulture,
        Principle::GrowFromLocal,
        Principle::BuildMomentum,
        Principle::BringPeopleTogether,
    ];

    /// The principle's name in events and answers, such as `mobilise_citizens`.
    pub fn as_str(self) -> &'static str {
        match self {
            Principle::MobiliseCitizens => "mobilise_citizens",
            Principle::ShiftControl => "shift_control",
            Principle::CollaborateWidely => "collaborate_widely",
            Principle::SharePower => "share_power",
            Principle::ChangeCulture => "change_culture",
            Principle::GrowFromLocal => "grow_from_local",
            Principle::BuildMomentum => "build_momentum",
            Principle::BringPeopleTogether => "bring_people_together",
        }
    }

    /// The principle a name stands for; `None` for any other text.
    pub fn parse(text: &str) -> Option<Principle> {
        Principle::ALL.into_iter().find(|principle| principle.as_str() == text)
    }
}

impl Event {
    /// The distinct principles the event is tagged with: meetings, actions
    /// and hour logs can carry them; other events have none.
    pub fn principles(&self) -> Vec<Principle> {
        let tags: &[String] = match &self.data {
            EventData::MeetingHeld(data) => &data.principles,
            EventData::VolunteerHoursLogged(data) => &data.principles,
            EventData::CollectiveActionTaken(data) => &data.principles,
            EventData::ParticipantJoined(_) | EventData::EventRetracted(_) | EventData::ParticipantErased(_) => &[],
        };
        let mut principles: Vec<Principle> = tags.iter().filter_map(|tag| Principle::parse(tag)).collect();
        principles.sort_unstable();
        principles.dedup();
        principles
    }

    /// The distinct organiser refs of a meeting or an action, and whether
    /// any of them organised as a citizen.
    pub fn organisers(&self) -> (Vec<&str>, bool) {
        let organisers: &[Organiser] = match &self.data {
            EventData::MeetingHeld(data) => &data.organisers,
            EventData::CollectiveActionTaken(data) => &data.organisers,
            _ => &[],
        };
        let citizen_led = organisers.iter().any(|organiser| organiser.role == Role::Citizen);
        let mut refs: Vec<&str> = organisers.iter().map(|organiser| organiser.participant.as_str()).collect();
        refs.sort_unstable();
        refs.dedup();
        (refs, citizen_led)
    }

    /// The distinct partner organisations named by a meeting or an action.
    pub fn partners(&self) -> Vec<&str> {
        let partners: &[String] = match &self.data {
            EventData::MeetingHeld(data) => &data.partners,
            EventData::CollectiveActionTaken(data) => &data.partners,
            _ => &[],
        };
        let mut partners: Vec<&str> = partners.iter().map(String::as_str).collect();
        partners.sort_unstable();
        partners.dedup();
        partners
    }

    /// The event's `area`, if it names one.
    pub fn area(&self) -> Option<&str> {
        match &self.data {
            EventData::ParticipantJoined(data) => data.area.as_deref(),
            EventData::MeetingHeld(data) => data.area.as_deref(),
            EventData::VolunteerHoursLogged(data) => data.area.as_deref(),
            EventData::CollectiveActionTaken(data) => data.area.as_deref(),
            EventData::EventRetracted(_) | EventData::ParticipantErased(_) => None,
        }
    }
}
