//! The protocol between the query service and the projectors: each read is
//! a request type that names its endpoint, its answer and how that answer
//! travels, and how the answers of several partitions make one. A request
//! crosses as its JSON with `min_seq` beside its fields ([`Asked`]); an
//! answer as its JSON, or a read's own encoding; a refusal as a NATS
//! service error whose code says what kind of refusal it is ([`Refusal`]).
//!
//! Adding a read over the ledger means adding its request type here, with
//! its [`Read`] and [`LedgerRead`] implementations and a place in
//! [`ledger_reads!`](crate::ledger_reads), and a route in query; every
//! projector then serves it.

use bytes::Bytes;
use momentum_domain::ledger::Ledger;
use momentum_domain::query::{
    self, Cohorts, Comparison, MovementId, MovementList, Principles, ReadError, ReadSettings, Status, TotalsEncoding,
    Trend, TrendTotals, UnreadableTotals,
};
pub use momentum_domain::query::{CohortRequest, CompareRequest, PrinciplesRequest, StickinessRequest, TrendRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Which movements a read is about: the partitions that must answer it.
#[derive(Clone, Copy, Debug)]
pub enum Reach<'a> {
    /// One movement's: its partition answers.
    One(&'a MovementId),
    /// Several movements': each of their partitions answers for its own.
    Several(&'a [MovementId]),
    /// Every partition answers.
    All,
}

/// A read a projector answers.
pub trait Read: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The last token of the read's subject.
    const ENDPOINT: &'static str;
    /// What the projector answers.
    type Answer: Serialize + DeserializeOwned + Send + 'static;

    /// The movements the read is about.
    fn reach(&self) -> Reach<'_>;

    /// The stream sequence the read is as of, which the projection must
    /// cover before it answers, as with `min_seq`.
    fn as_of_seq(&self) -> Option<u64> {
        None
    }

    /// The answer as it crosses NATS: its JSON unless the read says otherwise.
    fn encode_answer(&self, answer: &Self::Answer) -> Result<Vec<u8>, ProtocolError> {
        Ok(serde_json::to_vec(answer)?)
    }

    /// An answer read back; what does not read is an error, never a guess.
    fn decode_answer(bytes: &[u8]) -> Result<Self::Answer, ProtocolError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The same read, asked of one partition for `movements`, the part of
    /// [`Read::reach`] that partition owns.
    fn for_movements(&self, movements: Vec<MovementId>) -> Self {
        let _ = movements;
        self.clone()
    }

    /// One answer made of the answers of every partition the read reached,
    /// in partition order. Reads of one movement reach one partition.
    fn merge(&self, answers: Vec<Self::Answer>) -> Result<Self::Answer, ProtocolError> {
        answers.into_iter().next().ok_or(ProtocolError::NoAnswer)
    }
}

/// A read as it crosses NATS: the read's own fields, and the stream
/// sequence the projection must have applied before it answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Asked<R> {
    /// The stream sequence the projection must cover before it answers; it waits up to its limit,
    /// then refuses. Absent, it answers at once.
    #[serde(default)]
    pub min_seq: Option<u64>,
    /// The read's own fields, side by side with `min_seq` in the JSON.
    #[serde(flatten)]
    pub read: R,
}

impl<R: Read> Asked<R> {
    /// The request's JSON, as it crosses NATS.
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a request always serialises"))
    }

    /// A request read back; an empty payload is a read without fields.
    pub fn decode(payload: &[u8]) -> Result<Asked<R>, Refusal> {
        let payload = if payload.is_empty() { b"{}".as_slice() } else { payload };
        serde_json::from_slice(payload).map_err(|error| Refusal::Invalid(error.to_string()))
    }
}

/// Why an answer could not be read or merged.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The answer is not the JSON of the read's answer.
    #[error("the answer is not the JSON of its read: {0}")]
    Json(#[from] serde_json::Error),
    /// The answer is trend totals that cannot be read.
    #[error(transparent)]
    Totals(#[from] UnreadableTotals),
    /// No partition answered, so there was nothing to merge.
    #[error("no partition answered")]
    NoAnswer,
}

/// Why a projector did not answer a read, carried as the NATS service
/// error's code and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is not one the projector can read (400).
    #[error("{0}")]
    Invalid(String),
    /// The movement has no events (404).
    #[error("{0}")]
    UnknownMovement(String),
    /// The answer would not fit in a NATS message (413).
    #[error("{0}")]
    TooLarge(String),
    /// Busy, or the projection has not reached `min_seq` in time (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500).
    #[error("{0}")]
    Failed(String),
}

