//! A trend written as JSON directly: byte for byte what serde_json writes,
//! without its map machinery (the property tests hold the two equal).

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;

use super::answer::Trend;
use super::metric::{Figure, Metric};
use crate::selection::SplitValue;

impl Trend {
    /// The trend as JSON: byte for byte what `serde_json::to_vec` writes,
    /// written directly. A long trend holds thousands of figures, and
    /// serde's map serialiser escaped every metric name of every row again,
    /// a large share of a trend read's CPU (docs/benchmarks.md).
    pub fn to_json(&self) -> Vec<u8> {
        write_trend(self, self.series.len(), |out, index| {
            let row = &self.series[index];
            let head =
                RowHead { period: row.period, label: &row.label, complete: row.complete, split: row.split.as_ref() };
            write_row(out, &head, row.values.iter().map(|(metric, value)| (*metric, value)));
        })
    }
}

/// Writes `header` (a trend's fields but its series) with `rows` rows,
/// each written by `write_row`.
pub(super) fn write_trend(header: &Trend, rows: usize, mut write_row: impl FnMut(&mut Vec<u8>, usize)) -> Vec<u8> {
    // About 600 bytes a row with every metric.
    let mut out = Vec::with_capacity(256 + rows * (16 + 32 * Metric::ALL.len()));
    write_field(&mut out, "{\"movement\":", &header.movement);
    write_field(&mut out, ",\"interval\":", &header.interval);
    write_field(&mut out, ",\"from\":", &header.from);
    write_field(&mut out, ",\"to\":", &header.to);
    write_field(&mut out, ",\"watermark\":", &header.watermark);
    write_field(&mut out, ",\"volunteer_hour_value_gbp\":", &header.volunteer_hour_value_gbp);
    write_field(&mut out, ",\"volunteer_hour_value\":", &header.volunteer_hour_value);
    out.extend_from_slice(b",\"series\":[");
    for index in 0..rows {
        if index > 0 {
            out.push(b',');
        }
        write_row(&mut out, index);
    }
    out.push(b']');
    if let Some(below) = header.suppressed_below {
        write_field(&mut out, ",\"suppressed_below\":", &below);
    }
    out.push(b'}');
    out
}

/// What a row holds besides its figures.
pub(super) struct RowHead<'a> {
    pub(super) period: NaiveDate,
    pub(super) label: &'a str,
    pub(super) complete: Option<bool>,
    pub(super) split: Option<&'a SplitValue>,
}

/// Writes one row: its period, label, completeness and split value, then
/// each metric's figure.
pub(super) fn write_row<F: WriteFigure>(out: &mut Vec<u8>, head: &RowHead, figures: impl Iterator<Item = (Metric, F)>) {
    out.extend_from_slice(b"{\"period\":");
    write_date(out, head.period);
    out.extend_from_slice(b",\"label\":");
    serde_json::to_writer(&mut *out, head.label).expect("a string always serialises");
    if let Some(complete) = head.complete {
        out.extend_from_slice(if complete { b",\"complete\":true" } else { b",\"complete\":false" });
    }
    if let Some(split) = head.split {
        // Dimension names are ASCII identifiers; values are any text.
        out.push(b',');
        out.push(b'"');
        out.extend_from_slice(split.by.as_str().as_bytes());
        out.extend_from_slice(b"\":");
        serde_json::to_writer(&mut *out, &split.value).expect("a string always serialises");
    }
    for (metric, figure) in figures {
        // Metric names are ASCII identifiers: nothing to escape.
        out.extend_from_slice(metric.json_key().as_bytes());
        figure.write(out);
    }
    out.push(b'}');
}

/// A figure as serde_json writes it, with the formatters it uses (`itoa`
/// for integers, `zmij` for floats); the property tests hold the text to
/// serde_json's.
pub(super) trait WriteFigure {
    fn write(self, out: &mut Vec<u8>);
}

impl WriteFigure for Figure {
    #[inline]
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Figure::Count(count) => write_integer(out, count),
            // The formatter serde_json writes finite floats with.
            Figure::Fraction(fraction) if fraction.is_finite() => {
                out.extend_from_slice(zmij::Buffer::new().format_finite(fraction).as_bytes());
            }
            Figure::Fraction(_) | Figure::Undefined => out.extend_from_slice(b"null"),
            // What zmij writes for the float: fixed notation, at least one
            // digit after the point, no trailing zeros.
            Figure::Decimal { units, places } => {
                if units < 0 {
                    out.push(b'-');
                }
                let scale = 10u64.pow(places);
                let (whole, mut fraction) = (units.unsigned_abs() / scale, units.unsigned_abs() % scale);
                write_integer(out, whole as i64);
                out.push(b'.');
                if fraction == 0 {
                    out.push(b'0');
                    return;
                }
                let mut digits = places;
                while fraction % 10 == 0 {
                    (fraction, digits) = (fraction / 10, digits - 1);
                }
                let mut text = [b'0'; 3];
                for position in (0..digits as usize).rev() {
                    text[position] = b'0' + (fraction % 10) as u8;
                    fraction /= 10;
                }
                out.extend_from_slice(&text[..digits as usize]);
            }
        }
    }
}

impl WriteFigure for &Value {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Value::Number(number) if number.is_i64() => {
                Figure::Count(number.as_i64().expect("checked to be an i64")).write(out);
            }
            Value::Null => out.extend_from_slice(b"null"),
            other => write_serde(out, other),
        }
    }
}

/// Writes an integer as itoa does. Most figures of a trend are below a
/// thousand: their digits are pushed one by one, cheaper than copying
/// itoa's buffer out, which showed in the profile of a trend's writing.
#[inline]
fn write_integer(out: &mut Vec<u8>, value: i64) {
    let digit = |value: i64| b'0' + value as u8;
    match value {
        0..10 => out.push(digit(value)),
        10..100 => out.extend_from_slice(&[digit(value / 10), digit(value % 10)]),
        100..1000 => out.extend_from_slice(&[digit(value / 100), digit(value / 10 % 10), digit(value % 10)]),
        _ => out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes()),
    }
}

/// Writes `key` (already JSON) and the value as serde_json writes it.
fn write_field<T: Serialize>(out: &mut Vec<u8>, key: &str, value: &T) {
    out.extend_from_slice(key.as_bytes());
    write_serde(out, value);
}

fn write_serde<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("trend fields always serialise");
}

/// Writes a date as serde (chrono's `%Y-%m-%d`) does, without the
/// formatting machinery for the four-digit years every period has.
fn write_date(out: &mut Vec<u8>, date: NaiveDate) {
    use chrono::Datelike;
    let (year, month, day) = (date.year(), date.month(), date.day());
    if !(0..=9999).contains(&year) {
        write_serde(out, &date);
        return;
    }
    let digit = |value: u32| b'0' + value as u8;
    let year = year as u32;
    out.extend_from_slice(&[
        b'"',
        digit(year / 1000),
        digit(year / 100 % 10),
        digit(year / 10 % 10),
        digit(year % 10),
        b'-',
        digit(month / 10),
        digit(month % 10),
        b'-',
        digit(day / 10),
        digit(day % 10),
        b'"',
    ]);
}
