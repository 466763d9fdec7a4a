//! `GET /v1/movements/{movement}/stickiness`: of a window's participants,
//! how many came in 1, 2, … of its periods, and how many times.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use momentum_bus::protocol::Asked as AskedRead;
use momentum_domain::Interval;
use momentum_domain::query::{
    DateRange, Periods, STICKINESS_WINDOW_MAX, Stickiness, StickinessRequest, suppress_stickiness,
};
use momentum_runtime::auth::Caller;
use momentum_runtime::{MovementPath, Parameters, Problem, problem_responses};

use super::answer::{self, ReadForbidden, ReadUnavailable, UnknownMovement};
use super::parameters::{RequestParts, date, examples, interval, range_problem, read_parameters};
use super::today;
use crate::AppState;
use crate::tables::{Layout, TableAnswer, TableFile, file_stem, split_cells, split_column};
use momentum_tables::{Cell, Column, ColumnType, Table};

/// The intervals stickiness is read in.
const STICKINESS_INTERVALS: [Interval; 2] = [Interval::Week, Interval::Month];

/// The window a read without `window` covers: a quarter of weeks.
const WINDOW_DEFAULT: u32 = 12;

read_parameters! {
    @filtered
    /// The parameters of a stickiness read.
    StickinessParameters {
        /// The length of a period (default `week`).
        #[param(value_type = Option<crate::openapi::CohortInterval>)]
        interval,
        /// How many periods the window holds, ending with the one containing `to` (default 12, at most 104).
        #[param(value_type = Option<u32>, minimum = 1, maximum = 104)]
        window,
        /// A date in the window's last period (default: today, in `MOMENTUM_TIMEZONE`).
        #[param(value_type = Option<crate::openapi::LocalDate>)]
        to,
    }
}

impl TryFrom<RequestParts<&StickinessParameters>> for StickinessRequest {
    type Error = Problem;

    fn try_from(asked: RequestParts<&StickinessParameters>) -> Result<StickinessRequest, Problem> {
        let parameters = asked.parameters;
        let interval = interval(parameters.interval.as_deref(), &STICKINESS_INTERVALS)?;
        let window = match parameters.window.as_deref() {
            None => WINDOW_DEFAULT,
            Some(text) => {
                text.parse::<u32>().ok().filter(|window| (1..=STICKINESS_WINDOW_MAX).contains(window)).ok_or_else(
                    || {
                        Problem::bad_parameter(
                            "window",
                            format!("must be a whole number from 1 to {STICKINESS_WINDOW_MAX}"),
                        )
                    },
                )?
            }
        };
        let to = date(parameters.to.as_deref(), "to")?.unwrap_or(asked.today);
        let from = interval.shift(interval.period_start(to), 1 - window as i32);
        // `to` out of the readable years is its own fault; a first period
        // before them is the window's.
        DateRange::new(to, to).map_err(|error| Problem::bad_parameter("to", error.to_string()))?;
        let range = DateRange::new(from, to).map_err(|_| {
            Problem::bad_parameter("window", "reaches before the earliest readable date; use a shorter window")
        })?;
        let periods = Periods::new(interval, range).map_err(range_problem)?;
        Ok(StickinessRequest {
            movement: asked.movement,
            periods,
            filter: parameters.filter()?,
            split: parameters.split(periods.starts().len())?,
            today: Some(asked.today),
        })
    }
}

