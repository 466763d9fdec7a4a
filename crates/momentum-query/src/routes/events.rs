//! `GET /v1/movements/{movement}/events`: the movement's effective events,
//! as stored, in stream order, a response at a time: NDJSON (one CloudEvent
//! per line), or a table as CSV or Parquet (one row per event, or one per
//! person per event; the tables are `momentum_tables::events`').
//! Which events, and how erased people are made unlinkable, is
//! `momentum_domain::export`'s; the projector reads them from the stream.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use momentum_bus::protocol::{Asked, EventsPage, EventsRequest};
use momentum_domain::event::EventType;
use momentum_domain::query::MovementId;
use momentum_runtime::auth::Caller;
use momentum_runtime::{MovementPath, Parameters, Problem, problem_responses};
use momentum_tables::Table;
use momentum_tables::events::{event_columns, event_row, participation_columns, participation_rows};

use super::answer::{self, ReadForbidden, ReadUnavailable, UnknownMovement, WATERMARK_HEADER};
use super::parameters::{examples, sequence};
use crate::AppState;
use crate::tables::{FileFormat, accepted_file_format};

/// The events of a response when `limit` is not given.
pub(crate) const EVENTS_PER_RESPONSE_DEFAULT: u32 = 1_000;
/// The most events one response holds.
pub(crate) const EVENTS_PER_RESPONSE_MAX: u32 = 10_000;
/// The most events one projector answer holds: fewer when they would not
/// fit in one NATS message, which the projector sees to.
const EVENTS_PER_PAGE_MAX: u32 = 1_000;
/// The header that gives the `since_seq` of the next response.
pub(crate) const NEXT_SEQ_HEADER: &str = "momentum-next-seq";
/// The header that says whether the response reached `until_seq` or the
/// projection's watermark.
pub(crate) const COMPLETE_HEADER: &str = "momentum-complete";

/// The parameters of an events read.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsParameters {
    /// Events stored after this stream sequence (default 0: from the first): the `Momentum-Next-Seq` of the
    /// response before, to go on where it ended.
    #[param(value_type = Option<crate::openapi::SequenceNumber>)]
    since_seq: Option<String>,
    /// No event stored after this sequence (default: as far as the projection has applied the stream); before
    /// `since_seq`, the answer is empty.
    #[param(value_type = Option<crate::openapi::SequenceNumber>)]
    until_seq: Option<String>,
    /// Only these event types, comma-separated (`meeting.held,volunteer.hours_logged`); default every type.
    #[param(value_type = Option<String>, pattern = "^(participant\\.joined|meeting\\.held|volunteer\\.hours_logged|collective_action\\.taken)(,(participant\\.joined|meeting\\.held|volunteer\\.hours_logged|collective_action\\.taken))*$")]
    types: Option<String>,
    /// At most this many events in the response (default 1000, at most 10000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
    /// `retracted`: retracted events too, each with `retracted` set to its retraction's sequence (the first
    /// retraction's); an event that arrived after its retraction never counted and is not among them.
    #[param(value_type = Option<String>, pattern = "^retracted$")]
    include: Option<String>,
    /// `ndjson` (default; one CloudEvent a line), `csv` or `parquet` (one row per event), `csv-participation` or
    /// `parquet-participation` (one row per person per event); without it, `Accept: text/csv` asks for `csv` and
    /// `Accept: application/vnd.apache.parquet` for `parquet`.
    #[param(value_type = Option<String>, pattern = "^(ndjson|csv|csv-participation|parquet|parquet-participation)$")]
    format: Option<String>,
    /// Wait (at most the projector's `MOMENTUM_QUERY_WAIT_MS_MAX`) until the projection includes this sequence.
    #[param(value_type = Option<crate::openapi::SequenceNumber>)]
    min_seq: Option<String>,
}

/// How the events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventsFormat {
    Ndjson,
    Table(FileFormat, EventsTable),
}

/// Which table of the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventsTable {
    /// One row per event.
    Events,
    /// One row per person per event.
    Participation,
}

/// An events read, checked.
#[derive(Debug)]
struct EventsRead {
    movement: MovementId,
    since_seq: u64,
    until_seq: Option<u64>,
    types: Vec<EventType>,
    limit: u32,
    include_retracted: bool,
    format: EventsFormat,
    min_seq: Option<u64>,
}

