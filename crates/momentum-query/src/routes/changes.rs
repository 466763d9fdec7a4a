//! `GET /v1/movements/{movement}/changes`: every figure of a movement's
//! trend that moved since a stream sequence, with its values then and now.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use momentum_domain::Interval;
use momentum_domain::query::{self, Changes, TrendRequest};
use momentum_domain::selection::Filter;
use momentum_runtime::auth::Caller;
use momentum_runtime::{MovementPath, Parameters, Problem, problem_responses};

use super::answer::{self, ReadForbidden, ReadUnavailable, UnknownMovement};
use super::parameters::{RequestParts, examples, interval, periods, read_parameters, sequence};
use super::today;
use crate::AppState;
use crate::tables::{Layout, TableAnswer, TableFile, file_stem, period_columns};
use momentum_tables::{Cell, Column, ColumnType, Table};

/// The intervals changes are read in.
const CHANGES_INTERVALS: [Interval; 2] = [Interval::Week, Interval::Month];

read_parameters! {
    /// The parameters of a changes read.
    ChangesParameters {
        /// The stream sequence to compare with: the figures as the projection stood when it had applied the stream
        /// up to it (a `watermark` an earlier answer gave, say). Required.
        #[param(value_type = crate::openapi::SequenceNumber)]
        since_seq,
        /// The length of a period (default `week`).
        #[param(value_type = Option<crate::openapi::CohortInterval>)]
        interval,
        /// The first date of the range compared (default: a year before `to`).
        #[param(value_type = Option<crate::openapi::LocalDate>)]
        from,
        /// The last date of the range compared (default: today, in `MOMENTUM_TIMEZONE`).
        #[param(value_type = Option<crate::openapi::LocalDate>)]
        to,
    }
}

/// A changes read: the trend compared, and the sequence it is compared as of.
#[derive(serde::Serialize)]
pub(crate) struct ChangesRequest {
    trend: TrendRequest,
    since_seq: u64,
}

impl TryFrom<RequestParts<&ChangesParameters>> for ChangesRequest {
    type Error = Problem;

    fn try_from(asked: RequestParts<&ChangesParameters>) -> Result<ChangesRequest, Problem> {
        let parameters = asked.parameters;
        let since_seq = sequence(parameters.since_seq.as_deref(), "since_seq")?
            .ok_or_else(|| Problem::bad_parameter("since_seq", "is required: the stream sequence to compare with"))?;
        let interval = interval(parameters.interval.as_deref(), &CHANGES_INTERVALS)?;
        let periods = periods(interval, parameters.from.as_deref(), parameters.to.as_deref(), asked.today)?;
        let trend = TrendRequest {
            movement: asked.movement,
            periods,
            metrics: None,
            filter: Filter::default(),
            split: None,
            today: Some(asked.today),
        };
        Ok(ChangesRequest { trend, since_seq })
    }
}

