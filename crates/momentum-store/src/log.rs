//! How the ledger's entries are packed into log records.
//!
//! A record holds the count of its entries, then consecutive entries, each
//! as LEB128 varints (signed ones zigzag-encoded), so that a record cut
//! short anywhere reads as damaged:
//! - its sequence, as the difference from the record's key (the first) or
//!   from the entry before;
//! - movement, source, the id's length and bytes;
//! - a body tag: 0 a fact, 1 withheld, 2 a retraction (the target id's
//!   length and bytes), 3 an erasure (the count of people, each number);
//! - a fact: kind and citizen-led in one byte, the day (days from the
//!   Common Era, zigzag), the measure (zigzag), principles (one byte),
//!   area and label (0 for none, else the number + 1), the partners (count,
//!   numbers), the people (count, then each as the difference from the
//!   person before and a part byte).

use chrono::{Datelike, NaiveDate};
use momentum_domain::Role;
use momentum_domain::ledger::{Body, Entry, Fact, FactKind, Part, Taking};
use momentum_domain::varint::{write_i64, write_u64};

/// A record is closed once it holds this many bytes. sled writes a leaf of
/// its tree (up to sixteen records) to a file of its own once it passes
/// 128 KiB, and rewrites it whole; records of 4 KiB keep leaves below that.
pub(crate) const RECORD_BYTES_MAX: usize = 4096;

/// The entries packed into records: each record's first sequence and bytes.
pub(crate) fn pack(entries: &[Entry]) -> Vec<(u64, Vec<u8>)> {
    let mut records: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    let mut previous = 0;
    for entry in entries {
        let full = records.last().is_none_or(|(_, _, bytes)| bytes.len() >= RECORD_BYTES_MAX);
        if full {
            records.push((entry.seq, 0, Vec::with_capacity(RECORD_BYTES_MAX + 256)));
            previous = entry.seq;
        }
        let (_, count, bytes) = records.last_mut().expect("a record is open");
        assert!(entry.seq >= previous, "entries come in stream order");
        write_u64(bytes, entry.seq - previous);
        previous = entry.seq;
        write_entry(bytes, entry);
        *count += 1;
    }
    records
        .into_iter()
        .map(|(first_seq, count, entries)| {
            let mut bytes = Vec::with_capacity(entries.len() + 3);
            write_u64(&mut bytes, count);
            bytes.extend_from_slice(&entries);
            (first_seq, bytes)
        })
        .collect()
}

fn write_text(bytes: &mut Vec<u8>, text: &str) {
    write_u64(bytes, text.len() as u64);
    bytes.extend_from_slice(text.as_bytes());
}

fn write_option(bytes: &mut Vec<u8>, value: Option<u32>) {
    write_u64(bytes, value.map_or(0, |number| u64::from(number) + 1));
}

const KINDS: [FactKind; 4] =
    [FactKind::Joined, FactKind::MeetingHeld, FactKind::VolunteerHoursLogged, FactKind::CollectiveActionTaken];
const ROLES: [Role; 3] = [Role::Citizen, Role::Professional, Role::PartnerStaff];

fn role_byte(role: Role) -> u8 {
    ROLES.iter().position(|other| *other == role).expect("every role is listed") as u8
}

fn part_byte(part: Part) -> u8 {
    match part {
        Part::Joined(role) => role_byte(role),
        Part::Attendee => 3,
        Part::Organiser(role) => 4 + role_byte(role),
        Part::Volunteer => 7,
        Part::ActionParticipant => 8,
    }
}

fn read_part(byte: u8) -> Option<Part> {
    Some(match byte {
        0..=2 => Part::Joined(ROLES[usize::from(byte)]),
        3 => Part::Attendee,
        4..=6 => Part::Organiser(ROLES[usize::from(byte - 4)]),
        7 => Part::Volunteer,
        8 => Part::ActionParticipant,
        _ => return None,
    })
}

fn write_entry(bytes: &mut Vec<u8>, entry: &Entry) {
    write_u64(bytes, u64::from(entry.movement));
    write_u64(bytes, u64::from(entry.source));
    write_text(bytes, &entry.id);
    match &entry.body {
        Body::Fact(fact) => {
            bytes.push(0);
            let kind = KINDS.iter().position(|kind| *kind == fact.kind).expect("every kind is listed") as u8;
            bytes.push(kind | (u8::from(fact.citizen_led) << 2));
            write_i64(bytes, i64::from(fact.day.num_days_from_ce()));
            write_i64(bytes, fact.measure);
            bytes.push(fact.principles);
            write_option(bytes, fact.area);
            write_option(bytes, fact.label);
            write_u64(bytes, fact.partners.len() as u64);
            for partner in &fact.partners {
                write_u64(bytes, u64::from(*partner));
            }
            write_u64(bytes, fact.people.len() as u64);
            let mut previous = 0;
            for taking in &fact.people {
                write_u64(bytes, u64::from(taking.person - previous));
                previous = taking.person;
                bytes.push(part_byte(taking.part));
            }
        }
        Body::Withheld => bytes.push(1),
        Body::Retraction { target } => {
            bytes.push(2);
            write_text(bytes, target);
        }
        Body::Erasure { people } => {
            bytes.push(3);
            write_u64(bytes, people.len() as u64);
            for person in people {
                write_u64(bytes, u64::from(*person));
            }
        }
    }
}

