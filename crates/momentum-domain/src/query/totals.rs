//! A trend's period totals, as the projector sends them to the query
//! service, in JSON or a compact binary form.

use serde::{Deserialize, Serialize};

use super::hour_value::{HourValueBasis, VolunteerHourValue};
use super::request::PERIODS_PER_TREND_MAX;
use crate::ledger::{MOMENTUM_WINDOW_PERIODS, PeriodTotals};
use crate::selection::{Breakdown, SPLIT_TOP_MAX};

/// What a trend is computed from: the stored totals of every period in
/// range and of the four before the first, which retention and momentum
/// look back to. The query service asks for these rather than the trend:
/// the totals are several times smaller than the trend with every metric,
/// and those bytes crossed NATS twice per read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendTotals {
    /// The last stream sequence these totals include.
    pub watermark: u64,
    /// The projector's value of a volunteer hour, so that every reader
    /// computes `social_value_gbp` alike.
    pub volunteer_hour_value_gbp: f64,
    /// Where that value comes from (custom when a projector of an earlier version did not say).
    #[serde(default)]
    pub volunteer_hour_basis: HourValueBasis,
    /// [`MOMENTUM_WINDOW_PERIODS`] periods before the range, then each
    /// period in range, in order.
    pub totals: Vec<PeriodTotals>,
    /// For a split trend, the same periods' totals of each row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitTotals>,
}

/// The totals of each row of a split trend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitTotals {
    /// The dimension split by.
    pub by: Breakdown,
    /// One for each value kept, most volume first, then `(other)` if any.
    pub cells: Vec<CellTotals>,
}

/// The totals of one row of a split trend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellTotals {
    /// The value of the dimension.
    pub value: String,
    /// The periods of [`TrendTotals::totals`], counting only this value's events.
    pub totals: Vec<PeriodTotals>,
}

/// How the projector encodes a `trend_totals` answer. JSON unless the
/// asker names [`TotalsEncoding::Binary`]: the query service does, and
/// reads either, so that a query service and a projector of different
/// versions still understand each other during an upgrade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotalsEncoding {
    /// [`TrendTotals::to_binary_without_basis`], the form query services
    /// of earlier versions ask for and read: reading long totals as JSON was
    /// a large share of the query service's work for a trend
    /// (docs/benchmarks.md).
    Binary,
    /// [`TrendTotals::to_binary`], with the basis of the hour value and a
    /// split's rows: what this version's query service asks for. A
    /// projector of an earlier version answers JSON to it.
    BinaryWithBasis,
    /// JSON, as every other answer. Also what an encoding this version
    /// does not know reads as, so that a newer query service asking for
    /// one still gets an answer it can read.
    #[default]
    #[serde(other)]
    Json,
}

/// The first byte of [`TrendTotals::to_binary`]'s form; JSON's is `{`.
/// Version 2 added the basis of the hour value; version 1 is still read.
const TOTALS_BINARY_VERSION: u8 = 2;

/// The version before the basis of the hour value, read as custom.
const TOTALS_BINARY_VERSION_WITHOUT_BASIS: u8 = 1;

/// The version byte, the watermark, the hour value, its basis and the period count.
pub(super) const TOTALS_HEADER_BYTES: usize = 1 + 8 + 8 + 1 + 4;

/// The periods binary totals may hold, so that a damaged count cannot make
/// the reader reserve memory without bound.
pub(super) const TOTALS_PERIODS_MAX: usize = PERIODS_PER_TREND_MAX + MOMENTUM_WINDOW_PERIODS as usize;

/// Totals that are neither JSON nor binary totals this version can read.
#[derive(Debug, thiserror::Error)]
#[error("trend totals cannot be read: {0}")]
pub struct UnreadableTotals(String);

impl TrendTotals {
    /// The value of a volunteer hour and its basis.
    pub fn hour_value(&self) -> VolunteerHourValue {
        VolunteerHourValue { basis: self.volunteer_hour_basis, value_gbp: self.volunteer_hour_value_gbp }
    }

    /// A compact form: the version byte, the watermark (u64) and hour value
    /// (f64), little-endian, the basis's place in [`HourValueBasis::ALL`]
    /// (one byte), the number of periods (u32), then for each
    /// period the count of its fields up to the last that is not zero (one
    /// byte) and those fields, each zigzag-encoded as a LEB128 varint.
    /// Totals take a fraction of the bytes of their JSON. A split trend
    /// goes on with its dimension's place in [`Breakdown::ALL`] (one byte),
    /// the number of rows (u32), and for each its value (its length in
    /// bytes, u16, then UTF-8) and its periods, written as above.
    pub fn to_binary(&self) -> Vec<u8> {
        let cells = self.split.as_ref().map_or(0, |split| split.cells.len());
        let mut bytes = Vec::with_capacity(TOTALS_HEADER_BYTES + (1 + cells) * self.totals.len() * 24);
        bytes.push(TOTALS_BINARY_VERSION);
        bytes.extend_from_slice(&self.watermark.to_le_bytes());
        bytes.extend_from_slice(&self.volunteer_hour_value_gbp.to_le_bytes());
        let basis = HourValueBasis::ALL.iter().position(|basis| *basis == self.volunteer_hour_basis);
        bytes.push(basis.expect("every basis is in ALL") as u8);
        let periods = u32::try_from(self.totals.len()).expect("a trend has at most TOTALS_PERIODS_MAX periods");
        bytes.extend_from_slice(&periods.to_le_bytes());
        write_periods(&mut bytes, &self.totals);
        if let Some(split) = &self.split {
            let by = Breakdown::ALL.iter().position(|by| *by == split.by).expect("every dimension is in ALL");
            bytes.push(by as u8);
            bytes.extend_from_slice(&(split.cells.len() as u32).to_le_bytes());
            for cell in &split.cells {
                let length = u16::try_from(cell.value.len()).expect("a value is at most 64 characters");
                bytes.extend_from_slice(&length.to_le_bytes());
                bytes.extend_from_slice(cell.value.as_bytes());
                assert_eq!(cell.totals.len(), self.totals.len(), "every row has the trend's periods");
                write_periods(&mut bytes, &cell.totals);
            }
        }
        bytes
    }