impl Refusal {
    /// The NATS service error code that carries the refusal: the HTTP status it stands for.
    pub fn code(&self) -> u16 {
        match self {
            Refusal::Invalid(_) => 400,
            Refusal::UnknownMovement(_) => 404,
            Refusal::TooLarge(_) => 413,
            Refusal::Unavailable(_) => 503,
            Refusal::Failed(_) => 500,
        }
    }

    /// The refusal a service error's code and message stand for; a code other than 400, 404, 413
    /// and 503 is [`Refusal::Failed`].
    pub fn from_code(code: u16, message: String) -> Refusal {
        match code {
            400 => Refusal::Invalid(message),
            404 => Refusal::UnknownMovement(message),
            413 => Refusal::TooLarge(message),
            503 => Refusal::Unavailable(message),
            _ => Refusal::Failed(message),
        }
    }

    /// The refusal a reply carries in its service error headers, if any.
    pub fn of_reply(reply: &async_nats::Message) -> Option<Refusal> {
        let headers = reply.headers.as_ref()?;
        let code = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE)?.as_str().parse::<u16>().ok()?;
        let message = headers.get(async_nats::service::NATS_SERVICE_ERROR).map(|value| value.as_str().to_owned());
        Some(Refusal::from_code(code, message.unwrap_or_default()))
    }
}

impl From<Refusal> for async_nats::service::error::Error {
    fn from(refusal: Refusal) -> Self {
        async_nats::service::error::Error { code: usize::from(refusal.code()), status: refusal.to_string() }
    }
}

impl Read for TrendRequest {
    const ENDPOINT: &'static str = "trends";
    type Answer = Trend;

    fn reach(&self) -> Reach<'_> {
        Reach::One(&self.movement)
    }

    fn as_of_seq(&self) -> Option<u64> {
        self.filter.as_of_seq
    }

    fn encode_answer(&self, answer: &Trend) -> Result<Vec<u8>, ProtocolError> {
        Ok(answer.to_json())
    }
}

/// The period totals a trend is computed from: what the query service
/// asks for to serve a trend, in the encoding it names.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrendTotalsRequest {
    /// The trend whose period totals are asked for.
    #[serde(flatten)]
    pub trend: TrendRequest,
    /// How the answer is encoded; a projector that does not know the
    /// encoding asked for answers JSON, which every reader reads.
    #[serde(default)]
    pub totals_encoding: TotalsEncoding,
}

impl Read for TrendTotalsRequest {
    const ENDPOINT: &'static str = "trend_totals";
    type Answer = TrendTotals;

    fn reach(&self) -> Reach<'_> {
        Reach::One(&self.trend.movement)
    }

    fn as_of_seq(&self) -> Option<u64> {
        self.trend.filter.as_of_seq
    }

    fn encode_answer(&self, answer: &TrendTotals) -> Result<Vec<u8>, ProtocolError> {
        match self.totals_encoding {
            TotalsEncoding::Binary => Ok(answer.to_binary_without_basis()),
            TotalsEncoding::BinaryWithBasis => Ok(answer.to_binary()),
            TotalsEncoding::Json => Ok(serde_json::to_vec(answer)?),
        }
    }

    fn decode_answer(bytes: &[u8]) -> Result<TrendTotals, ProtocolError> {
        Ok(TrendTotals::from_answer(bytes)?)
    }
}

impl Read for CohortRequest {
    const ENDPOINT: &'static str = "cohorts";
    type Answer = Cohorts;

    fn reach(&self) -> Reach<'_> {
        Reach::One(&self.movement)
    }

    fn as_of_seq(&self) -> Option<u64> {
        self.filter.as_of_seq
    }
}

impl Read for PrinciplesRequest {
    const ENDPOINT: &'static str = "principles";
    type Answer = Principles;

    fn reach(&self) -> Reach<'_> {
        Reach::One(&self.movement)
    }

    fn as_of_seq(&self) -> Option<u64> {
        self.filter.as_of_seq
    }
}

impl Read for CompareRequest {
    const ENDPOINT: &'static str = "compare";
    type Answer = Comparison;