impl answer::CachedRead for ChangesRequest {
    fn movements(&self) -> &[momentum_domain::query::MovementId] {
        std::slice::from_ref(&self.trend.movement)
    }
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/changes", tag = "reads",
    summary = "What changed in a movement's figures since a stream sequence",
    description = "Every figure of the movement's trend, period by period, that differs from what it was when the \
        projection had applied the stream up to `since_seq`: late events, retractions and corrections made \
        visible. Suppressed as a trend read is, then and now alike.",
    params(super::MovementParameter, ChangesParameters, ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: answered 304, without the answer, when nothing it depends on has changed.")),
    responses(
        (status = 200, description = "The changes.", headers(("Momentum-Watermark" = u64, description = "In a CSV answer, the last stream sequence its figures include; a JSON answer holds it as `watermark`."),
            ("ETag" = String, description = "A tag of this answer: send it back in `If-None-Match` to be answered 304 while nothing it depends on has changed.")),
            content(
            (Changes = "application/json", example = json!({
                "movement": "bristol-befriending", "interval": "month", "from": "2026-01-01", "to": "2026-04-30",
                "since_seq": 40, "watermark": 57,
                "changes": [{ "period": "2026-03-01", "label": "2026-03", "metric": "meetings", "before": 4,
                    "after": 6 }],
            })),
            (String = "text/csv",
                example = "period,label,complete,metric,before,after\n2026-03-01,2026-03,true,meetings,4,6\n"),
            (crate::openapi::ParquetFile = "application/vnd.apache.parquet"),
        )),
        (status = 304, description = "Nothing the answer depends on has changed since the `ETag` named in `If-None-Match`.",
            headers(("ETag" = String, description = "The same tag."))),
        (status = 400, response = inline(ChangesBadRequest)),
        (status = 403, response = inline(ReadForbidden)),
        (status = 404, response = inline(UnknownMovement)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn changes(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    MovementPath(movement): MovementPath,
    Parameters(parameters): Parameters<ChangesParameters>,
) -> Response {
    let asked = (|| {
        caller.require_read(movement.as_str())?;
        let reading = parameters.reading(&headers)?;
        let request =
            ChangesRequest::try_from(RequestParts { parameters: &parameters, movement, today: today(&state) })?;
        // The figures now must include `since_seq`, or they could be older than the figures then.
        let reading = reading.waiting_for(Some(request.since_seq));
        Ok::<_, Problem>((request, reading))
    })();
    let (reading_state, reading_caller) = (state.clone(), caller.clone());
    answer::read_cached::<Changes, _, _>(&state, &caller, &headers, asked, |request, min_seq| async move {
        let (state, caller) = (reading_state, reading_caller);
        let after = answer::trend_totals(&state, &request.trend, min_seq).await?;
        // As it stood at `since_seq`, which the projection must have applied.
        let then = TrendRequest {
            filter: Filter { as_of_seq: Some(request.since_seq), ..Filter::default() },
            ..request.trend.clone()
        };
        let before = match answer::trend_totals(&state, &then, min_seq.max(Some(request.since_seq))).await {
            Ok(before) => Some(before),
            // The movement had no events yet: every figure was zero.
            Err(response) if response.status() == StatusCode::NOT_FOUND => None,
            Err(response) => return Err(response),
        };
        let below = answer::suppression_for(&state, &caller);
        let changes =
            query::changes(&request.trend, request.since_seq, before.as_ref(), &after, below).map_err(answer::unfit)?;
        Ok(answer::to_bytes(&changes))
    })
    .await
}

/// One row per figure that moved.
impl TableAnswer for Changes {
    fn to_table(&self, _layout: Layout) -> TableFile {
        let mut columns: Vec<Column> = period_columns("period").into();
        columns.extend([
            Column::new("metric", ColumnType::Text, "The metric whose figure moved."),
            Column::new("before", ColumnType::Number, "Its figure as of since_seq; empty where undefined."),
            Column::new("after", ColumnType::Number, "Its figure now; empty where undefined."),
        ]);
        let mut table = Table::new(columns);
        for change in &self.changes {
            table.push(vec![
                change.period.into(),
                change.label.as_str().into(),
                Cell::optional(change.complete),
                change.metric.as_str().into(),
                Cell::from_json(&change.before),
                Cell::from_json(&change.after),
            ]);
        }
        let stem = format!("{}-changes-since-{}-{}", self.movement, self.since_seq, self.interval.as_str());
        TableFile { table, stem: file_stem(stem, self.watermark, Layout::Wide), watermark: self.watermark }
    }
}

problem_responses! {
    ChangesBadRequest => ("A parameter is not valid, or not one the route takes, or `since_seq` is missing.", [
        examples::bad_movement("movement"), examples::bad_interval(&CHANGES_INTERVALS), examples::bad_date(),
        Problem::bad_parameter("since_seq", "is required: the stream sequence to compare with"),
        examples::bad_min_seq(),
    ]);
}
