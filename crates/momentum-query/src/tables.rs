//! Answers as tables, for spreadsheets, R, pandas and DuckDB: every read
//! can be asked for as CSV (`format=csv` or `Accept: text/csv`) or Parquet
//! (`format=parquet` or `Accept: application/vnd.apache.parquet`), wide
//! (one row per period, a column per metric) or, with `layout=long`, tidy
//! (`period,movement,metric,value`: one row per value). Each answer's
//! table is built once here, with typed columns, and written in either
//! format by `momentum_tables`. Nulls are empty cells.

use std::collections::{HashMap, HashSet};

use axum::http::{HeaderMap, header};
use chrono::NaiveDate;
use momentum_domain::query::{Cohorts, Comparison, Metric, MovementList, PeriodValue, Principles, Status, Trend};
use momentum_domain::selection::{Breakdown, SplitValue};
use momentum_runtime::Problem;
pub(crate) use momentum_tables::FileFormat;
use momentum_tables::{Cell, Column, ColumnType, Table, WriteError};

use crate::definitions::metric_definition;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Table(FileFormat, Layout),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One row per period (or cohort, or principle), one column per value.
    Wide,
    /// One row per value: `period,movement,metric,value`.
    Long,
}

/// The format asked for: `format` (json, csv or parquet) wins over `Accept`.
pub(crate) fn requested_format(
    format: Option<&str>,
    layout: Option<&str>,
    headers: &HeaderMap,
) -> Result<Format, Problem> {
    let layout = match layout {
        None | Some("wide") => Layout::Wide,
        Some("long") => Layout::Long,
        Some(other) => return Err(Problem::bad_parameter("layout", format!("must be wide or long, got {other:?}"))),
    };
    match format {
        Some("csv") => return Ok(Format::Table(FileFormat::Csv, layout)),
        Some("parquet") => return Ok(Format::Table(FileFormat::Parquet, layout)),
        Some("json") => return Ok(Format::Json),
        Some(other) => {
            return Err(Problem::bad_parameter("format", format!("must be json, csv or parquet, got {other:?}")));
        }
        None => {}
    }
    Ok(match accepted_file_format(headers) {
        Some(file) => Format::Table(file, layout),
        None => Format::Json,
    })
}

/// The table format the request's `Accept` names, if any: `text/csv` or
/// `application/vnd.apache.parquet`.
pub(crate) fn accepted_file_format(headers: &HeaderMap) -> Option<FileFormat> {
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or("");
    accept.split(',').find_map(|item| match item.split(';').next().unwrap_or("").trim() {
        "text/csv" => Some(FileFormat::Csv),
        momentum_tables::parquet::MEDIA_TYPE => Some(FileFormat::Parquet),
        _ => None,
    })
}

/// An answer's table, the name to offer it under (without its extension),
/// and the watermark of the figures it holds.
pub(crate) struct TableFile {
    pub table: Table,
    pub stem: String,
    pub watermark: u64,
}

impl TableFile {
    /// The file as bytes of `format`, and the name to offer it under.
    pub(crate) fn write(self, format: FileFormat) -> Result<(Vec<u8>, String), WriteError> {
        let name = format!("{}.{}", self.stem, format.extension());
        Ok((momentum_tables::write(self.table, format, self.watermark)?, name))
    }
}

/// An answer that can be written as a table: every read's.
pub(crate) trait TableAnswer: serde::de::DeserializeOwned {
    fn to_table(&self, layout: Layout) -> TableFile;
}

/// Turns an answer's JSON into its table. Fails only if the JSON is not
/// the answer's, which would be a bug.
pub(crate) fn to_table<A: TableAnswer>(json: &[u8], layout: Layout) -> Result<TableFile, serde_json::Error> {
    Ok(serde_json::from_slice::<A>(json)?.to_table(layout))
}

impl TableAnswer for Trend {
    fn to_table(&self, layout: Layout) -> TableFile {
        trend(self, layout)
    }
}

impl TableAnswer for Cohorts {
    fn to_table(&self, layout: Layout) -> TableFile {
        cohorts(self, layout)
    }
}

impl TableAnswer for Principles {
    /// One layout only: a row per principle is already long.
    fn to_table(&self, _layout: Layout) -> TableFile {
        principles(self)
    }
}