    fn reach(&self) -> Reach<'_> {
        Reach::Several(self.movements.as_slice())
    }

    fn as_of_seq(&self) -> Option<u64> {
        self.filter.as_of_seq
    }

    fn for_movements(&self, movements: Vec<MovementId>) -> CompareRequest {
        let movements = momentum_domain::query::ComparedMovements::new(movements)
            .expect("a partition's part of a comparison is a non-empty part of its movements");
        CompareRequest { movements, ..self.clone() }
    }

    /// The series of every partition, in the order the request named the
    /// movements, with the lowest watermark (every partition that answered
    /// has applied at least that much of the stream).
    fn merge(&self, answers: Vec<Comparison>) -> Result<Comparison, ProtocolError> {
        let mut answers = answers.into_iter();
        let mut merged = answers.next().ok_or(ProtocolError::NoAnswer)?;
        for comparison in answers {
            merged.watermark = merged.watermark.min(comparison.watermark);
            merged.series.extend(comparison.series);
        }
        let asked = self.movements.as_slice();
        merged.series.sort_by_key(|series| asked.iter().position(|movement| movement.as_str() == series.movement));
        Ok(merged)
    }
}

/// Every movement with at least one event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MovementsRequest {}

impl Read for MovementsRequest {
    const ENDPOINT: &'static str = "movements";
    type Answer = MovementList;

    fn reach(&self) -> Reach<'_> {
        Reach::All
    }

    /// Every partition's movements, in id order, with the lowest watermark.
    fn merge(&self, answers: Vec<MovementList>) -> Result<MovementList, ProtocolError> {
        let mut answers = answers.into_iter();
        let mut merged = answers.next().ok_or(ProtocolError::NoAnswer)?;
        for list in answers {
            merged.watermark = merged.watermark.min(list.watermark);
            merged.movements.extend(list.movements);
        }
        merged.movements.sort_by(|left, right| left.movement.cmp(&right.movement));
        Ok(merged)
    }
}

/// How far the projection has applied the stream.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatusRequest {}

impl Read for StatusRequest {
    const ENDPOINT: &'static str = "status";
    type Answer = Status;

    fn reach(&self) -> Reach<'_> {
        Reach::All
    }

    /// The lowest watermark, and every partition's messages read.
    fn merge(&self, answers: Vec<Status>) -> Result<Status, ProtocolError> {
        let mut answers = answers.into_iter();
        let mut merged = answers.next().ok_or(ProtocolError::NoAnswer)?;
        for status in answers {
            merged.watermark = merged.watermark.min(status.watermark);
            merged.applied_since_start += status.applied_since_start;
        }
        Ok(merged)
    }
}

impl Read for StickinessRequest {
    const ENDPOINT: &'static str = "stickiness";
    type Answer = query::Stickiness;

    fn reach(&self) -> Reach<'_> {
        Reach::One(&self.movement)
    }

    fn as_of_seq(&self) -> Option<u64> {
        self.filter.as_of_seq
    }
}

/// The last stream sequence stored by a moment, by the stream's own
/// timestamps: what a read `as_of` a time reads as of. Asked of the
/// partition of a movement the read is about; any partition can answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SequenceAtRequest {
    /// A movement of the read, whose partition answers.
    pub movement: MovementId,
    /// The moment.
    pub time: chrono::DateTime<chrono::Utc>,
}

/// The answer to a [`SequenceAtRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceAt {
    /// The last sequence the stream had stored by then; 0 before the first.
    pub seq: u64,
}

impl Read for SequenceAtRequest {
    const ENDPOINT: &'static str = "sequence_at";
    type Answer = SequenceAt;

    fn reach(&self) -> Reach<'_> {
        Reach::One(&self.movement)
    }
}

/// A page of a movement's events as the export gives them
/// ([`momentum_domain::export`]): those stored after `since_seq`, in stream
/// order. Answered by the movement's partition, from the stream, with what
/// its projection knows of retractions and erasures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventsRequest {
    /// The movement.
    pub movement: MovementId,
    /// Events stored after this stream sequence.
    pub since_seq: u64,
    /// No event stored after this sequence; the projection's watermark when
    /// it is not given or further.
    pub until_seq: Option<u64>,
    /// Only events of these types; of every type when empty.
    pub types: Vec<momentum_domain::event::EventType>,
    /// At most this many events.
    pub limit: u32,
    /// Retracted events too, marked with their retraction's sequence.
    pub include_retracted: bool,
}

