use proptest::prelude::*;

use std::collections::BTreeSet;

use super::json::WriteFigure;
use super::totals::{TOTALS_HEADER_BYTES, TOTALS_PERIODS_MAX};
use super::*;
use crate::ledger::PeriodTotals;
use crate::period::Interval;
use crate::selection::{Breakdown, Filter, Split, SplitValue};

fn figure() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-1_000_000i64..1_000_000).prop_map(|pence| Value::from(pence as f64 / 100.0)),
    ]
}

fn date() -> impl Strategy<Value = NaiveDate> {
    // Mostly the dates periods have, sometimes years serde writes with a sign.
    prop_oneof![
        (0i64..4_000_000).prop_map(|days| NaiveDate::MIN + chrono::Days::new(days as u64)),
        (-400_000i64..400_000)
            .prop_map(|days| { NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date") + chrono::Duration::days(days) }),
    ]
}

fn trend() -> impl Strategy<Value = Trend> {
    let split = proptest::option::of((0..Breakdown::ALL.len(), ".*"))
        .prop_map(|split| split.map(|(by, value)| SplitValue { by: Breakdown::ALL[by], value }));
    let values = proptest::collection::vec((0..Metric::ALL.len(), figure()), 0..6);
    let row = (date(), ".*", proptest::option::of(any::<bool>()), split, values).prop_map(
        |(period, label, complete, split, values)| TrendRow {
            period,
            label,
            complete,
            split,
            values: values.into_iter().map(|(index, value)| (Metric::ALL[index], value)).collect(),
        },
    );
    (
        ".*",
        0..Interval::ALL.len(),
        date(),
        date(),
        any::<u64>(),
        any::<f64>(),
        proptest::collection::vec(row, 0..5),
        any::<Option<u64>>(),
    )
        .prop_map(|(movement, interval, from, to, watermark, hour_value, series, suppressed_below)| Trend {
            movement,
            interval: Interval::ALL[interval],
            from,
            to,
            watermark,
            volunteer_hour_value_gbp: hour_value,
            volunteer_hour_value: VolunteerHourValue::custom(hour_value),
            series,
            suppressed_below,
        })
}

proptest! {
    #[test]
    fn a_trend_written_directly_is_the_json_serde_writes(trend in trend()) {
        let expected = serde_json::to_vec(&trend).expect("a trend serialises");
        prop_assert_eq!(String::from_utf8(trend.to_json()).expect("utf-8"), String::from_utf8(expected).expect("utf-8"));
    }
}

fn period_totals() -> impl Strategy<Value = PeriodTotals> {
    // Zeros, the sizes real totals have, either side of the largest
    // exact decimal, and anything at all.
    let field = prop_oneof![Just(0i64), -10_000i64..10_000_000, -10i64.pow(16)..10i64.pow(16), any::<i64>()];
    proptest::collection::vec(field, 16).prop_map(|fields| {
        let mut totals = PeriodTotals::default();
        for (field, value) in totals.fields_mut().into_iter().zip(fields) {
            *field = value;
        }
        totals
    })
}

proptest! {
    #[test]
    fn period_totals_read_back_from_json_whole(totals in period_totals()) {
        let json = serde_json::to_string(&totals).expect("totals serialise");
        prop_assert_eq!(serde_json::from_str::<PeriodTotals>(&json).expect("totals read back"), totals);
    }
}

fn request_and_totals() -> impl Strategy<Value = (TrendRequest, TrendTotals)> {
    let request = (
        0..Interval::ALL.len(),
        0i64..3000,
        0i64..40,
        proptest::option::of(proptest::sample::subsequence(Metric::ALL.to_vec(), 0..=Metric::ALL.len())),
        proptest::option::of((0..Breakdown::ALL.len(), 1..4usize)),
    )
        .prop_map(|(interval, start, days, metrics, split)| {
            let from = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + chrono::Duration::days(start);
            TrendRequest {
                movement: movement("bristol-befriending"),
                periods: periods(Interval::ALL[interval], from, from + chrono::Duration::days(days)),
                metrics,
                filter: Filter::default(),
                split: split.map(|(by, top)| Split::new(Breakdown::ALL[by], top).expect("1 to 3")),
                today: None,
            }
        });
    (request, any::<u64>(), -100.0f64..100.0).prop_flat_map(|(request, watermark, hour_value)| {
        let count = request.periods.starts().len() + MOMENTUM_WINDOW_PERIODS as usize;
        let cells = request.split.map_or(0, |split| split.top());
        let cell = (".{0,12}", proptest::collection::vec(period_totals(), count))
            .prop_map(|(value, totals)| CellTotals { value, totals });
        (proptest::collection::vec(period_totals(), count), proptest::collection::vec(cell, cells)).prop_map(
            move |(totals, cells)| {
                let split = request.split.map(|split| SplitTotals { by: split.by(), cells });
                (
                    request.clone(),
                    TrendTotals {
                        watermark,
                        volunteer_hour_value_gbp: hour_value,
                        volunteer_hour_basis: HourValueBasis::ALL[(watermark % 3) as usize],
                        totals,
                        split,
                    },
                )
            },
        )
    })
}

proptest! {
    #[test]
    fn a_decimal_figure_is_written_as_serde_writes_its_float(
        units in prop_oneof![-100_000i64..100_000, any::<i64>(), -10i64.pow(16)..10i64.pow(16)],
        places in 2u32..=3,
    ) {
        let figure = Figure::decimal(units, places);
        let mut written = Vec::new();
        figure.write(&mut written);
        let serde = serde_json::to_string(&Value::from(figure)).expect("a value serialises");
        prop_assert_eq!(String::from_utf8(written).unwrap(), serde);
    }
}

#[test]
fn hours_and_pounds_are_written_as_their_shortest_decimals() {
    let written = |units, places| {
        let mut out = Vec::new();
        Figure::decimal(units, places).write(&mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(written(1500, 3), "1.5");
    assert_eq!(written(1, 3), "0.001");
    assert_eq!(written(0, 3), "0.0");
    assert_eq!(written(-1234, 3), "-1.234");
    assert_eq!(written(120_050, 2), "1200.5");
    assert_eq!(written(999_999_999_999_999, 3), "999999999999.999");
    assert!(matches!(Figure::decimal(1_000_000_000_000_000, 3), Figure::Fraction(_)));
}

proptest! {
    #[test]
    fn a_trend_written_from_its_totals_is_the_trend_computed_then_written((request, totals) in request_and_totals()) {
        let computed = trend_from_totals(&request, &totals).expect("the totals fit").to_json();
        let written = trend_json_from_totals(&request, &totals).expect("the totals fit");
        prop_assert_eq!(String::from_utf8(written).unwrap(), String::from_utf8(computed).unwrap());
    }
}

proptest! {
    #[test]
    fn trend_totals_read_back_whole_from_binary_and_from_json((_request, totals) in request_and_totals()) {
        prop_assert_eq!(&TrendTotals::from_answer(&totals.to_binary()).expect("binary reads back"), &totals);
        let json = serde_json::to_vec(&totals).expect("totals serialise");
        prop_assert_eq!(&TrendTotals::from_answer(&json).expect("json reads back"), &totals);
    }
}

#[test]
fn binary_totals_cut_short_or_too_long_or_too_many_are_refused_not_misread() {
    let totals = TrendTotals {
        watermark: 7,
        volunteer_hour_value_gbp: 11.5,
        volunteer_hour_basis: HourValueBasis::Custom,
        totals: vec![
            PeriodTotals { active_participants: 300, meetings: -2, ..PeriodTotals::default() },
            PeriodTotals::default(),
            PeriodTotals { window_participants: i64::MIN, ..PeriodTotals::default() },
        ],
        split: None,
    };
    let bytes = totals.to_binary();
    for cut in 1..bytes.len() {
        assert!(TrendTotals::from_answer(&bytes[..cut]).is_err(), "cut to {cut} bytes");
    }
    assert!(TrendTotals::from_answer(&[bytes.as_slice(), &[0]].concat()).is_err(), "a byte after the end");
    let count_at = TOTALS_HEADER_BYTES - 4..TOTALS_HEADER_BYTES;
    let mut too_many = bytes.clone();
    too_many[count_at.clone()].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(TrendTotals::from_answer(&too_many).is_err());
    let number = |tail: &[u8]| {
        let mut one = bytes[..TOTALS_HEADER_BYTES].to_vec();
        one[count_at.clone()].copy_from_slice(&1u32.to_le_bytes());
        one.push(1);
        one.extend([0xff; 9]);
        one.extend(tail);
        TrendTotals::from_answer(&one)
    };
    assert_eq!(number(&[0x01]).unwrap().totals[0].active_participants, i64::MIN, "the largest zigzag number");
    assert!(number(&[0x02]).is_err(), "a tenth byte beyond the 64th bit");
    assert!(number(&[0x81, 0x00]).is_err(), "a tenth byte that goes on to an eleventh");
}

#[test]
fn binary_totals_hold_the_longest_trend_and_refuse_one_period_more() {
    let longest = TrendTotals {
        watermark: 1,
        volunteer_hour_value_gbp: 1.0,
        volunteer_hour_basis: HourValueBasis::Custom,
        totals: vec![PeriodTotals { meetings: 1, ..PeriodTotals::default() }; TOTALS_PERIODS_MAX],
        split: None,
    };
    assert_eq!(TrendTotals::from_answer(&longest.to_binary()).unwrap(), longest);
    let mut one_more = longest.clone();
    one_more.totals.push(PeriodTotals::default());
    assert!(TrendTotals::from_answer(&one_more.to_binary()).is_err());
}

#[test]
fn an_encoding_this_version_does_not_know_reads_as_json() {
    let encoding: TotalsEncoding = serde_json::from_str(r#""compressed""#).unwrap();
    assert_eq!(encoding, TotalsEncoding::Json);
    assert_eq!(serde_json::from_str::<TotalsEncoding>(r#""binary""#).unwrap(), TotalsEncoding::Binary);
}

#[test]
fn binary_totals_with_fields_appended_by_a_newer_projector_read_the_known_ones() {
    let mut bytes = vec![1];
    bytes.extend(3u64.to_le_bytes());
    bytes.extend(10.0f64.to_le_bytes());
    bytes.extend(1u32.to_le_bytes());
    // 18 fields, each zigzag 2 (the number 1); two more than this version knows.
    bytes.push(18);
    bytes.extend([2; 18]);
    let read = TrendTotals::from_answer(&bytes).unwrap();
    assert_eq!(read.totals.len(), 1);
    assert_eq!(read.totals[0].fields(), [1; 16]);
    assert_eq!((read.watermark, read.volunteer_hour_value_gbp), (3, 10.0));
}

#[test]
fn period_totals_travel_without_trailing_zeros_and_read_missing_fields_as_zero() {
    assert_eq!(serde_json::to_string(&PeriodTotals::default()).unwrap(), "[]");
    let totals = PeriodTotals { active_participants: 3, meetings: -2, ..PeriodTotals::default() };
    assert_eq!(serde_json::to_string(&totals).unwrap(), "[3,0,-2]");
    assert_eq!(serde_json::from_str::<PeriodTotals>("[3,0,-2]").unwrap(), totals);
    // A newer projector's appended field is ignored by an older reader.
    let longer = format!("[{}]", ["1"; 17].join(","));
    assert_eq!(serde_json::from_str::<PeriodTotals>(&longer).unwrap().window_participants, 1);
}

/// A request for every metric of movement `m` from one (year, month,
/// day) to another.
fn request_of(interval: Interval, from: (i32, u32, u32), to: (i32, u32, u32)) -> TrendRequest {
    let date = |(year, month, day)| NaiveDate::from_ymd_opt(year, month, day).expect("a date");
    TrendRequest {
        movement: movement("m"),
        periods: periods(interval, date(from), date(to)),
        metrics: None,
        filter: Filter::default(),
        split: None,
        today: None,
    }
}

fn periods(interval: Interval, from: NaiveDate, to: NaiveDate) -> Periods {
    Periods::new(interval, DateRange::new(from, to).expect("a range in order")).expect("a readable range")
}

fn movement(text: &str) -> MovementId {
    MovementId::parse(text).expect("a movement id")
}

#[test]
fn a_trend_is_computed_alike_from_totals_that_crossed_json() {
    let request = request_of(Interval::Week, (2026, 3, 2), (2026, 3, 16));
    let periods = 3 + MOMENTUM_WINDOW_PERIODS as usize;
    let totals = TrendTotals {
        watermark: 9,
        volunteer_hour_value_gbp: 11.27,
        volunteer_hour_basis: HourValueBasis::Custom,
        totals: (0..periods as i64)
            .map(|index| PeriodTotals {
                active_participants: 10 + index,
                retained_participants: index,
                volunteer_millihours: 1500 * index,
                window_participants: 20 + 3 * index,
                ..PeriodTotals::default()
            })
            .collect(),
        split: None,
    };
    let travelled: TrendTotals = serde_json::from_slice(&serde_json::to_vec(&totals).unwrap()).unwrap();
    let trend = trend_from_totals(&request, &travelled).unwrap();
    assert_eq!(trend, trend_from_totals(&request, &totals).unwrap());
    assert_eq!(trend.series.len(), 3);
    let last = &trend.series[2];
    assert_eq!(last.get(Metric::ActiveParticipants), Some(&Value::from(16)));
    assert_eq!(last.get(Metric::RetentionRate), Some(&Value::from(6.0 / 15.0)));
    assert_eq!(last.get(Metric::Momentum), Some(&Value::from((38.0 - 26.0) / 26.0)));
    assert_eq!(last.get(Metric::SocialValueGbp), Some(&Value::from(101.43)));
}

#[test]
fn requests_naming_dates_outside_the_readable_years_cannot_be_built_or_read() {
    // The calendar's own limits: period arithmetic on them overflows.
    let cases = [(NaiveDate::MIN, LATEST_DATE), (EARLIEST_DATE, NaiveDate::MAX), (NaiveDate::MIN, NaiveDate::MAX)];
    for (from, to) in cases {
        assert!(matches!(DateRange::new(from, to), Err(RangeError::OutOfBounds(_))), "{from} {to}");
        for interval in Interval::ALL {
            let trend = serde_json::json!({ "movement": "m", "interval": interval, "from": from, "to": to });
            let error = serde_json::from_value::<TrendRequest>(trend).expect_err("out of bounds").to_string();
            assert!(error.contains("1900-01-01"), "{error}");
        }
    }
    let state = crate::ledger::Ledger::default();
    let settings = ReadSettings { volunteer_hour_value: VolunteerHourValue::custom(11.27) };
    let edges = TrendRequest {
        movement: movement("m"),
        periods: periods(Interval::Month, EARLIEST_DATE, EARLIEST_DATE),
        metrics: None,
        filter: Filter::default(),
        split: None,
        today: None,
    };
    assert!(
        matches!(trend_totals(&state, &edges, &settings), Err(ReadError::UnknownMovement(_))),
        "the earliest date itself is readable"
    );
}

/// Totals of one period asked for, after the four looked back on.
fn one_period(previous: PeriodTotals, current: PeriodTotals, four_back_window: i64) -> TrendTotals {
    let four_back = PeriodTotals { window_participants: four_back_window, ..PeriodTotals::default() };
    TrendTotals {
        watermark: 1,
        volunteer_hour_value_gbp: 11.27,
        volunteer_hour_basis: HourValueBasis::Custom,
        totals: vec![four_back, PeriodTotals::default(), PeriodTotals::default(), previous, current],
        split: None,
    }
}

#[test]
fn hiding_one_of_new_returning_retained_and_resurrecting_hides_all_four() {
    use Metric::*;
    let previous = PeriodTotals { active_participants: 40, ..PeriodTotals::default() };
    let period = |active, new| PeriodTotals {
        active_participants: active,
        new_participants: new,
        retained_participants: 20,
        window_participants: 50,
        ..PeriodTotals::default()
    };
    let hidden = |current| suppression::hidden_figures(&one_period(previous, current, 50), 0, 5);
    let pair = BTreeSet::from([NewParticipants, ReturningParticipants]);
    // 32 active, 3 new, 29 returning: 32 - 29 would give the 3.
    assert!(hidden(period(32, 3)).is_superset(&pair));
    // 32 active, 30 new, 2 returning: 32 - 30 would give the 2.
    assert!(hidden(period(32, 30)).is_superset(&pair));
    // Two small already hide each other; none small hides nothing.
    assert!(hidden(period(7, 4)).is_superset(&pair));
    assert!(hidden(period(30, 10)).is_empty());
    assert!(!hidden(period(32, 3)).contains(&ActiveParticipants), "the active count alone gives nothing away");
    // A small active count hides the ratios over it too.
    let small = hidden(period(4, 0));
    assert!(small.is_superset(&BTreeSet::from([ActiveParticipants, ReturningParticipants, RetentionRate])));
}

#[test]
fn a_suppressed_comparison_hides_what_the_movements_trend_hides() {
    let previous = PeriodTotals { active_participants: 40, ..PeriodTotals::default() };
    // 12 active, 3 new: returning (9) is shown alone but hidden with the 3.
    let current = PeriodTotals {
        active_participants: 12,
        new_participants: 3,
        window_participants: 50,
        ..PeriodTotals::default()
    };
    let totals = one_period(previous, current, 50);
    let day = NaiveDate::from_ymd_opt(2026, 3, 2).expect("a date");
    let request = |metric| CompareRequest {
        movements: ComparedMovements::new(vec![movement("m")]).expect("one movement"),
        metric,
        periods: periods(Interval::Day, day, day),
        filter: Filter::default(),
        split: None,
        today: None,
    };
    let value = |metric, below| {
        let comparison = comparison_from_totals(&request(metric), std::slice::from_ref(&totals), below).unwrap();
        assert_eq!(comparison.suppressed_below, below);
        comparison.series[0].values[0].value.clone()
    };
    assert_eq!(value(Metric::ReturningParticipants, None), Value::from(9));
    assert_eq!(value(Metric::ReturningParticipants, Some(5)), Value::Null);
    assert_eq!(value(Metric::ActiveParticipants, Some(5)), Value::from(12));
    let mismatched = comparison_from_totals(&request(Metric::Meetings), &[], None);
    assert!(matches!(mismatched, Err(ReadError::Invalid(_))));
}

/// 25 active: 8 new, 12 retained, so 5 resurrecting.
fn lifecycle_period() -> PeriodTotals {
    PeriodTotals {
        active_participants: 25,
        new_participants: 8,
        retained_participants: 12,
        window_participants: 60,
        ..PeriodTotals::default()
    }
}

#[test]
fn new_retained_and_resurrecting_add_up_to_the_active_and_dormant_is_who_left() {
    use Metric::*;
    let previous = PeriodTotals { active_participants: 30, ..PeriodTotals::default() };
    let current = lifecycle_period();
    let totals = one_period(previous, current, 60);
    let request = request_of(Interval::Week, (2026, 3, 2), (2026, 3, 2));
    let trend = trend_from_totals(&request, &totals).unwrap();
    let figure = |metric| trend.series[0].get(metric).cloned().unwrap();
    assert_eq!(figure(ResurrectingParticipants), Value::from(5));
    assert_eq!(figure(DormantParticipants), Value::from(18));
    assert_eq!(figure(Pulse), Value::from(13.0 / 18.0));
    let nobody_left = one_period(PeriodTotals { active_participants: 12, ..previous }, current, 60);
    assert_eq!(trend_from_totals(&request, &nobody_left).unwrap().series[0].get(Pulse), Some(&Value::Null));
}

#[test]
fn dormant_and_retained_are_hidden_together_and_with_a_small_count_before() {
    use Metric::*;
    let current = lifecycle_period();
    let hidden = |previous_active| {
        let previous = PeriodTotals { active_participants: previous_active, ..PeriodTotals::default() };
        suppression::hidden_figures(&one_period(previous, current, 60), 0, 5)
    };
    // 30 before: 18 dormant, nothing small.
    assert!(hidden(30).is_empty(), "{:?}", hidden(30));
    // 14 before: 2 dormant would give 12 retained away with the 14, and the
    // other way round; the rest of the split follows.
    let two_dormant = hidden(14);
    for metric in [DormantParticipants, RetainedParticipants, ResurrectingParticipants, NewParticipants, Pulse] {
        assert!(two_dormant.contains(&metric), "{metric:?} in {two_dormant:?}");
    }
    assert!(!two_dormant.contains(&ActiveParticipants));
    // 3 before is itself hidden in its own row: dormant and retained add up to it.
    assert!(hidden(3).contains(&DormantParticipants) && hidden(3).contains(&RetainedParticipants));
}

#[test]
fn ratios_are_hidden_when_a_count_they_are_made_of_is_small() {
    use Metric::*;
    let previous = PeriodTotals { active_participants: 10, ..PeriodTotals::default() };
    // 2 retained of 10 would show as a rate of 0.2, and 0.2 × 10 = 2.
    let current = PeriodTotals {
        active_participants: 14,
        new_participants: 6,
        retained_participants: 2,
        window_participants: 20,
        ..PeriodTotals::default()
    };
    let hidden = suppression::hidden_figures(&one_period(previous, current, 20), 0, 5);
    assert!(hidden.contains(&RetainedParticipants) && hidden.contains(&RetentionRate), "{hidden:?}");
    assert!(!hidden.contains(&Momentum), "{hidden:?}");
    // Momentum over a window of 3 people four periods back.
    let hidden = suppression::hidden_figures(&one_period(previous, current, 3), 0, 5);
    assert!(hidden.contains(&Momentum), "{hidden:?}");
    // Nothing about the ratio is small: 15 before; 20 active, 5 new, 9
    // retained, 6 resurrecting, 6 dormant.
    let previous = PeriodTotals { active_participants: 15, ..previous };
    let retained = PeriodTotals { active_participants: 20, new_participants: 5, retained_participants: 9, ..current };
    let hidden = suppression::hidden_figures(&one_period(previous, retained, 20), 0, 5);
    assert!(!hidden.contains(&RetentionRate) && !hidden.contains(&Momentum), "{hidden:?}");
}

#[test]
fn totals_that_do_not_fit_the_range_are_refused() {
    let request = request_of(Interval::Day, (2026, 3, 2), (2026, 3, 3));
    let totals = TrendTotals {
        watermark: 1,
        volunteer_hour_value_gbp: 1.0,
        volunteer_hour_basis: HourValueBasis::Custom,
        totals: vec![PeriodTotals::default(); 3],
        split: None,
    };
    assert!(matches!(trend_from_totals(&request, &totals), Err(ReadError::Invalid(_))));
}

#[test]
fn metric_names_need_no_escaping_in_json() {
    for metric in Metric::ALL {
        assert_eq!(serde_json::to_string(metric.as_str()).expect("a string"), format!("\"{}\"", metric.as_str()));
    }
}

/// Realistic totals of people: small and large counts, with the parts of
/// the lifecycle consistent with the active counts.
fn people_totals() -> impl Strategy<Value = PeriodTotals> {
    (0i64..12, 0i64..12, 0i64..12, 0i64..12, 0i64..30).prop_map(|(new, retained, resurrecting, organisers, window)| {
        PeriodTotals {
            active_participants: new + retained + resurrecting,
            new_participants: new,
            retained_participants: retained,
            organisers: organisers.min(new + retained + resurrecting),
            volunteers: organisers / 2,
            window_participants: window.max(new + retained + resurrecting),
            ..PeriodTotals::default()
        }
    })
}

proptest! {
    /// In a split trend, no count of people is hidden in one value's row
    /// alone while another row of its period shows a count above zero: the
    /// trend without the split, less the rows shown, would give it away.
    #[test]
    fn no_suppressed_cell_of_a_split_trend_follows_from_the_others(
        cells in proptest::collection::vec(proptest::collection::vec(people_totals(), 2 + MOMENTUM_WINDOW_PERIODS as usize), 2..5),
    ) {
        let request = TrendRequest {
            split: Some(Split::new(Breakdown::Area, cells.len()).unwrap()),
            ..request_of(Interval::Week, (2026, 3, 2), (2026, 3, 9))
        };
        let totals = TrendTotals {
            watermark: 1,
            volunteer_hour_value_gbp: 10.0,
            volunteer_hour_basis: HourValueBasis::Custom,
            totals: cells[0].clone(),
            split: Some(SplitTotals {
                by: Breakdown::Area,
                cells: cells.iter().enumerate().map(|(n, totals)| CellTotals { value: format!("a{n}"), totals: totals.clone() }).collect(),
            }),
        };
        let shown = trend_from_totals(&request, &totals).unwrap();
        let mut suppressed = shown.clone();
        suppression::trend(&mut suppressed, &totals, 5);
        for period in 0..2 {
            let rows = &suppressed.series[period * cells.len()..(period + 1) * cells.len()];
            let before = &shown.series[period * cells.len()..(period + 1) * cells.len()];
            for metric in Metric::ALL.into_iter().filter(|metric| metric.counts_people()) {
                let hidden: Vec<bool> = rows.iter().map(|row| row.get(metric) == Some(&Value::Null)).collect();
                let others_shown_above_zero = rows
                    .iter()
                    .zip(&hidden)
                    .any(|(row, hidden)| !hidden && row.get(metric).and_then(Value::as_i64).is_some_and(|count| count > 0));
                prop_assert!(
                    hidden.iter().filter(|hidden| **hidden).count() != 1 || !others_shown_above_zero,
                    "{metric:?} of period {period} hidden in one row alone: {rows:?}"
                );
            }
            // Nothing hidden follows from what its row, or the next, shows.
            for (cell, row) in rows.iter().enumerate() {
                let shown = |row: &TrendRow, metric| row.get(metric).is_some_and(|value| !value.is_null());
                if !shown(row, Metric::ActiveParticipants) {
                    prop_assert!(
                        !(shown(row, Metric::NewParticipants) && shown(row, Metric::ReturningParticipants)),
                        "active hidden but new and returning shown: {row:?}"
                    );
                    if period == 0 {
                        let next = &suppressed.series[cells.len() + cell];
                        prop_assert!(
                            !(shown(next, Metric::RetainedParticipants) && shown(next, Metric::DormantParticipants)),
                            "active hidden but the next period's retained and dormant shown: {next:?}"
                        );
                    }
                }
            }
            for (row, before) in rows.iter().zip(before) {
                for ((metric, value), (_, shown)) in row.values.iter().zip(&before.values) {
                    if metric.counts_people() && let Some(count) = shown.as_i64() && count > 0 && count < 5 {
                        prop_assert_eq!(value, &Value::Null, "{:?} {} is small", metric, count);
                    }
                }
            }
        }
    }

    /// After [`suppression::hide_in_groups`], every small count is hidden,
    /// and no group hides exactly one cell while showing another above zero.
    #[test]
    fn no_group_hides_one_cell_alone(
        counts in proptest::collection::vec(0i64..12, 1..30),
        groups in proptest::collection::vec(proptest::collection::btree_set(0usize..30, 1..6), 0..8),
    ) {
        let groups: Vec<Vec<usize>> = groups
            .into_iter()
            .map(|group| group.into_iter().filter(|cell| *cell < counts.len()).collect())
            .collect();
        let mut hidden: Vec<Option<i64>> = counts.iter().copied().map(Some).collect();
        suppression::hide_in_groups(&mut hidden, &groups, 5);
        for (count, after) in counts.iter().zip(&hidden) {
            prop_assert!(after.is_some() || *count > 0, "zero is shown");
            prop_assert!(!(1..5).contains(count) || after.is_none(), "{count} is small");
        }
        for group in &groups {
            let alone = group.iter().filter(|cell| hidden[**cell].is_none()).count() == 1;
            let shown_above_zero = group.iter().any(|cell| hidden[*cell].is_some_and(|count| count > 0));
            prop_assert!(!(alone && shown_above_zero), "group {group:?} of {counts:?} hides one alone: {hidden:?}");
        }
    }
}

#[test]
fn binary_totals_of_the_version_before_the_basis_read_with_a_custom_basis() {
    let totals = TrendTotals {
        watermark: 3,
        volunteer_hour_value_gbp: 12.0,
        volunteer_hour_basis: HourValueBasis::AsheMedian2024,
        totals: vec![PeriodTotals { meetings: 2, ..PeriodTotals::default() }],
        split: None,
    };
    assert_eq!(totals.to_binary()[0], 2, "the version with the basis");
    let bytes = totals.to_binary_without_basis();
    assert_eq!(bytes[0], 1, "the version query services before it read");
    assert_eq!(bytes.len() + 1, totals.to_binary().len());
    let read = TrendTotals::from_answer(&bytes).unwrap();
    assert_eq!(read, TrendTotals { volunteer_hour_basis: HourValueBasis::Custom, ..totals });
}