impl TableAnswer for Comparison {
    fn to_table(&self, layout: Layout) -> TableFile {
        comparison(self, layout)
    }
}

impl TableAnswer for MovementList {
    fn to_table(&self, _layout: Layout) -> TableFile {
        let mut table =
            Table::new(vec![movement_column(), Column::new("events", ColumnType::Integer, "Its effective events.")]);
        for movement in &self.movements {
            table.push(vec![movement.movement.as_str().into(), movement.events.into()]);
        }
        TableFile { table, stem: format!("movements-at-{}", self.watermark), watermark: self.watermark }
    }
}

impl TableAnswer for Status {
    fn to_table(&self, _layout: Layout) -> TableFile {
        let mut table = Table::new(vec![
            Column::new("watermark", ColumnType::Integer, "The last stream sequence the projection has applied."),
            Column::new("applied_since_start", ColumnType::Integer, "Events applied since the projector started."),
        ]);
        table.push(vec![self.watermark.into(), self.applied_since_start.into()]);
        TableFile { table, stem: format!("status-at-{}", self.watermark), watermark: self.watermark }
    }
}

/// The first columns of a row per period: its first day, its label,
/// whether it was over.
pub(crate) fn period_columns(period: &'static str) -> [Column; 3] {
    [
        Column::new(period, ColumnType::Date, "The period's first local date (a Monday for a week)."),
        Column::new("label", ColumnType::Text, "The period's name for people: 2026-W10, 2026-03, 2026 Q2, 2026-27."),
        Column::new(
            "complete",
            ColumnType::Boolean,
            "Whether the period was over on the day of the read; a period still running is false.",
        ),
    ]
}

pub(crate) fn movement_column() -> Column {
    Column::new("movement", ColumnType::Text, "The movement's id.")
}

/// The column a split read's rows gain, named after its dimension.
pub(crate) fn split_column(by: Option<Breakdown>) -> Option<Column> {
    by.map(|by| {
        Column::owned(
            by.as_str(),
            ColumnType::Text,
            format!("The {} the row's figures are of (`by={}`).", by.as_str(), by.as_str()),
        )
    })
}

/// A row's value of the split column, when the read is split.
pub(crate) fn split_cells(split: &Option<SplitValue>) -> Option<Cell> {
    split.as_ref().map(|split| Cell::Text(split.value.clone()))
}

/// A metric's column in a wide table: whole numbers for counts.
pub(crate) fn metric_column(metric: Metric) -> Column {
    let kind = if metric.is_count() { ColumnType::Integer } else { ColumnType::Number };
    Column::owned(metric.as_str(), kind, metric_definition(metric))
}

/// The columns of a long trend or comparison:
/// `period,label,complete,movement,[split,]metric,value`.
fn long_columns(split: Option<Column>) -> Vec<Column> {
    let mut columns: Vec<Column> = period_columns("period").into();
    columns.push(movement_column());
    columns.extend(split);
    columns.extend([
        Column::new(
            "metric",
            ColumnType::Text,
            "The metric's name, as defined in the package's README or docs/metrics.md.",
        ),
        Column::new("value", ColumnType::Number, "The metric's value: empty where it is undefined or suppressed."),
    ]);
    columns
}

/// What the rows of one period of a long trend or comparison share.
struct LongHead<'a> {
    period: NaiveDate,
    label: &'a str,
    complete: Option<bool>,
    split: &'a Option<SplitValue>,
}

impl LongHead<'_> {
    /// The row of one movement's value of one metric.
    fn row(&self, movement: &str, metric: Metric, value: &serde_json::Value) -> Vec<Cell> {
        let mut cells = vec![self.period.into(), self.label.into(), Cell::optional(self.complete), movement.into()];
        cells.extend(split_cells(self.split));
        cells.extend([metric.as_str().into(), Cell::from_json(value)]);
        cells
    }
}

