//! Answering queries over NATS with the async-nats service API, so that
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` work and replicas share the load
//! in one queue group.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use momentum_bus::{QUERY_SERVICE_NAME, QueryEndpoint};
use momentum_domain::query::{
    self, CohortRequest, CompareRequest, PrinciplesRequest, QueryError, ReadSettings, TotalsEncoding, TrendRequest,
    TrendTotals,
};
use prometheus_client::metrics::histogram::Histogram;
use std::convert::Infallible;

use crate::consume::SharedProjection;
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};

use crate::coverage::Coverage;
use crate::{ProjectorError, QUERIES_IN_FLIGHT_MAX};

pub(crate) struct Running {
    service: service::Service,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    slots: Arc<Semaphore>,
    wait_max: Duration,
}

/// How long past the longest `min_seq` wait stopping waits for the queries
/// in flight to be answered.
const STOP_MARGIN: Duration = Duration::from_secs(1);

impl Running {
    /// Takes no more queries, answers those in flight (waiting at most the
    /// longest `min_seq` wait and a margin), then leaves the service.
    pub(crate) async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        let all = u32::try_from(QUERIES_IN_FLIGHT_MAX).expect("a few hundred slots");
        let answered = tokio::time::timeout(self.wait_max + STOP_MARGIN, self.slots.acquire_many(all)).await;
        if answered.is_err() {
            tracing::warn!("stopping with queries still unanswered");
        }
        let _ = self.service.stop().await;
    }
}

#[derive(Clone)]
struct Context {
    projection: SharedProjection,
    watermark: watch::Receiver<u64>,
    coverage: Coverage,
    wait_max: Duration,
    slots: Arc<Semaphore>,
    applied: Arc<AtomicU64>,
    read_settings: ReadSettings,
    read_seconds: Histogram,
    /// The largest answer NATS will carry (the server's `max_payload`, less
    /// room for headers); a bigger one is answered with an error instead.
    answer_bytes_max: usize,
}

/// Room left in a NATS message for the headers of a service reply.
const REPLY_HEADER_BYTES_MAX: usize = 4096;

pub(crate) async fn start(
    nats: &async_nats::Client,
    projection: SharedProjection,
    coverage: Coverage,
    wait_max: Duration,
    applied: Arc<AtomicU64>,
    read_settings: ReadSettings,
    read_seconds: Histogram,
) -> Result<Running, ProjectorError> {
    let partition = coverage.partition();
    let service = nats
        .service_builder()
        .description("momentum projections: trends, movements and status")
        .metadata([("partition".to_owned(), partition.to_string())].into())
        .start(QUERY_SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|error| ProjectorError::Service(error.to_string()))?;
    let group = service.group(partition.query_group());
    let watermark = coverage.watermark_receiver();
    let slots = Arc::new(Semaphore::new(QUERIES_IN_FLIGHT_MAX));
    let answer_bytes_max = nats.server_info().max_payload.saturating_sub(REPLY_HEADER_BYTES_MAX);
    let context = Context {
        projection,
        watermark,
        coverage,
        wait_max,
        slots: slots.clone(),
        applied,
        read_settings,
        read_seconds,
        answer_bytes_max,
    };
    let mut tasks = Vec::new();
    for endpoint_kind in QueryEndpoint::ALL {
        let mut endpoint =
            group.endpoint(endpoint_kind.name()).await.map_err(|error| ProjectorError::Service(error.to_string()))?;
        let context = context.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(request) = endpoint.next().await {
                // Busy: say so at once rather than leave requests queued
                // behind this loop, unbounded and answered after their
                // askers gave up.
                let Ok(slot) = context.slots.clone().try_acquire_owned() else {
                    let busy = error(
                        503,
                        format!("the projection service is answering {QUERIES_IN_FLIGHT_MAX} queries; retry"),
                    );
                    if let Err(error) = request.respond(Err(busy)).await {
                        tracing::warn!(%error, "could not send a query response");
                    }
                    continue;
                };
                let context = context.clone();
                tokio::spawn(async move {
                    let response = match answer(&context, endpoint_kind, &request.message.payload).await {
                        Ok(body) if body.len() > context.answer_bytes_max => Err(error(
                            413,
                            format!(
                                "the answer would be {} bytes, more than the {} NATS carries: narrow the date range, \
                                 use a longer interval, or ask for fewer metrics or movements",
                                body.len(),
                                context.answer_bytes_max
                            ),
                        )),
                        other => other,
                    };
                    if let Err(error) = request.respond(response).await {
                        tracing::warn!(%error, "could not send a query response");
                    }
                    drop(slot);
                });
            }
        }));
    }
    Ok(Running { service, tasks, slots, wait_max })
}

/// Every request may carry `min_seq`: the answer waits until the
/// projection has applied that stream sequence.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    min_seq: Option<u64>,
    /// How a `trend_totals` answer is encoded; every other answer is JSON.
    #[serde(default)]
    totals_encoding: TotalsEncoding,
    #[serde(flatten)]
    request: T,
}

#[derive(Debug, Deserialize)]
struct Nothing {}

fn error(code: usize, message: impl Into<String>) -> service::error::Error {
    service::error::Error { status: message.into(), code }
}

/// Reads go to the projection in memory, which cannot fail to be read.
fn query_error(failure: QueryError<Infallible>) -> service::error::Error {
    match failure {
        QueryError::UnknownMovement(_) => error(404, failure.to_string()),
        QueryError::Invalid(_) => error(400, failure.to_string()),
        QueryError::Store(never) => match never {},
    }
}

/// Reads a request's JSON.
fn read<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<Envelope<T>, service::error::Error> {
    serde_json::from_slice(payload).map_err(|failure| error(400, failure.to_string()))
}

async fn answer(context: &Context, endpoint: QueryEndpoint, payload: &[u8]) -> Result<Bytes, service::error::Error> {
    let payload = if payload.is_empty() { b"{}".as_slice() } else { payload };
    let shared = context.projection.clone();
    let settings = context.read_settings;
    // Reads take the ledger's lock, which the fold takes for each event,
    // and some pass over many facts: they run on the blocking pool so that
    // they never stall the runtime's two workers.
    let read: Box<dyn FnOnce() -> Result<Vec<u8>, service::error::Error> + Send> = match endpoint {
        QueryEndpoint::Trends => {
            let envelope: Envelope<TrendRequest> = read(payload)?;
            wait_for(context, envelope.min_seq).await?;
            Box::new(move || {
                let projection = read_projection(&shared);
                let trend = query::trend(&*projection, &envelope.request, &settings).map_err(query_error)?;
                Ok(trend.to_json())
            })
        }
        QueryEndpoint::TrendTotals => {
            let envelope: Envelope<TrendRequest> = read(payload)?;
            wait_for(context, envelope.min_seq).await?;
            // Read here rather than on the blocking pool when the lock is
            // free: a kept answer is a lookup, and a new one one pass over
            // the facts of the range's periods, both far cheaper than the
            // two thread hand-offs of the pool for the trends evaluators
            // read. While the fold holds the lock, the read waits on the
            // pool instead, never on one of the runtime's two workers.
            let encoding = envelope.totals_encoding;
            if let Ok(projection) = shared.try_read() {
                let started = Instant::now();
                let totals = query::trend_totals(&*projection, &envelope.request, &settings);
                drop(projection);
                context.read_seconds.observe(started.elapsed().as_secs_f64());
                return encode_totals(totals, encoding).map(Bytes::from);
            }
            Box::new(move || {
                encode_totals(query::trend_totals(&*read_projection(&shared), &envelope.request, &settings), encoding)
            })
        }
        QueryEndpoint::Cohorts => {
            let envelope: Envelope<CohortRequest> = read(payload)?;
            wait_for(context, envelope.min_seq).await?;
            Box::new(move || to_json(query::cohorts(&*read_projection(&shared), &envelope.request)))
        }
        QueryEndpoint::Principles => {
            let envelope: Envelope<PrinciplesRequest> = read(payload)?;
            wait_for(context, envelope.min_seq).await?;
            Box::new(move || to_json(query::principles(&*read_projection(&shared), &envelope.request)))
        }
        QueryEndpoint::Compare => {
            let envelope: Envelope<CompareRequest> = read(payload)?;
            wait_for(context, envelope.min_seq).await?;
            Box::new(move || to_json(query::compare(&*read_projection(&shared), &envelope.request, &settings)))
        }
        QueryEndpoint::Movements => {
            let envelope: Envelope<Nothing> = read(payload)?;
            wait_for(context, envelope.min_seq).await?;
            Box::new(move || to_json(query::movements(&*read_projection(&shared))))
        }
        QueryEndpoint::Status => {
            let envelope: Envelope<Nothing> = read(payload)?;
            wait_for(context, envelope.min_seq).await?;
            let applied_since_start = context.applied.load(Ordering::Relaxed);
            // A partition's status says how far it covers the stream, not
            // just where its own last event was, so that a client may wait
            // for that sequence on any partition.
            let covered = context.coverage.covered().await;
            Box::new(move || {
                let watermark = read_projection(&shared).watermark().max(covered);
                Ok(serde_json::to_vec(&query::Status { watermark, applied_since_start })
                    .expect("a status always serialises"))
            })
        }
    };
    let read_seconds = context.read_seconds.clone();
    let timed = move || {
        let started = Instant::now();
        let answer = read();
        read_seconds.observe(started.elapsed().as_secs_f64());
        answer
    };
    let body = tokio::task::spawn_blocking(timed).await.map_err(|failure| {
        tracing::error!(error = %failure, "a query read panicked");
        error(500, "the query failed")
    })??;
    Ok(Bytes::from(body))
}

/// The projection, for a read; see [`SharedProjection`] on poisoning.
fn read_projection(shared: &SharedProjection) -> std::sync::RwLockReadGuard<'_, momentum_domain::ledger::Ledger> {
    shared.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn encode_totals(
    totals: Result<TrendTotals, QueryError<Infallible>>,
    encoding: TotalsEncoding,
) -> Result<Vec<u8>, service::error::Error> {
    match encoding {
        TotalsEncoding::Json => to_json(totals),
        TotalsEncoding::Binary => Ok(totals.map_err(query_error)?.to_binary()),
    }
}

fn to_json<T: serde::Serialize>(result: Result<T, QueryError<Infallible>>) -> Result<Vec<u8>, service::error::Error> {
    Ok(serde_json::to_vec(&result.map_err(query_error)?).expect("query results always serialise"))
}

/// How often a partitioned projector waiting for a sequence beyond its own
/// events asks the server again whether it covers it.
const COVERAGE_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Waits, at most `wait_max`, until the projection covers `min_seq`: its
/// watermark reaches it or, for a partition, the server shows that none of
/// its events up to `min_seq` is unread (see [`Coverage`]).
async fn wait_for(context: &Context, min_seq: Option<u64>) -> Result<(), service::error::Error> {
    let Some(min_seq) = min_seq else { return Ok(()) };
    let deadline = tokio::time::Instant::now() + context.wait_max;
    let mut watermark = context.watermark.clone();
    let partitioned = !context.coverage.partition().is_whole();
    // Asking the server may take long (JetStream without a leader): never
    // past the deadline.
    let covered = || async {
        tokio::time::timeout_at(deadline, context.coverage.covered())
            .await
            .unwrap_or_else(|_| context.coverage.watermark())
    };
    loop {
        if *watermark.borrow_and_update() >= min_seq || (partitioned && covered().await >= min_seq) {
            return Ok(());
        }
        let wake =
            if partitioned { deadline.min(tokio::time::Instant::now() + COVERAGE_POLL_INTERVAL) } else { deadline };
        // A changed watermark or the poll interval wakes the loop; a closed
        // channel (the projector stopping) or the deadline ends it.
        let woken = tokio::time::timeout_at(wake, watermark.changed()).await;
        if matches!(woken, Ok(Err(_))) || tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    if *watermark.borrow() >= min_seq || (partitioned && covered().await >= min_seq) {
        return Ok(());
    }
    Err(error(
        503,
        format!(
            "the projection has not reached sequence {min_seq} within {} ms (it is at {})",
            context.wait_max.as_millis(),
            *context.watermark.borrow()
        ),
    ))
}
