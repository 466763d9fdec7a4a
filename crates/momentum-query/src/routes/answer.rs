//! Asking the projection service for a read and answering the client:
//! fitting the answer to the caller (listings hold only the movements they
//! may read, evaluators' figures have small numbers suppressed) and writing
//! it as JSON, CSV or Parquet.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use momentum_bus::protocol::{
    Asked, MovementsRequest, Read, Refusal, SequenceAtRequest, StatusRequest, TrendTotalsRequest, Versions,
    VersionsRequest,
};
use momentum_domain::query::{
    self, CohortRequest, CompareRequest, PrinciplesRequest, ReadError, TotalsEncoding, TrendRequest, TrendTotals,
    suppression,
};
use momentum_runtime::auth::{Caller, Movements, TokenRole};
use momentum_runtime::{Problem, problem_responses};
use serde::Serialize;

use super::parameters::Reading;
use crate::AppState;
use crate::tables::{Format, TableAnswer, to_table};

/// Answers a read: the problem that stopped it, or what `read` answers for
/// its request, as JSON, CSV or Parquet.
pub(crate) async fn read<A: TableAnswer, R, Answered>(
    asked: Result<(R, Reading), Problem>,
    read: impl FnOnce(R, Option<u64>) -> Answered,
) -> Response
where
    Answered: std::future::Future<Output = Result<Bytes, Response>>,
{
    match asked {
        Ok((request, reading)) => respond::<A>(reading, read(request, reading.min_seq).await),
        Err(problem) => problem.into_response(),
    }
}

/// The header a CSV or Parquet answer carries its watermark in (a JSON
/// answer holds it in its body).
pub(crate) const WATERMARK_HEADER: &str = "momentum-watermark";

/// A read whose answer a client may keep: it depends only on the request,
/// the caller's suppression and format, and the versions of its movements.
pub(crate) trait CachedRead: Serialize {
    /// The movements the answer is about.
    fn movements(&self) -> &[momentum_domain::query::MovementId];
}

impl CachedRead for CompareRequest {
    fn movements(&self) -> &[momentum_domain::query::MovementId] {
        self.movements.as_slice()
    }
}

macro_rules! cached_reads {
    ($($read:ty),*) => {$(
        impl CachedRead for $read {
            fn movements(&self) -> &[momentum_domain::query::MovementId] {
                std::slice::from_ref(&self.movement)
            }
        }
    )*};
}

cached_reads!(TrendRequest, CohortRequest, PrinciplesRequest, momentum_domain::query::StickinessRequest);

/// A read of a movement's figures, which may be asked as of a time.
pub(crate) trait FiguresRead {
    /// A movement the read is about: its partition finds the sequence at a time.
    fn movement(&self) -> &momentum_domain::query::MovementId;
    /// The read's filter, where the sequence it is as of goes.
    fn filter_mut(&mut self) -> &mut momentum_domain::selection::Filter;
}

macro_rules! figures_reads {
    ($($read:ty => |$request:ident| $movement:expr;)*) => {$(
        impl FiguresRead for $read {
            fn movement(&self) -> &momentum_domain::query::MovementId {
                let $request = self;
                $movement
            }

            fn filter_mut(&mut self) -> &mut momentum_domain::selection::Filter {
                &mut self.filter
            }
        }
    )*};
}

figures_reads! {
    TrendRequest => |request| &request.movement;
    CohortRequest => |request| &request.movement;
    PrinciplesRequest => |request| &request.movement;
    momentum_domain::query::StickinessRequest => |request| &request.movement;
    CompareRequest => |request| &request.movements.as_slice()[0];
}

/// A read asked `as_of` a time, turned into the read as of the last
/// sequence the stream had stored by then (which it then waits for, as
/// with `min_seq`); other reads as they are. The outer error is the answer
/// when that sequence could not be found.
pub(crate) async fn at_time<R: FiguresRead>(
    state: &AppState,
    asked: Result<(R, Reading, Option<chrono::DateTime<chrono::Utc>>), Problem>,
) -> Result<Result<(R, Reading), Problem>, Response> {
    let (mut request, reading, time) = match asked {
        Ok(asked) => asked,
        Err(problem) => return Ok(Err(problem)),
    };
    let Some(time) = time else { return Ok(Ok((request, reading))) };
    let read = SequenceAtRequest { movement: request.movement().clone(), time };
    let at = ask(state, Asked { min_seq: None, read }).await?;
    request.filter_mut().as_of_seq = Some(at.seq);
    Ok(Ok((request, reading.waiting_for(Some(at.seq)))))
}

