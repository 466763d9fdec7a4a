//! Cell values as typed values: dates and times, hours, whole numbers and
//! `;`-separated lists; an `Err` says what is wrong with the cell, in words
//! for the person who filled it in.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;

use super::columns::normalise_name;

/// A date (and time) cell as an instant: RFC 3339; or a date as
/// `YYYY-MM-DD`, `DD/MM/YYYY`, `DD.MM.YYYY`, `YYYY/MM/DD`, optionally
/// followed by a time (`HH:MM` or `HH:MM:SS`), taken in `zone`; a date
/// without a time is at `time_of_day`, or 12:00.
pub(super) fn parse_date(text: &str, time_of_day: Option<&str>, zone: Tz) -> Result<DateTime<FixedOffset>, String> {
    const EXPECTED: &str = "is not a date: write YYYY-MM-DD, DD/MM/YYYY or an RFC 3339 date-time";
    let text = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant);
    }
    let (date_text, time_text) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.trim())),
        None => (text, None),
    };
    let parts: Vec<&str> = date_text.split(['-', '/', '.']).collect();
    let [a, b, c] = parts[..] else { return Err(EXPECTED.to_owned()) };
    let number = |part: &str| if part.chars().all(|c| c.is_ascii_digit()) { part.parse::<u32>().ok() } else { None };
    let (Some(x), Some(y), Some(z)) = (number(a), number(b), number(c)) else { return Err(EXPECTED.to_owned()) };
    // Year first (ISO), else day first (UK): never month first.
    let (year, month, day, year_text) = if a.len() == 4 { (x, y, z, a) } else { (z, y, x, c) };
    if year_text.len() != 4 {
        return Err("has a two-digit year: write the year in full, e.g. 05/03/2026".to_owned());
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)
        .ok_or_else(|| format!("is not a calendar date (read as day {day}, month {month}, year {year})"))?;
    let time_text = time_text.or(time_of_day.map(str::trim)).filter(|text| !text.is_empty());
    let time = match time_text {
        None => NaiveTime::from_hms_opt(12, 0, 0).expect("noon exists"),
        Some(time_text) => ["%H:%M:%S%.f", "%H:%M", "%H.%M"]
            .iter()
            .find_map(|format| NaiveTime::parse_from_str(time_text, format).ok())
            .ok_or_else(|| format!("has a time {time_text:?} that is not HH:MM or HH:MM:SS"))?,
    };
    Ok(localise(NaiveDateTime::new(date, time), zone))
}

/// A local time in `zone`: the earlier of two in an autumn overlap, an
/// hour later in a spring gap.
fn localise(local: NaiveDateTime, zone: Tz) -> DateTime<FixedOffset> {
    match zone.from_local_datetime(&local).earliest() {
        Some(instant) => instant.fixed_offset(),
        None => localise(local + chrono::Duration::hours(1), zone),
    }
}

/// Hours as `2.5`, `2,5` or `1:30`.
pub(super) fn parse_hours(text: &str) -> Result<f64, String> {
    const EXPECTED: &str = "must be a number of hours, such as 2.5 or 1:30";
    let text = text.trim();
    let hours = if let Some((hours, minutes)) = text.split_once(':') {
        let hours: u32 = hours.trim().parse().map_err(|_| EXPECTED.to_owned())?;
        let minutes: u32 = minutes.trim().parse().map_err(|_| EXPECTED.to_owned())?;
        if minutes >= 60 {
            return Err(EXPECTED.to_owned());
        }
        f64::from(hours) + f64::from(minutes) / 60.0
    } else {
        let text = if text.contains('.') { text.to_owned() } else { text.replace(',', ".") };
        text.parse::<f64>().map_err(|_| EXPECTED.to_owned())?
    };
    if !hours.is_finite() {
        return Err(EXPECTED.to_owned());
    }
    // Round to the millihour the projection keeps, so 1:20 does not carry
    // binary noise into the id.
    Ok((hours * 1000.0).round() / 1000.0)
}