fn trend(trend: &Trend, layout: Layout) -> TableFile {
    let stem = format!("{}-{}-{}-to-{}", trend.movement, trend.interval.as_str(), trend.from, trend.to);
    let stem = file_stem(stem, trend.watermark, layout);
    let split = split_column(trend.series.first().and_then(|row| row.split.as_ref()).map(|split| split.by));
    let mut columns: Vec<Column> = period_columns("period").into();
    let table = match layout {
        Layout::Wide => {
            let metrics: Vec<Metric> =
                trend.series.first().map(|row| row.values.iter().map(|(m, _)| *m).collect()).unwrap_or_default();
            columns.extend(split);
            columns.extend(metrics.iter().map(|metric| metric_column(*metric)));
            let mut table = Table::new(columns);
            for row in &trend.series {
                let mut cells = vec![row.period.into(), row.label.as_str().into(), Cell::optional(row.complete)];
                cells.extend(split_cells(&row.split));
                cells.extend(row.values.iter().map(|(_, value)| Cell::from_json(value)));
                table.push(cells);
            }
            table
        }
        Layout::Long => {
            let mut table = Table::new(long_columns(split));
            for row in &trend.series {
                let head =
                    LongHead { period: row.period, label: &row.label, complete: row.complete, split: &row.split };
                for (metric, value) in &row.values {
                    table.push(head.row(&trend.movement, *metric, value));
                }
            }
            table
        }
    };
    TableFile { table, stem, watermark: trend.watermark }
}

fn cohorts(cohorts: &Cohorts, layout: Layout) -> TableFile {
    let stem = format!("{}-cohorts-{}-{}-to-{}", cohorts.movement, cohorts.interval.as_str(), cohorts.from, cohorts.to);
    let stem = file_stem(stem, cohorts.watermark, layout);
    let split = split_column(cohorts.cohorts.first().and_then(|row| row.split.as_ref()).map(|split| split.by));
    let mut columns: Vec<Column> = period_columns("cohort").into();
    columns[0].description = "The cohort's period: its first local date. Its members first took part in it.".into();
    let size = Column::new("size", ColumnType::Integer, "The cohort's members: new_participants of its period.");
    let table = match layout {
        Layout::Wide => {
            let width = cohorts.cohorts.iter().map(|cohort| cohort.active.len()).max().unwrap_or(0);
            columns.extend(split);
            columns.push(size);
            columns.extend((0..width).map(|offset| {
                Column::owned(
                    format!("active_{offset}"),
                    ColumnType::Integer,
                    format!("Members who took part {offset} periods after the cohort's."),
                )
            }));
            columns.extend((0..width).map(|offset| {
                Column::owned(format!("share_{offset}"), ColumnType::Number, format!("active_{offset} ÷ size."))
            }));
            let mut table = Table::new(columns);
            for cohort in &cohorts.cohorts {
                let mut cells =
                    vec![cohort.cohort.into(), cohort.label.as_str().into(), Cell::optional(cohort.complete)];
                cells.extend(split_cells(&cohort.split));
                cells.push(Cell::optional(cohort.size));
                cells.extend((0..width).map(|offset| Cell::optional(cohort.active.get(offset).copied().flatten())));
                cells.extend((0..width).map(|offset| Cell::optional(cohort.shares.get(offset).copied().flatten())));
                table.push(cells);
            }
            table
        }
        Layout::Long => {
            columns.push(movement_column());
            columns.extend(split);
            columns.extend([
                Column::new("offset", ColumnType::Integer, "Periods after the cohort's: 0 is the cohort's own."),
                Column::new("period", ColumnType::Date, "The period `offset` periods after the cohort's."),
                size,
                Column::new(
                    "active",
                    ColumnType::Integer,
                    "Members who took part in `period` (with mode=on_or_after, in it or a later one).",
                ),
                Column::new("share", ColumnType::Number, "active ÷ size."),
            ]);
            let mut table = Table::new(columns);
            for cohort in &cohorts.cohorts {
                for (offset, active) in cohort.active.iter().enumerate() {
                    let period = cohorts.interval.shift(cohort.cohort, offset as i32);
                    let mut cells = vec![
                        cohort.cohort.into(),
                        cohort.label.as_str().into(),
                        Cell::optional(cohort.complete),
                        cohorts.movement.as_str().into(),
                    ];
                    cells.extend(split_cells(&cohort.split));
                    cells.extend([
                        Cell::Integer(offset as i64),
                        period.into(),
                        Cell::optional(cohort.size),
                        Cell::optional(*active),
                        Cell::optional(cohort.shares.get(offset).copied().flatten()),
                    ]);
                    table.push(cells);
                }
            }
            table
        }
    };
    TableFile { table, stem, watermark: cohorts.watermark }
}