/// The answer to an [`EventsRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub struct EventsPage {
    /// The events, each a CloudEvent with its `seq`.
    pub events: Vec<Box<serde_json::value::RawValue>>,
    /// The `since_seq` of the next page: the last sequence this page covered.
    pub next_seq: u64,
    /// Whether the page reached `until_seq` or the watermark: a next page
    /// holds only events stored since.
    pub complete: bool,
    /// The sequence the projection had applied when it read the page.
    pub watermark: u64,
}

impl Read for EventsRequest {
    const ENDPOINT: &'static str = "events";
    type Answer = EventsPage;

    fn reach(&self) -> Reach<'_> {
        Reach::One(&self.movement)
    }
}

/// The versions of some movements (the stream sequence of the last entry
/// folded into each) and a fingerprint of the projector's read settings:
/// while neither changes, neither does any answer about those movements.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionsRequest {
    /// The movements, each once.
    pub movements: Vec<MovementId>,
}

/// The answer to a [`VersionsRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// Each movement's version, 0 for one without events.
    pub versions: Vec<(MovementId, u64)>,
    /// What the projector's read settings are, in a few bytes of text.
    pub settings: String,
    /// The last stream sequence the versions include: a read asked with it
    /// as `min_seq` is at least as new as they are, whichever replica answers.
    pub watermark: u64,
}

impl Read for VersionsRequest {
    const ENDPOINT: &'static str = "versions";
    type Answer = Versions;

    fn reach(&self) -> Reach<'_> {
        Reach::Several(&self.movements)
    }

    fn for_movements(&self, movements: Vec<MovementId>) -> VersionsRequest {
        VersionsRequest { movements }
    }

    /// Every partition's versions, in the order the request named them.
    fn merge(&self, answers: Vec<Versions>) -> Result<Versions, ProtocolError> {
        let mut answers = answers.into_iter();
        let mut merged = answers.next().ok_or(ProtocolError::NoAnswer)?;
        for versions in answers {
            merged.versions.extend(versions.versions);
            merged.watermark = merged.watermark.max(versions.watermark);
        }
        merged.versions.sort_by_key(|(movement, _)| self.movements.iter().position(|asked| asked == movement));
        Ok(merged)
    }
}

impl LedgerRead for VersionsRequest {
    fn answer(&self, ledger: &Ledger, settings: &ReadSettings) -> Result<Versions, ReadError> {
        let versions = self.movements.iter().cloned().zip(query::versions(ledger, &self.movements)).collect();
        let hour = settings.volunteer_hour_value;
        let settings = format!("{}:{}", hour.basis.as_str(), hour.value_gbp);
        Ok(Versions { versions, settings, watermark: ledger.watermark() })
    }
}

/// What became of some events of one source, as its partner asks: in the
/// movements named, or in every movement when none is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventStatusRequest {
    /// The source the events were posted with.
    pub source: String,
    /// Their ids.
    pub ids: Vec<String>,
    /// The movements to look in; every movement when empty.
    pub movements: Vec<MovementId>,
}

/// One event's fate in one movement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStatus {
    /// The event's id.
    pub id: String,
    /// The movement it was posted to.
    pub movement: MovementId,
    /// What became of it.
    #[serde(flatten)]
    pub fate: momentum_domain::ledger::EventFate,
}

/// The answer to an [`EventStatusRequest`]: the events the projection
/// knows, in the order asked; an id it does not know is not among them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventStatuses {
    /// The known events.
    pub statuses: Vec<EventStatus>,
    /// The sequence the projection had applied (the least of the partitions').
    pub watermark: u64,
}

impl EventStatusRequest {
    /// In the order the ids were asked, then by movement.
    fn sort_as_asked(&self, statuses: &mut [EventStatus]) {
        let order = |id: &str| self.ids.iter().position(|asked| asked == id);
        statuses.sort_by(|one, other| (order(&one.id), &one.movement).cmp(&(order(&other.id), &other.movement)));
    }
}

impl Read for EventStatusRequest {
    const ENDPOINT: &'static str = "event_status";
    type Answer = EventStatuses;