/// Answers a read as [`read`] does, with an `ETag` made from the request,
/// the caller's suppression, the format and the versions of the read's
/// movements (asked of the projector first, and the read then waits for
/// the sequence they were read at, so that an answer is never older than
/// its tag says). A request whose `If-None-Match` holds the tag
/// is answered `304 Not Modified` without computing the answer again.
pub(crate) async fn read_cached<A: TableAnswer, R: CachedRead, Answered>(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    asked: Result<(R, Reading), Problem>,
    read: impl FnOnce(R, Option<u64>) -> Answered,
) -> Response
where
    Answered: std::future::Future<Output = Result<Bytes, Response>>,
{
    let (request, reading) = match asked {
        Ok(asked) => asked,
        Err(problem) => return problem.into_response(),
    };
    let versions = VersionsRequest { movements: request.movements().to_vec() };
    let versions = match ask(state, Asked { min_seq: reading.min_seq, read: versions }).await {
        Ok(versions) => versions,
        Err(response) => return response,
    };
    let tag = entity_tag(&request, reading, suppression_for(state, caller), &versions);
    // The answer must be at least as new as the versions it is tagged
    // with, whichever replica answers each request.
    let min_seq = reading.min_seq.max(Some(versions.watermark));
    let mut response = if if_none_match(headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        respond::<A>(reading, read(request, min_seq).await)
    };
    if matches!(response.status(), StatusCode::OK | StatusCode::NOT_MODIFIED) {
        let headers = response.headers_mut();
        if let Ok(tag) = HeaderValue::from_str(&tag) {
            headers.insert(header::ETAG, tag);
        }
        // Keep it, but ask again each time: a `304` then costs nothing.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
        headers.insert(header::VARY, HeaderValue::from_static("accept, authorization"));
    }
    response
}

/// A strong entity tag of everything an answer depends on.
fn entity_tag(request: &impl Serialize, reading: Reading, below: Option<u64>, versions: &Versions) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_vec(request).expect("a read always serialises").hash(&mut hasher);
    format!("{:?}", reading.format).hash(&mut hasher);
    below.hash(&mut hasher);
    for (movement, version) in &versions.versions {
        (movement.as_str(), version).hash(&mut hasher);
    }
    versions.settings.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// Whether `If-None-Match` names `tag` (weakly compared, as RFC 9110 has
/// it for this header) or is `*`.
fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').map(str::trim).any(|named| named == "*" || named.trim_start_matches("W/") == tag))
}

/// Answers a read: its JSON as asked, or its table as CSV or Parquet; or
/// the problem that stopped it.
fn respond<A: TableAnswer>(reading: Reading, answer: Result<Bytes, Response>) -> Response {
    let json = match answer {
        Ok(json) => json,
        Err(response) => return response,
    };
    let Format::Table(format, layout) = reading.format else {
        let mut response = (StatusCode::OK, json).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return response;
    };
    let written = to_table::<A>(&json, layout).map_err(|error| error.to_string()).and_then(|file| {
        let watermark = file.watermark;
        file.write(format).map(|written| (written, watermark)).map_err(|error| error.to_string())
    });
    match written {
        Ok(((body, filename), watermark)) => {
            let mut response = (StatusCode::OK, body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
            let disposition = format!("attachment; filename=\"{filename}\"");
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            headers.insert(WATERMARK_HEADER, HeaderValue::from(watermark));
            response
        }
        Err(error) => {
            tracing::error!(%error, "a projector answer could not be written as a table");
            Problem::internal().into_response()
        }
    }
}

pub(super) fn to_bytes<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("read answers always serialise"))
}

fn internal(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "a projector answer could not be read");
    Problem::internal().into_response()
}

pub(super) fn unfit(error: ReadError) -> Response {
    tracing::error!(%error, "a projector's trend totals do not fit the request");
    Problem::internal().into_response()
}

/// Whether small numbers are suppressed for this caller, and below what.
/// Evaluators get suppressed figures; admins see them whole.
pub(super) fn suppression_for(state: &AppState, caller: &Caller) -> Option<u64> {
    (state.suppress_below > 1 && caller.role == TokenRole::Evaluator).then_some(state.suppress_below)
}

