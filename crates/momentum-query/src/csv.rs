//! CSV answers for spreadsheets, R and pandas: every read can be asked for as
//! `text/csv` (`Accept: text/csv` or `format=csv`), wide (one row per period,
//! a column per metric) or, with `layout=long`, tidy
//! (`period,movement,metric,value`: one row per value). Nulls are empty cells.

use std::fmt::Write;

use axum::http::{HeaderMap, header};
use chrono::NaiveDate;
use std::collections::{HashMap, HashSet};

use momentum_domain::query::{Cohorts, Comparison, MovementList, PeriodValue, Principles, Status, Trend};
use momentum_domain::selection::{Breakdown, SplitValue};
use momentum_runtime::Problem;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv(Layout),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One row per period (or cohort, or principle), one column per value.
    Wide,
    /// One row per value: `period,movement,metric,value`.
    Long,
}

/// The format asked for: `format` (json or csv) wins over `Accept`.
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
        Some("csv") => return Ok(Format::Csv(layout)),
        Some("json") => return Ok(Format::Json),
        Some(other) => return Err(Problem::bad_parameter("format", format!("must be json or csv, got {other:?}"))),
        None => {}
    }
    Ok(if accepts_csv(headers) { Format::Csv(layout) } else { Format::Json })
}

/// Whether the request's `Accept` names `text/csv`.
pub(crate) fn accepts_csv(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or("");
    accept.split(',').any(|item| item.split(';').next().unwrap_or("").trim() == "text/csv")
}

/// A CSV document, the file name to offer it under, and the watermark of
/// the figures it holds.
pub(crate) struct CsvFile {
    pub body: String,
    pub filename: String,
    pub watermark: u64,
}

/// An answer that can be written as CSV: every read's.
pub(crate) trait CsvAnswer: serde::de::DeserializeOwned {
    fn to_csv(&self, layout: Layout) -> CsvFile;
}

/// Turns an answer's JSON into CSV. Fails only if the JSON is not the
/// answer's, which would be a bug.
pub(crate) fn to_csv<A: CsvAnswer>(json: &[u8], layout: Layout) -> Result<CsvFile, serde_json::Error> {
    Ok(serde_json::from_slice::<A>(json)?.to_csv(layout))
}

impl CsvAnswer for Trend {
    fn to_csv(&self, layout: Layout) -> CsvFile {
        trend(self, layout)
    }
}

impl CsvAnswer for Cohorts {
    fn to_csv(&self, layout: Layout) -> CsvFile {
        cohorts(self, layout)
    }
}

impl CsvAnswer for Principles {
    /// One layout only: a row per principle is already long.
    fn to_csv(&self, _layout: Layout) -> CsvFile {
        principles(self)
    }
}

impl CsvAnswer for Comparison {
    fn to_csv(&self, layout: Layout) -> CsvFile {
        comparison(self, layout)
    }
}

impl CsvAnswer for MovementList {
    fn to_csv(&self, _layout: Layout) -> CsvFile {
        let mut body = String::from("movement,events\n");
        for movement in &self.movements {
            let _ = writeln!(body, "{},{}", field(&movement.movement), movement.events);
        }
        CsvFile { body, filename: format!("movements-at-{}.csv", self.watermark), watermark: self.watermark }
    }
}

impl CsvAnswer for Status {
    fn to_csv(&self, _layout: Layout) -> CsvFile {
        let body = format!("watermark,applied_since_start\n{},{}\n", self.watermark, self.applied_since_start);
        CsvFile { body, filename: format!("status-at-{}.csv", self.watermark), watermark: self.watermark }
    }
}

/// The column a split read's rows gain, named after its dimension, with
/// its comma; nothing for a read that is not split.
pub(crate) fn split_header(by: Option<Breakdown>) -> String {
    by.map(|by| format!("{},", by.as_str())).unwrap_or_default()
}

/// A row's value of that column, with its comma; nothing when not split.
pub(crate) fn split_cell(split: &Option<SplitValue>) -> String {
    split.as_ref().map(|split| format!("{},", field(&split.value))).unwrap_or_default()
}

/// Whether a period is complete, as a CSV cell: empty when the answer does not say.
pub(crate) fn complete_cell(complete: Option<bool>) -> &'static str {
    match complete {
        Some(true) => "true",
        Some(false) => "false",
        None => "",
    }
}