/// A whole number, also written as `90.0` by a spreadsheet.
pub(super) fn parse_whole(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i64>() {
        return Ok(number);
    }
    match text.parse::<f64>() {
        Ok(number) if number.fract() == 0.0 && number.abs() < 1e15 => Ok(number as i64),
        _ => Err("must be a whole number".to_owned()),
    }
}

/// A `;`-separated list cell.
pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(';').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// `Partner staff` → `partner_staff`; `Bring people together` →
/// `bring_people_together`.
pub(super) fn snake(text: &str) -> String {
    normalise_name(text)
}

/// An organiser list item: `ref` or `ref (role)`.
pub(super) fn organiser_item(text: &str, default_role: &str) -> (String, String) {
    if let Some(stripped) = text.strip_suffix(')')
        && let Some((participant, role)) = stripped.rsplit_once('(')
        && !participant.trim().is_empty()
    {
        return (participant.trim().to_owned(), snake(role));
    }
    (text.trim().to_owned(), default_role.to_owned())
}

/// Principles as the schema spells them, without repeats.
pub(super) fn principles(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for principle in split_list(list).iter().map(|principle| snake(principle)) {
        if !out.contains(&principle) {
            out.push(principle);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_iso_uk_and_rfc_3339_forms() {
        let london = chrono_tz::Europe::London;
        let at = |text: &str| parse_date(text, None, london).map(|time| time.to_rfc3339());
        assert_eq!(at("2026-03-05").unwrap(), "2026-03-05T12:00:00+00:00");
        assert_eq!(at("05/03/2026").unwrap(), "2026-03-05T12:00:00+00:00", "UK order: day first");
        assert_eq!(at("5/3/2026").unwrap(), "2026-03-05T12:00:00+00:00");
        assert_eq!(at("05.03.2026").unwrap(), "2026-03-05T12:00:00+00:00");
        assert_eq!(at("2026/03/05").unwrap(), "2026-03-05T12:00:00+00:00");
        assert_eq!(at("2026-07-01").unwrap(), "2026-07-01T12:00:00+01:00", "summer time");
        assert_eq!(at("01/07/2026 18:30").unwrap(), "2026-07-01T18:30:00+01:00");
        assert_eq!(at("2026-07-01T09:15:00").unwrap(), "2026-07-01T09:15:00+01:00");
        assert_eq!(at("2026-07-01T09:15:00Z").unwrap(), "2026-07-01T09:15:00+00:00");
        assert_eq!(at("2026-07-01T09:15:00+02:00").unwrap(), "2026-07-01T09:15:00+02:00");
        assert_eq!(parse_date("2026-07-01", Some("19:00"), london).unwrap().to_rfc3339(), "2026-07-01T19:00:00+01:00");
        // 01:30 on the spring-forward night does not exist: an hour later.
        assert_eq!(at("2026-03-29 01:30").unwrap(), "2026-03-29T02:30:00+01:00");
        assert!(at("31/02/2026").unwrap_err().contains("not a calendar date"));
        assert!(at("03/25/2026").unwrap_err().contains("month 25"), "US order is not guessed");
        assert!(at("05/03/26").unwrap_err().contains("two-digit year"));
        assert!(at("next tuesday").unwrap_err().contains("not a date"));
        assert!(at("2026-03-05 25:00").is_err());
    }

    #[test]
    fn hours_as_decimals_commas_and_hours_minutes() {
        assert_eq!(parse_hours("2.5"), Ok(2.5));
        assert_eq!(parse_hours("2,5"), Ok(2.5));
        assert_eq!(parse_hours("1:30"), Ok(1.5));
        assert_eq!(parse_hours("1:20"), Ok(1.333));
        assert_eq!(parse_hours("3"), Ok(3.0));
        assert!(parse_hours("two").is_err());
        assert!(parse_hours("1:75").is_err());
        assert!(parse_hours("NaN").is_err());
    }
}