    fn reach(&self) -> Reach<'_> {
        if self.movements.is_empty() { Reach::All } else { Reach::Several(&self.movements) }
    }

    fn for_movements(&self, movements: Vec<MovementId>) -> EventStatusRequest {
        EventStatusRequest { movements, ..self.clone() }
    }

    /// Every partition's statuses, in the order the ids were asked, then by movement.
    fn merge(&self, answers: Vec<EventStatuses>) -> Result<EventStatuses, ProtocolError> {
        let mut answers = answers.into_iter();
        let mut merged = answers.next().ok_or(ProtocolError::NoAnswer)?;
        for statuses in answers {
            merged.statuses.extend(statuses.statuses);
            merged.watermark = merged.watermark.min(statuses.watermark);
        }
        self.sort_as_asked(&mut merged.statuses);
        Ok(merged)
    }
}

impl LedgerRead for EventStatusRequest {
    fn answer(&self, ledger: &Ledger, _: &ReadSettings) -> Result<EventStatuses, ReadError> {
        let mut statuses = Vec::new();
        for (name, movement) in ledger.movements() {
            if !self.movements.is_empty() && !self.movements.iter().any(|asked| asked.as_str() == name) {
                continue;
            }
            for id in &self.ids {
                if let Some(fate) = movement.event_fate(&self.source, id) {
                    let movement = MovementId::parse(name).map_err(|error| ReadError::Invalid(error.to_string()))?;
                    statuses.push(EventStatus { id: id.clone(), movement, fate });
                }
            }
        }
        self.sort_as_asked(&mut statuses);
        Ok(EventStatuses { statuses, watermark: ledger.watermark() })
    }
}

/// A read the projector answers from its ledger alone: every projector
/// serves each one listed in [`ledger_reads!`](crate::ledger_reads).
pub trait LedgerRead: Read {
    /// The answer, computed from the ledger.
    fn answer(&self, ledger: &Ledger, settings: &ReadSettings) -> Result<Self::Answer, ReadError>;
}

impl LedgerRead for TrendRequest {
    fn answer(&self, ledger: &Ledger, settings: &ReadSettings) -> Result<Trend, ReadError> {
        query::trend(ledger, self, settings)
    }
}

impl LedgerRead for CohortRequest {
    fn answer(&self, ledger: &Ledger, _: &ReadSettings) -> Result<Cohorts, ReadError> {
        query::cohorts(ledger, self)
    }
}

impl LedgerRead for PrinciplesRequest {
    fn answer(&self, ledger: &Ledger, _: &ReadSettings) -> Result<Principles, ReadError> {
        query::principles(ledger, self)
    }
}

impl LedgerRead for CompareRequest {
    fn answer(&self, ledger: &Ledger, settings: &ReadSettings) -> Result<Comparison, ReadError> {
        query::compare(ledger, self, settings)
    }
}

impl LedgerRead for StickinessRequest {
    fn answer(&self, ledger: &Ledger, _: &ReadSettings) -> Result<query::Stickiness, ReadError> {
        query::stickiness(ledger, self)
    }
}

impl LedgerRead for MovementsRequest {
    fn answer(&self, ledger: &Ledger, _: &ReadSettings) -> Result<MovementList, ReadError> {
        Ok(query::movements(ledger))
    }
}

/// Calls `$callback!` with every [`LedgerRead`] type, so that a read added
/// to this list is served by every projector without another change there.
/// The projector serves [`TrendTotalsRequest`], [`StatusRequest`] and
/// [`SequenceAtRequest`] itself: the first has a faster path, the others
/// ask more than the ledger.
#[macro_export]
macro_rules! ledger_reads {
    ($callback:ident) => {
        $callback!(
            $crate::protocol::TrendRequest,
            $crate::protocol::CohortRequest,
            $crate::protocol::PrinciplesRequest,
            $crate::protocol::CompareRequest,
            $crate::protocol::StickinessRequest,
            $crate::protocol::VersionsRequest,
            $crate::protocol::MovementsRequest,
            $crate::protocol::EventStatusRequest
        )
    };
}

macro_rules! endpoints_with {
    ($($read:ty),*) => {
        &[$(<$read as Read>::ENDPOINT,)* TrendTotalsRequest::ENDPOINT, StatusRequest::ENDPOINT, SequenceAtRequest::ENDPOINT,
            EventsRequest::ENDPOINT]
    };
}

/// The subject name of every read, for the projector's service and its
/// permissions.
pub const ENDPOINTS: &[&str] = ledger_reads!(endpoints_with);