fn trend(trend: &Trend, layout: Layout) -> CsvFile {
    let stem = format!("{}-{}-{}-to-{}", trend.movement, trend.interval.as_str(), trend.from, trend.to);
    let filename = file_name(stem, trend.watermark, layout);
    let mut body = String::new();
    let by = split_header(trend.series.first().and_then(|row| row.split.as_ref()).map(|split| split.by));
    match layout {
        Layout::Wide => {
            let metrics: Vec<_> =
                trend.series.first().map(|row| row.values.iter().map(|(m, _)| *m).collect()).unwrap_or_default();
            let _ = write!(body, "period,label,complete,{by}");
            body.pop();
            for metric in &metrics {
                body.push(',');
                body.push_str(metric.as_str());
            }
            body.push('\n');
            for row in &trend.series {
                let _ = write!(body, "{},{},{}", row.period, field(&row.label), complete_cell(row.complete));
                if let Some(split) = &row.split {
                    body.push(',');
                    body.push_str(&field(&split.value));
                }
                for (_, value) in &row.values {
                    body.push(',');
                    body.push_str(&cell(value));
                }
                body.push('\n');
            }
        }
        Layout::Long => {
            let _ = writeln!(body, "period,label,complete,movement,{by}metric,value");
            for row in &trend.series {
                let split = split_cell(&row.split);
                let (label, complete) = (field(&row.label), complete_cell(row.complete));
                for (metric, value) in &row.values {
                    let movement = field(&trend.movement);
                    let (metric, value) = (metric.as_str(), cell(value));
                    let _ = writeln!(body, "{},{label},{complete},{movement},{split}{metric},{value}", row.period);
                }
            }
        }
    }
    CsvFile { body, filename, watermark: trend.watermark }
}

fn cohorts(cohorts: &Cohorts, layout: Layout) -> CsvFile {
    let stem = format!("{}-cohorts-{}-{}-to-{}", cohorts.movement, cohorts.interval.as_str(), cohorts.from, cohorts.to);
    let filename = file_name(stem, cohorts.watermark, layout);
    let mut body = String::new();
    let by = split_header(cohorts.cohorts.first().and_then(|row| row.split.as_ref()).map(|split| split.by));
    match layout {
        Layout::Wide => {
            let width = cohorts.cohorts.iter().map(|cohort| cohort.active.len()).max().unwrap_or(0);
            let _ = write!(body, "cohort,label,complete,{by}size");
            for offset in 0..width {
                let _ = write!(body, ",active_{offset}");
            }
            for offset in 0..width {
                let _ = write!(body, ",share_{offset}");
            }
            body.push('\n');
            for cohort in &cohorts.cohorts {
                let _ = write!(
                    body,
                    "{},{},{},{}{}",
                    cohort.cohort,
                    field(&cohort.label),
                    complete_cell(cohort.complete),
                    split_cell(&cohort.split),
                    count_cell(cohort.size)
                );
                for offset in 0..width {
                    body.push(',');
                    if let Some(active) = cohort.active.get(offset) {
                        body.push_str(&count_cell(*active));
                    }
                }
                for offset in 0..width {
                    body.push(',');
                    if let Some(share) = cohort.shares.get(offset) {
                        body.push_str(&share_cell(*share));
                    }
                }
                body.push('\n');
            }
        }
        Layout::Long => {
            let _ = writeln!(body, "cohort,label,complete,movement,{by}offset,period,size,active,share");
            for cohort in &cohorts.cohorts {
                for (offset, active) in cohort.active.iter().enumerate() {
                    let period = cohorts.interval.shift(cohort.cohort, offset as i32);
                    let share = share_cell(cohort.shares.get(offset).copied().flatten());
                    let _ = writeln!(
                        body,
                        "{},{},{},{},{}{offset},{period},{},{},{share}",
                        cohort.cohort,
                        field(&cohort.label),
                        complete_cell(cohort.complete),
                        field(&cohorts.movement),
                        split_cell(&cohort.split),
                        count_cell(cohort.size),
                        count_cell(*active)
                    );
                }
            }
        }
    }
    CsvFile { body, filename, watermark: cohorts.watermark }
}

/// A share as a CSV cell, written as JSON writes it: empty where it is
/// `null` (suppressed).
fn share_cell(share: Option<f64>) -> String {
    share.map(|share| Value::from(share).to_string()).unwrap_or_default()
}

/// A count as a CSV cell: empty where it is `null` (suppressed).
fn count_cell<T: std::fmt::Display>(count: Option<T>) -> String {
    count.map(|count| count.to_string()).unwrap_or_default()
}

fn principles(principles: &Principles) -> CsvFile {
    let by = split_header(principles.principles.first().and_then(|row| row.split.as_ref()).map(|split| split.by));
    let mut body = format!("principle,{by}activities,participants\n");
    for figures in &principles.principles {
        let _ = writeln!(
            body,
            "{},{}{},{}",
            figures.principle.as_str(),
            split_cell(&figures.split),
            figures.activities,
            count_cell(figures.participants)
        );
    }
    let stem = format!("{}-principles-{}-to-{}", principles.movement, principles.from, principles.to);
    let filename = file_name(stem, principles.watermark, Layout::Wide);
    CsvFile { body, filename, watermark: principles.watermark }
}