impl EventsRead {
    fn new(movement: MovementId, parameters: &EventsParameters, headers: &HeaderMap) -> Result<EventsRead, Problem> {
        let since_seq = sequence(parameters.since_seq.as_deref(), "since_seq")?.unwrap_or(0);
        let until_seq = sequence(parameters.until_seq.as_deref(), "until_seq")?;
        let mut types = Vec::new();
        // Retractions are never exported: they are not among the types.
        let exported = || EventType::ALL.into_iter().filter(|kind| *kind != EventType::EventRetracted);
        for name in parameters.types.as_deref().map(|list| list.split(',')).into_iter().flatten() {
            let kind = exported().find(|kind| kind.as_str() == name.trim()).ok_or_else(|| {
                let known: Vec<&str> = exported().map(EventType::as_str).collect();
                Problem::bad_parameter("types", format!("{name:?} is not one of {}", known.join(", ")))
            })?;
            if !types.contains(&kind) {
                types.push(kind);
            }
        }
        let limit = match parameters.limit.as_deref() {
            None => EVENTS_PER_RESPONSE_DEFAULT,
            Some(text) => {
                text.parse::<u32>().ok().filter(|limit| (1..=EVENTS_PER_RESPONSE_MAX).contains(limit)).ok_or_else(
                    || {
                        Problem::bad_parameter(
                            "limit",
                            format!("must be a whole number from 1 to {EVENTS_PER_RESPONSE_MAX}"),
                        )
                    },
                )?
            }
        };
        let include_retracted = match parameters.include.as_deref() {
            None => false,
            Some("retracted") => true,
            Some(other) => return Err(Problem::bad_parameter("include", format!("must be retracted, got {other:?}"))),
        };
        let format = match parameters.format.as_deref() {
            Some("ndjson") => EventsFormat::Ndjson,
            Some("csv") => EventsFormat::Table(FileFormat::Csv, EventsTable::Events),
            Some("csv-participation") => EventsFormat::Table(FileFormat::Csv, EventsTable::Participation),
            Some("parquet") => EventsFormat::Table(FileFormat::Parquet, EventsTable::Events),
            Some("parquet-participation") => EventsFormat::Table(FileFormat::Parquet, EventsTable::Participation),
            Some(other) => {
                return Err(Problem::bad_parameter(
                    "format",
                    format!("must be ndjson, csv, csv-participation, parquet or parquet-participation, got {other:?}"),
                ));
            }
            None => match accepted_file_format(headers) {
                Some(file) => EventsFormat::Table(file, EventsTable::Events),
                None => EventsFormat::Ndjson,
            },
        };
        let min_seq = sequence(parameters.min_seq.as_deref(), "min_seq")?;
        Ok(EventsRead { movement, since_seq, until_seq, types, limit, include_retracted, format, min_seq })
    }
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/events", tag = "reads",
    summary = "A movement's events, as stored, for analysts",
    description = "The movement's effective events in stream order: each event that counts, once, as stored (refs \
        pseudonymised), with its stream sequence as `seq`. Repeats, retractions and erasures are left out; \
        retracted events only with `include=retracted`. An erased participant's ref reads `erased` in every event \
        they were in. A response holds at most `limit` events (fewer when they are large); `Momentum-Next-Seq` is \
        the `since_seq` of the next, and `Momentum-Complete: true` says there is nothing after it yet. Only as far \
        as the projection has applied the stream (`Momentum-Watermark`).",
    params(super::MovementParameter, EventsParameters),
    responses(
        (status = 200, description = "The events.", headers(
            ("Momentum-Next-Seq" = u64, description = "The `since_seq` to ask the next response with."),
            ("Momentum-Complete" = bool, description = "Whether the response reached `until_seq` or the watermark."),
            ("Momentum-Watermark" = u64, description = "The last stream sequence the projection had applied.")),
            content(
            (String = "application/x-ndjson", example = "{\"specversion\":\"1.0\",\"id\":\"hours-0001\",\"source\":\"urn:partner:me\",\"type\":\"volunteer.hours_logged\",\"subject\":\"bristol-befriending\",\"time\":\"2026-03-05T09:00:00+00:00\",\"data\":{\"participant\":\"ps-3f9a…\",\"hours\":2.0},\"seq\":17}\n"),
            (String = "text/csv", example = "seq,id,source,type,time,date,retracted,participant,attendees,participants,organisers,organiser_roles,hours,reach,role,area,kind,activity,channel,partners,principles,duration_minutes\n17,hours-0001,urn:partner:me,volunteer.hours_logged,2026-03-05T09:00:00Z,2026-03-05,,ps-3f9a,,,,,2.0,,,,,,,,,\n"),
            (crate::openapi::ParquetFile = "application/vnd.apache.parquet"),
        )),
        (status = 400, response = inline(EventsBadRequest)),
        (status = 403, response = inline(ReadForbidden)),
        (status = 404, response = inline(UnknownMovement)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    MovementPath(movement): MovementPath,
    Parameters(parameters): Parameters<EventsParameters>,
) -> Response {
    let read =
        match caller.require_read(movement.as_str()).and_then(|()| EventsRead::new(movement, &parameters, &headers)) {
            Ok(read) => read,
            Err(problem) => return problem.into_response(),
        };
    let mut events = Vec::new();
    let mut since_seq = read.since_seq;
    // Pages of few exported events (repeats, retractions) could take more
    // than a request may: past half the query timeout, the response ends
    // where it got to, and the client goes on from its Momentum-Next-Seq.
    let started = tokio::time::Instant::now();
    let (complete, watermark) = loop {
        let remaining = read.limit - events.len() as u32;
        let page = EventsRequest {
            movement: read.movement.clone(),
            since_seq,
            until_seq: read.until_seq,
            types: read.types.clone(),
            limit: remaining.min(EVENTS_PER_PAGE_MAX),
            include_retracted: read.include_retracted,
        };
        let page: EventsPage = match answer::ask(&state, Asked { min_seq: read.min_seq, read: page }).await {
            Ok(page) => page,
            Err(response) => return response,
        };
        since_seq = page.next_seq;
        events.extend(page.events);
        if page.complete || events.len() as u32 >= read.limit || started.elapsed() > state.query_timeout / 2 {
            break (page.complete, page.watermark);
        }
    };
    let (content_type, body) = match read.format {
        EventsFormat::Ndjson => {
            let mut body = String::new();
            for event in &events {
                body.push_str(event.get());
                body.push('\n');
            }
            ("application/x-ndjson", body.into_bytes())
        }
        EventsFormat::Table(file, which) => match events_table(&events, which, file, state.time_zone, watermark) {
            Ok(body) => (file.media_type(), body),
            Err(error) => {
                tracing::error!(%error, "an events table could not be written");
                return Problem::internal().into_response();
            }
        },
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(NEXT_SEQ_HEADER, HeaderValue::from(since_seq));
    headers.insert(COMPLETE_HEADER, HeaderValue::from_static(if complete { "true" } else { "false" }));
    headers.insert(WATERMARK_HEADER, HeaderValue::from(watermark));
    if let EventsFormat::Table(file, which) = read.format {
        let table = match which {
            EventsTable::Events => "events",
            EventsTable::Participation => "participation",
        };
        let name = format!(
            "attachment; filename=\"{}-{table}-{}-{since_seq}.{}\"",
            read.movement.as_str(),
            read.since_seq,
            file.extension()
        );
        if let Ok(value) = HeaderValue::from_str(&name) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    response
}

/// The events as one of their tables, written as `file`.
fn events_table(
    events: &[Box<serde_json::value::RawValue>],
    which: EventsTable,
    file: FileFormat,
    time_zone: chrono_tz::Tz,
    watermark: u64,
) -> Result<Vec<u8>, momentum_tables::WriteError> {
    let mut table = Table::new(match which {
        EventsTable::Events => event_columns(),
        EventsTable::Participation => participation_columns(),
    });
    for event in events {
        let event: serde_json::Value = serde_json::from_str(event.get()).expect("the projector sends JSON");
        match which {
            EventsTable::Events => table.push(event_row(event, time_zone)),
            EventsTable::Participation => {
                participation_rows(&event, time_zone).into_iter().for_each(|row| table.push(row))
            }
        }
    }
    momentum_tables::write(table, file, watermark)
}

problem_responses! {
    EventsBadRequest => ("A parameter is not valid, or not one the route takes.", [
        examples::bad_movement("movement"),
        Problem::bad_parameter("limit", format!("must be a whole number from 1 to {EVENTS_PER_RESPONSE_MAX}")),
        Problem::bad_parameter("types", "\"meeting\" is not one of participant.joined, meeting.held, volunteer.hours_logged, collective_action.taken"),
        examples::bad_min_seq(),
    ]);
}