/// The entries of a record whose key names `first_seq`; an entry that
/// cannot be read ends it with an error.
pub(crate) fn unpack(first_seq: u64, bytes: &[u8]) -> impl Iterator<Item = Result<Entry, String>> + '_ {
    let mut reader = Reader { rest: bytes, seq: first_seq, left: None, failed: false };
    let damaged = move |what: String| format!("a log record from sequence {first_seq}: {what}");
    std::iter::from_fn(move || {
        if reader.failed {
            return None;
        }
        let next = match reader.left {
            None => reader.count().map(|count| {
                reader.left = Some(count);
            }),
            Some(_) => Ok(()),
        }
        .and_then(|()| match reader.left {
            Some(0) if reader.rest.is_empty() => Ok(None),
            Some(0) => Err(format!("{} bytes after the last entry", reader.rest.len())),
            _ => reader.entry().map(Some),
        });
        match next {
            Ok(Some(entry)) => {
                reader.left = reader.left.map(|left| left - 1);
                Some(Ok(entry))
            }
            Ok(None) => None,
            Err(what) => {
                reader.failed = true;
                Some(Err(damaged(what)))
            }
        }
    })
}

struct Reader<'a> {
    rest: &'a [u8],
    seq: u64,
    /// Entries the record holds that are not read yet, once its count is.
    left: Option<usize>,
    failed: bool,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let (first, rest) = self.rest.split_first().ok_or("cut short")?;
        self.rest = rest;
        Ok(*first)
    }

    fn number(&mut self) -> Result<u64, String> {
        let (value, rest) = momentum_domain::varint::read_u64(self.rest).map_err(|error| error.to_string())?;
        self.rest = rest;
        Ok(value)
    }

    fn signed(&mut self) -> Result<i64, String> {
        let (value, rest) = momentum_domain::varint::read_i64(self.rest).map_err(|error| error.to_string())?;
        self.rest = rest;
        Ok(value)
    }

    fn small(&mut self) -> Result<u32, String> {
        u32::try_from(self.number()?).map_err(|_| "a number beyond 32 bits".into())
    }

    fn option(&mut self) -> Result<Option<u32>, String> {
        Ok(self.small()?.checked_sub(1))
    }

    fn count(&mut self) -> Result<usize, String> {
        let count = self.number()?;
        // Every counted item takes at least a byte.
        if count > self.rest.len() as u64 {
            return Err(format!("{count} items in {} bytes", self.rest.len()));
        }
        Ok(count as usize)
    }

    fn text(&mut self) -> Result<Box<str>, String> {
        let length = self.count()?;
        let (text, rest) = self.rest.split_at(length);
        self.rest = rest;
        std::str::from_utf8(text).map(Into::into).map_err(|_| "text that is not UTF-8".into())
    }

    fn entry(&mut self) -> Result<Entry, String> {
        self.seq = self.seq.checked_add(self.number()?).ok_or("a sequence beyond 64 bits")?;
        let movement = self.small()?;
        let source = self.small()?;
        let id = self.text()?;
        let body = match self.byte()? {
            0 => Body::Fact(self.fact()?),
            1 => Body::Withheld,
            2 => Body::Retraction { target: self.text()? },
            3 => {
                let count = self.count()?;
                Body::Erasure { people: (0..count).map(|_| self.small()).collect::<Result<_, _>>()? }
            }
            tag => return Err(format!("body tag {tag}")),
        };
        Ok(Entry { seq: self.seq, movement, source, id, body })
    }

    fn fact(&mut self) -> Result<Fact, String> {
        let flags = self.byte()?;
        let kind = *KINDS.get(usize::from(flags & 3)).ok_or("a fact kind")?;
        if flags >> 3 != 0 {
            return Err(format!("fact flags {flags}"));
        }
        let day = i32::try_from(self.signed()?).ok().and_then(NaiveDate::from_num_days_from_ce_opt).ok_or("a day")?;
        let measure = self.signed()?;
        let principles = self.byte()?;
        let area = self.option()?;
        let label = self.option()?;
        let count = self.count()?;
        let partners = (0..count).map(|_| self.small()).collect::<Result<_, _>>()?;
        let count = self.count()?;
        let mut people = Vec::with_capacity(count);
        let mut previous = 0u32;
        for _ in 0..count {
            let person = previous.checked_add(self.small()?).ok_or("a person number beyond 32 bits")?;
            let part = read_part(self.byte()?).ok_or("a part")?;
            people.push(Taking { person, part });
            previous = person;
        }
        Ok(Fact {
            kind,
            day,
            measure,
            citizen_led: flags & 4 != 0,
            principles,
            area,
            label,
            partners,
            people: people.into(),
        })
    }
}