fn principles(principles: &Principles) -> TableFile {
    let split = split_column(principles.principles.first().and_then(|row| row.split.as_ref()).map(|split| split.by));
    let mut columns = vec![Column::new("principle", ColumnType::Text, "One of the eight principles.")];
    columns.extend(split);
    columns.extend([
        Column::new(
            "activities",
            ColumnType::Integer,
            "Effective meetings, collective actions and hour logs in range tagged with the principle.",
        ),
        Column::new("participants", ColumnType::Integer, "Distinct participants of those activities."),
    ]);
    let mut table = Table::new(columns);
    for figures in &principles.principles {
        let mut cells = vec![Cell::from(figures.principle.as_str())];
        cells.extend(split_cells(&figures.split));
        cells.extend([figures.activities.into(), Cell::optional(figures.participants)]);
        table.push(cells);
    }
    let stem = format!("{}-principles-{}-to-{}", principles.movement, principles.from, principles.to);
    TableFile { table, stem: file_stem(stem, principles.watermark, Layout::Wide), watermark: principles.watermark }
}

fn comparison(comparison: &Comparison, layout: Layout) -> TableFile {
    let stem = format!(
        "compare-{}-{}-{}-to-{}",
        comparison.metric.as_str(),
        comparison.interval.as_str(),
        comparison.from,
        comparison.to
    );
    let stem = file_stem(stem, comparison.watermark, layout);
    let values = comparison.series.iter().flat_map(|series| &series.values);
    let split = split_column(values.clone().find_map(|value| value.split.as_ref()).map(|split| split.by));
    let mut columns: Vec<Column> = period_columns("period").into();
    let table = match layout {
        Layout::Wide => {
            columns.extend(split);
            let metric = metric_column(comparison.metric);
            columns.extend(comparison.series.iter().map(|series| {
                Column::owned(
                    series.movement.clone(),
                    metric.kind,
                    format!("{} of movement {}: {}", comparison.metric.as_str(), series.movement, metric.description),
                )
            }));
            // One row per period (and value, in a split comparison, where
            // each movement has its own values): a movement without the
            // row's value has an empty cell.
            let key = |value: &'_ PeriodValue| (value.period, value.split.as_ref().map(|split| split.value.clone()));
            let mut rows: Vec<(NaiveDate, Option<String>)> = Vec::new();
            let mut heads: HashMap<NaiveDate, (&str, Option<bool>)> = HashMap::new();
            let mut seen = HashSet::new();
            for value in values {
                heads.entry(value.period).or_insert((&value.label, value.complete));
                if seen.insert(key(value)) {
                    rows.push(key(value));
                }
            }
            rows.sort_by_key(|(period, _)| *period);
            let cells: Vec<HashMap<_, &serde_json::Value>> = comparison
                .series
                .iter()
                .map(|series| series.values.iter().map(|value| (key(value), &value.value)).collect())
                .collect();
            let mut table = Table::new(columns);
            for row in rows {
                let (label, complete) = heads[&row.0];
                let mut line = vec![row.0.into(), label.into(), Cell::optional(complete)];
                line.extend(row.1.as_deref().map(Cell::from));
                line.extend(
                    cells.iter().map(|series| series.get(&row).map_or(Cell::Null, |value| Cell::from_json(value))),
                );
                table.push(line);
            }
            table
        }
        Layout::Long => {
            let mut table = Table::new(long_columns(split));
            for series in &comparison.series {
                for value in &series.values {
                    let head = LongHead {
                        period: value.period,
                        label: &value.label,
                        complete: value.complete,
                        split: &value.split,
                    };
                    table.push(head.row(&series.movement, comparison.metric, &value.value));
                }
            }
            table
        }
    };
    TableFile { table, stem, watermark: comparison.watermark }
}