/// The movements with events, those the caller may not read left out.
pub(crate) async fn movements(state: &AppState, caller: &Caller, min_seq: Option<u64>) -> Result<Bytes, Response> {
    let mut list = ask(state, Asked { min_seq, read: MovementsRequest {} }).await?;
    if caller.movements != Movements::All && caller.role != TokenRole::Admin {
        list.movements.retain(|summary| caller.may_read(&summary.movement));
    }
    Ok(to_bytes(&list))
}

pub(crate) async fn status(state: &AppState, min_seq: Option<u64>) -> Result<Bytes, Response> {
    Ok(to_bytes(&ask(state, Asked { min_seq, read: StatusRequest {} }).await?))
}

/// The totals of a trend, asked for in their binary form, which a
/// noticeable share of a trend's work here went into reading as JSON.
pub(super) async fn trend_totals(
    state: &AppState,
    request: &TrendRequest,
    min_seq: Option<u64>,
) -> Result<TrendTotals, Response> {
    let read = TrendTotalsRequest { trend: request.clone(), totals_encoding: TotalsEncoding::BinaryWithBasis };
    ask(state, Asked { min_seq, read }).await
}

/// A trend, computed here from the projector's period totals: the totals
/// are a few KB, the finished trend about ten times more, and those bytes
/// would cross NATS on every read.
pub(crate) async fn trend(
    state: &AppState,
    caller: &Caller,
    mut request: TrendRequest,
    min_seq: Option<u64>,
) -> Result<Bytes, Response> {
    let Some(below) = suppression_for(state, caller) else {
        let totals = trend_totals(state, &request, min_seq).await?;
        return query::trend_json_from_totals(&request, &totals).map(Bytes::from).map_err(unfit);
    };
    // What is hidden depends on every figure of a period, not on the
    // metrics asked for: otherwise asking for them one at a time would
    // show what asking for them together hides.
    let requested = request.metrics.take();
    let totals = trend_totals(state, &request, min_seq).await?;
    let mut trend = query::trend_from_totals(&request, &totals).map_err(unfit)?;
    suppression::trend(&mut trend, &totals, below);
    if let Some(metrics) = requested {
        for row in &mut trend.series {
            row.values.retain(|(metric, _)| metrics.contains(metric));
        }
    }
    Ok(Bytes::from(trend.to_json()))
}

pub(crate) async fn cohorts(
    state: &AppState,
    caller: &Caller,
    request: CohortRequest,
    min_seq: Option<u64>,
) -> Result<Bytes, Response> {
    let mut cohorts = ask(state, Asked { min_seq, read: request }).await?;
    if let Some(below) = suppression_for(state, caller) {
        suppression::cohorts(&mut cohorts, below);
    }
    Ok(to_bytes(&cohorts))
}

pub(crate) async fn principles(
    state: &AppState,
    caller: &Caller,
    request: PrinciplesRequest,
    min_seq: Option<u64>,
) -> Result<Bytes, Response> {
    let mut principles = ask(state, Asked { min_seq, read: request }).await?;
    if let Some(below) = suppression_for(state, caller) {
        suppression::principles(&mut principles, below);
    }
    Ok(to_bytes(&principles))
}

pub(crate) async fn compare(
    state: &AppState,
    caller: &Caller,
    request: CompareRequest,
    min_seq: Option<u64>,
) -> Result<Bytes, Response> {
    let Some(below) = suppression_for(state, caller) else {
        return Ok(to_bytes(&ask(state, Asked { min_seq, read: request }).await?));
    };
    // Each movement's trend, suppressed as a trend read is, so that a
    // comparison shows nothing a trend read hides (what is hidden depends
    // on all of a period's figures, not only the one compared).
    let asks = request.movements.as_slice().iter().map(|movement| request.trend_of(movement, None)).collect::<Vec<_>>();
    let answers = futures::future::join_all(asks.iter().map(|trend| trend_totals(state, trend, min_seq))).await;
    let totals = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
    let comparison = query::comparison_from_totals(&request, &totals, Some(below)).map_err(unfit)?;
    Ok(to_bytes(&comparison))
}

/// Why a read is answered 503 when no projector takes it: a projector
/// answers queries only once it has caught up with the stream.
pub(crate) const NO_PROJECTOR: &str =
    "no projection service is answering: none is running, or it is still catching up with the stream";