#[utoipa::path(
    get, path = "/v1/movements/{movement}/stickiness", tag = "reads",
    summary = "A movement's stickiness",
    description = "Of the participants of the `window` periods ending with the one containing `to`: how many took \
        part in exactly 1, 2, … of those periods, and how many in exactly n activities (the frequency).",
    params(super::MovementParameter, StickinessParameters, ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: answered 304, without the answer, when nothing it depends on has changed.")),
    responses(
        (status = 200, description = "The stickiness.", headers(("Momentum-Watermark" = u64, description = "In a CSV answer, the last stream sequence its figures include; a JSON answer holds it as `watermark`."),
            ("ETag" = String, description = "A tag of this answer: send it back in `If-None-Match` to be answered 304 while nothing it depends on has changed.")),
            content(
            (Stickiness = "application/json", example = json!({
                "movement": "bristol-befriending", "interval": "week", "from": "2026-01-05", "to": "2026-03-29",
                "window": 12, "watermark": 42,
                "periods_active": [{ "periods": 1, "participants": 30 }, { "periods": 2, "participants": 12 }],
                "frequency": [{ "activities": 1, "participants": 25 }, { "activities": 2, "participants": 17 }],
            })),
            (String = "text/csv", example = "measure,count,participants\nperiods_active,1,30\nactivities,1,25\n"),
            (crate::openapi::ParquetFile = "application/vnd.apache.parquet"),
        )),
        (status = 304, description = "Nothing the answer depends on has changed since the `ETag` named in `If-None-Match`.",
            headers(("ETag" = String, description = "The same tag."))),
        (status = 400, response = inline(StickinessBadRequest)),
        (status = 403, response = inline(ReadForbidden)),
        (status = 404, response = inline(UnknownMovement)),
        (status = 503, response = inline(ReadUnavailable)),
    ),
)]
pub(crate) async fn stickiness(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
    headers: HeaderMap,
    MovementPath(movement): MovementPath,
    Parameters(parameters): Parameters<StickinessParameters>,
) -> Response {
    let asked = (|| {
        caller.require_read(movement.as_str())?;
        let reading = parameters.reading(&headers)?;
        let request =
            StickinessRequest::try_from(RequestParts { parameters: &parameters, movement, today: today(&state) })?;
        let reading = reading.waiting_for(request.filter.as_of_seq);
        Ok::<_, Problem>((request, reading, parameters.as_of_time()?))
    })();
    let asked = match answer::at_time(&state, asked).await {
        Ok(asked) => asked,
        Err(response) => return response,
    };
    let (reading_state, reading_caller) = (state.clone(), caller.clone());
    answer::read_cached::<Stickiness, _, _>(&state, &caller, &headers, asked, |request, min_seq| async move {
        let mut answer = answer::ask(&reading_state, AskedRead { min_seq, read: request }).await?;
        if let Some(below) = answer::suppression_for(&reading_state, &reading_caller) {
            suppress_stickiness(&mut answer, below);
        }
        Ok(answer::to_bytes(&answer))
    })
    .await
}

/// One table: `measure,count,participants,window_complete`, the periods
/// active then the frequency; long and wide are the same.
impl TableAnswer for Stickiness {
    fn to_table(&self, _layout: Layout) -> TableFile {
        let split = self.periods_active.iter().find_map(|row| row.split.as_ref()).map(|split| split.by);
        let mut columns = vec![
            Column::new(
                "measure",
                ColumnType::Text,
                "periods_active: in how many of the window's periods people took part; activities: in how many \
                 activities.",
            ),
            Column::new("count", ColumnType::Integer, "The number of periods, or of activities."),
        ];
        columns.extend(split_column(split));
        columns.extend([
            Column::new("participants", ColumnType::Integer, "Distinct participants who took part exactly that often."),
            Column::new("window_complete", ColumnType::Boolean, "Whether the window's last period was over."),
        ]);
        let mut table = Table::new(columns);
        let rows = self
            .periods_active
            .iter()
            .map(|row| ("periods_active", u64::from(row.periods), &row.split, row.participants));
        let rows =
            rows.chain(self.frequency.iter().map(|row| ("activities", row.activities, &row.split, row.participants)));
        for (measure, count, split, participants) in rows {
            let mut cells = vec![Cell::from(measure), Cell::from(count)];
            cells.extend(split_cells(split));
            cells.extend([Cell::optional(participants), Cell::optional(self.complete)]);
            table.push(cells);
        }
        let stem = format!("{}-stickiness-{}-{}-to-{}", self.movement, self.interval.as_str(), self.from, self.to);
        TableFile { table, stem: file_stem(stem, self.watermark, Layout::Wide), watermark: self.watermark }
    }
}

problem_responses! {
    StickinessBadRequest => ("A parameter is not valid, or not one the route takes.", [
        examples::bad_movement("movement"), examples::bad_interval(&STICKINESS_INTERVALS), examples::bad_date(),
        Problem::bad_parameter("window", format!("must be a whole number from 1 to {STICKINESS_WINDOW_MAX}")),
        examples::bad_min_seq(), examples::bad_area(), examples::bad_role(), examples::bad_by(), examples::bad_as_of(),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(parameters: StickinessParameters) -> String {
        let movement = momentum_domain::query::MovementId::parse("m").unwrap();
        let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        let parts = RequestParts { parameters: &parameters, movement, today };
        StickinessRequest::try_from(parts).unwrap_err().errors[0].pointer.clone()
    }

    #[test]
    fn a_refused_range_names_to_or_window_whichever_is_at_fault() {
        let to = |text: &str| StickinessParameters { to: Some(text.to_owned()), ..Default::default() };
        assert_eq!(refused(to("3000-01-01")), "to");
        assert_eq!(refused(to("1899-12-31")), "to");
        let early = StickinessParameters { window: Some("104".to_owned()), ..to("1900-06-01") };
        assert_eq!(refused(early), "window");
        assert_eq!(refused(StickinessParameters { window: Some("0".to_owned()), ..Default::default() }), "window");
    }
}
