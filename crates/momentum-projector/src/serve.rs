//! Answering queries over NATS with the async-nats service API, so that
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` work and replicas share the load
//! in one queue group.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::future::Future;

use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use momentum_bus::PROJECTOR_SERVICE_NAME;
use momentum_bus::protocol::{
    Asked, EventsPage, EventsRequest, LedgerRead, ProtocolError, Read, Refusal, SequenceAt, SequenceAtRequest,
    StatusRequest, TrendTotalsRequest,
};
use momentum_domain::event::Event;
use momentum_domain::export;
use momentum_domain::ledger::{FoldSettings, Ledger};
use momentum_domain::query::{self, ReadError, ReadSettings};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{Semaphore, watch};

use crate::consume::SharedLedger;

use crate::coverage::Coverage;
use crate::{ProjectorError, READS_IN_FLIGHT_MAX};

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
        let all = u32::try_from(READS_IN_FLIGHT_MAX).expect("a few hundred slots");
        let answered = tokio::time::timeout(self.wait_max + STOP_MARGIN, self.slots.acquire_many(all)).await;
        if answered.is_err() {
            tracing::warn!("stopping with queries still unanswered");
        }
        let _ = self.service.stop().await;
    }
}

#[derive(Clone)]
struct Context {
    ledger: SharedLedger,
    watermark: watch::Receiver<u64>,
    coverage: Coverage,
    wait_max: Duration,
    slots: Arc<Semaphore>,
    applied: Arc<AtomicU64>,
    read_settings: ReadSettings,
    fold_settings: FoldSettings,
    read_seconds: Histogram,
    /// The largest answer NATS will carry (the server's `max_payload`, less
    /// room for headers); a bigger one is answered with an error instead.
    answer_bytes_max: usize,
}

/// Room left in a NATS message for the headers of a service reply.
const REPLY_HEADER_BYTES_MAX: usize = 4096;

pub(crate) async fn start(
    nats: &async_nats::Client,
    settings: &crate::ServeSettings,
    coverage: Coverage,
) -> Result<Running, ProjectorError> {
    let partition = coverage.partition();
    let service = nats
        .service_builder()
        .description("momentum projections: trends, movements and status")
        .metadata([("partition".to_owned(), partition.to_string())].into())
        .start(PROJECTOR_SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|error| ProjectorError::Service(error.to_string()))?;
    let group = service.group(partition.read_group());
    let watermark = coverage.watermark_receiver();
    let slots = Arc::new(Semaphore::new(READS_IN_FLIGHT_MAX));
    let answer_bytes_max = nats.server_info().max_payload.saturating_sub(REPLY_HEADER_BYTES_MAX);
    let wait_max = settings.wait_max;
    let context = Context {
        ledger: settings.ledger.clone(),
        watermark,
        coverage,
        wait_max,
        slots: slots.clone(),
        applied: settings.applied.clone(),
        read_settings: settings.read_settings,
        fold_settings: settings.fold_settings,
        read_seconds: settings.read_seconds.clone(),
        answer_bytes_max,
    };
    // Every read answered from the ledger alone, through one generic
    // endpoint each; then the two this service answers itself.
    macro_rules! serve_ledger_reads {
        ($($read:ty),*) => {
            vec![$(
                serve::<$read, _, _>(&group, &context, |context, read| {
                    blocking(context, read, |ledger, read, settings| LedgerRead::answer(read, ledger, settings))
                })
                .await?,
            )*]
        };
    }
    let mut tasks = momentum_bus::ledger_reads!(serve_ledger_reads);
    tasks.push(serve::<TrendTotalsRequest, _, _>(&group, &context, trend_totals).await?);
    tasks.push(serve::<StatusRequest, _, _>(&group, &context, status).await?);
    tasks.push(serve::<SequenceAtRequest, _, _>(&group, &context, sequence_at).await?);
    tasks.push(serve::<EventsRequest, _, _>(&group, &context, events).await?);
    Ok(Running { service, tasks, slots, wait_max })
}

/// Answers the read `R` at its endpoint of `group`, each request on a task
/// of its own: `handler` makes the answer once the projection has reached
/// the request's `min_seq`.
async fn serve<R, Handler, Answered>(
    group: &service::Group,
    context: &Context,
    handler: Handler,
) -> Result<tokio::task::JoinHandle<()>, ProjectorError>
where
    R: Read,
    Handler: Fn(Context, R) -> Answered + Clone + Send + Sync + 'static,
    Answered: Future<Output = Result<Vec<u8>, Refusal>> + Send + 'static,
{
    let mut endpoint = group.endpoint(R::ENDPOINT).await.map_err(|error| ProjectorError::Service(error.to_string()))?;
    let context = context.clone();
    Ok(tokio::spawn(async move {
        while let Some(request) = endpoint.next().await {
            // Busy: say so at once rather than leave requests queued behind
            // this loop, unbounded and answered after their askers gave up.
            let Ok(slot) = context.slots.clone().try_acquire_owned() else {
                let busy = Refusal::Unavailable(format!(
                    "the projection service is answering {READS_IN_FLIGHT_MAX} queries; retry"
                ));
                if let Err(error) = request.respond(Err(busy.into())).await {
                    tracing::warn!(%error, "could not send a query response");
                }
                continue;
            };
            let (context, handler) = (context.clone(), handler.clone());
            tokio::spawn(async move {
                let answer = answer::<R, _, _>(context, &request.message.payload, handler).await;
                if let Err(error) = request.respond(answer.map(Bytes::from).map_err(Into::into)).await {
                    tracing::warn!(%error, "could not send a query response");
                }
                drop(slot);
            });
        }
    }))
}

/// Reads a request, waits for its `min_seq`, answers it, and refuses an
/// answer larger than NATS carries.
async fn answer<R, Handler, Answered>(context: Context, payload: &[u8], handler: Handler) -> Result<Vec<u8>, Refusal>
where
    R: Read,
    Handler: Fn(Context, R) -> Answered,
    Answered: Future<Output = Result<Vec<u8>, Refusal>>,
{
    let asked = Asked::<R>::decode(payload)?;
    // A read as of a sequence waits for it as for `min_seq`.
    wait_for(&context, asked.min_seq.max(asked.read.as_of_seq())).await?;
    let answer_bytes_max = context.answer_bytes_max;
    let body = handler(context, asked.read).await?;
    if body.len() > answer_bytes_max {
        return Err(Refusal::TooLarge(format!(
            "the answer would be {} bytes, more than the {answer_bytes_max} NATS carries: narrow the date range, use \
             a longer interval, or ask for fewer metrics or movements",
            body.len(),
        )));
    }
    Ok(body)
}

/// Reads go to the projection in memory, which cannot fail to be read.
fn refusal(failure: ReadError) -> Refusal {
    match failure {
        ReadError::UnknownMovement(_) => Refusal::UnknownMovement(failure.to_string()),
        ReadError::Invalid(_) => Refusal::Invalid(failure.to_string()),
    }
}

/// Reads the ledger and encodes the answer on the blocking pool. Reads take
/// the ledger's lock, which the fold takes for each event, and some pass
/// over many facts: they never stall one of the runtime's two workers.
async fn blocking<R: Read>(
    context: Context,
    read: R,
    reading: impl FnOnce(&Ledger, &R, &ReadSettings) -> Result<R::Answer, ReadError> + Send + 'static,
) -> Result<Vec<u8>, Refusal> {
    let timed = move || {
        let started = Instant::now();
        let answer = reading(&read_ledger(&context.ledger), &read, &context.read_settings).map_err(refusal);
        let body = answer.and_then(|answer| read.encode_answer(&answer).map_err(encoding_failed));
        context.read_seconds.observe(started.elapsed().as_secs_f64());
        body
    };
    tokio::task::spawn_blocking(timed).await.map_err(|failure| {
        tracing::error!(error = %failure, "a query read panicked");
        Refusal::Failed("the query failed".to_owned())
    })?
}

fn encoding_failed(error: ProtocolError) -> Refusal {
    tracing::error!(%error, "an answer could not be encoded");
    Refusal::Failed("the answer could not be encoded".to_owned())
}

/// Trend totals are read here rather than on the blocking pool when the
/// lock is free: a kept answer is a lookup, and a new one one pass over the
/// facts of the range's periods, both far cheaper than the two thread
/// hand-offs of the pool for the trends evaluators read. While the fold
/// holds the lock, the read waits on the pool instead, never on one of the
/// runtime's two workers.
async fn trend_totals(context: Context, read: TrendTotalsRequest) -> Result<Vec<u8>, Refusal> {
    let now = match context.ledger.try_read() {
        Ok(ledger) => {
            let started = Instant::now();
            let totals = query::trend_totals(&ledger, &read.trend, &context.read_settings);
            drop(ledger);
            context.read_seconds.observe(started.elapsed().as_secs_f64());
            Some(totals)
        }
        Err(_) => None,
    };
    match now {
        Some(totals) => read.encode_answer(&totals.map_err(refusal)?).map_err(encoding_failed),
        None => {
            blocking(context, read, |ledger, read, settings| query::trend_totals(ledger, &read.trend, settings)).await
        }
    }
}

/// A partition's status says how far it covers the stream, not just where
/// its own last event was, so that a client may wait for that sequence on
/// any partition.
async fn status(context: Context, read: StatusRequest) -> Result<Vec<u8>, Refusal> {
    let applied_since_start = context.applied.load(Ordering::Relaxed);
    let covered = context.coverage.covered().await;
    blocking(context, read, move |ledger, _, _| {
        Ok(query::Status { watermark: ledger.watermark().max(covered), applied_since_start })
    })
    .await
}

/// The last sequence the stream had stored by a time, from the stream
/// itself: the ledger keeps no timestamps.
async fn sequence_at(context: Context, read: SequenceAtRequest) -> Result<Vec<u8>, Refusal> {
    let seq = momentum_bus::last_sequence_by(context.coverage.jetstream(), read.time)
        .await
        .map_err(|error| Refusal::Unavailable(error.to_string()))?;
    read.encode_answer(&SequenceAt { seq }).map_err(encoding_failed)
}

/// Events read back from the stream, a page at a time, as the export gives
/// them. Only as far as the projection has folded: an erasure it has not
/// folded yet could not be applied to the events before it.
async fn events(context: Context, read: EventsRequest) -> Result<Vec<u8>, Refusal> {
    let watermark = read_ledger(&context.ledger).watermark();
    let through = read.until_seq.map_or(watermark, |until| until.min(watermark));
    let types: Vec<&str> = read.types.iter().map(|kind| kind.as_str()).collect();
    let stored = momentum_bus::read_movement_events(
        context.coverage.jetstream(),
        read.movement.as_str(),
        &types,
        read.since_seq,
        through,
        read.limit as usize,
    )
    .await
    .map_err(|error| Refusal::Unavailable(error.to_string()))?;
    let (answer_bytes_max, settings) = (context.answer_bytes_max, context.fold_settings);
    blocking(context, read, move |ledger, read, _| {
        let movement = ledger.movement(read.movement.as_str());
        if movement.is_none() {
            return Err(ReadError::UnknownMovement(read.movement.as_str().to_owned()));
        }
        let mut page =
            EventsPage { events: Vec::new(), next_seq: read.since_seq, complete: stored.complete, watermark };
        // Room for the page's other fields and the commas between events.
        let mut bytes = 256;
        for event in &stored.events {
            let exported = Event::from_json(&event.payload)
                .ok()
                .filter(|parsed| parsed.subject == read.movement.as_str())
                .filter(|parsed| read.types.is_empty() || read.types.contains(&parsed.kind))
                .zip(movement)
                .and_then(|(parsed, movement)| {
                    export::exported(movement, &settings, &parsed, event.seq, read.include_retracted)
                });
            if let Some(exported) = exported {
                let json = serde_json::value::to_raw_value(&exported).expect("a JSON value encodes");
                bytes += json.get().len() + 1;
                if bytes > answer_bytes_max && !page.events.is_empty() {
                    page.complete = false;
                    break;
                }
                page.events.push(json);
            }
            page.next_seq = event.seq;
        }
        if page.complete {
            page.next_seq = page.next_seq.max(through);
        }
        Ok(page)
    })
    .await
}

/// The projection, for a read; see [`SharedLedger`] on poisoning.
fn read_ledger(shared: &SharedLedger) -> std::sync::RwLockReadGuard<'_, Ledger> {
    shared.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How often a partitioned projector waiting for a sequence beyond its own
/// events asks the server again whether it covers it.
const COVERAGE_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Waits, at most `wait_max`, until the projection covers `min_seq`: its
/// watermark reaches it or, for a partition, the server shows that none of
/// its events up to `min_seq` is unread (see [`Coverage`]).
async fn wait_for(context: &Context, min_seq: Option<u64>) -> Result<(), Refusal> {
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
    Err(Refusal::Unavailable(format!(
        "the projection has not reached sequence {min_seq} within {} ms (it is at {})",
        context.wait_max.as_millis(),
        *context.watermark.borrow()
    )))
}