    /// The form of version 1, for query services that read only it: as
    /// [`TrendTotals::to_binary`] without the basis byte and the split
    /// (such a query service never asks for one).
    pub fn to_binary_without_basis(&self) -> Vec<u8> {
        let unsplit = TrendTotals { split: None, ..self.clone() };
        let mut bytes = unsplit.to_binary();
        bytes[0] = TOTALS_BINARY_VERSION_WITHOUT_BASIS;
        bytes.remove(1 + 8 + 8);
        bytes
    }

    /// Reads a projector's answer, JSON or [`TrendTotals::to_binary`]'s
    /// form. As with stored totals, a period with fewer fields reads with
    /// zeros for the rest, and fields a newer writer appended are skipped.
    pub fn from_answer(bytes: &[u8]) -> Result<TrendTotals, UnreadableTotals> {
        match bytes.first() {
            Some(&TOTALS_BINARY_VERSION) => TrendTotals::from_binary(&bytes[1..], true),
            Some(&TOTALS_BINARY_VERSION_WITHOUT_BASIS) => TrendTotals::from_binary(&bytes[1..], false),
            _ => serde_json::from_slice(bytes).map_err(|error| UnreadableTotals(error.to_string())),
        }
    }

    fn from_binary(bytes: &[u8], with_basis: bool) -> Result<TrendTotals, UnreadableTotals> {
        let mut reader = BinaryReader { rest: bytes };
        let watermark = u64::from_le_bytes(reader.take()?);
        let volunteer_hour_value_gbp = f64::from_le_bytes(reader.take()?);
        let volunteer_hour_basis = if with_basis {
            let [basis] = reader.take()?;
            *HourValueBasis::ALL.get(usize::from(basis)).ok_or_else(|| UnreadableTotals(format!("basis {basis}")))?
        } else {
            HourValueBasis::Custom
        };
        let periods = u32::from_le_bytes(reader.take()?) as usize;
        if periods > TOTALS_PERIODS_MAX {
            return Err(UnreadableTotals(format!("{periods} periods, more than a trend holds")));
        }
        let totals = reader.periods(periods)?;
        let split = if reader.rest.is_empty() { None } else { Some(reader.split(periods)?) };
        if !reader.rest.is_empty() {
            return Err(UnreadableTotals(format!("{} bytes after the last period", reader.rest.len())));
        }
        Ok(TrendTotals { watermark, volunteer_hour_value_gbp, volunteer_hour_basis, totals, split })
    }
}

/// Writes each period's fields up to its last that is not zero.
fn write_periods(bytes: &mut Vec<u8>, periods: &[PeriodTotals]) {
    for totals in periods {
        let fields = totals.fields();
        let length = fields.iter().rposition(|field| *field != 0).map_or(0, |last| last + 1);
        bytes.push(u8::try_from(length).expect("a period has 16 fields"));
        for field in &fields[..length] {
            crate::varint::write_i64(bytes, *field);
        }
    }
}

/// Reads [`TrendTotals::to_binary`]'s form, refusing to read past its end.
struct BinaryReader<'a> {
    rest: &'a [u8],
}

impl BinaryReader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], UnreadableTotals> {
        let (taken, rest) =
            self.rest.split_first_chunk::<N>().ok_or_else(|| UnreadableTotals("cut short".to_owned()))?;
        self.rest = rest;
        Ok(*taken)
    }

    fn periods(&mut self, count: usize) -> Result<Vec<PeriodTotals>, UnreadableTotals> {
        let mut totals = Vec::with_capacity(count);
        for _ in 0..count {
            let [length] = self.take()?;
            let mut period = PeriodTotals::default();
            let mut fields = period.fields_mut().into_iter();
            for _ in 0..length {
                let value = self.varint()?;
                if let Some(field) = fields.next() {
                    *field = value;
                }
            }
            drop(fields);
            totals.push(period);
        }
        Ok(totals)
    }

    /// The rows of a split trend, each of `periods` periods.
    fn split(&mut self, periods: usize) -> Result<SplitTotals, UnreadableTotals> {
        let [by] = self.take()?;
        let by = *Breakdown::ALL.get(usize::from(by)).ok_or_else(|| UnreadableTotals(format!("dimension {by}")))?;
        let count = u32::from_le_bytes(self.take()?) as usize;
        if count > SPLIT_TOP_MAX + 1 {
            return Err(UnreadableTotals(format!("{count} rows, more than a split keeps")));
        }
        let mut cells = Vec::with_capacity(count);
        for _ in 0..count {
            let length = usize::from(u16::from_le_bytes(self.take()?));
            if self.rest.len() < length {
                return Err(UnreadableTotals("cut short".to_owned()));
            }
            let (value, rest) = self.rest.split_at(length);
            let value = std::str::from_utf8(value).map_err(|error| UnreadableTotals(error.to_string()))?.to_owned();
            self.rest = rest;
            cells.push(CellTotals { value, totals: self.periods(periods)? });
        }
        Ok(SplitTotals { by, cells })
    }

    /// A zigzag LEB128 varint of at most ten bytes.
    fn varint(&mut self) -> Result<i64, UnreadableTotals> {
        let (value, rest) = crate::varint::read_i64(self.rest).map_err(|error| UnreadableTotals(error.to_string()))?;
        self.rest = rest;
        Ok(value)
    }
}