#[cfg(test)]
mod tests {
    use momentum_domain::query::{ComparedMovement, MovementSummary};

    use super::*;

    fn id(text: &str) -> MovementId {
        MovementId::parse(text).unwrap()
    }

    #[test]
    fn a_request_crosses_as_its_fields_and_min_seq_and_reads_back_checked() {
        let asked: Asked<MovementsRequest> = Asked::decode(b"").unwrap();
        assert_eq!(asked.min_seq, None);
        let bad = br#"{"movement":"Leeds Walks","interval":"week","from":"2026-03-02","to":"2026-03-02"}"#;
        assert!(matches!(Asked::<CohortRequest>::decode(bad), Err(Refusal::Invalid(_))));
        let text = br#"{"min_seq":7,"movement":"leeds","interval":"week","from":"2026-03-02","to":"2026-03-09"}"#;
        let asked: Asked<TrendTotalsRequest> = Asked::decode(text).unwrap();
        assert_eq!((asked.min_seq, asked.read.totals_encoding), (Some(7), TotalsEncoding::Json));
        let again: serde_json::Value = serde_json::from_slice(&asked.encode()).unwrap();
        assert_eq!(again["movement"], "leeds");
        assert_eq!(again["min_seq"], 7);
    }

    #[test]
    fn every_read_has_an_endpoint_of_its_own() {
        let mut names = ENDPOINTS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ENDPOINTS.len(), "{ENDPOINTS:?}");
    }

    #[test]
    fn every_refusal_reads_back_from_its_code() {
        for refusal in [
            Refusal::Invalid("a".into()),
            Refusal::UnknownMovement("b".into()),
            Refusal::TooLarge("c".into()),
            Refusal::Unavailable("d".into()),
            Refusal::Failed("e".into()),
        ] {
            assert_eq!(Refusal::from_code(refusal.code(), refusal.to_string()), refusal);
        }
    }

    #[test]
    fn merged_comparisons_keep_the_order_the_movements_were_asked_in() {
        let request: CompareRequest = serde_json::from_str(
            r#"{"movements":["b","a"],"metric":"volunteer_hours","interval":"week","from":"2026-03-02","to":"2026-03-02"}"#,
        )
        .unwrap();
        let part = |movement: &str, watermark: u64| Comparison {
            metric: request.metric,
            interval: request.periods.interval(),
            from: request.periods.from(),
            to: request.periods.to(),
            watermark,
            volunteer_hour_value_gbp: 11.27,
            volunteer_hour_value: momentum_domain::query::VolunteerHourValue::custom(11.27),
            series: vec![ComparedMovement { movement: movement.to_owned(), values: Vec::new() }],
            suppressed_below: None,
        };
        let merged = request.merge(vec![part("a", 5), part("b", 4)]).unwrap();
        let order: Vec<&str> = merged.series.iter().map(|series| series.movement.as_str()).collect();
        assert_eq!(order, ["b", "a"]);
        assert_eq!(merged.watermark, 4);
        assert_eq!(request.for_movements(vec![id("a")]).movements.as_slice(), [id("a")]);
    }

    #[test]
    fn merged_listings_are_in_id_order_with_the_lowest_watermark_and_summed_counts() {
        let summary = |movement: &str, events| MovementSummary { movement: movement.to_owned(), events };
        let merged = MovementsRequest {}
            .merge(vec![
                MovementList { watermark: 9, movements: vec![summary("c", 1), summary("e", 2)] },
                MovementList { watermark: 7, movements: vec![summary("a", 3)] },
            ])
            .unwrap();
        assert_eq!(merged.watermark, 7);
        let names: Vec<&str> = merged.movements.iter().map(|summary| summary.movement.as_str()).collect();
        assert_eq!(names, ["a", "c", "e"]);
        let merged = StatusRequest {}
            .merge(vec![
                Status { watermark: 12, applied_since_start: 5 },
                Status { watermark: 10, applied_since_start: 4 },
            ])
            .unwrap();
        assert_eq!(merged, Status { watermark: 10, applied_since_start: 9 });
    }

    #[test]
    fn an_answer_that_is_not_its_json_is_an_error() {
        assert!(MovementsRequest::decode_answer(b"not json").is_err());
        assert!(matches!(MovementsRequest {}.merge(Vec::new()), Err(ProtocolError::NoAnswer)));
    }
}