/// How often a read waiting for `min_seq` asks again while no projector
/// answers.
const NO_RESPONDERS_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Sends a request to the projection service (the partition or partitions
/// that hold its movements). Its answer is the API's JSON, except trend
/// totals asked for in binary; its errors, or its silence, become problem
/// responses.
pub(super) async fn ask<R: Read>(state: &AppState, asked: Asked<R>) -> Result<R::Answer, Response> {
    use crate::partitions::Failure;
    // While NATS is away no answer can come: say so at once rather than
    // after the query timeout.
    if let Some(unready) = momentum_runtime::nats_unready(&state.nats) {
        return Err(unready);
    }
    // A read that waits for `min_seq` also waits out a projector that is
    // restarting, until the query timeout: a client that asked to wait
    // should not see an error for a routine restart.
    let deadline = tokio::time::Instant::now() + state.query_timeout;
    let failure = loop {
        match crate::partitions::ask(state, &asked).await {
            Ok(answer) => return Ok(answer),
            Err(Failure::Unanswered(error))
                if asked.min_seq.is_some()
                    && error.kind() == async_nats::RequestErrorKind::NoResponders
                    && tokio::time::Instant::now() + NO_RESPONDERS_RETRY_INTERVAL < deadline =>
            {
                tokio::time::sleep(NO_RESPONDERS_RETRY_INTERVAL).await;
            }
            Err(failure) => break failure,
        }
    };
    Err(match failure {
        Failure::TimedOut => Problem::unavailable("the projection service did not answer in time").into_response(),
        Failure::Unanswered(error) => {
            use async_nats::RequestErrorKind;
            let detail = match error.kind() {
                RequestErrorKind::NoResponders => NO_PROJECTOR,
                RequestErrorKind::TimedOut => "the projection service did not answer in time",
                _ => "the projection service could not be asked",
            };
            tracing::warn!(%error, "query request failed");
            Problem::unavailable(detail).into_response()
        }
        Failure::Unreadable(error) => internal(error),
        Failure::Refused(Refusal::Invalid(message)) => {
            Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "the query is not valid")
                .detail(message)
                .into_response()
        }
        // The answer would not fit in a NATS message: the range is what
        // the client can change.
        Failure::Refused(Refusal::TooLarge(message)) => Problem::bad_parameter("from", message).into_response(),
        Failure::Refused(Refusal::UnknownMovement(message)) => unknown_movement(message).into_response(),
        Failure::Refused(Refusal::Unavailable(message)) => Problem::unavailable(message).into_response(),
        Failure::Refused(Refusal::Failed(message)) => {
            tracing::error!(message, "the projection service failed a query");
            Problem::internal().into_response()
        }
    })
}

pub(crate) fn unknown_movement(message: String) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "unknown-movement", "no such movement").detail(message)
}

/// Examples for the answers every read may give.
mod examples {
    use momentum_runtime::auth::{Caller, Movements, TokenRole};

    use super::*;

    fn caller(role: TokenRole) -> Caller {
        let source = (role == TokenRole::Partner).then(|| "urn:partner:age-uk-bristol".to_owned());
        let movements = Movements::Only(["bristol-befriending".to_owned()].into());
        Caller { name: "example".to_owned(), role, source, movements }
    }

    pub(super) fn partner_reads() -> Problem {
        caller(TokenRole::Partner).require_reader().expect_err("partners do not read")
    }

    pub(super) fn not_this_movement() -> Problem {
        caller(TokenRole::Evaluator).require_read("leeds-walking-groups").expect_err("not this evaluator's movement")
    }

    pub(super) fn unknown() -> Problem {
        unknown_movement(ReadError::UnknownMovement("leeds-walking-groups".to_owned()).to_string())
    }
}

problem_responses! {
    ListForbidden => ("Partner tokens may not read.", [examples::partner_reads()]);
    ReadForbidden => ("The token may not read this movement (or partner tokens any).", [
        examples::not_this_movement(), examples::partner_reads(),
    ]);
    UnknownMovement => ("The movement (or one of the movements) has no events.", [examples::unknown()]);
    ReadUnavailable => ("No projector answered in time, or the projection did not reach `min_seq` within the \
        wait, or the service is at its bound of requests in flight; retry.", [
        Problem::unavailable(NO_PROJECTOR),
        Problem::unavailable("the projection has not reached sequence 4711 yet"),
    ]);
}