fn comparison(comparison: &Comparison, layout: Layout) -> CsvFile {
    let stem = format!(
        "compare-{}-{}-{}-to-{}",
        comparison.metric.as_str(),
        comparison.interval.as_str(),
        comparison.from,
        comparison.to
    );
    let filename = file_name(stem, comparison.watermark, layout);
    let mut body = String::new();
    let values = comparison.series.iter().flat_map(|series| &series.values);
    let by = split_header(values.clone().find_map(|value| value.split.as_ref()).map(|split| split.by));
    match layout {
        Layout::Wide => {
            let _ = write!(body, "period,label,complete,{by}");
            body.pop();
            for series in &comparison.series {
                body.push(',');
                body.push_str(&field(&series.movement));
            }
            body.push('\n');
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
            let cells: Vec<HashMap<_, &Value>> = comparison
                .series
                .iter()
                .map(|series| series.values.iter().map(|value| (key(value), &value.value)).collect())
                .collect();
            for row in rows {
                let (label, complete) = heads[&row.0];
                let _ = write!(body, "{},{},{}", row.0, field(label), complete_cell(complete));
                if let Some(split) = &row.1 {
                    body.push(',');
                    body.push_str(&field(split));
                }
                for series in &cells {
                    body.push(',');
                    body.push_str(&series.get(&row).map(|value| cell(value)).unwrap_or_default());
                }
                body.push('\n');
            }
        }
        Layout::Long => {
            let _ = writeln!(body, "period,label,complete,movement,{by}metric,value");
            for series in &comparison.series {
                for value in &series.values {
                    let _ = writeln!(
                        body,
                        "{},{},{},{},{}{},{}",
                        value.period,
                        field(&value.label),
                        complete_cell(value.complete),
                        field(&series.movement),
                        split_cell(&value.split),
                        comparison.metric.as_str(),
                        cell(&value.value)
                    );
                }
            }
        }
    }
    CsvFile { body, filename, watermark: comparison.watermark }
}

/// The file name a download is offered under: what it holds, the watermark
/// of its figures, and whether it is long.
pub(crate) fn file_name(stem: String, watermark: u64, layout: Layout) -> String {
    match layout {
        Layout::Wide => format!("{stem}-at-{watermark}.csv"),
        Layout::Long => format!("{stem}-at-{watermark}-long.csv"),
    }
}

/// A value as a CSV cell: numbers as JSON writes them, null as nothing.
pub(crate) fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => field(text),
        other => other.to_string(),
    }
}

/// Quotes a text field when it holds a comma, a quote or a line break.
/// Text a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return) gets a leading `'`. Today only
/// movement ids reach here, and their pattern rules that out; the guard is
/// for whatever text is exported next.
pub(crate) fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_a_spreadsheet_would_run_as_a_formula_is_written_as_text() {
        assert_eq!(field("leeds-walking"), "leeds-walking");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("+1"), "'+1");
        assert_eq!(field("@sum"), "'@sum");
        assert_eq!(field("a,b"), "\"a,b\"");
    }

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
        let file = to_csv::<Trend>(&trend_json(), Layout::Wide).unwrap();
        assert_eq!(
            file.body,
            "period,label,complete,active_participants,retention_rate,volunteer_hours\n\
             2026-03-02,2026-W10,true,5,,2.5\n2026-03-09,2026-W11,false,4,0.6,0.0\n"
        );
        assert_eq!(file.filename, "leeds-week-2026-03-02-to-2026-03-09-at-7.csv", "the watermark is in the name");
        assert_eq!(file.watermark, 7);
    }

    #[test]
    fn a_long_trend_has_one_row_per_value() {
        let file = to_csv::<Trend>(&trend_json(), Layout::Long).unwrap();
        let lines: Vec<&str> = file.body.lines().collect();
        assert_eq!(lines[0], "period,label,complete,movement,metric,value");
        assert_eq!(lines.len(), 1 + 2 * 3);
        assert_eq!(lines[2], "2026-03-02,2026-W10,true,leeds,retention_rate,");
        assert_eq!(lines[5], "2026-03-09,2026-W11,false,leeds,retention_rate,0.6");
    }

    #[test]
    fn fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn the_format_parameter_wins_over_the_accept_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, "text/csv, application/json;q=0.5".parse().unwrap());
        assert_eq!(requested_format(None, None, &headers).unwrap(), Format::Csv(Layout::Wide));
        assert_eq!(requested_format(Some("json"), None, &headers).unwrap(), Format::Json);
        assert_eq!(requested_format(Some("csv"), Some("long"), &HeaderMap::new()).unwrap(), Format::Csv(Layout::Long));
        assert!(requested_format(Some("xml"), None, &headers).is_err());
    }
}
