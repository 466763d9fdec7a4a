//! What a file is read with: its kind when the header does not say, the
//! events' source, the movement when no column names it, and the time zone
//! of its dates.

use chrono_tz::Tz;

use super::columns::Kind;

/// How to read a file.
#[derive(Clone, Debug)]
pub(super) struct Options {
    pub kind: Option<Kind>,
    pub source: String,
    pub movement: Option<String>,
    pub time_zone: Tz,
}