/// The name a download is offered under, without its extension: what it
/// holds, the watermark of its figures, and whether it is long.
pub(crate) fn file_stem(stem: String, watermark: u64, layout: Layout) -> String {
    match layout {
        Layout::Wide => format!("{stem}-at-{watermark}"),
        Layout::Long => format!("{stem}-at-{watermark}-long"),
    }
}

#[cfg(test)]
mod tests {
    use momentum_tables::csv::to_csv;
    use serde_json::json;

    use super::*;

    fn trend_json() -> Vec<u8> {
        json!({
            "movement": "leeds", "interval": "week", "from": "2026-03-02", "to": "2026-03-09",
            "watermark": 7, "volunteer_hour_value_gbp": 10.0,
            "volunteer_hour_value": { "basis": "custom", "value_gbp": 10.0 },
            "series": [
                { "period": "2026-03-02", "label": "2026-W10", "complete": true,
                  "active_participants": 5, "retention_rate": null, "volunteer_hours": 2.5 },
                { "period": "2026-03-09", "label": "2026-W11", "complete": false,
                  "active_participants": 4, "retention_rate": 0.6, "volunteer_hours": 0.0 },
            ],
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_wide_trend_has_a_header_row_a_row_per_period_and_empty_cells_for_nulls() {
        let file = to_table::<Trend>(&trend_json(), Layout::Wide).unwrap();
        assert_eq!(
            to_csv(&file.table).unwrap(),
            "period,label,complete,active_participants,retention_rate,volunteer_hours\n\
             2026-03-02,2026-W10,true,5,,2.5\n2026-03-09,2026-W11,false,4,0.6,0.0\n"
        );
        let kinds: Vec<ColumnType> = file.table.columns().iter().map(|column| column.kind).collect();
        use ColumnType::*;
        assert_eq!(kinds, [Date, Text, Boolean, Integer, Number, Number], "counts are whole numbers");
        assert_eq!(file.watermark, 7);
        assert_eq!(file.table.columns()[3].description, metric_definition(Metric::ActiveParticipants));
        let again = || to_table::<Trend>(&trend_json(), Layout::Wide).unwrap();
        assert_eq!(again().write(FileFormat::Csv).unwrap().1, "leeds-week-2026-03-02-to-2026-03-09-at-7.csv");
        let (parquet, name) = file.write(FileFormat::Parquet).unwrap();
        assert_eq!(name, "leeds-week-2026-03-02-to-2026-03-09-at-7.parquet");
        assert!(parquet.starts_with(b"PAR1"));
    }

    #[test]
    fn a_long_trend_has_one_row_per_value() {
        let file = to_table::<Trend>(&trend_json(), Layout::Long).unwrap();
        let body = to_csv(&file.table).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines[0], "period,label,complete,movement,metric,value");
        assert_eq!(lines.len(), 1 + 2 * 3);
        assert_eq!(lines[2], "2026-03-02,2026-W10,true,leeds,retention_rate,");
        assert_eq!(lines[5], "2026-03-09,2026-W11,false,leeds,retention_rate,0.6");
        assert_eq!(file.stem, "leeds-week-2026-03-02-to-2026-03-09-at-7-long");
    }

    #[test]
    fn the_format_parameter_wins_over_the_accept_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, "text/csv, application/json;q=0.5".parse().unwrap());
        assert_eq!(requested_format(None, None, &headers).unwrap(), Format::Table(FileFormat::Csv, Layout::Wide));
        assert_eq!(requested_format(Some("json"), None, &headers).unwrap(), Format::Json);
        assert_eq!(
            requested_format(Some("csv"), Some("long"), &HeaderMap::new()).unwrap(),
            Format::Table(FileFormat::Csv, Layout::Long)
        );
        assert_eq!(
            requested_format(Some("parquet"), Some("long"), &headers).unwrap(),
            Format::Table(FileFormat::Parquet, Layout::Long)
        );
        assert!(requested_format(Some("xml"), None, &headers).is_err());
        let mut parquet = HeaderMap::new();
        parquet.insert(header::ACCEPT, "application/vnd.apache.parquet".parse().unwrap());
        assert_eq!(requested_format(None, None, &parquet).unwrap(), Format::Table(FileFormat::Parquet, Layout::Wide));
    }
}
